"""The vendor private tag readers behind :mod:`napari_dicomtools.core.vendor` and the header
stage (:mod:`napari_dicomtools.core.headers`): Siemens, GE, Philips and UIH diffusion, GE
pepolar, Philips precise scaling, Siemens XA echo numbers and receive coils, UIH grid files
(and the standard diffusion attributes they complement).

Private: ``vendor`` holds the public API (:func:`~napari_dicomtools.core.vendor.read_diffusion`,
:class:`~napari_dicomtools.core.vendor.Diffusion`, defined here so that both modules can build
it without an import cycle, and named by ``vendor``); ``headers`` calls the per-image readers.
Every reader takes a parsed data set (the fast parser's or pydicom's) and returns ``None`` (or
a neutral value) when the tags are absent or not from the expected vendor, as dcm2niix reads
them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from pydicom import Dataset

from . import fastheader
from ._values import DatasetLike, _f, _floats, _group_item, _i, _text

#: a gradient direction (x, y, z), an LPS unit vector (or zero for a b=0 image)
Vector3 = tuple[float, float, float]


class Diffusion(NamedTuple):
    """The diffusion weighting of an MR image.

    Parameters
    ----------
    bvalue : float or None
        The b-value (s/mm^2); None when the tags do not give it.
    gradient : tuple of 3 float or None
        The gradient direction, an LPS unit vector (zero for a b=0 image); None when the tags
        do not give it.

    Examples
    --------
    >>> b, g = Diffusion(1000.0, (0.0, 0.0, 1.0))
    >>> b, g
    (1000.0, (0.0, 0.0, 1.0))
    """

    bvalue: float | None
    gradient: Vector3 | None


# reprs, pickles and the API reference name it where users import it from
Diffusion.__module__ = "napari_dicomtools.core.vendor"

_NONE = Diffusion(None, None)


def _vector3(values: list[float] | None) -> Vector3 | None:
    """Three floats as a gradient tuple (None stays None)."""
    return None if not values else (values[0], values[1], values[2])


def _philips_scale_slope(ds: DatasetLike) -> float | None:
    """Philips' private ScaleSlope (2005,100E) when its creator block says Philips."""
    if isinstance(ds, fastheader.FastDataset):
        creator, ss = ds.get_tag(0x20050010), ds.get_tag(0x2005100E)
    else:
        c, e = ds.get(0x20050010), ds.get(0x2005100E)
        creator = c.value if c is not None else None
        ss = e.value if e is not None else None
    if not creator or "PHILIPS" not in str(creator).upper():
        return None
    try:
        v = float(ss[0] if isinstance(ss, (list, tuple, bytes)) and not isinstance(
            ss, bytes) else ss)
    except (TypeError, ValueError):
        return None
    return v if v and np.isfinite(v) else None


def _private(ds: DatasetLike, tag: int) -> Any:
    """Raw value of a private tag from the fast or the pydicom data set (None if absent)."""
    if isinstance(ds, fastheader.FastDataset):
        return ds.get_tag(tag)
    e = ds.get(tag)
    return None if e is None else e.value


def _siemens_diffusion(ds: DatasetLike) -> Diffusion:
    """b-value and gradient (LPS) from Siemens' private (0019,100C)/(0019,100E)."""
    creator = _private(ds, 0x00190010)
    if not creator or "SIEMENS MR HEADER" not in str(creator).upper():
        return _NONE
    raw_b = _private(ds, 0x0019100C)
    if isinstance(raw_b, (bytes, bytearray)):
        raw_b = raw_b.decode("ascii", "replace").strip(" \x00")
    b = _f(raw_b)
    g = _private(ds, 0x0019100E)
    if isinstance(g, (bytes, bytearray)) and len(g) == 24:
        g = list(np.frombuffer(g, "<f8"))
    return Diffusion(b, _vector3(_floats(g, 3)))


def _ge_pepolar(ds: DatasetLike) -> tuple[bool, int]:
    """(rows reversed, series-number offset) of a GE ``epi_pepolar`` image, as dcm2niix.

    The pulse sequence name (0019,109C) ends in ``epi_pepolar`` and user data 12 (0019,10B3)
    says which volumes were acquired with reversed phase-encoding polarity: 1 all of them;
    2 the odd volumes, 3 the even ones (volume = TemporalPositionIdentifier). GE stores those
    with their rows reversed under an unchanged position and orientation: they are flipped
    back, and with 2/3 they form their own series, numbered SeriesNumber + 1000.
    """
    if "GEMS_ACQU" not in _creator(ds, 0x00190010):
        return False, 0
    name = _private(ds, 0x0019109C)
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).decode("ascii", "replace")
    if "epi_pepolar" not in str(name or ""):
        return False, 0
    mode = round((_private_numbers(ds, 0x001910B3) or [0])[0])
    if mode == 1:
        return True, 0
    volume = _i(ds.get("TemporalPositionIdentifier", None), 0) or 0
    if volume > 0 and ((mode == 2 and volume % 2 == 1) or (mode == 3 and volume % 2 == 0)):
        return True, 1000
    return False, 0


def _private_numbers(ds: DatasetLike, tag: int) -> list[float] | None:
    """A private DS/IS/FL value as floats (text, binary or already decoded), or None."""
    v = _private(ds, tag)
    if v is None:
        return None
    if isinstance(v, (bytes, bytearray)):
        text = bytes(v).decode("ascii", "replace").strip(" \x00")
        v = text.split("\\") if text and all(c in "0123456789+-.eE \\" for c in text) \
            else list(np.frombuffer(bytes(v)[:len(v) // 4 * 4], "<f4"))
    vals = v if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else [v]
    try:
        out = [float(x) for x in vals]
    except (TypeError, ValueError):
        return None
    return out if out and all(np.isfinite(out)) else None


def _creator(ds: DatasetLike, tag: int) -> str:
    """The private creator text at ``tag`` (upper case, padding stripped; "" if absent)."""
    v = _private(ds, tag)
    if isinstance(v, (bytes, bytearray)):
        v = bytes(v).decode("ascii", "replace")
    return str(v or "").strip(" \x00").upper()


def _ge_diffusion(ds: DatasetLike) -> Diffusion:
    """b-value and gradient (LPS) from GE's private (0043,1039) and (0019,10BB-BD).

    GE stores the b-value plus a 10^9 bias in the first value of (0043,1039) and the gradient
    in the image frame of the logical axes (frequency, phase, slice), as dcm2niix reads it
    (``geCorrectBvecs``): swapped for row phase encoding, flipped per slice plane. A gradient
    of length 0.03-0.97 scales the b-value by its squared length (rounded to 5 s/mm^2).
    """
    if "GEMS_PARM" not in _creator(ds, 0x00430010):
        return _NONE
    slop = _private_numbers(ds, 0x00431039)
    if not slop:
        return _NONE
    b = float(int(slop[0]) % 1000000000)
    if "GEMS_ACQU" not in _creator(ds, 0x00190010):
        return Diffusion(b, None)
    g = _private_vector(ds, (0x001910BB, 0x001910BC, 0x001910BD))
    iop = _floats(ds.get("ImageOrientationPatient", None), 6)
    if g is None or iop is None:
        return Diffusion(b, None)
    v = np.array(g, float)
    n = float(np.linalg.norm(v))
    if b <= 0 or n <= 1e-6:
        return Diffusion(b, (0.0, 0.0, 0.0))
    if 0.03 < n < 0.97:  # dcm2niix: b-value scaled by |g|^2, issue 163/245
        scaled = b * n * n
        b = 5.0 if 0 < scaled < 5 else float(int((scaled + 2.5) / 5) * 5)
    v = v / n
    row, col = np.array(iop[:3]), np.array(iop[3:])
    normal = np.cross(row, col)
    plane = int(np.argmax(np.abs(normal)))  # 0 sagittal, 1 coronal, 2 axial
    if _text(ds.get("InPlanePhaseEncodingDirection", None)).upper().startswith("ROW"):
        v = np.array([v[1], -v[0], v[2]])
    flip = {0: (1, 1, 0), 1: (0, 1, 1), 2: (0, 0, 1)}[plane]
    v = v * np.where(np.array(flip) == 1, -1.0, 1.0)
    v[1] = -v[1]
    v = -v  # image-frame components as dcm2niix has them before its own output flips
    return Diffusion(b, _unit(v[0] * row - v[1] * col + v[2] * normal))


def _unit(world: npt.NDArray[np.float64]) -> Vector3:
    """``world`` scaled to length 1, as a gradient tuple."""
    x, y, z = (float(c) for c in world / np.linalg.norm(world))
    return x, y, z


def _private_vector(ds: DatasetLike, tags: tuple[int, int, int]) -> list[float] | None:
    """The first number of each of three private tags, or None when one lacks it."""
    v = [_private_numbers(ds, t) for t in tags]
    return None if any(not x for x in v) else [x[0] for x in v if x]


def _philips_diffusion(ds: DatasetLike) -> Diffusion:
    """b-value (2001,1003) and gradient (2005,10B0-B2, LPS) from Philips' private tags."""
    if "PHILIPS" not in _creator(ds, 0x20010010):
        return _NONE
    b = _private_numbers(ds, 0x20011003)
    if not b:
        return _NONE
    if "PHILIPS" not in _creator(ds, 0x20050010):
        return Diffusion(b[0], None)
    return Diffusion(b[0], _vector3(_private_vector(ds, (0x200510B0, 0x200510B1, 0x200510B2))))


def _diffusion(ds: DatasetLike, shared: DatasetLike | None,
               default: Diffusion | None) -> Diffusion:
    """(b-value, gradient direction) from the top level or an enhanced MRDiffusionSequence."""
    b = _f(ds.get("DiffusionBValue", None)) if hasattr(ds, "get") else None
    g = _floats(ds.get("DiffusionGradientOrientation", None), 3) if hasattr(ds, "get") \
        else None
    for group in (ds, shared):
        item = _group_item(group, "MRDiffusionSequence") if group is not None and \
            not isinstance(group, dict) and "MRDiffusionSequence" in group else None
        if item is None:
            continue
        b = b if b is not None else _f(item.get("DiffusionBValue", None))
        direc = _group_item(item, "DiffusionGradientDirectionSequence")
        if g is None and direc is not None:
            g = _floats(direc.get("DiffusionGradientOrientation", None), 3)
    if b is None and g is None and default is not None:
        return default
    return Diffusion(b, _vector3(g))


def _siemens_coil(ds: DatasetLike) -> str | None:
    """The receive coil of a Siemens image, as dcm2niix reads it: CoilString (0051,100F)
    (creator ``SIEMENS MR HEADER``: ``HEA;HEP`` for a combined image, one element such as
    ``H12`` for an uncombined one), else, on XA, the coil number that leads the ICE
    dimensions (0021,1106) of an uncombined image (``12_1_1_...``; ``X_...`` when combined)."""
    if "SIEMENS MR HEADER" in _creator(ds, 0x00510010):
        v = _private(ds, 0x0051100F)
        if isinstance(v, (bytes, bytearray)):
            v = bytes(v).decode("ascii", "replace")
        v = str(v or "").strip(" \x00")
        if v:
            return v
    if "SIEMENS MR SDI" in _creator(ds, 0x00210011):
        ice = _private(ds, 0x00211106)
        if isinstance(ice, (bytes, bytearray)):
            ice = bytes(ice).decode("ascii", "replace")
        first = str(ice or "").strip(" \x00").split("_")[0]
        if first.isdigit() and int(first) > 0:
            return str(int(first))
    return None


def _siemens_ice_echo(per_frame: Dataset | None) -> int | None:
    """Echo number of a Siemens XA enhanced frame: the second field of its ICE dimensions
    (0021,1106) ``X_2_1_...`` in the per-frame (0021,11FE) item, as dcm2niix reads it."""
    if per_frame is None or 0x002111FE not in per_frame:
        return None
    try:
        item = per_frame[0x002111FE].value[0]
        creator = item.get(0x00210011)
        if creator is None or "SIEMENS MR SDI" not in str(creator.value).upper():
            return None
        ice = item.get(0x00211106)
        fields = str(ice.value if ice is not None else "").split("_")
        echo = int(fields[1]) if len(fields) > 1 else None
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None
    return echo if echo and echo > 0 else None


# --------------------------------------------------------------------------------------------
# United Imaging Healthcare (UIH): grid files and diffusion
#
# UIH stores DWI/DTI and fMRI either one file per slice or one file per volume, the "grid"
# (UIH's word; like a Siemens mosaic), as UIH documented them for dcm2niix (dcm2niix's
# UIH/README.md, dcm2niix issue 225). The private block is the one whose creator
# (0065,00xx) is "Image Private Header"; with block 10:
#
# - ImageType (0008,0008) contains VFRAME in a grid file;
# - (0065,1050) MR Number Of Slice In Volume (DS): the number of slices n tiled in the grid,
#   ceil(sqrt(n)) tiles per row and ceil(n / per_row) rows (20 slices: 5 x 4, where a
#   Siemens mosaic would be 5 x 5), filled row by row;
# - (0065,1051) MR VFrame Sequence (SQ): one item per slice, in tile order, with that
#   slice's ImagePositionPatient (0020,0032), SliceLocation and acquisition time; the grid
#   file itself need not have an ImagePositionPatient;
# - (0065,1009) BActualValue (FD) and (0065,1037) MRDiffusionGradOrientation (FD, 3): the
#   gradient in the image frame (row direction, column direction, row x column), as dcm2niix
#   reads it.
#
# The fast parser keeps every (0065,00xx) creator and (0065,bb09), (0065,bb37), (0065,bb50) of
# the block bb whose creator is UIH's (usually 0x10), but no sequences: a grid file's slice
# positions need pydicom.

#: private creator of UIH's (0065,xx..) block
UIH_CREATOR = "IMAGE PRIVATE HEADER"


def _uih_get(ds: DatasetLike, offset: int) -> Any:
    """The value of UIH private element ``offset`` (0x50 for (0065,xx50)), or None."""
    # the fast parser knows which creators the file has: no probing of 240 blocks per file
    blocks = ds.private_blocks(0x0065) if isinstance(ds, fastheader.FastDataset) \
        else range(0x10, 0x100)
    for block in blocks:
        creator = _private(ds, 0x00650000 | block)
        if creator is None:
            continue
        if isinstance(creator, (bytes, bytearray)):
            creator = bytes(creator).decode("ascii", "replace")
        if str(creator).strip(" \x00").upper() == UIH_CREATOR:
            return _private(ds, 0x00650000 | (block << 8) | offset)
    return None


def _uih_numbers(value: Any, count: int) -> list[float] | None:
    """``count`` finite floats from a DS/FD value (decoded, text or little-endian bytes)."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):  # UN (implicit VR lost): DS text or FD
        raw = bytes(value)
        text = raw.decode("ascii", "replace").strip(" \x00")
        if text and all(c in "0123456789+-.eE \\" for c in text):
            value = text.split("\\")
        elif len(raw) == 8 * count:
            value = list(np.frombuffer(raw, "<f8"))
        else:
            return None
    vals = value if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" \
        else [value]
    try:
        out = [float(x) for x in vals]
    except (TypeError, ValueError):
        return None
    return out if len(out) == count and all(math.isfinite(x) for x in out) else None


def _uih_grid_slices(ds: DatasetLike) -> int:
    """(0065,1050): how many slices a UIH grid file holds (0 when absent or unreadable)."""
    n = _uih_numbers(_uih_get(ds, 0x50), 1)
    return round(n[0]) if n and n[0] >= 1 else 0


def _uih_grid_layout(n: int, rows: int, columns: int) -> tuple[int, int, int] | None:
    """``(tile rows, tile columns, tiles per row)`` of a UIH grid of ``n`` slices stored in a
    ``rows`` x ``columns`` image, or None when the image does not divide into that grid.

    Examples
    --------
    >>> _uih_grid_layout(20, 256, 320)  # 5 columns x 4 rows of 64x64
    (64, 64, 5)
    """
    if n < 1:
        return None
    per_row = math.ceil(math.sqrt(n))
    n_rows = math.ceil(n / per_row)
    if rows % n_rows or columns % per_row:
        return None
    return rows // n_rows, columns // per_row, per_row


def _uih_grid_positions(ds: DatasetLike, n: int) -> list[npt.NDArray[np.float64]] | None:
    """ImagePositionPatient of each of the ``n`` slices of a UIH grid, from the (0065,1051)
    MR VFrame Sequence (tile order), or None when the sequence does not give all of them."""
    seq = _uih_get(ds, 0x51)
    if seq is None or isinstance(seq, (bytes, bytearray, str)):
        return None
    try:
        items = list(seq)
    except TypeError:
        return None
    if len(items) != n:
        return None
    out = []
    for item in items:
        e = item.get(0x00200032)
        pos = _uih_numbers(None if e is None else e.value, 3)
        if pos is None:
            return None
        out.append(np.array(pos, float))
    return out


def _uih_diffusion(ds: DatasetLike) -> Diffusion:
    """b-value (0065,1009) and gradient (0065,1037) from UIH's private tags, the gradient
    turned from the image frame (row, column, row x column) into an LPS unit vector, as
    dcm2niix reads it (``siemensPhilipsCorrectBvecs``, UIH case); a zero gradient (the b=0
    volume) stays zero."""
    b = _uih_numbers(_uih_get(ds, 0x09), 1)
    if b is None:
        return _NONE
    g = _uih_numbers(_uih_get(ds, 0x37), 3)
    iop = _floats(ds.get("ImageOrientationPatient", None), 6)
    if g is None or iop is None:
        return Diffusion(b[0], None)
    v = np.array(g)
    if float(np.linalg.norm(v)) <= 1e-6:
        return Diffusion(b[0], (0.0, 0.0, 0.0))
    row, col = np.array(iop[:3]), np.array(iop[3:])
    return Diffusion(b[0], _unit(v[0] * row + v[1] * col + v[2] * np.cross(row, col)))
