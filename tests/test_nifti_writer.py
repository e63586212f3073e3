"""The NIfTI writer (header built by nibabel, data streamed after it): every voxel type NIfTI-1
stores, in either byte order, RGB24 colour as dcm2niix writes it."""

import os
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pydicom
import pytest

from napari_dicomtools import read_volume
from napari_dicomtools.core.errors import DicomToolsError
from napari_dicomtools.core.nifti import (
    RGB24,
    native_dtype,
    write_layer_nifti_affine,
    write_nifti,
    write_series_nifti,
)
from napari_dicomtools.core.series import scan
from napari_dicomtools.core.synthetic import phantom, write_series

AFFINE = np.array([[-0.7, 0.0, 0.1, 12.0], [0.0, -0.8, 0.0, -30.5], [0.0, 0.05, 2.5, 40.0],
                   [0, 0, 0, 1]])

#: every numeric type nibabel writes in NIfTI-1 (float128/complex256 where numpy has them)
DTYPES = ["uint8", "int8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
          "float32", "float64", "complex64", "complex128"]


def _values(dtype, shape=(3, 5, 7)):
    dt = np.dtype(dtype)
    rng = np.random.default_rng(7)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)
        a.flat[0], a.flat[1] = info.min, info.max  # the extremes survive
        return a
    a = rng.normal(0, 1e3, size=shape).astype(dt)
    if dt.kind == "c":
        a = a + 1j * rng.normal(0, 1e3, size=shape).astype(dt)
    return a.astype(dt)


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_and_byte_order_reads_back_in_nibabel(tmp_path, dtype, order):
    values = _values(dtype)
    if dtype == "int64":  # full-range int64 (narrowed to int32 only when it fits)
        values.flat[2] = np.iinfo(np.int64).max
    stored = values.astype(values.dtype.newbyteorder(order))
    out = write_layer_nifti_affine(tmp_path / "v.nii", stored, AFFINE)
    img = nib.load(out)
    hdr = img.header
    assert hdr.endianness == nib.volumeutils.native_code  # the file is native, whatever in
    assert hdr.get_data_dtype() == values.dtype.newbyteorder("=")
    assert img.shape == values.shape[::-1]
    data = np.asarray(img.dataobj)
    assert np.array_equal(data, values.T)  # equal values, not equal bytes
    raw = open(out, "rb").read()[352:]
    assert raw == np.ascontiguousarray(values.astype(values.dtype.newbyteorder("="))).tobytes()
    fixed = hdr.copy()
    fixed.check_fix()  # nothing for nibabel to repair
    assert fixed.binaryblock == hdr.binaryblock
    assert np.allclose(hdr.get_sform(), AFFINE, atol=1e-5)
    assert hdr.get_sform(coded=True)[1] == 1 and hdr.get_qform(coded=True)[1] == 1


def test_int64_narrowed_to_int32_only_when_it_fits(tmp_path):
    small = np.arange(24, dtype=">i8").reshape(2, 3, 4) - 5
    img = nib.load(write_layer_nifti_affine(tmp_path / "a.nii.gz", small, AFFINE))
    assert img.get_data_dtype() == np.int32
    assert np.array_equal(np.asarray(img.dataobj), small.T)
    big = small * 2**40
    img = nib.load(write_layer_nifti_affine(tmp_path / "b.nii.gz", big, AFFINE))
    assert img.get_data_dtype() == np.int64
    assert np.array_equal(np.asarray(img.dataobj), big.T)


def test_bool_mask_written_as_uint8(tmp_path):
    mask = np.zeros((4, 5, 6), bool)
    mask[1:3, 2, 3:] = True
    img = nib.load(write_layer_nifti_affine(tmp_path / "m.nii.gz", mask, AFFINE))
    assert img.get_data_dtype() == np.uint8
    assert np.array_equal(np.asarray(img.dataobj), mask.T.astype(np.uint8))


def test_unstorable_dtype_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot be stored in NIfTI-1"):
        write_layer_nifti_affine(tmp_path / "s.nii", np.zeros((2, 2, 2), "U3"), AFFINE)
    assert not os.listdir(tmp_path)


def _rgb_series(folder, rgb):
    """A single-frame RGB (PlanarConfiguration 0) series with the synthetic geometry."""
    truth = write_series(folder, phantom(rgb.shape[:3]), spacing=(2.0, 0.7, 0.9),
                         orientation=(1, 0, 0, 0, 0.8660254, -0.5), window=None)
    for path in truth.files:
        ds = pydicom.dcmread(path)
        pos = np.asarray(ds.ImagePositionPatient, float) - truth.origin
        k = int(round(float(np.dot(pos, truth.direction[:, 0])) / truth.spacing[0]))
        for kw in ("RescaleSlope", "RescaleIntercept", "RescaleType"):
            delattr(ds, kw)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = np.ascontiguousarray(rgb[k]).tobytes()
        ds.save_as(path, enforce_file_format=True)
    return truth


@pytest.fixture
def rgb_folder(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(6, 14, 18, 3), dtype=np.uint8)
    _rgb_series(tmp_path / "rgb", rgb)
    return tmp_path / "rgb", rgb


def test_rgb_volume_written_as_rgb24(rgb_folder, tmp_path):
    folder, rgb = rgb_folder
    vol = read_volume(folder)
    assert vol.rgb and np.array_equal(vol.array, rgb)
    img = nib.load(write_nifti(vol, tmp_path / "c.nii.gz"))
    assert img.header["datatype"] == 128 and img.header["bitpix"] == 24
    assert img.get_data_dtype() == RGB24 and img.shape == (18, 14, 6)
    data = np.asarray(img.dataobj)
    packed = np.stack([data["R"], data["G"], data["B"]], -1)
    assert np.array_equal(packed, rgb.transpose(2, 1, 0, 3))
    assert np.allclose(img.affine, vol.affine_ras, atol=1e-5)
    # the streaming writer (what `dicomtools convert` runs) writes the same file
    series = scan(folder)[0]
    write_series_nifti(series, tmp_path / "s.nii.gz")
    streamed = nib.load(tmp_path / "s.nii.gz")
    assert np.array_equal(np.asarray(streamed.dataobj), data)
    assert np.array_equal(streamed.affine, img.affine)


def test_sixteen_bit_colour_is_exact_or_refused(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, size=(2, 3, 4, 3)).astype(np.uint16)
    img = nib.load(write_layer_nifti_affine(tmp_path / "a.nii", rgb * 257, AFFINE, rgb=True))
    data = np.asarray(img.dataobj)
    assert np.array_equal(np.stack([data[c] for c in "RGB"], -1), rgb.transpose(2, 1, 0, 3))
    bad = rgb * 257
    bad[0, 0, 0, 0] = 1000
    with pytest.raises(DicomToolsError, match="without losing precision"):
        write_layer_nifti_affine(tmp_path / "b.nii", bad, AFFINE, rgb=True)
    assert not (tmp_path / "b.nii").exists()
    with pytest.raises(DicomToolsError, match="3 or 4 samples"):
        write_layer_nifti_affine(tmp_path / "c.nii", rgb[..., :2], AFFINE, rgb=True)


@pytest.mark.skipif(shutil.which("dcm2niix") is None, reason="dcm2niix not installed")
def test_rgb24_agrees_with_dcm2niix(rgb_folder, tmp_path):
    folder, _ = rgb_folder
    out = tmp_path / "ref"
    out.mkdir()
    r = subprocess.run(["dcm2niix", "-o", str(out), "-f", "ref", "-z", "n", "-b", "n",
                        "-v", "0", str(folder)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    ref = nib.load(out / "ref.nii")
    ours = nib.load(write_nifti(read_volume(folder), tmp_path / "ours.nii"))
    assert ref.header["datatype"] == ours.header["datatype"] == 128
    ref_c, ours_c = nib.as_closest_canonical(ref), nib.as_closest_canonical(ours)
    assert ours_c.shape == ref_c.shape
    assert np.allclose(ours_c.affine, ref_c.affine, atol=0.01)
    assert np.array_equal(np.asarray(ours_c.dataobj), np.asarray(ref_c.dataobj))


def _nibabel_reference(values, affine):
    """The header nibabel itself writes for ``values`` (C-order slice, row, column) with the
    fields our writer sets (sform and qform code 1, units mm and s)."""
    data = np.ascontiguousarray(values.T)
    img = nib.Nifti1Image(data, affine, dtype=native_dtype(data.dtype))
    img.set_qform(affine, 1)
    img.set_sform(affine, 1)
    img.header.set_xyzt_units("mm", "sec")
    return img.header


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_header_fields_match_the_header_nibabel_writes(tmp_path, dtype, order):
    """Field by field against nibabel's own Nifti1Image header for the same array and affine
    (4D included): what a reader of either file gets is the same."""
    values = _values(dtype, shape=(2, 3, 4, 5)).astype(np.dtype(dtype).newbyteorder(order))
    img = nib.load(write_layer_nifti_affine(tmp_path / "v.nii.gz", values, AFFINE,
                                            repetition_time=1.0))
    ours = img.header
    ref = _nibabel_reference(values, AFFINE)
    for field in ("sizeof_hdr", "dim", "datatype", "bitpix", "pixdim", "qform_code",
                  "sform_code", "quatern_b", "quatern_c", "quatern_d", "qoffset_x",
                  "qoffset_y", "qoffset_z", "srow_x", "srow_y", "srow_z", "xyzt_units",
                  "magic", "intent_code", "slice_code", "cal_min", "cal_max"):
        assert np.array_equal(ours[field], ref[field]), field
    assert ours.get_data_dtype() == ref.get_data_dtype()
    assert img.dataobj.offset == 352
    assert ours.get_slope_inter() == (None, None)  # raw values, no scaling
    assert np.allclose(ours.get_best_affine(), ref.get_best_affine())


def test_rgba_and_big_endian_colour_read_back(tmp_path):
    rgba = np.random.default_rng(5).integers(0, 256, size=(2, 3, 4, 4)).astype(">u2")
    img = nib.load(write_layer_nifti_affine(tmp_path / "c.nii", rgba, AFFINE, rgb=True))
    assert img.header["datatype"] == 2304 and img.header["bitpix"] == 32
    data = np.asarray(img.dataobj)
    assert np.array_equal(np.stack([data[c] for c in "RGBA"], -1), rgba.transpose(2, 1, 0, 3))


def test_big_endian_dicom_series_writes_the_little_endian_values(tmp_path):
    """pydicom's MR_small in Explicit VR Big Endian and in Little Endian: the same NIfTI."""
    from pydicom.data import get_testdata_file

    files = {}
    for name in ("MR_small.dcm", "MR_small_bigendian.dcm"):
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(get_testdata_file(name), folder / name)
        files[name] = write_series_nifti(scan(folder)[0], tmp_path / f"{name}.nii.gz")
    little, big = (nib.load(files[n]) for n in ("MR_small.dcm", "MR_small_bigendian.dcm"))
    assert big.get_data_dtype() == little.get_data_dtype()
    assert np.array_equal(np.asarray(big.dataobj), np.asarray(little.dataobj))
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    assert np.array_equal(np.asarray(big.dataobj)[:, :, 0], ds.pixel_array.T)


def test_nii_gz_is_one_gzip_member_that_every_reader_takes(tmp_path):
    """A .nii.gz big enough for many parallel compression blocks is still one gzip member
    (some readers stop after the first member), with the right CRC and length: Python's
    gzip, `gzip -t` and nibabel read it."""
    import gzip
    import struct
    import zlib

    values = np.random.default_rng(2).integers(-1024, 3000, size=(12, 256, 256), dtype=np.int16)
    values[:, :64] = -1024  # compressible air, as CT has
    out = write_layer_nifti_affine(tmp_path / "big.nii.gz", values, AFFINE)
    raw = open(out, "rb").read()
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = d.decompress(raw)
    assert d.eof and d.unused_data == b""  # one member, nothing after it
    assert data[352:] == values.tobytes()
    crc, size = struct.unpack("<II", raw[-8:])
    assert crc == zlib.crc32(data) and size == len(data) % 2**32
    assert gzip.decompress(raw) == data
    if shutil.which("gzip"):
        assert subprocess.run(["gzip", "-t", out]).returncode == 0
    assert np.array_equal(np.asarray(nib.load(out).dataobj), values.T)


@pytest.mark.parametrize("slices", [1, 20, 31, 32, 40])
def test_small_gz_written_in_this_thread_has_the_threaded_writers_bytes(tmp_path, slices,
                                                                        monkeypatch):
    """A .nii.gz of one gzip block (at most 256 KiB: 64 x 64 x 31 int16 and its header) is
    compressed without isal's writer thread; its bytes must be the writer's own (the batch
    outputs stay byte-identical), and bigger ones still go through the writer."""
    from napari_dicomtools.core import nifti
    from napari_dicomtools.core.volume import Volume

    pytest.importorskip("isal")
    arr = (np.arange(slices * 64 * 64) % 3001 - 1000).astype(np.int16).reshape(slices, 64, 64)
    vol = Volume(arr, spacing=(2.5, 0.8, 0.8), origin=(0.0, 0.0, 0.0),
                 direction=np.eye(3), metadata={})
    fast = write_nifti(vol, str(tmp_path / "fast.nii.gz"))
    monkeypatch.setattr(nifti, "_one_block_gzip", lambda level: None)
    threaded = write_nifti(vol, str(tmp_path / "threaded.nii.gz"))
    with open(fast, "rb") as a, open(threaded, "rb") as b:
        assert a.read() == b.read()
    assert np.array_equal(np.asanyarray(nib.load(fast).dataobj).T, arr)
