#!/usr/bin/env python
"""Whole-process benchmark of `dicomtools anonymize` against dicognito on the 300-slice
512x512 CT series from benchmarks/make_ct_series.py, with identifying data planted where
attackers find it (names and IDs in nested sequences, an operator name, unlisted public
attributes, a UTF-16 OB, private tags, UIDs embedding a birth date and an MRN), and a leak
count of both outputs: every planted marker searched in every output byte (ASCII and
UTF-16-LE, any case) and path. Ours runs with 1 and 2 worker processes
(NAPARI_DICOMTOOLS_WORKERS). Whole processes (start-up and imports count), median of
--repeat: wall time (what a user waits) and CPU time of the whole process tree (user + sys,
children included: what a busy machine pays, and the steadier figure under load).

usage: python benchmarks/bench_anonymize.py [--data DIR] [--slices 300] [--repeat 3]
needs: pip install -e ".[bench]"   (dicognito)
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import child_env, machine_line, series_args, timed, workers_env  # noqa: E402

BIRTH, MRN = "19650304", "87654321"
LINK = f"1.2.826.0.1.3680043.9.{BIRTH}.{MRN}"
MARKERS = ["PHITOPNAME", "PHITOPID", "PHINAMEDEEP", "PHIIDDEEP", "PHIOPERATOR", "PHIDOCTITLE",
           "PHIDIRNAME", "PHIUNKNOWN", "PHIUTF16", "PHIPRIVATE", "PHICOMMENT", BIRTH, MRN]


def plant(series: str, dest: str) -> str:
    """A copy of ``series`` with the markers planted (made once, then reused)."""
    if os.path.isdir(dest) and len(os.listdir(dest)) == len(os.listdir(series)):
        return dest
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    tmp = dest + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for i, fn in enumerate(sorted(os.listdir(series))):
        ds = pydicom.dcmread(os.path.join(series, fn))
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = "PHITOPNAME^Jo", "PHITOPID", BIRTH
        ds.OperatorsName = "PHIOPERATOR^Ann"
        ds.ImageComments = f"PHICOMMENT MRN {MRN}"
        ds.StudyInstanceUID = f"{LINK}.1"
        ds.SeriesInstanceUID = f"{LINK}.2"
        ds.FrameOfReferenceUID = f"{LINK}.3"
        ds.SOPInstanceUID = f"{LINK}.1000.{i}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.MultiFrameSourceSOPInstanceUID = f"{LINK}.4"
        ds.SOPInstanceUIDOfConcatenationSource = f"{LINK}.5"
        ds.DocumentTitle = "PHIDOCTITLE"
        ds.ReferencedFileID = ["PHIDIRNAME", "IM1"]
        ds.add_new(0x0010FFF0, "LO", "PHIUNKNOWN")
        ds.add_new(0x00121000, "OB", "PHIUTF16".encode("utf-16-le"))
        deep = Dataset()
        deep.PatientName, deep.PatientID = "PHINAMEDEEP^X", "PHIIDDEEP"
        region = Dataset()
        region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = \
            "T-D1100", "SRT", "Head"
        region.AnatomicRegionModifierSequence = Sequence([deep])
        ds.AnatomicRegionSequence = Sequence([region])
        block = ds.private_block(0x0029, "ACME 1.0", create=True)
        block.add_new(0x10, "LO", f"PHIPRIVATE {MRN}")
        ds.save_as(os.path.join(tmp, fn))
    os.replace(tmp, dest)
    return dest


def leaks(out: str) -> list[str]:
    hay = []
    for dp, _dns, fns in os.walk(out):
        hay.append(os.path.relpath(dp, out).encode())
        for fn in fns:
            hay.append(fn.encode())
            with open(os.path.join(dp, fn), "rb") as f:
                hay.append(f.read())
    blob = b"\n".join(hay).lower()
    return [m for m in MARKERS if m.lower().encode() in blob
            or m.lower().encode("utf-16-le") in blob]


def measured(cmd, repeat, env=None):
    """(median wall seconds, median CPU seconds, markers found, files written): each run
    into a fresh output folder (both tools create it), checked for leaks."""
    runs, found, n = [], [], 0
    for _ in range(repeat):
        out = tempfile.mkdtemp(prefix="bench-anon-")
        os.rmdir(out)
        runs.append(timed([c.replace("{OUT}", out) for c in cmd], env))
        found = leaks(out)
        n = sum(len(fs) for _, _, fs in os.walk(out))
        shutil.rmtree(out, ignore_errors=True)
    return (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs),
            found, n)


def main():
    a, series = series_args(__doc__)
    phi = plant(series, series + "-phi")
    subprocess.run([sys.executable, "-c", "import sys,os;[open(os.path.join(sys.argv[1],f),"
                    "'rb').read() for f in os.listdir(sys.argv[1])]", phi], check=True)
    py = sys.executable
    ours = [py, "-m", "napari_dicomtools", "anonymize", phi, "{OUT}", "-q", "--key", "bench"]
    rows = [(f"dicomtools, {w} worker{'s' if w > 1 else ''}",
             measured(ours, a.repeat, workers_env(w))) for w in (1, 2)]
    try:
        rows.append(("dicognito", measured([py, "-m", "dicognito", "--quiet", "-o", "{OUT}",
                                            phi], a.repeat, child_env())))
    except RuntimeError as exc:
        print(f"dicognito not measured: {str(exc).splitlines()[-1]}")
    print(f"series: {phi} ({a.slices} x 512 x 512, {len(MARKERS)} markers planted), "
          f"median of {a.repeat}, whole process; {machine_line()}\n")
    print(f"{'tool':22s} {'files':>6s} {'wall s':>7s} {'CPU s':>6s} {'leaked':>7s}  "
          "markers found")
    for name, (t, c, found, n) in rows:
        print(f"{name:22s} {n:6d} {t:7.2f} {c:6.2f} {len(found):7d}  {', '.join(found)}")
    (t1, c1, _, _), (t2, c2, _, _) = rows[0][1], rows[1][1]
    print(f"\n1 -> 2 workers: wall {t1 / t2:.2f}x, CPU {c1 / c2:.2f}x")
    if len(rows) > 2:
        t_ref, c_ref = rows[2][1][:2]
        print(f"speed-up (dicognito / ours): wall {t_ref / min(t1, t2):.2f}x (best of ours), "
              f"CPU {c_ref / min(c1, c2):.2f}x (target 2x)")


if __name__ == "__main__":
    main()
