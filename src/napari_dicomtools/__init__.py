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

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on first use (see __getattr__), these for type checkers
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


def __getattr__(name: str) -> Any:
    """The public names on first use (PEP 562): ``from napari_dicomtools import read_volume``
    imports numpy, the series model and the reader then, not when a command that needs none
    of them (``dicomtools anonymize``) starts. ``__version__`` too: importlib.metadata costs
    tens of milliseconds."""
    if name == "__version__":
        return _version()
    if name not in __all__:  # a submodule not imported yet: the import system tries it next
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import core

    value = getattr(core, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _version() -> str:
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
