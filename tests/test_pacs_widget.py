"""The PACS dock on a real Orthanc: search, the results table, retrieve + open, cancel and
resume, send a layer's series."""

from __future__ import annotations

import numpy as np
import orthanc_server
import pydicom
import pytest

from napari_dicomtools.core import pacs
from napari_dicomtools.core.synthetic import phantom, write_series
from napari_dicomtools.core.volume import read_volume

pytestmark = pytest.mark.skipif(orthanc_server.available() is not None,
                                reason=str(orthanc_server.available()))


@pytest.fixture
def dock(make_napari_viewer, tmp_path, monkeypatch):
    server = orthanc_server.shared()
    monkeypatch.setenv("DICOMTOOLS_PACS_CONFIG", str(tmp_path / "pacs.json"))
    monkeypatch.setenv("DICOMTOOLS_PACS_CACHE", str(tmp_path / "cache"))
    web = pacs.ServerProfile("web", dicomweb_url=server.dicomweb_url, username=server.user,
                             password=server.password)
    dimse = pacs.ServerProfile("dimse", host=orthanc_server.HOST, port=server.dicom_port,
                               called_aet=server.aet, calling_aet=server.client_aet,
                               move_port=server.move_port)
    pacs.save_profile(web)
    pacs.save_profile(dimse)
    from napari_dicomtools._pacs_widget import PacsWidget

    viewer = make_napari_viewer()
    w = PacsWidget(viewer)
    return viewer, w, web


def _idle(w):
    return w.search_button.isEnabled()


def _cells(w, row):
    return [w.table.item(row, c).text() for c in range(w.table.columnCount())]


def test_search_table_retrieve_and_open(dock, qtbot, tmp_path):
    from qtpy.QtCore import Qt

    viewer, w, web = dock
    src = tmp_path / "src"
    write_series(src, phantom((8, 32, 40), seed=3), spacing=(2.5, 0.9, 0.7),
                 patient=("Dock^Dora", "PACS-DOCK"), description="Dock CT", series_number=7)
    pacs.send(web, src)
    assert [w.server.itemText(i) for i in range(w.server.count())] == ["dimse", "web"]
    w.server.setCurrentText("web")
    w.patient_id.setText("PACS-DOCK")
    qtbot.mouseClick(w.search_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.table.rowCount() == 1 and _idle(w), timeout=20000)
    first = pydicom.dcmread(next(src.iterdir()))
    assert _cells(w, 0) == ["Dock^Dora", "PACS-DOCK", first.StudyDate, "CT",
                            str(first.get("StudyDescription", "")), "7", "Dock CT", "8"]
    assert w.status.text() == "1 series found."

    # retrieve cancelled at once: nothing opened, no verified series in the cache
    w.server.setCurrentText("dimse")  # the same Orthanc, by DIMSE
    w.method.setCurrentText("c-get")
    w.table.selectRow(0)
    qtbot.mouseClick(w.retrieve_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(w.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: _idle(w), timeout=20000)
    assert "Cancelled" in w.status.text() and len(viewer.layers) == 0
    hit = w.hits[0]
    folder = pacs.series_folder(tmp_path / "cache", hit.study_uid, hit.series_uid)
    assert not pacs.is_complete(folder)

    # retrieve again: the series opens, equal to the local original (values and geometry)
    qtbot.mouseClick(w.retrieve_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(viewer.layers) == 1 and _idle(w), timeout=30000)
    layer = viewer.layers[0]
    ref = read_volume(src)
    np.testing.assert_array_equal(np.asarray(layer.data), ref.array)
    np.testing.assert_allclose(layer.metadata["affine_lps"], ref.affine_lps, atol=1e-6)
    assert layer.metadata["pacs_cache"] == folder and pacs.is_complete(folder)
    assert w.status.text() == f"Opened {layer.name}."


def test_errors_reach_the_status_line(dock, qtbot):
    from qtpy.QtCore import Qt

    _viewer, w, _web = dock
    w.server.setCurrentText("web")
    w.date.setText("last week")
    qtbot.mouseClick(w.search_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: _idle(w) and "use YYYYMMDD" in w.status.text(), timeout=20000)
    w.date.clear()
    qtbot.mouseClick(w.retrieve_button, Qt.MouseButton.LeftButton)
    assert w.status.text() == "Select one or more series in the table first."


def test_send_the_layers_series(dock, qtbot, tmp_path):
    from qtpy.QtCore import Qt

    viewer, w, web = dock
    src = tmp_path / "send"
    write_series(src, phantom((4, 24, 24), seed=4), patient=("Send^Sam", "PACS-SEND"))
    (layer,) = viewer.open(str(src), plugin="napari-dicomtools")
    viewer.layers.selection.active = layer
    w.server.setCurrentText("dimse")
    qtbot.mouseClick(w.send_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: _idle(w) and "sent" in w.status.text(), timeout=20000)
    assert w.status.text() == f"{layer.name} (its DICOM series): 4 sent, 0 failed, 0 skipped"
    (hit,) = pacs.find(web, level="series", patient_id="PACS-SEND")
    assert hit.count == 4
    assert hit.series_uid == pydicom.dcmread(next(src.iterdir())).SeriesInstanceUID


@pytest.mark.parametrize(("server", "method"), [("web", "automatic"), ("dimse", "c-get")])
def test_stream_opens_at_once_and_fills_the_cache(dock, qtbot, tmp_path, server, method):
    from qtpy.QtCore import Qt

    viewer, w, web = dock
    src = tmp_path / "stream"
    write_series(src, phantom((6, 24, 32), seed=6),
                 patient=("Stream^Stu", f"PACS-STREAM-{server}"))
    pacs.send(web, src)
    w.server.setCurrentText(server)
    w.method.setCurrentText(method)
    w.patient_id.setText(f"PACS-STREAM-{server}")
    qtbot.mouseClick(w.search_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.table.rowCount() == 1 and _idle(w), timeout=20000)
    w.table.selectRow(0)
    w.stream_box.setChecked(True)
    qtbot.mouseClick(w.retrieve_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(viewer.layers) == 1, timeout=20000)
    layer = viewer.layers[0]
    assert layer.metadata["streaming"] is True
    qtbot.waitUntil(lambda: _idle(w), timeout=30000)
    assert w.status.text().endswith("all 6 images cached.")
    assert pacs.is_complete(layer.metadata["pacs_cache"])
    np.testing.assert_array_equal(np.asarray(layer.data), read_volume(src).array)
