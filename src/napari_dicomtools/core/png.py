"""PNG writers: windowed 8-bit slices with square pixels, annotations burned in; window presets.

Outputs go through :func:`~napari_dicomtools.core.safety.atomic_output` (never silently
overwritten, never half-written).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import numpy.typing as npt

from . import geometry
from .errors import DicomToolsError, os_error_reason
from .geometry import Floats
from .safety import NAME_MAX, atomic_output, fit_name

if TYPE_CHECKING:
    from PIL import Image as PILImage

    from .volume import Volume

__all__ = ["AXES", "WINDOW_PRESETS", "Annotation", "acquisition_plane", "apply_window",
           "export_annotated", "export_png", "resolve_window", "write_png"]

#: an 8-bit image: ``(H, W)`` grey or ``(H, W, 3)`` RGB
UInt8Image = npt.NDArray[np.uint8]
#: maps ``(..., 3)`` world ``(z, y, x)`` index points to (row, column) pixel coordinates
ToPixel = Callable[[Floats], tuple[Floats, Floats]]


class _AnnotationVertices(TypedDict):
    vertices: npt.ArrayLike


class Annotation(_AnnotationVertices, total=False):
    """A shape to burn into a PNG (``export_annotated``'s ``shapes``), as a plain dict.

    Keys: ``vertices`` (required; ``(n, 2)`` or ``(n, 3)`` points), ``type`` (``"rectangle"``,
    ``"polygon"`` (default), ``"path"``, ``"line"`` or ``"ellipse"``), ``color`` (``(r, g,
    b)`` 0-255, default yellow), ``label`` (text written beside it) and ``name`` (how
    messages name the shape, default ``shape <n>``).

    Examples
    --------
    >>> roi: Annotation = {"vertices": [[10, 10], [10, 30], [30, 30]], "label": "ROI 1"}
    >>> roi.get("type", "polygon")
    'polygon'
    """

    type: str
    color: Sequence[int]
    label: str | None
    name: str


#: (center, width) in HU, the usual radiology presets
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
    "stroke": (40.0, 40.0),
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "soft_tissue": (40.0, 400.0),
    "abdomen": (60.0, 400.0),
    "liver": (60.0, 160.0),
    "bone": (400.0, 1800.0),
}

#: the patient planes :func:`export_png` writes
AXES = ("axial", "coronal", "sagittal")


def apply_window(arr: npt.ArrayLike, center: float, width: float) -> UInt8Image:
    """8-bit display values with DICOM's linear VOI function (PS3.3 C.11.2.1.2.1).

    ``x <= c - 0.5 - (w-1)/2`` -> 0, ``x > c - 0.5 + (w-1)/2`` -> 255, linear between.

    Parameters
    ----------
    arr : array_like
        Values in output units (HU for CT).
    center, width : float
        Window center and width (WindowCenter (0028,1050), WindowWidth (0028,1051)).

    Returns
    -------
    numpy.ndarray of uint8
        Same shape as ``arr``.

    Raises
    ------
    ValueError
        When ``width`` is below 1.

    Examples
    --------
    >>> apply_window([-1000, 40, 1000], 40, 400).tolist()
    [0, 128, 255]
    """
    if width < 1:
        raise ValueError(f"window width must be >= 1, got {width}")
    x = np.asarray(arr, dtype=np.float64)
    y = ((x - (center - 0.5)) / max(width - 1.0, 1e-9) + 0.5) * 255.0
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def resolve_window(volume_or_window: Volume | None = None, *,
                   window: Sequence[float] | None = None, preset: str | None = None,
                   data: npt.ArrayLike | None = None) -> tuple[float, float]:
    """The window to use, in this order: an explicit ``window``, a ``preset`` name, the DICOM
    window of the volume, the 0.5-99.5 percentile range of ``data`` (or of the volume).

    Parameters
    ----------
    volume_or_window : Volume, optional
        A volume whose DICOM window (WindowCenter/WindowWidth) or values are used.
    window : (float, float), optional
        ``(center, width)`` in output units.
    preset : str, optional
        A name of :data:`WINDOW_PRESETS` (case, spaces and hyphens ignored).
    data : array_like, optional
        Values whose percentile range is the window when nothing else gives one.

    Returns
    -------
    (float, float)
        ``(center, width)``.

    Raises
    ------
    ValueError
        For an unknown preset.

    Examples
    --------
    >>> resolve_window(preset="Soft tissue")
    (40.0, 400.0)
    >>> resolve_window(data=[0, 100, 200])
    (100.0, 198.0)
    """
    if window is not None:
        c, w = (float(v) for v in window)
        return c, w
    if preset is not None:
        key = preset.lower().replace(" ", "_").replace("-", "_")
        if key not in WINDOW_PRESETS:
            raise ValueError(f"unknown window preset {preset!r}; choose from "
                             f"{', '.join(WINDOW_PRESETS)}")
        return WINDOW_PRESETS[key]
    dicom_window = volume_or_window.window if volume_or_window is not None else None
    if dicom_window:
        return float(dicom_window.center), float(dicom_window.width)
    if data is None:
        if volume_or_window is None:
            raise ValueError("no window, preset, volume or data to take a window from")
        data = np.asarray(volume_or_window.array)
    lo, hi = np.percentile(np.asarray(data), [0.5, 99.5])
    return float((lo + hi) / 2), float(max(hi - lo, 1.0))


def _canonical_view(array: Any, spacing: npt.ArrayLike, origin: npt.ArrayLike,
                    direction: npt.ArrayLike, leading: int = 0) -> tuple[Any, Floats, Floats]:
    """``(z, y, x)`` LPS-ordered view (no copy) of a numpy or dask ``array``, its spacing and
    world origin (napari's display grid)."""
    shape = tuple(array.shape[leading:leading + 3])
    dt = geometry.display_transform(spacing, origin, direction, shape)
    return (dt.apply(array, leading=leading), np.asarray(dt.scale, float),
            np.asarray(dt.translate, float))


def _slice_plane(view: Any, scale: Floats, axis: str,
                 index: int) -> tuple[Any, tuple[float, float], ToPixel]:
    """One plane of a ``(z, y, x)`` view as displayed by radiologists.

    Returns ``(image, (row_mm, col_mm), to_pixel)`` where ``to_pixel(world_zyx)`` maps world
    points to (row, column) pixel coordinates of ``image``: axial rows run anterior->posterior
    and columns right->left (patient's right on the viewer's left); coronal and sagittal put
    superior at the top, sagittal anterior on the left.
    """
    nz = view.shape[0]
    if axis == "axial":
        img = view[index]
        return img, (scale[1], scale[2]), (lambda p: (p[..., 1], p[..., 2]))
    if axis == "coronal":
        img = view[::-1, index, :]
        return img, (scale[0], scale[2]), (lambda p: (nz - 1 - p[..., 0], p[..., 2]))
    if axis == "sagittal":
        img = view[::-1, :, index]
        return img, (scale[0], scale[1]), (lambda p: (nz - 1 - p[..., 0], p[..., 1]))
    raise ValueError(f"axis must be one of {AXES}, got {axis!r}")


_PALETTE = [(255, 64, 64), (64, 200, 255), (255, 210, 0), (120, 255, 120), (255, 128, 255),
            (255, 150, 50), (0, 255, 200), (180, 120, 255)]


def _render_plane(image2d: npt.ArrayLike, pixel_mm: Sequence[float],
                  window: tuple[float, float] | None, *, shapes: Iterable[Annotation] = (),
                  labels2d: npt.ArrayLike | None = None, rgb: bool = False,
                  invert: bool = False) -> UInt8Image:
    """Window a plane, resample to square pixels, and burn in annotations.

    Parameters
    ----------
    image2d : ndarray
        The plane (values in output units), or RGB (``rgb=True``).
    pixel_mm : (float, float)
        Row and column spacing; the image is resized so a pixel is square (the smaller
        spacing is kept, the other axis stretched).
    window : (float, float) or None
        ``(center, width)``; None for RGB.
    shapes : iterable of Annotation
        Vertices are ``(n, 2)`` pixel coordinates (row, column) of this plane.
    labels2d : ndarray of int, optional
        A label image on the same grid; each label's outline is drawn in its own colour.
    rgb : bool
        ``image2d`` is ``(H, W, 3)`` colour, shown as it is.
    invert : bool
        MONOCHROME1: the windowed grey is inverted (the minimum value white).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8.
    """
    from PIL import Image, ImageDraw

    base = _base_image(image2d, window, rgb, invert)
    h, w = base.height, base.width
    rmm, cmm = float(pixel_mm[0]), float(pixel_mm[1])
    unit = min(rmm, cmm)
    fy, fx = rmm / unit, cmm / unit
    size = (max(1, int(round(w * fx))), max(1, int(round(h * fy))))
    if size != (w, h):
        base = base.resize(size, Image.Resampling.BILINEAR)
    if labels2d is not None:
        base = _burn_label_outlines(base, np.asarray(labels2d), size)
    _draw_shapes(ImageDraw.Draw(base), shapes, fx, fy, max(1, int(round(min(size) / 256))))
    return np.asarray(base)


def _base_image(image2d: npt.ArrayLike, window: tuple[float, float] | None,
                rgb: bool, invert: bool = False) -> PILImage.Image:
    """The plane as an RGB PIL image: windowed grey (inverted after the window for
    MONOCHROME1, as PS3.4's grayscale pipeline does), or colour scaled to 8 bits."""
    from PIL import Image

    if rgb:
        arr = np.asarray(image2d)
        if arr.dtype != np.uint8:
            arr = (arr.astype(np.float64) / max(float(arr.max()), 1.0) * 255).astype(np.uint8)
        return Image.fromarray(np.ascontiguousarray(arr[..., :3]), "RGB")
    if window is None:
        raise ValueError("a grey image needs a window (center, width)")
    grey = apply_window(image2d, *window)
    if invert:
        np.subtract(255, grey, out=grey)
    return Image.fromarray(grey, "L").convert("RGB")


def _burn_label_outlines(base: PILImage.Image, lab: npt.NDArray[Any],
                         size: tuple[int, int]) -> PILImage.Image:
    """``base`` with each label's outline (resized to ``size``) in its palette colour."""
    from PIL import Image

    edge = _outline(lab)
    if not edge.any():
        return base
    rgbimg = np.asarray(base).copy()
    big = np.asarray(Image.fromarray(np.where(edge, lab, 0).astype(np.int32))
                     .resize(size, Image.Resampling.NEAREST))
    for v in np.unique(big[big > 0]):
        rgbimg[big == v] = _PALETTE[(int(v) - 1) % len(_PALETTE)]
    return Image.fromarray(rgbimg)


def _draw_shapes(draw: Any, shapes: Iterable[Annotation], fx: float, fy: float,
                 lw: int) -> None:
    """Draw ``shapes`` (pixel ``(row, column)`` vertices before the ``fx``/``fy`` stretch)
    with a ``lw`` pixel line on a PIL ``ImageDraw``."""
    for sh in shapes:
        pts = np.asarray(sh["vertices"], float)
        xy = [(float(c * fx + (fx - 1) / 2), float(r * fy + (fy - 1) / 2)) for r, c in pts]
        color = tuple(int(v) for v in sh.get("color", (255, 255, 0))[:3])
        kind = sh.get("type", "polygon")
        if kind in ("path", "line"):
            draw.line(xy, fill=color, width=lw)
        elif kind == "ellipse" and len(xy) == 4:
            xs, ys = [p[0] for p in xy], [p[1] for p in xy]
            draw.ellipse([min(xs), min(ys), max(xs), max(ys)], outline=color, width=lw)
        elif len(xy) >= 2:
            draw.polygon(xy, outline=color, width=lw)
        label = sh.get("label")
        if label:
            x0, y0 = min(p[0] for p in xy), min(p[1] for p in xy)
            draw.text((x0 + 2, max(0, y0 - 12)), str(label), fill=color)


def _outline(lab: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    """Pixels of a label image that touch a different label (4-neighbourhood)."""
    edge = np.zeros(lab.shape, bool)
    edge[1:, :] |= lab[1:, :] != lab[:-1, :]
    edge[:-1, :] |= lab[:-1, :] != lab[1:, :]
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    out: npt.NDArray[np.bool_] = edge & (lab > 0)
    return out


def write_png(path: str | os.PathLike[str], rgb_image: npt.ArrayLike, *,
              overwrite: bool = False) -> str:
    """Save an ``(H, W, 3)`` or ``(H, W)`` uint8 image as PNG (or JPEG by extension).

    Parameters
    ----------
    path : str or os.PathLike
        Output file, ending in ``.png``, ``.jpg`` or ``.jpeg``.
    rgb_image : array_like of uint8
        ``(H, W)`` grey or ``(H, W, 3)`` colour.
    overwrite : bool
        Replace an existing file (otherwise it is an error).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    DicomToolsError
        For another extension, an existing file without ``overwrite``, or a write that fails.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> tmp = tempfile.mkdtemp()
    >>> path = write_png(os.path.join(tmp, "ramp.png"), np.arange(256, dtype=np.uint8)[None])
    >>> os.path.basename(path)
    'ramp.png'
    """
    from PIL import Image

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(ext)
    if fmt is None:
        raise DicomToolsError(path, "image file names must end in .png, .jpg or .jpeg")
    with atomic_output(path, overwrite) as tmp:
        Image.fromarray(np.asarray(rgb_image)).save(tmp, format=fmt)
    return path


def acquisition_plane(volume: Volume) -> str:
    """The patient plane a volume's own slices lie in (the plane it was acquired in).

    Parameters
    ----------
    volume : Volume
        A volume read from DICOM (its ``direction`` says how its slices lie).

    Returns
    -------
    str
        ``"axial"``, ``"coronal"`` or ``"sagittal"``: the plane :func:`export_png` writes
        by default, the plane napari shows the series in when it opens. An oblique series
        gives the plane its slices are closest to.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_dicomtools.core.volume import Volume
    >>> # slices step left (+x), rows run inferior (-z), columns posterior (+y)
    >>> acquisition_plane(Volume(np.zeros((4, 5, 6)), (2.0, 1.0, 1.0), np.zeros(3),
    ...                          np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], float)))
    'sagittal'
    """
    dt = geometry.display_transform(volume.spacing, volume.origin, volume.direction,
                                    volume.spatial_shape)
    return AXES[list(dt.axes).index(0)]


def export_png(volume: Volume, out_dir: str | os.PathLike[str], *,
               window: Sequence[float] | None = None, preset: str | None = None,
               axis: str | None = None, slices: Iterable[int] | None = None,
               time: int | Iterable[int] | None = None, overwrite: bool = False,
               prefix: str | None = None,
               progress: Callable[[int, int], object] | None = None) -> list[str]:
    """Write slices of a :class:`~napari_dicomtools.core.volume.Volume` as windowed 8-bit
    PNGs with square pixels, in the radiological orientation.

    A MONOCHROME1 volume (``metadata["photometric"]``) is inverted after the window, so the
    PNG looks as the radiograph is meant to (its minimum value white).

    Parameters
    ----------
    volume : Volume
        3D or 4D (time points); RGB exports as is.
    out_dir : str or os.PathLike
        Folder (created if needed). Files are ``<prefix or axis>_<index:04d>.png``, and
        ``<prefix or axis>_t<time:03d>_<index:04d>.png`` for a 4D volume.
    window : (center, width), optional
        In the volume's units (HU for CT). Default: ``preset``, else the DICOM window, else
        the 0.5-99.5 percentile range.
    preset : str, optional
        A name of :data:`WINDOW_PRESETS` (``"lung"``, ``"bone"``, ...).
    axis : {"axial", "coronal", "sagittal"}, optional
        Plane of the patient. Default: the plane the series was acquired in
        (:func:`acquisition_plane`), i.e. its own slices; another plane gives reformats.
    slices : iterable of int, optional
        Indices along ``axis`` (default: all).
    time : int or iterable of int, optional
        Time points of a 4D volume (default: all of them). A 3D volume has only ``0``.
    overwrite : bool
        Replace existing files (see Notes); otherwise an existing file is an error.
    prefix : str, optional
        File name stem instead of ``axis``.
    progress : callable, optional
        Called as ``progress(done, total)`` after each file.

    Returns
    -------
    list of str
        The files written.

    Raises
    ------
    DicomToolsError
        When a file exists (without ``overwrite``) or the folder or a file cannot be written.
    ValueError
        For an unknown ``axis`` or preset, or a slice index or time point out of range.

    Notes
    -----
    With ``overwrite``, the folder's earlier slices named as this function names them
    (``axial|coronal|sagittal|<prefix>[_tTTT]_NNNN.png``) that this export did not rewrite
    are removed once it has succeeded, so the folder never mixes slices of two exports; other
    files are never touched.

    Examples
    --------
    >>> import os, tempfile
    >>> from napari_dicomtools.core.synthetic import phantom, write_series
    >>> from napari_dicomtools.core.volume import read_volume
    >>> tmp = tempfile.mkdtemp()
    >>> _ = write_series(os.path.join(tmp, "ct"), phantom((4, 16, 16)), spacing=(2.0, 1.0, 1.0))
    >>> files = export_png(read_volume(os.path.join(tmp, "ct")), os.path.join(tmp, "png"),
    ...                    preset="soft_tissue", axis="coronal", slices=[8])
    >>> [os.path.basename(f) for f in files]
    ['coronal_0008.png']
    """
    axis = acquisition_plane(volume) if axis is None else axis
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}, got {axis!r}")
    four_d = volume.n_time > 1
    times = _time_points(volume.n_time, time)
    view, scale, _ = _canonical_view(volume.array, volume.spacing, volume.origin,
                                     volume.direction, leading=1 if four_d else 0)
    win = None if volume.rgb else resolve_window(volume, window=window, preset=preset)
    invert = volume.metadata.get("photometric") == "MONOCHROME1"
    n = view.shape[(1 if four_d else 0) + AXES.index(axis)]
    idx = list(range(n)) if slices is None else [int(i) for i in slices]
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise ValueError(f"slice index {bad[0]} out of range 0..{n - 1} for {axis}")
    stem = fit_name(prefix or axis, NAME_MAX - 21)
    pages = [(t, i) for t in times for i in idx]
    names = [os.path.join(os.fspath(out_dir), _png_name(stem, t if four_d else None, i))
             for t, i in pages]
    _refuse_existing(names, overwrite, "not overwriting")
    _make_folder(out_dir)
    previous = _own_pngs(out_dir, stem) if overwrite else []
    out = []
    for j, ((t, i), name) in enumerate(zip(pages, names, strict=True)):
        plane, pix, _ = _slice_plane(view[t] if four_d else view, scale, axis, i)
        img = _render_plane(np.asarray(plane), pix, win, rgb=volume.rgb, invert=invert)
        out.append(write_png(name, img, overwrite=overwrite))
        if progress is not None:
            progress(j + 1, len(pages))
    if overwrite:  # our own earlier PNGs that this run did not rewrite are stale
        _remove_stale(out_dir, set(previous) - {os.path.basename(p) for p in out})
    return out


def _time_points(n_time: int, time: int | Iterable[int] | None) -> list[int]:
    """The time points ``time`` asks for, of ``n_time`` (all when None); ValueError when
    one is out of range."""
    if time is None:
        return list(range(n_time))
    wanted = [int(time)] if isinstance(time, (int, np.integer)) else [int(t) for t in time]
    bad = [t for t in wanted if not 0 <= t < n_time]
    if bad:
        raise ValueError(f"time point {bad[0]} out of range 0..{n_time - 1}" if n_time > 1
                         else f"time point {bad[0]} asked of a 3D volume (it has only 0)")
    return wanted


def _png_name(stem: str, time: int | None, index: int) -> str:
    """``<stem>_<index:04d>.png``, with ``_t<time:03d>`` before the index for a 4D volume."""
    return f"{stem}_{index:04d}.png" if time is None else f"{stem}_t{time:03d}_{index:04d}.png"


def _make_folder(out_dir: str | os.PathLike[str]) -> None:
    """Create ``out_dir`` (and its parents) if needed; DicomToolsError when it cannot be."""
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise DicomToolsError(exc.filename or out_dir, os_error_reason(exc, "cannot create the "
                                                                    "folder")) from None


def _refuse_existing(names: Sequence[str], overwrite: bool, why: str) -> None:
    """Unless ``overwrite``, raise DicomToolsError when any of ``names`` exists: the error is
    about the first, and its reason names the others (up to three, then how many more)."""
    if overwrite:
        return
    clash = [p for p in names if os.path.lexists(p)]
    if not clash:
        return
    others = [os.path.basename(p) for p in clash[1:4]]
    more = len(clash) - 1 - len(others)
    also = ""
    if others:
        also = " (so do " + ", ".join(others) + (f" and {more} more" if more else "") + ")"
    raise DicomToolsError(clash[0], f"exists{also}; {why}")


def _remove_stale(out_dir: str | os.PathLike[str], names: Iterable[str]) -> None:
    """Remove ``names`` from ``out_dir`` (already gone is fine)."""
    for n in sorted(names):
        try:
            os.unlink(os.path.join(os.fspath(out_dir), n))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise DicomToolsError(exc.filename, os_error_reason(exc, "cannot remove an earlier "
                                                             "output")) from None


def _own_pngs(out_dir: str | os.PathLike[str], stem: str) -> list[str]:
    """Names in ``out_dir`` that :func:`export_png` writes (``axial_0007.png``, any axis, or
    ``<stem>_0007.png``, with a time point ``_t002`` or not): regular files only."""
    import re

    pat = re.compile(rf"(?:axial|coronal|sagittal|{re.escape(stem)})(?:_t\d{{3,}})?_\d{{4,}}"
                     r"\.png")
    try:
        entries = list(os.scandir(out_dir))
    except OSError:
        return []
    return [e.name for e in entries if pat.fullmatch(e.name) and e.is_file(follow_symlinks=False)]


def export_annotated(image: Any, image_scale: npt.ArrayLike, image_translate: npt.ArrayLike,
                     path: str | os.PathLike[str], *, window: tuple[float, float] | None,
                     rgb: bool = False, shapes: Iterable[Annotation] = (),
                     labels: Any = None, overwrite: bool = False,
                     invert: bool = False, plane: str = "axial") -> list[str]:
    """Write an image as shown in napari (axis-aligned world grid) with annotations burned in.

    Parameters
    ----------
    image : numpy.ndarray or dask.array.Array
        2D, or 3D ``(z, y, x)`` on the display grid (layer data); a trailing axis of 3 when
        ``rgb``.
    image_scale, image_translate : sequence of float
        The layer's world transform (mm).
    path : str or os.PathLike
        ``name.png``: a 2D image is written there; for 3D, each slice that carries an
        annotation goes to ``name_<plane>_<k:04d>.png`` (``plane`` axial, coronal or
        sagittal, ``k`` the slice index along that plane's axis), oriented as napari shows
        it (radiological, superior up). Without annotations, every slice of ``plane``.
    window : (float, float) or None
        ``(center, width)`` of the grey values (the layer's contrast limits); None for RGB.
    rgb : bool
        The image is colour, shown as it is.
    shapes : iterable of Annotation
        Vertices in world coordinates (``n x 2`` or ``n x 3``). A 3D shape is drawn on the
        slice its vertices all lie on, along any axis: a shape drawn on a sagittal view
        goes to that sagittal slice. A shape that lies on no single slice of the image (or
        outside it) is not drawn and is named in a warning (in an error when no shape
        and no label can be drawn).
    labels : array_like, optional
        Label image on the same grid as ``image``; its outlines are drawn, and slices of
        ``plane`` that hold a label are written too.
    overwrite : bool
        Replace existing files; otherwise an existing file is an error naming them.
    invert : bool
        Show the grey values inverted after the window (a MONOCHROME1 image, or a layer
        shown with an inverted grey colormap): the minimum value white.
    plane : {"axial", "coronal", "sagittal"}
        The plane the user looks at: written whole when there are no annotations, the plane
        of the labels' slices, and the one chosen for a shape lying on a slice of several
        planes (a straight line).

    Returns
    -------
    list of str
        The files written.

    Raises
    ------
    DicomToolsError
        When ``labels`` is not on the image's grid, the image is not 2D or 3D, shapes were
        given but none lies on a slice, a file exists (without ``overwrite``) or cannot be
        written.
    ValueError
        For an unknown ``plane``.

    Warns
    -----
    UserWarning
        Naming the shapes that lie on no single slice (not drawn) when others are.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> tmp = tempfile.mkdtemp()
    >>> box = {"type": "rectangle", "color": (255, 0, 0), "label": "ROI",
    ...        "vertices": [[2, 4, 4], [2, 4, 12], [2, 12, 12], [2, 12, 4]]}
    >>> side = {"type": "rectangle", "vertices": [[1, 4, 9], [1, 12, 9], [3, 12, 9], [3, 4, 9]]}
    >>> files = export_annotated(np.zeros((4, 16, 16)), (1, 1, 1), (0, 0, 0),
    ...                          os.path.join(tmp, "shot.png"), window=(0, 100),
    ...                          shapes=[box, side])
    >>> [os.path.basename(f) for f in files]
    ['shot_axial_0002.png', 'shot_sagittal_0009.png']
    """
    path = os.fspath(path)
    img = np.asarray(image) if not hasattr(image, "compute") else image
    nd = img.ndim - (1 if rgb else 0)
    sc = np.asarray(image_scale, float)[-nd:]
    tr = np.asarray(image_translate, float)[-nd:]
    if labels is not None and tuple(np.shape(labels)) != tuple(img.shape[:nd]):
        raise DicomToolsError(path, f"labels shape {np.shape(labels)} differs from the image "
                                    f"{img.shape[:nd]}; draw labels on the image's grid")
    shapes = list(shapes)
    if nd == 2:
        lab = None if labels is None else np.asarray(labels)
        shapes_px: list[Annotation] = [{**sh, "vertices": _to_index(sh, sc, tr)} for sh in shapes]
        out = _render_plane(np.asarray(img), (sc[0], sc[1]), window, shapes=shapes_px,
                            labels2d=lab, rgb=rgb, invert=invert)
        return [write_png(path, out, overwrite=overwrite)]
    if nd != 3:
        raise DicomToolsError(path, f"PNG export needs a 2D or 3D layer, got {nd}D")
    if plane not in AXES:
        raise ValueError(f"plane must be one of {AXES}, got {plane!r}")
    placed, stray = _place_shapes(shapes, sc, tr, tuple(img.shape[:3]), AXES.index(plane))
    pages = _annotated_pages(img.shape[:3], placed, labels, AXES.index(plane),
                             whole=not shapes)
    _report_stray(path, stray, drawn=bool(pages))
    stem = path[:-4] if path.lower().endswith(".png") else path
    names = [f"{stem}_{AXES[a]}_{k:04d}.png" for a, k in pages]
    _refuse_existing(names, overwrite, "not overwriting: choose another name, or remove them")
    out_files = []
    for (a, k), name in zip(pages, names, strict=True):
        rgbimg = _render_page(img, labels, sc, AXES[a], k, placed.get((a, k), []), window,
                              rgb=rgb, invert=invert)
        out_files.append(write_png(name, rgbimg, overwrite=overwrite))
    return out_files


def _to_index(shape: Annotation, scale: Floats, translate: Floats) -> Floats:
    """A shape's world vertices as (fractional) indices of the image's last axes."""
    v = np.asarray(shape["vertices"], float)
    nd = min(v.shape[-1], len(scale))
    out: Floats = (v[:, -nd:] - translate[-nd:]) / scale[-nd:]
    return out


def _shape_name(shape: Annotation, i: int) -> str:
    """How messages name a shape: its ``name``, else ``shape <i + 1>``, with its label."""
    name = shape.get("name") or f"shape {i + 1}"
    label = shape.get("label")
    return f"{name} ({label!r})" if label else name


def _place_shapes(shapes: Sequence[Annotation], scale: Floats, translate: Floats,
                  shape: tuple[int, ...], prefer: int
                  ) -> tuple[dict[tuple[int, int], list[Annotation]], list[str]]:
    """Shapes by ``(axis, slice)`` they lie on (index vertices), and the names (with why)
    of those that lie on none."""
    placed: dict[tuple[int, int], list[Annotation]] = {}
    stray: list[str] = []
    for i, sh in enumerate(shapes):
        idx = _to_index(sh, scale, translate)
        where = _slice_of(idx, shape, prefer)
        if isinstance(where, str):
            stray.append(f"{_shape_name(sh, i)} {where}")
        else:
            placed.setdefault(where, []).append({**sh, "vertices": idx})
    return placed, stray


def _slice_of(idx: Floats, shape: tuple[int, ...], prefer: int) -> tuple[int, int] | str:
    """``(axis, slice)`` that every vertex of ``idx`` (``(n, 3)`` indices) lies on, or why
    there is none. Of several axes, the flattest wins, then ``prefer``, then the first."""
    if idx.ndim != 2 or idx.shape[1] != 3 or not len(idx):
        return "has no 3D vertices"
    k = np.round(idx).astype(int)
    flat = [a for a in range(3) if (k[:, a] == k[0, a]).all()]
    if not flat:
        return "lies on no single slice"
    spread = {a: float(np.ptp(idx[:, a])) for a in flat}
    least = min(spread.values())
    best = [a for a in flat if spread[a] <= least + 1e-6]
    axis = prefer if prefer in best else best[0]
    if not 0 <= k[0, axis] < shape[axis]:
        return f"lies outside the image ({AXES[axis]} slice {k[0, axis]})"
    return axis, int(k[0, axis])


def _report_stray(path: str, stray: Sequence[str], *, drawn: bool) -> None:
    """Warn about shapes not drawn; an error when nothing at all is."""
    if not stray:
        return
    listed = "; ".join(stray[:5]) + (f"; and {len(stray) - 5} more" if len(stray) > 5 else "")
    if not drawn:
        raise DicomToolsError(path, f"no shape lies on one slice, nothing to write: {listed} "
                                    "(napari draws a shape on the slice it shows)")
    warnings.warn(f"{path}: not drawn: {listed}", stacklevel=3)


def _annotated_pages(shape: tuple[int, ...], placed: dict[tuple[int, int], list[Annotation]],
                     labels: Any, axis: int, *, whole: bool) -> list[tuple[int, int]]:
    """``(axis, slice)`` pages to write: those carrying a shape, the slices of ``axis``
    holding a label, and (``whole``, when neither gives one) every slice of ``axis``."""
    pages = set(placed)
    if labels is not None:
        other = tuple(a for a in range(3) if a != axis)
        held = np.nonzero(np.asarray(labels).any(axis=other))[0]
        pages |= {(axis, int(k)) for k in held}
    if not pages and whole:
        pages = {(axis, k) for k in range(shape[axis])}
    return sorted(pages)


def _render_page(img: Any, labels: Any, scale: Floats, plane: str, k: int,
                 shapes: Sequence[Annotation], window: tuple[float, float] | None, *,
                 rgb: bool, invert: bool) -> UInt8Image:
    """Slice ``k`` of ``plane`` of the image (and labels), radiological, with ``shapes``
    (index vertices) drawn."""
    image2d, pix, to_pixel = _slice_plane(img, scale, plane, k)
    lab2 = None if labels is None else np.asarray(_slice_plane(labels, scale, plane, k)[0])
    drawn: list[Annotation] = [{**sh, "vertices": np.stack(to_pixel(np.asarray(sh["vertices"],
                                                                               float)), -1)}
                               for sh in shapes]
    return _render_plane(np.asarray(image2d), pix, window, shapes=drawn, labels2d=lab2,
                         rgb=rgb, invert=invert)
