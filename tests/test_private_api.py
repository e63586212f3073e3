"""No module reaches into another public module's private names (issue 13).

A maintainer reads ``from .volume import _plan`` as "volume's private function is really shared
API": a name another module needs is either public (in ``__all__``, documented) or lives in a
private module (``core/_something.py``) that both import. Inside the core, no module imports a
``_name`` from a public core module (``from .x import _y`` or ``x._y``); the napari adapters and
the CLI (``src/napari_dicomtools/*.py``) use only public core API: no private core module, no
``_name`` of a public one.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_dicomtools"
CORE = PACKAGE / "core"
PUBLIC_CORE = {p.stem for p in CORE.glob("*.py") if not p.stem.startswith("_")}

# What is still crossed today, each with its owner's plan; remove an entry once it is gone
# (the test fails on a stale entry too, so the list only shrinks). Empty: nothing is crossed.
KNOWN: set[tuple[str, str]] = set()


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _core_module(node: ast.ImportFrom, in_core: bool) -> str | None:
    """The core module an import names (``"volume"``, ``"_decode"``), ``""`` for the core
    package itself, None for anything else."""
    parts = node.module.split(".") if node.module else []
    if node.level == 0:
        if parts[:2] != ["napari_dicomtools", "core"]:
            return None
        rest = parts[2:]
    elif node.level == 1 and in_core:
        rest = parts
    elif node.level == 1 and parts[:1] == ["core"]:
        rest = parts[1:]
    else:
        return None
    return rest[0] if rest else ""


def crossings(path: Path) -> set[tuple[str, str]]:
    """``(file, "module._name")`` for every private name of a core module ``path`` uses
    (a private core module itself, ``"_module"``, when ``path`` is outside the core)."""
    in_core = path.parent == CORE
    rel = path.relative_to(PACKAGE).as_posix()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[tuple[str, str]] = set()
    modules: dict[str, str] = {}  # local names bound to public core modules -> the module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = _core_module(node, in_core)
            if mod is None:
                continue
            for alias in node.names:
                if mod == "":  # from . import x / from .core import x
                    if alias.name in PUBLIC_CORE:
                        modules[alias.asname or alias.name] = alias.name
                    elif _private(alias.name) and not in_core:
                        found.add((rel, alias.name))
                elif _private(mod):
                    if not in_core:
                        found.add((rel, mod))
                elif _private(alias.name):
                    found.add((rel, f"{mod}.{alias.name}"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[:2] == ["napari_dicomtools", "core"] and len(parts) > 2 \
                        and _private(parts[2]) and not in_core:
                    found.add((rel, parts[2]))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            value = node.value
            if isinstance(value, ast.Name) and value.id in modules:
                found.add((rel, f"{modules[value.id]}.{node.attr}"))
            elif isinstance(value, ast.Attribute) and value.attr in PUBLIC_CORE and \
                    isinstance(value.value, ast.Name) and value.value.id == "core":
                found.add((rel, f"{value.attr}.{node.attr}"))
    return found


def _all_crossings() -> set[tuple[str, str]]:
    files = sorted(CORE.glob("*.py")) + sorted(PACKAGE.glob("*.py"))
    return set().union(*(crossings(p) for p in files))


def test_no_private_names_cross_modules():
    new = sorted(_all_crossings() - KNOWN)
    assert not new, ("private names used across modules (make them public with a docstring, "
                     f"or move them into a private core module both import): {new}")


def test_known_crossings_are_still_there():
    """An entry of KNOWN that no longer occurs is removed, so the list only shrinks."""
    stale = sorted(KNOWN - _all_crossings())
    assert not stale, f"remove from KNOWN: {stale}"


def test_the_check_sees_each_form(tmp_path, monkeypatch):
    """The walk catches every way of reaching a private name (it must be able to fail)."""
    core = tmp_path / "pkg" / "core"
    core.mkdir(parents=True)
    (core / "a.py").write_text(
        "from .volume import _plan, read_volume\n"
        "from . import series, metadata as m\n"
        "from ._values import _f\n"  # a private module's names: fine inside the core
        "x = series._group_key, m._cell\n", encoding="utf-8")
    (tmp_path / "pkg" / "_widget.py").write_text(
        "from .core.volume import _read_series\n"
        "from .core._decode import decode_frame\n"
        "from .core import volume, _limits\n"
        "import napari_dicomtools.core._parallel\n"
        "from napari_dicomtools.core.png import _base_image\n"
        "y = volume._plan\n", encoding="utf-8")
    monkeypatch.setitem(globals(), "PACKAGE", tmp_path / "pkg")
    monkeypatch.setitem(globals(), "CORE", core)
    assert crossings(core / "a.py") == {("core/a.py", "volume._plan"),
                                        ("core/a.py", "series._group_key"),
                                        ("core/a.py", "metadata._cell")}
    assert crossings(tmp_path / "pkg" / "_widget.py") == {
        ("_widget.py", "volume._read_series"), ("_widget.py", "_decode"),
        ("_widget.py", "_limits"), ("_widget.py", "_parallel"),
        ("_widget.py", "png._base_image"), ("_widget.py", "volume._plan")}
