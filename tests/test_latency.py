"""What a small ``dicomtools convert`` imports (per-call start-up dominates many small
series; timings are in benchmarks/bench_small_series.py, not here)."""

import subprocess
import sys

import nibabel as nib
import numpy as np

from napari_dicomtools.core.synthetic import write_series

PROBE = """
import sys
from napari_dicomtools.cli import main
rc = main(["convert", sys.argv[1], sys.argv[2], "-q"])
print(rc, *sorted(m for m in ("pydicom", "scipy", "numpy.ma") if m in sys.modules))
"""


def test_plain_ct_convert_imports_neither_pydicom_nor_scipy(tmp_path):
    """The fast header parser reads a plain CT without pydicom; nibabel (the NIfTI header)
    must not pull pydicom and scipy in for features we do not use: about a second a call."""
    truth = write_series(tmp_path / "ct", np.arange(4 * 8 * 10).reshape(4, 8, 10) - 500)
    out = tmp_path / "ct.nii.gz"
    r = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "ct"), str(out)],
                       capture_output=True, text=True)
    assert r.stdout.split() == ["0"], r.stdout + r.stderr
    img = nib.load(out)  # a valid NIfTI all the same
    assert np.array_equal(np.asarray(img.dataobj).T, truth.values)


def test_pydicom_still_imports_after_nibabel():
    r = subprocess.run([sys.executable, "-c", "from napari_dicomtools.core._imports import "
                        "nibabel; nibabel(); import pydicom, scipy.ndimage, nibabel.nicom."
                        "dicomwrappers as w; print(w.pydicom.__name__)"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.split() == ["pydicom"], r.stderr
