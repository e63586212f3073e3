"""RT Dose: a dose grid in Gy (or relative dose) on its own geometry.

An RT Dose object is a multi-frame image whose frames are placed by GridFrameOffsetVector
(3004,000C) along the normal of ImageOrientationPatient, and whose stored integers times
DoseGridScaling (3004,000E) are the dose in DoseUnits (3004,0002): ``GY``, or ``RELATIVE``
(a fraction of a normalisation dose the object does not give, so never shown as Gy).
:func:`read_dose` reads it through :func:`~.volume.read_volume` (which applies the scaling
and places the frames) and adds what a user needs to read the values right.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, TypedDict

from .errors import DicomToolsError

if TYPE_CHECKING:
    from .series import Series
    from .volume import Volume

__all__ = ["RTDOSE_SOP_CLASS", "dose_unit_label", "read_dose"]

#: SOP Class UID of RT Dose Storage
RTDOSE_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.2"

_TAGS = ["DoseUnits", "DoseType", "DoseSummationType", "DoseComment",
         "ReferencedRTPlanSequence", "NormalizationPoint", "TissueHeterogeneityCorrection"]


def dose_unit_label(dose_units: str) -> str:
    """What the values of a dose are in, as a user reads it.

    Parameters
    ----------
    dose_units : str
        DoseUnits (3004,0002) as stored (any case, padding allowed).

    Returns
    -------
    str
        ``"Gy"`` for GY, ``"relative dose"`` for RELATIVE (a fraction of a normalisation
        dose, never relabelled as Gy), the stored text for anything else, and
        ``"(no DoseUnits)"`` when it is empty.

    Examples
    --------
    >>> dose_unit_label("GY"), dose_unit_label("relative "), dose_unit_label("")
    ('Gy', 'relative dose', '(no DoseUnits)')
    """
    u = (dose_units or "").strip().upper()
    return {"GY": "Gy", "RELATIVE": "relative dose"}.get(u, dose_units or "(no DoseUnits)")


class _DoseHeader(TypedDict):
    """The RT Dose attributes :func:`read_dose` adds to a volume's metadata."""

    dose_units: str
    dose_type: str
    dose_summation: str
    dose_comment: str
    referenced_plan_uids: list[str]
    heterogeneity_correction: list[str]


def _dose_header(path: str) -> _DoseHeader:
    from .headers import open_dicom, safe_dcmread
    from .sources import Source

    with open_dicom(Source.from_string(path)) as (fp, _size, _pre):
        ds = safe_dcmread(fp, path, stop_before_pixels=True, specific_tags=_TAGS)
    plans = [str(it.get("ReferencedSOPInstanceUID", "")) for it in
             ds.get("ReferencedRTPlanSequence", None) or []]
    hetero = ds.get("TissueHeterogeneityCorrection", None)
    return {"dose_units": str(ds.get("DoseUnits", "") or "").upper(),
            "dose_type": str(ds.get("DoseType", "") or ""),
            "dose_summation": str(ds.get("DoseSummationType", "") or ""),
            "dose_comment": str(ds.get("DoseComment", "") or ""),
            "referenced_plan_uids": [p for p in plans if p],
            "heterogeneity_correction": [str(v) for v in hetero] if hetero else []}


def read_dose(source: Series | os.PathLike[str] | str, *, lazy: bool = False) -> Volume:
    """Read an RT Dose object as a :class:`~.volume.Volume` of dose on its own grid.

    Parameters
    ----------
    source : Series or str or os.PathLike
        An RTDOSE series from :func:`~.series.scan`, or a file (or folder holding exactly one
        RT Dose).
    lazy : bool
        Decode frames as they are used.

    Returns
    -------
    Volume
        ``array`` in DoseUnits (DoseGridScaling applied), frames placed by
        GridFrameOffsetVector. ``metadata`` adds ``dose_units`` (GY or RELATIVE),
        ``units`` (``"Gy"`` or ``"relative dose"``), ``dose_type`` (PHYSICAL, EFFECTIVE,
        ERROR), ``dose_summation`` (PLAN, FRACTION, BEAM, ...), ``referenced_plan_uids``
        and ``max_dose`` (eager reads); ``problems`` says when the values are not Gy.

    Raises
    ------
    DicomToolsError
        Not an RT Dose, or none (or several) under a folder; any reading error.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> vol = read_dose(get_testdata_file("rtdose.dcm"))
    >>> vol.metadata["units"], vol.spacing
    ('relative dose', (5.0, 10.0, 10.0))
    """
    import numpy as np

    from .series import Series, scan
    from .volume import read_volume

    if isinstance(source, Series):
        series = source
    else:
        name = os.fspath(source)
        found = [s for s in scan(name) if s.first.sop_class == RTDOSE_SOP_CLASS]
        if len(found) != 1:
            raise DicomToolsError(name, f"holds {len(found)} RT Dose objects; give one file")
        series = found[0]
    if series.first.sop_class != RTDOSE_SOP_CLASS:
        raise DicomToolsError(series.first.path, f"not an RT Dose ({series.modality or 'no '}"
                                                 " modality); read it with read_volume")
    vol = read_volume(series, lazy=lazy)
    info = _dose_header(series.first.path)
    meta = vol.metadata
    meta.update(info, units=dose_unit_label(info["dose_units"]), kind="RTDOSE")
    meta["window"] = None  # a dose has no stored window; shown 0..max
    if isinstance(vol.array, np.ndarray):  # eager (a lazy dask array is not computed here)
        meta["max_dose"] = float(np.max(vol.array)) if vol.array.size else 0.0
    if info["dose_units"] != "GY":
        meta.setdefault("problems", []).append(
            f"DoseUnits is {info['dose_units'] or 'missing'}: the values are "
            f"{meta['units']}, not Gy")
    return vol
