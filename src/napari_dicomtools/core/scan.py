"""Files, folders, ``.zip`` archives and DICOMDIRs -> an index of image series (headers only).

``scan(path)`` reads every file's header (never its pixels), drops what is not an image with a
reason, groups images by SeriesInstanceUID and then splits a UID whenever the data says the
images cannot form one volume: different orientation, matrix size, pixel spacing, colour
model or echo, or repeated positions that belong to separate acquisitions (localizers).
Within each resulting :class:`Series` the frames are ordered by geometry (see
:mod:`.geometry`), never by InstanceNumber or file name.
"""

from __future__ import annotations

import io
import logging
import math
import os
import stat
import threading
import zipfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from ._limits import (
    FATAL,
    MAX_DEFLATE_RATIO,
    check_allocation,
    file_kind,
    format_bytes,
    inflate_capped,
    open_regular,
)
from .errors import (
    DicomToolsError,
    GeometryError,
    NoImageError,
    NotDicomError,
    UnreadableDicomError,
)
from .geometry import SliceOrder, direction_matrix, order_slices, orientation_label

log = logging.getLogger(__name__)

# the largest image we agree to decode: 2**31 voxels (8 GiB of float32)
MAX_VOXELS = 2**31
DICOMDIR_UID = "1.2.840.10008.1.3.10"
_PIXEL_TAG = 0x7FE00010


# --------------------------------------------------------------------------------------------
# where bytes come from


@dataclass(frozen=True)
class Source:
    """A file on disk, or a member of a zip archive."""

    path: str
    member: str | None = None

    def __str__(self) -> str:
        return f"{self.path}::{self.member}" if self.member else self.path

    @classmethod
    def from_string(cls, text) -> Source:
        """Inverse of ``str(source)``: ``"archive.zip::member"`` or a plain path."""
        text = os.fspath(text)
        zpath, sep, member = text.partition("::")
        return cls(zpath, member) if sep and os.path.isfile(zpath) else cls(text)

    def open(self):
        """A binary, seekable file object (caller closes it).

        Regular files only (a FIFO, socket or device raises :class:`DicomToolsError` instead of
        blocking). A zip member is streamed, never read whole: a member whose declared size
        exceeds the memory available, or whose compression ratio no deflate stream can have
        (a zip bomb), is refused before any of it is inflated.
        """
        if self.member is None:
            return open_regular(self.path)
        zf = _archive(self.path)
        try:
            info = zf.getinfo(self.member)
            _check_member(str(self), info)
            with _ZIP_LOCK:
                return _MemberStream(zf.open(info))
        except KeyError:
            raise UnreadableDicomError(str(self), "no such member in the archive") from None
        except (RuntimeError, NotImplementedError, zipfile.BadZipFile, ValueError,
                OSError) as exc:
            raise UnreadableDicomError(str(self), f"zip member cannot be read ({exc})") \
                from None

    def size(self) -> int:
        if self.member is None:
            return os.path.getsize(self.path)
        try:
            return _archive(self.path).getinfo(self.member).file_size
        except KeyError:
            raise UnreadableDicomError(str(self), "no such member in the archive") from None


# Open archives, so a zip of N members is not re-read N times (its central directory alone
# is O(N)): keyed by identity, size and mtime (a rewritten archive is reopened) and by process
# (a forked worker must not share the parent's file offset).
_ZIP_LOCK = threading.RLock()
_ZIP_CACHE: dict = {}
_ZIP_CACHE_SIZE = 2


def _archive(path: str) -> zipfile.ZipFile:
    """The (cached) open :class:`zipfile.ZipFile` of a regular file ``path``.

    Raises
    ------
    DicomToolsError
        Not a regular file, or not a readable zip archive.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UnreadableDicomError(path, f"cannot open: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DicomToolsError(path, f"not a regular file ({file_kind(st.st_mode)})")
    key = (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns, os.getpid())
    with _ZIP_LOCK:
        zf = _ZIP_CACHE.get(key)
        if zf is not None:
            return zf
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise UnreadableDicomError(path, f"unreadable zip archive ({exc})") from None
        while len(_ZIP_CACHE) >= _ZIP_CACHE_SIZE:
            # dropped, not closed: member streams still open keep the file open
            _ZIP_CACHE.pop(next(iter(_ZIP_CACHE)))
        _ZIP_CACHE[key] = zf
        return zf


class _MemberStream(io.RawIOBase):
    """A zip member as a seekable stream *without* a ``name``: pydicom re-reads deferred
    values from ``fp.name`` once the stream is closed, which for a member would be a path
    relative to the working directory (another file, or none)."""

    def __init__(self, f):
        super().__init__()
        self._f = f

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._f.read(n)

    def readinto(self, b) -> int:
        data = self._f.read(len(b))
        b[:len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        try:
            self._f.close()
        finally:
            super().close()


def _check_member(name: str, info: zipfile.ZipInfo) -> None:
    """Refuse a zip member that declares more than memory holds or an impossible ratio."""
    size, packed = info.file_size, max(info.compress_size, 1)
    if info.compress_type != zipfile.ZIP_STORED and size > 64 * 2**20 and \
            size / packed > MAX_DEFLATE_RATIO:
        raise UnreadableDicomError(
            name, f"zip member declares {format_bytes(size)} from {format_bytes(packed)} "
                  f"(ratio {size / packed:,.0f}:1, more than compression can reach): a zip "
                  "bomb; refused")
    check_allocation(name, size, "zip member", fraction=1.0)


# --------------------------------------------------------------------------------------------
# one file, one frame


def _f(v, default=None):
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def _i(v, default=None):
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _floats(v, n):
    try:
        out = [float(x) for x in v]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def _first(v):
    """First value of a possibly multi-valued element (WindowCenter '40\\400' -> 40)."""
    if v is None:
        return None
    try:
        if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
            return v[0] if len(v) else None
    except TypeError:
        pass
    return v


def _as_list(v) -> list:
    """A multi-valued element as a list (single values, including strings, become [v])."""
    if v is None or v == "":
        return []
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return list(v)
    return [v]


def _text(v) -> str:
    if v is None:
        return ""
    return str(v).strip()


@dataclass
class Frame:
    """One 2D image: a single-frame file, or one frame of a multi-frame file."""

    instance: Instance
    index: int | None  # frame index in a multi-frame file, None for single-frame files
    position: np.ndarray | None
    orientation: tuple | None
    pixel_spacing: tuple | None
    slope: float = 1.0
    intercept: float = 0.0
    window: tuple | None = None  # (center, width)
    temporal: tuple = ()  # ordering keys within one position (4D)
    acquisition: int | None = None
    philips_scale_slope: float | None = None  # (2005,100E), for Philips "precise" values
    echo: int | None = None  # enhanced MR: Siemens ICE echo, else the rank of echo_time
    component: str | None = None  # enhanced: per-frame ComplexImageComponent (ph/real/...)
    bvalue: float | None = None  # DiffusionBValue (0018,9087)
    bvec: tuple | None = None  # DiffusionGradientOrientation (0018,9089), LPS unit vector
    echo_time: float | None = None  # enhanced MR: per-frame EffectiveEchoTime (0018,9082)
    flip_rows: bool = False  # GE pepolar: a reversed-polarity frame, stored upside down
    number_offset: int = 0  # added to SeriesNumber in names (dcm2niix: +1000 for pepolar)


@dataclass
class Instance:
    """Header facts of one DICOM file (no pixel data)."""

    source: Source
    sop_class: str
    sop_uid: str
    study_uid: str
    series_uid: str
    patient_name: str
    patient_id: str
    study_date: str
    study_description: str
    series_description: str
    series_number: int | None
    modality: str
    instance_number: int | None
    acquisition_number: int | None
    echo_number: int | None
    image_type: tuple
    frame_of_reference: str
    rows: int
    columns: int
    samples: int
    photometric: str
    bits_allocated: int
    bits_stored: int
    high_bit: int
    pixel_representation: int
    planar_configuration: int
    n_frames: int
    transfer_syntax: str
    encapsulated: bool
    pixel_offset: int | None  # file offset of native Pixel Data
    pixel_length: int | None
    slice_thickness: float | None
    spacing_between_slices: float | None
    units: str = ""  # e.g. "HU" for CT, RescaleType otherwise
    mosaic: tuple | None = None  # Siemens mosaic: (mosaic rows, mosaic columns, tiles per row)
    header: dict = field(default_factory=dict)  # small readable summary
    frames: list = field(default_factory=list)
    file_size: int = 0  # bytes of the file (or zip member), for plausibility checks

    @property
    def path(self) -> str:
        return str(self.source)


_SUMMARY_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyDate",
    "StudyTime", "StudyDescription", "AccessionNumber", "SeriesDate", "SeriesTime",
    "SeriesDescription", "SeriesNumber", "Modality", "Manufacturer", "ManufacturerModelName",
    "InstitutionName", "BodyPartExamined", "ProtocolName", "ImageType", "SliceThickness",
    "SpacingBetweenSlices", "PixelSpacing", "KVP", "XRayTubeCurrent", "ExposureTime",
    "ConvolutionKernel", "ContrastBolusAgent", "MagneticFieldStrength", "RepetitionTime",
    "EchoTime", "InversionTime", "FlipAngle", "SequenceName", "ScanningSequence",
    "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PhotometricInterpretation",
    "BitsStored", "RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter",
    "WindowWidth", "GantryDetectorTilt", "StudyID", "ImageComments",
    "PerformedProcedureStepDescription",
)


def _summary(ds) -> dict:
    out = {}
    for kw in _SUMMARY_KEYWORDS:
        v = ds.get(kw, None)
        if v is None or v == "":
            continue
        if isinstance(v, list) or type(v).__name__ == "MultiValue":
            v = [str(x).strip() for x in v]
        elif not isinstance(v, (int, float)):
            v = str(v)
        out[kw] = v
    return out


def _group_item(group, seq_kw):
    """First item of ``seq_kw`` inside a functional-group item, or None."""
    if group is None:
        return None
    seq = group.get(seq_kw, None)
    if seq:
        return seq[0]
    return None


def _fg_value(per_frame, shared, seq_kw, kw):
    for g in (per_frame, shared):
        item = _group_item(g, seq_kw)
        if item is not None and kw in item:
            return item.get(kw)
    return None


def _philips_scale_slope(ds) -> float | None:
    """Philips' private ScaleSlope (2005,100E) when its creator block says Philips."""
    from . import fastheader

    if isinstance(ds, fastheader.FastDataset):
        creator, ss = ds.get_tag(0x20050010), ds.get_tag(0x2005100E)
    else:
        c, e = ds.get(0x20050010), ds.get(0x2005100E)
        creator = c.value if c is not None else None
        ss = e.value if e is not None else None
    if not creator or "PHILIPS" not in str(creator).upper():
        return None
    try:
        v = float(ss[0] if isinstance(ss, (list, tuple, bytes)) and not isinstance(
            ss, bytes) else ss)
    except (TypeError, ValueError):
        return None
    return v if v and np.isfinite(v) else None


def _frames_of(inst: Instance, ds) -> list[Frame]:
    """Geometry, scaling and ordering keys of every frame in ``ds``."""
    frames = _frames_geometry(inst, ds)
    if inst.modality == "MR":
        flip, offset = _ge_pepolar(ds)
        for f in frames:
            f.flip_rows, f.number_offset = flip, offset
        ss = _philips_scale_slope(ds)
        b, g = _diffusion(ds, None, None)
        for vendor in (_siemens_diffusion, _ge_diffusion, _philips_diffusion):
            if b is not None and g is not None:
                break
            vb, vg = vendor(ds)  # private tags fill what the standard ones lack
            if vb is not None and (b is None or g is None):
                b, g = (b if b is not None and vg is None else vb), (g if g is not None else vg)
        per_frame = ds.get("PerFrameFunctionalGroupsSequence", None)
        shared_seq = ds.get("SharedFunctionalGroupsSequence", None)
        shared = shared_seq[0] if shared_seq else None
        for f in frames:
            f.philips_scale_slope = ss
            if per_frame is not None and f.index is not None and f.index < len(per_frame):
                f.bvalue, f.bvec = _diffusion(per_frame[f.index], shared, (b, g))
            else:
                f.bvalue, f.bvec = b, g
    return frames


def _private(ds, tag: int):
    """Raw value of a private tag from the fast or the pydicom data set (None if absent)."""
    from . import fastheader

    if isinstance(ds, fastheader.FastDataset):
        return ds.get_tag(tag)
    e = ds.get(tag)
    return None if e is None else e.value


def _siemens_diffusion(ds):
    """b-value and gradient (LPS) from Siemens' private (0019,100C)/(0019,100E)."""
    creator = _private(ds, 0x00190010)
    if not creator or "SIEMENS MR HEADER" not in str(creator).upper():
        return None, None
    raw_b = _private(ds, 0x0019100C)
    if isinstance(raw_b, (bytes, bytearray)):
        raw_b = raw_b.decode("ascii", "replace").strip(" \x00")
    b = _f(raw_b)
    g = _private(ds, 0x0019100E)
    if isinstance(g, (bytes, bytearray)) and len(g) == 24:
        g = list(np.frombuffer(g, "<f8"))
    g = _floats(g, 3)
    return b, (tuple(g) if g else None)


def _ge_pepolar(ds) -> tuple[bool, int]:
    """(rows reversed, series-number offset) of a GE ``epi_pepolar`` image, as dcm2niix.

    The pulse sequence name (0019,109C) ends in ``epi_pepolar`` and user data 12 (0019,10B3)
    says which volumes were acquired with reversed phase-encoding polarity: 1 all of them;
    2 the odd volumes, 3 the even ones (volume = TemporalPositionIdentifier). GE stores those
    with their rows reversed under an unchanged position and orientation: they are flipped
    back, and with 2/3 they form their own series, numbered SeriesNumber + 1000.
    """
    if "GEMS_ACQU" not in _creator(ds, 0x00190010):
        return False, 0
    name = _private(ds, 0x0019109C)
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).decode("ascii", "replace")
    if "epi_pepolar" not in str(name or ""):
        return False, 0
    mode = round((_private_numbers(ds, 0x001910B3) or [0])[0])
    if mode == 1:
        return True, 0
    volume = _i(ds.get("TemporalPositionIdentifier", None), 0) or 0
    if volume > 0 and ((mode == 2 and volume % 2 == 1) or (mode == 3 and volume % 2 == 0)):
        return True, 1000
    return False, 0


def _private_numbers(ds, tag: int) -> list[float] | None:
    """A private DS/IS/FL value as floats (text, binary or already decoded), or None."""
    v = _private(ds, tag)
    if v is None:
        return None
    if isinstance(v, (bytes, bytearray)):
        text = bytes(v).decode("ascii", "replace").strip(" \x00")
        v = text.split("\\") if text and all(c in "0123456789+-.eE \\" for c in text) \
            else list(np.frombuffer(bytes(v)[:len(v) // 4 * 4], "<f4"))
    vals = v if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue" else [v]
    try:
        out = [float(x) for x in vals]
    except (TypeError, ValueError):
        return None
    return out if out and all(np.isfinite(out)) else None


def _creator(ds, tag: int) -> str:
    v = _private(ds, tag)
    if isinstance(v, (bytes, bytearray)):
        v = bytes(v).decode("ascii", "replace")
    return str(v or "").strip(" \x00").upper()


def _ge_diffusion(ds):
    """b-value and gradient (LPS) from GE's private (0043,1039) and (0019,10BB-BD).

    GE stores the b-value plus a 10^9 bias in the first value of (0043,1039) and the gradient
    in the image frame of the logical axes (frequency, phase, slice), as dcm2niix reads it
    (``geCorrectBvecs``): swapped for row phase encoding, flipped per slice plane. A gradient
    of length 0.03-0.97 scales the b-value by its squared length (rounded to 5 s/mm^2).
    """
    if "GEMS_PARM" not in _creator(ds, 0x00430010):
        return None, None
    slop = _private_numbers(ds, 0x00431039)
    if not slop:
        return None, None
    b = float(int(slop[0]) % 1000000000)
    if "GEMS_ACQU" not in _creator(ds, 0x00190010):
        return b, None
    v = [(_private_numbers(ds, t) or [None])[0] for t in (0x001910BB, 0x001910BC, 0x001910BD)]
    iop = _floats(ds.get("ImageOrientationPatient", None), 6)
    if any(x is None for x in v) or iop is None:
        return b, None
    v = np.array(v, float)
    n = float(np.linalg.norm(v))
    if b <= 0 or n <= 1e-6:
        return b, (0.0, 0.0, 0.0)
    if 0.03 < n < 0.97:  # dcm2niix: b-value scaled by |g|^2, issue 163/245
        scaled = b * n * n
        b = 5.0 if 0 < scaled < 5 else float(int((scaled + 2.5) / 5) * 5)
    v = v / n
    row, col = np.array(iop[:3]), np.array(iop[3:])
    normal = np.cross(row, col)
    plane = int(np.argmax(np.abs(normal)))  # 0 sagittal, 1 coronal, 2 axial
    if _text(ds.get("InPlanePhaseEncodingDirection", None)).upper().startswith("ROW"):
        v = np.array([v[1], -v[0], v[2]])
    flip = {0: (1, 1, 0), 1: (0, 1, 1), 2: (0, 0, 1)}[plane]
    v = v * np.where(np.array(flip) == 1, -1.0, 1.0)
    v[1] = -v[1]
    v = -v  # image-frame components as dcm2niix has them before its own output flips
    world = v[0] * row - v[1] * col + v[2] * normal
    return b, tuple(float(x) for x in world / np.linalg.norm(world))


def _philips_diffusion(ds):
    """b-value (2001,1003) and gradient (2005,10B0-B2, LPS) from Philips' private tags."""
    if "PHILIPS" not in _creator(ds, 0x20010010):
        return None, None
    b = _private_numbers(ds, 0x20011003)
    if not b:
        return None, None
    if "PHILIPS" not in _creator(ds, 0x20050010):
        return b[0], None
    g = [(_private_numbers(ds, t) or [None])[0] for t in (0x200510B0, 0x200510B1, 0x200510B2)]
    return b[0], (None if any(x is None for x in g) else tuple(g))


def _diffusion(ds, shared, default):
    """(b-value, gradient direction) from the top level or an enhanced MRDiffusionSequence."""
    b = _f(ds.get("DiffusionBValue", None)) if hasattr(ds, "get") else None
    g = _floats(ds.get("DiffusionGradientOrientation", None), 3) if hasattr(ds, "get") \
        else None
    for group in (ds, shared):
        item = _group_item(group, "MRDiffusionSequence") if group is not None and \
            not isinstance(group, dict) and "MRDiffusionSequence" in group else None
        if item is None:
            continue
        b = b if b is not None else _f(item.get("DiffusionBValue", None))
        direc = _group_item(item, "DiffusionGradientDirectionSequence")
        if g is None and direc is not None:
            g = _floats(direc.get("DiffusionGradientOrientation", None), 3)
    if b is None and g is None and default is not None:
        return default
    return b, (tuple(g) if g else None)


#: positions further than this from the origin (mm) are not on a patient (10 km)
MAX_POSITION_MM = 1e7
#: largest pixel or slice spacing believed (mm)
MAX_SPACING_MM = 1e5
#: largest absolute RescaleSlope or RescaleIntercept believed (keeps float32 values finite)
MAX_RESCALE = 1e20
#: most frames one file may declare
MAX_FRAMES = 1 << 18


def check_orientation(iop, path=None) -> None:
    """Raise :class:`GeometryError` unless ImageOrientationPatient (0020,0037) holds two
    (nearly) unit, (nearly) perpendicular direction cosines.

    Parameters
    ----------
    iop : sequence of 6 float
        Row then column direction cosines (LPS).
    path : str, optional
        The file, for the error message.
    """
    try:
        v = [float(x) for x in iop]
    except (TypeError, ValueError):
        v = []
    if len(v) != 6 or not all(math.isfinite(x) for x in v):
        raise GeometryError(path, f"ImageOrientationPatient {_show(iop)} is not 6 finite "
                                  "numbers")
    r, c = v[:3], v[3:]
    nr, nc = math.sqrt(sum(x * x for x in r)), math.sqrt(sum(x * x for x in c))
    if nr < 1e-6 or nc < 1e-6:
        raise GeometryError(path, f"ImageOrientationPatient {_show(iop)} has a zero "
                                  "direction vector")
    if abs(nr - 1) > 0.05 or abs(nc - 1) > 0.05:
        raise GeometryError(path, f"ImageOrientationPatient {_show(iop)} is not made of unit "
                                  f"vectors (lengths {nr:.3g} and {nc:.3g})")
    if abs(sum(a * b for a, b in zip(r, c, strict=True))) / (nr * nc) > 0.05:
        raise GeometryError(path, f"ImageOrientationPatient {_show(iop)}: row and column "
                                  "directions are not perpendicular")


def _show(v) -> str:
    try:
        return "\\".join(f"{float(x):g}" for x in v)
    except (TypeError, ValueError):
        return repr(v)[:80]


def _check_frames(inst: Instance) -> None:
    """Reject geometry and value scaling that cannot be right (GeometryError/Unreadable).

    Window values that are not finite are dropped (they only affect the display).
    """
    path = inst.path
    checked_iop: set = set()
    for fr in inst.frames:
        if fr.orientation is not None and fr.orientation not in checked_iop:
            check_orientation(fr.orientation, path)
            checked_iop.add(fr.orientation)
        if fr.position is not None:
            p = [float(x) for x in fr.position]
            if len(p) != 3 or not all(abs(x) <= MAX_POSITION_MM for x in p):  # NaN fails
                raise GeometryError(path, f"ImagePositionPatient {_show(p)} is not a position "
                                          f"on a patient (more than {MAX_POSITION_MM:g} mm "
                                          "from the origin, or not finite)")
        if fr.pixel_spacing is not None:
            ps = fr.pixel_spacing
            if not all(0 < float(x) <= MAX_SPACING_MM for x in ps):
                raise GeometryError(path, f"PixelSpacing {_show(ps)} is not a positive "
                                          f"spacing up to {MAX_SPACING_MM:g} mm")
        for what, v in (("RescaleSlope", fr.slope), ("RescaleIntercept", fr.intercept)):
            if not abs(v) <= MAX_RESCALE:  # NaN and inf fail too
                raise UnreadableDicomError(path, f"{what} {v!r} is not a finite number up to "
                                                 f"{MAX_RESCALE:g}")
        if fr.window is not None and not all(abs(x) <= 1e30 for x in fr.window):
            fr.window = None


def _spacing_or_none(v) -> float | None:
    """A slice spacing/thickness when it is a positive finite number of sane size."""
    v = _f(v)
    return v if v is not None and np.isfinite(v) and 0 < v <= MAX_SPACING_MM else None


def _frames_geometry(inst: Instance, ds) -> list[Frame]:
    top_pos = _floats(ds.get("ImagePositionPatient", None), 3)
    top_iop = _floats(ds.get("ImageOrientationPatient", None), 6)
    ps = _floats(ds.get("PixelSpacing", None), 2) or _floats(
        ds.get("ImagerPixelSpacing", None), 2)
    slope = _f(ds.get("RescaleSlope", None), 1.0) or 1.0
    intercept = _f(ds.get("RescaleIntercept", None), 0.0)
    if inst.modality == "RTDOSE" and "DoseGridScaling" in ds:
        slope = _f(ds.DoseGridScaling, 1.0) * slope
    wc, ww = _f(_first(ds.get("WindowCenter", None))), _f(_first(ds.get("WindowWidth", None)))
    window = (wc, ww) if wc is not None and ww and ww > 0 else None
    temporal = (
        _i(ds.get("TemporalPositionIdentifier", None), 0),
        _f(ds.get("TriggerTime", None), 0.0),
        _text(ds.get("AcquisitionDateTime", None)) or _text(ds.get("AcquisitionTime", None)),
        _i(ds.get("AcquisitionNumber", None), 0),
        inst.instance_number or 0,
    )
    acq = inst.acquisition_number

    per_frame_seq = ds.get("PerFrameFunctionalGroupsSequence", None)
    shared_seq = ds.get("SharedFunctionalGroupsSequence", None)
    shared = shared_seq[0] if shared_seq else None
    n = inst.n_frames
    if per_frame_seq is not None or shared is not None:
        frames = []
        for k in range(n):
            pf = per_frame_seq[k] if per_frame_seq is not None and k < len(per_frame_seq) else None
            pos = _floats(_fg_value(pf, shared, "PlanePositionSequence", "ImagePositionPatient"), 3)
            iop = _floats(_fg_value(pf, shared, "PlaneOrientationSequence",
                                    "ImageOrientationPatient"), 6)
            fps = _floats(_fg_value(pf, shared, "PixelMeasuresSequence", "PixelSpacing"), 2)
            fs = _f(_fg_value(pf, shared, "PixelValueTransformationSequence", "RescaleSlope"))
            fi = _f(_fg_value(pf, shared, "PixelValueTransformationSequence",
                              "RescaleIntercept"))
            fwc = _f(_first(_fg_value(pf, shared, "FrameVOILUTSequence", "WindowCenter")))
            fww = _f(_first(_fg_value(pf, shared, "FrameVOILUTSequence", "WindowWidth")))
            tpi = _i(_fg_value(pf, None, "FrameContentSequence", "TemporalPositionIndex"), 0)
            fadt = _text(_fg_value(pf, None, "FrameContentSequence", "FrameAcquisitionDateTime"))
            trig = _f(_fg_value(pf, shared, "CardiacSynchronizationSequence",
                                "NominalCardiacTriggerDelayTime"), 0.0)
            frames.append(Frame(
                inst, k,
                np.array(pos) if pos else (np.array(top_pos) if top_pos else None),
                tuple(iop) if iop else (tuple(top_iop) if top_iop else None),
                tuple(fps) if fps else (tuple(ps) if ps else None),
                fs if fs else slope, fi if fi is not None else intercept,
                (fwc, fww) if fwc is not None and fww and fww > 0 else window,
                (tpi, trig, fadt, 0, k), acq))
            te = _f(_fg_value(pf, shared, "MREchoSequence", "EffectiveEchoTime"))
            cic = _text(_fg_value(pf, shared, "MRImageFrameTypeSequence",
                                  "ComplexImageComponent")).upper()
            frames[-1].echo_time = te  # ranked over the whole series in group_series
            frames[-1].echo = _siemens_ice_echo(pf)
            frames[-1].component = {"PHASE": "ph", "REAL": "real",
                                    "IMAGINARY": "imaginary"}.get(cic, "")
        return frames

    if n == 1:
        return [Frame(inst, None, np.array(top_pos) if top_pos else None,
                      tuple(top_iop) if top_iop else None, tuple(ps) if ps else None,
                      slope, intercept, window, temporal, acq)]

    # classic multi-frame: RT dose / NM grids, or a cine loop at one position
    offsets = _as_list(ds.get("GridFrameOffsetVector", None)) or None
    if offsets is not None and len(offsets) == n:
        offsets = _floats(offsets, n)
        if offsets is None:
            raise GeometryError(inst.path, "GridFrameOffsetVector (3004,000C) holds values "
                                           "that are not finite numbers")
    frames = []
    normal = None
    if top_iop:
        from .geometry import slice_normal
        check_orientation(top_iop, inst.path)
        normal = slice_normal(top_iop)
    step = inst.spacing_between_slices
    for k in range(n):
        pos = None
        if top_pos is not None and normal is not None:
            if offsets is not None and len(offsets) == n:
                pos = np.array(top_pos) + normal * float(offsets[k])
            elif step:
                pos = np.array(top_pos) + normal * step * k
        frames.append(Frame(inst, k, pos, tuple(top_iop) if top_iop else None,
                            tuple(ps) if ps else None, slope, intercept, window,
                            (0, 0.0, "", 0, k), acq))
    return frames


def _siemens_ice_echo(per_frame) -> int | None:
    """Echo number of a Siemens XA enhanced frame: the second field of its ICE dimensions
    (0021,1106) ``X_2_1_...`` in the per-frame (0021,11FE) item, as dcm2niix reads it."""
    if per_frame is None or 0x002111FE not in per_frame:
        return None
    try:
        item = per_frame[0x002111FE].value[0]
        creator = item.get(0x00210011)
        if creator is None or "SIEMENS MR SDI" not in str(creator.value).upper():
            return None
        ice = item.get(0x00211106)
        fields = str(ice.value if ice is not None else "").split("_")
        echo = int(fields[1]) if len(fields) > 1 else None
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None
    return echo if echo and echo > 0 else None


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


@contextmanager
def open_dicom(source: Source):
    """Open ``source`` and reject empty and non-DICOM files at once (a few bytes read).

    Yields ``(file object, size, has_preamble)``; raises :class:`NotDicomError` or
    :class:`UnreadableDicomError` naming the file.
    """
    name = str(source)
    try:
        fp = source.open()
    except OSError as exc:
        raise UnreadableDicomError(name, f"cannot open: {exc.strerror or exc}") from None
    with fp:
        head = fp.read(132)
        fp.seek(0)
        size = source.size()
        if size == 0:
            raise NotDicomError(name, "empty file")
        dicm = len(head) >= 132 and head[128:132] == b"DICM"
        if not dicm and not _looks_like_raw_dicom(head):
            raise NotDicomError(name, "not a DICOM file (no 'DICM' marker, no DICOM data "
                                      "elements at the start)")
        yield fp, size, dicm


def read_header(source: Source | str, *, fast: bool = True) -> Instance:
    """Parse one file's header into an :class:`Instance` (no pixel data is read).

    Common files (preamble, little endian, no functional groups) go through
    :mod:`.fastheader`; everything else, and anything it declines, through pydicom. ``fast=False``
    forces pydicom. A deflated data set is inflated incrementally under a memory cap.

    Raises
    ------
    NotDicomError, UnreadableDicomError, NoImageError, GeometryError
        With the file's path and the reason; nothing else (a malformed file of any kind ends
        as one of these).
    """
    if not isinstance(source, Source):
        source = Source(os.fspath(source))
    name = str(source)
    try:
        return _read_header(source, fast)
    except DicomToolsError:
        raise
    except RecursionError:
        raise UnreadableDicomError(name, "header cannot be parsed (sequences nested too "
                                         "deeply)") from None
    except MemoryError:
        raise UnreadableDicomError(name, "header cannot be parsed (out of memory: absurd "
                                         "declared lengths)") from None
    except FATAL:
        raise
    except BaseException as exc:  # noqa: BLE001 - parsers raise anything on hostile input
        raise UnreadableDicomError(name, f"header cannot be parsed ({_exc_text(exc)})") \
            from None


def _exc_text(exc: BaseException) -> str:
    msg = " ".join(str(exc).split())
    if len(msg) > 200:
        msg = msg[:200] + "..."
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _read_header(source: Source, fast: bool) -> Instance:
    name = str(source)
    with open_dicom(source) as (fp, size, has_preamble):
        ds = None
        if has_preamble and fast:
            from . import fastheader

            try:
                ds = fastheader.parse(fp, size)
            except DicomToolsError:
                raise
            except Exception:  # noqa: BLE001 - anything odd: let pydicom judge the file
                fp.seek(0)
                ds = None
        if ds is not None:
            try:
                return _instance_from_dataset(source, ds, size)
            except DicomToolsError:
                raise
            except Exception:  # noqa: BLE001 - Unsupported or odd values: use pydicom
                fp.seek(0)
        import pydicom
        from pydicom.errors import InvalidDicomError

        try:
            ds = read_deflated(fp, name, header_only=True) if has_preamble else None
            if ds is None:
                fp.seek(0)
                # 64 KB: Siemens CSA headers (needed for mosaics) stay in memory; pixel data
                # is deferred, its offset kept
                ds = pydicom.dcmread(fp, defer_size=65536, force=not has_preamble)
        except DicomToolsError:
            raise
        except InvalidDicomError as exc:
            raise NotDicomError(name, f"not a DICOM file ({exc})") from None
        except RecursionError:
            raise UnreadableDicomError(name, "header cannot be parsed (sequences nested too "
                                             "deeply)") from None
        except MemoryError:
            raise UnreadableDicomError(name, "header cannot be parsed (element lengths larger "
                                             "than memory allows)") from None
        except Exception as exc:  # noqa: BLE001 - struct/zlib/BytesLength/... on bad input
            raise UnreadableDicomError(name, f"header cannot be parsed "
                                             f"({_exc_text(exc)})") from None
        try:
            return _instance_from_dataset(source, ds, size)
        except DicomToolsError:
            raise
        except RecursionError:
            raise UnreadableDicomError(name, "header cannot be interpreted (sequences nested "
                                             "too deeply)") from None
        except MemoryError:
            raise UnreadableDicomError(name, "header cannot be interpreted (an element declares "
                                             "more bytes than the file or memory holds)") \
                from None
        except Exception as exc:  # noqa: BLE001 - odd values in a parsed header
            raise UnreadableDicomError(name, f"header cannot be interpreted "
                                             f"({_exc_text(exc)})") from None


DEFLATED_UID = "1.2.840.10008.1.2.1.99"
#: most bytes a deflated data set may inflate to before its Pixel Data (a header)
MAX_DEFLATED_HEADER = 256 * 2**20


def read_deflated(fp, name: str, *, header_only: bool = False, cap: int | None = None):
    """A pydicom Dataset from a Deflated Explicit VR Little Endian file, or None otherwise.

    pydicom inflates such a data set whole with ``zlib.decompress``; a 2 MB file can inflate
    to gigabytes. Here the stream is inflated incrementally under a cap (by default a quarter
    of the memory available). With ``header_only`` inflation stops at Pixel Data, which is
    then represented by an empty placeholder (the scan needs only to know it is there).
    ``fp`` must be positioned at the start of a file with a preamble.
    """
    import pydicom
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble

    from ._limits import available_memory

    fp.seek(0)
    read_preamble(fp, False)
    meta = _read_file_meta_info(fp)
    ts = str(meta.get("TransferSyntaxUID", "") or "").strip("\x00 ")
    if ts != DEFLATED_UID:
        return None
    limit = available_memory() // 4
    cap = min(cap, limit) if cap is not None else limit
    start = fp.tell()
    raw = b""
    if header_only:
        raw = inflate_capped(fp, min(cap, MAX_DEFLATED_HEADER), name,
                             until=b"\xe0\x7f\x10\x00")
        try:
            ds = read_dataset(DicomBytesIO(raw), False, True, defer_size=None)
            ds.add_new(_PIXEL_TAG, "OB", b"")
        except Exception:  # noqa: BLE001 - the marker was inside a value: inflate it all
            raw = b""
            fp.seek(start)
    if not raw:
        raw = inflate_capped(fp, cap, name)
        # nothing deferred: a deferred value would be re-read from the (deflated) file on disk
        ds = read_dataset(DicomBytesIO(raw), False, True, defer_size=None)
    return pydicom.dataset.FileDataset(name, ds, preamble=b"\x00" * 128, file_meta=meta,
                                       is_implicit_VR=False, is_little_endian=True)


def safe_dcmread(fp, name: str, *, stop_before_pixels: bool = False, **kwargs):
    """``pydicom.dcmread`` that cannot be made to inflate a deflate bomb.

    pydicom inflates a Deflated Explicit VR Little Endian data set whole, even with
    ``stop_before_pixels``. Such files are read with :func:`read_deflated` instead (inflation
    stops at Pixel Data when ``stop_before_pixels``; otherwise it is capped by available
    memory); every other file goes to ``pydicom.dcmread(fp, stop_before_pixels=..., **kwargs)``
    unchanged (``specific_tags`` and ``defer_size`` only apply there).

    Raises
    ------
    UnreadableDicomError
        A corrupt or oversized deflate stream (anything pydicom raises otherwise).
    """
    import pydicom

    pos = fp.tell()
    head = fp.read(132)
    fp.seek(pos)
    if len(head) == 132 and head[128:132] == b"DICM" and pos == 0:
        ds = read_deflated(fp, name, header_only=stop_before_pixels)
        if ds is not None:
            if stop_before_pixels and _PIXEL_TAG in ds:
                del ds[_PIXEL_TAG]
            return ds
        fp.seek(pos)
    return pydicom.dcmread(fp, stop_before_pixels=stop_before_pixels, **kwargs)


def looks_like_dicom(head: bytes) -> bool:
    """Whether a file's first 132 bytes look like DICOM: the ``DICM`` preamble marker, or a
    data set without preamble (starting with a group 0002/0008 tag, either endianness).

    A cheap sniff for file pickers and readers; :func:`scan` decides for certain.

    Examples
    --------
    >>> looks_like_dicom(b"\\0" * 128 + b"DICM")
    True
    >>> looks_like_dicom(b"\\x89PNG\\r\\n\\x1a\\n" + b"\\0" * 124)
    False
    """
    return head[128:132] == b"DICM" or _looks_like_raw_dicom(head)


def _looks_like_raw_dicom(head: bytes) -> bool:
    """A data set without preamble: starts with a group 0002/0008 tag, either endianness."""
    if len(head) < 8:
        return False
    group_le = int.from_bytes(head[0:2], "little")
    group_be = int.from_bytes(head[0:2], "big")
    return group_le in (0x0002, 0x0008) or group_be in (0x0002, 0x0008)


def _instance_from_dataset(source: Source, ds, size: int) -> Instance:
    name = str(source)
    meta = getattr(ds, "file_meta", None)
    sop_class = _text(ds.get("SOPClassUID", None)) or _text(
        meta.get("MediaStorageSOPClassUID", None) if meta else None)
    if sop_class == DICOMDIR_UID or "DirectoryRecordSequence" in ds:
        raise NoImageError(name, "a DICOMDIR index (open it directly to read the files it lists)")
    # a force-read non-DICOM file yields a data set without any of these
    if not any(k in ds for k in ("SOPClassUID", "Modality", "Rows", "StudyInstanceUID",
                                  "SeriesInstanceUID", "PixelData")):
        raise NotDicomError(name, "not a DICOM file (no SOP Class, Modality or image attributes)")
    try:
        raw = ds.get_item(_PIXEL_TAG, keep_deferred=True)
    except Exception as exc:  # noqa: BLE001 - pydicom may raise anything on a broken tail
        raise UnreadableDicomError(name, f"Pixel Data element cannot be read ({exc})") from None
    if raw is None:
        for alt in ("FloatPixelData", "DoubleFloatPixelData"):
            if alt in ds:
                raise NoImageError(name, f"{alt} (float images) is not supported yet")
        kind = _sop_name(sop_class)
        raise NoImageError(name, f"no Pixel Data{f' ({kind})' if kind else ''}")
    rows, cols = _i(ds.get("Rows", None), 0), _i(ds.get("Columns", None), 0)
    if not rows or not cols:
        raise UnreadableDicomError(name, f"invalid image size Rows={rows} Columns={cols}")
    samples = _i(ds.get("SamplesPerPixel", None), 1) or 1
    bits = _i(ds.get("BitsAllocated", None), 0) or 0
    if bits not in (1, 8, 16, 32, 64):
        raise UnreadableDicomError(name, f"unsupported BitsAllocated={bits}")
    n_frames = _i(ds.get("NumberOfFrames", None), 1) or 1
    if n_frames < 1:
        n_frames = 1
    if n_frames > MAX_FRAMES or n_frames > max(size, 1):
        raise UnreadableDicomError(
            name, f"absurd NumberOfFrames={n_frames:,} for a file of {size:,} bytes")
    voxels = rows * cols * n_frames * samples
    if voxels > MAX_VOXELS:
        raise UnreadableDicomError(
            name, f"absurd declared size {n_frames} frame(s) x {rows} x {cols} x {samples} "
                  f"samples ({voxels:,} values); refusing to allocate it")
    ts = _text(meta.get("TransferSyntaxUID", None)) if meta else ""
    if not ts:
        ts = ("1.2.840.10008.1.2" if ds.is_implicit_VR else
              ("1.2.840.10008.1.2.1" if ds.is_little_endian else "1.2.840.10008.1.2.2"))
    encapsulated = ts not in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1",
                              "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99")
    if ts == "1.2.840.10008.1.2.1.99":  # deflated: pydicom inflates, offsets are meaningless
        encapsulated = True
    value_tell = getattr(raw, "value_tell", None)
    length = getattr(raw, "length", None)
    pixel_offset = pixel_length = None
    if not encapsulated:
        expected = (voxels * bits + 7) // 8
        if length is not None and length != 0xFFFFFFFF:
            if value_tell is not None and value_tell + length > size:
                raise UnreadableDicomError(
                    name, f"truncated: Pixel Data declares {length:,} bytes but the file ends "
                          f"{size - value_tell:,} bytes after its start")
            if length < expected:
                raise UnreadableDicomError(
                    name, f"Pixel Data holds {length:,} bytes but {n_frames} frame(s) of "
                          f"{rows}x{cols}x{samples} at {bits} bits need {expected:,}")
            if value_tell is not None and source.member is None:
                pixel_offset, pixel_length = int(value_tell), int(length)
    else:
        if value_tell is not None and length not in (None, 0xFFFFFFFF) and \
                value_tell + length > size:
            raise UnreadableDicomError(name, "truncated: encapsulated Pixel Data runs past the "
                                             "end of the file")
    modality = _text(ds.get("Modality", None)).upper()
    units = "HU" if modality == "CT" else _text(ds.get("RescaleType", None))
    if modality == "RTDOSE":
        units = _text(ds.get("DoseUnits", None)) or "GY"
    meta_sop = _text(meta.get("MediaStorageSOPInstanceUID", None)) if meta else ""
    inst = Instance(
        source=source,
        sop_class=sop_class,
        sop_uid=_text(ds.get("SOPInstanceUID", None)) or meta_sop,
        study_uid=_text(ds.get("StudyInstanceUID", None)),
        series_uid=_text(ds.get("SeriesInstanceUID", None)) or f"unknown-series:{name}",
        patient_name=_text(ds.get("PatientName", None)),
        patient_id=_text(ds.get("PatientID", None)),
        study_date=_text(ds.get("StudyDate", None)),
        study_description=_text(ds.get("StudyDescription", None)),
        series_description=_text(ds.get("SeriesDescription", None)),
        series_number=_i(ds.get("SeriesNumber", None)),
        modality=modality,
        instance_number=_i(ds.get("InstanceNumber", None)),
        acquisition_number=_i(ds.get("AcquisitionNumber", None)),
        echo_number=_i(_first(ds.get("EchoNumbers", None))),
        image_type=tuple(str(x).strip() for x in _as_list(ds.get("ImageType", None))),
        frame_of_reference=_text(ds.get("FrameOfReferenceUID", None)),
        rows=rows, columns=cols, samples=samples,
        photometric=_text(ds.get("PhotometricInterpretation", None)).upper() or (
            "MONOCHROME2" if samples == 1 else "RGB"),
        bits_allocated=bits,
        bits_stored=_i(ds.get("BitsStored", None), bits) or bits,
        high_bit=_i(ds.get("HighBit", None), bits - 1),
        pixel_representation=_i(ds.get("PixelRepresentation", None), 0) or 0,
        planar_configuration=_i(ds.get("PlanarConfiguration", None), 0) or 0,
        n_frames=n_frames,
        transfer_syntax=ts,
        encapsulated=encapsulated,
        pixel_offset=pixel_offset,
        pixel_length=pixel_length,
        slice_thickness=_spacing_or_none(ds.get("SliceThickness", None)),
        spacing_between_slices=_spacing_or_none(ds.get("SpacingBetweenSlices", None)),
        units=units,
        header=_summary(ds),
        file_size=int(size),
    )
    if "MOSAIC" in (t.upper() for t in inst.image_type) and inst.n_frames == 1:
        _unpack_mosaic(inst, ds)
    else:
        inst.frames = _frames_of(inst, ds)
    _check_frames(inst)
    return inst


def _unpack_mosaic(inst: Instance, ds) -> None:
    """A Siemens mosaic: one frame per tile, positions from the CSA header (via nibabel).

    The instance keeps the tile size as rows/columns and the mosaic layout in ``mosaic``
    = (mosaic rows, mosaic columns, tiles per row); pixel readers cut tiles from the plane.
    """
    from . import fastheader

    if isinstance(ds, fastheader.FastDataset):
        raise fastheader.Unsupported("mosaic: the CSA header needs pydicom")
    import warnings

    from nibabel.nicom import dicomwrappers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            w = dicomwrappers.wrapper_from_data(ds)
            n = int(w.n_mosaic)
            tile_r, tile_c = int(w.image_shape[0]), int(w.image_shape[1])
            pos0 = np.asarray(w.image_position, float)
            normal = np.asarray(w.slice_normal, float)
            dz = float(w.voxel_sizes[2])
        except Exception as exc:  # noqa: BLE001 - no/odd CSA header: keep the tiled image
            inst.header["MosaicProblem"] = f"mosaic not unpacked: {exc}"
            inst.frames = _frames_of(inst, ds)
            return
    per_row = int(np.ceil(np.sqrt(n)))
    inst.mosaic = (inst.rows, inst.columns, per_row)
    frames = _frames_of(inst, ds)
    base = frames[0]
    inst.rows, inst.columns = tile_r, tile_c
    # every tile keeps what the mosaic frame carries (b-value, gradient, echo, scaling...)
    inst.frames = [replace(base, index=k, position=pos0 + k * dz * normal) for k in range(n)]


def _sop_name(uid: str) -> str:
    try:
        from pydicom.uid import UID
        n = UID(uid).name
        return "" if n == uid else n
    except Exception:  # noqa: BLE001
        return ""


# --------------------------------------------------------------------------------------------
# series


@dataclass
class Skipped:
    """A file (or frame) left out, and why."""

    path: str
    reason: str

    def __post_init__(self) -> None:
        log.info("skipped %s: %s", self.path, self.reason)

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


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


# --------------------------------------------------------------------------------------------
# walking the file system


def iter_sources(path: str | os.PathLike) -> tuple[list[Source], list[Skipped]]:
    """Every candidate file under ``path`` (file, folder, ``.zip`` or DICOMDIR)."""
    path = os.fspath(path)
    skipped: list[Skipped] = []
    if os.path.isdir(path):
        out = []

        def unreadable(err: OSError) -> None:
            where = err.filename or path
            skipped.append(Skipped(os.fspath(where),
                                   f"folder cannot be read ({err.strerror or err})"))

        for root, dirs, files in os.walk(path, onerror=unreadable):
            dirs.sort()
            for fn in sorted(files):
                full = os.path.join(root, fn)
                why = _not_regular(full)
                if why:
                    skipped.append(Skipped(full, why))
                    continue
                if fn.upper() == "DICOMDIR":
                    continue  # an index of files that the walk reaches anyway
                if fn.lower().endswith(".zip") and zipfile.is_zipfile(full):
                    srcs, sk = _zip_sources(full)
                    out.extend(srcs)
                    skipped.extend(sk)
                    continue
                out.append(Source(full))
        return out, skipped
    if not os.path.exists(path):
        raise DicomToolsError(path, "no such file or folder")
    why = _not_regular(path)
    if why:
        return [], [Skipped(path, why)]
    if path.lower().endswith(".zip") and zipfile.is_zipfile(path):
        return _zip_sources(path)
    if os.path.basename(path).upper() == "DICOMDIR":
        return _dicomdir_sources(path)
    return [Source(path)], skipped


def _not_regular(path: str) -> str:
    """Why ``path`` is not a regular file we may open ("" when it is one)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(st.st_mode):
        return ""
    return f"not a regular file ({file_kind(st.st_mode)}); not opened"


def _zip_sources(path: str):
    out = []
    try:
        zf = _archive(path)
    except DicomToolsError as exc:
        return [], [Skipped(path, exc.reason)]
    for info in zf.infolist():
        if info.is_dir() or os.path.basename(info.filename).upper() == "DICOMDIR":
            continue
        out.append(Source(path, info.filename))
    return out, []


def _dicomdir_sources(path: str):
    import pydicom
    from pydicom.fileset import FileSet

    try:
        fs = FileSet(pydicom.dcmread(path))
    except Exception as exc:  # noqa: BLE001
        raise DicomToolsError(path, f"DICOMDIR cannot be read ({exc})") from None
    out, skipped = [], []
    for inst in fs:
        p = os.fspath(inst.path)
        if not os.path.exists(p):
            skipped.append(Skipped(p, "listed in the DICOMDIR but missing on disk"))
        elif _not_regular(p):
            skipped.append(Skipped(p, _not_regular(p)))
        else:
            out.append(Source(p))
    return out, skipped


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
