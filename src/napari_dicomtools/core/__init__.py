"""The napari-free core: scanning, geometry, volumes. Safe to import without Qt."""

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

__all__ = [
    "DicomToolsError", "GeometryError", "NoImageError", "NoSeriesError", "NotDicomError",
    "UnreadableDicomError", "metadata_table", "Series", "SeriesList", "Skipped", "Volume", "read_volume",
    "read_volumes", "scan",
]
