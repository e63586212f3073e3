"""Cross-reading RT Structure Sets with an independent implementation: plastimatch (the
rasteriser behind 3D Slicer's SlicerRT; its binaries ship in the ``plastimatch`` wheel, a
test dependency).

* RTSTRUCT written here -> ``plastimatch convert --xor-contours`` -> the same masks, voxel
  for voxel, holes included (plastimatch ORs nested contours unless told to XOR them).
* masks -> ``plastimatch convert --output-dicom`` (holes written as keyholes) -> opens here on
  the CT grid voxel for voxel (issue 15).
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from napari_dicomtools.core.rtstruct import read_rtstruct, write_rtstruct
from napari_dicomtools.core.synthetic import phantom, write_series

SHAPE = (12, 40, 44)
ORIGIN = (-12.0, 30.0, 8.0)
SPACING = (2.0, 0.9, 0.8)  # (slice, row, column) mm


def _labels():
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    lab = np.zeros(SHAPE, np.uint8)
    lab[(z - 6) ** 2 * 4 + (y - 18) ** 2 + (x - 16) ** 2 <= 64] = 1  # an ellipsoid
    r2 = (y - 26) ** 2 + (x - 30) ** 2
    lab[(r2 <= 64) & (r2 > 9) & (z > 2) & (z < 9)] = 2  # a tube: a hole on every slice
    return lab


def _plastimatch(*args):
    exe = shutil.which("plastimatch")
    if exe is None:  # never a silent skip: plastimatch is a [testing] dependency
        pytest.fail("plastimatch not found: pip install plastimatch (in the [testing] extra)")
    res = subprocess.run([exe, "convert", *map(str, args)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, f"plastimatch failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}"


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    d = tmp_path_factory.mktemp("plastimatch") / "ct"
    write_series(d, phantom(SHAPE), spacing=SPACING, origin=ORIGIN)
    return d


def test_rtstruct_written_here_rasterises_identically_in_plastimatch(ct, tmp_path):
    import SimpleITK as sitk

    lab = _labels()
    rt = write_rtstruct(lab, ct, tmp_path / "rt" / "rt.dcm", segments={1: "ball", 2: "tube"})
    _plastimatch("--xor-contours", "--input", rt, "--referenced-ct", ct,
                 "--output-prefix", tmp_path / "masks", "--prefix-format", "nrrd")
    for n, name in ((1, "ball"), (2, "tube")):
        img = sitk.ReadImage(str(tmp_path / "masks" / f"{name}.nrrd"))
        np.testing.assert_allclose(img.GetOrigin(), ORIGIN, atol=1e-4)
        np.testing.assert_allclose(img.GetSpacing(), SPACING[::-1], atol=1e-5)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(img) > 0, lab == n)


def test_rtstruct_written_by_plastimatch_opens_here_on_the_ct_grid(ct, tmp_path):
    import SimpleITK as sitk

    lab = _labels()
    (tmp_path / "masks").mkdir()
    for n, name in ((1, "ball"), (2, "tube")):
        img = sitk.GetImageFromArray((lab == n).astype(np.uint8))
        img.SetOrigin(ORIGIN)
        img.SetSpacing(SPACING[::-1])
        sitk.WriteImage(img, str(tmp_path / "masks" / f"{name}.nrrd"))
    _plastimatch("--input-prefix", tmp_path / "masks", "--referenced-ct", ct,
                 "--output-dicom", tmp_path / "out")
    (rt,) = [p for p in (tmp_path / "out").iterdir()
             if pydicom.dcmread(p, stop_before_pixels=True).Modality == "RTSTRUCT"]
    got = read_rtstruct(rt, reference=ct)
    assert got.metadata["on_reference"] and got.metadata["problems"] == []
    by_name = {s.label: s.number for s in got.segments}
    assert sorted(by_name) == ["ball", "tube"]
    for n, name in ((1, "ball"), (2, "tube")):  # the tube's hole is a keyhole there
        np.testing.assert_array_equal(got.mask(by_name[name]), lab == n)
