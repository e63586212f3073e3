"""Study-wide metadata tables: one row per series or per file, chosen tags plus derived columns.

Headers only: files are read up to Pixel Data with the fast header path (pydicom where it
declines), only the requested tags are decoded, and large folders are read by two processes.

Examples
--------
>>> from pydicom.data import get_testdata_file
>>> rows = metadata_table(get_testdata_file("CT_small.dcm"), ["Modality", "KVP"],
...                       level="instance", as_frame=False)
>>> rows[0]["Modality"], rows[0]["KVP"], rows[0]["error"]
('CT', 120.0, '')
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .errors import DicomToolsError

if TYPE_CHECKING:
    from typing import TypeAlias

    import pandas as pd

    from .series import Series
    from .sources import Source

    #: one table cell: text, a number, or ``""`` when the file lacks the tag
    Cell: TypeAlias = str | int | float
    #: the tags of a table: tag -> (column name, dictionary VR)
    TagMap: TypeAlias = Mapping[int, tuple[str, str]]
    #: where a table reads from: a file, folder, ``.zip`` or DICOMDIR, or several
    PathInput: TypeAlias = os.PathLike[str] | str | Sequence[os.PathLike[str] | str]

__all__ = [
    "DEFAULT_TAGS", "SERIES_COLUMNS", "INSTANCE_COLUMNS", "parse_tag", "read_tags",
    "instance_rows", "metadata_table", "redact_paths", "deidentified_columns", "write_csv",
]


#: a useful default for curating CT/MR datasets
DEFAULT_TAGS = (
    "PatientID", "PatientSex", "PatientAge", "StudyDate", "StudyDescription", "Modality",
    "SeriesNumber", "SeriesDescription", "Manufacturer", "ManufacturerModelName",
    "BodyPartExamined", "SliceThickness", "KVP", "ConvolutionKernel", "ContrastBolusAgent",
    "MagneticFieldStrength", "RepetitionTime", "EchoTime",
)

#: derived columns, in order, per level
SERIES_COLUMNS = ("series_uid", "n_slices", "n_files", "shape", "rows", "columns",
                  "spacing_mm", "spacing_source", "orientation", "frame_time_ms",
                  "acquisition_duration_s", "skipped_files", "problems")
INSTANCE_COLUMNS = ("path", "series_uid", "sop_uid", "error")


def parse_tag(spec: int | str) -> tuple[int, str, str]:
    """``(tag, column name, dictionary VR)`` from a keyword, ``(gggg,eeee)``, ``gggg,eeee``,
    ``ggggeeee`` or an int.

    Parameters
    ----------
    spec : int or str
        A keyword (``"SliceThickness"``), a tag in one of the text forms above, or the tag
        as an int (``0x00180050``).

    Returns
    -------
    tuple of (int, str, str)
        The tag, the column name (the keyword, or ``(gggg,eeee)`` for a tag the data
        dictionary does not name, e.g. a private one) and the dictionary VR (the first of
        ``"US or SS"``; ``UN``/``LO`` for unknown public/private tags).

    Raises
    ------
    ValueError
        Unknown keyword or malformed tag, with a hint.

    Examples
    --------
    >>> parse_tag("SliceThickness")
    (1572944, 'SliceThickness', 'DS')
    >>> parse_tag("(0029,1010)")
    (2691088, '(0029,1010)', 'LO')
    """
    from .fastheader import KEYWORDS

    text = "" if isinstance(spec, int) else str(spec).strip()
    if text in KEYWORDS:  # no pydicom import needed
        tag, vr = KEYWORDS[text]
        return tag, text, vr.split(" or ")[0]
    from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

    if isinstance(spec, int):
        tag = spec
    else:
        m = re.fullmatch(r"\(?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*\)?", text)
        if m:
            tag = int(m.group(1) + m.group(2), 16)
        else:
            found = tag_for_keyword(text)
            if found is None:
                raise ValueError(f"unknown DICOM keyword {text!r} (use a keyword such as "
                                 "'SliceThickness' or a tag such as '(0018,0050)')")
            tag = found
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        vr = "UN" if (tag >> 16) & 1 == 0 else "LO"
    name = keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    return tag, name, vr.split(" or ")[0]


def _cell(value: Any) -> Cell:
    """A table cell: str/int/float, multi-values joined with backslashes, '' when absent."""
    kind = type(value)
    if kind is str:  # the usual case first (fast-header text)
        return value.strip()  # type: ignore[no-any-return]  # (a str)
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or kind.__name__ == "MultiValue":
        return "\\".join(str(_cell(v)) for v in value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, (int, float)):  # pydicom's DSfloat and IS included, as they are
        return value
    if kind.__name__ in ("DSfloat", "IS", "DSdecimal"):
        return float(value) if kind.__name__ != "IS" else int(value)
    if kind.__name__ == "Sequence":
        return f"<sequence of {len(value)} item(s)>"
    return str(value).strip()


_BASE = {0x0020000E: "series_uid", 0x00080018: "sop_uid"}


def _wanted(tags: TagMap) -> dict[int, tuple[str, str]]:
    """``tags`` plus the Series and SOP Instance UIDs every row carries."""
    wanted = dict(tags)
    for t, col in _BASE.items():
        wanted.setdefault(t, (col, "UI"))
    return wanted


def read_tags(source: Source | os.PathLike[str] | str, tags: TagMap) -> dict[str, Cell]:
    """``{column: value}`` of ``tags`` from one file's header, plus ``series_uid`` and
    ``sop_uid``.

    Parameters
    ----------
    source : Source, str or os.PathLike
        The file (or zip member).
    tags : mapping of int to (str, str)
        ``{tag: (column name, dictionary VR)}``, as :func:`parse_tag` gives them.

    Returns
    -------
    dict
        One cell per column: numbers (DS, IS, US ...) as int or float, text stripped,
        several values joined by backslashes, ``""`` for a tag the file lacks.

    Raises
    ------
    DicomToolsError
        Not DICOM, truncated or unreadable, with the reason.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> tag, name, vr = parse_tag("PatientID")
    >>> row = read_tags(get_testdata_file("CT_small.dcm"), {tag: (name, vr)})
    >>> row["PatientID"], sorted(row)
    ('1CT1', ['PatientID', 'series_uid', 'sop_uid'])
    """
    return _read_row(source, _wanted(tags))


def _read_row(source: Source | os.PathLike[str] | str,
              wanted: Mapping[int, tuple[str, str]],
              extra: Mapping[int, str] | None = None) -> dict[str, Cell]:
    """:func:`read_tags` with the UID columns already in ``wanted`` (``extra``: its VRs)."""
    from . import fastheader
    from .errors import NotDicomError, UnreadableDicomError
    from .headers import open_dicom
    from .sources import Source

    if not isinstance(source, Source):
        source = Source(os.fspath(source))
    name = str(source)
    with open_dicom(source) as (fp, size, dicm):
        if dicm:
            try:
                ds = fastheader.parse(fp, size, extra=dict(extra) if extra is not None else
                                      {t: v for t, (_, v) in wanted.items()})
                get = ds.get_tag
                return _checked(name, {col: _cell(get(t)) for t, (col, _) in wanted.items()})
            except (fastheader.Unsupported, EOFError, ValueError, UnicodeDecodeError):
                fp.seek(0)
            except Exception:  # noqa: BLE001 - struct errors on garbage: let pydicom judge
                fp.seek(0)
        from .headers import safe_dcmread

        try:  # (a deflated file is inflated only up to its Pixel Data, with a cap)
            pds = safe_dcmread(fp, name, stop_before_pixels=True, force=not dicm,
                               specific_tags=list(wanted))
        except Exception as exc:  # noqa: BLE001
            raise UnreadableDicomError(name, f"header cannot be parsed "
                                             f"({type(exc).__name__}: {exc})") from None
        if not dicm and len(pds) == 0:
            raise NotDicomError(name, "not a DICOM file")
        out: dict[str, Cell] = {}
        for t, (col, _) in wanted.items():
            try:
                el = pds.get(t)
                out[col] = _cell(el.value if el is not None else None)
            except Exception:  # noqa: BLE001 - an undecodable value is an empty cell
                out[col] = ""
        return _checked(name, out)


def _checked(name: str, row: dict[str, Cell]) -> dict[str, Cell]:
    from .errors import UnreadableDicomError

    if not row.get("sop_uid") and not row.get("series_uid"):
        raise UnreadableDicomError(name, "no SOP Instance UID or Series Instance UID: the "
                                         "header is empty, truncated or not an image object")
    return row


def instance_rows(sources: Sequence[Source], tags: TagMap) -> list[dict[str, Cell]]:
    """One row per file: its ``path``, the ``tags`` (:func:`read_tags`) and ``error``, the
    reason a file was not read (its row then has no tag columns).

    Parameters
    ----------
    sources : sequence of Source
        The files (or zip members), in the order of the rows.
    tags : mapping of int to (str, str)
        ``{tag: (column name, dictionary VR)}``, as :func:`parse_tag` gives them.

    Returns
    -------
    list of dict
        ``{"path", <columns of tags>, "series_uid", "sop_uid", "error"}`` per readable file,
        ``{"path", "error"}`` per unreadable one.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> from napari_dicomtools.core.sources import Source
    >>> tag, name, vr = parse_tag("Modality")
    >>> ok, bad = instance_rows([Source(get_testdata_file("CT_small.dcm")), Source(__file__)],
    ...                         {tag: (name, vr)})
    >>> ok["Modality"], ok["error"]
    ('CT', '')
    >>> sorted(bad), bad["error"]
    (['error', 'path'], "not a DICOM file (no 'DICM' marker, no DICOM data elements at the start)")
    """
    wanted = _wanted(tags)
    extra = {t: v for t, (_, v) in wanted.items()}
    rows: list[dict[str, Cell]] = []
    for src in sources:
        try:
            row: dict[str, Cell] = {"path": str(src), **_read_row(src, wanted, extra),
                                    "error": ""}
        except DicomToolsError as exc:
            row = {"path": str(src), "error": exc.reason}
        rows.append(row)
    return rows


def _instance_rows_parallel(sources: Sequence[Source], tags: TagMap,
                            workers: int) -> list[dict[str, Cell]]:
    from concurrent.futures import ProcessPoolExecutor

    from ._parallel import mp_context

    chunks = [sources[i::workers] for i in range(workers)]
    ctx = mp_context()
    with ProcessPoolExecutor(workers, mp_context=ctx) as ex:
        parts = list(ex.map(instance_rows, chunks, [tags] * workers))
    # restore the input order
    order = {str(s): i for i, s in enumerate(sources)}
    rows = [r for part in parts for r in part]
    rows.sort(key=lambda r: order[str(r["path"])])
    return rows


def metadata_table(path: PathInput, tags: Iterable[int | str] | None = None,
                   level: str = "series", *, deidentify: bool = False,
                   as_frame: bool | None = None,
                   workers: int | None = None) -> pd.DataFrame | list[dict[str, Cell]]:
    """A table of header values: one row per series (default) or per file.

    Parameters
    ----------
    path : str, os.PathLike or list of them
        File, folder (recursive), ``.zip`` or DICOMDIR; at instance level also a list.
    tags : iterable of str or int, optional
        Keywords (``"SliceThickness"``) or tags (``"(0018,0050)"``, ``"00180050"``).
        Default: ``DEFAULT_TAGS``.
    level : {"series", "instance"}
        ``series``: tags from each series' first file plus derived columns (slice count,
        files, shape, spacing (empty when the pixel size is unknown) and where it comes from,
        in-plane size, orientation label, a cine's frame time, acquisition duration,
        skipped files, problems). ``instance``: one row per file, unreadable files included
        with the reason in ``error``; a tag a file lacks is an empty cell.
    deidentify : bool
        Drop every column the PS3.15 Annex E basic profile would remove or replace (the
        anonymizer's own table), plus file paths and UIDs.
    as_frame : bool, optional
        Return a pandas DataFrame (default: when pandas is installed), else a list of dicts.
    workers : int, optional
        Processes for instance-level reads (default: up to 2 for 200 files or more).

    Returns
    -------
    pandas.DataFrame or list of dict
        The columns are the tags (in the order asked) followed by ``SERIES_COLUMNS``, or
        ``path``, ``series_uid``, ``sop_uid``, the tags and ``error`` at instance level.

    Raises
    ------
    ValueError
        An unknown ``level`` or tag keyword.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from napari_dicomtools.core.synthetic import write_series
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_series(folder, np.zeros((3, 4, 4)))
    >>> rows = metadata_table(folder, ["Modality", "SliceThickness"], as_frame=False)
    >>> rows[0]["Modality"], rows[0]["n_slices"], rows[0]["shape"]
    ('CT', 3, '3x4x4')
    >>> sorted(metadata_table(folder, ["PatientID", "Modality"], deidentify=True,
    ...                       as_frame=False)[0])[:3]
    ['Modality', 'acquisition_duration_s', 'columns']
    """
    if level not in ("series", "instance"):
        raise ValueError(f"level must be 'series' or 'instance', got {level!r}")
    specs = [parse_tag(t) for t in (DEFAULT_TAGS if tags is None else tags)]
    tagmap = {t: (name, vr) for t, name, vr in specs}
    columns = [name for _, name, _ in specs]
    known: set[str] = set()  # source paths, redacted from de-identified cells
    if level == "instance":
        rows = _instance_table(path, tagmap, workers)
        order = list(INSTANCE_COLUMNS[:3]) + columns + ["error"]
        known.update(str(r["path"]) for r in rows)
    else:
        rows = _series_rows(path, tagmap, known)
        order = columns + list(SERIES_COLUMNS)
    if deidentify:
        order = deidentified_columns(order, specs)
        known.update(os.fspath(p) for p in _paths(path))
        for r in rows:
            for col in ("problems", "error"):
                if r.get(col):
                    r[col] = redact_paths(str(r[col]), known)
    table = [{c: r.get(c, "") for c in order} for r in rows]
    if as_frame is None or as_frame:
        try:
            import pandas as pd
        except ImportError:
            if as_frame:
                raise
            return table
        return pd.DataFrame(table, columns=order)
    return table


def _paths(path: PathInput) -> list[os.PathLike[str] | str]:
    """``path`` as a list of paths."""
    return [path] if isinstance(path, (str, os.PathLike)) else list(path)


def _instance_table(path: PathInput, tagmap: TagMap,
                    workers: int | None) -> list[dict[str, Cell]]:
    """Instance-level rows of every file under ``path``, skipped files last."""
    from .sources import iter_sources

    sources: list[Source] = []
    skipped = []
    for p in _paths(path):
        s, k = iter_sources(p)
        sources.extend(s)
        skipped.extend(k)
    n_workers = workers if workers is not None else (
        min(2, os.cpu_count() or 1) if len(sources) >= 200 else 1)
    rows = _instance_rows_parallel(sources, tagmap, n_workers) if n_workers > 1 \
        else instance_rows(sources, tagmap)
    rows += [{"path": k.path, "error": k.reason} for k in skipped]
    return rows


def _series_rows(path: PathInput, tagmap: TagMap,
                 known: set[str] | None = None) -> list[dict[str, Cell]]:
    """One row per series of ``scan(path)`` (tags of its first file, derived columns), and
    one for the files outside any series."""

    from .series import scan

    series = scan(path)
    if known is not None:  # for --deidentify: every path a message could repeat
        known.update(str(f.instance.source) for s in series for f in s.frames)
        known.update(str(f.instance.path) for s in series for f in s.frames)
        known.update(k.path for s in series for k in s.skipped)
        known.update(k.path for k in series.skipped)
    rows = []
    for s in series:
        try:
            row = read_tags(s.frames[0].instance.source, tagmap)
        except DicomToolsError as exc:
            row = {"error": exc.reason}
        sp = s.spacing
        row.update(
            series_uid=s.uid, n_slices=s.n_slices, n_files=len(s.files),
            shape="x".join(str(n) for n in s.shape), rows=s.rows, columns=s.columns,
            # empty when the pixel size is unknown (never a made-up 1 mm)
            spacing_mm="\\".join(f"{v:.6g}" for v in sp) if s.pixel_size_known else "",
            spacing_source=s.spacing_source, orientation=s.orientation_label,
            frame_time_ms="" if s.frame_time_ms is None else round(s.frame_time_ms, 6),
            acquisition_duration_s=_duration(s), skipped_files=len(s.skipped),
            problems="; ".join(s.problems),
        )
        rows.append(row)
    if series.skipped:
        rows.append({"series_uid": "", "skipped_files": len(series.skipped),
                     "problems": "files outside any series: " + "; ".join(
                         k.reason for k in series.skipped[:5])})
    return rows


def _duration(series: Series) -> float | str:
    """Seconds from the first to the last acquisition time of ``series`` ('' without two)."""
    import datetime as dt

    times = []
    for f in series.frames:
        t = f.temporal.acquired.split(".")[0]
        hhmmss = t[8:14] if len(t) >= 14 else t  # DT (AcquisitionDateTime) or TM
        if not hhmmss.isdigit():
            continue
        try:
            times.append(dt.datetime.strptime(hhmmss.ljust(6, "0"), "%H%M%S"))
        except ValueError:
            continue
    return (max(times) - min(times)).total_seconds() if len(times) > 1 else ""


_PATHLIKE = re.compile(r"[^\s;,()<>\"']*[/\\][^\s;,()<>\"']*|"
                       r"[^\s;,()<>\"'/\\]+\.(?:dcm|dicom|ima|img|zip|nii|gz|tar)\b",
                       re.IGNORECASE)


def redact_paths(text: str, known: Iterable[str] = ()) -> str:
    """``text`` with every file path replaced by ``<file>``: the ``known`` paths first
    (they may hold spaces), then anything that looks like a path or a file name. Paths are
    identifying (patient names in folder names), so de-identified tables carry none.

    Parameters
    ----------
    text : str
        A message, e.g. a ``problems`` cell.
    known : iterable of str
        Paths that may occur in ``text``.

    Returns
    -------
    str
        ``text`` with the paths replaced.

    Examples
    --------
    >>> redact_paths("/data/Doe John/ct/1.dcm: truncated", ["/data/Doe John/ct/1.dcm"])
    '<file>: truncated'
    >>> redact_paths("IM0001.dcm and scans/x.zip could not be read")
    '<file> and <file> could not be read'
    """
    for p in sorted({k for k in known if k}, key=len, reverse=True):
        for variant in sorted({p, os.path.abspath(p), os.path.basename(p)}, key=len,
                              reverse=True):  # whole paths before their file names
            if len(variant) > 2 and variant in text:
                text = re.sub(r"(?<![\w.])" + re.escape(variant) + r"(?![\w])", "<file>",
                              text)
    return _PATHLIKE.sub("<file>", text)


def deidentified_columns(order: Sequence[str],
                         specs: Iterable[tuple[int, str, str]]) -> list[str]:
    """The columns a de-identified table may keep: ``order`` without the file paths, the
    UIDs and the columns of tags the PS3.15 Basic Profile removes (PatientName, dates...).

    Parameters
    ----------
    order : sequence of str
        The table's columns, in order.
    specs : iterable of (int, str, str)
        ``(tag, column name, VR)`` of the tag columns, as :func:`parse_tag` gives them.

    Returns
    -------
    list of str
        ``order`` without the removed columns, in the same order.

    Examples
    --------
    >>> specs = [parse_tag(k) for k in ("PatientName", "Modality", "SliceThickness")]
    >>> deidentified_columns(["path", "PatientName", "Modality", "SliceThickness",
    ...                       "sop_uid"], specs)
    ['Modality', 'SliceThickness']
    """
    from .anonymize import removed_by_profile

    drop = {name for t, name, _ in specs if removed_by_profile(t)}
    drop |= {"path", "series_uid", "sop_uid"}
    return [c for c in order if c not in drop]


def write_csv(table: pd.DataFrame | Sequence[Mapping[str, Any]],
              path: os.PathLike[str] | str, *, overwrite: bool = False) -> str:
    """Write a table (list of dicts or DataFrame) as UTF-8 CSV, refusing to overwrite.

    Parameters
    ----------
    table : pandas.DataFrame or list of dict
        What :func:`metadata_table` returns; the columns of the first row (or of the
        frame), in order.
    path : str or os.PathLike
        The CSV file, written atomically (never a half-written file under its name).
    overwrite : bool
        Replace an existing file (default: refuse).

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    DicomToolsError
        ``path`` exists and ``overwrite`` is false, or cannot be written.

    Examples
    --------
    >>> import os, tempfile
    >>> out = os.path.join(tempfile.mkdtemp(), "table.csv")
    >>> _ = write_csv([{"Modality": "CT", "KVP": 120}], out)
    >>> open(out, encoding="utf-8").read().splitlines()
    ['Modality,KVP', 'CT,120']
    """
    from .safety import atomic_output

    rows: list[Mapping[str, Any]]
    if hasattr(table, "to_dict"):  # a DataFrame
        frame: Any = table
        columns = list(frame.columns)
        rows = frame.to_dict("records")
    else:
        rows = list(table)
        columns = list(rows[0]) if rows else []
    with atomic_output(path, overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=columns)
            w.writeheader()
            for r in rows:
                w.writerow(r)
    return os.fspath(path)
