"""``dicomtools`` subcommands for PACS networking: DIMSE and DICOMweb (issue 16)."""

from __future__ import annotations


def add_subcommands(sub) -> None:
    """Add this module's subcommands to the ``dicomtools`` parser's subparsers."""
