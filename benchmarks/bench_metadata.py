#!/usr/bin/env python
"""Headers-only metadata table of 2,000 files: `metadata_table(level="instance")` with 1 and 2
worker processes against a plain loop of `pydicom.dcmread` collecting the same tags; whole
processes (start-up and imports count), warm cache, median of --repeat, wall and CPU seconds
(user + sys, children included). Files come from benchmarks/make_ct_series.py (2,000 slices of
128x128).

usage: python benchmarks/bench_metadata.py [--data DIR] [--files 2000] [--repeat 3]
"""

from __future__ import annotations

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import MAKER, base_parser, machine_line, median_of  # noqa: E402

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
rows = metadata_table(sys.argv[1], sys.argv[2].split(','), level='instance', as_frame=False,
                      workers=int(sys.argv[3]))
print(len(rows))
"""


def main():
    ap = base_parser(__doc__)
    ap.add_argument("--files", type=int, default=2000)
    a = ap.parse_args()
    folder = os.path.join(a.data, f"meta{a.files}")
    if not (os.path.isdir(folder) and len(os.listdir(folder)) == a.files):
        print(f"writing {a.files} files to {folder} ...", flush=True)
        subprocess.run([sys.executable, MAKER, folder, "--slices", str(a.files), "--size",
                        "128"], check=True)
    py = sys.executable
    median_of(1, [py, "-c", PLAIN, folder, TAGS])  # warm the page cache
    results = [("plain pydicom.dcmread loop", median_of(a.repeat, [py, "-c", PLAIN, folder,
                                                                   TAGS]))]
    for workers in (1, 2):
        results.append((f"metadata_table, {workers} worker{'s' if workers > 1 else ''}",
                        median_of(a.repeat, [py, "-c", OURS, folder, TAGS, str(workers)])))
    print(f"\n{a.files} files, tags {TAGS}\nmedian of {a.repeat}, whole process, "
          f"{machine_line()}\n")
    print(f"{'contender':30s} {'wall s':>7s} {'CPU s':>6s} {'x wall':>7s} {'x CPU':>6s}")
    (t_plain, c_plain) = results[0][1]
    for name, (t, c) in results:
        print(f"{name:30s} {t:7.3f} {c:6.2f} {t_plain / t:7.2f} {c_plain / c:6.2f}")
    (t1, c1), (t2, c2) = results[1][1], results[2][1]
    print(f"\n1 -> 2 workers: wall {t1 / t2:.2f}x, CPU {c1 / c2:.2f}x; "
          f"best speed-up over the plain loop: {t_plain / min(t1, t2):.2f}x wall "
          "(target >= 3)")


if __name__ == "__main__":
    main()
