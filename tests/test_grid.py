"""core.grid.Grid without napari: the view of every orientation maps back to the original
voxel and its true LPS position, NIfTI undoes the view, derived grids stay true."""

import numpy as np
import pytest

from napari_dicomtools.core.grid import Grid, box_bounds
from napari_dicomtools.core.synthetic import phantom, write_series
from napari_dicomtools.core.volume import read_volume

_C, _S = np.cos(np.radians(20)), np.sin(np.radians(20))
CASES = {
    "axial": ((1, 0, 0, 0, 1, 0), 0.0),
    "sagittal": ((0, 1, 0, 0, 0, -1), 0.0),
    "coronal": ((1, 0, 0, 0, 0, -1), 0.0),
    "oblique": ((_C, _S, 0, 0, 0, -1), 0.0),
    "tilted": ((1, 0, 0, 0, 1, 0), 18.0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_view_index_maps_to_original_voxel_and_true_lps(tmp_path, name):
    iop, tilt = CASES[name]
    write_series(tmp_path / name, phantom((10, 24, 20)), orientation=iop, tilt_deg=tilt,
                 spacing=(3.0, 0.75, 0.5), origin=(5.0, -7.0, 11.0))
    vol = read_volume(tmp_path / name)
    g = Grid.for_volume(vol.spacing, vol.origin, vol.direction, vol.array.shape)
    view = g.display.apply(vol.array)
    assert view.shape == g.shape
    rng = np.random.default_rng(0)
    for _ in range(10):
        vi = np.array([rng.integers(0, n) for n in view.shape])
        oi = g.original_index(vi).astype(int)
        assert view[tuple(vi)] == vol.array[tuple(oi)]
        assert np.allclose(g.lps(vi), (vol.affine_lps @ np.r_[oi[::-1], 1])[:3])
        assert np.allclose(g.index(g.lps(vi)), vi)
    arr, aff = g.nifti(view)
    assert np.array_equal(arr, vol.array) and np.allclose(aff, vol.affine_ras)
    # |det| of the true affine: the sheared (tilted) voxel is cos(tilt) smaller
    assert g.voxel_volume_mm3 == pytest.approx(abs(np.linalg.det(vol.affine_lps[:3, :3])))
    same = Grid.from_metadata({"grid": g.to_metadata()}, view.shape, g.scale, g.translate)
    assert same is not None and np.allclose(same.index_to_lps, g.index_to_lps)
    assert Grid.from_metadata({"grid": g.to_metadata()}, view.shape,
                              np.asarray(g.scale) * 2, g.translate) is None
    exact = name in ("axial", "sagittal", "coronal")
    assert (g.display_error_mm < 1e-6) == exact


def test_derived_grid_composes_the_display_change_with_the_truth():
    g = Grid.axis_aligned((2.0, 1.0, 1.0), (10.0, 20.0, 30.0), (8, 16, 16))
    crop = g.derive((4, 8, 8), (2.0, 1.0, 1.0), (14.0, 22.0, 33.0))  # starts at (2, 2, 3)
    assert np.allclose(crop.lps([0, 0, 0]), g.lps([2, 2, 3]))
    lo, hi = box_bounds(g.index_to_lps, [0, 0, 0], [8, 16, 16])
    assert np.allclose(lo, [29.5, 19.5, 9.0]) and np.allclose(hi, [45.5, 35.5, 25.0])
