"""Measurements per label in physical units: volume (mm^3, mL), area (mm^2), bounding box in
mm, centroid in patient coordinates (LPS mm), intensity statistics (HU for CT)."""

from __future__ import annotations

import csv
import os
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from .grid import Grid

__all__ = ["measure", "write_measurements_csv"]


class _LabelStats(NamedTuple):
    """What one pass over a label's bounding box finds (array indices, image units)."""

    voxels: int
    centroid: npt.NDArray[np.float64]  # array index of the centre of mass
    box: tuple[slice, ...]  # find_objects' bounding box
    intensity: dict[str, float]  # mean, min, max, std when an image is given
    profiles: list[npt.NDArray[np.int64]]  # voxels per index along each axis, in the box


def measure(labels: ArrayLike, image: ArrayLike | None = None, spacing: ArrayLike | None = None,
            origin: ArrayLike | None = None, direction: ArrayLike | None = None, *,
            objects: list[tuple[slice, ...] | None] | None = None,
            affine: ArrayLike | None = None, grid: Grid | None = None) -> list[dict[str, Any]]:
    """One row of measurements per label, in millimetres and image units.

    Parameters
    ----------
    labels : array_like of int
        ``(slice, row, column)`` or 2D; 0 is background.
    image : array_like, optional
        Intensities on the same grid (HU for CT) for mean/min/max/std.
    spacing : sequence of float, optional
        Voxel size per array axis (mm). Default 1.
    origin : sequence of float, optional
        Without ``direction``: the world position of voxel 0's centre on napari's grid, whose
        axes are (z, y, x) of LPS (a layer's ``translate``). With ``direction``: voxel 0's LPS
        position, ``direction`` holding the LPS unit vector of each array axis in its columns
        (a ``Volume``'s ``origin`` and ``direction``).
    direction : array_like, shape (3, 3), optional
        LPS unit vector of each array axis in its columns (see ``origin``).
    objects : list of tuple of slice or None, optional
        ``scipy.ndimage.find_objects`` of ``labels`` (e.g. kept up to date by
        :func:`~napari_dicomtools.core.segment.clear_border`): saves a pass over the image.
    affine : array_like, shape (4, 4), optional
        The true index ``(slice, row, column)`` -> LPS mm affine of 3D labels (oblique or
        tilted data); it replaces ``spacing``, ``origin`` and ``direction``, and the voxel
        volume is the absolute determinant of its 3x3 part.
    grid : Grid, optional
        The true grid of 3D labels (a napari layer's
        :meth:`~napari_dicomtools.core.grid.Grid.of_layer`): as ``affine``, and through the
        true position of each acquired slice when a stack has missing slices or changing
        spacing (centroids and bounding boxes past a gap are where the files put them). The
        voxel volume stays one usual slice step times the pixel area: each acquired slice
        counts its own thickness and the missing slices count nothing, since nobody saw
        what lies in them (spreading a slice over the gap would make a label on one slice
        beside it several times larger).

    Returns
    -------
    list of dict
        ``label``, ``voxels``, ``volume_mm3`` and ``volume_ml`` (3D) or ``area_mm2`` (2D),
        ``bbox_min_mm``/``bbox_max_mm`` (outer voxel faces along each array axis, in the
        grid's mm: world for napari layers; ``bbox_min_lps_mm``/``bbox_max_lps_mm`` with
        ``affine`` or ``grid``), ``centroid_lps_mm`` (3D: the mean LPS position of the
        label's voxels) or ``centroid_mm`` (2D), and ``mean``, ``min``,
        ``max``, ``std`` when ``image`` is given. Empty when no label is present.

    Raises
    ------
    ValueError
        ``image`` has another shape than ``labels``, or ``affine`` or ``grid`` is given for
        2D labels.

    Examples
    --------
    A 2 x 2 x 2 cube of label 1 on 2 x 1 x 1 mm voxels, on an image of 100 HU:

    >>> lab = np.zeros((4, 4, 4), np.uint8)
    >>> lab[1:3, 1:3, 1:3] = 1
    >>> (row,) = measure(lab, np.full(lab.shape, 100.0), spacing=(2.0, 1.0, 1.0))
    >>> row["voxels"], row["volume_mm3"], row["volume_ml"], row["mean"]
    (8, 16.0, 0.016, 100.0)
    >>> row["centroid_lps_mm"]  # (x, y, z) of LPS: the axes reversed from (z, y, x)
    (1.5, 1.5, 3.0)

    On a stack whose third slice lies 5 mm further than the 2 mm step (a missing slice
    between it and the second), the label's slices 1 and 2 are 7 mm apart:

    >>> from napari_dicomtools.core.grid import Grid
    >>> positions = [(0, 0, 0), (0, 0, 2), (0, 0, 9), (0, 0, 11)]  # LPS mm
    >>> grid = Grid.for_volume((2, 1, 1), (0, 0, 0), np.eye(3)[:, ::-1], (4, 4, 4),
    ...                        positions=positions)
    >>> (row,) = measure(lab, grid=grid)
    >>> row["centroid_lps_mm"], row["bbox_min_lps_mm"][2], row["bbox_max_lps_mm"][2]
    ((1.5, 1.5, 5.5), 1.0, 10.0)
    >>> row["volume_mm3"]  # 8 voxels of 2 x 1 x 1 mm: the missing slice is not counted
    16.0
    """
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
    stats = _label_stats(lab, None if image is None else np.asarray(image), objects)
    voxel = float(np.prod(sp))
    aff = None
    if affine is not None or grid is not None:
        if nd != 3:
            raise ValueError(f"affine and grid need 3D labels, got {nd}D")
        aff = np.asarray(grid.index_to_lps if grid is not None else affine, float)
        voxel = float(abs(np.linalg.det(aff[:3, :3])))
    rows: list[dict[str, Any]] = []
    for i, e in stats.items():
        row: dict[str, Any] = {"label": i, "voxels": e.voxels}
        if nd == 3:
            row["volume_mm3"] = float(e.voxels * voxel)
            row["volume_ml"] = float(e.voxels * voxel / 1000.0)
        else:
            row["area_mm2"] = float(e.voxels * voxel)
        row.update(_on_grid(e, grid) if grid is not None else
                   _placement(e, sp, org, direction, aff))
        row.update(e.intensity)
        rows.append(row)
    return rows


def _label_stats(lab: npt.NDArray[np.integer[Any]], img: npt.NDArray[Any] | None,
                 objects: list[tuple[slice, ...] | None] | None) -> dict[int, _LabelStats]:
    """Voxel count, centroid, bounding box and intensities of each label present, in label
    order, each from the label's bounding box only."""
    from scipy import ndimage

    nd = lab.ndim
    slices = objects if objects is not None else ndimage.find_objects(lab)  # no sorting
    out: dict[int, _LabelStats] = {}
    for k, sl in enumerate(slices):
        if sl is None:
            continue
        i = k + 1
        mask = lab[sl] == i
        n = int(mask.sum())
        # centroid from the mask's projections on each axis: no index arrays
        c = []
        profiles = []
        for ax in range(nd):
            other = tuple(j for j in range(nd) if j != ax)
            prof = mask.sum(axis=other)
            c.append(float((prof * (np.arange(len(prof)) + sl[ax].start)).sum() / n))
            profiles.append(prof)
        intensity: dict[str, float] = {}
        if img is not None:
            vals = img[sl][mask].astype(np.float64)
            intensity = {"mean": float(vals.mean()), "min": float(vals.min()),
                         "max": float(vals.max()), "std": float(vals.std())}
        out[i] = _LabelStats(n, np.asarray(c), sl, intensity, profiles)
    return out


def _placement(e: _LabelStats, sp: npt.NDArray[np.float64], org: npt.NDArray[np.float64],
               direction: ArrayLike | None,
               aff: npt.NDArray[np.float64] | None) -> dict[str, tuple[float, ...]]:
    """A label's bounding box and centroid in mm: through the true affine, on napari's
    world grid (``origin`` a layer's translate), or from a volume's origin and direction."""
    from .grid import box_bounds

    lo = np.array([x.start for x in e.box], float)
    hi = np.array([x.stop for x in e.box], float)
    c = e.centroid

    def mm(v: npt.NDArray[np.float64]) -> tuple[float, ...]:
        return tuple(float(x) for x in v)

    if aff is not None:
        bmin, bmax = box_bounds(aff, lo, hi)
        return {"bbox_min_lps_mm": mm(bmin), "bbox_max_lps_mm": mm(bmax),
                "centroid_lps_mm": mm(aff[:3, :3] @ c + aff[:3, 3])}
    if direction is None:
        world = org + c * sp
        centroid = {"centroid_lps_mm": mm(world[::-1])} if len(c) == 3 else {
            "centroid_mm": mm(world)}
        return {"bbox_min_mm": mm(org + (lo - 0.5) * sp),
                "bbox_max_mm": mm(org + (hi - 0.5) * sp), **centroid}
    return {"bbox_min_mm": mm((lo - 0.5) * sp), "bbox_max_mm": mm((hi - 0.5) * sp),
            "centroid_lps_mm": mm(org + np.asarray(direction, float) @ (c * sp))}


def _on_grid(e: _LabelStats, grid: Grid) -> dict[str, tuple[float, ...]]:
    """A label's bounding box and centroid in LPS mm through a true grid (its acquired
    slices where the files put them)."""
    lo = np.array([x.start for x in e.box], float)
    hi = np.array([x.stop for x in e.box], float)
    axis = grid.slice_data_axis
    along = np.arange(len(e.profiles[axis]), dtype=float) + e.box[axis].start
    bmin, bmax = grid.box_lps(lo, hi)
    centroid = grid.mean_lps(e.centroid, axis, along, e.profiles[axis])
    return {"bbox_min_lps_mm": tuple(float(x) for x in bmin),
            "bbox_max_lps_mm": tuple(float(x) for x in bmax),
            "centroid_lps_mm": tuple(float(x) for x in centroid)}


def write_measurements_csv(rows: list[dict[str, Any]], path: str | os.PathLike[str], *,
                           overwrite: bool = False) -> str:
    """Write measurement rows as CSV (tuples as ``a;b;c``), refusing to overwrite.

    Parameters
    ----------
    rows : list of dict
        Rows of :func:`measure` (the first row's keys are the columns).
    path : str or os.PathLike
        The CSV file to write (atomically: complete or not at all).
    overwrite : bool, optional
        Replace an existing file; otherwise an existing ``path`` is an error.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    DicomToolsError
        ``path`` exists and ``overwrite`` is false, or it cannot be written.

    Examples
    --------
    >>> import os, tempfile
    >>> lab = np.zeros((3, 3), np.uint8)
    >>> lab[1, 1:] = 2
    >>> path = write_measurements_csv(measure(lab, spacing=(0.5, 0.5)),
    ...                               os.path.join(tempfile.mkdtemp(), "m.csv"))
    >>> print(open(path).read().strip())
    label,voxels,area_mm2,bbox_min_mm,bbox_max_mm,centroid_mm
    2,2,0.5,0.2500;0.2500,0.7500;1.2500,0.5000;0.7500
    """
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
