"""DIMSE (C-ECHO, C-FIND, C-GET, C-MOVE, C-STORE) over **pynetdicom**, optionally over TLS.

Private: :mod:`napari_dicomtools.core.pacs` drives it. :class:`_Dimse` is an association as
a context manager that turns every failure into a one-line
:class:`~._pacs_profiles.PacsError` (rejected AE titles, a TLS handshake refused, a server
down). While it is open, pynetdicom's own warnings and errors (it logs a failed TLS
handshake at ERROR, with a traceback) go to this module's logger at DEBUG: the user sees our
one line, ``dicomtools -vv`` still shows pynetdicom's account.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, cast

from ._pacs_local import Received, SendResult, _read_source, _reason, _send_cancelled
from ._pacs_profiles import PacsError, RetrieveCancelled, ServerProfile, _need

if TYPE_CHECKING:
    import ssl
    from collections.abc import Sequence
    from types import TracebackType

    from pydicom import Dataset
    from pynetdicom.association import Association
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.events import Event, EventHandlerType
    from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
    from pynetdicom.presentation import PresentationContext

    from .sources import Source

__all__: list[str] = []

log = logging.getLogger(__name__)

_VERIFICATION = "1.2.840.10008.1.1"
_STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
_STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
_STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
_IMPLICIT_LE, _EXPLICIT_LE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"
#: requested presentation contexts: (abstract syntax, transfer syntaxes or None for all)
Contexts = list[tuple[str, "Sequence[str] | None"]]


# --------------------------------------------------------------------------- pynetdicom's log


class _ToDebug(logging.Filter):
    """Drops pynetdicom's warnings and errors and logs them on ours at DEBUG: the
    :class:`PacsError` we raise says what went wrong in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        log.debug("%s: %s", record.name, record.getMessage(), exc_info=record.exc_info)
        return False


class _QuietPynetdicom:
    """Installs :class:`_ToDebug` on pynetdicom's loggers while at least one of our
    associations (or C-MOVE storage servers) is open, from any thread."""

    LOGGERS = ("pynetdicom.transport", "pynetdicom.acse", "pynetdicom.association",
               "pynetdicom.dul", "pynetdicom.ae")

    def __init__(self) -> None:
        self.filter = _ToDebug()
        self.lock = threading.Lock()
        self.users = 0

    def __enter__(self) -> None:
        with self.lock:
            if self.users == 0:
                for name in self.LOGGERS:
                    logging.getLogger(name).addFilter(self.filter)
            self.users += 1

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.users -= 1
            if self.users == 0:
                for name in self.LOGGERS:
                    logging.getLogger(name).removeFilter(self.filter)


_quiet = _QuietPynetdicom()


# --------------------------------------------------------------------------- associations


class _Dimse:
    """An association with the server, as a context manager that turns every failure into a
    one-line :class:`PacsError`."""

    def __init__(self, profile: ServerProfile, contexts: Contexts, *,
                 roles: Iterable[SCP_SCU_RoleSelectionNegotiation] = (),
                 handlers: Iterable[EventHandlerType] = ()) -> None:
        self.profile = profile
        self.contexts = contexts
        self.roles = list(roles)
        self.handlers = list(handlers)
        self.assoc: Association | None = None

    def __enter__(self) -> Association:
        _quiet.__enter__()
        try:
            self.assoc = self._associate()
        except BaseException:
            _quiet.__exit__()
            raise
        return self.assoc

    def _associate(self) -> Association:
        from pynetdicom import AE

        p = self.profile
        _need(p, "dimse")
        assert p.host is not None and p.port is not None  # checked by _need, __post_init__
        ae = AE(ae_title=p.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = p.timeout
        ae.connection_timeout = min(p.timeout, 10)
        for abstract, syntaxes in self.contexts:
            ae.add_requested_context(abstract, syntaxes)
        ctx = p.ssl_context() if p.tls else None
        assoc = ae.associate(p.host, p.port, ae_title=p.called_aet,
                             ext_neg=list(self.roles) or None,
                             tls_args=(ctx, p.host) if ctx is not None else None,
                             evt_handlers=self.handlers or None)
        if not assoc.is_established:
            raise PacsError(p.label, (ctx is not None and _tls_failure(p, ctx))
                            or self._why(assoc))
        return assoc

    def _why(self, assoc: Association) -> str:
        """Why the association was not established, in the user's terms."""
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

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self.assoc is not None and self.assoc.is_established:
                self.assoc.release()
        finally:
            _quiet.__exit__()


def _tls_failure(profile: ServerProfile, ctx: ssl.SSLContext) -> str | None:
    """Why a TLS handshake with the server fails (pynetdicom only logs it), or None when it
    succeeds or the server cannot be reached at all."""
    import socket
    import ssl

    assert profile.host is not None and profile.port is not None
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


# --------------------------------------------------------------------------- statuses


def _no_answer(profile: ServerProfile, assoc: Association | None, what: str,
               started: float | None) -> PacsError:
    """The error for a request that got no response: the server hung up early (typically:
    our AE title is not allowed this service) or the answer timed out."""
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


def _status_text(code: int, status: Dataset) -> str:
    """``status 0xA700 (the server's ErrorComment)``."""
    comment = str(status.get("ErrorComment", "") or "").strip()
    return f"status 0x{code:04X}" + (f" ({comment})" if comment else "")


def _failed(profile: ServerProfile, what: str, code: int, status: Dataset) -> PacsError:
    """A failure status as one line, with the server's ErrorComment when it gave one."""
    return PacsError(profile.label, f"{what}: failed with {_status_text(code, status)}")


def _check_status(profile: ServerProfile, status: Dataset | None, what: str,
                  assoc: Association | None = None, started: float | None = None) -> int:
    """The status code of a response when it is success, pending or a warning; otherwise
    the :class:`PacsError` saying why."""
    if status is None or "Status" not in status:
        raise _no_answer(profile, assoc, what, started)
    code = int(status.Status)
    if code in (0x0000, 0xFF00, 0xFF01) or 0xB000 <= code <= 0xBFFF:
        return code
    raise _failed(profile, what, code, status)


def _echo(profile: ServerProfile) -> None:
    """One C-ECHO."""
    with _Dimse(profile, [(_VERIFICATION, None)]) as assoc:
        t = time.monotonic()
        _check_status(profile, assoc.send_c_echo(), "C-ECHO", assoc, t)


def _cfind(assoc: Association, profile: ServerProfile, level: str,
           filters: dict[str, str], keys: Iterable[str]) -> list[Dataset]:
    """The identifiers a Study Root C-FIND at ``level`` (``"study"``, ``"series"``,
    ``"image"``) matches, with the return ``keys``."""
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


def _find(profile: ServerProfile, level: str, filters: dict[str, str],
          keys: Iterable[str]) -> list[Dataset]:
    """:func:`_cfind` in an association of its own."""
    with _Dimse(profile, [(_STUDY_ROOT_FIND, None)]) as assoc:
        return _cfind(assoc, profile, level, filters, keys)


# --------------------------------------------------------------------------- C-GET, C-MOVE


def _storage_contexts(sop_classes: Iterable[str]
                      ) -> tuple[list[PresentationContext],
                                 list[SCP_SCU_RoleSelectionNegotiation]]:
    """Presentation contexts (every transfer syntax) and SCP roles to receive instances of
    ``sop_classes`` (at most 127: an association holds no more)."""
    from pydicom.uid import AllTransferSyntaxes
    from pynetdicom import build_role
    from pynetdicom.presentation import build_context

    classes = sorted(set(sop_classes))[:127]
    contexts = [build_context(c, list(AllTransferSyntaxes)) for c in classes]
    return contexts, [build_role(c, scp_role=True) for c in classes]


def _store_handler(received: Received) -> Callable[[Event], int]:
    """The EVT_C_STORE handler that hands each instance the server sends to ``received``."""

    def on_store(event: Event) -> int:
        sop = str(cast("C_STORE", event.request).AffectedSOPInstanceUID)
        try:
            data = event.encoded_dataset(include_meta=True)
        except Exception as exc:
            received(sop, None, f"cannot be read ({exc})")
            return 0xA700
        received(sop, data)
        return 0x0000

    return on_store


def _retrieve_identifier(study_uid: str, series_uid: str, todo: Sequence[str],
                         whole: bool) -> Dataset:
    """The C-GET/C-MOVE identifier: the series, or (resuming) its instances ``todo``."""
    from pydicom import Dataset

    q = Dataset()
    q.StudyInstanceUID = study_uid
    q.SeriesInstanceUID = series_uid
    if whole:
        q.QueryRetrieveLevel = "SERIES"
    else:  # resuming: ask only for what is missing (UID list matching)
        q.QueryRetrieveLevel = "IMAGE"
        q.SOPInstanceUID = list(todo) if len(todo) > 1 else todo[0]
    return q


def _dimse_retrieve(profile: ServerProfile, method: str, study_uid: str, series_uid: str,
                    todo: Sequence[str], sop_classes: Iterable[str], received: Received,
                    cancel: threading.Event | None, whole: bool) -> None:
    """C-GET or C-MOVE the series (``whole``) or its instances ``todo``; every instance the
    server sends goes to ``received``."""
    from pynetdicom import evt

    q = _retrieve_identifier(study_uid, series_uid, todo, whole)
    contexts, roles = _storage_contexts(sop_classes)
    handlers: list[EventHandlerType] = [(evt.EVT_C_STORE, _store_handler(received))]
    if method == "c-get":
        cx: Contexts = [(_STUDY_ROOT_GET, None)] + [
            (str(c.abstract_syntax), c.transfer_syntax) for c in contexts]
        with _Dimse(profile, cx, roles=roles, handlers=handlers) as assoc:
            _drain(profile, assoc, assoc.send_c_get(q, _STUDY_ROOT_GET), cancel, "C-GET")
    else:
        _c_move(profile, q, contexts, handlers, cancel)


def _c_move(profile: ServerProfile, q: Dataset, contexts: list[PresentationContext],
            handlers: list[EventHandlerType], cancel: threading.Event | None) -> None:
    """C-MOVE ``q`` to our own AE title, received by a storage SCP this function runs on
    ``profile.move_port`` (over TLS when the profile is), on the interface that reaches the
    server."""
    from pynetdicom import AE

    if profile.move_port is None:
        raise PacsError(profile.label, "C-MOVE needs move_port (the port of our storage "
                                       "SCP, as the server knows it for our AE title)")
    with _Dimse(profile, [(_STUDY_ROOT_MOVE, None)]) as assoc:
        bind = assoc.dul.socket.socket.getsockname()[0]  # type: ignore[union-attr]
        # (an established association has its socket)
        scp = AE(ae_title=profile.calling_aet)
        scp.acse_timeout = scp.dimse_timeout = scp.network_timeout = profile.timeout
        for c in contexts:
            scp.add_supported_context(str(c.abstract_syntax), c.transfer_syntax)
        ssl_ctx = profile.ssl_context(server_side=True) if profile.tls else None
        try:
            server = scp.start_server((bind, profile.move_port), block=False,
                                      evt_handlers=handlers, ssl_context=ssl_ctx)
        except OSError as exc:
            raise PacsError(profile.label, f"cannot listen on {bind}:{profile.move_port} "
                                           f"for C-MOVE ({exc.strerror or exc})") from None
        assert server is not None  # block=False returns the server
        try:
            _drain(profile, assoc, assoc.send_c_move(q, profile.calling_aet, _STUDY_ROOT_MOVE),
                   cancel, "C-MOVE")
        finally:
            server.shutdown()


def _drain(profile: ServerProfile, assoc: Association,
           responses: Iterator[tuple[Dataset, Dataset | None]],
           cancel: threading.Event | None, what: str) -> None:
    """Read the C-GET/C-MOVE responses to the end (instances arrive meanwhile through the
    C-STORE handler); abort on ``cancel``; a failure status is a :class:`PacsError`."""
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
        if code == 0xA801:
            raise PacsError(profile.label, f"{what}: the server does not know move "
                                           f"destination {profile.calling_aet!r}")
        raise _failed(profile, what, code, status)


# --------------------------------------------------------------------------- C-STORE


def _store_contexts(profile: ServerProfile, headers: Sequence[tuple[Source, Dataset]]
                    ) -> Contexts:
    """One presentation context per SOP class to send, with the files' transfer syntaxes
    and both little-endian ones."""
    pairs: dict[str, set[str]] = {}
    for _src, ds in headers:
        ts = str(ds.file_meta.get("TransferSyntaxUID", "")) if getattr(
            ds, "file_meta", None) else ""
        pairs.setdefault(str(ds.SOPClassUID), set()).add(ts or _IMPLICIT_LE)
    if len(pairs) > 127:
        raise PacsError(profile.label, f"{len(pairs)} SOP classes in one send; at most 127 "
                                       "fit in one association: send in parts")
    return [(cls, sorted(ts | {_EXPLICIT_LE, _IMPLICIT_LE})) for cls, ts in pairs.items()]


def _cstore(profile: ServerProfile, headers: Sequence[tuple[Source, Dataset]],
            result: SendResult, progress: Callable[[int, int], None] | None,
            cancel: threading.Event | None) -> None:
    """C-STORE the files of ``headers`` in one association; every file's fate goes into
    ``result``."""
    with _Dimse(profile, _store_contexts(profile, headers)) as assoc:
        for done, (src, _) in enumerate(headers, 1):
            _send_cancelled(profile, cancel, result)
            try:
                ds = _read_source(src)
            except Exception as exc:
                result.skipped.append((str(src), _reason(exc, str(exc))))
            else:
                _cstore_one(profile, assoc, src, ds, result)
            if progress is not None:
                progress(done, len(headers))


def _cstore_one(profile: ServerProfile, assoc: Association, src: Source, ds: Dataset,
                result: SendResult) -> None:
    """C-STORE one instance; sent, or failed with the server's status and comment."""
    try:
        status = assoc.send_c_store(ds)
    except ValueError as exc:  # no accepted context for this class/syntax
        result.failed.append((str(src), f"not accepted by the server ({exc})"))
        return
    if status is None or "Status" not in status:
        if not assoc.is_established:
            raise PacsError(profile.label, f"C-STORE: connection lost after "
                                           f"{len(result.sent)} instances")
        result.failed.append((str(src), "no answer (timed out)"))
        return
    code = int(status.Status)
    if code == 0x0000 or 0xB000 <= code <= 0xBFFF:
        result.sent.append(str(ds.SOPInstanceUID))
    else:
        result.failed.append((str(src), f"refused with {_status_text(code, status)}"))
