"""Segmentation in physical units: thresholds in HU, sizes in mm^3, radii in mm.

Pure functions over numpy arrays (``(slice, row, column)`` or 2D) with the voxel ``spacing``
in mm, so results do not depend on the acquisition's resolution. ``spacing`` is one voxel
size per axis or, for oblique or gantry-tilted (sheared) grids, the true index-step -> mm
matrix (:attr:`~napari_dicomtools.core.grid.Grid.linear`): radii are then true millimetres and
volumes use ``|det|``. Used by the napari widgets and usable from the console.
"""

from __future__ import annotations

import numpy as np

from .grid import metric

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


def otsu_threshold(image, nbins: int = 256) -> float:
    """Otsu's threshold of ``image`` (ignores NaN)."""
    from skimage.filters import threshold_otsu

    arr = np.asarray(image)
    arr = arr[np.isfinite(arr)] if arr.dtype.kind == "f" else arr.ravel()
    if arr.size == 0 or arr.min() == arr.max():
        raise ValueError("Otsu needs an image with at least two distinct values")
    return float(threshold_otsu(arr, nbins=nbins))


def threshold(image, lower: float | None = None, upper: float | None = None, *,
              method: str = "manual", preset: str | None = None) -> np.ndarray:
    """Binary mask of ``lower <= image <= upper``.

    Parameters
    ----------
    method : {"manual", "otsu"}
        ``otsu``: everything above Otsu's threshold (``lower``/``upper`` ignored).
    preset : str, optional
        A name from :data:`HU_PRESETS` (e.g. ``"lung"``, ``"bone"``) giving the range.
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


def ball(radius_mm: float, spacing) -> np.ndarray:
    """A structuring element: the voxel offsets within ``radius_mm`` of the centre in true
    millimetres (an ellipsoid on anisotropic voxels, a sheared one on a tilted grid).

    ``spacing``: voxel sizes per axis, or the index-step -> mm matrix (see :func:`segment`).
    """
    sp = np.asarray(spacing, float)
    m = metric(sp, sp.shape[0])
    # the largest offset along axis k inside the ball: radius * |row k of m^-1|
    r = np.maximum(np.floor(radius_mm * np.linalg.norm(np.linalg.inv(m), axis=1) + 1e-9),
                   0).astype(int)
    offsets = np.stack(np.meshgrid(*(np.arange(-k, k + 1) for k in r), indexing="ij"), -1)
    dist = np.linalg.norm(offsets @ m.T, axis=-1)
    return dist <= max(radius_mm, 0.0) + 1e-9


def _fill(m: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes`` by labelling instead of iterated dilation: a hole
    is a background component (face-connected, as scipy's default) not touching the border.
    Same result, several times faster on large slices."""
    from scipy import ndimage

    bg, n = ndimage.label(~m)
    if n == 0:
        return m.copy()
    faces = [np.take(bg, i, axis=ax).ravel() for ax in range(bg.ndim) for i in (0, -1)]
    outside = np.zeros(n + 1, bool)
    outside[np.concatenate(faces)] = True
    outside[0] = True  # label 0 is the foreground itself
    return ~outside[bg] | m


def fill_holes(mask, per_slice: bool = False, *, axis: int = 0) -> np.ndarray:
    """Fill enclosed holes, in 3D or slice by slice (lungs open at the hilum need 2D).

    ``axis``: the array axis the slices are taken along (the plane the user reads in, e.g.
    the acquisition plane of a sagittal series).
    """
    m = np.asarray(mask, bool)
    if per_slice and m.ndim == 3:
        out = np.empty_like(m)
        for k in range(m.shape[axis]):
            idx = (slice(None),) * axis + (k,)
            out[idx] = _fill(m[idx])
        return out
    return _fill(m)


def opening(mask, radius_mm: float, spacing=None) -> np.ndarray:
    """Morphological opening with a ball of ``radius_mm``."""
    from scipy import ndimage

    m = np.asarray(mask, bool)
    se = ball(radius_mm, metric(spacing, m.ndim))
    return ndimage.binary_opening(m, structure=se) if se.size > 1 else m.copy()


def closing(mask, radius_mm: float, spacing=None) -> np.ndarray:
    """Morphological closing with a ball of ``radius_mm`` (no shrinkage at the border)."""
    from scipy import ndimage

    m = np.asarray(mask, bool)
    se = ball(radius_mm, metric(spacing, m.ndim))
    if se.size <= 1:
        return m.copy()
    pad = [(s // 2, s // 2) for s in se.shape]
    out = ndimage.binary_closing(np.pad(m, pad), structure=se)
    return out[tuple(slice(p, p + n) for (p, _), n in zip(pad, m.shape, strict=True))]


def label(mask, connectivity: int = 1) -> np.ndarray:
    """Connected components (1: faces, up to ndim: faces+edges+corners), int32 labels."""
    from scipy import ndimage

    m = np.asarray(mask, bool)
    structure = ndimage.generate_binary_structure(m.ndim, connectivity)
    lab, _ = ndimage.label(m, structure=structure)
    return lab.astype(np.int32, copy=False)


def clear_border(labels, per_slice: bool = False, *, objects: list | None = None,
                 copy: bool = True, axis: int = 0) -> np.ndarray:
    """Remove components touching the image border (the table, the air outside the body).

    With ``per_slice`` (3D), only the in-plane border counts: objects cut by the first/last
    slice of the stack are kept; ``axis`` is the array axis the slices are taken along (the
    plane the user reads in). ``objects`` (``scipy.ndimage.find_objects`` of ``labels``)
    saves a pass over the image and is updated (cleared entries become None); ``copy=False``
    edits ``labels`` in place.
    """
    lab = np.asarray(labels)
    if lab.dtype == bool:
        lab = label(lab)
    axes = [a for a in range(3) if a != axis] if per_slice and lab.ndim == 3 \
        else range(lab.ndim)
    faces = []
    for ax in axes:  # the border faces as views: no full-size mask
        faces.append(np.take(lab, 0, axis=ax).ravel())
        faces.append(np.take(lab, -1, axis=ax).ravel())
    touching = np.nonzero(np.bincount(np.concatenate(faces).astype(np.int64)))[0]
    return _drop(lab, touching[touching > 0], objects=objects, copy=copy)


def _drop(lab: np.ndarray, values, *, objects: list | None = None,
          copy: bool = True) -> np.ndarray:
    """``lab`` with the given label values set to 0, touching only their bounding boxes."""
    from scipy import ndimage

    out = lab.copy() if copy else lab
    values = np.asarray(values, np.int64)
    values = values[values > 0]
    if objects is not None:
        values = values[values <= len(objects)]
    if values.size == 0:
        return out
    if objects is None and values.size > 256:  # many labels: one lookup-table pass
        keep = np.ones(int(lab.max()) + 1, bool)
        keep[values] = False
        keep[0] = True
        out[~keep[lab]] = 0
        return out
    boxes = objects if objects is not None else ndimage.find_objects(
        lab.astype(np.int32, copy=False), max_label=int(values.max()))
    for v in values:
        sl = boxes[int(v) - 1]
        if sl is not None:
            sub = out[sl]
            sub[sub == v] = 0
            if objects is not None:
                objects[int(v) - 1] = None
    return out


def component_sizes(labels) -> np.ndarray:
    """Voxel count of each label value (index = label)."""
    return np.bincount(np.asarray(labels).ravel().astype(np.int64))


def remove_small(labels, min_volume_mm3: float, spacing=None) -> np.ndarray:
    """Drop components smaller than ``min_volume_mm3`` (mm^2 for 2D images); a voxel's
    volume is ``|det|`` of the grid's index -> mm map (exact on sheared grids)."""
    lab = np.asarray(labels)
    if lab.dtype == bool:
        lab = label(lab)
    voxel = float(abs(np.linalg.det(metric(spacing, lab.ndim))))
    sizes = component_sizes(lab) * voxel
    small = np.nonzero(sizes < min_volume_mm3)[0]
    return _drop(lab, small[small > 0])


def keep_largest(labels, n: int = 1) -> np.ndarray:
    """Keep the ``n`` largest components."""
    lab = np.asarray(labels)
    if lab.dtype == bool:
        lab = label(lab)
    sizes = component_sizes(lab)
    sizes[0] = 0
    keep = np.argsort(sizes)[::-1][:n]
    keep = keep[sizes[keep] > 0]
    drop = np.setdiff1d(np.nonzero(sizes)[0], keep)
    return _drop(lab, drop)


def relabel(labels, *, copy: bool = True, objects: list | None = None) -> np.ndarray:
    """Labels renumbered 1..N keeping their order, int32.

    Labels that are already 1..N come back as they are (copied unless ``copy=False``);
    ``copy=False`` also renumbers an int32 array in place. No full-size temporary is made
    beyond the result (presence comes from ``scipy.ndimage.find_objects``, or from
    ``objects``, an up-to-date list of it, without a pass over the array).
    """
    from scipy import ndimage

    lab = np.asarray(labels)
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
        return lut[lab]
    np.take(lut, lab, out=lab, mode="clip")  # element-wise: safe in place
    return lab


def segment_steps(image, spacing=None, *, lower=None, upper=None, method: str = "manual",
                  preset: str | None = None, fill: bool = True, open_mm: float = 0.0,
                  close_mm: float = 0.0, border: bool = True, min_volume_mm3: float = 0.0,
                  largest: int = 0, connectivity: int = 1, slice_axis: int = 0) -> list:
    """The chain of :func:`segment` as a list of one-argument callables (previous result ->
    next), so a GUI can report progress and stop between stages. The last one returns the
    final int32 labels numbered 1..N.

    Hole filling and border clearing work slice by slice along ``slice_axis`` (default 0,
    the acquired slices of a volume; 1 or 2 for the other planes of a display view)."""
    arr = np.asarray(image)
    sp = metric(spacing, arr.ndim)
    steps = [lambda _: threshold(arr, lower, upper, method=method, preset=preset)]
    if close_mm > 0:
        steps.append(lambda m: closing(m, close_mm, sp))
    if open_mm > 0:
        steps.append(lambda m: opening(m, open_mm, sp))
    if fill:
        steps.append(lambda m: fill_holes(m, per_slice=arr.ndim == 3, axis=slice_axis))
    ctx: dict = {}

    def labelled(m):
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
    def stale(fn):  # these drop components without updating the boxes
        def step(lab):
            ctx.pop("objects", None)
            return fn(lab)
        return step

    if min_volume_mm3 > 0:
        steps.append(stale(lambda lab: remove_small(lab, min_volume_mm3, sp)))
    if largest > 0:
        steps.append(stale(lambda lab: keep_largest(lab, largest)))
    steps.append(lambda lab: relabel(lab, copy=False, objects=ctx.pop("objects", None)))
    return steps


def segment(image, spacing=None, *, progress=None, **options) -> np.ndarray:
    """The full chain: threshold, (close, open, fill holes), label, clear border, remove
    small, keep largest; returns int32 labels numbered 1..N.

    Options are those of :func:`segment_steps` (``lower``, ``upper``, ``method``,
    ``preset``, ``fill``, ``open_mm``, ``close_mm``, ``border``, ``min_volume_mm3``,
    ``largest``, ``connectivity``, ``slice_axis``). ``progress(step, total)`` is called after each stage.
    """
    steps = segment_steps(image, spacing, **options)
    state = None
    for i, step in enumerate(steps):
        state = step(state)
        if progress is not None:
            progress(i + 1, len(steps))
    return state
