"""PNG export: DICOM windowing, radiological orientation, square pixels, burned-in overlays."""

import os

import numpy as np
import pytest
from PIL import Image

from napari_dicomtools import DicomToolsError, read_volume
from napari_dicomtools.cli import main
from napari_dicomtools.core.png import WINDOW_PRESETS, apply_window, export_annotated, export_png
from napari_dicomtools.core.synthetic import phantom, write_series


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
    assert [os.path.basename(f) for f in files] == ["a_0002.png", "a_0003.png"]
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
    assert [os.path.basename(p) for p in written] == [f"shot_{k:04d}.png"]
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
