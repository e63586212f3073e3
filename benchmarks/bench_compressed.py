#!/usr/bin/env python
"""Whole-process read of compressed CT series: napari-dicomtools (1 and N decoding workers)
against SimpleITK/GDCM and dcm2niix, in the same run.

The series are made by this script from benchmarks/make_ct_series.py's synthetic CT (default
100 slices of 512 x 512): JPEG Lossless SV1 (GDCM's encoder), JPEG-LS lossless (pyjpegls),
JPEG 2000 lossless (pylibjpeg-openjpeg) and RLE lossless (pydicom). Each contender is its own
Python process (start-up and imports count, as a user waits), warm page cache, median of
--repeat runs:

* ``ours 1w`` / ``ours Nw``: ``read_volume(folder)`` with NAPARI_DICOMTOOLS_WORKERS=1 / N
  (imagecodecs' GIL-free codecs in N threads)
* ``plugins Nw``: the same with NAPARI_DICOMTOOLS_FAST_CODECS=0, pydicom's plugins in N worker
  processes (the path without imagecodecs): this run's baseline
* ``SimpleITK``: ``ImageSeriesReader`` (GDCM inside), ``sitk.ProcessObject`` default threads
* ``dcm2niix``: DICOM -> uncompressed .nii (it decodes with its own codecs, one thread)

Every run is checked: our volume must equal the uncompressed series, value for value.

``--reader`` measures instead napari's reader path (``napari_get_reader(folder)(folder)``, no
viewer) against ``read_volume(folder)`` on the same series (and ``--also`` folders, e.g. an
uncompressed one), in process (one process alternates the two, after a warm-up run of each)
and as whole processes; ``--before SRC`` adds the reader path of another checkout's ``src``
(e.g. ``git archive <rev> src | tar -x -C /tmp/before``) in the same run.

usage: python benchmarks/bench_compressed.py [--data DIR] [--slices 100] [--repeat 3]
       python benchmarks/bench_compressed.py --reader [--also DIR ...] [--before SRC]
needs: pip install -e ".[bench]"   (SimpleITK, dcm2niix)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import (  # noqa: E402
    SITK,
    child_env,
    load_note,
    machine_line,
    make_series,
    median_of,
    timed,
    workers_env,
)

#: transfer syntax name (pydicom.uid) -> label
SYNTAXES = {
    "JPEGLosslessSV1": "JPEG Lossless SV1",
    "JPEGLSLossless": "JPEG-LS lossless",
    "JPEG2000Lossless": "JPEG 2000 lossless",
    "RLELossless": "RLE lossless",
}

GDCM_JPEG_LOSSLESS = """
import sys, gdcm
r = gdcm.ImageReader(); r.SetFileName(sys.argv[1]); assert r.Read()
c = gdcm.ImageChangeTransferSyntax()
c.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
c.SetInput(r.GetImage()); assert c.Change()
w = gdcm.ImageWriter(); w.SetFileName(sys.argv[2]); w.SetFile(r.GetFile())
w.SetImage(c.GetOutput()); assert w.Write()
"""

OURS = """
import sys
import numpy as np
from napari_dicomtools import read_volume
vol = read_volume(sys.argv[1])
if len(sys.argv) > 2:
    ref = np.load(sys.argv[2])
    assert np.array_equal(vol.array, ref), "values differ from the uncompressed series"
print(vol.array.shape, vol.array.dtype)
"""


#: napari's reader path on a folder, no viewer (what File > Open runs)
READER = """
import sys
from napari_dicomtools._reader import napari_get_reader
layers = napari_get_reader(sys.argv[1])(sys.argv[1])
print(layers[0][0].shape, layers[0][0].dtype)
"""

#: read_volume(folder) and the reader path alternately in one process, after a warm-up of
#: each; prints the median wall and CPU (all threads) seconds of each and the first check
IN_PROCESS = """
import resource, statistics, sys, time
import numpy as np
from napari_dicomtools import read_volume
from napari_dicomtools._reader import napari_get_reader
folder, repeat = sys.argv[1], int(sys.argv[2])
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
paths = {"read_volume": lambda: read_volume(folder).array,
         "reader": lambda: napari_get_reader(folder)(folder)[0][0]}
same = np.array_equal(np.asarray(paths["reader"]()), paths["read_volume"]())
runs = {k: [] for k in paths}
for _ in range(repeat):
    for k, f in paths.items():
        t0, c0 = time.perf_counter(), cpu()
        f()
        runs[k].append((time.perf_counter() - t0, cpu() - c0))
print(same, *(f"{statistics.median(r[0] for r in v)} {statistics.median(r[1] for r in v)}"
              for v in runs.values()))
"""


def reader_vs_read_volume(folders: list[str], repeat: int, before: str | None) -> int:
    """``--reader``: the reader path against read_volume(folder), in process and as whole
    processes, on each of ``folders`` (and the reader path of ``before``'s code)."""
    py = sys.executable
    env = child_env()
    versions = {"now": env}
    if before:
        versions["before"] = child_env(PYTHONPATH=os.path.abspath(before))
    rows = []
    for folder in folders:
        row = {"series": os.path.basename(folder.rstrip("/"))}
        for name, e in versions.items():
            out = subprocess.run([py, "-c", IN_PROCESS, folder, str(repeat)], env=e, check=True,
                                 capture_output=True, text=True).stdout.split()
            if out[0] != "True":
                raise SystemExit(f"{folder}: the reader's values differ from read_volume's")
            vals = [float(x) for x in out[1:]]
            row[f"in {name}: read_volume"] = (vals[0], vals[1])
            row[f"in {name}: reader"] = (vals[2], vals[3])
        # whole processes, the contenders alternating (the machine's load drifts)
        whole = {"whole: read_volume": ([py, "-c", OURS, folder], env)}
        whole.update({f"whole {name}: reader": ([py, "-c", READER, folder], e)
                      for name, e in versions.items()})
        for cmd, e in whole.values():
            timed(cmd, e)  # warms the bytecode cache and the imports
        runs = [[timed(cmd, e) for cmd, e in whole.values()] for _ in range(repeat)]
        for k, key in enumerate(whole):
            row[key] = (statistics.median(r[k][0] for r in runs),
                        statistics.median(r[k][1] for r in runs))
        rows.append(row)
        print(row, flush=True)
    print(f"\nnapari's reader path against read_volume(folder), median of {repeat}, "
          f"{machine_line()}{load_note()}; seconds as wall (CPU), ratio of walls\n")
    for where in ("in", "whole"):
        label = "in process" if where == "in" else "whole process"
        print(f"{label:24s}{'read_volume':>16s}" + "".join(
            f"{'reader ' + v:>16s}{'x':>7s}" for v in versions))
        for r in rows:
            base = r["in now: read_volume" if where == "in" else "whole: read_volume"]
            line = f"{r['series']:24s}{base[0]:8.3f} ({base[1]:5.2f})"
            for v in versions:
                t = r[f"{where} {v}: reader"]
                # in process: against read_volume in the same process
                own = r[f"in {v}: read_volume"] if where == "in" else base
                line += f"{t[0]:8.3f} ({t[1]:5.2f}){t[0] / own[0]:6.2f}x"
            print(line)
        print()
    return 0


def compress_series(src: str, dst: str, ts_name: str) -> None:
    """Every file of ``src`` re-encoded in transfer syntax ``ts_name`` into ``dst``."""
    import pydicom
    import pydicom.uid

    if os.path.isdir(dst) and len(os.listdir(dst)) == len(os.listdir(src)):
        return
    shutil.rmtree(dst, ignore_errors=True)
    os.makedirs(dst)
    print(f"encoding {ts_name} into {dst} ...", flush=True)
    for name in sorted(os.listdir(src)):
        if ts_name == "JPEGLosslessSV1":  # no pydicom encoder: GDCM, in a child process
            subprocess.run([sys.executable, "-c", GDCM_JPEG_LOSSLESS, os.path.join(src, name),
                            os.path.join(dst, name)], check=True)
            continue
        ds = pydicom.dcmread(os.path.join(src, name))
        ds.compress(getattr(pydicom.uid, ts_name))
        ds.save_as(os.path.join(dst, name), enforce_file_format=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "dicomtools-bench"))
    ap.add_argument("--slices", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="the parallel run's workers (default: all cores)")
    ap.add_argument("--only", nargs="*", choices=list(SYNTAXES), help="these syntaxes only")
    ap.add_argument("--reader", action="store_true",
                    help="napari's reader path against read_volume(folder) instead")
    ap.add_argument("--also", nargs="*", default=[], metavar="DIR",
                    help="--reader: these series folders too (e.g. an uncompressed one)")
    ap.add_argument("--before", metavar="SRC",
                    help="--reader: also the reader path of this checkout's src folder")
    a = ap.parse_args()
    if a.reader:
        folders = [os.path.join(a.data, f"ct{a.slices}-{ts}") for ts in a.only or SYNTAXES]
        missing = [f for f in folders if not os.path.isdir(f)]
        if missing:
            raise SystemExit(f"{missing[0]}: not found (run without --reader first)")
        return reader_vs_read_volume(folders + a.also, a.repeat, a.before)
    import numpy as np

    py = sys.executable
    raw = os.path.join(a.data, f"ct{a.slices}")
    make_series(raw, a.slices)
    ref = os.path.join(a.data, f"ct{a.slices}.npy")
    if not os.path.exists(ref):
        from napari_dicomtools import read_volume

        np.save(ref, np.asarray(read_volume(raw).array))
    sitk_ok = subprocess.run([py, "-c", "import SimpleITK"], capture_output=True).returncode == 0
    dcm2niix = shutil.which("dcm2niix")
    nw = a.workers
    rows = []
    for ts_name in a.only or SYNTAXES:
        folder = os.path.join(a.data, f"ct{a.slices}-{ts_name}")
        compress_series(raw, folder, ts_name)
        subprocess.run([py, "-c", "import os,sys;[open(os.path.join(sys.argv[1],f),'rb')"
                        ".read() for f in os.listdir(sys.argv[1])]", folder], check=True)
        for fast in ("1", "0"):  # correctness of both paths, and warms the imports
            timed([py, "-c", OURS, folder, ref], workers_env(nw, NAPARI_DICOMTOOLS_FAST_CODECS=fast))
        row = {"syntax": SYNTAXES[ts_name]}
        for w in sorted({1, nw}):
            row[f"ours {w}w"] = median_of(a.repeat, [py, "-c", OURS, folder], workers_env(w))
        # the same run's baseline: pydicom's plugins in worker processes (the path without
        # imagecodecs)
        row[f"plugins {nw}w"] = median_of(a.repeat, [py, "-c", OURS, folder],
                                          workers_env(nw, NAPARI_DICOMTOOLS_FAST_CODECS="0"))
        if sitk_ok:
            row["SimpleITK"] = median_of(a.repeat, [py, "-c", SITK, folder])
        if dcm2niix:
            out = tempfile.mkdtemp(prefix="bench-d2n-")
            # -w 1: overwrite its previous output
            row["dcm2niix"] = median_of(
                a.repeat, [dcm2niix, "-o", out, "-f", "x", "-b", "n", "-z", "n", "-w", "1",
                           folder])
            shutil.rmtree(out, ignore_errors=True)
        rows.append(row)
        print(row, flush=True)

    cols = [c for c in rows[0] if c != "syntax"]
    print(f"\n{a.slices} x 512 x 512 CT, median of {a.repeat}, whole process, "
          f"{os.cpu_count()} cores{load_note()}; seconds as wall (CPU)\n")
    print(f"{'series':20s}" + "".join(f"{c:>16s}" for c in cols)
          + (f"{'vs SimpleITK':>14s}" if sitk_ok else "") + f"{'vs plugins':>12s}"
          + f"{'1->' + str(nw) + 'w':>8s}")
    for r in rows:
        best = r[f"ours {nw}w"][0]
        line = f"{r['syntax']:20s}" + "".join(f"{r[c][0]:8.2f} ({r[c][1]:5.2f})"
                                              for c in cols)
        if sitk_ok:
            line += f"{r['SimpleITK'][0] / best:13.2f}x"
        line += f"{r[f'plugins {nw}w'][0] / best:11.2f}x"
        line += f"{r['ours 1w'][0] / best:7.2f}x"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
