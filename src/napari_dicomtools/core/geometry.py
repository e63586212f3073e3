"""Slice ordering, spacing checks and affines.

Conventions used across the package
-----------------------------------
* Arrays are ``(slice, row, column)`` (plus a leading time axis for 4D).
* ``direction`` is a 3x3 matrix whose column ``k`` is the unit LPS vector of array axis ``k``
  (so column 0 is the slice step, 1 the column-direction cosine, 2 the row-direction cosine of
  DICOM's ImageOrientationPatient). ``spacing`` is in the same ``(slice, row, column)`` order, mm.
* ``affine_lps``/``affine_ras`` follow NIfTI/ITK index order ``(i, j, k) = (column, row, slice)``
  so ``nibabel.Nifti1Image(volume.array.T, volume.affine_ras)`` is the right NIfTI.
* napari world coordinates are patient millimetres with axes ``(z, y, x)`` of LPS, i.e.
  (Superior, Posterior, Left)-positive: an axial slice shows anterior at the top and the
  patient's left on the right, the radiological convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

#: a float array (positions, directions, affines)
Floats = NDArray[np.float64]

__all__ = [
    "LPS_TO_RAS", "WORLD_AXIS_LABELS", "SliceOrder", "DisplayTransform", "slice_normal",
    "orientation_label", "median", "order_slices", "direction_matrix", "affine_lps", "affine_ras",
    "world_affine", "display_transform",
]


#: LPS -> RAS: negate x and y.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: names of the napari world axes (z, y, x of LPS)
WORLD_AXIS_LABELS = ("S-I (z)", "P-A (y)", "L-R (x)")


def slice_normal(orientation: ArrayLike) -> Floats:
    """Unit normal of an image plane from ImageOrientationPatient (0020,0037).

    Parameters
    ----------
    orientation : sequence of 6 float
        Row direction cosines followed by column direction cosines (LPS).

    Returns
    -------
    numpy.ndarray
        ``row x column``, normalized, shape (3,).

    Raises
    ------
    ValueError
        The row and column cosines are parallel (no plane).

    Examples
    --------
    >>> slice_normal([1, 0, 0, 0, 1, 0])  # axial: the normal points superior (+z in LPS)
    array([0., 0., 1.])
    """
    iop = np.asarray(orientation, dtype=float)
    r0, r1, r2, c0, c1, c2 = (float(x) for x in iop[:6])
    # row x column written out: np.cross's own products and differences (the same bits), at a
    # tenth of its cost (it runs for every series grouped and every file of some writers)
    n = np.array([r1 * c2 - r2 * c1, r2 * c0 - r0 * c2, r0 * c1 - r1 * c0])
    norm = np.linalg.norm(n)
    if norm < 1e-6:
        raise ValueError(f"ImageOrientationPatient {list(iop)} has parallel row/column cosines")
    unit: Floats = n / norm
    return unit


def orientation_label(orientation: ArrayLike) -> str:
    """'axial', 'coronal', 'sagittal' or 'oblique' from ImageOrientationPatient.

    A plane is called oblique when its normal is more than 1 degree off every patient axis.

    Parameters
    ----------
    orientation : sequence of 6 float
        ImageOrientationPatient (0020,0037): row then column direction cosines (LPS).

    Returns
    -------
    str
        ``"axial"``, ``"coronal"``, ``"sagittal"`` or ``"oblique"``.

    Examples
    --------
    >>> orientation_label([1, 0, 0, 0, 0, -1])
    'coronal'
    >>> orientation_label([1, 0, 0, 0, 0.9, 0.436])  # tilted about 26 degrees
    'oblique'
    """
    n = np.abs(slice_normal(orientation))
    k = int(np.argmax(n))
    if n[k] < np.cos(np.deg2rad(1.0)):
        return "oblique"
    return ("sagittal", "coronal", "axial")[k]


@dataclass
class SliceOrder:
    """How a stack of image positions is ordered and spaced (made by :func:`order_slices`).

    Parameters
    ----------
    order : numpy.ndarray
        Indices that sort the input positions along the slice normal (ascending).
    distances : numpy.ndarray
        Sorted projections of the positions on the normal, mm.
    spacing : float
        Distance between consecutive slice centres along the slice step (mm); for tilted
        stacks this is the length of the step vector, not its projection on the normal.
    step : numpy.ndarray
        Mean LPS vector from one slice to the next (length ``spacing``).
    tilt_deg : float
        Angle between the step and the plane normal (gantry/detector tilt), degrees.
    problems : list of str
        Human-readable findings: duplicates, gaps, non-uniform spacing, tilt.
    uniform : bool
        True when every step is within tolerance of the median.
    duplicates : int
        Number of steps shorter than the tolerance (two slices at one position).

    Examples
    --------
    >>> o = order_slices([[0, 0, 5.0], [0, 0, 0.0]], [1, 0, 0, 0, 1, 0])
    >>> o.order.tolist(), o.spacing, o.uniform
    ([1, 0], 5.0, True)
    """

    order: np.ndarray
    distances: np.ndarray
    spacing: float
    step: np.ndarray
    tilt_deg: float = 0.0
    problems: list[str] = field(default_factory=list)
    uniform: bool = True
    duplicates: int = 0


def median(values: ArrayLike) -> float:
    """The median of a 1-D array: :func:`numpy.median` without its first-call import of
    ``numpy.ma`` (tens of milliseconds, on every command-line call).

    Parameters
    ----------
    values : array_like
        Numbers (flattened).

    Returns
    -------
    float
        The median, NaN for no values.

    Examples
    --------
    >>> median([3.0, 1.0, 2.0, 10.0])
    2.5
    """
    a = np.sort(np.asarray(values, float).ravel())
    n = len(a)
    if n == 0:
        return float("nan")
    return float((a[(n - 1) // 2] + a[n // 2]) / 2)


def order_slices(positions: ArrayLike, orientation: ArrayLike, *, rel_tol: float = 0.01, abs_tol: float = 0.01,
                 fallback_spacing: float | None = None) -> SliceOrder:
    """Order slices by the projection of ImagePositionPatient on the slice normal.

    This never looks at InstanceNumber or file names: the geometry alone decides, as in
    dcm2niix and 3D Slicer.

    Parameters
    ----------
    positions : array_like, shape (n, 3)
        ImagePositionPatient (0020,0032) of each slice, LPS mm.
    orientation : sequence of 6 float
        The shared ImageOrientationPatient (0020,0037).
    rel_tol, abs_tol : float
        A step differing from the median by more than ``max(abs_tol, rel_tol * median)`` mm
        makes the spacing non-uniform.
    fallback_spacing : float, optional
        Spacing used for a single slice (SpacingBetweenSlices or SliceThickness).

    Returns
    -------
    SliceOrder
        The order, sorted distances, spacing, step vector, tilt and the problems found
        (duplicates, gaps, non-uniform spacing, tilt).

    Examples
    --------
    Three axial slices given out of order, with a gap of one missing slice:

    >>> o = order_slices([[0, 0, 10.0], [0, 0, 0.0], [0, 0, 2.5], [0, 0, 5.0]],
    ...                  [1, 0, 0, 0, 1, 0])
    >>> o.order.tolist(), o.spacing, o.uniform
    ([1, 2, 3, 0], 2.5, False)
    >>> o.problems
    ['gap(s) in the slice positions: 1 step(s) up to 5 mm where the usual step is 2.5 mm (about 1 missing slice(s))']
    """
    pos = np.asarray(positions, dtype=float).reshape(-1, 3)
    normal = slice_normal(orientation)
    proj = pos @ normal
    order = np.argsort(proj, kind="stable")
    dist = proj[order]
    n = len(pos)
    problems: list[str] = []
    if n == 1:
        sp = float(fallback_spacing) if fallback_spacing and fallback_spacing > 0 else 1.0
        return SliceOrder(order, dist, sp, normal * sp)

    steps = np.diff(dist)
    dup = int(np.sum(steps < abs_tol))
    if dup:
        problems.append(f"{dup} duplicate slice position(s)")
    positive = steps[steps >= abs_tol]
    if len(positive) == 0:
        sp = float(fallback_spacing) if fallback_spacing and fallback_spacing > 0 else 1.0
        return SliceOrder(order, dist, sp, normal * sp, problems=problems, uniform=False,
                          duplicates=dup)
    med = median(positive)
    tol = max(abs_tol, rel_tol * med)
    uniform = bool(np.all(np.abs(positive - med) <= tol)) and dup == 0
    if not uniform:
        problems += _spacing_problems(positive, med, tol)
    step, tilt = _step_and_tilt(pos[order], normal, dist, max(n - 1 - dup, 1), uniform, med)
    if tilt:
        problems.append(f"gantry/detector tilt of {tilt:.2f} degrees (sheared geometry)")
    spacing = float(np.linalg.norm(step))
    return SliceOrder(order, dist, spacing, step, tilt, problems, uniform, dup)


def _spacing_problems(positive: Floats, med: float, tol: float) -> list[str]:
    """What is wrong with steps (along the normal, duplicates left out) that are not all
    within ``tol`` of their median ``med``: gaps (with the slices likely missing) and
    non-uniform spacing."""
    problems = []
    # with few slices the median can fall between the step and a gap (steps 2.5 and 5: median
    # 3.75); when every step is a whole multiple of the smallest, that smallest is the step
    smallest = float(positive.min())
    multiples = positive / smallest
    if np.all(np.abs(multiples - np.round(multiples)) * smallest <= tol):
        med = smallest
    # a gap holds at least one whole missing slice; a longer step short of that is non-uniform
    # spacing, not a gap ("about 0 missing slices" helps nobody)
    gaps = positive[(positive > med + tol) & (np.round(positive / med) >= 2)]
    if len(gaps):
        missing = int(np.sum(np.round(gaps / med) - 1))
        problems.append(
            f"gap(s) in the slice positions: {len(gaps)} step(s) up to {gaps.max():.3g} mm "
            f"where the usual step is {med:.3g} mm (about {missing} missing slice(s))")
    if np.any(np.abs(positive - med * np.maximum(np.round(positive / med), 1)) > tol):
        problems.append(f"non-uniform slice spacing: steps from {positive.min():.4g} to "
                        f"{positive.max():.4g} mm")
    return problems


def _step_and_tilt(ordered: Floats, normal: Floats, dist: Floats, nsteps: int, uniform: bool,
                   med: float) -> tuple[Floats, float]:
    """The LPS step vector from one slice to the next and the tilt (degrees, 0 when below
    0.01) between it and the plane normal.

    The step is the mean displacement between neighbours, from first to last slice; for a
    non-uniform stack, the direction of that line with the median step ``med`` along the
    normal. Without tilt the step is along the normal (its length the along-normal spacing);
    with tilt the in-space step is longer than its projection on the normal.
    """
    total = ordered[-1] - ordered[0]
    step: Floats
    if uniform:
        step = total / nsteps
    else:
        along = float(abs(total @ normal))
        step = total / along * med if along > 1e-9 else normal * med
    cos_t = float(np.clip(abs(step @ normal) / max(float(np.linalg.norm(step)), 1e-12), -1, 1))
    tilt = float(np.degrees(np.arccos(cos_t)))
    if tilt > 0.01:
        return step, tilt
    step = normal * (dist[-1] - dist[0]) / nsteps if uniform else normal * med
    return step, 0.0


def direction_matrix(orientation: ArrayLike, step: ArrayLike | None = None) -> Floats:
    """3x3 direction matrix (columns: slice, row, column axes) from IOP and a slice step.

    The slice column is the normalized step when given (so a tilted stack keeps its shear),
    the plane normal otherwise.

    Parameters
    ----------
    orientation : sequence of 6 float
        ImageOrientationPatient (0020,0037).
    step : array_like, shape (3,), optional
        LPS vector from one slice to the next (``SliceOrder.step``).

    Returns
    -------
    numpy.ndarray
        Shape (3, 3); column 0 the slice direction, 1 the column cosines (row index
        increases), 2 the row cosines (column index increases).

    Examples
    --------
    >>> direction_matrix([1, 0, 0, 0, 1, 0], step=[0, 0, -2.0])  # slices run inferior
    array([[ 0.,  0.,  1.],
           [ 0.,  1.,  0.],
           [-1.,  0.,  0.]])
    """
    iop = np.asarray(orientation, dtype=float)
    row_cos = iop[:3] / np.linalg.norm(iop[:3])  # along a row: column index increases
    col_cos = iop[3:6] / np.linalg.norm(iop[3:6])  # along a column: row index increases
    if step is None or np.linalg.norm(step) < 1e-9:
        s = slice_normal(iop)
    else:
        s = np.asarray(step, float) / np.linalg.norm(step)
    d: Floats = np.column_stack([s, col_cos, row_cos])
    return d


def affine_lps(spacing: ArrayLike, origin: ArrayLike, direction: ArrayLike) -> Floats:
    """4x4 affine from voxel index ``(column, row, slice)`` to LPS millimetres.

    Parameters
    ----------
    spacing : sequence of 3 float
        ``(slice, row, column)`` spacing in mm.
    origin : sequence of 3 float
        LPS position of the centre of voxel (0, 0, 0), i.e. the first slice's
        ImagePositionPatient.
    direction : array_like, shape (3, 3)
        Columns are the unit LPS vectors of the ``(slice, row, column)`` axes.

    Returns
    -------
    numpy.ndarray
        Shape (4, 4), homogeneous.

    Examples
    --------
    >>> affine_lps((2.5, 0.5, 0.5), (-100, -80, 40), np.eye(3)[:, ::-1])
    array([[   0.5,    0. ,    0. , -100. ],
           [   0. ,    0.5,    0. ,  -80. ],
           [   0. ,    0. ,    2.5,   40. ],
           [   0. ,    0. ,    0. ,    1. ]])
    """
    d = np.asarray(direction, float)
    sp = np.asarray(spacing, float)
    aff = np.eye(4)
    aff[:3, 0] = d[:, 2] * sp[2]
    aff[:3, 1] = d[:, 1] * sp[1]
    aff[:3, 2] = d[:, 0] * sp[0]
    aff[:3, 3] = np.asarray(origin, float)
    return aff


def affine_ras(spacing: ArrayLike, origin: ArrayLike, direction: ArrayLike) -> Floats:
    """Like :func:`affine_lps` but to RAS, as NIfTI's sform/qform expect.

    Parameters
    ----------
    spacing : sequence of 3 float
        ``(slice, row, column)`` spacing in mm.
    origin : sequence of 3 float
        LPS position of the centre of voxel (0, 0, 0).
    direction : array_like, shape (3, 3)
        Columns are the unit LPS vectors of the ``(slice, row, column)`` axes.

    Returns
    -------
    numpy.ndarray
        Shape (4, 4): voxel index ``(column, row, slice)`` to RAS mm.

    Examples
    --------
    >>> affine_ras((2.5, 0.5, 0.5), (-100, -80, 40), np.eye(3)[:, ::-1])[:3, 3]
    array([100.,  80.,  40.])
    """
    ras: Floats = LPS_TO_RAS @ affine_lps(spacing, origin, direction)
    return ras


def world_affine(spacing: ArrayLike, origin: ArrayLike, direction: ArrayLike) -> Floats:
    """4x4 affine from array index ``(slice, row, column)`` to napari world ``(z, y, x)`` LPS.

    Parameters
    ----------
    spacing : sequence of 3 float
        ``(slice, row, column)`` spacing in mm.
    origin : sequence of 3 float
        LPS position of the centre of voxel (0, 0, 0).
    direction : array_like, shape (3, 3)
        Columns are the unit LPS vectors of the ``(slice, row, column)`` axes.

    Returns
    -------
    numpy.ndarray
        Shape (4, 4), the affine a napari layer of the ``(slice, row, column)`` array takes.

    Examples
    --------
    >>> world_affine((2.5, 0.5, 0.5), (-100, -80, 40), np.eye(3)[:, ::-1])
    array([[   2.5,    0. ,    0. ,   40. ],
           [   0. ,    0.5,    0. ,  -80. ],
           [   0. ,    0. ,    0.5, -100. ],
           [   0. ,    0. ,    0. ,    1. ]])
    """
    a = affine_lps(spacing, origin, direction)
    # reorder input axes (col,row,slice)->(slice,row,col) and output (x,y,z)->(z,y,x)
    perm_in = np.eye(4)[[2, 1, 0, 3]]
    perm_out = np.eye(4)[[2, 1, 0, 3]]
    world: Floats = perm_out @ a @ perm_in.T
    return world


@dataclass
class DisplayTransform:
    """How to show a ``(slice, row, column)`` array axis-aligned in napari's world.

    ``view = array.transpose(axes)[flips]`` (numpy views, no copy), then a layer with
    ``scale`` and ``translate`` puts ``view`` in world ``(z, y, x)`` LPS mm. For oblique data
    the residual rotation is dropped for display only; ``residual_deg`` says how much.
    Made by :func:`display_transform`.

    Parameters
    ----------
    axes : tuple of int
        For each world axis ``(z, y, x)``, the array axis shown along it.
    flips : tuple of bool
        For each world axis, whether the view runs against the array axis.
    scale : tuple of float
        mm per view voxel along ``(z, y, x)``.
    translate : tuple of float
        World ``(z, y, x)`` LPS mm of the view's first voxel.
    residual_deg : float, optional
        Largest angle between an array axis and the world axis it is shown along.

    Examples
    --------
    A coronal stack (slices step anterior, rows run inferior) is shown with its rows on z
    and its slices on y, both reversed:

    >>> dt = DisplayTransform(axes=(1, 0, 2), flips=(True, True, False),
    ...                       scale=(0.5, 2.0, 0.5), translate=(18.5, -4.0, -10.0))
    >>> a = np.zeros((3, 4, 5))
    >>> dt.apply(a).shape
    (4, 3, 5)
    >>> dt.invert(dt.apply(a)).shape
    (3, 4, 5)
    """

    axes: tuple[int, ...]
    flips: tuple[bool, ...]
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    residual_deg: float = 0.0

    def apply(self, array: Any, leading: int = 0) -> Any:
        """Return the display view of ``array`` (no copy).

        Parameters
        ----------
        array : numpy.ndarray or dask.array.Array
            ``(slice, row, column)`` after ``leading`` axes, with optional trailing axes
            (RGB samples), all kept.
        leading : int, optional
            Extra axes before the three spatial ones (e.g. time).

        Returns
        -------
        numpy.ndarray or dask.array.Array
            The transposed, flipped view.
        """
        lead = tuple(range(leading))
        axes = lead + tuple(leading + a for a in self.axes)
        trailing = tuple(range(leading + 3, array.ndim))  # e.g. RGB samples
        view = array.transpose(axes + trailing)
        sl = (slice(None),) * leading + tuple(slice(None, None, -1) if f else slice(None)
                                              for f in self.flips)
        return view[sl]

    def invert(self, view: Any, leading: int = 0) -> Any:
        """The original ``(slice, row, column)`` array from a display ``view`` (no copy).

        Parameters
        ----------
        view : numpy.ndarray or dask.array.Array
            A view made by :meth:`apply` (or data drawn on it, e.g. a labels layer).
        leading : int, optional
            Extra axes before the three spatial ones (e.g. time).

        Returns
        -------
        numpy.ndarray or dask.array.Array
            The array in the original axis order and directions.
        """
        sl = (slice(None),) * leading + tuple(slice(None, None, -1) if f else slice(None)
                                              for f in self.flips)
        unflipped = view[sl]
        inv = [0, 0, 0]
        for w, k in enumerate(self.axes):
            inv[k] = w
        lead = tuple(range(leading))
        trailing = tuple(range(leading + 3, view.ndim))
        return unflipped.transpose(lead + tuple(leading + a for a in inv) + trailing)


def _aligned_orientation(affine: NDArray[np.float64]) -> NDArray[np.float64] | None:
    """:func:`nibabel.orientations.io_orientation` of an affine whose axes lie along the
    output axes (each unit column within 1e-9 of a signed unit vector, on distinct axes):
    then its polar decomposition is that signed permutation and its answer is read off
    directly. None otherwise. Importing nibabel costs 0.4-0.5 s of a process's first
    napari open (it brings pydicom and requests along), for a few lines of arithmetic."""
    rzs = np.asarray(affine, float)[:3, :3]
    norms = np.linalg.norm(rzs, axis=0)
    if not np.all(norms > 0):
        return None
    unit = rzs / norms
    out = np.argmax(np.abs(unit), axis=0)
    peak = unit[out, np.arange(3)]
    if len(set(out.tolist())) != 3 or np.min(np.abs(peak)) < 1 - 1e-9:
        return None
    return np.column_stack([out, np.sign(peak)]).astype(float)


def display_transform(spacing: ArrayLike, origin: ArrayLike, direction: ArrayLike,
                      shape: tuple[int, ...]) -> DisplayTransform:
    """Closest axis-aligned presentation of a volume in napari world ``(z, y, x)``.

    Uses :func:`nibabel.orientations.io_orientation` on the index->LPS affine, so ties and
    oblique data are resolved the way nibabel (and napari-nifti) do. Axes that lie along the
    world axes (most series) need no import of nibabel: its answer is then the signed
    permutation itself (:func:`_aligned_orientation`).

    Parameters
    ----------
    spacing : sequence of 3 float
        ``(slice, row, column)`` spacing in mm.
    origin : sequence of 3 float
        LPS position of the centre of voxel (0, 0, 0).
    direction : array_like, shape (3, 3)
        Columns are the unit LPS vectors of the ``(slice, row, column)`` axes.
    shape : tuple of int
        The ``(slice, row, column)`` shape (extra trailing axes ignored).

    Returns
    -------
    DisplayTransform
        Axes, flips, scale and translate of the view, and the rotation it leaves out.

    Examples
    --------
    A coronal stack: slices step anterior (-y), rows run inferior (-z), columns left (+x):

    >>> d = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float)
    >>> dt = display_transform((2.0, 0.5, 0.5), (-10, 0, 20), d, (3, 4, 5))
    >>> dt.axes, dt.flips, dt.scale
    ((1, 0, 2), (True, True, False), (0.5, 2.0, 0.5))
    >>> dt.translate, dt.residual_deg
    ((18.5, -4.0, -10.0), 0.0)
    """
    shape = tuple(int(s) for s in shape[:3])
    wa = world_affine(spacing, origin, direction)  # (slice,row,col) -> (z,y,x)
    ornt = _aligned_orientation(wa)  # for each input axis: (output axis, sign)
    if ornt is None:  # oblique
        from nibabel.orientations import io_orientation

        ornt = io_orientation(wa)
    axes = [0, 0, 0]
    flips = [False, False, False]
    for k, (w, s) in enumerate(ornt):
        axes[int(w)] = k
        flips[int(w)] = bool(s < 0)
    # first voxel of the view (in original indices)
    first = np.zeros(3)
    for w in range(3):
        k = axes[w]
        first[k] = shape[k] - 1 if flips[w] else 0
    corner = (wa @ np.append(first, 1.0))[:3]
    sp = np.asarray(spacing, float)
    scale = tuple(float(sp[axes[w]]) for w in range(3))
    # residual rotation: the largest angle between an array axis and its world axis
    unit = wa[:3, :3] / np.linalg.norm(wa[:3, :3], axis=0)
    resid = 0.0
    for w in range(3):
        c = abs(unit[w, axes[w]])
        resid = max(resid, float(np.degrees(np.arccos(np.clip(c, -1, 1)))))
    return DisplayTransform(tuple(axes), tuple(flips), scale, tuple(float(c) for c in corner),
                            resid)
