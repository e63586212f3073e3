"""Writers: NIfTI (affine as dcm2niix writes it) from a :class:`Volume` or array + geometry.

Every writer refuses to overwrite an existing file unless ``overwrite=True`` and writes through
a temporary file in the destination folder, renamed into place when complete, so a crash never
leaves a half-written output under the final name.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

import numpy as np

from . import geometry
from .errors import DicomToolsError


@contextmanager
def atomic_output(path, overwrite: bool = False):
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    Raises
    ------
    DicomToolsError
        ``path`` exists and ``overwrite`` is False, or its folder does not exist.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise DicomToolsError(path, "exists; not overwriting (use overwrite=True / --force)")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise DicomToolsError(path, f"folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=os.path.basename(path), dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def nifti_image(array, affine_ras, *, repetition_time: float | None = None,
                description: str = ""):
    """A ``nibabel.Nifti1Image`` from a ``(slice, row, column)`` (or ``(t, slice, row,
    column)``) array and the RAS affine of voxel ``(column, row, slice)``.

    The data are stored in their own dtype (the exact one the reader chose), sform and qform
    both set with code 1 (scanner), units mm and s, TR in pixdim[4] for 4D.
    """
    import nibabel as nib

    arr = np.asarray(array)
    if arr.ndim == 3:
        data = arr.transpose(2, 1, 0)
    elif arr.ndim == 4:
        data = arr.transpose(3, 2, 1, 0)
    else:
        raise ValueError(f"expected a 3D or 4D array, got shape {arr.shape}")
    if data.dtype == np.int64 and data.size and \
            np.iinfo(np.int32).min <= data.min() and data.max() <= np.iinfo(np.int32).max:
        data = data.astype(np.int32)
    img = nib.Nifti1Image(data, np.asarray(affine_ras, float))
    hdr = img.header
    hdr.set_xyzt_units("mm", "sec")
    img.set_sform(np.asarray(affine_ras, float), code=1)
    img.set_qform(np.asarray(affine_ras, float), code=1)
    if arr.ndim == 4 and repetition_time:
        zooms = list(hdr.get_zooms())
        zooms[3] = float(repetition_time)
        hdr.set_zooms(zooms)
    if description:
        hdr["descrip"] = description.encode("ascii", "replace")[:79]
    return img


def _gzip_bytes(raw: bytes, level: int) -> bytes:
    """gzip with the fastest implementation installed (isal, zlib-ng, then zlib)."""
    try:
        from isal import igzip

        return igzip.compress(raw, compresslevel=min(level, 3))
    except ImportError:
        pass
    try:
        from zlib_ng import gzip_ng

        return gzip_ng.compress(raw, compresslevel=level)
    except ImportError:
        import gzip

        return gzip.compress(raw, compresslevel=level)


def write_nifti(volume, path, *, overwrite: bool = False, compress_level: int = 1):
    """Write a :class:`Volume` as NIfTI-1 (``.nii`` or ``.nii.gz``), as dcm2niix would.

    Parameters
    ----------
    volume : Volume
        3D or 4D, grayscale (RGB volumes are refused with a clear error).
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
    path = os.fspath(path)
    if not path.endswith((".nii", ".nii.gz")):
        raise DicomToolsError(path, "a NIfTI file name must end in .nii or .nii.gz")
    if volume.rgb:
        raise DicomToolsError(path, "RGB images cannot be written as NIfTI here; use PNG")
    tr = volume.metadata.get("header", {}).get("RepetitionTime")
    try:
        tr = float(tr) / 1000.0 if tr is not None else None
    except (TypeError, ValueError):
        tr = None
    img = nifti_image(np.asarray(volume.array), volume.affine_ras, repetition_time=tr,
                      description=str(volume.metadata.get("name", ""))[:79])
    _save(img, path, overwrite, compress_level)
    return path


def world_affine_to_ras(scale, translate) -> np.ndarray:
    """RAS affine of voxel ``(column, row, slice)`` for a layer shown axis-aligned in our world
    ``(z, y, x)`` LPS with diagonal ``scale``/``translate`` (last three axes)."""
    sc = np.asarray(scale, float)[-3:]
    tr = np.asarray(translate, float)[-3:]
    direction = np.array([[0.0, 0, 1], [0, 1, 0], [1, 0, 0]])  # (slice,row,col) -> (x,y,z)
    return geometry.affine_ras(sc, tr[::-1], direction)


def layer_geometry(data, scale, translate, metadata=None):
    """Array ``(slice, row, column)`` (4D: leading time axis) and RAS affine for a napari layer.

    A layer that our reader made and that still has its load-time transform is written on its
    true (possibly oblique or sheared) grid: the display view is undone and ``affine_ras`` from
    its metadata is used. Any other layer (a labels layer drawn on it, a layer from elsewhere,
    or one the user moved) is written as shown: axis-aligned in world ``(z, y, x)`` LPS mm from
    its own ``scale`` and ``translate``.

    Returns
    -------
    (numpy.ndarray or array-like, numpy.ndarray)
    """
    metadata = metadata or {}
    nd = len(data.shape)
    if nd not in (2, 3, 4):
        raise ValueError(f"expected a 2D, 3D or 4D layer, got shape {data.shape}")
    if nd == 2:
        data = data[None]
        scale = (1.0,) + tuple(scale)
        translate = (0.0,) + tuple(translate)
    lead = 1 if len(data.shape) == 4 else 0
    dt = metadata.get("display_transform") or {}
    aff = metadata.get("affine_ras")
    if aff is not None and "axes" in dt and "scale" in dt and \
            tuple(int(n) for n in data.shape[lead:lead + 3]) == tuple(dt.get("shape", ())) and \
            np.allclose(np.asarray(scale, float)[-3:], dt["scale"]) and \
            np.allclose(np.asarray(translate, float)[-3:], dt["translate"]):
        t = geometry.DisplayTransform(tuple(dt["axes"]), tuple(dt["flips"]), tuple(dt["scale"]),
                                      tuple(dt["translate"]))
        return t.invert(data, leading=lead), np.asarray(aff, float)
    return data, world_affine_to_ras(scale, translate)


def write_layer_nifti(path, data, scale, translate, metadata=None, *, overwrite=False,
                      compress_level: int = 1) -> str:
    """Write napari layer data (image or labels) as NIfTI with its patient-space affine."""
    path = os.fspath(path)
    if not path.endswith((".nii", ".nii.gz")):
        raise DicomToolsError(path, "a NIfTI file name must end in .nii or .nii.gz")
    arr, aff = layer_geometry(data, scale, translate, metadata)
    img = nifti_image(np.asarray(arr), aff)
    _save(img, path, overwrite, compress_level)
    return path


def _save(img, path, overwrite, compress_level):
    import nibabel as nib

    with atomic_output(path, overwrite) as tmp:
        if path.endswith(".gz"):
            with open(tmp, "wb") as f:
                f.write(_gzip_bytes(img.to_bytes(), compress_level))
        else:
            nib.save(img, tmp)  # the temp name ends in the final name, so in .nii
