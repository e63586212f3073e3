#!/usr/bin/env python
"""Peak memory of DICOM -> NIfTI conversion (``.nii`` and ``.nii.gz``) next to the volume size.

A synthetic CT series (default 300 slices of 512 x 384 int16, about 118 MB) is written to a
temporary folder; each format is then converted in a fresh process (``write_series_nifti``,
what ``dicomtools convert`` runs), which reports its peak RSS above the level it had after
scanning and importing nibabel (a fixed cost, reported apart; sampled every 5 ms, checked against ``resource.getrusage``) and the peak of Python/numpy allocations
(``tracemalloc``). Goal (issue 11): peak under a quarter of the volume size.

usage: python benchmarks/bench_nifti_memory.py [--slices 300] [--rows 384] [--cols 512]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(src: str, out: str) -> None:
    """Convert ``src`` to ``out`` and print peak memory as JSON (runs in its own process)."""
    import threading
    import time
    import tracemalloc

    from napari_dicomtools.core.nifti import write_series_nifti
    from napari_dicomtools.core.series import scan

    (series,) = scan(src)
    # the header is built by nibabel: its import is a fixed cost (a few MB, not proportional
    # to the volume) and under tracemalloc it costs ten times that, so it is paid (and
    # reported) before the baseline, and the peak is the conversion's own
    before_import = _rss_now_mb()
    import nibabel.nifti1  # noqa: F401

    import_mb = _rss_now_mb() - before_import
    base_now = _rss_now_mb()
    sampled = [base_now]
    done = threading.Event()

    def sample():  # ru_maxrss also counts the scan's peak: sample RSS during the write
        while not done.is_set():
            sampled.append(_rss_now_mb())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    tracemalloc.start()
    write_series_nifti(series, out)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    done.set()
    sampler.join()
    peak = max(max(sampled), _rss_now_mb())
    if resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 < peak - 1:
        raise AssertionError("RSS sampling is inconsistent with getrusage")
    print(json.dumps({"rss_peak_above_scan_mb": peak - base_now, "nibabel_import_mb": import_mb,
                      "traced_peak_mb": traced_peak / 2**20,
                      "out_mb": os.path.getsize(out) / 2**20}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--rows", type=int, default=384)
    ap.add_argument("--cols", type=int, default=512)
    ap.add_argument("--child", nargs=2, metavar=("SRC", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return 0
    import numpy as np

    from napari_dicomtools.core.synthetic import write_series

    tmp = tempfile.mkdtemp(prefix="bench-nifti-mem-")
    try:
        src = os.path.join(tmp, "ct")
        rng = np.random.default_rng(0)
        values = rng.integers(-1000, 2000, (args.slices, args.rows, args.cols),
                              dtype=np.int16)
        write_series(src, values, shuffle=False)
        volume_mb = values.nbytes / 2**20
        del values
        print(f"volume: {args.slices} x {args.rows} x {args.cols} int16 = {volume_mb:.1f} MB")
        worst = 0.0
        for ext in (".nii", ".nii.gz"):
            out = os.path.join(tmp, "out" + ext)
            r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", src, out],
                               capture_output=True, text=True, check=True)
            res = json.loads(r.stdout.strip().splitlines()[-1])
            ratio = res["rss_peak_above_scan_mb"] / volume_mb
            worst = max(worst, ratio)
            print(f"{ext:8s} peak RSS +{res['rss_peak_above_scan_mb']:7.1f} MB "
                  f"({ratio:5.1%} of the volume), traced peak {res['traced_peak_mb']:6.1f} MB, "
                  f"file {res['out_mb']:.1f} MB (+ nibabel import "
                  f"{res['nibabel_import_mb']:.1f} MB, fixed)")
        print(f"goal: under 25% of the volume -> {'met' if worst < 0.25 else 'NOT met'}")
        return 0 if worst < 0.25 else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
