"""The command line: arguments -> library calls -> views. No logic lives here.

Heavy modules (the project loader, Jinja, rich tables, requests) are imported inside commands so
`commcal --version` and a cron `commcal publish` with nothing due start fast.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from commcal import __version__, window
from commcal.changes_cli import changes_app
from commcal.export_cli import export_app
from commcal.helptext import ReadableGroup
from commcal.import_cli import import_app
from commcal.inbox_cli import inbox_app
from commcal.kb_cli import kb_app
from commcal.options import Format, StateOption
from commcal.pull_cli import pull as pull_command
from commcal.report_cli import report as report_command

if TYPE_CHECKING:
    from commcal.project import Project

app = typer.Typer(
    name="commcal",
    help="Publish a content calendar kept as YAML in git: on time, exactly once.\n\n"
    "Example: commcal plan --next-week",
    no_args_is_help=True,
    cls=ReadableGroup,  # help without Python type names (commcal/helptext.py)
    context_settings={"help_option_names": ["-h", "--help"]},  # every command inherits it
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])


class LongFormat(StrEnum):
    """The formats of commands whose output can be long: Format's, and JSON lines."""

    table = "table"
    json = "json"
    jsonl = "jsonl"
    markdown = "markdown"


# Formats that write one JSON document (or JSON lines) on stdout, also when a command stops.
MACHINE = ("json", "jsonl")


class State:
    project_dir: str | None = None
    # The cron index was asked before typer started (commcal.entry) and said: a full run.
    quiet_checked: bool = False


STATE = State()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"commcal {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    project: Annotated[
        str | None,
        typer.Option(
            "-C",
            "--project",
            help="Project folder (default: nearest commcal.yaml above here; env COMMCAL_PROJECT).",
            metavar="DIR",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Publish a content calendar kept as YAML in git: on time, exactly once."""
    STATE.project_dir = project


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"commcal: {message}", err=True)
    return typer.Exit(code)


def one_of(flag: str, value: str, choices: Sequence[str], what: str) -> str:
    """`value` if it is one of `choices`, else exit 2 naming the closest (did you mean)."""
    from commcal.calendar.fields import did_you_mean

    if value not in choices:
        raise fail(f"{flag} {value!r}: no such {what}; " + did_you_mean(value, choices))
    return value


def _now(value: str | None) -> datetime:
    if value is None:
        from datetime import UTC

        return datetime.now(UTC)
    return _typed(lambda: window.instant(value, "--now"))


T = TypeVar("T")


def _typed(read: Callable[[], T]) -> T:
    """A value read from what was typed; a mistake ends the command with exit 2."""
    from commcal.errors import CommcalError

    try:
        return read()
    except CommcalError as exc:
        raise fail(str(exc), exc.exit_code) from None


# Writes the command's JSON object for a run stopped by these problems (`--format json` keeps
# stdout one JSON document whatever happens: docs/json.md).
Stopped = Callable[[list[Any]], None]


def _load(fmt: str = Format.table, stopped: Stopped | None = None) -> Project:
    from commcal.config import find_project
    from commcal.errors import CommcalError, Pos, Problem
    from commcal.project import load_project

    try:
        root = find_project(explicit=STATE.project_dir)
        return load_project(root)
    except CommcalError as exc:
        if fmt in MACHINE and stopped is not None:
            stopped([Problem(Pos("commcal.yaml"), str(exc))])
        raise fail(str(exc), exc.exit_code) from None


def _print_problems(problems: list[Any]) -> None:
    for problem in problems:
        typer.echo(str(problem), err=True)


def _stop_on_errors(
    project: Project, fmt: str = Format.table, stopped: Stopped | None = None
) -> None:
    """Configuration errors stop with 2, calendar errors with 1; all are printed first."""
    if project.errors:
        _print_problems(project.problems)
        count = len(project.errors)
        typer.echo(f"{count} problem{'s' if count != 1 else ''} found", err=True)
        if fmt in MACHINE and stopped is not None:
            stopped(project.problems)
        raise typer.Exit(2 if project.config_errors else 1)


def _check_filters(
    project: Project,
    recorded: Callable[[str, str], bool] | None = None,
    flags: dict[str, str] | None = None,
    **given: list[str] | None,
) -> None:
    """A mistyped --channel or --item must not read as 'nothing planned' (exit 2, with the
    closest name). `recorded(option, value)`: a value the ledger knows, though the project
    no longer does (a removed item), is accepted too."""
    from commcal.calendar.fields import did_you_mean
    from commcal.calendar.model import KINDS

    known = {
        "calendar": {c.name for c in project.calendars},
        "channel": set(project.config.channels),
        "kind": set(KINDS),
        "item": {i.id for c in project.calendars for i in c.items}
        | {f"{c.name}/{i.id}" for c in project.calendars for i in c.items},
    }
    for option, values in given.items():
        for value in values or []:
            if value not in known[option] and not (recorded and recorded(option, value)):
                flag = (flags or {}).get(option, f"--{option}")
                raise fail(
                    f"{flag} {value!r}: no such {option}; "
                    + did_you_mean(value, sorted(known[option]))
                )


def _close(project: Project, item: str) -> str:
    """`; did you mean 'x'?` for a mistyped item id, or nothing when no id is close."""
    import difflib

    ids = {i.id for c in project.calendars for i in c.items}
    ids |= {f"{c.name}/{i.id}" for c in project.calendars for i in c.items}
    close = difflib.get_close_matches(item, sorted(ids), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


FormatOption = Annotated[
    Format,
    typer.Option(
        "--format", "-f", metavar="FORMAT", help=f"Output: {', '.join(f.value for f in Format)}."
    ),
]
LongFormatOption = Annotated[
    LongFormat,
    typer.Option(
        "--format",
        "-f",
        metavar="FORMAT",
        help=f"Output: {', '.join(f.value for f in LongFormat)}; jsonl: one JSON object per "
        "line, a summary line last, for logs (docs/json.md).",
    ),
]
NowOption = Annotated[
    str | None,
    typer.Option(
        "--now",
        metavar="INSTANT",
        help="Pretend it is this instant (ISO 8601, UTC unless an offset is given). Leases "
        "and retry times are measured from it, so runs pinned to one instant never see a lease "
        "run out.",
    ),
]
NAME = "NAME"


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder for the new project.")] = Path("."),
    force: Annotated[
        bool, typer.Option("--force", help="Write files even if the folder is not empty.")
    ] = False,
    timezone: Annotated[
        str | None,
        typer.Option(
            metavar="ZONE",
            help="The project's IANA zone (default: this machine's, from TZ or its settings).",
        ),
    ] = None,
) -> None:
    """Create a new project with a calendar, a template and a console channel.

    Example: commcal init my-calendar && cd my-calendar && commcal plan
    """
    import os

    from commcal.errors import CommcalError
    from commcal.scaffold import choose_zone, scaffold

    try:
        chosen = choose_zone(timezone, os.environ)
        written = scaffold(directory, force=force, timezone=chosen.name)
    except CommcalError as exc:
        raise fail(str(exc), exc.exit_code) from None
    for path in written:
        typer.echo(f"created {path}")
    typer.echo(f"timezone: {chosen.name} (from {chosen.source})")
    if chosen.note:
        typer.echo(f"note: {chosen.note}", err=True)
    typer.echo(f"next: cd {directory} && commcal plan")


@app.command()
def validate(
    days: Annotated[
        int,
        typer.Option(
            min=1, max=3660, metavar="N", help="Render and check deliveries this many days ahead."
        ),
    ] = 30,
    now: NowOption = None,
    format: LongFormatOption = LongFormat.table,
    lint: Annotated[
        bool, typer.Option(help="Check cadence (lint: in commcal.yaml) in the window too.")
    ] = True,
) -> None:
    """Check config, calendars and templates; render and check every delivery in the window,
    and lint its cadence (spacing, quiet and staffed hours, rate limits ...).

    Exit 0 when all is well, 1 when calendars or messages have problems, 2 when commcal.yaml does.

    Example: commcal validate --days 60
    """
    from commcal.validate import validate as check_project
    from commcal.views import problems as view

    project = _load(format, lambda found: view.show(found, format.value, checked=0, calendars=0))
    start = _now(now)
    results = None
    if lint and not project.config_errors:
        from commcal.report_cli import lint_results

        results = lint_results(project)  # slow_slot: how past posts did, if any were pulled
    span = window.Span(start, start + timedelta(days=days))
    result = check_project(project, span, lint=lint, results=results)
    view.show(result.problems, format.value, checked=result.checked, calendars=result.calendars)
    if result.exit_code:
        raise typer.Exit(result.exit_code)


@app.command()
def plan(
    days: Annotated[
        int | None,
        typer.Option(min=1, max=3660, metavar="N", help="How many days ahead (default 7)."),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--from", metavar="DATE", help="Start date (project zone)."),
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", metavar="DATE", help="End date, inclusive.")
    ] = None,
    next_week: Annotated[
        bool, typer.Option("--next-week", help="Monday to Sunday of next week.")
    ] = False,
    calendar: Annotated[
        list[str] | None,
        typer.Option(metavar=NAME, help="Only this calendar (repeatable)."),
    ] = None,
    channel: Annotated[
        list[str] | None, typer.Option(metavar=NAME, help="Only this channel (repeatable).")
    ] = None,
    kind: Annotated[
        list[str] | None, typer.Option(metavar="KIND", help="Only this kind (repeatable).")
    ] = None,
    item: Annotated[
        list[str] | None, typer.Option(metavar="ID", help="Only this item id (repeatable).")
    ] = None,
    with_status: Annotated[
        bool,
        typer.Option(
            "--with-status",
            help="Also show what the ledger recorded: sent (with its URL), failed, unknown, "
            "or next. The window starts at midnight today unless --from says otherwise. "
            "Reads the ledger only.",
        ),
    ] = False,
    wide: Annotated[
        bool, typer.Option("--wide", help="Every column, however narrow the terminal.")
    ] = False,
    now: NowOption = None,
    state: StateOption = None,
    format: LongFormatOption = LongFormat.table,
    diff: Annotated[
        str | None,
        typer.Option(
            "--diff",
            metavar="BASE",
            help="Compare with the plan of git revision BASE (e.g. origin/main): deliveries "
            "added, removed, moved or changed. The working tree is never touched.",
        ),
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            metavar="KINDS",
            help="With --diff: exit 1 on these changes, comma-separated: added, removed, "
            "moved, changed, over-limit, lint.",
        ),
    ] = None,
) -> None:
    """Show what will go out: each delivery with its time, channel, text and length check.
    With --diff BASE: what the working tree changes in that plan, for a review.

    With --with-status, what already went out today and what is next, in one list.

    Example: commcal plan --next-week --channel mastodon --format markdown

    Example: commcal plan --with-status --days 2

    Example: commcal plan --days 365 --format jsonl
    """
    from commcal import plan as planning
    from commcal.views import plan as view

    def stopped(problems: list[Any]) -> None:
        view.show_stopped(problems, format.value)

    project = _load(format, stopped)
    _stop_on_errors(project, format, stopped)
    _check_filters(project, calendar=calendar, channel=channel, kind=kind, item=item)
    when = _now(now)
    if with_status and start is None and not next_week:  # "what did we post today?"
        from commcal.timeutil import zone

        start = f"{when.astimezone(zone(project.config.timezone)):%Y-%m-%d}"
    span = _typed(
        lambda: window.window(
            when, project.config.timezone, days=days, start=start, end=end, next_week=next_week
        )
    )
    first, last = span.start, span.end
    filters = planning.Filters(calendar or (), channel or (), kind or (), item or ())
    if diff is not None or fail_on:
        _plan_diff(project, diff, fail_on, span, filters, format)
        return
    if format in MACHINE and not with_status:  # written as planned: memory stays flat
        streamed = planning.iter_plan(project, first, last, filters)
        if _typed(lambda: view.stream(streamed, format.value, first, last)):
            raise typer.Exit(1)
        return
    planned = planning.plan(project, first, last, filters)
    rows = None
    if with_status:
        from commcal.errors import CommcalError
        from commcal.queue import missing_note, read_queue

        try:
            rows = read_queue(
                project,
                first,
                last,
                now=when,
                state=state,
                filters=filters,
                planned=planned,
                on_missing=lambda why: typer.echo(missing_note(why), err=True),
            )
        except CommcalError as exc:  # a ledger that cannot be read
            if format in MACHINE:
                from commcal.errors import Pos, Problem

                view.show_stopped([Problem(Pos(""), str(exc))], format.value)
            raise fail(str(exc), exc.exit_code) from None
    view.show(planned, format.value, first, last, project.config.timezone, rows=rows, wide=wide)
    if not all(p.ok for p in planned):
        raise typer.Exit(1)


def _plan_diff(
    project: Project,
    base: str | None,
    fail_on: str | None,
    span: window.Span,
    filters: Any,
    format: LongFormat,
) -> None:
    from commcal import plandiff
    from commcal.errors import CommcalError, Pos, Problem
    from commcal.views import plandiff as view

    if base is None:
        raise fail("--fail-on needs --diff BASE (the revision to compare with)")
    if format is LongFormat.jsonl:
        raise fail("--diff writes table, json or markdown; use --format json for scripts")
    try:
        kinds = plandiff.fail_kinds(fail_on)
        result = plandiff.diff_against(project, base, span.start, span.end, filters)
    except CommcalError as exc:
        if format is LongFormat.json:
            view.show_stopped(base, [Problem(Pos(""), str(exc))])
        raise fail(str(exc), exc.exit_code) from None
    if result.base_problems:
        count = len(result.base_problems)
        typer.echo(f"note: {base} has {count} problem{'s' if count != 1 else ''}", err=True)
    failed = result.failures(kinds)
    view.show(result, format.value, project.config.timezone, failed)
    if failed:
        raise typer.Exit(1)


@app.command()
def preview(
    item: Annotated[str, typer.Argument(help="Item id (or calendar/id).")],
    at: Annotated[
        str | None,
        typer.Option(metavar="WHEN", help="Show the occurrence at or after this time."),
    ] = None,
    channel: Annotated[str | None, typer.Option(metavar=NAME, help="Only this channel.")] = None,
    member: Annotated[
        str | None,
        typer.Option(metavar="EMAIL", help="Show the message this audience member receives."),
    ] = None,
    now: NowOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Show the full rendered message(s) of an item's next occurrence.

    Example: commcal preview monthly-letter --member eleni@example.gr
    """
    from commcal import plan as planning
    from commcal.views import plan as view

    project = _load(format, view.show_preview_stopped)
    _stop_on_errors(project, format, view.show_preview_stopped)
    _check_filters(project, channel=[channel] if channel else None)
    start = (
        _typed(lambda: window.local_instant(at, "--at", project.config.timezone))
        if at
        else _now(now)
    )
    found = planning.find_item(project, item)
    if found is None:
        raise fail(f"no item {item!r} (see `commcal plan` for item ids){_close(project, item)}", 1)
    if member and found.audience is None:
        raise fail(f"item {item!r} has no audience; --member applies to audience items", 2)
    planned = planning.next_occurrence(project, found, start, channel, member=member)
    if member and not any(p.delivery.recipient for p in planned):
        raise fail(
            f"{member} is not in audience {found.audience!r} (or the filter leaves them out)", 1
        )
    if not planned:
        raise fail(
            f"item {item!r} has no occurrence after {start:%Y-%m-%d %H:%M} UTC"
            + (f" on channel {channel!r}" if channel else ""),
            1,
        )
    view.show_messages(planned, format.value)
    if not all(p.ok for p in planned):
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


def _ledger(
    project: Project, state: str | None, *, create: bool = True, read_only: bool = False
) -> Any:
    """The project's ledger. Commands that only read it, or change what it holds, pass
    `create=False` / `read_only=True`: a mistyped --state is an error naming the path, never a
    new, empty ledger."""
    from commcal.errors import CommcalError
    from commcal.ledger import open_ledger

    try:
        return open_ledger(
            project.config.ledger_url(state),
            project_dir=project.root,
            create=create,
            read_only=read_only,
        )
    except CommcalError as exc:
        raise fail(str(exc), exc.exit_code) from None


@contextlib.contextmanager
def reading_ledger(project: Project, state: str | None) -> Iterator[Any]:
    """The project's ledger, read-only; None when it does not exist yet and --state named none
    (nothing recorded yet: an empty view). A --state naming no ledger is an error, exit 2."""
    from commcal.errors import CommcalError
    from commcal.ledger import LedgerMissing, open_ledger

    try:
        url = project.config.ledger_url(state)
        ledger = open_ledger(url, project_dir=project.root, read_only=True)
    except LedgerMissing as exc:
        if state is not None:
            raise fail(str(exc), exc.exit_code) from None
        yield None
        return
    except CommcalError as exc:
        raise fail(str(exc), exc.exit_code) from None
    with ledger:
        yield ledger


@app.command()
def publish(
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Say what a real publish would do now, delivery by delivery (already sent, "
            "would skip, would expire, would send, ...); send and write nothing.",
        ),
    ] = False,
    catch_up: Annotated[
        bool,
        typer.Option(
            "--catch-up",
            help="Also send what came due (within publish.max_late) before this ledger took "
            "over from an earlier one, which may have sent it already.",
        ),
    ] = False,
    new_ledger: Annotated[
        bool,
        typer.Option(
            "--new-ledger",
            help="Confirm that this new, empty ledger replaces the one the project last "
            "published to; what came due before now is recorded skipped.",
        ),
    ] = False,
    only: Annotated[list[str] | None, typer.Option(help="Only this item id (repeatable).")] = None,
    channel: Annotated[
        list[str] | None, typer.Option(help="Only this channel (repeatable).")
    ] = None,
    everything: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Also list the deliveries finished in earlier runs (`already`), which "
            "--format jsonl and the progress lines leave out (JSON always lists them).",
        ),
    ] = False,
    now: NowOption = None,
    state: StateOption = None,
    format: LongFormatOption = LongFormat.table,
) -> None:
    """Send every delivery that is due, exactly once, and record what happened.

    Run it from cron every minute (`--format jsonl >> publish.jsonl` for a log of one line per
    delivery handled and a summary line). Exit 0 when all went out, 1 when any delivery failed
    or is unknown, 2 on configuration errors.

    Example: commcal publish --dry-run --now 2026-12-07T09:00:00Z
    """
    import signal
    import threading

    from commcal import cron_index
    from commcal import publish as publishing
    from commcal.errors import CommcalError
    from commcal.views import publish as view

    progress = view.Progress(format.value, dry_run=dry_run, everything=everything)
    stopped = progress.stopped
    at = progress.at = _now(now)
    inputs = None
    # Not with --format json: its document lists every `already` delivery, which only a full
    # run knows (docs/json.md).
    shortcut = format is not LongFormat.json
    if shortcut and not (dry_run or catch_up or new_ledger or only or channel or everything):
        # The cron minute: with nothing due, an unchanged project is not even loaded.
        from commcal.root import find_project

        try:
            root = find_project(explicit=STATE.project_dir)
        except CommcalError:
            pass  # _load says so
        else:
            if not STATE.quiet_checked:
                finished = cron_index.quiet_minute(root, at, state=state)
                if finished is not None:
                    already = {publishing.OutcomeState.ALREADY: finished} if finished else {}
                    progress.finish(publishing.Report(unlisted=already))
                    return
            inputs = cron_index.take_inputs(root)
    project = _load(format, stopped)
    blocker = project.publish_blocker()
    if project.errors:
        # Errors in calendars stop only their items (or files): the rest is published.
        _print_problems(project.problems)
        if blocker is None:
            count = len(project.errors)
            typer.echo(
                f"{count} problem{'s' if count != 1 else ''}: the items and files they are in "
                "are not published; everything else is",
                err=True,
            )
    if blocker is not None:
        stopped(project.problems)
        raise fail(blocker, 2)
    _check_filters(project, flags={"item": "--only"}, item=only, channel=channel)
    if format in MACHINE:
        _console_to_stderr(project)
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    with progress:  # an error that ends the run still ends the JSON output properly
        try:
            report = publishing.publish(
                project,
                now=at,
                state=state,
                dry_run=dry_run,
                filters=_filters(channel, only),
                on_outcome=progress.outcome,
                stop=stop,
                catch_up=catch_up,
                new_ledger=new_ledger,
                settled=cron_index.settled_marks(project.root, inputs),
                # Only JSON lists every delivery: the others keep no outcome per member.
                keep_members=format is LongFormat.json,
            )
        except CommcalError as exc:  # e.g. the ledger cannot be opened
            from commcal.errors import Pos, Problem

            stopped([*project.problems, Problem(Pos(""), str(exc))])
            raise fail(str(exc), exc.exit_code) from None
        if inputs is not None:
            cron_index.save(project.root, inputs, project, report, at)
        progress.finish(report)
    _print_problems([p for p in report.problems if p not in project.errors])
    if not report.ok:
        raise typer.Exit(1)


def _filters(channel: list[str] | None, only: list[str] | None) -> Any:
    from commcal.plan import Filters

    return Filters(channels=channel or (), items=only or ())


def _console_to_stderr(project: Project) -> None:
    """Keep standard output one JSON document: console channels print to standard error."""
    from commcal.channels.console import ConsoleChannel

    for adapter in project.channels.values():
        if isinstance(adapter, ConsoleChannel):
            adapter.to_stderr = True


def _states(incomplete: str) -> list[str]:
    """Shell completion of --only-state: the states a delivery can be in."""
    from commcal.ledger import State

    return [s.value for s in State if s.value.startswith(incomplete)]


@app.command()
def status(
    state_filter: Annotated[
        list[str] | None,
        typer.Option(
            "--only-state",
            metavar="STATE",
            help="Only deliveries in this state (repeatable).",
            autocompletion=_states,
        ),
    ] = None,
    calendar: Annotated[str | None, typer.Option(metavar=NAME, help="Only this calendar.")] = None,
    channel: Annotated[str | None, typer.Option(metavar=NAME, help="Only this channel.")] = None,
    item: Annotated[str | None, typer.Option(metavar="ID", help="Only this item id.")] = None,
    limit: Annotated[int, typer.Option(metavar="N", help="At most this many rows.")] = 50,
    workers: Annotated[
        bool, typer.Option("--workers", help="Show publishing processes and what each holds.")
    ] = False,
    utc: Annotated[
        bool, typer.Option("--utc", help="Times in UTC (default: the project's time zone).")
    ] = False,
    delivery: Annotated[
        str | None,
        typer.Argument(metavar="ID", help="One delivery id (or a prefix): show its history."),
    ] = None,
    now: NowOption = None,
    state: StateOption = None,
    format: LongFormatOption = LongFormat.table,
) -> None:
    """Show recent deliveries and their states, one delivery's history, or the workers.

    Example: commcal status --only-state failed --only-state unknown
    """
    from commcal.ledger import State
    from commcal.views import status as view

    project = _load()
    tz_name = None if utc else project.config.timezone
    with _ledger(project, state, read_only=True) as ledger:

        def recorded(option: str, value: str) -> bool:
            return bool(sum(ledger.counts(**{option: value}).values()) > 0)

        _check_filters(
            project,
            recorded,
            calendar=[calendar] if calendar else None,
            channel=[channel] if channel else None,
            item=[item] if item else None,
        )
        if workers:
            import socket

            from commcal.ledger.base import live_workers

            when = _now(now)
            alive = live_workers(
                ledger.workers(when), when, project.config.publish.lease, socket.gethostname()
            )
            view.show_workers(alive, format.value, tz_name)
            return
        if delivery:
            from commcal.publish.chain import chain_of
            from commcal.threads import PART_SEPARATOR, split_part_id

            record = _one(ledger, delivery)
            thread, part = split_part_id(record.id)
            chain = chain_of(ledger.find(thread + PART_SEPARATOR)) if part else []
            changes = ledger.post_changes([record.id]).get(record.id, [])
            view.show_history(
                record,
                ledger.attempts(record.id),
                format.value,
                tz_name,
                changes,
                chain=chain,
            )
            return
        try:
            states = [State(s) for s in state_filter or []]
        except ValueError:
            raise fail(
                f"--only-state must be one of: {', '.join(s.value for s in State)}"
            ) from None
        records = ledger.records(
            states=states or None, calendar=calendar, item=item, channel=channel, limit=limit
        )
        counts = ledger.counts(calendar=calendar, item=item, channel=channel)
        changes = ledger.post_changes(r.id for r in records if r.state is State.SENT)
        view.show_records(
            records, counts, format.value, tz_name, changes, parts=_thread_sizes(ledger, records)
        )


def _thread_sizes(ledger: Any, records: Any) -> dict[str, int]:
    """How many parts the ledger holds of each thread among `records` (status's "part k/n")."""
    from commcal.threads import PART_SEPARATOR, split_part_id

    threads = {split_part_id(r.id)[0] for r in records if split_part_id(r.id)[1]}
    return {
        thread: max(split_part_id(r.id)[1] for r in ledger.find(thread + PART_SEPARATOR))
        for thread in threads
    }


def _one(ledger: Any, prefix: str) -> Any:
    from commcal.deliveries import MIN_ID_PREFIX

    if len(prefix) < MIN_ID_PREFIX:
        raise fail(f"give at least {MIN_ID_PREFIX} characters of the delivery id")
    found = ledger.find(prefix)
    if not found:
        raise fail(f"no delivery {prefix!r} in the ledger (see `commcal status`)", 1)
    exact = [r for r in found if r.id == prefix]  # a thread's part 1 is a prefix of part 10
    if exact:
        return exact[0]
    if len(found) > 1:
        raise fail(f"{prefix!r} matches {len(found)} deliveries; give more characters", 2)
    return found[0]


@app.command()
def retry(
    delivery: Annotated[str | None, typer.Argument(help="Delivery id (or a prefix).")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Retry every failed delivery.")] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Also retry deliveries that may have been delivered already (an interrupted or "
            "timed-out send, or state unknown): the post may appear twice.",
        ),
    ] = False,
    now: NowOption = None,
    state: StateOption = None,
) -> None:
    """Put failed deliveries back in the queue; the next `commcal publish` sends them.

    A delivery whose last send may have arrived is not retried (a repeat could post it twice):
    check the channel and `commcal resolve` it, or pass --force to take that risk.

    Example: commcal retry --failed
    """
    from commcal.ledger import MaybeSent, State

    if not delivery and not failed:
        raise fail("name a delivery id, or pass --failed")
    project = _load()
    when = _now(now)
    refused = 0
    with _ledger(project, state, create=False) as ledger:
        targets = (
            ledger.records(states=[State.FAILED]) if failed else [_one(ledger, delivery or "")]
        )
        done = 0
        for record in targets:
            adapter = project.channels.get(record.channel)
            # A channel that dedupes by our key for good takes a repeat safely.
            safe = adapter is not None and adapter.idempotent and adapter.idempotency_window is None
            try:
                queued = ledger.retry(record.id, when, force=force or safe)
            except MaybeSent:
                refused += 1
                typer.echo(
                    f"commcal: {record.id} {record.calendar}/{record.item} on {record.channel}: "
                    "may have been delivered already (its last send was interrupted or timed "
                    f"out after the request went out), and {record.channel} would not recognise "
                    "a repeat, so a retry could post it twice. Check the channel, then run "
                    f"`commcal resolve {record.id} --sent URL` or `--not-sent`; or "
                    f"`commcal retry {record.id} --force` if you accept that the post may "
                    "appear twice",
                    err=True,
                )
                continue
            if queued:
                done += 1
                risk = " (forced: it may appear twice)" if force else ""
                typer.echo(
                    f"{record.id} {record.calendar}/{record.item} on {record.channel}: "
                    f"queued again{risk}"
                )
            else:
                expected = "failed or unknown" if force else "failed"
                typer.echo(f"{record.id}: is {record.state}, not {expected}; left alone", err=True)
        typer.echo(f"{done} deliver{'y' if done == 1 else 'ies'} queued for the next publish")
        if refused:
            raise typer.Exit(2)
        if not failed and done == 0:
            raise typer.Exit(1)


@app.command()
def resolve(
    delivery: Annotated[str, typer.Argument(help="Delivery id (or a prefix) in state unknown.")],
    sent: Annotated[
        str | None, typer.Option("--sent", help="It did go out: its URL.", metavar="URL")
    ] = None,
    not_sent: Annotated[
        bool,
        typer.Option("--not-sent", help="It did not go out: send it again at the next publish."),
    ] = False,
    now: NowOption = None,
    state: StateOption = None,
) -> None:
    """Settle a delivery whose send may have arrived (state unknown, or failed after a send
    that timed out), after checking the channel.

    Example: commcal resolve 3f9a1c --sent https://mastodon.example/@us/1234
    """
    if (sent is None) == (not not_sent):
        raise fail("give exactly one of --sent URL or --not-sent")
    project = _load()
    with _ledger(project, state, create=False) as ledger:
        record = _one(ledger, delivery)
        if not ledger.resolve(record.id, sent_url=sent, now=_now(now)):
            raise fail(f"{record.id} is {record.state}, not unknown or failed; nothing changed", 1)
        typer.echo(
            f"{record.id}: "
            + ("recorded as sent" if sent else "queued to be sent at the next publish")
        )


channels_app = typer.Typer(no_args_is_help=False, invoke_without_command=True)
app.add_typer(channels_app, name="channels")


@channels_app.callback(invoke_without_command=True)
def channels_list(
    ctx: typer.Context,
    format: FormatOption = Format.table,
) -> None:
    """List configured channels (secrets masked, only whether each is set), or test one.

    Subcommands: `commcal channels test NAME` checks credentials without posting;
    `commcal channels types` lists the installed channel types.

    Example: commcal channels --format json
    """
    if ctx.invoked_subcommand is not None:
        return
    from commcal.views import status as view

    project = _load()
    _print_problems(project.config_errors)
    view.show_channels(project, format.value)


@channels_app.command("test")
def channels_test(
    name: Annotated[str, typer.Argument(help="Channel name from commcal.yaml.")],
) -> None:
    """Check a channel's credentials without posting anything.

    Example: commcal channels test newsletter
    """
    from commcal.channels.base import SendError
    from commcal.errors import CommcalError

    project = _load()
    adapter = project.channels.get(name)
    if adapter is None:
        _print_problems(project.config_errors)
        raise fail(f"no usable channel {name!r} (see `commcal channels`)")
    try:
        result = adapter.verify()
    except (SendError, CommcalError) as exc:
        raise fail(f"{name}: {adapter.redact(str(exc))}", 1) from None
    finally:
        adapter.close()
    typer.echo(f"{name}: ok ({result})")


@channels_app.command("types")
def channels_types() -> None:
    """List the channel types installed (built-in and plugins).

    Example: commcal channels types
    """
    from commcal.channels.registry import channel_class, channel_types

    for type_name in channel_types():
        cls = channel_class(type_name)
        typer.echo(f"{type_name:10} {cls.description}")


class LogFormat(StrEnum):
    human = "human"
    json = "json"


@app.command()
def run(
    state: StateOption = None,
    log_format: Annotated[
        LogFormat,
        typer.Option("--log-format", help="Log lines on stderr: human or JSON lines."),
    ] = LogFormat.human,
) -> None:
    """Keep running and publish each delivery the moment it comes due, exactly once.

    Wakes at each due time, reloads when calendars, templates or commcal.yaml change (or on
    SIGHUP), picks up retries and work abandoned by dead workers, and stops cleanly on SIGTERM.
    Several `commcal run` processes may share one PostgreSQL ledger.

    Example: commcal run --state postgresql://commcal@db/commcal --log-format json
    """
    from commcal.errors import CommcalError
    from commcal.scheduler import Scheduler, stream_log

    project = _load()
    if (blocker := project.publish_blocker()) is not None:
        _print_problems(project.problems)
        raise fail(blocker, 2)
    try:
        code = Scheduler(project.root, state, log=stream_log(log_format.value)).run()
    except CommcalError as exc:
        raise fail(str(exc), exc.exit_code) from None
    raise typer.Exit(code)


@app.command()
def suppress(
    emails: Annotated[
        list[str] | None, typer.Argument(metavar="EMAIL", help="Addresses to stop sending to.")
    ] = None,
    import_file: Annotated[
        Path | None,
        typer.Option(
            "--import",
            metavar="FILE",
            help="A file of addresses, one per line (or a CSV with an email column).",
        ),
    ] = None,
    remove: Annotated[
        bool, typer.Option("--remove", help="Send to these addresses again.")
    ] = False,
    show: Annotated[bool, typer.Option("--list", help="List the suppression list.")] = False,
    state: StateOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Stop (or resume) sending to members: every later delivery honours the list.

    The ledger keeps only a key derived from each address (and a masked hint), never the address.

    Example: commcal suppress eleni@example.gr --import examples/bounces.txt
    """
    from commcal import members as people
    from commcal.errors import CommcalError

    project = _load()
    with _ledger(project, state) as ledger:
        if show:
            from commcal.views import status as view

            view.show_suppressions(ledger.suppressions(), format.value)
            return
        try:
            addresses = people.addresses(emails or [], import_file)
        except CommcalError as exc:
            raise fail(str(exc), exc.exit_code) from None
        if not addresses:
            raise fail("give addresses, --import FILE or --list")
        changed = people.suppress(
            ledger, addresses, remove=remove, source="cli" if emails else "import", now=_now(None)
        )
    verb = "removed from" if remove else "added to"
    typer.echo(f"{changed} of {len(addresses)} addresses {verb} the suppression list")


@app.command("unsubscribe-server")
def unsubscribe_server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (1-65535).")] = 8025,
    state: StateOption = None,
) -> None:
    """Serve the one-click unsubscribe links of newsletters (RFC 8058), recording opt-outs.

    A GET shows a confirmation button and changes nothing (mail scanners follow links); only a
    POST unsubscribes. Put it behind your HTTPS proxy at members.unsubscribe_url.

    Example: commcal unsubscribe-server --host 0.0.0.0 --port 8025
    """
    from commcal import members as people
    from commcal.errors import CommcalError

    if not 1 <= port <= 65535:  # waitress would listen on port % 65536 without a word
        raise fail(f"--port {port}: a port is a number from 1 to 65535, e.g. --port 8025")
    project = _load()
    if project.config_errors:  # a calendar typo must not stop members unsubscribing
        _stop_on_errors(project)
    try:
        app_ = people.unsubscribe_app(project, state)
    except CommcalError as exc:
        raise fail(str(exc), exc.exit_code) from None
    from commcal.unsubscribe import ServerError, UnsubscribeServer

    try:
        server = UnsubscribeServer(app_, host, port)
    except ServerError as exc:
        raise fail(str(exc)) from None
    for address, bound in server.addresses:
        shown = f"[{address}]" if ":" in address else address
        typer.echo(f"serving unsubscribe links on http://{shown}:{bound}/u/<token>", err=True)
    server.run()


app.add_typer(export_app, name="export")

contest_app = typer.Typer(no_args_is_help=True)
app.add_typer(contest_app, name="contest")
app.add_typer(import_app, name="import")  # commcal/import_cli.py
app.command("pull")(pull_command)  # commcal/pull_cli.py
app.add_typer(inbox_app, name="inbox")  # commcal/inbox_cli.py
app.add_typer(kb_app, name="kb")  # commcal/kb_cli.py
app.command("report")(report_command)  # commcal/report_cli.py
app.add_typer(changes_app)  # commcal/changes_cli.py: retract and amend, at the top level


@contest_app.callback()
def contest_group() -> None:
    """Contest tools: draw winners reproducibly.

    Example: commcal contest draw winter-contest --entries examples/entries.csv --seed 2026
    """


@contest_app.command("draw")
def contest_draw(
    item: Annotated[str, typer.Argument(help="The contest item id (or calendar/id).")],
    entries: Annotated[Path, typer.Option(metavar="FILE", help="Entries CSV (one per row).")],
    winners: Annotated[int, typer.Option(min=1, metavar="N", help="How many winners.")] = 1,
    seed: Annotated[
        str,
        typer.Option(
            metavar="SEED",
            help="Published seed: the same seed and entries always give the same winners.",
        ),
    ] = "",
    column: Annotated[
        str | None,
        typer.Option(
            metavar="NAME", help="Identity column (default email, else handle, else the first)."
        ),
    ] = None,
    state: StateOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Draw contest winners reproducibly from an entries CSV, duplicates removed first; the draw
    is recorded in the ledger.

    Example: commcal contest draw winter-contest --entries examples/entries.csv --seed 2026
    """
    from commcal import plan as planning
    from commcal.contest import draw
    from commcal.errors import CommcalError
    from commcal.views import status as view

    if not seed:
        raise fail("--seed is required: publish it before the draw so anyone can check it")
    project = _load()
    found = planning.find_item(project, item)
    if found is None or found.kind != "contest":
        raise fail(f"no contest item {item!r} (see `commcal plan --kind contest`)", 1)
    try:
        result = draw(entries, winners, seed, column=column)
    except CommcalError as exc:
        raise fail(str(exc), exc.exit_code) from None
    with _ledger(project, state) as ledger:
        ledger.record_draw(
            f"{found.calendar}/{found.id}",
            seed=seed,
            entries_sha256=result.entries_sha256,
            entries=result.entries,
            winners=list(result.winner_keys),  # keys: the entries file holds the addresses
            now=_now(None),
        )
    view.show_draw(found.id, result, format.value)


@contest_app.command("winners")
def contest_winners(
    item: Annotated[str, typer.Argument(help="The contest item id (or calendar/id).")],
    entries: Annotated[
        Path, typer.Option(metavar="FILE", help="The entries CSV the draw was made from.")
    ],
    column: Annotated[
        str | None,
        typer.Option(
            metavar="NAME", help="Identity column (default email, else handle, else the first)."
        ),
    ] = None,
    state: StateOption = None,
    format: FormatOption = Format.table,
) -> None:
    """Show the recorded draws of a contest, each winner named from the entries file: the
    ledger keeps only a key per winner, never the address.

    Example: commcal contest winners winter-contest --entries examples/entries.csv
    """
    from commcal import plan as planning
    from commcal.contest import winners_in
    from commcal.errors import CommcalError
    from commcal.views import status as view

    project = _load()
    found = planning.find_item(project, item)
    if found is None or found.kind != "contest":
        raise fail(f"no contest item {item!r} (see `commcal plan --kind contest`)", 1)
    with _ledger(project, state) as ledger:
        draws = ledger.draws(f"{found.calendar}/{found.id}")
    try:
        named = [winners_in(entries, d.winners, column=column) for d in draws]
    except CommcalError as exc:
        raise fail(str(exc), exc.exit_code) from None
    view.show_draws(found.id, draws, named, format.value)


if __name__ == "__main__":
    main()
