"""Series with gaps tell the truth in the viewer, and a scout does not decide the view plane
(issue: tester s8, A and B)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_dicomtools._viewer import current_plane, set_plane
from napari_dicomtools.core.synthetic import phantom, write_series

STUDY = "1.2.826.0.1.3680043.9.7.21"
FRAME = "1.2.826.0.1.3680043.9.7.22"


def _process_events():
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()


def _scout_and_ct(root):
    """One study and frame of reference: series 1 a single coronal topogram slice covering
    the body, series 2 an axial CT volume."""
    write_series(root / "scout", phantom((1, 96, 64)), spacing=(1.0, 1.5, 1.0),
                 orientation=(1, 0, 0, 0, 0, -1), origin=(-32.0, 0.0, 40.0),
                 series_number=1, description="Topogram", study_uid=STUDY, frame_uid=FRAME)
    write_series(root / "ct", phantom((20, 48, 48)), spacing=(2.5, 1.0, 1.0),
                 origin=(-24.0, -24.0, -40.0), series_number=2, description="Axial CT",
                 study_uid=STUDY, frame_uid=FRAME)


def test_a_scout_opened_with_its_ct_does_not_decide_the_plane(make_napari_viewer, tmp_path):
    """The folder opens axially, the slider over the CT's 20 slices, as the CT alone does."""
    _scout_and_ct(tmp_path / "study")
    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path / "study"), plugin="napari-dicomtools")
    _process_events()
    assert sorted(lay.data.shape for lay in layers) == [(20, 48, 48), (96, 1, 64)]
    assert current_plane(viewer) == "axial"
    assert viewer.dims.order == (0, 1, 2)
    assert viewer.dims.axis_labels[viewer.dims.order[0]] == "S-I (z)"


def test_the_browser_opens_a_scout_and_its_ct_axially_and_warns_of_a_gap(
        make_napari_viewer, qtbot, tmp_path):
    """Both series picked in the DICOM browser: the CT decides the plane; a gapped series
    opened there raises the same notification as File > Open."""
    from napari_dicomtools._widgets import DicomBrowser

    _scout_and_ct(tmp_path / "study")
    _gapped(tmp_path / "study" / "gap", study_uid=STUDY, frame_uid=FRAME, series_number=3)
    viewer = make_napari_viewer()
    shown = _warnings_shown(viewer)
    w = DicomBrowser(viewer)
    w.scan(str(tmp_path / "study"))
    qtbot.waitUntil(lambda: len(w.series) == 3, timeout=20000)
    qtbot.waitUntil(lambda: w.scan_button.isEnabled(), timeout=5000)
    w.open_selected(list(w.series))
    qtbot.waitUntil(lambda: len(viewer.layers) == 3, timeout=30000)
    qtbot.waitUntil(lambda: w.scan_button.isEnabled(), timeout=5000)
    _process_events()
    assert current_plane(viewer) == "axial"
    assert [m for m in shown if "missing slices" in m and "between slices 9 and 10" in m]


def test_a_scout_alone_opens_in_its_own_plane(make_napari_viewer, tmp_path):
    write_series(tmp_path / "scout", phantom((1, 96, 64)), spacing=(1.0, 1.5, 1.0),
                 orientation=(1, 0, 0, 0, 0, -1), series_number=1)
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "scout"), plugin="napari-dicomtools")
    assert current_plane(viewer) == "coronal"


@pytest.mark.parametrize("choice", ["sagittal", "3D"])
def test_the_users_plane_is_kept_when_a_series_is_added(make_napari_viewer, tmp_path, choice):
    """A scout opened first: the user picks a view; the CT opened after it does not undo it."""
    _scout_and_ct(tmp_path / "study")
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "study" / "scout"), plugin="napari-dicomtools")
    assert current_plane(viewer) == "coronal"
    if choice == "3D":
        viewer.dims.ndisplay = 3
    else:
        set_plane(viewer, choice)
    viewer.open(str(tmp_path / "study" / "ct"), plugin="napari-dicomtools")
    _process_events()
    if choice == "3D":
        assert viewer.dims.ndisplay == 3
    else:
        assert current_plane(viewer) == choice


def test_a_volume_opened_after_its_scout_takes_over_the_plane(make_napari_viewer, tmp_path):
    """Nobody chose a plane: the CT opened after its scout is shown axially."""
    _scout_and_ct(tmp_path / "study")
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "study" / "scout"), plugin="napari-dicomtools")
    viewer.open(str(tmp_path / "study" / "ct"), plugin="napari-dicomtools")
    assert current_plane(viewer) == "axial"


# ------------------------------------------------------------------------------ A: gaps

DROP = [10, 11, 12]  # 30 slices written 2.5 mm apart, three missing: 27 files


def _gapped(folder, **kw):
    """The tester's series: a 30-slice phantom with slices 10-12 not written; returns the
    files' ImagePositionPatient in acquisition order (27 of them)."""
    import pydicom

    truth = write_series(folder, phantom((30, 64, 64)), spacing=(2.5, 1.0, 1.0),
                         drop_slices=DROP, description="Gapped CT", **kw)
    pos = [np.array(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient, float)
           for f in truth.files]
    normal = np.cross(truth.direction[:, 2], truth.direction[:, 1])
    return np.array(sorted(pos, key=lambda p: float(p @ normal)))


def _gap_grid(folder, **kw):
    from napari_dicomtools._reader import read_dicom
    from napari_dicomtools.core.grid import Grid

    positions = _gapped(folder, **kw)
    [(data, kwargs, _)] = read_dicom(str(folder))
    grid = Grid.of_layer(data.shape, kwargs["scale"], kwargs["translate"], kwargs["metadata"])
    return positions, grid, (data, kwargs)


@pytest.mark.parametrize("orientation", [(1, 0, 0, 0, 1, 0), (1, 0, 0, 0, 0, -1),
                                         (0, 1, 0, 0, 0, -1)], ids=["axial", "coronal",
                                                                     "sagittal"])
def test_grid_maps_every_index_through_the_true_slice_positions(tmp_path, orientation):
    """Each acquired slice is where its file says, in every plane's (flipped) view; indices
    between and beyond slices and the inverse map agree."""
    positions, g, _ = _gap_grid(tmp_path / "gap", orientation=orientation)
    assert g.slice_offsets is not None
    assert g.uneven_steps() == [(9, 10.0)]
    assert g.slice_step_mm == pytest.approx(2.5)
    assert g.slice_position_error_mm == pytest.approx(7.5)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, np.asarray(g.shape), size=(50, 3)).astype(float)
    s, r, c = g.original_index(idx).T.round().astype(int)
    # in-plane: 1 mm along the row and column cosines from the slice's position
    rc = np.asarray(orientation, float).reshape(2, 3)
    want = positions[s] + c[:, None] * rc[0] + r[:, None] * rc[1]
    np.testing.assert_allclose(g.lps(idx), want, atol=1e-6)
    frac = rng.uniform(-0.5, np.asarray(g.shape) - 0.5, size=(200, 3))
    np.testing.assert_allclose(g.index(g.lps(frac)), frac, atol=1e-9)
    # survives the layer metadata and a crop (derive)
    from napari_dicomtools.core.grid import Grid

    back = Grid.from_metadata({"grid": g.to_metadata()}, g.shape, g.scale, g.translate)
    np.testing.assert_allclose(back.lps(frac), g.lps(frac))
    crop = g.derive(g.shape, g.scale, np.asarray(g.translate) + np.asarray(g.scale) * 2)
    np.testing.assert_allclose(crop.lps(idx), g.lps(idx + 2), atol=1e-9)


def test_an_even_stack_keeps_its_plain_grid(tmp_path):
    from napari_dicomtools._reader import read_dicom

    write_series(tmp_path / "ct", phantom((8, 16, 16)))
    [(_, kwargs, _)] = read_dicom(str(tmp_path / "ct"))
    grid = kwargs["metadata"]["grid"]
    assert grid["slice_offsets"] is None and grid["slice_of_index"] is None


def test_measurements_past_a_gap_are_the_files_positions(tmp_path):
    """The tester's labels: one on slice 20 (file z -2.5), one on slices 5-24 across the gap
    (true faces at z -48.75 and 8.75): centroid and bounding box from the true positions;
    the volume counts each acquired slice at the usual 2.5 mm."""
    from napari_dicomtools.core.measure import measure

    positions, g, (data, _) = _gap_grid(tmp_path / "gap")
    lab = np.zeros(data.shape, np.uint8)
    lab[20, 20:40, 20:40] = 1
    lab[5:25, 30:34, 30:34] = 2
    one, two = measure(lab, grid=g)
    assert one["centroid_lps_mm"][2] == pytest.approx(positions[20][2]) == pytest.approx(-2.5)
    assert two["bbox_min_lps_mm"][2] == pytest.approx(positions[5][2] - 1.25)
    assert two["bbox_max_lps_mm"][2] == pytest.approx(positions[24][2] + 1.25)
    assert two["bbox_max_lps_mm"][2] == pytest.approx(8.75)
    # the mean of the voxels' true positions, not the position of their mean index
    assert two["centroid_lps_mm"][2] == pytest.approx(float(np.mean(positions[5:25, 2])))
    assert two["volume_mm3"] == pytest.approx(20 * 16 * 2.5)


def test_resample_to_patient_axes_fills_a_gap_with_even_slices(tmp_path):
    """The one-click regularization: even 2.5 mm slices from the first to the last file,
    each acquired slice where its file puts it, the gap interpolated between its sides."""
    from napari_dicomtools.core.grid import resample_to_patient_axes

    positions, g, (data, _) = _gap_grid(tmp_path / "gap")
    arr = np.asarray(data)
    out, og = resample_to_patient_axes(arr, g)
    assert out.shape == (30, 64, 64) and og.slice_offsets is None
    assert og.scale == pytest.approx((2.5, 1.0, 1.0))
    for k in (0, 9, 10, 20, 26):  # acquired slice k lands on the even slice at its z
        z = int(round(og.index(positions[k])[0]))
        assert og.lps([z, 0, 0])[2] == pytest.approx(positions[k][2])
        np.testing.assert_array_equal(out[z], arr[k])
    mid = int(round(og.index(positions[9] + [0, 0, 5.0])[0]))  # halfway across the gap
    expect = (arr[9].astype(np.float32) + arr[10]) / 2
    assert np.abs(out[mid] - np.round(expect)).max() <= 1


def test_nifti_of_a_gapped_layer_warns(tmp_path):
    from napari_dicomtools.core.nifti import write_layer_nifti

    _, g, (data, kwargs) = _gap_grid(tmp_path / "gap")
    with pytest.warns(UserWarning, match=r"not evenly spaced.*2\.5 mm apart.*7\.5 mm"):
        write_layer_nifti(tmp_path / "gap.nii.gz", data, kwargs["scale"], kwargs["translate"],
                          kwargs["metadata"])


def _warnings_shown(viewer):
    from napari.utils.notifications import notification_manager

    shown = []
    notification_manager.notification_ready.connect(lambda n: shown.append(str(n.message)))
    return shown


def test_a_gapped_series_opens_with_a_warning_and_true_numbers(make_napari_viewer, tmp_path):
    """The tester's findings: a notification names the series and the gap; the status bar's
    LPS at slice 20 is that file's ImagePositionPatient; a label there measures its
    centroid at the file's z."""
    from napari_dicomtools import _analysis
    from napari_dicomtools._viewer import text_overlay

    positions = _gapped(tmp_path / "gap")
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    shown = _warnings_shown(viewer)
    [layer] = viewer.open(str(tmp_path / "gap"), plugin="napari-dicomtools")
    _process_events()
    notes = [m for m in shown if "missing slices" in m]
    assert len(notes) == 1, shown
    assert notes[0].startswith(f"{layer.name}: missing slices") and "Gapped CT" in layer.name
    assert "between slices 9 and 10 (10 mm, about 3 missing)" in notes[0]
    assert "Resample to patient axes" in notes[0] and "uniform_spacing=True" in notes[0]
    overlay = text_overlay(viewer)
    assert overlay.visible and "gap of 10 mm after slice 9" in overlay.text
    # the status bar at slice 20
    world = layer.data_to_world([20, 10, 12])
    viewer.dims.set_point(0, world[0])
    status = layer.get_status(world, view_direction=None,
                              dims_displayed=list(viewer.dims.displayed), world=True)
    want = positions[20] + [12.0, 10.0, 0.0]
    assert "LPS ({:.1f}, {:.1f}, {:.1f}) mm".format(*want) in status["coordinates"]
    assert want[2] == pytest.approx(-2.5)
    # a label drawn there (napari's New labels: same scale/translate) measures there
    lab = np.zeros(layer.data.shape, np.uint8)
    lab[20, 20:40, 20:40] = 1
    labels = viewer.add_labels(lab, scale=layer.scale, translate=layer.translate)
    (row,) = _analysis.measure_table(labels, layer)
    assert row["centroid_lps_mm"][2] == pytest.approx(-2.5)
    folder = "/tmp/gaps-shots"
    import os

    if os.path.isdir(folder):
        viewer.window._qt_window.grab().save(os.path.join(folder, "gap.png"))


def test_seg_and_rtstruct_from_a_gapped_layer_sit_on_the_files_slices(tmp_path):
    """Labels across the gap written as SEG and RTSTRUCT: each frame / contour at the real
    position of the slice it was drawn on."""
    import pydicom

    from napari_dicomtools._writer import write_labels_rtstruct, write_labels_seg

    positions, _, (data, kwargs) = _gap_grid(tmp_path / "gap")
    lab = np.zeros(data.shape, np.uint8)
    lab[8:12, 20:40, 20:40] = 1  # slices 8, 9 | gap | 10, 11
    meta = {"scale": kwargs["scale"], "translate": kwargs["translate"],
            "metadata": kwargs["metadata"], "name": "lesion"}
    (seg,) = write_labels_seg(str(tmp_path / "seg.dcm"), lab, meta)
    ds = pydicom.dcmread(seg)
    zs = sorted(float(f.PlanePositionSequence[0].ImagePositionPatient[2])
                for f in ds.PerFrameFunctionalGroupsSequence)
    assert zs == pytest.approx(sorted(positions[8:12, 2]))
    (rt,) = write_labels_rtstruct(str(tmp_path / "rt.dcm"), lab, meta)
    contours = pydicom.dcmread(rt).ROIContourSequence[0].ContourSequence
    zs = sorted({float(c.ContourData[2]) for c in contours})
    assert zs == pytest.approx(sorted(positions[8:12, 2]))
