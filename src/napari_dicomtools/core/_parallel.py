"""Process pools that are safe both from scripts and from inside napari.

pydicom's compressed-pixel plugins hold the GIL while they decode (pylibjpeg-libjpeg,
pylibjpeg-openjpeg and pyjpegls are Cython without ``nogil``, pylibjpeg-rle is pyo3, GDCM is
SWIG), so threads cannot decode two frames at once with them. When imagecodecs is installed
(the ``[all]`` extra) its GIL-free codecs decode monochrome frames in threads, straight into
the volume (:data:`._decode.FAST_CODECS`); the rest (no imagecodecs, colour, multi-frame) is
decoded by a pool of worker processes (:func:`process_pool`), one frame per task. The pool
is made once and reused, its size is :func:`decode_workers`.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing.context import BaseContext


def mp_context() -> BaseContext:
    """``fork`` (fast start) except in a process running Qt (napari), where forking a GUI is
    unsafe: ``spawn`` there, and wherever fork does not exist."""
    import multiprocessing as mp

    gui = any(m in sys.modules for m in ("qtpy", "PyQt5", "PyQt6", "PySide6"))
    method = "fork" if "fork" in mp.get_all_start_methods() and not gui else "spawn"
    return mp.get_context(method)


def decode_workers() -> int:
    """How many frames decode at once: ``NAPARI_DICOMTOOLS_WORKERS`` if set (1 turns the
    worker processes off), else the CPUs this process may run on; always 1 inside a worker
    process (of our pool, of Dask distributed, of any multiprocessing pool): the parallelism
    is already outside, and daemonic processes cannot have children."""
    # a process that never imported multiprocessing is no worker of a pool (a spawned or
    # forked worker has it loaded): a small conversion is spared its import (socket, pickle,
    # selectors...)
    mp = sys.modules.get("multiprocessing")
    if mp is not None and (mp.parent_process() is not None or mp.current_process().daemon):
        return 1
    env = os.environ.get("NAPARI_DICOMTOOLS_WORKERS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class _PoolSlot(TypedDict):
    pool: ProcessPoolExecutor | None
    workers: int


_POOL: _PoolSlot = {"pool": None, "workers": 0}
_POOL_LOCK = threading.Lock()


def process_pool(workers: int) -> ProcessPoolExecutor:
    """The shared :class:`~concurrent.futures.ProcessPoolExecutor` of ``workers`` processes
    (made on first use, remade when broken or resized, shut down at exit)."""
    from concurrent.futures import ProcessPoolExecutor

    with _POOL_LOCK:
        pool = _POOL["pool"]
        if pool is not None and (_POOL["workers"] != workers or getattr(pool, "_broken", False)):
            pool.shutdown(wait=False, cancel_futures=True)
            pool = None
        if pool is None:
            pool = ProcessPoolExecutor(workers, mp_context=mp_context())
            _POOL["pool"], _POOL["workers"] = pool, workers
        return pool


def discard_pool() -> None:
    """Drop the shared pool (after a worker died); the next call makes a fresh one."""
    with _POOL_LOCK:
        pool, _POOL["pool"] = _POOL["pool"], None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


atexit.register(discard_pool)
