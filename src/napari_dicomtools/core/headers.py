"""One file's header -> :class:`Instance` and its :class:`Frame` s (no pixel data read).

The second stage of the flow ``sources -> headers -> series``: :func:`read_header` parses a
:class:`~.sources.Source` with the fast parser (:mod:`.fastheader`) and falls back to pydicom
for anything it declines; values that cannot be right (orientation, positions, spacing,
scaling, declared sizes) are rejected with the file's name and the reason. Vendor private
tags are read in :mod:`.vendor`.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import IO, TYPE_CHECKING, Any, BinaryIO, NamedTuple, cast

import numpy as np
import numpy.typing as npt

from . import fastheader
from ._limits import FATAL, inflate_capped
from ._pixelsize import PixelCalibration, frame_time_ms, pixel_calibration
from ._syntaxes import DEFLATED, RAW_NATIVE, encoding_syntax
from ._values import DatasetLike, _as_list, _f, _fg_value, _first, _floats, _i, _text
from ._vendortags import (
    _diffusion,
    _ge_pepolar,
    _philips_scale_slope,
    _siemens_coil,
    _siemens_ice_echo,
    _uih_grid_layout,
    _uih_grid_positions,
    _uih_grid_slices,
)
from .errors import (
    DicomToolsError,
    GeometryError,
    NoImageError,
    NotDicomError,
    UnreadableDicomError,
    exception_text,
)
from .geometry import slice_normal
from .sources import Source
from .vendor import read_diffusion

if TYPE_CHECKING:
    from pydicom import Dataset
    from pydicom.dataset import FileDataset

    from .fastheader import FastDataset

    #: a parsed header: pydicom's, or the fast parser's (which declines what it cannot read)
    ParsedDataset = Dataset | FastDataset

#: a binary, seekable file: a regular file or a zip member's stream (what ``Source.open`` gives)
_BinaryFile = IO[bytes] | io.RawIOBase

__all__ = ["DEFLATED_UID", "DICOMDIR_UID", "MAX_DEFLATED_HEADER", "MAX_FRAMES", "MAX_POSITION_MM",
           "MAX_RESCALE", "MAX_SPACING_MM", "MAX_VOXELS", "NO_PIXEL_OBJECTS", "Frame", "Instance",
           "Mosaic", "TemporalKey", "Window",
           "check_orientation", "looks_like_dicom", "open_dicom", "read_deflated", "read_header",
           "safe_dcmread"]

# the largest image we agree to decode: 2**31 voxels (8 GiB of float32)
MAX_VOXELS = 2**31
DICOMDIR_UID = "1.2.840.10008.1.3.10"
_PIXEL_TAG = 0x7FE00010

#: SOP classes of annotation objects without pixels that scan() lists as series (issue 15):
#: RT Structure Set, and the structured reports that hold TID 1500 measurement reports
NO_PIXEL_OBJECTS = {"1.2.840.10008.5.1.4.1.1.481.3": "RTSTRUCT",
                    "1.2.840.10008.5.1.4.1.1.88.22": "SR", "1.2.840.10008.5.1.4.1.1.88.33": "SR",
                    "1.2.840.10008.5.1.4.1.1.88.34": "SR"}
#: ... and those with pixels whose references are read too: SEG (both), RT Dose
_REFERENCING = {"1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7",
                "1.2.840.10008.5.1.4.1.1.481.2", *NO_PIXEL_OBJECTS}


def _references(ds: DatasetLike) -> tuple[str, ...]:
    """SeriesInstanceUIDs an object refers to: ReferencedSeriesSequence (SEG), the RT
    referenced series of a structure set, the evidence of a report."""
    uids: dict[str, None] = {}

    def add(items: Iterable[DatasetLike] | None) -> None:
        for it in items or []:
            uid = _text(it.get("SeriesInstanceUID", None))
            if uid:
                uids[uid] = None

    add(ds.get("ReferencedSeriesSequence", None))
    for fr in ds.get("ReferencedFrameOfReferenceSequence", None) or []:
        for st in fr.get("RTReferencedStudySequence", None) or []:
            add(st.get("RTReferencedSeriesSequence", None))
    for kw in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for st in ds.get(kw, None) or []:
            add(st.get("ReferencedSeriesSequence", None))
    return tuple(uids)


def _object_instance(source: Source, ds: DatasetLike, size: int, sop_class: str, ts: str) -> Instance:
    """An annotation object without pixels (RTSTRUCT, SR) as an Instance of no image: one
    frame without geometry, and what it references."""
    inst = Instance(
        source=source, sop_class=sop_class,
        sop_uid=_text(ds.get("SOPInstanceUID", None)),
        study_uid=_text(ds.get("StudyInstanceUID", None)),
        series_uid=_text(ds.get("SeriesInstanceUID", None)) or f"unknown-series:{source}",
        patient_name=_text(ds.get("PatientName", None)),
        patient_id=_text(ds.get("PatientID", None)),
        study_date=_text(ds.get("StudyDate", None)),
        study_description=_text(ds.get("StudyDescription", None)),
        series_description=_text(ds.get("SeriesDescription", None)) or _text(
            ds.get("StructureSetLabel", None)),
        series_number=_i(ds.get("SeriesNumber", None)),
        modality=_text(ds.get("Modality", None)).upper() or NO_PIXEL_OBJECTS[sop_class],
        instance_number=_i(ds.get("InstanceNumber", None)), acquisition_number=None,
        echo_number=None, image_type=(), frame_of_reference=_text(ds.get(
            "FrameOfReferenceUID", None)),
        rows=0, columns=0, samples=1, photometric="", bits_allocated=0, bits_stored=0,
        high_bit=0, pixel_representation=0, planar_configuration=0, n_frames=0,
        transfer_syntax=ts, encapsulated=False, pixel_offset=None, pixel_length=None,
        slice_thickness=None, spacing_between_slices=None, header=_summary(ds),
        file_size=int(size), references=_references(ds))
    inst.frames = [Frame(inst, None, None, None, None)]
    return inst


class TemporalKey(NamedTuple):
    """Order of the frames that share one slice position (a 4D series): compared field by
    field, as a tuple.

    Single-frame files fill it from TemporalPositionIdentifier (0020,0100), TriggerTime
    (0018,1060), AcquisitionDateTime (0008,002A) or AcquisitionTime (0008,0032),
    AcquisitionNumber (0020,0012) and InstanceNumber (0020,0013); enhanced multi-frame files
    from each frame's TemporalPositionIndex (0020,9128), NominalCardiacTriggerDelayTime
    (0020,9153), FrameAcquisitionDateTime (0018,9074) and the frame index.

    Parameters
    ----------
    position : int
        TemporalPositionIdentifier, or an enhanced frame's TemporalPositionIndex (0 if none).
    trigger_time : float
        TriggerTime or NominalCardiacTriggerDelayTime, in ms (0.0 if none).
    acquired : str
        AcquisitionDateTime, AcquisitionTime or FrameAcquisitionDateTime as DICOM DT/TM text.
    acquisition : int
        AcquisitionNumber (0 if none; 0 for the frames of a multi-frame file).
    number : int
        InstanceNumber, or the frame index in a multi-frame file.

    Examples
    --------
    >>> TemporalKey(position=1, number=7) < TemporalKey(position=2, number=3)
    True
    """

    position: int = 0
    trigger_time: float = 0.0  # ms
    acquired: str = ""  # DICOM DT/TM text
    acquisition: int = 0
    number: int = 0  # InstanceNumber, or the frame index in a multi-frame file


class Window(NamedTuple):
    """A display window: WindowCenter (0028,1050) and WindowWidth (0028,1051).

    Parameters
    ----------
    center : float
        The value shown mid-grey, in the image's rescaled units (HU for CT).
    width : float
        The range of values from black to white (positive).

    Examples
    --------
    >>> w = Window(40.0, 400.0)
    >>> w.center - w.width / 2, w.center + w.width / 2
    (-160.0, 240.0)
    """

    center: float
    width: float


class Mosaic(NamedTuple):
    """How a Siemens mosaic or a UIH grid lays its tiles out in the stored image.

    Tile ``k`` is at tile row ``k // per_row``, tile column ``k % per_row``.

    Parameters
    ----------
    rows : int
        Rows of the whole stored image.
    columns : int
        Columns of the whole stored image.
    per_row : int
        Tiles per row of the mosaic.

    Examples
    --------
    >>> m = Mosaic(rows=256, columns=256, per_row=4)
    >>> divmod(6, m.per_row)  # tile 6: second tile row, third tile column
    (1, 2)
    """

    rows: int
    columns: int
    per_row: int


@dataclass
class Frame:
    """One 2D image: a single-frame file, or one frame of a multi-frame file.

    ``echo`` is the echo this frame belongs to: the number the frame declares
    (``echo_number``, Siemens XA's ICE dimensions), else the rank of its EffectiveEchoTime
    among the echo times of its series (``echo_rank``, set when the series is grouped).

    Parameters
    ----------
    instance : Instance
        The file the frame is in.
    index : int or None
        The frame's index in a multi-frame file (or a mosaic tile's); None for a single-frame
        file.
    position : ndarray of 3 float64 or None
        ImagePositionPatient (0020,0032): the centre of the first pixel, LPS mm.
    orientation : tuple of 6 float or None
        ImageOrientationPatient (0020,0037): row then column direction cosines (LPS).
    pixel_spacing : tuple of 2 float or None
        PixelSpacing (0028,0030) (or ImagerPixelSpacing): row spacing then column spacing, mm.
    slope, intercept : float
        RescaleSlope and RescaleIntercept (0028,1053/1052): value = stored * slope + intercept
        (RT Dose: slope times DoseGridScaling).
    window : Window or None
        The first WindowCenter and WindowWidth (0028,1050/1051), when the width is positive.
    temporal : TemporalKey
        The frame's order among the frames at its position (4D series).
    acquisition : int or None
        AcquisitionNumber (0020,0012).
    philips_scale_slope : float or None
        Philips (2005,100E), for Philips "precise" floating-point values.
    echo_number : int or None
        The echo an enhanced frame declares (Siemens XA ICE dimensions).
    component : str or None
        An enhanced MR frame's ComplexImageComponent as a name suffix (``"ph"``, ``"real"``,
        ``"imaginary"``; ``""`` for magnitude).
    bvalue : float or None
        DiffusionBValue (0018,9087) or the vendor's private b-value, s/mm^2.
    bvec : tuple of 3 float or None
        DiffusionGradientOrientation (0018,9089) or the vendor's, an LPS unit vector.
    echo_time : float or None
        An enhanced MR frame's EffectiveEchoTime (0018,9082), ms.
    coil : str or None
        The Siemens receive coil (uncombined images: one element each).
    flip_rows : bool
        GE pepolar: a reversed-polarity frame, stored upside down.
    number_offset : int
        Added to SeriesNumber in output names (dcm2niix: +1000 for a GE pepolar series).
    echo_rank : int or None
        The rank of ``echo_time`` among the echo times of its series (set when the series is
        grouped).

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> fr = read_header(get_testdata_file("MR_small.dcm")).frames[0]
    >>> fr.index, fr.orientation, fr.pixel_spacing, fr.window
    (None, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), (0.3125, 0.3125), Window(center=600.0, width=1600.0))
    """

    instance: Instance
    index: int | None  # frame index in a multi-frame file, None for single-frame files
    position: npt.NDArray[np.float64] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, ...] | None
    slope: float = 1.0
    intercept: float = 0.0
    window: Window | None = None
    temporal: TemporalKey = TemporalKey()  # order within one position (4D)
    acquisition: int | None = None
    philips_scale_slope: float | None = None  # (2005,100E), for Philips "precise" values
    echo_number: int | None = None  # enhanced MR: the frame's own echo (Siemens ICE)
    component: str | None = None  # enhanced: per-frame ComplexImageComponent (ph/real/...)
    bvalue: float | None = None  # DiffusionBValue (0018,9087)
    bvec: tuple[float, float, float] | None = None  # DiffusionGradientOrientation (0018,9089), LPS unit vector
    echo_time: float | None = None  # enhanced MR: per-frame EffectiveEchoTime (0018,9082)
    coil: str | None = None  # Siemens receive coil (uncombined images: one element each)
    flip_rows: bool = False  # GE pepolar: a reversed-polarity frame, stored upside down
    number_offset: int = 0  # added to SeriesNumber in names (dcm2niix: +1000 for pepolar)
    echo_rank: int | None = None  # rank of echo_time in its series (set by group_series)

    @property
    def echo(self) -> int | None:
        """The echo number: the frame's own (``echo_number``), else ``echo_rank``."""
        return self.echo_number if self.echo_number is not None else self.echo_rank


@dataclass
class Instance:
    """Header facts of one DICOM file (no pixel data): what :func:`read_header` returns.

    Parameters
    ----------
    source : Source
        The file, or the zip member.
    sop_class, sop_uid : str
        SOPClassUID and SOPInstanceUID (0008,0016/0018), from the file meta when absent.
    study_uid, series_uid : str
        StudyInstanceUID and SeriesInstanceUID (0020,000D/000E); a series without one gets
        ``"unknown-series:<file>"``.
    patient_name, patient_id, study_date, study_description, series_description : str
        PatientName, PatientID, StudyDate, StudyDescription and SeriesDescription (``""``
        when absent).
    series_number : int or None
        SeriesNumber.
    modality : str
        Modality (0008,0060), upper case.
    instance_number, acquisition_number, echo_number : int or None
        InstanceNumber, AcquisitionNumber and the first of EchoNumbers.
    image_type : tuple of str
        The values of ImageType (0008,0008) (``("ORIGINAL", "PRIMARY", "AXIAL")``).
    frame_of_reference : str
        FrameOfReferenceUID (0020,0052).
    rows, columns : int
        The size of one frame (a mosaic's tile once it is unpacked).
    samples : int
        SamplesPerPixel (3 for RGB).
    photometric : str
        PhotometricInterpretation, upper case (MONOCHROME2 or RGB when absent).
    bits_allocated, bits_stored, high_bit, pixel_representation, planar_configuration : int
        The pixel module's attributes (0028,0100-0103 and 0028,0006).
    n_frames : int
        NumberOfFrames (1 for a single-frame file).
    transfer_syntax : str
        TransferSyntaxUID (from the encoding when the file has no file meta).
    encapsulated : bool
        Whether the pixel data is encapsulated (compressed or deflated).
    pixel_offset, pixel_length : int or None
        File offset and byte length of native Pixel Data in a plain file; None when
        encapsulated, of undefined length or in a zip member.
    slice_thickness, spacing_between_slices : float or None
        SliceThickness and SpacingBetweenSlices (mm) when positive and of sane size.
    units : str
        ``"HU"`` for CT, DoseUnits for RT Dose, RescaleType otherwise.
    mosaic : Mosaic or None
        A Siemens mosaic or UIH grid: the stored image's size and tiles per row.
    header : dict
        A small readable summary of the header (keyword -> value) for display.
    frames : list of Frame
        The file's 2D images (one per frame, or per mosaic tile).
    file_size : int
        Bytes of the file (or zip member), for plausibility checks.
    references : tuple of str
        The SeriesInstanceUIDs an annotation object (SEG, RTSTRUCT, SR) says it was made on.
    encapsulated_offset : int or None
        File offset of encapsulated Pixel Data's first item (its Basic Offset Table) in a
        plain file, so a decoder finds the frames without parsing the header again; None
        otherwise.
    calibration : PixelCalibration
        The pixel size and where it comes from: PixelSpacing, ImagerPixelSpacing or the
        Sequence of Ultrasound Regions (0018,6011); ``spacing`` None when the file does not
        say (then it is unknown, not 1 mm).
    frame_time_ms : float or None
        Time between the frames of a multi-frame cine: FrameTime (0018,1063), or the mean
        step of FrameTimeVector (0018,1065); None for a single frame or without either.
    frame_time_note : str
        Said when FrameTimeVector's steps vary (``""`` otherwise).

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> inst = read_header(get_testdata_file("CT_small.dcm"))
    >>> inst.modality, inst.rows, inst.columns, inst.units, inst.image_type
    ('CT', 128, 128, 'HU', ('ORIGINAL', 'PRIMARY', 'AXIAL'))
    >>> inst.pixel_offset, inst.pixel_length
    (6300, 32768)
    """

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
    image_type: tuple[str, ...]
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
    mosaic: Mosaic | None = None  # Siemens mosaic or UIH grid: the tiles' layout
    header: dict[str, Any] = field(default_factory=dict)  # small readable summary
    frames: list[Frame] = field(default_factory=list)
    file_size: int = 0  # bytes of the file (or zip member), for plausibility checks
    #: SeriesInstanceUIDs an annotation object (SEG, RTSTRUCT, SR) says it was made on
    references: tuple[str, ...] = ()
    #: file offset of encapsulated Pixel Data's first item (a plain file, not deflated)
    encapsulated_offset: int | None = None
    #: pixel size and its source (PixelSpacing, ImagerPixelSpacing, ultrasound regions)
    calibration: PixelCalibration = PixelCalibration(None, "")
    frame_time_ms: float | None = None  # FrameTime, or FrameTimeVector's mean step
    frame_time_note: str = ""  # FrameTimeVector's steps vary

    @property
    def path(self) -> str:
        """The file as text (``archive.zip::member`` for a zip member)."""
        return str(self.source)


def _getter(ds: DatasetLike) -> Callable[[str, Any], Any]:
    """``ds.get``, or for the fast parser's data set one dictionary look-up of its decoded
    values (``FastDataset.decoded``; what its ``get`` answers for the keywords it reads:
    every keyword this module asks through a getter is one of them, as
    tests/test_fastheader.py checks on this module's source)."""
    return ds.decoded.get if isinstance(ds, fastheader.FastDataset) else ds.get


_SUMMARY_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "StudyDate",
    "StudyTime", "StudyDescription", "AccessionNumber", "SeriesDate", "SeriesTime",
    "SeriesDescription", "SeriesNumber", "Modality", "Manufacturer", "ManufacturerModelName",
    "InstitutionName", "BodyPartExamined", "ProtocolName", "ImageType", "SliceThickness",
    "SpacingBetweenSlices", "PixelSpacing", "ImagerPixelSpacing", "FrameTime", "KVP", "XRayTubeCurrent", "ExposureTime",
    "ConvolutionKernel", "ContrastBolusAgent", "MagneticFieldStrength", "RepetitionTime",
    "EchoTime", "InversionTime", "FlipAngle", "SequenceName", "ScanningSequence",
    "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "PhotometricInterpretation",
    "BitsStored", "RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter",
    "WindowWidth", "GantryDetectorTilt", "StudyID", "ImageComments",
    "PerformedProcedureStepDescription",
)


def _summary(ds: DatasetLike) -> dict[str, Any]:
    out: dict[str, Any] = {}
    get = _getter(ds)
    for kw in _SUMMARY_KEYWORDS:
        v = get(kw, None)
        if v is None or v == "":
            continue
        if isinstance(v, list) or type(v).__name__ == "MultiValue":
            v = [str(x).strip() for x in v]
        elif not isinstance(v, (int, float)):
            v = str(v)
        out[kw] = v
    return out


def _frames_of(inst: Instance, ds: DatasetLike) -> list[Frame]:
    """Geometry, scaling and ordering keys of every frame in ``ds``."""
    frames = _frames_geometry(inst, ds)
    if inst.modality == "MR":
        flip, offset = _ge_pepolar(ds)
        coil = _siemens_coil(ds)
        if coil:
            inst.header["CoilName"] = coil  # dcm2niix's %a
        for f in frames:
            f.flip_rows, f.number_offset, f.coil = flip, offset, coil
        ss = _philips_scale_slope(ds)
        diffusion = read_diffusion(ds)
        per_frame = ds.get("PerFrameFunctionalGroupsSequence", None)
        shared_seq = ds.get("SharedFunctionalGroupsSequence", None)
        shared = shared_seq[0] if shared_seq else None
        for f in frames:
            f.philips_scale_slope = ss
            if per_frame is not None and f.index is not None and f.index < len(per_frame):
                f.bvalue, f.bvec = _diffusion(per_frame[f.index], shared, diffusion)
            else:
                f.bvalue, f.bvec = diffusion
    return frames


#: positions further than this from the origin (mm) are not on a patient (10 km)
MAX_POSITION_MM = 1e7
#: largest pixel or slice spacing believed (mm)
MAX_SPACING_MM = 1e5
#: largest absolute RescaleSlope or RescaleIntercept believed (keeps float32 values finite)
MAX_RESCALE = 1e20
#: most frames one file may declare
MAX_FRAMES = 1 << 18


def check_orientation(iop: Sequence[float], path: str | None = None) -> None:
    """Raise :class:`GeometryError` unless ImageOrientationPatient (0020,0037) holds two
    (nearly) unit, (nearly) perpendicular direction cosines.

    Parameters
    ----------
    iop : sequence of 6 float
        Row then column direction cosines (LPS).
    path : str, optional
        The file, for the error message.

    Raises
    ------
    GeometryError
        Not 6 finite numbers, a zero or non-unit direction, or directions that are not
        perpendicular.

    Examples
    --------
    >>> check_orientation([1, 0, 0, 0, 1, 0])  # axial: fine
    >>> check_orientation([1, 0, 0, 1, 0, 0], "a.dcm")
    Traceback (most recent call last):
    ...
    napari_dicomtools.core.errors.GeometryError: a.dcm: ImageOrientationPatient 1\\0\\0\\1\\0\\0: row and column directions are not perpendicular
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


def _show(v: Iterable[float]) -> str:
    try:
        return "\\".join(f"{float(x):g}" for x in v)
    except (TypeError, ValueError):
        return repr(v)[:80]


#: orientations :func:`check_orientation` passed: the slices of a series share theirs, and a
#: scan checks each once (NaN never equals itself, so a NaN orientation is never taken for one)
_GOOD_ORIENTATIONS: set[tuple[float, ...]] = set()


def _check_frames(inst: Instance) -> None:
    """Reject geometry and value scaling that cannot be right (GeometryError/Unreadable).

    Window values that are not finite are dropped (they only affect the display).
    """
    path = inst.path
    for fr in inst.frames:
        if fr.orientation is not None and fr.orientation not in _GOOD_ORIENTATIONS:
            check_orientation(fr.orientation, path)
            if len(_GOOD_ORIENTATIONS) >= 4096:
                _GOOD_ORIENTATIONS.clear()
            _GOOD_ORIENTATIONS.add(fr.orientation)
        if fr.position is not None:
            p = [float(x) for x in fr.position.tolist()]
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


def _spacing_or_none(value: object) -> float | None:
    """A slice spacing/thickness when it is a positive finite number of sane size."""
    v = _f(value)
    return v if v is not None and math.isfinite(v) and 0 < v <= MAX_SPACING_MM else None


class _TopLevel(NamedTuple):
    """A file's top-level geometry, scaling and window: what every frame has unless its
    functional groups (enhanced multi-frame) say otherwise."""

    position: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    pixel_spacing: tuple[float, ...] | None
    slope: float
    intercept: float
    window: Window | None


def _top_level(inst: Instance, ds: DatasetLike) -> _TopLevel:
    get = _getter(ds)
    pos = _floats(get("ImagePositionPatient", None), 3)
    iop = _floats(get("ImageOrientationPatient", None), 6)
    ps = inst.calibration.spacing
    slope = _f(get("RescaleSlope", None), 1.0) or 1.0
    intercept = _f(get("RescaleIntercept", None), 0.0)
    if inst.modality == "RTDOSE" and "DoseGridScaling" in ds:
        slope = _f(get("DoseGridScaling", None), 1.0) * slope
    wc, ww = _f(_first(get("WindowCenter", None))), _f(_first(get("WindowWidth", None)))
    return _TopLevel(tuple(pos) if pos else None, tuple(iop) if iop else None,
                     tuple(ps) if ps else None, slope, intercept,
                     Window(wc, ww) if wc is not None and ww and ww > 0 else None)


def _frames_geometry(inst: Instance, ds: DatasetLike) -> list[Frame]:
    """Position, orientation, spacing, scaling, window and temporal key of every frame."""
    get = _getter(ds)
    top = _top_level(inst, ds)
    per_frame_seq = get("PerFrameFunctionalGroupsSequence", None)
    shared_seq = get("SharedFunctionalGroupsSequence", None)
    shared = shared_seq[0] if shared_seq else None
    if per_frame_seq is not None or shared is not None:
        return [_enhanced_frame(inst, k, per_frame_seq[k] if per_frame_seq is not None
                                and k < len(per_frame_seq) else None, shared, top)
                for k in range(inst.n_frames)]
    if inst.n_frames == 1:
        temporal = TemporalKey(
            _i(get("TemporalPositionIdentifier", None), 0),
            _f(get("TriggerTime", None), 0.0),
            _text(get("AcquisitionDateTime", None)) or _text(get("AcquisitionTime",
                                                                       None)),
            _i(get("AcquisitionNumber", None), 0),
            inst.instance_number or 0,
        )
        return [Frame(inst, None, np.array(top.position) if top.position else None,
                      top.orientation, top.pixel_spacing, top.slope, top.intercept,
                      top.window, temporal, inst.acquisition_number)]
    return _classic_multiframe(inst, ds, top)


def _enhanced_frame(inst: Instance, k: int, pf: Dataset | None, shared: DatasetLike | None,
                    top: _TopLevel) -> Frame:
    """Frame ``k`` of an enhanced multi-frame file from its per-frame item ``pf`` and the
    shared functional groups (top-level values where both are silent)."""
    def value(seq_kw: str, kw: str, shared_too: bool = True) -> Any:
        return _fg_value(pf, shared if shared_too else None, seq_kw, kw)

    pos = _floats(value("PlanePositionSequence", "ImagePositionPatient"), 3)
    iop = _floats(value("PlaneOrientationSequence", "ImageOrientationPatient"), 6)
    fps = _floats(value("PixelMeasuresSequence", "PixelSpacing"), 2)
    fs = _f(value("PixelValueTransformationSequence", "RescaleSlope"))
    fi = _f(value("PixelValueTransformationSequence", "RescaleIntercept"))
    fwc = _f(_first(value("FrameVOILUTSequence", "WindowCenter")))
    fww = _f(_first(value("FrameVOILUTSequence", "WindowWidth")))
    temporal = TemporalKey(
        _i(value("FrameContentSequence", "TemporalPositionIndex", False), 0),
        _f(value("CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"), 0.0),
        _text(value("FrameContentSequence", "FrameAcquisitionDateTime", False)),
        0, k)
    cic = _text(value("MRImageFrameTypeSequence", "ComplexImageComponent")).upper()
    return Frame(
        inst, k,
        np.array(pos) if pos else (np.array(top.position) if top.position else None),
        tuple(iop) if iop else top.orientation,
        tuple(fps) if fps else top.pixel_spacing,
        fs if fs else top.slope, fi if fi is not None else top.intercept,
        Window(fwc, fww) if fwc is not None and fww and fww > 0 else top.window,
        temporal, inst.acquisition_number,
        echo_number=_siemens_ice_echo(pf),
        component={"PHASE": "ph", "REAL": "real", "IMAGINARY": "imaginary"}.get(cic, ""),
        echo_time=_f(value("MREchoSequence", "EffectiveEchoTime")),
    )


def _classic_multiframe(inst: Instance, ds: DatasetLike, top: _TopLevel) -> list[Frame]:
    """Frames of a classic multi-frame file: RT dose / NM grids placed along the normal by
    GridFrameOffsetVector (3004,000C) or SpacingBetweenSlices, or a cine loop at one
    position."""
    n = inst.n_frames
    offsets = _as_list(ds.get("GridFrameOffsetVector", None)) or None
    if offsets is not None and len(offsets) == n:
        offsets = _floats(offsets, n)
        if offsets is None:
            raise GeometryError(inst.path, "GridFrameOffsetVector (3004,000C) holds values "
                                           "that are not finite numbers")
        # PS3.3 C.8.8.3.2: offsets relative to the first frame (first value 0) or, for an
        # axial grid, absolute z coordinates (first value = ImagePositionPatient z): either
        # way frame k lies offsets[k] - offsets[0] mm along the normal from the first
        offsets = [float(v) - float(offsets[0]) for v in offsets]
    normal = None
    if top.orientation:
        check_orientation(top.orientation, inst.path)
        normal = slice_normal(top.orientation)
    step = inst.spacing_between_slices
    frames: list[Frame] = []
    for k in range(n):
        pos: npt.NDArray[np.float64] | None = None
        if top.position is not None and normal is not None:
            if offsets is not None and len(offsets) == n:
                pos = np.array(top.position) + normal * float(offsets[k])
            elif step:
                pos = np.array(top.position) + normal * step * k
        frames.append(Frame(inst, k, pos, top.orientation, top.pixel_spacing, top.slope,
                            top.intercept, top.window, TemporalKey(0, 0.0, "", 0, k),
                            inst.acquisition_number))
    return frames


@contextmanager
def open_dicom(source: Source) -> Iterator[tuple[BinaryIO, int, bool]]:
    """Open ``source`` and reject empty and non-DICOM files at once (a few bytes read).

    Parameters
    ----------
    source : Source
        The file or zip member.

    Yields
    ------
    tuple of (binary file, int, bool)
        The open file at offset 0 (closed on exit), its size in bytes, and whether it has
        the 128-byte preamble and ``DICM`` marker.

    Raises
    ------
    NotDicomError
        An empty file, or one that starts with neither the marker nor a DICOM element.
    UnreadableDicomError
        The file cannot be opened.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> with open_dicom(Source(get_testdata_file("CT_small.dcm"))) as (fp, size, preamble):
    ...     size, preamble, fp.tell()
    (39206, True, 0)
    """
    name = str(source)
    try:
        # a regular file or a zip member's stream: binary, seekable, closed here
        fp = cast(BinaryIO, source.open())
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

    Parameters
    ----------
    source : Source or str
        The file (a path), or a zip member.
    fast : bool
        Try the fast parser first (the result is the same; pydicom is slower).

    Returns
    -------
    Instance
        The file's header facts and its frames, their geometry and scaling checked.

    Raises
    ------
    NotDicomError, UnreadableDicomError, NoImageError, GeometryError
        With the file's path and the reason; nothing else (a malformed file of any kind ends
        as one of these).

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> inst = read_header(get_testdata_file("CT_small.dcm"))
    >>> inst.modality, inst.n_frames, inst.frames[0].slope, inst.frames[0].intercept
    ('CT', 1, 1.0, -1024.0)
    >>> read_header(__file__)
    Traceback (most recent call last):
    ...
    napari_dicomtools.core.errors.NotDicomError: ...headers.py: not a DICOM file (no 'DICM' marker, no DICOM data elements at the start)
    """
    if not isinstance(source, Source):
        source = Source(os.fspath(source))
    try:
        return _read_header(source, fast)
    except DicomToolsError:
        raise
    except FATAL:
        raise
    except BaseException as exc:  # noqa: BLE001 - parsers raise anything on hostile input
        raise _header_error(str(source), exc, "parsed") from None


def _header_error(name: str, exc: BaseException, stage: str) -> UnreadableDicomError:
    """The one error every unexpected exception of reading a header becomes: ``stage`` is
    ``"parsed"`` (reading the elements) or ``"interpreted"`` (making the Instance)."""
    if isinstance(exc, RecursionError):
        why = "sequences nested too deeply"
    elif isinstance(exc, MemoryError):
        why = "an element declares more bytes than the file or memory holds"
    else:
        why = exception_text(exc)
    return UnreadableDicomError(name, f"header cannot be {stage} ({why})")


def _read_header(source: Source, fast: bool) -> Instance:
    if fast:
        inst = _fast_instance(source)
        if inst is not None:
            return inst
    with open_dicom(source) as (fp, size, has_preamble):
        ds = _pydicom_dataset(str(source), fp, has_preamble)
        try:
            return _instance_from_dataset(source, ds, size)
        except DicomToolsError:
            raise
        except Exception as exc:  # noqa: BLE001 - odd values in a parsed header
            raise _header_error(str(source), exc, "interpreted") from None


#: bytes of the first read of a file: the whole header of most (a longer one is read on)
_HEAD_BYTES = 16384


def _fast_instance(source: Source) -> Instance | None:
    """The Instance through :mod:`.fastheader`, or None when it declines the file or its
    values, or the file has no preamble or cannot be opened (:func:`open_dicom` and pydicom
    then judge it). Most files cost one open, ``fstat``, read and close."""
    try:
        head, size = source.read_head(_HEAD_BYTES)
    except OSError:
        return None
    if head[128:132] != b"DICM":
        return None
    try:
        try:
            ds = fastheader.parse_head(head, size)
        except EOFError:
            if len(head) >= size:  # truncated
                raise
            with source.open() as fp:
                ds = fastheader.parse(cast(BinaryIO, fp), size, chunk=2 * len(head))
        return _instance_from_dataset(source, ds, size)
    except DicomToolsError:
        raise
    except Exception:  # noqa: BLE001 - Unsupported, or anything odd: let pydicom judge
        return None


def _pydicom_dataset(name: str, fp: BinaryIO, has_preamble: bool) -> FileDataset:
    """The header as pydicom reads it (a deflated one inflated under a cap; pixel data
    deferred, its offset kept)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = read_deflated(fp, name, header_only=True) if has_preamble else None
        if ds is None:
            fp.seek(0)
            # 64 KB: Siemens CSA headers (needed for mosaics) stay in memory
            ds = pydicom.dcmread(fp, defer_size=65536, force=not has_preamble)
    except DicomToolsError:
        raise
    except InvalidDicomError as exc:
        raise NotDicomError(name, f"not a DICOM file ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - struct/zlib/BytesLength/... on bad input
        raise _header_error(name, exc, "parsed") from None
    return ds


DEFLATED_UID = DEFLATED
#: most bytes a deflated data set may inflate to before its Pixel Data (a header)
MAX_DEFLATED_HEADER = 256 * 2**20


def read_deflated(fp: _BinaryFile, name: str, *, header_only: bool = False,
                  cap: int | None = None) -> FileDataset | None:
    """A pydicom Dataset from a Deflated Explicit VR Little Endian file, or None otherwise.

    pydicom inflates such a data set whole with ``zlib.decompress``; a 2 MB file can inflate
    to gigabytes. Here the stream is inflated incrementally under a cap (by default a quarter
    of the memory available). With ``header_only`` inflation stops at Pixel Data, which is
    then represented by an empty placeholder (the scan needs only to know it is there).

    Parameters
    ----------
    fp : binary file
        The file, positioned at its start; it must have a preamble.
    name : str
        The file's name, for error messages and the data set's ``filename``.
    header_only : bool
        Stop inflating at Pixel Data (an empty placeholder stands for it).
    cap : int, optional
        Most bytes to inflate (never more than a quarter of the memory available).

    Returns
    -------
    pydicom.dataset.FileDataset or None
        The inflated data set (nothing deferred), or None when the file is not deflated.

    Raises
    ------
    UnreadableDicomError
        The stream inflates past the cap, or is corrupt.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> with open(get_testdata_file("image_dfl.dcm"), "rb") as fp:
    ...     ds = read_deflated(fp, "image_dfl.dcm", header_only=True)
    >>> ds.Rows, len(ds.PixelData)
    (512, 0)
    >>> with open(get_testdata_file("CT_small.dcm"), "rb") as fp:
    ...     print(read_deflated(fp, "CT_small.dcm"))
    None
    """
    import pydicom
    from pydicom.filebase import DicomBytesIO
    from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble

    from ._limits import available_memory

    fp = cast(BinaryIO, fp)  # pydicom's annotations call any binary file BinaryIO
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
            # pydicom's own reader of its DicomBytesIO (its annotation says BinaryIO)
            ds = read_dataset(DicomBytesIO(raw), False, True,  # type: ignore[arg-type]
                              defer_size=None)
            ds.add_new(_PIXEL_TAG, "OB", b"")
        except Exception:  # noqa: BLE001 - the marker was inside a value: inflate it all
            raw = b""
            fp.seek(start)
    if not raw:
        raw = inflate_capped(fp, cap, name)
        # nothing deferred: a deferred value would be re-read from the (deflated) file on disk
        ds = read_dataset(DicomBytesIO(raw), False, True,  # type: ignore[arg-type]
                          defer_size=None)
    return pydicom.dataset.FileDataset(name, ds, preamble=b"\x00" * 128, file_meta=meta,
                                       is_implicit_VR=False, is_little_endian=True)


def safe_dcmread(fp: _BinaryFile, name: str, *, stop_before_pixels: bool = False,
                 **kwargs: Any) -> FileDataset:
    """``pydicom.dcmread`` that cannot be made to inflate a deflate bomb.

    pydicom inflates a Deflated Explicit VR Little Endian data set whole, even with
    ``stop_before_pixels``. Such files are read with :func:`read_deflated` instead (inflation
    stops at Pixel Data when ``stop_before_pixels``; otherwise it is capped by available
    memory); every other file goes to ``pydicom.dcmread(fp, stop_before_pixels=..., **kwargs)``
    unchanged (``specific_tags`` and ``defer_size`` only apply there).

    Parameters
    ----------
    fp : binary file
        The file, positioned at the start of the data (a preamble is recognised at offset 0).
    name : str
        The file's name, for error messages.
    stop_before_pixels : bool
        Do not read Pixel Data (a deflated file stops inflating there).
    **kwargs
        Passed on to ``pydicom.dcmread`` (``force``, ``specific_tags``, ``defer_size``...).

    Returns
    -------
    pydicom.dataset.FileDataset
        The data set.

    Raises
    ------
    UnreadableDicomError
        A corrupt or oversized deflate stream (anything pydicom raises otherwise).

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> with open(get_testdata_file("image_dfl.dcm"), "rb") as fp:
    ...     ds = safe_dcmread(fp, "image_dfl.dcm")
    >>> ds.file_meta.TransferSyntaxUID.name, len(ds.PixelData)
    ('Deflated Explicit VR Little Endian', 262144)
    """
    import pydicom

    fp = cast(BinaryIO, fp)  # pydicom's annotations call any binary file BinaryIO
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

    A cheap sniff for file pickers and readers; :func:`~.series.scan` decides for certain.

    Parameters
    ----------
    head : bytes
        The file's first 132 bytes (fewer for a short file).

    Returns
    -------
    bool
        True when the bytes look like the start of a DICOM file.

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


def _instance_from_dataset(source: Source, ds: ParsedDataset, size: int) -> Instance:
    """The :class:`Instance` of a parsed data set: refused with the reason when it is not an
    image we can read, its frames and their checks done."""
    get = _getter(ds)
    name = str(source)
    meta = getattr(ds, "file_meta", None)
    sop_class = _text(get("SOPClassUID", None)) or _text(
        meta.get("MediaStorageSOPClassUID", None) if meta else None)
    if sop_class in _REFERENCING:
        if isinstance(ds, fastheader.FastDataset):  # its sequences are read by pydicom
            raise fastheader.Unsupported("an annotation object's references")
        if sop_class in NO_PIXEL_OBJECTS and _PIXEL_TAG not in ds:
            ts = _text(meta.get("TransferSyntaxUID", None)) if meta else ""
            return _object_instance(source, ds, size, sop_class, ts)
    raw = _pixel_element(name, ds, sop_class)
    rows, cols, samples, bits, n_frames = _image_size(name, ds, size)
    ts = _text(meta.get("TransferSyntaxUID", None)) if meta else ""
    if not ts:
        ts = encoding_syntax(bool(ds.is_implicit_VR), bool(ds.is_little_endian))
    # deflated (.99) too: pydicom inflates it, file offsets are meaningless
    encapsulated = ts not in RAW_NATIVE
    pixel_offset, pixel_length = _pixel_location(
        source, raw, size, encapsulated, (rows * cols * n_frames * samples * bits + 7) // 8,
        f"{n_frames} frame(s) of {rows}x{cols}x{samples} at {bits} bits")
    modality = _text(get("Modality", None)).upper()
    units = "HU" if modality == "CT" else _text(get("RescaleType", None))
    if modality == "RTDOSE":
        units = _text(get("DoseUnits", None)) or "GY"
    meta_sop = _text(meta.get("MediaStorageSOPInstanceUID", None)) if meta else ""
    inst = Instance(
        source=source,
        sop_class=sop_class,
        sop_uid=_text(get("SOPInstanceUID", None)) or meta_sop,
        study_uid=_text(get("StudyInstanceUID", None)),
        series_uid=_text(get("SeriesInstanceUID", None)) or f"unknown-series:{name}",
        patient_name=_text(get("PatientName", None)),
        patient_id=_text(get("PatientID", None)),
        study_date=_text(get("StudyDate", None)),
        study_description=_text(get("StudyDescription", None)),
        series_description=_text(get("SeriesDescription", None)),
        series_number=_i(get("SeriesNumber", None)),
        modality=modality,
        instance_number=_i(get("InstanceNumber", None)),
        acquisition_number=_i(get("AcquisitionNumber", None)),
        echo_number=_i(_first(get("EchoNumbers", None))),
        image_type=tuple(str(x).strip() for x in _as_list(get("ImageType", None))),
        frame_of_reference=_text(get("FrameOfReferenceUID", None)),
        rows=rows, columns=cols, samples=samples,
        photometric=_text(get("PhotometricInterpretation", None)).upper() or (
            "MONOCHROME2" if samples == 1 else "RGB"),
        bits_allocated=bits,
        bits_stored=_i(get("BitsStored", None), bits) or bits,
        high_bit=_i(get("HighBit", None), bits - 1),
        pixel_representation=_i(get("PixelRepresentation", None), 0) or 0,
        planar_configuration=_i(get("PlanarConfiguration", None), 0) or 0,
        n_frames=n_frames,
        transfer_syntax=ts,
        encapsulated=encapsulated,
        pixel_offset=pixel_offset,
        pixel_length=pixel_length,
        slice_thickness=_spacing_or_none(get("SliceThickness", None)),
        spacing_between_slices=_spacing_or_none(get("SpacingBetweenSlices", None)),
        units=units,
        header=_summary(ds),
        file_size=int(size),
    )
    if sop_class in _REFERENCING:
        inst.references = _references(ds)
    inst.calibration = pixel_calibration(ds, rows, cols)
    inst.frame_time_ms, inst.frame_time_note = frame_time_ms(ds, n_frames)
    if encapsulated and ts != DEFLATED_UID and source.member is None:
        inst.encapsulated_offset = _encapsulated_offset(raw)
    if "MOSAIC" in (t.upper() for t in inst.image_type) and inst.n_frames == 1:
        _unpack_mosaic(inst, ds)
    elif "VFRAME" in (t.upper() for t in inst.image_type) and inst.n_frames == 1:
        _unpack_uih_grid(inst, ds)
    else:
        inst.frames = _frames_of(inst, ds)
    _check_frames(inst)
    return inst


def _pixel_element(name: str, ds: ParsedDataset, sop_class: str) -> object:
    """The (possibly deferred) Pixel Data element, or the reason this is not an image."""
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
    return raw


def _image_size(name: str, ds: DatasetLike, size: int) -> tuple[int, int, int, int, int]:
    """``(rows, columns, samples, bits allocated, frames)``, refusing sizes that cannot be
    (zero, unsupported bits, more frames or values than the file or memory can hold)."""
    get = _getter(ds)
    rows, cols = _i(get("Rows", None), 0), _i(get("Columns", None), 0)
    if not rows or not cols:
        raise UnreadableDicomError(name, f"invalid image size Rows={rows} Columns={cols}")
    samples = _i(get("SamplesPerPixel", None), 1) or 1
    bits = _i(get("BitsAllocated", None), 0) or 0
    if bits not in (1, 8, 16, 32, 64):
        raise UnreadableDicomError(name, f"unsupported BitsAllocated={bits}")
    n_frames = max(_i(get("NumberOfFrames", None), 1) or 1, 1)
    if n_frames > MAX_FRAMES or n_frames > max(size, 1):
        raise UnreadableDicomError(
            name, f"absurd NumberOfFrames={n_frames:,} for a file of {size:,} bytes")
    voxels = rows * cols * n_frames * samples
    if voxels > MAX_VOXELS:
        raise UnreadableDicomError(
            name, f"absurd declared size {n_frames} frame(s) x {rows} x {cols} x {samples} "
                  f"samples ({voxels:,} values); refusing to allocate it")
    return rows, cols, samples, bits, n_frames


def _encapsulated_offset(raw: object) -> int | None:
    """Where encapsulated Pixel Data's items start in the file (the value's position as the
    parser, fast or pydicom, read it from the file's start; a decoder checks the items it
    finds there and declines anything else)."""
    if getattr(raw, "length", None) != 0xFFFFFFFF:
        return None
    tell = getattr(raw, "value_tell", None)
    return int(tell) if tell is not None else None


def _pixel_location(source: Source, raw: object, size: int, encapsulated: bool, expected: int,
                    what: str) -> tuple[int | None, int | None]:
    """``(file offset, length)`` of native Pixel Data in a plain file (None, None otherwise:
    encapsulated, deferred length unknown, or a zip member), refusing a value that runs past
    the end of the file or holds fewer than the ``expected`` bytes of ``what``."""
    name = str(source)
    value_tell = getattr(raw, "value_tell", None)
    length = getattr(raw, "length", None)
    if encapsulated:
        if value_tell is not None and length not in (None, 0xFFFFFFFF) and \
                value_tell + length > size:
            raise UnreadableDicomError(name, "truncated: encapsulated Pixel Data runs past the "
                                             "end of the file")
        return None, None
    if length is None or length == 0xFFFFFFFF:
        return None, None
    if value_tell is not None and value_tell + length > size:
        raise UnreadableDicomError(
            name, f"truncated: Pixel Data declares {length:,} bytes but the file ends "
                  f"{size - value_tell:,} bytes after its start")
    if length < expected:
        raise UnreadableDicomError(
            name, f"Pixel Data holds {length:,} bytes but {what} need {expected:,}")
    if value_tell is not None and source.member is None:
        return int(value_tell), int(length)
    return None, None


def _unpack_mosaic(inst: Instance, ds: ParsedDataset) -> None:
    """A Siemens mosaic: one frame per tile, positions from the CSA header (via nibabel).

    The instance keeps the tile size as rows/columns and the mosaic layout in ``mosaic``
    (a :class:`Mosaic`); pixel readers cut tiles from the plane.
    """
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
    inst.mosaic = Mosaic(inst.rows, inst.columns, per_row)
    frames = _frames_of(inst, ds)
    base = frames[0]
    inst.rows, inst.columns = tile_r, tile_c
    # every tile keeps what the mosaic frame carries (b-value, gradient, echo, scaling...)
    inst.frames = [replace(base, index=k, position=pos0 + k * dz * normal) for k in range(n)]


def _unpack_uih_grid(inst: Instance, ds: ParsedDataset) -> None:
    """A UIH grid (ImageType VFRAME): one frame per tile, each at the position its item of
    the (0065,1051) MR VFrame Sequence gives (see :mod:`.vendor`). A grid that does not add
    up (slice count, tile size, positions) stays one tiled image, with the reason in
    ``info``."""
    n = _uih_grid_slices(ds)
    if n < 2:
        inst.frames = _frames_of(inst, ds)
        return
    if isinstance(ds, fastheader.FastDataset):
        raise fastheader.Unsupported("UIH grid: the VFrame sequence needs pydicom")
    layout = _uih_grid_layout(n, inst.rows, inst.columns)
    positions = _uih_grid_positions(ds, n)
    frames = _frames_of(inst, ds)
    if layout is None or positions is None or frames[0].orientation is None:
        why = (f"{inst.columns}x{inst.rows} is not a grid of {n} tiles" if layout is None
               else "no ImageOrientationPatient" if frames[0].orientation is None
               else f"the (0065,1051) sequence does not give the {n} slice positions")
        inst.header["MosaicProblem"] = f"UIH grid not unpacked: {why}"
        inst.frames = frames
        return
    tile_r, tile_c, per_row = layout
    inst.mosaic = Mosaic(inst.rows, inst.columns, per_row)
    inst.rows, inst.columns = tile_r, tile_c
    # every tile keeps what the grid frame carries (b-value, gradient, scaling...)
    inst.frames = [replace(frames[0], index=k, position=positions[k]) for k in range(n)]


def _sop_name(uid: str) -> str:
    try:
        from pydicom.uid import UID
        n = UID(uid).name
        return "" if n == uid else n
    except Exception:  # noqa: BLE001
        return ""
