#!/usr/bin/env python
"""Whole-archive benchmark of the batch engine (issue 17): `dicomtools convert` and
`dicomtools anonymize` with 1 and 2 Dask workers (LocalCluster, processes), against a shell
loop of dcm2niix (convert) and of dicognito (anonymize) over the same archive, one call per
patient folder (``--loop series``: one per series folder, as a per-folder script does).

The archive comes from ``synthetic.make_archive`` (default 50 patients x 4 studies x 5
series x 20 slices of 64 x 64 CT/MR = 20,000 images, plus corrupt and duplicated files and
5 undecodable series), made once under --data and reused. Every figure is the wall time of
the whole command (start-up, cluster start, header scan, work), warm page cache; files/s and
series/s count the archive's files and series; ratios are against the baselines of the same
run, on the same machine and load; commands run with bytecode caching on (as a pip install
has its ``.pyc`` files; see ``_common.child_env``). ``CPU s``: user + system seconds of the command and of
every process it started (the Dask workers too): the cost of the work, less sensitive to
other load than the wall time (``CPU vs``: baseline CPU / this CPU). ``client MB``: the peak resident memory of the dicomtools
process itself (the Dask client, which plans the job; the workers are other processes),
``ru_maxrss``: what grows with the archive when the client holds per-file records.

usage: python benchmarks/bench_batch.py [--data DIR] [--patients 50] [--studies 4]
           [--series 5] [--slices 20] [--size 64] [--loop patient|series] [--only convert]
           [--work DIR]
needs: pip install -e ".[bench]"   (dcm2niix, dicognito)
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import child_env  # noqa: E402


def archive(args):
    from napari_dicomtools.core.synthetic import make_archive

    name = f"archive-{args.patients}x{args.studies}x{args.series}x{args.slices}-{args.size}"
    root = os.path.join(args.data, name)
    shared = os.path.join(args.data, "archive", name)  # the layout of a shared data folder
    if not os.path.exists(root + ".complete") and os.path.exists(shared + ".complete"):
        return shared
    done = root + ".complete"
    if not os.path.exists(done):
        shutil.rmtree(root, ignore_errors=True)
        t0 = time.perf_counter()
        make_archive(root, args.patients, args.studies, args.series, slices=args.slices,
                     size=args.size, corrupt=20, duplicates=20, bad_series=5)
        open(done, "w").close()
        print(f"archive made in {time.perf_counter() - t0:.0f} s")
    return root


#: runs ``dicomtools ARGS`` and prints its own peak RSS (KiB) last on stderr
_CLIENT = ("import resource, runpy, sys\n"
           "sys.argv = ['dicomtools'] + sys.argv[1:]\n"
           "try:\n"
           "    runpy.run_module('napari_dicomtools', run_name='__main__')\n"
           "finally:\n"
           "    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
           "    print(f'client-maxrss {rss}', file=sys.stderr)\n")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(cmd, ok=(0,)) -> tuple[float, float, float | None]:
    """(wall seconds, CPU seconds of the command and every process it waited for, peak
    client RSS in MB for a dicomtools command, else None)."""
    t0, c0 = time.perf_counter(), _cpu()
    r = subprocess.run(cmd, capture_output=True, text=True, shell=isinstance(cmd, str),
                       env=child_env())
    dt, cpu = time.perf_counter() - t0, _cpu() - c0
    if r.returncode not in ok:
        raise RuntimeError(f"{cmd if isinstance(cmd, str) else ' '.join(cmd)} failed "
                           f"({r.returncode}):\n{r.stderr[-1500:]}")
    rss = [ln.split()[1] for ln in r.stderr.splitlines() if ln.startswith("client-maxrss ")]
    return dt, cpu, (int(rss[-1]) / 1024 if rss else None)


def count(folder, suffix) -> int:
    return sum(f.endswith(suffix) for _, _, fs in os.walk(folder) for f in fs)


def loop(tool_cmd: str, units, out) -> str:
    """A shell loop running ``tool_cmd`` once per folder (``$d`` input, ``$o`` output)."""
    listing = os.path.join(out + ".units")
    with open(listing, "w") as f:
        f.write("\n".join(units) + "\n")
    return (f'i=0; while read -r d; do i=$((i+1)); o="{out}/$i"; mkdir -p "$o"; '
            f'{tool_cmd} >/dev/null 2>&1 || true; done < "{listing}"')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "dicomtools-bench"))
    ap.add_argument("--patients", type=int, default=50)
    ap.add_argument("--studies", type=int, default=4)
    ap.add_argument("--series", type=int, default=5)
    ap.add_argument("--slices", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--loop", choices=["patient", "series"], default="patient")
    ap.add_argument("--only", choices=["convert", "anonymize"])
    ap.add_argument("--work", default=tempfile.gettempdir(),
                    help="where the outputs go (removed at the end; default: the temporary "
                         "folder), so that --data may be read-only or shared")
    args = ap.parse_args()
    os.makedirs(args.data, exist_ok=True)
    root = archive(args)
    n_files = sum(len(fs) for _, _, fs in os.walk(root))
    n_series = args.patients * args.studies * args.series
    patients = sorted(os.path.join(root, d) for d in os.listdir(root) if d.startswith("P"))
    units = patients if args.loop == "patient" else sorted(
        dp for dp, _, fs in os.walk(root) if any(f.startswith("IM") for f in fs))
    subprocess.run(f"cat $(find {root} -type f) > /dev/null", shell=True)  # warm cache
    py = sys.executable
    work = tempfile.mkdtemp(prefix="batch-bench-", dir=args.work)
    print(f"archive: {root}\n  {n_files} files, {n_series} series ({args.size}x{args.size}, "
          f"{args.slices} slices); {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; baselines: one call per {args.loop} folder "
          f"({len(units)} calls)\n")
    print(f"{'job':10s} {'tool':24s} {'wall s':>7s} {'files/s':>8s} {'series/s':>9s} "
          f"{'outputs':>8s} {'vs baseline':>11s} {'CPU s':>7s} {'CPU vs':>7s} {'client MB':>9s}")
    try:
        for kind in ("convert", "anonymize"):
            if args.only and kind != args.only:
                continue
            rows = []
            if kind == "convert":
                out = os.path.join(work, "dcm2niix")
                cmd = loop('dcm2niix -z y -b n -f "%i_%k_%s_%d" -o "$o" "$d"', units, out)
                rows.append(("dcm2niix loop", *run(cmd), count(out, ".nii.gz")))
            else:
                out = os.path.join(work, "dicognito")
                cmd = loop(f'{py} -m dicognito --quiet -o "$o" "$d"', units, out)
                rows.append(("dicognito loop", *run(cmd), count(out, ".dcm")))
            for n in (1, 2):
                out = os.path.join(work, f"{kind}{n}")
                cmd = [py, "-c", _CLIENT, kind, root, out, "-q", "--workers",
                       str(n)] + (["--key", "bench"] if kind == "anonymize" else [])
                suffix = ".nii.gz" if kind == "convert" else ".dcm"
                rows.append((f"dicomtools --workers {n}", *run(cmd, ok=(0, 3)),
                             count(out, suffix)))
            base, base_cpu = rows[0][1], rows[0][2]
            for name, dt, cpu, rss, outputs in rows:
                mb = f"{rss:9.0f}" if rss is not None else f"{'':9s}"
                print(f"{kind:10s} {name:24s} {dt:7.1f} {n_files / dt:8.0f} "
                      f"{n_series / dt:9.1f} {outputs:8d} {base / dt:10.2f}x {cpu:7.1f} "
                      f"{base_cpu / cpu:6.2f}x {mb}")
            print(f"{'':10s} scaling 1 -> 2 workers: {rows[1][1] / rows[2][1]:.2f}x\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
