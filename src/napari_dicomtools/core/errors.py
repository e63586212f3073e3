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

    Examples
    --------
    >>> err = NotDicomError("scans/notes.txt", "no DICM preamble")
    >>> str(err)
    'scans/notes.txt: no DICM preamble'
    >>> isinstance(err, DicomToolsError), err.path, err.reason
    (True, 'scans/notes.txt', 'no DICM preamble')
    """

    def __init__(self, path: str | os.PathLike[str] | None, reason: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class NotDicomError(DicomToolsError):
    """The file is not DICOM at all (no DICM preamble and no plausible data set).

    Parameters
    ----------
    path : str or os.PathLike or None
        The file or folder the error is about.
    reason : str
        What is wrong, in words a user can act on.
    """


class UnreadableDicomError(DicomToolsError):
    """The file looks like DICOM but cannot be parsed or decoded (truncated, corrupt, codec).

    Parameters
    ----------
    path : str or os.PathLike or None
        The file or folder the error is about.
    reason : str
        What is wrong, in words a user can act on.
    """


class NoImageError(DicomToolsError):
    """The file is DICOM but holds no image (SR, RT plan, missing Pixel Data, ...).

    Parameters
    ----------
    path : str or os.PathLike or None
        The file or folder the error is about.
    reason : str
        What is wrong, in words a user can act on.
    """


class NoSeriesError(DicomToolsError):
    """A path held no loadable image series; ``skipped`` lists every file and why.

    Parameters
    ----------
    path : str or os.PathLike or None
        The file or folder that was searched.
    reason : str
        What is wrong, in words a user can act on.
    skipped : iterable, optional
        The files passed over and why (``sources.Skipped`` records), kept as a list in
        ``skipped``.
    """

    def __init__(self, path: str | os.PathLike[str] | None, reason: str,
                 skipped: Iterable[Any] = ()) -> None:
        self.skipped = list(skipped)
        super().__init__(path, reason)


class GeometryError(DicomToolsError):
    """The slices of a series cannot be stacked into one volume (mixed orientation, ...).

    Parameters
    ----------
    path : str or os.PathLike or None
        The file or folder the error is about.
    reason : str
        What is wrong, in words a user can act on.
    """
