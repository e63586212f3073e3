"""Images without patient geometry in a real napari viewer: real units, a time axis for a
cine, no anatomical letters and no LPS readout (ultrasound, secondary captures)."""

from __future__ import annotations

import os

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from qtpy.QtWidgets import QApplication

PALETTE = get_testdata_file("examples_palette.dcm")
CINE = get_testdata_file("examples_ybr_color.dcm")


def _viewer(make_napari_viewer, path):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    (layer,) = viewer.open(str(path), plugin="napari-dicomtools")
    QApplication.processEvents()
    return viewer, layer


def _letters(viewer):
    return viewer.window._dicomtools_letters.text()


NO_LETTERS = {"top": "", "bottom": "", "left": "", "right": ""}


def test_calibrated_ultrasound_still_is_in_mm_without_letters(make_napari_viewer):
    viewer, layer = _viewer(make_napari_viewer, PALETTE)
    assert tuple(str(u) for u in layer.units) == ("millimeter", "millimeter")
    assert np.allclose(layer.scale, 0.26229, rtol=1e-4)
    assert layer.metadata["spacing_source"] == "ultrasound region calibration"
    assert _letters(viewer) == NO_LETTERS


def test_cine_has_a_time_axis_in_seconds_and_pixels_without_a_size(make_napari_viewer):
    from napari_dicomtools._viewer import make_geometry_widget

    viewer, layer = _viewer(make_napari_viewer, CINE)
    assert layer.data.shape == (30, 240, 320, 3) and layer.rgb
    assert tuple(layer.axis_labels) == ("t", "row (y)", "column (x)")
    assert tuple(str(u) for u in layer.units) == ("second", "pixel", "pixel")
    assert layer.scale[0] == pytest.approx(1 / 30, rel=1e-3)
    assert tuple(layer.scale[1:]) == (1.0, 1.0)
    assert viewer.dims.axis_labels[0] == "t" and "S-I (z)" not in viewer.dims.axis_labels
    assert _letters(viewer) == NO_LETTERS
    box = make_geometry_widget(viewer)
    assert "no patient orientation" in box.info.value and "axial" not in box.info.value


def _stack_without_geometry(folder):
    """Three CT_small slices stripped of position, orientation and pixel spacing (as a
    secondary capture is)."""
    os.makedirs(folder)
    for k in range(3):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            delattr(ds, kw)
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{k}"
        ds.InstanceNumber = k + 1
        ds.save_as(os.path.join(folder, f"{k}.dcm"))


def test_stack_without_orientation_has_no_anatomy(make_napari_viewer, tmp_path):
    from napari_dicomtools._viewer import true_position_text

    _stack_without_geometry(tmp_path / "sc")
    viewer, layer = _viewer(make_napari_viewer, tmp_path / "sc")
    assert layer.data.shape == (3, 128, 128)
    assert tuple(layer.axis_labels) == ("image", "row (y)", "column (x)")
    assert tuple(str(u) for u in layer.units) == ("pixel",) * 3
    assert _letters(viewer) == NO_LETTERS
    text = true_position_text(layer, (1.0, 10.0, 20.0))
    assert text.startswith("voxel") and "LPS" not in text


def test_letters_come_back_with_a_patient_series(make_napari_viewer, tmp_path):
    """A CT opened beside the ultrasound still has its A/P/R/L letters."""
    from napari_dicomtools.core.synthetic import phantom, write_series

    viewer, _ = _viewer(make_napari_viewer, CINE)
    write_series(tmp_path / "ct", phantom((4, 32, 32)))
    viewer.open(str(tmp_path / "ct"), plugin="napari-dicomtools")
    QApplication.processEvents()
    assert set(_letters(viewer).values()) == {"A", "P", "R", "L"}
