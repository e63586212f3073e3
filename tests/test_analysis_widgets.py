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


# ------------------------------------------------ gantry-tilted (sheared) grids: true mm sizes


@pytest.fixture
def tilted(make_napari_viewer, tmp_path):
    """An 18-degree gantry-tilted CT (a 6 mm marker sphere): the display's slice step is
    the 2.10 mm between slice origins, the true slice spacing 2.0 mm."""
    from test_viewer_geometry import marker_series

    from napari_dicomtools._viewer import layer_grid

    _, values = marker_series(tmp_path / "t18", "tilted18")
    viewer = make_napari_viewer()
    layer = viewer.open(str(tmp_path / "t18"), plugin="napari-dicomtools")[0]
    g = layer_grid(layer, viewer)
    assert np.prod(layer.scale) / g.voxel_volume_mm3 > 1.04  # the display is 5 % off
    return viewer, layer, g, values


def test_tilted_min_size_uses_the_true_voxel_volume(tilted, qtbot):
    viewer, image, g, values = tilted
    marker_mm3 = (values == 1000).sum() * g.voxel_volume_mm3
    seg = _dock(viewer, "Segmentation")
    kept = []
    for factor in (0.98, 1.02):  # just under / over the marker's true volume
        n = len(viewer.layers)
        seg(image=image, method="manual HU range", lower_hu=500.0, upper_hu=2000.0,
            fill_holes=False, clear_border=False, min_size_mm3=factor * marker_mm3)
        qtbot.waitUntil(lambda n=n: len(viewer.layers) == n + 1, timeout=30000)
        kept.append(int((np.asarray(viewer.layers[-1].data) > 0).sum()))
    assert kept == [(values == 1000).sum(), 0]


def test_tilted_radii_and_margins_are_true_millimetres(tilted, qtbot):
    from napari_dicomtools.core import segment

    viewer, image, g, _ = tilted
    m = g.linear
    # the closing/opening ball: exactly the lattice offsets within r mm, on the sheared grid
    se = segment.ball(3.0, m)
    c = np.array(se.shape) // 2
    wide = np.stack(np.meshgrid(*(np.arange(-6, 7),) * 3, indexing="ij"), -1).reshape(-1, 3)
    inside = {tuple(k) for k in wide if np.linalg.norm(m @ k) <= 3.0}
    assert {tuple(k - c) for k in np.argwhere(se)} == inside
    # crop to the marker's mask + 4.1 mm: the slice axis grows by ceil(4.1 / 2.0) = 3
    # slices each side (the true 2.0 mm slice spacing; the display's 2.10 mm gives 2)
    seg = _dock(viewer, "Segmentation")
    seg(image=image, method="manual HU range", lower_hu=500.0, upper_hu=2000.0,
        fill_holes=False, clear_border=False)
    qtbot.waitUntil(lambda: len(viewer.layers) == 2, timeout=30000)
    mask = viewer.layers[-1]
    nz = np.argwhere(np.asarray(mask.data) > 0)
    extent = nz.max(axis=0) - nz.min(axis=0) + 1
    _dock(viewer, "Crop")(image=image, roi=mask, margin_mm=4.1)
    crop = viewer.layers[-1]
    pad = (np.array(crop.data.shape) - extent) / 2
    assert pad[0] == 3
    planes = 1.0 / np.linalg.norm(np.linalg.inv(m), axis=1)  # true distance between planes
    assert np.all(pad * planes >= 4.1) and np.all((pad - 1) * planes < 4.1)


def test_tilted_per_slice_denoise_sigma_is_true_millimetres(tilted, qtbot):
    """A point blurred slice by slice in the sagittal plane (where the tilt shears the
    pixels) spreads as a sigma-mm Gaussian of the true geometry: its variance along each
    in-plane axis is sigma² x the inverse Gram matrix of the plane's true step vectors."""
    viewer, image, g, _ = tilted
    impulse = np.zeros(image.data.shape, np.float32)
    impulse[12, 24, 24] = 1000.0
    point = viewer.add_image(impulse, scale=image.scale, translate=image.translate,
                             metadata={"grid": image.metadata["grid"]}, name="point")
    sigma = 2.0
    n = len(viewer.layers)
    _dock(viewer, "Denoise")(image=point, method="gaussian", sigma_mm=sigma, per_slice=True,
                             slice_plane="sagittal")
    qtbot.waitUntil(lambda: len(viewer.layers) == n + 1, timeout=30000)
    out = np.asarray(viewer.layers[-1].data, float)[:, :, 24]
    assert out.sum() == pytest.approx(1000.0, rel=1e-3)
    idx = np.indices(out.shape).reshape(2, -1)
    w = out.ravel() / out.sum()
    var = [(w * (idx[a] - (w * idx[a]).sum()) ** 2).sum() for a in (0, 1)]
    in_plane = g.linear[:, :2]  # true mm step vectors of data axes 0 and 1
    expected = sigma ** 2 * np.diag(np.linalg.inv(in_plane.T @ in_plane))
    assert np.allclose(var, expected, rtol=0.02)
