"""The napari side: reader contribution, layers in patient mm, sample data, browser widget."""

import os
import subprocess
import sys
import zipfile

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from napari_dicomtools._reader import napari_get_reader, read_dicom, volume_to_layer_data
from napari_dicomtools.core import geometry
from napari_dicomtools.core.errors import DicomToolsError
from napari_dicomtools.core.synthetic import phantom, write_series

SAGITTAL = (0, 1, 0, 0, 0, -1)
CORONAL = (1, 0, 0, 0, 0, -1)


def test_get_reader_declines_what_is_not_dicom(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)
    assert napari_get_reader(str(tmp_path / "a.txt")) is None
    assert napari_get_reader(str(tmp_path / "b.png")) is None
    assert napari_get_reader(str(tmp_path)) is None
    assert napari_get_reader(str(tmp_path / "missing.dcm")) is None
    z = tmp_path / "x.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a.txt", "hello")
    assert napari_get_reader(str(z)) is None


def test_get_reader_accepts_file_folder_zip(ct_folder, tmp_path):
    folder, truth = ct_folder
    z = tmp_path / "ct.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in truth.files:
            zf.write(f, os.path.basename(f))
    for p in (truth.files[0], str(folder), str(z), [truth.files[0], truth.files[1]]):
        assert callable(napari_get_reader(p)), p


def _world_of_display_voxel(kwargs, idx):
    return np.asarray(idx) * np.asarray(kwargs["scale"]) + np.asarray(kwargs["translate"])


@pytest.mark.parametrize("iop", [(1, 0, 0, 0, 1, 0), CORONAL, SAGITTAL])
def test_layer_voxels_sit_at_patient_mm(tmp_path, iop):
    """Each displayed voxel's world coordinate is its true LPS position (z, y, x)."""
    truth = write_series(tmp_path / "s", phantom((10, 24, 20)), orientation=iop,
                         spacing=(3.0, 0.75, 0.5), origin=(5.0, -7.0, 11.0))
    (data, kwargs, kind), = read_dicom(str(tmp_path / "s"))
    assert kind == "image" and kwargs["colormap"] == "gray"
    assert kwargs["contrast_limits"] == [40 - 200, 40 + 200]
    dt = kwargs["metadata"]["display_transform"]
    wa = geometry.world_affine(truth.spacing, truth.origin, truth.direction)
    rng = np.random.default_rng(1)
    for _ in range(20):
        didx = [int(rng.integers(0, n)) for n in data.shape]
        # map the display index back to the original (slice,row,col) index
        orig = [0, 0, 0]
        for w in range(3):
            k = dt["axes"][w]
            orig[k] = truth.values.shape[k] - 1 - didx[w] if dt["flips"][w] else didx[w]
        assert data[tuple(didx)] == truth.values[tuple(orig)]
        expect = (wa @ np.append(orig, 1))[:3]
        assert np.allclose(_world_of_display_voxel(kwargs, didx), expect, atol=1e-6)
    assert np.allclose(kwargs["metadata"]["affine_lps"], truth.affine_lps, atol=1e-6)


def test_npe2_read_uses_our_reader(ct_folder):
    npe2 = pytest.importorskip("npe2")
    folder, truth = ct_folder
    npe2.PluginManager.instance().discover()
    layers = npe2.read([str(folder)], plugin_name="napari-dicomtools", stack=False)
    assert len(layers) == 1
    data, kwargs, kind = layers[0]
    assert np.array_equal(np.asarray(data), truth.values)


def test_npe2_manifest_validates():
    r = subprocess.run([sys.executable, "-m", "npe2", "validate", "napari-dicomtools"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_core_and_cli_import_without_qt_or_napari():
    code = ("import sys, napari_dicomtools, napari_dicomtools.core.synthetic, "
            "napari_dicomtools.cli, napari_dicomtools.core.volume; "
            "bad=[m for m in ('qtpy','PyQt5','PyQt6','PySide6','napari') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_2d_image_without_geometry_is_a_2d_layer(tmp_path):
    truth = write_series(tmp_path / "x", phantom((1, 30, 40)), modality="DX")
    f = truth.files[0]
    ds = pydicom.dcmread(f)
    del ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing
    ds.ImagerPixelSpacing = [0.2, 0.15]
    ds.save_as(f)
    (data, kwargs, _), = read_dicom(f)
    assert data.shape == (30, 40)
    assert kwargs["scale"] == (0.2, 0.15)


def test_rgb_file_is_an_rgb_layer():
    (data, kwargs, _), = read_dicom(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm"))
    assert kwargs["rgb"] and data.shape[-1] == 3


def test_viewer_opens_folder_with_geometry(make_napari_viewer, ct_folder):
    folder, truth = ct_folder
    viewer = make_napari_viewer()
    layers = viewer.open(str(folder), plugin="napari-dicomtools")
    assert len(layers) == 1
    layer = layers[0]
    assert layer.name == "3 Synthetic phantom"
    assert np.allclose(layer.scale, (1.25, 0.7, 0.7))
    assert np.allclose(layer.translate, truth.origin[::-1])
    assert tuple(layer.contrast_limits) == (-160, 240)
    assert layer.metadata["units"] == "HU"
    assert [str(u) for u in layer.units] == ["millimeter"] * 3
    # a world point inside the volume reads the right HU
    z, y, x = 10, 20, 30
    world = np.array([z, y, x]) * (1.25, 0.7, 0.7) + truth.origin[::-1]
    assert np.allclose(layer.world_to_data(world), (z, y, x))
    viewer.dims.point = world
    assert layer.get_value(world, world=True) == truth.values[z, y, x]


def test_series_of_one_frame_of_reference_overlay(make_napari_viewer, tmp_path):
    """An axial and a sagittal acquisition of the same object agree at every world point."""
    n = 20
    cube = phantom((n, n, n), noise=0)  # isotropic 1 mm cube: the same object either way
    frame = pydicom.uid.generate_uid()
    write_series(tmp_path / "ax", cube, spacing=(1, 1, 1), origin=(0, 0, 0), frame_uid=frame)
    # the sagittal acquisition of the same voxels: slices along x, rows along -z, cols along y
    # slice k sits at x = n-1-k (the normal is -x), row r at z = n-1-r, column c at y = c
    sag = cube.transpose(2, 0, 1)[::-1, ::-1, :]
    write_series(tmp_path / "sag", sag, spacing=(1, 1, 1), orientation=SAGITTAL,
                 origin=(n - 1, 0, n - 1), frame_uid=frame, series_number=4)
    viewer = make_napari_viewer()
    ax = viewer.open(str(tmp_path / "ax"), plugin="napari-dicomtools")[0]
    sg = viewer.open(str(tmp_path / "sag"), plugin="napari-dicomtools")[0]
    # sagittal IOP normal is -x, so the view flips; values must still coincide in the world
    assert sg.data.shape == ax.data.shape
    rng = np.random.default_rng(0)
    for _ in range(30):
        p = rng.integers(0, n, 3).astype(float)
        viewer.dims.point = p
        a, b = ax.get_value(p, world=True), sg.get_value(p, world=True)
        assert a is not None and a == b, p
        assert a == cube[tuple(int(v) for v in p)]


def test_sample_data_opens(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-dicomtools", "phantom")
    viewer.open_sample("napari-dicomtools", "ct")
    names = [lay.name for lay in viewer.layers]
    assert names[0] == "3 Synthetic CT phantom" and len(names) == 2
    ph = viewer.layers[0]
    assert ph.data.shape == (60, 160, 160) and ph.data.dtype == np.int16
    ct = viewer.layers[1]
    assert ct.metadata["units"] == "HU" and ct.data.min() < -500


def test_screenshot_shows_the_phantom(make_napari_viewer, ct_folder):
    folder, _ = ct_folder
    viewer = make_napari_viewer()
    viewer.open(str(folder), plugin="napari-dicomtools")
    # a hidden viewer's canvas is first drawn by a window grab; then the canvas grab is real
    viewer.screenshot(canvas_only=False, flash=False)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    gray = shot[..., :3].mean(axis=-1)
    # air (black), soft tissue (mid grey), bone (white) all appear
    assert (gray < 20).mean() > 0.05 and ((gray > 60) & (gray < 200)).mean() > 0.05
    assert (gray > 240).mean() > 0.001


def test_lazy_layer_for_large_series(make_napari_viewer, ct_folder, monkeypatch):
    import napari_dicomtools._reader as reader

    monkeypatch.setattr(reader, "LAZY_THRESHOLD", 1)
    folder, truth = ct_folder
    viewer = make_napari_viewer()
    layer = viewer.open(str(folder), plugin="napari-dicomtools")[0]
    assert type(layer.data).__module__.startswith("dask")
    assert np.array_equal(np.asarray(layer.data[5]), truth.values[5])


def test_browser_lists_and_opens_series(make_napari_viewer, qtbot, make_series, tmp_path):
    from napari_dicomtools._widgets import DicomBrowser

    study = pydicom.uid.generate_uid()
    make_series("p/one", series_number=1, description="first", study_uid=study)
    make_series("p/two", series_number=2, description="second", study_uid=study)
    (tmp_path / "p" / "junk.bin").write_bytes(b"junk" * 100)
    viewer = make_napari_viewer()
    w = DicomBrowser(viewer)
    w.scan(str(tmp_path / "p"))
    qtbot.waitUntil(lambda: len(w.series) == 2, timeout=20000)
    qtbot.waitUntil(lambda: w.scan_button.isEnabled(), timeout=5000)
    assert len(w.series.skipped) == 1
    top = [w.tree.topLevelItem(i).text(0) for i in range(w.tree.topLevelItemCount())]
    assert top[0].startswith("Phantom^Synthetic") and top[-1] == "Skipped files (1)"
    study_item = w.tree.topLevelItem(0).child(0)
    assert study_item.childCount() == 2
    second = study_item.child(1)
    assert second.text(0) == "2 second" and second.text(2) == "12"
    second.setSelected(True)
    w.open_selected()
    qtbot.waitUntil(lambda: len(viewer.layers) == 1, timeout=20000)
    assert viewer.layers[0].name == "2 second"


def test_volume_to_layer_data_4d(make_series, tmp_path):
    from napari_dicomtools import read_volume, scan

    uid = pydicom.uid.generate_uid()
    for t in range(2):
        tr = make_series(f"t{t}", series_uid=uid,
                         values=np.full((4, 20, 24), t, np.int32))
        for f in tr.files:
            ds = pydicom.dcmread(f)
            ds.TemporalPositionIdentifier = t + 1
            ds.save_as(f)
    vol = read_volume(scan(tmp_path)[0])
    data, kwargs, _ = volume_to_layer_data(vol)
    assert data.shape == (2, 4, 20, 24) and len(kwargs["scale"]) == 4
    assert kwargs["axis_labels"][0] == "volume"


def test_reader_getter_never_blocks_on_a_fifo(tmp_path, make_series):
    """A FIFO sorting before the DICOM files (also one named like a zip) is passed over."""
    import os
    import threading

    folder = tmp_path / "mixed"
    folder.mkdir()
    os.mkfifo(folder / "0000_pipe")
    os.mkfifo(folder / "0001_pipe.zip")
    truth = make_series("mixed/ct")
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", napari_get_reader(str(folder))),
                         daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "the reader getter blocked on a FIFO"
    assert callable(result["r"])
    assert napari_get_reader(str(folder / "0000_pipe")) is None
    assert truth.files


# --- several paths at once (a drop of files and folders) -----------------------------------


@pytest.fixture
def three_paths(tmp_path):
    """(good folder, its Truth, a folder of no DICOM, a file that is not DICOM)."""
    truth = write_series(tmp_path / "good", phantom((6, 24, 20)), spacing=(2.0, 0.8, 0.8))
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("not an image")
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\x7f")  # truncated
    return str(tmp_path / "good"), truth, str(notes), str(broken)


def test_several_paths_name_each_one_that_failed_and_open_the_others(three_paths):
    good, truth, notes, broken = three_paths
    with pytest.warns(UserWarning) as caught:
        layers = read_dicom([good, notes, broken])
    (data, _, _), = layers
    assert np.array_equal(np.asarray(data), truth.values)
    text = " ".join(str(w.message) for w in caught)
    assert f"{notes}: no loadable DICOM image ({notes}/readme.txt: " in text
    assert f"{broken}: no loadable DICOM image ({broken}: " in text
    assert f"{good}:" not in text and f"{good}/" not in text  # nothing wrong there


def test_several_paths_that_all_fail_name_each_with_its_reason(three_paths, tmp_path):
    from napari_dicomtools.core.errors import NoSeriesError

    _, _, notes, broken = three_paths
    missing = str(tmp_path / "gone")
    with pytest.raises(NoSeriesError) as err:
        read_dicom([notes, broken, missing])
    one, two, three = str(err.value).split("; ", 2)  # in the order given
    assert one.startswith(f"{notes}: no loadable DICOM image ({notes}/readme.txt: ")
    assert two.startswith(f"{broken}: no loadable DICOM image ({broken}: ")
    assert three == f"{missing}: no such file or folder"
    assert {os.path.basename(k.path) for k in err.value.skipped} == {"readme.txt",
                                                                      "broken.dcm"}


def test_several_paths_a_missing_one_does_not_stop_the_others(three_paths, tmp_path):
    good, truth, _, _ = three_paths
    missing = str(tmp_path / "gone")
    with pytest.warns(UserWarning, match=f"^{missing}: no such file or folder$"):
        (data, _, _), = read_dicom([missing, good])
    assert np.array_equal(np.asarray(data), truth.values)


def test_several_paths_name_the_one_whose_series_failed_to_decode(three_paths, tmp_path,
                                                                  monkeypatch):
    """One series spread over two dropped files opens (names neither); a series that
    fails to decode names the series (and why) and then its path."""
    import napari_dicomtools._reader as reader

    good, truth, _, _ = three_paths
    other = write_series(tmp_path / "other", phantom((4, 16, 16)), series_number=9)
    real = reader.image_layer_data

    def broken(series, **kw):
        if series.first.path.startswith(str(tmp_path / "other")):
            raise DicomToolsError(series.first.path, "pixel data cannot be decoded")
        return real(series, **kw)

    monkeypatch.setattr(reader, "image_layer_data", broken)
    halves = [truth.files[:3], truth.files[3:]]
    with pytest.warns(UserWarning) as caught:
        (data, _, _), = read_dicom([*halves[0], *halves[1], str(tmp_path / "other")])
    assert np.array_equal(np.asarray(data), truth.values)
    text = [str(w.message) for w in caught]
    assert any("not opened" in t and "pixel data cannot be decoded" in t for t in text)
    assert f"{tmp_path / 'other'}: no series could be decoded" in text
    assert not any(good in t for t in text) and other.files


# --- the reader decodes compressed frames while it scans (issue 18) --------------------------


def _ahead_threads():
    import threading

    return [t for t in threading.enumerate() if t.name.startswith("dicomtools-ahead")]


@pytest.fixture
def jpegls_series(tmp_path):
    """(folder, Truth) of a 12-slice JPEG-LS lossless CT."""
    truth = write_series(tmp_path / "jls", phantom((12, 48, 40)), spacing=(2.0, 0.8, 0.8),
                         transfer_syntax=pydicom.uid.JPEGLSLossless)
    return str(tmp_path / "jls"), truth


@pytest.fixture
def aheads(monkeypatch):
    """Every DecodeAhead the napari adapters make (two decoding workers: one decodes ahead),
    each with a scan slower than its decoding: the scan goes on only once the frame it has
    offered is decoded, so that every frame is decoded during the scan, whatever the load."""
    import contextlib
    from concurrent.futures import CancelledError

    import napari_dicomtools._reader as reader
    import napari_dicomtools._widgets as widgets
    from napari_dicomtools.core.volume import DecodeAhead

    monkeypatch.setenv("NAPARI_DICOMTOOLS_WORKERS", "2")
    made = []

    class Recorded(DecodeAhead):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            self.closes = 0  # how many times close() was called
            made.append(self)

        def close(self):
            self.closes += 1
            super().close()

        def offer(self, inst):
            super().offer(inst)
            fut = self.frames.get(inst.path)
            if fut is not None:
                with contextlib.suppress(CancelledError):  # a cancelled scan
                    fut.result()

    monkeypatch.setattr(reader, "DecodeAhead", Recorded)
    monkeypatch.setattr(widgets, "DecodeAhead", Recorded)
    return made


def test_reader_takes_the_frames_decoded_while_it_scanned(jpegls_series, aheads):
    from napari_dicomtools import read_volume

    folder, truth = jpegls_series
    (data, kwargs, _), = napari_get_reader(folder)(folder)
    (ahead,) = aheads
    assert ahead.served == 12  # every frame decoded during the scan, none decoded again
    ref = read_volume(folder)
    assert np.array_equal(np.asarray(data), ref.array)  # the display view of an axial CT
    assert np.array_equal(ref.array, truth.values)
    assert not ahead.frames and not _ahead_threads()  # freed, the threads ended


def test_reader_lazy_series_decodes_as_before_and_frees_the_scan_frames(
        jpegls_series, aheads, monkeypatch):
    import napari_dicomtools._reader as reader

    monkeypatch.setattr(reader, "LAZY_THRESHOLD", 1)
    folder, truth = jpegls_series
    (data, _, _), = read_dicom(folder)
    assert type(data).__module__.startswith("dask")
    assert aheads[0].served == 0 and not aheads[0].frames and not _ahead_threads()
    assert np.array_equal(np.asarray(data[5]), truth.values[5])


def test_reader_error_ends_the_decoding_threads(jpegls_series, aheads, monkeypatch):
    """A read that fails after the scan (here every series fails to decode) names the
    folder, and leaves no decoding thread behind."""
    import napari_dicomtools._reader as reader
    from napari_dicomtools.core.errors import DicomToolsError, NoSeriesError

    def broken(series, **kw):
        raise DicomToolsError(series.first.path, "cannot be decoded")

    monkeypatch.setattr(reader, "image_layer_data", broken)
    folder, _ = jpegls_series
    with pytest.warns(UserWarning, match="not opened"), \
            pytest.raises(NoSeriesError, match="no series could be decoded") as err:
        read_dicom(folder)
    assert folder in str(err.value)
    assert aheads[0].served == 0 and not _ahead_threads()


def test_browser_open_takes_the_frames_its_scan_decoded(make_napari_viewer, qtbot,
                                                        jpegls_series, aheads):
    from napari_dicomtools import read_volume
    from napari_dicomtools._widgets import DicomBrowser

    folder, truth = jpegls_series
    viewer = make_napari_viewer()
    w = DicomBrowser(viewer)
    w.scan(folder)
    qtbot.waitUntil(lambda: len(w.series) == 1 and w.scan_button.isEnabled(), timeout=20000)
    qtbot.waitUntil(lambda: not _ahead_threads(), timeout=5000)  # stopped with the scan
    w.open_selected(list(w.series))
    qtbot.waitUntil(lambda: len(viewer.layers) == 1 and w.scan_button.isEnabled(),
                    timeout=20000)
    (ahead,) = aheads
    assert ahead.served == 12 and not ahead.frames and w._job.ahead is None
    assert np.array_equal(np.asarray(viewer.layers[0].data), read_volume(folder).array)


@pytest.fixture
def paused_scan(tmp_path, aheads, monkeypatch):
    """(folder, resume): a 60-file JPEG-LS folder whose scan, once it has offered 5 files,
    waits for ``resume()`` (or the end of the test): a scan surely still running."""
    import threading

    import napari_dicomtools._widgets as widgets

    folder = tmp_path / "big"
    write_series(folder, phantom((60, 32, 32)), transfer_syntax=pydicom.uid.JPEGLSLossless)
    gate = threading.Event()
    cls = widgets.DecodeAhead  # the recording one
    real = cls.offer

    def offer(self, inst):
        real(self, inst)
        self.offered = getattr(self, "offered", 0) + 1
        if self.offered == 5:
            gate.wait(30)

    monkeypatch.setattr(cls, "offer", offer)
    yield str(folder), gate.set
    gate.set()


def _paused(made):
    return len(made) == 1 and getattr(made[0], "offered", 0) >= 5


def _freed(ahead):
    """The DecodeAhead was closed once: its threads ended, no frame or memory kept."""
    return (ahead.closes == 1 and ahead.stopped and not ahead.frames
            and ahead.memory.buffer is None and not _ahead_threads())


def test_browser_cancel_stops_the_decoding(make_napari_viewer, qtbot, paused_scan, aheads):
    """Cancelling a scan ends its decoding threads at once and frees their frames."""
    from napari_dicomtools._widgets import DicomBrowser

    folder, resume = paused_scan
    viewer = make_napari_viewer()
    w = DicomBrowser(viewer)
    worker = w.scan(folder)
    qtbot.waitUntil(lambda: _paused(aheads), timeout=20000)
    assert _ahead_threads()  # decoding while the scan runs
    w.cancel()
    assert _freed(aheads[0]) and w._job.ahead is None
    resume()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=20000)
    assert _freed(aheads[0])


@pytest.fixture
def held_pool():
    """(hold, release): ``hold()`` keeps every thread of Qt's global pool busy until
    ``release()`` (or the end of the test): a worker started meanwhile waits in the queue,
    so it can be cancelled before its first step."""
    import threading

    from qtpy.QtCore import QRunnable, QThreadPool

    gate = threading.Event()
    pool = QThreadPool.globalInstance()

    class Hold(QRunnable):
        def run(self):
            gate.wait(30)

    held = []

    def hold():
        for _ in range(pool.maxThreadCount()):
            held.append(Hold())
            held[-1].setAutoDelete(False)
            pool.start(held[-1])

    yield hold, gate.set
    gate.set()
    pool.waitForDone(30000)


def test_browser_open_cancelled_before_its_first_step_frees_the_scan_frames(
        make_napari_viewer, qtbot, jpegls_series, aheads, held_pool):
    """An open cancelled while its worker still waits for a thread never runs its
    generator; the frames its scan decoded are freed all the same (closed once)."""
    from napari_dicomtools._widgets import DicomBrowser

    folder, _ = jpegls_series
    viewer = make_napari_viewer()
    w = DicomBrowser(viewer)
    w.scan(folder)
    qtbot.waitUntil(lambda: len(w.series) == 1 and w.scan_button.isEnabled(), timeout=20000)
    (ahead,) = aheads
    assert ahead.frames and ahead.closes == 0  # kept for the open
    hold, release = held_pool
    hold()
    worker = w.open_selected(list(w.series))
    w.cancel()
    release()
    qtbot.waitUntil(lambda: not worker.is_running and w.scan_button.isEnabled(),
                    timeout=20000)
    qtbot.waitUntil(lambda: _freed(ahead), timeout=5000)
    assert ahead.served == 0 and len(viewer.layers) == 0


def test_browser_superseded_scan_does_not_touch_the_new_scans_frames(
        make_napari_viewer, qtbot, tmp_path, jpegls_series, aheads):
    """A scan that fails after a new scan began: its error frees its own DecodeAhead, not
    the new scan's (whose frames the open then takes), and does not end the new scan's
    busy state."""
    import threading

    from qtpy.QtCore import Qt

    from napari_dicomtools._widgets import DicomBrowser

    folder, _ = jpegls_series
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "DICOMDIR").write_bytes(b"not a DICOMDIR")
    viewer = make_napari_viewer()
    w = DicomBrowser(viewer)
    with qtbot.capture_exceptions() as raised:  # napari re-raises a worker's error
        first = w.scan(str(bad / "DICOMDIR"))
        ended = threading.Event()
        first.finished.connect(ended.set, Qt.ConnectionType.DirectConnection)
        assert ended.wait(20)  # failed; its signals not yet delivered
        w.scan(folder)
        qtbot.waitUntil(lambda: len(w.series) == 1 and w.scan_button.isEnabled(),
                        timeout=20000)
    assert [type(e).__name__ for _, e, _ in raised] in ([], ["DicomToolsError"])
    old, new = aheads
    # the failed scan's own signals free its DecodeAhead; under load they may come after
    # the new scan's (never its frames: checked next)
    qtbot.waitUntil(lambda: _freed(old), timeout=10000)
    assert new.closes == 0 and len(new.frames) == 12
    w.open_selected(list(w.series))
    qtbot.waitUntil(lambda: len(viewer.layers) == 1 and w.scan_button.isEnabled(),
                    timeout=20000)
    assert new.served == 12
    qtbot.waitUntil(lambda: _freed(new), timeout=5000)


def test_browser_second_open_does_not_cancel_the_first(make_napari_viewer, qtbot,
                                                        jpegls_series, aheads):
    """Opening again while an open runs (a second double click): both open; the first
    takes the scan's frames and frees them once."""
    from napari_dicomtools._widgets import DicomBrowser

    folder, _ = jpegls_series
    viewer = make_napari_viewer()
    w = DicomBrowser(viewer)
    w.scan(folder)
    qtbot.waitUntil(lambda: len(w.series) == 1 and w.scan_button.isEnabled(), timeout=20000)
    first = w.open_selected(list(w.series))
    second = w.open_selected(list(w.series))
    qtbot.waitUntil(lambda: len(viewer.layers) == 2 and not first.is_running
                    and not second.is_running and w.scan_button.isEnabled(), timeout=20000)
    (ahead,) = aheads
    assert ahead.served == 12
    qtbot.waitUntil(lambda: _freed(ahead), timeout=5000)


@pytest.mark.parametrize("how", ["close", "dock closed", "viewer closed"])
def test_browser_closed_while_scanning_ends_the_scan_and_frees_its_frames(
        make_napari_viewer, qtbot, paused_scan, aheads, how):
    """Closing the browser (its own close, napari's close button on its dock, or the
    viewer's window) ends a running scan and frees its DecodeAhead, exactly once."""
    from napari_dicomtools._widgets import DicomBrowser

    folder, resume = paused_scan
    viewer = make_napari_viewer()
    w = DicomBrowser(viewer)
    viewer.window.add_dock_widget(w, name="DICOM browser")
    worker = w.scan(folder)
    qtbot.waitUntil(lambda: _paused(aheads), timeout=20000)
    (ahead,) = aheads
    assert _ahead_threads() and ahead.closes == 0
    if how == "close":
        w.close()
    elif how == "dock closed":
        viewer.window.remove_dock_widget(w)  # what the dock's close button does
    else:
        viewer.close()
    qtbot.waitUntil(lambda: _freed(ahead), timeout=20000)
    resume()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=20000)
    assert worker.abort_requested and _freed(ahead)


def test_browser_closed_after_a_scan_frees_the_frames_no_open_took(
        make_napari_viewer, qtbot, jpegls_series, aheads):
    from napari_dicomtools._widgets import DicomBrowser

    folder, _ = jpegls_series
    viewer = make_napari_viewer()
    w = DicomBrowser(viewer)
    viewer.window.add_dock_widget(w, name="DICOM browser")
    w.scan(folder)
    qtbot.waitUntil(lambda: len(w.series) == 1 and w.scan_button.isEnabled(), timeout=20000)
    (ahead,) = aheads
    assert ahead.frames and ahead.closes == 0
    viewer.close()
    qtbot.waitUntil(lambda: _freed(ahead), timeout=20000)



def test_reader_reads_an_uncompressed_series_into_memory_faulted_in_while_scanning(
        tmp_path, aheads, monkeypatch):
    """As read_volume(folder): the volume's memory is faulted in during the scan (the
    scan's progress is fed to the DecodeAhead) and the read takes it; values exact."""
    from napari_dicomtools.core import volume

    monkeypatch.setattr(volume._Prefault, "MIN_BYTES", 1)
    taken = []
    real = volume._Prefault.take

    def take(self, shape, dtype):
        arr = real(self, shape, dtype)
        taken.append(arr is not None)
        return arr

    monkeypatch.setattr(volume._Prefault, "take", take)
    truth = write_series(tmp_path / "ct", phantom((12, 40, 48)), spacing=(2.0, 0.7, 0.7))
    (data, _, _), = read_dicom(str(tmp_path / "ct"))
    assert taken == [True]
    assert np.array_equal(np.asarray(data), truth.values)
    assert not _ahead_threads() and aheads[0].memory.buffer is None


def test_reader_does_not_fault_in_the_memory_of_a_folder_that_opens_lazily(
        tmp_path, aheads, monkeypatch):
    """A folder too big to open eagerly is not first faulted into memory whole during its
    scan (as an eager one is: see the test above); it opens lazily, values exact."""
    import napari_dicomtools._reader as reader
    from napari_dicomtools.core import volume

    monkeypatch.setattr(volume._Prefault, "MIN_BYTES", 1)
    monkeypatch.setattr(reader, "LAZY_THRESHOLD", 12 * 40 * 48 * 2 - 1)  # just too big
    began = []
    real = volume._Prefault._begin

    def begin(self):
        real(self)
        began.append(self.buffer is not None)

    monkeypatch.setattr(volume._Prefault, "_begin", begin)
    truth = write_series(tmp_path / "ct", phantom((12, 40, 48)), spacing=(2.0, 0.7, 0.7))
    (data, _, _), = read_dicom(str(tmp_path / "ct"))
    assert not any(began)
    assert type(data).__module__.startswith("dask")
    assert np.array_equal(np.asarray(data), truth.values)
    assert not _ahead_threads()
