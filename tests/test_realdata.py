"""Real scanner series (tests/data/dcm_qa): agree with dcm2niix's reference NIfTI."""

import glob
import os

import nibabel as nib
import numpy as np
import pytest

from napari_dicomtools import read_volume, scan

DATA = os.path.join(os.path.dirname(__file__), "data", "dcm_qa")
SERIES = sorted(d for d in os.listdir(DATA) if os.path.isdir(os.path.join(DATA, d)))


@pytest.mark.parametrize("name", SERIES)
def test_real_series_agrees_with_dcm2niix_reference(name):
    root = os.path.join(DATA, name)
    found = scan(os.path.join(root, "dcm"))
    assert len(found) == 1 and found.skipped == []
    vol = read_volume(found[0])
    (ref_path,) = glob.glob(os.path.join(root, "ref", "*.nii*"))
    ref = nib.as_closest_canonical(nib.load(ref_path))
    ours = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(vol.array).T, vol.affine_ras))
    assert ours.shape == ref.shape
    assert np.allclose(ours.affine, ref.affine, atol=0.01), (ours.affine, ref.affine)
    assert np.allclose(np.asarray(ours.dataobj), ref.get_fdata(), rtol=1e-5, atol=1e-4)


def test_classic_and_enhanced_exports_of_one_acquisition_are_identical():
    cl = read_volume(os.path.join(DATA, "philips_3DpCASL_classic", "dcm"))
    en = read_volume(os.path.join(DATA, "philips_3DpCASL_enhanced", "dcm"))
    assert cl.array.shape == en.array.shape == (40, 96, 96)
    assert np.allclose(cl.affine_lps, en.affine_lps, atol=1e-4)
    assert np.allclose(cl.array, en.array)
    assert cl.metadata["header"]["Manufacturer"].startswith("Philips")


def test_mosaic_native_and_rle_agree(tmp_path):
    """The same mosaic decompressed to Explicit VR Little Endian takes the native path."""
    import pydicom

    src = os.path.join(DATA, "siemens_mosaic_rle", "dcm", "4.dcm")
    ds = pydicom.dcmread(src)
    ds.decompress()
    ds.save_as(tmp_path / "native.dcm")
    (s,) = scan(tmp_path / "native.dcm")
    assert s.first.pixel_offset is not None and s.shape == (35, 64, 64)
    native = read_volume(s)
    rle = read_volume(src)
    assert np.array_equal(native.array, rle.array)
    assert np.allclose(native.affine_lps, rle.affine_lps)
