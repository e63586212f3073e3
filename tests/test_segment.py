"""Segmentation and measurement on arrays with known answers (a sphere of known volume)."""

import numpy as np
import pytest

from napari_dicomtools.core import segment as sg
from napari_dicomtools.core.measure import measure, write_measurements_csv


def sphere_volume(radius_mm=12.0, spacing=(1.0, 0.5, 0.5), shape=(60, 120, 120),
                  centre_mm=(30.0, 30.0, 30.0)):
    z, y, x = np.indices(shape).astype(float)
    sp = np.asarray(spacing)
    d2 = ((z * sp[0] - centre_mm[0]) ** 2 + (y * sp[1] - centre_mm[1]) ** 2
          + (x * sp[2] - centre_mm[2]) ** 2)
    img = np.full(shape, -1000.0)
    img[d2 <= radius_mm ** 2] = 60.0  # soft tissue sphere in air
    return img


def test_sphere_volume_in_ml_matches_geometry():
    r = 12.0
    img = sphere_volume(r)
    lab = sg.segment(img, (1.0, 0.5, 0.5), preset="soft_tissue", border=True)
    (row,) = measure(lab, img, (1.0, 0.5, 0.5), origin=(-10.0, 5.0, 7.0))
    expected_ml = 4 / 3 * np.pi * r ** 3 / 1000
    assert row["volume_ml"] == pytest.approx(expected_ml, rel=0.02)
    assert row["mean"] == 60.0 and row["std"] == 0.0
    # centroid in LPS: world (z, y, x) = origin + centre -> (x, y, z)
    assert np.allclose(row["centroid_lps_mm"], (7 + 30, 5 + 30, -10 + 30), atol=0.05)
    assert row["bbox_min_mm"][0] == pytest.approx(-10 + 30 - r - 0.5, abs=1.01)


def test_thresholds_and_presets():
    img = np.array([[-1000, -500, 0, 50, 500]], float)
    assert sg.threshold(img, preset="lung").tolist() == [[False, True, False, False, False]]
    assert sg.threshold(img, 40, 100).tolist() == [[False, False, False, True, False]]
    assert sg.threshold(img, method="otsu").sum() >= 1
    with pytest.raises(ValueError, match="unknown HU preset"):
        sg.threshold(img, preset="nope")
    with pytest.raises(ValueError, match="give lower"):
        sg.threshold(img)


def test_clear_border_keeps_objects_cut_by_the_stack_ends():
    m = np.zeros((5, 10, 10), bool)
    m[:, 0:3, 0:3] = True  # touches the in-plane border: the table
    m[0:2, 5:7, 5:7] = True  # cut by the first slice only: kept per slice
    lab = sg.label(m)
    out = sg.clear_border(lab, per_slice=True)
    assert set(np.unique(out)) == {0, int(lab[0, 5, 5])}
    assert sg.clear_border(lab).max() == 0  # in full 3D both touch a border


def test_remove_small_uses_mm3_and_keep_largest():
    m = np.zeros((10, 10, 10), bool)
    m[1:3, 1:3, 1:3] = True  # 8 voxels
    m[5:9, 5:9, 5:9] = True  # 64 voxels
    lab = sg.label(m)
    out = sg.remove_small(lab, min_volume_mm3=8 * 2.0 + 1, spacing=(2.0, 1.0, 1.0))
    assert (out > 0).sum() == 64
    assert (sg.keep_largest(lab) > 0).sum() == 64


def test_morphology_radius_in_mm():
    m = np.zeros((1, 41, 41), bool)
    m[0, 10:31, 10:31] = True
    m[0, 20, 5:10] = True  # a 1-voxel bridge
    opened = sg.opening(m[0], 1.0, spacing=(0.5, 0.5))
    assert not opened[20, 6] and opened[20, 20]
    closed = sg.closing(np.pad(np.ones((5, 5), bool), 3) & ~np.eye(11, dtype=bool), 1.0,
                        spacing=(1.0, 1.0))
    assert closed[5, 5]


def test_measure_2d_and_csv(tmp_path):
    lab = np.zeros((20, 30), np.int32)
    lab[2:6, 3:13] = 1
    lab[10:12, 20:25] = 4
    rows = measure(lab, lab * 10.0, spacing=(0.5, 0.25))
    assert [r["label"] for r in rows] == [1, 4]
    assert rows[0]["area_mm2"] == pytest.approx(40 * 0.125)
    p = write_measurements_csv(rows, tmp_path / "m.csv")
    text = open(p).read()
    assert text.splitlines()[0].startswith("label,voxels,area_mm2")
    assert measure(np.zeros((4, 4), int)) == []


def test_shared_objects_give_the_same_answer():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    img = rng.normal(0, 1, (20, 40, 40))
    lab = sg.label(img > 1.5)
    ref = measure(sg.clear_border(lab), img, (2.0, 1.0, 1.0))
    objects = ndimage.find_objects(lab)
    fast = sg.clear_border(lab.copy(), objects=objects, copy=False)
    assert measure(fast, img, (2.0, 1.0, 1.0), objects=objects) == ref


def test_relabel_renumbers_in_order_copy_or_in_place():
    from napari_dicomtools.core.segment import relabel

    lab = np.array([[0, 5, 5], [2, 0, 9], [9, 2, 0]], np.int32)
    out = relabel(lab)
    assert out.tolist() == [[0, 2, 2], [1, 0, 3], [3, 1, 0]]
    assert lab[0, 1] == 5  # the input is untouched by default
    same = relabel(lab, copy=False)
    assert same is lab and lab.tolist() == out.tolist()
    consecutive = np.array([1, 0, 2, 2], np.int64)
    assert relabel(consecutive).dtype == np.int32
    assert relabel(consecutive).tolist() == [1, 0, 2, 2]
    assert relabel(np.zeros((2, 2), np.int16)).tolist() == [[0, 0], [0, 0]]


def test_fill_holes_matches_scipy_in_every_plane():
    from scipy import ndimage

    from napari_dicomtools.core.segment import fill_holes

    rng = np.random.default_rng(3)
    for _ in range(10):
        m = rng.random((6, int(rng.integers(3, 25)), int(rng.integers(3, 25)))) < 0.6
        assert np.array_equal(fill_holes(m), ndimage.binary_fill_holes(m))
        for ax in range(3):
            ref = np.stack([ndimage.binary_fill_holes(s) for s in np.moveaxis(m, ax, 0)],
                           axis=ax)
            assert np.array_equal(fill_holes(m, per_slice=True, axis=ax), ref)
    ring = np.zeros((7, 7), bool)
    ring[1:6, 1:6] = True
    ring[3, 3] = False
    assert fill_holes(ring).all() == ring[1:6, 1:6].all() and fill_holes(ring)[3, 3]
