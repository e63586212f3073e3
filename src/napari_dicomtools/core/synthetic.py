"""Synthetic DICOM series with known geometry: the ground truth for tests, samples, benchmarks.

:func:`write_series` writes one file per slice (shuffled names, InstanceNumber optionally
against the geometry) and returns the truth: the values in output units and the RAS affine a
correct reader must recover.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import geometry
from .geometry import Floats

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = [
    "Truth", "Archive", "phantom", "write_series", "write_enhanced", "write_rtdose",
    "make_archive",
]

PathLike = str | os.PathLike[str]


def phantom(shape: tuple[int, int, int] = (48, 96, 96), seed: int = 0,
            noise: float = 8.0) -> npt.NDArray[np.float32]:
    """A CT-like phantom in HU: air, an elliptic body, two lungs, a spine, a lesion.

    Asymmetric on purpose (the lesion sits on the patient's left, anterior), so flips and
    transposes show.

    Parameters
    ----------
    shape : (int, int, int)
        ``(slice, row, column)``.
    seed : int
        Seed of the noise.
    noise : float
        Standard deviation (HU) of Gaussian noise; 0 for none.

    Returns
    -------
    numpy.ndarray of float32
        Whole HU values in -1024..3071.

    Examples
    --------
    >>> vol = phantom((4, 32, 32), noise=0)
    >>> vol.shape, vol.dtype, float(vol[0, 0, 0]), float(vol[2, 16, 16])
    ((4, 32, 32), dtype('float32'), -1000.0, 40.0)
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
    out: npt.NDArray[np.float32] = np.clip(np.round(vol), -1024, 3071)
    return out


@dataclass
class Truth:
    """What a correct reader must find for a series written by :func:`write_series`.

    Parameters
    ----------
    values : numpy.ndarray
        ``(slice, row, column)`` (4D: ``(time, slice, row, column)``) in output units,
        slices in geometric order.
    spacing : tuple of 3 float
        ``(slice-step length, row, column)`` mm.
    origin : numpy.ndarray
        LPS (mm) of the centre of voxel ``(0, 0, 0)``.
    direction : numpy.ndarray
        3x3, columns: the unit LPS vectors of the ``(slice, row, column)`` axes.
    files : list of str
        The files written.

    Examples
    --------
    >>> import numpy as np
    >>> t = Truth(np.zeros((2, 3, 4)), (2.0, 0.5, 0.5), np.zeros(3), np.eye(3)[:, ::-1], [])
    >>> t.affine_lps.diagonal().tolist()
    [0.5, 0.5, 2.0, 1.0]
    """

    values: npt.NDArray[Any]
    spacing: tuple[float, ...]
    origin: Floats
    direction: Floats
    files: list[str]

    @property
    def affine_lps(self) -> Floats:
        """4x4: voxel ``(column, row, slice)`` -> LPS mm."""
        return geometry.affine_lps(self.spacing, self.origin, self.direction)

    @property
    def affine_ras(self) -> Floats:
        """4x4: voxel ``(column, row, slice)`` -> RAS mm (NIfTI's sform)."""
        return geometry.affine_ras(self.spacing, self.origin, self.direction)


def _orthonormal_iop(orientation: npt.ArrayLike) -> tuple[Floats, Floats]:
    """Row and column direction cosines of an ImageOrientationPatient, made orthonormal."""
    iop = np.asarray(orientation, float)
    r = iop[:3] / np.linalg.norm(iop[:3])
    c = iop[3:] - (iop[3:] @ r) * r
    c /= np.linalg.norm(c)
    return r, c


def _new_dataset(sop_class: str) -> Dataset:
    """An empty data set with file meta (Explicit VR Little Endian) and fresh SOP UIDs."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    sop = generate_uid()
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop
    return ds


def _set_uids(ds: Dataset, study_uid: str | None, series_uid: str | None,
              frame_uid: str | None) -> None:
    """Study, series and frame-of-reference UIDs: the given ones, else fresh ones."""
    from pydicom.uid import generate_uid

    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.FrameOfReferenceUID = frame_uid or generate_uid()


def _iop(r: Floats, c: Floats) -> list[float]:
    """ImageOrientationPatient as written (8 decimals)."""
    return [round(float(v), 8) for v in (*r, *c)]


def _ipp(position: npt.ArrayLike) -> list[float]:
    """ImagePositionPatient as written (6 decimals)."""
    return [round(float(v), 6) for v in np.asarray(position, float)]


def _stored(values: npt.NDArray[Any], slope: float,
            intercept: float) -> tuple[npt.NDArray[Any], bool]:
    """Stored 16-bit pixel values of output ``values`` and whether they are signed (any
    photometric interpretation: MONOCHROME1 changes the display, not the values)."""
    stored = np.round((values.astype(np.float64) - intercept) / slope)
    signed = bool(stored.min() < 0)
    return stored.astype(np.int16 if signed else np.uint16), signed


def write_series(out_dir: PathLike, values: npt.ArrayLike | None = None, *,
                 spacing: Sequence[float] = (2.5, 0.8, 0.8),
                 origin: Sequence[float] = (-38.0, -38.0, -60.0),
                 orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
                 tilt_deg: float = 0.0, drop_slices: Iterable[int] = (), modality: str = "CT",
                 slope: float = 1.0, intercept: float = -1024.0, shuffle: bool = True,
                 reverse_instance: bool = True, series_number: int = 3,
                 description: str = "Synthetic phantom", series_uid: str | None = None,
                 study_uid: str | None = None, frame_uid: str | None = None,
                 window: tuple[float, float] | None = (40, 400),
                 photometric: str = "MONOCHROME2", seed: int = 0,
                 patient: tuple[str, str] = ("Phantom^Synthetic", "SYN001"),
                 prefix: str = "IM", transfer_syntax: str | None = None) -> Truth:
    """Write a single-frame DICOM series with exactly known geometry.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Folder to create (must not exist or be empty: nothing is overwritten).
    values : array_like, optional
        ``(slice, row, column)`` values in output units (HU for CT), slices in geometric order
        (ascending along the normal). Default: :func:`phantom`.
    spacing : (float, float, float)
        Slice spacing along the normal, row spacing, column spacing (mm).
    origin : (float, float, float)
        LPS ImagePositionPatient of the first slice.
    orientation : 6 floats
        ImageOrientationPatient (row cosines, column cosines); oblique allowed.
    tilt_deg : float
        Gantry tilt: each slice shifts along the column direction by
        ``spacing * tan(tilt)``, and GantryDetectorTilt is set.
    drop_slices : iterable of int
        Slice indices not written (gaps).
    modality : str
        ``"CT"`` and ``"MR"`` get their image storage class, others Secondary Capture.
    slope, intercept : float
        RescaleSlope and RescaleIntercept (stored = (value - intercept) / slope).
    shuffle : bool
        Random file names (the geometric order is not the name order).
    reverse_instance : bool
        InstanceNumber running against the geometry.
    series_number : int
        SeriesNumber.
    description : str
        SeriesDescription.
    series_uid, study_uid, frame_uid : str, optional
        SeriesInstanceUID, StudyInstanceUID, FrameOfReferenceUID (default: fresh ones).
    window : (float, float) or None
        WindowCenter and WindowWidth (None: not written).
    photometric : {"MONOCHROME2", "MONOCHROME1"}
        PhotometricInterpretation. The stored values are the same for both
        (``(value - intercept) / slope``), and so is the window (in output units):
        MONOCHROME1 only says that the minimum value is displayed white.
    seed : int
        Seed of the default phantom's noise and of the shuffled names.
    patient : (str, str)
        PatientName and PatientID.
    prefix : str
        File name prefix (``<prefix><n:05d>.dcm``).
    transfer_syntax : str, optional
        A transfer syntax UID pydicom can compress to (default Explicit VR Little Endian).

    Returns
    -------
    Truth
        The values (without the dropped slices) and geometry a correct reader recovers.

    Raises
    ------
    FileExistsError
        When ``out_dir`` is not empty.

    Examples
    --------
    >>> import os, tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> truth = write_series(os.path.join(tmp, "ct"), phantom((3, 8, 8)), spacing=(2, 1, 1),
    ...                      tilt_deg=10)
    >>> len(truth.files), [round(s, 3) for s in truth.spacing]
    (3, [2.031, 1.0, 1.0])
    """
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    vals = phantom(seed=seed) if values is None else np.asarray(values)
    os.makedirs(out_dir, exist_ok=True)
    if os.listdir(out_dir):
        raise FileExistsError(f"{out_dir}: not empty; write_series never overwrites")
    r, c = _orthonormal_iop(orientation)
    dz, dy, dx = (float(s) for s in spacing)
    step = np.cross(r, c) * dz + c * dz * np.tan(np.deg2rad(tilt_deg))
    study_uid, series_uid = study_uid or generate_uid(), series_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    stored, signed = _stored(vals, slope, intercept)
    dropped = set(drop_slices)
    keep = [k for k in range(vals.shape[0]) if k not in dropped]
    names = list(range(len(keep)))
    if shuffle:
        random.Random(seed).shuffle(names)
    files = []
    ts = transfer_syntax or ExplicitVRLittleEndian
    for j, k in enumerate(keep):
        ds = _slice_dataset(modality, patient, description, series_number, signed,
                            photometric, slope, intercept, window)
        _set_uids(ds, study_uid, series_uid, frame_uid)
        ds.InstanceNumber = (len(keep) - j) if reverse_instance else (j + 1)
        ds.ImagePositionPatient = _ipp(np.asarray(origin, float) + k * step)
        ds.ImageOrientationPatient = _iop(r, c)
        ds.PixelSpacing = [dy, dx]
        ds.SliceThickness = dz
        if tilt_deg:
            ds.GantryDetectorTilt = tilt_deg
        ds.Rows, ds.Columns = stored.shape[1:]
        ds.PixelData = stored[k].tobytes()
        fn = os.path.join(out_dir, f"{prefix}{names[j]:05d}.dcm")
        if ts != ExplicitVRLittleEndian:
            ds.compress(ts)
        ds.save_as(fn, enforce_file_format=True)
        files.append(fn)
    sp = (float(np.linalg.norm(step)), dy, dx)
    direction = np.column_stack([step / np.linalg.norm(step), c, r])
    return Truth(vals[keep], sp, np.asarray(origin, float), direction, files)


def _slice_dataset(modality: str, patient: tuple[str, str], description: str,
                   series_number: int, signed: bool, photometric: str, slope: float,
                   intercept: float, window: tuple[float, float] | None) -> Dataset:
    """The attributes every slice of a :func:`write_series` series shares (no UIDs, no
    geometry, no pixels)."""
    from pydicom.uid import CTImageStorage, MRImageStorage, SecondaryCaptureImageStorage

    sop_class = {"CT": CTImageStorage, "MR": MRImageStorage}.get(modality,
                                                                SecondaryCaptureImageStorage)
    ds = _new_dataset(sop_class)
    ds.PatientName, ds.PatientID = patient
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = ds.SeriesDate = "20260101"
    ds.StudyTime = ds.SeriesTime = "120000"
    ds.StudyDescription = "Synthetic study"
    ds.SeriesDescription = description
    ds.Modality = modality
    ds.SeriesNumber = series_number
    ds.AcquisitionNumber = 1
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
    return ds


def write_enhanced(path: PathLike, values: npt.ArrayLike, *,
                   spacing: Sequence[float] = (2.0, 0.8, 0.8),
                   origin: Sequence[float] = (-20.0, -20.0, 10.0),
                   orientation: Sequence[float] = (1, 0, 0, 0, 1, 0), modality: str = "CT",
                   seed: int = 0, shuffle_frames: bool = True, per_frame_rescale: bool = True,
                   series_uid: str | None = None, study_uid: str | None = None,
                   frame_uid: str | None = None) -> Truth:
    """Write one enhanced multi-frame file (per-frame functional groups) with known geometry.

    Frames are stored in a shuffled order; each frame's position comes only from its
    PlanePositionSequence, and (with ``per_frame_rescale``) each frame has its own
    RescaleIntercept in PixelValueTransformationSequence, so a reader must use the
    functional groups to get both the order and the values right.

    Parameters
    ----------
    path : str or os.PathLike
        The file to create (never overwritten).
    values : array_like
        ``(slice, row, column)``, or ``(time, slice, row, column)`` (frames then carry a
        TemporalPositionIndex), in output units; stored as 16-bit unsigned.
    spacing : (float, float, float)
        Slice spacing along the normal, row spacing, column spacing (mm).
    origin : (float, float, float)
        LPS ImagePositionPatient of the first slice.
    orientation : 6 floats
        ImageOrientationPatient.
    modality : {"CT", "MR"}
        Enhanced CT or Enhanced MR Image Storage.
    seed : int
        Seed of the frame shuffle.
    shuffle_frames : bool
        Store the frames out of geometric order.
    per_frame_rescale : bool
        A different RescaleIntercept per slice (``-1024 - 10 k``); else -1024 for all.
    series_uid, study_uid, frame_uid : str, optional
        SeriesInstanceUID, StudyInstanceUID, FrameOfReferenceUID (default: fresh ones).

    Returns
    -------
    Truth
        The values and geometry a correct reader recovers.

    Raises
    ------
    FileExistsError
        When ``path`` exists.
    ValueError
        For an unknown modality, or values that do not fit 16-bit storage.

    Examples
    --------
    >>> import os, tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> truth = write_enhanced(os.path.join(tmp, "enh.dcm"), phantom((3, 8, 8), noise=0))
    >>> truth.values.shape, truth.spacing
    ((3, 8, 8), (2.0, 0.8, 0.8))
    """
    sop_class = {"CT": "1.2.840.10008.5.1.4.1.1.2.1",
                 "MR": "1.2.840.10008.5.1.4.1.1.4.1"}.get(modality)
    if sop_class is None:
        raise ValueError(f"write_enhanced writes CT or MR, not {modality!r}")
    vals = np.asarray(values)
    vals4 = vals if vals.ndim == 4 else vals[None]
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
    _set_uids(ds, study_uid, series_uid, frame_uid)
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
    ds.SharedFunctionalGroupsSequence = [_shared_groups(spacing, r, c)]
    ds.PerFrameFunctionalGroupsSequence = [
        _frame_groups(np.asarray(origin, float) + k * float(spacing[0]) * normal,
                      intercepts[k], modality, t, k, j, vals.ndim == 4)
        for j, (t, k) in enumerate(order)]
    stored = [np.round(vals4[t, k] - intercepts[k]) for t, k in order]
    if any(s.min() < 0 or s.max() > 65535 for s in stored):
        raise ValueError("values do not fit 16-bit storage with the chosen intercepts")
    ds.PixelData = np.stack(stored).astype(np.uint16).tobytes()
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    direction = np.column_stack([normal, c, r])
    return Truth(vals, tuple(float(x) for x in spacing), np.asarray(origin, float), direction,
                 [os.fspath(path)])


def _shared_groups(spacing: Sequence[float], r: Floats, c: Floats) -> Dataset:
    """The shared functional groups item: pixel measures and plane orientation."""
    from pydicom.dataset import Dataset

    shared = Dataset()
    pm = Dataset()
    pm.PixelSpacing = [float(spacing[1]), float(spacing[2])]
    pm.SliceThickness = float(spacing[0])
    shared.PixelMeasuresSequence = [pm]
    po = Dataset()
    po.ImageOrientationPatient = _iop(r, c)
    shared.PlaneOrientationSequence = [po]
    return shared


def _frame_groups(position: Floats, intercept: float, modality: str, t: int, k: int, j: int,
                  temporal: bool) -> Dataset:
    """One per-frame functional groups item: slice ``k`` of time point ``t``, stored as
    frame ``j``: its position, rescale and frame content."""
    from pydicom.dataset import Dataset

    fg = Dataset()
    pp = Dataset()
    pp.ImagePositionPatient = _ipp(position)
    fg.PlanePositionSequence = [pp]
    pv = Dataset()
    pv.RescaleSlope, pv.RescaleIntercept = 1.0, intercept
    pv.RescaleType = "HU" if modality == "CT" else "US"
    fg.PixelValueTransformationSequence = [pv]
    fc = Dataset()
    fc.InStackPositionNumber = k + 1
    fc.DimensionIndexValues = [t + 1, k + 1]
    fc.FrameAcquisitionNumber = j + 1
    if temporal:
        fc.TemporalPositionIndex = t + 1
    fg.FrameContentSequence = [fc]
    return fg


@dataclass
class Archive:
    """What :func:`make_archive` wrote: the truth a batch job is checked against.

    Parameters
    ----------
    root : str
        The archive's folder.
    series : dict of str to list of str
        Each SeriesInstanceUID and its files.
    patients : list of str
        The PatientIDs.
    bad_series : list of str
        Series whose headers are fine but whose pixel data cannot be decoded (a conversion
        must fail them, alone).
    corrupt : list of str
        Files that are not readable DICOM (truncated, not DICOM at all).
    duplicates : list of str
        Byte copies of files listed in ``series``, under other names.

    Examples
    --------
    >>> a = Archive("/data", {"1.2.3": ["/data/a.dcm"]}, ["P1"], [], ["/data/x.dcm"], [])
    >>> a.files
    ['/data/a.dcm', '/data/x.dcm']
    """

    root: str
    series: dict[str, list[str]]
    patients: list[str]
    bad_series: list[str]
    corrupt: list[str]
    duplicates: list[str]

    @property
    def files(self) -> list[str]:
        """Every file written, sorted."""
        out = [f for fs in self.series.values() for f in fs]
        return sorted(out + self.corrupt + self.duplicates)


def make_archive(root: PathLike, patients: int = 3, studies: int = 2, series: int = 3, *,
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

    Parameters
    ----------
    root : str or os.PathLike
        The folder to create (must not exist or be empty).
    patients, studies, series : int
        Patients, studies per patient, series per study.
    slices, size : int
        Slices per series, rows and columns per slice.
    corrupt : int
        Broken files to add.
    duplicates : int
        Byte copies of series files to add.
    bad_series : int
        Series to write with undecodable pixel data.
    seed : int
        Seed of the values and names.

    Returns
    -------
    Archive
        Where everything went.

    Raises
    ------
    FileExistsError
        When ``root`` is not empty.

    Examples
    --------
    >>> import os, tempfile
    >>> tmp = tempfile.mkdtemp()
    >>> a = make_archive(os.path.join(tmp, "archive"), 1, 1, 2, slices=2, size=8, corrupt=1,
    ...                  duplicates=1, bad_series=0)
    >>> len(a.series), len(a.files), a.patients
    (2, 6, ['PAT00000'])
    """
    root = os.fspath(root)
    if os.path.exists(root) and os.listdir(root):
        raise FileExistsError(f"{root}: not empty; make_archive never overwrites")
    n_total = patients * studies * series
    bad_at = set(np.linspace(0, n_total - 1, bad_series, dtype=int).tolist()) \
        if bad_series else set()
    out, bad = _archive_series(root, patients, studies, series, slices, size, bad_at, seed)
    files = [f for fs in out.values() for f in fs]
    broken = _write_broken(root, files, corrupt, patients)
    copies = _write_copies(root, files, duplicates)
    return Archive(root, out, [f"PAT{p:05d}" for p in range(patients)], bad, broken, copies)


def _archive_series(root: str, patients: int, studies: int, series: int, slices: int,
                    size: int, bad_at: set[int], seed: int) -> tuple[dict[str, list[str]],
                                                                    list[str]]:
    """The series of :func:`make_archive`: their files by SeriesInstanceUID, and the UIDs of
    those whose pixels were garbled (the ``bad_at`` numbers)."""
    from pydicom.uid import RLELossless, generate_uid

    rng = np.random.default_rng(seed)
    out: dict[str, list[str]] = {}
    bad: list[str] = []
    k_all = 0
    base = phantom((slices, size, size), seed=seed, noise=0)
    for p in range(patients):
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
                    study_uid=study_uid, patient=(f"Archive^Patient{p}", f"PAT{p:05d}"),
                    intercept=-1024.0 if mod == "CT" else 0.0, seed=seed + k_all,
                    window=None if mod == "MR" else (40, 400),
                    transfer_syntax=RLELossless if is_bad else None)
                if is_bad:
                    _garble_pixels(tr.files[len(tr.files) // 2])
                    bad.append(uid)
                out[uid] = tr.files
                k_all += 1
    return out, bad


def _write_broken(root: str, files: Sequence[str], corrupt: int, patients: int) -> list[str]:
    """``corrupt`` unreadable files in the patient folders: truncated copies (preamble, DICM
    and part of the header) and text files, alternately."""
    broken = []
    for i in range(corrupt):
        target = os.path.join(root, f"P{i % patients:03d}", f"broken{i}.dcm")
        if i % 2 == 0:
            with open(files[(7 * i) % len(files)], "rb") as f:
                head = f.read(200)
            with open(target, "wb") as f:
                f.write(head)
        else:
            with open(target, "w") as ft:
                ft.write("not a DICOM file\n")
        broken.append(target)
    return broken


def _write_copies(root: str, files: Sequence[str], duplicates: int) -> list[str]:
    """``duplicates`` byte copies of ``files`` in ``root/copies``."""
    import shutil

    copies = []
    if duplicates:
        os.makedirs(os.path.join(root, "copies"), exist_ok=True)
    for i in range(duplicates):
        src = files[(13 * i + 5) % len(files)]
        target = os.path.join(root, "copies", f"copy{i}.dcm")
        shutil.copyfile(src, target)
        copies.append(target)
    return copies


def _garble_pixels(path: PathLike) -> None:
    """Overwrite the bytes of an encapsulated Pixel Data fragment with noise (the length
    kept), so that the header reads but the frame cannot be decoded."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    at = data.rfind(b"\xfe\xff\x00\xe0")  # the last item tag: the frame's fragment
    start = at + 8
    data[start:start + 64] = b"\xff" * 64  # an RLE header claiming 4294967295 segments
    with open(path, "wb") as f:
        f.write(bytes(data))


def write_rtdose(path: PathLike, dose: npt.ArrayLike, *,
                 spacing: Sequence[float] = (3.0, 2.5, 2.5),
                 origin: Sequence[float] = (-30.0, -30.0, -20.0),
                 orientation: Sequence[float] = (1, 0, 0, 0, 1, 0), units: str = "GY",
                 offsets: str = "relative", scaling: float = 1e-4,
                 frame_uid: str | None = None, study_uid: str | None = None,
                 patient: tuple[str, str] = ("Phantom^Synthetic", "SYN001")) -> Truth:
    """Write a multi-frame RT Dose with exactly known geometry (the way planning systems do).

    Parameters
    ----------
    path : str or os.PathLike
        The file to create (never overwritten).
    dose : array_like
        ``(slice, row, column)`` dose, slices ascending along the normal.
    spacing : (float, float, float)
        Slice spacing along the normal, row spacing, column spacing (mm).
    origin : (float, float, float)
        ImagePositionPatient of frame 0 (LPS mm).
    orientation : 6 floats
        ImageOrientationPatient.
    units : {"GY", "RELATIVE"}
        DoseUnits (3004,0002).
    offsets : {"relative", "absolute", "descending"}
        GridFrameOffsetVector (3004,000C) as offsets from frame 0 (``0, dz, 2dz, ...``), as
        absolute z coordinates (allowed for axial grids: ``z0, z0 + dz, ...``), or with the
        frames stored from the last slice down (``0, -dz, ...``, ImagePositionPatient then
        that of the last slice).
    scaling : float
        DoseGridScaling (3004,000E): stored integer x scaling = dose.
    frame_uid, study_uid : str, optional
        FrameOfReferenceUID and StudyInstanceUID (those of the planning CT; default fresh).
    patient : (str, str)
        PatientName and PatientID.

    Returns
    -------
    Truth
        The dose as it will read back (rounded to ``scaling``) and its geometry.

    Raises
    ------
    FileExistsError
        When ``path`` exists.
    ValueError
        For absolute offsets on a grid that is not axial.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> tmp = tempfile.mkdtemp()
    >>> truth = write_rtdose(os.path.join(tmp, "dose.dcm"), np.full((2, 3, 4), 1.5))
    >>> truth.values.shape, float(truth.values.max()), truth.spacing
    ((2, 3, 4), 1.5, (3.0, 2.5, 2.5))
    """
    from .rtdose import RTDOSE_SOP_CLASS

    path = os.fspath(path)
    if os.path.exists(path):
        raise FileExistsError(f"{path}: exists; write_rtdose never overwrites")
    dose_arr = np.asarray(dose, float)
    n, rows, cols = dose_arr.shape
    r, c = _orthonormal_iop(orientation)
    normal = np.cross(r, c)
    dz, dy, dx = (float(s) for s in spacing)
    stored = np.round(dose_arr / scaling).astype(np.uint32)
    first, steps = _dose_frames(np.asarray(origin, float), normal, dz, n, offsets)
    if offsets == "descending":
        stored = stored[::-1]
    ds = _new_dataset(RTDOSE_SOP_CLASS)
    ds.PatientName, ds.PatientID = patient
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    _set_uids(ds, study_uid, None, frame_uid)
    ds.StudyDate, ds.StudyTime = "20260101", "120000"
    ds.Modality = "RTDOSE"
    ds.SeriesNumber, ds.InstanceNumber = 900, 1
    ds.SeriesDescription = "Synthetic dose"
    ds.ImagePositionPatient = _ipp(first)
    ds.ImageOrientationPatient = _iop(r, c)
    ds.PixelSpacing = [dy, dx]
    ds.NumberOfFrames = n
    ds.FrameIncrementPointer = 0x3004000C
    ds.GridFrameOffsetVector = _ipp(steps)
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
    return Truth(np.round(dose_arr / scaling) * scaling, (dz, dy, dx),
                 np.asarray(origin, float), np.column_stack([normal, c, r]), [path])


def _dose_frames(origin: Floats, normal: Floats, dz: float, n: int,
                 offsets: str) -> tuple[Floats, Floats]:
    """ImagePositionPatient of the first stored frame and the GridFrameOffsetVector of an
    RT Dose grid written with ``offsets`` (see :func:`write_rtdose`)."""
    first = origin
    steps = np.arange(n) * dz
    if offsets == "descending":
        first = first + normal * dz * (n - 1)
        steps = -steps
    elif offsets == "absolute":
        if not np.allclose(normal, [0, 0, 1]):
            raise ValueError("absolute GridFrameOffsetVector values need an axial grid")
        steps = steps + first[2]
    return first, np.asarray(steps, np.float64)
