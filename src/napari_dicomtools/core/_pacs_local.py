"""The local side of PACS transfers: the retrieve cache and the files to send.

Private: :mod:`napari_dicomtools.core.pacs` re-exports the public names.

The cache holds ``<cache>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``
(UIDs checked, so no path escapes). Each received instance is verified (it parses, its UIDs
are the ones asked for, its pixel data is whole) and published atomically, so an interrupted
retrieve leaves only complete instances; ``.complete`` marks a series verified against the
server's instance list. :func:`fetch_whole` is the resume rule.
"""

from __future__ import annotations

import io
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Protocol, cast

from ._pacs_profiles import PacsError, ServerProfile, _public
from .errors import DicomToolsError

if TYPE_CHECKING:
    from pydicom import Dataset

    from .sources import Source

__all__ = ["RetrieveResult", "SendResult", "fetch_whole", "is_complete", "series_folder"]

COMPLETE_MARKER = ".complete"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")

#: Resume rule (see :func:`fetch_whole`): the fraction of a series that must be missing
#: before it is asked for whole rather than instance by instance (None: never). Measured by
#: ``benchmarks/bench_pacs.py --resume`` on Orthanc 1.10 (DICOMweb plugin 1.7), 300 CT
#: slices of 512x512, 4 WADO-RS workers: the missing instances alone take ~2.5 s + 75 ms per
#: instance, the whole series ~9-10 s, so they break even near a third of the series. A
#: UID-list C-GET of the missing instances beat the whole series at every fraction (5-90%).
WHOLE_SERIES_ABOVE: dict[str, float | None] = {"wado": 1 / 3, "c-get": None, "c-move": None}


class Received(Protocol):
    """Where a transfer hands each instance: ``received(sop, data)`` for an encoded instance
    (``sop`` as the server announced it, None if unknown), ``received(sop, None, why)`` for
    one that could not be taken."""

    def __call__(self, sop: str | None, data: bytes | None, why: str | None = None, /
                 ) -> None: ...


@_public
@dataclass
class RetrieveResult:
    """What :func:`~napari_dicomtools.core.pacs.retrieve` did: the cache folder and the
    instance counts.

    Parameters
    ----------
    folder : str
        The series' cache folder (reads with ``scan`` / ``read_volume``).
    expected : int
        Instances the server lists for the series.
    fetched : int
        Instances transferred by this call.
    reused : int
        Instances already cached (a resumed retrieve).
    missing : list of str
        Expected SOP Instance UIDs not received.
    rejected : list of tuple of (str, str)
        ``(SOP Instance UID or "?", reason)`` of instances received but refused (corrupt,
        truncated, another series').

    Examples
    --------
    >>> r = RetrieveResult("/cache/1.2/1.2.3", expected=3, fetched=1, reused=2)
    >>> r.complete
    True
    >>> RetrieveResult("/cache/1.2/1.2.3", expected=3, missing=["1.2.3.4"]).complete
    False
    """

    folder: str
    expected: int
    fetched: int = 0
    reused: int = 0
    missing: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when every expected instance is cached and none was refused."""
        return not self.missing and not self.rejected


@_public
@dataclass
class SendResult:
    """What :func:`~napari_dicomtools.core.pacs.send` did with every file.

    Parameters
    ----------
    sent : list of str
        SOP Instance UIDs the server stored.
    failed : list of tuple of (str, str)
        ``(file, reason)`` of instances the server refused, with its reason.
    skipped : list of tuple of (str, str)
        ``(file, reason)`` of files not sent (not DICOM, unreadable, not storable).

    Examples
    --------
    >>> r = SendResult(sent=["1.2.3"], skipped=[("notes.txt", "not DICOM")])
    >>> len(r.sent), r.failed, r.skipped[0][0]
    (1, [], 'notes.txt')
    """

    sent: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------- cache folders


def _check_uid(uid: str, what: str, where: str | os.PathLike[str] | None) -> str:
    """``uid`` stripped of padding; a :class:`PacsError` naming ``where`` unless a UID."""
    uid = str(uid).strip().rstrip("\x00")
    if not _UID.match(uid) or len(uid) > 64:
        raise PacsError(where, f"{what} {uid[:80]!r} is not a valid UID")
    return uid


def series_folder(cache: str | os.PathLike[str], study_uid: str, series_uid: str) -> str:
    """The cache folder of one series: ``<cache>/<study UID>/<series UID>``.

    Parameters
    ----------
    cache : str or os.PathLike
        The cache root (see :func:`~napari_dicomtools.core.pacs.default_cache`).
    study_uid : str
        StudyInstanceUID.
    series_uid : str
        SeriesInstanceUID.

    Returns
    -------
    str
        The folder's path (not created).

    Raises
    ------
    PacsError
        A UID is not one (digits and dots, at most 64 characters), so no path can escape
        the cache.

    Examples
    --------
    >>> series_folder("cache", "1.2.3", "1.2.3.4").split(os.sep)
    ['cache', '1.2.3', '1.2.3.4']
    >>> series_folder("cache", "1.2.3", "../etc")
    Traceback (most recent call last):
    ...
    napari_dicomtools.core.pacs.PacsError: cache: SeriesInstanceUID '../etc' is not a valid UID
    """
    return os.path.join(os.fspath(cache), _check_uid(study_uid, "StudyInstanceUID", cache),
                        _check_uid(series_uid, "SeriesInstanceUID", cache))


def is_complete(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a retrieve verified against the server's instance list.

    Parameters
    ----------
    folder : str or os.PathLike
        A series folder of the cache (:func:`series_folder`).

    Returns
    -------
    bool
        True when the folder has its ``.complete`` marker.

    Examples
    --------
    >>> import tempfile
    >>> is_complete(tempfile.mkdtemp())
    False
    """
    return os.path.isfile(os.path.join(os.fspath(folder), COMPLETE_MARKER))


def fetch_whole(method: str, missing: int, total: int, workers: int = 4) -> bool:
    """Whether a retrieve asks for the whole series rather than for the missing instances.

    C-GET and C-MOVE ask for exactly the missing instances in one request (IMAGE level, a
    list of SOP Instance UIDs): never slower than the whole series, so never whole. WADO-RS
    has no list request: each instance is its own HTTP request, ``workers`` at a time, and
    the whole series is one streamed request; the series is asked whole when more than
    ``WHOLE_SERIES_ABOVE["wado"]`` (a third) of it is missing. Cached instances sent again
    by a whole-series transfer are kept as they are.

    Parameters
    ----------
    method : {"wado", "c-get", "c-move"}
        The retrieve method.
    missing : int
        Instances not cached yet.
    total : int
        Instances of the series.
    workers : int
        Concurrent WADO-RS requests (the rule was measured with 4).

    Returns
    -------
    bool
        True to ask for the whole series.

    Examples
    --------
    >>> fetch_whole("wado", 50, 300), fetch_whole("wado", 150, 300)
    (False, True)
    >>> fetch_whole("c-get", 290, 300)
    False
    """
    above = WHOLE_SERIES_ABOVE.get(method)
    if above is None or missing == 0:
        return False
    return missing > above * total


# --------------------------------------------------------------------------- verification


def _pixel_bytes_expected(ds: Dataset) -> int | None:
    """Bytes of native pixel data ``ds`` declares, None when unknown or compressed."""
    if "PixelData" not in ds or ds.file_meta.get("TransferSyntaxUID") is None:
        return None
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        return None
    try:
        n = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
             * int(ds.get("NumberOfFrames", 1) or 1))
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        return None
    return (n * bits + 7) // 8


def _verify(data: bytes, sop: str, study_uid: str, series_uid: str) -> str | None:
    """Why the encoded instance ``data`` is not a whole copy of ``sop`` of the series, or
    None when it is."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        got = str(ds.get("SOPInstanceUID", ""))
        if got != sop:
            return f"carries SOP Instance UID {got[:70]!r}, not the one asked for"
        if str(ds.get("SeriesInstanceUID", "")) != series_uid or str(
                ds.get("StudyInstanceUID", "")) != study_uid:
            return "belongs to another study or series"
        need = _pixel_bytes_expected(ds)
        if need is not None and len(ds.PixelData) < need:
            return f"pixel data truncated ({len(ds.PixelData)} of {need} bytes)"
    except Exception as exc:  # pydicom raises many kinds on corrupt input
        return f"cannot be parsed ({type(exc).__name__}: {str(exc)[:120]})"
    return None


def _encode(ds: Dataset) -> bytes:
    """``ds`` as the bytes of a DICOM file (preamble, file meta)."""
    import pydicom

    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


class _Cache:
    """One series folder of the cache: which instances are there, and atomic publishing."""

    def __init__(self, folder: str, study_uid: str, series_uid: str) -> None:
        from .safety import clean_stale_partials

        self.folder = folder
        self.study_uid, self.series_uid = study_uid, series_uid
        self.lock = threading.Lock()
        os.makedirs(folder, exist_ok=True)
        clean_stale_partials(folder, older_than=0)

    def path(self, sop: str) -> str:
        """Where instance ``sop`` is (or will be) cached."""
        return os.path.join(self.folder, sop + ".dcm")

    def cached(self, expected: Iterable[str]) -> set[str]:
        """The expected instances already here and sound (header parses, right UID)."""
        import pydicom

        have = set()
        for sop in expected:
            p = self.path(sop)
            if not os.path.isfile(p):
                continue
            try:
                ds = pydicom.dcmread(p, stop_before_pixels=True,
                                     specific_tags=["SOPInstanceUID"])
                ok = str(ds.get("SOPInstanceUID", "")) == sop
            except Exception:
                ok = False
            if ok:
                have.add(sop)
            else:  # damaged behind our back: fetch it again
                os.unlink(p)
        return have

    def publish(self, sop: str, data: bytes) -> str | None:
        """Check ``data`` and write it as ``<sop>.dcm`` atomically; the reason on refusal."""
        from .safety import atomic_output

        why = _verify(data, sop, self.study_uid, self.series_uid)
        if why:
            return why
        try:
            with atomic_output(self.path(sop), overwrite=True) as tmp, open(tmp, "wb") as f:
                f.write(data)
        except DicomToolsError as exc:
            return exc.reason
        return None


# --------------------------------------------------------------------------- files to send


def _sources(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]
             ) -> tuple[list[Source], list[tuple[str, str]]]:
    """The files of ``paths`` (files, folders, zips, ``zip::member`` names) and the
    ``(path, reason)`` of those skipped while listing them."""
    from .sources import Source, iter_sources

    out: list[Source] = []
    skipped: list[tuple[str, str]] = []
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for p in paths:
        p = os.fspath(p)
        if "::" in p and not os.path.exists(p):  # a zip member, as scan names it
            out.append(Source.from_string(p))
            continue
        srcs, sk = iter_sources(p)
        out.extend(srcs)
        skipped.extend((s.path, s.reason) for s in sk)
    return out, skipped


def _read_source(src: Source, header_only: bool = False) -> Dataset:
    """The data set of ``src``; a :class:`DicomToolsError` unless it is a storable instance
    (SOP Class/Instance UIDs; with pixels, a transfer syntax)."""
    from .headers import safe_dcmread

    # headers.safe_dcmread is not annotated yet (headers is still in PENDING_TYPES)
    read = cast("Callable[..., Dataset]", safe_dcmread)
    with src.open() as fp:
        ds = read(cast(BinaryIO, fp), str(src), stop_before_pixels=header_only)
    if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
        raise DicomToolsError(str(src), "no SOP Class/Instance UID: not a storable instance")
    if header_only:
        return ds
    if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
        raise DicomToolsError(str(src), "no transfer syntax (file meta missing)")
    return ds


def _reason(exc: Exception, default: str) -> str:
    """The one-line reason of a :class:`DicomToolsError`, else ``default``."""
    return getattr(exc, "reason", None) or default


def _send_cancelled(profile: ServerProfile, cancel: threading.Event | None,
                    result: SendResult) -> None:
    """Raise a :class:`PacsError` saying how far a send got when ``cancel`` is set."""
    if cancel is not None and cancel.is_set():
        raise PacsError(profile.label, f"send cancelled after {len(result.sent)} instances")
