"""PACS server profiles and their configuration file; the PACS error types.

Private: :mod:`napari_dicomtools.core.pacs` re-exports the public names. A
:class:`ServerProfile` says how to reach one server (DICOMweb URL and/or DIMSE address, AE
titles, HTTP basic or bearer authentication, TLS); profiles live in a JSON file written with
mode 0600 (:func:`config_path`). Secrets never appear in ``repr``, messages or outputs.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import DicomToolsError

if TYPE_CHECKING:
    import ssl

__all__ = ["PacsError", "RetrieveCancelled", "ServerProfile", "config_path", "default_cache",
           "get_profile", "load_profiles", "remove_profile", "save_profile"]

#: a profile as the configuration file stores it (JSON values)
ProfileDict = dict[str, str | int | float | bool]
_T = TypeVar("_T", bound=type)


def _public(cls: _T) -> _T:
    """Name ``cls`` by the module users import it from: reprs, tracebacks, pickles and the
    API reference say ``napari_dicomtools.core.pacs.X``, not this private module."""
    cls.__module__ = "napari_dicomtools.core.pacs"
    return cls


@_public

class PacsError(DicomToolsError):
    """A PACS operation failed; ``str()`` is ``"<server>: <reason>"``.

    Parameters
    ----------
    path : str or None
        What the message names first: the server's :attr:`ServerProfile.label`, the
        configuration file, or None for an argument error.
    reason : str
        One line saying what went wrong (never a secret).
    """


@_public
class RetrieveCancelled(PacsError):
    """The user cancelled a retrieve; the instances already cached stay (complete ones).

    Parameters
    ----------
    path : str or None
        The server's label.
    reason : str
        What was cancelled.
    """


@_public
@dataclass
class ServerProfile:
    """How to reach one PACS or DICOMweb archive.

    Parameters
    ----------
    name : str
        The profile's name (what the user picks).
    dicomweb_url : str, optional
        DICOMweb root (``https://host/dicom-web``) for QIDO-RS, WADO-RS and STOW-RS.
    host : str, optional
        DIMSE address of the server.
    port : int, optional
        DIMSE port of the server (required with ``host``).
    called_aet : str
        The server's AE title.
    calling_aet : str
        Our AE title (the server must know it for C-FIND/C-GET/C-MOVE, and, for C-MOVE,
        map it to this machine and ``move_port``).
    move_port : int, optional
        Port of the local storage SCP that receives C-MOVE results.
    username : str, optional
        HTTP basic authentication user (DICOMweb).
    password : str, optional
        HTTP basic authentication password (never shown in ``repr`` or messages).
    token : str, optional
        HTTP bearer token (DICOMweb; never shown).
    password_env : str, optional
        Name of an environment variable holding the password, so that no secret is
        written in the configuration file.
    token_env : str, optional
        Name of an environment variable holding the bearer token.
    ca_bundle : str, optional
        CA certificates (PEM) that verify the server, for HTTPS and DIMSE over TLS (default:
        the system's trusted CAs). A server that fails verification is refused, never
        retried in plain text.
    tls : bool
        DIMSE over TLS (DICOM PS3.15 Annex B; the server's certificate must name ``host``).
    tls_cert : str, optional
        Our client certificate (PEM) for servers that require one (mutual TLS: DIMSE,
        HTTPS); for C-MOVE over TLS it is also what our storage SCP presents to the server.
    tls_key : str, optional
        The private key (PEM) of ``tls_cert`` when it is not in the same file.
    timeout : float
        Seconds to wait for a connection or an answer.

    Raises
    ------
    PacsError
        The profile is inconsistent: no name, neither a DICOMweb URL nor a host, a host
        without a port, an URL that is not HTTP(S), an AE title that is not one, a key
        without its certificate.

    Examples
    --------
    >>> p = ServerProfile("hospital", dicomweb_url="https://pacs.example/dicom-web",
    ...                   username="bob", password="hunter2")
    >>> p.label
    'hospital (https://pacs.example/dicom-web)'
    >>> "hunter2" in repr(p), p.to_dict(redact=True)["password"]
    (False, '***')
    >>> ServerProfile("pacs", host="10.0.0.5", port=104, called_aet="ORTHANC").label
    'pacs (ORTHANC@10.0.0.5:104)'
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

    def __post_init__(self) -> None:
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

    def _check_files(self) -> None:
        """Raise a :class:`PacsError` naming the first certificate file that is missing."""
        for what in ("ca_bundle", "tls_cert", "tls_key"):
            path = getattr(self, what)
            if path and not os.path.isfile(path):
                raise PacsError(self.label, f"{what} {path!r}: no such file")

    def ssl_context(self, server_side: bool = False) -> ssl.SSLContext:
        """The TLS context for this server: its CA bundle (else the system's CAs), our
        client certificate when set; ``server_side``: the context of our C-MOVE storage SCP
        (our certificate, the server's verified against the CA bundle)."""
        import ssl

        self._check_files()
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

    def _secret(self, literal: str | None, env: str | None) -> str | None:
        """A secret given literally, else read from the environment variable ``env``."""
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

    def to_dict(self, *, redact: bool = False) -> ProfileDict:
        """The profile as a JSON-able dict (unset fields left out); ``redact`` replaces
        secrets with ``"***"``."""
        d: ProfileDict = {k: v for k, v in asdict(self).items() if v is not None}
        for k in ("password", "token"):
            if k in d and redact:
                d[k] = "***"
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ServerProfile:
        """The profile of a :meth:`to_dict` dict; unknown fields are a :class:`PacsError`."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise PacsError(d.get("name"), f"unknown profile fields: {', '.join(unknown)}")
        return cls(**d)


def _need(profile: ServerProfile, protocol: str) -> None:
    """Raise unless ``profile`` can speak ``protocol`` (``"dicomweb"`` or ``"dimse"``)."""
    if protocol == "dicomweb" and not profile.dicomweb_url:
        raise PacsError(profile.label, "profile has no DICOMweb URL")
    if protocol == "dimse" and not profile.host:
        raise PacsError(profile.label, "profile has no DIMSE host/port")


# --------------------------------------------------------------------------- user folders


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
    """Where server profiles are stored.

    ``$DICOMTOOLS_PACS_CONFIG``, else the user's configuration folder
    (``~/.config/dicomtools/pacs.json`` on Linux, honouring ``XDG_CONFIG_HOME``;
    ``~/Library/Application Support/dicomtools`` on macOS; ``%APPDATA%\\dicomtools`` on
    Windows).

    Returns
    -------
    str
        The configuration file's path (it need not exist yet).

    Examples
    --------
    >>> config_path().endswith("pacs.json")
    True
    """
    if os.environ.get("DICOMTOOLS_PACS_CONFIG"):
        return os.environ["DICOMTOOLS_PACS_CONFIG"]
    return os.path.join(_user_folder("XDG_CONFIG_HOME", "~/.config",
                                     "~/Library/Application Support", "APPDATA",
                                     "~\\AppData\\Roaming"), "pacs.json")


def default_cache() -> str:
    """The retrieve cache's root folder.

    ``$DICOMTOOLS_PACS_CACHE``, else the user's cache folder (``~/.cache/dicomtools/pacs``
    on Linux, honouring ``XDG_CACHE_HOME``; ``~/Library/Caches/dicomtools/pacs`` on macOS;
    ``%LOCALAPPDATA%\\dicomtools\\pacs`` on Windows).

    Returns
    -------
    str
        The cache folder's path (it need not exist yet).

    Examples
    --------
    >>> import os
    >>> os.path.basename(default_cache())
    'pacs'
    """
    if os.environ.get("DICOMTOOLS_PACS_CACHE"):
        return os.environ["DICOMTOOLS_PACS_CACHE"]
    return os.path.join(_user_folder("XDG_CACHE_HOME", "~/.cache", "~/Library/Caches",
                                     "LOCALAPPDATA", "~\\AppData\\Local"), "pacs")


# --------------------------------------------------------------------------- the file

#: what the functions below accept for the configuration file (None: :func:`config_path`)
ConfigPath = str | os.PathLike[str] | None


def load_profiles(path: ConfigPath = None) -> dict[str, ServerProfile]:
    """All profiles of a configuration file.

    Parameters
    ----------
    path : str or os.PathLike, optional
        The configuration file (default :func:`config_path`).

    Returns
    -------
    dict of str to ServerProfile
        Name -> profile, empty when the file does not exist.

    Raises
    ------
    PacsError
        The file cannot be read, is not JSON, or a profile in it is invalid.

    Examples
    --------
    >>> import os, tempfile
    >>> cfg = os.path.join(tempfile.mkdtemp(), "pacs.json")
    >>> load_profiles(cfg)
    {}
    >>> _ = save_profile(ServerProfile("lab", host="127.0.0.1", port=4242), cfg)
    >>> load_profiles(cfg)["lab"].port
    4242
    """
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


def get_profile(name: str, path: ConfigPath = None) -> ServerProfile:
    """The profile called ``name``.

    Parameters
    ----------
    name : str
        The profile's name.
    path : str or os.PathLike, optional
        The configuration file (default :func:`config_path`).

    Returns
    -------
    ServerProfile
        The stored profile.

    Raises
    ------
    PacsError
        No such profile (the message lists the known ones), or the file is unreadable.

    Examples
    --------
    >>> import os, tempfile
    >>> cfg = os.path.join(tempfile.mkdtemp(), "pacs.json")
    >>> _ = save_profile(ServerProfile("web", dicomweb_url="http://localhost/dicom-web"), cfg)
    >>> get_profile("web", cfg).dicomweb_url
    'http://localhost/dicom-web'
    """
    profiles = load_profiles(path)
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none; add one with `dicomtools pacs add`"
        raise PacsError(os.fspath(path or config_path()),
                        f"no server profile {name!r} (known: {known})")
    return profiles[name]


def _write_config(profiles: dict[str, ServerProfile], path: str) -> None:
    """Write ``profiles`` to ``path`` atomically, readable by its owner only."""
    from .safety import atomic_output

    data = {"servers": {n: {k: v for k, v in p.to_dict().items() if k != "name"}
                        for n, p in sorted(profiles.items())}}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_output(path, overwrite=True) as tmp:
        os.chmod(tmp, 0o600)  # it may hold a password
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")


def save_profile(profile: ServerProfile, path: ConfigPath = None, *,
                 overwrite: bool = False) -> str:
    """Add ``profile`` to the configuration file (written with mode 0600).

    Parameters
    ----------
    profile : ServerProfile
        The profile to store under its name.
    path : str or os.PathLike, optional
        The configuration file (default :func:`config_path`); created with its folder.
    overwrite : bool
        Replace a profile of the same name (otherwise that is an error).

    Returns
    -------
    str
        The configuration file's path.

    Raises
    ------
    PacsError
        A profile of that name exists and ``overwrite`` is False, or the file is unreadable.

    Examples
    --------
    >>> import os, stat, tempfile
    >>> cfg = save_profile(ServerProfile("lab", host="127.0.0.1", port=4242),
    ...                    os.path.join(tempfile.mkdtemp(), "pacs.json"))
    >>> oct(stat.S_IMODE(os.stat(cfg).st_mode))
    '0o600'
    """
    path = os.fspath(path or config_path())
    profiles = load_profiles(path)
    if profile.name in profiles and not overwrite:
        raise PacsError(path, f"server profile {profile.name!r} exists; not overwriting "
                              "(use --force)")
    profiles[profile.name] = profile
    _write_config(profiles, path)
    return path


def remove_profile(name: str, path: ConfigPath = None) -> None:
    """Delete the profile ``name`` from the configuration file.

    Parameters
    ----------
    name : str
        The profile's name.
    path : str or os.PathLike, optional
        The configuration file (default :func:`config_path`).

    Raises
    ------
    PacsError
        No such profile, or the file is unreadable.

    Examples
    --------
    >>> import os, tempfile
    >>> cfg = save_profile(ServerProfile("lab", host="127.0.0.1", port=4242),
    ...                    os.path.join(tempfile.mkdtemp(), "pacs.json"))
    >>> remove_profile("lab", cfg)
    >>> load_profiles(cfg)
    {}
    """
    path = os.fspath(path or config_path())
    profiles = load_profiles(path)
    if name not in profiles:
        raise PacsError(path, f"no server profile {name!r}")
    del profiles[name]
    _write_config(profiles, path)
