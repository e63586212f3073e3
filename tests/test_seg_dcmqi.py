"""Cross-reading DICOM SEG with an independent implementation: dcmqi (QIICR, the DCMTK-based
converter 3D Slicer uses; its binaries ship in the ``dcmqi`` wheel, a test dependency).

* SEG written here -> dcmqi ``segimage2itkimage`` -> the same voxels, at the same patient
  millimetres (compared through each side's own affine), with our segment names.
* labels -> dcmqi ``itkimage2segimage`` (binary and labelmap SEG) -> opens here on the CT grid
  voxel for voxel, with dcmqi's segment names and colours (issue 15).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pytest

from napari_dicomtools.core.seg import read_segmentation, write_seg
from napari_dicomtools.core.synthetic import phantom, write_series
from napari_dicomtools.core.volume import read_volume

SHAPE = (10, 24, 28)
OBLIQUE = (1, 0, 0, 0, 0.6, -0.8)  # rows tilted 53 degrees from axial: no axis-aligned shortcut


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:  # never a silent skip: dcmqi is a [testing] dependency
        pytest.fail(f"{name} not found: pip install dcmqi (in the [testing] extra)")
    return path


def _labels():
    lab = np.zeros(SHAPE, np.uint8)
    lab[2:6, 4:14, 5:20] = 1
    lab[7:9, 12:20, 3:12] = 2
    lab[3, 18:22, 22:26] = 3  # one slice only
    return lab


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    d = tmp_path_factory.mktemp("dcmqi") / "ct"
    write_series(d, phantom(SHAPE), spacing=(2.0, 0.7, 0.8), orientation=OBLIQUE,
                 origin=(-12.0, 30.0, 8.0))
    return d


def _run(*args):
    res = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"{args[0]} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
    return res


def test_seg_written_here_reads_in_dcmqi_to_the_same_voxels(ct, tmp_path):
    lab = _labels()
    seg = write_seg(lab, ct, tmp_path / "seg.dcm",
                    segments={1: "liver", 2: {"label": "tumour", "type": "neoplasm"},
                              3: "nodule"})
    out = tmp_path / "dcmqi"
    out.mkdir()
    _run(_tool("segimage2itkimage"), "--inputDICOM", seg, "--outputDirectory", out,
         "-t", "nifti")
    meta = json.loads((out / "meta.json").read_text())
    names = {a["labelID"]: a["SegmentLabel"] for group in meta["segmentAttributes"]
             for a in group}
    assert names == {1: "liver", 2: "tumour", 3: "nodule"}
    ras_to_ours = np.linalg.inv(read_volume(ct).affine_ras)  # RAS -> (column, row, slice)
    for n in (1, 2, 3):
        img = nib.load(out / f"{n}.nii.gz")
        ijk = np.argwhere(np.asarray(img.dataobj) > 0)
        ours = nib.affines.apply_affine(ras_to_ours @ img.affine, ijk)
        np.testing.assert_allclose(ours, np.round(ours), atol=1e-3)  # on our voxel centres
        got = {tuple(v) for v in np.round(ours[:, ::-1]).astype(int)}  # (slice, row, col)
        assert got == {tuple(v) for v in np.argwhere(lab == n)}


@pytest.mark.parametrize("kind", ["binary", "labelmap"])
def test_seg_written_by_dcmqi_opens_here_on_the_ct_grid(ct, tmp_path, kind):
    lab = _labels()
    vol = read_volume(ct)
    nii = tmp_path / "labels.nii.gz"
    nib.save(nib.Nifti1Image(lab.transpose(2, 1, 0).astype(np.int16), vol.affine_ras), nii)
    colours = {1: [216, 101, 79], 2: [128, 174, 128], 3: [0, 151, 206]}
    meta = {"ContentCreatorName": "Reader^One", "ClinicalTrialSeriesID": "1",
            "ClinicalTrialTimePointID": "1", "SeriesDescription": "dcmqi SEG",
            "SeriesNumber": "42", "InstanceNumber": "1", "BodyPartExamined": "",
            "segmentAttributes": [[{
                "labelID": n, "SegmentLabel": name, "SegmentDescription": name,
                "SegmentAlgorithmType": "MANUAL",
                "SegmentedPropertyCategoryCodeSequence": {
                    "CodeValue": "91723000", "CodingSchemeDesignator": "SCT",
                    "CodeMeaning": "Anatomical Structure"},
                "SegmentedPropertyTypeCodeSequence": {
                    "CodeValue": "10200004", "CodingSchemeDesignator": "SCT",
                    "CodeMeaning": "Liver"},
                "recommendedDisplayRGBValue": colours[n]}
                for n, name in ((1, "liver"), (2, "tumour"), (3, "nodule"))]]}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "by-dcmqi.dcm"
    _run(_tool("itkimage2segimage"), "--inputImageList", nii, "--inputDICOMDirectory", ct,
         "--outputDICOM", out, "--inputMetadata", tmp_path / "meta.json",
         "--segmentationType", kind, "--useLabelIDAsSegmentNumber")
    got = read_segmentation(out, reference=ct)
    assert got.metadata["on_reference"]
    np.testing.assert_allclose(got.affine_lps, vol.affine_lps, atol=1e-4)
    assert [s.label for s in got.segments] == ["liver", "tumour", "nodule"]
    for n in (1, 2, 3):
        np.testing.assert_array_equal(got.mask(n), lab == n)
        # CIELab in the file -> sRGB here, within a rounding step
        assert np.abs(np.subtract(got.segment(n).color, colours[n])).max() <= 1
    # without its images: on its own geometry, at the same patient millimetres
    alone = read_segmentation(out)
    for n in (1, 3):
        idx = np.argwhere(alone.mask(n))[:, ::-1]
        lps = nib.affines.apply_affine(alone.affine_lps, idx)
        want = nib.affines.apply_affine(vol.affine_lps, np.argwhere(lab == n)[:, ::-1])
        np.testing.assert_allclose(np.sort(lps, axis=0), np.sort(want, axis=0), atol=1e-3)
