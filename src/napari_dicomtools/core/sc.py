"""Secondary capture: a 2D picture (a PNG we exported, an RGB or 2D image layer, a view) as a
DICOM instance of the study of the images it shows, ready to send to a PACS.

Built with highdicom's :class:`highdicom.sc.SCImage` (Secondary Capture Image Storage,
1.2.840.10008.5.1.4.1.1.7): patient and study attributes are copied from a reference
instance, so the capture is filed under the source study; a new series holds it. Grayscale
data is windowed to 8 bits exactly like our PNG export (:func:`.png.apply_window`, DICOM's
linear VOI function); 8-bit grayscale and RGB pixels are kept as they are. An RGBA picture
loses its alpha channel (DICOM has none), composited on black.

No Qt, no napari.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import numpy.typing as npt

from .errors import DicomToolsError

if TYPE_CHECKING:
    from typing import TypeAlias

    from pydicom import Dataset
    from typing_extensions import Unpack

    from .series import Series

    #: what a capture may be filed against: an instance, a file, a folder, files, a series
    Reference: TypeAlias = (Dataset | Series | os.PathLike[str] | str
                            | Sequence[os.PathLike[str] | str])


class _CaptureOptions(TypedDict, total=False):
    """The keywords of :func:`secondary_capture` that :func:`write_secondary_capture` passes on."""

    window: tuple[float, float] | None
    description: str
    orientation: str | tuple[str, str] | None
    series_uid: str | None
    series_number: int
    instance_number: int
    pixel_spacing: tuple[float, float] | None
    derivation: str | None


__all__ = ["SC_IMAGE_STORAGE", "read_png", "secondary_capture", "write_secondary_capture"]

SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
#: PatientOrientation (row, column directions) of the radiological views we draw
VIEW_ORIENTATION = {"axial": ("L", "P"), "coronal": ("L", "F"), "sagittal": ("P", "F")}


def _reference_files(reference: Series | os.PathLike[str] | str
                     | Sequence[os.PathLike[str] | str]) -> list[str]:
    """The files of ``reference``: a series, a file, a folder (its first image series) or a
    list of files."""
    from .series import Series, scan

    if isinstance(reference, Series):
        return list(reference.files)
    if isinstance(reference, (str, os.PathLike)):
        path = os.fspath(reference)
        if not os.path.isdir(path):
            return [path]
        series = [s for s in scan(path) if s.kind == "IMAGE"] or scan(path)
        if not series:
            raise DicomToolsError(path, "no DICOM series here to attach the capture to")
        return list(series[0].files)
    files = [os.fspath(f) for f in reference]
    if not files:
        raise DicomToolsError(None, "no reference DICOM file to attach the capture to")
    return files


def _reference_dataset(reference: Reference) -> Dataset:
    """The first DICOM instance header of ``reference`` (a Dataset, a file, a folder, a
    list of files or a scanned Series)."""
    import pydicom

    if isinstance(reference, pydicom.Dataset):
        return reference
    first = str(_reference_files(reference)[0])
    try:
        ds = pydicom.dcmread(first, stop_before_pixels=True)
    except Exception as exc:
        raise DicomToolsError(first, f"cannot read the reference instance ({exc})") from None
    for kw in ("StudyInstanceUID", "PatientID"):
        if kw not in ds:
            raise DicomToolsError(first, f"the reference has no {kw}: cannot file a capture "
                                         "under its study")
    return ds


def _pixels(image: npt.ArrayLike, window: tuple[float, float] | None,
            where: str) -> tuple[npt.NDArray[np.uint8], str]:
    """(uint8 pixels, photometric interpretation) of a 2D grayscale or RGB(A) picture."""
    from .png import apply_window

    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        return _rgb_pixels(a, where), "RGB"
    if a.ndim != 2:
        raise DicomToolsError(where, f"a secondary capture is one 2D picture (rows, columns) "
                                     f"or (rows, columns, 3); got shape {a.shape}")
    if window is None and a.dtype in (np.uint8, np.bool_):
        return (a.astype(np.uint8) * (255 if a.dtype == np.bool_ else 1)), "MONOCHROME2"
    if window is None:
        lo, hi = np.percentile(a, [0.5, 99.5]) if a.size else (0.0, 1.0)
        window = ((lo + hi) / 2.0, max(hi - lo, 1.0))
    return apply_window(a, float(window[0]), max(float(window[1]), 1.0)), "MONOCHROME2"


def _rgb_pixels(a: npt.NDArray[Any], where: str) -> npt.NDArray[np.uint8]:
    """8-bit RGB of ``(rows, columns, 3|4)`` samples (0-255, or floats in [0, 1]); an alpha
    channel composited on black."""
    if a.dtype == np.bool_ or a.dtype.kind not in "ub" or a.max(initial=0) > 255:
        if a.dtype.kind == "f" and a.size and a.min() >= 0 and a.max() <= 1:
            a = np.round(a * 255)
        else:
            raise DicomToolsError(where, f"an RGB picture needs 8-bit samples (0-255), "
                                         f"not {a.dtype.name} up to {a.max()}")
    rgb = a.astype(np.uint8)
    if rgb.shape[-1] == 4:
        alpha = rgb[..., 3:].astype(np.float32) / 255.0
        rgb = np.round(rgb[..., :3] * alpha).astype(np.uint8)
    return np.ascontiguousarray(rgb)


def _patient_orientation(orientation: str | tuple[str, str] | None,
                         where: str) -> tuple[str, str] | None:
    """PatientOrientation of a view name or (row, column) codes; None when unknown."""
    if not orientation:
        return None
    if isinstance(orientation, str):
        if orientation.lower() not in VIEW_ORIENTATION:
            raise DicomToolsError(where, f"unknown view {orientation!r}: one of "
                                         f"{', '.join(VIEW_ORIENTATION)} or (row, column) "
                                         "codes such as ('L', 'P')")
        return VIEW_ORIENTATION[orientation.lower()]
    row, col = (str(v) for v in orientation)
    return row, col


def secondary_capture(image: npt.ArrayLike, reference: Reference, *,
                      window: tuple[float, float] | None = None,
                      description: str = "Secondary capture",
                      orientation: str | tuple[str, str] | None = None,
                      series_uid: str | None = None, series_number: int = 9901,
                      instance_number: int = 1,
                      pixel_spacing: tuple[float, float] | None = None,
                      derivation: str | None = None) -> Dataset:
    """A Secondary Capture Image Storage dataset of ``image`` in the study of ``reference``.

    Parameters
    ----------
    image : array_like
        ``(rows, columns)`` grayscale (windowed to 8 bits with ``window``) or
        ``(rows, columns, 3|4)`` 8-bit RGB(A) (floats in [0, 1] are scaled to 0-255; an
        alpha channel is composited on black).
    reference : pydicom.Dataset, str, os.PathLike, list of paths or Series
        An instance (or a file, a folder or a series of them) of the study the capture
        belongs to: its patient and study attributes are copied.
    window : (float, float), optional
        ``(center, width)`` for grayscale data that is not 8-bit: what the user saw (a
        layer's contrast limits); default the 0.5-99.5 percentile range. 8-bit data is
        kept as it is.
    description : str
        SeriesDescription (64 characters at most).
    orientation : {"axial", "coronal", "sagittal"} or (str, str), optional
        PatientOrientation of the picture (our radiological views) or its (row, column)
        codes; left empty when not given.
    series_uid : str, optional
        SeriesInstanceUID, to file several captures in one series; default a new series.
    series_number : int
        SeriesNumber.
    instance_number : int
        InstanceNumber.
    pixel_spacing : (float, float), optional
        Nominal (row, column) spacing of the picture in mm, when it is a 1:1 view.
    derivation : str, optional
        DerivationDescription: what the picture shows (e.g. "PNG export of series 3").

    Returns
    -------
    pydicom.Dataset
        The Secondary Capture (8-bit MONOCHROME2 or RGB, explicit VR little endian), with
        the patient and study of ``reference`` in a new (or the given) series.

    Raises
    ------
    DicomToolsError
        The picture is not 2D grayscale or 8-bit RGB(A), the view name is unknown, or the
        reference is unreadable or has no StudyInstanceUID or PatientID.

    Examples
    --------
    >>> from pydicom import dcmread
    >>> from pydicom.data import get_testdata_file
    >>> ref = get_testdata_file("MR_small.dcm")
    >>> ds = secondary_capture(np.full((4, 6), 7, np.uint8), ref, orientation="axial")
    >>> ds.SOPClassUID == SC_IMAGE_STORAGE, ds.Rows, ds.Columns, list(ds.PatientOrientation)
    (True, 4, 6, ['L', 'P'])
    >>> ds.StudyInstanceUID == dcmread(ref).StudyInstanceUID
    True
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    ref = _reference_dataset(reference)
    where = str(getattr(ref, "filename", None) or "secondary capture")
    pixels, photometric = _pixels(image, window, where)
    orient = _patient_orientation(orientation, where)
    spacing = None if pixel_spacing is None else (float(pixel_spacing[0]),
                                                  float(pixel_spacing[1]))
    sc = hd.sc.SCImage.from_ref_dataset(
        ref, pixels, photometric, 8, "PATIENT", series_uid or generate_uid(),
        int(series_number), generate_uid(), int(instance_number), "napari-dicomtools",
        # highdicom annotates pixel_spacing as tuple[int, int]; it takes (and we give) mm
        pixel_spacing=spacing,  # type: ignore[arg-type]
        patient_orientation=orient or ("L", "P"), transfer_syntax_uid="1.2.840.10008.1.2.1")
    if not orient:
        sc["PatientOrientation"].value = None  # type 2: unknown, so empty rather than invented
    sc.SeriesDescription = str(description)[:64]
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.BurnedInAnnotation = "YES" if photometric == "RGB" else "NO"
    sc.DerivationDescription = (derivation or "secondary capture by napari-dicomtools")[:1024]
    sc.StudyID = ref.get("StudyID", "")  # type 2: the study's own, else empty
    if "Laterality" not in sc:
        sc.add_new("Laterality", "CS", None)  # type 2C: not a paired body part we know of
    return sc


def write_secondary_capture(image: npt.ArrayLike, reference: Reference,
                            path: os.PathLike[str] | str, *, overwrite: bool = False,
                            **options: Unpack[_CaptureOptions]) -> str:
    """Write :func:`secondary_capture` of ``image`` to a file.

    Parameters
    ----------
    image : array_like
        The picture, as for :func:`secondary_capture`.
    reference : pydicom.Dataset, str, os.PathLike, list of paths or Series
        An instance (or a file, a folder or a series of them) of the study it belongs to.
    path : str or os.PathLike
        The file to write (atomically: no partial file is left on failure).
    overwrite : bool
        Replace an existing file; by default an existing file is refused.
    **options
        The keywords of :func:`secondary_capture` (``window``, ``description``,
        ``orientation``, ``series_uid``, ``series_number``, ``instance_number``,
        ``pixel_spacing``, ``derivation``).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    DicomToolsError
        As for :func:`secondary_capture`; ``path`` exists and not ``overwrite``.

    Examples
    --------
    >>> import tempfile
    >>> from pydicom.data import get_testdata_file
    >>> out = os.path.join(tempfile.mkdtemp(), "capture.dcm")
    >>> path = write_secondary_capture(np.zeros((4, 4, 3), np.uint8),
    ...                                get_testdata_file("MR_small.dcm"), out)
    >>> path == out, os.path.getsize(out) > 48
    (True, True)
    """
    from .safety import atomic_output

    ds = secondary_capture(image, reference, **options)
    out = os.fspath(path)
    with atomic_output(out, overwrite=overwrite) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return out


def read_png(path: os.PathLike[str] | str) -> npt.NDArray[np.uint8]:
    """Read a PNG or JPEG picture as 8-bit samples, ready for :func:`secondary_capture`.

    Parameters
    ----------
    path : str or os.PathLike
        The picture file.

    Returns
    -------
    numpy.ndarray
        The samples as uint8: ``(rows, columns)`` for grayscale and 1-bit pictures, ``(rows, columns, 4)``
        for pictures with alpha or a palette, else ``(rows, columns, 3)``.

    Raises
    ------
    DicomToolsError
        Not a readable picture, or a 16-bit / float one (export it windowed first).

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image
    >>> out = os.path.join(tempfile.mkdtemp(), "p.png")
    >>> Image.fromarray(np.zeros((5, 7), np.uint8)).save(out)
    >>> read_png(out).shape
    (5, 7)
    """
    from PIL import Image

    name = os.fspath(path)
    try:
        with Image.open(name) as im:
            if im.mode in ("I;16", "I", "F"):
                raise DicomToolsError(name, f"{im.mode} pictures are not 8-bit; export them "
                                            "windowed (PNG from dicomtools) first")
            im = im.convert("RGBA" if "A" in im.mode or im.mode == "P" else
                            ("L" if im.mode in ("L", "1") else "RGB"))
            return np.asarray(im, np.uint8)
    except DicomToolsError:
        raise
    except Exception as exc:
        raise DicomToolsError(name, f"not a readable picture ({type(exc).__name__}: {exc})"
                              ) from None
