"""Annotations (rectangles, polygons, ellipses drawn on slices) -> masks, ROI statistics, crops.

Shapes live in world millimetres and images in voxel indices (napari #5817): every function
here takes the shapes' vertices already converted to the image's *data* coordinates
(``(slice, row, column)`` for 3D, ``(row, column)`` for 2D), which the napari adapter does
through the image layer's transform. Vertices of one 3D shape must lie on one slice.
"""

from __future__ import annotations

import numpy as np


def shape_mask(vertices, shape, kind: str = "polygon") -> tuple[int | None, np.ndarray]:
    """``(slice index or None, 2D boolean mask)`` of one shape on an image of ``shape``.

    ``kind``: ``rectangle``, ``polygon`` or ``ellipse`` (napari's shape types); paths and
    lines have no inside and raise.
    """
    from skimage.draw import ellipse, polygon

    v = np.asarray(vertices, float)
    nd = len(shape)
    if nd == 3:
        z = np.round(v[:, 0]).astype(int)
        if len(set(z.tolist())) != 1:
            raise ValueError("a 3D shape must lie on one slice (draw it on a slice in 2D view)")
        k = int(z[0])
        if not 0 <= k < shape[0]:
            raise ValueError(f"shape on slice {k}, outside the image (0..{shape[0] - 1})")
        rc, plane = v[:, 1:], shape[1:]
    elif nd == 2:
        k, rc, plane = None, v[:, -2:], shape
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


def shapes_to_labels(shapes, shape) -> np.ndarray:
    """A label image: shape ``i`` (from 1) painted on its slice, later shapes on top.

    ``shapes``: iterable of ``(vertices_in_data_coordinates, kind)``.
    """
    out = np.zeros(shape, np.int32)
    for i, (verts, kind) in enumerate(shapes, start=1):
        k, m = shape_mask(verts, shape, kind)
        if k is None:
            out[m] = i
        else:
            out[k][m] = i
    return out


def roi_stats(image, shapes, spacing) -> list[dict]:
    """Per shape: slice, pixels, area in mm^2, mean/min/max/std of the image inside (HU)."""
    img = np.asarray(image)
    sp = np.asarray(spacing, float)[-2:]
    rows = []
    for i, (verts, kind) in enumerate(shapes, start=1):
        k, m = shape_mask(verts, img.shape, kind)
        plane = img if k is None else img[k]
        vals = np.asarray(plane)[m].astype(np.float64)
        row = {"shape": i, "type": kind, "slice": k, "pixels": int(m.sum()),
               "area_mm2": float(m.sum() * sp[0] * sp[1])}
        if vals.size:
            row.update(mean=float(vals.mean()), min=float(vals.min()), max=float(vals.max()),
                       std=float(vals.std()))
        rows.append(row)
    return rows
