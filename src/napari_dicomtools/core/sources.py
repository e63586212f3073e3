"""Where the bytes come from: files, folders, ``.zip`` archives and DICOMDIRs -> :class:`Source`.

The first stage of the flow ``sources -> headers -> series -> volume -> writers``:
:func:`iter_sources` lists every candidate file under a path (a folder recursively, the
members of a zip archive, the files a DICOMDIR lists) and :class:`Skipped` records what was
left out and why. Zip members are streamed, never read whole, and refused when they declare
more than memory holds or a compression ratio no deflate stream can have (a zip bomb).
"""

from __future__ import annotations

import io
import logging
import os
import stat
import threading
import zipfile
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from ._limits import (
    MAX_DEFLATE_RATIO,
    check_allocation,
    file_kind,
    format_bytes,
    open_regular,
    read_regular_head,
)
from .errors import DicomToolsError, UnreadableDicomError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["Skipped", "Source", "iter_sources"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """A file on disk, or a member of a zip archive.

    Parameters
    ----------
    path : str
        The file, or the ``.zip`` archive holding ``member``.
    member : str, optional
        The member's name inside the archive.

    Examples
    --------
    >>> str(Source("study.zip", "CT/1.dcm"))
    'study.zip::CT/1.dcm'
    >>> Source.from_string("/data/ct/1.dcm")
    Source(path='/data/ct/1.dcm', member=None)
    """

    path: str
    member: str | None = None

    def __str__(self) -> str:
        return f"{self.path}::{self.member}" if self.member else self.path

    @classmethod
    def from_string(cls, text: str | os.PathLike[str]) -> Source:
        """Inverse of ``str(source)``: ``"archive.zip::member"`` or a plain path."""
        text = os.fspath(text)
        zpath, sep, member = text.partition("::")
        return cls(zpath, member) if sep and os.path.isfile(zpath) else cls(text)

    def open(self) -> IO[bytes] | io.RawIOBase:
        """A binary, seekable file object (caller closes it).

        Regular files only (a FIFO, socket or device raises :class:`DicomToolsError` instead of
        blocking). A zip member is streamed, never read whole: a member whose declared size
        exceeds the memory available, or whose compression ratio no deflate stream can have
        (a zip bomb), is refused before any of it is inflated.

        Raises
        ------
        DicomToolsError
            Not a regular file; :class:`UnreadableDicomError` for a missing, unreadable or
            oversized zip member.
        OSError
            The file cannot be opened.
        """
        if self.member is None:
            return open_regular(self.path)
        zf = _archive(self.path)
        try:
            info = zf.getinfo(self.member)
            _check_member(str(self), info)
            with _ZIP_LOCK:
                return _MemberStream(zf.open(info))
        except KeyError:
            raise UnreadableDicomError(str(self), "no such member in the archive") from None
        except (RuntimeError, NotImplementedError, zipfile.BadZipFile, ValueError,
                OSError) as exc:
            raise UnreadableDicomError(str(self), f"zip member cannot be read ({exc})") \
                from None

    def read_head(self, n: int) -> tuple[bytes, int]:
        """``(the first n bytes, the size)`` of the file or zip member: what a header scan
        reads of most files, a plain file in one open, ``fstat``, read and close.

        Parameters
        ----------
        n : int
            Bytes wanted (fewer come back from a shorter file).

        Returns
        -------
        tuple of (bytes, int)
            The bytes, and the size of the whole file (of the member, uncompressed).

        Raises
        ------
        DicomToolsError
            As :meth:`open`.
        OSError
            The file cannot be opened or read.

        Examples
        --------
        >>> from pydicom.data import get_testdata_file
        >>> head, size = Source(get_testdata_file("CT_small.dcm")).read_head(132)
        >>> head[128:], size
        (b'DICM', 39206)
        """
        if self.member is None:
            return read_regular_head(self.path, n)
        with self.open() as fp:
            return fp.read(n), self.size()

    def size(self) -> int:
        """Bytes of the file, or the uncompressed size of the zip member."""
        if self.member is None:
            return os.path.getsize(self.path)
        try:
            return int(_archive(self.path).getinfo(self.member).file_size)
        except KeyError:
            raise UnreadableDicomError(str(self), "no such member in the archive") from None


# Open archives, so a zip of N members is not re-read N times (its central directory alone
# is O(N)): keyed by identity, size and mtime (a rewritten archive is reopened) and by process
# (a forked worker must not share the parent's file offset).
_ZIP_LOCK = threading.RLock()
_ZIP_CACHE: dict[tuple[str, int, int, int, int], zipfile.ZipFile] = {}
_ZIP_CACHE_SIZE = 2


def _archive(path: str) -> zipfile.ZipFile:
    """The (cached) open :class:`zipfile.ZipFile` of a regular file ``path``.

    Raises
    ------
    DicomToolsError
        Not a regular file, or not a readable zip archive.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UnreadableDicomError(path, f"cannot open: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DicomToolsError(path, f"not a regular file ({file_kind(st.st_mode)})")
    key = (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns, os.getpid())
    with _ZIP_LOCK:
        zf = _ZIP_CACHE.get(key)
        if zf is not None:
            return zf
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise UnreadableDicomError(path, f"unreadable zip archive ({exc})") from None
        while len(_ZIP_CACHE) >= _ZIP_CACHE_SIZE:
            # dropped, not closed: member streams still open keep the file open
            _ZIP_CACHE.pop(next(iter(_ZIP_CACHE)))
        _ZIP_CACHE[key] = zf
        return zf


class _MemberStream(io.RawIOBase):
    """A zip member as a seekable stream *without* a ``name``: pydicom re-reads deferred
    values from ``fp.name`` once the stream is closed, which for a member would be a path
    relative to the working directory (another file, or none)."""

    def __init__(self, f: IO[bytes]) -> None:
        super().__init__()
        self._f = f

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)

    def readinto(self, b: WriteableBuffer) -> int:
        view = memoryview(b).cast("B")
        data = self._f.read(len(view))
        view[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        try:
            self._f.close()
        finally:
            super().close()


def _check_member(name: str, info: zipfile.ZipInfo) -> None:
    """Refuse a zip member that declares more than memory holds or an impossible ratio."""
    size, packed = info.file_size, max(info.compress_size, 1)
    if info.compress_type != zipfile.ZIP_STORED and size > 64 * 2**20 and \
            size / packed > MAX_DEFLATE_RATIO:
        raise UnreadableDicomError(
            name, f"zip member declares {format_bytes(size)} from {format_bytes(packed)} "
                  f"(ratio {size / packed:,.0f}:1, more than compression can reach): a zip "
                  "bomb; refused")
    check_allocation(name, size, "zip member", fraction=1.0)


@dataclass
class Skipped:
    """A file (or frame) left out, and why.

    Creating one logs it at INFO level on the ``napari_dicomtools`` logger.

    Parameters
    ----------
    path : str
        The file (``archive.zip::member`` inside an archive), or ``file frame n``.
    reason : str
        Why it was left out, in words a user can act on.

    Examples
    --------
    >>> s = Skipped("study/notes.txt", "not DICOM (no DICM preamble)")
    >>> str(s)
    'study/notes.txt: not DICOM (no DICM preamble)'
    """

    path: str
    reason: str

    def __post_init__(self) -> None:
        log.info("skipped %s: %s", self.path, self.reason)

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


# --------------------------------------------------------------------------------------------
# walking the file system


def iter_sources(path: str | os.PathLike[str]) -> tuple[list[Source], list[Skipped]]:
    """Every candidate file under ``path`` (file, folder, ``.zip`` or DICOMDIR).

    A folder is walked recursively in sorted order; ``.zip`` archives in it are opened and
    their members listed (DICOMDIR indexes are skipped: the walk reaches their files anyway);
    a DICOMDIR given directly lists the files it references. FIFOs, sockets, devices and
    unreadable folders are skipped with the reason, never opened.

    Parameters
    ----------
    path : str or os.PathLike
        A file, a folder, a ``.zip`` archive or a DICOMDIR.

    Returns
    -------
    sources : list of Source
        The candidate files, not yet checked to be DICOM.
    skipped : list of Skipped
        What was left out, with the reason.

    Raises
    ------
    DicomToolsError
        ``path`` does not exist, or a DICOMDIR cannot be read.

    Examples
    --------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> for name in ("b.dcm", "a.dcm"):
    ...     open(os.path.join(folder, name), "wb").close()
    >>> sources, skipped = iter_sources(folder)
    >>> [os.path.basename(s.path) for s in sources], skipped
    (['a.dcm', 'b.dcm'], [])
    """
    path = os.fspath(path)
    skipped: list[Skipped] = []
    if os.path.isdir(path):
        out = []

        def unreadable(err: OSError) -> None:
            where = err.filename or path
            skipped.append(Skipped(os.fspath(where),
                                   f"folder cannot be read ({err.strerror or err})"))

        for root, dirs, files in os.walk(path, onerror=unreadable):
            dirs.sort()
            for fn in sorted(files):
                full = os.path.join(root, fn)
                why = _not_regular(full)
                if why:
                    skipped.append(Skipped(full, why))
                    continue
                if fn.upper() == "DICOMDIR":
                    continue  # an index of files that the walk reaches anyway
                if fn.lower().endswith(".zip") and zipfile.is_zipfile(full):
                    srcs, sk = _zip_sources(full)
                    out.extend(srcs)
                    skipped.extend(sk)
                    continue
                out.append(Source(full))
        return out, skipped
    if not os.path.exists(path):
        raise DicomToolsError(path, "no such file or folder")
    why = _not_regular(path)
    if why:
        return [], [Skipped(path, why)]
    if path.lower().endswith(".zip") and zipfile.is_zipfile(path):
        return _zip_sources(path)
    if os.path.basename(path).upper() == "DICOMDIR":
        return _dicomdir_sources(path)
    return [Source(path)], skipped


def _not_regular(path: str) -> str:
    """Why ``path`` is not a regular file we may open ("" when it is one)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(st.st_mode):
        return ""
    return f"not a regular file ({file_kind(st.st_mode)}); not opened"


def _zip_sources(path: str) -> tuple[list[Source], list[Skipped]]:
    out = []
    try:
        zf = _archive(path)
    except DicomToolsError as exc:
        return [], [Skipped(path, exc.reason)]
    for info in zf.infolist():
        if info.is_dir() or os.path.basename(info.filename).upper() == "DICOMDIR":
            continue
        out.append(Source(path, info.filename))
    return out, []


def _dicomdir_sources(path: str) -> tuple[list[Source], list[Skipped]]:
    import pydicom
    from pydicom.fileset import FileSet

    try:
        fs = FileSet(pydicom.dcmread(path))
    except Exception as exc:  # noqa: BLE001
        raise DicomToolsError(path, f"DICOMDIR cannot be read ({exc})") from None
    out: list[Source] = []
    skipped: list[Skipped] = []
    for inst in fs:
        p = os.fspath(inst.path)
        if not os.path.exists(p):
            skipped.append(Skipped(p, "listed in the DICOMDIR but missing on disk"))
        elif _not_regular(p):
            skipped.append(Skipped(p, _not_regular(p)))
        else:
            out.append(Source(p))
    return out, skipped
