"""Where DICOM lives: query, retrieve and send with a PACS, over DIMSE and DICOMweb.

Built on the field's libraries: **pynetdicom** for C-ECHO, C-FIND, C-GET, C-MOVE (with a
short-lived local storage SCP) and C-STORE; **dicomweb-client** for QIDO-RS, WADO-RS and
STOW-RS. No Qt, no napari.

- :class:`ServerProfile` describes a server (DICOMweb URL and/or host, port and AE titles,
  HTTP basic or bearer-token authentication, TLS with a CA bundle). Profiles live in a JSON
  file (:func:`config_path`; ``DICOMTOOLS_PACS_CONFIG`` overrides its location) written with
  mode 0600; a secret may instead be named by an environment variable (``password_env``,
  ``token_env``). Secrets never appear in ``repr``, messages or outputs.
- :func:`echo`, :func:`find` (study or series level, both protocols, one :class:`Hit` type).
- :func:`retrieve` copies a series into a cache keyed by UIDs
  (``<cache>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``). Each instance
  is checked (it parses, its UIDs are the ones asked for, its pixel data is whole) and
  published atomically (temporary file + rename), so an interrupted retrieve leaves only
  complete instances, and the next one fetches only what is missing (C-GET/C-MOVE: one
  request listing the missing UIDs; WADO-RS: instance by instance, or the whole series in
  one request when much of it is missing, see :func:`fetch_whole`; cached copies are kept
  as they are). The set received is verified against the server's own instance list;
  ``.complete`` marks a verified series.
  The folder then reads with :func:`~napari_dicomtools.core.series.scan` /
  :func:`~napari_dicomtools.core.volume.read_volume` like any local folder.
- :func:`send` uploads files or folders by STOW-RS or C-STORE and reports every instance
  that failed, with the server's reason.

Every failure is a :class:`PacsError` (a :class:`~napari_dicomtools.core.errors.DicomToolsError`)
whose one line names the server and the reason: server down, wrong credentials, AE title
refused, series gone.

This module is the public face; the work is done by private modules, one per job:
``_pacs_profiles`` (profiles, configuration file, errors), ``_pacs_dimse`` (associations,
TLS diagnosis, C-FIND/C-GET/C-MOVE/C-STORE), ``_pacs_web`` (the DICOMweb client, WADO-RS,
STOW-RS) and ``_pacs_local`` (the cache: verification, atomic publishing, resume rule; the
files to send).
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ._pacs_dimse import _STUDY_ROOT_FIND, _cstore, _Dimse, _dimse_retrieve, _echo, _find
from ._pacs_local import (
    COMPLETE_MARKER,
    Received,
    RetrieveResult,
    SendResult,
    _Cache,
    _check_uid,
    _read_source,
    _reason,
    _sources,
    fetch_whole,
    is_complete,
    series_folder,
)
from ._pacs_local import (
    WHOLE_SERIES_ABOVE as WHOLE_SERIES_ABOVE,  # re-exported: benchmarks/bench_pacs.py varies it
)
from ._pacs_profiles import (
    PacsError,
    RetrieveCancelled,
    ServerProfile,
    _need,
    config_path,
    default_cache,
    get_profile,
    load_profiles,
    remove_profile,
    save_profile,
)
from ._pacs_web import _http_error, _stow, _wado, dicomweb_client

if TYPE_CHECKING:
    from pydicom import Dataset

    from .sources import Source

__all__ = ["METHODS", "PROTOCOLS", "SEND_METHODS", "Hit", "PacsError", "RetrieveCancelled",
           "RetrieveResult", "SendResult", "ServerProfile", "config_path", "default_cache",
           "dicomweb_client", "echo", "fetch_whole", "find", "get_profile", "is_complete",
           "list_instances", "load_profiles", "locate_series", "remove_profile", "retrieve",
           "save_profile", "send", "series_folder"]

#: retrieve methods: WADO-RS, C-GET, C-MOVE
METHODS = ("wado", "c-get", "c-move")
#: send methods: STOW-RS, C-STORE
SEND_METHODS = ("stow", "c-store")
#: query protocols: QIDO-RS, C-FIND
PROTOCOLS = ("dicomweb", "dimse")


def _default_protocol(profile: ServerProfile, protocol: str | None) -> str:
    """``protocol``, else DICOMweb when the profile has a URL, else DIMSE."""
    return protocol or ("dicomweb" if profile.dicomweb_url else "dimse")


def echo(profile: ServerProfile, protocol: str = "dimse") -> float:
    """Check that the server answers.

    Parameters
    ----------
    profile : ServerProfile
        The server.
    protocol : {"dimse", "dicomweb"}
        C-ECHO, or a QIDO-RS study query limited to one result.

    Returns
    -------
    float
        The round trip in seconds.

    Raises
    ------
    PacsError
        The server is down, refuses us (AE title, credentials, TLS) or does not answer.

    Examples
    --------
    >>> profile = ServerProfile("pacs", host="127.0.0.1", port=4242, called_aet="ORTHANC")
    >>> echo(profile)  # doctest: +SKIP
    0.004
    """
    t0 = time.perf_counter()
    if protocol == "dicomweb":
        client = dicomweb_client(profile)
        try:
            client.search_for_studies(limit=1)
        except Exception as exc:
            raise _http_error(profile, exc, "echo") from None
    else:
        _echo(profile)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- queries


@dataclass
class Hit:
    """One study or series found on a server (either protocol).

    Parameters
    ----------
    level : {"study", "series"}
        What was found.
    study_uid : str
        StudyInstanceUID.
    patient_name : str
        PatientName (DICOM form, ``Family^Given``).
    patient_id : str
        PatientID.
    study_date : str
        StudyDate (``YYYYMMDD``).
    study_description : str
        StudyDescription.
    accession_number : str
        AccessionNumber.
    modality : str
        The series' Modality, or the study's ModalitiesInStudy joined by ``\\``.
    series_uid : str
        SeriesInstanceUID (series level).
    series_number : str
        SeriesNumber (series level).
    series_description : str
        SeriesDescription (series level).
    count : int or None
        Instances in the study or series, when the server says.

    Examples
    --------
    >>> h = Hit("series", "1.2.3", patient_id="P1", modality="CT", series_uid="1.2.3.4",
    ...         count=120)
    >>> h.row()["series_uid"], h.row()["count"]
    ('1.2.3.4', 120)
    """

    level: str
    study_uid: str
    patient_name: str = ""
    patient_id: str = ""
    study_date: str = ""
    study_description: str = ""
    accession_number: str = ""
    modality: str = ""
    series_uid: str = ""
    series_number: str = ""
    series_description: str = ""
    count: int | None = None

    def row(self) -> dict[str, str | int | None]:
        """The hit as a JSON-able dict (``dicomtools pacs find --json``)."""
        return asdict(self)


def _date_range(text: str | None) -> str:
    """``"20200101"``, ``"20200101-20201231"``, ``"2020-01-01..2020-12-31"``, open ends
    (``"20200101-"``, ``"-20201231"``) -> the DICOM range form ``YYYYMMDD-YYYYMMDD``."""
    if not text:
        return ""
    t = str(text).strip()
    parts = t.split("..") if ".." in t else (t.split("-") if re.fullmatch(
        r"\d{8}-\d{0,8}|-\d{8}|\d{8}", t) else None)
    if parts is None or len(parts) > 2:
        raise PacsError(None, f"date {text!r}: use YYYYMMDD, YYYYMMDD-YYYYMMDD or "
                              "YYYY-MM-DD..YYYY-MM-DD (either end may be open)")
    out = []
    for p in parts:
        d = p.replace("-", "").strip()
        if d and not re.fullmatch(r"\d{8}", d):
            raise PacsError(None, f"date {text!r}: {p!r} is not a date")
        out.append(d)
    return out[0] if len(out) == 1 else f"{out[0]}-{out[1]}"


def _filters(patient_id: str | None, patient_name: str | None, date: str | None,
             modality: str | None, description: str | None, level: str,
             study_uid: str | None) -> dict[str, str]:
    """Attribute keyword -> value, protocol neutral."""
    f = {}
    if patient_id:
        f["PatientID"] = patient_id
    if patient_name:
        f["PatientName"] = patient_name
    if date:
        f["StudyDate"] = _date_range(date)
    if study_uid:
        f["StudyInstanceUID"] = study_uid
    if modality:
        f["ModalitiesInStudy" if level == "study" else "Modality"] = modality
    if description:
        f["StudyDescription" if level == "study" else "SeriesDescription"] = description
    return f


_STUDY_KEYS = ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate",
               "StudyDescription", "AccessionNumber", "ModalitiesInStudy",
               "NumberOfStudyRelatedInstances")
_SERIES_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber",
                "SeriesDescription", "NumberOfSeriesRelatedInstances")
_HIT_TEXT = (("PatientName", "patient_name"), ("PatientID", "patient_id"),
             ("StudyDate", "study_date"), ("StudyDescription", "study_description"),
             ("AccessionNumber", "accession_number"))


def _text(ds: Dataset, kw: str) -> str:
    """Attribute ``kw`` of ``ds`` as text; several values joined by ``\\``."""
    v = ds.get(kw, "")
    if v is None:
        return ""
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return "\\".join(str(x) for x in v)
    return str(v)


def _count(ds: Dataset, level: str) -> int | None:
    """NumberOfStudy/SeriesRelatedInstances, None when absent or not a number."""
    n = ds.get("NumberOfStudyRelatedInstances" if level == "study"
               else "NumberOfSeriesRelatedInstances")
    try:
        return int(n) if n not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _hit(level: str, ds: Dataset, study: Hit | None = None) -> Hit:
    """The :class:`Hit` of a query response; a series inherits ``study``'s patient and study
    attributes where its own response lacks them."""
    base = asdict(study) if study is not None else {}
    base.update(level=level, study_uid=_text(ds, "StudyInstanceUID") or base.get(
        "study_uid", ""), count=_count(ds, level))
    for kw, attr in _HIT_TEXT:
        if kw in ds and _text(ds, kw):
            base[attr] = _text(ds, kw)
    if level == "study":
        base["modality"] = _text(ds, "ModalitiesInStudy")
    else:
        base.update(modality=_text(ds, "Modality"), series_uid=_text(ds, "SeriesInstanceUID"),
                    series_number=_text(ds, "SeriesNumber"),
                    series_description=_text(ds, "SeriesDescription"))
    return Hit(**base)


def _qido(profile: ServerProfile, level: str, filters: dict[str, str],
          limit: int | None) -> list[Hit]:
    """QIDO-RS search for studies or series."""
    from pydicom import Dataset

    client = dicomweb_client(profile)
    keys = list(_STUDY_KEYS) + (list(_SERIES_KEYS) if level == "series" else [])
    search = client.search_for_studies if level == "study" else client.search_for_series
    try:
        rows = search(search_filters=filters, fields=keys, limit=limit,
                      get_remaining=limit is None)
    except Exception as exc:
        raise _http_error(profile, exc, "QIDO-RS search") from None
    return [_hit(level, Dataset.from_json(r)) for r in rows]


def _find_dimse(profile: ServerProfile, level: str, patient_id: str | None,
                patient_name: str | None, date: str | None, modality: str | None,
                description: str | None, study_uid: str | None) -> list[Hit]:
    """Strict hierarchical C-FIND: studies first, then the series of each."""
    from ._pacs_dimse import _cfind

    if level == "study":
        study_f = _filters(patient_id, patient_name, date, modality, description, "study",
                           study_uid)
    else:
        study_f = _filters(patient_id, patient_name, date, None, None, "study", study_uid)
    with _Dimse(profile, [(_STUDY_ROOT_FIND, None)]) as assoc:
        studies = [_hit("study", d) for d in _cfind(assoc, profile, "study", study_f,
                                                    _STUDY_KEYS)]
        if level == "study":
            return studies
        hits: list[Hit] = []
        series_f = _filters(None, None, None, modality, description, "series", None)
        for st in studies:
            rows = _cfind(assoc, profile, "series",
                          {**series_f, "StudyInstanceUID": st.study_uid}, _SERIES_KEYS)
            hits.extend(_hit("series", d, st) for d in rows)
    return hits


def find(profile: ServerProfile, *, level: str = "study", protocol: str | None = None,
         patient_id: str | None = None, patient_name: str | None = None,
         date: str | None = None, modality: str | None = None,
         description: str | None = None, study_uid: str | None = None,
         limit: int | None = None) -> list[Hit]:
    """Search a server for studies or series.

    Parameters
    ----------
    profile : ServerProfile
        The server.
    level : {"study", "series"}
        What to list.
    protocol : {"dicomweb", "dimse"}, optional
        QIDO-RS or C-FIND; default: DICOMweb when the profile has a URL.
    patient_id : str, optional
        PatientID, matched by the server (``*`` and ``?`` wildcards, as DICOM defines them).
    patient_name : str, optional
        PatientName (``Family^Given``; wildcards as above).
    date : str, optional
        Study date or range: ``20200101``, ``20200101-20201231``, ``2020-01-01..2020-12-31``
        (either end may be open).
    modality : str, optional
        ``CT``, ``MR``...: the series' Modality (series level) or ModalitiesInStudy.
    description : str, optional
        StudyDescription (study level) or SeriesDescription (series level); wildcards as
        above.
    study_uid : str, optional
        Restrict to one study (series of a study).
    limit : int, optional
        At most this many results (DICOMweb; C-FIND results are cut after the fact).

    Returns
    -------
    list of Hit
        Sorted by patient, study date, study and series number.

    Raises
    ------
    PacsError
        A bad argument (level, protocol, date), or the server failed (down, refused,
        wrong credentials).

    Examples
    --------
    >>> profile = ServerProfile("web", dicomweb_url="http://localhost:8042/dicom-web")
    >>> hits = find(profile, level="series", modality="CT", date="2021-01-01..")  # doctest: +SKIP
    >>> [(h.patient_id, h.series_description, h.count) for h in hits]  # doctest: +SKIP
    [('PACS-CT', 'Chest CT', 12)]
    """
    if level not in ("study", "series"):
        raise PacsError(None, f"level {level!r}: use 'study' or 'series'")
    protocol = _default_protocol(profile, protocol)
    if protocol not in PROTOCOLS:
        raise PacsError(None, f"protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    _need(profile, protocol)
    if protocol == "dicomweb":
        hits = _qido(profile, level, _filters(patient_id, patient_name, date, modality,
                                              description, level, study_uid), limit)
    else:
        hits = _find_dimse(profile, level, patient_id, patient_name, date, modality,
                           description, study_uid)
    hits.sort(key=lambda h: (h.patient_name, h.patient_id, h.study_date, h.study_uid,
                             _num(h.series_number), h.series_uid))
    return hits[:limit] if limit else hits


def _num(text: str) -> float:
    """``text`` as a number for sorting; not a number sorts last."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("inf")


def locate_series(profile: ServerProfile, series_uid: str,
                  protocol: str | None = None) -> Hit:
    """The series ``series_uid`` as the server describes it (its study UID, count...).

    Parameters
    ----------
    profile : ServerProfile
        The server.
    series_uid : str
        SeriesInstanceUID.
    protocol : {"dicomweb", "dimse"}, optional
        QIDO-RS or C-FIND; default: DICOMweb when the profile has a URL.

    Returns
    -------
    Hit
        The series (level ``"series"``).

    Raises
    ------
    PacsError
        Not a UID, no such series on the server, or the server failed.

    Examples
    --------
    >>> profile = ServerProfile("pacs", host="127.0.0.1", port=4242, called_aet="ORTHANC")
    >>> locate_series(profile, "1.2.826.0.1.3680043.8.498.1").study_uid  # doctest: +SKIP
    '1.2.826.0.1.3680043.8.498.2'
    """
    protocol = _default_protocol(profile, protocol)
    _need(profile, protocol)
    series_uid = _check_uid(series_uid, "SeriesInstanceUID", profile.label)
    if protocol == "dicomweb":
        hits = _qido(profile, "series", {"SeriesInstanceUID": series_uid}, None)
    else:
        rows = _find(profile, "series", {"SeriesInstanceUID": series_uid},
                     _SERIES_KEYS + _STUDY_KEYS[:2])
        hits = [_hit("series", d) for d in rows]
    hits = [h for h in hits if h.series_uid == series_uid]
    if not hits:
        raise PacsError(profile.label, f"no series {series_uid} on the server")
    return hits[0]


def list_instances(profile: ServerProfile, study_uid: str, series_uid: str,
                   protocol: str | None = None) -> dict[str, str]:
    """Every instance of a series, as the server lists them (QIDO-RS or C-FIND at IMAGE
    level).

    Parameters
    ----------
    profile : ServerProfile
        The server.
    study_uid : str
        StudyInstanceUID.
    series_uid : str
        SeriesInstanceUID.
    protocol : {"dicomweb", "dimse"}, optional
        QIDO-RS or C-FIND; default: DICOMweb when the profile has a URL.

    Returns
    -------
    dict of str to str
        SOP Instance UID -> SOP Class UID.

    Raises
    ------
    PacsError
        The series has no instances (deleted, or never there), or the server failed.

    Examples
    --------
    >>> profile = ServerProfile("web", dicomweb_url="http://localhost:8042/dicom-web")
    >>> len(list_instances(profile, "1.2.3", "1.2.3.4"))  # doctest: +SKIP
    12
    """
    protocol = _default_protocol(profile, protocol)
    _need(profile, protocol)
    keys = ("SOPInstanceUID", "SOPClassUID")
    if protocol == "dicomweb":
        from pydicom import Dataset

        client = dicomweb_client(profile)
        try:
            rows = client.search_for_instances(study_uid, series_uid, fields=list(keys),
                                               get_remaining=True)
        except Exception as exc:
            raise _http_error(profile, exc, f"series {series_uid}") from None
        found = [Dataset.from_json(r) for r in rows]
    else:
        found = _find(profile, "image", {"StudyInstanceUID": study_uid,
                                         "SeriesInstanceUID": series_uid}, keys)
    out = {_text(ds, "SOPInstanceUID"): _text(ds, "SOPClassUID") for ds in found}
    out.pop("", None)
    if not out:
        raise PacsError(profile.label, f"series {series_uid} has no instances on the server "
                                       "(deleted since the search?)")
    return out


# --------------------------------------------------------------------------- retrieve


def _receiver(store: _Cache, expected: dict[str, str], have: set[str],
              result: RetrieveResult, progress: Callable[[int, int], None] | None
              ) -> Received:
    """The ``received(sop, data, why)`` callback of one retrieve: publishes each instance
    into ``store`` (checked), counts it into ``result`` and reports progress. Thread-safe
    (WADO-RS workers, the C-MOVE storage SCP)."""
    lock = threading.Lock()
    done = [len(have)]

    def received(sop: str | None, data: bytes | None, why: str | None = None) -> None:
        if sop in have:
            return  # sent again by a whole-series transfer: the cached copy stays
        if why is None:
            if sop is None or sop not in expected:
                why = "not an instance of the series asked for"
            elif data is None:
                why = "nothing received"
            else:
                why = store.publish(sop, data)
        with lock:
            if why:
                result.rejected.append((sop or "?", why))
            else:
                result.fetched += 1
            done[0] += 1
            if progress is not None:
                progress(min(done[0], len(expected)), len(expected))

    return received


def _conclude(profile: ServerProfile, store: _Cache, expected: dict[str, str],
              result: RetrieveResult, series_uid: str) -> RetrieveResult:
    """Verify the cache against the server's list: mark the series complete, or raise the
    :class:`PacsError` saying what is missing or was refused (the rest stays cached)."""
    now = store.cached(expected)
    rejected_sops = {s for s, _ in result.rejected}
    result.missing = sorted(s for s in expected if s not in now and s not in rejected_sops)
    if result.complete:
        with open(os.path.join(store.folder, COMPLETE_MARKER), "w") as f:
            f.write("\n".join(sorted(expected)) + "\n")
        return result
    parts = []
    if result.missing:
        parts.append(f"{len(result.missing)} of {len(expected)} instances not received")
    if result.rejected:
        sop, why = result.rejected[0]
        parts.append(f"{len(result.rejected)} refused (first: {sop}: {why})")
    raise PacsError(profile.label, f"series {series_uid}: " + "; ".join(parts)
                    + f"; {len(now)} complete instances kept in {store.folder}; run again to "
                      "resume")


def retrieve(profile: ServerProfile, study_uid: str, series_uid: str, *,
             method: str | None = None, cache: str | os.PathLike[str] | None = None,
             workers: int = 4, progress: Callable[[int, int], None] | None = None,
             cancel: threading.Event | None = None,
             query_protocol: str | None = None) -> RetrieveResult:
    """Copy one series from the server into the cache; fetch only what is not there yet.

    Parameters
    ----------
    profile : ServerProfile
        The server.
    study_uid : str
        StudyInstanceUID.
    series_uid : str
        SeriesInstanceUID.
    method : {"wado", "c-get", "c-move"}, optional
        WADO-RS (default when the profile has a DICOMweb URL), C-GET, or C-MOVE to a
        storage SCP this function runs on ``profile.move_port`` for the transfer.
    cache : str or os.PathLike, optional
        Cache root (default :func:`default_cache`).
    workers : int
        Concurrent WADO-RS requests.
    progress : callable, optional
        ``progress(done, total)`` in instances (cached ones count as done).
    cancel : threading.Event, optional
        Set it to stop; :class:`RetrieveCancelled` is raised, complete instances stay cached.
    query_protocol : {"dicomweb", "dimse"}, optional
        How the instance list is asked (default: the method's own protocol).

    Returns
    -------
    RetrieveResult
        ``.folder`` reads with ``scan``/``read_volume``.

    Raises
    ------
    PacsError
        Instances are missing or were refused after the transfer (the complete ones stay,
        a new call fetches the rest), the series is gone, or the server failed.
    RetrieveCancelled
        ``cancel`` was set.

    Examples
    --------
    >>> profile = ServerProfile("web", dicomweb_url="http://localhost:8042/dicom-web")
    >>> r = retrieve(profile, "1.2.3", "1.2.3.4", cache="cache")  # doctest: +SKIP
    >>> r.complete, r.fetched, r.reused  # doctest: +SKIP
    (True, 12, 0)
    """
    method = method or ("wado" if profile.dicomweb_url else "c-get")
    if method not in METHODS:
        raise PacsError(None, f"method {method!r}: use one of {', '.join(METHODS)}")
    protocol = "dicomweb" if method == "wado" else "dimse"
    _need(profile, protocol)
    folder = series_folder(cache or default_cache(), study_uid, series_uid)
    expected = list_instances(profile, study_uid, series_uid, query_protocol or protocol)
    for sop in expected:
        _check_uid(sop, "SOPInstanceUID", profile.label)
    store = _Cache(folder, study_uid, series_uid)
    marker = os.path.join(folder, COMPLETE_MARKER)
    if os.path.exists(marker):
        os.unlink(marker)  # re-verified below
    have = store.cached(expected)
    todo = [s for s in expected if s not in have]
    result = RetrieveResult(folder, len(expected), reused=len(have))
    received = _receiver(store, expected, have, result, progress)
    whole = fetch_whole(method, len(todo), len(expected), workers)
    if progress is not None:
        progress(len(have), len(expected))
    if todo:
        if cancel is not None and cancel.is_set():
            raise RetrieveCancelled(profile.label, "retrieve cancelled")
        if method == "wado":
            _wado(profile, study_uid, series_uid, todo, received, workers, cancel,
                  whole=whole)
        else:
            _dimse_retrieve(profile, method, study_uid, series_uid, todo,
                            {expected[s] for s in todo}, received, cancel, whole=whole)
    return _conclude(profile, store, expected, result, series_uid)


# --------------------------------------------------------------------------- send


def _headers(sources: Iterable[Source], result: SendResult) -> list[tuple[Source, Dataset]]:
    """The header of every storable file; the others go to ``result.skipped``."""
    headers = []
    for src in sources:
        try:
            headers.append((src, _read_source(src, header_only=True)))
        except Exception as exc:
            result.skipped.append((str(src), _reason(exc, f"not DICOM ({type(exc).__name__})")))
    return headers


def send(profile: ServerProfile,
         paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
         method: str | None = None, progress: Callable[[int, int], None] | None = None,
         cancel: threading.Event | None = None, batch: int = 16) -> SendResult:
    """Upload DICOM files (files, folders, zips) by STOW-RS or C-STORE.

    Every instance's fate is reported: stored (``sent``), refused by the server
    (``failed``, with its reason) or not sent because the file is not storable DICOM
    (``skipped``). Nothing is dropped silently. Source files are only read.

    Parameters
    ----------
    profile : ServerProfile
        The server.
    paths : str or os.PathLike, or an iterable of them
        Files, folders, zip files, or zip members as ``scan`` names them
        (``archive.zip::member``).
    method : {"stow", "c-store"}, optional
        STOW-RS (default when the profile has a DICOMweb URL) or C-STORE.
    progress : callable, optional
        ``progress(done, total)`` in files.
    cancel : threading.Event, optional
        Set it to stop; a :class:`PacsError` says how many instances were sent.
    batch : int
        Instances per STOW-RS request.

    Returns
    -------
    SendResult
        What was sent, refused and skipped.

    Raises
    ------
    PacsError
        A bad method, the server cannot be reached or refuses us (credentials, AE title,
        TLS), the connection was lost, or the send was cancelled.

    Examples
    --------
    >>> profile = ServerProfile("pacs", host="127.0.0.1", port=4242, called_aet="ORTHANC")
    >>> r = send(profile, "ct_folder", method="c-store")  # doctest: +SKIP
    >>> len(r.sent), r.failed, r.skipped  # doctest: +SKIP
    (12, [], [])
    """
    method = method or ("stow" if profile.dicomweb_url else "c-store")
    if method not in SEND_METHODS:
        raise PacsError(None, f"method {method!r}: use one of {', '.join(SEND_METHODS)}")
    _need(profile, "dicomweb" if method == "stow" else "dimse")
    sources, skipped = _sources(paths)
    result = SendResult(skipped=skipped)
    headers = _headers(sources, result)
    if progress is not None:
        progress(0, len(headers))
    if not headers:
        return result
    if method == "stow":
        _stow(profile, headers, result, progress, cancel, batch)
    else:
        _cstore(profile, headers, result, progress, cancel)
    return result
