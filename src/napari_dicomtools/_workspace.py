"""napari adapter: the reading workspace around DICOM layers.

* **Window/level by mouse**: right-drag on the canvas over an image layer (horizontal =
  width, vertical = level, as OHIF, Horos and 3D Slicer do); the current W/L is in the status
  bar. **Presets** on F1..F9 (layout-independent keys) and in the panel (:data:`PRESET_KEYS`); MR and other
  non-HU images get a percentile window. The contrast slider's range is the data range, the
  DICOM window only the starting limits.
* **Orientation letters** (A/P, R/L, S/I) at the canvas edges, following the displayed plane
  and camera orientation; the scale bar (mm) is switched on for DICOM layers.
* **3D presets** for CT (bone and skin surfaces, vessel MIP) and **4D** helpers (extract the
  current time point as a 3D layer, cine at a chosen rate).
* :func:`user_facing`: a widget's refusal becomes one plain notification that says what to do,
  never a traceback.
"""

from __future__ import annotations

import functools
import logging
import weakref
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, ParamSpec, TypedDict, TypeVar

import numpy as np

from .core.errors import DicomToolsError
from .core.grid import GRID_KEY
from .core.png import WINDOW_PRESETS

if TYPE_CHECKING:
    from qtpy.QtCore import QObject
    from qtpy.QtWidgets import QLabel, QWidget

    from ._reader import LayerData
    from ._widgets import Layer, Viewer

_P = ParamSpec("_P")
_R = TypeVar("_R")

log = logging.getLogger(__name__)

#: F<key> -> window preset (HU); "auto" is the 1-99 percentile window (MR, PET, ...)
PRESET_KEYS = {"1": "brain", "2": "subdural", "3": "stroke", "4": "lung", "5": "mediastinum",
               "6": "abdomen", "7": "liver", "8": "bone", "9": "auto"}

#: letter of the positive / negative direction of world axes (z, y, x) = LPS (S, P, L)
_POSITIVE = ("S", "P", "L")
_NEGATIVE = ("I", "A", "R")

#: pixels of mouse travel per unit of "sensitivity": a full-window drag spans the data range
_WL_PIXELS = 600.0


# ------------------------------------------------------------------------------- messages


def user_facing(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Turn a widget function's refusals into one-line notifications.

    ``ValueError``/``KeyError``/``DicomToolsError`` raised by ``fn`` (bad or missing input) are
    shown as a warning whose text is the message itself, and the widget returns nothing;
    anything else is logged with its traceback and shown short. The wrapped function keeps
    its signature, so magicgui builds the same form.
    """
    import inspect

    ret = inspect.signature(fn).return_annotation

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        from napari.utils.notifications import show_error, show_warning

        try:
            return fn(*args, **kwargs)
        except (ValueError, KeyError, DicomToolsError) as exc:
            msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            show_warning(str(msg).strip() or type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - shown short, logged in full
            log.exception("%s failed", fn.__name__)
            show_error(f"{fn.__name__.strip('_').replace('_', ' ')} failed: {exc}")
        nothing: _R = _nothing(ret)  # of the kind the annotation names (see _nothing)
        return nothing

    return wrapper


def _nothing(return_annotation: object) -> Any:
    """What a widget returns when it refused: nothing for napari to add (of the kind its
    return annotation names: a worker never started, an empty list, or None)."""
    text = str(return_annotation)
    if "FunctionWorker" in text:
        from napari.qt.threading import FunctionWorker

        return FunctionWorker(lambda: None)  # never started: never emits
    if "LayerDataTuple" in text:
        return []
    return None


def unique_name(viewer: Viewer | None, name: str) -> str:
    """``name``, or ``name 2``, ``name 3``... so a re-run never replaces an earlier output."""
    if viewer is None:
        return name
    taken = {lay.name for lay in viewer.layers}
    if name not in taken:
        return name
    k = 2
    while f"{name} {k}" in taken:
        k += 1
    return f"{name} {k}"


# ---------------------------------------------------------------------------- window/level


def window_of(layer: Layer) -> tuple[float, float]:
    """``(center, width)`` of an image layer's contrast limits."""
    lo, hi = (float(v) for v in layer.contrast_limits)
    return (lo + hi) / 2.0, hi - lo


def set_window(layer: Layer, center: float, width: float) -> None:
    """Apply a window, widening the slider's range if the window reaches beyond it."""
    width = max(float(width), 1e-6)
    lo, hi = center - width / 2.0, center + width / 2.0
    rlo, rhi = (float(v) for v in layer.contrast_limits_range)
    if lo < rlo or hi > rhi:
        layer.contrast_limits_range = (min(lo, rlo), max(hi, rhi))
    layer.contrast_limits = (lo, hi)


def apply_preset(layer: Layer, preset: str) -> tuple[float, float]:
    """Apply a named window (:data:`~napari_dicomtools.core.png.WINDOW_PRESETS`) or
    ``auto`` (1-99 percentiles of the current slice or a sample of the data)."""
    if preset == "auto":
        data = layer.data
        sample = np.asarray(data[tuple(s // 2 for s in data.shape[:-2])]) \
            if data.ndim > 2 else np.asarray(data)
        lo, hi = np.percentile(sample, [1.0, 99.0])
        center, width = float(lo + hi) / 2.0, float(max(hi - lo, 1e-6))
    else:
        if preset not in WINDOW_PRESETS:
            raise ValueError(f"unknown window preset {preset!r}; choose from "
                             f"{', '.join(WINDOW_PRESETS)} or auto")
        center, width = WINDOW_PRESETS[preset]
    set_window(layer, center, width)
    return center, width


def data_range(layer: Layer) -> tuple[float, float]:
    """The layer's value range: the reader's declared range, else computed."""
    vr = layer.metadata.get("value_range")
    if vr is not None and len(vr) == 2 and float(vr[1]) > float(vr[0]):
        return float(vr[0]), float(vr[1])
    lo, hi = (float(v) for v in layer.contrast_limits_range)
    return lo, hi


def window_level_drag(layer: Layer, event: Any) -> Generator[None, None, None]:
    """Mouse-drag callback: right button changes width (x) and level (y)."""
    if getattr(event, "button", None) != 2 or getattr(layer, "rgb", False):
        return
    lo, hi = data_range(layer)
    per_pixel = max(hi - lo, 1.0) / _WL_PIXELS
    start = np.asarray(event.pos, float)
    c0, w0 = window_of(layer)
    yield
    while event.type == "mouse_move":
        dx, dy = np.asarray(event.pos, float) - start
        set_window(layer, c0 + dy * per_pixel, max(w0 + dx * per_pixel, 1.0))
        yield


def window_text(layer: Layer) -> str:
    """``W/L 400/40`` for the status bar."""
    if getattr(layer, "rgb", False) or layer._type_string != "image":
        return ""
    c, w = window_of(layer)
    return f"W/L {w:.0f}/{c:.0f}"


# --------------------------------------------------------------------- orientation letters


def orientation_letters(viewer: Viewer) -> dict[str, str] | None:
    """``{"top", "bottom", "left", "right"}`` letters of the 2D view, or None (3D, 2D data)."""
    ndim = viewer.dims.ndim
    if viewer.dims.ndisplay != 2 or ndim < 3:
        return None
    vertical, horizontal = viewer.dims.order[-2:]
    v, h = vertical - (ndim - 3), horizontal - (ndim - 3)
    if v < 0 or h < 0:
        return None
    from ._viewer import camera_of

    up, right = (str(x) for x in camera_of(viewer).orientation2d)
    # the screen's bottom shows increasing vertical world values when the axis points down
    bottom, top = (_POSITIVE[v], _NEGATIVE[v]) if up == "down" else (_NEGATIVE[v], _POSITIVE[v])
    right_l, left_l = (_POSITIVE[h], _NEGATIVE[h]) if right == "right" else \
        (_NEGATIVE[h], _POSITIVE[h])
    return {"top": top, "bottom": bottom, "left": left_l, "right": right_l}


class OrientationLetters:
    """Four labels at the canvas edges (Qt children of the canvas), kept up to date.

    ``viewer`` is a napari viewer or ``ViewerModel``; ``canvas`` its canvas widget (default:
    the viewer window's)."""

    def __init__(self, viewer: Viewer, canvas: QWidget | None = None) -> None:
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QLabel

        self._viewer = weakref.ref(viewer)
        if canvas is None:
            canvas = viewer.window._qt_viewer.canvas.native
        self.canvas = canvas
        self.labels: dict[str, QLabel] = {}
        for side in ("top", "bottom", "left", "right"):
            lab = QLabel("", canvas)
            lab.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
            lab.setStyleSheet("color: #ffd24d; font-weight: bold; font-size: 15px;"
                              " background: transparent;")
            lab.setAlignment(Qt.AlignmentFlag.AlignCenter)
            lab.resize(24, 24)
            self.labels[side] = lab
        viewer.dims.events.order.connect(self.update)
        viewer.dims.events.ndisplay.connect(self.update)
        from ._viewer import camera_of

        camera_of(viewer).events.orientation.connect(self.update)
        viewer.layers.events.inserted.connect(self.update)
        viewer.layers.events.removed.connect(self.update)
        self._filter = _ResizeFilter(self, canvas)
        canvas.installEventFilter(self._filter)
        self.update()

    def text(self) -> dict[str, str]:
        return {side: lab.text() for side, lab in self.labels.items()}

    def update(self, event: object = None) -> None:
        viewer = self._viewer()
        if viewer is None:
            return
        from ._viewer import has_patient_axes

        letters = orientation_letters(viewer) if any(  # only over patient axes
            GRID_KEY in lay.metadata and has_patient_axes(lay) for lay in viewer.layers) \
            else None
        w, h = self.canvas.width(), self.canvas.height()
        pos = {"top": (w // 2 - 12, 4), "bottom": (w // 2 - 12, h - 28),
               "left": (4, h // 2 - 12), "right": (w - 28, h // 2 - 12)}
        for side, lab in self.labels.items():
            lab.setText("" if letters is None else letters[side])
            lab.move(*pos[side])
            lab.setVisible(letters is not None)
            lab.raise_()


def _ResizeFilter(letters: OrientationLetters, parent: QObject) -> QObject:  # noqa: N802
    """The event filter that places ``letters`` again when ``parent`` is resized (a QObject
    factory: Qt is imported only when a window has letters)."""
    from qtpy.QtCore import QEvent, QObject

    class Filter(QObject):
        def eventFilter(self, obj: QObject | None, ev: QEvent | None) -> bool:  # noqa: N802
            if ev is not None and ev.type() == QEvent.Type.Resize:
                letters.update()
            return False

    return Filter(parent)


# ----------------------------------------------------------------------- layer set-up


def setup_layer(viewer: Viewer, layer: Layer) -> None:
    """Workspace behaviour for one of our image layers (idempotent)."""
    if layer._type_string != "image" or getattr(layer, "_dicomtools_ws", False):
        return
    layer._dicomtools_ws = True
    if not getattr(layer, "rgb", False):
        lo, hi = data_range(layer)
        clo, chi = (float(v) for v in layer.contrast_limits)
        layer.contrast_limits_range = (min(lo, clo), max(hi, chi))
        layer.contrast_limits = (clo, chi)
        layer.mouse_drag_callbacks.append(window_level_drag)
        try:  # the values behind the grey levels (HU for CT), as radiology viewers show
            layer.colorbar.visible = True
        except Exception:  # noqa: BLE001 - cosmetic, older napari
            pass
    try:  # units come from the layers (mm)
        bar = viewer.canvas.overlays["scale_bar"] if hasattr(viewer, "canvas") \
            else viewer.scale_bar
        bar.visible = True
    except Exception:  # noqa: BLE001 - cosmetic
        pass


def setup_viewer(viewer: Viewer) -> None:
    """Keys for presets (F1..F9) and orientation letters (when there is a window)."""
    for key, preset in PRESET_KEYS.items():
        viewer.bind_key(f"F{key}", _preset_key(preset), overwrite=True)
    window = getattr(viewer, "window", None)
    if window is not None and getattr(window, "_qt_viewer", None) is not None:
        if not hasattr(window, "_dicomtools_letters"):
            window._dicomtools_letters = OrientationLetters(viewer)


def _preset_key(preset: str) -> Callable[[Viewer], None]:
    def press(viewer: Viewer) -> None:
        layer = viewer.layers.selection.active
        if layer is not None and layer._type_string == "image" and \
                not getattr(layer, "rgb", False):
            apply_preset(layer, preset)
    press.__name__ = f"window_{preset}"
    press.__doc__ = f"Window preset: {preset}"
    return press


# ------------------------------------------------------------------------------ 3D and 4D

class RenderPreset(TypedDict, total=False):
    """A 3D rendering: napari's ``rendering`` and ``colormap``, and for an iso surface its
    ``iso_threshold``, else the ``contrast_limits`` (HU)."""

    rendering: str
    colormap: str
    iso_threshold: float
    contrast_limits: tuple[float, float]


#: one-click 3D renderings for CT: (rendering, colormap, iso threshold or contrast limits)
RENDER_PRESETS: dict[str, RenderPreset] = {
    "bone": {"rendering": "iso", "colormap": "bone", "iso_threshold": 300.0},
    "skin": {"rendering": "iso", "colormap": "gray", "iso_threshold": -300.0},
    "vessels (MIP)": {"rendering": "mip", "colormap": "magma",
                      "contrast_limits": (100.0, 600.0)},
    "soft tissue (attenuated MIP)": {"rendering": "attenuated_mip", "colormap": "gray",
                                     "contrast_limits": (-160.0, 240.0)},
}


def render_3d(viewer: Viewer, layer: Layer, preset: str) -> None:
    """Show ``layer`` in 3D with a CT rendering preset."""
    if layer is None or layer._type_string != "image" or layer.data.ndim < 3:
        raise ValueError("Select a 3D image layer for 3D rendering")
    p = RENDER_PRESETS[preset]
    viewer.dims.ndisplay = 3
    layer.rendering = p["rendering"]
    layer.colormap = p["colormap"]
    if "iso_threshold" in p:
        layer.iso_threshold = p["iso_threshold"]
    if "contrast_limits" in p:
        lo, hi = p["contrast_limits"]
        set_window(layer, (lo + hi) / 2, hi - lo)


def extract_time_point(viewer: Viewer, layer: Layer, index: int | None = None
                       ) -> LayerData:
    """A ``LayerDataTuple`` of one time point of a 4D layer (default: the one on screen),
    with the layer's true grid and identity."""
    from ._reader import grey_colormap
    from ._viewer import layer_units, provenance

    if layer is None or layer.data.ndim != 4:
        raise ValueError("Select a 4D image layer to extract a time point from")
    if index is None:
        axis = viewer.dims.ndim - layer.ndim  # the layer's first axis in the viewer
        index = int(round(layer.world_to_data(viewer.dims.point)[0])) if axis >= 0 else 0
    n = layer.data.shape[0]
    if not 0 <= index < n:
        raise ValueError(f"time point {index} outside 0..{n - 1}")
    meta = provenance(layer)
    for k in (GRID_KEY, "units", "window", "value_range"):
        if k in layer.metadata:
            meta[k] = layer.metadata[k]
    meta["history"] = list(layer.metadata.get("history", [])) + [
        {"op": "extract_time_point", "source": layer.name, "index": index}]
    meta["derived_from"] = layer.name
    kwargs = {"name": unique_name(viewer, f"{layer.name} t{index}"), "metadata": meta,
              "scale": tuple(layer.scale)[1:], "translate": tuple(layer.translate)[1:],
              "colormap": grey_colormap(meta), "contrast_limits": tuple(layer.contrast_limits),
              "units": layer_units(layer)[1:]}
    return np.asarray(layer.data[index]), kwargs, "image"


def cine(viewer: Viewer, fps: float) -> None:
    """Play the time axis (4D) or the slice axis at ``fps`` frames per second."""
    qt_dims = viewer.window._qt_viewer.dims
    axis = 0 if viewer.dims.ndim >= 4 else viewer.dims.order[-3]
    qt_dims.play(axis=axis, fps=float(fps))


def stop_cine(viewer: Viewer) -> None:
    viewer.window._qt_viewer.dims.stop()


#: what "make DICOM Tools the default reader" sets: DICOM files, zip archives, DICOMDIRs and
#: folders (napari matches a folder as its path with a trailing separator)
DEFAULT_READER_PATTERNS = ("*.dcm", "*.DCM", "*.dicom", "*.ima", "*.IMA", "*.zip",
                           "*DICOMDIR", "*/")


def make_default_reader() -> dict[str, str]:
    """Make napari open DICOM files, zips, DICOMDIRs and dropped folders with this plugin
    without asking (napari's reader preferences; undo in Preferences > Plugins)."""
    from napari.settings import get_settings

    settings = get_settings().plugins
    prefs = dict(settings.extension2reader)
    prefs.update({p: "napari-dicomtools" for p in DEFAULT_READER_PATTERNS})
    settings.extension2reader = prefs
    return prefs
