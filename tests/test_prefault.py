"""The native volume's memory faulted in on a spare core while the scan parses headers
(``volume._Prefault``): the read takes it only when the series fits, values are exact
whichever memory they land in, and nothing is left running or mapped."""

from __future__ import annotations

import mmap
import os
import threading

import numpy as np
import pytest

from napari_dicomtools import read_volume, read_volumes
from napari_dicomtools.core import _parallel, volume
from napari_dicomtools.core.errors import DicomToolsError
from napari_dicomtools.core.synthetic import phantom, write_series


@pytest.fixture
def prefault(monkeypatch):
    """Two workers, a threshold small enough for test series, and a record of what each
    _Prefault reserved and whether the read took it."""
    monkeypatch.setenv("NAPARI_DICOMTOOLS_WORKERS", "2")
    monkeypatch.setattr(volume._Prefault, "MIN_BYTES", 1)
    monkeypatch.setattr(volume._Prefault, "CHUNK", 3 * mmap.PAGESIZE)
    made: list[dict] = []
    real_begin, real_take = volume._Prefault._begin, volume._Prefault.take

    def begin(self):
        real_begin(self)
        if self.buffer is not None:
            made.append({"size": len(self.buffer), "taken": None})

    def take(self, shape, dtype):
        arr = real_take(self, shape, dtype)
        if made and made[-1]["taken"] is None:  # the first read to ask decides
            made[-1]["taken"] = arr is not None
        return arr

    monkeypatch.setattr(volume._Prefault, "_begin", begin)
    monkeypatch.setattr(volume._Prefault, "take", take)
    _parallel.discard_pool()
    yield made
    _parallel.discard_pool()


def _no_helper_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("dicomtools-ahead")]


def _mapped_by(arr):
    base = arr
    while getattr(base, "base", None) is not None:
        base = base.base
    return base.obj if isinstance(base, memoryview) else base


def test_native_volume_reads_into_the_faulted_memory(tmp_path, prefault):
    truth = write_series(tmp_path / "ct", phantom((12, 40, 48)), spacing=(2.0, 0.7, 0.7))
    vol = read_volume(str(tmp_path / "ct"))
    assert np.array_equal(vol.array, truth.values)
    assert vol.array.dtype == np.int16 and vol.array.flags.writeable
    assert isinstance(_mapped_by(vol.array), mmap.mmap)
    # estimate from the first header: 12 files x 40 x 48 x int16, exactly the volume
    assert prefault == [{"size": 12 * 40 * 48 * 2, "taken": True}]
    vol.array[0, 0, 0] = 7  # the user's array: writable, and not touched by anyone else
    assert vol.array[0, 0, 0] == 7


def test_same_values_as_a_read_without_it(tmp_path, prefault, monkeypatch):
    vals = phantom((10, 32, 32)).astype(np.float64) * 0.5 + 0.25  # float32 output
    write_series(tmp_path / "mr", vals, modality="MR", slope=0.5, intercept=0.25)
    got = read_volume(str(tmp_path / "mr")).array
    assert prefault[-1]["taken"] is True and got.dtype == np.float32
    monkeypatch.setattr(volume._Prefault, "MIN_BYTES", 1 << 60)
    plain = read_volume(str(tmp_path / "mr")).array
    assert not isinstance(_mapped_by(plain), mmap.mmap)
    assert np.array_equal(got, plain)


def test_files_outside_the_series_leave_a_tail_that_is_returned(tmp_path, prefault):
    truth = write_series(tmp_path / "ct", phantom((8, 64, 64)))
    for i in range(3):  # counted by the scan's total, then skipped as not DICOM
        (tmp_path / "ct" / f"notes{i}.txt").write_text("not DICOM")
    vol = read_volume(str(tmp_path / "ct"))
    assert np.array_equal(vol.array, truth.values)
    assert prefault == [{"size": 11 * 64 * 64 * 2, "taken": True}]
    assert vol.array.nbytes == 8 * 64 * 64 * 2


def test_a_volume_that_does_not_fit_the_estimate_gets_its_own_memory(tmp_path, prefault):
    # the first file parsed says int16; a later one's rescale needs float32: twice the bytes
    write_series(tmp_path / "a", phantom((6, 32, 32)), series_uid="1.2.3.4", shuffle=False)
    write_series(tmp_path / "b", phantom((6, 32, 32)) + 0.5, series_uid="1.2.3.4",
                 slope=0.5, intercept=-1024.0, prefix="ZZ", shuffle=False,
                 origin=(-38.0, -38.0, -45.0))
    flat = tmp_path / "mixed"
    flat.mkdir()
    for sub in ("a", "b"):
        for f in sorted(os.listdir(tmp_path / sub)):
            os.rename(tmp_path / sub / f, flat / f)
    vol = read_volume(str(flat))
    assert vol.array.dtype == np.float32 and vol.array.shape == (12, 32, 32)
    assert prefault and prefault[-1]["taken"] is False
    assert not isinstance(_mapped_by(vol.array), mmap.mmap)


def test_several_series_error_leaves_nothing_running(tmp_path, prefault):
    write_series(tmp_path / "s" / "one", phantom((6, 32, 32)), series_number=1)
    write_series(tmp_path / "s" / "two", phantom((6, 32, 32)), series_number=2)
    with pytest.raises(Exception, match="holds 2 series"):
        read_volume(str(tmp_path / "s"))
    assert prefault and prefault[-1]["taken"] is None  # reserved, never taken, unmapped
    vols = read_volumes(str(tmp_path / "s"))
    assert [v.array.shape for v in vols] == [(6, 32, 32), (6, 32, 32)]
    # the first series takes the reservation (half of the estimate), the second allocates
    assert prefault[-1]["taken"] is True
    assert isinstance(_mapped_by(vols[0].array), mmap.mmap)
    assert not isinstance(_mapped_by(vols[1].array), mmap.mmap)
    for t in threading.enumerate():
        if t.name.startswith("dicomtools-ahead"):
            t.join(timeout=5)
    assert not _no_helper_threads()


def test_touching_is_over_before_frames_are_read(tmp_path, monkeypatch, prefault):
    """The toucher writes zeros: a read that began while it still ran would lose pixels.
    Slow it down so the scan ends long before it does."""
    truth = write_series(tmp_path / "ct", phantom((10, 64, 64)))
    real_touch = volume._Prefault._touch
    started = threading.Event()

    def slow_touch(self, pages):
        started.set()
        for start in range(0, len(pages), mmap.PAGESIZE):
            if self.stopping.is_set():
                return
            pages[start] = 0
            self.stopping.wait(0.002)

    monkeypatch.setattr(volume._Prefault, "_touch", slow_touch)
    vol = read_volume(str(tmp_path / "ct"))
    assert started.is_set()
    assert np.array_equal(vol.array, truth.values)
    monkeypatch.setattr(volume._Prefault, "_touch", real_touch)


def test_one_worker_and_lazy_reads_reserve_nothing(tmp_path, prefault, monkeypatch):
    truth = write_series(tmp_path / "ct", phantom((6, 32, 32)))
    lazy = read_volume(str(tmp_path / "ct"), lazy=True)
    assert np.array_equal(np.asarray(lazy.array), truth.values)
    monkeypatch.setenv("NAPARI_DICOMTOOLS_WORKERS", "1")
    assert np.array_equal(read_volume(str(tmp_path / "ct")).array, truth.values)
    assert prefault == []


def test_compressed_series_reserve_nothing(tmp_path, prefault):
    truth = write_series(tmp_path / "rle", phantom((6, 32, 32)),
                         transfer_syntax="1.2.840.10008.1.2.5")
    assert np.array_equal(read_volume(str(tmp_path / "rle")).array, truth.values)
    assert prefault == []


def test_a_small_series_read_first_leaves_the_memory_to_the_large_one(tmp_path, prefault):
    """A study's localizer (series 1) is read before its CT: the memory faulted in for the
    whole folder goes to the CT, not freed by the localizer's read."""
    study = "1.2.826.0.1.3680043.9.7.1"  # one study: series 1 is read first
    write_series(tmp_path / "s" / "loc", phantom((2, 32, 32)), series_number=1,
                 study_uid=study)
    ct = write_series(tmp_path / "s" / "ct", phantom((20, 32, 32)), series_number=2,
                      study_uid=study)
    vols = read_volumes(str(tmp_path / "s"))
    assert [v.array.shape[0] for v in vols] == [2, 20]
    assert not isinstance(_mapped_by(vols[0].array), mmap.mmap)
    assert isinstance(_mapped_by(vols[1].array), mmap.mmap)
    assert np.array_equal(vols[1].array, ct.values)


def test_a_compressed_folder_that_opens_lazily_is_not_decoded_ahead(tmp_path, monkeypatch):
    """napari's reader opens a series over its threshold lazily, and a lazy read never
    takes frames decoded during the scan: none are queued for decoding."""
    monkeypatch.setenv("NAPARI_DICOMTOOLS_WORKERS", "2")
    write_series(tmp_path / "rle", phantom((12, 32, 32)), transfer_syntax="1.2.840.10008.1.2.5")

    def queued(ahead):
        """Paths ``ahead`` queued for decoding (counted as submitted, not as run)."""
        paths = []
        submit = ahead.pool.submit

        def counting(fn, inst):
            paths.append(inst.path)
            return submit(fn, inst)

        ahead.pool.submit = counting
        return paths

    size = 12 * 32 * 32 * 2
    with volume.DecodeAhead(max_volume=size - 1) as ahead:  # the series is over it
        decoded = queued(ahead)
        series = ahead.scan(str(tmp_path / "rle"))
        lazy = read_volume(series[0], lazy=True, ahead=ahead)
    # at most the first file: the scan says how many it parses only after it
    assert len(decoded) <= 1 and ahead.served == 0
    with volume.DecodeAhead(max_volume=size) as ahead:  # fits: queued during the scan
        decoded = queued(ahead)
        series = ahead.scan(str(tmp_path / "rle"))
        eager = read_volume(series[0], ahead=ahead)
    assert len(decoded) == 12 and ahead.stopped
    assert np.array_equal(np.asarray(lazy.array), eager.array)


def test_scan_stops_decoding_ahead_however_it_ends(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_DICOMTOOLS_WORKERS", "2")
    write_series(tmp_path / "ct", phantom((4, 16, 16)))
    seen = []
    with volume.DecodeAhead() as ahead:
        found = ahead.scan(str(tmp_path / "ct"), progress=lambda d, t: seen.append((d, t)))
        assert ahead.stopped and len(found) == 1 and seen[-1] == (4, 4)
    with volume.DecodeAhead() as ahead:
        with pytest.raises(DicomToolsError, match="no such file"):
            ahead.scan(str(tmp_path / "nowhere"))
        assert ahead.stopped
