"""RT Dose: a dose grid in Gy (relative doses reported, never relabelled) on its own grid
(GridFrameOffsetVector, DoseGridScaling), overlaying the CT in world mm (issue 15)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from napari_dicomtools.core.errors import DicomToolsError
from napari_dicomtools.core.rtdose import read_dose
from napari_dicomtools.core.synthetic import phantom, write_rtdose, write_series

#: the dose's hot spot, LPS mm: on the dose grid (origin + index * spacing) below
HOT = np.array([-5.0, 7.5, 4.0])
DOSE_ORIGIN = (-30.0, -30.0, -20.0)
DOSE_SPACING = (3.0, 2.5, 2.5)  # (slice, row, column) mm
SHAPE = (15, 24, 26)


def _dose(peak=62.0):
    """A Gaussian dose (Gy) peaking at HOT on the grid written by write_rtdose."""
    k, j, i = np.indices(SHAPE, float)
    lps = np.stack([i * DOSE_SPACING[2], j * DOSE_SPACING[1], k * DOSE_SPACING[0]], -1) \
        + np.asarray(DOSE_ORIGIN)
    return peak * np.exp(-((lps - HOT) ** 2).sum(-1) / (2 * 12.0 ** 2))


@pytest.mark.parametrize("offsets", ["relative", "absolute", "descending"])
def test_generated_dose_reads_in_gy_at_its_place(tmp_path, offsets):
    truth = write_rtdose(tmp_path / "dose.dcm", _dose(), spacing=DOSE_SPACING,
                         origin=DOSE_ORIGIN, offsets=offsets)
    vol = read_dose(tmp_path / "dose.dcm")
    np.testing.assert_allclose(vol.array, truth.values, atol=1e-9)
    np.testing.assert_allclose(vol.affine_lps, truth.affine_lps, atol=1e-6)
    peak = np.unravel_index(np.argmax(vol.array), vol.array.shape)
    np.testing.assert_allclose(vol.affine_lps @ [*peak[::-1], 1], [*HOT, 1], atol=1e-6)
    assert vol.metadata["units"] == "Gy" and vol.metadata["dose_units"] == "GY"
    assert vol.metadata["max_dose"] == pytest.approx(62.0, abs=1e-4)
    assert not vol.metadata["problems"]


def test_relative_dose_is_reported_not_called_gy(tmp_path):
    write_rtdose(tmp_path / "rel.dcm", _dose(1.0), units="RELATIVE")
    vol = read_dose(tmp_path / "rel.dcm")
    assert vol.metadata["units"] == "relative dose"
    assert any("not Gy" in p for p in vol.metadata["problems"])


def test_pydicom_rtdose_opens_at_its_place():
    path = get_testdata_file("rtdose.dcm")
    ds = pydicom.dcmread(path)
    vol = read_dose(path)
    np.testing.assert_allclose(vol.array, ds.pixel_array * float(ds.DoseGridScaling),
                               rtol=1e-6)
    np.testing.assert_allclose(vol.origin, [float(v) for v in ds.ImagePositionPatient])
    last = vol.affine_lps @ [0, 0, vol.array.shape[0] - 1, 1]
    assert last[2] == pytest.approx(float(ds.ImagePositionPatient[2]) + 70.0)
    assert vol.metadata["units"] == "relative dose"  # DoseUnits RELATIVE
    assert vol.metadata["dose_summation"] == "BEAM"


def test_read_dose_refuses_an_image(tmp_path):
    write_series(tmp_path / "ct", phantom((3, 8, 8)))
    with pytest.raises(DicomToolsError, match="0 RT Dose"):
        read_dose(tmp_path / "ct")


def test_dose_overlays_the_ct_in_world_mm(make_napari_viewer, tmp_path):
    """A study folder (CT + dose on a coarser, shifted grid) opens as two image layers; the
    dose value under the hot spot's world position is the peak dose, in Gy."""
    ct = write_series(tmp_path / "study" / "ct", phantom((20, 40, 40)),
                      spacing=(2.0, 1.5, 1.5), origin=(-30.0, -30.0, -22.0),
                      frame_uid="1.2.3.4.5")
    write_rtdose(tmp_path / "study" / "dose.dcm", _dose(), spacing=DOSE_SPACING,
                 origin=DOSE_ORIGIN, offsets="descending", frame_uid="1.2.3.4.5")
    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path / "study"), plugin="napari-dicomtools")
    (dose,) = [lay for lay in layers if lay.metadata.get("modality") == "RTDOSE"]
    (image,) = [lay for lay in layers if lay is not dose]
    assert dose.name.endswith("(Gy)") and dose.metadata["units"] == "Gy"
    assert tuple(dose.contrast_limits) == pytest.approx((0.0, 62.0), abs=1e-3)
    assert dose.colormap.map(np.array([0.0]))[0][3] == 0  # no dose: transparent
    world = HOT[::-1]  # world axes are (z, y, x) LPS mm
    idx = np.round(dose.world_to_data(world)).astype(int)
    assert np.asarray(dose.data)[tuple(idx)] == pytest.approx(62.0, abs=1e-3)
    # the same world point on the CT is the CT voxel at that LPS position
    ct_idx = np.linalg.solve(ct.affine_lps, [*HOT, 1])[:3][::-1]
    np.testing.assert_allclose(image.world_to_data(world), ct_idx, atol=1e-6)


def test_scan_lists_rtstruct_rtdose_and_sr_with_what_they_reference(tmp_path):
    """scan() lists annotation objects as series with their kind and the series they were
    made on; read_volume of the folder still finds its one image."""
    from napari_dicomtools.core.rtstruct import write_rtstruct
    from napari_dicomtools.core.series import scan
    from napari_dicomtools.core.sr import write_sr
    from napari_dicomtools.core.volume import read_volume

    study = tmp_path / "study"
    write_series(study / "ct", phantom((6, 16, 16)), spacing=(2.0, 1.0, 1.0),
                 frame_uid="1.2.3.4.5")
    lab = np.zeros((6, 16, 16), np.uint8)
    lab[2:4, 4:9, 4:9] = 1
    write_rtstruct(lab, study / "ct", study / "rt.dcm")
    write_sr([{"label": "l", "points": [[-30, -30, -56.0], [-25, -30, -56.0],
                                         [-25, -26, -56.0]]}], study / "ct", study / "sr.dcm")
    write_rtdose(study / "dose.dcm", _dose(), frame_uid="1.2.3.4.5")
    found = scan(study)
    kinds = {s.kind: s for s in found}
    assert sorted(kinds) == ["IMAGE", "RTDOSE", "RTSTRUCT", "SR"]
    assert not found.skipped
    ct = kinds["IMAGE"]
    assert kinds["RTSTRUCT"].references == (ct.uid,) and kinds["SR"].references == (ct.uid,)
    assert kinds["RTSTRUCT"].modality == "RTSTRUCT" and kinds["RTSTRUCT"].rows == 0
    assert f"references {ct.uid}" in kinds["RTSTRUCT"].label
    assert kinds["RTDOSE"].frame_of_reference == ct.frame_of_reference
    assert read_volume(study / "ct").array.shape == (6, 16, 16)
    with pytest.raises(DicomToolsError, match="holds no image, only RTSTRUCT"):
        read_volume(study / "rt.dcm")
