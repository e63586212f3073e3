"""PACS networking on a real Orthanc (DIMSE and DICOMweb): send, find, retrieve, faults."""

from __future__ import annotations

import logging
import os
import stat
import threading

import numpy as np
import orthanc_server
import pydicom
import pytest

from napari_dicomtools.core import pacs
from napari_dicomtools.core.synthetic import phantom, write_series
from napari_dicomtools.core.volume import read_volume

pytestmark = pytest.mark.skipif(orthanc_server.available() is not None,
                                reason=str(orthanc_server.available()))


@pytest.fixture(scope="session")
def orthanc():
    return orthanc_server.shared()


def web_profile(server, **kw):
    return pacs.ServerProfile("web", dicomweb_url=server.dicomweb_url, username=server.user,
                              password=server.password, **kw)


def dimse_profile(server, **kw):
    kw = {"called_aet": server.aet, "calling_aet": server.client_aet,
          "move_port": server.move_port, **kw}
    return pacs.ServerProfile("dimse", host=orthanc_server.HOST, port=server.dicom_port, **kw)


@pytest.fixture(scope="module")
def uploaded(orthanc, tmp_path_factory):
    """A CT sent by STOW-RS and an MR sent by C-STORE; their local originals."""
    root = tmp_path_factory.mktemp("pacs-src")
    ct = write_series(root / "ct", phantom((12, 40, 48), seed=1), spacing=(2.0, 0.7, 0.8),
                      patient=("Doe^Jane", "PACS-CT"), description="Chest CT")
    for f in ct.files:  # a study date to search by
        ds = pydicom.dcmread(f)
        ds.StudyDate = "20210315"
        ds.save_as(f)
    mr = write_series(root / "mr", phantom((6, 32, 32), seed=2) + 1024, modality="MR",
                      intercept=0.0, spacing=(4.0, 1.0, 1.0), orientation=(1, 0, 0, 0, 0, -1),
                      patient=("Roe^Rick", "PACS-MR"), description="Brain T1")
    for f in mr.files:
        ds = pydicom.dcmread(f)
        ds.StudyDate = "20230704"
        ds.save_as(f)
    r_ct = pacs.send(web_profile(orthanc), root / "ct", method="stow")
    r_mr = pacs.send(dimse_profile(orthanc), root / "mr", method="c-store")
    assert (len(r_ct.sent), r_ct.failed, r_ct.skipped) == (12, [], [])
    assert (len(r_mr.sent), r_mr.failed, r_mr.skipped) == (6, [], [])
    return {"ct": (root / "ct", ct), "mr": (root / "mr", mr)}


def _series_of(orthanc, patient_id):
    (hit,) = pacs.find(web_profile(orthanc), level="series", patient_id=patient_id)
    return hit


# --------------------------------------------------------------------------- profiles


def test_profiles_are_stored_0600_and_secrets_never_shown(tmp_path, monkeypatch):
    cfg = tmp_path / "conf" / "pacs.json"
    monkeypatch.setenv("DICOMTOOLS_PACS_CONFIG", str(cfg))
    p = pacs.ServerProfile("hospital", dicomweb_url="https://pacs.example/dicom-web",
                           username="bob", password="hunter2-secret", ca_bundle="/ca.pem")
    pacs.save_profile(p)
    assert stat.S_IMODE(os.stat(cfg).st_mode) == 0o600
    with pytest.raises(pacs.PacsError, match="exists"):
        pacs.save_profile(p)
    back = pacs.get_profile("hospital")
    assert back == p
    for text in (repr(back), back.label, str(back.to_dict(redact=True))):
        assert "hunter2" not in text
    with pytest.raises(pacs.PacsError, match=r"no server profile 'nope' \(known: hospital\)"):
        pacs.get_profile("nope")
    tok = pacs.ServerProfile("tok", dicomweb_url="http://127.0.0.1:1/", token_env="MY_TOKEN")
    with pytest.raises(pacs.PacsError, match="MY_TOKEN"):
        pacs.dicomweb_client(tok)
    monkeypatch.setenv("MY_TOKEN", "abc")
    assert pacs.dicomweb_client(tok)._session.headers["Authorization"] == "Bearer abc"
    pacs.remove_profile("hospital")
    assert pacs.load_profiles() == {}
    with pytest.raises(pacs.PacsError, match="AE title"):
        pacs.ServerProfile("x", host="127.0.0.1", port=104, called_aet="A" * 17)


def test_resume_rule():
    # C-GET / C-MOVE list the missing UIDs: never the whole series, even with 90% missing
    assert not any(pacs.fetch_whole(m, k, 300) for m in ("c-get", "c-move")
                   for k in (1, 150, 299, 300))
    # WADO-RS: instance by instance up to a third of the series
    assert [pacs.fetch_whole("wado", k, 300) for k in (0, 1, 100, 101, 300)] == \
        [False, False, False, True, True]


def test_stream_headers_read_from_dicom_json():
    from napari_dicomtools.core.pacs_stream import _floats, _Header

    h = _Header.from_json({
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Roe^Rick"}]},
        "00200032": {"vr": "DS", "Value": [-38.0, "-38.5", 12]},
        "00281050": {"vr": "DS", "Value": [40]},
        "00281051": {"vr": "DS"},  # empty: absent, its default applies
        "00280030": {"vr": "DS", "Value": [0.7]},  # one value where two are due
        "00080018": {"vr": "UI", "Value": ["1.2.3"]},
        "7FE00010": {"vr": "OW", "BulkDataURI": "http://x/bulk"},
    })
    assert (h.PatientName, h.SOPInstanceUID, h.get("WindowCenter")) == ("Roe^Rick", "1.2.3", 40)
    assert "WindowWidth" not in h and h.get("RescaleSlope", 1) == 1
    assert _floats(h, "ImagePositionPatient", 3) == [-38.0, -38.5, 12.0]
    assert _floats(h, "PixelSpacing", 2) is None  # refused, not guessed


def test_date_ranges():
    assert pacs._date_range("2020-01-01..2020-12-31") == "20200101-20201231"
    assert pacs._date_range("20200101-") == "20200101-"
    assert pacs._date_range("-20201231") == "-20201231"
    with pytest.raises(pacs.PacsError, match="not a date|use YYYYMMDD"):
        pacs._date_range("March")


# --------------------------------------------------------------------------- echo, find


def test_echo_over_both_protocols(orthanc):
    assert pacs.echo(dimse_profile(orthanc)) > 0
    assert pacs.echo(web_profile(orthanc), "dicomweb") > 0


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_find_by_patient_date_and_modality(orthanc, uploaded, protocol):
    prof = dimse_profile(orthanc) if protocol == "dimse" else web_profile(orthanc)

    def find(**kw):
        return pacs.find(prof, protocol=protocol, **kw)

    ids = {h.patient_id for h in find()}
    assert {"PACS-CT", "PACS-MR"} <= ids
    (ct,) = find(patient_id="PACS-CT")
    assert (ct.patient_name, ct.study_date, ct.count) == ("Doe^Jane", "20210315", 12)
    assert [h.patient_id for h in find(patient_name="Roe*")] == ["PACS-MR"]
    assert [h.patient_id for h in find(date="2023-01-01..2023-12-31")] == ["PACS-MR"]
    assert [h.patient_id for h in find(date="-20211231", patient_id="PACS-*")] == ["PACS-CT"]
    series = find(level="series", modality="MR")
    assert [(h.patient_id, h.modality, h.count, h.series_description) for h in series] == \
        [("PACS-MR", "MR", 6, "Brain T1")]
    assert find(level="series", patient_id="PACS-CT")[0].series_uid == \
        pydicom.dcmread(uploaded["ct"][1].files[0]).SeriesInstanceUID


# --------------------------------------------------------------------------- retrieve


@pytest.mark.parametrize("method", ["wado", "c-get", "c-move"])
@pytest.mark.parametrize("which", ["ct", "mr"])
def test_retrieve_equals_the_local_original(orthanc, uploaded, tmp_path, method, which):
    folder, _truth = uploaded[which]
    hit = _series_of(orthanc, f"PACS-{which.upper()}")
    prof = web_profile(orthanc) if method == "wado" else dimse_profile(orthanc)
    seen = []
    r = pacs.retrieve(prof, hit.study_uid, hit.series_uid, method=method,
                      cache=tmp_path / "cache", progress=lambda d, t: seen.append((d, t)))
    assert r.complete and r.fetched == r.expected == hit.count and r.reused == 0
    assert seen[-1] == (hit.count, hit.count)
    assert r.folder == str(tmp_path / "cache" / hit.study_uid / hit.series_uid)
    assert pacs.is_complete(r.folder)
    got, ref = read_volume(r.folder), read_volume(folder)
    np.testing.assert_array_equal(got.array, ref.array)
    assert got.array.dtype == ref.array.dtype
    np.testing.assert_allclose(got.affine_lps, ref.affine_lps, atol=1e-6)
    again = pacs.retrieve(prof, hit.study_uid, hit.series_uid, method=method,
                          cache=tmp_path / "cache")
    assert (again.fetched, again.reused, again.complete) == (0, hit.count, True)


@pytest.mark.parametrize("method", ["wado", "c-get"])
def test_interrupted_retrieve_resumes_without_refetching(orthanc, uploaded, tmp_path, method,
                                                         monkeypatch):
    hit = _series_of(orthanc, "PACS-CT")
    prof = web_profile(orthanc) if method == "wado" else dimse_profile(orthanc)
    cancel = threading.Event()

    def stop_after_four(done, total):
        if done >= 4:
            cancel.set()

    with pytest.raises(pacs.RetrieveCancelled, match="cancelled"):
        pacs.retrieve(prof, hit.study_uid, hit.series_uid, method=method, cache=tmp_path,
                      progress=stop_after_four, cancel=cancel, workers=2)
    folder = pacs.series_folder(tmp_path, hit.study_uid, hit.series_uid)
    kept = sorted(os.listdir(folder))
    # what the resume asks the server for: C-GET exactly the missing instances however many;
    # WADO-RS the whole series once more than a third is missing (pacs.fetch_whole)
    asked = []
    real = pacs._wado if method == "wado" else pacs._dimse_retrieve

    def spy(*a, whole, **kw):
        asked.append((len(a[3]) if method == "wado" else len(a[4]), whole))
        return real(*a, whole=whole, **kw)

    monkeypatch.setattr(pacs, "_wado" if method == "wado" else "_dimse_retrieve", spy)
    assert not pacs.is_complete(folder)
    assert 4 <= len(kept) < 12 and all(n.endswith(".dcm") for n in kept)
    for n in kept:  # every file kept is a whole instance
        assert pydicom.dcmread(os.path.join(folder, n)).pixel_array.shape == (40, 48)
    # a writer killed mid-file leaves a partial file: never counted, cleaned on resume
    leftover = os.path.join(folder, ".dicomtools-partial-999999999-abcdef")
    with open(leftover, "wb") as f:
        f.write(b"half an instance")
    stamps = {n: os.stat(os.path.join(folder, n)).st_mtime_ns for n in kept}
    r = pacs.retrieve(prof, hit.study_uid, hit.series_uid, method=method, cache=tmp_path)
    assert r.complete and (r.reused, r.fetched) == (len(kept), 12 - len(kept))
    assert asked == [(12 - len(kept), method == "wado" and 12 - len(kept) > 4)]
    assert not os.path.exists(leftover) and len(os.listdir(folder)) == 12 + 1  # + .complete
    assert stamps == {n: os.stat(os.path.join(folder, n)).st_mtime_ns for n in kept}
    np.testing.assert_array_equal(read_volume(folder).array,
                                  read_volume(uploaded["ct"][0]).array)
    # two instances lost: exactly those two are asked for
    for n in sorted(os.listdir(folder))[-2:]:
        os.unlink(os.path.join(folder, n))
    r = pacs.retrieve(prof, hit.study_uid, hit.series_uid, method=method, cache=tmp_path)
    assert r.complete and (r.reused, r.fetched) == (10, 2) and asked[-1] == (2, False)


@pytest.mark.parametrize("method", ["wado", "c-get"])
def test_streaming_shows_a_slice_before_the_rest_arrives(orthanc, uploaded, tmp_path, method):
    from napari_dicomtools.core.pacs_stream import open_streaming

    folder, _ = uploaded["mr"]  # coronal, MR without rescale
    hit = _series_of(orthanc, "PACS-MR")
    prof = web_profile(orthanc) if method == "wado" else dimse_profile(orthanc)
    vol = open_streaming(prof, hit.study_uid, hit.series_uid, cache=tmp_path, method=method)
    ref = read_volume(folder)
    cached = pacs.series_folder(tmp_path, hit.study_uid, hit.series_uid)
    assert vol.array.shape == ref.array.shape and os.listdir(cached) == []
    np.testing.assert_allclose(vol.affine_lps, ref.affine_lps, atol=1e-6)
    assert vol.array.dtype == ref.array.dtype and vol.window == ref.window
    np.testing.assert_array_equal(np.asarray(vol.array[3]), ref.array[3])
    assert len(os.listdir(cached)) == 1 and not pacs.is_complete(cached)  # one slice fetched
    np.testing.assert_array_equal(np.asarray(vol.array), ref.array)
    r = pacs.retrieve(prof, hit.study_uid, hit.series_uid, cache=tmp_path, method=method)
    assert (r.reused, r.fetched, r.complete) == (6, 0, True)
    if method == "wado":
        with pytest.raises(pacs.PacsError, match="streaming by WADO-RS needs a DICOMweb URL"):
            open_streaming(dimse_profile(orthanc), hit.study_uid, hit.series_uid,
                           method="wado")
    else:
        with pytest.raises(pacs.PacsError, match="over WADO-RS or C-GET, not c-move"):
            open_streaming(prof, hit.study_uid, hit.series_uid, method="c-move")


def test_a_series_deleted_after_the_search_is_a_clear_error(orthanc, tmp_path):
    write_series(tmp_path / "gone", phantom((3, 16, 16)), patient=("Gone^Soon", "PACS-GONE"))
    pacs.send(web_profile(orthanc), tmp_path / "gone")
    hit = _series_of(orthanc, "PACS-GONE")
    (pid,) = orthanc.rest("POST", "/tools/lookup", hit.series_uid.encode())
    orthanc.rest("DELETE", f"/series/{pid['ID']}")
    for method, prof in (("wado", web_profile(orthanc)), ("c-get", dimse_profile(orthanc))):
        with pytest.raises(pacs.PacsError, match="no instances on the server"):
            pacs.retrieve(prof, hit.study_uid, hit.series_uid, method=method,
                          cache=tmp_path / "cache")


def test_a_corrupt_instance_is_refused_and_the_rest_kept(orthanc, tmp_path):
    tr = write_series(tmp_path / "bad", phantom((4, 16, 16)), patient=("Bad^Pixel", "PACS-BAD"))
    victim = sorted(tr.files)[0]
    ds = pydicom.dcmread(victim)
    ds.PixelData = ds.PixelData[:100]  # a self-consistent element, too short for the image
    ds.save_as(victim)
    sent = pacs.send(dimse_profile(orthanc), tmp_path / "bad", method="c-store")
    assert len(sent.sent) == 4
    hit = _series_of(orthanc, "PACS-BAD")
    for method, prof in (("wado", web_profile(orthanc)), ("c-get", dimse_profile(orthanc))):
        cache = tmp_path / method
        with pytest.raises(pacs.PacsError, match=r"1 refused .*pixel data truncated"):
            pacs.retrieve(prof, hit.study_uid, hit.series_uid, method=method, cache=cache)
        folder = pacs.series_folder(cache, hit.study_uid, hit.series_uid)
        assert len(os.listdir(folder)) == 3 and not pacs.is_complete(folder)


# --------------------------------------------------------------------------- faults


def test_server_down_wrong_credentials_wrong_ae_are_one_line_errors(orthanc, caplog):
    caplog.set_level(logging.WARNING)  # a root handler, as IPython, Jupyter or an app has one
    down = orthanc_server.free_port()
    cases = [
        (lambda: pacs.echo(pacs.ServerProfile("down", host="127.0.0.1", port=down,
                                              timeout=3)), "cannot connect"),
        (lambda: pacs.find(pacs.ServerProfile(
            "down", dicomweb_url=f"http://127.0.0.1:{down}/dicom-web", timeout=3)),
         "cannot connect"),
        (lambda: pacs.find(web_profile(orthanc).__class__(
            "web", dicomweb_url=orthanc.dicomweb_url, username=orthanc.user,
            password="wrong")), "authentication failed"),
        (lambda: pacs.echo(dimse_profile(orthanc, called_aet="NOT-ORTHANC")),
         "called AE title 'NOT-ORTHANC' not recognised"),
        (lambda: pacs.find(dimse_profile(orthanc, calling_aet="STRANGER"), protocol="dimse"),
         "our AE title 'STRANGER'"),
    ]
    for call, message in cases:
        with pytest.raises(pacs.PacsError) as info:
            call()
        text = str(info.value)
        assert message in text and "\n" not in text and "wrong\x00" not in text
        assert orthanc.password not in text
    # pynetdicom's own ERROR lines about the refused associations are not shown as well
    assert not [r for r in caplog.records if r.name.startswith("pynetdicom")]


# --------------------------------------------------------------------------- sending


def test_send_reports_every_file(orthanc, tmp_path):
    write_series(tmp_path / "src", phantom((3, 16, 16)), patient=("Mixed^Bag", "PACS-MIX"))
    (tmp_path / "src" / "notes.txt").write_text("not DICOM")
    odd = pydicom.dcmread(next((tmp_path / "src").glob("IM*")))
    odd.SOPClassUID = "1.2.3.4.5.6.7"  # a SOP class Orthanc does not accept
    odd.SOPInstanceUID = pydicom.uid.generate_uid()
    odd.file_meta.MediaStorageSOPClassUID = odd.SOPClassUID
    odd.file_meta.MediaStorageSOPInstanceUID = odd.SOPInstanceUID
    odd.save_as(tmp_path / "src" / "odd.dcm")
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "src").iterdir()}
    r = pacs.send(dimse_profile(orthanc), tmp_path / "src", method="c-store")
    assert len(r.sent) == 3
    assert [os.path.basename(f) for f, _ in r.failed] == ["odd.dcm"]
    assert [os.path.basename(f) for f, _ in r.skipped] == ["notes.txt"]
    assert before == {p: p.stat().st_mtime_ns for p in (tmp_path / "src").iterdir()}


def test_an_anonymized_series_is_found_back_under_its_new_uids(orthanc, uploaded, tmp_path):
    from napari_dicomtools.core.anonymize import anonymize_files

    folder, _ = uploaded["mr"]
    anonymize_files(folder, tmp_path / "anon", key="k", workers=1)
    new = pydicom.dcmread(next(p for p in (tmp_path / "anon").rglob("*") if p.is_file()))
    orig = pydicom.dcmread(uploaded["mr"][1].files[0])
    assert new.SeriesInstanceUID != orig.SeriesInstanceUID
    r = pacs.send(web_profile(orthanc), tmp_path / "anon", method="stow")
    assert (len(r.sent), r.failed) == (6, [])
    (hit,) = pacs.find(dimse_profile(orthanc), level="series", protocol="dimse",
                       patient_id=str(new.PatientID))
    assert (hit.series_uid, hit.count) == (new.SeriesInstanceUID, 6)
    assert hit.patient_name != "Roe^Rick"
    got = pacs.retrieve(web_profile(orthanc), hit.study_uid, hit.series_uid,
                        cache=tmp_path / "cache")
    np.testing.assert_array_equal(read_volume(got.folder).array, read_volume(folder).array)
