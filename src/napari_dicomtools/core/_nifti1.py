"""The NIfTI-1 header, packed with numpy alone.

``import nibabel`` takes longer than converting a small series (it imports urllib, http,
email, xml and every image format it knows: about a third of a ``dicomtools convert`` call,
benchmarks/bench_small_series.py), and a single-file ``.nii`` needs only its 348-byte
header. This packs the same bytes :class:`nibabel.Nifti1Header` does for the fields we set
(tests/test_latency.py compares them byte for byte): the same layout, defaults and qform
algorithm (nibabel's ``set_qform``: zooms as column norms, qfac from the determinant, the
closest rotation by polar decomposition, nibabel's ``quaternions.mat2quat``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

#: the NIfTI-1 header (nifti1.h), field for field, in the machine's byte order
HEADER_DTYPE = np.dtype([
    ("sizeof_hdr", "=i4"), ("data_type", "S10"), ("db_name", "S18"), ("extents", "=i4"),
    ("session_error", "=i2"), ("regular", "S1"), ("dim_info", "u1"), ("dim", "=i2", (8,)),
    ("intent_p1", "=f4"), ("intent_p2", "=f4"), ("intent_p3", "=f4"),
    ("intent_code", "=i2"), ("datatype", "=i2"), ("bitpix", "=i2"), ("slice_start", "=i2"),
    ("pixdim", "=f4", (8,)), ("vox_offset", "=f4"), ("scl_slope", "=f4"),
    ("scl_inter", "=f4"), ("slice_end", "=i2"), ("slice_code", "u1"), ("xyzt_units", "u1"),
    ("cal_max", "=f4"), ("cal_min", "=f4"), ("slice_duration", "=f4"), ("toffset", "=f4"),
    ("glmax", "=i4"), ("glmin", "=i4"), ("descrip", "S80"), ("aux_file", "S24"),
    ("qform_code", "=i2"), ("sform_code", "=i2"), ("quatern_b", "=f4"),
    ("quatern_c", "=f4"), ("quatern_d", "=f4"), ("qoffset_x", "=f4"), ("qoffset_y", "=f4"),
    ("qoffset_z", "=f4"), ("srow_x", "=f4", (4,)), ("srow_y", "=f4", (4,)),
    ("srow_z", "=f4", (4,)), ("intent_name", "S16"), ("magic", "S4"),
])
assert HEADER_DTYPE.itemsize == 348

#: NIfTI-1 datatype codes (nifti1.h) of the numpy types a NIfTI-1 file stores
_CODES = {"u1": 2, "i2": 4, "i4": 8, "f4": 16, "c8": 32, "f8": 64, "i1": 256, "u2": 512,
          "u4": 768, "i8": 1024, "u8": 1280, "c16": 1792}
_COLOUR = {("R", "G", "B"): 128, ("R", "G", "B", "A"): 2304}  # RGB24, RGBA32

NIFTI_UNIT_MM, NIFTI_UNIT_SEC = 2, 8


def datatype_code(dtype: npt.DTypeLike) -> int:
    """The NIfTI-1 ``datatype`` of ``dtype``.

    Raises
    ------
    ValueError
        ``dtype`` has no NIfTI-1 code (float16, bool, strings, ...).
    """
    dt: np.dtype[Any] = np.dtype(dtype)
    if dt.fields:
        names = tuple(dt.names or ())
        if names in _COLOUR and all(dt.fields[n][0] == np.uint8 for n in names):
            return _COLOUR[names]
    else:
        code = _CODES.get(f"{dt.kind}{dt.itemsize}")
        if code is not None:
            return code
    raise ValueError(f"dtype {dt} cannot be stored in NIfTI-1")


def mat2quat(m: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The unit quaternion (w, x, y, z), w >= 0, of the rotation matrix ``m``: the largest
    eigenvector of Bar-Itzhack's K matrix (exactly nibabel's ``quaternions.mat2quat``)."""
    qxx, qyx, qzx, qxy, qyy, qzy, qxz, qyz, qzz = np.asarray(m, float).flat
    k = np.array([
        [qxx - qyy - qzz, 0, 0, 0],
        [qyx + qxy, qyy - qxx - qzz, 0, 0],
        [qzx + qxz, qzy + qyz, qzz - qxx - qyy, 0],
        [qyz - qzy, qzx - qxz, qxy - qyx, qxx + qyy + qzz],
    ]) / 3.0
    vals, vecs = np.linalg.eigh(k)
    q = vecs[[3, 0, 1, 2], np.argmax(vals)]
    return -q if q[0] < 0 else q


def qform_params(affine: npt.ArrayLike) -> tuple[npt.NDArray[np.float64],
                                                  npt.NDArray[np.float64], float,
                                                  npt.NDArray[np.float64]]:
    """``(quaternion b, c, d), (qoffset x, y, z), qfac, zooms`` for ``affine`` (4x4), as
    NIfTI-1's qform stores it: the rotation closest to the affine's direction cosines
    (shears stripped, by polar decomposition), the sign of the determinant in qfac."""
    aff = np.asarray(affine, float)
    rzs = aff[:3, :3]
    zooms = np.sqrt(np.sum(rzs * rzs, axis=0))
    r = rzs / zooms
    qfac = 1.0
    if np.linalg.det(r) <= 0:
        qfac = -1.0
        r[:, -1] *= -1
    p, _, qs = np.linalg.svd(r)
    quat = mat2quat(p @ qs)
    return quat[1:], aff[:3, 3], qfac, zooms


def pack_header(shape: Sequence[int], dtype: npt.DTypeLike, affine: npt.ArrayLike, *,
                xyzt_units: int = NIFTI_UNIT_MM | NIFTI_UNIT_SEC,
                pixdim4: float | None = None, description: bytes = b"",
                vox_offset: int = 352) -> bytes:
    """The 348 bytes of a single-file NIfTI-1 header, in the machine's byte order.

    ``shape``: the NIfTI shape (up to 7 dimensions, each 0..32767); ``affine`` goes to both
    the sform and the qform with code 1 (scanner), units ``xyzt_units`` (default mm and s);
    ``pixdim4`` the time step; ``description`` at most 79 bytes. The result is what
    :class:`nibabel.Nifti1Header` packs after ``set_data_dtype``, ``set_data_shape``,
    ``set_qform(affine, 1)``, ``set_sform(affine, 1)``, ``set_xyzt_units`` and
    ``set_data_offset``.
    """
    shape = tuple(int(n) for n in shape)
    if not 1 <= len(shape) <= 7 or any(not 0 <= n <= 32767 for n in shape):
        raise ValueError(f"shape {shape} does not fit NIfTI-1 (1 to 7 dimensions of at "
                         "most 32767)")
    code = datatype_code(dtype)
    h = np.zeros((), HEADER_DTYPE)
    h["sizeof_hdr"] = 348
    h["magic"] = b"n+1"
    h["scl_slope"] = 1.0
    h["datatype"] = code
    h["bitpix"] = np.dtype(dtype).itemsize * 8
    dim = np.ones(8, np.int16)
    dim[0] = len(shape)
    dim[1:len(shape) + 1] = shape
    h["dim"] = dim
    pixdim = np.ones(8, np.float32)
    (qb, qc, qd), offset, qfac, zooms = qform_params(affine)
    pixdim[0] = qfac
    pixdim[1:4] = zooms
    if pixdim4 is not None:
        pixdim[4] = pixdim4
    h["pixdim"] = pixdim
    h["quatern_b"], h["quatern_c"], h["quatern_d"] = qb, qc, qd
    h["qoffset_x"], h["qoffset_y"], h["qoffset_z"] = offset
    aff = np.asarray(affine, float)
    h["srow_x"], h["srow_y"], h["srow_z"] = aff[0], aff[1], aff[2]
    h["qform_code"] = h["sform_code"] = 1
    h["xyzt_units"] = xyzt_units
    h["descrip"] = description[:79]
    h["vox_offset"] = vox_offset
    return h.tobytes()
