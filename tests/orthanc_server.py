"""A real Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``) for the PACS tests.

:func:`start_orthanc` writes a JSON configuration into a temporary folder (storage, index and
log there too), starts ``/usr/sbin/Orthanc`` listening on free ports of 127.0.0.1 only
(``RemoteAccessAllowed`` false), with HTTP basic authentication on, the DICOMweb plugin
loaded, the called AE title checked and one DICOM modality registered for our storage SCP
(the C-MOVE destination). It waits until ``/system`` answers and returns an
:class:`Orthanc` handle; ``stop()`` terminates the process (and kills it if it lingers).

Used by ``tests/test_pacs*.py`` through a session-scoped fixture and by
``benchmarks/bench_pacs.py``. Not a conftest fixture on purpose: only PACS tests pay for it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
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


def start_orthanc(folder: str | None = None, *, timeout: float = 60) -> Orthanc:
    """Start Orthanc on free 127.0.0.1 ports; return once ``/system`` answers."""
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
    cfg = os.path.join(folder, "orthanc.json")
    with open(cfg, "w") as f:
        json.dump(config, f, indent=1)
    log = open(os.path.join(folder, "orthanc.log"), "wb")  # noqa: SIM115 (lives with the process)
    proc = subprocess.Popen([ORTHANC, "--no-jobs", cfg], stdout=log, stderr=subprocess.STDOUT,
                            cwd=folder, preexec_fn=_die_with_parent)
    log.close()
    server = Orthanc(folder, http_port, dicom_port, move_port, proc, owned=owned)
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
