import os

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from napari_dicomtools import DicomToolsError, NoSeriesError, Volume, read_volume, scan
from napari_dicomtools.core.volume import smallest_dtype

ORIENTATIONS = {
    "axial": (1, 0, 0, 0, 1, 0),
    "coronal": (1, 0, 0, 0, 0, -1),
    "sagittal": (0, 1, 0, 0, 0, -1),
    "oblique": (0.9, 0.1, 0.2, -0.1, 0.95, 0.3),
    "axial-feet-first": (-1, 0, 0, 0, 1, 0),
}


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_values_and_affine_match_truth(make_series, name):
    truth = make_series(orientation=ORIENTATIONS[name], spacing=(3.0, 0.6, 0.9),
                        origin=(12.5, -40.0, 77.0))
    vol = read_volume(os.path.dirname(truth.files[0]))
    assert isinstance(vol, Volume)
    assert np.array_equal(vol.array, truth.values)
    assert np.allclose(vol.affine_lps, truth.affine_lps, atol=1e-5)
    assert np.allclose(vol.affine_ras, truth.affine_ras, atol=1e-5)
    assert vol.spacing == pytest.approx((3.0, 0.6, 0.9))


def test_every_voxel_lands_where_dicom_says(make_series):
    """The NIfTI made from affine_ras puts each voxel at its ImagePositionPatient."""
    truth = make_series(orientation=ORIENTATIONS["oblique"], reverse_instance=True)
    vol = read_volume(os.path.dirname(truth.files[0]))
    img = nib.Nifti1Image(np.asarray(vol.array).T, vol.affine_ras)
    for f in truth.files:
        ds = pydicom.dcmread(f)
        ipp = np.array(ds.ImagePositionPatient, float)
        ras = np.array([-ipp[0], -ipp[1], ipp[2], 1.0])
        ijk = np.linalg.solve(img.affine, ras)[:3]
        assert np.allclose(ijk[:2], 0, atol=1e-4)
        k = int(round(ijk[2]))
        assert abs(ijk[2] - k) < 1e-4
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.array_equal(np.asarray(img.dataobj)[:, :, k].T, hu)


def test_tilted_series_keeps_sheared_geometry(make_series):
    truth = make_series(tilt_deg=12.0, spacing=(2.0, 0.5, 0.5))
    vol = read_volume(os.path.dirname(truth.files[0]))
    assert vol.metadata["tilt_deg"] == pytest.approx(12.0, abs=1e-3)
    assert any("tilt" in p for p in vol.metadata["problems"])
    assert np.allclose(vol.affine_lps, truth.affine_lps, atol=1e-4)
    assert np.array_equal(vol.array, truth.values)


def test_gap_is_reported_not_hidden(make_series):
    truth = make_series(drop_slices=(5,))
    vol = read_volume(os.path.dirname(truth.files[0]))
    assert vol.array.shape[0] == 11
    assert any("gap" in p for p in vol.metadata["problems"])
    assert np.array_equal(vol.array, truth.values)


def test_hounsfield_units_and_smallest_dtype(ct_folder):
    folder, truth = ct_folder
    vol = read_volume(folder)
    assert vol.array.dtype == np.int16  # 12-bit unsigned + intercept -1024 fits int16
    assert np.array_equal(vol.array, truth.values)
    assert vol.array.min() >= -1024 and vol.metadata["units"] == "HU"
    assert vol.window == (40.0, 400.0)
    assert (vol.window.center, vol.window.width) == (40.0, 400.0)


def test_float_rescale_gives_float32(make_series):
    vals = np.arange(3 * 20 * 24).reshape(3, 20, 24) * 0.5
    truth = make_series(values=vals, slope=0.5, intercept=0.0)
    vol = read_volume(os.path.dirname(truth.files[0]))
    assert vol.array.dtype == np.float32
    assert np.allclose(vol.array, truth.values)


def test_monochrome1_keeps_its_values_and_window(make_series):
    """MONOCHROME1 inverts the display, not the values (PS3.3 C.7.6.3.1.2): the
    values are the Modality LUT output and the window stays where the file puts it (more in
    tests/test_monochrome1.py)."""
    vals = np.tile(np.arange(24), (3, 20, 1)) * 10
    truth = make_series(values=vals, photometric="MONOCHROME1", intercept=0, window=(100, 200))
    vol = read_volume(os.path.dirname(truth.files[0]))
    assert vol.metadata["photometric"] == "MONOCHROME1"
    assert np.array_equal(vol.array, truth.values)
    assert tuple(vol.window) == (100, 200)


def test_lazy_equals_eager(ct_folder):
    folder, _ = ct_folder
    eager = read_volume(folder)
    lazy = read_volume(folder, lazy=True)
    assert type(lazy.array).__module__.startswith("dask")
    assert lazy.array.chunksize[0] == 1
    assert np.array_equal(lazy.array[7].compute(), eager.array[7])
    assert np.array_equal(lazy.array.compute(), eager.array)


def test_folder_with_several_series_asks_for_a_choice(make_series, tmp_path):
    make_series("a")
    make_series("b")
    with pytest.raises(DicomToolsError, match="holds 2 series"):
        read_volume(tmp_path)


def test_no_series_error_lists_reasons(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(NoSeriesError) as err:
        read_volume(tmp_path)
    assert "a.txt" in str(err.value) and err.value.skipped


@pytest.mark.parametrize("bits,pr,lo,hi,expected", [
    (12, 0, -1024, 3071, np.int16), (8, 0, 0, 255, np.uint8), (16, 0, 0, 65535, np.uint16),
    (16, 1, -32768, 32767, np.int16), (16, 1, -33792, 31743, np.int32)])
def test_smallest_dtype(bits, pr, lo, hi, expected):
    assert smallest_dtype(lo, hi, True, bits) == np.dtype(expected)


# --- every image in pydicom's bundled test files loads correctly or is skipped with a reason

# broken on purpose in pydicom's set: a 12-bit extended JPEG no installed codec supports, a
# J2K stream with a stray delimiter, a JPEG with a corrupt offset table
UNDECODABLE = {"JPEG-lossy.dcm", "JPEG2000-embedded-sequence-delimiter.dcm", "SC_rgb_jpeg.dcm"}


def _pydicom_files():
    folder = os.path.dirname(get_testdata_file("CT_small.dcm"))  # bundled files, no download
    return sorted(f for f in (os.path.join(folder, n) for n in os.listdir(folder))
                  if os.path.isfile(f)
                  and not f.endswith((".txt", ".json", ".dump", ".icc", ".gz", ".py")))


LOSSY_JPEG = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")


def _expected(ds, frame_index):
    from pydicom.pixels import apply_color_lut, apply_modality_lut

    if ds.file_meta.get("TransferSyntaxUID") in LOSSY_JPEG:
        # lossy JPEG decoders differ by rounding: compare with the one we prefer (libjpeg-turbo
        # through Pillow, which matches GDCM exactly), not with whichever pydicom finds first
        # (pylibjpeg in a bare install, GDCM where it is installed)
        # (12-bit extended JPEG: Pillow cannot, then any plugin)
        ds.pixel_array_options(decoding_plugin="pillow")
        try:
            arr = ds.pixel_array
        except Exception:  # noqa: BLE001
            ds.pixel_array_options(decoding_plugin="")
            arr = ds.pixel_array
    else:
        arr = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        arr = arr[frame_index]
    if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)  # 16-bit LUT entries are read as 8-bit colours
        if rgb.dtype.itemsize > 1:
            rgb = np.round(rgb.astype(np.float64) * 255 / 65535)
        return rgb
    if ds.get("SamplesPerPixel", 1) == 1:
        arr = apply_modality_lut(arr, ds)
        if "DoseGridScaling" in ds:
            arr = arr * float(ds.DoseGridScaling)
    return arr


@pytest.mark.parametrize("path", _pydicom_files(), ids=os.path.basename)
def test_pydicom_test_file(path):
    found = scan(path)
    if not found:
        # skipped: the reason must name the file and say something
        assert len(found.skipped) == 1
        assert found.skipped[0].path == path and len(found.skipped[0].reason) > 5
        return
    for s in found:
        if s.kind in ("RTSTRUCT", "SR"):  # listed by scan (issue 15), no image to read
            with pytest.raises(DicomToolsError, match="holds no image"):
                read_volume(s)
            continue
        if os.path.basename(path) in UNDECODABLE:
            with pytest.raises(DicomToolsError) as err:
                read_volume(s)
            assert path in str(err.value) and "cannot be decoded" in str(err.value)
            return
        vol = read_volume(s)
        ds = pydicom.dcmread(path)
        try:
            _ = ds.pixel_array
        except Exception:  # noqa: BLE001 - pydicom itself cannot decode: shape only
            assert vol.array.shape == s.shape + ((3,) if vol.rgb else ())
            continue
        flat = np.asarray(vol.array).reshape((-1,) + vol.array.shape[-(3 if vol.rgb else 2):])
        for i in sorted({0, len(s.frames) - 1}):
            fr = s.frames[i]
            exp = _expected(ds, fr.index)
            got = flat[i]  # MONOCHROME1 too: the Modality LUT output, not inverted
            assert np.allclose(got, exp, rtol=1e-5, atol=1e-3), f"{path} frame {fr.index}"


@pytest.mark.parametrize("orientation", [ORIENTATIONS["axial"], ORIENTATIONS["oblique"]])
def test_enhanced_multiframe_uses_functional_groups(tmp_path, orientation):
    from napari_dicomtools.core.synthetic import phantom, write_enhanced

    truth = write_enhanced(tmp_path / "enh.dcm", phantom((9, 32, 40)), orientation=orientation)
    (s,) = scan(tmp_path / "enh.dcm")
    assert s.shape == (9, 32, 40) and len(s.files) == 1
    vol = read_volume(s)
    assert np.array_equal(vol.array, truth.values)  # per-frame intercepts applied
    assert np.allclose(vol.affine_lps, truth.affine_lps, atol=1e-5)
    # frames come back in geometric order although stored shuffled
    assert [f.index for f in s.frames] != list(range(9))
    lazy = read_volume(s, lazy=True)
    assert np.array_equal(lazy.array.compute(), truth.values)


@pytest.mark.parametrize("ts_name", ["RLELossless", "JPEG2000Lossless", "JPEGLSLossless"])
def test_compressed_series_read_exactly(make_series, ts_name):
    import pydicom.uid

    ts = getattr(pydicom.uid, ts_name)
    vals = np.arange(3 * 64 * 64).reshape(3, 64, 64) % 1500 - 1000
    try:
        truth = make_series(values=vals, transfer_syntax=ts)
    except (RuntimeError, NotImplementedError, ValueError) as exc:
        pytest.skip(f"no {ts_name} encoder installed to make the test data: {exc}")
    assert pydicom.dcmread(truth.files[0]).file_meta.TransferSyntaxUID == ts
    vol = read_volume(os.path.dirname(truth.files[0]))
    assert np.array_equal(vol.array, truth.values)
    lazy = read_volume(os.path.dirname(truth.files[0]), lazy=True)
    assert np.array_equal(lazy.array.compute(), truth.values)


def test_undecodable_compressed_file_is_reported_not_fatal(make_series):
    import pydicom.uid

    vals = np.arange(5 * 32 * 32).reshape(5, 32, 32) % 900 - 500
    truth = make_series(values=vals, transfer_syntax=pydicom.uid.RLELossless)
    # corrupt the compressed stream of one file (header intact)
    victim = truth.files[2]
    ds = pydicom.dcmread(victim)
    data = bytearray(open(victim, "rb").read())
    data[-200:] = b"\xff" * 200
    open(victim, "wb").write(bytes(data))
    with pytest.warns(UserWarning, match="frame left blank"):
        vol = read_volume(os.path.dirname(victim))
    bad = [p for p in vol.metadata["problems"] if victim in p]
    assert bad and "cannot be decoded" in bad[0]
    assert vol.array.shape == (5, 32, 32)
    # the other slices are intact
    z = float(ds.ImagePositionPatient[2])
    idx = int(round((z - truth.origin[2]) / truth.spacing[0]))
    others = [i for i in range(5) if i != idx]
    assert np.array_equal(vol.array[others], truth.values[others])
    # the file alone cannot load at all: one clear exception naming it
    with pytest.raises(DicomToolsError, match="cannot be decoded"):
        read_volume(victim)


def test_tilt_correction_puts_each_voxel_where_it_was(make_series):
    from napari_dicomtools.core.volume import correct_tilt

    tilt = float(np.degrees(np.arctan(0.25)))  # 2 mm slices, 0.5 mm rows: 1 row per slice
    vals = np.zeros((6, 20, 24), np.int32) - 1000
    vals[:, 5:8, 10:14] = 500  # a bar that moves one row per slice in the sheared grid
    truth = make_series(values=vals, tilt_deg=tilt, spacing=(2.0, 0.5, 0.5))
    sheared = read_volume(os.path.dirname(truth.files[0]))
    vol = read_volume(os.path.dirname(truth.files[0]), correct_tilt=True)
    assert vol.metadata["tilt_corrected"] and vol.array.shape == (6, 25, 24)
    assert vol.spacing[0] == pytest.approx(2.0)
    assert np.allclose(np.cross(vol.direction[:, 2], vol.direction[:, 1]),
                       vol.direction[:, 0], atol=1e-9)  # orthogonal now
    # every original voxel centre maps to the corrected voxel holding the same value
    inv = np.linalg.inv(vol.affine_lps)
    for k in range(6):
        for r in (0, 6, 19):
            for c in (0, 12):
                p = sheared.affine_lps @ np.array([c, r, k, 1.0])
                ci, ri, ki = np.round(inv @ p)[:3].astype(int)
                assert vol.array[ki, ri, ci] == sheared.array[k, r, c]
    assert correct_tilt(vol) is vol  # nothing to do twice


@pytest.mark.parametrize("implicit", [False, True])
def test_philips_precise_scaling_is_an_option(make_series, tmp_path, implicit):
    vals = (np.arange(3 * 20 * 24).reshape(3, 20, 24) % 400) * 2 + 10
    truth = make_series(values=vals, modality="MR", slope=2.0, intercept=10.0)
    for f in truth.files:
        ds = pydicom.dcmread(f)
        block = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
        block.add_new(0x0E, "FL", 4.0)
        if implicit:
            ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        ds.save_as(f, enforce_file_format=True)
    folder = os.path.dirname(truth.files[0])
    display = read_volume(folder)
    precise = read_volume(folder, philips_precise=True)
    assert np.array_equal(display.array, truth.values)  # the standard's values by default
    assert precise.metadata["scaling"] == "philips_precise"
    assert np.allclose(precise.array, truth.values / (2.0 * 4.0))
    # a non-Philips private block at the same tag is not trusted
    for f in truth.files:
        ds = pydicom.dcmread(f)
        ds[0x20050010].value = "OTHER VENDOR"
        ds.save_as(f)
    assert np.array_equal(read_volume(folder, philips_precise=True).array, truth.values)


def test_gap_resampled_on_request(make_series):
    from napari_dicomtools.core.volume import resample_uniform

    vals = (np.arange(12) * 100 - 600)[:, None, None] * np.ones((1, 20, 24), np.int32)
    truth = make_series(values=vals.astype(np.int32), drop_slices=(5, 6))
    vol = read_volume(os.path.dirname(truth.files[0]))
    assert vol.array.shape[0] == 10 and any("gap" in p for p in vol.metadata["problems"])
    uni = resample_uniform(vol)
    assert uni.array.shape == (12, 20, 24) and uni.spacing[0] == pytest.approx(2.5)
    # the ramp is linear in z, so the interpolated slices are exactly the missing ones
    assert np.array_equal(uni.array[:, 0, 0], np.arange(12) * 100 - 600)
    assert np.allclose(uni.affine_lps, truth.affine_lps)  # the full, gap-free grid
    assert resample_uniform(uni) is uni  # nothing left to do


def test_enhanced_4d_and_series_split_over_files(tmp_path):
    import pydicom.uid

    from napari_dicomtools.core.synthetic import phantom, write_enhanced

    vals = np.stack([phantom((5, 16, 20), seed=t) for t in range(3)])  # (t, z, y, x)
    truth = write_enhanced(tmp_path / "4d" / "a.dcm", vals)
    (s,) = scan(tmp_path / "4d")
    assert s.shape == (3, 5, 16, 20)
    vol = read_volume(s)
    assert np.array_equal(vol.array, vals) and np.allclose(vol.affine_lps, truth.affine_lps)
    # one series written as two enhanced files covering different slabs: joined
    uid, frame = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    full = phantom((8, 16, 20))
    write_enhanced(tmp_path / "two" / "lo.dcm", full[:4], series_uid=uid, frame_uid=frame,
                   per_frame_rescale=False)
    write_enhanced(tmp_path / "two" / "hi.dcm", full[4:], series_uid=uid, frame_uid=frame,
                   origin=(-20.0, -20.0, 10.0 + 4 * 2.0), per_frame_rescale=False, seed=1)
    (s2,) = scan(tmp_path / "two")
    assert s2.shape == (8, 16, 20) and len(s2.files) == 2
    assert np.array_equal(read_volume(s2).array, full)


def test_enhanced_multi_echo_and_phase_frames_are_split(tmp_path):
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from napari_dicomtools.cli import output_names
    from napari_dicomtools.core.synthetic import phantom, write_enhanced

    vals = np.stack([phantom((4, 16, 20), seed=t) for t in range(3)])
    write_enhanced(tmp_path / "e.dcm", vals, modality="MR", per_frame_rescale=False)
    ds = pydicom.dcmread(tmp_path / "e.dcm")
    for fg in ds.PerFrameFunctionalGroupsSequence:
        t = int(fg.FrameContentSequence[0].TemporalPositionIndex) - 1
        del fg.FrameContentSequence[0].TemporalPositionIndex
        echo = Dataset()
        echo.EffectiveEchoTime = [5.0, 10.0, 5.0][t]
        fg.MREchoSequence = Sequence([echo])
        ftype = Dataset()
        ftype.ComplexImageComponent = ["MAGNITUDE", "MAGNITUDE", "PHASE"][t]
        fg.MRImageFrameTypeSequence = Sequence([ftype])
    ds.save_as(tmp_path / "e.dcm")
    series = scan(tmp_path / "e.dcm")
    assert len(series) == 3 and all(s.shape == (4, 16, 20) for s in series)
    names = sorted(output_names(series))
    assert names == ["7_Enhanced_phantom_e1", "7_Enhanced_phantom_e1_ph",
                     "7_Enhanced_phantom_e2"]
    by = dict(zip(output_names(series), series, strict=True))
    assert np.array_equal(read_volume(by["7_Enhanced_phantom_e2"]).array, vals[1])
    assert np.array_equal(read_volume(by["7_Enhanced_phantom_e1_ph"]).array, vals[2])


def test_tilted_stack_with_a_gap_is_regularized_from_true_positions(make_series):
    """Like dcm_qa_ct's GE head CT: tilt and a change of spacing in one stack."""
    from napari_dicomtools.core.volume import regularize

    tilt = float(np.degrees(np.arctan(0.25)))
    vals = np.zeros((8, 20, 24), np.int32) - 1000
    vals[:, 5:8, 10:14] = 500
    truth = make_series(values=vals, tilt_deg=tilt, spacing=(2.0, 0.5, 0.5), drop_slices=(3,))
    s = scan(os.path.dirname(truth.files[0]))[0]
    assert s.order.tilt_deg == pytest.approx(tilt, abs=1e-3)  # found despite the gap
    sheared = read_volume(s)
    reg = read_volume(s, uniform_spacing=True)
    assert reg.array.shape[0] == 8 and reg.spacing[0] == pytest.approx(2.0)
    assert reg.metadata["tilt_corrected"] and reg.metadata["resampled_uniform"]
    inv = np.linalg.inv(reg.affine_lps)
    pos = np.array([f.position for f in s.frames])
    for k in range(7):  # acquired slices land on grid slices with their own values
        for r, c in ((0, 0), (6, 12), (19, 23)):
            p = np.append(pos[k] + r * 0.5 * sheared.direction[:, 1]
                          + c * 0.5 * sheared.direction[:, 2], 1.0)
            ci, ri, ki = np.round(inv @ p)[:3].astype(int)
            assert reg.array[ki, ri, ci] == sheared.array[k, r, c]
    assert regularize(reg) is reg


def test_signed_12_bit_with_slope_and_intercept_rescales_in_place(tmp_path):
    """Stored int16 (BitsStored 12) whose rescale fits int16: the values are rescaled in the
    volume's own memory, with the bits above BitsStored sign-extended first."""
    import pydicom

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    rng = np.random.default_rng(3)
    stored = rng.integers(-2048, 2048, (ds.Rows, ds.Columns)).astype(np.int16)
    raw = stored.copy()
    raw[0, :4] = np.array([0x7001, 0x1FFF, 0xF005, 0x0800], np.uint16).view(np.int16)
    ds.BitsStored, ds.HighBit = 12, 11
    ds.RescaleSlope, ds.RescaleIntercept = 2, -1000
    ds.PixelData = raw.tobytes()
    ds.save_as(tmp_path / "ct.dcm")
    vol = read_volume(tmp_path / "ct.dcm")
    expected = stored.astype(np.int32) * 2 - 1000
    expected[0, :4] = np.array([1, -1, 5, -2048]) * 2 - 1000  # sign-extended from bit 11
    assert vol.array.dtype == np.int16
    assert np.array_equal(vol.array[0], expected)
