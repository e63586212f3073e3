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


@pytest.fixture(scope="module")
def sphinx(tmp_path_factory):
    """Both Sphinx builds (html, doctest) of the site, run side by side: {builder: (run, out)}."""
    out = tmp_path_factory.mktemp("docs")
    procs = {builder: subprocess.Popen(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder,
         "-d", str(out / f"doctrees-{builder}"), str(DOCS), str(out / builder)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for builder in ("html", "doctest")}
    runs = {}
    for builder, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        runs[builder] = (subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr),
                         out / builder)
    return runs


def test_api_reference_builds_without_warnings(sphinx):
    run, out = sphinx["html"]
    assert run.returncode == 0, run.stderr[-4000:]
    assert not run.stderr.strip(), run.stderr[-4000:]
    page = (out / "api" / "volume.html").read_text(encoding="utf-8")
    # numpydoc rendered the read_volume docstring's sections
    assert "read_volume" in page and "Parameters" in page


def test_documentation_examples_run(sphinx):
    run, out = sphinx["doctest"]
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    report = (out / "output.txt").read_text(encoding="utf-8")
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
