"""One exception family for every public failure.

Each error carries the offending ``path`` (a file, folder or ``archive.zip::member``) and a
human ``reason``; ``str(err)`` reads ``"<path>: <reason>"`` so a message shown in napari or on
the command line names the file without further formatting.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

__all__ = ["DicomToolsError", "GeometryError", "NoImageError", "NoSeriesError", "NotDicomError",
           "UnreadableDicomError"]


class DicomToolsError(Exception):
    """Base class of every error napari-dicomtools raises on purpose.

    Parameters
    ----------
    path : str or os.PathLike or None
        The file or folder the error is about.
    reason : str
        What is wrong, in words a user can act on.
    """

    def __init__(self, path: str | os.PathLike[str] | None, reason: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class NotDicomError(DicomToolsError):
    """The file is not DICOM at all (no DICM preamble and no plausible data set)."""


class UnreadableDicomError(DicomToolsError):
    """The file looks like DICOM but cannot be parsed or decoded (truncated, corrupt, codec)."""


class NoImageError(DicomToolsError):
    """The file is DICOM but holds no image (SR, RT plan, missing Pixel Data, ...)."""


class NoSeriesError(DicomToolsError):
    """A path held no loadable image series; ``skipped`` lists every file and why."""

    def __init__(self, path: str | os.PathLike[str] | None, reason: str,
                 skipped: Iterable[Any] = ()) -> None:
        self.skipped = list(skipped)
        super().__init__(path, reason)


class GeometryError(DicomToolsError):
    """The slices of a series cannot be stacked into one volume (mixed orientation, ...)."""
