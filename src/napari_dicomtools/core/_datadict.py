"""pydicom's data dictionary and UID registry, without importing pydicom.

``import pydicom`` costs 0.3-0.5 s of CPU (its pixel decoders, numpy, ``requests`` through
``pydicom.data``), more than de-identifying a few hundred files by the byte-level path
(:mod:`._anonfast`). The tables themselves are plain data modules
(``pydicom/_dicom_dict.py``, ``pydicom/_uid_dict.py``, generated from the standard): they are loaded here from pydicom's
own file (9 ms), or taken from ``sys.modules`` when pydicom is already imported, so both paths use
the very same tables as pydicom. The functions mirror :mod:`pydicom.datadict`'s (same repeater
masks, same ``KeyError``), which ``tests/test_anonymize_fast.py`` checks tag by tag.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from functools import lru_cache
from types import ModuleType

__all__ = [
    "dictionary_has_tag", "dictionary_vm", "dictionary_vr", "keyword_for_tag",
    "tag_for_keyword", "uid_registry",
]

#: (VR, VM, name, retired, keyword) per tag, as in pydicom's DicomDictionary
Entry = tuple[str, str, str, str, str]


def _pydicom_module(name: str, as_shipped: bool = False) -> ModuleType:
    """``pydicom.<name>`` (a pure data module), executed from pydicom's file without running
    ``pydicom/__init__.py``; the imported module when pydicom is loaded already, unless
    ``as_shipped`` (the file's content, whatever was added to the loaded module since)."""
    loaded = sys.modules.get(f"pydicom.{name}")
    if loaded is not None and not as_shipped:
        return loaded
    try:
        spec = importlib.util.find_spec("pydicom")
        folder = list(spec.submodule_search_locations or [])[0] if spec else None
        path = os.path.join(folder, f"{name}.py") if folder else ""
        sub = importlib.util.spec_from_file_location(
            f"napari_dicomtools.core._pydicom{name}", path) if os.path.isfile(path) else None
        if sub is None or sub.loader is None:
            raise ImportError(name)
        module = importlib.util.module_from_spec(sub)
        sub.loader.exec_module(module)
        return module
    except Exception:  # noqa: BLE001 - any surprise: pydicom's own import
        return importlib.import_module(f"pydicom.{name}")


@lru_cache(maxsize=1)
def _tables() -> tuple[dict[int, Entry], dict[str, Entry], list[tuple[str, int, int]],
                       dict[str, int]]:
    """(DicomDictionary, RepeatersDictionary, repeater masks, keyword -> tag)."""
    module = _pydicom_module("_dicom_dict")
    main: dict[int, Entry] = module.DicomDictionary
    repeaters: dict[str, Entry] = module.RepeatersDictionary
    masks = [(mask_x, int(mask_x.replace("x", "0"), 16),
              int("".join("F0"[c == "x"] for c in mask_x), 16)) for mask_x in repeaters]
    keywords = {entry[4]: tag for tag, entry in main.items()}
    return main, repeaters, masks, keywords


def _entry(tag: int) -> Entry:
    """pydicom's ``get_entry``: the main dictionary, then the repeating groups (50xx,
    60xx ...) for public tags."""
    main, repeaters, masks, _ = _tables()
    try:
        return main[tag]
    except KeyError:
        if not (tag >> 16) & 1:
            for mask_x, mask1, mask2 in masks:
                if (tag ^ mask1) & mask2 == 0:
                    return repeaters[mask_x]
        raise KeyError(f"Tag {tag:08X} not found in DICOM dictionary") from None


def dictionary_has_tag(tag: int) -> bool:
    """Whether ``tag`` is in the main data dictionary (repeaters not: as pydicom)."""
    return tag in _tables()[0]


def dictionary_vr(tag: int) -> str:
    """The dictionary VR (``"US or SS"`` as written there); ``KeyError`` if unknown."""
    return _entry(tag)[0]


def dictionary_vm(tag: int) -> str:
    """The dictionary VM (``"1"``, ``"1-n"`` ...); ``KeyError`` if unknown."""
    return _entry(tag)[1]


def keyword_for_tag(tag: int) -> str:
    """The keyword, ``""`` for an unknown tag."""
    try:
        return _entry(tag)[4]
    except KeyError:
        return ""


def tag_for_keyword(keyword: str) -> int | None:
    """The tag of a keyword of the main dictionary, else None."""
    return _tables()[3].get(keyword)


@lru_cache(maxsize=1)
def uid_registry() -> frozenset[str]:
    """Every UID of pydicom's registry (SOP classes, transfer syntaxes, well-known instances
    and frames of reference, coding schemes ...) as pydicom ships it: read from its file even
    when pydicom is loaded, because importing pynetdicom adds transfer syntaxes to the
    loaded dictionary, and what is kept must not depend on what was imported first."""
    return frozenset(_pydicom_module("_uid_dict", as_shipped=True).UID_dictionary)
