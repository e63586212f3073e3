"""What the DICOM object modules share (private): SEG, RTSTRUCT and SR read and write against
an image series in the same way.

* the reference series of a new object (:func:`reference_series`, :func:`output_reference`,
  never writing inside a source folder) and its headers as highdicom takes them
  (:func:`source_datasets`);
* the image series an existing object refers to (:func:`pick_reference`);
* reading an object's data set with a clear refusal of other objects (:func:`read_object`);
* label maps in (:func:`masks_from`: checks and the segment values) and out (:func:`pack`:
  segments into as few non-overlapping label arrays as possible);
* the short SNOMED CT vocabulary of segment categories and types, which SR findings reuse
  (:data:`CATEGORIES`, :data:`TYPES`, :func:`code`).

No Qt, no napari.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .errors import DicomToolsError, UnreadableDicomError

if TYPE_CHECKING:
    from typing import TypeAlias

    from pydicom import Dataset

    from .headers import Frame, Instance
    from .series import Series
    from .sources import Source

#: a label array: segment numbers as values (uint8, or uint16 beyond 255 segments)
LabelArray: TypeAlias = "npt.NDArray[np.unsignedinteger[Any]]"
#: slice indices of a segment's frames and its ``(frames, rows, columns)`` masks
SliceMasks: TypeAlias = "tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]"
#: a coded concept: (code value, coding scheme designator, code meaning)
Code: TypeAlias = "tuple[str, str, str]"

# --------------------------------------------------------------------------------------------
# coded concepts: a short list (SNOMED CT, CID 7150 categories / CID 7151 types)

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


def _sct(name: str) -> Code:
    from pydicom.sr.codedict import codes

    c = getattr(codes.SCT, name)
    return (str(c.value), str(c.scheme_designator), str(c.meaning))


def keyword(value: str) -> str:
    """A vocabulary keyword as users type it: ``"Blood_Vessel "`` -> ``"blood vessel"``."""
    return value.strip().lower().replace("_", " ")


def code(value: str | Sequence[str], what: str, path: str | None = None) -> Code:
    """A coded concept from a keyword of the short list or ``(value, scheme, meaning)``;
    ``what`` is ``"category"`` or ``"type"``."""
    if isinstance(value, str):
        key = keyword(value)
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


# --------------------------------------------------------------------------------------------
# the image series of an object


def pick_reference(candidates: Iterable[Series], series_uids: set[str],
                   sop_uids: set[str]) -> Series | None:
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


def reference_series(reference: Series | os.PathLike[str] | str) -> Series:
    """The single-volume image series a new SEG, RTSTRUCT or SR will reference.

    Parameters
    ----------
    reference : Series, str or os.PathLike
        A series from :func:`~napari_dicomtools.core.series.scan`, or a path holding exactly
        one image series.

    Returns
    -------
    Series
        The series, checked to be one volume (not 4D) with patient geometry.

    Raises
    ------
    DicomToolsError
        The path holds no image series or several, or the series is 4D or has no patient
        geometry (position, orientation, Frame of Reference).

    Examples
    --------
    >>> import tempfile
    >>> from napari_dicomtools.core.synthetic import write_series
    >>> folder = tempfile.mkdtemp()
    >>> _ = write_series(folder + "/ct", np.zeros((3, 4, 4), np.int16))
    >>> reference_series(folder + "/ct").shape
    (3, 4, 4)
    """
    from .series import Series, scan

    if isinstance(reference, Series):
        series = reference
    else:
        found = [s for s in scan(reference) if s.kind == "IMAGE"]
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


def output_reference(reference: Series | os.PathLike[str] | str, path: str) -> Series:
    """The reference series of an object written to ``path``, refusing an output inside the
    folder of any of its files (sources are never written)."""
    from .safety import refuse_inside_source

    series = reference_series(reference)
    for f in series.files:
        refuse_inside_source(path, f.split("::")[0])
    return series


# --------------------------------------------------------------------------------------------
# data sets


def read_object(path: Source | os.PathLike[str] | str, accept: Callable[[Dataset], bool],
                what: str, *, pixels: bool = True, force: bool = False) -> tuple[Dataset, str]:
    """The data set of an object file (with or without Pixel Data) and its name; a parse
    error, or a data set ``accept`` refuses ("not <what>"), raise with the file's name."""
    from .headers import open_dicom, safe_dcmread
    from .sources import Source

    src = path if isinstance(path, Source) else Source.from_string(os.fspath(path))
    with open_dicom(src) as (fp, _size, _pre):
        try:
            ds = safe_dcmread(fp, str(src), stop_before_pixels=not pixels, force=force)
            ds.get("PixelData", None)  # read a deferred value while the file is open
        except DicomToolsError:
            raise
        except Exception as exc:  # noqa: BLE001 - pydicom raises anything on a broken file
            raise UnreadableDicomError(str(src), f"cannot be parsed ({exc})") from None
    if not accept(ds):
        sop = str(ds.get("SOPClassUID", "") or "")
        raise DicomToolsError(str(src), f"not {what} (SOP class {sop or 'missing'})")
    return ds, str(src)


def instance_header(inst: Instance) -> Dataset:
    """The header (no Pixel Data) of one scanned instance, wherever it is (file, zip)."""
    from .headers import open_dicom, safe_dcmread

    with open_dicom(inst.source) as (fp, _size, _pre):
        ds: Dataset = safe_dcmread(fp, inst.path, stop_before_pixels=True)
    return ds


#: patient/study attributes a new object copies from its source and must carry (Type 2)
TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
                "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName")


def _like(first: Dataset, frame: Frame) -> Dataset:
    """The first slice's header standing for another single-frame slice of its series."""
    from pydicom.dataset import Dataset
    from pydicom.valuerep import DSfloat

    def ds(values: Iterable[float] | None) -> list[DSfloat] | None:
        return None if values is None else [DSfloat(float(v), auto_format=True)
                                            for v in values]

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


def _read_source_header(inst: Instance) -> Dataset:
    """A reference instance's header with the Type 2 attributes a new object copies."""
    import pydicom

    ds: Dataset
    if inst.source.member is None and inst.transfer_syntax != "1.2.840.10008.1.2.1.99":
        # scan() saw the file: not deflated, so pydicom reads just the header
        ds = pydicom.dcmread(inst.path, stop_before_pixels=True, force=True)
    else:
        ds = instance_header(inst)
    for kw in TYPE2_COPIED:  # Type 2 in the new object: empty when the source lacks them
        if kw not in ds:
            setattr(ds, kw, "")
    return ds


def source_datasets(series: Series) -> tuple[list[Dataset], list[int] | None]:
    """Reference headers in the order highdicom expects, and the frame order to apply.

    Single-frame images: one data set per slice, in slice order. One multi-frame image:
    that data set, and the slice index of each of its frames (frame order)."""
    insts: list[Instance] = []
    for f in series.frames:
        if not insts or insts[-1] is not f.instance:
            insts.append(f.instance)
    unique = list({id(i): i for i in insts}.values())
    dss: list[Dataset] = []
    for k, inst in enumerate(unique):
        if k and len(unique) == len(series.frames):
            # one single-frame file per slice: what highdicom takes from each source (SOP
            # class/instance, plane position, orientation, pixel spacing) scan() has
            # already read; the modules it copies come from the first header
            dss.append(_like(dss[0], series.frames[k]))
        else:
            dss.append(_read_source_header(inst))
    if len(unique) == 1 and series.frames[0].index is not None:
        return dss, _frame_order(series, unique[0])
    if any(f.index is not None for f in series.frames):
        raise DicomToolsError(series.first.path, "a reference made of several multi-frame "
                                                 "files is not supported")
    return dss, None


def _frame_order(series: Series, inst: Instance) -> list[int]:
    """The slice index of each frame of the one multi-frame file of ``series``."""
    where = {f.index: k for k, f in enumerate(series.frames)}
    if len(series.frames) != inst.n_frames or set(where) != set(range(inst.n_frames)):
        raise DicomToolsError(inst.path, "the multi-frame reference has frames that are not "
                                         "part of the volume; cannot reference it frame by "
                                         "frame")
    return [where[i] for i in range(inst.n_frames)]


# --------------------------------------------------------------------------------------------
# label maps


def _values(a: npt.NDArray[Any]) -> set[int]:
    """The non-zero values of a label array (sorting only the labelled voxels: fast when, as
    usual, most of the volume is background)."""
    return {int(v) for v in np.unique(a[a != 0])}


def masks_from(labels: npt.ArrayLike | Sequence[npt.ArrayLike], fractional: bool,
               shape: tuple[int, ...], path: str) -> tuple[list[int], npt.NDArray[Any]]:
    """(segment values, pixels): a ``(slice, row, column)`` label map with values 1..N, or
    ``(segments, slice, row, column)`` masks/fractions when segments overlap or are
    fractional."""
    if fractional:
        return _fractions_from(labels, shape, path)
    seq = list(labels) if isinstance(labels, (list, tuple)) else [labels]
    arrays = [np.asarray(a) for a in seq]
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
    seen: set[int] = set()
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


def _fractions_from(labels: npt.ArrayLike | Sequence[npt.ArrayLike], shape: tuple[int, ...],
                    path: str) -> tuple[list[int], npt.NDArray[np.float32]]:
    arr = np.asarray(labels, np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1:] != tuple(shape):
        raise DicomToolsError(path, f"fractions have shape {arr.shape}; expected "
                                    f"(segments,) + {tuple(shape)} on the reference grid")
    if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
        raise DicomToolsError(path, "fractions must be finite values in [0, 1]")
    return list(range(1, arr.shape[0] + 1)), arr


def pack(masks: dict[int, SliceMasks], shape: tuple[int, int, int],
         max_number: int) -> tuple[list[LabelArray], list[list[int]]]:
    """Segments into as few label arrays as keep them from overlapping (first fit).

    ``masks`` maps each segment number to the slice indices of its frames and their masks."""
    dtype = np.uint8 if max_number < 256 else np.uint16
    labels: list[LabelArray] = []
    groups: list[list[int]] = []
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


def _slab(arr: LabelArray, idx: npt.NDArray[np.intp]) -> LabelArray | None:
    """A view of the slices ``idx`` of ``arr`` when they are consecutive and ascending (the
    usual frame order), else None."""
    if len(idx) and idx[-1] - idx[0] == len(idx) - 1 and np.all(np.diff(idx) == 1):
        return arr[idx[0]:idx[-1] + 1]
    return None


def _or_into(arr: LabelArray, idx: npt.NDArray[np.intp],
             frames: npt.NDArray[np.bool_], number: int) -> None:
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
