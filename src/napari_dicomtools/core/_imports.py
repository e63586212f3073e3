"""Imports that cost more than the work on a small series."""

from __future__ import annotations

import sys

#: packages ``import nibabel`` pulls in for features we never use: pydicom for NIfTI DICOM
#: header extensions (``nibabel.nifti1``, ecode 2), scipy for SPM .mat files
#: (``nibabel.spm99analyze``)
_NIBABEL_OPTIONAL = ("pydicom", "scipy")


def nibabel():
    """``nibabel``, without letting it import pydicom or scipy when nothing else has.

    ``import nibabel`` imports pydicom and scipy at once for features we do not use, and
    pydicom's import alone (pixel decoders, its data manager, ``requests``) takes longer than
    converting a small series: about a second of every ``dicomtools convert`` call on a plain
    CT, whose headers the fast parser reads without pydicom (benchmarks/bench_small_series.py).
    So in a process where they are not loaded yet (and that is not napari, where other
    plugins may want nibabel whole) nibabel is imported with them hidden; whatever imports
    them later gets the real packages.
    """
    if "nibabel" in sys.modules or "napari" in sys.modules:
        import nibabel as nib

        return nib
    hidden = [m for m in _NIBABEL_OPTIONAL if m not in sys.modules]
    for m in hidden:
        sys.modules[m] = None  # type: ignore[assignment] - import m -> ImportError
    try:
        import nibabel as nib
    finally:
        for m in hidden:
            if m in sys.modules and sys.modules[m] is None:
                del sys.modules[m]
    return nib
