"""The fast header path must see exactly what pydicom sees, or decline."""

import gzip
import os
import shutil

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from napari_dicomtools.core import fastheader
from napari_dicomtools.core.errors import DicomToolsError
from napari_dicomtools.core.headers import read_header

HERE = os.path.dirname(os.path.abspath(__file__))


def _walk(folder):
    for root, _dirs, names in os.walk(folder):
        for n in names:
            yield os.path.join(root, n)


def _corpora():
    """Every file of pydicom's bundled test data (DICOM or not, any depth), nibabel's DICOM test
    files and the vendored real scanner data under tests/data, as (id, path)."""
    pydicom_data = os.path.dirname(get_testdata_file("CT_small.dcm"))  # bundled, no download
    for p in _walk(pydicom_data):
        yield "pydicom/" + os.path.relpath(p, pydicom_data), p
    try:
        import nibabel
    except ImportError:
        pass
    else:
        nib_data = os.path.join(os.path.dirname(nibabel.__file__), "nicom", "tests", "data")
        for p in _walk(nib_data):
            if p.endswith((".dcm", ".dcm.gz")):
                yield "nibabel/" + os.path.relpath(p, nib_data), p
    local = os.path.join(HERE, "data")
    for p in _walk(local):
        if not p.endswith((".txt", ".md", ".json", ".nii", ".gz", ".bval", ".bvec", ".py")) \
                and "LICENSE" not in os.path.basename(p).upper():
            yield "tests/data/" + os.path.relpath(p, local), p


CORPUS = sorted(_corpora())


@pytest.fixture
def corpus_file(request, tmp_path):
    path = request.param
    if path.endswith(".gz"):  # nibabel ships some files gzipped
        out = tmp_path / os.path.basename(path)[:-3]
        with gzip.open(path, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return str(out)
    return path


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


def test_corpus_is_broad():
    names = [name for name, _ in CORPUS]
    assert sum(n.startswith("pydicom/") for n in names) > 150
    assert any(n.startswith("pydicom/") and "/" in n[len("pydicom/"):] for n in names)  # subfolders
    assert any(n.startswith("tests/data/") for n in names)


@pytest.mark.parametrize("corpus_file", [p for _, p in CORPUS], indirect=True,
                         ids=[name for name, _ in CORPUS])
def test_fast_header_matches_pydicom(corpus_file):
    path = corpus_file
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


def test_fast_parser_takes_most_of_the_corpus(tmp_path):
    """The differential test above only means something where the fast parser did not decline:
    it must take the plain files of every corpus (it declines only what it cannot parse exactly)."""
    taken = {"pydicom": 0, "nibabel": 0, "tests": 0}
    for name, path in CORPUS:
        if path.endswith(".gz"):
            continue
        try:
            with open(path, "rb") as f:
                fastheader.parse(f, os.path.getsize(path))
        except Exception:  # noqa: BLE001 - Unsupported, or not DICOM at all
            continue
        taken[name.split("/", 1)[0]] += 1
    assert taken["pydicom"] >= 120, taken
    assert taken["nibabel"] >= 3, taken
    assert taken["tests"] >= 40, taken


def test_parse_head_of_the_first_bytes_equals_parse(tmp_path):
    """A header parsed from the file's first bytes, read in one go (``Source.read_head``, a
    plain file or a zip member), is the one :func:`fastheader.parse` reads from the file; a
    header that goes on past those bytes asks for more (EOFError), a FIFO is refused at once."""
    import zipfile

    from napari_dicomtools.core.sources import Source

    path = get_testdata_file("MR_small.dcm")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        whole = fastheader.parse(f, size)
        f.seek(0)
        first = f.read(16384)
    with zipfile.ZipFile(tmp_path / "a.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(path, "sub/mr.dcm")
    for src in (Source(path), Source(str(tmp_path / "a.zip"), "sub/mr.dcm")):
        head, n = src.read_head(16384)
        assert (head, n) == (first, size)
        ds = fastheader.parse_head(head, n)
        for kw in fastheader.KEYWORDS:
            if kw != "PixelData":
                assert ds.get(kw) == whole.get(kw), kw
        assert ds.get_item(0x7FE00010).value_tell == whole.get_item(0x7FE00010).value_tell
    with pytest.raises(EOFError):
        fastheader.parse_head(first[:600], size)
    os.mkfifo(tmp_path / "pipe.dcm")
    with pytest.raises(DicomToolsError, match="FIFO"):
        Source(str(tmp_path / "pipe.dcm")).read_head(132)


def test_encapsulated_offset_points_at_the_first_item():
    """Instance.encapsulated_offset, found while parsing (fast path and pydicom alike), is
    where a compressed file's Pixel Data items begin: the Basic Offset Table item's tag."""
    names = ("JPEG2000.dcm", "SC_rgb_rle.dcm", "MR_small_jp2klossless.dcm",
             "JPEGLSNearLossless_08.dcm", "SC_rgb_jpeg_gdcm.dcm")
    for name in names:
        path = get_testdata_file(name)
        fast, slow = read_header(path), read_header(path, fast=False)
        assert fast.encapsulated and fast.encapsulated_offset == slow.encapsulated_offset
        with open(path, "rb") as f:
            f.seek(fast.encapsulated_offset)
            assert f.read(4) == b"\xfe\xff\x00\xe0", name
    assert read_header(get_testdata_file("CT_small.dcm")).encapsulated_offset is None


def test_values_decoded_once_are_not_shared_between_data_sets(ct_folder):
    """Values the files of a series repeat are decoded once (fastheader._MEMO): each data
    set still owns its lists, so changing one file's PixelSpacing leaves the next file's."""
    folder, truth = ct_folder
    fastheader._MEMO.clear()
    first, second = truth.files[:2]
    with open(first, "rb") as f:
        a = fastheader.parse(f, os.path.getsize(first))
    a.get("PixelSpacing")[0] = -1.0
    with open(second, "rb") as f:
        b = fastheader.parse(f, os.path.getsize(second))
    with open(first, "rb") as f:
        c = fastheader.parse(f, os.path.getsize(first))
    assert b.get("PixelSpacing")[0] > 0 and c.get("PixelSpacing")[0] > 0
    assert tuple(b.get("PixelSpacing")) == read_header(first).frames[0].pixel_spacing
    assert b.get("PixelSpacing") == c.get("PixelSpacing")


def test_keywords_headers_looks_up_directly_are_read_by_the_fast_parser():
    """headers looks the fast parser's values up directly (``_getter``: no 'not in the fast
    table' refusal on the way): every keyword it asks that way, and every summary keyword,
    must be one the parser reads, or a file holding it would lose it on the fast path only."""
    import ast
    import inspect

    from napari_dicomtools.core import headers

    tree = ast.parse(inspect.getsource(headers))
    asked = {node.args[0].value for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
             and node.func.id == "get" and node.args and isinstance(node.args[0], ast.Constant)}
    assert {"Rows", "SeriesInstanceUID", "ImagePositionPatient"} <= asked
    assert asked <= set(fastheader.KEYWORDS)
    assert set(headers._SUMMARY_KEYWORDS) <= set(fastheader.KEYWORDS)
