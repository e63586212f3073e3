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

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

from . import geometry
from .geometry import Floats

__all__ = [
    "GRID_KEY", "Grid", "metric", "plane_spacing", "box_bounds", "resample_to_patient_axes",
]


#: metadata key of a layer's grid
GRID_KEY = "grid"

#: slices within this distance (mm) of an even stepping count as evenly spaced
_EVEN_TOL_MM = 0.01

#: (slice, row, column) <-> (column, row, slice): the index order flip between our arrays and
#: NIfTI/ITK's (i, j, k)
_REVERSE = np.eye(4)[[2, 1, 0, 3]]


class DisplayMetadata(TypedDict):
    """How the reader's view was made from the original array (``Grid.display``)."""

    axes: list[int]
    flips: list[bool]
    residual_deg: float


class GridMetadata(TypedDict):
    """A :class:`Grid` as plain lists, as stored in ``layer.metadata["grid"]``."""

    index_to_lps: list[list[float]]
    shape: list[int]
    scale: list[float]
    translate: list[float]
    display: DisplayMetadata | None
    residual_deg: float
    acquisition_axis: int
    slice_offsets: list[list[float]] | None
    slice_of_index: list[float] | None


def _close(a: npt.ArrayLike, b: npt.ArrayLike, tol: float = 1e-6) -> bool:
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=tol, atol=tol))


@dataclass
class Grid:
    """The true geometry of the spatial part of a layer's data.

    Parameters
    ----------
    index_to_lps : numpy.ndarray, shape (4, 4)
        Homogeneous map from a data index ``(a0, a1, a2)`` of the layer's last three axes to
        LPS ``(x, y, z)`` mm.
    shape : tuple of int
        The spatial shape (last three axes) the grid describes.
    scale : tuple of float
        The display scale (napari world ``(z, y, x)``, mm per index step) the layer is shown
        with.
    translate : tuple of float
        The display translate (napari world ``(z, y, x)`` LPS mm) the layer is shown with.
    display : DisplayTransform or None
        When the layer data is the reader's view of an original ``(slice, row, column)``
        array: how to undo it (NIfTI is written on the original grid, as ``convert`` does).
    slice_offsets : numpy.ndarray, shape (n, 3), optional
        For a stack whose acquired slices are not evenly spaced (missing slices, changing
        spacing): LPS mm from where ``index_to_lps`` puts each acquired slice to where its
        file puts it (ImagePositionPatient). Between slices the offset is interpolated
        linearly, beyond the first and last slice it stays that slice's. None (the default):
        ``index_to_lps`` is the whole truth.
    slice_of_index : numpy.ndarray, shape (4,), optional
        With ``slice_offsets``: the homogeneous row that gives the acquired slice coordinate
        (fractional) of a data index, ``s = slice_of_index[:3] @ index + slice_of_index[3]``.

    See Also
    --------
    napari_dicomtools.core.geometry.display_transform : the view the reader shows.

    Examples
    --------
    An axial series of 3 slices 2.5 mm apart, 4 rows and 5 columns of 0.5 mm, seen by the
    reader in its acquisition plane:

    >>> import numpy as np
    >>> direction = [[0, 0, 1], [0, 1, 0], [1, 0, 0]]  # columns: slice, row, column (LPS)
    >>> g = Grid.for_volume((2.5, 0.5, 0.5), (-10.0, 20.0, 30.0), direction, (3, 4, 5))
    >>> g.shape, g.scale
    ((3, 4, 5), (2.5, 0.5, 0.5))
    >>> g.lps([1, 0, 2]).tolist()  # slice 1, row 0, column 2: LPS (x, y, z) mm
    [-9.0, 20.0, 32.5]
    >>> round(g.voxel_volume_mm3, 3), g.residual_deg
    (0.625, 0.0)

    The same stack with its middle slice 5 mm further than the 2.5 mm step: every position
    comes from the files, also between slices and past the gap:

    >>> positions = [(-10.0, 20.0, 30.0), (-10.0, 20.0, 32.5), (-10.0, 20.0, 40.0)]
    >>> g = Grid.for_volume((2.5, 0.5, 0.5), (-10.0, 20.0, 30.0), direction, (3, 4, 5),
    ...                     positions=positions)
    >>> g.lps([2, 0, 0]).tolist(), g.lps([1.5, 0, 0]).tolist()
    ([-10.0, 20.0, 40.0], [-10.0, 20.0, 36.25])
    >>> g.index([-10.0, 20.0, 36.25]).tolist()
    [1.5, 0.0, 0.0]
    >>> g.uneven_steps()  # (first slice of the step, its length in mm)
    [(1, 7.5)]
    """

    index_to_lps: Floats
    shape: tuple[int, ...]
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    display: geometry.DisplayTransform | None = None
    slice_offsets: Floats | None = None
    slice_of_index: Floats | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_volume(cls, spacing: npt.ArrayLike, origin: npt.ArrayLike,
                   direction: npt.ArrayLike, shape: Sequence[int], *,
                   positions: npt.ArrayLike | None = None) -> Grid:
        """The grid of the reader's axis-aligned view of a ``(slice, row, column)`` array.

        Parameters
        ----------
        spacing : sequence of 3 float
            ``(slice, row, column)`` spacing in mm.
        origin : sequence of 3 float
            LPS position (mm) of the centre of voxel (0, 0, 0).
        direction : array_like, shape (3, 3)
            Columns are the unit LPS vectors of the ``(slice, row, column)`` axes.
        shape : sequence of int
            The array shape (its first three axes are used).
        positions : array_like, shape (n_slices, 3), optional
            ImagePositionPatient (LPS mm) of each slice, in array order. Where they are not
            where ``origin`` and the slice spacing put them (missing slices, changing
            spacing), the grid keeps them (``slice_offsets``) and maps every index through
            them; otherwise they change nothing.

        Returns
        -------
        Grid
            The grid of the view :func:`~napari_dicomtools.core.geometry.display_transform`
            makes of that array.

        Raises
        ------
        ValueError
            When ``positions`` does not hold one LPS position per slice.
        """
        shape3 = tuple(int(n) for n in shape[:3])
        dt = geometry.display_transform(spacing, origin, direction, shape3)
        orig_to_lps = geometry.affine_lps(spacing, origin, direction) @ _REVERSE
        view_shape = tuple(shape3[k] for k in dt.axes)
        q = _original_from_view(dt, view_shape)
        grid = cls(orig_to_lps @ q, view_shape, tuple(dt.scale), tuple(dt.translate), dt)
        if positions is None:
            return grid
        pos = np.asarray(positions, float)
        if pos.shape != (shape3[0], 3):
            raise ValueError(f"positions of shape {pos.shape} do not give one LPS position "
                             f"to each of {shape3[0]} slices")
        nominal = orig_to_lps[:3, 3] + np.outer(np.arange(shape3[0]), orig_to_lps[:3, 0])
        offsets = pos - nominal
        if np.max(np.linalg.norm(offsets, axis=1)) > _EVEN_TOL_MM:
            grid.slice_offsets = offsets
            grid.slice_of_index = q[0].copy()
        return grid

    @classmethod
    def axis_aligned(cls, scale: npt.ArrayLike, translate: npt.ArrayLike,
                     shape: Sequence[int]) -> Grid:
        """The grid of a layer that *is* what napari shows: world ``(z, y, x)`` LPS mm.

        Parameters
        ----------
        scale, translate : sequence of float
            The layer's scale and translate (the last three values are used).
        shape : sequence of int
            The layer's data shape (the last three values are used).

        Returns
        -------
        Grid
            A grid without a display transform.
        """
        sc = np.asarray(scale, float)[-3:]
        tr = np.asarray(translate, float)[-3:]
        m = np.zeros((4, 4))
        m[3, 3] = 1.0
        for w in range(3):  # data axis w (world z, y, x) -> LPS component 2 - w
            m[2 - w, w] = sc[w]
            m[2 - w, 3] = tr[w]
        return cls(m, tuple(int(n) for n in shape[-3:]), tuple(sc), tuple(tr), None)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None, shape: Sequence[int],
                      scale: npt.ArrayLike, translate: npt.ArrayLike) -> Grid | None:
        """The stored grid if it still belongs to this data and display transform, else None.

        Parameters
        ----------
        metadata : mapping or None
            A layer's metadata; its ``"grid"`` entry is a :class:`GridMetadata`.
        shape : sequence of int
            The layer's data shape (the last three values are compared).
        scale, translate : sequence of float
            The layer's current scale and translate (compared with the stored ones).

        Returns
        -------
        Grid or None
            None when there is no stored grid or the layer was since moved, rescaled or
            reshaped.
        """
        g: GridMetadata | None = (metadata or {}).get(GRID_KEY)
        if not g:
            return None
        shape3 = tuple(int(n) for n in shape[-3:])
        if tuple(g["shape"]) != shape3 or not _close(np.asarray(scale, float)[-3:], g["scale"]) \
                or not _close(np.asarray(translate, float)[-3:], g["translate"]):
            return None
        disp = g.get("display")
        dt = None
        if disp:
            dt = geometry.DisplayTransform(tuple(disp["axes"]), tuple(disp["flips"]),
                                           tuple(g["scale"]), tuple(g["translate"]),
                                           float(disp.get("residual_deg", 0.0)))
        offsets, along = g.get("slice_offsets"), g.get("slice_of_index")
        return cls(np.asarray(g["index_to_lps"], float), shape3, tuple(g["scale"]),
                   tuple(g["translate"]), dt,
                   None if offsets is None else np.asarray(offsets, float),
                   None if along is None or offsets is None else np.asarray(along, float))

    @classmethod
    def of_layer(cls, shape: Sequence[int], scale: npt.ArrayLike, translate: npt.ArrayLike,
                 metadata: Mapping[str, Any] | None = None) -> Grid:
        """A layer's grid: the stored truth when it still applies, else its display grid.

        Parameters
        ----------
        shape : sequence of int
            The layer's data shape (at least 3 axes; spatial axes last).
        scale, translate : sequence of float
            The layer's scale and translate.
        metadata : mapping, optional
            The layer's metadata (its ``"grid"`` entry, when the reader made the layer).

        Returns
        -------
        Grid
            The stored grid (:meth:`from_metadata`), else :meth:`axis_aligned`.

        Raises
        ------
        ValueError
            When ``shape`` has fewer than 3 axes.
        """
        if len(shape) < 3:
            raise ValueError(f"a grid needs 3 spatial axes, got shape {tuple(shape)}")
        g = cls.from_metadata(metadata, shape, scale, translate)
        return g if g is not None else cls.axis_aligned(scale, translate, shape)

    def to_metadata(self) -> GridMetadata:
        """Plain lists for ``layer.metadata["grid"]``.

        Returns
        -------
        GridMetadata
            What :meth:`from_metadata` reads back.
        """
        display: DisplayMetadata | None = None
        if self.display is not None:
            display = {"axes": list(self.display.axes),
                       "flips": [bool(f) for f in self.display.flips],
                       "residual_deg": float(self.display.residual_deg)}
        return {"index_to_lps": self.index_to_lps.tolist(),
                "shape": [int(n) for n in self.shape],
                "scale": [float(v) for v in self.scale],
                "translate": [float(v) for v in self.translate],
                "display": display,
                "residual_deg": self.residual_deg,
                "acquisition_axis": self.acquisition_axis,
                "slice_offsets": None if self.slice_offsets is None
                else self.slice_offsets.tolist(),
                "slice_of_index": None if self.slice_of_index is None
                else self.slice_of_index.tolist()}

    def derive(self, shape: Sequence[int], scale: npt.ArrayLike,
               translate: npt.ArrayLike) -> Grid:
        """The grid of a new layer on a different display grid of the same world.

        A crop moves ``translate``, a resize changes ``scale`` and ``shape``: the truth is
        composed with the change of display grid, so an oblique source stays oblique.

        Parameters
        ----------
        shape : sequence of int
            The new layer's data shape (the last three values are used).
        scale, translate : sequence of float
            The new layer's scale and translate.

        Returns
        -------
        Grid
            ``self`` when nothing changed, else the composed grid (without a display
            transform; the acquired slices' true positions kept).
        """
        shape3 = tuple(int(n) for n in shape[-3:])
        sc = np.asarray(scale, float)[-3:]
        tr = np.asarray(translate, float)[-3:]
        if shape3 == tuple(self.shape) and _close(sc, self.scale) and _close(tr, self.translate):
            return self
        old_sc = np.asarray(self.scale, float)
        old_tr = np.asarray(self.translate, float)
        m = np.eye(4)  # new data index -> old data index, through the display world
        m[:3, :3] = np.diag(sc / old_sc)
        m[:3, 3] = (tr - old_tr) / old_sc
        along = None if self.slice_of_index is None else self.slice_of_index @ m
        return Grid(self.index_to_lps @ m, shape3, tuple(sc), tuple(tr), None,
                    self.slice_offsets, along)

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
        """How far (mm) a voxel corner is drawn from where ``index_to_lps`` puts it by the
        display's axis-aligned scale/translate (0 for axial, coronal and sagittal series):
        the error of showing an oblique or tilted series straight. Slices the display steps
        evenly over a gap are :attr:`slice_position_error_mm`."""
        shown = Grid.axis_aligned(self.scale, self.translate, self.shape)
        n = np.asarray(self.shape, float) - 1
        corners = np.array([[n[k] if b >> k & 1 else 0.0 for k in range(3)] for b in range(8)])
        affine = self.index_to_lps
        drawn = corners @ affine[:3, :3].T + affine[:3, 3]
        return float(np.max(np.linalg.norm(drawn - shown.lps(corners), axis=1)))

    @property
    def slice_position_error_mm(self) -> float:
        """How far (mm) an acquired slice is from where an even stepping of the slices puts
        it: 0 for evenly spaced slices; the missing length after a gap."""
        if self.slice_offsets is None:
            return 0.0
        return float(np.max(np.linalg.norm(self.slice_offsets, axis=1)))

    def uneven_steps(self, tolerance: float = 0.01) -> list[tuple[int, float]]:
        """The steps between acquired slices that are not the grid's slice step.

        Parameters
        ----------
        tolerance : float
            Relative difference from the grid's slice step (the median step) allowed.

        Returns
        -------
        list of (int, float)
            ``(k, mm)``: the step from acquired slice ``k`` to ``k + 1`` (0-based, the
            ``s`` of the status bar's voxel index) is ``mm`` long. Empty for an evenly spaced
            stack.
        """
        if self.slice_offsets is None or self.slice_of_index is None:
            return []
        step = self._slice_step()
        vectors = step + np.diff(self.slice_offsets, axis=0)
        lengths = np.linalg.norm(vectors, axis=1)
        usual = float(np.linalg.norm(step))
        return [(k, round(float(d), 4)) for k, d in enumerate(lengths)
                if abs(d - usual) > tolerance * usual]

    @property
    def slice_data_axis(self) -> int:
        """The data axis along which the acquired slices follow one another."""
        if self.slice_of_index is None:
            return self.acquisition_axis
        return int(np.argmax(np.abs(self.slice_of_index[:3])))

    def mean_lps(self, mean_index: npt.ArrayLike, axis: int, indices: npt.ArrayLike,
                 counts: npt.ArrayLike) -> Floats:
        """Mean LPS position (mm) of a set of voxels, e.g. a label's centroid.

        With unevenly spaced slices the mean of the voxels' positions is not the position of
        their mean index: the voxels' spread over the slices is needed.

        Parameters
        ----------
        mean_index : array_like, shape (3,)
            The voxels' mean data index.
        axis : int
            A data axis (:attr:`slice_data_axis` for an exact result on unevenly spaced
            slices).
        indices, counts : array_like, shape (m,)
            Indices along ``axis`` and how many of the voxels have each.

        Returns
        -------
        numpy.ndarray, shape (3,)
            LPS ``(x, y, z)`` mm.
        """
        c = np.asarray(mean_index, float)
        base: Floats = c @ self.index_to_lps[:3, :3].T + self.index_to_lps[:3, 3]
        if self.slice_offsets is None or self.slice_of_index is None:
            return base
        idx = np.repeat(c[None, :], len(np.atleast_1d(indices)), axis=0)
        idx[:, axis] = np.asarray(indices, float)
        along = idx @ self.slice_of_index[:3] + self.slice_of_index[3]
        weights = np.asarray(counts, float)
        mean_offset = weights @ self._offset_at(along, self.slice_offsets) / weights.sum()
        out: Floats = base + mean_offset
        return out

    @property
    def slice_step_mm(self) -> float:
        """Length (mm) of the grid's step from one acquired slice to the next (the median
        step of an unevenly spaced stack)."""
        return float(np.linalg.norm(self._slice_step()))

    def _slice_step(self) -> Floats:
        """LPS mm vector of one acquired slice's step through ``index_to_lps``."""
        if self.slice_of_index is None:
            w = np.eye(3)[self.acquisition_axis]
        else:
            w = self.slice_of_index[:3]
        out: Floats = self.index_to_lps[:3, :3] @ (w / float(w @ w))
        return out

    @property
    def acquisition_axis(self) -> int:
        """The data axis that steps through the acquired slices (0 when not known)."""
        if self.display is None:
            return 0
        return int(list(self.display.axes).index(0))

    @property
    def linear(self) -> Floats:
        """``(3, 3)`` mm vector of one index step along each data axis (columns): the
        metric the core's ``spacing=`` arguments accept (see :func:`metric`)."""
        out: Floats = self.index_to_lps[:3, :3].copy()
        return out

    @property
    def plane_spacing_mm(self) -> Floats:
        """True distance (mm) between consecutive planes of constant index along each data
        axis: the slice spacing for the slice axis of a gantry-tilted series, not the
        (longer) step between its slice origins (see :func:`plane_spacing`)."""
        return plane_spacing(self.linear)

    @property
    def voxel_volume_mm3(self) -> float:
        """``|det|`` of the true affine: the volume of one voxel (sheared or not)."""
        return float(abs(np.linalg.det(self.index_to_lps[:3, :3])))

    def pixel_area_mm2(self, normal_axis: int) -> float:
        """Area of one pixel in the plane of the two data axes other than ``normal_axis``.

        Parameters
        ----------
        normal_axis : int
            The data axis (0, 1 or 2) normal to the plane.

        Returns
        -------
        float
            mm^2, in the true (possibly oblique or sheared) plane.
        """
        a, b = (k for k in range(3) if k != normal_axis)
        return float(np.linalg.norm(np.cross(self.index_to_lps[:3, a],
                                             self.index_to_lps[:3, b])))

    def lps(self, index: npt.ArrayLike) -> Floats:
        """LPS mm of data indices.

        Parameters
        ----------
        index : array_like, shape (..., 3)
            Data indices (fractional allowed).

        Returns
        -------
        numpy.ndarray, shape (..., 3)
            LPS ``(x, y, z)`` mm.
        """
        idx = np.asarray(index, float)
        out: Floats = idx @ self.index_to_lps[:3, :3].T + self.index_to_lps[:3, 3]
        if self.slice_offsets is not None and self.slice_of_index is not None:
            along = idx @ self.slice_of_index[:3] + self.slice_of_index[3]
            out = out + self._offset_at(along, self.slice_offsets)
        return out

    @staticmethod
    def _offset_at(along: Floats, offsets: Floats) -> Floats:
        """``offsets`` (one row per acquired slice) at fractional slice coordinates: linear
        between slices, the end slice's beyond them."""
        k = np.arange(len(offsets), dtype=float)
        out: Floats = np.stack([np.interp(along, k, offsets[:, c])
                                for c in range(offsets.shape[1])], axis=-1)
        return out

    def index(self, lps: npt.ArrayLike) -> Floats:
        """Fractional data indices of LPS points.

        Parameters
        ----------
        lps : array_like, shape (..., 3)
            LPS ``(x, y, z)`` mm.

        Returns
        -------
        numpy.ndarray, shape (..., 3)
            Fractional data indices.
        """
        inv = np.linalg.inv(self.index_to_lps)
        p = np.asarray(lps, float)
        out: Floats = p @ inv[:3, :3].T + inv[:3, 3]
        if self.slice_offsets is None or self.slice_of_index is None:
            return out
        # index = u - inv3 @ offset(s) with s = w . index + w0, so the "nominal" slice
        # coordinate w . u + w0 = s + w . inv3 @ offset(s): increasing in s (the slices are
        # sorted along their normal), piecewise linear, inverted by interpolation
        w, w0 = self.slice_of_index[:3], float(self.slice_of_index[3])
        shift = self.slice_offsets @ inv[:3, :3].T  # each slice's offset in index units
        k = np.arange(len(shift), dtype=float)
        nominal_k = k + shift @ w
        nominal = out @ w + w0
        along = np.interp(nominal, nominal_k, k)
        along = np.where(nominal < nominal_k[0], nominal - shift[0] @ w, along)
        along = np.where(nominal > nominal_k[-1], nominal - shift[-1] @ w, along)
        result: Floats = out - self._offset_at(along, shift)
        return result

    def box_lps(self, lo: npt.ArrayLike, hi: npt.ArrayLike) -> tuple[Floats, Floats]:
        """LPS axis-aligned bounds of the voxel box ``[lo, hi)`` (outer voxel faces).

        Parameters
        ----------
        lo, hi : array_like, shape (3,)
            First and one-past-last data index of the box.

        Returns
        -------
        (numpy.ndarray, numpy.ndarray)
            Smallest and largest LPS ``(x, y, z)`` mm (see :func:`box_bounds`), through the
            acquired slices' true positions.
        """
        p = self.lps(_box_corners(lo, hi))
        return p.min(axis=0), p.max(axis=0)

    def original_index(self, index: npt.ArrayLike) -> Floats | None:
        """``(slice, row, column)`` index in the original array, when the data is a view.

        Parameters
        ----------
        index : array_like, shape (..., 3)
            Data indices of the layer.

        Returns
        -------
        numpy.ndarray or None
            None when the layer is not the reader's view of an original array.
        """
        if self.display is None:
            return None
        q = _original_from_view(self.display, self.shape)
        out: Floats = np.asarray(index, float) @ q[:3, :3].T + q[:3, 3]
        return out

    # ------------------------------------------------------------------ writing
    def nifti(self, data: Any, leading: int = 0) -> tuple[Any, Floats]:
        """``(array, affine_ras)`` to write as NIfTI.

        The original ``(slice, row, column)`` array and its affine when the data is the
        reader's view (so image and labels land on exactly the grid ``convert`` writes), else
        the data as it is with the true affine.

        Parameters
        ----------
        data : numpy.ndarray or dask.array.Array
            Layer data, spatial axes last.
        leading : int
            Number of leading non-spatial axes (e.g. 1 for time).

        Returns
        -------
        (array, numpy.ndarray)
            The array to write (a view of ``data``, same type) and its 4x4 RAS affine
            (index ``(i, j, k)`` = ``(column, row, slice)``).
        """
        if self.slice_offsets is not None:
            warnings.warn(
                f"slices not evenly spaced (steps {self.uneven_steps()[:3]} (slice, mm) where "
                f"the usual step is {self.slice_step_mm:g} mm): NIfTI holds the acquired "
                f"slices {self.slice_step_mm:g} mm apart, as dcm2niix writes them, so slices "
                f"past a gap are up to {self.slice_position_error_mm:.1f} mm from their true "
                "position; resample to patient axes first for an exact file", stacklevel=2)
        if self.display is not None:
            arr = self.display.invert(data, leading=leading)
            view_from_original = np.linalg.inv(_original_from_view(self.display, self.shape))
            orig_idx_to_lps = self.index_to_lps @ view_from_original
            affine: Floats = geometry.LPS_TO_RAS @ orig_idx_to_lps @ _REVERSE
            return arr, affine
        affine = geometry.LPS_TO_RAS @ self.index_to_lps @ _REVERSE
        return data, affine


def metric(spacing: npt.ArrayLike | None, ndim: int) -> Floats:
    """The ``(ndim, ndim)`` index-step -> mm map of a ``spacing=`` argument.

    Parameters
    ----------
    spacing : float, sequence of float, array_like of shape (ndim, ndim), or None
        Either one voxel size per axis (mm; an axis-aligned grid; the last ``ndim`` values
        are used) or a square matrix whose column ``k`` is the mm vector of one step along
        array axis ``k`` (:attr:`Grid.linear`, for oblique or sheared grids); None means
        1 mm voxels.
    ndim : int
        Number of array axes.

    Returns
    -------
    numpy.ndarray, shape (ndim, ndim)
        Column ``k``: the mm vector of one index step along axis ``k``.

    Raises
    ------
    ValueError
        When ``spacing`` does not fit ``ndim`` axes, is not positive or is degenerate.

    Examples
    --------
    >>> metric((2.5, 0.5, 0.5), 3).diagonal().tolist()
    [2.5, 0.5, 0.5]
    >>> metric(None, 2).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
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


def plane_spacing(linear: npt.ArrayLike, axes: Sequence[int] | None = None) -> Floats:
    """Distance (mm) between consecutive index planes along each of ``axes``.

    Measured within the space those axes span (lines, in 2D). For an orthogonal grid this is
    the voxel size; for a sheared one (gantry tilt) it is shorter than the step between voxel
    centres. A per-axis size in index units, ``ceil(mm / plane_spacing)``, covers at least
    ``mm`` perpendicular to every face, and a separable Gaussian with
    ``sigma_mm / plane_spacing`` has the per-axis variances of the true isotropic one.

    Parameters
    ----------
    linear : array_like, shape (3, n)
        Column ``k``: the mm vector of one index step along axis ``k`` (:func:`metric`,
        :attr:`Grid.linear`).
    axes : sequence of int, optional
        The axes to measure (default all).

    Returns
    -------
    numpy.ndarray
        One distance (mm) per axis of ``axes``.

    Examples
    --------
    A gantry tilt of 30 degrees: 2 mm between slice origins, 2 cos(30) mm between the slice
    planes; the planes of constant row index are tilted too (cos(30) mm apart).

    >>> import numpy as np
    >>> tilt = np.radians(30)
    >>> linear = [[1, 0, 0], [0, 1, 2 * np.sin(tilt)], [0, 0, 2 * np.cos(tilt)]]
    >>> plane_spacing(linear).round(3).tolist()
    [1.0, 0.866, 1.732]
    """
    m = np.asarray(linear, float)
    cols = list(range(m.shape[1])) if axes is None else list(axes)
    rows = np.linalg.pinv(m[:, cols])
    out: Floats = 1.0 / np.linalg.norm(rows, axis=1)
    return out


def _resample_through(work: npt.NDArray[np.floating[Any]], grid: Grid, out_grid: Grid,
                      order: int, fill: float) -> npt.NDArray[np.floating[Any]]:
    """``work`` (on ``grid``, unevenly spaced slices) sampled at every voxel of ``out_grid``,
    one output plane at a time (the coordinates of a whole volume would take 24 bytes a
    voxel)."""
    from scipy import ndimage

    if order > 1:  # prefilter once, not once a plane
        work = ndimage.spline_filter(work, order, output=np.float64)
    shape = out_grid.shape
    rows, cols = np.meshgrid(np.arange(shape[1]), np.arange(shape[2]), indexing="ij")
    plane = np.stack([np.zeros(rows.size), rows.ravel(), cols.ravel()], axis=-1)
    out = np.empty(shape, work.dtype)
    for z in range(shape[0]):
        plane[:, 0] = z
        coords = grid.index(out_grid.lps(plane)).T
        out[z] = ndimage.map_coordinates(work, coords, order=order, mode="constant", cval=fill,
                                         prefilter=False).reshape(shape[1:])
    return out


def _original_from_view(display: geometry.DisplayTransform,
                        view_shape: Sequence[int]) -> Floats:
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


def box_bounds(index_to_lps: npt.ArrayLike, lo: npt.ArrayLike,
               hi: npt.ArrayLike) -> tuple[Floats, Floats]:
    """LPS axis-aligned bounds of the voxel box ``[lo, hi)`` (outer voxel faces).

    Parameters
    ----------
    index_to_lps : array_like, shape (4, 4)
        Index -> LPS mm affine (voxel centres at integer indices).
    lo, hi : array_like, shape (3,)
        First and one-past-last index of the box along each axis.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Smallest and largest LPS ``(x, y, z)`` mm over the box's eight outer corners.

    Examples
    --------
    >>> import numpy as np
    >>> lo, hi = box_bounds(np.diag([2.0, 1.0, 1.0, 1.0]), (0, 0, 0), (2, 3, 4))
    >>> lo.tolist(), hi.tolist()
    ([-1.0, -0.5, -0.5], [3.0, 2.5, 3.5])
    """
    a = np.asarray(index_to_lps, float)
    p = _box_corners(lo, hi) @ a[:3, :3].T + a[:3, 3]
    return p.min(axis=0), p.max(axis=0)


def _box_corners(lo: npt.ArrayLike, hi: npt.ArrayLike) -> Floats:
    """The eight outer corners (index units) of the voxel box ``[lo, hi)``."""
    lo_ = np.asarray(lo, float) - 0.5
    hi_ = np.asarray(hi, float) - 0.5
    out: Floats = np.array([[(lo_, hi_)[b >> k & 1][k] for k in range(3)] for b in range(8)])
    return out


def resample_to_patient_axes(data: npt.ArrayLike, grid: Grid,
                             spacing: npt.ArrayLike | None = None, *, order: int = 1,
                             cval: float | None = None,
                             leading: int = 0) -> tuple[npt.NDArray[Any], Grid]:
    """Resample layer data onto an exact patient-axis grid (world ``(z, y, x)`` LPS mm).

    The output covers the whole true extent of ``data`` (every voxel corner) on axes aligned
    with the patient, so napari shows it without approximation; an oblique or gantry-tilted
    series becomes a layer whose display *is* its geometry, and a stack with missing slices
    or changing spacing gets evenly spaced slices (a gap filled by interpolating between the
    slices on either side of it, as 3D Slicer's regularization does).

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
    leading : int
        Number of leading non-spatial axes of ``data``, each resampled alike.

    Returns
    -------
    (numpy.ndarray, Grid)
        The resampled array (same dtype) and its axis-aligned grid (``scale``/``translate``
        for the napari layer).

    Raises
    ------
    ValueError
        When ``spacing`` is not positive.

    Examples
    --------
    A 4 x 4 x 4 block tilted by 10 degrees about the x axis, resampled to 1 mm patient axes:

    >>> import numpy as np
    >>> c, s = np.cos(np.radians(10)), np.sin(np.radians(10))
    >>> affine = np.array([[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    >>> grid = Grid(affine[[2, 1, 0, 3]], (4, 4, 4), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    >>> out, out_grid = resample_to_patient_axes(np.ones((4, 4, 4), np.int16), grid, order=0)
    >>> out.dtype, out.shape, out_grid.residual_deg
    (dtype('int16'), (5, 5, 4), 0.0)
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
        if grid.slice_offsets is None:
            res = ndimage.affine_transform(work, m[:3, :3], m[:3, 3], output_shape=shape,
                                           order=order, mode="constant", cval=fill)
        else:
            res = _resample_through(work, grid, out_grid, order, fill)
        if arr.dtype.kind in "iub":
            res = np.round(res)
        out[idx] = res.astype(arr.dtype, copy=False)
    return out, out_grid
