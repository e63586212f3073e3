#!/usr/bin/env python
"""Whole-process read benchmark: napari-dicomtools against the raw-bytes floor, a plain pydicom
loop and SimpleITK, on the 300-slice 512x512 CT series from benchmarks/make_ct_series.py.

Each contender runs as its own Python process (start-up and imports count, as a user waits),
on a warm page cache, best of --repeat runs. Peak memory is the child's max RSS minus the max RSS
of a process that only imports the same modules (the import baseline).

usage: python benchmarks/bench_read.py [--data DIR] [--slices 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# series_args and make_series are imported from here by the other benchmarks
from _common import (  # noqa: E402,F401
    SITK,
    child_env,
    load_note,
    make_series,
    series_args,
    workers_env,
)

RAW = """
import os, sys
d = sys.argv[1]; n = 0
for f in os.listdir(d):
    with open(os.path.join(d, f), 'rb') as fh:
        n += len(fh.read())
print(n)
"""

RAW_NUMPY = """
import os, sys
import numpy as np
d = sys.argv[1]
files = [os.path.join(d, f) for f in os.listdir(d)]
sizes = [os.path.getsize(f) for f in files]
buf = np.empty(sum(sizes), np.uint8)
off = 0
for f, n in zip(files, sizes):
    with open(f, 'rb') as fh:
        fh.readinto(memoryview(buf[off:off + n]))
    off += n
print(off)
"""

PYDICOM_LOOP = """
import os, sys
import numpy as np, pydicom
d = sys.argv[1]
dss = [pydicom.dcmread(os.path.join(d, f)) for f in os.listdir(d)]
dss.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
vol = np.stack([ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in dss])
print(vol.shape, vol.dtype)
"""

OURS = """
import sys
from napari_dicomtools import read_volume
vol = read_volume(sys.argv[1])
print(vol.array.shape, vol.array.dtype)
"""

OURS_LAZY_FIRST = """
import sys, time
t0 = time.perf_counter()
from napari_dicomtools import read_volume
vol = read_volume(sys.argv[1], lazy=True)
first = vol.array[vol.array.shape[0] // 2].compute()
print(f"first-slice-seconds {time.perf_counter() - t0:.3f}", first.shape)
"""

IMPORT_OURS = "import numpy, napari_dicomtools"
IMPORT_PYDICOM = "import numpy, pydicom"
IMPORT_SITK = "import SimpleITK"
IMPORT_NONE = "import os, sys"


def run_isolated(code: str, *args: str, env=None) -> tuple[float, int, str]:
    """Wall seconds, max RSS (bytes) and stdout of ``python -c code args``, measured by a
    wrapper process so the RSS is this child's own."""
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t0 = time.perf_counter()\n"
        "p = subprocess.run([sys.executable, '-c', sys.argv[1], *sys.argv[2:]],"
        " capture_output=True, text=True)\n"
        "dt = time.perf_counter() - t0\n"
        "assert p.returncode == 0, p.stderr\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
        "print(dt, rss); print(p.stdout.strip())\n"
    )
    p = subprocess.run([sys.executable, "-c", wrapper, code, *args], capture_output=True,
                       text=True, env=child_env() if env is None else env)
    if p.returncode != 0:
        raise RuntimeError(p.stderr)
    first, _, rest = p.stdout.partition("\n")
    dt, rss = first.split()
    return float(dt), int(rss), rest


def best(code, args, repeat, env=None):
    runs = [run_isolated(code, *args, env=env) for _ in range(repeat)]
    t = min(r[0] for r in runs)
    rss = max(r[1] for r in runs)
    return t, rss, runs[0][2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "dicomtools-bench"))
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--lazy-slices", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-sitk", action="store_true")
    a = ap.parse_args()

    series = os.path.join(a.data, f"ct{a.slices}")
    make_series(series, a.slices)
    vol_bytes = a.slices * 512 * 512 * 2
    # warm the page cache
    run_isolated(RAW, series)

    rows = []
    t_raw, rss_raw, _ = best(RAW, [series], a.repeat)
    base_none = best(IMPORT_NONE, [], a.repeat)[1]
    rows.append(("raw bytes (floor)", t_raw, rss_raw - base_none))
    t_rawnp, rss_rawnp, _ = best(RAW_NUMPY, [series], a.repeat)
    base_np = best("import numpy", [], a.repeat)[1]
    rows.append(("raw bytes into one numpy array", t_rawnp, rss_rawnp - base_np))
    base_ours = best(IMPORT_OURS, [], a.repeat)[1]
    t_one, rss_one, _ = best(OURS, [series], a.repeat, env=workers_env(1))
    rows.append(("read_volume, 1 worker", t_one, rss_one - base_ours))
    nw = os.cpu_count() or 1
    t_ours, rss_ours, out = best(OURS, [series], a.repeat, env=workers_env(nw))
    rows.append((f"read_volume, {nw} workers", t_ours, rss_ours - base_ours))
    t_pd, rss_pd, _ = best(PYDICOM_LOOP, [series], a.repeat)
    base_pd = best(IMPORT_PYDICOM, [], a.repeat)[1]
    rows.append(("plain pydicom loop", t_pd, rss_pd - base_pd))
    t_sitk = None
    if not a.skip_sitk:
        try:
            t_sitk, rss_sitk, _ = best(SITK, [series], a.repeat)
            base_sitk = best(IMPORT_SITK, [], a.repeat)[1]
            rows.append(("SimpleITK ImageSeriesReader", t_sitk, rss_sitk - base_sitk))
        except RuntimeError as exc:
            print(f"SimpleITK not measured: {str(exc).strip().splitlines()[-1]}")

    print(f"\nseries: {series} ({a.slices} x 512 x 512, {vol_bytes / 2**20:.0f} MiB as int16)"
          f"  best of {a.repeat}, warm cache, whole process, {os.cpu_count()} cores"
          f"{load_note()}\n")
    print(f"{'contender':34s} {'seconds':>8s} {'x floor':>8s} {'peak extra MiB':>15s} "
          f"{'x volume':>9s}")
    for name, t, extra in rows:
        print(f"{name:34s} {t:8.3f} {t / t_raw:8.2f} {extra / 2**20:15.0f} "
              f"{extra / vol_bytes:9.2f}")
    print()
    print(f"read_volume vs raw floor:   {t_ours / t_raw:.2f}x   (target <= 1.3)")
    print(f"read_volume 1 -> {nw} workers: {t_one / t_ours:.2f}x")
    print(f"read_volume vs raw bytes into a numpy array: {t_ours / t_rawnp:.2f}x")
    print(f"read_volume vs pydicom loop: {t_pd / t_ours:.2f}x faster")
    if t_sitk:
        print(f"read_volume vs SimpleITK:    {t_sitk / t_ours:.2f}x faster (target > 1)")
    print(f"peak memory over imports:    {(rss_ours - base_ours) / vol_bytes:.2f}x the volume "
          "(target < 1.5)")

    lazy = os.path.join(a.data, f"ct{a.lazy_slices}")
    make_series(lazy, a.lazy_slices)
    run_isolated(RAW, lazy)
    _, _, out = best(OURS_LAZY_FIRST, [lazy], a.repeat)
    secs = float(out.split()[1])
    print(f"lazy open of {a.lazy_slices} slices, first slice shown after: {secs:.3f} s "
          "(target < 1 s)")


if __name__ == "__main__":
    main()
