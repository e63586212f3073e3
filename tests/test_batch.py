"""Batch convert/anonymize on Dask distributed: a 2-worker LocalCluster (processes) against
the single-process result, a worker killed mid-job, an interrupted job resumed."""

from __future__ import annotations

import gzip
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from napari_dicomtools.core.batch import (
    BATCH_PATTERN,
    MANIFEST,
    ConvertOptions,
    expand_inputs,
    read_manifest,
    run_batch,
)
from napari_dicomtools.core.errors import DicomToolsError
from napari_dicomtools.core.synthetic import make_archive

KEY = "batch-test-secret"


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("arch") / "archive")


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", silence_logs=40)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def reference(archive, tmp_path_factory):
    """The single-process (``workers=0``) conversion of the archive."""
    out = tmp_path_factory.mktemp("ref") / "nifti"
    summary = run_batch("convert", [archive.root], out, workers=0)
    return out, summary


def tree(root, skip=(MANIFEST, "dicomtools-job.json")) -> dict:
    """{relative path: content} of every file under ``root`` (.nii.gz decompressed: the
    gzip header carries a time stamp)."""
    out = {}
    for dp, _dns, fns in os.walk(root):
        for fn in fns:
            if fn in skip:
                continue
            p = os.path.join(dp, fn)
            with (gzip.open if fn.endswith(".gz") else open)(p, "rb") as f:
                out[os.path.relpath(p, root)] = f.read()
    return out


def test_archive_has_the_promised_content(archive):
    from napari_dicomtools.core.series import scan

    assert len(archive.series) == 18 and len(archive.bad_series) == 1
    series = scan(archive.root)
    assert sorted({s.uid for s in series}) == sorted(archive.series)
    reasons = {k.path: k.reason for k in series.skipped}
    for f in archive.corrupt:
        assert "not a DICOM file" in reasons[f]
    for f in archive.duplicates:
        assert reasons[f].startswith("duplicate of")


def test_list_file_inputs(tmp_path, archive):
    lst = tmp_path / "inputs.txt"
    lst.write_text(f"# two patients\n{archive.root}/P000\n\n{archive.root}/P001\n")
    assert expand_inputs([lst, f"{archive.root}/P000"]) == [f"{archive.root}/P000",
                                                            f"{archive.root}/P001"]
    (tmp_path / "P000").mkdir()  # relative lines are taken from the list's folder
    lst.write_text("P000\nnope\n")
    with pytest.raises(DicomToolsError, match=r"read as a list of inputs .*line 2 \('nope'\) names no such file"):
        expand_inputs([f"@{lst}"])


def test_single_process_convert_is_correct(reference, archive):
    import nibabel as nib
    import pydicom

    from napari_dicomtools.core.series import scan
    from napari_dicomtools.core.volume import read_volume

    out, summary = reference
    assert (summary.total, summary.succeeded, summary.failed) == (18, 17, 1)
    # series grouped part by part (folders) on the workers, the duplicates in copies/ read
    # again with their series: the files left out, and why, are those of one scan
    assert sorted(summary.unreadable) == sorted((k.path, k.reason)
                                                for k in scan(archive.root).skipped)
    (label, reason), = summary.failures
    bad = archive.series[archive.bad_series[0]]
    assert "pixel data cannot be decoded" in reason and any(f in reason for f in bad)
    rows = {r["series_uid"]: r for r in read_manifest(out)}
    assert rows[archive.bad_series[0]]["status"] == "failed"
    assert all(len(r["outputs"]) == 1 for u, r in rows.items() if u != archive.bad_series[0])
    # one output checked against the values the generator wrote (HU, geometric order)
    row = next(r for r in rows.values() if r["outputs"] and "PAT00001" in r["outputs"][0]
               and r["outputs"][0].endswith("1_MR_axial_1.nii.gz"))
    # the default names: <PatientID>/<StudyDate><StudyTime>_<StudyInstanceUID>/<n>_<protocol>
    first = archive.series[row["series_uid"]][0]
    ds = pydicom.dcmread(first, stop_before_pixels=True)
    assert os.path.relpath(row["outputs"][0], out) == os.path.join(
        "PAT00001", f"{ds.StudyDate}{ds.StudyTime}_{ds.StudyInstanceUID}",
        "1_MR_axial_1.nii.gz")
    img = nib.load(row["outputs"][0])
    vol = read_volume(archive.series[row["series_uid"]][0].rsplit("/", 1)[0])
    assert img.shape == (16, 16, 6)
    np.testing.assert_array_equal(np.asarray(img.dataobj).T, vol.array)
    np.testing.assert_allclose(img.affine, vol.affine_ras, atol=1e-4)
    assert len(row["sources"]) == 6 and all(s[1] > 0 for s in row["sources"])


def test_two_workers_convert_equals_single_process(client, archive, reference, tmp_path):
    ref_out, _ = reference
    out = tmp_path / "nifti"
    summary = run_batch("convert", [archive.root], out, client=client)
    assert (summary.succeeded, summary.failed, summary.skipped) == (17, 1, 0)
    got, want = tree(out), tree(ref_out)
    assert len(want) == 17 and got == want
    workers = {r["worker"] for r in read_manifest(out)}
    assert workers <= {f"{os.uname().nodename}:{p}" for p in client.run(os.getpid).values()}


def test_two_workers_anonymize_equals_single_process(client, archive, tmp_path):
    import pydicom

    from napari_dicomtools.core.anonymize import Options, anonymize_files

    opts = Options(shift_dates=True)  # the same per-patient shift on every worker
    rep = anonymize_files(archive.root, tmp_path / "single", opts, key=KEY, workers=1)
    summary = run_batch("anonymize", [archive.root], tmp_path / "dask", key=KEY,
                        options=opts, client=client)
    got, want = tree(tmp_path / "dask"), tree(tmp_path / "single")
    assert len(want) == len(rep.written) == 108 and got == want
    assert summary.outputs == 108 and summary.succeeded == 18
    assert all(b"Archive^Patient" not in v and b"PAT0000" not in v for v in got.values())
    dates = {pydicom.dcmread(tmp_path / "dask" / p).StudyDate for p in got}
    assert len(dates) == 3 and "20260101" not in dates  # one shift per patient


def test_killed_worker_job_completes_exactly_once(client, tmp_path, monkeypatch):
    from napari_dicomtools.core import batch
    from napari_dicomtools.core.synthetic import phantom, write_series

    # a result lost with the killed worker and not recomputed is asked for again after this
    monkeypatch.setattr(batch._Dask, "stall_timeout", 20.0)

    src = tmp_path / "src"
    make_archive(src, patients=2, studies=1, series=3, corrupt=0, duplicates=0,
                 bad_series=0)
    # a series big enough (about a second of work) to be in flight when the worker dies
    write_series(src / "big", phantom((128, 192, 192), noise=0), spacing=(1.0, 0.7, 0.7))
    ref = tmp_path / "ref"
    run_batch("convert", [src], ref, workers=0)
    out = tmp_path / "nifti"
    pids = client.run(os.getpid)
    killed = []

    def progress(phase, done, total):
        if phase == "convert" and not killed:
            busy = {a: ks for a, ks in client.processing().items() if ks}
            if not busy:  # between tasks (seen under load): kill at the next progress call
                return
            addr = sorted(busy, key=lambda a: -len(busy[a]))[0]
            os.kill(pids[addr], signal.SIGKILL)  # its series must now be done elsewhere
            killed.append(pids[addr])

    summary = run_batch("convert", [src], out, client=client, progress=progress)
    assert len(killed) == 1
    assert (summary.succeeded, summary.failed) == (7, 0)
    with open(out / MANIFEST) as f:
        assert len(f.read().splitlines()) == 1 + 7  # one row per series, none twice
    assert tree(out) == tree(ref)  # nothing missing, no partial file left


_FORKED_JOB = """
import os, signal, sys
import distributed
from napari_dicomtools.core import batch
from napari_dicomtools.core.batch import read_manifest, run_batch

assert batch._fork_workers(), "a one-thread process forks its workers"
warmed, killed, stealing = [], [], []
real_warm = batch._warm_imports
batch._warm_imports = lambda: (warmed.append(1), real_warm())
batch._Dask.stall_timeout = 20.0

def progress(phase, done, total):
    if phase == "convert" and not killed:
        c = distributed.default_client()  # the job's own
        stealing.append(c.run_on_scheduler(
            lambda dask_scheduler: "stealing" in dask_scheduler.extensions))
        pid = sorted(c.run(os.getpid).values())[0]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

src, out = sys.argv[1], sys.argv[2]
s = run_batch("convert", [src], out, workers=2, progress=progress)
print(len(warmed), len(killed), s.succeeded, s.failed, len(read_manifest(out)), stealing[0],
      "pydicom" in sys.modules)
"""


def test_own_cluster_forked_workers_survive_a_kill(tmp_path):
    """``workers=2`` from a one-thread process (as the ``dicomtools`` command): run_batch's
    own LocalCluster, its workers forked with the modules loaded; one killed mid-job is
    replaced and the job completes exactly once; the lock goes with the job (a rerun opens
    the folder and skips everything). In a fresh process: this one has threads (pytest's,
    other clusters), where run_batch spawns its workers instead."""
    import subprocess
    import sys

    src = tmp_path / "src"
    make_archive(src, patients=2, studies=1, series=3, corrupt=0, duplicates=0,
                 bad_series=0)
    ref = tmp_path / "ref"
    run_batch("convert", [src], ref, workers=0)
    out = tmp_path / "nifti"
    r = subprocess.run([sys.executable, "-c", _FORKED_JOB, str(src), str(out)],
                       capture_output=True, text=True, timeout=400,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert r.returncode == 0, r.stderr[-3000:]
    # forked, one killed, 6 done once; no work stealing (a task runs where its series were
    # scanned); pydicom not loaded by the client (the workers have no file needing it)
    assert r.stdout.split() == ["1", "1", "6", "0", "6", "False", "False"]
    assert tree(out) == tree(ref)
    again = run_batch("convert", [src], out, workers=0)
    assert (again.succeeded, again.skipped) == (0, 6)


def test_interrupted_job_resumes_where_it_stopped(client, archive, tmp_path):
    out = tmp_path / "anon"

    def interrupt(phase, done, total):
        if phase == "anonymize" and done == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch("anonymize", [archive.root], out, key=KEY, client=client,
                  progress=interrupt)
    first = read_manifest(out)
    assert len(first) == 6
    finished = sum(r["status"] == "done" for r in first)
    seen = []
    summary = run_batch("anonymize", [archive.root], out, key=KEY, client=client,
                        progress=lambda p, d, t: seen.append((p, t)))
    assert summary.skipped == finished
    assert summary.succeeded + summary.failed == 19 - finished
    assert seen[-1] == ("anonymize", 19 - finished)  # only the unfinished series ran
    ref = tmp_path / "ref"
    run_batch("anonymize", [archive.root], ref, key=KEY, workers=0)
    assert tree(out) == tree(ref)


def test_rerun_redoes_changed_series_and_checks_the_key(archive, tmp_path):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(f"{archive.root}/P002", src)
    out = tmp_path / "anon"
    first = run_batch("anonymize", [src], out, key=KEY, workers=0)
    assert (first.succeeded, first.failed) == (6, 0)
    touched = next(p for p in src.rglob("*.dcm"))
    os.utime(touched, ns=(1, 1))
    again = run_batch("anonymize", [src], out, key=KEY, workers=0)
    assert (again.succeeded, again.skipped) == (1, 5)
    with pytest.raises(DicomToolsError, match="another anonymization key"):
        run_batch("anonymize", [src], out, key="other", workers=0)
    with pytest.raises(DicomToolsError, match="holds a batch anonymize job, not convert"):
        run_batch("convert", [src], out, workers=0)
    fresh = run_batch("anonymize", [src], out, key="other", workers=0, force=True)
    assert (fresh.succeeded, fresh.skipped) == (6, 0)


def test_convert_refuses_existing_outputs_without_force(archive, reference, tmp_path):
    ref_out, _ = reference
    rel = next(iter(tree(ref_out)))
    out = tmp_path / "nifti"
    (out / os.path.dirname(rel)).mkdir(parents=True)
    (out / rel).write_bytes(b"precious")
    with pytest.raises(DicomToolsError, match="exists; not overwriting"):
        run_batch("convert", [f"{archive.root}/P000", f"{archive.root}/P001"], out,
                  workers=0, options=ConvertOptions())
    assert (out / rel).read_bytes() == b"precious"
    with pytest.raises(DicomToolsError, match="is not empty"):
        run_batch("anonymize", [f"{archive.root}/P000"], out, key=KEY, workers=0)
    assert (out / rel).read_bytes() == b"precious"


def test_cli_batch_convert(archive, tmp_path, capsys):
    from napari_dicomtools.cli import main

    lst = tmp_path / "inputs.txt"
    lst.write_text(f"{archive.root}/P000\n{archive.root}/P001\n")
    out = tmp_path / "nifti"
    rc = main(["convert", str(lst), f"{archive.root}/P002", str(out), "--workers", "0",
               "--no-gzip"])
    cap = capsys.readouterr()
    assert rc == 3  # the undecodable series failed, alone
    assert "17 succeeded, 1 failed, 0 skipped" in cap.out
    assert "FAILED" in cap.err and "pixel data cannot be decoded" in cap.err
    assert len(list(out.rglob("*.nii"))) == 17
    rc = main(["convert", str(lst), f"{archive.root}/P002", str(out), "--workers", "0",
               "--no-gzip"])
    assert rc == 3 and "0 succeeded, 1 failed, 17 skipped" in capsys.readouterr().out
    # one input and no batch option: the single-folder command as before
    rc = main(["convert", f"{archive.root}/P002/S0/1_CT", str(tmp_path / "one.nii")])
    assert rc == 0 and (tmp_path / "one.nii").exists()


def test_cli_scheduler_address_runs_on_that_cluster(client, archive, reference, tmp_path,
                                                    capsys):
    """--scheduler ADDRESS (as for a cluster started by `dask ssh`, dask-jobqueue...): the
    job runs on that cluster's workers, with the files of the in-process run."""
    from napari_dicomtools.cli import main

    out = tmp_path / "nifti"
    rc = main(["convert", f"{archive.root}/P001", str(out), "-q", "--scheduler",
               client.scheduler.address])
    assert rc == 0, capsys.readouterr().err
    pids = {f"{os.uname().nodename}:{p}" for p in client.run(os.getpid).values()}
    assert {r["worker"] for r in read_manifest(out)} <= pids
    want = {k: v for k, v in tree(reference[0]).items() if k.startswith("PAT00001")}
    assert len(want) == 6 and tree(out) == want


def test_f_pattern_names_as_the_single_input_convert(archive, tmp_path):
    """-f in a batch job: the names (made unique in the same order: the two studies of a
    patient repeat every series number) of the single-input convert with that pattern."""
    from napari_dicomtools.cli import main

    src, pattern = f"{archive.root}/P001", "%f/%i_%s"
    assert main(["convert", src, str(tmp_path / "single"), "-q", "-f", pattern]) == 0
    assert main(["convert", src, str(tmp_path / "batch"), "-q", "--workers", "0",
                 "-f", pattern]) == 0
    single = tree(tmp_path / "single")
    assert len(single) == 6 and {"P001/PAT00001_1.nii.gz", "P001/PAT00001_1a.nii.gz"} < set(single)
    assert tree(tmp_path / "batch") == single


def test_a_series_its_worker_no_longer_keeps_is_read_again(archive, tmp_path, monkeypatch):
    import nibabel as nib

    from napari_dicomtools.core import batch
    from napari_dicomtools.core.sources import iter_sources
    from napari_dicomtools.core.volume import read_volume

    folder = f"{archive.root}/P001/S0/1_CT"
    sources, _ = iter_sources(folder)
    res = batch._scan_part("job:0", sources, "x", ConvertOptions(), BATCH_PATTERN)
    (uid, info), = res["uids"].items()
    assert [s["name"].rsplit("/", 1)[1] for s in info["series"]] == ["1_CT_axial_1"]
    assert "job:0" in batch._CACHE
    batch._forget("job")  # as on another worker, or after a killed one
    assert "job:0" not in batch._CACHE
    monkeypatch.setattr(batch, "CACHE_LIMIT", len(sources) - 1)  # a worker kept enough
    batch._scan_part("job:0", sources, "x", ConvertOptions(), BATCH_PATTERN)
    assert "job:0" not in batch._CACHE
    ref = batch._Ref("job:0", uid, "", sources, False)
    done = batch._convert_task(ref, str(tmp_path / "a.nii.gz"), False, ConvertOptions())
    assert done["status"] == "done", done["error"]
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "a.nii.gz").dataobj).T,
                                  read_volume(folder).array)
    gone = batch._convert_task(batch._Ref("job:0", "1.2.3.4", "", sources, False),
                               str(tmp_path / "b.nii.gz"), False, ConvertOptions())
    assert gone["status"] == "failed" and "series 1.2.3.4 is not in its files" in gone["error"]


def test_seg_in_a_batch_becomes_labels_on_its_image_grid(client, tmp_path):
    """A SEG and its CT in other folders (parts scanned by other workers): label NIfTI on
    the CT's grid, the files of the single-input convert."""
    import nibabel as nib

    from napari_dicomtools.cli import main
    from napari_dicomtools.core.seg import write_seg
    from napari_dicomtools.core.synthetic import phantom, write_series

    src = tmp_path / "src"
    write_series(src / "ct", phantom((8, 20, 24)), spacing=(2.0, 0.7, 0.8))
    labels = np.zeros((8, 20, 24), np.uint8)
    labels[2:5, 3:9, 4:15] = 1
    labels[5:7, 10:16, 2:9] = 2
    write_seg(labels, src / "ct", src / "seg" / "seg.dcm")
    out = tmp_path / "nifti"
    summary = run_batch("convert", [src], out, client=client)
    assert (summary.succeeded, summary.failed) == (2, 0), summary.failures
    assert main(["convert", str(src), str(tmp_path / "single"), "-q", "-f",
                 BATCH_PATTERN]) == 0
    assert tree(out) == tree(tmp_path / "single")
    rows = read_manifest(out)
    seg_out, = [r["outputs"][0] for r in rows if "Segmentation" in r["outputs"][0]]
    ct_out, = [r["outputs"][0] for r in rows if r["outputs"][0] != seg_out]
    lab, img = nib.load(seg_out), nib.load(ct_out)
    np.testing.assert_array_equal(np.asarray(lab.dataobj), labels.T)
    np.testing.assert_allclose(lab.affine, img.affine, atol=1e-5)


def test_instance_table_as_parquet_parts(client, archive, tmp_path):
    import pandas as pd
    import pydicom

    from napari_dicomtools.core.batch import tabulate

    out = tmp_path / "table"
    res = tabulate([archive.root], out, ["SliceThickness", "Modality", "PixelSpacing",
                                         "SeriesNumber"], client=client, rows_per_part=40)
    n = len(archive.files)
    assert res["rows"] == n and res["parts"] == 3
    assert sorted(os.listdir(out)) == [f"part-0000{i}.parquet" for i in range(3)]
    df = pd.read_parquet(out)
    assert len(df) == n and df["path"].is_unique
    assert df["SliceThickness"].dtype.kind == "f" and df["Modality"].dtype.kind in "OU" or \
        str(df["Modality"].dtype).startswith("str")
    one = archive.series[archive.bad_series[0]][0]
    ds = pydicom.dcmread(one)
    row = df.set_index("path").loc[one]
    assert row["SliceThickness"] == float(ds.SliceThickness)
    assert row["PixelSpacing"] == "\\".join(f"{float(v):g}" for v in ds.PixelSpacing)
    assert row["SeriesNumber"] == ds.SeriesNumber and row["sop_uid"] == ds.SOPInstanceUID
    errors = df.set_index("path")["error"].dropna()
    assert set(errors.index) == set(archive.corrupt)
    dd = pytest.importorskip("dask.dataframe")
    assert int(dd.read_parquet(out).shape[0].compute()) == n
    with pytest.raises(DicomToolsError, match="not empty"):
        tabulate([archive.root], out, client=client)


def test_cli_info_parquet_series_table(archive, tmp_path, capsys):
    import pandas as pd

    from napari_dicomtools.cli import main

    out = tmp_path / "series"
    rc = main(["info", f"{archive.root}/P000", f"{archive.root}/P001", "--tags",
               "SliceThickness,PatientName,Modality", "--deidentify", "--parquet", str(out)])
    assert rc == 0 and "13 row(s) in 1 Parquet part(s)" in capsys.readouterr().out
    df = pd.read_parquet(out)
    assert len(df) == 13 and "PatientName" not in df and "series_uid" not in df
    assert sorted(df["n_slices"].dropna().unique()) == [6]
    assert not df["problems"].fillna("").str.contains(archive.root).any()


def test_zip_input_converts_like_its_folder(archive, tmp_path):
    import shutil

    z = shutil.make_archive(str(tmp_path / "zips" / "p002"), "zip", f"{archive.root}/P002")
    a = run_batch("convert", [z], tmp_path / "from_zip", workers=0)
    b = run_batch("convert", [f"{archive.root}/P002"], tmp_path / "from_folder", workers=0)
    assert a.succeeded == b.succeeded == 6
    assert tree(tmp_path / "from_zip") == tree(tmp_path / "from_folder")
    # a list file of single files: read in parts of many files, grouped as the folder
    lst = tmp_path / "files.txt"
    files = sorted(str(p) for p in Path(archive.root, "P002").rglob("*.dcm"))
    lst.write_text("\n".join(files) + "\n")
    c = run_batch("convert", [lst], tmp_path / "from_list", workers=0)
    assert c.succeeded == 6 and tree(tmp_path / "from_list") == tree(tmp_path / "from_folder")
    row = read_manifest(tmp_path / "from_zip")[0]
    assert all(s[0].startswith(z + "::") and s[1] > 0 for s in row["sources"])


def test_scan_parts_are_whole_folders_and_smaller_at_the_end():
    """The scan is cut between folders, every file once and in order, and its last parts are
    smaller (the workers finish the scan together: the conversion starts when all of it is
    done); series found in several parts are scanned again in one part per worker."""
    from napari_dicomtools.core import batch
    from napari_dicomtools.core.sources import Source

    files = [Source(f"/a/P{i // 100}/S{i // 20}/IM{i % 20}.dcm", None) for i in range(4000)]
    parts = batch._parts([(files, "a")], 2)
    assert [s for p, _ in parts for s in p] == files
    folders = [{os.path.dirname(s.path) for s in p} for p, _ in parts]
    assert sum(len(f) for f in folders) == len(set().union(*folders)) == 200  # none cut
    sizes = [len(p) for p, _ in parts]
    assert max(sizes) == 260 and sizes[-1] <= 80 and sizes[0] > 2 * sizes[-2]

    # two series, each with files in both parts: re-read in two parts, not one
    part_a = [Source(f"/a/x{i}.dcm", None) for i in range(4)]
    part_b = [Source(f"/a/y{i}.dcm", None) for i in range(4)]
    results = [{"part": f"j:{k}", "worker": None, "loose": [],
                "uids": {u: {"idx": [2 * n, 2 * n + 1], "series": [], "skipped": []}
                         for n, u in enumerate(("1.1", "1.2"))}} for k in range(2)]
    again = batch._spanning([(part_a, "a"), (part_b, "a")], results, 2)
    assert [[s.path[-6:] for s in p] for p, _ in again] == [
        ["x0.dcm", "x1.dcm", "y0.dcm", "y1.dcm"], ["x2.dcm", "x3.dcm", "y2.dcm", "y3.dcm"]]
    assert all(r["uids"] == {} for r in results)
