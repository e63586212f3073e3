"""Hostile input (issue 11): bombs, absurd declared sizes, FIFOs and decoder crashes.

Each case runs in a child under a 2 GiB address-space limit (``RLIMIT_AS``) and must finish in
seconds, with a one-line reason naming the file; the child reports its time and peak RSS.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import textwrap
import time
import zlib

import pydicom
import pytest
from pydicom.data import get_testdata_file

MEM_LIMIT = 2 * 2**30

_CHILD = textwrap.dedent("""
    import json, resource, sys, time, warnings
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    from napari_dicomtools.core.errors import DicomToolsError
    from napari_dicomtools.core.series import scan
    from napari_dicomtools.core.volume import read_volume
    out = {{"skipped": [], "refused": [], "loaded": []}}
    found = scan(sys.argv[1])
    out["skipped"] = [[s.path, s.reason] for s in found.skipped]
    for s in found:
        for lazy in {lazies}:
            try:
                v = read_volume(s, lazy=lazy)
                out["loaded"].append(list(v.array.shape))
            except DicomToolsError as exc:
                out["refused"].append(str(exc))
    out["seconds"] = time.perf_counter() - t0
    # the peak of this process's own memory: VmHWM (ru_maxrss keeps the parent's peak
    # across a vfork-and-exec, as subprocess starts children: a pytest worker's GiB)
    try:
        with open("/proc/self/status") as f:
            hwm = [ln for ln in f if ln.startswith("VmHWM:")][0]
        out["peak_mb"] = int(hwm.split()[1]) / 1024
    except (OSError, IndexError):
        out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
""")


def run_child(path, *, lazies=(False,), timeout: float = 60, gdcm: bool = False) -> dict:
    """Scan and read ``path`` in a child under :data:`MEM_LIMIT`; its JSON report."""
    code = _CHILD.format(limit=MEM_LIMIT, lazies=repr(tuple(lazies)))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               NAPARI_DICOMTOOLS_GDCM="1" if gdcm else "0")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          timeout=timeout, env=env)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    out["wall"] = wall
    print(f"\n{os.path.basename(str(path))}: {wall:.1f} s wall, "
          f"{out['seconds']:.1f} s in the child, peak RSS {out['peak_mb']:.0f} MB")
    return out


def _one_line(reason: str) -> None:
    assert reason and "\n" not in reason and "Traceback" not in reason, reason


# --------------------------------------------------------------------------------------------
# zip bombs


def _zip_with_raw_member(path, name: str, raw_deflate: bytes, size: int, crc: int = 0) -> None:
    """A zip holding one deflated member given as a raw deflate stream (no zip64)."""
    fn = name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(raw_deflate),
                        size, len(fn), 0) + fn
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc,
                          len(raw_deflate), size, len(fn), 0, 0, 0, 0, 0, 0) + fn
    body = local + raw_deflate
    eocd = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(body), 0)
    with open(path, "wb") as f:
        f.write(body + central + eocd)


def _zeros_deflate(n_blocks: int, prefix: bytes = b"", block: int = 16 * 2**20) -> bytes:
    """A raw deflate stream of ``prefix`` + ``n_blocks * block`` zero bytes, built in
    milliseconds: a sync-flushed compressed block of zeros only refers to itself, so it can be
    repeated; an empty final block ends the stream."""
    head = b""
    if prefix:
        c0 = zlib.compressobj(9, zlib.DEFLATED, -15)
        head = c0.compress(prefix) + c0.flush(zlib.Z_SYNC_FLUSH)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = c.compress(bytes(block)) + c.flush(zlib.Z_SYNC_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    return head + piece * n_blocks + end


def test_zeros_deflate_helper_is_a_valid_stream():
    raw = _zeros_deflate(3, prefix=b"abc", block=1000)
    assert zlib.decompress(raw, -15) == b"abc" + bytes(3000)


def test_zip_member_declaring_3gb_is_refused_in_seconds(tmp_path):
    """A 30 KB member whose zip headers declare 3 GB: refused from the headers alone."""
    data = open(get_testdata_file("CT_small.dcm"), "rb").read()
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    raw = c.compress(data) + c.flush()
    z = tmp_path / "liar.zip"
    _zip_with_raw_member(z, "ct.dcm", raw, 3 * 2**30)
    out = run_child(z)
    assert out["wall"] < 30 and out["seconds"] < 10
    assert not out["loaded"]
    (path, reason), = out["skipped"]
    assert path.endswith("liar.zip::ct.dcm") and "zip" in reason
    _one_line(reason)


def test_zip_of_zeros_is_never_inflated_whole(tmp_path):
    """A 2 MB zip whose member inflates to 2 GiB of zeros: seconds, little memory."""
    z = tmp_path / "zeros.zip"
    raw = _zeros_deflate(128)
    assert len(raw) < 3 * 2**20
    _zip_with_raw_member(z, "zeros.dcm", raw, 128 * 16 * 2**20)
    out = run_child(z)
    assert out["seconds"] < 10 and out["peak_mb"] < 1000
    (path, reason), = out["skipped"]
    assert path.endswith("zeros.zip::zeros.dcm")
    _one_line(reason)


def test_zip_with_a_dicom_header_then_zeros_streams(tmp_path):
    """A real CT header followed by 1 GiB of zeros in a zip: the header is read from the
    stream, the zeros are never held in memory."""
    data = open(get_testdata_file("CT_small.dcm"), "rb").read()
    z = tmp_path / "ct_then_zeros.zip"
    raw = _zeros_deflate(64, prefix=data)
    _zip_with_raw_member(z, "ct.dcm", raw, len(data) + 64 * 16 * 2**20)
    out = run_child(z)
    assert out["seconds"] < 20 and out["peak_mb"] < 1000
    for _, reason in out["skipped"]:
        _one_line(reason)
    for reason in out["refused"]:
        _one_line(reason)


# --------------------------------------------------------------------------------------------
# deflate bombs


def _deflated_dicom(path, dataset_tail_blocks: int, *, before_pixels: bool) -> None:
    """CT_small re-encoded as Deflated Explicit VR Little Endian, with gigabytes of zeros
    inflating after its Pixel Data (or inside a private OB element before it)."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=False, little_endian=True, enforce_file_format=True)
    full = buf.getvalue()
    meta_end = 132
    while struct.unpack_from("<H", full, meta_end)[0] == 2:
        vr = full[meta_end + 4:meta_end + 6]
        if vr in (b"OB", b"UN", b"SQ", b"UT", b"OW"):
            meta_end += 12 + struct.unpack_from("<I", full, meta_end + 8)[0]
        else:
            meta_end += 8 + struct.unpack_from("<H", full, meta_end + 6)[0]
    meta, body = bytearray(full[:meta_end]), full[meta_end:]
    old_ts, new_ts = b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.1.99"
    assert old_ts in meta and len(old_ts) + 2 == len(new_ts)
    i = meta.index(old_ts)
    meta[i - 2:i] = struct.pack("<H", len(new_ts))
    meta[i:i + len(old_ts)] = new_ts
    glen = struct.unpack_from("<I", meta, 140)[0] + 2
    meta[140:144] = struct.pack("<I", glen)
    n = dataset_tail_blocks * 16 * 2**20
    if before_pixels:
        px = body.rindex(b"\xe0\x7f\x10\x00")
        bomb = struct.pack("<HH", 0x0009, 0x0010) + b"LO" + struct.pack("<H", 4) + b"ZAP "
        bomb += struct.pack("<HH", 0x0009, 0x1000) + b"OB\0\0" + struct.pack("<I", n)
        # private group 0009 sorts after 0008: put it right after the 0008 group
        cut = 0
        while struct.unpack_from("<H", body, cut)[0] == 0x0008:
            vr = body[cut + 4:cut + 6]
            if vr in (b"OB", b"UN", b"SQ", b"UT", b"OW"):
                cut += 12 + struct.unpack_from("<I", body, cut + 8)[0]
            else:
                cut += 8 + struct.unpack_from("<H", body, cut + 6)[0]
        assert cut < px
        prefix = body[:cut] + bomb
        stream = _zeros_deflate(dataset_tail_blocks, prefix=prefix)
    else:
        stream = _zeros_deflate(dataset_tail_blocks, prefix=body)
    with open(path, "wb") as f:
        f.write(bytes(meta) + stream)


def test_deflate_bomb_after_pixel_data_is_refused_at_read(tmp_path):
    """2 MB deflated file whose data set inflates to 2 GiB (zeros after Pixel Data): the scan
    stops inflating at Pixel Data; the read refuses beyond what the image can need."""
    p = tmp_path / "dfl_tail.dcm"
    _deflated_dicom(p, 128, before_pixels=False)
    assert os.path.getsize(p) < 3 * 2**20
    out = run_child(p)
    assert out["seconds"] < 15 and out["peak_mb"] < 1000
    assert not out["loaded"] and not out["skipped"]
    (reason,) = out["refused"]
    assert "dfl_tail.dcm" in reason and "deflate" in reason
    _one_line(reason)


def test_deflate_bomb_inside_the_header_is_refused_at_scan(tmp_path):
    """A private OB element inflating to 4 GiB before Pixel Data: the scan refuses it."""
    p = tmp_path / "dfl_head.dcm"
    _deflated_dicom(p, 255, before_pixels=True)
    out = run_child(p)
    assert out["seconds"] < 20 and out["peak_mb"] < 1500
    (path, reason), = out["skipped"]
    assert path.endswith("dfl_head.dcm") and "deflate" in reason
    _one_line(reason)


# --------------------------------------------------------------------------------------------
# absurd declared sizes


def _declare_size(src: str, dst, rows: int, cols: int, k: int) -> None:
    """``src`` (JPEG or J2K) with Rows/Columns and the codestream's own size set."""
    ds = pydicom.dcmread(src)
    ds.Rows, ds.Columns = rows, cols
    ds.SOPInstanceUID = f"1.2.826.0.1.3680043.9.7777.{k + 1}"
    ds.ImagePositionPatient = [0, 0, 5 * k]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1, 1]
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False)
    b = bytearray(buf.getvalue())
    px = b.rindex(b"\xe0\x7f\x10\x00")
    sof = [b.find(m, px) for m in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc3")]
    sof = [i for i in sof if i > 0]
    siz = b.find(b"\xff\x51", px)
    if sof:
        i = min(sof)
        b[i + 5:i + 9] = struct.pack(">HH", rows, cols)
    elif siz > 0:
        b[siz + 6:siz + 14] = struct.pack(">II", cols, rows)
    with open(dst, "wb") as f:
        f.write(b)


def test_eight_small_jpegs_declaring_46000_squared_are_refused(tmp_path):
    """Eight ~10 KB JPEGs declaring 46000x46000 (a 31.5 GiB series): refused before any
    allocation, eager and lazy, in seconds."""
    d = tmp_path / "jpegs"
    d.mkdir()
    for k in range(8):
        _declare_size(get_testdata_file("JPEG-lossy.dcm"), d / f"{k}.dcm", 46000, 46000, k)
    out = run_child(d, lazies=(False, True))
    assert out["seconds"] < 15 and out["peak_mb"] < 1000
    assert not out["loaded"]
    assert len(out["refused"]) == 2, out
    for reason in out["refused"]:
        _one_line(reason)
        assert "GiB" in reason and "refus" in reason


def test_small_j2k_declaring_40000_squared_is_refused_before_decoding(tmp_path):
    from napari_dicomtools.core._decode import check_frame
    from napari_dicomtools.core.errors import UnreadableDicomError
    from napari_dicomtools.core.headers import read_header

    p = tmp_path / "j2k.dcm"
    _declare_size(get_testdata_file("JPEG2000.dcm"), p, 40000, 40000, 0)
    with pytest.raises(UnreadableDicomError, match="refused before decoding"):
        check_frame(read_header(p))  # even with memory to spare
    out = run_child(p)
    assert out["seconds"] < 15 and out["peak_mb"] < 1000
    (reason,) = out["refused"]
    assert "j2k.dcm" in reason
    _one_line(reason)


# --------------------------------------------------------------------------------------------
# file-system oddities


def test_fifo_in_a_folder_is_skipped_not_opened(tmp_path):
    d = tmp_path / "with_fifo"
    d.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), d / "ct.dcm")
    os.mkfifo(d / "pipe.dcm")
    os.mkfifo(d / "pipe.zip")
    out = run_child(d, timeout=60)
    assert out["seconds"] < 10
    assert len(out["loaded"]) == 1
    reasons = {os.path.basename(p): r for p, r in out["skipped"]}
    assert "FIFO" in reasons["pipe.dcm"] and "FIFO" in reasons["pipe.zip"]
    out = run_child(d / "pipe.dcm", timeout=60)  # the FIFO itself, given directly
    assert "FIFO" in out["skipped"][0][1]


def test_socket_is_skipped(tmp_path):
    import socket

    d = tmp_path / "with_socket"
    d.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), d / "ct.dcm")
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(d / "sock"))
    except OSError:
        pytest.skip("cannot bind a unix socket here")
    try:
        from napari_dicomtools.core.series import scan

        found = scan(d)
        assert len(found) == 1
        assert any("socket" in k.reason for k in found.skipped)
    finally:
        s.close()


# --------------------------------------------------------------------------------------------
# native decoder crashes


def _gdcm_killer(dst) -> None:
    """A JPEG baseline file with 7 bytes of its codestream changed (seeded): GDCM aborts the
    process on it (``gdcm::Exception`` thrown through C: SIGABRT), pylibjpeg and Pillow
    decline it with an error."""
    data = open(get_testdata_file("SC_rgb_dcmtk_+eb+cy+np.dcm"), "rb").read()
    pix = data.rfind(b"\xe0\x7f\x10\x00")
    rng = random.Random(12)
    b = bytearray(data)
    for _ in range(rng.randint(1, 12)):
        i = rng.randrange(pix + 12, len(b))
        b[i] = rng.randrange(256)
    with open(dst, "wb") as f:
        f.write(b)


def test_gdcm_crash_is_contained_in_a_child(tmp_path):
    """GDCM kills its process on this file; our last-resort GDCM child dies instead."""
    from napari_dicomtools.core._decode import _available, _gdcm_in_child
    from napari_dicomtools.core.errors import UnreadableDicomError
    from napari_dicomtools.core.headers import read_header

    p = tmp_path / "gdcm_killer.dcm"
    _gdcm_killer(p)
    inst = read_header(p)
    if "gdcm" not in _available(inst.transfer_syntax):
        pytest.skip("python-gdcm not installed")
    direct = subprocess.run(
        [sys.executable, "-c", "import sys; from pydicom.pixels import pixel_array; "
         "pixel_array(sys.argv[1], decoding_plugin='gdcm')", str(p)], capture_output=True)
    assert direct.returncode < 0  # the file really is a process killer for GDCM
    with pytest.raises(UnreadableDicomError, match="crashed"):
        _gdcm_in_child(inst, None)


def test_corrupted_jpeg_does_not_kill_the_reader(tmp_path):
    """The GDCM-killing file through the whole reader, GDCM fallback on: a clean refusal."""
    d = tmp_path / "bad_jpeg"
    d.mkdir()
    _gdcm_killer(d / "bad.dcm")
    shutil.copy(get_testdata_file("CT_small.dcm"), d / "ct.dcm")
    out = run_child(d, gdcm=True)
    assert len(out["loaded"]) == 1  # the CT still opens
    (reason,) = out["refused"]
    assert "bad.dcm" in reason and "cannot be decoded" in reason
    _one_line(reason)


def test_rle_panic_is_caught(tmp_path):
    """pylibjpeg-rle panics (PanicException, a BaseException) on this RLE file; the decode
    falls back to pydicom's own RLE decoder or fails cleanly."""
    from napari_dicomtools.core.errors import DicomToolsError
    from napari_dicomtools.core.series import scan
    from napari_dicomtools.core.volume import read_volume

    data = open(get_testdata_file("SC_rgb_rle_16bit_2frame.dcm"), "rb").read()
    pix = data.rfind(b"\xe0\x7f\x10\x00")
    rng = random.Random(14)
    b = bytearray(data)
    for _ in range(rng.randint(1, 12)):
        i = rng.randrange(pix + 12, len(b))
        b[i] = rng.randrange(256)
    p = tmp_path / "panic.dcm"
    p.write_bytes(b)
    from pydicom.pixels import pixel_array

    try:
        pixel_array(str(p), decoding_plugin="pylibjpeg")
        panicked = False
    except Exception:  # noqa: BLE001
        panicked = False
    except BaseException as exc:  # noqa: BLE001 - the PanicException we guard against
        panicked = type(exc).__name__ == "PanicException"
    if not panicked:
        pytest.skip("this pylibjpeg-rle does not panic on the mutant")
    for s in scan(p):
        try:
            read_volume(s)
        except DicomToolsError as exc:
            _one_line(exc.reason)


def test_safe_dcmread_for_other_readers(tmp_path, monkeypatch):
    """``safe_dcmread`` (for header inspectors, metadata tables, the anonymizer) reads a
    normal deflated file and refuses a deflate bomb instead of inflating it whole."""
    from napari_dicomtools.core.errors import UnreadableDicomError
    from napari_dicomtools.core.headers import safe_dcmread

    with open(get_testdata_file("image_dfl.dcm"), "rb") as f:
        ds = safe_dcmread(f, "image_dfl.dcm")
    ref = pydicom.dcmread(get_testdata_file("image_dfl.dcm"))
    assert ds.Rows == ref.Rows and ds.PixelData == ref.PixelData
    with open(get_testdata_file("image_dfl.dcm"), "rb") as f:
        head = safe_dcmread(f, "image_dfl.dcm", stop_before_pixels=True)
    assert "PixelData" not in head and head.Rows == ref.Rows
    with open(get_testdata_file("CT_small.dcm"), "rb") as f:
        assert safe_dcmread(f, "ct", stop_before_pixels=True).Rows == 128
    p = tmp_path / "dfl_head.dcm"
    _deflated_dicom(p, 32, before_pixels=True)  # 512 MiB private element before the pixels
    import importlib

    headers = importlib.import_module("napari_dicomtools.core.headers")
    monkeypatch.setattr(headers, "MAX_DEFLATED_HEADER", 64 * 2**20)
    with open(p, "rb") as f, pytest.raises(UnreadableDicomError, match="deflate"):
        safe_dcmread(f, str(p), stop_before_pixels=True)
