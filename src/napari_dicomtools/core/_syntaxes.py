"""Transfer syntax UIDs (PS3.5 10, PS3.6 A), one definition each, grouped by what they are.

The groups here say what a syntax *is*: how its Pixel Data is stored (native or
encapsulated) and which codec family its bitstream belongs to. What a module *does* with
syntaxes is that module's own set, built from these where it can and kept beside the code it
steers, because sets that look alike mean different things and drift apart for good reasons:

* ``_decode.PLUGIN_ORDER`` / ``FAST_CODECS``: the decoders we prefer per syntax;
  ``_decode.GIL_BOUND``: the syntaxes whose decoders hold the GIL (read in worker processes);
* ``_pixeltext.policy``: what de-identification does with a syntax's bitstream (clean its
  text, nothing to clean, refuse);
* ``_anonfast._ENCAPSULATED``: the encapsulated syntaxes the byte-level de-identification
  takes (the rest go through pydicom).

Imports nothing, so the byte-level paths stay free of pydicom.
"""

from __future__ import annotations

__all__ = [
    "DEFLATED", "DEFLATED_IMAGE_FRAME", "ENCAPSULATED_UNCOMPRESSED", "EXPLICIT_VR_BE",
    "EXPLICIT_VR_LE", "H264", "HEVC", "HTJ2K", "IMPLICIT_VR_LE", "JPEG", "JPEG_2000",
    "JPEG_2000_PART2", "JPEG_LOSSLESS", "JPEG_LOSSY", "JPEG_LS", "JPEG_XL", "MPEG2", "NATIVE",
    "RAW_NATIVE", "RLE", "encoding_syntax",
]

_JPEG = "1.2.840.10008.1.2.4."

# --- native Pixel Data (not encapsulated) --------------------------------------------------
IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"  # retired
#: the whole data set deflated (zlib): its Pixel Data is native once inflated
DEFLATED = "1.2.840.10008.1.2.1.99"
#: native Pixel Data stored as is: its bytes lie in the file at their offset
RAW_NATIVE = frozenset({IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE})
#: native (not encapsulated) Pixel Data: stored as is, or in a deflated data set
NATIVE = RAW_NATIVE | {DEFLATED}

# --- encapsulated Pixel Data, by the codec of its frames -----------------------------------
#: JPEG (T.81) lossy processes in use: baseline (process 1, 8 bit) and extended (2 & 4, 12 bit)
JPEG_LOSSY = frozenset({_JPEG + "50", _JPEG + "51"})
#: JPEG (T.81) lossless: process 14, and its first-order prediction (selection value 1)
JPEG_LOSSLESS = frozenset({_JPEG + "57", _JPEG + "70"})
#: every JPEG (T.81) process: the above and the retired ones (52-56, 58-66)
JPEG = JPEG_LOSSY | JPEG_LOSSLESS | {_JPEG + str(n) for n in range(52, 67)}
#: JPEG-LS (T.87): lossless and near-lossless
JPEG_LS = frozenset({_JPEG + "80", _JPEG + "81"})
#: JPEG 2000 Part 1 (T.800): lossless only, and lossless or lossy
JPEG_2000 = frozenset({_JPEG + "90", _JPEG + "91"})
#: JPEG 2000 Part 2 multi-component (T.801): lossless only, and lossless or lossy
JPEG_2000_PART2 = frozenset({_JPEG + "92", _JPEG + "93"})
#: High-Throughput JPEG 2000 (T.814): lossless only, with RPCL, and lossless or lossy
HTJ2K = frozenset({_JPEG + "201", _JPEG + "202", _JPEG + "203"})
#: RLE Lossless (PS3.5 G): PackBits segments, one per byte of a sample
RLE = "1.2.840.10008.1.2.5"
#: Deflated Image Frame Compression: each frame's native bytes deflated
DEFLATED_IMAGE_FRAME = "1.2.840.10008.1.2.8.1"
#: Encapsulated Uncompressed Explicit VR Little Endian: native frames in fragments
ENCAPSULATED_UNCOMPRESSED = "1.2.840.10008.1.2.1.98"
#: MPEG-2 video: main and high profile, and their fragmentable forms (.1)
MPEG2 = frozenset({_JPEG + "100", _JPEG + "100.1", _JPEG + "101", _JPEG + "101.1"})
#: MPEG-4 AVC/H.264 video, its profiles and their fragmentable forms (.1)
H264 = frozenset({_JPEG + str(n) + tail for n in range(102, 107) for tail in ("", ".1")})
#: HEVC/H.265 video: main and main 10 profile
HEVC = frozenset({_JPEG + "107", _JPEG + "108"})
#: JPEG XL: lossless, JPEG recompression, and lossy
JPEG_XL = frozenset({_JPEG + "110", _JPEG + "111", _JPEG + "112"})


def encoding_syntax(implicit: bool, little: bool) -> str:
    """The native transfer syntax of a data set read without one (no file meta).

    Parameters
    ----------
    implicit : bool
        Read in Implicit VR.
    little : bool
        Read in little endian (big endian exists only in Explicit VR).

    Returns
    -------
    str
        Implicit VR Little Endian, Explicit VR Little Endian or Explicit VR Big Endian.

    Examples
    --------
    >>> encoding_syntax(False, True) == EXPLICIT_VR_LE
    True
    """
    if implicit:
        return IMPLICIT_VR_LE
    return EXPLICIT_VR_LE if little else EXPLICIT_VR_BE
