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

from napari_dicomtools.cli import main, output_names
from napari_dicomtools.core import nifti, png, safety
from napari_dicomtools.core.errors import DicomToolsError
from napari_dicomtools.core.naming import sanitize
from napari_dicomtools.core.safety import (
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

    monkeypatch.setattr(safety.os, "link", slow_link)
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

    monkeypatch.setattr(safety.os, "open", refuse)
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

    monkeypatch.setattr(safety.os, "link", no_link)
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

    code = ("import time,sys\nfrom napari_dicomtools.core.safety import atomic_output\n"
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
    safety._CLEANED.discard(str(tmp_path))
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


# ------------------------------------------------------------------ the command line


@pytest.fixture
def three_series(tmp_path):
    src = tmp_path / "src"
    for n, desc in ((1, "first"), (2, "second"), (3, "third")):
        _small_ct(src / desc, series_number=n, description=desc,
                  series_uid=f"1.2.3.{n}", prefix=f"S{n}")
    return src


def test_convert_goes_on_after_a_full_disk(three_series, tmp_path, monkeypatch, capsys):
    real = nifti._write_nifti_frames

    def full_on_second(path, header, frames, **kw):
        if "2_second" not in path:
            return real(path, header, frames, **kw)
        with atomic_output(path, kw["overwrite"]) as tmp:
            with open(tmp, "wb") as f:
                f.write(header)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(nifti, "_write_nifti_frames", full_on_second)
    out = tmp_path / "out"
    assert main(["convert", str(three_series), str(out), "-q"]) == 1
    err = capsys.readouterr().err
    lines = _one_line(err)
    assert "No space left on device" in lines[0] and "2_second.nii.gz" in lines[0]
    assert "1 of 3 volume(s) not written" in lines[-1]
    assert sorted(p.name for p in out.iterdir()) == ["1_first.nii.gz", "3_third.nii.gz"]


def test_convert_read_only_outdir_is_one_line(three_series, tmp_path, monkeypatch, capsys):
    real_open = os.open
    out = tmp_path / "ro"
    out.mkdir()

    def read_only(path, *a, **k):
        if str(path).startswith(str(out)):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, *a, **k)

    monkeypatch.setattr(safety.os, "open", read_only)
    assert main(["convert", str(three_series), str(out), "-q"]) == 1
    lines = _one_line(capsys.readouterr().err)
    assert len(lines) == 4 and all("Read-only file system" in ln for ln in lines[:3])
    assert list(out.iterdir()) == []


def test_convert_unwritable_parent_is_one_line(three_series, tmp_path, monkeypatch, capsys):
    def refuse(path, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(os, "mkdir", refuse)
    assert main(["convert", str(three_series), str(tmp_path / "new" / "out"), "-q"]) == 1
    (line,) = _one_line(capsys.readouterr().err)
    assert "Permission denied" in line and "cannot create the folder" in line


def test_convert_force_onto_a_folder_is_one_line(tmp_path, capsys):
    src = _small_ct(tmp_path / "src")
    (tmp_path / "o.nii.gz").mkdir()
    assert main(["convert", str(src), str(tmp_path / "o.nii.gz"), "--force", "-q"]) == 1
    (line, *_) = _one_line(capsys.readouterr().err)
    assert "is a folder" in line


def test_convert_creates_missing_parents_of_a_file(tmp_path, capsys):
    src = _small_ct(tmp_path / "src")
    target = tmp_path / "new" / "deeper" / "ct.nii.gz"
    assert main(["convert", str(src), str(target), "-q"]) == 0
    assert target.stat().st_size > 352


@pytest.mark.parametrize("desc", ["L" * 300, "\U0001d538" * 80, "\u00e9" * 200])
def test_convert_and_png_with_long_descriptions(tmp_path, desc, capsys):
    import pydicom

    src = _small_ct(tmp_path / "src")
    for f in src.iterdir():  # UTF-8 descriptions (the synthetic writer stores Latin-1)
        ds = pydicom.dcmread(f)
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SeriesDescription = desc
        ds.save_as(f)
    assert main(["convert", str(src), str(tmp_path / "nii"), "-q"]) == 0
    (f,) = (tmp_path / "nii").iterdir()
    assert len(f.name.encode()) <= 255 and f.name.endswith(".nii.gz")
    assert f.name.startswith("3_" + sanitize(desc)[:10])
    assert main(["png", str(src), str(tmp_path / "png"), "-q"]) == 0
    (d,) = (tmp_path / "png").iterdir()
    assert len(d.name.encode()) <= 255 and len(list(d.glob("*.png"))) == 4
    assert "Traceback" not in capsys.readouterr().err


def test_long_names_stay_unique(tmp_path):
    import pydicom

    from napari_dicomtools import scan

    for k in (1, 2):  # two series with one long name
        for f in _small_ct(tmp_path / f"src{k}").iterdir():
            ds = pydicom.dcmread(f)
            ds.SeriesInstanceUID = f"1.2.3.{k}"
            ds.SeriesDescription = "x" * 400
            ds.save_as(f)
    names = output_names(scan(tmp_path))
    assert names[0] != names[1]
    assert all(len((n + ".nii.gz").encode()) <= 255 for n in names)


def test_racing_converts_one_wins_the_other_says_exists(tmp_path):
    import subprocess
    import sys

    src = _small_ct(tmp_path / "src")
    out = tmp_path / "out"
    # both pass the early check before either publishes: the exclusive link decides
    code = ("import os, sys, time\n"
            "from napari_dicomtools.core import safety\n"
            "from napari_dicomtools.cli import main\n"
            "real = os.link\n"
            "def link(a, b, **k):\n"
            "    open(sys.argv[3], 'a').close()\n"
            "    while len(os.listdir(os.path.dirname(sys.argv[3]))) < 2:\n"
            "        time.sleep(0.02)\n"
            "    return real(a, b, **k)\n"
            "safety.os.link = link\n"
            "sys.exit(main(['convert', sys.argv[1], sys.argv[2], '-q']))\n")
    (tmp_path / "flags").mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", code, str(src), str(out),
                               str(tmp_path / "flags" / str(k))],
                              stderr=subprocess.PIPE, text=True) for k in range(2)]
    results = [(p.wait(timeout=60), p.stderr.read()) for p in procs]
    assert sorted(rc for rc, _ in results) == [0, 1], results
    err = next(e for rc, e in results if rc == 1)
    assert "exists" in err and "Traceback" not in err
    assert [p.name for p in out.iterdir()] == ["3_Synthetic_phantom.nii.gz"]


def test_png_force_leaves_no_stale_slices(tmp_path, capsys):
    src = _small_ct(tmp_path / "src")
    out = tmp_path / "png"
    assert main(["png", str(src), str(out), "-q"]) == 0
    (folder,) = out.iterdir()
    (folder / "mine.png").write_bytes(b"not ours")
    assert len(list(folder.glob("axial_*.png"))) == 4
    assert main(["png", str(src), str(out), "--slices", "1", "-q"]) == 1  # exists
    assert main(["png", str(src), str(out), "--slices", "1", "--force", "-q"]) == 0
    assert sorted(p.name for p in folder.glob("*.png")) == ["axial_0001.png", "mine.png"]
    assert main(["png", str(src), str(out), "--axis", "coronal", "--slices", "2", "--force",
                 "-q"]) == 0
    assert sorted(p.name for p in folder.glob("*.png")) == ["coronal_0002.png", "mine.png"]


def test_png_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    from PIL import Image

    src = _small_ct(tmp_path / "src")

    def full(self, fp, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", full)
    assert main(["png", str(src), str(tmp_path / "png"), "-q"]) == 1
    (line,) = _one_line(capsys.readouterr().err)
    assert "No space left on device" in line and "axial_0000.png" in line


def test_info_csv_full_disk_and_folder(tmp_path, monkeypatch, capsys):
    src = _small_ct(tmp_path / "src")
    (tmp_path / "t.csv").mkdir()
    assert main(["info", str(src), "--tags", "Modality", "--csv", str(tmp_path / "t.csv"),
                 "--force"]) == 1
    assert "is a folder" in _one_line(capsys.readouterr().err)[0]
    real_open = open

    def full(file, mode="r", *a, **k):
        if "w" in mode and PARTIAL_PREFIX in str(file):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr("builtins.open", full)
    assert main(["info", str(src), "--tags", "Modality", "--csv",
                 str(tmp_path / "x" / "t.csv")]) == 1
    assert "No space left" in _one_line(capsys.readouterr().err)[0]
    assert not (tmp_path / "x" / "t.csv").exists()


def test_info_escapes_control_characters(tmp_path, capsys):
    src = _small_ct(tmp_path / "src", description="evil\nPatient FAKE [\x1b[31m]",
                    patient=("Bad\rName", "ID\x071"))
    assert main(["info", str(src)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert "evil\\nPatient FAKE" in out and "Bad\\rName" in out and "ID\\x071" in out
    assert not any(ln.startswith("Patient FAKE") for ln in out.splitlines())


def test_nifti_gz_streams_a_few_frames_ahead_of_a_slow_writer(tmp_path, monkeypatch):
    """Decoding must not race ahead of gzip and hold the whole volume (issue 11)."""
    from napari_dicomtools.core import volume
    from napari_dicomtools.core.series import scan

    write_series(tmp_path / "src", np.zeros((24, 8, 10), np.int16))
    (series,) = scan(tmp_path / "src")
    state = {"decoded": 0, "written": 0, "most": 0}
    real_read, real_open = volume._Plan.read_frame, nifti._open_output

    def read(self, i, out=None):
        state["decoded"] += 1
        return real_read(self, i, out)

    class Slow:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, b):
            time.sleep(0.01)
            state["written"] += 1
            state["most"] = max(state["most"], state["decoded"] - state["written"])
            return self.f.write(b)

    monkeypatch.setattr(volume._Plan, "read_frame", read)
    monkeypatch.setattr(nifti, "_open_output", lambda *a: Slow(real_open(*a)))
    # the streamed path: an output of one gzip block (at most 256 KiB) is compressed whole
    monkeypatch.setattr(nifti, "_one_block_gzip", lambda level: None)
    nifti.write_series_nifti(series, tmp_path / "o.nii.gz")
    assert state["written"] == 25 and state["most"] <= 6, state


# ------------------------------------------------------------------ every writer


def _writers():
    """name -> writer(src_folder, out_folder, overwrite) returning the written paths."""
    from napari_dicomtools.core import dataset, measure, metadata
    from napari_dicomtools.core.series import scan
    from napari_dicomtools.core.volume import read_volume

    def vol(src):
        return read_volume(src)

    def case(src):
        v = vol(src)
        return [{"image": np.asarray(v.array), "affine_ras": v.affine_ras,
                 "labels": (np.asarray(v.array) > 100).astype(np.uint8), "patient": "p",
                 "name": "c", "window": (40, 400)}]

    return {
        "write_nifti": lambda s, o, f: [nifti.write_nifti(vol(s), o / "a.nii.gz",
                                                           overwrite=f)],
        "write_series_nifti": lambda s, o, f: [nifti.write_series_nifti(
            scan(s)[0], o / "a.nii", overwrite=f)],
        "write_layer_nifti_affine": lambda s, o, f: [nifti.write_layer_nifti_affine(
            o / "l.nii.gz", np.zeros((2, 3, 4), np.uint8), np.eye(4), overwrite=f)],
        "write_png": lambda s, o, f: [png.write_png(o / "a.png", np.zeros((4, 5), np.uint8),
                                                       overwrite=f)],
        "export_png": lambda s, o, f: png.export_png(vol(s), o / "png", window=(40, 400),
                                                        overwrite=f),
        "export_annotated": lambda s, o, f: png.export_annotated(
            np.zeros((2, 4, 5)), (1, 1, 1), (0, 0, 0), o / "ann.png", window=(0, 1),
            overwrite=f),
        "write_csv": lambda s, o, f: [metadata.write_csv([{"a": 1}], o / "t.csv",
                                                         overwrite=f)],
        "write_measurements_csv": lambda s, o, f: [measure.write_measurements_csv(
            [{"label": 1, "volume_ml": 2.0}], o / "m.csv", overwrite=f)],
        "export_nnunet": lambda s, o, f: [dataset.export_nnunet(case(s), o, overwrite=f)],
        "export_2d": lambda s, o, f: [dataset.export_2d(case(s), o / "d2", overwrite=f)],
    }


WRITERS = list(_writers())


@pytest.mark.parametrize("name", WRITERS)
def test_every_writer_mode_exists_and_full_disk(name, tmp_path, monkeypatch):
    import builtins

    write = _writers()[name]
    src = _small_ct(tmp_path / "src")
    out = tmp_path / "out"
    old = os.umask(0o027)
    try:
        paths = write(src, out / "new", False)  # missing parents are created
    finally:
        os.umask(old)
    files = [os.path.join(dp, f) for dp, _, fs in os.walk(out) for f in fs]
    assert files and all(os.stat(f).st_mode & 0o777 == 0o640 for f in files), name
    assert not any(PARTIAL_PREFIX in f for f in files)
    with pytest.raises(DicomToolsError, match="exist"):
        write(src, out / "new", False)
    assert all(os.path.exists(p) for p in paths)

    real_open = builtins.open

    def full(file, mode="r", *a, **k):
        if any(c in mode for c in "wax") and PARTIAL_PREFIX in os.fspath(file):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", full)
    with pytest.raises(DicomToolsError, match="No space left on device"):
        write(src, out / "full", False)
    left = [f for dp, _, fs in os.walk(out / "full") for f in fs]
    assert not any(PARTIAL_PREFIX in f for f in left), left


def test_png_refuses_a_series_folder_symlinked_into_the_source(tmp_path, capsys):
    src = _small_ct(tmp_path / "src")
    out = tmp_path / "png"
    out.mkdir()
    (out / "3_Synthetic_phantom").symlink_to(src)
    before = sorted(p.name for p in src.iterdir())
    assert main(["png", str(src), str(out), "-q"]) == 1
    assert "inside the source" in _one_line(capsys.readouterr().err)[0]
    assert sorted(p.name for p in src.iterdir()) == before


def test_diffusion_sidecars_are_checked_before_the_volume(tmp_path):
    from types import SimpleNamespace

    from napari_dicomtools.core.volume import read_volume

    vol = read_volume(_small_ct(tmp_path / "src"))
    (tmp_path / "d.bval").write_text("old")
    vol.series = SimpleNamespace(diffusion=[(0, None)])
    with pytest.raises(DicomToolsError, match="d.bval: exists"):
        nifti.write_nifti(vol, tmp_path / "d.nii.gz")
    assert not (tmp_path / "d.nii.gz").exists()


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 256 KB tmpfs (needs root and permission to mount; skipped otherwise)."""
    import subprocess

    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_real_full_and_read_only_file_system(tiny_tmpfs, tmp_path, capsys):
    import subprocess

    src = tmp_path / "src"
    for n in (1, 2):
        write_series(src / f"s{n}", np.full((6, 64, 64), n, np.int16), series_number=n,
                     description=f"d{n}", series_uid=f"1.2.3.{n}", prefix=f"S{n}")
    allsrc = tmp_path / "all"
    for n in (1, 2):
        write_series(allsrc / f"s{n}", np.full((6, 64, 64), n, np.int16), series_number=n,
                     description=f"d{n}", series_uid=f"1.2.3.{n}", prefix=f"S{n}")
    write_series(allsrc / "big", np.arange(30 * 64 * 64, dtype=np.int16).reshape(30, 64, 64),
                 series_number=9, description="big", series_uid="1.2.3.9")
    # 240 KB does not fit next to the two small volumes: one line, the others written
    assert main(["convert", str(allsrc), str(tiny_tmpfs / "out"), "--no-gzip", "-q"]) == 1
    lines = _one_line(capsys.readouterr().err)
    assert len(lines) == 2 and "cannot write: No space left on device" in lines[0]
    assert "1 of 3 volume(s) not written" in lines[1]
    assert len(list((tiny_tmpfs / "out").iterdir())) == 2  # no partial file left
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_tmpfs)], check=True)
    assert main(["convert", str(src), str(tiny_tmpfs / "out" / "x"), "-q"]) == 1
    assert main(["png", str(src), str(tiny_tmpfs / "png"), "-q"]) == 1
    assert main(["info", str(src), "--tags", "Modality", "--csv",
                 str(tiny_tmpfs / "t.csv")]) == 1
    lines = _one_line(capsys.readouterr().err)
    assert all("Read-only file system" in ln for ln in lines), lines
    assert f"{tiny_tmpfs / 't.csv'}: cannot write" in lines[-1]
