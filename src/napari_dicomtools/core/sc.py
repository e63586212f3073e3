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

import numpy as np

from .errors import DicomToolsError

__all__ = ["SC_IMAGE_STORAGE", "read_png", "secondary_capture", "write_secondary_capture"]

SC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
#: PatientOrientation (row, column directions) of the radiological views we draw
VIEW_ORIENTATION = {"axial": ("L", "P"), "coronal": ("L", "F"), "sagittal": ("P", "F")}


def _reference_dataset(reference):
    """The first DICOM instance header of ``reference`` (a Dataset, a file, a folder, a
    list of files or a scanned Series)."""
    import pydicom

    if isinstance(reference, pydicom.Dataset):
        return reference
    files = getattr(reference, "files", None)
    if isinstance(reference, (list, tuple)):
        if not reference:
            raise DicomToolsError(None, "no reference DICOM file to attach the capture to")
        files = list(reference)
    if files is None:
        path = os.fspath(reference)
        if os.path.isdir(path):
            from .series import scan

            series = [s for s in scan(path) if s.kind == "IMAGE"] or scan(path)
            if not series:
                raise DicomToolsError(path, "no DICOM series here to attach the capture to")
            files = series[0].files
        else:
            files = [path]
    first = str(files[0])
    try:
        ds = pydicom.dcmread(first, stop_before_pixels=True)
    except Exception as exc:
        raise DicomToolsError(first, f"cannot read the reference instance ({exc})") from None
    for kw in ("StudyInstanceUID", "PatientID"):
        if kw not in ds:
            raise DicomToolsError(first, f"the reference has no {kw}: cannot file a capture "
                                         "under its study")
    return ds


def _pixels(image, window, where) -> tuple[np.ndarray, str]:
    """(uint8 pixels, photometric interpretation) of a 2D grayscale or RGB(A) picture."""
    from .png import apply_window

    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] in (3, 4):
        if a.dtype == np.bool_ or a.dtype.kind not in "ub" or a.max(initial=0) > 255:
            if a.dtype.kind == "f" and a.size and a.min() >= 0 and a.max() <= 1:
                a = np.round(a * 255)
            else:
                raise DicomToolsError(where, f"an RGB picture needs 8-bit samples (0-255), "
                                             f"not {a.dtype.name} up to {a.max()}")
        a = a.astype(np.uint8)
        if a.shape[-1] == 4:
            alpha = a[..., 3:].astype(np.float32) / 255.0
            a = np.round(a[..., :3] * alpha).astype(np.uint8)
        return np.ascontiguousarray(a), "RGB"
    if a.ndim != 2:
        raise DicomToolsError(where, f"a secondary capture is one 2D picture (rows, columns) "
                                     f"or (rows, columns, 3); got shape {a.shape}")
    if window is None and a.dtype in (np.uint8, np.bool_):
        return (a.astype(np.uint8) * (255 if a.dtype == np.bool_ else 1)), "MONOCHROME2"
    if window is None:
        lo, hi = np.percentile(a, [0.5, 99.5]) if a.size else (0.0, 1.0)
        window = ((lo + hi) / 2.0, max(hi - lo, 1.0))
    return apply_window(a, float(window[0]), max(float(window[1]), 1.0)), "MONOCHROME2"


def secondary_capture(image, reference, *, window=None, description: str = "Secondary capture",
                      orientation=None, series_uid: str | None = None,
                      series_number: int = 9901, instance_number: int = 1,
                      pixel_spacing=None, derivation: str | None = None):
    """A Secondary Capture Image Storage dataset of ``image`` in the study of ``reference``.

    Parameters
    ----------
    image : array
        ``(rows, columns)`` grayscale (windowed to 8 bits with ``window``) or
        ``(rows, columns, 3|4)`` 8-bit RGB(A).
    reference : Dataset, path, list of paths or Series
        An instance (or a folder / series of them) of the study the capture belongs to: its
        patient and study attributes are copied.
    window : (center, width), optional
        For grayscale data that is not 8-bit: what the user saw (a layer's contrast limits);
        default the 0.5-99.5 percentile range. 8-bit data is kept as it is.
    orientation : {"axial", "coronal", "sagittal"} or (row, column) codes, optional
        PatientOrientation of the picture (our radiological views); left empty when unknown.
    series_uid, series_number, instance_number
        Where the capture is filed (a new series by default).
    pixel_spacing : (row, column) mm, optional
        Nominal spacing of the picture, when it is a 1:1 view.
    derivation : str, optional
        DerivationDescription: what the picture shows (e.g. "PNG export of series 3").

    Returns
    -------
    pydicom.Dataset
    """
    import highdicom as hd
    from pydicom.uid import generate_uid

    ref = _reference_dataset(reference)
    where = str(getattr(ref, "filename", None) or "secondary capture")
    pixels, photometric = _pixels(image, window, where)
    orient = VIEW_ORIENTATION.get(orientation, orientation) if orientation else None
    kw = {}
    if pixel_spacing is not None:
        kw["pixel_spacing"] = tuple(float(v) for v in pixel_spacing)
    sc = hd.sc.SCImage.from_ref_dataset(
        ref, pixels, photometric, 8, "PATIENT", series_uid or generate_uid(),
        int(series_number), generate_uid(), int(instance_number), "napari-dicomtools",
        patient_orientation=orient or ("L", "P"), transfer_syntax_uid="1.2.840.10008.1.2.1",
        **kw)
    if not orient:
        sc.PatientOrientation = None  # type 2: unknown, so empty rather than invented
    sc.SeriesDescription = str(description)[:64]
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.BurnedInAnnotation = "YES" if photometric == "RGB" else "NO"
    sc.DerivationDescription = (derivation or "secondary capture by napari-dicomtools")[:1024]
    sc.StudyID = ref.get("StudyID", "")  # type 2: the study's own, else empty
    if "Laterality" not in sc:
        sc.Laterality = None  # type 2C: not a paired body part we know of
    return sc


def write_secondary_capture(image, reference, path, *, overwrite: bool = False,
                            **kwargs) -> str:
    """Write :func:`secondary_capture` to ``path`` (atomically, never over an existing file
    unless ``overwrite``); returns the path."""
    from .safety import atomic_output

    ds = secondary_capture(image, reference, **kwargs)
    path = os.fspath(path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def read_png(path) -> np.ndarray:
    """A PNG/JPEG picture as uint8 ``(rows, columns)`` or ``(rows, columns, 3|4)``."""
    from PIL import Image

    path = os.fspath(path)
    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I", "F"):
                raise DicomToolsError(path, f"{im.mode} pictures are not 8-bit; export them "
                                            "windowed (PNG from dicomtools) first")
            im = im.convert("RGBA" if "A" in im.mode or im.mode == "P" else
                            ("L" if im.mode in ("L", "1") else "RGB"))
            return np.asarray(im)
    except DicomToolsError:
        raise
    except Exception as exc:
        raise DicomToolsError(path, f"not a readable picture ({type(exc).__name__}: {exc})"
                              ) from None
