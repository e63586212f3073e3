"""What the whole-process benchmarks share: the synthetic CT series they read, the
SimpleITK contender, and timing a child process (wall and CPU seconds)."""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MAKER = os.path.join(HERE, "make_ct_series.py")

#: SimpleITK's series reader (GDCM inside, its default threads); prints shape and dtype
SITK = """
import sys
import SimpleITK as sitk
r = sitk.ImageSeriesReader()
r.SetFileNames(r.GetGDCMSeriesFileNames(sys.argv[1]))
img = r.Execute()
arr = sitk.GetArrayViewFromImage(img)
print(arr.shape, arr.dtype)
"""


def make_series(path: str, slices: int) -> None:
    """benchmarks/make_ct_series.py's 512 x 512 CT of ``slices`` slices at ``path`` (kept
    between runs)."""
    if os.path.isdir(path) and len(os.listdir(path)) == slices:
        return
    if not os.path.exists(MAKER):
        raise SystemExit(f"{MAKER}: not found")
    print(f"writing {slices} slices to {path} ...", flush=True)
    subprocess.run([sys.executable, MAKER, path, "--slices", str(slices), "--reverse"],
                   check=True)


def base_parser(doc: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--data`` (where generated data is kept between
    runs) and ``--repeat``."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "dicomtools-bench"))
    ap.add_argument("--repeat", type=int, default=3)
    return ap


def series_args(doc: str):
    """Shared command line of the benchmarks on the 300-slice CT: (args, series folder)."""
    ap = base_parser(doc)
    ap.add_argument("--slices", type=int, default=300)
    a = ap.parse_args()
    series = os.path.join(a.data, f"ct{a.slices}")
    make_series(series, a.slices)
    return a, series


def child_env(**more: str) -> dict:
    """The environment of a measured process: this one with ``more``, and bytecode caching on
    (a pip-installed package has its ``.pyc`` files; with ``PYTHONDONTWRITEBYTECODE`` every
    run compiles our modules from source: 0.07-0.1 s of CPU for ``read_volume``'s modules
    alone, measured on the development machine). The cache goes to a folder of its own, not
    into the source tree."""
    env = dict(os.environ, **more)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX",
                   os.path.join(tempfile.gettempdir(), "dicomtools-bench-pycache"))
    return env


def workers_env(workers: int, **more: str) -> dict:
    """:func:`child_env` with ``NAPARI_DICOMTOOLS_WORKERS=workers`` (and ``more``)."""
    return child_env(NAPARI_DICOMTOOLS_WORKERS=str(workers), **more)


def timed(cmd, env=None) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + sys of the process and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True,
                       env=child_env() if env is None else env)
    dt = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{r.stderr[-2000:]}")
    return dt, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def median_of(repeat: int, cmd, env=None) -> tuple[float, float]:
    """(median wall, median CPU) seconds of ``repeat`` runs."""
    runs = [timed(cmd, env) for _ in range(repeat)]
    return (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))


def machine_line() -> str:
    """"N cores, load average a b c" (1, 5 and 15 minutes): printed with every result."""
    try:
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "unknown"
    return f"{os.cpu_count()} cores, load average {load}"


def load_note() -> str:
    """"(under load: ...)" when other processes keep the cores busy, else ""."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return ""
    cores = os.cpu_count() or 1
    return f" (under load: 1-min load average {load:.1f} on {cores} cores)" \
        if load > 0.5 * cores else ""
