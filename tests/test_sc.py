"""Secondary captures: a picture filed in the study of the images it shows, with the view's
PatientOrientation, on pydicom's test files and a synthetic series (the PACS round trip and
dciodvfy are in test_pacs_send_objects.py)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from napari_dicomtools.core.errors import DicomToolsError
from napari_dicomtools.core.sc import read_png, secondary_capture, write_secondary_capture
from napari_dicomtools.core.series import scan
from napari_dicomtools.core.synthetic import write_series

MR = get_testdata_file("MR_small.dcm")


@pytest.mark.parametrize(("orientation", "codes"), [
    ("coronal", ["L", "F"]), ("Sagittal", ["P", "F"]), (("R", "A"), ["R", "A"])])
def test_view_names_and_codes_set_patient_orientation(orientation, codes):
    ds = secondary_capture(np.zeros((4, 4), np.uint8), MR, orientation=orientation)
    assert list(ds.PatientOrientation) == codes


def test_unknown_view_name_is_refused_with_the_choices():
    # an unknown name used to reach highdicom as a string and fail there with a ValueError
    with pytest.raises(DicomToolsError, match="unknown view 'oblique'.*axial"):
        secondary_capture(np.zeros((4, 4), np.uint8), MR, orientation="oblique")


def test_spacing_study_and_new_series(tmp_path):
    ref = pydicom.dcmread(MR, stop_before_pixels=True)
    out = write_secondary_capture(np.arange(12, dtype=np.uint8).reshape(3, 4), MR,
                                  tmp_path / "sc.dcm", pixel_spacing=(0.5, 0.25),
                                  series_number=7, instance_number=3)
    ds = pydicom.dcmread(out)
    assert [float(v) for v in ds.PixelSpacing] == [0.5, 0.25]
    assert (ds.StudyInstanceUID, ds.PatientID) == (ref.StudyInstanceUID, ref.PatientID)
    assert ds.SeriesInstanceUID != ref.SeriesInstanceUID
    assert (ds.SeriesNumber, ds.InstanceNumber) == (7, 3)
    np.testing.assert_array_equal(ds.pixel_array, np.arange(12).reshape(3, 4))
    assert "PatientOrientation" in ds and not ds.PatientOrientation  # type 2: unknown
    with pytest.raises(DicomToolsError, match="exists"):
        write_secondary_capture(np.zeros((3, 4), np.uint8), MR, out)


def test_reference_as_folder_series_or_files(tmp_path):
    truth = write_series(tmp_path / "ct", np.zeros((2, 4, 4), np.int16), study_uid="1.2.3.4")
    series = scan(tmp_path / "ct")[0]
    for ref in (tmp_path / "ct", series, truth.files, [str(f) for f in truth.files]):
        ds = secondary_capture(np.ones((2, 2), bool), ref)
        assert ds.StudyInstanceUID == "1.2.3.4"
        assert ds.pixel_array.max() == 255  # a mask shows white
    with pytest.raises(DicomToolsError, match="no reference"):
        secondary_capture(np.ones((2, 2), bool), [])


def test_float_rgba_is_scaled_and_composited():
    rgba = np.zeros((2, 2, 4), np.float32)
    rgba[..., 1], rgba[..., 3] = 1.0, 0.5
    ds = secondary_capture(rgba, MR)
    assert ds.PhotometricInterpretation == "RGB"
    assert tuple(ds.pixel_array[0, 0]) == (0, 128, 0)
    with pytest.raises(DicomToolsError, match="8-bit samples"):
        secondary_capture(np.full((2, 2, 3), 300, np.int32), MR)


def test_read_png_modes(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((3, 5, 3), np.uint8)).save(tmp_path / "rgb.png")
    Image.fromarray(np.zeros((3, 5), np.uint16)).save(tmp_path / "deep.png")
    (tmp_path / "bad.png").write_bytes(b"not a picture")
    assert read_png(tmp_path / "rgb.png").shape == (3, 5, 3)
    with pytest.raises(DicomToolsError, match="not 8-bit"):
        read_png(tmp_path / "deep.png")
    with pytest.raises(DicomToolsError, match="not a readable picture"):
        read_png(tmp_path / "bad.png")
