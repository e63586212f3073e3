"""The file meta group of a Part 10 file, read from its bytes.

One reader for the two byte-level paths that need the transfer syntax and the media storage
UIDs before the data set: the fast header parser (:mod:`.fastheader`) and the byte-level
de-identification (:mod:`._anonfast`). It checks only what both must refuse (an element not
in Explicit VR Little Endian, which PS3.10 7.1 requires of the group, and an undefined
length); each caller raises its own exception for those, and decides itself what else it
refuses (a value running past the bytes it holds is ``EOFError``: the header parser reads
more of the file, the de-identification declines).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Container

__all__ = ["read_file_meta"]

_UNDEF = 0xFFFFFFFF
#: VRs with a 4-byte length in Explicit VR (PS3.5 7.1.2)
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN",
                       b"UR", b"UT", b"UV"})
_HEADER = struct.Struct("<HH2sH")
_U32 = struct.Struct("<L")
#: after the 128-byte preamble and ``DICM``
META_START = 132


def read_file_meta(buf: bytes, wanted: Container[int],
                   refuse: Callable[[str], Exception],
                   ) -> tuple[dict[int, bytes], int]:
    """The raw values of the ``wanted`` file meta elements and where the data set starts.

    Elements of group 0002 are read from position 132 (after the preamble and ``DICM``)
    while they last and ``buf`` holds their header.

    Parameters
    ----------
    buf : bytes
        The start of the file, preamble included.
    wanted : Container[int]
        Tags (``0x00020010`` ...) whose values are returned.
    refuse : Callable[[str], Exception]
        Makes the caller's exception from a reason; raised for an element whose VR is not
        two upper-case letters (the group is not in Explicit VR) or of undefined length.

    Returns
    -------
    dict[int, bytes]
        The value bytes of each wanted element present, padding included.
    int
        The position after the last file meta element read.

    Raises
    ------
    EOFError
        An element runs past the end of ``buf``.
    Exception
        ``refuse(reason)`` for a malformed group.

    Examples
    --------
    >>> import struct
    >>> ts = b"1.2.840.10008.1.2.1\\0"
    >>> buf = (b"\\0" * 128 + b"DICM" + struct.pack("<HH2sH", 2, 0x10, b"UI", len(ts)) + ts
    ...        + struct.pack("<HH", 8, 0x16))
    >>> read_file_meta(buf, {0x00020010}, ValueError)
    ({131088: b'1.2.840.10008.1.2.1\\x00'}, 160)
    """
    pos, n = META_START, len(buf)
    values: dict[int, bytes] = {}
    while pos + 8 <= n:
        group, elem, vr, length = _HEADER.unpack_from(buf, pos)
        if group != 0x0002:
            break
        if not (0x40 < vr[0] < 0x5B and 0x40 < vr[1] < 0x5B):
            raise refuse(f"file meta element (0002,{elem:04X}) not in Explicit VR")
        if vr in _LONG_VRS:
            if pos + 12 > n:
                raise EOFError
            length, start = _U32.unpack_from(buf, pos + 8)[0], pos + 12
        else:
            start = pos + 8
        if length == _UNDEF:
            raise refuse(f"file meta element (0002,{elem:04X}) of undefined length")
        if start + length > n:
            raise EOFError
        tag = 0x00020000 | elem
        if tag in wanted:
            values[tag] = buf[start:start + length]
        pos = start + length
    return values, pos
