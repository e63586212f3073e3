"""PACS over TLS (DICOM TLS with mutual certificates, HTTPS) and with bearer tokens, live on
a real Orthanc: echo, find, get, send; a wrong CA is a one-line error, never a plain-text
retry; a token never shows in logs, errors, the cache or outputs.

One Orthanc for the module, serving DICOM TLS only (throw-away CA from
:func:`orthanc_server.make_pki`); HTTPS and bearer authentication come from
:class:`orthanc_server.Proxy` in front of its HTTP port (see that module for why).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import orthanc_server
import pytest

from napari_dicomtools.core import pacs
from napari_dicomtools.core.synthetic import phantom, write_series
from napari_dicomtools.core.volume import read_volume

pytestmark = pytest.mark.skipif(orthanc_server.available() is not None,
                                reason=str(orthanc_server.available()))
TOKEN = "tok-9f3c1e-SECRET-b2"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    server = orthanc_server.start_orthanc(str(tmp_path_factory.mktemp("orthanc-tls")),
                                          tls=True)
    https = orthanc_server.Proxy(server, pki=server.pki)
    bearer = orthanc_server.Proxy(server, token=TOKEN)
    yield server, https, bearer
    https.stop()
    bearer.stop()
    server.stop()


def dimse_tls(server, **kw):
    kw = {"called_aet": server.aet, "calling_aet": server.client_aet, "tls": True,
          "ca_bundle": server.pki["ca"], "tls_cert": server.pki["client_cert"],
          "tls_key": server.pki["client_key"], "move_port": server.move_port, "timeout": 10,
          **kw}
    return pacs.ServerProfile("tls", host=orthanc_server.HOST, port=server.dicom_port, **kw)


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    root = tmp_path_factory.mktemp("secure-src")
    write_series(root / "a", phantom((5, 24, 28), seed=11), patient=("Tls^Tom", "SEC-TLS"),
                 description="over TLS")
    write_series(root / "b", phantom((4, 20, 20), seed=12), patient=("Tok^Tina", "SEC-TOK"),
                 description="with a token")
    return root


def _same(folder, ref_folder):
    got, ref = read_volume(folder), read_volume(ref_folder)
    np.testing.assert_array_equal(got.array, ref.array)
    np.testing.assert_allclose(got.affine_lps, ref.affine_lps, atol=1e-6)


def test_dimse_over_tls_echo_send_find_get_move(tls_server, series, tmp_path, monkeypatch,
                                                capsys):
    from napari_dicomtools.cli import main

    server, _, _ = tls_server
    monkeypatch.setenv("DICOMTOOLS_PACS_CONFIG", str(tmp_path / "pacs.json"))
    assert main(["pacs", "add", "tls", "--host", orthanc_server.HOST, "--port",
                 str(server.dicom_port), "--aet", server.aet, "--calling-aet",
                 server.client_aet, "--move-port", str(server.move_port), "--tls",
                 "--ca-bundle", server.pki["ca"], "--tls-cert", server.pki["client_cert"],
                 "--tls-key", server.pki["client_key"], "-q"]) == 0
    prof = pacs.get_profile("tls")  # the CA bundle and our certificate from the profile
    assert prof == dimse_tls(server, timeout=30.0)
    assert main(["pacs", "echo", "tls"]) == 0 and "tls: dimse ok" in capsys.readouterr().out
    assert pacs.echo(prof) > 0
    r = pacs.send(prof, series / "a", method="c-store")
    assert (len(r.sent), r.failed, r.skipped) == (5, [], [])
    (hit,) = pacs.find(prof, level="series", patient_id="SEC-TLS", protocol="dimse")
    assert (hit.count, hit.series_description) == (5, "over TLS")
    for method in ("c-get", "c-move"):  # C-MOVE: Orthanc connects back to our TLS SCP
        got = pacs.retrieve(prof, hit.study_uid, hit.series_uid, method=method,
                            cache=tmp_path / method)
        assert got.complete and got.fetched == 5
        _same(got.folder, series / "a")


def test_https_echo_send_find_get(tls_server, series, tmp_path):
    server, https, _ = tls_server
    prof = pacs.ServerProfile("https", dicomweb_url=https.dicomweb_url,
                              ca_bundle=server.pki["ca"])
    assert prof.dicomweb_url.startswith("https://")
    assert pacs.echo(prof, "dicomweb") > 0
    r = pacs.send(prof, series / "b", method="stow")
    assert (len(r.sent), r.failed) == (4, [])
    (hit,) = pacs.find(prof, level="series", patient_id="SEC-TOK")
    got = pacs.retrieve(prof, hit.study_uid, hit.series_uid, cache=tmp_path)
    assert got.complete and got.fetched == 4
    _same(got.folder, series / "b")


def test_a_wrong_ca_is_one_clear_line_and_nothing_goes_in_plain_text(tls_server, series,
                                                                     caplog):
    server, https, _ = tls_server
    caplog.set_level(logging.DEBUG)  # a root handler, as IPython, Jupyter or an app has one
    wrong = server.pki["wrong_ca"]
    n_before = len(https.seen)
    cases = [
        (lambda: pacs.echo(dimse_tls(server, ca_bundle=wrong)),
         "TLS: the server's certificate failed verification ("),
        (lambda: pacs.send(dimse_tls(server, ca_bundle=wrong), series / "a",
                           method="c-store"), "failed verification"),
        (lambda: pacs.find(pacs.ServerProfile("https", dicomweb_url=https.dicomweb_url,
                                              ca_bundle=wrong)),
         "TLS: the server's certificate failed verification ("),
        (lambda: pacs.echo(dimse_tls(server, tls_cert=None, tls_key=None)),
         "TLS: the server refused our client certificate"),  # Orthanc requires one
        (lambda: pacs.echo(dimse_tls(server, ca_bundle="/nonexistent/ca.pem")),
         "ca_bundle '/nonexistent/ca.pem': no such file"),
    ]
    for call, message in cases:
        with pytest.raises(pacs.PacsError) as info:
            call()
        text = str(info.value)
        assert message in text and "\n" not in text, text
    assert len(https.seen) == n_before  # no request ever reached HTTP in the clear
    # the DICOM port speaks TLS only: a profile without TLS fails, it is not downgraded
    with pytest.raises(pacs.PacsError):
        pacs.echo(dimse_tls(server, tls=False, timeout=3))
    # pynetdicom logs the failed handshakes at ERROR (with a traceback): the user sees our
    # one line only; pynetdicom's account is on our logger at DEBUG (`dicomtools -vv`)
    loud = [f"{r.name}: {r.getMessage()}" for r in caplog.records
            if r.levelno >= logging.WARNING and not r.name.startswith("napari_dicomtools")]
    assert not loud, loud
    routed = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG
              and r.name.startswith("napari_dicomtools.core")]
    assert any("CERTIFICATE_VERIFY_FAILED" in m for m in routed), routed


def test_bearer_token_find_get_send_and_never_shown(tls_server, series, tmp_path, caplog,
                                                     capsys, monkeypatch):
    from napari_dicomtools.cli import main
    from napari_dicomtools.core.pacs_stream import open_streaming

    server, _, bearer = tls_server
    caplog.set_level(logging.DEBUG)  # every library's debug log (requests, urllib3...)
    monkeypatch.setenv("DICOMTOOLS_PACS_CONFIG", str(tmp_path / "pacs.json"))
    monkeypatch.setenv("SEC_TOKEN", TOKEN)
    prof = pacs.ServerProfile("tok", dicomweb_url=bearer.dicomweb_url, token_env="SEC_TOKEN")
    r = pacs.send(prof, series / "b", method="stow")
    assert (len(r.sent), r.failed) == (4, [])
    (hit,) = pacs.find(prof, level="series", patient_id="SEC-TOK")
    cache = tmp_path / "cache"
    got = pacs.retrieve(prof, hit.study_uid, hit.series_uid, cache=cache)
    assert got.complete
    _same(got.folder, series / "b")
    vol = open_streaming(prof, hit.study_uid, hit.series_uid, cache=tmp_path / "stream")
    np.testing.assert_array_equal(np.asarray(vol.array), read_volume(series / "b").array)
    assert bearer.seen and all(ok for _, _, ok in bearer.seen)
    # the CLI with the token from the environment: found, and no token printed
    assert main(["pacs", "add", "tok", "--url", bearer.dicomweb_url, "--token-env",
                 "SEC_TOKEN", "-q"]) == 0
    assert main(["pacs", "find", "tok", "--patient-id", "SEC-TOK", "--level", "series",
                 "--json"]) == 0
    assert main(["pacs", "list", "--json"]) == 0
    # a wrong token: a one-line 401, the wrong token not echoed either
    monkeypatch.setenv("SEC_TOKEN", "wrong-" + TOKEN)
    with pytest.raises(pacs.PacsError, match="authentication failed") as info:
        pacs.find(prof)
    assert main(["pacs", "find", "tok"]) == 1
    out = capsys.readouterr()
    assert hit.series_uid in out.out
    shown = "\n".join([out.out, out.err, caplog.text, str(info.value), repr(prof),
                       (tmp_path / "pacs.json").read_text()])
    assert TOKEN not in shown and "SEC-TOK" in shown
    for root, _, files in os.walk(tmp_path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                assert TOKEN.encode() not in f.read(), name
