"""`commcal publish` output: a line per delivery as it happens, then a summary."""

from __future__ import annotations

import sys
import threading
from typing import Any

from commcal.errors import Problem
from commcal.publish.results import Outcome, OutcomeState, Report
from commcal.timeutil import iso_utc
from commcal.views.common import console, problem_json, write_json


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    d = outcome.delivery
    return {
        "id": d.id,
        "calendar": d.calendar,
        "item": d.item.id,
        "channel": d.channel,
        "due_utc": iso_utc(d.due),
        "state": str(outcome.state),
        "detail": outcome.detail,
        "url": outcome.url,
        "attempts": outcome.attempts,
    }


def line(outcome: Outcome) -> str:
    d = outcome.delivery
    text = (
        f"{outcome.state!s:10} {d.id} {d.calendar}/{d.item.id} -> {d.channel} "
        f"(due {d.local_due:%Y-%m-%d %H:%M %Z})"
    )
    if outcome.url:
        text += f" {outcome.url}"
    if outcome.detail and outcome.state not in (OutcomeState.SENT, OutcomeState.WOULD_SEND):
        text += f": {outcome.detail}"
    return text


class Progress:
    """Plain lines as deliveries finish (stderr), or nothing for JSON output."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self._lock = threading.Lock()

    def outcome(self, outcome: Outcome) -> None:
        if self.fmt == "json":
            return
        with self._lock:
            sys.stderr.write(line(outcome) + "\n")
            sys.stderr.flush()


def show(report: Report, fmt: str) -> None:
    counts = report.counts()
    if fmt == "json":
        write_json(
            {
                "schema": "commcal.publish/1",
                "dry_run": report.dry_run,
                "ok": report.ok,
                "counts": {str(state): n for state, n in counts.items()},
                "deliveries": [outcome_json(o) for o in report.outcomes],
                "problems": [problem_json(p) for p in report.problems],
            }
        )
        return
    if not counts:
        sys.stdout.write("nothing due\n")
        return
    summary = ", ".join(f"{n} {state}" for state, n in counts.items())
    if fmt == "markdown":
        sys.stdout.write(f"**commcal publish**: {summary}\n")
        return
    from rich.text import Text

    style = "bold green" if report.ok else "bold red"
    console().print(Text(("dry run: " if report.dry_run else "") + summary, style=style))


def show_stopped(problems: list[Problem], *, dry_run: bool = False) -> None:
    """The JSON object of a publish run that could not start (errors in commcal.yaml, no
    channels, a ledger that cannot be opened): nothing handled, and why."""
    write_json(
        {
            "schema": "commcal.publish/1",
            "dry_run": dry_run,
            "ok": False,
            "counts": {},
            "deliveries": [],
            "problems": [problem_json(p) for p in problems],
        }
    )
