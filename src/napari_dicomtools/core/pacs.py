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

Every failure is a :class:`PacsError` (a :class:`DicomToolsError`) whose one line names the
server and the reason: server down, wrong credentials, AE title refused, series gone.
"""

from __future__ import annotations

import functools
import io
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields

from .errors import DicomToolsError

__all__ = ["METHODS", "PROTOCOLS", "SEND_METHODS", "Hit", "PacsError", "RetrieveCancelled",
           "RetrieveResult", "SendResult", "ServerProfile", "config_path", "default_cache",
           "dicomweb_client", "echo", "fetch_whole", "find", "get_profile", "is_complete",
           "list_instances", "load_profiles", "locate_series", "remove_profile", "retrieve",
           "save_profile", "send", "series_folder"]

METHODS = ("wado", "c-get", "c-move")
SEND_METHODS = ("stow", "c-store")
PROTOCOLS = ("dicomweb", "dimse")
COMPLETE_MARKER = ".complete"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
_STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
_STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"


class PacsError(DicomToolsError):
    """A PACS operation failed; ``str()`` is ``"<server>: <reason>"``."""


class RetrieveCancelled(PacsError):
    """The user cancelled a retrieve; the instances already cached stay (complete ones)."""


# --------------------------------------------------------------------------- profiles


@dataclass
class ServerProfile:
    """How to reach one PACS or DICOMweb archive.

    Parameters
    ----------
    name : str
        The profile's name (what the user picks).
    dicomweb_url : str, optional
        DICOMweb root (``https://host/dicom-web``) for QIDO-RS, WADO-RS and STOW-RS.
    host, port : str, int, optional
        DIMSE address of the server.
    called_aet : str
        The server's AE title.
    calling_aet : str
        Our AE title (the server must know it for C-FIND/C-GET/C-MOVE, and, for C-MOVE,
        map it to this machine and ``move_port``).
    move_port : int, optional
        Port of the local storage SCP that receives C-MOVE results.
    username, password : str, optional
        HTTP basic authentication (DICOMweb).
    token : str, optional
        HTTP bearer token (DICOMweb).
    password_env, token_env : str, optional
        Names of environment variables holding the password / token, so that no secret is
        written in the configuration file.
    ca_bundle : str, optional
        CA certificates (PEM) that verify the server, for HTTPS and DIMSE over TLS (default:
        the system's trusted CAs). A server that fails verification is refused, never
        retried in plain text.
    tls : bool
        DIMSE over TLS (DICOM PS3.15 Annex B; the server's certificate must name ``host``).
    tls_cert, tls_key : str, optional
        Our client certificate and its private key (PEM) for servers that require one
        (mutual TLS: DIMSE, HTTPS); for C-MOVE over TLS it is also what our storage SCP
        presents to the server.
    timeout : float
        Seconds to wait for a connection or an answer.
    """

    name: str
    dicomweb_url: str | None = None
    host: str | None = None
    port: int | None = None
    called_aet: str = "ANY-SCP"
    calling_aet: str = "DICOMTOOLS"
    move_port: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    password_env: str | None = None
    token_env: str | None = None
    ca_bundle: str | None = None
    tls: bool = False
    tls_cert: str | None = None
    tls_key: str | None = None
    timeout: float = 30.0

    def __post_init__(self):
        if not self.name or not str(self.name).strip():
            raise PacsError(None, "a server profile needs a name")
        if self.dicomweb_url is None and self.host is None:
            raise PacsError(self.name, "profile has neither a DICOMweb URL nor a DIMSE host")
        if self.dicomweb_url is not None and not re.match(r"^https?://", self.dicomweb_url):
            raise PacsError(self.name, f"DICOMweb URL must start with http:// or https:// "
                                       f"(got {self.dicomweb_url!r})")
        if self.host is not None:
            if self.port is None:
                raise PacsError(self.name, "a DIMSE host needs a port")
            self.port = int(self.port)
        for kw in ("called_aet", "calling_aet"):
            aet = getattr(self, kw)
            if not aet or len(aet) > 16 or not aet.isascii() or "\\" in aet:
                raise PacsError(self.name, f"{kw} {aet!r} is not an AE title "
                                           "(1-16 ASCII characters, no backslash)")
        if self.move_port is not None:
            self.move_port = int(self.move_port)
        if self.tls_key and not self.tls_cert:
            raise PacsError(self.name, "tls_key given without tls_cert")

    def ssl_context(self, server_side: bool = False):
        """The TLS context for this server: its CA bundle (else the system's CAs), our
        client certificate when set; ``server_side``: the context of our C-MOVE storage SCP
        (our certificate, the server's verified against the CA bundle)."""
        import ssl

        for what in ("ca_bundle", "tls_cert", "tls_key"):
            path = getattr(self, what)
            if path and not os.path.isfile(path):
                raise PacsError(self.label, f"{what} {path!r}: no such file")
        try:
            if server_side:
                if not self.tls_cert:
                    raise PacsError(self.label, "C-MOVE over TLS needs tls_cert/tls_key: the "
                                                "server connects back to our storage SCP, "
                                                "which must present a certificate")
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH,
                                                 cafile=self.ca_bundle)
                ctx.verify_mode = ssl.CERT_REQUIRED
            else:
                ctx = ssl.create_default_context(cafile=self.ca_bundle)
            if self.tls_cert:
                ctx.load_cert_chain(self.tls_cert, self.tls_key)
        except ssl.SSLError as exc:
            raise PacsError(self.label, f"TLS certificates unusable ({exc.reason or exc})"
                            ) from None
        return ctx

    # -- secrets ----------------------------------------------------------------
    def _secret(self, literal, env):
        if literal:
            return literal
        if env:
            value = os.environ.get(env)
            if not value:
                raise PacsError(self.label, f"environment variable {env} (named by the "
                                            "profile) is not set")
            return value
        return None

    @property
    def label(self) -> str:
        """What messages name the server by (never a secret)."""
        where = self.dicomweb_url or f"{self.called_aet}@{self.host}:{self.port}"
        if self.dicomweb_url and self.host:
            where += f", {self.called_aet}@{self.host}:{self.port}"
        return f"{self.name} ({where})"

    def to_dict(self, *, redact: bool = False) -> dict:
        """The profile as JSON-able dict; ``redact`` replaces secrets with ``"***"``."""
        d = {k: v for k, v in asdict(self).items() if v is not None}
        for k in ("password", "token"):
            if k in d and redact:
                d[k] = "***"
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ServerProfile:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise PacsError(d.get("name"), f"unknown profile fields: {', '.join(unknown)}")
        return cls(**d)


def _user_folder(xdg: str, linux: str, mac: str, win_env: str, win: str) -> str:
    """The platform's per-user folder for dicomtools (XDG on Linux)."""
    if sys.platform == "win32":
        base = os.environ.get(win_env) or os.path.expanduser(win)
    elif sys.platform == "darwin":
        base = os.path.expanduser(mac)
    else:
        base = os.environ.get(xdg) or os.path.expanduser(linux)
    return os.path.join(base, "dicomtools")


def config_path() -> str:
    """Where server profiles are stored: ``$DICOMTOOLS_PACS_CONFIG``, else the user's
    configuration folder (``~/.config/dicomtools/pacs.json`` on Linux, honouring
    ``XDG_CONFIG_HOME``; ``~/Library/Application Support/dicomtools`` on macOS;
    ``%APPDATA%\\dicomtools`` on Windows)."""
    if os.environ.get("DICOMTOOLS_PACS_CONFIG"):
        return os.environ["DICOMTOOLS_PACS_CONFIG"]
    return os.path.join(_user_folder("XDG_CONFIG_HOME", "~/.config",
                                     "~/Library/Application Support", "APPDATA",
                                     "~\\AppData\\Roaming"), "pacs.json")


def default_cache() -> str:
    """The retrieve cache: ``$DICOMTOOLS_PACS_CACHE``, else the user's cache folder
    (``~/.cache/dicomtools/pacs`` on Linux, honouring ``XDG_CACHE_HOME``)."""
    if os.environ.get("DICOMTOOLS_PACS_CACHE"):
        return os.environ["DICOMTOOLS_PACS_CACHE"]
    return os.path.join(_user_folder("XDG_CACHE_HOME", "~/.cache", "~/Library/Caches",
                                     "LOCALAPPDATA", "~\\AppData\\Local"), "pacs")


def load_profiles(path=None) -> dict[str, ServerProfile]:
    """All profiles of the configuration file (an empty dict when it does not exist)."""
    path = os.fspath(path or config_path())
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise PacsError(path, f"cannot read the PACS configuration ({exc})") from None
    servers = data.get("servers", {}) if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise PacsError(path, 'not a PACS configuration (expected {"servers": {...}})')
    out = {}
    for name, d in servers.items():
        if not isinstance(d, dict):
            raise PacsError(path, f"server {name!r}: expected an object")
        try:
            out[name] = ServerProfile.from_dict({**d, "name": name})
        except TypeError as exc:
            raise PacsError(path, f"server {name!r}: {exc}") from None
    return out


def get_profile(name: str, path=None) -> ServerProfile:
    """The profile called ``name``; the error lists the known ones."""
    profiles = load_profiles(path)
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none; add one with `dicomtools pacs add`"
        raise PacsError(os.fspath(path or config_path()),
                        f"no server profile {name!r} (known: {known})")
    return profiles[name]


def _write_config(profiles: dict[str, ServerProfile], path: str) -> None:
    from .safety import atomic_output

    data = {"servers": {n: {k: v for k, v in p.to_dict().items() if k != "name"}
                        for n, p in sorted(profiles.items())}}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_output(path, overwrite=True) as tmp:
        os.chmod(tmp, 0o600)  # it may hold a password
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")


def save_profile(profile: ServerProfile, path=None, *, overwrite: bool = False) -> str:
    """Add ``profile`` to the configuration file (mode 0600); returns the file's path."""
    path = os.fspath(path or config_path())
    profiles = load_profiles(path)
    if profile.name in profiles and not overwrite:
        raise PacsError(path, f"server profile {profile.name!r} exists; not overwriting "
                              "(use --force)")
    profiles[profile.name] = profile
    _write_config(profiles, path)
    return path


def remove_profile(name: str, path=None) -> None:
    """Delete the profile ``name`` from the configuration file."""
    path = os.fspath(path or config_path())
    profiles = load_profiles(path)
    if name not in profiles:
        raise PacsError(path, f"no server profile {name!r}")
    del profiles[name]
    _write_config(profiles, path)


# --------------------------------------------------------------------------- errors


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


def _need(profile: ServerProfile, protocol: str) -> None:
    if protocol == "dicomweb" and not profile.dicomweb_url:
        raise PacsError(profile.label, "profile has no DICOMweb URL")
    if protocol == "dimse" and not profile.host:
        raise PacsError(profile.label, "profile has no DIMSE host/port")


# --------------------------------------------------------------------------- DICOMweb


# QIDO matching characters sent as themselves: a server that decodes the query sees the same
# value either way, and one that does not (Orthanc's DICOMweb plugin 1.7 matches "Roe%2A"
# literally) still sees the wildcard or the name-component separator
_QUERY_LITERALS = (("%2A", "*"), ("%5E", "^"), ("%3F", "?"), ("%2C", ","))


@functools.cache
def _session_class():
    import requests

    class Session(requests.Session):
        def send(self, request, **kw):
            base, sep, query = (request.url or "").partition("?")
            if sep:
                for enc, lit in _QUERY_LITERALS:
                    query = query.replace(enc, lit).replace(enc.lower(), lit)
                request.url = base + sep + query
            if re.search(r"application/(dicom(?!\+)|octet-stream)", request.headers.get(
                    "Accept", "")):
                # whole instances: not gzipped on the fly (Orthanc spends ~70 ms compressing
                # a 512x512 CT slice that hardly shrinks; 3x slower per instance)
                request.headers["Accept-Encoding"] = "identity"
            return super().send(request, **kw)

        def merge_environment_settings(self, url, proxies, stream, verify, cert):
            # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace the session's own
            # CA bundle (psf/requests#3829): the profile's ca_bundle must win
            out = super().merge_environment_settings(url, proxies, stream, verify, cert)
            if isinstance(self.verify, str) and verify in (None, True):
                out["verify"] = self.verify
            return out

    return Session


def _session():
    return _session_class()()


def dicomweb_client(profile: ServerProfile):
    """A ``dicomweb_client.DICOMwebClient`` for ``profile`` (auth and CA bundle set)."""
    from dicomweb_client.api import DICOMwebClient

    _need(profile, "dicomweb")
    for what in ("ca_bundle", "tls_cert", "tls_key"):
        path = getattr(profile, what)
        if path and not os.path.isfile(path):
            raise PacsError(profile.label, f"{what} {path!r}: no such file")
    session = _session()
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
    client = DICOMwebClient(profile.dicomweb_url.rstrip("/"), session=session,
                            timeout=profile.timeout)
    # busy answers (429, 503...) are retried, briefly: a server that is down must say so
    # in about a second, not after dicomweb-client's default half minute of back-off
    client.set_http_retry_params(max_attempts=3, wait_exponential_multiplier=250)
    return client


# --------------------------------------------------------------------------- DIMSE


class _Dimse:
    """An association with the server, as a context manager that turns every failure into a
    one-line :class:`PacsError`."""

    def __init__(self, profile: ServerProfile, contexts, *, roles=(), handlers=()):
        self.profile = profile
        self.contexts = contexts
        self.roles = list(roles)
        self.handlers = list(handlers)
        self.assoc = None

    def __enter__(self):
        from pynetdicom import AE

        p = self.profile
        _need(p, "dimse")
        ae = AE(ae_title=p.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = p.timeout
        ae.connection_timeout = min(p.timeout, 10)
        for abstract, syntaxes in self.contexts:
            ae.add_requested_context(abstract, syntaxes)
        tls = (p.ssl_context(), p.host) if p.tls else None
        assoc = ae.associate(p.host, p.port, ae_title=p.called_aet, ext_neg=self.roles or None,
                             tls_args=tls, evt_handlers=self.handlers or None)
        if not assoc.is_established:
            raise PacsError(p.label, (tls and _tls_failure(p, tls[0])) or self._why(assoc))
        self.assoc = assoc
        return assoc

    def _why(self, assoc) -> str:
        p = self.profile
        prim = assoc.acceptor.primitive
        if not assoc.is_rejected:
            # pynetdicom races a server that rejects and hangs up at once: the socket reads
            # closed before the rejection is taken from the queue, and the association looks
            # like a failed connection; the rejection is still queued
            queued = getattr(getattr(assoc, "dul", None), "to_user_queue", None)
            for item in list(getattr(queued, "queue", ())):
                if getattr(item, "result", None) in (0x01, 0x02):
                    prim = item
        if assoc.is_rejected or getattr(prim, "result", None) in (0x01, 0x02):
            reason = getattr(prim, "reason_str", "") or "no reason given"
            diag = getattr(prim, "diagnostic", None)
            if diag == 7 or "called" in reason.lower():
                return (f"association rejected: called AE title {p.called_aet!r} not "
                        "recognised by the server")
            if diag == 3 or "calling" in reason.lower():
                return (f"association rejected: our AE title {p.calling_aet!r} is not "
                        "known to the server")
            return f"association rejected ({reason})"
        if assoc.is_aborted and assoc.acceptor.primitive is not None:
            return "association aborted by the server (no accepted presentation context?)"
        return "cannot connect (server down, wrong host/port, or TLS refused?)"

    def __exit__(self, *exc):
        if self.assoc is not None and self.assoc.is_established:
            self.assoc.release()
        return False


def _tls_failure(profile: ServerProfile, ctx) -> str | None:
    """Why a TLS handshake with the server fails (pynetdicom only logs it), or None when it
    succeeds or the server cannot be reached at all."""
    import socket
    import ssl

    try:
        with socket.create_connection((profile.host, profile.port),
                                      timeout=min(profile.timeout, 10)) as sock, \
                ctx.wrap_socket(sock, server_hostname=profile.host) as tls:
            tls.settimeout(1.0)
            try:  # TLS 1.3: a refused client certificate shows after the handshake
                tls.recv(1)
            except TimeoutError:
                pass
    except ssl.SSLCertVerificationError as exc:
        return (f"TLS: the server's certificate failed verification "
                f"({exc.verify_message or exc.reason}; check ca_bundle and that the "
                f"certificate names {profile.host!r})")
    except ssl.SSLError as exc:
        reason = exc.reason or type(exc).__name__
        if "CERTIFICATE_REQUIRED" in str(reason).upper() or "UNKNOWN_CA" in str(reason).upper():
            return (f"TLS: the server refused our client certificate ({reason}; check "
                    "tls_cert/tls_key)")
        return f"TLS handshake failed ({reason}; is the port a DICOM TLS port?)"
    except OSError:
        return None
    return None


def _no_answer(profile: ServerProfile, assoc, what: str, started: float | None) -> PacsError:
    """The error for a request that got no response: the server hung up early (typically:
    our AE title is not allowed this service) or the answer timed out."""
    import time

    early = started is not None and time.monotonic() - started < 0.9 * profile.timeout
    if assoc is not None and early:
        deadline = time.monotonic() + 1.0  # the abort reaches the association's flags late
        while assoc.is_established and not assoc.is_aborted and time.monotonic() < deadline:
            time.sleep(0.01)
        if assoc.is_aborted or not assoc.is_established:
            return PacsError(profile.label, f"{what}: the server aborted the association "
                                            f"(does it know our AE title "
                                            f"{profile.calling_aet!r} and allow it this "
                                            "request?)")
    return PacsError(profile.label, f"{what}: no answer within {profile.timeout:g} s "
                                    "(connection lost or server busy)")


def _check_status(profile: ServerProfile, status, what: str, assoc=None,
                  started: float | None = None) -> int:
    if status is None or "Status" not in status:
        raise _no_answer(profile, assoc, what, started)
    code = int(status.Status)
    if code in (0x0000, 0xFF00, 0xFF01) or 0xB000 <= code <= 0xBFFF:
        return code
    comment = str(status.get("ErrorComment", "") or "").strip()
    raise PacsError(profile.label, f"{what}: failed with status 0x{code:04X}"
                                   + (f" ({comment})" if comment else ""))


def echo(profile: ServerProfile, protocol: str = "dimse") -> float:
    """Check the server answers: C-ECHO (``"dimse"``) or a QIDO-RS study query limited to
    one result (``"dicomweb"``). Returns the round trip in seconds."""
    t0 = time.perf_counter()
    if protocol == "dicomweb":
        client = dicomweb_client(profile)
        try:
            client.search_for_studies(limit=1)
        except Exception as exc:
            raise _http_error(profile, exc, "echo") from None
    else:
        with _Dimse(profile, [("1.2.840.10008.1.1", None)]) as assoc:
            t = time.monotonic()
            _check_status(profile, assoc.send_c_echo(), "C-ECHO", assoc, t)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- queries


@dataclass
class Hit:
    """One study or series found on a server (either protocol)."""

    level: str  # "study" or "series"
    study_uid: str
    patient_name: str = ""
    patient_id: str = ""
    study_date: str = ""
    study_description: str = ""
    accession_number: str = ""
    modality: str = ""  # the series' modality, or the study's modalities joined by "\\"
    series_uid: str = ""
    series_number: str = ""
    series_description: str = ""
    count: int | None = None  # instances in the study / series, when the server says

    def row(self) -> dict:
        return asdict(self)


def _date_range(text) -> str:
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


def _filters(patient_id, patient_name, date, modality, description, level, study_uid):
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


def _text(ds, kw) -> str:
    v = ds.get(kw, "")
    if v is None:
        return ""
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return "\\".join(str(x) for x in v)
    return str(v)


def _hit(level: str, ds, study: Hit | None = None) -> Hit:
    n = ds.get("NumberOfStudyRelatedInstances" if level == "study"
               else "NumberOfSeriesRelatedInstances")
    try:
        count = int(n) if n not in (None, "") else None
    except (TypeError, ValueError):
        count = None
    base = asdict(study) if study is not None else {}
    base.update(level=level, study_uid=_text(ds, "StudyInstanceUID") or base.get(
        "study_uid", ""), count=count)
    for kw, attr in (("PatientName", "patient_name"), ("PatientID", "patient_id"),
                     ("StudyDate", "study_date"), ("StudyDescription", "study_description"),
                     ("AccessionNumber", "accession_number")):
        if kw in ds and _text(ds, kw):
            base[attr] = _text(ds, kw)
    if level == "study":
        base["modality"] = _text(ds, "ModalitiesInStudy")
    else:
        base.update(modality=_text(ds, "Modality"), series_uid=_text(ds, "SeriesInstanceUID"),
                    series_number=_text(ds, "SeriesNumber"),
                    series_description=_text(ds, "SeriesDescription"))
    return Hit(**base)


def _qido(profile, level, filters, limit):
    from pydicom import Dataset

    client = dicomweb_client(profile)
    keys = list(_STUDY_KEYS) + (list(_SERIES_KEYS) if level == "series" else [])
    try:
        if level == "study":
            rows = client.search_for_studies(search_filters=filters, fields=keys, limit=limit,
                                             get_remaining=limit is None)
        else:
            rows = client.search_for_series(search_filters=filters, fields=keys, limit=limit,
                                            get_remaining=limit is None)
    except Exception as exc:
        raise _http_error(profile, exc, "QIDO-RS search") from None
    return [_hit(level, Dataset.from_json(r)) for r in rows]


def _cfind(assoc, profile, level: str, filters: dict, keys) -> list:
    from pydicom import Dataset

    q = Dataset()
    q.QueryRetrieveLevel = {"study": "STUDY", "series": "SERIES", "image": "IMAGE"}[level]
    for kw in keys:
        setattr(q, kw, None)  # a return key: empty, whatever its VR
    for kw, v in filters.items():
        setattr(q, kw, v)
    out = []
    t = time.monotonic()
    for status, ident in assoc.send_c_find(q, _STUDY_ROOT_FIND):
        code = _check_status(profile, status, "C-FIND", assoc, t)
        if code in (0xFF00, 0xFF01) and ident is not None:
            out.append(ident)
    return out


def find(profile: ServerProfile, *, level: str = "study", protocol: str | None = None,
         patient_id: str | None = None, patient_name: str | None = None, date=None,
         modality: str | None = None, description: str | None = None,
         study_uid: str | None = None, limit: int | None = None) -> list[Hit]:
    """Search a server for studies or series.

    Parameters
    ----------
    profile : ServerProfile
    level : {"study", "series"}
    protocol : {"dicomweb", "dimse"}, optional
        QIDO-RS or C-FIND; default: DICOMweb when the profile has a URL.
    patient_id, patient_name, description : str, optional
        Matched by the server (``*`` and ``?`` wildcards, as DICOM defines them).
    date : str, optional
        Study date or range: ``20200101``, ``20200101-20201231``, ``2020-01-01..2020-12-31``.
    modality : str, optional
        ``CT``, ``MR``...: the series' Modality (series level) or ModalitiesInStudy.
    study_uid : str, optional
        Restrict to one study (series of a study).
    limit : int, optional
        At most this many results (DICOMweb; C-FIND results are cut after the fact).

    Returns
    -------
    list of Hit
        Sorted by patient, study date, study and series number.
    """
    if level not in ("study", "series"):
        raise PacsError(None, f"level {level!r}: use 'study' or 'series'")
    protocol = protocol or ("dicomweb" if profile.dicomweb_url else "dimse")
    if protocol not in PROTOCOLS:
        raise PacsError(None, f"protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    _need(profile, protocol)
    if protocol == "dicomweb":
        hits = _qido(profile, level, _filters(patient_id, patient_name, date, modality,
                                              description, level, study_uid), limit)
    else:
        # strict hierarchical C-FIND: studies first, then the series of each
        study_f = _filters(patient_id, patient_name, date, None, None, "study", study_uid)
        if level == "study":
            study_f = _filters(patient_id, patient_name, date, modality, description,
                               "study", study_uid)
        with _Dimse(profile, [(_STUDY_ROOT_FIND, None)]) as assoc:
            studies = [_hit("study", d) for d in _cfind(assoc, profile, "study", study_f,
                                                        _STUDY_KEYS)]
            if level == "study":
                hits = studies
            else:
                hits = []
                series_f = _filters(None, None, None, modality, description, "series", None)
                for st in studies:
                    rows = _cfind(assoc, profile, "series",
                                  {**series_f, "StudyInstanceUID": st.study_uid}, _SERIES_KEYS)
                    hits.extend(_hit("series", d, st) for d in rows)
    hits.sort(key=lambda h: (h.patient_name, h.patient_id, h.study_date, h.study_uid,
                             _num(h.series_number), h.series_uid))
    return hits[:limit] if limit else hits


def _num(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("inf")


def locate_series(profile: ServerProfile, series_uid: str,
                  protocol: str | None = None) -> Hit:
    """The series ``series_uid`` as the server describes it (its study UID, count...)."""
    protocol = protocol or ("dicomweb" if profile.dicomweb_url else "dimse")
    _need(profile, protocol)
    series_uid = _check_uid(series_uid, "SeriesInstanceUID", profile.label)
    if protocol == "dicomweb":
        hits = _qido(profile, "series", {"SeriesInstanceUID": series_uid}, None)
    else:
        with _Dimse(profile, [(_STUDY_ROOT_FIND, None)]) as assoc:
            rows = _cfind(assoc, profile, "series", {"SeriesInstanceUID": series_uid},
                          _SERIES_KEYS + _STUDY_KEYS[:2])
        hits = [_hit("series", d) for d in rows]
    hits = [h for h in hits if h.series_uid == series_uid]
    if not hits:
        raise PacsError(profile.label, f"no series {series_uid} on the server")
    return hits[0]


def list_instances(profile: ServerProfile, study_uid: str, series_uid: str,
                   protocol: str | None = None) -> dict[str, str]:
    """SOP Instance UID -> SOP Class UID of every instance of a series, as the server lists
    them (QIDO-RS or C-FIND at IMAGE level). Raises :class:`PacsError` when the series has
    none (deleted, or never there)."""
    protocol = protocol or ("dicomweb" if profile.dicomweb_url else "dimse")
    _need(profile, protocol)
    if protocol == "dicomweb":
        from pydicom import Dataset

        client = dicomweb_client(profile)
        try:
            rows = client.search_for_instances(study_uid, series_uid,
                                               fields=["SOPClassUID", "SOPInstanceUID"],
                                               get_remaining=True)
        except Exception as exc:
            raise _http_error(profile, exc, f"series {series_uid}") from None
        found = [Dataset.from_json(r) for r in rows]
    else:
        with _Dimse(profile, [(_STUDY_ROOT_FIND, None)]) as assoc:
            found = _cfind(assoc, profile, "image", {"StudyInstanceUID": study_uid,
                                                     "SeriesInstanceUID": series_uid},
                           ("SOPInstanceUID", "SOPClassUID"))
    out = {}
    for ds in found:
        sop = _text(ds, "SOPInstanceUID")
        if sop:
            out[sop] = _text(ds, "SOPClassUID")
    if not out:
        raise PacsError(profile.label, f"series {series_uid} has no instances on the server "
                                       "(deleted since the search?)")
    return out


# --------------------------------------------------------------------------- cache


@dataclass
class RetrieveResult:
    """What :func:`retrieve` did: the cache folder and the instance counts."""

    folder: str
    expected: int
    fetched: int = 0  # transferred now
    reused: int = 0  # already cached (a resumed retrieve)
    missing: list = field(default_factory=list)  # expected SOP UIDs not received
    rejected: list = field(default_factory=list)  # (SOP UID or "?", reason)

    @property
    def complete(self) -> bool:
        return not self.missing and not self.rejected


def _check_uid(uid: str, what: str, where) -> str:
    uid = str(uid).strip().rstrip("\x00")
    if not _UID.match(uid) or len(uid) > 64:
        raise PacsError(where, f"{what} {uid[:80]!r} is not a valid UID")
    return uid


def series_folder(cache, study_uid: str, series_uid: str) -> str:
    """``<cache>/<study UID>/<series UID>`` (UIDs checked, so no path can escape)."""
    return os.path.join(os.fspath(cache), _check_uid(study_uid, "StudyInstanceUID", cache),
                        _check_uid(series_uid, "SeriesInstanceUID", cache))


def is_complete(folder) -> bool:
    """True when ``folder`` holds a retrieve verified against the server's instance list."""
    return os.path.isfile(os.path.join(os.fspath(folder), COMPLETE_MARKER))


def _pixel_bytes_expected(ds) -> int | None:
    if "PixelData" not in ds or ds.file_meta.get("TransferSyntaxUID") is None:
        return None
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        return None
    try:
        n = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
             * int(ds.get("NumberOfFrames", 1) or 1))
        bits = int(ds.BitsAllocated)
    except (AttributeError, TypeError, ValueError):
        return None
    return (n * bits + 7) // 8


def _verify(data: bytes, sop: str, study_uid: str, series_uid: str) -> str | None:
    """Why the encoded instance ``data`` is not a whole copy of ``sop`` of the series, or
    None when it is."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        got = str(ds.get("SOPInstanceUID", ""))
        if got != sop:
            return f"carries SOP Instance UID {got[:70]!r}, not the one asked for"
        if str(ds.get("SeriesInstanceUID", "")) != series_uid or str(
                ds.get("StudyInstanceUID", "")) != study_uid:
            return "belongs to another study or series"
        need = _pixel_bytes_expected(ds)
        if need is not None and len(ds.PixelData) < need:
            return f"pixel data truncated ({len(ds.PixelData)} of {need} bytes)"
    except Exception as exc:  # pydicom raises many kinds on corrupt input
        return f"cannot be parsed ({type(exc).__name__}: {str(exc)[:120]})"
    return None


class _Cache:
    """One series folder of the cache: which instances are there, and atomic publishing."""

    def __init__(self, folder: str, study_uid: str, series_uid: str):
        from .safety import clean_stale_partials

        self.folder = folder
        self.study_uid, self.series_uid = study_uid, series_uid
        self.lock = threading.Lock()
        os.makedirs(folder, exist_ok=True)
        clean_stale_partials(folder, older_than=0)

    def path(self, sop: str) -> str:
        return os.path.join(self.folder, sop + ".dcm")

    def cached(self, expected: Iterable[str]) -> set[str]:
        """The expected instances already here and sound (header parses, right UID)."""
        import pydicom

        have = set()
        for sop in expected:
            p = self.path(sop)
            if not os.path.isfile(p):
                continue
            try:
                ds = pydicom.dcmread(p, stop_before_pixels=True,
                                     specific_tags=["SOPInstanceUID"])
                ok = str(ds.get("SOPInstanceUID", "")) == sop
            except Exception:
                ok = False
            if ok:
                have.add(sop)
            else:  # damaged behind our back: fetch it again
                os.unlink(p)
        return have

    def publish(self, sop: str, data: bytes) -> str | None:
        """Check ``data`` and write it as ``<sop>.dcm`` atomically; the reason on refusal."""
        from .safety import atomic_output

        why = _verify(data, sop, self.study_uid, self.series_uid)
        if why:
            return why
        try:
            with atomic_output(self.path(sop), overwrite=True) as tmp, open(tmp, "wb") as f:
                f.write(data)
        except DicomToolsError as exc:
            return exc.reason
        return None


def _encode(ds) -> bytes:
    import pydicom

    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _storage_contexts(sop_classes: Iterable[str]):
    from pydicom.uid import AllTransferSyntaxes
    from pynetdicom import build_role
    from pynetdicom.presentation import build_context

    classes = sorted(set(sop_classes))[:127]
    contexts = [build_context(c, list(AllTransferSyntaxes)) for c in classes]
    return contexts, [build_role(c, scp_role=True) for c in classes]


#: Resume rule (see :func:`fetch_whole`): the fraction of a series that must be missing
#: before it is asked for whole rather than instance by instance (None: never). Measured by
#: ``benchmarks/bench_pacs.py --resume`` on Orthanc 1.10 (DICOMweb plugin 1.7), 300 CT
#: slices of 512x512, 4 WADO-RS workers: the missing instances alone take ~2.5 s + 75 ms per
#: instance, the whole series ~9-10 s, so they break even near a third of the series. A
#: UID-list C-GET of the missing instances beat the whole series at every fraction (5-90%).
WHOLE_SERIES_ABOVE = {"wado": 1 / 3, "c-get": None, "c-move": None}


def fetch_whole(method: str, missing: int, total: int, workers: int = 4) -> bool:
    """Whether a retrieve missing ``missing`` of ``total`` instances asks for the whole
    series (and drops the cached ones as they come again) rather than for the missing ones.

    C-GET and C-MOVE ask for exactly the missing instances in one request (IMAGE level, a
    list of SOP Instance UIDs): never slower than the whole series, so never whole. WADO-RS
    has no list request: each instance is its own HTTP request, ``workers`` at a time, and
    the whole series is one streamed request; the series is asked whole when more than
    :data:`WHOLE_SERIES_ABOVE` ``["wado"]`` of it is missing.
    """
    above = WHOLE_SERIES_ABOVE.get(method)
    if above is None or missing == 0:
        return False
    return missing > above * total


def retrieve(profile: ServerProfile, study_uid: str, series_uid: str, *,
             method: str | None = None, cache=None, workers: int = 4,
             progress: Callable[[int, int], None] | None = None,
             cancel: threading.Event | None = None,
             query_protocol: str | None = None) -> RetrieveResult:
    """Copy one series from the server into the cache; fetch only what is not there yet.

    Parameters
    ----------
    profile : ServerProfile
    study_uid, series_uid : str
    method : {"wado", "c-get", "c-move"}, optional
        WADO-RS (default when the profile has a DICOMweb URL), C-GET, or C-MOVE to a
        storage SCP this function runs on ``profile.move_port`` for the transfer.
    cache : path, optional
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
        ``.folder`` reads with ``scan``/``read_volume``. Raises :class:`PacsError` when
        instances are missing or were refused after the transfer (the complete ones stay, a
        new call fetches the rest).
    """
    method = method or ("wado" if profile.dicomweb_url else "c-get")
    if method not in METHODS:
        raise PacsError(None, f"method {method!r}: use one of {', '.join(METHODS)}")
    protocol = "dicomweb" if method == "wado" else "dimse"
    _need(profile, protocol)
    folder = series_folder(cache or default_cache(), study_uid, series_uid)
    marker = os.path.join(folder, COMPLETE_MARKER)
    expected = list_instances(profile, study_uid, series_uid, query_protocol or protocol)
    for sop in expected:
        _check_uid(sop, "SOPInstanceUID", profile.label)
    store = _Cache(folder, study_uid, series_uid)
    if os.path.exists(marker):
        os.unlink(marker)  # re-verified below
    have = store.cached(expected)
    todo = [s for s in expected if s not in have]
    result = RetrieveResult(folder, len(expected), reused=len(have))
    state = {"done": len(have)}
    lock = threading.Lock()

    def received(sop: str | None, data: bytes | None, why: str | None = None) -> None:
        if sop in have:
            return  # sent again by a whole-series transfer: the cached copy stays
        if why is None and sop not in expected:
            why = "not an instance of the series asked for"
        if why is None:
            why = store.publish(sop, data)
        with lock:
            if why:
                result.rejected.append((sop or "?", why))
            else:
                result.fetched += 1
            state["done"] += 1
            if progress is not None:
                progress(min(state["done"], len(expected)), len(expected))

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
                            {expected[s] for s in todo}, received, cancel,
                            whole=whole)
    now = store.cached(expected)
    result.missing = sorted(s for s in expected if s not in now)
    rejected_sops = {s for s, _ in result.rejected}
    result.missing = [s for s in result.missing if s not in rejected_sops]
    if result.complete:
        with open(marker, "w") as f:
            f.write("\n".join(sorted(expected)) + "\n")
        return result
    parts = []
    if result.missing:
        parts.append(f"{len(result.missing)} of {len(expected)} instances not received")
    if result.rejected:
        sop, why = result.rejected[0]
        parts.append(f"{len(result.rejected)} refused (first: {sop}: {why})")
    raise PacsError(profile.label, f"series {series_uid}: " + "; ".join(parts)
                    + f"; {len(now)} complete instances kept in {folder}; run again to "
                      "resume")


def _wado(profile, study_uid, series_uid, todo, received, workers, cancel, whole):
    """WADO-RS: the whole series in one streamed request when :func:`fetch_whole` says so,
    else only the missing instances, ``workers`` at a time."""
    import requests

    client = dicomweb_client(profile)
    media = (("application/dicom", "*"),)  # as stored: no transcoding, lossless kept

    def cancelled():
        return cancel is not None and cancel.is_set()

    def take(sop, ds):
        try:
            data = _encode(ds)
        except Exception as exc:
            received(sop, None, f"cannot be encoded ({type(exc).__name__}: {exc})")
            return
        received(sop, data)

    if whole:
        try:
            for ds in client.iter_series(study_uid, series_uid, media_types=media):
                take(str(ds.get("SOPInstanceUID", "")) or None, ds)
                if cancelled():
                    break
        except Exception as exc:
            if not (isinstance(exc, requests.exceptions.HTTPError) and
                    exc.response is not None and exc.response.status_code == 404):
                raise _http_error(profile, exc, "WADO-RS") from None
        if cancelled():
            raise RetrieveCancelled(profile.label, "retrieve cancelled; complete instances "
                                                   "kept")
        return
    state = {"error": None}

    def one(sop):
        if cancelled() or state["error"] is not None:
            return
        try:
            ds = client.retrieve_instance(study_uid, series_uid, sop, media_types=media)
        except Exception as exc:
            if isinstance(exc, requests.exceptions.HTTPError) and \
                    exc.response is not None and exc.response.status_code == 404:
                return  # gone: counted as missing
            state["error"] = state["error"] or _http_error(profile, exc, "WADO-RS")
            return
        take(sop, ds)

    with ThreadPoolExecutor(max(1, int(workers))) as pool:
        list(pool.map(one, todo))
    if cancelled():
        raise RetrieveCancelled(profile.label, "retrieve cancelled; complete instances kept")
    if state["error"] is not None:
        raise state["error"]


def _dimse_retrieve(profile, method, study_uid, series_uid, todo, sop_classes, received,
                    cancel, whole):
    from pydicom import Dataset
    from pynetdicom import evt

    def on_store(event):
        sop = str(event.request.AffectedSOPInstanceUID)
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception as exc:
            received(sop, None, f"cannot be read ({exc})")
            return 0xA700
        received(sop, data)
        return 0x0000

    q = Dataset()
    q.StudyInstanceUID = study_uid
    q.SeriesInstanceUID = series_uid
    if whole:
        q.QueryRetrieveLevel = "SERIES"
    else:  # resuming: ask only for what is missing (UID list matching)
        q.QueryRetrieveLevel = "IMAGE"
        q.SOPInstanceUID = list(todo) if len(todo) > 1 else todo[0]
    contexts, roles = _storage_contexts(sop_classes)
    handlers = [(evt.EVT_C_STORE, on_store)]
    if method == "c-get":
        cx = [(_STUDY_ROOT_GET, None)] + [(c.abstract_syntax, c.transfer_syntax)
                                          for c in contexts]
        with _Dimse(profile, cx, roles=roles, handlers=handlers) as assoc:
            _drain(profile, assoc, assoc.send_c_get(q, _STUDY_ROOT_GET), cancel, "C-GET")
        return
    if profile.move_port is None:
        raise PacsError(profile.label, "C-MOVE needs move_port (the port of our storage "
                                       "SCP, as the server knows it for our AE title)")
    from pynetdicom import AE

    with _Dimse(profile, [(_STUDY_ROOT_MOVE, None)]) as assoc:
        bind = assoc.dul.socket.socket.getsockname()[0]  # the interface reaching the server
        scp = AE(ae_title=profile.calling_aet)
        scp.acse_timeout = scp.dimse_timeout = scp.network_timeout = profile.timeout
        for c in contexts:
            scp.add_supported_context(c.abstract_syntax, c.transfer_syntax)
        ssl_ctx = profile.ssl_context(server_side=True) if profile.tls else None
        try:
            server = scp.start_server((bind, profile.move_port), block=False,
                                      evt_handlers=handlers, ssl_context=ssl_ctx)
        except OSError as exc:
            raise PacsError(profile.label, f"cannot listen on {bind}:{profile.move_port} "
                                           f"for C-MOVE ({exc.strerror or exc})") from None
        try:
            _drain(profile, assoc, assoc.send_c_move(q, profile.calling_aet, _STUDY_ROOT_MOVE),
                   cancel, "C-MOVE")
        finally:
            server.shutdown()


def _drain(profile, assoc, responses, cancel, what):
    t = time.monotonic()
    for status, _ident in responses:
        if cancel is not None and cancel.is_set():
            assoc.abort()
            raise RetrieveCancelled(profile.label, "retrieve cancelled; complete instances "
                                                   "kept")
        if status is None or "Status" not in status:
            raise _no_answer(profile, assoc, what, t)
        t = time.monotonic()
        code = int(status.Status)
        if code in (0xFF00, 0x0000) or 0xB000 <= code <= 0xBFFF:
            continue  # pending / done / done with failures (counted by the verification)
        if code == 0xFE00:
            raise RetrieveCancelled(profile.label, f"{what} cancelled by the server")
        comment = str(status.get("ErrorComment", "") or "").strip()
        if code == 0xA801:
            raise PacsError(profile.label, f"{what}: the server does not know move "
                                           f"destination {profile.calling_aet!r}")
        raise PacsError(profile.label, f"{what}: failed with status 0x{code:04X}"
                        + (f" ({comment})" if comment else ""))


# --------------------------------------------------------------------------- sending


@dataclass
class SendResult:
    """What :func:`send` did: instances stored, failed (with the server's reason) and files
    skipped (not DICOM, unreadable)."""

    sent: list = field(default_factory=list)  # SOP Instance UIDs
    failed: list = field(default_factory=list)  # (file, reason)
    skipped: list = field(default_factory=list)  # (file, reason)


def _sources(paths):
    from .sources import Source, iter_sources

    out, skipped = [], []
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for p in paths:
        p = os.fspath(p)
        if "::" in p and not os.path.exists(p):  # a zip member, as scan names it
            out.append(Source.from_string(p))
            continue
        srcs, sk = iter_sources(p)
        out.extend(srcs)
        skipped.extend((s.path, s.reason) for s in sk)
    return out, skipped


def _read_source(src, header_only=False):
    from .headers import safe_dcmread

    with src.open() as fp:
        ds = safe_dcmread(fp, str(src), stop_before_pixels=header_only)
    if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
        raise DicomToolsError(str(src), "no SOP Class/Instance UID: not a storable instance")
    if header_only:
        return ds
    if not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
        raise DicomToolsError(str(src), "no transfer syntax (file meta missing)")
    return ds


def send(profile: ServerProfile, paths, *, method: str | None = None,
         progress: Callable[[int, int], None] | None = None,
         cancel: threading.Event | None = None, batch: int = 16) -> SendResult:
    """Upload DICOM files (files, folders, zips) by STOW-RS or C-STORE.

    Every instance's fate is reported: stored (``sent``), refused by the server
    (``failed``, with its reason) or not sent because the file is not storable DICOM
    (``skipped``). Nothing is dropped silently. Source files are only read.
    """
    method = method or ("stow" if profile.dicomweb_url else "c-store")
    if method not in SEND_METHODS:
        raise PacsError(None, f"method {method!r}: use one of {', '.join(SEND_METHODS)}")
    _need(profile, "dicomweb" if method == "stow" else "dimse")
    sources, skipped = _sources(paths)
    result = SendResult(skipped=skipped)
    headers = []
    for src in sources:
        try:
            headers.append((src, _read_source(src, header_only=True)))
        except Exception as exc:
            result.skipped.append((str(src), getattr(exc, "reason", None) or
                                   f"not DICOM ({type(exc).__name__})"))
    total = len(headers)
    if progress is not None:
        progress(0, total)
    if not headers:
        return result
    if method == "stow":
        _stow(profile, headers, result, progress, cancel, batch)
    else:
        _cstore(profile, headers, result, progress, cancel)
    return result


def _cancelled(profile, cancel, result):
    if cancel is not None and cancel.is_set():
        raise PacsError(profile.label, f"send cancelled after {len(result.sent)} instances")


def _stow(profile, headers, result, progress, cancel, batch):
    from pydicom import Dataset

    client = dicomweb_client(profile)
    done = 0
    for i in range(0, len(headers), max(1, batch)):
        _cancelled(profile, cancel, result)
        chunk, datasets = [], []
        for src, _ in headers[i:i + batch]:
            try:
                datasets.append(_read_source(src))
                chunk.append(src)
            except Exception as exc:
                result.skipped.append((str(src), getattr(exc, "reason", str(exc))))
        if datasets:
            try:
                rsp = client.store_instances(datasets)
            except Exception as exc:
                import requests

                rsp = None
                if isinstance(exc, requests.exceptions.HTTPError) and \
                        exc.response is not None and exc.response.status_code in (409, 400):
                    try:
                        rsp = Dataset.from_json(exc.response.json())
                    except Exception:
                        rsp = None
                if rsp is None:
                    err = _http_error(profile, exc, "STOW-RS")
                    if isinstance(exc, requests.exceptions.HTTPError) and \
                            exc.response is not None and exc.response.status_code not in (
                                401, 403):
                        result.failed.extend((str(s), err.reason) for s in chunk)
                    else:
                        raise err from None
            if rsp is not None:
                failed = {str(it.get("ReferencedSOPInstanceUID", "")): it.get(
                    "FailureReason") for it in rsp.get("FailedSOPSequence", [])}
                for src, ds in zip(chunk, datasets, strict=True):
                    sop = str(ds.SOPInstanceUID)
                    if sop in failed:
                        code = failed[sop]
                        result.failed.append((str(src), "refused by the server" + (
                            f" (failure reason 0x{int(code):04X})" if code is not None else "")))
                    else:
                        result.sent.append(sop)
        done += len(headers[i:i + batch])
        if progress is not None:
            progress(done, len(headers))


def _cstore(profile, headers, result, progress, cancel):
    pairs = {}
    for _src, ds in headers:
        ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if getattr(
            ds, "file_meta", None) else ""
        pairs.setdefault(str(ds.SOPClassUID), set()).add(ts or "1.2.840.10008.1.2")
    if len(pairs) > 127:
        raise PacsError(profile.label, f"{len(pairs)} SOP classes in one send; at most 127 "
                                       "fit in one association: send in parts")
    contexts = [(cls, sorted(ts | {"1.2.840.10008.1.2.1", "1.2.840.10008.1.2"}))
                for cls, ts in pairs.items()]
    with _Dimse(profile, contexts) as assoc:
        for done, (src, _) in enumerate(headers, 1):
            _cancelled(profile, cancel, result)
            try:
                ds = _read_source(src)
            except Exception as exc:
                result.skipped.append((str(src), getattr(exc, "reason", str(exc))))
                continue
            try:
                status = assoc.send_c_store(ds)
            except ValueError as exc:  # no accepted context for this class/syntax
                result.failed.append((str(src), f"not accepted by the server ({exc})"))
                continue
            if status is None or "Status" not in status:
                if not assoc.is_established:
                    raise PacsError(profile.label, f"C-STORE: connection lost after "
                                                   f"{len(result.sent)} instances")
                result.failed.append((str(src), "no answer (timed out)"))
                continue
            code = int(status.Status)
            if code == 0x0000 or 0xB000 <= code <= 0xBFFF:
                result.sent.append(str(ds.SOPInstanceUID))
            else:
                comment = str(status.get("ErrorComment", "") or "").strip()
                result.failed.append((str(src), f"refused with status 0x{code:04X}"
                                      + (f" ({comment})" if comment else "")))
            if progress is not None:
                progress(done, len(headers))
