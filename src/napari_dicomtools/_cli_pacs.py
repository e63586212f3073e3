"""``dicomtools`` subcommands for PACS networking: DIMSE and DICOMweb (issue 16).

    dicomtools pacs add NAME (--url URL | --host H --port P --aet AET) [auth, TLS options]
    dicomtools pacs list | remove NAME
    dicomtools pacs echo SERVER [--protocol dimse|dicomweb]
    dicomtools pacs find SERVER [--patient-id ID] [--patient-name N] [--date RANGE]
                               [--modality M] [--description D] [--level study|series] [--json]
    dicomtools pacs get SERVER SERIES_UID [--study UID] [--method wado|c-get|c-move]
                               [--cache DIR]
    dicomtools pacs send SERVER PATH... [--method stow|c-store]
                               [--reference DICOM [--description D]]  (PNG/JPEG -> SC)

SERVER is the name of a profile in the PACS configuration file (``dicomtools pacs list``
shows where it is; ``DICOMTOOLS_PACS_CONFIG`` overrides it). Secrets are never printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tqdm import tqdm

    from ._cli_objects import SubParsers
    from .core.pacs import ServerProfile


def _bar(args: argparse.Namespace, total: int, unit: str, desc: str) -> tqdm[Any] | None:
    """A tqdm bar on stderr (a terminal, not --quiet), else None."""
    if args.quiet or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, desc=desc, file=sys.stderr)


def _progress(args: argparse.Namespace, unit: str, desc: str
              ) -> tuple[Callable[[int, int], None], Callable[[], None]]:
    """A ``progress(done, total)`` callback driving one bar; returns (callback, close)."""
    bars: list[tqdm[Any] | None] = []  # made at the first call (None: no bar)

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(_bar(args, total, unit, desc))
        bar = bars[0]
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)

    def close() -> None:
        if bars and bars[0] is not None:
            bars[0].close()

    return progress, close


def _profile(name: str) -> ServerProfile:
    from .core.pacs import get_profile

    return get_profile(name)


def cmd_add(args: argparse.Namespace) -> int:
    import getpass

    from .core.pacs import ServerProfile, save_profile

    password = getpass.getpass(f"password for {args.user}: ") if args.ask_password else None
    token = getpass.getpass("bearer token: ") if args.ask_token else None
    prof = ServerProfile(args.name, dicomweb_url=args.url, host=args.host, port=args.port,
                         called_aet=args.aet, calling_aet=args.calling_aet,
                         move_port=args.move_port, username=args.user, password=password,
                         token=token, password_env=args.password_env,
                         token_env=args.token_env, ca_bundle=args.ca_bundle, tls=args.tls,
                         tls_cert=args.tls_cert, tls_key=args.tls_key, timeout=args.timeout)
    path = save_profile(prof, overwrite=args.force)
    if not args.quiet:
        print(f"{prof.label}: saved in {path}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .core.pacs import config_path, load_profiles

    profiles = load_profiles()
    if args.json:
        json.dump({n: p.to_dict(redact=True) for n, p in profiles.items()}, sys.stdout,
                  indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"# {config_path()}")
    for p in profiles.values():
        print(p.label)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    from .core.pacs import remove_profile

    remove_profile(args.name)
    return 0


def cmd_echo(args: argparse.Namespace) -> int:
    from .core.pacs import echo

    prof = _profile(args.server)
    protocols = [args.protocol] if args.protocol else (
        (["dimse"] if prof.host else []) + (["dicomweb"] if prof.dicomweb_url else []))
    for protocol in protocols:
        seconds = echo(prof, protocol)
        print(f"{prof.name}: {protocol} ok ({seconds * 1000:.0f} ms)")
    return 0


_COLUMNS = (("patient_id", "PatientID"), ("patient_name", "Name"), ("study_date", "Date"),
            ("modality", "Mod"), ("count", "N"))


def cmd_find(args: argparse.Namespace) -> int:
    from .cli import printable
    from .core.pacs import find

    prof = _profile(args.server)
    hits = find(prof, level=args.level, protocol=args.protocol, patient_id=args.patient_id,
                patient_name=args.patient_name, date=args.date, modality=args.modality,
                description=args.description, study_uid=args.study, limit=args.limit)
    if args.json:
        json.dump([h.row() for h in hits], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0 if hits else 1
    cols = list(_COLUMNS) + ([("study_description", "Study"), ("study_uid", "StudyUID")]
                             if args.level == "study" else
                             [("series_number", "#"), ("series_description", "Series"),
                              ("series_uid", "SeriesUID")])
    rows = [[printable("" if getattr(h, k) is None else getattr(h, k)) for k, _ in cols]
            for h in hits]
    widths = [max([len(t)] + [len(r[i]) for r in rows]) for i, (_, t) in enumerate(cols)]
    print("  ".join(t.ljust(w) for (_, t), w in zip(cols, widths, strict=True)).rstrip())
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    if not args.quiet:
        print(f"{len(hits)} {args.level}{'' if len(hits) == 1 else ' results'}",
              file=sys.stderr)
    return 0 if hits else 1


def cmd_get(args: argparse.Namespace) -> int:
    from .core.pacs import locate_series, retrieve

    prof = _profile(args.server)
    method = args.method or ("wado" if prof.dicomweb_url else "c-get")
    query = "dicomweb" if method == "wado" else "dimse"
    study = args.study or locate_series(prof, args.series_uid, query).study_uid
    progress, close = _progress(args, "inst", "retrieving")
    try:
        r = retrieve(prof, study, args.series_uid, method=method, cache=args.cache,
                     workers=args.workers, progress=progress)
    finally:
        close()
    if not args.quiet:
        print(f"{r.expected} instances ({r.fetched} fetched, {r.reused} already cached) "
              f"by {method}", file=sys.stderr)
    print(r.folder)
    return 0


PICTURES = (".png", ".jpg", ".jpeg")


def _captures(args: argparse.Namespace, folder: str) -> tuple[list[str], dict[str, str]]:
    """``args.paths`` with every picture (PNG/JPEG) replaced by a secondary capture written
    into ``folder`` (one new series in the study of ``--reference``); returns (paths, capture
    path -> picture path)."""
    import os

    from .core.errors import DicomToolsError

    pictures = [p for p in args.paths if os.path.isfile(p) and p.lower().endswith(PICTURES)]
    if not pictures:
        return list(args.paths), {}
    if not args.reference:
        raise DicomToolsError(pictures[0], "a picture is sent as a secondary capture in the "
                                           "study of a DICOM image: give --reference (a DICOM "
                                           "file or folder of that study)")
    from pydicom.uid import generate_uid

    from .core.sc import read_png, write_secondary_capture

    series_uid, made = generate_uid(), {}
    for i, pic in enumerate(pictures, 1):
        out = write_secondary_capture(
            read_png(pic), args.reference, os.path.join(folder, f"SC{i:05d}.dcm"),
            description=args.description, series_uid=series_uid, instance_number=i,
            derivation=f"picture {os.path.basename(pic)}")
        made[out] = pic
    return [p for p in args.paths if p not in pictures] + list(made), made


def cmd_send(args: argparse.Namespace) -> int:
    import tempfile

    from .cli import printable
    from .core.pacs import send

    prof = _profile(args.server)
    progress, close = _progress(args, "inst", "sending")
    with tempfile.TemporaryDirectory(prefix="dicomtools-send-") as tmp:
        paths, made = _captures(args, tmp)
        try:
            r = send(prof, paths, method=args.method, progress=progress)
        finally:
            close()
    r.failed = [(made.get(p, p), why) for p, why in r.failed]  # name the user's pictures
    r.skipped = [(made.get(p, p), why) for p, why in r.skipped]
    for path, why in r.failed:
        print(printable(f"dicomtools: {path}: not stored: {why}"), file=sys.stderr)
    if not args.quiet:
        for path, why in r.skipped:
            print(printable(f"dicomtools: {path}: skipped: {why}"), file=sys.stderr)
        print(f"{len(r.sent)} sent, {len(r.failed)} failed, {len(r.skipped)} skipped",
              file=sys.stderr)
    if r.failed:
        return 3
    return 0 if r.sent else 1


def add_subcommands(sub: SubParsers) -> None:
    """Add this module's subcommands to the ``dicomtools`` parser's subparsers."""
    pacs = sub.add_parser("pacs", help="query, retrieve and send with a PACS (DIMSE, DICOMweb)",
                          description="Talk to a PACS or DICOMweb archive through a named "
                                      "server profile. Errors are one line naming the "
                                      "server and the reason.")
    ps = pacs.add_subparsers(dest="pacs_command", required=True, metavar="COMMAND")
    _add_profile_commands(ps)
    _add_query_commands(ps)
    _add_transfer_commands(ps)


def _common(p: argparse.ArgumentParser, server: bool = True) -> argparse.ArgumentParser:
    """The options every ``pacs`` subcommand has (and the server profile's name)."""
    if server:
        p.add_argument("server", help="server profile name (see `dicomtools pacs list`)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    return p


def _add_profile_commands(ps: SubParsers) -> None:
    """``pacs add``, ``list`` and ``remove``: the server profiles."""
    p = _common(ps.add_parser("add", help="add a server profile"), server=False)
    p.add_argument("name")
    p.add_argument("--url", help="DICOMweb root, e.g. https://pacs.example/dicom-web")
    p.add_argument("--host", help="DIMSE host")
    p.add_argument("--port", type=int, help="DIMSE port")
    p.add_argument("--aet", default="ANY-SCP", help="the server's AE title")
    p.add_argument("--calling-aet", default="DICOMTOOLS", help="our AE title")
    p.add_argument("--move-port", type=int,
                   help="port of our storage SCP for C-MOVE (as the server knows it)")
    p.add_argument("--user", help="HTTP basic user (DICOMweb)")
    p.add_argument("--password-env", metavar="VAR",
                   help="environment variable holding the password (nothing stored)")
    p.add_argument("--ask-password", action="store_true",
                   help="prompt for the password and store it (file mode 0600)")
    p.add_argument("--token-env", metavar="VAR",
                   help="environment variable holding a bearer token (nothing stored)")
    p.add_argument("--ask-token", action="store_true",
                   help="prompt for a bearer token and store it (file mode 0600)")
    p.add_argument("--ca-bundle", help="PEM CA certificates verifying the server (HTTPS, TLS)")
    p.add_argument("--tls", action="store_true", help="DIMSE over TLS")
    p.add_argument("--tls-cert", metavar="PEM",
                   help="our client certificate, for servers that require one (mutual TLS)")
    p.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    p.add_argument("--force", action="store_true", help="replace a profile of that name")
    p.set_defaults(func=cmd_add)

    p = ps.add_parser("list", help="list server profiles (secrets hidden)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = ps.add_parser("remove", help="delete a server profile")
    p.add_argument("name")
    p.set_defaults(func=cmd_remove)


def _add_query_commands(ps: SubParsers) -> None:
    """``pacs echo`` and ``find``."""
    from .core.pacs import PROTOCOLS

    p = _common(ps.add_parser("echo", help="check the server answers (C-ECHO / QIDO-RS)"))
    p.add_argument("--protocol", choices=PROTOCOLS, help="default: every one the profile has")
    p.set_defaults(func=cmd_echo)

    p = _common(ps.add_parser("find", help="search studies or series",
                             epilog="exit status: 0 found, 1 nothing found or an error"))
    p.add_argument("--level", choices=["study", "series"], default="study")
    p.add_argument("--protocol", choices=PROTOCOLS,
                   help="QIDO-RS or C-FIND (default: DICOMweb when the profile has a URL)")
    p.add_argument("--patient-id", help="wildcards * and ? allowed")
    p.add_argument("--patient-name", help="e.g. 'Doe^J*'")
    p.add_argument("--date", help="YYYYMMDD, YYYYMMDD-YYYYMMDD or YYYY-MM-DD..YYYY-MM-DD")
    p.add_argument("--modality", help="CT, MR, ...")
    p.add_argument("--description", help="study (or series) description")
    p.add_argument("--study", metavar="STUDY_UID", help="only this study")
    p.add_argument("--limit", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_find)


def _add_transfer_commands(ps: SubParsers) -> None:
    """``pacs get`` and ``send``."""
    from .core.pacs import METHODS, SEND_METHODS

    p = _common(ps.add_parser(
        "get", help="retrieve a series into the local cache; prints its folder",
        epilog="The cache keeps complete, verified instances only: an interrupted get "
               "resumes where it stopped. exit status: 0 complete, 1 an error."))
    p.add_argument("series_uid", metavar="SERIES_UID")
    p.add_argument("--study", metavar="STUDY_UID", help="its study (default: asked)")
    p.add_argument("--method", choices=METHODS,
                   help="default: wado when the profile has a DICOMweb URL, else c-get")
    p.add_argument("--cache", help="cache folder (default: the user cache, or "
                                   "$DICOMTOOLS_PACS_CACHE)")
    p.add_argument("--workers", type=int, default=4, help="concurrent WADO-RS requests")
    p.set_defaults(func=cmd_get)

    p = _common(ps.add_parser(
        "send", help="upload DICOM files or folders (pictures as secondary captures)",
        epilog="exit status: 0 all stored; 3 some refused (listed on stderr); 1 nothing "
               "sent or an error."))
    p.add_argument("paths", nargs="+",
                   help="DICOM files, folders or .zip; PNG/JPEG pictures are sent as "
                        "secondary captures (needs --reference)")
    p.add_argument("--method", choices=SEND_METHODS,
                   help="default: stow when the profile has a DICOMweb URL, else c-store")
    p.add_argument("--reference", metavar="DICOM",
                   help="a DICOM file or folder of the study the pictures belong to: the "
                        "captures are filed under its patient and study, in a new series")
    p.add_argument("--description", default="Secondary capture",
                   help="series description of the captures (default: %(default)s)")
    p.set_defaults(func=cmd_send)
