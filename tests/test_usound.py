"""Ultrasound and other images without patient geometry: real units, no made-up anatomy.

pydicom's ``examples_palette.dcm`` (an 800x350 crop of an ultrasound screen, calibrated
0.02623 cm/px in its B-mode region) and ``examples_ybr_color.dcm`` (a 30-frame echo cine,
FrameTime 33.3 ms, shrunk to 320x240 after its 640x480 screen was calibrated), and data
sets built here with known regions.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.data import get_testdata_file
from pydicom.sequence import Sequence

from napari_dicomtools.core._pixelsize import (
    frame_time_ms,
    pixel_calibration,
    ultrasound_calibration,
)
from napari_dicomtools.core.series import scan

PALETTE = get_testdata_file("examples_palette.dcm")
CINE = get_testdata_file("examples_ybr_color.dcm")


def _region(box, delta, units=(3, 3), data_type=1):
    it = Dataset()
    it.RegionSpatialFormat = 1
    it.RegionDataType = data_type
    (it.RegionLocationMinX0, it.RegionLocationMinY0, it.RegionLocationMaxX1,
     it.RegionLocationMaxY1) = box
    it.PhysicalUnitsXDirection, it.PhysicalUnitsYDirection = units
    it.PhysicalDeltaX, it.PhysicalDeltaY = delta
    return it


def _us(*regions):
    ds = Dataset()
    ds.SequenceOfUltrasoundRegions = Sequence(list(regions))
    return ds


# ------------------------------------------------------------------ calibration rules


def test_one_region_in_cm_gives_the_pixel_size_in_mm():
    cal = ultrasound_calibration(_us(_region((10, 20, 500, 400), (0.03, 0.05))), 480, 640)
    assert cal.spacing == pytest.approx((0.5, 0.3))  # (row = Y, column = X) in mm
    assert cal.source == "ultrasound region calibration"


def test_regions_that_agree_are_used_and_counted():
    ds = _us(_region((0, 0, 300, 400), (0.02, 0.02)), _region((320, 0, 620, 400), (0.02, 0.02)))
    cal = ultrasound_calibration(ds, 480, 640)
    assert cal.spacing == pytest.approx((0.2, 0.2))
    assert "2 regions agree" in cal.note


def test_regions_that_disagree_use_the_main_tissue_region_and_say_so():
    big = _region((0, 0, 500, 400), (0.02, 0.02))
    small = _region((520, 0, 620, 100), (0.05, 0.05))
    cal = ultrasound_calibration(_us(big, small), 480, 640)
    assert cal.spacing == pytest.approx((0.2, 0.2))
    assert "largest tissue region" in cal.note


def test_regions_that_disagree_with_no_main_one_leave_the_size_unknown():
    a = _region((0, 0, 300, 400), (0.02, 0.02))
    b = _region((320, 0, 620, 400), (0.04, 0.04))
    cal = ultrasound_calibration(_us(a, b), 480, 640)
    assert cal.spacing is None and cal.source == ""
    assert "different calibrations" in cal.note


def test_regions_not_in_cm_give_no_size():
    doppler = _region((0, 400, 600, 470), (0.01, 5.0), units=(4, 7), data_type=3)
    cal = ultrasound_calibration(_us(doppler), 480, 640)
    assert cal.spacing is None and "calibrated in cm" in cal.note


def test_a_region_past_both_edges_is_not_this_images_calibration():
    cal = ultrasound_calibration(_us(_region((84, 31, 595, 414), (0.05, 0.05))), 240, 320)
    assert cal.spacing is None and "both directions" in cal.note


def test_pixel_spacing_wins_over_the_regions():
    ds = _us(_region((0, 0, 100, 100), (0.05, 0.05)))
    ds.PixelSpacing = [0.3, 0.4]
    assert pixel_calibration(ds, 200, 200).spacing == pytest.approx((0.3, 0.4))
    assert pixel_calibration(ds, 200, 200).source == "PixelSpacing"
    del ds.PixelSpacing
    ds.ImagerPixelSpacing = [0.2, 0.2]
    assert pixel_calibration(ds, 200, 200).source == "ImagerPixelSpacing"


def test_frame_time_from_frame_time_or_its_vector():
    ds = Dataset()
    assert frame_time_ms(ds, 5) == (None, "")
    ds.FrameTimeVector = [0, 40, 40, 40]
    assert frame_time_ms(ds, 4) == (40.0, "")
    ds.FrameTime = 33.3
    assert frame_time_ms(ds, 4)[0] == pytest.approx(33.3)
    assert frame_time_ms(ds, 1) == (None, "")


# ------------------------------------------------------------------ pydicom's files


def test_palette_ultrasound_is_calibrated_from_its_region():
    (s,) = scan(PALETTE)
    assert s.pixel_spacing == pytest.approx((0.26229, 0.26229), rel=1e-4)
    assert s.spacing_source == "ultrasound region calibration"
    assert s.spatial_units == "mm" and s.pixel_size_known
    assert not s.has_patient_orientation
    assert any("cropped screen" in p for p in s.problems)  # rows 60-518 in 350 rows


def test_resized_cine_has_unknown_pixel_size_and_frames_in_time():
    (s,) = scan(CINE)
    assert not s.pixel_size_known and s.spatial_units == "pixel" and s.spacing_source == ""
    assert s.n_time == 30 and s.n_slices == 1 and s.shape == (30, 1, 240, 320)
    assert s.frame_time_ms == pytest.approx(33.333, abs=1e-3)
    assert not any("InstanceNumber" in p for p in s.problems)
    assert any("pixel size unknown" in p for p in s.problems)


def test_ct_keeps_its_pixel_spacing():
    (s,) = scan(get_testdata_file("CT_small.dcm"))
    assert s.spacing_source == "PixelSpacing" and s.spatial_units == "mm"
    assert s.has_patient_orientation and s.frame_time_ms is None


def test_two_cine_files_of_one_series_are_two_loops(tmp_path):
    import pydicom

    for k in (1, 2):
        ds = pydicom.dcmread(CINE)
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{k}"
        ds.InstanceNumber = k
        ds.save_as(os.path.join(tmp_path, f"loop{k}.dcm"))
    found = scan(tmp_path)
    assert [(s.split, s.n_time) for s in found] == [("cine 1", 30), ("cine 2", 30)]


def test_info_says_the_truth(capsys):
    from napari_dicomtools.cli import main

    assert main(["info", PALETTE]) == 0
    out = capsys.readouterr().out
    assert "0.2623 x 0.2623 mm (ultrasound region calibration)" in out
    assert "no patient orientation" in out and " x 1 mm" not in out
    assert main(["info", CINE]) == 0
    out = capsys.readouterr().out
    assert "pixel size unknown" in out
    assert "30 frames in time, 33.3 ms apart" in out
    assert "stacked by InstanceNumber" not in out and "unknown, 1 file" not in out


def test_the_cine_reads_as_time_points_of_one_plane():
    from napari_dicomtools.core.volume import read_volume

    vol = read_volume(CINE)
    assert vol.array.shape == (30, 1, 240, 320, 3) and vol.n_time == 30
    # frames differ: they are moments of the loop, in order
    assert not np.array_equal(np.asarray(vol.array[0]), np.asarray(vol.array[15]))


def test_nifti_of_a_calibrated_still_has_its_mm_spacing(tmp_path):
    import nibabel as nib

    from napari_dicomtools.core.nifti import write_series_nifti

    (s,) = scan(PALETTE)
    img = nib.load(write_series_nifti(s, tmp_path / "us.nii"))
    assert img.header.get_zooms()[:2] == pytest.approx((0.26229, 0.26229), rel=1e-4)
    assert img.header.get_xyzt_units()[0] == "mm"


@pytest.mark.parametrize("streamed", [True, False])
def test_nifti_of_an_uncalibrated_cine_warns_and_says_units_unknown(tmp_path, streamed):
    import nibabel as nib

    from napari_dicomtools.core.nifti import write_nifti, write_series_nifti
    from napari_dicomtools.core.volume import read_volume

    (s,) = scan(CINE)
    out = tmp_path / "cine.nii"
    with pytest.warns(UserWarning, match="pixel size unknown"):
        if streamed:
            write_series_nifti(s, out)
        else:
            write_nifti(read_volume(s), out)
    img = nib.load(out)
    assert img.shape == (320, 240, 1, 30)
    assert img.header.get_xyzt_units() == ("unknown", "sec")
    assert img.header.get_zooms()[3] == pytest.approx(1 / 30, rel=1e-3)  # the frame time


def test_metadata_table_and_json_do_not_invent_a_size(capsys):
    import json

    from napari_dicomtools.cli import main
    from napari_dicomtools.core.metadata import metadata_table

    rows = {r["shape"]: r for r in metadata_table([PALETTE, CINE], as_frame=False)}
    cine, still = rows["30x1x240x320"], rows["1x350x800"]
    assert cine["spacing_mm"] == "" and cine["spacing_source"] == ""
    assert cine["frame_time_ms"] == pytest.approx(33.333, abs=1e-3)
    assert still["spacing_source"] == "ultrasound region calibration"
    assert still["spacing_mm"].endswith("0.262288\\0.262288") and still["frame_time_ms"] == ""
    assert main(["info", "--json", CINE]) == 0
    (s,) = json.loads(capsys.readouterr().out)["series"]
    assert s["spacing_mm"] is None and s["frame_time_ms"] == pytest.approx(33.333, abs=1e-3)
