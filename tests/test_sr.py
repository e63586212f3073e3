"""DICOM SR TID 1500 measurement reports: planar ROIs in patient mm with their measurements,
written referencing the image series, read back (here and by highdicom), dciodvfy-clean, and
in napari a shapes layer both ways (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_dicomtools.core.errors import DicomToolsError
from napari_dicomtools.core.scan import scan
from napari_dicomtools.core.sr import path_length_mm, polygon_area_mm2, read_sr, write_sr
from napari_dicomtools.core.synthetic import phantom, write_series

SQUARE = np.array([[0, 0, -56.0], [10, 0, -56.0], [10, 8, -56.0], [0, 8, -56.0]])


@pytest.fixture
def ct(tmp_path):
    write_series(tmp_path / "ct", phantom((10, 32, 32)), spacing=(2.0, 0.7, 0.8))
    return tmp_path / "ct"


def test_report_round_trip_and_validity(tmp_path, ct, dciodvfy_errors):
    import highdicom as hd

    rois = [{"label": "lesion 1", "points": SQUARE, "finding": "neoplasm",
             "measurements": {"area": 80.0, "mean": 42.5}},
            {"label": "ruler", "type": "line", "points": SQUARE[:2],
             "measurements": {"length": 10.0}}]
    out = write_sr(rois, ct, tmp_path / "out" / "sr.dcm")
    got, meta = read_sr(out)
    assert [r.label for r in got] == ["lesion 1", "ruler"]
    assert got[0].graphic_type == "POLYGON" and got[1].graphic_type == "POLYLINE"
    np.testing.assert_allclose(got[0].points, np.vstack([SQUARE, SQUARE[:1]]))
    assert got[0].finding == "Neoplasm"
    assert got[0].measurements == [{"name": "Area", "value": 80.0, "unit": "mm2"},
                                   {"name": "Mean", "value": 42.5, "unit": "[hnsf'U]"}]
    assert meta["referenced_series_uids"] == [scan(ct)[0].uid]
    assert meta["frame_of_reference"] == scan(ct)[0].frame_of_reference
    assert dciodvfy_errors(out) == []
    # highdicom reads the same template
    groups = hd.sr.srread(out).content.get_planar_roi_measurement_groups()
    assert [str(g.tracking_identifier) for g in groups] == ["lesion 1", "ruler"]


def test_geometry_helpers_measure_in_mm():
    assert polygon_area_mm2(SQUARE) == pytest.approx(80.0)
    tilted = SQUARE @ np.array([[1, 0, 0], [0, 0.6, 0.8], [0, -0.8, 0.6]]).T
    assert polygon_area_mm2(tilted) == pytest.approx(80.0)
    assert path_length_mm(SQUARE[:3]) == pytest.approx(18.0)


def test_bad_reports_are_refused(tmp_path, ct):
    with pytest.raises(DicomToolsError, match="no regions"):
        write_sr([], ct, tmp_path / "a.dcm")
    with pytest.raises(DicomToolsError, match="too few"):
        write_sr([{"points": SQUARE[:2]}], ct, tmp_path / "a.dcm")
    with pytest.raises(DicomToolsError, match="unknown measurement"):
        write_sr([{"points": SQUARE, "measurements": {"kurtosis": 1}}], ct, tmp_path / "a.dcm")
    with pytest.raises(DicomToolsError, match="source"):
        write_sr([{"points": SQUARE}], ct, ct / "sr.dcm")
    with pytest.raises(DicomToolsError):
        read_sr(next(ct.iterdir()))


def test_napari_shapes_to_sr_and_back(make_napari_viewer, tmp_path, ct):
    from napari_dicomtools._writer import write_shapes_sr

    viewer = make_napari_viewer()
    image = viewer.open(str(ct), plugin="napari-dicomtools")[0]
    z = image.translate[0] + 3 * image.scale[0]  # on slice 3 (world z, LPS mm)
    poly = np.array([[z, -30, -30], [z, -30, -20], [z, -22, -20], [z, -22, -30]], float)
    shapes = viewer.add_shapes([poly, poly[:2]], shape_type=["polygon", "path"],
                               features={"label": ["tumour", "axis"]})
    (out,) = write_shapes_sr(str(tmp_path / "m.dcm"), shapes.data, shapes._get_state())
    got, _ = read_sr(out)
    assert [r.label for r in got] == ["tumour", "axis"]
    np.testing.assert_allclose(got[0].points[:-1], poly[:, ::-1], atol=1e-6)  # LPS
    assert got[0].measurements[0]["value"] == pytest.approx(80.0)  # 10 x 8 mm
    assert got[1].measurements[0] == {"name": "Length", "value": pytest.approx(10.0),
                                      "unit": "mm"}
    # a study folder with the report opens it as a shapes layer at the same place
    (tmp_path / "study").mkdir()
    import shutil

    shutil.copy(out, tmp_path / "study" / "m.dcm")
    (layer,) = viewer.open(str(tmp_path / "study"), plugin="napari-dicomtools")
    assert type(layer).__name__ == "Shapes"
    np.testing.assert_allclose(layer.data[0], poly, atol=1e-6)
    assert list(layer.features["label"]) == ["tumour", "axis"]
    assert layer.features["Area (mm2)"][0] == pytest.approx(80.0)


def test_shapes_on_no_dicom_layer_are_refused(make_napari_viewer, tmp_path):
    from napari_dicomtools._writer import write_shapes_sr

    viewer = make_napari_viewer()
    shapes = viewer.add_shapes([np.array([[0, 0, 0], [0, 5, 0], [0, 5, 5.0]])],
                               shape_type="polygon")
    with pytest.raises(ValueError, match="no DICOM image layer"):
        write_shapes_sr(str(tmp_path / "x.dcm"), shapes.data, shapes._get_state())
