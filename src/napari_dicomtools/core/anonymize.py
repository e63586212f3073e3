"""DICOM PS3.15 Annex E de-identification: the Basic Application Level Confidentiality
Profile with its options, as data (Table E.1-1) plus an engine.

The table is ``data/confidentiality_profile_attributes.json``, vendored unchanged from
innolitics/dicom-standard (MIT); nothing here retypes it. Actions: ``D`` replace with a dummy,
``Z`` empty, ``X`` remove, ``K`` keep, ``C`` clean, ``U`` replace a UID consistently. Where the
table offers a choice (``X/Z``, ``X/Z/D``, ``Z/D`` ...), the engine picks the choice that keeps
the object valid without keeping information: ``D`` over ``Z`` over ``X``.

What the engine does beyond the table (PS3.15 E.3 and lessons from other tools' leaks):

* applies the rules recursively inside every sequence item (PatientName/PatientID too, at
  any depth: replaced by the pseudonym of the ID they hold);
* removes public attributes that Table E.1-1 does not list unless they are known to be safe
  (``data/deid_public_allowlist.json``: numbers, code strings, sequences, image pixel,
  geometry and technique attributes, coded vocabulary), unless ``keep_unlisted_public``;
  elements unknown to the data dictionary are always removed;
* remaps every UI value that is not a well-known UID (one DICOM defines under its root
  1.2.840.10008: SOP classes, transfer syntaxes, coding schemes ... of pydicom's registry
  as shipped and their siblings; see ``is_well_known_uid``) wherever it is, listed in
  E.1-1 or not;
* removes all private elements (and their creators) unless ``retain_private``;
* removes overlay (60xx) and curve (50xx) groups (their data can hold burned-in text);
* rebuilds the file meta (new MediaStorageSOPInstanceUID, no AE titles, no private
  information) and zeroes the preamble (E.3.8);
* remaps UIDs to ``2.25.<int>`` from a keyed hash (HMAC-SHA256): consistent within a run, and
  across runs when the same key is given; well-known UIDs are kept;
* replaces PatientName/PatientID with one pseudonym per patient (no trailing '^'); other
  person names get a neutral value (empty where the action allows ``Z``), never the pseudonym;
* replaces an Encapsulated Document (E.1-1: ``D``) by a valid dummy document of its MIME type;
* removes dates and times or, with ``shift_dates``, shifts every DA/DT by a per-patient
  number of days (same key), keeping intervals;
* sets PatientIdentityRemoved=YES, DeidentificationMethod and
  DeidentificationMethodCodeSequence (CID 7050 codes of the profile and options used);
* removes the text a compressed Pixel Data bitstream carries (``_pixeltext``): JPEG and
  JPEG-LS comment and application segments (Exif, ICC, thumbnails ...), JPEG 2000 comments
  in the main and tile-part headers, a JP2 wrapper's boxes but its header and codestream, and
  data after a frame's end; the segments decoders need for colour (APP14 Adobe, JFIF without
  its thumbnail, CharLS' mrfx) are kept, so the decoded pixels are identical. The offset
  tables are rebuilt (one fragment per frame); Pixel Data with nothing to remove is copied
  byte for byte. The warnings say what went ("removed 2 JPEG COM segments from Pixel Data").
  A bitstream that cannot be parsed fails its file; video (MPEG-2, MPEG-4, HEVC) and JPEG XL,
  whose text cannot be found, are refused unless ``keep_uncleanable_pixels``;
* leaves the pixels themselves untouched, and warns (or skips, on request) when
  BurnedInAnnotation=YES.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import IO, TYPE_CHECKING, Any, NamedTuple, TypeGuard

from . import _anonrules
from ._anonrules import (
    _BIN_SIZE,
    _ENCAPSULATED_DOCUMENT,
    _FREE_TEXT,
    _IDENTITY_SQ,
    _IMPLEMENTATION_NAME,
    _IMPLEMENTATION_UID,
    _META_ORDER,
    _TEXT_VRS,
    _clean_text,
    _Context,
    _dictionary_vr,
    _dictionary_vrs,
    _dummy,
    _encode_meta_values,
    _foreign_vr,
    _kept_bytes_ok,
    _keyword,
    _multi,
    _norm_name,
    _shift,
    _text,
    _vm_max,
)
from ._syntaxes import EXPLICIT_VR_BE, IMPLICIT_VR_LE, encoding_syntax
from .errors import DicomToolsError

if TYPE_CHECKING:
    from typing import TypeAlias

    from pydicom.dataelem import DataElement, RawDataElement
    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.sequence import Sequence as DicomSequence

    from ._anonfast import Piece
    from ._pixeltext import Cleaned
    from .sources import Skipped, Source

    #: what a worker reports per file: (output or None, (source, reason) or None,
    #: BurnedInAnnotation warnings, whether a file not written looked like DICOM)
    _Result: TypeAlias = tuple[str | None, tuple[str, str] | None, list[str], bool]
    #: what anonymize_files reads: a path (file, folder, zip, ``zip::member``) or several
    PathInput: TypeAlias = os.PathLike[str] | str | Iterable[os.PathLike[str] | str]

__all__ = [
    "Options", "Rule", "Report", "Anonymizer", "anonymize_files", "encode_file", "output_path",
    "profile_table", "rule_for", "removed_by_profile", "unlisted_action", "public_allowlist",
    "is_well_known_uid", "is_valid_uid", "minimal_pdf", "OPTION_COLUMNS", "BASIC_PROFILE_CODE",
    "PN_DUMMY", "FileResult", "anonymize_one", "preload_tables", "summarize_warnings",
]


_LOG = logging.getLogger(__name__)
_DATA = os.path.join(os.path.dirname(__file__), "data", "confidentiality_profile_attributes.json")
_ALLOW = os.path.join(os.path.dirname(__file__), "data", "deid_public_allowlist.json")

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
#: a neutral person name (two components: not dciodvfy's "retired" single-component form)
PN_DUMMY = _anonrules.PN_DUMMY


@dataclass
class Options:
    """Profile options (PS3.15 Table E.1-1 columns). All off: the Basic Profile alone.

    The Retain Safe Private Option is not offered: it needs the list of private attributes
    known to be safe (Table E.3.10-1), which is not bundled, so every private attribute is
    removed (``retain_private`` keeps them all, outside the profile, for trusted settings).

    ``keep_unlisted_public``: keep public data-dictionary attributes that Table E.1-1 does
    not list (the profile read literally). Default: they are removed unless the allow-list
    ``data/deid_public_allowlist.json`` knows them to be safe. UIDs are remapped and
    elements unknown to the data dictionary removed either way.

    Parameters
    ----------
    retain_uids : bool
        Retain UIDs Option: UIDs are kept (not remapped).
    retain_device_identity : bool
        Retain Device Identity Option (device serial numbers, station names ...).
    retain_institution_identity : bool
        Retain Institution Identity Option.
    retain_patient_characteristics : bool
        Retain Patient Characteristics Option (sex, age, size, weight ...).
    retain_longitudinal_full_dates : bool
        Retain Longitudinal Temporal Information with Full Dates Option.
    shift_dates : bool
        Retain Longitudinal Temporal Information with Modified Dates Option: every DA/DT is
        shifted back by a per-patient number of days (1 to ``max_shift_days``), intervals
        kept; times of day are kept.
    clean_descriptors : bool
        Clean Descriptors Option: descriptions kept with names, IDs and dates scrubbed.
    clean_structured_content : bool
        Clean Structured Content Option.
    clean_graphics : bool
        Clean Graphics Option.
    retain_private : bool
        Keep every private element (not part of the profile; for trusted settings only).
    keep_unlisted_public : bool
        Keep public data-dictionary attributes that Table E.1-1 does not list (the profile
        read literally). Default: they are removed unless the allow-list
        ``data/deid_public_allowlist.json`` knows them to be safe. UIDs are remapped and
        elements unknown to the data dictionary removed either way.
    skip_burned_in : bool
        Skip (do not write) files whose BurnedInAnnotation is YES, instead of warning.
    key : bytes or str, optional
        Secret making UID and pseudonym mapping reproducible across runs (keep it secret:
        with it the mapping can be recomputed). Without it a random key is used, so mappings
        are consistent within one :class:`Anonymizer` only.
    max_shift_days : int
        Largest date shift, in days.
    keep_uncleanable_pixels : bool
        Write files whose compressed Pixel Data cannot be searched for text (video:
        MPEG-2, MPEG-4/H.264, HEVC; JPEG XL; unknown encapsulated syntaxes) with their Pixel
        Data copied as is, with a warning each, instead of refusing them.

    Examples
    --------
    >>> opts = Options(shift_dates=True)
    >>> opts.shift_dates, opts.retain_uids
    (True, False)
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
    keep_unlisted_public: bool = False  # keep dictionary attributes E.1-1 does not list
    skip_burned_in: bool = False
    key: bytes | str | None = None
    max_shift_days: int = 365
    keep_uncleanable_pixels: bool = False  # copy video/JPEG XL Pixel Data, text uncleaned


@dataclass
class Rule:
    """One row of PS3.15 Table E.1-1.

    Parameters
    ----------
    tag : str
        The tag as the table writes it, ``"(0010,0010)"`` or a pattern ``"(50xx,xxxx)"``.
    name : str
        The attribute name.
    basic : str
        The Basic Profile action: ``D``, ``Z``, ``X``, ``K``, ``C``, ``U`` or a choice
        (``X/Z/D`` ...).
    options : dict of str to str
        Action per option column of the table (``rtnUIDsOpt`` ...), where the table gives
        one.

    Examples
    --------
    >>> rule = rule_for(0x00100010)
    >>> rule.name, rule.basic
    ("Patient's Name", 'Z')
    """

    tag: str
    name: str
    basic: str
    options: dict[str, str] = field(default_factory=dict)


@lru_cache(maxsize=1)
def profile_table() -> tuple[dict[int, Rule], list[tuple[int, int, Rule]]]:
    """Table E.1-1 from the vendored JSON (innolitics/dicom-standard), read once.

    Returns
    -------
    tuple
        ``(exact rules by tag, pattern rules as (mask, value, Rule))``; a tag matches a
        pattern when ``tag & mask == value``.

    Raises
    ------
    DicomToolsError
        The data file is missing.

    Examples
    --------
    >>> exact, patterns = profile_table()
    >>> len(exact) + len(patterns) > 600
    True
    >>> exact[0x00100020].name
    'Patient ID'
    """
    try:
        with open(_DATA, encoding="utf-8") as f:
            rows = json.load(f)
    except OSError as exc:
        raise DicomToolsError(_DATA, f"the Annex E table is missing ({exc})") from None
    exact: dict[int, Rule] = {}
    patterns: list[tuple[int, int, Rule]] = []
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
    """The Table E.1-1 rule for a tag (exact match first, then ``xx`` patterns).

    Parameters
    ----------
    tag : int
        The attribute tag, e.g. ``0x00100010``.

    Returns
    -------
    Rule or None
        None for a tag the table does not list.

    Examples
    --------
    >>> rule_for(0x00080020).basic   # Study Date
    'Z'
    >>> rule_for(0x60003000).name    # Overlay Data, through the (60xx,3000) pattern
    'Overlay Data'
    >>> rule_for(0x00280010) is None  # Rows: not listed
    True
    """
    exact, patterns = profile_table()
    r = exact.get(int(tag))
    if r is not None:
        return r
    for mask, value, rule in patterns:
        if int(tag) & mask == value:
            return rule
    return None


@lru_cache(maxsize=1)
def public_allowlist() -> tuple[frozenset[str], frozenset[int], frozenset[int],
                                dict[int, str]]:
    """The policy for public attributes Table E.1-1 does not list, from
    ``data/deid_public_allowlist.json`` (its README gives the provenance).

    Returns
    -------
    tuple
        ``(kept VRs, excluded groups, kept tags, {tag: action letter})``.

    Raises
    ------
    DicomToolsError
        The data file is missing, or names a keyword the data dictionary does not know.

    Examples
    --------
    >>> vrs, groups, kept, replaced = public_allowlist()
    >>> "DS" in vrs, replaced[0x00420010]   # numbers kept; DocumentTitle emptied
    (True, 'Z')
    """
    rules = _allow_rules()
    tag = _allow_tag
    vrs = frozenset(rules["vr_kept"]["vrs"])
    groups = frozenset(int(g, 16) for g in rules["groups_excluded"]["groups"])
    kept = frozenset(tag(kw) for kws in rules["text_and_binary_kept"]["keywords"].values()
                     for kw in kws)
    replaced = {tag(kw): a for kw, a in rules["replaced"]["actions"].items()}
    return vrs, groups, kept, replaced


@lru_cache(maxsize=1)
def _allow_rules() -> dict[str, Any]:
    try:
        with open(_ALLOW, encoding="utf-8") as f:
            rules: dict[str, Any] = json.load(f)["rules"]
            return rules
    except (OSError, KeyError, ValueError) as exc:
        raise DicomToolsError(_ALLOW, f"the public allow-list is unreadable ({exc})") from None


def _allow_tag(kw: str) -> int:
    from ._datadict import tag_for_keyword

    t = tag_for_keyword(kw)
    if t is None:
        raise DicomToolsError(_ALLOW, f"unknown keyword {kw!r}")
    return int(t)


@lru_cache(maxsize=1)
def _emptied_sequences() -> frozenset[int]:
    """Sequences whose E.1-1 action is ``X/Z`` and that are Type 2 where they occur: emptied
    (Z) rather than removed; every other ``X/Z`` sequence is removed (an empty Type 3
    sequence is invalid)."""
    return frozenset(_allow_tag(kw) for kw in
                     _allow_rules()["sequences_emptied"]["keywords"])


#: PS3.5 9.1: the root ``1.2.840.10008`` is reserved for what DICOM itself defines
_DICOM_ROOT = "1.2.840.10008."
#: arcs of DICOM-defined UIDs that pydicom's registry does not list (PS3.16 context groups)
_EXTRA_ARCS = frozenset({"1.2.840.10008.6.1"})
_LAST_COMPONENT_RE = re.compile(r"0|[1-9][0-9]{0,3}")


@lru_cache(maxsize=1)
def _dicom_defined() -> tuple[frozenset[str], frozenset[str]]:
    """(the DICOM UIDs of pydicom's registry as shipped, the arcs they hang from)."""
    from ._datadict import uid_registry

    known = frozenset(u for u in uid_registry() if u.startswith(_DICOM_ROOT))
    return known, frozenset(u.rpartition(".")[0] for u in known) | _EXTRA_ARCS


def is_well_known_uid(value: str) -> bool:
    """True for a UID that DICOM itself defines (SOP classes, transfer syntaxes, coding
    schemes, well-known frames of reference ...): these identify a kind of thing, never a
    patient, and are kept; every other UID is remapped.

    The rule is fixed, so that the output never depends on what else was imported (pynetdicom
    adds transfer syntaxes to pydicom's loaded UID registry): a UID under the DICOM root
    ``1.2.840.10008`` (PS3.5 9.1) that is in pydicom's registry as shipped, or a sibling of
    one (the same parent arc, a last component of at most four digits: a SOP class or
    transfer syntax newer than the registry), or a PS3.16 context group. A private UID is
    never kept, whatever registry lists it, nor an instance UID wrongly made under the
    DICOM root.

    Parameters
    ----------
    value : str
        A UID (trailing NUL/space padding ignored).

    Returns
    -------
    bool
        Whether the UID is kept.

    Examples
    --------
    >>> is_well_known_uid("1.2.840.10008.5.1.4.1.1.2")   # CT Image Storage
    True
    >>> is_well_known_uid("1.2.840.10008.1.2.4.110")     # JPEG XL Lossless (2024)
    True
    >>> is_well_known_uid("1.2.826.0.1.3680043.8.498.1")
    False
    >>> is_well_known_uid("1.2.840.10008.5.1.4.1.1.2.19650304")  # an instance under the root
    False
    """
    uid = str(value).strip().rstrip("\x00")
    if not uid.startswith(_DICOM_ROOT) or not is_valid_uid(uid):
        return False
    known, arcs = _dicom_defined()
    arc, _, last = uid.rpartition(".")
    return uid in known or (arc in arcs and _LAST_COMPONENT_RE.fullmatch(last) is not None)


_UID_RE = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")


def is_valid_uid(value: object) -> TypeGuard[str]:
    """True when ``value`` is one UID of the PS3.5 9.1 grammar (digits and dots, no leading
    zeros, at most 64 characters): safe as a file name.

    Parameters
    ----------
    value : object
        Anything; only a ``str`` can be valid (a list of UIDs is not one UID).

    Returns
    -------
    bool
        Whether ``value`` is one well-formed UID.

    Examples
    --------
    >>> is_valid_uid("2.25.1234"), is_valid_uid("1.02.3"), is_valid_uid("../x")
    (True, False, False)
    """
    return isinstance(value, str) and 0 < len(value) <= 64 and \
        _UID_RE.fullmatch(value) is not None


def _in_dictionary(tag: int) -> bool:
    from ._datadict import dictionary_has_tag

    return dictionary_has_tag(tag)


def unlisted_action(tag: int, vr: str, options: Options | None = None) -> str:
    """The action for a public attribute that Table E.1-1 does not list.

    Parameters
    ----------
    tag : int
        The attribute tag.
    vr : str
        Its value representation (as read, or the dictionary's).
    options : Options, optional
        ``keep_unlisted_public`` keeps every data-dictionary attribute.

    Returns
    -------
    str
        ``K`` (kept; UIDs are still remapped), ``X`` (removed), or the action letter of the
        allow-list's ``replaced`` table.

    Examples
    --------
    >>> unlisted_action(0x00280010, "US")    # Rows: a number, kept
    'K'
    >>> unlisted_action(0x00420010, "ST")    # DocumentTitle: emptied
    'Z'
    >>> unlisted_action(0x0010FFF0, "LO")    # unknown to the data dictionary
    'X'
    """
    opts = options or Options()
    tag = int(tag)
    if not _in_dictionary(tag):
        return "X"
    vrs, groups, kept, replaced = public_allowlist()
    if tag in replaced and not opts.keep_unlisted_public:
        return replaced[tag]
    if opts.keep_unlisted_public or tag in kept:
        return "K"
    if vr in vrs and (tag >> 16) not in groups and _dictionary_vrs(tag) & vrs:
        return "K"  # a safe VR, as read and in the dictionary (text written as CS is not)
    return "X"


def removed_by_profile(tag: int, options: Options | None = None) -> bool:
    """True when the de-identification (with ``options``) would remove, empty or replace
    this tag's value; used by metadata tables' ``--deidentify`` so both share one list.

    Parameters
    ----------
    tag : int
        The attribute tag.
    options : Options, optional
        Profile options (default: the Basic Profile alone).

    Returns
    -------
    bool
        Whether the value would not survive as it is.

    Examples
    --------
    >>> removed_by_profile(0x00100010), removed_by_profile(0x00180050)  # name; thickness
    (True, False)
    >>> removed_by_profile(0x00101010, Options(retain_patient_characteristics=True))  # age
    False
    """
    from ._datadict import dictionary_vr as dictionary_VR

    opts = options or Options()
    tag = int(tag)
    if tag >> 16 & 1:
        return not opts.retain_private
    rule = rule_for(tag)
    try:
        vr = dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        vr = "UN"
    if rule is None:
        if vr == "UI":
            return not opts.retain_uids
        return unlisted_action(tag, vr, opts) != "K"
    return _action(rule, opts, vr) != "K"


def _action(rule: Rule, opts: Options, vr: str) -> str:
    """Resolve the effective action letter for one element."""
    for col, (attr, _, _) in OPTION_COLUMNS.items():
        if getattr(opts, attr) and col in rule.options:
            a = rule.options[col]
            return "C" if a.startswith("C") else a[0]
    choices = rule.basic.replace("*", "").split("/")
    if vr in ("UI", "SQ") and "U" in choices:
        return "U"  # U* on a sequence: keep it, remap the UIDs inside
    if vr == "SQ" and "D" not in choices and "X" in choices and "Z" in choices:
        try:
            tag = int(rule.tag.strip().strip("()").replace(",", ""), 16)
        except ValueError:
            tag = -1
        return "Z" if tag in _emptied_sequences() else "X"
    # person names: empty rather than a dummy that could be taken for a person
    prefs = ("Z", "D", "X") if vr == "PN" else ("D", "Z", "X")
    for pref in prefs:
        if pref in choices:
            return pref
    if "U" in choices:
        return "U"
    return choices[0] or "X"


#: coded vocabulary kept inside strictly cleaned sequences (standard terms, not PHI)
_CODE_KEYWORDS = {"CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "CodeMeaning",
                  "LongCodeValue", "URNCodeValue", "MappingResource", "ContextIdentifier",
                  "ContextUID", "ValueType", "RelationshipType", "ContinuityOfContent",
                  "TemplateIdentifier", "MeasurementUnitsCodeSequence"}

_PATIENT_NAME, _PATIENT_ID = 0x00100010, 0x00100020
#: VRs whose values are character strings: replaced without being decoded
_RAW_TEXT_VRS = frozenset({"UI", "DA", "DT", "TM", "PN", "LO", "SH", "ST", "LT", "UT", "UC",
                           "CS", "AS", "AE", "UR", "IS", "DS"})
class Anonymizer:
    """De-identify pydicom datasets consistently across a run.

    Parameters
    ----------
    options : Options, optional
        Profile options (default: the Basic Profile alone).
    key : bytes or str, optional
        Secret of the keyed mappings (UIDs, pseudonyms, date shifts); default
        ``options.key``, else a random key (consistent within this Anonymizer only).

    Examples
    --------
    The same key gives the same pseudonyms and date shifts in every run:

    >>> import pydicom
    >>> from pydicom.data import get_testdata_file
    >>> ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    >>> str(ds.PatientName), ds.PatientID, ds.StudyDate
    ('CompressedSamples^CT1', '1CT1', '20040119')
    >>> anon = Anonymizer(Options(shift_dates=True), key="study-secret")
    >>> clean = anon.dataset(ds)
    >>> str(clean.PatientName), clean.PatientID, clean.StudyDate
    ('ANON-40F6526E08', 'ANON-40F6526E08', '20031114')
    >>> clean.PatientIdentityRemoved
    'YES'
    """

    def __init__(self, options: Options | None = None, key: bytes | str | None = None):
        self.options = options or Options()
        k = key if key is not None else self.options.key
        if k is None:
            k = secrets.token_bytes(32)
        self._key = k.encode("utf-8") if isinstance(k, str) else bytes(k)
        self.uid_map: dict[str, str] = {}
        self.warnings: list[str] = []
        self._decisions: dict[tuple[int, str], tuple[str, bool, bool]] = {}
        self._encoded: dict[bool, bytes] = {}  # the method code sequence per VR encoding

    # --- mappings ----------------------------------------------------------------------
    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}\0{value}".encode(), hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """``2.25.<decimal>`` derived from the keyed hash of ``original`` (< 64 chars).
        Well-known UIDs (:func:`is_well_known_uid`) and empty values are returned as is."""
        original = str(original).strip().rstrip("\x00")
        if not original or is_well_known_uid(original):
            return original
        new = self.uid_map.get(original)
        if new is None:
            new = "2.25." + str(int.from_bytes(self._digest("uid", original)[:16], "big"))
            self.uid_map[original] = new
        return new

    def _uids(self, value: Any) -> Any:
        if _multi(value):
            return [self.uid(x) for x in value]
        return self.uid(value) if value else value

    def pseudonym(self, patient_id: str, patient_name: str = "") -> str:
        """A stable patient pseudonym, e.g. ``ANON-3F9A2C71D0``, from ID (or name)."""
        basis = (patient_id or "").strip() or _norm_name(patient_name) or "unknown"
        return "ANON-" + self._digest("patient", basis).hex()[:10].upper()

    def date_offset_days(self, patient_id: str) -> int:
        """Per-patient shift in days (-max..-1): dates move back, intervals are kept."""
        d = int.from_bytes(self._digest("date", patient_id or "")[:4], "big")
        return -(1 + d % self.options.max_shift_days)

    # --- the engine --------------------------------------------------------------------
    def dataset(self, ds: Dataset, *, source: str = "") -> Dataset:
        """De-identify ``ds`` in place and return it (file meta rebuilt, preamble zeroed).

        Parameters
        ----------
        ds : pydicom.Dataset
            The data set; changed in place.
        source : str
            Its name, for messages only (never written into the data set).

        Returns
        -------
        pydicom.Dataset
            ``ds``.

        Raises
        ------
        DicomToolsError
            BurnedInAnnotation is YES and ``skip_burned_in`` was asked for.
        """
        self._check_burned_in(ds, source)
        old = getattr(ds, "file_meta", None)
        ts = old.get("TransferSyntaxUID") if old is not None else None
        if not ts:
            ts = _transfer_syntax_read(ds)
        pixels = self._pixels(ds, ts, source)
        pid = _text(ds.get("PatientID", ""))
        pname = _text(ds.get("PatientName", ""))
        ctx: _Context = {
            "implicit": ts == IMPLICIT_VR_LE,
            "pseudonym": self.pseudonym(pid, pname),
            "pid": pid.strip(),
            "pname": _norm_name(pname),
            "shift": self.date_offset_days(pid or pname) if self.options.shift_dates else None,
            # words to scrub from cleaned descriptors: only needed when something is cleaned
            "phi": _phi_tokens(ds) if (self.options.clean_descriptors or
                                       self.options.clean_structured_content or
                                       self.options.clean_graphics) else set(),
        }
        self._walk(ds, ctx, top=True)
        if pixels is not None:
            _put_pixels(ds, pixels)
        self._mark(ds, ctx, ts)
        self._rebuild_meta(ds, old, ts)
        return ds

    def _pixels(self, ds: Dataset, ts: str | None, source: str) -> Cleaned | None:
        """Encapsulated Pixel Data without the text of its bitstream (:mod:`._pixeltext`),
        None when it stays as read; the report's message warned. Raises DicomToolsError
        for a bitstream that cannot be cleaned (the file is not written)."""
        from pydicom.dataelem import RawDataElement

        from ._pixeltext import PixelTextWarning, deidentify_pixels

        if ts is None or 0x7FE00010 not in ds:
            return None
        elem = ds.get_item(0x7FE00010)
        value = elem.value
        if not isinstance(value, (bytes, bytearray)):
            return None
        undefined = bool(elem.length == 0xFFFFFFFF if isinstance(elem, RawDataElement)
                         else elem.is_undefined_length)
        frames = ds.get_item(0x00280008) if 0x00280008 in ds else None
        text = "" if frames is None else (
            frames.value.decode("latin-1") if isinstance(frames.value, bytes)
            else _text(frames.value))
        cleaned, msg = deidentify_pixels(
            bytes(value), str(ts), text.rstrip("\x00 "), undefined=undefined,
            extended=0x7FE00001 in ds or 0x7FE00002 in ds,
            keep_uncleanable=self.options.keep_uncleanable_pixels, source=source)
        if msg is not None:
            warnings.warn(msg, PixelTextWarning, stacklevel=3)
            self.warnings.append(msg)
        return cleaned

    def _check_burned_in(self, ds: Dataset, source: str) -> None:
        """Warn (or refuse, with ``skip_burned_in``) when BurnedInAnnotation is YES."""
        burned = str(ds.get("BurnedInAnnotation", "")).strip().upper()
        if burned == "YES":
            msg = (f"{source or 'dataset'}: BurnedInAnnotation=YES: the pixels may show "
                   "patient identity; pixel data is NOT cleaned")
            if self.options.skip_burned_in:
                raise DicomToolsError(source or None, "BurnedInAnnotation=YES; skipped")
            warnings.warn(msg, stacklevel=3)
            self.warnings.append(msg)

    def _mark(self, ds: Dataset, ctx: _Context, ts: str | None) -> None:
        """The pseudonym as PatientName/PatientID, PatientIdentityRemoved, and the method
        (text and CID 7050 codes); as undecoded elements when little endian."""
        if ts is not None and str(ts) != EXPLICIT_VR_BE:  # little endian: raw bytes
            implicit = ctx["implicit"]
            for tag, vr, text in ((0x00100010, "PN", ctx["pseudonym"]),
                                  (0x00100020, "LO", ctx["pseudonym"]),
                                  (0x00120062, "CS", "YES"),
                                  (0x00120063, "LO", self._method_text())):
                _put_text(ds, tag, vr, text, implicit)
            ds[0x00120064] = self._method_sequence(implicit)
        else:
            ds.PatientIdentityRemoved = "YES"
            ds.PatientName = ctx["pseudonym"]
            ds.PatientID = ctx["pseudonym"]
            ds.DeidentificationMethod = self._method_text()
            ds.DeidentificationMethodCodeSequence = self._method_items()

    def _rebuild_meta(self, ds: Dataset, old: Dataset | None, ts: str | None) -> None:
        """The file meta rebuilt, not cleaned (E.3.8), and the preamble zeroed."""
        from pydicom.dataset import FileMetaDataset

        values: dict[str, object] = {}
        values["MediaStorageSOPClassUID"] = ds.get("SOPClassUID", "") or (
            old.get("MediaStorageSOPClassUID", "") if old is not None else "")
        if "SOPInstanceUID" not in ds and old is not None and \
                old.get("MediaStorageSOPInstanceUID"):
            ds.SOPInstanceUID = (old.MediaStorageSOPInstanceUID if self.options.retain_uids
                                 else self.uid(old.MediaStorageSOPInstanceUID))
        sop = ds.get("SOPInstanceUID", "")
        values["MediaStorageSOPInstanceUID"] = sop[0] if _multi(sop) and len(sop) else sop
        if ts:
            values["TransferSyntaxUID"] = ts
        values["ImplementationClassUID"] = _IMPLEMENTATION_UID
        values["ImplementationVersionName"] = _IMPLEMENTATION_NAME
        meta = FileMetaDataset()
        for keyword, value in values.items():
            setattr(meta, keyword, value)  # (pydicom converts each to its VR's type)
        ds.file_meta = meta
        ds.preamble = b"\x00" * 128

    def _codes(self) -> list[tuple[str, str]]:
        codes = [BASIC_PROFILE_CODE]
        for _col, (attr, code, meaning) in OPTION_COLUMNS.items():
            if getattr(self.options, attr):
                codes.append((code, meaning))
        return codes

    def _method_text(self) -> str:
        return ("napari-dicomtools: PS3.15 Annex E " +
                "; ".join(m for _, m in self._codes()))[:64]

    def _method_items(self) -> DicomSequence:
        """DeidentificationMethodCodeSequence: CID 7050 codes of the profile and options."""
        from pydicom.dataset import Dataset
        from pydicom.sequence import Sequence

        items = []
        for code, meaning in self._codes():
            it = Dataset()
            it.CodeValue = code
            it.CodingSchemeDesignator = "DCM"
            it.CodeMeaning = meaning
            items.append(it)
        return Sequence(items)

    def _method_sequence(self, implicit: bool) -> RawDataElement:
        """The code sequence as an undecoded element, encoded once per VR encoding."""
        from pydicom.dataelem import RawDataElement
        from pydicom.tag import Tag

        value = self._method_sequence_bytes(implicit)
        return RawDataElement(Tag(0x00120064), None if implicit else "SQ", len(value),
                              value, 0, implicit, True)

    def _method_sequence_bytes(self, implicit: bool) -> bytes:
        """The value of DeidentificationMethodCodeSequence as pydicom encodes the items of
        :meth:`_method_items` (items of defined length; CodeValue, CodingSchemeDesignator,
        CodeMeaning padded with spaces), once per VR encoding."""
        import struct

        value = self._encoded.get(implicit)
        if value is None:
            items = []
            for code, meaning in self._codes():
                body = b""
                for elem, vr, text in ((0x0100, b"SH", code), (0x0102, b"SH", "DCM"),
                                       (0x0104, b"LO", meaning)):
                    raw = text.encode("ascii")
                    raw += b" " * (len(raw) & 1)
                    body += struct.pack("<HH", 0x0008, elem) + (
                        struct.pack("<L", len(raw)) if implicit else
                        vr + struct.pack("<H", len(raw))) + raw
                items.append(struct.pack("<HHL", 0xFFFE, 0xE000, len(body)) + body)
            value = b"".join(items)
            self._encoded[implicit] = value
        return value

    def _decide(self, tag: int, vr: str) -> tuple[str, bool, bool]:
        """(action, listed in E.1-1, coded vocabulary) for a public tag and VR, cached per
        Anonymizer."""
        key = (tag, vr)
        d = self._decisions.get(key)
        if d is None:
            code = _keyword(tag) in _CODE_KEYWORDS
            rule = rule_for(tag)
            if rule is not None:
                d = (_action(rule, self.options, vr), True, code)
            elif not _in_dictionary(tag):
                d = ("X", False, code)  # unknown to the dictionary: cannot be judged
            elif vr == "UI":
                d = ("K" if self.options.retain_uids else "U", False, code)
            else:
                d = (unlisted_action(tag, vr, self.options), False, code)
            self._decisions[key] = d
        return d

    def _walk(self, ds: Dataset, ctx: _Context, strict: int = 0, top: bool = False) -> None:
        """Apply the profile to every element of ``ds`` (recursively).

        ``strict`` is set inside sequences the profile replaces with dummies (``D``, e.g.
        Content Sequence) or asks to clean without a cleaner: there every free-text, person
        name and date value is replaced, whatever its tag; coded vocabulary is kept (1),
        except in sequences that identify people or organisations (2: Person
        Identification Code Sequence, Institution Code Sequence, observers ...), where codes
        are the identity.

        Elements are judged from their undecoded form where possible (tag and VR), so kept
        values are written back byte for byte without being decoded (faster, and exact).
        """
        from pydicom.dataelem import RawDataElement

        opts = self.options
        item_pid = None
        for tag in list(ds.keys()):
            t = int(tag)
            group = t >> 16
            if group & 1:  # private (creators included)
                if not opts.retain_private:
                    del ds[tag]
                continue
            if (t & 0xFFFF) == 0 or group <= 0x0002 or 0x5000 <= group <= 0x50FF or \
                    0x6000 <= group <= 0x60FF:
                # group lengths (stale once values change), command or file meta elements
                # misplaced in the data set, curves and overlays (bitmaps cannot be cleaned)
                del ds[tag]
                continue
            if t in (_PATIENT_NAME, _PATIENT_ID):
                if not top:  # the top level gets the pseudonym afterwards
                    if item_pid is None:
                        item_pid = _text(ds.get("PatientID", "")).strip()
                    self._patient(ds[tag], ctx, item_pid)
                continue
            raw = ds.get_item(tag)
            if isinstance(raw, RawDataElement) and \
                    ((raw.VR is None and not ctx["implicit"]) or _odd(raw)):
                # read implicit but written explicit, or an odd or truncated value: decoded,
                # so that pydicom writes it with its VR, true length and padding
                raw = ds[tag]
            vr = raw.VR
            if vr in (None, "UN"):
                vr = _dictionary_vr(t) or "UN"
            action, listed, code = self._decide(t, vr)
            if not listed:
                if vr == "SQ":
                    if action == "X":
                        del ds[tag]
                    else:
                        for item in ds[tag].value:
                            self._walk(item, ctx, strict)
                    continue
                if strict and (strict > 1 or not code) and \
                        (vr in _FREE_TEXT or vr in ("DA", "DT", "TM")):
                    action = "D"
                elif action == "K":
                    if not _kept_value_ok(raw, vr, t):
                        del ds[tag]  # malformed: a value cannot be kept unseen
                    continue
            elif action == "K" and vr not in ("SQ", "UI"):
                if not _kept_value_ok(raw, vr, t):
                    del ds[tag]
                continue  # kept as read
            if isinstance(raw, RawDataElement) and \
                    self._replace_raw(ds, tag, raw, vr, action, ctx):
                continue
            self._apply(ds, ds[tag], action, ctx, strict)

    def _replace_raw(self, ds: Dataset, tag: int, raw: RawDataElement, vr: str, action: str,
                     ctx: _Context) -> bool:
        """Apply ``Z``, ``U`` and plain ``D`` to an undecoded text/UID element by writing its
        new bytes directly (what pydicom would encode, without decoding the old value).
        False when the element needs the general path (dates to shift, binary VRs, ...)."""
        if raw.VR == "UN":
            return False
        value = raw.value or b""
        new = self._raw_replacement(int(tag), value, vr, action, ctx)
        if new is None:
            return False
        if new is not value:
            ds[tag] = raw._replace(length=len(new), value=new)
        return True

    def _raw_replacement(self, tag: int, value: bytes, vr: str, action: str,
                         ctx: _Context) -> bytes | None:
        """The new bytes of a text/UID value for ``Z``, ``U``, plain ``D`` and UID remapping
        (``value`` itself when it stays as it is), or None when the general path must decode
        it (dates to shift, binary VRs, cleaning ...). Shared by the pydicom path and the
        byte path (:mod:`._anonfast`)."""
        if vr not in _RAW_TEXT_VRS or (action == "K" and self.options.retain_uids):
            return None
        if action == "Z":
            new = b""
        elif vr == "UI" and action in ("U", "D", "C", "K"):
            old = value.decode("latin-1").rstrip("\x00 ")
            if not old:
                return value
            new = "\\".join(self.uid(v) for v in old.split("\\")).encode("ascii")
        elif action in ("D", "U") and not (vr in ("DA", "DT") and ctx["shift"] is not None) \
                and tag != _ENCAPSULATED_DOCUMENT:
            new = str(_dummy(vr, ctx)).encode("ascii")
        else:
            return None
        if len(new) & 1:
            new += b"\x00" if vr == "UI" else b" "
        return new

    def _patient(self, elem: DataElement, ctx: _Context, item_pid: str) -> None:
        """PatientName/PatientID inside a sequence item: the pseudonym of the ID they hold
        (the same as the top level's for the same patient)."""
        value = _text(elem.value)
        if not value.strip():
            return
        if int(elem.tag) == _PATIENT_ID:
            elem.value = self.pseudonym(value.strip())
        elif item_pid:
            elem.value = self.pseudonym(item_pid)
        elif _norm_name(value) == ctx["pname"]:
            elem.value = ctx["pseudonym"]
        else:
            elem.value = self.pseudonym("", value)

    def _apply(self, ds: Dataset, elem: DataElement, action: str, ctx: _Context,
               strict: int = 0) -> None:
        vr = elem.VR
        if action == "X":
            del ds[elem.tag]
            return
        if action == "K":
            if vr == "SQ":
                for item in elem.value:
                    self._walk(item, ctx, strict)
            elif vr == "UI" and not self.options.retain_uids:
                elem.value = self._uids(elem.value)
            return
        if vr == "SQ":
            if action == "Z":
                elem.value = []
            else:
                # U: keep, remap UIDs inside. D, or C (we have no structured-content
                # cleaner): keep the structure, replace every free text/name/date inside;
                # in sequences that identify a person or organisation, the codes too.
                level = strict
                if action in ("D", "C"):
                    level = max(strict, 2 if _IDENTITY_SQ.search(elem.keyword or "") else 1)
                for item in elem.value:
                    self._walk(item, ctx, level)
            return
        if action == "Z":
            elem.value = None if vr not in ("OB", "OW", "UN") else b""
            return
        if vr == "UI":  # U, D or C: a consistent new UID
            elem.value = self._uids(elem.value)
            return
        if action == "U":
            elem.value = _dummy(vr, ctx)
            return
        if action == "C":
            if vr in ("DA", "DT", "TM"):
                elem.value = _shift(elem.value, vr, ctx["shift"]) if ctx["shift"] is not None \
                    else _dummy(vr, ctx)
            elif vr in ("LO", "SH", "ST", "LT", "UT", "UC", "CS"):
                elem.value = _clean_text(elem.value, ctx["phi"])
            elif vr == "PN":
                elem.value = PN_DUMMY if elem.value else elem.value
            return
        # D
        if int(elem.tag) == _ENCAPSULATED_DOCUMENT:
            _dummy_document(ds, elem)
        elif vr in ("DA", "DT") and ctx["shift"] is not None:
            elem.value = _shift(elem.value, vr, ctx["shift"])
        else:
            elem.value = _dummy(vr, ctx)


def _put_pixels(ds: Dataset, cleaned: Cleaned) -> None:
    """The cleaned Pixel Data, and the Extended Offset Table (and its Lengths) the walk kept
    rewritten for its frames; undecoded elements, as the byte path writes them."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    from ._encap import PIXEL_DATA

    for tag, value in cleaned.new_values().items():
        if tag not in ds:
            continue
        old = ds.get_item(tag)
        if tag == PIXEL_DATA:  # encapsulated: undefined length
            vr, length = old.VR, 0xFFFFFFFF
        else:  # under the VR it was written with (OB, UN...), as the byte path keeps it
            vr, length = old.VR or "OV", len(value)
        ds[tag] = RawDataElement(Tag(tag), vr, length, bytes(value), 0, False, True)


def _odd(raw: RawDataElement) -> bool:
    """An undecoded value whose length is odd or differs from its header (truncated)."""
    if raw.length == 0xFFFFFFFF:
        return False
    n = len(raw.value) if raw.value is not None else 0
    return bool(n & 1) or n != raw.length


def _kept_value_ok(elem: DataElement | RawDataElement, vr: str, tag: int) -> bool:
    """True when a value kept unchanged is well formed for its VR and the dictionary's VM:
    no control characters or over-long values in text, numbers in DS/IS, a length that fits
    the multiplicity for binary numbers. A malformed length in a damaged or crafted file
    makes a kept element swallow the elements after it (names included); such an element
    is removed rather than copied."""
    if elem.is_raw:
        return _kept_bytes_ok(elem.value or b"", vr, tag)
    if _foreign_vr(vr, tag):
        return False  # decoded (odd length ...) with a VR not its own: not judged, removed
    if vr not in _BIN_SIZE and vr not in _TEXT_VRS:
        return True
    value = elem.value
    if value is None or value == "":
        return True
    if vr in _BIN_SIZE:
        n = len(value) if _multi(value) else 1
        vm = _vm_max(tag)
        return vm is None or n <= vm
    return _kept_bytes_ok(_text(value).encode("utf-8", "replace"), vr, tag)


def _put_text(ds: Dataset, tag: int, vr: str, text: str, implicit: bool) -> None:
    """Set an ASCII text/UID value as an undecoded little-endian element (the bytes pydicom
    would write: padded to even length with a space, or NUL for UI)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    value = text.encode("ascii")
    if len(value) & 1:
        value += b"\x00" if vr == "UI" else b" "
    ds[tag] = RawDataElement(Tag(tag), None if implicit else vr, len(value), value, 0,
                             implicit, True)


def _transfer_syntax_read(ds: Dataset) -> str | None:
    """The transfer syntax pydicom read a meta-less data set with."""
    enc = getattr(ds, "original_encoding", None) or (None, None)
    implicit, little = enc
    if implicit is None:
        return None
    return encoding_syntax(bool(implicit), bool(little))


def minimal_pdf(text: str = "Document removed by de-identification") -> bytes:
    """A valid one-page PDF showing ``text``, with a correct cross-reference table: the
    dummy that replaces an Encapsulated Document (E.1-1 action ``D``, Type 1).

    Parameters
    ----------
    text : str
        The one line shown (non-ASCII characters become ``?``).

    Returns
    -------
    bytes
        The PDF file.

    Examples
    --------
    >>> pdf = minimal_pdf("removed")
    >>> pdf[:8], pdf.rstrip().endswith(b"%%EOF")
    (b'%PDF-1.4', True)
    """
    safe = re.sub(r"[^ -~]", "?", text).replace("\\", "\\\\").replace("(", "\\(") \
        .replace(")", "\\)")
    stream = f"BT /F1 12 Tf 72 720 Td ({safe}) Tj ET".encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream +
        b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n"
            "%%EOF\n").encode()
    return bytes(out)


#: a dummy document per MIME type of Encapsulated Document (PS3.3 C.24.2)
_DUMMY_DOCUMENTS = {
    "text/xml": b'<?xml version="1.0" encoding="UTF-8"?>\n<ClinicalDocument '
                b'xmlns="urn:hl7-org:v3"/>\n',
    "model/stl": b"solid removed\nendsolid removed\n",
    "model/obj": b"# removed by de-identification\n",
    "model/mtl": b"# removed by de-identification\n",
}


def _dummy_document(ds: Dataset, elem: DataElement) -> None:
    """E.1-1's ``D`` for Encapsulated Document (Type 1): a valid dummy document of the
    declared MIME type (a one-page PDF otherwise), and its length updated."""
    mime = _text(ds.get("MIMETypeOfEncapsulatedDocument", "")).strip().lower()
    doc = _DUMMY_DOCUMENTS.get(mime)
    if doc is None:
        doc = minimal_pdf()
        if "MIMETypeOfEncapsulatedDocument" in ds:
            ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    if "EncapsulatedDocumentLength" in ds:
        ds.EncapsulatedDocumentLength = len(doc)
    elem.value = doc + (b"\0" if len(doc) % 2 else b"")


def _phi_tokens(ds: Dataset) -> set[str]:
    """Words from identifying attributes, to scrub from descriptors being 'cleaned'."""
    tokens = set()
    for kw in ("PatientName", "PatientID", "OtherPatientIDs", "PatientBirthDate",
               "AccessionNumber", "ReferringPhysicianName", "PatientAddress",
               "InstitutionName", "OperatorsName", "PerformingPhysicianName",
               "PatientBirthName", "PatientMotherBirthName", "RequestingPhysician",
               "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy", "StationName",
               "InstitutionAddress", "InstitutionalDepartmentName", "StudyID"):
        v = ds.get(kw, None)
        if v is None:
            continue
        for part in re.split(r"[\^\s,=/\\]+", _text(v)):
            if len(part) >= 2:
                tokens.add(part.lower())
    return tokens


@dataclass
class Report:
    """What :func:`anonymize_files` did.

    Parameters
    ----------
    written : list of str
        The output files.
    skipped : list of (str, str)
        Every input not written, as ``(source, reason)``: non-DICOM files, DICOMDIRs,
        burned-in files when asked to skip, existing outputs, malformed files.
    warnings : list of str
        BurnedInAnnotation warnings (the pixels may show identity), text removed from
        compressed Pixel Data, Pixel Data copied that could not be cleaned.
    failed : list of (str, str)
        The subset of ``skipped`` that looked like DICOM but could not be de-identified
        (malformed, unreadable, missing SOP Instance UID ...).

    Examples
    --------
    >>> report = Report()
    >>> report.skipped.append(("notes.txt", "not a DICOM file"))
    >>> len(report.written), len(report.skipped), report.failed
    (0, 1, [])
    """

    written: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (source, reason)
    warnings: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # also in skipped


_LONG_LENGTH_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR",
                              "UT", "SV", "UV"})


def encode_file(ds: Dataset) -> bytes:
    """The DICOM file (preamble, ``DICM``, file meta, data set) for ``ds``: the bytes
    ``ds.save_as(..., enforce_file_format=True)`` writes, made faster for the common case.

    Elements still in their undecoded form (everything the profile keeps unchanged) are
    copied byte for byte; decoded or changed elements, sequences and encapsulated pixel data
    are encoded by pydicom's own element writer. Transfer syntaxes other than little endian
    explicit/implicit VR (big endian, deflated, private), or a data set read with another
    encoding or character set, go entirely through pydicom.

    Parameters
    ----------
    ds : pydicom.Dataset
        A data set with ``file_meta`` (as :meth:`Anonymizer.dataset` leaves it).

    Returns
    -------
    bytes
        The whole file.

    Examples
    --------
    >>> import pydicom
    >>> from pydicom.data import get_testdata_file
    >>> ds = Anonymizer(key="k").dataset(pydicom.dcmread(get_testdata_file("CT_small.dcm")))
    >>> data = encode_file(ds)
    >>> data[128:132], b"CompressedSamples" in data
    (b'DICM', False)
    """
    return b"".join(_encode_chunks(ds))


def _encode_chunks(ds: Dataset) -> list[bytes]:
    """:func:`encode_file` as a list of byte strings (large values are not copied)."""
    import io

    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    implicit = _simple_encoding(ds)
    if implicit is None:
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return [out.getvalue()]
    fp = DicomBytesIO()
    fp.write(ds.preamble or b"\x00" * 128)
    fp.write(b"DICM")
    fp.is_little_endian, fp.is_implicit_VR = True, False
    quick = _encode_meta(ds.file_meta)
    if quick is None:
        write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
    else:
        fp.write(quick)
    return _encode_elements(ds, fp, implicit)


def _simple_encoding(ds: Dataset) -> bool | None:
    """Whether ``ds`` is written in Implicit VR (True) or Explicit VR (False) little
    endian, as it was read; None for anything else (pydicom's ``save_as`` writes it)."""
    from pydicom.uid import UID

    ts = UID(str(ds.file_meta.get("TransferSyntaxUID", "")))
    try:
        if not (ts.is_transfer_syntax and not ts.is_private and ts.is_little_endian and
                not ts.is_deflated):
            return None
        implicit = bool(ts.is_implicit_VR)
    except (ValueError, AttributeError):
        return None
    if tuple(ds.original_encoding) != (implicit, True) or \
            ds.original_character_set != getattr(ds, "_character_set", None):
        return None
    return implicit


def _encode_elements(ds: Dataset, fp: DicomBytesIO, implicit: bool) -> list[bytes]:
    """The data set's elements after what ``fp`` holds: undecoded ones copied byte for
    byte, the others (and encapsulated Pixel Data) by pydicom's element writer."""
    import struct

    from pydicom.dataelem import RawDataElement
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element
    from pydicom.uid import UID

    compressed = UID(str(ds.file_meta.get("TransferSyntaxUID", ""))).is_compressed
    fp.is_implicit_VR = implicit
    chunks: list[bytes] = []
    encodings = ds.get("SpecificCharacterSet", "iso8859")
    pack_tag, pack_short, pack_long = (struct.Struct(f).pack for f in ("<HH", "<H", "<L"))
    for tag in sorted(ds.keys()):
        if tag.element == 0 and tag.group > 6:
            continue  # retired group lengths are not written (PS3.5 7.2)
        elem = ds.get_item(tag)
        raw = elem if isinstance(elem, RawDataElement) else None
        value = raw.value if raw is not None else None
        n = len(value) if isinstance(value, bytes) else -1
        if raw is not None and isinstance(value, bytes) and n == raw.length and not n & 1 and \
                (implicit or elem.VR is not None) and \
                not (tag == 0x7FE00010 and compressed) and \
                (implicit or elem.VR in _LONG_LENGTH_VRS or n <= 0xFFFF):
            fp.write(pack_tag(tag.group, tag.element))
            if implicit:
                fp.write(pack_long(n))
            elif elem.VR in _LONG_LENGTH_VRS:
                fp.write(elem.VR.encode("ascii") + b"\0\0" + pack_long(n))
            else:
                fp.write(elem.VR.encode("ascii") + pack_short(n))
            if n > 65536:  # bulk data (pixels): handed on, not copied
                chunks.append(fp.getvalue())
                chunks.append(value)
                fp = DicomBytesIO()
                fp.is_little_endian, fp.is_implicit_VR = True, implicit
            else:
                fp.write(value)
            continue
        if tag == 0x7FE00010:
            elem = ds[tag]
            elem.is_undefined_length = compressed
        write_data_element(fp, elem, encodings)
    chunks.append(fp.getvalue())
    return chunks


def _encode_meta(meta: Dataset) -> bytes | None:
    """The file meta group as pydicom's ``write_file_meta_info`` encodes the meta that
    :meth:`Anonymizer.dataset` builds (explicit VR little endian, group length first), or
    None for anything else."""
    if set(meta.keys()) - {t for t, _ in _META_ORDER}:
        return None
    return _encode_meta_values({int(t): meta[t].value for t in meta.keys()})


def _safe_component(value: object, fallback_kind: str) -> str:
    """A path component from a de-identified value: the value when it is one valid UID (or
    a pseudonym of letters, digits and '-'), else a name derived from its hash."""
    if is_valid_uid(value):
        return value
    if fallback_kind == "patient" and isinstance(value, str) and \
            re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", value):
        return value
    digest = hashlib.sha256(f"{fallback_kind}\0{_text(value)}".encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def output_path(out_dir: os.PathLike[str] | str,
                ds: Dataset | dict[str, str]) -> str:
    """``out/<pseudonym>/<study uid>/<series uid>/<sop uid>.dcm``: built from the already
    de-identified data set only, never from source names.

    Every component is a validated UID (PS3.5 9.1 grammar) or pseudonym; anything else
    (a crafted ``../x`` kept by ``--retain-uids``, a multi-valued SOP Instance UID) is
    replaced by a UID derived from its hash, so the path always stays under ``out_dir``.

    Parameters
    ----------
    out_dir : str or os.PathLike
        The output folder.
    ds : pydicom.Dataset
        The de-identified data set.

    Returns
    -------
    str
        The output file's path.

    Raises
    ------
    DicomToolsError
        The data set has no SOP Instance UID, or the path would leave ``out_dir``.

    Examples
    --------
    >>> ids = {"PatientID": "ANON-1", "StudyInstanceUID": "2.25.1",
    ...        "SeriesInstanceUID": "2.25.2", "SOPInstanceUID": "2.25.3"}
    >>> output_path("out", ids).split(os.sep)
    ['out', 'ANON-1', '2.25.1', '2.25.2', '2.25.3.dcm']
    >>> output_path("out", dict(ids, SeriesInstanceUID="../../etc")).split(os.sep)[3][:5]
    '2.25.'
    """
    sop = ds.get("SOPInstanceUID", None)
    if sop is None or not _text(sop).strip():
        raise DicomToolsError(None, "no SOP Instance UID (Type 1): not de-identified")
    parts = [_safe_component(_text(ds.get("PatientID", "")) or "ANON", "patient"),
             _safe_component(_text(ds.get("StudyInstanceUID", "")) or "study", "study"),
             _safe_component(_text(ds.get("SeriesInstanceUID", "")) or "series", "series"),
             _safe_component(sop if not _multi(sop) else list(sop), "instance") + ".dcm"]
    target = os.path.join(os.fspath(out_dir), *parts)
    root = _realpath(os.fspath(out_dir))
    where = os.path.join(_realpath(os.path.dirname(target)), parts[-1])
    if not where.startswith(root.rstrip(os.sep) + os.sep):
        raise DicomToolsError(target, f"would be written outside {out_dir}; refused")
    return target


_REALPATHS: dict[str, str] = {}


def _realpath(folder: str) -> str:
    """``os.path.realpath`` of a folder, remembered once the folder exists (a run writes
    hundreds of files into a few folders)."""
    real = _REALPATHS.get(folder)
    if real is None:
        real = os.path.realpath(folder)
        if os.path.isdir(folder):
            if len(_REALPATHS) > 4096:
                _REALPATHS.clear()
            _REALPATHS[folder] = real
    return real


def _write_new(target: str, chunks: Iterable[Piece], overwrite: bool) -> None:
    """Write the byte strings ``chunks`` to ``target`` through
    :func:`~napari_dicomtools.core.safety.atomic_output`: no partial output under the final
    name, of two racing writers one wins, the mode ``open()`` gives, folders made as needed,
    file-system refusals as one :class:`DicomToolsError`."""
    from .safety import atomic_output

    with atomic_output(target, overwrite) as tmp, open(tmp, "wb") as f:
        for chunk in chunks:
            f.write(chunk)


def summarize_warnings(messages: Iterable[object], listed: int = 3) -> list[str]:
    """A run's warnings for a person to read: each once, in order, with the routine notes
    that text was removed from a file's compressed Pixel Data kept one per file up to
    ``listed`` files and summed up in one line beyond (every JPEG 2000 file OpenJPEG wrote
    carries its COM segment: hundreds of such notes would bury the warnings that need
    attention, such as BurnedInAnnotation).

    Parameters
    ----------
    messages : iterable
        The warnings (:attr:`Report.warnings`, or caught ``warnings.warn`` messages).
    listed : int
        At most this many removal notes are kept as they are.

    Returns
    -------
    list of str
        The other warnings, then the removal notes or their one-line sum.

    Examples
    --------
    >>> notes = [f"IM{i}.dcm: removed 1 JPEG 2000 COM segment from Pixel Data"
    ...          for i in range(40)]
    >>> lines = summarize_warnings(notes + ["IM7.dcm: BurnedInAnnotation=YES"])
    >>> len(lines), lines[0]
    (2, 'IM7.dcm: BurnedInAnnotation=YES')
    >>> lines[1].split(" (the first")[0]
    'text removed from the compressed Pixel Data of 40 files'
    """
    unique = list(dict.fromkeys(str(m) for m in messages))
    removed = [m for m in unique if ": removed " in m and m.endswith(" from Pixel Data")]
    others = [m for m in unique if m not in set(removed)]
    if len(removed) <= listed:
        return others + removed
    return others + [f"text removed from the compressed Pixel Data of {len(removed)} files "
                     f"(the first: {removed[0]})"]


def anonymize_files(src: PathInput, out_dir: os.PathLike[str] | str,
                    options: Options | None = None, *, key: bytes | str | None = None,
                    overwrite: bool = False,
                    progress: Callable[[int, int], object] | None = None,
                    workers: int | None = None) -> Report:
    """De-identify every DICOM file under ``src`` into ``out_dir`` (never into ``src``).

    Non-DICOM files and DICOMDIRs are skipped with a reason (a DICOMDIR's records hold PHI
    and would point at the source names); sources are only read. A file that cannot be
    de-identified (malformed, truncated, no SOP Instance UID ...) is skipped with its reason
    and listed in ``Report.failed``; the others are written. Large folders are processed by
    a pool of processes (the keyed mappings make every worker agree) whose workers end with
    the calling process, even when it is killed.

    Parameters
    ----------
    src : str, os.PathLike or list
        File, folder, ``.zip`` (or ``archive.zip::member``), or a list of them.
    out_dir : str or os.PathLike
        Output folder, outside every source.
    options : Options, optional
        Profile options (default: the Basic Profile alone).
    key : bytes or str, optional
        Secret for reproducible UIDs/pseudonyms (default: ``options.key`` or random).
    overwrite : bool
        Replace existing outputs.
    progress : callable, optional
        ``progress(done, total)`` after each file.
    workers : int, optional
        Processes (default: ``NAPARI_DICOMTOOLS_WORKERS`` when set, else up to 4 for 64
        files or more, else 1).

    Returns
    -------
    Report
        The files written, skipped (with their reasons) and failed, and the warnings.

    Raises
    ------
    DicomToolsError
        ``out_dir`` lies inside a source.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from napari_dicomtools.core.synthetic import write_series
    >>> tmp = tempfile.mkdtemp()
    >>> _ = write_series(os.path.join(tmp, "src"), np.zeros((2, 4, 4)),
    ...                  patient=("Doe^Jane", "MRN123"))
    >>> report = anonymize_files(os.path.join(tmp, "src"), os.path.join(tmp, "out"), key="k")
    >>> len(report.written), report.skipped
    (2, [])
    >>> data = open(report.written[0], "rb").read()
    >>> b"MRN123" in data, b"Doe" in data
    (False, False)
    """
    out = os.fspath(out_dir)
    srcs = [os.fspath(src)] if isinstance(src, (str, os.PathLike)) else [os.fspath(p) for p
                                                                          in src]
    sources, skipped = _inputs(srcs, out)
    if key is None:
        key = (options.key if options is not None else None) or secrets.token_bytes(32)
    report = Report(skipped=[(s.path, s.reason) for s in skipped])
    total = len(sources)
    if workers is None:
        workers = _default_workers(total)
    workers = max(1, min(int(workers), total or 1))
    preload_tables()  # once here, so that forked workers share it instead of each redoing it
    results = _results_in_pool(sources, out, options, key, overwrite, workers) \
        if workers > 1 else _results_here(sources, out, Anonymizer(options, key=key),
                                          overwrite)
    for i, res in enumerate(results):
        _collect(report, res)
        if progress is not None:
            progress(i + 1, total)
    for msg in report.warnings:
        warnings.warn(msg, stacklevel=2)
    return report


def _inputs(srcs: list[str], out: str) -> tuple[list[Source], list[Skipped]]:
    """The files under every input (zip members as given), and what is skipped: DICOMDIR
    indexes (their records repeat PHI and source names); refuses an output inside a source."""
    from .safety import refuse_inside_source
    from .sources import Skipped, Source, iter_sources

    sources: list[Source] = []
    skipped: list[Skipped] = []
    for one in srcs:
        member = Source.from_string(one)
        if member.member is not None:  # a zip member, as listed by scan()
            sources.append(member)
            one = member.path
        else:
            s, k = iter_sources(one)
            sources.extend(s)
            skipped.extend(k)
        refuse_inside_source(out, one)
        if os.path.isdir(one):
            for root, _dirs, files in os.walk(one):
                for fn in files:
                    if fn.upper() == "DICOMDIR":
                        skipped.append(Skipped(os.path.join(root, fn), "DICOMDIR index not "
                                       "copied (its records repeat PHI and source names)"))
    return sources, skipped


def _results_here(sources: list[Source], out: str, anon: Anonymizer,
                  overwrite: bool) -> Iterator[_Result]:
    """Each file's result, de-identified in this process."""
    for source in sources:
        yield _one(anon, source, out, overwrite)


def _results_in_pool(sources: list[Source], out: str, options: Options | None,
                     key: bytes | str, overwrite: bool, workers: int) -> Iterator[_Result]:
    """Each file's result, in order, from a pool of ``workers`` processes that end with this
    one (the keyed mappings make every worker agree)."""
    from concurrent.futures import ProcessPoolExecutor

    from ._parallel import mp_context

    total = len(sources)
    ctx = mp_context()
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(options, key, os.getpid())) as ex:
        yield from ex.map(_worker_one, sources, [out] * total, [overwrite] * total,
                          chunksize=max(1, min(16, total // (4 * workers))))


def _default_workers(total: int) -> int:
    """``NAPARI_DICOMTOOLS_WORKERS`` when set (as for decoding), else up to 4 processes for
    64 files or more (fewer files do not repay starting them), else 1."""
    if os.environ.get("NAPARI_DICOMTOOLS_WORKERS", "").strip():
        from ._parallel import decode_workers

        return decode_workers()
    return min(4, os.cpu_count() or 1) if total >= 64 else 1


def preload_tables() -> None:
    """Load the de-identification tables before worker processes are forked.

    The confidentiality profile, the public allow-list and the data dictionary (read
    without importing pydicom: the byte-level path needs none of it) are otherwise loaded
    by the first file each worker de-identifies. Loaded once here, forked workers share
    them. Calling it again costs nothing.

    Examples
    --------
    >>> preload_tables()
    >>> profile_table()[0][0x00100010].name
    "Patient's Name"
    """
    from . import _anonfast, headers  # noqa: F401

    profile_table()
    public_allowlist()
    _dicom_defined()
    _emptied_sequences()
    _keyword(0x00100010)


def _collect(report: Report, res: _Result) -> None:
    target, skipped, warns, failed = res
    if target is not None:
        report.written.append(target)
    if skipped is not None:
        report.skipped.append(skipped)
        if failed:
            report.failed.append(skipped)
    report.warnings.extend(warns)


_WORKER: dict[str, Anonymizer] = {}


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker process end when ``parent_pid`` does, even on ``kill -9``: the
    kernel's parent-death signal on Linux (prctl PR_SET_PDEATHSIG), and everywhere a
    daemon thread that watches the parent id."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 == PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _init_worker(options: Options | None, key: bytes | str,
                 parent_pid: int | None = None) -> None:
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    _WORKER["anon"] = Anonymizer(options, key=key)


def _worker_one(source: Source, out_dir: str, overwrite: bool) -> _Result:
    return _one(_WORKER["anon"], source, out_dir, overwrite)


class _FileState:
    """What :func:`_one` reports besides the outcome: BurnedInAnnotation warnings, and
    whether a file that was not written looked like DICOM (then it counts as failed)."""

    __slots__ = ("caught", "looks_dicom")

    def __init__(self) -> None:
        self.caught: list[str] = []
        self.looks_dicom = False


class FileResult(NamedTuple):
    """What de-identifying one file gave (:func:`anonymize_one`).

    Parameters
    ----------
    output : str or None
        The file written, or None when nothing was written.
    skipped : (str, str) or None
        ``(source, reason)`` when nothing was written (not DICOM, an existing output,
        a malformed file, ...), else None.
    warnings : list of str
        BurnedInAnnotation warnings, the text removed from compressed Pixel Data ("removed
        2 JPEG COM segments from Pixel Data") and similar notes about the file.
    failed : bool
        True when the file looked like DICOM but could not be de-identified (a failure to
        report), False when it was written or skipped for an expected reason.

    Examples
    --------
    >>> FileResult(None, ("notes.txt", "not a DICOM file"), [], False).skipped[1]
    'not a DICOM file'
    """

    output: str | None
    skipped: tuple[str, str] | None
    warnings: list[str]
    failed: bool


def anonymize_one(anon: Anonymizer, source: Source | os.PathLike[str] | str,
                  out_dir: os.PathLike[str] | str, overwrite: bool = False) -> FileResult:
    """De-identify one file into ``out_dir`` with ``anon``; never raises for the file.

    This is the unit of work of :func:`anonymize_files` and of the batch engine: the
    output goes to :func:`output_path` under ``out_dir``, written atomically; whatever goes
    wrong with this file is returned as its reason instead of raised, so that one bad
    file never ends a run.

    Parameters
    ----------
    anon : Anonymizer
        The run's anonymizer (its key makes pseudonyms and UIDs the same in every
        process).
    source : Source or path-like
        The file, or a zip member (``Source("a.zip", "member")`` or ``"a.zip::member"``).
    out_dir : path-like
        The output folder.
    overwrite : bool, default False
        Replace an existing output (otherwise the file is skipped with a reason).

    Returns
    -------
    FileResult
        The output written, or why the file was skipped, and its warnings.

    Examples
    --------
    >>> import tempfile
    >>> from pydicom.data import get_testdata_file
    >>> res = anonymize_one(Anonymizer(key="k"), get_testdata_file("CT_small.dcm"),
    ...                     tempfile.mkdtemp())
    >>> res.skipped is None and os.path.isfile(res.output)
    True
    """
    from .sources import Source

    src = source if isinstance(source, Source) else Source.from_string(source)
    return FileResult(*_one(anon, src, os.fspath(out_dir), overwrite))


def _one(anon: Anonymizer, source: Source, out_dir: str, overwrite: bool) -> _Result:
    """De-identify one file: (target or None, (source, reason) or None, warnings, failed).
    Never raises: whatever goes wrong with one file is that file's reason."""
    name = str(source)
    st = _FileState()
    try:
        done = _deidentified(anon, source, name, st)
        target = output_path(out_dir, done[1] if isinstance(done, tuple) else done)
        if os.path.exists(target) and not overwrite:
            st.looks_dicom = False  # an existing output, not a bad input
            raise DicomToolsError(target, "exists; not overwriting (use --force)")
        chunks: list[Piece] | list[bytes]
        if isinstance(done, tuple):
            chunks = done[0]
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                chunks = _encode_chunks(done)
        _write_new(target, chunks, overwrite)
        return target, None, st.caught, False
    except DicomToolsError as exc:
        return None, (name, exc.reason), st.caught, st.looks_dicom
    except Exception as exc:  # noqa: BLE001 - one malformed file never ends the run
        return None, (name, f"could not be de-identified ({type(exc).__name__}: {exc})"), \
            st.caught, True


def _deidentified(anon: Anonymizer, source: Source, name: str, st: _FileState
                  ) -> tuple[list[Piece], dict[str, str]] | Dataset:
    """The byte path's (pieces, identifiers), or the de-identified pydicom data set: a file
    with a preamble goes through :mod:`._anonfast` unless it declines, then through
    pydicom and :meth:`Anonymizer.dataset` (the same output bytes)."""
    from ._pixeltext import PixelTextWarning
    from .headers import open_dicom

    with open_dicom(source) as (fp, _size, dicm):
        st.looks_dicom = bool(dicm)
        if dicm:
            fast = _fast_path(anon, fp, name, st)
            if fast is not None:
                return fast
            fp.seek(0)
        ds = _read_dataset(fp, name, dicm)
    if "DirectoryRecordSequence" in ds:  # a DICOMDIR by another name: skipped, as by name
        st.looks_dicom = False
        raise DicomToolsError(name, "DICOMDIR index not copied")
    if "SOPClassUID" not in ds and "SOPInstanceUID" not in ds:
        raise DicomToolsError(name, "not a DICOM file (no SOP Class/Instance UID)")
    st.looks_dicom = True
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            anon.dataset(ds, source=name)
        except DicomToolsError as exc:
            if "BurnedInAnnotation" in exc.reason:
                st.looks_dicom = False  # skipped on request, not a failure
            raise
    st.caught = [str(x.message) for x in w if "BurnedInAnnotation" in str(x.message) or
                 issubclass(x.category, PixelTextWarning)]
    return ds


def _fast_path(anon: Anonymizer, fp: IO[bytes], name: str, st: _FileState
               ) -> tuple[list[Piece], dict[str, str]] | None:
    """(pieces, identifiers) from the byte path, or None when it declines the file."""
    from ._anonfast import Decline, anonymize_bytes

    try:
        pieces, ids, caught = anonymize_bytes(anon, fp.read(), name)
    except Decline as exc:
        _LOG.debug("%s: de-identified through pydicom (%s)", name, exc)
        return None
    except DicomToolsError as exc:
        if "BurnedInAnnotation" in exc.reason:
            st.looks_dicom = False  # skipped on request, not a failure
        raise
    st.looks_dicom = True
    st.caught = caught
    return pieces, ids


def _read_dataset(fp: IO[bytes], name: str, dicm: bool) -> Dataset:
    """The whole data set through pydicom (deflate bombs refused)."""
    from .headers import safe_dcmread

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds: Dataset = safe_dcmread(fp, name, force=not dicm)  # no deflate bombs
            ds.get("SOPInstanceUID")  # parse now, inside the open file
    except Exception as exc:  # noqa: BLE001 - pydicom raises anything on junk
        raise DicomToolsError(name, f"not readable as DICOM ({exc})") from None
    return ds
