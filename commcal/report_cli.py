"""`commcal report`: how sent posts did. The figures are computed in `commcal.engagement.report`
(`read_report` gathers them from the ledger); views/report.py writes them."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from commcal.options import StateOption

if TYPE_CHECKING:
    from commcal.engagement.inbox import Origin
    from commcal.engagement.model import Reply
    from commcal.engagement.report import Post, Report, SlotResults
    from commcal.ledger import Ledger
    from commcal.project import Project


# The longest --at: a century (no post has been out longer).
MAX_AGE = timedelta(days=36500)


class By(StrEnum):
    item = "item"
    kind = "kind"
    channel = "channel"
    weekday = "weekday"
    hour = "hour"


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"
    html = "html"


def read_posts(
    project: Project, ledger: Ledger | None, at: timedelta
) -> tuple[list[Post], list[Reply], dict[str, Origin]]:
    """What `pull` stored in `ledger` (None: nothing pulled yet): the posts with their
    engagement at age `at`, the replies, and each delivery's origin. A post with replies but
    no snapshot counts too, unmeasured."""
    from commcal.engagement.inbox import origins, where_of
    from commcal.engagement.report import posts_from
    from commcal.ledger.engagement import Measured

    if ledger is None:
        return [], [], {}
    kinds = {(c.name, i.id): i.kind for c in project.calendars for i in c.items}
    measured = ledger.engagement_at(at)
    replies = list(ledger.replies())
    known = {m.delivery_id for m in measured}
    records = ledger.get_many({r.delivery_id for r in replies} - known)
    measured += [
        Measured(d, r.calendar, r.item, r.channel, r.updated_at, None) for d, r in records.items()
    ]
    where = {m.delivery_id: (m.calendar, m.item) for m in measured}
    origin_of = origins(project, where | where_of(records))
    return posts_from(measured, origin_of, kinds), replies, origin_of


def read_report(project: Project, ledger: Ledger | None, by: str, at: timedelta) -> Report:
    """The report over everything `pull` stored in `ledger` (None: nothing pulled yet)."""
    from commcal.engagement.report import build_report

    posts, replies, origin_of = read_posts(project, ledger, at)
    marks = ledger.reply_marks() if ledger is not None else {}
    zone_name = project.config.timezone
    return build_report(posts, replies, marks, origin_of, by=by, at=at, zone_name=zone_name)


def lint_results(project: Project, at: timedelta | None = None) -> SlotResults | None:
    """How past posts did per slot, for lint's slow_slot rule: None when the rule is off, or
    there is no ledger yet, or it cannot be read (then a note on standard error: lint goes on
    without it)."""
    import sys
    from datetime import timedelta

    from commcal.engagement.report import slot_results
    from commcal.errors import CommcalError
    from commcal.ledger import LedgerMissing, open_ledger
    from commcal.lintconfig import LintConfig
    from commcal.views.report import age_label

    if not (project.config.lint or LintConfig()).rule("slow_slot").enabled:
        return None
    age = at if at is not None else timedelta(hours=24)
    try:
        ledger = open_ledger(
            project.config.ledger_url(None), project_dir=project.root, create=False, read_only=True
        )
    except LedgerMissing:
        return None
    except CommcalError as exc:
        print(f"commcal: lint slow_slot left out: {exc}", file=sys.stderr)
        return None
    with ledger:
        posts, _, _ = read_posts(project, ledger, age)
    return slot_results(posts, age_label(age))


def report(
    by: Annotated[
        str, typer.Option("--by", metavar="GROUP", help="item, kind, channel, weekday or hour.")
    ] = By.item.value,
    at: Annotated[
        str,
        typer.Option(
            "--at",
            metavar="AGE",
            help="Compare posts at this age: each one's first snapshot this long after it was "
            "sent (default 24h).",
        ),
    ] = "24h",
    format: Annotated[
        ReportFormat,
        typer.Option(
            "--format", "-f", metavar="FORMAT", help="Output: table, json, csv, markdown, html."
        ),
    ] = ReportFormat.table,
    state: StateOption = None,
) -> None:
    """Show how sent posts did, grouped by item, kind, channel, weekday or hour: engagement at
    the same age (so old and new posts compare fairly), replies, questions, the median time to
    a first answer inside and outside staffed hours, the best slots, and which hashtags and
    words replies use week by week. --format html writes a page with charts that opens offline.

    Example: commcal report --by weekday --at 24h

    Example: commcal report --format html
    """
    from commcal import cli
    from commcal.inbox_cli import engagement_ledger
    from commcal.timeutil import parse_duration
    from commcal.views.report import show_report

    grouping = cli.one_of("--by", by, [b.value for b in By], "grouping")
    try:
        age = parse_duration(at)
    except OverflowError:
        age = MAX_AGE * 2
    if age is None or age.total_seconds() < 0:
        raise cli.fail(f"--at {at!r} is not an age like 24h, 3d or 90m")
    if age > MAX_AGE:  # beyond it, PostgreSQL's interval arithmetic overflows
        raise cli.fail(
            f"--at {at!r} is longer than a post can have been out (at most {MAX_AGE.days}d)"
        )
    project = cli._load()
    with engagement_ledger(project, state) as ledger:
        result = read_report(project, ledger, grouping, age)
    show_report(result, format.value)
