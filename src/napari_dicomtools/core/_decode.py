"""Pixel-data decoding that a malformed file cannot turn into a dead process.

pydicom 3 picks, for each transfer syntax, the first *available* decoding plugin in the order
they were registered (``pydicom.pixels.get_decoder(uid).available_plugins``): GDCM comes first
for JPEG, JPEG-LS and JPEG 2000. GDCM has segfaulted on a corrupted baseline JPEG, and
pylibjpeg-rle raises ``pyo3_runtime.PanicException`` (a ``BaseException``) on bad RLE. So:

* plugins are chosen explicitly (``decoding_plugin=``), in the order of :data:`PLUGIN_ORDER`:
  pylibjpeg (libjpeg, openjpeg, rle), then Pillow / pydicom's own RLE decoder (for JPEG-LS
  pyjpegls first when installed: CharLS decodes lossless CT with a third of libjpeg's CPU);
* every in-process attempt catches ``BaseException`` except ``KeyboardInterrupt``,
  ``SystemExit`` and ``GeneratorExit``, and the next plugin is tried;
* GDCM runs only when every other plugin declined, and then in a child process
  (``python -m napari_dicomtools.core._decode``), so a native crash is a clean error;
  ``NAPARI_DICOMTOOLS_GDCM=0`` turns that last resort off;
* before all of these, :func:`decode_into` decodes monochrome frames with
  imagecodecs (libjpeg-turbo, CharLS, OpenJPEG, PackBits for RLE) when it is installed: C
  codecs that release the GIL and write into the caller's array, whose shape bounds what a
  codestream can make them allocate; ``NAPARI_DICOMTOOLS_FAST_CODECS=0`` turns them off;
* the size a frame declares is checked against available memory, and a frame declaring far
  more pixels than its compressed bytes could encode (a 4 KB JPEG claiming 46000x46000) is
  refused before any decoder allocates it.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from types import ModuleType
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import numpy as np
import numpy.typing as npt

from ._limits import FATAL, check_allocation, format_bytes
from ._syntaxes import NATIVE as _NATIVE
from .errors import DicomToolsError, UnreadableDicomError, exception_text

if TYPE_CHECKING:
    from pydicom import Dataset

    from .headers import Instance

#: a decoded frame (stored values)
Array = npt.NDArray[Any]

log = logging.getLogger(__name__)

_JPEG = ("pillow", "pylibjpeg")  # libjpeg-turbo (OSS-Fuzzed) matches GDCM exactly
_JPEG_LOSSLESS = ("pylibjpeg",)
_JLS = ("pyjpegls", "pylibjpeg")  # CharLS: 3.5x less CPU than libjpeg on lossless CT
_J2K = ("pylibjpeg", "pillow")

#: in-process decoding plugins, in order of preference, per transfer syntax (GDCM is never
#: used in process; see :func:`decode_frame`)
PLUGIN_ORDER = {
    "1.2.840.10008.1.2.4.50": _JPEG,  # JPEG baseline
    "1.2.840.10008.1.2.4.51": _JPEG,  # JPEG extended (12 bit)
    "1.2.840.10008.1.2.4.57": _JPEG_LOSSLESS,
    "1.2.840.10008.1.2.4.70": _JPEG_LOSSLESS,
    "1.2.840.10008.1.2.4.80": _JLS,
    "1.2.840.10008.1.2.4.81": _JLS,
    "1.2.840.10008.1.2.4.90": _J2K,
    "1.2.840.10008.1.2.4.91": _J2K,
    "1.2.840.10008.1.2.4.201": ("pylibjpeg",),  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": ("pylibjpeg",),
    "1.2.840.10008.1.2.4.203": ("pylibjpeg",),
    "1.2.840.10008.1.2.5": ("pylibjpeg", "pydicom"),  # RLE lossless
}

#: syntaxes whose decoders (libjpeg, openjpeg, CharLS, pylibjpeg-rle) hold the GIL: a series
#: in them decodes in worker processes (:mod:`._parallel`); baseline JPEG (Pillow releases
#: the GIL) and native data are read by threads
GIL_BOUND = frozenset({
    "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",  # JPEG lossless
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",  # JPEG-LS
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",
    "1.2.840.10008.1.2.5",  # RLE
})

#: a compressed frame may expand this much at most before we call its declared size a lie
#: (only enforced for frames over :data:`RATIO_MIN_BYTES`)
MAX_EXPANSION = 1000
RATIO_MIN_BYTES = 256 * 2**20

# GDCM in a child costs a process start per frame: a file it failed on is not tried again,
# and after five failures in a row (a folder of broken files) the fallback rests
_GDCM_FAILED: set[str] = set()
_GDCM_STATE = {"failures_in_a_row": 0}


def gdcm_allowed() -> bool:
    """GDCM as a last resort (in a child process) unless ``NAPARI_DICOMTOOLS_GDCM=0``."""
    return os.environ.get("NAPARI_DICOMTOOLS_GDCM", "1").strip().lower() not in (
        "0", "no", "off", "false")


def _available(ts: str) -> list[str]:
    # pydicom.pixels does not list these in __all__: mypy calls them private
    from pydicom.pixels import get_decoder  # type: ignore[attr-defined]

    try:
        dec = get_decoder(ts)
    except Exception:  # noqa: BLE001 - no decoder for this syntax at all
        return []
    return list(getattr(dec, "available_plugins", ()) or ())


def frame_nbytes(inst: Instance) -> int:
    """Decoded bytes of one frame as the header declares it."""
    per = max(int(inst.bits_allocated), 8) // 8
    return int(inst.rows) * int(inst.columns) * max(int(inst.samples), 1) * per


def check_frame(inst: Instance) -> None:
    """Refuse a frame whose declared size memory cannot hold, or that its compressed bytes
    cannot plausibly encode (before any decoder allocates it)."""
    nbytes = frame_nbytes(inst)
    if inst.photometric == "PALETTE COLOR":
        nbytes = int(inst.rows) * int(inst.columns) * 3 * 2
    check_allocation(inst.path, 3 * nbytes, f"one {inst.columns}x{inst.rows} frame")
    _check_ratio(inst, nbytes)


def _check_ratio(inst: Instance, nbytes: int) -> None:
    """Refuse a compressed frame of ``nbytes`` decoded bytes that its file's compressed data
    cannot plausibly encode."""
    if inst.transfer_syntax not in _NATIVE and nbytes > RATIO_MIN_BYTES:
        per_frame = max(1, int(getattr(inst, "file_size", 0) or 0) // max(inst.n_frames, 1))
        if nbytes > MAX_EXPANSION * per_frame:
            raise UnreadableDicomError(
                inst.path, f"declares {inst.columns}x{inst.rows} pixels "
                           f"({format_bytes(nbytes)} per frame) from about "
                           f"{format_bytes(per_frame)} of compressed data; refused before "
                           "decoding")


def _exc_text(exc: BaseException) -> str:
    return exception_text(exc, 160)


def decode_frame(inst: Instance, index: int | None, *,
                 palette_ds: bool = False) -> tuple[Array, Dataset | None]:
    """Decode frame ``index`` (None: the only frame) of ``inst`` with an explicit plugin.

    Returns ``(array, dataset_or_None)``; the data set is returned when ``palette_ds`` asks
    for it (to apply a palette colour LUT).

    Raises
    ------
    UnreadableDicomError
        Every decoder declined or crashed (each one's reason in the message), or the frame
        declares an impossible size.
    """
    import pydicom
    from pydicom.pixels import pixel_array  # type: ignore[attr-defined]  # see _available
    from pydicom.uid import UID

    from .headers import DEFLATED_UID, read_deflated

    check_frame(inst)
    ts = inst.transfer_syntax
    native = ts in _NATIVE
    available = _available(ts)
    plugins = [""] if native else [p for p in PLUGIN_ORDER.get(ts, ()) if p in available]
    if not native and not PLUGIN_ORDER.get(ts):  # an unknown syntax: anything but GDCM
        plugins = [p for p in available if p != "gdcm"]
    errors: list[str] = []
    for plugin in plugins:
        try:
            with inst.source.open() as fp:
                ds = None
                if ts == DEFLATED_UID:
                    # the data set may hold the pixels plus a header: anything beyond a
                    # generous allowance is a deflate bomb, refused while inflating
                    need = frame_nbytes(inst) * max(inst.n_frames, 1)
                    ds = read_deflated(fp, inst.path, cap=2 * need + 64 * 2**20)
                elif palette_ds:
                    ds = pydicom.dcmread(fp, force=True)
                kwargs: dict[str, Any] = {"decoding_plugin": plugin} if plugin else {}
                if ds is not None:
                    arr: Array = pixel_array(ds, index=index, **kwargs)
                else:
                    arr = pixel_array(cast(BinaryIO, fp), index=index,
                                      transfer_syntax_uid=UID(ts), **kwargs)
                return arr, ds
        except DicomToolsError:
            raise
        except FATAL:
            raise
        except BaseException as exc:  # noqa: BLE001 - PanicException, decoder errors, ...
            errors.append(f"{plugin or 'pydicom'}: {_exc_text(exc)}")
            log.debug("%s: %s declined: %s", inst.path, plugin or "pydicom", errors[-1])
    if not native and "gdcm" in available:
        got = _gdcm_last_resort(inst, index, palette_ds, errors)
        if got is not None:
            return got
    where = f" frame {index}" if index is not None else ""
    if not errors:
        errors.append(f"no decoder for transfer syntax {ts} (install the compressed-data "
                      "codecs: pip install 'napari-dicomtools[all]')")
    raise UnreadableDicomError(inst.path, f"pixel data{where} cannot be decoded: "
                                          + "; ".join(errors))


def _gdcm_last_resort(inst: Instance, index: int | None, palette_ds: bool,
                      errors: list[str]) -> tuple[Array, Dataset | None] | None:
    """GDCM in a child process, after every in-process plugin declined (their reasons in
    ``errors``, to which GDCM's is added); None when it is not tried or fails."""
    import pydicom

    if not gdcm_allowed() or inst.path in _GDCM_FAILED or \
            _GDCM_STATE["failures_in_a_row"] >= 5:
        return None
    log.info("%s: decoding with GDCM in a child process (%s)", inst.path, "; ".join(errors))
    try:
        arr = _gdcm_in_child(inst, index)
    except UnreadableDicomError as exc:
        errors.append(f"gdcm: {exc.reason}")
        _GDCM_FAILED.add(inst.path)
        _GDCM_STATE["failures_in_a_row"] += 1
        return None
    _GDCM_STATE["failures_in_a_row"] = 0
    ds = None
    if palette_ds:
        with inst.source.open() as fp:
            ds = pydicom.dcmread(fp, force=True, stop_before_pixels=True)
    return arr, ds


#: transfer syntax -> imagecodecs decoder for the frames :func:`decode_into` takes: C
#: codecs that release the GIL (so threads decode frames side by side, no worker processes)
#: and write straight into the caller's array. Measured per 512 x 512 CT frame (CPU):
#: libjpeg-turbo 3 lossless 2.1 ms vs pylibjpeg-libjpeg 14 ms; CharLS 5.5-6 ms either way;
#: OpenJPEG 38 ms either way; RLE as PackBits segments 0.7 ms vs 2.4 ms through pydicom.
FAST_CODECS = {
    "1.2.840.10008.1.2.4.57": "jpeg8",  # JPEG lossless: libjpeg-turbo >= 3 decodes SOF3
    "1.2.840.10008.1.2.4.70": "jpeg8",
    "1.2.840.10008.1.2.4.80": "jpegls",  # CharLS
    "1.2.840.10008.1.2.4.81": "jpegls",
    "1.2.840.10008.1.2.4.90": "jpeg2k",  # OpenJPEG
    "1.2.840.10008.1.2.4.91": "jpeg2k",
    "1.2.840.10008.1.2.5": "rle",  # DICOM RLE segments are PackBits byte streams
}

_IC: dict[str, ModuleType | None] = {}


def _imagecodecs() -> ModuleType | None:
    """The imagecodecs module, or None (not installed, or ``NAPARI_DICOMTOOLS_FAST_CODECS=0``)."""
    if os.environ.get("NAPARI_DICOMTOOLS_FAST_CODECS", "1").strip().lower() in (
            "0", "no", "off", "false"):
        return None
    if "mod" not in _IC:
        mod: ModuleType | None
        try:
            import imagecodecs as mod
        except Exception:  # noqa: BLE001 - optional ([all] extra); an old or broken build
            mod = None
        _IC["mod"] = mod
    return _IC["mod"]


def fast_codec(inst: Instance) -> str | None:
    """The :data:`FAST_CODECS` decoder that :func:`decode_into` would use for ``inst``, or
    None: one sample per pixel, 8 or 16 bits allocated, no palette, no mosaic."""
    name = FAST_CODECS.get(inst.transfer_syntax)
    if name is None or inst.samples != 1 or inst.bits_allocated not in (8, 16) \
            or inst.mosaic is not None \
            or inst.photometric not in ("MONOCHROME1", "MONOCHROME2") \
            or sys.byteorder != "little" or _imagecodecs() is None:
        return None
    return name


def _pixel_value_offset(inst: Instance, fp: BinaryIO, size: int) -> int | None:
    """File offset of the value of a single-frame file's encapsulated Pixel Data (its first
    item), from the header parsed while scanning when it recorded one, else by parsing the
    header again. None: the fast parser does not read this header, or the Pixel Data is not
    encapsulated (undefined length)."""
    from . import fastheader

    if inst.encapsulated_offset is not None:  # recorded while scanning
        return inst.encapsulated_offset
    try:
        # Any: fastheader's typing is its owner's (issue 13); only .get_item is used
        parsed: Any = fastheader.parse(fp, size)
        px = parsed.get_item(0x7FE00010)  # Pixel Data
    except (fastheader.Unsupported, EOFError):
        return None
    if px is None or px.length != 0xFFFFFFFF:  # encapsulated: undefined length
        return None
    return int(px.value_tell)


def _frame_bytes(inst: Instance) -> bytes | memoryview | None:
    """The compressed bytes of a single-frame file's only frame: its fragments after the
    Basic Offset Table (PS3.5 A.4), a view of one read of the file's tail when there is one
    fragment, else the fragments joined. None: the header is not one the fast parser reads;
    the caller then goes through pydicom. Neither step imports pydicom (a second of
    start-up: its pixel plugins import GDCM and requests)."""
    with inst.source.open() as fp:
        size = int(getattr(inst, "file_size", 0) or 0) or inst.source.size()
        start = _pixel_value_offset(inst, cast(BinaryIO, fp), size)
        if start is None:
            return None
        fp.seek(start)
        tail = memoryview(fp.read(size - start))
    return _fragments(tail)


def _fragments(tail: memoryview) -> bytes | memoryview:
    """The frame in encapsulated Pixel Data whose items start at ``tail[0]``: every fragment
    after the Basic Offset Table, up to the sequence delimiter (one fragment: a view).
    Raises ValueError for malformed items."""
    from ._encap import items

    _table, parts = items(tail, delimited=True)
    return parts[0] if len(parts) == 1 else b"".join(parts)


MULTIFRAME_MAX_BYTES = 2 * 2**30


class FrameTable:
    """The compressed frames of the last multi-frame file read, split once (by pydicom:
    Basic or Extended Offset Table, or one fragment per frame) instead of once per frame.
    One per read (the plan of a volume holds it), so the bytes go with the volume."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.lock = threading.Lock()
        self.key: tuple[str, int] | None = None
        self.frames: list[bytes] = []

    def __getstate__(self) -> dict[str, Any]:  # a pickled plan starts with an empty table
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._reset()

    def frame(self, inst: Instance, index: int) -> bytes | None:
        key = (inst.path, int(getattr(inst, "file_size", 0) or 0))
        with self.lock:  # one thread splits a file; the others wait for it
            if key != self.key:
                if key[1] > MULTIFRAME_MAX_BYTES:
                    return None
                import pydicom
                from pydicom.encaps import generate_frames

                self.key, self.frames = None, []
                with inst.source.open() as fp:
                    ds = pydicom.dcmread(fp, force=True)
                ext = None
                if "ExtendedOffsetTable" in ds and "ExtendedOffsetTableLengths" in ds:
                    ext = (ds.ExtendedOffsetTable, ds.ExtendedOffsetTableLengths)
                frames = list(generate_frames(ds.PixelData, number_of_frames=inst.n_frames,
                                              extended_offsets=ext))
                if len(frames) != inst.n_frames:
                    raise ValueError(f"{len(frames)} compressed frames for {inst.n_frames}")
                self.key, self.frames = key, frames
            return self.frames[index]


def _rle_into(ic: ModuleType, data: bytes | memoryview, out: Array) -> None:
    """Decode a DICOM RLE frame (PS3.5 Annex G) into ``out`` (little-endian, 1 sample).

    The 64-byte header gives the segment count and offsets; segment ``k`` holds byte
    ``itemsize - 1 - k`` of every pixel (most significant first), PackBits-encoded."""
    import struct

    size = out.dtype.itemsize
    npix = out.size
    if len(data) < 64:
        raise ValueError("RLE header truncated")
    header = struct.unpack_from("<16I", data, 0)
    nseg = header[0]
    if nseg != size:
        raise ValueError(f"RLE frame has {nseg} segments, expected {size}")
    offsets = list(header[1:1 + nseg]) + [len(data)]
    if offsets[0] != 64 or any(offsets[k + 1] < offsets[k] for k in range(nseg)):
        raise ValueError("RLE segment offsets out of order")
    planes = out.reshape(-1).view(np.uint8).reshape(npix, size)
    for k in range(nseg):
        seg = ic.packbits_decode(data[offsets[k]:offsets[k + 1]])
        if len(seg) != npix:
            raise ValueError(f"RLE segment {k} decodes to {len(seg)} bytes, expected {npix}")
        planes[:, size - 1 - k] = np.frombuffer(seg, np.uint8, count=npix)


def decode_into(inst: Instance, out: Array, index: int | None = None, *, threads: int = 1,
                table: FrameTable | None = None) -> bool:
    """Decode frame ``index`` (None: the only frame) of ``inst`` into ``out`` (its stored
    values, any signedness of the stored item size, shape ``(rows, columns)``) with
    :data:`FAST_CODECS`.

    Returns False when this path does not apply or the codec declined (then
    :func:`decode_frame` decodes it, tries the other plugins and names every reason). The
    codec checks the codestream's size against ``out`` before decoding, so a frame cannot
    allocate more than the header declared. Bits above BitsStored are left for the caller
    to mask or sign-extend. ``threads``: OpenJPEG's own threads for one frame. ``table``:
    where a multi-frame file's frames are kept between calls (without it every call splits
    the file again).
    """
    name = fast_codec(inst)
    if name is None or out.shape != (inst.rows, inst.columns) or not out.flags.c_contiguous \
            or out.dtype.itemsize != inst.bits_allocated // 8:
        return False
    ic = _imagecodecs()
    if ic is None:
        return False
    # the frame's memory is ``out``, already allocated: no look at available memory (four
    # /proc and cgroup files per frame), only at what the compressed bytes can encode
    _check_ratio(inst, out.nbytes)
    try:
        data: bytes | memoryview | None
        if inst.n_frames > 1:
            data = (table or FrameTable()).frame(inst, int(index or 0))
        else:
            data = _frame_bytes(inst)
        if data is None:
            return False
        if name == "rle":
            _rle_into(ic, data, out)
        elif name == "jpeg2k":
            ic.jpeg2k_decode(data, numthreads=max(1, threads), out=out)
        else:
            getattr(ic, f"{name}_decode")(data, out=out)
        return True
    except DicomToolsError:
        raise
    except FATAL:
        raise
    except BaseException as exc:  # noqa: BLE001 - the plugins of decode_frame try next
        log.debug("%s: imagecodecs %s declined: %s", inst.path, name, _exc_text(exc))
        return False


def _gdcm_in_child(inst: Instance, index: int | None) -> Array:
    """Decode with GDCM in a child process (a segfault there is an error here)."""
    import io

    src = inst.source
    data = None
    if src.member is not None:
        with src.open() as fp:
            data = fp.read()
    cmd = [sys.executable, "-m", "napari_dicomtools.core._decode", inst.transfer_syntax,
           "-1" if index is None else str(int(index)), "-" if data is not None else src.path]
    try:
        proc = subprocess.run(cmd, input=data, capture_output=True, timeout=300,
                              stdin=None if data is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise UnreadableDicomError(inst.path, "GDCM did not finish in 300 s") from None
    except OSError as exc:
        raise UnreadableDicomError(inst.path, f"GDCM child cannot start ({exc})") from None
    if proc.returncode < 0:
        raise UnreadableDicomError(inst.path, f"GDCM crashed (signal {-proc.returncode}) on "
                                              "this file")
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise UnreadableDicomError(inst.path, f"GDCM failed ({msg[-1] if msg else 'error'})")
    try:
        arr: Array = np.load(io.BytesIO(proc.stdout), allow_pickle=False)
        return arr
    except Exception as exc:  # noqa: BLE001
        raise UnreadableDicomError(inst.path, f"GDCM output unreadable ({exc})") from None


def _child_main(argv: list[str]) -> int:
    """``python -m napari_dicomtools.core._decode TS INDEX PATH|-``: decode with GDCM and
    write the frame as ``.npy`` to stdout."""
    import io

    from pydicom.pixels import pixel_array  # type: ignore[attr-defined]  # see _available
    from pydicom.uid import UID

    ts, index, path = argv[0], int(argv[1]), argv[2]
    src = io.BytesIO(sys.stdin.buffer.read()) if path == "-" else open(path, "rb")  # noqa: SIM115
    with src:
        arr = pixel_array(src, index=None if index < 0 else index,
                          transfer_syntax_uid=UID(ts), decoding_plugin="gdcm")
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    sys.stdout.buffer.write(buf.getvalue())
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover - runs in the child
    sys.exit(_child_main(sys.argv[1:]))
