#!/usr/bin/env python
"""Per-call latency of ``dicomtools convert`` on small series, next to dcm2niix.

Over many small series the start-up of each call dominates (issue 12: 56 small series took
dcm2niix 2.4 s and ``dicomtools convert`` 21.6 s). This writes --series small series
(16 slices of 64x64, napari_dicomtools.core.synthetic) and converts each in a fresh process,
then prints the median per-series time of:

  python          the bare interpreter (``python -c pass``)
  import          ``import napari_dicomtools.cli`` (numpy, our core)
  convert         a whole ``dicomtools convert SERIES OUT.nii.gz``
  convert+nibabel the same with nibabel imported first (pydicom and scipy hidden from it):
                  what building the NIfTI header with nibabel cost each call before
                  core._nifti1 packed it (nibabel imports urllib, http, email, xml and every
                  image format it knows)
  convert+pydicom the same with pydicom imported first: what a plain CT saves by the fast
                  header parser
  dcm2niix        ``dcm2niix -z y -b n`` on the same folder

and, from ``python -X importtime`` of one convert, the import time of the heaviest packages.
Ratios are against dcm2niix in the same run. Child processes run with bytecode caching on
(PYTHONDONTWRITEBYTECODE removed, one warm-up call), as in an installed package: without
the cache every call recompiles our modules.

usage: python benchmarks/bench_small_series.py [--series 12] [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

CONVERT = [sys.executable, "-m", "napari_dicomtools.cli", "convert"]
_RUN = ("import runpy, sys; sys.argv[0] = 'dicomtools'; "
        "runpy.run_module('napari_dicomtools.cli', run_name='__main__')")
PRE_PYDICOM = [sys.executable, "-c", "import pydicom; " + _RUN, "convert"]
PRE_NIBABEL = [sys.executable, "-c", "import sys; sys.modules.update(pydicom=None, scipy=None); "
               "import nibabel; del sys.modules['pydicom'], sys.modules['scipy']; " + _RUN,
               "convert"]


def _make(folder: str, n: int) -> list[str]:
    import numpy as np

    from napari_dicomtools.core.synthetic import write_series

    out = []
    for k in range(n):
        d = os.path.join(folder, f"s{k:03d}")
        if not os.path.isdir(d):
            vals = np.random.default_rng(k).integers(0, 900, (16, 64, 64))
            write_series(d, vals, modality="MR" if k % 2 else "CT", intercept=0,
                         series_number=k + 1, seed=k, window=None)
        out.append(d)
    return out


ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    return dt


def _imports(series: str, out: str) -> list[tuple[str, float]]:
    r = subprocess.run([sys.executable, "-X", "importtime", *CONVERT[1:], series, out, "-q"],
                       capture_output=True, text=True, env=ENV)
    top = []
    for line in r.stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and not parts[2].startswith("  ") and parts[1].strip().isdigit():
            top.append((parts[2].strip(), int(parts[1]) / 1e6))
    return sorted(top, key=lambda x: -x[1])[:6]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=12)
    ap.add_argument("--data", help="folder for the generated series (default: temporary)")
    args = ap.parse_args(argv)
    dcm2niix = shutil.which("dcm2niix")
    with tempfile.TemporaryDirectory() as tmp:
        series = _make(args.data or os.path.join(tmp, "data"), args.series)
        outs = os.path.join(tmp, "out")
        os.makedirs(outs)
        _timed([*CONVERT, series[0], os.path.join(outs, "warm.nii.gz"), "-q"])  # caches
        rows = {"python": [], "import": [], "convert": [], "convert+nibabel": [],
                "convert+pydicom": [], "dcm2niix": []}
        for k, s in enumerate(series):
            rows["python"].append(_timed([sys.executable, "-c", "pass"]))
            rows["import"].append(_timed([sys.executable, "-c", "import napari_dicomtools.cli"]))
            rows["convert"].append(_timed([*CONVERT, s, os.path.join(outs, f"a{k}.nii.gz"),
                                           "-q"]))
            rows["convert+nibabel"].append(_timed([*PRE_NIBABEL, s,
                                                   os.path.join(outs, f"n{k}.nii.gz"), "-q"]))
            rows["convert+pydicom"].append(_timed([*PRE_PYDICOM, s,
                                                   os.path.join(outs, f"b{k}.nii.gz"), "-q"]))
            if dcm2niix:
                rows["dcm2niix"].append(_timed([dcm2niix, "-z", "y", "-b", "n", "-o", outs,
                                                "-f", f"c{k}", s]))
        imports = _imports(series[0], os.path.join(outs, "imp.nii.gz"))
    ref = statistics.median(rows["dcm2niix"]) if rows["dcm2niix"] else None
    print(f"{args.series} series of 16 slices 64x64, median seconds per series "
          f"(total over all series)")
    for name, ts in rows.items():
        if not ts:
            print(f"  {name:16s} (not installed)")
            continue
        med = statistics.median(ts)
        ratio = f"  {med / ref:5.1f}x dcm2niix" if ref else ""
        print(f"  {name:16s} {med:6.3f} s  ({sum(ts):6.2f} s){ratio}")
    print("heaviest imports in one convert (cumulative s):")
    for name, sec in imports:
        print(f"  {name:24s} {sec:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
