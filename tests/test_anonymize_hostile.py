"""A leak hunt beyond the planted markers of test_anonymize_release.py (issue 18): PHI where
de-identifiers have missed it (nested sequences, private tags with and without creators,
sequences hidden in UN, overlay and curve text, person names with ideographic and phonetic
groups, SR content, the file meta and preamble, deflated and big-endian files, DICOMDIRs,
trailing padding, original-attribute records, text inside compressed Pixel Data: JPEG,
JPEG-LS and JPEG 2000 comments and application segments, JP2 boxes), each file through both paths: the byte-level
path (core/_anonfast.py, where it takes the file) and the pydicom path. Every output byte is
searched for every marker in ASCII/UTF-8, UTF-16 (both byte orders), Latin-1 and the
Japanese encodings, any case; a deflated output is searched inflated."""

from __future__ import annotations

import io
import os
import struct
import warnings
import zlib

import pydicom
import pytest
from pixeltext_cases import CASES as PIXEL_CASES
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
)

from napari_dicomtools.core import anonymize as an
from napari_dicomtools.core._anonfast import Decline, anonymize_bytes

BIRTH = "19650304"
#: markers made at run time (the others are the PHX words written in this file)
_MADE: set[str] = set()


def _base(name: str) -> Dataset:
    """CT_small.dcm with a patient of its own (the name is a marker too)."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName = f"PHX{name}TOP^Jane"
    ds.PatientID = f"PHX{name}MRN"
    _MADE.update((f"PHX{name}TOP", f"PHX{name}MRN"))
    ds.PatientBirthDate = BIRTH
    return ds


def _item(**values: object) -> Dataset:
    it = Dataset()
    for k, v in values.items():
        setattr(it, k, v)
    return it


def _deep() -> Dataset:
    """PHI three sequences deep, in a kept (coded) sequence: names, IDs, text, dates,
    institution, private elements with and without their creator."""
    ds = _base("DEEP")
    leaf = _item(PatientName="PHXDEEPNAME^Leaf", PatientID="PHXDEEPID",
                 TextValue="seen by PHXDEEPTEXT", PersonName="PHXDEEPPERSON^Dr",
                 ReferringPhysicianName="PHXDEEPREFER", InstitutionName="PHXDEEPINST",
                 StudyDate=BIRTH, CodeValue="T-A0100", CodingSchemeDesignator="SRT",
                 CodeMeaning="Brain")
    leaf.add_new(0x00291010, "LO", "PHXDEEPORPHAN")  # private, no creator
    block = leaf.private_block(0x0031, "PHXDEEPCREATOR", create=True)
    block.add_new(0x10, "PN", "PHXDEEPPRIVPN")
    middle = _item(CodeValue="T-D0010", CodingSchemeDesignator="SRT", CodeMeaning="Head",
                   AnatomicRegionModifierSequence=Sequence([leaf]))
    top = _item(CodeValue="T-D1100", CodingSchemeDesignator="SRT", CodeMeaning="Head",
                AnatomicRegionModifierSequence=Sequence([middle]))
    ds.AnatomicRegionSequence = Sequence([top])
    return ds


def _private() -> Dataset:
    """Private elements: under a creator (LO, PN, UT, a sequence holding a patient), without
    one, and a creator whose own value is PHI."""
    ds = _base("PRIV")
    block = ds.private_block(0x0029, "ACME 1.0", create=True)
    block.add_new(0x10, "LO", "PHXPRIVLO")
    block.add_new(0x11, "PN", "PHXPRIVPN^X")
    block.add_new(0x12, "UT", "PHXPRIVUT")
    block.add_new(0x13, "SQ", Sequence([_item(PatientName="PHXPRIVSQNAME")]))
    ds.add_new(0x00331010, "LO", "PHXORPHANLO")  # no (0033,0010) creator
    ds.add_new(0x00331011, "UN", b"PHXORPHANUN")
    ds.add_new(0x00350010, "LO", "PHXCREATORNAME")
    ds.add_new(0x00351001, "OB", b"PHXCREATORVAL")
    return ds


def _other_ids() -> Dataset:
    ds = _base("OIDS")
    ds.OtherPatientIDsSequence = Sequence([
        _item(PatientID="PHXOIDSEQ1", IssuerOfPatientID="PHXOIDISSUER", TypeOfPatientID="TEXT"),
        _item(PatientID="PHXOIDSEQ2", IssuerOfPatientIDQualifiersSequence=Sequence([
            _item(UniversalEntityID="PHXOIDUNIVERSAL", UniversalEntityIDType="DNS")]))])
    ds.OtherPatientIDs = ["PHXOIDPLAIN1", "PHXOIDPLAIN2"]
    ds.OtherPatientNames = "PHXOIDOTHERNAME"
    ds.PatientBirthName = "PHXOIDBIRTHNAME"
    ds.PatientMotherBirthName = "PHXOIDMOTHER"
    return ds


def _implicit_item(*elements: tuple[int, bytes]) -> bytes:
    """One undefined-length item of Implicit VR elements."""
    body = b"".join(struct.pack("<HHL", t >> 16, t & 0xFFFF, len(v)) + v
                    for t, v in elements)
    return struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF) + body + \
        struct.pack("<HHL", 0xFFFE, 0xE00D, 0)


def _un_sequences() -> Dataset:
    """Sequences written as UN in an Explicit VR file (their items in Implicit VR, as an
    application that did not know the tag forwards them): a known sequence (undefined and
    defined length), an unknown public one, and a person name written as UN."""
    ds = _base("UNSQ")
    item = _implicit_item((0x00080100, b"T-D1100 "), (0x00080102, b"SRT "),
                          (0x00080104, b"Head"), (0x00100010, b"PHXUNSQNAME "),
                          (0x00100020, b"PHXUNSQID "), (0x0040A160, b"PHXUNSQTEXT "))
    undefined = item  # pydicom writes the sequence delimiter after it
    ds[0x00082218] = RawDataElement(Tag(0x00082218), "UN", 0xFFFFFFFF, undefined, 0, False,
                                    True)  # AnatomicRegionSequence
    defined = _implicit_item((0x00081150, b"1.2.840.10008.5.1.4.1.1.2\0"),
                             (0x00081155, b"1.2.3.19650304.1\0"),
                             (0x00100010, b"PHXUNSQDEFNAME"))
    ds[0x00081140] = RawDataElement(Tag(0x00081140), "UN", len(defined), defined, 0, False,
                                    True)  # ReferencedImageSequence
    ds[0x0008FFF4] = RawDataElement(Tag(0x0008FFF4), "UN", 0xFFFFFFFF, undefined, 0, False,
                                    True)  # unknown public tag
    ds[0x00081070] = RawDataElement(Tag(0x00081070), "UN", 14, b"PHXUNOPERATOR ", 0, False,
                                    True)  # OperatorsName
    return ds


def _overlays() -> Dataset:
    ds = _base("OVL")
    ds.add_new(0x60000022, "LO", "PHXOVLDESC")
    ds.add_new(0x60001500, "LO", "PHXOVLLABEL")
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60000011, "US", 8)
    ds.add_new(0x60003000, "OW", b"PHXOVLDATA")
    ds.add_new(0x60020022, "LO", "PHXOVL2DESC")
    ds.add_new(0x50002500, "LO", "PHXCURVELABEL")
    ds.add_new(0x50000022, "LO", "PHXCURVEDESC")
    ds.add_new(0x50003000, "OB", b"PHXCURVEDATA")
    return ds


#: (PatientName, ReferringPhysicianName) with ideographic and phonetic groups, per charset
_GROUPS = {
    "jis": (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう",
            "Suzuki^Hanako=鈴木^花子=すずき^はなこ"),
    "utf8": (["ISO_IR 192"], "Wang^XiaoDong=王^小東=", "Zhou^Jielun=周^杰倫="),
    "latin1": (["ISO_IR 100"], "Müller^Jürgen=Müller^Jürgen=", "Größe^Ändrea"),
}


def _groups(charset: str):
    def build() -> Dataset:
        cs, name, doctor = _GROUPS[charset]
        ds = _base("PN" + charset.upper())
        ds.SpecificCharacterSet = cs
        ds.PatientName, ds.ReferringPhysicianName = name, doctor
        ds.PerformingPhysicianName = [doctor, name]
        ds.AnatomicRegionSequence = Sequence([_item(
            CodeValue="T-D1100", CodingSchemeDesignator="SRT", CodeMeaning="Head",
            PatientName=name, PersonName=doctor)])
        ds.OtherPatientNames = [name, doctor]
        return ds
    return build


def _sr() -> Dataset:
    """A Comprehensive SR: text, person names, dates and UIDs in content items three deep,
    observers and verifiers."""
    ds = _base("SR")
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.Modality = "SR"
    for kw in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
               "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation"):
        if kw in ds:
            delattr(ds, kw)

    def concept(value: str, meaning: str) -> Sequence:
        return Sequence([_item(CodeValue=value, CodingSchemeDesignator="DCM",
                               CodeMeaning=meaning)])

    text = _item(RelationshipType="CONTAINS", ValueType="TEXT",
                 ConceptNameCodeSequence=concept("121071", "Finding"),
                 TextValue="PHXSRTEXT seen, MRN PHXSRMRN")
    person = _item(RelationshipType="HAS OBS CONTEXT", ValueType="PNAME",
                   ConceptNameCodeSequence=concept("121008", "Person Observer Name"),
                   PersonName="PHXSRPERSON^Anna")
    when = _item(RelationshipType="CONTAINS", ValueType="DATETIME",
                 ConceptNameCodeSequence=concept("111526", "DateTime"),
                 DateTime=BIRTH + "101010")
    uid = _item(RelationshipType="CONTAINS", ValueType="UIDREF",
                ConceptNameCodeSequence=concept("121232", "Source"),
                UID=f"1.2.826.0.1.{BIRTH}.7")
    patient = _item(RelationshipType="HAS OBS CONTEXT", ValueType="TEXT",
                    ConceptNameCodeSequence=concept("121030", "Subject ID"),
                    TextValue="PHXSRSUBJECTID")
    level3 = _item(RelationshipType="CONTAINS", ValueType="CONTAINER",
                   ContinuityOfContent="SEPARATE",
                   ConceptNameCodeSequence=concept("111028", "Image Library"),
                   ContentSequence=Sequence([text, person, when, uid]))
    level2 = _item(RelationshipType="CONTAINS", ValueType="CONTAINER",
                   ContinuityOfContent="SEPARATE",
                   ConceptNameCodeSequence=concept("121070", "Findings"),
                   ContentSequence=Sequence([level3, patient]))
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = concept("18748-4", "Report")
    ds.ContentSequence = Sequence([level2])
    ds.VerifyingObserverSequence = Sequence([_item(
        VerifyingObserverName="PHXSRVERIFIER", VerifyingOrganization="PHXSRORG",
        VerificationDateTime=BIRTH + "120000")])
    ds.AuthorObserverSequence = Sequence([_item(
        ObserverType="PSN", PersonName="PHXSRAUTHOR",
        PersonIdentificationCodeSequence=concept("PHXSRCODEID", "PHXSRCODENAME"),
        InstitutionName="PHXSRAUTHORINST")])
    return ds


def _meta() -> Dataset:
    """PHI in the file meta (AE titles, private information, implementation name) and in the
    preamble."""
    ds = _base("META")
    ds.preamble = b"PHXPREAMBLE".ljust(128, b"\0")
    fm = ds.file_meta
    fm.SourceApplicationEntityTitle = "PHXSRCAE"
    fm.SendingApplicationEntityTitle = "PHXSENDAE"
    fm.ReceivingApplicationEntityTitle = "PHXRECVAE"
    fm.ImplementationVersionName = "PHXIMPL"
    fm.PrivateInformationCreatorUID = f"1.2.826.0.1.{BIRTH}.9"
    fm.PrivateInformation = b"PHXPRIVINFO!"
    return ds


def _padding_and_history() -> Dataset:
    """After Pixel Data: trailing padding and a digital signature; original attribute
    records (the values before an earlier change) and a request with IDs."""
    ds = _base("TAIL")
    ds.add_new(0xFFFCFFFC, "OB", b"PHXPADDING")
    ds.add_new(0xFFFAFFFA, "SQ", Sequence([_item(MACIDNumber=1, CertificateType="X509_1",
                                                  DigitalSignatureUID="1.2.3.4")]))
    ds.OriginalAttributesSequence = Sequence([_item(
        SourceOfPreviousValues="PHXSOURCEPREV", ReasonForTheAttributeModification="COERCE",
        ModifiedAttributesSequence=Sequence([_item(PatientName="PHXORIGNAME",
                                                   PatientID="PHXORIGID")]))])
    ds.RequestAttributesSequence = Sequence([_item(
        RequestedProcedureID="PHXREQPROC", ScheduledProcedureStepID="PHXREQSTEP",
        RequestedProcedureDescription="PHXREQDESC")])
    ds.AdditionalPatientHistory = "PHXHISTORY"
    ds.RetrieveAETitle = "PHXRETRIEVEAE"
    ds.PerformedStationAETitle = "PHXSTATIONAE"
    return ds


def _pixel_text(case: str):
    """A file of tests/pixeltext_cases.py (text planted inside its compressed Pixel Data)
    with a patient of its own."""
    def build() -> Dataset:
        ds, markers = PIXEL_CASES[case]()
        tag = "".join(c for c in case.upper() if c.isalnum())[:8]
        ds.PatientName = f"PHX{tag}TOP^Jane"
        ds.PatientID = f"PHX{tag}MRN"
        ds.PatientBirthDate = BIRTH
        _MADE.update(markers | {f"PHX{tag}TOP", f"PHX{tag}MRN"})
        return ds
    return build


CASES = {
    "deep": (_deep, ExplicitVRLittleEndian),
    "deep implicit": (_deep, ImplicitVRLittleEndian),
    "private": (_private, ExplicitVRLittleEndian),
    "private implicit": (_private, ImplicitVRLittleEndian),
    "other patient ids": (_other_ids, ExplicitVRLittleEndian),
    "UN sequences": (_un_sequences, ExplicitVRLittleEndian),
    "overlays and curves": (_overlays, ExplicitVRLittleEndian),
    "names in JIS groups": (_groups("jis"), ExplicitVRLittleEndian),
    "names in UTF-8 groups": (_groups("utf8"), ExplicitVRLittleEndian),
    "names in Latin-1": (_groups("latin1"), ExplicitVRLittleEndian),
    "SR content": (_sr, ExplicitVRLittleEndian),
    "file meta and preamble": (_meta, ExplicitVRLittleEndian),
    "padding and history": (_padding_and_history, ExplicitVRLittleEndian),
    "deflated": (_deep, DeflatedExplicitVRLittleEndian),
    "deflated private": (_private, DeflatedExplicitVRLittleEndian),
    "big endian": (_deep, ExplicitVRBigEndian),
    "big endian SR": (_sr, ExplicitVRBigEndian),
    "big endian names": (_groups("utf8"), ExplicitVRBigEndian),
    "JPEG text segments": (_pixel_text("JPEG COM, Exif, ICC"), JPEGBaseline8Bit),
    "JPEG-LS text segments": (_pixel_text("JPEG-LS COM and APP1"), JPEGLSLossless),
    "JPEG 2000 comments": (_pixel_text("J2K main and tile-part COM"), JPEG2000),
    "JP2 boxes": (_pixel_text("JP2 file boxes"), JPEG2000),
    "multi-frame JPEG comments": (_pixel_text("multi-frame split no BOT"), JPEGBaseline8Bit),
}


def _markers(source: bytes) -> set[str]:
    """Every marker planted in ``source``: each PHX word of this file or made by ``_base``,
    the birth date, and the name parts of the character-set cases (in whichever encoding
    the file holds them)."""
    import re

    with open(__file__, encoding="utf-8") as f:
        words = set(re.findall(r"PHX[A-Z0-9]+", f.read())) | _MADE | {BIRTH}
    for _, name, doctor in _GROUPS.values():
        for part in re.split(r"[\^=]", name + "^" + doctor):
            if (not part.isascii() and len(part) >= 2) or len(part) >= 5:
                words.add(part)
    hay = source.lower()
    return {w for w in words if any(e in hay for e in _encodings(w))}


def _encodings(marker: str) -> set[bytes]:
    out = {marker.encode("utf-8"), marker.encode("utf-16-le"), marker.encode("utf-16-be")}
    for codec in ("latin-1", "iso2022_jp", "shift_jis", "euc_jp"):
        try:
            raw = marker.encode(codec)
        except UnicodeEncodeError:
            continue
        out.add(raw.replace(b"\x1b$B", b"").replace(b"\x1b(B", b"")
                .replace(b"\x1b(J", b""))
    return {e.lower() for e in out if len(e) >= 4}


def _inflated(data: bytes) -> bytes:
    """The data set of a deflated output, inflated (after the file meta)."""
    from napari_dicomtools.core._filemeta import read_file_meta

    _, end = read_file_meta(data, (), ValueError)
    return zlib.decompress(data[end:], -zlib.MAX_WBITS)


def _leaks(data: bytes, markers: set[str]) -> list[str]:
    hay = data.lower()
    if b"1.2.840.10008.1.2.1.99" in data[:400]:
        hay += _inflated(data).lower()
    return sorted(m for m in markers if any(e in hay for e in _encodings(m)))


def _write(case: str, tmp_path) -> bytes:
    build, syntax = CASES[case]
    ds = build()
    ds.file_meta.TransferSyntaxUID = syntax
    path = tmp_path / (case.replace(" ", "_") + ".dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if syntax == ExplicitVRBigEndian:  # values decoded, then encoded big endian
            pydicom.dcmwrite(path, ds, little_endian=False, implicit_vr=False,
                             force_encoding=True)
        else:
            ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def _pydicom_path(data: bytes, options: an.Options) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = an._read_dataset(io.BytesIO(data), "f", True)
        an.Anonymizer(options, key="k").dataset(ds, source="f")
        return an.encode_file(ds)


OPTIONS = [an.Options(), an.Options(shift_dates=True)]


@pytest.mark.parametrize("case", list(CASES))
def test_no_marker_survives_either_path(case, tmp_path):
    data = _write(case, tmp_path)
    source = data + (_inflated(data) if "deflated" in case else b"")
    markers = _markers(source)
    assert len(markers) > 3 and BIRTH in markers, markers
    if "names" in case:  # the ideographic/phonetic or accented parts are found in the source
        assert any(not m.isascii() for m in markers), markers
    for options in OPTIONS:
        slow = _pydicom_path(data, options)
        assert _leaks(slow, markers) == [], (case, "pydicom path")
        try:
            pieces, _, _ = anonymize_bytes(an.Anonymizer(options, key="k"), data, "f")
        except Decline:
            continue
        fast = b"".join(bytes(p) for p in pieces)
        assert _leaks(fast, markers) == [], (case, "byte path")
        assert fast == slow, case


def test_byte_path_takes_most_hostile_files(tmp_path):
    """The byte path is really exercised: it takes the little-endian hostile files that
    need no character set decoding."""
    taken = []
    for case in CASES:
        data = _write(case, tmp_path)
        try:
            anonymize_bytes(an.Anonymizer(key="k"), data, case)
            taken.append(case)
        except Decline:
            pass
    assert {"deep", "deep implicit", "private", "private implicit", "other patient ids",
            "overlays and curves", "SR content", "file meta and preamble", "JPEG text segments",
            "JPEG-LS text segments", "JPEG 2000 comments", "JP2 boxes",
            "multi-frame JPEG comments"} <= set(taken), taken


def test_dicomdir_records_never_reach_the_output(tmp_path):
    """A DICOMDIR (by name or not) is skipped, its instances de-identified; its records
    hold the patient's name and ID and the source file names. (One named otherwise was
    reported as a failed file, "no SOP Class/Instance UID".)"""
    from pydicom.fileset import FileSet

    src = tmp_path / "src"
    ds = _deep()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    fs = FileSet()
    fs.add(ds)
    fs.write(src)
    dicomdir = (src / "DICOMDIR").read_bytes()
    markers = {"PHXDEEPTOP", "PHXDEEPMRN"}
    assert _leaks(dicomdir, markers) == sorted(markers)
    (src / "copy").mkdir()
    (src / "copy" / "index.dcm").write_bytes(dicomdir)
    out = tmp_path / "out"
    report = an.anonymize_files(src, out, key="k", workers=1)
    assert len(report.written) == 1 and report.failed == []
    skipped = {os.path.basename(s): r for s, r in report.skipped}
    assert skipped.keys() == {"DICOMDIR", "index.dcm"}
    assert all(r.startswith("DICOMDIR index not copied") for r in skipped.values())
    for root, _, files in os.walk(out):
        for f in files:
            path = os.path.join(root, f)
            assert _leaks(path.encode() + open(path, "rb").read(),
                          _markers(dicomdir) | markers) == []


def test_every_planted_marker_is_in_some_source(tmp_path):
    """No marker is lost when the sources are written (it would then be checked nowhere)."""
    import re

    sources = b""
    for case in CASES:
        data = _write(case, tmp_path)
        sources += data + (_inflated(data) if "deflated" in case else b"")
    with open(__file__, encoding="utf-8") as f:
        builders = f.read().split("\nCASES = {")[0]  # the markers the CASES plant
    planted = set(re.findall(r"PHX[A-Z0-9]+", builders))
    assert len(planted) > 60 and planted - _markers(sources) == set()


def test_iso2022_names_get_the_pseudonym_pydicom_decodes(tmp_path):
    """Finding: a Japanese name (ISO 2022 IR 87: 7-bit bytes with escape sequences) of a
    patient without an ID got its pseudonym from the undecoded bytes on the byte path and
    from the decoded name on the pydicom path: two pseudonyms for one patient, depending on
    which path took each file. The byte path now declines text with escape sequences."""
    ds = _groups("jis")()
    ds.PatientID = ""
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp_path / "jis.dcm"
    ds.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    assert b"\x1b$B" in data
    with pytest.raises(Decline, match="ISO 2022"):
        anonymize_bytes(an.Anonymizer(key="k"), data, "jis")
    out = pydicom.dcmread(io.BytesIO(_pydicom_path(data, an.Options())))
    expected = an.Anonymizer(key="k").pseudonym("", "Yamada^Tarou=山田^太郎=やまだ^たろう")
    assert out.PatientName == expected
    assert out.AnatomicRegionSequence[0].PatientName == expected


#: (tag, VR as written, value): free text written with a VR that is not the attribute's
_WRONG_VRS = {
    "ST as CS": (0x0018003A, "CS", b"PHXVRCS "),  # InterventionDescription: unlisted text
    "ST as OF": (0x0018003A, "OF", b"PHXVROF seen Jane Doe "),
    "ST as DS": (0x0018003A, "DS", b"PHXVRDS "),
    "CS as OF": (0x00080008, "OF", b"PHXVRKEPTOF jane doe, seen "),  # ImageType: kept
    "CS as UT": (0x00080008, "UT", b"PHXVRKEPTUT jane doe, seen "),
    "CS as odd OF": (0x00080008, "OF", b"PHXVRODD jane doe"),
    "DS as LT": (0x00180050, "LT", b"PHXVRKEPTLT jane doe, seen "),  # SliceThickness
}


@pytest.mark.parametrize("case", list(_WRONG_VRS))
def test_text_written_with_a_foreign_vr_is_judged_by_the_dictionary(case, tmp_path):
    """Finding: the allow-list judged an unlisted attribute by the VR as written, so free
    text written as CS or OF in a text attribute (InterventionDescription), or as OF/UT in
    a kept code or number attribute (ImageType, SliceThickness), was kept by the pydicom
    path (and by the byte path for CS). The VR must be safe as written and in the
    dictionary, and a kept value must be well formed for the dictionary's VR too."""
    tag, vr, value = _WRONG_VRS[case]
    ds = _base("VR")
    ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, False, True)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp_path / "f.dcm"
    ds.save_as(path, enforce_file_format=True)
    data = path.read_bytes()
    marker = value.split()[0].decode()
    assert marker.encode() in data
    slow = _pydicom_path(data, an.Options())
    assert marker.encode() not in slow
    assert tag not in pydicom.dcmread(io.BytesIO(slow))
    try:
        pieces, _, _ = anonymize_bytes(an.Anonymizer(key="k"), data, "f")
    except Decline:
        return
    assert b"".join(bytes(p) for p in pieces) == slow
