"""Lazy viewing of a series still on the server: geometry first, pixels on demand.

:func:`open_streaming` asks the server for the series' headers without pixel data (WADO-RS
``/metadata`` over DICOMweb; over DIMSE, a C-FIND at IMAGE level returning the geometry
attributes), builds the :class:`~.volume.Volume` geometry from them exactly as
:func:`~.volume.read_volume` would (slices ordered by position along the normal, spacing
from the positions, rescale into the smallest exact dtype), and returns a dask array whose
slices come from the retrieve cache: a slice not cached yet is fetched (WADO-RS, or a C-GET
of that instance only), checked and published into the cache like any retrieved
instance. So napari shows the first slice long before the last instance arrives, and a
background :func:`~.pacs.retrieve` filling the same cache (or a later one) reuses every slice
already fetched.
"""

from __future__ import annotations

import threading

import numpy as np

from . import geometry
from .pacs import (
    _STUDY_ROOT_FIND,
    PacsError,
    ServerProfile,
    _Cache,
    _cfind,
    _Dimse,
    _dimse_retrieve,
    _encode,
    _http_error,
    dicomweb_client,
    series_folder,
)
from .volume import Volume, smallest_dtype

__all__ = ["open_streaming"]


#: what a DIMSE stream asks C-FIND for, per instance (the DICOMweb metadata has them all)
HEADER_KEYS = ("SOPInstanceUID", "SOPClassUID", "ImagePositionPatient",
               "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "NumberOfFrames",
               "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored",
               "PixelRepresentation", "RescaleSlope", "RescaleIntercept", "SliceThickness",
               "WindowCenter", "WindowWidth", "Modality", "PatientID", "PatientName",
               "StudyDate", "StudyDescription", "SeriesNumber", "SeriesDescription",
               "FrameOfReferenceUID")


def _headers(profile: ServerProfile, study_uid: str, series_uid: str, method: str) -> list:
    if method == "c-get":
        with _Dimse(profile, [(_STUDY_ROOT_FIND, None)]) as assoc:
            rows = _cfind(assoc, profile, "image", {"StudyInstanceUID": study_uid,
                                                    "SeriesInstanceUID": series_uid},
                          HEADER_KEYS)
        if not rows:
            raise PacsError(profile.label, f"series {series_uid} has no instances on the "
                                           "server")
        return rows
    client = dicomweb_client(profile)
    try:
        rows = client.retrieve_series_metadata(study_uid, series_uid)
    except Exception as exc:
        raise _http_error(profile, exc, f"series {series_uid} metadata") from None
    if not rows:
        raise PacsError(profile.label, f"series {series_uid} has no instances on the server")
    return [_Header.from_json(r) for r in rows]


class _Header(dict):
    """Keyword -> value of the :data:`HEADER_KEYS` of one instance's DICOM JSON (PS3.18
    F.2), read directly: pydicom's ``Dataset.from_json`` costs ~0.7 ms per attribute, 20 ms
    per instance of even a small header, seconds before the first slice of a long series.
    One value stays a scalar, several a list; person names are their alphabetic form; empty
    attributes are left out."""

    TAGS: dict = {}

    def __getattr__(self, kw):
        try:
            return self[kw]
        except KeyError:
            raise AttributeError(kw) from None

    @classmethod
    def from_json(cls, row: dict) -> _Header:
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


def _fetcher(profile: ServerProfile, method: str, study_uid: str, series_uid: str,
             store: _Cache, classes: dict):
    """``fetch(sop)``: that one instance from the server into the cache (checked)."""
    if method == "c-get":
        def fetch(sop: str) -> None:
            why = []

            def received(got, data, reason=None):
                if got == sop:
                    why.append(reason or store.publish(sop, data))

            _dimse_retrieve(profile, "c-get", study_uid, series_uid, [sop], {classes[sop]},
                            received, None, whole=False)
            if not why:
                raise PacsError(profile.label, f"instance {sop}: not sent by the server "
                                               "(deleted?)")
            if why[0]:
                raise PacsError(profile.label, f"instance {sop}: {why[0]}")
        return fetch

    client = dicomweb_client(profile)

    def fetch(sop: str) -> None:
        try:
            ds = client.retrieve_instance(study_uid, series_uid, sop,
                                          media_types=(("application/dicom", "*"),))
        except Exception as exc:
            raise _http_error(profile, exc, f"instance {sop}") from None
        why = store.publish(sop, _encode(ds))
        if why:
            raise PacsError(profile.label, f"instance {sop}: {why}")
    return fetch


def _floats(ds, kw, n):
    v = ds.get(kw)
    try:
        out = [float(x) for x in v]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def open_streaming(profile: ServerProfile, study_uid: str, series_uid: str, *, cache=None,
                   cancel: threading.Event | None = None,
                   method: str | None = None) -> Volume:
    """A lazy :class:`Volume` of a series on a server (see the module docstring).

    ``method`` is ``"wado"`` (WADO-RS; the default when the profile has a DICOMweb URL) or
    ``"c-get"``. Only single-frame grayscale series of one orientation and matrix stream
    this way, and over DIMSE only when the server's C-FIND returns their geometry; the error
    for others says to retrieve the series instead.
    """
    from .pacs import default_cache

    method = method or ("wado" if profile.dicomweb_url else "c-get")
    if method not in ("wado", "c-get"):
        raise PacsError(profile.label, f"streaming is over WADO-RS or C-GET, not {method}; "
                                       "retrieve the series instead")
    if method == "wado" and not profile.dicomweb_url:
        raise PacsError(profile.label, "streaming by WADO-RS needs a DICOMweb URL; retrieve "
                                       "the series instead")
    if method == "c-get" and not profile.host:
        raise PacsError(profile.label, "streaming by C-GET needs a DIMSE host/port")
    headers = _headers(profile, study_uid, series_uid, method)
    why = None
    iops = {tuple(np.round(_floats(d, "ImageOrientationPatient", 6) or [np.nan] * 6, 4))
            for d in headers}
    shapes = {(int(d.get("Rows", 0) or 0), int(d.get("Columns", 0) or 0)) for d in headers}
    if any(int(d.get("NumberOfFrames", 1) or 1) > 1 for d in headers):
        why = "multi-frame instances"
    elif any(int(d.get("SamplesPerPixel", 1) or 1) != 1 or str(
            d.get("PhotometricInterpretation", "MONOCHROME2")) != "MONOCHROME2"
            for d in headers):
        why = "not MONOCHROME2 grayscale"
    elif len(iops) != 1 or any(np.isnan(v) for v in next(iter(iops))):
        why = "mixed or missing ImageOrientationPatient"
    elif len(shapes) != 1 or 0 in next(iter(shapes)):
        why = "mixed or missing image sizes"
    positions = [_floats(d, "ImagePositionPatient", 3) for d in headers]
    if why is None and any(p is None for p in positions):
        why = "missing ImagePositionPatient"
    if why is None and any(_floats(d, "PixelSpacing", 2) is None for d in headers):
        why = "missing PixelSpacing"
    if why:
        raise PacsError(profile.label, f"series {series_uid} cannot be streamed ({why}); "
                                       "retrieve it instead")
    iop = _floats(headers[0], "ImageOrientationPatient", 6)
    order = geometry.order_slices(positions, iop,
                                  fallback_spacing=float(headers[0].get("SliceThickness", 0)
                                                         or 0) or None)
    if order.duplicates:
        raise PacsError(profile.label, f"series {series_uid} has duplicate slice positions; "
                                       "retrieve it instead")
    ordered = [headers[i] for i in order.order]
    rows, cols = next(iter(shapes))
    ps = _floats(ordered[0], "PixelSpacing", 2)
    spacing = (order.spacing, ps[0], ps[1])
    direction = geometry.direction_matrix(iop, order.step)
    origin = np.asarray(positions[order.order[0]], float)

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
    dtype = smallest_dtype(lo, hi, integral, bits)

    folder = series_folder(cache or default_cache(), study_uid, series_uid)
    store = _Cache(folder, study_uid, series_uid)
    sops = [str(d.SOPInstanceUID) for d in ordered]
    fetch = _fetcher(profile, method, study_uid, series_uid, store,
                     {str(d.SOPInstanceUID): str(d.get("SOPClassUID", "")) for d in ordered})
    locks = {s: threading.Lock() for s in sops}

    def plane(i: int) -> np.ndarray:
        import os

        import pydicom

        sop = sops[i]
        path = store.path(sop)
        with locks[sop]:
            if not os.path.isfile(path):
                if cancel is not None and cancel.is_set():
                    raise PacsError(profile.label, "streaming cancelled")
                fetch(sop)
        ds = pydicom.dcmread(path)
        stored = ds.pixel_array
        slope = float(ds.get("RescaleSlope", 1) or 1)
        icpt = float(ds.get("RescaleIntercept", 0) or 0)
        if slope == 1 and icpt == 0:
            return stored.astype(dtype, copy=False)
        work = np.float64 if dtype.kind == "f" and dtype.itemsize > 4 else (
            np.float32 if dtype.kind == "f" else np.int64)
        return (stored.astype(work) * (int(slope) if dtype.kind != "f" else slope)
                + (int(icpt) if dtype.kind != "f" else icpt)).astype(dtype)

    import dask.array as da

    def block(block_info=None):
        i = block_info[None]["chunk-location"][0]
        return plane(i)[None]

    arr = da.map_blocks(block, dtype=dtype, chunks=((1,) * len(sops), (rows,), (cols,)),
                        meta=np.empty((0, 0, 0), dtype),
                        name=f"pacs-stream-{series_uid}")
    first = ordered[0]
    wc, ww = first.get("WindowCenter"), first.get("WindowWidth")
    window = None
    try:
        if wc is not None and ww is not None:
            window = (float(wc[0] if isinstance(wc, (list, tuple)) or type(wc).__name__ ==
                            "MultiValue" else wc),
                      float(ww[0] if isinstance(ww, (list, tuple)) or type(ww).__name__ ==
                            "MultiValue" else ww))
    except (TypeError, ValueError, IndexError):
        window = None
    number = str(first.get("SeriesNumber", "") or "")
    name = " ".join(x for x in (number, str(first.get("SeriesDescription", "") or "")) if x)
    text = {kw: str(first.get(kw, "") or "") for kw in (
        "Modality", "PatientID", "PatientName", "StudyDate", "StudyDescription",
        "SeriesDescription", "FrameOfReferenceUID")}
    meta = {"name": name or series_uid, "series_uid": series_uid, "study_uid": study_uid,
            "modality": text["Modality"], "patient_id": text["PatientID"],
            "patient_name": text["PatientName"], "study_date": text["StudyDate"],
            "study_description": text["StudyDescription"],
            "series_description": text["SeriesDescription"], "series_number": number,
            "frame_of_reference": text["FrameOfReferenceUID"],
            "orientation": geometry.orientation_label(iop), "n_time": 1, "rgb": False,
            "units": "HU" if text["Modality"] == "CT" else "", "window": window,
            "value_range": (float(lo), float(hi)), "has_geometry": True,
            "tilt_deg": float(order.tilt_deg), "problems": list(order.problems),
            "pacs_cache": folder, "streaming": True}
    return Volume(arr, spacing, origin, direction, meta)
