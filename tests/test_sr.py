"""DICOM SR TID 1500 measurement reports: planar ROIs in patient mm with their measurements,
written referencing the image series, read back (here and by highdicom), dciodvfy-clean, and
in napari a shapes layer both ways (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_dicomtools.core.errors import DicomToolsError
from napari_dicomtools.core.series import scan
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


def _report_2d(ct_dir, out, k=4):
    """A TID 1500 report with regions in 2D image coordinates (SCOORD) of slice ``k``, as
    many viewers write them, made by highdicom directly (not by write_sr)."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    series = scan(ct_dir)[0]
    frame = series.frames[k]
    dss = [pydicom.dcmread(f) for f in series.files]
    for ds in dss:  # type 2 attributes highdicom copies from the evidence
        for kw in ("AccessionNumber", "ReferringPhysicianName", "StudyID"):
            setattr(ds, kw, "")
    src = hd.sr.SourceImageForRegion(frame.instance.sop_class, frame.instance.sop_uid)
    regions = {
        "poly": hd.sr.ImageRegion("POLYLINE", np.array([[3.0, 4.0], [20.5, 4.0], [20.5, 11.0],
                                                       [3.0, 11.0], [3.0, 4.0]]), src),
        "ring": hd.sr.ImageRegion("ELLIPSE", np.array([[10.0, 16.0], [20.0, 16.0],
                                                       [15.0, 14.0], [15.0, 18.0]]), src),
    }
    groups = [hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=name),
        referenced_region=reg, finding_type=codes.SCT.Lesion) for name, reg in regions.items()]
    observer = hd.sr.ObservationContext(
        observer_person_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name="Reader^One")))
    report = hd.sr.MeasurementReport(observer, procedure_reported=codes.SCT.ImagingProcedure,
                                     imaging_measurements=groups)
    sr = hd.sr.Comprehensive3DSR(evidence=dss, content=report, series_instance_uid=hd.UID(),
                                 series_number=7, sop_instance_uid=hd.UID(), instance_number=1,
                                 manufacturer="other viewer")
    out.parent.mkdir(parents=True, exist_ok=True)
    sr.save_as(out)
    return out


@pytest.mark.parametrize("orientation", [(1, 0, 0, 0, 1, 0), (1, 0, 0, 0, 0.6, -0.8)])
def test_2d_regions_are_placed_on_their_image(tmp_path, orientation):
    from napari_dicomtools.core.volume import read_volume

    ct = tmp_path / "ct"
    write_series(ct, phantom((8, 24, 28)), spacing=(2.0, 0.7, 0.8), orientation=orientation)
    out = _report_2d(ct, tmp_path / "sr" / "r.dcm", k=4)
    rois, meta = read_sr(out)  # without the images: reported, not placed
    assert rois == [] and len(meta["problems"]) == 2
    assert all("not placed" in p for p in meta["problems"])
    rois, meta = read_sr(out, reference=ct)
    assert meta["problems"] == [] and [r.label for r in rois] == ["poly", "ring"]
    assert rois[0].graphic_type == "POLYGON"  # a closed SCOORD polyline is an area
    vol = read_volume(ct)
    # SCOORD (column, row): (0, 0) is the top left corner, the first pixel centre (0.5, 0.5)
    col_row = np.array([[3.0, 4.0], [20.5, 4.0], [20.5, 11.0], [3.0, 11.0], [3.0, 4.0]])
    vox = np.column_stack([col_row - 0.5, np.full(5, 4.0), np.ones(5)])
    np.testing.assert_allclose(rois[0].points, (vol.affine_lps @ vox.T).T[:, :3], atol=1e-6)
    ring = rois[1]
    assert ring.graphic_type == "POLYGON"  # the ellipse as a closed outline in its plane
    idx = np.linalg.solve(vol.affine_lps, np.column_stack([ring.points,
                                                           np.ones(len(ring.points))]).T).T
    np.testing.assert_allclose(idx[:, 2], 4.0, atol=1e-6)
    np.testing.assert_allclose(((idx[:, 0] + 0.5 - 15) / 5) ** 2
                               + ((idx[:, 1] + 0.5 - 16) / 2) ** 2, 1.0, atol=1e-6)
    assert polygon_area_mm2(rois[0].points) == pytest.approx(17.5 * 0.8 * 7 * 0.7)


def test_2d_report_in_a_study_folder_opens_on_its_slice(make_napari_viewer, tmp_path):
    write_series(tmp_path / "study" / "ct", phantom((8, 24, 28)), spacing=(2.0, 0.7, 0.8))
    _report_2d(tmp_path / "study" / "ct", tmp_path / "study" / "sr" / "r.dcm", k=4)
    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path / "study"), plugin="napari-dicomtools")
    image, shapes = layers
    assert type(shapes).__name__ == "Shapes" and not shapes.metadata["problems"]
    idx = np.array([image.world_to_data(shapes.data_to_world(p)) for p in shapes.data[0]])
    np.testing.assert_allclose(idx[:, 0], 4.0, atol=1e-6)  # on slice 4
    np.testing.assert_allclose(idx[:, 1:].min(0), [3.5, 2.5], atol=1e-6)  # row, column


def test_rois_read_back_write_again(tmp_path, ct):
    """What read_sr returns (Roi objects, measurements as a list of {name, value, unit}) is
    what write_sr takes: a report can be edited and written again. Before, write_sr called
    .items() on the Roi's measurement list and died with an AttributeError."""
    rois = [{"label": "lesion 1", "points": SQUARE, "finding": "neoplasm",
             "measurements": {"area": 80.0, "std": 3.5}}]
    got, _ = read_sr(write_sr(rois, ct, tmp_path / "a" / "sr.dcm"))
    assert [m["name"] for m in got[0].measurements] == ["Area", "Standard Deviation"]
    again, _ = read_sr(write_sr(got, ct, tmp_path / "b" / "sr.dcm"))
    assert again[0].measurements == got[0].measurements
    assert (again[0].label, again[0].finding, again[0].tracking_uid) == \
        (got[0].label, got[0].finding, got[0].tracking_uid)
    np.testing.assert_allclose(again[0].points, got[0].points)
    with pytest.raises(DicomToolsError, match="'area' has no value"):
        write_sr([{"points": SQUARE, "measurements": [{"name": "area"}]}], ct,
                 tmp_path / "c.dcm")
