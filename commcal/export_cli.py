"""`commcal export ...`: the plan written as files for people and other tools.

A typer group of its own, registered in cli.py; each command imports its library inside.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from commcal.errors import Problem
    from commcal.export_html import Suppressed
    from commcal.project import Project

export_app = typer.Typer(no_args_is_help=True)

# The window, as `plan` takes it (each command says what --days counts from).
FromOption = Annotated[
    str | None, typer.Option("--from", metavar="DATE", help="Start date (project zone).")
]
ToOption = Annotated[str | None, typer.Option("--to", metavar="DATE", help="End date, inclusive.")]


@export_app.callback()
def export_group() -> None:
    """Write the plan as a file: a month view to open in a browser, or an iCalendar feed to
    subscribe to in a calendar app.

    Example: commcal export html --now 2026-12-01T00:00:00Z -o december.html

    Example: commcal export ics --days 365 -o plan.ics
    """


@export_app.command("html")
def export_html(
    output: Annotated[
        str,
        typer.Option(
            "-o", "--output", metavar="FILE", help="Where to write the page ('-': standard output)."
        ),
    ] = "calendar.html",
    days: Annotated[
        int | None,
        typer.Option(min=1, max=3660, metavar="N", help="How many days from --from (or now)."),
    ] = None,
    start: FromOption = None,
    end: ToOption = None,
    locale: Annotated[
        str | None,
        typer.Option(
            metavar="LOCALE",
            help="Language of month and weekday names (CLDR: en, el, sw, ...; default: "
            "locale: in commcal.yaml).",
        ),
    ] = None,
    now: Annotated[
        str | None,
        typer.Option(
            "--now", metavar="INSTANT", help="Pretend it is this instant (ISO 8601, UTC)."
        ),
    ] = None,
    state: Annotated[
        str | None,
        typer.Option(
            "--state",
            metavar="URL",
            help="Ledger to read suppressions (and --with-status) from (default: state: in "
            "commcal.yaml; none yet: no suppressions, nothing sent).",
        ),
    ] = None,
    with_status: Annotated[
        bool,
        typer.Option(
            "--with-status",
            help="Mark each chip with what the ledger recorded: sent (the dialog links to "
            "it), failed, unknown, a retry's time. Reads the ledger only.",
        ),
    ] = False,
) -> None:
    """Write the planned deliveries as one HTML page of month grids that opens offline.

    Without --from, --to or --days: the whole current month (project zone). Each delivery is a
    chip in its day, coloured by channel; click one for every channel's full message, its
    length against the limit, the audience size and the event's .ics. Exit 1 when deliveries
    have problems (the page is written all the same, with them marked).

    Example: commcal export html --now 2026-12-01T00:00:00Z --locale el -o december.html

    Example: commcal export html --with-status -o today.html
    """
    import sys

    from commcal import cli, window
    from commcal.check import plan
    from commcal.errors import CommcalError
    from commcal.export_html import build_page, check_locale, month_window
    from commcal.lint import lint_findings
    from commcal.queue import QueueRow, missing_note, read_queue

    project = cli._load()
    cli._stop_on_errors(project)
    if output != "-":
        _refuse_input(project, Path(output), state)
    when = cli._now(now)
    zone_name = project.config.timezone
    chosen = cli._typed(lambda: check_locale(locale or project.config.locale))
    if start is None and end is None and days is None:
        span = month_window(when, zone_name)
    else:
        span = cli._typed(lambda: window.window(when, zone_name, days=days, start=start, end=end))
    planned = plan(project, span.start, span.end)
    findings: list[Problem] = lint_findings(
        project, span.start, span.end, [p.delivery for p in planned]
    )
    rows: list[QueueRow] | None = None
    if with_status:
        try:
            rows = read_queue(
                project,
                span.start,
                span.end,
                now=when,
                state=state,
                planned=planned,
                on_missing=lambda why: typer.echo(missing_note(why), err=True),
            )
        except CommcalError as exc:  # a ledger that cannot be read
            raise cli.fail(str(exc), exc.exit_code) from None
    with _suppressions(project, state) as suppressed:
        page = build_page(
            project,
            span.start,
            span.end,
            locale=chosen,
            now=when,
            findings=findings,
            suppressed=suppressed,
            planned=planned,
            status=rows,
        )
    if output == "-":
        sys.stdout.write(page.html)
    else:
        try:
            _write_whole(Path(output), page.html)
        except OSError as exc:
            raise cli.fail(f"-o {output}: cannot write the page: {exc.strerror}") from None
        typer.echo(
            f"wrote {output}: {page.deliveries} deliveries in {page.months} "
            f"month{'s' if page.months != 1 else ''}"
            + (f", {page.with_problems} with problems" if page.with_problems else ""),
            err=True,
        )
    if page.with_problems:
        raise typer.Exit(1)


def _write_whole(target: Path, text: str) -> None:
    """Write beside the target, then rename: an interrupted run never leaves half a page."""
    import errno
    import os

    if target.is_dir():  # `-o .` has no name to put a .part file beside
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
    part = target.with_name(f".{target.name}.part")
    try:
        part.write_text(text, encoding="utf-8")
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)


def _refuse_input(project: Project, target: Path, state: str | None = None) -> None:
    """-o naming a file of the project itself (a calendar, commcal.yaml, the ledger) is a
    usage error: the export would replace it."""
    from commcal import cli

    what = project.input_at(target, state)
    if what is not None:
        raise cli.fail(f"-o {target}: that is {what}; write the export somewhere else")


@contextlib.contextmanager
def _suppressions(project: Project, state: str | None) -> Iterator[Suppressed | None]:
    """The ledger's suppression check, read-only. No ledger yet: no suppressions, unless
    --state named one (a mistyped --state is an error, never an empty list)."""
    from commcal import cli

    with cli.reading_ledger(project, state) as ledger:
        yield None if ledger is None else ledger.suppressed


@export_app.command("ics")
def export_ics(
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", metavar="FILE", help="Write here (default, or '-': standard output)."
        ),
    ] = None,
    days: Annotated[
        int | None,
        typer.Option(min=1, max=3660, metavar="N", help="How many days ahead (default 365)."),
    ] = None,
    start: FromOption = None,
    end: ToOption = None,
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
    if output is None or str(output) == "-":  # as for export html: '-' is standard output
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    _refuse_input(project, output)
    try:
        output.write_bytes(data)
    except OSError as exc:
        raise cli.fail(f"cannot write {output}: {exc.strerror}") from None
    typer.echo(f"wrote {output}", err=True)
