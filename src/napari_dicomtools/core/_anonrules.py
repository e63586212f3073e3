"""The de-identification rules and values both paths share: the pydicom path
(:mod:`napari_dicomtools.core.anonymize`) and the byte path (``_anonfast``).

Private: what is here decides bytes of the output, so one definition serves both paths, which
must write the same file for the same key. The walk's context (``_Context``), the VR classes
and constants of the profile (free text, identity sequences, the implementation UID and name
of the file meta, the dummy values), data dictionary look-ups (cached), the check that a kept
value is well formed for its VR, date shifting, descriptor cleaning (PS3.15 E.3.5) and the file
meta encoding. ``anonymize`` imports these names back, so its code reads them as its own;
``PN_DUMMY`` is public there. Imports no pydicom (the byte path must not pay for it).
"""

from __future__ import annotations

import datetime as _dt
import re
from functools import lru_cache
from typing import Any, TypedDict


class _Context(TypedDict):
    """What the walk over one data set needs to know of it."""

    implicit: bool  #: read (and written) in Implicit VR
    pseudonym: str  #: of the top-level patient
    pid: str  #: the top-level PatientID, stripped
    pname: str  #: the top-level PatientName, normalised (_norm_name)
    shift: int | None  #: days dates move (shift_dates), else None
    phi: set[str]  #: words to scrub from cleaned descriptors


#: sequences (by keyword) whose codes identify a person or an organisation
_IDENTITY_SQ = re.compile(r"Identification|Institution|Physician|Operator|Observer|Performer|"
                          r"Participant|Person|Custodial|Author|Issuer|Identifier|Verifying|"
                          r"Approver|Creator|Recipient|Interpreter")
#: VRs that can carry free text or names
_FREE_TEXT = {"PN", "LO", "SH", "ST", "LT", "UT", "UC", "AE", "AS", "UR"}
#: the longest dummy text per VR
_MAX_LEN = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "ST": 1024, "LT": 10240,
            "UT": 1 << 20, "UC": 1 << 20, "AS": 4}
#: the neutral person name (documented and public as ``anonymize.PN_DUMMY``)
PN_DUMMY = "ANONYMIZED^"
#: the file meta's ImplementationClassUID / ImplementationVersionName of our outputs
_IMPLEMENTATION_UID = "2.25.194726453104815309870346372395458219451"
_IMPLEMENTATION_NAME = "DICOMTOOLS_01"
#: Encapsulated Document (0042,0011): E.1-1 replaces it by a dummy document
_ENCAPSULATED_DOCUMENT = 0x00420011


def _multi(value: object) -> bool:
    """Whether ``value`` holds several values (a list, tuple or pydicom MultiValue)."""
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"


def _text(value: Any) -> str:
    """A value as DICOM text: several values joined by backslashes, None as ''."""
    if value is None:
        return ""
    if _multi(value):
        return "\\".join(str(v) for v in value)
    return str(value)


def _norm_name(name: object) -> str:
    """A person name without trailing empty components or padding, upper case: the same
    person written ``Doe^John`` or ``DOE^JOHN^^^`` gives the same pseudonym."""
    return re.sub(r"[\^\s=]+$", "", _text(name).strip()).upper()


def _keyword(tag: int) -> str:
    """The data dictionary keyword of ``tag`` ('' when unknown)."""
    from ._datadict import keyword_for_tag

    return keyword_for_tag(tag)


@lru_cache(maxsize=4096)
def _dictionary_vrs(tag: int) -> frozenset[str]:
    """The VRs the data dictionary allows for ``tag`` (``{"US", "SS"}`` ...), empty when
    unknown."""
    from ._datadict import dictionary_vr

    try:
        return frozenset(dictionary_vr(tag).split(" or "))
    except KeyError:
        return frozenset()


_NUMBER_RE = {"DS": re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*"),
              "IS": re.compile(r"\s*[+-]?\d+\s*")}


@lru_cache(maxsize=4096)
def _dictionary_vr(tag: int) -> str | None:
    """The first VR the data dictionary gives ``tag`` (None when unknown)."""
    from ._datadict import dictionary_vr as dictionary_VR

    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return None


#: PS3.5 Table 6.2-1 maximum length of one value (DA, DT, TM: range matching forms)
_TEXT_MAX = {"AE": 16, "AS": 4, "CS": 16, "DA": 18, "DS": 16, "DT": 54, "IS": 12, "LO": 64,
             "PN": 194, "SH": 16, "TM": 28, "UI": 64, "ST": 1024, "LT": 10240}
_TEXT_VRS = frozenset(_TEXT_MAX) | {"UC", "UR", "UT"}
_ONE_VALUE_VRS = frozenset({"LT", "ST", "UT", "UR"})  # a backslash is text there
_BIN_SIZE = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "SV": 8, "UV": 8, "AT": 4}
#: control characters: only ESC (character sets) in short text; TAB LF FF CR in long text
_CTRL_SHORT = re.compile(rb"[\x00-\x1a\x1c-\x1f\x7f]")
_CTRL_LONG = re.compile(rb"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")
_CS_CHARS = re.compile(rb"[ -\[\]-~]*")  # printable ASCII without backslash


@lru_cache(maxsize=4096)
def _vm_max(tag: int) -> int | None:
    """The largest value multiplicity the data dictionary allows (None: unbounded)."""
    from ._datadict import dictionary_vm

    try:
        vm = dictionary_vm(tag)
    except KeyError:
        return None
    m = re.fullmatch(r"(?:\d+-)?(\d+)", vm.strip())
    return int(m.group(1)) if m else None


def _kept_bytes_ok(data: bytes | memoryview, vr: str, tag: int) -> bool:
    """``anonymize._kept_value_ok`` for an undecoded value (bytes or a memoryview); written with
    a VR the dictionary does not give the tag, it must also be well formed for the
    dictionary's VR (free text written as OF or CS in a code or number attribute is not)."""
    if _foreign_vr(vr, tag) and not _bytes_ok(data, _dictionary_vr(tag) or vr, tag):
        return False
    return _bytes_ok(data, vr, tag)


def _foreign_vr(vr: str, tag: int) -> bool:
    """Whether ``vr`` is not a VR the data dictionary gives ``tag`` (False when unknown)."""
    vrs = _dictionary_vrs(tag)
    return bool(vrs) and vr not in vrs


def _bytes_ok(data: bytes | memoryview, vr: str, tag: int) -> bool:
    """Whether ``data`` is well formed for ``vr`` and the VM of ``tag`` (see _kept_bytes_ok)."""
    if vr not in _BIN_SIZE and vr not in _TEXT_VRS:
        return True
    if vr in _BIN_SIZE:
        size = _BIN_SIZE[vr]
        vm = _vm_max(tag)
        return len(data) % size == 0 and (vm is None or len(data) <= vm * size)
    data = bytes(data).rstrip(b" \x00")
    if not data:
        return True
    if (_CTRL_LONG if vr in ("LT", "ST", "UT", "UC", "UR") else _CTRL_SHORT).search(data):
        return False
    values = [data] if vr in _ONE_VALUE_VRS else data.split(b"\\")
    vm = _vm_max(tag)
    if vm is not None and len(values) > vm:
        return False
    limit = _TEXT_MAX.get(vr)
    if limit is not None and any(len(v) > limit for v in values):
        return False
    if vr == "CS" and not all(_CS_CHARS.fullmatch(v) for v in values):
        return False
    if vr in _NUMBER_RE:
        return all(_NUMBER_RE[vr].fullmatch(v.decode("latin-1")) for v in values)
    return True


def _dummy(vr: str, ctx: object = None) -> str | int | bytes:
    """The neutral value that replaces a value of ``vr`` (action ``D``)."""
    if vr == "PN":
        return PN_DUMMY
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


def _shift(value: Any, vr: str, days: int) -> Any:
    """DA/DT value(s) moved by ``days`` (times of day kept; an unreadable date becomes the
    dummy)."""
    if value in (None, ""):
        return value
    values = value if _multi(value) else [value]
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
            out.append(str(_dummy(vr)))
    return out if len(out) > 1 else out[0]


_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
          r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_DAY = r"(?:[0-3]?\d)(?:st|nd|rd|th)?"
#: dates as people write them in free text (PS3.15 E.3.5: descriptors keep no dates)
_DATE_RE = re.compile("|".join([
    r"\b\d{4}[-./]\d{1,2}[-./]\d{1,2}\b",                  # 2024-03-15, 2024.3.15
    r"\b\d{1,2}[-./]\d{1,2}[-./]\d{2,4}\b",                # 15/03/2024, 15.03.2024, 3-15-24
    rf"\b{_DAY}[\s\-./]*{_MONTH}\.?,?[\s\-./]*\d{{2,4}}\b",  # 15 Mar 2024, 15-Mar-2024
    rf"\b{_MONTH}\.?[\s\-./]*{_DAY},?[\s\-./]*\d{{2,4}}\b",  # Mar 15 2024, March 15, 2024
    rf"\b{_MONTH}\.?[\s\-./,]*(?:19|20)\d\d\b",            # March 2024
    r"\b(?:19|20)\d{6}\b",                                 # 20240315
]), re.IGNORECASE)
_NAME_WORD = r"[A-Z][A-Za-z'\-]*\b\.?"
#: a title and up to three capitalised name words after it: Dr X, Dr. X Y, Prof X ...
_TITLE_RE = re.compile(
    r"\b(?i:dr|drs|doctor|prof|professor|mr|mrs|ms|mx|miss|sir|dame|nurse|rev|sr|sra|dott|"
    r"herr|frau|mme|mlle|m)\b\.?[\s\^]+(" + _NAME_WORD + r"(?:[\s\^]+" + _NAME_WORD +
    r"){0,2})")
#: a name followed by a degree: Smith MD, J. Smith, M.D.
_DEGREE_RE = re.compile(r"\b(" + _NAME_WORD + r"(?:\s+" + _NAME_WORD + r")?),?\s+"
                        r"(?:MD|M\.D\.|PhD|Ph\.D\.|RN|DO|MBBS|FRCR)\b")


def _stars(m: re.Match[str], group: int = 0) -> str:
    """The match with ``group``'s characters (not spaces or ``^``) replaced by ``*``."""
    s, e = m.span(group)
    whole = m.group(0)
    a, b = s - m.start(), e - m.start()
    return whole[:a] + re.sub(r"[^\s\^]", "*", whole[a:b]) + whole[b:]


def _clean_text(value: Any, phi: set[str]) -> Any:
    """Clean Descriptors (E.3.5): keep the text, scrub names and IDs seen in the header,
    titled names (``Dr X``), dates in common notations and long digit runs."""
    if value is None:
        return value
    if _multi(value):
        return [_clean_text(v, phi) for v in value]
    text = str(value)

    def scrub(m: re.Match[str]) -> str:
        return "*" * len(m.group(0)) if m.group(0).lower() in phi else m.group(0)

    text = re.sub(r"[A-Za-z0-9]+", scrub, text)
    text = _DATE_RE.sub(lambda m: "*" * len(m.group(0)), text)
    text = _TITLE_RE.sub(lambda m: _stars(m, 1), text)
    text = _DEGREE_RE.sub(lambda m: _stars(m, 1), text)
    # long digit runs (IDs, phone numbers) are never clean
    text = re.sub(r"\d{5,}", lambda m: "*" * len(m.group(0)), text)
    return text


#: the file meta elements of our outputs, in order, with their VRs
_META_ORDER = ((0x00020002, "UI"), (0x00020003, "UI"), (0x00020010, "UI"),
               (0x00020012, "UI"), (0x00020013, "SH"))


def _encode_meta_values(meta: dict[int, object]) -> bytes | None:
    """The file meta group from ``{tag: text}``, as pydicom's ``write_file_meta_info`` encodes
    it (explicit VR little endian, group length first); None for a value that is not ASCII
    text."""
    import struct

    body = [struct.pack("<HH2sHL", 2, 1, b"OB", 0, 2) + b"\x00\x01"]
    for tag, vr in _META_ORDER:
        if tag not in meta:
            continue
        value = meta[tag]
        if not isinstance(value, str) or not value.isascii():
            return None
        raw = value.encode("ascii")
        if len(raw) & 1:
            raw += b"\x00" if vr == "UI" else b" "
        body.append(struct.pack("<HH2sH", 2, tag & 0xFFFF, vr.encode(), len(raw)) + raw)
    rest = b"".join(body)
    return struct.pack("<HH2sHL", 2, 0, b"UL", 4, len(rest)) + rest
