"""A fast, dependency-free reader for the header of common DICOM files.

pydicom parses every element into Python objects; scanning a folder only needs ~80 of them and
the file offset of Pixel Data. This module walks the elements of files in the three common
encodings (Explicit VR Little Endian, Implicit VR Little Endian, and the encapsulated transfer
syntaxes, whose data sets are Explicit VR Little Endian), skips what it does not need (sequences
included, nested or of undefined length) and decodes the rest on demand. Anything unusual
(no preamble, big endian, deflate, enhanced multi-frame functional groups, character sets
beyond ASCII/Latin-1/UTF-8) raises :class:`Unsupported` so the caller falls back to pydicom.
It never imports pydicom, which keeps a plain CT read from paying pydicom's import time.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO

from ._filemeta import read_file_meta

__all__ = [
    "parse", "parse_head", "FastDataset", "RawElement", "Unsupported", "KEYWORDS", "MAX_HEADER_BYTES",
    "MAX_DEPTH", "Value",
]


#: keyword -> (tag, VR) for every attribute the scanner reads
KEYWORDS: dict[str, tuple[int, str]] = {
    "MediaStorageSOPClassUID": (0x00020002, "UI"),
    "MediaStorageSOPInstanceUID": (0x00020003, "UI"),
    "TransferSyntaxUID": (0x00020010, "UI"),
    "DirectoryRecordSequence": (0x00041220, "SQ"),
    "SpecificCharacterSet": (0x00080005, "CS"),
    "ImageType": (0x00080008, "CS"),
    "SOPClassUID": (0x00080016, "UI"),
    "SOPInstanceUID": (0x00080018, "UI"),
    "StudyDate": (0x00080020, "DA"),
    "SeriesDate": (0x00080021, "DA"),
    "AcquisitionDateTime": (0x0008002A, "DT"),
    "StudyTime": (0x00080030, "TM"),
    "SeriesTime": (0x00080031, "TM"),
    "AcquisitionTime": (0x00080032, "TM"),
    "AccessionNumber": (0x00080050, "SH"),
    "Modality": (0x00080060, "CS"),
    "Manufacturer": (0x00080070, "LO"),
    "InstitutionName": (0x00080080, "LO"),
    "StudyDescription": (0x00081030, "LO"),
    "SeriesDescription": (0x0008103E, "LO"),
    "ManufacturerModelName": (0x00081090, "LO"),
    "PatientName": (0x00100010, "PN"),
    "PatientID": (0x00100020, "LO"),
    "PatientBirthDate": (0x00100030, "DA"),
    "PatientSex": (0x00100040, "CS"),
    "PatientAge": (0x00101010, "AS"),
    "ContrastBolusAgent": (0x00180010, "LO"),
    "BodyPartExamined": (0x00180015, "CS"),
    "ScanningSequence": (0x00180020, "CS"),
    "SequenceName": (0x00180024, "SH"),
    "SliceThickness": (0x00180050, "DS"),
    "KVP": (0x00180060, "DS"),
    "RepetitionTime": (0x00180080, "DS"),
    "EchoTime": (0x00180081, "DS"),
    "InversionTime": (0x00180082, "DS"),
    "EchoNumbers": (0x00180086, "IS"),
    "MagneticFieldStrength": (0x00180087, "DS"),
    "SpacingBetweenSlices": (0x00180088, "DS"),
    "ProtocolName": (0x00181030, "LO"),
    "TriggerTime": (0x00181060, "DS"),
    "FrameTime": (0x00181063, "DS"),
    "FrameTimeVector": (0x00181065, "DS"),
    "GantryDetectorTilt": (0x00181120, "DS"),
    "ExposureTime": (0x00181150, "IS"),
    "XRayTubeCurrent": (0x00181151, "IS"),
    "ImagerPixelSpacing": (0x00181164, "DS"),
    "ConvolutionKernel": (0x00181210, "SH"),
    "FlipAngle": (0x00181314, "DS"),
    "StudyInstanceUID": (0x0020000D, "UI"),
    "SeriesInstanceUID": (0x0020000E, "UI"),
    "SeriesNumber": (0x00200011, "IS"),
    "AcquisitionNumber": (0x00200012, "IS"),
    "InstanceNumber": (0x00200013, "IS"),
    "ImagePositionPatient": (0x00200032, "DS"),
    "ImageOrientationPatient": (0x00200037, "DS"),
    "FrameOfReferenceUID": (0x00200052, "UI"),
    "TemporalPositionIdentifier": (0x00200100, "IS"),
    "StudyID": (0x00200010, "SH"),
    "ImageComments": (0x00204000, "LT"),
    "PerformedProcedureStepDescription": (0x00400254, "LO"),
    "SamplesPerPixel": (0x00280002, "US"),
    "PhotometricInterpretation": (0x00280004, "CS"),
    "PlanarConfiguration": (0x00280006, "US"),
    "NumberOfFrames": (0x00280008, "IS"),
    "Rows": (0x00280010, "US"),
    "Columns": (0x00280011, "US"),
    "PixelSpacing": (0x00280030, "DS"),
    "BitsAllocated": (0x00280100, "US"),
    "BitsStored": (0x00280101, "US"),
    "HighBit": (0x00280102, "US"),
    "PixelRepresentation": (0x00280103, "US"),
    "WindowCenter": (0x00281050, "DS"),
    "WindowWidth": (0x00281051, "DS"),
    "RescaleIntercept": (0x00281052, "DS"),
    "RescaleSlope": (0x00281053, "DS"),
    "RescaleType": (0x00281054, "LO"),
    "PaletteColorLookupTableUID": (0x00281199, "UI"),
    "DoseUnits": (0x30040002, "CS"),
    "GridFrameOffsetVector": (0x3004000C, "DS"),
    "DoseGridScaling": (0x3004000E, "DS"),
    "SharedFunctionalGroupsSequence": (0x52009229, "SQ"),
    "PerFrameFunctionalGroupsSequence": (0x52009230, "SQ"),
    "FloatPixelData": (0x7FE00008, "OF"),
    "DoubleFloatPixelData": (0x7FE00009, "OD"),
    "PixelData": (0x7FE00010, "OB or OW"),
    "DiffusionBValue": (0x00189087, "FD"),
    "DiffusionGradientOrientation": (0x00189089, "FD"),
    # Siemens private diffusion (classic files before XA; creator checked)
    "SiemensMRHeaderCreator": (0x00190010, "LO"),
    "SiemensBValue": (0x0019100C, "IS"),
    "SiemensDiffusionGradientDirection": (0x0019100E, "FD"),
    "InPlanePhaseEncodingDirection": (0x00181312, "CS"),
    # GE private pulse sequence name and user data 12 (pepolar), creator GEMS_ACQU_01
    "GEPulseSequenceName": (0x0019109C, "LO"),
    "GEUserData12": (0x001910B3, "DS"),
    # GE private diffusion (creators GEMS_ACQU_01 / GEMS_PARM_01 checked)
    "GEDiffusionDirectionX": (0x001910BB, "DS"),
    "GEDiffusionDirectionY": (0x001910BC, "DS"),
    "GEDiffusionDirectionZ": (0x001910BD, "DS"),
    "GEParmCreator": (0x00430010, "LO"),
    "GESlopInt6to9": (0x00431039, "IS"),
    # Philips private diffusion (creators checked)
    "PhilipsPrivateCreator2001": (0x20010010, "LO"),
    "PhilipsBValue": (0x20011003, "FL"),
    "PhilipsDiffusionDirectionRL": (0x200510B0, "FL"),
    "PhilipsDiffusionDirectionAP": (0x200510B1, "FL"),
    "PhilipsDiffusionDirectionFH": (0x200510B2, "FL"),
    # Siemens receive coil: CoilString (creator SIEMENS MR HEADER), XA ICE dimensions
    "SiemensCSACreator": (0x00510010, "LO"),
    "SiemensCoilString": (0x0051100F, "LO"),
    "SiemensSDICreator": (0x00210011, "LO"),
    "SiemensICEDimensions": (0x00211106, "LO"),
    # UIH private block "Image Private Header": grid slice count, b-value, gradient
    "UIHPrivateCreator": (0x00650010, "LO"),
    "UIHBValue": (0x00651009, "FD"),
    "UIHDiffusionGradient": (0x00651037, "FD"),
    "UIHNumberOfSliceInVolume": (0x00651050, "DS"),
    # Philips private scale slope for "precise" floating-point values (creator checked)
    "PhilipsPrivateCreator2005": (0x20050010, "LO"),
    "PhilipsScaleSlope": (0x2005100E, "FL"),
}
_TAG_TO_KW = {t: (k, vr) for k, (t, vr) in KEYWORDS.items()}

# VRs with a 4-byte length in Explicit VR
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                       "TM", "UC", "UI", "UR", "UT"})
_SINGLE_TEXT = frozenset({"LT", "ST", "UT", "UR"})
#: text VRs in the data set's character set; the others are ASCII
_ENCODED_TEXT = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_NUM = {"US": "<H", "SS": "<h", "UL": "<I", "SL": "<i", "FL": "<f", "FD": "<d"}
_NUMBERS = {vr: struct.Struct(fmt) for vr, fmt in _NUM.items()}
#: text VR -> codec of its bytes ("": the data set's character set)
_TEXT_CODECS = {vr: "" if vr in _ENCODED_TEXT else "ascii" for vr in _TEXT_VRS}
_UNDEF = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL = 0x7FE00010
_FAST_TS = {
    "1.2.840.10008.1.2": True,  # implicit VR little endian
    "1.2.840.10008.1.2.1": False,  # explicit VR little endian
}
_ENCODINGS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
#: sequences whose values the header reader needs (functional groups, DICOMDIR records, the
#: Sequence of Ultrasound Regions that calibrates an ultrasound image): pydicom reads them
_DECLINE = frozenset({0x52009229, 0x52009230, 0x00041220, 0x00186011})
#: (group, element, VR bytes, 2-byte length) of an element header, explicit VR little endian
_HEADER = struct.Struct("<HH2sH")
_U32 = struct.Struct("<I")
_TAG = struct.Struct("<HH")
#: VR bytes -> name, for every two upper-case letters (anything else is not a VR)
_VR_NAMES = {bytes((a, b)): chr(a) + chr(b) for a in range(65, 91) for b in range(65, 91)}

#: what a decoded value can be: text, a number, several of either, or raw bytes
Value = str | int | float | bytes | list[Any]
_MISSING: Any = object()


class Unsupported(Exception):
    """The fast path does not handle this file; use pydicom.

    Examples
    --------
    >>> import io
    >>> try:
    ...     parse(io.BytesIO(b"not DICOM" * 20), 180)
    ... except Unsupported as exc:
    ...     print(exc)
    no preamble
    """


class RawElement:
    """What the scanner needs of Pixel Data: where its value starts and how long it is.

    Parameters
    ----------
    tag : int
        The element's tag, ``0x7FE00010``.
    value_tell : int
        File offset of the first byte of the value.
    length : int
        Bytes of the value (``0xFFFFFFFF``: undefined, encapsulated frames).

    Examples
    --------
    >>> px = RawElement(0x7FE00010, 1024, 8192)
    >>> px.value_tell + px.length
    9216
    """

    __slots__ = ("tag", "value_tell", "length", "value")

    def __init__(self, tag: int, value_tell: int, length: int) -> None:
        self.tag, self.value_tell, self.length = tag, value_tell, length
        self.value: bytes | None = None


class _Meta(dict[str, str]):
    """The file meta elements the parse keeps; ``get`` answers ``default`` for a missing
    one (pydicom's ``FileMetaDataset.get``)."""

    def get(self, key: str, default: Any = None) -> Any:
        v = super().get(key, default)
        return default if v is None else v


class FastDataset:
    """The subset of pydicom's ``Dataset`` interface the scanner uses (read-only).

    Every attribute of :data:`KEYWORDS` the file holds is decoded once, when the data set is
    made (text in the file's character set, numbers as pydicom gives them: DS and IS as
    float and int, binary numbers unpacked, several values as a list); ``get`` is then one
    dictionary look-up. Other kept tags (``extra`` of :func:`parse`) are decoded on request
    by :meth:`get_tag`.

    Parameters
    ----------
    raw : dict
        ``{tag: (VR, value bytes)}`` of the elements the parse kept.
    implicit : bool
        Implicit VR Little Endian (else explicit).
    meta : dict
        ``{keyword: text}`` of the file meta elements kept (TransferSyntaxUID...).
    pixel : RawElement or None
        Where Pixel Data is, if the file has it.
    encoding : str
        Python codec of the data set's SpecificCharacterSet.

    Examples
    --------
    >>> import os
    >>> from pydicom.data import get_testdata_file
    >>> path = get_testdata_file("MR_small.dcm")
    >>> with open(path, "rb") as f:
    ...     ds = parse(f, os.path.getsize(path))
    >>> ds.get("Modality"), ds.get("Rows"), "PixelData" in ds
    ('MR', 64, True)
    >>> ds.get("DoseUnits", "none"), ds.get("ContrastBolusAgent"), ds.EchoTime
    ('none', '', 240.0)
    """

    def __init__(self, raw: dict[int, tuple[str, bytes]], implicit: bool,
                 meta: dict[str, str], pixel: RawElement | None, encoding: str) -> None:
        self._raw = raw
        self.is_implicit_VR = implicit
        self.is_little_endian = True
        self.file_meta = _Meta(meta)
        self._pixel = pixel
        self._encoding = encoding
        self._values = _decode_known(raw, encoding)

    @property
    def decoded(self) -> dict[str, Any]:
        """``{keyword: value}`` of every :data:`KEYWORDS` attribute the file has a value for:
        what :meth:`get` answers, for callers that look many up (do not modify it)."""
        return self._values

    def __contains__(self, keyword: str) -> bool:
        if keyword == "PixelData":
            return self._pixel is not None
        spec = KEYWORDS.get(keyword)
        return spec is not None and spec[0] in self._raw

    def get(self, keyword: str, default: Any = None) -> Any:
        """The decoded value of ``keyword``, or ``default`` when the file does not have it
        (or it is empty and not text).

        Raises
        ------
        Unsupported
            ``keyword`` is not one the fast parser reads (:data:`KEYWORDS`): the caller
            asks pydicom.
        """
        v = self._values.get(keyword, _MISSING)
        if v is not _MISSING:
            return v
        if keyword not in KEYWORDS:
            raise Unsupported(f"keyword {keyword} not in the fast table")
        return default

    def __getattr__(self, keyword: str) -> Any:
        if keyword.startswith("_"):
            raise AttributeError(keyword)
        v = self.get(keyword, None)
        if v is None:
            raise AttributeError(keyword)
        return v

    def get_tag(self, tag: int, default: Any = None) -> Any:
        """Decoded value of any tag the parse kept (see ``extra`` in :func:`parse`), or
        ``default`` (absent, empty or a sequence).

        Parameters
        ----------
        tag : int
            ``0xGGGGEEEE``.
        default : object, optional
            Returned when there is no value.

        Returns
        -------
        object
            Text, number(s) or bytes, as :meth:`get` decodes them (with the VR in the file).
        """
        item = self._raw.get(tag)
        if item is None:
            return default
        vr, data = item
        if vr == "SQ":
            return default
        value = _decode(vr, data, self._encoding)
        return default if value is None else value

    def private_blocks(self, group: int) -> list[int]:
        """Blocks ``0x10``-``0xFF`` of private ``group`` whose creator element
        ``(group,00bb)`` the parse kept, in order.

        Parameters
        ----------
        group : int
            An odd group number (``0x0065``).

        Returns
        -------
        list of int
            Block numbers: ``0x10`` for a creator at ``(group,0010)``.
        """
        base = group << 16
        return [t & 0xFF for t in sorted(self._raw) if base | 0x10 <= t <= base | 0xFF]

    def get_item(self, tag: int, keep_deferred: bool = True) -> RawElement | None:
        """Pixel Data's :class:`RawElement` (pydicom's ``Dataset.get_item`` of a deferred
        value), or None when the file has none.

        Parameters
        ----------
        tag : int
            Must be ``0x7FE00010``.
        keep_deferred : bool
            Accepted for pydicom's signature; the value is never read.

        Returns
        -------
        RawElement or None

        Raises
        ------
        Unsupported
            Any other tag.
        """
        if tag == _PIXEL:
            return self._pixel
        raise Unsupported("get_item only for Pixel Data")


#: decoded values by (VR, bytes, character set): the files of a series repeat most of their
#: header (UIDs, names, dates, spacing, orientation, sizes), so most elements of a folder's
#: files are decoded once; emptied when it holds :data:`_MEMO_SIZE` values
_MEMO: dict[tuple[str, bytes, str], Any] = {}
_MEMO_SIZE = 8192


def _decode_known(raw: dict[int, tuple[str, bytes]], encoding: str) -> dict[str, Any]:
    """``{keyword: value}`` of every :data:`KEYWORDS` element in ``raw`` that has a value
    (the dictionary's VR where the file says UN; sequences left out). A value already
    decoded for another file is taken from :data:`_MEMO` (a list copied: each data set owns
    its values)."""
    values: dict[str, Any] = {}
    memo = _MEMO
    for tag, (vr, data) in raw.items():
        spec = _TAG_TO_KW.get(tag)
        if spec is None:
            continue
        keyword, dict_vr = spec
        if vr == "UN":
            vr = dict_vr
        if vr == "SQ":
            continue
        key = (vr, data, encoding)
        value = memo.get(key, _MISSING)
        if value is _MISSING:
            value = _decode(vr, data, encoding)
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            memo[key] = list(value) if value.__class__ is list else value
        elif value.__class__ is list:
            value = list(value)
        if value is not None:
            values[keyword] = value
    return values


def _decode(vr: str, data: bytes, encoding: str) -> Value | None:
    """The value of an element of ``vr`` (pydicom's types; None: an empty binary value).

    Text is stripped of the padding pydicom strips (one value: spaces and NULs at both ends;
    LT/ST/UT/UR: trailing ones, leading spaces); DS and IS become numbers (an invalid one
    stays text, like pydicom's); several values (``\\``) a list. Runs for every element kept
    of every file scanned: the common one-value case is the first branch."""
    codec = _TEXT_CODECS.get(vr)
    if codec is not None:
        text = data.decode(codec or encoding, "replace")
        if vr in _SINGLE_TEXT:
            return text.rstrip("\x00 ").lstrip(" ")
        numeric = vr == "DS" or vr == "IS"
        if "\\" not in text:  # one value (most elements)
            one = text.strip(" \x00")
            return _number(one, vr) if numeric and one else one
        parts: list[Any] = [p.strip(" \x00") for p in text.split("\\")]
        if numeric:  # like pydicom: an invalid number stays a string
            parts = [_number(p, vr) for p in parts]
        return parts
    unpack = _NUMBERS.get(vr)
    if unpack is None:
        if vr == "SQ":
            raise Unsupported("sequence value requested")
        return data
    n = len(data) // unpack.size
    if n == 1:
        return unpack.unpack_from(data)[0]  # type: ignore[no-any-return]  # struct's Any
    if n == 0:
        return None
    return list(struct.unpack("<" + unpack.format[-1] * n, data[: n * unpack.size]))


def _number(p: str, vr: str) -> int | float | str | None:
    if not p:
        return None
    try:
        return float(p) if vr == "DS" else int(p)
    except ValueError:
        try:
            f = float(p)
            return int(f) if vr == "IS" and f == int(f) else p
        except ValueError:
            return p


#: the fast path never holds more header than this (pydicom streams past big values)
MAX_HEADER_BYTES = 64 * 2**20

#: deeper sequence nesting is left to pydicom (which judges it; real files nest < 10 deep)
MAX_DEPTH = 64


def _skip_undefined(buf: bytes, pos: int, implicit: bool, end_tag: int, depth: int = 0) -> int:
    """Position just after the delimiter ``end_tag`` of an undefined-length value."""
    if depth > 3 * MAX_DEPTH:  # three calls per level of nesting
        raise Unsupported(f"sequences nested more than {MAX_DEPTH} deep")
    n = len(buf)
    while True:
        if pos + 8 > n:
            raise EOFError
        group, elem = _TAG.unpack_from(buf, pos)
        tag = (group << 16) | elem
        if tag == end_tag:
            return pos + 8
        if tag == _ITEM:
            (length,) = _U32.unpack_from(buf, pos + 4)
            pos += 8
            if length == _UNDEF:
                pos = _skip_dataset(buf, pos, implicit, _ITEM_END, depth + 1)
            else:
                pos += length
            continue
        if end_tag == _SEQ_END:
            raise Unsupported(f"unexpected tag {tag:08X} inside a sequence")
        pos = _skip_element(buf, pos, implicit, depth + 1)


def _skip_dataset(buf: bytes, pos: int, implicit: bool, end_tag: int, depth: int = 0) -> int:
    n = len(buf)
    while True:
        if pos + 8 > n:
            raise EOFError
        group, elem = _TAG.unpack_from(buf, pos)
        if ((group << 16) | elem) == end_tag:
            return pos + 8
        pos = _skip_element(buf, pos, implicit, depth + 1)


def _element_header(buf: bytes, pos: int, implicit: bool) -> tuple[int, str | None, int, int]:
    """(tag, VR or None, length, value position) of the element at ``pos``.

    Raises
    ------
    EOFError
        The header runs past the end of ``buf``.
    Unsupported
        Bytes where an explicit VR belongs that are not two upper-case letters.
    """
    if pos + 8 > len(buf):
        raise EOFError
    group, elem, vrb, short = _HEADER.unpack_from(buf, pos)
    tag = (group << 16) | elem
    if implicit or group == 0xFFFE:  # item/delimiters carry no VR
        return tag, None, _U32.unpack_from(buf, pos + 4)[0], pos + 8
    if vrb in _LONG_VRS:
        if pos + 12 > len(buf):
            raise EOFError
        return tag, _VR_NAMES[vrb], _U32.unpack_from(buf, pos + 8)[0], pos + 12
    vr = _VR_NAMES.get(vrb)
    if vr is None:
        raise Unsupported(f"bad VR bytes {vrb!r} at {pos}")
    return tag, vr, short, pos + 8


def _skip_element(buf: bytes, pos: int, implicit: bool, depth: int = 0) -> int:
    tag, vr, length, vpos = _element_header(buf, pos, implicit)
    if length == _UNDEF:
        if vr in (None, "SQ", "UN"):
            return _skip_undefined(buf, vpos, implicit if vr != "UN" else True, _SEQ_END,
                                   depth + 1)
        raise Unsupported(f"undefined length for VR {vr}")
    return vpos + length


def parse(fp: BinaryIO, size: int, chunk: int = 16384,
          extra: dict[int, str] | None = None) -> FastDataset:
    """Parse the header of an open binary file (positioned at 0) of ``size`` bytes.

    The file is read in pieces of ``chunk`` bytes (doubling) until Pixel Data or its end;
    only the elements of :data:`KEYWORDS` and ``extra`` are kept, sequences are skipped.

    Parameters
    ----------
    fp : binary file
        Open at offset 0 (the preamble).
    size : int
        Bytes of the file.
    chunk : int
        Bytes of the first read.
    extra : dict, optional
        More tags to keep, ``{tag: dictionary VR}`` (the VR is used for Implicit VR files);
        their values are then available through :meth:`FastDataset.get_tag`.

    Returns
    -------
    FastDataset
        The elements kept, decoded, and where Pixel Data is.

    Raises
    ------
    Unsupported
        Use pydicom for this file.
    EOFError
        The header runs past the end of the file (truncated).

    Examples
    --------
    >>> import os
    >>> from pydicom.data import get_testdata_file
    >>> path = get_testdata_file("CT_small.dcm")
    >>> with open(path, "rb") as f:
    ...     ds = parse(f, os.path.getsize(path))
    >>> ds.get("Modality"), ds.get("PixelSpacing"), ds.file_meta.get("TransferSyntaxUID")
    ('CT', [0.661468, 0.661468], '1.2.840.10008.1.2.1')
    """
    buf = fp.read(chunk)
    while True:
        try:
            return parse_head(buf, size, extra)
        except EOFError:
            if len(buf) >= size:
                raise
            if len(buf) >= MAX_HEADER_BYTES:
                raise Unsupported("header larger than the fast path reads") from None
            more = fp.read(max(len(buf), chunk))
            if not more:
                raise
            buf += more


def parse_head(head: bytes, size: int, extra: dict[int, str] | None = None) -> FastDataset:
    """Parse a header from the first bytes of a file of ``size`` bytes, already read (one
    read of a few KB holds the header of most files; :func:`parse` reads more when needed).

    Parameters
    ----------
    head : bytes
        The file's first bytes (the preamble first).
    size : int
        Bytes of the whole file.
    extra : dict, optional
        More tags to keep, as in :func:`parse`.

    Returns
    -------
    FastDataset
        The elements kept, decoded, and where Pixel Data is.

    Raises
    ------
    Unsupported
        Use pydicom for this file.
    EOFError
        The header goes on past ``head``: when ``head`` is shorter than the file, read more
        (:func:`parse`); else the file is truncated.

    Examples
    --------
    >>> import os
    >>> from pydicom.data import get_testdata_file
    >>> path = get_testdata_file("MR_small.dcm")
    >>> with open(path, "rb") as f:
    ...     head = f.read(16384)
    >>> ds = parse_head(head, os.path.getsize(path))
    >>> ds.get("Modality"), ds.get_item(0x7FE00010).value_tell
    ('MR', 1500)
    """
    if len(head) < 132 or head[128:132] != b"DICM":
        raise Unsupported("no preamble")
    return _parse_buffer(head, size, extra or {})


_META_KEPT = {0x00020010: "TransferSyntaxUID", 0x00020002: "MediaStorageSOPClassUID",
              0x00020003: "MediaStorageSOPInstanceUID"}


def _file_meta(buf: bytes) -> tuple[dict[str, str], int]:
    """The file meta elements kept (always explicit VR little endian) and the position of
    the data set after them (``EOFError``: read more)."""
    raw, pos = read_file_meta(buf, _META_KEPT, Unsupported)
    return {_META_KEPT[tag]: value.decode("ascii").rstrip("\x00 ")
            for tag, value in raw.items()}, pos


def _parse_buffer(buf: bytes, size: int, extra: dict[int, str]) -> FastDataset:
    meta, pos = _file_meta(buf)
    ts = meta.get("TransferSyntaxUID", "")
    if not ts:
        raise Unsupported("no transfer syntax")
    implicit = _FAST_TS.get(ts)
    if implicit is None:
        if ts in ("1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"):
            raise Unsupported("big endian or deflated")
        implicit = False  # encapsulated syntaxes: explicit VR little endian data set
    raw, pixel = _data_set(buf, pos, size, implicit, extra)
    charset = raw.get(0x00080005)
    enc = "ascii"
    if charset is not None:
        cs = charset[1].decode("ascii", "replace").strip(" \x00")
        if cs not in _ENCODINGS:
            raise Unsupported(f"character set {cs}")
        enc = _ENCODINGS[cs]
    return FastDataset(raw, implicit, meta, pixel, enc)


#: UIH's private group; its elements the vendor module reads, by offset in the block whose
#: creator is :data:`_UIH_CREATOR` (_vendortags.UIH_CREATOR), with their dictionary VR
_UIH_GROUP = 0x0065
_UIH_ELEMENTS = {0x09: "FD", 0x37: "FD", 0x50: "DS"}
_UIH_CREATOR = "IMAGE PRIVATE HEADER"


def _uih_spec(tag: int, raw: dict[int, tuple[str, bytes]]) -> tuple[str, str] | None:
    """``(name, VR)`` to keep a group 0065 element under, or None: every private creator
    (0065,0010-00FF), and UIH's b-value, gradient and slice count in the block whose creator
    is UIH's, wherever the scanner put it (:data:`KEYWORDS` names block 0x10 only, the usual
    one). Creators precede their block's elements, so the block is known when they come."""
    elem = tag & 0xFFFF
    if 0x10 <= elem <= 0xFF:
        return f"{tag:08X}", "LO"
    vr = _UIH_ELEMENTS.get(elem & 0xFF)
    creator = raw.get((tag & 0xFFFF0000) | (elem >> 8))
    if vr is None or elem < 0x1000 or creator is None:
        return None
    text = creator[1].decode("ascii", "replace").strip(" \x00").upper()
    return (f"{tag:08X}", vr) if text == _UIH_CREATOR else None


def _data_set(buf: bytes, pos: int, size: int, implicit: bool, extra: dict[int, str]
              ) -> tuple[dict[int, tuple[str, bytes]], RawElement | None]:
    """Walk the top-level elements from ``pos`` to Pixel Data (or the end of the file):
    ``({tag: (VR, bytes)} kept, Pixel Data or None)``. One loop, the element header decoded
    inline (this runs for every element of every file scanned).

    Raises
    ------
    EOFError
        ``buf`` ends before Pixel Data and before the end of the file: read more.
    """
    raw: dict[int, tuple[str, bytes]] = {}
    n = len(buf)
    header, u32, long_vrs, vr_names = _HEADER.unpack_from, _U32.unpack_from, _LONG_VRS, \
        _VR_NAMES
    wanted, pixel, decline, undefined = _TAG_TO_KW, _PIXEL, _DECLINE, _UNDEF
    while pos + 8 <= n:
        group, elem, vrb, length = header(buf, pos)
        tag = (group << 16) | elem
        vr: str | None
        if implicit or group == 0xFFFE:
            length, vpos, vr = u32(buf, pos + 4)[0], pos + 8, None
        elif vrb in long_vrs:
            if pos + 12 > n:
                raise EOFError
            length, vpos, vr = u32(buf, pos + 8)[0], pos + 12, vr_names[vrb]
        else:
            vr = vr_names.get(vrb)
            if vr is None:
                raise Unsupported(f"bad VR bytes {vrb!r} at {pos}")
            vpos = pos + 8
        if tag >= pixel:
            return raw, (RawElement(tag, vpos, length) if tag == pixel else None)
        if tag in decline:
            raise Unsupported("a sequence the fast parser does not read (functional groups, "
                              "DICOMDIR records, ultrasound regions)")
        if length == undefined:
            if vr in (None, "SQ", "UN"):
                pos = _skip_undefined(buf, vpos, implicit if vr != "UN" else True, _SEQ_END)
                continue
            raise Unsupported(f"undefined length for VR {vr}")
        end = vpos + length
        if end > n:
            if end > size:
                raise Unsupported("element runs past the end of the file")
            raise EOFError
        spec = wanted.get(tag)
        if spec is None:
            if tag in extra:
                spec = (f"{tag:08X}", extra[tag])
            elif group == _UIH_GROUP:
                spec = _uih_spec(tag, raw)
        if spec is not None:
            if vr is None:
                vr = spec[1]
                if " or " in vr:
                    raise Unsupported(f"ambiguous VR for {spec[0]}")
            raw[tag] = (vr, buf[vpos:end])
        pos = end
    if pos < size:
        raise EOFError
    return raw, None
