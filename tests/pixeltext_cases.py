"""Compressed files with identifying text planted inside their bitstreams (JPEG COM and APPn,
JPEG-LS COM beside CharLS' colour transform, JPEG 2000 COM in the main and tile-part headers,
a JP2 file's boxes, a segment straddling two fragments, multi-frame files with and without
offset tables, data after the end of the image), made from pydicom's bundled test files and
small images encoded here. Shared by test_anonymize_pixeltext.py and the hostile set of
test_anonymize_hostile.py."""

from __future__ import annotations

import io
import struct

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import generate_frames
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, generate_uid


def segment(code: int, payload: bytes) -> bytes:
    """A JPEG marker segment (0xFF ``code``, length, payload)."""
    return b"\xff" + bytes((code,)) + struct.pack(">H", len(payload) + 2) + payload


def j2k_com(text: bytes) -> bytes:
    """A JPEG 2000 COM segment (Rcom 1: Latin-1 text)."""
    return b"\xff\x64" + struct.pack(">HH", len(text) + 4, 1) + text


def frames_of(ds: Dataset) -> list[bytes]:
    n = int(ds.get("NumberOfFrames", 1) or 1)
    return list(generate_frames(ds.PixelData, number_of_frames=n))


def encapsulate(frames: list[bytes], *, bot: bool = True, split: dict[int, int] | None = None
                ) -> bytes:
    """Items of ``frames``: a Basic Offset Table (or an empty one), one fragment per frame,
    or two for the frames in ``split`` (cut at the given byte, even)."""
    split = split or {}
    fragments: list[list[bytes]] = []
    for i, f in enumerate(frames):
        f = f + b"\x00" * (len(f) & 1)
        cut = split.get(i)
        fragments.append([f] if cut is None else [f[:cut], f[cut:]])
    offsets, pos = [], 0
    for parts in fragments:
        offsets.append(pos)
        pos += sum(8 + len(p) for p in parts)
    table = struct.pack(f"<{len(offsets)}L", *offsets) if bot else b""
    out = [b"\xfe\xff\x00\xe0" + struct.pack("<L", len(table)) + table]
    for parts in fragments:
        out += [b"\xfe\xff\x00\xe0" + struct.pack("<L", len(p)) + p for p in parts]
    return b"".join(out)


def _after_soi(frame: bytes, *segments: bytes) -> bytes:
    assert frame[:2] == b"\xff\xd8"
    return frame[:2] + b"".join(segments) + frame[2:]


def _before_eoi(frame: bytes, *segments: bytes) -> bytes:
    end = frame.rindex(b"\xff\xd9")
    return frame[:end] + b"".join(segments) + frame[end:]


def _exif(text: bytes) -> bytes:
    """An APP1 Exif block whose IFD holds ``text`` as an Artist (0x013B) string."""
    value = text + b"\x00"
    ifd = struct.pack("<H", 1) + struct.pack("<HHLL", 0x013B, 2, len(value), 26) + \
        struct.pack("<L", 0)
    tiff = b"II*\x00" + struct.pack("<L", 8) + ifd + value
    return segment(0xE1, b"Exif\x00\x00" + tiff)


def _read(name: str) -> Dataset:
    return pydicom.dcmread(get_testdata_file(name))


def jpeg_text() -> tuple[Dataset, set[str]]:
    """Baseline JPEG (YCbCr, JFIF-less): a COM and an Exif APP1 before the frame header, an
    ICC-like APP2 and a COM between the scan and EOI."""
    ds = _read("SC_rgb_jpeg_dcmtk.dcm")
    (frame,) = frames_of(ds)
    frame = _after_soi(frame, segment(0xFE, b"PHXJPEGCOM Jane Doe"), _exif(b"PHXJPEGEXIF"))
    frame = _before_eoi(frame, segment(0xE2, b"ICC_PROFILE\x00PHXJPEGICC"),
                        segment(0xFE, b"PHXJPEGTAILCOM"))
    ds.PixelData = encapsulate([frame])
    return ds, {"PHXJPEGCOM", "PHXJPEGEXIF", "PHXJPEGICC", "PHXJPEGTAILCOM"}


def jpeg_adobe() -> tuple[Dataset, set[str]]:
    """RGB baseline JPEG whose APP14 Adobe segment says 'no transform' (decoded colours
    depend on it), with a COM and an APP13 beside it and text after its APP14's fixed
    fields."""
    ds = _read("SC_rgb_jpeg_app14_dcmd.dcm")
    (frame,) = frames_of(ds)
    at = frame.index(b"Adobe") - 4
    assert frame[at:at + 2] == b"\xff\xee"
    length = struct.unpack(">H", frame[at + 2:at + 4])[0]
    payload = frame[at + 4:at + 2 + length] + b"PHXADOBETAIL"
    frame = frame[:at] + segment(0xEE, payload) + frame[at + 2 + length:]
    frame = _after_soi(frame, segment(0xFE, b"PHXADOBECOM"), segment(0xED, b"PHXADOBEAPP13"))
    ds.PixelData = encapsulate([frame])
    return ds, {"PHXADOBETAIL", "PHXADOBECOM", "PHXADOBEAPP13"}


def jpeg_lossless() -> tuple[Dataset, set[str]]:
    """JPEG lossless SV1 (RGB): an APP1 and a JFIF APP0 with a thumbnail holding text."""
    ds = _read("SC_rgb_jpeg_gdcm.dcm")
    (frame,) = frames_of(ds)
    jfif = b"JFIF\x00\x01\x02\x00\x00\x01\x00\x01\x02\x01" + b"PHXJFIFTHUMB"[:6]
    frame = _after_soi(frame, segment(0xE0, jfif), _exif(b"PHXLOSSLESSEXIF"))
    ds.PixelData = encapsulate([frame])
    return ds, {"PHXLOSSLESSEXIF", "PHXJFI"}


def jpeg_ls() -> tuple[Dataset, set[str]]:
    """JPEG-LS lossless (MR): a COM after SOI and an APP1 before EOI."""
    ds = _read("MR_small_jpeg_ls_lossless.dcm")
    (frame,) = frames_of(ds)
    frame = _after_soi(frame, segment(0xFE, b"PHXJLSCOM"))
    frame = _before_eoi(frame, segment(0xE1, b"PHXJLSAPP1"))
    ds.PixelData = encapsulate([frame])
    return ds, {"PHXJLSCOM", "PHXJLSAPP1"}


def _secondary_capture(pixels: bytes, rows: int, cols: int, samples: int, bits: int,
                       syntax: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality = "OT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, cols, samples
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = encapsulate([pixels])
    return ds


def jpeg_ls_mrfx() -> tuple[Dataset, set[str]]:
    """RGB JPEG-LS (CharLS) with the HP1 colour transform declared in an APP8 'mrfx' segment
    (decoders then invert it: dropping it changes the colours), beside a COM."""
    import imagecodecs

    rgb = (np.arange(24 * 20 * 3).reshape(24, 20, 3) * 37 % 251).astype(np.uint8)
    frame = imagecodecs.jpegls_encode(rgb)
    frame = _after_soi(frame, segment(0xE8, b"mrfx\x01"), segment(0xFE, b"PHXMRFXCOM"))
    return _secondary_capture(frame, 24, 20, 3, 8, JPEGLSLossless), {"PHXMRFXCOM"}


def _siz(frame: bytes) -> tuple[int, int]:
    return struct.unpack(">LL", frame[8:16])  # Xsiz, Ysiz (origin 0)


def _insert_tile_com(frame: bytes, tile_part: int, text: bytes) -> bytes:
    """A COM in the header of tile-part ``tile_part`` (its Psot grown to match)."""
    pos = frame.index(b"\xff\x90")
    for _ in range(tile_part):
        psot = struct.unpack(">L", frame[pos + 6:pos + 10])[0]
        pos += psot
        assert frame[pos:pos + 2] == b"\xff\x90"
    com = j2k_com(text)
    psot = struct.unpack(">L", frame[pos + 6:pos + 10])[0]
    sot = frame[pos:pos + 6] + struct.pack(">L", psot + len(com) if psot else 0) + \
        frame[pos + 10:pos + 12]
    return frame[:pos] + sot + com + frame[pos + 12:]


def j2k_text() -> tuple[Dataset, set[str]]:
    """JPEG 2000 (Kakadu's, with its own COM): COMs added in the main header and in the
    tile-part header."""
    ds = _read("JPEG2000.dcm")
    (frame,) = frames_of(ds)
    at = frame.index(b"\xff\x90")
    frame = frame[:at] + j2k_com(b"PHXJ2KMAIN Jane Doe") + frame[at:]
    frame = _insert_tile_com(frame, 0, b"PHXJ2KTILE")
    ds.PixelData = encapsulate([frame])
    return ds, {"PHXJ2KMAIN", "PHXJ2KTILE"}


def j2k_tiles_tlm() -> tuple[Dataset, set[str]]:
    """A 4-tile JPEG 2000 codestream (Pillow/OpenJPEG) with a TLM index of its tile-parts
    and a COM in the third tile-part's header: the TLM must follow the new Psot."""
    from PIL import Image

    grey = (np.add.outer(np.arange(64), np.arange(64) * 3) % 256).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, "JPEG2000", tile_size=(32, 32), no_jp2=True,
                               irreversible=False)
    frame = buf.getvalue()
    frame = _insert_tile_com(frame, 2, b"PHXJ2KTLMTILE")
    # TLM (ST=1: 1-byte tile index, SP=1: 4-byte lengths) of the tile-parts as written
    parts, pos = [], frame.index(b"\xff\x90")
    while frame[pos:pos + 2] == b"\xff\x90":
        isot, psot = struct.unpack(">HL", frame[pos + 4:pos + 10])
        parts.append((isot, psot))
        pos += psot
    body = b"".join(struct.pack(">BL", i, p) for i, p in parts)
    tlm = b"\xff\x55" + struct.pack(">HBB", len(body) + 4, 0, 0x50) + body
    at = frame.index(b"\xff\x90")
    frame = frame[:at] + tlm + frame[at:]
    return _secondary_capture(frame, 64, 64, 1, 8, JPEG2000Lossless), {"PHXJ2KTLMTILE"}


def htj2k_tiles() -> tuple[Dataset, set[str]]:
    """A 16-bit HTJ2K lossless codestream (OpenJPH through imagecodecs: 6 tiles, its own TLM
    and COM) with COMs added in the main header and in the fourth tile-part's header."""
    import imagecodecs

    grey = (np.add.outer(np.arange(64), np.arange(48) * 7) * 37 % 4096).astype(np.uint16)
    frame = imagecodecs.htj2k_encode(grey, tile=(32, 16), tlm=True, reversible=True)
    assert b"\xff\x55" in frame  # a TLM
    frame = _insert_tile_com(frame, 3, b"PHXHTJ2KTILE")
    at = frame.index(b"\xff\x90")
    frame = frame[:at] + j2k_com(b"PHXHTJ2KMAIN") + frame[at:]
    ds = _secondary_capture(frame, 64, 48, 1, 16, "1.2.840.10008.1.2.4.201")
    ds.BitsStored, ds.HighBit = 12, 11
    return ds, {"PHXHTJ2KTILE", "PHXHTJ2KMAIN"}


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">L", 8 + len(body)) + kind + body


def jp2_file() -> tuple[Dataset, set[str]]:
    """A JP2 file (not a bare codestream) around JPEG2000.dcm's codestream, with an XML box
    and a UUID box holding text."""
    ds = _read("JPEG2000.dcm")
    (frame,) = frames_of(ds)
    width, height = _siz(frame)
    ihdr = _box(b"ihdr", struct.pack(">LLHBBBB", height, width, 1,
                                     (int(ds.BitsStored) - 1) | (0x80 if ds.PixelRepresentation
                                                                 else 0), 7, 0, 0))
    colr = _box(b"colr", struct.pack(">BBBL", 1, 0, 0, 17))
    jp2 = (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + _box(b"ftyp", b"jp2 \x00\x00\x00\x00jp2 ") +
           _box(b"jp2h", ihdr + colr) + _box(b"xml ", b"<patient>PHXJP2XML</patient>") +
           _box(b"jp2c", frame) + _box(b"uuid", b"\x11" * 16 + b"PHXJP2UUID"))
    ds.PixelData = encapsulate([jp2])
    return ds, {"PHXJP2XML", "PHXJP2UUID"}


def straddling() -> tuple[Dataset, set[str]]:
    """A COM whose text is cut by a fragment boundary (the frame in two fragments)."""
    ds = _read("SC_rgb_jpeg_dcmtk.dcm")
    (frame,) = frames_of(ds)
    frame = _after_soi(frame, segment(0xFE, b"PHXSTRADDLE:" + b"x" * 40 + b"PHXSTRADDLE2"))
    ds.PixelData = encapsulate([frame], bot=False, split={0: 16})
    return ds, {"PHXSTRADDLE", "PHXSTRADDLE2"}


def multiframe(layout: str) -> tuple[Dataset, set[str]]:
    """examples_ybr_color.dcm (30 JPEG frames) with COMs in frames 0, 7 and 29: ``bot`` (a
    Basic Offset Table, one fragment per frame), ``split`` (no offset table, two fragments
    per frame), ``eot`` (an Extended Offset Table, the Basic one empty)."""
    ds = _read("examples_ybr_color.dcm")
    frames = frames_of(ds)
    for i in (0, 7, 29):
        frames[i] = _after_soi(frames[i], segment(0xFE, f"PHXMULTI{i}COM".encode()))
    frames = [f + b"\x00" * (len(f) & 1) for f in frames]
    if layout == "split":
        ds.PixelData = encapsulate(frames, bot=False,
                                   split={i: 100 + 2 * i for i in range(len(frames))})
    elif layout == "eot":
        ds.PixelData = encapsulate(frames, bot=False)
        offsets, pos = [], 0
        for f in frames:
            offsets.append(pos)
            pos += 8 + len(f)
        ds.ExtendedOffsetTable = struct.pack(f"<{len(frames)}Q", *offsets)
        ds.ExtendedOffsetTableLengths = struct.pack(f"<{len(frames)}Q",
                                                    *(len(f) for f in frames))
    else:
        ds.PixelData = encapsulate(frames)
    return ds, {"PHXMULTI0COM", "PHXMULTI7COM", "PHXMULTI29COM"}


def trailing() -> tuple[Dataset, set[str]]:
    """Text after a JPEG-LS frame's EOI, inside its fragment."""
    ds = _read("MR_small_jpeg_ls_lossless.dcm")
    (frame,) = frames_of(ds)
    ds.PixelData = encapsulate([frame + b"PHXAFTEREOI!"])
    return ds, {"PHXAFTEREOI"}


#: name -> builder of (data set with text in its Pixel Data, the planted markers)
CASES = {
    "JPEG COM, Exif, ICC": jpeg_text,
    "JPEG beside Adobe APP14": jpeg_adobe,
    "JPEG lossless JFIF thumbnail": jpeg_lossless,
    "JPEG-LS COM and APP1": jpeg_ls,
    "JPEG-LS beside mrfx": jpeg_ls_mrfx,
    "J2K main and tile-part COM": j2k_text,
    "J2K tiles with TLM": j2k_tiles_tlm,
    "HTJ2K tiles, its TLM": htj2k_tiles,
    "JP2 file boxes": jp2_file,
    "COM straddling fragments": straddling,
    "multi-frame BOT": lambda: multiframe("bot"),
    "multi-frame split no BOT": lambda: multiframe("split"),
    "multi-frame EOT": lambda: multiframe("eot"),
    "data after EOI": trailing,
}


def write(ds: Dataset, path) -> bytes:
    ds.save_as(path, enforce_file_format=True)
    with open(path, "rb") as f:
        return f.read()
