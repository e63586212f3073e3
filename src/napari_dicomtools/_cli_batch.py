"""Batch work over many inputs on Dask distributed (issue 17), wired into ``convert``,
``anonymize`` and ``info``.

``dicomtools convert`` and ``dicomtools anonymize`` take several inputs (folders, files,
``.zip`` archives, DICOMDIRs, list files of paths) and ``--workers N`` / ``--scheduler
ADDRESS``. With one input and neither option they behave as before; otherwise the job runs
through :func:`napari_dicomtools.core.batch.run_batch`: a manifest in the output folder
makes it resumable (rerun the same command after an interruption). ``dicomtools info
--parquet OUT`` writes the metadata table as a Parquet dataset
(:func:`napari_dicomtools.core.batch.tabulate`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from tqdm import tqdm

    from ._cli_objects import SubParsers

#: (progress(phase, done, total), close(), on_start(dashboard link)) of a batch job
Feedback: TypeAlias = tuple[Callable[[str, int, int], None], Callable[[], None],
                            Callable[[str | None], None]]

_BATCH_HELP = ("several inputs, a list file, --workers or --scheduler make a batch job on "
               "Dask distributed: resumable (a manifest in the output folder; rerun the same "
               "command to continue), series by series")


def _add_batch_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("batch (Dask distributed)", _BATCH_HELP)
    g.add_argument("--workers", type=int, metavar="N",
                   help="worker processes on this machine (default: one per core; 0: in "
                        "this process)")
    g.add_argument("--scheduler", metavar="ADDRESS",
                   help="a running Dask scheduler, e.g. tcp://head-node:8786 (inputs and "
                        "output on a file system every worker sees)")


def _many(p: argparse.ArgumentParser, dest: str, help_text: str) -> None:
    """Let the positional ``dest`` of ``p`` take one or more paths."""
    for action in p._actions:
        if action.dest == dest:
            action.nargs = "+"
            action.help = help_text
            return
    raise LookupError(dest)


def add_subcommands(sub: SubParsers) -> None:
    """Make ``convert`` and ``anonymize`` (added by cli.py) accept many inputs and the
    batch options."""
    inputs = ("DICOM files, folders, .zip, DICOMDIR, or a list file (*.txt, one path a "
              "line); several are one batch job")
    for name, dest, func in (("convert", "path", _convert), ("anonymize", "src", _anonymize)):
        p = sub.choices[name]
        _many(p, dest, inputs)
        _add_batch_options(p)
        p.set_defaults(func=func, _single=p.get_default("func"))
        p.epilog = ((p.epilog + " ") if p.epilog else "") + (
            "Batch jobs exit with 0 when every series was written (or done before), 3 when "
            "some series failed (listed with their reasons), 1 on other errors, 130 when "
            "interrupted (rerun to continue).")
    p = sub.choices["info"]
    _many(p, "path", inputs)
    p.add_argument("--parquet", metavar="OUTDIR",
                   help="write the table (--tags, --level, --deidentify) as a Parquet "
                        "dataset: OUTDIR/part-*.parquet, read by pandas.read_parquet(OUTDIR) "
                        "or dask.dataframe.read_parquet(OUTDIR); --level instance reads the "
                        "files in parallel (--workers, --scheduler), one part per 5000 files")
    _add_batch_options(p)
    p.set_defaults(func=_info, _single=p.get_default("func"))


def _info(args: argparse.Namespace) -> int:
    from .cli import cmd_info, cmd_info_table, printable, tag_list
    from .core.batch import expand_inputs
    from .core.errors import DicomToolsError

    if args.parquet:
        from .core.batch import tabulate

        progress, close, started = _feedback(args)
        try:
            res = tabulate(args.path, args.parquet, tag_list(args.tags), level=args.level,
                           deidentify=args.deidentify, force=args.force, workers=args.workers,
                           scheduler=args.scheduler, progress=progress, on_start=started)
        finally:
            close()
        if not args.quiet:
            print(printable(f"{args.parquet}: {res['rows']} row(s) in {res['parts']} "
                            f"Parquet part(s), {res['seconds']:.1f} s"))
        return 0 if res["rows"] else 1
    if args.workers is not None or args.scheduler is not None:
        raise DicomToolsError(None, "--workers and --scheduler work with --parquet (and in "
                                    "convert and anonymize)")
    if not _is_batch(args, args.path):
        args.path = args.path[0]
        return cmd_info(args)
    paths = expand_inputs(args.path)
    if args.tags or args.csv or args.level != "series" or args.deidentify:
        args.path = paths
        return cmd_info_table(args)
    if args.json:
        raise DicomToolsError(None, "--json lists one input; give one folder (or use "
                                    "--tags ... --csv for a table over several)")
    rc = 0
    for p in paths:
        args.path = p
        rc = max(rc, cmd_info(args))
    return rc


def _is_batch(args: argparse.Namespace, paths: Sequence[str]) -> bool:
    if (len(paths) > 1 or args.workers is not None or args.scheduler is not None
            or any(p.startswith("@") for p in paths)):
        return True
    if all(os.path.isdir(p) for p in paths):  # one folder: no import of core.batch
        return False
    from .core.batch import LIST_SUFFIXES

    return any(p.lower().endswith(LIST_SUFFIXES) for p in paths)


def _convert(args: argparse.Namespace) -> int:
    if not _is_batch(args, args.path):
        args.path = args.path[0]
        return _single(args)
    from .core.batch import ConvertOptions
    from .core.errors import DicomToolsError

    if args.out.endswith((".nii", ".nii.gz")):
        raise DicomToolsError(args.out, "a batch job writes a folder of NIfTI files; give "
                                        "a folder")
    opts = ConvertOptions(gzip=not args.no_gzip, split_nonuniform=args.split_nonuniform,
                          uniform=args.uniform, correct_tilt=args.correct_tilt,
                          philips_precise=args.philips_precise)
    return _run("convert", args.path, args.out, args, options=opts, pattern=args.filename)


def _anonymize(args: argparse.Namespace) -> int:
    from .cli import anonymize_options

    if not _is_batch(args, args.src):
        args.src = args.src[0]
        return _single(args)
    key = args.key or os.environ.get("DICOMTOOLS_ANON_KEY")
    if key is None and not args.quiet:
        print("dicomtools: no --key (or DICOMTOOLS_ANON_KEY): UIDs and pseudonyms are "
              "random for this run, so an interrupted job cannot be resumed", file=sys.stderr)
    return _run("anonymize", args.src, args.outdir, args, options=anonymize_options(args),
                key=key)


def _single(args: argparse.Namespace) -> int:
    """The one-input command ``args`` would have run without batch options."""
    single: Callable[[argparse.Namespace], int] = args._single
    return single(args)


def _feedback(args: argparse.Namespace) -> Feedback:
    """(progress, close, on_start) callbacks: a tqdm bar per phase on a terminal, and the
    dashboard's address."""
    bars: dict[str, tqdm[Any]] = {}
    tty = not getattr(args, "quiet", False) and sys.stderr.isatty()

    def progress(phase: str, done: int, total: int) -> None:
        if not tty:
            return
        bar = bars.get(phase)
        if bar is None:
            from tqdm import tqdm

            for other in bars.values():
                other.close()
            unit = "file" if phase == "scanning" else "series"
            bar = bars[phase] = tqdm(total=total, unit=unit, desc=phase, file=sys.stderr)
        bar.update(done - bar.n)

    def started(link: str | None) -> None:
        if link and not args.quiet:
            print(f"dask dashboard: {link}", file=sys.stderr)

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return progress, close, started


def _run(kind: str, inputs: Sequence[str], out: str, args: argparse.Namespace,
         **kw: Any) -> int:
    from .cli import print_warnings, printable
    from .core.batch import run_batch

    progress, close, started = _feedback(args)
    try:
        summary = run_batch(kind, inputs, out, force=args.force, workers=args.workers,
                            scheduler=args.scheduler, progress=progress, on_start=started,
                            **kw)
    except KeyboardInterrupt:
        print(f"\ndicomtools: interrupted; finished series are recorded in {out}: run the "
              "same command again to continue", file=sys.stderr)
        raise
    finally:
        close()
    for path, reason in summary.unreadable:
        print(printable(f"skipped {path}: {reason}"), file=sys.stderr)
    print_warnings(summary.warnings, args.verbose)
    for label, reason in summary.failures:
        print(printable(f"FAILED {label}: {reason}"), file=sys.stderr)
    if not args.quiet:
        print(printable(f"{summary}; {summary.outputs} file(s) written under {out}"))
    if summary.total == 0:
        from .core.errors import DicomToolsError

        raise DicomToolsError(None, f"no {'convertible ' if kind == 'convert' else ''}"
                                    "DICOM series in the inputs")
    return 3 if summary.failed else 0
