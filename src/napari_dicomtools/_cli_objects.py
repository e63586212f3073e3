"""``dicomtools`` subcommands for DICOM annotation objects: SEG, RTSTRUCT, SR (issue 15)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from .core.errors import DicomToolsError

if TYPE_CHECKING:
    from .core.seg import Segmentation

#: what ``add_subparsers()`` returns (argparse names it privately)
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

_NIFTI = (".nii", ".nii.gz")


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in text.split(",")] if text else []


def cmd_seg(args: argparse.Namespace) -> int:
    """NIfTI labels -> DICOM SEG (OUT.dcm), or DICOM SEG -> NIfTI labels (OUT.nii[.gz])."""
    return _cmd(args, "SEG")


def cmd_rtstruct(args: argparse.Namespace) -> int:
    """NIfTI labels -> RTSTRUCT (OUT.dcm), or RTSTRUCT -> NIfTI labels (OUT.nii[.gz])."""
    return _cmd(args, "RTSTRUCT")


def _cmd(args: argparse.Namespace, kind: str) -> int:
    if not os.path.exists(args.input):
        raise DicomToolsError(args.input, "no such file or folder")
    if args.out.lower().endswith(_NIFTI):
        return _to_nifti(args, kind)
    if args.reference is None:
        raise DicomToolsError(None, f"--reference SERIES_DIR is required to write a {kind}: "
                                    "the image series the labels were made on")
    if not os.path.exists(args.reference):
        raise DicomToolsError(args.reference, "no such file or folder")
    import nibabel as nib
    import numpy as np
    from nibabel.spatialimages import SpatialImage

    from .core.seg import onto_reference, reference_series

    fractional = getattr(args, "fractional", False)
    try:
        img = nib.load(args.input)
        if not isinstance(img, SpatialImage):  # a CIFTI or other non-grid image
            raise TypeError(f"a {type(img).__name__} has no voxel grid")
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # noqa: BLE001 - nibabel raises many kinds on a bad file
        raise DicomToolsError(args.input, f"cannot be read as NIfTI ({exc})") from None
    series = reference_series(args.reference)
    if not fractional:
        if data.dtype.kind == "f":
            if not np.all(np.isfinite(data)) or np.any(data != np.round(data)):
                raise DicomToolsError(args.input, "holds non-integer values"
                                      + ("; use --fractional for probabilities"
                                         if kind == "SEG" else ""))
            data = data.astype(np.int64)
        if data.ndim != 3:
            raise DicomToolsError(args.input, f"labels must be 3D, got shape {data.shape}")
    labels = onto_reference(data, img.affine, series, args.input)
    names, types = _split(args.names), _split(getattr(args, "types", None))
    n = labels.shape[0] if fractional and labels.ndim == 4 else None
    values = list(range(1, n + 1)) if n else sorted(int(v) for v in np.unique(labels) if v)
    segments: dict[int | str, dict[str, Any]] = {}
    for i, v in enumerate(values):
        spec: dict[str, Any] = {"algorithm_type": args.algorithm} if kind == "SEG" else {}
        if i < len(names) and names[i]:
            spec["label"] = names[i]
        if i < len(types) and types[i]:
            spec["type" if kind == "SEG" else "interpreted_type"] = types[i]
        segments[v] = spec
    if kind == "SEG":
        from .core.seg import write_seg

        out = write_seg(labels, series, args.out, segments=segments, fractional=fractional,
                        overwrite=args.force, description=args.description)
    else:
        from .core.rtstruct import write_rtstruct

        out = write_rtstruct(labels, series, args.out, segments=segments,
                             overwrite=args.force, description=args.description)
    if not args.quiet:
        what = "segment(s)" if kind == "SEG" else "ROI(s)"
        print(f"{out}: {kind} of {len(values)} {what} on {series.name!r}")
    return 0


def _to_nifti(args: argparse.Namespace, kind: str) -> int:
    read: Callable[[str, str | None], Segmentation]
    if kind == "SEG":
        from .core.seg import read_segmentation as read
    else:
        from .core.rtstruct import read_rtstruct as read
    seg = read(args.input, args.reference)
    write_labels_nifti(seg, args.out, force=args.force, quiet=args.quiet)
    return 0


def write_labels_nifti(seg: Segmentation, out: str, *, force: bool = False,
                       quiet: bool = False) -> list[str]:
    """A read SEG/RTSTRUCT's label arrays as NIfTI: OUT, then OUT_2, ... for groups of
    overlapping segments; its problems as warnings on stderr, the files and their segments
    on stdout unless ``quiet``."""
    from .core.seg import write_labels_nifti as write

    outs = write(seg, out, overwrite=force)
    for problem in seg.metadata.get("problems", []):
        print(f"dicomtools: warning: {problem}", file=sys.stderr)
    if not quiet:
        for path, group in zip(outs, seg.groups, strict=True):
            names = ", ".join(f"{n}={seg.segment(n).label}" for n in group)
            print(f"{path}: {names}")
    return outs


def add_subcommands(sub: SubParsers) -> None:
    """Add this module's subcommands to the ``dicomtools`` parser's subparsers."""
    from .core.seg import ALGORITHM_TYPES, TYPES

    p = sub.add_parser(
        "seg", help="labels NIfTI -> DICOM SEG (or SEG -> NIfTI)",
        description="Write a label image lying on a DICOM series' grid as a DICOM SEG that "
                    "references the series (one segment per label value, only non-empty "
                    "frames), or, when OUT ends in .nii/.nii.gz, read a SEG into label "
                    "NIfTI (overlapping segments into OUT, OUT_2, ...).",
        epilog="segment types (SNOMED CT): " + ", ".join(sorted(TYPES)))
    _io(p, "SEG", "LABELS.nii[.gz] (integer labels; with --fractional, probabilities in "
                  "[0, 1], 4D for several segments) or a SEG .dcm to read",
        "when reading, places the SEG on that series' grid",
        "segment types in label order, comma-separated keywords (liver, lesion, neoplasm, "
        "...: see below)")
    p.add_argument("--algorithm", default="MANUAL", type=str.upper,
                   choices=ALGORITHM_TYPES, help="how the segments were made (default MANUAL)")
    p.add_argument("--fractional", action="store_true",
                   help="write a FRACTIONAL (probability) SEG instead of BINARY")
    p.add_argument("--description", default="Segmentation", help="SeriesDescription")
    _common(p)
    p.set_defaults(func=cmd_seg)
    p = sub.add_parser(
        "rtstruct", help="labels NIfTI -> RTSTRUCT (or RTSTRUCT -> NIfTI)",
        description="Write a label image lying on a DICOM series' grid as an RT Structure Set "
                    "(one ROI per label value, closed contours per slice in patient mm, holes "
                    "as their own contours), or, when OUT ends in .nii/.nii.gz, rasterise an "
                    "RTSTRUCT's contours onto the reference grid (pixel centres inside, holes "
                    "by the even-odd rule; overlapping ROIs into OUT, OUT_2, ...).")
    _io(p, "RTSTRUCT", "LABELS.nii[.gz] (integer labels) or an RTSTRUCT .dcm to read",
        "when reading, the grid to rasterise on; default a 1 mm grid of its own",
        "RT ROI interpreted types in label order (ORGAN, GTV, PTV, EXTERNAL, ...), "
        "comma-separated")
    p.add_argument("--description", default="Structure set", help="SeriesDescription")
    _common(p)
    p.set_defaults(func=cmd_rtstruct)


def _io(p: argparse.ArgumentParser, kind: str, input_help: str, reading: str,
        types_help: str) -> None:
    p.add_argument("input", help=input_help)
    p.add_argument("out", help=f"OUT.dcm ({kind}) or OUT.nii[.gz] (labels from a {kind})")
    p.add_argument("--reference", metavar="SERIES_DIR",
                   help=f"the image series the labels lie on (required to write a {kind}; "
                        f"{reading})")
    p.add_argument("--names", help="names in label order, comma-separated")
    p.add_argument("--types", help=types_help)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("-q", "--quiet", action="store_true")
