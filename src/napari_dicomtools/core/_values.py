"""Lenient coercion of DICOM element values (private): a bad value becomes None, never an error.

The inputs are whatever a data set element holds (pydicom's ``MultiValue``, ``DSfloat``,
``IS``, bytes, str, the fast parser's decoded values), hence ``Any`` parameters; the outputs
are plain Python types.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, overload


class DatasetLike(Protocol):
    """What the header readers need of a data set: pydicom's ``Dataset``, the fast parser's
    ``FastDataset`` or a functional-group item (keyword or tag lookup, membership)."""

    def get(self, key: Any, default: Any = ..., /) -> Any: ...

    def __contains__(self, key: Any, /) -> bool: ...


@overload
def _f(v: Any) -> float | None: ...
@overload
def _f(v: Any, default: float) -> float: ...
@overload
def _f(v: Any, default: None) -> float | None: ...
def _f(v: Any, default: float | None = None) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


@overload
def _i(v: Any) -> int | None: ...
@overload
def _i(v: Any, default: int) -> int: ...
@overload
def _i(v: Any, default: None) -> int | None: ...
def _i(v: Any, default: int | None = None) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _floats(v: Any, n: int) -> list[float] | None:
    try:
        out = [float(x) for x in v]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(map(math.isfinite, out)) else None


def _first(v: Any) -> Any:
    """First value of a possibly multi-valued element (WindowCenter '40\\400' -> 40)."""
    if v is None:
        return None
    try:
        if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
            return v[0] if len(v) else None
    except TypeError:
        pass
    return v


def _as_list(v: Any) -> list[Any]:
    """A multi-valued element as a list (single values, including strings, become [v])."""
    if v is None or v == "":
        return []
    if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
        return list(v)
    return [v]


def _text(v: object) -> str:
    if v is None:
        return ""
    return str(v).strip()


def _group_item(group: DatasetLike | None, seq_kw: str) -> Any:
    """First item of ``seq_kw`` inside a functional-group item (a data set), or None."""
    if group is None:
        return None
    seq = group.get(seq_kw, None)
    if seq:
        return seq[0]
    return None


def _fg_value(per_frame: DatasetLike | None, shared: DatasetLike | None, seq_kw: str,
              kw: str) -> Any:
    for g in (per_frame, shared):
        item = _group_item(g, seq_kw)
        if item is not None and kw in item:
            return item.get(kw)
    return None
