"""Annotations (rectangles, polygons, ellipses drawn on slices) -> masks, ROI statistics, crops.

Shapes live in world millimetres and images in voxel indices (napari #5817): every function
here takes the shapes' vertices already converted to the image's *data* coordinates
(``(slice, row, column)`` for 3D, ``(row, column)`` for 2D), which the napari adapter does
through the image layer's transform. Vertices of one 3D shape must lie in one plane of the
array: a slice of any of its three axes (a shape drawn on a sagittal or coronal view lies on
a slice of axis 2 or 1), the plane found from the vertices or given as ``axis``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["plane_of", "roi_stats", "shape_mask", "shapes_to_labels"]

#: one shape: its vertices in the image's data coordinates and napari's shape type
Shape = tuple[ArrayLike, str]


def plane_of(vertices: ArrayLike, axis: int | None = None) -> int:
    """The array axis a 3D shape's vertices are constant along (its slice axis).

    ``axis`` is preferred when the vertices are constant along it (a rectangle drawn in the
    plane the viewer shows); otherwise the one axis they are constant along.

    Parameters
    ----------
    vertices : array_like, shape (n, 3)
        The shape's vertices in the image's data coordinates (rounded to whole voxels).
    axis : int, optional
        The preferred slice axis (the one the viewer was slicing when the shape was drawn).

    Returns
    -------
    int
        The array axis the shape lies on a slice of.

    Raises
    ------
    ValueError
        The vertices do not lie on one slice of any axis.

    Examples
    --------
    >>> plane_of([[4, 0, 0], [4, 10, 0], [4, 10, 8]])  # drawn on slice 4 of axis 0
    0
    >>> plane_of([[0, 3, 0], [9, 3, 0], [9, 3, 5]])  # on a coronal view: axis 1
    1
    """
    v = np.round(np.asarray(vertices, float)).astype(int)
    flat = [k for k in range(v.shape[1]) if len(set(v[:, k].tolist())) == 1]
    if axis is not None and axis in flat:
        return axis
    if flat:
        return flat[0]
    raise ValueError("a 3D shape must lie in one plane (draw it on a slice in 2D view)")


def shape_mask(vertices: ArrayLike, shape: Sequence[int], kind: str = "polygon", *,
               axis: int | None = None) -> tuple[int | None, NDArray[np.bool_]]:
    """``(slice index or None, 2D boolean mask)`` of one shape on an image of ``shape``.

    For 3D, the mask is in the plane of the two axes other than the shape's slice axis
    (:func:`plane_of`; ``axis`` prefers one), in their order.

    Parameters
    ----------
    vertices : array_like, shape (n, 2) or (n, 3)
        The shape's vertices in the image's data coordinates.
    shape : sequence of int
        Shape of the 2D or 3D image.
    kind : str, optional
        ``"rectangle"``, ``"polygon"`` or ``"ellipse"`` (napari's shape types); paths and
        lines have no inside and raise.
    axis : int, optional
        The preferred slice axis of a 3D image.

    Returns
    -------
    slice : int or None
        The slice index along the shape's axis (None for a 2D image).
    mask : numpy.ndarray of bool
        The inside of the shape on that slice.

    Raises
    ------
    ValueError
        The kind has no inside, the shape lies outside the image or on no one slice, or the
        image is neither 2D nor 3D.

    Examples
    --------
    >>> k, m = shape_mask([[2, 1, 1], [2, 1, 3], [2, 3, 3], [2, 3, 1]], (4, 5, 5), "rectangle")
    >>> k, m.shape, int(m.sum())
    (2, (5, 5), 9)
    """
    from skimage.draw import ellipse, polygon

    v = np.asarray(vertices, float)
    nd = len(shape)
    if nd == 3:
        ax = plane_of(v, axis)
        k = int(np.round(v[0, ax]))
        if not 0 <= k < shape[ax]:
            raise ValueError(f"shape on slice {k} of axis {ax}, outside the image "
                             f"(0..{shape[ax] - 1})")
        keep = [a for a in range(3) if a != ax]
        rc, plane = v[:, keep], tuple(shape[a] for a in keep)
    elif nd == 2:
        k, rc, plane = None, v[:, -2:], tuple(shape)
    else:
        raise ValueError(f"annotations need a 2D or 3D image, got {nd}D")
    mask = np.zeros(plane, bool)
    if kind in ("rectangle", "polygon"):
        rr, cc = polygon(rc[:, 0], rc[:, 1], shape=plane)
    elif kind == "ellipse":
        center = rc.mean(axis=0)
        radii = (rc.max(axis=0) - rc.min(axis=0)) / 2
        rr, cc = ellipse(center[0], center[1], max(radii[0], 0.5), max(radii[1], 0.5),
                         shape=plane)
    else:
        raise ValueError(f"a {kind} has no inside; use rectangles, polygons or ellipses")
    mask[rr, cc] = True
    return k, mask


def shapes_to_labels(shapes: Iterable[Shape], shape: Sequence[int], *,
                     axis: int | None = None) -> NDArray[np.int32]:
    """A label image: shape ``i`` (from 1) painted on its slice, later shapes on top.

    Parameters
    ----------
    shapes : iterable of (array_like, str)
        ``(vertices in data coordinates, kind)`` per shape (see :func:`shape_mask`).
    shape : sequence of int
        Shape of the 2D or 3D image to paint.
    axis : int, optional
        The preferred slice axis (the plane shown when they were drawn).

    Returns
    -------
    numpy.ndarray of int32
        Labels of ``shape``: 0 outside every shape.

    Examples
    --------
    >>> square = ([[0, 0], [0, 2], [2, 2], [2, 0]], "rectangle")
    >>> shapes_to_labels([square, ([[1, 1], [1, 3], [3, 3], [3, 1]], "rectangle")], (4, 4))
    array([[1, 1, 1, 0],
           [1, 2, 2, 2],
           [1, 2, 2, 2],
           [0, 2, 2, 2]], dtype=int32)
    """
    out = np.zeros(shape, np.int32)
    for i, (verts, kind) in enumerate(shapes, start=1):
        k, m = shape_mask(verts, shape, kind, axis=axis)
        if k is None:
            out[m] = i
        else:
            ax = plane_of(verts, axis)
            idx: list[slice | int] = [slice(None)] * 3
            idx[ax] = k
            out[tuple(idx)][m] = i
    return out


def roi_stats(image: ArrayLike, shapes: Iterable[Shape], spacing: ArrayLike | None = None, *,
              affine: ArrayLike | None = None, axis: int | None = None
              ) -> list[dict[str, Any]]:
    """Per shape: plane axis and slice, pixels, area in mm^2, mean/min/max/std inside (HU).

    Parameters
    ----------
    image : array_like
        The 2D or 3D image (HU for CT).
    shapes : iterable of (array_like, str)
        ``(vertices in data coordinates, kind)`` per shape (see :func:`shape_mask`).
    spacing : sequence of float, optional
        Voxel size per array axis of an axis-aligned grid (mm); default 1.
    affine : array_like, shape (4, 4), optional
        The true data index -> patient mm affine of a 3D image (e.g.
        ``Grid.index_to_lps``), so areas are measured in the true (oblique, sheared) plane.
    axis : int, optional
        The preferred slice axis of a 3D image.

    Returns
    -------
    list of dict
        Per shape: ``shape`` (its number from 1), ``type``, ``axis`` and ``slice`` (None in
        2D), ``pixels``, ``area_mm2``, and ``mean``, ``min``, ``max``, ``std`` of the
        values inside (absent for an empty shape).

    Examples
    --------
    >>> img = np.arange(16.0).reshape(4, 4)
    >>> (row,) = roi_stats(img, [([[0, 0], [0, 1], [1, 1], [1, 0]], "rectangle")],
    ...                    spacing=(0.5, 0.5))
    >>> row["pixels"], row["area_mm2"], row["mean"], row["max"]
    (4, 1.0, 2.5, 5.0)
    """
    img = np.asarray(image)
    sp = np.ones(img.ndim) if spacing is None else np.asarray(spacing, float)[-img.ndim:]
    rows: list[dict[str, Any]] = []
    for i, (verts, kind) in enumerate(shapes, start=1):
        k, m = shape_mask(verts, img.shape, kind, axis=axis)
        ax = None if k is None else plane_of(verts, axis)
        plane = img if k is None else np.take(img, k, axis=ax)
        vals = np.asarray(plane)[m].astype(np.float64)
        keep = [a for a in range(img.ndim) if a != ax]
        if affine is not None and img.ndim == 3:
            a = np.asarray(affine, float)[:3, :3]
            pix = float(np.linalg.norm(np.cross(a[:, keep[0]], a[:, keep[1]])))
        else:
            pix = float(sp[keep[-2]] * sp[keep[-1]])
        row: dict[str, Any] = {"shape": i, "type": kind, "axis": ax, "slice": k, "pixels": int(m.sum()),
               "area_mm2": float(m.sum() * pix)}
        if vals.size:
            row.update(mean=float(vals.mean()), min=float(vals.min()), max=float(vals.max()),
                       std=float(vals.std()))
        rows.append(row)
    return rows
