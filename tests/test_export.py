"""NIfTI export: core writer, napari writers, `dicomtools convert`, all against known truth
and dcm2niix."""

import os
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pydicom
import pytest

from napari_dicomtools import DicomToolsError, read_volume, scan
from napari_dicomtools.cli import main
from napari_dicomtools.core.nifti import write_nifti
from napari_dicomtools.core.synthetic import phantom, write_series

OBLIQUE = (0.9848, 0.1736, 0, -0.1504, 0.8529, -0.5)
SAGITTAL = (0, 1, 0, 0, 0, -1)


def _canon(img):
    c = nib.as_closest_canonical(img)
    return c.shape, c.affine, np.asarray(c.get_fdata())


def _dcm2niix(src, out):
    exe = shutil.which("dcm2niix")
    if exe is None:
        pytest.skip("dcm2niix not installed")
    out.mkdir()
    subprocess.run([exe, "-o", str(out), "-f", "%s_%p", "-z", "n", "-b", "n", "-v", "0",
                    str(src)], check=True, capture_output=True)
    (nii,) = out.glob("*.nii")
    return nib.load(nii)


@pytest.mark.parametrize("orientation", [(1, 0, 0, 0, 1, 0), SAGITTAL, OBLIQUE])
@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
def test_write_nifti_matches_dcm2niix(tmp_path, orientation, ext):
    write_series(tmp_path / "dcm", phantom((12, 30, 36)), orientation=orientation,
                 spacing=(2.5, 0.8, 0.9))
    ref = _canon(_dcm2niix(tmp_path / "dcm", tmp_path / "ref"))
    out = tmp_path / f"ours{ext}"
    write_nifti(read_volume(tmp_path / "dcm"), out)
    img = nib.load(out)
    assert img.header["sform_code"] == 1 and img.header["qform_code"] == 1
    assert img.header.get_xyzt_units() == ("mm", "sec")
    assert img.get_data_dtype() == np.int16
    ours = _canon(img)
    assert ours[0] == ref[0]
    assert np.allclose(ours[1], ref[1], atol=0.01)
    assert np.array_equal(ours[2], ref[2])


def test_round_trip_places_every_slice_at_its_position(tmp_path):
    truth = write_series(tmp_path / "dcm", phantom((8, 24, 20)), orientation=OBLIQUE)
    write_nifti(read_volume(tmp_path / "dcm"), tmp_path / "o.nii.gz")
    img = nib.load(tmp_path / "o.nii.gz")
    for f in truth.files:
        ds = pydicom.dcmread(f)
        ipp = np.array(ds.ImagePositionPatient, float)
        ijk = np.linalg.solve(img.affine, [-ipp[0], -ipp[1], ipp[2], 1])[:3]
        k = int(round(ijk[2]))
        assert np.allclose(ijk, [0, 0, k], atol=1e-3)
        hu = ds.pixel_array.astype(int) + int(ds.RescaleIntercept)
        assert np.array_equal(np.asarray(img.dataobj)[:, :, k].T, hu)


def test_4d_nifti_has_time_last_and_tr(make_series, tmp_path):
    uid = pydicom.uid.generate_uid()
    for t in range(3):
        tr = make_series(f"t{t}", series_uid=uid, values=np.full((4, 20, 24), t, np.int32))
        for f in tr.files:
            ds = pydicom.dcmread(f)
            ds.TemporalPositionIdentifier = t + 1
            ds.RepetitionTime = 2000
            ds.save_as(f)
    vol = read_volume(scan(tmp_path)[0])
    write_nifti(vol, tmp_path / "four.nii")
    img = nib.load(tmp_path / "four.nii")
    assert img.shape == (24, 20, 4, 3)
    assert img.header.get_zooms()[3] == pytest.approx(2.0)
    assert [int(np.asarray(img.dataobj)[..., t].max()) for t in range(3)] == [0, 1, 2]


def test_never_overwrites_and_leaves_no_partial_file(ct_folder, tmp_path):
    folder, _ = ct_folder
    vol = read_volume(folder)
    out = tmp_path / "a.nii.gz"
    write_nifti(vol, out)
    before = out.read_bytes()
    with pytest.raises(DicomToolsError, match="not overwriting"):
        write_nifti(vol, out)
    assert out.read_bytes() == before
    write_nifti(vol, out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz", "ct"]  # no temp files
    with pytest.raises(DicomToolsError, match="must end in"):
        write_nifti(vol, tmp_path / "a.nrrd")


def test_image_layer_writer_keeps_true_oblique_grid(make_napari_viewer, tmp_path):
    from napari_dicomtools._writer import write_image_nifti, write_labels_nifti

    write_series(tmp_path / "dcm", phantom((10, 24, 20)), orientation=OBLIQUE)
    vol = read_volume(tmp_path / "dcm")
    viewer = make_napari_viewer()
    layer = viewer.open(str(tmp_path / "dcm"), plugin="napari-dicomtools")[0]
    (p,) = write_image_nifti(str(tmp_path / "layer.nii.gz"), layer.data, layer._get_state())
    img = nib.load(p)
    assert np.allclose(img.affine, vol.affine_ras, atol=1e-5)
    assert np.array_equal(np.asarray(img.dataobj), np.asarray(vol.array).T)
    # a labels layer drawn on it is written on exactly the image's grid: same shape and
    # affine, and the painted voxel is the image voxel under it
    labels = viewer.add_labels(np.zeros(layer.data.shape, np.uint8), scale=layer.scale,
                               translate=layer.translate)
    labels.data[3, 5, 6] = 1
    (q,) = write_labels_nifti(str(tmp_path / "labels.nii"), labels.data, labels._get_state())
    lab = nib.load(q)
    assert lab.shape == img.shape
    assert np.allclose(lab.affine, img.affine, atol=1e-6)
    ijk = tuple(np.argwhere(np.asarray(lab.dataobj) == 1)[0])
    assert np.asarray(img.dataobj)[ijk] == layer.data[3, 5, 6]


def test_npe2_write_uses_our_writer(make_napari_viewer, ct_folder, tmp_path):
    folder, truth = ct_folder
    viewer = make_napari_viewer()
    viewer.open(str(folder), plugin="napari-dicomtools")
    out = tmp_path / "saved.nii.gz"
    viewer.layers.save(str(out), selected=False, plugin="napari-dicomtools")
    img = nib.load(out)
    assert np.array_equal(np.asarray(img.dataobj).T, truth.values)


def test_cli_convert_folder_names_and_force(make_series, tmp_path, capsys):
    study = pydicom.uid.generate_uid()
    make_series("src/a", series_number=2, description="T1 axial", study_uid=study)
    make_series("src/b", series_number=5, description="Lung/1.0 B60f", study_uid=study)
    out = tmp_path / "out"
    assert main(["convert", str(tmp_path / "src"), str(out), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["2_T1_axial.nii.gz",
                                                      "5_Lung_1.0_B60f.nii.gz"]
    assert main(["convert", str(tmp_path / "src"), str(out), "-q"]) == 1
    assert "not overwriting" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "src"), str(out), "-q", "--force"]) == 0
    # one file: only when the input holds one volume
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "x.nii"), "-q"]) == 1
    assert "holds 2 volumes" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "src" / "a"), str(tmp_path / "x.nii"), "-q"]) == 0
    assert nib.load(tmp_path / "x.nii").shape == (24, 20, 12)


def test_cli_convert_never_writes_into_the_source(ct_folder, capsys):
    folder, truth = ct_folder
    listing = sorted(os.listdir(folder))
    assert main(["convert", str(folder), str(folder / "nii"), "-q"]) == 1
    assert "inside the source" in capsys.readouterr().err
    assert sorted(os.listdir(folder)) == listing


@pytest.mark.parametrize("orientation", [(1, 0, 0, 0, 1, 0), SAGITTAL, OBLIQUE,
                                         (-1, 0, 0, 0, -1, 0), (0, -1, 0, 0, 0, 1)])
def test_our_nifti_header_reads_back_in_nibabel(tmp_path, orientation):
    """The hand-packed header: nibabel sees the same qform and sform, no fixes needed."""
    write_series(tmp_path / "dcm", phantom((5, 12, 10)), orientation=orientation,
                 spacing=(3.0, 0.7, 0.9))
    vol = read_volume(tmp_path / "dcm")
    write_nifti(vol, tmp_path / "h.nii")
    img = nib.load(tmp_path / "h.nii")
    hdr = img.header
    assert hdr.get_qform(coded=True)[1] == 1 and hdr.get_sform(coded=True)[1] == 1
    assert np.allclose(hdr.get_qform(), vol.affine_ras, atol=1e-4)
    assert np.allclose(hdr.get_sform(), vol.affine_ras, atol=1e-5)
    fixed = hdr.copy()
    fixed.check_fix()  # would log and change anything malformed
    assert fixed.binaryblock == hdr.binaryblock
    assert np.array_equal(np.asarray(img.dataobj), np.asarray(vol.array).T)


def test_streamed_series_equals_volume_writer(make_series, tmp_path):
    from napari_dicomtools.core.nifti import write_series_nifti

    truth = make_series(orientation=OBLIQUE)
    s = scan(os.path.dirname(truth.files[0]))[0]
    write_series_nifti(s, tmp_path / "a.nii.gz")
    write_nifti(read_volume(s), tmp_path / "b.nii.gz")
    a, b = nib.load(tmp_path / "a.nii.gz"), nib.load(tmp_path / "b.nii.gz")
    assert np.array_equal(a.affine, b.affine)
    assert np.array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))


def test_nifti_refuses_dimensions_over_int16_with_a_reason(tmp_path):
    from napari_dicomtools.core.errors import DicomToolsError
    from napari_dicomtools.core.nifti import nifti_header

    with pytest.raises(DicomToolsError, match="over 32767 does not fit NIfTI-1"):
        nifti_header((40000, 2, 1), np.dtype(np.int16), np.eye(4))
    assert len(nifti_header((32767, 2, 1), np.dtype(np.int16), np.eye(4))) >= 348
