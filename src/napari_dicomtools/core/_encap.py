"""Encapsulated Pixel Data (PS3.5 A.4): its items walked, and a value built again.

The value of an encapsulated (7FE0,0010) is a run of items (tag FFFE,E000, a 32-bit length,
the bytes): the Basic Offset Table (possibly empty), then the fragments of the frames, then
the sequence delimiter (FFFE,E0DD) when read from a file. Neutral ground for the modules
that read compressed frames (``_decode``) and those that rewrite them (``_pixeltext`` for
de-identification, whose byte path ``_anonfast`` walks the items once and hands them over),
so that a codec module does not import a de-identification one, nor the reverse. Imports
no pydicom.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

__all__ = ["EXTENDED_OFFSET_TABLE", "EXTENDED_OFFSET_TABLE_LENGTHS", "PIXEL_DATA",
           "EncapsulationError", "encapsulate", "items", "offset_table", "split", "walk"]

#: an item's tag as written (little endian), and the sequence delimiter's
ITEM = b"\xfe\xff\x00\xe0"
DELIMITER = b"\xfe\xff\xdd\xe0"
#: the elements of encapsulated frames: Pixel Data, Extended Offset Table (each frame's
#: offset, 64 bits) and Extended Offset Table Lengths (each frame's length)
PIXEL_DATA, EXTENDED_OFFSET_TABLE, EXTENDED_OFFSET_TABLE_LENGTHS = \
    0x7FE00010, 0x7FE00001, 0x7FE00002
_LE32 = struct.Struct("<L")


class EncapsulationError(ValueError):
    """Items of encapsulated Pixel Data that cannot be walked (the message says where)."""


def walk(value: memoryview, *, delimited: bool = False) -> list[memoryview]:
    """The values of the items of encapsulated Pixel Data, as views of ``value``.

    Parameters
    ----------
    value : memoryview
        The bytes from the first item on.
    delimited : bool
        Stop at the sequence delimiter (what follows it is ignored: the decoder reads a frame
        from a file's tail this way); without it the items run to the end of ``value``.

    Returns
    -------
    list of memoryview
        Each item's value in order (the Basic Offset Table first); none required.

    Raises
    ------
    EncapsulationError
        Something else than an item, an item of undefined length or running past the data,
        a truncated item, or (with ``delimited``) no delimiter.

    Examples
    --------
    >>> value = ITEM + b"\\0\\0\\0\\0" + ITEM + b"\\2\\0\\0\\0ab" + DELIMITER + b"\\0" * 4
    >>> [bytes(v) for v in walk(memoryview(value), delimited=True)]
    [b'', b'ab']
    """
    found: list[memoryview] = []
    pos, end = 0, len(value)
    while True:
        if pos == end and not delimited:
            return found
        if end - pos < 8:
            raise EncapsulationError("encapsulated Pixel Data ends without a sequence "
                                     "delimiter" if delimited else
                                     f"a truncated item at byte {pos}")
        head = value[pos:pos + 4].tobytes()
        length = _LE32.unpack_from(value, pos + 4)[0]
        if delimited and head == DELIMITER:
            return found
        if head != ITEM or length == 0xFFFFFFFF or length > end - pos - 8:
            raise EncapsulationError(f"a bad encapsulated item at byte {pos} ({head.hex()}, "
                                     f"{length} bytes)")
        found.append(value[pos + 8:pos + 8 + length])
        pos += 8 + length


def split(walked: list[memoryview]) -> tuple[memoryview, list[memoryview]]:
    """The Basic Offset Table and the fragments of items ``walk`` found.

    Parameters
    ----------
    walked : list of memoryview
        The items' values, in order.

    Returns
    -------
    memoryview
        The Basic Offset Table (empty when the frames have none).
    list of memoryview
        The fragments, at least one.

    Raises
    ------
    EncapsulationError
        No fragment.

    Examples
    --------
    >>> table, fragments = split([memoryview(b""), memoryview(b"ab")])
    >>> len(table), [bytes(f) for f in fragments]
    (0, [b'ab'])
    """
    if len(walked) < 2:
        raise EncapsulationError("encapsulated Pixel Data holds no fragment")
    return walked[0], walked[1:]


def items(value: memoryview, *, delimited: bool = False
          ) -> tuple[memoryview, list[memoryview]]:
    """The Basic Offset Table and the fragments of encapsulated Pixel Data, as views of
    ``value``: ``walk`` then ``split``.

    Parameters
    ----------
    value : memoryview
        The bytes from the first item on.
    delimited : bool
        Stop at the sequence delimiter (else the items run to the end of ``value``).

    Returns
    -------
    tuple of memoryview and list of memoryview
        What ``split`` returns: the table, and at least one fragment.

    Raises
    ------
    EncapsulationError
        The items cannot be walked, or hold no fragment.

    Examples
    --------
    >>> value = encapsulate([[b"abc"]], basic_table=True)[0]
    >>> table, fragments = items(memoryview(value))
    >>> bytes(table), [bytes(f) for f in fragments]
    (b'\\x00\\x00\\x00\\x00', [b'abc\\x00'])
    """
    return split(walk(value, delimited=delimited))


def encapsulate(frames: Sequence[Sequence[bytes | memoryview]], *, basic_table: bool
                ) -> tuple[bytes, tuple[int, ...], tuple[int, ...]]:
    """Encapsulated Pixel Data with one fragment per frame, each padded to even length.

    Parameters
    ----------
    frames : sequence of sequences of bytes-like
        Each frame's bytes, in pieces that are joined (copied once, here).
    basic_table : bool
        Fill the Basic Offset Table; it stays empty without, or when an offset exceeds 32
        bits (PS3.5 A.4: then an Extended Offset Table is needed).

    Returns
    -------
    bytes
        The value: its items, without the sequence delimiter.
    tuple of int
        Each frame's offset from the first fragment's item tag (the Basic and the Extended
        Offset Table's values).
    tuple of int
        Each frame's length: its fragment's, padding included (the Extended Offset Table
        Lengths' values).

    Examples
    --------
    >>> value, offsets, lengths = encapsulate([[b"abc"], [b"de", b"f"]], basic_table=True)
    >>> offsets, lengths, len(value)
    ((0, 12), (4, 4), 40)
    """
    offsets: list[int] = []
    lengths: list[int] = []
    body: list[bytes | memoryview] = []
    pos = 0
    for pieces in frames:
        n = sum(len(p) for p in pieces)
        pad = n & 1  # PS3.5 A.4: an odd fragment gets one trailing NUL
        offsets.append(pos)
        lengths.append(n + pad)
        body += (ITEM, _LE32.pack(n + pad), *pieces, b"\x00" * pad)
        pos += 8 + n + pad
    table = b""
    if basic_table and offsets and offsets[-1] <= 0xFFFFFFFF:
        table = struct.pack(f"<{len(offsets)}L", *offsets)
    value = b"".join([ITEM, _LE32.pack(len(table)), table, *body])
    return value, tuple(offsets), tuple(lengths)


def offset_table(values: Sequence[int]) -> bytes:
    """An Extended Offset Table (7FE0,0001) or Extended Offset Table Lengths (7FE0,0002)
    value: 64-bit little-endian integers.

    Parameters
    ----------
    values : sequence of int
        The frames' offsets, or their lengths (as ``encapsulate`` returns them).

    Returns
    -------
    bytes
        Eight bytes a value.

    Examples
    --------
    >>> offset_table((0, 12)).hex()
    '00000000000000000c00000000000000'
    """
    return struct.pack(f"<{len(values)}Q", *values)
