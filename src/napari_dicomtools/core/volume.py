"""A :class:`Series` -> :class:`Volume`: pixels in real units, with their geometry.

Native (uncompressed) pixel data is read straight from the file offsets found while scanning,
into the final array, so an eager read costs little more than reading the bytes. Compressed
monochrome frames decode with imagecodecs' GIL-free codecs in threads, straight into the
final array (:func:`._decode.decode_into`); anything else, or a frame those decline, goes
through pydicom's decoders with an explicit plugin order (Pillow or pylibjpeg/openjpeg,
pyjpegls, pydicom's RLE; GDCM only as a last resort, in a child process: see :mod:`._decode`). A series' declared size is checked against available memory before
anything is allocated, and every failure is a :class:`~.errors.DicomToolsError`.
"""

from __future__ import annotations

import mmap
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

from . import geometry
from ._limits import FATAL, check_allocation
from ._parallel import decode_workers, discard_pool, process_pool
from .errors import DicomToolsError, GeometryError, NoSeriesError, UnreadableDicomError
from .headers import Frame, Instance, Window
from .series import NO_IMAGE_KINDS, PathInput, Series, SeriesList

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from ._decode import FrameTable

#: a decoded frame, or a whole volume, in memory
Array = npt.NDArray[Any]
#: ``progress(done, total)``
Progress = Callable[[int, int], None]
#: what a worker process sent back for a frame: the stored values, the frame's error, or
#: None (decode it here: the pool is gone)
Decoded = Array | DicomToolsError | None

__all__ = [
    "Volume", "read_volume", "read_volumes", "regularize", "correct_tilt",
    "resample_uniform", "check_geometry", "smallest_dtype", "FrameStream", "stream_frames",
    "DecodeAhead",
]


class VoxelArray(Protocol):
    """What :attr:`Volume.array` is and the writers take: a numpy array or a lazy (dask)
    one, with a shape, a dtype, and indexing (planes are read one at a time)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    @property
    def dtype(self) -> np.dtype[Any]: ...

    def __getitem__(self, key: Any, /) -> Any: ...


@dataclass
class Volume:
    """Pixels and the geometry that places them in the patient.

    Parameters
    ----------
    array : numpy.ndarray or dask.array.Array
        ``(slice, row, column)``; ``(time, slice, row, column)`` for 4D series; a trailing
        axis of 3 for RGB. Values are rescaled (RescaleSlope/Intercept: Hounsfield units for
        CT) in the smallest dtype that holds them exactly.
    spacing : tuple of 3 float
        ``(slice, row, column)`` mm; the slice spacing comes from ImagePositionPatient.
    origin : numpy.ndarray
        LPS position (mm) of the centre of voxel ``(0, 0, 0)``.
    direction : numpy.ndarray
        3x3, column ``k`` is the unit LPS vector of array axis ``k``.
    metadata : dict
        Readable header summary, series facts, window, units, problems found, files.
    series : Series, optional
        The series it was read from (None for a derived volume whose voxels no longer sit
        where the files put them).

    Examples
    --------
    >>> import numpy as np
    >>> vol = Volume(np.zeros((3, 4, 5), np.int16), (2.5, 0.5, 0.5),
    ...              np.array([-10.0, -20.0, 30.0]), np.eye(3))
    >>> vol.spatial_shape
    (3, 4, 5)
    >>> vol.affine_ras[:3, 3]  # the origin in RAS: x and y negated
    array([10., 20., 30.])
    """

    array: VoxelArray
    spacing: tuple[float, float, float]
    origin: npt.NDArray[np.float64]
    direction: npt.NDArray[np.float64]
    metadata: dict[str, Any] = field(default_factory=dict)
    series: Series | None = None

    @property
    def n_time(self) -> int:
        return int(self.metadata.get("n_time", 1))

    @property
    def rgb(self) -> bool:
        return bool(self.metadata.get("rgb", False))

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        lead = 1 if self.n_time > 1 else 0
        z, y, x = self.array.shape[lead:lead + 3]
        return z, y, x

    @property
    def file_positions(self) -> npt.NDArray[np.float64] | None:
        """Each slice's ImagePositionPatient as its file gives it (LPS mm, a row a slice),
        or None: a 4D volume, or one whose frames do not all carry a position."""
        s = self.series
        if s is None or self.n_time > 1 or len(s.frames) != self.spatial_shape[0] \
                or any(f.position is None for f in s.frames):
            return None
        return np.array([f.position for f in s.frames], float)

    @property
    def affine_lps(self) -> npt.NDArray[np.float64]:
        """4x4: voxel ``(column, row, slice)`` -> LPS mm (ITK/DICOM convention)."""
        return geometry.affine_lps(self.spacing, self.origin, self.direction)

    @property
    def affine_ras(self) -> npt.NDArray[np.float64]:
        """4x4: voxel ``(column, row, slice)`` -> RAS mm, as NIfTI's sform wants it.

        ``nibabel.Nifti1Image(np.asarray(vol.array).T, vol.affine_ras)`` (3D, non-RGB) is the
        correct NIfTI image.
        """
        return geometry.affine_ras(self.spacing, self.origin, self.direction)

    @property
    def world_affine(self) -> npt.NDArray[np.float64]:
        """4x4: array index ``(slice, row, column)`` -> napari world ``(z, y, x)`` LPS mm."""
        return geometry.world_affine(self.spacing, self.origin, self.direction)

    def display_transform(self) -> geometry.DisplayTransform:
        """Axis-aligned view, scale and translate for napari (see :mod:`.geometry`)."""
        return geometry.display_transform(self.spacing, self.origin, self.direction,
                                          self.spatial_shape)

    @property
    def window(self) -> Window | None:
        """(center, width) from WindowCenter/WindowWidth, in output units, or None."""
        w = self.metadata.get("window")
        return Window(float(w[0]), float(w[1])) if w else None

    def __repr__(self) -> str:
        kind = type(self.array).__module__.split(".")[0]
        return (f"<Volume {self.metadata.get('name', '')!r} {kind} {tuple(self.array.shape)} "
                f"{self.array.dtype} spacing={tuple(round(s, 4) for s in self.spacing)} mm>")


# --------------------------------------------------------------------------------------------
# values


def _stored_range(inst: Instance) -> tuple[int, int]:
    bits = max(1, min(inst.bits_stored, inst.bits_allocated))
    if inst.pixel_representation:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


def _rescaled_range(fr: Frame) -> tuple[float, float, bool]:
    """Lowest and highest value ``fr`` can hold in output units, and whether its rescale
    keeps integers integral."""
    slo, shi = _stored_range(fr.instance)
    a, b = slo * fr.slope + fr.intercept, shi * fr.slope + fr.intercept
    integral = float(fr.slope) == int(fr.slope) and float(fr.intercept) == int(fr.intercept)
    return min(a, b), max(a, b), integral


_INT_TYPES: list[type[np.integer[Any]]] = [np.uint8, np.int8, np.uint16, np.int16, np.uint32,
                                           np.int32, np.int64]


def smallest_dtype(lo: float, hi: float, integral: bool, bits: int = 16) -> np.dtype[Any]:
    """Smallest dtype holding every value in ``[lo, hi]`` exactly.

    Integer ranges get the smallest (unsigned first) integer type; otherwise float32, or
    float64 when the stored values have more than 24 significant bits.

    Parameters
    ----------
    lo, hi : float
        The lowest and highest value to hold (rescaled: ``stored * slope + intercept``).
    integral : bool
        Every value is an integer (integer slope and intercept).
    bits : int
        Significant bits of the stored values (BitsStored), for the float case.

    Returns
    -------
    numpy.dtype
        uint8, int8, uint16, int16, uint32, int32 or int64 for integers (float64 beyond
        int64), float32 or float64 otherwise.

    Examples
    --------
    CT with RescaleIntercept -1024 over 12 stored bits:

    >>> smallest_dtype(-1024, 4095 - 1024, True, 12)
    dtype('int16')
    >>> smallest_dtype(0.0, 2.5, False, 16)
    dtype('float32')
    """
    if integral:
        for t in _INT_TYPES:
            info = np.iinfo(t)
            if info.min <= lo and hi <= info.max:
                return np.dtype(t)
        return np.dtype(np.float64)
    return np.dtype(np.float32 if bits <= 24 else np.float64)


_TABLE_LOCK = threading.Lock()


@dataclass
class _Plan:
    """Everything needed to decode any frame of a series into output units."""

    frames: list[Frame]
    out_dtype: np.dtype[Any]
    frame_shape: tuple[int, ...]
    lo: float
    hi: float
    rgb: bool
    palette: bool
    #: a multi-frame file's compressed frames, split once for all its frames (made on use)
    table: FrameTable | None = field(default=None, repr=False, compare=False)
    #: frames decoded while the scan was still parsing headers (:class:`DecodeAhead`)
    ahead: DecodeAhead | None = field(default=None, repr=False, compare=False)
    #: decoded Siemens mosaic planes by file (the last few), and their lock
    _mosaic_cache: dict[str, Array] = field(default_factory=dict, repr=False, compare=False)
    _mosaic_lock: threading.Lock = field(default_factory=threading.Lock, repr=False,
                                         compare=False)

    def frame_table(self) -> FrameTable:
        """The :class:`._decode.FrameTable` of this read."""
        if self.table is None:
            with _TABLE_LOCK:
                if self.table is None:
                    from ._decode import FrameTable

                    self.table = FrameTable()
        return self.table

    def read_frame(self, i: int, out: Array | None = None, threads: int = 1) -> Array:
        """Frame ``i`` in output units (into ``out`` when given); ``threads``: a codec's own
        threads for this one frame (JPEG 2000)."""
        fr: Frame = self.frames[i]
        if out is None:
            out = np.empty(self.frame_shape, self.out_dtype)
        inst = fr.instance
        if self.rgb or (inst.mosaic is None and not self.native(i)):
            table = self.frame_table() if inst.n_frames > 1 else None
            if not self.rgb and _decode_fast(fr, out, threads, table, self.ahead):
                return self._finish(fr, out)
            return self.place(i, _decode_pydicom(fr), out)
        if inst.mosaic is not None:
            _rescale_into(self._mosaic_tile(fr), fr, out)
        else:
            _read_native(fr, out)
        return self._finish(fr, out)

    def _finish(self, fr: Frame, out: Array) -> Array:
        # MONOCHROME1 changes nothing here: the values are the Modality LUT output whatever
        # the photometric interpretation (PS3.4 N.2.1); only the display is inverted, after
        # the window (metadata "photometric", read by the napari layer and the PNG writers)
        if fr.flip_rows:  # GE pepolar: reversed polarity stored upside down
            out[...] = out[::-1].copy()
        return out

    def native(self, i: int) -> bool:
        """Frame ``i`` is read straight from the file (no decoder)."""
        inst = self.frames[i].instance
        return inst.pixel_offset is not None and inst.bits_allocated in (8, 16, 32) \
            and inst.samples == 1

    def in_processes(self, workers: int) -> bool:
        """Decode in worker processes: more than one worker, and every frame in a syntax
        whose decoder holds the GIL and has no GIL-free codec (see :mod:`._parallel` and
        :data:`._decode.FAST_CODECS`)."""
        from ._decode import GIL_BOUND, fast_codec

        return workers > 1 and len(self.frames) > 2 * workers and all(
            f.instance.transfer_syntax in GIL_BOUND and f.instance.mosaic is None
            and fast_codec(f.instance) is None for f in self.frames)

    def compressed(self) -> bool:
        """Any frame needs a decoder (CPU-bound work, unlike a native read)."""
        return any(f.instance.mosaic is None and not self.native(i)
                   for i, f in enumerate(self.frames))

    def place(self, i: int, arr: Array, out: Array) -> Array:
        """A decoded frame ``i`` (stored values) into ``out``, in output units."""
        fr: Frame = self.frames[i]
        if self.rgb:
            if self.palette and arr.dtype.itemsize > 1:
                arr = _palette_to_8bit(arr)
            out[...] = arr.reshape(self.frame_shape)
            return out
        if arr.shape != self.frame_shape:
            raise UnreadableDicomError(fr.instance.path, f"decoded frame has shape "
                                                         f"{arr.shape}, expected "
                                                         f"{self.frame_shape}")
        _rescale_into(arr, fr, out)
        return self._finish(fr, out)


    def _mosaic_tile(self, fr: Frame) -> Array:
        """Tile ``fr.index`` of a Siemens mosaic (the decoded plane is cached per file)."""
        inst = fr.instance
        assert inst.mosaic is not None and fr.index is not None  # only mosaic tiles come here
        with self._mosaic_lock:
            plane = self._mosaic_cache.get(inst.path)
        if plane is None:
            plane = _mosaic_plane(inst)
            with self._mosaic_lock:
                if len(self._mosaic_cache) >= 4:
                    self._mosaic_cache.pop(next(iter(self._mosaic_cache)))
                self._mosaic_cache[inst.path] = plane
        r0 = (fr.index // inst.mosaic.per_row) * inst.rows
        c0 = (fr.index % inst.mosaic.per_row) * inst.columns
        return plane[r0:r0 + inst.rows, c0:c0 + inst.columns]


def _palette_to_8bit(rgb: Array) -> Array:
    """Colours from a 16-bit palette LUT as 8-bit RGB (rounded: 65535 -> 255), the depth of
    a screen, PNG and NIfTI RGB24."""
    return ((rgb.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _mosaic_plane(inst: Instance) -> Array:
    """The whole stored mosaic plane of a file (native read or pydicom decode)."""
    assert inst.mosaic is not None  # only mosaic files come here
    mr, mc = inst.mosaic.rows, inst.mosaic.columns
    if inst.pixel_offset is not None and inst.bits_allocated in (8, 16, 32):
        sdt = _stored_dtype(inst)
        with open(inst.source.path, "rb") as f:
            f.seek(inst.pixel_offset)
            plane = np.fromfile(f, dtype=sdt, count=mr * mc)
        if plane.size != mr * mc:
            raise UnreadableDicomError(inst.path, "truncated mosaic pixel data")
        plane = plane.astype(sdt.newbyteorder("="), copy=False).reshape(mr, mc)
        _fix_bits(plane, inst)
        return plane
    tile = Frame(inst, None, None, None, None)
    return _decode_pydicom(tile)


def _stored_dtype(inst: Instance) -> np.dtype:
    kind = "i" if inst.pixel_representation else "u"
    big = inst.transfer_syntax == "1.2.840.10008.1.2.2"
    return np.dtype(f"{'>' if big else '<'}{kind}{inst.bits_allocated // 8}")


def _fix_bits(a: Array, inst: Instance) -> None:
    """Mask bits above BitsStored (unsigned) or sign-extend them (signed), in place."""
    nbits = a.dtype.itemsize * 8
    bs = inst.bits_stored
    if bs >= nbits or bs <= 0:
        return
    if inst.pixel_representation:
        shift = nbits - bs
        np.left_shift(a, shift, out=a)
        np.right_shift(a, shift, out=a)
    else:
        np.bitwise_and(a, (1 << bs) - 1, out=a)


def _rescale_into(stored: Array, fr: Frame, out: Array) -> None:
    slope, intercept = fr.slope, fr.intercept
    if slope == 1 and intercept == 0:
        out[...] = stored
        return
    if out.dtype.kind in "iu":
        np.multiply(stored, int(slope), out=out, casting="unsafe")
        np.add(out, int(intercept), out=out, casting="unsafe")
    else:
        np.multiply(stored, slope, out=out, casting="unsafe")
        np.add(out, intercept, out=out, casting="unsafe")


def _stored_target(inst: Instance, out: Array) -> tuple[Array, bool]:
    """Where to put a frame's stored values: ``out`` itself, viewed as the stored dtype, when
    the rescale can then run in place (``direct``), else a scratch array."""
    sdt = _stored_dtype(inst)
    direct = (out.dtype.itemsize == sdt.itemsize and sdt.isnative and out.flags.c_contiguous
              and (out.dtype == sdt or (sdt.kind == "u" and out.dtype.kind == "i"
                                        and inst.bits_stored < 8 * sdt.itemsize)))
    return (out.view(sdt) if direct else np.empty(out.shape, sdt)), direct


def _stored_into(target: Array, direct: bool, fr: Frame, out: Array) -> None:
    """Stored values in ``target`` (from :func:`_stored_target`) -> output units in ``out``:
    bits above BitsStored masked or sign-extended, RescaleSlope/Intercept applied."""
    inst = fr.instance
    sdt = target.dtype
    if direct and sdt != out.dtype:
        # unsigned stored, signed output of the same size: only BitsStored bits are valid
        _fix_bits(target, inst)
        if fr.slope != 1:
            np.multiply(out, int(fr.slope), out=out)
        if fr.intercept:
            np.add(out, int(fr.intercept), out=out)
        return
    if not sdt.isnative:
        target = target.astype(sdt.newbyteorder("="))
    _fix_bits(target, inst)
    if direct:  # target is out's memory: the rescale runs in place, element by element
        if fr.slope != 1 or fr.intercept:
            _rescale_into(target, fr, out)
        return
    _rescale_into(target, fr, out)


def _decode_fast(fr: Frame, out: Array, threads: int = 1,
                 table: FrameTable | None = None, ahead: DecodeAhead | None = None) -> bool:
    """Decode a compressed frame straight into ``out`` with a codec that releases the GIL
    (see :func:`._decode.decode_into`), or take it from ``ahead`` when it was decoded
    there during the scan; False when that path does not apply."""
    from ._decode import decode_into, fast_codec

    inst = fr.instance
    if fast_codec(inst) is None:
        return False
    target, direct = _stored_target(inst, out)
    seen, early = ahead.take(inst) if ahead is not None and inst.n_frames == 1 else (False, None)
    if seen:  # decoded during the scan; None: the codec declined it (pydicom's turn)
        if early is None or early.shape != target.shape or early.dtype != target.dtype:
            return False
        target[...] = early
    elif not decode_into(inst, target, fr.index if inst.n_frames > 1 else None,
                         threads=threads, table=table):
        return False
    _stored_into(target, direct, fr, out)
    return True


class _Prefault:
    """A native volume's memory, faulted in on a spare core while the scan parses headers.

    Most of reading an uncompressed series from the page cache is the kernel handing out
    the fresh volume's pages, each zeroed on first touch (0.13-0.18 s of CPU for a 150 MiB
    CT in 4 KiB pages on the development machine, against ~0.06 s to copy the bytes into
    memory already mapped). None of that needs the GIL the scan holds. So once the scan has
    parsed its first native image (:meth:`offer`) and knows how many files it will parse
    (:meth:`progress`), this maps an estimate of the volume (files x frames x rows x
    columns x the output itemsize of that image's rescale) and touches a byte of each page
    on a spare core, 4 MiB at a time. The read takes the mapping as its volume when the
    series fits it (:meth:`take`), after the touching has stopped (it writes zeros, so it
    ends before any frame is read in); pages it did not reach fault in as before, and the
    unused tail goes back to the kernel. A wrong estimate costs spare-core time only: the
    read then allocates its volume as usual. The mapping gets the transparent-huge-page
    advice numpy gives its own large arrays (:func:`_numpy_hugepages`): with 2 MiB pages the
    kernel hands out, and later frees, the volume's memory several times faster.
    """

    CHUNK = 4 * 2**20
    #: smaller volumes fault in faster than the thread hand-off pays
    MIN_BYTES = 32 * 2**20

    def __init__(self, pool: ThreadPoolExecutor | None, limit: int | None = None) -> None:
        self.pool = pool  # None: no spare core, nothing is faulted in ahead
        self.limit = limit  # larger estimates are not faulted in (they will open lazily)
        self.frame_bytes = 0  # of the first native image, in output units; -1: gave up
        self.files = 0
        self.buffer: mmap.mmap | None = None
        self.stopping = threading.Event()
        self.job: Future[None] | None = None

    def offer(self, inst: Instance) -> None:
        """Note the first native image's frame size (later headers are ignored)."""
        if self.frame_bytes or inst.pixel_offset is None or not inst.frames:
            return  # decided already, or no native pixels here (an SR, a compressed file)
        if inst.mosaic is not None or inst.samples != 1 or inst.bits_allocated not in (8, 16, 32):
            self.frame_bytes = -1
            return
        lo, hi, integral = _rescaled_range(inst.frames[0])
        itemsize = smallest_dtype(lo, hi, integral, inst.bits_stored).itemsize
        self.frame_bytes = inst.rows * inst.columns * max(1, inst.n_frames) * itemsize
        self._begin()

    def progress(self, done: int, total: int) -> None:
        """The scan's progress: its total is the number of files it parses."""
        if not self.files:
            self.files = total
            self._begin()

    def _begin(self) -> None:
        if self.pool is None or self.buffer is not None or self.frame_bytes <= 0 \
                or not self.files:
            return
        from ._limits import available_memory

        size = self.files * self.frame_bytes
        if size < self.MIN_BYTES or size > available_memory() // 2 \
                or (self.limit is not None and size > self.limit):
            self.frame_bytes = -1
            return
        private = getattr(mmap, "MAP_PRIVATE", 0) | getattr(mmap, "MAP_ANONYMOUS", 0)
        # private: mmap's default for -1 is MAP_SHARED, shared memory pages (slower to fault
        # and to free than the private ones numpy's arrays get)
        self.buffer = mmap.mmap(-1, size, flags=private) if private else mmap.mmap(-1, size)
        if hasattr(mmap, "MADV_HUGEPAGE") and _numpy_hugepages():
            self.buffer.madvise(mmap.MADV_HUGEPAGE)
        self.job = self.pool.submit(self._touch, np.frombuffer(self.buffer, np.uint8))

    def _touch(self, pages: Array) -> None:
        step = mmap.PAGESIZE
        for start in range(0, len(pages), self.CHUNK):
            if self.stopping.is_set():
                return
            pages[start:start + self.CHUNK:step] = 0  # numpy lets the GIL go meanwhile

    def take(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> Array | None:
        """The mapping as an array of ``shape``/``dtype`` when the volume fits it (and
        fills at least half of it), else None; the touching is over when this returns. A
        volume under half of it (a localizer read before its CT) leaves it for a later
        read; one larger than it frees it."""
        buffer = self.release(close=False)
        if buffer is None:
            return None
        count = int(np.prod(shape, dtype=np.int64))
        need = count * np.dtype(dtype).itemsize
        if need > len(buffer):
            buffer.close()
            return None
        if need < len(buffer) // 2:
            self.buffer = buffer
            return None
        keep = -(-need // mmap.PAGESIZE) * mmap.PAGESIZE
        if keep < len(buffer) and hasattr(buffer, "madvise"):
            buffer.madvise(mmap.MADV_DONTNEED, keep, len(buffer) - keep)
        return np.frombuffer(buffer, dtype, count=count).reshape(shape)

    def release(self, close: bool = True) -> mmap.mmap | None:
        """Stop touching (waiting for the chunk under way); the mapping not yet taken is
        unmapped (``close``) or returned."""
        self.stopping.set()
        if self.job is not None:
            self.job.result()
            self.job = None
        buffer, self.buffer = self.buffer, None
        if buffer is not None and close:
            buffer.close()
            return None
        return buffer


class DecodeAhead:
    """Compressed frames decoded while a scan still parses later headers.

    A reader knows the order of the slices, and so where each frame goes in the volume,
    only once every header is parsed. Parsing holds the GIL; the codecs of
    :func:`._decode.decode_into` release it. So, instead of parse-all-then-decode, each
    single-frame file the scan has parsed (:meth:`offer`, the ``on_header`` of
    :func:`~.series.scan`) is decoded at once by the spare cores (all but the one
    parsing) into a frame of its own; :func:`read_volume` (``ahead=``) then copies it into
    the volume (:meth:`take`) instead of decoding it. What the scan outruns is dropped when
    it ends (:meth:`stop`): at most ``max_bytes`` of frames are ever queued, so memory stays
    the volume plus a few frames. A frame the codec declines here goes to pydicom's plugins
    in the read, as it would have without this, and they report the error. For an
    uncompressed series, once the scan's :meth:`progress` says how many files it parses,
    the volume's memory is faulted in meanwhile instead (``_Prefault``): the read takes it
    as its array. Used as a context manager, leaving it (normally, by an error or a
    cancelled worker) ends its threads and frees the frames no read took (:meth:`close`).

    Parameters
    ----------
    threads : int, optional
        Decoding threads; by default all cores but one (``NAPARI_DICOMTOOLS_WORKERS`` minus
        one). With 0 (one core) nothing is decoded ahead: :meth:`offer` does nothing.
    max_bytes : int
        At most this many bytes of decoded frames are ever queued or kept.
    max_volume : int, optional
        An uncompressed volume estimated larger than this is not faulted in ahead, and no
        compressed frame is decoded ahead while the scan's files (at 2 bytes a sample)
        could add up to more (a reader that opens such series lazily passes its
        threshold).

    Examples
    --------
    The scan offers each header, the read takes the frames decoded meanwhile (here all of
    them: without :meth:`stop`, which :meth:`scan` calls when its scan ends, the read waits
    for the frames still queued):

    >>> import tempfile
    >>> from pydicom.uid import RLELossless
    >>> from napari_dicomtools.core.series import scan
    >>> from napari_dicomtools.core.synthetic import phantom, write_series
    >>> tmp = tempfile.mkdtemp()
    >>> truth = write_series(tmp, phantom((4, 16, 16)), transfer_syntax=RLELossless)
    >>> with DecodeAhead(threads=1) as ahead:
    ...     series = scan(tmp, on_header=ahead.offer)
    ...     vol = read_volume(series[0], ahead=ahead)
    >>> bool((vol.array == truth.values).all()), ahead.served
    (True, 4)
    """

    def __init__(self, threads: int | None = None, max_bytes: int = 64 * 2**20,
                 max_volume: int | None = None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        if threads is None:
            threads = decode_workers() - 1
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="dicomtools-ahead") \
            if threads > 0 else None
        self.left = max_bytes
        self.frames: dict[str, Future[Array | None]] = {}
        #: a native series' volume, faulted in meanwhile
        self.memory = _Prefault(self.pool, max_volume)
        self.max_volume = max_volume
        #: frames a read took from here instead of decoding them
        self.served = 0
        self.stopped = False
        self._lock = threading.Lock()

    @classmethod
    def start(cls) -> DecodeAhead | None:
        """One for an eager read on more than one core (None otherwise).

        Returns
        -------
        DecodeAhead or None
            With all cores but one decoding; None on one core.
        """
        workers = decode_workers()
        return cls(workers - 1) if workers > 1 else None

    def offer(self, inst: Instance) -> None:
        """Decode ``inst``'s frame (single-frame, a GIL-free codec) while the budget lasts.

        Parameters
        ----------
        inst : Instance
            A file the scan has just parsed (any other, or one offered after :meth:`stop`,
            is ignored).
        """
        from ._decode import fast_codec

        with self._lock:
            if self.stopped:  # the scan is over, or was cancelled
                return
            self.memory.offer(inst)
            if self.pool is None or inst.n_frames != 1 or fast_codec(inst) is None \
                    or self.left <= 0 or self._lazy(inst):
                return
            self.left -= inst.rows * inst.columns * (inst.bits_allocated // 8)
            self.frames[inst.path] = self.pool.submit(self._decode, inst)

    def _lazy(self, inst: Instance) -> bool:
        """The scan's files, at 2 bytes a sample of ``inst``'s size, exceed ``max_volume``:
        the series may open lazily, and a lazy read never takes the frames decoded here.
        (The scan says how many files it parses after the first one: that one frame is
        decoded whatever comes.)"""
        files = self.memory.files
        return self.max_volume is not None \
            and files * inst.rows * inst.columns * inst.samples * 2 > self.max_volume

    def scan(self, path: PathInput, progress: Progress | None = None) -> SeriesList:
        """:func:`~.series.scan` ``path`` with each parsed file offered here (frames decode,
        or the volume's memory faults in, meanwhile); decoding ahead stops when the scan
        ends, however it ends (:meth:`stop`): the reads that follow take what it did.

        Parameters
        ----------
        path : str, os.PathLike, or list of them
            What :func:`~.series.scan` takes.
        progress : callable, optional
            Also called as ``progress(done, total)`` after each file.

        Returns
        -------
        SeriesList
            What :func:`~.series.scan` returns.
        """
        from .series import scan

        def both(done: int, total: int) -> None:
            self.progress(done, total)
            if progress is not None:
                progress(done, total)

        try:
            return scan(path, on_header=self.offer, progress=both)
        finally:
            self.stop()

    @staticmethod
    def _decode(inst: Instance) -> Array | None:
        """The frame's stored values, or None: the codec declined it or failed (the read
        then goes through pydicom's plugins, which name the reason)."""
        from ._decode import decode_into

        out = np.empty((inst.rows, inst.columns), _stored_dtype(inst))
        try:
            return out if decode_into(inst, out) else None
        except DicomToolsError:
            return None

    def progress(self, done: int, total: int) -> None:
        """The scan's ``progress``: how many files it parses (for an uncompressed series,
        the volume's memory is faulted in meanwhile once that is known).

        Parameters
        ----------
        done, total : int
            Files parsed so far, and in all.
        """
        with self._lock:
            if not self.stopped:
                self.memory.progress(done, total)

    def stop(self) -> None:
        """The scan is over: queued frames are dropped, those being decoded finish (the
        threads end then, once the read has taken the volume's memory faulted in
        meanwhile); later offers are ignored."""
        with self._lock:
            self.stopped = True
            for path, fut in list(self.frames.items()):
                if fut.cancel():
                    del self.frames[path]
        if self.pool is not None:
            self.pool.shutdown(wait=False)

    def close(self) -> None:
        """:meth:`stop`, then wait for the decodes under way (no thread is left behind) and
        free every frame, and the memory, no read took."""
        self.stop()
        self.memory.release()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.frames.clear()

    def __enter__(self) -> DecodeAhead:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def take(self, inst: Instance) -> tuple[bool, Array | None]:
        """A frame decoded here, for the read.

        Parameters
        ----------
        inst : Instance
            A file the scan offered.

        Returns
        -------
        tuple of (bool, numpy.ndarray or None)
            ``(True, stored values)`` when ``inst`` was decoded here (waiting for a decode
            under way), ``(True, None)`` when the codec declined it here, ``(False, None)``
            when it was not tried.
        """
        fut = self.frames.pop(inst.path, None)
        if fut is None:
            return False, None
        got = fut.result()
        if got is not None:
            with self._lock:
                self.served += 1
        return True, got


def _read_at(path: str, offset: int, buffer: memoryview) -> int:
    """Read into ``buffer`` from ``offset`` of the file: one ``open``, ``preadv`` and
    ``close`` where the platform has ``preadv`` (half the CPU of a buffered file object's
    open, seek and readinto, for the small frames of a batch job). Returns the bytes read."""
    if not hasattr(os, "preadv"):
        with open(path, "rb") as f:
            f.seek(offset)
            return f.readinto(buffer)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        got = os.preadv(fd, [buffer], offset)
        while 0 < got < len(buffer):  # a regular file reads short only at its end
            more = os.preadv(fd, [buffer[got:]], offset + got)
            if more <= 0:
                break
            got += more
        return got
    finally:
        os.close(fd)


def _read_native(fr: Frame, out: Array) -> None:
    """Read one frame of native pixel data straight into ``out`` (rescaled in place)."""
    inst = fr.instance
    target, direct = _stored_target(inst, out)
    sdt = target.dtype
    nbytes = inst.rows * inst.columns * sdt.itemsize
    assert inst.pixel_offset is not None  # native frames have one (_Plan.native)
    offset = inst.pixel_offset + (fr.index or 0) * nbytes
    try:
        got = _read_at(inst.source.path, offset, target.reshape(-1).data.cast("B"))
    except OSError as exc:
        raise UnreadableDicomError(inst.path, f"cannot read pixel data: {exc}") from None
    if got != nbytes:
        raise UnreadableDicomError(inst.path, f"truncated: expected {nbytes:,} pixel bytes, "
                                              f"got {got:,}")
    _stored_into(target, direct, fr, out)


def _decode_pydicom(fr: Frame) -> Array:
    """Decode one frame with pydicom (compressed, bit-packed, colour, odd layouts).

    Decoders are chosen explicitly and isolated (see :mod:`._decode`): no malformed file can
    raise anything but :class:`UnreadableDicomError` here, or kill the process.
    """
    from ._decode import decode_frame

    inst = fr.instance
    index = fr.index if inst.n_frames > 1 else None
    palette = inst.photometric == "PALETTE COLOR"
    try:
        arr, ds = decode_frame(inst, index, palette_ds=palette)
        if palette:
            # pydicom.pixels does not list it in __all__: mypy calls it private
            from pydicom.pixels import apply_color_lut  # type: ignore[attr-defined]

            arr = apply_color_lut(arr, ds)
    except DicomToolsError:
        raise
    except FATAL:
        raise
    except BaseException as exc:  # noqa: BLE001 - LUT/decoder oddities: name the file
        where = f" frame {fr.index}" if fr.index is not None else ""
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise UnreadableDicomError(inst.path, f"pixel data{where} cannot be decoded: "
                                              f"{msg}") from None
    if arr.ndim == 3 and inst.samples == 1 and arr.shape[0] == 1:
        arr = arr[0]
    decoded: Array = np.asarray(arr)
    return decoded


def _precise(frames: list[Frame]) -> list[Frame]:
    """Frames rescaled to Philips "precise" values: (SV*RS + RI) / (RS*SS)."""
    from dataclasses import replace

    out = []
    for f in frames:
        ss = f.philips_scale_slope
        if ss:
            out.append(replace(f, slope=1.0 / ss, intercept=f.intercept / (f.slope * ss)))
        else:
            out.append(f)
    return out


def _plan(series: Series, philips_precise: bool = False) -> _Plan:
    check_geometry(series)  # writers that stream frames start here too
    frames = _precise(series.frames) if philips_precise else series.frames
    inst0 = frames[0].instance
    rgb = series.is_rgb
    palette = inst0.photometric == "PALETTE COLOR"
    shape = (inst0.rows, inst0.columns) + ((3,) if rgb else ())
    if rgb:
        if palette:  # applied LUT colours, 16-bit entries scaled to 8 bits
            dtype = np.dtype(np.uint8)
        else:
            dtype = np.dtype({8: np.uint8, 16: np.uint16}.get(inst0.bits_allocated, np.uint32))
        return _Plan(frames, dtype, shape, 0, float(np.iinfo(dtype).max), True, palette)
    lo, hi = np.inf, -np.inf
    integral = True
    seen: set[tuple[float, float, int, int, int]] = set()
    for fr in frames:
        key = (fr.slope, fr.intercept, fr.instance.bits_stored,
               fr.instance.pixel_representation, fr.instance.bits_allocated)
        if key in seen:
            continue
        seen.add(key)
        a, b, whole = _rescaled_range(fr)
        lo, hi = min(lo, a), max(hi, b)
        integral = integral and whole
    bits = max(f.instance.bits_stored for f in frames[:1])
    dtype = smallest_dtype(lo, hi, integral, bits)
    return _Plan(frames, dtype, shape, float(lo), float(hi), False, False)


class _Prefetch:
    """Decodes, in the background, the frames next to the one last asked for, so the next
    slider step finds its slice decoded (compressed series only; a native frame reads in a
    fraction of a millisecond).

    After a request for frame ``i`` the ``ahead`` frames in the direction the slider last
    moved and ``behind`` frames the other way are decoded by a small shared thread pool, at
    most ``keep`` decoded frames stay (least recently used go first), and queued work that
    fell out of the window is dropped. A request never waits for prefetching, except for a
    frame being decoded at that moment, which it takes instead of decoding it twice. A frame
    that fails here is simply not kept: the request decodes it and reports the error.
    """

    _pool: ThreadPoolExecutor | None = None
    _pool_lock = threading.Lock()

    def __init__(self, plan: _Plan, ahead: int = 4, behind: int = 1, keep: int = 16):
        self.plan = plan
        self.n = len(plan.frames)
        self.ahead, self.behind, self.keep = ahead, behind, max(keep, ahead + behind + 1)
        self.lock = threading.Lock()
        self.cache: OrderedDict[int, Array] = OrderedDict()  # frame index -> decoded frame
        self.pending: dict[int, Future[Array | None]] = {}  # frame index -> its decoding
        self.last: int | None = None
        self.step = 1
        self.window: set[int] = set()

    @classmethod
    def executor(cls) -> ThreadPoolExecutor:
        from concurrent.futures import ThreadPoolExecutor

        with cls._pool_lock:
            if cls._pool is None:
                cls._pool = ThreadPoolExecutor(max(1, min(decode_workers(), 2)),
                                               thread_name_prefix="dicomtools-prefetch")
            return cls._pool

    def take(self, i: int, out: Array) -> bool:
        """Copy frame ``i`` into ``out`` if it is decoded (or being decoded: wait for it)."""
        with self.lock:
            arr = self.cache.get(i)
            fut = self.pending.get(i) if arr is None else None
            if arr is not None:
                self.cache.move_to_end(i)
        if arr is None and fut is not None:
            if fut.running():
                arr = fut.result()  # a frame is never decoded twice at once
            elif fut.cancel():  # still queued: the caller decodes it now
                with self.lock:
                    self.pending.pop(i, None)
            elif fut.done():
                arr = fut.result()
        if arr is None:
            return False
        out[...] = arr
        return True

    def around(self, i: int) -> None:
        """Frame ``i`` was asked for: queue its neighbours, drop queued work now out of
        range."""
        with self.lock:
            if self.last is not None and i != self.last:
                self.step = 1 if i > self.last else -1
            self.last = i
            order = [i + self.step * k for k in range(1, self.ahead + 1)]
            order += [i - self.step * k for k in range(1, self.behind + 1)]
            want = [j for j in order if 0 <= j < self.n]
            self.window = set(want) | {i}
            for j, fut in list(self.pending.items()):
                if j not in self.window and fut.cancel():
                    del self.pending[j]
            todo = [j for j in want if j not in self.cache and j not in self.pending]
            for j in todo:
                self.pending[j] = self.executor().submit(self._decode, j)

    def _decode(self, j: int) -> Array | None:
        with self.lock:
            wanted = j in self.window
        arr = None
        if wanted:
            out = np.empty(self.plan.frame_shape, self.plan.out_dtype)
            if _read_frame_safely(self.plan, j, out) is None:
                arr = out
        with self.lock:
            self.pending.pop(j, None)
            if arr is not None:
                self.cache[j] = arr
                self.cache.move_to_end(j)
                while len(self.cache) > self.keep:
                    self.cache.popitem(last=False)
        return arr

    def idle(self, timeout: float | None = None) -> None:
        """Wait until no prefetch is queued or running (for tests and benchmarks)."""
        from concurrent.futures import wait

        with self.lock:
            futs = list(self.pending.values())
        wait(futs, timeout=timeout)


class _LazyFrames:
    """An array-like over a series' frames for :func:`dask.array.from_array`; a compressed
    series decodes the neighbours of each requested frame ahead (:class:`_Prefetch`)."""

    def __init__(self, plan: _Plan, shape: tuple[int, ...]):
        self.plan = plan
        self.shape = shape
        self.dtype = plan.out_dtype
        self.ndim = len(shape)
        self.prefetch = _Prefetch(plan) if len(plan.frames) > 1 and plan.compressed() \
            else None

    def __getstate__(self) -> dict[str, Any]:  # a distributed scheduler pickles the graph
        return {**self.__dict__, "prefetch": None}  # no locks

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if len(self.plan.frames) > 1 and self.plan.compressed():
            self.prefetch = _Prefetch(self.plan)

    def __getitem__(self, key: Any) -> Array:
        # dask asks for blocks of one frame: key is a tuple of slices
        if not isinstance(key, tuple):
            key = (key,)
        n_lead = len(self.shape) - len(self.plan.frame_shape)
        lead_shape = self.shape[:n_lead]
        idx = np.arange(int(np.prod(lead_shape))).reshape(lead_shape)[key[:n_lead]]
        out = np.empty(idx.shape + self.plan.frame_shape, self.dtype)
        flat = out.reshape((-1,) + self.plan.frame_shape)
        pre = self.prefetch
        for j, i in enumerate(idx.reshape(-1)):
            i = int(i)
            if pre is not None:
                pre.around(i)
                if pre.take(i, flat[j]):
                    continue
            err = _read_frame_safely(self.plan, i, flat[j],
                                     threads=decode_workers() if len(flat) == 1 else 1)
            if err is not None:  # as the eager read does: a blank frame and a warning
                flat[j] = self.plan.lo if not self.plan.rgb else 0
                warnings.warn(f"frame left blank: {err}", stacklevel=2)
        return out[(Ellipsis,) + tuple(key[n_lead:])] if len(key) > n_lead else out


def _metadata(series: Series, plan: _Plan) -> dict[str, Any]:
    inst0 = series.first
    window = None
    w = series.frames[0].window
    if w is not None and not plan.rgb:
        window = (float(w.center), float(w.width))
    return {
        "name": series.name,
        "series_uid": series.uid,
        "split": series.split,
        "study_uid": series.study_uid,
        "frame_of_reference": series.frame_of_reference,
        "modality": series.modality,
        "patient_name": series.patient_name,
        "patient_id": series.patient_id,
        "study_date": series.study_date,
        "study_description": series.study_description,
        "series_description": series.description,
        "series_number": series.number,
        "orientation": series.orientation_label,
        "n_time": series.n_time,
        "rgb": plan.rgb,
        "units": inst0.units,
        "window": window,
        "value_range": (plan.lo, plan.hi),
        "photometric": inst0.photometric,
        "transfer_syntax": inst0.transfer_syntax,
        "has_geometry": series.has_geometry,
        "tilt_deg": series.order.tilt_deg if series.order is not None else 0.0,
        "problems": list(series.problems),
        "skipped": [str(s) for s in series.skipped],
        "files": series.files,
        "header": dict(inst0.header),
    }


def read_volume(path_or_series: Series | os.PathLike[str] | str, lazy: bool = False, *,
                progress: Progress | None = None,
                correct_tilt: bool = False, philips_precise: bool = False,
                uniform_spacing: bool = False, ahead: DecodeAhead | None = None) -> Volume:
    """Read one image series as a :class:`Volume` in real units and patient geometry.

    Parameters
    ----------
    path_or_series : str, os.PathLike or Series
        A file, folder, ``.zip`` or DICOMDIR holding exactly one series, or a :class:`Series`
        from :func:`scan` (use that when a folder holds several).
    lazy : bool
        Return a dask array that decodes each frame when it is first needed.
    progress : callable, optional
        ``progress(done, total)`` while frames are read (eager reads only).
    correct_tilt : bool
        Resample a gantry-tilted series onto an orthogonal grid (see :func:`correct_tilt`);
        by default the true sheared geometry is kept in the affine.
    philips_precise : bool
        Philips MR only: return "precise" floating-point values ``(SV*RS + RI) / (RS*SS)``
        with the private ScaleSlope SS (2005,100E), comparable across scans, instead of the
        standard's RescaleSlope/Intercept display values (the default, as DICOM defines).
    uniform_spacing : bool
        Resample a stack with gaps or non-uniform spacing onto uniform slices (see
        :func:`resample_uniform`); by default it is stacked as acquired and reported.
    ahead : DecodeAhead, optional
        The frames decoded while the series was scanned (``scan(path,
        on_header=ahead.offer)``): an eager read takes them instead of decoding them again.
        With a path, the scan offers its files to ``ahead`` instead of a DecodeAhead of
        read_volume's own (one is made for every eager read of a path).

    Returns
    -------
    Volume
        The pixels (numpy, or dask when ``lazy``) with spacing, origin, direction, metadata
        and the series they came from.

    Raises
    ------
    NoSeriesError
        The path holds no loadable image (``err.skipped`` says why for each file).
    DicomToolsError
        The path holds several series (the message lists them), or decoding failed.

    Examples
    --------
    pydicom's bundled CT slice (one 128x128 axial slice, 5 mm thick):

    >>> from pydicom.data import get_testdata_file
    >>> vol = read_volume(get_testdata_file("CT_small.dcm"))
    >>> vol.array.shape, vol.spacing
    ((1, 128, 128), (5.0, 0.661468, 0.661468))
    >>> vol.metadata["units"], int(vol.array.min())
    ('HU', -896)
    """
    own = None  # a DecodeAhead made here is closed here
    if not isinstance(path_or_series, Series) and ahead is None \
            and (not lazy or correct_tilt or uniform_spacing):  # eager: decode while scanning
        ahead = own = DecodeAhead.start()
    try:
        if isinstance(path_or_series, Series):
            series = path_or_series
        else:
            series = _the_image_series(path_or_series, ahead)
        return _read_volume(series, lazy, progress, correct_tilt, philips_precise,
                            uniform_spacing, ahead)
    finally:
        if own is not None:  # threads ended; frames and memory no read took freed
            own.close()
        elif ahead is not None:  # the caller's: the memory no read took is unmapped
            ahead.memory.release()


def _read_volume(series: Series, lazy: bool, progress: Progress | None, correct_tilt: bool,
                 philips_precise: bool, uniform_spacing: bool,
                 ahead: DecodeAhead | None) -> Volume:
    """:func:`read_volume` once its series is known."""
    if series.kind in NO_IMAGE_KINDS:
        raise DicomToolsError(series.first.path, f"a {series.kind} holds no image (read it "
                                                 "with read_rtstruct or read_sr)")
    vol = _read_series(series, lazy=lazy and not (correct_tilt or uniform_spacing),
                       progress=progress, philips_precise=philips_precise, ahead=ahead)
    if uniform_spacing:
        vol = resample_uniform(vol)
    if correct_tilt and vol.metadata.get("tilt_deg"):
        vol = globals()["correct_tilt"](vol)
    return vol


def _scan_with(path: os.PathLike[str] | str, ahead: DecodeAhead | None) -> SeriesList:
    """:func:`~.series.scan`, each parsed file offered to ``ahead`` to decode meanwhile
    (which stops when the scan ends)."""
    from .series import scan

    return scan(path) if ahead is None else ahead.scan(path)


def _the_image_series(path: os.PathLike[str] | str, ahead: DecodeAhead | None) -> Series:
    """The one image series under ``path`` (``ahead`` decodes frames while it is scanned).

    Raises
    ------
    NoSeriesError
        No image series (only RTSTRUCT/SR objects, or nothing loadable: the reasons).
    DicomToolsError
        More than one image series (listed).
    """
    found = _scan_with(path, ahead)
    objects = [s for s in found if s.kind in NO_IMAGE_KINDS]  # RTSTRUCT, SR: no image
    found[:] = [s for s in found if s.kind not in NO_IMAGE_KINDS]
    if not found:
        if objects:
            raise NoSeriesError(path, f"holds no image, only {objects[0].kind} "
                                f"{objects[0].name!r} (read it with read_rtstruct or "
                                "read_sr)", found.skipped)
        reasons = "; ".join(str(s) for s in found.skipped[:5]) or "no files"
        raise NoSeriesError(path, f"no loadable DICOM image ({reasons})", found.skipped)
    if len(found) > 1:
        listing = "\n  ".join(s.label for s in found)
        raise DicomToolsError(
            path, f"holds {len(found)} series; pick one from "
                  f"napari_dicomtools.scan(path) or use read_volumes():\n  {listing}")
    return found[0]


def _slice_positions(volume: Volume) -> Array:
    """LPS position of each slice's first voxel (from the files when known)."""
    positions = volume.file_positions
    if positions is not None:
        return positions
    n = volume.spatial_shape[0]
    d = np.asarray(volume.direction, float)
    stepped: Array = np.asarray(volume.origin, float) + np.outer(np.arange(n),
                                                                d[:, 0] * volume.spacing[0])
    return stepped


@dataclass
class _StackGeometry:
    """Where each slice of a stack really is, relative to its first slice."""

    normal: Array  # unit LPS normal of the slices, pointing from the first to the last
    col_dir: Array  # LPS direction of increasing row index
    row_dir: Array  # LPS direction of increasing column index
    first: Array  # LPS position of the first slice's first voxel
    along: Array  # each slice's distance along the normal (mm)
    off_r: Array  # each slice's in-plane shift, in rows
    off_c: Array  # and in columns
    median_step: float
    sheared: bool  # slices shifted in-plane (gantry tilt)
    regular: bool  # evenly spaced along the normal


def _stack_geometry(volume: Volume) -> _StackGeometry:
    d = np.asarray(volume.direction, float)
    col_dir, row_dir = d[:, 1], d[:, 2]
    normal = np.cross(row_dir, col_dir)
    normal /= np.linalg.norm(normal)
    pos = _slice_positions(volume)
    rel = pos - pos[0]
    along = rel @ normal
    if along[-1] < 0:
        normal, along = -normal, -along
    off_r = (rel @ col_dir) / volume.spacing[1]
    off_c = (rel @ row_dir) / volume.spacing[2]
    steps = np.diff(along)
    med = geometry.median(steps) if len(steps) else float(volume.spacing[0])
    sheared = bool(np.max(np.abs(off_r)) > 1e-3 or np.max(np.abs(off_c)) > 1e-3)
    regular = bool(len(steps) == 0 or np.all(np.abs(steps - med) <= max(0.01, 0.01 * med)))
    return _StackGeometry(normal, col_dir, row_dir, pos[0], along, off_r, off_c, float(med),
                          sheared, regular)


def _fill_value(volume: Volume, arr: Array) -> float:
    """The value of voxels outside the acquired slab: the lowest in use (air for CT)."""
    fill = float(volume.metadata.get("value_range", (float(arr.min()), 0))[0])
    if volume.metadata.get("units") == "HU":
        fill = max(fill, -1024.0)
    return fill


def _align_slices(arr: Array, g: _StackGeometry, fill: float, order: int) -> Array:
    """Each slice shifted in-plane onto the first slice's axis, on a canvas that holds
    every shifted slice whole (float32)."""
    from scipy import ndimage

    n, rows, cols = arr.shape
    min_r, min_c = float(g.off_r.min()), float(g.off_c.min())
    new_rows = rows + int(np.ceil(g.off_r.max() - min_r - 1e-6))
    new_cols = cols + int(np.ceil(g.off_c.max() - min_c - 1e-6))
    aligned = np.empty((n, new_rows, new_cols), np.float32)
    canvas = np.empty((new_rows, new_cols), np.float32)
    for k in range(n):
        canvas[:] = fill
        canvas[:rows, :cols] = arr[k]
        if g.off_r[k] - min_r or g.off_c[k] - min_c:
            aligned[k] = ndimage.shift(canvas, (g.off_r[k] - min_r, g.off_c[k] - min_c),
                                       order=order, mode="constant", cval=fill)
        else:
            aligned[k] = canvas
    return aligned


def _interpolate_slices(aligned: Array, along: Array, step: float) -> Array:
    """Slices every ``step`` mm from the first to the last, linear between the acquired
    slices at distances ``along``."""
    n = len(aligned)
    m = int(np.floor((along[-1] - along[0]) / step + 1e-6)) + 1
    targets = along[0] + step * np.arange(m)
    hi = np.clip(np.searchsorted(along, targets, side="left"), 1, n - 1)
    lo = hi - 1
    w = ((targets - along[lo]) / np.maximum(along[hi] - along[lo], 1e-9))[:, None, None]
    out: Array = aligned[lo] * (1 - w) + aligned[hi] * w
    return out


def _regularized_metadata(volume: Volume, g: _StackGeometry, uniform: bool, n_out: int,
                          step: float) -> dict[str, Any]:
    """The metadata of a regularized volume: what was done, among its problems."""
    meta = dict(volume.metadata)
    notes = [p for p in meta.get("problems", []) if "tilt" not in p]
    if g.sheared:
        notes.append(f"gantry tilt of {meta.get('tilt_deg', 0):.2f} degrees corrected by "
                     "resampling")
        meta["tilt_corrected"] = True
    if uniform and not g.regular:
        notes.append(f"resampled to {n_out} uniform slices of {step:.4g} mm "
                     f"(from {volume.spatial_shape[0]} acquired)")
        meta["resampled_uniform"] = True
    meta["problems"] = notes
    return meta


def regularize(volume: Volume, spacing: float | None = None, *, uniform: bool = True,
               order: int = 1) -> Volume:
    """Resample a stack onto an orthogonal, uniform grid from each slice's true position.

    Every slice is shifted in-plane by its offset from the first slice's axis (gantry tilt),
    then, with ``uniform``, slices are interpolated at ``spacing`` mm along the plane normal
    from the first to the last slice (gaps, changing spacing). The new grid covers every
    acquired voxel (as dcm2niix's tilt correction); voxels outside the acquired slab get the
    lowest value in use (air for CT).

    Parameters
    ----------
    volume : Volume
        A 3D grayscale volume (eager or lazy; it is loaded).
    spacing : float, optional
        The new slice spacing (mm); default the median step between acquired slices.
    uniform : bool
        Interpolate onto evenly spaced slices (else only the tilt is corrected).
    order : int
        Spline order of the in-plane shift (0 nearest, 1 linear, 3 cubic).

    Returns
    -------
    Volume
        ``volume`` itself when there is nothing to do; else a new volume (same dtype,
        integers rounded) with an orthogonal direction and no ``series`` (its voxels no
        longer sit where the files put them); ``metadata["problems"]`` says what was done.

    Raises
    ------
    DicomToolsError
        ``volume`` is colour or 4D.

    Examples
    --------
    A stack whose slices step 10 degrees off the normal (gantry tilt):

    >>> import numpy as np
    >>> t = np.deg2rad(10.0)
    >>> d = np.array([[0, 0, 1], [np.sin(t), 1, 0], [np.cos(t), 0, 0]])  # slice, row, col
    >>> vol = Volume(np.zeros((4, 8, 8), np.int16), (2.0, 1.0, 1.0), np.zeros(3), d)
    >>> flat = regularize(vol)
    >>> flat.array.shape, [round(s, 3) for s in flat.spacing]
    ((4, 10, 8), [1.97, 1.0, 1.0])
    """
    if volume.rgb or volume.n_time > 1:
        raise DicomToolsError(None, "tilt/spacing regularization is for 3D grayscale volumes")
    g = _stack_geometry(volume)
    step = float(spacing or g.median_step)
    if not g.sheared and (g.regular or not uniform) and spacing is None:
        return volume
    arr = np.asarray(volume.array)
    n = arr.shape[0]
    aligned = _align_slices(arr, g, _fill_value(volume, arr), order)
    if uniform and (not g.regular or spacing is not None) and n > 1:
        out = _interpolate_slices(aligned, g.along, step)
    else:
        out = aligned
        step = g.median_step if n > 1 else float(volume.spacing[0])
    if arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        out = np.clip(np.round(out), info.min, info.max).astype(arr.dtype)
    origin = g.first + float(g.off_r.min()) * volume.spacing[1] * g.col_dir \
        + float(g.off_c.min()) * volume.spacing[2] * g.row_dir
    meta = _regularized_metadata(volume, g, uniform, out.shape[0], step)
    direction = np.column_stack([g.normal, g.col_dir, g.row_dir])
    # the voxels no longer sit where the files put them: the result carries no series
    return Volume(out, (step, volume.spacing[1], volume.spacing[2]), origin, direction, meta,
                  None)


def correct_tilt(volume: Volume, order: int = 1) -> Volume:
    """Resample a gantry-tilted (sheared) stack onto an orthogonal grid, like dcm2niix's
    tilt correction (slices keep their spacing; see :func:`regularize`).

    Parameters
    ----------
    volume : Volume
        A 3D grayscale volume.
    order : int
        Spline order of the in-plane shift.

    Returns
    -------
    Volume
        ``volume`` itself when it has no tilt, else the resampled volume.

    Raises
    ------
    DicomToolsError
        ``volume`` is colour or 4D.

    Examples
    --------
    >>> import numpy as np
    >>> straight = Volume(np.zeros((3, 4, 4), np.int16), (2.0, 1.0, 1.0), np.zeros(3),
    ...                   np.eye(3))
    >>> correct_tilt(straight) is straight
    True
    """
    return regularize(volume, uniform=False, order=order)


def resample_uniform(volume: Volume, spacing: float | None = None) -> Volume:
    """Resample a stack with gaps or non-uniform spacing onto uniform slices (and onto an
    orthogonal grid when it is also tilted); see :func:`regularize`.

    Parameters
    ----------
    volume : Volume
        A 3D grayscale volume.
    spacing : float, optional
        The new slice spacing (mm); default the median step.

    Returns
    -------
    Volume
        ``volume`` itself when it is already uniform (and no ``spacing`` is asked for),
        else the resampled volume.

    Raises
    ------
    DicomToolsError
        ``volume`` is colour or 4D.

    Examples
    --------
    >>> import numpy as np
    >>> vol = Volume(np.arange(3 * 4 * 4, dtype=np.int16).reshape(3, 4, 4), (2.0, 1.0, 1.0),
    ...              np.zeros(3), np.eye(3))
    >>> fine = resample_uniform(vol, spacing=1.0)
    >>> fine.array.shape, fine.spacing[0]
    ((5, 4, 4), 1.0)
    """
    return regularize(volume, spacing, uniform=True)


def read_volumes(path: os.PathLike[str] | str, lazy: bool = False, *,
                 progress: Progress | None = None) -> list[Volume]:
    """Every image series under ``path`` as a :class:`Volume`.

    A series that cannot be read is skipped with a warning naming the file and the reason;
    annotation objects (RTSTRUCT, SR) are left out.

    Parameters
    ----------
    path : str or os.PathLike
        A file, folder, ``.zip`` or DICOMDIR.
    lazy : bool
        Dask arrays decoded on demand (see :func:`read_volume`).
    progress : callable, optional
        ``progress(done, total)`` per series' frames (eager reads only).

    Returns
    -------
    list of Volume
        In :func:`~.series.scan` order.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> [v.array.shape for v in read_volumes(get_testdata_file("CT_small.dcm"))]
    [(1, 128, 128)]
    """
    out = []
    ahead = None if lazy else DecodeAhead.start()
    try:
        found = _scan_with(path, ahead)
        for s in found:
            if s.kind in NO_IMAGE_KINDS:  # RTSTRUCT, SR: no image to read
                continue
            try:
                out.append(_read_series(s, lazy=lazy, progress=progress, ahead=ahead))
            except DicomToolsError as exc:
                warnings.warn(str(exc), stacklevel=2)
    finally:
        if ahead is not None:  # threads ended; frames and memory no read took freed
            ahead.close()
    return out


def _numpy_hugepages() -> bool:
    """Whether numpy advises transparent huge pages for its large arrays (its default on
    Linux; ``NUMPY_MADVISE_HUGEPAGE=0`` turns it off), so memory mapped here follows the
    same policy as the arrays numpy allocates."""
    core = getattr(np, "_core", None) or getattr(np, "core", None)
    getter = getattr(getattr(core, "multiarray", None), "_get_madvise_hugepage", None)
    return bool(getter()) if getter is not None else False


def _read_all(plan: _Plan, flat: Array,
              progress: Progress | None = None) -> list[tuple[int, DicomToolsError]]:
    """Decode every frame into ``flat`` (n, ...); returns the errors of frames that failed.

    Series in a syntax whose decoder holds the GIL decode in worker processes
    (:func:`_decode_in_processes`); the others in threads (file reads, imagecodecs' and
    Pillow's decoders and numpy's integer ops release the GIL, so frames decode side by side
    straight into ``flat``: no worker start-up, no frame pickled back).
    """
    from concurrent.futures import ThreadPoolExecutor

    n = len(flat)
    failures: list[tuple[int, DicomToolsError]] = []
    workers = decode_workers()
    ex = None
    results: Iterable[tuple[int, DicomToolsError | None]]
    if plan.in_processes(workers):
        results = ((i, _place_safely(plan, i, got, flat[i]))
                   for i, got in _decode_in_processes(plan, range(n), workers))
    else:
        def one(i: int) -> tuple[int, DicomToolsError | None]:
            return i, _read_frame_safely(plan, i, flat[i])

        if n > 8 and workers > 1:
            # decoding is CPU-bound: a thread per core; native reads are I/O: at most 4
            ex = ThreadPoolExecutor(workers if plan.compressed() else min(workers, 4))
        results = ex.map(one, range(n)) if ex is not None else map(one, range(n))
    try:
        for k, (i, err) in enumerate(results):
            if err is not None:
                failures.append((i, err))
            if progress is not None:
                progress(k + 1, n)
    finally:
        if ex is not None:
            ex.shutdown(wait=True, cancel_futures=True)
    return failures


def _decode_task(fr: Frame) -> tuple[bool, Array | tuple[str | None, str]]:
    """Worker-process task: decode one frame; ``(True, stored values)`` or ``(False, (path,
    reason))`` (errors travel as data: a DicomToolsError does not unpickle)."""
    try:
        return True, _decode_pydicom(fr)
    except DicomToolsError as exc:
        return False, (exc.path, exc.reason)
    except FATAL:
        raise
    except BaseException as exc:  # noqa: BLE001 - never let one frame kill the worker
        msg = " ".join(str(exc).split()) or type(exc).__name__
        return False, (fr.instance.path, f"pixel data cannot be read ({type(exc).__name__}: "
                                         f"{msg})")


def _decode_in_processes(plan: _Plan, indices: Iterable[int], workers: int
                         ) -> Iterator[tuple[int, Decoded]]:
    """Yield ``(i, got)`` for ``indices`` in order, decoded by the shared worker pool with at
    most ``4 * workers`` frames in flight; ``got`` is the decoded frame, an
    :class:`UnreadableDicomError`, or None: decode it here (a worker died, e.g. a decoder
    crashed, and the pool is gone: the remaining frames take the in-process path)."""
    from collections import deque
    from concurrent.futures.process import BrokenProcessPool

    todo = iter(indices)
    pending: deque[tuple[int, Future[tuple[bool, Any]]]] = deque()
    broken = False
    try:
        pool = process_pool(workers)

        def submit() -> bool:
            for i in todo:
                pending.append((i, pool.submit(_decode_task, plan.frames[i])))
                return True
            return False

        for _ in range(4 * workers):
            if not submit():
                break
        while pending:
            i, fut = pending.popleft()
            try:
                ok, val = fut.result()
            except BrokenProcessPool:
                pending.appendleft((i, fut))  # this frame too is decoded here
                broken = True
                break
            yield i, (val if ok else UnreadableDicomError(*val))
            submit()
    except (BrokenProcessPool, RuntimeError, OSError, AssertionError):
        broken = True  # the pool cannot start or submit (AssertionError: in a daemon)
    finally:
        for _, fut in pending:
            fut.cancel()
    if broken:
        discard_pool()
        for i, _ in pending:
            yield i, None
        for i in todo:
            yield i, None


def _place_safely(plan: _Plan, i: int, got: Decoded, out: Array) -> DicomToolsError | None:
    """Place what a worker decoded for frame ``i`` (see :func:`_decode_in_processes`)."""
    if got is None:
        return _read_frame_safely(plan, i, out)
    if isinstance(got, DicomToolsError):
        return got
    try:
        plan.place(i, got, out)
        return None
    except DicomToolsError as exc:
        return exc


def _iter_frames(plan: _Plan, ahead: int = 4) -> Iterator[Array]:
    """Every frame of ``plan`` in order, decoded ahead (worker processes or two threads) with
    at most a few frames waiting, for writers that stream (memory stays at a few slices).
    Raises the first frame's error."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    n = len(plan.frames)
    workers = decode_workers()
    if plan.in_processes(workers):
        for i, got in _decode_in_processes(plan, range(n), workers):
            out = np.empty(plan.frame_shape, plan.out_dtype)
            err = _place_safely(plan, i, got, out)
            if err is not None:
                raise err
            yield out
        return
    if workers == 1 and not plan.compressed():
        # one worker wanted (a Dask worker of a batch job: the parallelism is outside) and
        # nothing to decode: frames read in order, without a pool (its threads and hand-offs
        # cost a small series a quarter of its conversion CPU)
        for i in range(n):
            yield plan.read_frame(i)
        return
    # at most `ahead` decoded frames wait for the writer: Executor.map would submit all of
    # them at once, and behind a slow gzip writer the whole volume piled up in memory
    with ThreadPoolExecutor(2) as ex:
        pending = deque(ex.submit(plan.read_frame, i) for i in range(min(ahead, n)))
        nxt = len(pending)
        try:
            while pending:
                frame = pending.popleft().result()
                if nxt < n:
                    pending.append(ex.submit(plan.read_frame, nxt))
                    nxt += 1
                yield frame
        finally:
            for f in pending:
                f.cancel()


class FrameStream(NamedTuple):
    """A series decoded frame by frame (:func:`stream_frames`), for writers that stream.

    Parameters
    ----------
    frame_shape : tuple of int
        The shape of one frame: ``(rows, columns)``, ``(rows, columns, 3)`` for colour.
    dtype : numpy.dtype
        The frames' dtype: for grey images the smallest that holds the rescaled values
        exactly (what :func:`read_volume` gives); for colour the stored sample depth.
    rgb : bool
        Colour frames (RGB, YBR or palette colour applied).
    frames : iterator of ndarray
        Every frame of ``series.frames`` in order (slices, then time points, as
        :func:`read_volume`'s array flattened), decoded a few frames ahead of the reader.

    Examples
    --------
    >>> FrameStream((4, 4), np.dtype(np.int16), False, iter([])).frame_shape
    (4, 4)
    """

    frame_shape: tuple[int, ...]
    dtype: np.dtype[Any]
    rgb: bool
    frames: Iterator[Array]


def stream_frames(series: Series, *, philips_precise: bool = False) -> FrameStream:
    """Decode a series one frame at a time, in output units, holding only a few frames.

    What :func:`read_volume` computes, without the whole volume in memory: the same values
    (rescaled, in the same dtype), frame by frame, decoded ahead in
    worker processes or threads. The NIfTI writer streams series this way.

    Parameters
    ----------
    series : Series
        A series of :func:`~napari_dicomtools.core.series.scan`.
    philips_precise : bool
        Philips MR: precise floating-point values (private ScaleSlope).

    Returns
    -------
    FrameStream
        The frames' shape and dtype (known before any frame is decoded) and the frames.

    Raises
    ------
    GeometryError
        The slices cannot be stacked (as :func:`check_geometry`), before any decoding.
    DicomToolsError
        From the iterator: the first frame that cannot be read, naming its file.

    Examples
    --------
    >>> import tempfile
    >>> from napari_dicomtools.core.series import scan
    >>> from napari_dicomtools.core.synthetic import phantom, write_series
    >>> tmp = tempfile.mkdtemp()
    >>> _ = write_series(tmp, phantom((3, 8, 8)))
    >>> (series,) = scan(tmp)
    >>> stream = stream_frames(series)
    >>> stream.frame_shape, stream.dtype
    ((8, 8), dtype('int16'))
    >>> frames = list(stream.frames)
    >>> len(frames), bool(np.array_equal(np.stack(frames), read_volume(series).array))
    (3, True)
    """
    plan = _plan(series, philips_precise)
    return FrameStream(plan.frame_shape, plan.out_dtype, plan.rgb, _iter_frames(plan))


def _read_frame_safely(plan: _Plan, i: int, out: Array,
                       threads: int = 1) -> DicomToolsError | None:
    """Decode frame ``i`` into ``out``; the error (always a DicomToolsError) or None."""
    try:
        plan.read_frame(i, out, threads)
        return None
    except DicomToolsError as exc:
        return exc
    except FATAL:
        raise
    except BaseException as exc:  # noqa: BLE001 - never let one frame escape as a crash
        fr = plan.frames[i]
        where = f" frame {fr.index}" if fr.index is not None else ""
        msg = " ".join(str(exc).split()) or type(exc).__name__
        return UnreadableDicomError(fr.instance.path, f"pixel data{where} cannot be read "
                                                      f"({type(exc).__name__}: {msg})")


def check_geometry(series: Series) -> None:
    """Refuse a series whose spacing, origin or direction cannot be right.

    Parameters
    ----------
    series : Series
        From :func:`~.series.scan`.

    Raises
    ------
    GeometryError
        Zero, negative or non-finite spacing, a non-finite origin, or a singular or
        non-finite direction matrix (the message names the first file and the value).

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> from napari_dicomtools.core.series import scan
    >>> check_geometry(scan(get_testdata_file("CT_small.dcm"))[0])  # nothing to say
    """
    path = series.first.path
    try:
        sp = np.asarray(series.spacing, float)
        origin = np.asarray(series.origin, float)
        d = np.asarray(series.direction, float)
    except GeometryError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. parallel cosines in slice_normal
        raise GeometryError(path, f"geometry cannot be computed ({exc})") from None
    if sp.shape != (3,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise GeometryError(path, f"voxel spacing {tuple(sp.tolist())} mm is not positive "
                                  "and finite")
    if not np.all(np.isfinite(origin)):
        raise GeometryError(path, f"origin {tuple(origin.tolist())} is not finite")
    if d.shape != (3, 3) or not np.all(np.isfinite(d)) or abs(np.linalg.det(d)) < 1e-6:
        raise GeometryError(path, "slice, row and column directions do not span 3D space")


def _read_series(series: Series, lazy: bool, progress: Progress | None = None,
                 philips_precise: bool = False, ahead: DecodeAhead | None = None) -> Volume:
    """Decode ``series`` into a :class:`Volume` (taking the frames ``ahead`` decoded during
    the scan); raises only :class:`DicomToolsError`."""
    try:
        return _read_series_unchecked(series, lazy, progress, philips_precise, ahead)
    except DicomToolsError:
        raise
    except MemoryError:
        raise UnreadableDicomError(series.first.path, f"series {series.name!r} does not fit "
                                                      "in memory") from None
    except FATAL:
        raise
    except BaseException as exc:  # noqa: BLE001 - one bad series must not stop the others
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise UnreadableDicomError(series.first.path, f"series {series.name!r} cannot be "
                                                      f"read ({type(exc).__name__}: {msg})") \
            from None


def _dask_name(series: Series, philips_precise: bool) -> str:
    """A dask key unique to this file set, its order and the read options.

    Two file sets sharing a SeriesInstanceUID, or the same files read with other options,
    must never share cached chunks.
    """
    import hashlib

    h = hashlib.sha1(usedforsecurity=False)
    h.update(f"{series.uid}\0{series.split}\0{int(bool(philips_precise))}\0".encode())
    stats: dict[str, str] = {}
    for f in series.frames:
        src = f.instance.source
        if src.path not in stats:
            try:
                st = os.stat(src.path)
                stats[src.path] = f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
            except OSError:
                stats[src.path] = "?"
        h.update(f"{src}\0{f.index}\0{stats[src.path]}\0".encode("utf-8", "surrogateescape"))
    return f"dicom-{h.hexdigest()}"


def _read_series_unchecked(series: Series, lazy: bool, progress: Progress | None = None,
                           philips_precise: bool = False,
                           ahead: DecodeAhead | None = None) -> Volume:
    plan = _plan(series, philips_precise)
    plan.ahead = None if lazy else ahead
    n = len(series.frames)
    lead = (series.n_time, series.n_slices) if series.n_time > 1 else (series.n_slices,)
    shape = lead + plan.frame_shape
    meta = _metadata(series, plan)
    if philips_precise and any(f.philips_scale_slope for f in series.frames):
        meta["scaling"] = "philips_precise"
        meta["window"] = None  # the stored window is in display units
        meta["units"] = ""
    itemsize = np.dtype(plan.out_dtype).itemsize
    frame_bytes = int(np.prod(plan.frame_shape, dtype=np.float64)) * itemsize
    if lazy:
        import dask.array as da

        check_allocation(series.first.path, 2 * frame_bytes,
                         f"one frame of series {series.name!r}")
        arr = da.from_array(_LazyFrames(plan, shape),
                            chunks=(1,) * len(lead) + plan.frame_shape,
                            asarray=False, fancy=False,
                            name=_dask_name(series, philips_precise),
                            meta=np.empty((0,) * len(shape), plan.out_dtype))
    else:
        total = float(np.prod(shape, dtype=np.float64)) * itemsize
        check_allocation(series.first.path, int(total + frame_bytes),
                         f"series {series.name!r} ({'x'.join(map(str, shape))} "
                         f"{np.dtype(plan.out_dtype).name})")
        arr = plan.ahead.memory.take(shape, plan.out_dtype) if plan.ahead is not None else None
        if arr is None:
            arr = np.empty(shape, plan.out_dtype)
        flat = arr.reshape((n,) + plan.frame_shape)
        failures = _read_all(plan, flat, progress)
        if failures and len(failures) == n:
            raise failures[0][1]
        for i, exc in failures:
            flat[i] = plan.lo if not plan.rgb else 0
            msg = f"frame left blank: {exc}"
            meta["problems"].append(msg)
            warnings.warn(msg, stacklevel=3)
    return Volume(arr, series.spacing, series.origin, series.direction, meta, series)

