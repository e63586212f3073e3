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
from dataclasses import dataclass, field

import numpy as np

from .errors import DicomToolsError, UnreadableDicomError

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


@dataclass
class Roi:
    """One planar region of a measurement report.

    Attributes
    ----------
    label : str
        Tracking identifier (e.g. "lesion 1").
    points : numpy.ndarray, shape (n, 3)
        LPS mm; a polygon is closed (last point = first).
    graphic_type : str
        POLYGON, POLYLINE, POINT, MULTIPOINT, ELLIPSE...
    measurements : list of dict
        ``{"name", "value", "unit"}`` (code meaning, float, UCUM code).
    finding : str
        Finding type (code meaning), e.g. "Lesion".
    """

    label: str
    points: np.ndarray
    graphic_type: str = "POLYGON"
    measurements: list = field(default_factory=list)
    finding: str = ""
    tracking_uid: str = ""


def _unit(code: str):
    from highdicom.sr import CodedConcept

    return CodedConcept(code, "UCUM", code)


def write_sr(rois, reference, path, *, overwrite: bool = False,
             description: str = "Measurement report", series_number: int = 400) -> str:
    """Write planar ROIs and their measurements as a DICOM SR TID 1500 measurement report.

    Parameters
    ----------
    rois : sequence of dict or Roi
        Each: ``label``, ``points`` ((n, 3) LPS mm, on one plane), ``type`` (polygon,
        rectangle, path, line, point, points), ``measurements`` (mapping keyword of
        :data:`MEASUREMENTS` -> value, in mm, mm2, mm3 or HU), ``finding`` (a keyword of
        :data:`~.seg.TYPES`, default lesion).
    reference : Series or str
        The image series the ROIs were drawn on (evidence, Frame of Reference).
    path : str
        Output file; never inside the reference's folder, never overwritten unless
        ``overwrite``.

    Returns
    -------
    str
        The path of the Comprehensive 3D SR written.
    """
    import highdicom as hd
    from highdicom.sr import CodedConcept
    from pydicom.sr.codedict import codes

    from .. import __version__
    from .safety import atomic_output
    from .seg import _code, _output_reference, _source_datasets

    path = os.fspath(path)
    series = _output_reference(reference, path)
    if not rois:
        raise DicomToolsError(path, "no regions to report")
    groups = []
    for i, r in enumerate(rois):
        r = r.__dict__ if isinstance(r, Roi) else dict(r)
        pts = np.asarray(r.get("points"), float).reshape(-1, 3)
        gtype = _GRAPHIC.get(str(r.get("type", r.get("graphic_type", "polygon"))).lower(),
                             str(r.get("graphic_type", "POLYGON")).upper())
        if gtype == "POLYGON" and len(pts) >= 3 and not np.allclose(pts[0], pts[-1]):
            pts = np.vstack([pts, pts[:1]])
        need = {"POLYGON": 4, "POLYLINE": 2, "POINT": 1, "MULTIPOINT": 1}.get(gtype, 1)
        if len(pts) < need or not np.all(np.isfinite(pts)):
            raise DicomToolsError(path, f"region {i + 1}: {len(pts)} finite point(s) are too "
                                        f"few for a {gtype.lower()}")
        region = hd.sr.ImageRegion3D(gtype, pts, series.frame_of_reference)
        meas = []
        for key, value in (r.get("measurements") or {}).items():
            if isinstance(value, dict):
                key, value = value.get("name", key), value.get("value")
            k = str(key).lower()
            if k not in MEASUREMENTS:
                raise DicomToolsError(path, f"unknown measurement {key!r}; one of "
                                            f"{', '.join(MEASUREMENTS)}")
            name, unit = MEASUREMENTS[k]
            meas.append(hd.sr.Measurement(name=getattr(codes.SCT, name), value=float(value),
                                          unit=_unit(unit)))
        finding = CodedConcept(*_code(r.get("finding") or "lesion", "type", path))
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=r.get("tracking_uid") or hd.UID(),
                identifier=str(r.get("label") or f"ROI {i + 1}")[:64]),
            referenced_region=region, finding_type=finding, measurements=meas or None))
    observer = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=hd.UID(), name="napari-dicomtools")))
    report = hd.sr.MeasurementReport(observer, procedure_reported=codes.SCT.ImagingProcedure,
                                     imaging_measurements=groups)
    dss, _ = _source_datasets(series)
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


def _image_of(roi) -> tuple[str, int | None]:
    """(ReferencedSOPInstanceUID, frame index or None) of a 2D region's SELECTED FROM item."""
    for it in roi.get("ContentSequence", None) or []:
        for ref in it.get("ReferencedSOPSequence", None) or []:
            frames = ref.get("ReferencedFrameNumber", None)
            if frames is not None and not isinstance(frames, (int, float, str)):
                frames = list(frames)[0] if len(frames) else None
            return (str(ref.get("ReferencedSOPInstanceUID", "")),
                    int(frames) - 1 if frames not in (None, "") else None)
    return ("", None)


def _outline(graphic_type: str, pts: np.ndarray) -> tuple[str, np.ndarray]:
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


def _frames_by_sop(reference) -> dict:
    """SOP Instance UID (and frame index) -> Frame, over the image series given."""
    if reference is None:
        return {}
    if isinstance(reference, (str, os.PathLike)):
        from .series import scan

        reference = scan(os.fspath(reference))
    elif hasattr(reference, "frames"):
        reference = [reference]
    out = {}
    for s in reference:
        if getattr(s, "kind", "IMAGE") != "IMAGE":
            continue
        for f in s.frames:
            out[(f.instance.sop_uid, f.index)] = f
            out.setdefault((f.instance.sop_uid, None), f)
    return out


def _place(points2d: np.ndarray, frame) -> np.ndarray:
    """SCOORD image coordinates (column, row; (0, 0) the top left corner of the top left
    pixel, so the first pixel's centre is (0.5, 0.5)) -> LPS mm on the image's plane."""
    iop = np.asarray(frame.orientation, float)
    dr, dc = (float(v) for v in frame.pixel_spacing)  # row spacing, column spacing
    xy = np.asarray(points2d, float) - 0.5
    return (np.asarray(frame.position, float) + np.outer(xy[:, 0] * dc, iop[:3])
            + np.outer(xy[:, 1] * dr, iop[3:]))


def read_sr(path, reference=None) -> tuple[list[Roi], dict]:
    """The planar ROIs and measurements of a TID 1500 measurement report, in LPS mm.

    Regions in patient coordinates (SCOORD3D) are read as they are; regions in 2D image
    coordinates (SCOORD, as many viewers write them) are placed on the plane of the image
    they were drawn on (its ImagePositionPatient, ImageOrientationPatient and PixelSpacing)
    when that image is among ``reference``. Circles and ellipses become closed polygons.

    Parameters
    ----------
    path : str or os.PathLike
        The SR file.
    reference : Series, list of Series, str or None
        The image series (or a folder of them) in which to find the images of 2D regions.

    Returns
    -------
    (list of Roi, dict)
        The regions, and metadata: ``name``, ``path``, ``frame_of_reference``,
        ``referenced_series_uids``, ``problems`` (2D regions whose image was not found,
        which are not placed).

    Raises
    ------
    DicomToolsError
        Not an SR, or not a TID 1500 measurement report.
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
    rois, problems = [], []
    images = None
    frame_uids = set()
    for g in content.get_planar_roi_measurement_groups():
        roi = g.roi
        if roi is None:
            problems.append(f"region {g.tracking_identifier!r} has no image region "
                            "(a referenced segment or volume); not placed")
            continue
        gtype, pts = _outline(str(roi.graphic_type.value), np.asarray(roi.value, float))
        if not hasattr(roi, "frame_of_reference_uid"):  # SCOORD: on an image
            sop, frame = _image_of(roi)
            images = _frames_by_sop(reference) if images is None else images
            fr = images.get((sop, frame))
            if fr is None or fr.position is None or fr.orientation is None \
                    or fr.pixel_spacing is None:
                why = "is not among the images read" if fr is None else "has no geometry"
                problems.append(f"region {g.tracking_identifier!r} is in 2D coordinates of "
                                f"image {sop} which {why}; not placed")
                continue
            pts = _place(pts, fr)
            frame_uids.add(fr.instance.frame_of_reference)
        else:
            frame_uids.add(str(roi.frame_of_reference_uid))
        meas = [{"name": m.name.meaning, "value": float(m.value), "unit": m.unit.value}
                for m in g.get_measurements()]
        ft = g.finding_type
        rois.append(Roi(label=str(g.tracking_identifier or ""), points=pts,
                        graphic_type=gtype, measurements=meas,
                        finding=ft.meaning if ft is not None else "",
                        tracking_uid=str(g.tracking_uid or "")))
    series_uids = sorted({str(it.get("SeriesInstanceUID", "")) for st in
                          sr.get("CurrentRequestedProcedureEvidenceSequence", None) or []
                          for it in st.get("ReferencedSeriesSequence", None) or []})
    meta = {"name": f"{sr.get('SeriesNumber', '') or ''} "
                    f"{sr.get('SeriesDescription', '') or 'SR'}".strip(),
            "path": name, "frame_of_reference": sorted(frame_uids)[0] if frame_uids else "",
            "referenced_series_uids": series_uids, "problems": problems}
    return rois, meta


def polygon_area_mm2(points) -> float:
    """Area (mm^2) of a planar polygon given by 3D points (closed or not)."""
    p = np.asarray(points, float).reshape(-1, 3)
    if len(p) < 3:
        return 0.0
    cross = np.cross(p, np.roll(p, -1, axis=0)).sum(axis=0)
    return float(0.5 * np.linalg.norm(cross))


def path_length_mm(points) -> float:
    """Length (mm) of a polyline through 3D points."""
    p = np.asarray(points, float).reshape(-1, 3)
    return float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum())
