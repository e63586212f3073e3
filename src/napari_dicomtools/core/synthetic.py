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
