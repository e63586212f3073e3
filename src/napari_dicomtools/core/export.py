"""Writers: NIfTI (affine as dcm2niix writes it) from a :class:`Volume` or array + geometry.

Every writer refuses to overwrite an existing file unless ``overwrite=True`` and writes through
a temporary file in the destination folder, renamed into place when complete, so a crash never
leaves a half-written output under the final name.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np

from . import geometry
from .errors import DicomToolsError


def refuse_inside_source(out, src) -> None:
    """Raise if ``out`` is ``src``'s folder or inside it: sources are never written.

    Real paths are compared, so a source given as a symlink (to a file or a folder), an
    output reached through a symlinked folder, or an output that is itself a symlink into
    the source are all refused. Both the folder holding a symlinked source file and the
    folder of the file it points to count as the source.

    Raises
    ------
    DicomToolsError
        ``out`` is (inside) a source folder, or is a source file.
    """
    src = os.fspath(src)
    child = os.path.realpath(os.fspath(out))
    real_src = os.path.realpath(src)
    folders = {real_src if os.path.isdir(real_src) else os.path.dirname(real_src)}
    if not os.path.isdir(src):
        folders.add(os.path.realpath(os.path.dirname(os.path.abspath(src))))
    for parent in folders:
        if child == parent or child.startswith(parent.rstrip(os.sep) + os.sep):
            raise DicomToolsError(out, f"is inside the source {parent}; choose an output "
                                       "outside it (sources are never written)")


#: Temporary files of :func:`atomic_output` are ``.dicomtools-partial-<pid>-<random>``
PARTIAL_PREFIX = ".dicomtools-partial-"
#: A temporary file of ours older than this (seconds) whose process is gone is debris
STALE_AFTER = 600.0
NAME_MAX = 255
_CLEANED: set[str] = set()


def fit_name(name: str, limit: int = NAME_MAX) -> str:
    """Shorten a file name to ``limit`` bytes of UTF-8, cut on a character boundary and
    keeping its extension (``.nii.gz`` counts as one).

    Examples
    --------
    >>> fit_name("a" * 300 + ".png") == "a" * 251 + ".png"
    True
    """
    if len(name.encode("utf-8")) <= limit:
        return name
    low = name.lower()
    ext = ".nii.gz" if low.endswith(".nii.gz") else os.path.splitext(name)[1]
    if len(ext.encode("utf-8")) > 16:
        ext = ""
    stem = name[:len(name) - len(ext)] if ext else name
    room = limit - len(ext.encode("utf-8"))
    cut = stem.encode("utf-8")[:room].decode("utf-8", "ignore")
    return cut + ext


def _reason(exc: OSError, verb: str = "cannot write") -> str:
    import errno as _errno

    name = _errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or str(exc)
    return f"{verb}: {text}" + (f" ({name})" if name else "")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def clean_stale_partials(folder, *, older_than: float = STALE_AFTER) -> list[str]:
    """Remove our own temporary files left in ``folder`` by a killed writer.

    Only names made by :func:`atomic_output` (``.dicomtools-partial-<pid>-<random>``) are
    touched, and only when older than ``older_than`` seconds and their process is no longer
    running on this machine (an active writer keeps its file's time fresh).

    Returns
    -------
    list of str
        The files removed.
    """
    import time

    folder = os.fspath(folder)
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        if not e.name.startswith(PARTIAL_PREFIX):
            continue
        try:
            pid = int(e.name[len(PARTIAL_PREFIX):].split("-", 1)[0])
            st = e.stat(follow_symlinks=False)
        except (ValueError, OSError):
            continue
        import stat as _stat

        if not _stat.S_ISREG(st.st_mode) or now - st.st_mtime < older_than or (
                pid != os.getpid() and _pid_alive(pid)):
            continue
        try:
            os.unlink(e.path)
            removed.append(e.path)
        except OSError:
            pass
    return removed


def _new_partial(folder: str) -> str:
    """Create (exclusively) an empty temporary file in ``folder`` with the mode a plain
    ``open()`` gives (0666 less the umask), not mkstemp's 0600."""
    import secrets

    for _ in range(100):
        tmp = os.path.join(folder, f"{PARTIAL_PREFIX}{os.getpid()}-{secrets.token_hex(6)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary name in {folder}")


def _publish(tmp: str, path: str, overwrite: bool) -> None:
    """Move the finished ``tmp`` to ``path``: atomically replace when ``overwrite``, else
    an exclusive hard link that fails if ``path`` appeared meanwhile (another writer)."""
    import errno as _errno

    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise DicomToolsError(path, "exists (written meanwhile by another process?); not "
                                    "overwriting (use overwrite=True / --force)") from None
    except OSError as exc:
        if exc.errno not in (_errno.EPERM, _errno.ENOTSUP, _errno.EOPNOTSUPP, _errno.EXDEV,
                             _errno.EMLINK, _errno.ENOSYS):
            raise
        # no hard links here (FAT, some network/FUSE file systems): reserve the name
        # exclusively, then replace the empty placeholder
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            raise DicomToolsError(path, "exists (written meanwhile by another process?); "
                                        "not overwriting") from None
        os.replace(tmp, path)
        return
    try:
        os.unlink(tmp)
    except OSError:
        pass


@contextmanager
def atomic_output(path, overwrite: bool = False):
    """Yield a temporary path beside ``path``; move it to ``path`` when the block succeeds.

    The output appears complete or not at all. Without ``overwrite`` the final step is an
    exclusive hard link, so of two writers racing for one name exactly one wins and the
    other gets "exists"; with ``overwrite`` an atomic ``os.replace``. Missing folders are
    created; the file gets the mode ``open()`` would give (umask respected). Temporary
    files are ``.dicomtools-partial-<pid>-<random>``; stale ones a killed writer left in the
    folder are removed (:func:`clean_stale_partials`) the first time a process writes there.

    Raises
    ------
    DicomToolsError
        ``path`` exists and ``overwrite`` is False, ``path`` is a folder, its name is too
        long, or the file system refused the write (read-only, permission, disk full, ...):
        the message names the path and the reason.
    """
    path = os.fspath(path)
    base = os.path.basename(path)
    if len(base.encode("utf-8", "surrogateescape")) > NAME_MAX:
        raise DicomToolsError(path, f"file name is {len(base.encode('utf-8', 'replace'))} "
                                    f"bytes; file systems allow {NAME_MAX}")
    if os.path.isdir(path):
        raise DicomToolsError(path, "is a folder; not replacing it with a file")
    if os.path.lexists(path) and not overwrite:
        raise DicomToolsError(path, "exists; not overwriting (use overwrite=True / --force)")
    folder = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        if folder not in _CLEANED:
            _CLEANED.add(folder)
            clean_stale_partials(folder)
        tmp = _new_partial(folder)
        yield tmp
        _publish(tmp, path, overwrite)
        tmp = None
    except OSError as exc:
        name = os.fspath(exc.filename) if exc.filename else ""
        ours = (not name or os.path.basename(name).startswith(PARTIAL_PREFIX)
                or os.path.abspath(path).startswith(os.path.abspath(name)))
        where = path if ours else name  # the output, unless a source file failed
        if isinstance(exc, IsADirectoryError) and where == path:
            raise DicomToolsError(path, "is a folder; not replacing it with a file") from None
        raise DicomToolsError(where, _reason(exc, "cannot write" if where == path
                                             else "failed")) from None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            try:
                os.unlink(tmp)
            except OSError:
                pass


#: NIfTI's colour voxel types (datatype 128 RGB24, 2304 RGBA32), as nibabel reads them: a
#: ``(..., 3)`` / ``(..., 4)`` uint8 array is written as one such voxel per pixel
RGB24 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])
RGBA32 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1"), ("A", "u1")])


def nifti_header(shape_xyzt, dtype, affine_ras, *, repetition_time: float | None = None,
                 description: str = "") -> bytes:
    """The 352 bytes (NIfTI-1 header + empty extension flag) of a single-file ``.nii``.

    Built by nibabel (:class:`nibabel.Nifti1Header`) in the machine's byte order: the data
    block written after it must be in native byte order too (see :func:`native_dtype`).
    ``shape_xyzt`` is the NIfTI shape (columns, rows, slices[, time]); sform and qform both
    carry ``affine_ras`` with code 1 (scanner; the qform is the closest rotation, by polar
    decomposition), units mm and s, like dcm2niix. ``dtype`` is any numeric dtype NIfTI-1
    stores, or :data:`RGB24` / :data:`RGBA32` for colour.

    Raises
    ------
    ValueError
        ``dtype`` has no NIfTI-1 code.
    DicomToolsError
        A dimension over 32767 (NIfTI-1 dimensions are int16).
    """
    from ._imports import nibabel

    nib = nibabel()  # without pydicom's import when the scan did not need it

    dt = native_dtype(dtype)
    shape = tuple(int(n) for n in shape_xyzt)
    if any(n > 32767 for n in shape):
        raise DicomToolsError(str(shape), "a dimension over 32767 does not fit NIfTI-1; "
                                          "not written")
    hdr = nib.Nifti1Header()  # native endianness, magic n+1
    try:
        hdr.set_data_dtype(dt)
    except nib.spatialimages.HeaderDataError:
        raise ValueError(f"dtype {dt} cannot be stored in NIfTI-1") from None
    hdr.set_data_shape(shape)
    aff = np.asarray(affine_ras, float)
    hdr.set_qform(aff, code=1)
    hdr.set_sform(aff, code=1)
    hdr.set_xyzt_units("mm", "sec")
    if len(shape) == 4 or repetition_time:
        hdr["pixdim"][4] = float(repetition_time or 1.0)
    hdr["descrip"] = description.encode("ascii", "replace")[:79]
    hdr.set_data_offset(352)
    block = hdr.binaryblock
    if len(block) != 348:
        raise AssertionError(f"NIfTI header packed to {len(block)} bytes")
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


# --------------------------------------------------------------------------------------------
# PNG: windowed 8-bit slices, square pixels, annotations burned in

#: (center, width) in HU, the usual radiology presets
WINDOW_PRESETS = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft_tissue": (40.0, 400.0),
    "abdomen": (60.0, 400.0),
    "liver": (60.0, 160.0),
    "bone": (400.0, 1800.0),
}

AXES = ("axial", "coronal", "sagittal")


def apply_window(arr, center: float, width: float) -> np.ndarray:
    """8-bit display values with DICOM's linear VOI function (PS3.3 C.11.2.1.2.1).

    ``x <= c - 0.5 - (w-1)/2`` -> 0, ``x > c - 0.5 + (w-1)/2`` -> 255, linear between.
    """
    if width < 1:
        raise ValueError(f"window width must be >= 1, got {width}")
    x = np.asarray(arr, dtype=np.float64)
    y = ((x - (center - 0.5)) / max(width - 1.0, 1e-9) + 0.5) * 255.0
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def resolve_window(volume_or_window=None, *, window=None, preset: str | None = None,
                   data=None) -> tuple[float, float]:
    """The window to use: explicit ``(center, width)``, a preset name, the DICOM window of the
    volume, or the 0.5-99.5 percentile range of ``data``."""
    if window is not None:
        c, w = (float(v) for v in window)
        return c, w
    if preset is not None:
        key = preset.lower().replace(" ", "_").replace("-", "_")
        if key not in WINDOW_PRESETS:
            raise ValueError(f"unknown window preset {preset!r}; choose from "
                             f"{', '.join(WINDOW_PRESETS)}")
        return WINDOW_PRESETS[key]
    w = getattr(volume_or_window, "window", None)
    if w:
        return float(w[0]), float(w[1])
    if data is None:
        data = np.asarray(volume_or_window.array)
    lo, hi = np.percentile(np.asarray(data), [0.5, 99.5])
    return float((lo + hi) / 2), float(max(hi - lo, 1.0))


def canonical_view(array, spacing, origin, direction, leading: int = 0):
    """``(z, y, x)`` LPS-ordered view (no copy), its spacing and world origin (napari's
    display grid)."""
    shape = array.shape[leading:leading + 3]
    dt = geometry.display_transform(spacing, origin, direction, shape)
    return dt.apply(array, leading=leading), np.asarray(dt.scale), np.asarray(dt.translate)


def slice_plane(view, scale, axis: str, index: int):
    """One plane of a ``(z, y, x)`` view as displayed by radiologists.

    Returns ``(image, (row_mm, col_mm), to_pixel)`` where ``to_pixel(world_zyx)`` maps world
    points to (row, column) pixel coordinates of ``image``: axial rows run anterior->posterior
    and columns right->left (patient's right on the viewer's left); coronal and sagittal put
    superior at the top, sagittal anterior on the left.
    """
    nz = view.shape[0]
    if axis == "axial":
        img = view[index]
        return img, (scale[1], scale[2]), (lambda p: (p[..., 1], p[..., 2]))
    if axis == "coronal":
        img = view[::-1, index, :]
        return img, (scale[0], scale[2]), (lambda p: (nz - 1 - p[..., 0], p[..., 2]))
    if axis == "sagittal":
        img = view[::-1, :, index]
        return img, (scale[0], scale[1]), (lambda p: (nz - 1 - p[..., 0], p[..., 1]))
    raise ValueError(f"axis must be one of {AXES}, got {axis!r}")


_PALETTE = [(255, 64, 64), (64, 200, 255), (255, 210, 0), (120, 255, 120), (255, 128, 255),
            (255, 150, 50), (0, 255, 200), (180, 120, 255)]


def render_plane(image2d, pixel_mm, window, *, shapes=(), labels2d=None, to_pixel=None,
                 rgb: bool = False, upsample_only: bool = True):
    """Window a plane, resample to square pixels, and burn in annotations.

    Parameters
    ----------
    image2d : ndarray
        The plane (values in output units), or RGB (``rgb=True``).
    pixel_mm : (float, float)
        Row and column spacing; the image is resized so a pixel is square (the smaller
        spacing is kept, the other axis stretched).
    shapes : iterable of dict
        ``{"type": "rectangle"|"polygon"|"path"|"line"|"ellipse", "vertices": (n, 2) pixel
        coordinates (row, column) of this plane, "color": (r, g, b), "label": str}``.
    labels2d : ndarray of int, optional
        A label image on the same grid; each label's outline is drawn in its own colour.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8.
    """
    from PIL import Image, ImageDraw

    if rgb:
        arr = np.asarray(image2d)
        if arr.dtype != np.uint8:
            arr = (arr.astype(np.float64) / max(float(arr.max()), 1.0) * 255).astype(np.uint8)
        base = Image.fromarray(np.ascontiguousarray(arr[..., :3]), "RGB")
    else:
        base = Image.fromarray(apply_window(image2d, *window), "L").convert("RGB")
    h, w = base.height, base.width
    rmm, cmm = float(pixel_mm[0]), float(pixel_mm[1])
    unit = min(rmm, cmm)
    fy, fx = rmm / unit, cmm / unit
    size = (max(1, int(round(w * fx))), max(1, int(round(h * fy))))
    if size != (w, h):
        base = base.resize(size, Image.BILINEAR)
    draw = ImageDraw.Draw(base)
    if labels2d is not None:
        lab = np.asarray(labels2d)
        edge = _outline(lab)
        if edge.any():
            rgbimg = np.asarray(base).copy()
            big = np.asarray(Image.fromarray(np.where(edge, lab, 0).astype(np.int32))
                             .resize(size, Image.NEAREST))
            for v in np.unique(big[big > 0]):
                rgbimg[big == v] = _PALETTE[(int(v) - 1) % len(_PALETTE)]
            base = Image.fromarray(rgbimg)
            draw = ImageDraw.Draw(base)
    lw = max(1, int(round(min(size) / 256)))
    for sh in shapes:
        pts = np.asarray(sh["vertices"], float)
        xy = [(float(c * fx + (fx - 1) / 2), float(r * fy + (fy - 1) / 2)) for r, c in pts]
        color = tuple(int(v) for v in sh.get("color", (255, 255, 0))[:3])
        kind = sh.get("type", "polygon")
        if kind in ("path", "line"):
            draw.line(xy, fill=color, width=lw)
        elif kind == "ellipse" and len(xy) == 4:
            xs, ys = [p[0] for p in xy], [p[1] for p in xy]
            draw.ellipse([min(xs), min(ys), max(xs), max(ys)], outline=color, width=lw)
        elif len(xy) >= 2:
            draw.polygon(xy, outline=color, width=lw)
        label = sh.get("label")
        if label:
            x0, y0 = min(p[0] for p in xy), min(p[1] for p in xy)
            draw.text((x0 + 2, max(0, y0 - 12)), str(label), fill=color)
    return np.asarray(base)


def _outline(lab: np.ndarray) -> np.ndarray:
    """Pixels of a label image that touch a different label (4-neighbourhood)."""
    edge = np.zeros(lab.shape, bool)
    edge[1:, :] |= lab[1:, :] != lab[:-1, :]
    edge[:-1, :] |= lab[:-1, :] != lab[1:, :]
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    return edge & (lab > 0)


def write_png(path, rgb_image, *, overwrite: bool = False) -> str:
    """Save an ``(H, W, 3)`` or ``(H, W)`` uint8 image as PNG (or JPEG by extension)."""
    from PIL import Image

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(ext)
    if fmt is None:
        raise DicomToolsError(path, "image file names must end in .png, .jpg or .jpeg")
    with atomic_output(path, overwrite) as tmp:
        Image.fromarray(np.asarray(rgb_image)).save(tmp, format=fmt)
    return path


def export_png(volume, out_dir, *, window=None, preset: str | None = None,
               axis: str = "axial", slices=None, overwrite: bool = False,
               prefix: str | None = None, progress=None) -> list[str]:
    """Write slices of a :class:`Volume` as windowed 8-bit PNGs with square pixels.

    Parameters
    ----------
    volume : Volume
        3D (4D volumes export their first time point; RGB exports as is).
    out_dir : path
        Folder (created if needed). Files are ``<prefix or axis>_<index:04d>.png``.
    window : (center, width), optional
        In the volume's units (HU for CT). Default: ``preset``, else the DICOM window, else
        the 0.5-99.5 percentile range.
    axis : {"axial", "coronal", "sagittal"}
        Plane of the patient (not of the acquisition): a sagittal series exported axially
        gives axial reformats.
    slices : iterable of int, optional
        Indices along ``axis`` (default: all).

    Returns
    -------
    list of str
        The files written.

    Notes
    -----
    With ``overwrite``, the folder's earlier slices named as this function names them
    (``axial|coronal|sagittal|<prefix>_NNNN.png``) that this export did not rewrite are
    removed once it has succeeded, so the folder never mixes slices of two exports; other
    files are never touched.
    """
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}, got {axis!r}")
    arr = volume.array
    lead = 1 if volume.n_time > 1 else 0
    if lead:
        arr = arr[0]
    view, scale, _ = canonical_view(arr, volume.spacing, volume.origin, volume.direction)
    win = None if volume.rgb else resolve_window(volume, window=window, preset=preset)
    n = {"axial": view.shape[0], "coronal": view.shape[1], "sagittal": view.shape[2]}[axis]
    idx = list(range(n)) if slices is None else [int(i) for i in slices]
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise ValueError(f"slice index {bad[0]} out of range 0..{n - 1} for {axis}")
    stem = fit_name(prefix or axis, NAME_MAX - 16)
    names = [os.path.join(os.fspath(out_dir), f"{stem}_{i:04d}.png") for i in idx]
    if not overwrite:
        clash = [p for p in names if os.path.exists(p)]
        if clash:
            raise DicomToolsError(clash[0], "exists; not overwriting (use overwrite=True / --force)")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise DicomToolsError(exc.filename or out_dir, _reason(exc, "cannot create the "
                                                                    "folder")) from None
    previous = _own_pngs(out_dir, stem) if overwrite else []
    out = []
    for j, (i, name) in enumerate(zip(idx, names, strict=True)):
        plane, pix, _ = slice_plane(view, scale, axis, i)
        img = render_plane(np.asarray(plane), pix, win, rgb=volume.rgb)
        out.append(write_png(name, img, overwrite=overwrite))
        if progress is not None:
            progress(j + 1, len(idx))
    new = {os.path.basename(p) for p in out}
    if overwrite:  # our own earlier PNGs that this run did not rewrite are stale
        for n in sorted(set(previous) - new):
            try:
                os.unlink(os.path.join(os.fspath(out_dir), n))
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise DicomToolsError(exc.filename, _reason(exc, "cannot remove an earlier "
                                                                 "output")) from None
    return out


def _own_pngs(out_dir, stem: str) -> list[str]:
    """Names in ``out_dir`` that :func:`export_png` writes (``axial_0007.png``, any axis, or
    ``<stem>_0007.png``): regular files only."""
    import re

    pat = re.compile(rf"(?:axial|coronal|sagittal|{re.escape(stem)})_\d{{4,}}\.png")
    try:
        entries = list(os.scandir(out_dir))
    except OSError:
        return []
    return [e.name for e in entries if pat.fullmatch(e.name) and e.is_file(follow_symlinks=False)]


def export_annotated(image, image_scale, image_translate, path, *, window, rgb=False,
                     shapes=(), labels=None, overwrite: bool = False) -> list[str]:
    """Write an image as shown in napari (axis-aligned world grid) with annotations burned in.

    Parameters
    ----------
    image : array, 2D or 3D ``(z, y, x)`` display grid (layer data)
    image_scale, image_translate : sequences
        The layer's world transform (mm).
    path : str
        ``name.png``: a 2D image is written there; for 3D, each axial slice that carries an
        annotation (every slice when there are none) goes to ``name_<k:04d>.png``.
    shapes : iterable of dict
        ``{"type", "vertices" (world coordinates, n x 2 or n x 3), "color", "label"}``.
    labels : array, optional
        Label image on the same grid as ``image`` (outlines are drawn).
    """
    path = os.fspath(path)
    img = np.asarray(image) if not hasattr(image, "compute") else image
    nd = img.ndim - (1 if rgb else 0)
    sc = np.asarray(image_scale, float)[-nd:]
    tr = np.asarray(image_translate, float)[-nd:]
    if labels is not None and tuple(np.shape(labels)) != tuple(img.shape[:nd]):
        raise DicomToolsError(path, f"labels shape {np.shape(labels)} differs from the image "
                                    f"{img.shape[:nd]}; draw labels on the image's grid")
    shapes_idx = []
    for sh in shapes:
        v = np.asarray(sh["vertices"], float)[:, -nd:]
        shapes_idx.append(dict(sh, vertices=(v - tr) / sc))
    if nd == 2:
        pix = (sc[0], sc[1])
        lab = None if labels is None else np.asarray(labels)
        out = render_plane(np.asarray(img), pix, window, shapes=shapes_idx, labels2d=lab,
                           rgb=rgb)
        return [write_png(path, out, overwrite=overwrite)]
    if nd != 3:
        raise DicomToolsError(path, f"PNG export needs a 2D or 3D layer, got {nd}D")
    by_slice: dict[int, list] = {}
    for sh in shapes_idx:
        z = np.round(sh["vertices"][:, 0]).astype(int)
        if len(set(z.tolist())) == 1:
            by_slice.setdefault(int(z[0]), []).append(dict(sh, vertices=sh["vertices"][:, 1:]))
    lab_slices = set()
    if labels is not None:
        lab_arr = np.asarray(labels)
        lab_slices = set(np.nonzero(lab_arr.reshape(lab_arr.shape[0], -1).any(axis=1))[0]
                         .tolist())
    wanted = sorted(set(by_slice) | lab_slices) or list(range(img.shape[0]))
    wanted = [k for k in wanted if 0 <= k < img.shape[0]]
    stem = path[:-4] if path.lower().endswith(".png") else path
    names = [f"{stem}_{k:04d}.png" for k in wanted]
    if not overwrite:
        clash = [p for p in names if os.path.exists(p)]
        if clash:
            raise DicomToolsError(clash[0], "exists; not overwriting")
    out = []
    for k, name in zip(wanted, names, strict=True):
        lab2 = None if labels is None else np.asarray(labels[k])
        rgbimg = render_plane(np.asarray(img[k]), (sc[1], sc[2]), window,
                              shapes=by_slice.get(k, ()), labels2d=lab2, rgb=rgb)
        out.append(write_png(name, rgbimg, overwrite=overwrite))
    return out
