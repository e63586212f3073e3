#!/usr/bin/env python
"""Headers-only metadata table of 2,000 files: `metadata_table(level="instance")` against a
plain loop of `pydicom.dcmread` collecting the same tags; whole processes, warm cache, best of
--repeat. Files come from benchmarks/make_ct_series.py (2,000 slices of 128x128).

usage: python benchmarks/bench_metadata.py [--files 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MAKER = os.path.join(HERE, "make_ct_series.py")
TAGS = "PatientID,StudyDate,Modality,SeriesDescription,SliceThickness,KVP,InstanceNumber"

PLAIN = """
import os, sys
import pydicom
d = sys.argv[1]; tags = sys.argv[2].split(',')
rows = []
for f in sorted(os.listdir(d)):
    ds = pydicom.dcmread(os.path.join(d, f))
    rows.append({t: ds.get(t, '') for t in tags})
print(len(rows))
"""

OURS = """
import sys
from napari_dicomtools import metadata_table
rows = metadata_table(sys.argv[1], sys.argv[2].split(','), level='instance', as_frame=False)
print(len(rows))
"""


def timed(code, args, repeat):
    best = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-2000:])
        best = dt if best is None else min(best, dt)
    return best, r.stdout.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "dicomtools-bench"))
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    folder = os.path.join(a.data, f"meta{a.files}")
    if not (os.path.isdir(folder) and len(os.listdir(folder)) == a.files):
        print(f"writing {a.files} files to {folder} ...", flush=True)
        subprocess.run([sys.executable, MAKER, folder, "--slices", str(a.files), "--size",
                        "128"], check=True)
    timed(PLAIN, [folder, TAGS], 1)  # warm the page cache
    t_plain, n1 = timed(PLAIN, [folder, TAGS], a.repeat)
    t_ours, n2 = timed(OURS, [folder, TAGS], a.repeat)
    print(f"\n{a.files} files, tags {TAGS}, best of {a.repeat}, whole process, "
          f"{os.cpu_count()} cores")
    print(f"plain pydicom.dcmread loop : {t_plain:7.3f} s ({n1} rows)")
    print(f"metadata_table (instance)  : {t_ours:7.3f} s ({n2} rows)")
    print(f"speed-up: {t_plain / t_ours:.2f}x (target >= 3)")


if __name__ == "__main__":
    main()
