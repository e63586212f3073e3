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
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ._limits import FATAL
from .errors import DicomToolsError
from .geometry import SliceOrder, direction_matrix, order_slices, orientation_label
from .headers import Frame, Instance, _exc_text, read_header
from .sources import Skipped, iter_sources

#: SOP Class UID -> kind of the non-image objects that scan() lists as series (issue 15)
OBJECT_KINDS = {"1.2.840.10008.5.1.4.1.1.66.4": "SEG"}


@dataclass
class Series:
    """One loadable image volume (a series, or one part of a split series).

    ``frames`` are in storage order for :func:`read_volume`: time-major, then ascending along
    the slice normal. ``shape`` is ``(slices, rows, columns)`` or ``(time, slices, rows,
    columns)``; ``spacing`` is ``(slice, row, column)`` mm.
    """

    uid: str
    frames: list
    split: str = ""  # why this is one part of a SeriesInstanceUID ("" when it is all of it)
    n_time: int = 1
    order: SliceOrder | None = None
    problems: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    # --- descriptive facts --------------------------------------------------------------
    @property
    def first(self) -> Instance:
        return self.frames[0].instance

    @property
    def patient_name(self) -> str:
        return self.first.patient_name

    @property
    def patient_id(self) -> str:
        return self.first.patient_id

    @property
    def study_uid(self) -> str:
        return self.first.study_uid

    @property
    def study_date(self) -> str:
        return self.first.study_date

    @property
    def study_description(self) -> str:
        return self.first.study_description

    @property
    def description(self) -> str:
        return self.first.series_description

    @property
    def number(self) -> int | None:
        return self.first.series_number

    @property
    def modality(self) -> str:
        return self.first.modality

    @property
    def frame_of_reference(self) -> str:
        return self.first.frame_of_reference

    @property
    def kind(self) -> str:
        """``"IMAGE"``, or the annotation object the series holds (``"SEG"``, ...): those
        are read with their own functions (:func:`~.seg.read_segmentation`), not as images."""
        return OBJECT_KINDS.get(self.first.sop_class, "IMAGE")

    @property
    def files(self) -> list[str]:
        seen = dict.fromkeys(f.instance.path for f in self.frames)
        return list(seen)

    @property
    def n_slices(self) -> int:
        return len(self.frames) // self.n_time

    @property
    def rows(self) -> int:
        return self.first.rows

    @property
    def columns(self) -> int:
        return self.first.columns

    @property
    def is_rgb(self) -> bool:
        return self.first.samples == 3 or self.first.photometric == "PALETTE COLOR"

    @property
    def colour(self) -> str:
        """The colour model of a colour series (``"RGB"``, ``"YBR_FULL_422"``, ``"PALETTE
        COLOR"``...), ``""`` for grayscale."""
        return self.first.photometric if self.is_rgb else ""

    @property
    def shape(self) -> tuple:
        s = (self.n_slices, self.rows, self.columns)
        return ((self.n_time,) + s) if self.n_time > 1 else s

    @property
    def orientation(self) -> tuple | None:
        return self.frames[0].orientation

    @property
    def orientation_label(self) -> str:
        return orientation_label(self.orientation) if self.orientation else "unknown"

    @property
    def pixel_spacing(self) -> tuple:
        ps = self.frames[0].pixel_spacing
        return tuple(ps) if ps else (1.0, 1.0)

    @property
    def spacing(self) -> tuple:
        """(slice, row, column) spacing in mm; slice spacing from positions, not thickness."""
        ps = self.pixel_spacing
        if self.order is not None:
            dz = self.order.spacing
        else:
            dz = self.first.spacing_between_slices or self.first.slice_thickness or 1.0
        return (float(dz), float(ps[0]), float(ps[1]))

    @property
    def diffusion(self) -> list | None:
        """Per volume ``(b-value, (gx, gy, gz) LPS or None)`` for diffusion series, else None."""
        firsts = self.frames[:: self.n_slices] if self.n_time > 1 else self.frames[:1]
        if not any(f.bvalue is not None for f in firsts):
            return None
        out = [(float(f.bvalue or 0.0), f.bvec) for f in firsts]
        # as dcm2niix: nothing to say when every volume has the same low b-value and no
        # gradient (e.g. Philips stores b=0 in every ASL or fMRI frame)
        bvals = {b for b, _ in out}
        moving = any(g is not None and any(abs(x) > 1e-6 for x in g) for _, g in out)
        if len(bvals) == 1 and not moving and max(bvals) <= 50.0:
            return None
        return out

    @property
    def has_geometry(self) -> bool:
        return self.order is not None

    @property
    def direction(self) -> np.ndarray:
        if self.orientation is None:
            # no geometry: slices along z, rows along y, columns along x
            return np.array([[0.0, 0, 1], [0, 1, 0], [1, 0, 0]])
        step = self.order.step if self.order is not None else None
        return direction_matrix(self.orientation, step)

    @property
    def origin(self) -> np.ndarray:
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
        """One line for lists: name, modality, size, spacing, slices."""
        sp = self.spacing
        dims = "x".join(str(s) for s in self.shape)
        return (f"{self.name} | {self.modality or '?'} | {dims} | "
                f"{sp[2]:.3g}x{sp[1]:.3g}x{sp[0]:.3g} mm | {self.orientation_label}")

    def __repr__(self) -> str:
        return f"<Series {self.label} ({len(self.files)} file(s))>"


class SeriesList(list):
    """A list of :class:`Series` that also knows every file it skipped (``.skipped``)."""

    def __init__(self, items=(), skipped=()):
        super().__init__(items)
        self.skipped: list[Skipped] = list(skipped)

    def __repr__(self) -> str:
        lines = [repr(s) for s in self]
        if self.skipped:
            lines.append(f"... and {len(self.skipped)} skipped file(s)")
        return "[" + ",\n ".join(lines) + "]"


def _round_tuple(v, nd):
    return None if v is None else tuple(round(float(x), nd) for x in v)


_COMPONENTS = {"P": "ph", "PHASE": "ph", "R": "real", "REAL": "real", "I": "imaginary",
               "IMAGINARY": "imaginary"}


def image_component(image_type) -> str:
    """dcm2niix-style suffix of a complex-data component from ImageType (0008,0008):
    ``"ph"``, ``"real"``, ``"imaginary"``, or ``""`` for magnitude/ordinary images."""
    for token in list(image_type)[2:]:
        comp = _COMPONENTS.get(str(token).strip().upper())
        if comp:
            return comp
    return ""


def _group_key(fr: Frame) -> tuple:
    inst = fr.instance
    color = "rgb" if inst.samples == 3 or inst.photometric == "PALETTE COLOR" else "mono"
    return (
        inst.series_uid,
        inst.rows, inst.columns, color,
        _round_tuple(fr.orientation, 3),
        _round_tuple(fr.pixel_spacing, 3),
        fr.echo if fr.echo is not None else inst.echo_number,
        fr.component if fr.component is not None else image_component(inst.image_type),
        fr.number_offset,
    )


def _rank_echoes(instances) -> None:
    """Echo numbers of enhanced frames that only carry an echo time: the rank of their
    EffectiveEchoTime among all the echo times of their series, across files (Siemens XA
    writes one enhanced file per echo), left None when the series has a single one."""
    times: dict = defaultdict(set)
    for inst in instances:
        for fr in inst.frames:
            if fr.echo is None and fr.echo_time is not None:
                times[inst.series_uid].add(round(fr.echo_time, 4))
    for inst in instances:
        tes = sorted(times.get(inst.series_uid, ()))
        if len(tes) < 2:
            continue
        for fr in inst.frames:
            if fr.echo is None and fr.echo_time is not None:
                fr.echo = tes.index(round(fr.echo_time, 4)) + 1


def _describe_split(key, keys) -> str:
    """Short label saying how this part differs from its siblings."""
    _, rows, cols, color, iop, ps, echo, comp, offset = key
    labels = []
    if len({k[6] for k in keys}) > 1 and echo is not None:
        labels.append(f"e{echo}")
    if len({k[7] for k in keys}) > 1 and comp:
        labels.append(comp)
    if len({(k[1], k[2]) for k in keys}) > 1:
        labels.append(f"{cols}x{rows}")
    if len({k[4] for k in keys}) > 1:
        labels.append(orientation_label(iop) if iop else "no orientation")
    if len({k[5] for k in keys}) > 1 and ps:
        labels.append(f"{ps[1]:g}x{ps[0]:g} mm")
    if len({k[3] for k in keys}) > 1:
        labels.append(color)
    if offset:
        labels.append("reversed polarity")
    return ", ".join(labels)


def _build(uid: str, frames: list[Frame], split: str, *,
           split_nonuniform: bool = False) -> list[Series]:
    """Order one homogeneous group; split by acquisition or go 4D on repeated positions."""
    problems: list[str] = []
    skipped: list[Skipped] = []
    # the same SOP instance twice (a copied file): keep one
    seen: dict = {}
    uniq = []
    reported = set()
    for fr in frames:
        key = (fr.instance.sop_uid, fr.index)
        if fr.instance.sop_uid and key in seen:
            if fr.instance.path not in reported:  # once per file, not per frame
                reported.add(fr.instance.path)
                skipped.append(Skipped(fr.instance.path, f"duplicate of {seen[key]} "
                                                         "(same SOPInstanceUID)"))
            continue
        seen[key] = fr.instance.path
        uniq.append(fr)
    frames = uniq

    has_geom = all(f.position is not None and f.orientation is not None for f in frames)
    if not has_geom:
        # no geometry: keep acquisition order (InstanceNumber, frame index)
        frames = sorted(frames, key=lambda f: (f.instance.instance_number or 0, f.index or 0))
        if len(frames) > 1 and any(f.position is None for f in frames):
            problems.append("no ImagePositionPatient/ImageOrientationPatient: slices stacked "
                            "by InstanceNumber with unknown spacing")
        s = Series(uid, frames, split, problems=problems, skipped=skipped)
        return [s]

    iop = frames[0].orientation
    from .geometry import slice_normal
    normal = slice_normal(iop)
    proj = np.array([f.position @ normal for f in frames])
    qpos = np.round(proj / 0.01).astype(np.int64)  # 0.01 mm bins
    counts = defaultdict(int)
    for q in qpos:
        counts[int(q)] += 1
    reps = set(counts.values())

    if reps != {1}:
        acqs = {f.acquisition for f in frames}
        # Repeated positions that separate into acquisitions, each with unique positions but
        # covering different positions (a localizer, partial re-scans): split. Acquisitions
        # that all cover the same positions are repetitions (fMRI, DCE, phases): 4D below.
        if len(acqs) > 1:
            by_acq = defaultdict(list)
            for f, q in zip(frames, qpos, strict=True):
                by_acq[f.acquisition].append((f, int(q)))
            unique_within = all(len({q for _, q in fq}) == len(fq) for fq in by_acq.values())
            same_positions = len({frozenset(q for _, q in fq) for fq in by_acq.values()}) == 1
            if unique_within and not same_positions:
                by_acq = {a: [f for f, _ in fq] for a, fq in by_acq.items()}
                out = []
                for a in sorted(by_acq, key=lambda x: (x is None, x)):
                    lab = ", ".join(x for x in (split, f"acq {a}") if x)
                    out.extend(_build(uid, by_acq[a], lab,
                                      split_nonuniform=split_nonuniform))
                return out
        if len(reps) == 1:
            # every position repeated equally often: a 4D series (time/volume, slice, ...)
            n_time = reps.pop()
            buckets = defaultdict(list)
            for f, q in zip(frames, qpos, strict=True):
                buckets[int(q)].append(f)
            for q in buckets:
                buckets[q].sort(key=lambda f: f.temporal)
            zs = sorted(buckets)
            ordered = [buckets[z][t] for t in range(n_time) for z in zs]
            first_vol = ordered[:len(zs)]
            so = order_slices([f.position for f in first_vol], iop,
                              fallback_spacing=first_vol[0].instance.spacing_between_slices
                              or first_vol[0].instance.slice_thickness)
            problems.extend(so.problems)
            problems.append(f"4D: {n_time} volumes of {len(zs)} slices")
            s = Series(uid, ordered, split, n_time=n_time, order=so, problems=problems,
                       skipped=skipped)
            return [s]
        # unequal repetition: keep the first (by InstanceNumber) at each position
        buckets = defaultdict(list)
        for f, q in zip(frames, qpos, strict=True):
            buckets[int(q)].append(f)
        keep = []
        for q in sorted(buckets):
            fs = sorted(buckets[q], key=lambda f: f.temporal)
            keep.append(fs[0])
            for extra in fs[1:]:
                where = f" frame {extra.index}" if extra.index is not None else ""
                skipped.append(Skipped(extra.instance.path + where,
                                       f"duplicate slice position {proj[frames.index(extra)]:.2f}"
                                       f" mm along the normal; kept {fs[0].instance.path}"))
        problems.append(f"{len(frames) - len(keep)} frame(s) at duplicate positions left out")
        frames = keep

    so = order_slices([f.position for f in frames], iop,
                      fallback_spacing=frames[0].instance.spacing_between_slices
                      or frames[0].instance.slice_thickness)
    ordered = [frames[i] for i in so.order]
    if split_nonuniform and not so.uniform and so.duplicates == 0 and len(ordered) > 2:
        runs = _uniform_runs(so.distances)
        if len(runs) > 1:
            out = []
            for j, (a, b) in enumerate(runs, start=1):
                lab = ", ".join(x for x in (split, f"part {j}") if x)
                part = _build(uid, ordered[a:b], lab, split_nonuniform=False)
                for p in part:
                    p.problems.insert(0, f"split from a non-uniform stack ({len(runs)} parts)")
                out.extend(part)
            return out
    problems.extend(so.problems)
    return [Series(uid, ordered, split, order=so, problems=problems, skipped=skipped)]


def _uniform_runs(distances, rel_tol: float = 0.01, abs_tol: float = 0.01) -> list[tuple]:
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
                 skipped: list | None = None) -> list[Series]:
    """Group parsed instances into ordered :class:`Series` (splitting where needed).

    A group whose geometry cannot be ordered is left out; its files are appended to
    ``skipped`` (when given) with the reason, and the other groups are still built.
    """
    instances = list(instances)
    _rank_echoes(instances)
    by_uid: dict[str, dict[tuple, list[Frame]]] = defaultdict(lambda: defaultdict(list))
    for inst in instances:
        for fr in inst.frames:
            by_uid[inst.series_uid][_group_key(fr)].append(fr)
    out: list[Series] = []
    for uid, groups in by_uid.items():
        keys = list(groups)
        for key in keys:
            split = _describe_split(key, keys) if len(keys) > 1 else ""
            try:
                built = _build(uid, groups[key], split, split_nonuniform=split_nonuniform)
                for b in built:  # properties the reader and `info` use at once
                    _ = (b.spacing, b.direction, b.origin, b.label)
            except FATAL:
                raise
            except BaseException as exc:  # noqa: BLE001 - odd geometry: skip, keep the rest
                reason = exc.reason if isinstance(exc, DicomToolsError) else _exc_text(exc)
                if skipped is not None:
                    for p in dict.fromkeys(f.instance.path for f in groups[key]):
                        skipped.append(Skipped(p, f"series {uid} cannot be ordered into a "
                                                  f"volume ({reason})"))
                continue
            out.extend(built)
    for s in out:
        if s.frames[0].flip_rows:
            s.problems.append("GE pepolar: reversed phase-encoding polarity, stored upside "
                              "down; rows flipped back (as dcm2niix)")
        if s.first.header.get("MosaicProblem"):
            s.problems.append("Siemens mosaic shown as one tiled 2D image: "
                              + s.first.header["MosaicProblem"])
    out.sort(key=lambda s: (s.patient_id, s.study_date, s.study_uid,
                            s.number if s.number is not None else 1 << 30, s.uid, s.split))
    return out


def scan_iter(path: str | os.PathLike | Iterable, split_nonuniform: bool = False):
    """Generator form of :func:`scan`: yields ``(done, total)`` per file, returns the
    :class:`SeriesList` (as ``StopIteration.value``; napari's generator workers pass it to
    ``returned``)."""
    if isinstance(path, (str, os.PathLike)):
        paths = [path]
    else:
        paths = list(path)
    sources, skipped = [], []
    for p in paths:
        s, k = iter_sources(p)
        sources.extend(s)
        skipped.extend(k)
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
            skipped.append(Skipped(str(src), f"cannot be read ({_exc_text(exc)})"))
        yield i + 1, total
    series = group_series(instances, split_nonuniform, skipped)
    for s in series:
        skipped.extend(s.skipped)
    return SeriesList(series, skipped)


def scan(path: str | os.PathLike | Iterable, *,
         progress: Callable[[int, int], None] | None = None,
         split_nonuniform: bool = False) -> SeriesList:
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
    gen = scan_iter(path, split_nonuniform)
    while True:
        try:
            done, total = next(gen)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(done, total)
