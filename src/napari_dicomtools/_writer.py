"""napari writer contributions: thin adapters over :mod:`napari_dicomtools.core.nifti` and
:mod:`napari_dicomtools.core.png`."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt

from .core.errors import DicomToolsError
from .core.nifti import write_layer_nifti

if TYPE_CHECKING:
    from ._reader import LayerData
    from .core.grid import Grid
    from .core.png import Annotation
    from .core.series import Series
    from .core.volume import VoxelArray

#: napari's layer attributes (``layer.as_layer_data_tuple()[1]``): name, scale, translate,
#: metadata, features, colormap...
Meta = dict[str, Any]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _reported(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Show a writer's refusal as its own notification (napari's save dialog otherwise only
    says the writer failed), then let napari see the error too."""
    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return fn(*args, **kwargs)
        except (ValueError, OSError, DicomToolsError) as exc:
            try:
                from napari.utils.notifications import show_error

                show_error(f"Not saved: {exc}")
            except Exception:  # noqa: BLE001 - no napari: the exception says it all
                pass
            raise
    return wrapper


def _nifti(path: str, data: VoxelArray, meta: Meta) -> list[str]:
    # napari never asks twice: a file chosen in its save dialog was confirmed by the user
    scale = meta.get("scale", (1.0,) * len(data.shape))
    translate = meta.get("translate", (0.0,) * len(data.shape))
    return [write_layer_nifti(path, data, scale, translate,
                              _with_grid(data, scale, translate, meta.get("metadata") or {}),
                              overwrite=True)]


def _with_grid(data: VoxelArray, scale: Sequence[float], translate: Sequence[float],
               metadata: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` plus the true grid of the viewer layer this data sits on (a labels layer
    painted on one of our images), so it is saved on exactly the image's grid."""
    from .core.grid import GRID_KEY, Grid

    if GRID_KEY in metadata or len(data.shape) < 3:
        return metadata
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # noqa: BLE001 - no viewer: written as shown
        return metadata
    for layer in [] if viewer is None else viewer.layers:
        g = Grid.from_metadata(layer.metadata, data.shape[-3:], scale, translate)
        if g is not None:
            return {**metadata, GRID_KEY: g.to_metadata()}
    return metadata


@_reported
def write_image_nifti(path: str, data: VoxelArray, meta: Meta) -> list[str]:
    """Image layer -> NIfTI on its true patient grid (sform/qform RAS, like dcm2niix)."""
    if meta.get("rgb"):
        raise ValueError(f"{path}: RGB layers cannot be saved as NIfTI; use PNG")
    return _nifti(path, data, meta)


@_reported
def write_labels_nifti(path: str, data: VoxelArray, meta: Meta) -> list[str]:
    """Labels layer -> NIfTI in the same patient space as the image it was drawn on."""
    return _nifti(path, data, meta)


def _shapes_from_layer(data: Sequence[npt.ArrayLike], meta: Meta) -> list[Annotation]:
    """Shapes layer data -> world-coordinate dicts for :func:`export_annotated`."""
    import numpy as np

    scale = np.asarray(meta.get("scale", 1.0), float)
    translate = np.asarray(meta.get("translate", 0.0), float)
    types = meta.get("shape_type") or ["polygon"] * len(data)
    edges = meta.get("edge_color")
    text = meta.get("text") or {}
    features = meta.get("features")
    label_key = text.get("string") if isinstance(text, dict) else None
    if isinstance(label_key, dict):
        label_key = label_key.get("feature")
    out: list[Annotation] = []
    for i, verts in enumerate(data):
        color: tuple[int, ...] = (255, 255, 0)
        if edges is not None and len(edges) > i:
            color = tuple(int(round(float(c) * 255)) for c in np.asarray(edges[i])[:3])
        label = None
        if features is not None and label_key and label_key in getattr(features, "columns", ()):
            label = str(features[label_key].iloc[i])
        out.append({"type": types[i] if i < len(types) else "polygon",
                    "vertices": np.asarray(verts, float) * scale + translate,
                    "color": color, "label": label,
                    "name": f"shape {i + 1} of {meta.get('name') or 'the shapes layer'!r}"})
    return out


@_reported
def write_png_layers(path: str, layer_data: list[LayerData]) -> list[str]:
    """One image layer (+ any shapes and labels layers) -> PNG(s) with annotations burned in.

    The window is the image layer's contrast limits and the grey is inverted when the layer
    shows inverted grey (a MONOCHROME1 image), i.e. what the user sees. A shape is drawn on
    the slice of the plane it was drawn in (``<name>_<plane>_<slice>.png``); without shapes,
    every slice of the plane shown (else of the series' acquisition plane) is written.
    A 4D layer writes the time points its shapes were drawn on, else the one shown, else
    all (``<name>_t<t>_<plane>_<slice>.png``). Numbered files are never replaced: napari's
    save dialog confirmed only the name typed. A notification says what was written and
    names any shape left out.
    """
    import warnings

    from ._reader import shows_inverted_grey
    from .core.png import export_annotated

    images = [(d, m) for d, m, t in layer_data if t == "image"]
    if len(images) != 1:
        raise ValueError(f"{path}: select exactly one image layer (and any shapes/labels)")
    data, meta = images[0]
    lo, hi = meta.get("contrast_limits") or (float(data.min()), float(data.max()))
    window = ((lo + hi) / 2.0, max(hi - lo, 1.0))
    shapes: list[Annotation] = []
    for d, m, t in layer_data:
        if t == "shapes":
            shapes.extend(_shapes_from_layer(d, m))
    labels = [d for d, m, t in layer_data if t == "labels"]
    viewer = _viewer_showing(data)
    plane = _shown_plane(viewer, meta)
    spatial = data.ndim - (1 if meta.get("rgb") else 0)
    scale = tuple(meta.get("scale", (1.0,) * data.ndim))
    translate = tuple(meta.get("translate", (0.0,) * data.ndim))
    lab = labels[0] if labels else None
    with warnings.catch_warnings(record=True) as caught:  # shapes left out: a notification
        warnings.simplefilter("always")
        if spatial == 4:  # time, z, y, x
            files = []
            for tp, stem, on_t in _time_pages(path, shapes, scale, translate, data.shape[0],
                                              _shown_time(viewer, scale, translate)):
                files += export_annotated(
                    data[tp], scale[1:], translate[1:], stem, window=window,
                    rgb=bool(meta.get("rgb")), shapes=on_t,
                    labels=lab[tp] if lab is not None and lab.ndim == 4 else lab,
                    invert=shows_inverted_grey(meta), plane=plane)
        else:
            files = export_annotated(data, scale, translate, path, window=window,
                                     rgb=bool(meta.get("rgb")), shapes=shapes, labels=lab,
                                     overwrite=spatial == 2,  # the name the dialog confirmed
                                     invert=shows_inverted_grey(meta), plane=plane)
    for w in caught:
        _notify("warning", str(w.message))
    _notify("info", _png_summary(files))
    return files


def _time_pages(path: str, shapes: Sequence[Annotation], scale: Sequence[float],
                translate: Sequence[float], n_time: int, shown: int | None
                ) -> list[tuple[int, str, list[Annotation]]]:
    """``(time point, file name, its shapes)`` to write of a 4D layer: the time points the
    shapes were drawn on, else the one shown, else all; ``_t<t:03d>`` joins the name.
    Shapes without a time coordinate go with every time point written."""
    import warnings

    stem = path[:-4] if path.lower().endswith(".png") else path
    by_time: dict[int, list[Annotation]] = {}
    anytime: list[Annotation] = []
    stray: list[str] = []
    for i, sh in enumerate(shapes):
        v = np.asarray(sh["vertices"], float)
        if v.ndim != 2 or v.shape[1] < 4:
            anytime.append(sh)
            continue
        ts = np.round((v[:, -4] - translate[-4]) / scale[-4]).astype(int)
        if (ts != ts[0]).any() or not 0 <= ts[0] < n_time:
            stray.append(f"{sh.get('name') or f'shape {i + 1}'} (on no single time point)")
        else:
            by_time.setdefault(int(ts[0]), []).append(sh)
    if stray:
        warnings.warn(f"{path}: not drawn: " + "; ".join(stray), stacklevel=2)
    times = sorted(by_time) or ([shown] if shown is not None else list(range(n_time)))
    return [(t, f"{stem}_t{t:03d}.png", by_time.get(t, []) + anytime) for t in times]


def _viewer_showing(data: object) -> Any:
    """The current napari viewer when one of its layers holds ``data``, else None."""
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # noqa: BLE001 - no napari, no viewer
        return None
    if viewer is not None and any(layer.data is data for layer in viewer.layers):
        return viewer
    return None


def _shown_time(viewer: Any, scale: Sequence[float], translate: Sequence[float]) -> int | None:
    """The time point (index of a 4D layer's first axis) the viewer shows, or None."""
    if viewer is None or viewer.dims.ndim < 4:
        return None
    return int(round((float(viewer.dims.point[-4]) - translate[-4]) / scale[-4]))


def _shown_plane(viewer: Any, meta: Meta) -> str:
    """The plane ``viewer`` (showing the image layer) shows in 2D, else the plane the
    layer's series was acquired in, else axial."""
    from ._viewer import current_plane
    from .core.grid import GRID_KEY
    from .core.png import AXES

    if viewer is not None and viewer.dims.ndisplay == 2:
        shown = current_plane(viewer)
        if shown is not None:
            return str(shown)
    grid = (meta.get("metadata") or {}).get(GRID_KEY) or {}
    return AXES[int(grid.get("acquisition_axis", 0))]


def _png_summary(files: Sequence[str]) -> str:
    """``Saved 3 PNG into <folder>: 1 axial (slice 12), 2 sagittal (slices 4, 9 at t1)``."""
    import os
    import re

    by_plane: dict[str, list[str]] = {}
    for f in files:
        m = re.search(r"(?:_t(\d{3,}))?_(axial|coronal|sagittal)_(\d{4,})\.png$", f)
        if m:
            at = f" at t{int(m.group(1))}" if m.group(1) else ""
            by_plane.setdefault(m.group(2), []).append(f"{int(m.group(3))}{at}")
    parts = []
    for plane, ks in by_plane.items():
        shown = ", ".join(ks[:6]) + (", ..." if len(ks) > 6 else "")
        parts.append(f"{len(ks)} {plane} (slice{'s' if len(ks) > 1 else ''} {shown})")
    where = os.path.dirname(files[0]) if files else ""
    return f"Saved {len(files)} PNG into {where or '.'}" + (": " + ", ".join(parts)
                                                            if parts else "")


@_reported
def write_anonymized_series(path: str, data: object, meta: Meta) -> list[str]:
    """Save the DICOM files behind an image layer, de-identified (PS3.15 Annex E basic
    profile), into the folder ``path`` without its ``.dcm`` suffix."""
    import os
    import warnings

    from .core.anonymize import anonymize_files, summarize_warnings

    files = (meta.get("metadata") or {}).get("files")
    if not files:
        raise ValueError(f"{path}: this layer did not come from DICOM files; nothing to "
                         "anonymize")
    out_dir = path[:-4] if path.lower().endswith(".dcm") else path
    if os.path.exists(out_dir) and os.listdir(out_dir):
        raise ValueError(f"{out_dir}: exists and is not empty; not overwriting")
    with warnings.catch_warnings(record=True) as caught:  # one notification, not one a file
        warnings.simplefilter("always")
        report = anonymize_files(files, out_dir)
    if not report.written:
        raise ValueError(f"{path}: nothing written: " + "; ".join(r for _, r in report.skipped))
    notes = summarize_warnings(str(w.message) for w in caught)
    if notes:
        _notify("warning", f"Anonymized {len(report.written)} file(s) into {out_dir}:\n"
                + "\n".join(notes[:5]) + (f"\n(+{len(notes) - 5} more)" if len(notes) > 5
                                         else ""))
    return report.written


def _notify(kind: str, message: str) -> None:
    """A napari notification (``show_warning``/``show_info``...); nothing without napari."""
    try:
        from napari.utils import notifications
    except ImportError:  # the writer called from a script without napari
        return
    getattr(notifications, f"show_{kind}")(message)


def _seg_reference(data: VoxelArray, meta: Meta) -> tuple[Grid | None, list[str]]:
    """(true grid, reference image files) of a labels layer, from its own metadata or the
    viewer layer of our DICOM it lies on; (None, []) when it lies on no series' grid."""
    from .core.grid import GRID_KEY, Grid

    ndim = len(data.shape)
    scale = meta.get("scale", (1.0,) * ndim)
    translate = meta.get("translate", (0.0,) * ndim)
    own = meta.get("metadata") or {}
    grid = Grid.from_metadata(own, data.shape, scale, translate)
    files = list(own.get("reference_files") or own.get("files") or [])
    if grid is not None and files:
        return grid, files
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # noqa: BLE001 - no viewer: only the layer's own metadata counts
        viewer = None
    for layer in [] if viewer is None else viewer.layers:
        md = layer.metadata
        if GRID_KEY not in md or not md.get("files"):
            continue
        g = Grid.from_metadata(md, data.shape, scale, translate)
        same_series = own.get("series_uid") and own.get("series_uid") == md.get("series_uid")
        if g is not None and (grid is None or same_series or
                              np.allclose(g.index_to_lps, grid.index_to_lps)):
            return g, list(md["files"])
    return grid, files


#: segment specs per label value (write_seg's / write_rtstruct's ``segments``)
Specs = dict[int | str, dict[str, Any]]


def segments_of_layer(meta: Meta, values: Sequence[int]) -> Specs:
    """Segment specs per label value: the SEG's own table when the layer came from one,
    names from the layer's ``features`` and the colours the user sees."""
    own = meta.get("metadata") or {}
    table: dict[int, dict[str, Any]] = {}
    feats = meta.get("features")
    stored = own.get("segments") or []
    if feats is not None and "index" in getattr(feats, "columns", ()):
        for i, v in enumerate(feats["index"]):
            spec = dict(stored[i]) if i < len(stored) else {}
            if "label" in feats.columns:
                spec["label"] = str(feats["label"].iloc[i])
            table[int(v)] = spec
    cmap = meta.get("colormap")
    out: Specs = {}
    for v in values:
        spec = dict(table.get(int(v), {}))
        if cmap is not None and hasattr(cmap, "map"):
            rgba = np.asarray(cmap.map(np.array([v])), float).reshape(-1)
            if rgba.size >= 3 and (rgba.size < 4 or rgba[3] > 0):
                spec["color"] = tuple(int(round(c * 255)) for c in rgba[:3])
        out[int(v)] = spec
    return out


def _labels_on_reference(path: str, data: VoxelArray,
                         meta: Meta) -> tuple[npt.NDArray[Any], Series]:
    """(``(slice, row, column)`` labels, reference Series) of a labels layer lying on a DICOM
    series' grid; ValueError naming the reason otherwise."""
    from .core.series import scan

    if len(data.shape) != 3:
        raise ValueError(f"{path}: DICOM SEG/RTSTRUCT are written from a 3D labels layer, "
                         f"this one is {len(data.shape)}D")
    grid, files = _seg_reference(data, meta)
    if grid is None or grid.display is None or not files:
        raise ValueError(f"{path}: this labels layer does not lie on a DICOM series' grid "
                         "(drawn on a NIfTI, resized, cropped or moved); save it as NIfTI, "
                         "or draw it on a layer opened from DICOM")
    arr = np.asarray(grid.display.invert(np.asarray(data)))
    images = [s for s in scan(files) if s.kind == "IMAGE" and s.shape == arr.shape]
    if len(images) != 1:
        raise ValueError(f"{path}: the reference series ({len(files)} file(s)) could not be "
                         "read back as one volume of the layer's shape")
    return arr, images[0]


@_reported
def write_labels_seg(path: str, data: VoxelArray, meta: Meta) -> list[str]:
    """Labels layer -> DICOM SEG referencing the DICOM series it was drawn on (or read with)."""
    from .core.seg import write_seg

    arr, series = _labels_on_reference(path, data, meta)
    values = [int(v) for v in np.unique(arr) if v != 0]
    return [write_seg(arr, series, path, segments=segments_of_layer(meta, values),
                      overwrite=True, description=f"{meta.get('name') or 'Segmentation'}")]


@_reported
def write_labels_rtstruct(path: str, data: VoxelArray, meta: Meta) -> list[str]:
    """Labels layer -> RT Structure Set (one ROI per label value) referencing its series."""
    from .core.rtstruct import write_rtstruct

    arr, series = _labels_on_reference(path, data, meta)
    values = [int(v) for v in np.unique(arr) if v != 0]
    specs: Specs = {v: {k: spec[k] for k in ("label", "color") if k in spec}
             for v, spec in segments_of_layer(meta, values).items()}
    return [write_rtstruct(arr, series, path, segments=specs, overwrite=True,
                           description=f"{meta.get('name') or 'Structure set'}")]


def _image_under(points_world: npt.NDArray[np.float64]
                 ) -> tuple[Grid, list[str], Any] | None:
    """(true grid, files, layer) of the DICOM image layer in the viewer whose extent holds
    every point (world ``(z, y, x)`` mm), or None."""
    from .core.grid import Grid

    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # noqa: BLE001
        viewer = None
    for layer in [] if viewer is None else viewer.layers:
        md = layer.metadata
        if type(layer).__name__ != "Image" or not md.get("files") or layer.data.ndim != 3:
            continue
        grid = Grid.from_metadata(md, layer.data.shape, layer.scale, layer.translate)
        if grid is None:
            continue
        idx = (points_world - np.asarray(layer.translate)) / np.asarray(layer.scale)
        shape = np.asarray(layer.data.shape)
        if np.all(idx >= -0.5) and np.all(idx <= shape - 0.5):
            return grid, list(md["files"]), layer
    return None


@_reported
def write_shapes_sr(path: str, data: Sequence[npt.ArrayLike], meta: Meta) -> list[str]:
    """Shapes layer -> DICOM SR TID 1500 measurement report (area of polygons, length of
    paths, in the true patient geometry) referencing the DICOM image they were drawn on."""
    from .core.series import scan
    from .core.sr import path_length_mm, polygon_area_mm2, write_sr

    shapes = [np.asarray(d, float) for d in data]
    if not shapes or any(s.ndim != 2 or s.shape[1] != 3 for s in shapes):
        raise ValueError(f"{path}: a measurement report is written from 3D shapes drawn on a "
                         "DICOM image layer")
    scale = np.asarray(meta.get("scale", (1, 1, 1)), float)[-3:]
    translate = np.asarray(meta.get("translate", (0, 0, 0)), float)[-3:]
    world = [s * scale + translate for s in shapes]
    found = _image_under(np.concatenate(world))
    if found is None:
        raise ValueError(f"{path}: these shapes lie on no DICOM image layer in the viewer; "
                         "draw them on a layer opened from DICOM")
    grid, files, layer = found
    images = [s for s in scan(files) if s.kind == "IMAGE"]
    types = meta.get("shape_type") or ["polygon"] * len(shapes)
    feats = meta.get("features")
    labels = (list(feats["label"]) if feats is not None and "label" in
              getattr(feats, "columns", ()) else [f"ROI {i + 1}" for i in range(len(shapes))])
    rois = []
    for i, w in enumerate(world):
        idx = (w - np.asarray(layer.translate)) / np.asarray(layer.scale)
        lps = grid.lps(idx)  # through the true (oblique, sheared) geometry
        kind = str(types[i]) if i < len(types) else "polygon"
        if kind in ("polygon", "rectangle", "ellipse"):
            meas = {"area": polygon_area_mm2(lps)}
            kind = "polygon"
        else:
            meas = {"length": path_length_mm(lps)}
        rois.append({"label": str(labels[i]), "points": lps, "type": kind,
                     "measurements": meas})
    return [write_sr(rois, images[0], path, overwrite=True,
                     description=f"{meta.get('name') or 'Measurement report'}")]
