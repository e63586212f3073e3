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
    (Coronal with row phase encoding: see the next test.)"""
    dwi_agrees(_ge_replanned(tmp_path / "src", plane, pe), tmp_path)


_PLANES = {"axial": [1, 0, 0, 0, 1, 0], "sagittal": [0, 1, 0, 0, 0, -1],
           "coronal": [1, 0, 0, 0, 0, -1]}


def _ge_replanned(src, plane, pe):
    """The GE DTI files with their geometry replaced: ``plane`` orientation, two slices 3 mm
    apart, InPlanePhaseEncodingDirection ``pe``; the private gradients unchanged."""
    import pydicom

    iop = _PLANES[plane]
    src.mkdir(parents=True)
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
    return src


def _image_frame_gradients(src):
    """Our gradients of the series in ``src`` in its image frame: components along the row
    direction, the column direction and row x column (3 x volumes)."""
    (s,) = scan(src)
    iop = np.array(s.frames[0].orientation, float)
    frame = np.stack([iop[:3], iop[3:], np.cross(iop[:3], iop[3:])])
    return np.array([frame @ np.array(g) for _, g in s.diffusion[1:]]).T


def test_ge_coronal_row_phase_encoding_follows_gecorrectbvecs(tmp_path):
    """GE coronal with row phase encoding: where we and the dcm2niix binary part, and why.

    GE writes the gradient in (0019,10BB-BD) in the logical frame of the acquisition
    (frequency, phase, slice). Phase encoding along rows swaps frequency and phase: one
    quarter turn of that logical frame about its slice axis. dcm2niix's geCorrectBvecs
    (after dicm2nii) applies that turn, then per-plane sign flips taking the logical frame
    to the image frame (sagittal x and y, coronal y and z, axial z). We implement exactly
    that, and the binary agrees with us for axial and sagittal ROW and all COL cases (test
    above). Seen in the image frame (row, column, row x column), the turn keeps its sense in
    axial and sagittal but reverses in coronal, whose flips mirror one in-plane axis: the
    same physical rotation, about an axis the coronal image frame points the other way. The
    dcm2niix binary writes coronal ROW bvecs with the in-plane part negated (RAS x and z),
    i.e. the axial sense in every plane, which is not what its geCorrectBvecs computes; it
    warns that ROW reorientation is untested. The DICOM geometry (orientation, phase
    direction) cannot tell the two apart without a real coronal ROW acquisition (none in
    dcm_qa_ge); we keep the published algorithm, whose sense follows from one rotation in
    the logical frame."""
    maps = {}
    for plane in ("axial", "sagittal", "coronal"):
        col = _image_frame_gradients(_ge_replanned(tmp_path / plane / "COL", plane, "COL"))
        row = _image_frame_gradients(_ge_replanned(tmp_path / plane / "ROW", plane, "ROW"))
        assert np.allclose(row[2], col[2], atol=1e-6), plane  # slice component unchanged
        # the 2x2 in-plane map taking the COL gradients to the ROW ones (least squares)
        m = np.linalg.lstsq(col[:2].T, row[:2].T, rcond=None)[0].T
        assert np.allclose(m @ col[:2], row[:2], atol=1e-6), plane
        assert np.allclose(m, [[0, m[0, 1]], [-m[0, 1], 0]], atol=1e-6), (plane, m)  # a turn
        assert np.isclose(abs(m[0, 1]), 1), (plane, m)
        maps[plane] = m
    assert np.allclose(maps["sagittal"], maps["axial"])
    assert np.allclose(maps["coronal"], -maps["axial"])  # the coronal frame's mirror


# --------------------------------------------------------------------------------------------
# UIH "grid" (VFRAME) files: one file per volume, its slices tiled like a Siemens mosaic


@needs_dcm2niix
def test_uih_grid_dti_unpacked_like_dcm2niix(tmp_path):
    """UIH uMR 770 DTI saved as grids (dcm_qa_uih, tiles cut to 16x16): ImageType VFRAME,
    (0065,1050) = 20 slices in 5 columns x 4 rows (UIH: columns = ceil(sqrt(n)), rows =
    ceil(n / columns), unlike Siemens' square grid), each slice's position only in the
    (0065,1051) MR VFrame Sequence, b-value (0065,1009) and gradient (0065,1037) private:
    16x16x20x3, the same voxels, bvals and world gradient directions as dcm2niix."""
    bvals, bvecs = dwi_agrees(DATA / "uih_dti_grid", tmp_path, (16, 16, 20, 3))
    assert np.allclose(bvals, [1.25126, 929.75, 929.75], atol=1e-4)
    assert not np.any(bvecs[:, 0]) and np.allclose(np.linalg.norm(bvecs[:, 1:], axis=0), 1)


def test_uih_grid_tiles_and_slice_positions():
    """Tile k of the grid is slice k at the k-th position of the VFrame sequence: the
    20 positions are 4.2 mm apart along the normal (SpacingBetweenSlices), slices ordered
    by position, the top-level file carrying no ImagePositionPatient at all."""
    import pydicom

    (s,) = scan(DATA / "uih_dti_grid")
    assert s.shape == (3, 20, 16, 16) and s.n_time == 3
    assert s.problems == ["4D: 3 volumes of 20 slices"]
    assert np.isclose(s.spacing[0], 4.2, atol=1e-3)
    first = sorted((DATA / "uih_dti_grid").iterdir())[0]
    ds = pydicom.dcmread(first)
    assert "ImagePositionPatient" not in ds
    grid = ds.pixel_array
    items = ds[0x00651051].value
    vol = read_volume_of(s)[0]
    for k in (0, 7, 19):  # tile k: grid row k // 5, column k % 5
        tile = grid[(k // 5) * 16:(k // 5 + 1) * 16, (k % 5) * 16:(k % 5 + 1) * 16]
        pos = np.array(items[k].ImagePositionPatient, float)
        z = int(np.argmin([np.linalg.norm(f.position - pos) for f in s.frames[:20]]))
        assert np.allclose(s.frames[z].position, pos)
        assert np.array_equal(vol[z], tile), k


def _uih_moved_to_block_11(src, out):
    """The UIH grid files with their "Image Private Header" block moved from (0065,10xx) to
    (0065,11xx), and another creator in block 0x10 whose (0065,1009)/(0065,1050) must not be
    taken for UIH's (a scanner or an archive may put the block anywhere, PS3.5 7.8.1)."""
    import pydicom

    out.mkdir()
    for path in sorted(src.iterdir()):
        ds = pydicom.dcmread(path)
        moved = [e for e in ds if e.tag.group == 0x0065]
        for e in moved:
            del ds[e.tag]
        for e in moved:
            elem = e.tag.element
            new = 0x0011 if elem == 0x0010 else (0x1100 | (elem & 0xFF))
            ds.add_new((0x0065 << 16) | new, e.VR, e.value)
        ds.add_new(0x00650010, "LO", "OTHER VENDOR BLOCK")
        ds.add_new(0x00651009, "FD", 12345.0)
        ds.add_new(0x00651050, "DS", "7")
        ds.save_as(out / path.name, enforce_file_format=True)
    return out


def test_uih_block_found_wherever_its_creator_is(tmp_path):
    """The fast parser reads UIH's private tags in the block its creator names (here 0x11,
    block 0x10 being another's): the b-values and gradients are pydicom's, and the grid is
    unpacked to the same 20 slices as when the block is 0x10."""
    import pydicom

    from napari_dicomtools.core import fastheader
    from napari_dicomtools.core.vendor import read_diffusion

    src = DATA / "uih_dti_grid"
    moved = _uih_moved_to_block_11(src, tmp_path / "moved")
    bvalues = []
    for path in sorted(moved.iterdir()):
        with open(path, "rb") as fp:
            fast = read_diffusion(fastheader.parse(fp, path.stat().st_size))
        assert fast == read_diffusion(pydicom.dcmread(path, stop_before_pixels=True))
        assert fast == read_diffusion(pydicom.dcmread(src / path.name, stop_before_pixels=True))
        bvalues.append(fast.bvalue)
    assert np.allclose(bvalues, [1.25126, 929.75, 929.75], atol=1e-4)
    (a,), (b,) = scan(src), scan(moved)
    assert a.shape == b.shape == (3, 20, 16, 16)
    assert a.diffusion == b.diffusion
    assert np.allclose([f.position for f in a.frames], [f.position for f in b.frames])


def read_volume_of(series):
    from napari_dicomtools import read_volume

    return np.asarray(read_volume(series).array)


# --------------------------------------------------------------------------------------------
# Siemens uncombined coil images: one series per coil, named _c<coil> as dcm2niix


def _siemens_uncombined(src, coils=("H1", "H2", "H3"), *, xa=False, n_slices=3):
    """A "save uncombined" series: every coil element images the same slices, all files one
    SeriesInstanceUID; the coil in CoilString (0051,100F) (classic), or, on XA, as the first
    ICE dimension of (0021,1106) (the coil number). Returns the (coil, slice, row, column)
    values."""
    import pydicom

    from napari_dicomtools.core.synthetic import write_series

    uid, frame, study = (pydicom.uid.generate_uid() for _ in range(3))
    truth = np.random.default_rng(3).integers(0, 900, (len(coils), n_slices, 10, 12))
    for c, coil in enumerate(coils):
        tr = write_series(src / f"c{c}", truth[c], modality="MR", intercept=0,
                          series_uid=uid, frame_uid=frame, study_uid=study, prefix=f"C{c}_",
                          seed=c, description="gre uncombined", window=None, series_number=7)
        for f in tr.files:
            ds = pydicom.dcmread(f)
            ds.Manufacturer = "SIEMENS"
            ds.ProtocolName = "gre uncombined"
            ds.InstanceNumber = c * n_slices + int(ds.InstanceNumber)
            if xa:  # XA's layout: creator (0021,0011), ICE dimensions (0021,1106)
                ds.add_new(0x00210011, "LO", "SIEMENS MR SDI 02")
                ds.add_new(0x00211106, "LO", f"{c + 1}_1_1_1_1_1_{ds.InstanceNumber}_1_1_1_1_1_2")
            else:
                block = ds.private_block(0x0051, "SIEMENS MR HEADER", create=True)
                block.add_new(0x0F, "LO", coil)
            ds.save_as(f)
    return truth


@needs_dcm2niix
@pytest.mark.parametrize("xa", [False, True])
def test_uncombined_coils_split_and_named_like_dcm2niix(tmp_path, xa):
    """One 3D volume per coil, named <series>_<protocol>_c<coil> (coil string, or the ICE
    coil number on XA), with that coil's voxels. dcm2niix does the same with ``-m o``; by
    default it stacks the coils as if they were time points and names the 4D file after the
    first coil only (dcm2niix issue 766), which is not a series of volumes in time."""
    truth = _siemens_uncombined(tmp_path / "src", xa=xa)
    ref, ours = tmp_path / "ref", tmp_path / "ours"
    ref.mkdir()
    r = subprocess.run([DCM2NIIX, "-m", "o", "-f", "%s_%p", "-z", "n", "-b", "n", "-v", "0",
                        "-o", str(ref), str(tmp_path / "src")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert main(["convert", str(tmp_path / "src"), str(ours), "-q", "--no-gzip"]) == 0
    names = sorted(p.name for p in ours.glob("*.nii"))
    coils = ["1", "2", "3"] if xa else ["H1", "H2", "H3"]
    assert names == [f"7_gre_uncombined_c{c}.nii" for c in coils]
    assert names == sorted(p.name for p in ref.glob("*.nii"))
    for c, name in enumerate(names):
        mine, theirs = nib.load(ours / name), nib.load(ref / name)
        assert_same_image(mine, theirs)
        assert np.array_equal(np.asarray(mine.dataobj).T, truth[c])


def test_one_coil_string_throughout_is_no_split(tmp_path):
    """A combined series carries one CoilString (e.g. HEA;HEP) in every file: no split and no
    _c suffix; ``%a`` in -f still names the coil."""
    _siemens_uncombined(tmp_path / "src", coils=("HEA;HEP",))
    (s,) = scan(tmp_path / "src")
    assert s.shape == (3, 10, 12) and not s.split
    assert main(["convert", str(tmp_path / "src"), str(tmp_path / "out"), "-q",
                 "-f", "%s_%a"]) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["7_HEA_HEP.nii.gz"]


def test_coil_changing_from_slice_to_slice_is_one_stack(tmp_path):
    """A combined series whose coil selection changes with the slice (a localizer: dcm2niix
    issue 766, 'H82' vs 'H12') has each position once: one stack, no _c suffix, where
    dcm2niix -m o would cut it into one-slice files."""
    import pydicom

    from napari_dicomtools.core.synthetic import write_series

    tr = write_series(tmp_path / "src", np.arange(3 * 10 * 12).reshape(3, 10, 12),
                      modality="MR", intercept=0, series_number=2, window=None)
    for k, f in enumerate(tr.files):
        ds = pydicom.dcmread(f)
        ds.Manufacturer = "SIEMENS"
        ds.private_block(0x0051, "SIEMENS MR HEADER", create=True).add_new(
            0x0F, "LO", f"H{k + 1}2")
        ds.save_as(f)
    (s,) = scan(tmp_path / "src")
    assert s.shape == (3, 10, 12) and not s.split


def test_read_diffusion_same_from_the_fast_parser_and_pydicom():
    """``vendor.read_diffusion`` on every real file here: pydicom's data set and the fast
    parser's give the same b-value and LPS gradient (GE and UIH from their private tags, in
    the image frame, Philips from its own), gradients are unit vectors (zero for b=0), and
    every file of each vendor's diffusion or ASL series gives its b-value."""
    import pydicom

    from napari_dicomtools.core import fastheader
    from napari_dicomtools.core.vendor import read_diffusion

    roots = (DATA, DATA.parent / "dcm_qa")
    files = sorted(p for r in roots for p in r.rglob("*") if p.is_file() and p.suffix != ".md"
                   and not p.name.startswith("LICENSE"))
    found: dict[str, int] = {}  # files with a b-value, per case
    weighted: set[str] = set()  # cases with a b > 50 volume
    compared = 0
    for path in files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except pydicom.errors.InvalidDicomError:
            continue
        ours = read_diffusion(ds)
        try:
            with open(path, "rb") as fp:
                fast = read_diffusion(fastheader.parse(fp, path.stat().st_size))
        except fastheader.Unsupported:  # enhanced files: pydicom reads them
            fast = ours
        else:
            compared += 1
        assert fast == ours, path
        if ours.gradient is not None and any(ours.gradient):  # zero: a b=0 volume
            assert abs(np.linalg.norm(ours.gradient) - 1) < 1e-6, (path, ours)
        case = path.relative_to(DATA.parent).parts[1]  # vendor/<case>, dcm_qa/<case>
        if ours.bvalue is not None:
            found[case] = found.get(case, 0) + 1
        if ours.bvalue and ours.bvalue > 50 and ours.gradient is not None:
            weighted.add(case)
    assert compared >= 60
    # Philips' ASL stores b=0 in every frame (its private (2001,1003)): found, not weighted
    assert found == {"ge_dwi_oblique": 14, "philips_3DpCASL_classic": 40, "uih_dti_grid": 3}
    assert weighted == {"ge_dwi_oblique", "uih_dti_grid"}
