"""Process pools that are safe both from scripts and from inside napari."""

from __future__ import annotations

import multiprocessing as mp
import sys


def mp_context():
    """``fork`` (fast start) except in a process running Qt (napari), where forking a GUI is
    unsafe: ``spawn`` there, and wherever fork does not exist."""
    gui = any(m in sys.modules for m in ("qtpy", "PyQt5", "PyQt6", "PySide6"))
    method = "fork" if "fork" in mp.get_all_start_methods() and not gui else "spawn"
    return mp.get_context(method)
