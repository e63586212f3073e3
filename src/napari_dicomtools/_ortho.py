"""napari adapter: linked orthogonal views (axial, coronal, sagittal) beside the main canvas.

:func:`show_orthogonal_views` adds a column of two extra canvases to the right of napari's
canvas (in the main window's central layout, so the main canvas is never re-parented). Each
is a napari ``ViewerModel`` + ``QtViewer`` showing copies of the main viewer's image and
labels layers (the copies share the arrays, so nothing is duplicated in memory) in one of the
two planes the main canvas does not show:

* every view is **upright and radiological** by the :mod:`._viewer` conventions (axial
  anterior up, coronal and sagittal superior up, the patient's left on the screen's right,
  sagittal anterior on the left), with its own **orientation letters** and slider;
* the three views share **one position** (the dims point in patient mm): moving a slider in
  any of them moves the crosshair in the others, and a **click** (press and release without
  dragging, so panning still works) on any canvas moves the crosshair there;
* a **crosshair** in every view shows where the other two planes cut it, coloured as in
  3D Slicer (axial red, coronal green, sagittal yellow), each view's title in its colour;
* layer properties (window, colormap, opacity, visibility, data, painting) follow the main
  layers; the status bar reads the voxel, value and LPS mm under the cursor in every view.

This follows napari's own *multiple viewer* example (a ``ViewerModel`` per extra canvas,
synced through events), rather than napari-orthogonal-views, whose side-view camera centre
is computed from step indices without the world offset, so patient-mm data (origins far from
0) end up off-view, and whose axis orders are not our radiological planes.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._viewer import PLANES, current_plane, plane_order, update_orientation

if TYPE_CHECKING:
    from qtpy.QtCore import QObject
    from qtpy.QtWidgets import QLabel, QWidget
    from vispy.scene.visuals import Line

    from ._widgets import Layer, Viewer
    from ._workspace import OrientationLetters

#: a napari mouse-drag callback: ``callback(layer or viewer, event)``, a generator that
#: yields at each mouse event of the drag
DragCallback = Callable[[Any, Any], "Generator[None, None, None] | None"]

#: 3D Slicer's slice colours: a line in one view is the trace of the plane of that colour
PLANE_COLOURS = {"axial": "#f34a33", "coronal": "#6eb04b", "sagittal": "#edd54c"}

#: layer properties copied from a main layer to its copies whenever they change
_SYNCED = ("contrast_limits_range", "contrast_limits", "colormap", "gamma", "opacity",
           "blending", "visible", "interpolation2d", "scale", "translate", "affine",
           "rotate", "shear", "name", "contour", "show_selected_label", "selected_label")

#: pixels the mouse may move between press and release for a click (more is a pan)
_CLICK_PIXELS = 4.0


def _copy_layer(layer: Layer) -> Layer:
    """A layer showing the same array (no copy) with the same look and metadata."""
    from napari.layers import Layer

    data, state, kind = layer.as_layer_data_tuple()
    return Layer.create(data, dict(state), kind)


def _always() -> bool:
    return True


def _click_callback(on_click: Callable[[Any], None],
                    enabled: Callable[[], bool] = _always) -> DragCallback:
    """A napari mouse-drag callback calling ``on_click(event)`` on a left click that did not
    drag (so a left-drag still pans)."""

    def click(_source: object, event: Any) -> Generator[None, None, None]:
        if getattr(event, "button", None) != 1 or not enabled():
            return
        start = np.asarray(event.pos, float)
        moved = False
        yield
        while event.type == "mouse_move":
            moved = moved or np.hypot(*(np.asarray(event.pos, float) - start)) > _CLICK_PIXELS
            yield
        if not moved:
            on_click(event)

    return click


class Crosshair:
    """Two lines on a napari canvas through the shared point, one per other plane."""

    def __init__(self, model: Viewer, canvas: Any) -> None:
        from vispy.scene.visuals import Line

        self._model = weakref.ref(model)
        self.lines: list[Line] = []
        for _ in range(2):
            line = Line(pos=np.zeros((2, 2), np.float32), width=1.5, parent=canvas.view.scene,
                        method="gl")
            line.order = 10_000  # above the layers
            line.set_gl_state("translucent", depth_test=False)
            self.lines.append(line)
        #: plane -> (2, 2) world (h, v) end points, for tests
        self.positions: dict[str, np.ndarray[Any, np.dtype[np.float32]]] = {}
        self.update()

    def update(self, event: object = None) -> None:
        model = self._model()
        if model is None:
            return
        ndim = model.dims.ndim
        visible = model.dims.ndisplay == 2 and ndim >= 3
        self.positions = {}
        if visible:
            point = np.asarray(model.dims.point, float)
            v, h = model.dims.order[-2:]
            (v0, v1), (h0, h1) = (model.dims.range[v][:2], model.dims.range[h][:2])
            for line, axis, ends in ((self.lines[0], v, [[h0, point[v]], [h1, point[v]]]),
                                     (self.lines[1], h, [[point[h], v0], [point[h], v1]])):
                plane = PLANES[axis - (ndim - 3)]
                pos = np.asarray(ends, np.float32)
                line.set_data(pos=pos, color=PLANE_COLOURS[plane])
                self.positions[plane] = pos
        for line in self.lines:
            line.visible = visible

    def remove(self) -> None:
        for line in self.lines:
            line.parent = None
        self.lines = []


class OrthoViews:
    """The two extra views of one napari viewer; see the module docstring."""

    def __init__(self, viewer: Viewer) -> None:
        from napari._qt.qt_viewer import QtViewer
        from napari.components import ViewerModel
        from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

        from ._workspace import OrientationLetters

        self._viewer = weakref.ref(viewer)
        self._guard = False
        self.copies: list[dict[int, Layer]] = [{}, {}]  # per view: id(main layer) -> copy
        self.planes = self._side_planes(viewer)
        self.models: list[Viewer] = []  # napari ViewerModels
        self.qt_viewers: list[Any] = []  # their napari QtViewers
        self.titles: list[QLabel] = []
        self.letters: list[OrientationLetters] = []
        self.widget: QWidget | None = QWidget()
        self.widget.setObjectName("dicomtools_orthogonal_views")
        column = QVBoxLayout(self.widget)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        for i in range(2):
            model = ViewerModel(title=f"dicomtools ortho {i}")
            qv = QtViewer(model, show_welcome_screen=False)
            # an explicit minimum: the slider row's hint would widen a 1366 px window
            qv.setMinimumSize(120, 120)
            title = QLabel("")
            column.addWidget(title)
            column.addWidget(qv, 1)
            self.models.append(model)
            self.qt_viewers.append(qv)
            self.titles.append(title)
            model.dims.events.point.connect(self._on_side_point)
            model.mouse_drag_callbacks.append(_click_callback(self._clicked(model)))
            model.events.status.connect(self._on_side_status)
            self.letters.append(OrientationLetters(model, qv.canvas.native))
        main_qv = viewer.window._qt_viewer
        self.crosshairs = [Crosshair(viewer, main_qv.canvas)] + [
            Crosshair(m, qv.canvas) for m, qv in zip(self.models, self.qt_viewers, strict=True)]
        self._main_click: DragCallback | None = _click_callback(self._clicked(viewer),
                                                                self._main_click_enabled)
        viewer.mouse_drag_callbacks.append(self._main_click)
        self._connections = [
            (viewer.layers.events.inserted, self._sync_layers),
            (viewer.layers.events.removed, self._sync_layers),
            (viewer.layers.events.moved, self._sync_layers),
            (viewer.layers.selection.events.active, self._sync_active),
            (viewer.dims.events.point, self._on_main_point),
            (viewer.dims.events.order, self._on_main_order),
            (viewer.dims.events.ndisplay, self._on_main_order),
        ]
        for emitter, handler in self._connections:
            emitter.connect(handler)
        self._sync_layers()
        central = viewer.window._qt_window.centralWidget().layout()
        central.addWidget(self.widget)
        central.setStretch(0, 2)
        central.setStretch(1, 1)
        self._close_filter = _CloseFilter(self, viewer.window._qt_window)
        viewer.window._qt_window.installEventFilter(self._close_filter)
        # the canvases get their sizes once Qt lays the column out: fit the views then
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, self.reset_views)

    def reset_views(self) -> None:
        """Fit every view (main and side) to the data, keeping the shared point."""
        viewer = self.viewer
        if viewer is None or not self.models:
            return
        viewer.reset_view()
        for model in self.models:
            model.reset_view()

    @property
    def viewer(self) -> Viewer | None:
        """The main viewer (None once it is gone: held weakly)."""
        return self._viewer()

    # ------------------------------------------------------------------- planes
    @staticmethod
    def _side_planes(viewer: Viewer, previous: Sequence[str] = ("coronal", "sagittal")
                     ) -> tuple[str, ...]:
        main = current_plane(viewer)
        if main is None:
            return tuple(previous)
        return tuple(p for p in PLANES if p != main)

    def _arrange(self, reset: bool = False) -> None:
        """Each side view in its plane, upright and radiological; titles in plane colours."""
        viewer = self.viewer
        for model, plane, title, letters, cross in zip(self.models, self.planes, self.titles,
                                                        self.letters, self.crosshairs[1:], strict=True):
            title.setText(plane.capitalize())
            title.setStyleSheet(f"color: {PLANE_COLOURS[plane]}; font-weight: bold;"
                                " padding-left: 4px;")
            ndim = model.dims.ndim
            if ndim >= 3:
                order = plane_order(ndim, plane)
                if tuple(model.dims.order) != order:
                    model.dims.order = order
                    reset = True
                update_orientation(model)
                if reset:
                    model.reset_view()
            letters.update()
            cross.update()
        if viewer is not None:
            self.crosshairs[0].update()

    def _on_main_order(self, event: object = None) -> None:
        viewer = self.viewer
        if viewer is None:
            return
        planes = self._side_planes(viewer, self.planes)
        changed = planes != self.planes
        self.planes = planes
        self._arrange(reset=changed)

    # ------------------------------------------------------------------- layers
    def _sync_layers(self, event: object = None) -> None:
        viewer = self.viewer
        if viewer is None:
            return
        wanted = [lay for lay in viewer.layers if lay._type_string in ("image", "labels")]
        ids = {id(lay) for lay in wanted}
        for model, copies in zip(self.models, self.copies, strict=True):
            for key in [k for k in copies if k not in ids]:
                copy = copies.pop(key)
                if copy in model.layers:
                    model.layers.remove(copy)
            for lay in wanted:
                if id(lay) not in copies:
                    copies[id(lay)] = self._adopt(lay, model)
            for target, lay in enumerate(wanted):  # same stacking order as the main list
                current = model.layers.index(copies[id(lay)])
                if current != target:
                    model.layers.move(current, target)
        self._sync_active()
        self._on_main_point()
        self._arrange(reset=True)

    def _adopt(self, layer: Layer, model: Viewer) -> Layer:
        from ._viewer import _wrap_status
        from ._workspace import window_level_drag

        if model is self.models[0] and hasattr(layer.data, "compute"):
            from napari.utils.notifications import show_info

            show_info(f"{layer.name} is read lazily (large series): the side views decode "
                      "every slice the first time they show it, which can take a while")
        copy = _copy_layer(layer)
        if "grid" in copy.metadata:
            _wrap_status(copy)
        if window_level_drag in layer.mouse_drag_callbacks:
            # right-drag in a side view windows the main layer (the copies follow it)
            def window_level(_copy: Layer, event: Any) -> Generator[None, None, None]:
                return window_level_drag(layer, event)

            copy.mouse_drag_callbacks.append(window_level)
        model.layers.append(copy)
        ref = weakref.ref(copy)

        def forward(event: object, name: str) -> None:
            c = ref()
            if c is None or c not in model.layers:
                return
            value = getattr(layer, name)
            try:
                if not np.array_equal(np.asarray(getattr(c, name), dtype=object),
                                      np.asarray(value, dtype=object)):
                    setattr(c, name, value)
            except Exception:  # noqa: BLE001 - a cosmetic property must not break the view
                setattr(c, name, value)
            if name in ("scale", "translate", "affine"):
                self._on_main_point()
                self._arrange(reset=False)

        def data(event: object = None) -> None:
            c = ref()
            if c is None or c not in model.layers:
                return
            if c.data is not layer.data:
                c.data = layer.data
            else:  # painted in place: the same array, new values
                c.refresh()

        for name in _SYNCED:
            emitter = getattr(layer.events, name, None)
            if emitter is not None and hasattr(copy, name):
                emitter.connect(lambda e, n=name: forward(e, n))
        for name in ("data", "paint", "labels_update"):
            emitter = getattr(layer.events, name, None)
            if emitter is not None:
                emitter.connect(data)
        return copy

    def _sync_active(self, event: object = None) -> None:
        viewer = self.viewer
        if viewer is None:
            return
        active = viewer.layers.selection.active
        for model, copies in zip(self.models, self.copies, strict=True):
            copy = copies.get(id(active)) if active is not None else None
            if copy is not None and model.layers.selection.active is not copy:
                model.layers.selection.active = copy

    # ------------------------------------------------------------------- position
    def _push(self, source_dims: Any, targets: Sequence[Any]) -> None:
        if self._guard:
            return
        self._guard = True
        try:
            point = tuple(float(v) for v in source_dims.point)
            for dims in targets:
                if dims.ndim == len(point) and not np.allclose(dims.point, point):
                    dims.set_point(range(len(point)), point)
        finally:
            self._guard = False
        for cross in self.crosshairs:
            cross.update()

    def _on_main_point(self, event: object = None) -> None:
        viewer = self.viewer
        if viewer is not None:
            self._push(viewer.dims, [m.dims for m in self.models])

    def _on_side_point(self, event: Any = None) -> None:
        viewer = self.viewer
        if viewer is None or self._guard:
            return
        source = event.source if event is not None else self.models[0].dims
        self._push(source, [viewer.dims] + [m.dims for m in self.models if m.dims is not source])

    def _clicked(self, model: Viewer) -> Callable[[Any], None]:
        ref = weakref.ref(model)

        def on_click(event: Any) -> None:
            m = ref()
            if m is None:
                return
            pos = np.asarray(event.position, float)
            displayed = list(event.dims_displayed)
            if len(pos) != m.dims.ndim or len(displayed) != 2:
                return  # a click in 3D has no single point
            m.dims.set_point(displayed, [float(pos[a]) for a in displayed])
            if m is self.viewer:
                self._on_main_point()

        return on_click

    def _main_click_enabled(self) -> bool:
        """Clicks on the main canvas move the crosshair only in pan/zoom mode (never while
        painting, drawing or picking)."""
        viewer = self.viewer
        active = viewer.layers.selection.active if viewer is not None else None
        return str(getattr(active, "mode", "pan_zoom")) == "pan_zoom"

    def _on_side_status(self, event: Any) -> None:
        viewer = self.viewer
        if viewer is not None:
            viewer.status = event.value

    # ------------------------------------------------------------------- teardown
    def close(self) -> None:
        """Remove the views, their crosshairs and every connection."""
        viewer = self.viewer
        if viewer is not None:
            for emitter, handler in self._connections:
                emitter.disconnect(handler)
            if self._main_click in viewer.mouse_drag_callbacks:
                viewer.mouse_drag_callbacks.remove(self._main_click)
            window = getattr(viewer, "window", None)
            if window is not None and getattr(window, "_dicomtools_ortho", None) is self:
                window._dicomtools_ortho = None
            qwin = getattr(window, "_qt_window", None)
            if qwin is not None:
                qwin.removeEventFilter(self._close_filter)
                central = qwin.centralWidget().layout()
                central.removeWidget(self.widget)
                central.setStretch(0, 1)
        for cross in self.crosshairs:
            cross.remove()
        for model in self.models:
            model.dims.events.point.disconnect(self._on_side_point)
            model.events.status.disconnect(self._on_side_status)
            model.mouse_drag_callbacks.clear()
            model.layers.clear()
        for qv in self.qt_viewers:
            qv.close()
        if self.widget is not None:
            self.widget.hide()
            self.widget.deleteLater()  # with its children, once Qt is back in its event loop
        self.widget = None
        self.models, self.qt_viewers, self.crosshairs, self.copies = [], [], [], []
        self.letters, self.titles, self._connections = [], [], []
        self._main_click = None


def _CloseFilter(ortho: OrthoViews, parent: QObject) -> QObject:  # noqa: N802
    """The event filter that closes ``ortho`` when its window closes (a QObject factory:
    Qt is imported only when the views are shown)."""
    from qtpy.QtCore import QEvent, QObject

    ref = weakref.ref(ortho)

    class Filter(QObject):
        def eventFilter(self, obj: QObject | None, ev: QEvent | None) -> bool:  # noqa: N802
            views = ref()
            if ev is not None and ev.type() == QEvent.Type.Close and views is not None:
                views.close()
            return False

    return Filter(parent)


def orthogonal_views(viewer: Viewer) -> OrthoViews | None:
    """The viewer's orthogonal views when shown, else None."""
    viewer = getattr(viewer, "__wrapped__", viewer)
    views: OrthoViews | None = getattr(getattr(viewer, "window", None), "_dicomtools_ortho",
                                       None)
    return views


def show_orthogonal_views(viewer: Viewer, show: bool = True) -> OrthoViews | None:
    """Show (or with ``show=False`` remove) the linked axial/coronal/sagittal views."""
    viewer = getattr(viewer, "__wrapped__", viewer)
    current = orthogonal_views(viewer)
    if not show:
        if current is not None:
            current.close()
        return None
    if current is not None:
        return current
    if viewer.dims.ndim < 3:
        raise ValueError("Open a 3D series first: orthogonal views need a volume")
    ortho = OrthoViews(viewer)
    viewer.window._dicomtools_ortho = ortho
    return ortho
