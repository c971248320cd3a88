"""`commcal export`: the plan in other shapes. Kept tiny: each command parses its options and
calls the library (`commcal.export_ics`, ...); cli.py registers the group."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

export_app = typer.Typer(no_args_is_help=True)


@export_app.callback()
def export_group() -> None:
    """Export the plan for other tools: an iCalendar feed to subscribe to.

    Example: commcal export ics --days 365 -o plan.ics
    """


@export_app.command("ics")
def export_ics(
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", metavar="FILE", help="Write here (default: stdout)."),
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(min=1, max=3660, metavar="N", help="How many days ahead (default 365)."),
    ] = None,
    start: Annotated[
        str | None, typer.Option("--from", metavar="DATE", help="Start date (project zone).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", metavar="DATE", help="End date, inclusive.")
    ] = None,
    calendar: Annotated[
        list[str] | None, typer.Option(metavar="NAME", help="Only this calendar (repeatable).")
    ] = None,
    channel: Annotated[
        list[str] | None, typer.Option(metavar="NAME", help="Only this channel (repeatable).")
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(metavar="INSTANT", help="Pretend it is this instant (ISO 8601, UTC)."),
    ] = None,
) -> None:
    """Write the plan as an iCalendar (.ics) feed: repeating items as one entry with a
    recurrence rule, stable UIDs so a subscribed calendar updates instead of duplicating.

    Example: commcal export ics --now 2026-12-01T00:00:00Z --days 90 -o plan.ics
    """
    import sys

    from commcal import cli, window
    from commcal.deliveries import Filters
    from commcal.export_ics import export_ics as build

    project = cli._load()
    cli._stop_on_errors(project)
    cli._check_filters(project, calendar=calendar, channel=channel)
    span = cli._typed(
        lambda: window.window(
            cli._now(now),
            project.config.timezone,
            days=days if days is not None or end else 365,
            start=start,
            end=end,
        )
    )
    data = build(project, span.start, span.end, Filters(calendar or (), channel or ()))
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise cli.fail(f"cannot write {output}: {exc.strerror}") from None
    typer.echo(f"wrote {output}", err=True)
