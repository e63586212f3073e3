"""The byte-level de-identification path (core/_anonfast.py) against the pydicom path: the
same output bytes for the same key, declines that fall back, and no pydicom import on the
common files (issue 18)."""

from __future__ import annotations

import glob
import io
import os
import random
import subprocess
import sys
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from napari_dicomtools.core import _datadict
from napari_dicomtools.core import anonymize as an
from napari_dicomtools.core._anonfast import Decline, anonymize_bytes
from napari_dicomtools.core.synthetic import write_series

OPTION_SETS = [
    an.Options(),
    an.Options(shift_dates=True),
    an.Options(shift_dates=True, retain_device_identity=True,
               retain_patient_characteristics=True, keep_unlisted_public=True),
    an.Options(skip_burned_in=True, retain_institution_identity=True,
               retain_longitudinal_full_dates=True),
]


def _pydicom_path(data: bytes, options: an.Options, name: str = "f"):
    """(file bytes, path identifiers) through pydicom and Anonymizer.dataset."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = an._read_dataset(io.BytesIO(data), name, True)
        an.Anonymizer(options, key="k").dataset(ds, source=name)
        out = an.encode_file(ds)
    ids = {k: an._text(ds.get(k, "")) for k in
           ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")}
    return out, {k: v for k, v in ids.items() if v or k == "PatientID"}


def _byte_path(data: bytes, options: an.Options, name: str = "f"):
    pieces, ids, _ = anonymize_bytes(an.Anonymizer(options, key="k"), data, name)
    return b"".join(bytes(p) for p in pieces), ids


def _compare(data: bytes, options: an.Options, name: str) -> bool:
    """True when the byte path took the file (and then wrote the pydicom path's bytes)."""
    try:
        fast, fast_ids = _byte_path(data, options, name)
    except Decline:
        return False
    except an.DicomToolsError as exc:  # BurnedInAnnotation, skipped on request
        with pytest.raises(an.DicomToolsError, match="BurnedInAnnotation"):
            _pydicom_path(data, options, name)
        assert "BurnedInAnnotation" in exc.reason
        return True
    slow, slow_ids = _pydicom_path(data, options, name)
    assert fast == slow, f"{name} with {options}: bytes differ"
    assert fast_ids == slow_ids, name
    return True


def test_byte_path_writes_what_the_pydicom_path_writes_for_pydicom_test_files():
    root = os.path.dirname(get_testdata_file("CT_small.dcm"))
    files = [f for f in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True))
             if os.path.isfile(f)]
    taken = 0
    for options in OPTION_SETS:
        for f in files:
            with open(f, "rb") as fh:
                data = fh.read()
            if data[128:132] == b"DICM":
                taken += _compare(data, options, os.path.basename(f))
    assert taken > 250  # most of pydicom's files take the byte path (about 320 of 430)


def _nested_study(undefined: bool) -> Dataset:
    """PHI in sequences nested three deep, item-level patients, dates, UIDs, private and
    UN-encoded sequences, in defined or undefined lengths."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane^^", "MRN1", "19650304"
    ds.BurnedInAnnotation = "NO"
    inner = Dataset()
    inner.PatientName, inner.PatientID = "Roe^Rick", "MRN2"
    inner.StudyDate, inner.ReferencedSOPInstanceUID = "20200101", "1.2.3.4.5"
    inner.TextValue = "free text Dr Who 12345678"
    named = Dataset()
    named.PatientName = "DOE^JANE"  # the top-level patient, written otherwise
    blank = Dataset()
    blank.PatientID = ""
    middle = Dataset()
    middle.ContentSequence = Sequence([inner, named, blank])
    middle.ObservationDateTime = "20200101120000"
    middle.CodeValue, middle.CodingSchemeDesignator, middle.CodeMeaning = "1", "DCM", "x"
    outer = Dataset()
    outer.ReferencedImageSequence = Sequence([middle])
    outer.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.ReferencedStudySequence = Sequence([outer, Dataset()])
    ds.RequestAttributesSequence = Sequence([])
    block = ds.private_block(0x0029, "ACME 1.0", create=True)
    block.add_new(0x10, "SQ", Sequence([inner]))
    ds.add_new(0x00081140, "SQ", Sequence([middle]))  # ReferencedImageSequence
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.is_undefined_length = undefined
            for item in elem.value:
                item.is_undefined_length_sequence_item = undefined
    return ds


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("undefined", [False, True])
def test_byte_path_handles_nested_sequences_in_both_length_forms(syntax, undefined):
    ds = _nested_study(undefined)
    ds.file_meta.TransferSyntaxUID = syntax
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True,
               enforce_file_format=True)
    for options in OPTION_SETS[:3]:
        assert _compare(buf.getvalue(), options, "nested.dcm"), "declined"
    out, _ = _byte_path(buf.getvalue(), an.Options())
    for marker in (b"Doe", b"DOE", b"Roe", b"MRN1", b"MRN2", b"1.2.3.4.5", b"19650304",
                   b"ACME"):
        assert marker not in out


def test_declined_files_fall_back_to_pydicom(tmp_path):
    """A file the byte path declines (here: PatientID written as UN, big endian) is still
    de-identified, by pydicom."""
    src = tmp_path / "src"
    truth = write_series(src, np.zeros((2, 8, 8), np.int16), patient=("Doe^Jane", "MRN9"))
    ds = pydicom.dcmread(truth.files[0])
    ds["PatientID"].VR = "UN"
    ds["PatientID"].value = b"MRN9"
    ds.save_as(truth.files[0], enforce_file_format=True)
    with open(truth.files[0], "rb") as f:
        with pytest.raises(Decline, match="UN"):
            _byte_path(f.read(), an.Options())
    big = pydicom.dcmread(get_testdata_file("MR_small_bigendian.dcm"))
    big.save_as(src / "big.dcm", enforce_file_format=True)
    report = an.anonymize_files(src, tmp_path / "out", key="k", workers=1)
    assert len(report.written) == 3 and not report.skipped
    for path in report.written:
        with open(path, "rb") as f:
            data = f.read()
        assert b"MRN9" not in data and b"Doe" not in data
        assert pydicom.dcmread(path).PatientIdentityRemoved == "YES"


def test_common_files_are_de_identified_without_importing_pydicom(tmp_path):
    truth = write_series(tmp_path / "src", np.zeros((3, 8, 8), np.int16))
    code = ("import sys; from napari_dicomtools.cli import main; "
            "rc = main(['anonymize', sys.argv[1], sys.argv[2], '-q', '--key', 'k']); "
            "print(rc, 'pydicom' in sys.modules)")
    env = dict(os.environ, NAPARI_DICOMTOOLS_WORKERS="1")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "src"),
                        str(tmp_path / "out")], capture_output=True, text=True, env=env)
    assert r.stdout.split() == ["0", "False"], r.stderr
    written = glob.glob(str(tmp_path / "out" / "**" / "*.dcm"), recursive=True)
    assert len(written) == len(truth.files)


@pytest.mark.parametrize("implicit", [False, True])
def test_method_sequence_bytes_are_pydicoms_encoding(implicit):
    from pydicom.dataelem import DataElement
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element

    for options in OPTION_SETS:
        anon = an.Anonymizer(options, key="k")
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, implicit
        write_data_element(fp, DataElement(0x00120064, "SQ", anon._method_items()))
        assert anon._method_sequence_bytes(implicit) == fp.getvalue()[8 if implicit else 12:]


def test_data_dictionary_without_pydicom_is_pydicoms():
    import pydicom.datadict as pdd

    main = _datadict._tables()[0]
    rnd = random.Random(0)
    tags = list(main) + [rnd.getrandbits(32) for _ in range(5000)]
    tags += [(g << 16) | e for g in range(0x5000, 0x6100, 0x33) for e in (0, 0x10, 0x3000)]
    for tag in tags:
        for ours, theirs in ((_datadict.dictionary_vr, pdd.dictionary_VR),
                             (_datadict.dictionary_vm, pdd.dictionary_VM),
                             (_datadict.keyword_for_tag, pdd.keyword_for_tag),
                             (_datadict.dictionary_has_tag, pdd.dictionary_has_tag)):
            try:
                a = ours(tag)
            except KeyError:
                a = KeyError
            try:
                b = theirs(tag)
            except KeyError:
                b = KeyError
            assert a == b, (hex(tag), ours.__name__)
    assert all(_datadict.tag_for_keyword(k) == t for k, t in pdd.keyword_dict.items())
    assert _datadict.tag_for_keyword("NoSuchKeyword") is None


def _uid_probe(tmp_path):
    """A file whose UI values are a DICOM-defined UID newer than pydicom's registry (JPEG XL
    Lossless: pynetdicom adds it to the registry when imported), one of the registry, a
    private UID and an instance UID made under the DICOM root."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.1.2.4.110"
    ref.ReferencedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2.19650304"
    other = Dataset()
    other.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    other.ReferencedSOPInstanceUID = "1.2.3.4.5.6"
    ds.ReferencedImageSequence = Sequence([ref, other])
    path = tmp_path / "probe.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


_ANONYMIZE_ONE = """
import hashlib, sys, warnings
warnings.simplefilter("ignore")
if sys.argv[1] == "net":
    import pynetdicom  # adds transfer syntaxes to pydicom's UID registry
from napari_dicomtools.core import anonymize as an
from napari_dicomtools.core._anonfast import anonymize_bytes
import io
data = open(sys.argv[2], "rb").read()
fast = b"".join(bytes(p) for p in anonymize_bytes(an.Anonymizer(key="k"), data)[0])
ds = an._read_dataset(io.BytesIO(data), "f", True)
an.Anonymizer(key="k").dataset(ds)
slow = an.encode_file(ds)
print(hashlib.sha256(fast).hexdigest(), hashlib.sha256(slow).hexdigest())
"""


def test_output_does_not_depend_on_importing_pynetdicom_first(tmp_path):
    """Which UIDs are kept is a fixed rule: the same bytes in a fresh process with and
    without ``import pynetdicom`` first, by both paths."""
    pytest.importorskip("pynetdicom")
    path = _uid_probe(tmp_path)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    digests = [subprocess.run([sys.executable, "-c", _ANONYMIZE_ONE, how, str(path)],
                              capture_output=True, text=True, check=True, env=env
                              ).stdout.split() for how in ("net", "plain")]
    assert digests[0] == digests[1]
    assert digests[0][0] == digests[0][1]  # and the byte path wrote the pydicom path's bytes


def test_kept_uids_are_the_dicom_defined_ones(tmp_path):
    """PS3.15: well-known DICOM UIDs (1.2.840.10008.*: pydicom's registry as shipped, their
    siblings, context groups) kept, every other UID replaced; a private UID is replaced even
    when registered with pydicom, and an instance UID made under the DICOM root too."""
    shipped = _datadict.uid_registry()  # pydicom's file, whatever was added since
    assert len(shipped) > 400 and all(an.is_well_known_uid(u) for u in shipped)
    assert all(u.startswith("1.2.840.10008.") for u in shipped)
    assert all(an.is_well_known_uid(str(u)) for u in pydicom.uid.AllTransferSyntaxes)
    for uid in ("1.2.840.10008.1.2.4.110", "1.2.840.10008.5.1.4.1.1.130",  # newer than
                "1.2.840.10008.6.1.1453", "1.2.840.10008.1.4.1.1"):  # context group, Talairach
        assert an.is_well_known_uid(uid) and an.Anonymizer(key="k").uid(uid) == uid
    private = "1.2.826.0.1.3680043.9.3811.2.0"
    pydicom.uid.register_transfer_syntax(private, True, True)
    try:
        for uid in (private, "1.2.840.10008.5.1.4.1.1.2.19650304", "1.2.840.10008",
                    "1.2.840.10008.1965.304.8765.4321",  # a birth date and an MRN in pieces
                    "1.2.840.10008.5.01", "1.2.840.100081.2", "1.2.840.10008.1.2.x"):
            assert not an.is_well_known_uid(uid), uid
            assert an.Anonymizer(key="k").uid(uid).startswith("2.25."), uid
    finally:
        pydicom.uid.PrivateTransferSyntaxes.remove(private)
    data = _uid_probe(tmp_path).read_bytes()
    fast, _ = _byte_path(data, an.Options(), "probe")
    out = pydicom.dcmread(io.BytesIO(fast))
    ref = out.ReferencedImageSequence[0]
    assert ref.ReferencedSOPClassUID == "1.2.840.10008.1.2.4.110"
    assert ref.ReferencedSOPInstanceUID.startswith("2.25.")
    assert b"19650304" not in fast
    other = out.ReferencedImageSequence[1]
    assert other.ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
    assert other.ReferencedSOPInstanceUID.startswith("2.25.")
    assert _compare(data, an.Options(), "probe")


def _meta_variants():
    """CT_small.dcm with its file meta broken in the ways both byte readers refuse."""
    import struct

    data = open(get_testdata_file("CT_small.dcm"), "rb").read()
    group, elem, vr, length = struct.unpack_from("<HH2sH", data, 132)
    assert (group, elem, vr) == (2, 0, b"UL")
    second = 132 + 8 + length  # (0002,0001) OB, a 4-byte length
    assert data[second + 4:second + 6] == b"OB"
    implicit = data[:132] + struct.pack("<HHL", 2, 0, 4) + data[132 + 8:]
    return {
        "implicit VR meta": implicit,
        "non-ASCII VR in the second element": data[:second + 4] + b"\xc3\xa9" +
        data[second + 6:],
        "undefined length": data[:second + 8] + b"\xff\xff\xff\xff" + data[second + 12:],
        "long VR header cut": data[:second + 10],
    }


@pytest.mark.parametrize("case", list(_meta_variants()))
def test_one_file_meta_reader_refuses_for_both_byte_paths(case):
    """core/_filemeta.py serves the header parser and the de-identification: a malformed
    file meta is declined (never a crash: a non-ASCII VR or a cut header raised
    UnicodeDecodeError or struct.error from the byte path before), and the header parser
    refuses it or asks for more bytes."""
    from napari_dicomtools.core import fastheader

    data = _meta_variants()[case]
    with pytest.raises(Decline, match="file meta"):
        _byte_path(data, an.Options(), case)
    with pytest.raises((fastheader.Unsupported, EOFError)):
        fastheader._parse_buffer(data, len(data), {})


def test_file_meta_reader_reads_what_pydicom_reads():
    from napari_dicomtools.core._filemeta import read_file_meta

    root = os.path.dirname(get_testdata_file("CT_small.dcm"))
    seen = 0
    for f in sorted(glob.glob(os.path.join(root, "**", "*.dcm"), recursive=True)):
        data = open(f, "rb").read()
        if data[128:132] != b"DICM":
            continue
        try:
            raw, end = read_file_meta(data, {0x00020010, 0x00020003}, ValueError)
        except (ValueError, EOFError):
            continue
        meta = pydicom.filereader.read_file_meta_info(f)
        ts = raw[0x00020010].decode().rstrip("\0 ") if 0x00020010 in raw else None
        assert ts == meta.get("TransferSyntaxUID"), f
        fp = io.BytesIO(data)
        pydicom.filereader.read_preamble(fp, False)
        pydicom.filereader._read_file_meta_info(fp)
        assert end == fp.tell(), f
        seen += 1
    assert seen > 50
