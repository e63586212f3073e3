"""Lazy reads never mix up file sets, and never raise from a bad frame (issue 11)."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from napari_dicomtools.core.errors import DicomToolsError, GeometryError
from napari_dicomtools.core.series import scan
from napari_dicomtools.core.synthetic import write_series
from napari_dicomtools.core.volume import _read_series, read_volume


def ramp_values(n=4, rows=8, cols=8, seed=0):
    """Values that identify their slice: 100*k plus a small in-plane pattern."""
    rng = np.random.default_rng(seed)
    return ((np.arange(n) * 100 - 200)[:, None, None]
            + rng.integers(-40, 40, size=(1, rows, cols))).astype(np.int32)


def test_two_file_sets_sharing_a_series_uid_keep_their_own_pixels(tmp_path):
    uid = "1.2.826.0.1.3680043.9.7777.42"
    a = ramp_values(n=4, rows=8, cols=8, seed=1)
    b = a + 7
    write_series(tmp_path / "a", a, series_uid=uid, spacing=(2.0, 1.0, 1.0))
    write_series(tmp_path / "b", b, series_uid=uid, spacing=(2.0, 1.0, 1.0))
    (sa,), (sb,) = scan(tmp_path / "a"), scan(tmp_path / "b")
    assert sa.uid == sb.uid and sa.split == sb.split
    va, vb = read_volume(sa, lazy=True), read_volume(sb, lazy=True)
    assert va.array.name != vb.array.name
    # computed together (one dask graph): each keeps its own chunks
    import dask

    ga, gb = dask.compute(va.array, vb.array)
    assert np.array_equal(ga, a) and np.array_equal(gb, b)


def test_read_options_are_part_of_the_lazy_key(tmp_path):
    write_series(tmp_path / "s", ramp_values(n=3, rows=6, cols=6), modality="MR")
    (s,) = scan(tmp_path / "s")
    plain = _read_series(s, lazy=True)
    precise = _read_series(s, lazy=True, philips_precise=True)
    again = _read_series(s, lazy=True)
    assert plain.array.name != precise.array.name
    assert plain.array.name == again.array.name  # same files, same options: same key


def test_changed_file_changes_the_lazy_key(tmp_path):
    write_series(tmp_path / "s", ramp_values(n=3, rows=6, cols=6))
    (s,) = scan(tmp_path / "s")
    before = _read_series(s, lazy=True).array.name
    f = s.files[0]
    st = os.stat(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert _read_series(s, lazy=True).array.name != before


def test_lazy_frame_that_fails_is_blank_with_a_warning(tmp_path):
    truth = write_series(tmp_path / "s", ramp_values(n=4, rows=6, cols=6))
    (s,) = scan(tmp_path / "s")
    vol = read_volume(s, lazy=True)
    victim = s.frames[1].instance.path
    with open(victim, "r+b") as f:  # truncate the pixels of one file after the scan
        f.truncate(os.path.getsize(victim) - 10)
    with pytest.warns(UserWarning, match="frame left blank"):
        arr = np.asarray(vol.array)
    assert arr.shape == s.shape
    k = [f.instance.path for f in s.frames].index(victim)
    for j in range(len(s.frames)):
        if j != k:
            assert np.array_equal(arr[j], truth.values[j])


def test_read_series_raises_only_dicomtools_errors(tmp_path):
    write_series(tmp_path / "s", ramp_values(n=3, rows=6, cols=6))
    (s,) = scan(tmp_path / "s")
    for f in s.frames:
        f.pixel_spacing = (0.0, 0.0)  # geometry that cannot be right, set after the scan
    with pytest.raises(GeometryError):
        _read_series(s, lazy=False)
    (s,) = scan(tmp_path / "s")
    for f in s.frames:
        f.slope = float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _read_series(s, lazy=False)
        except DicomToolsError:
            pass
