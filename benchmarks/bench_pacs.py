#!/usr/bin/env python
"""Retrieve benchmark on a local Orthanc: ``dicomtools pacs get`` over WADO-RS, C-GET and
C-MOVE against dcmtk's ``getscu`` (C-GET) on the same server, same series.

The series is the 300-slice 512x512 CT of benchmarks/make_ct_series.py (150 MB), sent once to
an Orthanc started by tests/orthanc_server.py (127.0.0.1 only). Every contender runs as its own
process into an empty folder (start-up and imports count, as a user waits), best of --repeat;
MB/s is the size of the series' files on disk over the wall time. The goal (issue 16) is to be
no slower than getscu: the ratio column is getscu's time over ours (>= 1 is as fast or faster).

``--resume`` measures instead the resume rule (``pacs.fetch_whole``): a cache holding part of
the series, the rest fetched (a) as the whole series (cached copies dropped as they come
again) and (b) instance by instance (WADO-RS, ``--workers`` at a time) or as one UID-list
request (C-GET), for several missing fractions; in-process, best of --repeat.

``--stream`` measures lazy opening instead: seconds until the middle slice of the series is
on screen (headers, geometry, that one instance) by WADO-RS and by C-GET, next to the time
to retrieve the whole series the same way.

usage: python benchmarks/bench_pacs.py [--slices 300] [--size 512] [--repeat 3] [--workers 4]
                                       [--resume | --stream]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
GETSCU = shutil.which("getscu", path="/usr/bin") or "/usr/bin/getscu"


def folder_bytes(d: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)


def timed(argv, env) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=4, help="concurrent WADO-RS requests")
    ap.add_argument("--resume", action="store_true",
                    help="measure the resume rule (whole series vs missing instances)")
    ap.add_argument("--stream", action="store_true",
                    help="measure the first slice of a lazily opened series")
    ap.add_argument("--methods", default="wado,c-get",
                    help="--resume: methods to measure (default: wado,c-get)")
    args = ap.parse_args()

    import orthanc_server

    why = orthanc_server.available()
    if why or not os.path.exists(GETSCU):
        print(f"cannot run: {why or GETSCU + ' missing (apt-get install dcmtk)'}")
        return 1
    from napari_dicomtools.core import pacs

    tmp = tempfile.mkdtemp(prefix="bench-pacs-")
    server = orthanc_server.start_orthanc(os.path.join(tmp, "orthanc"))
    try:
        src = os.path.join(tmp, "src")
        subprocess.run([sys.executable, os.path.join(HERE, "make_ct_series.py"), src,
                        "--slices", str(args.slices), "--size", str(args.size)], check=True,
                       stdout=subprocess.DEVNULL)
        dimse = pacs.ServerProfile("dimse", host=orthanc_server.HOST, port=server.dicom_port,
                                   called_aet=server.aet, calling_aet=server.client_aet,
                                   move_port=server.move_port)
        web = pacs.ServerProfile("web", dicomweb_url=server.dicomweb_url,
                                 username=server.user, password=server.password)
        t0 = time.perf_counter()
        sent = pacs.send(dimse, src, method="c-store")
        t_send = time.perf_counter() - t0
        assert len(sent.sent) == args.slices and not sent.failed, sent
        (hit,) = pacs.find(web, level="series")
        mb = folder_bytes(src) / 1e6
        print(f"series: {args.slices} x {args.size}x{args.size}, {mb:.1f} MB; "
              f"C-STORE upload {mb / t_send:.1f} MB/s")

        if args.resume:
            return bench_resume(pacs, web, dimse, hit, tmp, args)
        if args.stream:
            return bench_stream(pacs, web, dimse, hit, tmp, args)
        cfg = os.path.join(tmp, "pacs.json")
        env = {**os.environ, "DICOMTOOLS_PACS_CONFIG": cfg,
               "PYTHONPATH": os.pathsep.join([os.path.join(ROOT, "src"),
                                              os.environ.get("PYTHONPATH", "")])}
        pacs.save_profile(dimse, cfg)
        pacs.save_profile(web, cfg)
        get = [sys.executable, "-m", "napari_dicomtools.cli", "pacs", "get", "-q"]
        runs = {
            "getscu (dcmtk, C-GET)": lambda out: [
                GETSCU, "-S", "-aet", server.client_aet, "-aec", server.aet,
                "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={hit.study_uid}",
                "-k", f"SeriesInstanceUID={hit.series_uid}", "-od", out,
                orthanc_server.HOST, str(server.dicom_port)],
            "dicomtools WADO-RS": lambda out: get + [
                "web", hit.series_uid, "--study", hit.study_uid, "--method", "wado",
                "--cache", out, "--workers", str(args.workers)],
            "dicomtools C-GET": lambda out: get + [
                "dimse", hit.series_uid, "--study", hit.study_uid, "--method", "c-get",
                "--cache", out],
            "dicomtools C-MOVE": lambda out: get + [
                "dimse", hit.series_uid, "--study", hit.study_uid, "--method", "c-move",
                "--cache", out],
        }
        results = {}
        for name, argv in runs.items():
            best, size = float("inf"), 0
            for k in range(args.repeat):
                out = os.path.join(tmp, f"out-{len(results)}-{k}")
                os.makedirs(out)
                best = min(best, timed(argv(out), env))
                size = folder_bytes(out)
                n = sum(1 for _, _, fs in os.walk(out) for f in fs if f.endswith(".dcm")
                        or f.startswith("CT"))
                assert n >= args.slices, f"{name}: {n} files"
                shutil.rmtree(out)
            results[name] = (best, size)
        base = results["getscu (dcmtk, C-GET)"][0]
        print(f"{'contender':<24} {'seconds':>8} {'MB/s':>8} {'getscu/ours':>12}")
        for name, (sec, size) in results.items():
            print(f"{name:<24} {sec:8.2f} {size / 1e6 / sec:8.1f} {base / sec:12.2f}")
        print(json.dumps({k: round(v[0], 3) for k, v in results.items()}))
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def bench_resume(pacs, web, dimse, hit, tmp, args) -> int:
    """Seconds to complete a partly cached series, whole vs missing-only, per method."""
    full = {}
    chosen = [(m, web if m == "wado" else dimse) for m in args.methods.split(",")]
    for method, prof in chosen:
        r = pacs.retrieve(prof, hit.study_uid, hit.series_uid, method=method,
                          cache=os.path.join(tmp, "full-" + method), workers=args.workers)
        full[method] = (r.folder, sorted(f for f in os.listdir(r.folder)
                                         if f.endswith(".dcm")))
    saved = dict(pacs.WHOLE_SERIES_ABOVE)
    print(f"{'method':<6} {'missing':>8} {'whole s':>8} {'missing-only s':>15} {'ratio':>6}")
    rows = []
    for method, prof in chosen:
        src, names = full[method]
        for frac in (0.05, 0.1, 0.25, 0.5, 0.75, 0.9):
            keep = names[: len(names) - max(1, round(frac * len(names)))]
            times = {}
            for mode, above in (("whole", 0.0), ("missing", 2.0)):
                best = float("inf")
                for k in range(args.repeat):
                    cache = os.path.join(tmp, f"resume-{method}-{mode}-{k}")
                    folder = pacs.series_folder(cache, hit.study_uid, hit.series_uid)
                    os.makedirs(folder)
                    for n in keep:
                        shutil.copy2(os.path.join(src, n), folder)
                    pacs.WHOLE_SERIES_ABOVE[method] = above
                    t0 = time.perf_counter()
                    r = pacs.retrieve(prof, hit.study_uid, hit.series_uid, method=method,
                                      cache=cache, workers=args.workers)
                    best = min(best, time.perf_counter() - t0)
                    assert r.complete and r.reused == len(keep), r
                    shutil.rmtree(cache)
                times[mode] = best
            pacs.WHOLE_SERIES_ABOVE.update(saved)
            ratio = times["whole"] / times["missing"]
            rows.append((method, frac, times["whole"], times["missing"]))
            print(f"{method:<6} {frac:8.0%} {times['whole']:8.2f} {times['missing']:15.2f} "
                  f"{ratio:6.2f}")
    print(json.dumps([[m, f, round(a, 3), round(b, 3)] for m, f, a, b in rows]))
    return 0


def bench_stream(pacs, web, dimse, hit, tmp, args) -> int:
    """Seconds to the middle slice of a streamed series vs the whole retrieve, per method."""
    import numpy as np

    from napari_dicomtools.core.pacs_stream import open_streaming

    print(f"{'method':<6} {'first slice s':>14} {'whole series s':>15}")
    out = {}
    for method in args.methods.split(","):
        prof = web if method == "wado" else dimse
        first = whole = float("inf")
        for k in range(args.repeat):
            cache = os.path.join(tmp, f"stream-{method}-{k}")
            t0 = time.perf_counter()
            vol = open_streaming(prof, hit.study_uid, hit.series_uid, cache=cache,
                                 method=method)
            np.asarray(vol.array[vol.array.shape[0] // 2])
            first = min(first, time.perf_counter() - t0)
            shutil.rmtree(cache)
            t0 = time.perf_counter()
            pacs.retrieve(prof, hit.study_uid, hit.series_uid, method=method, cache=cache,
                          workers=args.workers)
            whole = min(whole, time.perf_counter() - t0)
            shutil.rmtree(cache)
        out[method] = (round(first, 3), round(whole, 3))
        print(f"{method:<6} {first:14.2f} {whole:15.2f}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
