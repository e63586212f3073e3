"""napari reader contribution: a thin adapter from :class:`Volume` to layer data.

It computes nothing itself: ``scan``/``read_volume`` do the work, :func:`volume_to_layer_data`
only translates geometry (axis-aligned view + scale/translate in patient mm, the true affine
kept in ``layer.metadata``), values (window -> contrast limits) and names.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt

from .core import geometry
from .core.errors import DicomToolsError, NoSeriesError
from .core.grid import GRID_KEY, Grid
from .core.headers import looks_like_dicom
from .core.series import Series, SeriesList
from .core.sources import Skipped
from .core.volume import DecodeAhead, Volume, read_volume

if TYPE_CHECKING:
    from napari.utils.colormaps import Colormap

    from .core.seg import Segmentation
    from .core.sources import Source

log = logging.getLogger(__name__)

#: napari's full ``LayerDataTuple``: ``(data, layer keyword arguments, layer type)``; the
#: data is a numpy or dask array (image, labels) or a list of point arrays (shapes)
LayerData: TypeAlias = tuple[Any, dict[str, Any], str]
#: what napari hands a reader: one path or several
PathOrPaths: TypeAlias = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]

#: series larger than this (bytes, decoded) open lazily: slices decode as napari shows them
LAZY_THRESHOLD = int(os.environ.get("NAPARI_DICOMTOOLS_LAZY_BYTES", 512 * 2**20))

_DICOM_EXT = (".dcm", ".dicom", ".dic", ".ima")


def _looks_dicom_file(path: str) -> bool:
    name = os.path.basename(path)
    if not os.path.isfile(path):  # FIFOs, sockets, devices: open() on a FIFO blocks forever
        return False
    if name.upper() == "DICOMDIR" or name.lower().endswith(_DICOM_EXT):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return looks_like_dicom(head)


def _looks_dicom_zip(path: str) -> bool:
    if not os.path.isfile(path):  # a FIFO named *.zip would block
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist()[:50]:
                if info.is_dir():
                    continue
                n = info.filename
                if n.lower().endswith(_DICOM_EXT) or os.path.basename(n).upper() == "DICOMDIR":
                    return True
                with zf.open(info) as f:
                    head = f.read(132)
                if head[128:132] == b"DICM":
                    return True
    except (zipfile.BadZipFile, OSError, RuntimeError):
        return False
    return False


def _looks_dicom_dir(path: str, limit: int = 200) -> bool:
    seen = 0
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for fn in sorted(files):
            full = os.path.join(root, fn)
            if fn.lower().endswith(".zip"):
                if _looks_dicom_zip(full):
                    return True
            elif _looks_dicom_file(full):
                return True
            seen += 1
            if seen >= limit:
                return False
    return False


def is_dicom_path(path: str | os.PathLike[str]) -> bool:
    """Cheap test (a few bytes per file) of whether ``path`` holds DICOM we can read."""
    try:
        path = os.fspath(path)
    except TypeError:
        return False
    if os.path.isdir(path):
        return _looks_dicom_dir(path)
    if not os.path.isfile(path):
        return False
    if path.lower().endswith(".zip"):
        return _looks_dicom_zip(path)
    return _looks_dicom_file(path)


def napari_get_reader(path: PathOrPaths) -> Callable[..., list[LayerData]] | None:
    """npe2 reader getter: the reader function for DICOM paths, else None (never raises)."""
    try:
        paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        if paths and all(is_dicom_path(p) for p in paths):
            return read_dicom
    except Exception:  # noqa: BLE001 - a getter must never break napari's open dialog
        log.debug("not offering to read %r: the DICOM check failed", path, exc_info=True)
        return None
    return None


def read_dicom(path: PathOrPaths, *, rtstruct_contours: bool = False) -> list[LayerData]:
    """Read every image series under ``path`` (file/folder/zip/DICOMDIR, or a list), and the
    SEG, RTSTRUCT, SR and RT Dose objects on the images they reference;
    ``rtstruct_contours``: structure sets also as shapes layers of their contours (off for
    napari's File > Open; the DICOM browser has a check box).

    Of several paths, those that open nothing are named with the reason in a warning (an
    error naming each of them when none opens); the others open."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    if len(paths) > 1:
        layers = _read_several([os.fspath(p) for p in paths], rtstruct_contours)
    else:
        with _scanning(paths[0]) as (series, ahead):
            _warn_skipped(_loadable(paths[0], series, series.skipped))
            layers = [x for _, got in _series_layers(series, ahead, rtstruct_contours)
                      for x in got]
            if not layers:
                raise NoSeriesError(paths[0], "no series could be decoded", series.skipped)
    _install_viewer_controller()
    return layers


@contextlib.contextmanager
def _scanning(path: str | os.PathLike[str] | list[str]
              ) -> Iterator[tuple[SeriesList, DecodeAhead]]:
    """Scan ``path`` while compressed frames decode (an uncompressed volume's memory faults
    in) on the spare cores, as in read_volume(folder); leaving the block ends the threads
    and frees what no eager read took (a series that opens lazily)."""
    with DecodeAhead(max_volume=LAZY_THRESHOLD) as ahead:  # lazy series: not faulted in
        yield ahead.scan(path), ahead


def _loadable(path: str | os.PathLike[str], series: Sequence[Series],
              skipped: Sequence[Skipped]) -> list[Skipped]:
    """``skipped``, unless ``path`` holds no series: then the error that says why."""
    if not series:
        raise NoSeriesError(path, _no_image(skipped), skipped)
    return list(skipped)


def _no_image(skipped: Sequence[Skipped]) -> str:
    """Why a path holds no series: the files left out (the first five) and why."""
    why = "; ".join(str(s) for s in skipped[:5]) or "no files"
    return f"no loadable DICOM image ({why})"


def _warn_skipped(skipped: Sequence[Skipped]) -> None:
    if skipped:
        first = "; ".join(str(s) for s in skipped[:3])
        more = f" (and {len(skipped) - 3} more)" if len(skipped) > 3 else ""
        warnings.warn(f"skipped {len(skipped)} file(s): {first}{more}", stacklevel=3)


def _series_layers(series: SeriesList, ahead: DecodeAhead, contours: bool
                   ) -> list[tuple[Series, list[LayerData]]]:
    """Each series a scan found, with its layers (none: a warning said why)."""
    out: list[tuple[Series, list[LayerData]]] = []
    total = 0
    for s in series:
        if s.kind != "IMAGE":
            # SEG, RTSTRUCT, SR, RT dose: on the image they reference, not grey images
            try:
                out.append((s, read_annotation(s, series, contours=contours)))
            except DicomToolsError as exc:
                warnings.warn(f"{s.kind} {s.name!r} not opened: {exc}", stacklevel=3)
                out.append((s, []))
            continue
        nbytes = int(np.prod(s.shape)) * (3 if s.is_rgb else 1) * 2
        total += nbytes
        try:
            # large series, or many series together, decode lazily as napari shows them
            lazy = nbytes > LAZY_THRESHOLD or total > 2 * LAZY_THRESHOLD
            out.append((s, [image_layer_data(s, lazy=lazy, ahead=ahead)]))
        except DicomToolsError as exc:
            warnings.warn(f"series {s.name!r} not opened: {exc}", stacklevel=3)
            out.append((s, []))
    return out


class _Inputs:
    """Which of several input paths a scanned file came from (the most specific one: a
    file or zip given itself, else the nearest folder; a DICOMDIR's files are under its
    folder)."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)
        self._keys: dict[str, str] = {}
        for p in paths:  # a folder given as such wins over a DICOMDIR in it
            if os.path.basename(p).upper() == "DICOMDIR":
                self._keys.setdefault(self._norm(os.path.dirname(p) or "."), p)
        for p in paths:
            self._keys[self._norm(p)] = p

    @staticmethod
    def _norm(path: str) -> str:
        return os.path.normcase(os.path.abspath(path))

    def of(self, file: str) -> str | None:
        """The input ``file`` (a path as scanning reports it) came from."""
        key = self._norm(file.split("::", 1)[0])  # archive.zip::member
        while True:
            if key in self._keys:
                return self._keys[key]
            parent = os.path.dirname(key)
            if parent == key:
                return None
            key = parent


def _read_several(paths: list[str], contours: bool) -> list[LayerData]:
    """:func:`read_dicom` of several paths, scanned together (a series may span them);
    each path that opens nothing is named with why (as one path's error reads)."""
    failed = {p: "no such file or folder" for p in paths if not os.path.exists(p)}
    found = [p for p in paths if p not in failed]
    if not found:
        raise NoSeriesError(None, _report(paths, failed))
    inputs = _Inputs(found)
    with _scanning(found) as (series, ahead):
        opened = _series_layers(series, ahead, contours)
    tried: set[str | None] = set()
    good: set[str | None] = set()
    for s, got in opened:
        came_from = {inputs.of(f) for f in s.files}
        tried |= came_from
        if got:
            good |= came_from
    left_out: dict[str | None, list[Skipped]] = {}
    for k in series.skipped:
        left_out.setdefault(inputs.of(k.path), []).append(k)
    for p in found:
        if p not in tried:
            failed[p] = _no_image(left_out.get(p, []))
        elif p not in good:
            failed[p] = "no series could be decoded"
    _warn_skipped([k for p, ks in left_out.items() if p not in failed for k in ks])
    layers = [x for _, got in opened for x in got]
    if not layers:
        raise NoSeriesError(None, _report(paths, failed), series.skipped)
    if failed:
        warnings.warn(_report(paths, failed), stacklevel=3)
    return layers


def _report(paths: list[str], failed: dict[str, str]) -> str:
    """Each path that opened nothing, and why, in the order given:
    ``path: reason; path: reason``."""
    return "; ".join(f"{p}: {failed[p]}" for p in paths if p in failed)


def image_layer_data(series: Series, *, lazy: bool = False,
                     ahead: DecodeAhead | None = None) -> LayerData:
    """The image ``LayerDataTuple`` of one image series; an RT Dose is read in its dose
    units and shown as a colour wash over the images (:func:`dose_layer_data`); ``ahead``:
    the frames decoded while the series was scanned (:class:`~.core.volume.DecodeAhead`)."""
    from .core.rtdose import RTDOSE_SOP_CLASS, read_dose

    if series.first.sop_class == RTDOSE_SOP_CLASS:
        return dose_layer_data(read_dose(series))  # dose grids are small: read eagerly
    return volume_to_layer_data(read_volume(series, lazy=lazy, ahead=ahead))


def dose_layer_data(vol: Volume) -> LayerData:
    """An RT Dose volume (:func:`~.core.rtdose.read_dose`) as an image layer on its own grid
    in world mm: a translucent colour wash from 0 (transparent) to the maximum dose, named
    with its unit (Gy, or relative dose: never relabelled as Gy)."""
    from napari.utils.colormaps import Colormap, ensure_colormap

    data, kwargs, kind = volume_to_layer_data(vol)
    turbo = ensure_colormap("turbo")
    colors = np.array(turbo.colors[::16], float)
    colors[0] = (0.0, 0.0, 0.0, 0.0)  # no dose: nothing drawn over the CT
    hi = float(vol.metadata.get("max_dose") or np.max(np.asarray(data)))
    unit = vol.metadata.get("units", "")
    kwargs.update(name=f"{kwargs['name']} ({unit})", contrast_limits=[0.0, hi if hi > 0 else 1.0],
                  colormap=Colormap(colors, name=f"dose {unit}"), blending="translucent",
                  opacity=0.5)
    return data, kwargs, kind


def _install_viewer_controller() -> None:
    """Attach the geometry controller (acquisition plane, upright radiological display,
    oblique notices, true-LPS status readout) to the viewer that is opening these layers."""
    if "napari.viewer" not in sys.modules:
        # no Viewer can exist: a script or a test reading without one is spared importing
        # the whole of napari (seconds) just to learn there is no current viewer
        return
    try:
        import napari

        from ._viewer import install

        viewer = napari.current_viewer()
        if viewer is not None:
            install(viewer)
    except Exception as exc:  # noqa: BLE001 - reading must not fail because of display
        # the user sees this one (napari shows warnings): the layers would not open in their
        # acquisition plane; the traceback goes to the log (dicomtools -vv / logging)
        log.debug("viewer controller not installed", exc_info=True)
        warnings.warn(f"viewer controller not installed: {exc}", stacklevel=2)


def grey_colormap(metadata: Mapping[str, Any]) -> str:
    """The napari colormap that shows a grey image as its DICOM photometric interpretation says.

    MONOCHROME1 means the minimum value is displayed white (PS3.3 C.7.6.3.1.2): the values
    stay the Modality LUT output (HU for CT) and only the display is inverted, after the
    window, as 3D Slicer's "Inverted Grey" does. Layers made from such a layer keep the look
    (``"photometric"`` is one of the keys a derived layer keeps).

    Parameters
    ----------
    metadata : Mapping
        A layer's or volume's metadata (its ``"photometric"`` entry).

    Returns
    -------
    str
        ``"gray_r"`` for MONOCHROME1, ``"gray"`` otherwise.

    Examples
    --------
    >>> grey_colormap({"photometric": "MONOCHROME1"}), grey_colormap({})
    ('gray_r', 'gray')
    """
    return "gray_r" if metadata.get("photometric") == "MONOCHROME1" else "gray"


def shows_inverted_grey(layer_kwargs: Mapping[str, Any]) -> bool:
    """Whether an image layer shows its minimum value white, for writers that export what
    the user sees (PNG, secondary capture).

    Parameters
    ----------
    layer_kwargs : Mapping
        The layer's attributes (``layer.as_layer_data_tuple()[1]``, where napari gives the
        colormap as a dict) or a reader's layer keyword arguments (the colormap as a name).

    Returns
    -------
    bool
        The colormap is ``gray_r``; with no colormap given, the layer's metadata says
        MONOCHROME1.

    Examples
    --------
    >>> shows_inverted_grey({"colormap": {"name": "gray_r"}})
    True
    >>> shows_inverted_grey({"colormap": "gray", "metadata": {"photometric": "MONOCHROME1"}})
    False
    """
    cmap = layer_kwargs.get("colormap")
    name = cmap.get("name") if isinstance(cmap, dict) else getattr(cmap, "name", cmap)
    if name is None:
        name = grey_colormap(layer_kwargs.get("metadata") or {})
    return bool(name == "gray_r")


def _contrast_limits(vol: Volume) -> list[float] | None:
    if vol.rgb:
        return None
    if vol.window is not None:
        c, w = vol.window.center, vol.window.width
        return [c - w / 2.0, c + w / 2.0]
    arr = vol.array
    if hasattr(arr, "compute"):  # lazy: look at the middle slice only
        lead = (arr.shape[0] // 2,) if vol.n_time == 1 else (0, arr.shape[1] // 2)
        sample = np.asarray(arr[lead])
    else:
        sample = np.asarray(arr)  # the array itself
    lo, hi = float(np.min(sample)), float(np.max(sample))
    if hi <= lo:
        hi = lo + 1
    return [lo, hi]


def oblique_notice(name: str, grid: Grid) -> str:
    """What the user is told when a layer's display is not its true geometry."""
    what = "gantry-tilted" if grid.display is not None and _sheared(grid) else "oblique"
    return (f"{name}: {what} by {grid.residual_deg:.1f} degrees, shown axis-aligned (voxels up "
            f"to {grid.display_error_mm:.0f} mm from their true position on screen); "
            "measurements and exports use the true geometry. Plugins > DICOM Tools > "
            "Planes & geometry > Resample to patient axes makes an exact layer.")


def _sheared(grid: Grid) -> bool:
    m = grid.index_to_lps[:3, :3]
    u = m / np.linalg.norm(m, axis=0)
    return bool(max(abs(u[:, 0] @ u[:, 1]), abs(u[:, 0] @ u[:, 2]),
                    abs(u[:, 1] @ u[:, 2])) > 1e-3)


def volume_to_layer_data(vol: Volume) -> LayerData:
    """A napari ``LayerDataTuple`` ``(data, kwargs, "image")`` for a :class:`Volume`.

    The data is shown axis-aligned in world ``(z, y, x)`` LPS millimetres (an axial view
    first), through numpy/dask views of ``vol.array`` (no copy). ``kwargs["metadata"]`` keeps
    the true geometry: ``affine_lps`` (voxel (column, row, slice) -> LPS), ``world_affine``
    (array index -> world) and the ``display_transform`` that maps the layer data back to
    ``vol.array``.
    """
    lead = 1 if vol.n_time > 1 else 0
    meta = dict(vol.metadata)
    meta.update(
        spacing=tuple(vol.spacing),
        origin=tuple(float(x) for x in vol.origin),
        direction=np.asarray(vol.direction).tolist(),
        affine_lps=vol.affine_lps.tolist(),
        affine_ras=vol.affine_ras.tolist(),
        world_affine=vol.world_affine.tolist(),
    )
    if vol.series is not None:
        # the source of every frame in storage order (time-major, then slice), for the
        # header inspector and writers that go back to the files
        meta["frame_sources"] = [(f.instance.path, f.index) for f in vol.series.frames]
        meta["n_slices"] = vol.series.n_slices
        # pixel size known or not (units "pixel"), and where it comes from; a cine's frame
        # time (ms)
        meta.update(spatial_units=vol.series.spatial_units,
                    spacing_source=vol.series.spacing_source,
                    frame_time_ms=vol.series.frame_time_ms)
    kwargs: dict[str, Any] = {
        "name": meta.get("name") or "DICOM",
        "metadata": meta,
        "rgb": vol.rgb,
    }
    if not vol.rgb:
        kwargs["colormap"] = grey_colormap(meta)
        kwargs["contrast_limits"] = _contrast_limits(vol)
    if not meta.get("has_geometry") and vol.spatial_shape[0] == 1:
        return _image_axes_layer_data(vol, meta, kwargs, lead)
    dt = vol.display_transform()
    data = dt.apply(vol.array, leading=lead)
    meta["display_transform"] = {"axes": dt.axes, "flips": dt.flips,
                                 "residual_deg": dt.residual_deg,
                                 "scale": dt.scale, "translate": dt.translate,
                                 "shape": tuple(int(n) for n in data.shape[lead:lead + 3])}
    grid = Grid.for_volume(vol.spacing, vol.origin, vol.direction, vol.spatial_shape,
                           positions=vol.file_positions)
    meta[GRID_KEY] = grid.to_metadata()
    if dt.residual_deg > 0.5:
        meta.setdefault("problems", []).append(oblique_notice(kwargs["name"], grid))
    kwargs["scale"] = ((1.0,) * lead) + dt.scale
    kwargs["translate"] = ((0.0,) * lead) + dt.translate
    unit = meta.get("spatial_units", "mm")
    kwargs["units"] = (("pixel",) if lead else ()) + (
        ("mm", "mm", "mm") if unit == "mm" and meta.get("has_geometry") else
        ("pixel", unit, unit))  # no positions: the slices' spacing is not known
    kwargs["axis_labels"] = (("volume",) if lead else ()) + (
        geometry.WORLD_AXIS_LABELS if meta.get("orientation") != "unknown"
        else ("image", "row (y)", "column (x)"))  # no patient axes to name
    return data, kwargs, "image"


def _image_axes_layer_data(vol: Volume, meta: dict[str, Any], kwargs: dict[str, Any],
                           lead: int) -> LayerData:
    """An image without patient geometry (a photo, a screen capture, an ultrasound still or
    cine) on its own axes: rows and columns in mm when the pixel size is known, in pixels
    otherwise (never a made-up 1 mm); a cine's frames along a time axis ``t`` in seconds."""
    unit, ft = meta.get("spatial_units", "mm"), meta.get("frame_time_ms")
    t_scale, t_unit = (ft / 1000.0, "second") if ft else (1.0, "pixel")
    kwargs["scale"] = ((t_scale,) if lead else ()) + tuple(vol.spacing[1:])
    kwargs["translate"] = (0.0,) * (lead + 2)
    kwargs["units"] = ((t_unit,) if lead else ()) + (unit, unit)
    kwargs["axis_labels"] = (("t",) if lead else ()) + ("row (y)", "column (x)")
    meta["display_transform"] = {"axes": (0, 1), "flips": (False, False), "squeezed": 0}
    return (vol.array[:, 0] if lead else vol.array[0]), kwargs, "image"


# --------------------------------------------------------------------------------------------
# annotation objects: DICOM SEG -> labels layers on the image they reference


def _reference_files(series: Series | None) -> list[str]:
    return list(series.files) if series is not None else []


def segmentation_layer_data(seg: Segmentation,
                            reference: Series | None = None) -> list[LayerData]:
    """``LayerDataTuple``s for a :class:`~.core.seg.Segmentation`: one labels layer per
    group of non-overlapping segments, on the display grid of the referenced image layer
    (same view, scale and translate), segment names/colours in ``features``/colormap; plus,
    for a fractional SEG, one image layer of fractions per segment."""
    grid = Grid.for_volume(seg.spacing, seg.origin, seg.direction, seg.shape)
    dt = grid.display
    assert dt is not None  # for_volume always gives its grid a display transform
    name = seg.metadata.get("name") or "SEG"
    meta_base = {
        GRID_KEY: grid.to_metadata(),
        "seg_path": seg.metadata.get("path"),
        "series_uid": seg.metadata.get("series_uid"),
        "frame_of_reference": seg.metadata.get("frame_of_reference"),
        "modality": "RTSTRUCT" if seg.metadata.get("segmentation_type") == "RTSTRUCT"
        else "SEG",
        "reference_series_uid": seg.metadata.get("referenced_series_uid"),
        "reference_files": _reference_files(reference) if seg.metadata.get("on_reference")
        else [],
        "spacing": tuple(seg.spacing), "origin": tuple(float(v) for v in seg.origin),
        "direction": np.asarray(seg.direction).tolist(),
        "affine_lps": seg.affine_lps.tolist(),
        "problems": list(seg.metadata.get("problems", [])),
    }
    common = {"scale": dt.scale, "translate": dt.translate, "units": ("mm", "mm", "mm"),
              "axis_labels": geometry.WORLD_AXIS_LABELS}
    out: list[LayerData] = []
    many = len(seg.labels) > 1
    for k, (arr, group) in enumerate(zip(seg.labels, seg.groups, strict=True)):
        rows = [seg.segment(n).as_row() for n in group]
        colors: dict[int | None, tuple[float, ...]] = {None: (0.0, 0.0, 0.0, 0.0),
                                                       0: (0.0, 0.0, 0.0, 0.0)}
        for r in rows:
            if r["color"] is not None:
                colors[r["index"]] = tuple(c / 255.0 for c in r["color"]) + (1.0,)
        features = {key: [r[key] for r in rows] for key in
                    ("index", "label", "category", "type", "type_code", "algorithm")}
        meta = dict(meta_base, segments=[seg.segment(n).to_dict() for n in group])
        kwargs = dict(common, name=f"{name} [{k + 1}]" if many else name, metadata=meta,
                      features=features, opacity=0.6)
        if len(colors) > 2:
            kwargs["colormap"] = colors
        out.append((dt.apply(arr), kwargs, "labels"))
    for number, frac in seg.fractions.items():
        s = seg.segment(number)
        rgb = tuple(c / 255.0 for c in (s.color or (255, 255, 0)))
        out.append((dt.apply(frac), dict(common, name=f"{name}: {s.label} (fraction)",
                                         metadata=dict(meta_base, segment=s.as_row()),
                                         colormap=_ramp(s.label, rgb), contrast_limits=(0, 1),
                                         blending="additive", opacity=0.7), "image"))
    return out


def contour_shapes_layer_data(seg: Segmentation) -> LayerData:
    """The closed contours of an RT Structure Set (:func:`~.core.rtstruct.read_rtstruct`) as
    a shapes layer of polygons in world mm, on the same display grid as its labels layer
    (so each polygon lies on the slice of the referenced series it was drawn on); ROI
    names and colours in ``features`` and edge colours. Contours off the grid's planes are
    left out (the labels layer's ``problems`` name them)."""
    grid = Grid.for_volume(seg.spacing, seg.origin, seg.direction, seg.shape)
    acq = grid.acquisition_axis
    polys: list[npt.NDArray[np.float64]] = []
    rows: list[tuple[int, str]] = []
    colors: list[tuple[float, ...]] = []
    for number, contours in (seg.metadata.get("contours") or {}).items():
        s = seg.segment(number)
        for pts in contours:
            idx = grid.index(pts)  # display data index (fractional)
            k = np.round(idx[:, acq])
            if len(pts) < 3 or np.max(np.abs(idx[:, acq] - k)) > 0.25 \
                    or not 0 <= k[0] < grid.shape[acq]:
                continue
            idx[:, acq] = k  # on the slice plane exactly
            polys.append(idx)
            rows.append((number, s.label))
            colors.append(tuple(c / 255.0 for c in (s.color or (255, 255, 0))) + (1.0,))
    if not polys:
        raise DicomToolsError(seg.metadata.get("path"), "no closed contour lies on the "
                                                        "slices of its grid")
    name = seg.metadata.get("name") or "RTSTRUCT"
    meta = {"modality": "RTSTRUCT", "seg_path": seg.metadata.get("path"),
            "frame_of_reference": seg.metadata.get("frame_of_reference"),
            "reference_series_uid": seg.metadata.get("referenced_series_uid"),
            "problems": list(seg.metadata.get("problems", []))}
    kwargs = {"name": f"{name} contours", "shape_type": "polygon", "metadata": meta,
              "features": {"roi": [r[0] for r in rows], "label": [r[1] for r in rows]},
              "edge_color": colors, "face_color": "transparent", "edge_width": 0.5,
              "scale": grid.scale, "translate": grid.translate, "units": ("mm", "mm", "mm"),
              "axis_labels": geometry.WORLD_AXIS_LABELS}
    return polys, kwargs, "shapes"


def _ramp(name: str, rgb: tuple[float, ...]) -> Colormap:
    from napari.utils.colormaps import Colormap

    return Colormap([(0.0, 0.0, 0.0, 1.0), tuple(rgb) + (1.0,)], name=f"seg {name}")


def sr_layer_data(path: str | os.PathLike[str],
                  candidates: Iterable[Series] | None = None) -> list[LayerData]:
    """A shapes layer (world ``(z, y, x)`` LPS mm) of the planar ROIs of a TID 1500
    measurement report, measurements in ``features`` and ``metadata["measurements"]``;
    regions in 2D image coordinates are placed on their image among ``candidates``."""
    from .core.sr import read_sr

    rois, meta = read_sr(path, reference=candidates)
    if not rois:
        raise DicomToolsError(path, "the report holds no planar regions in patient "
                                    "coordinates")
    kinds = {"POLYGON": "polygon", "POLYLINE": "path", "POINT": "path", "MULTIPOINT": "path"}
    data, types, rows = [], [], []
    for r in rois:
        pts = r.points[:-1] if r.graphic_type == "POLYGON" and len(r.points) > 3 else r.points
        if len(pts) == 1:
            pts = np.vstack([pts, pts])
        data.append(np.asarray(pts, float)[:, ::-1])  # LPS (x, y, z) -> world (z, y, x)
        types.append(kinds.get(r.graphic_type, "path"))
        row: dict[str, Any] = {"label": r.label, "finding": r.finding}
        for m in r.measurements:
            row[f"{m['name']} ({m['unit']})"] = m["value"]
        rows.append(row)
    cols = list(dict.fromkeys(k for row in rows for k in row))
    features = {c: [row.get(c, np.nan) for row in rows] for c in cols}
    metadata = {"sr_path": meta["path"], "modality": "SR",
                "frame_of_reference": meta["frame_of_reference"],
                "referenced_series_uids": meta["referenced_series_uids"],
                "measurements": rows, "problems": meta["problems"]}
    kwargs = {"name": meta["name"], "shape_type": types, "features": features,
              "metadata": metadata, "edge_color": "yellow", "face_color": "transparent",
              "edge_width": 1.0, "text": {"string": "{label}", "color": "yellow"},
              "units": ("mm", "mm", "mm"), "axis_labels": geometry.WORLD_AXIS_LABELS}
    return [(data, kwargs, "shapes")]


def read_annotation(series: Series, candidates: Iterable[Series] = (), *,
                    contours: bool = False) -> list[LayerData]:
    """Layers of an annotation series from :func:`~.core.series.scan` (``kind`` SEG,
    RTSTRUCT, SR or RTDOSE), placed on the image among ``candidates`` it references when
    there is one; ``contours``: an RTSTRUCT's contours also as a shapes layer of polygons
    (:func:`contour_shapes_layer_data`)."""
    kind = series.kind
    if kind == "RTDOSE":
        from .core.rtdose import read_dose

        return [dose_layer_data(read_dose(series))]
    if kind == "SR":
        return sr_layer_data(str(series.first.source), candidates)
    find: Callable[[Source, Iterable[Series]], Series | None]
    read: Callable[[Source, Series | None], Segmentation]
    if kind == "RTSTRUCT":
        from .core import rtstruct

        find, read = rtstruct.find_reference, rtstruct.read_rtstruct
    elif kind == "SEG":
        from .core import seg as seg_module

        find, read = seg_module.find_reference, seg_module.read_segmentation
    else:
        raise DicomToolsError(series.first.path, f"not an annotation object ({kind})")
    source = series.first.source
    ref = find(source, candidates)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seg = read(source, reference=ref)
    for w in caught:
        warnings.warn(str(w.message), stacklevel=2)
    out = segmentation_layer_data(seg, ref)
    if contours and kind == "RTSTRUCT":
        out.append(contour_shapes_layer_data(seg))
    return out
