"""Shared fixtures: small DICOM series with exactly known geometry."""

from __future__ import annotations

import numpy as np
import pytest

from napari_dicomtools.core.synthetic import phantom, write_series


def ramp_values(n=12, rows=20, cols=24, seed=0):
    """Values that identify their voxel: slice k holds 100*k + a small in-plane pattern."""
    rng = np.random.default_rng(seed)
    base = (np.arange(n) * 100 - 600)[:, None, None]
    plane = rng.integers(-40, 40, size=(1, rows, cols))
    return (base + plane).astype(np.int32)


@pytest.fixture
def make_series(tmp_path):
    """Factory: write a series under tmp_path/<name> and return its Truth."""
    counter = {"n": 0}

    def _make(name=None, values=None, **kw):
        counter["n"] += 1
        d = tmp_path / (name or f"series{counter['n']}")
        if values is None:
            values = ramp_values()
        return write_series(d, values, **kw)

    return _make


@pytest.fixture
def ct_folder(tmp_path):
    """A 30-slice phantom CT in a folder; returns (folder, Truth)."""
    d = tmp_path / "ct"
    truth = write_series(d, phantom((30, 64, 64)), spacing=(1.25, 0.7, 0.7))
    return d, truth


def write_4d(folder, volumes, **kw):
    """A 4D series: one ``write_series`` per volume (same SeriesInstanceUID) under
    ``folder/t<k>``, each file tagged with TemporalPositionIdentifier k + 1."""
    import pydicom

    uid = pydicom.uid.generate_uid()
    for t, values in enumerate(volumes):
        tr = write_series(folder / f"t{t}", values, series_uid=uid, **kw)
        for f in tr.files:
            ds = pydicom.dcmread(f)
            ds.TemporalPositionIdentifier = t + 1
            ds.save_as(f)


@pytest.fixture
def dciodvfy_errors():
    """``errors(path)``: the error lines dciodvfy (dicom3tools, installed by .ci/run) reports
    for a DICOM file written by us (issue 15: SEG, RTSTRUCT)."""
    import shutil
    import subprocess

    exe = shutil.which("dciodvfy")
    assert exe, "dciodvfy (Debian package dicom3tools) is not installed: see .ci/run"

    def errors(path) -> list[str]:
        res = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
        return [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]

    return errors
