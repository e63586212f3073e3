"""``dicomtools`` subcommands for batch work over many inputs on Dask distributed (issue 17)."""

from __future__ import annotations


def add_subcommands(sub) -> None:
    """Add this module's subcommands to the ``dicomtools`` parser's subparsers."""
