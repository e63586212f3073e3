"""DICOM SEG: labels -> SEG -> labels on the reference grid, cross-read with highdicom,
dciodvfy-clean output, own-geometry reading, bad input (issue 15)."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest

from napari_dicomtools.core import geometry
from napari_dicomtools.core.errors import DicomToolsError, UnreadableDicomError
from napari_dicomtools.core.seg import read_segmentation, write_seg
from napari_dicomtools.core.series import scan
from napari_dicomtools.core.synthetic import phantom, write_enhanced, write_series
from napari_dicomtools.core.volume import read_volume

SHAPE = (12, 24, 28)


def _labels(shape=SHAPE):
    lab = np.zeros(shape, np.uint8)
    lab[2:6, 4:14, 5:20] = 1
    lab[7:10, 12:20, 3:12] = 2
    lab[9, 1:3, 24:27] = 3  # a small segment on one slice
    return lab


@pytest.fixture
def ct(tmp_path):
    truth = write_series(tmp_path / "ct", phantom(SHAPE), spacing=(2.0, 0.7, 0.8))
    return tmp_path / "ct", truth


@pytest.mark.parametrize("kind", ["axial", "oblique", "tilted"])
def test_binary_round_trip_is_voxel_identical_and_valid(dciodvfy_errors, tmp_path, kind):
    kw = {"axial": {}, "oblique": {"orientation": (0.9, 0.1, 0.42, -0.1, 0.99, 0)},
          "tilted": {"tilt_deg": 10.0}}[kind]
    write_series(tmp_path / "ct", phantom(SHAPE), spacing=(2.0, 0.7, 0.8), **kw)
    lab = _labels()
    out = write_seg(lab, tmp_path / "ct", tmp_path / "out" / "seg.dcm",
                    segments={1: "liver", 2: {"label": "tumour", "type": "neoplasm",
                                              "color": (255, 0, 0)}})
    seg = read_segmentation(out, reference=tmp_path / "ct")
    assert seg.metadata["on_reference"] and seg.metadata["problems"] == []
    assert len(seg.labels) == 1 and np.array_equal(seg.labels[0], lab)
    vol = read_volume(tmp_path / "ct")
    np.testing.assert_allclose(seg.affine_lps, vol.affine_lps, atol=1e-6)
    s1, s2, s3 = seg.segments
    assert (s1.label, s1.type, s1.category[2]) == ("liver", ("10200004", "SCT", "Liver"),
                                                   "Anatomical Structure")
    assert (s2.label, s2.type[2], s2.category[2]) == ("tumour", "Neoplasm",
                                                      "Morphologically Abnormal Structure")
    assert s2.color == (255, 0, 0)
    assert (s3.label, s3.type[2]) == ("Segment 3", "Tissue")
    ds = pydicom.dcmread(out)
    assert ds.SegmentationType == "BINARY"
    # only non-empty frames: one per (segment, slice) that holds voxels
    assert ds.NumberOfFrames == 4 + 3 + 1
    assert dciodvfy_errors(out) == []


def test_highdicom_reads_our_seg_to_the_same_voxels(tmp_path, ct):
    import highdicom as hd

    folder, _ = ct
    lab = _labels()
    out = write_seg(lab, folder, tmp_path / "seg.dcm")
    uids = [f.instance.sop_uid for f in scan(folder)[0].frames]
    got = hd.seg.segread(out).get_pixels_by_source_instance(
        uids, combine_segments=True, ignore_spatial_locations=True)
    assert np.array_equal(got, lab)


def test_seg_written_by_highdicom_on_part_of_the_series_opens_in_place(tmp_path, ct):
    import highdicom as hd

    folder, _ = ct
    frames = scan(folder)[0].frames
    part = frames[4:9]  # the SEG covers five slices of twelve
    sources = [pydicom.dcmread(f.instance.path) for f in part]
    for ds in sources:  # Type 2 attributes highdicom copies (our synthetic series lacks them)
        ds.AccessionNumber = ds.StudyID = ds.ReferringPhysicianName = ""
    mask = np.zeros((5,) + SHAPE[1:], np.uint8)
    mask[1:4, 6:12, 8:15] = 1
    desc = hd.seg.SegmentDescription(
        1, "kidney", hd.sr.CodedConcept("91723000", "SCT", "Anatomical Structure"),
        hd.sr.CodedConcept("64033007", "SCT", "Kidney"), "AUTOMATIC",
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            "test", hd.sr.CodedConcept("123110", "DCM", "Artificial Intelligence"), "1"))
    seg_ds = hd.seg.Segmentation(sources, mask, "BINARY", [desc], hd.UID(), 5, hd.UID(), 1,
                                 "x", "x", "1", "1")
    seg_ds.save_as(tmp_path / "hd.dcm")
    seg = read_segmentation(tmp_path / "hd.dcm", reference=folder)
    want = np.zeros(SHAPE, np.uint8)
    want[4:9] = mask
    assert np.array_equal(seg.labels[0], want)
    assert seg.segments[0].label == "kidney" and seg.segments[0].algorithm_type == "AUTOMATIC"


def test_without_its_images_a_seg_opens_on_its_own_geometry_at_the_same_place(tmp_path, ct):
    folder, _ = ct
    lab = _labels()
    out = write_seg(lab, folder, tmp_path / "seg.dcm")
    alone = read_segmentation(out)
    placed = read_segmentation(out, reference=folder)
    assert not alone.metadata["on_reference"]
    for n in (1, 2, 3):  # every voxel of every segment at the same patient position
        a = np.argwhere(alone.mask(n))[:, ::-1]  # (column, row, slice)
        b = np.argwhere(placed.mask(n))[:, ::-1]
        pa = a @ alone.affine_lps[:3, :3].T + alone.affine_lps[:3, 3]
        pb = b @ placed.affine_lps[:3, :3].T + placed.affine_lps[:3, 3]
        np.testing.assert_allclose(np.sort(pa, axis=0), np.sort(pb, axis=0), atol=1e-4)
    # the own grid spans the planes the SEG stores (slices 2..9), gaps included
    assert alone.shape == (8,) + SHAPE[1:]


def test_overlapping_segments_go_to_separate_arrays(tmp_path, ct):
    folder, _ = ct
    lab = _labels()
    over = np.zeros(SHAPE, np.uint8)
    over[3:8, 8:16, 10:25] = 4  # overlaps segments 1 and 2
    out = write_seg([lab, over], folder, tmp_path / "seg.dcm")
    seg = read_segmentation(out, reference=folder)
    assert seg.groups == [[1, 2, 3], [4]]
    assert np.array_equal(seg.labels[0], lab) and np.array_equal(seg.labels[1], over)
    assert np.array_equal(seg.mask(4), over == 4)


def test_fractional_round_trip_within_one_step(dciodvfy_errors, tmp_path, ct):
    folder, _ = ct
    rng = np.random.default_rng(1)
    frac = np.zeros((2,) + SHAPE, np.float32)
    frac[0, 2:6, 4:14, 5:20] = rng.uniform(0.1, 1.0, (4, 10, 15))
    frac[1, 8, 3:9, 3:9] = 0.25
    out = write_seg(frac, folder, tmp_path / "frac.dcm", fractional=True)
    seg = read_segmentation(out, reference=folder)
    assert seg.metadata["segmentation_type"] == "FRACTIONAL"
    for n in (1, 2):
        np.testing.assert_allclose(seg.fractions[n], frac[n - 1], atol=0.5 / 255 + 1e-6)
    # the label arrays hold what is at least half in
    assert np.array_equal(seg.mask(1), seg.fractions[1] >= 0.5)
    assert not seg.mask(2).any()
    assert dciodvfy_errors(out) == []


def test_enhanced_multiframe_reference(dciodvfy_errors, tmp_path):
    truth = write_enhanced(tmp_path / "enh.dcm", phantom(SHAPE), shuffle_frames=True)
    (tmp_path / "ref").mkdir()
    shutil.move(truth.files[0], tmp_path / "ref" / "enh.dcm")
    lab = _labels()
    out = write_seg(lab, tmp_path / "ref", tmp_path / "seg.dcm")
    seg = read_segmentation(out, reference=tmp_path / "ref")
    assert seg.metadata["on_reference"]
    assert np.array_equal(seg.labels[0], lab)
    assert dciodvfy_errors(out) == []


def test_scan_lists_a_seg_as_its_own_kind(tmp_path, ct):
    folder, _ = ct
    write_seg(_labels(), folder, tmp_path / "study" / "seg.dcm")
    shutil.copytree(folder, tmp_path / "study" / "ct")
    kinds = sorted(s.kind for s in scan(tmp_path / "study"))
    assert kinds == ["IMAGE", "SEG"]


def test_nonconsecutive_labels_are_renumbered_with_a_warning(tmp_path, ct):
    folder, _ = ct
    lab = np.zeros(SHAPE, np.uint16)
    lab[1:3, 2:5, 2:5] = 7
    lab[5:7, 2:5, 2:5] = 300
    with pytest.warns(UserWarning, match="renumbered"):
        out = write_seg(lab, folder, tmp_path / "seg.dcm", segments={7: "a", 300: "b"})
    seg = read_segmentation(out, reference=folder)
    assert [s.label for s in seg.segments] == ["a", "b"]
    assert np.array_equal(seg.labels[0], np.select([lab == 7, lab == 300], [1, 2], 0))


def test_refusals_name_the_file_and_reason(tmp_path, ct):
    folder, _ = ct
    lab = _labels()
    with pytest.raises(DicomToolsError, match="shape"):
        write_seg(lab[:-1], folder, tmp_path / "a.dcm")
    with pytest.raises(DicomToolsError, match="empty"):
        write_seg(np.zeros(SHAPE, np.uint8), folder, tmp_path / "a.dcm")
    with pytest.raises(DicomToolsError, match="source"):
        write_seg(lab, folder, folder / "seg.dcm")
    with pytest.raises(DicomToolsError, match="unknown segment type"):
        write_seg(lab, folder, tmp_path / "a.dcm", segments={1: {"type": "unicorn"}})
    out = write_seg(lab, folder, tmp_path / "a.dcm")
    with pytest.raises(DicomToolsError, match="exists"):
        write_seg(lab, folder, out)
    with pytest.raises(DicomToolsError, match="not a DICOM SEG"):
        read_segmentation(scan(folder)[0].files[0])


def test_truncated_seg_is_an_error_naming_the_file(tmp_path, ct):
    folder, _ = ct
    out = write_seg(_labels(), folder, tmp_path / "seg.dcm")
    raw = open(out, "rb").read()
    bad = tmp_path / "cut.dcm"
    bad.write_bytes(raw[:-40])
    with pytest.raises(UnreadableDicomError, match="cut.dcm"):
        read_segmentation(bad, reference=folder)


def test_seg_over_other_images_is_not_misplaced(tmp_path, ct):
    folder, _ = ct
    out = write_seg(_labels(), folder, tmp_path / "seg.dcm")
    # same size and frame of reference, shifted 1 mm along the slices: no slice matches
    other = write_series(tmp_path / "other", phantom(SHAPE), spacing=(2.0, 0.7, 0.8),
                         origin=(-38.0, -38.0, -59.0))
    series = scan(tmp_path / "other")[0]
    with pytest.warns(UserWarning, match="lies on no slice"):
        seg = read_segmentation(out, reference=series)
    assert not seg.metadata["on_reference"]
    # on its own geometry instead: the first stored plane is slice 2 of the CT (z = -56 mm)
    np.testing.assert_allclose(seg.origin, [-38.0, -38.0, -56.0], atol=1e-4)
    assert other.origin[2] == -59.0


def test_cli_nifti_to_seg_and_back(tmp_path, ct, capsys):
    import nibabel as nib

    from napari_dicomtools.cli import main

    folder, _ = ct
    assert main(["convert", str(folder), str(tmp_path / "ct.nii.gz"), "-q"]) == 0
    img = nib.load(tmp_path / "ct.nii.gz")
    lab = _labels().T  # NIfTI (column, row, slice) on the grid convert wrote
    nib.save(nib.Nifti1Image(lab, img.affine), tmp_path / "lab.nii.gz")
    # the same labels reoriented to RAS (nnU-Net / ITK style) lie on the same grid
    nib.save(nib.as_closest_canonical(nib.Nifti1Image(lab, img.affine)),
             tmp_path / "lab_ras.nii.gz")
    out = tmp_path / "out" / "seg.dcm"
    assert main(["seg", str(tmp_path / "lab.nii.gz"), "--reference", str(folder), str(out),
                 "--names", "liver,tumour", "--types", "liver,neoplasm"]) == 0
    assert "SEG of 3 segment(s)" in capsys.readouterr().out
    seg = read_segmentation(out, reference=folder)
    assert np.array_equal(seg.labels[0], _labels())
    assert [s.label for s in seg.segments] == ["liver", "tumour", "Segment 3"]
    assert main(["seg", str(tmp_path / "lab_ras.nii.gz"), "--reference", str(folder),
                 str(tmp_path / "ras.dcm")]) == 0
    assert np.array_equal(read_segmentation(tmp_path / "ras.dcm", reference=folder).labels[0],
                          _labels())
    # and back to NIfTI on the reference grid: the very array and affine we started from
    assert main(["seg", str(out), str(tmp_path / "back.nii.gz"), "--reference",
                 str(folder)]) == 0
    back = nib.load(tmp_path / "back.nii.gz")
    assert np.array_equal(np.asarray(back.dataobj), lab)
    np.testing.assert_allclose(back.affine, img.affine, atol=1e-5)
    capsys.readouterr()
    # the usual rules: an existing output needs --force; no --reference, no SEG
    assert main(["seg", str(tmp_path / "lab.nii.gz"), "--reference", str(folder),
                 str(out)]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["seg", str(tmp_path / "lab.nii.gz"), str(tmp_path / "x.dcm")]) == 1
    assert "--reference" in capsys.readouterr().err


def test_cli_refuses_labels_on_another_grid(tmp_path, ct, capsys):
    import nibabel as nib

    from napari_dicomtools.cli import main

    folder, truth = ct
    aff = geometry.affine_ras((1.0, 1.0, 1.0), truth.origin, truth.direction)
    nib.save(nib.Nifti1Image(_labels().T, aff), tmp_path / "lab.nii.gz")
    assert main(["seg", str(tmp_path / "lab.nii.gz"), "--reference", str(folder),
                 str(tmp_path / "x.dcm")]) == 1
    assert "not on the grid" in capsys.readouterr().err
    assert not (tmp_path / "x.dcm").exists()


def test_convert_writes_a_seg_as_labels_on_its_image_grid(tmp_path, ct, capsys):
    """`dicomtools convert` on a study with a SEG: the image as usual, the SEG as label NIfTI
    on the same grid (same affine), never as a grey image of its frames."""
    import nibabel as nib

    from napari_dicomtools.cli import main

    folder, _ = ct
    study = tmp_path / "study"
    shutil.copytree(folder, study / "ct")
    write_seg(_labels(), folder, study / "seg" / "seg.dcm")
    out = tmp_path / "nifti"
    assert main(["convert", str(study), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "SEG labels on the grid of" in printed
    files = sorted(p.name for p in out.glob("*.nii.gz"))
    assert len(files) == 2, files
    seg_path = [p for p in out.glob("*.nii.gz")
                if f"{p}: " in printed and "SEG labels" in printed.split(f"{p}: ")[1]
                .splitlines()[0]]
    assert len(seg_path) == 1, printed
    image_path = next(p for p in out.glob("*.nii.gz") if p != seg_path[0])
    lab, img = nib.load(seg_path[0]), nib.load(image_path)
    assert np.array_equal(np.asarray(lab.dataobj), _labels().T)
    np.testing.assert_allclose(lab.affine, img.affine, atol=1e-5)
    assert img.shape == lab.shape


def test_segment_specs_resolve_keywords_codes_and_colours():
    from napari_dicomtools.core.seg import Segment

    s = Segment.make(3, {"label": "tumour", "type": "Blood_Vessel", "color": (1.0, 0.5, 0)})
    assert s.type == ("59820001", "SCT", "Blood Vessel")
    assert s.category[2] == "Anatomical Structure"  # the type keyword picks its category
    assert s.color == (255, 128, 0)  # floats <= 1 are fractions, ints are 0-255
    assert Segment.make(7, s).number == 7 and Segment.make(7, s).label == "tumour"
    coded = Segment.make(1, {"type": ("T-D0050", "SRT", "Tissue")})
    assert coded.type == ("T-D0050", "SRT", "Tissue") and coded.label == "Segment 1"
    for spec, why in (({"color": (255, 0)}, "3 values"), ({"type": "unicorn"}, "unknown"),
                      ({"shade": 1}, "unknown field"), ({"algorithm_type": "x"}, "not one")):
        with pytest.raises(DicomToolsError, match=why):
            Segment.make(1, spec)
