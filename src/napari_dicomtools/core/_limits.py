"""Resource limits for untrusted input: memory available, safe opening, capped inflation.

Everything here exists so that a hostile or broken file costs seconds and a bounded amount of
memory, and ends as a :class:`~.errors.DicomToolsError` naming the file, instead of a hang
(a FIFO), an exhausted machine (a zip or deflate bomb, an absurd declared image size) or a
dead process.
"""

from __future__ import annotations

import io
import os
import stat
import zlib
from typing import BinaryIO

from .errors import DicomToolsError, UnreadableDicomError

#: exceptions that must never be swallowed by a "the decoder failed" handler
FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit)

#: deflate cannot expand data more than ~1032:1; a higher declared ratio is a lie or a bomb
MAX_DEFLATE_RATIO = 1100

_CHUNK = 1 << 20


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def _address_space_left() -> int | None:
    """Bytes of address space left under ``RLIMIT_AS`` (None when unlimited)."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, OSError, ValueError):
        return None
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    used = 0
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmSize:"):
                    used = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    return max(0, soft - used)


def _cgroup_left() -> int | None:
    try:
        with open("/sys/fs/cgroup/memory.max", "rb") as f:
            raw = f.read().strip()
        if raw == b"max":
            return None
        with open("/sys/fs/cgroup/memory.current", "rb") as f:
            cur = int(f.read().strip())
        return max(0, int(raw) - cur)
    except (OSError, ValueError):
        return None


def available_memory() -> int:
    """Bytes this process can still allocate: the least of the kernel's ``MemAvailable``,
    the address space left under ``RLIMIT_AS`` and the cgroup's remaining memory.

    Returns a large number (1 TiB) when none of them can be read.
    """
    vals = [v for v in (_meminfo_available(), _address_space_left(), _cgroup_left())
            if v is not None]
    return min(vals) if vals else 1 << 40


def _fmt(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def format_bytes(n: float) -> str:
    """``3221225472`` -> ``"3.0 GiB"``."""
    return _fmt(float(n))


def check_allocation(path: str | os.PathLike[str] | None, nbytes: int, what: str, fraction: float = 0.8) -> None:
    """Refuse (with a one-line reason) to allocate ``nbytes`` when memory cannot hold it.

    Raises
    ------
    UnreadableDicomError
        When ``nbytes`` exceeds ``fraction`` of :func:`available_memory`.
    """
    avail = available_memory()
    if nbytes > fraction * avail:
        raise UnreadableDicomError(
            path, f"{what} needs {format_bytes(nbytes)} but only {format_bytes(avail)} of "
                  "memory is available; refusing to allocate it")


#: open() flags that keep a FIFO or a terminal from blocking or becoming ours
_NO_WAIT = getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)


def open_regular(path: str | os.PathLike[str]) -> io.BufferedReader:
    """Open a regular file for reading without ever blocking.

    FIFOs, sockets and device files are refused (``open()`` on a FIFO waits forever for a
    writer): the file is opened non-blocking and checked with ``fstat`` before any read.

    Raises
    ------
    DicomToolsError
        Not a regular file.
    OSError
        The file cannot be opened.
    """
    def opener(p: str, flags: int) -> int:
        return os.open(p, flags | _NO_WAIT)

    f = open(path, "rb", opener=opener)  # noqa: SIM115 - returned to the caller
    try:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise DicomToolsError(path, f"not a regular file ({file_kind(st.st_mode)})")
        if hasattr(os, "set_blocking"):
            os.set_blocking(f.fileno(), True)
        return f
    except BaseException:
        f.close()
        raise


def read_regular_head(path: str | os.PathLike[str], n: int) -> tuple[bytes, int]:
    """``(the first n bytes, the file's size)`` of a regular file, in one open, ``fstat``,
    read and close: what scanning a folder pays per file (:func:`open_regular` and a buffered
    file object cost twice as much). FIFOs, sockets and devices are refused as there.

    Raises
    ------
    DicomToolsError
        Not a regular file.
    OSError
        The file cannot be opened or read.
    """
    fd = os.open(path, os.O_RDONLY | _NO_WAIT | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DicomToolsError(os.fspath(path), f"not a regular file "
                                                   f"({file_kind(st.st_mode)})")
        return os.read(fd, n), st.st_size
    finally:
        os.close(fd)


def file_kind(mode: int) -> str:
    """Human name of a non-regular file type (``"FIFO"``, ``"socket"``, ...)."""
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISDIR, "folder")):
        if test(mode):
            return name
    return "special file"


def inflate_capped(fp: BinaryIO, cap: int, path: str | os.PathLike[str] | None,
                   until: bytes | None = None) -> bytes:
    """Inflate a raw deflate stream (DICOM's Deflated Explicit VR Little Endian) incrementally,
    refusing as soon as the output would exceed ``cap`` bytes.

    With ``until``, inflation stops at the first even offset where ``until`` occurs and the
    output up to there is returned (a header read stops at Pixel Data: a bomb after it is
    never inflated).

    Raises
    ------
    UnreadableDicomError
        Corrupt stream, or more than ``cap`` bytes of output (a deflate bomb).
    """
    d = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    while True:
        # small input pieces: each call copies its unconsumed input, so keep that short
        data = fp.read(1 << 16)
        if not data:
            break
        while data:
            try:
                piece = d.decompress(data, 4 * _CHUNK)
            except zlib.error as exc:
                raise UnreadableDicomError(path, f"corrupt deflated data set ({exc})") from None
            if len(out) + len(piece) > cap:
                raise UnreadableDicomError(
                    path, f"deflated data set inflates to more than {format_bytes(cap)} "
                          "(a deflate bomb, or more than memory allows); refused")
            searched = max(0, len(out) - 16)
            out += piece
            if until is not None:
                at = out.find(until, searched)
                while at >= 0 and at % 2:
                    at = out.find(until, at + 1)
                if at >= 0:
                    return bytes(out[:at])
            data = d.unconsumed_tail
        if d.eof:
            break
    try:
        out += d.flush()
    except zlib.error as exc:
        raise UnreadableDicomError(path, f"corrupt deflated data set ({exc})") from None
    if len(out) > cap:
        raise UnreadableDicomError(path, f"deflated data set inflates to more than "
                                         f"{format_bytes(cap)}; refused")
    return bytes(out)
