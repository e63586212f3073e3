#!/usr/bin/env python
"""DICOM SEG: write and read a SEG of 5 segments over the 300-slice 512x512 CT
(benchmarks/make_ct_series.py), ours against highdicom used directly.

write  ours    : core.seg.write_seg(labels, series, out) (reads the source headers, builds the
                 SEG through highdicom, saves it atomically)
       highdicom: pydicom.dcmread of every source header (stop_before_pixels), then
                 highdicom.seg.Segmentation(...) with the same label map, then save_as
read   ours    : core.seg.read_segmentation(seg, reference=series): label array on the CT grid
       highdicom: highdicom.seg.segread(seg).get_pixels_by_source_instance(<CT SOP UIDs in
                 slice order>, combine_segments=True)
Both must give the same voxels. The scan of the CT folder is done once, outside the clocks.
Median of --repeat runs per step, interleaved, alternating which goes first (after a
warm-up of both, so imports and the page cache favour neither).
read   pydicom-seg (with --pydicom-seg-python PY): pydicom-seg pins numpy<2 and cannot live
                 beside this project, so PY is the python of a throw-away venv holding it
                 (tests/data/thirdparty/README.md); it times, in that process after its
                 imports, pydicom.dcmread + MultiClassReader().read of our SEG (median of
                 --repeat) and checks the voxel count.

usage: python benchmarks/bench_seg.py [--data DIR] [--slices 300] [--repeat 3]
                                      [--pydicom-seg-python /tmp/xvenv/bin/python]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_read import series_args  # noqa: E402


def make_labels(shape) -> np.ndarray:
    """Five non-overlapping blobs of different sizes (segments 1..5), uint8."""
    n, rows, cols = shape
    z, y, x = np.ogrid[0:n, 0:rows, 0:cols]
    lab = np.zeros(shape, np.uint8)
    for k, (cz, cy, cx, r) in enumerate([(0.5, 0.5, 0.3, 0.12), (0.5, 0.5, 0.7, 0.12),
                                         (0.3, 0.3, 0.5, 0.06), (0.7, 0.7, 0.5, 0.08),
                                         (0.5, 0.8, 0.2, 0.03)]):
        d = ((z - cz * n) / n) ** 2 + ((y - cy * rows) / rows) ** 2 + \
            ((x - cx * cols) / cols) ** 2
        lab[(d <= r * r) & (lab == 0)] = k + 1
    return lab


def hd_write(series, labels, out):
    import highdicom as hd
    import pydicom

    dss = []
    for f in series.frames:
        ds = pydicom.dcmread(f.instance.path, stop_before_pixels=True)
        for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                   "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
            if kw not in ds:
                setattr(ds, kw, "")
        dss.append(ds)
    descs = [hd.seg.SegmentDescription(
        k, f"segment {k}", hd.sr.CodedConcept("85756007", "SCT", "Tissue"),
        hd.sr.CodedConcept("85756007", "SCT", "Tissue"), "MANUAL") for k in range(1, 6)]
    seg = hd.seg.Segmentation(dss, labels, "BINARY", descs, hd.UID(), 300, hd.UID(), 1,
                              "bench", "bench", "1", "1", omit_empty_frames=True)
    seg.save_as(out)


def hd_read(series, path):
    import highdicom as hd

    uids = [f.instance.sop_uid for f in series.frames]
    return hd.seg.segread(path).get_pixels_by_source_instance(
        uids, combine_segments=True, ignore_spatial_locations=True)


_PYDICOM_SEG = r"""
import statistics, sys, time
import numpy as np, pydicom, pydicom_seg
path, repeat = sys.argv[1], int(sys.argv[2])
times = []
for _ in range(repeat + 1):  # the first run warms the page cache
    t = time.perf_counter()
    res = pydicom_seg.MultiClassReader().read(pydicom.dcmread(path))
    times.append(time.perf_counter() - t)
print(statistics.median(times[1:]), int((res.data > 0).sum()))
"""


def pydicom_seg_read(python: str, path: str, repeat: int) -> tuple[float, int]:
    """(median seconds, labelled voxels) of pydicom-seg reading ``path`` in ``python``."""
    import subprocess

    out = subprocess.run([python, "-c", _PYDICOM_SEG, path, str(repeat)], check=True,
                         capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1])


def _pop_option(name: str) -> str | None:
    if name in sys.argv:
        i = sys.argv.index(name)
        value = sys.argv[i + 1]
        del sys.argv[i:i + 2]
        return value
    return None


def main():
    pyseg = _pop_option("--pydicom-seg-python")
    from napari_dicomtools.core.seg import read_segmentation, write_seg
    from napari_dicomtools.core.series import scan

    a, folder = series_args(__doc__)
    (series,) = scan(folder)
    labels = make_labels(series.shape)
    tmp = tempfile.mkdtemp(prefix="bench-seg-")
    times = {k: [] for k in ("write ours", "write highdicom", "read ours", "read highdicom")}
    warnings.simplefilter("ignore")
    warm = os.path.join(tmp, "warm.dcm")  # imports, page cache
    hd_write(series, labels, warm)
    hd_read(series, warm)
    read_segmentation(warm, reference=series)
    os.unlink(warm)
    for r in range(a.repeat):
        ours_path = os.path.join(tmp, f"ours{r}.dcm")
        hd_path = os.path.join(tmp, f"hd{r}.dcm")
        steps = [("write ours", lambda o=ours_path: write_seg(labels, series, o)),
                 ("write highdicom", lambda h=hd_path: hd_write(series, labels, h))]
        for name, fn in steps if r % 2 else steps[::-1]:  # alternate who goes first
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
        got = ref = None
        for name in (["read ours", "read highdicom"] if r % 2 else
                     ["read highdicom", "read ours"]):
            t = time.perf_counter()
            if name == "read ours":
                got = read_segmentation(ours_path, reference=series)
            else:
                ref = hd_read(series, hd_path)
            times[name].append(time.perf_counter() - t)
        assert len(got.labels) == 1 and np.array_equal(got.labels[0], labels), "ours differs"
        assert np.array_equal(ref, labels), "highdicom differs"
        if pyseg and r == a.repeat - 1:
            t, count = pydicom_seg_read(pyseg, ours_path, a.repeat)
            assert count == int((labels > 0).sum()), "pydicom-seg differs"
            times["read pydicom-seg"] = [t]
        for p in (ours_path, hd_path):
            os.unlink(p)
    med = {k: statistics.median(v) for k, v in times.items()}
    size = "x".join(map(str, series.shape))
    print(f"SEG of 5 segments over {size} ({int((labels > 0).sum()):,} labelled voxels), "
          f"median of {a.repeat}")
    for step in ("write", "read"):
        o, h = med[f"{step} ours"], med[f"{step} highdicom"]
        print(f"  {step:5s}  ours {o:7.2f} s   highdicom {h:7.2f} s   ours/highdicom "
              f"{o / h:5.2f}x")
    if "read pydicom-seg" in med:
        o, p = med["read ours"], med["read pydicom-seg"]
        print(f"  read   ours {o:7.2f} s   pydicom-seg {p:5.2f} s   ours/pydicom-seg "
              f"{o / p:5.2f}x")
    os.rmdir(tmp)


if __name__ == "__main__":
    main()
