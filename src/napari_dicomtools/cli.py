"""The ``dicomtools`` command line. Imports neither Qt nor napari (except ``view``).

    dicomtools info PATH [--json]        patients/studies/series, geometry, skipped files
    dicomtools info PATH --tags KW,... --csv OUT.csv [--level instance] [--deidentify]
    dicomtools convert PATH OUT [--force] one NIfTI per volume (OUT: a .nii/.nii.gz or a folder)
    dicomtools png PATH OUTDIR [--window C,W | --preset lung] [--axis axial|coronal|sagittal]
                         [--time N|N:M|all]   (default: the acquisition plane, every time point)
    dicomtools anonymize SRC OUTDIR [options]   PS3.15 Annex E de-identified copy
    dicomtools view [PATH ...] [--sample phantom|ct|mr] [--screenshot OUT.png]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from .core.errors import DicomToolsError

if TYPE_CHECKING:
    from tqdm import tqdm

    from ._cli_objects import SubParsers
    from .core.anonymize import Options
    from .core.series import PathInput, Series, SeriesList

_INVISIBLE = {0x2028, 0x2029, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def printable(text: object) -> str:
    r"""``text`` with control characters escaped (``\n``, ``\x1b``, ``\u202e``...), so a
    name read from a file can neither break a listing into several lines nor drive the
    terminal.

    Examples
    --------
    >>> print(printable("a\nb"))
    a\nb
    """
    text = str(text)
    if text.isprintable():
        return text
    out: list[str] = []
    for c in text:
        o = ord(c)
        if o < 32 or 0x7F <= o < 0xA0 or o in _INVISIBLE or (0xD800 <= o < 0xE000):
            out.append(repr(c)[1:-1] if c in "\n\r\t" else
                       (f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"))
        else:
            out.append(c)
    return "".join(out)


#: how many "removed ... from Pixel Data" notes are printed one by one before they are summed up
PIXEL_TEXT_LISTED = 3


def print_warnings(messages: Iterable[object], verbose: int = 0) -> None:
    """Each warning once on stderr, escaped by :func:`printable`; beyond
    :data:`PIXEL_TEXT_LISTED` files the notes that text was removed from compressed Pixel
    Data are summed up in one line (``core.anonymize.summarize_warnings``), all listed
    with ``-v``."""
    from .core.anonymize import summarize_warnings

    unique = list(dict.fromkeys(str(m) for m in messages))
    lines = unique if verbose else summarize_warnings(unique, PIXEL_TEXT_LISTED)
    for msg in lines:
        if msg not in unique:  # the sum
            msg += "; 'dicomtools -v' lists each file"
        print(printable(f"WARNING: {msg}"), file=sys.stderr)


def _err(exc: object) -> str:
    """The one line printed for an error."""
    return "dicomtools: " + printable(str(exc).strip())


def _progress_scan(path: PathInput, quiet: bool, split_nonuniform: bool = False
                   ) -> SeriesList:
    from .core.series import scan_iter

    gen = scan_iter(path, split_nonuniform)
    bar: tqdm[Any] | None = None
    try:
        while True:
            try:
                done, total = next(gen)
            except StopIteration as stop:
                found: SeriesList = stop.value
                return found
            if bar is None and not quiet and total > 50 and sys.stderr.isatty():
                from tqdm import tqdm

                bar = tqdm(total=total, unit="file", desc="scanning", file=sys.stderr)
            if bar is not None:
                bar.update(done - bar.n)
    finally:
        if bar is not None:
            bar.close()


def _series_dict(s: Series) -> dict[str, Any]:
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
        "colour": s.colour or None,
        "shape": list(s.shape),
        "spacing_mm": [round(x, 6) for x in s.spacing] if s.pixel_size_known else None,
        "spacing_source": s.spacing_source,
        "frame_time_ms": s.frame_time_ms,
        "orientation": s.orientation_label,
        "origin_lps_mm": [round(float(x), 4) for x in s.origin],
        "frame_of_reference": s.frame_of_reference,
        "n_files": len(s.files),
        "problems": list(s.problems),
    }


def tag_list(text: str | None) -> list[str] | None:
    """``--tags`` as a list: commas separate tags, except inside ``(gggg,eeee)``."""
    import re

    return [t.strip() for t in re.findall(r"\([^)]*\)|[^,]+", text or "")
            if t.strip()] or None


def cmd_info_table(args: argparse.Namespace) -> int:
    from .core.metadata import metadata_table, write_csv

    tags = tag_list(args.tags)
    try:
        table = metadata_table(args.path, tags, level=args.level,
                               deidentify=args.deidentify, as_frame=False)
    except ValueError as exc:
        raise DicomToolsError(None, str(exc)) from None
    if args.csv:
        if args.csv != "-":
            _check_not_into_source(args.csv, args.path)
            write_csv(table, args.csv, overwrite=args.force)
            if not args.quiet:
                print(printable(f"{args.csv}: {len(table)} row(s)"))
            return 0 if table else 1
    import csv as _csv

    cols = list(table[0]) if table else []
    w = _csv.DictWriter(sys.stdout, fieldnames=cols)
    w.writeheader()
    for r in table:
        w.writerow(r)
    return 0 if table else 1


def _colour_text(s: Series) -> str:
    """How a colour series is stored and what ``convert`` makes of it."""
    if s.colour == "PALETTE COLOR":
        return "palette colour, converted through its lookup table to RGB"
    return f"{s.colour}, written as RGB"


def cmd_info(args: argparse.Namespace) -> int:
    if not os.path.exists(os.fspath(args.path)):
        raise DicomToolsError(args.path, "no such file or folder")
    if args.tags or args.csv or args.level != "series" or args.deidentify:
        return cmd_info_table(args)
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
            print(printable(f"Patient {s.patient_name or '(no name)'} [{s.patient_id}]"))
            last_study = None
        if s.study_uid != last_study:
            last_study = s.study_uid
            print(printable(f"  Study {s.study_date} {s.study_description}".rstrip()))
        dims = "x".join(str(x) for x in s.shape)
        colour = f", colour ({_colour_text(s)})" if s.colour else ""
        print(printable(f"    {s.name}: {s.modality} {dims} voxels{colour}, {s.size_text}, "
                        f"{len(s.files)} file(s)"))
        for p in s.problems:
            print(printable(f"      ! {p}"))
    if series.skipped:
        print(f"Skipped {len(series.skipped)} file(s):")
        for k in series.skipped:
            print(printable(f"  {k.path}: {k.reason}"))
    if not series:
        print(printable(f"dicomtools: {args.path}: no loadable DICOM image series"),
              file=sys.stderr)
        return 1
    return 0


def output_names(series: Sequence[Series], pattern: str | None = None, folder: str = ""
                 ) -> list[str]:
    """dcm2niix-compatible names (``-f`` pattern, default ``%s_%p``), unique within the list;
    see :func:`napari_dicomtools.core.naming.output_names`."""
    from .core.naming import output_names as _names

    return _names(series, pattern, folder)


def _makedirs(folder: str) -> None:
    """``os.makedirs`` whose failure (read-only, permission, a file in the way) is one
    :class:`DicomToolsError`."""
    try:
        os.makedirs(folder, exist_ok=True)
    except FileExistsError:
        raise DicomToolsError(folder, "exists and is not a folder") from None
    except OSError as exc:
        raise DicomToolsError(exc.filename or folder,
                              f"cannot create the folder: {exc.strerror or exc}") from None


def _check_not_into_source(out: str, src: str) -> None:
    from .core.safety import refuse_inside_source

    refuse_inside_source(out, src)


def _convert_seg(s: Series, candidates: Sequence[Series], target: str,
                 args: argparse.Namespace) -> None:
    """A DICOM SEG as label NIfTI (segment numbers as values) on the grid of the image series
    it references when that series is being converted too, else on the SEG's own geometry."""
    from ._cli_objects import write_labels_nifti
    from .core.seg import find_reference, read_segmentation

    ref = find_reference(s.first.source, candidates)
    seg = read_segmentation(s, reference=ref)
    outs = write_labels_nifti(seg, target, force=args.force, quiet=True)
    if not args.quiet:
        where = f"on the grid of {ref.name!r}" if ref is not None else "on its own geometry"
        for out in outs:
            print(printable(f"{out}: {s.label} (SEG labels {where})"))


def cmd_convert(args: argparse.Namespace) -> int:
    src, out = os.fspath(args.path), os.fspath(args.out)
    if not os.path.exists(src):
        raise DicomToolsError(src, "no such file or folder")
    _check_not_into_source(out, src)
    series = _convertible_series(src, args)
    targets = _convert_targets(series, src, out, args)
    bar = None
    if not args.quiet and len(series) > 1 and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=len(series), unit="volume", desc="converting", file=sys.stderr)
    failed = 0
    for s, target in zip(series, targets, strict=True):
        try:
            _convert_one(s, series, target, args)
        except (DicomToolsError, OSError, ValueError, MemoryError) as exc:
            failed += 1  # report, and go on with the next series
            print(_err(exc), file=sys.stderr)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if failed:
        print(f"dicomtools: {failed} of {len(series)} volume(s) not written", file=sys.stderr)
    return 1 if failed else 0


def _convertible_series(src: str, args: argparse.Namespace) -> list[Series]:
    """The image series of ``src`` (skipped files, RTSTRUCT and SR reported on stderr);
    refuses a source without any."""
    series = _progress_scan(src, args.quiet, args.split_nonuniform)
    for k in series.skipped:
        print(printable(f"skipped {k.path}: {k.reason}"), file=sys.stderr)
    for s in [s for s in series if s.kind in ("RTSTRUCT", "SR")]:  # no image to convert
        series.remove(s)
        print(printable(f"skipped {s.first.path}: {s.kind} holds no image (dicomtools "
                        f"{'rtstruct' if s.kind == 'RTSTRUCT' else 'info'} reads it)"),
              file=sys.stderr)
    if not series:
        raise DicomToolsError(src, "no convertible DICOM image series")
    return series


def _convert_targets(series: Sequence[Series], src: str, out: str,
                     args: argparse.Namespace) -> list[str]:
    """One output file per series: ``out`` itself (a .nii/.nii.gz name, one series), else
    named by ``--filename`` inside the folder ``out``; refuses existing files without
    ``--force``."""
    single = out.endswith((".nii", ".nii.gz"))
    if single and len(series) > 1:
        raise DicomToolsError(out, f"is one file but {src} holds {len(series)} volumes; "
                                   "give a folder instead")
    if single:
        targets = [out]
    else:
        _makedirs(out)
        ext = ".nii" if args.no_gzip else ".nii.gz"
        folder = os.path.basename(os.path.normpath(os.path.abspath(src)))
        if not os.path.isdir(src):
            folder = os.path.basename(os.path.dirname(os.path.abspath(src)))
        targets = [os.path.join(out, *n.split("/")) + ext
                   for n in output_names(series, args.filename, folder)]
    if not args.force:
        clash = [t for t in targets if os.path.exists(t)]
        if clash:
            raise DicomToolsError(clash[0], "exists; not overwriting (use --force)")
    return targets


def _convert_one(s: Series, series: Sequence[Series], target: str,
                 args: argparse.Namespace) -> None:
    """Write one series to ``target``: a SEG as labels, a tilted or gapped stack through
    ``read_volume`` when asked to correct it, anything else streamed; its problems to
    stderr."""
    from .core.nifti import write_series_nifti

    tilt = args.correct_tilt and s.order is not None and s.order.tilt_deg
    gaps = args.uniform and s.order is not None and not s.order.uniform
    if getattr(s, "kind", "IMAGE") == "SEG":
        _convert_seg(s, series, target, args)
    elif tilt or gaps:
        from .core.nifti import write_nifti
        from .core.volume import read_volume

        write_nifti(read_volume(s, correct_tilt=bool(tilt), uniform_spacing=bool(gaps),
                                philips_precise=args.philips_precise),
                    target, overwrite=args.force)
    else:
        write_series_nifti(s, target, overwrite=args.force,
                           philips_precise=args.philips_precise)
    if not args.quiet and getattr(s, "kind", "IMAGE") != "SEG":
        print(printable(f"{target}: {s.label}"))
    for p in s.problems:
        print(printable(f"  ! {p}"), file=sys.stderr)


def _parse_window(text: str) -> tuple[float, float]:
    try:
        c, w = (float(v) for v in text.split(","))
    except ValueError:
        raise DicomToolsError(None, f"--window wants CENTER,WIDTH (e.g. 40,400), got {text!r}") from None
    if w < 1:
        raise DicomToolsError(None, f"--window width must be >= 1, got {w:g}")
    return c, w


def _parse_slices(text: str | None) -> list[int] | None:
    if not text:
        return None
    out: list[int] = []
    for part in text.split(","):
        if ":" in part:
            a, b = part.split(":")
            out.extend(range(int(a), int(b)))
        else:
            out.append(int(part))
    return out


def cmd_png(args: argparse.Namespace) -> int:
    from .core.png import WINDOW_PRESETS

    src, out = os.fspath(args.path), os.fspath(args.outdir)
    if not os.path.exists(src):
        raise DicomToolsError(src, "no such file or folder")
    _check_not_into_source(out, src)
    window = _parse_window(args.window) if args.window else None
    if args.preset and args.preset not in WINDOW_PRESETS:
        raise DicomToolsError(None, f"unknown preset {args.preset!r}; choose from "
                                    f"{', '.join(WINDOW_PRESETS)}")
    try:
        slices = _parse_slices(args.slices)
    except ValueError:
        raise DicomToolsError(None, f"--slices wants e.g. 10,20 or 10:20, got {args.slices!r}") from None
    try:
        time = None if args.time in (None, "all") else _parse_slices(args.time)
    except ValueError:
        raise DicomToolsError(None, f"--time wants N, N,M, N:M or all, got {args.time!r}") from None
    series = _progress_scan(src, args.quiet)
    for k in series.skipped:
        print(printable(f"skipped {k.path}: {k.reason}"), file=sys.stderr)
    if not series:
        raise DicomToolsError(src, "no loadable DICOM image series")
    failed = 0
    for s, name in zip(series, output_names(series), strict=True):
        try:
            _png_series(s, os.path.join(out, name), name, src, args, window=window,
                        slices=slices, time=time)
        except (DicomToolsError, ValueError, OSError, MemoryError) as exc:
            failed += 1
            print(_err(_force_hint(exc)), file=sys.stderr)
    return 1 if failed else 0


def _png_series(series: Series, folder: str, name: str, src: str,
                args: argparse.Namespace, *, window: tuple[float, float] | None,
                slices: list[int] | None, time: list[int] | None) -> None:
    """``png`` of one series into ``folder``, with a progress bar on a terminal and the line
    saying what was written."""
    from .core.png import acquisition_plane, export_png
    from .core.volume import read_volume

    _check_not_into_source(folder, src)  # e.g. a symlinked series folder
    vol = read_volume(series)
    bar = None
    if not args.quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit="png", desc=name, file=sys.stderr)

    def tick(i: int, n: int, bar: tqdm[Any] | None = bar) -> None:
        if bar is not None:
            bar.total = n
            bar.update(i - bar.n)

    try:
        plane = args.axis or acquisition_plane(vol)
        files = export_png(vol, folder, window=window, preset=args.preset, axis=plane,
                           slices=slices, time=time, overwrite=args.force, progress=tick)
    finally:
        if bar is not None:
            bar.close()
    if not args.quiet:
        what = _png_what(plane, args.axis, vol.n_time, time)
        print(printable(f"{folder}: {len(files)} PNG ({what}) from {series.label}"))


def _png_what(plane: str, asked: str | None, n_time: int, time: list[int] | None) -> str:
    """What ``png`` wrote of a series: ``sagittal, the acquisition plane; time points 0-2
    of 3``."""
    what = plane if asked else f"{plane}, the acquisition plane"
    if n_time > 1:
        ts = list(range(n_time)) if time is None else time
        span = (f"{ts[0]}-{ts[-1]}" if ts == list(range(ts[0], ts[-1] + 1)) and len(ts) > 1
                else ", ".join(str(t) for t in ts))
        what += f"; time point{'s' if len(ts) > 1 else ''} {span} of {n_time}"
    return what


def _force_hint(exc: BaseException) -> BaseException:
    """A core refusal to overwrite, told in the command line's words (``--force``)."""
    if isinstance(exc, DicomToolsError) and "not overwriting" in exc.reason:
        reason = exc.reason.replace(" (use overwrite=True / --force)", "")
        return DicomToolsError(exc.path, f"{reason} (use --force)")
    return exc


def anonymize_options(args: argparse.Namespace) -> Options:
    """The profile :class:`~napari_dicomtools.core.anonymize.Options` of ``anonymize``'s
    command-line flags."""
    from .core.anonymize import Options

    return Options(
        retain_uids=args.retain_uids,
        retain_device_identity=args.retain_device_identity,
        retain_institution_identity=args.retain_institution_identity,
        retain_patient_characteristics=args.retain_patient_characteristics,
        retain_longitudinal_full_dates=args.retain_longitudinal_dates,
        shift_dates=args.shift_dates,
        clean_descriptors=args.clean_descriptors,
        skip_burned_in=args.skip_burned_in,
        keep_unlisted_public=args.keep_unlisted_public,
        keep_uncleanable_pixels=args.keep_uncleanable_pixels,
    )


def cmd_anonymize(args: argparse.Namespace) -> int:
    from .core.anonymize import anonymize_files

    src, out = os.fspath(args.src), os.fspath(args.outdir)
    if not os.path.exists(src):
        raise DicomToolsError(src, "no such file or folder")
    _check_not_into_source(out, src)
    key = args.key or os.environ.get("DICOMTOOLS_ANON_KEY")
    opts = anonymize_options(args)
    bar: tqdm[Any] | None = None
    state: dict[str, int] = {}

    def tick(i: int, n: int) -> None:
        nonlocal bar
        if bar is None and not args.quiet and n > 20 and sys.stderr.isatty():
            from tqdm import tqdm

            bar = tqdm(total=n, unit="file", desc="anonymizing", file=sys.stderr)
        if bar is not None:
            bar.update(i - bar.n)
        state["n"] = n

    import warnings as _w

    with _w.catch_warnings(record=True) as caught:
        _w.simplefilter("always")
        try:
            rep = anonymize_files(src, out, opts, key=key, overwrite=args.force, progress=tick)
        finally:
            if bar is not None:
                bar.close()
    print_warnings((w.message for w in caught), args.verbose)
    for path, reason in rep.skipped:
        print(printable(f"skipped {path}: {reason}"), file=sys.stderr)
    summary = (f"{len(rep.written)} file(s) written under {out}, {len(rep.skipped)} skipped"
               f" ({len(rep.failed)} could not be de-identified)")
    if not args.quiet:
        print(summary)
    elif rep.failed:
        print(summary, file=sys.stderr)
    if not rep.written:
        raise DicomToolsError(src, "nothing was anonymized (see the skipped files above)")
    clashes = [r for _, r in rep.skipped if "not overwriting" in r]
    if clashes:
        return 1
    return 3 if rep.failed else 0


def cmd_view(args: argparse.Namespace) -> int:
    import importlib.util

    # napari 0.9 deprecates PyQt5 (a warning over the canvas): prefer PyQt6 when both are there
    if "QT_API" not in os.environ and importlib.util.find_spec("PyQt6") is not None:
        os.environ["QT_API"] = "pyqt6"
    import napari

    viewer = napari.Viewer()  # shown even for a screenshot: overlays lay out on a shown canvas
    for p in args.paths:
        viewer.open(p, plugin="napari-dicomtools")
    if args.sample:
        viewer.open_sample("napari-dicomtools", args.sample)
    if args.browser:
        browser_dock, browser = viewer.window.add_plugin_dock_widget("napari-dicomtools",
                                                                     "DICOM browser")
        folder = args.paths[0] if args.paths else None
        if folder is None and args.sample == "phantom":
            from ._sample_data import phantom_series_dir

            folder = phantom_series_dir()
        if folder:
            browser.path_edit.setText(os.fspath(folder))
            browser.populate(_progress_scan(folder, quiet=True))
    if args.screenshot:
        _settle_window(viewer, browser_dock if args.browser else None)
        viewer.screenshot(args.screenshot, canvas_only=False)
        print(f"wrote {args.screenshot}")
        viewer.close()
        return 0
    napari.run()
    return 0


def _settle_window(viewer: Any, dock: Any = None, size: tuple[int, int] = (1366, 768)
                   ) -> None:
    """Lay the window out as a user first sees it on a laptop screen: ``size``, a docked widget
    at about a third of the width (the canvas keeps the rest), the view fitted to the canvas
    *after* the docks took their room, and every overlay (colour bar labels, scale bar) drawn
    once at its final size before a screenshot."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    window = viewer.window._qt_window
    window.resize(*size)
    if dock is not None:
        window.resizeDocks([dock], [int(size[0] * 0.36)], Qt.Orientation.Horizontal)
    for _ in range(2):  # layout, then the canvas' new size, then overlays measured on it
        QApplication.processEvents()
        viewer.reset_view()
        viewer.window._qt_viewer.canvas._scene_canvas.update()
        QApplication.processEvents()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``dicomtools`` parser. With ``command`` (the subcommand about to run), only the
    modules of :data:`_SUBCOMMAND_MODULES` that add or extend it are imported: a plain
    ``convert`` does not pay for the PACS, SEG/RTSTRUCT or Dask modules' imports; without it
    (``--help``, no or an unknown subcommand) every subcommand is there."""
    ap = argparse.ArgumentParser(prog="dicomtools",
                                 description="DICOM series: inspect, convert, view (napari).")
    ap.add_argument("-v", "--verbose", action="count", default=0,
                    help="diagnostics on stderr: -v what the tools decide (files skipped, "
                         "decoders used, each file whose Pixel Data had text removed), "
                         "-vv everything (debug)")
    sub = ap.add_subparsers(dest="command", required=True)
    for add in (_add_info, _add_convert, _add_png, _add_anonymize, _add_view):
        add(sub)
    known = set(sub.choices).union(*_SUBCOMMAND_MODULES.values())
    for module, commands in _SUBCOMMAND_MODULES.items():
        if command not in known or command in commands:
            importlib.import_module(module).add_subcommands(sub)
    return ap




def _add_info(sub: SubParsers) -> None:
    """``dicomtools info``: list series, or a table of header values."""
    p = sub.add_parser("info", help="list patients/studies/series and skipped files")
    p.add_argument("path", help="DICOM file, folder, .zip or DICOMDIR")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--tags", help="comma-separated keywords or (gggg,eeee) tags for a table, "
                                  "e.g. SliceThickness,KVP,ConvolutionKernel")
    p.add_argument("--csv", metavar="OUT.csv", help="write the table as CSV ('-': stdout)")
    p.add_argument("--level", choices=["series", "instance"], default="series",
                   help="one row per series (default) or per file")
    p.add_argument("--deidentify", action="store_true",
                   help="drop columns the PS3.15 Annex E profile would remove, paths and UIDs")
    p.add_argument("--force", action="store_true", help="overwrite an existing CSV")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_info)


def _add_convert(sub: SubParsers) -> None:
    """``dicomtools convert``: DICOM -> NIfTI, one file per volume."""
    p = sub.add_parser("convert", help="DICOM -> NIfTI, one file per volume (like dcm2niix)")
    p.add_argument("path", help="DICOM file, folder, .zip or DICOMDIR")
    p.add_argument("out", help="OUT.nii[.gz] for a single volume, otherwise a folder "
                               "(created if needed) with files named as dcm2niix does")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("-f", "--filename", metavar="PATTERN",
                   help="output names as dcm2niix -f: %%s series number, %%p protocol, "
                        "%%d description, %%i patient ID, %%n patient name, %%t study date "
                        "and time, %%e echo, %%f input folder, %%r instance, %%u acquisition, "
                        "%%m/%%v vendor, %%z sequence, %%g accession, %%x study ID, %%j/%%k "
                        "series/study UID; '/' makes sub-folders (default: %%s_%%p; batch "
                        "jobs: %%i/%%t_%%k/%%s_%%p, a folder per patient and study)")
    p.add_argument("--no-gzip", action="store_true", help="write .nii instead of .nii.gz")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--uniform", action="store_true",
                   help="resample stacks with gaps or non-uniform spacing onto uniform slices")
    g.add_argument("--split-nonuniform", action="store_true",
                   help="write stacks with gaps or changing spacing as uniform parts "
                        "(<name>_part1, _part2, ...)")
    p.add_argument("--philips-precise", action="store_true",
                   help="Philips MR: precise floating-point values (private ScaleSlope) "
                        "instead of DICOM's RescaleSlope/Intercept")
    p.add_argument("--correct-tilt", action="store_true",
                   help="resample gantry-tilted CT onto an orthogonal grid (default: keep "
                        "the true sheared affine in sform; qform is the closest rotation)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or listing")
    p.set_defaults(func=cmd_convert)


def _add_png(sub: SubParsers) -> None:
    """``dicomtools png``: windowed 8-bit PNG slices."""
    p = sub.add_parser("png", help="windowed 8-bit PNG slices, square pixels")
    p.add_argument("path", help="DICOM file, folder, .zip or DICOMDIR")
    p.add_argument("outdir", help="output folder (one subfolder per series)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--window", metavar="C,W", help="window center,width in HU/units")
    g.add_argument("--preset", help="window preset: brain, subdural, stroke, lung, "
                                    "mediastinum, soft_tissue, abdomen, liver, bone")
    p.add_argument("--axis", choices=["axial", "coronal", "sagittal"], default=None,
                   help="patient plane to export (default: the series' own slices, the "
                        "plane it was acquired in; another plane gives reformats)")
    p.add_argument("--slices", help="indices along the axis: 10,20 or 10:20 (default: all)")
    p.add_argument("--time", metavar="N|N:M|all",
                   help="time points of a 4D series: 1, 0,2, 0:2 (0 and 1, as --slices) or "
                        "all (default: all); file names carry the time point "
                        "(axial_t001_0007.png)")
    p.add_argument("--force", action="store_true", help="overwrite existing PNGs")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_png)


def _add_anonymize(sub: SubParsers) -> None:
    """``dicomtools anonymize``: a PS3.15 Annex E de-identified copy."""
    p = sub.add_parser("anonymize", help="PS3.15 Annex E de-identified copy of a folder",
                       description="De-identify every DICOM file under SRC into OUTDIR with "
                                   "the Basic Application Level Confidentiality Profile. "
                                   "Text inside compressed pixel data (JPEG/JPEG-LS "
                                   "comments and application segments, JPEG 2000 comments) "
                                   "is removed; pixels are not changed: check "
                                   "BurnedInAnnotation warnings. A file that cannot be de-identified is skipped "
                                   "with its reason; the others are written.",
                       epilog="exit status: 0 every DICOM file written (non-DICOM files "
                              "skipped); 3 written, but some DICOM files could not be "
                              "de-identified (listed on stderr); 1 nothing written, an "
                              "output exists (use --force) or another error.")
    p.add_argument("src", help="DICOM file, folder or .zip")
    p.add_argument("outdir", help="output folder (never inside SRC)")
    p.add_argument("--key", help="secret making UIDs/pseudonyms reproducible across runs "
                                 "(or set DICOMTOOLS_ANON_KEY); default: random per run")
    p.add_argument("--shift-dates", action="store_true",
                   help="shift dates by a per-patient offset instead of removing them")
    p.add_argument("--retain-longitudinal-dates", action="store_true",
                   help="keep full dates (Retain Longitudinal Full Dates Option)")
    p.add_argument("--retain-patient-characteristics", action="store_true",
                   help="keep sex, age, size, weight, ...")
    p.add_argument("--retain-device-identity", action="store_true")
    p.add_argument("--retain-institution-identity", action="store_true")
    p.add_argument("--retain-uids", action="store_true", help="keep the original UIDs")
    p.add_argument("--clean-descriptors", action="store_true",
                   help="keep descriptions, scrubbed of names and IDs found in the file, "
                        "titled names (Dr X) and dates in common notations")
    p.add_argument("--skip-burned-in", action="store_true",
                   help="skip files with BurnedInAnnotation=YES instead of warning")
    p.add_argument("--keep-unlisted-public", action="store_true",
                   help="keep public attributes the profile's table does not list (default: "
                        "removed unless known to be safe; UIDs are remapped either way)")
    p.add_argument("--keep-uncleanable-pixels", action="store_true",
                   help="write files whose compressed pixel data cannot be searched for "
                        "text (video, JPEG XL) with it copied as is (default: refused)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_anonymize)


def _add_view(sub: SubParsers) -> None:
    """``dicomtools view``: open DICOM (or a sample) in napari."""
    p = sub.add_parser("view", help="open DICOM (or a sample) in napari")
    p.add_argument("paths", nargs="*", help="DICOM files, folders, .zip or DICOMDIR")
    p.add_argument("--sample", choices=["phantom", "ct", "mr"], help="open built-in sample data")
    p.add_argument("--browser", action="store_true", help="dock the DICOM browser")
    p.add_argument("--screenshot", metavar="OUT.png",
                   help="save a screenshot of the window and exit (works under xvfb-run)")
    p.set_defaults(func=cmd_view)


#: modules adding subcommands, each through ``add_subcommands(subparsers)``, with the
#: subcommands each adds or extends (imported only when one of those runs, or for --help;
#: a subcommand missing here still works: an unknown name imports every module)
_SUBCOMMAND_MODULES = {
    # DICOM annotation objects
    "napari_dicomtools._cli_objects": ("seg", "rtstruct"),
    "napari_dicomtools._cli_pacs": ("pacs",),  # pacs echo|find|get|send
    # batch work on a Dask cluster: several inputs for convert, anonymize, info
    "napari_dicomtools._cli_batch": ("convert", "anonymize", "info"),
}


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word after the global options), if any."""
    for word in argv:
        if word == "--":
            return None
        if not word.startswith("-"):
            return word
    return None


def _configure_logging(verbosity: int) -> Callable[[], None]:
    """``-v``: INFO, ``-vv``: DEBUG from the ``napari_dicomtools`` loggers, on stderr.
    Returns what undoes it (``main`` called in a console or a script twice must neither
    log twice nor keep writing to a stream it was given once)."""
    if verbosity <= 0:
        return lambda: None
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("dicomtools: %(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("napari_dicomtools")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO if verbosity == 1 else logging.DEBUG)

    def undo() -> None:
        log.removeHandler(handler)
        log.setLevel(level)

    return undo


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command(argv)).parse_args(argv)
    undo_logging = _configure_logging(args.verbose)
    try:
        with warnings.catch_warnings():  # restores the caller's warning display
            warnings.showwarning = _show_warning
            return _run_command(args)
    finally:
        undo_logging()


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    """A library's warning (pydicom's about a malformed value, numpy's...) as one escaped
    line, not Python's source location and code line: the text may hold bytes read from a
    file."""
    print(f"dicomtools: warning: {printable(message)}", file=sys.stderr)


def _run_command(args: argparse.Namespace) -> int:
    """Run the parsed subcommand: its exit status, errors printed as one line."""
    if getattr(args, "screenshot", None) and os.path.exists(args.screenshot):
        print(f"dicomtools: {args.screenshot}: exists; not overwriting", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except DicomToolsError as exc:
        print(_err(exc), file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. piped into `head` (an OSError: caught first)
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        except OSError:
            pass
        return 0
    except OSError as exc:  # a file-system refusal no writer turned into a DicomToolsError
        where = exc.filename or ""
        print(_err(f"{where}: {exc.strerror or exc}" if where else exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
