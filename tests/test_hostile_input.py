"""Hostile input (issue 11): scan() and the reader never raise, hang, crash or blow up.

A seeded fuzz over real files of every supported transfer syntax (pydicom's bundled files and
tests/data): bit flips, truncations, length and VR corruption, absurd sizes and geometry,
deep nesting. Each batch of mutants is scanned *and decoded* in a child process under a
2 GiB address-space limit (``RLIMIT_AS``), so a native crash or a memory blow-up is a failing
test naming the file, not a dead pytest. ``scan`` must never raise; each file either loads or
is left out with a reason that names it.
"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import textwrap

import pydicom
import pytest
from pydicom.data import get_testdata_file

SEED = 20261125
MEM_LIMIT = 2 * 2**30
DATA = os.path.join(os.path.dirname(__file__), "data", "dcm_qa")

#: (file, transfer syntax it stands for)
SEED_FILES = [
    ("CT_small.dcm", "explicit VR little endian"),
    ("MR_small_implicit.dcm", "implicit VR little endian"),
    ("MR_small_bigendian.dcm", "explicit VR big endian"),
    ("image_dfl.dcm", "deflated explicit VR little endian"),
    ("rtdose.dcm", "implicit, multi-frame grid (GridFrameOffsetVector)"),
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", "JPEG baseline"),
    ("SC_rgb_small_odd_jpeg.dcm", "JPEG baseline, odd size"),
    ("JPEG-lossy.dcm", "JPEG extended 12 bit"),
    ("SC_rgb_jpeg_gdcm.dcm", "JPEG lossless SV1"),
    ("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS lossless"),
    ("JPEGLSNearLossless_16.dcm", "JPEG-LS near lossless"),
    ("MR_small_jp2klossless.dcm", "JPEG 2000 lossless"),
    ("JPEG2000.dcm", "JPEG 2000"),
    ("MR_small_RLE.dcm", "RLE lossless"),
    ("SC_rgb_rle_16bit_2frame.dcm", "RLE, RGB multi-frame"),
]
LOCAL_FILES = [
    (os.path.join(DATA, "philips_3DpCASL_enhanced", "dcm", "1901_WIP_3DpCASL_real.dcm"),
     "enhanced multi-frame MR"),
    (os.path.join(DATA, "siemens_mosaic_rle", "dcm", "4.dcm"), "Siemens mosaic, RLE"),
    (os.path.join(DATA, "philips_3DpCASL_classic", "dcm", "1901_0001.dcm"), "classic MR"),
]

_VRS = [b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
        b"OB", b"OD", b"OF", b"OL", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"TM",
        b"UC", b"UI", b"UL", b"UN", b"UR", b"US", b"UT"]
_LONG = {b"OB", b"OD", b"OF", b"OL", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT"}

# The child: scan each file, read every series it finds, and report (one JSON line per file,
# a "start" line before each so a crash names its file).
_WORKER = textwrap.dedent("""
    import json, os, resource, sys, traceback, warnings
    limit = int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.simplefilter("ignore")
    import numpy as np
    from napari_dicomtools.core.errors import DicomToolsError
    from napari_dicomtools.core.series import scan
    from napari_dicomtools.core.volume import read_volume
    paths = open(sys.argv[1]).read().splitlines()
    log = open(sys.argv[2], "a", buffering=1)
    for p in paths:
        log.write(json.dumps({"start": p}) + "\\n")
        rec = {"path": p, "loaded": 0, "skipped": [], "refused": []}
        try:
            found = scan(p)
        except BaseException:
            rec["bug"] = "scan raised: " + traceback.format_exc()
            log.write(json.dumps(rec) + "\\n")
            continue
        rec["skipped"] = [[s.path, s.reason] for s in found.skipped]
        for s in found:
            try:
                vol = read_volume(s)
                np.asarray(vol.array).reshape(-1)[:1].sum()
                rec["loaded"] += 1
            except DicomToolsError as exc:
                rec["refused"].append([exc.path, exc.reason])
            except BaseException:
                rec["bug"] = "read_volume raised: " + traceback.format_exc()
        log.write(json.dumps(rec) + "\\n")
""")


def run_batch(paths, workdir, *, gdcm: bool = False, timeout: float = 240) -> list[dict]:
    """Scan and decode ``paths`` in a child under :data:`MEM_LIMIT`; one record per path.

    Fails the test (naming the file) if the child dies (native crash, memory) or hangs.
    """
    os.makedirs(workdir, exist_ok=True)
    lst = os.path.join(workdir, "paths.txt")
    out = os.path.join(workdir, "log.jsonl")
    with open(lst, "w") as f:
        f.write("\n".join(paths))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               NAPARI_DICOMTOOLS_GDCM="1" if gdcm else "0")
    proc = subprocess.run([sys.executable, "-c", _WORKER, lst, out, str(MEM_LIMIT)],
                          capture_output=True, timeout=timeout, env=env)
    records, started = [], None
    if os.path.exists(out):
        with open(out) as f:
            for line in f:
                r = json.loads(line)
                if "start" in r:
                    started = r["start"]
                else:
                    records.append(r)
                    started = None
    if proc.returncode != 0:
        pytest.fail(f"the reader died (exit {proc.returncode}) on {started}:\n"
                    f"{proc.stderr.decode(errors='replace')[-2000:]}")
    assert len(records) == len(paths)
    return records


def check_records(records) -> dict:
    """Every file loads, or is skipped/refused with a reason naming it; nothing escapes."""
    counts = {"loaded": 0, "skipped": 0, "refused": 0}
    bugs = [f"{r['path']}: {r['bug']}" for r in records if "bug" in r]
    assert not bugs, "\n\n".join(bugs[:5])
    for r in records:
        name = os.path.basename(r["path"])
        for path, reason in r["skipped"] + r["refused"]:
            assert reason and len(reason) > 5, r
            assert "\n" not in reason.strip() or "series" in reason, r
            assert path is None or name in path or os.path.dirname(r["path"]) in path, r
        if r["loaded"]:
            counts["loaded"] += 1
        elif any(name in (p or "") for p, _ in r["skipped"]):
            counts["skipped"] += 1
        else:
            assert r["refused"], f"{name}: neither loaded nor skipped with a reason: {r}"
            counts["refused"] += 1
    return counts


# --------------------------------------------------------------------------------------------
# mutators


def _pixel_start(b: bytes) -> int:
    i = max(b.rfind(b"\xe0\x7f\x10\x00"), b.rfind(b"\x7f\xe0\x00\x10"))
    return i if i > 0 else len(b)


def _vr_positions(b: bytes, end: int) -> list[int]:
    out = []
    for i in range(132 + 4, max(end - 2, 136)):
        if b[i:i + 2] in _VRS and (i - 132) % 2 == 0:
            out.append(i)
    return out


def bit_flips(b: bytes, rng: random.Random, pixel: bool = False) -> bytes:
    out = bytearray(b)
    px = _pixel_start(b)
    lo, hi = (px + 12, len(b)) if pixel and px + 16 < len(b) else (0, min(len(b), px + 64))
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(lo, hi)
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def truncate(b: bytes, rng: random.Random) -> bytes:
    return b[:rng.randrange(0, len(b))]


def corrupt_length(b: bytes, rng: random.Random) -> bytes:
    out = bytearray(b)
    px = _pixel_start(b)
    vrs = _vr_positions(b, px + 8)
    value = rng.choice([0, 1, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFFE, len(b),
                        rng.randrange(1 << 32)])
    if vrs and rng.random() < 0.8:
        i = rng.choice(vrs)
        if bytes(out[i:i + 2]) in _LONG:
            out[i + 4:i + 8] = struct.pack("<I", value & 0xFFFFFFFF)
        else:
            out[i + 2:i + 4] = struct.pack("<H", value & 0xFFFF)
    else:  # implicit VR: the 4-byte length after a tag
        i = rng.randrange(0, max(1, min(px, len(b) - 8)) // 2) * 2
        out[i + 4:i + 8] = struct.pack("<I", value & 0xFFFFFFFF)
    return bytes(out)


def corrupt_vr(b: bytes, rng: random.Random) -> bytes:
    out = bytearray(b)
    vrs = _vr_positions(b, _pixel_start(b) + 8)
    if not vrs:
        return bit_flips(b, rng)
    for _ in range(rng.randint(1, 3)):
        i = rng.choice(vrs)
        out[i:i + 2] = rng.choice([b"ZZ", b"\x00\x00", b"SQ", b"UN", b"OB", b"xx", b"DS",
                                   b"UL", b"OW"])
    return bytes(out)


def deep_nesting(depth: int, defined: bool) -> bytes:
    """CT_small with a sequence nested ``depth`` deep inserted first in its data set."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    base = open(get_testdata_file("CT_small.dcm"), "rb").read()
    start = base.index(b"\x08\x00", 132 + 12)
    while struct.unpack_from("<H", base, start)[0] == 2:  # skip the file meta
        start += 1
    meta_end = 132
    while struct.unpack_from("<H", base, meta_end)[0] == 2:
        vr = base[meta_end + 4:meta_end + 6]
        if vr in _LONG:
            meta_end += 12 + struct.unpack_from("<I", base, meta_end + 8)[0]
        else:
            meta_end += 8 + struct.unpack_from("<H", base, meta_end + 6)[0]
    assert ds  # the seed parses
    tag = struct.pack("<HH", 0x0008, 0x0006)  # LanguageCodeSequence, first in the data set
    if defined:
        inner = b""
        for _ in range(depth):
            item = struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner
            inner = tag + b"SQ\0\0" + struct.pack("<I", len(item)) + item
        nest = inner
    else:
        nest = (tag + b"SQ\0\0" + b"\xff" * 4 + struct.pack("<HHI", 0xFFFE, 0xE000,
                                                              0xFFFFFFFF)) * depth
        nest += (struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD,
                                                                      0)) * depth
    return base[:meta_end] + nest + base[meta_end:]


#: (keyword, values) of absurd header values; each mutant sets one
SEMANTIC = [
    ("Rows", [65535, 0, 1]),
    ("Columns", [65535, 0]),
    ("NumberOfFrames", ["2147483647", "-5", "abc", "0", "300000"]),
    ("BitsAllocated", [7, 0, 64, 1]),
    ("BitsStored", [40, 0]),
    ("SamplesPerPixel", [0, 7, 3]),
    ("PixelRepresentation", [5]),
    ("ImageOrientationPatient", [["0"] * 6, ["1", "0", "0", "1", "0", "0"],
                                 ["2", "0", "0", "0", "2", "0"], ["nan"] * 6,
                                 ["1e-30", "0", "0", "0", "1e-30", "0"], ["1", "0"]]),
    ("ImagePositionPatient", [["1e308", "1e308", "1e308"], ["inf", "0", "0"],
                              ["nan", "0", "0"], ["1e9", "0", "0"]]),
    ("PixelSpacing", [["0", "0"], ["-1", "1"], ["nan", "nan"], ["1e300", "1e300"],
                      ["inf", "1"]]),
    ("RescaleSlope", ["nan", "inf", "1e300", "-0"]),
    ("RescaleIntercept", ["inf", "-inf", "1e300", "nan"]),
    ("SpacingBetweenSlices", ["-3", "inf", "1e300"]),
    ("SliceThickness", ["0", "nan"]),
    ("WindowCenter", ["nan", "1e300"]),
    ("WindowWidth", ["inf", "-5"]),
    ("PhotometricInterpretation", ["PALETTE COLOR", "YBR_FULL_422", "", "RGB"]),
    ("GridFrameOffsetVector", [["a", "b"] * 7 + ["c"], ["nan"] * 15, ["1e308"] * 15,
                               ["0"] * 15, ["1", "2"]]),
    ("TransferSyntaxUID", ["1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.1",
                           "1.2.840.10008.1.2.1.99", "1.2.3.4", "1.2.840.10008.1.2.5"]),
]


def semantic(path: str, keyword: str, value, rng: random.Random) -> bytes | None:
    """``path`` with one attribute set to ``value`` (raw text for DS/IS, invalid numbers
    included: a valid placeholder of the same length is written, then its bytes replaced)."""
    import warnings
    from io import BytesIO

    from pydicom.datadict import dictionary_VR, tag_for_keyword

    ds = pydicom.dcmread(path)
    tag = tag_for_keyword(keyword)
    target = ds.file_meta if keyword == "TransferSyntaxUID" else ds
    vr = dictionary_VR(tag)
    raw = None
    if vr in ("DS", "IS"):
        parts = value if isinstance(value, list) else [str(value)]
        holder = ["7" * len(x) if x else "" for x in parts]
        raw = "\\".join(parts).encode()
        target[tag] = pydicom.DataElement(tag, vr, holder if len(holder) > 1 else holder[0])
        if vr == "IS":
            target[tag].value = [int(h) if h else None for h in holder] \
                if len(holder) > 1 else (int(holder[0]) if holder[0] else None)
        placeholder = "\\".join(holder).encode()
    else:
        target[tag] = pydicom.DataElement(tag, vr, value)
    buf = BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds.save_as(buf, enforce_file_format=False)
    except Exception:  # noqa: BLE001 - pydicom refuses to write this one: not a case
        return None
    out = buf.getvalue()
    if raw is not None:
        if len(raw) % 2:
            raw, placeholder = raw + b" ", placeholder + b" "
        tb = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
        at = [i + 8 for i in range(len(out)) if out.startswith(tb, i)
              and out.startswith(placeholder, i + 8)]
        if not placeholder or len(at) != 1:
            return None
        out = out[:at[0]] + raw + out[at[0] + len(raw):]
    return out


def _seeds() -> list[tuple[str, str]]:
    out = [(get_testdata_file(n), what) for n, what in SEED_FILES]
    out += [(p, what) for p, what in LOCAL_FILES if os.path.exists(p)]
    return [(p, what) for p, what in out if p and os.path.exists(p)]


def make_mutants(outdir: str, per_seed: int = 14) -> list[str]:
    """Write the seeded mutants; returns their paths."""
    rng = random.Random(SEED)
    os.makedirs(outdir, exist_ok=True)
    paths = []

    def put(name: str, data: bytes | None) -> None:
        if data is None:
            return
        p = os.path.join(outdir, name)
        with open(p, "wb") as f:
            f.write(data)
        paths.append(p)

    for k, (src, _) in enumerate(_seeds()):
        data = open(src, "rb").read()
        big = len(data) > 200_000
        n = per_seed // 3 if big else per_seed
        compressed = "jpeg" in src.lower() or "jp2k" in src.lower() or "rle" in src.lower() \
            or "jls" in src.lower() or "jpeg2000" in src.lower() or "JPEG" in src
        for j in range(n):
            kind = j % 6
            if kind == 0:
                put(f"s{k:02d}_{j:02d}_flip.dcm", bit_flips(data, rng))
            elif kind == 1:
                put(f"s{k:02d}_{j:02d}_cut.dcm", truncate(data, rng))
            elif kind == 2:
                put(f"s{k:02d}_{j:02d}_len.dcm", corrupt_length(data, rng))
            elif kind == 3:
                put(f"s{k:02d}_{j:02d}_vr.dcm", corrupt_vr(data, rng))
            elif kind == 4:
                put(f"s{k:02d}_{j:02d}_pixflip.dcm", bit_flips(data, rng, pixel=compressed))
            else:
                kw, values = rng.choice(SEMANTIC)
                put(f"s{k:02d}_{j:02d}_{kw}.dcm", semantic(src, kw, rng.choice(values), rng))
    # every semantic value once, on an uncompressed CT and (sizes) on a JPEG
    ct = get_testdata_file("CT_small.dcm")
    dose = get_testdata_file("rtdose.dcm")
    for kw, values in SEMANTIC:
        for v, value in enumerate(values):
            src = dose if kw == "GridFrameOffsetVector" else ct
            put(f"sem_{kw}_{v}.dcm", semantic(src, kw, value, rng))
    jpeg = get_testdata_file("SC_rgb_dcmtk_+eb+cy+np.dcm")
    for kw, value in (("Rows", 46000), ("Columns", 46000), ("NumberOfFrames", "100000")):
        put(f"sem_jpeg_{kw}.dcm", semantic(jpeg, kw, value, rng))
    for depth in (50, 3000):
        put(f"nest_{depth}_undefined.dcm", deep_nesting(depth, defined=False))
        put(f"nest_{depth}_defined.dcm", deep_nesting(depth, defined=True))
    return paths


# --------------------------------------------------------------------------------------------
# tests


def test_seed_files_cover_every_transfer_syntax():
    syntaxes = set()
    for p, _ in _seeds():
        syntaxes.add(str(pydicom.dcmread(p, stop_before_pixels=True).file_meta
                         .TransferSyntaxUID))
    assert len(syntaxes) >= 12, syntaxes


def test_fuzz_scan_and_read_never_crash(tmp_path):
    """A few hundred seeded mutants: scan never raises, each file loads or is skipped with a
    reason, decoding (in a child under 2 GiB) never crashes or exhausts memory."""
    paths = make_mutants(str(tmp_path / "mutants"))
    assert len(paths) >= 300
    half = len(paths) // 2
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as ex:
        parts = list(ex.map(lambda a: run_batch(*a),
                            [(paths[:half], str(tmp_path / "w1")),
                             (paths[half:], str(tmp_path / "w2"))]))
    records = parts[0] + parts[1]
    counts = check_records(records)
    print(f"\nfuzz: {len(paths)} cases: {counts}")
    # the seeds are real files: a good share of mutants must still load
    assert counts["loaded"] > len(paths) // 5
    assert counts["skipped"] + counts["refused"] > len(paths) // 5


def test_semantic_cases_are_skipped_with_the_right_reason(tmp_path):
    """The issue's reproduced cases end as skipped entries naming the file and the fault."""
    from napari_dicomtools.core.series import scan

    ct = get_testdata_file("CT_small.dcm")
    dose = get_testdata_file("rtdose.dcm")
    rng = random.Random(SEED)
    cases = {
        "zero_iop": (ct, "ImageOrientationPatient", ["0"] * 6, "ImageOrientationPatient"),
        "parallel_iop": (ct, "ImageOrientationPatient", ["1", "0", "0", "1", "0", "0"],
                         "perpendicular"),
        "nonunit_iop": (ct, "ImageOrientationPatient", ["2", "0", "0", "0", "2", "0"],
                        "unit"),
        "zero_spacing": (ct, "PixelSpacing", ["0", "0"], "PixelSpacing"),
        "nan_slope": (ct, "RescaleSlope", "nan", "RescaleSlope"),
        "inf_intercept": (ct, "RescaleIntercept", "inf", "RescaleIntercept"),
        "huge_position": (ct, "ImagePositionPatient", ["1e308", "0", "0"],
                          "ImagePositionPatient"),
        "bad_grid": (dose, "GridFrameOffsetVector", ["a", "b"] * 7 + ["c"], "GridFrameOffsetVector"),
    }
    for name, (src, kw, value, word) in cases.items():
        p = tmp_path / f"{name}.dcm"
        p.write_bytes(semantic(src, kw, value, rng))
        found = scan(p)
        assert not found, name
        (sk,) = found.skipped
        assert sk.path == str(p) and word in sk.reason, (name, sk)
    for depth, defined in ((3000, False), (3000, True)):
        p = tmp_path / f"nest{depth}{defined}.dcm"
        p.write_bytes(deep_nesting(depth, defined))
        found = scan(p)  # must not raise; loads (pydicom copes) or is skipped with a reason
        assert found or (found.skipped and found.skipped[0].path == str(p))


def test_one_bad_file_does_not_stop_the_folder(tmp_path):
    """A folder with a good CT and every kind of bad file: the CT still opens."""
    import shutil

    from napari_dicomtools.core.series import scan
    from napari_dicomtools.core.volume import read_volumes

    d = tmp_path / "mixed"
    d.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), d / "good.dcm")
    rng = random.Random(SEED)
    data = open(get_testdata_file("MR_small.dcm"), "rb").read()
    (d / "cut.dcm").write_bytes(data[:152])
    (d / "nest.dcm").write_bytes(deep_nesting(3000, False))
    (d / "iop.dcm").write_bytes(semantic(get_testdata_file("MR_small.dcm"),
                                         "ImageOrientationPatient", ["0"] * 6, rng))
    (d / "vr.dcm").write_bytes(corrupt_vr(data, rng))
    os.mkfifo(d / "fifo.dcm")
    found = scan(d)
    assert any(s.modality == "CT" for s in found)
    assert any("fifo.dcm" in s.path and "FIFO" in s.reason for s in found.skipped)
    vols = read_volumes(d)
    assert any(v.metadata["modality"] == "CT" for v in vols)


def test_napari_reader_opens_the_good_series_of_a_hostile_folder(tmp_path, monkeypatch):
    """The napari reader: bad headers are skipped, an undecodable series is left out with a
    warning, the good CT becomes a layer; nothing but warnings escapes."""
    import shutil
    import warnings

    from napari_dicomtools._reader import read_dicom

    monkeypatch.setenv("NAPARI_DICOMTOOLS_GDCM", "0")
    d = tmp_path / "hostile"
    d.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), d / "good.dcm")
    rng = random.Random(SEED)
    mr = get_testdata_file("MR_small.dcm")
    (d / "nest.dcm").write_bytes(deep_nesting(3000, False))
    (d / "spacing.dcm").write_bytes(semantic(mr, "PixelSpacing", ["0", "0"], rng))
    (d / "slope.dcm").write_bytes(semantic(mr, "RescaleSlope", "nan", rng))
    jpeg = bytearray(open(get_testdata_file("SC_rgb_dcmtk_+eb+cy+np.dcm"), "rb").read())
    px = _pixel_start(bytes(jpeg))
    jpeg[px + 40:] = bytes(len(jpeg) - px - 40)  # codestream zeroed: scans, cannot decode
    (d / "jpeg.dcm").write_bytes(bytes(jpeg))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layers = read_dicom(str(d))
    assert [kw["metadata"]["modality"] for _, kw, _ in layers] == ["CT"]
    text = " ".join(str(w.message) for w in caught)
    assert "jpeg.dcm" in text and "not opened" in text


def test_cli_never_prints_a_traceback_on_the_fuzz_corpus(tmp_path):
    """`dicomtools info`, `convert` and `png` over the whole mutant folder (GDCM off, in a
    child under 2 GiB): exit codes 0 or 1, one-line reasons, never a Python traceback."""
    import resource
    import subprocess
    import sys

    make_mutants(str(tmp_path / "mutants"), per_seed=6)

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    env = dict(os.environ, NAPARI_DICOMTOOLS_GDCM="0")
    for args in (["info", str(tmp_path / "mutants")],
                 ["convert", str(tmp_path / "mutants"), str(tmp_path / "nii")],
                 ["png", str(tmp_path / "mutants"), str(tmp_path / "png")]):
        r = subprocess.run([sys.executable, "-m", "napari_dicomtools", *args],
                           capture_output=True, text=True, timeout=240, env=env,
                           preexec_fn=limit)
        assert "Traceback" not in r.stderr + r.stdout, (args[0], r.stderr[-2000:])
        assert r.returncode in (0, 1), (args[0], r.returncode, r.stderr[-500:])
