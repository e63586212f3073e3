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
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import geometry
from ._dicomobj import (
    TYPE2_COPIED,
    SliceMasks,
    instance_header,
    masks_from,
    output_reference,
    pack,
    pick_reference,
    read_object,
)
from .errors import DicomToolsError, GeometryError, UnreadableDicomError
from .seg import PALETTE, Segment, Segmentation

if TYPE_CHECKING:
    from pydicom import Dataset

    from .headers import Frame
    from .series import Series
    from .sources import Source

__all__ = [
    "read_rtstruct", "write_rtstruct", "slice_contours", "find_reference", "RTSTRUCT_SOP_CLASS",
]


#: SOP Class UID of RT Structure Set Storage
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"

#: per ROI number, its contours: (ContourGeometricType, (n, 3) LPS mm points)
_Contours = dict[int, list[tuple[str, npt.NDArray[np.float64]]]]


# --------------------------------------------------------------------------------------------
# reading


def _is_rtstruct(ds: Dataset) -> bool:
    return (str(ds.get("SOPClassUID", "") or "") == RTSTRUCT_SOP_CLASS
            or str(ds.get("Modality", "")) == "RTSTRUCT")


def _read_rt(path: Source | os.PathLike[str] | str) -> tuple[Dataset, str]:
    return read_object(path, _is_rtstruct, "an RT Structure Set", force=True)


def _interpreted_types(ds: Dataset) -> dict[int, str]:
    """RTROIInterpretedType per ROI number."""
    interp = {}
    for obs in ds.get("RTROIObservationsSequence", None) or []:
        if "ReferencedROINumber" in obs:
            interp[int(obs.ReferencedROINumber)] = str(obs.get("RTROIInterpretedType", "") or "")
    return interp


def _contours_of(ds: Dataset, name: str) -> tuple[_Contours, dict[int, tuple[int, int, int]]]:
    """Per ROI number its contours ``[(type, (n, 3) LPS points)]`` and display colour."""
    colors: dict[int, tuple[int, int, int]] = {}
    contours: _Contours = {}
    for rc in ds.get("ROIContourSequence", None) or []:
        if "ReferencedROINumber" not in rc:
            continue
        num = int(rc.ReferencedROINumber)
        col = rc.get("ROIDisplayColor", None)
        if col is not None and len(col) == 3:
            colors[num] = (int(col[0]), int(col[1]), int(col[2]))
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
    return contours, colors


def _rois(ds: Dataset, name: str) -> tuple[list[Segment], _Contours]:
    """The ROI table and, per ROI number, its contours ``[(type, (n, 3) LPS points)]``."""
    interp = _interpreted_types(ds)
    contours, colors = _contours_of(ds, name)
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

#: a grid: (slice, row, column) spacing mm, origin, direction, shape
_GridSpec = tuple[tuple[float, float, float], npt.NDArray[np.float64], npt.NDArray[np.float64],
                  tuple[int, int, int]]


def _own_grid(contours: _Contours, spacing: float, name: str) -> _GridSpec:
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


def _rasterise(contours: _Contours, affine_lps: npt.NDArray[np.float64],
               shape: tuple[int, int, int], segments: list[Segment]
               ) -> tuple[dict[int, SliceMasks], list[str]]:
    """Per ROI ``(slice indices, (m, rows, cols) masks)`` by the even-odd rule, and the
    problems found (contours off the planes or outside the image)."""
    inv = np.linalg.inv(affine_lps)
    masks: dict[int, SliceMasks] = {}
    problems: list[str] = []
    for s in segments:
        items = contours.get(s.number, [])
        closed = [p for t, p in items if t == "CLOSED_PLANAR"]
        if not closed:
            if not items:
                problems.append(f"ROI {s.label!r} has no contours")
            continue
        planes, off, outside = _roi_planes(closed, inv, shape)
        if off:
            problems.append(f"ROI {s.label!r}: {off} contour(s) off the image planes skipped")
        if outside:
            problems.append(f"ROI {s.label!r}: {outside} contour(s) outside the image skipped")
        if planes:
            ks = sorted(planes)
            masks[s.number] = (np.asarray(ks, np.intp), np.stack([planes[k] for k in ks]))
    return masks, problems


def _roi_planes(closed: list[npt.NDArray[np.float64]], inv: npt.NDArray[np.floating[Any]],
                shape: tuple[int, int, int]
                ) -> tuple[dict[int, npt.NDArray[np.bool_]], int, int]:
    """One ROI's closed contours as a mask per slice (even-odd rule, plus the pixel centres
    its edges pass through), and how many contours lay off the planes / outside."""
    from skimage.draw import polygon

    planes: dict[int, npt.NDArray[np.bool_]] = {}
    edges: dict[int, npt.NDArray[np.bool_]] = {}
    off = outside = 0
    for pts in closed:
        idx = pts @ inv[:3, :3].T + inv[:3, 3]  # (column, row, slice)
        k0 = np.round(idx[:, 2])
        if np.ptp(idx[:, 2]) > 0.25 or abs(idx[0, 2] - k0[0]) > 0.25:
            off += 1
            continue
        k = int(k0[0])
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
    for k, e in edges.items():
        planes[k] |= e  # contours traced through pixel centres hold those pixels
    return planes, off, outside


def _centres_on_edges(xy: npt.NDArray[np.float64], shape: tuple[int, int]
                      ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]] | None:
    """``(rows, cols)`` of the pixel centres lying exactly on a polygon's edges, when its
    vertices are pixel centres (as contours traced from masks through boundary pixels are,
    e.g. by OpenCV in rt-utils, or by marching over centres); else None.

    Such a contour passes through the centres of the mask's own boundary pixels (of an
    outer border, or around a hole): those pixels belong to the structure, which the
    "centre strictly inside" rule alone would drop (a one-pixel erosion)."""
    v = np.round(xy)
    if len(xy) < 2 or np.max(np.abs(xy - v)) > 1e-4:
        return None
    a = v.astype(np.int64)
    b = np.roll(a, -1, axis=0)
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


def _match_reference(ds: Dataset, candidates: Iterable[Series]) -> Series | None:
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


def find_reference(path: Source | os.PathLike[str] | str,
                   candidates: Iterable[Series]) -> Series | None:
    """The image series an RT Structure Set refers to among ``candidates``.

    Parameters
    ----------
    path : str, os.PathLike or Source
        The RTSTRUCT file (or a zip member).
    candidates : iterable of Series
        Series from :func:`~napari_dicomtools.core.series.scan`.

    Returns
    -------
    Series or None
        The image series named in its RT Referenced Series, else one holding an image its
        contours name; None when no candidate is referenced.

    Raises
    ------
    DicomToolsError
        ``path`` is unreadable or not an RT Structure Set.

    Examples
    --------
    >>> import tempfile
    >>> from napari_dicomtools.core.series import scan
    >>> from napari_dicomtools.core.synthetic import write_series
    >>> tmp = tempfile.mkdtemp()
    >>> _ = write_series(tmp + "/ct", np.zeros((2, 4, 4), np.int16), description="CT")
    >>> rt = write_rtstruct(np.ones((2, 4, 4), np.uint8), tmp + "/ct", tmp + "/rt.dcm")
    >>> find_reference(rt, scan(tmp)).description
    'CT'
    """
    ds, _ = _read_rt(path)
    return _match_reference(ds, candidates)


def _grid_of(ds: Dataset, name: str, contours: _Contours,
             reference: Series | os.PathLike[str] | str | None,
             spacing: float) -> tuple[_GridSpec, Series | None]:
    """The grid to rasterise on: the reference series' when there is one, else a grid of
    the contours' own; and that reference (None: the own grid)."""
    from .series import Series, scan

    ref = None
    if isinstance(reference, Series):
        ref = reference
    elif reference is not None:
        ref = _match_reference(ds, scan(reference))
        if ref is None:
            warnings.warn(f"{name}: the referenced series is not under {reference}; "
                          "contours rasterised on a grid of their own", stacklevel=3)
    if ref is not None and ref.n_time == 1 and ref.orientation is not None:
        return (ref.spacing, ref.origin, ref.direction,
                (ref.n_slices, ref.rows, ref.columns)), ref
    return _own_grid(contours, float(spacing), name), None


def read_rtstruct(path: Source | os.PathLike[str] | str,
                  reference: Series | os.PathLike[str] | str | None = None, *,
                  spacing: float = 1.0) -> Segmentation:
    """Rasterise an RT Structure Set onto the grid of the image series it references.

    Parameters
    ----------
    path : str, os.PathLike or Source
        The RTSTRUCT file.
    reference : Series, str, os.PathLike or None
        The referenced image series (or a folder to find it in). None, or not found: an
        axial (or coronal, sagittal: the contours' plane) grid of ``spacing`` mm pixels
        around the contours, slices on their planes.
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

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> seg = read_rtstruct(get_testdata_file("rtstruct.dcm"))  # no images: its own grid
    >>> [s.label for s in seg.segments], seg.spacing
    (['patient', 'Isocenter 1', 'Isocenter 2'], (10.0, 1.0, 1.0))
    """
    ds, name = _read_rt(path)
    segments, contours = _rois(ds, name)
    if not any(t == "CLOSED_PLANAR" for items in contours.values() for t, _ in items):
        raise DicomToolsError(name, "the structure set holds no closed planar contours: "
                                    "nothing to rasterise")
    (sp, origin, direction, shape), ref = _grid_of(ds, name, contours, reference, spacing)
    masks, problems = _rasterise(contours, geometry.affine_lps(sp, origin, direction), shape,
                                 segments)
    for p in problems:
        warnings.warn(f"{name}: {p}", stacklevel=2)
    labels, groups = pack(masks, shape, max(s.number for s in segments))
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
    return Segmentation(labels, groups, segments, (float(sp[0]), float(sp[1]), float(sp[2])),
                        np.asarray(origin, float), np.asarray(direction, float), {}, meta)


def _frame_of_reference(ds: Dataset) -> str:
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


def slice_contours(mask2d: npt.ArrayLike) -> list[npt.NDArray[np.float64]]:
    """Closed contours around the pixels of a 2D mask, holes included.

    Marching squares at the 0.5 level between pixel centres (scikit-image's
    ``find_contours`` on the zero-padded mask): each pixel centre inside the mask is inside
    an odd number of the contours, each one outside inside an even number.

    Parameters
    ----------
    mask2d : array_like
        ``(rows, columns)`` mask (non-zero: inside).

    Returns
    -------
    list of numpy.ndarray
        ``(n, 2)`` (row, column) vertices in pixel units, each contour closed implicitly
        (the last vertex is not repeated), at least 3 vertices.

    Examples
    --------
    >>> m = np.zeros((3, 3), bool)
    >>> m[1, 1] = True  # one pixel: a diamond around its centre
    >>> [c.tolist() for c in slice_contours(m)]
    [[[1.5, 1.0], [1.0, 0.5], [0.5, 1.0], [1.0, 1.5]]]
    """
    from skimage.measure import find_contours

    padded = np.pad(np.asarray(mask2d).astype(np.uint8), 1)
    out = []
    for c in find_contours(padded, 0.5):
        c = c - 1.0
        if len(c) > 1 and np.allclose(c[0], c[-1]):
            c = c[:-1]
        if len(c) >= 3:
            out.append(c)
    return out


def _structure_set(first: Dataset, series: Series, label: str, description: str,
                   series_number: int) -> Dataset:
    """A new RTSTRUCT data set: the patient and study of ``first`` (a reference header), a
    new series and instance, the structure set's label and date."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    from .. import __version__

    ds = Dataset()
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
               "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
               "ReferringPhysicianName", "StudyDescription"):
        if kw in first:
            setattr(ds, kw, first[kw].value)
        elif kw in TYPE2_COPIED:
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
    return ds


def _image_ref(fr: Frame) -> Dataset:
    """A Contour Image Sequence item: the image (and frame) a contour lies on."""
    from pydicom.dataset import Dataset

    it = Dataset()
    it.ReferencedSOPClassUID = fr.instance.sop_class
    it.ReferencedSOPInstanceUID = fr.instance.sop_uid
    if fr.index is not None:
        it.ReferencedFrameNumber = fr.index + 1
    return it


def _referenced_frame_of_reference(series: Series, study_uid: str) -> Dataset:
    """The Referenced Frame of Reference item: the reference series and all its images."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    rfor = Dataset()
    rfor.FrameOfReferenceUID = series.frame_of_reference
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management
    study.ReferencedSOPInstanceUID = study_uid
    se = Dataset()
    se.SeriesInstanceUID = series.first.series_uid
    se.ContourImageSequence = DicomSequence([_image_ref(f) for f in series.frames])
    study.RTReferencedSeriesSequence = DicomSequence([se])
    rfor.RTReferencedStudySequence = DicomSequence([study])
    return rfor


def _roi_spec(specs: Mapping[int | str, Any] | None, value: int,
              path: str) -> tuple[Segment, str]:
    """The segment (name, colour) and RTROIInterpretedType of label ``value``."""
    spec = specs.get(value, specs.get(str(value))) if isinstance(specs, Mapping) else None
    interp = ""
    if isinstance(spec, Mapping):
        interp = str(spec.get("interpreted_type", "") or "")
        spec = {k: spec[k] for k in ("label", "color") if k in spec}
    return Segment.make(value, spec, path), interp


def _contour_items(mask: npt.NDArray[np.bool_], frame: Frame, series: Series,
                   first_number: int) -> list[Dataset]:
    """Contour Sequence items of one slice's mask, in LPS mm through this slice's own
    position (tilt-safe), numbered from ``first_number``."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    iop = np.asarray(series.orientation, float)
    row_cos, col_cos = iop[:3], iop[3:]
    ps_row, ps_col = series.pixel_spacing
    pos = np.asarray(frame.position, float)
    items: list[Dataset] = []
    for c in slice_contours(mask):
        # (row, column) -> LPS
        pts = pos + np.outer(c[:, 1] * ps_col, row_cos) + np.outer(c[:, 0] * ps_row, col_cos)
        it = Dataset()
        it.ContourImageSequence = DicomSequence([_image_ref(frame)])
        it.ContourGeometricType = "CLOSED_PLANAR"
        it.NumberOfContourPoints = len(pts)
        it.ContourNumber = first_number + len(items)
        it.ContourData = [_ds(x) for x in pts.ravel()]
        items.append(it)
    return items


def _roi(value: int, index: int, specs: Mapping[int | str, Any] | None, series: Series,
         arrays: list[npt.NDArray[Any]], slices: list[int],
         path: str) -> tuple[Dataset, Dataset, Dataset]:
    """One label value as its StructureSetROI, ROIContour and RTROIObservations items."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    s, interp = _roi_spec(specs, value, path)
    roi = Dataset()
    roi.ROINumber = value
    roi.ReferencedFrameOfReferenceUID = series.frame_of_reference
    roi.ROIName = s.label[:64]
    roi.ROIGenerationAlgorithm = "MANUAL"
    rc = Dataset()
    rc.ReferencedROINumber = value
    rc.ROIDisplayColor = [int(c) for c in s.color or PALETTE[index % len(PALETTE)]]
    items: list[Dataset] = []
    for k in slices:
        m = np.zeros(series.shape[1:], bool)
        for a in arrays:
            m |= np.asarray(a[k]) == value
        items += _contour_items(m, series.frames[k], series, len(items) + 1)
    rc.ContourSequence = DicomSequence(items)
    ob = Dataset()
    ob.ObservationNumber = value
    ob.ReferencedROINumber = value
    ob.RTROIInterpretedType = interp.upper()[:16]
    ob.ROIInterpreter = ""
    return roi, rc, ob


def _slices_of(arrays: list[npt.NDArray[Any]], n_slices: int) -> dict[int, list[int]]:
    """The slices each non-zero label value is on, ascending."""
    out: dict[int, list[int]] = {}
    for k in range(n_slices):
        for v in sorted({int(v) for a in arrays for v in np.unique(a[k]) if v}):
            out.setdefault(v, []).append(k)
    return out


def write_rtstruct(labels: npt.ArrayLike | Sequence[npt.ArrayLike],
                   reference: Series | os.PathLike[str] | str, path: os.PathLike[str] | str,
                   *, segments: Mapping[int | str, Any] | None = None,
                   overwrite: bool = False, label: str = "napari-dicomtools",
                   description: str = "Structure set", series_number: int = 301) -> str:
    """Write labels lying on a reference series' grid as an RT Structure Set.

    Each label value becomes one ROI (ROINumber = the value) with, per slice, closed planar
    contours in patient LPS mm around its pixels (holes as their own contours, see
    :func:`slice_contours`).

    Parameters
    ----------
    labels : array_like or list of array_like
        ``(slice, row, column)`` integer label map on the reference grid (as
        ``read_volume(reference).array``), or a list of such arrays for overlapping ROIs.
    reference : Series, str or os.PathLike
        The image series the labels lie on.
    path : str or os.PathLike
        Output file; never inside the reference's folder.
    segments : mapping, optional
        Per label value a name or a dict with ``label``, ``color`` (sRGB) and
        ``interpreted_type`` (RTROIInterpretedType, e.g. ``ORGAN``, ``GTV``; default empty).
    overwrite : bool
        Replace an existing ``path``; by default it is refused.
    label : str
        StructureSetLabel (16 characters at most).
    description : str
        SeriesDescription (64 characters at most).
    series_number : int
        SeriesNumber of the new series.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    DicomToolsError
        The labels are empty, not integers or not on the reference grid, the reference is
        not one image volume with patient geometry, ``path`` is inside the reference's
        folder or exists.

    Examples
    --------
    >>> import tempfile
    >>> import pydicom
    >>> from napari_dicomtools.core.synthetic import write_series
    >>> tmp = tempfile.mkdtemp()
    >>> _ = write_series(tmp + "/ct", np.zeros((3, 4, 4), np.int16))
    >>> labels = np.zeros((3, 4, 4), np.uint8)
    >>> labels[1, 1:3, 1:3] = 5
    >>> out = write_rtstruct(labels, tmp + "/ct", tmp + "/rt.dcm",
    ...                      segments={5: {"label": "GTV", "interpreted_type": "GTV"}})
    >>> ds = pydicom.dcmread(out)
    >>> [(int(r.ROINumber), r.ROIName) for r in ds.StructureSetROISequence]
    [(5, 'GTV')]
    >>> len(ds.ROIContourSequence[0].ContourSequence)  # one contour, on slice 1
    1
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import ExplicitVRLittleEndian

    from .safety import atomic_output

    path = os.fspath(path)
    series = output_reference(reference, path)
    arrays = [np.asarray(a) for a in (labels if isinstance(labels, (list, tuple)) else [labels])]
    masks_from(arrays, False, series.shape, path)  # shape and dtype checks
    slices = _slices_of(arrays, series.n_slices)
    if not slices:
        raise DicomToolsError(path, "the labels are empty: nothing to write as an RTSTRUCT")
    ds = _structure_set(instance_header(series.first), series, label, description,
                        series_number)
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([_referenced_frame_of_reference(
        series, ds.get("StudyInstanceUID", series.first.study_uid))])
    rois = [_roi(v, i, segments, series, arrays, slices[v], path)
            for i, v in enumerate(sorted(slices))]
    ds.StructureSetROISequence = DicomSequence([r[0] for r in rois])
    ds.ROIContourSequence = DicomSequence([r[1] for r in rois])
    ds.RTROIObservationsSequence = DicomSequence([r[2] for r in rois])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    with atomic_output(path, overwrite=overwrite) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path
