"""Command-line option types that several command modules share (cli.py and the commcal.*_cli
modules, which may not import cli.py at import time)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

# The ledger a command reads or writes: commcal.config.Config.ledger_url's order.
StateOption = Annotated[
    str | None,
    typer.Option(
        "--state",
        metavar="URL",
        help="Ledger URL (default: state: in commcal.yaml; env COMMCAL_STATE).",
    ),
]


class Format(StrEnum):
    """The output formats of most commands (`--format`)."""

    table = "table"
    json = "json"
    markdown = "markdown"
