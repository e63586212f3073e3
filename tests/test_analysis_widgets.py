"""Analysis dock widgets through the viewer: new layers on the right grid, with provenance."""

import numpy as np
import pytest

from napari_dicomtools.core.synthetic import write_series


@pytest.fixture
def ct(make_napari_viewer, tmp_path):
    vals = np.full((12, 40, 48), -1000, np.int16)
    z, y, x = np.indices(vals.shape)
    # a 6 mm-radius soft-tissue ball (spacing 2 x 0.5 x 0.5 mm) centred in the volume
    ball = ((z - 6) * 2.0) ** 2 + ((y - 20) * 0.5) ** 2 + ((x - 24) * 0.5) ** 2 <= 36
    vals[ball] = 50
    write_series(tmp_path / "ct", vals, spacing=(2.0, 0.5, 0.5), origin=(-12.0, -10.0, 30.0),
                 window=(40, 400))
    viewer = make_napari_viewer()
    layer = viewer.open(str(tmp_path / "ct"), plugin="napari-dicomtools")[0]
    return viewer, layer, ball


def _rect(a, b):
    """The four corners of an in-plane rectangle between world points a and b."""
    z = a[0]
    return np.array([[z, a[1], a[2]], [z, a[1], b[2]], [z, b[1], b[2]], [z, b[1], a[2]]])


def _dock(viewer, name):
    _, w = viewer.window.add_plugin_dock_widget("napari-dicomtools", name)
    return w


def test_segment_and_measure(ct, qtbot):
    viewer, image, ball = ct
    seg = _dock(viewer, "Segmentation")
    seg(image=image, method="HU preset", preset="soft_tissue", clear_border=True)
    qtbot.waitUntil(lambda: len(viewer.layers) == 2, timeout=20000)
    labels = viewer.layers[-1]
    assert labels._type_string == "labels" and labels.name == "3 Synthetic phantom segmentation"
    assert np.allclose(labels.scale, image.scale) and np.allclose(labels.translate,
                                                                   image.translate)
    assert labels.metadata["history"][-1]["op"] == "segment"
    assert (np.asarray(labels.data) > 0).sum() == ball.sum()
    m = _dock(viewer, "Measurements").container
    m.labels_box.value = labels.name
    m.image_box.value = image.name
    m.measure()
    (row,) = m.rows
    assert row["volume_ml"] == pytest.approx(ball.sum() * 2.0 * 0.25 / 1000)
    assert row["mean"] == pytest.approx(50.0)
    # centroid in patient LPS mm: first slice at IPP (-12, -10, 30), ball centre at index
    # (slice 6, row 20, column 24) of 2 x 0.5 x 0.5 mm voxels
    assert np.allclose(row["centroid_lps_mm"], (-12 + 24 * 0.5, -10 + 20 * 0.5, 30 + 6 * 2.0),
                       atol=0.3)


def test_resize_keeps_overlay_and_crop_moves_origin(ct, qtbot):
    viewer, image, _ = ct
    rz = _dock(viewer, "Resize")
    rz(image=image, target="voxel size (mm)", voxel_mm=1.0)
    qtbot.waitUntil(lambda: len(viewer.layers) == 2, timeout=20000)
    out = viewer.layers[-1]
    assert np.allclose(out.scale, (1.0, 1.0, 1.0)) and out.data.shape == (24, 20, 24)
    lo_in = np.asarray(image.translate) - np.asarray(image.scale) / 2
    lo_out = np.asarray(out.translate) - np.asarray(out.scale) / 2
    assert np.allclose(lo_in, lo_out)  # same field of view
    shapes = viewer.add_shapes(ndim=3)
    corner = np.array([6, 10, 12]) * image.scale + image.translate
    far = np.array([6, 30, 36]) * image.scale + image.translate
    shapes.add_rectangles(_rect(corner, far))
    cr = _dock(viewer, "Crop")
    cr(image=image, roi=shapes, margin_mm=0.0)
    crop = viewer.layers[-1]
    assert crop.data.shape == (12, 21, 25)
    assert np.allclose(crop.translate, corner * np.array([0, 1, 1]) +
                       np.array([image.translate[0], 0, 0]))
    assert crop.data[6, 10, 12] == image.data[6, 20, 24]


def test_shapes_to_mask_and_roi_stats(ct):
    from napari_dicomtools._analysis import roi_table

    viewer, image, _ = ct
    shapes = viewer.add_shapes(ndim=3)
    a = np.array([6, 16, 20]) * image.scale + image.translate
    b = np.array([6, 23, 27]) * image.scale + image.translate
    shapes.add_rectangles(_rect(a, b))
    (row,) = roi_table(image, shapes)
    assert row["slice"] == 6 and row["pixels"] == 8 * 8
    assert row["area_mm2"] == pytest.approx(64 * 0.25) and row["mean"] == 50.0
    mk = _dock(viewer, "Shapes to mask")
    mk(image=image, shapes=shapes)
    mask = viewer.layers[-1]
    assert mask._type_string == "labels" and (np.asarray(mask.data) == 1).sum() == 64
    assert np.asarray(mask.data)[6, 16:24, 20:28].all()


def test_normalize_equalize_denoise(ct, qtbot):
    viewer, image, _ = ct
    _dock(viewer, "Normalize")(image=image, method="window", window="soft_tissue")
    norm = viewer.layers[-1]
    assert norm.data.dtype == np.float32 and 0 <= norm.data.min() and norm.data.max() <= 1
    n = len(viewer.layers)
    _dock(viewer, "Equalize histogram")(image=image, method="clahe")
    qtbot.waitUntil(lambda: len(viewer.layers) == n + 1, timeout=20000)
    assert viewer.layers[-1].data.max() <= 1
    n = len(viewer.layers)
    _dock(viewer, "Denoise")(image=image, method="median", median_size_mm=1.5)
    qtbot.waitUntil(lambda: len(viewer.layers) == n + 1, timeout=20000)
    assert viewer.layers[-1].data.dtype == image.data.dtype
    assert [h["op"] for h in viewer.layers[-1].metadata["history"]] == ["denoise"]


def test_augmentation_preview_and_dataset_export(ct, qtbot, tmp_path):
    import json
    import os

    viewer, image, ball = ct
    labels = viewer.add_labels(ball.astype(np.uint8), scale=image.scale,
                               translate=image.translate, name="ball")
    n = len(viewer.layers)
    _dock(viewer, "Augmentation")(image=image, labels=labels, samples=3, seed=5)
    qtbot.waitUntil(lambda: len(viewer.layers) == n + 2, timeout=20000)
    aug_img, aug_lab = viewer.layers[-2], viewer.layers[-1]
    assert aug_img.data.shape == (3,) + image.data.shape and len(aug_img.metadata["samples"]) == 3
    assert aug_lab.data.shape == aug_img.data.shape
    viewer.layers.selection = {image}
    _dock(viewer, "Export dataset")(output_folder=tmp_path / "raw", dataset_id=3,
                                    dataset_name="Ball")
    folder = tmp_path / "raw" / "Dataset003_Ball"
    meta = json.load(open(folder / "dataset.json"))
    assert meta["numTraining"] == 1
    (lab_file,) = os.listdir(folder / "labelsTr")
    import nibabel as nib

    lab_img = nib.load(folder / "labelsTr" / lab_file)
    assert int(np.asarray(lab_img.dataobj).sum()) == int(ball.sum())
    assert np.allclose(lab_img.affine, image.metadata["affine_ras"])  # the true grid


def test_segmentation_can_be_cancelled(ct, qtbot):
    viewer, image, _ = ct
    seg = _dock(viewer, "Segmentation")
    n = len(viewer.layers)
    seg(image=image, preset="bone")
    seg.cancel_button.clicked.emit()  # before the worker's first stage ends
    qtbot.waitUntil(lambda: not seg.worker.is_running, timeout=10000)
    qtbot.wait(200)
    assert seg.worker.abort_requested
    assert len(viewer.layers) == n  # nothing added
