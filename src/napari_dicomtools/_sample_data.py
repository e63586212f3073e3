"""Sample data: a synthetic CT phantom written as a real DICOM series, and pydicom's samples.

Every sample goes through the same scan -> read_volume -> layer path as a user's files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import TYPE_CHECKING

from .core.synthetic import phantom, write_series

if TYPE_CHECKING:
    from ._reader import LayerData

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


def _read(path: str) -> list[LayerData]:
    from ._reader import read_dicom

    return read_dicom(path)


def sample_phantom() -> list[LayerData]:
    """Synthetic CT (60 axial slices, 0.9 x 0.9 x 2.0 mm, HU) with known geometry."""
    return _read(phantom_series_dir())


def _pydicom_file(name: str) -> str:
    """The path of one of pydicom's bundled test files."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if not isinstance(path, str):  # None: not in this pydicom installation
        raise FileNotFoundError(f"pydicom's test file {name} is not installed")
    return path


def sample_ct() -> list[LayerData]:
    """pydicom's CT_small.dcm: one CT slice in HU with its position in the patient."""
    return _read(_pydicom_file("CT_small.dcm"))


def sample_mr() -> list[LayerData]:
    """pydicom's MR_small.dcm: one MR slice."""
    return _read(_pydicom_file("MR_small.dcm"))
