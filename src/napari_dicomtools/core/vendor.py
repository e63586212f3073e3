"""Vendor private tags: Siemens, GE, Philips and UIH diffusion, GE pepolar, Philips precise
scaling, Siemens XA echo numbers and receive coils, UIH grid files (and the standard diffusion
attributes they complement).

The readers live in the private ``_vendortags`` (the header stage calls them too); this
module is their public API. Every reader takes a parsed data set (the fast parser's or
pydicom's) and returns ``None`` (or a neutral value) when the tags are absent or not from the
expected vendor, as dcm2niix reads them.
"""

from __future__ import annotations

from ._values import DatasetLike
from ._vendortags import (
    Diffusion,
    _diffusion,
    _ge_diffusion,
    _philips_diffusion,
    _siemens_diffusion,
    _uih_diffusion,
)

__all__ = ["Diffusion", "read_diffusion"]


def read_diffusion(ds: DatasetLike) -> Diffusion:
    """b-value and gradient direction of an MR image, as dcm2niix reads them.

    The standard DiffusionBValue (0018,9087) and DiffusionGradientOrientation (0018,9089)
    (top level or an enhanced MRDiffusionSequence), completed by what the vendors' private
    tags give: Siemens (0019,100C)/(0019,100E), GE (0043,1039) and (0019,10BB-BD) (image
    frame turned into LPS; the b-value scaled by a shortened gradient), Philips (2001,1003)
    and (2005,10B0-B2), United Imaging (0065,1009)/(0065,1037). Absent, foreign or unreadable
    tags give None, never an error.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset or FastDataset
        The image's data set (the per-frame values of an enhanced multi-frame file are read
        by :func:`~napari_dicomtools.core.series.scan`, frame by frame).

    Returns
    -------
    Diffusion
        ``(bvalue, gradient)``, each None when no tag gives it.

    Examples
    --------
    >>> from pydicom import Dataset
    >>> ds = Dataset()
    >>> ds.DiffusionBValue = 1000
    >>> ds.DiffusionGradientOrientation = [0, 0, 1]
    >>> read_diffusion(ds)
    Diffusion(bvalue=1000.0, gradient=(0.0, 0.0, 1.0))

    Siemens' private tags, when the standard ones are absent:

    >>> ds = Dataset()
    >>> ds.add_new(0x00190010, "LO", "SIEMENS MR HEADER")
    >>> ds.add_new(0x0019100C, "IS", "800")
    >>> ds.add_new(0x0019100E, "FD", [0.0, 1.0, 0.0])
    >>> read_diffusion(ds)
    Diffusion(bvalue=800.0, gradient=(0.0, 1.0, 0.0))
    >>> read_diffusion(Dataset())
    Diffusion(bvalue=None, gradient=None)
    """
    b, g = _diffusion(ds, None, None)
    for vendor in (_siemens_diffusion, _ge_diffusion, _philips_diffusion, _uih_diffusion):
        if b is not None and g is not None:
            break
        vb, vg = vendor(ds)  # private tags fill what the standard ones lack
        if vb is not None and (b is None or g is None):
            b, g = (b if b is not None and vg is None else vb), (g if g is not None else vg)
    return Diffusion(b, g)
