"""Augmentation is exactly reproducible; dataset export splits by patient, never mixing."""

import csv
import json
import os

import nibabel as nib
import numpy as np
import pytest

from napari_dicomtools import read_volume
from napari_dicomtools.core.augment import AugmentConfig, apply, augment
from napari_dicomtools.core.dataset import (
    case_from_volume,
    export_2d,
    export_nnunet,
    split_by_patient,
)
from napari_dicomtools.core.synthetic import phantom, write_series


def test_augmentation_is_reproducible_and_moves_labels_with_the_image():
    img = np.zeros((3, 32, 40), np.float32)
    img[:, 5:10, 8:20] = 100.0
    lab = (img > 50).astype(np.uint8)
    cfg = AugmentConfig(max_angle_deg=0, noise_sigma=5.0, crop_shape=(24, 30))
    a = augment(img, lab, n=4, seed=7, config=cfg)
    b = augment(img, lab, n=4, seed=7, config=cfg)
    for (ia, la, pa), (ib, lb, pb) in zip(a, b, strict=True):
        assert pa == pb and np.array_equal(ia, ib) and np.array_equal(la, lb)
        assert ia.shape == (3, 24, 30)
        again, lab_again = apply(img, lab, pa)
        assert np.array_equal(again, ia) and np.array_equal(lab_again, la)
        # flips/rot90/crop move labels with the image: bright where labelled
        if la.any():
            assert ia[la > 0].mean() > ia[la == 0].mean() + 50
    assert augment(img, lab, n=2, seed=8, config=cfg)[0][2] != a[0][2]


def test_split_by_patient_never_mixes():
    patients = ["p1", "p1", "p2", "p3", "p3", "p4", "p5"]
    s = split_by_patient(patients, 0.4, seed=1)
    assert set(s.values()) == {"train", "val"} and len(s) == 5
    assert split_by_patient(patients, 0.4, seed=1) == s
    assert split_by_patient(["only"], 0.5) == {"only": "train"}


@pytest.fixture
def cases(tmp_path):
    out = []
    for i, pid in enumerate(["A", "A", "B", "C"]):
        write_series(tmp_path / f"s{i}", phantom((6, 24, 20), seed=i), spacing=(2.0, 0.8, 0.8),
                     patient=(f"P^{pid}", pid), series_number=i + 1)
        vol = read_volume(tmp_path / f"s{i}")
        lab = (np.asarray(vol.array) > 500).astype(np.uint8)
        out.append(case_from_volume(vol, lab))
    return out


def test_nnunet_layout(cases, tmp_path):
    folder = export_nnunet(cases, tmp_path / "raw", dataset_id=7, name="Phantom",
                           val_fraction=0.34, seed=0)
    assert os.path.basename(folder) == "Dataset007_Phantom"
    meta = json.load(open(os.path.join(folder, "dataset.json")))
    assert meta["numTraining"] == 4 and meta["labels"] == {"background": 0, "label_1": 1}
    assert meta["channel_names"] == {"0": "CT"} and meta["file_ending"] == ".nii.gz"
    (fold,) = json.load(open(os.path.join(folder, "splits_final.json")))
    assert set(fold["train"]).isdisjoint(fold["val"]) and fold["val"]
    ids = sorted(os.listdir(os.path.join(folder, "labelsTr")))
    assert len(ids) == 4 and all("P^" not in i and "A" not in i.split("_")[1] for i in ids)
    # the two cases of patient A are on the same side
    a_ids = [i[:-7] for i in ids][:2]
    sides = {("val" if c in fold["val"] else "train") for c in a_ids}
    assert len(sides) == 1
    img = nib.load(os.path.join(folder, "imagesTr", a_ids[0] + "_0000.nii.gz"))
    assert np.allclose(img.affine, cases[0]["affine_ras"])
    with pytest.raises(Exception, match="not overwriting"):
        export_nnunet(cases, tmp_path / "raw", dataset_id=7, name="Phantom")


def test_2d_layout_with_manifest(cases, tmp_path):
    man = export_2d(cases, tmp_path / "png", preset="soft_tissue", only_labeled_slices=True)
    rows = list(csv.DictReader(open(man)))
    assert rows and all(r["mask"] for r in rows)
    by_patient = {}
    for r in rows:
        by_patient.setdefault(r["patient_hash"], set()).add(r["split"])
        assert os.path.exists(tmp_path / "png" / r["image"])
    assert all(len(v) == 1 for v in by_patient.values())
    assert "A" not in open(man).read().split("\n", 1)[1].replace("patient_hash", "")
