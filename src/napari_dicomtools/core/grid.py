"""Where a displayed layer's voxels really are: the true grid behind napari's simple transform.

napari slices rotated affines poorly, so the reader shows every series through an axis-aligned
*view* of its ``(slice, row, column)`` array with a diagonal ``scale`` and ``translate`` (see
:func:`~napari_dicomtools.core.geometry.display_transform`). That picture is exact for axial,
coronal and sagittal series and an approximation for oblique or gantry-tilted ones. A
:class:`Grid` is the contract that keeps the truth: it maps an index of the *layer data* (the
last three axes, in the order napari shows them) to patient LPS millimetres through the true,
possibly rotated or sheared, affine.

Every number and every file is computed from a ``Grid``, never from the display's
scale/translate: voxel volume (``|det|`` of the true affine), centroids and bounding boxes in
LPS, pixel areas in the true plane, NIfTI affines. Derived layers (crop, resize, ...) get a
grid through :meth:`Grid.derive`, which composes the change of display grid with the truth.

A grid is stored in a layer's ``metadata["grid"]`` as plain lists (:meth:`Grid.to_metadata`),
together with the display scale/translate/shape it belongs to, so a layer the user has since
moved or rescaled is recognised and falls back to its own (then exact) display transform.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import geometry

__all__ = [
    "GRID_KEY", "Grid", "metric", "plane_spacing", "box_bounds", "resample_to_patient_axes",
]


#: metadata key of a layer's grid
GRID_KEY = "grid"

#: (slice, row, column) <-> (column, row, slice): the index order flip between our arrays and
#: NIfTI/ITK's (i, j, k)
_REVERSE = np.eye(4)[[2, 1, 0, 3]]


def _close(a, b, tol: float = 1e-6) -> bool:
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=tol, atol=tol))


@dataclass
class Grid:
    """The true geometry of the spatial part of a layer's data.

    Attributes
    ----------
    index_to_lps : numpy.ndarray, shape (4, 4)
        Homogeneous map from a data index ``(a0, a1, a2)`` of the layer's last three axes to
        LPS ``(x, y, z)`` mm.
    shape : tuple of int
        The spatial shape (last three axes) the grid describes.
    scale, translate : tuple of float
        The display transform (napari world ``(z, y, x)`` LPS mm) the layer is shown with.
    display : DisplayTransform or None
        When the layer data is the reader's view of an original ``(slice, row, column)``
        array: how to undo it (NIfTI is written on the original grid, as ``convert`` does).
    """

    index_to_lps: np.ndarray
    shape: tuple
    scale: tuple
    translate: tuple
    display: geometry.DisplayTransform | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_volume(cls, spacing, origin, direction, shape) -> Grid:
        """The grid of the reader's axis-aligned view of a ``(slice, row, column)`` array."""
        shape = tuple(int(n) for n in shape[:3])
        dt = geometry.display_transform(spacing, origin, direction, shape)
        orig_to_lps = geometry.affine_lps(spacing, origin, direction) @ _REVERSE
        view_shape = tuple(shape[k] for k in dt.axes)
        q = _original_from_view(dt, view_shape)
        return cls(orig_to_lps @ q, view_shape, tuple(dt.scale), tuple(dt.translate), dt)

    @classmethod
    def axis_aligned(cls, scale, translate, shape) -> Grid:
        """The grid of a layer that *is* what napari shows: world ``(z, y, x)`` LPS mm."""
        sc = np.asarray(scale, float)[-3:]
        tr = np.asarray(translate, float)[-3:]
        m = np.zeros((4, 4))
        m[3, 3] = 1.0
        for w in range(3):  # data axis w (world z, y, x) -> LPS component 2 - w
            m[2 - w, w] = sc[w]
            m[2 - w, 3] = tr[w]
        return cls(m, tuple(int(n) for n in shape[-3:]), tuple(sc), tuple(tr), None)

    @classmethod
    def from_metadata(cls, metadata, shape, scale, translate) -> Grid | None:
        """The stored grid if it still belongs to this data and display transform, else None."""
        g = (metadata or {}).get(GRID_KEY)
        if not g:
            return None
        shape = tuple(int(n) for n in shape[-3:])
        if tuple(g["shape"]) != shape or not _close(np.asarray(scale, float)[-3:], g["scale"]) \
                or not _close(np.asarray(translate, float)[-3:], g["translate"]):
            return None
        disp = g.get("display")
        dt = None
        if disp:
            dt = geometry.DisplayTransform(tuple(disp["axes"]), tuple(disp["flips"]),
                                           tuple(g["scale"]), tuple(g["translate"]),
                                           float(disp.get("residual_deg", 0.0)))
        return cls(np.asarray(g["index_to_lps"], float), shape, tuple(g["scale"]),
                   tuple(g["translate"]), dt)

    @classmethod
    def of_layer(cls, shape, scale, translate, metadata=None) -> Grid:
        """A layer's grid: the stored truth when it still applies, else its display grid."""
        if len(shape) < 3:
            raise ValueError(f"a grid needs 3 spatial axes, got shape {tuple(shape)}")
        g = cls.from_metadata(metadata, shape, scale, translate)
        return g if g is not None else cls.axis_aligned(scale, translate, shape)

    def to_metadata(self) -> dict:
        """Plain lists for ``layer.metadata["grid"]``."""
        out = {"index_to_lps": self.index_to_lps.tolist(),
               "shape": [int(n) for n in self.shape],
               "scale": [float(v) for v in self.scale],
               "translate": [float(v) for v in self.translate],
               "display": None,
               "residual_deg": self.residual_deg,
               "acquisition_axis": self.acquisition_axis}
        if self.display is not None:
            out["display"] = {"axes": list(self.display.axes),
                              "flips": [bool(f) for f in self.display.flips],
                              "residual_deg": float(self.display.residual_deg)}
        return out

    def derive(self, shape, scale, translate) -> Grid:
        """The grid of a new layer on a different display grid of the same world (a crop moves
        ``translate``, a resize changes ``scale`` and ``shape``): the truth is composed with
        the change of display grid, so an oblique source stays oblique."""
        shape = tuple(int(n) for n in shape[-3:])
        sc = np.asarray(scale, float)[-3:]
        tr = np.asarray(translate, float)[-3:]
        if shape == tuple(self.shape) and _close(sc, self.scale) and _close(tr, self.translate):
            return self
        old_sc = np.asarray(self.scale, float)
        old_tr = np.asarray(self.translate, float)
        m = np.eye(4)  # new data index -> old data index, through the display world
        m[:3, :3] = np.diag(sc / old_sc)
        m[:3, 3] = (tr - old_tr) / old_sc
        return Grid(self.index_to_lps @ m, shape, tuple(sc), tuple(tr), None)

    # ------------------------------------------------------------------ what it tells
    @property
    def residual_deg(self) -> float:
        """Largest angle (degrees) between a data axis and the world axis it is shown along,
        including shear (gantry tilt): 0 when the display is exact."""
        unit = self.index_to_lps[:3, :3] / np.linalg.norm(self.index_to_lps[:3, :3], axis=0)
        worst = 0.0
        for w in range(3):
            c = abs(unit[2 - w, w])
            worst = max(worst, float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))))
        return worst

    @property
    def display_error_mm(self) -> float:
        """How far (mm) a voxel corner is drawn from its true position by the display's
        axis-aligned scale/translate (0 for axial, coronal and sagittal series)."""
        shown = Grid.axis_aligned(self.scale, self.translate, self.shape)
        n = np.asarray(self.shape, float) - 1
        corners = np.array([[n[k] if b >> k & 1 else 0.0 for k in range(3)] for b in range(8)])
        return float(np.max(np.linalg.norm(self.lps(corners) - shown.lps(corners), axis=1)))

    @property
    def acquisition_axis(self) -> int:
        """The data axis that steps through the acquired slices (0 when not known)."""
        if self.display is None:
            return 0
        return int(list(self.display.axes).index(0))

    @property
    def linear(self) -> np.ndarray:
        """``(3, 3)`` mm vector of one index step along each data axis (columns): the
        metric the core's ``spacing=`` arguments accept (see :func:`metric`)."""
        return self.index_to_lps[:3, :3].copy()

    @property
    def plane_spacing_mm(self) -> np.ndarray:
        """True distance (mm) between consecutive planes of constant index along each data
        axis: the slice spacing for the slice axis of a gantry-tilted series, not the
        (longer) step between its slice origins (see :func:`plane_spacing`)."""
        return plane_spacing(self.linear)

    @property
    def voxel_volume_mm3(self) -> float:
        """``|det|`` of the true affine: the volume of one voxel (sheared or not)."""
        return float(abs(np.linalg.det(self.index_to_lps[:3, :3])))

    def pixel_area_mm2(self, normal_axis: int) -> float:
        """Area of one pixel in the plane of the two data axes other than ``normal_axis``."""
        a, b = (k for k in range(3) if k != normal_axis)
        return float(np.linalg.norm(np.cross(self.index_to_lps[:3, a],
                                             self.index_to_lps[:3, b])))

    def lps(self, index) -> np.ndarray:
        """LPS mm of data indices (``(..., 3)``, fractional allowed)."""
        idx = np.asarray(index, float)
        return idx @ self.index_to_lps[:3, :3].T + self.index_to_lps[:3, 3]

    def index(self, lps) -> np.ndarray:
        """Fractional data indices of LPS points (``(..., 3)``)."""
        inv = np.linalg.inv(self.index_to_lps)
        p = np.asarray(lps, float)
        return p @ inv[:3, :3].T + inv[:3, 3]

    def box_lps(self, lo, hi) -> tuple[np.ndarray, np.ndarray]:
        """LPS axis-aligned bounds of the voxel box ``[lo, hi)`` (outer voxel faces)."""
        return box_bounds(self.index_to_lps, lo, hi)

    def original_index(self, index) -> np.ndarray | None:
        """``(slice, row, column)`` index in the original array, when the data is a view."""
        if self.display is None:
            return None
        q = _original_from_view(self.display, self.shape)
        return np.asarray(index, float) @ q[:3, :3].T + q[:3, 3]

    # ------------------------------------------------------------------ writing
    def nifti(self, data, leading: int = 0):
        """``(array, affine_ras)`` to write as NIfTI: the original ``(slice, row, column)``
        array and its affine when the data is the reader's view (so image and labels land on
        exactly the grid ``convert`` writes), else the data as it is with the true affine."""
        if self.display is not None:
            arr = self.display.invert(data, leading=leading)
            view_from_original = np.linalg.inv(_original_from_view(self.display, self.shape))
            orig_idx_to_lps = self.index_to_lps @ view_from_original
            return arr, geometry.LPS_TO_RAS @ orig_idx_to_lps @ _REVERSE
        return data, geometry.LPS_TO_RAS @ self.index_to_lps @ _REVERSE


def metric(spacing, ndim: int) -> np.ndarray:
    """The ``(ndim, ndim)`` index-step -> mm map of a ``spacing=`` argument.

    ``spacing`` is either one voxel size per axis (mm; an axis-aligned grid) or a square
    matrix whose column ``k`` is the mm vector of one step along array axis ``k``
    (:attr:`Grid.linear`, for oblique or sheared grids); None means 1 mm voxels. Raises
    ValueError when it does not fit ``ndim`` axes or is degenerate."""
    if spacing is None:
        return np.eye(ndim)
    sp = np.asarray(spacing, float)
    if sp.ndim == 2:
        if sp.shape != (ndim, ndim) or abs(np.linalg.det(sp)) <= 1e-12:
            raise ValueError(f"spacing matrix of shape {sp.shape} does not fit a {ndim}D "
                             "image (or is degenerate)")
        return sp
    sp = np.atleast_1d(sp)[-ndim:]
    if len(sp) != ndim or np.any(sp <= 0):
        raise ValueError(f"spacing {spacing} does not fit a {ndim}D image (mm, positive)")
    return np.diag(sp)


def plane_spacing(linear, axes=None) -> np.ndarray:
    """Distance (mm) between consecutive index planes (lines, in 2D) along each of ``axes``
    (default all), within the space those axes span.

    For an orthogonal grid this is the voxel size; for a sheared one (gantry tilt) it is
    shorter than the step between voxel centres. A per-axis size in index units,
    ``ceil(mm / plane_spacing)``, covers at least ``mm`` perpendicular to every face, and a
    separable Gaussian with ``sigma_mm / plane_spacing`` has the per-axis variances of the
    true isotropic one."""
    m = np.asarray(linear, float)
    cols = list(range(m.shape[1])) if axes is None else list(axes)
    rows = np.linalg.pinv(m[:, cols])
    return 1.0 / np.linalg.norm(rows, axis=1)


def _original_from_view(display: geometry.DisplayTransform, view_shape) -> np.ndarray:
    """Homogeneous map from a view index to the original ``(slice, row, column)`` index:
    ``orig[axes[w]] = v[w]``, or ``n - 1 - v[w]`` along a flipped axis."""
    q = np.zeros((4, 4))
    q[3, 3] = 1.0
    for w, k in enumerate(display.axes):
        if display.flips[w]:
            q[k, w] = -1.0
            q[k, 3] = view_shape[w] - 1
        else:
            q[k, w] = 1.0
    return q


def box_bounds(index_to_lps, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """LPS axis-aligned bounds of the voxel box ``[lo, hi)`` (outer voxel faces) under a
    4x4 index -> LPS affine."""
    lo = np.asarray(lo, float) - 0.5
    hi = np.asarray(hi, float) - 0.5
    corners = np.array([[(lo, hi)[b >> k & 1][k] for k in range(3)] for b in range(8)])
    a = np.asarray(index_to_lps, float)
    p = corners @ a[:3, :3].T + a[:3, 3]
    return p.min(axis=0), p.max(axis=0)


def resample_to_patient_axes(data, grid: Grid, spacing=None, *, order: int = 1,
                             cval: float | None = None, leading: int = 0):
    """Resample layer data onto an exact patient-axis grid (world ``(z, y, x)`` LPS mm).

    The output covers the whole true extent of ``data`` (every voxel corner) on axes aligned
    with the patient, so napari shows it without approximation; an oblique or gantry-tilted
    series becomes a layer whose display *is* its geometry.

    Parameters
    ----------
    data : array_like
        Layer data, spatial axes last (``leading`` extra axes first, e.g. time).
    grid : Grid
        The data's true grid (:meth:`Grid.of_layer`).
    spacing : float or sequence of 3 float, optional
        Output voxel size ``(z, y, x)`` mm; default: the display scale (the acquired spacing
        along the nearest patient axes).
    order : int
        Spline order: 0 for labels, 1 (default) linear, 3 cubic.
    cval : float, optional
        Value outside the acquired volume; default the data minimum (air for CT).

    Returns
    -------
    (numpy.ndarray, Grid)
        The resampled array (same dtype) and its axis-aligned grid (``scale``/``translate``
        for the napari layer).
    """
    from scipy import ndimage

    arr = np.asarray(data)
    sp = np.broadcast_to(np.asarray(grid.scale if spacing is None else spacing, float), (3,))
    if np.any(sp <= 0):
        raise ValueError(f"spacing must be positive mm, got {tuple(sp)}")
    lo, hi = grid.box_lps(np.zeros(3), np.asarray(grid.shape, float))  # LPS (x, y, z)
    lo_zyx, hi_zyx = lo[::-1], hi[::-1]
    shape = tuple(int(n) for n in np.maximum(np.ceil((hi_zyx - lo_zyx) / sp - 1e-6), 1))
    origin = lo_zyx + sp / 2  # centre of the first output voxel
    out_grid = Grid.axis_aligned(sp, origin, shape)
    # output index -> LPS -> input data index
    m = np.linalg.inv(grid.index_to_lps) @ out_grid.index_to_lps
    fill = float(np.min(arr)) if cval is None else float(cval)
    lead_shape = arr.shape[:leading]
    out = np.empty(lead_shape + shape, arr.dtype)
    for idx in np.ndindex(*lead_shape) if leading else [()]:
        src = arr[idx]
        work = src if src.dtype.kind == "f" else src.astype(np.float32)
        res = ndimage.affine_transform(work, m[:3, :3], m[:3, 3], output_shape=shape,
                                       order=order, mode="constant", cval=fill)
        if arr.dtype.kind in "iub":
            res = np.round(res)
        out[idx] = res.astype(arr.dtype, copy=False)
    return out, out_grid
