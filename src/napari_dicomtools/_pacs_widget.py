"""napari PACS dock (Qt): pick a server profile, search, list the series found, retrieve the
chosen ones into the cache (progress, cancel) and open them; send a layer to the server (an
image's source series, a picture as a secondary capture, labels as SEG/RTSTRUCT, shapes as
an SR report). The network work runs in worker threads: the viewer never freezes.
Everything is :mod:`napari_dicomtools.core.pacs`; this module only translates.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .core import pacs
from .core.errors import DicomToolsError

if TYPE_CHECKING:
    from napari.qt.threading import FunctionWorker, GeneratorWorker

    from ._widgets import Layer, Viewer

    #: the worker of a search, retrieve or send
    Worker: TypeAlias = FunctionWorker[Any] | GeneratorWorker[Any, Any, Any]

#: what a retrieve yields: ("progress", text, (done, total)), ("layer", LayerData, cache
#: folder), ("status" | "error", text, None)
Message: TypeAlias = tuple[str, Any, Any]

#: (header, Hit attribute) of the results table
COLUMNS = (("Patient", "patient_name"), ("Patient ID", "patient_id"), ("Date", "study_date"),
           ("Modality", "modality"), ("Study", "study_description"), ("#", "series_number"),
           ("Series", "series_description"), ("Images", "count"))
_AUTO = "automatic"


class _Sent(NamedTuple):
    """What a send did, and what was sent (``layer_to_dicom``'s description of the
    layer's DICOM form, such as ``"tumour (SEG)"``), for the status line."""

    what: str
    result: pacs.SendResult


class PacsWidget(QWidget):
    """Query/retrieve dock over the server profiles of :func:`pacs.config_path`.

    ``search()``, ``retrieve()`` and ``send_layer()`` are what the buttons call; each runs in
    a worker and returns it. ``napari_viewer`` is injected by napari.
    """

    def __init__(self, napari_viewer: Viewer) -> None:
        super().__init__()
        self.viewer: Viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.hits: list[pacs.Hit] = []
        self.profiles: dict[str, pacs.ServerProfile] = {}
        self._worker: Worker | None = None
        self._cancel = threading.Event()
        form = self._query_form()
        self._results_table()
        self._action_widgets()
        self._lay_out(form)
        self.reload_profiles()

    def _query_form(self) -> QFormLayout:
        """The server, protocol and query fields (Return in a field searches)."""
        self.server = QComboBox()
        self.server.setToolTip("server profiles from " + pacs.config_path()
                               + " (add them with `dicomtools pacs add`)")
        reload_button = QPushButton("Reload")
        reload_button.clicked.connect(self.reload_profiles)
        self.protocol = QComboBox()
        self.protocol.addItems([_AUTO, *pacs.PROTOCOLS])
        self.method = QComboBox()
        self.method.addItems([_AUTO, *pacs.METHODS])
        self.patient_id = QLineEdit()
        self.patient_name = QLineEdit()
        self.patient_name.setPlaceholderText("e.g. Doe^J*")
        self.date = QLineEdit()
        self.date.setPlaceholderText("YYYYMMDD or YYYY-MM-DD..YYYY-MM-DD")
        self.modality = QLineEdit()
        self.modality.setPlaceholderText("CT, MR, ...")
        self.description = QLineEdit()
        self.description.setPlaceholderText("series description, * wildcard")
        for field in (self.patient_id, self.patient_name, self.date, self.modality,
                      self.description):
            field.returnPressed.connect(lambda: self.search())

        row = QHBoxLayout()
        row.addWidget(self.server, 1)
        row.addWidget(reload_button)
        form = QFormLayout()
        form.addRow("Server", row)
        form.addRow("Query by", self.protocol)
        form.addRow("Patient ID", self.patient_id)
        form.addRow("Patient name", self.patient_name)
        form.addRow("Study date", self.date)
        form.addRow("Modality", self.modality)
        form.addRow("Description", self.description)
        return form

    def _results_table(self) -> None:
        """The Search button and the table of hits (a double click retrieves)."""
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(lambda: self.search())
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([c for c, _ in COLUMNS])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        assert header is not None  # a QTableWidget always has its header view
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.table.doubleClicked.connect(lambda _index: self.retrieve())

    def _action_widgets(self) -> None:
        """Retrieve, stream, send and cancel controls, the progress bar and the status."""
        self.stream_box = QCheckBox("Stream: open at once, slices as they arrive "
                                    "(WADO-RS or C-GET)")
        self.stream_box.setToolTip("the series opens from its metadata; each slice shown is "
                                   "fetched on demand while the whole series is retrieved "
                                   "into the cache in the background")
        self.retrieve_button = QPushButton("Retrieve && open")
        self.retrieve_button.clicked.connect(lambda: self.retrieve())
        self.send_button = QPushButton("Send layer to PACS")
        self.send_button.setToolTip(
            "upload the selected layer (STOW-RS or C-STORE): an image read from DICOM as its "
            "source series; a 2D or RGB image (a PNG, a screenshot) as a secondary capture "
            "in the study of the DICOM image open in the viewer; labels as DICOM SEG or "
            "RTSTRUCT; shapes as an SR measurement report")
        self.send_button.clicked.connect(lambda: self.send_layer())
        self.labels_as = QComboBox()
        self.labels_as.addItems(["SEG", "RTSTRUCT"])
        self.labels_as.setToolTip("how a labels layer is sent")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("Pick a server and search.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

    def _lay_out(self, form: QFormLayout) -> None:
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.search_button)
        lay.addWidget(self.table, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(QLabel("Retrieve by"))
        buttons.addWidget(self.method)
        buttons.addWidget(self.retrieve_button)
        buttons.addWidget(self.cancel_button)
        lay.addLayout(buttons)
        lay.addWidget(self.stream_box)
        send_row = QHBoxLayout()
        send_row.addWidget(self.send_button, 1)
        send_row.addWidget(QLabel("Labels as"))
        send_row.addWidget(self.labels_as)
        lay.addLayout(send_row)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)

    # ------------------------------------------------------------------ profiles
    def reload_profiles(self) -> None:
        """Read the server profiles again (after ``dicomtools pacs add``)."""
        current = self.server.currentText()
        try:
            self.profiles = pacs.load_profiles()
        except DicomToolsError as exc:
            self.profiles = {}
            self._say(str(exc), error=True)
        self.server.clear()
        self.server.addItems(sorted(self.profiles))
        if current in self.profiles:
            self.server.setCurrentText(current)
        if not self.profiles:
            self.status.setText(f"No server profile in {pacs.config_path()}: add one with "
                                "`dicomtools pacs add NAME --url ... | --host ...`.")

    def profile(self) -> pacs.ServerProfile | None:
        p = self.profiles.get(self.server.currentText())
        if p is None:
            self._say("Choose a server profile first.", error=True)
        return p

    @staticmethod
    def _choice(combo: QComboBox) -> str | None:
        return None if combo.currentText() == _AUTO else combo.currentText()

    # ------------------------------------------------------------------ search
    def search(self) -> Worker | None:
        """Search the server for series in a worker; returns the worker (or None)."""
        prof = self.profile()
        if prof is None:
            return None
        patient_id, patient_name, date, modality, description = (
            field.text().strip() or None for field in (
                self.patient_id, self.patient_name, self.date, self.modality,
                self.description))
        protocol = self._choice(self.protocol)

        def work() -> list[pacs.Hit]:
            return pacs.find(prof, level="series", protocol=protocol, patient_id=patient_id,
                             patient_name=patient_name, date=date, modality=modality,
                             description=description)

        return self._run(work, self.show_hits, f"Searching {prof.name}…")

    def show_hits(self, hits: Iterable[pacs.Hit]) -> None:
        self.hits = list(hits)
        self.table.setRowCount(len(self.hits))
        for r, h in enumerate(self.hits):
            for c, (_, attr) in enumerate(COLUMNS):
                value = getattr(h, attr)
                item = QTableWidgetItem("" if value is None else str(value))
                item.setToolTip(f"study {h.study_uid}\nseries {h.series_uid}")
                self.table.setItem(r, c, item)
        self.table.resizeColumnsToContents()
        self.status.setText(f"{len(self.hits)} series found." if self.hits else
                            "Nothing found.")

    def selected_hits(self) -> list[pacs.Hit]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return [self.hits[r] for r in rows if r < len(self.hits)]

    # ------------------------------------------------------------------ retrieve
    def retrieve(self, hits: Iterable[pacs.Hit] | None = None) -> Worker | None:
        """Retrieve the selected series into the cache, then open them; returns the worker."""
        prof = self.profile()
        chosen = list(hits) if hits is not None else self.selected_hits()
        if prof is None:
            return None
        if not chosen:
            self._say("Select one or more series in the table first.", error=True)
            return None
        method = self._choice(self.method)
        stream = self.stream_box.isChecked()
        cancel = self._cancel = threading.Event()

        def work() -> Generator[Message, None, None]:
            from ._reader import volume_to_layer_data
            from .core.pacs_stream import open_streaming
            from .core.series import scan
            from .core.volume import read_volume

            for k, h in enumerate(chosen):
                label = h.series_description or h.series_uid
                streamed = False
                if stream:
                    try:
                        vol = open_streaming(prof, h.study_uid, h.series_uid, cancel=cancel,
                                             method=method)
                        yield ("layer", volume_to_layer_data(vol), vol.metadata["pacs_cache"])
                        streamed = True
                    except DicomToolsError as exc:
                        yield ("status", f"{exc}; retrieving first", None)
                try:
                    result = yield from retrieve_steps(prof, h, method, cancel, label)
                except pacs.RetrieveCancelled:
                    yield ("status", "Cancelled; the complete instances stay cached "
                                     "(retrieve again to resume).", None)
                    return
                except DicomToolsError as exc:
                    yield ("error", str(exc), None)
                    continue
                folder = result.folder
                if streamed:
                    yield ("status", f"{label}: all {result.expected} images cached.", None)
                    continue
                yield ("status", f"Opening {label} ({k + 1}/{len(chosen)})…", None)
                for series in scan(folder):
                    try:
                        yield ("layer", volume_to_layer_data(read_volume(series)), folder)
                    except DicomToolsError as exc:
                        yield ("error", str(exc), None)

        return self._run(work, None, f"Retrieving {len(chosen)} series…", yielded=True)

    # ------------------------------------------------------------------ send
    def send_layer(self, layer: Layer = None) -> Worker | None:
        """Send the selected layer as DICOM (see :func:`layer_to_dicom`); returns the
        worker."""
        prof = self.profile()
        if prof is None:
            return None
        layer = layer or self.viewer.layers.selection.active
        if layer is None:
            self._say("Select the layer to send first.", error=True)
            return None
        labels_as = self.labels_as.currentText()
        viewer = self.viewer
        method = "stow" if prof.dicomweb_url else "c-store"
        cancel = self._cancel = threading.Event()

        def work() -> _Sent:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="dicomtools-send-") as tmp:
                files, what = layer_to_dicom(layer, viewer, tmp, labels_as=labels_as)
                return _Sent(what, pacs.send(prof, files, method=method, cancel=cancel))

        return self._run(work, self._sent, f"Sending {layer.name} to {prof.name}…")

    def _sent(self, sent: _Sent) -> None:
        what, result = sent
        text = (f"{what}: " if what else "") + (
            f"{len(result.sent)} sent, {len(result.failed)} failed, "
            f"{len(result.skipped)} skipped")
        if result.failed:
            path, why = result.failed[0]
            text += f" (first failure: {path}: {why})"
        self._say(text, error=bool(result.failed or not result.sent))

    # ------------------------------------------------------------------ plumbing
    def _run(self, work: Callable[[], Any], on_return: Callable[[Any], None] | None,
             text: str, yielded: bool = False) -> Worker:
        from napari.qt.threading import create_worker

        # errors go to the status line and a notification, not re-raised in the event loop
        worker = create_worker(work, _ignore_errors=True)
        if yielded:
            worker.yielded.connect(self._on_yield)
        if on_return is not None:
            worker.returned.connect(on_return)
        worker.errored.connect(lambda exc: self._say(str(exc), error=True))
        self._set_busy(True, text)
        worker.finished.connect(lambda: self._set_busy(False))
        self._worker = worker
        worker.start()
        return worker

    def _on_yield(self, msg: Message) -> None:
        kind, text, extra = msg
        if kind == "progress":
            done, total = extra
            self.progress.setMaximum(max(total, 1))
            self.progress.setValue(done)
            self.status.setText(text)
        elif kind == "layer":
            data, kwargs, _ = text
            layer = self.viewer.add_image(data, **kwargs)
            layer.metadata["pacs_cache"] = extra
            self.viewer.layers.selection.active = layer
            self.status.setText(f"Opened {layer.name}.")
        elif kind == "error":
            self._say(text, error=True)
        else:
            self.status.setText(text)

    def cancel(self) -> None:
        """Stop the running retrieve or send (complete instances stay cached)."""
        self._cancel.set()
        self.status.setText("Cancelling…")

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        if error:
            from napari.utils.notifications import show_warning

            show_warning(text)

    def _set_busy(self, busy: bool, text: str | None = None) -> None:
        self.progress.setVisible(busy)
        if busy:
            self.progress.setValue(0)
            self.progress.setMaximum(0)  # busy until the first count arrives
        for b in (self.search_button, self.retrieve_button, self.send_button):
            b.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        if text:
            self.status.setText(text)


def retrieve_steps(prof: pacs.ServerProfile, hit: pacs.Hit, method: str | None,
                   cancel: threading.Event, label: str
                   ) -> Generator[Message, None, pacs.RetrieveResult]:
    """Generator: run :func:`pacs.retrieve` in a helper thread, yield
    ``("progress", text, (done, total))`` as instances arrive, return its result (or raise
    its error) in the caller's thread."""
    import queue

    events: queue.Queue[Message] = queue.Queue()
    result: list[pacs.RetrieveResult] = []
    error: list[Exception] = []

    def progress(done: int, total: int) -> None:
        events.put(("progress", f"{label}: {done}/{total} images", (done, total)))

    def run() -> None:
        try:
            result.append(pacs.retrieve(prof, hit.study_uid, hit.series_uid, method=method,
                                        progress=progress, cancel=cancel))
        except Exception as exc:  # re-raised in the caller's thread below
            error.append(exc)

    t = threading.Thread(target=run, name="pacs-retrieve", daemon=True)
    t.start()
    while t.is_alive() or not events.empty():
        try:
            yield events.get(timeout=0.05)
        except queue.Empty:
            pass
    if error:
        raise error[0]
    return result[0]


def _dicom_reference(viewer: Viewer, layer: Layer) -> list[str]:
    """The DICOM files of ``layer`` itself, else of the first image layer in the viewer read
    from DICOM: the study a secondary capture is filed under."""
    for candidate in [layer, *viewer.layers]:
        files = source_files(candidate)
        if files:
            return files
    return []


def layer_to_dicom(layer: Layer, viewer: Viewer, folder: str, labels_as: str = "SEG"
                   ) -> tuple[list[str], str]:
    """The DICOM files that send ``layer``, written into ``folder`` when they are new
    objects; returns (files, what they are).

    - an image read from DICOM: its source files, as they are;
    - a 2D or RGB image (a PNG, a screenshot, a derived picture): a secondary capture
      (windowed by the layer's contrast limits, as our PNG export) filed under the study of
      the DICOM image open in the viewer;
    - labels: DICOM SEG (or RTSTRUCT) referencing the series they were drawn on;
    - shapes: an SR measurement report (TID 1500) referencing the image under them.
    """
    import os

    from . import _writer

    kind = getattr(layer, "_type_string", "")
    data, meta, _ = layer.as_layer_data_tuple()
    name = getattr(layer, "name", "layer")
    if kind == "image":
        rgb = bool(meta.get("rgb"))
        files = source_files(layer)
        if files:  # read from DICOM (a volume, a 2D radiograph, an RGB ultrasound...)
            return files, f"{name} (its DICOM series)"
        plane = np.asarray(data)
        if plane.ndim - (1 if rgb else 0) > 2:  # a stack: the slice on screen
            step = tuple(int(i) for i in viewer.dims.current_step[:plane.ndim - 2 -
                                                                  (1 if rgb else 0)])
            plane = plane[step]
        ref = _dicom_reference(viewer, layer)
        if not ref:
            raise DicomToolsError(name, "a picture is sent as a secondary capture in the "
                                        "study of a DICOM image: open that image too")
        from ._reader import shows_inverted_grey
        from .core.sc import write_secondary_capture

        lo, hi = meta.get("contrast_limits") or (float(plane.min()), float(plane.max()))
        window = None if rgb else ((lo + hi) / 2.0, max(hi - lo, 1.0))
        if window is not None and shows_inverted_grey(meta):  # MONOCHROME1: as shown
            from .core.png import apply_window

            plane, window = 255 - apply_window(plane, *window), None
        path = write_secondary_capture(
            plane, ref, os.path.join(folder, "capture.dcm"), window=window,
            description=name, derivation=f"napari layer {name!r}")
        return [path], f"{name} (secondary capture)"
    path = os.path.join(folder, f"{kind}.dcm")
    try:
        if kind == "labels":
            write = _writer.write_labels_rtstruct if labels_as == "RTSTRUCT" \
                else _writer.write_labels_seg
            return write(path, data, meta), f"{name} ({labels_as})"
        if kind == "shapes":
            return _writer.write_shapes_sr(path, data, meta), f"{name} (SR report)"
    except ValueError as exc:  # the writers name the temporary path: say it for the layer
        raise DicomToolsError(name, str(exc).replace(path + ": ", "")) from None
    raise DicomToolsError(name, f"{kind or type(layer).__name__} layers cannot be sent; "
                                "select an image, labels or shapes layer")


def source_files(layer: Layer) -> list[str]:
    """The DICOM files an image layer was read from (its series), or []."""
    if layer is None or getattr(layer, "_type_string", "") != "image":
        return []
    meta = getattr(layer, "metadata", {}) or {}
    files = (meta.get("metadata") or {}).get("files") or []
    if not files:
        files = list(dict.fromkeys(path for path, _ in meta.get("frame_sources") or []))
    return [str(f) for f in files]
