"""`dicomtools` command line: info (text and JSON), view (the README's first command)."""

import json
import os
import subprocess
import sys

import numpy as np
import pydicom
import pytest

from napari_dicomtools.cli import main


def test_info_text_lists_series_and_skipped(ct_folder, capsys):
    folder, _ = ct_folder
    (folder / "junk.txt").write_text("x")
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "Patient Phantom^Synthetic [SYN001]" in out
    assert "3 Synthetic phantom: CT 30x64x64 voxels, 0.7 x 0.7 x 1.25 mm, axial, 30 file(s)" in out
    assert "Skipped 1 file(s):" in out and "junk.txt: not a DICOM file" in out


def test_info_json(ct_folder, capsys):
    folder, truth = ct_folder
    assert main(["info", str(folder), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (s,) = doc["series"]
    assert s["shape"] == [30, 64, 64] and s["spacing_mm"] == [1.25, 0.7, 0.7]
    assert np.allclose(s["origin_lps_mm"], truth.origin)
    assert doc["skipped"] == []


def test_info_on_nothing_fails_with_one_line(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("x")
    assert main(["info", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no loadable DICOM" in err[0]
    assert main(["info", str(tmp_path / "missing")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_view_sample_screenshot_headless(tmp_path):
    """The README's first command, as a headless run that saves what a user would see."""
    if not os.environ.get("DISPLAY"):
        pytest.fail("no X display: run the tests under xvfb-run (or with pytest-xvfb)")
    out = tmp_path / "shot.png"
    r = subprocess.run([sys.executable, "-m", "napari_dicomtools", "view", "--sample", "phantom",
                        "--browser", "--screenshot", str(out)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    from PIL import Image

    img = np.asarray(Image.open(out).convert("L"))
    assert img.shape[0] > 300 and img.std() > 20
    # refuses to overwrite
    r = subprocess.run([sys.executable, "-m", "napari_dicomtools", "view", "--sample", "phantom",
                        "--screenshot", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not overwriting" in r.stderr


def test_library_warnings_print_as_one_escaped_line(tmp_path, capsys):
    """pydicom's warning about a malformed value read from a file shows as one line, with
    the file's bytes escaped, not as Python's source location and code line."""
    from napari_dicomtools.core.synthetic import phantom, write_series

    write_series(tmp_path / "ct", phantom((3, 16, 16)), shuffle=False)
    victim = sorted((tmp_path / "ct").iterdir())[1]
    data = victim.read_bytes()
    uid = pydicom.dcmread(victim).SOPInstanceUID.encode()
    victim.write_bytes(data.replace(uid, b"\xff\x1b[31m" + uid[6:]))  # same length
    assert main(["info", str(tmp_path / "ct")]) == 0
    err = capsys.readouterr().err
    warned = [ln for ln in err.splitlines() if "Invalid value for VR UI" in ln]
    assert warned and all(ln.startswith("dicomtools: warning: ") for ln in warned)
    assert "\x1b" not in err and "\\x1b" in err and "warn_and_log" not in err
