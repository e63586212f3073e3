"""De-identification fit for a public release (issue 10): an adversarial study with PHI in
every placement found by an attacker, and the integrity of what is written.

Every marker below is planted somewhere in the study; none may survive in any output byte
(ASCII or UTF-16-LE, any case) or any output path."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR, get_entry
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian

from napari_dicomtools.cli import main
from napari_dicomtools.core.anonymize import (
    Anonymizer,
    Options,
    anonymize_files,
    is_valid_uid,
    is_well_known_uid,
    minimal_pdf,
    output_path,
    rule_for,
)
from napari_dicomtools.core.metadata import metadata_table
from napari_dicomtools.core.synthetic import write_series

BIRTH, MRN = "19650304", "87654321"
#: an original UID that embeds the birth date and the MRN: it re-links if kept anywhere
LINK = f"1.2.826.0.1.3680043.9.{BIRTH}.{MRN}"
MARKERS = [
    "PHINAMEDEEP", "PHIIDDEEP", "PHISRNAME", "PHISRID", "PHIDOCTOR", "PHIPERSON", "PHIOPERATOR",
    "PHIVERIFIER", "PHIDOCTITLE", "PHIDIRNAME", "PHIUNKNOWN", "PHIUTF16", "PHIPRIVATE",
    "PHIURL", "PHICOMPLETION", "PHIPDFTEXT", "PHIPATHNAME", "PHIOBSERVER", "PHITOPNAME",
    "PHITOPID", "PHINUMTEXT", "PHICODEID", "PHICODENAME", "PHIINSTCODE", BIRTH, MRN,
]
PDF_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.104.1"
SR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.22"  # Enhanced SR


def _code(value, scheme, meaning):
    it = Dataset()
    it.CodeValue, it.CodingSchemeDesignator, it.CodeMeaning = value, scheme, meaning
    return it


def _common(ds, study_uid):
    ds.PatientName = "PHITOPNAME^John"
    ds.PatientID = "PHITOPID"
    ds.PatientBirthDate = BIRTH
    ds.StudyInstanceUID = study_uid
    ds.OperatorsName = "PHIOPERATOR^Jane"
    # unlisted public attributes
    ds.ReferencedFileID = ["R", "D", "PHIDIRNAME", "IM00001"]
    ds.add_new(0x0010FFF0, "LO", "PHIUNKNOWN MRN " + MRN)  # not in the data dictionary
    ds.add_new(0x00121000, "OB", "PHIUTF16 name".encode("utf-16-le"))  # unknown, UTF-16
    ds.add_new(0x0008FFF2, "UI", LINK + ".77")  # a UID in an element no dictionary knows
    ds.RetrieveURL = "https://pacs.example/PHIURL/" + MRN
    # text where a number belongs (pydicom refuses to set it, so a raw element)
    ds._dict[Tag(0x00180088)] = RawDataElement(Tag(0x00180088), "DS", 10, b"PHINUMTEXT", 0,
                                               False, True)
    # nested names and IDs at depths 1..3
    deep = Dataset()
    deep.PatientName = "PHINAMEDEEP^Three"
    deep.PatientID = "PHIIDDEEP3"
    mod = _code("7771", "99LOCAL", "modifier")
    mod.AnatomicRegionModifierSequence = Sequence([deep])
    mod.PatientName = "PHINAMEDEEP^Two"
    region = _code("T-D1100", "SRT", "Head")
    region.PatientID = "PHIIDDEEP1"
    region.AnatomicRegionModifierSequence = Sequence([mod])
    ds.AnatomicRegionSequence = Sequence([region])
    # codes that are an identity (E.1-1: D / X/Z/D on the sequences)
    person = _code("PHICODEID", "99HOSP", "PHICODENAME, operator")
    operator = Dataset()
    operator.PersonIdentificationCodeSequence = Sequence([person])
    ds.OperatorIdentificationSequence = Sequence([operator])
    ds.InstitutionCodeSequence = Sequence([_code("I1", "99HOSP", "PHIINSTCODE hospital")])
    # private elements with names and a UID
    block = ds.private_block(0x0029, "ACME 1.0", create=True)
    block.add_new(0x10, "LO", "PHIPRIVATE " + MRN)
    block.add_new(0x11, "UI", LINK + ".99")
    # every public UI attribute of the dictionary that is not a file-meta or structural one,
    # with an original UID embedding birth date and MRN
    for i, tag in enumerate(_unlisted_instance_uid_tags()):
        if tag not in ds:
            ds.add_new(tag, "UI", f"{LINK}.{100 + i}")


def _unlisted_instance_uid_tags():
    from pydicom._dicom_dict import DicomDictionary

    out = []
    for tag, entry in DicomDictionary.items():
        if entry[0] != "UI" or entry[3] == "Retired" or (tag >> 16) in (0x0000, 0x0002, 0x0004):
            continue
        kw = entry[4]
        if kw in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
                  "FrameOfReferenceUID", "TransferSyntaxUID") or (tag >> 16) & 1:
            continue
        if rule_for(tag) is None:
            out.append(tag)
    return out


def _make_study(root):
    """CT slices (references between them, a concatenation, source images), an SR with
    evidence and names in its content, an encapsulated PDF. Returns {name: dataset}."""
    study_uid = f"{LINK}.1"
    truth = write_series(root / "DOE_PHIPATHNAME", np.arange(3 * 16 * 16, dtype=np.int16)
                         .reshape(3, 16, 16) - 300, study_uid=study_uid,
                         series_uid=f"{LINK}.2", frame_uid=f"{LINK}.3",
                         patient=("PHITOPNAME^John", "PHITOPID"))
    cts = []
    for i, f in enumerate(sorted(truth.files)):
        ds = pydicom.dcmread(f)
        ds.SOPInstanceUID = f"{LINK}.10{i}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        _common(ds, study_uid)
        ds.ImageComments = "C:\\PACS\\PHIPATHNAME\\img.dcm"
        cts.append((f, ds))
    first = cts[0][1].SOPInstanceUID
    for _f, ds in cts[1:]:
        ref = Dataset()
        ref.ReferencedSOPClassUID = ds.SOPClassUID
        ref.ReferencedSOPInstanceUID = first
        ds.ReferencedImageSequence = Sequence([ref])
        src = Dataset()
        src.ReferencedSOPClassUID = ds.SOPClassUID
        src.ReferencedSOPInstanceUID = first
        ds.SourceImageSequence = Sequence([src])
    for _f, ds in cts[1:]:  # two parts of one concatenation
        ds.ConcatenationUID = f"{LINK}.50"
        ds.SOPInstanceUIDOfConcatenationSource = f"{LINK}.51"
        ds.ConcatenationFrameOffsetNumber = 0
    for f, ds in cts:
        ds.save_as(f)
    objs = {os.path.basename(f): ds for f, ds in cts}

    sr = Dataset()
    sr.file_meta = pydicom.dataset.FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.SOPClassUID = SR_SOP_CLASS
    sr.SOPInstanceUID = f"{LINK}.200"
    sr.file_meta.MediaStorageSOPClassUID = sr.SOPClassUID
    sr.file_meta.MediaStorageSOPInstanceUID = sr.SOPInstanceUID
    sr.SeriesInstanceUID = f"{LINK}.201"
    sr.Modality = "SR"
    sr.ValueType = "CONTAINER"
    sr.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
    sr.ContinuityOfContent = "SEPARATE"
    sr.CompletionFlag = "COMPLETE"
    sr.CompletionFlagDescription = "PHICOMPLETION by Smith"
    sr.VerificationFlag = "VERIFIED"
    obs = Dataset()
    obs.VerifyingObserverName = "PHIVERIFIER^Anna"
    obs.VerifyingOrganization = "General Hospital"
    obs.VerificationDateTime = "20240315101500"
    obs.VerifyingObserverIdentificationCodeSequence = Sequence()
    sr.VerifyingObserverSequence = Sequence([obs])
    pname = Dataset()
    pname.RelationshipType = "HAS OBS CONTEXT"
    pname.ValueType = "PNAME"
    pname.ConceptNameCodeSequence = Sequence([_code("121008", "DCM", "Person Observer Name")])
    pname.PersonName = "PHIOBSERVER^Bob"
    text = Dataset()
    text.RelationshipType = "CONTAINS"
    text.ValueType = "TEXT"
    text.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding")])
    text.TextValue = "Seen by Dr PHIDOCTOR for PHITOPNAME"
    text.PatientName = "PHISRNAME^Nested"  # names and IDs where no template puts them
    text.PatientID = "PHISRID"
    inner = Dataset()
    inner.RelationshipType = "HAS PROPERTIES"
    inner.ValueType = "PNAME"
    inner.ConceptNameCodeSequence = Sequence([_code("121008", "DCM", "Person Observer Name")])
    inner.PersonName = "PHIPERSON^Deep"
    text.ContentSequence = Sequence([inner])
    img = Dataset()
    img.RelationshipType = "CONTAINS"
    img.ValueType = "IMAGE"
    img.ConceptNameCodeSequence = Sequence([_code("121080", "DCM", "Best illustration")])
    ref = Dataset()
    ref.ReferencedSOPClassUID = cts[0][1].SOPClassUID
    ref.ReferencedSOPInstanceUID = first
    img.ReferencedSOPSequence = Sequence([ref])
    sr.ContentSequence = Sequence([pname, text, img])
    ev_sop = Dataset()
    ev_sop.ReferencedSOPClassUID = cts[0][1].SOPClassUID
    ev_sop.ReferencedSOPInstanceUID = first
    ev_series = Dataset()
    ev_series.SeriesInstanceUID = cts[0][1].SeriesInstanceUID
    ev_series.ReferencedSOPSequence = Sequence([ev_sop])
    ev = Dataset()
    ev.StudyInstanceUID = study_uid
    ev.ReferencedSeriesSequence = Sequence([ev_series])
    sr.CurrentRequestedProcedureEvidenceSequence = Sequence([ev])
    _common(sr, study_uid)
    os.makedirs(root / "DOE_PHIPATHNAME" / "sr")
    sr.save_as(root / "DOE_PHIPATHNAME" / "sr" / "report.dcm", enforce_file_format=True)
    objs["report.dcm"] = sr

    pdf = _pdf_dataset(study_uid)
    _common(pdf, study_uid)
    pdf.save_as(root / "DOE_PHIPATHNAME" / "sr" / "letter.dcm", enforce_file_format=True)
    objs["letter.dcm"] = pdf
    return truth, objs


def _pdf_dataset(study_uid=None):
    pdf = Dataset()
    pdf.file_meta = pydicom.dataset.FileMetaDataset()
    pdf.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    pdf.SOPClassUID = PDF_SOP_CLASS
    pdf.SOPInstanceUID = f"{LINK}.300"
    pdf.file_meta.MediaStorageSOPClassUID = pdf.SOPClassUID
    pdf.file_meta.MediaStorageSOPInstanceUID = pdf.SOPInstanceUID
    pdf.SpecificCharacterSet = "ISO_IR 100"
    pdf.PatientName, pdf.PatientID, pdf.PatientBirthDate, pdf.PatientSex = \
        "PHITOPNAME^John", "PHITOPID", BIRTH, "M"
    pdf.StudyInstanceUID = study_uid or f"{LINK}.1"
    pdf.SeriesInstanceUID = f"{LINK}.301"
    pdf.StudyDate, pdf.StudyTime, pdf.AccessionNumber = "20240315", "101500", "ACC1"
    pdf.ReferringPhysicianName, pdf.StudyID = "Smith^Anna", "S1"
    pdf.Modality, pdf.SeriesNumber, pdf.InstanceNumber = "DOC", 1, 1
    pdf.ConversionType = "WSD"
    pdf.Manufacturer = "ACME"
    pdf.ContentDate, pdf.ContentTime = "20240315", "101500"
    pdf.AcquisitionDateTime = "20240315101500"
    pdf.BurnedInAnnotation = "NO"
    pdf.DocumentTitle = "PHIDOCTITLE letter"
    pdf.ConceptNameCodeSequence = Sequence()
    pdf.MIMETypeOfEncapsulatedDocument = "application/pdf"
    doc = minimal_pdf("PHIPDFTEXT discharge letter")
    pdf.EncapsulatedDocumentLength = len(doc)
    pdf.EncapsulatedDocument = doc + b"\0" * (len(doc) % 2)
    return pdf


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    truth, objs = _make_study(root / "src")
    return root / "src", truth, objs


@pytest.fixture(scope="module")
def anon_out(study, tmp_path_factory):
    src, _, _ = study
    out = tmp_path_factory.mktemp("anon") / "out"
    rep = anonymize_files(src, out, key="k1")
    return out, rep


def _files(root):
    return sorted(os.path.join(dp, f) for dp, _, fs in os.walk(root) for f in fs)


def _haystacks(root):
    blob = b"\n".join([root.as_posix().encode()] + [
        p.encode() + b"\n" + open(p, "rb").read() for p in _files(root)])
    return blob.lower()


def _uids(ds) -> set[str]:
    out = set()
    for e in ds.iterall():
        if e.VR == "UI" and e.value:
            vals = e.value if isinstance(e.value, (list, pydicom.multival.MultiValue)) \
                else [e.value]
            out.update(str(v) for v in vals if not is_well_known_uid(str(v)))
    return out


def test_study_really_holds_every_marker(study):
    """The test has teeth: each marker is in the source bytes or names."""
    src, _, _ = study
    hay = b"\n".join(p.encode() + open(p, "rb").read() for p in _files(src)).lower()
    for m in MARKERS:
        assert m.lower().encode() in hay or m.lower().encode("utf-16-le") in hay, m


def test_zero_markers_in_output_bytes_and_names(anon_out, study):
    out, rep = anon_out
    _, _, objs = study
    assert len(rep.written) == len(objs) and rep.skipped == [] and rep.failed == []
    hay = _haystacks(out).replace(str(out).lower().encode(), b"")
    leaks = [m for m in MARKERS if m.lower().encode() in hay
             or m.lower().encode("utf-16-le") in hay]
    assert leaks == []


def test_nested_patient_names_and_ids_get_the_pseudonym(anon_out):
    out, _ = anon_out
    anon = Anonymizer(key="k1")
    for f in _files(out):
        ds = pydicom.dcmread(f)
        assert ds.PatientID == anon.pseudonym("PHITOPID")
        for e in ds.iterall():
            if e.tag in (0x00100010, 0x00100020) and e.value:
                assert str(e.value).startswith("ANON-"), (f, e)
        if "AnatomicRegionSequence" in ds:
            region = ds.AnatomicRegionSequence[0]
            assert region.PatientID == anon.pseudonym("PHIIDDEEP1")
            deep = region.AnatomicRegionModifierSequence[0].AnatomicRegionModifierSequence[0]
            assert deep.PatientID == anon.pseudonym("PHIIDDEEP3")
            assert deep.PatientName == anon.pseudonym("PHIIDDEEP3")  # its own ID's pseudonym


def test_unlisted_public_removed_and_person_names_neutral(anon_out):
    out, _ = anon_out
    for f in _files(out):
        ds = pydicom.dcmread(f)
        for kw in ("ReferencedFileID", "RetrieveURL", "CompletionFlagDescription"):
            assert kw not in ds, kw
        assert 0x0010FFF0 not in ds and 0x00121000 not in ds and 0x0008FFF2 not in ds
        assert not any(e.tag.is_private for e in ds.iterall())
        for e in ds.iterall():
            if e.VR == "PN" and e.tag != 0x00100010 and e.value:
                assert "ANON-" not in str(e.value) and "^" in str(e.value), e
        if "OperatorsName" in ds:
            assert ds.OperatorsName in ("", None)
        # what the allow-list keeps: image pixel, geometry, technique, codes
        if ds.Modality == "CT":
            for kw in ("Rows", "Columns", "PixelSpacing", "ImageOrientationPatient",
                       "ImagePositionPatient", "RescaleSlope", "WindowCenter"):
                assert kw in ds, kw
            assert ds.AnatomicRegionSequence[0].CodeMeaning == "Head"


def test_every_non_well_known_uid_is_remapped(anon_out, study):
    out, _ = anon_out
    _, _, objs = study
    original = set().union(*(_uids(ds) for ds in objs.values()))
    assert any(u.startswith(LINK) for u in original) and len(original) > 40
    anon = Anonymizer(key="k1")
    for f in _files(out):
        ds = pydicom.dcmread(f)
        got = _uids(ds) | {ds.file_meta.MediaStorageSOPInstanceUID}
        assert not got & original
        assert all(u.startswith("2.25.") for u in got), got
        assert ds.SOPClassUID in (SR_SOP_CLASS, PDF_SOP_CLASS, objs["report.dcm"].SOPClassUID,
                                  "1.2.840.10008.5.1.4.1.1.2")
        if "ReferencedImageSequence" in ds:  # the two parts of the concatenation
            assert ds.SOPInstanceUIDOfConcatenationSource == anon.uid(f"{LINK}.51")
            assert ds.ConcatenationUID == anon.uid(f"{LINK}.50")
        assert ds.MultiFrameSourceSOPInstanceUID == anon.uid(
            f"{LINK}.{100 + _unlisted_instance_uid_tags().index(0x00081167)}")


def test_references_resolve_after_remapping(anon_out):
    out, _ = anon_out
    by_sop = {pydicom.dcmread(f).SOPInstanceUID: pydicom.dcmread(f) for f in _files(out)}
    sr = next(ds for ds in by_sop.values() if ds.Modality == "SR")
    cts = [ds for ds in by_sop.values() if ds.Modality == "CT"]
    ev = sr.CurrentRequestedProcedureEvidenceSequence[0]
    ev_series = ev.ReferencedSeriesSequence[0]
    assert ev.StudyInstanceUID == cts[0].StudyInstanceUID == sr.StudyInstanceUID
    assert ev_series.SeriesInstanceUID == cts[0].SeriesInstanceUID
    assert ev_series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID in by_sop
    img = sr.ContentSequence[-1]
    assert img.ReferencedSOPSequence[0].ReferencedSOPInstanceUID in by_sop
    with_refs = [ds for ds in cts if "ReferencedImageSequence" in ds]
    assert len(with_refs) == 2
    for ds in with_refs:
        assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID in by_sop
        assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID in by_sop
    assert len({ds.ConcatenationUID for ds in with_refs}) == 1


def test_same_key_byte_identical_other_key_no_shared_uid(anon_out, study, tmp_path):
    out, rep = anon_out
    src, _, _ = study
    again = anonymize_files(src, tmp_path / "again", key="k1")
    other = anonymize_files(src, tmp_path / "other", key="k2")
    rel = [os.path.relpath(p, out) for p in sorted(rep.written)]
    assert rel == [os.path.relpath(p, tmp_path / "again") for p in sorted(again.written)]
    for r in rel:
        assert open(out / r, "rb").read() == open(tmp_path / "again" / r, "rb").read()
    a = set().union(*(_uids(pydicom.dcmread(f)) for f in rep.written))
    b = set().union(*(_uids(pydicom.dcmread(f)) for f in other.written))
    assert a and b and not a & b


def test_pixels_and_pdf_document(anon_out, study):
    out, _ = anon_out
    src, _, objs = study
    anon = Anonymizer(key="k1")
    for ds in objs.values():
        new_sop = anon.uid(ds.SOPInstanceUID)
        (f,) = [p for p in _files(out) if os.path.basename(p) == new_sop + ".dcm"]
        new = pydicom.dcmread(f)
        if "PixelData" in ds:
            assert new.PixelData == ds.PixelData
        if "EncapsulatedDocument" in ds:
            doc = new.EncapsulatedDocument
            assert doc.startswith(b"%PDF-") and b"%%EOF" in doc  # a valid dummy, Type 1
            assert new.EncapsulatedDocumentLength == len(doc.rstrip(b"\0"))
            assert new.MIMETypeOfEncapsulatedDocument == "application/pdf"
            assert new.DocumentTitle in ("", None)  # Type 2: emptied, not removed


@pytest.mark.skipif(shutil.which("dciodvfy") is None,
                    reason="dciodvfy (Debian/Ubuntu package dicom3tools) is not installed")
def test_no_new_dciodvfy_errors(tmp_path):
    import re

    def errors(path):
        r = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, text=True)
        return {re.sub(r"= <[^>]*>", "= <>", re.sub(r"\s+", " ", line.strip()))
                for line in (r.stdout + r.stderr).splitlines() if line.startswith("Error")}

    src = tmp_path / "src"
    src.mkdir()
    names = ["CT_small.dcm", "MR_small.dcm", "test-SR.dcm", "waveform_ecg.dcm"]
    for n in names:
        shutil.copy(get_testdata_file(n), src / n)
    qa = os.path.join(os.path.dirname(__file__), "data", "dcm_qa")
    for sub in ("philips_3DpCASL_enhanced", "philips_3DpCASL_classic"):
        first = sorted(os.listdir(os.path.join(qa, sub, "dcm")))[0]
        shutil.copy(os.path.join(qa, sub, "dcm", first), src / f"{sub}.dcm")
        names.append(f"{sub}.dcm")  # enhanced MR; a Type 3 sequence the table empties
    _pdf_dataset().save_as(src / "pdf.dcm", enforce_file_format=True)
    anon = Anonymizer(key="k")
    rep = anonymize_files(src, tmp_path / "out", key="k")
    assert len(rep.written) == len(names) + 1
    seen_errors = 0
    for n in names + ["pdf.dcm"]:
        before = errors(src / n)
        seen_errors += len(before)
        sop = anon.uid(pydicom.dcmread(src / n).SOPInstanceUID)
        (f,) = [p for p in rep.written if os.path.basename(p) == sop + ".dcm"]
        assert errors(f) - before == set(), n
    assert seen_errors > 0  # the comparison sees dciodvfy's errors at all


def test_clean_descriptors_scrubs_dates_and_titled_names(tmp_path):
    src = tmp_path / "src"
    truth = write_series(src, np.zeros((1, 8, 8), np.int16))
    ds = pydicom.dcmread(truth.files[0])
    phrases = ["15/03/2024", "Mar 15 2024", "15.03.2024", "2024-03-15", "20240315",
               "March 15, 2024", "15-Mar-2024", "3/15/24", "Dr PHIDOCTOR", "Dr. PHIDOC Two",
               "Prof PHIPROF", "Mrs PHIMRS", "PHIDEGREE MD"]
    ds.StudyDescription = "CT head follow-up " + "; ".join(phrases[:2])
    ds.SeriesDescription = "; ".join(phrases[2:5])
    ds.ImageComments = "follow-up " + "; ".join(phrases[5:])
    ds.save_as(truth.files[0])
    rep = anonymize_files(src, tmp_path / "o", Options(clean_descriptors=True), key="k")
    out = pydicom.dcmread(rep.written[0])
    text = " ".join(str(out.get(k, "")) for k in ("StudyDescription", "SeriesDescription",
                                                   "ImageComments"))
    assert "follow-up" in text and "CT head" in text and "Dr " in text
    for leak in ("2024", "15", "PHIDOC", "PHIPROF", "PHIMRS", "PHIDEGREE", "Mar", "24"):
        assert leak not in text, (leak, text)


def _malformed_folder(root, n_good=6):
    src = root / "src"
    truth = write_series(src, np.zeros((n_good, 8, 8), np.int16))
    ct = open(get_testdata_file("CT_small.dcm"), "rb").read()
    (src / "trailing.dcm").write_bytes(ct + b"\x10\x00\x10\x00garbage!!")
    (src / "junk.dcm").write_bytes(b"\0" * 128 + b"DICM" + os.urandom(300))
    shutil.copy(get_testdata_file("ExplVR_LitEndNoMeta.dcm"), src / "nometa.dcm")
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    del ds.SOPInstanceUID
    del ds.file_meta.MediaStorageSOPInstanceUID
    ds.save_as(src / "nosop.dcm")
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    ds.SOPInstanceUID = ["1.2.3.4", "1.2.3.5"]
    ds.save_as(src / "multi.dcm")
    (src / "README.txt").write_text("not dicom")
    return src, truth


def test_malformed_files_are_skipped_the_rest_completes(tmp_path, capsys):
    src, truth = _malformed_folder(tmp_path)
    code = main(["anonymize", str(src), str(tmp_path / "o"), "--key", "k"])
    out, err = capsys.readouterr()
    written = _files(tmp_path / "o")
    # the good series, the meta-less file, trailing garbage (pydicom stops at it), and
    # the multi-valued SOPInstanceUID (named from a hash, not a Python list)
    assert len(written) == len(truth.files) + 3
    assert not any("[" in p or "'" in p for p in written)
    assert all(is_valid_uid(os.path.basename(p)[:-4]) for p in written)
    assert "junk.dcm" in err and "nosop.dcm" in err and "SOP Instance UID" in err
    assert "2 could not be de-identified" in out and "README.txt" in err
    assert code == 3
    assert "Traceback" not in err


def test_retained_crafted_uids_never_leave_outdir(tmp_path):
    src = tmp_path / "src"
    truth = write_series(src, np.zeros((3, 8, 8), np.int16))
    victim = tmp_path / "victim.dcm"
    victim.write_bytes(b"precious")
    crafted = ["../../victim", str(tmp_path / "victim"), "1.2.3/../../x"]
    for f, uid in zip(sorted(truth.files), crafted, strict=True):
        ds = pydicom.dcmread(f)
        ds.SOPInstanceUID = uid
        ds.SeriesInstanceUID = "../.."
        ds.save_as(f)
    out = tmp_path / "deep" / "out"
    rep = anonymize_files(src, out, Options(retain_uids=True), overwrite=True)
    assert len(rep.written) == 3
    assert victim.read_bytes() == b"precious"
    real_out = os.path.realpath(out)
    for p in rep.written:
        assert os.path.realpath(p).startswith(real_out + os.sep)
        assert is_valid_uid(os.path.basename(p)[:-4])
    assert sorted(_files(tmp_path / "deep")) == sorted(rep.written)
    ds = pydicom.dcmread(rep.written[0])
    assert ds.SOPInstanceUID in crafted  # retained as asked, only the name is safe
    with pytest.raises(Exception, match="SOP Instance UID"):
        output_path(out, Dataset())


def test_info_deidentify_prints_no_paths(tmp_path, capsys):
    root = tmp_path / "r" / "d" / "DOE_JANE"
    truth = write_series(root, np.zeros((3, 8, 8), np.int16), prefix="IM")
    shutil.copy(truth.files[0], root / "COPY_OF_DOE.dcm")  # a duplicate SOP instance
    rows = metadata_table(tmp_path / "r", ["Modality"], deidentify=True, as_frame=False)
    text = repr(rows)
    assert "DOE" not in text and str(tmp_path) not in text and "/" not in text
    assert any("duplicate of <file> (same SOPInstanceUID)" in str(r.get("problems", ""))
               for r in rows)  # the message stays, its path goes
    assert main(["info", str(tmp_path / "r"), "--tags", "Modality", "--deidentify",
                 "--level", "instance", "--csv", "-"]) == 0
    printed = capsys.readouterr().out
    assert "DOE" not in printed and str(tmp_path) not in printed


def test_keep_unlisted_public_option(tmp_path):
    src = tmp_path / "src"
    truth = write_series(src, np.zeros((1, 8, 8), np.int16))
    ds = pydicom.dcmread(truth.files[0])
    ds.CompletionFlagDescription = "kept on request"
    ds.MultiFrameSourceSOPInstanceUID = LINK
    ds.add_new(0x0010FFF0, "LO", "unknown to the dictionary")
    ds.save_as(truth.files[0])
    for keep in (False, True):
        rep = anonymize_files(src, tmp_path / f"o{keep}", Options(keep_unlisted_public=keep),
                              key="k")
        out = pydicom.dcmread(rep.written[0])
        assert ("CompletionFlagDescription" in out) is keep
        assert out.MultiFrameSourceSOPInstanceUID == Anonymizer(key="k").uid(LINK)
        assert 0x0010FFF0 not in out  # never: its content cannot be interpreted
    assert main(["anonymize", str(src), str(tmp_path / "cli"), "-q", "--key", "k",
                 "--keep-unlisted-public"]) == 0
    (f,) = _files(tmp_path / "cli")
    assert pydicom.dcmread(f).CompletionFlagDescription == "kept on request"


def test_allowlist_names_real_dictionary_attributes():
    from napari_dicomtools.core.anonymize import public_allowlist

    vrs, groups, kept, replaced = public_allowlist()
    assert "LO" not in vrs and 0x0010 in groups and 0x0004 in groups
    assert all(get_entry(t) for t in kept | set(replaced))
    assert dictionary_VR(0x00420010) == "ST" and replaced[0x00420010] == "Z"
    # metadata tables' --deidentify shares the decision
    from napari_dicomtools.core.anonymize import removed_by_profile

    assert removed_by_profile(0x0040A492)  # CompletionFlagDescription: unlisted free text
    assert not removed_by_profile(0x0040A492, Options(keep_unlisted_public=True))
    assert removed_by_profile(0x00081167)  # MultiFrameSourceSOPInstanceUID: remapped
    assert not removed_by_profile(0x00180050) and not removed_by_profile(0x00181210)


_KILL_SCRIPT = r"""
import sys, time
from napari_dicomtools.core import anonymize as an
_orig = an._one
def slow(*a, **k):
    time.sleep(0.1)
    return _orig(*a, **k)
an._one = slow
print("started", flush=True)
an.anonymize_files(sys.argv[1], sys.argv[2], key="k", workers=2)
"""


def _children(pid: int) -> list[int]:
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(d))
    return kids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and fork")
def test_kill_9_of_the_parent_ends_its_workers(tmp_path):
    write_series(tmp_path / "src", np.zeros((80, 8, 8), np.int16))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(tmp_path / "src"),
                             str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "started"
        deadline = time.time() + 20
        workers = []
        while time.time() < deadline and not (len(workers) >= 2 and os.path.isdir(out)
                                              and len(_files(out)) >= 2):
            time.sleep(0.05)
            workers = [p for p in _children(proc.pid) if _alive(p)]
        assert len(workers) >= 2, "the pool never started"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        deadline = time.time() + 5
        while time.time() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.05)
        assert not any(_alive(p) for p in workers), "workers outlived their parent"
        n = len(_files(out))
        time.sleep(0.5)
        assert len(_files(out)) == n < 80  # nothing written after the kill
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "test-SR.dcm",
                                  "JPEG2000.dcm", "MR_small_bigendian.dcm", "SC_rgb_jpeg.dcm",
                                  "rtplan.dcm"])
def test_fast_writer_writes_what_pydicom_writes(name):
    """Kept elements are copied undecoded and replaced ones written as raw bytes: the file is
    byte for byte what decoding everything and pydicom's save_as give."""
    import io

    from napari_dicomtools.core import anonymize as an

    fast = pydicom.dcmread(get_testdata_file(name))
    an.Anonymizer(key="k").dataset(fast)
    slow = pydicom.dcmread(get_testdata_file(name))
    for elem in slow.iterall():  # decode every element, as pydicom's writer would need
        _ = elem.value
    an.Anonymizer(key="k").dataset(slow)
    for elem in slow.iterall():  # and the values set as raw bytes: pydicom encodes them
        _ = elem.value
    ref = io.BytesIO()
    slow.save_as(ref, enforce_file_format=True)
    assert an.encode_file(fast) == ref.getvalue()


def test_malformed_lengths_cannot_smuggle_text(tmp_path):
    """A damaged or crafted length makes a kept element swallow the elements after it: the
    swallowed names must not be copied as that element's 'value'."""
    src = tmp_path / "src"
    truth = write_series(src, np.zeros((1, 8, 8), np.int16))
    ds = pydicom.dcmread(truth.files[0])
    swallowed = b"Scanner X \x10\x00\x10\x00\x0c\x00\x00\x00PHISWALLOW^A"  # LO + a PN element
    ds._dict[Tag(0x00081090)] = RawDataElement(Tag(0x00081090), "LO", len(swallowed),
                                               swallowed, 0, False, True)
    binary = b"\x01\x00PHIBINARY!"  # US with VM 1 holding 12 bytes
    ds._dict[Tag(0x00280106)] = RawDataElement(Tag(0x00280106), "US", len(binary), binary, 0,
                                               False, True)
    cs = b"ORIGINAL\\PHICSLONGVALUE1234"  # 18 characters: a CS value has at most 16
    ds._dict[Tag(0x00080008)] = RawDataElement(Tag(0x00080008), "CS", len(cs), cs, 0, False,
                                               True)
    ds.save_as(truth.files[0])
    rep = anonymize_files(src, tmp_path / "o", key="k")
    data = open(rep.written[0], "rb").read()
    for marker in (b"PHISWALLOW", b"PHIBINARY", b"PHICSLONG"):
        assert marker not in data
    out = pydicom.dcmread(rep.written[0])
    for kw in ("ManufacturerModelName", "SmallestImagePixelValue", "ImageType"):
        assert kw not in out, kw
    assert out.Modality == ds.Modality and out.Rows == 8  # well-formed ones stay
