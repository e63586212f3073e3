"""Preprocessing that keeps geometry: every function takes an array with its voxel ``spacing``
and ``origin`` (world position of voxel 0's centre, per array axis, e.g. a napari layer's
``scale`` and ``translate``) and returns the new array with its new spacing/origin, so a
derived image still overlays its source in millimetres.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt
from numpy.typing import ArrayLike

from .grid import metric, plane_spacing

#: one value per array axis (a napari layer's ``scale`` or ``translate``), mm
PerAxis = Sequence[float] | npt.NDArray[Any]
#: a float64 vector (spacing, origin)
_Vec = npt.NDArray[np.float64]

__all__ = [
    "Result", "DenoiseJob", "resize", "normalize", "crop", "margin_voxels", "bbox_of", "equalize",
    "denoise_steps", "denoise",
]


@dataclass
class Result:
    """An array and the grid that places it (per-axis spacing and origin, mm).

    Parameters
    ----------
    array : numpy.ndarray
        The data.
    spacing : tuple of float
        Voxel size per array axis, mm.
    origin : tuple of float
        World position of voxel 0's centre per array axis, mm (a layer's ``translate``).
    history : list of dict, optional
        The operations that made it, oldest first: ``{"op": name, **parameters}``.

    Examples
    --------
    >>> r = crop(np.zeros((4, 4)), (0.5, 0.5), (10.0, 20.0), start=(1, 2), stop=(3, 4))
    >>> r.array.shape, r.origin, r.history
    ((2, 2), (10.5, 21.0), [{'op': 'crop', 'start': [1, 2], 'stop': [3, 4]}])
    """

    array: npt.NDArray[Any]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    history: list[dict[str, Any]] = field(default_factory=list)

    def step(self, op: str, **params: Any) -> Result:
        """Record one operation in ``history``; returns ``self``.

        Parameters
        ----------
        op : str
            The operation's name.
        **params
            Its parameters (plain values).

        Returns
        -------
        Result
            This result.
        """
        self.history.append({"op": op, **params})
        return self


def _grid(array: ArrayLike, spacing: PerAxis | None,
          origin: PerAxis | None) -> tuple[npt.NDArray[Any], _Vec, _Vec]:
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


def resize(array: ArrayLike, spacing: PerAxis | None = None, origin: PerAxis | None = None, *,
           shape: int | Sequence[int] | None = None,
           new_spacing: float | Sequence[float] | None = None,
           order: int = 1, axes: Sequence[int] | None = None) -> Result:
    """Resample to a target ``shape`` or voxel size ``new_spacing`` (mm), keeping the field of
    view: the outer faces of the first and last voxels stay where they were.

    Parameters
    ----------
    array : array_like
        The image (integer images stay integer, rounded and clipped).
    spacing : sequence of float, optional
        Voxel size per array axis, mm (default 1).
    origin : sequence of float, optional
        World position of voxel 0's centre per array axis, mm (default 0).
    shape : sequence of int, optional
        Target shape for ``axes`` (default: all axes), e.g. ``(128, 128)`` in-plane.
    new_spacing : float or sequence, optional
        Target voxel size in mm (a float means isotropic).
    order : int
        Spline order (0 nearest for labels, 1 linear, 3 cubic).
    axes : sequence of int, optional
        The axes ``shape``/``new_spacing`` refer to (default: the last ones).

    Returns
    -------
    Result
        The resampled array, its spacing and origin.

    Raises
    ------
    ValueError
        Both or neither of ``shape`` and ``new_spacing``, a size below 1 or a spacing not
        positive.

    Examples
    --------
    Halving 4 x 4 pixels of 1 mm: the first pixel's outer face stays at -0.5 mm:

    >>> r = resize(np.arange(16.0).reshape(4, 4), (1.0, 1.0), (0.0, 0.0), new_spacing=2.0)
    >>> r.array.shape, r.spacing, r.origin
    ((2, 2), (2.0, 2.0), (0.5, 0.5))
    """
    from scipy import ndimage

    arr, sp, org = _grid(array, spacing, origin)
    nd = arr.ndim
    if (shape is None) == (new_spacing is None):
        raise ValueError("give exactly one of shape= or new_spacing=")
    target = list(arr.shape)
    if shape is not None:
        sizes = [int(s) for s in np.atleast_1d(shape)]
        axes = list(axes) if axes is not None else list(range(nd - len(sizes), nd))
        for ax, n in zip(axes, sizes, strict=True):
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
    out: npt.NDArray[Any] = ndimage.zoom(src, zoom, order=order, grid_mode=True, mode="nearest")
    if arr.dtype.kind in "iu" and order > 0:
        info = np.iinfo(arr.dtype)
        out = np.clip(np.round(out), info.min, info.max).astype(arr.dtype)
    new_sp = sp * np.array(arr.shape) / np.array(out.shape)
    # field of view kept: first voxel's outer face fixed
    new_org = org - sp / 2 + new_sp / 2
    r = Result(out, tuple(float(v) for v in new_sp), tuple(float(v) for v in new_org))
    return r.step("resize", shape=list(out.shape), spacing=[round(v, 6) for v in new_sp],
                  order=order)


def normalize(array: ArrayLike, method: str = "minmax", *,
              window: tuple[float, float] | None = None,
              percentiles: tuple[float, float] = (1.0, 99.0),
              mask: ArrayLike | None = None) -> npt.NDArray[np.float32]:
    """Intensities to float32 for models.

    Parameters
    ----------
    array : array_like
        The image (HU for CT).
    method : {"minmax", "window", "zscore", "percentile"}, optional
        ``window``: clip to ``window`` then scale to 0..1; ``minmax``: 0..1; ``zscore``: zero
        mean, unit variance; ``percentile``: clip to ``percentiles`` then 0..1.
    window : tuple of 2 float, optional
        ``(center, width)`` in image units, for ``method="window"``.
    percentiles : tuple of 2 float, optional
        Lower and upper percentile, for ``method="percentile"``.
    mask : array_like of bool, optional
        The statistics (min, max, mean, percentiles) come from the voxels inside it; the
        whole image is transformed.

    Returns
    -------
    numpy.ndarray of float32
        The normalized image.

    Raises
    ------
    ValueError
        An unknown method, ``window`` missing, or an empty mask.

    Examples
    --------
    >>> normalize(np.array([-1000, 40, 1000]), "window", window=(40, 400))
    array([0. , 0.5, 1. ], dtype=float32)
    >>> normalize(np.array([1.0, 2.0, 3.0]), "zscore").round(3)
    array([-1.225,  0.   ,  1.225], dtype=float32)
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
        z: npt.NDArray[np.float32] = (arr - mu) / (sd if sd > 0 else 1.0)
        return z
    else:
        raise ValueError(f"method must be window, minmax, zscore or percentile; got {method!r}")
    scaled: npt.NDArray[np.float32] = np.clip((arr - lo) / (hi - lo if hi > lo else 1.0),
                                              0.0, 1.0)
    return scaled


def crop(array: ArrayLike, spacing: PerAxis | None = None, origin: PerAxis | None = None, *,
         start: Sequence[int] | npt.NDArray[np.integer[Any]],
         stop: Sequence[int] | npt.NDArray[np.integer[Any]]) -> Result:
    """Crop to the index box ``[start, stop)``; the origin moves to the new first voxel.

    Parameters
    ----------
    array : array_like
        The image.
    spacing : sequence of float, optional
        Voxel size per array axis, mm (default 1).
    origin : sequence of float, optional
        World position of voxel 0's centre per array axis, mm (default 0).
    start : sequence of int
        First index kept per axis (clipped to the array).
    stop : sequence of int
        One past the last index kept per axis (clipped to the array).

    Returns
    -------
    Result
        A contiguous copy of the box, the same spacing and the box's origin.

    Raises
    ------
    ValueError
        The box is empty after clipping.

    Examples
    --------
    >>> r = crop(np.arange(10.0), (2.0,), (-5.0,), start=(3,), stop=(6,))
    >>> r.array, r.origin
    (array([3., 4., 5.]), (1.0,))
    """
    arr, sp, org = _grid(array, spacing, origin)
    lo = np.clip(np.asarray(start, int), 0, np.array(arr.shape))
    hi = np.clip(np.asarray(stop, int), 0, np.array(arr.shape))
    if np.any(hi <= lo):
        raise ValueError(f"empty crop box {lo.tolist()}..{hi.tolist()} for shape "
                         f"{arr.shape}")
    out = arr[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    r = Result(np.ascontiguousarray(out), tuple(float(v) for v in sp),
               tuple(float(v) for v in org + lo * sp))
    return r.step("crop", start=lo.tolist(), stop=hi.tolist())


def margin_voxels(margin_mm: float, spacing: ArrayLike | None,
                  ndim: int) -> npt.NDArray[np.int_]:
    """Voxels to add along each axis so a box grows by at least ``margin_mm`` perpendicular
    to each face.

    Parameters
    ----------
    margin_mm : float
        The margin, mm.
    spacing : array_like or None
        Voxel sizes per axis (mm), or the index -> mm matrix of a sheared grid (see
        ``grid.metric``); None for 1 mm voxels.
    ndim : int
        Number of array axes.

    Returns
    -------
    numpy.ndarray of int
        Voxels per axis.

    Examples
    --------
    >>> margin_voxels(5.0, (2.5, 0.7, 0.7), 3).tolist()
    [2, 8, 8]
    """
    sp = plane_spacing(metric(spacing, ndim))
    voxels: npt.NDArray[np.int_] = np.ceil(float(margin_mm) / sp - 1e-9).astype(int)
    return voxels


def bbox_of(mask: ArrayLike, margin_mm: float = 0.0, spacing: ArrayLike | None = None
            ) -> tuple[npt.NDArray[np.int_], npt.NDArray[np.int_]]:
    """Index box ``(start, stop)`` of the non-zero voxels, grown by ``margin_mm``.

    Parameters
    ----------
    mask : array_like
        A mask or labels (non-zero is inside).
    margin_mm : float, optional
        Margin in true mm, clipped at the array's edges.
    spacing : array_like, optional
        Voxel sizes per axis (mm), or the index -> mm matrix of a tilted grid.

    Returns
    -------
    start : numpy.ndarray of int
        First index of the box per axis.
    stop : numpy.ndarray of int
        One past the last index per axis (for :func:`crop`).

    Raises
    ------
    ValueError
        The mask is empty.

    Examples
    --------
    >>> m = np.zeros((10, 10), bool)
    >>> m[4:6, 5] = True
    >>> start, stop = bbox_of(m, margin_mm=2.0)
    >>> start.tolist(), stop.tolist()
    ([2, 3], [8, 8])
    """
    m = np.asarray(mask) != 0
    if not m.any():
        raise ValueError("the mask/labels are empty: nothing to crop to")
    idx = [np.nonzero(m.any(axis=tuple(k for k in range(m.ndim) if k != ax)))[0]
           for ax in range(m.ndim)]
    pad = margin_voxels(margin_mm, spacing, m.ndim)
    start = np.array([i[0] for i in idx]) - pad
    stop = np.array([i[-1] + 1 for i in idx]) + pad
    return np.maximum(start, 0), np.minimum(stop, m.shape)


def equalize(array: ArrayLike, method: str = "global", *, clip_limit: float = 0.01,
             per_slice: bool = True, axis: int = 0) -> npt.NDArray[np.float32]:
    """Histogram equalization to float32 in 0..1.

    Parameters
    ----------
    array : array_like
        2D or 3D image.
    method : {"global", "clahe"}, optional
        Equalization of the whole histogram, or contrast-limited adaptive (CLAHE).
    clip_limit : float, optional
        CLAHE's clip limit (0..1; higher gives more contrast).
    per_slice : bool, optional
        CLAHE of a 3D image slice by slice (as radiologists look at slices).
    axis : int, optional
        The array axis the slices are taken along (e.g. the acquisition plane of a sagittal
        series).

    Returns
    -------
    numpy.ndarray of float32
        Values in 0..1.

    Raises
    ------
    ValueError
        An unknown method.

    Examples
    --------
    >>> out = equalize(np.array([[0, 10], [20, 1000]]))
    >>> out.dtype, bool(out.min() >= 0 and out.max() <= 1)
    (dtype('float32'), True)
    """
    from skimage import exposure

    arr = np.asarray(array, np.float64)
    out: npt.NDArray[np.float32]
    if method == "global":
        out = exposure.equalize_hist(arr).astype(np.float32)
        return out
    if method != "clahe":
        raise ValueError(f"method must be 'global' or 'clahe', got {method!r}")
    lo, hi = float(arr.min()), float(arr.max())
    scaled = (arr - lo) / (hi - lo if hi > lo else 1.0)
    if arr.ndim == 3 and per_slice:
        out = np.stack([exposure.equalize_adapthist(s, clip_limit=clip_limit)
                        for s in np.moveaxis(scaled, axis, 0)], axis=axis).astype(np.float32)
        return out
    out = exposure.equalize_adapthist(scaled, clip_limit=clip_limit).astype(np.float32)
    return out


def denoise_steps(array: ArrayLike, spacing: ArrayLike | None = None, *,
                  method: str = "gaussian", sigma_mm: float = 1.0, size_mm: float = 1.5,
                  per_slice: bool = False, axis: int = 0,
                  chunk: int = 16) -> tuple[npt.NDArray[Any], list[Callable[[], None]]]:
    """:func:`denoise` as ``(out, steps)``, so a GUI can show progress and stop between
    blocks.

    Each step (no argument) fills the next block of ``chunk`` slices along axis 0 of ``out``,
    reading a halo of real neighbours. Running every step gives exactly :func:`denoise`'s
    result.

    Parameters
    ----------
    array : array_like
        2D or 3D image.
    spacing : array_like, optional
        Voxel sizes per axis (mm) or the index -> mm matrix of a sheared grid.
    method : {"gaussian", "median"}, optional
        The filter.
    sigma_mm : float, optional
        Gaussian sigma, mm.
    size_mm : float, optional
        Median window, mm (rounded to an odd number of voxels per axis).
    per_slice : bool, optional
        Filter in the planes across ``axis`` only.
    axis : int, optional
        The slice axis for ``per_slice``.
    chunk : int, optional
        Slices per step.

    Returns
    -------
    out : numpy.ndarray
        The result, filled by the steps (float32, or the input's dtype for integer images
        and for the median).
    steps : list of callable
        One per block of slices (one in all for a 2D image).

    Raises
    ------
    ValueError
        An unknown method.

    Examples
    --------
    >>> out, steps = denoise_steps(np.ones((5, 4, 4), np.float32), chunk=2)
    >>> len(steps)
    3
    >>> for step in steps:
    ...     step()
    >>> bool(np.allclose(out, 1.0))
    True
    """
    from scipy import ndimage

    arr = np.asarray(array)
    sizes, halo = _filter_sizes(arr.ndim, spacing, method=method, sigma_mm=sigma_mm,
                                size_mm=size_mm, per_slice=per_slice, axis=axis)
    run: Callable[[npt.NDArray[Any]], npt.NDArray[Any]]
    if method == "gaussian":
        def run(block: npt.NDArray[Any]) -> npt.NDArray[Any]:
            smooth: npt.NDArray[Any] = ndimage.gaussian_filter(block.astype(np.float32), sizes)
            return smooth
    else:
        def run(block: npt.NDArray[Any]) -> npt.NDArray[Any]:
            med: npt.NDArray[Any] = ndimage.median_filter(block, size=tuple(sizes))
            return med
    integral = arr.dtype.kind in "iu"
    out_dtype = arr.dtype if (integral or method == "median") else np.float32
    out = np.empty(arr.shape, out_dtype)
    n = arr.shape[0] if arr.ndim == 3 else 1
    chunk = max(int(chunk), 1)

    def step_for(lo: int, hi: int) -> Callable[[], None]:
        def step() -> None:
            if arr.ndim != 3:
                res = run(arr)
                out[...] = np.round(res) if integral and res.dtype.kind == "f" else res
                return
            a, b = max(lo - halo, 0), min(hi + halo, n)
            # scipy's 'reflect' border is only right at the array's own ends: pad the
            # block with real neighbours (the halo), filter, keep the middle
            res = run(arr[a:b])[lo - a:lo - a + (hi - lo)]
            out[lo:hi] = np.round(res) if integral and res.dtype.kind == "f" else res
        return step

    steps = [step_for(lo, min(lo + chunk, n)) for lo in range(0, n, chunk)]
    return out, steps


def _filter_sizes(ndim: int, spacing: ArrayLike | None, *, method: str = "gaussian",
                  sigma_mm: float = 1.0, size_mm: float = 1.5, per_slice: bool = False,
                  axis: int = 0) -> tuple[npt.NDArray[Any], int]:
    """Per-axis Gaussian sigmas or odd median window sizes (voxels) and the halo (slices of
    axis 0) a block needs. Millimetres are measured on the true grid: per axis, the distance
    between consecutive index planes within the filtered axes (the slice plane's two axes
    when ``per_slice``), so a tilted grid gets the sizes of its true geometry and an
    orthogonal one its voxel sizes."""
    m = metric(spacing, ndim)
    axes = [k for k in range(ndim) if not (per_slice and ndim == 3 and k == axis)]
    sp = np.full(ndim, np.inf)
    sp[axes] = plane_spacing(m, axes)
    sizes: npt.NDArray[Any]
    if method == "gaussian":
        sizes = sigma_mm / sp  # 0 across the slices when per_slice
        halo = int(np.ceil(4.0 * sizes[0])) + 1 if ndim == 3 and sizes[0] > 0 else 0  # truncate=4
    elif method == "median":
        sizes = np.ones(ndim, int)
        sizes[axes] = np.maximum(1, np.round(size_mm / sp[axes]).astype(int) | 1)
        halo = int(sizes[0] // 2) if ndim == 3 else 0
    else:
        raise ValueError(f"method must be 'gaussian' or 'median', got {method!r}")
    return sizes, halo


def denoise(array: ArrayLike, spacing: ArrayLike | None = None, *, method: str = "gaussian",
            sigma_mm: float = 1.0, size_mm: float = 1.5, per_slice: bool = False,
            axis: int = 0) -> npt.NDArray[Any]:
    """Gaussian (``sigma_mm``) or median (``size_mm`` window) smoothing in millimetres.

    Parameters
    ----------
    array : array_like
        2D or 3D image.
    spacing : array_like, optional
        Voxel sizes per axis (mm) or the index -> mm matrix of a sheared grid; the filter's
        size per axis is measured on the true grid.
    method : {"gaussian", "median"}, optional
        The filter.
    sigma_mm : float, optional
        Gaussian sigma, mm.
    size_mm : float, optional
        Median window, mm (rounded to an odd number of voxels per axis).
    per_slice : bool, optional
        Filter in the planes across ``axis`` only.
    axis : int, optional
        The slice axis for ``per_slice``.

    Returns
    -------
    numpy.ndarray
        The smoothed image: integer images stay integer (rounded); others become float32
        (Gaussian) or keep their dtype (median).

    Raises
    ------
    ValueError
        An unknown method.

    Examples
    --------
    A median over 3 pixels of 0.5 mm removes a one-pixel spike:

    >>> denoise(np.array([[0, 0, 90, 0, 0]], np.int16), (0.5, 0.5), method="median",
    ...         size_mm=1.5)
    array([[0, 0, 0, 0, 0]], dtype=int16)
    """
    out, steps = denoise_steps(array, spacing, method=method, sigma_mm=sigma_mm,
                               size_mm=size_mm, per_slice=per_slice, axis=axis,
                               chunk=1 << 30)
    for step in steps:
        step()
    return out


class _DenoiseSpec(TypedDict):
    """One child's block: shared-memory names, layout, rows ``lo:hi`` and the filter."""

    src: str
    dst: str
    shape: tuple[int, ...]
    dtype: str
    out_dtype: str
    lo: int
    hi: int
    halo: int
    spacing: list[list[float]]
    options: dict[str, Any]


def _denoise_child(spec: _DenoiseSpec) -> None:
    """Child process: filter rows ``lo:hi`` (axis 0) of a shared input into a shared output."""
    from multiprocessing import shared_memory

    src = shared_memory.SharedMemory(name=spec["src"])
    dst = shared_memory.SharedMemory(name=spec["dst"])
    try:
        arr = np.ndarray(spec["shape"], spec["dtype"], buffer=src.buf)
        out = np.ndarray(spec["shape"], spec["out_dtype"], buffer=dst.buf)
        lo, hi = spec["lo"], spec["hi"]
        block_out, steps = denoise_steps(arr[max(lo - spec["halo"], 0):
                                             min(hi + spec["halo"], arr.shape[0])],
                                         spec["spacing"], chunk=1 << 30, **spec["options"])
        for step in steps:
            step()
        a = max(lo - spec["halo"], 0)
        out[lo:hi] = block_out[lo - a:hi - a]
        del arr, out, block_out
    finally:
        src.close()
        dst.close()


class DenoiseJob:
    """:func:`denoise` in child processes (one block of slices each, with a halo of real
    neighbours), so it uses every core and can be cancelled at once (the children are
    terminated). ``poll(timeout)`` -> finished?, ``cancel()``, ``result()``.

    The result is identical to :func:`denoise`.

    Parameters
    ----------
    array : array_like
        A 3D image (copied into shared memory).
    spacing : array_like, optional
        Voxel sizes per axis (mm) or the index -> mm matrix of a sheared grid.
    workers : int, optional
        Child processes (default: the CPUs; at most one per slice).
    **options
        The filter, as :func:`denoise` takes it: ``method``, ``sigma_mm``, ``size_mm``,
        ``per_slice``, ``axis``.

    Raises
    ------
    ValueError
        ``array`` is not 3D, or an unknown method.

    Examples
    --------
    >>> img = np.zeros((2, 8, 8), np.int16)
    >>> img[1, 4, 4] = 100
    >>> job = DenoiseJob(img, (2.0, 1.0, 1.0), workers=1, method="median", size_mm=3.0)
    >>> int(job.result().max()), job.total
    (0, 1)
    """

    _src: shared_memory.SharedMemory | None
    _dst: shared_memory.SharedMemory | None

    def __init__(self, array: ArrayLike, spacing: ArrayLike | None = None, *,
                 workers: int | None = None, **options: Any) -> None:
        import os

        from ._parallel import mp_context

        arr = np.ascontiguousarray(array)
        if arr.ndim != 3:
            raise ValueError("DenoiseJob needs a 3D image")
        probe, _ = denoise_steps(arr[:1], spacing, **options)
        out_dtype = probe.dtype
        sp = metric(spacing, 3)
        _, halo = _filter_sizes(3, sp, **options)
        self._src = shared_memory.SharedMemory(create=True, size=max(arr.nbytes, 1))
        self._dst = shared_memory.SharedMemory(
            create=True, size=max(int(np.prod(arr.shape)) * np.dtype(out_dtype).itemsize, 1))
        np.ndarray(arr.shape, arr.dtype, buffer=self._src.buf)[...] = arr
        self.shape, self.out_dtype = arr.shape, np.dtype(out_dtype)
        n = arr.shape[0]
        k = max(1, min(workers or os.cpu_count() or 1, n))
        bounds = np.linspace(0, n, k + 1).astype(int)
        ctx: Any = mp_context()
        self._procs: list[Any] = []  # multiprocessing.Process of the context
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            spec: _DenoiseSpec = {"src": self._src.name, "dst": self._dst.name, "shape": arr.shape,
                    "dtype": arr.dtype.str, "out_dtype": self.out_dtype.str, "lo": int(lo),
                    "hi": int(hi), "halo": halo, "spacing": sp.tolist(), "options": options}
            p = ctx.Process(target=_denoise_child, args=(spec,), daemon=True)
            p.start()
            self._procs.append(p)
        self.total = len(self._procs)
        self.cancelled = False

    def done(self) -> int:
        """How many blocks are finished."""
        return sum(1 for p in self._procs if not p.is_alive())

    def poll(self, timeout: float = 0.1) -> bool:
        """Wait up to ``timeout`` s; True when every block is finished."""
        import time

        end = time.monotonic() + timeout
        for p in self._procs:
            p.join(max(end - time.monotonic(), 0))
        return all(not p.is_alive() for p in self._procs)

    def cancel(self) -> None:
        """Stop now: terminate the children, free the shared memory."""
        self.cancelled = True
        for p in self._procs:
            if p.is_alive():
                p.terminate()
        for p in self._procs:
            p.join(1.0)
        self._free()

    def result(self) -> npt.NDArray[Any]:
        """The filtered image (waits for the children)."""
        while not self.poll(0.5):
            pass
        if self.cancelled:
            raise RuntimeError("denoising was cancelled")
        failed = [p.exitcode for p in self._procs if p.exitcode != 0]
        if failed:
            self._free()
            raise RuntimeError(f"denoising failed in a child process (exit codes {failed})")
        if self._dst is None:
            raise RuntimeError("the result was already taken (the shared memory is freed)")
        out: npt.NDArray[Any] = np.ndarray(self.shape, self.out_dtype,
                                           buffer=self._dst.buf).copy()
        self._free()
        return out

    def _free(self) -> None:
        for shm in (getattr(self, "_src", None), getattr(self, "_dst", None)):
            if shm is not None:
                try:
                    shm.close()
                    shm.unlink()
                except (FileNotFoundError, BufferError):
                    pass
        self._src = self._dst = None

    def __del__(self) -> None:
        if getattr(self, "_procs", None) and any(p.is_alive() for p in self._procs):
            self.cancel()
        self._free()
