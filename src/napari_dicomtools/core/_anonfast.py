"""De-identification at the byte level for the common files, without pydicom.

:meth:`Anonymizer.dataset <napari_dicomtools.core.anonymize.Anonymizer.dataset>` works on a
pydicom data set, and :func:`~napari_dicomtools.core.anonymize.encode_file` writes it back.
For a file with a preamble, an explicit file meta and a little-endian data set (Implicit VR,
Explicit VR, or an encapsulated transfer syntax), this module does the same walk on the file's
bytes: it tokenizes the elements, asks the very same rules (``Anonymizer._decide``,
``_raw_replacement``, the pseudonyms and UID map, and ``_anonrules``: ``_kept_bytes_ok``, the
dummies, date shifts and cleaning) what to do with each,
and writes the result, copying kept values (Pixel Data included) byte for byte. It never
imports pydicom, whose import costs more than de-identifying a few hundred files this way.

The output is the same bytes as the pydicom path's for the same key. Where the two could
differ, the file is declined (:class:`Decline`) and takes the pydicom path: anything pydicom
would read in a way of its own (an encoding that switches inside the data set, an unknown or
``UN`` VR that would be decoded, odd lengths, tags out of order, truncation, a stray
delimiter, a fragment containing the sequence delimiter's bytes), text that would have to be
decoded beyond ASCII (or holds ISO 2022 escape sequences), and the options that rewrite
values this module does not (``retain_uids``, ``retain_private``, the Clean options, Encapsulated Documents). Declining
is always safe; ``tests/test_anonymize_fast.py`` checks the bytes against the pydicom path
over pydicom's test files and planted edge cases.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._anonrules import (
    _ENCAPSULATED_DOCUMENT,
    _FREE_TEXT,
    _IDENTITY_SQ,
    _IMPLEMENTATION_NAME,
    _IMPLEMENTATION_UID,
    _TEXT_VRS,
    _clean_text,
    _Context,
    _dictionary_vr,
    _dummy,
    _encode_meta_values,
    _kept_bytes_ok,
    _keyword,
    _norm_name,
    _shift,
)
from ._encap import DELIMITER, EncapsulationError, walk
from ._filemeta import read_file_meta
from ._syntaxes import (
    EXPLICIT_VR_LE,
    HTJ2K,
    IMPLICIT_VR_LE,
    JPEG_2000,
    JPEG_LOSSLESS,
    JPEG_LOSSY,
    JPEG_LS,
    RLE,
)
from .errors import DicomToolsError

if TYPE_CHECKING:
    from .anonymize import Anonymizer

__all__: list[str] = []

_UNDEF = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL = 0x7FE00010
_PATIENT_NAME, _PATIENT_ID = 0x00100010, 0x00100020
_CHARSET = 0x00080005
_METHOD_TAGS = (0x00120062, 0x00120063, 0x00120064)
#: MediaStorageSOPClassUID, MediaStorageSOPInstanceUID, TransferSyntaxUID
_META_UIDS = frozenset({0x00020002, 0x00020003, 0x00020010})
_LONG = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV",
                   "UV"})
_VRS = frozenset({"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB",
                  "OD", "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM",
                  "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"})
#: the encapsulated transfer syntaxes whose files this path takes (data set in Explicit VR
#: Little Endian, Pixel Data in fragments), those tests/test_anonymize_fast.py compares with
#: the pydicom path: JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000 Part 1, HTJ2K, RLE.
#: The others (retired JPEG processes, JPEG 2000 Part 2, video, JPEG XL, deflated frames ...)
#: are declined to the pydicom path. Not "what we can decode" (``_decode.PLUGIN_ORDER``),
#: though today the same syntaxes
_ENCAPSULATED = JPEG_LOSSY | JPEG_LOSSLESS | JPEG_LS | JPEG_2000 | HTJ2K | {RLE}
#: the sequence delimiter's bytes, searched through every fragment: re's literal search
#: runs 1.7-1.9x faster than bytes.find on compressed frames (0.07 instead of 0.12 ms for
#: a 200 KB file)
_DELIMITER_BYTES = re.compile(re.escape(DELIMITER))
#: zero of a binary VR as pydicom encodes ``0`` (E.1-1 ``D``/``U`` on a number)
_ZERO = {"US": b"\0\0", "SS": b"\0\0", "UL": b"\0" * 4, "SL": b"\0" * 4, "FL": b"\0" * 4,
         "FD": b"\0" * 8, "SV": b"\0" * 8, "UV": b"\0" * 8, "OB": b"", "OW": b"", "OF": b"",
         "OD": b"", "OL": b"", "OV": b"", "UN": b""}
_MAX_DEPTH = 64

_HHL = struct.Struct("<HHL")
_HH = struct.Struct("<HH")
_L = struct.Struct("<L")
_H = struct.Struct("<H")

#: bytes or a view of the input (Pixel Data is never copied)
Piece = bytes | memoryview


class Decline(Exception):
    """The pydicom path must handle this file (the message says why)."""


class _Item:
    """One sequence item: its elements, and whether it was written with undefined length."""

    __slots__ = ("undefined", "elements")

    def __init__(self, undefined: bool, elements: list[_Element]):
        self.undefined, self.elements = undefined, elements


class _Element:
    """One element as read: tag, VR as written (None in Implicit VR), where its value lies,
    for sequences their items (parsed on first use when the length is defined), and for
    encapsulated Pixel Data its items' values (Basic Offset Table first) as walked once."""

    __slots__ = ("tag", "vr", "start", "length", "undefined", "items", "implicit",
                 "fragments")

    def __init__(self, tag: int, vr: str | None, start: int, length: int, undefined: bool,
                 implicit: bool, items: list[_Item] | None = None,
                 fragments: list[memoryview] | None = None):
        self.tag, self.vr, self.start, self.length = tag, vr, start, length
        self.undefined, self.implicit, self.items = undefined, implicit, items
        self.fragments = fragments


class _Parser:
    """Tokenizes a data set as pydicom reads it, declining whatever pydicom would read in
    a way of its own."""

    def __init__(self, buf: bytes, dictionary_vr: Callable[[int], str | None]):
        self.buf = buf
        self.view = memoryview(buf)
        self.dictionary_vr = dictionary_vr

    def dataset(self, pos: int, end: int, implicit: bool, depth: int,
                until_delimiter: bool = False) -> tuple[list[_Element], int]:
        """The elements from ``pos`` to ``end`` (or to the item delimiter)."""
        if depth > _MAX_DEPTH:
            raise Decline("sequences nested too deeply")
        buf = self.buf
        elements: list[_Element] = []
        last = -1
        while pos < end:
            if pos + 8 > end:
                raise Decline("truncated element header")
            group, elem = _HH.unpack_from(buf, pos)
            tag = group << 16 | elem
            if tag == _ITEM_END and until_delimiter:
                return elements, pos + 8
            if group == 0xFFFE:
                raise Decline("a delimiter where an element belongs")
            if tag <= last:
                raise Decline("elements out of order or repeated")
            last = tag
            element, pos = self._element(tag, pos, end, implicit, depth, not elements)
            elements.append(element)
        if until_delimiter:
            raise Decline("item without its delimiter")
        return elements, pos

    def _element(self, tag: int, pos: int, end: int, implicit: bool, depth: int,
                 first: bool) -> tuple[_Element, int]:
        buf = self.buf
        vr: str | None = None
        if implicit:
            length = _L.unpack_from(buf, pos + 4)[0]
            start = pos + 8
            if first and depth == 0 and _looks_explicit(buf, pos):
                raise Decline("Implicit VR data set that reads as explicit")
        else:
            raw_vr = buf[pos + 4:pos + 6]
            if not _looks_explicit(buf, pos):
                raise Decline("explicit VR data set with an element that reads as implicit")
            vr = raw_vr.decode("ascii")
            if vr not in _VRS:
                raise Decline(f"unknown VR {vr!r}")
            if vr in _LONG:
                if pos + 12 > end:
                    raise Decline("truncated element header")
                length = _L.unpack_from(buf, pos + 8)[0]
                start = pos + 12
            else:
                length = _H.unpack_from(buf, pos + 6)[0]
                start = pos + 8
        if length != _UNDEF:
            if start + length > end:
                raise Decline("value runs past its end (truncated)")
            return _Element(tag, vr, start, length, False, implicit), start + length
        return self._undefined(tag, vr, start, end, implicit, depth)

    def _undefined(self, tag: int, vr: str | None, start: int, end: int, implicit: bool,
                   depth: int) -> tuple[_Element, int]:
        """An undefined-length element: a sequence (SQ, UN, or Implicit VR with a sequence
        in the dictionary or items inside) or encapsulated Pixel Data."""
        sq = vr in ("SQ", "UN")
        if vr is None:
            dvr = self.dictionary_vr(tag)
            sq = dvr == "SQ" if dvr is not None else (
                start + 4 <= end and _HH.unpack_from(self.buf, start) == (0xFFFE, 0xE000))
        if sq:
            items, pos = self.items(start, end, implicit, depth + 1, undefined=True)
            element = _Element(tag, vr, start, pos - 8 - start, True, implicit, items)
            return element, pos
        if tag != _PIXEL or vr not in ("OB", "OW"):
            raise Decline("undefined length outside sequences and encapsulated Pixel Data")
        try:  # the items (of defined length) up to the sequence delimiter
            walked = walk(self.view[start:end], delimited=True)
        except EncapsulationError as exc:
            raise Decline(f"malformed encapsulated Pixel Data ({exc})") from None
        pos = start + sum(8 + len(item) for item in walked)  # the delimiter
        first = _DELIMITER_BYTES.search(self.buf, start)  # pydicom stops at the first match
        if first is None or first.start() != pos:
            raise Decline("a fragment holds the sequence delimiter's bytes")
        return _Element(tag, vr, start, pos - start, True, implicit, fragments=walked), pos + 8

    def items(self, pos: int, end: int, implicit: bool, depth: int,
              undefined: bool) -> tuple[list[_Item], int]:
        """The items of a sequence value from ``pos``: to ``end``, or with ``undefined`` to
        the sequence delimiter (the position after it is returned)."""
        if depth > _MAX_DEPTH:
            raise Decline("sequences nested too deeply")
        buf = self.buf
        items: list[_Item] = []
        while True:
            if not undefined and pos == end:
                return items, pos
            if pos + 8 > end:
                raise Decline("truncated sequence")
            group, elem, length = _HHL.unpack_from(buf, pos)
            if (group, elem) == (0xFFFE, 0xE0DD) and undefined:
                return items, pos + 8
            if (group, elem) != (0xFFFE, 0xE000):
                raise Decline("a sequence holding something else than items")
            pos += 8
            if length == _UNDEF:
                elements, pos = self.dataset(pos, end, implicit, depth, until_delimiter=True)
                items.append(_Item(True, elements))
            else:
                if pos + length > end:
                    raise Decline("item runs past its sequence")
                elements, _ = self.dataset(pos, pos + length, implicit, depth)
                items.append(_Item(False, elements))
                pos += length

    def sequence_items(self, element: _Element, depth: int) -> list[_Item]:
        """The items of a sequence element (parsed now when its length is defined)."""
        if element.items is None:
            element.items, _ = self.items(element.start, element.start + element.length,
                                          element.implicit, depth + 1, undefined=False)
        return element.items


def _looks_explicit(buf: bytes, pos: int) -> bool:
    """pydicom's test for an explicit VR: two bytes in A-Z after the tag."""
    return 0x40 < buf[pos + 4] < 0x5B and 0x40 < buf[pos + 5] < 0x5B


def _header(tag: int, vr: str | None, length: int) -> bytes:
    """An element header as pydicom writes it (VR None: Implicit VR)."""
    if vr is None:
        return _HHL.pack(tag >> 16, tag & 0xFFFF, length)
    if vr in _LONG:
        return _HH.pack(tag >> 16, tag & 0xFFFF) + vr.encode("ascii") + b"\0\0" + \
            _L.pack(length)
    if length > 0xFFFF:
        raise Decline("a value too long for its VR")
    return _HH.pack(tag >> 16, tag & 0xFFFF) + vr.encode("ascii") + _H.pack(length)


def _padded(text: str, vr: str) -> bytes:
    """ASCII text as pydicom writes it: padded to even length (NUL for UI, else space)."""
    value = text.encode("ascii")
    if len(value) & 1:
        value += b"\x00" if vr == "UI" else b" "
    return value


def _ascii(data: bytes | memoryview) -> str:
    """Text that reads the same in every character set: ASCII without the escape sequences
    of ISO 2022 (7-bit bytes that pydicom decodes to kanji, hangul ...)."""
    raw = bytes(data)
    if b"\x1b" in raw:
        raise Decline("text with ISO 2022 escape sequences would need its character set")
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise Decline("text beyond ASCII would need its character set") from None


def _text_value(data: bytes | memoryview, vr: str) -> str:
    """A text value decoded as pydicom's ``_text(ds.get(...))`` reads it (ASCII only):
    PN stripped as a whole, other VRs value by value."""
    if vr == "PN":
        return _ascii(bytes(data).rstrip(b"\x00 "))
    return "\\".join(v.rstrip("\x00 ") for v in _ascii(data).split("\\"))


class _Out:
    """The pieces of an encoded data set and their total length."""

    __slots__ = ("pieces", "size")

    def __init__(self) -> None:
        self.pieces: list[Piece] = []
        self.size = 0

    def add(self, piece: Piece) -> None:
        self.pieces.append(piece)
        self.size += len(piece)

    def element(self, tag: int, vr: str | None, value: Piece) -> None:
        self.add(_header(tag, vr, len(value)))
        if len(value):
            self.add(value)


class _Walker:
    """Anonymizer._walk over tokenized elements, writing the result as it goes."""

    def __init__(self, anon: Anonymizer, parser: _Parser, ctx: _Context):
        self.anon, self.parser, self.ctx = anon, parser, ctx
        self.view = parser.view
        self.top_values: dict[int, bytes] = {}  # de-identified UIDs the file meta and path need
        #: new values of the top-level Pixel Data and Extended Offset Table (text removed)
        self.pixels: dict[int, Piece] = {}

    def walk(self, elements: list[_Element], out: _Out, strict: int, top: bool,
             depth: int) -> None:
        anon, ctx = self.anon, self.ctx
        view = self.view
        item_pid: str | None = None
        for el in elements:
            t = el.tag
            group = t >> 16
            if group & 1 or (t & 0xFFFF) == 0 or group <= 0x0002 or \
                    0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:
                continue  # private, group lengths, meta/command, curves, overlays: removed
            if t in (_PATIENT_NAME, _PATIENT_ID):
                if not top:
                    if item_pid is None:
                        item_pid = self._item_patient_id(elements)
                    self._patient(el, out, item_pid)
                continue
            if top and t in _METHOD_TAGS:
                continue  # written afresh
            vr = el.vr
            if not el.undefined and el.length & 1:
                raise Decline("odd value length")
            if vr in (None, "UN"):
                vr = _dictionary_vr(t) or "UN"
            action, listed, code = anon._decide(t, vr)
            value = view[el.start:el.start + el.length]
            if top and t in self.pixels:  # kept (as the walk keeps them), with new values
                self._keep(el, vr, value, out, self.pixels[t])
                continue
            if not listed:
                if vr == "SQ":
                    if action != "X":
                        self._sequence(el, out, strict, depth)
                    continue
                if strict and (strict > 1 or not code) and \
                        (vr in _FREE_TEXT or vr in ("DA", "DT", "TM")):
                    action = "D"
                elif action == "K":
                    self._keep(el, vr, value, out)
                    continue
            elif action == "K" and vr not in ("SQ", "UI"):
                self._keep(el, vr, value, out)
                continue
            if action == "X":
                continue
            if vr == "SQ":
                self._changed_sequence(el, action, out, strict, depth)
                continue
            if el.vr == "UN":
                raise Decline("a UN value that would be decoded")
            new = anon._raw_replacement(t, bytes(value), vr, action, ctx)
            if new is None:
                new = self._general(t, vr, action, value)
            out.element(t, el.vr, new)
            if top and t in (0x00080016, 0x00080018, 0x0020000D, 0x0020000E):
                self.top_values[t] = bytes(new)

    def _keep(self, el: _Element, vr: str, value: memoryview, out: _Out,
              new: Piece | None = None) -> None:
        """A value kept as read (or as ``new``: Pixel Data cleaned of text), unless
        malformed for its VR (then removed, as the pydicom path does)."""
        if el.undefined or (new is not None and el.tag == _PIXEL):
            if el.tag != _PIXEL:
                raise Decline("an undefined-length value kept")
            out.add(_header(el.tag, el.vr, _UNDEF))
            out.add(value if new is None else new)
            out.add(_HHL.pack(0xFFFE, 0xE0DD, 0))
            return
        if _kept_bytes_ok(value, vr, el.tag):
            out.element(el.tag, el.vr, value if new is None else new)
        elif el.tag == _CHARSET:  # pydicom would then write the whole file its own way
            raise Decline("a Specific Character Set that would be removed")

    def _general(self, tag: int, vr: str, action: str, value: memoryview) -> bytes:
        """``Anonymizer._apply`` for what ``_raw_replacement`` leaves: empty or dummy values
        of binary VRs, dates shifted (``shift_dates``) or replaced, LO/SH cleaned (the
        Clean action of the retain options)."""
        ctx = self.ctx
        if action == "Z":
            return b""
        if tag == _ENCAPSULATED_DOCUMENT:
            raise Decline("an Encapsulated Document")
        shift = ctx["shift"]
        if (action == "D" and vr in ("DA", "DT") and shift is not None) or \
                (action == "C" and vr in ("DA", "DT", "TM") and shift is not None):
            return self._shifted(value, vr, shift)
        if action == "C" and vr in ("LO", "SH"):  # cleaned as pydicom decodes them
            parts = [v.rstrip("\x00 ") for v in _ascii(value).split("\\")]
            cleaned = _clean_text(parts if len(parts) > 1 else parts[0], ctx["phi"])
            return _padded(cleaned if isinstance(cleaned, str) else "\\".join(cleaned), vr)
        if action in ("D", "U") or (action == "C" and vr in ("DA", "DT", "TM")):
            if vr in _ZERO:
                return _ZERO[vr]
            dummy = _dummy(vr, ctx)
            if isinstance(dummy, str) and vr in _TEXT_VRS:
                return _padded(dummy, vr)
        raise Decline(f"action {action} on {vr} needs the pydicom path")

    def _shifted(self, value: memoryview, vr: str, shift: int) -> bytes:
        """A DA/DT/TM value through ``_shift`` as pydicom would decode and encode it."""
        text = _ascii(value).rstrip("\x00 ")
        if not text:
            if len(value):
                raise Decline("a blank date or time")
            return b""
        parts = text.split("\\")
        shifted = _shift(parts if len(parts) > 1 else parts[0], vr, shift)
        return _padded(shifted if isinstance(shifted, str) else "\\".join(shifted), vr)

    def _sequence(self, el: _Element, out: _Out, level: int, depth: int,
                  empty: bool = False) -> None:
        """A sequence walked item by item (or emptied), in the form it was read: defined or
        undefined lengths, as pydicom writes a read sequence back."""
        if el.vr == "UN":
            raise Decline("a sequence read as UN")
        items = [] if empty else self.parser.sequence_items(el, depth)
        body = _Out()
        for item in items:
            inner = _Out()
            self.walk(item.elements, inner, level, False, depth + 1)
            body.add(_HHL.pack(0xFFFE, 0xE000, _UNDEF if item.undefined else inner.size))
            body.pieces.extend(inner.pieces)
            body.size += inner.size
            if item.undefined:
                body.add(_HHL.pack(0xFFFE, 0xE00D, 0))
        out.add(_header(el.tag, el.vr, _UNDEF if el.undefined else body.size))
        out.pieces.extend(body.pieces)
        out.size += body.size
        if el.undefined:
            out.add(_HHL.pack(0xFFFE, 0xE0DD, 0))

    def _changed_sequence(self, el: _Element, action: str, out: _Out, strict: int,
                          depth: int) -> None:
        """``Anonymizer._apply`` on a sequence: K and U walk it, Z empties it, D and C walk
        it strictly (codes too in sequences that identify people)."""
        if action == "Z":
            self._sequence(el, out, strict, depth, empty=True)
            return
        level = strict
        if action in ("D", "C"):
            keyword = _keyword(el.tag)
            level = max(strict, 2 if _IDENTITY_SQ.search(keyword) else 1)
        self._sequence(el, out, level, depth)

    def _item_patient_id(self, elements: list[_Element]) -> str:
        for el in elements:
            if el.tag == _PATIENT_ID:
                return self._decoded(el, "LO").strip()
        return ""

    def _decoded(self, el: _Element, vr: str) -> str:
        if el.vr not in (None, vr) or el.undefined:
            raise Decline(f"PatientName/PatientID with VR {el.vr}")
        return _text_value(self.view[el.start:el.start + el.length], vr)

    def _patient(self, el: _Element, out: _Out, item_pid: str) -> None:
        """``Anonymizer._patient``: the pseudonym of the ID an item holds."""
        vr = "LO" if el.tag == _PATIENT_ID else "PN"
        value = self._decoded(el, vr)
        if not value.strip():
            if value:
                raise Decline("a blank patient name or ID")
            out.element(el.tag, el.vr, b"")  # pydicom writes the decoded (empty) value
            return
        anon, ctx = self.anon, self.ctx
        if el.tag == _PATIENT_ID:
            new = anon.pseudonym(value.strip())
        elif item_pid:
            new = anon.pseudonym(item_pid)
        elif _norm_name(value) == ctx["pname"]:
            new = ctx["pseudonym"]
        else:
            new = anon.pseudonym("", value)
        out.element(el.tag, el.vr, _padded(new, vr))


def _meta(buf: bytes) -> tuple[dict[int, str], int]:
    """The file meta UIDs (MediaStorageSOPClassUID, MediaStorageSOPInstanceUID,
    TransferSyntaxUID by element number, ASCII, one value each) and where the data set
    starts."""
    try:
        raw, pos = read_file_meta(buf, _META_UIDS, Decline)
    except EOFError:
        raise Decline("file meta runs past the end of the file") from None
    values: dict[int, str] = {}
    for tag, value in raw.items():
        text = _ascii(value).rstrip("\x00 ")
        if "\\" in text:
            raise Decline("a multi-valued file meta UID")
        values[tag & 0xFFFF] = text
    return values, pos


def _top_text(parser: _Parser, elements: list[_Element], tag: int, vr: str) -> str:
    for el in elements:
        if el.tag == tag:
            if el.vr not in (None, vr) or el.undefined:
                raise Decline(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) with VR {el.vr}")
            return _text_value(parser.view[el.start:el.start + el.length], vr)
    return ""


def anonymize_bytes(anon: Anonymizer, buf: bytes,
                    source: str = "") -> tuple[list[Piece], dict[str, str], list[str]]:
    """De-identify one DICOM file given as bytes (preamble included).

    Returns the pieces of the output file, the de-identified identifiers that name it
    (``PatientID``, ``StudyInstanceUID``, ``SeriesInstanceUID``, ``SOPInstanceUID``, for
    :func:`~napari_dicomtools.core.anonymize.output_path`) and the warnings (a
    BurnedInAnnotation of YES, text removed from compressed Pixel Data), which are also
    added to ``anon.warnings``. Every reason to decline is checked before the bitstream is
    parsed or a warning recorded: a declined file gets both from the pydicom path only.

    Raises
    ------
    Decline
        The pydicom path must take this file.
    DicomToolsError
        BurnedInAnnotation is YES and ``skip_burned_in`` was asked for, or the Pixel Data
        bitstream cannot be parsed, or cleaned (video ...) and ``keep_uncleanable_pixels``
        is off.
    """
    meta, ts, implicit, parser, elements = _tokenized(anon, buf)
    burned = _burned_in(anon, parser, elements, source)
    pixel = next((el for el in reversed(elements) if el.tag == _PIXEL), None)
    if pixel is not None and ts not in _ENCAPSULATED:
        if pixel.undefined:  # frames of an unknown codec: the pydicom path refuses them
            raise Decline("encapsulated Pixel Data under a native transfer syntax")
        pixel = None
    frames = "" if pixel is None else _top_text(parser, elements, 0x00280008, "IS")
    pid = _top_text(parser, elements, _PATIENT_ID, "LO")
    pname = _top_text(parser, elements, _PATIENT_NAME, "PN")
    ctx: _Context = {
        "implicit": implicit, "pseudonym": anon.pseudonym(pid, pname), "pid": pid.strip(),
        "pname": _norm_name(pname),
        "shift": anon.date_offset_days(pid or pname) if anon.options.shift_dates else None,
        "phi": set(),
    }
    walker = _Walker(anon, parser, ctx)
    body = _top_level(walker, elements, ctx)
    head = _file_meta(meta, walker.top_values, ts)
    ids = _identifiers(walker.top_values, ctx["pseudonym"])
    # nothing below declines: the file is this path's, its notes are recorded here only
    anon.warnings.extend(burned)
    new, msg = _pixels(anon, parser, elements, pixel, frames, ts, source)
    caught = burned if msg is None else [*burned, msg]
    if msg is not None:
        anon.warnings.append(msg)
    if new:
        body = _with_pixels(walker, elements, body, new)
    return _file(head, body), ids, caught


def _tokenized(anon: Anonymizer, buf: bytes
               ) -> tuple[dict[int, str], str, bool, _Parser, list[_Element]]:
    """(file meta UIDs, transfer syntax, Implicit VR, parser, top-level elements) of a file
    this path can take."""
    opts = anon.options
    if opts.retain_uids or opts.retain_private or opts.clean_descriptors or \
            opts.clean_structured_content or opts.clean_graphics:
        raise Decline("options the byte path does not implement")
    if len(buf) < 140 or buf[128:132] != b"DICM":
        raise Decline("no preamble")
    meta, start = _meta(buf)
    ts = meta.get(0x0010, "")
    if ts == IMPLICIT_VR_LE:
        implicit = True
    elif ts == EXPLICIT_VR_LE or ts in _ENCAPSULATED:
        implicit = False
    else:
        raise Decline(f"transfer syntax {ts or 'missing'}")
    parser = _Parser(buf, _dictionary_vr)
    elements, _ = parser.dataset(start, len(buf), implicit, 0)
    tags = {el.tag for el in elements}
    if 0x00041220 in tags:
        raise Decline("a DICOMDIR")
    if 0x00080016 not in tags and 0x00080018 not in tags:
        raise Decline("no SOP Class or Instance UID")
    return meta, ts, implicit, parser, elements


def _burned_in(anon: Anonymizer, parser: _Parser, elements: list[_Element],
               source: str) -> list[str]:
    """The BurnedInAnnotation check of ``Anonymizer.dataset``: its warning (recorded by
    the caller once the file is this path's)."""
    burned = _top_text(parser, elements, 0x00280301, "CS")
    if "\\" in burned or burned.strip().upper() != "YES":
        return []
    if anon.options.skip_burned_in:
        raise DicomToolsError(source or None, "BurnedInAnnotation=YES; skipped")
    return [f"{source or 'dataset'}: BurnedInAnnotation=YES: the pixels may show "
            "patient identity; pixel data is NOT cleaned"]


def _pixels(anon: Anonymizer, parser: _Parser, elements: list[_Element],
            pixel: _Element | None, frames: str, ts: str,
            source: str) -> tuple[dict[int, Piece], str | None]:
    """``Anonymizer._pixels`` for the top-level encapsulated ``pixel`` (None: none), whose
    data set says ``frames`` Number of Frames: the new values of Pixel Data and of the
    Extended Offset Table and its Lengths when text was removed from the bitstream (else
    none), and the report's message."""
    if pixel is None:
        return {}, None
    from ._pixeltext import deidentify_pixels  # compressed files only

    tags = {el.tag for el in elements}
    cleaned, msg = deidentify_pixels(
        parser.view[pixel.start:pixel.start + pixel.length], ts, frames,
        undefined=pixel.undefined, extended=0x7FE00001 in tags or 0x7FE00002 in tags,
        keep_uncleanable=anon.options.keep_uncleanable_pixels, source=source,
        walked=pixel.fragments)
    if cleaned is None:
        return {}, msg
    return cleaned.new_values(), msg


def _with_pixels(walker: _Walker, elements: list[_Element],
                 body: list[tuple[int, list[Piece]]],
                 new: dict[int, Piece]) -> list[tuple[int, list[Piece]]]:
    """``body`` with the top-level elements ``new`` has values for (Pixel Data, the
    Extended Offset Table and its Lengths) walked again, now with those values. The walk
    keeps these elements either way (action K, or removed as malformed by the same test of
    the value read), so only their pieces change."""
    walker.pixels = new
    redone: dict[int, list[Piece]] = {}
    for el in elements:
        if el.tag in new:
            one = _Out()
            walker.walk([el], one, 0, True, 0)
            redone[el.tag] = one.pieces
    return [(tag, redone[tag] if tag in redone else pieces) for tag, pieces in body]


def _top_level(walker: _Walker, elements: list[_Element],
               ctx: _Context) -> list[tuple[int, list[Piece]]]:
    """The top-level elements, each as (tag, pieces), with the pseudonym and the
    de-identification attributes in their places."""
    anon = walker.anon
    implicit = ctx["implicit"]
    body: list[tuple[int, list[Piece]]] = []
    for el in elements:  # inline: a call per element costs more than the loop
        one = _Out()
        walker.walk([el], one, 0, True, 0)
        if one.pieces:
            body.append((el.tag, one.pieces))
    vr_of = (lambda vr: None) if implicit else (lambda vr: vr)
    for tag, vr, text in ((_PATIENT_NAME, "PN", ctx["pseudonym"]),
                          (_PATIENT_ID, "LO", ctx["pseudonym"]),
                          (0x00120062, "CS", "YES"),
                          (0x00120063, "LO", anon._method_text())):
        value = _padded(text, vr)
        body.append((tag, [_header(tag, vr_of(vr), len(value)), value]))
    seq = anon._method_sequence_bytes(implicit)
    body.append((0x00120064, [_header(0x00120064, vr_of("SQ"), len(seq)), seq]))
    body.sort(key=lambda x: x[0])
    return body


def _file_meta(meta: dict[int, str], top: dict[int, bytes], ts: str) -> bytes:
    """Preamble, ``DICM`` and the rebuilt file meta (E.3.8)."""
    sop_class = _uid_text(top.get(0x00080016, b"")) or meta.get(0x0002, "")
    if 0x00080018 not in top:
        raise Decline("no SOP Instance UID left in the data set")
    sop = _uid_text(top[0x00080018])
    encoded = _encode_meta_values({0x00020002: sop_class, 0x00020003: sop,
                                   0x00020010: ts, 0x00020012: _IMPLEMENTATION_UID,
                                   0x00020013: _IMPLEMENTATION_NAME})
    if encoded is None:
        raise Decline("file meta beyond ASCII")
    return b"\x00" * 128 + b"DICM" + encoded


def _file(head: bytes, body: list[tuple[int, list[Piece]]]) -> list[Piece]:
    """The file: ``head`` (``_file_meta``) and the data set, in few pieces (small ones
    joined, bulk values handed on)."""
    pieces: list[Piece] = []
    small: list[Piece] = [head]
    for _tag, parts in body:
        for part in parts:
            if len(part) > 65536:
                pieces.append(b"".join(small))
                pieces.append(part)
                small = []
            else:
                small.append(part)
    pieces.append(b"".join(small))
    return pieces


def _uid_text(value: bytes) -> str:
    text = _ascii(value).rstrip("\x00 ")
    if "\\" in text:
        raise Decline("a multi-valued UID the file meta or path needs")
    return text


def _identifiers(top: dict[int, bytes], pseudonym: str) -> dict[str, str]:
    """What ``output_path`` reads from the de-identified data set."""
    ids = {"PatientID": pseudonym}
    for tag, keyword in ((0x0020000D, "StudyInstanceUID"), (0x0020000E, "SeriesInstanceUID"),
                         (0x00080018, "SOPInstanceUID")):
        if tag in top:
            ids[keyword] = _uid_text(top[tag])
    return ids

