"""Segmentation in physical units: thresholds in HU, sizes in mm^3, radii in mm.

Pure functions over numpy arrays (``(slice, row, column)`` or 2D) with the voxel ``spacing``
in mm, so results do not depend on the acquisition's resolution. ``spacing`` is one voxel
size per axis or, for oblique or gantry-tilted (sheared) grids, the true index-step -> mm
matrix (:attr:`~napari_dicomtools.core.grid.Grid.linear`): radii are then true millimetres and
volumes use ``|det|``. Used by the napari widgets and usable from the console.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.typing import ArrayLike

from .grid import metric

#: a binary mask
Mask = npt.NDArray[np.bool_]
#: a label image (0 background); the functions keep the integer type they are given
Labels = npt.NDArray[np.integer[Any]]
#: ``scipy.ndimage.find_objects`` of a label image: entry ``i`` is label ``i + 1``'s box
Objects = list[tuple[slice, ...] | None]
#: one stage of :func:`segment_steps`: the previous stage's result -> this stage's
Step = Callable[[Any], npt.NDArray[Any]]

__all__ = [
    "HU_PRESETS", "otsu_threshold", "threshold", "ball", "fill_holes", "opening", "closing",
    "label", "clear_border", "component_sizes", "remove_small", "keep_largest", "relabel",
    "segment_steps", "segment",
]


#: HU ranges (inclusive) of common tissues
HU_PRESETS = {
    "air": (-1100.0, -950.0),
    "lung": (-950.0, -300.0),
    "fat": (-190.0, -30.0),
    "soft_tissue": (-30.0, 150.0),
    "blood_contrast": (150.0, 400.0),
    "bone": (300.0, 3000.0),
    "body": (-300.0, 3000.0),
}


def otsu_threshold(image: ArrayLike, nbins: int = 256) -> float:
    """Otsu's threshold of ``image`` (ignores NaN).

    Parameters
    ----------
    image : array_like
        Intensities (any shape).
    nbins : int, optional
        Histogram bins.

    Returns
    -------
    float
        The threshold, in image units: the value that best separates two classes.

    Raises
    ------
    ValueError
        The image has fewer than two distinct finite values.

    Examples
    --------
    >>> otsu_threshold([-1000.0] * 10 + [40.0] * 10 + [np.nan]) < 40
    True
    """
    from skimage.filters import threshold_otsu

    arr = np.asarray(image)
    arr = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr.ravel()
    if arr.size == 0 or arr.min() == arr.max():
        raise ValueError("Otsu needs an image with at least two distinct values")
    return float(threshold_otsu(arr, nbins=nbins))


def threshold(image: ArrayLike, lower: float | None = None, upper: float | None = None, *,
              method: str = "manual", preset: str | None = None) -> Mask:
    """Binary mask of ``lower <= image <= upper``.

    Parameters
    ----------
    image : array_like
        Intensities (HU for CT), any shape.
    lower, upper : float, optional
        Inclusive bounds in image units; one may be omitted (open range).
    method : {"manual", "otsu"}, optional
        ``otsu``: everything above Otsu's threshold (``lower``/``upper`` ignored).
    preset : str, optional
        A name from ``HU_PRESETS`` (e.g. ``"lung"``, ``"bone"``) giving the range; it wins
        over ``lower``, ``upper`` and ``method``.

    Returns
    -------
    numpy.ndarray of bool
        The mask, shaped like ``image``.

    Raises
    ------
    ValueError
        An unknown preset or method, or no bound at all.

    Examples
    --------
    >>> hu = np.array([-1000, -500, 40, 700])
    >>> threshold(hu, preset="lung")
    array([False,  True, False, False])
    >>> threshold(hu, lower=0)
    array([False, False,  True,  True])
    """
    arr = np.asarray(image)
    if preset is not None:
        key = preset.lower().replace(" ", "_")
        if key not in HU_PRESETS:
            raise ValueError(f"unknown HU preset {preset!r}; choose from {', '.join(HU_PRESETS)}")
        lower, upper = HU_PRESETS[key]
    elif method == "otsu":
        return arr > otsu_threshold(arr)
    elif method != "manual":
        raise ValueError(f"method must be 'manual' or 'otsu', got {method!r}")
    if lower is None and upper is None:
        raise ValueError("give lower and/or upper (in image units, e.g. HU), a preset, or "
                         "method='otsu'")
    mask = np.ones(arr.shape, bool)
    if lower is not None:
        mask &= arr >= lower
    if upper is not None:
        mask &= arr <= upper
    return mask


def ball(radius_mm: float, spacing: ArrayLike) -> Mask:
    """A structuring element: the voxel offsets within ``radius_mm`` of the centre in true
    millimetres (an ellipsoid on anisotropic voxels, a sheared one on a tilted grid).

    Parameters
    ----------
    radius_mm : float
        Radius in mm.
    spacing : array_like
        Voxel sizes per axis (mm), or the square index-step -> mm matrix of a sheared grid;
        its length sets the number of dimensions.

    Returns
    -------
    numpy.ndarray of bool
        Odd-sized along each axis, centred; True within the radius.

    Examples
    --------
    On 2 x 1 mm pixels a 2 mm disc spans 3 rows and 5 columns:

    >>> ball(2.0, (2.0, 1.0)).astype(int)
    array([[0, 0, 1, 0, 0],
           [1, 1, 1, 1, 1],
           [0, 0, 1, 0, 0]])
    """
    sp = np.asarray(spacing, float)
    m = metric(sp, sp.shape[0])
    # the largest offset along axis k inside the ball: radius * |row k of m^-1|
    r = np.maximum(np.floor(radius_mm * np.linalg.norm(np.linalg.inv(m), axis=1) + 1e-9),
                   0).astype(int)
    offsets = np.stack(np.meshgrid(*(np.arange(-k, k + 1) for k in r), indexing="ij"), -1)
    dist = np.linalg.norm(offsets @ m.T, axis=-1)
    inside: Mask = dist <= max(radius_mm, 0.0) + 1e-9
    return inside


def _fill(m: Mask) -> Mask:
    """``scipy.ndimage.binary_fill_holes`` by labelling instead of iterated dilation: a hole
    is a background component (face-connected, as scipy's default) not touching the border.
    Same result, several times faster on large slices."""
    from scipy import ndimage

    bg, n = ndimage.label(~m)
    if n == 0:
        return np.copy(m, order="C")
    faces = [np.take(bg, i, axis=ax).ravel() for ax in range(bg.ndim) for i in (0, -1)]
    outside = np.zeros(n + 1, bool)
    outside[np.concatenate(faces)] = True
    outside[0] = True  # label 0 is the foreground itself
    filled: Mask = ~outside[bg] | m
    return filled


def fill_holes(mask: ArrayLike, per_slice: bool = False, *, axis: int = 0) -> Mask:
    """Fill enclosed holes, in 3D or slice by slice (lungs open at the hilum need 2D).

    Parameters
    ----------
    mask : array_like of bool
        2D or 3D mask.
    per_slice : bool, optional
        For 3D: fill each slice on its own (holes open through a neighbouring slice too).
    axis : int, optional
        The array axis the slices are taken along (the plane the user reads in, e.g. the
        acquisition plane of a sagittal series).

    Returns
    -------
    numpy.ndarray of bool
        The mask with background enclosed by it (face-connected) set.

    Examples
    --------
    >>> ring = np.ones((3, 3), bool)
    >>> ring[1, 1] = False
    >>> bool(fill_holes(ring)[1, 1])
    True
    """
    m: Mask = np.asarray(mask, bool)
    if per_slice and m.ndim == 3:
        out = np.empty_like(m)
        for k in range(m.shape[axis]):
            idx = (slice(None),) * axis + (k,)
            out[idx] = _fill(m[idx])
        return out
    return _fill(m)


def opening(mask: ArrayLike, radius_mm: float, spacing: ArrayLike | None = None) -> Mask:
    """Morphological opening with a ball of ``radius_mm``: removes specks and thin bridges.

    Parameters
    ----------
    mask : array_like of bool
        2D or 3D mask.
    radius_mm : float
        Radius of the ball in mm (a ball of one voxel changes nothing).
    spacing : array_like, optional
        Voxel sizes per axis (mm) or the index-step -> mm matrix; default 1 mm.

    Returns
    -------
    numpy.ndarray of bool
        The opened mask.

    Examples
    --------
    >>> m = np.zeros((7, 7), bool)
    >>> m[1:6, 1:6] = True
    >>> m[0, 0] = True  # a speck
    >>> o = opening(m, 1.0)
    >>> bool(o[0, 0]), bool(o[3, 3])
    (False, True)
    """
    from scipy import ndimage

    m: Mask = np.asarray(mask, bool)
    se = ball(radius_mm, metric(spacing, m.ndim))
    if se.size <= 1:
        return np.copy(m, order="C")
    out: Mask = ndimage.binary_opening(m, structure=se)
    return out


def closing(mask: ArrayLike, radius_mm: float, spacing: ArrayLike | None = None) -> Mask:
    """Morphological closing with a ball of ``radius_mm`` (no shrinkage at the border).

    Parameters
    ----------
    mask : array_like of bool
        2D or 3D mask.
    radius_mm : float
        Radius of the ball in mm (a ball of one voxel changes nothing).
    spacing : array_like, optional
        Voxel sizes per axis (mm) or the index-step -> mm matrix; default 1 mm.

    Returns
    -------
    numpy.ndarray of bool
        The closed mask: gaps narrower than the ball bridged.

    Examples
    --------
    Two blocks 0.5 mm apart, closed with a 1 mm disc on 0.5 mm pixels:

    >>> m = np.zeros((5, 7), bool)
    >>> m[1:4, 1:3] = m[1:4, 4:6] = True
    >>> closing(m, 1.0, spacing=(0.5, 0.5)).astype(int)
    array([[0, 0, 0, 0, 0, 0, 0],
           [0, 1, 1, 0, 1, 1, 0],
           [0, 1, 1, 1, 1, 1, 0],
           [0, 1, 1, 0, 1, 1, 0],
           [0, 0, 0, 0, 0, 0, 0]])
    """
    from scipy import ndimage

    m: Mask = np.asarray(mask, bool)
    se = ball(radius_mm, metric(spacing, m.ndim))
    if se.size <= 1:
        return np.copy(m, order="C")
    pad = [(s // 2, s // 2) for s in se.shape]
    out: Mask = ndimage.binary_closing(np.pad(m, pad), structure=se)
    return out[tuple(slice(p, p + n) for (p, _), n in zip(pad, m.shape, strict=True))]


def label(mask: ArrayLike, connectivity: int = 1) -> npt.NDArray[np.int32]:
    """Connected components of a mask, numbered from 1 in scan order.

    Parameters
    ----------
    mask : array_like of bool
        2D or 3D mask.
    connectivity : int, optional
        1: faces; up to ``mask.ndim``: faces, edges and corners.

    Returns
    -------
    numpy.ndarray of int32
        Labels, 0 for background.

    Examples
    --------
    >>> label(np.eye(2, dtype=bool))
    array([[1, 0],
           [0, 2]], dtype=int32)
    >>> label(np.eye(2, dtype=bool), connectivity=2)
    array([[1, 0],
           [0, 1]], dtype=int32)
    """
    from scipy import ndimage

    m: Mask = np.asarray(mask, bool)
    structure = ndimage.generate_binary_structure(m.ndim, connectivity)
    lab, _ = ndimage.label(m, structure=structure)
    out: npt.NDArray[np.int32] = lab.astype(np.int32, copy=False)
    return out


def clear_border(labels: ArrayLike, per_slice: bool = False, *, objects: Objects | None = None,
                 copy: bool = True, axis: int = 0) -> Labels:
    """Remove components touching the image border (the table, the air outside the body).

    Parameters
    ----------
    labels : array_like of int or bool
        Labels (0 background), or a mask, which is labelled first (face connectivity).
    per_slice : bool, optional
        For 3D: only the in-plane border counts, so objects cut by the first or last slice
        of the stack are kept.
    objects : list of tuple of slice or None, optional
        ``scipy.ndimage.find_objects`` of ``labels``: saves a pass over the image, and is
        updated (the entries of cleared labels become None).
    copy : bool, optional
        False edits ``labels`` in place (when it is an integer array).
    axis : int, optional
        With ``per_slice``, the array axis the slices are taken along (the plane the user
        reads in).

    Returns
    -------
    numpy.ndarray of int
        The labels without the components touching the border (numbers kept).

    Examples
    --------
    >>> lab = np.array([[1, 0, 0],
    ...                 [0, 2, 0],
    ...                 [0, 0, 0]])
    >>> clear_border(lab)
    array([[0, 0, 0],
           [0, 2, 0],
           [0, 0, 0]])
    """
    lab: Labels = np.asarray(labels)
    if lab.dtype == bool:
        lab = label(lab)
    axes = [a for a in range(3) if a != axis] if per_slice and lab.ndim == 3 \
        else range(lab.ndim)
    faces: list[npt.NDArray[Any]] = []
    for ax in axes:  # the border faces as views: no full-size mask
        faces.append(np.take(lab, 0, axis=ax).ravel())
        faces.append(np.take(lab, -1, axis=ax).ravel())
    touching = np.nonzero(np.bincount(np.concatenate(faces).astype(np.int64)))[0]
    return _drop(lab, touching[touching > 0], objects=objects, copy=copy)


def _drop(lab: Labels, values: ArrayLike, *, objects: Objects | None = None,
          copy: bool = True) -> Labels:
    """``lab`` with the given label values set to 0, touching only their bounding boxes."""
    from scipy import ndimage

    out = lab.copy() if copy else lab
    vals = np.asarray(values, np.int64)
    vals = vals[vals > 0]
    if objects is not None:
        vals = vals[vals <= len(objects)]
    if vals.size == 0:
        return out
    if objects is None and vals.size > 256:  # many labels: one lookup-table pass
        keep = np.ones(int(lab.max()) + 1, bool)
        keep[vals] = False
        keep[0] = True
        out[~keep[lab]] = 0
        return out
    boxes: Objects = objects if objects is not None else ndimage.find_objects(
        lab.astype(np.int32, copy=False), max_label=int(vals.max()))
    for v in vals:
        sl = boxes[int(v) - 1]
        if sl is not None:
            sub = out[sl]
            sub[sub == v] = 0
            if objects is not None:
                objects[int(v) - 1] = None
    return out


def component_sizes(labels: ArrayLike) -> npt.NDArray[np.intp]:
    """Voxel count of each label value.

    Parameters
    ----------
    labels : array_like of int
        Non-negative labels.

    Returns
    -------
    numpy.ndarray of int
        Entry ``i`` is the number of voxels of label ``i`` (entry 0: background), up to the
        largest label.

    Examples
    --------
    >>> component_sizes([[0, 1, 1], [3, 3, 3]]).tolist()
    [1, 2, 0, 3]
    """
    return np.bincount(np.asarray(labels).ravel().astype(np.int64))


def remove_small(labels: ArrayLike, min_volume_mm3: float,
                 spacing: ArrayLike | None = None) -> Labels:
    """Drop components smaller than ``min_volume_mm3`` (mm^2 for 2D images).

    Parameters
    ----------
    labels : array_like of int or bool
        Labels (0 background), or a mask, which is labelled first (face connectivity).
    min_volume_mm3 : float
        Smallest volume kept, mm^3 (mm^2 for 2D).
    spacing : array_like, optional
        Voxel sizes per axis (mm) or the index-step -> mm matrix; a voxel's volume is
        ``|det|`` of it (exact on sheared grids). Default 1 mm.

    Returns
    -------
    numpy.ndarray of int
        The labels without the small components (numbers kept).

    Examples
    --------
    >>> lab = np.array([[1, 1, 0, 2]])
    >>> remove_small(lab, 3.0, spacing=(1.0, 2.0))  # label 1: 4 mm^2, label 2: 2 mm^2
    array([[1, 1, 0, 0]])
    """
    lab: Labels = np.asarray(labels)
    if lab.dtype == bool:
        lab = label(lab)
    voxel = float(abs(np.linalg.det(metric(spacing, lab.ndim))))
    sizes = component_sizes(lab) * voxel
    small = np.nonzero(sizes < min_volume_mm3)[0]
    return _drop(lab, small[small > 0])


def keep_largest(labels: ArrayLike, n: int = 1) -> Labels:
    """Keep the ``n`` largest components (by voxel count).

    Parameters
    ----------
    labels : array_like of int or bool
        Labels (0 background), or a mask, which is labelled first (face connectivity).
    n : int, optional
        How many to keep.

    Returns
    -------
    numpy.ndarray of int
        The labels with only the ``n`` largest components (numbers kept).

    Examples
    --------
    >>> keep_largest(np.array([1, 1, 0, 2, 0, 3, 3, 3]))
    array([0, 0, 0, 0, 0, 3, 3, 3])
    """
    lab: Labels = np.asarray(labels)
    if lab.dtype == bool:
        lab = label(lab)
    sizes = component_sizes(lab)
    sizes[0] = 0
    keep = np.argsort(sizes)[::-1][:n]
    keep = keep[sizes[keep] > 0]
    drop = np.setdiff1d(np.nonzero(sizes)[0], keep)
    return _drop(lab, drop)


def relabel(labels: ArrayLike, *, copy: bool = True,
            objects: Objects | None = None) -> npt.NDArray[np.int32]:
    """Labels renumbered 1..N keeping their order, int32.

    No full-size temporary is made beyond the result.

    Parameters
    ----------
    labels : array_like of int
        Labels (0 background).
    copy : bool, optional
        False renumbers an int32 array in place (and returns labels already numbered 1..N
        as they are, not copied).
    objects : list of tuple of slice or None, optional
        An up-to-date ``scipy.ndimage.find_objects`` of ``labels``: which labels are present
        without a pass over the array.

    Returns
    -------
    numpy.ndarray of int32
        The labels numbered 1..N.

    Examples
    --------
    >>> relabel(np.array([0, 5, 5, 9, 2]))
    array([0, 2, 2, 3, 1], dtype=int32)
    """
    from scipy import ndimage

    lab: npt.NDArray[np.int32] = np.asarray(labels)  # int32 from here on
    if lab.dtype != np.int32:
        lab = lab.astype(np.int32)
        copy = False
    if lab.size == 0:
        return lab.copy() if copy else lab
    if objects is None:
        objects = ndimage.find_objects(lab)
    present = np.array([i + 1 for i, sl in enumerate(objects) if sl is not None], np.int64)
    if present.size == 0:
        return np.zeros(lab.shape, np.int32)
    if present.size == present[-1]:  # already consecutive
        return lab.copy() if copy else lab
    lut = np.zeros(int(present[-1]) + 1, np.int32)
    lut[present] = np.arange(1, present.size + 1, dtype=np.int32)
    if copy:
        renumbered: npt.NDArray[np.int32] = lut[lab]
        return renumbered
    np.take(lut, lab, out=lab, mode="clip")  # element-wise: safe in place
    return lab


def segment_steps(image: ArrayLike, spacing: ArrayLike | None = None, *,
                  lower: float | None = None, upper: float | None = None,
                  method: str = "manual", preset: str | None = None, fill: bool = True,
                  open_mm: float = 0.0, close_mm: float = 0.0, border: bool = True,
                  min_volume_mm3: float = 0.0, largest: int = 0, connectivity: int = 1,
                  slice_axis: int = 0) -> list[Step]:
    """The chain of :func:`segment` as a list of one-argument callables (previous result ->
    next), so a GUI can report progress and stop between stages.

    Parameters
    ----------
    image : array_like
        2D or 3D intensities (HU for CT).
    spacing : array_like, optional
        Voxel sizes per axis (mm) or the index-step -> mm matrix of an oblique or sheared
        grid (``Grid.linear``); default 1 mm.
    lower, upper : float, optional
        Threshold range, inclusive, in image units (see :func:`threshold`).
    method : {"manual", "otsu"}, optional
        ``otsu``: everything above Otsu's threshold.
    preset : str, optional
        A name from ``HU_PRESETS`` giving the range.
    fill : bool, optional
        Fill enclosed holes (slice by slice in 3D).
    open_mm : float, optional
        Radius of an opening (mm); 0 skips it.
    close_mm : float, optional
        Radius of a closing (mm), done before the opening; 0 skips it.
    border : bool, optional
        Remove components touching the in-plane border.
    min_volume_mm3 : float, optional
        Remove components smaller than this (mm^3; mm^2 in 2D); 0 keeps all.
    largest : int, optional
        Keep only this many largest components; 0 keeps all.
    connectivity : int, optional
        Of the components: 1 faces, up to ndim faces, edges and corners.
    slice_axis : int, optional
        Hole filling and border clearing work slice by slice along this axis (default 0,
        the acquired slices of a volume; 1 or 2 for the other planes of a display view).

    Returns
    -------
    list of callable
        The stages in order: threshold, close, open, fill, label, clear border, remove
        small, keep largest, relabel (those switched off left out). The first ignores its
        argument; the last returns the final int32 labels numbered 1..N.

    Examples
    --------
    >>> steps = segment_steps(np.zeros((4, 4)), lower=0, fill=False)
    >>> len(steps)  # threshold, label, clear border, relabel
    4
    >>> state = None
    >>> for step in steps:
    ...     state = step(state)
    >>> int(state.max())  # every component touches the border
    0
    """
    arr = np.asarray(image)
    sp = metric(spacing, arr.ndim)
    steps: list[Step] = [lambda _: threshold(arr, lower, upper, method=method, preset=preset)]
    if close_mm > 0:
        steps.append(lambda m: closing(m, close_mm, sp))
    if open_mm > 0:
        steps.append(lambda m: opening(m, open_mm, sp))
    if fill:
        steps.append(lambda m: fill_holes(m, per_slice=arr.ndim == 3, axis=slice_axis))
    ctx: dict[str, Objects] = {}

    def labelled(m: Mask) -> npt.NDArray[np.int32]:
        from scipy import ndimage

        lab = label(m, connectivity)
        # one pass for the components' boxes, kept up to date by clear_border and used by
        # relabel (see segment()), so neither scans the volume again
        ctx["objects"] = ndimage.find_objects(lab)
        return lab

    steps.append(labelled)
    if border:
        steps.append(lambda lab: clear_border(lab, per_slice=arr.ndim == 3, copy=False,
                                              axis=slice_axis, objects=ctx.get("objects")))
    def stale(fn: Step) -> Step:  # these drop components without updating the boxes
        def step(lab: Labels) -> npt.NDArray[Any]:
            ctx.pop("objects", None)
            return fn(lab)
        return step

    if min_volume_mm3 > 0:
        steps.append(stale(lambda lab: remove_small(lab, min_volume_mm3, sp)))
    if largest > 0:
        steps.append(stale(lambda lab: keep_largest(lab, largest)))
    steps.append(lambda lab: relabel(lab, copy=False, objects=ctx.pop("objects", None)))
    return steps


def segment(image: ArrayLike, spacing: ArrayLike | None = None, *,
            progress: Callable[[int, int], object] | None = None,
            **options: Any) -> npt.NDArray[np.int32]:
    """The full chain: threshold, (close, open, fill holes), label, clear border, remove
    small, keep largest; returns int32 labels numbered 1..N.

    Parameters
    ----------
    image : array_like
        2D or 3D intensities (HU for CT).
    spacing : array_like, optional
        Voxel sizes per axis (mm) or the index-step -> mm matrix of an oblique or sheared
        grid (``Grid.linear``): radii are then true millimetres and volumes use ``|det|``.
    progress : callable, optional
        Called as ``progress(done, total)`` after each stage.
    **options
        Those of :func:`segment_steps`: ``lower``, ``upper``, ``method``, ``preset``,
        ``fill``, ``open_mm``, ``close_mm``, ``border``, ``min_volume_mm3``, ``largest``,
        ``connectivity``, ``slice_axis``.

    Returns
    -------
    numpy.ndarray of int32
        Labels numbered 1..N, 0 background.

    Examples
    --------
    Two bright blobs in air; the 1-voxel one is below 2 mm^3 on 1 x 1 x 1 mm voxels:

    >>> img = np.full((5, 8, 8), -1000.0)
    >>> img[1:4, 2:5, 2:5] = 40.0
    >>> img[2, 6, 6] = 40.0
    >>> lab = segment(img, (1.0, 1.0, 1.0), lower=-300, min_volume_mm3=2.0)
    >>> int(lab.max()), int((lab == 1).sum())
    (1, 27)
    """
    steps = segment_steps(image, spacing, **options)
    state: Any = None
    for i, step in enumerate(steps):
        state = step(state)
        if progress is not None:
            progress(i + 1, len(steps))
    result: npt.NDArray[np.int32] = state
    return result
