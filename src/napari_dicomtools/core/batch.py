"""Batch convert and anonymize of whole archives, on Dask distributed or in this process.

One engine for both jobs. Headers are read in parallel (chunks of files per task), grouped
into series on the client, and each series is converted or de-identified as **one unit of
work** with its own result, manifest row and retry, so a worker process serves thousands of
series without per-call start-up. Dask tasks carry a few series each (about
``TASKS_PER_WORKER`` tasks per worker, at most ``SERIES_PER_TASK`` series): Dask's cost per
task (milliseconds, tens of them on a loaded machine) would otherwise dominate on small
series. A task lost with a killed worker is rerun elsewhere with all its series. The client keeps
a **manifest** in the output folder (``dicomtools-manifest.csv``, one row per finished
series, appended and flushed as results arrive): a rerun skips series already done whose
source files (path, size, mtime) are unchanged and retries the others. Outputs are written
atomically (:func:`~napari_dicomtools.core.safety.atomic_output`), their names depend only
on the data (and, for anonymization, on the key), so a series redone after a killed worker
or a Ctrl-C replaces its own partial work and is never written twice.

Where the work runs:

* ``client=``: a ``distributed.Client`` you made (any cluster: SSH, Kubernetes, SLURM via
  dask-jobqueue); ``scheduler="tcp://host:8786"``: connect to one; ``workers=N``: a
  :class:`distributed.LocalCluster` of ``N`` single-threaded processes (default: one per
  core); ``workers=0``: everything in this process, no Dask at all.

Input and output paths must be visible to every worker under the same names (a shared file
system on a multi-node cluster).

Examples
--------
A small synthetic archive, converted in this process (``workers=0``), then again: the
second run finds every series done in the manifest and skips it.

>>> import os, tempfile
>>> from napari_dicomtools.core.synthetic import make_archive
>>> root = tempfile.mkdtemp()
>>> archive = make_archive(os.path.join(root, "archive"), patients=1, studies=1, series=2,
...                        corrupt=0, duplicates=0, bad_series=0)
>>> s = run_batch("convert", [archive.root], os.path.join(root, "nifti"), workers=0)
>>> s.succeeded, s.failed, s.skipped
(2, 0, 0)
>>> s = run_batch("convert", [archive.root], os.path.join(root, "nifti"), workers=0)
>>> s.succeeded, s.failed, s.skipped
(0, 0, 2)

On a cluster: ``run_batch("convert", ["/archive/2019", "/archive/2020"], "/nifti",
scheduler="tcp://head-node:8786")``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import socket
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any, NamedTuple, Protocol, TypedDict, TypeVar

from .errors import DicomToolsError

if TYPE_CHECKING:
    from typing import TypeAlias

    import pyarrow
    from distributed import Client, Future

    from .anonymize import Anonymizer
    from .anonymize import Options as AnonymizeOptions
    from .headers import Instance
    from .series import Series
    from .sources import Source

    #: ``progress(phase, done, total)``
    Progress: TypeAlias = Callable[[str, int, int], None]
    #: ``on_start(dashboard link or None)``
    OnStart: TypeAlias = Callable[[str | None], None]
    #: (files, ``%f`` folder name) of each input, or of each part of the inputs
    _Inputs: TypeAlias = list[tuple[list[Source], str]]

__all__ = [
    "run_batch", "tabulate", "expand_inputs", "read_manifest", "ConvertOptions", "Summary",
    "MANIFEST", "JOBFILE", "FIELDS", "KINDS", "BATCH_PATTERN", "LIST_SUFFIXES", "SCAN_CHUNK",
    "TASKS_PER_WORKER", "SERIES_PER_TASK", "CACHE_LIMIT", "ROWS_PER_PART",
    "LOCAL_CLUSTER_CONFIG",
]

_T = TypeVar("_T")

#: the journal of finished series, in the output folder
MANIFEST = "dicomtools-manifest.csv"
#: what the job is (kind, options, key fingerprint), checked on every rerun
JOBFILE = "dicomtools-job.json"
#: the manifest's columns
FIELDS = ("task", "series_uid", "split", "status", "outputs", "error", "n_files",
          "sources", "worker", "seconds", "finished")
#: files whose headers one scan task reads (at most; fewer to give every worker several)
SCAN_CHUNK = 500
#: tasks per worker a job aims at: enough to balance the load, few enough that Dask's cost
#: per task (milliseconds; far more on a loaded machine) stays small next to the work
TASKS_PER_WORKER = 8
#: series one task carries, at most
SERIES_PER_TASK = 64
#: extensions of a text file listing inputs, one path a line
LIST_SUFFIXES = (".txt", ".lst", ".list")
#: the jobs :func:`run_batch` does
KINDS = ("convert", "anonymize")


@dataclass
class ConvertOptions:
    """Options of a batch conversion (as ``dicomtools convert``).

    Parameters
    ----------
    gzip : bool
        Write ``.nii.gz`` (else ``.nii``).
    split_nonuniform : bool
        Split a series whose slice spacing varies into uniform parts (``--split-nonuniform``).
    uniform : bool
        Resample a series with gaps or varying spacing to uniform slices (``--uniform``).
    correct_tilt : bool
        Resample a gantry-tilted CT onto an orthogonal grid (``--correct-tilt``).
    philips_precise : bool
        Philips floating-point values (``--philips-precise``).

    Examples
    --------
    >>> ConvertOptions(gzip=False)
    ConvertOptions(gzip=False, split_nonuniform=False, uniform=False, correct_tilt=False, \
philips_precise=False)
    """

    gzip: bool = True
    split_nonuniform: bool = False
    uniform: bool = False
    correct_tilt: bool = False
    philips_precise: bool = False


@dataclass
class Summary:
    """What :func:`run_batch` did.

    Parameters
    ----------
    kind : str
        ``"convert"`` or ``"anonymize"``.
    out : str
        The output folder.
    total : int
        Series (tasks) of the job.
    succeeded, failed : int
        Series processed in this run that succeeded, that failed.
    skipped : int
        Series done by an earlier run (unchanged sources, outputs present).
    files : int
        Files found in the inputs.
    outputs : int
        Files written.
    failures : list of (str, str)
        ``(series, reason)`` of each failed series.
    unreadable : list of (str, str)
        ``(file, reason)`` of the files left out (not DICOM, truncated, duplicates, colour
        images a conversion cannot write...).
    warnings : list of str
        What a user should know about series that were written.
    seconds : float
        Wall time of the job.
    dashboard : str or None
        The Dask dashboard's address, when one ran.

    Examples
    --------
    >>> s = Summary("convert", "/out", total=3, succeeded=2, failed=1)
    >>> print(s)
    convert: 3 series: 2 succeeded, 1 failed, 0 skipped (done before); 0 file(s) read, 0 left out; 0.0 s
    """

    kind: str
    out: str
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    files: int = 0
    outputs: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    dashboard: str | None = None

    def __str__(self) -> str:
        return (f"{self.kind}: {self.total} series: {self.succeeded} succeeded, "
                f"{self.failed} failed, {self.skipped} skipped (done before); "
                f"{self.files} file(s) read, {len(self.unreadable)} left out; "
                f"{self.seconds:.1f} s")


# --------------------------------------------------------------------------------------------
# the shapes passed between the client and the tasks


class _ScanRow(NamedTuple):
    """What reading one file's header found."""

    source: Source
    size: int  # bytes (of the member, in a zip); -1 when it cannot be stat'ed
    mtime_ns: int
    instance: Instance | None  # None: not an image (see reason), or not wanted
    series_uid: str | None
    sop_uid: str | None
    reason: str | None  # why the file has no Instance


class _Ref(NamedTuple):
    """Where a task finds its series: kept by the worker that scanned ``part``, else read
    again from ``sources`` (the files of its SeriesInstanceUID)."""

    part: str
    uid: str
    split: str
    sources: list[Source]
    keep: bool  # stays cached after its conversion (a SEG still needs it as its grid)


class _ResultBase(TypedDict):
    status: str  # "done" or "failed"
    outputs: list[str]
    error: str
    worker: str
    seconds: float | str


class _Result(_ResultBase, total=False):
    """One series' result, as its task returns it."""

    warnings: list[str]
    notes: list[tuple[str, str]]  # files left out (path, reason)


class _SeriesInfo(TypedDict):
    """One series as a scan task found it (small: it travels to the client)."""

    uid: str
    split: str
    name: str  # before naming.unique_names
    label: str
    kind: str
    order: tuple[str, str, str, int, str, str]  # as scan sorts series
    n_files: int
    problems: list[str]
    sources: str  # JSON [[path, size, mtime_ns], ...]
    refs: list[str]  # a SEG: the SeriesInstanceUIDs it references


class _SeriesRecord(_SeriesInfo):
    """A series with where it was scanned (the client's plan)."""

    part: str
    worker: str | None
    files: list[Source]
    keep: bool  # stays cached after its conversion (a SEG's grid)


class _UidFound(TypedDict):
    idx: list[int]  # indices of the part's files with this SeriesInstanceUID
    series: list[_SeriesInfo]
    skipped: list[tuple[str, str]]


class _PartResult(TypedDict):
    part: str
    worker: str | None
    uids: dict[str, _UidFound]
    loose: list[tuple[str, str]]  # files without a series: (path, reason)


class _Meta(TypedDict, total=False):
    """The manifest columns a task fills in itself."""

    series_uid: str
    split: str
    n_files: int
    sources: str


@dataclass
class _Task:
    """One series (or chunk of loose files) to convert or de-identify."""

    task: str  # the manifest key
    label: str
    meta: _Meta
    target: str = ""  # convert: the output file
    record: _SeriesRecord | None = None  # convert: the series
    ref: _SeriesRecord | None = None  # convert, a SEG: the series of its grid
    sources: list[Source] = field(default_factory=list)  # anonymize: the files


class _JobDescription(TypedDict):
    kind: str
    options: dict[str, Any]  # a dataclass's fields as JSON
    key: str | None
    version: int


# --------------------------------------------------------------------------------------------
# inputs


def expand_inputs(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]
                  ) -> list[str]:
    """The inputs of a batch job, with every list file replaced by the paths it lists.

    Folders, files, zips and DICOMDIRs are kept as given; a list file (``*.txt``, ``*.lst``,
    ``*.list`` or ``@file``) lists paths one a line, blank lines and ``#`` comments ignored,
    relative paths taken from the list file's folder. Repeated paths are kept once.

    Parameters
    ----------
    inputs : str, os.PathLike or iterable of them
        One input or several.

    Returns
    -------
    list of str
        The paths, in order.

    Raises
    ------
    DicomToolsError
        A path (or a listed path) does not exist, or a list file cannot be read.

    Examples
    --------
    >>> import os, tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> os.mkdir(os.path.join(tmp, "a"))
    >>> with open(os.path.join(tmp, "inputs.txt"), "w") as f:
    ...     _ = f.write("# one folder a line\\na\\n\\n")
    >>> [os.path.relpath(p, tmp) for p in expand_inputs([os.path.join(tmp, "inputs.txt")])]
    ['a']
    """
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    out: list[str] = []
    for item in items:
        p = os.fspath(item)
        listed = p.startswith("@") or (p.lower().endswith(LIST_SUFFIXES) and os.path.isfile(p))
        if not listed:
            if not os.path.lexists(p.partition("::")[0]):
                raise DicomToolsError(p, "no such file or folder")
            out.append(p)
            continue
        out.extend(_listed(p[1:] if p.startswith("@") else p))
    return list(dict.fromkeys(out))


def _listed(lst: str) -> list[str]:
    """The paths a list file names (relative ones from its folder), each checked."""
    try:
        with open(lst, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DicomToolsError(lst, f"list of inputs cannot be read ({exc})") from None
    base = os.path.dirname(os.path.abspath(lst))
    out = []
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        q = line if os.path.isabs(line) else os.path.join(base, line)
        if not os.path.lexists(q.partition("::")[0]):
            raise DicomToolsError(lst, f"read as a list of inputs (one file or folder a "
                                       f"line), but line {n} ({line!r}) names no such file "
                                       "or folder")
        out.append(q)
    return out


def _stat(source: Source) -> tuple[int, int]:
    """(size, mtime in ns) of a source file (of the archive for a zip member)."""
    try:
        st = os.stat(source.path)
    except OSError:
        return -1, -1
    return (st.st_size if source.member is None else source.size()), st.st_mtime_ns


def _scan_chunk(sources: Sequence[Source], want_uids: bool = False) -> list[_ScanRow]:
    """Read the headers of ``sources`` (a task), one row per file; with ``want_uids``
    (anonymization), no Instance (only the UIDs are needed), and the UIDs of DICOM files
    without a loadable image too."""
    from ._limits import FATAL
    from .errors import NotDicomError
    from .headers import read_header

    out = []
    for src in sources:
        size, mtime = _stat(src)
        try:
            inst = read_header(src)
            out.append(_ScanRow(src, size, mtime, None if want_uids else inst,
                                inst.series_uid, inst.sop_uid, None))
        except NotDicomError as exc:
            out.append(_ScanRow(src, size, mtime, None, None, None, exc.reason))
        except DicomToolsError as exc:  # SR, RT, odd geometry...: still anonymized
            series_uid, sop_uid = _uids(src) if want_uids else (None, None)
            out.append(_ScanRow(src, size, mtime, None, series_uid, sop_uid, exc.reason))
        except FATAL:
            raise
        except BaseException as exc:  # noqa: BLE001 - one bad file never ends the scan
            out.append(_ScanRow(src, size, mtime, None, None, None, f"cannot be read ({exc})"))
    return out


def _read_some(src: Source, tags: list[str]) -> Any:
    """The pydicom data set of ``tags`` in ``src`` (a file without an image), or None."""
    from .headers import open_dicom, safe_dcmread

    try:
        with open_dicom(src) as (fp, _size, dicm):
            return safe_dcmread(fp, str(src), stop_before_pixels=True, force=not dicm,
                                specific_tags=tags)
    except Exception:  # noqa: BLE001 - not readable: its task says why
        return None


def _uids(src: Source) -> tuple[str | None, str | None]:
    """(SeriesInstanceUID, SOPInstanceUID) of a DICOM file without an image, or Nones."""
    ds = _read_some(src, ["SeriesInstanceUID", "SOPInstanceUID"])
    try:
        return (str(ds.get("SeriesInstanceUID", "") or "").strip() or None,
                str(ds.get("SOPInstanceUID", "") or "").strip() or None)
    except Exception:  # noqa: BLE001 - None, or values pydicom cannot decode
        return None, None


# --------------------------------------------------------------------------------------------
# tasks (run on the workers; they never raise for a bad series: the reason is the result)


def _where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _done(t0: float, outputs: list[str], error: str = "") -> _Result:
    return {"status": "failed" if error else "done", "outputs": outputs, "error": error,
            "worker": _where(), "seconds": round(time.perf_counter() - t0, 3)}


def _convert_task(ref: _Ref, target: str, overwrite: bool, opts: ConvertOptions,
                  seg_ref: _Ref | None = None) -> _Result:
    """Write one series (``ref``, see :func:`_series_from`) as NIfTI (and .bval/.bvec for
    diffusion); a SEG as label NIfTI on the grid of the series ``seg_ref`` (or its own)."""
    from ._limits import FATAL

    t0 = time.perf_counter()
    where = str(ref[3][0]) if ref[3] else ref[1]
    try:
        series = _series_from(ref, opts)
        where = series.files[0]
        if series.kind == "SEG":
            return _write_seg(t0, series, target, overwrite, opts, seg_ref)
        path = _write_image(series, target, overwrite, opts)
    except FATAL:
        raise
    except DicomToolsError as exc:
        return _done(t0, [], str(exc))
    except BaseException as exc:  # noqa: BLE001 - a bad series fails alone
        return _done(t0, [], f"{where}: {type(exc).__name__}: {exc}")
    stem = path[:-7] if path.endswith(".nii.gz") else path[:-4]
    sidecars = [stem + e for e in (".bval", ".bvec") if series.diffusion]
    return _done(t0, [path, *sidecars])


def _write_image(series: Series, target: str, overwrite: bool, opts: ConvertOptions) -> str:
    """An image series as NIfTI: streamed from its files, or through a Volume when it is
    resampled (tilt corrected, made uniform)."""
    from .nifti import write_nifti, write_series_nifti

    tilt = bool(opts.correct_tilt and series.order is not None and series.order.tilt_deg)
    gaps = bool(opts.uniform and series.order is not None and not series.order.uniform)
    if tilt or gaps:
        from .volume import read_volume

        vol = read_volume(series, correct_tilt=tilt, uniform_spacing=gaps,
                          philips_precise=opts.philips_precise)
        return write_nifti(vol, target, overwrite=overwrite)
    return write_series_nifti(series, target, overwrite=overwrite,
                              philips_precise=opts.philips_precise)


def _write_seg(t0: float, series: Series, target: str, overwrite: bool, opts: ConvertOptions,
               seg_ref: _Ref | None) -> _Result:
    """A SEG as label NIfTI, on the grid of its referenced series when there is one."""
    from .seg import read_segmentation, write_labels_nifti

    reference = _series_from(seg_ref, opts) if seg_ref is not None else None
    seg = read_segmentation(series, reference=reference)
    res = _done(t0, write_labels_nifti(seg, target, overwrite=overwrite))
    res["warnings"] = [f"{series.label}: {p}" for p in seg.metadata.get("problems", [])]
    return res


# --------------------------------------------------------------------------------------------
# convert: headers read and grouped into series on the workers, which keep them for the
# conversion; the client gets a small summary per series (its name, files, sort key)

#: the ``-f`` pattern of a batch conversion: a folder per patient and per study (date and
#: time, StudyInstanceUID), each series named as the single-input ``convert`` names it
BATCH_PATTERN = "%i/%t_%k/%s_%p"
#: instances a worker process keeps parsed between the scan and the conversion of a job
#: (about 5 KB each: 250 MB); the parts scanned beyond are not kept, and their series are
#: read again when converted (the parts kept are the first ones, converted first)
CACHE_LIMIT = 50_000
#: part id "<job>:<i>" -> ({(uid, split): Series}, instances in them)
_CACHE: dict[str, tuple[dict[tuple[str, str], Series], int]] = {}


def _remember(part: str, series: list[Series], n: int) -> None:
    job = part.rsplit(":", 1)[0] + ":"
    total = sum(v[1] for v in _CACHE.values())
    for old in [p for p in _CACHE if not p.startswith(job)]:  # ended or crashed jobs
        if total + n <= CACHE_LIMIT:
            break
        total -= _CACHE.pop(old)[1]
    if total + n <= CACHE_LIMIT:
        _CACHE[part] = ({(s.uid, s.split): s for s in series}, n)


def _forget(job: str) -> None:
    """Drop what a worker process keeps of ``job`` (run on every worker at its end)."""
    for part in [p for p in _CACHE if p.startswith(job + ":")]:
        del _CACHE[part]


def _series_from(ref: _Ref, opts: ConvertOptions) -> Series:
    """The Series ``ref``: as the scan of its part left it in this process, else (another
    worker, or a retry after a killed one) read again from ``ref.sources``."""
    from .series import group_series

    part, uid, split, sources, keep = ref
    cached = _CACHE.get(part)
    if cached is not None:
        s = cached[0].get((uid, split)) if keep else cached[0].pop((uid, split), None)
        if s is not None:
            return s
    instances = [r.instance for r in _scan_chunk(sources)
                 if r.instance is not None and r.series_uid == uid]
    for s in group_series(instances, opts.split_nonuniform):
        if s.split == split:
            return s
    raise DicomToolsError(str(sources[0]) if sources else None,
                          f"series {uid}{f' ({split})' if split else ''} is not in its files "
                          "any more (changed since the scan?)")


def _worker_address() -> str | None:
    """This Dask worker's address, or None outside a worker (``workers=0``: distributed is
    then never imported, which costs seconds)."""
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return None


def _referenced_series(src: Source) -> list[str]:
    """SeriesInstanceUIDs a SEG names in ReferencedSeriesSequence."""
    ds = _read_some(src, ["ReferencedSeriesSequence"])
    if ds is None:
        return []
    return [str(it.get("SeriesInstanceUID", "")) for it in
            ds.get("ReferencedSeriesSequence", None) or []]


def _scan_part(part: str, sources: list[Source], folder: str, opts: ConvertOptions,
               pattern: str) -> _PartResult:
    """Read the headers of one part of a job (``sources``: whole folders), group them into
    series, keep these in this process for :func:`_convert_task` and return per
    SeriesInstanceUID the indices of its files, a summary of each of its series and the
    files left out; ``loose``: files without a series (not DICOM, unreadable)."""
    from .series import group_series

    rows = _scan_chunk(sources)
    stats: dict[str, tuple[int, int]] = {}
    uid_of: dict[str, str] = {}
    loose: list[tuple[str, str]] = []
    instances: list[Instance] = []
    by_uid: dict[str, _UidFound] = {}
    for i, row in enumerate(rows):
        path = str(row.source)
        stats[path] = (row.size, row.mtime_ns)
        if row.instance is None:
            loose.append((path, row.reason or "not read"))
            continue
        inst = row.instance
        instances.append(inst)
        uid_of[path] = inst.series_uid
        by_uid.setdefault(inst.series_uid, {"idx": [], "series": [], "skipped": []})
        by_uid[inst.series_uid]["idx"].append(i)
    skipped: list[Any] = []
    series = group_series(instances, opts.split_nonuniform, skipped)
    for k in skipped:
        by_uid[uid_of[k.path]]["skipped"].append((k.path, k.reason))
    _describe(series, by_uid, stats, folder, pattern)
    _remember(part, series, len(instances))
    return {"part": part, "worker": _worker_address(), "uids": by_uid, "loose": loose}


def _describe(series: list[Series], by_uid: dict[str, _UidFound],
              stats: dict[str, tuple[int, int]], folder: str, pattern: str) -> None:
    """Add to ``by_uid`` the summary of each series (what the client plans with)."""
    from .naming import base_names

    for s, name in zip(series, base_names(series, pattern, folder), strict=True):
        files = sorted(set(s.files))
        by_uid[s.uid]["series"].append({
            "uid": s.uid, "split": s.split, "name": name, "label": s.label, "kind": s.kind,
            "order": (s.patient_id, s.study_date, s.study_uid,
                      s.number if s.number is not None else 1 << 30, s.uid, s.split),
            "n_files": len(files), "problems": list(s.problems),
            "sources": json.dumps([[f, *stats[f]] for f in files]),
            "refs": _referenced_series(s.first.source) if s.kind == "SEG" else []})
        by_uid[s.uid]["skipped"].extend((k.path, k.reason) for k in s.skipped)


def _folder_name(path: str) -> str:
    """``%f`` of an input, as the single-input ``convert`` takes it."""
    src = os.path.abspath(path.partition("::")[0])
    return os.path.basename(os.path.normpath(src) if os.path.isdir(src)
                            else os.path.dirname(src))


def _parts(inputs: _Inputs, n_workers: int) -> _Inputs:
    """The inputs' files cut into parts of whole folders (a series rarely spans folders),
    about ``TASKS_PER_WORKER`` a worker, at most ``SCAN_CHUNK`` files but a folder's:
    ``(sources, %f folder name)``. Inputs of one folder name share parts (a list file of
    single files is read in parts of many files, not one task each)."""
    total = sum(len(srcs) for srcs, _ in inputs)
    full = max(1, min(SCAN_CHUNK, -(-total // max(1, n_workers * TASKS_PER_WORKER))))
    parts: _Inputs = []
    cur: list[Source] = []
    last: object = None
    name = ""
    seen = 0
    for srcs, folder in inputs:
        for src in srcs:
            d = (src.path, os.path.dirname(src.member)) if src.member is not None else \
                os.path.dirname(src.path)
            # the last parts smaller, so that the workers finish the scan together (the
            # conversion starts when all of it is done)
            per = full if total - seen > 2 * n_workers * full else max(1, full // 4)
            # cut between folders once big enough; inside a huge folder at 4 x the size
            if cur and (folder != name or (d != last and len(cur) >= per)
                        or len(cur) >= 4 * per):
                parts.append((cur, name))
                cur = []
            cur.append(src)
            seen += 1
            last, name = d, folder
    if cur:
        parts.append((cur, name))
    return parts


def _convert_scan(executor: _Executor, inputs: _Inputs, job: str, opts: ConvertOptions,
                  pattern: str, summary: Summary, progress: Progress | None
                  ) -> list[_SeriesRecord]:
    """Scan every part on the workers; a SeriesInstanceUID found in several parts is read
    again as a whole (its files together), so series are grouped as by one ``scan``.
    Returns one record per series (its summary, part, worker and the files of its UID),
    in ``scan`` order."""
    parts = _parts(inputs, executor.n_workers)
    results = _scan_parts(executor, parts, job, 0, opts, pattern, progress)
    again = _spanning(parts, results, executor.n_workers)
    results += _scan_parts(executor, again, job, len(parts), opts, pattern, None)
    parts += again
    records: list[_SeriesRecord] = []
    for res, (srcs, _folder) in zip(results, parts, strict=True):
        summary.unreadable.extend(res["loose"])
        for u in res["uids"].values():
            summary.unreadable.extend(u["skipped"])
            files = [srcs[j] for j in u["idx"]]
            records.extend({**s, "part": res["part"], "worker": res["worker"],
                            "files": files, "keep": False} for s in u["series"])
    records.sort(key=lambda r: r["order"])
    return records


def _scan_parts(executor: _Executor, parts: _Inputs, job: str, first: int,
                opts: ConvertOptions, pattern: str, progress: Progress | None
                ) -> list[_PartResult]:
    """:func:`_scan_part` of each of ``parts`` (numbered from ``first``), in their order."""
    total = sum(len(p[0]) for p in parts)
    results: list[_PartResult | None] = [None] * len(parts)
    done = 0
    for i, res, err in executor.run(_scan_part, [(f"{job}:{first + i}", srcs, folder, opts,
                                                  pattern)
                                                 for i, (srcs, folder) in enumerate(parts)]):
        if err is not None or res is None:
            raise DicomToolsError(None, f"reading headers failed on a worker ({err})")
        results[i] = res
        done += len(parts[i][0])
        if progress is not None:
            progress("scanning", done, total)
    return [r for r in results if r is not None]


def _spanning(parts: _Inputs, results: list[_PartResult], n_workers: int) -> _Inputs:
    """Parts of the SeriesInstanceUIDs found in several parts, their files together (to be
    scanned again, shared among the workers: the others wait for them); these UIDs are
    taken out of ``results``."""
    owners: dict[str, list[int]] = defaultdict(list)
    for i, res in enumerate(results):
        for uid in res["uids"]:
            owners[uid].append(i)
    spanning = {uid: [parts[i][0][j] for i in ps for j in results[i]["uids"][uid]["idx"]]
                for uid, ps in owners.items() if len(ps) > 1}
    total = sum(len(srcs) for srcs in spanning.values())
    per = max(1, min(SCAN_CHUNK, -(-total // max(1, n_workers))))
    again: _Inputs = []
    for uid, srcs in spanning.items():
        if not again or len(again[-1][0]) + len(srcs) > per:
            again.append(([], parts[owners[uid][0]][1]))
        again[-1][0].extend(srcs)
    for res in results:
        for uid in spanning:
            res["uids"].pop(uid, None)
    return again


def _convert_plan(records: list[_SeriesRecord], out: str, ext: str) -> list[_Task]:
    """Tasks of a conversion: names made unique in ``scan`` order (as the single-input
    ``convert``), each SEG given the image series it references."""
    from .naming import unique_names

    names = unique_names([r["name"] for r in records])
    images: dict[str, _SeriesRecord] = {}
    for r in records:
        if r["kind"] == "IMAGE":
            images.setdefault(r["uid"], r)
    refs: dict[int, _SeriesRecord] = {}
    for r in records:
        ref = next((images[u] for u in r["refs"] if u in images), None)
        if ref is not None:
            refs[id(r)] = ref
            ref["keep"] = True  # kept by its worker until the SEG is written too
    tasks = []
    for r, name in zip(records, names, strict=True):
        task = f"{r['uid']}|{r['split']}" if r["split"] else r["uid"]
        tasks.append(_Task(task=task, label=r["label"], record=r, ref=refs.get(id(r)),
                           target=os.path.join(out, *name.split("/")) + ext,
                           meta={"series_uid": r["uid"], "split": r["split"],
                                 "n_files": r["n_files"], "sources": r["sources"]}))
    return tasks


def _ref(r: _SeriesRecord) -> _Ref:
    return _Ref(r["part"], r["uid"], r["split"], r["files"], r["keep"])


#: one Anonymizer per worker process and job: its per-attribute decisions are cached
_ANONYMIZERS: dict[tuple[str, bytes], Anonymizer] = {}


def _anonymize_task(sources: list[Source], out: str, options: AnonymizeOptions, key: bytes,
                    overwrite: bool) -> _Result:
    """De-identify the files of one series (or of one chunk of files without a series)."""
    import warnings

    from .anonymize import Anonymizer, anonymize_one, preload_tables

    t0 = time.perf_counter()
    ident = (repr(options), key)
    anon = _ANONYMIZERS.get(ident)
    if anon is None:
        preload_tables()
        _ANONYMIZERS.clear()
        anon = _ANONYMIZERS[ident] = Anonymizer(options, key=key)
    anon.uid_map.clear()  # a cache of keyed hashes: bounded to one task's UIDs
    anon.warnings.clear()
    outputs: list[str] = []
    errors: list[str] = []
    notes: list[tuple[str, str]] = []
    warns: list[str] = []
    for src in sources:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            target, skipped, w, failed = anonymize_one(anon, src, out, overwrite)
        warns.extend(w)
        if target is not None:
            outputs.append(target)
        elif failed and skipped is not None:
            errors.append(f"{skipped[0]}: {skipped[1]}")
        elif skipped is not None:
            notes.append(skipped)
    res = _done(t0, outputs, "; ".join(errors))
    res["notes"], res["warnings"] = notes, warns
    return res


# --------------------------------------------------------------------------------------------
# the manifest


def _key_fingerprint(key: bytes) -> str:
    import hmac

    return hmac.new(key, b"dicomtools batch manifest", hashlib.sha256).hexdigest()[:16]


class _Manifest:
    """The job's journal in ``out``: read at start, one row appended per finished series.

    Holding it open takes an exclusive lock, so two jobs never write one output folder.
    """

    def __init__(self, out: str, job: _JobDescription, force: bool) -> None:
        self.path = os.path.join(out, MANIFEST)
        self.jobfile = os.path.join(out, JOBFILE)
        self.previous: dict[str, dict[str, str]] = {}
        self.resumed = False
        self.job = job
        old = self._read_job()
        if old is not None and not force:
            self._check_same(out, old, job)
            self.resumed = True
        self._f: IO[str] = open(self.path, "a+" if self.resumed else "w",  # noqa: SIM115
                                newline="", encoding="utf-8")
        self._lock()
        if self.resumed:
            self._f.seek(0)
            for row in csv.DictReader(self._f):
                if row.get("task"):
                    self.previous[row["task"]] = row  # the last row of a task wins
            self._f.seek(0, os.SEEK_END)
        self._w = csv.DictWriter(self._f, fieldnames=FIELDS)
        if self._f.tell() == 0:
            self._w.writeheader()
        self._synced = time.monotonic()

    @staticmethod
    def _check_same(out: str, old: dict[str, Any], job: _JobDescription) -> None:
        hint = "; give the same to resume it, or use --force to start over (replacing outputs)"
        if old.get("kind") != job["kind"]:
            raise DicomToolsError(out, f"holds a batch {old.get('kind')} job, not "
                                       f"{job['kind']}; use another output folder")
        if old.get("key") != job["key"]:
            raise DicomToolsError(out, "holds a job made with another anonymization key "
                                       "(or a random one)" + hint)
        if old.get("options") != job["options"]:
            before: dict[str, Any] = old.get("options", {})
            diff = sorted(k for k in {**before, **job["options"]}
                          if before.get(k) != job["options"].get(k))
            raise DicomToolsError(out, f"holds a job made with other options "
                                       f"({', '.join(diff)})" + hint)

    def start(self) -> None:
        """Record what the job is, once it is sure to run: from now on the files at its
        targets are its own."""
        tmp = self.jobfile + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.job, f, indent=1)
        os.replace(tmp, self.jobfile)

    def _read_job(self) -> dict[str, Any] | None:
        try:
            with open(self.jobfile, encoding="utf-8") as f:
                job = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise DicomToolsError(self.jobfile, f"cannot be read ({exc}); use --force to "
                                                "start over") from None
        if not isinstance(job, dict):
            raise DicomToolsError(self.jobfile, "is not a job description; use --force to "
                                                "start over")
        return job

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory lock
            return
        try:
            fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._f.close()
            raise DicomToolsError(self.path, "another job is writing to this output folder "
                                             "(locked)") from None

    def is_done(self, task: str, sources: str) -> bool:
        """Finished before, with the same sources, and its outputs still there."""
        row = self.previous.get(task)
        if row is None or row["status"] != "done" or row.get("sources") != sources:
            return False
        return all(os.path.exists(p) for p in json.loads(row["outputs"] or "[]"))

    def record(self, task: str, meta: _Meta, res: _Result) -> None:
        """Append the row of a finished series (flushed at once, synced every 5 s)."""
        row: dict[str, object] = {
            **meta, "task": task, "status": res["status"],
            "outputs": json.dumps(res["outputs"]), "error": res["error"],
            "worker": res["worker"], "seconds": res["seconds"],
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self._w.writerow({k: row.get(k, "") for k in FIELDS})
        self._f.flush()  # a killed client loses no finished series
        if time.monotonic() - self._synced > 5:
            os.fsync(self._f.fileno())
            self._synced = time.monotonic()

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()


def read_manifest(out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The manifest of a batch output folder: the last row of each series.

    Parameters
    ----------
    out : str or os.PathLike
        The output folder of :func:`run_batch`.

    Returns
    -------
    list of dict
        One row per series (the columns of :data:`FIELDS`, strings), ``outputs`` and
        ``sources`` decoded to lists; ``pandas.DataFrame(read_manifest(out))`` tabulates
        them.

    Raises
    ------
    FileNotFoundError
        ``out`` holds no manifest.

    Examples
    --------
    >>> import os, tempfile
    >>> from napari_dicomtools.core.synthetic import make_archive
    >>> tmp = tempfile.mkdtemp()
    >>> archive = make_archive(os.path.join(tmp, "archive"), patients=1, studies=1, series=1,
    ...                        slices=2, size=4, corrupt=0, duplicates=0, bad_series=0)
    >>> _ = run_batch("convert", archive.root, os.path.join(tmp, "nifti"), workers=0)
    >>> (row,) = read_manifest(os.path.join(tmp, "nifti"))
    >>> row["status"], len(row["sources"]), os.path.basename(row["outputs"][0])
    ('done', 2, '1_CT_axial_1.nii.gz')
    """
    rows: dict[str, dict[str, Any]] = {}
    with open(os.path.join(os.fspath(out), MANIFEST), newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows[row["task"]] = dict(row)
    for row in rows.values():
        row["outputs"] = json.loads(row["outputs"] or "[]")
        row["sources"] = json.loads(row["sources"] or "[]")
    return list(rows.values())


# --------------------------------------------------------------------------------------------
# where tasks run


def _each(fn: Callable[..., _T], args_list: Sequence[tuple[Any, ...]]) -> list[_T]:
    """Run ``fn`` over ``args_list`` (a task carrying several series)."""
    return [fn(*args) for args in args_list]


class _Call:
    """``fn(*args)``, as one opaque argument of a Dask task: Dask walks every list, tuple and
    dict it is given in search of futures (in ``submit``, on the client), which cost the
    client of a 20,000-file conversion more CPU than planning the job (its tasks carry the
    files of their series); an object of this class is not looked into."""

    __slots__ = ("fn", "args")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args


def _on_worker(call: _Call) -> Any:
    """Run ``call`` on a Dask worker: compressed frames decode in this process (the cluster's
    processes are the parallelism; a worker process may not even start children)."""
    os.environ["NAPARI_DICOMTOOLS_WORKERS"] = "1"
    return call.fn(*call.args)


def _batches(n: int, workers: int, most: int) -> list[range]:
    """Index ranges splitting ``n`` items into about ``TASKS_PER_WORKER`` tasks per worker,
    at most ``most`` items each."""
    per = max(1, min(most, -(-n // max(1, workers * TASKS_PER_WORKER))))
    return [range(i, min(n, i + per)) for i in range(0, n, per)]


#: what :meth:`_Executor.run` yields: (task index, result or None, error or None)
_Outcome: TypeAlias = "tuple[int, _T | None, BaseException | None]"


class _Executor(Protocol):
    """Where tasks run: in this process, or on a Dask cluster."""

    dashboard_link: str | None
    n_workers: int

    def run(self, fn: Callable[..., _T], args_list: Sequence[tuple[Any, ...]],
            where: Sequence[str | None] | None = None
            ) -> Iterator[tuple[int, _T | None, BaseException | None]]:
        """Yield ``(index, result, error)`` as tasks finish."""
        ...

    def forget(self, job: str) -> None:
        """Drop what the workers keep for ``job``."""
        ...


class _InProcess:
    """The executor of ``workers=0``: tasks run here, one after the other."""

    dashboard_link: str | None = None
    n_workers = 1

    def run(self, fn: Callable[..., _T], args_list: Sequence[tuple[Any, ...]],
            where: Sequence[str | None] | None = None
            ) -> Iterator[tuple[int, _T | None, BaseException | None]]:
        for i, args in enumerate(args_list):
            yield i, fn(*args), None

    def forget(self, job: str) -> None:
        _forget(job)


class _Dask:
    """The executor of a Dask cluster (a ``distributed.Client``)."""

    #: seconds without any task finishing after which unfinished tasks are submitted again
    #: (a task whose result was lost with a killed worker and never recomputed); their
    #: outputs are idempotent, and whichever copy finishes first is taken
    stall_timeout = 300.0

    def __init__(self, client: Client) -> None:
        self.client = client
        self.dashboard_link: str | None = getattr(client, "dashboard_link", None)
        try:
            self.n_workers = max(1, sum(client.nthreads().values()))
        except Exception:  # noqa: BLE001 - a scheduler without workers yet
            self.n_workers = 1

    def forget(self, job: str) -> None:
        """Drop the series the workers keep for ``job``."""
        try:
            self.client.run(_forget, job)
        except Exception:  # noqa: BLE001 - a worker gone or a closed client: nothing kept
            pass

    def _submit(self, fn: Callable[..., Any], args: tuple[Any, ...], where: str | None
                ) -> Future[Any]:
        place = {"workers": [where], "allow_other_workers": True} if where else {}
        return self.client.submit(_on_worker, _Call(fn, args), pure=False, **place)

    def run(self, fn: Callable[..., _T], args_list: Sequence[tuple[Any, ...]],
            where: Sequence[str | None] | None = None
            ) -> Iterator[tuple[int, _T | None, BaseException | None]]:
        """Yield ``(index, result, error)`` as tasks finish; ``where[i]``: the worker
        address task ``i`` should run on (its data is there), if it is free."""
        from distributed import wait

        index: dict[Hashable, int] = {}

        def submit(i: int) -> Future[Any]:
            fut = self._submit(fn, args_list[i], where[i] if where is not None else None)
            index[fut.key] = i
            return fut

        pending = {submit(i) for i in range(len(args_list))}
        finished: set[int] = set()
        try:
            while len(finished) < len(args_list):
                try:
                    done, pending = wait(pending, timeout=self.stall_timeout,
                                         return_when="FIRST_COMPLETED")
                except TimeoutError:
                    again = {index[f.key] for f in pending} - finished
                    pending |= {submit(i) for i in again}
                    continue
                for fut in done:
                    i = index[fut.key]
                    if i in finished:
                        continue
                    try:
                        res, err = fut.result(timeout=self.stall_timeout), None
                    except TimeoutError:  # its result went with its worker: again
                        pending.add(submit(i))
                        continue
                    except Exception as exc:  # noqa: BLE001 - KilledWorker: reported
                        res, err = None, exc
                    finished.add(i)
                    fut.release()
                    yield i, res, err
                pending = self._drop_copies(pending, index, finished)
        finally:
            self.client.cancel([f for f in pending if not f.done()])

    def _drop_copies(self, pending: set[Future[Any]], index: dict[Hashable, int], finished: set[int]
                     ) -> set[Future[Any]]:
        """``pending`` without the copies of finished tasks (submitted after a stall),
        which are cancelled."""
        extra = [f for f in pending if index[f.key] in finished]
        if extra:
            self.client.cancel(extra)
        return {f for f in pending if index[f.key] not in finished}


#: Dask settings of the LocalCluster of ``workers=N``: the workers' statistical profiler (a
#: stack sample every 10 ms, for the dashboard's profile page) cost 20-25 % of the task CPU
#: of this work (many small Python calls); the event-loop health tick (every 20 ms) and the
#: system and memory monitors cost the idle client 4.8 % of a core and a worker 2.4 %
#: (0.8 % and 0.4 % with these), which a loaded machine's long wall times multiply
LOCAL_CLUSTER_CONFIG = {
    # a conversion task runs where its series were scanned (their headers are kept there);
    # stealing it for balance made the other worker read them again: with 2 workers 30 %
    # of the series, +20 % worker CPU (the tail of a job is balanced by the scan instead:
    # its parts are handed out as workers free up)
    "distributed.scheduler.work-stealing": False,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
}


def _fork_workers() -> bool:
    """Start the LocalCluster's worker processes by ``fork``: each then has this process's
    modules loaded (distributed, numpy, pydicom, ours) instead of importing them again, which
    cost a spawned worker 4-5 s of CPU before its first task.

    Only from a process whose one thread is this one (the ``dicomtools`` command): a fork
    copies the locks other threads hold, and a LocalCluster forked from a busy process (a
    test runner with another cluster running) was seen to hang. Not in a process running Qt
    (napari), nor where fork does not exist (see :func:`._parallel.mp_context`). Workers
    restarted later (after one was killed) are spawned: the setting holds only while the
    cluster starts."""
    import threading

    from ._parallel import mp_context

    return threading.active_count() == 1 and mp_context().get_start_method() == "fork"


def _warm_imports() -> None:
    """Import what every task needs, once, before the workers are forked from this process.
    Not pydicom: the fast header parser, the NIfTI writer and the byte-level de-identifier
    do without it, and a worker that meets a file only pydicom reads imports it then (in
    parallel with the others, not before any of them starts: 0.4 s of CPU, and 35 MB of
    the client's memory)."""
    import importlib

    for name in ("isal.igzip_threaded", "napari_dicomtools.core.headers",
                 "napari_dicomtools.core.series", "napari_dicomtools.core.naming",
                 "napari_dicomtools.core.nifti", "napari_dicomtools.core.volume",
                 "napari_dicomtools.core.anonymize", "napari_dicomtools.core.safety"):
        try:
            importlib.import_module(name)
        except ImportError:  # an optional codec library: the worker does without it
            pass


def _executor(workers: int | None, scheduler: str | None, client: Client | None
              ) -> tuple[_Executor, Callable[[], None]]:
    """(executor, cleanup) for the requested place of work."""
    if client is not None:
        return _Dask(client), lambda: None
    if scheduler:
        from distributed import Client

        try:
            c = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise DicomToolsError(None, f"cannot reach the Dask scheduler at {scheduler} "
                                        f"({exc})") from None
        return _Dask(c), c.close
    if workers == 0:
        return _InProcess(), lambda: None
    return _local_cluster(workers or (os.cpu_count() or 1))


def _local_cluster(n: int) -> tuple[_Executor, Callable[[], None]]:
    """A LocalCluster of ``n`` one-thread worker processes, and what closes it."""
    import dask
    from distributed import Client, LocalCluster

    config: dict[str, object] = dict(LOCAL_CLUSTER_CONFIG)
    if _fork_workers():
        _warm_imports()
        config["distributed.worker.multiprocessing-method"] = "fork"
    with dask.config.set(config):
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=40)
        c = Client(cluster)

    def close() -> None:
        c.close()
        cluster.close()

    return _Dask(c), close


# --------------------------------------------------------------------------------------------
# the job


def _job_description(kind: str, options: ConvertOptions | AnonymizeOptions | None,
                     key: bytes | None) -> _JobDescription:
    opts = dataclasses.asdict(options) if options is not None else {}
    opts.pop("key", None)
    return {"kind": kind, "options": opts,
            "key": _key_fingerprint(key) if key is not None else None,
            "version": 1}


def _partials_cleanup(folders: Iterable[str]) -> None:
    """Remove temporary files of writers that died (killed workers) from ``folders``:
    called when every task has ended, so none of them is still being written."""
    from .safety import clean_stale_partials

    for d in set(folders):
        clean_stale_partials(d, older_than=0)


def run_batch(kind: str,
              inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
              out: str | os.PathLike[str], *,
              options: ConvertOptions | AnonymizeOptions | None = None,
              key: bytes | str | None = None, pattern: str | None = None, force: bool = False,
              workers: int | None = None, scheduler: str | None = None,
              client: Client | None = None, progress: Progress | None = None,
              on_start: OnStart | None = None) -> Summary:
    """Convert (``kind="convert"``) or de-identify (``kind="anonymize"``) many inputs.

    Parameters
    ----------
    kind : {"convert", "anonymize"}
        NIfTI files (as ``dicomtools convert``), or de-identified DICOM files (as
        ``dicomtools anonymize``).
    inputs : str, os.PathLike or iterable of them
        Folders, files, ``.zip`` archives, DICOMDIRs, list files (see :func:`expand_inputs`).
    out : str or os.PathLike
        Output folder (outside every input), holding the manifest.
    options : ConvertOptions or napari_dicomtools.core.anonymize.Options, optional
        Options of the job (default: the defaults of its kind).
    key : bytes or str, optional
        Anonymization secret (default: ``options.key``, else random: such a job cannot be
        resumed, as a rerun would map UIDs differently).
    pattern : str, optional
        Output names of a conversion, as ``dicomtools convert -f`` (dcm2niix ``%`` codes,
        ``/`` makes folders; see :mod:`~napari_dicomtools.core.naming`); default
        :data:`BATCH_PATTERN`, a folder per patient and study. Names are made unique over
        the whole job in ``scan`` order, so one input gets the names of the single-input
        ``convert`` with the same pattern.
    force : bool
        Start over: ignore the manifest and replace existing outputs.
    workers : int, optional
        Processes of a LocalCluster (default: one per core); 0: in this process.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``).
    client : distributed.Client, optional
        An existing client (wins over ``scheduler`` and ``workers``).
    progress : callable, optional
        ``progress(phase, done, total)``, phase ``"scanning"`` or ``"convert"``/
        ``"anonymize"``.
    on_start : callable, optional
        ``on_start(dashboard_link or None)`` once the cluster is up.

    Returns
    -------
    Summary
        What was done, skipped, left out and why.

    Raises
    ------
    DicomToolsError
        Bad inputs, an output inside an input, a job of another kind/options/key in ``out``,
        an unreachable scheduler, or (convert) existing outputs without ``force``.
    KeyboardInterrupt
        Passed on after the manifest is closed: a rerun continues where this one stopped.

    Examples
    --------
    >>> import os, tempfile
    >>> from napari_dicomtools.core.synthetic import make_archive
    >>> tmp = tempfile.mkdtemp()
    >>> archive = make_archive(os.path.join(tmp, "archive"), patients=1, studies=1, series=1,
    ...                        slices=2, size=4, corrupt=1, duplicates=0, bad_series=0)
    >>> s = run_batch("anonymize", archive.root, os.path.join(tmp, "anon"), key="secret",
    ...               workers=0)
    >>> s.succeeded, s.failed, s.outputs
    (1, 1, 2)
    >>> s.failures[0][1]
    '...broken0.dcm: not a DICOM file (no SOP Class/Instance UID)'
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    t_start = time.perf_counter()
    out = os.path.abspath(os.fspath(out))
    paths = _checked_inputs(inputs, out)
    options, secret, job = _job(kind, options, key)
    _prepare_out(kind, out, force)
    summary = Summary(kind, out)
    manifest = _Manifest(out, job, force)
    executor: _Executor | None = None
    cleanup: Callable[[], None] = lambda: None  # noqa: E731
    token = f"{os.getpid()}-{time.time_ns()}"
    try:
        sources = _list_sources(paths, summary)
        executor, cleanup = _executor(workers, scheduler, client)
        summary.dashboard = executor.dashboard_link
        if on_start is not None:
            on_start(summary.dashboard)
        if isinstance(options, ConvertOptions):  # headers read in parallel, then the series
            records = _convert_scan(executor, sources, token, options,
                                    pattern or BATCH_PATTERN, summary, progress)
            tasks = _convert_plan(records, out, ".nii.gz" if options.gzip else ".nii")
        else:
            tasks = _anonymize_plan(_anonymize_scan(executor, sources, progress), summary)
        del sources
        summary.total = len(tasks)
        todo = _pending(kind, tasks, manifest, force, summary)
        manifest.start()
        _work(executor, todo, (out, options, secret), manifest, summary, progress)
    finally:
        manifest.close()
        if executor is not None:
            executor.forget(token)
        cleanup()
    summary.seconds = time.perf_counter() - t_start
    return summary


def _checked_inputs(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
                    out: str) -> list[str]:
    """The expanded inputs (see :func:`expand_inputs`), none of which holds ``out``."""
    from .safety import refuse_inside_source

    paths = expand_inputs(inputs)
    if not paths:
        raise DicomToolsError(None, "no inputs given")
    for p in paths:
        refuse_inside_source(out, p.partition("::")[0])
    return paths


def _job(kind: str, options: ConvertOptions | AnonymizeOptions | None,
         key: bytes | str | None
         ) -> tuple[ConvertOptions | AnonymizeOptions, bytes, _JobDescription]:
    """``(options, key, job description)``: the defaults filled in (a conversion's key is
    empty); an anonymization without a key gets a random one, and a job description no
    rerun matches (it could not map the UIDs the same way)."""
    if kind == "convert":
        if not isinstance(options, (ConvertOptions, type(None))):
            raise TypeError(f"a conversion takes ConvertOptions, not {type(options).__name__}")
        options = options or ConvertOptions()
        return options, b"", _job_description(kind, options, None)
    from .anonymize import Options

    if not isinstance(options, (Options, type(None))):
        raise TypeError(f"an anonymization takes anonymize.Options, not "
                        f"{type(options).__name__}")
    options = options or Options()
    key = key if key is not None else options.key
    resumable = key is not None
    if key is None:
        import secrets

        key = secrets.token_bytes(32)
    secret = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    job = _job_description(kind, options, secret)
    if not resumable:
        job["key"] = f"random:{job['key']}"  # never matches: a random key cannot resume
    return options, secret, job


def _prepare_out(kind: str, out: str, force: bool) -> None:
    """Make the output folder; a new batch anonymization wants it empty."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise DicomToolsError(out, "exists and is not a folder")
    os.makedirs(out, exist_ok=True)
    if kind == "anonymize" and not force and not os.path.exists(os.path.join(out, JOBFILE)):
        # the names of de-identified files are known only once written: start in a folder
        # holding nothing else, so that every file in it is this job's
        with os.scandir(out) as it:
            other = next((e.path for e in it if e.name != MANIFEST), None)
        if other is not None:
            raise DicomToolsError(out, f"is not empty ({other}); a batch anonymization "
                                       "writes into a new or empty folder (or use --force)")


def _list_sources(paths: list[str], summary: Summary) -> _Inputs:
    """Every input's files, with its ``%f`` folder name; the entries left out (not files,
    unreadable archives...) go to ``summary.unreadable``."""
    from .sources import iter_sources

    inputs: _Inputs = []
    skipped = []
    for p in paths:
        s, k = iter_sources(p)
        inputs.append((s, _folder_name(p)))
        skipped.extend(k)
    summary.files = sum(len(s) for s, _ in inputs)
    summary.unreadable = [(k.path, k.reason) for k in skipped]
    return inputs


def _pending(kind: str, tasks: list[_Task], manifest: _Manifest, force: bool,
             summary: Summary) -> list[_Task]:
    """The tasks still to do: those the manifest has as done (same sources, outputs there)
    are skipped; a new conversion refuses outputs that exist already."""
    todo = []
    for t in tasks:
        if not force and manifest.is_done(t.task, t.meta.get("sources", "")):
            summary.skipped += 1
        else:
            todo.append(t)
    # Outputs existing when a job starts are refused (unless ``force`` or resumed); past
    # that check every file at a target is this job's own (an earlier attempt of a task
    # on a killed worker, or of an interrupted run), so tasks replace them.
    if kind == "convert" and not (force or manifest.resumed):
        clash = [t.target for t in todo if os.path.lexists(t.target)]
        if clash:
            raise DicomToolsError(clash[0], "exists; not overwriting (use --force)")
    return todo


def _work(executor: _Executor, todo: list[_Task],
          job: tuple[str, ConvertOptions | AnonymizeOptions, bytes], manifest: _Manifest,
          summary: Summary, progress: Progress | None) -> None:
    """Run ``todo`` (Dask tasks of several series, on the worker that keeps them), each
    result recorded as it arrives; ``job``: ``(out, options, key)``."""
    out, options, key = job
    fn: Callable[..., _Result]
    args: list[tuple[Any, ...]]
    wheres: list[str | None]
    if isinstance(options, ConvertOptions):
        fn = _convert_task
        args = [_convert_args(t, options) for t in todo]
        wheres = [t.record["worker"] if t.record is not None else None for t in todo]
    else:
        fn = _anonymize_task
        args = [(t.sources, out, options, key, True) for t in todo]
        wheres = [None] * len(todo)
    folders: set[str] = set()
    groups = _by_worker(wheres, executor.n_workers, SERIES_PER_TASK)
    n = 0
    for g, results, err in executor.run(_each, [(fn, [args[i] for i in r]) for r in groups],
                                        where=[wheres[r[0]] for r in groups]):
        for i, res in zip(groups[g], results or [None] * len(groups[g]), strict=True):
            n += 1
            _record(manifest, summary, todo[i], res, err, folders)
            if progress is not None:
                progress(summary.kind, n, len(todo))
    _partials_cleanup(folders)


def _convert_args(t: _Task, options: ConvertOptions
                  ) -> tuple[_Ref, str, bool, ConvertOptions, _Ref | None]:
    """The arguments of :func:`_convert_task` for ``t``."""
    assert t.record is not None  # a conversion's task has its series
    return (_ref(t.record), t.target, True, options,
            _ref(t.ref) if t.ref is not None else None)


def _by_worker(wheres: Sequence[str | None], workers: int, most: int) -> list[list[int]]:
    """Task indices in groups (Dask tasks) of the same worker (where their series were
    scanned and are kept), about ``TASKS_PER_WORKER`` groups a worker, ``most`` at most."""
    per = max(1, min(most, -(-len(wheres) // max(1, workers * TASKS_PER_WORKER))))
    by: dict[str | None, list[int]] = defaultdict(list)
    for i, w in enumerate(wheres):
        by[w].append(i)
    return [idx[j:j + per] for idx in by.values() for j in range(0, len(idx), per)]


def _anonymize_scan(executor: _Executor, inputs: _Inputs, progress: Progress | None
                    ) -> list[_ScanRow]:
    """A :class:`_ScanRow` of every file, without Instances (the UIDs are what counts)."""
    sources = [src for srcs, _ in inputs for src in srcs]
    chunks = [sources[r.start:r.stop] for r in
              _batches(len(sources), executor.n_workers, SCAN_CHUNK)]
    rows: list[_ScanRow] = []
    done = 0
    for _i, res, err in executor.run(_scan_chunk, [(c, True) for c in chunks]):
        if err is not None or res is None:
            raise DicomToolsError(None, f"reading headers failed on a worker ({err})")
        rows.extend(res)
        done += len(res)
        if progress is not None:
            progress("scanning", done, len(sources))
    return rows


def _record(manifest: _Manifest, summary: Summary, t: _Task, res: _Result | None,
            err: BaseException | None, folders: set[str]) -> None:
    """Account for one series' result (``err``: its task never finished)."""
    if err is not None or res is None:  # its worker died every time it tried (out of memory?)
        res = {"status": "failed", "outputs": [], "worker": "", "seconds": "",
               "error": f"{t.label}: the task could not finish ({type(err).__name__}"
                        f": {err})"}
    manifest.record(t.task, t.meta, res)
    folders.update(os.path.dirname(p) for p in res["outputs"])
    if t.target:
        folders.add(os.path.dirname(t.target))
    summary.outputs += len(res["outputs"])
    summary.warnings.extend(res.get("warnings", ()))
    if t.record is not None and res["status"] == "done":
        summary.warnings.extend(f"{t.label}: {p}" for p in t.record["problems"])
    summary.unreadable.extend(res.get("notes", ()))
    if res["status"] == "done":
        summary.succeeded += 1
    else:
        summary.failed += 1
        summary.failures.append((t.label, res["error"]))


def _anonymize_plan(rows: list[_ScanRow], summary: Summary) -> list[_Task]:
    """One task per SeriesInstanceUID (duplicate SOP instances left out); files without a
    series (not DICOM, unreadable) in chunks, so each gets its reason from the anonymizer."""
    stats = {str(r.source): [str(r.source), r.size, r.mtime_ns] for r in rows}
    by_series: dict[str, list[Source]] = defaultdict(list)
    loose: list[Source] = []
    seen: dict[tuple[str, str], str] = {}
    for r in sorted(rows, key=lambda r: str(r.source)):
        uid, sop = r.series_uid, r.sop_uid
        if uid is None:
            loose.append(r.source)
            continue
        if sop and (uid, sop) in seen:
            summary.unreadable.append((str(r.source), f"duplicate of {seen[(uid, sop)]} "
                                                      "(same SOPInstanceUID); written once"))
            continue
        if sop:
            seen[(uid, sop)] = str(r.source)
        by_series[uid].append(r.source)
    tasks = []
    for uid in sorted(by_series):
        files = [str(s) for s in by_series[uid]]
        tasks.append(_Task(task=uid, label=f"series {uid} ({len(files)} files)",
                           sources=by_series[uid],
                           meta={"series_uid": uid, "n_files": len(files),
                                 "sources": json.dumps([stats[f] for f in files])}))
    for i in range(0, len(loose), 200):
        part = loose[i:i + 200]
        files = [str(s) for s in part]
        tid = "files:" + hashlib.sha1("\n".join(files).encode()).hexdigest()[:16]
        tasks.append(_Task(task=tid, label=f"{len(files)} file(s) without a series",
                           sources=part,
                           meta={"n_files": len(files),
                                 "sources": json.dumps([stats[f] for f in files])}))
    return tasks


# --------------------------------------------------------------------------------------------
# metadata tables as a Parquet dataset

#: rows (files) per Parquet part: one task each
ROWS_PER_PART = 5000
_FLOAT_VRS = frozenset({"DS", "FL", "FD"})
_INT_VRS = frozenset({"IS", "US", "UL", "SS", "SL", "SV", "UV"})


def _column_types(specs: Iterable[tuple[int, str, str]]) -> dict[str, str]:
    """``{column: "float" | "int" | "str"}``: numbers for single-valued numeric VRs."""
    from pydicom.datadict import dictionary_VM

    types = {}
    for tag, name, vr in specs:
        try:
            single = dictionary_VM(tag) == "1"
        except KeyError:
            single = False
        types[name] = ("float" if vr in _FLOAT_VRS else "int" if vr in _INT_VRS
                       else "str") if single else "str"
    return types


def _typed_columns(rows: Sequence[dict[str, Any]], columns: list[str],
                   types: dict[str, str]) -> pyarrow.Table:
    """A pyarrow Table of ``rows``; a value that is not the number its VR promises becomes
    null, with the value quoted in the row's ``error`` cell (nothing is lost silently)."""
    import pyarrow as pa

    data: dict[str, list[Any]] = {c: [] for c in columns}
    for r in rows:
        notes = []
        for c in columns:
            v = r.get(c, "")
            kind = types.get(c, "str")
            if v == "" or v is None:
                v = None
            elif kind != "str":
                try:
                    v = float(v) if kind == "float" else int(v)
                except (TypeError, ValueError):
                    notes.append(f"{c}: {v!r} is not a number")
                    v = None
            elif not isinstance(v, str):
                v = str(v)
            data[c].append(v)
        if notes and "error" in data:
            data["error"][-1] = "; ".join(x for x in (data["error"][-1], *notes) if x)
    arrow = {"float": pa.float64(), "int": pa.int64(), "str": pa.string()}
    schema = pa.schema([(c, arrow[types.get(c, "str")]) for c in columns])
    return pa.Table.from_pydict(data, schema=schema)


class _TableSpec(NamedTuple):
    """The columns of a metadata table."""

    tagmap: dict[int, tuple[str, str]]  # tag -> (column, VR)
    columns: list[str]
    types: dict[str, str]  # column -> "float" | "int" | "str"


def _table_spec(tags: Iterable[int | str] | None, deidentify: bool) -> _TableSpec:
    from .metadata import DEFAULT_TAGS, INSTANCE_COLUMNS, deidentified_columns, parse_tag

    specs = [parse_tag(t) for t in (DEFAULT_TAGS if tags is None else tags)]
    columns = list(INSTANCE_COLUMNS[:3]) + [n for _, n, _ in specs] + ["error"]
    if deidentify:
        columns = deidentified_columns(columns, specs)
    return _TableSpec({t: (name, vr) for t, name, vr in specs}, columns, _column_types(specs))


def _write_part(path: str, rows: Sequence[dict[str, Any]], columns: list[str],
                types: dict[str, str]) -> None:
    """One Parquet file, written atomically."""
    import pyarrow.parquet as pq

    from .safety import atomic_output

    with atomic_output(path) as tmp:
        pq.write_table(_typed_columns(rows, columns, types), tmp)


def _table_part(sources: Sequence[Source], extra_rows: Sequence[dict[str, Any]],
                spec: _TableSpec, path: str, deidentify: bool) -> int:
    """Read the tags of ``sources`` (a task) and write them as one Parquet file."""
    from .metadata import instance_rows, redact_paths

    rows: list[dict[str, Any]] = instance_rows(sources, spec.tagmap) + list(extra_rows)
    if deidentify:
        known = [str(r["path"]) for r in rows]
        for r in rows:
            if r.get("error"):
                r["error"] = redact_paths(str(r["error"]), known)
    _write_part(path, rows, spec.columns, spec.types)
    return len(rows)


def tabulate(inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
             out: str | os.PathLike[str], tags: Iterable[int | str] | None = None, *,
             level: str = "instance", deidentify: bool = False, force: bool = False,
             workers: int | None = None, scheduler: str | None = None,
             client: Client | None = None, progress: Progress | None = None,
             on_start: OnStart | None = None, rows_per_part: int = ROWS_PER_PART
             ) -> dict[str, Any]:
    """A metadata table of ``inputs`` as a Parquet dataset: ``out/part-00000.parquet``...

    ``level="instance"``: one row per file, read in parallel (one task per
    ``rows_per_part`` files), each task writing its own part, so no process ever holds the
    whole table. Columns: ``path``, ``series_uid``, ``sop_uid``, the tags, ``error`` (the
    reason a file could not be read). ``level="series"``: the table of
    :func:`~napari_dicomtools.core.metadata.metadata_table` (one row per series), computed
    here and written as one part. Single-valued numeric attributes (DS, IS, US, FL...) are
    numbers, the rest strings. Read it with ``pandas.read_parquet(out)`` or
    ``dask.dataframe.read_parquet(out)``.

    Parameters
    ----------
    inputs
        As for :func:`run_batch`.
    out : str or os.PathLike
        A new (or empty) folder; with ``force`` its old parts are replaced.
    tags : iterable of str or int, optional
        Default :data:`~napari_dicomtools.core.metadata.DEFAULT_TAGS`.
    level : {"instance", "series"}
        One row per file, or per series.
    deidentify : bool
        Leave out what the PS3.15 profile removes, paths and UIDs (as
        :func:`~napari_dicomtools.core.metadata.metadata_table`).
    force : bool
        Write into a folder that holds files (old parts are removed).
    workers, scheduler, client, progress, on_start
        As for :func:`run_batch`.
    rows_per_part : int
        Files per Parquet part (and per task) at the instance level.

    Returns
    -------
    dict
        ``rows``, ``parts``, ``seconds``, ``dashboard``.

    Raises
    ------
    DicomToolsError
        pyarrow is not installed, ``out`` is inside an input or not empty (without
        ``force``), or a part could not be written.

    Examples
    --------
    >>> import os, tempfile
    >>> import pandas as pd
    >>> from napari_dicomtools.core.synthetic import make_archive
    >>> tmp = tempfile.mkdtemp()
    >>> archive = make_archive(os.path.join(tmp, "archive"), patients=1, studies=1, series=1,
    ...                        slices=2, size=4, corrupt=0, duplicates=0, bad_series=0)
    >>> res = tabulate(archive.root, os.path.join(tmp, "table"), ["Modality", "Rows"],
    ...                workers=0)
    >>> res["rows"], res["parts"]
    (2, 1)
    >>> pd.read_parquet(os.path.join(tmp, "table"))[["Modality", "Rows"]].values.tolist()
    [['CT', 4], ['CT', 4]]
    """
    from .safety import refuse_inside_source

    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise DicomToolsError(None, "Parquet needs pyarrow: pip install pyarrow (or "
                                    "napari-dicomtools[all])") from None
    t0 = time.perf_counter()
    out = os.path.abspath(os.fspath(out))
    paths = expand_inputs(inputs)
    for p in paths:
        refuse_inside_source(out, p.partition("::")[0])
    spec = _table_spec(tags, deidentify)
    if level not in ("series", "instance"):
        raise ValueError(f"level must be 'series' or 'instance', got {level!r}")
    _table_folder(out, force)
    if level == "series":
        rows = _series_table(paths, out, tags, deidentify, spec)
        return {"rows": rows, "parts": 1, "seconds": time.perf_counter() - t0,
                "dashboard": None}
    executor, cleanup = _executor(workers, scheduler, client)
    try:
        if on_start is not None:
            on_start(executor.dashboard_link)
        rows, parts = _instance_table(executor, paths, out, spec, deidentify, rows_per_part,
                                      progress)
    finally:
        cleanup()
    return {"rows": rows, "parts": parts, "seconds": time.perf_counter() - t0,
            "dashboard": executor.dashboard_link}


def _table_folder(out: str, force: bool) -> None:
    """Make the folder of a table: new or empty, or (``force``) its old parts removed."""
    import glob

    if os.path.exists(out):
        if not os.path.isdir(out):
            raise DicomToolsError(out, "exists and is not a folder")
        if os.listdir(out):
            if not force:
                raise DicomToolsError(out, "is not empty; not overwriting (use --force)")
            for old in glob.glob(os.path.join(out, "part-*.parquet")):
                os.unlink(old)
    os.makedirs(out, exist_ok=True)


def _series_table(paths: list[str], out: str, tags: Iterable[int | str] | None,
                  deidentify: bool, spec: _TableSpec) -> int:
    """The series-level table as one part; its number of rows."""
    from .metadata import metadata_table

    table = metadata_table(paths, tags, level="series", deidentify=deidentify,
                           as_frame=False)
    types = dict(spec.types, n_slices="int", n_files="int", rows="int", columns="int",
                 skipped_files="int", acquisition_duration_s="float")
    _write_part(os.path.join(out, "part-00000.parquet"), table,
                list(table[0]) if table else spec.columns, types)
    return len(table)


def _instance_table(executor: _Executor, paths: list[str], out: str, spec: _TableSpec,
                    deidentify: bool, rows_per_part: int, progress: Progress | None
                    ) -> tuple[int, int]:
    """The instance-level table, a part per task: (rows, parts)."""
    from .sources import iter_sources

    sources: list[Source] = []
    skipped = []
    for p in paths:
        s, k = iter_sources(p)
        sources.extend(s)
        skipped.extend(k)
    chunks = [sources[i:i + rows_per_part] for i in range(0, len(sources), rows_per_part)]
    extra = [{"path": k.path, "error": k.reason} for k in skipped]
    if extra or not chunks:
        chunks.append([])
    names = [os.path.join(out, f"part-{i:05d}.parquet") for i in range(len(chunks))]
    args = [(c, extra if i == len(chunks) - 1 else [], spec, names[i], deidentify)
            for i, c in enumerate(chunks)]
    rows = 0
    for _i, res, err in executor.run(_table_part, args):
        if err is not None or res is None:
            raise DicomToolsError(out, f"a part could not be written ({err})")
        rows += res
        if progress is not None:
            progress("tabulating", rows, len(sources) + len(extra))
    return rows, len(names)
