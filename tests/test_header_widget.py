"""The DICOM header dock widget: full tree, follows the slider, filters, private creators."""

import numpy as np
import pydicom
import pytest
from qtpy.QtWidgets import QApplication

from napari_dicomtools._widgets import DicomHeaderWidget

SAGITTAL = (0, 1, 0, 0, 0, -1)


@pytest.fixture
def series_with_private(make_series):
    truth = make_series(orientation=SAGITTAL)
    for f in truth.files:
        ds = pydicom.dcmread(f)
        block = ds.private_block(0x0029, "ACME 1.0", create=True)
        block.add_new(0x10, "LO", f"private-{ds.InstanceNumber}")
        ds.save_as(f)
    return truth


def _value(rows, keyword):
    return [r[3] for r in rows if r[1] == keyword]


def test_header_follows_the_current_slice(make_napari_viewer, series_with_private):
    truth = series_with_private
    viewer = make_napari_viewer()
    layer = viewer.open(str(truth.files[0].rsplit("/", 1)[0]), plugin="napari-dicomtools")[0]
    w = DicomHeaderWidget(viewer)
    rows = w.visible_rows()
    assert _value(rows, "PatientName") == ["Phantom^Synthetic"]
    assert any(r[1].startswith("[ACME 1.0]") for r in rows)  # private tag with its creator
    assert any(r[1] == "Private Creator" and r[3] == "ACME 1.0" for r in rows)
    # a sagittal series is shown axially; the header follows the acquired slice (x), so
    # step along the world axis that holds the original slices
    dt = layer.metadata["display_transform"]
    w0 = list(dt["axes"]).index(0)
    seen = set()
    for k in (0, layer.data.shape[w0] - 1):
        step = list(viewer.dims.current_step)
        step[w0] = k
        viewer.dims.current_step = tuple(step)
        rows = w.visible_rows()
        ipp = _value(rows, "ImagePositionPatient")[0]
        x = float(ipp.split("\\")[0].strip("[]").split(",")[0])
        world_x = layer.data_to_world(np.array(step, float))[2]
        assert x == pytest.approx(world_x, abs=1e-4)
        seen.add(_value(rows, "InstanceNumber")[0])
    assert len(seen) == 2


def test_filter_copy_and_differing_values(make_napari_viewer, qtbot, series_with_private):
    truth = series_with_private
    viewer = make_napari_viewer()
    viewer.open(str(truth.files[0].rsplit("/", 1)[0]), plugin="napari-dicomtools")
    w = DicomHeaderWidget(viewer)
    w.search.setText("spacing")
    rows = w.visible_rows()
    assert rows and all("spacing" in " ".join(r).lower() or r[0].startswith("(0002")
                        for r in rows if r[1] != "File Meta Information")
    w.search.setText("")
    item = next(w.tree.topLevelItem(i) for i in range(w.tree.topLevelItemCount())
                if w.tree.topLevelItem(i).text(1) == "PatientID")
    w.tree.setCurrentItem(item)
    w._copy(value=True)
    assert QApplication.clipboard().text() == "SYN001"
    w._copy(value=False)
    assert QApplication.clipboard().text() == "(0010,0020)"


def test_non_dicom_layer_says_so(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 4)), name="plain")
    w = DicomHeaderWidget(viewer)
    assert "did not come from DICOM" in w.status.text()
    assert w.tree.topLevelItemCount() == 0


def test_enhanced_multiframe_header_follows_every_frame(make_napari_viewer, tmp_path):
    """An enhanced file with 60 frames: the status names the frame on screen at every slice,
    the current frame's functional groups come first, and all 60 items can be inspected."""
    from napari_dicomtools.core.synthetic import write_enhanced

    values = np.arange(60)[:, None, None] * np.ones((1, 8, 10), np.int16)
    write_enhanced(tmp_path / "enh.dcm", values)
    viewer = make_napari_viewer()
    layer = viewer.open(str(tmp_path / "enh.dcm"), plugin="napari-dicomtools")[0]
    w = DicomHeaderWidget(viewer)
    slider = viewer.dims.order[-3]
    frames = set()
    for k in (0, 17, 59):
        viewer.dims.set_current_step(slider, k)
        QApplication.processEvents()
        src = layer.metadata["frame_sources"][w.current_frame()]
        assert w.status.text().endswith(f", frame {src[1]}")
        frames.add(src[1])
        top = [w.tree.topLevelItem(i) for i in range(w.tree.topLevelItemCount())]
        pf = next(t for t in top if t.text(1) == "PerFrameFunctionalGroupsSequence")
        assert pf.child(0).text(0) == f"Item {src[1] + 1}"
        assert pf.child(0).text(1) == "current frame"
    assert len(frames) == 3
    pf = next(w.tree.topLevelItem(i) for i in range(w.tree.topLevelItemCount())
              if w.tree.topLevelItem(i).text(1) == "PerFrameFunctionalGroupsSequence")
    assert pf.child(pf.childCount() - 1).text(1).startswith("10 more item(s)")
    pf.child(pf.childCount() - 1).setExpanded(True)  # what a click on the arrow does
    labels = [pf.child(j).text(0) for j in range(pf.childCount())]
    assert labels[-1] == "Item 60" and len(labels) == 61
