"""`commcal plan --diff BASE` output: a table per channel, JSON (docs/json.md) or Markdown for a
pull-request comment or a CI job summary."""

from __future__ import annotations

import sys
from typing import Any

from commcal.check import Planned
from commcal.errors import Problem
from commcal.plandiff import CHANGES, Change, PlanDiff
from commcal.timeutil import iso_utc, zone
from commcal.views.common import console, md_escape, problem_json, write_json
from commcal.views.plan import first_line, length_cell

SIGNS = {"added": "+", "removed": "-", "moved": "~", "changed": "*"}


def _when(entry: Planned | None, tz_name: str) -> str:
    if entry is None:
        return ""
    return f"{entry.delivery.due.astimezone(zone(tz_name)):%a %d %b %H:%M}"


def _time(change: Change, tz_name: str) -> str:
    if change.change == "moved":
        before, after = _when(change.base, tz_name), _when(change.head, tz_name)
        if before[:-5] == after[:-5]:  # the same day: "Mon 07 Dec 11:00 → 12:30"
            after = after[-5:]
        return f"{before} → {after}"
    return _when(change.shown, tz_name)


def _detail(change: Change) -> str:
    parts = []
    if change.note:
        parts.append(change.note)
    if change.over_limit and change.head is not None:
        parts.append(f"over the limit: {length_cell(change.head)}")
    if change.change in ("added", "removed"):
        entry = change.shown
        message = entry.message
        parts.append(first_line((message.subject or message.text) if message else ""))
    elif change.lines:
        gone = sum(1 for line in change.lines if line[:1] == "-")
        new = sum(1 for line in change.lines if line[:1] == "+")
        parts.append(f"text changed (-{gone} +{new} lines)")
    return "; ".join(p for p in parts if p)


def _label(change: Change) -> str:
    d = change.shown.delivery
    label = f"{d.calendar}/{d.item.id}"
    if d.occurrence.step:
        label += f" ({d.occurrence.step})"
    if d.zone and d.zone != d.item.timezone:
        label += f" [members in {d.zone}]"
    return label


def _summary(diff: PlanDiff) -> str:
    counts = [f"{diff.count(c)} {c}" for c in CHANGES]
    return ", ".join(counts) + f", {diff.unchanged} unchanged"


def _entry_json(entry: Planned | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    d = entry.delivery
    message = entry.message
    return {
        "id": d.id,
        "due_utc": iso_utc(d.due),
        "subject": message.subject if message else None,
        "text": message.text if message else None,
        "length": entry.length,
        "limit": entry.limit,
    }


def change_json(change: Change) -> dict[str, Any]:
    d = change.shown.delivery
    return {
        "change": change.change,
        "calendar": d.calendar,
        "item": d.item.id,
        "step": d.occurrence.step,
        "channel": d.channel,
        "member_timezone": d.zone or None,
        "base": _entry_json(change.base),
        "head": _entry_json(change.head),
        "text_diff": list(change.lines),
        "over_limit": change.over_limit,
        "note": change.note or None,
    }


def show_stopped(base: str, problems: list[Problem]) -> None:
    """`plan --diff --format json` that could not compare (a bad revision, no git): the same
    object with nothing compared, and why, so stdout stays one JSON document."""
    write_json(
        {
            "schema": "commcal.plan_diff/1",
            "base": {"revision": base, "commit": None},
            "window": None,
            "changes": [],
            "lint": {"available": False, "new": []},
            "summary": None,
            "failed_on": [],
            "problems": [problem_json(p) for p in problems],
        }
    )


def show(diff: PlanDiff, fmt: str, tz_name: str, failed: list[str]) -> None:
    if fmt == "json":
        write_json(
            {
                "schema": "commcal.plan_diff/1",
                "base": {"revision": diff.base, "commit": diff.commit},
                "window": {"from": iso_utc(diff.start), "to": iso_utc(diff.end)},
                "changes": [change_json(c) for c in diff.changes],
                "lint": {
                    "available": diff.lint is not None,
                    "new": [problem_json(p) for p in diff.lint or []],
                },
                "summary": {
                    **{c: diff.count(c) for c in CHANGES},
                    "unchanged": diff.unchanged,
                    "over_limit": sum(1 for c in diff.changes if c.over_limit),
                },
                "failed_on": failed,
            }
        )
        return
    if fmt == "markdown":
        sys.stdout.write(markdown(diff, tz_name, failed))
        return
    _table(diff, tz_name, failed)


def _by_channel(diff: PlanDiff) -> dict[str, list[Change]]:
    found: dict[str, list[Change]] = {}
    for change in diff.changes:
        found.setdefault(change.shown.delivery.channel, []).append(change)
    return found


def _window(diff: PlanDiff, tz_name: str) -> str:
    tz = zone(tz_name)
    return (
        f"{diff.start.astimezone(tz):%Y-%m-%d %H:%M} to {diff.end.astimezone(tz):%Y-%m-%d %H:%M}"
        f" ({tz_name})"
    )


def _table(diff: PlanDiff, tz_name: str, failed: list[str]) -> None:
    from rich.table import Table
    from rich.text import Text

    out = console()
    out.print(
        f"plan against {diff.base} ({diff.commit[:12]}), {_window(diff, tz_name)}: {_summary(diff)}"
    )
    styles = {"added": "green", "removed": "red", "moved": "yellow", "changed": "cyan"}
    for channel, changes in _by_channel(diff).items():
        table = Table(title=channel, expand=False, title_justify="left")
        for column in ("", "time", "item", "detail"):
            table.add_column(column, no_wrap=column != "detail")
        for change in changes:
            table.add_row(
                Text(f"{SIGNS[change.change]} {change.change}", style=styles[change.change]),
                _time(change, tz_name),
                _label(change),
                _detail(change),
            )
        out.print(table)
        for change in changes:
            if change.lines:
                out.print(Text(f"{_label(change)} at {_when(change.head, tz_name)}:", "bold"))
                for line in change.lines:
                    style = {"+": "green", "-": "red"}.get(line[:1], "")
                    out.print(Text(line, style=style))
    _footer(diff, failed, lambda text: out.print(Text(text, style="bold red")))


def _footer(diff: PlanDiff, failed: list[str], say: Any) -> None:
    if diff.lint:
        for problem in diff.lint:
            say(f"new lint finding: {problem}")
    if failed:
        say(f"failing on: {', '.join(failed)}")


def markdown(diff: PlanDiff, tz_name: str, failed: list[str]) -> str:
    lines = [
        f"### commcal plan: changes against `{diff.base}` ({diff.commit[:12]})",
        "",
        f"{_window(diff, tz_name)}: **{_summary(diff)}**.",
        "",
    ]
    if not diff.changes:
        lines += ["No delivery changes.", ""]
    for channel, changes in _by_channel(diff).items():
        lines += [f"#### {channel}", "", "| | time | item | detail |", "|---|---|---|---|"]
        for change in changes:
            lines.append(
                f"| {SIGNS[change.change]} {change.change} | {_time(change, tz_name)} | "
                f"`{md_escape(_label(change))}` | {md_escape(_detail(change))} |"
            )
        lines.append("")
        for change in changes:
            if change.lines:
                lines += [
                    f"<details><summary><code>{_label(change)}</code> at "
                    f"{_when(change.head, tz_name)}: text</summary>",
                    "",
                    "```diff",
                    *change.lines,
                    "```",
                    "</details>",
                    "",
                ]
    if diff.lint:
        lines += ["#### New lint findings", ""]
        lines += [f"- {md_escape(str(p))}" for p in diff.lint]
        lines.append("")
    if failed:
        lines += [f"**Failing on: {', '.join(failed)}.**", ""]
    return "\n".join(lines)
