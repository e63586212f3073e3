"""Sphinx configuration for the napari-dicomtools API reference.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` (tests/test_docs.py
runs it with warnings as errors, and the doctest builder over the same pages).
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src")))

project = "napari-dicomtools"
author = "napari-dicomtools developers"
copyright = "napari-dicomtools developers, BSD-3-Clause"  # noqa: A001 - Sphinx's name
try:
    release = _version("napari-dicomtools")
except PackageNotFoundError:  # a source tree that was never installed
    release = "0.1.0.dev0"
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "numpydoc",
]
# nitpicky cross-references would flag every numpy/pydicom type in a signature; the build still
# fails on any other warning (tests/test_docs.py passes -W)
autosummary_generate = False
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True,
                           "member-order": "bysource"}
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()
intersphinx_mapping: dict = {}  # offline builds (CI has no network beyond package registries)
exclude_patterns = ["_build", "images"]
html_theme = "alabaster"
html_static_path: list[str] = []
html_title = f"napari-dicomtools {release}"
doctest_global_setup = """
import numpy as np
"""
# the doctest builder runs the ``.. doctest::`` blocks of these pages; docstring examples are
# run by tests/test_docs.py with the standard doctest module, in their module's namespace
doctest_test_doctest_blocks = ""
