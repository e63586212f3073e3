"""Preprocessing that keeps geometry: every function takes an array with its voxel ``spacing``
and ``origin`` (world position of voxel 0's centre, per array axis, e.g. a napari layer's
``scale`` and ``translate``) and returns the new array with its new spacing/origin, so a
derived image still overlays its source in millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .grid import metric, plane_spacing

__all__ = [
    "Result", "DenoiseJob", "resize", "normalize", "crop", "margin_voxels", "bbox_of", "equalize",
    "denoise_steps", "denoise",
]


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


def margin_voxels(margin_mm: float, spacing, ndim: int) -> np.ndarray:
    """Voxels to add along each axis so a box grows by at least ``margin_mm`` perpendicular
    to each face (``spacing``: per-axis sizes or the index -> mm matrix of a sheared grid,
    see :func:`~napari_dicomtools.core.grid.metric`)."""
    sp = plane_spacing(metric(spacing, ndim))
    return np.ceil(float(margin_mm) / sp - 1e-9).astype(int)


def bbox_of(mask, margin_mm: float = 0.0, spacing=None):
    """Index box ``(start, stop)`` of the non-zero voxels, grown by ``margin_mm`` (true mm:
    ``spacing`` may be the index -> mm matrix of a tilted grid)."""
    m = np.asarray(mask) != 0
    if not m.any():
        raise ValueError("the mask/labels are empty: nothing to crop to")
    idx = [np.nonzero(m.any(axis=tuple(k for k in range(m.ndim) if k != ax)))[0]
           for ax in range(m.ndim)]
    pad = margin_voxels(margin_mm, spacing, m.ndim)
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


def denoise_steps(array, spacing=None, *, method: str = "gaussian", sigma_mm: float = 1.0,
                  size_mm: float = 1.5, per_slice: bool = False, axis: int = 0,
                  chunk: int = 16) -> tuple[np.ndarray, list]:
    """:func:`denoise` as ``(out, steps)``: ``out`` is the preallocated result and each step
    (no argument) fills the next block of ``chunk`` slices along axis 0, reading a halo of
    neighbours, so a GUI can show progress and stop between blocks. Running every step gives
    exactly :func:`denoise`'s result."""
    from scipy import ndimage

    arr = np.asarray(array)
    sizes, halo = _filter_sizes(arr.ndim, spacing, method=method, sigma_mm=sigma_mm,
                                size_mm=size_mm, per_slice=per_slice, axis=axis)
    if method == "gaussian":
        def run(block):
            return ndimage.gaussian_filter(block.astype(np.float32), sizes)
    else:
        def run(block):
            return ndimage.median_filter(block, size=tuple(sizes))
    integral = arr.dtype.kind in "iu"
    out_dtype = arr.dtype if (integral or method == "median") else np.float32
    out = np.empty(arr.shape, out_dtype)
    n = arr.shape[0] if arr.ndim == 3 else 1
    chunk = max(int(chunk), 1)

    def step_for(lo, hi):
        def step():
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


def _filter_sizes(ndim, spacing, *, method="gaussian", sigma_mm=1.0, size_mm=1.5,
                  per_slice=False, axis=0) -> tuple[np.ndarray, int]:
    """Per-axis Gaussian sigmas or odd median window sizes (voxels) and the halo (slices of
    axis 0) a block needs. Millimetres are measured on the true grid: per axis, the distance
    between consecutive index planes within the filtered axes (the slice plane's two axes
    when ``per_slice``), so a tilted grid gets the sizes of its true geometry and an
    orthogonal one its voxel sizes."""
    m = metric(spacing, ndim)
    axes = [k for k in range(ndim) if not (per_slice and ndim == 3 and k == axis)]
    sp = np.full(ndim, np.inf)
    sp[axes] = plane_spacing(m, axes)
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


def denoise(array, spacing=None, *, method: str = "gaussian", sigma_mm: float = 1.0,
            size_mm: float = 1.5, per_slice: bool = False, axis: int = 0) -> np.ndarray:
    """Gaussian (``sigma_mm``) or median (``size_mm`` window) smoothing in millimetres
    (``per_slice``: in the planes across ``axis`` only). Integer images stay integer."""
    out, steps = denoise_steps(array, spacing, method=method, sigma_mm=sigma_mm,
                               size_mm=size_mm, per_slice=per_slice, axis=axis,
                               chunk=1 << 30)
    for step in steps:
        step()
    return out


def _denoise_child(spec: dict) -> None:
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
    """

    def __init__(self, array, spacing=None, *, workers: int | None = None, **options):
        import os
        from multiprocessing import shared_memory

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
        ctx = mp_context()
        self._procs = []
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            spec = {"src": self._src.name, "dst": self._dst.name, "shape": arr.shape,
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

    def result(self) -> np.ndarray:
        """The filtered image (waits for the children)."""
        while not self.poll(0.5):
            pass
        if self.cancelled:
            raise RuntimeError("denoising was cancelled")
        failed = [p.exitcode for p in self._procs if p.exitcode != 0]
        if failed:
            self._free()
            raise RuntimeError(f"denoising failed in a child process (exit codes {failed})")
        out = np.ndarray(self.shape, self.out_dtype, buffer=self._dst.buf).copy()
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

    def __del__(self):
        if getattr(self, "_procs", None) and any(p.is_alive() for p in self._procs):
            self.cancel()
        self._free()
