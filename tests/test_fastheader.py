"""The fast header path must see exactly what pydicom sees, or decline."""

import os

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from napari_dicomtools.core import fastheader
from napari_dicomtools.core.errors import DicomToolsError
from napari_dicomtools.core.scan import read_header


def _files():
    folder = os.path.dirname(get_testdata_file("CT_small.dcm"))  # bundled files, no download
    return sorted(os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".dcm"))


def _facts(inst):
    d = dict(vars(inst))
    d.pop("source")
    frames = d.pop("frames")
    d["header"] = {k: (str(v) if not isinstance(v, list) else [str(x) for x in v])
                   for k, v in d["header"].items()}
    d["frames"] = [(f.index, None if f.position is None else tuple(np.round(f.position, 6)),
                    f.orientation, f.pixel_spacing, f.slope, f.intercept, f.window,
                    f.temporal, f.acquisition) for f in frames]
    return d


def _norm(v):
    try:
        return str(float(v))
    except (TypeError, ValueError):
        return str(v)


@pytest.mark.parametrize("path", _files(), ids=os.path.basename)
def test_fast_header_matches_pydicom(path):
    try:
        slow = read_header(path, fast=False)
    except DicomToolsError as exc:
        with pytest.raises(DicomToolsError) as err:
            read_header(path, fast=True)
        assert type(err.value) is type(exc)
        return
    fast = read_header(path, fast=True)
    a, b = _facts(fast), _facts(slow)
    ha, hb = a.pop("header"), b.pop("header")
    assert a == b
    assert ha.keys() == hb.keys()
    for k in ha:  # numbers may print differently (DSfloat '0.5' vs float 0.5)
        va, vb = ha[k], hb[k]
        if isinstance(va, list):
            assert [_norm(x) for x in va] == [_norm(x) for x in vb], k
        else:
            assert _norm(va) == _norm(vb), k


def test_fast_path_is_taken_for_plain_ct(ct_folder):
    folder, truth = ct_folder
    with open(truth.files[0], "rb") as f:
        ds = fastheader.parse(f, os.path.getsize(truth.files[0]))
    assert ds.get("Modality") == "CT" and ds.get("Rows") == 64
    assert ds.get("ImageOrientationPatient") == [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    px = ds.get_item(0x7FE00010)
    assert px.value_tell + px.length == os.path.getsize(truth.files[0])


def test_fast_path_declines_without_preamble(tmp_path):
    p = tmp_path / "x"
    p.write_bytes(b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100" + b"\0" * 200)
    with open(p, "rb") as f, pytest.raises(fastheader.Unsupported):
        fastheader.parse(f, os.path.getsize(p))
