"""Lazy viewing of a series still on the server: geometry first, pixels on demand.

:func:`open_streaming` asks the server for the series' headers without pixel data (WADO-RS
``/metadata`` over DICOMweb; over DIMSE, a C-FIND at IMAGE level returning the geometry
attributes), builds the :class:`~napari_dicomtools.core.volume.Volume` geometry from them
exactly as :func:`~napari_dicomtools.core.volume.read_volume` would (slices ordered by
position along the normal, spacing from the positions, rescale into the smallest exact
dtype), and returns a dask array whose slices come from the retrieve cache: a slice not
cached yet is fetched (WADO-RS, or a C-GET of that instance only), checked and published
into the cache like any retrieved instance. So napari shows the first slice long before the
last instance arrives, and a background :func:`~napari_dicomtools.core.pacs.retrieve`
filling the same cache (or a later one) reuses every slice already fetched.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias, Union

import numpy as np
import numpy.typing as npt

from . import geometry
from ._pacs_dimse import _dimse_retrieve, _find
from ._pacs_local import _Cache, _encode, series_folder
from ._pacs_profiles import PacsError, ServerProfile, default_cache
from ._pacs_web import _http_error, dicomweb_client
from .volume import Volume, smallest_dtype

if TYPE_CHECKING:
    import dask.array
    from pydicom import Dataset

    from .geometry import SliceOrder

__all__ = ["open_streaming"]


#: what a DIMSE stream asks C-FIND for, per instance (the DICOMweb metadata has them all)
HEADER_KEYS = ("SOPInstanceUID", "SOPClassUID", "ImagePositionPatient",
               "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "NumberOfFrames",
               "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored",
               "PixelRepresentation", "RescaleSlope", "RescaleIntercept", "SliceThickness",
               "WindowCenter", "WindowWidth", "Modality", "PatientID", "PatientName",
               "StudyDate", "StudyDescription", "SeriesNumber", "SeriesDescription",
               "FrameOfReferenceUID")


class _Header(dict[str, Any]):
    """Keyword -> value of the :data:`HEADER_KEYS` of one instance.

    Read directly from the instance's DICOM JSON (PS3.18 F.2): pydicom's
    ``Dataset.from_json`` costs ~0.7 ms per attribute, 20 ms per instance of even a small
    header, seconds before the first slice of a long series. One value stays a scalar,
    several a list; person names are their alphabetic form; empty attributes are left out.
    """

    TAGS: dict[str, str] = {}

    def __getattr__(self, kw: str) -> Any:
        try:
            return self[kw]
        except KeyError:
            raise AttributeError(kw) from None

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> _Header:
        """The header of one instance's DICOM JSON object (tag -> element)."""
        if not cls.TAGS:
            from pydicom.datadict import tag_for_keyword

            cls.TAGS.update({kw: f"{tag_for_keyword(kw):08X}" for kw in HEADER_KEYS})
        out = cls()
        for kw, tag in cls.TAGS.items():
            element = row.get(tag)
            if not isinstance(element, dict):
                continue
            values = [v.get("Alphabetic", "") if isinstance(v, dict) else v
                      for v in element.get("Value") or []]
            if values:  # an empty attribute reads as absent: its default applies
                out[kw] = values[0] if len(values) == 1 else values
        return out


#: one instance's header: a C-FIND identifier (DIMSE) or its WADO-RS metadata (DICOMweb);
#: both answer ``.get(keyword, default)`` and ``.Keyword``
_Row: TypeAlias = Union["Dataset", _Header]


def _headers(profile: ServerProfile, study_uid: str, series_uid: str,
             method: str) -> list[_Row]:
    """The headers (no pixels) of every instance of the series: pydicom data sets of a
    C-FIND at IMAGE level, or :class:`_Header` of the WADO-RS metadata."""
    if method == "c-get":
        rows: list[_Row] = list(_find(profile, "image", {"StudyInstanceUID": study_uid,
                                                   "SeriesInstanceUID": series_uid},
                                HEADER_KEYS))
    else:
        client = dicomweb_client(profile)
        try:
            rows = [_Header.from_json(r)
                    for r in client.retrieve_series_metadata(study_uid, series_uid)]
        except Exception as exc:
            raise _http_error(profile, exc, f"series {series_uid} metadata") from None
    if not rows:
        raise PacsError(profile.label, f"series {series_uid} has no instances on the server")
    return rows


def _fetcher(profile: ServerProfile, method: str, study_uid: str, series_uid: str,
             store: _Cache, classes: dict[str, str]) -> Callable[[str], None]:
    """``fetch(sop)``: that one instance from the server into the cache (checked)."""
    if method == "c-get":
        def fetch_dimse(sop: str) -> None:
            why: list[str | None] = []

            def received(got: str | None, data: bytes | None, reason: str | None = None
                         ) -> None:
                if got == sop:
                    why.append(reason or (store.publish(sop, data) if data is not None
                                          else "nothing received"))

            _dimse_retrieve(profile, "c-get", study_uid, series_uid, [sop], {classes[sop]},
                            received, None, whole=False)
            if not why:
                raise PacsError(profile.label, f"instance {sop}: not sent by the server "
                                               "(deleted?)")
            if why[0]:
                raise PacsError(profile.label, f"instance {sop}: {why[0]}")
        return fetch_dimse

    client = dicomweb_client(profile)

    def fetch_web(sop: str) -> None:
        try:
            ds = client.retrieve_instance(study_uid, series_uid, sop,
                                          media_types=(("application/dicom", "*"),))
        except Exception as exc:
            raise _http_error(profile, exc, f"instance {sop}") from None
        why = store.publish(sop, _encode(ds))
        if why:
            raise PacsError(profile.label, f"instance {sop}: {why}")
    return fetch_web


def _floats(ds: _Row, kw: str, n: int) -> list[float] | None:
    """The ``n`` numbers of attribute ``kw`` of a header, None unless exactly ``n``."""
    v = ds.get(kw)
    if v is None:
        return None
    try:
        out = [float(x) for x in v]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _first(value: Any) -> Any:
    """The first of several values (a list or a pydicom MultiValue), else the value."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return value[0]
    return value


# --------------------------------------------------------------------------- checks


def _check_method(profile: ServerProfile, method: str | None) -> str:
    """The streaming method (default: WADO-RS when the profile has a DICOMweb URL)."""
    method = method or ("wado" if profile.dicomweb_url else "c-get")
    if method not in ("wado", "c-get"):
        raise PacsError(profile.label, f"streaming is over WADO-RS or C-GET, not {method}; "
                                       "retrieve the series instead")
    if method == "wado" and not profile.dicomweb_url:
        raise PacsError(profile.label, "streaming by WADO-RS needs a DICOMweb URL; retrieve "
                                       "the series instead")
    if method == "c-get" and not profile.host:
        raise PacsError(profile.label, "streaming by C-GET needs a DIMSE host/port")
    return method


def _why_not_streamable(headers: Sequence[_Row]) -> str | None:
    """Why the series cannot be streamed slice by slice, None when it can: single-frame
    MONOCHROME2 images of one orientation and matrix, each with its position and spacing."""
    iops = {tuple(np.round(_floats(d, "ImageOrientationPatient", 6) or [np.nan] * 6, 4))
            for d in headers}
    shapes = {(int(d.get("Rows", 0) or 0), int(d.get("Columns", 0) or 0)) for d in headers}
    if any(int(d.get("NumberOfFrames", 1) or 1) > 1 for d in headers):
        return "multi-frame instances"
    if any(int(d.get("SamplesPerPixel", 1) or 1) != 1 or str(
            d.get("PhotometricInterpretation", "MONOCHROME2")) != "MONOCHROME2"
            for d in headers):
        return "not MONOCHROME2 grayscale"
    if len(iops) != 1 or any(np.isnan(v) for v in next(iter(iops))):
        return "mixed or missing ImageOrientationPatient"
    if len(shapes) != 1 or 0 in next(iter(shapes)):
        return "mixed or missing image sizes"
    if any(_floats(d, "ImagePositionPatient", 3) is None for d in headers):
        return "missing ImagePositionPatient"
    if any(_floats(d, "PixelSpacing", 2) is None for d in headers):
        return "missing PixelSpacing"
    return None


def _order(profile: ServerProfile, series_uid: str, headers: Sequence[_Row]
           ) -> tuple[SliceOrder, list[float]]:
    """The slices ordered along the normal, and the orientation (six cosines)."""
    why = _why_not_streamable(headers)
    if why:
        raise PacsError(profile.label, f"series {series_uid} cannot be streamed ({why}); "
                                       "retrieve it instead")
    iop = _floats(headers[0], "ImageOrientationPatient", 6)
    positions = [p for p in (_floats(d, "ImagePositionPatient", 3) for d in headers)
                 if p is not None]
    assert iop is not None and len(positions) == len(headers)  # checked above
    order = geometry.order_slices(positions, iop,
                                  fallback_spacing=float(headers[0].get("SliceThickness", 0)
                                                         or 0) or None)
    if order.duplicates:
        raise PacsError(profile.label, f"series {series_uid} has duplicate slice positions; "
                                       "retrieve it instead")
    return order, iop


def _value_range(ordered: Sequence[_Row]) -> tuple[float, float, np.dtype[Any]]:
    """Lowest and highest modality value the slices can hold (stored range through each
    slice's rescale) and the smallest dtype that holds them exactly."""
    lo, hi, integral, bits = np.inf, -np.inf, True, 16
    for d in ordered:
        slope = float(d.get("RescaleSlope", 1) or 1)
        icpt = float(d.get("RescaleIntercept", 0) or 0)
        stored = int(d.get("BitsStored", d.get("BitsAllocated", 16)) or 16)
        bits = max(bits, stored)
        if int(d.get("PixelRepresentation", 0) or 0):
            slo, shi = -(1 << (stored - 1)), (1 << (stored - 1)) - 1
        else:
            slo, shi = 0, (1 << stored) - 1
        a, b = slo * slope + icpt, shi * slope + icpt
        lo, hi = min(lo, a, b), max(hi, a, b)
        integral &= slope == int(slope) and icpt == int(icpt)
    return float(lo), float(hi), np.dtype(smallest_dtype(lo, hi, integral, bits))


# --------------------------------------------------------------------------- pixels


def _rescaled(stored: npt.NDArray[Any], slope: float, icpt: float,
              dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """Stored values through the modality rescale, in ``dtype`` (exact: integer arithmetic
    when the volume's dtype is integral)."""
    if slope == 1 and icpt == 0:
        return stored.astype(dtype, copy=False)
    if dtype.kind != "f":
        return (stored.astype(np.int64) * int(slope) + int(icpt)).astype(dtype)
    work = np.float64 if dtype.itemsize > 4 else np.float32
    return (stored.astype(work) * slope + icpt).astype(dtype)


def _lazy_array(profile: ServerProfile, store: _Cache, fetch: Callable[[str], None],
                sops: list[str], shape: tuple[int, int], dtype: np.dtype[Any],
                series_uid: str, cancel: threading.Event | None) -> dask.array.Array:
    """A dask array of one chunk per slice; computing a slice reads it from the cache,
    fetching it first when it is not there (one fetch per slice, however many threads)."""
    import dask.array as da
    import pydicom

    locks = {s: threading.Lock() for s in sops}

    def plane(i: int) -> npt.NDArray[Any]:
        sop = sops[i]
        path = store.path(sop)
        with locks[sop]:
            if not os.path.isfile(path):
                if cancel is not None and cancel.is_set():
                    raise PacsError(profile.label, "streaming cancelled")
                fetch(sop)
        ds = pydicom.dcmread(path)
        return _rescaled(ds.pixel_array, float(ds.get("RescaleSlope", 1) or 1),
                         float(ds.get("RescaleIntercept", 0) or 0), dtype)

    def block(block_info: dict[Any, Any] | None = None) -> npt.NDArray[Any]:
        assert block_info is not None  # dask passes it to a function that takes it
        return plane(block_info[None]["chunk-location"][0])[None]

    rows, cols = shape
    arr: dask.array.Array = da.map_blocks(
        block, dtype=dtype, chunks=((1,) * len(sops), (rows,), (cols,)),
        meta=np.empty((0, 0, 0), dtype), name=f"pacs-stream-{series_uid}")
    return arr


# --------------------------------------------------------------------------- metadata


def _window(first: _Row) -> tuple[float, float] | None:
    """The first WindowCenter/WindowWidth pair, None when absent or not numbers."""
    wc, ww = first.get("WindowCenter"), first.get("WindowWidth")
    if wc is None or ww is None:
        return None
    try:
        return float(_first(wc)), float(_first(ww))
    except (TypeError, ValueError, IndexError):
        return None


def _metadata(first: _Row, study_uid: str, series_uid: str, iop: list[float],
              order: SliceOrder, value_range: tuple[float, float], folder: str
              ) -> dict[str, Any]:
    """``Volume.meta`` of a streamed series, as :func:`~.volume.read_volume` fills it."""
    number = str(first.get("SeriesNumber", "") or "")
    name = " ".join(x for x in (number, str(first.get("SeriesDescription", "") or "")) if x)
    text = {kw: str(first.get(kw, "") or "") for kw in (
        "Modality", "PatientID", "PatientName", "StudyDate", "StudyDescription",
        "SeriesDescription", "FrameOfReferenceUID")}
    return {"name": name or series_uid, "series_uid": series_uid, "study_uid": study_uid,
            "modality": text["Modality"], "patient_id": text["PatientID"],
            "patient_name": text["PatientName"], "study_date": text["StudyDate"],
            "study_description": text["StudyDescription"],
            "series_description": text["SeriesDescription"], "series_number": number,
            "frame_of_reference": text["FrameOfReferenceUID"],
            "orientation": geometry.orientation_label(iop), "n_time": 1, "rgb": False,
            "units": "HU" if text["Modality"] == "CT" else "", "window": _window(first),
            "value_range": value_range, "has_geometry": True,
            "tilt_deg": float(order.tilt_deg), "problems": list(order.problems),
            "pacs_cache": folder, "streaming": True}


def open_streaming(profile: ServerProfile, study_uid: str, series_uid: str, *,
                   cache: str | os.PathLike[str] | None = None,
                   cancel: threading.Event | None = None,
                   method: str | None = None) -> Volume:
    """A lazy volume of a series on a server: geometry now, each slice when it is read.

    Only single-frame grayscale series of one orientation and matrix stream this way, and
    over DIMSE only when the server's C-FIND returns their geometry; the error for others
    says to retrieve the series instead. Slices are fetched into the retrieve cache, where
    a later :func:`~napari_dicomtools.core.pacs.retrieve` reuses them.

    Parameters
    ----------
    profile : ServerProfile
        The server.
    study_uid : str
        StudyInstanceUID.
    series_uid : str
        SeriesInstanceUID.
    cache : str or os.PathLike, optional
        Cache root (default :func:`~napari_dicomtools.core.pacs.default_cache`).
    cancel : threading.Event, optional
        Once set, reading a slice not cached yet raises a
        :class:`~napari_dicomtools.core.pacs.PacsError` instead of fetching it.
    method : {"wado", "c-get"}, optional
        WADO-RS (default when the profile has a DICOMweb URL) or C-GET.

    Returns
    -------
    Volume
        Its ``array`` is a dask array of one chunk per slice; geometry, window and
        metadata as :func:`~napari_dicomtools.core.volume.read_volume` gives them
        (``meta["streaming"]`` is True, ``meta["pacs_cache"]`` the series' cache folder).

    Raises
    ------
    PacsError
        A method the profile cannot use, a series that cannot be streamed (the reason
        says why), or the server failed.

    Examples
    --------
    >>> from napari_dicomtools.core.pacs import ServerProfile
    >>> profile = ServerProfile("web", dicomweb_url="http://localhost:8042/dicom-web")
    >>> vol = open_streaming(profile, "1.2.3", "1.2.3.4")  # doctest: +SKIP
    >>> vol.array[3].compute().shape  # one slice fetched  # doctest: +SKIP
    (512, 512)
    """
    method = _check_method(profile, method)
    headers = _headers(profile, study_uid, series_uid, method)
    order, iop = _order(profile, series_uid, headers)
    ordered = [headers[i] for i in order.order]
    ps = _floats(ordered[0], "PixelSpacing", 2)
    origin = _floats(ordered[0], "ImagePositionPatient", 3)
    assert ps is not None and origin is not None  # _order checked every header
    lo, hi, dtype = _value_range(ordered)
    folder = series_folder(cache or default_cache(), study_uid, series_uid)
    store = _Cache(folder, study_uid, series_uid)
    sops = [str(d.SOPInstanceUID) for d in ordered]
    fetch = _fetcher(profile, method, study_uid, series_uid, store,
                     {str(d.SOPInstanceUID): str(d.get("SOPClassUID", "")) for d in ordered})
    shape = (int(ordered[0].get("Rows")), int(ordered[0].get("Columns")))
    arr = _lazy_array(profile, store, fetch, sops, shape, dtype, series_uid, cancel)
    return Volume(arr, (order.spacing, ps[0], ps[1]), np.asarray(origin, float),
                  geometry.direction_matrix(iop, order.step),
                  _metadata(ordered[0], study_uid, series_uid, iop, order, (lo, hi), folder))
