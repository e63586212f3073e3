"""Preprocessing that keeps geometry: every function takes an array with its voxel ``spacing``
and ``origin`` (world position of voxel 0's centre, per array axis, e.g. a napari layer's
``scale`` and ``translate``) and returns the new array with its new spacing/origin, so a
derived image still overlays its source in millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Result:
    """An array and the grid that places it (per-axis spacing and origin, mm)."""

    array: np.ndarray
    spacing: tuple
    origin: tuple
    history: list = field(default_factory=list)

    def step(self, op: str, **params) -> Result:
        self.history.append({"op": op, **params})
        return self


def _grid(array, spacing, origin):
    arr = np.asarray(array)
    nd = arr.ndim
    sp = tuple(float(v) for v in (np.ones(nd) if spacing is None else spacing))
    org = tuple(float(v) for v in (np.zeros(nd) if origin is None else origin))
    if len(sp) != nd or len(org) != nd:
        raise ValueError(f"spacing {sp} / origin {org} must have one value per axis of a "
                         f"{nd}D array")
    if any(v <= 0 for v in sp):
        raise ValueError(f"spacing must be positive mm, got {sp}")
    return arr, np.asarray(sp), np.asarray(org)


def resize(array, spacing=None, origin=None, *, shape=None, new_spacing=None,
           order: int = 1, axes=None) -> Result:
    """Resample to a target ``shape`` or voxel size ``new_spacing`` (mm), keeping the field of
    view: the outer faces of the first and last voxels stay where they were.

    Parameters
    ----------
    shape : sequence of int, optional
        Target shape for ``axes`` (default: all axes), e.g. ``(128, 128)`` in-plane.
    new_spacing : float or sequence, optional
        Target voxel size in mm (a float means isotropic).
    order : int
        Spline order (0 nearest for labels, 1 linear, 3 cubic).
    axes : sequence of int, optional
        The axes ``shape``/``new_spacing`` refer to (default: the last ones).
    """
    from scipy import ndimage

    arr, sp, org = _grid(array, spacing, origin)
    nd = arr.ndim
    if (shape is None) == (new_spacing is None):
        raise ValueError("give exactly one of shape= or new_spacing=")
    target = list(arr.shape)
    if shape is not None:
        shape = [int(s) for s in np.atleast_1d(shape)]
        axes = list(axes) if axes is not None else list(range(nd - len(shape), nd))
        for ax, n in zip(axes, shape, strict=True):
            if n < 1:
                raise ValueError(f"target size must be >= 1, got {n}")
            target[ax] = n
    else:
        ns = np.atleast_1d(np.asarray(new_spacing, float))
        axes = list(axes) if axes is not None else list(range(nd - len(ns), nd)) \
            if len(ns) > 1 else list(range(nd))
        ns = np.broadcast_to(ns, (len(axes),))
        if np.any(ns <= 0):
            raise ValueError(f"new_spacing must be positive mm, got {new_spacing}")
        for ax, s in zip(axes, ns, strict=True):
            target[ax] = max(1, int(round(arr.shape[ax] * sp[ax] / s)))
    zoom = np.array(target) / np.array(arr.shape)
    src = arr.astype(np.float32) if order > 0 and arr.dtype.kind in "iub" else arr
    out = ndimage.zoom(src, zoom, order=order, grid_mode=True, mode="nearest")
    if arr.dtype.kind in "iu" and order > 0:
        info = np.iinfo(arr.dtype)
        out = np.clip(np.round(out), info.min, info.max).astype(arr.dtype)
    new_sp = sp * np.array(arr.shape) / np.array(out.shape)
    # field of view kept: first voxel's outer face fixed
    new_org = org - sp / 2 + new_sp / 2
    r = Result(out, tuple(new_sp), tuple(new_org))
    return r.step("resize", shape=list(out.shape), spacing=[round(v, 6) for v in new_sp],
                  order=order)


def normalize(array, method: str = "minmax", *, window=None, percentiles=(1.0, 99.0),
              mask=None) -> np.ndarray:
    """Intensities to float32 for models.

    ``window``: clip to ``(center, width)`` then scale to 0..1; ``minmax``: 0..1;
    ``zscore``: zero mean, unit variance (inside ``mask`` when given); ``percentile``: clip
    to the percentiles then 0..1.
    """
    arr = np.asarray(array, np.float32)
    sel = arr if mask is None else arr[np.asarray(mask, bool)]
    if sel.size == 0:
        raise ValueError("normalization mask is empty")
    if method == "window":
        if window is None:
            raise ValueError("method='window' needs window=(center, width)")
        c, w = (float(v) for v in window)
        lo, hi = c - w / 2, c + w / 2
    elif method == "minmax":
        lo, hi = float(sel.min()), float(sel.max())
    elif method == "percentile":
        lo, hi = (float(v) for v in np.percentile(sel, percentiles))
    elif method == "zscore":
        mu, sd = float(sel.mean()), float(sel.std())
        return (arr - mu) / (sd if sd > 0 else 1.0)
    else:
        raise ValueError(f"method must be window, minmax, zscore or percentile; got {method!r}")
    return np.clip((arr - lo) / (hi - lo if hi > lo else 1.0), 0.0, 1.0)


def crop(array, spacing=None, origin=None, *, start, stop) -> Result:
    """Crop to index box ``[start, stop)``; the origin moves to the new first voxel."""
    arr, sp, org = _grid(array, spacing, origin)
    start = np.clip(np.asarray(start, int), 0, np.array(arr.shape))
    stop = np.clip(np.asarray(stop, int), 0, np.array(arr.shape))
    if np.any(stop <= start):
        raise ValueError(f"empty crop box {start.tolist()}..{stop.tolist()} for shape "
                         f"{arr.shape}")
    out = arr[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))]
    r = Result(np.ascontiguousarray(out), tuple(sp), tuple(org + start * sp))
    return r.step("crop", start=start.tolist(), stop=stop.tolist())


def bbox_of(mask, margin_mm: float = 0.0, spacing=None):
    """Index box ``(start, stop)`` of the non-zero voxels, grown by ``margin_mm``."""
    m = np.asarray(mask) != 0
    if not m.any():
        raise ValueError("the mask/labels are empty: nothing to crop to")
    sp = np.ones(m.ndim) if spacing is None else np.asarray(spacing, float)
    idx = [np.nonzero(m.any(axis=tuple(k for k in range(m.ndim) if k != ax)))[0]
           for ax in range(m.ndim)]
    pad = np.ceil(margin_mm / sp).astype(int)
    start = np.array([i[0] for i in idx]) - pad
    stop = np.array([i[-1] + 1 for i in idx]) + pad
    return np.maximum(start, 0), np.minimum(stop, m.shape)


def equalize(array, method: str = "global", *, clip_limit: float = 0.01,
             per_slice: bool = True, axis: int = 0) -> np.ndarray:
    """Histogram equalization to float32 in 0..1: ``global`` or ``clahe`` (per slice for 3D
    by default, as radiologists look at slices; ``axis`` is the array axis the slices are
    taken along, e.g. the acquisition plane of a sagittal series)."""
    from skimage import exposure

    arr = np.asarray(array, np.float64)
    if method == "global":
        return exposure.equalize_hist(arr).astype(np.float32)
    if method != "clahe":
        raise ValueError(f"method must be 'global' or 'clahe', got {method!r}")
    lo, hi = float(arr.min()), float(arr.max())
    scaled = (arr - lo) / (hi - lo if hi > lo else 1.0)
    if arr.ndim == 3 and per_slice:
        return np.stack([exposure.equalize_adapthist(s, clip_limit=clip_limit)
                         for s in np.moveaxis(scaled, axis, 0)], axis=axis).astype(np.float32)
    return exposure.equalize_adapthist(scaled, clip_limit=clip_limit).astype(np.float32)


def denoise(array, spacing=None, *, method: str = "gaussian", sigma_mm: float = 1.0,
            size_mm: float = 1.5, per_slice: bool = False, axis: int = 0) -> np.ndarray:
    """Gaussian (``sigma_mm``) or median (``size_mm`` window) smoothing in millimetres
    (``per_slice``: in the planes across ``axis`` only)."""
    from scipy import ndimage

    arr = np.asarray(array)
    sp = np.ones(arr.ndim) if spacing is None else np.asarray(spacing, float)
    if per_slice and arr.ndim == 3:
        sp = sp.copy()
    if method == "gaussian":
        sig = sigma_mm / sp
        if per_slice and arr.ndim == 3:
            sig[axis] = 0
        out = ndimage.gaussian_filter(arr.astype(np.float32), sig)
    elif method == "median":
        size = np.maximum(1, np.round(size_mm / sp).astype(int) | 1)
        if per_slice and arr.ndim == 3:
            size[axis] = 1
        out = ndimage.median_filter(arr, size=tuple(size))
    else:
        raise ValueError(f"method must be 'gaussian' or 'median', got {method!r}")
    if arr.dtype.kind in "iu" and out.dtype.kind == "f":
        out = np.round(out).astype(arr.dtype)
    return out
