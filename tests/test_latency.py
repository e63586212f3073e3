"""What a small ``dicomtools convert`` imports (per-call start-up dominates many small
series; timings are in benchmarks/bench_small_series.py, not here)."""

import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from napari_dicomtools.cli import main
from napari_dicomtools.core._nifti1 import pack_header
from napari_dicomtools.core.nifti import RGB24, RGBA32
from napari_dicomtools.core.synthetic import write_series

PROBE = """
import sys
from napari_dicomtools.cli import main
rc = main(sys.argv[1:])
print(rc, *sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY}
                  or m in {OURS}))
"""
#: what a plain convert has no use for: pydicom (the fast header parser reads a plain CT),
#: nibabel (core._nifti1 packs the header; its import pulls urllib, http, email, xml and
#: every image format it knows), scipy, the PACS, SEG, Dask and table stacks, and multiprocessing (no worker pool for an
#: uncompressed series)
HEAVY = {"pydicom", "nibabel", "scipy", "skimage", "dask", "distributed", "pynetdicom",
         "dicomweb_client", "highdicom", "pandas", "pyarrow", "requests", "tqdm", "PIL",
         "multiprocessing"}
#: our modules for other subcommands (their imports cost more than a small conversion)
OURS = {"napari_dicomtools.core.batch", "napari_dicomtools.core.pacs",
        "napari_dicomtools.core.seg", "napari_dicomtools.core.rtstruct",
        "napari_dicomtools._cli_pacs", "napari_dicomtools._cli_objects"}


def _probe(*argv):
    code = PROBE.replace("{HEAVY}", repr(HEAVY)).replace("{OURS}", repr(OURS))
    r = subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True,
                       text=True)
    return (r.stdout.splitlines() or [""])[-1].split(), r


@pytest.fixture(scope="module")
def plain_ct(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lat") / "ct"
    return folder, write_series(folder, np.arange(4 * 8 * 10).reshape(4, 8, 10) - 500)


def test_plain_ct_convert_imports_only_what_it_uses(plain_ct, tmp_path):
    """A small series' conversion is mostly start-up: a plain convert imports neither the
    other subcommands' modules nor pydicom, nibabel, scipy, dask, pynetdicom, highdicom."""
    folder, truth = plain_ct
    out = tmp_path / "ct.nii.gz"
    words, r = _probe("convert", folder, out, "-q")
    assert words == ["0"], r.stdout + r.stderr
    img = nib.load(out)  # a valid NIfTI all the same
    assert np.array_equal(np.asarray(img.dataobj).T, truth.values)
    assert np.allclose(img.affine, img.get_qform()) and img.get_qform(coded=True)[1] == 1


def test_other_subcommands_still_load_their_modules(plain_ct, tmp_path):
    folder, _ = plain_ct
    words, r = _probe("info", folder, "-q")  # info still goes through the batch module
    assert words[0] == "0", r.stdout + r.stderr
    words, r = _probe("pacs", "list", "--json")
    assert words[0] == "0" and "napari_dicomtools._cli_pacs" in words, r.stdout + r.stderr
    assert "napari_dicomtools._cli_objects" not in words


def test_help_and_unknown_subcommand_list_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for name in ("info", "convert", "png", "anonymize", "view", "seg", "rtstruct", "pacs"):
        assert f"    {name} " in text
    with pytest.raises(SystemExit):
        main(["-v", "nosuch"])
    assert "'seg', 'rtstruct', 'pacs'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["pacs", "--help"])
    assert "echo" in capsys.readouterr().out


def _nibabel_header(shape, dtype, affine, tr, description: bytes) -> bytes:
    hdr = nib.Nifti1Header()
    hdr.set_data_dtype(dtype)
    hdr.set_data_shape(shape)
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    hdr.set_xyzt_units("mm", "sec")
    if tr:
        hdr["pixdim"][4] = tr
    hdr["descrip"] = description[:79]
    hdr.set_data_offset(352)
    return hdr.binaryblock


def _affines():
    """Axial, flipped, coronal, sagittal (permutations with signs), oblique rotations with
    anisotropic voxels, gantry-tilt shears, and a 180-degree turn (quaternion w = 0)."""
    rng = np.random.default_rng(12)
    out = [np.diag([-0.7, -0.7, 2.5, 1.0]), np.diag([1.0, -1.0, -1.0, 1.0])]
    for k in range(60):
        if k % 3 == 0:
            rot = np.eye(3)[rng.permutation(3)] * rng.choice([-1.0, 1.0], 3)
        else:
            q = rng.normal(size=4)
            w, x, y, z = q / np.linalg.norm(q)
            rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        m = rot * rng.uniform(0.2, 5.0, 3)
        if k % 4 == 1:
            m[:, 2] += m[:, 1] * rng.uniform(-0.3, 0.3)  # tilt: the slice axis sheared
        a = np.eye(4)
        a[:3, :3], a[:3, 3] = m, rng.uniform(-300, 300, 3)
        out.append(a)
    return out


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32,
                                   np.uint32, np.int64, np.uint64, np.float32, np.float64,
                                   np.complex64, RGB24, RGBA32])
def test_header_is_the_one_nibabel_packs(dtype):
    """Byte for byte what nibabel's Nifti1Header packs (qform by polar decomposition and
    Bar-Itzhack quaternions included), for any geometry, 3D and 4D."""
    for k, aff in enumerate(_affines()):
        shape, tr = ((64, 48, 20), None) if k % 2 else ((32, 32, 10, 7), 2.5)
        desc = f"series {k} ".encode() * (k % 12)
        assert pack_header(shape, dtype, aff, pixdim4=tr, description=desc) == \
            _nibabel_header(shape, dtype, aff, tr, desc), (k, aff)


@pytest.mark.parametrize("dtype", [np.bool_, np.float16, np.longdouble, "U4"])
def test_header_refuses_what_nifti1_cannot_store(dtype):
    with pytest.raises(ValueError, match="cannot be stored in NIfTI-1"):
        pack_header((4, 4, 4), dtype, np.eye(4))
    with pytest.raises(ValueError, match="does not fit NIfTI-1"):
        pack_header((4, 4, 40000), np.uint8, np.eye(4))
