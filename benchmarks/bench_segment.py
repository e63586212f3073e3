#!/usr/bin/env python
"""The public segmentation path the napari widgets call, against the same chain in plain
scikit-image, on the 300-slice 512x512 CT series from benchmarks/make_ct_series.py.

ours   : napari_dicomtools.core.segment.segment(image, spacing, preset="lung", ...) with the
         Segment widget's arguments (no closing/opening, clear border, no size filter, no
         keep-largest; hole filling off unless --fill), then core.measure.measure(labels,
         image, spacing, translate) as the Measurements widget calls it.
skimage: the same chain in plain scikit-image: threshold, measure.label (faces),
         segmentation.clear_border (in-plane border only, like segment() on a 3D image),
         measure.regionprops with spacing and intensity statistics.

Each chain is timed in its own fresh Python process (this script with --one ours|skimage),
which loads the volume from a .npy cache (the napari layer's data, written once beside the
series) and imports the same modules for both chains before the clock starts; one timed run
per process, --runs processes per chain (interleaved), median reported. In one long-lived
process plain scikit-image swings between about 1 and 2.7 s with the allocator's state, so
in-process ratios mislead; --in-process adds that comparison anyway, labelled as such.
Both chains must find the same labels (same count, volumes and mean HU within 0.1 %).

usage: python benchmarks/bench_segment.py [--data DIR] [--slices 300] [--runs 5] [--fill]
                                          [--in-process [--repeat 3]]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_read import series_args  # noqa: E402

from napari_dicomtools.core.segment import HU_PRESETS  # noqa: E402

PRESET = "lung"  # regions that do not touch the in-plane border (the lungs, specks of air)
LOW, HIGH = HU_PRESETS[PRESET]  # -950..-300 HU


def ours(vol, spacing, translate, fill=False):
    """What the Segment widget (``_segment``) and the Measurements widget
    (``measure_table``) run: ``segment()`` with the widget's arguments, then ``measure()``."""
    from napari_dicomtools.core import segment as sg
    from napari_dicomtools.core.measure import measure

    lab = sg.segment(vol, spacing, preset=PRESET, close_mm=0.0, open_mm=0.0, fill=fill,
                     border=True, min_volume_mm3=0.0, largest=0)
    rows = measure(lab, vol, spacing, translate)
    return [(r["volume_mm3"], r["mean"]) for r in rows]


def plain_skimage(vol, spacing, translate, fill=False):
    """The same chain as a scikit-image user writes it (hole filling, if asked, with scipy
    slice by slice, as scikit-image has no binary fill-holes)."""
    from scipy import ndimage
    from skimage import measure as skm
    from skimage import segmentation

    mask = (vol >= LOW) & (vol <= HIGH)
    if fill:
        mask = np.stack([ndimage.binary_fill_holes(s) for s in mask])
    lab = skm.label(mask, connectivity=1)
    inner = np.ones(lab.shape, bool)  # only the in-plane border counts, as in segment()
    inner[..., 0, :] = inner[..., -1, :] = False
    inner[..., :, 0] = inner[..., :, -1] = False
    lab = segmentation.clear_border(lab, mask=inner)
    rows = []
    for r in skm.regionprops(lab, intensity_image=vol, spacing=spacing):
        rows.append({"label": r.label, "volume_mm3": r.area, "bbox": r.bbox,
                     "centroid": tuple(np.asarray(translate) + r.centroid), "mean": r.intensity_mean,
                     "min": r.intensity_min, "max": r.intensity_max, "std": r.intensity_std})
    return [(r["volume_mm3"], r["mean"]) for r in rows]


CHAINS = {"ours": ours, "skimage": plain_skimage}


def load_cache(path):
    with open(path + ".json", encoding="utf-8") as f:
        geo = json.load(f)
    return np.load(path + ".npy"), tuple(geo["scale"]), tuple(geo["translate"])


def one(chain: str, cache: str, fill: bool) -> None:
    """Child process: load the volume, import both chains' modules, time one run, print JSON."""
    import scipy.ndimage  # noqa: F401
    import skimage.measure  # noqa: F401
    import skimage.segmentation  # noqa: F401

    import napari_dicomtools.core.measure  # noqa: F401
    import napari_dicomtools.core.segment  # noqa: F401

    vol, spacing, translate = load_cache(cache)
    t0 = time.perf_counter()
    rows = CHAINS[chain](vol, spacing, translate, fill)
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt, "rows": [[float(v), float(m)] for v, m in rows]}))


def write_cache(series: str, cache: str) -> None:
    """The napari layer's data, scale and translate (what the widgets get), as .npy + .json."""
    if os.path.exists(cache + ".npy") and os.path.exists(cache + ".json") and \
            os.path.getmtime(cache + ".npy") >= os.path.getmtime(series):
        return
    from napari_dicomtools import read_volume
    from napari_dicomtools._reader import volume_to_layer_data

    data, kwargs, _ = volume_to_layer_data(read_volume(series))
    np.save(cache + ".tmp.npy", np.asarray(data))
    os.replace(cache + ".tmp.npy", cache + ".npy")
    with open(cache + ".json", "w", encoding="utf-8") as f:
        json.dump({"scale": list(kwargs["scale"]), "translate": list(kwargs["translate"])}, f)


def fresh(chain: str, cache: str, fill: bool) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--one", chain, "--cache", cache]
    p = subprocess.run(cmd + (["--fill"] if fill else []), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{chain}: {p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def same_labels(a, b, tol=1e-3) -> str | None:
    """None if ``a`` and ``b`` (lists of (volume, mean)) agree, else what differs."""
    if len(a) != len(b):
        return f"{len(a)} against {len(b)} regions"
    for k, ((va, ma), (vb, mb)) in enumerate(zip(a, b, strict=True)):
        if abs(va - vb) > tol * max(abs(va), abs(vb)) or abs(ma - mb) > tol * max(abs(ma),
                                                                                  abs(mb)):
            return f"region {k + 1}: volume {va:g} against {vb:g} mm3, mean {ma:g} against {mb:g}"
    return None


def main():
    if "--one" in sys.argv:
        ap = argparse.ArgumentParser()
        ap.add_argument("--one", choices=sorted(CHAINS), required=True)
        ap.add_argument("--cache", required=True)
        ap.add_argument("--fill", action="store_true")
        c = ap.parse_args()
        one(c.one, c.cache, c.fill)
        return
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--fill", action="store_true")
    ap.add_argument("--in-process", action="store_true")
    extra, rest = ap.parse_known_args()
    sys.argv[1:] = rest
    a, series = series_args(__doc__)  # --data, --slices, --repeat (for --in-process)
    cache = os.path.join(a.data, f"ct{a.slices}-layer")
    write_cache(series, cache)

    runs = {"ours": [], "skimage": []}
    results = {}
    for i in range(extra.runs):
        order = ("ours", "skimage") if i % 2 == 0 else ("skimage", "ours")
        for chain in order:
            r = fresh(chain, cache, extra.fill)
            runs[chain].append(r["seconds"])
            results[chain] = r["rows"]
            print(f"  run {i + 1}/{extra.runs} {chain:8s} {r['seconds']:7.3f} s", flush=True)
    t_ours, t_sk = statistics.median(runs["ours"]), statistics.median(runs["skimage"])
    diff = same_labels(results["ours"], results["skimage"])

    vol, spacing, translate = load_cache(cache)
    print(f"\n{vol.shape} {vol.dtype}, spacing {spacing} mm, preset {PRESET!r} "
          f"({LOW:g}..{HIGH:g} HU) "
          f"{'with' if extra.fill else 'without'} hole filling, clear border; "
          f"median of {extra.runs} fresh processes per chain (chain only, after imports)")
    print(f"public segment() + measure()   : {t_ours:7.3f} s  "
          f"(runs {', '.join(f'{t:.3f}' for t in runs['ours'])})")
    print(f"plain scikit-image chain       : {t_sk:7.3f} s  "
          f"(runs {', '.join(f'{t:.3f}' for t in runs['skimage'])})")
    print(f"labels: {len(results['ours'])} region(s) each, "
          + ("same count, volumes and mean HU within 0.1 %" if diff is None
             else f"DIFFER: {diff}"))
    ok = t_sk / t_ours >= 2 and diff is None
    print(f"speed-up: {t_sk / t_ours:.2f}x (goal >= 2x: {'met' if ok else 'NOT met'})")

    if extra.in_process:
        best = {}
        for name, fn in CHAINS.items():
            t = []
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                fn(vol, spacing, translate, extra.fill)
                t.append(time.perf_counter() - t0)
            best[name] = min(t)
        print(f"\nIN-PROCESS (one long-lived process, best of {a.repeat}; misleading, the "
              f"allocator's state swings plain scikit-image): ours {best['ours']:.3f} s, "
              f"scikit-image {best['skimage']:.3f} s, {best['skimage'] / best['ours']:.2f}x")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
