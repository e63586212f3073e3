#!/usr/bin/env python
"""Scanning a .zip against the same files in a folder (issue 11's goal: within 1.5x).

Writes a series of N small slices (napari_dicomtools.core.synthetic.write_series), zips it
(deflated), then times ``scan()`` of the folder and of the zip, each in fresh processes
(median of --runs), and prints the ratio.

usage: python benchmarks/bench_zip_scan.py [--files 2000] [--runs 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile


def _one(path: str) -> None:
    from napari_dicomtools import scan

    t0 = time.perf_counter()
    series = scan(path)
    dt = time.perf_counter() - t0
    n = sum(len(s.frames) for s in series)
    print(f"{dt:.4f} {n}")


def _make(folder: str, n: int) -> tuple[str, str]:
    import numpy as np

    from napari_dicomtools.core.synthetic import write_series

    src = os.path.join(folder, "series")
    zpath = os.path.join(folder, "series.zip")
    if not os.path.isdir(src):
        write_series(src, np.zeros((n, 8, 8), np.int16), shuffle=True)
    if not os.path.exists(zpath):
        with zipfile.ZipFile(zpath + ".tmp", "w", zipfile.ZIP_DEFLATED) as zf:
            for name in sorted(os.listdir(src)):
                zf.write(os.path.join(src, name), f"series/{name}")
        os.replace(zpath + ".tmp", zpath)
    return src, zpath


def _time(path: str, runs: int) -> tuple[float, int]:
    times, frames = [], 0
    for _ in range(runs):
        out = subprocess.run([sys.executable, __file__, "--one", path], check=True,
                             capture_output=True, text=True).stdout.split()
        times.append(float(out[0]))
        frames = int(out[1])
    return statistics.median(times), frames


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one")
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(),
                                                   "dicomtools-bench", "zipscan"))
    a = ap.parse_args()
    if a.one:
        _one(a.one)
        return 0
    folder = os.path.join(a.data, str(a.files))
    os.makedirs(folder, exist_ok=True)
    src, zpath = _make(folder, a.files)
    t_dir, n_dir = _time(src, a.runs)
    t_zip, n_zip = _time(zpath, a.runs)
    ratio = t_zip / t_dir
    print(f"{a.files} files, scan() median of {a.runs} fresh processes (after imports)")
    print(f"folder : {t_dir:.3f} s ({n_dir} frames)")
    print(f"zip    : {t_zip:.3f} s ({n_zip} frames)")
    print(f"zip / folder: {ratio:.2f}x (goal <= 1.5x: {'met' if ratio <= 1.5 else 'NOT met'})")
    return 0 if n_dir == n_zip == a.files else 1


if __name__ == "__main__":
    sys.exit(main())
