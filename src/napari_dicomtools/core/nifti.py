"""NIfTI-1 writers (affine as dcm2niix writes it) from a :class:`~.volume.Volume`, a
:class:`~.series.Series` (streamed) or an array with its geometry, and FSL ``.bval``/``.bvec``.

Every writer refuses to overwrite an existing file unless ``overwrite=True`` and writes through
:func:`~.safety.atomic_output`, so a crash never leaves a half-written output under the final
name.
"""

from __future__ import annotations

import os

import numpy as np

from . import geometry
from .errors import DicomToolsError
from .safety import atomic_output

__all__ = ["RGB24", "RGBA32", "bvecs_in_voxel_frame", "layer_geometry", "native_dtype",
           "nifti_header", "world_affine_to_ras", "write_bvals_bvecs", "write_layer_nifti",
           "write_layer_nifti_affine", "write_nifti", "write_series_nifti"]

#: NIfTI's colour voxel types (datatype 128 RGB24, 2304 RGBA32), as nibabel reads them: a
#: ``(..., 3)`` / ``(..., 4)`` uint8 array is written as one such voxel per pixel
RGB24 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])
RGBA32 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1"), ("A", "u1")])


def nifti_header(shape_xyzt, dtype, affine_ras, *, repetition_time: float | None = None,
                 description: str = "") -> bytes:
    """The 352 bytes (NIfTI-1 header + empty extension flag) of a single-file ``.nii``.

    In the machine's byte order: the data block written after it must be in native byte
    order too (see :func:`native_dtype`). ``shape_xyzt`` is the NIfTI shape (columns, rows,
    slices[, time]); sform and qform both carry ``affine_ras`` with code 1 (scanner; the
    qform is the closest rotation, by polar decomposition), units mm and s, like dcm2niix.
    ``dtype`` is any numeric dtype NIfTI-1 stores, or :data:`RGB24` / :data:`RGBA32` for
    colour. The bytes are those :class:`nibabel.Nifti1Header` packs for the same fields
    (``core._nifti1``, tested byte for byte against it), without nibabel's import, which
    took a third of a small series' conversion.

    Raises
    ------
    ValueError
        ``dtype`` has no NIfTI-1 code.
    DicomToolsError
        A dimension over 32767 (NIfTI-1 dimensions are int16).
    """
    from ._nifti1 import pack_header

    dt = native_dtype(dtype)
    shape = tuple(int(n) for n in shape_xyzt)
    if any(n > 32767 for n in shape):
        raise DicomToolsError(str(shape), "a dimension over 32767 does not fit NIfTI-1; "
                                          "not written")
    pixdim4 = float(repetition_time or 1.0) if len(shape) == 4 or repetition_time else None
    block = pack_header(shape, dt, np.asarray(affine_ras, float), pixdim4=pixdim4,
                        description=description.encode("ascii", "replace"))
    return block + b"\0\0\0\0"


def native_dtype(dtype) -> np.dtype:
    """``dtype`` in the machine's byte order (structured colour types unchanged)."""
    dt = np.dtype(dtype)
    return dt if dt.fields else dt.newbyteorder("=")


def _colour_dtype(arr, where) -> np.dtype:
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


def _to_uint8_colour(frame: np.ndarray, where) -> np.ndarray:
    """One colour frame as uint8 (see :func:`_colour_dtype`), never approximated."""
    if frame.dtype == np.uint8:
        return frame
    if frame.dtype == np.bool_ or (frame.size == 0 or frame.max() <= 255):
        return frame.astype(np.uint8)
    if not np.any(frame % 257):
        return (frame // 257).astype(np.uint8)
    raise DicomToolsError(where, "16-bit colour cannot be stored as NIfTI RGB24 without "
                                 "losing precision; not written")


def _open_output(tmp: str, gz: bool, level: int):
    """A binary writer: plain, or gzip with the fastest codec installed.

    isal first, compressing 256 KiB blocks (memory stays low) in
    :func:`~._parallel.decode_workers` threads (isal releases the GIL; each block keeps the previous 32 KiB as its dictionary, so the file is
    as small as a serial one). isal has levels 0-3: ``level`` 1-5 -> 2, 6-9 -> 3. On the
    300-slice benchmark CT: isal 2 77.6 MB, isal 3 76.9 MB (25 % more CPU), zlib -6 76.8 MB
    (19x the CPU), dcm2niix 75.4 MB. Then zlib-ng, then zlib (dcm2niix without pigz spends most of a
    conversion in single-thread zlib).
    """
    if not gz:
        return open(tmp, "wb")
    try:
        from isal import igzip_threaded

        from ._parallel import decode_workers

        isal_level = 0 if level <= 0 else (2 if level <= 5 else 3)
        return igzip_threaded.open(tmp, "wb", compresslevel=isal_level,
                                   threads=decode_workers(), block_size=256 * 1024)
    except ImportError:
        pass
    try:
        from zlib_ng import gzip_ng

        return gzip_ng.open(tmp, "wb", compresslevel=level)
    except ImportError:
        import gzip

        return gzip.open(tmp, "wb", compresslevel=level)


def _write_nifti_frames(path, header: bytes, frames, *, overwrite: bool, compress_level: int):
    """Header, then each frame's bytes: C-order (slice, row, column) is NIfTI's x-fastest."""
    with atomic_output(path, overwrite) as tmp:
        with _open_output(tmp, path.endswith(".gz"), compress_level) as f:
            f.write(header)
            for fr in frames:
                f.write(memoryview(np.ascontiguousarray(fr)).cast("B"))


def _nifti_path(path) -> str:
    path = os.fspath(path)
    if not path.endswith((".nii", ".nii.gz")):
        raise DicomToolsError(path, "a NIfTI file name must end in .nii or .nii.gz")
    return path


def _tr_seconds(metadata) -> float | None:
    tr = (metadata or {}).get("header", {}).get("RepetitionTime")
    try:
        return float(tr) / 1000.0 if tr is not None else None
    except (TypeError, ValueError):
        return None


def _fits_int32(arr) -> bool:
    a = np.asarray(arr)
    return a.size == 0 or (np.iinfo(np.int32).min <= a.min() and a.max() <= np.iinfo(
        np.int32).max)


def _nifti_layout(arr, path: str, rgb: bool):
    """``(nifti_shape, voxel_dtype, frames)`` for a ``(..., row, column[, sample])`` array:
    frames are the 2D (or 2D colour) planes in C order, converted to the voxel dtype in
    native byte order one at a time (a lazy array is never loaded whole)."""
    if rgb:
        dtype = _colour_dtype(arr, path)
        flat = arr.reshape((-1,) + tuple(arr.shape[-3:]))
        shape = tuple(arr.shape[:-1])[::-1]

        def conv(f):
            return _to_uint8_colour(np.asarray(f), path)
    else:
        dtype = np.dtype(arr.dtype)
        if dtype == np.bool_:
            dtype = np.dtype(np.uint8)
        elif dtype == np.int64 and _fits_int32(arr):
            dtype = np.dtype(np.int32)
        dtype = native_dtype(dtype)
        flat = arr.reshape((-1,) + tuple(arr.shape[-2:]))
        shape = tuple(arr.shape)[::-1]

        def conv(f):
            return np.asarray(f).astype(dtype, copy=False)
    return shape, dtype, (conv(flat[i]) for i in range(flat.shape[0]))


def write_nifti(volume, path, *, overwrite: bool = False, compress_level: int = 1) -> str:
    """Write a :class:`Volume` as NIfTI-1 (``.nii`` or ``.nii.gz``), as dcm2niix would.

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
    """
    path = _nifti_path(path)
    shape, dtype, frames = _nifti_layout(volume.array, path, volume.rgb)
    hdr = nifti_header(shape, dtype, volume.affine_ras,
                       repetition_time=_tr_seconds(volume.metadata),
                       description=str(volume.metadata.get("name", "")))
    series = volume.series
    if series is not None and series.diffusion and len(series.diffusion) == volume.n_time:
        _refuse_existing_sidecars(path, overwrite)
    _write_nifti_frames(path, hdr, frames, overwrite=overwrite, compress_level=compress_level)
    if series is not None and series.diffusion and len(series.diffusion) == volume.n_time:
        write_bvals_bvecs(series.diffusion, volume.affine_ras, path, overwrite=overwrite)
    return path


def write_series_nifti(series, path, *, overwrite: bool = False, compress_level: int = 1,
                       philips_precise: bool = False) -> str:
    """Stream a :class:`Series` straight from DICOM to NIfTI: frames are decoded ahead (worker
    processes or threads) and written in order, so memory stays at a few slices whatever the
    size. Colour series are written as RGB24 (see :func:`write_nifti`)."""
    from .volume import _plan, iter_frames

    path = _nifti_path(path)
    plan = _plan(series, philips_precise)
    lead = (series.n_time, series.n_slices) if series.n_time > 1 else (series.n_slices,)
    aff = geometry.affine_ras(series.spacing, series.origin, series.direction)
    tr = _tr_seconds({"header": series.first.header}) if series.n_time > 1 else None
    if plan.rgb:
        dtype = _colour_dtype(np.empty((0,) + plan.frame_shape, plan.out_dtype), path)
        shape = (lead + plan.frame_shape[:-1])[::-1]
    else:
        dtype, shape = plan.out_dtype, (lead + plan.frame_shape)[::-1]
    hdr = nifti_header(shape, dtype, aff, repetition_time=tr, description=series.name)

    if series.diffusion:
        _refuse_existing_sidecars(path, overwrite)

    frames = iter_frames(plan)
    if plan.rgb:
        frames = (_to_uint8_colour(f, path) for f in frames)
    _write_nifti_frames(path, hdr, frames, overwrite=overwrite,
                        compress_level=compress_level)
    if series.diffusion:
        write_bvals_bvecs(series.diffusion, aff, path, overwrite=overwrite)
    return path


def bvecs_in_voxel_frame(gradients, affine_ras) -> np.ndarray:
    """FSL-convention b-vectors (3 x N) for a NIfTI with ``affine_ras``.

    ``gradients``: N LPS unit vectors (None for b=0). Each is projected on the image's voxel
    axes; when the affine's determinant is positive the x component is negated (FSL stores
    b-vectors in radiological voxel space), as dcm2niix does.
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


def _refuse_existing_sidecars(path: str, overwrite: bool) -> None:
    """Refuse before writing a diffusion NIfTI whose ``.bval``/``.bvec`` exist already."""
    if overwrite:
        return
    stem = path[:-7] if path.endswith(".nii.gz") else path[:-4]
    for ext in (".bval", ".bvec"):
        if os.path.lexists(stem + ext):
            raise DicomToolsError(stem + ext, "exists; not overwriting (use overwrite=True / "
                                              "--force)")


def write_bvals_bvecs(diffusion, affine_ras, nifti_path, *, overwrite: bool = False):
    """``.bval``/``.bvec`` beside ``nifti_path`` (FSL format) from ``[(b, g), ...]``."""
    stem = nifti_path[:-7] if nifti_path.endswith(".nii.gz") else nifti_path[:-4]
    bvals = " ".join(f"{b:g}" for b, _ in diffusion) + "\n"
    vecs = bvecs_in_voxel_frame([g for _, g in diffusion], affine_ras)
    bvecs = "".join(" ".join(f"{x:.6g}" for x in row) + "\n" for row in vecs)
    for ext, text in ((".bval", bvals), (".bvec", bvecs)):
        with atomic_output(stem + ext, overwrite) as tmp:
            with open(tmp, "w") as f:
                f.write(text)
    return stem + ".bval", stem + ".bvec"


def world_affine_to_ras(scale, translate) -> np.ndarray:
    """RAS affine of voxel ``(column, row, slice)`` for a layer shown axis-aligned in our world
    ``(z, y, x)`` LPS with diagonal ``scale``/``translate`` (last three axes)."""
    sc = np.asarray(scale, float)[-3:]
    tr = np.asarray(translate, float)[-3:]
    direction = np.array([[0.0, 0, 1], [0, 1, 0], [1, 0, 0]])  # (slice,row,col) -> (x,y,z)
    return geometry.affine_ras(sc, tr[::-1], direction)


def layer_geometry(data, scale, translate, metadata=None):
    """Array ``(slice, row, column)`` (4D: leading time axis) and RAS affine for a napari layer.

    Always the true geometry (:class:`~napari_dicomtools.core.grid.Grid`): a layer the reader
    made (or a labels layer on its grid) is written on exactly the original series grid, the
    display view undone, as ``convert`` writes it; a derived layer (crop, resize, ...) with
    the true affine composed with its own grid; a layer from elsewhere, or one the user
    moved, as shown: axis-aligned in world ``(z, y, x)`` LPS mm from its ``scale`` and
    ``translate``.

    Returns
    -------
    (numpy.ndarray or array-like, numpy.ndarray)
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
    return grid.nifti(data, leading=lead)


def write_layer_nifti(path, data, scale, translate, metadata=None, *, overwrite=False,
                      compress_level: int = 1) -> str:
    """Write napari layer data (image or labels) as NIfTI with its patient-space affine."""
    path = _nifti_path(path)
    arr, aff = layer_geometry(data, scale, translate, metadata)
    return write_layer_nifti_affine(path, arr, aff, overwrite=overwrite,
                                    compress_level=compress_level,
                                    repetition_time=_tr_seconds(metadata))


def write_layer_nifti_affine(path, array, affine_ras, *, overwrite: bool = False,
                             compress_level: int = 1, repetition_time=None,
                             rgb: bool = False) -> str:
    """Write a ``(slice, row, column)`` (or 4D) array with a RAS affine of voxel ``(column,
    row, slice)`` as NIfTI, creating the folder if needed (:func:`atomic_output`).

    ``rgb=True``: the array is ``(..., row, column, 3)`` 8-bit colour, written as RGB24.
    Any byte order is accepted; the file is in native byte order.
    """
    path = _nifti_path(path)
    shape, dtype, frames = _nifti_layout(np.asarray(array), path, rgb)
    hdr = nifti_header(shape, dtype, affine_ras, repetition_time=repetition_time)
    _write_nifti_frames(path, hdr, frames, overwrite=overwrite,
                        compress_level=compress_level)
    return path
