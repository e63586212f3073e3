"""napari adapter: make the viewer show DICOM the way radiologists read it, and tell the truth.

One :class:`GeometryController` per viewer (:func:`install`, idempotent; the reader and the
widgets install it):

* a series opens in its **acquisition plane** (the slider over its own slices);
* every plane is **upright and radiological** through napari's camera orientation: axial
  anterior up and the patient's left on the screen's right, coronal superior up and left on
  the right, sagittal superior up and anterior on the left (world axes are LPS ``(z, y, x)``,
  so the vertical axis points *up* whenever it is S-I);
* :func:`set_plane` switches axial/coronal/sagittal/acquisition keeping the point under the
  cursor (keys Alt+1, Alt+2, Alt+3, Alt+0, and buttons in the *Planes & geometry* dock);
* **no silent approximation**: an oblique or tilted layer, or a stack with missing slices
  or changing slice spacing (shown evenly spaced), raises a notification when it arrives and
  a canvas notice while it is the active layer;
* the **status bar** adds, for layers with a true grid, the voxel's original
  ``(slice, row, column)`` index and its true LPS position in mm (past a gap too);
* a labels layer created on the grid of one of our layers (napari's *New labels* button)
  inherits that layer's true grid and provenance, so it is measured and saved on it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from .core.grid import GRID_KEY, Grid

if TYPE_CHECKING:
    from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, PushButton

    from ._reader import LayerData
    from ._widgets import Layer, Viewer

    class GeometryBox(Container[Any]):
        """The *Planes & geometry* dock: a magicgui Container whose widgets are also its
        attributes (set by :func:`_geometry_controls` and :func:`make_geometry_widget`)."""

        buttons: dict[str, PushButton]
        info: Label
        layer_box: ComboBox
        voxel: FloatSpinBox
        resample: PushButton
        ortho: CheckBox
        #: the running resample (a napari FunctionWorker), or None
        worker: Any
        resample_now: Callable[[], None]

PLANES = ("axial", "coronal", "sagittal")

#: keys of layer.metadata that identify where data came from; derived layers keep them
PROVENANCE_KEYS = ("patient_name", "patient_id", "study_uid", "series_uid",
                   "frame_of_reference", "modality", "study_date", "study_description",
                   "series_description", "series_number", "orientation", "photometric")

_CONTROLLERS: dict[int, GeometryController] = {}


def provenance(layer: Layer) -> dict[str, Any]:
    """The identity keys (:data:`PROVENANCE_KEYS`) a layer made from ``layer`` keeps."""
    return {k: layer.metadata[k] for k in PROVENANCE_KEYS if k in layer.metadata}


def has_patient_axes(layer: Layer) -> bool:
    """Whether a layer's world axes are the patient's (LPS mm): not for images without
    ImageOrientationPatient (ultrasound, photos, screen captures: ``orientation``
    ``"unknown"`` in their metadata), which get no A/P/R/L letters and no LPS readout."""
    return bool(layer.metadata.get("orientation") != "unknown")


def layer_units(layer: Layer) -> tuple[str, ...]:
    """The layer's per-axis units as plain strings (for a derived layer's ``units``)."""
    return tuple(str(u) for u in getattr(layer, "units", ()) or ())


def camera_of(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera``
    before)."""
    scene = getattr(viewer, "scene", None)
    camera = getattr(scene, "camera", None) if scene is not None else None
    return camera if camera is not None else viewer.camera


def layer_grid(layer: Layer, viewer: Viewer | None = None) -> Grid | None:
    """The true grid of a napari layer (3D spatial data), or None for 2D layers.

    A layer without a stored grid that sits exactly on the display grid of one of our layers
    (same spatial shape, scale and translate, e.g. labels drawn on it) gets that layer's grid;
    any other layer is what napari shows (axis-aligned world mm)."""
    nd = layer.data.ndim - (1 if getattr(layer, "rgb", False) else 0)
    if nd < 3:
        return None
    shape = tuple(layer.data.shape[nd - 3:nd])
    g = Grid.from_metadata(layer.metadata, shape, layer.scale, layer.translate)
    if g is not None:
        return g
    if viewer is not None:
        for other in viewer.layers:
            if other is layer or GRID_KEY not in other.metadata:
                continue
            g = Grid.from_metadata(other.metadata, shape, layer.scale, layer.translate)
            if g is not None:
                return g
    return Grid.axis_aligned(layer.scale, layer.translate, shape)


def plane_order(ndim: int, plane: str) -> tuple[int, ...]:
    """``dims.order`` that shows ``plane`` (world axes are ``(..., z, y, x)`` LPS)."""
    lead = list(range(ndim - 3))
    z, y, x = ndim - 3, ndim - 2, ndim - 1
    order = {"axial": [z, y, x], "coronal": [y, z, x], "sagittal": [x, z, y]}[plane]
    return tuple(lead + order)


def current_plane(viewer: Viewer) -> str | None:
    """The plane shown in 2D (by the slider's world axis), or None."""
    ndim = viewer.dims.ndim
    if ndim < 3:
        return None
    not_shown = [a for a in viewer.dims.order[:-2] if a >= ndim - 3]
    if len(not_shown) != 1:
        return None
    return PLANES[not_shown[0] - (ndim - 3)]


def _gridded(viewer: Viewer) -> list[Layer]:
    return [lay for lay in viewer.layers if GRID_KEY in lay.metadata]


def acquisition_plane(viewer: Viewer, layer: Layer | None = None) -> str:
    """The plane a layer (default: the active one, else the first of ours) was acquired in."""
    if layer is None or GRID_KEY not in layer.metadata:
        active = viewer.layers.selection.active
        cands = ([active] if active is not None and GRID_KEY in active.metadata else []) + \
            _gridded(viewer)
        if not cands:
            return "axial"
        layer = cands[0]
    return PLANES[int(layer.metadata[GRID_KEY].get("acquisition_axis", 0))]


def _slices_and_voxels(layer: Layer) -> tuple[int, int]:
    """(acquired slices, voxels) of one of our image layers: what makes a series the main one."""
    nd = layer.data.ndim - (1 if getattr(layer, "rgb", False) else 0)
    shape = tuple(int(n) for n in layer.data.shape[:nd])
    if nd < 3:
        return 1, int(np.prod(shape))
    axis = int(layer.metadata[GRID_KEY].get("acquisition_axis", 0))
    return shape[nd - 3 + axis], int(np.prod(shape))


def main_series(viewer: Viewer) -> Layer | None:
    """The layer whose acquisition plane the viewer shows: :func:`main_layer` of our image
    layers (else of our labels, e.g. a SEG opened alone); None without one."""
    ours = _gridded(viewer)
    return main_layer([lay for lay in ours if lay._type_string == "image"] or ours)


def main_layer(layers: Iterable[Layer]) -> Layer | None:
    """The main series among ``layers`` (ours, with a grid): a stack of several slices
    before a single slice (a scout or localizer never decides the plane of a CT volume),
    then the most voxels, then the first; None when none of them has a grid."""
    cands = [lay for lay in layers if GRID_KEY in lay.metadata]
    if not cands:
        return None

    def rank(item: tuple[int, Any]) -> tuple[bool, int, int]:
        k, lay = item
        slices, voxels = _slices_and_voxels(lay)
        return slices > 1, voxels, -k

    return max(enumerate(cands), key=rank)[1]


def _view_state(viewer: Viewer) -> tuple[tuple[int, ...], int]:
    """(dims order, ndisplay): what the user changes when they choose a plane or 3D."""
    return tuple(int(a) for a in viewer.dims.order), int(viewer.dims.ndisplay)


def set_plane(viewer: Viewer, plane: str, *, keep_cursor: bool = True) -> str:
    """Show ``plane`` (``axial``, ``coronal``, ``sagittal`` or ``acquisition``) upright and
    radiological, through the point under the cursor (else the current point)."""
    if plane == "acquisition":
        plane = acquisition_plane(viewer)
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {PLANES + ('acquisition',)}, got {plane!r}")
    ndim = viewer.dims.ndim
    if ndim < 3:
        return plane
    point = np.asarray(viewer.dims.point, float)
    if keep_cursor:
        cur = np.asarray(viewer.cursor.position, float)
        if cur.shape == point.shape and np.all(np.isfinite(cur)):
            point = cur
    if viewer.dims.ndisplay != 2:
        viewer.dims.ndisplay = 2
    order = plane_order(ndim, plane)
    viewer.dims.order = order
    slider = order[-3]
    viewer.dims.set_point(slider, float(point[slider]))
    update_orientation(viewer)
    if keep_cursor:
        camera_of(viewer).center = (0.0,) + tuple(float(point[a]) for a in order[-2:])
    else:
        viewer.reset_view()
    return plane


def update_orientation(viewer: Viewer) -> None:
    """Vertical axis up when it is S-I (coronal, sagittal), down when it is P-A (axial):
    the radiological picture in every plane. Leaves viewers without our layers alone."""
    if not _gridded(viewer):
        return
    ndim = viewer.dims.ndim
    if viewer.dims.ndisplay != 2 or ndim < 3:
        return
    vertical = viewer.dims.order[-2]
    want = ("up" if vertical == ndim - 3 else "down", "right")
    if tuple(str(v) for v in camera_of(viewer).orientation2d) != want:
        camera_of(viewer).orientation2d = want


class GeometryController:
    """Keeps one viewer radiological and honest; see the module docstring."""

    def __init__(self, viewer: Viewer) -> None:
        self._viewer = weakref.ref(viewer)
        self.notified: set[int] = set()
        #: the layer whose plane the controller showed, and the view it set (dims order,
        #: ndisplay): a view that differs from it later is the user's choice
        self._main: Callable[[], Any] = lambda: None
        self._auto: tuple[tuple[int, ...], int] | None = None
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.dims.events.order.connect(self._on_dims)
        viewer.dims.events.ndisplay.connect(self._on_dims)
        viewer.layers.selection.events.active.connect(self._on_active)
        for key, plane in (("Alt-1", "axial"), ("Alt-2", "coronal"), ("Alt-3", "sagittal"),
                           ("Alt-0", "acquisition")):
            viewer.bind_key(key, _plane_key(plane), overwrite=True)
        from ._workspace import setup_viewer

        setup_viewer(viewer)
        self._drop_filter = _install_drop_filter(viewer)
        for layer in list(viewer.layers):
            self._adopt(layer)

    @property
    def viewer(self) -> Viewer | None:
        """The viewer (None once it is gone: the controller holds it weakly)."""
        return self._viewer()

    # -------------------------------------------------------------- events
    def _on_inserted(self, event: Any) -> None:
        viewer = self.viewer
        if viewer is None:
            return
        layer = event.value
        self._adopt(layer)
        if GRID_KEY in layer.metadata:
            self._follow_main_series()
        self._notify_oblique(layer)
        self._on_active()

    def _follow_main_series(self) -> None:
        """Show the main series' acquisition plane (:func:`main_series`), unless the user
        chose a plane or a 3D view since the controller last set one: a scout opened first
        (or alone) sets its plane; the CT volume after it takes over."""
        viewer = self.viewer
        if viewer is None or viewer.dims.ndim < 3:
            return
        main = main_series(viewer)
        if main is None or main is self._main():
            return
        if self._auto is not None and len(self._auto[0]) == viewer.dims.ndim \
                and _view_state(viewer) != self._auto:
            return  # the user changed the plane (or went 3D) since: theirs stays
        set_plane(viewer, acquisition_plane(viewer, main), keep_cursor=False)
        self._main = weakref.ref(main)
        self._auto = _view_state(viewer)

    def _on_dims(self, event: object = None) -> None:
        viewer = self.viewer
        if viewer is not None:
            update_orientation(viewer)

    def _on_active(self, event: object = None) -> None:
        viewer = self.viewer
        if viewer is None:
            return
        layer = viewer.layers.selection.active
        text = ""
        if layer is not None and GRID_KEY in layer.metadata:
            g = layer_grid(layer, viewer)
            # short lines: the notice stays clear of the orientation letter at the top
            if g is not None and g.display_error_mm > 0.5:
                text = (f"{g.residual_deg:.1f} deg oblique/tilted, shown\n"
                        f"axis-aligned (up to {g.display_error_mm:.0f} mm off);\n"
                        "numbers use the true geometry.\n"
                        "Exact view: Resample to patient axes")
            elif g is not None and g.uneven_steps():
                text = (f"{_uneven_summary(g)}: shown evenly\n"
                        f"(up to {g.slice_position_error_mm:.0f} mm off); numbers use\n"
                        "each slice's true position.\n"
                        "Even slices: Resample to patient axes")
        overlay = text_overlay(viewer)
        overlay.text = text
        overlay.visible = bool(text)
        if text:
            overlay.color = "yellow"
            overlay.font_size = 9
            overlay.position = "top_left"

    # -------------------------------------------------------------- helpers
    def _adopt(self, layer: Layer) -> None:
        """Inherit a grid and provenance for a layer drawn on one of ours; readout."""
        viewer = self.viewer
        if viewer is None:
            return
        if GRID_KEY not in layer.metadata and layer._type_string == "labels":
            nd = layer.data.ndim
            if nd >= 3:
                shape = tuple(layer.data.shape[-3:])
                for other in _gridded(viewer):
                    if other is layer:
                        continue
                    g = Grid.from_metadata(other.metadata, shape, layer.scale, layer.translate)
                    if g is not None:
                        meta = dict(layer.metadata)
                        meta[GRID_KEY] = g.to_metadata()
                        meta.setdefault("derived_from", other.name)
                        for k, value in provenance(other).items():
                            meta.setdefault(k, value)
                        layer.metadata = meta
                        break
        if GRID_KEY in layer.metadata and not getattr(layer, "_dicomtools_status", False):
            _wrap_status(layer)
        if GRID_KEY in layer.metadata or "window" in layer.metadata:
            from ._workspace import setup_layer

            setup_layer(viewer, layer)

    def _notify_oblique(self, layer: Layer) -> None:
        """One warning per image layer whose display is not its geometry: oblique or
        tilted, or unevenly spaced slices shown evenly."""
        if layer._type_string != "image" or GRID_KEY not in layer.metadata \
                or id(layer) in self.notified:
            return
        viewer = self.viewer
        g = layer_grid(layer, viewer)
        if g is None:
            return
        from ._reader import oblique_notice

        notices = [oblique_notice(layer.name, g)] if g.display_error_mm > 0.5 else []
        if g.uneven_steps():
            notices.append(spacing_notice(layer.name, g))
        if not notices:
            return
        self.notified.add(id(layer))
        from napari.utils.notifications import show_warning

        for text in notices:
            show_warning(text)


def _uneven_summary(grid: Grid) -> str:
    """``gap of 10 mm after slice 9`` (the largest), or ``slice spacing 2.5-5 mm``."""
    steps = grid.uneven_steps()
    usual = grid.slice_step_mm
    if all(d > 1.5 * usual for _, d in steps):
        k, d = max(steps, key=lambda kd: kd[1])
        more = f" (+{len(steps) - 1})" if len(steps) > 1 else ""
        return f"gap of {d:g} mm after slice {k}{more}"
    lengths = [d for _, d in steps] + [usual]
    return f"slice spacing {min(lengths):g}-{max(lengths):g} mm"


def spacing_notice(name: str, grid: Grid) -> str:
    """What the user is told when a stack's slices are not evenly spaced (missing slices,
    changing spacing) but napari shows them evenly."""
    steps = grid.uneven_steps()
    usual = grid.slice_step_mm
    if all(d > 1.5 * usual for _, d in steps):
        gaps = [f"between slices {k} and {k + 1} ({d:g} mm, about {round(d / usual) - 1} "
                f"missing)" for k, d in steps[:3]]
        what = (f"missing slices: {len(steps)} gap(s) in the {usual:g} mm stepping, "
                + "; ".join(gaps) + ("; ..." if len(steps) > 3 else ""))
    else:
        lengths = [d for _, d in steps]
        what = (f"slices not equally spaced: {len(steps)} step(s) of "
                f"{min(lengths):g} to {max(lengths):g} mm where the usual step is {usual:g} mm")
    return (f"{name}: {what}. Shown evenly spaced (slices up to "
            f"{grid.slice_position_error_mm:.1f} mm from their true position on screen); the "
            "status bar, measurements and SEG/RTSTRUCT use each slice's true position, NIfTI "
            "holds the acquired slices at the usual step (as dcm2niix). Even slices: Plugins > "
            "DICOM Tools > Planes & geometry > Resample to patient axes (interpolates the "
            "gap), or read_volume(path, uniform_spacing=True).")


def text_overlay(viewer: Viewer) -> Any:
    """The canvas text overlay (napari >= 0.9 moved it under ``canvas.overlays``)."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    if overlays is not None and "text" in overlays:
        return overlays["text"]
    return viewer.text_overlay


def dicom_files_dropped(paths: Iterable[str]) -> list[str] | None:
    """The paths when a drop is two or more DICOM files (to open as series together), else
    None (napari handles it: one file, folders, other formats)."""
    import os

    from ._reader import _looks_dicom_file

    files = [os.fspath(p) for p in paths]
    if len(files) < 2 or not all(os.path.isfile(f) for f in files):
        return None
    return files if all(_looks_dicom_file(f) for f in files) else None


def _install_drop_filter(viewer: Viewer) -> Callable[..., Any] | None:
    """Dropping many DICOM files opens them as series (one reader call over all of them), not
    one layer per file as napari does for a multi-file drop. Wraps napari's drop handler
    (``QtViewer._open_from_list_of_urls_data``) when it exists; anything that is not two or
    more DICOM files goes on to napari unchanged."""
    window = getattr(viewer, "window", None)
    qt_viewer = getattr(window, "_qt_viewer", None) if window is not None else None
    current = getattr(qt_viewer, "_open_from_list_of_urls_data", None)
    original = getattr(type(qt_viewer), "_open_from_list_of_urls_data", None)
    if original is None or getattr(current, "_dicomtools", False):
        return None
    ref = weakref.ref(viewer)
    qt_ref = weakref.ref(qt_viewer)  # no reference cycle: the viewer can be freed

    def open_urls(urls_list: list[Any], *args: Any, **kwargs: Any) -> Any:
        urls = [u.toLocalFile() for u in urls_list if u.isLocalFile()]
        files = dicom_files_dropped(urls) if len(urls) == len(urls_list) else None
        v = ref()
        if files is None or v is None:
            return original(qt_ref(), urls_list, *args, **kwargs)
        return v.open(files, stack=True, plugin="napari-dicomtools")

    open_urls._dicomtools = True  # type: ignore[attr-defined]  # marks our wrapper
    assert qt_viewer is not None  # (it has the handler: see above)
    qt_viewer._open_from_list_of_urls_data = open_urls
    return open_urls


def _plane_key(plane: str) -> Callable[[Viewer], None]:
    def press(viewer: Viewer) -> None:
        set_plane(viewer, plane)
    press.__name__ = f"show_{plane}_plane"
    press.__doc__ = f"Show the {plane} plane (upright, radiological)"
    return press


def _wrap_status(layer: Layer) -> None:
    """Add the original voxel index and true LPS mm to the layer's status-bar text."""
    original = layer.get_status

    def get_status(position: npt.ArrayLike | None = None, *args: Any, **kwargs: Any
                   ) -> Any:
        status = original(position, *args, **kwargs)
        try:
            from ._workspace import window_text

            extra = " | ".join(t for t in (
                true_position_text(layer, position, world=kwargs.get("world", False)),
                window_text(layer)) if t)
        except Exception:  # noqa: BLE001 - the status bar must never break
            extra = ""
        if extra:
            if isinstance(status, dict):
                status = dict(status)
                status["coordinates"] = f"{status.get('coordinates', '')} | {extra}"
            else:
                status = f"{status} | {extra}"
        return status

    layer.get_status = get_status
    layer._dicomtools_status = True


def true_position_text(layer: Layer, position: npt.ArrayLike | None, *,
                       world: bool = True) -> str:
    """``voxel (s, r, c) | LPS (x, y, z) mm`` of a position over ``layer`` from its true grid."""
    if position is None:
        return ""
    g = layer_grid(layer)
    if g is None:
        return ""
    pos = np.asarray(position, float)
    data_pos = np.asarray(layer.world_to_data(pos) if world else pos, float)
    nd = layer.data.ndim - (1 if getattr(layer, "rgb", False) else 0)
    idx = np.round(data_pos[nd - 3:nd])
    if np.any(idx < 0) or np.any(idx >= np.asarray(g.shape)):
        return ""
    orig = g.original_index(idx)
    if not has_patient_axes(layer):  # no patient frame: the voxel, never a made-up LPS
        return "" if orig is None else "voxel (s, r, c) = ({:.0f}, {:.0f}, {:.0f})".format(
            *orig)
    text = "LPS ({:.1f}, {:.1f}, {:.1f}) mm".format(*g.lps(idx))
    if orig is not None:
        text = "voxel (s, r, c) = ({:.0f}, {:.0f}, {:.0f}) | ".format(*orig) + text
    return text


def install(viewer: Viewer) -> GeometryController:
    """The viewer's controller (created once)."""
    viewer = getattr(viewer, "__wrapped__", viewer)  # napari's PublicOnlyProxy
    ctl = _CONTROLLERS.get(id(viewer))
    if ctl is not None and ctl.viewer is viewer:
        return ctl
    ctl = GeometryController(viewer)
    _CONTROLLERS[id(viewer)] = ctl
    return ctl


# ---------------------------------------------------------------------------- dock widget


def resample_layer_data(layer: Layer, viewer: Viewer | None = None,
                        spacing: float | tuple[float, float, float] | None = None
                        ) -> LayerData:
    """A ``LayerDataTuple`` of ``layer`` resampled onto exact patient axes (its display is
    then its geometry), with the source's provenance and a true grid."""
    from .core.grid import resample_to_patient_axes

    grid = layer_grid(layer, viewer)
    if grid is None:
        raise ValueError(f"{layer.name}: a 2D layer is already shown as it is")
    is_labels = layer._type_string == "labels"
    lead = layer.data.ndim - 3 - (1 if getattr(layer, "rgb", False) else 0)
    if getattr(layer, "rgb", False):
        raise ValueError(f"{layer.name}: RGB layers cannot be resampled here")
    arr, out = resample_to_patient_axes(np.asarray(layer.data), grid, spacing,
                                        order=0 if is_labels else 1,
                                        cval=0 if is_labels else None, leading=lead)
    meta = provenance(layer)
    meta.update(units=layer.metadata.get("units", ""), derived_from=layer.name,
                history=list(layer.metadata.get("history", [])) + [
                    {"op": "resample_to_patient_axes", "source": layer.name,
                     "spacing": [float(v) for v in out.scale]}])
    meta[GRID_KEY] = out.to_metadata()
    kwargs = {"name": f"{layer.name} (patient axes)", "metadata": meta,
              "scale": (1.0,) * lead + tuple(out.scale),
              "translate": (0.0,) * lead + tuple(out.translate),
              "units": layer_units(layer)}
    if not is_labels:
        from ._reader import grey_colormap

        kwargs["colormap"] = grey_colormap(meta)
        kwargs["contrast_limits"] = tuple(layer.contrast_limits)
    return arr, kwargs, "labels" if is_labels else "image"


def make_geometry_widget(napari_viewer: Viewer) -> GeometryBox:
    """The *Planes & geometry* dock: plane buttons (axial, coronal, sagittal, acquisition),
    the active layer's geometry in words, and *Resample to patient axes* (in a worker)."""
    viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
    install(viewer)
    box = _geometry_controls(viewer)
    _connect_planes(viewer, box)
    _connect_description(viewer, box)
    box.resample_now = _connect_resample(viewer, box)
    return box


def _geometry_controls(viewer: Viewer) -> GeometryBox:
    """The dock's widgets in a magicgui Container, each also an attribute of it."""
    from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, PushButton

    buttons = {p: PushButton(text=f"{p.capitalize()} ({k})") for p, k in
               (("axial", "Alt+1"), ("coronal", "Alt+2"), ("sagittal", "Alt+3"),
                ("acquisition", "Alt+0"))}
    info = Label(value="")
    info.native.setWordWrap(True)

    def volumes(_widget: object = None) -> list[str]:
        return [lay.name for lay in viewer.layers
                if lay._type_string in ("image", "labels") and lay.data.ndim >= 3]

    layer_box = ComboBox(label="layer", choices=volumes)
    voxel = FloatSpinBox(label="voxel size (mm, 0 = acquired)", value=0.0, min=0.0,
                         max=20.0, step=0.25)
    resample = PushButton(text="Resample to patient axes")
    ortho = CheckBox(text="Orthogonal views (linked)", value=False,
                     tooltip="Axial, coronal and sagittal views side by side, linked")
    # the widgets are also the box's attributes, set here (what GeometryBox declares)
    box = cast("GeometryBox", Container(
        widgets=[*buttons.values(), ortho, info, layer_box, voxel, resample]))
    box.buttons, box.info, box.layer_box, box.voxel, box.resample = (
        buttons, info, layer_box, voxel, resample)
    box.ortho = ortho
    box.worker = None
    return box


def _connect_planes(viewer: Viewer, box: GeometryBox) -> None:
    """Plane buttons set the viewer's plane; the checkbox shows the orthogonal views (and
    follows whether they are shown)."""
    from napari.utils.notifications import show_warning

    ortho = box.ortho
    for plane, b in box.buttons.items():
        b.clicked.connect(lambda *_, p=plane: set_plane(viewer, p, keep_cursor=False)
                          if viewer.dims.ndim >= 3 else None)

    @ortho.changed.connect
    def _ortho(on: bool) -> None:
        from ._ortho import orthogonal_views, show_orthogonal_views

        try:
            show_orthogonal_views(viewer, bool(on))
        except ValueError as exc:
            show_warning(str(exc))
        shown = orthogonal_views(viewer) is not None
        if ortho.value != shown:
            with ortho.changed.blocked():
                ortho.value = shown


def _connect_description(viewer: Viewer, box: GeometryBox) -> None:
    """The active layer's acquisition plane and display error in words, kept current."""
    info, layer_box = box.info, box.layer_box

    def describe(event: object = None) -> None:
        layer_box.reset_choices()
        layer = viewer.layers.selection.active
        if layer is not None and layer.name in layer_box.choices:
            layer_box.value = layer.name
        g = None if layer is None or layer._type_string not in ("image", "labels") \
            or layer.data.ndim < 3 else layer_grid(layer, viewer)
        if g is None:
            info.value = ""
            return
        if not has_patient_axes(layer):
            info.value = f"{layer.name}: no patient orientation (shown on its image axes)"
            info.tooltip = info.value
            return
        plane = PLANES[g.acquisition_axis] if GRID_KEY in layer.metadata else "unknown"
        exact = ("display is exact" if g.display_error_mm <= 0.5 else
                 f"{g.residual_deg:.1f} deg off axes, up to {g.display_error_mm:.0f} mm")
        if g.uneven_steps():
            exact = (f"{_uneven_summary(g)}, shown evenly (up to "
                     f"{g.slice_position_error_mm:.0f} mm off)" if exact == "display is exact"
                     else f"{exact}; {_uneven_summary(g)}")
        info.value = f"{layer.name}: acquired {plane}; {exact}"
        info.tooltip = info.value

    viewer.layers.selection.events.active.connect(describe)
    viewer.layers.events.inserted.connect(describe)
    viewer.layers.events.removed.connect(describe)
    describe()


def _connect_resample(viewer: Viewer, box: GeometryBox) -> Callable[[], None]:
    """*Resample to patient axes* runs in a worker and adds the resampled layer; returns
    what the button calls."""
    from napari.qt.threading import create_worker
    from napari.utils.notifications import show_error, show_info

    @box.resample.clicked.connect
    def _resample() -> None:
        try:
            layer = viewer.layers[box.layer_box.value]
        except (KeyError, ValueError):
            show_error("choose a 3D image or labels layer")
            return
        spacing = box.voxel.value or None

        def run() -> LayerData:
            return resample_layer_data(layer, viewer, spacing)

        def done(res: LayerData) -> None:
            viewer._add_layer_from_data(*res)
            show_info(f"{res[1]['name']}: exact on patient axes")

        w = create_worker(run, _progress={"total": 0, "desc": "resampling to patient axes"})
        w.returned.connect(done)
        w.errored.connect(lambda exc: show_error(f"{layer.name}: {exc}"))
        box.worker = w
        w.start()

    return _resample
