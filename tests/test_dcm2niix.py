"""Agreement with dcm2niix, the field's reference converter: same voxels at the same place.

Both results are reoriented to the closest canonical (RAS+) orientation with nibabel and must
then have the same shape, the same affine (within 0.01 mm) and the same values.
"""

import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest

from napari_dicomtools import read_volume
from napari_dicomtools.core.synthetic import phantom, write_series

DCM2NIIX = shutil.which("dcm2niix")
pytestmark = pytest.mark.skipif(DCM2NIIX is None, reason="dcm2niix not installed "
                                                          "(pip install dcm2niix)")

CASES = {
    "axial": dict(orientation=(1, 0, 0, 0, 1, 0)),
    "axial-reversed-instances": dict(orientation=(1, 0, 0, 0, 1, 0), reverse_instance=True),
    "coronal": dict(orientation=(1, 0, 0, 0, 0, -1)),
    "sagittal": dict(orientation=(0, 1, 0, 0, 0, -1)),
    "oblique": dict(orientation=(0.9848, 0.1736, 0, -0.1504, 0.8529, -0.5)),
    "feet-first": dict(orientation=(-1, 0, 0, 0, 1, 0)),
    "non-square-pixels": dict(orientation=(1, 0, 0, 0, 1, 0), spacing=(2.0, 0.6, 0.9)),
}


def _dcm2niix(src, out):
    out.mkdir()
    r = subprocess.run([DCM2NIIX, "-o", str(out), "-f", "%s_%p", "-z", "n", "-b", "n",
                        "-v", "0", str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    niis = sorted(out.glob("*.nii"))
    assert len(niis) == 1, [p.name for p in out.iterdir()]
    return nib.load(niis[0])


def _assert_agrees(dcm_dir, ref_img):
    """Our volume from ``dcm_dir`` equals dcm2niix's NIfTI after canonical reorientation."""
    ref = nib.as_closest_canonical(ref_img)
    vol = read_volume(dcm_dir)
    ours = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(vol.array).T, vol.affine_ras))
    assert ours.shape == ref.shape
    assert np.allclose(ours.affine, ref.affine, atol=0.01), (ours.affine, ref.affine)
    assert np.array_equal(np.asarray(ours.dataobj), ref.get_fdata())


@pytest.mark.parametrize("case", list(CASES))
def test_agrees_with_dcm2niix(tmp_path, case):
    kw = dict(spacing=(2.5, 0.8, 0.8), origin=(-30.0, -25.0, 40.0))
    kw.update(CASES[case])
    write_series(tmp_path / "dcm", phantom((16, 40, 48)), **kw)
    _assert_agrees(tmp_path / "dcm", _dcm2niix(tmp_path / "dcm", tmp_path / "out"))


@pytest.mark.parametrize("orientation", [(1, 0, 0, 0, 1, 0), (0, 1, 0, 0, 0, -1)])
def test_enhanced_multiframe_agrees_with_dcm2niix(tmp_path, orientation):
    from napari_dicomtools.core.synthetic import write_enhanced

    (tmp_path / "dcm").mkdir()
    write_enhanced(tmp_path / "dcm" / "enh.dcm", phantom((12, 32, 40)), orientation=orientation,
                   per_frame_rescale=False)
    _assert_agrees(tmp_path / "dcm", _dcm2niix(tmp_path / "dcm", tmp_path / "out"))


def test_4d_series_agrees_with_dcm2niix(tmp_path):
    """fMRI-like: every volume is its own acquisition at the same positions, written in a
    scrambled order; ours and dcm2niix's 4D NIfTI must match, TR included."""
    import pydicom

    from napari_dicomtools import scan
    from napari_dicomtools.core.nifti import write_series_nifti

    uid, frame, study = (pydicom.uid.generate_uid() for _ in range(3))
    rng = np.random.default_rng(0)
    for t in (2, 0, 3, 1):
        vals = rng.integers(-500, 500, (6, 20, 24))
        tr = write_series(tmp_path / "dcm" / f"v{t}", vals, modality="MR", intercept=-1024,
                          series_uid=uid, frame_uid=frame, study_uid=study,
                          prefix=f"V{t}_", seed=t, description="bold")
        for f in tr.files:
            ds = pydicom.dcmread(f)
            ds.AcquisitionNumber = t + 1
            ds.AcquisitionTime = f"1000{2 * t:02d}.000"
            ds.InstanceNumber = t * 6 + int(ds.InstanceNumber)  # rising over time, as scanners
            ds.RepetitionTime = 2000
            ds.save_as(f)
    ref = _dcm2niix(tmp_path / "dcm", tmp_path / "out")
    (s,) = scan(tmp_path / "dcm")
    assert s.shape == (4, 6, 20, 24)
    write_series_nifti(s, tmp_path / "ours.nii")
    ours = nib.load(tmp_path / "ours.nii")
    assert ours.shape == ref.shape == (24, 20, 6, 4)
    assert ours.header.get_zooms()[3] == pytest.approx(ref.header.get_zooms()[3]) == 2.0
    a, b = nib.as_closest_canonical(ours), nib.as_closest_canonical(ref)
    assert np.allclose(a.affine, b.affine, atol=0.01)
    assert np.array_equal(np.asarray(a.dataobj), b.get_fdata())


def _world_dirs(bvec, affine):
    """FSL b-vectors back to RAS world directions (to compare files with different voxel
    orders: ours keeps DICOM rows, dcm2niix flips them)."""
    a = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    v = np.array(bvec, float)
    if np.linalg.det(affine[:3, :3]) > 0:
        v[0] = -v[0]
    w = a @ v
    n = np.linalg.norm(w, axis=0)
    return w / np.where(n > 0, n, 1)


@pytest.mark.parametrize("orientation", [(1, 0, 0, 0, 1, 0),
                                         (0.9848, 0.1736, 0, -0.1504, 0.8529, -0.5)])
def test_dwi_bvals_bvecs_agree_with_dcm2niix(tmp_path, orientation):
    import pydicom

    from napari_dicomtools import scan
    from napari_dicomtools.core.nifti import write_series_nifti

    uid, frame, study = (pydicom.uid.generate_uid() for _ in range(3))
    grads = [(0, None), (1000, (1.0, 0.0, 0.0)), (1000, (0.0, 0.6, 0.8)),
             (1000, (0.0, 0.0, 1.0)), (700, (0.48, -0.6, 0.64))]
    rng = np.random.default_rng(1)
    for t, (b, g) in enumerate(grads):
        tr = write_series(tmp_path / "dcm" / f"v{t}", rng.integers(0, 900, (4, 16, 20)),
                          modality="MR", intercept=0, series_uid=uid, frame_uid=frame,
                          study_uid=study, prefix=f"V{t}_", seed=t, description="dwi",
                          orientation=orientation, window=None)
        for f in tr.files:
            ds = pydicom.dcmread(f)
            ds.InstanceNumber = t * 4 + int(ds.InstanceNumber)
            ds.AcquisitionNumber = t + 1
            ds.Manufacturer = "SIEMENS"
            ds.DiffusionBValue = b
            if g is not None:
                ds.DiffusionGradientOrientation = list(g)
            ds.save_as(f)
    (s,) = scan(tmp_path / "dcm")
    assert s.shape[0] == 5 and [b for b, _ in s.diffusion] == [0, 1000, 1000, 1000, 700]
    write_series_nifti(s, tmp_path / "ours.nii")
    ours_b = np.loadtxt(tmp_path / "ours.bval")
    ours_v = np.loadtxt(tmp_path / "ours.bvec")
    out = tmp_path / "out"
    ref = _dcm2niix(tmp_path / "dcm", out)
    ref_b = np.loadtxt(next(out.glob("*.bval")))
    ref_v = np.loadtxt(next(out.glob("*.bvec")))
    assert np.array_equal(ours_b, ref_b)
    w_ours = _world_dirs(ours_v, nib.load(tmp_path / "ours.nii").affine)
    w_ref = _world_dirs(ref_v, ref.affine)
    for n in range(5):  # same physical direction (diffusion is symmetric: up to sign)
        if grads[n][1] is None:
            assert not np.any(ours_v[:, n])
            continue
        assert abs(abs(w_ours[:, n] @ w_ref[:, n]) - 1) < 1e-3, (n, w_ours[:, n], w_ref[:, n])


def test_siemens_private_dwi_agrees_with_dcm2niix(tmp_path):
    """Classic Siemens DWI keeps b-values and gradients in private tags (0019,100C/100E)."""
    import pydicom

    from napari_dicomtools import scan
    from napari_dicomtools.core.nifti import write_series_nifti

    uid, frame, study = (pydicom.uid.generate_uid() for _ in range(3))
    grads = [(0, (0.0, 0.0, 0.0)), (1000, (0.6, 0.0, 0.8)), (1000, (0.0, -1.0, 0.0))]
    rng = np.random.default_rng(2)
    for t, (b, g) in enumerate(grads):
        tr = write_series(tmp_path / "dcm" / f"v{t}", rng.integers(0, 900, (4, 16, 20)),
                          modality="MR", intercept=0, series_uid=uid, frame_uid=frame,
                          study_uid=study, prefix=f"V{t}_", seed=t, description="ep2d_diff",
                          window=None, orientation=(0.9848, 0.1736, 0, -0.1504, 0.8529, -0.5))
        for f in tr.files:
            ds = pydicom.dcmread(f)
            ds.InstanceNumber = t * 4 + int(ds.InstanceNumber)
            ds.AcquisitionNumber = t + 1
            ds.Manufacturer = "SIEMENS"
            block = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
            block.add_new(0x0C, "IS", b)
            if b:
                block.add_new(0x0E, "FD", list(g))
            ds.save_as(f)
    (s,) = scan(tmp_path / "dcm")
    assert [b for b, _ in s.diffusion] == [0, 1000, 1000]
    write_series_nifti(s, tmp_path / "ours.nii")
    out = tmp_path / "out"
    ref = _dcm2niix(tmp_path / "dcm", out)
    assert np.array_equal(np.loadtxt(tmp_path / "ours.bval"), np.loadtxt(next(out.glob("*.bval"))))
    w_ours = _world_dirs(np.loadtxt(tmp_path / "ours.bvec"), nib.load(tmp_path / "ours.nii").affine)
    w_ref = _world_dirs(np.loadtxt(next(out.glob("*.bvec"))), ref.affine)
    for n in (1, 2):
        assert abs(abs(w_ours[:, n] @ w_ref[:, n]) - 1) < 1e-3, (n, w_ours[:, n], w_ref[:, n])
