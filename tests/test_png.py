"""PNG export: DICOM windowing, radiological orientation, square pixels, burned-in overlays."""

import os
import re

import numpy as np
import pytest
from conftest import write_4d
from PIL import Image

from napari_dicomtools import DicomToolsError, read_volume
from napari_dicomtools.cli import main
from napari_dicomtools.core.png import WINDOW_PRESETS, apply_window, export_annotated, export_png
from napari_dicomtools.core.synthetic import phantom, write_series

SAGITTAL = (0, 1, 0, 0, 0, -1)  # along a row: posterior; down a column: inferior
CORONAL = (1, 0, 0, 0, 0, -1)  # along a row: to the patient's left; down a column: inferior


def test_window_follows_the_dicom_linear_function():
    c, w = 40.0, 400.0
    x = np.array([-1000, c - 0.5 - (w - 1) / 2, c, c - 0.5 + (w - 1) / 2 + 0.01, 3000])
    y = apply_window(x, c, w)
    assert y[0] == 0 and y[1] == 0 and y[-1] == 255 and y[-2] == 255
    assert abs(int(y[2]) - 128) <= 1
    assert WINDOW_PRESETS["lung"] == (-600.0, 1500.0)


@pytest.fixture
def phantom_volume(tmp_path):
    write_series(tmp_path / "dcm", phantom((30, 80, 80), noise=0), spacing=(2.0, 0.5, 0.5))
    return read_volume(tmp_path / "dcm")


def test_axial_png_values_and_radiological_orientation(phantom_volume, tmp_path):
    files = export_png(phantom_volume, tmp_path / "png", window=(40, 400))
    assert len(files) == 30 and files[0].endswith("axial_0000.png")
    img = np.asarray(Image.open(files[21]).convert("L"))  # lesion slice (z = 0.7 n)
    assert img.shape == (80, 80)
    assert img[2, 2] == 0  # air
    assert abs(int(img[55, 20]) - 128) <= 2  # soft tissue at the window centre
    # the lesion sits at the patient's left (image right) and anterior (image top)
    ys, xs = np.nonzero(img == 255)
    lesion = (ys < 40) & (xs > 40)
    assert lesion.sum() > 5


def test_reformats_get_square_pixels_and_superior_up(phantom_volume, tmp_path):
    (cor,) = export_png(phantom_volume, tmp_path / "c", axis="coronal", slices=[40],
                        preset="soft_tissue")
    img = np.asarray(Image.open(cor).convert("L"))
    assert img.shape == (120, 80)  # 30 slices x 2.0 mm -> 120 px of 0.5 mm
    (sag,) = export_png(phantom_volume, tmp_path / "s", axis="sagittal", slices=[40],
                        preset="bone")
    simg = np.asarray(Image.open(sag).convert("L"))
    # the spine (posterior) is on the right of a sagittal image
    cols = np.nonzero((simg > 150).any(axis=0))[0]  # 700 HU in the bone window
    assert cols.min() > 40


def test_never_overwrites(phantom_volume, tmp_path):
    export_png(phantom_volume, tmp_path / "p", slices=[0])
    with pytest.raises(DicomToolsError, match="not overwriting"):
        export_png(phantom_volume, tmp_path / "p", slices=[0])
    export_png(phantom_volume, tmp_path / "p", slices=[0], overwrite=True)


def test_annotations_are_burned_in(tmp_path):
    img = np.zeros((5, 40, 60), np.int16)
    labels = np.zeros(img.shape, np.uint8)
    labels[3, 10:20, 30:50] = 2
    rect = {"type": "rectangle", "color": (255, 0, 0), "label": "lesion",
            "vertices": np.array([[2, 5, 5], [2, 5, 20], [2, 15, 20], [2, 15, 5]]) * 1.0}
    files = export_annotated(img, (1, 1, 1), (0, 0, 0), str(tmp_path / "a.png"),
                             window=(50, 100), shapes=[rect], labels=labels)
    assert [os.path.basename(f) for f in files] == ["a_axial_0002.png", "a_axial_0003.png"]
    a2 = np.asarray(Image.open(files[0]))
    assert tuple(a2[5, 10]) == (255, 0, 0)  # rectangle top edge
    assert tuple(a2[30, 30]) == (0, 0, 0)
    a3 = np.asarray(Image.open(files[1]))
    assert (a3[10:20, 30:50] != 0).any() and tuple(a3[15, 40]) == (0, 0, 0)  # outline only


def test_napari_png_writer_burns_shapes(make_napari_viewer, ct_folder, tmp_path):
    folder, truth = ct_folder
    viewer = make_napari_viewer()
    img = viewer.open(str(folder), plugin="napari-dicomtools")[0]
    k = 12
    corners = np.array([[k, 10, 10], [k, 10, 30], [k, 25, 30], [k, 25, 10]], float)
    world = corners * img.scale + img.translate
    shapes = viewer.add_shapes([world], shape_type="rectangle", edge_color="lime",
                               face_color="transparent")
    viewer.layers.selection = {img, shapes}
    out = tmp_path / "shot.png"
    written = viewer.layers.save(str(out), selected=True, plugin="napari-dicomtools")
    assert [os.path.basename(p) for p in written] == [f"shot_axial_{k:04d}.png"]
    arr = np.asarray(Image.open(written[0]))
    assert tuple(arr[10, 20]) == (0, 255, 0)


def test_cli_png(ct_folder, tmp_path, capsys):
    folder, _ = ct_folder
    out = tmp_path / "png"
    assert main(["png", str(folder), str(out), "--preset", "lung", "--slices", "0:3", "-q"]) == 0
    (sub,) = list(out.iterdir())
    assert sub.name == "3_Synthetic_phantom"
    assert sorted(p.name for p in sub.iterdir()) == ["axial_0000.png", "axial_0001.png",
                                                      "axial_0002.png"]
    assert main(["png", str(folder), str(out), "--slices", "0", "-q"]) == 1
    assert "not overwriting" in capsys.readouterr().err
    assert main(["png", str(folder), str(out), "--preset", "nope", "-q"]) == 1
    assert "unknown preset" in capsys.readouterr().err


def _red(path):
    """Row and column indices of the pure red pixels of a PNG."""
    a = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return np.nonzero((a[..., 0] > 200) & (a[..., 1] < 80) & (a[..., 2] < 80)), a.shape[:2]


def _box_in_view(viewer, layer, up, side):
    """A rectangle on the slice shown, in the quarter of the displayed plane at fractions
    ``up`` of the vertical world axis and ``side`` of the horizontal one (of the layer)."""
    p = np.asarray(viewer.dims.point, float)
    v, h = viewer.dims.order[-2], viewer.dims.order[-1]
    lo = np.asarray(layer.translate, float)
    span = (np.asarray(layer.data.shape) - 1) * np.asarray(layer.scale, float)
    corners = []
    for fv, fh in ((up[0], side[0]), (up[0], side[1]), (up[1], side[1]), (up[1], side[0])):
        q = p.copy()
        q[v] = lo[v] + fv * span[v]
        q[h] = lo[h] + fh * span[h]
        corners.append(q)
    return viewer.add_shapes([np.array(corners)], shape_type="rectangle", edge_color="red",
                             face_color="transparent", edge_width=1)


@pytest.mark.parametrize("orientation, plane, other", [(SAGITTAL, "sagittal", "coronal"),
                                                       (CORONAL, "coronal", "sagittal")])
def test_shapes_drawn_on_sagittal_and_coronal_views_land_in_their_plane(
        make_napari_viewer, tmp_path, orientation, plane, other):
    """The tester's case (issue): a box drawn on a sagittal or coronal view was dropped and
    every axial slice written instead."""
    import napari

    from napari_dicomtools._viewer import set_plane

    write_series(tmp_path / "s", phantom((16, 40, 48), noise=0), spacing=(2.0, 0.8, 0.8),
                 orientation=orientation)
    viewer = make_napari_viewer()
    img = viewer.open(str(tmp_path / "s"), plugin="napari-dicomtools")[0]
    axis = ("axial", "coronal", "sagittal").index(plane)
    assert viewer.dims.order[0] == axis  # opened in its acquisition plane
    k = int(round((viewer.dims.point[axis] - img.translate[axis]) / img.scale[axis]))
    # superior (z up) and, on the screen's left: anterior (sagittal) / patient's right (coronal)
    box = _box_in_view(viewer, img, up=(0.7, 0.9), side=(0.1, 0.3))
    written = napari.save_layers(str(tmp_path / "x.png"), [img, box],
                                 plugin="napari-dicomtools")
    assert [os.path.basename(f) for f in written] == [f"x_{plane}_{k:04d}.png"]
    (rows, cols), (h, w) = _red(written[0])
    assert len(rows) > 20
    assert rows.max() < h / 2 and cols.max() < w / 2  # top left, as the viewer shows it
    assert rows.min() > 0.05 * h and cols.min() > 0.05 * w
    # a second box, in the other reformatted plane: each plane gets its own file
    set_plane(viewer, other, keep_cursor=False)
    j = int(round((viewer.dims.point[3 - axis] - img.translate[3 - axis]) / img.scale[3 - axis]))
    box2 = _box_in_view(viewer, img, up=(0.1, 0.3), side=(0.7, 0.9))  # inferior, screen right
    written = napari.save_layers(str(tmp_path / "y.png"), [img, box, box2],
                                 plugin="napari-dicomtools")
    assert sorted(os.path.basename(f) for f in written) == sorted(
        [f"y_{plane}_{k:04d}.png", f"y_{other}_{j:04d}.png"])
    (rows, cols), (h, w) = _red(next(f for f in written if f"y_{other}_" in f))
    assert rows.min() > h / 2 and cols.min() > w / 2  # bottom right
    # the other plane shown and no shape: every slice of that plane, not axial
    written = napari.save_layers(str(tmp_path / "z.png"), [img], plugin="napari-dicomtools")
    assert len(written) == img.data.shape[3 - axis]
    assert all(re.search(rf"z_{other}_\d{{4}}\.png$", f) for f in written)


def test_napari_png_writer_defaults_to_the_acquisition_plane_without_a_viewer(tmp_path):
    napari = pytest.importorskip("napari")
    from napari_dicomtools._reader import read_dicom
    from napari_dicomtools._writer import write_png_layers

    write_series(tmp_path / "s", phantom((6, 20, 24), noise=0), spacing=(2.0, 1.0, 1.0),
                 orientation=SAGITTAL)
    assert napari.current_viewer() is None
    written = write_png_layers(str(tmp_path / "x.png"), read_dicom(str(tmp_path / "s")))
    assert [os.path.basename(f) for f in written] == [f"x_sagittal_{k:04d}.png"
                                                      for k in range(6)]


def test_a_shape_on_no_single_slice_is_named_not_dropped(tmp_path):
    img = np.zeros((6, 20, 20), np.int16)
    flat = {"type": "rectangle", "color": (255, 0, 0), "name": "box",
            "vertices": [[2, 4, 4], [2, 4, 12], [2, 12, 12], [2, 12, 4]]}
    skew = {"type": "polygon", "name": "tilted", "label": "lesion",
            "vertices": [[1, 4, 4], [3, 4, 12], [5, 12, 12]]}
    outside = {"type": "path", "vertices": [[9, 1, 1], [9, 5, 5]]}
    with pytest.warns(UserWarning, match=r"not drawn: tilted \('lesion'\) lies on no single "
                                         r"slice; shape 3 lies outside the image \(axial slice 9\)"):
        files = export_annotated(img, (1, 1, 1), (0, 0, 0), tmp_path / "a.png",
                                 window=(0, 100), shapes=[flat, skew, outside])
    assert [os.path.basename(f) for f in files] == ["a_axial_0002.png"]
    with pytest.raises(DicomToolsError, match="no shape lies on one slice.*tilted"):
        export_annotated(img, (1, 1, 1), (0, 0, 0), tmp_path / "b.png", window=(0, 100),
                         shapes=[skew])
    assert not list(tmp_path.glob("b_*"))


def test_a_line_on_two_planes_goes_to_the_plane_shown(tmp_path):
    img = np.zeros((6, 20, 20), np.int16)
    line = {"type": "line", "vertices": [[2, 5, 3], [2, 5, 15]]}  # on axial 2 and coronal 5
    (f,) = export_annotated(img, (1, 1, 1), (0, 0, 0), tmp_path / "a.png", window=(0, 100),
                            shapes=[line], plane="coronal")
    assert os.path.basename(f) == "a_coronal_0005.png"
    (f,) = export_annotated(img, (1, 1, 1), (0, 0, 0), tmp_path / "b.png", window=(0, 100),
                            shapes=[line], plane="sagittal")
    assert os.path.basename(f) == "b_axial_0002.png"


def test_labels_outlines_follow_the_plane(tmp_path):
    img = np.zeros((6, 20, 20), np.int16)
    labels = np.zeros(img.shape, np.uint8)
    labels[1:4, 5:9, 10:12] = 1
    files = export_annotated(img, (1, 1, 1), (0, 0, 0), tmp_path / "a.png",
                             window=(1000, 100), labels=labels, plane="sagittal")
    assert [os.path.basename(f) for f in files] == ["a_sagittal_0010.png",
                                                    "a_sagittal_0011.png"]
    a = np.asarray(Image.open(files[0]).convert("RGB"))
    ys, xs = np.nonzero(a.any(axis=-1))
    # z 1..3 with superior up (rows 5 - z), y 5..8 (columns)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (2, 4, 5, 8)


def test_napari_png_writer_never_overwrites_numbered_files(make_napari_viewer, ct_folder,
                                                           tmp_path):
    import napari

    folder, _ = ct_folder
    viewer = make_napari_viewer()
    img = viewer.open(str(folder), plugin="napari-dicomtools")[0]
    first = napari.save_layers(str(tmp_path / "x.png"), [img], plugin="napari-dicomtools")
    assert len(first) == 30
    (tmp_path / "x_axial_0019.png").write_bytes(b"mine")
    (tmp_path / "x_axial_0000.png").unlink()
    with pytest.raises(DicomToolsError, match=r"x_axial_0001.png: exists \(so do "
                                              r"x_axial_0002.png, x_axial_0003.png, "
                                              r"x_axial_0004.png and 25 more\); not overwriting"):
        napari.save_layers(str(tmp_path / "x.png"), [img], plugin="napari-dicomtools")
    assert (tmp_path / "x_axial_0019.png").read_bytes() == b"mine"
    assert not (tmp_path / "x_axial_0000.png").exists()  # nothing written at all


@pytest.fixture
def sagittal_folder(tmp_path):
    write_series(tmp_path / "sag", phantom((12, 40, 32), noise=0), spacing=(2.0, 0.8, 0.8),
                 orientation=SAGITTAL)
    return tmp_path / "sag"


def test_cli_png_defaults_to_the_acquisition_plane(sagittal_folder, tmp_path, capsys):
    out = tmp_path / "png"
    assert main(["png", str(sagittal_folder), str(out)]) == 0
    (sub,) = out.iterdir()
    assert sorted(p.name for p in sub.iterdir()) == [f"sagittal_{k:04d}.png" for k in range(12)]
    assert "12 PNG (sagittal, the acquisition plane)" in capsys.readouterr().out
    # each file is an acquired slice as stored (top row superior, first column anterior,
    # as radiologists show a sagittal slice), in the order of its x position
    vol = read_volume(sagittal_folder)
    xs = [float((vol.affine_lps @ [0, 0, s, 1])[0]) for s in range(12)]
    for i, s in enumerate(np.argsort(xs)):
        img = np.asarray(Image.open(sub / f"sagittal_{i:04d}.png").convert("L"))
        assert np.array_equal(img, apply_window(np.asarray(vol.array[s]), 40, 400)), i
    assert main(["png", str(sagittal_folder), str(out), "--axis", "axial"]) == 0
    assert len(list(sub.glob("axial_*.png"))) == 40  # reformats, asked for
    assert "40 PNG (axial) from" in capsys.readouterr().out


def test_cli_png_refusal_names_only_force(sagittal_folder, tmp_path, capsys):
    out = tmp_path / "png"
    assert main(["png", str(sagittal_folder), str(out), "--slices", "0:3", "-q"]) == 0
    assert main(["png", str(sagittal_folder), str(out), "--slices", "0:3", "-q"]) == 1
    err = capsys.readouterr().err
    assert "sagittal_0000.png: exists (so do sagittal_0001.png, sagittal_0002.png); " \
           "not overwriting (use --force)" in err
    assert "overwrite=True" not in err
    assert main(["png", str(sagittal_folder), str(out), "--slices", "0:3", "--force",
                 "-q"]) == 0


def test_cli_png_4d_time_points(tmp_path, capsys):
    write_4d(tmp_path / "dce", [np.full((4, 16, 16), 100 * t, np.int32) for t in range(3)],
             window=None, intercept=0)
    out = tmp_path / "png"
    assert main(["png", str(tmp_path / "dce"), str(out), "--window", "100,200"]) == 0
    (sub,) = out.iterdir()
    names = sorted(p.name for p in sub.iterdir())
    assert names == [f"axial_t{t:03d}_{k:04d}.png" for t in range(3) for k in range(4)]
    assert "12 PNG (axial, the acquisition plane; time points 0-2 of 3)" in \
        capsys.readouterr().out
    grey = [int(np.asarray(Image.open(sub / f"axial_t{t:03d}_0002.png").convert("L"))[8, 8])
            for t in range(3)]
    assert grey == [0, 128, 255]  # each file holds its own time point
    assert main(["png", str(tmp_path / "dce"), str(tmp_path / "one"), "--time", "1",
                 "--window", "100,200"]) == 0
    (sub1,) = (tmp_path / "one").iterdir()
    assert sorted(p.name for p in sub1.iterdir()) == [f"axial_t001_{k:04d}.png"
                                                      for k in range(4)]
    assert "4 PNG (axial, the acquisition plane; time point 1 of 3)" in capsys.readouterr().out
    assert main(["png", str(tmp_path / "dce"), str(tmp_path / "two"), "--time", "5",
                 "-q"]) == 1
    assert "time point 5 out of range 0..2" in capsys.readouterr().err
    assert main(["png", str(tmp_path / "dce"), str(tmp_path / "two"), "--time", "x",
                 "-q"]) == 1
    assert "--time wants" in capsys.readouterr().err


def test_export_png_time_of_a_3d_volume(phantom_volume, tmp_path):
    assert len(export_png(phantom_volume, tmp_path / "a", slices=[0], time=0)) == 1
    with pytest.raises(ValueError, match="3D volume"):
        export_png(phantom_volume, tmp_path / "b", slices=[0], time=1)


def test_napari_png_writer_4d_writes_the_time_point_drawn_on_or_shown(make_napari_viewer,
                                                                       tmp_path):
    import napari

    write_4d(tmp_path / "dce", [np.full((4, 16, 16), 100 * t, np.int32) for t in range(3)],
             window=(100, 200), intercept=0)
    viewer = make_napari_viewer()
    img = viewer.open(str(tmp_path / "dce"), plugin="napari-dicomtools")[0]
    assert img.data.shape[:2] == (3, 4)
    viewer.dims.set_point(0, img.translate[0] + 2 * img.scale[0])  # time point 2
    box = _box_in_view(viewer, img, up=(0.2, 0.6), side=(0.2, 0.6))
    k = int(round((viewer.dims.point[1] - img.translate[1]) / img.scale[1]))
    viewer.dims.set_point(0, img.translate[0] + 1 * img.scale[0])  # now showing time point 1
    (f,) = napari.save_layers(str(tmp_path / "x.png"), [img, box], plugin="napari-dicomtools")
    assert os.path.basename(f) == f"x_t002_axial_{k:04d}.png"  # where the box was drawn
    (rows, _), _ = _red(f)
    assert len(rows) > 10
    assert int(np.asarray(Image.open(f).convert("L"))[0, 0]) == 255  # time point 2's value
    written = napari.save_layers(str(tmp_path / "y.png"), [img], plugin="napari-dicomtools")
    assert [os.path.basename(p) for p in written] == [f"y_t001_axial_{j:04d}.png"
                                                      for j in range(4)]
    assert int(np.asarray(Image.open(written[0]).convert("L"))[0, 0]) == 128  # time point 1
