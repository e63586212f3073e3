#!/usr/bin/env python
"""What removing text from compressed Pixel Data costs de-identification (core/_pixeltext.py),
on the 100-frame 512x512 CT series of benchmarks/bench_compressed.py in each compressed
syntax (one file per frame): ``anonymize_files`` in this process with one worker, as shipped,
against the same run with the Pixel Data step bypassed (copied as read: the baseline), median
of --repeat, wall and CPU seconds (user + sys); and the step alone per file (the value parsed,
segments removed, the value rebuilt when something was), with what it removed.

usage: python benchmarks/bench_pixeltext.py [--data DIR] [--repeat 5]
DIR holds comp/ct100-<syntax> folders (benchmarks/bench_compressed.py makes them).
"""

from __future__ import annotations

import glob
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import base_parser, machine_line  # noqa: E402


def _cpu() -> float:
    return time.process_time()  # user + sys of this process, finer than os.times()


def _run(folder: str, bypass: bool) -> tuple[float, float]:
    """(wall, CPU) of de-identifying ``folder`` in this process with one worker."""
    from napari_dicomtools.core import _pixeltext, anonymize

    real = _pixeltext.deidentify_pixels
    if bypass:
        def copied(*a, **k):
            return None, None
        _pixeltext.deidentify_pixels = copied  # both paths import it from there per file
    out = tempfile.mkdtemp(prefix="pixeltext-bench-")
    try:
        w0, c0 = time.perf_counter(), _cpu()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = anonymize.anonymize_files(folder, out, key="bench", workers=1)
        wall, cpu = time.perf_counter() - w0, _cpu() - c0
        assert len(report.written) == len(os.listdir(folder)), report.skipped[:3]
    finally:
        _pixeltext.deidentify_pixels = real
        shutil.rmtree(out, ignore_errors=True)
    return wall, cpu


def _step_alone(folder: str) -> tuple[float, str]:
    """CPU milliseconds per file of clean_pixel_data alone (files read beforehand), and what
    it removed from the folder."""
    import pydicom

    from napari_dicomtools.core import _pixeltext

    values = []
    for f in sorted(glob.glob(os.path.join(folder, "*.dcm"))):
        ds = pydicom.dcmread(f)
        values.append((ds.PixelData, str(ds.file_meta.TransferSyntaxUID),
                       int(ds.get("NumberOfFrames", 1) or 1)))
    removed: dict[str, int] = {}
    c0 = _cpu()
    for value, ts, n in values:
        for kind, k in _pixeltext.clean_pixel_data(value, ts, n).removed.items():
            removed[kind] = removed.get(kind, 0) + k
    return (_cpu() - c0) * 1000 / len(values), _pixeltext.summary(removed) or "nothing"


def main() -> None:
    ap = base_parser(__doc__)
    ap.set_defaults(repeat=5)
    a = ap.parse_args()
    folders = sorted(glob.glob(os.path.join(a.data, "comp", "ct100-*")))
    if not folders:
        sys.exit(f"no {a.data}/comp/ct100-* folders: run benchmarks/bench_compressed.py")
    from napari_dicomtools.core.anonymize import preload_tables

    preload_tables()
    print(f"{machine_line()}; median of {a.repeat}, one worker, in process\n")
    print(f"{'syntax':22s} {'files':>5s} {'baseline wall/CPU s':>20s} "
          f"{'cleaned wall/CPU s':>19s} {'CPU ratio':>9s} {'step ms/file':>12s}  removed")
    for folder in folders:
        _run(folder, False)  # warm the page cache and imports
        base = [_run(folder, True) for _ in range(a.repeat)]
        ours = [_run(folder, False) for _ in range(a.repeat)]
        bw, bc = (statistics.median(x[i] for x in base) for i in (0, 1))
        ow, oc = (statistics.median(x[i] for x in ours) for i in (0, 1))
        step, what = _step_alone(folder)
        name = os.path.basename(folder)[len("ct100-"):]
        print(f"{name:22s} {len(os.listdir(folder)):5d} {bw:9.2f} / {bc:8.2f} "
              f"{ow:8.2f} / {oc:8.2f} {oc / bc:9.2f} {step:12.2f}  {what}")


if __name__ == "__main__":
    main()
