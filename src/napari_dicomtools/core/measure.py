"""Measurements per label in physical units: volume (mm^3, mL), area (mm^2), bounding box in
mm, centroid in patient coordinates (LPS mm), intensity statistics (HU for CT)."""

from __future__ import annotations

import csv
import os
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["measure", "write_measurements_csv"]


def measure(labels: ArrayLike, image: ArrayLike | None = None, spacing: ArrayLike | None = None,
            origin: ArrayLike | None = None, direction: ArrayLike | None = None, *,
            objects: list[tuple[slice, ...] | None] | None = None,
            affine: ArrayLike | None = None) -> list[dict[str, Any]]:
    """One row per label.

    Parameters
    ----------
    labels : ndarray of int
        ``(slice, row, column)`` or 2D; 0 is background.
    image : ndarray, optional
        Intensities on the same grid (HU for CT) for mean/min/max/std.
    spacing : sequence of float
        Voxel size per array axis (mm). Default 1.
    origin : sequence of float
        Without ``direction``: the world position of voxel 0's centre on napari's grid, whose
        axes are (z, y, x) of LPS (a layer's ``translate``). With ``direction``: voxel 0's LPS
        position, ``direction`` holding the LPS unit vector of each array axis in its columns
        (a :class:`Volume`'s ``origin`` and ``direction``).

    Returns
    -------
    list of dict
        ``label``, ``voxels``, ``volume_mm3`` and ``volume_ml`` (3D) or ``area_mm2`` (2D),
        ``bbox_min_mm``/``bbox_max_mm`` (outer voxel faces along each array axis, in the
        grid's mm: world for napari layers), ``centroid_lps_mm`` (3D) or ``centroid_mm`` (2D),
        and ``mean``, ``min``, ``max``, ``std`` when ``image`` is given.

    ``objects`` (``scipy.ndimage.find_objects`` of ``labels``, e.g. kept up to date by
    :func:`~napari_dicomtools.core.segment.clear_border`) saves a pass over the image.
    """
    from scipy import ndimage

    from .grid import box_bounds

    lab = np.asarray(labels)
    nd = lab.ndim
    sp = np.ones(nd) if spacing is None else np.asarray(spacing, float)[-nd:]
    org = np.zeros(nd) if origin is None else np.asarray(origin, float)[-nd:]
    if image is not None and np.shape(image) != lab.shape:
        raise ValueError(f"image shape {np.shape(image)} differs from labels {lab.shape}")
    if lab.dtype.kind not in "iu":
        lab = lab.astype(np.int32)
    if lab.size == 0 or lab.max() <= 0:
        return []
    slices = objects if objects is not None else ndimage.find_objects(lab)  # no sorting
    ids = [i + 1 for i, sl in enumerate(slices) if sl is not None]
    img = None if image is None else np.asarray(image)
    per: dict[int, dict[str, Any]] = {}
    for i in ids:
        sl = slices[int(i) - 1]
        assert sl is not None  # ids holds only labels present
        mask = lab[sl] == i
        n = int(mask.sum())
        # centroid from the mask's projections on each axis: no index arrays
        c = []
        for ax in range(nd):
            other = tuple(k for k in range(nd) if k != ax)
            prof = mask.sum(axis=other)
            c.append(float((prof * (np.arange(len(prof)) + sl[ax].start)).sum() / n))
        entry: dict[str, Any] = {"n": n, "c": np.asarray(c), "sl": sl}
        if img is not None:
            vals = img[sl][mask].astype(np.float64)
            entry.update(mean=vals.mean(), min=vals.min(), max=vals.max(), std=vals.std())
        per[int(i)] = entry
    voxel = float(np.prod(sp))
    aff = None
    if affine is not None:
        if nd != 3:
            raise ValueError(f"affine needs 3D labels, got {nd}D")
        aff = np.asarray(affine, float)
        voxel = float(abs(np.linalg.det(aff[:3, :3])))
    rows: list[dict[str, Any]] = []
    for i in ids:
        e = per[int(i)]
        sl = e["sl"]
        lo = np.array([x.start for x in sl], float)
        hi = np.array([x.stop for x in sl], float)
        c = e["c"]
        count = e["n"]
        row: dict[str, Any] = {"label": int(i), "voxels": count}
        if nd == 3:
            row["volume_mm3"] = float(count * voxel)
            row["volume_ml"] = float(count * voxel / 1000.0)
        else:
            row["area_mm2"] = float(count * voxel)
        if aff is not None:
            bmin, bmax = box_bounds(aff, lo, hi)
            row["bbox_min_lps_mm"] = tuple(float(v) for v in bmin)
            row["bbox_max_lps_mm"] = tuple(float(v) for v in bmax)
            row["centroid_lps_mm"] = tuple(float(v) for v in aff[:3, :3] @ c + aff[:3, 3])
        elif direction is None:
            row["bbox_min_mm"] = tuple(float(v) for v in org + (lo - 0.5) * sp)
            row["bbox_max_mm"] = tuple(float(v) for v in org + (hi - 0.5) * sp)
            world = org + c * sp
            if nd == 3:
                row["centroid_lps_mm"] = tuple(float(v) for v in world[::-1])
            else:
                row["centroid_mm"] = tuple(float(v) for v in world)
        else:
            row["bbox_min_mm"] = tuple(float(v) for v in (lo - 0.5) * sp)
            row["bbox_max_mm"] = tuple(float(v) for v in (hi - 0.5) * sp)
            lps = org + np.asarray(direction, float) @ (c * sp)
            row["centroid_lps_mm"] = tuple(float(v) for v in lps)
        for k in ("mean", "min", "max", "std"):
            if k in e:
                row[k] = float(e[k])
        rows.append(row)
    return rows


def write_measurements_csv(rows: list[dict[str, Any]], path: str | os.PathLike[str], *,
                           overwrite: bool = False) -> str:
    """Measurements as CSV (tuples as ``a;b;c``), refusing to overwrite."""
    from .safety import atomic_output

    cols = list(rows[0]) if rows else ["label"]
    with atomic_output(path, overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            for r in rows:
                w.writerow({k: ";".join(f"{x:.4f}" for x in v) if isinstance(v, tuple) else v
                            for k, v in r.items()})
    return os.fspath(path)
