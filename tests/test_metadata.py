"""metadata_table and `dicomtools info --tags/--csv`: chosen tags, derived columns, bad files."""

import csv

import pydicom
import pytest
from pydicom.data import get_testdata_file

from napari_dicomtools import metadata_table
from napari_dicomtools.cli import main
from napari_dicomtools.core.metadata import parse_tag


def test_parse_tag_forms():
    assert parse_tag("SliceThickness")[:2] == (0x00180050, "SliceThickness")
    assert parse_tag("(0018,0050)")[0] == parse_tag("00180050")[0] == 0x00180050
    assert parse_tag("0029,1010")[1] == "(0029,1010)"
    with pytest.raises(ValueError, match="unknown DICOM keyword"):
        parse_tag("SliceThicknes")


@pytest.fixture
def study(make_series, tmp_path):
    uid = pydicom.uid.generate_uid()
    a = make_series("s/a", series_number=1, description="thin", spacing=(1.0, 0.5, 0.5),
                    study_uid=uid)
    make_series("s/b", series_number=2, description="thick", spacing=(5.0, 0.5, 0.5),
                    study_uid=uid, orientation=(1, 0, 0, 0, 0, -1))
    for k, f in enumerate(a.files):
        ds = pydicom.dcmread(f)
        ds.KVP = 120
        ds.AcquisitionTime = f"1200{k:02d}.5"
        ds.save_as(f)
    (tmp_path / "s" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    return tmp_path / "s"


def test_series_level_rows_and_derived_columns(study):
    rows = metadata_table(study, ["SeriesDescription", "KVP", "PatientID"], as_frame=False)
    by = {r["SeriesDescription"]: r for r in rows if r.get("SeriesDescription")}
    assert by["thin"]["KVP"] == 120 and by["thick"]["KVP"] == ""  # missing tag: empty cell
    assert by["thin"]["n_slices"] == 12 and by["thin"]["spacing_mm"] == "1\\0.5\\0.5"
    assert by["thick"]["orientation"] == "coronal"
    assert by["thin"]["acquisition_duration_s"] == 11.0
    assert by["thick"]["acquisition_duration_s"] == ""
    assert rows[-1]["skipped_files"] == 1  # the broken file is accounted for


def test_instance_level_has_unreadable_files_with_reasons(study):
    rows = metadata_table(study, ["InstanceNumber", "KVP"], level="instance", as_frame=False)
    assert len(rows) == 25
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 1 and bad[0]["path"].endswith("broken.dcm")
    good = [r for r in rows if not r["error"]]
    assert all(r["sop_uid"] for r in good)


def test_parallel_instance_reads_match_serial(study):
    one = metadata_table(study, ["InstanceNumber"], level="instance", as_frame=False,
                         workers=1)
    two = metadata_table(study, ["InstanceNumber"], level="instance", as_frame=False,
                         workers=2)
    assert one == two


def test_deidentify_drops_profile_columns(study):
    cols = list(metadata_table(study, ["PatientID", "PatientName", "KVP", "StudyDate"],
                               deidentify=True, as_frame=False)[0])
    assert "PatientID" not in cols and "PatientName" not in cols and "StudyDate" not in cols
    assert "KVP" in cols and "series_uid" not in cols


def test_dataframe_when_pandas_is_installed(study):
    pd = pytest.importorskip("pandas")
    df = metadata_table(study, ["KVP"])
    assert isinstance(df, pd.DataFrame) and "n_slices" in df.columns


def test_implicit_vr_and_pydicom_samples():
    rows = metadata_table(get_testdata_file("MR_small_implicit.dcm"),
                          ["EchoTime", "(0028,0030)"], level="instance", as_frame=False)
    assert rows[0]["EchoTime"] == pytest.approx(float(
        pydicom.dcmread(get_testdata_file("MR_small.dcm")).EchoTime))
    assert rows[0]["PixelSpacing"] != ""


def test_cli_info_csv(study, tmp_path, capsys):
    out = tmp_path / "t.csv"
    assert main(["info", str(study), "--tags", "SeriesDescription,(0018,0060)", "--csv",
                 str(out), "-q"]) == 0
    rows = list(csv.DictReader(open(out)))
    assert {r["SeriesDescription"] for r in rows} >= {"thin", "thick"}
    assert "KVP" in rows[0]
    assert main(["info", str(study), "--csv", str(out), "-q"]) == 1
    assert "not overwriting" in capsys.readouterr().err
    assert main(["info", str(study), "--tags", "Nope", "--csv", "-"]) == 1
    assert "unknown DICOM keyword" in capsys.readouterr().err
