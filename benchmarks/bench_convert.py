#!/usr/bin/env python
"""Whole-process benchmark of `dicomtools convert` against dcm2niix (.nii and .nii.gz) and of
`dicomtools anonymize` against dicognito, on the 300-slice 512x512 CT series from
benchmarks/make_ct_series.py (warm page cache, median of --repeat).

Each row gives wall and CPU seconds (user + sys, children included: the steadier figure on a
shared machine) and the output size. ``convert`` runs with 1 and N workers (N = the CPUs this
process may use): the N-worker row is the speed-up of decoding and of the threaded gzip.
Every ``.nii.gz`` written is checked to be one gzip member (some readers stop after the
first) holding the same bytes as the ``.nii``.

usage: python benchmarks/bench_convert.py [--data DIR] [--slices 300] [--repeat 3]
needs: pip install -e ".[bench]"   (dcm2niix, dicognito)
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import child_env, load_note, series_args, timed, workers_env  # noqa: E402


def _outputs(folder: str) -> list[str]:
    return sorted(os.path.join(dp, f) for dp, _, fs in os.walk(folder) for f in fs)


def _one_member(path: str) -> bytes:
    """The data of a gzip file that must be exactly one member (raises otherwise)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    with open(path, "rb") as f:
        data = d.decompress(f.read())
    if not d.eof or d.unused_data:
        raise SystemExit(f"{path}: not a single gzip member")
    return data


def run(cmd: list[str], repeat: int, env=None, check=None) -> tuple[float, float, int]:
    """Median wall and CPU seconds of ``cmd`` (``{OUT}`` is a fresh folder each run) and
    the bytes it wrote; ``check(files)`` looks at the first run's output."""
    walls, cpus, size = [], [], 0
    for k in range(repeat):
        out = tempfile.mkdtemp(prefix="bench-out-")
        wall, cpu = timed([c.replace("{OUT}", out) for c in cmd], env)
        walls.append(wall)
        cpus.append(cpu)
        files = _outputs(out)
        size = sum(os.path.getsize(f) for f in files)
        if k == 0 and check is not None:
            check(files)
        shutil.rmtree(out, ignore_errors=True)
    return statistics.median(walls), statistics.median(cpus), size


def main():
    a, series = series_args(__doc__)
    timed([sys.executable, "-c", "import sys,os;[open(os.path.join(sys.argv[1],f),'rb')"
           ".read() for f in os.listdir(sys.argv[1])]", series])  # warm the page cache
    py = sys.executable
    dcm2niix = shutil.which("dcm2niix")
    if dcm2niix is None:
        raise SystemExit("dcm2niix not found: pip install dcm2niix")
    nw = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    reference: dict[str, bytes] = {}

    def keep_nii(files):
        reference["nii"] = open(next(f for f in files if f.endswith(".nii")), "rb").read()

    def same_as_nii(files):
        data = _one_member(next(f for f in files if f.endswith(".nii.gz")))
        if reference and data != reference["nii"]:
            raise SystemExit(".nii.gz does not hold the .nii's bytes")

    ours = [py, "-m", "napari_dicomtools", "convert", series, "{OUT}", "-q"]
    ref = [dcm2niix, "-o", "{OUT}", "-f", "%s_%p", "-b", "n"]
    rows = [
        (f".nii, ours {nw}w", run(ours + ["--no-gzip"], a.repeat, workers_env(nw), keep_nii)),
        (".nii, dcm2niix", run(ref + ["-z", "n", series], a.repeat)),
        (".nii.gz, ours 1w", run(ours, a.repeat, workers_env(1), same_as_nii)),
        (f".nii.gz, ours {nw}w", run(ours, a.repeat, workers_env(nw), same_as_nii)),
        (".nii.gz, dcm2niix", run(ref + ["-z", "y", series], a.repeat, check=lambda fs: [
            _one_member(f) for f in fs if f.endswith(".gz")])),
    ]
    try:
        rows.append(("anonymize, ours", run(ours[:3] + ["anonymize", series, "{OUT}", "-q",
                                                        "--key", "bench"], a.repeat)))
        rows.append(("anonymize, dicognito", run([py, "-m", "dicognito", "--quiet", "-o",
                                                  "{OUT}", series], a.repeat, child_env())))
    except RuntimeError as exc:
        print(f"dicognito not measured: {str(exc).splitlines()[-1]}")
    print(f"\nseries: {series} ({a.slices} x 512 x 512), median of {a.repeat}, whole process, "
          f"{os.cpu_count()} cores{load_note()}\n")
    print(f"{'task':24s} {'wall s':>8s} {'CPU s':>8s} {'MB':>8s}")
    for task, (wall, cpu, size) in rows:
        print(f"{task:24s} {wall:8.3f} {cpu:8.3f} {size / 1e6:8.2f}")
    by = dict(rows)
    for kind in (".nii", ".nii.gz"):
        best = by[f"{kind}, ours {nw}w"]
        d2n = by[f"{kind}, dcm2niix"]
        print(f"{kind:8s} ours {nw}w vs dcm2niix: {d2n[0] / best[0]:.2f}x faster (wall), "
              f"{d2n[1] / best[1]:.2f}x less CPU, size {best[2] / d2n[2]:.3f}x")


if __name__ == "__main__":
    main()
