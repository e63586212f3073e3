"""Parsed headers -> :class:`Series`: grouping, splitting and ordering; :func:`scan`.

The third stage of the flow ``sources -> headers -> series -> volume``. ``scan(path)`` reads
every file's header (never its pixels), drops what is not an image with a reason, groups
images by SeriesInstanceUID and then splits a UID whenever the data says the images cannot
form one volume: different orientation, matrix size, pixel spacing, colour model or echo, or
repeated positions that belong to separate acquisitions (localizers). Within each resulting
:class:`Series` the frames are ordered by geometry (see :mod:`.geometry`), never by
InstanceNumber or file name.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import numpy as np

from ._limits import FATAL
from .errors import DicomToolsError, exception_text
from .geometry import (
    Floats,
    SliceOrder,
    direction_matrix,
    order_slices,
    orientation_label,
    slice_normal,
)
from .headers import NO_PIXEL_OBJECTS, Frame, Instance, read_header
from .sources import Skipped, Source, iter_sources
from .vendor import Diffusion

__all__ = ["NO_IMAGE_KINDS", "OBJECT_KINDS", "Series", "SeriesList", "group_series",
           "image_component", "scan", "scan_iter"]

#: SOP Class UID -> kind of the non-image objects that scan() lists as series (issue 15)
OBJECT_KINDS = {"1.2.840.10008.5.1.4.1.1.66.4": "SEG", "1.2.840.10008.5.1.4.1.1.66.7": "SEG",
                "1.2.840.10008.5.1.4.1.1.481.2": "RTDOSE", **NO_PIXEL_OBJECTS}
#: kinds that hold no image at all (read with read_rtstruct / read_sr)
NO_IMAGE_KINDS = frozenset(NO_PIXEL_OBJECTS.values())

#: what scan() and scan_iter() accept: a path, or several
PathInput = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]


@dataclass
class Series:
    """One loadable image volume (a series, or one part of a split series).

    Series are made by :func:`scan` (or :func:`group_series`), not by hand; the descriptive
    properties (``patient_id``, ``description``, ``modality``, ...) come from the first
    frame's file.

    Parameters
    ----------
    uid : str
        SeriesInstanceUID.
    frames : list of Frame
        In storage order for :func:`~napari_dicomtools.core.volume.read_volume`:
        time-major, then ascending along the slice normal.
    split : str
        Why this is one part of a SeriesInstanceUID (``"e2"``, ``"acq 1"``, ``"part 2"``,
        ...); ``""`` when it is all of it.
    n_time : int
        Number of volumes (time points, b-values, ...) over the same positions.
    order : SliceOrder or None
        The geometric ordering of the slices (None without geometry).
    problems : list of str
        What is wrong or approximate (gaps, non-uniform spacing, tilt, duplicates, ...).
    skipped : list of Skipped
        Files left out of this series, with the reason.

    See Also
    --------
    scan : how series are found.

    Examples
    --------
    >>> import os, tempfile
    >>> from napari_dicomtools.core.synthetic import phantom, write_series
    >>> tmp = tempfile.mkdtemp()
    >>> _ = write_series(os.path.join(tmp, "ct"), phantom((3, 8, 8)), spacing=(2.0, 0.5, 0.5))
    >>> (s,) = scan(tmp)
    >>> s.shape, s.spacing, s.orientation_label, s.modality
    ((3, 8, 8), (2.0, 0.5, 0.5), 'axial', 'CT')
    """

    uid: str
    frames: list[Frame]
    split: str = ""  # why this is one part of a SeriesInstanceUID ("" when it is all of it)
    n_time: int = 1
    order: SliceOrder | None = None
    problems: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    # --- descriptive facts --------------------------------------------------------------
    @property
    def first(self) -> Instance:
        """The header of the first frame's file."""
        return self.frames[0].instance

    @property
    def patient_name(self) -> str:
        """PatientName (0010,0010)."""
        return self.first.patient_name

    @property
    def patient_id(self) -> str:
        """PatientID (0010,0020)."""
        return self.first.patient_id

    @property
    def study_uid(self) -> str:
        """StudyInstanceUID (0020,000D)."""
        return self.first.study_uid

    @property
    def study_date(self) -> str:
        """StudyDate (0008,0020), ``YYYYMMDD``."""
        return self.first.study_date

    @property
    def study_description(self) -> str:
        """StudyDescription (0008,1030)."""
        return self.first.study_description

    @property
    def description(self) -> str:
        """SeriesDescription (0008,103E)."""
        return self.first.series_description

    @property
    def number(self) -> int | None:
        """SeriesNumber (0020,0011)."""
        return self.first.series_number

    @property
    def modality(self) -> str:
        """Modality (0008,0060)."""
        return self.first.modality

    @property
    def frame_of_reference(self) -> str:
        """FrameOfReferenceUID (0020,0052): series sharing it overlay in patient space."""
        return self.first.frame_of_reference

    @property
    def kind(self) -> str:
        """``"IMAGE"``, or the annotation object the series holds: ``"SEG"``, ``"RTSTRUCT"``,
        ``"SR"`` or ``"RTDOSE"``. Those are read with their own functions
        (:func:`~.seg.read_segmentation`, :func:`~.rtstruct.read_rtstruct`,
        :func:`~.sr.read_sr`, :func:`~.rtdose.read_dose`); an RTSTRUCT or SR holds no image
        (``shape`` ``(1, 0, 0)``)."""
        return OBJECT_KINDS.get(self.first.sop_class, "IMAGE")

    @property
    def references(self) -> tuple[str, ...]:
        """SeriesInstanceUIDs of the image series an annotation object was made on (empty
        for images, and for objects that name none)."""
        return self.first.references

    @property
    def files(self) -> list[str]:
        """The files of the series, each once, in storage order."""
        seen = dict.fromkeys(f.instance.path for f in self.frames)
        return list(seen)

    @property
    def n_slices(self) -> int:
        """Slices per volume."""
        return len(self.frames) // self.n_time

    @property
    def rows(self) -> int:
        """Rows (0028,0010)."""
        return self.first.rows

    @property
    def columns(self) -> int:
        """Columns (0028,0011)."""
        return self.first.columns

    @property
    def is_rgb(self) -> bool:
        """Colour pixels (3 samples, or a palette)."""
        return self.first.samples == 3 or self.first.photometric == "PALETTE COLOR"

    @property
    def colour(self) -> str:
        """The colour model of a colour series (``"RGB"``, ``"YBR_FULL_422"``, ``"PALETTE
        COLOR"``...), ``""`` for grayscale."""
        return self.first.photometric if self.is_rgb else ""

    @property
    def shape(self) -> tuple[int, ...]:
        """``(slices, rows, columns)``, or ``(time, slices, rows, columns)``."""
        s = (self.n_slices, self.rows, self.columns)
        return ((self.n_time,) + s) if self.n_time > 1 else s

    @property
    def orientation(self) -> tuple[float, ...] | None:
        """ImageOrientationPatient (0020,0037): row and column direction cosines, or None."""
        return self.frames[0].orientation

    @property
    def orientation_label(self) -> str:
        """``"axial"``, ``"coronal"``, ``"sagittal"``, ``"oblique ..."`` or ``"unknown"``."""
        return orientation_label(self.orientation) if self.orientation else "unknown"

    @property
    def pixel_spacing(self) -> tuple[float, ...]:
        """``(row, column)`` mm from PixelSpacing (0028,0030), ImagerPixelSpacing or the
        ultrasound regions' calibration; ``(1.0, 1.0)`` (one pixel) when the size is unknown
        (:attr:`pixel_size_known`)."""
        ps = self.frames[0].pixel_spacing
        return tuple(ps) if ps else (1.0, 1.0)

    @property
    def pixel_size_known(self) -> bool:
        """Whether the files say how big a pixel is (else distances are in pixels)."""
        return self.frames[0].pixel_spacing is not None

    @property
    def spacing_source(self) -> str:
        """Where the pixel size comes from: ``"PixelSpacing"``, ``"ImagerPixelSpacing"``,
        ``"ultrasound region calibration"``, or ``""`` when it is unknown."""
        if not self.pixel_size_known:
            return ""
        return self.first.calibration.source or "PixelSpacing"

    @property
    def spatial_units(self) -> str:
        """``"mm"``, or ``"pixel"`` when the pixel size is unknown."""
        return "mm" if self.pixel_size_known else "pixel"

    @property
    def has_patient_orientation(self) -> bool:
        """Whether ImageOrientationPatient places the image in the patient (else there is
        no anatomical direction to show: no A/P/R/L letters)."""
        return self.orientation is not None

    @property
    def frame_time_ms(self) -> float | None:
        """Milliseconds between time points of a cine (frames of a multi-frame file without
        positions but with FrameTime or FrameTimeVector), else None."""
        if self.n_time < 2 or self.has_geometry:
            return None
        return self.first.frame_time_ms

    @property
    def size_text(self) -> str:
        """The voxel size and layout in words, for listings (``dicomtools info``):
        ``"0.262 x 0.262 mm (ultrasound region calibration), 30 frames in time, 33.3 ms
        apart"``, ``"pixel size unknown"``, ``"0.5 x 0.5 x 2 mm, axial"``."""
        sp = self.spacing
        if not self.pixel_size_known:
            size = "pixel size unknown"
        elif self.has_geometry:
            size = f"{sp[2]:.4g} x {sp[1]:.4g} x {sp[0]:.4g} mm"
        else:
            size = f"{sp[2]:.4g} x {sp[1]:.4g} mm"
        if self.spacing_source not in ("", "PixelSpacing"):
            size += f" ({self.spacing_source})"
        if self.has_geometry:
            return f"{size}, {self.orientation_label}"
        parts = [size, "no patient orientation" if not self.has_patient_orientation
                 else self.orientation_label]
        ft = self.frame_time_ms
        if ft is not None:
            parts.append(f"{self.n_time} frames in time, {ft:.3g} ms apart")
        elif self.n_slices > 1:
            parts.append(f"{self.n_slices} images stacked by InstanceNumber (no positions)")
        return ", ".join(parts)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """(slice, row, column) spacing in mm; slice spacing from positions, not thickness."""
        ps = self.pixel_spacing
        if self.order is not None:
            dz = self.order.spacing
        else:
            dz = self.first.spacing_between_slices or self.first.slice_thickness or 1.0
        return (float(dz), float(ps[0]), float(ps[1]))

    @property
    def diffusion(self) -> list[Diffusion] | None:
        """Per volume ``(b-value, (gx, gy, gz) LPS or None)`` for diffusion series, else None."""
        firsts = self.frames[:: self.n_slices] if self.n_time > 1 else self.frames[:1]
        if not any(f.bvalue is not None for f in firsts):
            return None
        out = [Diffusion(float(f.bvalue or 0.0), f.bvec) for f in firsts]
        # as dcm2niix: nothing to say when every volume has the same low b-value and no
        # gradient (e.g. Philips stores b=0 in every ASL or fMRI frame)
        bvals = {float(b or 0.0) for b, _ in out}
        moving = any(g is not None and any(abs(x) > 1e-6 for x in g) for _, g in out)
        if len(bvals) == 1 and not moving and max(bvals) <= 50.0:
            return None
        return out

    @property
    def has_geometry(self) -> bool:
        """Whether the slices were ordered by their positions."""
        return self.order is not None

    @property
    def direction(self) -> Floats:
        """3x3: column ``k`` is the unit LPS vector of array axis ``k`` (slice, row,
        column); the slice column follows the slice step (a gantry tilt shears it)."""
        if self.orientation is None:
            # no geometry: slices along z, rows along y, columns along x
            return np.array([[0.0, 0, 1], [0, 1, 0], [1, 0, 0]])
        step = self.order.step if self.order is not None else None
        return direction_matrix(self.orientation, step)

    @property
    def origin(self) -> Floats:
        """LPS mm of the centre of voxel ``(0, 0, 0)`` (zeros without geometry)."""
        pos = self.frames[0].position
        return np.zeros(3) if pos is None else np.asarray(pos, float)

    @property
    def name(self) -> str:
        """Layer name, like dcm2niix's ``%s_%d``: series number and description."""
        parts = []
        if self.number is not None:
            parts.append(str(self.number))
        parts.append(self.description or self.modality or "DICOM")
        n = " ".join(parts)
        return f"{n} [{self.split}]" if self.split else n

    @cached_property
    def label(self) -> str:
        """One line for lists: name, modality, size, spacing, slices (for an object without
        pixels: its kind and the series it references)."""
        if self.kind in NO_IMAGE_KINDS:
            refs = ", ".join(self.references) or "no series named"
            return f"{self.name} | {self.modality or self.kind} | references {refs}"
        sp = self.spacing
        dims = "x".join(str(s) for s in self.shape)
        if self.has_geometry:
            size = f"{sp[2]:.3g}x{sp[1]:.3g}x{sp[0]:.3g} mm | {self.orientation_label}"
        else:
            size = (f"{sp[2]:.3g}x{sp[1]:.3g} mm" if self.pixel_size_known
                    else "pixel size unknown")
            if self.frame_time_ms is not None:
                size += f" | {self.n_time} frames, {self.frame_time_ms:.3g} ms apart"
        return f"{self.name} | {self.modality or '?'} | {dims} | {size}"

    def __repr__(self) -> str:
        return f"<Series {self.label} ({len(self.files)} file(s))>"


class SeriesList(list[Series]):
    """A list of :class:`Series` that also knows every file it skipped (``.skipped``).

    Parameters
    ----------
    items : iterable of Series
        The series.
    skipped : iterable of Skipped
        Every file left out, with the reason (not DICOM, no image, truncated, duplicate,
        ...).

    Examples
    --------
    >>> from napari_dicomtools.core.sources import Skipped
    >>> found = SeriesList([], [Skipped("notes.txt", "not a DICOM file")])
    >>> len(found), [str(k) for k in found.skipped]
    (0, ['notes.txt: not a DICOM file'])
    """

    def __init__(self, items: Iterable[Series] = (), skipped: Iterable[Skipped] = ()) -> None:
        super().__init__(items)
        self.skipped: list[Skipped] = list(skipped)

    def __repr__(self) -> str:
        lines = [repr(s) for s in self]
        if self.skipped:
            lines.append(f"... and {len(self.skipped)} skipped file(s)")
        return "[" + ",\n ".join(lines) + "]"


#: rounded orientations and spacings by (value, digits): the files of a series share theirs
#: (issue 17: grouping rounds two per file); emptied when it holds 4096
_ROUNDED: dict[tuple[tuple[float, ...], int], tuple[float, ...]] = {}


def _round_tuple(v: Iterable[float] | None, nd: int) -> tuple[float, ...] | None:
    if v is None:
        return None
    key = (v, nd) if isinstance(v, tuple) else None
    done = _ROUNDED.get(key) if key is not None else None
    if done is None:
        done = tuple(round(float(x), nd) for x in v)
        if key is not None:
            if len(_ROUNDED) >= 4096:
                _ROUNDED.clear()
            _ROUNDED[key] = done
    return done


_COMPONENTS = {"P": "ph", "PHASE": "ph", "R": "real", "REAL": "real", "I": "imaginary",
               "IMAGINARY": "imaginary"}


def image_component(image_type: Iterable[str]) -> str:
    """dcm2niix-style suffix of a complex-data component from ImageType (0008,0008).

    Parameters
    ----------
    image_type : sequence of str
        The ImageType values; the component is looked for from the third value on (``P`` or
        ``PHASE``, ``R``/``REAL``, ``I``/``IMAGINARY``, as the vendors write it).

    Returns
    -------
    str
        ``"ph"``, ``"real"``, ``"imaginary"``, or ``""`` for magnitude/ordinary images.

    Examples
    --------
    >>> image_component(["ORIGINAL", "PRIMARY", "P", "ND"])
    'ph'
    >>> image_component(["ORIGINAL", "PRIMARY", "M", "ND"])
    ''
    """
    for token in list(image_type)[2:]:
        comp = _COMPONENTS.get(str(token).strip().upper())
        if comp:
            return comp
    return ""


class _GroupKey(NamedTuple):
    """What the frames of one volume share; frames of one SeriesInstanceUID that differ in any
    field are split into parts."""

    series_uid: str
    rows: int
    columns: int
    colour: str  # "rgb" or "mono"
    orientation: tuple[float, ...] | None  # ImageOrientationPatient, 3 decimals
    pixel_spacing: tuple[float, ...] | None  # (row, column) mm, 3 decimals
    echo: int | None
    component: str  # complex component: "ph", "real", "imaginary" or "" (magnitude)
    number_offset: int  # GE pepolar: 1000 for the reversed-polarity volumes


def _group_key(fr: Frame) -> _GroupKey:
    inst = fr.instance
    colour = "rgb" if inst.samples == 3 or inst.photometric == "PALETTE COLOR" else "mono"
    return _GroupKey(
        inst.series_uid,
        inst.rows, inst.columns, colour,
        _round_tuple(fr.orientation, 3),
        _round_tuple(fr.pixel_spacing, 3),
        fr.echo if fr.echo is not None else inst.echo_number,
        fr.component if fr.component is not None else image_component(inst.image_type),
        fr.number_offset,
    )


def _rank_echoes(instances: list[Instance]) -> None:
    """Echo numbers of enhanced frames that only carry an echo time: the rank of their
    EffectiveEchoTime among all the echo times of their series, across files (Siemens XA
    writes one enhanced file per echo), left None when the series has a single one."""
    times: dict[str, set[float]] = defaultdict(set)
    for inst in instances:
        for fr in inst.frames:
            if fr.echo_number is None and fr.echo_time is not None:
                times[inst.series_uid].add(round(fr.echo_time, 4))
    for inst in instances:
        tes = sorted(times.get(inst.series_uid, ()))
        if len(tes) < 2:
            continue
        for fr in inst.frames:
            if fr.echo_number is None and fr.echo_time is not None:
                fr.echo_rank = tes.index(round(fr.echo_time, 4)) + 1


def _describe_split(key: _GroupKey, keys: list[_GroupKey]) -> str:
    """Short label saying how this part differs from its siblings."""

    def differ(*fields: str) -> bool:
        return len({tuple(getattr(k, f) for f in fields) for k in keys}) > 1

    labels = []
    if differ("echo") and key.echo is not None:
        labels.append(f"e{key.echo}")
    if differ("component") and key.component:
        labels.append(key.component)
    if differ("rows", "columns"):
        labels.append(f"{key.columns}x{key.rows}")
    if differ("orientation"):
        labels.append(orientation_label(key.orientation) if key.orientation
                      else "no orientation")
    if differ("pixel_spacing") and key.pixel_spacing:
        ps = key.pixel_spacing
        labels.append(f"{ps[1]:g}x{ps[0]:g} mm")
    if differ("colour"):
        labels.append(key.colour)
    if key.number_offset:
        labels.append("reversed polarity")
    return ", ".join(labels)


def _build(uid: str, frames: list[Frame], split: str, *,
           split_nonuniform: bool = False) -> list[Series]:
    """Order one homogeneous group; split by acquisition or go 4D on repeated positions."""
    frames, skipped = _drop_repeated_instances(frames)
    by_coil = _uncombined_coils(frames)
    if by_coil:  # one series per coil element
        out = []
        for coil, part in by_coil.items():
            lab = ", ".join(x for x in (split, f"coil {coil}") if x)
            out.extend(_build(uid, part, lab, split_nonuniform=split_nonuniform))
        out[0].skipped[:0] = skipped
        return out
    iop = frames[0].orientation
    if iop is None or not all(f.position is not None and f.orientation is not None
                              for f in frames):
        return _stack_without_geometry(uid, frames, split, skipped)
    normal = slice_normal(iop)
    proj = [float(_position(f) @ normal) for f in frames]
    bins = [int(q) for q in np.round(np.array(proj) / 0.01).astype(np.int64)]  # 0.01 mm
    reps = set(Counter(bins).values())
    problems: list[str] = []
    if reps != {1}:
        by_acq = _acquisitions_to_split(frames, bins)
        if by_acq is not None:
            out = []
            for a in sorted(by_acq, key=lambda x: (x is None, x)):
                lab = ", ".join(x for x in (split, f"acq {a}") if x)
                out.extend(_build(uid, by_acq[a], lab, split_nonuniform=split_nonuniform))
            out[0].skipped[:0] = skipped  # the copies left out above stay reported
            return out
        at = _frames_at_each_position(frames, bins, proj)
        if len(reps) == 1:  # every position repeated equally often: 4D
            return [_series_4d(uid, at, reps.pop(), iop, split, skipped)]
        frames = _first_at_each_position(at, skipped, problems)
    so = order_slices([_position(f) for f in frames], iop,
                      fallback_spacing=_fallback_spacing(frames[0]))
    ordered = [frames[i] for i in so.order]
    if split_nonuniform and not so.uniform and so.duplicates == 0 and len(ordered) > 2:
        parts = _split_nonuniform(uid, ordered, so, split)
        if parts:
            parts[0].skipped[:0] = skipped
            return parts
    problems.extend(so.problems)
    return [Series(uid, ordered, split, order=so, problems=problems, skipped=skipped)]


def _position(f: Frame) -> Floats:
    """A frame's ImagePositionPatient, where every frame of its group is known to have one."""
    if f.position is None:  # never: _build checked every frame
        raise DicomToolsError(f.instance.path, "no ImagePositionPatient")
    return f.position


def _drop_repeated_instances(frames: list[Frame]) -> tuple[list[Frame], list[Skipped]]:
    """The frames without a second copy of one SOP instance (a copied file), and the copies
    left out (one :class:`Skipped` per file, not per frame)."""
    seen: dict[tuple[str, int | None], str] = {}
    uniq: list[Frame] = []
    skipped: list[Skipped] = []
    reported: set[str] = set()
    for fr in frames:
        key = (fr.instance.sop_uid, fr.index)
        if fr.instance.sop_uid and key in seen:
            if fr.instance.path not in reported:
                reported.add(fr.instance.path)
                skipped.append(Skipped(fr.instance.path, f"duplicate of {seen[key]} "
                                                         "(same SOPInstanceUID)"))
            continue
        seen[key] = fr.instance.path
        uniq.append(fr)
    return uniq, skipped


def _is_cine(frames: list[Frame]) -> bool:
    """Frames of one multi-frame file that has a frame time: moments of a cine loop."""
    inst = frames[0].instance
    return (len(frames) > 1 and inst.frame_time_ms is not None
            and all(f.instance is inst for f in frames))


def _stack_without_geometry(uid: str, frames: list[Frame], split: str,
                            skipped: list[Skipped]) -> list[Series]:
    """Frames without position or orientation: the frames of a cine loop (a multi-frame
    file with FrameTime/FrameTimeVector) are time points, one series per file; other frames
    are stacked in acquisition order (InstanceNumber, frame index) with the problem said."""
    frames = sorted(frames, key=lambda f: (f.instance.instance_number or 0, f.index or 0))
    by_file: dict[str, list[Frame]] = defaultdict(list)
    for f in frames:
        by_file[f.instance.path].append(f)
    loops = list(by_file.values())
    if all(_is_cine(fs) for fs in loops):
        out = []
        for k, fs in enumerate(loops, start=1):
            lab = ", ".join(x for x in (split, f"cine {k}" if len(loops) > 1 else "") if x)
            problems = [fs[0].instance.frame_time_note] if fs[0].instance.frame_time_note \
                else []
            out.append(Series(uid, fs, lab, n_time=len(fs), problems=problems,
                              skipped=skipped if k == 1 else []))
        return out
    problems = []
    if len(frames) > 1 and any(f.position is None for f in frames):
        problems.append("no ImagePositionPatient/ImageOrientationPatient: slices stacked "
                        "by InstanceNumber with unknown spacing")
    return [Series(uid, frames, split, problems=problems, skipped=skipped)]


def _acquisitions_to_split(frames: list[Frame],
                           bins: list[int]) -> dict[int | None, list[Frame]] | None:
    """``{AcquisitionNumber: frames}`` when repeated positions separate into acquisitions that
    each have unique positions but cover different ones (a localizer, partial re-scans), else
    None. Acquisitions that all cover the same positions are repetitions (fMRI, DCE, phases):
    4D, not split."""
    if len({f.acquisition for f in frames}) < 2:
        return None
    by_acq: dict[int | None, list[tuple[Frame, int]]] = defaultdict(list)
    for f, q in zip(frames, bins, strict=True):
        by_acq[f.acquisition].append((f, q))
    unique_within = all(len({q for _, q in fq}) == len(fq) for fq in by_acq.values())
    same_positions = len({frozenset(q for _, q in fq) for fq in by_acq.values()}) == 1
    if not unique_within or same_positions:
        return None
    return {a: [f for f, _ in fq] for a, fq in by_acq.items()}


#: frames by position bin (0.01 mm along the normal): ``[(frame, mm along the normal), ...]``
_AtPosition = dict[int, list[tuple[Frame, float]]]


def _frames_at_each_position(frames: list[Frame], bins: list[int],
                             proj: list[float]) -> _AtPosition:
    """``{position bin: [(frame, mm along the normal), ...]}`` in temporal order."""
    at: _AtPosition = defaultdict(list)
    for f, q, p in zip(frames, bins, proj, strict=True):
        at[q].append((f, p))
    for q in at:
        at[q].sort(key=lambda fp: fp[0].temporal)
    return at


def _fallback_spacing(fr: Frame) -> float | None:
    return fr.instance.spacing_between_slices or fr.instance.slice_thickness


def _series_4d(uid: str, at: _AtPosition, n_time: int, iop: tuple[float, ...], split: str,
               skipped: list[Skipped]) -> Series:
    """A 4D series: ``n_time`` volumes over the same positions, time-major storage order."""
    zs = sorted(at)
    ordered = [at[z][t][0] for t in range(n_time) for z in zs]
    first_vol = ordered[:len(zs)]
    so = order_slices([_position(f) for f in first_vol], iop,
                      fallback_spacing=_fallback_spacing(first_vol[0]))
    problems = [*so.problems, f"4D: {n_time} volumes of {len(zs)} slices"]
    return Series(uid, ordered, split, n_time=n_time, order=so, problems=problems,
                  skipped=skipped)


def _first_at_each_position(at: _AtPosition, skipped: list[Skipped],
                            problems: list[str]) -> list[Frame]:
    """Unequal repetition: the first frame (temporal order) at each position; the others
    are appended to ``skipped`` and counted in ``problems``."""
    keep = []
    for q in sorted(at):
        (first, _), *extras = at[q]
        keep.append(first)
        for extra, p in extras:
            where = f" frame {extra.index}" if extra.index is not None else ""
            skipped.append(Skipped(extra.instance.path + where,
                                   f"duplicate slice position {p:.2f} mm along the normal; "
                                   f"kept {first.instance.path}"))
    n = sum(len(v) for v in at.values())
    problems.append(f"{n - len(keep)} frame(s) at duplicate positions left out")
    return keep


def _split_nonuniform(uid: str, ordered: list[Frame], so: SliceOrder,
                      split: str) -> list[Series]:
    """Parts of uniform spacing of a non-uniform stack (``part 1``, ``part 2``...), or []
    when it has one run only."""
    runs = _uniform_runs(so.distances)
    if len(runs) < 2:
        return []
    out = []
    for j, (a, b) in enumerate(runs, start=1):
        lab = ", ".join(x for x in (split, f"part {j}") if x)
        for p in _build(uid, ordered[a:b], lab, split_nonuniform=False):
            p.problems.insert(0, f"split from a non-uniform stack ({len(runs)} parts)")
            out.append(p)
    return out


def _uncombined_coils(frames: list[Frame]) -> dict[str, list[Frame]] | None:
    """``{coil: frames}`` when ``frames`` are uncombined coil images (Siemens "save
    uncombined": every element images the same slices), else None.

    dcm2niix (``-m o``) splits on any change of the coil string; a combined series whose
    coil selection changes from slice to slice (a localizer: dcm2niix issue 766) has each
    position once, and stays one stack here."""
    coils = {f.coil for f in frames}
    if len(coils) < 2 or None in coils:
        return None
    parts: dict[str, list[Frame]] = defaultdict(list)
    for f in frames:
        if f.coil is not None:  # never None here (checked above)
            parts[f.coil].append(f)
    seen: set[tuple[float, ...] | None] = set()
    overlap = False
    for part in parts.values():
        mine = {None if f.position is None else tuple(np.round(f.position, 2)) for f in part}
        overlap = overlap or bool(mine & seen)
        seen |= mine
    if not overlap:
        return None
    return {c: parts[c] for c in sorted(parts, key=_coil_order)}


def _coil_order(coil: str) -> list[tuple[int, int, str]]:
    """Coil names in their natural order (H2 before H10)."""
    import re

    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", coil)]


def _uniform_runs(distances: Iterable[float], rel_tol: float = 0.01,
                  abs_tol: float = 0.01) -> list[tuple[int, int]]:
    """Index ranges ``[a, b)`` of consecutive slices with one uniform step each."""
    d = np.asarray(distances, float)
    steps = np.diff(d)
    runs, start = [], 0
    for i in range(1, len(steps)):
        ref = steps[start]
        if abs(steps[i] - ref) > max(abs_tol, rel_tol * ref):
            runs.append((start, i + 1))
            start = i + 1
            if start >= len(steps):
                break
    if start <= len(d) - 1:
        runs.append((start, len(d)))
    return [(a, b) for a, b in runs if b > a]


def group_series(instances: Iterable[Instance], split_nonuniform: bool = False,
                 skipped: list[Skipped] | None = None) -> list[Series]:
    """Group parsed instances into ordered :class:`Series` (splitting where needed).

    Frames are grouped by SeriesInstanceUID, then split wherever they cannot form one volume
    (matrix, orientation, pixel spacing, colour, echo, complex component, GE pepolar
    polarity), by acquisition when repeated positions say so, per coil element for
    uncombined images; each part is ordered along its slice normal (4D when every position
    repeats equally often).

    Parameters
    ----------
    instances : iterable of Instance
        Parsed headers (:func:`~napari_dicomtools.core.headers.read_header`).
    split_nonuniform : bool
        Split a stack with gaps or changing spacing into parts of uniform spacing.
    skipped : list of Skipped, optional
        Appended to: the files of a group whose geometry cannot be ordered (that group is
        left out, the others are still built), and objects without pixel data.

    Returns
    -------
    list of Series
        Sorted by patient, study date and UID, series number, SeriesInstanceUID and part.

    Examples
    --------
    >>> import os, tempfile
    >>> from napari_dicomtools.core.headers import read_header
    >>> from napari_dicomtools.core.synthetic import phantom, write_series
    >>> tmp = tempfile.mkdtemp()
    >>> truth = write_series(tmp, phantom((5, 8, 8)), drop_slices=[2])  # a gap
    >>> (s,) = group_series(read_header(f) for f in truth.files)
    >>> s.n_slices, s.problems
    (4, ['gap(s) in the slice positions: 1 step(s) up to 5 mm where the usual step is
          2.5 mm (about 1 missing slice(s))'])
    >>> [(p.split, p.n_slices) for p in group_series(map(read_header, truth.files), True)]
    [('part 1', 2), ('part 2', 2)]
    """
    instances = list(instances)
    _rank_echoes(instances)
    by_uid: dict[str, dict[_GroupKey, list[Frame]]] = defaultdict(lambda: defaultdict(list))
    for inst in instances:
        if inst.sop_class in NO_PIXEL_OBJECTS:  # no image to group (scan() lists them)
            if skipped is not None:
                skipped.append(Skipped(inst.path, f"no Pixel Data (a "
                                                  f"{NO_PIXEL_OBJECTS[inst.sop_class]})"))
            continue
        for fr in inst.frames:
            by_uid[inst.series_uid][_group_key(fr)].append(fr)
    out: list[Series] = []
    for uid, groups in by_uid.items():
        keys = list(groups)
        for key in keys:
            split = _describe_split(key, keys) if len(keys) > 1 else ""
            out.extend(_build_or_skip(uid, groups[key], split, split_nonuniform, skipped))
    for s in out:
        _note_vendor_problems(s)
        _note_calibration(s)
    out.sort(key=_series_order)
    return out


def _build_or_skip(uid: str, frames: list[Frame], split: str, split_nonuniform: bool,
                   skipped: list[Skipped] | None) -> list[Series]:
    """The series of one group, or none (its files appended to ``skipped`` with the reason)
    when its geometry cannot be ordered."""
    try:
        built = _build(uid, frames, split, split_nonuniform=split_nonuniform)
        for b in built:  # properties the reader and `info` use at once
            _ = (b.spacing, b.direction, b.origin, b.label)
    except FATAL:
        raise
    except BaseException as exc:  # noqa: BLE001 - odd geometry: skip, keep the rest
        reason = exc.reason if isinstance(exc, DicomToolsError) else exception_text(exc)
        if skipped is not None:
            for p in dict.fromkeys(f.instance.path for f in frames):
                skipped.append(Skipped(p, f"series {uid} cannot be ordered into a "
                                          f"volume ({reason})"))
        return []
    return built


def _note_vendor_problems(s: Series) -> None:
    """Problems a vendor's storage brings (GE pepolar rows, a mosaic that stays tiled)."""
    if s.frames[0].flip_rows:
        s.problems.append("GE pepolar: reversed phase-encoding polarity, stored upside "
                          "down; rows flipped back (as dcm2niix)")
    if s.first.header.get("MosaicProblem"):
        s.problems.append("mosaic shown as one tiled 2D image: "
                          + s.first.header["MosaicProblem"])


def _note_calibration(s: Series) -> None:
    """Where the pixel size comes from when it is not PixelSpacing, or that it is unknown."""
    note = s.first.calibration.note
    if note:
        s.problems.append(note)
    if not s.pixel_size_known:
        s.problems.append("pixel size unknown: sizes are in pixels" if note else
                          "pixel size unknown (no PixelSpacing, ImagerPixelSpacing or "
                          "ultrasound calibration): sizes are in pixels")


def _series_order(s: Series) -> tuple[str, str, str, int, str, str]:
    return (s.patient_id, s.study_date, s.study_uid,
            s.number if s.number is not None else 1 << 30, s.uid, s.split)


def scan_iter(path: PathInput,
              split_nonuniform: bool = False,
              on_header: Callable[[Instance], None] | None = None,
              ) -> Generator[tuple[int, int], None, SeriesList]:
    """Generator form of :func:`scan`, for progress bars and napari's generator workers.

    Parameters
    ----------
    path : str, os.PathLike, or iterable of them
        A DICOM file, a folder (searched recursively), a ``.zip`` archive, or a DICOMDIR.
    split_nonuniform : bool
        As for :func:`scan`.
    on_header : callable, optional
        Called with each file's parsed :class:`~.headers.Instance` as soon as it is read
        (``read_volume`` starts decoding frames there while later headers are parsed).

    Yields
    ------
    (int, int)
        ``(done, total)`` after each file.

    Returns
    -------
    SeriesList
        As ``StopIteration.value`` (napari's generator workers pass it to ``returned``).

    Examples
    --------
    >>> import os, tempfile
    >>> from napari_dicomtools.core.synthetic import phantom, write_series
    >>> tmp = tempfile.mkdtemp()
    >>> _ = write_series(tmp, phantom((2, 8, 8)))
    >>> gen = scan_iter(tmp)
    >>> next(gen), next(gen)
    ((1, 2), (2, 2))
    >>> try:
    ...     next(gen)
    ... except StopIteration as stop:
    ...     print(stop.value)
    [<Series 3 Synthetic phantom | CT | 2x8x8 | 0.8x0.8x2.5 mm | axial (2 file(s))>]
    """
    paths: list[str | os.PathLike[str]]
    if isinstance(path, (str, os.PathLike)):
        paths = [path]
    else:
        paths = list(path)
    sources: list[Source] = []
    skipped: list[Skipped] = []
    for p in paths:
        found, left_out = iter_sources(p)
        sources.extend(found)
        skipped.extend(left_out)
    instances = []
    total = len(sources)
    for i, src in enumerate(sources):
        try:
            instances.append(read_header(src))
        except DicomToolsError as exc:
            skipped.append(Skipped(str(src), exc.reason))
        except FATAL:
            raise
        except BaseException as exc:  # noqa: BLE001 - one bad file never ends the scan
            skipped.append(Skipped(str(src), f"cannot be read ({exception_text(exc)})"))
        else:
            if on_header is not None:
                on_header(instances[-1])
        yield i + 1, total
    objects = [i for i in instances if i.sop_class in NO_PIXEL_OBJECTS]
    series = group_series([i for i in instances if i.sop_class not in NO_PIXEL_OBJECTS],
                          split_nonuniform, skipped)
    if objects:  # RTSTRUCT, SR: one series per file, listed among the images
        series = sorted(series + [Series(o.series_uid, list(o.frames)) for o in objects],
                        key=_series_order)
    for s in series:
        skipped.extend(s.skipped)
    return SeriesList(series, skipped)


def scan(path: PathInput, *,
         progress: Callable[[int, int], None] | None = None,
         split_nonuniform: bool = False,
         on_header: Callable[[Instance], None] | None = None) -> SeriesList:
    """Index the image series under ``path`` by reading headers only.

    Parameters
    ----------
    path : str, os.PathLike, or list of them
        A DICOM file, a folder (searched recursively), a ``.zip`` archive, or a DICOMDIR.
    progress : callable, optional
        Called as ``progress(done, total)`` after each file.
    split_nonuniform : bool
        Split a stack with gaps or changing slice spacing into parts of uniform spacing
        (named ``part 1``, ``part 2``...), instead of one stack with the problem reported.
    on_header : callable, optional
        Called with each file's parsed :class:`~.headers.Instance` as soon as it is read
        (as for :func:`scan_iter`).

    Returns
    -------
    SeriesList
        Series sorted by patient, study and series number; ``.skipped`` lists every file that
        was left out with the reason (not DICOM, no image, truncated, duplicate, ...).

    Examples
    --------
    A study folder with one CT series and a stray text file:

    >>> import os, tempfile
    >>> from napari_dicomtools.core.synthetic import phantom, write_series
    >>> study = tempfile.mkdtemp()
    >>> truth = write_series(os.path.join(study, "ct"), phantom((20, 64, 64)),
    ...                      spacing=(1.25, 0.7, 0.7))
    >>> with open(os.path.join(study, "notes.txt"), "w") as f:
    ...     _ = f.write("not DICOM")
    >>> series = scan(study)
    >>> for s in series:
    ...     print(s.label)
    3 Synthetic phantom | CT | 20x64x64 | 0.7x0.7x1.25 mm | axial
    >>> [os.path.basename(k.path) for k in series.skipped]
    ['notes.txt']
    """
    gen = scan_iter(path, split_nonuniform, on_header)
    while True:
        try:
            done, total = next(gen)
        except StopIteration as stop:
            result: SeriesList = stop.value
            return result
        if progress is not None:
            progress(done, total)
