"""`commcal pull` output: a table (with a progress bar on a terminal) or `commcal.pull/1`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from commcal.timeutil import iso_utc
from commcal.views.common import console, printable, write_json

if TYPE_CHECKING:
    from commcal.engagement.pull import PostResult, Report


def result_json(r: PostResult) -> dict[str, Any]:
    s = r.snapshot
    return {
        "delivery_id": r.post.delivery_id,
        "channel": r.post.channel,
        "remote_id": r.post.remote_id,
        "url": r.post.url or None,
        "outcome": str(r.outcome),
        "taken_utc": iso_utc(s.taken_at) if s is not None else None,
        "likes": s.likes if s is not None else None,
        "reposts": s.reposts if s is not None else None,
        "replies": s.replies if s is not None else None,
        "quotes": s.quotes if s is not None else None,
        "extra": dict(s.extra) if s is not None else {},
        "new_replies": r.new_replies,
        "note": r.note,
    }


def summary(report: Report) -> str:
    from commcal.engagement.pull import INTERRUPTED, Outcome

    parts = [f"{report.count(o)} {o}" for o in Outcome if report.count(o)]
    new = sum(r.new_replies for r in report.results)
    text = (", ".join(parts) or "nothing sent in the window") + f"; {new} new replies"
    if report.interrupted:
        left = sum(1 for r in report.results if r.note == INTERRUPTED)
        text += f"\nstopped: interrupted, {left} left for the next pull"
    for channel, why in sorted(report.stopped.items()):
        left = sum(1 for r in report.results if r.post.channel == channel and r.outcome == "left")
        text += f"\nstopped {channel}: {why}, {left} left for the next pull"
    return text


class Progress:
    """A rich progress bar on standard error while a pull runs, only when standard output is
    a terminal (a cron log or a pipe gets the table or JSON alone)."""

    def __init__(self, fmt: str) -> None:
        self.enabled = fmt == "table" and sys.stdout.isatty()
        self._bar: Any = None
        self._task: Any = None

    def start(self, total: int) -> None:
        if not self.enabled or not total:
            return
        from rich.progress import Progress as Bar

        self._bar = Bar(console=console(stderr=True), transient=True)
        self._bar.start()
        self._task = self._bar.add_task("pulling", total=total)

    def advance(self, result: PostResult) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=result.post.channel)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def show(report: Report, fmt: str) -> None:
    if fmt == "json":
        write_json(
            {
                "schema": "commcal.pull/1",
                "window": {"from": iso_utc(report.since), "to": iso_utc(report.until)},
                "dry_run": report.dry_run,
                "posts": [result_json(r) for r in report.results],
                "counts": {
                    str(o): report.count(o) for o in sorted({r.outcome for r in report.results})
                },
                "new_replies": sum(r.new_replies for r in report.results),
                "stopped": dict(sorted(report.stopped.items())),
                "interrupted": report.interrupted,
            }
        )
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title="pull" + (" (dry run: nothing fetched)" if report.dry_run else ""))
    for column in ("delivery", "channel", "outcome", "likes", "reposts", "replies", "new", "note"):
        table.add_column(column, overflow="fold", no_wrap=column == "delivery")
    for r in report.results:
        s = r.snapshot
        counts = (
            [str(s.likes), str(s.reposts), str(s.replies)]
            if s is not None and s.status == "ok"
            else ["", "", ""]
        )
        cells = [r.post.delivery_id, r.post.channel, str(r.outcome), *counts]
        # A note quotes the network's error: text, never rich markup ("[/x]" would raise).
        table.add_row(*cells, str(r.new_replies), Text(printable(r.note)))
    out = console()
    if report.results:
        out.print(table)
    out.print(Text(printable(summary(report))))
