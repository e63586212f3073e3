"""`dicomtools pacs add|list|echo|find|get|send` against a real Orthanc."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import orthanc_server
import pydicom
import pytest

from napari_dicomtools.cli import main
from napari_dicomtools.core.synthetic import phantom, write_series
from napari_dicomtools.core.volume import read_volume

pytestmark = pytest.mark.skipif(orthanc_server.available() is not None,
                                reason=str(orthanc_server.available()))


@pytest.fixture
def servers(tmp_path, monkeypatch):
    """Profiles 'web' (DICOMweb, password from an env var) and 'dimse' in a temp config."""
    server = orthanc_server.shared()
    monkeypatch.setenv("DICOMTOOLS_PACS_CONFIG", str(tmp_path / "pacs.json"))
    monkeypatch.setenv("ORTHANC_PW", server.password)
    assert main(["pacs", "add", "web", "--url", server.dicomweb_url, "--user", server.user,
                 "--password-env", "ORTHANC_PW", "-q"]) == 0
    assert main(["pacs", "add", "dimse", "--host", "127.0.0.1", "--port",
                 str(server.dicom_port), "--aet", server.aet, "--calling-aet",
                 server.client_aet, "--move-port", str(server.move_port), "-q"]) == 0
    return server


def test_add_list_echo(servers, capsys, tmp_path):
    capsys.readouterr()
    assert main(["pacs", "list"]) == 0
    out = capsys.readouterr().out
    assert "web (http://127.0.0.1:" in out and "dimse (ORTHANC@127.0.0.1:" in out
    assert servers.password not in (tmp_path / "pacs.json").read_text() + out
    assert main(["pacs", "echo", "dimse"]) == 0
    assert main(["pacs", "echo", "web"]) == 0
    out = capsys.readouterr().out
    assert "dimse: dimse ok" in out and "web: dicomweb ok" in out
    assert main(["pacs", "add", "web", "--url", "http://127.0.0.1:1"]) == 1
    assert "exists; not overwriting (use --force)" in capsys.readouterr().err


def test_send_find_get_round_trip(servers, capsys, tmp_path):
    src = tmp_path / "src"
    write_series(src, phantom((5, 24, 24), seed=5), patient=("Cli^Carl", "PACS-CLI"),
                 description="CLI series")
    (src / "readme.txt").write_text("not DICOM")
    assert main(["pacs", "send", "dimse", str(src), "--method", "c-store"]) == 0
    err = capsys.readouterr().err
    assert "5 sent, 0 failed, 1 skipped" in err and "readme.txt: skipped" in err
    assert main(["pacs", "find", "web", "--patient-id", "PACS-CLI", "--level", "series"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:5] == ["PatientID", "Name", "Date", "Mod", "N"]
    assert out[1].split()[:2] == ["PACS-CLI", "Cli^Carl"] and " 5 " in out[1]
    assert main(["pacs", "find", "dimse", "--patient-name", "Cli*", "--json",
                 "--protocol", "dimse"]) == 0
    (hit,) = json.loads(capsys.readouterr().out)
    assert (hit["patient_id"], hit["count"]) == ("PACS-CLI", 5)
    series_uid = str(pydicom.dcmread(next(src.glob("IM*"))).SeriesInstanceUID)
    cache = tmp_path / "cache"
    for method, server in (("c-get", "dimse"), ("wado", "web")):
        assert main(["pacs", "get", server, series_uid, "--method", method, "--cache",
                     str(cache)]) == 0
        cap = capsys.readouterr()
        folder = cap.out.strip()
        assert folder.startswith(str(cache)) and folder.endswith(series_uid)
        fetched = "5 fetched, 0 already" if method == "c-get" else "0 fetched, 5 already"
        assert fetched in cap.err
    np.testing.assert_array_equal(read_volume(folder).array, read_volume(src).array)
    assert main(["pacs", "find", "web", "--patient-id", "NOBODY"]) == 1


def test_errors_are_one_line(servers, capsys, monkeypatch):
    down = orthanc_server.free_port()
    main(["pacs", "add", "down", "--host", "127.0.0.1", "--port", str(down), "--timeout", "3",
          "-q"])
    cases = [
        (["pacs", "echo", "down"], "cannot connect"),
        (["pacs", "echo", "nosuch"], "no server profile 'nosuch'"),
        (["pacs", "find", "web", "--date", "yesterday"], "use YYYYMMDD"),
        (["pacs", "get", "dimse", "1.2.3.999", "--method", "c-get"], "no series 1.2.3.999"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("dicomtools: ") and message in err, err
    monkeypatch.setenv("ORTHANC_PW", "wrong")
    assert main(["pacs", "find", "web"]) == 1
    assert "authentication failed (HTTP 401)" in capsys.readouterr().err


def test_wrong_ae_title_in_a_fresh_process_prints_one_line(servers, tmp_path):
    """No pynetdicom log lines leak onto the terminal: the user reads our one line."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-m", "napari_dicomtools.cli", "pacs", "add", "bad",
                    "--host", "127.0.0.1", "--port", str(servers.dicom_port), "--aet",
                    "WRONG-AE", "-q"], env=env, check=True)
    r = subprocess.run([sys.executable, "-m", "napari_dicomtools.cli", "pacs", "echo", "bad"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"dicomtools: bad (WRONG-AE@127.0.0.1:{servers.dicom_port}): association rejected: "
        "called AE title 'WRONG-AE' not recognised by the server"]
