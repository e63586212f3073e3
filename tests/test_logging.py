"""Diagnostics go through `logging` (the `napari_dicomtools` logger), silent by default and
shown on stderr by `dicomtools -v`."""

from __future__ import annotations

import logging
import os

from napari_dicomtools import cli, scan


def test_library_is_silent_by_default(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not DICOM")
    found = scan(tmp_path)
    assert found.skipped and "notes.txt" in found.skipped[0].path
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert any(isinstance(h, logging.NullHandler)
               for h in logging.getLogger("napari_dicomtools").handlers)


def test_skipped_files_are_logged(tmp_path, caplog):
    (tmp_path / "notes.txt").write_text("not DICOM")
    with caplog.at_level(logging.INFO, logger="napari_dicomtools"):
        scan(tmp_path)
    rec = [r for r in caplog.records if "notes.txt" in r.getMessage()]
    assert rec and rec[0].name == "napari_dicomtools.core.sources" and rec[0].levelno == logging.INFO


def test_cli_verbose_shows_diagnostics(tmp_path, ct_folder, capsys):
    folder, _truth = ct_folder
    (folder / "README.txt").write_text("not DICOM")
    log = logging.getLogger("napari_dicomtools")
    before = list(log.handlers), log.level
    try:
        assert cli.main(["info", str(folder)]) == 0
        quiet = capsys.readouterr().err
        assert "dicomtools: INFO" not in quiet
        assert cli.main(["-v", "info", str(folder)]) == 0
        err = capsys.readouterr().err
        assert "dicomtools: INFO napari_dicomtools.core.sources: skipped" in err
        assert "README.txt" in err
    finally:
        log.handlers[:] = before[0]
        log.setLevel(before[1])


def test_removed_partial_outputs_are_logged(tmp_path, caplog):
    """A killed writer's temporary file removed by the next writer leaves a trace."""
    from napari_dicomtools.core.safety import PARTIAL_PREFIX, atomic_output

    debris = tmp_path / f"{PARTIAL_PREFIX}999999999-0a1b"
    debris.write_text("half")
    old = debris.stat().st_mtime - 3600
    os.utime(debris, (old, old))
    with caplog.at_level(logging.INFO, logger="napari_dicomtools"):
        with atomic_output(tmp_path / "out.csv") as tmp:
            open(tmp, "w").close()
    assert not debris.exists()
    (rec,) = [r for r in caplog.records if debris.name in r.getMessage()]
    assert rec.name == "napari_dicomtools.core.safety" and rec.levelno == logging.INFO
    assert "999999999" in rec.getMessage() and "gone" in rec.getMessage()
