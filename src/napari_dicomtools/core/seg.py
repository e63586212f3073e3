"""DICOM Segmentation (SEG) objects: read them onto an image grid, write labels as SEG.

Reading is ours (pydicom + numpy: the per-frame positions, referenced instances and pixel
frames are placed straight into label arrays); writing goes through highdicom, which builds
the functional groups, references and segment descriptions the standard asks for.

* :func:`read_segmentation` returns a :class:`Segmentation`: label arrays on the grid of the
  image series the SEG references (segment numbers as label values; overlapping segments in
  separate arrays, never silently merged), the segment table (labels, SNOMED CT category and
  type, recommended display colours) and, for a fractional SEG, the fractions in [0, 1]. A
  SEG without its images opens on its own geometry (frame positions and pixel measures).
* :func:`write_seg` writes a label map (or several, for overlapping segments, or fractions)
  lying on a reference series' grid as a SEG that references that series: binary by default,
  fractional on request, only non-empty frames.

Arrays are ``(slice, row, column)`` in the order :func:`~.volume.read_volume` gives for the
reference series (ascending along the slice normal), so ``read_volume(ref).array`` and the
labels share every index.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from . import geometry
from .errors import DicomToolsError, GeometryError, UnreadableDicomError

__all__ = [
    "Segment", "Segmentation", "read_segmentation", "write_seg", "write_labels_nifti",
    "find_reference", "pick_reference", "reference_series", "onto_reference", "SEG_SOP_CLASS",
    "LABELMAP_SEG_SOP_CLASS", "SEG_SOP_CLASSES", "CATEGORIES", "TYPES", "PALETTE",
    "ALGORITHM_TYPES",
]


#: SOP Class UID of the Segmentation Storage IOD
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
#: SOP Class UID of Label Map Segmentation Storage (2024: one frame per position, pixel
#: values are segment numbers)
LABELMAP_SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.7"
SEG_SOP_CLASSES = (SEG_SOP_CLASS, LABELMAP_SEG_SOP_CLASS)


# --------------------------------------------------------------------------------------------
# coded concepts: a short list (SNOMED CT, CID 7150 categories / CID 7151 types)

def _sct(name: str) -> tuple[str, str, str]:
    from pydicom.sr.codedict import codes

    c = getattr(codes.SCT, name)
    return (str(c.value), str(c.scheme_designator), str(c.meaning))


#: category keyword -> pydicom ``codes.SCT`` name
CATEGORIES = {
    "tissue": "Tissue",
    "anatomical structure": "AnatomicalStructure",
    "morphologically abnormal structure": "MorphologicallyAbnormalStructure",
    "physical object": "PhysicalObject",
}

#: type keyword -> (pydicom ``codes.SCT`` name, category keyword)
TYPES = {
    "tissue": ("Tissue", "tissue"), "fat": ("Fat", "tissue"), "muscle": ("Muscle", "tissue"),
    "bone": ("Bone", "tissue"), "edema": ("Edema", "tissue"), "necrosis": ("Necrosis", "tissue"),
    "organ": ("Organ", "anatomical structure"), "liver": ("Liver", "anatomical structure"),
    "lung": ("Lung", "anatomical structure"), "kidney": ("Kidney", "anatomical structure"),
    "heart": ("Heart", "anatomical structure"), "brain": ("Brain", "anatomical structure"),
    "spleen": ("Spleen", "anatomical structure"),
    "pancreas": ("Pancreas", "anatomical structure"),
    "prostate": ("Prostate", "anatomical structure"),
    "bladder": ("Bladder", "anatomical structure"),
    "aorta": ("Aorta", "anatomical structure"),
    "blood vessel": ("BloodVessel", "anatomical structure"),
    "vertebra": ("Vertebra", "anatomical structure"),
    "spinal cord": ("SpinalCord", "anatomical structure"),
    "lesion": ("Lesion", "morphologically abnormal structure"),
    "neoplasm": ("Neoplasm", "morphologically abnormal structure"),
    "nodule": ("Nodule", "morphologically abnormal structure"),
    "mass": ("Mass", "morphologically abnormal structure"),
    "cyst": ("Cyst", "morphologically abnormal structure"),
    "metastasis": ("Metastasis", "morphologically abnormal structure"),
    "hemorrhage": ("Hemorrhage", "morphologically abnormal structure"),
    "physical object": ("PhysicalObject", "physical object"),
}

#: display colours (sRGB) of segments that name none: the first entries of 3D Slicer's
#: GenericColors table
PALETTE = [(128, 174, 128), (241, 214, 145), (177, 122, 101), (111, 184, 210),
           (216, 101, 79), (221, 130, 101), (144, 238, 144), (192, 104, 88),
           (220, 245, 20), (78, 63, 0), (255, 250, 220), (230, 220, 70)]

ALGORITHM_TYPES = ("MANUAL", "SEMIAUTOMATIC", "AUTOMATIC")


def _code(value, what: str, path=None) -> tuple[str, str, str]:
    """A coded concept from a keyword of the short list or ``(value, scheme, meaning)``."""
    if isinstance(value, str):
        key = value.strip().lower().replace("_", " ")
        table = CATEGORIES if what == "category" else {k: v[0] for k, v in TYPES.items()}
        if key not in table:
            raise DicomToolsError(path, f"unknown segment {what} {value!r}; choose one of "
                                        f"{', '.join(sorted(table))} or give "
                                        "(code value, scheme, meaning)")
        return _sct(table[key])
    try:
        v, scheme, meaning = (str(x) for x in value)
    except (TypeError, ValueError):
        raise DicomToolsError(path, f"segment {what} must be a keyword or (code value, "
                                    f"scheme, meaning), got {value!r}") from None
    return (v, scheme, meaning)


@dataclass
class Segment:
    """One row of a SEG's segment table.

    Attributes
    ----------
    number : int
        SegmentNumber (the label value in the arrays).
    label : str
        SegmentLabel, e.g. ``"liver"``.
    category, type : (code value, coding scheme, code meaning)
        SegmentedPropertyCategory/TypeCodeSequence (SNOMED CT, e.g. ``("10200004", "SCT",
        "Liver")``).
    color : (int, int, int) or None
        Recommended display colour, sRGB 0-255 (stored as CIELab in the file).
    algorithm_type : str
        MANUAL, SEMIAUTOMATIC or AUTOMATIC.
    algorithm_name : str or None
        SegmentAlgorithmName (required unless MANUAL).
    """

    number: int
    label: str
    category: tuple = ("85756007", "SCT", "Tissue")
    type: tuple = ("85756007", "SCT", "Tissue")
    color: tuple | None = None
    algorithm_type: str = "MANUAL"
    algorithm_name: str | None = None
    description: str | None = None

    @classmethod
    def make(cls, number: int, spec=None, path=None) -> Segment:
        """A segment from a name, a dict of fields (``type`` may be a keyword such as
        ``"liver"``, which also picks its category), a :class:`Segment`, or None."""
        if isinstance(spec, Segment):
            return Segment(**{**spec.__dict__, "number": int(number)})
        if spec is None or isinstance(spec, str):
            known = isinstance(spec, str) and spec.strip().lower().replace("_", " ") in TYPES
            spec = {"label": spec, "type": spec if known else None}
        if not isinstance(spec, Mapping):
            raise DicomToolsError(path, f"segment {number}: expected a name or a dict of "
                                        f"fields, got {spec!r}")
        unknown = set(spec) - {"label", "category", "type", "color", "algorithm_type",
                               "algorithm_name", "description"}
        if unknown:
            raise DicomToolsError(path, f"segment {number}: unknown field(s) "
                                        f"{', '.join(sorted(unknown))}")
        typ = spec.get("type")
        cat = spec.get("category")
        if cat is None and isinstance(typ, str):
            key = typ.strip().lower().replace("_", " ")
            cat = TYPES[key][1] if key in TYPES else None
        label = spec.get("label") or (typ if isinstance(typ, str) else f"Segment {number}")
        algo = str(spec.get("algorithm_type") or "MANUAL").upper()
        if algo not in ALGORITHM_TYPES:
            raise DicomToolsError(path, f"segment {number}: algorithm type {algo!r} is not "
                                        f"one of {', '.join(ALGORITHM_TYPES)}")
        color = spec.get("color")
        if color is not None:
            color = tuple(int(round(float(c) * 255)) if isinstance(c, float) and c <= 1.0
                          else int(c) for c in tuple(color)[:3])
        return cls(number=int(number), label=str(label),
                   category=_code(cat or "tissue", "category", path),
                   type=_code(typ or "tissue", "type", path), color=color,
                   algorithm_type=algo, algorithm_name=spec.get("algorithm_name"),
                   description=spec.get("description"))

    def to_dict(self) -> dict:
        """Plain fields (lists, not tuples) for ``layer.metadata``; ``Segment.make(n, d)``
        reads them back."""
        d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}
        d.pop("number")
        return d

    def as_row(self) -> dict:
        """Plain values for a table (napari ``features``, CSV)."""
        return {"index": self.number, "label": self.label, "category": self.category[2],
                "type": self.type[2], "type_code": f"{self.type[1]}:{self.type[0]}",
                "algorithm": self.algorithm_type, "color": self.color}


# --------------------------------------------------------------------------------------------
# reading


@dataclass
class Segmentation:
    """What :func:`read_segmentation` found: label arrays in patient geometry.

    Attributes
    ----------
    labels : list of numpy.ndarray
        ``(slice, row, column)`` label arrays, segment numbers as values. One array unless
        segments overlap: then each array holds a group of segments that do not.
    groups : list of list of int
        The segment numbers held by each array of ``labels``.
    segments : list of Segment
        The segment table, in SegmentNumber order.
    spacing, origin, direction :
        The grid, as in :class:`~.volume.Volume`: ``(slice, row, column)`` mm, LPS of voxel
        ``(0, 0, 0)``, columns the LPS unit vectors of the array axes.
    fractions : dict
        Fractional SEG only: segment number -> float32 array in [0, 1] (``labels`` then hold
        the voxels >= 0.5).
    metadata : dict
        ``name``, ``path``, ``series_uid``, ``referenced_series_uid``, ``on_reference``
        (True when placed on a reference series' grid), ``segmentation_type``,
        ``problems``.
    """

    labels: list
    groups: list
    segments: list
    spacing: tuple
    origin: np.ndarray
    direction: np.ndarray
    fractions: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        return tuple(self.labels[0].shape)

    @property
    def affine_lps(self) -> np.ndarray:
        """4x4: voxel ``(column, row, slice)`` -> LPS mm."""
        return geometry.affine_lps(self.spacing, self.origin, self.direction)

    @property
    def affine_ras(self) -> np.ndarray:
        return geometry.affine_ras(self.spacing, self.origin, self.direction)

    def segment(self, number: int) -> Segment:
        for s in self.segments:
            if s.number == number:
                return s
        raise KeyError(number)

    def mask(self, number: int) -> np.ndarray:
        """Boolean mask of one segment."""
        for arr, group in zip(self.labels, self.groups, strict=True):
            if number in group:
                return arr == number
        raise KeyError(number)

    def __repr__(self) -> str:
        return (f"<Segmentation {self.metadata.get('name', '')!r} {self.shape} "
                f"{len(self.segments)} segment(s) in {len(self.labels)} array(s)>")


def _item(seq_parent, kw):
    seq = getattr(seq_parent, kw, None) if seq_parent is not None else None
    return seq[0] if seq else None


def _fg(per_frame, shared, seq_kw):
    """A functional group macro item: per-frame first, shared otherwise."""
    return _item(per_frame, seq_kw) or _item(shared, seq_kw)


def _lab_to_rgb(lab) -> tuple | None:
    try:
        from highdicom.color import CIELabColor

        return tuple(int(v) for v in CIELabColor.from_dicom_value(
            tuple(int(x) for x in lab)).to_rgb())
    except Exception:  # noqa: BLE001 - a malformed colour is no reason to refuse the SEG
        return None


def _code_of(item) -> tuple:
    if item is None:
        return ("", "", "")
    return (str(item.get("CodeValue", "") or item.get("LongCodeValue", "") or ""),
            str(item.get("CodingSchemeDesignator", "") or ""),
            str(item.get("CodeMeaning", "") or ""))


def _segments_of(ds, path) -> list[Segment]:
    out = []
    for item in ds.get("SegmentSequence", None) or []:
        num = item.get("SegmentNumber", None)
        if num is None:
            raise UnreadableDicomError(path, "a segment has no SegmentNumber")
        lab = item.get("RecommendedDisplayCIELabValue", None)
        out.append(Segment(
            number=int(num), label=str(item.get("SegmentLabel", "") or f"Segment {num}"),
            category=_code_of(_item(item, "SegmentedPropertyCategoryCodeSequence")),
            type=_code_of(_item(item, "SegmentedPropertyTypeCodeSequence")),
            color=_lab_to_rgb(lab) if lab is not None else None,
            algorithm_type=str(item.get("SegmentAlgorithmType", "") or ""),
            algorithm_name=item.get("SegmentAlgorithmName", None),
            description=item.get("SegmentDescription", None)))
    if not out:
        raise UnreadableDicomError(path, "SEG has no segments (empty SegmentSequence)")
    return sorted(out, key=lambda s: s.number)


def _pixel_frames(ds, path, n: int, rows: int, cols: int) -> np.ndarray:
    """``(n, rows, cols)`` frames: 0/1 (BINARY), stored fractions (uint8) or segment
    numbers (LABELMAP, uint8 or uint16)."""
    bits = int(ds.get("BitsAllocated", 1) or 1)
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    native = ts in ("", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
    need = n * rows * cols
    if native and "PixelData" in ds and bits in (1, 8, 16):
        raw = np.frombuffer(ds.PixelData, "<u2" if bits == 16 else np.uint8)
        have = raw.size * 8 if bits == 1 else raw.size
        if have < need:
            raise UnreadableDicomError(path, f"truncated: Pixel Data holds {have:,} values "
                                             f"but {n} frame(s) of {rows}x{cols} need "
                                             f"{need:,}")
        if bits == 1:  # frames are packed back to back, not byte-aligned
            raw = np.unpackbits(raw[:(need + 7) // 8], bitorder="little")
        return raw[:need].reshape(n, rows, cols)
    try:
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - decoders raise anything on a broken file
        raise UnreadableDicomError(path, f"SEG pixel data cannot be decoded ({exc})") from None
    return np.asarray(arr, np.uint16 if bits == 16 else np.uint8).reshape(n, rows, cols)


@dataclass
class _SegFrames:
    """Per-frame facts of a SEG, in file order."""

    segment: np.ndarray  # ReferencedSegmentNumber per frame
    positions: np.ndarray | None  # (n, 3) ImagePositionPatient, None when any is missing
    orientation: tuple | None
    pixel_spacing: tuple | None
    spacing_between: float | None
    thickness: float | None
    per_frame: list  # the PerFrameFunctionalGroupsSequence items

    def sources(self, i: int) -> list:
        """``[(ReferencedSOPInstanceUID, ReferencedFrameNumber or None)]`` of frame ``i``
        (parsed only when positions cannot place the frames: nested sequences are slow)."""
        refs = []
        for der in self.per_frame[i].get("DerivationImageSequence", None) or []:
            for src in der.get("SourceImageSequence", None) or []:
                fn = src.get("ReferencedFrameNumber", None)
                if fn is not None and not isinstance(fn, (int, str)):
                    fn = fn[0] if len(fn) else None
                refs.append((str(src.get("ReferencedSOPInstanceUID", "")),
                             int(fn) if fn else None))
        return refs


_IPP = b"\x20\x00\x32\x00DS"  # (0020,0032) ImagePositionPatient, explicit VR LE
_SEGNUM = b"\x62\x00\x0b\x00US\x02\x00"  # (0062,000B) ReferencedSegmentNumber, 2 bytes
_POSITION_SQ, _SEGMENT_SQ, _ORIENTATION_SQ = 0x00209113, 0x0062000A, 0x00209116


def _fast_frame_facts(ds, per, labelmap: bool):
    """(segment number, ImagePositionPatient) of every frame read straight from the raw
    bytes of each per-frame item's Plane Position and Segment Identification sequences,
    which pydicom would otherwise parse into data sets frame by frame (a few ms each); None
    when the file is not explicit VR little endian, a frame has its own orientation, or
    anything is not exactly where it should be (the caller then reads them with pydicom)."""
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if ts != "1.2.840.10008.1.2.1" or not per:
        return None
    n = len(per)
    segs = np.zeros(n, np.int64)
    pos = np.zeros((n, 3))
    try:
        for i, item in enumerate(per):
            if _ORIENTATION_SQ in item:
                return None
            raw = item.get_item(_POSITION_SQ)
            data = getattr(raw, "value", None)
            if not isinstance(data, bytes) or data.count(_IPP) != 1:
                return None
            k = data.index(_IPP) + 6
            length = int.from_bytes(data[k:k + 2], "little")
            pos[i] = [float(v) for v in data[k + 2:k + 2 + length].split(b"\\")]
            if labelmap:
                continue
            raw = item.get_item(_SEGMENT_SQ)
            data = getattr(raw, "value", None)
            if not isinstance(data, bytes) or data.count(_SEGNUM) != 1:
                return None
            k = data.index(_SEGNUM) + 8
            segs[i] = int.from_bytes(data[k:k + 2], "little")
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return segs, pos


def _frames_of_seg(ds, path, labelmap: bool = False) -> _SegFrames:
    """Per-frame facts; a LABELMAP SEG's frames hold every segment (segment 0 here)."""
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per = ds.get("PerFrameFunctionalGroupsSequence", None) or []
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if len(per) != n:
        raise UnreadableDicomError(path, f"{len(per)} per-frame functional group item(s) "
                                         f"for {n} frame(s)")
    segs = np.zeros(n, np.int64)
    pos = np.zeros((n, 3))
    have_pos = True
    orients = set()
    fast = _fast_frame_facts(ds, per, labelmap)
    if fast is not None:  # the same facts from the raw bytes of each item
        segs, pos = fast
        po = _item(shared, "PlaneOrientationSequence")
        if po is not None and "ImageOrientationPatient" in po:
            orients.add(tuple(round(float(v), 4) for v in po.ImageOrientationPatient))
        per_fr = []
    else:
        per_fr = per
    for i, fr in enumerate(per_fr):
        ident = _fg(fr, shared, "SegmentIdentificationSequence")
        if labelmap:
            pass
        elif ident is None or "ReferencedSegmentNumber" not in ident:
            raise UnreadableDicomError(path, f"frame {i + 1} names no segment "
                                             "(SegmentIdentificationSequence)")
        else:
            segs[i] = int(ident.ReferencedSegmentNumber)
        pp = _fg(fr, shared, "PlanePositionSequence")
        if pp is not None and "ImagePositionPatient" in pp and len(pp.ImagePositionPatient) == 3:
            pos[i] = [float(v) for v in pp.ImagePositionPatient]
        else:
            have_pos = False
        po = _fg(fr, shared, "PlaneOrientationSequence")
        if po is not None and "ImageOrientationPatient" in po:
            orients.add(tuple(round(float(v), 4) for v in po.ImageOrientationPatient))
    if len(orients) > 1:
        raise GeometryError(path, f"frames have {len(orients)} different orientations; "
                                  "a SEG over one plane orientation is expected")
    pm = _fg(None, shared, "PixelMeasuresSequence")
    if pm is None and per:
        pm = _item(per[0], "PixelMeasuresSequence")
    ps = tuple(float(v) for v in pm.PixelSpacing) if pm is not None and \
        "PixelSpacing" in pm else None
    sb = float(pm.SpacingBetweenSlices) if pm is not None and \
        pm.get("SpacingBetweenSlices", None) else None
    th = float(pm.SliceThickness) if pm is not None and pm.get("SliceThickness", None) else None
    return _SegFrames(segs, pos if have_pos and n else None,
                      next(iter(orients)) if orients else None, ps, sb, th, per)


def _own_grid(fr: _SegFrames, path) -> tuple[np.ndarray, tuple, np.ndarray, np.ndarray]:
    """Slice index per frame, spacing, origin and direction from the SEG's own geometry."""
    if fr.positions is None or fr.orientation is None or fr.pixel_spacing is None:
        raise GeometryError(path, "SEG frames carry no complete plane position/orientation/"
                                  "pixel spacing and no referenced series was found to "
                                  "place them on")
    normal = geometry.slice_normal(fr.orientation)
    d = fr.positions @ normal
    planes = np.unique(np.round(d, 3))
    if len(planes) > 1:
        diffs = np.diff(planes)
        step = fr.spacing_between if fr.spacing_between else float(diffs.min())
        k = (planes - planes[0]) / step
        if step <= 0 or np.max(np.abs(k - np.round(k))) > 0.05:
            step = float(diffs.min())
            k = (planes - planes[0]) / step
        if np.max(np.abs(k - np.round(k))) > 0.05:
            raise GeometryError(path, "SEG frame positions are not on a regular grid of "
                                      f"slices (distances {np.round(diffs, 3).tolist()} mm)")
    else:
        step = fr.spacing_between or fr.thickness or 1.0
    index = np.round((d - planes[0]) / step).astype(int)
    # every plane must share one in-plane origin (no tilt/shear in a SEG's own grid)
    first = fr.positions[np.argmin(d)]
    inplane = fr.positions - first - np.outer(d - d.min(), normal)
    if np.max(np.abs(inplane)) > 0.01 * min(fr.pixel_spacing) + 1e-3:
        raise GeometryError(path, "SEG frames do not share one in-plane origin (sheared "
                                  "stack); cannot place them on a grid")
    spacing = (float(step), float(fr.pixel_spacing[0]), float(fr.pixel_spacing[1]))
    return index, spacing, np.asarray(first, float), geometry.direction_matrix(fr.orientation)


def _on_reference(fr: _SegFrames, ref, rows: int, cols: int) -> tuple[np.ndarray | None, str]:
    """Slice index of each SEG frame in the reference series, or (None, why not)."""
    if ref.n_time > 1:
        return None, "the referenced series is 4D"
    if (ref.rows, ref.columns) != (rows, cols):
        return None, (f"SEG frames are {rows}x{cols}, the series {ref.name!r} "
                      f"{ref.rows}x{ref.columns}")
    by_sop = {(f.instance.sop_uid, None if f.index is None else f.index + 1): k
              for k, f in enumerate(ref.frames)}
    n = len(fr.segment)
    out = np.full(n, -1)
    if fr.positions is not None and ref.orientation is not None and fr.orientation is not None:
        if not np.allclose(fr.orientation, ref.orientation, atol=1e-3):
            return None, "SEG orientation differs from the referenced series'"
        if fr.pixel_spacing is not None and not np.allclose(fr.pixel_spacing,
                                                            ref.pixel_spacing, rtol=1e-3):
            return None, "SEG pixel spacing differs from the referenced series'"
        ref_pos = np.array([np.asarray(f.position, float) for f in ref.frames])
        normal = geometry.slice_normal(ref.orientation)
        rd = ref_pos @ normal
        order = np.argsort(rd)
        j = np.clip(np.searchsorted(rd[order], fr.positions @ normal), 1, len(rd) - 1) \
            if len(rd) > 1 else np.zeros(n, int)
        cand = np.stack([order[j - 1], order[j]], 1) if len(rd) > 1 else order[j][:, None]
        dist = np.linalg.norm(ref_pos[cand] - fr.positions[:, None, :], axis=2)
        best = cand[np.arange(n), np.argmin(dist, axis=1)]
        tol = 0.05 * min(ref.pixel_spacing)
        ok = dist.min(axis=1) <= tol
        if not ok.all():
            i = int(np.argmin(ok))
            return None, (f"frame {i + 1} at {np.round(fr.positions[i], 2).tolist()} mm lies "
                          "on no slice of the referenced series")
        return best, ""
    for i in range(n):
        for uid, fnum in fr.sources(i):
            k = by_sop.get((uid, fnum), by_sop.get((uid, None)))
            if k is not None:
                out[i] = k
                break
        else:
            return None, f"frame {i + 1} references no image of the series {ref.name!r}"
    return out, ""


def find_reference(seg_path, candidates) -> object | None:
    """The image series a SEG refers to among ``candidates`` (:class:`~.series.Series`):
    the one named in ReferencedSeriesSequence, else one holding a referenced SOP instance."""
    ds = _read_seg_header(seg_path)
    return _match_reference(ds, candidates)


def _match_reference(ds, candidates):
    uids = {str(it.get("SeriesInstanceUID", "")) for it in
            ds.get("ReferencedSeriesSequence", None) or []}
    sops = set()
    for it in ds.get("ReferencedSeriesSequence", None) or []:
        for inst in it.get("ReferencedInstanceSequence", None) or []:
            sops.add(str(inst.get("ReferencedSOPInstanceUID", "")))
    return pick_reference(candidates, uids, sops)


def pick_reference(candidates, series_uids: set, sop_uids: set):
    """The image series among ``candidates`` named by SeriesInstanceUID, else the first one
    holding one of the SOP instances; None when there is none."""
    images = [s for s in candidates if getattr(s, "kind", "IMAGE") == "IMAGE"]
    for s in images:
        if s.uid in series_uids or s.first.series_uid in series_uids:
            return s
    for s in images:
        if sop_uids & {f.instance.sop_uid for f in s.frames}:
            return s
    return None


def _read_seg_header(path):
    return _read_seg(path, pixels=False)[0]


def _read_seg(path, pixels: bool = True):
    """The SEG data set (with or without Pixel Data) and its name; refuses other objects."""
    from .headers import open_dicom, safe_dcmread
    from .sources import Source

    src = path if isinstance(path, Source) else Source.from_string(path)
    with open_dicom(src) as (fp, _size, _pre):
        try:
            ds = safe_dcmread(fp, str(src), stop_before_pixels=not pixels)
            ds.get("PixelData", None)  # read a deferred value while the file is open
        except DicomToolsError:
            raise
        except Exception as exc:  # noqa: BLE001 - pydicom raises anything on a broken file
            raise UnreadableDicomError(str(src), f"cannot be parsed ({exc})") from None
    sop = str(ds.get("SOPClassUID", "") or "")
    if sop not in SEG_SOP_CLASSES:
        raise DicomToolsError(str(src), f"not a DICOM SEG (SOP class {sop or 'missing'})")
    return ds, str(src)


def read_segmentation(path, reference=None) -> Segmentation:
    """Read a DICOM SEG into label arrays on the grid of the series it references.

    Parameters
    ----------
    path : str, os.PathLike or Series
        The SEG file (or ``archive.zip::member``), or the :class:`~.series.Series` scan made
        of it.
    reference : Series, str or None
        The referenced image series, or a folder/file to find it in (``scan``); None: the
        SEG is placed on its own geometry (its frame positions and pixel measures), which
        overlays the images in patient millimetres all the same.

    Returns
    -------
    Segmentation

    Raises
    ------
    DicomToolsError
        Not a SEG, truncated, frames that name no segment, frames on no regular grid when
        no reference is usable: the message names the file and the reason.

    Examples
    --------
    >>> seg = read_segmentation("seg.dcm", reference="ct/")          # doctest: +SKIP
    >>> seg.labels[0].shape, [s.label for s in seg.segments]         # doctest: +SKIP
    """
    from .sources import Source

    if hasattr(path, "frames") and hasattr(path, "first"):
        path = path.first.source
    ds, name = _read_seg(path if isinstance(path, Source) else os.fspath(path))
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if not rows or not cols:
        raise UnreadableDicomError(name, f"invalid frame size Rows={rows} Columns={cols}")
    segments = _segments_of(ds, name)
    seg_type = str(ds.get("SegmentationType", "BINARY") or "BINARY").upper()
    labelmap = seg_type == "LABELMAP" or str(ds.get("SOPClassUID", "")) == \
        LABELMAP_SEG_SOP_CLASS
    if labelmap:  # segment 0 of a label map is its background: label value 0 here
        segments = [s for s in segments if s.number != 0]
        if not segments:
            raise UnreadableDicomError(name, "the label map SEG describes only its "
                                             "background (segment 0)")
    fr = _frames_of_seg(ds, name, labelmap)
    known = {s.number for s in segments}
    bad = sorted(set(fr.segment.tolist()) - known - ({0} if labelmap else set()))
    if bad:
        raise UnreadableDicomError(name, f"frames reference segment(s) {bad} that the "
                                         "segment table does not describe")
    pix = _pixel_frames(ds, name, n, rows, cols)
    problems = []
    if labelmap:
        stray = sorted(set(np.unique(pix).tolist()) - known - {0})
        if stray:
            problems.append(f"pixel values {stray[:5]} name no segment; left out")
            warnings.warn(f"{name}: {problems[-1]}", stacklevel=2)
    elif seg_type != "FRACTIONAL" and int(ds.get("BitsAllocated", 1) or 1) != 1:
        pix = (pix != 0).view(np.uint8)  # a binary SEG stored in bytes: any non-zero is in
    ref = _resolve_reference(reference, ds, name) if reference is not None else None
    index = None
    if ref is not None:
        index, why = _on_reference(fr, ref, rows, cols)
        if index is None:
            problems.append(f"not placed on {ref.name!r}: {why}; shown on the SEG's own "
                            "geometry")
            warnings.warn(f"{name}: {problems[-1]}", stacklevel=2)
    placed = index is not None
    if placed:
        shape = (ref.n_slices, rows, cols)
        spacing, origin, direction = ref.spacing, ref.origin, ref.direction
    else:
        if n == 0:
            raise UnreadableDicomError(name, "SEG has no frames")
        index, spacing, origin, direction = _own_grid(fr, name)
        shape = (int(index.max()) + 1, rows, cols)
    maxval = float(ds.get("MaximumFractionalValue", 255) or 255)
    fractions = {}
    masks = {}
    for s in segments:
        if labelmap:
            masks[s.number] = (index, pix == s.number)
            continue
        sel = np.flatnonzero(fr.segment == s.number)
        if len(sel) and sel[-1] - sel[0] == len(sel) - 1:
            sel = slice(int(sel[0]), int(sel[-1]) + 1)  # a view of the frames, no copy
        if seg_type == "FRACTIONAL":
            f = np.zeros(shape, np.float32)
            f[index[sel]] = pix[sel] / np.float32(maxval)
            fractions[s.number] = f
            masks[s.number] = (index[sel], pix[sel] >= maxval / 2.0)
        else:
            masks[s.number] = (index[sel], pix[sel].view(bool))  # 0/1 bytes
    labels, groups = _pack(masks, shape, max(known))
    meta = {"name": f"{ds.get('SeriesNumber', '') or ''} "
                    f"{ds.get('SeriesDescription', '') or 'SEG'}".strip(),
            "path": name, "series_uid": str(ds.get("SeriesInstanceUID", "")),
            "sop_uid": str(ds.get("SOPInstanceUID", "")),
            "frame_of_reference": str(ds.get("FrameOfReferenceUID", "")),
            "referenced_series_uid": _referenced_series_uid(ds),
            "on_reference": placed, "reference_name": ref.name if placed else None,
            "segmentation_type": seg_type, "problems": problems}
    return Segmentation(labels, groups, segments, tuple(float(v) for v in spacing),
                        np.asarray(origin, float), np.asarray(direction, float),
                        fractions, meta)


def _referenced_series_uid(ds) -> str | None:
    it = _item(ds, "ReferencedSeriesSequence")
    return str(it.get("SeriesInstanceUID", "")) if it is not None else None


def _resolve_reference(reference, ds, name):
    if hasattr(reference, "frames") and hasattr(reference, "first"):
        return reference
    from .series import scan

    found = scan(reference)
    ref = _match_reference(ds, found)
    if ref is None:
        warnings.warn(f"{name}: the referenced series is not under {reference}; shown on "
                      "the SEG's own geometry", stacklevel=3)
    return ref


def _pack(masks: dict, shape: tuple, max_number: int) -> tuple[list, list]:
    """Segments into as few label arrays as keep them from overlapping (first fit)."""
    dtype = np.uint8 if max_number < 256 else np.uint16
    labels, groups = [], []
    for number, (idx, frames) in masks.items():
        for arr, group in zip(labels, groups, strict=True):
            view = _slab(arr, idx)
            if not np.any((view if view is not None else arr[idx])[frames]):
                _or_into(arr, idx, frames, number)
                group.append(number)
                break
        else:
            arr = np.zeros(shape, dtype)
            _or_into(arr, idx, frames, number)
            labels.append(arr)
            groups.append([number])
    if not labels:
        labels, groups = [np.zeros(shape, dtype)], [[]]
    return labels, groups


def _slab(arr, idx):
    """A view of the slices ``idx`` of ``arr`` when they are consecutive and ascending (the
    usual frame order), else None."""
    if len(idx) and idx[-1] - idx[0] == len(idx) - 1 and np.all(np.diff(idx) == 1):
        return arr[idx[0]:idx[-1] + 1]
    return None


def _or_into(arr, idx, frames, number) -> None:
    view = _slab(arr, idx)
    if view is not None:  # in place, no copy of the slices
        np.putmask(view, frames, number)
        return
    if len(np.unique(idx)) == len(idx):  # one frame per slice: one vectorised update
        sub = arr[idx]
        sub[frames] = number
        arr[idx] = sub
        return
    for k, f in zip(idx.tolist(), frames, strict=True):
        arr[k][f] = number


# --------------------------------------------------------------------------------------------
# writing


def reference_series(reference):
    """The single-volume image :class:`~.series.Series` a new SEG/RTSTRUCT/SR will reference.

    Parameters
    ----------
    reference : Series, str or os.PathLike
        A series, or a path holding exactly one image series.

    Returns
    -------
    Series

    Raises
    ------
    DicomToolsError
        The path holds no image series or several, or the series is 4D or has no patient
        geometry (position, orientation, Frame of Reference).
    """
    if hasattr(reference, "frames") and hasattr(reference, "first"):
        series = reference
    else:
        from .series import scan

        found = [s for s in scan(reference) if getattr(s, "kind", "IMAGE") == "IMAGE"]
        if not found:
            raise DicomToolsError(reference, "holds no image series to reference")
        if len(found) > 1:
            raise DicomToolsError(reference, f"holds {len(found)} image series ("
                                  + "; ".join(s.name for s in found[:5])
                                  + "); point --reference at one series' folder")
        series = found[0]
    if series.n_time > 1:
        raise DicomToolsError(series.first.path, "the reference is a 4D series; a SEG "
                                                 "references one volume")
    if series.orientation is None or not series.frame_of_reference:
        raise DicomToolsError(series.first.path, "the reference series has no patient "
                                                 "geometry (position/orientation/Frame of "
                                                 "Reference); a SEG cannot be placed on it")
    return series


#: patient/study attributes a SEG copies from its source and must carry (Type 2)
_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                 "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName")


def _output_reference(reference, path: str):
    """The reference :class:`~.series.Series` of an object written to ``path``, refusing an
    output inside the folder of any of its files (sources are never written)."""
    from .safety import refuse_inside_source

    series = reference_series(reference)
    for f in series.files:
        refuse_inside_source(path, f.split("::")[0])
    return series


def _like(first, frame):
    """The first slice's header standing for another single-frame slice of its series."""
    from pydicom.dataset import Dataset
    from pydicom.valuerep import DSfloat

    def ds(values):
        return [DSfloat(float(v), auto_format=True) for v in values]

    out = Dataset(dict(first.items()))  # a new element dict, sharing unmodified elements
    inst = frame.instance
    # new elements (add_new), never assignments: those would change the shared ones
    for kw, vr, value in (("SOPClassUID", "UI", inst.sop_class),
                          ("SOPInstanceUID", "UI", inst.sop_uid),
                          ("InstanceNumber", "IS", inst.instance_number),
                          ("ImagePositionPatient", "DS", ds(frame.position)),
                          ("ImageOrientationPatient", "DS", ds(frame.orientation)),
                          ("PixelSpacing", "DS", ds(frame.pixel_spacing))):
        if value is not None:
            out.add_new(kw, vr, value)
    for kw in ("SliceLocation", "AcquisitionNumber", "ContentTime", "AcquisitionTime"):
        if kw in out:
            del out[kw]  # per-slice values that are not this slice's
    return out


def _source_datasets(series) -> tuple[list, list | None]:
    """Reference headers in the order highdicom expects, and the frame order to apply.

    Single-frame images: one data set per slice, in slice order. One multi-frame image:
    that data set, and the slice index of each of its frames (frame order)."""
    import pydicom

    from .headers import open_dicom, safe_dcmread

    insts = []
    for f in series.frames:
        if not insts or insts[-1] is not f.instance:
            insts.append(f.instance)
    unique = list({id(i): i for i in insts}.values())
    dss = []
    for k, inst in enumerate(unique):
        if k and len(unique) == len(series.frames):
            # one single-frame file per slice: what highdicom takes from each source (SOP
            # class/instance, plane position, orientation, pixel spacing) scan() has
            # already read; the modules it copies come from the first header
            dss.append(_like(dss[0], series.frames[k]))
            continue
        if inst.source.member is None and inst.transfer_syntax != "1.2.840.10008.1.2.1.99":
            # scan() saw the file: not deflated, so pydicom reads just the header
            ds = pydicom.dcmread(inst.path, stop_before_pixels=True, force=True)
        else:
            with open_dicom(inst.source) as (fp, _size, _pre):
                ds = safe_dcmread(fp, inst.path, stop_before_pixels=True)
        for kw in _TYPE2_COPIED:  # Type 2 in the SEG: empty when the source lacks them
            if kw not in ds:
                setattr(ds, kw, "")
        dss.append(ds)
    if len(unique) == 1 and series.frames[0].index is not None:
        order = [None] * len(series.frames)
        for k, f in enumerate(series.frames):
            order[f.index] = k
        if any(o is None for o in order) or len(order) != unique[0].n_frames:
            raise DicomToolsError(unique[0].path, "the multi-frame reference has frames that "
                                                  "are not part of the volume; cannot "
                                                  "reference it frame by frame")
        return dss, order
    if any(f.index is not None for f in series.frames):
        raise DicomToolsError(series.first.path, "a reference made of several multi-frame "
                                                 "files is not supported")
    return dss, None


def _values(a: np.ndarray) -> set:
    """The non-zero values of a label array (sorting only the labelled voxels: fast when, as
    usual, most of the volume is background)."""
    return {int(v) for v in np.unique(a[a != 0])}


def _masks_from(labels, fractional: bool, shape, path) -> tuple[list, np.ndarray]:
    """(segment values, pixels): a ``(slice, row, column)`` label map with values 1..N, or
    ``(segments, slice, row, column)`` masks/fractions when segments overlap or are
    fractional."""
    if fractional:
        arr = np.asarray(labels, np.float32)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[1:] != tuple(shape):
            raise DicomToolsError(path, f"fractions have shape {arr.shape}; expected "
                                        f"(segments,) + {tuple(shape)} on the reference grid")
        if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
            raise DicomToolsError(path, "fractions must be finite values in [0, 1]")
        return list(range(1, arr.shape[0] + 1)), arr
    arrays = list(labels) if isinstance(labels, (list, tuple)) else [labels]
    arrays = [np.asarray(a) for a in arrays]
    for a in arrays:
        if a.shape != tuple(shape):
            raise DicomToolsError(path, f"labels have shape {a.shape} but the reference "
                                        f"series is {tuple(shape)} (slice, row, column): "
                                        "labels must lie on the reference series' grid")
        if a.dtype.kind not in "iub":
            raise DicomToolsError(path, f"labels must be integers, got {a.dtype} (use "
                                        "fractional=True for fractions)")
    per_array = [_values(a) for a in arrays]
    values = sorted(set().union(*per_array))
    if any(v < 0 for v in values):
        raise DicomToolsError(path, "labels must not be negative")
    if len(arrays) == 1:  # one label map: passed as such (segment numbers 1..N as values)
        if values == list(range(1, len(values) + 1)):
            return values, arrays[0]
        lut = np.zeros(max(values) + 1, np.uint16 if len(values) > 255 else np.uint8)
        lut[values] = np.arange(1, len(values) + 1)
        return values, lut[arrays[0]]
    seen: set = set()
    for vals in per_array:
        if vals & seen:
            raise DicomToolsError(path, f"label value(s) {sorted(vals & seen)} appear in "
                                        "more than one array")
        seen |= vals
    masks = np.zeros((len(values),) + tuple(shape), bool)
    for i, v in enumerate(values):
        for a in arrays:
            masks[i] |= a == v
    return values, masks


def write_seg(labels, reference, path, *, segments=None, fractional: bool = False,
              overwrite: bool = False, description: str = "Segmentation",
              series_number: int = 300, content_label: str = "SEGMENTATION",
              creator: str | None = None) -> str:
    """Write labels lying on a reference series' grid as a DICOM SEG referencing it.

    Parameters
    ----------
    labels : array_like or list of array_like
        ``(slice, row, column)`` integer label map on the reference grid (as
        ``read_volume(reference).array``): each non-zero value is one segment. A list of
        such arrays holds overlapping segments (values unique across arrays). With
        ``fractional``: floats in [0, 1], ``(slice, row, column)`` for one segment or
        ``(segments, slice, row, column)``.
    reference : Series or str
        The image series (or its folder/file) the labels were made on.
    path : str
        Output ``.dcm`` file; never inside the reference's folder, never overwritten unless
        ``overwrite``.
    segments : mapping or sequence, optional
        Per label value (mapping) or in value order (sequence): a name, a dict with
        ``label``, ``type`` (keyword of :data:`TYPES`, e.g. ``"liver"``, or ``(value,
        scheme, meaning)``), ``category``, ``color`` (sRGB), ``algorithm_type``,
        ``algorithm_name``; or a :class:`Segment`. Default: "Segment <n>", Tissue.
    fractional : bool
        Write a FRACTIONAL (PROBABILITY) SEG instead of BINARY.

    Returns
    -------
    str
        The path written.

    Notes
    -----
    Segment numbers must run 1, 2, ... (PS3.3 C.8.20.2); other label values are renumbered
    in order and a warning says so. Frames that are empty for a segment are not stored.
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    from .safety import atomic_output

    path = os.fspath(path)
    series = _output_reference(reference, path)
    values, masks = _masks_from(labels, fractional, series.shape, path)
    if not values or not np.any(masks):
        raise DicomToolsError(path, "the labels are empty: nothing to write as a SEG")
    if values != list(range(1, len(values) + 1)):
        warnings.warn(f"{path}: label values {values[:8]} renumbered as segments 1.."
                      f"{len(values)} (SEG segment numbers run from 1 without gaps)",
                      stacklevel=2)
    specs = segments or {}
    descs = []
    table = []
    for i, v in enumerate(values):
        if isinstance(specs, Mapping):
            spec = specs.get(v, specs.get(str(v)))
        else:
            spec = specs[i] if i < len(specs) else None
        s = Segment.make(i + 1, spec, path)
        if s.color is None:
            s.color = PALETTE[i % len(PALETTE)]
        if s.algorithm_type != "MANUAL" and not s.algorithm_name:
            s.algorithm_name = "napari-dicomtools"
        table.append(s)
        descs.append(_description(hd, s))
    dss, order = _source_datasets(series)
    if masks.ndim == 3:  # a label map: highdicom splits it into segments itself
        pixels = masks if masks.dtype in (np.uint8, np.uint16) else masks.astype(
            np.uint8 if len(values) < 256 else np.uint16)
    else:
        pixels = np.moveaxis(masks, 0, -1)  # (frames, rows, cols, segments)
        pixels = (np.round(pixels * 255).astype(np.uint8) / np.float32(255) if fractional
                  else pixels.astype(np.uint8))
    if order is not None:
        pixels = pixels[order]
    from .. import __version__

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # highdicom's notes on optional content
        seg = hd.seg.Segmentation(
            source_images=dss, pixel_array=pixels,
            segmentation_type="FRACTIONAL" if fractional else "BINARY",
            segment_descriptions=descs, series_instance_uid=generate_uid(),
            series_number=int(series_number), sop_instance_uid=generate_uid(),
            instance_number=1, manufacturer="napari-dicomtools",
            manufacturer_model_name="napari-dicomtools",
            software_versions=str(__version__), device_serial_number="0",
            content_description=description[:64] if description else None,
            content_label=content_label, content_creator_name=creator,
            series_description=description[:64] if description else None,
            omit_empty_frames=True)
    with atomic_output(path, overwrite=overwrite) as tmp:
        seg.save_as(tmp)
    return path


def _description(hd, s: Segment):
    from highdicom.color import CIELabColor
    from highdicom.sr.coding import CodedConcept

    algo = None
    if s.algorithm_type != "MANUAL":
        from .. import __version__

        algo = hd.AlgorithmIdentificationSequence(
            name=s.algorithm_name or "napari-dicomtools", version=str(__version__),
            family=CodedConcept("123109", "DCM", "Manual Processing")
            if s.algorithm_type == "SEMIAUTOMATIC" else
            CodedConcept("123110", "DCM", "Artificial Intelligence"))
    return hd.seg.SegmentDescription(
        segment_number=s.number, segment_label=s.label[:64],
        segmented_property_category=CodedConcept(*s.category),
        segmented_property_type=CodedConcept(*s.type), algorithm_type=s.algorithm_type,
        algorithm_identification=algo,
        display_color=CIELabColor.from_rgb(*s.color) if s.color else None)


# --------------------------------------------------------------------------------------------
# labels from elsewhere (NIfTI) onto a reference grid


def onto_reference(array, affine_ras, reference, path=None) -> np.ndarray:
    """A NIfTI-style array (voxel ``(i, j, k)``, RAS ``affine_ras``) as ``(slice, row,
    column)`` on the reference series' grid, when it lies on that grid in any axis order or
    flip (as nnU-Net, ITK or ``dicomtools convert`` write it). No resampling: labels on
    another grid are refused with the reason.

    Parameters
    ----------
    array : array_like
        3D (labels) or 4D with the segments last (fractions, as NIfTI stores them).
    affine_ras : (4, 4) array_like
    reference : Series
    """
    series = reference_series(reference)
    arr = np.asarray(array)
    if arr.ndim not in (3, 4):
        raise DicomToolsError(path, f"expected a 3D (or 4D, segments last) image, got "
                                    f"{arr.ndim}D")
    ref = geometry.affine_ras(series.spacing, series.origin, series.direction)
    m = np.linalg.inv(ref) @ np.asarray(affine_ras, float)  # input voxel -> reference voxel
    r = np.round(m[:3, :3])
    ok = np.allclose(m[:3, :3], r, atol=1e-3) and np.all(np.abs(r).sum(0) == 1) \
        and np.all(np.abs(r).sum(1) == 1)
    if not ok or not np.allclose(m[:3, 3], np.round(m[:3, 3]), atol=1e-2):
        raise DicomToolsError(path, f"the labels are not on the grid of {series.name!r} "
                                    "(different voxel size, orientation or origin); "
                                    "resample them onto the reference first")
    perm = [int(np.flatnonzero(r[a])[0]) for a in range(3)]  # reference axis a <- input axis
    out = np.transpose(arr, perm + ([3] if arr.ndim == 4 else []))
    offset = np.round(m[:3, 3]).astype(int)
    for a in range(3):
        if r[a, perm[a]] < 0:
            out = np.flip(out, a)
            offset[a] -= out.shape[a] - 1
    want = (series.columns, series.rows, series.n_slices)  # (column, row, slice)
    if np.any(offset != 0) or tuple(out.shape[:3]) != want:
        raise DicomToolsError(path, f"the labels ({'x'.join(map(str, arr.shape[:3]))}) do "
                                    f"not cover the grid of {series.name!r} "
                                    f"({'x'.join(map(str, want))}) exactly")
    out = np.transpose(out, (2, 1, 0) + ((3,) if arr.ndim == 4 else ()))
    return np.ascontiguousarray(np.moveaxis(out, 3, 0) if out.ndim == 4 else out)


def write_labels_nifti(seg, path, *, overwrite: bool = False) -> list[str]:
    """Write a read SEG's (or RTSTRUCT's) label arrays as NIfTI, segment numbers as values.

    ``path`` holds the first group of non-overlapping segments, ``<stem>_2.nii[.gz]``,
    ``<stem>_3``... the next ones (``seg.groups``), each with ``seg.affine_ras``. Nothing is
    printed: ``seg.metadata["problems"]`` says what the caller may want to report.

    Returns
    -------
    list of str
        The files written, in the order of ``seg.groups``.
    """
    from .nifti import write_layer_nifti_affine

    path = os.fspath(path)
    base = path[:-7] if path.lower().endswith(".nii.gz") else path[:-4]
    ext = path[len(base):]
    return [write_layer_nifti_affine(path if k == 0 else f"{base}_{k + 1}{ext}", arr,
                                     seg.affine_ras, overwrite=overwrite)
            for k, arr in enumerate(seg.labels)]
