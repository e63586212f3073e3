#!/usr/bin/env python
"""Whole-process benchmark of `dicomtools anonymize` against dicognito on the 300-slice
512x512 CT series from benchmarks/make_ct_series.py, with identifying data planted where
attackers find it (names and IDs in nested sequences, an operator name, unlisted public
attributes, a UTF-16 OB, private tags, UIDs embedding a birth date and an MRN), and a leak
count of both outputs: every planted marker searched in every output byte (ASCII and
UTF-16-LE, any case) and path. Wall time (what a user waits; ours uses up to 4 processes)
and CPU time of the whole process tree (what a busy machine pays) are both reported.

usage: python benchmarks/bench_anonymize.py [--data DIR] [--slices 300] [--repeat 3]
needs: pip install -e ".[bench]"   (dicognito)
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_read import series_args  # noqa: E402

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


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd, repeat):
    """(best wall seconds, best CPU seconds of the process tree, markers found, files)."""
    best, best_cpu, found, n = None, None, None, 0
    for _ in range(repeat):
        out = tempfile.mkdtemp(prefix="bench-anon-")
        os.rmdir(out)  # both tools create it
        full = [c.replace("{OUT}", out) for c in cmd]
        c0 = _children_cpu()
        t0 = time.perf_counter()
        r = subprocess.run(full, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        cpu = _children_cpu() - c0
        best_cpu = cpu if best_cpu is None else min(best_cpu, cpu)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(full)} failed:\n{r.stderr[-2000:]}")
        found = leaks(out)
        n = sum(len(fs) for _, _, fs in os.walk(out))
        shutil.rmtree(out, ignore_errors=True)
        best = dt if best is None else min(best, dt)
    return best, best_cpu, found, n


def main():
    a, series = series_args(__doc__)
    phi = plant(series, series + "-phi")
    subprocess.run([sys.executable, "-c", "import sys,os;[open(os.path.join(sys.argv[1],f),"
                    "'rb').read() for f in os.listdir(sys.argv[1])]", phi], check=True)
    py = sys.executable
    t_ours, c_ours, l_ours, n_ours = timed([py, "-m", "napari_dicomtools", "anonymize", phi,
                                            "{OUT}", "-q", "--key", "bench"], a.repeat)
    print(f"series: {phi} ({a.slices} x 512 x 512, {len(MARKERS)} markers planted), "
          f"best of {a.repeat}, whole process; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}\n")
    print(f"{'tool':12s} {'files':>6s} {'wall s':>7s} {'CPU s':>6s} {'leaked':>7s}  "
          "markers found")
    print(f"{'dicomtools':12s} {n_ours:6d} {t_ours:7.2f} {c_ours:6.2f} {len(l_ours):7d}  "
          f"{', '.join(l_ours)}")
    try:
        t_ref, c_ref, l_ref, n_ref = timed([py, "-m", "dicognito", "--quiet", "-o", "{OUT}",
                                            phi], a.repeat)
    except RuntimeError as exc:
        print(f"dicognito not measured: {str(exc).splitlines()[-1]}")
        return
    print(f"{'dicognito':12s} {n_ref:6d} {t_ref:7.2f} {c_ref:6.2f} {len(l_ref):7d}  "
          f"{', '.join(l_ref)}")
    print(f"\nspeed-up (dicognito / ours): wall {t_ref / t_ours:.2f}x, "
          f"CPU {c_ref / c_ours:.2f}x")

if __name__ == "__main__":
    main()
