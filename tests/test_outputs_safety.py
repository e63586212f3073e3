"""Outputs are never lost, misplaced or unreadable (issue 11, second half).

Races, symlinked sources, read-only folders, a full disk, over-long names, file modes,
missing parent folders and killed writers, for the shared writer (``atomic_output``) and the
command line (``convert``, ``png``, ``info --csv``, ``anonymize``): every failure is one line
naming the path and the reason, never a traceback, and nothing is written into a source.
"""

from __future__ import annotations

import errno
import os
import threading
import time

import numpy as np
import pytest

from napari_dicomtools.cli import main
from napari_dicomtools.core import export
from napari_dicomtools.core.errors import DicomToolsError
from napari_dicomtools.core.export import (
    PARTIAL_PREFIX,
    atomic_output,
    clean_stale_partials,
    fit_name,
    refuse_inside_source,
)
from napari_dicomtools.core.synthetic import write_series


def _small_ct(folder, **kw):
    values = np.arange(4 * 8 * 10, dtype=np.int16).reshape(4, 8, 10)
    write_series(folder, values, **kw)
    return folder


def _write(path, text="x", overwrite=False):
    with atomic_output(path, overwrite) as tmp:
        with open(tmp, "w") as f:
            f.write(text)


def _one_line(err: str):
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("dicomtools:")]
    assert lines, err
    return lines


# ------------------------------------------------------------------ the shared writer


def test_racing_writers_exactly_one_wins(tmp_path, monkeypatch):
    """Both writers pass the early existence check; the exclusive link lets one win."""
    target = tmp_path / "out.csv"
    barrier = threading.Barrier(2)
    real_link = os.link

    def slow_link(src, dst, *a, **k):
        barrier.wait(timeout=5)  # both are past the check and hold finished files
        return real_link(src, dst, *a, **k)

    monkeypatch.setattr(export.os, "link", slow_link)
    results = {}

    def run(name):
        try:
            _write(target, name)
            results[name] = "ok"
        except DicomToolsError as exc:
            results[name] = str(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = [n for n, r in results.items() if r == "ok"]
    assert len(ok) == 1, results
    loser = next(r for r in results.values() if r != "ok")
    assert "exists" in loser
    assert target.read_text() == ok[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_file_mode_follows_umask(tmp_path):
    old = os.umask(0o022)
    try:
        _write(tmp_path / "a.csv")
        assert (tmp_path / "a.csv").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        _write(tmp_path / "b.csv")
        assert (tmp_path / "b.csv").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_missing_parent_folders_are_created(tmp_path):
    _write(tmp_path / "x" / "y" / "a.csv")
    assert (tmp_path / "x" / "y" / "a.csv").read_text() == "x"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT])
def test_write_failure_is_one_error_and_leaves_nothing(tmp_path, code):
    target = tmp_path / "a.nii"
    with pytest.raises(DicomToolsError) as info:
        with atomic_output(target) as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
                raise OSError(code, os.strerror(code))
    assert str(target) in str(info.value) and os.strerror(code) in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_one_error(tmp_path, monkeypatch):
    """As root chmod does not bite: the refusal is injected where the file is created."""
    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", a[0])

    monkeypatch.setattr(export.os, "open", refuse)
    with pytest.raises(DicomToolsError, match="Permission denied"):
        _write(tmp_path / "a.csv")
    assert list(tmp_path.iterdir()) == []


def test_force_onto_a_folder_is_refused(tmp_path):
    (tmp_path / "a.nii").mkdir()
    with pytest.raises(DicomToolsError, match="is a folder"):
        _write(tmp_path / "a.nii", overwrite=True)
    assert (tmp_path / "a.nii").is_dir()


def test_overwrite_replaces(tmp_path):
    _write(tmp_path / "a.csv", "1")
    with pytest.raises(DicomToolsError, match="exists"):
        _write(tmp_path / "a.csv", "2")
    _write(tmp_path / "a.csv", "3", overwrite=True)
    assert (tmp_path / "a.csv").read_text() == "3"


def test_no_hard_links_falls_back_to_exclusive_create(tmp_path, monkeypatch):
    def no_link(*a, **k):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(export.os, "link", no_link)
    _write(tmp_path / "a.csv", "1")
    assert (tmp_path / "a.csv").read_text() == "1"
    with pytest.raises(DicomToolsError, match="exists"):
        with atomic_output(tmp_path / "b.csv") as tmp:
            (tmp_path / "b.csv").write_text("other writer")
            with open(tmp, "w") as f:
                f.write("2")
    assert (tmp_path / "b.csv").read_text() == "other writer"


def test_long_names(tmp_path):
    assert fit_name("a" * 300 + ".nii.gz") == "a" * 248 + ".nii.gz"
    four = "\U0001d538" * 100 + ".png"  # 4-byte characters
    short = fit_name(four)
    assert len(short.encode()) <= 255 and short.endswith(".png")
    assert short[:-4] == "\U0001d538" * 62
    with pytest.raises(DicomToolsError, match="255"):
        _write(tmp_path / ("b" * 300 + ".csv"))
    _write(tmp_path / fit_name("b" * 300 + ".csv"))


def test_stale_partials_are_cleaned_only_when_ours_and_dead(tmp_path):
    dead = tmp_path / f"{PARTIAL_PREFIX}999999999-abc"
    alive = tmp_path / f"{PARTIAL_PREFIX}{os.getppid()}-abc"
    fresh = tmp_path / f"{PARTIAL_PREFIX}999999998-abc"
    foreign = tmp_path / ".partial-notours"
    for p in (dead, alive, fresh, foreign):
        p.write_text("x")
    old = time.time() - 3600
    for p in (dead, alive, foreign):
        os.utime(p, (old, old))
    assert clean_stale_partials(tmp_path) == [str(dead)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (alive, fresh, foreign))


def test_killed_writer_leaves_only_a_recognisable_partial(tmp_path):
    import signal
    import subprocess
    import sys

    code = ("import time,sys\nfrom napari_dicomtools.core.export import atomic_output\n"
            "with atomic_output(sys.argv[1]) as tmp:\n"
            "    open(tmp,'w').write('half'); print('go', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "a.csv")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "go"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(f"{PARTIAL_PREFIX}{proc.pid}-")
    old = time.time() - 3600
    os.utime(left, (old, old))
    export._CLEANED.discard(str(tmp_path))
    _write(tmp_path / "b.csv")  # the next write into the folder clears the debris
    assert [p.name for p in tmp_path.iterdir()] == ["b.csv"]


# ------------------------------------------------------------------ symlinked sources


def test_symlinked_source_file_counts_as_its_real_folder(tmp_path):
    src = _small_ct(tmp_path / "src")
    elsewhere = tmp_path / "links"
    elsewhere.mkdir()
    one = sorted(src.iterdir())[0]
    link = elsewhere / "link.dcm"
    link.symlink_to(one)
    for out in (src / "x.csv", one, src):
        with pytest.raises(DicomToolsError, match="inside the source"):
            refuse_inside_source(out, link)
    with pytest.raises(DicomToolsError, match="inside the source"):
        refuse_inside_source(elsewhere / "x.csv", link)  # the link's own folder too
    refuse_inside_source(tmp_path / "out", link)
    dirlink = tmp_path / "dirlink"
    dirlink.symlink_to(src)
    with pytest.raises(DicomToolsError, match="inside the source"):
        refuse_inside_source(src / "out", dirlink)


def test_cli_never_writes_through_a_symlinked_source(tmp_path, capsys):
    src = _small_ct(tmp_path / "src")
    one = sorted(src.iterdir())[0]
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    links = tmp_path / "links"
    links.mkdir()
    (links / "l.dcm").symlink_to(one)
    link = str(links / "l.dcm")
    assert main(["info", link, "--tags", "Modality", "--csv", str(one), "--force"]) == 1
    assert main(["convert", link, str(src / "o.nii"), "-q"]) == 1
    assert main(["png", link, str(src / "png"), "-q"]) == 1
    assert main(["anonymize", link, str(src / "anon"), "-q"]) == 1
    err = capsys.readouterr().err
    assert len(_one_line(err)) == 4 and err.count("inside the source") == 4
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
