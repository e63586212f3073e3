"""Series with gaps tell the truth in the viewer, and a scout does not decide the view plane
(issue: tester s8, A and B)."""

from __future__ import annotations

import pytest

from napari_dicomtools._viewer import current_plane, set_plane
from napari_dicomtools.core.synthetic import phantom, write_series

STUDY = "1.2.826.0.1.3680043.9.7.21"
FRAME = "1.2.826.0.1.3680043.9.7.22"


def _process_events():
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()


def _scout_and_ct(root):
    """One study and frame of reference: series 1 a single coronal topogram slice covering
    the body, series 2 an axial CT volume."""
    write_series(root / "scout", phantom((1, 96, 64)), spacing=(1.0, 1.5, 1.0),
                 orientation=(1, 0, 0, 0, 0, -1), origin=(-32.0, 0.0, 40.0),
                 series_number=1, description="Topogram", study_uid=STUDY, frame_uid=FRAME)
    write_series(root / "ct", phantom((20, 48, 48)), spacing=(2.5, 1.0, 1.0),
                 origin=(-24.0, -24.0, -40.0), series_number=2, description="Axial CT",
                 study_uid=STUDY, frame_uid=FRAME)


def test_a_scout_opened_with_its_ct_does_not_decide_the_plane(make_napari_viewer, tmp_path):
    """The folder opens axially, the slider over the CT's 20 slices, as the CT alone does."""
    _scout_and_ct(tmp_path / "study")
    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path / "study"), plugin="napari-dicomtools")
    _process_events()
    assert sorted(lay.data.shape for lay in layers) == [(20, 48, 48), (96, 1, 64)]
    assert current_plane(viewer) == "axial"
    assert viewer.dims.order == (0, 1, 2)
    assert viewer.dims.axis_labels[viewer.dims.order[0]] == "S-I (z)"


def test_a_scout_alone_opens_in_its_own_plane(make_napari_viewer, tmp_path):
    write_series(tmp_path / "scout", phantom((1, 96, 64)), spacing=(1.0, 1.5, 1.0),
                 orientation=(1, 0, 0, 0, 0, -1), series_number=1)
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "scout"), plugin="napari-dicomtools")
    assert current_plane(viewer) == "coronal"


@pytest.mark.parametrize("choice", ["sagittal", "3D"])
def test_the_users_plane_is_kept_when_a_series_is_added(make_napari_viewer, tmp_path, choice):
    """A scout opened first: the user picks a view; the CT opened after it does not undo it."""
    _scout_and_ct(tmp_path / "study")
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "study" / "scout"), plugin="napari-dicomtools")
    assert current_plane(viewer) == "coronal"
    if choice == "3D":
        viewer.dims.ndisplay = 3
    else:
        set_plane(viewer, choice)
    viewer.open(str(tmp_path / "study" / "ct"), plugin="napari-dicomtools")
    _process_events()
    if choice == "3D":
        assert viewer.dims.ndisplay == 3
    else:
        assert current_plane(viewer) == choice


def test_a_volume_opened_after_its_scout_takes_over_the_plane(make_napari_viewer, tmp_path):
    """Nobody chose a plane: the CT opened after its scout is shown axially."""
    _scout_and_ct(tmp_path / "study")
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "study" / "scout"), plugin="napari-dicomtools")
    viewer.open(str(tmp_path / "study" / "ct"), plugin="napari-dicomtools")
    assert current_plane(viewer) == "axial"
