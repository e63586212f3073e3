"""The reading workspace (issue 14): window/level by mouse and keys, orientation letters, one
panel with every tool, one-line refusals, no lost outputs, 3D/4D helpers."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import write_4d
from qtpy.QtCore import QEvent, QPointF, Qt
from qtpy.QtGui import QMouseEvent
from qtpy.QtWidgets import QApplication, QScrollArea

from napari_dicomtools._viewer import camera_of
from napari_dicomtools.core.synthetic import phantom, write_series


def _open(viewer, folder):
    layer = viewer.open(str(folder), plugin="napari-dicomtools")[0]
    QApplication.processEvents()
    return layer


def _notes_since(n0):
    from napari.utils.notifications import notification_manager

    return [str(r.message) for r in notification_manager.records[n0:]]


def _n_notes():
    from napari.utils.notifications import notification_manager

    return len(notification_manager.records)


def _mouse(widget, kind, pos, button, buttons):
    ev = QMouseEvent(kind, QPointF(*pos), button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, ev)
    QApplication.processEvents()


@pytest.fixture
def ct_viewer(make_napari_viewer, tmp_path):
    write_series(tmp_path / "ct", phantom((20, 64, 64)), spacing=(2.0, 0.8, 0.8))
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    layer = _open(viewer, tmp_path / "ct")
    return viewer, layer


def test_right_drag_on_the_canvas_changes_window_and_level(ct_viewer):
    viewer, layer = ct_viewer
    canvas = viewer.window._qt_viewer.canvas.native
    c0, w0 = 40.0, 400.0
    assert tuple(layer.contrast_limits) == (c0 - w0 / 2, c0 + w0 / 2)
    assert layer.colorbar.visible and viewer.canvas.overlays["scale_bar"].visible
    # the slider's range is the data range, not the DICOM window
    assert layer.contrast_limits_range[0] <= -1000 and layer.contrast_limits_range[1] >= 1000
    x, y = canvas.width() // 2, canvas.height() // 2
    right = Qt.MouseButton.RightButton
    _mouse(canvas, QEvent.Type.MouseButtonPress, (x, y), right, right)
    for k in range(1, 11):  # drag right (wider) and down (higher level)
        _mouse(canvas, QEvent.Type.MouseMove, (x + 10 * k, y + 5 * k), Qt.MouseButton.NoButton,
               right)
    _mouse(canvas, QEvent.Type.MouseButtonRelease, (x + 100, y + 50), right,
           Qt.MouseButton.NoButton)
    lo, hi = layer.contrast_limits
    center, width = (lo + hi) / 2, hi - lo
    assert width > w0 + 100 and center > c0 + 50
    # a left drag pans: the window stays
    before = tuple(layer.contrast_limits)
    left = Qt.MouseButton.LeftButton
    _mouse(canvas, QEvent.Type.MouseButtonPress, (x, y), left, left)
    _mouse(canvas, QEvent.Type.MouseMove, (x + 50, y + 50), Qt.MouseButton.NoButton, left)
    _mouse(canvas, QEvent.Type.MouseButtonRelease, (x + 50, y + 50), left,
           Qt.MouseButton.NoButton)
    assert tuple(layer.contrast_limits) == before
    # and the status bar tells the window
    status = layer.get_status(viewer.dims.point, world=True)
    text = status["coordinates"] if isinstance(status, dict) else status
    assert f"W/L {width:.0f}/{center:.0f}" in text


@pytest.mark.parametrize(("key", "window"), [("4", (-600.0, 1500.0)), ("8", (400.0, 1800.0))])
def test_function_key_applies_a_window_preset(ct_viewer, qtbot, key, window):
    viewer, layer = ct_viewer
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, getattr(Qt.Key, f"Key_F{key}"))
    c, w = window
    assert tuple(layer.contrast_limits) == pytest.approx((c - w / 2, c + w / 2))


def test_orientation_letters_follow_the_plane(ct_viewer):
    from napari_dicomtools._viewer import set_plane

    viewer, _ = ct_viewer
    letters = viewer.window._dicomtools_letters
    assert letters.text() == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    set_plane(viewer, "coronal", keep_cursor=False)
    assert letters.text() == {"top": "S", "bottom": "I", "left": "R", "right": "L"}
    set_plane(viewer, "sagittal", keep_cursor=False)
    assert letters.text() == {"top": "S", "bottom": "I", "left": "A", "right": "P"}
    viewer.dims.ndisplay = 3
    assert not letters.labels["top"].isVisible()


def test_panel_refusals_are_one_line_notifications(make_napari_viewer):
    from napari_dicomtools._panel import crop, resize, segment

    viewer = make_napari_viewer()
    n0 = _n_notes()
    assert resize(None) is not None  # a worker that never runs: nothing added, no traceback
    assert crop(None, None) == []
    segment(None)
    notes = _notes_since(n0)
    assert notes == ["Select an image layer first (open a DICOM series)"] * 3
    assert len(viewer.layers) == 0


def test_4d_refusal_says_what_to_do_and_extract_makes_a_3d_layer(make_napari_viewer, tmp_path):
    from napari_dicomtools._panel import make_view_tools, normalize

    write_4d(tmp_path, [np.full((5, 16, 16), 100 * t, np.int32) for t in range(3)])
    viewer = make_napari_viewer()
    layer = _open(viewer, tmp_path)
    n0 = _n_notes()
    normalize(layer)
    (note,) = _notes_since(n0)
    assert "is 4D: pick a time point with Planes & geometry > Extract time point" in note
    viewer.dims.set_point(0, 2)
    tools = make_view_tools(viewer)
    tools.extract()
    new = viewer.layers[-1]
    assert new.data.ndim == 3 and np.all(np.asarray(new.data) == 200)
    assert new.metadata["series_uid"] == layer.metadata["series_uid"]
    assert new.metadata["grid"] == layer.metadata["grid"]


def test_rerunning_a_widget_never_replaces_its_output(ct_viewer, qtbot):
    from napari_dicomtools._panel import make_panel

    viewer, layer = ct_viewer
    panel = make_panel(viewer)
    viewer.window.add_dock_widget(panel, name="DICOM Tools")
    form = panel.tools["normalize"]
    form.image.value = layer
    form()
    form()
    names = [lay.name for lay in viewer.layers]
    assert names == [layer.name, f"{layer.name} normalized", f"{layer.name} normalized 2"]
    seg = panel.tools["segment"]
    seg.image.value = layer
    for _ in range(2):
        seg.method.value = "manual HU range"
        seg.lower_hu.value = -950.0  # the full HU range is typeable
        seg.upper_hu.value = 3000.0
        n = len(viewer.layers)
        seg()
        qtbot.waitUntil(lambda n=n: len(viewer.layers) > n, timeout=20000)
    assert seg.lower_hu.value == -950.0 and seg.upper_hu.value == 3000.0
    assert [lay.name for lay in viewer.layers][-2:] == [
        f"{layer.name} segmentation", f"{layer.name} segmentation 2"]


@pytest.mark.parametrize("preset", ["bone", "skin", "vessels (MIP)",
                                    "soft tissue (attenuated MIP)"])
def test_3d_presets_render(ct_viewer, preset):
    from napari_dicomtools._workspace import RENDER_PRESETS, render_3d

    viewer, layer = ct_viewer
    render_3d(viewer, layer, preset)
    p = RENDER_PRESETS[preset]
    assert viewer.dims.ndisplay == 3 and str(layer.rendering) == p["rendering"]
    if "iso_threshold" in p:
        assert layer.iso_threshold == p["iso_threshold"]
    else:
        assert tuple(layer.contrast_limits) == pytest.approx(p["contrast_limits"])
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot[..., :3].max() > 100  # something is drawn


def test_cine_plays_the_slices_and_stops(ct_viewer, qtbot):
    from napari_dicomtools._workspace import cine, stop_cine

    viewer, _ = ct_viewer
    slider = viewer.dims.order[-3]
    start = viewer.dims.current_step[slider]
    cine(viewer, 20.0)
    qtbot.waitUntil(lambda: viewer.dims.current_step[slider] != start, timeout=5000)
    assert viewer.window._qt_viewer.dims.is_playing
    stop_cine(viewer)
    qtbot.waitUntil(lambda: not viewer.window._qt_viewer.dims.is_playing, timeout=5000)


def test_workspace_fits_1366x768_and_is_shown(ct_viewer):
    from napari_dicomtools._panel import make_panel

    viewer, layer = ct_viewer
    panel = make_panel(viewer)
    viewer.window.add_dock_widget(panel, name="DICOM Tools", area="right")
    QApplication.processEvents()
    win = viewer.window._qt_window
    assert win.height() <= 768 and win.width() <= 1366
    assert panel.count() == 6
    # a measurement whose status line names two long layer names
    layer.name = "3 Synthetic phantom with a long series description"
    labels = viewer.add_labels((np.asarray(layer.data) > 0).astype(np.uint8),
                               name=f"{layer.name} segmentation", scale=layer.scale,
                               translate=layer.translate, metadata=dict(layer.metadata))
    measure = panel.tools["measure"].container
    measure.reset_choices()
    measure.labels_box.value, measure.image_box.value = labels.name, layer.name
    measure.measure()
    assert measure.rows
    for i in range(panel.count()):  # every tab, and every page of a tab's tool box
        panel.setCurrentIndex(i)
        tab = panel.currentWidget()
        pages = [tab] if isinstance(tab, QScrollArea) else \
            [tab.widget(k) for k in range(tab.count())]
        for k, page in enumerate(pages):
            if not isinstance(tab, QScrollArea):
                tab.setCurrentIndex(k)
            QApplication.processEvents()
            # the tab fits the dock's width: nothing to scroll sideways to
            assert page.horizontalScrollBar().maximum() == 0, (panel.tabText(i), k)
    folder = os.environ.get("NAPARI_DICOMTOOLS_SCREENSHOTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        viewer.dims.set_point(0, float(np.mean(viewer.dims.range[0][:2])))
        win.grab().save(os.path.join(folder, "workspace.png"))


def test_measurement_table_clears_on_error_and_csv_asks_before_overwriting(ct_viewer,
                                                                           tmp_path):
    from napari_dicomtools._analysis import MeasureWidget

    viewer, layer = ct_viewer
    viewer.add_labels((np.asarray(layer.data) > 200).astype(np.uint8), scale=layer.scale,
                      translate=layer.translate, name="bone")
    dock = MeasureWidget(viewer)
    w = dock.container
    w.labels_box.value = "bone"
    w.measure()
    assert w.rows and w.source_label.value.startswith("1 row(s) from bone")
    n0 = _n_notes()
    w.source_box.value = "shapes layer ROIs"
    w.image_box.value = "(none)"
    w.measure()
    assert w.rows == [] and w.table.data.to_list() == [] and w.source_label.value == ""
    assert _notes_since(n0) == ["ROI statistics need an image layer: choose one"]
    w.source_box.value = "labels layer"
    w.measure()
    out = tmp_path / "m.csv"
    out.write_text("keep me")
    w[-2].value = str(out)  # the CSV path field
    asked = []
    w.confirm_overwrite = lambda p: asked.append(p) or False
    w.save()
    assert asked == [str(out)] and out.read_text() == "keep me"
    w.confirm_overwrite = lambda p: True
    w.save()
    assert out.read_text().startswith("label,")


def test_default_reader_covers_folders(make_napari_viewer, tmp_path, monkeypatch):
    from napari.plugins.utils import get_preferred_reader
    from napari.settings import get_settings

    from napari_dicomtools._workspace import make_default_reader

    viewer = make_napari_viewer()  # (its fixture gives fresh settings)
    monkeypatch.setattr(get_settings().plugins, "extension2reader", {})
    write_series(tmp_path / "study" / "ct", phantom((4, 16, 16)))
    make_default_reader()
    assert get_preferred_reader(str(tmp_path / "study")) == "napari-dicomtools"
    assert get_preferred_reader(str(tmp_path / "a.dcm")) == "napari-dicomtools"
    viewer.open(str(tmp_path / "study"), plugin=None)  # as a drop: the preference decides
    assert len(viewer.layers) == 1 and "grid" in viewer.layers[0].metadata


def test_writer_refusal_names_the_reason(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8, 3), np.uint8), rgb=True, name="photo")
    n0 = _n_notes()
    try:  # napari may or may not re-raise; the user must read the reason either way
        viewer.layers.save(str(tmp_path / "x.nii.gz"), plugin="napari-dicomtools")
    except Exception:  # noqa: BLE001
        pass
    assert not (tmp_path / "x.nii.gz").exists()
    notes = _notes_since(n0)
    assert any(n.startswith("Not saved:") and "RGB layers cannot be saved as NIfTI" in n
               for n in notes), notes


def test_scripted_session_every_tool_twice_loses_nothing(make_napari_viewer, tmp_path, qtbot):
    """Open a study, then run every tool of the panel twice the way a click does: each run
    adds its own layer, nothing is replaced, no error notification, no traceback."""
    from napari.utils.notifications import NotificationSeverity, notification_manager

    from napari_dicomtools._panel import make_panel

    write_series(tmp_path / "study" / "ax", phantom((16, 48, 48)), spacing=(2.0, 0.8, 0.8),
                 series_number=3)
    write_series(tmp_path / "study" / "sag", phantom((12, 40, 36)), series_number=4,
                 orientation=(0, 1, 0, 0, 0, -1))
    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path / "study"), plugin="napari-dicomtools")
    assert len(layers) == 2
    panel = make_panel(viewer)
    viewer.window.add_dock_widget(panel, name="DICOM Tools")
    t = panel.tools
    n0 = len(notification_manager.records)
    image = layers[0]

    def run_twice(form, **values):
        for _ in range(2):
            before = len(viewer.layers)
            for k, v in values.items():
                form[k].value = v
            form()
            qtbot.waitUntil(lambda b=before: len(viewer.layers) > b, timeout=30000)

    run_twice(t["segment"], image=image, method="Otsu")
    run_twice(t["resize"], image=image, voxel_mm=2.0)
    run_twice(t["normalize"], image=image)
    run_twice(t["equalize"], image=image)
    run_twice(t["denoise"], image=image, method="median")
    z, y, x = (np.asarray(image.extent.world).mean(axis=0))
    shapes = viewer.add_shapes([np.array([[z, y - 10, x - 10], [z, y + 10, x - 10],
                                          [z, y + 10, x + 10], [z, y - 10, x + 10]])],
                               shape_type="rectangle", units=image.units)
    run_twice(t["crop"], image=image, roi=shapes)
    run_twice(t["shapes_to_labels"], image=image, shapes=shapes)
    run_twice(t["augment"], image=image, labels=None, samples=2)
    labels = next(lay for lay in viewer.layers if lay.name == f"{image.name} segmentation")
    m = t["measure"].container
    m.labels_box.value = labels.name
    m.image_box.value = image.name
    m.measure()
    assert m.rows
    for k in range(2):
        viewer.layers.selection = {image}
        t["export_dataset"].output_folder.value = tmp_path / f"ds{k}"
        t["export_dataset"]()
        assert (tmp_path / f"ds{k}").exists()
    names = [lay.name for lay in viewer.layers]
    assert len(names) == len(set(names))  # nothing replaced
    assert len(names) == 2 + 2 * 8 + 1
    bad = [r for r in notification_manager.records[n0:]
           if r.severity >= NotificationSeverity.WARNING]
    assert not bad, [str(r.message) for r in bad]


def test_median_denoise_shows_progress_and_cancels_within_a_second(make_napari_viewer,
                                                                  tmp_path, qtbot):
    import time

    from napari_dicomtools._panel import denoise_widget

    write_series(tmp_path / "ct", phantom((64, 128, 128)), spacing=(1.0, 0.8, 0.8))
    viewer = make_napari_viewer()
    layer = _open(viewer, tmp_path / "ct")
    form = denoise_widget()
    viewer.window.add_dock_widget(form)
    form.image.value = layer
    form.method.value = "median"
    form.median_size_mm.value = 6.0  # a slow filter: 7x7x7 voxels
    form()
    worker = form.worker
    qtbot.waitUntil(lambda: worker.is_running, timeout=5000)
    t0 = time.perf_counter()
    form.cancel_button.clicked.emit()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=5000)
    assert time.perf_counter() - t0 < 1.5
    QApplication.processEvents()
    assert len(viewer.layers) == 1  # cancelled: no half-made layer


def test_dropping_many_dicom_files_opens_series_not_one_layer_per_file(make_napari_viewer,
                                                                      tmp_path):
    from qtpy.QtCore import QMimeData, QUrl
    from qtpy.QtGui import QDropEvent

    a = write_series(tmp_path / "a", phantom((6, 16, 16)), series_number=3)
    b = write_series(tmp_path / "b", phantom((5, 16, 16)), series_number=4)
    viewer = make_napari_viewer(show=True)
    from napari_dicomtools._viewer import install

    install(viewer)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(f) for f in a.files + b.files])
    target = viewer.window._qt_viewer
    ev = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                    Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    target.dropEvent(ev)  # what Qt calls when the files are released over the viewer
    QApplication.processEvents()
    assert sorted(lay.data.shape[0] for lay in viewer.layers) == [5, 6]  # two series


def test_browser_cancels_and_centres_on_the_first_opened_series(make_napari_viewer, tmp_path,
                                                               qtbot):
    from napari_dicomtools._widgets import DicomBrowser

    write_series(tmp_path / "s" / "a", phantom((6, 32, 32)), series_number=3,
                 origin=(-38.0, -38.0, -60.0))
    write_series(tmp_path / "s" / "b", phantom((6, 32, 32)), series_number=4,
                 origin=(200.0, 200.0, 300.0))  # far away: the view must not split them
    viewer = make_napari_viewer()
    w = DicomBrowser(viewer)
    w.scan(str(tmp_path / "s"))
    qtbot.waitUntil(lambda: len(w.series) == 2 and not w.cancel_button.isEnabled(),
                    timeout=20000)
    w.open_selected(list(w.series))
    qtbot.waitUntil(lambda: len(viewer.layers) == 2 and not w.cancel_button.isEnabled(),
                    timeout=20000)
    QApplication.processEvents()
    first = viewer.layers[0]  # the first series opened
    assert viewer.layers.selection.active is first
    lo, hi = np.asarray(first.extent.world)
    assert np.allclose(camera_of(viewer).center[-2:], ((lo + hi) / 2)[-2:])
    assert lo[0] <= viewer.dims.point[0] <= hi[0]
    # a scan can be cancelled: the button is live while it runs, the browser idle after
    w.scan(str(tmp_path / "s"))
    assert w.cancel_button.isEnabled()
    w.cancel()
    qtbot.waitUntil(lambda: not w.cancel_button.isEnabled(), timeout=20000)


def test_lazy_layer_is_decoded_in_the_worker_not_the_gui_thread(make_napari_viewer, qtbot):
    """A lazily opened series must not be decoded on the GUI thread by a widget."""
    import threading

    import dask.array as da

    from napari_dicomtools._analysis import _segment

    threads = set()

    def decode(block):
        threads.add(threading.current_thread().name)
        return block

    base = da.from_array(phantom((8, 32, 32)).astype(np.int16), chunks=(1, 32, 32))
    lazy = base.map_blocks(decode, dtype=np.int16)
    viewer = make_napari_viewer()
    layer = viewer.add_image(lazy, scale=(2.0, 0.8, 0.8), contrast_limits=(-160, 240))
    QApplication.processEvents()
    threads.clear()  # napari itself decodes the slice it shows
    import dask

    with dask.config.set(scheduler="synchronous"):  # blocks decode in the calling thread
        worker = _segment(layer, method="Otsu")
        with qtbot.waitSignal(worker.returned, timeout=20000):
            pass
    assert threads and threading.main_thread().name not in threads


def test_every_numeric_field_is_labelled_with_its_unit_and_takes_its_full_range(
        make_napari_viewer):
    """Fields read as a clinician reads them (no raw parameter names), and HU fields take a
    lung range and metal."""
    from magicgui.widgets.bases import RangedWidget

    from napari_dicomtools._panel import make_panel

    viewer = make_napari_viewer()
    panel = make_panel(viewer)
    raw = []
    for name, form in panel.tools.items():
        for w in getattr(form, "__iter__", lambda: iter(()))():
            if isinstance(w, RangedWidget) and w.label in (w.name, w.name.replace("_", " ")):
                raw.append(f"{name}.{w.name}")
    assert raw == []
    seg = panel.tools["segment"]
    seg.lower_hu.value, seg.upper_hu.value = -950.0, 3000.0
    assert (seg.lower_hu.value, seg.upper_hu.value) == (-950.0, 3000.0)
    assert seg.min_size_mm3.label == "Min. size (mm³)"
    assert panel.tools["augment"].max_angle_deg.label == "Max. rotation (°)"
