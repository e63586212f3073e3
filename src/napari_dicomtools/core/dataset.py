"""Training-dataset export: the nnU-Net v2 raw layout (NIfTI) and a 2D layout (PNG slices +
CSV manifest), with a train/validation split by patient so no patient is on both sides.

A *case* is a dict with the keys of :class:`Case`: ``{"image": array (slice, row, column),
"affine_ras": 4x4, "labels": array or None, "patient": str, "name": str, "window": (center,
width) or None}``. :func:`case_from_volume` builds one from a ``Volume``; the napari adapter
builds them from layers.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import DicomToolsError

if TYPE_CHECKING:
    from .volume import Volume

__all__ = ["Case", "case_from_volume", "export_2d", "export_nnunet", "split_by_patient"]


class Case(TypedDict):
    """One case of a training dataset: an image on its true grid, its labels, who it is.

    A plain dict at run time (the napari adapter builds them from layers).

    Attributes
    ----------
    image : numpy.ndarray
        ``(slice, row, column)`` values (HU for CT).
    affine_ras : numpy.ndarray
        4x4 voxel index ``(column, row, slice)`` -> RAS mm (NIfTI's), from the true geometry.
    labels : numpy.ndarray or None
        Labels on the image's grid, or None (an unlabelled case).
    patient : str
        The patient it belongs to: the train/validation split keeps a patient on one side;
        files carry only a hash of it.
    name : str
        The case's name (hashed with the patient into the case identifier).
    window : tuple of 2 float or None
        Display window ``(center, width)`` for PNG export, or None.

    Examples
    --------
    >>> case = Case(image=np.zeros((2, 4, 4)), affine_ras=np.eye(4), labels=None,
    ...             patient="P1", name="ct", window=(40.0, 400.0))
    >>> sorted(case)
    ['affine_ras', 'image', 'labels', 'name', 'patient', 'window']
    """

    image: NDArray[Any]
    affine_ras: NDArray[np.float64]
    labels: NDArray[Any] | None
    patient: str
    name: str
    window: tuple[float, float] | None


def case_from_volume(volume: Volume, labels: ArrayLike | None = None,
                     name: str | None = None) -> Case:
    """A case from a ``Volume`` (and an optional label array on its grid).

    Parameters
    ----------
    volume : Volume
        A volume from ``read_volume`` (a lazy one is read into memory).
    labels : array_like, optional
        Labels on the volume's ``(slice, row, column)`` grid.
    name : str, optional
        The case's name; default the volume's name.

    Returns
    -------
    Case
        Image, RAS affine, labels, patient (PatientID, else ``"unknown"``), name, window.

    Raises
    ------
    ValueError
        ``labels`` is not on the volume's grid.

    Examples
    --------
    >>> import os, tempfile
    >>> from napari_dicomtools.core import read_volume
    >>> from napari_dicomtools.core.synthetic import write_series
    >>> folder = os.path.join(tempfile.mkdtemp(), "ct")
    >>> truth = write_series(folder, np.zeros((2, 4, 4)))
    >>> case = case_from_volume(read_volume(folder), np.ones((2, 4, 4), np.uint8))
    >>> case["image"].shape, case["patient"], int(case["labels"].sum())
    ((2, 4, 4), 'SYN001', 32)
    """
    array: Any = volume.array  # numpy or dask
    shape = tuple(array.shape)
    if labels is not None and np.shape(labels) != shape:
        raise ValueError(f"labels {np.shape(labels)} not on the volume's grid "
                         f"{shape}")
    return {"image": np.asarray(array), "affine_ras": volume.affine_ras,
            "labels": None if labels is None else np.asarray(labels),
            "patient": volume.metadata.get("patient_id") or "unknown",
            "name": name or volume.metadata.get("name", "case"),
            "window": volume.window}


def split_by_patient(patients: Iterable[str], val_fraction: float = 0.2,
                     seed: int = 0) -> dict[str, str]:
    """Split patients into training and validation, so every case of a patient lands on the
    same side.

    Parameters
    ----------
    patients : iterable of str
        Patient identifiers (repeats allowed: one per case).
    val_fraction : float, optional
        Share of the patients in validation (rounded; at least one patient on each side
        when there are two or more).
    seed : int, optional
        Seed of the shuffle: the same seed gives the same split.

    Returns
    -------
    dict of str to str
        ``{patient: "train" or "val"}``.

    Examples
    --------
    >>> split = split_by_patient(["A", "A", "B", "C", "D", "E"], val_fraction=0.4, seed=1)
    >>> sorted(split.values()).count("val")
    2
    >>> split == split_by_patient(["E", "D", "C", "B", "A"], val_fraction=0.4, seed=1)
    True
    """
    uniq = sorted(set(patients))
    if not uniq:
        return {}
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(uniq)))
    n_val = int(round(len(uniq) * val_fraction))
    if len(uniq) >= 2:
        n_val = min(max(n_val, 1), len(uniq) - 1)
    else:
        n_val = 0
    val = {uniq[i] for i in order[:n_val]}
    return {p: ("val" if p in val else "train") for p in uniq}


def _case_id(case: Case, index: int) -> str:
    """Case identifier without PHI: a counter and a short hash of patient + name."""
    h = hashlib.sha256(f"{case['patient']}\0{case['name']}".encode()).hexdigest()[:8]
    return f"case_{index:04d}_{h}"


def export_nnunet(cases: Iterable[Case], out_root: str | os.PathLike[str], *,
                  dataset_id: int = 1, name: str = "DicomTools",
                  channel: str = "CT", label_names: Mapping[int, str] | None = None,
                  val_fraction: float = 0.2, seed: int = 0, overwrite: bool = False) -> str:
    """Write ``Dataset{id:03d}_{name}/`` with imagesTr, labelsTr, dataset.json and
    ``splits_final.json`` (one fold: train/val by patient, nnU-Net's format).

    Cases without labels are written to imagesTs. File names are ``case_<n>_<hash>``: no
    patient identifier appears in them.

    Parameters
    ----------
    cases : iterable of Case
        The cases, each an image on its true grid (``affine_ras``) with optional labels.
    out_root : str or os.PathLike
        nnU-Net's raw folder; the dataset folder is made inside it.
    dataset_id : int, optional
        nnU-Net's dataset number (1-999).
    name : str, optional
        The dataset's name (no ``/``, ``\\`` or NUL).
    channel : str, optional
        The one input channel's name in dataset.json (``CT``, ``T1``, ...).
    label_names : mapping of int to str, optional
        Names of label values in dataset.json; default ``label_<n>``.
    val_fraction : float, optional
        Share of the patients in the validation fold.
    seed : int, optional
        Seed of the split.
    overwrite : bool, optional
        Write into a non-empty dataset folder, replacing its files.

    Returns
    -------
    str
        The dataset folder.

    Raises
    ------
    DicomToolsError
        The name is not a plain folder name, the folder exists and is not empty (without
        ``overwrite``) or is a file, there are no cases, or a case's labels and image differ
        in shape.

    Examples
    --------
    >>> import os, tempfile
    >>> lab = np.zeros((2, 4, 4), np.uint8)
    >>> lab[0, 1:3, 1:3] = 1
    >>> cases = [Case(image=np.zeros((2, 4, 4), np.int16), affine_ras=np.eye(4), labels=lab,
    ...               patient=p, name="ct", window=None) for p in ("P1", "P2")]
    >>> folder = export_nnunet(cases, tempfile.mkdtemp(), dataset_id=7, name="Demo",
    ...                        label_names={1: "lesion"})
    >>> os.path.basename(folder), sorted(os.listdir(folder))
    ('Dataset007_Demo', ['dataset.json', 'imagesTr', 'labelsTr', 'splits_final.json'])
    >>> import json
    >>> json.load(open(os.path.join(folder, "dataset.json")))["labels"]
    {'background': 0, 'lesion': 1}
    """
    from .nifti import write_layer_nifti_affine

    if any(c in str(name) for c in "/\\\0") or str(name) in ("", ".", ".."):
        raise DicomToolsError(name, "dataset names may not contain '/', '\\' or NUL (the "
                                    "dataset folder stays inside the output folder)")
    folder = os.path.join(os.fspath(out_root), f"Dataset{int(dataset_id):03d}_{name}")
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise DicomToolsError(folder, "exists and is not a folder")
    if os.path.exists(folder) and os.listdir(folder) and not overwrite:
        raise DicomToolsError(folder, "exists and is not empty; not overwriting")
    cases = list(cases)
    if not cases:
        raise DicomToolsError(folder, "no cases to export")
    split = split_by_patient([c["patient"] for c in cases], val_fraction, seed)
    train: list[str] = []
    val: list[str] = []
    n_tr = max_label = 0
    for i, case in enumerate(cases):
        cid = _case_id(case, i)
        labeled = case.get("labels") is not None
        sub = "imagesTr" if labeled else "imagesTs"
        write_layer_nifti_affine(os.path.join(folder, sub, f"{cid}_0000.nii.gz"),
                                 case["image"], case["affine_ras"], overwrite=overwrite)
        if labeled:
            lab = np.asarray(case["labels"])
            if lab.shape != np.shape(case["image"]):
                raise DicomToolsError(cid, f"labels {lab.shape} and image "
                                           f"{np.shape(case['image'])} differ")
            write_layer_nifti_affine(os.path.join(folder, "labelsTr", f"{cid}.nii.gz"),
                                     lab.astype(np.uint8 if lab.max() < 256 else np.uint16),
                                     case["affine_ras"], overwrite=overwrite)
            max_label = max(max_label, int(lab.max()))
            n_tr += 1
            (val if split[case["patient"]] == "val" else train).append(cid)
    labels = {"background": 0}
    for v in range(1, max_label + 1):
        labels[(label_names or {}).get(v, f"label_{v}")] = v
    meta = {"channel_names": {"0": channel}, "labels": labels, "numTraining": n_tr,
            "file_ending": ".nii.gz", "name": name,
            "description": "exported by napari-dicomtools; split by patient in "
                           "splits_final.json"}
    _write_json(os.path.join(folder, "dataset.json"), meta, overwrite)
    _write_json(os.path.join(folder, "splits_final.json"), [{"train": train, "val": val}],
                overwrite)
    return folder


def _write_json(path: str, obj: object, overwrite: bool) -> None:
    from .safety import atomic_output

    with atomic_output(path, overwrite) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2)


def export_2d(cases: Iterable[Case], out_dir: str | os.PathLike[str], *, axis: str = "axial",
              window: tuple[float, float] | None = None, preset: str | None = None,
              val_fraction: float = 0.2, seed: int = 0, only_labeled_slices: bool = False,
              overwrite: bool = False) -> str:
    """Write PNG slices (windowed) and label PNGs, with ``manifest.csv``:
    ``image, mask, case, patient_hash, slice, split`` (patients appear only as hashes).

    Parameters
    ----------
    cases : iterable of Case
        The cases; their slices (axis 0) become PNGs under ``images/`` and ``masks/``.
    out_dir : str or os.PathLike
        The output folder.
    axis : str, optional
        Only ``"axial"`` (slice-wise) for now.
    window : tuple of 2 float, optional
        Display window ``(center, width)``; default the case's window, else the data's range.
    preset : str, optional
        A named window preset (``"lung"``, ``"bone"``, ...) instead of ``window``.
    val_fraction : float, optional
        Share of the patients in validation.
    seed : int, optional
        Seed of the split.
    only_labeled_slices : bool, optional
        Leave out slices without any label.
    overwrite : bool, optional
        Replace existing files; otherwise an existing manifest or PNG is an error.

    Returns
    -------
    str
        The path of ``manifest.csv``.

    Raises
    ------
    DicomToolsError
        The manifest (or a PNG) exists and ``overwrite`` is false.
    ValueError
        ``axis`` is not ``"axial"``.

    Examples
    --------
    >>> import csv, os, tempfile
    >>> lab = np.zeros((3, 4, 4), np.uint8)
    >>> lab[1, 1:3, 1:3] = 1
    >>> case = Case(image=np.arange(48.0).reshape(3, 4, 4), affine_ras=np.eye(4),
    ...             labels=lab, patient="P1", name="ct", window=None)
    >>> manifest = export_2d([case], tempfile.mkdtemp(), only_labeled_slices=True)
    >>> [(r["image"], r["mask"], r["split"]) for r in csv.DictReader(open(manifest))]
    [('images/case_0000_....png', 'masks/case_0000_....png', 'train')]
    """
    from PIL import Image

    from .png import apply_window, resolve_window

    out_dir = os.fspath(out_dir)
    manifest = os.path.join(out_dir, "manifest.csv")
    if os.path.exists(manifest) and not overwrite:
        raise DicomToolsError(manifest, "exists; not overwriting")
    if axis != "axial":
        raise ValueError("2D export is axial (slice-wise) for now; reformat first")
    cases = list(cases)
    split = split_by_patient([c["patient"] for c in cases], val_fraction, seed)
    rows: list[dict[str, Any]] = []
    for i, case in enumerate(cases):
        cid = _case_id(case, i)
        img = np.asarray(case["image"])
        win = resolve_window(None, window=window or case.get("window"), preset=preset,
                             data=img) if (window or preset or case.get("window")) else \
            resolve_window(None, data=img)
        lab = case.get("labels")
        for k in range(img.shape[0]):
            if only_labeled_slices and (lab is None or not np.any(lab[k])):
                continue
            ip = os.path.join(out_dir, "images", f"{cid}_{k:04d}.png")
            _save_png(Image, ip, apply_window(img[k], *win), overwrite)
            mp = ""
            if lab is not None:
                mp = os.path.join(out_dir, "masks", f"{cid}_{k:04d}.png")
                _save_png(Image, mp, np.asarray(lab[k]).astype(np.uint8), overwrite)
            rows.append({"image": os.path.relpath(ip, out_dir),
                         "mask": os.path.relpath(mp, out_dir) if mp else "",
                         "case": cid,
                         "patient_hash": hashlib.sha256(case["patient"].encode())
                         .hexdigest()[:12],
                         "slice": k, "split": split[case["patient"]]})
    from .safety import atomic_output

    with atomic_output(manifest, overwrite) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=["image", "mask", "case", "patient_hash", "slice",
                                              "split"])
            w.writeheader()
            w.writerows(rows)
    return manifest


def _save_png(Image: ModuleType, path: str, arr: NDArray[Any],  # noqa: N803 - PIL module
              overwrite: bool) -> None:
    from .safety import atomic_output

    with atomic_output(path, overwrite) as tmp:  # creates the folder
        Image.fromarray(np.ascontiguousarray(arr)).save(tmp, format="PNG")
