#!/usr/bin/env python
"""What linked orthogonal views cost while reading: moving the shared point (a click or a
slider step) and drawing, with and without the two side views, on one CT-sized volume.

baseline: the main canvas alone; a step of the axial slider, then the canvas is drawn.
ortho   : the same viewer with the orthogonal views shown; a click-equivalent move of the
          shared point (axial slice, coronal and sagittal positions all change), then all
          three canvases are drawn (each re-slices its plane from the same array).

Both run in this process on one in-memory int16 volume (default 256x512x512, 0.7 x 0.7 x
1.25 mm, the geometry of a chest CT), ``--steps`` moves each, median per move reported, and
the ratio ortho/baseline. Also the time to show the views (first fit and draw included).
Needs a display (``xvfb-run -a python benchmarks/bench_ortho.py``).

usage: python benchmarks/bench_ortho.py [--shape 256 512 512] [--steps 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _draw(canvases, app):
    for c in canvases:
        c._scene_canvas.render()  # a full draw of the canvas (what a paint does)
    app.processEvents()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(256, 512, 512))
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_dicomtools._ortho import show_orthogonal_views
    from napari_dicomtools._viewer import install
    from napari_dicomtools.core.grid import Grid

    rng = np.random.default_rng(0)
    shape = tuple(args.shape)
    vol = rng.integers(-1000, 1500, size=shape, dtype=np.int16)
    scale = (1.25, 0.7, 0.7)
    grid = Grid.axis_aligned(scale, (0.0, 0.0, 0.0), shape)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    install(viewer)
    viewer.add_image(vol, scale=scale, name="CT", contrast_limits=(-160, 240),
                     metadata={"grid": grid.to_metadata()})
    app = QApplication.instance()
    main_canvas = viewer.window._qt_viewer.canvas
    _draw([main_canvas], app)

    def moves(n):
        z = np.linspace(0, (shape[0] - 1) * scale[0], n)
        y = np.linspace(0, (shape[1] - 1) * scale[1], n)
        x = np.linspace(0, (shape[2] - 1) * scale[2], n)
        return list(zip(z, y[::-1], x, strict=True))

    base = []
    for z, _, _ in moves(args.steps):
        t = time.perf_counter()
        viewer.dims.set_point(0, z)
        _draw([main_canvas], app)
        base.append(time.perf_counter() - t)

    t = time.perf_counter()
    ortho = show_orthogonal_views(viewer)
    ortho.reset_views()
    canvases = [main_canvas] + [qv.canvas for qv in ortho.qt_viewers]
    _draw(canvases, app)
    show_s = time.perf_counter() - t

    linked = []
    for p in moves(args.steps):
        t = time.perf_counter()
        viewer.dims.set_point([0, 1, 2], p)
        _draw(canvases, app)
        linked.append(time.perf_counter() - t)
    assert np.allclose(ortho.models[0].dims.point, viewer.dims.point)

    b, o = statistics.median(base), statistics.median(linked)
    print(f"volume {shape} int16, {args.steps} moves each")
    print(f"baseline (main canvas, slice step + draw): {b * 1e3:7.1f} ms")
    print(f"ortho (point move + 3 canvases drawn):      {o * 1e3:7.1f} ms")
    print(f"ratio ortho/baseline: {o / b:.2f}x; showing the views: {show_s * 1e3:.0f} ms")
    viewer.close()


if __name__ == "__main__":
    main()
