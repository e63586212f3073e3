"""RT Structure Sets (RTSTRUCT): contours -> labels on an image grid, labels -> contours.

* :func:`read_rtstruct` rasterises each ROI's CLOSED_PLANAR contours onto the grid of the
  image series it references (or a grid of its own, 1 mm pixels by default, when the images
  are absent): a voxel is inside when its centre is inside the polygon, several contours of
  one ROI on one slice combine by the even-odd rule (a contour inside another is a hole), as
  3D Slicer and plastimatch do. The result is a :class:`~.seg.Segmentation` (one label value
  per ROI, its ROINumber; overlapping ROIs in separate arrays) whose metadata also keeps the
  contours in LPS mm.
* :func:`write_rtstruct` writes a label map lying on a reference series' grid as one ROI per
  label value, with contours per slice in patient LPS mm (scikit-image's marching squares at
  the 0.5 level between pixel centres, holes as their own contours), ROI names and colours.

Arrays are ``(slice, row, column)`` as :func:`~.volume.read_volume` gives them for the
reference series.
"""

from __future__ import annotations

import datetime
import os
import warnings

import numpy as np

from . import geometry
from .errors import DicomToolsError, GeometryError, UnreadableDicomError
from .seg import PALETTE, Segment, Segmentation, _pack, pick_reference

__all__ = [
    "read_rtstruct", "write_rtstruct", "slice_contours", "find_reference", "RTSTRUCT_SOP_CLASS",
]


#: SOP Class UID of RT Structure Set Storage
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"


# --------------------------------------------------------------------------------------------
# reading


def _read_rt(path):
    from .headers import open_dicom, safe_dcmread
    from .sources import Source

    src = path if isinstance(path, Source) else Source.from_string(os.fspath(path))
    with open_dicom(src) as (fp, _size, _pre):
        try:
            ds = safe_dcmread(fp, str(src), force=True)
        except DicomToolsError:
            raise
        except Exception as exc:  # noqa: BLE001 - pydicom raises anything on a broken file
            raise UnreadableDicomError(str(src), f"cannot be parsed ({exc})") from None
    sop = str(ds.get("SOPClassUID", "") or "")
    if sop != RTSTRUCT_SOP_CLASS and str(ds.get("Modality", "")) != "RTSTRUCT":
        raise DicomToolsError(str(src), f"not an RT Structure Set (SOP class "
                                        f"{sop or 'missing'})")
    return ds, str(src)


def _rois(ds, name) -> tuple[list[Segment], dict]:
    """The ROI table and, per ROI number, its contours ``[(type, (n, 3) LPS points)]``."""
    interp = {}
    for obs in ds.get("RTROIObservationsSequence", None) or []:
        if "ReferencedROINumber" in obs:
            interp[int(obs.ReferencedROINumber)] = str(obs.get("RTROIInterpretedType", "") or "")
    colors, contours = {}, {}
    for rc in ds.get("ROIContourSequence", None) or []:
        if "ReferencedROINumber" not in rc:
            continue
        num = int(rc.ReferencedROINumber)
        col = rc.get("ROIDisplayColor", None)
        if col is not None and len(col) == 3:
            colors[num] = tuple(int(c) for c in col)
        items = []
        for c in rc.get("ContourSequence", None) or []:
            data = c.get("ContourData", None)
            if not data or len(data) % 3:
                continue
            try:
                pts = np.asarray([float(v) for v in data]).reshape(-1, 3)
            except (TypeError, ValueError):
                raise UnreadableDicomError(name, f"ROI {num}: ContourData is not numeric") \
                    from None
            items.append((str(c.get("ContourGeometricType", "") or "").upper(), pts))
        contours[num] = contours.get(num, []) + items
    segments = []
    for k, roi in enumerate(ds.get("StructureSetROISequence", None) or []):
        if "ROINumber" not in roi:
            continue
        num = int(roi.ROINumber)
        segments.append(Segment(
            number=num, label=str(roi.get("ROIName", "") or f"ROI {num}"),
            category=("", "", ""), type=("", "", interp.get(num, "")),
            color=colors.get(num, PALETTE[k % len(PALETTE)]),
            algorithm_type=str(roi.get("ROIGenerationAlgorithm", "") or ""),
            description=interp.get(num) or None))
    if not segments:
        raise UnreadableDicomError(name, "the structure set has no ROIs "
                                         "(empty StructureSetROISequence)")
    return sorted(segments, key=lambda s: s.number), contours


#: ImageOrientationPatient of the axial, coronal and sagittal planes, by normal axis (LPS)
_PLANES = {2: (1, 0, 0, 0, 1, 0), 1: (1, 0, 0, 0, 0, -1), 0: (0, 1, 0, 0, 0, -1)}


def _own_grid(contours, spacing: float, name):
    """A grid around every closed contour in their (axial, coronal or sagittal) plane:
    ``spacing`` mm pixels, slices on the contour planes."""
    pts = [p for items in contours.values() for t, p in items if t == "CLOSED_PLANAR"]
    normals = []
    for p in pts:
        if len(p) >= 3:
            _, sv, vt = np.linalg.svd(p - p.mean(0))
            if sv[1] > 1e-6:
                normals.append(vt[2])
    axis = int(np.argmax(np.abs(normals[0]))) if normals else 2
    if normals and min(abs(n[axis]) for n in normals) < 0.999:
        raise GeometryError(name, "contours are oblique or in several orientations and no "
                                  "referenced image series was found to define their grid")
    direction = geometry.direction_matrix(_PLANES[axis])  # columns: slice, row, column
    local = np.concatenate(pts) @ direction  # (slice mm, row mm, column mm)
    planes = np.unique(np.round([(p @ direction[:, 0]).mean() for p in pts], 3))
    ds = float(np.min(np.diff(planes))) if len(planes) > 1 else float(spacing)
    k = (planes - planes[0]) / ds
    if np.max(np.abs(k - np.round(k))) > 0.05:
        raise GeometryError(name, "contour planes are not evenly spaced "
                                  f"({np.round(np.diff(planes), 3).tolist()} mm) and no "
                                  "referenced image series was found")
    lo = np.floor(local[:, 1:].min(0) / spacing) * spacing - spacing
    hi = np.ceil(local[:, 1:].max(0) / spacing) * spacing + spacing
    rows, cols = (np.round((hi - lo) / spacing).astype(int) + 1)
    origin = direction @ np.array([planes[0], lo[0], lo[1]])
    shape = (int(round(k[-1])) + 1, int(rows), int(cols))
    return (ds, float(spacing), float(spacing)), origin, direction, shape


def _rasterise(contours, affine_lps, shape, segments, name) -> tuple[dict, list]:
    """Per ROI ``(slice indices, (m, rows, cols) masks)`` by the even-odd rule, and the
    problems found (contours off the planes or outside the image)."""
    from skimage.draw import polygon

    inv = np.linalg.inv(affine_lps)
    masks, problems = {}, []
    for s in segments:
        items = contours.get(s.number, [])
        closed = [p for t, p in items if t == "CLOSED_PLANAR"]
        if not closed:
            if not items:
                problems.append(f"ROI {s.label!r} has no contours")
            continue
        planes: dict[int, np.ndarray] = {}
        edges: dict[int, np.ndarray] = {}
        off = outside = 0
        for pts in closed:
            idx = pts @ inv[:3, :3].T + inv[:3, 3]  # (column, row, slice)
            k = np.round(idx[:, 2])
            if np.ptp(idx[:, 2]) > 0.25 or abs(idx[0, 2] - k[0]) > 0.25:
                off += 1
                continue
            k = int(k[0])
            if not 0 <= k < shape[0]:
                outside += 1
                continue
            rr, cc = polygon(idx[:, 1], idx[:, 0], shape[1:])
            plane = planes.setdefault(k, np.zeros(shape[1:], bool))
            hit = np.zeros(shape[1:], bool)
            hit[rr, cc] = True
            plane ^= hit  # even-odd: a contour inside another is a hole
            on = _centres_on_edges(idx[:, :2], shape[1:])
            if on is not None:
                edges.setdefault(k, np.zeros(shape[1:], bool))[on] = True
        if off:
            problems.append(f"ROI {s.label!r}: {off} contour(s) off the image planes skipped")
        if outside:
            problems.append(f"ROI {s.label!r}: {outside} contour(s) outside the image skipped")
        for k, e in edges.items():
            planes[k] |= e  # contours traced through pixel centres hold those pixels
        if planes:
            ks = sorted(planes)
            masks[s.number] = (np.asarray(ks), np.stack([planes[k] for k in ks]))
    return masks, problems


def _centres_on_edges(xy: np.ndarray, shape: tuple):
    """``(rows, cols)`` of the pixel centres lying exactly on a polygon's edges, when its
    vertices are pixel centres (as contours traced from masks through boundary pixels are,
    e.g. by OpenCV in rt-utils, or by marching over centres); else None.

    Such a contour passes through the centres of the mask's own boundary pixels (of an
    outer border, or around a hole): those pixels belong to the structure, which the
    "centre strictly inside" rule alone would drop (a one-pixel erosion)."""
    v = np.round(xy)
    if len(xy) < 2 or np.max(np.abs(xy - v)) > 1e-4:
        return None
    v = v.astype(np.int64)
    a, b = v, np.roll(v, -1, axis=0)
    d = b - a
    g = np.gcd(np.abs(d[:, 0]), np.abs(d[:, 1]))
    pts = [a]
    for n in np.unique(g[g > 1]):  # lattice points strictly between the two ends
        sel = g == n
        t = np.arange(1, n)[:, None, None]
        pts.append((a[sel][None] + t * (d[sel] // n)[None]).reshape(-1, 2))
    p = np.concatenate(pts)
    ok = (p[:, 0] >= 0) & (p[:, 0] < shape[1]) & (p[:, 1] >= 0) & (p[:, 1] < shape[0])
    return p[ok, 1], p[ok, 0]


def _match_reference(ds, candidates):
    """The image series among ``candidates`` the structure set's contours refer to."""
    series_uids, sops = set(), set()
    for fr in ds.get("ReferencedFrameOfReferenceSequence", None) or []:
        for st in fr.get("RTReferencedStudySequence", None) or []:
            for se in st.get("RTReferencedSeriesSequence", None) or []:
                series_uids.add(str(se.get("SeriesInstanceUID", "")))
                for im in se.get("ContourImageSequence", None) or []:
                    sops.add(str(im.get("ReferencedSOPInstanceUID", "")))
    for rc in ds.get("ROIContourSequence", None) or []:
        for c in rc.get("ContourSequence", None) or []:
            for im in c.get("ContourImageSequence", None) or []:
                sops.add(str(im.get("ReferencedSOPInstanceUID", "")))
    return pick_reference(candidates, series_uids, sops)


def find_reference(path, candidates):
    """The image series an RTSTRUCT refers to among ``candidates``, or None."""
    ds, _ = _read_rt(path)
    return _match_reference(ds, candidates)


def read_rtstruct(path, reference=None, *, spacing: float = 1.0) -> Segmentation:
    """Rasterise an RT Structure Set onto the grid of the image series it references.

    Parameters
    ----------
    path : str or os.PathLike
        The RTSTRUCT file.
    reference : Series, str or None
        The referenced image series (or a folder to find it in). None, or not found: an
        axial grid of ``spacing`` mm pixels around the contours, slices on their planes.
    spacing : float
        Pixel size (mm) of that own grid.

    Returns
    -------
    Segmentation
        ``labels`` hold ROINumbers (overlapping ROIs in separate arrays); ``segments`` the
        ROI names, colours and interpreted types; ``metadata["contours"]`` maps each ROI
        number to its closed contours in LPS mm, ``metadata["problems"]`` lists contours
        that were skipped (off the image planes, outside the image) and ROIs without any.

    Raises
    ------
    DicomToolsError
        Not an RTSTRUCT, no ROIs, no closed contour at all, contours on no regular grid
        when no reference is usable.
    """
    ds, name = _read_rt(path)
    segments, contours = _rois(ds, name)
    if not any(t == "CLOSED_PLANAR" for items in contours.values() for t, _ in items):
        raise DicomToolsError(name, "the structure set holds no closed planar contours: "
                                    "nothing to rasterise")
    ref = None
    if reference is not None:
        if hasattr(reference, "frames"):
            ref = reference
        else:
            from .series import scan

            ref = _match_reference(ds, scan(reference))
            if ref is None:
                warnings.warn(f"{name}: the referenced series is not under {reference}; "
                              "contours rasterised on a grid of their own", stacklevel=2)
    if ref is not None and ref.n_time == 1 and ref.orientation is not None:
        grid = (ref.spacing, ref.origin, ref.direction, (ref.n_slices, ref.rows, ref.columns))
    else:
        grid = _own_grid(contours, float(spacing), name)
        ref = None
    sp, origin, direction, shape = grid
    affine = geometry.affine_lps(sp, origin, direction)
    masks, problems = _rasterise(contours, affine, shape, segments, name)
    for p in problems:
        warnings.warn(f"{name}: {p}", stacklevel=2)
    labels, groups = _pack(masks, shape, max(s.number for s in segments))
    desc = ds.get("StructureSetLabel", "") or ds.get("SeriesDescription", "") or "RTSTRUCT"
    meta = {"name": f"{ds.get('SeriesNumber', '') or ''} {desc}".strip(), "path": name,
            "series_uid": str(ds.get("SeriesInstanceUID", "")),
            "sop_uid": str(ds.get("SOPInstanceUID", "")),
            "frame_of_reference": _frame_of_reference(ds),
            "referenced_series_uid": ref.uid if ref is not None else None,
            "on_reference": ref is not None, "reference_name": ref.name if ref else None,
            "segmentation_type": "RTSTRUCT", "problems": problems,
            "contours": {n: [p for t, p in items if t == "CLOSED_PLANAR"]
                         for n, items in contours.items()}}
    return Segmentation(labels, groups, segments, tuple(float(v) for v in sp),
                        np.asarray(origin, float), np.asarray(direction, float), {}, meta)


def _frame_of_reference(ds) -> str:
    for roi in ds.get("StructureSetROISequence", None) or []:
        uid = roi.get("ReferencedFrameOfReferenceUID", None)
        if uid:
            return str(uid)
    it = (ds.get("ReferencedFrameOfReferenceSequence", None) or [None])[0]
    return str(it.get("FrameOfReferenceUID", "")) if it is not None else ""


# --------------------------------------------------------------------------------------------
# writing


def _ds(value: float) -> str:
    """A DS string of at most 16 characters (0.1 micrometre resolution)."""
    s = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def slice_contours(mask2d) -> list[np.ndarray]:
    """Closed contours ``(n, 2)`` in (row, column) pixel units around the pixels of a 2D
    mask, holes included, at the 0.5 level between pixel centres (marching squares): each
    pixel centre inside the mask is inside an odd number of them."""
    from skimage.measure import find_contours

    padded = np.pad(np.asarray(mask2d, np.uint8), 1)
    out = []
    for c in find_contours(padded, 0.5):
        c = c - 1.0
        if len(c) > 1 and np.allclose(c[0], c[-1]):
            c = c[:-1]
        if len(c) >= 3:
            out.append(c)
    return out


def write_rtstruct(labels, reference, path, *, segments=None, overwrite: bool = False,
                   label: str = "napari-dicomtools", description: str = "Structure set",
                   series_number: int = 301) -> str:
    """Write labels lying on a reference series' grid as an RT Structure Set.

    Parameters
    ----------
    labels : array_like
        ``(slice, row, column)`` integer label map on the reference grid (as
        ``read_volume(reference).array``), or a list of such arrays for overlapping ROIs.
        Each non-zero value becomes one ROI (ROINumber = the value).
    reference : Series or str
        The image series the labels lie on.
    path : str
        Output file; never inside the reference's folder, never overwritten unless
        ``overwrite``.
    segments : mapping, optional
        Per label value a name or a dict with ``label``, ``color`` (sRGB) and
        ``interpreted_type`` (RTROIInterpretedType, e.g. ``ORGAN``, ``GTV``; default empty).

    Returns
    -------
    str
        The path written.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from .. import __version__
    from .safety import atomic_output
    from .seg import _TYPE2_COPIED, _masks_from, _output_reference

    path = os.fspath(path)
    series = _output_reference(reference, path)
    arrays = list(labels) if isinstance(labels, (list, tuple)) else [labels]
    _masks_from(arrays if len(arrays) > 1 else arrays[0], False, series.shape, path)  # checks
    values = sorted({int(v) for a in arrays for v in np.unique(np.asarray(a)) if v != 0})
    if not values:
        raise DicomToolsError(path, "the labels are empty: nothing to write as an RTSTRUCT")
    specs = segments or {}
    first = _header(series.first)
    iop = np.asarray(series.orientation, float)
    row_cos, col_cos = iop[:3], iop[3:]
    ps_row, ps_col = series.pixel_spacing
    frames = series.frames

    ds = Dataset()
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
               "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
               "ReferringPhysicianName", "StudyDescription"):
        if kw in first:
            setattr(ds, kw, first.data_element(kw).value)
        elif kw in _TYPE2_COPIED:
            setattr(ds, kw, "")
    now = datetime.datetime.now()
    ds.SOPClassUID = RTSTRUCT_SOP_CLASS
    ds.SOPInstanceUID = generate_uid()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = int(series_number)
    ds.SeriesDescription = description[:64]
    ds.InstanceNumber = 1
    ds.OperatorsName = ""
    ds.Manufacturer = "napari-dicomtools"
    ds.SoftwareVersions = str(__version__)
    ds.FrameOfReferenceUID = series.frame_of_reference
    ds.PositionReferenceIndicator = ""
    ds.StructureSetLabel = label[:16]
    ds.StructureSetDate = now.strftime("%Y%m%d")
    ds.StructureSetTime = now.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = ds.StructureSetDate, ds.StructureSetTime

    def image_ref(fr) -> Dataset:
        it = Dataset()
        it.ReferencedSOPClassUID = fr.instance.sop_class
        it.ReferencedSOPInstanceUID = fr.instance.sop_uid
        if fr.index is not None:
            it.ReferencedFrameNumber = fr.index + 1
        return it

    rfor = Dataset()
    rfor.FrameOfReferenceUID = series.frame_of_reference
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management
    study.ReferencedSOPInstanceUID = ds.get("StudyInstanceUID", series.first.study_uid)
    se = Dataset()
    se.SeriesInstanceUID = series.first.series_uid
    se.ContourImageSequence = Sequence([image_ref(f) for f in frames])
    study.RTReferencedSeriesSequence = Sequence([se])
    rfor.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([rfor])

    slices_of: dict[int, list[int]] = {v: [] for v in values}
    for k in range(series.n_slices):
        for a in arrays:
            for v in np.unique(np.asarray(a[k])):
                if v:
                    slices_of[int(v)].append(k)
    rois, contours_seq, observations = [], [], []
    for i, v in enumerate(values):
        spec = specs.get(v, specs.get(str(v))) if hasattr(specs, "get") else None
        interp = spec.pop("interpreted_type", "") if isinstance(spec, dict) else ""
        if isinstance(spec, dict):
            spec = {k: spec[k] for k in ("label", "color") if k in spec}
        s = Segment.make(v, spec, path)
        color = s.color or PALETTE[i % len(PALETTE)]
        roi = Dataset()
        roi.ROINumber = v
        roi.ReferencedFrameOfReferenceUID = series.frame_of_reference
        roi.ROIName = s.label[:64]
        roi.ROIGenerationAlgorithm = "MANUAL"
        rois.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber = v
        rc.ROIDisplayColor = [int(c) for c in color]
        items = []
        for k in sorted(set(slices_of[v])):
            m = np.zeros(series.shape[1:], bool)
            for a in arrays:
                m |= np.asarray(a[k]) == v
            pos = np.asarray(frames[k].position, float)
            for c in slice_contours(m):
                # (row, column) -> LPS through this slice's own position (tilt-safe)
                pts = pos + np.outer(c[:, 1] * ps_col, row_cos) + np.outer(c[:, 0] * ps_row,
                                                                           col_cos)
                it = Dataset()
                it.ContourImageSequence = Sequence([image_ref(frames[k])])
                it.ContourGeometricType = "CLOSED_PLANAR"
                it.NumberOfContourPoints = len(pts)
                it.ContourNumber = len(items) + 1
                it.ContourData = [_ds(x) for x in pts.ravel()]
                items.append(it)
        rc.ContourSequence = Sequence(items)
        contours_seq.append(rc)
        ob = Dataset()
        ob.ObservationNumber = v
        ob.ReferencedROINumber = v
        ob.RTROIInterpretedType = str(interp or "").upper()[:16]
        ob.ROIInterpreter = ""
        observations.append(ob)
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(contours_seq)
    ds.RTROIObservationsSequence = Sequence(observations)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    with atomic_output(path, overwrite=overwrite) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def _header(inst):
    from .headers import open_dicom, safe_dcmread

    with open_dicom(inst.source) as (fp, _size, _pre):
        return safe_dcmread(fp, inst.path, stop_before_pixels=True)
