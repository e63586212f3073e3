"""napari-dicomtools: geometry-correct DICOM for napari, the console and the command line.

The public, napari-free API::

    from napari_dicomtools import scan, read_volume
    series = scan("/data/study")          # headers only: list of Series (+ .skipped)
    vol = read_volume(series[0])          # Volume: .array, .spacing, .affine_ras, ...

Diagnostics that are not user warnings (a decoder declining a frame, the fast header parser
handing a file to pydicom, an adapter shrugging off a display glitch) go to the
``napari_dicomtools`` logger and its children (``napari_dicomtools.core.headers``, ...). As a
library it only installs a :class:`logging.NullHandler`; ``dicomtools -v`` / ``-vv`` (or the
application's own logging configuration) shows them.
"""

import logging

from .core import (
    DicomToolsError,
    GeometryError,
    NoImageError,
    NoSeriesError,
    NotDicomError,
    Series,
    SeriesList,
    Skipped,
    UnreadableDicomError,
    Volume,
    metadata_table,
    read_volume,
    read_volumes,
    scan,
)

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str):
    """``__version__`` on first use: importlib.metadata costs tens of milliseconds, on every
    command-line call that never asks for it."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # one version source: git tags via hatch-vcs, recorded in the installed distribution
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _dist_version

    try:
        version = _dist_version("napari-dicomtools")
    except PackageNotFoundError:  # pragma: no cover - a source tree, not installed
        version = "0+unknown"
    globals()["__version__"] = version
    return version

__all__ = [
    "DicomToolsError", "GeometryError", "NoImageError", "NoSeriesError", "NotDicomError",
    "Series", "SeriesList", "Skipped", "UnreadableDicomError", "Volume", "metadata_table",
    "read_volume",
    "read_volumes", "scan", "__version__",
]
