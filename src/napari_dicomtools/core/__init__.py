"""The napari-free core: scanning, geometry, volumes. Safe to import without Qt.

The names below are imported on first use (PEP 562): ``from napari_dicomtools.core import
read_volume`` works as before, while a command that needs only the errors or the anonymizer
(``dicomtools anonymize``, ``dicomtools info``) does not pay for numpy, the series model and
the volume reader at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from .errors import (
        DicomToolsError,
        GeometryError,
        NoImageError,
        NoSeriesError,
        NotDicomError,
        UnreadableDicomError,
    )
    from .metadata import metadata_table
    from .series import Series, SeriesList, scan
    from .sources import Skipped
    from .volume import Volume, read_volume, read_volumes

#: public name -> the core module that defines it
_LAZY = {
    "DicomToolsError": "errors", "GeometryError": "errors", "NoImageError": "errors",
    "NoSeriesError": "errors", "NotDicomError": "errors", "UnreadableDicomError": "errors",
    "metadata_table": "metadata",
    "Series": "series", "SeriesList": "series", "scan": "series",
    "Skipped": "sources",
    "Volume": "volume", "read_volume": "volume", "read_volumes": "volume",
}

__all__ = [
    "DicomToolsError", "GeometryError", "NoImageError", "NoSeriesError", "NotDicomError",
    "UnreadableDicomError", "metadata_table", "Series", "SeriesList", "Skipped", "Volume", "read_volume",
    "read_volumes", "scan",
]


def __getattr__(name: str) -> Any:
    """A public name of :data:`__all__`, imported from its module on first use (then kept in
    this module's namespace, so the next look-up is an ordinary one)."""
    module = _LAZY.get(name)
    if module is None:  # a submodule not imported yet: the import system tries it next
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
