"""Colour series (RGB ultrasound, palette colour) are listed, converted and exported, never
dropped: ``info`` names the colour model, ``convert`` writes NIfTI RGB24 (datatype 128, as
dcm2niix does) next to the grayscale volumes, ``png`` applies the palette."""

import json
import shutil
import subprocess
import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_color_lut

from napari_dicomtools import read_volume, scan
from napari_dicomtools.cli import main
from napari_dicomtools.core.synthetic import write_series

DCM2NIIX = shutil.which("dcm2niix")


def _rgb_of(img):
    d = np.asarray(img.dataobj)
    return np.stack([d["R"], d["G"], d["B"]], -1)


def _palette_rgb8():
    ds = pydicom.dcmread(get_testdata_file("examples_palette.dcm"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lut = apply_color_lut(ds.pixel_array, ds)
    assert lut.dtype == np.uint16  # 16-bit entries: the case that needs scaling
    return ((lut.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


@pytest.fixture
def mixed(tmp_path):
    """A folder with a grayscale CT, an RGB ultrasound and a palette-colour ultrasound."""
    d = tmp_path / "mixed"
    write_series(d / "ct", np.zeros((3, 8, 10), np.int16))
    for name in ("examples_rgb_color.dcm", "examples_palette.dcm"):
        shutil.copy(get_testdata_file(name), d / name)
    return d


def test_info_names_the_colour_model(mixed, capsys):
    assert main(["info", str(mixed)]) == 0
    out = capsys.readouterr().out
    assert "colour (RGB, written as RGB)" in out
    assert "colour (palette colour, converted through its lookup table to RGB)" in out
    assert out.count("colour (") == 2  # not the CT
    assert main(["info", str(mixed), "--json"]) == 0
    series = json.loads(capsys.readouterr().out)["series"]
    assert sorted(str(s["colour"]) for s in series) == ["None", "PALETTE COLOR", "RGB"]


def test_convert_writes_colour_series_as_rgb24(mixed, tmp_path, capsys):
    out = tmp_path / "nii"
    assert main(["convert", str(mixed), str(out), "-q"]) == 0
    imgs = {p.name: nib.load(p) for p in out.glob("*.nii.gz")}
    assert len(imgs) == 3, sorted(imgs)
    colour = [i for i in imgs.values() if i.header["datatype"] == 128]
    assert len(colour) == 2 and all(i.header["bitpix"] == 24 for i in colour)
    by_shape = {i.shape[:2]: _rgb_of(i)[:, :, 0] for i in colour}
    # NIfTI holds columns x rows: transpose back to the DICOM picture, rows as stored
    rgb = pydicom.dcmread(get_testdata_file("examples_rgb_color.dcm")).pixel_array
    assert np.array_equal(by_shape[(320, 240)].transpose(1, 0, 2), rgb)
    assert np.array_equal(by_shape[(800, 350)].transpose(1, 0, 2), _palette_rgb8())


@pytest.mark.skipif(DCM2NIIX is None, reason="dcm2niix not installed (pip install dcm2niix)")
def test_rgb_agrees_with_dcm2niix(tmp_path):
    src = tmp_path / "us"
    src.mkdir()
    shutil.copy(get_testdata_file("examples_rgb_color.dcm"), src)
    ref = tmp_path / "ref"
    ref.mkdir()
    r = subprocess.run([DCM2NIIX, "-f", "%s_%p", "-z", "n", "-b", "n", "-v", "0", "-o", str(ref),
                        str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert main(["convert", str(src), str(tmp_path / "ours"), "-q", "--no-gzip"]) == 0
    (theirs,) = ref.glob("*.nii")
    ours = nib.load(tmp_path / "ours" / theirs.name)  # same name, too
    theirs = nib.load(theirs)
    assert ours.header["datatype"] == theirs.header["datatype"] == 128
    assert ours.shape == theirs.shape
    # dcm2niix flips rows of images without geometry; the pixels are the same picture
    a, b = _rgb_of(ours), _rgb_of(theirs)
    assert np.array_equal(a, b) or np.array_equal(a, b[:, ::-1])


def test_png_applies_the_palette(tmp_path):
    src = tmp_path / "pal"
    src.mkdir()
    shutil.copy(get_testdata_file("examples_palette.dcm"), src)
    assert main(["png", str(src), str(tmp_path / "png"), "-q"]) == 0
    (png,) = (tmp_path / "png").rglob("*.png")
    assert np.array_equal(np.asarray(Image.open(png).convert("RGB")), _palette_rgb8())
    vol = read_volume(scan(src)[0])
    assert vol.rgb and vol.array.dtype == np.uint8
