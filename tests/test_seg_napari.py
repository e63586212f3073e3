"""DICOM SEG in napari: a study folder opens as image + labels in world mm; File > Save Layer
writes labels drawn on a DICOM layer as a SEG referencing its series (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_dicomtools.core.seg import read_segmentation, write_seg
from napari_dicomtools.core.series import scan
from napari_dicomtools.core.synthetic import phantom, write_series
from napari_dicomtools.core.volume import read_volume

SHAPE = (10, 24, 28)
CORONAL = (1, 0, 0, 0, 0, -1)


def _labels():
    lab = np.zeros(SHAPE, np.uint8)
    lab[2:6, 4:14, 5:20] = 1
    lab[7:9, 12:20, 3:12] = 2
    return lab


@pytest.fixture
def study(tmp_path):
    """A coronal CT (shown through a transposed, flipped view) and a SEG of it."""
    write_series(tmp_path / "study" / "ct", phantom(SHAPE), spacing=(2.0, 0.7, 0.8),
                 orientation=CORONAL)
    write_seg(_labels(), tmp_path / "study" / "ct", tmp_path / "study" / "seg" / "seg.dcm",
              segments={1: "liver", 2: {"label": "tumour", "type": "neoplasm",
                                        "color": (255, 0, 0)}})
    return tmp_path / "study"


def test_study_folder_opens_image_and_seg_labels_on_one_grid(make_napari_viewer, study):
    viewer = make_napari_viewer()
    layers = viewer.open(str(study), plugin="napari-dicomtools")
    kinds = sorted(type(lay).__name__ for lay in layers)
    assert kinds == ["Image", "Labels"]  # the SEG is no longer a grey image
    image = next(lay for lay in layers if type(lay).__name__ == "Image")
    labels = next(lay for lay in layers if type(lay).__name__ == "Labels")
    assert labels.data.shape == image.data.shape
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    # voxel for voxel: the labels view is the image view of the very arrays
    vol = read_volume(study / "ct")
    view = image.metadata["display_transform"]
    assert view["axes"] != (0, 1, 2)  # coronal: the view is not the stored order
    inten = np.asarray(image.data)[np.asarray(labels.data) == 2]
    np.testing.assert_array_equal(np.sort(inten), np.sort(np.asarray(vol.array)[_labels() == 2]))
    # what the user reads: names in features, the SEG's colours
    assert list(labels.features["label"]) == ["liver", "tumour"]
    np.testing.assert_allclose(labels.colormap.map(np.array([2]))[0], [1, 0, 0, 1], atol=1e-6)


def test_save_layer_offers_dicom_seg_for_labels():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    writers = [w for w in pm.iter_compatible_writers(["labels"])
               if w.command == "napari-dicomtools.write_labels_seg"]
    assert writers and ".dcm" in writers[0].filename_extensions
    assert writers[0].display_name.startswith("DICOM SEG")


def test_labels_drawn_on_a_dicom_layer_save_as_seg(make_napari_viewer, study, tmp_path):
    viewer = make_napari_viewer()
    image = viewer.open(str(study / "ct"), plugin="napari-dicomtools")[0]
    labels = viewer.add_labels(np.zeros(image.data.shape, np.uint8), scale=image.scale,
                               translate=image.translate, name="my lesion")
    labels.data[3:6, 2:4, 10:15] = 1
    viewer.layers.selection = {labels}
    out = tmp_path / "drawn.dcm"
    written = viewer.layers.save(str(out), selected=True, plugin="napari-dicomtools")
    assert written == [str(out)]
    seg = read_segmentation(out, reference=study / "ct")
    assert seg.metadata["on_reference"]
    # the painted voxels are the image voxels under them
    vol = read_volume(study / "ct")
    np.testing.assert_array_equal(
        np.sort(np.asarray(vol.array)[seg.mask(1)]),
        np.sort(np.asarray(image.data)[np.asarray(labels.data) == 1]))
    assert seg.mask(1).sum() == 3 * 2 * 5
    ref_uid = scan(study / "ct")[0].uid
    assert seg.metadata["referenced_series_uid"] == ref_uid


def test_opened_seg_saves_back_identical(make_napari_viewer, study, tmp_path):
    from napari_dicomtools._writer import write_labels_seg

    viewer = make_napari_viewer()
    layers = viewer.open(str(study), plugin="napari-dicomtools")
    labels = next(lay for lay in layers if type(lay).__name__ == "Labels")
    (out,) = write_labels_seg(str(tmp_path / "again.dcm"), labels.data, labels._get_state())
    seg = read_segmentation(out, reference=study / "ct")
    np.testing.assert_array_equal(seg.labels[0], _labels())
    assert [s.label for s in seg.segments] == ["liver", "tumour"]
    assert seg.segments[1].type[2] == "Neoplasm" and seg.segments[1].color == (255, 0, 0)


def test_labels_not_from_dicom_are_refused_in_one_line(make_napari_viewer, tmp_path):
    from napari_dicomtools._writer import write_labels_seg

    viewer = make_napari_viewer()
    labels = viewer.add_labels(np.ones((4, 5, 6), np.uint8), scale=(2, 1, 1))
    with pytest.raises(ValueError, match="does not lie on a DICOM series' grid") as err:
        write_labels_seg(str(tmp_path / "x.dcm"), labels.data, labels._get_state())
    assert "\n" not in str(err.value)
    assert not (tmp_path / "x.dcm").exists()


def test_seg_alone_opens_on_its_own_geometry_over_the_image(make_napari_viewer, study):
    viewer = make_napari_viewer()
    image = viewer.open(str(study / "ct"), plugin="napari-dicomtools")[0]
    (labels,) = viewer.open(str(study / "seg" / "seg.dcm"), plugin="napari-dicomtools")
    # world mm of each labelled voxel centre lands on an image voxel centre of the same label
    idx = np.argwhere(np.asarray(labels.data) == 1)
    world = idx * np.asarray(labels.scale) + np.asarray(labels.translate)
    img_idx = (world - np.asarray(image.translate)) / np.asarray(image.scale)
    np.testing.assert_allclose(img_idx, np.round(img_idx), atol=1e-4)
    vol = read_volume(study / "ct")
    full = np.zeros(image.data.shape, bool)
    full[tuple(np.round(img_idx).astype(int).T)] = True
    np.testing.assert_array_equal(np.sort(np.asarray(image.data)[full]),
                                  np.sort(np.asarray(vol.array)[_labels() == 1]))


def test_browser_opens_a_seg_as_labels_on_its_image(make_napari_viewer, qtbot, study):
    from napari_dicomtools._widgets import DicomBrowser

    viewer = make_napari_viewer()
    w = DicomBrowser(viewer)
    w.scan(str(study))
    qtbot.waitUntil(lambda: len(w.series) == 2, timeout=20000)
    qtbot.waitUntil(lambda: w.scan_button.isEnabled(), timeout=5000)
    seg_series = [s for s in w.series if s.kind == "SEG"]
    w.open_selected(seg_series)
    qtbot.waitUntil(lambda: len(viewer.layers) == 1, timeout=20000)
    layer = viewer.layers[0]
    assert type(layer).__name__ == "Labels"
    # placed on the CT's grid (found among the scanned series), not on the SEG's own, which
    # spans only the slices the SEG stores (2..8 of 10)
    from napari_dicomtools._reader import read_dicom

    image_data = read_dicom(str(study / "ct"))[0][0]
    assert layer.data.shape == image_data.shape
    assert layer.data.shape[1] == SHAPE[0]  # coronal view: slices on the world y axis
    assert layer.metadata["reference_files"]


def test_rtstruct_in_a_study_folder_opens_as_labels_and_saves_back(make_napari_viewer, study,
                                                                    tmp_path):
    from napari_dicomtools._writer import write_labels_rtstruct
    from napari_dicomtools.core.rtstruct import read_rtstruct, write_rtstruct

    write_rtstruct(_labels(), study / "ct", study / "rt" / "rt.dcm",
                   segments={1: "liver", 2: {"label": "tumour", "color": (255, 0, 0)}})
    viewer = make_napari_viewer()
    layers = viewer.open(str(study / "ct"), plugin="napari-dicomtools") + \
        viewer.open(str(study / "rt"), plugin="napari-dicomtools")
    assert [type(lay).__name__ for lay in layers] == ["Image", "Labels"]
    image, rt = layers
    # the structure set file alone holds no reference images: rasterised on its own 1 mm
    # grid, it still covers the same patient millimetres
    assert list(rt.features["label"]) == ["liver", "tumour"]
    both = viewer.open(str(study), plugin="napari-dicomtools")
    on_ref = [lay for lay in both if lay.metadata.get("modality") == "RTSTRUCT"]
    assert len(on_ref) == 1 and on_ref[0].data.shape == image.data.shape
    np.testing.assert_allclose(on_ref[0].scale, image.scale)
    (out,) = write_labels_rtstruct(str(tmp_path / "again.dcm"), on_ref[0].data,
                                   on_ref[0]._get_state())
    got = read_rtstruct(out, reference=study / "ct")
    for n in (1, 2):
        a, b = got.mask(n), _labels() == n
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) >= 0.99
    assert got.segment(2).label == "tumour" and got.segment(2).color == (255, 0, 0)


def test_export_form_names_codes_and_colours_a_seg(make_napari_viewer, qtbot, study, tmp_path,
                                                   monkeypatch):
    """Annotate > Save as DICOM SEG / RTSTRUCT: labels that do not know their series (added
    with no transform) are written against the DICOM layer the user picks, with the names,
    SNOMED CT type/category and colours set in the form, as clicks set them."""
    from qtpy.QtCore import Qt
    from qtpy.QtGui import QColor
    from qtpy.QtWidgets import QColorDialog

    from napari_dicomtools._panel import make_panel

    viewer = make_napari_viewer()
    (image,) = viewer.open(str(study / "ct"), plugin="napari-dicomtools")
    view = image.metadata["display_transform"]
    drawn = np.zeros(image.data.shape, np.uint8)  # the labels in the displayed order
    from napari_dicomtools.core.geometry import DisplayTransform

    drawn[...] = DisplayTransform(tuple(view["axes"]), tuple(view["flips"]), (1, 1, 1),
                                  (0, 0, 0), 0.0).apply(_labels())
    viewer.add_labels(drawn, name="my labels")  # scale 1, translate 0: not on the CT's grid
    panel = make_panel(viewer)
    form = panel.tools["dicom_objects"]
    assert form.labels_combo.currentText() == "my labels"
    assert form.reference_combo.currentText() == image.name  # the one image of that shape
    assert form.table.rowCount() == 2
    form.table.item(1, 1).setText("tumour")
    form.table.cellWidget(0, 3).setCurrentText("liver")  # picks its category too
    assert form.table.cellWidget(0, 2).currentText() == "anatomical structure"
    form.table.cellWidget(1, 3).setCurrentText("neoplasm")
    monkeypatch.setattr(QColorDialog, "getColor", lambda *a, **k: QColor(255, 0, 0))
    qtbot.mouseClick(form.table.cellWidget(1, 4), Qt.MouseButton.LeftButton)
    assert form.table.cellWidget(1, 4).text() == "#ff0000"
    out = tmp_path / "out" / "seg.dcm"
    form.path_edit.setText(str(out))
    with qtbot.waitSignal(form.write_button.clicked):
        qtbot.mouseClick(form.write_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: form.status.text().startswith(("Saved", "Not saved")),
                    timeout=30000)
    assert form.status.text() == f"Saved {out}"
    got = read_segmentation(out, reference=study / "ct")
    np.testing.assert_array_equal(got.labels[0], _labels())
    liver, tumour = got.segments
    assert (liver.label, liver.type[2], liver.category[2]) == \
        ("Segment 1", "Liver", "Anatomical Structure")
    assert (tumour.label, tumour.type[2], tumour.color) == ("tumour", "Neoplasm", (255, 0, 0))
    # written once: a second click refuses to replace it until told to
    qtbot.waitUntil(form.write_button.isEnabled, timeout=10000)
    qtbot.mouseClick(form.write_button, Qt.MouseButton.LeftButton)
    assert "exists" in form.status.text()


def test_browser_lists_rtstruct_and_opens_it_with_its_contours(make_napari_viewer, qtbot,
                                                               study):
    from napari_dicomtools._widgets import DicomBrowser
    from napari_dicomtools.core.rtstruct import write_rtstruct

    write_rtstruct(_labels(), study / "ct", study / "rt" / "rt.dcm",
                   segments={1: "liver", 2: "tumour"})
    viewer = make_napari_viewer()
    w = DicomBrowser(viewer)
    w.scan(str(study))
    qtbot.waitUntil(lambda: len(w.series) == 3, timeout=20000)
    qtbot.waitUntil(lambda: w.scan_button.isEnabled(), timeout=5000)
    assert "Skipped" not in " ".join(w.tree.topLevelItem(i).text(0)
                                     for i in range(w.tree.topLevelItemCount()))
    study_item = w.tree.topLevelItem(0).child(0)
    rows = {study_item.child(i).text(1): study_item.child(i) for i in
            range(study_item.childCount())}
    assert sorted(rows) == ["CT", "RTSTRUCT", "SEG"]
    ct = next(s for s in w.series if s.kind == "IMAGE")
    assert rows["RTSTRUCT"].text(5) == f"on {ct.name}"  # what the user reads
    w.contours_box.setChecked(True)
    w.open_selected([s for s in w.series if s.kind == "RTSTRUCT"])
    qtbot.waitUntil(lambda: len(viewer.layers) == 2, timeout=20000)
    labels, shapes = viewer.layers
    assert type(labels).__name__ == "Labels" and type(shapes).__name__ == "Shapes"
    assert list(labels.features["label"]) == ["liver", "tumour"]
    assert labels.metadata["reference_files"]  # on the CT's grid, found among the scanned
