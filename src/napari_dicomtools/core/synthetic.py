"""Synthetic DICOM series with known geometry: the ground truth for tests, samples, benchmarks.

:func:`write_series` writes one file per slice (shuffled names, InstanceNumber optionally
against the geometry) and returns the truth: the values in output units and the RAS affine a
correct reader must recover.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np

from . import geometry

__all__ = [
    "Truth", "Archive", "phantom", "write_series", "write_enhanced", "write_rtdose",
    "make_archive",
]


def phantom(shape=(48, 96, 96), seed: int = 0, noise: float = 8.0) -> np.ndarray:
    """A CT-like phantom in HU: air, an elliptic body, two lungs, a spine, a lesion.

    Asymmetric on purpose (the lesion sits on the patient's left, anterior), so flips and
    transposes show.
    """
    n, h, w = shape
    z, y, x = np.ogrid[0:n, 0:h, 0:w]
    cz, cy, cx = (n - 1) / 2, (h - 1) / 2, (w - 1) / 2
    vol = np.full(shape, -1000.0, np.float32)
    body = ((x - cx) / (0.45 * w)) ** 2 + ((y - cy) / (0.35 * h)) ** 2 <= 1
    vol[np.broadcast_to(body, shape)] = 40
    zz = np.abs(z - cz) <= 0.42 * n
    for ox, r, hu in ((-0.18, 0.12, -820), (0.18, 0.12, -820)):
        m = ((x - cx - ox * w) ** 2 + (y - cy + 0.02 * h) ** 2 <= (r * w) ** 2) & zz
        vol[m] = hu
    spine = ((x - cx) ** 2 + (y - cy - 0.22 * h) ** 2 <= (0.05 * w) ** 2)
    vol[np.broadcast_to(spine, shape)] = 700
    # a small bright lesion on the patient's left (image right), anterior, upper half
    lesion = ((x - cx - 0.1 * w) ** 2 + (y - cy + 0.12 * h) ** 2 + ((z - 0.7 * n) * 2) ** 2
              <= (0.05 * w) ** 2)
    vol[lesion] = 250
    if noise:
        vol += np.random.default_rng(seed).normal(0, noise, shape).astype(np.float32)
    return np.clip(np.round(vol), -1024, 3071)


@dataclass
class Truth:
    """What a correct reader must find for a series written by :func:`write_series`."""

    values: np.ndarray  # (slice, row, column) in output units, slices in geometric order
    spacing: tuple  # (slice-step length, row, column)
    origin: np.ndarray  # LPS of voxel (0,0,0)
    direction: np.ndarray  # 3x3, columns (slice, row, column)
    files: list

    @property
    def affine_lps(self):
        return geometry.affine_lps(self.spacing, self.origin, self.direction)

    @property
    def affine_ras(self):
        return geometry.affine_ras(self.spacing, self.origin, self.direction)


def _orthonormal_iop(orientation):
    iop = np.asarray(orientation, float)
    r = iop[:3] / np.linalg.norm(iop[:3])
    c = iop[3:] - (iop[3:] @ r) * r
    c /= np.linalg.norm(c)
    return r, c


def _new_dataset(sop_class: str):
    """An empty data set with file meta (Explicit VR Little Endian) and fresh SOP UIDs."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    sop = generate_uid()
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    return ds


def write_series(out_dir, values=None, *, spacing=(2.5, 0.8, 0.8),
                 origin=(-38.0, -38.0, -60.0), orientation=(1, 0, 0, 0, 1, 0),
                 tilt_deg: float = 0.0, drop_slices=(), modality: str = "CT",
                 slope: float = 1.0, intercept: float = -1024.0, shuffle: bool = True,
                 reverse_instance: bool = True, series_number: int = 3,
                 description: str = "Synthetic phantom", series_uid: str | None = None,
                 study_uid: str | None = None, frame_uid: str | None = None,
                 window=(40, 400), photometric: str = "MONOCHROME2", seed: int = 0,
                 patient=("Phantom^Synthetic", "SYN001"), prefix: str = "IM",
                 transfer_syntax: str | None = None) -> Truth:
    """Write a single-frame DICOM series with exactly known geometry.

    Parameters
    ----------
    out_dir : path
        Folder to create (must not exist or be empty: nothing is overwritten).
    values : ndarray, optional
        ``(slice, row, column)`` values in output units (HU for CT), slices in geometric order
        (ascending along the normal). Default: :func:`phantom`.
    spacing : (float, float, float)
        Slice spacing along the normal, row spacing, column spacing (mm).
    origin : 3 floats
        LPS ImagePositionPatient of the first slice.
    orientation : 6 floats
        ImageOrientationPatient (row cosines, column cosines); oblique allowed.
    tilt_deg : float
        Gantry tilt: each slice shifts along the column direction by
        ``spacing * tan(tilt)``, and GantryDetectorTilt is set.
    drop_slices : iterable of int
        Slice indices not written (gaps).
    shuffle, reverse_instance : bool
        Random file names; InstanceNumber running against the geometry.

    Returns
    -------
    Truth
    """
    from pydicom.uid import (
        CTImageStorage,
        ExplicitVRLittleEndian,
        MRImageStorage,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    if values is None:
        values = phantom(seed=seed)
    values = np.asarray(values)
    n, rows, cols = values.shape
    os.makedirs(out_dir, exist_ok=True)
    if os.listdir(out_dir):
        raise FileExistsError(f"{out_dir}: not empty; write_series never overwrites")
    r, c = _orthonormal_iop(orientation)
    normal = np.cross(r, c)
    dz, dy, dx = (float(s) for s in spacing)
    step = normal * dz + c * dz * np.tan(np.deg2rad(tilt_deg))
    sop_class = {"CT": CTImageStorage, "MR": MRImageStorage}.get(modality,
                                                                SecondaryCaptureImageStorage)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    stored = np.round((values.astype(np.float64) - intercept) / slope)
    signed = stored.min() < 0
    if photometric == "MONOCHROME1":
        hi = 4095
        stored = hi - stored
    stored = stored.astype(np.int16 if signed else np.uint16)
    keep = [k for k in range(n) if k not in set(drop_slices)]
    names = list(range(len(keep)))
    if shuffle:
        random.Random(seed).shuffle(names)
    files = []
    ts = transfer_syntax or ExplicitVRLittleEndian
    for j, k in enumerate(keep):
        pos = np.asarray(origin, float) + k * step
        ds = _new_dataset(sop_class)
        ds.PatientName, ds.PatientID = patient
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.StudyDate = ds.SeriesDate = "20260101"
        ds.StudyTime = ds.SeriesTime = "120000"
        ds.StudyDescription = "Synthetic study"
        ds.SeriesDescription = description
        ds.Modality = modality
        ds.SeriesNumber = series_number
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = (len(keep) - j) if reverse_instance else (j + 1)
        ds.ImagePositionPatient = [round(float(v), 6) for v in pos]
        ds.ImageOrientationPatient = [round(float(v), 8) for v in (*r, *c)]
        ds.PixelSpacing = [dy, dx]
        ds.SliceThickness = dz
        if tilt_deg:
            ds.GantryDetectorTilt = tilt_deg
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = 16
        ds.BitsStored = 16 if signed else 12
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        if modality == "CT":
            ds.RescaleType = "HU"
        if window:
            ds.WindowCenter, ds.WindowWidth = window
        ds.PixelData = stored[k].tobytes()
        fn = os.path.join(out_dir, f"{prefix}{names[j]:05d}.dcm")
        if ts != ExplicitVRLittleEndian:
            ds.compress(ts)
        ds.save_as(fn, enforce_file_format=True)
        files.append(fn)
    kept_values = values[keep]
    sp = (float(np.linalg.norm(step)), dy, dx)
    direction = np.column_stack([step / np.linalg.norm(step), c, r])
    return Truth(kept_values, sp, np.asarray(origin, float), direction, files)


def write_enhanced(path, values, *, spacing=(2.0, 0.8, 0.8), origin=(-20.0, -20.0, 10.0),
                   orientation=(1, 0, 0, 0, 1, 0), modality: str = "CT", seed: int = 0,
                   shuffle_frames: bool = True, per_frame_rescale: bool = True,
                   series_uid: str | None = None, study_uid: str | None = None,
                   frame_uid: str | None = None) -> Truth:
    """Write one enhanced multi-frame file (per-frame functional groups) with known geometry.

    Frames are stored in a shuffled order; each frame's position comes only from its
    PlanePositionSequence, and (with ``per_frame_rescale``) each frame has its own
    RescaleIntercept in PixelValueTransformationSequence, so a reader must use the
    functional groups to get both the order and the values right. ``values`` may be 4D
    ``(time, slice, row, column)``: frames then carry a TemporalPositionIndex.
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.uid import generate_uid

    sop_class = {"CT": "1.2.840.10008.5.1.4.1.1.2.1",
                 "MR": "1.2.840.10008.5.1.4.1.1.4.1"}[modality]
    values = np.asarray(values)
    four_d = values.ndim == 4
    vals4 = values if four_d else values[None]
    n_t, n, rows, cols = vals4.shape
    if os.path.exists(path):
        raise FileExistsError(f"{path}: exists; write_enhanced never overwrites")
    r, c = _orthonormal_iop(orientation)
    normal = np.cross(r, c)
    order = [(t, k) for t in range(n_t) for k in range(n)]
    if shuffle_frames:
        random.Random(seed).shuffle(order)
    intercepts = [-1024.0 - (10.0 * k if per_frame_rescale else 0.0) for k in range(n)]

    ds = _new_dataset(sop_class)
    ds.PatientName, ds.PatientID = "Phantom^Enhanced", "ENH001"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.FrameOfReferenceUID = frame_uid or generate_uid()
    ds.StudyDate = "20260101"
    ds.Modality = modality
    ds.SeriesNumber = 7
    ds.SeriesDescription = "Enhanced phantom"
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.NumberOfFrames = n * n_t
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0

    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = [float(spacing[1]), float(spacing[2])]
    pm.SliceThickness = float(spacing[0])
    shared.PixelMeasuresSequence = Sequence([pm])
    po = Dataset()
    po.ImageOrientationPatient = [round(float(v), 8) for v in (*r, *c)]
    shared.PlaneOrientationSequence = Sequence([po])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])

    per_frame = []
    stored = []
    for j, (t, k) in enumerate(order):
        fg = Dataset()
        pp = Dataset()
        pp.ImagePositionPatient = [round(float(v), 6) for v in
                                   np.asarray(origin, float) + k * float(spacing[0]) * normal]
        fg.PlanePositionSequence = Sequence([pp])
        pv = Dataset()
        pv.RescaleSlope, pv.RescaleIntercept = 1.0, intercepts[k]
        pv.RescaleType = "HU" if modality == "CT" else "US"
        fg.PixelValueTransformationSequence = Sequence([pv])
        fc = Dataset()
        fc.InStackPositionNumber = k + 1
        fc.DimensionIndexValues = [t + 1, k + 1]
        fc.FrameAcquisitionNumber = j + 1
        if four_d:
            fc.TemporalPositionIndex = t + 1
        fg.FrameContentSequence = Sequence([fc])
        per_frame.append(fg)
        s = np.round(vals4[t, k] - intercepts[k])
        if s.min() < 0 or s.max() > 65535:
            raise ValueError("values do not fit 16-bit storage with the chosen intercepts")
        stored.append(s.astype(np.uint16))
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.PixelData = np.stack(stored).tobytes()
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    direction = np.column_stack([normal, c, r])
    return Truth(values, tuple(float(x) for x in spacing), np.asarray(origin, float), direction,
                 [os.fspath(path)])


@dataclass
class Archive:
    """What :func:`make_archive` wrote: the truth a batch job is checked against.

    ``series`` maps each SeriesInstanceUID to its files; ``bad_series`` are series whose
    headers are fine but whose pixel data cannot be decoded (a conversion must fail them,
    alone); ``corrupt`` are files that are not readable DICOM (truncated, not DICOM at all);
    ``duplicates`` are byte copies of files listed in ``series``, under other names.
    """

    root: str
    series: dict  # series uid -> list of files
    patients: list
    bad_series: list
    corrupt: list
    duplicates: list

    @property
    def files(self) -> list:
        """Every file written, sorted."""
        out = [f for fs in self.series.values() for f in fs]
        return sorted(out + self.corrupt + self.duplicates)


def make_archive(root, patients: int = 3, studies: int = 2, series: int = 3, *,
                 slices: int = 6, size: int = 16, corrupt: int = 2, duplicates: int = 2,
                 bad_series: int = 1, seed: int = 0) -> Archive:
    """Write a research archive: ``patients`` x ``studies`` x ``series`` small CT/MR series.

    The layout is ``root/P<i>/S<j>/<k>_<modality>/IM*.dcm``; modalities alternate CT/MR,
    geometry and values vary per series (each series is a :func:`write_series` call, so
    its geometry is known exactly). Added for realism: ``corrupt`` broken files (truncated
    headers and a text file) in patient folders, ``duplicates`` byte copies of existing
    files in a ``copies`` folder, and ``bad_series`` RLE-compressed series whose pixel
    fragments are garbage (headers intact). With the defaults: 18 series, about 110 files.
    ``patients=50, studies=4, series=5, slices=20`` gives the 20,000-file benchmark archive.

    Returns
    -------
    Archive
    """
    import shutil

    from pydicom.uid import RLELossless, generate_uid

    root = os.fspath(root)
    if os.path.exists(root) and os.listdir(root):
        raise FileExistsError(f"{root}: not empty; make_archive never overwrites")
    rng = np.random.default_rng(seed)
    out: dict = {}
    pats = []
    n_total = patients * studies * series
    bad_at = set(np.linspace(0, n_total - 1, bad_series, dtype=int).tolist()) \
        if bad_series else set()
    bad: list = []
    k_all = 0
    base = phantom((slices, size, size), seed=seed, noise=0)
    for p in range(patients):
        pid = f"PAT{p:05d}"
        pats.append(pid)
        for s in range(studies):
            study_uid = generate_uid()
            for k in range(series):
                mod = "CT" if (s + k) % 2 == 0 else "MR"
                values = base + rng.integers(-20, 20, size=base.shape)
                if mod == "MR":
                    values = np.clip(values + 1024, 0, 4000)
                uid = generate_uid()
                folder = os.path.join(root, f"P{p:03d}", f"S{s}", f"{k + 1}_{mod}")
                is_bad = k_all in bad_at
                tr = write_series(
                    folder, values, modality=mod, series_number=k + 1,
                    description=f"{mod} {'axial' if k % 2 == 0 else 'thin'} {k + 1}",
                    spacing=(2.0 + 0.5 * (k % 3), 0.7 + 0.1 * p % 3, 0.7 + 0.1 * p % 3),
                    origin=(-5.0 * p, 3.0 * s, -10.0 * k), series_uid=uid,
                    study_uid=study_uid, patient=(f"Archive^Patient{p}", pid),
                    intercept=-1024.0 if mod == "CT" else 0.0, seed=seed + k_all,
                    window=None if mod == "MR" else (40, 400),
                    transfer_syntax=RLELossless if is_bad else None)
                if is_bad:
                    _garble_pixels(tr.files[len(tr.files) // 2])
                    bad.append(uid)
                out[uid] = tr.files
                k_all += 1
    files = [f for fs in out.values() for f in fs]
    broken = []
    for i in range(corrupt):
        target = os.path.join(root, f"P{i % patients:03d}", f"broken{i}.dcm")
        if i % 2 == 0:  # a truncated copy: preamble, DICM and part of the header
            with open(files[(7 * i) % len(files)], "rb") as f:
                head = f.read(200)
            with open(target, "wb") as f:
                f.write(head)
        else:
            with open(target, "w") as f:
                f.write("not a DICOM file\n")
        broken.append(target)
    copies = []
    if duplicates:
        os.makedirs(os.path.join(root, "copies"), exist_ok=True)
    for i in range(duplicates):
        src = files[(13 * i + 5) % len(files)]
        target = os.path.join(root, "copies", f"copy{i}.dcm")
        shutil.copyfile(src, target)
        copies.append(target)
    return Archive(root, out, pats, bad, broken, copies)


def _garble_pixels(path) -> None:
    """Overwrite the bytes of an encapsulated Pixel Data fragment with noise (the length
    kept), so that the header reads but the frame cannot be decoded."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    at = data.rfind(b"\xfe\xff\x00\xe0")  # the last item tag: the frame's fragment
    start = at + 8
    data[start:start + 64] = b"\xff" * 64  # an RLE header claiming 4294967295 segments
    with open(path, "wb") as f:
        f.write(bytes(data))


def write_rtdose(path, dose, *, spacing=(3.0, 2.5, 2.5), origin=(-30.0, -30.0, -20.0),
                 orientation=(1, 0, 0, 0, 1, 0), units: str = "GY",
                 offsets: str = "relative", scaling: float = 1e-4,
                 frame_uid: str | None = None, study_uid: str | None = None,
                 patient=("Phantom^Synthetic", "SYN001")) -> Truth:
    """Write a multi-frame RT Dose with exactly known geometry (the way planning systems do).

    Parameters
    ----------
    path : path
        The file to create (never overwritten).
    dose : ndarray
        ``(slice, row, column)`` dose, slices ascending along the normal.
    spacing, origin, orientation :
        As for :func:`write_series` (``origin`` is ImagePositionPatient of frame 0).
    units : {"GY", "RELATIVE"}
        DoseUnits (3004,0002).
    offsets : {"relative", "absolute", "descending"}
        GridFrameOffsetVector (3004,000C) as offsets from frame 0 (``0, dz, 2dz, ...``), as
        absolute z coordinates (allowed for axial grids: ``z0, z0 + dz, ...``), or with the
        frames stored from the last slice down (``0, -dz, ...``, ImagePositionPatient then
        that of the last slice).
    scaling : float
        DoseGridScaling (3004,000E): stored integer x scaling = dose.

    Returns
    -------
    Truth
        The dose as it will read back (rounded to ``scaling``) and its geometry.
    """
    from pydicom.uid import generate_uid

    from .rtdose import RTDOSE_SOP_CLASS

    path = os.fspath(path)
    if os.path.exists(path):
        raise FileExistsError(f"{path}: exists; write_rtdose never overwrites")
    dose = np.asarray(dose, float)
    n, rows, cols = dose.shape
    r, c = _orthonormal_iop(orientation)
    normal = np.cross(r, c)
    dz, dy, dx = (float(s) for s in spacing)
    stored = np.round(dose / scaling).astype(np.uint32)
    first = np.asarray(origin, float)
    steps = np.arange(n) * dz
    if offsets == "descending":
        stored = stored[::-1]
        first = first + normal * dz * (n - 1)
        steps = -steps
    elif offsets == "absolute":
        if not np.allclose(normal, [0, 0, 1]):
            raise ValueError("absolute GridFrameOffsetVector values need an axial grid")
        steps = steps + first[2]
    ds = _new_dataset(RTDOSE_SOP_CLASS)
    ds.PatientName, ds.PatientID = patient
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = frame_uid or generate_uid()
    ds.StudyDate, ds.StudyTime = "20260101", "120000"
    ds.Modality = "RTDOSE"
    ds.SeriesNumber, ds.InstanceNumber = 900, 1
    ds.SeriesDescription = "Synthetic dose"
    ds.ImagePositionPatient = [round(float(v), 6) for v in first]
    ds.ImageOrientationPatient = [round(float(v), 8) for v in (*r, *c)]
    ds.PixelSpacing = [dy, dx]
    ds.NumberOfFrames = n
    ds.FrameIncrementPointer = 0x3004000C
    ds.GridFrameOffsetVector = [round(float(v), 6) for v in steps]
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 32
    ds.HighBit = 31
    ds.PixelRepresentation = 0
    ds.DoseUnits = units
    ds.DoseType = "PHYSICAL"
    ds.DoseSummationType = "PLAN"
    ds.DoseGridScaling = f"{scaling:.6g}"
    ds.PixelData = stored.astype("<u4").tobytes()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return Truth(np.round(dose / scaling) * scaling, (dz, dy, dx), np.asarray(origin, float),
                 np.column_stack([normal, c, r]), [path])
