"""The ``dicomtools`` command line. Imports neither Qt nor napari (except ``view``).

    dicomtools info PATH [--json]        patients/studies/series, geometry, skipped files
    dicomtools view [PATH ...] [--sample phantom|ct|mr] [--screenshot OUT.png]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .core.errors import DicomToolsError


def _progress_scan(path, quiet: bool):
    from .core.scan import scan_iter

    gen = scan_iter(path)
    bar = None
    try:
        while True:
            try:
                done, total = next(gen)
            except StopIteration as stop:
                return stop.value
            if bar is None and not quiet and total > 50 and sys.stderr.isatty():
                from tqdm import tqdm

                bar = tqdm(total=total, unit="file", desc="scanning", file=sys.stderr)
            if bar is not None:
                bar.update(done - bar.n)
    finally:
        if bar is not None:
            bar.close()


def _series_dict(s) -> dict:
    return {
        "name": s.name,
        "patient_name": s.patient_name,
        "patient_id": s.patient_id,
        "study_uid": s.study_uid,
        "study_date": s.study_date,
        "study_description": s.study_description,
        "series_uid": s.uid,
        "series_number": s.number,
        "series_description": s.description,
        "split": s.split,
        "modality": s.modality,
        "shape": list(s.shape),
        "spacing_mm": [round(x, 6) for x in s.spacing],
        "orientation": s.orientation_label,
        "origin_lps_mm": [round(float(x), 4) for x in s.origin],
        "frame_of_reference": s.frame_of_reference,
        "n_files": len(s.files),
        "problems": list(s.problems),
    }


def cmd_info(args) -> int:
    series = _progress_scan(args.path, args.json)
    if args.json:
        out = {"path": os.fspath(args.path), "series": [_series_dict(s) for s in series],
               "skipped": [{"path": k.path, "reason": k.reason} for k in series.skipped]}
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0 if series else 1
    last_patient = last_study = None
    for s in series:
        if (s.patient_id, s.patient_name) != last_patient:
            last_patient = (s.patient_id, s.patient_name)
            print(f"Patient {s.patient_name or '(no name)'} [{s.patient_id}]")
            last_study = None
        if s.study_uid != last_study:
            last_study = s.study_uid
            print(f"  Study {s.study_date} {s.study_description}".rstrip())
        sp = s.spacing
        dims = "x".join(str(x) for x in s.shape)
        print(f"    {s.name}: {s.modality} {dims} voxels, {sp[2]:.4g} x {sp[1]:.4g} x "
              f"{sp[0]:.4g} mm, {s.orientation_label}, {len(s.files)} file(s)")
        for p in s.problems:
            print(f"      ! {p}")
    if series.skipped:
        print(f"Skipped {len(series.skipped)} file(s):")
        for k in series.skipped:
            print(f"  {k.path}: {k.reason}")
    if not series:
        print(f"dicomtools: {args.path}: no loadable DICOM image series", file=sys.stderr)
        return 1
    return 0


def cmd_view(args) -> int:
    import napari

    viewer = napari.Viewer(show=args.screenshot is None)
    for p in args.paths:
        viewer.open(p, plugin="napari-dicomtools")
    if args.sample:
        viewer.open_sample("napari-dicomtools", args.sample)
    if args.browser:
        _, browser = viewer.window.add_plugin_dock_widget("napari-dicomtools", "DICOM browser")
        folder = args.paths[0] if args.paths else None
        if folder is None and args.sample == "phantom":
            from ._sample_data import phantom_series_dir

            folder = phantom_series_dir()
        if folder:
            browser.path_edit.setText(os.fspath(folder))
            browser.populate(_progress_scan(folder, quiet=True))
    if args.screenshot:
        viewer.window.resize(1280, 800)
        viewer.reset_view()
        viewer.screenshot(args.screenshot, canvas_only=False)
        print(f"wrote {args.screenshot}")
        viewer.close()
        return 0
    napari.run()
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="dicomtools",
                                 description="DICOM series: inspect, view (napari).")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="list patients/studies/series and skipped files")
    p.add_argument("path", help="DICOM file, folder, .zip or DICOMDIR")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("view", help="open DICOM (or a sample) in napari")
    p.add_argument("paths", nargs="*", help="DICOM files, folders, .zip or DICOMDIR")
    p.add_argument("--sample", choices=["phantom", "ct", "mr"], help="open built-in sample data")
    p.add_argument("--browser", action="store_true", help="dock the DICOM browser")
    p.add_argument("--screenshot", metavar="OUT.png",
                   help="save a screenshot of the window and exit (works under xvfb-run)")
    p.set_defaults(func=cmd_view)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "screenshot", None) and os.path.exists(args.screenshot):
        print(f"dicomtools: {args.screenshot}: exists; not overwriting", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except DicomToolsError as exc:
        print(f"dicomtools: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
