"""File safety for every writer: outputs appear complete or not at all, are never silently
overwritten, never land inside a source, and have names the file system accepts.

:func:`atomic_output` writes through a temporary file beside the destination, published by an
exclusive hard link (or an atomic replace with ``overwrite``); :func:`refuse_inside_source`
keeps outputs out of source folders; :func:`fit_name` shortens names to the file system's
limit; :func:`clean_stale_partials` removes what a killed writer left behind.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import DicomToolsError, os_error_reason

__all__ = ["NAME_MAX", "PARTIAL_PREFIX", "STALE_AFTER", "atomic_output", "clean_stale_partials",
           "fit_name", "refuse_inside_source"]

log = logging.getLogger(__name__)


def refuse_inside_source(out: str | os.PathLike[str],
                         src: str | os.PathLike[str]) -> None:
    """Raise if ``out`` is ``src``'s folder or inside it: sources are never written.

    Real paths are compared, so a source given as a symlink (to a file or a folder), an
    output reached through a symlinked folder, or an output that is itself a symlink into
    the source are all refused. Both the folder holding a symlinked source file and the
    folder of the file it points to count as the source.

    Parameters
    ----------
    out : str or os.PathLike
        The output file or folder about to be written.
    src : str or os.PathLike
        A source file or folder.

    Raises
    ------
    DicomToolsError
        ``out`` is (inside) a source folder, or is a source file.

    Examples
    --------
    >>> import os, tempfile
    >>> src = tempfile.mkdtemp()
    >>> refuse_inside_source(tempfile.mkdtemp(), src)  # a sibling folder is fine
    >>> refuse_inside_source(os.path.join(src, "out"), src)
    Traceback (most recent call last):
    ...
    napari_dicomtools.core.errors.DicomToolsError: ...: is inside the source ...
    """
    src = os.fspath(src)
    child = os.path.realpath(os.fspath(out))
    real_src = os.path.realpath(src)
    folders = {real_src if os.path.isdir(real_src) else os.path.dirname(real_src)}
    if not os.path.isdir(src):
        folders.add(os.path.realpath(os.path.dirname(os.path.abspath(src))))
    for parent in folders:
        if child == parent or child.startswith(parent.rstrip(os.sep) + os.sep):
            raise DicomToolsError(out, f"is inside the source {parent}; choose an output "
                                       "outside it (sources are never written)")


#: Temporary files of :func:`atomic_output` are ``.dicomtools-partial-<pid>-<random>``
PARTIAL_PREFIX = ".dicomtools-partial-"
#: A temporary file of ours older than this (seconds) whose process is gone is debris
STALE_AFTER = 600.0
NAME_MAX = 255
_CLEANED: set[str] = set()


def fit_name(name: str, limit: int = NAME_MAX) -> str:
    """Shorten a file name to ``limit`` bytes of UTF-8, cut on a character boundary and
    keeping its extension (``.nii.gz`` counts as one).

    Parameters
    ----------
    name : str
        A file name (no folder).
    limit : int, optional
        The most bytes of UTF-8 the name may take (255, most file systems' limit).

    Returns
    -------
    str
        ``name`` itself when it fits, else its stem cut to fit followed by its extension
        (an extension over 16 bytes is not kept apart).

    Examples
    --------
    >>> fit_name("a" * 300 + ".png") == "a" * 251 + ".png"
    True
    """
    if len(name.encode("utf-8")) <= limit:
        return name
    low = name.lower()
    ext = ".nii.gz" if low.endswith(".nii.gz") else os.path.splitext(name)[1]
    if len(ext.encode("utf-8")) > 16:
        ext = ""
    stem = name[:len(name) - len(ext)] if ext else name
    room = limit - len(ext.encode("utf-8"))
    cut = stem.encode("utf-8")[:room].decode("utf-8", "ignore")
    return cut + ext


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_stale_partials(folder: str | os.PathLike[str], *,
                         older_than: float = STALE_AFTER) -> list[str]:
    """Remove our own temporary files left in ``folder`` by a killed writer.

    Only names made by :func:`atomic_output` (``.dicomtools-partial-<pid>-<random>``) are
    touched, and only when older than ``older_than`` seconds and their process is no longer
    running on this machine (an active writer keeps its file's time fresh). Each removal is
    logged at INFO level.

    Parameters
    ----------
    folder : str or os.PathLike
        The folder to clean (a missing or unreadable folder is left alone).
    older_than : float
        Seconds since the file was last written.

    Returns
    -------
    list of str
        The files removed.

    Examples
    --------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> debris = os.path.join(folder, PARTIAL_PREFIX + "999999999-0a1b")  # no such process
    >>> open(debris, "wb").close()
    >>> clean_stale_partials(folder, older_than=0) == [debris]
    True
    >>> os.listdir(folder)
    []
    """
    import time

    folder = os.fspath(folder)
    removed: list[str] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        if not e.name.startswith(PARTIAL_PREFIX):
            continue
        try:
            pid = int(e.name[len(PARTIAL_PREFIX):].split("-", 1)[0])
            st = e.stat(follow_symlinks=False)
        except (ValueError, OSError):
            continue
        import stat as _stat

        if not _stat.S_ISREG(st.st_mode) or now - st.st_mtime < older_than or (
                pid != os.getpid() and _pid_alive(pid)):
            continue
        try:
            os.unlink(e.path)
            removed.append(e.path)
            log.info("removed %s: a partial output left by process %d, which is gone", e.path,
                     pid)
        except OSError as exc:
            log.debug("cannot remove the stale partial %s: %s", e.path, exc)
    return removed


def _new_partial(folder: str) -> str:
    """Create (exclusively) an empty temporary file in ``folder`` with the mode a plain
    ``open()`` gives (0666 less the umask), not mkstemp's 0600."""
    for _ in range(100):
        tmp = os.path.join(folder, f"{PARTIAL_PREFIX}{os.getpid()}-{os.urandom(6).hex()}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name in {folder}")


def _publish(tmp: str, path: str, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``path``: atomically replace when ``overwrite``, else
    an exclusive hard link that fails if ``path`` appeared meanwhile (another writer)."""
    import errno as _errno

    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise DicomToolsError(path, "exists (written meanwhile by another process?); not "
                                    "overwriting (use overwrite=True / --force)") from None
    except OSError as exc:
        if exc.errno not in (_errno.EPERM, _errno.ENOTSUP, _errno.EOPNOTSUPP, _errno.EXDEV,
                             _errno.EMLINK, _errno.ENOSYS):
            raise
        # no hard links here (FAT, some network/FUSE file systems): reserve the name
        # exclusively, then replace the empty placeholder
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            raise DicomToolsError(path, "exists (written meanwhile by another process?); "
                                        "not overwriting") from None
        os.replace(tmp, path)
        return
    try:
        os.unlink(tmp)
    except OSError:
        pass


@contextmanager
def atomic_output(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[str]:
    """Yield a temporary path beside ``path``; move it to ``path`` when the block succeeds.

    The output appears complete or not at all. Without ``overwrite`` the final step is an
    exclusive hard link, so of two writers racing for one name exactly one wins and the
    other gets "exists"; with ``overwrite`` an atomic ``os.replace``. Missing folders are
    created; the file gets the mode ``open()`` would give (umask respected). Temporary
    files are ``.dicomtools-partial-<pid>-<random>``; stale ones a killed writer left in the
    folder are removed (:func:`clean_stale_partials`) the first time a process writes there.

    Parameters
    ----------
    path : str or os.PathLike
        The final output file.
    overwrite : bool
        Replace an existing ``path`` (default: refuse).

    Yields
    ------
    str
        The temporary file to write (it exists, empty).

    Raises
    ------
    DicomToolsError
        ``path`` exists and ``overwrite`` is False, ``path`` is a folder, its name is too
        long, or the file system refused the write (read-only, permission, disk full, ...):
        the message names the path and the reason.

    Examples
    --------
    >>> import os, tempfile
    >>> out = os.path.join(tempfile.mkdtemp(), "report.txt")
    >>> with atomic_output(out) as tmp:
    ...     with open(tmp, "w") as f:
    ...         _ = f.write("done")
    >>> open(out).read()
    'done'
    >>> with atomic_output(out) as tmp:
    ...     pass
    Traceback (most recent call last):
    ...
    napari_dicomtools.core.errors.DicomToolsError: ...report.txt: exists; not overwriting (...)
    """
    path = os.fspath(path)
    base = os.path.basename(path)
    if len(base.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise DicomToolsError(path, f"file name is {len(base.encode('utf-8', 'replace'))} "
                                    f"bytes; file systems allow {NAME_MAX}")
    if os.path.isdir(path):
        raise DicomToolsError(path, "is a folder; not replacing it with a file")
    if os.path.lexists(path) and not overwrite:
        raise DicomToolsError(path, "exists; not overwriting (use overwrite=True / --force)")
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        if folder not in _CLEANED:
            _CLEANED.add(folder)
            clean_stale_partials(folder)
        tmp = _new_partial(folder)
        yield tmp
        _publish(tmp, path, overwrite)
        tmp = None
    except OSError as exc:
        name = os.fspath(exc.filename) if exc.filename else ""
        ours = (not name or os.path.basename(name).startswith(PARTIAL_PREFIX)
                or os.path.abspath(path).startswith(os.path.abspath(name)))
        where = path if ours else name  # the output, unless a source file failed
        if isinstance(exc, IsADirectoryError) and where == path:
            raise DicomToolsError(path, "is a folder; not replacing it with a file") from None
        raise DicomToolsError(where, os_error_reason(exc, "cannot write" if where == path
                                                     else "failed")) from None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass
