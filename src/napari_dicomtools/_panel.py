"""napari adapter: one *DICOM Tools* panel (tabs) holding every tool, sized for 1366x768.

Every tool is still its own entry in *Plugins ▸ DICOM Tools* (the manifest points at the
wrapped functions below) and its own function for scripting (:mod:`._analysis`). The versions
here turn refusals into one-line notifications (:func:`._workspace.user_facing`).
"""

from __future__ import annotations

from . import _analysis as an
from ._workspace import user_facing

# the widget functions as the GUI calls them: refusals -> one plain notification
segment = user_facing(an._segment)
resize = user_facing(an.resize_widget)
normalize = user_facing(an.normalize_widget)
crop = user_facing(an.crop_widget)
equalize = user_facing(an.equalize_widget)
denoise = user_facing(an.denoise_widget)
shapes_to_labels = user_facing(an.shapes_to_labels_widget)
augment = user_facing(an.augment_widget)
export_dataset = user_facing(an.export_dataset_widget)


def _cancellable(fn):
    """A magicgui form of ``fn`` (which returns a worker) with a Cancel button."""
    from magicgui import magicgui

    w = magicgui(fn)
    an._add_cancel_button(w)
    return w


def segment_widget():
    """The segmentation form with a Cancel button (Plugins menu entry)."""
    return _cancellable(segment)


def denoise_widget():
    """The denoising form with a Cancel button (Plugins menu entry)."""
    return _cancellable(denoise)


def _form(fn, **options):
    from magicgui import magicgui

    return magicgui(fn, **options)


def _scrolled(*widgets):
    """A scroll area holding ``widgets`` stacked (each a QWidget or magicgui widget), that
    scrolls down but fits the dock's width: labels wrap their text (a status line naming
    two layers is wider than a laptop's dock), drop-downs do not grow with the longest
    layer name, and tables scroll inside themselves instead of widening the panel."""
    from qtpy.QtWidgets import (
        QAbstractItemView,
        QAbstractScrollArea,
        QComboBox,
        QFrame,
        QLabel,
        QScrollArea,
        QSizePolicy,
        QVBoxLayout,
        QWidget,
    )

    inner = QWidget()
    lay = QVBoxLayout(inner)
    for w in widgets:
        lay.addWidget(getattr(w, "native", w))
    lay.addStretch(1)
    for label in inner.findChildren(QLabel):
        label.setWordWrap(True)
        if label.minimumWidth():
            # magicgui widens every label of a form to its longest ("Brightness (±
            # fraction of range)"): wrapped, two lines of a narrower column fit
            label.setMinimumWidth(min(label.minimumWidth(), 120))
        else:  # a status line: as wide as the dock, on as many lines as it needs
            label.setMinimumWidth(1)
    for combo in inner.findChildren(QComboBox):  # a long layer name shows in its list
        combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(10)
    for view in inner.findChildren(QAbstractItemView):
        view.setSizeAdjustPolicy(QAbstractScrollArea.SizeAdjustPolicy.AdjustIgnored)
        policy = view.sizePolicy()
        policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
        view.setSizePolicy(policy)
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setWidget(inner)
    return area


def _toolbox(items):
    from qtpy.QtWidgets import QToolBox

    box = QToolBox()
    for title, w in items:
        box.addItem(_scrolled(w), title)
    return box


def make_view_tools(viewer):
    """Window presets, 3D rendering presets and 4D (extract time point, cine)."""
    from magicgui.widgets import ComboBox, Container, FloatSpinBox, PushButton
    from napari.utils.notifications import show_info, show_warning

    from . import _workspace as ws

    presets = ComboBox(label="Window", choices=list(ws.PRESET_KEYS.values()))
    apply_w = PushButton(text="Apply window (F1..F9)")
    render = ComboBox(label="3D preset", choices=list(ws.RENDER_PRESETS))
    go3d = PushButton(text="Render in 3D")
    back2d = PushButton(text="Back to 2D")
    extract = PushButton(text="Extract time point (4D)")
    fps = FloatSpinBox(label="Cine (frames/s)", value=10.0, min=0.5, max=100.0)
    play = PushButton(text="Play")
    stop = PushButton(text="Stop")
    default = PushButton(text="Always open DICOM with DICOM Tools")
    default.tooltip = ("Open DICOM files, zip archives, DICOMDIRs and folders with DICOM Tools "
                       "without asking which reader (Preferences > Plugins to change)")
    box = Container(widgets=[presets, apply_w, render, go3d, back2d, extract, fps, play, stop,
                             default])

    def active_image():
        layer = viewer.layers.selection.active
        if layer is None or layer._type_string != "image":
            raise ValueError("Select an image layer")
        return layer

    @user_facing
    def _apply() -> None:
        c, w = ws.apply_preset(active_image(), presets.value)
        show_info(f"window {presets.value}: W {w:.0f} / L {c:.0f}")

    @user_facing
    def _render() -> None:
        ws.render_3d(viewer, active_image(), render.value)

    @user_facing
    def _extract() -> None:
        data, kwargs, kind = ws.extract_time_point(viewer, active_image())
        viewer._add_layer_from_data(data, kwargs, kind)
        show_info(f"{kwargs['name']}: extracted")

    @user_facing
    def _play() -> None:
        if viewer.dims.ndim < 3:
            show_warning("Nothing to play: open a 3D or 4D series")
            return
        ws.cine(viewer, fps.value)

    apply_w.clicked.connect(_apply)
    go3d.clicked.connect(_render)
    back2d.clicked.connect(lambda *_: setattr(viewer.dims, "ndisplay", 2))
    extract.clicked.connect(_extract)
    play.clicked.connect(_play)
    stop.clicked.connect(lambda *_: ws.stop_cine(viewer))

    @user_facing
    def _default() -> None:
        ws.make_default_reader()
        show_info("DICOM files, zip archives, DICOMDIRs and folders now open with DICOM "
                  "Tools (Preferences > Plugins to change)")

    default.clicked.connect(_default)
    box.apply_window, box.render, box.extract, box.play = _apply, _render, _extract, _play
    box.presets, box.render_box = presets, render
    return box


def _real(viewer):
    """The viewer behind napari's PublicOnlyProxy (widgets are adapters: they may use it)."""
    return getattr(viewer, "__wrapped__", viewer)


def make_panel(napari_viewer):
    """A ``QTabWidget``: View, Segment, Measure, Process, Annotate, Train; each tab scrolls,
    so the panel fits a 1366x768 screen. ``panel.tools`` maps names to the forms."""
    from qtpy.QtWidgets import QTabWidget

    from ._viewer import install, make_geometry_widget

    viewer = _real(napari_viewer)
    install(viewer)
    tools = {
        "geometry": make_geometry_widget(viewer),
        "view": make_view_tools(viewer),
        "segment": segment_widget(),
        "measure": an.MeasureWidget(viewer),
        "resize": _form(resize),
        "normalize": _form(normalize),
        "crop": _form(crop),
        "equalize": _form(equalize),
        "denoise": denoise_widget(),
        "shapes_to_labels": _form(shapes_to_labels),
        "augment": _form(augment),
        "export_dataset": _form(export_dataset),
    }
    tabs = QTabWidget()
    tabs.setObjectName("DICOM Tools")
    tabs.addTab(_scrolled(tools["geometry"], tools["view"]), "View")
    tabs.addTab(_scrolled(tools["segment"]), "Segment")
    tabs.addTab(_scrolled(tools["measure"]), "Measure")
    tabs.addTab(_toolbox([("Resize", tools["resize"]), ("Normalize", tools["normalize"]),
                          ("Crop", tools["crop"]), ("Equalize histogram", tools["equalize"]),
                          ("Denoise", tools["denoise"])]), "Process")
    from ._objects_dock import DicomObjectExport

    tools["dicom_objects"] = DicomObjectExport(viewer)
    tabs.addTab(_toolbox([("Shapes to labels", tools["shapes_to_labels"]),
                          ("Save as DICOM SEG / RTSTRUCT", tools["dicom_objects"])]),
                "Annotate")
    tabs.addTab(_toolbox([("Augmentation", tools["augment"]),
                          ("Export dataset", tools["export_dataset"])]), "Train")
    tabs.setMinimumWidth(300)
    tabs.tools = tools
    # magicgui forms refresh their layer choices when layers come and go
    for name in ("segment", "resize", "normalize", "crop", "equalize", "denoise",
                 "shapes_to_labels", "augment", "export_dataset"):
        form = tools[name]
        viewer.layers.events.inserted.connect(lambda e, f=form: f.reset_choices())
        viewer.layers.events.removed.connect(lambda e, f=form: f.reset_choices())
    return tabs


def _dock_class(factory, name):
    """A QWidget class whose ``__init__(napari_viewer)`` napari recognises, holding what
    ``factory(viewer)`` builds."""
    from qtpy.QtWidgets import QVBoxLayout, QWidget

    def __init__(self, napari_viewer):  # noqa: N807
        QWidget.__init__(self)
        inner = factory(_real(napari_viewer))
        self.inner = inner
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(getattr(inner, "native", inner))

    return type(name, (QWidget,), {"__init__": __init__, "__doc__": factory.__doc__})


def __getattr__(name):
    # Qt classes are made on first use, so importing this module needs no QApplication
    if name == "DicomToolsPanel":
        return _dock_class(make_panel, name)
    if name == "GeometryDock":
        from ._viewer import make_geometry_widget

        return _dock_class(make_geometry_widget, name)
    raise AttributeError(name)
