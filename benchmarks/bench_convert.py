#!/usr/bin/env python
"""Whole-process benchmark of `dicomtools convert` against dcm2niix and of
`dicomtools anonymize` against dicognito, on the 300-slice 512x512 CT series from
benchmarks/make_ct_series.py (warm page cache, best of --repeat).

usage: python benchmarks/bench_convert.py [--data DIR] [--repeat 3]
needs: pip install -e ".[bench]"   (dcm2niix, dicognito)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_read import series_args  # noqa: E402


def timed(cmd, repeat):
    best = None
    for _ in range(repeat):
        out = tempfile.mkdtemp(prefix="bench-out-")
        full = [c.replace("{OUT}", out) for c in cmd]
        t0 = time.perf_counter()
        r = subprocess.run(full, capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(full)} failed:\n{r.stderr[-2000:]}")
        size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(out)
                   for f in fs)
        shutil.rmtree(out, ignore_errors=True)
        best = dt if best is None else min(best, dt)
    return best, size


def main():
    a, series = series_args(__doc__)
    subprocess.run([sys.executable, "-c", "import sys,os;[open(os.path.join(sys.argv[1],f),"
                    "'rb').read() for f in os.listdir(sys.argv[1])]", series], check=True)
    py = sys.executable
    dcm2niix = shutil.which("dcm2niix")
    if dcm2niix is None:
        raise SystemExit("dcm2niix not found: pip install dcm2niix")
    rows = []
    for label, ours_args, ref_args in [
        (".nii (no compression)", ["--no-gzip"], ["-z", "n"]),
        (".nii.gz", [], ["-z", "y"]),
    ]:
        t_ours, s_ours = timed([py, "-m", "napari_dicomtools", "convert", series, "{OUT}",
                                "-q", *ours_args], a.repeat)
        t_ref, s_ref = timed([dcm2niix, "-o", "{OUT}", "-f", "%s_%p", "-b", "n", *ref_args,
                              series], a.repeat)
        rows.append((f"convert {label}", t_ours, t_ref, "dcm2niix", s_ours, s_ref))
    t_ours, _ = timed([py, "-m", "napari_dicomtools", "anonymize", series, "{OUT}", "-q",
                       "--key", "bench"], a.repeat)
    try:
        t_ref, _ = timed([py, "-m", "dicognito", "--quiet", "-o", "{OUT}", series], a.repeat)
        rows.append(("anonymize 300 files", t_ours, t_ref, "dicognito", 0, 0))
    except RuntimeError as exc:
        print(f"dicognito not measured: {str(exc).splitlines()[-1]}")
    print(f"\nseries: {series} ({a.slices} x 512 x 512), best of {a.repeat}, whole process\n")
    print(f"{'task':28s} {'ours s':>8s} {'ref s':>8s} {'reference':>10s} {'speed-up':>9s}"
          f" {'our MiB':>8s} {'ref MiB':>8s}")
    for task, t, tr, ref, so, sr in rows:
        print(f"{task:28s} {t:8.3f} {tr:8.3f} {ref:>10s} {tr / t:8.2f}x "
              f"{so / 2**20:8.1f} {sr / 2**20:8.1f}")


if __name__ == "__main__":
    main()
