"""Lazy reads of compressed series decode the slices next to the one shown in the background:
the values are those of the eager read, a request never waits for prefetching, the slider's
direction is followed, and a failing neighbour is reported by the request that needs it."""

import threading
import warnings

import numpy as np
import pydicom
import pytest

from napari_dicomtools import read_volume
from napari_dicomtools.core import scan, volume
from napari_dicomtools.core.synthetic import write_series

VALUES = (np.arange(12 * 40 * 40).reshape(12, 40, 40) * 5) % 2500 - 1024


@pytest.fixture(scope="module")
def rle_series(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rle")
    truth = write_series(folder, VALUES, transfer_syntax=pydicom.uid.RLELossless)
    return truth, scan(str(folder))[0]


def _frames(vol):
    lazy = vol.array.dask[(vol.array.name, 0, 0, 0)]
    # the graph holds the array-like itself, or a getter task over it
    for obj in (lazy, *getattr(lazy, "args", ()), *(lazy if isinstance(lazy, tuple) else ())):
        if isinstance(obj, volume._LazyFrames):
            return obj
    return next(v for v in vol.array.dask.values() if isinstance(v, volume._LazyFrames))


@pytest.fixture
def decodes(monkeypatch):
    """Frame indices decoded, with the thread that decoded them."""
    seen = []
    real = volume._Plan.read_frame

    def spy(self, i, out=None, threads=1):
        seen.append((i, threading.current_thread().name, self))
        return real(self, i, out, threads)

    monkeypatch.setattr(volume._Plan, "read_frame", spy)
    return seen


def test_neighbours_are_decoded_ahead_with_identical_values(rle_series, decodes):
    truth, series = rle_series
    vol = read_volume(series, lazy=True)
    pre = _frames(vol).prefetch
    assert pre is not None
    assert np.array_equal(vol.array[5].compute(), truth.values[5])
    pre.idle(timeout=60)
    mine = [(i, name) for i, name, plan in decodes if plan is pre.plan]
    background = {i for i, name in mine if name.startswith("dicomtools-prefetch")}
    assert background == {6, 7, 8, 9, 4}  # 4 ahead, 1 behind
    decodes.clear()
    for k in (6, 7, 8, 9, 4):  # the slider steps find them decoded: no decode in the request
        assert np.array_equal(vol.array[k].compute(), truth.values[k])
    pre.idle(timeout=60)
    assert not [i for i, name, plan in decodes if plan is pre.plan
                and not name.startswith("dicomtools-prefetch") and i in (6, 7, 8, 9)]
    eager = read_volume(series).array
    assert np.array_equal(np.asarray(vol.array), eager)


def test_direction_follows_the_slider(rle_series, decodes):
    truth, series = rle_series
    vol = read_volume(series, lazy=True)
    pre = _frames(vol).prefetch
    vol.array[8].compute()
    pre.idle(timeout=60)
    vol.array[7].compute()  # moving down: prefetch below
    pre.idle(timeout=60)
    assert pre.step == -1
    assert {3, 4, 5, 6}.issubset(pre.cache)
    assert np.array_equal(vol.array[4].compute(), truth.values[4])


def test_a_request_never_waits_for_prefetching(rle_series, monkeypatch):
    """Background decodes are held on an event: the request still returns its slice."""
    truth, series = rle_series
    gate = threading.Event()
    started = threading.Event()
    real = volume._Plan.read_frame

    def held(self, i, out=None, threads=1):
        if threading.current_thread().name.startswith("dicomtools-prefetch"):
            started.set()
            assert gate.wait(60), "the test never released the prefetch"
        return real(self, i, out, threads)

    monkeypatch.setattr(volume._Plan, "read_frame", held)
    vol = read_volume(series, lazy=True)
    pre = _frames(vol).prefetch
    try:
        assert np.array_equal(vol.array[2].compute(), truth.values[2])
        assert started.wait(60)  # a neighbour is being decoded, and held
        assert not gate.is_set()
        assert np.array_equal(vol.array[10].compute(), truth.values[10])  # a jump: same
    finally:
        gate.set()
    pre.idle(timeout=60)
    assert all(np.array_equal(a, truth.values[k]) for k, a in pre.cache.items())


def test_a_failing_neighbour_is_reported_by_its_request(rle_series, tmp_path):
    import shutil

    truth, series = rle_series
    folder = tmp_path / "bad"
    shutil.copytree(series.first.source.path.rsplit("/", 1)[0], folder)
    series = scan(str(folder))[0]
    victim = series.frames[6].instance.path
    data = bytearray(open(victim, "rb").read())
    data[-200:] = b"\xff" * 200
    open(victim, "wb").write(bytes(data))
    vol = read_volume(series, lazy=True)
    pre = _frames(vol).prefetch
    assert np.array_equal(vol.array[5].compute(), truth.values[5])  # 6 fails in background
    pre.idle(timeout=60)
    assert 6 not in pre.cache
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        blank = vol.array[6].compute()
    assert any("frame left blank" in str(w.message) and victim in str(w.message)
               for w in caught)
    assert (blank == blank.min()).all()


def test_native_series_do_not_prefetch(make_series):
    truth = make_series()
    vol = read_volume(truth.files[0].rsplit("/", 1)[0], lazy=True)
    assert _frames(vol).prefetch is None
    assert np.array_equal(np.asarray(vol.array), truth.values)


def test_napari_slider_steps_read_the_right_values(make_napari_viewer, rle_series,
                                                   monkeypatch):
    """A lazily opened compressed series in napari: each slider step shows the slice's true
    values (the status-bar read-out), the neighbours having been decoded in the background."""
    from napari_dicomtools import _reader

    truth, series = rle_series
    monkeypatch.setattr(_reader, "LAZY_THRESHOLD", 0)
    viewer = make_napari_viewer()
    layer, = viewer.open(series.first.source.path.rsplit("/", 1)[0],
                         plugin="napari-dicomtools")
    assert not isinstance(layer.data, np.ndarray)  # lazy (dask)
    pre = next(v for v in layer.data.dask.values()
               if isinstance(v, volume._LazyFrames)).prefetch
    assert pre is not None
    y, x = 17, 23
    for z in (0, 1, 2, 3, 2):
        world = np.array([z, y, x]) * np.asarray(truth.spacing) + truth.origin[::-1]
        viewer.dims.point = world
        assert layer.get_value(world, world=True) == truth.values[z, y, x]
    pre.idle(timeout=60)
    assert {0, 1}.issubset(pre.cache)  # moving back down: 1 and 0 decoded ahead
