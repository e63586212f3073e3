"""Sample data: a synthetic CT phantom written as a real DICOM series, and pydicom's samples.

Every sample goes through the same scan -> read_volume -> layer path as a user's files.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from .core.synthetic import phantom, write_series

_PHANTOM_VERSION = "v1"


def phantom_series_dir() -> str:
    """Folder holding the synthetic phantom series (written once, then reused)."""
    root = os.path.join(tempfile.gettempdir(), "napari-dicomtools-samples")
    final = os.path.join(root, f"phantom-{_PHANTOM_VERSION}")
    if os.path.isdir(final) and len(os.listdir(final)) == 60:
        return final
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=root, prefix=".writing-")
    write_series(os.path.join(tmp, "s"), phantom((60, 160, 160)), spacing=(2.0, 0.9, 0.9),
                 origin=(-71.6, -71.6, -59.0), description="Synthetic CT phantom",
                 patient=("Phantom^Sample", "SAMPLE001"))
    if os.path.isdir(final):
        shutil.rmtree(final, ignore_errors=True)
    try:
        os.replace(os.path.join(tmp, "s"), final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _read(path):
    from ._reader import read_dicom

    return read_dicom(path)


def sample_phantom():
    """Synthetic CT (60 axial slices, 0.9 x 0.9 x 2.0 mm, HU) with known geometry."""
    return _read(phantom_series_dir())


def sample_ct():
    """pydicom's CT_small.dcm: one CT slice in HU with its position in the patient."""
    from pydicom.data import get_testdata_file

    return _read(get_testdata_file("CT_small.dcm"))


def sample_mr():
    """pydicom's MR_small.dcm: one MR slice."""
    from pydicom.data import get_testdata_file

    return _read(get_testdata_file("MR_small.dcm"))
