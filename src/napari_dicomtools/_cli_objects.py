"""``dicomtools`` subcommands for DICOM annotation objects: SEG, RTSTRUCT, SR (issue 15)."""

from __future__ import annotations

import os
import sys

from .core.errors import DicomToolsError

_NIFTI = (".nii", ".nii.gz")


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in text.split(",")] if text else []


def cmd_seg(args) -> int:
    """NIfTI labels -> DICOM SEG (OUT.dcm), or DICOM SEG -> NIfTI labels (OUT.nii[.gz])."""
    if not os.path.exists(args.input):
        raise DicomToolsError(args.input, "no such file or folder")
    if args.out.lower().endswith(_NIFTI):
        return _seg_to_nifti(args)
    if args.reference is None:
        raise DicomToolsError(None, "--reference SERIES_DIR is required to write a SEG: the "
                                    "image series the labels were made on")
    if not os.path.exists(args.reference):
        raise DicomToolsError(args.reference, "no such file or folder")
    import nibabel as nib
    import numpy as np

    from .core.seg import _reference_series, onto_reference, write_seg

    try:
        img = nib.load(args.input)
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - nibabel raises many kinds on a bad file
        raise DicomToolsError(args.input, f"cannot be read as NIfTI ({exc})") from None
    series = _reference_series(args.reference)
    if not args.fractional:
        if data.dtype.kind == "f":
            if not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
                raise DicomToolsError(args.input, "holds non-integer values; use "
                                                  "--fractional for probabilities")
            data = data.astype(np.int64)
        if data.ndim != 3:
            raise DicomToolsError(args.input, f"labels must be 3D, got shape {data.shape}")
    labels = onto_reference(data, img.affine, series, args.input)
    names, types = _split(args.names), _split(args.types)
    n = labels.shape[0] if args.fractional and labels.ndim == 4 else None
    values = list(range(1, n + 1)) if n else sorted(int(v) for v in np.unique(labels) if v)
    segments = {}
    for i, v in enumerate(values):
        spec = {"algorithm_type": args.algorithm}
        if i < len(names) and names[i]:
            spec["label"] = names[i]
        if i < len(types) and types[i]:
            spec["type"] = types[i]
        segments[v] = spec
    out = write_seg(labels, series, args.out, segments=segments, fractional=args.fractional,
                    overwrite=args.force, description=args.description)
    if not args.quiet:
        print(f"{out}: SEG of {len(values)} segment(s) on {series.name!r}")
    return 0


def _seg_to_nifti(args) -> int:
    from .core.export import write_layer_nifti_affine
    from .core.seg import read_segmentation

    seg = read_segmentation(args.input, reference=args.reference)
    base = args.out[:-7] if args.out.lower().endswith(".nii.gz") else args.out[:-4]
    ext = args.out[len(base):]
    outs = []
    for k, arr in enumerate(seg.labels):
        path = args.out if k == 0 else f"{base}_{k + 1}{ext}"
        outs.append(write_layer_nifti_affine(path, arr, seg.affine_ras, overwrite=args.force))
    for problem in seg.metadata.get("problems", []):
        print(f"dicomtools: warning: {problem}", file=sys.stderr)
    if not args.quiet:
        for path, group in zip(outs, seg.groups, strict=True):
            names = ", ".join(f"{n}={seg.segment(n).label}" for n in group)
            print(f"{path}: {names}")
    return 0


def add_subcommands(sub) -> None:
    """Add this module's subcommands to the ``dicomtools`` parser's subparsers."""
    from .core.seg import ALGORITHM_TYPES, TYPES

    p = sub.add_parser(
        "seg", help="labels NIfTI -> DICOM SEG (or SEG -> NIfTI)",
        description="Write a label image lying on a DICOM series' grid as a DICOM SEG that "
                    "references the series (one segment per label value, only non-empty "
                    "frames), or, when OUT ends in .nii/.nii.gz, read a SEG into label "
                    "NIfTI (overlapping segments into OUT, OUT_2, ...).",
        epilog="segment types (SNOMED CT): " + ", ".join(sorted(TYPES)))
    p.add_argument("input", help="LABELS.nii[.gz] (integer labels; with --fractional, "
                                 "probabilities in [0, 1], 4D for several segments) or a "
                                 "SEG .dcm to read")
    p.add_argument("out", help="OUT.dcm (SEG) or OUT.nii[.gz] (labels from a SEG)")
    p.add_argument("--reference", metavar="SERIES_DIR",
                   help="the image series the labels lie on (required to write a SEG; "
                        "when reading, places the SEG on that series' grid)")
    p.add_argument("--names", help="segment names in label order, comma-separated")
    p.add_argument("--types", help="segment types in label order, comma-separated keywords "
                                   "(liver, lesion, neoplasm, ...: see below)")
    p.add_argument("--algorithm", default="MANUAL", type=str.upper,
                   choices=ALGORITHM_TYPES, help="how the segments were made (default MANUAL)")
    p.add_argument("--fractional", action="store_true",
                   help="write a FRACTIONAL (probability) SEG instead of BINARY")
    p.add_argument("--description", default="Segmentation", help="SeriesDescription")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_seg)
