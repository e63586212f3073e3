"""The API reference builds with zero warnings, and every example in it and in the core's
docstrings runs.

``docs/`` is a Sphinx site (autodoc + numpydoc) over the public core modules. Sphinx's doctest
builder runs the ``.. doctest::`` blocks of the pages; the standard :mod:`doctest` runs the
docstring examples of each core module in that module's own namespace.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"

pytest.importorskip("sphinx")
pytest.importorskip("numpydoc")


def _sphinx(builder: str, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder,
         str(DOCS), str(out / builder)],
        capture_output=True, text=True, timeout=600)


def test_api_reference_builds_without_warnings(tmp_path):
    run = _sphinx("html", tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    assert not run.stderr.strip(), run.stderr[-4000:]
    page = (tmp_path / "html" / "api" / "volume.html").read_text(encoding="utf-8")
    # numpydoc rendered the read_volume docstring's sections
    assert "read_volume" in page and "Parameters" in page


def test_documentation_examples_run(tmp_path):
    run = _sphinx("doctest", tmp_path)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    report = (tmp_path / "doctest" / "output.txt").read_text(encoding="utf-8")
    assert "0 failures in tests" in report


def _core_modules():
    import napari_dicomtools.core as core

    for info in pkgutil.iter_modules(core.__path__):
        yield f"napari_dicomtools.core.{info.name}"


@pytest.mark.parametrize("name", list(_core_modules()))
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
