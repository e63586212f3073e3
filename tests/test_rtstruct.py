"""RT Structure Sets: contours rasterised onto the reference grid (even-odd holes, pixel
centres inside), labels -> RTSTRUCT -> labels with Dice >= 0.99, pydicom's rtstruct.dcm,
dciodvfy-clean output, bad input (issue 15)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from napari_dicomtools.core.errors import DicomToolsError
from napari_dicomtools.core.rtstruct import read_rtstruct, slice_contours, write_rtstruct
from napari_dicomtools.core.synthetic import phantom, write_series
from napari_dicomtools.core.volume import read_volume

SHAPE = (24, 48, 48)


def _structures(shape=SHAPE):
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    lab = np.zeros(shape, np.uint8)
    lab[((z - 12) ** 2 + (y - 20) ** 2 + (x - 16) ** 2) <= 64] = 1  # a ball
    r2 = (y - 30) ** 2 + (x - 33) ** 2
    lab[(r2 <= 100) & (r2 > 16) & (z > 4) & (z < 18)] = 2  # a tube: a hole on every slice
    return lab


def dice(a, b) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture
def ct(tmp_path):
    write_series(tmp_path / "ct", phantom(SHAPE), spacing=(1.0, 1.0, 1.0))
    return tmp_path / "ct"


@pytest.mark.parametrize("kind", ["axial", "tilted"])
def test_round_trip_dice_and_volume(dciodvfy_errors, tmp_path, kind):
    kw = {"axial": {}, "tilted": {"tilt_deg": 15.0}}[kind]
    write_series(tmp_path / "ct", phantom(SHAPE), spacing=(1.0, 1.0, 1.0), **kw)
    lab = _structures()
    out = write_rtstruct(lab, tmp_path / "ct", tmp_path / "out" / "rt.dcm",
                         segments={1: "ball", 2: {"label": "tube", "color": (0, 255, 0),
                                                  "interpreted_type": "organ"}})
    got = read_rtstruct(out, reference=tmp_path / "ct")
    assert got.metadata["on_reference"] and got.metadata["problems"] == []
    vol = read_volume(tmp_path / "ct")
    np.testing.assert_allclose(got.affine_lps, vol.affine_lps, atol=1e-6)
    for n in (1, 2):
        want = lab == n
        assert dice(got.mask(n), want) >= 0.99
        assert abs(got.mask(n).sum() - want.sum()) <= 0.01 * want.sum()  # volume within 1 %
    assert [(s.number, s.label) for s in got.segments] == [(1, "ball"), (2, "tube")]
    assert got.segment(2).color == (0, 255, 0) and got.segment(2).type[2] == "ORGAN"
    assert dciodvfy_errors(out) == []
    ds = pydicom.dcmread(out)
    assert ds.Modality == "RTSTRUCT"
    # every contour is planar, lies in its slice's plane and references that slice's image
    sops = {pydicom.dcmread(f).SOPInstanceUID for f in vol.metadata["files"]}
    for c in ds.ROIContourSequence[1].ContourSequence:
        assert c.ContourGeometricType == "CLOSED_PLANAR"
        assert c.ContourImageSequence[0].ReferencedSOPInstanceUID in sops


def test_holes_are_even_odd_and_pixel_centres_decide():
    # a 10x10 square with a 4x4 hole: two contours on one slice
    m = np.zeros((16, 16), bool)
    m[3:13, 3:13] = True
    m[6:10, 6:10] = False
    contours = slice_contours(m)
    assert len(contours) == 2
    from skimage.draw import polygon

    acc = np.zeros_like(m)
    for c in contours:
        hit = np.zeros_like(m)
        rr, cc = polygon(c[:, 0], c[:, 1], m.shape)
        hit[rr, cc] = True
        acc ^= hit
    assert np.array_equal(acc, m)


def test_pydicom_rtstruct_opens_on_its_own_grid():
    path = get_testdata_file("rtstruct.dcm")
    got = read_rtstruct(path)
    assert [(s.number, s.label) for s in got.segments] == [
        (1, "patient"), (2, "Isocenter 1"), (3, "Isocenter 2")]
    assert got.segment(1).color == (220, 160, 120)
    # 'patient': a 400 x 300 mm rectangle on the planes z = -200, -190, -180 mm
    assert got.spacing == (10.0, 1.0, 1.0)
    assert got.shape[0] == 3 and got.origin[2] == -200.0
    per_slice = got.mask(1).sum(axis=(1, 2))
    # pixel centres on the edges count as inside: 401 x 301 of them
    assert per_slice.tolist() == [401 * 301] * 3
    idx = np.argwhere(got.mask(1))
    lps = idx[:, ::-1] @ got.affine_lps[:3, :3].T + got.affine_lps[:3, 3]
    np.testing.assert_allclose(lps.min(0), [-200, -150, -200])
    np.testing.assert_allclose(lps.max(0), [200, 150, -180])
    # the POINT ROIs (isocentres) are in the table but have no voxels
    assert got.groups == [[1]]
    with pytest.raises(KeyError):
        got.mask(2)


def test_contours_off_the_image_planes_are_skipped_with_a_warning(tmp_path, ct):
    lab = _structures()
    out = write_rtstruct(lab, ct, tmp_path / "rt.dcm")
    ds = pydicom.dcmread(out)
    c = ds.ROIContourSequence[0].ContourSequence[0]
    pts = np.asarray([float(v) for v in c.ContourData]).reshape(-1, 3)
    pts[:, 2] += 0.5  # half-way between two slices
    c.ContourData = [f"{v:.4f}" for v in pts.ravel()]
    ds.save_as(tmp_path / "moved.dcm")
    with pytest.warns(UserWarning, match="off the image planes"):
        got = read_rtstruct(tmp_path / "moved.dcm", reference=ct)
    assert any("off the image planes" in p for p in got.metadata["problems"])
    assert dice(got.mask(1), lab == 1) > 0.9  # the others still land in place


def test_bad_structure_sets_are_clear_errors(tmp_path, ct):
    out = write_rtstruct(_structures(), ct, tmp_path / "rt.dcm")
    ds = pydicom.dcmread(out)
    for rc in ds.ROIContourSequence:
        del rc.ContourSequence
    ds.save_as(tmp_path / "empty.dcm")
    with pytest.raises(DicomToolsError, match="no closed planar contours"):
        read_rtstruct(tmp_path / "empty.dcm", reference=ct)
    with pytest.raises(DicomToolsError, match="not an RT Structure Set"):
        read_rtstruct(next(ct.iterdir()))
    with pytest.raises(DicomToolsError, match="empty"):
        write_rtstruct(np.zeros(SHAPE, np.uint8), ct, tmp_path / "e.dcm")
    with pytest.raises(DicomToolsError, match="exists"):
        write_rtstruct(_structures(), ct, out)
    with pytest.raises(DicomToolsError, match="source"):
        write_rtstruct(_structures(), ct, ct / "rt.dcm")


def test_cli_rtstruct_both_ways(tmp_path, ct, capsys):
    import nibabel as nib

    from napari_dicomtools.cli import main

    assert main(["convert", str(ct), str(tmp_path / "ct.nii.gz"), "-q"]) == 0
    aff = nib.load(tmp_path / "ct.nii.gz").affine
    lab = _structures()
    nib.save(nib.Nifti1Image(lab.T, aff), tmp_path / "lab.nii.gz")
    out = tmp_path / "o" / "rt.dcm"
    assert main(["rtstruct", str(tmp_path / "lab.nii.gz"), "--reference", str(ct), str(out),
                 "--names", "ball,tube", "--types", "organ,gtv"]) == 0
    assert "RTSTRUCT of 2 ROI(s)" in capsys.readouterr().out
    got = read_rtstruct(out, reference=ct)
    assert [(s.label, s.type[2]) for s in got.segments] == [("ball", "ORGAN"), ("tube", "GTV")]
    assert main(["rtstruct", str(out), str(tmp_path / "back.nii.gz"), "--reference",
                 str(ct)]) == 0
    back = nib.load(tmp_path / "back.nii.gz")
    np.testing.assert_allclose(back.affine, aff, atol=1e-5)
    for n in (1, 2):
        assert dice(np.asarray(back.dataobj).T == n, lab == n) >= 0.99
    capsys.readouterr()
    assert main(["rtstruct", str(tmp_path / "lab.nii.gz"), "--reference", str(ct),
                 str(out)]) == 1
    assert "exists" in capsys.readouterr().err


def test_coronal_contours_without_images_get_a_coronal_grid_at_the_same_place(tmp_path):
    write_series(tmp_path / "ct", phantom(SHAPE), spacing=(2.0, 1.0, 1.0),
                 orientation=(1, 0, 0, 0, 0, -1))
    lab = _structures()
    out = write_rtstruct(lab, tmp_path / "ct", tmp_path / "rt.dcm")
    alone = read_rtstruct(out)
    placed = read_rtstruct(out, reference=tmp_path / "ct")
    assert not alone.metadata["on_reference"] and placed.metadata["on_reference"]
    np.testing.assert_allclose(alone.direction, placed.direction, atol=1e-9)
    for n in (1, 2):
        pa = np.argwhere(alone.mask(n))[:, ::-1] @ alone.affine_lps[:3, :3].T + \
            alone.affine_lps[:3, 3]
        pb = np.argwhere(placed.mask(n))[:, ::-1] @ placed.affine_lps[:3, :3].T + \
            placed.affine_lps[:3, 3]
        np.testing.assert_allclose(np.sort(pa, axis=0), np.sort(pb, axis=0), atol=1e-4)


def test_pydicom_rtdose_reads_in_dose_units_on_its_own_grid():
    """RT dose (issue 15): DoseGridScaling applied, slices from GridFrameOffsetVector."""
    path = get_testdata_file("rtdose.dcm")
    ds = pydicom.dcmread(path, force=True)
    vol = read_volume(path)
    np.testing.assert_allclose(np.asarray(vol.array),
                               ds.pixel_array * float(ds.DoseGridScaling), rtol=1e-6)
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    assert vol.spacing == (offsets[1] - offsets[0], 10.0, 10.0)
    np.testing.assert_allclose(vol.origin, [float(v) for v in ds.ImagePositionPatient])
    assert vol.metadata["units"] == ds.DoseUnits


def test_contours_as_shapes_lie_on_the_slices_of_the_coronal_series(make_napari_viewer,
                                                                    tmp_path):
    """Off by default; on request each closed contour is a polygon in world mm on the
    slice of the referenced (coronal: shown through a transposed view) series it was drawn
    on, and the polygons enclose the pixels of the labels layer on that slice."""
    from skimage.draw import polygon as fill

    from napari_dicomtools._reader import read_dicom

    shape = (10, 24, 28)
    write_series(tmp_path / "study" / "ct", phantom(shape), spacing=(2.0, 0.7, 0.8),
                 orientation=(1, 0, 0, 0, 0, -1))
    lab = np.zeros(shape, np.uint8)
    lab[2:6, 4:14, 5:20] = 1
    lab[7:9, 12:20, 3:12] = 2
    write_rtstruct(lab, tmp_path / "study" / "ct", tmp_path / "study" / "rt.dcm",
                   segments={1: "liver", 2: {"label": "tumour", "color": (255, 0, 0)}})
    assert [t for *_, t in read_dicom(str(tmp_path / "study"))] == ["image", "labels"]
    viewer = make_napari_viewer()
    layers = [getattr(viewer, f"add_{t}")(d, **kw) for d, kw, t in
              read_dicom(str(tmp_path / "study"), rtstruct_contours=True)]
    image, labels, shapes = layers
    assert type(shapes).__name__ == "Shapes" and shapes.name.endswith("contours")
    assert sorted(set(shapes.features["label"])) == ["liver", "tumour"]
    np.testing.assert_allclose(shapes.edge_color[list(shapes.features["label"]).index(
        "tumour")], [1, 0, 0, 1])
    axis = None
    got = np.zeros(labels.data.shape, np.uint8)
    for poly, roi in zip(shapes.data, shapes.features["roi"], strict=True):
        world = np.asarray([shapes.data_to_world(p) for p in poly])
        idx = np.asarray([labels.world_to_data(w) for w in world])
        const = [a for a in range(3) if np.ptp(idx[:, a]) < 1e-6]
        assert len(const) == 1  # planar, in a plane of constant index
        axis = const[0]
        k = idx[0, axis]
        assert k == pytest.approx(round(k), abs=1e-6)  # on a slice, not between two
        a, b = (x for x in range(3) if x != axis)
        rr, cc = fill(idx[:, a], idx[:, b], (labels.data.shape[a], labels.data.shape[b]))
        plane = [slice(None)] * 3
        plane[axis] = int(round(k))
        view = got[tuple(plane)]
        view[rr, cc] ^= np.uint8(roi)  # even-odd, as the rasteriser
    assert axis == 1  # coronal: the acquired slices run along world y
    np.testing.assert_array_equal(got, np.asarray(labels.data))
    # napari shows each polygon on its slice only
    k = int(round(labels.world_to_data(shapes.data_to_world(shapes.data[0][0]))[1]))
    viewer.dims.set_point(1, image.data_to_world((0, k, 0))[1])
    shown = np.flatnonzero(shapes._data_view._displayed)
    assert 0 in shown and 0 < len(shown) < len(shapes.data)
    for i in shown:
        assert labels.world_to_data(shapes.data_to_world(shapes.data[i][0]))[1] == \
            pytest.approx(k)


def test_segment_specs_are_not_consumed(tmp_path, ct):
    """The caller's specs are read, never changed: writing twice with one dict gives the
    interpreted type both times (write_rtstruct used to pop it out of the caller's dict)."""
    lab = np.zeros(SHAPE, np.uint8)
    lab[5:9, 10:20, 10:20] = 1
    specs = {1: {"label": "tumour", "interpreted_type": "GTV"}}
    for name in ("a", "b"):
        out = write_rtstruct(lab, ct, tmp_path / name / "rt.dcm", segments=specs)
        ds = pydicom.dcmread(out)
        assert ds.RTROIObservationsSequence[0].RTROIInterpretedType == "GTV"
    assert specs == {1: {"label": "tumour", "interpreted_type": "GTV"}}
