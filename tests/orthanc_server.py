"""A real Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) for the PACS tests.

:func:`start_orthanc` writes a JSON configuration into a temporary folder (storage, index and
log there too), starts ``/usr/sbin/Orthanc`` listening on free ports of 127.0.0.1 only
(``RemoteAccessAllowed`` false), with HTTP basic authentication on, the DICOMweb plugin
loaded, the called AE title checked and one DICOM modality registered for our storage SCP
(the C-MOVE destination). It waits until ``/system`` answers and returns an
:class:`Orthanc` handle; ``stop()`` terminates the process (and kills it if it lingers).

``start_orthanc(tls=True)`` serves DICOM TLS only, with a throw-away CA made by
:func:`make_pki` (server certificate for 127.0.0.1, a client certificate Orthanc requires).
:class:`Proxy` is a reverse proxy on 127.0.0.1 in front of an Orthanc's HTTP port that adds
what Orthanc lacks or cannot do here: bearer-token authentication, and HTTPS (Debian's Orthanc
1.10.1 with ``SslEnabled`` completes the TLS handshake, then dies with SIGSEGV on the first
request, with OpenSSL 3; so HTTPS is terminated by the proxy, with the same CA).

Used by ``tests/test_pacs*.py`` through a session-scoped fixture and by
``benchmarks/bench_pacs.py``. Not a conftest fixture on purpose: only PACS tests pay for it.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import http.server
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
HOST = "127.0.0.1"  # never any other address
USER, PASSWORD = "alice", "s3cret-pw"
SERVER_AET = "ORTHANC"
CLIENT_AET = "DICOMTOOLS"


def available() -> str | None:
    """Why Orthanc cannot run here, or None when it can."""
    if not os.path.exists(ORTHANC):
        return f"{ORTHANC} missing (apt-get install orthanc)"
    if not os.path.exists(DICOMWEB_PLUGIN):
        return f"{DICOMWEB_PLUGIN} missing (apt-get install orthanc-dicomweb)"
    return None


def free_port() -> int:
    """A TCP port of 127.0.0.1 free right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Orthanc:
    """A running Orthanc: its ports, credentials and process."""

    folder: str
    http_port: int
    dicom_port: int
    move_port: int  # where Orthanc sends C-MOVE results (our storage SCP listens there)
    process: subprocess.Popen
    user: str = USER
    password: str = PASSWORD
    aet: str = SERVER_AET
    client_aet: str = CLIENT_AET
    owned: bool = field(default=True)
    pki: dict | None = None  # tls=True: paths of ca, client_cert, client_key, wrong_ca

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def rest(self, method: str, path: str, body: bytes | None = None, timeout: float = 30):
        """Orthanc's REST API (JSON in, JSON out), authenticated."""
        req = urllib.request.Request(self.url + path, data=body, method=method)
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        req.add_header("Authorization", "Basic " + token)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = r.read()
        return json.loads(data) if data else None

    def clear(self) -> None:
        """Delete every patient (a clean server between tests)."""
        for pid in self.rest("GET", "/patients"):
            self.rest("DELETE", f"/patients/{pid}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.owned:
            shutil.rmtree(self.folder, ignore_errors=True)

    def log(self) -> str:
        try:
            with open(os.path.join(self.folder, "orthanc.log"), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the test process dies, even killed (Linux)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


_SHARED: list = []


def shared() -> Orthanc:
    """One Orthanc for the whole test session (started on first use, stopped at exit)."""
    if not _SHARED or _SHARED[0].process.poll() is not None:
        import atexit

        _SHARED[:] = [start_orthanc()]
        atexit.register(_SHARED[0].stop)
    return _SHARED[0]


def _cert(subject: str, key, issuer=None, issuer_key=None, *, ca=False, server=False):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(name)
         .issuer_name(issuer.subject if issuer is not None else name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False,
                                          False), critical=True)
    else:
        # both uses: a DICOM node is client (SCU) and server (SCP, e.g. C-MOVE destination)
        b = b.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    if server:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]),
            critical=False)
    b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                        critical=False)
    if issuer is not None:
        b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer_key.public_key()), critical=False)
    return b.sign(issuer_key or key, hashes.SHA256())


def make_pki(folder: str) -> dict:
    """A throw-away CA, a server certificate for 127.0.0.1 signed by it, a client certificate
    signed by it, and an unrelated CA (the wrong one). Returns their PEM paths."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    def pem_key(k):
        return k.private_bytes(serialization.Encoding.PEM,
                               serialization.PrivateFormat.TraditionalOpenSSL,
                               serialization.NoEncryption())

    def pem(c):
        return c.public_bytes(serialization.Encoding.PEM)

    os.makedirs(folder, exist_ok=True)
    keys = {n: rsa.generate_private_key(65537, 2048) for n in ("ca", "srv", "cli", "bad")}
    ca = _cert("dicomtools test CA", keys["ca"], ca=True)
    files = {
        "ca": pem(ca),
        "server_cert": pem(_cert(HOST, keys["srv"], ca, keys["ca"], server=True)),
        "server_key": pem_key(keys["srv"]),
        "client_cert": pem(_cert(HOST, keys["cli"], ca, keys["ca"], server=True)),
        "client_key": pem_key(keys["cli"]),
        "wrong_ca": pem(_cert("dicomtools other CA", keys["bad"], ca=True)),
    }
    out = {}
    for name, data in files.items():
        out[name] = os.path.join(folder, name + ".pem")
        with open(out[name], "wb") as f:
            f.write(data)
    return out


class Proxy:
    """A reverse proxy on 127.0.0.1 forwarding to an Orthanc's HTTP port with the server's
    basic credentials. ``token``: only requests carrying ``Authorization: Bearer <token>`` go
    through (401 otherwise). ``pki`` (from :func:`make_pki`): it serves HTTPS with the server
    certificate. It records what it saw (``self.seen``: method, path, token matched)."""

    def __init__(self, server: Orthanc, *, token: str | None = None, pki: dict | None = None):
        self.server, self.token = server, token
        self.seen: list = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # silent: tests assert on what is logged
                pass

            def _forward(self):
                ok = proxy.token is None or \
                    self.headers.get("Authorization") == f"Bearer {proxy.token}"
                proxy.seen.append((self.command, self.path, ok))
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                if not ok:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Bearer realm="test"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                conn = http.client.HTTPConnection(HOST, server.http_port, timeout=60)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("authorization", "host", "connection")}
                basic = base64.b64encode(f"{server.user}:{server.password}".encode()).decode()
                headers["Authorization"] = "Basic " + basic
                conn.request(self.command, self.path, body=body, headers=headers)
                rsp = conn.getresponse()
                data = rsp.read()
                self.send_response(rsp.status, rsp.reason)
                for k, v in rsp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self.httpd = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.httpd.daemon_threads = True
        self.https = pki is not None
        if pki is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(pki["server_cert"], pki["server_key"])
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def dicomweb_url(self) -> str:
        return f"{'https' if self.https else 'http'}://{HOST}:{self.port}/dicom-web"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def start_orthanc(folder: str | None = None, *, timeout: float = 60,
                  tls: bool = False) -> Orthanc:
    """Start Orthanc on free 127.0.0.1 ports; return once ``/system`` answers. ``tls``:
    DICOM TLS only (a client certificate required), certificates by :func:`make_pki` in
    ``<folder>/pki`` (``.pki``); HTTP stays plain (put a :class:`Proxy` with ``pki`` in
    front for HTTPS)."""
    why = available()
    if why:
        raise RuntimeError(why)
    owned = folder is None
    folder = folder or tempfile.mkdtemp(prefix="orthanc-")
    os.makedirs(folder, exist_ok=True)
    http_port, dicom_port, move_port = free_port(), free_port(), free_port()
    config = {
        "Name": "dicomtools-test",
        "StorageDirectory": os.path.join(folder, "storage"),
        "IndexDirectory": os.path.join(folder, "index"),
        "RemoteAccessAllowed": False,
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "DicomServerEnabled": True,
        "DicomAet": SERVER_AET,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": True,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomCheckModalityHost": True,
        "DicomModalities": {"dicomtools": [CLIENT_AET, HOST, move_port]},
        "DicomScpTimeout": 10,
        "DicomScuTimeout": 10,
        "MaximumPduLength": 65536,
        "StableAge": 1,
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
        "MetricsEnabled": False,
        "SaveJobs": False,
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False,
                     "Host": f"{HOST}:{http_port}", "Ssl": False},
    }
    pki = None
    if tls:
        pki = make_pki(os.path.join(folder, "pki"))
        config.update({
            "DicomTlsEnabled": True, "DicomTlsCertificate": pki["server_cert"],
            "DicomTlsPrivateKey": pki["server_key"], "DicomTlsTrustedCertificates": pki["ca"],
            "DicomTlsRemoteCertificateRequired": True})
        config["DicomModalities"]["dicomtools"] = {"AET": CLIENT_AET, "Host": HOST,
                                                   "Port": move_port, "UseDicomTls": True}
    cfg = os.path.join(folder, "orthanc.json")
    with open(cfg, "w") as f:
        json.dump(config, f, indent=1)
    log = open(os.path.join(folder, "orthanc.log"), "wb")  # noqa: SIM115 (lives with the process)
    proc = subprocess.Popen([ORTHANC, "--no-jobs", cfg], stdout=log, stderr=subprocess.STDOUT,
                            cwd=folder, preexec_fn=_die_with_parent)
    log.close()
    server = Orthanc(folder, http_port, dicom_port, move_port, proc, owned=owned, pki=pki)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            text = server.log()
            server.stop()
            raise RuntimeError(f"Orthanc exited with {proc.returncode}:\n{text}")
        try:
            server.rest("GET", "/system", timeout=2)
            return server
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError("Orthanc did not answer /system in time") from None
            time.sleep(0.2)
