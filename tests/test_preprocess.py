"""Preprocessing keeps geometry: resize changes spacing, crop moves the origin."""

import numpy as np
import pytest

from napari_dicomtools.core import preprocess as pp


def test_resize_to_isotropic_keeps_field_of_view():
    arr = np.zeros((10, 20, 30), np.int16)
    arr[5, 10, 15] = 1000
    r = pp.resize(arr, (2.5, 0.8, 0.8), (100.0, -50.0, 20.0), new_spacing=1.0)
    assert r.array.shape == (25, 16, 24) and r.array.dtype == np.int16
    assert np.allclose(r.spacing, (1.0, 1.0, 1.0))
    # outer faces of the volume unchanged
    lo_old = np.array([100.0, -50.0, 20.0]) - np.array([2.5, 0.8, 0.8]) / 2
    assert np.allclose(np.array(r.origin) - 0.5, lo_old)
    hi_new = np.array(r.origin) + (np.array(r.array.shape) - 0.5) * r.spacing
    hi_old = lo_old + np.array(arr.shape) * np.array([2.5, 0.8, 0.8])
    assert np.allclose(hi_new, hi_old)
    assert r.history[-1]["op"] == "resize"


def test_resize_in_plane_shape_for_models_and_labels_nearest():
    lab = np.zeros((4, 64, 48), np.uint8)
    lab[:, 10:30, 10:20] = 3
    r = pp.resize(lab, (2.0, 0.5, 0.5), None, shape=(128, 128), order=0)
    assert r.array.shape == (4, 128, 128) and set(np.unique(r.array)) == {0, 3}
    assert r.spacing[0] == 2.0 and r.spacing[1] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="exactly one"):
        pp.resize(lab, None, None)


def test_crop_moves_origin_and_bbox_margin():
    arr = np.arange(5 * 6 * 7).reshape(5, 6, 7)
    r = pp.crop(arr, (2.0, 1.0, 0.5), (10.0, 20.0, 30.0), start=(1, 2, 3), stop=(4, 6, 7))
    assert r.array.shape == (3, 4, 4) and r.array[0, 0, 0] == arr[1, 2, 3]
    assert r.origin == (12.0, 22.0, 31.5)
    m = np.zeros((5, 6, 7), bool)
    m[2, 3, 4] = True
    start, stop = pp.bbox_of(m, margin_mm=1.0, spacing=(2.0, 1.0, 0.5))
    assert start.tolist() == [1, 2, 2] and stop.tolist() == [4, 5, 7]
    with pytest.raises(ValueError, match="empty"):
        pp.bbox_of(np.zeros((3, 3)))


def test_normalize_methods():
    arr = np.array([-1000.0, 0.0, 40.0, 1000.0])
    assert np.allclose(pp.normalize(arr, "window", window=(40, 400)), [0.0, 0.4, 0.5, 1.0])
    z = pp.normalize(arr, "zscore")
    assert abs(z.mean()) < 1e-6 and abs(z.std() - 1) < 1e-6
    assert np.allclose(pp.normalize(arr, "minmax"), [0.0, 0.5, 0.52, 1.0])
    p = pp.normalize(np.arange(101.0), "percentile", percentiles=(10, 90))
    assert p[10] == 0 and p[90] == 1 and p[50] == pytest.approx(0.5)


def test_equalize_and_denoise():
    rng = np.random.default_rng(0)
    img = rng.normal(100, 20, (3, 32, 32)).astype(np.float32)
    for method in ("global", "clahe"):
        e = pp.equalize(img, method)
        assert e.shape == img.shape and 0 <= e.min() and e.max() <= 1
    g = pp.denoise(img, (2.0, 0.5, 0.5), sigma_mm=1.0)
    assert g.std() < img.std()
    spikes = np.zeros((16, 16), np.int16)
    spikes[8, 8] = 1000
    assert pp.denoise(spikes, (1.0, 1.0), method="median", size_mm=3).max() == 0


def test_denoise_in_child_processes_matches_and_cancels():
    import time

    from napari_dicomtools.core.preprocess import DenoiseJob, denoise, denoise_steps

    rng = np.random.default_rng(1)
    a = rng.integers(-1000, 1000, (23, 30, 26)).astype(np.int16)
    for kw in ({"method": "median", "size_mm": 3.0}, {"method": "gaussian", "sigma_mm": 1.2},
               {"method": "median", "size_mm": 3.0, "per_slice": True, "axis": 1}):
        ref = denoise(a, (1.0, 0.8, 0.8), **kw)
        assert np.array_equal(DenoiseJob(a, (1.0, 0.8, 0.8), workers=3, **kw).result(), ref)
        out, steps = denoise_steps(a, (1.0, 0.8, 0.8), chunk=4, **kw)
        for step in steps:
            step()
        assert np.array_equal(out, ref)
    big = rng.integers(0, 1000, (40, 160, 160)).astype(np.int16)
    job = DenoiseJob(big, (1.0, 1.0, 1.0), method="median", size_mm=9.0)
    t0 = time.perf_counter()
    job.cancel()
    assert time.perf_counter() - t0 < 1.0 and job.cancelled
    with pytest.raises(RuntimeError, match="cancelled"):
        job.result()
