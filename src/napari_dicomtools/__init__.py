"""napari-dicomtools: geometry-correct DICOM for napari, the console and the command line.

The public, napari-free API::

    from napari_dicomtools import scan, read_volume
    series = scan("/data/study")          # headers only: list of Series (+ .skipped)
    vol = read_volume(series[0])          # Volume: .array, .spacing, .affine_ras, ...
"""

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

__version__ = "0.1.0"

__all__ = [
    "DicomToolsError", "GeometryError", "NoImageError", "NoSeriesError", "NotDicomError",
    "Series", "SeriesList", "Skipped", "UnreadableDicomError", "Volume", "metadata_table",
    "read_volume",
    "read_volumes", "scan", "__version__",
]
