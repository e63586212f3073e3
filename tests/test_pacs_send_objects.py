"""Sending what we write to a real Orthanc: DICOM SEG, RTSTRUCT, SR and secondary captures
(from a PNG of our export, and from 2D/RGB layers), found back under the source study; the
`dicomtools pacs send --reference` path for pictures; "Send layer to PACS" in the dock."""

from __future__ import annotations

import os

import numpy as np
import orthanc_server
import pydicom
import pytest

from napari_dicomtools.core import pacs
from napari_dicomtools.core.errors import DicomToolsError
from napari_dicomtools.core.sc import SC_IMAGE_STORAGE, read_png, write_secondary_capture
from napari_dicomtools.core.synthetic import phantom, write_series
from napari_dicomtools.core.volume import read_volume

pytestmark = pytest.mark.skipif(orthanc_server.available() is not None,
                                reason=str(orthanc_server.available()))


@pytest.fixture(scope="module")
def server():
    return orthanc_server.shared()


def web(server):
    return pacs.ServerProfile("web", dicomweb_url=server.dicomweb_url, username=server.user,
                              password=server.password)


def dimse(server):
    return pacs.ServerProfile("dimse", host=orthanc_server.HOST, port=server.dicom_port,
                              called_aet=server.aet, calling_aet=server.client_aet)


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    folder = tmp_path_factory.mktemp("objects") / "ct"
    write_series(folder, phantom((6, 32, 32), seed=21), spacing=(2.0, 0.8, 0.8),
                 patient=("Obj^Olga", "PACS-OBJ"), description="Source CT")
    return folder


def _study_series(server, study_uid):
    return {h.modality: h for h in pacs.find(web(server), level="series",
                                              study_uid=study_uid)}


def test_sc_windowed_like_png_export_and_dciodvfy_clean(ct, tmp_path, dciodvfy_errors):
    from napari_dicomtools.core.png import apply_window

    vol = read_volume(ct)
    out = write_secondary_capture(vol.array[2], ct, tmp_path / "g.dcm", window=(40, 400),
                                  orientation="axial", description="Key image")
    ds = pydicom.dcmread(out)
    ref = pydicom.dcmread(next(ct.iterdir()), stop_before_pixels=True)
    assert ds.SOPClassUID == SC_IMAGE_STORAGE
    assert (ds.StudyInstanceUID, ds.PatientID, ds.PatientName) == \
        (ref.StudyInstanceUID, ref.PatientID, ref.PatientName)
    assert ds.SeriesInstanceUID != ref.SeriesInstanceUID
    assert (ds.PhotometricInterpretation, ds.BitsAllocated, list(ds.PatientOrientation)) == \
        ("MONOCHROME2", 8, ["L", "P"])
    np.testing.assert_array_equal(ds.pixel_array, apply_window(vol.array[2], 40, 400))
    assert dciodvfy_errors(out) == []
    rgba = np.zeros((10, 12, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    rgba[0, 0, 3] = 0  # transparent: black
    c = pydicom.dcmread(write_secondary_capture(rgba, ct, tmp_path / "c.dcm"))
    assert c.PhotometricInterpretation == "RGB" and c.pixel_array.shape == (10, 12, 3)
    assert tuple(c.pixel_array[1, 1]) == (200, 0, 0) and tuple(c.pixel_array[0, 0]) == (0, 0, 0)
    assert "PatientOrientation" in c and not c.PatientOrientation  # unknown: empty
    assert dciodvfy_errors(tmp_path / "c.dcm") == []
    with pytest.raises(DicomToolsError, match="one 2D picture"):
        write_secondary_capture(vol.array, ct, tmp_path / "x.dcm")
    with pytest.raises(DicomToolsError, match="exists"):
        write_secondary_capture(rgba, ct, tmp_path / "c.dcm")


def test_seg_rtstruct_sr_and_captures_found_under_the_source_study(server, ct, tmp_path):
    from napari_dicomtools.core.png import export_png
    from napari_dicomtools.core.rtstruct import write_rtstruct
    from napari_dicomtools.core.seg import write_seg
    from napari_dicomtools.core.sr import write_sr

    vol = read_volume(ct)
    labels = np.zeros(vol.array.shape, np.uint8)
    labels[1:4, 8:20, 10:22] = 1
    out = tmp_path / "objects"
    seg = write_seg(labels, ct, out / "seg.dcm")
    rt = write_rtstruct(labels, ct, out / "rt.dcm")
    z = float(vol.affine_lps[2, 3]) + 2.0 * 2
    sr = write_sr([{"label": "lesion", "points": np.array([[0, 0, z], [10, 0, z], [10, 8, z]]),
                    "measurements": {"area": 40.0}}], ct, out / "sr.dcm")
    (png,) = export_png(vol, tmp_path / "png", window=(40, 400), slices=[3])
    sc = write_secondary_capture(read_png(png), ct, out / "sc.dcm", description="Key image")
    study = pydicom.dcmread(next(ct.iterdir()), stop_before_pixels=True).StudyInstanceUID
    r = pacs.send(dimse(server), ct, method="c-store")
    assert len(r.sent) == 6
    r1 = pacs.send(web(server), [seg, sr], method="stow")
    r2 = pacs.send(dimse(server), [rt, sc], method="c-store")
    assert (len(r1.sent), r1.failed, len(r2.sent), r2.failed) == (2, [], 2, [])
    found = _study_series(server, study)
    assert set(found) == {"CT", "SEG", "RTSTRUCT", "SR", "OT"}, found
    assert all(h.count == 1 for m, h in found.items() if m != "CT")
    assert found["OT"].series_description == "Key image"
    # what comes back is the mask we drew, on the CT's grid
    from napari_dicomtools.core.seg import read_segmentation

    got = pacs.retrieve(web(server), study, found["SEG"].series_uid, cache=tmp_path / "c")
    (path,) = [p for p in os.listdir(got.folder) if p.endswith(".dcm")]
    back = read_segmentation(os.path.join(got.folder, path), reference=ct)
    np.testing.assert_array_equal(back.mask(1), labels > 0)


def test_cli_send_wraps_pictures_as_captures_of_the_reference(server, ct, tmp_path, capsys,
                                                              monkeypatch):
    from PIL import Image

    from napari_dicomtools.cli import main

    monkeypatch.setenv("DICOMTOOLS_PACS_CONFIG", str(tmp_path / "pacs.json"))
    assert main(["pacs", "add", "dimse", "--host", orthanc_server.HOST, "--port",
                 str(server.dicom_port), "--aet", server.aet, "--calling-aet",
                 server.client_aet, "-q"]) == 0
    pics = []
    for i, mode in enumerate(("L", "RGB")):
        p = tmp_path / f"shot{i}.png"
        Image.new(mode, (20, 10), 120 if mode == "L" else (10, 200, 30)).save(p)
        pics.append(str(p))
    assert main(["pacs", "send", "dimse", *pics]) == 1
    assert "--reference" in capsys.readouterr().err
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["pacs", "send", "dimse", *pics, "--reference", str(ct),
                 "--description", "CLI captures"]) == 0
    err = capsys.readouterr().err
    assert "2 sent, 0 failed, 0 skipped" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing left behind
    study = pydicom.dcmread(next(ct.iterdir()), stop_before_pixels=True).StudyInstanceUID
    (hit,) = [h for h in pacs.find(web(server), level="series", study_uid=study)
              if h.series_description == "CLI captures"]
    assert (hit.modality, hit.count) == ("OT", 2)


def test_dock_sends_labels_shapes_and_pictures(server, ct, make_napari_viewer, qtbot,
                                               tmp_path, monkeypatch):
    from qtpy.QtCore import Qt

    from napari_dicomtools._pacs_widget import PacsWidget

    monkeypatch.setenv("DICOMTOOLS_PACS_CONFIG", str(tmp_path / "pacs.json"))
    pacs.save_profile(web(server))
    viewer = make_napari_viewer()
    w = PacsWidget(viewer)
    src = tmp_path / "dock"
    write_series(src, phantom((5, 24, 24), seed=22), patient=("Dock^Dan", "PACS-OBJ-DOCK"))
    study = pydicom.dcmread(next(src.iterdir()), stop_before_pixels=True).StudyInstanceUID
    (image,) = viewer.open(str(src), plugin="napari-dicomtools")
    labels = viewer.add_labels(np.zeros(image.data.shape, np.uint8), name="tumour",
                               scale=image.scale, translate=image.translate)
    labels.data[1:3, 5:15, 5:15] = 1
    rgb = viewer.add_image(np.full((16, 20, 3), 90, np.uint8), rgb=True, name="snapshot")

    def send(layer, expect):
        viewer.layers.selection.active = layer
        qtbot.mouseClick(w.send_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: w.search_button.isEnabled() and "sent" in w.status.text(),
                        timeout=30000)
        assert w.status.text() == expect

    send(labels, "tumour (SEG): 1 sent, 0 failed, 0 skipped")
    w.labels_as.setCurrentText("RTSTRUCT")
    send(labels, "tumour (RTSTRUCT): 1 sent, 0 failed, 0 skipped")
    send(rgb, "snapshot (secondary capture): 1 sent, 0 failed, 0 skipped")
    found = _study_series(server, study)
    assert {"SEG", "RTSTRUCT", "OT"} <= set(found)
    assert found["OT"].series_description == "snapshot"
    # a picture with no DICOM image in the viewer: a clear refusal
    viewer.layers.remove(labels)
    viewer.layers.remove(image)
    viewer.layers.selection.active = rgb
    qtbot.mouseClick(w.send_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.search_button.isEnabled() and "open that image too" in
                    w.status.text(), timeout=30000)
