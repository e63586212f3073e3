"""The viewer tells the truth: every plane upright and radiological, every number and every
file from the true geometry (issue 19).

Each series carries a bright spherical marker at a known LPS position, superior, anterior and
to the patient's left of the volume's centre. Radiological convention puts it upper-right on
an axial view (anterior up, left on the right), upper-right on a coronal view (superior up,
left on the right) and upper-left on a sagittal view (superior up, anterior on the left).
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest
from conftest import write_4d

from napari_dicomtools._viewer import camera_of
from napari_dicomtools.core import geometry
from napari_dicomtools.core.grid import GRID_KEY, Grid, resample_to_patient_axes
from napari_dicomtools.core.synthetic import phantom, write_series

CENTER = np.array([10.0, -20.0, 35.0])  # LPS of the volume's centre
OFFSET = np.array([12.0, -12.0, 10.0])  # left (+x), anterior (-y), superior (+z)
MARKER = CENTER + OFFSET
RADIUS = 6.0  # mm
SHAPE = (24, 48, 48)
SPACING = (2.0, 1.25, 1.25)


def _rot(axis, deg):
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    i, j = [k for k in range(3) if k != axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


_R = _rot(2, 10) @ _rot(0, 20)
CASES = {
    # name: (ImageOrientationPatient, gantry tilt, plane the slider must step through)
    "axial": ((1, 0, 0, 0, 1, 0), 0.0, "axial"),
    "coronal": ((1, 0, 0, 0, 0, -1), 0.0, "coronal"),
    "sagittal": ((0, 1, 0, 0, 0, -1), 0.0, "sagittal"),
    "oblique20": (tuple(_R @ [1, 0, 0]) + tuple(_R @ [0, 1, 0]), 0.0, "axial"),
    "tilted18": ((1, 0, 0, 0, 1, 0), 18.0, "axial"),
}
#: where the marker must appear on screen: (right of centre?, above centre?)
QUADRANT = {"axial": (True, True), "coronal": (True, True), "sagittal": (False, True)}


def marker_series(folder, name):
    """Write the case ``name``; returns (true index->LPS affine of (col,row,slice), values)."""
    iop, tilt, _ = CASES[name]
    r = np.asarray(iop[:3], float)
    c = np.asarray(iop[3:], float)
    r /= np.linalg.norm(r)
    c -= r * (r @ c)
    c /= np.linalg.norm(c)
    dz, dy, dx = SPACING
    step = np.cross(r, c) * dz + c * dz * np.tan(np.radians(tilt))
    a = np.column_stack([r * dx, c * dy, step])
    n, rows, cols = SHAPE
    origin = CENTER - a @ np.array([(cols - 1) / 2, (rows - 1) / 2, (n - 1) / 2])
    k, i, j = np.meshgrid(np.arange(n), np.arange(rows), np.arange(cols), indexing="ij")
    lps = origin + np.stack([j, i, k], -1) @ a.T
    values = np.full(SHAPE, -1000, np.int16)  # air around an ellipsoidal body of 40 HU
    values[np.sum(((lps - CENTER) / [22.0, 20.0, 26.0]) ** 2, axis=-1) <= 1] = 40
    values[np.linalg.norm(lps - MARKER, axis=-1) <= RADIUS] = 1000
    truth = write_series(folder, values, orientation=iop, tilt_deg=tilt, spacing=SPACING,
                         origin=tuple(origin), shuffle=True,
                         description=f"marker {name}", patient=("Marker^Test", f"P-{name}"))
    return truth, values


def _open(viewer, folder):
    from qtpy.QtWidgets import QApplication

    layer = viewer.open(str(folder), plugin="napari-dicomtools")[0]
    QApplication.processEvents()
    return layer


def _show_marker(viewer, layer):
    g = Grid.of_layer(layer.data.shape, layer.scale, layer.translate, layer.metadata)
    world = np.asarray(layer.data_to_world(g.index(MARKER)), float)
    slider = viewer.dims.order[-3]
    viewer.dims.set_point(slider, world[slider])


def _marker_on_screen(viewer):
    """(right of the body's centre?, above it?) for the white marker in a canvas grab."""
    shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    white = np.all(shot > 235, axis=-1)
    lit = shot.max(axis=-1) > 60
    assert white.sum() > 10, "marker not visible"
    my, mx = np.argwhere(white).mean(axis=0)
    cy, cx = np.argwhere(lit).mean(axis=0)
    return mx > cx, my < cy


@pytest.mark.parametrize("name", list(CASES))
def test_series_opens_in_acquisition_plane_upright_radiological(make_napari_viewer, tmp_path,
                                                                 name):
    truth, values = marker_series(tmp_path / name, name)
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    layer = _open(viewer, tmp_path / name)
    plane = CASES[name][2]
    from napari_dicomtools._viewer import current_plane

    assert current_plane(viewer) == plane
    # the slider steps through the acquired slices, one by one
    slider = viewer.dims.order[-3]
    assert viewer.dims.nsteps[slider] == SHAPE[0]
    assert camera_of(viewer).orientation2d[0] == ("down" if plane == "axial" else "up")
    _show_marker(viewer, layer)
    assert _marker_on_screen(viewer) == QUADRANT[plane]
    folder = os.environ.get("NAPARI_DICOMTOOLS_SCREENSHOTS")
    if folder and name in ("sagittal", "oblique20"):
        from qtpy.QtWidgets import QApplication

        from napari_dicomtools._viewer import make_geometry_widget

        viewer.window.add_dock_widget(make_geometry_widget(viewer), name="Planes & geometry")
        QApplication.processEvents()
        os.makedirs(folder, exist_ok=True)
        viewer.window._qt_window.grab().save(os.path.join(folder, f"viewer_{name}.png"))


@pytest.mark.parametrize("plane", ["axial", "coronal", "sagittal"])
def test_every_plane_of_a_volume_is_radiological(make_napari_viewer, tmp_path, plane):
    """One axial series, shown in each plane through the plane buttons' function."""
    from napari_dicomtools._viewer import set_plane

    marker_series(tmp_path / "ax", "axial")
    viewer = make_napari_viewer(show=True)
    layer = _open(viewer, tmp_path / "ax")
    set_plane(viewer, plane, keep_cursor=False)
    _show_marker(viewer, layer)
    assert _marker_on_screen(viewer) == QUADRANT[plane]


def test_plane_switch_keeps_the_point_under_the_cursor(make_napari_viewer, tmp_path):
    from napari_dicomtools._viewer import current_plane, set_plane

    marker_series(tmp_path / "ax", "axial")
    viewer = make_napari_viewer()
    _open(viewer, tmp_path / "ax")
    cursor = (CENTER + OFFSET)[::-1]  # world (z, y, x) = LPS reversed
    viewer.cursor.position = tuple(cursor)
    set_plane(viewer, "sagittal")
    assert current_plane(viewer) == "sagittal"
    assert viewer.dims.order == (2, 0, 1)
    assert abs(viewer.dims.point[2] - cursor[2]) <= 1.25 / 2 + 1e-6
    set_plane(viewer, "coronal")
    assert abs(viewer.dims.point[1] - cursor[1]) <= 1.25 / 2 + 1e-6
    assert tuple(str(v) for v in camera_of(viewer).orientation2d) == ("up", "right")
    set_plane(viewer, "acquisition")
    assert current_plane(viewer) == "axial"
    assert tuple(str(v) for v in camera_of(viewer).orientation2d) == ("down", "right")


@pytest.mark.parametrize("name", list(CASES))
def test_marker_measured_from_the_true_geometry(make_napari_viewer, tmp_path, name):
    """Through the Measurements widget: volume within 2 % of the voxelized truth (|det| of
    the true affine), centroid within 1 mm in LPS."""
    from napari_dicomtools._analysis import MeasureWidget

    truth, values = marker_series(tmp_path / name, name)
    viewer = make_napari_viewer()
    layer = _open(viewer, tmp_path / name)
    # a labels layer on the image's grid, as a user makes one (New labels + fill)
    viewer.layers.selection.active = layer
    viewer._new_labels()
    labels = viewer.layers[-1]
    labels.data = (np.asarray(layer.data) > 500).astype(np.uint8)
    dock = MeasureWidget(viewer)
    w = dock.container
    w.source_box.value = "labels layer"
    w.labels_box.value = labels.name
    w.image_box.value = layer.name
    w.measure()
    (row,) = w.rows
    true_ml = (values == 1000).sum() * abs(np.linalg.det(truth.affine_lps[:3, :3])) / 1000
    assert row["volume_ml"] == pytest.approx(true_ml, rel=0.02)
    assert np.linalg.norm(np.asarray(row["centroid_lps_mm"]) - MARKER) < 1.0
    assert row["mean"] == 1000
    # what the user reads: the table cell
    cells = dict(zip(w.table.column_headers, w.table.data[0], strict=True))
    assert w.source_label.value == f"1 row(s) from {labels.name} on {layer.name}"
    assert float(cells["volume_ml"]) == pytest.approx(true_ml, rel=0.02)


@pytest.mark.parametrize("name", ["oblique20", "sagittal", "tilted18"])
def test_image_and_labels_niftis_share_the_true_grid(make_napari_viewer, tmp_path, name):
    from napari_dicomtools._writer import write_image_nifti, write_labels_nifti

    truth, values = marker_series(tmp_path / name, name)
    viewer = make_napari_viewer()
    layer = _open(viewer, tmp_path / name)
    labels = viewer.add_labels((np.asarray(layer.data) > 500).astype(np.uint8),
                               scale=layer.scale, translate=layer.translate)
    (pi,) = write_image_nifti(str(tmp_path / "img.nii.gz"), layer.data, layer._get_state())
    (pl,) = write_labels_nifti(str(tmp_path / "lab.nii.gz"), labels.data, labels._get_state())
    img, lab = nib.load(pi), nib.load(pl)
    assert img.shape == lab.shape == SHAPE[::-1]
    assert np.allclose(img.affine, lab.affine, atol=1e-6)
    assert np.allclose(img.affine, truth.affine_ras, atol=1e-4)
    ijk = np.argwhere(np.asarray(lab.dataobj) == 1).mean(axis=0)
    ras = lab.affine[:3, :3] @ ijk + lab.affine[:3, 3]
    assert np.linalg.norm(ras - MARKER * [-1, -1, 1]) < 1.0
    assert np.array_equal(np.asarray(img.dataobj) == 1000, np.asarray(lab.dataobj) == 1)


def test_oblique_layer_is_announced_and_resampled_exactly(make_napari_viewer, tmp_path, qtbot):
    from napari_dicomtools._viewer import make_geometry_widget, text_overlay

    marker_series(tmp_path / "obl", "oblique20")
    viewer = make_napari_viewer()
    layer = _open(viewer, tmp_path / "obl")
    overlay = text_overlay(viewer)
    g = Grid.of_layer(layer.data.shape, layer.scale, layer.translate, layer.metadata)
    assert 20 < g.residual_deg < 25 and g.display_error_mm > 5
    assert overlay.visible and f"{g.residual_deg:.1f} deg oblique" in overlay.text
    assert f"up to {g.display_error_mm:.0f} mm off" in overlay.text
    assert max(len(line) for line in overlay.text.splitlines()) <= 40
    assert any("oblique" in p for p in layer.metadata["problems"])
    w = make_geometry_widget(viewer)
    assert "acquired axial" in w.info.value and "deg off axes" in w.info.value
    w.layer_box.value = layer.name
    w.resample.clicked.emit()  # what a click does
    qtbot.waitUntil(lambda: len(viewer.layers) > 1, timeout=30000)
    exact = viewer.layers[-1]
    assert exact.name.endswith("(patient axes)")
    g = Grid.of_layer(exact.data.shape, exact.scale, exact.translate, exact.metadata)
    assert g.display_error_mm < 1e-6
    # on the exact layer, napari's own world coordinates are LPS: the marker is where it is
    bright = np.argwhere(np.asarray(exact.data) > 500).mean(axis=0)
    world = np.asarray(exact.data_to_world(bright))
    assert np.linalg.norm(world[::-1] - MARKER) < 1.0
    viewer.layers.selection.active = exact
    assert not text_overlay(viewer).visible
    assert exact.metadata["patient_id"] == "P-oblique20"


def test_resample_to_patient_axes_keeps_values_and_positions(tmp_path):
    truth, values = marker_series(tmp_path / "t", "tilted18")
    g = Grid.for_volume(truth.spacing, truth.origin, truth.direction, values.shape)
    view = g.display.apply(values)
    out, og = resample_to_patient_axes(view, g, order=0)
    assert out.dtype == values.dtype
    centre = og.lps(np.argwhere(out == 1000).mean(axis=0))
    assert np.linalg.norm(centre - MARKER) < 1.0
    assert abs((out == 1000).sum() * og.voxel_volume_mm3
               - (values == 1000).sum() * g.voxel_volume_mm3) / (4 / 3 * np.pi * RADIUS ** 3) \
        < 0.1


def test_status_bar_reads_true_lps_and_original_voxel(make_napari_viewer, tmp_path):
    truth, values = marker_series(tmp_path / "obl", "oblique20")
    viewer = make_napari_viewer()
    layer = _open(viewer, tmp_path / "obl")
    g = Grid.of_layer(layer.data.shape, layer.scale, layer.translate, layer.metadata)
    view_idx = np.array([5, 10, 30])
    world = layer.data_to_world(view_idx)
    status = layer.get_status(world, world=True)
    text = status["coordinates"] if isinstance(status, dict) else status
    orig = g.original_index(view_idx)
    lps = (truth.affine_lps @ np.r_[orig[::-1], 1])[:3]
    assert "voxel (s, r, c) = ({:.0f}, {:.0f}, {:.0f})".format(*orig) in text
    assert "LPS ({:.1f}, {:.1f}, {:.1f}) mm".format(*lps) in text


def test_shapes_drawn_in_sagittal_plane_become_masks_and_rois(make_napari_viewer, tmp_path):
    from napari_dicomtools._analysis import roi_table, shapes_to_labels_widget

    marker_series(tmp_path / "sag", "sagittal")
    viewer = make_napari_viewer()
    layer = _open(viewer, tmp_path / "sag")
    assert viewer.dims.order[-3] == 2  # the slider walks L-R: a sagittal view
    viewer.dims.set_point(2, CENTER[0])
    x = viewer.dims.point[2]
    # a 20 x 30 mm rectangle in the displayed (z, y) plane at the current x
    rect = np.array([[55.0, -30, x], [55, -10, x], [25, -10, x], [25, -30, x]])
    shapes = viewer.add_shapes([rect], shape_type="rectangle")
    (row,) = roi_table(layer, shapes)
    assert row["axis"] == 2
    assert row["area_mm2"] == pytest.approx(20 * 30, rel=0.12)
    assert row["mean"] == 40 and row["std"] == 0  # inside the body, away from the marker
    data, kwargs, kind = shapes_to_labels_widget(layer, shapes)
    assert kind == "labels" and data.shape == layer.data.shape
    k = int(round(layer.world_to_data((0, 0, x))[2]))
    assert data[:, :, k].sum() == row["pixels"] and data.sum() == row["pixels"]
    assert kwargs["metadata"][GRID_KEY]["shape"] == list(layer.data.shape)


def test_per_slice_segmentation_runs_in_the_acquisition_plane(make_napari_viewer, tmp_path,
                                                              qtbot):
    """Otsu + clear border on a sagittal series keeps the body (it touches the L-R faces of
    the stack, not the border of any sagittal slice)."""
    from napari_dicomtools._analysis import _segment

    write_series(tmp_path / "sag", phantom((16, 48, 40)), orientation=(0, 1, 0, 0, 0, -1),
                 spacing=(3.0, 1.0, 1.0))
    viewer = make_napari_viewer()
    layer = _open(viewer, tmp_path / "sag")
    worker = _segment(layer, method="Otsu", clear_border=True, fill_holes=True)
    with qtbot.waitSignal(worker.returned, timeout=20000) as blocker:
        pass
    data, kwargs, _ = blocker.args[0]
    assert data.max() >= 1 and (data > 0).sum() > 0.2 * data.size
    hist = kwargs["metadata"]["history"][-1]
    assert hist["slice_axis"] == 2


def test_derived_layers_keep_patient_identity_and_true_grid(make_napari_viewer, tmp_path,
                                                            qtbot):
    from napari_dicomtools._analysis import layer_cases, resize_widget

    truth, values = marker_series(tmp_path / "obl", "oblique20")
    viewer = make_napari_viewer()
    layer = _open(viewer, tmp_path / "obl")
    worker = resize_widget(layer, voxel_mm=2.5)
    with qtbot.waitSignal(worker.returned, timeout=20000) as blocker:
        pass
    data, kwargs, _ = blocker.args[0]
    meta = kwargs["metadata"]
    for key in ("patient_id", "study_uid", "series_uid", "frame_of_reference"):
        assert meta[key] == layer.metadata[key]
    resized = viewer.add_image(data, **{k: v for k, v in kwargs.items()
                                        if k in ("scale", "translate", "metadata", "name")})
    g = Grid.of_layer(resized.data.shape, resized.scale, resized.translate, resized.metadata)
    # still oblique: the marker is found where it truly is through the derived grid
    bright = np.argwhere(np.asarray(resized.data) > 500).mean(axis=0)
    assert np.linalg.norm(g.lps(bright) - MARKER) < 1.5
    assert g.voxel_volume_mm3 == pytest.approx(np.prod(resized.scale), rel=1e-6)  # rotation
    cases = layer_cases([layer, resized], [])
    assert {c["patient"] for c in cases} == {"P-oblique20"}
    # and the resized image's NIfTI is on the true oblique grid
    ras = cases[1]["affine_ras"]
    lps_dir = geometry.LPS_TO_RAS[:3, :3] @ ras[:3, :3]
    assert np.allclose(np.abs(lps_dir / np.linalg.norm(lps_dir, axis=0)),
                       np.abs(truth.direction[:, ::-1]), atol=1e-6)


def test_4d_sagittal_series_opens_sagittally_with_time_slider(make_napari_viewer, tmp_path):
    from napari_dicomtools._viewer import current_plane

    write_4d(tmp_path, [np.full((6, 20, 24), 10 * t, np.int32) for t in range(3)], orientation=(0, 1, 0, 0, 0, -1))
    viewer = make_napari_viewer()
    layer = _open(viewer, tmp_path)
    assert layer.data.ndim == 4
    assert current_plane(viewer) == "sagittal"
    assert viewer.dims.order[0] == 0  # time stays the outer slider
    assert viewer.dims.nsteps[viewer.dims.order[1]] == 6  # the acquired slices
    assert tuple(str(v) for v in camera_of(viewer).orientation2d) == ("up", "right")
    status = layer.get_status(layer.data_to_world((2, 3, 4, 5)), world=True)
    assert "LPS (" in (status["coordinates"] if isinstance(status, dict) else status)


# ------------------------------------------------------------------ linked orthogonal views


def _white_centroid(shot):
    """(x, y) canvas pixel of the white marker (the largest white blob, not the scale bar's
    text) in a canvas grab (RGBA array)."""
    from scipy import ndimage

    white = np.all(shot[..., :3].astype(int) > 235, axis=-1)
    blobs, n = ndimage.label(white)
    assert n > 0, "marker not visible"
    sizes = ndimage.sum(white, blobs, range(1, n + 1))
    assert sizes.max() > 50, "marker not visible"
    y, x = np.argwhere(blobs == 1 + int(np.argmax(sizes))).mean(axis=0)
    return x, y


def _click(canvas, x, y):
    from qtpy.QtCore import QEvent, QPointF, Qt
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtWidgets import QApplication

    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    for kind, buttons in ((QEvent.Type.MouseButtonPress, left),
                          (QEvent.Type.MouseButtonRelease, none)):
        ev = QMouseEvent(kind, QPointF(x, y), left, buttons, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(canvas, ev)
        QApplication.processEvents()


def test_orthogonal_views_are_radiological_and_linked_by_clicks_and_sliders(
        make_napari_viewer, tmp_path):
    """The View tab's toggle shows coronal and sagittal beside the axial canvas, each
    upright and radiological with its letters; clicking the marker in one view brings the
    others to the marker's slices; a side view's slider moves the shared point."""
    from qtpy.QtWidgets import QApplication

    from napari_dicomtools._ortho import PLANE_COLOURS, orthogonal_views
    from napari_dicomtools._panel import make_panel

    marker_series(tmp_path / "ax", "axial")
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    layer = _open(viewer, tmp_path / "ax")
    panel = make_panel(viewer)
    viewer.window.add_dock_widget(panel, name="DICOM Tools", area="right")
    panel.tools["geometry"].ortho.value = True  # the user ticks "Orthogonal views"
    for _ in range(3):
        QApplication.processEvents()
    ortho = orthogonal_views(viewer)
    assert ortho is not None and ortho.planes == ("coronal", "sagittal")
    win = viewer.window._qt_window
    assert win.width() <= 1366 and win.height() <= 768  # still fits the laptop screen
    assert [t.text() for t in ortho.titles] == ["Coronal", "Sagittal"]
    cor, sag = ortho.models
    assert [lay.data is layer.data for lay in cor.layers] == [True]  # shared, not copied
    assert cor.dims.order == (1, 0, 2) and sag.dims.order == (2, 0, 1)
    assert ortho.letters[0].text() == {"top": "S", "bottom": "I", "left": "R", "right": "L"}
    assert ortho.letters[1].text() == {"top": "S", "bottom": "I", "left": "A", "right": "P"}

    # start away from the marker: the centre of the volume
    viewer.dims.set_point(range(3), tuple(CENTER[::-1]))
    QApplication.processEvents()
    assert np.allclose(cor.dims.point, viewer.dims.point)
    marker_world = MARKER[::-1]  # world (z, y, x) = LPS reversed
    assert abs(viewer.dims.point[0] - marker_world[0]) > 5

    # the coronal view at the marker's y shows it superior and to the left (upper right)
    sag.dims.set_point(1, marker_world[1])  # a side view moves the shared point too
    QApplication.processEvents()
    assert abs(viewer.dims.point[1] - marker_world[1]) <= SPACING[1] / 2 + 1e-6
    cor_qv = ortho.qt_viewers[0]
    shot = cor_qv.screenshot(flash=False)
    x, y = _white_centroid(shot)
    assert x > shot.shape[1] / 2 and y < shot.shape[0] / 2
    # a click on the marker in the coronal view moves the axial slice and the sagittal one
    _click(cor_qv.canvas.native, x * cor_qv.canvas.native.width() / shot.shape[1],
           y * cor_qv.canvas.native.height() / shot.shape[0])
    point = np.asarray(viewer.dims.point)
    assert abs(point[0] - marker_world[0]) < RADIUS / 2  # axial slice through the marker
    assert abs(point[2] - marker_world[2]) < RADIUS / 2  # sagittal slice too
    assert np.allclose(sag.dims.point, point) and np.allclose(cor.dims.point, point)
    QApplication.processEvents()
    # the axial canvas now shows the marker, upper right (anterior, patient left)
    assert _marker_on_screen(viewer) == QUADRANT["axial"]
    # the sagittal view shows it upper left (superior, anterior), crossed by the axial line
    sag_shot = ortho.qt_viewers[1].screenshot(flash=False)
    sx, sy = _white_centroid(sag_shot)
    assert sx < sag_shot.shape[1] / 2 and sy < sag_shot.shape[0] / 2
    axial_line = ortho.crosshairs[2].positions["axial"]
    assert np.allclose(axial_line[:, 1], point[0])  # horizontal, at the axial slice
    red = np.all(np.abs(sag_shot[..., :3].astype(int)
                        - [int(PLANE_COLOURS["axial"][i:i + 2], 16) for i in (1, 3, 5)])
                 < 40, axis=-1)
    assert red.sum() > sag_shot.shape[1] / 3  # the red axial line is drawn across the view

    # a click on the marker in the main (axial) canvas moves the coronal and sagittal slices
    viewer.dims.set_point([1, 2], tuple(CENTER[::-1][1:]))  # away from the marker again
    QApplication.processEvents()
    main = viewer.window._qt_viewer.canvas.native
    full = viewer.screenshot(canvas_only=True, flash=False)
    mx, my = _white_centroid(full)
    before = np.asarray(viewer.dims.point)
    _click(main, mx * main.width() / full.shape[1], my * main.height() / full.shape[0])
    after = np.asarray(viewer.dims.point)
    assert after[0] == before[0]  # the axial slice stays
    assert np.all(np.abs(after[1:] - marker_world[1:]) < RADIUS / 2)
    assert np.allclose(cor.dims.point, after) and np.allclose(sag.dims.point, after)

    # switching the main canvas to coronal puts axial and sagittal beside it
    from napari_dicomtools._viewer import set_plane

    set_plane(viewer, "coronal", keep_cursor=False)
    QApplication.processEvents()
    assert ortho.planes == ("axial", "sagittal")
    assert ortho.models[0].dims.order == (0, 1, 2)
    assert ortho.letters[0].text() == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    set_plane(viewer, "axial", keep_cursor=False)

    folder = os.environ.get("NAPARI_DICOMTOOLS_SCREENSHOTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        viewer.dims.set_point(range(3), tuple(marker_world))
        QApplication.processEvents()
        viewer.window._qt_window.grab().save(os.path.join(folder, "orthogonal_views.png"))

    # unticking removes the views and the main canvas takes the room back
    panel.tools["geometry"].ortho.value = False
    QApplication.processEvents()
    assert orthogonal_views(viewer) is None
    assert viewer.window._qt_window.centralWidget().layout().count() == 1
    assert len(viewer.mouse_drag_callbacks) == 0 or all(
        "click" not in getattr(cb, "__name__", "") for cb in viewer.mouse_drag_callbacks)


def test_orthogonal_views_follow_layers_and_refuse_2d(make_napari_viewer, tmp_path):
    """Window changes, new labels and painting reach the side views; removing a layer
    removes its copies; with no volume the toggle says what to do; closing the viewer
    with the views open leaks nothing (napari's fixture checks its QtViewers)."""
    from qtpy.QtWidgets import QApplication

    from napari_dicomtools._ortho import show_orthogonal_views

    viewer = make_napari_viewer(show=True)
    with pytest.raises(ValueError, match="Open a 3D series"):
        show_orthogonal_views(viewer)
    marker_series(tmp_path / "ax", "axial")
    layer = _open(viewer, tmp_path / "ax")
    ortho = show_orthogonal_views(viewer)
    QApplication.processEvents()
    cor = ortho.models[0]
    layer.contrast_limits = (-100.0, 100.0)
    assert tuple(cor.layers[0].contrast_limits) == (-100.0, 100.0)
    # right-drag on the sagittal canvas windows the image (every view follows); a left drag
    # pans and leaves the shared point where it was
    from qtpy.QtCore import QEvent, QPointF, Qt
    from qtpy.QtGui import QMouseEvent

    def mouse(widget, kind, pos, button, buttons):
        QApplication.sendEvent(widget, QMouseEvent(kind, QPointF(*pos), button, buttons,
                                                   Qt.KeyboardModifier.NoModifier))
        QApplication.processEvents()

    canvas = ortho.qt_viewers[1].canvas.native
    x, y = canvas.width() // 2, canvas.height() // 2
    for button in (Qt.MouseButton.RightButton, Qt.MouseButton.LeftButton):
        point = tuple(viewer.dims.point)
        mouse(canvas, QEvent.Type.MouseButtonPress, (x, y), button, button)
        for k in range(1, 11):
            mouse(canvas, QEvent.Type.MouseMove, (x + 10 * k, y + 5 * k),
                  Qt.MouseButton.NoButton, button)
        mouse(canvas, QEvent.Type.MouseButtonRelease, (x + 100, y + 50), button,
              Qt.MouseButton.NoButton)
        assert tuple(viewer.dims.point) == point
    lo, hi = layer.contrast_limits
    assert hi - lo > 300 and (lo + hi) / 2 > 50  # wider and higher than (-100, 100)
    assert tuple(ortho.models[1].layers[0].contrast_limits) == (lo, hi)
    # hovering a side view puts its voxel, value and LPS position in napari's status bar
    mouse(canvas, QEvent.Type.MouseMove, (x, y), Qt.MouseButton.NoButton,
          Qt.MouseButton.NoButton)
    status = viewer.status
    text = str(status.get("coordinates", "") if isinstance(status, dict) else status)
    assert "LPS (" in text and "voxel (s, r, c)" in text
    labels = viewer.add_labels(np.zeros(layer.data.shape, np.uint8), scale=layer.scale,
                               translate=layer.translate, name="mask")
    assert [lay.name for lay in cor.layers] == [layer.name, "mask"]
    assert cor.layers["mask"].metadata.get("grid") == labels.metadata.get("grid")
    labels.data[:, 10:20, 10:20] = 1
    labels.events.data(value=labels.data)
    assert cor.layers["mask"].data is labels.data
    viewer.layers.remove(labels)
    assert [lay.name for lay in cor.layers] == [layer.name]
    assert show_orthogonal_views(viewer) is ortho  # idempotent
