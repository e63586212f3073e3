"""Study-wide metadata tables: one row per series or per file, chosen tags plus derived columns.

Headers only: files are read up to Pixel Data with the fast header path (pydicom where it
declines), only the requested tags are decoded, and large folders are read by two processes.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable

from .errors import DicomToolsError

__all__ = [
    "DEFAULT_TAGS", "SERIES_COLUMNS", "INSTANCE_COLUMNS", "parse_tag", "read_tags",
    "metadata_table", "redact_paths", "write_csv",
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
                  "spacing_mm", "orientation", "acquisition_duration_s", "skipped_files",
                  "problems")
INSTANCE_COLUMNS = ("path", "series_uid", "sop_uid", "error")


def parse_tag(spec) -> tuple[int, str, str]:
    """``(tag, column name, dictionary VR)`` from a keyword, ``(gggg,eeee)``, ``gggg,eeee``,
    ``ggggeeee`` or an int.

    Raises
    ------
    ValueError
        Unknown keyword or malformed tag, with a hint.
    """
    from .fastheader import KEYWORDS

    text = spec if isinstance(spec, int) else str(spec).strip()
    if not isinstance(spec, int) and text in KEYWORDS:  # no pydicom import needed
        tag, vr = KEYWORDS[text]
        return tag, text, vr.split(" or ")[0]
    from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

    if isinstance(spec, int):
        tag = spec
    else:
        text = str(spec).strip()
        m = re.fullmatch(r"\(?\s*([0-9A-Fa-f]{4})\s*,?\s*([0-9A-Fa-f]{4})\s*\)?", text)
        if m:
            tag = int(m.group(1) + m.group(2), 16)
        else:
            tag = tag_for_keyword(text)
            if tag is None:
                raise ValueError(f"unknown DICOM keyword {text!r} (use a keyword such as "
                                 "'SliceThickness' or a tag such as '(0018,0050)')")
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        vr = "UN" if (tag >> 16) & 1 == 0 else "LO"
    name = keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    return tag, name, vr.split(" or ")[0]


def _cell(value):
    """A table cell: str/int/float, multi-values joined with backslashes, '' when absent."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(_cell(v)) for v in value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return value
    if isinstance(value, (int, float)):
        return value
    if type(value).__name__ in ("DSfloat", "IS", "DSdecimal"):
        return float(value) if type(value).__name__ != "IS" else int(value)
    if type(value).__name__ == "Sequence":
        return f"<sequence of {len(value)} item(s)>"
    return str(value).strip()


_BASE = {0x0020000E: "series_uid", 0x00080018: "sop_uid"}


def read_tags(source, tags: dict) -> dict:
    """``{column: value}`` of ``tags`` (``{tag: (name, vr)}``) from one file's header.

    Raises
    ------
    DicomToolsError
        Not DICOM, truncated or unreadable, with the reason.
    """
    from . import fastheader
    from .errors import NotDicomError, UnreadableDicomError
    from .headers import open_dicom
    from .sources import Source

    if not isinstance(source, Source):
        source = Source(os.fspath(source))
    name = str(source)
    wanted = dict(tags)
    for t, col in _BASE.items():
        wanted.setdefault(t, (col, "UI"))
    with open_dicom(source) as (fp, size, dicm):
        if dicm:
            try:
                ds = fastheader.parse(fp, size, extra={t: v for t, (_, v) in wanted.items()})
                return _checked(name, {col: _cell(ds.get_tag(t))
                                       for t, (col, _) in wanted.items()})
            except (fastheader.Unsupported, EOFError, ValueError, UnicodeDecodeError):
                fp.seek(0)
            except Exception:  # noqa: BLE001 - struct errors on garbage: let pydicom judge
                fp.seek(0)
        from .headers import safe_dcmread

        try:  # (a deflated file is inflated only up to its Pixel Data, with a cap)
            ds = safe_dcmread(fp, name, stop_before_pixels=True, force=not dicm,
                              specific_tags=list(wanted))
        except Exception as exc:  # noqa: BLE001
            raise UnreadableDicomError(name, f"header cannot be parsed "
                                             f"({type(exc).__name__}: {exc})") from None
        if not dicm and len(ds) == 0:
            raise NotDicomError(name, "not a DICOM file")
        out = {}
        for t, (col, _) in wanted.items():
            try:
                el = ds.get(t)
                out[col] = _cell(el.value if el is not None else None)
            except Exception:  # noqa: BLE001 - an undecodable value is an empty cell
                out[col] = ""
        return _checked(name, out)


def _checked(name: str, row: dict) -> dict:
    from .errors import UnreadableDicomError

    if not row.get("sop_uid") and not row.get("series_uid"):
        raise UnreadableDicomError(name, "no SOP Instance UID or Series Instance UID: the "
                                         "header is empty, truncated or not an image object")
    return row


def _instance_rows(sources, tags) -> list[dict]:
    rows = []
    for src in sources:
        try:
            row = {"path": str(src), **read_tags(src, tags), "error": ""}
        except DicomToolsError as exc:
            row = {"path": str(src), "error": exc.reason}
        rows.append(row)
    return rows


def _instance_rows_parallel(sources, tags, workers: int) -> list[dict]:
    from concurrent.futures import ProcessPoolExecutor

    from ._parallel import mp_context

    chunks = [sources[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers, mp_context=mp_context()) as ex:
        parts = list(ex.map(_instance_rows, chunks, [tags] * workers))
    # restore the input order
    order = {str(s): i for i, s in enumerate(sources)}
    rows = [r for part in parts for r in part]
    rows.sort(key=lambda r: order[r["path"]])
    return rows


def metadata_table(path, tags: Iterable | None = None, level: str = "series", *,
                   deidentify: bool = False, as_frame: bool | None = None,
                   workers: int | None = None):
    """A table of header values: one row per series (default) or per file.

    Parameters
    ----------
    path : str, os.PathLike or list
        File, folder (recursive), ``.zip`` or DICOMDIR.
    tags : iterable of str or int, optional
        Keywords (``"SliceThickness"``) or tags (``"(0018,0050)"``, ``"00180050"``).
        Default: :data:`DEFAULT_TAGS`.
    level : {"series", "instance"}
        ``series``: tags from each series' first file plus derived columns (slice count,
        files, shape, spacing, in-plane size, orientation label, acquisition duration,
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
    """
    if level not in ("series", "instance"):
        raise ValueError(f"level must be 'series' or 'instance', got {level!r}")
    specs = [parse_tag(t) for t in (DEFAULT_TAGS if tags is None else tags)]
    tagmap = {t: (name, vr) for t, name, vr in specs}
    columns = [name for _, name, _ in specs]
    known: set[str] = set()  # source paths, redacted from de-identified cells
    if level == "instance":
        from .sources import iter_sources

        paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        sources, skipped = [], []
        for p in paths:
            s, k = iter_sources(p)
            sources.extend(s)
            skipped.extend(k)
        n_workers = workers if workers is not None else (
            min(2, os.cpu_count() or 1) if len(sources) >= 200 else 1)
        rows = _instance_rows_parallel(sources, tagmap, n_workers) if n_workers > 1 \
            else _instance_rows(sources, tagmap)
        rows += [{"path": k.path, "error": k.reason} for k in skipped]
        order = list(INSTANCE_COLUMNS[:3]) + columns + ["error"]
        known.update(str(r["path"]) for r in rows)
    else:
        rows = _series_rows(path, tagmap, known)
        order = columns + list(SERIES_COLUMNS)
    if deidentify:
        order = _deidentified_columns(order, specs)
        known.update(os.fspath(p) for p in ([path] if isinstance(path, (str, os.PathLike))
                                            else path))
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


def _series_rows(path, tagmap, known: set | None = None) -> list[dict]:
    import datetime as dt

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
        times = []
        for f in s.frames:
            t = f.temporal.acquired.split(".")[0]
            hhmmss = t[8:14] if len(t) >= 14 else t  # DT (AcquisitionDateTime) or TM
            if not hhmmss.isdigit():
                continue
            try:
                times.append(dt.datetime.strptime(hhmmss.ljust(6, "0"), "%H%M%S"))
            except ValueError:
                continue
        duration = (max(times) - min(times)).total_seconds() if len(times) > 1 else ""
        sp = s.spacing
        row.update(
            series_uid=s.uid, n_slices=s.n_slices, n_files=len(s.files),
            shape="x".join(str(n) for n in s.shape), rows=s.rows, columns=s.columns,
            spacing_mm="\\".join(f"{v:.6g}" for v in sp), orientation=s.orientation_label,
            acquisition_duration_s=duration, skipped_files=len(s.skipped),
            problems="; ".join(s.problems),
        )
        rows.append(row)
    if series.skipped:
        rows.append({"series_uid": "", "skipped_files": len(series.skipped),
                     "problems": "files outside any series: " + "; ".join(
                         k.reason for k in series.skipped[:5])})
    return rows


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
    """
    for p in sorted({k for k in known if k}, key=len, reverse=True):
        for variant in sorted({p, os.path.abspath(p), os.path.basename(p)}, key=len,
                              reverse=True):  # whole paths before their file names
            if len(variant) > 2 and variant in text:
                text = re.sub(r"(?<![\w.])" + re.escape(variant) + r"(?![\w])", "<file>",
                              text)
    return _PATHLIKE.sub("<file>", text)


def _deidentified_columns(order, specs):
    from .anonymize import removed_by_profile

    drop = {name for t, name, _ in specs if removed_by_profile(t)}
    drop |= {"path", "series_uid", "sop_uid"}
    return [c for c in order if c not in drop]


def write_csv(table, path, *, overwrite: bool = False) -> str:
    """Write a table (list of dicts or DataFrame) as CSV, refusing to overwrite."""
    from .safety import atomic_output

    if hasattr(table, "to_dict"):
        columns = list(table.columns)
        rows = table.to_dict("records")
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
