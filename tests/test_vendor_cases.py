"""Vendor corner cases (tests/data/vendor, cut from neurolabusc's dcm_qa repositories) agree
with the dcm2niix binary run on the same files: the same files by name, each with the same
voxels at the same place after both are reoriented to the closest canonical orientation."""

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_dicomtools import scan
from napari_dicomtools.cli import main

DCM2NIIX = shutil.which("dcm2niix")
needs_dcm2niix = pytest.mark.skipif(DCM2NIIX is None, reason="dcm2niix not installed "
                                                               "(pip install dcm2niix)")
DATA = Path(__file__).parent / "data" / "vendor"


def convert_both(src, tmp_path, pattern="%s_%p"):
    """``{name: (ours, dcm2niix's)}`` NIfTI images of ``src``; the names must agree."""
    ref, ours = tmp_path / "ref", tmp_path / "ours"
    ref.mkdir()
    r = subprocess.run([DCM2NIIX, "-f", pattern, "-z", "n", "-b", "n", "-v", "0", "-o", str(ref),
                        str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert main(["convert", str(src), str(ours), "-q", "--no-gzip", "-f", pattern]) == 0
    names = sorted(p.name for p in ours.glob("*.nii"))
    assert names == sorted(p.name for p in ref.glob("*.nii"))
    return {n: (nib.load(ours / n), nib.load(ref / n)) for n in names}


def assert_same_diffusion(src, tmp_path, name, pairs):
    """Same b-values, and every gradient the same direction in the world (each file's bvec is
    in its own image space, and dcm2niix flips rows where we keep them)."""
    from test_dcm2niix import _world_dirs

    stem = name[:-4]
    ob, rb = (np.atleast_1d(np.loadtxt(tmp_path / d / f"{stem}.bval")) for d in ("ours", "ref"))
    ov, rv = (np.loadtxt(tmp_path / d / f"{stem}.bvec").reshape(3, -1) for d in ("ours", "ref"))
    assert np.allclose(ob, rb)
    ours, ref = pairs[name]
    wo, wr = _world_dirs(ov, ours.affine), _world_dirs(rv, ref.affine)
    for n in range(len(ob)):
        if not np.any(rv[:, n]):
            assert not np.any(ov[:, n]), n
            continue
        assert wo[:, n] @ wr[:, n] > 0.999, (n, wo[:, n], wr[:, n])
    return ob, ov


def dwi_agrees(src, tmp_path, shape=None):
    """Convert one DWI series both ways: same image, b-values and world gradients; returns
    our (bvals, bvecs)."""
    pairs = convert_both(src, tmp_path)
    (name,) = pairs
    ours, ref = pairs[name]
    assert shape is None or ours.shape == shape
    assert_same_image(ours, ref)
    return assert_same_diffusion(src, tmp_path, name, pairs)


def assert_same_image(ours, ref):
    a, b = nib.as_closest_canonical(ours), nib.as_closest_canonical(ref)
    assert a.shape == b.shape
    assert np.allclose(a.affine, b.affine, atol=0.01), (a.affine, b.affine)
    assert np.allclose(np.asarray(a.dataobj, float), b.get_fdata(), rtol=1e-5, atol=1e-4)


@needs_dcm2niix
def test_xa30_enhanced_echoes_in_separate_files_agree_with_dcm2niix(tmp_path):
    """Echo times only in per-frame groups, one file per echo: _e1 and _e2, not one 4D
    stack; the lone phase file is echo 2 by its ICE dimensions."""
    pairs = convert_both(DATA / "siemens_xa30_fieldmap", tmp_path)
    assert sorted(pairs) == ["8_gre_field_mapping_e1.nii", "8_gre_field_mapping_e2.nii",
                             "9_gre_field_mapping_e2_ph.nii"]
    for ours, ref in pairs.values():
        assert ours.shape == (64, 64, 6)
        assert_same_image(ours, ref)
    e1, e2 = (np.asarray(pairs[f"8_gre_field_mapping_e{k}.nii"][0].dataobj) for k in (1, 2))
    assert not np.array_equal(e1, e2)


def test_xa30_echoes_ranked_across_files_without_ice_dims(tmp_path):
    """Without the Siemens ICE dimensions the echo times alone rank the files."""
    import pydicom

    for f in (DATA / "siemens_xa30_fieldmap").glob("8_*.dcm"):
        ds = pydicom.dcmread(f)
        for item in ds.PerFrameFunctionalGroupsSequence:
            del item[0x002111FE]
        ds.save_as(tmp_path / f.name)
    found = scan(tmp_path)
    assert [(s.split, s.shape) for s in found] == [("e1", (6, 64, 64)), ("e2", (6, 64, 64))]
    assert [s.frames[0].echo_time for s in found] == [10.0, 12.46]


@needs_dcm2niix
def test_siemens_mosaic_dwi_keeps_bvals_and_bvecs(tmp_path):
    """nibabel's siemens_dwi_0/1000.dcm: b=0 and b=1000 mosaics (CSA header gradient)."""
    import gzip

    import nibabel

    data = Path(nibabel.__file__).parent / "nicom" / "tests" / "data"
    src = tmp_path / "src"
    src.mkdir()
    for b in (0, 1000):
        (src / f"dwi_{b}.dcm").write_bytes(gzip.decompress(
            (data / f"siemens_dwi_{b}.dcm.gz").read_bytes()))
    bvals, _ = dwi_agrees(src, tmp_path, (128, 128, 48, 2))
    assert list(bvals) == [0, 1000]


@needs_dcm2niix
def test_ge_dwi_gradients_from_private_tags_agree_with_dcm2niix(tmp_path):
    """GE MR750 DTI, oblique axial (43 degrees in plane): b-values in (0043,1039), gradients
    in the image frame in (0019,10BB-BD); 7 volumes of 2 slices."""
    bvals, bvecs = dwi_agrees(DATA / "ge_dwi_oblique", tmp_path, (48, 48, 2, 7))
    assert list(bvals) == [0] + [1000] * 6 and np.all(np.abs(bvecs[:, 1:]).sum(0) > 0.5)


@needs_dcm2niix
@pytest.mark.parametrize("plane,pe", [("axial", "ROW"), ("sagittal", "COL"),
                                      ("sagittal", "ROW"), ("coronal", "COL")])
def test_ge_gradient_frames_per_plane_and_phase_direction(tmp_path, plane, pe):
    """The same GE files re-planned: dcm2niix's per-plane flips and row/column swizzle.
    (Coronal with row phase encoding is left out: there dcm2niix's world directions differ
    from ours in x and z, and dcm2niix itself warns that case is untested.)"""
    import pydicom

    iop = {"axial": [1, 0, 0, 0, 1, 0], "sagittal": [0, 1, 0, 0, 0, -1],
           "coronal": [1, 0, 0, 0, 0, -1]}[plane]
    src = tmp_path / "src"
    src.mkdir()
    for f in sorted((DATA / "ge_dwi_oblique").iterdir()):
        if not f.name.startswith("i"):
            continue
        ds = pydicom.dcmread(f)
        k = int(ds.InstanceNumber + 1) % 2  # the two slice positions
        normal = np.cross(iop[:3], iop[3:])
        ds.ImageOrientationPatient = iop
        ds.ImagePositionPatient = list(np.array([-20.0, -30.0, 10.0]) + 3.0 * k * normal)
        ds.InPlanePhaseEncodingDirection = pe
        ds.save_as(src / f.name)
    dwi_agrees(src, tmp_path)


@needs_dcm2niix
def test_philips_private_diffusion_agrees_with_dcm2niix(tmp_path):
    """Philips classic DWI with the gradient only in its private tags: b-value (2001,1003),
    direction (2005,10B0-B2), oblique slices."""
    import pydicom

    from napari_dicomtools.core.synthetic import write_series

    uid, frame, study = (pydicom.uid.generate_uid() for _ in range(3))
    grads = [(0.0, (0.0, 0.0, 0.0)), (1000.0, (0.6, 0.0, 0.8)), (1000.0, (0.0, -1.0, 0.0)),
             (700.0, (0.48, -0.6, 0.64))]
    rng = np.random.default_rng(4)
    src = tmp_path / "src"
    for t, (b, g) in enumerate(grads):
        tr = write_series(src / f"v{t}", rng.integers(0, 900, (3, 12, 14)), modality="MR",
                          intercept=0, series_uid=uid, frame_uid=frame, study_uid=study,
                          prefix=f"V{t}_", seed=t, description="DWI", window=None,
                          orientation=(0.9848, 0.1736, 0, -0.1504, 0.8529, -0.5))
        for f in tr.files:
            ds = pydicom.dcmread(f)
            ds.Manufacturer = "Philips Medical Systems"
            ds.InstanceNumber = t * 3 + int(ds.InstanceNumber)
            ds.AcquisitionNumber = t + 1
            ds.private_block(0x2001, "Philips Imaging DD 001", create=True).add_new(
                0x03, "FL", b)
            block = ds.private_block(0x2005, "Philips MR Imaging DD 001", create=True)
            for k, v in zip((0xB0, 0xB1, 0xB2), g, strict=True):
                block.add_new(k, "FL", v)
            ds.save_as(f)
    (s,) = scan(src)
    assert [b for b, _ in s.diffusion] == [0, 1000, 1000, 700]
    dwi_agrees(src, tmp_path)


def test_no_bval_bvec_for_a_constant_b0_series(tmp_path):
    """Philips writes b=0 in every frame of ASL and fMRI: no .bval/.bvec (as dcm2niix)."""
    root = Path(__file__).parent / "data" / "dcm_qa" / "philips_3DpCASL_classic" / "dcm"
    (s,) = scan(root)
    assert s.frames[0].bvalue == 0 and s.diffusion is None
    assert main(["convert", str(root), str(tmp_path / "out"), "-q"]) == 0
    assert [p.suffix for p in (tmp_path / "out").iterdir()] == [".gz"]


def _ge_pepolar_series(src, mode, n_vol=4):
    """A GE epi_pepolar run: n_vol volumes at the same positions; user data 12 = ``mode``
    says which were acquired with reversed polarity, and those are stored upside down.
    Returns the true (volume, slice, row, column) values."""
    import pydicom

    from napari_dicomtools.core.synthetic import write_series

    uid, frame, study = (pydicom.uid.generate_uid() for _ in range(3))
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 900, (n_vol, 3, 10, 12))
    for t in range(n_vol):
        vol = t + 1
        rev = mode == 1 or (mode == 2 and vol % 2 == 1) or (mode == 3 and vol % 2 == 0)
        tr = write_series(src / f"v{t}", truth[t][:, ::-1] if rev else truth[t], modality="MR",
                          intercept=0, series_uid=uid, frame_uid=frame, study_uid=study,
                          prefix=f"V{t}_", seed=t, description="fmri pepolar", window=None,
                          series_number=5, orientation=(1, 0, 0, 0, 0.8660254, -0.5))
        for f in tr.files:
            ds = pydicom.dcmread(f)
            ds.Manufacturer = "GE MEDICAL SYSTEMS"
            ds.ProtocolName = "fmri pepolar"
            ds.InstanceNumber = t * 3 + int(ds.InstanceNumber)
            ds.TemporalPositionIdentifier = vol
            block = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
            block.add_new(0x9C, "LO", "research/epi_pepolar")
            block.add_new(0xB3, "DS", str(mode))
            ds.save_as(f)
    return truth


@needs_dcm2niix
@pytest.mark.parametrize("mode", [1, 2, 3])
def test_ge_pepolar_reversed_volumes_flipped_and_split(tmp_path, mode):
    """Reversed-polarity volumes come out upright (not mirrored front to back) and, when
    mixed with forward ones, as their own series numbered +1000, like dcm2niix."""
    truth = _ge_pepolar_series(tmp_path / "src", mode)
    pairs = convert_both(tmp_path / "src", tmp_path)
    for ours, ref in pairs.values():
        assert_same_image(ours, ref)
    rev = {1: [0, 1, 2, 3], 2: [0, 2], 3: [1, 3]}[mode]
    fwd = [t for t in range(4) if t not in rev]
    expected = {"5_fmri_pepolar.nii": rev} if mode == 1 else {
        "5_fmri_pepolar.nii": fwd, "1005_fmri_pepolar.nii": rev}
    assert sorted(pairs) == sorted(expected)
    for name, vols in expected.items():
        data = np.asarray(pairs[name][0].dataobj)  # ours: (column, row, slice, volume)
        assert np.array_equal(data.transpose(3, 2, 1, 0), truth[vols]), name
