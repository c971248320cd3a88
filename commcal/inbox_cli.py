"""`commcal inbox`: the community's open questions, and `commcal inbox mark` to correct it.

A typer group of its own, registered in cli.py; the work is in `commcal.engagement.inbox`.
`engagement_ledger` is shared with `kb export` and `report`: they read the ledger only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from commcal.options import Format, StateOption

if TYPE_CHECKING:
    from commcal.project import Project

inbox_app = typer.Typer(invoke_without_command=True)


class Mark(StrEnum):
    answered = "answered"
    not_a_question = "not-a-question"
    question = "question"
    kb = "kb"


NowOption = Annotated[
    str | None,
    typer.Option("--now", metavar="INSTANT", help="Pretend it is this instant (ISO 8601, UTC)."),
]


@contextlib.contextmanager
def engagement_ledger(project: Project, state: str | None, *, write: bool = False) -> Iterator[Any]:
    """The project's ledger for what `pull` wrote: read-only (`write`: for marks, and it must
    exist). None when there is no ledger yet and --state named none: nothing was pulled. A
    mistyped --state is an error, never an empty ledger."""
    from commcal import cli

    if write:
        with cli._ledger(project, state, create=False) as ledger:
            yield ledger
        return
    with cli.reading_ledger(project, state) as ledger:
        yield ledger


@inbox_app.callback()
def inbox(
    ctx: typer.Context,
    format: Annotated[
        Format,
        typer.Option("--format", "-f", metavar="FORMAT", help="Output: table, json, markdown."),
    ] = Format.table,
    everything: Annotated[
        bool,
        typer.Option(
            "--all", help="Every reply with its status (open, answered, not-a-question, team)."
        ),
    ] = False,
    utc: Annotated[
        bool, typer.Option("--utc", help="Times in UTC (default: the project's time zone).")
    ] = False,
    now: NowOption = None,
    state: StateOption = None,
) -> None:
    """List the community's open questions, oldest first: replies to sent posts that ask
    something (in English, Greek or Swahili) and that neither the team nor another member has
    answered yet, with their age, channel, author, text, link and whether they arrived in
    staffed hours (staff: of the calendar). Reads what `commcal pull` stored.

    Example: commcal inbox

    Example: commcal inbox --all --format json
    """
    if ctx.invoked_subcommand is not None:
        return
    from commcal import cli
    from commcal.engagement.inbox import inbox as open_questions
    from commcal.engagement.inbox import origins, where_of
    from commcal.views.inbox import show_inbox

    project = cli._load()
    when = cli._now(now)
    with engagement_ledger(project, state) as ledger:
        if ledger is None:
            entries = []
        else:
            replies = list(ledger.replies())
            records = ledger.get_many(r.delivery_id for r in replies)
            entries = open_questions(
                replies,
                ledger.reply_marks(),
                origins(project, where_of(records)),
                now=when,
                everything=everything,
            )
    tz_name = "UTC" if utc else project.config.timezone
    show_inbox(entries, format.value, now=when, everything=everything, tz_name=tz_name)


@inbox_app.command("mark")
def mark(
    reply_id: Annotated[
        str, typer.Argument(metavar="ID", help="Reply id (as inbox shows it) or a unique prefix.")
    ],
    what: Annotated[
        Mark,
        typer.Argument(
            metavar="MARK",
            help="answered, not-a-question, question, or kb (into the knowledge base).",
        ),
    ],
    now: NowOption = None,
    state: StateOption = None,
) -> None:
    """Say what a reply is, where the inbox guessed wrong or a person knows better: answered
    (it leaves the inbox), not-a-question, question (it enters the inbox), or kb (the question
    and its answer go into `commcal kb export`). Marks are kept in order; the latest counts.

    Example: commcal inbox mark mastodon:1109 kb
    """
    from commcal import cli
    from commcal.engagement.inbox import resolve_reply

    project = cli._load()
    when = cli._now(now)
    with engagement_ledger(project, state, write=True) as ledger:
        reply = cli._typed(lambda: resolve_reply(ledger.replies(), reply_id))
        ledger.mark_reply(reply.id, what.value, now=when)
    typer.echo(f"marked {reply.id} {what.value}", err=True)
