"""napari dock widgets for preprocessing, segmentation, measurement and annotation.

Thin adapters over :mod:`napari_dicomtools.core` (preprocess, segment, measure, annotate):
each takes a layer, runs a core function in a worker thread where it can be long, and returns
a new layer on the source's world grid (crop moves the translate, resize changes the scale),
with a metadata note of how it was made (``metadata["history"]``) so a pipeline can be
replayed from the console.
"""


import pathlib
from typing import Annotated, Literal

import napari
import numpy as np
from napari.qt.threading import FunctionWorker
from napari.types import LayerDataTuple
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ._reader import grey_colormap
from ._viewer import layer_grid, layer_units, provenance
from ._workspace import unique_name
from .core import annotate, preprocess, segment
from .core.grid import GRID_KEY
from .core.measure import measure, write_measurements_csv
from .core.png import WINDOW_PRESETS

PRESETS = Literal[tuple(segment.HU_PRESETS)]  # type: ignore[valid-type]
WINDOWS = Literal[tuple(WINDOW_PRESETS)]  # type: ignore[valid-type]
PLANE = Literal["acquisition", "axial", "coronal", "sagittal"]


def HU(label: str):  # noqa: N802 - reads like a type in signatures
    """A Hounsfield-unit field: the full range of the quantity (air to metal), not 0-999."""
    return Annotated[float, {"label": label, "min": -32768.0, "max": 65535.0, "step": 10.0}]


def MM(label: str, minimum: float = 0.0):  # noqa: N802
    """A length in millimetres."""
    return Annotated[float, {"label": label, "min": minimum, "max": 10000.0, "step": 0.5}]


def _viewer():
    try:
        return napari.current_viewer()
    except Exception:  # noqa: BLE001 - no viewer (console, tests without Qt)
        return None


def slice_axis(layer, plane: str = "acquisition") -> int:
    """The data axis that per-slice work steps along: the layer's acquired slices, or the
    axial (0), coronal (1) or sagittal (2) axis of our ``(z, y, x)`` display grid."""
    if plane != "acquisition":
        return {"axial": 0, "coronal": 1, "sagittal": 2}[plane]
    g = layer_grid(layer, _viewer()) if layer.data.ndim >= 3 else None
    return 0 if g is None else g.acquisition_axis


def _viewed_axis(layer) -> int | None:
    """The layer data axis the viewer's slider steps along in 2D (the plane on screen)."""
    viewer = _viewer()
    if viewer is None or viewer.dims.ndisplay != 2:
        return None
    slider = viewer.dims.order[-3] if viewer.dims.ndim >= 3 else None
    if slider is None:
        return None
    ax = slider - (viewer.dims.ndim - layer.ndim)
    return ax if 0 <= ax < layer.data.ndim else None


def _grid(layer):
    nd = layer.data.ndim - (1 if getattr(layer, "rgb", False) else 0)
    return np.asarray(layer.scale, float)[-nd:], np.asarray(layer.translate, float)[-nd:]


def _metric(layer):
    """What the core's ``spacing=`` takes for sizes in mm: the true index -> mm matrix of a
    3D layer's grid (exact on oblique and gantry-tilted series), else the display scale."""
    sc, _ = _grid(layer)
    g = layer_grid(layer, _viewer()) if len(sc) == 3 and layer.data.ndim == 3 else None
    return sc if g is None else g.linear


def _history(layer, op: str, **params) -> list:
    hist = list(layer.metadata.get("history", [])) if hasattr(layer, "metadata") else []
    hist.append({"op": op, "source": layer.name, **params})
    return hist


def _derived(layer, data, op, *, name, kind="image", scale=None, translate=None,
             on_grid=True, **params):
    """LayerDataTuple on the source's grid (or a new one), with provenance: the source's
    patient/study/series/frame-of-reference identity and its true grid, composed with the
    new display grid (``on_grid=False`` for data that is no longer on it, e.g. augmented)."""
    sc, tr = _grid(layer)
    scale = tuple(sc if scale is None else scale)
    translate = tuple(tr if translate is None else translate)
    name = unique_name(_viewer(), name)  # a re-run never replaces an earlier output
    meta = provenance(layer)
    meta.update({
        "history": _history(layer, op, **params),
        "derived_from": layer.name,
        "units": layer.metadata.get("units", "") if kind == "image" else "",
        "modality": layer.metadata.get("modality", ""),
    })
    if on_grid and np.ndim(data) >= 3 and np.ndim(layer.data) >= 3:
        src = layer_grid(layer, _viewer())
        if src is not None:
            meta[GRID_KEY] = src.derive(np.shape(data)[-3:], scale[-3:],
                                        translate[-3:]).to_metadata()
    kwargs = {
        "name": name,
        "scale": scale,
        "translate": translate,
        "metadata": meta,
    }
    units = layer_units(layer)
    if units and len(units) <= len(scale):  # same physical units (an extra leading axis:
        kwargs["units"] = ("pixel",) * (len(scale) - len(units)) + units  # a sample index)
    if kind == "image":  # a MONOCHROME1 source keeps its inverted grey
        kwargs["colormap"] = grey_colormap(meta)
    return (data, kwargs, kind)


def _started(worker):
    """Start ``worker`` on the next event-loop turn: napari first connects its ``returned``
    signal (to add the layer), so even a very fast result is not lost."""
    from qtpy.QtCore import QTimer

    QTimer.singleShot(0, worker.start)
    return worker


def _check_3d_or_2d(layer):
    if layer is None:
        raise ValueError("Select an image layer first (open a DICOM series)")
    if getattr(layer, "rgb", False):
        raise ValueError(f"{layer.name}: RGB layers are not supported here")
    if layer.data.ndim == 4:
        raise ValueError(f"{layer.name} is 4D: pick a time point with Planes & geometry > "
                         "Extract time point, then use the new 3D layer")
    if layer.data.ndim not in (2, 3):
        raise ValueError(f"{layer.name}: needs a 2D or 3D layer (this one is "
                         f"{layer.data.ndim}D)")


# ------------------------------------------------------------------------------ segmentation


def _segment(
    image: napari.layers.Image,
    method: Literal["HU preset", "manual HU range", "Otsu"] = "HU preset",
    preset: PRESETS = "soft_tissue",
    lower_hu: HU("Lower (HU)") = -30.0,
    upper_hu: HU("Upper (HU)") = 150.0,
    close_mm: MM("Closing radius (mm)") = 0.0,
    open_mm: MM("Opening radius (mm)") = 0.0,
    fill_holes: bool = True,
    clear_border: bool = True,
    min_size_mm3: Annotated[float, {"label": "Min. size (mm³)", "min": 0.0, "max": 1e9,
                                    "step": 10.0}] = 0.0,
    keep_largest: Annotated[int, {"label": "Keep largest (0 = all)", "min": 0,
                                  "max": 100000}] = 0,
    slice_plane: Annotated[PLANE, {"label": "Slice plane"}] = "acquisition",
) -> FunctionWorker[LayerDataTuple]:
    """Threshold -> morphology -> fill holes -> components -> clear border -> size filter.

    Hole filling and border clearing work slice by slice in ``slice_plane`` (default: the
    plane the series was acquired in). Runs in a worker thread, one progress step per stage,
    and can be cancelled between stages; returns a labels layer on the image's grid.
    """
    from napari.qt.threading import thread_worker

    _check_3d_or_2d(image)
    raw = image.data  # decoded in the worker: a lazy series never freezes the viewer
    spacing = _metric(image)
    kw = {"preset": preset} if method == "HU preset" else (
        {"method": "otsu"} if method == "Otsu" else {"lower": lower_hu, "upper": upper_hu})
    params = dict(kw, close_mm=close_mm, open_mm=open_mm, fill=fill_holes,
                  border=clear_border, min_volume_mm3=min_size_mm3, largest=keep_largest,
                  slice_axis=slice_axis(image, slice_plane) if raw.ndim == 3 else 0)
    n_steps = len(segment.segment_steps(np.zeros((1,) * raw.ndim, np.int16), spacing,
                                        **params))

    @thread_worker(progress={"total": n_steps + 1, "desc": "segmenting"})
    def run():
        data = np.asarray(raw)
        yield
        steps = segment.segment_steps(data, spacing, **params)
        state = None
        for step in steps:
            state = step(state)
            yield  # a cancel request stops the chain here
        return _derived(image, state, "segment",
                        name=f"{image.name} segmentation", kind="labels", **params)

    return _started(run())


def _add_cancel_button(widget):
    """Add a Cancel button that stops the widget's running worker between its steps."""
    from magicgui.widgets import PushButton

    cancel = PushButton(text="Cancel")
    widget.append(cancel)
    widget.worker = None

    def remember(worker):
        widget.worker = worker

    def stop():
        if widget.worker is not None:
            widget.worker.quit()
            kill = getattr(widget.worker, "stop_job", None)
            if kill is not None:  # work in child processes stops now, not at the next step
                kill()

    widget.called.connect(remember)
    cancel.clicked.connect(stop)
    widget.cancel_button = cancel



# ------------------------------------------------------------------------------ preprocessing


def resize_widget(image: napari.layers.Image,
                  target: Literal["voxel size (mm)", "in-plane size (pixels)"] =
                  "voxel size (mm)",
                  voxel_mm: MM("Voxel size (mm)", 0.01) = 1.0,
                  in_plane_pixels: Annotated[int, {"label": "In-plane size (pixels)",
                                                   "min": 2, "max": 16384}] = 128,
                  interpolation: Literal["linear", "nearest", "cubic"] = "linear"
                  ) -> FunctionWorker[LayerDataTuple]:
    """Resample to isotropic ``voxel_mm`` or to ``in_plane_pixels`` x ``in_plane_pixels``;
    the field of view is kept, so the result overlays the source (in a worker thread)."""
    from napari.qt.threading import thread_worker

    _check_3d_or_2d(image)
    sc, tr = _grid(image)
    order = {"nearest": 0, "linear": 1, "cubic": 3}[interpolation]
    raw = image.data  # decoded in the worker
    kw = {"new_spacing": voxel_mm} if target.startswith("voxel") else {
        "shape": (in_plane_pixels, in_plane_pixels)}

    @thread_worker(progress={"total": 0, "desc": "resizing"})
    def run():
        r = preprocess.resize(np.asarray(raw), sc, tr, order=order, **kw)
        params = {k: v for k, v in r.history[-1].items() if k != "op"}
        res = _derived(image, r.array, "resize", name=f"{image.name} resized",
                       scale=r.spacing, translate=r.origin, **params)
        res[1]["contrast_limits"] = tuple(image.contrast_limits)
        return res

    return _started(run())


def normalize_widget(image: napari.layers.Image,
                     method: Literal["window", "minmax", "zscore", "percentile"] = "window",
                     window: WINDOWS = "soft_tissue",
                     low_percentile: Annotated[float, {"label": "Low percentile (%)",
                                                       "min": 0.0, "max": 100.0}] = 1.0,
                     high_percentile: Annotated[float, {"label": "High percentile (%)",
                                                        "min": 0.0, "max": 100.0}] = 99.0
                     ) -> LayerDataTuple:
    """Intensities to float32 (0..1, or z-scores) for models."""
    _check_3d_or_2d(image)
    out = preprocess.normalize(np.asarray(image.data), method, window=WINDOW_PRESETS[window],
                               percentiles=(low_percentile, high_percentile))
    res = _derived(image, out, "normalize", name=f"{image.name} normalized", method=method,
                   window=window if method == "window" else None)
    res[1]["contrast_limits"] = (float(out.min()), float(max(out.max(), out.min() + 1e-6)))
    res[1]["metadata"]["units"] = ""
    return res


def crop_widget(image: napari.layers.Image, roi: napari.layers.Layer,
                margin_mm: MM("Margin (mm)") = 0.0) -> LayerDataTuple:
    """Crop to a shapes layer's rectangle/polygon (in-plane, every slice) or to the bounding
    box of a labels layer (3D), plus ``margin_mm``. The origin moves with the crop."""
    _check_3d_or_2d(image)
    sc, tr = _grid(image)
    data = np.asarray(image.data)
    if isinstance(roi, napari.layers.Shapes):
        if len(roi.data) == 0:
            raise ValueError(f"{roi.name}: draw a rectangle first")
        i = next(iter(roi.selected_data)) if roi.selected_data else len(roi.data) - 1
        verts = _shape_in_image(roi, i, image)
        lo = np.floor(verts.min(axis=0)).astype(int)
        hi = np.ceil(verts.max(axis=0)).astype(int) + 1
        # the shape's plane (whichever is displayed): crop those two axes, keep the third
        inplane = list(range(data.ndim))
        if data.ndim == 3:
            inplane.remove(annotate.plane_of(verts, _viewed_axis(image)))
        start = np.zeros(data.ndim, int)
        stop = np.array(data.shape)
        pad = preprocess.margin_voxels(margin_mm, _metric(image), data.ndim)
        for a in inplane:
            start[a], stop[a] = lo[a] - pad[a], hi[a] + pad[a]
    elif isinstance(roi, napari.layers.Labels):
        if roi.data.shape != data.shape:
            raise ValueError(f"{roi.name}: labels shape {roi.data.shape} differs from "
                             f"{image.name} {data.shape}; draw labels on the image's grid")
        start, stop = preprocess.bbox_of(np.asarray(roi.data), margin_mm, _metric(image))
    else:
        raise ValueError("the ROI must be a shapes or labels layer")
    r = preprocess.crop(data, sc, tr, start=start, stop=stop)
    params = {k: v for k, v in r.history[-1].items() if k != "op"}
    return _derived(image, r.array, "crop", name=f"{image.name} cropped", translate=r.origin,
                    margin_mm=margin_mm, **params)


def equalize_widget(image: napari.layers.Image, method: Literal["global", "clahe"] = "clahe",
                    clip_limit: Annotated[float, {"label": "CLAHE clip limit (0-1)",
                                                  "min": 0.0, "max": 1.0,
                                                  "step": 0.005}] = 0.01,
                    slice_plane: PLANE = "acquisition"
                    ) -> FunctionWorker[LayerDataTuple]:
    """Histogram equalization (CLAHE slice by slice in ``slice_plane``), to 0..1 float32
    (in a worker)."""
    from napari.qt.threading import thread_worker

    _check_3d_or_2d(image)
    raw = image.data  # decoded in the worker
    axis = slice_axis(image, slice_plane) if raw.ndim == 3 else 0

    @thread_worker(progress={"total": 0, "desc": "equalizing"})
    def run():
        out = preprocess.equalize(np.asarray(raw), method, clip_limit=clip_limit, axis=axis)
        res = _derived(image, out, "equalize", name=f"{image.name} equalized", method=method,
                       clip_limit=clip_limit)
        res[1]["contrast_limits"] = (0.0, 1.0)
        res[1]["metadata"]["units"] = ""
        return res

    return _started(run())


def denoise_widget(image: napari.layers.Image,
                   method: Literal["gaussian", "median"] = "gaussian",
                   sigma_mm: MM("Sigma (mm)") = 1.0,
                   median_size_mm: MM("Median window (mm)") = 1.5,
                   per_slice: bool = False, slice_plane: PLANE = "acquisition"
                   ) -> FunctionWorker[LayerDataTuple]:
    """Gaussian or median smoothing with sizes in millimetres (in a worker thread);
    ``per_slice`` smooths within the planes of ``slice_plane`` only."""
    from napari.qt.threading import thread_worker

    _check_3d_or_2d(image)
    sc = _metric(image)
    raw = image.data  # decoded in the worker
    axis = slice_axis(image, slice_plane) if raw.ndim == 3 else 0
    options = dict(method=method, sigma_mm=sigma_mm, size_mm=median_size_mm,
                   per_slice=per_slice, axis=axis)
    holder: dict = {}

    @thread_worker(progress={"total": 0, "desc": "denoising"})
    def run():
        data = np.asarray(raw)
        if data.ndim == 3:
            # child processes: every core, and a Cancel stops them at once
            job = holder["job"] = preprocess.DenoiseJob(data, sc, **options)
            while not job.poll(0.1):
                yield
            if job.cancelled:
                return []  # nothing to add
            out = job.result()
        else:
            out = preprocess.denoise(data, sc, **options)
        res = _derived(image, out, "denoise", name=f"{image.name} denoised", method=method,
                       sigma_mm=sigma_mm, size_mm=median_size_mm, per_slice=per_slice)
        res[1]["contrast_limits"] = tuple(image.contrast_limits)
        return res

    worker = run()

    def stop():
        if "job" in holder:
            holder["job"].cancel()

    worker.aborted.connect(stop)
    worker.stop_job = stop
    return _started(worker)


# ------------------------------------------------------------------------------ annotation


def _shape_in_image(shapes_layer, i, image) -> np.ndarray:
    """Vertices of shape ``i`` in the image's data coordinates (world in between)."""
    verts = np.asarray(shapes_layer.data[i], float)
    world = np.array([shapes_layer.data_to_world(v) for v in verts])
    nd = image.data.ndim
    if world.shape[1] < nd:  # 2D shapes on a 3D image: on the current slice
        raise ValueError(f"{shapes_layer.name}: draw shapes with the image's dimensions")
    return np.array([image.world_to_data(w[-nd:]) for w in world])


def annotation_shapes(shapes_layer, image) -> list:
    """``(vertices in image data coordinates, kind)`` for every shape with an inside."""
    out = []
    for i, kind in enumerate(shapes_layer.shape_type):
        if kind in ("rectangle", "polygon", "ellipse"):
            out.append((_shape_in_image(shapes_layer, i, image), kind))
    if not out:
        raise ValueError(f"{shapes_layer.name}: no rectangle, polygon or ellipse to use")
    return out


def shapes_to_labels_widget(image: napari.layers.Image,
                            shapes: napari.layers.Shapes) -> LayerDataTuple:
    """Paint each rectangle/polygon/ellipse into a labels layer on the image's grid."""
    _check_3d_or_2d(image)
    lab = annotate.shapes_to_labels(annotation_shapes(shapes, image), image.data.shape,
                                    axis=_viewed_axis(image))
    return _derived(image, lab, "shapes_to_labels", name=f"{shapes.name} mask",
                    kind="labels", shapes=shapes.name)


def roi_table(image, shapes) -> list[dict]:
    """ROI statistics (area mm^2 in the true plane, HU) of a shapes layer on an image layer;
    shapes may be drawn in any displayed plane."""
    sc, _ = _grid(image)
    g = layer_grid(image, _viewer()) if image.data.ndim == 3 else None
    return annotate.roi_stats(np.asarray(image.data), annotation_shapes(shapes, image), sc,
                              affine=None if g is None else g.index_to_lps,
                              axis=_viewed_axis(image))


def measure_table(labels, image=None) -> list[dict]:
    """Per-label measurements from the true geometry: volume = voxels x |det| of the true
    affine (mm^3, mL), centroid and bounding box in patient LPS mm (through each acquired
    slice's true position when a stack has gaps), HU statistics."""
    sc, tr = _grid(labels)
    img = None
    if image is not None:
        if image.data.shape != labels.data.shape or not (
                np.allclose(image.scale, labels.scale)
                and np.allclose(image.translate, labels.translate)):
            raise ValueError(f"{labels.name} {labels.data.shape} and {image.name} "
                             f"{image.data.shape} are not on one grid")
        img = np.asarray(image.data)
    if labels.data.ndim == 3:
        g = layer_grid(labels, _viewer())
        return measure(np.asarray(labels.data), img, grid=g)
    return measure(np.asarray(labels.data), img, sc, tr)


class MeasureWidget(QWidget):
    """The measurement dock: pick labels (+ image) or shapes ROIs, measure, table, CSV.

    ``.container`` is the magicgui form, with ``measure()``/``save()`` and ``rows``.
    """

    def __init__(self, napari_viewer):
        super().__init__()
        self.container = _make_measure_widget(getattr(napari_viewer, "__wrapped__",
                                                      napari_viewer))
        QVBoxLayout(self).addWidget(self.container.native)


def _make_measure_widget(viewer):
    from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, Table
    from napari.utils.notifications import show_error, show_info

    def layers_of(kind):
        def choices(_w=None):
            return [lay.name for lay in viewer.layers if lay._type_string == kind]
        return choices

    labels_box = ComboBox(label="labels", choices=layers_of("labels"))
    image_box = ComboBox(label="image (HU)", choices=lambda w: ["(none)"] +
                         layers_of("image")(w))
    source_box = ComboBox(label="measure", choices=["labels layer", "shapes layer ROIs"])
    shapes_box = ComboBox(label="shapes", choices=layers_of("shapes"))
    run = PushButton(text="Measure")
    table = Table(value=[])
    path = FileEdit(mode="w", filter="*.csv", label="CSV")
    save = PushButton(text="Export CSV")
    box = Container(widgets=[source_box, labels_box, shapes_box, image_box, run, table, path,
                             save])
    box.rows = []
    box.labels_box, box.image_box, box.shapes_box, box.source_box = (labels_box, image_box,
                                                                      shapes_box, source_box)

    def refresh(event=None):
        for w in (labels_box, image_box, shapes_box):
            w.reset_choices()

    viewer.layers.events.inserted.connect(refresh)
    viewer.layers.events.removed.connect(refresh)

    source = Label(value="")
    box.insert(box.index(table), source)
    box.source_label = source
    box.table = table

    def confirm_overwrite(p) -> bool:
        from qtpy.QtWidgets import QMessageBox

        answer = QMessageBox.question(box.native, "Overwrite?",
                                      f"{p} exists. Replace it?")
        return answer == QMessageBox.StandardButton.Yes

    box.confirm_overwrite = confirm_overwrite

    @run.clicked.connect
    def _measure():
        try:
            img = None if image_box.value in (None, "(none)") else viewer.layers[image_box.value]
            if source_box.value.startswith("shapes"):
                if img is None:
                    raise ValueError("ROI statistics need an image layer: choose one")
                if not shapes_box.value:
                    raise ValueError("No shapes layer: draw rectangles or polygons first")
                what = shapes_box.value
                rows = roi_table(img, viewer.layers[what])
            else:
                if not labels_box.value:
                    raise ValueError("No labels layer: segment or draw one first")
                what = labels_box.value
                rows = measure_table(viewer.layers[what], img)
        except (ValueError, KeyError) as exc:
            box.rows = []  # never show numbers that no longer belong to the choice
            table.value = []
            source.value = ""
            show_error(str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc))
            return
        box.rows = rows
        table.value = [{k: (", ".join(f"{x:.2f}" for x in v) if isinstance(v, tuple) else
                            (round(v, 3) if isinstance(v, float) else v))
                        for k, v in r.items()} for r in rows]
        source.value = f"{len(rows)} row(s) from {what}" + (
            f" on {img.name}" if img is not None else "")
        show_info(f"{len(rows)} row(s) measured from {what}")

    @save.clicked.connect
    def _save():
        import os

        if not box.rows:
            show_error("Measure first: the table is empty")
            return
        target = str(path.value)
        if target in ("", ".") or os.path.isdir(target):
            show_error("Choose a CSV file name first")
            return
        overwrite = False
        if os.path.exists(target):
            if not box.confirm_overwrite(target):
                show_info(f"not saved: {target} kept")
                return
            overwrite = True
        try:
            write_measurements_csv(box.rows, target, overwrite=overwrite)
            show_info(f"saved {target}")
        except Exception as exc:  # noqa: BLE001 - shown to the user
            show_error(str(exc))

    box.measure = _measure
    box.save = _save
    return box


# ------------------------------------------------------------------------------ augmentation


def augment_widget(image: napari.layers.Image, labels: napari.layers.Labels | None = None,
                   samples: Annotated[int, {"label": "Samples", "min": 1,
                                            "max": 1000}] = 8,
                   seed: Annotated[int, {"label": "Seed", "max": 2**31 - 1}] = 0,
                   flips: Annotated[bool, {"label": "Flips (left-right, up-down)"}] = True,
                   rot90: Annotated[bool, {"label": "Quarter turns"}] = True,
                   max_angle_deg: Annotated[float, {"label": "Max. rotation (°)", "min": 0.0,
                                                    "max": 180.0}] = 10.0,
                   brightness: Annotated[float, {"label": "Brightness (± fraction of range)",
                                                 "min": 0.0, "max": 1.0,
                                                 "step": 0.05}] = 0.1,
                   contrast: Annotated[float, {"label": "Contrast (± fraction)", "min": 0.0,
                                               "max": 1.0, "step": 0.05}] = 0.1,
                   gamma_min: Annotated[float, {"label": "Gamma min.", "min": 0.05,
                                                "max": 10.0, "step": 0.05}] = 0.8,
                   gamma_max: Annotated[float, {"label": "Gamma max.", "min": 0.05,
                                                "max": 10.0, "step": 0.05}] = 1.25,
                   noise_sigma: Annotated[float, {"label": "Noise sigma (image units, HU)",
                                                  "min": 0.0, "max": 65535.0}] = 0.0,
                   crop_pixels: Annotated[int, {"label": "Random crop (pixels, 0 = none)",
                                                "min": 0, "max": 100000}] = 0
                   ) -> FunctionWorker[list[LayerDataTuple]]:
    """A preview of ``samples`` seeded augmentations as a stack (slider = sample), image and
    labels transformed together (in a worker); every sample's parameters are in the
    metadata. ``crop_pixels`` > 0 adds random in-plane crops of that size."""
    from napari.qt.threading import thread_worker

    from .core.augment import AugmentConfig, augment, config_dict

    _check_3d_or_2d(image)
    if labels is not None and labels.data.shape != image.data.shape:
        raise ValueError(f"{labels.name} is not on {image.name}'s grid")
    cfg = AugmentConfig(flip=flips, rot90=rot90, max_angle_deg=max_angle_deg,
                        brightness=brightness, contrast=contrast,
                        gamma=(gamma_min, gamma_max), noise_sigma=noise_sigma,
                        crop_shape=(crop_pixels, crop_pixels) if crop_pixels > 0 else None)
    raw, lab_raw = image.data, None if labels is None else labels.data  # decoded in the worker
    sc, tr = _grid(image)

    @thread_worker(progress={"total": 0, "desc": "augmenting"})
    def run():
        out = augment(np.asarray(raw), None if lab_raw is None else np.asarray(lab_raw),
                      n=samples, seed=seed, config=cfg)
        img = _derived(image, np.stack([a for a, _, _ in out]), "augment",
                       name=f"{image.name} augmented", scale=(1.0, *sc),
                       translate=(0.0, *tr), on_grid=False, seed=seed,
                       config=config_dict(cfg))
        img[1]["metadata"]["samples"] = [p for _, _, p in out]
        img[1]["contrast_limits"] = tuple(image.contrast_limits)
        result = [img]
        if labels is not None:
            result.append(_derived(labels, np.stack([b for _, b, _ in out]), "augment",
                                   name=f"{labels.name} augmented", kind="labels",
                                   scale=(1.0, *sc), translate=(0.0, *tr), on_grid=False,
                                   seed=seed))
        return result

    return _started(run())


# ------------------------------------------------------------------------------ dataset export


def layer_cases(image_layers, labels_layers) -> list[dict]:
    """Cases for :mod:`.core.dataset` from image layers, each paired with the labels layer on
    its grid (same shape, scale and translate), written on the image's true grid."""
    from .core.nifti import layer_geometry

    cases = []
    for img in image_layers:
        lab = next((lb for lb in labels_layers if lb.data.shape == img.data.shape
                    and np.allclose(lb.scale, img.scale)
                    and np.allclose(lb.translate, img.translate)), None)
        # the image's true grid, for the image and for the labels drawn on it
        arr, aff = layer_geometry(np.asarray(img.data), img.scale, img.translate, img.metadata)
        lab_arr = None
        if lab is not None:
            lab_arr, _ = layer_geometry(np.asarray(lab.data), img.scale, img.translate,
                                        img.metadata)
        cases.append({"image": np.asarray(arr), "affine_ras": aff,
                      "labels": None if lab_arr is None else np.asarray(lab_arr),
                      "patient": img.metadata.get("patient_id") or img.name,
                      "name": img.name, "window": img.metadata.get("window")})
    return cases


def export_dataset_widget(viewer: napari.Viewer,
                          output_folder: Annotated[pathlib.Path, {"mode": "d"}] = pathlib.Path(),
                          layout: Literal["nnU-Net v2 (NIfTI)", "2D PNG + CSV"] =
                          "nnU-Net v2 (NIfTI)",
                          dataset_id: Annotated[int, {"label": "Dataset ID (nnU-Net, 1-999)",
                                                      "min": 1, "max": 999}] = 1,
                          dataset_name: str = "DicomTools", channel: str = "CT",
                          validation_fraction: Annotated[float, {
                              "label": "Validation fraction (split by patient)", "min": 0.0,
                              "max": 0.9, "step": 0.05}] = 0.2,
                          seed: Annotated[int, {"label": "Seed", "max": 2**31 - 1}] = 0
                          ) -> None:
    """Export the *selected* image layers, each with the labels layer drawn on its grid, as a
    training dataset split by patient (no patient on both sides)."""
    from napari.utils.notifications import show_info

    from .core import dataset

    sel = list(viewer.layers.selection)
    images = [lay for lay in sel if lay._type_string == "image"]
    labels = [lay for lay in viewer.layers if lay._type_string == "labels"]
    if not images:
        raise ValueError("select one or more image layers to export")
    if str(output_folder) in ("", "."):
        raise ValueError("choose an output folder")
    cases = layer_cases(images, labels)
    if layout.startswith("nnU-Net"):
        where = dataset.export_nnunet(cases, output_folder, dataset_id=dataset_id,
                                      name=dataset_name, channel=channel,
                                      val_fraction=validation_fraction, seed=seed)
    else:
        where = dataset.export_2d(cases, output_folder, val_fraction=validation_fraction,
                                  seed=seed)
    show_info(f"exported {len(cases)} case(s) to {where}")
