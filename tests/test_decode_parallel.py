"""Compressed series decode in worker processes when their codecs hold the GIL (no
imagecodecs, or a syntax it lacks): the values are
those of the uncompressed series, a bad frame is reported as in-process, a dead worker loses
nothing, and streaming writers get the same frames."""

import os

import nibabel as nib
import numpy as np
import pydicom
import pytest

from napari_dicomtools import read_volume
from napari_dicomtools.core import _parallel, volume
from napari_dicomtools.core.nifti import write_series_nifti
from napari_dicomtools.core.series import scan

_REAL_TASK = volume._decode_task
VALUES = (np.arange(12 * 64 * 64).reshape(12, 64, 64) * 7) % 3000 - 1024


@pytest.fixture
def two_workers(monkeypatch):
    """Two workers, and the path taken without imagecodecs (its GIL-free codecs decode in
    threads instead: tests/test_fast_decode.py)."""
    monkeypatch.setenv("NAPARI_DICOMTOOLS_WORKERS", "2")
    monkeypatch.setenv("NAPARI_DICOMTOOLS_FAST_CODECS", "0")
    yield
    _parallel.discard_pool()


def _series(make_series, ts_name):
    ts = getattr(pydicom.uid, ts_name)
    try:
        truth = make_series(values=VALUES, transfer_syntax=ts)
    except (RuntimeError, NotImplementedError, ValueError) as exc:
        pytest.skip(f"no {ts_name} encoder installed to make the test data: {exc}")
    return truth, scan(os.path.dirname(truth.files[0]))[0]


@pytest.mark.parametrize("ts_name", ["RLELossless", "JPEG2000Lossless", "JPEGLSLossless"])
def test_worker_processes_decode_exact_values(make_series, two_workers, ts_name, tmp_path):
    truth, series = _series(make_series, ts_name)
    plan = volume._plan(series)
    assert plan.in_processes(2) and not plan.in_processes(1)
    seen = []
    vol = read_volume(series, progress=lambda done, total: seen.append((done, total)))
    assert np.array_equal(vol.array, truth.values)
    assert seen[-1] == (12, 12) and len(seen) == 12
    assert _parallel._POOL["pool"] is not None  # really decoded by the pool
    write_series_nifti(series, tmp_path / "s.nii.gz")
    assert np.array_equal(np.asarray(nib.load(tmp_path / "s.nii.gz").dataobj), truth.values.T)


def test_bad_frame_in_a_worker_is_blank_and_named(make_series, two_workers):
    truth, _ = _series(make_series, "RLELossless")
    victim = truth.files[4]
    data = bytearray(open(victim, "rb").read())
    data[-200:] = b"\xff" * 200
    open(victim, "wb").write(bytes(data))
    series = scan(os.path.dirname(victim))[0]
    with pytest.warns(UserWarning, match="frame left blank"):
        vol = read_volume(series)
    bad = [p for p in vol.metadata["problems"] if victim in p]
    assert bad and "cannot be decoded" in bad[0]
    k = next(i for i, f in enumerate(series.frames) if f.instance.path == victim)
    others = [i for i in range(12) if i != k]
    assert np.array_equal(vol.array[others], truth.values[others])
    assert (vol.array[k] == vol.array.min()).all()


def _crash_in_worker(fr):
    """Stand-in worker task: dies (as a decoder segfault would) on the marked file."""
    import multiprocessing

    if multiprocessing.parent_process() is not None and \
            fr.instance.path == os.environ.get("DICOMTOOLS_TEST_CRASH_ON"):
        os._exit(9)
    return _REAL_TASK(fr)


def test_a_dying_worker_loses_no_frame(make_series, two_workers, monkeypatch):
    truth, series = _series(make_series, "RLELossless")
    _parallel.discard_pool()
    monkeypatch.setenv("DICOMTOOLS_TEST_CRASH_ON", truth.files[3])
    monkeypatch.setattr(volume, "_decode_task", _crash_in_worker)
    vol = read_volume(series)
    assert np.array_equal(vol.array, truth.values)  # the rest decoded here instead
    assert _parallel._POOL["pool"] is None  # the broken pool was dropped


def test_one_worker_means_no_pool(make_series, monkeypatch):
    monkeypatch.setenv("NAPARI_DICOMTOOLS_WORKERS", "1")
    _parallel.discard_pool()
    truth, series = _series(make_series, "RLELossless")
    assert np.array_equal(read_volume(series).array, truth.values)
    assert _parallel._POOL["pool"] is None


def test_no_nested_pools_inside_worker_processes(monkeypatch):
    """Inside any worker process (ours, Dask distributed's daemons) frames decode in that
    process: a daemonic process cannot have children, and the parallelism is outside."""
    from concurrent.futures import ProcessPoolExecutor

    monkeypatch.setenv("NAPARI_DICOMTOOLS_WORKERS", "4")
    assert _parallel.decode_workers() == 4
    with ProcessPoolExecutor(1, mp_context=_parallel.mp_context()) as ex:
        assert ex.submit(_parallel.decode_workers).result() == 1
