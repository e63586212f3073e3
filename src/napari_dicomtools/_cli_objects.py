"""``dicomtools`` subcommands for DICOM annotation objects: SEG, RTSTRUCT, SR (issue 15)."""

from __future__ import annotations


def add_subcommands(sub) -> None:
    """Add this module's subcommands to the ``dicomtools`` parser's subparsers."""
