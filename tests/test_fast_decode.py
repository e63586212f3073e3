"""Compressed frames decoded by imagecodecs' GIL-free codecs (libjpeg-turbo, CharLS, OpenJPEG,
PackBits for RLE) in threads, straight into the volume: the values are those of the
uncompressed series and of pydicom's own plugins, for signed and unsigned data; a frame the
fast codec declines goes through pydicom's plugins and is reported as before."""

import os
import warnings

import numpy as np
import pydicom
import pytest

from napari_dicomtools import read_volume
from napari_dicomtools.core import _decode, _parallel, scan, volume

ic = pytest.importorskip("imagecodecs")

VALUES = (np.arange(10 * 40 * 40).reshape(10, 40, 40) * 7) % 3000 - 1024
SYNTAXES = ["JPEGLosslessSV1", "JPEGLSLossless", "JPEG2000Lossless", "RLELossless"]


def _jpeg_lossless(folder):
    """Re-encode a native series as JPEG Lossless SV1 (pydicom has no encoder for it):
    libjpeg-turbo's lossless mode on the stored bits, as a DICOM encoder writes them."""
    from pydicom.encaps import encapsulate

    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        ds = pydicom.dcmread(path)
        bits = int(ds.BitsStored)
        raw = ds.pixel_array.view(np.uint16) & ((1 << bits) - 1)
        ds.PixelData = encapsulate([ic.jpeg8_encode(raw, lossless=True, predictor=1,
                                                    bitspersample=bits)])
        ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGLosslessSV1
        ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    """syntax name -> {"signed"|"unsigned": (truth values, folder)}: each syntax with stored
    values signed (BitsStored 16, PixelRepresentation 1) and unsigned 12-bit (intercept)."""
    from napari_dicomtools.core.synthetic import write_series

    out = {}
    for ts_name in SYNTAXES:
        for kind, intercept in (("signed", 0.0), ("unsigned", -1024.0)):
            folder = tmp_path_factory.mktemp(f"{ts_name}-{kind}")
            ts = None if ts_name == "JPEGLosslessSV1" else getattr(pydicom.uid, ts_name)
            truth = write_series(folder, VALUES, intercept=intercept, transfer_syntax=ts)
            if ts is None:
                _jpeg_lossless(folder)
            out.setdefault(ts_name, {})[kind] = (truth.values, str(folder))
    return out


@pytest.fixture
def two_workers(monkeypatch):
    monkeypatch.setenv("NAPARI_DICOMTOOLS_WORKERS", "2")
    _parallel.discard_pool()
    yield
    _parallel.discard_pool()


@pytest.fixture
def fast_calls(monkeypatch):
    """Counts the frames the fast codecs decoded for reads (not the background decodes of
    lazy volumes, an earlier test's included)."""
    import threading

    calls = {"ok": 0, "declined": 0}
    real = _decode.decode_into

    def spy(inst, out, *args, **kw):
        ok = real(inst, out, *args, **kw)
        if not threading.current_thread().name.startswith("dicomtools-prefetch"):
            calls["ok" if ok else "declined"] += 1
        return ok

    monkeypatch.setattr(_decode, "decode_into", spy)
    return calls


@pytest.mark.parametrize("kind", ["signed", "unsigned"])
@pytest.mark.parametrize("ts_name", SYNTAXES)
def test_threads_decode_exact_values_without_worker_processes(compressed, two_workers,
                                                              fast_calls, ts_name, kind):
    values, folder = compressed[ts_name][kind]
    series = scan(folder)[0]
    assert series.first.transfer_syntax == getattr(pydicom.uid, ts_name)
    plan = volume._plan(series)
    assert not plan.in_processes(2)  # a GIL-free codec: threads, no pool
    vol = read_volume(series)
    assert np.array_equal(vol.array, values)
    assert fast_calls == {"ok": len(values), "declined": 0}
    assert _parallel._POOL["pool"] is None
    # lazily, frame by frame, the same values
    lazy = read_volume(series, lazy=True)
    assert np.array_equal(np.asarray(lazy.array[3]), values[3])


@pytest.mark.parametrize("ts_name", SYNTAXES)
def test_same_values_as_pydicom_plugins(compressed, monkeypatch, ts_name):
    _, folder = compressed[ts_name]["unsigned"]
    fast = read_volume(folder).array
    monkeypatch.setenv("NAPARI_DICOMTOOLS_FAST_CODECS", "0")
    assert _decode.fast_codec(scan(folder)[0].first) is None
    assert np.array_equal(read_volume(folder).array, fast)


def _header(path):
    """The header of one file, as the scanner reads it."""
    return scan(path)[0].first


PYDICOM_FILES = [  # monochrome, single frame, in pydicom's bundled test files
    "693_J2KI.dcm", "JPEG2000.dcm", "MR_small_jp2klossless.dcm", "JPEGLSNearLossless_08.dcm",
    "JPEGLSNearLossless_16.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_RLE.dcm",
]


@pytest.mark.parametrize("name", PYDICOM_FILES)
def test_pydicom_files_match_pydicom_plugins(name):
    """Real encoders' output (GDCM, CharLS, OpenJPEG, odd BitsStored, signed J2K): the fast
    codec's stored values, after masking/sign extension, are pydicom's."""
    from pydicom.data import get_testdata_file

    path = os.path.join(os.path.dirname(get_testdata_file("CT_small.dcm")), name)
    if not os.path.exists(path):
        pytest.skip(f"{name} not bundled with this pydicom")
    inst = _header(path)
    assert _decode.fast_codec(inst) is not None
    got = np.empty((inst.rows, inst.columns), volume._stored_dtype(inst))
    assert _decode.decode_into(inst, got)
    volume._fix_bits(got, inst)
    ref, _ = _decode.decode_frame(inst, None)
    assert np.array_equal(got, ref)


def test_colour_and_32_bit_keep_pydicom_plugins():
    from pydicom.data import get_testdata_file

    d = os.path.dirname(get_testdata_file("CT_small.dcm"))
    for name in ("SC_rgb_rle.dcm", "rtdose_rle.dcm", "examples_jpeg2k.dcm"):
        path = os.path.join(d, name)
        if os.path.exists(path):
            assert _decode.fast_codec(_header(path)) is None, name


def test_corrupt_frame_falls_back_and_is_named(compressed, tmp_path, fast_calls):
    """A frame the fast codec refuses goes through pydicom's plugins; when they fail too the
    frame is blank, named, and every other frame is exact."""
    import shutil

    values, src = compressed["RLELossless"]["signed"]
    folder = tmp_path / "bad"
    shutil.copytree(src, folder)
    series = scan(str(folder))[0]
    victim = series.frames[4].instance.path
    data = bytearray(open(victim, "rb").read())
    data[-200:] = b"\xff" * 200
    open(victim, "wb").write(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vol = read_volume(str(folder))
    assert any("frame left blank" in str(w.message) for w in caught)
    bad = [p for p in vol.metadata["problems"] if victim in p]
    assert bad and "cannot be decoded" in bad[0]
    others = [i for i in range(len(values)) if i != 4]
    assert np.array_equal(vol.array[others], values[others])
    assert fast_calls["declined"] == 1 and fast_calls["ok"] == len(values) - 1


def test_codestream_larger_than_header_is_refused_before_allocating(compressed):
    """A codestream holding more pixels than Rows x Columns declare cannot make the codec
    allocate them: the output array bounds it, and the fast path declines."""
    from dataclasses import replace

    _, src = compressed["JPEG2000Lossless"]["signed"]
    inst = scan(src)[0].first
    liar = replace(inst, rows=inst.rows // 2, columns=inst.columns // 2)
    assert not _decode.decode_into(liar, np.empty((liar.rows, liar.columns), np.int16))
    with pytest.raises(ValueError, match="shape"):
        ic.jpeg2k_decode(_decode._frame_bytes(inst),
                         out=np.empty((liar.rows, liar.columns), np.int16))


def test_compressed_read_does_not_import_pydicom(compressed):
    """pydicom's import pulls in its pixel plugins, GDCM and requests (about a second of
    start-up, more than decoding 100 JPEG lossless CT slices): the fast path needs none."""
    import subprocess
    import sys

    values, folder = compressed["JPEGLSLossless"]["signed"]
    probe = ("import sys, numpy as np; from napari_dicomtools import read_volume; "
             "a = read_volume(sys.argv[1]).array; np.save(sys.argv[2], a); "
             "print('pydicom' in sys.modules)")
    out = os.path.join(folder + "-probe.npy")
    r = subprocess.run([sys.executable, "-c", probe, folder, out], capture_output=True,
                       text=True)
    assert r.stdout.split() == ["False"], r.stdout + r.stderr
    assert np.array_equal(np.load(out), values)


@pytest.mark.parametrize("ts_name", ["RLELossless", "JPEG2000Lossless", "JPEGLSLossless"])
def test_enhanced_multiframe_decodes_every_frame_fast(tmp_path, fast_calls, two_workers,
                                                      ts_name):
    """An enhanced multi-frame file (shuffled frames, per-frame rescale): its compressed
    frames are split once, then each decodes into its place; eager and lazy agree."""
    from napari_dicomtools.core.synthetic import write_enhanced

    path = tmp_path / "enhanced.dcm"
    truth = write_enhanced(path, VALUES)
    ds = pydicom.dcmread(path)
    ds.compress(getattr(pydicom.uid, ts_name))
    ds.save_as(path, enforce_file_format=True)
    series = scan(str(path))[0]
    assert series.first.n_frames == len(VALUES)
    vol = read_volume(series)
    assert np.array_equal(vol.array, truth.values)
    assert fast_calls == {"ok": len(VALUES), "declined": 0}
    lazy = read_volume(series, lazy=True)
    assert np.array_equal(np.asarray(lazy.array[7]), truth.values[7])


# --- frames decoded while the scan still parses headers (volume.DecodeAhead) ----------------


def _scan_ahead(folder, **kw):
    """The folder's series scanned with a DecodeAhead, and that, once every frame it took
    is decoded (no race with the scan: the test sees them all)."""
    from napari_dicomtools.core.series import scan

    ahead = volume.DecodeAhead(1, **kw)
    (series,) = scan(folder, on_header=ahead.offer, progress=ahead.progress)  # no stop()
    ahead.pool.shutdown(wait=True)
    return series, ahead


@pytest.mark.parametrize("ts_name", SYNTAXES)
def test_frames_decoded_during_the_scan_are_placed_exactly(compressed, fast_calls, ts_name):
    values, folder = compressed[ts_name]["unsigned"]
    series, ahead = _scan_ahead(folder)
    assert len(ahead.frames) == len(values)
    vol = volume._read_series(series, lazy=False, ahead=ahead)
    assert np.array_equal(vol.array, values)
    assert not ahead.frames  # every one taken: no frame decoded twice
    assert fast_calls == {"ok": len(values), "declined": 0}


def test_decoding_ahead_holds_at_most_its_budget(compressed):
    values, folder = compressed["JPEGLSLossless"]["signed"]
    frame_bytes = values[0].size * 2
    series, ahead = _scan_ahead(folder, max_bytes=2 * frame_bytes)
    assert len(ahead.frames) == 2
    assert np.array_equal(volume._read_series(series, lazy=False, ahead=ahead).array, values)


def test_frames_the_scan_outran_are_dropped_and_decoded_by_the_read(compressed, fast_calls):
    import threading

    values, folder = compressed["RLELossless"]["signed"]
    ahead = volume.DecodeAhead(1)
    gate = threading.Event()
    ahead.pool.submit(gate.wait)  # the decoding thread is busy for the whole scan
    series = volume._the_image_series(folder, ahead)
    ahead.stop()
    gate.set()
    assert not ahead.frames  # all queued, none started: dropped
    vol = volume._read_series(series, lazy=False, ahead=ahead)
    assert np.array_equal(vol.array, values)
    assert fast_calls == {"ok": len(values), "declined": 0}


def test_a_frame_declined_during_the_scan_goes_to_pydicom_once(compressed, tmp_path,
                                                              fast_calls):
    import shutil

    values, src = compressed["RLELossless"]["signed"]
    folder = tmp_path / "bad"
    shutil.copytree(src, folder)
    victim = scan(str(folder))[0].frames[4].instance.path
    data = bytearray(open(victim, "rb").read())
    data[-200:] = b"\xff" * 200
    open(victim, "wb").write(bytes(data))
    series, ahead = _scan_ahead(str(folder))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vol = volume._read_series(series, lazy=False, ahead=ahead)
    assert any(victim in str(w.message) and "frame left blank" in str(w.message)
               for w in caught)
    others = [i for i in range(len(values)) if i != 4]
    assert np.array_equal(vol.array[others], values[others])
    assert fast_calls == {"ok": len(values) - 1, "declined": 1}


def test_the_read_finds_the_frames_where_the_scan_saw_them(compressed, monkeypatch):
    """The scan records where encapsulated Pixel Data starts: the read goes there without
    parsing the header a second time."""
    from napari_dicomtools.core import fastheader

    values, folder = compressed["JPEGLSLossless"]["signed"]
    series = scan(folder)[0]
    assert all(f.instance.encapsulated_offset for f in series.frames)

    def no_parse(*args, **kw):
        raise AssertionError("the header was parsed again")

    monkeypatch.setattr(fastheader, "parse", no_parse)
    assert np.array_equal(read_volume(series).array, values)


def test_a_stale_pixel_offset_is_declined_not_misread(compressed):
    from dataclasses import replace

    values, folder = compressed["RLELossless"]["signed"]
    inst = scan(folder)[0].first
    out = np.empty((inst.rows, inst.columns), np.int16)
    for wrong in (inst.encapsulated_offset + 2, inst.file_size - 4, inst.file_size + 10):
        assert not _decode.decode_into(replace(inst, encapsulated_offset=wrong), out)
    assert _decode.decode_into(inst, out)
    assert np.array_equal(out, values[0])


def test_read_volumes_decodes_while_scanning_too(compressed, two_workers, monkeypatch):
    """read_volumes(folder) offers the scan's files to a DecodeAhead as read_volume does;
    every volume is exact."""
    from napari_dicomtools import read_volumes

    made = []
    real = volume.DecodeAhead.start

    def start():
        made.append(real())
        return made[-1]

    monkeypatch.setattr(volume.DecodeAhead, "start", staticmethod(start))
    values, folder = compressed["JPEGLSLossless"]["unsigned"]
    (vol,) = read_volumes(folder)
    assert np.array_equal(vol.array, values)
    assert len(made) == 1 and made[0] is not None
    assert read_volumes(folder, lazy=True)[0].array.shape == values.shape
    assert len(made) == 1  # a lazy read decodes nothing up front
