"""PNG writers: windowed 8-bit slices with square pixels, annotations burned in; window presets.

Outputs go through :func:`~.safety.atomic_output` (never silently overwritten, never
half-written).
"""

from __future__ import annotations

import os

import numpy as np

from . import geometry
from .errors import DicomToolsError
from .safety import NAME_MAX, _reason, atomic_output, fit_name

__all__ = ["AXES", "WINDOW_PRESETS", "apply_window", "canonical_view", "export_annotated",
           "export_png", "render_plane", "resolve_window", "slice_plane", "write_png"]

#: (center, width) in HU, the usual radiology presets
WINDOW_PRESETS = {
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

AXES = ("axial", "coronal", "sagittal")


def apply_window(arr, center: float, width: float) -> np.ndarray:
    """8-bit display values with DICOM's linear VOI function (PS3.3 C.11.2.1.2.1).

    ``x <= c - 0.5 - (w-1)/2`` -> 0, ``x > c - 0.5 + (w-1)/2`` -> 255, linear between.
    """
    if width < 1:
        raise ValueError(f"window width must be >= 1, got {width}")
    x = np.asarray(arr, dtype=np.float64)
    y = ((x - (center - 0.5)) / max(width - 1.0, 1e-9) + 0.5) * 255.0
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def resolve_window(volume_or_window=None, *, window=None, preset: str | None = None,
                   data=None) -> tuple[float, float]:
    """The window to use: explicit ``(center, width)``, a preset name, the DICOM window of the
    volume, or the 0.5-99.5 percentile range of ``data``."""
    if window is not None:
        c, w = (float(v) for v in window)
        return c, w
    if preset is not None:
        key = preset.lower().replace(" ", "_").replace("-", "_")
        if key not in WINDOW_PRESETS:
            raise ValueError(f"unknown window preset {preset!r}; choose from "
                             f"{', '.join(WINDOW_PRESETS)}")
        return WINDOW_PRESETS[key]
    w = getattr(volume_or_window, "window", None)
    if w:
        return float(w[0]), float(w[1])
    if data is None:
        data = np.asarray(volume_or_window.array)
    lo, hi = np.percentile(np.asarray(data), [0.5, 99.5])
    return float((lo + hi) / 2), float(max(hi - lo, 1.0))


def canonical_view(array, spacing, origin, direction, leading: int = 0):
    """``(z, y, x)`` LPS-ordered view (no copy), its spacing and world origin (napari's
    display grid)."""
    shape = array.shape[leading:leading + 3]
    dt = geometry.display_transform(spacing, origin, direction, shape)
    return dt.apply(array, leading=leading), np.asarray(dt.scale), np.asarray(dt.translate)


def slice_plane(view, scale, axis: str, index: int):
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


def render_plane(image2d, pixel_mm, window, *, shapes=(), labels2d=None, to_pixel=None,
                 rgb: bool = False, upsample_only: bool = True):
    """Window a plane, resample to square pixels, and burn in annotations.

    Parameters
    ----------
    image2d : ndarray
        The plane (values in output units), or RGB (``rgb=True``).
    pixel_mm : (float, float)
        Row and column spacing; the image is resized so a pixel is square (the smaller
        spacing is kept, the other axis stretched).
    shapes : iterable of dict
        ``{"type": "rectangle"|"polygon"|"path"|"line"|"ellipse", "vertices": (n, 2) pixel
        coordinates (row, column) of this plane, "color": (r, g, b), "label": str}``.
    labels2d : ndarray of int, optional
        A label image on the same grid; each label's outline is drawn in its own colour.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` uint8.
    """
    from PIL import Image, ImageDraw

    if rgb:
        arr = np.asarray(image2d)
        if arr.dtype != np.uint8:
            arr = (arr.astype(np.float64) / max(float(arr.max()), 1.0) * 255).astype(np.uint8)
        base = Image.fromarray(np.ascontiguousarray(arr[..., :3]), "RGB")
    else:
        base = Image.fromarray(apply_window(image2d, *window), "L").convert("RGB")
    h, w = base.height, base.width
    rmm, cmm = float(pixel_mm[0]), float(pixel_mm[1])
    unit = min(rmm, cmm)
    fy, fx = rmm / unit, cmm / unit
    size = (max(1, int(round(w * fx))), max(1, int(round(h * fy))))
    if size != (w, h):
        base = base.resize(size, Image.BILINEAR)
    draw = ImageDraw.Draw(base)
    if labels2d is not None:
        lab = np.asarray(labels2d)
        edge = _outline(lab)
        if edge.any():
            rgbimg = np.asarray(base).copy()
            big = np.asarray(Image.fromarray(np.where(edge, lab, 0).astype(np.int32))
                             .resize(size, Image.NEAREST))
            for v in np.unique(big[big > 0]):
                rgbimg[big == v] = _PALETTE[(int(v) - 1) % len(_PALETTE)]
            base = Image.fromarray(rgbimg)
            draw = ImageDraw.Draw(base)
    lw = max(1, int(round(min(size) / 256)))
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
    return np.asarray(base)


def _outline(lab: np.ndarray) -> np.ndarray:
    """Pixels of a label image that touch a different label (4-neighbourhood)."""
    edge = np.zeros(lab.shape, bool)
    edge[1:, :] |= lab[1:, :] != lab[:-1, :]
    edge[:-1, :] |= lab[:-1, :] != lab[1:, :]
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    return edge & (lab > 0)


def write_png(path, rgb_image, *, overwrite: bool = False) -> str:
    """Save an ``(H, W, 3)`` or ``(H, W)`` uint8 image as PNG (or JPEG by extension)."""
    from PIL import Image

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}.get(ext)
    if fmt is None:
        raise DicomToolsError(path, "image file names must end in .png, .jpg or .jpeg")
    with atomic_output(path, overwrite) as tmp:
        Image.fromarray(np.asarray(rgb_image)).save(tmp, format=fmt)
    return path


def export_png(volume, out_dir, *, window=None, preset: str | None = None,
               axis: str = "axial", slices=None, overwrite: bool = False,
               prefix: str | None = None, progress=None) -> list[str]:
    """Write slices of a :class:`Volume` as windowed 8-bit PNGs with square pixels.

    Parameters
    ----------
    volume : Volume
        3D (4D volumes export their first time point; RGB exports as is).
    out_dir : path
        Folder (created if needed). Files are ``<prefix or axis>_<index:04d>.png``.
    window : (center, width), optional
        In the volume's units (HU for CT). Default: ``preset``, else the DICOM window, else
        the 0.5-99.5 percentile range.
    axis : {"axial", "coronal", "sagittal"}
        Plane of the patient (not of the acquisition): a sagittal series exported axially
        gives axial reformats.
    slices : iterable of int, optional
        Indices along ``axis`` (default: all).

    Returns
    -------
    list of str
        The files written.

    Notes
    -----
    With ``overwrite``, the folder's earlier slices named as this function names them
    (``axial|coronal|sagittal|<prefix>_NNNN.png``) that this export did not rewrite are
    removed once it has succeeded, so the folder never mixes slices of two exports; other
    files are never touched.
    """
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}, got {axis!r}")
    arr = volume.array
    lead = 1 if volume.n_time > 1 else 0
    if lead:
        arr = arr[0]
    view, scale, _ = canonical_view(arr, volume.spacing, volume.origin, volume.direction)
    win = None if volume.rgb else resolve_window(volume, window=window, preset=preset)
    n = {"axial": view.shape[0], "coronal": view.shape[1], "sagittal": view.shape[2]}[axis]
    idx = list(range(n)) if slices is None else [int(i) for i in slices]
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
        raise ValueError(f"slice index {bad[0]} out of range 0..{n - 1} for {axis}")
    stem = fit_name(prefix or axis, NAME_MAX - 16)
    names = [os.path.join(os.fspath(out_dir), f"{stem}_{i:04d}.png") for i in idx]
    if not overwrite:
        clash = [p for p in names if os.path.exists(p)]
        if clash:
            raise DicomToolsError(clash[0], "exists; not overwriting (use overwrite=True / --force)")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise DicomToolsError(exc.filename or out_dir, _reason(exc, "cannot create the "
                                                                    "folder")) from None
    previous = _own_pngs(out_dir, stem) if overwrite else []
    out = []
    for j, (i, name) in enumerate(zip(idx, names, strict=True)):
        plane, pix, _ = slice_plane(view, scale, axis, i)
        img = render_plane(np.asarray(plane), pix, win, rgb=volume.rgb)
        out.append(write_png(name, img, overwrite=overwrite))
        if progress is not None:
            progress(j + 1, len(idx))
    new = {os.path.basename(p) for p in out}
    if overwrite:  # our own earlier PNGs that this run did not rewrite are stale
        for n in sorted(set(previous) - new):
            try:
                os.unlink(os.path.join(os.fspath(out_dir), n))
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise DicomToolsError(exc.filename, _reason(exc, "cannot remove an earlier "
                                                                 "output")) from None
    return out


def _own_pngs(out_dir, stem: str) -> list[str]:
    """Names in ``out_dir`` that :func:`export_png` writes (``axial_0007.png``, any axis, or
    ``<stem>_0007.png``): regular files only."""
    import re

    pat = re.compile(rf"(?:axial|coronal|sagittal|{re.escape(stem)})_\d{{4,}}\.png")
    try:
        entries = list(os.scandir(out_dir))
    except OSError:
        return []
    return [e.name for e in entries if pat.fullmatch(e.name) and e.is_file(follow_symlinks=False)]


def export_annotated(image, image_scale, image_translate, path, *, window, rgb=False,
                     shapes=(), labels=None, overwrite: bool = False) -> list[str]:
    """Write an image as shown in napari (axis-aligned world grid) with annotations burned in.

    Parameters
    ----------
    image : array, 2D or 3D ``(z, y, x)`` display grid (layer data)
    image_scale, image_translate : sequences
        The layer's world transform (mm).
    path : str
        ``name.png``: a 2D image is written there; for 3D, each axial slice that carries an
        annotation (every slice when there are none) goes to ``name_<k:04d>.png``.
    shapes : iterable of dict
        ``{"type", "vertices" (world coordinates, n x 2 or n x 3), "color", "label"}``.
    labels : array, optional
        Label image on the same grid as ``image`` (outlines are drawn).
    """
    path = os.fspath(path)
    img = np.asarray(image) if not hasattr(image, "compute") else image
    nd = img.ndim - (1 if rgb else 0)
    sc = np.asarray(image_scale, float)[-nd:]
    tr = np.asarray(image_translate, float)[-nd:]
    if labels is not None and tuple(np.shape(labels)) != tuple(img.shape[:nd]):
        raise DicomToolsError(path, f"labels shape {np.shape(labels)} differs from the image "
                                    f"{img.shape[:nd]}; draw labels on the image's grid")
    shapes_idx = []
    for sh in shapes:
        v = np.asarray(sh["vertices"], float)[:, -nd:]
        shapes_idx.append(dict(sh, vertices=(v - tr) / sc))
    if nd == 2:
        pix = (sc[0], sc[1])
        lab = None if labels is None else np.asarray(labels)
        out = render_plane(np.asarray(img), pix, window, shapes=shapes_idx, labels2d=lab,
                           rgb=rgb)
        return [write_png(path, out, overwrite=overwrite)]
    if nd != 3:
        raise DicomToolsError(path, f"PNG export needs a 2D or 3D layer, got {nd}D")
    by_slice: dict[int, list] = {}
    for sh in shapes_idx:
        z = np.round(sh["vertices"][:, 0]).astype(int)
        if len(set(z.tolist())) == 1:
            by_slice.setdefault(int(z[0]), []).append(dict(sh, vertices=sh["vertices"][:, 1:]))
    lab_slices = set()
    if labels is not None:
        lab_arr = np.asarray(labels)
        lab_slices = set(np.nonzero(lab_arr.reshape(lab_arr.shape[0], -1).any(axis=1))[0]
                         .tolist())
    wanted = sorted(set(by_slice) | lab_slices) or list(range(img.shape[0]))
    wanted = [k for k in wanted if 0 <= k < img.shape[0]]
    stem = path[:-4] if path.lower().endswith(".png") else path
    names = [f"{stem}_{k:04d}.png" for k in wanted]
    if not overwrite:
        clash = [p for p in names if os.path.exists(p)]
        if clash:
            raise DicomToolsError(clash[0], "exists; not overwriting")
    out = []
    for k, name in zip(wanted, names, strict=True):
        lab2 = None if labels is None else np.asarray(labels[k])
        rgbimg = render_plane(np.asarray(img[k]), (sc[1], sc[2]), window,
                              shapes=by_slice.get(k, ()), labels2d=lab2, rgb=rgb)
        out.append(write_png(name, rgbimg, overwrite=overwrite))
    return out
