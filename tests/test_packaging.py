"""What a user gets from `pip install napari-dicomtools`, and the repository's lint checks.

``test_wheel_alone_reads_compressed_dicom`` (marker ``packaging``) builds the sdist and, from it,
the wheel with ``python -m build``, installs the wheel with no extras into a fresh virtual
environment (no system site-packages; dependencies come from the package index, as for a napari
hub install) and runs ``dicomtools info``, ``convert`` and ``png`` there on JPEG Lossless,
JPEG 2000, JPEG-LS and RLE files from pydicom's bundled test data (plus a grayscale CT encoded
as JPEG Lossless by GDCM when GDCM is installed here), comparing the decoded values with
pydicom's in this environment. ``test_core_tests_pass_against_installed_wheel`` runs the core
test modules, copied out of the repository, against that installed wheel. They take two
minutes or so; deselect it with
``-m "not packaging"`` for a quick local run. CI (``.ci/run``) runs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_REPO = (ROOT / "pyproject.toml").is_file() and (ROOT / "src" / "napari_dicomtools").is_dir()

# compressed files bundled with pydicom: (file, transfer syntax, grayscale -> NIfTI)
COMPRESSED = [
    ("SC_rgb_jpeg_gdcm.dcm", "1.2.840.10008.1.2.4.70", False),  # JPEG Lossless SV1, RGB
    ("MR_small_jp2klossless.dcm", "1.2.840.10008.1.2.4.90", True),  # JPEG 2000 Lossless
    ("MR_small_RLE.dcm", "1.2.840.10008.1.2.5", True),  # RLE Lossless
    ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80", True),  # JPEG-LS Lossless
]

# what an unreachable package index looks like in pip's / build's output
OFFLINE = ("Could not find a version that satisfies", "No matching distribution found",
           "NewConnectionError", "Temporary failure in name resolution",
           "Network is unreachable", "Max retries exceeded", "ProxyError",
           "Name or service not known")


def _run(cmd, *, timeout=600, env=None, cwd=None):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


def _clean_env(venv: Path | None = None) -> dict:
    """The environment without this interpreter's virtualenv or PYTHONPATH leaking in."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
        env["PATH"] = str(venv / "bin") + os.pathsep + env.get("PATH", "")
    return env


def _check(result, what: str):
    """Fail with the output; skip when the only problem is an unreachable package index."""
    if result.returncode == 0:
        return
    out = result.stdout + result.stderr
    if any(sign in out for sign in OFFLINE):
        pytest.skip(f"{what}: the package index is unreachable (offline?): "
                    + out.strip().splitlines()[-1][:300])
    pytest.fail(f"{what} failed (exit {result.returncode}):\n{out[-4000:]}")


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """sdist and wheel built by `python -m build` (the wheel is built from the sdist)."""
    if not IN_REPO:
        pytest.skip("not running from a source checkout (no pyproject.toml beside tests/)")
    pytest.importorskip("build", reason="`build` is not installed (it is in the testing extra)")
    out = tmp_path_factory.mktemp("dist")
    r = _run([sys.executable, "-m", "build", "--outdir", out, ROOT], env=_clean_env())
    _check(r, "python -m build")
    sdists, wheels = list(out.glob("*.tar.gz")), list(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, os.listdir(out)
    return sdists[0], wheels[0]


@pytest.mark.packaging
def test_sdist_and_wheel_contents(dists):
    sdist, wheel = dists
    with tarfile.open(sdist) as tf:
        top = tf.getnames()[0].split("/")[0]
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for need in ("pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md",
                 "src/napari_dicomtools/py.typed", "src/napari_dicomtools/napari.yaml",
                 "tests/conftest.py"):
        assert need in names, f"{need} missing from {sdist.name}"
    assert not any(n.startswith(("benchmarks/", ".ci/")) for n in names)

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        meta = zf.read(f"{dist_info}/METADATA").decode()
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    for need in ("napari_dicomtools/py.typed", "napari_dicomtools/napari.yaml",
                 "napari_dicomtools/core/data/confidentiality_profile_attributes.json",
                 f"{dist_info}/licenses/LICENSE"):
        assert need in names, f"{need} missing from {wheel.name}"
    assert "napari-dicomtools = napari_dicomtools:napari.yaml" in entry_points
    assert "dicomtools = napari_dicomtools.cli:main" in entry_points
    # version: one source, the same in the sdist's and the wheel's names
    assert wheel.name.split("-")[1] == top.split("-")[-1]

    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines()
                if line.startswith("Requires-Dist:")]
    base = [r for r in requires if "extra ==" not in r]

    def extra(req):
        found = re.search(r"extra\s*==\s*['\"]([\w-]+)['\"]", req)
        return found.group(1) if found else None

    for codec in ("pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle",
                  "scipy", "scikit-image", "pillow", "pydicom", "nibabel"):
        assert any(r.lower().replace("_", "-").startswith(codec) for r in base), (codec, base)
    # no Qt binding anywhere but the development extras
    qt = ("pyqt5", "pyqt6", "pyside2", "pyside6")
    for r in requires:
        if r.lower().startswith(qt) or "napari[pyqt" in r.lower() or "napari[all" in r.lower():
            assert extra(r) in ("qt", "testing"), r
    assert not any(r.lower().startswith(("napari", "qtpy", "magicgui", "python-gdcm"))
                   for r in base), base


@pytest.fixture(scope="module")
def wheel_venv(dists, tmp_path_factory):
    """A fresh venv (no system site-packages) with only `pip install <wheel>`, no extras."""
    _, wheel = dists
    venv = tmp_path_factory.mktemp("wheel") / "venv"
    r = _run([sys.executable, "-m", "venv", venv], env=_clean_env())  # no system site-packages
    if r.returncode != 0:
        pytest.skip(f"cannot create a virtual environment: {r.stderr.strip()[-300:]}")
    env = _clean_env(venv)
    _check(_run([venv / "bin" / "python", "-m", "pip", "install", "-q", wheel], env=env),
           f"pip install {wheel.name}")
    return venv


@pytest.mark.packaging
def test_wheel_alone_reads_compressed_dicom(dists, wheel_venv, tmp_path):
    """`pip install <wheel>` (no extras) in a fresh venv reads compressed DICOM with the CLI."""
    import pydicom
    from pydicom.data import get_testdata_file

    _, wheel = dists
    venv = wheel_venv
    py = venv / "bin" / "python"
    cli = venv / "bin" / "dicomtools"
    env = _clean_env(venv)

    # the bare install: no napari, no Qt, no GDCM; pylibjpeg decodes
    probe = ("import importlib.metadata as m, importlib.util as u, sys, json, napari_dicomtools;"
             "json.dump({'version': napari_dicomtools.__version__,"
             " 'dist': m.version('napari-dicomtools'),"
             " 'absent': [n for n in ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide6', 'gdcm')"
             "            if u.find_spec(n) is None],"
             " 'site': sys.prefix}, sys.stdout)")
    r = _run([py, "-c", probe], env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["version"] == info["dist"] == wheel.name.split("-")[1]
    assert set(info["absent"]) == {"napari", "qtpy", "PyQt5", "PyQt6", "PySide6", "gdcm"}, info
    assert Path(info["site"]).resolve() == venv.resolve()

    cases = []
    for name, syntax, gray in COMPRESSED:
        src = get_testdata_file(name)
        assert src, f"{name} not bundled with this pydicom"
        cases.append((name, Path(src), syntax, gray, pydicom.dcmread(src).pixel_array))
    # grayscale CT in JPEG Lossless (what PACS exports use), encoded by GDCM when this
    # environment has it (the testing extra does); the reference is the uncompressed original
    jpll = _gdcm_jpeg_lossless(get_testdata_file("CT_small.dcm"), tmp_path / "CT_small_jpll.dcm")
    if jpll is not None:
        cases.append(("CT_small_jpll.dcm", jpll, "1.2.840.10008.1.2.4.70", True,
                      pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array))

    for name, src, syntax, gray, pixels in cases:
        ds = pydicom.dcmread(src, stop_before_pixels=True)
        assert ds.file_meta.TransferSyntaxUID == syntax
        case = tmp_path / Path(name).stem
        (case / "in").mkdir(parents=True)
        shutil.copy(src, case / "in" / name)

        r = _run([cli, "info", "--json", case / "in"], env=env, cwd=tmp_path)
        assert r.returncode == 0, f"info {name}: {r.stderr}"
        report = json.loads(r.stdout)
        assert len(report["series"]) == 1 and not report["skipped"], (name, report)
        assert report["series"][0]["shape"][-2:] == [ds.Rows, ds.Columns]

        r = _run([cli, "png", case / "in", case / "png"], env=env, cwd=tmp_path)
        assert r.returncode == 0, f"png {name}: {r.stderr}"
        pngs = sorted((case / "png").rglob("*.png"))
        assert len(pngs) == 1, (name, pngs)
        if not gray:  # RGB: the PNG holds the decoded pixels unchanged
            from PIL import Image

            assert np.array_equal(np.asarray(Image.open(pngs[0])), pixels), name
            continue

        out = case / "out.nii.gz"
        r = _run([cli, "convert", case / "in", out], env=env, cwd=tmp_path)
        assert r.returncode == 0, f"convert {name}: {r.stderr}"
        import nibabel as nib

        data = np.squeeze(np.asanyarray(nib.load(out).dataobj))  # (column, row)
        slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
        assert np.array_equal(data.T, pixels * slope + intercept), name
    assert len(cases) >= len(COMPRESSED)


#: core test modules that need nothing but the base install (plus pytest), chosen where what the
#: wheel ships matters: sources/zip/DICOMDIR and header parsing, the codecs, the vendored PS3.15
#: table, Pillow and nibabel writers; napari tests in them skip through the stand-in fixture below.
#: (Pure-numpy geometry and the scipy/scikit-image tools run in the main suite; the base
#: requirements for them are checked in test_sdist_and_wheel_contents.)
CORE_TESTS = ["conftest.py", "test_scan.py", "test_volume.py", "test_export.py",
              "test_anonymize.py", "test_fastheader.py", "test_png.py"]

_NO_NAPARI_PLUGIN = '''
import pytest


@pytest.fixture
def make_napari_viewer():
    pytest.skip("napari is not installed (base install)")


@pytest.fixture
def qtbot():
    pytest.skip("Qt is not installed (base install)")
'''


@pytest.mark.packaging
def test_core_tests_pass_against_installed_wheel(wheel_venv, tmp_path):
    """The core tests, copied out of the repository, pass against the installed wheel: what the
    wheel ships (data files, manifest, modules) is what the tests exercise, not the source tree."""
    if not IN_REPO:
        pytest.skip("not running from a source checkout")
    env = _clean_env(wheel_venv)
    py = wheel_venv / "bin" / "python"
    _check(_run([py, "-m", "pip", "install", "-q", "pytest"], env=env), "pip install pytest")
    suite = tmp_path / "suite"
    suite.mkdir()
    for name in CORE_TESTS:
        shutil.copy(ROOT / "tests" / name, suite / name)
    if (ROOT / "tests" / "data").is_dir():
        shutil.copytree(ROOT / "tests" / "data", suite / "data")
    (suite / "no_napari_here.py").write_text(_NO_NAPARI_PLUGIN, encoding="utf-8")
    env["PYTHONPATH"] = str(suite)  # the stand-in plugin only; the package comes from the venv
    r = _run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no_napari_here",
              "-W", "ignore::DeprecationWarning", *CORE_TESTS[1:]],
             env=env, cwd=suite, timeout=900)
    tail = (r.stdout + r.stderr)[-3000:]
    assert r.returncode == 0, tail
    counts = re.search(r"(\d+) passed", tail)
    assert counts and int(counts.group(1)) > 200, tail
    where = _run([py, "-c", "import napari_dicomtools; print(napari_dicomtools.__file__)"],
                 env=env, cwd=suite)
    assert str(wheel_venv.resolve()) in str(Path(where.stdout.strip()).resolve()), where.stdout


def _gdcm_jpeg_lossless(src, dst: Path) -> Path | None:
    """`src` re-encoded as JPEG Lossless SV1 by GDCM in a child process (GDCM can abort on
    odd input); None when GDCM is not installed here."""
    code = (
        "import sys, gdcm\n"
        "r = gdcm.ImageReader(); r.SetFileName(sys.argv[1]); assert r.Read()\n"
        "c = gdcm.ImageChangeTransferSyntax()\n"
        "c.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))\n"
        "c.SetInput(r.GetImage()); assert c.Change()\n"
        "w = gdcm.ImageWriter(); w.SetFileName(sys.argv[2]); w.SetFile(r.GetFile())\n"
        "w.SetImage(c.GetOutput()); assert w.Write()\n"
    )
    import importlib.util

    if importlib.util.find_spec("gdcm") is None:
        return None
    r = _run([sys.executable, "-c", code, src, dst], timeout=120)
    assert r.returncode == 0 and dst.is_file(), r.stderr
    return dst


def test_npe2_manifest_valid():
    """`npe2 validate --imports`: the manifest is valid and every python_name imports."""
    pytest.importorskip("npe2", reason="npe2 is not installed (it is in the testing extra)")
    exe = shutil.which("npe2", path=os.path.dirname(sys.executable)) or shutil.which("npe2")
    cmd = [exe] if exe else [sys.executable, "-m", "npe2"]
    r = _run([*cmd, "validate", "--imports", "napari-dicomtools"], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_clean():
    """`ruff check` over the repository (src, tests, benchmarks) finds nothing."""
    if not IN_REPO:
        pytest.skip("not running from a source checkout")
    ruff = shutil.which("ruff", path=os.path.dirname(sys.executable)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it is in the testing extra)")
    r = _run([ruff, "check", "--no-cache", ROOT], cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
