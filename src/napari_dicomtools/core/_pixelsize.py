"""How big a pixel is, and how far apart in time the frames of a cine are (private).

PixelSpacing (0028,0030) says the size of a pixel in the patient, ImagerPixelSpacing
(0018,1164) at the detector (projection radiography). Ultrasound images usually have
neither: their calibration is in the Sequence of Ultrasound Regions (0018,6011), one item
per region of the screen (a B-mode sector, a Doppler strip, an ECG trace), each with its
own physical units (PS3.3 C.8.5.5). A region calibrated in cm in both directions (units
code 3) gives the pixel size, when every such region says the same, or when one tissue
region is clearly the image (the largest); a region that does not fit in the image (the
file was resized after it was calibrated) is never used. Anything else: the size is
unknown and said so, never 1 mm.

Cine loops (ultrasound, X-ray angiography, secondary capture video) give FrameTime
(0018,1063) or FrameTimeVector (0018,1065): their frames are moments, not slices.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from ._values import DatasetLike, _as_list, _f, _i

#: PhysicalUnitsX/YDirection (0018,6024/6026) code for centimetres
_CM = 3
#: RegionDataType (0018,6014) code for tissue (B-mode)
_TISSUE = 1
#: region calibrations within this fraction of each other are the same
_AGREE = 0.01


class PixelCalibration(NamedTuple):
    """Where a file's pixel size comes from.

    Parameters
    ----------
    spacing : tuple of 2 float or None
        ``(row, column)`` spacing in mm, or None when the file does not say.
    source : str
        ``"PixelSpacing"``, ``"ImagerPixelSpacing"``, ``"ultrasound region calibration"``,
        or ``""`` when the size is unknown.
    note : str
        Which ultrasound region was used, or why none was (``""`` when there is nothing to
        say).
    """

    spacing: tuple[float, float] | None
    source: str
    note: str = ""


class _Region(NamedTuple):
    """One item of the Sequence of Ultrasound Regions, calibrated in cm both ways."""

    data_type: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (pixels, inclusive)
    delta: tuple[float, float]  # (row, column) mm

    @property
    def area(self) -> int:
        x0, y0, x1, y1 = self.box
        return (x1 - x0 + 1) * (y1 - y0 + 1)

    def text(self) -> str:
        x0, y0, x1, y1 = self.box
        return f"columns {x0}-{x1}, rows {y0}-{y1}: {self.delta[1]:.4g} x {self.delta[0]:.4g} mm"


def _spacing_pair(v: Any) -> tuple[float, float] | None:
    try:
        out = tuple(float(x) for x in v)
    except (TypeError, ValueError):
        return None
    if len(out) != 2 or not all(math.isfinite(x) for x in out):
        return None
    return out[0], out[1]


def _cm_regions(ds: DatasetLike) -> list[_Region]:
    """The regions calibrated in centimetres in both directions, with a positive size."""
    out = []
    for item in ds.get("SequenceOfUltrasoundRegions", None) or ():
        if _i(item.get("PhysicalUnitsXDirection", None)) != _CM or \
                _i(item.get("PhysicalUnitsYDirection", None)) != _CM:
            continue
        dx = _f(item.get("PhysicalDeltaX", None))
        dy = _f(item.get("PhysicalDeltaY", None))
        box = tuple(_i(item.get(k, None)) for k in (
            "RegionLocationMinX0", "RegionLocationMinY0", "RegionLocationMaxX1",
            "RegionLocationMaxY1"))
        if dx is None or dy is None or not (0 < abs(dx) < math.inf and 0 < abs(dy) < math.inf):
            continue
        if any(b is None for b in box):
            continue
        x0, y0, x1, y1 = (int(b) for b in box if b is not None)
        out.append(_Region(_i(item.get("RegionDataType", None), 0),
                           (x0, y0, x1, y1), (abs(dy) * 10.0, abs(dx) * 10.0)))
    return out


def _agree(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(abs(x - y) <= _AGREE * max(x, y) for x, y in zip(a, b, strict=True))


def _misfit(r: _Region, rows: int, columns: int) -> str | None:
    """None when region ``r`` lies in the image (its far edge may be one past it, a common
    off-by-one); ``""`` when it runs past one edge only (the screen was cropped: the pixel
    size stands); else why it cannot be this image's calibration (past both edges: the
    screen was resized after it was calibrated)."""
    x0, y0, x1, y1 = r.box
    if x0 < 0 or y0 < 0 or x0 >= columns or y0 >= rows or x1 < x0 or y1 < y0:
        return f"does not start in the {columns}x{rows} image"
    past_x, past_y = x1 > columns, y1 > rows
    if past_x and past_y:
        return (f"runs past the {columns}x{rows} image in both directions (resized after "
                "calibration?)")
    return "" if past_x or past_y else None


def ultrasound_calibration(ds: DatasetLike, rows: int, columns: int) -> PixelCalibration:
    """The pixel size from the Sequence of Ultrasound Regions (0018,6011).

    Parameters
    ----------
    ds : pydicom.Dataset
        The data set (its top level).
    rows, columns : int
        The image size, to check that the regions fit in it.

    Returns
    -------
    PixelCalibration
        ``source`` ``"ultrasound region calibration"`` with the spacing in mm, or ``""``
        (unknown) with the reason in ``note`` when no region is calibrated in cm, a region
        does not fit in the image, or the regions disagree and none is the image.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> from pydicom import dcmread
    >>> ds = dcmread(get_testdata_file("examples_palette.dcm"), stop_before_pixels=True)
    >>> cal = ultrasound_calibration(ds, ds.Rows, ds.Columns)
    >>> [round(x, 4) for x in cal.spacing], cal.source
    ([0.2623, 0.2623], 'ultrasound region calibration')
    """
    regions = _cm_regions(ds)
    if not regions:
        if "SequenceOfUltrasoundRegions" in ds:
            return PixelCalibration(None, "", "no ultrasound region is calibrated in cm")
        return PixelCalibration(None, "")
    notes = []
    for r in regions:
        why = _misfit(r, rows, columns)
        if why is not None:
            if why:
                return PixelCalibration(None, "", f"ultrasound region ({r.text()}) {why}: "
                                                  "its calibration is not used")
            notes.append(f"ultrasound region ({r.text()}) runs past the {columns}x{rows} "
                         "image on one side (a cropped screen): its calibration used")
    first = regions[0]
    first = regions[0]
    if all(_agree(r.delta, first.delta) for r in regions):
        many = f"{len(regions)} regions agree" if len(regions) > 1 else "one region"
        return PixelCalibration(first.delta, "ultrasound region calibration", "; ".join(
            notes or [f"ultrasound calibration from {many} ({first.text()})"]))
    tissue = sorted((r for r in regions if r.data_type == _TISSUE), key=lambda r: -r.area)
    if tissue and (len(tissue) == 1 or tissue[0].area > 2 * tissue[1].area):
        main = tissue[0]
        return PixelCalibration(main.delta, "ultrasound region calibration", (
            f"ultrasound regions differ; the largest tissue region used ({main.text()}): "
            "distances outside it are wrong"))
    return PixelCalibration(None, "", "ultrasound regions have different calibrations: "
                            + "; ".join(r.text() for r in regions))


def pixel_calibration(ds: DatasetLike, rows: int, columns: int) -> PixelCalibration:
    """PixelSpacing, else ImagerPixelSpacing, else the ultrasound regions' calibration.

    Parameters
    ----------
    ds : pydicom.Dataset or FastDataset
        The data set (its top level).
    rows, columns : int
        The image size.

    Returns
    -------
    PixelCalibration
        The spacing (None when unknown), where it came from, and a note.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> from pydicom import dcmread
    >>> pixel_calibration(dcmread(get_testdata_file("CT_small.dcm")), 128, 128)
    PixelCalibration(spacing=(0.661468, 0.661468), source='PixelSpacing', note='')
    """
    for kw in ("PixelSpacing", "ImagerPixelSpacing"):
        ps = _spacing_pair(ds.get(kw, None))
        if ps is not None:
            return PixelCalibration(ps, kw)
    if "SequenceOfUltrasoundRegions" not in ds:
        return PixelCalibration(None, "")
    return ultrasound_calibration(ds, rows, columns)


def frame_time_ms(ds: DatasetLike, n_frames: int) -> tuple[float | None, str]:
    """The time between the frames of a cine: FrameTime (0018,1063), else the mean step of
    FrameTimeVector (0018,1065), in ms, with a note when the steps vary.

    Parameters
    ----------
    ds : pydicom.Dataset or FastDataset
        The data set (its top level).
    n_frames : int
        NumberOfFrames.

    Returns
    -------
    tuple
        ``(milliseconds or None, note)``; None for a single frame or when neither attribute
        holds a positive time.

    Examples
    --------
    >>> from pydicom import Dataset
    >>> ds = Dataset()
    >>> ds.FrameTimeVector = [0, 40, 40, 50]
    >>> frame_time_ms(ds, 4)
    (43.333333333333336, 'frame times vary from 40 to 50 ms (FrameTimeVector)')
    """
    if n_frames < 2:
        return None, ""
    ft = _f(ds.get("FrameTime", None))
    if ft is not None and 0 < ft < math.inf:
        return ft, ""
    steps = [_f(v) for v in _as_list(ds.get("FrameTimeVector", None))][1:]
    if len(steps) != n_frames - 1 or not all(s is not None and 0 < s < math.inf
                                              for s in steps):
        return None, ""
    good = [float(s) for s in steps if s is not None]
    lo, hi = min(good), max(good)
    note = (f"frame times vary from {lo:.3g} to {hi:.3g} ms (FrameTimeVector)"
            if hi - lo > _AGREE * hi else "")
    return sum(good) / len(good), note
