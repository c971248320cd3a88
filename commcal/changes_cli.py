"""`commcal retract` and `commcal amend`: take back or correct a post that went out.

Registered in cli.py (`app.add_typer(changes_app)`: the commands sit at the top level); the
work is in `commcal.changes`, imported inside each command.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from commcal.options import StateOption

if TYPE_CHECKING:
    from commcal.ledger import DeliveryRecord, Ledger
    from commcal.project import Project

changes_app = typer.Typer()

T = TypeVar("T")

IdArgument = Annotated[
    str,
    typer.Argument(
        metavar="ID", help="The delivery id as `commcal status` shows it, or a unique prefix."
    ),
]
DryRunOption = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Say what would be deleted; change nothing on the network or the ledger."
    ),
]
YesOption = Annotated[
    bool,
    typer.Option(
        "--yes", "-y", help="Do not ask for confirmation (needed when not run on a terminal)."
    ),
]
NowOption = Annotated[
    str | None,
    typer.Option("--now", metavar="INSTANT", help="Record the change at this instant (ISO 8601)."),
]


@contextmanager
def _delivery(typed: str, state: str | None) -> Iterator[tuple[Project, Ledger, DeliveryRecord]]:
    """The project, its ledger and the delivery `typed` names; every stop is a clean exit."""
    from commcal.changes import find_delivery
    from commcal.cli import _ledger, _load, fail

    project = _load()
    if project.config_errors:
        for problem in project.config_errors:
            typer.echo(str(problem), err=True)
        raise typer.Exit(2)
    with _ledger(project, state, create=False) as ledger:
        record = _run(lambda: find_delivery(ledger, typed), fail)
        yield project, ledger, record


def _run(step: Callable[[], T], fail: Callable[..., typer.Exit]) -> T:
    """A library call; a CommcalError ends the command with its exit code (problems with
    file:line first)."""
    from commcal.errors import CommcalError, ProblemsFound

    try:
        return step()
    except ProblemsFound as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise fail(str(exc), exc.exit_code) from None
    except CommcalError as exc:
        raise fail(str(exc), exc.exit_code) from None


def _confirm(question: str, yes: bool) -> None:
    from commcal.cli import fail

    if yes:
        return
    if not sys.stdin.isatty():
        raise fail("not on a terminal, so nobody can confirm: pass --yes to go ahead", 2)
    if not typer.confirm(question, default=False):
        typer.echo("nothing changed", err=True)
        raise typer.Exit(1)


def _where(record: DeliveryRecord) -> str:
    return f"{record.calendar}/{record.item} on {record.channel}"


@changes_app.command()
def retract(
    delivery: IdArgument,
    reason: Annotated[
        str,
        typer.Option(
            "--reason", metavar="WHY", help="Why (kept in the ledger; Matrix shows it too)."
        ),
    ] = "",
    dry_run: DryRunOption = False,
    yes: YesOption = False,
    now: NowOption = None,
    state: StateOption = None,
) -> None:
    """Delete a post that went out, where the network allows it (Mastodon, Bluesky, Discord,
    Telegram within 48 hours, Matrix, X), and record that in the ledger. The delivery stays
    sent: `publish` never posts it again. Mail, webhooks and Slack webhooks cannot take a
    message back: the command says so and exits 1. Retracting again is harmless.

    Example: commcal retract 3f9a1c --reason "wrong date" --yes
    """
    from commcal import changes
    from commcal.cli import _now, fail

    with _delivery(delivery, state) as (project, ledger, record):
        when = _now(now)
        preview = _run(
            lambda: changes.retract(project, ledger, record, now=when, reason=reason, dry_run=True),
            fail,
        )
        if dry_run or preview.settled:
            typer.echo(preview.summary)
            return
        _confirm(f"Delete {record.url or record.remote_id} ({_where(record)})?", yes)
        done = _run(lambda: changes.retract(project, ledger, record, now=when, reason=reason), fail)
        _say_resumed(done)
        typer.echo(done.summary)


@changes_app.command()
def amend(
    delivery: IdArgument,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the diff of old and new text; change nothing.")
    ] = False,
    yes: YesOption = False,
    now: NowOption = None,
    state: StateOption = None,
) -> None:
    """Render a sent post again from the calendar and templates as they are now and edit it
    in place (Mastodon, Matrix, Discord, Telegram). The new text is checked against the
    channel's limits first, and the diff of old and new text is shown. Bluesky and X have no
    edits: retract the post and publish the correction as a new item.

    Example: commcal amend 3f9a1c --dry-run
    """
    from commcal import changes
    from commcal.cli import _now, fail

    with _delivery(delivery, state) as (project, ledger, record):
        plan = _run(lambda: changes.plan_amend(project, ledger, record), fail)
        typer.echo(plan.diff())
        if dry_run:
            return
        _confirm(f"Edit {record.url or record.remote_id} ({_where(record)}) to say this?", yes)
        when = _now(now)
        done = _run(lambda: changes.amend(project, ledger, plan, now=when), fail)
        _say_resumed(done)
        link = (done.change.url if done.change else None) or record.url
        typer.echo(done.summary + (f": {link}" if link else ""))


def _say_resumed(outcome: Any) -> None:
    """Tell of an interrupted change that this call settled first (on stderr)."""
    resumed = outcome.resumed
    if resumed is None:
        return
    what = (
        f"change {resumed.number} ({resumed.action}), interrupted at "
        f"{resumed.begun_at:%Y-%m-%d %H:%M} UTC after its request may have gone out"
    )
    if resumed.outcome == "abandoned":
        typer.echo(f"({what}, was left: {resumed.note})", err=True)
    else:
        typer.echo(f"(took up {what}" + (f": {resumed.note})" if resumed.note else ")"), err=True)
