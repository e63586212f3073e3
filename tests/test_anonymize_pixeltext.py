"""No PHI inside compressed Pixel Data: text planted in JPEG, JPEG-LS and JPEG 2000
bitstreams (tests/pixeltext_cases.py) is gone from both de-identification paths' outputs,
which agree byte for byte; every decoder decodes the same pixels from them as from the
source; files with nothing to remove keep their pixel bytes; video is refused unless asked
for; a bitstream that cannot be parsed fails its file with the reason."""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import warnings

import numpy as np
import pydicom
import pytest
from pixeltext_cases import CASES, encapsulate, frames_of, segment, write
from pydicom.data import get_testdata_file
from pydicom.pixels import get_decoder, pixel_array

from napari_dicomtools.core import _pixeltext as pt
from napari_dicomtools.core import anonymize as an
from napari_dicomtools.core._anonfast import Decline, anonymize_bytes
from napari_dicomtools.core.volume import read_volume


def _encodings(marker: str) -> set[bytes]:
    return {marker.encode(c).lower() for c in ("ascii", "utf-16-le", "utf-16-be")}


def _leaks(data: bytes, markers: set[str]) -> list[str]:
    hay = data.lower()
    return sorted(m for m in markers if any(e in hay for e in _encodings(m)))


def _pydicom_path(data: bytes, options: an.Options | None = None) -> tuple[bytes, list[str]]:
    anon = an.Anonymizer(options, key="k")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = an._read_dataset(io.BytesIO(data), "f.dcm", True)
        anon.dataset(ds, source="f.dcm")
        return an.encode_file(ds), anon.warnings


def _byte_path(data: bytes, options: an.Options | None = None) -> bytes | None:
    try:
        pieces, _, caught = anonymize_bytes(an.Anonymizer(options, key="k"), data, "f.dcm")
    except Decline:
        return None
    return b"".join(bytes(p) for p in pieces)


def _decoded(ds: pydicom.Dataset) -> dict[str, np.ndarray]:
    """The pixels every available plugin decodes (GDCM too: in a test, a crash is a
    failure to see)."""
    out = {}
    for plugin in get_decoder(ds.file_meta.TransferSyntaxUID).available_plugins:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                out[plugin] = pixel_array(ds, decoding_plugin=plugin)
            except Exception:  # noqa: BLE001 - a plugin that cannot decode this syntax
                continue
    return out


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("pixeltext")
    made = {}
    for name, build in CASES.items():
        ds, markers = build()
        made[name] = (write(ds, root / (name.replace(" ", "_") + ".dcm")), markers)
    made["_dir"] = root
    return made


@pytest.mark.parametrize("case", list(CASES))
def test_planted_text_is_removed_pixels_identical_paths_agree(case, cases):
    data, markers = cases[case]
    assert _leaks(data, markers) == sorted(markers)  # planted where the test looks
    slow, messages = _pydicom_path(data)
    assert _leaks(slow, markers) == [], case
    assert any("from Pixel Data" in m and m.startswith("f.dcm: removed ") for m in messages)
    fast = _byte_path(data)
    assert fast is not None, "the byte path takes every one of these files"
    assert fast == slow, case
    src, out = pydicom.dcmread(io.BytesIO(data)), pydicom.dcmread(io.BytesIO(slow))
    before, after = _decoded(src), _decoded(out)
    assert before and before.keys() <= after.keys(), (before.keys(), after.keys())
    for plugin, pixels in before.items():
        assert np.array_equal(pixels, after[plugin]), (case, plugin)
    n = int(src.get("NumberOfFrames", 1) or 1)
    assert len(frames_of(out)) == n
    # and our own reader (imagecodecs' codecs for monochrome frames) reads the same volume
    (tmp := cases["_dir"] / case.replace(" ", "_")).mkdir()
    (tmp / "src.dcm").write_bytes(data)
    (tmp / "out.dcm").write_bytes(slow)
    assert np.array_equal(np.asarray(read_volume(tmp / "src.dcm").array),
                          np.asarray(read_volume(tmp / "out.dcm").array))


def test_extended_offset_table_written_with_another_vr_keeps_it_on_both_paths(cases):
    """An Extended Offset Table a writer stored as OB (not the dictionary's OV): both paths
    rewrite its values under the VR the file used, byte for byte alike."""
    data = cases["multi-frame EOT"][0]
    for tag in (b"\xe0\x7f\x01\x00OV", b"\xe0\x7f\x02\x00OV"):
        assert data.count(tag) == 1
        data = data.replace(tag, tag[:4] + b"OB")
    fast, slow = _byte_path(data), _pydicom_path(data)[0]
    assert fast is not None and fast == slow
    assert slow.count(b"\xe0\x7f\x01\x00OB") == 1


def test_multiframe_offset_tables_are_rebuilt(cases):
    """One fragment per frame; the Basic Offset Table points at them, or, with an Extended
    Offset Table, stays empty while the extended one (and its lengths) does."""
    for case in ("multi-frame BOT", "multi-frame split no BOT", "multi-frame EOT"):
        out = pydicom.dcmread(io.BytesIO(_pydicom_path(cases[case][0])[0]))
        value = out.PixelData
        bot_len = struct.unpack("<L", value[4:8])[0]
        frames = frames_of(out)
        assert len(frames) == 30
        offsets, pos = [], 0
        for f in frames:
            offsets.append(pos)
            pos += 8 + len(f)
        if case.endswith("EOT"):
            assert bot_len == 0
            assert struct.unpack("<30Q", out.ExtendedOffsetTable) == tuple(offsets)
            assert struct.unpack("<30Q", out.ExtendedOffsetTableLengths) == \
                tuple(len(f) for f in frames)
        else:
            assert struct.unpack("<30L", value[8:8 + bot_len]) == tuple(offsets)


def test_byte_path_walks_the_items_once(cases, monkeypatch):
    """The byte path walks the 31 items of a 30-frame value once, while tokenizing the file,
    and hands them to the cleaning, which used to walk them a second time."""
    from napari_dicomtools.core import _anonfast, _encap

    walks = []

    def counting(value, **kwargs):
        walks.append(len(value))
        return _encap.walk(value, **kwargs)

    monkeypatch.setattr(_anonfast, "walk", counting)
    monkeypatch.setattr(pt, "walk", counting)
    data, markers = cases["multi-frame BOT"]
    fast = _byte_path(data)
    assert fast is not None and _leaks(fast, markers) == []
    assert len(walks) == 1
    walks.clear()
    assert _pydicom_path(data)[0] == fast  # pydicom's value is walked by the cleaning
    assert len(walks) == 1


def test_a_fragment_holding_the_delimiters_bytes_is_declined(tmp_path):
    """pydicom ends encapsulated Pixel Data at the first FFFE,E0DD bytes, even inside a
    fragment (here in a JPEG comment, at an odd and at an even offset): the byte path,
    which walks the items by their lengths, declines such a file rather than read it
    another way."""
    for pad in (b"x", b"xy"):
        ds = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
        (frame,) = frames_of(ds)
        ds.PixelData = encapsulate([frame[:2] + segment(0xFE, pad + b"\xfe\xff\xdd\xe0\0\0\0\0")
                                    + frame[2:]])
        data = write(ds, tmp_path / "in.dcm")
        with pytest.raises(Decline, match="delimiter's bytes"):
            anonymize_bytes(an.Anonymizer(key="k"), data, "in.dcm")
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    assert _byte_path(write(ds, tmp_path / "plain.dcm")) is not None  # without: taken


def test_a_file_the_byte_path_declines_is_cleaned_and_noted_once(cases, tmp_path,
                                                                 monkeypatch):
    """A file with text in its JPEG bitstream and BurnedInAnnotation YES that the byte path
    declines (a patient name beyond ASCII, which only the pydicom path decodes): the byte
    path declines before it parses the bitstream or notes anything, so the bitstream is
    parsed once and each note is in Anonymizer.warnings once, as in the file's report."""
    ds = pydicom.dcmread(io.BytesIO(cases["JPEG COM, Exif, ICC"][0]))
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Müller^Jörg"
    ds.BurnedInAnnotation = "YES"
    write(ds, tmp_path / "in.dcm")
    parsed = []
    real = pt.clean_pixel_data

    def counting(*args, **kwargs):
        parsed.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pt, "clean_pixel_data", counting)
    with pytest.raises(Decline, match="beyond ASCII"):
        anonymize_bytes(an.Anonymizer(key="k"), (tmp_path / "in.dcm").read_bytes(), "in.dcm")
    assert parsed == []  # declined before the bitstream was parsed
    anon = an.Anonymizer(key="k")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = an.anonymize_one(anon, tmp_path / "in.dcm", tmp_path / "out")
    assert res.skipped is None and len(parsed) == 1
    removed = [w for w in anon.warnings if "from Pixel Data" in w]
    burned = [w for w in anon.warnings if "BurnedInAnnotation=YES" in w]
    assert len(removed) == 1 and len(burned) == 1, anon.warnings
    assert "removed 1 JPEG APP1 segment, 1 JPEG APP2 segment, 2 JPEG COM segments" in \
        removed[0]
    assert sorted(res.warnings) == sorted(anon.warnings)
    out = open(res.output, "rb").read()
    assert _leaks(out, cases["JPEG COM, Exif, ICC"][1]) == []


def test_kept_colour_segments_matter(cases):
    """The segments kept for colour really change the decoded colours (so the pixel
    equality above would see them dropped): CharLS' mrfx, JPEG's APP14 Adobe."""
    data, _ = cases["JPEG-LS beside mrfx"]
    ds = pydicom.dcmread(io.BytesIO(data))
    (frame,) = frames_of(ds)
    at = frame.index(b"mrfx") - 4
    plain = pydicom.dcmread(io.BytesIO(data))
    plain.PixelData = encapsulate([frame[:at] + frame[at + 9:]])
    assert not np.array_equal(pixel_array(ds, decoding_plugin="pyjpegls"),
                              pixel_array(plain, decoding_plugin="pyjpegls"))
    out = pydicom.dcmread(io.BytesIO(_pydicom_path(data)[0]))
    assert b"\xff\xe8\x00\x07mrfx\x01" in out.PixelData

    # pydicom asks libjpeg for unconverted samples; a plain JPEG reader (Pillow here)
    # lets APP14 decide between RGB and YCbCr
    from PIL import Image

    def rgb(jpeg: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))

    data, _ = cases["JPEG beside Adobe APP14"]
    (frame,) = frames_of(pydicom.dcmread(io.BytesIO(data)))
    at = frame.index(b"Adobe") - 4
    length = struct.unpack(">H", frame[at + 2:at + 4])[0]
    assert not np.array_equal(rgb(frame), rgb(frame[:at] + frame[at + 2 + length:]))
    (cleaned,) = frames_of(pydicom.dcmread(io.BytesIO(_pydicom_path(data)[0])))
    assert b"\xff\xee\x00\x0eAdobe" in cleaned and b"PHXADOBE" not in cleaned
    assert np.array_equal(rgb(frame), rgb(cleaned))


def test_segments_between_scans_of_a_progressive_jpeg():
    """A progressive JPEG (Pillow's: ten scans, tables between them) with a COM and an APP1
    before its third scan: both removed, the tables between scans kept, the same image."""
    from PIL import Image

    rgb = (np.add.outer(np.arange(48), np.arange(40))[..., None] * [3, 5, 7] % 256)
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buf, "JPEG", progressive=True, quality=90)
    jpeg = buf.getvalue()
    scans = [i for i in range(len(jpeg) - 1) if jpeg[i:i + 2] == b"\xff\xda"]
    assert len(scans) > 3
    at = scans[2]
    planted = jpeg[:at] + segment(0xFE, b"PHXSCANCOM") + segment(0xE1, b"PHXSCANAPP") + \
        jpeg[at:]
    cleaned = pt.clean_pixel_data(encapsulate([planted]), "1.2.840.10008.1.2.4.50", 1)
    assert cleaned.removed == {"JPEG COM segment": 1, "JPEG APP1 segment": 1}
    (frame,) = frames_of_value(cleaned.value)
    assert frame.rstrip(b"\x00") == jpeg
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(planted))),
                          np.asarray(Image.open(io.BytesIO(frame))))


def frames_of_value(value: bytes) -> list[bytes]:
    from pydicom.encaps import generate_frames

    return list(generate_frames(value, number_of_frames=1))


@pytest.mark.parametrize("case", ["J2K tiles with TLM", "HTJ2K tiles, its TLM"])
def test_tlm_follows_the_new_tile_part_lengths(case, cases):
    """Every TLM entry (Pillow's hand-made one; OpenJPH's own) gives its tile-part's new
    Psot once the tile-part COM is gone."""
    (frame,) = frames_of(pydicom.dcmread(io.BytesIO(_pydicom_path(cases[case][0])[0])))
    assert b"PHX" not in frame
    entries, pos = [], 0
    while (pos := frame.find(b"\xff\x55", pos)) != -1 and pos < frame.index(b"\xff\x90"):
        length, stlm = struct.unpack(">HxB", frame[pos + 2:pos + 6])
        st, sp = (stlm >> 4) & 3, 4 if stlm & 0x40 else 2
        size = st + sp
        for k in range((length - 4) // size):
            entry = frame[pos + 6 + k * size:pos + 6 + (k + 1) * size]
            entries.append(int.from_bytes(entry[st:], "big"))
        pos += 2 + length
    parts, pos = [], frame.index(b"\xff\x90")
    while frame[pos:pos + 2] == b"\xff\x90":
        psot = struct.unpack(">L", frame[pos + 6:pos + 10])[0]
        parts.append(psot)
        pos += psot
    assert entries == parts and len(parts) >= 4
    assert frame[pos:pos + 2] == b"\xff\xd9"


@pytest.mark.parametrize("name", ["JPEG-lossy.dcm", "SC_rgb_jpeg_app14_dcmd.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm", "examples_ybr_color.dcm",
                                  "SC_rgb_rle_2frame.dcm"])
def test_files_without_text_keep_their_pixel_bytes(name):
    data = open(get_testdata_file(name), "rb").read()
    slow, messages = _pydicom_path(data)
    assert pydicom.dcmread(io.BytesIO(slow)).PixelData == \
        pydicom.dcmread(io.BytesIO(data)).PixelData
    assert not any("Pixel Data" in m for m in messages)
    fast = _byte_path(data)
    assert fast is None or fast == slow


def test_unparseable_bitstream_fails_its_file_only(tmp_path):
    """A JPEG whose segment length runs past its data is never copied unexamined: the file
    fails with the reason, the good file beside it is written."""
    src = tmp_path / "src"
    src.mkdir()
    ds = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    (frame,) = frames_of(ds)
    good = pydicom.dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    good.PixelData = encapsulate([frame[:2] + segment(0xFE, b"PHXGOODCOM") + frame[2:]])
    write(good, src / "good.dcm")
    ds.PixelData = encapsulate([frame[:2] + b"\xff\xfe\xff\xf0PHXBADCOM" + frame[2:]])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    write(ds, src / "bad.dcm")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = an.anonymize_files(src, tmp_path / "out", key="k", workers=1)
    assert len(report.written) == 1
    ((path, reason),) = report.failed
    assert os.path.basename(path) == "bad.dcm"
    assert reason.startswith("Pixel Data could not be searched for text (JPEG marker 0xFFFE")
    assert "not written" in reason
    assert [w for w in report.warnings if "removed 1 JPEG COM segment from Pixel Data" in w]
    assert any("removed 1 JPEG COM segment" in str(w.message) for w in caught)
    assert b"PHXGOODCOM" not in open(report.written[0], "rb").read()


def test_video_is_refused_unless_asked_for(tmp_path):
    """MPEG-4 user data cannot be cleaned: the file is refused (counted as failed), or with
    keep_uncleanable_pixels written as is with a warning."""
    ds = pydicom.dcmread(get_testdata_file("JPEG2000.dcm"))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102"  # MPEG-4 AVC/H.264
    ds.PixelData = encapsulate([b"\x00\x00\x00\x01\x06\x05PHXSEIUSERDATA\x80"])
    src = tmp_path / "src"
    src.mkdir()
    write(ds, src / "video.dcm")
    report = an.anonymize_files(src, tmp_path / "out", key="k", workers=1)
    assert report.written == [] and len(report.failed) == 1
    assert "MPEG-4 AVC/H.264 video: text in its bitstream cannot be removed" in \
        report.failed[0][1]
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        kept = an.anonymize_files(src, tmp_path / "out2", an.Options(
            keep_uncleanable_pixels=True), key="k", workers=1)
    assert len(kept.written) == 1 and kept.failed == []
    assert any("copied as is" in w for w in kept.warnings)


def test_encapsulated_pixels_under_a_native_syntax_are_refused(tmp_path, cases):
    """A JPEG bitstream (text planted) in encapsulated Pixel Data whose file says Explicit
    VR Little Endian, or has no file meta (pydicom then reads it as Explicit VR Little
    Endian): its codec is unknown, so, like an unknown syntax's, it is refused unless
    asked for, never copied with its text unnoticed (both paths copied it)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    def encoded(write, *args):
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write(fp, *args)
        return fp.getvalue()

    src = tmp_path / "src"
    src.mkdir()
    ds = pydicom.dcmread(io.BytesIO(cases["JPEG COM, Exif, ICC"][0]))
    assert ds["PixelData"].is_undefined_length
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    (src / "native_ts.dcm").write_bytes(
        b"\0" * 128 + b"DICM" + encoded(write_file_meta_info, ds.file_meta, True) +
        encoded(write_dataset, ds))
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    (src / "no_meta.dcm").write_bytes(encoded(write_dataset, ds))
    for name in ("native_ts.dcm", "no_meta.dcm"):  # the files are what they say
        read = pydicom.dcmread(src / name, force=True)
        assert read.get_item(0x7FE00010).length == 0xFFFFFFFF
        assert b"PHXJPEGCOM" in read.PixelData
    report = an.anonymize_files(src, tmp_path / "out", key="k", workers=1)
    assert report.written == []
    assert sorted(os.path.basename(p) for p, _ in report.failed) == ["native_ts.dcm",
                                                                     "no_meta.dcm"]
    for _path, reason in report.failed:
        assert reason.startswith("Pixel Data in transfer syntax 1.2.840.10008.1.2.1: text "
                                 "in its bitstream cannot be removed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kept = an.anonymize_files(src, tmp_path / "out2", an.Options(
            keep_uncleanable_pixels=True), key="k", workers=1)
    assert len(kept.written) == 2 and kept.failed == []
    assert len([w for w in kept.warnings if "copied as is" in w]) == 2


def test_cli_reports_removed_text(tmp_path, capsys, cases):
    from napari_dicomtools.cli import main

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.dcm").write_bytes(cases["JPEG COM, Exif, ICC"][0])
    assert main(["anonymize", str(src), str(tmp_path / "out"), "--key", "k"]) == 0
    err = capsys.readouterr().err
    assert "a.dcm: removed 1 JPEG APP1 segment, 1 JPEG APP2 segment, 2 JPEG COM segments " \
        "from Pixel Data" in err


def test_cli_sums_up_many_removals_and_lists_them_with_verbose(tmp_path, capsys, cases):
    """Hundreds of J2K files each carrying OpenJPEG's COM must not bury the warnings that
    matter: beyond a few files the removals are one line; -v lists every file."""
    from napari_dicomtools.cli import PIXEL_TEXT_LISTED, main

    src = tmp_path / "src"
    src.mkdir()
    n = PIXEL_TEXT_LISTED + 2
    for i in range(n):  # distinct instances of the same image
        ds = pydicom.dcmread(io.BytesIO(cases["JPEG COM, Exif, ICC"][0]))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.2.{i}"
        ds.save_as(src / f"f{i}\x1b[31m.dcm")
    assert main(["anonymize", str(src), str(tmp_path / "out"), "--key", "k"]) == 0
    full = capsys.readouterr().err
    assert "\x1b" not in full  # a file name cannot drive the terminal
    err = [line for line in full.splitlines() if "Pixel Data" in line]
    assert len(err) == 1 and f"Pixel Data of {n} files" in err[0] and "-v" in err[0]
    assert "\\x1b[31m" in err[0]
    assert main(["-v", "anonymize", str(src), str(tmp_path / "out2"), "--key", "k"]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if "from Pixel Data" in line]
    assert len(err) == n and all(line.startswith("WARNING: ") for line in err)
    import logging  # -v in process leaves no handler behind (it wrote to capsys' stream)

    assert not [h for h in logging.getLogger("napari_dicomtools").handlers
                if isinstance(h, logging.StreamHandler)]


def test_napari_writer_shows_one_notification_for_many_removals(tmp_path, cases,
                                                                monkeypatch):
    """Saving a layer's series anonymized from napari: the per-file removal notes become one
    notification (napari would show a warning popup per file otherwise)."""
    from napari.utils import notifications

    from napari_dicomtools._writer import write_anonymized_series

    files = []
    for i in range(6):
        ds = pydicom.dcmread(io.BytesIO(cases["JPEG COM, Exif, ICC"][0]))
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.3.{i}"
        (tmp_path / "src").mkdir(exist_ok=True)
        ds.save_as(tmp_path / "src" / f"in{i}.dcm")
        files.append(str(tmp_path / "src" / f"in{i}.dcm"))
    shown = []
    monkeypatch.setattr(notifications, "show_warning", shown.append)
    with warnings.catch_warnings(record=True) as leaked:
        warnings.simplefilter("always")
        written = write_anonymized_series(str(tmp_path / "anon.dcm"), None,
                                          {"metadata": {"files": files}})
    assert len(written) == 6 and not [w for w in leaked if "Pixel Data" in str(w.message)]
    assert len(shown) == 1
    assert "Anonymized 6 file(s)" in shown[0] and "Pixel Data of 6 files" in shown[0]


@pytest.mark.skipif(shutil.which("dciodvfy") is None,
                    reason="dciodvfy (Debian/Ubuntu package dicom3tools) is not installed")
@pytest.mark.parametrize("case", list(CASES))
def test_no_new_dciodvfy_errors(case, cases, tmp_path):
    def errors(path):
        r = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, text=True)
        return {line.split(" - ", 1)[-1] for line in (r.stdout + r.stderr).splitlines()
                if line.startswith("Error")}

    data = cases[case][0]
    (tmp_path / "src.dcm").write_bytes(data)
    (tmp_path / "out.dcm").write_bytes(_pydicom_path(data)[0])
    assert errors(tmp_path / "out.dcm") <= errors(tmp_path / "src.dcm")


def test_summary_and_policy():
    assert pt.summary({"JPEG COM segment": 2, "JP2 'xml ' box": 1}) == \
        "1 JP2 'xml ' box, 2 JPEG COM segments"
    assert pt.policy("1.2.840.10008.1.2.4.50") == "clean"
    assert pt.policy("1.2.840.10008.1.2.5") == "none"
    assert pt.policy("1.2.840.10008.1.2.4.107") == "refuse"


def test_damaged_bitstreams_raise_the_one_error():
    """Random damage near the marker segments (and truncation) of every planted case gives
    a cleaned value or PixelTextError with a reason, never another exception (which would
    reach the user as a bare "IndexError") nor a hang."""
    import random

    rng = random.Random(7)
    for build in CASES.values():
        ds, _ = build()
        value, ts = bytes(ds.PixelData), str(ds.file_meta.TransferSyntaxUID)
        n = int(ds.get("NumberOfFrames", 1) or 1)
        for _ in range(60):
            b = bytearray(value)
            for _ in range(rng.choice([1, 2, 4])):
                b[rng.randrange(min(len(b), 400))] = rng.choice([0xFF, 0x00, 0xD9, 0x90,
                                                                 rng.randrange(256)])
            if rng.random() < 0.2:
                b = b[:rng.randrange(len(b))]
            try:
                pt.clean_pixel_data(bytes(b), ts, n)
            except pt.PixelTextError as exc:
                assert str(exc)
