#!/usr/bin/env python
"""The segmentation chain (threshold, clear border, label, measure) on the 300-slice 512x512 CT
series from ../shared/make_ct_series.py: napari-dicomtools' core against the same chain written
with plain scikit-image calls. Same volume in memory for both; best of --repeat.

usage: python benchmarks/bench_segment.py [--repeat 3]
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_read import series_args  # noqa: E402

LOW, HIGH = -950.0, -300.0  # the lung preset: regions that do not touch the borders


def ours(vol, spacing):
    from scipy import ndimage

    from napari_dicomtools.core import segment as sg
    from napari_dicomtools.core.measure import measure

    mask = sg.threshold(vol, LOW, HIGH)
    lab = sg.label(mask)
    objects = ndimage.find_objects(lab)  # one pass, shared by clear_border and measure
    lab = sg.clear_border(lab, objects=objects, copy=False)
    return measure(lab, vol, spacing, objects=objects)


def plain_skimage(vol, spacing):
    from skimage import measure as skm
    from skimage import segmentation

    mask = (vol >= LOW) & (vol <= HIGH)
    lab = skm.label(mask, connectivity=1)
    lab = segmentation.clear_border(lab)
    rows = []
    for r in skm.regionprops(lab, intensity_image=vol, spacing=spacing):
        rows.append({"label": r.label, "volume_mm3": r.area, "bbox": r.bbox,
                     "centroid": r.centroid, "mean": r.intensity_mean,
                     "min": r.intensity_min, "max": r.intensity_max,
                     "std": r.intensity_std})
    return rows


def best(fn, args, repeat):
    t = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args)
        t.append(time.perf_counter() - t0)
    return min(t), out


def main():
    a, series = series_args(__doc__)
    from napari_dicomtools import read_volume

    v = read_volume(series)
    vol, spacing = np.asarray(v.array), v.spacing
    t_ours, r_ours = best(ours, (vol, spacing), a.repeat)
    t_sk, r_sk = best(plain_skimage, (vol, spacing), a.repeat)
    print(f"\n{vol.shape} {vol.dtype}, threshold {LOW:g}..{HIGH:g} HU, best of {a.repeat}")
    print(f"napari-dicomtools chain : {t_ours:7.3f} s, {len(r_ours)} region(s)")
    print(f"plain scikit-image chain: {t_sk:7.3f} s, {len(r_sk)} region(s)")
    print(f"speed-up: {t_sk / t_ours:.2f}x (target >= 2)")


if __name__ == "__main__":
    main()
