"""Lenient coercion of DICOM element values (private): a bad value becomes None, never an error."""

from __future__ import annotations

import numpy as np


def _f(v, default=None):
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


def _i(v, default=None):
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _floats(v, n):
    try:
        out = [float(x) for x in v]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def _first(v):
    """First value of a possibly multi-valued element (WindowCenter '40\\400' -> 40)."""
    if v is None:
        return None
    try:
        if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
            return v[0] if len(v) else None
    except TypeError:
        pass
    return v


def _as_list(v) -> list:
    """A multi-valued element as a list (single values, including strings, become [v])."""
    if v is None or v == "":
        return []
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return list(v)
    return [v]


def _text(v) -> str:
    if v is None:
        return ""
    return str(v).strip()


def _group_item(group, seq_kw):
    """First item of ``seq_kw`` inside a functional-group item, or None."""
    if group is None:
        return None
    seq = group.get(seq_kw, None)
    if seq:
        return seq[0]
    return None


def _fg_value(per_frame, shared, seq_kw, kw):
    for g in (per_frame, shared):
        item = _group_item(g, seq_kw)
        if item is not None and kw in item:
            return item.get(kw)
    return None
