"""napari adapter: a small form to save a labels layer as DICOM SEG or RTSTRUCT after picking
the reference series and, per segment, its name, SNOMED CT category and type, and colour.

File > Save Layer does the same with what the layer already carries; this form is for a
labels layer that needs names and codes first, or that does not know its series (drawn on a
NIfTI of the same grid, opened from elsewhere): the user names the DICOM image layer whose
grid it lies on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QColorDialog,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .core.errors import DicomToolsError
from .core.grid import GRID_KEY, Grid
from .core.seg import CATEGORIES, TYPES

if TYPE_CHECKING:
    from napari.qt.threading import FunctionWorker

    from .core.series import Series

FORMATS = ("DICOM SEG", "RTSTRUCT")
_COLUMNS = ("Value", "Name", "Category", "Type", "Colour")
#: napari's viewer and layers (napari ships no type information)
Viewer = Any
Layer = Any
#: a write the form describes: (function, positional arguments, keyword arguments)
Job = tuple[Callable[..., str], tuple[npt.NDArray[Any], "Series", str], dict[str, Any]]


class _ColourButton(QPushButton):
    """A segment's colour: shows it, and keeps it as 0-255 ``rgb``."""

    rgb: tuple[int, int, int] = (255, 255, 0)


def _kind(layer: Layer) -> str:
    return type(layer).__name__


def reference_candidates(viewer: Viewer, labels: Layer) -> list[Layer]:
    """The DICOM image layers a labels layer can be written against: 3D, read from files,
    with the labels' array shape; the one the labels lie on (same display grid) first."""
    out: list[Layer] = []
    for layer in viewer.layers:
        md = layer.metadata
        if _kind(layer) != "Image" or not md.get("files") or GRID_KEY not in md \
                or layer.data.ndim != 3 or tuple(layer.data.shape) != tuple(labels.data.shape):
            continue
        on = Grid.from_metadata(md, labels.data.shape, labels.scale, labels.translate)
        out.insert(0 if on is not None else len(out), layer)
    return out


class DicomObjectExport(QWidget):
    """Save a labels layer as DICOM SEG or RTSTRUCT referencing a DICOM series."""

    def __init__(self, viewer: Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.labels_combo = QComboBox()
        self.reference_combo = QComboBox()
        self.reference_combo.setToolTip("The DICOM image layer whose grid the labels lie on; "
                                        "the SEG/RTSTRUCT references its series")
        self.format_combo = QComboBox()
        self.format_combo.addItems(FORMATS)
        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setHorizontalHeaderLabels(_COLUMNS)
        header = self.table.verticalHeader()
        if header is not None:
            header.setVisible(False)
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("output .dcm (not in the source folder)")
        browse = QPushButton("…")
        browse.clicked.connect(self._browse)
        self.overwrite_box = QCheckBox("Replace an existing file")
        self.write_button = QPushButton("Write")
        self.write_button.clicked.connect(lambda: self.write())
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Labels layer", self.labels_combo)
        form.addRow("Reference series", self.reference_combo)
        form.addRow("Format", self.format_combo)
        out = QHBoxLayout()
        out.addWidget(self.path_edit)
        out.addWidget(browse)
        form.addRow("Output file", out)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.table)
        lay.addWidget(self.overwrite_box)
        lay.addWidget(self.write_button)
        lay.addWidget(self.status)

        self.labels_combo.currentIndexChanged.connect(lambda _i: self._on_labels())
        viewer.layers.events.inserted.connect(lambda _e: self.refresh())
        viewer.layers.events.removed.connect(lambda _e: self.refresh())
        self._worker = None
        self.refresh()

    # ------------------------------------------------------------------ choices
    def refresh(self) -> None:
        """Re-list the labels layers (keeping the current one)."""
        current = self.labels_combo.currentText()
        names = [lay.name for lay in self.viewer.layers if _kind(lay) == "Labels"
                 and lay.data.ndim == 3]
        self.labels_combo.blockSignals(True)
        self.labels_combo.clear()
        self.labels_combo.addItems(names)
        if current in names:
            self.labels_combo.setCurrentText(current)
        self.labels_combo.blockSignals(False)
        self._on_labels()

    def labels_layer(self) -> Layer | None:
        name = self.labels_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def reference_layer(self) -> Layer | None:
        name = self.reference_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _on_labels(self) -> None:
        labels = self.labels_layer()
        self.reference_combo.clear()
        self.table.setRowCount(0)
        if labels is None:
            self.status.setText("Add or select a 3D labels layer.")
            return
        refs = reference_candidates(self.viewer, labels)
        self.reference_combo.addItems([r.name for r in refs])
        if not refs:
            self.status.setText(f"No DICOM image layer has the shape of {labels.name!r} "
                                f"({'x'.join(map(str, labels.data.shape))}); open the series "
                                "it was drawn on.")
        else:
            self.status.setText("")
        self._fill_table(labels)

    def _fill_table(self, labels: Layer) -> None:
        from ._writer import segments_of_layer

        values = [int(v) for v in np.unique(np.asarray(labels.data)) if v != 0]
        meta = {"metadata": labels.metadata, "features": labels.features,
                "colormap": labels.colormap}
        specs = segments_of_layer(meta, values)
        self.table.setRowCount(len(values))
        for row, v in enumerate(values):
            spec = specs.get(v, {})
            value = QTableWidgetItem(str(v))
            value.setFlags(value.flags() & ~Qt.ItemFlag.ItemIsEditable)
            self.table.setItem(row, 0, value)
            self.table.setItem(row, 1, QTableWidgetItem(str(spec.get("label") or
                                                            f"Segment {v}")))
            cat, typ = QComboBox(), QComboBox()
            cat.addItems(sorted(CATEGORIES))
            typ.addItems(sorted(TYPES))
            typ.currentTextChanged.connect(lambda t, c=cat: c.setCurrentText(TYPES[t][1]))
            known = str(spec.get("label") or "").strip().lower()
            typ.setCurrentText(known if known in TYPES else "tissue")
            cat.setCurrentText(TYPES[typ.currentText()][1])
            self.table.setCellWidget(row, 2, cat)
            self.table.setCellWidget(row, 3, typ)
            button = _ColourButton()
            button.clicked.connect(lambda _c=False, r=row: self.pick_colour(r))
            self.table.setCellWidget(row, 4, button)
            self.set_colour(row, spec.get("color") or (255, 255, 0))
        self.table.resizeColumnsToContents()

    def _cell(self, row: int, column: int) -> QWidget:
        """The widget the table holds at ``(row, column)`` (every row has its four)."""
        widget = self.table.cellWidget(row, column)
        if widget is None:
            raise LookupError(f"no widget in row {row}, column {column}")
        return widget

    def _button(self, row: int) -> _ColourButton:
        button = self._cell(row, 4)
        assert isinstance(button, _ColourButton)
        return button

    def _combo_text(self, row: int, column: int) -> str:
        combo = self._cell(row, column)
        assert isinstance(combo, QComboBox)
        return combo.currentText()

    def _text(self, row: int, column: int) -> str:
        item = self.table.item(row, column)
        if item is None:
            raise LookupError(f"no item in row {row}, column {column}")
        return item.text()

    def set_colour(self, row: int, rgb: Sequence[int]) -> None:
        r, g, b = (int(c) for c in rgb[:3])
        button = self._button(row)
        button.rgb = (r, g, b)
        button.setText(f"#{r:02x}{g:02x}{b:02x}")
        button.setStyleSheet(f"background-color: rgb({r}, {g}, {b})")

    def pick_colour(self, row: int) -> None:
        from qtpy.QtGui import QColor

        old = self._button(row).rgb
        colour = QColorDialog.getColor(QColor(*old), self, "Segment colour")
        if colour.isValid():
            self.set_colour(row, (colour.red(), colour.green(), colour.blue()))

    def segments(self) -> dict[int | str, dict[str, Any]]:
        """Label value -> {label, category, type, color} as the table shows them."""
        out: dict[int | str, dict[str, Any]] = {}
        for row in range(self.table.rowCount()):
            v = int(self._text(row, 0))
            out[v] = {"label": self._text(row, 1).strip() or f"Segment {v}",
                      "category": self._combo_text(row, 2),
                      "type": self._combo_text(row, 3),
                      "color": self._button(row).rgb}
        return out

    def _browse(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save as", self.path_edit.text(),
                                              "DICOM (*.dcm)")
        if path:
            self.path_edit.setText(path)

    # ------------------------------------------------------------------ writing
    def _job(self) -> Job:
        """(function, args, kwargs) of the write the form describes; ValueError if none."""
        from .core.series import scan

        labels, ref = self.labels_layer(), self.reference_layer()
        path = self.path_edit.text().strip()
        if labels is None or ref is None:
            raise ValueError("pick a labels layer and the DICOM series it lies on")
        if not path:
            raise ValueError("choose an output file")
        if not path.lower().endswith(".dcm"):
            path += ".dcm"
        grid = Grid.from_metadata(ref.metadata, ref.data.shape, ref.scale, ref.translate)
        if grid is None or grid.display is None:
            raise ValueError(f"{ref.name!r} no longer shows its DICOM grid (moved or "
                             "rescaled)")
        arr = np.asarray(grid.display.invert(np.asarray(labels.data)))
        series = [s for s in scan(list(ref.metadata["files"]))
                  if s.kind == "IMAGE" and s.shape == arr.shape]
        if len(series) != 1:
            raise ValueError(f"the files of {ref.name!r} could not be read back as one series")
        specs = self.segments()
        kw: dict[str, Any] = {"overwrite": self.overwrite_box.isChecked(),
                              "description": labels.name}
        if self.format_combo.currentText() == "RTSTRUCT":
            from .core.rtstruct import write_rtstruct

            specs = {v: {"label": s["label"], "color": s["color"],
                         "interpreted_type": "ORGAN" if s["category"] ==
                         "anatomical structure" else ""} for v, s in specs.items()}
            return write_rtstruct, (arr, series[0], path), dict(kw, segments=specs)
        from .core.seg import write_seg

        return write_seg, (arr, series[0], path), dict(kw, segments=specs)

    def write(self) -> FunctionWorker[str] | None:
        """Write in a worker thread (the viewer stays live); returns the worker, or None
        when the form is incomplete (the reason is shown)."""
        from napari.qt.threading import create_worker

        try:
            fn, args, kwargs = self._job()
        except (ValueError, DicomToolsError) as exc:
            self.status.setText(str(exc))
            return None
        if os.path.exists(args[2]) and not kwargs["overwrite"]:
            self.status.setText(f"{args[2]} exists; tick 'Replace an existing file' to "
                                "replace it")
            return None
        worker = create_worker(fn, *args, **kwargs)
        worker.returned.connect(lambda p: self.status.setText(f"Saved {p}"))
        worker.errored.connect(self._failed)
        worker.finished.connect(lambda: self.write_button.setEnabled(True))
        self.write_button.setEnabled(False)
        self.status.setText(f"Writing {self.format_combo.currentText()}…")
        self._worker = worker
        worker.start()
        return worker

    def _failed(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_error

        self.status.setText(f"Not saved: {exc}")
        show_error(f"Not saved: {exc}")
