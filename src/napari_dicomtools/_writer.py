"""napari writer contributions: thin adapters over :mod:`napari_dicomtools.core.export`."""

from __future__ import annotations

from .core.export import write_layer_nifti


def _nifti(path: str, data, meta: dict) -> list[str]:
    # napari never asks twice: a file chosen in its save dialog was confirmed by the user
    return [write_layer_nifti(path, data, meta.get("scale", (1.0,) * data.ndim),
                              meta.get("translate", (0.0,) * data.ndim),
                              meta.get("metadata") or {}, overwrite=True)]


def write_image_nifti(path: str, data, meta: dict) -> list[str]:
    """Image layer -> NIfTI on its true patient grid (sform/qform RAS, like dcm2niix)."""
    if meta.get("rgb"):
        raise ValueError(f"{path}: RGB layers cannot be saved as NIfTI; use PNG")
    return _nifti(path, data, meta)


def write_labels_nifti(path: str, data, meta: dict) -> list[str]:
    """Labels layer -> NIfTI in the same patient space as the image it was drawn on."""
    return _nifti(path, data, meta)
