"""`commcal kb export`: questions marked kb and their answers, as Markdown for a knowledge base.

A typer group of its own, registered in cli.py; the work is in `commcal.engagement.kb`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from commcal.options import StateOption

kb_app = typer.Typer(no_args_is_help=True)


class Group(StrEnum):
    hashtag = "hashtag"
    keyword = "keyword"


@kb_app.callback()
def kb_group() -> None:
    """Turn the community's answered questions into a knowledge base.

    Example: commcal kb export --out kb
    """


@kb_app.command("export")
def kb_export(
    out: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="Folder to write the pages into.")
    ] = Path("kb"),
    group: Annotated[
        str,
        typer.Option("--group", metavar="BY", help="One page per hashtag, or per shared keyword."),
    ] = Group.hashtag.value,
    state: StateOption = None,
) -> None:
    """Write one Markdown page per topic (YAML front matter: title, sources, dates) holding
    each question marked kb (`commcal inbox mark ID kb`) with its accepted answer: the reply
    below it marked kb too, else the team's first reply. No member's handle is written: each
    entry links to its public thread instead. Pages of other topics in DIR are left alone.

    Example: commcal kb export --out kb --group keyword
    """
    from commcal import cli
    from commcal.engagement.kb import export
    from commcal.engagement.threads import threads
    from commcal.export_cli import _refuse_input, _write_whole
    from commcal.inbox_cli import engagement_ledger

    grouping = cli.one_of("--group", group, [g.value for g in Group], "grouping")
    project = cli._load()
    urls: dict[str, str] = {}
    with engagement_ledger(project, state) as ledger:
        found = [] if ledger is None else threads(ledger.replies(), ledger.reply_marks())
        if ledger is not None:
            sent = ledger.get_many({t.reply.delivery_id for t in found})
            urls = {key: record.url for key, record in sent.items() if record.url}
    result = export(found, grouping, urls)
    if out.exists() and not out.is_dir():
        raise cli.fail(f"--out {out}: that is a file, not a folder")
    for page in result.pages:  # all checked before any is written
        _refuse_input(project, out / page.filename, state)
    if result.pages:
        try:
            out.mkdir(parents=True, exist_ok=True)
            for page in result.pages:
                _write_whole(out / page.filename, page.text)
        except OSError as exc:
            raise cli.fail(f"--out {out}: cannot write: {exc.strerror}") from None
    for page in result.pages:
        count = len(page.entries)
        typer.echo(
            f"wrote {out / page.filename}: {count} question{'s' if count != 1 else ''}", err=True
        )
    if not result.pages:
        typer.echo("no questions marked kb with an answer: nothing written", err=True)
    for question in result.unanswered:
        typer.echo(
            f"left out {question.id}: marked kb, but no answer yet (mark the answer kb, or "
            "answer it as the team)",
            err=True,
        )
