"""Output names as dcm2niix makes them: ``-f`` patterns, suffixes, sanitising, clashes.

Each case is checked against the dcm2niix binary on the same files: the sets of relative
paths it writes and the ones ``dicomtools convert -f PATTERN`` writes must be equal.
"""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from napari_dicomtools.cli import main
from napari_dicomtools.core.naming import output_names, sanitize
from napari_dicomtools.core.synthetic import write_series

DCM2NIIX = shutil.which("dcm2niix")
needs_dcm2niix = pytest.mark.skipif(DCM2NIIX is None, reason="dcm2niix not installed "
                                                               "(pip install dcm2niix)")
DATA = Path(__file__).parent / "data" / "dcm_qa"


def _series(root, name, rng, edit=None, n=3, **kw):
    kw.setdefault("modality", "MR")
    kw.setdefault("intercept", 0)
    tr = write_series(root / name, rng.integers(0, 900, (n, 8, 10)), window=None, **kw)
    for f in tr.files:
        ds = pydicom.dcmread(f)
        ds.Manufacturer = "SIEMENS"
        if edit:
            edit(ds)
        ds.save_as(f)


def _study(root):
    """Series whose names exercise every rule: protocol vs description, Latin-1 accents,
    unsafe characters and multi-valued strings, echoes, phase, MoCo, a name clash."""
    rng = np.random.default_rng(0)
    _series(root, "a", rng, series_number=2, description="t1",
            edit=lambda ds: setattr(ds, "ProtocolName", "T1 MPRAGE: sag/iso"))

    def latin(ds):  # no ProtocolName: dcm2niix falls back to SeriesDescription
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.SeriesDescription = "P\u00e9rfusion  (ASL)"
        ds.Manufacturer = "Philips Medical Systems"
    _series(root, "b", rng, series_number=5, edit=latin)
    uid = pydicom.uid.generate_uid()
    for e in (1, 2):
        def me(ds, e=e):
            ds.ProtocolName, ds.EchoNumbers, ds.EchoTime = "me gre", e, 4.0 * e
        _series(root, f"me{e}", rng, series_number=7, series_uid=uid, prefix=f"E{e}", edit=me)
    uid = pydicom.uid.generate_uid()
    for c, it in (("m", ["ORIGINAL", "PRIMARY", "M", "ND"]),
                  ("p", ["ORIGINAL", "PRIMARY", "P", "ND"])):
        def ph(ds, it=it):  # a lone second echo, magnitude and phase
            ds.ProtocolName, ds.ImageType, ds.EchoNumbers, ds.EchoTime = "field map", it, 2, 7.0
        _series(root, f"fm{c}", rng, series_number=9, series_uid=uid, prefix=c, edit=ph)
    for k in (1, 2):  # same number and protocol, two series: "a" appended to the second
        _series(root, f"dup{k}", rng, series_number=11,
                edit=lambda ds: setattr(ds, "ProtocolName", "rest bold"))
    _series(root, "odd", rng, series_number=12, edit=lambda ds: setattr(
        ds, "ProtocolName", 'a$b`c*d?e|f"g<h>i;j..k\\l'))

    def moco(ds):
        ds.ProtocolName = "ep2d bold"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND", "MOCO"]
        ds.AccessionNumber, ds.StudyID, ds.ImageComments = "ACC9", "SID3", "hello world"
        ds.SequenceName = "*epfid2d1_64"
    _series(root, "moco", rng, series_number=13, edit=moco)


def _localizer(root):
    """Three single images in three planes under one SeriesInstanceUID."""
    uid = pydicom.uid.generate_uid()
    rng = np.random.default_rng(1)
    for k, iop in enumerate([(1, 0, 0, 0, 1, 0), (1, 0, 0, 0, 0, -1), (0, 1, 0, 0, 0, -1)]):
        _series(root, f"loc{k}", rng, n=1, series_uid=uid, series_number=1, orientation=iop,
                prefix=f"L{k}", description="localizer",
                edit=lambda ds, k=k: setattr(ds, "InstanceNumber", k + 1))


def _names_of(folder):
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*.nii"))


def _compare(src, tmp_path, pattern):
    ref, ours = tmp_path / "ref", tmp_path / "ours"
    ref.mkdir()
    r = subprocess.run([DCM2NIIX, "-f", pattern, "-z", "n", "-b", "n", "-v", "0", "-o",
                        str(ref), str(src)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert main(["convert", str(src), str(ours), "-q", "--no-gzip", "-f", pattern]) == 0
    got = _names_of(ours)
    assert got == _names_of(ref)
    return got


@needs_dcm2niix
@pytest.mark.parametrize("pattern", ["%s_%p", "%p_%s_%d_%q", "%i_%n_%t_%3s_%e",
                                     "%f/%s_%m_%v_%g_%x_%c_%z_%u_%r_%4r_%b"])
def test_names_agree_with_dcm2niix(tmp_path, pattern):
    _study(tmp_path / "study")
    got = _compare(tmp_path / "study", tmp_path, pattern)
    if pattern == "%s_%p":  # what the rules give, spelled out
        assert got == ["11_rest_bold.nii", "11_rest_bolda.nii", "12_a_b_c_d_e_f_g_h_i_j..k_l.nii",
                       "13_ep2d_bold.nii", "2_T1_MPRAGE_sag_iso.nii", "5_Perfusion_(ASL).nii",
                       "7_me_gre_e1.nii", "7_me_gre_e2.nii", "9_field_map_e2.nii",
                       "9_field_map_e2_ph.nii"]


@needs_dcm2niix
def test_non_parallel_localizer_names_agree_with_dcm2niix(tmp_path):
    _localizer(tmp_path / "loc")
    assert _compare(tmp_path / "loc", tmp_path, "%s_%p") == [
        f"1_localizer_i0000{k}.nii" for k in (1, 2, 3)]


@needs_dcm2niix
@pytest.mark.parametrize("case", sorted(p.name for p in DATA.iterdir() if p.is_dir()))
def test_real_series_names_agree_with_dcm2niix(tmp_path, case):
    _compare(DATA / case / "dcm", tmp_path, "%s_%p")


def test_default_name_is_protocol_not_description(tmp_path):
    """36 of 64 real names differed when the description stood in for the protocol."""
    rng = np.random.default_rng(2)
    _series(tmp_path, "s", rng, series_number=4, description="t2_tse_tra_p2 ND",
            edit=lambda ds: setattr(ds, "ProtocolName", "t2_tse_tra"))
    from napari_dicomtools import scan

    series = scan(tmp_path / "s")
    assert output_names(series) == ["4_t2_tse_tra"]
    assert output_names(series, "%s_%d") == ["4_t2_tse_tra_p2_ND"]


def test_pattern_folders_never_leave_the_output(tmp_path):
    rng = np.random.default_rng(3)
    _series(tmp_path, "src", rng, series_number=4, patient=("P", ".."),
            edit=lambda ds: setattr(ds, "ProtocolName", "../../escape"))
    out = tmp_path / "out"
    assert main(["convert", str(tmp_path / "src"), str(out), "-q", "-f", "%i/%p"]) == 0
    assert _names_of(out) == [] and [p.relative_to(out).as_posix()
                                     for p in out.rglob("*.nii.gz")] == ["_./_._.._escape.nii.gz"]


@pytest.mark.parametrize("text,safe", [
    ("T1 MPRAGE: sag/iso", "T1_MPRAGE_sag_iso"), ("a\tb\x1bc", "a_b_c"), (".hidden", "_hidden"),
    ("x$`y", "x_y"), ("P\u00e9rfusion", "Perfusion"), ("\u8133 T2", "\u8133_T2"),
    ("a__ _b", "a_b"), ("\u00b0C", "_C")])
def test_sanitize(text, safe):
    assert sanitize(text) == safe
