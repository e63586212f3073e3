import numpy as np
import pytest

from napari_dicomtools.core import geometry

AXIAL = (1, 0, 0, 0, 1, 0)
CORONAL = (1, 0, 0, 0, 0, -1)
SAGITTAL = (0, 1, 0, 0, 0, -1)


@pytest.mark.parametrize("iop,label", [(AXIAL, "axial"), (CORONAL, "coronal"),
                                       (SAGITTAL, "sagittal"),
                                       ((0.9, 0.1, 0.2, -0.1, 0.95, 0.3), "oblique")])
def test_orientation_label(iop, label):
    assert geometry.orientation_label(iop) == label


def test_order_ignores_input_order_and_finds_spacing():
    z = np.array([5.0, -2.5, 0.0, 2.5, 7.5, 10.0])
    pos = np.column_stack([np.zeros(6), np.zeros(6), z])
    so = geometry.order_slices(pos, AXIAL)
    assert list(z[so.order]) == sorted(z)
    assert so.spacing == pytest.approx(2.5)
    assert so.uniform and so.problems == [] and so.tilt_deg == 0


def test_order_uses_normal_not_z_for_sagittal():
    # sagittal: slices step along x; the normal of (0,1,0)x(0,0,-1) is (-1,0,0)
    x = np.array([3.0, 1.0, 2.0, 0.0])
    pos = np.column_stack([x, np.zeros(4), np.zeros(4)])
    so = geometry.order_slices(pos, SAGITTAL)
    assert list(x[so.order]) == [3.0, 2.0, 1.0, 0.0]  # ascending along the normal (-x)


def test_gap_and_duplicate_are_reported():
    z = np.array([0, 1, 2, 4, 5, 5.0])
    pos = np.column_stack([np.zeros(6), np.zeros(6), z])
    so = geometry.order_slices(pos, AXIAL)
    text = " ".join(so.problems)
    assert "duplicate" in text and "gap" in text
    assert not so.uniform
    assert so.spacing == pytest.approx(1.0)


def test_tilt_is_measured():
    k = np.arange(10.0)
    tilt = np.deg2rad(20)
    pos = np.column_stack([np.zeros(10), k * 2 * np.tan(tilt), k * 2])
    so = geometry.order_slices(pos, AXIAL)
    assert so.tilt_deg == pytest.approx(20, abs=1e-6)
    assert any("tilt" in p for p in so.problems)
    assert so.spacing == pytest.approx(2 / np.cos(tilt))


def _check_display(spacing, origin, direction, shape):
    """Every voxel of the display view lands where the true affine puts it (axis-aligned)."""
    dt = geometry.display_transform(spacing, origin, direction, shape)
    wa = geometry.world_affine(spacing, origin, direction)
    idx = np.indices(shape).reshape(3, -1).T
    # the original index of each display voxel
    arr = np.arange(np.prod(shape)).reshape(shape)
    view = dt.apply(arr)
    vidx = np.indices(view.shape).reshape(3, -1).T
    orig = np.column_stack(np.unravel_index(view.reshape(-1), shape))
    world_true = (wa @ np.column_stack([orig, np.ones(len(orig))]).T).T[:, :3]
    world_disp = vidx * np.array(dt.scale) + np.array(dt.translate)
    assert np.allclose(world_true, world_disp, atol=1e-6)
    return dt, idx


@pytest.mark.parametrize("iop", [AXIAL, CORONAL, SAGITTAL, (-1, 0, 0, 0, -1, 0),
                                 (0, -1, 0, 0, 0, -1)])
def test_display_transform_is_exact_for_axis_aligned(iop):
    d = geometry.direction_matrix(iop)
    dt, _ = _check_display((2.0, 0.5, 0.7), (10.0, -20.0, 30.0), d, (4, 5, 6))
    assert all(s > 0 for s in dt.scale)
    assert dt.residual_deg == pytest.approx(0, abs=1e-9)


def test_affine_ras_flips_x_and_y():
    d = geometry.direction_matrix(AXIAL)
    a = geometry.affine_ras((3.0, 0.5, 0.25), (1.0, 2.0, 3.0), d)
    assert np.allclose(a, [[-0.25, 0, 0, -1], [0, -0.5, 0, -2], [0, 0, 3, 3], [0, 0, 0, 1]])


@pytest.mark.parametrize("iop", [AXIAL, CORONAL, SAGITTAL, (0, -1, 0, 0, 0, -1)])
def test_display_transform_inverts(iop):
    d = geometry.direction_matrix(iop)
    dt = geometry.display_transform((2.0, 0.5, 0.7), (1, 2, 3), d, (4, 5, 6))
    arr = np.arange(2 * 4 * 5 * 6).reshape(2, 4, 5, 6)
    view = dt.apply(arr, leading=1)
    assert np.array_equal(dt.invert(view, leading=1), arr)


@pytest.mark.parametrize("iop", [AXIAL, CORONAL, SAGITTAL])
def test_display_transform_holds_plain_values(iop):
    """The reader copies axes and flips into a layer's metadata: plain Python values, so
    the metadata can be saved as JSON (flips were numpy bools)."""
    import dataclasses
    import json

    d = geometry.direction_matrix(iop)
    dt = geometry.display_transform((2.0, 0.5, 0.7), (1, 2, 3), d, (4, 5, 6))
    assert all(type(f) is bool for f in dt.flips)
    assert all(type(a) is int for a in dt.axes)
    assert json.loads(json.dumps(dataclasses.asdict(dt)))["flips"] == list(dt.flips)


@pytest.mark.parametrize("z, expected", [
    # three slices, one missing: the median step (3.75 mm) falls between step and gap
    ([0, 2.5, 7.5], "usual step is 2.5 mm (about 1 missing slice(s))"),
    ([0, 3, 6, 9, 15, 18], "usual step is 3 mm (about 1 missing slice(s))"),
    ([0, 2.5, 5, 12.5], "usual step is 2.5 mm (about 2 missing slice(s))"),
])
def test_gap_message_names_the_true_step_and_missing_slices(z, expected):
    o = geometry.order_slices([[0, 0, v] for v in z], [1, 0, 0, 0, 1, 0])
    gaps = [p for p in o.problems if p.startswith("gap(s)")]
    assert len(gaps) == 1 and gaps[0].endswith(expected), o.problems
    assert not any(p.startswith("non-uniform") for p in o.problems), o.problems


def test_a_longer_step_short_of_a_slice_is_non_uniform_not_a_gap():
    o = geometry.order_slices([[0, 0, v] for v in (0, 2.5, 5.5, 8)], [1, 0, 0, 0, 1, 0])
    assert not o.uniform
    assert o.problems == ["non-uniform slice spacing: steps from 2.5 to 3 mm"]


def test_aligned_orientation_is_nibabels_answer_without_importing_it():
    """display_transform reads the orientation of axis-aligned data off the affine (no
    nibabel import): the same answer as io_orientation for all 48 signed permutations,
    exact or with float noise, any spacing; oblique data goes to nibabel."""
    import itertools

    from nibabel.orientations import io_orientation

    from napari_dicomtools.core.geometry import _aligned_orientation

    rng = np.random.default_rng(0)
    n = 0
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = np.zeros((3, 3))
            m[list(perm), range(3)] = signs
            for noise in (0.0, 1e-12):
                aff = np.eye(4)
                aff[:3, :3] = (m + noise * rng.standard_normal((3, 3))) \
                    * rng.uniform(0.2, 5.0, 3)
                aff[:3, 3] = rng.uniform(-100, 100, 3)
                assert np.array_equal(_aligned_orientation(aff), io_orientation(aff))
                n += 1
    assert n == 96
    t = np.radians(0.01)  # oblique by 0.01 degree: nibabel's call
    tilted = np.eye(4)
    tilted[:3, :3] = [[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]]
    assert _aligned_orientation(tilted) is None
    assert _aligned_orientation(np.diag([1.0, 0.0, 1.0, 1.0])) is None  # degenerate
