"""napari dock widgets (Qt). The DICOM browser: scan a folder, list patients/studies/series,
open the chosen series as layers. Scanning and reading run in worker threads with progress,
so the viewer never freezes.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Generator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QEvent, Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .core.errors import DicomToolsError
from .core.series import Series, SeriesList, scan_iter
from .core.volume import DecodeAhead

if TYPE_CHECKING:
    from napari.qt.threading import GeneratorWorker
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset
    from qtpy.QtGui import QCloseEvent

    from ._reader import LayerData

#: napari's viewer and layers (napari ships no type information)
Viewer = Any
Layer = Any
#: what the open worker yields: ("progress", done, total), ("layer", LayerData, None) or
#: ("error", message, None)
OpenMessage = tuple[str, Any, Any]

_COLUMNS = ["Series", "Modality", "Slices", "Size", "Spacing (mm)", "Orientation"]
_USER_ROLE = Qt.ItemDataRole.UserRole
_SERIES_ROLE = _USER_ROLE + 1


def _fmt_spacing(sp: Sequence[float]) -> str:
    return f"{sp[2]:.3g} x {sp[1]:.3g} x {sp[0]:.3g}"


class _Job:
    """One scan or open of the browser, and the DecodeAhead it owns.

    A scan makes its DecodeAhead; the open that follows a complete scan takes it over
    (:meth:`take`), and then it is the open's. Whoever holds it closes it, exactly once
    (:meth:`close` takes it first, under a lock, so two closers cannot both get it):

    - a scan when it fails, is cancelled or superseded (by a new scan or open, or the
      browser closed); a complete scan only stops it: its frames wait for the open;
    - an open when its worker ends, however it ends: after its last step, by an error, or
      quit before its first step (its generator never ran then, but ``finished`` is still
      emitted). An open's DecodeAhead is never closed from outside: its read may use it.

    The worker's end is handled in the worker's thread (:meth:`worker_ended`), so it
    neither waits for the event loop nor depends on the widget still existing. A
    superseded scan, and any job of a closed browser, is no longer :attr:`live`: its late
    signals change nothing in the browser. Opens are not superseded (each adds the layers
    it was asked for), but only the browser's latest job shows its progress.

    Parameters
    ----------
    ahead : DecodeAhead or None
        What the job owns from the start.
    scan : bool
        A scan (its DecodeAhead may be closed while it runs: offers are ignored then).
    """

    def __init__(self, ahead: DecodeAhead | None, scan: bool) -> None:
        self.scan = scan
        self.worker: GeneratorWorker[Any, Any, Any] | None = None
        #: False once superseded (a scan) or the browser closed
        self.live = True
        #: the worker has ended
        self.done = False
        #: a scan whose series the browser lists (its frames are for the next open)
        self.complete = False
        #: the layers an open added
        self.opened: list[Layer] = []
        self._ahead = ahead
        self._lock = threading.Lock()

    @property
    def ahead(self) -> DecodeAhead | None:
        """The DecodeAhead this job holds (None: none, handed over, or closed)."""
        return self._ahead

    def take(self) -> DecodeAhead | None:
        """Hand the DecodeAhead over (to an open, or to :meth:`close`)."""
        with self._lock:
            ahead, self._ahead = self._ahead, None
        return ahead

    def close(self) -> None:
        """End the decoding and free its frames and memory (once; then a no-op)."""
        ahead = self.take()
        if ahead is not None:
            ahead.close()

    def worker_ended(self) -> None:
        """The worker has ended (in its thread). An open frees its frames; a scan that ran
        to the end and is still live keeps them for the open (its threads end), any other
        scan frees them."""
        self.done = True
        worker = self.worker
        if self.scan and self.live and worker is not None and not worker.abort_requested:
            ahead = self._ahead
            if ahead is not None:
                ahead.stop()  # (a close meanwhile is harmless: it stops too)
        else:
            self.close()

    def end(self) -> None:
        """Supersede this job: its worker is asked to quit (a read under way ends first),
        a scan's DecodeAhead is closed at once (an open's when its worker ends)."""
        self.live = False
        if self.worker is not None:
            self.worker.quit()
        if self.scan:
            self.close()


def _end_jobs(jobs: list[_Job]) -> None:
    """End every job of a closed browser (bound to the list, not to the browser: its
    ``destroyed`` is emitted when the Python widget may already be unusable)."""
    for job in jobs:
        job.end()
    jobs.clear()


class DicomBrowser(QWidget):
    """List the patients, studies and series of a folder; open the selected series.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        Injected by napari.
    """

    def __init__(self, napari_viewer: Viewer) -> None:
        super().__init__()
        self.viewer: Viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.series: SeriesList = SeriesList()
        #: the running or last scan or open (a complete scan holds the frames it decoded
        #: on the spare cores for the next open), and every job not yet ended (see _Job)
        self._job: _Job | None = None
        self._jobs: list[_Job] = []
        self.destroyed.connect(functools.partial(_end_jobs, self._jobs))
        from ._viewer import install

        install(self.viewer)
        row = self._path_row()
        self._series_tree()
        self._open_controls()
        self._lay_out(row)

    def _path_row(self) -> QHBoxLayout:
        """The path field, Browse and Scan (Return in the field scans)."""
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("folder, DICOM file, .zip or DICOMDIR")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.scan_button = QPushButton("Scan")
        self.scan_button.clicked.connect(lambda: self.scan())
        self.path_edit.returnPressed.connect(lambda: self.scan())
        row = QHBoxLayout()
        row.addWidget(self.path_edit)
        row.addWidget(browse)
        row.addWidget(self.scan_button)
        return row

    def _series_tree(self) -> None:
        """The tree of patients, studies and series (a double click opens)."""
        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(_COLUMNS))
        self.tree.setHeaderLabels(_COLUMNS)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.itemDoubleClicked.connect(lambda item, col: self.open_selected())
        from qtpy.QtWidgets import QHeaderView

        header = self.tree.header()
        assert header is not None  # a QTreeWidget always has its header view
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)  # drag to resize
        header.setStretchLastSection(True)
        self.tree.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)

    def _open_controls(self) -> None:
        """Open options and buttons, the progress bar and the status line."""
        self.lazy_box = QCheckBox("Lazy (decode on demand)")
        self.contours_box = QCheckBox("RTSTRUCT also as shapes")
        self.contours_box.setToolTip("Besides the labels layer, a structure set's contours "
                                     "as polygons on the slices they were drawn on")
        self.open_button = QPushButton("Open selected")
        self.open_button.clicked.connect(lambda: self.open_selected())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("Choose a folder and press Scan.")
        self.status.setWordWrap(True)

    def _lay_out(self, row: QHBoxLayout) -> None:
        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addWidget(self.tree)
        options = QHBoxLayout()  # options and buttons on two rows: the dock stays narrow
        options.addWidget(self.lazy_box)
        options.addWidget(self.contours_box)
        options.addStretch(1)
        lay.addLayout(options)
        bottom = QHBoxLayout()
        bottom.addStretch(1)
        bottom.addWidget(self.open_button)
        bottom.addWidget(self.cancel_button)
        lay.addLayout(bottom)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)

    # ------------------------------------------------------------------ scanning
    def _browse(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "DICOM folder", self.path_edit.text())
        if d:
            self.path_edit.setText(d)
            self.scan()

    def scan(self, path: str | None = None) -> GeneratorWorker[Any, Any, Any] | None:
        """Scan ``path`` (or the path field) in a worker thread; returns the worker."""
        from napari.qt.threading import create_worker

        path = path or self.path_edit.text().strip()
        self.path_edit.setText(path)
        if not path or not os.path.exists(path):
            self.status.setText(f"{path or '(empty)'}: no such file or folder")
            return None

        # compressed frames decode on the spare cores while later headers are parsed; the
        # next open takes them (as read_volume(folder) does). The scan's progress is not fed
        # to the DecodeAhead: no volume-sized memory is faulted in for a choice not yet made
        ahead = DecodeAhead()
        job = self._begin(ahead, scan=True)
        worker = job.worker = create_worker(scan_iter, path, on_header=ahead.offer)
        worker.yielded.connect(lambda value: self._on_scan_progress(job, value))
        worker.returned.connect(lambda found: self._on_scanned(job, found))
        self._start(job, "Scanning…", None)
        return worker

    def _begin(self, ahead: DecodeAhead | None, scan: bool) -> _Job:
        """A new job, now the browser's latest; it supersedes the scans (frames no open
        took are freed), not the opens under way."""
        for old in self._jobs:
            if old.scan:
                old.end()
        job = self._job = _Job(ahead, scan)
        self._jobs[:] = [j for j in self._jobs if j.live and not j.done] + [job]
        return job

    def _start(self, job: _Job, text: str, done: str | None) -> None:
        """What every job does on an error and at its end; start its worker."""
        worker = job.worker
        assert worker is not None  # made by the caller
        direct = Qt.ConnectionType.DirectConnection  # in the worker's thread (see _Job)
        worker.errored.connect(lambda exc: job.close(), direct)  # frees the frames at once
        worker.finished.connect(job.worker_ended, direct)
        worker.errored.connect(lambda exc: self._on_error(job, exc))
        worker.finished.connect(lambda: self._finished(job, done))
        self._set_busy(True, text)
        worker.start()

    def _shows(self, job: _Job) -> bool:
        """Whether the browser shows ``job``'s progress (its latest, not superseded)."""
        return job.live and job is self._job

    def _on_scan_progress(self, job: _Job, value: tuple[int, int]) -> None:
        if self._shows(job):
            i, n = value
            self.progress.setMaximum(max(n, 1))
            self.progress.setValue(i)

    def _on_scanned(self, job: _Job, series: SeriesList) -> None:
        if self._shows(job):
            job.complete = True
            self.series = series
            self.populate(series)

    def populate(self, series: SeriesList) -> None:
        """Fill the tree: patient -> study -> series; skipped files last."""
        self.tree.clear()
        patients: dict[tuple[str, str], QTreeWidgetItem] = {}
        studies: dict[tuple[tuple[str, str], str], QTreeWidgetItem] = {}
        for idx, s in enumerate(series):
            pkey = (s.patient_id, s.patient_name)
            if pkey not in patients:
                p = QTreeWidgetItem([f"{s.patient_name or '(no name)'}  [{s.patient_id}]"])
                self.tree.addTopLevelItem(p)
                p.setExpanded(True)
                patients[pkey] = p
            skey = (pkey, s.study_uid)
            if skey not in studies:
                label = " ".join(x for x in (s.study_date, s.study_description) if x)
                st = QTreeWidgetItem([label or "(study)"])
                patients[pkey].addChild(st)
                st.setExpanded(True)
                studies[skey] = st
            dims = " x ".join(str(x) for x in s.shape[-2:][::-1])
            cells = [s.name, s.modality,
                     str(s.n_slices) + (f" x {s.n_time}" if s.n_time > 1 else ""),
                     dims, _fmt_spacing(s.spacing), s.orientation_label]
            if not s.rows:  # RTSTRUCT, SR: no image; say what it was made on instead
                names = {x.uid: x.name for x in series}
                refs = [names.get(u, u) for u in s.references]
                cells[2:] = ["", "", "", "on " + ", ".join(refs) if refs else ""]
            item = QTreeWidgetItem(cells)
            item.setData(0, _SERIES_ROLE, idx)
            item.setToolTip(0, "\n".join([s.name, *s.problems] + (
                [f"{s.kind} made on series {', '.join(s.references)}"] if s.references
                else [])))
            studies[skey].addChild(item)
        if series.skipped:
            sk = QTreeWidgetItem([f"Skipped files ({len(series.skipped)})"])
            for left in series.skipped:
                child = QTreeWidgetItem([os.path.basename(left.path), left.reason])
                child.setToolTip(0, left.path)
                child.setToolTip(1, left.reason)
                sk.addChild(child)
            self.tree.addTopLevelItem(sk)
        for c in range(len(_COLUMNS)):
            self.tree.resizeColumnToContents(c)
            # long names are elided (full text in the tooltip), never wider than 280 px
            self.tree.setColumnWidth(c, min(self.tree.columnWidth(c), 280))
        self.status.setText(f"{len(series)} series" + (
            f", {len(series.skipped)} file(s) skipped (see the list)" if series.skipped else ""))

    # ------------------------------------------------------------------ opening
    def selected_series(self) -> list[Series]:
        """The series of the selected rows (patients and studies are not series)."""
        out = []
        for item in self.tree.selectedItems():
            idx = item.data(0, _SERIES_ROLE)
            if idx is not None:
                out.append(self.series[int(idx)])
        return out

    def open_selected(self, series: Iterable[Series] | None = None
                      ) -> GeneratorWorker[OpenMessage, None, None] | None:
        """Read the selected series in a worker and add them as layers; returns the worker."""
        from napari.qt.threading import create_worker

        from ._reader import image_layer_data, read_annotation

        chosen = list(series) if series is not None else self.selected_series()
        if not chosen:
            self.status.setText("Select one or more series first.")
            return None
        lazy = self.lazy_box.isChecked()
        contours = self.contours_box.isChecked()
        found = self.series
        # this open takes the frames its scan decoded (if that scan is complete and
        # current: they belong to the series listed); the others are freed
        scanned = self._job
        frames = scanned.take() if scanned is not None and scanned.complete \
            and scanned.live else None
        job = self._begin(frames, scan=False)

        def work() -> Generator[OpenMessage, None, None]:
            try:
                for k, s in enumerate(chosen):
                    yield ("progress", k, len(chosen))
                    try:
                        if s.kind != "IMAGE":  # SEG: labels on the image it references
                            for data in read_annotation(s, found, contours=contours):
                                yield ("layer", data, None)
                            continue
                        image: LayerData = image_layer_data(s, lazy=lazy, ahead=frames)
                    except DicomToolsError as exc:
                        yield ("error", str(exc), None)
                        continue
                    yield ("layer", image, None)
                yield ("progress", len(chosen), len(chosen))
            finally:  # freed as soon as the reads are over (finished does not come if the
                job.close()  # generator raises a RuntimeError: superqt returns early)

        # quit before its first step, the generator never runs (nor its finally): the
        # frames are freed when the worker ends (_Job.worker_ended)
        worker = job.worker = create_worker(work)
        worker.yielded.connect(lambda msg: self._on_open_yield(job, msg))
        self._start(job, f"Opening {len(chosen)} series…", "Done.")
        return worker

    def _on_open_yield(self, job: _Job, msg: OpenMessage) -> None:
        if not job.live:  # the browser was closed
            return
        kind, a, b = msg
        if kind == "progress":
            if self._shows(job):
                self.progress.setMaximum(max(b, 1))
                self.progress.setValue(a)
        elif kind == "error":
            if self._shows(job):
                self.status.setText(a)
            from napari.utils.notifications import show_warning

            show_warning(a)
        else:
            data, kwargs, layer_type = a
            job.opened.append(getattr(self.viewer, f"add_{layer_type}")(data, **kwargs))

    def _centre_on_first(self, opened: list[Layer]) -> None:
        """After opening several series, show the main one (a volume, not its scout): its
        plane, its middle slice, centred and zoomed to it."""
        if not opened:
            return
        from ._viewer import acquisition_plane, main_layer, set_plane

        first = main_layer(opened) or opened[0]
        if first not in self.viewer.layers:
            return
        self.viewer.layers.selection.active = first
        if self.viewer.dims.ndim >= 3 and first.ndim >= 3:
            set_plane(self.viewer, acquisition_plane(self.viewer, first), keep_cursor=False)
        lo, hi = np.asarray(first.extent.world, float)
        centre = (lo + hi) / 2.0
        off = self.viewer.dims.ndim - len(centre)
        for k, c in enumerate(centre):
            self.viewer.dims.set_point(off + k, float(c))
        shown = list(self.viewer.dims.order[-2:])
        from ._viewer import camera_of

        camera_of(self.viewer).center = (0.0,) + tuple(float(centre[a - off]) for a in shown)
        size = max(float(hi[a - off] - lo[a - off]) for a in shown)
        canvas = min(getattr(self.viewer, "_canvas_size", (512, 512)))
        if size > 0:
            camera_of(self.viewer).zoom = 0.9 * canvas / size

    def cancel(self) -> None:
        """Stop the running scan or opens (within one file)."""
        running = [j for j in self._jobs if j.worker is not None and not j.done]
        for job in running:
            if job.worker is not None:
                job.worker.quit()
            if job.scan:  # its decoding ends now (an open's frames: when its worker ends)
                job.close()
        if running:
            self.status.setText("Cancelled.")

    def closeEvent(self, event: QCloseEvent | None) -> None:  # noqa: N802 - Qt's name
        """Closing the browser ends its scan or open and frees the frames it holds."""
        _end_jobs(self._jobs)
        super().closeEvent(event)

    def event(self, event: QEvent | None) -> bool:
        """Taken out of its dock (what napari's close button on a dock does): closed."""
        if event is not None and event.type() == QEvent.Type.ParentChange \
                and self.parent() is None:
            _end_jobs(self._jobs)
        return super().event(event)

    # ------------------------------------------------------------------ misc
    def _on_error(self, job: _Job, exc: BaseException) -> None:
        if self._shows(job):
            self.status.setText(f"Error: {exc}")

    def _finished(self, job: _Job, done: str | None) -> None:
        """A job's worker ended: the browser is idle again (unless a newer job runs)."""
        if self._shows(job):
            self._set_busy(False, done)
            if not job.scan:
                self._centre_on_first(job.opened)

    def _set_busy(self, busy: bool, text: str | None = None) -> None:
        self.progress.setVisible(busy)
        if busy:
            self.progress.setValue(0)
        self.scan_button.setEnabled(not busy)
        self.open_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        if text:
            self.status.setText(text)


# ============================================================================================
# DICOM header inspector


def read_full_header(path: str) -> Dataset:
    """The whole header (no pixel data) of a file or ``archive.zip::member``."""
    from .core.headers import open_dicom, safe_dcmread
    from .core.sources import Source

    with open_dicom(Source.from_string(path)) as (fp, _size, dicm):
        # never inflates a deflate bomb whole
        return safe_dcmread(fp, path, stop_before_pixels=True, force=not dicm)


def _value_text(elem: DataElement, limit: int = 200) -> str:
    if elem.VR == "SQ":
        return f"<{len(elem.value)} item(s)>"
    v = elem.value
    if isinstance(v, (bytes, bytearray)):
        return f"<{len(v)} bytes>"
    text = "\\".join(str(x) for x in v) if type(v).__name__ == "MultiValue" else str(v)
    return text if len(text) <= limit else text[:limit] + "…"


class DicomHeaderWidget(QWidget):
    """The full DICOM header of the selected layer's current slice, as a searchable tree.

    Columns: tag, keyword (private tags labelled with their creator), VR, value. Sequences
    expand. Elements whose value differs from the series' first slice are shown in bold and
    follow the dims slider. Copy buttons put the value or the tag path on the clipboard.
    """

    MAX_ITEMS = 50  # sequence items shown before "... N more"

    def __init__(self, napari_viewer: Viewer) -> None:
        super().__init__()
        from qtpy.QtWidgets import QApplication  # noqa: F401 - ensure an app exists

        self.viewer = napari_viewer
        self.layer: Layer | None = None
        self.current_path: str | None = None
        self._first = None
        self._cache: dict[str, Dataset] = {}
        self.status = QLabel("Select an image layer opened from DICOM.")
        self.status.setWordWrap(True)
        self.search = QLineEdit()
        self.search.setPlaceholderText("filter: tag, keyword or value (e.g. 0018, Kernel, HEAD)")
        self.search.textChanged.connect(self._apply_filter)
        self.tree = QTreeWidget()
        self.tree.setColumnCount(4)
        self.tree.setHeaderLabels(["Tag", "Keyword", "VR", "Value"])
        for col, width in enumerate((122, 190, 34)):
            self.tree.setColumnWidth(col, width)
        self.setMinimumWidth(480)
        self.copy_value = QPushButton("Copy value")
        self.copy_path = QPushButton("Copy tag path")
        self.copy_value.clicked.connect(lambda: self._copy(value=True))
        self.copy_path.clicked.connect(lambda: self._copy(value=False))
        lay = QVBoxLayout(self)
        lay.addWidget(self.status)
        lay.addWidget(self.search)
        lay.addWidget(self.tree)
        row = QHBoxLayout()
        row.addWidget(self.copy_value)
        row.addWidget(self.copy_path)
        lay.addLayout(row)
        self.current_frame_index: int | None = None
        self._frame: int | None = None
        #: id of a "... N more" row -> (that row, its parent, the items, their tag path,
        #: the first item not shown)
        self._more: dict[int, tuple[QTreeWidgetItem, QTreeWidgetItem, list[Dataset], str,
                                    int]] = {}
        self.tree.itemExpanded.connect(self._on_expanded)
        self.viewer.layers.selection.events.active.connect(self._on_layer)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self._on_layer()

    # ------------------------------------------------------------------ following napari
    def _on_layer(self, event: object = None) -> None:
        layer = self.viewer.layers.selection.active
        self.layer = layer
        self._first = None
        if layer is None:
            self._show_message("Select an image layer opened from DICOM.")
            return
        sources = layer.metadata.get("frame_sources") if hasattr(layer, "metadata") else None
        if not sources:
            self._show_message(f"Layer '{layer.name}' did not come from DICOM files: "
                               "there is no header to show.")
            return
        self._on_step()

    def current_frame(self) -> int:
        """Index into ``frame_sources`` of the slice the viewer shows for this layer."""
        layer = self.layer
        if layer is None:
            return 0
        meta = layer.metadata
        n = len(meta["frame_sources"])
        dt = meta.get("display_transform") or {}
        axes = dt.get("axes")
        if not axes or "flips" not in dt:
            return 0
        data_idx = np.round(layer.world_to_data(self.viewer.dims.point)).astype(int)
        lead = layer.ndim - 3
        w0 = list(axes).index(0)  # display axis that holds the original slice axis
        nsl = int(meta.get("n_slices") or layer.data.shape[lead + w0])
        d = int(np.clip(data_idx[lead + w0], 0, nsl - 1))
        k = nsl - 1 - d if dt["flips"][w0] else d
        t = int(np.clip(data_idx[0], 0, n // nsl - 1)) if lead else 0
        return int(np.clip(t * nsl + k, 0, n - 1))

    def _on_step(self, event: object = None) -> None:
        layer = self.layer
        if layer is None or not layer.metadata.get("frame_sources"):
            return
        try:
            i = self.current_frame()
        except Exception:  # noqa: BLE001 - a transform edge case must not break napari
            i = 0
        path, frame = layer.metadata["frame_sources"][i]
        if (path, frame) == (self.current_path, self.current_frame_index):
            return
        self.show_file(path, frame, first=layer.metadata["frame_sources"][0][0])

    # ------------------------------------------------------------------ display
    def _header(self, path: str) -> Dataset:
        ds = self._cache.get(path)
        if ds is None:
            ds = read_full_header(path)
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[path] = ds
        return ds

    def show_file(self, path: str, frame: int | None = None, first: str | None = None) -> None:
        """Show the header of ``path`` (``frame``: the frame of a multi-frame file on
        screen), in bold where it differs from the file ``first``."""
        try:
            ds = self._header(path)
            ref = self._header(first) if first and first != path else None
        except Exception as exc:  # noqa: BLE001
            self._show_message(f"{path}: header cannot be read ({exc})")
            return
        self.current_path = path
        self.current_frame_index = frame
        self._frame = frame if frame is not None and "PerFrameFunctionalGroupsSequence" in ds \
            else None
        where = f", frame {frame}" if frame is not None else ""
        self.status.setText(f"{self.layer.name if self.layer else ''}: {path}{where}")
        self._more.clear()
        self.tree.clear()
        if getattr(ds, "file_meta", None) is not None and len(ds.file_meta):
            meta_item = QTreeWidgetItem(["(0002,xxxx)", "File Meta Information", "", ""])
            self.tree.addTopLevelItem(meta_item)
            self._add(meta_item, ds.file_meta, None, "")
        self._add(None, ds, ref, "")
        self._apply_filter(self.search.text())

    def _add(self, parent: QTreeWidgetItem | None, ds: Dataset, ref: Dataset | None,
             prefix: str) -> None:
        from qtpy.QtGui import QFont

        creators: dict[tuple[int, int], str] = {}
        for elem in ds:
            tag = elem.tag
            if tag.is_private and tag.element < 0x100 and tag.element >= 0x10:
                creators[(tag.group, tag.element)] = str(elem.value)
        for elem in ds:
            tag = elem.tag
            tag_text = f"({tag.group:04X},{tag.element:04X})"
            keyword = elem.keyword or elem.name
            if tag.is_private:
                block = creators.get((tag.group, tag.element >> 8))
                if tag.element >= 0x1000 and block:
                    keyword = f"[{block}] {elem.name}"
                elif 0x10 <= tag.element < 0x100:
                    keyword = "Private Creator"
                else:
                    keyword = f"[private] {elem.name}"
            path = f"{prefix}{tag_text}"
            item = QTreeWidgetItem([tag_text, keyword, elem.VR, _value_text(elem)])
            item.setData(0, _USER_ROLE, path)
            full = _value_text(elem, limit=1 << 20)
            item.setData(3, _USER_ROLE, full)
            if elem.VR != "SQ" and len(full) > 60:  # the whole value on hover, copy copies it
                item.setToolTip(3, full[:4000] + ("…" if len(full) > 4000 else ""))
            if ref is not None and elem.VR != "SQ":
                other = ref.get(tag)
                if other is None or _value_text(other) != _value_text(elem):
                    f = QFont()
                    f.setBold(True)
                    for c in range(4):
                        item.setFont(c, f)
                    item.setToolTip(3, "differs from the first slice of the series")
            if parent is None:
                self.tree.addTopLevelItem(item)
            else:
                parent.addChild(item)
            if elem.VR == "SQ":
                items = list(elem.value)
                current = self._frame if (parent is None and keyword ==
                                          "PerFrameFunctionalGroupsSequence") else None
                if current is not None and 0 <= current < len(items):
                    # the frame on screen first, expanded: its position, orientation, values
                    child = QTreeWidgetItem([f"Item {current + 1}", "current frame", "", ""])
                    child.setData(0, _USER_ROLE, f"{path}[{current}]")
                    item.addChild(child)
                    self._add(child, items[current], None, f"{path}[{current}].")
                    item.setExpanded(True)
                    child.setExpanded(True)
                self._add_items(item, items, path, 0)

    def _add_items(self, item: QTreeWidgetItem, items: list[Dataset], path: str,
                   start: int) -> None:
        """Sequence items ``start``... (MAX_ITEMS at a time; the rest load on demand)."""
        stop = min(len(items), start + self.MAX_ITEMS)
        for j in range(start, stop):
            child = QTreeWidgetItem([f"Item {j + 1}", "", "", ""])
            child.setData(0, _USER_ROLE, f"{path}[{j}]")
            item.addChild(child)
            self._add(child, items[j], None, f"{path}[{j}].")
        if stop < len(items):
            more = QTreeWidgetItem(["…", f"{len(items) - stop} more item(s): expand to load",
                                    "", ""])
            more.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
            self._more[id(more)] = (more, item, items, path, stop)
            item.addChild(more)

    def _on_expanded(self, node: QTreeWidgetItem) -> None:
        job = self._more.pop(id(node), None)
        if job is None:
            return
        _, parent, items, path, start = job
        parent.removeChild(node)
        self._add_items(parent, items, path, start)

    def load_all_items(self) -> None:
        """Load every pending sequence item (for scripts and tests)."""
        while self._more:
            node, parent, items, path, start = self._more.pop(next(iter(self._more)))
            parent.removeChild(node)
            self._add_items(parent, items, path, start)

    def _show_message(self, text: str) -> None:
        self.current_path = None
        self.current_frame_index = None
        self._more.clear()
        self.tree.clear()
        self.status.setText(text)

    def _apply_filter(self, text: str) -> None:
        text = (text or "").strip().lower()

        def visit(item: QTreeWidgetItem | None) -> bool:
            if item is None:
                return False
            own = not text or any(text in item.text(c).lower() for c in range(4))
            child_hit = False
            for j in range(item.childCount()):
                child_hit |= visit(item.child(j))
            show = own or child_hit
            item.setHidden(not show)
            if text and child_hit:
                item.setExpanded(True)
            return show

        for i in range(self.tree.topLevelItemCount()):
            visit(self.tree.topLevelItem(i))

    def visible_rows(self) -> list[tuple[str, str, str, str]]:
        """(tag, keyword, VR, value) of every visible row, depth first (for tests/scripts)."""
        out: list[tuple[str, str, str, str]] = []

        def visit(item: QTreeWidgetItem | None) -> None:
            if item is None or item.isHidden():
                return
            out.append((item.text(0), item.text(1), item.text(2), item.text(3)))
            for j in range(item.childCount()):
                visit(item.child(j))

        for i in range(self.tree.topLevelItemCount()):
            visit(self.tree.topLevelItem(i))
        return out

    def _copy(self, value: bool) -> None:
        from qtpy.QtWidgets import QApplication

        item = self.tree.currentItem()
        if item is None:
            return
        text = item.data(3, _USER_ROLE) if value else item.data(0, _USER_ROLE)
        clipboard = QApplication.clipboard()
        if clipboard is not None:  # None only without a QApplication
            clipboard.setText(str(text or ""))
