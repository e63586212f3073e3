"""napari dock widgets (Qt). The DICOM browser: scan a folder, list patients/studies/series,
open the chosen series as layers. Scanning and reading run in worker threads with progress,
so the viewer never freezes.
"""

from __future__ import annotations

import os

from qtpy.QtCore import Qt
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
from .core.scan import SeriesList, scan_iter

_COLUMNS = ["Series", "Modality", "Slices", "Size", "Spacing (mm)", "Orientation"]
_SERIES_ROLE = Qt.UserRole + 1


def _fmt_spacing(sp) -> str:
    return f"{sp[2]:.3g} x {sp[1]:.3g} x {sp[0]:.3g}"


class DicomBrowser(QWidget):
    """List the patients, studies and series of a folder; open the selected series.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        Injected by napari.
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.series: SeriesList = SeriesList()
        self._worker = None

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

        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(_COLUMNS))
        self.tree.setHeaderLabels(_COLUMNS)
        self.tree.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.tree.itemDoubleClicked.connect(lambda item, col: self.open_selected())

        self.lazy_box = QCheckBox("Lazy (decode slices on demand)")
        self.open_button = QPushButton("Open selected")
        self.open_button.clicked.connect(lambda: self.open_selected())
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel("Choose a folder and press Scan.")
        self.status.setWordWrap(True)

        lay = QVBoxLayout(self)
        lay.addLayout(row)
        lay.addWidget(self.tree)
        bottom = QHBoxLayout()
        bottom.addWidget(self.lazy_box)
        bottom.addWidget(self.open_button)
        lay.addLayout(bottom)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)

    # ------------------------------------------------------------------ scanning
    def _browse(self):
        d = QFileDialog.getExistingDirectory(self, "DICOM folder", self.path_edit.text())
        if d:
            self.path_edit.setText(d)
            self.scan()

    def scan(self, path: str | None = None):
        """Scan ``path`` (or the path field) in a worker thread; returns the worker."""
        from napari.qt.threading import create_worker

        path = path or self.path_edit.text().strip()
        self.path_edit.setText(path)
        if not path or not os.path.exists(path):
            self.status.setText(f"{path or '(empty)'}: no such file or folder")
            return None

        worker = create_worker(scan_iter, path)
        worker.yielded.connect(self._on_scan_progress)
        worker.returned.connect(self._on_scanned)
        worker.errored.connect(self._on_error)
        self._set_busy(True, "Scanning…")
        worker.finished.connect(lambda: self._set_busy(False))
        self._worker = worker
        worker.start()
        return worker

    def _on_scan_progress(self, value):
        i, n = value
        self.progress.setMaximum(max(n, 1))
        self.progress.setValue(i)

    def _on_scanned(self, series: SeriesList):
        self.series = series
        self.populate(series)

    def populate(self, series: SeriesList):
        """Fill the tree: patient -> study -> series; skipped files last."""
        self.tree.clear()
        patients: dict = {}
        studies: dict = {}
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
            item = QTreeWidgetItem([
                s.name, s.modality, str(s.n_slices) + (f" x {s.n_time}" if s.n_time > 1 else ""),
                dims, _fmt_spacing(s.spacing), s.orientation_label])
            item.setData(0, _SERIES_ROLE, idx)
            if s.problems:
                item.setToolTip(0, "\n".join(s.problems))
            studies[skey].addChild(item)
        if series.skipped:
            sk = QTreeWidgetItem([f"Skipped files ({len(series.skipped)})"])
            for s in series.skipped:
                child = QTreeWidgetItem([os.path.basename(s.path), s.reason])
                child.setToolTip(0, s.path)
                child.setToolTip(1, s.reason)
                sk.addChild(child)
            self.tree.addTopLevelItem(sk)
        for c in range(len(_COLUMNS)):
            self.tree.resizeColumnToContents(c)
        self.status.setText(f"{len(series)} series" + (
            f", {len(series.skipped)} file(s) skipped (see the list)" if series.skipped else ""))

    # ------------------------------------------------------------------ opening
    def selected_series(self) -> list:
        out = []
        for item in self.tree.selectedItems():
            idx = item.data(0, _SERIES_ROLE)
            if idx is not None:
                out.append(self.series[int(idx)])
        return out

    def open_selected(self, series=None):
        """Read the selected series in a worker and add them as layers; returns the worker."""
        from napari.qt.threading import create_worker

        from ._reader import volume_to_layer_data
        from .core.volume import _read_series

        chosen = list(series) if series is not None else self.selected_series()
        if not chosen:
            self.status.setText("Select one or more series first.")
            return None
        lazy = self.lazy_box.isChecked()

        def work():
            for k, s in enumerate(chosen):
                yield ("progress", k, len(chosen))
                try:
                    vol = _read_series(s, lazy=lazy)
                except DicomToolsError as exc:
                    yield ("error", str(exc), None)
                    continue
                yield ("layer", volume_to_layer_data(vol), None)
            yield ("progress", len(chosen), len(chosen))

        worker = create_worker(work)
        worker.yielded.connect(self._on_open_yield)
        worker.errored.connect(self._on_error)
        self._set_busy(True, f"Opening {len(chosen)} series…")
        worker.finished.connect(lambda: self._set_busy(False, "Done."))
        self._worker = worker
        worker.start()
        return worker

    def _on_open_yield(self, msg):
        kind, a, b = msg
        if kind == "progress":
            self.progress.setMaximum(max(b, 1))
            self.progress.setValue(a)
        elif kind == "error":
            self.status.setText(a)
            from napari.utils.notifications import show_warning

            show_warning(a)
        else:
            data, kwargs, _ = a
            self.viewer.add_image(data, **kwargs)

    # ------------------------------------------------------------------ misc
    def _on_error(self, exc):
        self.status.setText(f"Error: {exc}")

    def _set_busy(self, busy: bool, text: str | None = None):
        self.progress.setVisible(busy)
        if busy:
            self.progress.setValue(0)
        self.scan_button.setEnabled(not busy)
        self.open_button.setEnabled(not busy)
        if text:
            self.status.setText(text)
