"""`commcal publish` output: a line per delivery as it happens, then a summary."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from datetime import datetime
from typing import Any

from commcal.errors import Problem
from commcal.publish.results import Outcome, OutcomeState, Report
from commcal.timeutil import iso_utc
from commcal.views.common import MACHINE, JsonDocument, JsonLines, console, problems_from


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
    part = f" part {d.part}/{d.parts}" if d.part else ""
    text = (
        f"{outcome.state!s:10} {d.id} {d.calendar}/{d.item.id}{part} -> {d.channel} "
        f"(due {d.local_due:%Y-%m-%d %H:%M %Z})"
    )
    if outcome.url:
        text += f" {outcome.url}"
    if outcome.detail and outcome.state not in (OutcomeState.SENT, OutcomeState.WOULD_SEND):
        text += f": {outcome.detail}"
    return text


class Progress:
    """What `publish` writes as deliveries finish: a plain line each on stderr (table and
    markdown), or, with `--format json`, the `commcal.publish/1` object streamed on stdout (each
    outcome written as it happens, the counts and problems at the end), or with `--format
    jsonl` a line per outcome and a summary line last. `already` outcomes (finished in an earlier
    run) are left out of jsonl and of the stderr lines unless `everything` (`--all`); JSON lists
    every delivery handled, as its schema says.

    Used as a context manager, an error that ends the run still closes the JSON document (or
    writes a summary line), with the error in its problems."""

    def __init__(self, fmt: str, *, dry_run: bool = False, everything: bool = False) -> None:
        self.fmt = fmt
        self.dry_run = dry_run
        self.everything = everything
        self._lock = threading.Lock()
        self._seen: Counter[OutcomeState] = Counter()  # every outcome handed to `outcome`
        self._shown: set[int] = set()  # id() of the outcomes handed to `outcome`
        self._doc: JsonDocument | None = None
        self._lines = JsonLines("commcal.publish/1") if fmt == "jsonl" else None
        self._done = False
        # Counted, not listed: `already` ones the cron minute's shortcut counted in SQL.
        self._unlisted: Counter[OutcomeState] = Counter()
        self.at: datetime | None = None  # the run's instant, once known (jsonl: `at_utc`)

    def _document(self) -> JsonDocument:
        if self._doc is None:
            self._doc = JsonDocument({"schema": "commcal.publish/1", "dry_run": self.dry_run})
            self._doc.array("deliveries")
        return self._doc

    def _listed(self, outcome: Outcome) -> bool:
        return self.everything or outcome.state is not OutcomeState.ALREADY

    def outcome(self, outcome: Outcome) -> None:
        with self._lock:
            self._seen[outcome.state] += 1
            self._shown.add(id(outcome))
            if self.fmt == "json":
                self._document().append(outcome_json(outcome))
            elif self._lines is not None:
                if self._listed(outcome):
                    self._lines.line("delivery", outcome_json(outcome))
            else:
                sys.stderr.write(line(outcome) + "\n")
                sys.stderr.flush()

    def _counts(self) -> dict[str, int]:
        seen = self._seen + self._unlisted
        return {str(state): seen[state] for state in OutcomeState if seen[state]}

    def finish(self, report: Report) -> None:
        """The outcomes not handed to `outcome` during the run (those finished earlier, and
        those a problem blocked), then the end: summary, counts and problems."""
        self._unlisted.update(report.unlisted)
        for outcome in report.outcomes:
            if id(outcome) in self._shown:
                continue
            # Table lines: only `already` with --all (a blocked item's problems are shown).
            if self.fmt in MACHINE or (self.everything and outcome.state is OutcomeState.ALREADY):
                self.outcome(outcome)
        if self.fmt not in MACHINE:
            show(report, self.fmt)
            return
        self._end(report.ok, report.problems)

    def stopped(self, problems: list[Problem]) -> None:
        """The run could not start, or was cut short: what was handled, and why."""
        if self.fmt in MACHINE:
            self._end(False, problems)

    def _end(self, ok: bool, problems: list[Problem]) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        if self._lines is not None:
            self._lines.problems(problems)
            summary: dict[str, Any] = {"dry_run": self.dry_run, "ok": ok}
            summary["counts"] = self._counts()
            summary["at_utc"] = iso_utc(self.at) if self.at else None
            self._lines.summary(**summary)
            return
        doc = self._document()
        doc.field("ok", ok)
        doc.field("counts", self._counts())
        doc.add_problems(problems)
        doc.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and not isinstance(exc, SystemExit):
            self.stopped(problems_from(exc))


def show(report: Report, fmt: str) -> None:
    """The end of a table or markdown run (JSON and JSON lines: `Progress`)."""
    counts = report.counts()
    if not counts:
        sys.stdout.write("nothing due\n")
        return
    summary = ", ".join(f"{n} {state}" for state, n in counts.items())
    if fmt == "markdown":
        sys.stdout.write(f"**commcal publish**: {summary}\n")
        return
    if not report.outcomes:  # only counts (the cron minute's shortcut): plain text, no rich
        sys.stdout.write(f"{summary}\n")
        return
    from rich.text import Text

    style = "bold green" if report.ok else "bold red"
    console().print(Text(("dry run: " if report.dry_run else "") + summary, style=style))
