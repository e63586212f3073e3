"""DICOMweb (QIDO-RS, WADO-RS, STOW-RS) over **dicomweb-client** and **requests**.

Private: :mod:`napari_dicomtools.core.pacs` re-exports :func:`dicomweb_client` and drives
the rest. Authentication (HTTP basic, bearer token) and TLS (the profile's CA bundle, our
client certificate) are set on the session; every failure becomes a one-line
:class:`~._pacs_profiles.PacsError`.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ._pacs_dimse import _ToDebug
from ._pacs_local import Received, SendResult, _encode, _read_source, _reason, _send_cancelled
from ._pacs_profiles import PacsError, RetrieveCancelled, ServerProfile, _need

# dicomweb-client retries through the `retrying` package, which logs each failed attempt
# (a TLS failure included) with its traceback at WARNING or above; the PacsError we raise
# says what went wrong in one line, so its account goes to our logger at DEBUG (-vv)
logging.getLogger("retrying").addFilter(_ToDebug())

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import requests
    from dicomweb_client.api import DICOMwebClient
    from pydicom import Dataset

    from .sources import Source

__all__ = ["dicomweb_client"]

#: WADO-RS media type: instances as stored (no transcoding, lossless kept)
_AS_STORED = (("application/dicom", "*"),)


def _http_error(profile: ServerProfile, exc: Exception, what: str) -> PacsError:
    """One line for a failed HTTP exchange."""
    import requests

    if isinstance(exc, requests.exceptions.SSLError):
        m = re.search(r"certificate verify failed: ([^()'\"]+)", str(exc))
        why = f" ({m.group(1).strip()})" if m else ""
        return PacsError(profile.label, f"{what}: TLS: the server's certificate failed "
                                        f"verification{why}; check ca_bundle")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return PacsError(profile.label, f"{what}: cannot connect (server down or wrong "
                                        "address?)")
    if isinstance(exc, requests.exceptions.Timeout):
        return PacsError(profile.label, f"{what}: no answer within {profile.timeout:g} s")
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        if code == 401:
            return PacsError(profile.label, f"{what}: authentication failed (HTTP 401): "
                                            "wrong user/password or token")
        if code == 403:
            return PacsError(profile.label, f"{what}: access denied (HTTP 403)")
        if code == 404:
            return PacsError(profile.label, f"{what}: not found on the server (HTTP 404)")
        return PacsError(profile.label, f"{what}: HTTP {code} {exc.response.reason or ''}"
                         .rstrip())
    return PacsError(profile.label, f"{what}: {type(exc).__name__}: {exc}")


def _http_status(exc: Exception) -> int | None:
    """The HTTP status of a failed request, None when it failed before an answer."""
    import requests

    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        return int(exc.response.status_code)
    return None


# --------------------------------------------------------------------------- the client

# QIDO matching characters sent as themselves: a server that decodes the query sees the same
# value either way, and one that does not (Orthanc's DICOMweb plugin 1.7 matches "Roe%2A"
# literally) still sees the wildcard or the name-component separator
_QUERY_LITERALS = (("%2A", "*"), ("%5E", "^"), ("%3F", "?"), ("%2C", ","))


@functools.cache
def _session_class() -> type[requests.Session]:
    """A ``requests.Session`` that keeps query wildcards literal, asks for whole instances
    uncompressed and lets the profile's CA bundle win over the environment's."""
    import requests

    class Session(requests.Session):
        def send(self, request: requests.PreparedRequest, **kw: Any) -> requests.Response:
            base, sep, query = (request.url or "").partition("?")
            if sep:
                for enc, lit in _QUERY_LITERALS:
                    query = query.replace(enc, lit).replace(enc.lower(), lit)
                request.url = base + sep + query
            if re.search(r"application/(dicom(?!\+)|octet-stream)", str(request.headers.get(
                    "Accept", ""))):
                # whole instances: not gzipped on the fly (Orthanc spends ~70 ms compressing
                # a 512x512 CT slice that hardly shrinks; 3x slower per instance)
                request.headers["Accept-Encoding"] = "identity"
            return super().send(request, **kw)

        def merge_environment_settings(self, url: str, proxies: Any,
                                       stream: Any, verify: Any, cert: Any
                                       ) -> dict[str, Any]:
            # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace the session's own
            # CA bundle (psf/requests#3829): the profile's ca_bundle must win
            out = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if isinstance(self.verify, str) and verify in (None, True):
                out["verify"] = self.verify
            return out

    return Session


def dicomweb_client(profile: ServerProfile) -> DICOMwebClient:
    """A DICOMweb client for ``profile``, with its authentication and TLS settings.

    Nothing is sent until the client is used. Busy answers (HTTP 429, 503...) are retried
    briefly, so a server that is down says so in about a second.

    Parameters
    ----------
    profile : ServerProfile
        A profile with a ``dicomweb_url``.

    Returns
    -------
    dicomweb_client.DICOMwebClient
        The client (its ``requests`` session carries basic auth or the bearer token, the
        CA bundle and our client certificate).

    Raises
    ------
    PacsError
        The profile has no DICOMweb URL, a certificate file is missing, or the environment
        variable naming its password or token is not set.

    Examples
    --------
    >>> client = dicomweb_client(ServerProfile("web", dicomweb_url="http://pacs:8042/dicom-web/",
    ...                                        token="abc"))
    >>> client.base_url, client._session.headers["Authorization"]
    ('http://pacs:8042/dicom-web', 'Bearer abc')
    """
    from dicomweb_client.api import DICOMwebClient

    _need(profile, "dicomweb")
    profile._check_files()
    session = _session_class()()
    password = profile._secret(profile.password, profile.password_env)
    token = profile._secret(profile.token, profile.token_env)
    if profile.username:
        session.auth = (profile.username, password or "")
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    if profile.ca_bundle:
        session.verify = profile.ca_bundle
    if profile.tls_cert:
        session.cert = (profile.tls_cert, profile.tls_key) if profile.tls_key \
            else profile.tls_cert
    client = DICOMwebClient(str(profile.dicomweb_url).rstrip("/"), session=session,
                            timeout=profile.timeout)
    # busy answers (429, 503...) are retried, briefly: a server that is down must say so
    # in about a second, not after dicomweb-client's default half minute of back-off
    client.set_http_retry_params(max_attempts=3, wait_exponential_multiplier=250)
    return client


# --------------------------------------------------------------------------- WADO-RS


def _take(received: Received, sop: str | None, ds: Dataset) -> None:
    """Hand the instance ``ds`` to ``received`` encoded, or the reason it cannot be."""
    try:
        data = _encode(ds)
    except Exception as exc:
        received(sop, None, f"cannot be encoded ({type(exc).__name__}: {exc})")
        return
    received(sop, data)


def _is_set(cancel: threading.Event | None) -> bool:
    return cancel is not None and cancel.is_set()


def _wado(profile: ServerProfile, study_uid: str, series_uid: str, todo: list[str],
          received: Received, workers: int, cancel: threading.Event | None, whole: bool
          ) -> None:
    """WADO-RS: the whole series in one streamed request when
    :func:`~._pacs_local.fetch_whole` says so, else only the missing instances (``todo``),
    ``workers`` at a time. A 404 leaves an instance missing (the caller counts it)."""
    client = dicomweb_client(profile)
    if whole:
        _wado_series(profile, client, study_uid, series_uid, received, cancel)
    else:
        _wado_instances(profile, client, study_uid, series_uid, todo, received, workers,
                        cancel)
    if _is_set(cancel):
        raise RetrieveCancelled(profile.label, "retrieve cancelled; complete instances kept")


def _wado_series(profile: ServerProfile, client: DICOMwebClient, study_uid: str,
                 series_uid: str, received: Received, cancel: threading.Event | None
                 ) -> None:
    """The whole series in one streamed request, each instance handed over as it comes."""
    try:
        for ds in client.iter_series(study_uid, series_uid, media_types=_AS_STORED):
            _take(received, str(ds.get("SOPInstanceUID", "")) or None, ds)
            if _is_set(cancel):
                break
    except Exception as exc:
        if _http_status(exc) != 404:
            raise _http_error(profile, exc, "WADO-RS") from None


def _wado_instances(profile: ServerProfile, client: DICOMwebClient, study_uid: str,
                    series_uid: str, todo: list[str], received: Received, workers: int,
                    cancel: threading.Event | None) -> None:
    """The instances ``todo``, one request each, ``workers`` at a time; the first error
    stops the rest and is raised."""
    errors: list[PacsError] = []

    def one(sop: str) -> None:
        if _is_set(cancel) or errors:
            return
        try:
            ds = client.retrieve_instance(study_uid, series_uid, sop, media_types=_AS_STORED)
        except Exception as exc:
            if _http_status(exc) != 404:  # gone: counted as missing
                errors.append(_http_error(profile, exc, "WADO-RS"))
            return
        _take(received, sop, ds)

    with ThreadPoolExecutor(max(1, int(workers))) as pool:
        list(pool.map(one, todo))
    if errors and not _is_set(cancel):
        raise errors[0]


# --------------------------------------------------------------------------- STOW-RS


def _stow(profile: ServerProfile, headers: Sequence[tuple[Source, Dataset]],
          result: SendResult, progress: Callable[[int, int], None] | None,
          cancel: threading.Event | None, batch: int) -> None:
    """STOW-RS the files of ``headers``, ``batch`` instances a request; every file's fate
    goes into ``result``."""
    client = dicomweb_client(profile)
    step = max(1, batch)
    for i in range(0, len(headers), step):
        _send_cancelled(profile, cancel, result)
        chunk, datasets = [], []
        for src, _ in headers[i:i + step]:
            try:
                datasets.append(_read_source(src))
                chunk.append(src)
            except Exception as exc:
                result.skipped.append((str(src), _reason(exc, str(exc))))
        if datasets:
            rsp = _store(profile, client, datasets, chunk, result)
            if rsp is not None:
                _tally(rsp, chunk, datasets, result)
        if progress is not None:
            progress(min(i + step, len(headers)), len(headers))


def _store(profile: ServerProfile, client: DICOMwebClient, datasets: list[Dataset],
           chunk: list[Source], result: SendResult) -> Dataset | None:
    """One STOW-RS request: the server's response data set, even on HTTP 400/409 (some
    instances refused), or None when the whole chunk failed (recorded in ``result``).
    Authentication failures and transport errors are raised: nothing else would pass."""
    import requests
    from pydicom import Dataset

    try:
        return client.store_instances(datasets)
    except Exception as exc:
        status = _http_status(exc)
        if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None \
                and status in (409, 400):
            try:
                return Dataset.from_json(exc.response.json())
            except Exception:
                pass
        err = _http_error(profile, exc, "STOW-RS")
        if status is None or status in (401, 403):
            raise err from None
        result.failed.extend((str(s), err.reason) for s in chunk)
        return None


def _tally(rsp: Dataset, chunk: list[Source], datasets: list[Dataset],
           result: SendResult) -> None:
    """Sort the instances of one STOW-RS request into sent and failed (with the server's
    failure reason) by the response's FailedSOPSequence."""
    failed = {str(it.get("ReferencedSOPInstanceUID", "")): it.get("FailureReason")
              for it in rsp.get("FailedSOPSequence", [])}
    for src, ds in zip(chunk, datasets, strict=True):
        sop = str(ds.SOPInstanceUID)
        if sop in failed:
            code = failed[sop]
            result.failed.append((str(src), "refused by the server" + (
                f" (failure reason 0x{int(code):04X})" if code is not None else "")))
        else:
            result.sent.append(sop)
