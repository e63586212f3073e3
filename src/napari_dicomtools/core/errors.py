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
           "UnreadableDicomError", "exception_text", "os_error_reason"]


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


def exception_text(exc: BaseException, limit: int = 200) -> str:
    """An unexpected exception as one line for a reason: its type and its message.

    Used where a parser or decoder raised something of its own (``struct.error``,
    ``ValueError``...) and the reason must still say what happened, in one readable line.

    Parameters
    ----------
    exc : BaseException
        The exception.
    limit : int
        Most characters of the message kept (``...`` marks a cut).

    Returns
    -------
    str
        ``"<type>: <message>"`` with white space collapsed, or the type alone when the
        message is empty.

    Examples
    --------
    >>> exception_text(ValueError("bad\\n  value"))
    'ValueError: bad value'
    >>> exception_text(KeyError())
    'KeyError'
    >>> exception_text(RuntimeError("x" * 30), limit=10)
    'RuntimeError: xxxxxxxxxx...'
    """
    msg = " ".join(str(exc).split())
    if len(msg) > limit:
        msg = msg[:limit] + "..."
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def os_error_reason(exc: OSError, verb: str = "cannot write") -> str:
    """An operating-system error as the reason of a :class:`DicomToolsError`: what failed,
    the system's words and the errno name (``ENOSPC``, ``EACCES``...), which users search for.

    Parameters
    ----------
    exc : OSError
        The error (its ``filename`` is not repeated: the error's path names the file).
    verb : str
        What was being done, e.g. ``"cannot write"`` or ``"cannot create the folder"``.

    Returns
    -------
    str
        ``"<verb>: <system message> (<ERRNO>)"``.

    Examples
    --------
    >>> import errno, os
    >>> exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/out.nii")
    >>> os_error_reason(exc)
    'cannot write: No space left on device (ENOSPC)'
    >>> str(DicomToolsError(exc.filename, os_error_reason(exc, "cannot create")))
    '/data/out.nii: cannot create: No space left on device (ENOSPC)'
    """
    import errno

    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc)
    return f"{verb}: {text}" + (f" ({name})" if name else "")
