"""Text inside compressed Pixel Data: found and removed without decoding a pixel.

Codec bitstreams carry free text and metadata a scanner or PACS may fill with identity:
JPEG and JPEG-LS comment (``COM``) and application (``APPn``: Exif, ICC, thumbnails, vendor
blocks) segments, JPEG 2000 comments (``COM``) in the main and tile-part headers, and the
boxes of a JP2 file wrapped around a codestream. :func:`clean_pixel_data` takes the value of
encapsulated Pixel Data (its items, PS3.5 A.4), finds the frames, and removes these:

* JPEG (every process, T.81 B.1.1) and JPEG-LS (T.87): ``COM`` and ``APPn`` segments, wherever
  they are (before the frame header, between scans). Kept, because dropping them changes the
  decoded colours: JPEG's APP14 ``Adobe`` (RGB or YCbCr) and APP0 ``JFIF`` (libjpeg then
  assumes YCbCr), each cut to its fixed fields (no thumbnail); JPEG-LS' APP8 ``mrfx`` (CharLS'
  HP colour transform), cut to its one transform byte.
* JPEG 2000 and HTJ2K (T.800 A): ``COM`` in the main header and in every tile-part header
  (``Psot`` hops from tile-part to tile-part; a changed tile-part gets its new ``Psot`` and
  ``TLM`` entry). A JP2 file keeps its signature, ``ftyp`` and ``jp2h`` boxes (colour and
  palette, which decoders apply) and its cleaned codestream; every other box goes.
* Anything after a frame's end-of-image marker but zero padding.

Only marker segments are parsed; entropy-coded data is skipped by searching the next marker
(JPEG) or by the tile-part lengths (JPEG 2000), never decoded. A frame may span fragments and
a segment may straddle two: the frames are the fragments joined, cut where each codestream
ends (and checked against the Basic Offset Table when there is one). When something is
removed the value is rebuilt with one fragment per frame (even lengths) and a new Basic
Offset Table (empty when the data set has an Extended Offset Table, whose new values are
returned); when nothing is, the value is returned unchanged. A bitstream that cannot be
parsed raises :class:`PixelTextError`: it is never copied unexamined.

RLE and deflated frames hold no text. Video (MPEG-2, MPEG-4, HEVC), JPEG XL and syntaxes not
known here cannot be cleaned (:func:`policy` says ``"refuse"``), nor can encapsulated Pixel
Data under a native syntax (a file that says Explicit VR Little Endian, or has no file meta,
around compressed frames of an unknown codec): de-identification refuses such files unless
asked to copy them as they are.

Private: the pydicom path (:mod:`napari_dicomtools.core.anonymize`) and the byte path
(``_anonfast``) both call it, so that they write the same bytes. Imports no pydicom.
"""

from __future__ import annotations

import re
import struct
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ._encap import (
    EXTENDED_OFFSET_TABLE,
    EXTENDED_OFFSET_TABLE_LENGTHS,
    PIXEL_DATA,
    EncapsulationError,
    encapsulate,
    offset_table,
    split,
    walk,
)
from ._syntaxes import (
    DEFLATED_IMAGE_FRAME,
    ENCAPSULATED_UNCOMPRESSED,
    H264,
    HEVC,
    HTJ2K,
    JPEG,
    JPEG_2000,
    JPEG_2000_PART2,
    JPEG_LS,
    JPEG_XL,
    MPEG2,
    RLE,
)

__all__: list[str] = []

#: syntaxes whose frames are JPEG (T.81) or JPEG-LS (T.87) codestreams: their COM and APPn
#: segments are cleaned
_JPEG_FAMILY = JPEG | JPEG_LS
#: syntaxes whose frames are JPEG 2000 codestreams or JP2 files (Part 1, Part 2, HTJ2K):
#: their COM segments and JP2 boxes are cleaned
_J2K_FAMILY = JPEG_2000 | JPEG_2000_PART2 | HTJ2K
#: encapsulated syntaxes whose frames hold no text: RLE, Deflated Image Frame Compression,
#: Encapsulated Uncompressed Explicit VR Little Endian
NO_TEXT = frozenset({RLE, DEFLATED_IMAGE_FRAME, ENCAPSULATED_UNCOMPRESSED})
#: names of the syntaxes that cannot be cleaned, for messages
_UNCLEANABLE = {
    **dict.fromkeys(MPEG2, "MPEG-2 video"), **dict.fromkeys(H264, "MPEG-4 AVC/H.264 video"),
    **dict.fromkeys(HEVC, "HEVC/H.265 video"), **dict.fromkeys(JPEG_XL, "JPEG XL"),
}

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">L")
#: a JPEG marker inside entropy-coded data: 0xFF then neither stuffing (00), RSTn nor fill
_JPEG_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")
#: the same in JPEG-LS, whose bit stuffing follows 0xFF with a byte below 0x80 (T.87 A.1)
_JLS_MARKER = re.compile(rb"\xff[\x80-\xcf\xd8-\xfe]")
_EOC = re.compile(rb"\xff\xd9")
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
#: JP2 boxes kept: signature, file type, header (colour, palette, channel definitions)
_JP2_KEPT = frozenset({b"jP  ", b"ftyp", b"jp2h"})


#: a codestream parser: (buffer, start, codec name, removed counts) -> (kept pieces, end)
_Parser = Callable[[memoryview, int, str, dict[str, int]], tuple[list[memoryview], int]]


class PixelTextError(ValueError):
    """A compressed bitstream that cannot be parsed (the message says where and why)."""


class PixelTextWarning(UserWarning):
    """Text removed from Pixel Data, or Pixel Data copied that could not be cleaned."""


@dataclass
class Cleaned:
    """What :func:`clean_pixel_data` did.

    Parameters
    ----------
    value : bytes
        The encapsulated value (items, no sequence delimiter): the input itself when nothing
        was removed.
    removed : dict of str to int
        Count per kind of what was removed (``{"JPEG COM segment": 2}``), empty when nothing.
    offsets : tuple of int
        When rebuilt: each frame's offset from the first fragment's item tag (the Extended
        Offset Table's values); else empty.
    lengths : tuple of int
        When rebuilt: each frame's length (its fragment's, padding included); else empty.
    """

    value: bytes | memoryview
    removed: dict[str, int] = field(default_factory=dict)
    offsets: tuple[int, ...] = ()
    lengths: tuple[int, ...] = ()

    def new_values(self) -> dict[int, bytes | memoryview]:
        """The values of a rebuilt value's elements by tag: Pixel Data, and the Extended
        Offset Table and its Lengths for its frames (both de-identification paths write
        these two only where the data set has them).

        Returns
        -------
        dict of int to bytes or memoryview
            ``{0x7FE00010: value, 0x7FE00001: offsets, 0x7FE00002: lengths}``, the tables
            as 64-bit little-endian integers.
        """
        return {PIXEL_DATA: self.value, EXTENDED_OFFSET_TABLE: offset_table(self.offsets),
                EXTENDED_OFFSET_TABLE_LENGTHS: offset_table(self.lengths)}


def policy(transfer_syntax: str) -> Literal["clean", "none", "refuse"]:
    """What de-identification does with encapsulated Pixel Data in ``transfer_syntax``:
    ``"clean"`` (JPEG, JPEG-LS, JPEG 2000), ``"none"`` (RLE, deflated frames: no text),
    ``"refuse"`` (video, JPEG XL, unknown syntaxes: text cannot be found)."""
    ts = str(transfer_syntax).strip().rstrip("\x00")
    if ts in _JPEG_FAMILY or ts in _J2K_FAMILY:
        return "clean"
    return "none" if ts in NO_TEXT else "refuse"


def syntax_name(transfer_syntax: str) -> str:
    """A short name of a syntax :func:`policy` refuses, for messages."""
    ts = str(transfer_syntax).strip().rstrip("\x00")
    return _UNCLEANABLE.get(ts, f"transfer syntax {ts or '(none)'}")


def frame_count(text: str) -> int:
    """Number of Frames (0028,0008) from its text ('' means one frame).

    Raises
    ------
    PixelTextError
        Not one positive integer.
    """
    text = text.strip()
    if not text:
        return 1
    try:
        n = int(text)
    except ValueError:
        raise PixelTextError(f"Number of Frames {text[:20]!r} is not a number") from None
    if n < 1:
        raise PixelTextError(f"Number of Frames is {n}")
    return n


def summary(removed: dict[str, int]) -> str:
    """``"2 JPEG COM segments, 1 JPEG APP1 segment"``: the removed kinds and their counts."""
    parts = []
    for kind, n in sorted(removed.items()):
        plural = kind + ("es" if kind.endswith("box") else "s")
        parts.append(f"{n} {kind if n == 1 else plural}")
    return ", ".join(parts)


def clean_pixel_data(value: bytes | memoryview, transfer_syntax: str, frames: int,
                     extended: bool = False, *,
                     walked: list[memoryview] | None = None) -> Cleaned:
    """Remove the text segments of every frame of encapsulated Pixel Data.

    Parameters
    ----------
    value : bytes or memoryview
        The value of (7FE0,0010): its items (Basic Offset Table, fragments), without the
        sequence delimiter.
    transfer_syntax : str
        The file's transfer syntax UID.
    frames : int
        Number of Frames.
    extended : bool
        The data set has an Extended Offset Table: a rebuilt value then has an empty Basic
        Offset Table (PS3.5 A.4) and the caller writes ``offsets``/``lengths`` into it.
    walked : list of memoryview, optional
        The values of ``value``'s items as ``_encap.walk`` found them, when the
        caller walked them already (the byte path, while tokenizing the file): they are
        not walked again.

    Returns
    -------
    Cleaned
        The value (unchanged when nothing was removed) and what was removed.

    Raises
    ------
    PixelTextError
        The items or a frame's bitstream cannot be parsed, or hold another number of
        frames.
    """
    kind = policy(transfer_syntax)
    if kind != "clean":
        return Cleaned(value)
    try:
        bot, fragments = split(walk(memoryview(value)) if walked is None else walked)
    except EncapsulationError as exc:
        raise PixelTextError(str(exc)) from None
    parse = _j2k_frame if transfer_syntax in _J2K_FAMILY else _jpeg_frame
    codec = "JPEG-LS" if transfer_syntax in JPEG_LS else "JPEG"
    removed: dict[str, int] = {}
    if len(fragments) == frames:  # one fragment per frame, the usual layout: no copy
        groups = [[f] for f in fragments]
    else:  # frames spanning fragments: cut where each codestream ends
        groups = [fragments]
    starts: list[int] = []
    kept: list[list[memoryview]] = []  # each frame's kept pieces
    base = 0
    for group in groups:
        starts += (base + at for at in _frames(group, parse, codec, removed, kept))
        base += sum(len(f) for f in group)
    _check_frames(starts, fragments, bot, frames)
    if not removed:
        return Cleaned(value)
    return _rebuilt(kept, removed, bool(len(bot)) or frames > 1, extended)


def _frames(fragments: list[memoryview], parse: _Parser, codec: str,
            removed: dict[str, int], kept: list[list[memoryview]]) -> list[int]:
    """Parse the codestreams in ``fragments`` (joined) one after the other, each from a
    fragment's start to the end of the fragment where it ends (the rest must be padding);
    their kept pieces go to ``kept``; returns where each starts."""
    buf = fragments[0] if len(fragments) == 1 else memoryview(b"".join(fragments))
    ends = []
    pos = 0
    for frag in fragments:
        pos += len(frag)
        ends.append(pos)
    starts: list[int] = []
    start = 0
    while start < len(buf):
        starts.append(start)
        pieces, end = parse(buf, start, codec, removed)
        boundary = ends[bisect_left(ends, end)]  # the frame's last fragment ends here
        _trailing(buf[end:boundary], removed)
        kept.append(pieces)
        start = boundary
    return starts


def _check_frames(starts: list[int], fragments: list[memoryview], bot: memoryview,
                  frames: int) -> None:
    """The codestreams found are the frames declared, starting where the Basic Offset Table
    (when not empty) says."""
    if len(starts) != frames:
        raise PixelTextError(f"{len(starts)} codestreams for {frames} frame(s)")
    if not len(bot):
        return
    if len(bot) != 4 * frames:
        raise PixelTextError(f"a Basic Offset Table of {len(bot) // 4} entries for "
                             f"{frames} frame(s)")
    # item offsets (headers counted) of the fragments each frame starts with
    offset_of: dict[int, int] = {}
    data = item = 0
    for frag in fragments:
        offset_of[data] = item
        data += len(frag)
        item += 8 + len(frag)
    table = struct.unpack(f"<{frames}L", bot)
    if tuple(offset_of[s] for s in starts) != table:
        raise PixelTextError("the Basic Offset Table disagrees with the frames' codestreams")


def _trailing(tail: memoryview, removed: dict[str, int]) -> None:
    """Bytes between a codestream's end and its last fragment's end: padding (zeros, or 0xFF
    fill) is dropped quietly, anything else counted as removed data."""
    if len(tail) and bytes(tail).strip(b"\x00\xff"):
        _count(removed, "trailing data block")


def _rebuilt(frames: list[list[memoryview]], removed: dict[str, int], with_bot: bool,
             extended: bool) -> Cleaned:
    """The value with one even-length fragment per frame (each frame the pieces kept of it),
    its Basic Offset Table (empty with an Extended Offset Table) and the frames' offsets and
    lengths."""
    value, offsets, lengths = encapsulate(frames, basic_table=with_bot and not extended)
    return Cleaned(value, removed, offsets, lengths)


def _join(pieces: list[memoryview]) -> bytes:
    return pieces[0].tobytes() if len(pieces) == 1 else b"".join(pieces)


def _count(removed: dict[str, int], kind: str) -> None:
    removed[kind] = removed.get(kind, 0) + 1


# --- JPEG and JPEG-LS ----------------------------------------------------------------------

def _jpeg_frame(buf: memoryview, start: int, codec: str,
                removed: dict[str, int]) -> tuple[list[memoryview], int]:
    """The kept pieces of the JPEG (or JPEG-LS) codestream at ``buf[start]`` and where it
    ends (after EOI, or at the end of ``buf`` for a codestream without one)."""
    if buf[start:start + 2].tobytes() != b"\xff\xd8":
        raise PixelTextError(f"a {codec} frame that does not start with SOI (byte {start})")
    finder = _JLS_MARKER if codec == "JPEG-LS" else _JPEG_MARKER
    pieces: list[memoryview] = []
    keep = start  # start of the bytes not yet handed to pieces
    pos = start + 2
    end = len(buf)
    while True:
        while pos < end and buf[pos] == 0xFF and pos + 1 < end and buf[pos + 1] == 0xFF:
            pos += 1  # fill bytes before a marker
        if pos + 2 > end:
            if pos == end:
                break  # no EOI: the codestream ends with the data
            raise PixelTextError(f"{codec} codestream truncated at byte {pos}")
        if buf[pos] != 0xFF:
            raise PixelTextError(f"{codec}: no marker at byte {pos} (0x{buf[pos]:02X})")
        code = buf[pos + 1]
        if code == 0xD9:  # EOI
            pos += 2
            break
        if code == 0x01 or 0xD0 <= code <= 0xD7:  # TEM, RSTn: no length
            pos += 2
            continue
        if code == 0xD8:
            raise PixelTextError(f"{codec}: a second SOI at byte {pos} (a frame without EOI)")
        seg_end = _segment_end(buf, pos, codec)
        new = _jpeg_segment(buf, pos, seg_end, code, codec, removed)
        if new is not None:  # dropped or shortened
            pieces.append(buf[keep:pos])
            if len(new):
                pieces.append(memoryview(new))
            keep = seg_end
        pos = seg_end
        if code == 0xDA:  # SOS: entropy-coded data up to the next marker
            m = finder.search(buf, pos)
            pos = m.start() if m is not None else end
    pieces.append(buf[keep:pos])
    return pieces, pos


def _segment_end(buf: memoryview, pos: int, codec: str) -> int:
    if pos + 4 > len(buf):
        raise PixelTextError(f"{codec} marker segment truncated at byte {pos}")
    length = _U16.unpack_from(buf, pos + 2)[0]
    if length < 2 or pos + 2 + length > len(buf):
        raise PixelTextError(f"{codec} marker 0xFF{buf[pos + 1]:02X} at byte {pos}: a length "
                             f"of {length} runs past the data")
    return int(pos + 2 + length)


def _jpeg_segment(buf: memoryview, pos: int, seg_end: int, code: int, codec: str,
                  removed: dict[str, int]) -> bytes | None:
    """None to keep the segment as it is, else its replacement (b"" drops it)."""
    if code == 0xFE:
        _count(removed, f"{codec} COM segment")
        return b""
    if not 0xE0 <= code <= 0xEF:
        return None
    payload = bytes(buf[pos + 4:seg_end])
    fixed = _fixed_app(code, payload, codec)
    if fixed is None:
        _count(removed, f"{codec} APP{code - 0xE0} segment")
        return b""
    if fixed == payload:
        return None
    _count(removed, f"{codec} APP{code - 0xE0} segment tail")  # a thumbnail, trailing bytes
    return b"\xff" + bytes((code,)) + _U16.pack(len(fixed) + 2) + fixed


def _fixed_app(code: int, payload: bytes, codec: str) -> bytes | None:
    """The fixed fields of an application segment decoders read (None: not one of those).
    A short one is kept whole (decoders ignore it, as libjpeg does an APP14 under 12
    bytes, but it is not ours to judge)."""
    if codec == "JPEG-LS":
        if code == 0xE8 and payload[:4] == b"mrfx":
            return payload[:5]  # CharLS: 'mrfx' and the HP colour transform
        return None
    if code == 0xEE and payload[:5] == b"Adobe":
        return payload[:12]  # version, flags0, flags1, colour transform
    if code == 0xE0 and payload[:5] == b"JFIF\x00":
        if len(payload) < 14:
            return payload
        return payload[:12] + b"\x00\x00"  # version, units, densities; no thumbnail
    return None


# --- JPEG 2000 ----------------------------------------------------------------------------

def _j2k_frame(buf: memoryview, start: int, codec: str,
               removed: dict[str, int]) -> tuple[list[memoryview], int]:
    """The kept pieces of the JPEG 2000 codestream (or JP2 file) at ``buf[start]`` and where
    it ends."""
    if buf[start:start + 12].tobytes() == _JP2_SIGNATURE:
        return _jp2_file(buf, start, removed)
    return _codestream(buf, start, len(buf), removed)


def _codestream(buf: memoryview, start: int, limit: int,
                removed: dict[str, int]) -> tuple[list[memoryview], int]:
    """A J2K codestream from ``start`` (SOC) to its EOC (or ``limit``): the main header's and
    the tile-part headers' COM segments removed, the Psot and TLM of changed tile-parts
    updated."""
    if buf[start:start + 2].tobytes() != b"\xff\x4f":
        raise PixelTextError(f"a JPEG 2000 frame that does not start with SOC (byte {start})")
    pieces: list[memoryview] = []
    pos, keep, tlm = _main_header(buf, start + 2, limit, pieces, start, removed)
    tile_lengths: list[tuple[int, int]] = []  # (tile-part index, new Psot) when changed
    index = 0
    while True:
        if pos + 2 > limit:
            if pos == limit:
                break  # no EOC
            raise PixelTextError(f"JPEG 2000 codestream truncated at byte {pos}")
        code = _U16.unpack_from(buf, pos)[0]
        if code == 0xFFD9:  # EOC
            pos += 2
            break
        if code != 0xFF90:
            raise PixelTextError(f"JPEG 2000: 0x{code:04X} at byte {pos} where a tile-part "
                                 "(SOT) or EOC belongs")
        pieces.append(buf[keep:pos])
        tile, pos = _tile_part(buf, pos, limit, removed)
        pieces.extend(tile[0])
        if tile[1] is not None:
            tile_lengths.append((index, tile[1]))
        keep = pos
        index += 1
    pieces.append(buf[keep:pos])
    if tile_lengths and tlm:
        _update_tlm(pieces, tlm, tile_lengths, index)
    return pieces, pos


def _main_header(buf: memoryview, pos: int, limit: int, pieces: list[memoryview], keep: int,
                 removed: dict[str, int]) -> tuple[int, int, list[tuple[int, int]]]:
    """Walk the main header to the first SOT: COM dropped; returns (position of SOT, start
    of the bytes not yet in ``pieces``, the TLM segments as (piece index, start))."""
    tlm: list[tuple[int, int]] = []
    while True:
        if pos + 4 > limit:
            raise PixelTextError(f"JPEG 2000 main header truncated at byte {pos}")
        code, length = struct.unpack_from(">HH", buf, pos)
        if code == 0xFF90:
            return pos, keep, tlm
        if code >> 8 != 0xFF or length < 2 or pos + 2 + length > limit:
            raise PixelTextError(f"JPEG 2000: a bad main-header marker 0x{code:04X} at "
                                 f"byte {pos}")
        seg_end = pos + 2 + length
        if code == 0xFF64:  # COM
            pieces.append(buf[keep:pos])
            keep = seg_end
            _count(removed, "JPEG 2000 COM segment")
        elif code == 0xFF55:  # TLM: its entries are rewritten when tile-parts change
            pieces.append(buf[keep:pos])
            pieces.append(buf[pos:seg_end])
            tlm.append((len(pieces) - 1, pos))
            keep = seg_end
        pos = seg_end


def _tile_part(buf: memoryview, sot: int, limit: int, removed: dict[str, int]
               ) -> tuple[tuple[list[memoryview], int | None], int]:
    """((kept pieces, new Psot or None when unchanged), end) of the tile-part at ``sot``."""
    if sot + 12 > limit or _U16.unpack_from(buf, sot + 2)[0] != 10:
        raise PixelTextError(f"JPEG 2000: a bad SOT segment at byte {sot}")
    psot = _U32.unpack_from(buf, sot + 6)[0]
    if psot == 0:  # the last tile-part: to the EOC (which packet data cannot contain)
        m = _EOC.search(buf, sot, limit)
        end = m.start() if m is not None else limit
    else:
        end = sot + psot
        if psot < 14 or end > limit:
            raise PixelTextError(f"JPEG 2000: a tile-part of {psot} bytes at byte {sot} runs "
                                 "past the data")
    pieces: list[memoryview] = []
    keep, pos, dropped = sot + 12, sot + 12, 0
    while True:
        if pos + 2 > end:
            raise PixelTextError(f"JPEG 2000: tile-part header without SOD at byte {pos}")
        code = _U16.unpack_from(buf, pos)[0]
        if code == 0xFF93:  # SOD: the packet data follows, to the tile-part's end
            break
        if pos + 4 > end:
            raise PixelTextError(f"JPEG 2000: tile-part header truncated at byte {pos}")
        length = _U16.unpack_from(buf, pos + 2)[0]
        if code >> 8 != 0xFF or length < 2 or pos + 2 + length > end:
            raise PixelTextError(f"JPEG 2000: a bad tile-part marker 0x{code:04X} at "
                                 f"byte {pos}")
        if code == 0xFF64:
            pieces.append(buf[keep:pos])
            keep = pos + 2 + length
            dropped += 2 + length
            _count(removed, "JPEG 2000 COM segment")
        pos += 2 + length
    if not dropped:
        return ([buf[sot:end]], None), end
    new_psot = psot - dropped if psot else 0
    sot_segment = bytes(buf[sot:sot + 6]) + _U32.pack(new_psot) + bytes(buf[sot + 10:sot + 12])
    return ([memoryview(sot_segment), *pieces, buf[keep:end]], new_psot), end


def _update_tlm(pieces: list[memoryview], tlm: list[tuple[int, int]],
                changed: list[tuple[int, int]], count: int) -> None:
    """Rewrite the Ptlm of changed tile-parts in the TLM segments (in ``pieces``)."""
    entries: list[tuple[int, int, int]] = []  # (piece index, offset in it, Ptlm size)
    for index, _start in tlm:
        seg = pieces[index]
        stlm = seg[5]
        st, sp = (stlm >> 4) & 3, (stlm >> 6) & 1
        if st == 3:
            raise PixelTextError("JPEG 2000: a TLM with a reserved ST")
        size = st + (4 if sp else 2)
        n = (len(seg) - 6) // size
        if n * size != len(seg) - 6:
            raise PixelTextError("JPEG 2000: a TLM whose length is not its entries'")
        entries += [(index, 6 + k * size + st, 4 if sp else 2) for k in range(n)]
    if len(entries) != count:
        raise PixelTextError(f"JPEG 2000: a TLM of {len(entries)} tile-parts for {count}")
    edits: dict[int, bytearray] = {}
    for part, psot in changed:
        index, offset, size = entries[part]
        edited = edits.setdefault(index, bytearray(pieces[index]))
        if psot == 0 or psot >= 1 << (8 * size):
            raise PixelTextError("JPEG 2000: a TLM entry that cannot hold the new length")
        edited[offset:offset + size] = psot.to_bytes(size, "big")
    for index, edited in edits.items():
        pieces[index] = memoryview(bytes(edited))


def _jp2_file(buf: memoryview, start: int,
              removed: dict[str, int]) -> tuple[list[memoryview], int]:
    """A JP2 file: the signature, ftyp and jp2h boxes kept, the codestream box cleaned,
    every other box removed."""
    pieces: list[memoryview] = []
    pos, end = start, len(buf)
    found = False
    while pos < end:
        if pos + 8 > end or (found and buf[pos + 4:pos + 8].tobytes() == b"jP  "):
            break  # padding (judged by the caller), or the next frame's file
        size = _U32.unpack_from(buf, pos)[0]
        box = bytes(buf[pos + 4:pos + 8])
        head = 8
        if size == 1:
            if pos + 16 > end:
                raise PixelTextError(f"JP2: a box header truncated at byte {pos}")
            size = struct.unpack_from(">Q", buf, pos + 8)[0]
            head = 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            raise PixelTextError(f"JP2: box {box!r} at byte {pos} runs past the data")
        if box == b"jp2c":
            inner, stop = _codestream(buf, pos + head, pos + size, removed)
            _trailing(buf[stop:pos + size], removed)
            body = _join(inner)
            changed = len(body) != size - head
            if changed:
                pieces.append(memoryview(_U32.pack(8 + len(body)) + b"jp2c"))
                pieces.append(memoryview(body))
            else:
                pieces.append(buf[pos:pos + size])
            found = True
        elif box in _JP2_KEPT:
            pieces.append(buf[pos:pos + size])
        else:
            _count(removed, f"JP2 {box.decode('latin-1')!r} box")
        pos += size
    if not found:
        raise PixelTextError("JP2 file without a codestream box")
    return pieces, pos


# --- what de-identification does with a file's Pixel Data (both paths) -------------------

def deidentify_pixels(value: bytes | memoryview, transfer_syntax: str, frames_text: str, *,
                      undefined: bool, extended: bool, keep_uncleanable: bool,
                      source: str, walked: list[memoryview] | None = None,
                      ) -> tuple[Cleaned | None, str | None]:
    """What de-identification does with one file's Pixel Data: the rules both paths share.

    Parameters
    ----------
    value : bytes or memoryview
        The value of (7FE0,0010) as read.
    transfer_syntax : str
        The file's transfer syntax UID.
    frames_text : str
        Number of Frames (0028,0008) as written ('' when absent).
    undefined : bool
        Pixel Data has an undefined length (encapsulated).
    extended : bool
        The data set has an Extended Offset Table.
    keep_uncleanable : bool
        Copy Pixel Data that cannot be cleaned (video ...) instead of refusing the file.
    source : str
        The file, for messages.
    walked : list of memoryview, optional
        The value's items, when the caller walked them already (see
        ``clean_pixel_data``).

    Returns
    -------
    tuple
        ``(Cleaned or None, message or None)``: None when the value stays as read; the
        message (what was removed, or that uncleanable data was copied) for the report.

    Raises
    ------
    DicomToolsError
        The bitstream cannot be parsed, or cannot be cleaned and ``keep_uncleanable`` is
        off: the file is not written.
    """
    from .errors import DicomToolsError

    ts = str(transfer_syntax).strip().rstrip("\x00")
    kind = policy(ts)
    if kind == "none" or (kind == "refuse" and ts not in _UNCLEANABLE and not undefined):
        return None, None  # no text, or native data (under a native or unknown syntax)
    # undefined length under a syntax that cannot be cleaned: video, JPEG XL, or frames of
    # an unknown codec (an unknown syntax, or a native one whose Pixel Data is encapsulated)
    name = source or "dataset"
    if kind == "refuse":
        if not keep_uncleanable:
            raise DicomToolsError(source or None, f"Pixel Data in {syntax_name(ts)}: text in "
                                  "its bitstream cannot be removed; not written (keep "
                                  "uncleanable pixels to copy it as is)")
        return None, (f"{name}: Pixel Data in {syntax_name(ts)} copied as is: its bitstream "
                      "may hold text that cannot be removed")
    try:
        cleaned = clean_pixel_data(value, ts, frame_count(frames_text), extended,
                                   walked=walked)
    except PixelTextError as exc:
        raise DicomToolsError(source or None, f"Pixel Data could not be searched for text "
                              f"({exc}); not written") from None
    if not cleaned.removed:
        return None, None
    return cleaned, f"{name}: removed {summary(cleaned.removed)} from Pixel Data"
