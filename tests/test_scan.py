import os
import shutil
import zipfile

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from napari_dicomtools import NotDicomError, read_volume, scan
from napari_dicomtools.core.headers import Mosaic, Window, read_header


def test_scan_finds_one_series_with_facts(ct_folder):
    folder, truth = ct_folder
    series = scan(folder)
    assert len(series) == 1 and series.skipped == []
    s = series[0]
    assert s.shape == (30, 64, 64)
    assert s.spacing == pytest.approx((1.25, 0.7, 0.7))
    assert s.modality == "CT" and s.number == 3
    assert s.patient_name == "Phantom^Synthetic" and s.description == "Synthetic phantom"
    assert sorted(s.files) == sorted(truth.files)
    assert s.orientation_label == "axial"
    assert "3 Synthetic phantom" in s.label


def test_slices_ordered_by_geometry_not_instance_number_or_name(make_series):
    truth = make_series(reverse_instance=True, shuffle=True)
    s = scan(os.path.dirname(truth.files[0]))[0]
    z = [f.position[2] for f in s.frames]
    assert z == sorted(z)
    inst = [f.instance.instance_number for f in s.frames]
    assert inst == sorted(inst, reverse=True)  # InstanceNumber runs against z here


def test_two_series_in_nested_folders(make_series, tmp_path):
    study = pydicom.uid.generate_uid()
    make_series("b/deeper/two", series_number=2, description="second", study_uid=study)
    make_series("a/one", series_number=1, description="first", study_uid=study)
    series = scan(tmp_path)
    assert [s.description for s in series] == ["first", "second"]


def test_one_uid_with_two_orientations_is_split(make_series, tmp_path):
    uid = pydicom.uid.generate_uid()
    make_series("ax", series_uid=uid)
    make_series("sag", series_uid=uid, orientation=(0, 1, 0, 0, 0, -1),
                values=np.zeros((5, 20, 24), np.int32))
    series = scan(tmp_path)
    assert len(series) == 2
    assert {s.orientation_label for s in series} == {"axial", "sagittal"}
    assert all(s.split for s in series)  # the names say why
    assert {s.n_slices for s in series} == {12, 5}


def test_localizer_acquisition_is_split(make_series, tmp_path):
    """Same UID and orientation; acquisition 2 re-covers only some positions: two volumes."""
    uid = pydicom.uid.generate_uid()
    make_series("a1", series_uid=uid)
    loc = make_series("a2", series_uid=uid, values=np.zeros((3, 20, 24), np.int32))
    for f in loc.files:
        ds = pydicom.dcmread(f)
        ds.AcquisitionNumber = 2
        ds.save_as(f)
    series = scan(tmp_path)
    assert len(series) == 2
    assert sorted(s.n_slices for s in series) == [3, 12]
    assert {s.split for s in series} == {"acq 1", "acq 2"}


def test_copied_file_is_reported_when_the_series_is_split(make_series, tmp_path):
    """A second copy of one file (same SOPInstanceUID) is left out *and listed* in
    ``.skipped``, also when the series then splits by acquisition or at a gap."""
    uid = pydicom.uid.generate_uid()
    one = make_series("a1", series_uid=uid)
    loc = make_series("a2", series_uid=uid, values=np.zeros((3, 20, 24), np.int32))
    for f in loc.files:
        ds = pydicom.dcmread(f)
        ds.AcquisitionNumber = 2
        ds.save_as(f)
    copy = tmp_path / "a1" / "copy_of_first.dcm"
    shutil.copy(one.files[0], copy)
    series = scan(tmp_path)
    assert sorted(s.n_slices for s in series) == [3, 12]
    assert [(sk.path, "same SOPInstanceUID" in sk.reason) for sk in series.skipped] in (
        [(str(copy), True)], [(one.files[0], True)])

    gap = make_series(tmp_path / "gap", drop_slices=(4,))
    shutil.copy(gap.files[0], tmp_path / "gap" / "copy.dcm")
    series = scan(tmp_path / "gap", split_nonuniform=True)
    assert len(series) == 2  # split at the gap
    assert len(series.skipped) == 1 and "same SOPInstanceUID" in series.skipped[0].reason


def test_acquisitions_over_the_same_positions_make_4d(make_series, tmp_path):
    """fMRI-like: each volume is its own AcquisitionNumber at the same positions."""
    uid = pydicom.uid.generate_uid()
    for t in (2, 0, 1):  # written out of order
        tr = make_series(f"v{t}", series_uid=uid, values=np.full((5, 20, 24), t, np.int32))
        for f in tr.files:
            ds = pydicom.dcmread(f)
            ds.AcquisitionNumber = t + 1
            ds.AcquisitionTime = f"1200{t:02d}.000"
            ds.save_as(f)
    (s,) = scan(tmp_path)
    assert s.shape == (3, 5, 20, 24)
    vol = read_volume(s)
    assert [int(vol.array[t].max()) for t in range(3)] == [0, 1, 2]


def test_repeated_positions_make_4d(make_series, tmp_path):
    uid = pydicom.uid.generate_uid()
    vals = [np.full((6, 20, 24), 10 * t, np.int32) for t in range(3)]
    for t in range(3):
        tr = make_series(f"t{t}", series_uid=uid, values=vals[t])
        for f in tr.files:
            ds = pydicom.dcmread(f)
            ds.TemporalPositionIdentifier = t + 1
            ds.save_as(f)
    (s,) = scan(tmp_path)
    assert s.shape == (3, 6, 20, 24)
    vol = read_volume(s)
    assert [int(vol.array[t].mean()) for t in range(3)] == [0, 10, 20]


def test_bad_files_are_skipped_with_reasons(ct_folder):
    folder, truth = ct_folder
    (folder / "notes.txt").write_text("not an image")
    (folder / "empty.dcm").write_bytes(b"")
    # a truncated copy of a good file
    data = open(truth.files[0], "rb").read()
    (folder / "cut.dcm").write_bytes(data[: len(data) // 2])
    # a DICOM object without pixels
    shutil.copy(get_testdata_file("rtplan.dcm"), folder / "plan.dcm")
    # the same file twice
    shutil.copy(truth.files[1], folder / "copy.dcm")
    series = scan(folder)
    assert len(series) == 1 and series[0].n_slices == 30
    reasons = {os.path.basename(s.path): s.reason for s in series.skipped}
    assert "not a DICOM file" in reasons["notes.txt"]
    assert "empty" in reasons["empty.dcm"]
    assert "truncated" in reasons["cut.dcm"]
    assert "no Pixel Data" in reasons["plan.dcm"]
    dup = [r for p, r in reasons.items() if "SOPInstanceUID" in r]
    assert len(dup) == 1


def test_read_header_names_the_file(tmp_path):
    p = tmp_path / "x.dcm"
    p.write_bytes(b"\x89PNG\r\n" + b"0" * 300)
    with pytest.raises(NotDicomError) as err:
        read_header(str(p))
    assert str(p) in str(err.value)


def test_absurd_declared_size_is_refused(make_series):
    truth = make_series()
    ds = pydicom.dcmread(truth.files[0])
    ds.Rows = ds.Columns = 65535
    ds.NumberOfFrames = 1000
    bad = os.path.join(os.path.dirname(truth.files[0]), "absurd.dcm")
    ds.save_as(bad)
    series = scan(bad)
    assert not series
    assert "absurd" in series.skipped[0].reason


@pytest.mark.parametrize("implicit", [True, False])
def test_file_without_preamble_or_meta(make_series, tmp_path, implicit):
    truth = make_series(values=np.arange(2 * 20 * 24).reshape(2, 20, 24) - 100)
    ds = pydicom.dcmread(truth.files[0])
    ds.preamble = None
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    raw = tmp_path / "raw.dcm"
    ds.save_as(raw, enforce_file_format=False, implicit_vr=implicit, little_endian=True)
    assert open(raw, "rb").read(132)[128:132] != b"DICM"
    (s,) = scan(raw)
    vol = read_volume(s)
    k = 0 if ds.ImagePositionPatient[2] == truth.origin[2] else 1
    assert np.array_equal(vol.array[0], truth.values[k])


def test_rt_plan_without_meta_is_skipped_as_no_image():
    s = scan(get_testdata_file("ExplVR_LitEndNoMeta.dcm"))
    assert not s and "no Pixel Data (RT Ion Plan Storage)" in s.skipped[0].reason


def test_zip_archive(ct_folder, tmp_path):
    folder, truth = ct_folder
    z = tmp_path / "study.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in truth.files:
            zf.write(f, arcname="DATA/" + os.path.basename(f))
        zf.writestr("README.txt", "hello")
    series = scan(z)
    assert len(series) == 1 and series[0].n_slices == 30
    assert len(series.skipped) == 1 and "README.txt" in series.skipped[0].path
    vol = read_volume(series[0])
    assert np.array_equal(vol.array, truth.values)


def test_dicomdir(tmp_path):
    src = os.path.dirname(get_testdata_file("DICOMDIR", read=False) or "")
    if not src or not os.path.exists(os.path.join(src, "DICOMDIR")):
        pytest.skip("pydicom's DICOMDIR test set is not installed")
    dst = tmp_path / "dd"
    shutil.copytree(src, dst)
    via_index = scan(dst / "DICOMDIR")
    via_folder = scan(dst)
    assert len(via_index) >= 1
    assert sorted(s.uid for s in via_index) == sorted(s.uid for s in via_folder)
    assert sum(len(s.files) for s in via_index) == sum(len(s.files) for s in via_folder)


def test_sources_are_never_modified(ct_folder):
    folder, truth = ct_folder
    before = {f: (os.path.getmtime(f), open(f, "rb").read()) for f in truth.files}
    listing = sorted(os.listdir(folder))
    read_volume(folder)
    read_volume(folder, lazy=True).array.compute()
    assert sorted(os.listdir(folder)) == listing
    assert all((os.path.getmtime(f), open(f, "rb").read()) == v for f, v in before.items())


def test_siemens_mosaic_is_flagged_not_silently_misread(make_series, tmp_path):
    truth = make_series(values=np.zeros((1, 20, 24), np.int32))
    ds = pydicom.dcmread(truth.files[0])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"]
    ds.save_as(truth.files[0])
    (s,) = scan(truth.files[0])
    assert any("mosaic" in p for p in s.problems)


@pytest.mark.parametrize("tokens,label", [(["ORIGINAL", "PRIMARY", "P", "ND"], "ph"),
                                          (["ORIGINAL", "PRIMARY", "PHASE", "NONE"], "ph"),
                                          (["ORIGINAL", "PRIMARY", "REAL"], "real")])
def test_magnitude_and_phase_split_with_dcm2niix_suffix(make_series, tmp_path, tokens, label):
    from napari_dicomtools.cli import output_names

    uid = pydicom.uid.generate_uid()
    for name, itype in (("mag", ["ORIGINAL", "PRIMARY", "M", "ND"]), ("other", tokens)):
        tr = make_series(name, series_uid=uid, series_number=7, description="gre_field_map")
        for f in tr.files:
            ds = pydicom.dcmread(f)
            ds.ImageType = itype
            ds.save_as(f)
    series = scan(tmp_path)
    assert len(series) == 2 and all(s.n_time == 1 for s in series)
    assert sorted(output_names(series)) == sorted(["7_gre_field_map",
                                                   f"7_gre_field_map_{label}"])


def test_echoes_split_with_dcm2niix_suffix(make_series, tmp_path):
    from napari_dicomtools.cli import output_names

    uid = pydicom.uid.generate_uid()
    for e in (1, 2):
        tr = make_series(f"e{e}", series_uid=uid, series_number=9, description="me_gre")
        for f in tr.files:
            ds = pydicom.dcmread(f)
            ds.EchoNumbers = e
            ds.EchoTime = 5.0 * e
            ds.save_as(f)
    names = sorted(output_names(scan(tmp_path)))
    assert names == ["9_me_gre_e1", "9_me_gre_e2"]


def test_nonuniform_stack_split_on_request(make_series):
    truth = make_series(drop_slices=(5, 6))  # steps 2.5 mm, one 7.5 mm gap
    folder = os.path.dirname(truth.files[0])
    (whole,) = scan(folder)
    assert any("gap" in p for p in whole.problems) and whole.n_slices == 10
    parts = scan(folder, split_nonuniform=True)
    assert [p.n_slices for p in parts] == [5, 5]
    assert [p.split for p in parts] == ["part 1", "part 2"]
    assert all(p.order.uniform for p in parts)
    assert read_volume(parts[1]).origin[2] == pytest.approx(truth.origin[2] + 7 * 2.5)


def test_zip_is_opened_once_per_scan_not_once_per_member(tmp_path, monkeypatch):
    """A zip of N members used to be re-opened (central directory re-read) twice per member:
    O(N^2). The archive is now opened once and cached (keyed by size/mtime/process)."""
    import zipfile

    from napari_dicomtools.core.synthetic import phantom, write_series

    write_series(tmp_path / "f", phantom((120, 8, 8)))
    z = tmp_path / "series.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted((tmp_path / "f").iterdir()):
            zf.write(p, f"d/{p.name}")
    opened = []
    real_init = zipfile.ZipFile.__init__

    def counting_init(self, *a, **kw):
        opened.append(a[0] if a else kw.get("file"))
        real_init(self, *a, **kw)

    monkeypatch.setattr(zipfile.ZipFile, "__init__", counting_init)
    (s,) = scan(z)
    assert s.shape == (120, 8, 8)
    assert len(opened) <= 2, len(opened)
    # a rewritten archive is not served from the cache
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("other.txt", "not dicom at all")
    found = scan(z)
    assert not found and found.skipped[0].path.endswith("other.txt")


def test_window_and_mosaic_layout_are_named_fields():
    """Frame.window is a Window (center, width) and a mosaic's tile layout a Mosaic: read by
    name, and still unpack like the tuples they replaced."""
    fr = read_header(get_testdata_file("MR_small.dcm")).frames[0]
    assert isinstance(fr.window, Window)
    assert (fr.window.center, fr.window.width) == (600.0, 1600.0)
    c, w = fr.window
    assert (c, w) == (600.0, 1600.0)
    # 35 tiles of 64x64 in a 384x384 plane: ceil(sqrt(35)) = 6 tiles per row
    mosaic = os.path.join(os.path.dirname(__file__), "data", "dcm_qa", "siemens_mosaic_rle",
                          "dcm", "4.dcm")
    inst = read_header(mosaic)
    assert inst.mosaic == Mosaic(rows=384, columns=384, per_row=6)
    assert (inst.rows, inst.columns, len(inst.frames)) == (64, 64, 35)
    assert read_header(get_testdata_file("CT_small.dcm")).mosaic is None
