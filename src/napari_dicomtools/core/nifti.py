"""NIfTI-1 writers (affine as dcm2niix writes it) from a :class:`~.volume.Volume`, a
:class:`~.series.Series` (streamed) or an array with its geometry, and FSL ``.bval``/``.bvec``.

Every writer refuses to overwrite an existing file unless ``overwrite=True`` and writes through
:func:`~.safety.atomic_output`, so a crash never leaves a half-written output under the final
name.

Why the header is packed here and not by nibabel: a ``.nii`` is a 348-byte header, four
bytes of extension flag and the voxels, and ``import nibabel`` (urllib, http, email, xml and
every image format it knows) took about a third of converting a small series
(benchmarks/bench_small_series.py). ``core._nifti1`` packs the same bytes
:class:`nibabel.Nifti1Header` packs for the fields we set, and the data block is streamed
after it, one slice at a time, in native byte order. How that is checked:
tests/test_latency.py compares the header byte for byte with nibabel's for every voxel type
and several affines; tests/test_nifti_writer.py writes every dtype nibabel's NIfTI-1 stores,
from little- and big-endian arrays, and reads values and header fields back with nibabel; a
``.nii.gz`` is one gzip member that nibabel, Python's :mod:`gzip` and ``gzip -t`` read.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import geometry
from .errors import DicomToolsError
from .safety import atomic_output

if TYPE_CHECKING:
    from .series import Series
    from .volume import Volume, VoxelArray

__all__ = ["RGB24", "RGBA32", "bvecs_in_voxel_frame", "layer_geometry", "native_dtype",
           "nifti_header", "world_affine_to_ras", "write_bvals_bvecs", "write_layer_nifti",
           "write_layer_nifti_affine", "write_nifti", "write_series_nifti"]

#: NIfTI's colour voxel types (datatype 128 RGB24, 2304 RGBA32), as nibabel reads them: a
#: ``(..., 3)`` / ``(..., 4)`` uint8 array is written as one such voxel per pixel
RGB24 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])
RGBA32 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1"), ("A", "u1")])


#: a 2D plane (or a colour plane) ready to write, in the voxel dtype and native byte order
Plane = npt.NDArray[Any]


def nifti_header(shape_xyzt: Sequence[int], dtype: npt.DTypeLike, affine_ras: npt.ArrayLike,
                 *, repetition_time: float | None = None, description: str = "",
                 spatial_units_known: bool = True) -> bytes:
    """The 352 bytes (NIfTI-1 header + empty extension flag) of a single-file ``.nii``.

    In the machine's byte order: the data block written after it must be in native byte
    order too (see :func:`native_dtype`). The sform and the qform both carry ``affine_ras``
    with code 1 (scanner; the qform is the closest rotation, by polar decomposition), units
    mm and s, like dcm2niix. The bytes are those :class:`nibabel.Nifti1Header` packs for the
    same fields (``core._nifti1``, tested byte for byte against it).

    Parameters
    ----------
    shape_xyzt : sequence of int
        The NIfTI shape: (columns, rows, slices[, time]).
    dtype : numpy dtype-like
        Any numeric dtype NIfTI-1 stores, or :data:`RGB24` / :data:`RGBA32` for colour.
    affine_ras : array-like, 4 x 4
        Voxel (column, row, slice) -> RAS mm.
    repetition_time : float, optional
        The time step (s), stored as pixdim[4]; 1.0 for a 4D image without one.
    description : str
        The ``descrip`` field (ASCII, at most 79 characters kept).
    spatial_units_known : bool
        False for an image whose pixel size is unknown (its voxels are pixels): the
        spatial unit is written as unknown (0) instead of mm.

    Returns
    -------
    bytes
        352 bytes: the header, then the four zero bytes of "no extension".

    Raises
    ------
    ValueError
        ``dtype`` has no NIfTI-1 code.
    DicomToolsError
        A dimension over 32767 (NIfTI-1 dimensions are int16).

    Examples
    --------
    >>> import numpy as np
    >>> hdr = nifti_header((4, 3, 2), np.int16, np.diag([0.5, 0.5, 2.0, 1.0]))
    >>> len(hdr), hdr[344:347]
    (352, b'n+1')
    """
    from ._nifti1 import NIFTI_UNIT_MM, NIFTI_UNIT_SEC, pack_header

    dt = native_dtype(dtype)
    shape = tuple(int(n) for n in shape_xyzt)
    if any(n > 32767 for n in shape):
        raise DicomToolsError(str(shape), "a dimension over 32767 does not fit NIfTI-1; "
                                          "not written")
    pixdim4 = float(repetition_time or 1.0) if len(shape) == 4 or repetition_time else None
    block = pack_header(shape, dt, np.asarray(affine_ras, float), pixdim4=pixdim4,
                        description=description.encode("ascii", "replace"),
                        xyzt_units=(NIFTI_UNIT_MM if spatial_units_known else 0)
                        | NIFTI_UNIT_SEC)
    return block + b"\0\0\0\0"


def native_dtype(dtype: npt.DTypeLike) -> np.dtype[Any]:
    """``dtype`` in the machine's byte order (structured colour types unchanged).

    Parameters
    ----------
    dtype : numpy dtype-like
        Any dtype, in either byte order.

    Returns
    -------
    numpy.dtype
        The same type in native byte order: what a NIfTI data block written here holds.

    Examples
    --------
    >>> native_dtype(">i2") == np.dtype("int16")
    True
    """
    dt: np.dtype[Any] = np.dtype(dtype)
    return dt if dt.fields else dt.newbyteorder("=")


def _colour_dtype(arr: VoxelArray, where: str) -> np.dtype[Any]:
    """:data:`RGB24`/:data:`RGBA32` for an ``(..., 3|4)`` array of 8-bit values.

    16-bit colour (palette LUTs) is accepted when it is exactly 8-bit data scaled by 257 (or
    already within 0..255); anything else would lose precision and is refused.
    """
    if arr.shape[-1] not in (3, 4):
        raise DicomToolsError(where, f"a colour image needs 3 or 4 samples per pixel, not "
                                     f"{arr.shape[-1]}")
    if np.dtype(arr.dtype).kind not in "ub":
        raise DicomToolsError(where, f"colour NIfTI (RGB24) holds 8-bit samples, not "
                                     f"{np.dtype(arr.dtype).name}")
    return RGB24 if arr.shape[-1] == 3 else RGBA32


def _to_uint8_colour(frame: npt.NDArray[Any], where: str) -> npt.NDArray[np.uint8]:
    """One colour frame as uint8 (see :func:`_colour_dtype`), never approximated."""
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype == np.bool_ or (frame.size == 0 or frame.max() <= 255):
        return frame.astype(np.uint8)
    if not np.any(frame % 257):
        return (frame // 257).astype(np.uint8)
    raise DicomToolsError(where, "16-bit colour cannot be stored as NIfTI RGB24 without "
                                 "losing precision; not written")


def _open_output(tmp: str, gz: bool, level: int) -> io.BufferedIOBase:
    """A binary writer: plain, or gzip with the fastest codec installed.

    isal first, compressing 256 KiB blocks (memory stays low) in
    :func:`~._parallel.decode_workers` threads (isal releases the GIL; each block keeps the
    previous 32 KiB as its dictionary, so the file is as small as a serial one, and the
    blocks are one deflate stream: the file is a single gzip member, with the CRC32 of the
    whole data). isal has levels 0-3: ``level`` 1-5 -> 2, 6-9 -> 3. On the 300-slice
    benchmark CT: isal 2 77.6 MB, isal 3 76.9 MB (25 % more CPU), zlib -6 76.8 MB (19x the
    CPU), dcm2niix 75.4 MB. Then zlib-ng, then zlib (dcm2niix without pigz spends most of a
    conversion in single-thread zlib).
    """
    if not gz:
        return open(tmp, "wb")
    try:
        from isal import igzip_threaded

        from ._parallel import decode_workers

        # isal ships no type hints for igzip_threaded.open (a BufferedWriter over its writer)
        writer: io.BufferedIOBase = igzip_threaded.open(  # type: ignore[no-untyped-call]
            tmp, "wb", compresslevel=_isal_level(level), threads=decode_workers(),
            block_size=_GZ_BLOCK)
        return writer
    except ImportError:
        pass
    try:
        from zlib_ng import gzip_ng

        ng: io.BufferedIOBase = gzip_ng.open(tmp, "wb", compresslevel=level)
        return ng
    except ImportError:
        import gzip

        return gzip.open(tmp, "wb", compresslevel=level)


#: the block isal's threaded gzip writer compresses at once (see :func:`_open_output`)
_GZ_BLOCK = 256 * 1024


def _isal_level(level: int) -> int:
    """isal's level (0-3) for a zlib ``level``: 1-5 -> 2, 6-9 -> 3."""
    return 0 if level <= 0 else (2 if level <= 5 else 3)


def _one_block_gzip(level: int) -> Callable[[bytes], bytes] | None:
    """``gzip(data) -> bytes`` making, in this thread, the bytes isal's threaded writer makes
    of ``data`` up to :data:`_GZ_BLOCK` (one block: gzip header, the block deflated with a
    sync flush, an empty final block, CRC and size); None without isal.

    The threaded writer starts a thread and hands the block over and back: for the small
    outputs of a batch job (a 20-slice 64 x 64 series) that cost four times the compression
    itself in wall time. tests/test_nifti_writer.py checks the bytes are the writer's.
    """
    try:
        from isal import isal_zlib

        parallel = isal_zlib._ParallelCompress  # (isal's own block compressor)
    except (ImportError, AttributeError):
        return None
    import struct

    isal_level = _isal_level(level)
    size = 2 * _GZ_BLOCK + 500 if isal_level == 0 else _GZ_BLOCK + max(_GZ_BLOCK // 10, 500)
    head = struct.pack("BBBBIBB", 0x1F, 0x8B, 8, 0, 0, 0xFF, 4 if isal_level == 0 else 0)
    final: bytes = isal_zlib.compress(b"", wbits=-15)

    def gzip(data: bytes) -> bytes:
        body, crc = parallel(buffersize=size, level=isal_level).compress_and_crc(
            data, memoryview(b""))
        return b"".join((head, body, final, struct.pack("<II", crc, len(data) & 0xFFFFFFFF)))

    return gzip


def _write_nifti_frames(path: str, header: bytes, frames: Iterable[Plane], *,
                        overwrite: bool, compress_level: int, nbytes: int | None = None
                        ) -> None:
    """Header, then each frame's bytes: C-order (slice, row, column) is NIfTI's x-fastest.
    ``nbytes``: the frames' bytes, when known; a ``.nii.gz`` of one gzip block is then
    compressed in this thread (the same bytes, see :func:`_one_block_gzip`)."""
    gz = path.endswith(".gz")
    small = gz and nbytes is not None and len(header) + nbytes <= _GZ_BLOCK
    gzip = _one_block_gzip(compress_level) if small else None
    with atomic_output(path, overwrite) as tmp:
        if gzip is not None:
            data = b"".join([header, *(np.ascontiguousarray(fr).tobytes() for fr in frames)])
            if len(data) <= _GZ_BLOCK:
                with open(tmp, "wb") as out:
                    out.write(gzip(data))
                return
            frames = [np.frombuffer(data, np.uint8)[len(header):]]  # (not the size said)
        with _open_output(tmp, gz, compress_level) as f:
            f.write(header)
            for fr in frames:
                f.write(np.ascontiguousarray(fr).data.cast("B"))


def _nifti_path(path: os.PathLike[str] | str) -> str:
    path = os.fspath(path)
    if not path.endswith((".nii", ".nii.gz")):
        raise DicomToolsError(path, "a NIfTI file name must end in .nii or .nii.gz")
    return path


def _tr_seconds(metadata: dict[str, Any] | None) -> float | None:
    tr = (metadata or {}).get("header", {}).get("RepetitionTime")
    try:
        return float(tr) / 1000.0 if tr is not None else None
    except (TypeError, ValueError):
        return None


def _time_step(series: Series | None, metadata: dict[str, Any] | None) -> float | None:
    """Seconds between volumes: a cine's frame time, else RepetitionTime."""
    # getattr: callers (and tests) may hand a stand-in with only the attributes they use
    ft: float | None = getattr(series, "frame_time_ms", None)
    return ft / 1000.0 if ft is not None else _tr_seconds(metadata)


def _space_known(series: Series | None, path: str) -> bool:
    """Whether the pixel size is known; warns (and the header says "unknown" units) when
    it is not, as voxels of 1 are then pixels, not mm."""
    if series is None or getattr(series, "pixel_size_known", True):
        return True
    warnings.warn(f"{path}: pixel size unknown (no PixelSpacing, ImagerPixelSpacing or "
                  "usable ultrasound calibration): voxels written as 1 x 1 pixels, spatial "
                  "units 'unknown' in the header", stacklevel=3)
    return False


def _fits_int32(arr: VoxelArray) -> bool:
    a = np.asarray(arr)
    return a.size == 0 or bool(np.iinfo(np.int32).min <= a.min()
                               and a.max() <= np.iinfo(np.int32).max)


def _voxel_dtype(arr: VoxelArray) -> np.dtype[Any]:
    """The NIfTI voxel type of a grey array: bool as uint8, int64 as int32 when it fits,
    native byte order."""
    dtype: np.dtype[Any] = np.dtype(arr.dtype)
    if dtype == np.bool_:
        dtype = np.dtype(np.uint8)
    elif dtype == np.int64 and _fits_int32(arr):
        dtype = np.dtype(np.int32)
    return native_dtype(dtype)


def _nifti_layout(arr: VoxelArray, path: str,
                  rgb: bool) -> tuple[tuple[int, ...], np.dtype[Any], Iterator[Plane]]:
    """``(nifti_shape, voxel_dtype, frames)`` for a ``(..., row, column[, sample])`` array:
    frames are the 2D (or 2D colour) planes in C order, converted to the voxel dtype in
    native byte order one at a time (a lazy array is never loaded whole)."""
    plane_axes = 3 if rgb else 2
    conv: Callable[[Any], Plane]
    if rgb:
        dtype = _colour_dtype(arr, path)
        shape = tuple(arr.shape[:-1])[::-1]

        def conv(f: Any) -> Plane:
            return _to_uint8_colour(np.asarray(f), path)
    else:
        dtype = _voxel_dtype(arr)
        shape = tuple(arr.shape)[::-1]

        def conv(f: Any) -> Plane:
            return np.asarray(f).astype(dtype, copy=False)
    lead = tuple(arr.shape[:len(arr.shape) - plane_axes])
    return shape, dtype, (conv(arr[idx]) for idx in np.ndindex(*lead))


def write_nifti(volume: Volume, path: os.PathLike[str] | str, *, overwrite: bool = False,
                compress_level: int = 1) -> str:
    """Write a :class:`~.volume.Volume` as NIfTI-1 (``.nii`` or ``.nii.gz``), as dcm2niix
    would.

    A diffusion series (b-values in its headers) also gets FSL ``.bval``/``.bvec`` beside
    the image (:func:`write_bvals_bvecs`).

    Parameters
    ----------
    volume : Volume
        3D or 4D; a colour volume (``(..., 3)`` 8-bit RGB) is written as datatype RGB24
        (128), one packed RGB triplet per voxel, as dcm2niix writes it. A lazy (dask) volume
        is written slice by slice without loading it whole.
    path : str or os.PathLike
        Ends in ``.nii`` or ``.nii.gz``.
    overwrite : bool
        Replace an existing file (default: refuse).
    compress_level : int
        gzip level for ``.nii.gz`` (1 is fast and close in size to 6 for CT/MR).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    DicomToolsError
        The name does not end in ``.nii``/``.nii.gz``, the file (or a sidecar) exists and
        ``overwrite`` is false, or the values do not fit a NIfTI-1 voxel type.

    Warns
    -----
    UserWarning
        The volume's series has no pixel size (no PixelSpacing, ImagerPixelSpacing or usable
        ultrasound calibration): voxels are written as 1 x 1 pixels with spatial units
        "unknown". A cine's frame time is pixdim[4] (s).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from napari_dicomtools.core.volume import Volume
    >>> vol = Volume(np.zeros((2, 3, 4), np.int16), (2.0, 0.5, 0.5), np.zeros(3), np.eye(3))
    >>> out = write_nifti(vol, os.path.join(tempfile.mkdtemp(), "ct.nii"))
    >>> os.path.getsize(out)  # 352 header bytes + 2 * 3 * 4 int16
    400
    """
    path = _nifti_path(path)
    shape, dtype, frames = _nifti_layout(volume.array, path, volume.rgb)
    series = volume.series
    hdr = nifti_header(shape, dtype, volume.affine_ras,
                       repetition_time=_time_step(series, volume.metadata),
                       description=str(volume.metadata.get("name", "")),
                       spatial_units_known=_space_known(series, path))
    diffusion = (series.diffusion if series is not None and series.diffusion
                 and len(series.diffusion) == volume.n_time else None)
    if diffusion:
        _refuse_existing_sidecars(path, overwrite)
    _write_nifti_frames(path, hdr, frames, overwrite=overwrite, compress_level=compress_level,
                        nbytes=int(np.prod(shape)) * dtype.itemsize)
    if diffusion:
        write_bvals_bvecs(diffusion, volume.affine_ras, path, overwrite=overwrite)
    return path


def write_series_nifti(series: Series, path: os.PathLike[str] | str, *,
                       overwrite: bool = False, compress_level: int = 1,
                       philips_precise: bool = False) -> str:
    """Stream a :class:`~.series.Series` straight from DICOM to NIfTI (what ``dicomtools
    convert`` runs).

    Frames are decoded ahead (threads, or worker processes for codecs that hold the GIL)
    and written in order, so memory stays at a few slices whatever the size. The file is the
    one :func:`write_nifti` writes for the :class:`~.volume.Volume` of the series. Colour
    series are written as RGB24; diffusion series get ``.bval``/``.bvec``.

    Parameters
    ----------
    series : Series
        From :func:`~.series.scan`.
    path : str or os.PathLike
        Ends in ``.nii`` or ``.nii.gz``.
    overwrite : bool
        Replace an existing file (default: refuse).
    compress_level : int
        gzip level for ``.nii.gz``.
    philips_precise : bool
        Philips floating-point values (scale slope) instead of the displayed ones.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    DicomToolsError
        A bad name, an existing output without ``overwrite``, inconsistent geometry, or a
        frame that cannot be decoded (nothing is left under the final name).

    Warns
    -----
    UserWarning
        The pixel size is unknown (as :func:`write_nifti`).

    Examples
    --------
    >>> import os, tempfile
    >>> from napari_dicomtools.core.series import scan
    >>> from napari_dicomtools.core.synthetic import phantom, write_series
    >>> tmp = tempfile.mkdtemp()
    >>> _ = write_series(os.path.join(tmp, "ct"), phantom((3, 8, 8)))
    >>> out = write_series_nifti(scan(os.path.join(tmp, "ct"))[0],
    ...                          os.path.join(tmp, "ct.nii.gz"))
    >>> out.endswith("ct.nii.gz")
    True
    """
    from .volume import stream_frames

    path = _nifti_path(path)
    stream = stream_frames(series, philips_precise=philips_precise)
    aff = geometry.affine_ras(series.spacing, series.origin, series.direction)
    shape, dtype = _series_layout(series, stream.frame_shape, stream.dtype, stream.rgb, path)
    hdr = nifti_header(shape, dtype, aff,
                       repetition_time=_time_step(series, {"header": series.first.header})
                       if series.n_time > 1 else None, description=series.name,
                       spatial_units_known=_space_known(series, path))
    if series.diffusion:
        _refuse_existing_sidecars(path, overwrite)
    frames: Iterable[Plane] = stream.frames
    if stream.rgb:
        frames = (_to_uint8_colour(f, path) for f in frames)
    _write_nifti_frames(path, hdr, frames, overwrite=overwrite,
                        compress_level=compress_level,
                        nbytes=int(np.prod(shape)) * dtype.itemsize)
    if series.diffusion:
        write_bvals_bvecs(series.diffusion, aff, path, overwrite=overwrite)
    return path


def _series_layout(series: Series, frame_shape: tuple[int, ...], out_dtype: np.dtype[Any],
                   rgb: bool, path: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """``(nifti_shape, voxel_dtype)`` of a series whose frames are ``frame_shape`` of
    ``out_dtype``."""
    lead = (series.n_time, series.n_slices) if series.n_time > 1 else (series.n_slices,)
    if rgb:
        dtype = _colour_dtype(np.empty((0,) + frame_shape, out_dtype), path)
        return (lead + frame_shape[:-1])[::-1], dtype
    return (lead + frame_shape)[::-1], out_dtype


def bvecs_in_voxel_frame(gradients: Sequence[npt.ArrayLike | None],
                         affine_ras: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """FSL-convention b-vectors (3 x N) for a NIfTI with ``affine_ras``.

    Each gradient is projected on the image's voxel axes; when the affine's determinant is
    positive the x component is negated (FSL stores b-vectors in radiological voxel space),
    as dcm2niix does.

    Parameters
    ----------
    gradients : sequence of 3-vectors or None
        N LPS gradient directions (None, or all zeros, for b=0).
    affine_ras : array-like, 4 x 4
        The NIfTI's affine (voxel -> RAS mm).

    Returns
    -------
    numpy.ndarray
        ``(3, N)`` unit vectors in the voxel frame (zeros for b=0).

    Examples
    --------
    >>> import numpy as np
    >>> aff = np.diag([-1.0, -1.0, 1.0, 1.0])  # axial, voxel x towards the patient's left
    >>> bvecs_in_voxel_frame([None, (1.0, 0.0, 0.0)], aff)  # x negated: det > 0
    array([[ 0., -1.],
           [ 0.,  0.],
           [ 0.,  0.]])
    """
    a = np.asarray(affine_ras, float)[:3, :3]
    axes_ras = a / np.linalg.norm(a, axis=0)
    axes_lps = axes_ras * np.array([-1.0, -1.0, 1.0])[:, None]
    out = np.zeros((3, len(gradients)))
    for n, g in enumerate(gradients):
        if g is None or not np.any(g):
            continue
        v = np.asarray(g, float) / np.linalg.norm(g)
        out[:, n] = axes_lps.T @ v
    if np.linalg.det(a) > 0:
        out[0] = -out[0]
    out[np.abs(out) < 1e-12] = 0.0
    return out


def _sidecar_stem(path: str) -> str:
    return path[:-7] if path.endswith(".nii.gz") else path[:-4]


def _refuse_existing_sidecars(path: str, overwrite: bool) -> None:
    """Refuse before writing a diffusion NIfTI whose ``.bval``/``.bvec`` exist already."""
    if overwrite:
        return
    stem = _sidecar_stem(path)
    for ext in (".bval", ".bvec"):
        if os.path.lexists(stem + ext):
            raise DicomToolsError(stem + ext, "exists; not overwriting (use overwrite=True / "
                                              "--force)")


def write_bvals_bvecs(diffusion: Sequence[tuple[float | None, npt.ArrayLike | None]],
                      affine_ras: npt.ArrayLike, nifti_path: str, *,
                      overwrite: bool = False) -> tuple[str, str]:
    """FSL ``.bval``/``.bvec`` beside ``nifti_path``.

    Parameters
    ----------
    diffusion : sequence of (float or None, 3-vector or None)
        ``(b-value, LPS gradient direction)`` per volume, as ``Series.diffusion`` holds it
        (a b-value of None is written as 0).
    affine_ras : array-like, 4 x 4
        The NIfTI's affine (see :func:`bvecs_in_voxel_frame`).
    nifti_path : str
        The ``.nii``/``.nii.gz`` the sidecars go beside (same stem).
    overwrite : bool
        Replace existing sidecars (default: refuse).

    Returns
    -------
    (str, str)
        The ``.bval`` and ``.bvec`` paths.

    Raises
    ------
    DicomToolsError
        A sidecar exists and ``overwrite`` is false.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> nii = os.path.join(tempfile.mkdtemp(), "dwi.nii.gz")
    >>> bval, bvec = write_bvals_bvecs([(0, None), (1000, (0.0, 0.0, 1.0))], np.eye(4), nii)
    >>> open(bval).read().split()
    ['0', '1000']
    """
    stem = _sidecar_stem(nifti_path)
    bvals = " ".join(f"{b or 0.0:g}" for b, _ in diffusion) + "\n"
    vecs = bvecs_in_voxel_frame([g for _, g in diffusion], affine_ras)
    bvecs = "".join(" ".join(f"{x:.6g}" for x in row) + "\n" for row in vecs)
    for ext, text in ((".bval", bvals), (".bvec", bvecs)):
        with atomic_output(stem + ext, overwrite) as tmp:
            with open(tmp, "w") as f:
                f.write(text)
    return stem + ".bval", stem + ".bvec"


def world_affine_to_ras(scale: Sequence[float],
                        translate: Sequence[float]) -> npt.NDArray[np.float64]:
    """RAS affine of voxel ``(column, row, slice)`` for a layer shown axis-aligned.

    Our napari world is ``(z, y, x)`` LPS mm; a layer with a diagonal ``scale`` and
    ``translate`` (their last three axes are used) has this NIfTI affine.

    Parameters
    ----------
    scale : sequence of float
        The layer's scale, ``(..., z, y, x)`` mm per voxel.
    translate : sequence of float
        The layer's translate, ``(..., z, y, x)`` mm.

    Returns
    -------
    numpy.ndarray
        4 x 4 voxel ``(column, row, slice)`` -> RAS mm.

    Examples
    --------
    >>> world_affine_to_ras((2.0, 0.5, 0.5), (10.0, 0.0, 0.0))
    array([[-0.5,  0. ,  0. ,  0. ],
           [ 0. , -0.5,  0. ,  0. ],
           [ 0. ,  0. ,  2. , 10. ],
           [ 0. ,  0. ,  0. ,  1. ]])
    """
    sc = np.asarray(scale, float)[-3:]
    tr = np.asarray(translate, float)[-3:]
    direction = np.array([[0.0, 0, 1], [0, 1, 0], [1, 0, 0]])  # (slice,row,col) -> (x,y,z)
    return geometry.affine_ras(sc, tr[::-1], direction)


def layer_geometry(data: VoxelArray, scale: Sequence[float], translate: Sequence[float],
                   metadata: dict[str, Any] | None = None
                   ) -> tuple[VoxelArray, npt.NDArray[np.float64]]:
    """Array ``(slice, row, column)`` (4D: leading time axis) and RAS affine for a napari
    layer.

    Always the true geometry (:class:`~napari_dicomtools.core.grid.Grid`): a layer the reader
    made (or a labels layer on its grid) is written on exactly the original series grid, the
    display view undone, as ``convert`` writes it; a derived layer (crop, resize, ...) with
    the true affine composed with its own grid; a layer from elsewhere, or one the user
    moved, as shown: axis-aligned in world ``(z, y, x)`` LPS mm from its ``scale`` and
    ``translate``.

    Parameters
    ----------
    data : array-like
        The layer's data, 2D, 3D or 4D (numpy or dask).
    scale : sequence of float
        The layer's scale.
    translate : sequence of float
        The layer's translate.
    metadata : dict, optional
        The layer's metadata (the reader's true geometry, when it made the layer).

    Returns
    -------
    (array-like, numpy.ndarray)
        The array in ``(slice, row, column)`` order (a 2D layer gets one slice) and its 4 x 4
        voxel ``(column, row, slice)`` -> RAS affine.

    Raises
    ------
    ValueError
        ``data`` is not 2D, 3D or 4D.

    Examples
    --------
    >>> import numpy as np
    >>> arr, aff = layer_geometry(np.zeros((2, 3, 4)), (2.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    >>> arr.shape, float(aff[2, 2])
    ((2, 3, 4), 2.0)
    """
    from .grid import Grid

    nd = len(data.shape)
    if nd not in (2, 3, 4):
        raise ValueError(f"expected a 2D, 3D or 4D layer, got shape {data.shape}")
    if nd == 2:
        return data[None], world_affine_to_ras((1.0,) + tuple(scale)[-2:],
                                               (0.0,) + tuple(translate)[-2:])
    lead = nd - 3
    grid = Grid.of_layer(tuple(data.shape[lead:]), scale, translate, metadata)
    arr, aff = grid.nifti(data, leading=lead)
    return arr, np.asarray(aff, np.float64)


def write_layer_nifti(path: os.PathLike[str] | str, data: VoxelArray, scale: Sequence[float],
                      translate: Sequence[float], metadata: dict[str, Any] | None = None, *,
                      overwrite: bool = False, compress_level: int = 1) -> str:
    """Write napari layer data (image or labels) as NIfTI with its patient-space affine.

    The geometry is :func:`layer_geometry`'s: a layer the reader made is written on the
    original series grid, exactly as ``dicomtools convert`` writes the series.

    Parameters
    ----------
    path : str or os.PathLike
        Ends in ``.nii`` or ``.nii.gz``.
    data : array-like
        The layer's data (2D, 3D or 4D; numpy or dask).
    scale : sequence of float
        The layer's scale.
    translate : sequence of float
        The layer's translate.
    metadata : dict, optional
        The layer's metadata (true geometry, RepetitionTime).
    overwrite : bool
        Replace an existing file (default: refuse).
    compress_level : int
        gzip level for ``.nii.gz``.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    DicomToolsError
        A bad name, or an existing file without ``overwrite``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> labels = np.zeros((2, 3, 4), np.uint8)
    >>> out = write_layer_nifti(os.path.join(tempfile.mkdtemp(), "mask.nii"), labels,
    ...                         (2.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    >>> os.path.getsize(out)
    376
    """
    path = _nifti_path(path)
    arr, aff = layer_geometry(data, scale, translate, metadata)
    return write_layer_nifti_affine(path, arr, aff, overwrite=overwrite,
                                    compress_level=compress_level,
                                    repetition_time=_tr_seconds(metadata))


def write_layer_nifti_affine(path: os.PathLike[str] | str, array: VoxelArray,
                             affine_ras: npt.ArrayLike, *, overwrite: bool = False,
                             compress_level: int = 1, repetition_time: float | None = None,
                             rgb: bool = False) -> str:
    """Write an array with its RAS affine as NIfTI, creating the folder if needed.

    Any byte order is accepted; the file is in native byte order. bool is written as
    uint8, int64 as int32 when the values fit.

    Parameters
    ----------
    path : str or os.PathLike
        Ends in ``.nii`` or ``.nii.gz``.
    array : array-like
        ``(slice, row, column)`` or ``(time, slice, row, column)`` (numpy or dask);
        with ``rgb``, a trailing axis of 3 or 4 8-bit samples.
    affine_ras : array-like, 4 x 4
        Voxel ``(column, row, slice)`` -> RAS mm.
    overwrite : bool
        Replace an existing file (default: refuse).
    compress_level : int
        gzip level for ``.nii.gz``.
    repetition_time : float, optional
        Seconds between volumes (pixdim[4]).
    rgb : bool
        Write the trailing samples as one RGB24 (or RGBA32) voxel.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    DicomToolsError
        A bad name, an existing file without ``overwrite``, colour that is not 8-bit.
    ValueError
        The dtype has no NIfTI-1 code (strings, float16, ...).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> big_endian = np.arange(24, dtype=">i2").reshape(2, 3, 4)
    >>> out = write_layer_nifti_affine(os.path.join(tempfile.mkdtemp(), "a.nii"),
    ...                                big_endian, np.eye(4))
    >>> np.frombuffer(open(out, "rb").read()[352:], "=i2")[:5]
    array([0, 1, 2, 3, 4], dtype=int16)
    """
    path = _nifti_path(path)
    shape, dtype, frames = _nifti_layout(array, path, rgb)
    hdr = nifti_header(shape, dtype, affine_ras, repetition_time=repetition_time)
    _write_nifti_frames(path, hdr, frames, overwrite=overwrite,
                        compress_level=compress_level)
    return path
