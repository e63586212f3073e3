"""SEG and RTSTRUCT written by other libraries (pydicom-seg, rt-utils; vendored in
tests/data/thirdparty with the script that made them) open here at the right place, voxel
for voxel (issue 15)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from napari_dicomtools.core.rtstruct import read_rtstruct
from napari_dicomtools.core.seg import read_segmentation
from napari_dicomtools.core.volume import read_volume

DATA = Path(__file__).parent / "data" / "thirdparty"
sys.path.insert(0, str(DATA))
from make_thirdparty import NAMES, ORIGIN, truth  # noqa: E402

sys.path.remove(str(DATA))


def test_pydicom_seg_seg_opens_voxel_identical_on_its_ct():
    got = read_segmentation(DATA / "seg_pydicom_seg.dcm", reference=DATA / "ct")
    assert got.metadata["on_reference"] and not got.metadata["problems"]
    np.testing.assert_allclose(got.affine_lps, read_volume(DATA / "ct").affine_lps)
    assert {s.number: s.label for s in got.segments} == NAMES
    assert got.segment(1).color == (216, 101, 79)
    for n in NAMES:
        np.testing.assert_array_equal(got.mask(n), truth() == n)


def test_pydicom_seg_seg_alone_lies_at_the_same_millimetres():
    got = read_segmentation(DATA / "seg_pydicom_seg.dcm")
    assert not got.metadata["on_reference"]
    want = np.argwhere(truth() == 2)  # (slice, row, column) on the CT
    ct = read_volume(DATA / "ct")
    np.testing.assert_allclose(ct.origin, ORIGIN)
    lps_want = want[:, ::-1] @ ct.affine_lps[:3, :3].T + ct.affine_lps[:3, 3]
    idx = np.argwhere(got.mask(2))
    lps_got = idx[:, ::-1] @ got.affine_lps[:3, :3].T + got.affine_lps[:3, 3]
    np.testing.assert_allclose(np.sort(lps_got, axis=0), np.sort(lps_want, axis=0), atol=1e-4)


def test_rt_utils_rtstruct_opens_voxel_identical_on_its_ct():
    """rt-utils traces contours through the centres of the boundary pixels (OpenCV): those
    pixels are read as inside, or every structure would lose its outer (and hole) ring."""
    got = read_rtstruct(DATA / "rtstruct_rt_utils.dcm", reference=DATA / "ct_square")
    assert got.metadata["on_reference"] and got.metadata["problems"] == []
    by_name = {s.label: s.number for s in got.segments}
    assert by_name.keys() == set(NAMES.values())
    assert got.segment(by_name["ring"]).color == (0, 255, 0)
    for n, name in NAMES.items():
        np.testing.assert_array_equal(got.mask(by_name[name]), truth() == n)


@pytest.mark.parametrize("name", ["ct", "ct_square"])
def test_vendored_cts_read_as_written(name):
    vol = read_volume(DATA / name)
    assert vol.array.shape == truth().shape
    assert vol.spacing == ((2.5, 0.9, 0.8) if name == "ct" else (2.5, 0.8, 0.8))
