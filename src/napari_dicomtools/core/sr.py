"""Measurement reports: DICOM SR TID 1500 (Comprehensive 3D SR) of planar ROIs.

* :func:`write_sr` writes regions of interest (polygons, polylines, points in patient LPS mm)
  with their measurements (area, length, mean, ...; values in UCUM units) as a TID 1500
  Imaging Measurement Report referencing the image series they were drawn on (highdicom).
* :func:`read_sr` returns the planar ROIs of any TID 1500 report (3D SCOORD3D regions, as
  3D Slicer, OHIF and highdicom write them) with their tracking identifiers, finding types
  and measurements.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import numpy.typing as npt

from ._dicomobj import code, output_reference, source_datasets
from .errors import DicomToolsError, UnreadableDicomError

if TYPE_CHECKING:
    from highdicom.sr import (
        CodedConcept,
        ImageRegion,
        ImageRegion3D,
        Measurement,
        PlanarROIMeasurementsAndQualitativeEvaluations,
    )
    from pydicom import Dataset

    from .headers import Frame
    from .series import Series

__all__ = [
    "Roi", "read_sr", "write_sr", "polygon_area_mm2", "path_length_mm", "MEASUREMENTS",
]


#: measurement keyword -> (pydicom ``codes.SCT`` name, UCUM unit)
MEASUREMENTS = {
    "area": ("Area", "mm2"), "length": ("Length", "mm"), "volume": ("Volume", "mm3"),
    "mean": ("Mean", "[hnsf'U]"), "std": ("StandardDeviation", "[hnsf'U]"),
    "min": ("Minimum", "[hnsf'U]"), "max": ("Maximum", "[hnsf'U]"),
}

_GRAPHIC = {"polygon": "POLYGON", "rectangle": "POLYGON", "path": "POLYLINE",
            "line": "POLYLINE", "point": "POINT", "points": "MULTIPOINT"}


class _RoiMeasurement(TypedDict):
    """One measurement of a region as :func:`read_sr` gives it."""

    name: str  # code meaning, e.g. "Area"
    value: float
    unit: str  # UCUM code, e.g. "mm2"


@dataclass
class Roi:
    """One planar region of a measurement report.

    Parameters
    ----------
    label : str
        Tracking identifier (e.g. "lesion 1").
    points : numpy.ndarray
        ``(n, 3)`` LPS mm; a polygon is closed (last point = first).
    graphic_type : str
        POLYGON, POLYLINE, POINT or MULTIPOINT (circles and ellipses are read as polygons).
    measurements : list of dict
        ``{"name", "value", "unit"}``: code meaning (e.g. "Area"), float, UCUM code.
    finding : str
        Finding type (code meaning), e.g. "Lesion".
    tracking_uid : str
        Tracking Unique Identifier (a new one is made on writing when empty).

    Examples
    --------
    >>> square = [[0, 0, 5], [10, 0, 5], [10, 8, 5], [0, 8, 5], [0, 0, 5]]
    >>> roi = Roi("lesion 1", np.array(square, float), finding="Lesion",
    ...           measurements=[{"name": "Area", "value": 80.0, "unit": "mm2"}])
    >>> roi.graphic_type, polygon_area_mm2(roi.points)
    ('POLYGON', 80.0)
    """

    label: str
    points: npt.NDArray[np.float64]
    graphic_type: str = "POLYGON"
    measurements: list[_RoiMeasurement] = field(default_factory=list)
    finding: str = ""
    tracking_uid: str = ""


def _unit(value: str) -> CodedConcept:
    from highdicom.sr import CodedConcept

    return CodedConcept(value, "UCUM", value)


def _measurement_key(name: str) -> str | None:
    """The :data:`MEASUREMENTS` keyword of a keyword or a code meaning (``"Standard
    Deviation"`` -> ``"std"``), any case; None when unknown."""
    from pydicom.sr.codedict import codes

    k = name.strip().lower()
    if k in MEASUREMENTS:
        return k
    for key, (sct, _unit_code) in MEASUREMENTS.items():
        if getattr(codes.SCT, sct).meaning.lower() == k:
            return key
    return None


def _measurements(values: Mapping[str, Any] | Iterable[Mapping[str, Any]] | None,
                  path: str) -> list[Measurement]:
    """highdicom measurements of a mapping keyword -> value (or -> {"value"}), or of a list
    of ``{"name", "value"}`` as :class:`Roi` holds them."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    pairs: list[tuple[str, Any]]
    if isinstance(values, Mapping):
        pairs = [(str(v.get("name", k)), v.get("value")) if isinstance(v, Mapping)
                 else (str(k), v) for k, v in values.items()]
    else:
        pairs = [(str(m.get("name", "")), m.get("value")) for m in values or []]
    out = []
    for name, value in pairs:
        key = _measurement_key(name)
        if key is None:
            raise DicomToolsError(path, f"unknown measurement {name!r}; one of "
                                        f"{', '.join(MEASUREMENTS)}")
        if value is None:
            raise DicomToolsError(path, f"measurement {name!r} has no value")
        sct, unit = MEASUREMENTS[key]
        out.append(hd.sr.Measurement(name=getattr(codes.SCT, sct), value=float(value),
                                     unit=_unit(unit)))
    return out


def _region_points(r: Mapping[str, Any], i: int, path: str) -> tuple[str, npt.NDArray[Any]]:
    """(graphic type, (n, 3) points) of one region to write; a polygon closed."""
    pts = np.asarray(r.get("points"), float).reshape(-1, 3)
    gtype = _GRAPHIC.get(str(r.get("type", r.get("graphic_type", "polygon"))).lower(),
                         str(r.get("graphic_type", "POLYGON")).upper())
    if gtype == "POLYGON" and len(pts) >= 3 and not np.allclose(pts[0], pts[-1]):
        pts = np.vstack([pts, pts[:1]])
    need = {"POLYGON": 4, "POLYLINE": 2, "POINT": 1, "MULTIPOINT": 1}.get(gtype, 1)
    if len(pts) < need or not np.all(np.isfinite(pts)):
        raise DicomToolsError(path, f"region {i + 1}: {len(pts)} finite point(s) are too "
                                    f"few for a {gtype.lower()}")
    return gtype, pts


def _roi_group(roi: Roi | Mapping[str, Any], i: int, series: Series,
               path: str) -> PlanarROIMeasurementsAndQualitativeEvaluations:
    """One region and its measurements as a TID 1410 group."""
    import highdicom as hd
    from highdicom.sr import CodedConcept

    r = roi.__dict__ if isinstance(roi, Roi) else dict(roi)
    gtype, pts = _region_points(r, i, path)
    region = hd.sr.ImageRegion3D(gtype, pts, series.frame_of_reference)
    meas = _measurements(r.get("measurements"), path)
    finding = CodedConcept(*code(r.get("finding") or "lesion", "type", path))
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=r.get("tracking_uid") or hd.UID(),
            identifier=str(r.get("label") or f"ROI {i + 1}")[:64]),
        referenced_region=region, finding_type=finding, measurements=meas or None)


def write_sr(rois: Sequence[Roi | Mapping[str, Any]],
             reference: Series | os.PathLike[str] | str, path: os.PathLike[str] | str, *,
             overwrite: bool = False, description: str = "Measurement report",
             series_number: int = 400) -> str:
    """Write planar ROIs and their measurements as a DICOM SR TID 1500 measurement report.

    Parameters
    ----------
    rois : sequence of dict or Roi
        Each: ``label``, ``points`` ((n, 3) LPS mm, on one plane), ``type`` (polygon,
        rectangle, path, line, point, points; or ``graphic_type`` as in :class:`Roi`),
        ``measurements`` (mapping keyword of :data:`MEASUREMENTS` -> value, in mm, mm2, mm3
        or HU; or a list of ``{"name", "value"}`` as :func:`read_sr` gives them),
        ``finding`` (a keyword of :data:`~napari_dicomtools.core.seg.TYPES`, default lesion).
    reference : Series, str or os.PathLike
        The image series the ROIs were drawn on (evidence, Frame of Reference).
    path : str or os.PathLike
        Output file; never inside the reference's folder.
    overwrite : bool
        Replace an existing ``path``; by default it is refused.
    description : str
        SeriesDescription (64 characters at most).
    series_number : int
        SeriesNumber of the new series.

    Returns
    -------
    str
        The path of the Comprehensive 3D SR written.

    Raises
    ------
    DicomToolsError
        No regions, too few finite points for a region's type, an unknown measurement or
        finding, the reference is not one image volume with patient geometry, ``path`` is
        inside the reference's folder or exists.

    Examples
    --------
    >>> import tempfile
    >>> from napari_dicomtools.core.synthetic import write_series
    >>> tmp = tempfile.mkdtemp()
    >>> truth = write_series(tmp + "/ct", np.zeros((3, 8, 8), np.int16))
    >>> z = float(truth.origin[2])  # the first slice's plane
    >>> square = [[-36, -36, z], [-33, -36, z], [-33, -34, z], [-36, -34, z]]
    >>> out = write_sr([{"label": "lesion 1", "points": square,
    ...                  "measurements": {"area": polygon_area_mm2(square)}}],
    ...                tmp + "/ct", tmp + "/sr.dcm")
    >>> rois, meta = read_sr(out)
    >>> rois[0].label, rois[0].measurements[0]["value"]
    ('lesion 1', 6.0)
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from .. import __version__
    from .safety import atomic_output

    path = os.fspath(path)
    series = output_reference(reference, path)
    if not rois:
        raise DicomToolsError(path, "no regions to report")
    groups = [_roi_group(r, i, series, path) for i, r in enumerate(rois)]
    observer = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=hd.UID(), name="napari-dicomtools")))
    report = hd.sr.MeasurementReport(observer, procedure_reported=codes.SCT.ImagingProcedure,
                                     imaging_measurements=groups)
    dss, _ = source_datasets(series)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sr = hd.sr.Comprehensive3DSR(
            evidence=dss, content=report, series_instance_uid=hd.UID(),
            series_number=int(series_number), sop_instance_uid=hd.UID(), instance_number=1,
            manufacturer="napari-dicomtools", series_description=description[:64],
            software_versions=str(__version__))
    with atomic_output(path, overwrite=overwrite) as tmp:
        sr.save_as(tmp)
    return path


def _image_of(roi: Dataset) -> tuple[str, int | None]:
    """(ReferencedSOPInstanceUID, frame index or None) of a 2D region's SELECTED FROM item."""
    for it in roi.get("ContentSequence", None) or []:
        for ref in it.get("ReferencedSOPSequence", None) or []:
            frames = ref.get("ReferencedFrameNumber", None)
            if frames is not None and not isinstance(frames, (int, float, str)):
                frames = list(frames)[0] if len(frames) else None
            return (str(ref.get("ReferencedSOPInstanceUID", "")),
                    int(frames) - 1 if frames not in (None, "") else None)
    return ("", None)


def _outline(graphic_type: str, pts: npt.NDArray[np.float64]
             ) -> tuple[str, npt.NDArray[np.float64]]:
    """CIRCLE (centre, a point on it) and ELLIPSE (major-axis ends, minor-axis ends) as a
    closed 64-point POLYGON in the same coordinates, a closed POLYLINE as a POLYGON; other
    types unchanged."""
    t = np.linspace(0.0, 2.0 * np.pi, 64, endpoint=False)
    if graphic_type == "CIRCLE" and pts.shape == (2, 2):  # SCOORD only
        c, u = pts[0], pts[1] - pts[0]
        v = np.array([-u[1], u[0]])
    elif graphic_type == "ELLIPSE" and len(pts) == 4:
        c = (pts[0] + pts[1]) / 2.0
        u, v = (pts[1] - pts[0]) / 2.0, (pts[3] - pts[2]) / 2.0
    elif graphic_type == "POLYLINE" and len(pts) >= 4 and np.allclose(pts[0], pts[-1]):
        return "POLYGON", pts  # SCOORD has no POLYGON: a closed polyline is the region
    else:
        return graphic_type, pts
    ring = c + np.outer(np.cos(t), u) + np.outer(np.sin(t), v)
    return "POLYGON", np.vstack([ring, ring[:1]])


def _frames_by_sop(reference: Series | Iterable[Series] | os.PathLike[str] | str | None
                   ) -> dict[tuple[str, int | None], Frame]:
    """SOP Instance UID (and frame index) -> Frame, over the image series given."""
    from .series import Series, scan

    if reference is None:
        return {}
    if isinstance(reference, (str, os.PathLike)):
        series: Iterable[Series] = scan(os.fspath(reference))
    elif isinstance(reference, Series):
        series = [reference]
    else:
        series = reference
    out = {}
    for s in series:
        if getattr(s, "kind", "IMAGE") != "IMAGE":
            continue
        for f in s.frames:
            out[(f.instance.sop_uid, f.index)] = f
            out.setdefault((f.instance.sop_uid, None), f)
    return out


def _place(points2d: npt.NDArray[np.float64], frame: Frame) -> npt.NDArray[np.float64]:
    """SCOORD image coordinates (column, row; (0, 0) the top left corner of the top left
    pixel, so the first pixel's centre is (0.5, 0.5)) -> LPS mm on the image's plane."""
    iop = np.asarray(frame.orientation, float)
    dr, dc = (float(v) for v in frame.pixel_spacing or (1.0, 1.0))  # row, column spacing
    xy = np.asarray(points2d, float) - 0.5
    lps: npt.NDArray[np.float64] = (np.asarray(frame.position, float)
                                    + np.outer(xy[:, 0] * dc, iop[:3])
                                    + np.outer(xy[:, 1] * dr, iop[3:]))
    return lps


def _on_image(roi: ImageRegion, pts: npt.NDArray[np.float64],
              images: dict[tuple[str, int | None], Frame], label: str,
              problems: list[str]) -> tuple[npt.NDArray[np.float64], str] | None:
    """A 2D region placed in LPS mm on the plane of its image, and that image's Frame of
    Reference; None (and the reason in ``problems``) when the image is not known."""
    sop, frame = _image_of(roi)
    fr = images.get((sop, frame))
    if fr is None or fr.position is None or fr.orientation is None \
            or fr.pixel_spacing is None:
        why = "is not among the images read" if fr is None else "has no geometry"
        problems.append(f"region {label!r} is in 2D coordinates of image {sop} which {why}; "
                        "not placed")
        return None
    return _place(pts, fr), str(fr.instance.frame_of_reference)


def _roi_of(g: PlanarROIMeasurementsAndQualitativeEvaluations, gtype: str,
            pts: npt.NDArray[np.float64]) -> Roi:
    meas: list[_RoiMeasurement] = [
        {"name": str(m.name.meaning), "value": float(m.value), "unit": str(m.unit.value)}
        for m in g.get_measurements()]
    ft = g.finding_type
    return Roi(label=str(g.tracking_identifier or ""), points=pts, graphic_type=gtype,
               measurements=meas, finding=str(ft.meaning) if ft is not None else "",
               tracking_uid=str(g.tracking_uid or ""))


def _report_meta(sr: Dataset, name: str, frame_uids: set[str],
                 problems: list[str]) -> dict[str, Any]:
    series_uids = sorted({str(it.get("SeriesInstanceUID", "")) for st in
                          sr.get("CurrentRequestedProcedureEvidenceSequence", None) or []
                          for it in st.get("ReferencedSeriesSequence", None) or []})
    return {"name": f"{sr.get('SeriesNumber', '') or ''} "
                    f"{sr.get('SeriesDescription', '') or 'SR'}".strip(),
            "path": name, "frame_of_reference": sorted(frame_uids)[0] if frame_uids else "",
            "referenced_series_uids": series_uids, "problems": problems}


def read_sr(path: os.PathLike[str] | str,
            reference: Series | Iterable[Series] | os.PathLike[str] | str | None = None
            ) -> tuple[list[Roi], dict[str, Any]]:
    """The planar ROIs and measurements of a TID 1500 measurement report, in LPS mm.

    Regions in patient coordinates (SCOORD3D) are read as they are; regions in 2D image
    coordinates (SCOORD, as many viewers write them) are placed on the plane of the image
    they were drawn on (its ImagePositionPatient, ImageOrientationPatient and PixelSpacing)
    when that image is among ``reference``. Circles and ellipses become closed polygons.

    Parameters
    ----------
    path : str or os.PathLike
        The SR file.
    reference : Series, list of Series, str, os.PathLike or None
        The image series (or a folder of them) in which to find the images of 2D regions.

    Returns
    -------
    rois : list of Roi
        The regions, in report order.
    metadata : dict
        ``name``, ``path``, ``frame_of_reference``, ``referenced_series_uids``,
        ``problems`` (2D regions whose image was not found, which are not placed; regions
        that are not image regions).

    Raises
    ------
    DicomToolsError
        Not an SR, or not a TID 1500 measurement report.

    Examples
    --------
    >>> import tempfile
    >>> from napari_dicomtools.core.synthetic import write_series
    >>> tmp = tempfile.mkdtemp()
    >>> truth = write_series(tmp + "/ct", np.zeros((3, 8, 8), np.int16))
    >>> z = float(truth.origin[2])
    >>> out = write_sr([{"label": "ruler", "type": "line",
    ...                  "points": [[-36, -36, z], [-30, -36, z]], "finding": "lesion",
    ...                  "measurements": {"length": 6.0}}], tmp + "/ct", tmp + "/sr.dcm")
    >>> rois, meta = read_sr(out)
    >>> rois[0].graphic_type, rois[0].measurements, meta["problems"]
    ('POLYLINE', [{'name': 'Length', 'value': 6.0, 'unit': 'mm'}], [])
    """
    import highdicom as hd

    name = os.fspath(path)
    try:
        sr = hd.sr.srread(name)
    except Exception as exc:  # noqa: BLE001 - highdicom/pydicom raise anything on bad input
        raise UnreadableDicomError(name, f"not a readable structured report ({exc})") \
            from None
    content = getattr(sr, "content", None)
    if content is None or not hasattr(content, "get_planar_roi_measurement_groups"):
        raise DicomToolsError(name, "not a TID 1500 measurement report")
    rois: list[Roi] = []
    problems: list[str] = []
    images: dict[tuple[str, int | None], Frame] | None = None
    frame_uids: set[str] = set()
    for g in content.get_planar_roi_measurement_groups():
        roi: ImageRegion | ImageRegion3D | None = g.roi
        if roi is None:
            problems.append(f"region {g.tracking_identifier!r} has no image region "
                            "(a referenced segment or volume); not placed")
            continue
        gtype, pts = _outline(str(roi.graphic_type.value), np.asarray(roi.value, float))
        if isinstance(roi, hd.sr.ImageRegion3D):
            uid = str(roi.frame_of_reference_uid)
        else:  # SCOORD: on an image
            images = _frames_by_sop(reference) if images is None else images
            placed = _on_image(roi, pts, images, str(g.tracking_identifier), problems)
            if placed is None:
                continue
            pts, uid = placed
        frame_uids.add(uid)
        rois.append(_roi_of(g, gtype, pts))
    return rois, _report_meta(sr, name, frame_uids, problems)


def polygon_area_mm2(points: npt.ArrayLike) -> float:
    """Area of a planar polygon given by 3D points.

    Parameters
    ----------
    points : array_like
        ``(n, 3)`` vertices in mm (LPS), closed (last = first) or not.

    Returns
    -------
    float
        The area in mm^2 (0 for fewer than 3 points).

    Examples
    --------
    >>> polygon_area_mm2([[0, 0, 5], [10, 0, 5], [10, 8, 5], [0, 8, 5]])
    80.0
    """
    p = np.asarray(points, float).reshape(-1, 3)
    if len(p) < 3:
        return 0.0
    cross = np.cross(p, np.roll(p, -1, axis=0)).sum(axis=0)
    return float(0.5 * np.linalg.norm(cross))


def path_length_mm(points: npt.ArrayLike) -> float:
    """Length of a polyline through 3D points.

    Parameters
    ----------
    points : array_like
        ``(n, 3)`` vertices in mm (LPS), in order.

    Returns
    -------
    float
        The summed length of the segments in mm (0 for fewer than 2 points).

    Examples
    --------
    >>> path_length_mm([[0, 0, 0], [3, 4, 0], [3, 4, 2]])
    7.0
    """
    p = np.asarray(points, float).reshape(-1, 3)
    return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum())
