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

Segment categories and types may be given as keywords of a short SNOMED CT list:
``CATEGORIES`` (keyword -> pydicom ``codes.SCT`` name: tissue, anatomical structure,
morphologically abnormal structure, physical object) and ``TYPES`` (keyword -> (``codes.SCT``
name, category keyword): liver, lung, lesion, ...); a type keyword also picks its category.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from . import geometry
from ._dicomobj import (
    CATEGORIES,
    TYPES,
    Code,
    LabelArray,
    SliceMasks,
    code,
    keyword,
    masks_from,
    output_reference,
    pack,
    pick_reference,
    read_object,
    reference_series,
    source_datasets,
)
from .errors import DicomToolsError, GeometryError, UnreadableDicomError

if TYPE_CHECKING:
    from types import ModuleType

    from highdicom.seg import SegmentDescription
    from pydicom import Dataset

    from .series import Series
    from .sources import Source

__all__ = [
    "Segment", "Segmentation", "read_segmentation", "write_seg", "write_labels_nifti",
    "find_reference", "reference_series", "onto_reference", "SEG_SOP_CLASS",
    "LABELMAP_SEG_SOP_CLASS", "SEG_SOP_CLASSES", "CATEGORIES", "TYPES", "PALETTE",
    "ALGORITHM_TYPES",
]


#: SOP Class UID of the Segmentation Storage IOD
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
#: SOP Class UID of Label Map Segmentation Storage (2024: one frame per position, pixel
#: values are segment numbers)
LABELMAP_SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.7"
#: both SEG SOP classes :func:`read_segmentation` reads
SEG_SOP_CLASSES = (SEG_SOP_CLASS, LABELMAP_SEG_SOP_CLASS)

#: display colours (sRGB) of segments that name none: the first entries of 3D Slicer's
#: GenericColors table
PALETTE = [(128, 174, 128), (241, 214, 145), (177, 122, 101), (111, 184, 210),
           (216, 101, 79), (221, 130, 101), (144, 238, 144), (192, 104, 88),
           (220, 245, 20), (78, 63, 0), (255, 250, 220), (230, 220, 70)]

#: SegmentAlgorithmType values
ALGORITHM_TYPES = ("MANUAL", "SEMIAUTOMATIC", "AUTOMATIC")

_TISSUE = ("85756007", "SCT", "Tissue")
_FIELDS = {"label", "category", "type", "color", "algorithm_type", "algorithm_name",
           "description"}


def _rgb(color: Iterable[float], number: int, path: str | None) -> tuple[int, int, int]:
    """sRGB 0-255 from 0-255 values or floats in [0, 1] (as colour pickers give them)."""
    v = [int(round(float(c) * 255)) if isinstance(c, float) and c <= 1.0 else int(c)
         for c in tuple(color)[:3]]
    if len(v) != 3:
        raise DicomToolsError(path, f"segment {number}: a colour is 3 values (R, G, B), "
                                    f"got {color!r}")
    return v[0], v[1], v[2]


@dataclass
class Segment:
    """One row of a SEG's segment table (or one ROI of an RT Structure Set).

    Parameters
    ----------
    number : int
        SegmentNumber (the label value in the arrays).
    label : str
        SegmentLabel, e.g. ``"liver"``.
    category : (str, str, str)
        SegmentedPropertyCategoryCodeSequence as (code value, coding scheme, code meaning),
        SNOMED CT Tissue by default.
    type : (str, str, str)
        SegmentedPropertyTypeCodeSequence, e.g. ``("10200004", "SCT", "Liver")``.
    color : (int, int, int) or None
        Recommended display colour, sRGB 0-255 (stored as CIELab in the file).
    algorithm_type : str
        MANUAL, SEMIAUTOMATIC or AUTOMATIC.
    algorithm_name : str or None
        SegmentAlgorithmName (required unless MANUAL).
    description : str or None
        SegmentDescription (an RTSTRUCT's RTROIInterpretedType when read from one).

    See Also
    --------
    Segment.make : a segment from a name, a keyword of :data:`TYPES` or a dict of fields.

    Examples
    --------
    >>> s = Segment.make(2, "liver")
    >>> s.label, s.category[2], s.type
    ('liver', 'Anatomical Structure', ('10200004', 'SCT', 'Liver'))
    >>> Segment.make(1, {"label": "tumour", "type": "lesion", "color": (1.0, 0.0, 0.0)}).color
    (255, 0, 0)
    """

    number: int
    label: str
    category: Code = _TISSUE
    type: Code = _TISSUE
    color: tuple[int, int, int] | None = None
    algorithm_type: str = "MANUAL"
    algorithm_name: str | None = None
    description: str | None = None

    @classmethod
    def make(cls, number: int, spec: str | Mapping[str, Any] | Segment | None = None,
             path: str | None = None) -> Segment:
        """A segment from a name, a dict of fields, a :class:`Segment`, or None.

        Parameters
        ----------
        number : int
            Its SegmentNumber.
        spec : str, mapping, Segment or None
            A name (a keyword of :data:`TYPES` such as ``"liver"`` also sets its type and
            category), a dict of the fields of :class:`Segment` (``type`` and ``category``
            as keywords or codes), a segment to renumber, or None ("Segment <n>", Tissue).
        path : str, optional
            The file named in errors.

        Returns
        -------
        Segment
            The segment, its codes resolved.

        Raises
        ------
        DicomToolsError
            An unknown field, keyword or algorithm type, or a malformed code or colour.
        """
        if isinstance(spec, Segment):
            return Segment(**{**spec.__dict__, "number": int(number)})
        if spec is None or isinstance(spec, str):
            known = isinstance(spec, str) and keyword(spec) in TYPES
            spec = {"label": spec, "type": spec if known else None}
        if not isinstance(spec, Mapping):
            raise DicomToolsError(path, f"segment {number}: expected a name or a dict of "
                                        f"fields, got {spec!r}")
        unknown = set(spec) - _FIELDS
        if unknown:
            raise DicomToolsError(path, f"segment {number}: unknown field(s) "
                                        f"{', '.join(sorted(unknown))}")
        typ = spec.get("type")
        cat = spec.get("category")
        if cat is None and isinstance(typ, str):
            cat = TYPES[keyword(typ)][1] if keyword(typ) in TYPES else None
        label = spec.get("label") or (typ if isinstance(typ, str) else f"Segment {number}")
        algo = str(spec.get("algorithm_type") or "MANUAL").upper()
        if algo not in ALGORITHM_TYPES:
            raise DicomToolsError(path, f"segment {number}: algorithm type {algo!r} is not "
                                        f"one of {', '.join(ALGORITHM_TYPES)}")
        color = spec.get("color")
        return cls(number=int(number), label=str(label),
                   category=code(cat or "tissue", "category", path),
                   type=code(typ or "tissue", "type", path),
                   color=None if color is None else _rgb(color, number, path),
                   algorithm_type=algo, algorithm_name=spec.get("algorithm_name"),
                   description=spec.get("description"))

    def to_dict(self) -> dict[str, Any]:
        """Plain fields (lists, not tuples) for ``layer.metadata``; ``Segment.make(n, d)``
        reads them back."""
        d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}
        d.pop("number")
        return d

    def as_row(self) -> dict[str, Any]:
        """Plain values for a table (napari ``features``, CSV): ``index``, ``label``,
        ``category``, ``type``, ``type_code``, ``algorithm``, ``color``."""
        return {"index": self.number, "label": self.label, "category": self.category[2],
                "type": self.type[2], "type_code": f"{self.type[1]}:{self.type[0]}",
                "algorithm": self.algorithm_type, "color": self.color}


# --------------------------------------------------------------------------------------------
# reading


@dataclass
class Segmentation:
    """Label arrays in patient geometry, as :func:`read_segmentation` and
    :func:`~napari_dicomtools.core.rtstruct.read_rtstruct` give them.

    Parameters
    ----------
    labels : list of numpy.ndarray
        ``(slice, row, column)`` label arrays (uint8, or uint16 beyond 255 segments),
        segment numbers as values. One array unless segments overlap: then each array holds
        a group of segments that do not.
    groups : list of list of int
        The segment numbers held by each array of ``labels``.
    segments : list of Segment
        The segment table, in SegmentNumber order.
    spacing : (float, float, float)
        ``(slice, row, column)`` mm, as in :class:`~napari_dicomtools.core.volume.Volume`.
    origin : numpy.ndarray
        LPS mm of the centre of voxel ``(0, 0, 0)``.
    direction : numpy.ndarray
        3x3, column ``k`` the LPS unit vector of array axis ``k``.
    fractions : dict of int to numpy.ndarray
        Fractional SEG only: segment number -> float32 array in [0, 1] (``labels`` then hold
        the voxels >= 0.5).
    metadata : dict
        ``name``, ``path``, ``series_uid``, ``sop_uid``, ``frame_of_reference``,
        ``referenced_series_uid``, ``on_reference`` (True when placed on a reference
        series' grid), ``reference_name``, ``segmentation_type``, ``problems``.

    Examples
    --------
    >>> lab = np.zeros((2, 3, 4), np.uint8)
    >>> lab[1, 0, :2] = 1
    >>> seg = Segmentation([lab], [[1]], [Segment(1, "lesion")], (2.0, 0.5, 0.5),
    ...                    np.zeros(3), np.eye(3))
    >>> seg.shape, int(seg.mask(1).sum()), seg.segment(1).label
    ((2, 3, 4), 2, 'lesion')
    >>> seg.affine_lps[:3, 3].tolist()  # voxel (0, 0, 0) at the origin
    [0.0, 0.0, 0.0]
    """

    labels: list[LabelArray]
    groups: list[list[int]]
    segments: list[Segment]
    spacing: tuple[float, float, float]
    origin: npt.NDArray[np.float64]
    direction: npt.NDArray[np.float64]
    fractions: dict[int, npt.NDArray[np.float32]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        """``(slice, row, column)`` of the label arrays."""
        return tuple(self.labels[0].shape)

    @property
    def affine_lps(self) -> npt.NDArray[np.float64]:
        """4x4: voxel ``(column, row, slice)`` -> LPS mm."""
        return geometry.affine_lps(self.spacing, self.origin, self.direction)

    @property
    def affine_ras(self) -> npt.NDArray[np.float64]:
        """4x4: voxel ``(column, row, slice)`` -> RAS mm (NIfTI's)."""
        return geometry.affine_ras(self.spacing, self.origin, self.direction)

    def segment(self, number: int) -> Segment:
        """The segment numbered ``number``; KeyError when there is none."""
        for s in self.segments:
            if s.number == number:
                return s
        raise KeyError(number)

    def mask(self, number: int) -> npt.NDArray[np.bool_]:
        """Boolean mask of one segment; KeyError when there is none."""
        for arr, group in zip(self.labels, self.groups, strict=True):
            if number in group:
                mask: npt.NDArray[np.bool_] = arr == number
                return mask
        raise KeyError(number)

    def __repr__(self) -> str:
        return (f"<Segmentation {self.metadata.get('name', '')!r} {self.shape} "
                f"{len(self.segments)} segment(s) in {len(self.labels)} array(s)>")


def _item(seq_parent: Dataset | None, kw: str) -> Dataset | None:
    """The first item of the sequence ``kw`` of ``seq_parent``, or None."""
    seq = getattr(seq_parent, kw, None) if seq_parent is not None else None
    if not seq:
        return None
    item: Dataset = seq[0]
    return item


def _fg(per_frame: Dataset | None, shared: Dataset | None, seq_kw: str) -> Dataset | None:
    """A functional group macro item: per-frame first, shared otherwise."""
    return _item(per_frame, seq_kw) or _item(shared, seq_kw)


def _lab_to_rgb(lab: Sequence[int]) -> tuple[int, int, int] | None:
    try:
        from highdicom.color import CIELabColor

        r, g, b = CIELabColor.from_dicom_value(tuple(int(x) for x in lab)).to_rgb()
        return int(r), int(g), int(b)
    except Exception:  # noqa: BLE001 - a malformed colour is no reason to refuse the SEG
        return None


def _code_of(item: Dataset | None) -> Code:
    if item is None:
        return ("", "", "")
    return (str(item.get("CodeValue", "") or item.get("LongCodeValue", "") or ""),
            str(item.get("CodingSchemeDesignator", "") or ""),
            str(item.get("CodeMeaning", "") or ""))


def _segments_of(ds: Dataset, path: str) -> list[Segment]:
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


def _pixel_frames(ds: Dataset, path: str, n: int, rows: int,
                  cols: int) -> npt.NDArray[np.unsignedinteger[Any]]:
    """``(n, rows, cols)`` frames: 0/1 (BINARY), stored fractions (uint8) or segment
    numbers (LABELMAP, uint8 or uint16)."""
    bits = int(ds.get("BitsAllocated", 1) or 1)
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    native = ts in ("", "1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
    need = n * rows * cols
    if native and "PixelData" in ds and bits in (1, 8, 16):
        raw: npt.NDArray[np.unsignedinteger[Any]] = np.frombuffer(
            ds.PixelData, np.dtype("<u2") if bits == 16 else np.dtype(np.uint8))
        have = raw.size * 8 if bits == 1 else raw.size
        if have < need:
            raise UnreadableDicomError(path, f"truncated: Pixel Data holds {have:,} values "
                                             f"but {n} frame(s) of {rows}x{cols} need "
                                             f"{need:,}")
        if bits == 1:  # frames are packed back to back, not byte-aligned
            raw = np.unpackbits(raw[:(need + 7) // 8].view(np.uint8), bitorder="little")
        return raw[:need].reshape(n, rows, cols)
    try:
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - decoders raise anything on a broken file
        raise UnreadableDicomError(path, f"SEG pixel data cannot be decoded ({exc})") from None
    return np.asarray(arr, np.uint16 if bits == 16 else np.uint8).reshape(n, rows, cols)


@dataclass
class _SegFrames:
    """Per-frame facts of a SEG, in file order."""

    segment: npt.NDArray[np.int64]  # ReferencedSegmentNumber per frame
    positions: npt.NDArray[np.float64] | None  # (n, 3) ImagePositionPatient, None if any missing
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, ...] | None
    spacing_between: float | None
    thickness: float | None
    per_frame: Sequence[Dataset]  # the PerFrameFunctionalGroupsSequence items

    def sources(self, i: int) -> list[tuple[str, int | None]]:
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

#: per frame: (segment number, ImagePositionPatient), read from raw bytes or by pydicom
_FrameFacts = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]


def _fast_frame_facts(ds: Dataset, per: Sequence[Dataset],
                      labelmap: bool) -> _FrameFacts | None:
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


def _orientation(item: Dataset | None) -> tuple[float, ...] | None:
    """ImageOrientationPatient of a Plane Orientation item, rounded to compare."""
    if item is None or "ImageOrientationPatient" not in item:
        return None
    return tuple(round(float(v), 4) for v in item.ImageOrientationPatient)


def _slow_frame_facts(per: Sequence[Dataset], shared: Dataset | None, labelmap: bool,
                      path: str) -> tuple[_FrameFacts, bool, set[tuple[float, ...]]]:
    """Per-frame facts parsed by pydicom: ((segment, position) per frame, whether every
    frame has a position, the orientations found)."""
    n = len(per)
    segs = np.zeros(n, np.int64)
    pos = np.zeros((n, 3))
    have_pos = True
    orients: set[tuple[float, ...]] = set()
    for i, fr in enumerate(per):
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
        o = _orientation(_fg(fr, shared, "PlaneOrientationSequence"))
        if o is not None:
            orients.add(o)
    return (segs, pos), have_pos, orients


def _frames_of_seg(ds: Dataset, path: str, labelmap: bool = False) -> _SegFrames:
    """Per-frame facts; a LABELMAP SEG's frames hold every segment (segment 0 here)."""
    shared = _item(ds, "SharedFunctionalGroupsSequence")
    per = ds.get("PerFrameFunctionalGroupsSequence", None) or []
    n = int(ds.get("NumberOfFrames", 1) or 1)
    if len(per) != n:
        raise UnreadableDicomError(path, f"{len(per)} per-frame functional group item(s) "
                                         f"for {n} frame(s)")
    fast = _fast_frame_facts(ds, per, labelmap)
    if fast is not None:  # the same facts from the raw bytes of each item
        (segs, pos), have_pos = fast, True
        o = _orientation(_item(shared, "PlaneOrientationSequence"))
        orients = {o} if o is not None else set()
    else:
        (segs, pos), have_pos, orients = _slow_frame_facts(per, shared, labelmap, path)
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


class _Grid(NamedTuple):
    """Where the frames of a SEG go: the slice of each frame and the grid's geometry."""

    slices: npt.NDArray[np.intp]  # slice index of each frame
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: npt.NDArray[np.float64]
    direction: npt.NDArray[np.float64]


def _own_grid(fr: _SegFrames, path: str, rows: int, cols: int) -> _Grid:
    """Slice index per frame and the grid of the SEG's own geometry."""
    if fr.positions is None or fr.orientation is None or fr.pixel_spacing is None:
        raise GeometryError(path, "SEG frames carry no complete plane position/orientation/"
                                  "pixel spacing and no referenced series was found to "
                                  "place them on")
    normal = geometry.slice_normal(fr.orientation)
    d = fr.positions @ normal
    planes = np.unique(np.round(d, 3))
    step = _slice_step(fr, planes, path)
    index = np.round((d - planes[0]) / step).astype(np.intp)
    # every plane must share one in-plane origin (no tilt/shear in a SEG's own grid)
    first = fr.positions[np.argmin(d)]
    inplane = fr.positions - first - np.outer(d - d.min(), normal)
    if np.max(np.abs(inplane)) > 0.01 * min(fr.pixel_spacing) + 1e-3:
        raise GeometryError(path, "SEG frames do not share one in-plane origin (sheared "
                                  "stack); cannot place them on a grid")
    spacing = (float(step), float(fr.pixel_spacing[0]), float(fr.pixel_spacing[1]))
    return _Grid(index, (int(index.max()) + 1, rows, cols), spacing,
                 np.asarray(first, float), geometry.direction_matrix(fr.orientation))


def _slice_step(fr: _SegFrames, planes: npt.NDArray[np.float64], path: str) -> float:
    """The slice spacing of the frame planes (SpacingBetweenSlices when they lie on it)."""
    if len(planes) <= 1:
        return float(fr.spacing_between or fr.thickness or 1.0)
    diffs = np.diff(planes)
    step = fr.spacing_between if fr.spacing_between else float(diffs.min())
    k = (planes - planes[0]) / step
    if step <= 0 or np.max(np.abs(k - np.round(k))) > 0.05:
        step = float(diffs.min())
        k = (planes - planes[0]) / step
    if np.max(np.abs(k - np.round(k))) > 0.05:
        raise GeometryError(path, "SEG frame positions are not on a regular grid of "
                                  f"slices (distances {np.round(diffs, 3).tolist()} mm)")
    return float(step)


def _on_reference(fr: _SegFrames, ref: Series, rows: int,
                  cols: int) -> tuple[npt.NDArray[np.intp] | None, str]:
    """Slice index of each SEG frame in the reference series, or (None, why not)."""
    if ref.n_time > 1:
        return None, "the referenced series is 4D"
    if (ref.rows, ref.columns) != (rows, cols):
        return None, (f"SEG frames are {rows}x{cols}, the series {ref.name!r} "
                      f"{ref.rows}x{ref.columns}")
    if fr.positions is not None and ref.orientation is not None and fr.orientation is not None:
        return _by_position(fr, fr.positions, fr.orientation, ref, ref.orientation)
    by_sop = {(f.instance.sop_uid, None if f.index is None else f.index + 1): k
              for k, f in enumerate(ref.frames)}
    out = np.full(len(fr.segment), -1, np.intp)
    for i in range(len(out)):
        for uid, fnum in fr.sources(i):
            k = by_sop.get((uid, fnum), by_sop.get((uid, None)))
            if k is not None:
                out[i] = k
                break
        else:
            return None, f"frame {i + 1} references no image of the series {ref.name!r}"
    return out, ""


def _by_position(fr: _SegFrames, positions: npt.NDArray[np.float64],
                 orientation: tuple[float, ...], ref: Series,
                 ref_orientation: tuple[float, ...]) -> tuple[npt.NDArray[np.intp] | None, str]:
    """Slice index of each SEG frame: the reference slice at its position (within 5% of a
    pixel), or (None, why not)."""
    if not np.allclose(orientation, ref_orientation, atol=1e-3):
        return None, "SEG orientation differs from the referenced series'"
    if fr.pixel_spacing is not None and not np.allclose(fr.pixel_spacing,
                                                        ref.pixel_spacing, rtol=1e-3):
        return None, "SEG pixel spacing differs from the referenced series'"
    n = len(positions)
    ref_pos = np.array([np.asarray(f.position, float) for f in ref.frames])
    normal = geometry.slice_normal(ref_orientation)
    rd = ref_pos @ normal
    order = np.argsort(rd)
    j = np.clip(np.searchsorted(rd[order], positions @ normal), 1, len(rd) - 1) \
        if len(rd) > 1 else np.zeros(n, int)
    cand = np.stack([order[j - 1], order[j]], 1) if len(rd) > 1 else order[j][:, None]
    dist = np.linalg.norm(ref_pos[cand] - positions[:, None, :], axis=2)
    best: npt.NDArray[np.intp] = cand[np.arange(n), np.argmin(dist, axis=1)]
    ok = dist.min(axis=1) <= 0.05 * min(ref.pixel_spacing)
    if not ok.all():
        i = int(np.argmin(ok))
        return None, (f"frame {i + 1} at {np.round(positions[i], 2).tolist()} mm lies "
                      "on no slice of the referenced series")
    return best, ""


def find_reference(seg_path: Source | os.PathLike[str] | str,
                   candidates: Iterable[Series]) -> Series | None:
    """The image series a SEG refers to among ``candidates``.

    Parameters
    ----------
    seg_path : str, os.PathLike or Source
        The SEG file (or a zip member).
    candidates : iterable of Series
        Series from :func:`~napari_dicomtools.core.series.scan`.

    Returns
    -------
    Series or None
        The image series named in ReferencedSeriesSequence, else one holding a referenced
        SOP instance; None when no candidate is referenced.

    Raises
    ------
    DicomToolsError
        ``seg_path`` is unreadable or not a SEG.

    Examples
    --------
    >>> import tempfile
    >>> from napari_dicomtools.core.series import scan
    >>> from napari_dicomtools.core.synthetic import write_series
    >>> tmp = tempfile.mkdtemp()
    >>> _ = write_series(tmp + "/ct", np.zeros((2, 4, 4), np.int16), description="CT")
    >>> seg = write_seg(np.ones((2, 4, 4), np.uint8), tmp + "/ct", tmp + "/seg.dcm")
    >>> find_reference(seg, scan(tmp)).description
    'CT'
    """
    return _match_reference(_read_seg(seg_path, pixels=False)[0], candidates)


def _match_reference(ds: Dataset, candidates: Iterable[Series]) -> Series | None:
    uids = {str(it.get("SeriesInstanceUID", "")) for it in
            ds.get("ReferencedSeriesSequence", None) or []}
    sops = set()
    for it in ds.get("ReferencedSeriesSequence", None) or []:
        for inst in it.get("ReferencedInstanceSequence", None) or []:
            sops.add(str(inst.get("ReferencedSOPInstanceUID", "")))
    return pick_reference(candidates, uids, sops)


def _is_seg(ds: Dataset) -> bool:
    return str(ds.get("SOPClassUID", "") or "") in SEG_SOP_CLASSES


def _read_seg(path: Source | os.PathLike[str] | str,
              pixels: bool = True) -> tuple[Dataset, str]:
    """The SEG data set (with or without Pixel Data) and its name; refuses other objects."""
    return read_object(path, _is_seg, "a DICOM SEG", pixels=pixels)


class _Table(NamedTuple):
    """A SEG's segment table and how its frames store them."""

    segments: list[Segment]
    seg_type: str  # BINARY, FRACTIONAL or LABELMAP
    labelmap: bool


def _table(ds: Dataset, name: str) -> _Table:
    segments = _segments_of(ds, name)
    seg_type = str(ds.get("SegmentationType", "BINARY") or "BINARY").upper()
    labelmap = seg_type == "LABELMAP" or str(ds.get("SOPClassUID", "")) == \
        LABELMAP_SEG_SOP_CLASS
    if labelmap:  # segment 0 of a label map is its background: label value 0 here
        segments = [s for s in segments if s.number != 0]
        if not segments:
            raise UnreadableDicomError(name, "the label map SEG describes only its "
                                             "background (segment 0)")
    return _Table(segments, seg_type, labelmap)


def _frame_pixels(ds: Dataset, name: str, table: _Table, fr: _SegFrames,
                  problems: list[str]) -> npt.NDArray[np.unsignedinteger[Any]]:
    """The frames' pixels, after checking that every frame and label names a segment."""
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    known = {s.number for s in table.segments}
    bad = sorted(set(fr.segment.tolist()) - known - ({0} if table.labelmap else set()))
    if bad:
        raise UnreadableDicomError(name, f"frames reference segment(s) {bad} that the "
                                         "segment table does not describe")
    pix = _pixel_frames(ds, name, len(fr.segment), rows, cols)
    if table.labelmap:
        stray = sorted(set(np.unique(pix).tolist()) - known - {0})
        if stray:
            problems.append(f"pixel values {stray[:5]} name no segment; left out")
            warnings.warn(f"{name}: {problems[-1]}", stacklevel=3)
    elif table.seg_type != "FRACTIONAL" and int(ds.get("BitsAllocated", 1) or 1) != 1:
        pix = (pix != 0).view(np.uint8)  # a binary SEG stored in bytes: any non-zero is in
    return pix


def _place(fr: _SegFrames, ref: Series | None, rows: int, cols: int, name: str,
           problems: list[str]) -> tuple[_Grid, Series | None]:
    """The grid the frames go on: the reference's when they lie on it, else their own; and
    the reference they were placed on (None: their own grid)."""
    if ref is not None:
        index, why = _on_reference(fr, ref, rows, cols)
        if index is not None:
            return _Grid(index, (ref.n_slices, rows, cols), ref.spacing, ref.origin,
                         ref.direction), ref
        problems.append(f"not placed on {ref.name!r}: {why}; shown on the SEG's own "
                        "geometry")
        warnings.warn(f"{name}: {problems[-1]}", stacklevel=3)
    if not len(fr.segment):
        raise UnreadableDicomError(name, "SEG has no frames")
    return _own_grid(fr, name, rows, cols), None


def _masks(ds: Dataset, table: _Table, fr: _SegFrames,
           pix: npt.NDArray[np.unsignedinteger[Any]], grid: _Grid
           ) -> tuple[dict[int, SliceMasks], dict[int, npt.NDArray[np.float32]]]:
    """Per segment the slices and masks of its frames (and its fractions, when FRACTIONAL)."""
    maxval = float(ds.get("MaximumFractionalValue", 255) or 255)
    fractions: dict[int, npt.NDArray[np.float32]] = {}
    masks: dict[int, SliceMasks] = {}
    for s in table.segments:
        if table.labelmap:
            masks[s.number] = (grid.slices, pix == s.number)
            continue
        idx = np.flatnonzero(fr.segment == s.number)
        sel: npt.NDArray[np.intp] | slice = idx
        if len(idx) and idx[-1] - idx[0] == len(idx) - 1:
            sel = slice(int(idx[0]), int(idx[-1]) + 1)  # a view of the frames, no copy
        if table.seg_type == "FRACTIONAL":
            f = np.zeros(grid.shape, np.float32)
            f[grid.slices[sel]] = pix[sel] / np.float32(maxval)
            fractions[s.number] = f
            masks[s.number] = (grid.slices[sel], pix[sel] >= maxval / 2.0)
        else:
            masks[s.number] = (grid.slices[sel], pix[sel].view(bool))  # 0/1 bytes
    return masks, fractions


def read_segmentation(path: Series | Source | os.PathLike[str] | str,
                      reference: Series | os.PathLike[str] | str | None = None
                      ) -> Segmentation:
    """Read a DICOM SEG into label arrays on the grid of the series it references.

    Parameters
    ----------
    path : str, os.PathLike, Source or Series
        The SEG file (or ``archive.zip::member``), or the
        :class:`~napari_dicomtools.core.series.Series` scan made of it.
    reference : Series, str, os.PathLike or None
        The referenced image series, or a folder/file to find it in (``scan``); None: the
        SEG is placed on its own geometry (its frame positions and pixel measures), which
        overlays the images in patient millimetres all the same.

    Returns
    -------
    Segmentation
        Label arrays (segment numbers as values; overlapping segments in separate arrays),
        the segment table, the grid, fractions of a FRACTIONAL SEG, and metadata saying
        whether the labels lie on the reference (``on_reference``) and what went wrong
        (``problems``).

    Raises
    ------
    DicomToolsError
        Not a SEG, truncated, frames that name no segment, frames on no regular grid when
        no reference is usable: the message names the file and the reason.

    Examples
    --------
    >>> import tempfile
    >>> from napari_dicomtools.core.synthetic import write_series
    >>> tmp = tempfile.mkdtemp()
    >>> _ = write_series(tmp + "/ct", np.zeros((3, 4, 4), np.int16))
    >>> labels = np.zeros((3, 4, 4), np.uint8)
    >>> labels[1, 1:3, 1:3] = 1
    >>> out = write_seg(labels, tmp + "/ct", tmp + "/seg.dcm", segments={1: "liver"})
    >>> seg = read_segmentation(out, reference=tmp + "/ct")
    >>> seg.shape, [s.label for s in seg.segments], seg.metadata["on_reference"]
    ((3, 4, 4), ['liver'], True)
    >>> bool((seg.labels[0] == labels).all())
    True
    """
    from .series import Series

    if isinstance(path, Series):
        path = path.first.source
    ds, name = _read_seg(path)
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if not rows or not cols:
        raise UnreadableDicomError(name, f"invalid frame size Rows={rows} Columns={cols}")
    table = _table(ds, name)
    fr = _frames_of_seg(ds, name, table.labelmap)
    problems: list[str] = []
    pix = _frame_pixels(ds, name, table, fr, problems)
    ref = _resolve_reference(reference, ds, name) if reference is not None else None
    grid, placed_on = _place(fr, ref, rows, cols, name, problems)
    masks, fractions = _masks(ds, table, fr, pix, grid)
    labels, groups = pack(masks, grid.shape, max(s.number for s in table.segments))
    meta = {"name": f"{ds.get('SeriesNumber', '') or ''} "
                    f"{ds.get('SeriesDescription', '') or 'SEG'}".strip(),
            "path": name, "series_uid": str(ds.get("SeriesInstanceUID", "")),
            "sop_uid": str(ds.get("SOPInstanceUID", "")),
            "frame_of_reference": str(ds.get("FrameOfReferenceUID", "")),
            "referenced_series_uid": _referenced_series_uid(ds),
            "on_reference": placed_on is not None,
            "reference_name": placed_on.name if placed_on is not None else None,
            "segmentation_type": table.seg_type, "problems": problems}
    return Segmentation(labels, groups, table.segments,
                        (float(grid.spacing[0]), float(grid.spacing[1]),
                         float(grid.spacing[2])),
                        np.asarray(grid.origin, float), np.asarray(grid.direction, float),
                        fractions, meta)


def _referenced_series_uid(ds: Dataset) -> str | None:
    it = _item(ds, "ReferencedSeriesSequence")
    return str(it.get("SeriesInstanceUID", "")) if it is not None else None


def _resolve_reference(reference: Series | os.PathLike[str] | str, ds: Dataset,
                       name: str) -> Series | None:
    from .series import Series, scan

    if isinstance(reference, Series):
        return reference
    ref = _match_reference(ds, scan(reference))
    if ref is None:
        warnings.warn(f"{name}: the referenced series is not under {reference}; shown on "
                      "the SEG's own geometry", stacklevel=3)
    return ref


# --------------------------------------------------------------------------------------------
# writing


def _segment_table(values: list[int],
                   segments: Mapping[int | str, Any] | Sequence[Any] | None,
                   path: str) -> list[Segment]:
    """The segments of ``values`` (numbered 1..N), from their specs (see :func:`write_seg`),
    with a palette colour and an algorithm name where they name none."""
    specs = segments or {}
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
    return table


def _seg_pixels(masks: npt.NDArray[Any], n_values: int, fractional: bool,
                order: list[int] | None) -> npt.NDArray[Any]:
    """The pixel array highdicom takes: a label map as it is, else (frames, rows, cols,
    segments) 0/1 bytes or fractions quantised to 1/255; in the reference's frame order."""
    if masks.ndim == 3:  # a label map: highdicom splits it into segments itself
        pixels = masks if masks.dtype in (np.uint8, np.uint16) else masks.astype(
            np.uint8 if n_values < 256 else np.uint16)
    else:
        pixels = np.moveaxis(masks, 0, -1)  # (frames, rows, cols, segments)
        pixels = (np.round(pixels * 255).astype(np.uint8) / np.float32(255) if fractional
                  else pixels.astype(np.uint8))
    return pixels[order] if order is not None else pixels


def write_seg(labels: npt.ArrayLike | Sequence[npt.ArrayLike],
              reference: Series | os.PathLike[str] | str, path: os.PathLike[str] | str, *,
              segments: Mapping[int | str, Any] | Sequence[Any] | None = None,
              fractional: bool = False, overwrite: bool = False,
              description: str = "Segmentation", series_number: int = 300,
              content_label: str = "SEGMENTATION", creator: str | None = None) -> str:
    """Write labels lying on a reference series' grid as a DICOM SEG referencing it.

    Parameters
    ----------
    labels : array_like or list of array_like
        ``(slice, row, column)`` integer label map on the reference grid (as
        ``read_volume(reference).array``): each non-zero value is one segment. A list of
        such arrays holds overlapping segments (values unique across arrays). With
        ``fractional``: floats in [0, 1], ``(slice, row, column)`` for one segment or
        ``(segments, slice, row, column)``.
    reference : Series, str or os.PathLike
        The image series (or its folder/file) the labels were made on.
    path : str or os.PathLike
        Output ``.dcm`` file; never inside the reference's folder.
    segments : mapping or sequence, optional
        Per label value (mapping) or in value order (sequence): a name, a dict with
        ``label``, ``type`` (keyword of :data:`TYPES`, e.g. ``"liver"``, or ``(value,
        scheme, meaning)``), ``category``, ``color`` (sRGB), ``algorithm_type``,
        ``algorithm_name``; or a :class:`Segment`. Default: "Segment <n>", Tissue.
    fractional : bool
        Write a FRACTIONAL (PROBABILITY) SEG instead of BINARY.
    overwrite : bool
        Replace an existing ``path``; by default it is refused.
    description : str
        SeriesDescription and ContentDescription (64 characters at most).
    series_number : int
        SeriesNumber of the new series.
    content_label : str
        ContentLabel (a DICOM CS: upper case, 16 characters at most).
    creator : str, optional
        ContentCreatorName (a person name, e.g. ``"Doe^Jane"``).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    DicomToolsError
        The labels are empty, not on the reference grid, not integers (or fractions in
        [0, 1]), a segment spec is invalid, the reference is not one image volume with
        patient geometry, ``path`` is inside the reference's folder or exists.

    Notes
    -----
    Segment numbers must run 1, 2, ... (PS3.3 C.8.20.2); other label values are renumbered
    in order and a warning says so. Frames that are empty for a segment are not stored.

    Examples
    --------
    >>> import tempfile
    >>> import pydicom
    >>> from napari_dicomtools.core.synthetic import write_series
    >>> tmp = tempfile.mkdtemp()
    >>> _ = write_series(tmp + "/ct", np.zeros((3, 4, 4), np.int16))
    >>> labels = np.zeros((3, 4, 4), np.uint8)
    >>> labels[0, :2, :2], labels[2, 2:, 2:] = 1, 2
    >>> out = write_seg(labels, tmp + "/ct", tmp + "/seg.dcm",
    ...                 segments={1: "liver", 2: {"label": "tumour", "type": "lesion"}})
    >>> ds = pydicom.dcmread(out)
    >>> ds.Modality, [s.SegmentLabel for s in ds.SegmentSequence], int(ds.NumberOfFrames)
    ('SEG', ['liver', 'tumour'], 2)
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    from .. import __version__
    from .safety import atomic_output

    path = os.fspath(path)
    series = output_reference(reference, path)
    values, masks = masks_from(labels, fractional, series.shape, path)
    if not values or not np.any(masks):
        raise DicomToolsError(path, "the labels are empty: nothing to write as a SEG")
    if values != list(range(1, len(values) + 1)):
        warnings.warn(f"{path}: label values {values[:8]} renumbered as segments 1.."
                      f"{len(values)} (SEG segment numbers run from 1 without gaps)",
                      stacklevel=2)
    table = _segment_table(values, segments, path)
    dss, order = source_datasets(series)
    pixels = _seg_pixels(masks, len(values), fractional, order)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # highdicom's notes on optional content
        seg = hd.seg.Segmentation(
            source_images=dss, pixel_array=pixels,
            segmentation_type="FRACTIONAL" if fractional else "BINARY",
            segment_descriptions=[_description(hd, s) for s in table],
            series_instance_uid=generate_uid(), series_number=int(series_number),
            sop_instance_uid=generate_uid(), instance_number=1,
            manufacturer="napari-dicomtools", manufacturer_model_name="napari-dicomtools",
            software_versions=str(__version__), device_serial_number="0",
            content_description=description[:64] if description else None,
            content_label=content_label, content_creator_name=creator,
            series_description=description[:64] if description else None,
            omit_empty_frames=True)
    with atomic_output(path, overwrite=overwrite) as tmp:
        seg.save_as(tmp)
    return path


def _description(hd: ModuleType, s: Segment) -> SegmentDescription:
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
    desc: SegmentDescription = hd.seg.SegmentDescription(
        segment_number=s.number, segment_label=s.label[:64],
        segmented_property_category=CodedConcept(*s.category),
        segmented_property_type=CodedConcept(*s.type), algorithm_type=s.algorithm_type,
        algorithm_identification=algo,
        display_color=CIELabColor.from_rgb(*s.color) if s.color else None)
    return desc


# --------------------------------------------------------------------------------------------
# labels from elsewhere (NIfTI) onto a reference grid


def onto_reference(array: npt.ArrayLike, affine_ras: npt.ArrayLike,
                   reference: Series | os.PathLike[str] | str,
                   path: str | None = None) -> npt.NDArray[Any]:
    """Labels from a NIfTI file as ``(slice, row, column)`` on a reference series' grid.

    The array may lie on the grid in any axis order or flip (as nnU-Net, ITK or
    ``dicomtools convert`` write it). There is no resampling: labels on another grid are
    refused with the reason.

    Parameters
    ----------
    array : array_like
        Voxel ``(i, j, k)`` as NIfTI stores it: 3D (labels) or 4D with the segments last
        (fractions).
    affine_ras : array_like
        The 4x4 voxel ``(i, j, k)`` -> RAS mm affine of ``array`` (nibabel's ``img.affine``).
    reference : Series, str or os.PathLike
        The image series (or a path holding exactly one) the labels must lie on.
    path : str, optional
        The file named in errors.

    Returns
    -------
    numpy.ndarray
        ``(slice, row, column)`` (or ``(segments, slice, row, column)``) on the reference
        grid, ready for :func:`write_seg`.

    Raises
    ------
    DicomToolsError
        The array is not 3D or 4D, or does not cover the reference grid exactly (other
        voxel size, orientation, origin or extent).

    Examples
    --------
    >>> import tempfile
    >>> from napari_dicomtools.core.synthetic import write_series
    >>> folder = tempfile.mkdtemp() + "/ct"
    >>> truth = write_series(folder, np.zeros((3, 4, 5), np.int16))
    >>> labels = np.zeros((3, 4, 5), np.uint8)
    >>> labels[2, 0, 1] = 7
    >>> nifti = labels.transpose(2, 1, 0)  # (column, row, slice), as a NIfTI writer keeps it
    >>> back = onto_reference(nifti, truth.affine_ras, folder)
    >>> back.shape, bool((back == labels).all())
    ((3, 4, 5), True)
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


def write_labels_nifti(seg: Segmentation, path: os.PathLike[str] | str, *,
                       overwrite: bool = False) -> list[str]:
    """Write a read SEG's (or RTSTRUCT's) label arrays as NIfTI, segment numbers as values.

    ``path`` holds the first group of non-overlapping segments, ``<stem>_2.nii[.gz]``,
    ``<stem>_3``... the next ones (``seg.groups``), each with ``seg.affine_ras``. Nothing is
    printed: ``seg.metadata["problems"]`` says what the caller may want to report.

    Parameters
    ----------
    seg : Segmentation
        What :func:`read_segmentation` or
        :func:`~napari_dicomtools.core.rtstruct.read_rtstruct` returned.
    path : str or os.PathLike
        The first ``.nii`` or ``.nii.gz`` file.
    overwrite : bool
        Replace existing files; by default an existing file is refused.

    Returns
    -------
    list of str
        The files written, in the order of ``seg.groups``.

    Raises
    ------
    DicomToolsError
        A file exists and not ``overwrite``.

    Examples
    --------
    >>> import tempfile
    >>> a, b = np.zeros((2, 3, 4), np.uint8), np.zeros((2, 3, 4), np.uint8)
    >>> a[0, 0, 0], b[0, 0, 0] = 1, 2  # overlapping segments: two arrays
    >>> seg = Segmentation([a, b], [[1], [2]], [Segment(1, "a"), Segment(2, "b")],
    ...                    (1.0, 1.0, 1.0), np.zeros(3), np.eye(3))
    >>> files = write_labels_nifti(seg, tempfile.mkdtemp() + "/labels.nii.gz")
    >>> [os.path.basename(f) for f in files]
    ['labels.nii.gz', 'labels_2.nii.gz']
    """
    from .nifti import write_layer_nifti_affine

    path = os.fspath(path)
    base = path[:-7] if path.lower().endswith(".nii.gz") else path[:-4]
    ext = path[len(base):]
    return [write_layer_nifti_affine(path if k == 0 else f"{base}_{k + 1}{ext}", arr,
                                     seg.affine_ras, overwrite=overwrite)
            for k, arr in enumerate(seg.labels)]
