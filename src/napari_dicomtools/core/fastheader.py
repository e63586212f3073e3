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

__all__ = [
    "parse", "FastDataset", "RawElement", "Unsupported", "KEYWORDS", "MAX_HEADER_BYTES",
    "MAX_DEPTH",
]


#: keyword -> (tag, VR) for every attribute the scanner reads
KEYWORDS = {
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
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR",
             b"UT", b"UV"}
_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM",
             "UC", "UI", "UR", "UT"}
_SINGLE_TEXT = {"LT", "ST", "UT", "UR"}
_NUM = {"US": "<H", "SS": "<h", "UL": "<I", "SL": "<i", "FL": "<f", "FD": "<d"}
_UNDEF = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL = 0x7FE00010
_FAST_TS = {
    "1.2.840.10008.1.2": True,  # implicit VR little endian
    "1.2.840.10008.1.2.1": False,  # explicit VR little endian
}
_ENCODINGS = {"": "ascii", "ISO_IR 6": "ascii", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
_SKIP_IF_PRESENT = {0x52009229, 0x52009230}  # Shared/PerFrame functional groups: use pydicom


class Unsupported(Exception):
    """The fast path does not handle this file; use pydicom."""


class RawElement:
    """What the scanner needs of Pixel Data: where its value starts and how long it is."""

    __slots__ = ("tag", "value_tell", "length", "value")

    def __init__(self, tag, value_tell, length):
        self.tag, self.value_tell, self.length, self.value = tag, value_tell, length, None


class _Meta(dict):
    def get(self, key, default=None):
        v = super().get(key, default)
        return default if v is None else v


class FastDataset:
    """The subset of pydicom's ``Dataset`` interface the scanner uses (read-only)."""

    def __init__(self, raw: dict, implicit: bool, meta: dict, pixel: RawElement | None,
                 encoding: str):
        self._raw = raw  # tag -> (vr, bytes)
        self._cache: dict = {}
        self.is_implicit_VR = implicit
        self.is_little_endian = True
        self.file_meta = _Meta(meta)
        self._pixel = pixel
        self._encoding = encoding

    def __contains__(self, keyword) -> bool:
        if keyword == "PixelData":
            return self._pixel is not None
        spec = KEYWORDS.get(keyword)
        return spec is not None and spec[0] in self._raw

    def get(self, keyword, default=None):
        if keyword in self._cache:
            return self._cache[keyword]
        spec = KEYWORDS.get(keyword)
        if spec is None:
            raise Unsupported(f"keyword {keyword} not in the fast table")
        item = self._raw.get(spec[0])
        if item is None:
            return default
        vr, data = item
        value = _decode(vr if vr != "UN" else spec[1], data, self._encoding)
        if value is None:
            return default
        self._cache[keyword] = value
        return value

    def __getattr__(self, keyword):
        if keyword.startswith("_"):
            raise AttributeError(keyword)
        v = self.get(keyword, None)
        if v is None:
            raise AttributeError(keyword)
        return v

    def get_tag(self, tag: int, default=None):
        """Decoded value of any tag the parse kept (see ``extra`` in :func:`parse`)."""
        item = self._raw.get(tag)
        if item is None:
            return default
        vr, data = item
        if vr == "SQ":
            return default
        value = _decode(vr, data, self._encoding)
        return default if value is None else value

    def get_item(self, tag, keep_deferred=True):
        if tag == _PIXEL:
            return self._pixel
        raise Unsupported("get_item only for Pixel Data")


def _decode(vr: str, data: bytes, encoding: str):
    if vr in _TEXT_VRS:
        text = data.decode(encoding if vr in ("LO", "LT", "PN", "SH", "ST", "UC", "UT")
                           else "ascii", errors="replace")
        text = text.rstrip("\x00 ").lstrip(" ") if vr != "UI" else text.rstrip("\x00 ")
        if text == "":
            return ""
        parts = [text] if vr in _SINGLE_TEXT else [p.strip(" \x00") for p in text.split("\\")]
        if vr in ("DS", "IS"):  # like pydicom: an invalid number stays a string
            parts = [_number(p, vr) for p in parts]
        return parts[0] if len(parts) == 1 else parts
    fmt = _NUM.get(vr)
    if fmt is None:
        if vr == "SQ":
            raise Unsupported("sequence value requested")
        return data
    size = struct.calcsize(fmt)
    n = len(data) // size
    if n == 0:
        return None
    vals = list(struct.unpack("<" + fmt[1] * n, data[: n * size]))
    return vals[0] if n == 1 else vals


def _number(p: str, vr: str):
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
        group, elem = struct.unpack_from("<HH", buf, pos)
        tag = (group << 16) | elem
        if tag == end_tag:
            return pos + 8
        if tag == _ITEM:
            (length,) = struct.unpack_from("<I", buf, pos + 4)
            pos += 8
            if length == _UNDEF:
                pos = _skip_dataset(buf, pos, implicit, _ITEM_END, depth + 1)
            else:
                pos += length
            continue
        if end_tag == _SEQ_END:
            raise Unsupported(f"unexpected tag {tag:08X} inside a sequence")
        pos = _skip_element(buf, pos, implicit, depth + 1)


def _skip_dataset(buf, pos, implicit, end_tag, depth=0):
    n = len(buf)
    while True:
        if pos + 8 > n:
            raise EOFError
        group, elem = struct.unpack_from("<HH", buf, pos)
        if ((group << 16) | elem) == end_tag:
            return pos + 8
        pos = _skip_element(buf, pos, implicit, depth + 1)


def _element_header(buf, pos, implicit):
    """(tag, vr or None, length, value position)."""
    group, elem = struct.unpack_from("<HH", buf, pos)
    tag = (group << 16) | elem
    if group == 0xFFFE:  # item/delimiters carry no VR
        (length,) = struct.unpack_from("<I", buf, pos + 4)
        return tag, None, length, pos + 8
    if implicit:
        (length,) = struct.unpack_from("<I", buf, pos + 4)
        return tag, None, length, pos + 8
    vr = buf[pos + 4: pos + 6]
    if vr in _LONG_VRS:
        (length,) = struct.unpack_from("<I", buf, pos + 8)
        return tag, vr.decode("ascii"), length, pos + 12
    if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
        raise Unsupported(f"bad VR bytes {vr!r} at {pos}")
    (length,) = struct.unpack_from("<H", buf, pos + 6)
    return tag, vr.decode("ascii"), length, pos + 8


def _skip_element(buf, pos, implicit, depth=0):
    tag, vr, length, vpos = _element_header(buf, pos, implicit)
    if length == _UNDEF:
        if vr in (None, "SQ", "UN"):
            return _skip_undefined(buf, vpos, implicit if vr != "UN" else True, _SEQ_END,
                                   depth + 1)
        raise Unsupported(f"undefined length for VR {vr}")
    return vpos + length


def parse(fp, size: int, chunk: int = 16384, extra: dict | None = None) -> FastDataset:
    """Parse the header of an open binary file (positioned at 0) of ``size`` bytes.

    ``extra`` maps more tags to their dictionary VR (used for Implicit VR files); their
    values are then available through :meth:`FastDataset.get_tag`.

    Raises
    ------
    Unsupported
        Use pydicom for this file.
    EOFError
        The header runs past the end of the file (truncated).
    """
    buf = fp.read(chunk)
    if len(buf) < 132 or buf[128:132] != b"DICM":
        raise Unsupported("no preamble")
    while True:
        try:
            return _parse_buffer(buf, size, extra or {})
        except EOFError:
            if len(buf) >= size:
                raise
            if len(buf) >= MAX_HEADER_BYTES:
                raise Unsupported("header larger than the fast path reads") from None
            more = fp.read(max(len(buf), chunk))
            if not more:
                raise
            buf += more


def _parse_buffer(buf: bytes, size: int, extra: dict) -> FastDataset:
    pos = 132
    meta = {}
    n = len(buf)
    # file meta: always explicit VR little endian
    while pos + 8 <= n:
        group = struct.unpack_from("<H", buf, pos)[0]
        if group != 0x0002:
            break
        tag, vr, length, vpos = _element_header(buf, pos, False)
        if length == _UNDEF or vpos + length > n:
            raise EOFError if vpos + length > n else Unsupported("odd file meta")
        if tag == 0x00020010:
            meta["TransferSyntaxUID"] = buf[vpos:vpos + length].decode("ascii").rstrip("\x00 ")
        elif tag == 0x00020002:
            meta["MediaStorageSOPClassUID"] = buf[vpos:vpos + length].decode(
                "ascii").rstrip("\x00 ")
        elif tag == 0x00020003:
            meta["MediaStorageSOPInstanceUID"] = buf[vpos:vpos + length].decode(
                "ascii").rstrip("\x00 ")
        pos = vpos + length
    ts = meta.get("TransferSyntaxUID", "")
    if not ts:
        raise Unsupported("no transfer syntax")
    implicit = _FAST_TS.get(ts)
    if implicit is None:
        if ts in ("1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"):
            raise Unsupported("big endian or deflated")
        implicit = False  # encapsulated syntaxes: explicit VR little endian data set
    raw: dict = {}
    pixel = None
    while pos + 8 <= n:
        tag, vr, length, vpos = _element_header(buf, pos, implicit)
        if tag == _PIXEL:
            pixel = RawElement(tag, vpos, length)
            break
        if tag > _PIXEL:
            break
        if tag in _SKIP_IF_PRESENT or tag == 0x00041220:
            raise Unsupported("enhanced multi-frame or DICOMDIR")
        if length == _UNDEF:
            if vr in (None, "SQ", "UN"):
                pos = _skip_undefined(buf, vpos, implicit if vr != "UN" else True, _SEQ_END)
                continue
            raise Unsupported(f"undefined length for VR {vr}")
        end = vpos + length
        if end > n:
            if end > size:
                raise Unsupported("element runs past the end of the file")
            raise EOFError
        spec = _TAG_TO_KW.get(tag)
        if spec is None and tag in extra:
            spec = (f"{tag:08X}", extra[tag])
        if spec is not None:
            if vr is None:
                vr = spec[1]
                if " or " in vr:
                    raise Unsupported(f"ambiguous VR for {spec[0]}")
            raw[tag] = (vr, bytes(buf[vpos:end]))
        pos = end
    else:
        if pos < size:
            raise EOFError
    charset = raw.get(0x00080005)
    enc = "ascii"
    if charset is not None:
        cs = charset[1].decode("ascii", "replace").strip(" \x00")
        if cs not in _ENCODINGS:
            raise Unsupported(f"character set {cs}")
        enc = _ENCODINGS[cs]
    return FastDataset(raw, implicit, meta, pixel, enc)
