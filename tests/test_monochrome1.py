"""MONOCHROME1 (PS3.3 C.7.6.3.1.2, PS3.4 N.2.1): the values are the Modality LUT output
(stored x slope + intercept, HU for CT), exactly as for MONOCHROME2; only the display is
inverted, after the window: the napari layer's colormap and the PNG exports. pydicom's
``apply_modality_lut`` and dcm2niix are the references for the values."""

import os
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut

from napari_dicomtools import read_volume
from napari_dicomtools.cli import main
from napari_dicomtools.core import _parallel
from napari_dicomtools.core.png import export_png
from napari_dicomtools.core.segment import threshold
from napari_dicomtools.core.series import scan
from napari_dicomtools.core.volume import stream_frames

# a CR-like ramp over 12 bits: low values are dense (white on a MONOCHROME1 film)
VALUES = (np.arange(4 * 40 * 48).reshape(4, 40, 48) * 4) % 2400 - 200


@pytest.fixture
def ct_small(tmp_path):
    """pydicom's CT_small.dcm saved as MONOCHROME2 and as MONOCHROME1 (window 40/400), and
    its HU from pydicom's apply_modality_lut."""
    folders = {}
    for pi in ("MONOCHROME2", "MONOCHROME1"):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.PhotometricInterpretation = pi
        ds.WindowCenter, ds.WindowWidth = 40, 400
        folders[pi] = tmp_path / pi
        folders[pi].mkdir()
        ds.save_as(folders[pi] / "ct.dcm")
    hu = apply_modality_lut(ds.pixel_array, ds)
    assert (hu.min(), hu.max()) == (-896, 1167)  # what the data is
    return folders, hu


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_ct_small_monochrome1_values_are_hu(ct_small, lazy):
    folders, hu = ct_small
    vol = read_volume(folders["MONOCHROME1"], lazy=lazy)
    got = np.asarray(vol.array)[0]
    assert np.array_equal(got, hu)
    assert got[64, 64] == hu[64, 64]
    assert tuple(vol.window) == (40.0, 400.0)  # the window is not moved either
    assert vol.metadata["photometric"] == "MONOCHROME1"
    m2 = read_volume(folders["MONOCHROME2"], lazy=lazy)
    assert np.array_equal(got, np.asarray(m2.array)[0])
    # so HU presets find the same bone as on the MONOCHROME2 copy
    bone = int(threshold(got, preset="bone").sum())
    assert bone > 500 and bone == int(threshold(np.asarray(m2.array), preset="bone").sum())


def test_ct_small_monochrome1_streamed_frames_are_hu(ct_small):
    folders, hu = ct_small
    (series,) = scan(folders["MONOCHROME1"])
    (frame,) = list(stream_frames(series).frames)
    assert np.array_equal(frame, hu)


@pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix not installed")
def test_ct_small_monochrome1_nifti_agrees_with_dcm2niix(ct_small, tmp_path):
    folders, hu = ct_small
    ref_dir = tmp_path / "d2n"
    ref_dir.mkdir()
    r = subprocess.run(["dcm2niix", "-o", str(ref_dir), "-f", "ref", "-z", "n", "-b", "n",
                        "-v", "0", str(folders["MONOCHROME1"])], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    ref = nib.as_closest_canonical(nib.load(ref_dir / "ref.nii"))
    assert main(["convert", str(folders["MONOCHROME1"]), str(tmp_path / "ours"), "-q"]) == 0
    (ours_file,) = (tmp_path / "ours").rglob("*.nii*")
    ours = nib.as_closest_canonical(nib.load(ours_file))
    assert ours.shape == ref.shape
    assert np.allclose(ours.affine, ref.affine, atol=0.01)
    assert np.array_equal(ours.get_fdata(), ref.get_fdata())
    assert (ours.get_fdata().min(), ours.get_fdata().max()) == (hu.min(), hu.max())


def test_synthetic_monochrome1_is_consistent_dicom(make_series):
    truth = make_series(values=VALUES, photometric="MONOCHROME1", modality="CR",
                        slope=2.0, intercept=-400.0, window=(500, 1000))
    for f in truth.files:  # the files alone (pydicom, no reader of ours) give the values
        ds = pydicom.dcmread(f)
        assert ds.PhotometricInterpretation == "MONOCHROME1"
        assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (500, 1000)
        values = apply_modality_lut(ds.pixel_array, ds)
        assert any(np.array_equal(values, v) for v in VALUES)
        assert np.array_equal(ds.pixel_array, (values + 400) / 2)
    vol = read_volume(os.path.dirname(truth.files[0]))
    assert np.array_equal(vol.array, truth.values)
    assert tuple(vol.window) == (500.0, 1000.0)
    lazy = read_volume(os.path.dirname(truth.files[0]), lazy=True)
    assert np.array_equal(lazy.array.compute(), truth.values)


def test_monochrome1_in_worker_processes_and_philips_precise(make_series, monkeypatch,
                                                             tmp_path):
    from napari_dicomtools.core import volume
    from napari_dicomtools.core.nifti import write_series_nifti

    monkeypatch.setenv("NAPARI_DICOMTOOLS_WORKERS", "2")
    monkeypatch.setenv("NAPARI_DICOMTOOLS_FAST_CODECS", "0")
    try:
        truth = make_series(values=np.tile(VALUES, (3, 1, 1)), photometric="MONOCHROME1",
                            transfer_syntax=pydicom.uid.RLELossless)
        (series,) = scan(os.path.dirname(truth.files[0]))
        assert volume._plan(series).in_processes(2)
        assert np.array_equal(read_volume(series).array, truth.values)
        assert _parallel._POOL["pool"] is not None  # really decoded by the pool
        write_series_nifti(series, tmp_path / "s.nii.gz")
        assert np.array_equal(np.asarray(nib.load(tmp_path / "s.nii.gz").dataobj),
                              truth.values.T)
    finally:
        _parallel.discard_pool()
    mr = make_series(values=VALUES + 400, photometric="MONOCHROME1", modality="MR",
                     slope=2.0, intercept=0.0)
    for f in mr.files:
        ds = pydicom.dcmread(f)
        ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True).add_new(
            0x0E, "FL", 4.0)
        ds.save_as(f, enforce_file_format=True)
    precise = read_volume(os.path.dirname(mr.files[0]), philips_precise=True)
    assert np.allclose(precise.array, mr.values / (2.0 * 4.0))


def _png(path):
    return np.asarray(Image.open(path).convert("L")).astype(int)


def test_png_of_monochrome1_is_the_inverse_of_monochrome2(make_series, tmp_path):
    m1 = read_volume(os.path.dirname(make_series(
        values=VALUES, photometric="MONOCHROME1", modality="CR", window=(900, 1600)).files[0]))
    m2 = read_volume(os.path.dirname(make_series(
        values=VALUES, modality="CR", window=(900, 1600)).files[0]))
    (p1,) = export_png(m1, tmp_path / "m1", slices=[1])  # the DICOM window
    (p2,) = export_png(m2, tmp_path / "m2", slices=[1])
    a1, a2 = _png(p1), _png(p2)
    assert a2.min() == 0 and a2.max() == 255 and len(np.unique(a2)) > 100  # a real picture
    assert np.array_equal(a1, 255 - a2)
    # the lowest value (dense, e.g. bone on a CR) is white
    lowest = np.unravel_index(np.argmin(m1.array[1]), a1.shape)
    assert a1[lowest] == 255
    # an explicit window too, and the CLI
    (q1,) = export_png(m1, tmp_path / "w1", slices=[1], window=(0, 500))
    (q2,) = export_png(m2, tmp_path / "w2", slices=[1], window=(0, 500))
    assert np.array_equal(_png(q1), 255 - _png(q2))
    assert main(["png", os.path.dirname(m1.metadata["files"][0]), str(tmp_path / "cli"),
                 "--slices", "1", "-q"]) == 0
    (c1,) = (tmp_path / "cli").rglob("*.png")
    assert np.array_equal(_png(c1), a1)


def test_viewer_shows_monochrome1_inverted_with_hu_values(make_napari_viewer, ct_small,
                                                          tmp_path):
    from napari_dicomtools._viewer import resample_layer_data

    folders, hu = ct_small
    viewer = make_napari_viewer()
    (m2,) = viewer.open(str(folders["MONOCHROME2"]), plugin="napari-dicomtools")
    (m1,) = viewer.open(str(folders["MONOCHROME1"]), plugin="napari-dicomtools")
    assert m2.colormap.name == "gray" and m1.colormap.name == "gray_r"
    assert tuple(m1.contrast_limits) == (-160.0, 240.0)  # window 40/400
    data = np.asarray(m1.data)
    assert np.array_equal(np.sort(data.ravel()), np.sort(hu.ravel()))  # HU, display view
    assert np.array_equal(data, np.asarray(m2.data))
    # on screen: dense pixels (high HU) are dark, air is white
    lo, hi = m1.contrast_limits
    dense, air = m1.colormap.map(np.clip((np.array([hu.max(), hu.min()]) - lo) / (hi - lo), 0, 1))
    assert tuple(dense[:3]) == (0, 0, 0) and tuple(air[:3]) == (1, 1, 1)
    # layers made from it keep the inverted look
    viewer.dims.ndisplay = 2
    resampled = resample_layer_data(m1, viewer)
    assert resampled[1]["colormap"] == "gray_r"
    _, crop = viewer.window.add_plugin_dock_widget("napari-dicomtools", "Crop")
    shapes = viewer.add_shapes(ndim=m1.ndim)
    z = float(viewer.dims.point[0])
    a = np.array([z, 10, 10]) * m1.scale + m1.translate * np.array([0, 1, 1])
    b = np.array([z, 60, 60]) * m1.scale + m1.translate * np.array([0, 1, 1])
    shapes.add_rectangles(np.array([[z, a[1], a[2]], [z, a[1], b[2]], [z, b[1], b[2]],
                                    [z, b[1], a[2]]]))
    crop(image=m1, roi=shapes, margin_mm=0.0)
    cropped = viewer.layers[-1]
    assert cropped.name.endswith("cropped") and cropped.colormap.name == "gray_r"
    # sent to a PACS, the derived picture is a secondary capture that looks as shown
    from napari_dicomtools._pacs_widget import layer_to_dicom
    from napari_dicomtools.core.png import apply_window

    (sc,), what = layer_to_dicom(cropped, viewer, str(tmp_path))
    assert what.endswith("(secondary capture)")
    lo, hi = cropped.contrast_limits
    shown = 255 - apply_window(np.asarray(cropped.data)[0], (lo + hi) / 2, hi - lo)
    assert np.array_equal(pydicom.dcmread(sc).pixel_array, shown)
    # napari's PNG writer shows what the user sees: inverted grey
    viewer.layers.selection = {m1}
    (out,) = viewer.layers.save(str(tmp_path / "m1.png"), selected=True,
                                plugin="napari-dicomtools")
    c, w = 40.0, 400.0
    expected = 255 - np.clip(np.round(((hu - (c - 0.5)) / (w - 1) + 0.5) * 255), 0, 255)
    got = _png(out)
    assert got.shape == hu.shape
    assert np.array_equal(np.sort(got.ravel()), np.sort(expected.ravel()))
