"""`commcal plan` and `commcal preview` output. The JSON schema is documented in docs/json.md."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from commcal.errors import Problem
from commcal.plan import Delivery, Planned
from commcal.timeutil import iso_utc, zone
from commcal.views.common import (
    MACHINE,
    JsonDocument,
    JsonLines,
    console,
    md_escape,
    problem_json,
    problems_from,
    write_json,
)

PREVIEW_WIDTH = 60


def planned_json(entry: Planned) -> dict[str, Any]:
    d = entry.delivery
    message = entry.message
    return {
        "id": d.id,
        "calendar": d.calendar,
        "item": d.item.id,
        "kind": d.item.kind,
        "step": d.occurrence.step,
        "channel": d.channel,
        "channel_type": d.channel_type,
        "due_utc": iso_utc(d.due),
        "due_local": d.local_due.isoformat(),
        "timezone": d.item.timezone,
        "locale": d.locale,
        "draft": d.item.draft,
        "audience": d.item.audience,
        "recipients": d.audience_size if d.audience_size >= 0 else None,
        "recipient": d.recipient.email if d.recipient else None,
        "member_timezone": d.zone or None,
        "due_member_local": d.due.astimezone(zone(d.zone)).isoformat() if d.zone else None,
        "template": d.occurrence.template,
        "subject": message.subject if message else None,
        "text": message.text if message else None,
        "length": entry.length,
        "limit": entry.limit,
        "ok": entry.ok,
        "problems": [problem_json(p) for p in entry.problems],
    }


def members_text(d: Delivery) -> str:
    """`3 members`, or with send_at: local `3 members in Asia/Tokyo at 09:00 there`."""
    text = f"{d.audience_size} members"
    if d.zone:
        text += f" in {d.zone} at {d.due.astimezone(zone(d.zone)):%H:%M} there"
    return text


def first_line(text: str | None) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= PREVIEW_WIDTH else line[: PREVIEW_WIDTH - 1] + "…"


def length_cell(entry: Planned) -> str:
    if entry.length is None:
        return ""
    return f"{entry.length}/{entry.limit}" if entry.limit else str(entry.length)


def window_json(start: datetime, end: datetime) -> dict[str, str]:
    return {"from": iso_utc(start), "to": iso_utc(end)}


def stream(planned: Iterable[Planned], fmt: str, start: datetime, end: datetime) -> int:
    """`plan --format json|jsonl`: each delivery written as it is planned, so memory does not
    grow with the window. Returns how many deliveries have problems. If planning fails part
    way, the output still ends as documented (summary of what was written, then the error)."""
    count = problems = 0
    if fmt == "jsonl":
        finished = False
        with JsonLines("commcal.plan/1") as lines:
            try:
                for entry in planned:
                    data = planned_json(entry)
                    count += 1  # before the write: see JsonLines.line
                    problems += not entry.ok
                    lines.line("delivery", data)
                finished = True
            except BaseException as exc:
                lines.problems(problems_from(exc))
                raise
            finally:
                lines.summary(
                    window=window_json(start, end),
                    deliveries=count,
                    with_problems=problems,
                    ok=finished and not problems,
                )
        return problems
    head = {"schema": "commcal.plan/1", "window": window_json(start, end)}
    with JsonDocument(head, always_problems=False) as doc:
        doc.array("deliveries")
        try:
            for entry in planned:
                data = planned_json(entry)
                count += 1  # before the write: see JsonLines.line
                problems += not entry.ok
                doc.append(data)
        finally:
            doc.field("summary", {"deliveries": count, "with_problems": problems})
    return problems


def show(planned: list[Planned], fmt: str, start: datetime, end: datetime, tz_name: str) -> None:
    problems = sum(1 for p in planned if not p.ok)
    if fmt in MACHINE:
        stream(planned, fmt, start, end)
        return
    tz = zone(tz_name)
    if fmt == "markdown":
        _markdown(planned, start, end, tz_name, problems)
        return
    from rich.table import Table
    from rich.text import Text

    out = console()
    table = Table(
        title=f"{len(planned)} deliveries from {start.astimezone(tz):%a %d %b %Y %H:%M}"
        f" to {end.astimezone(tz):%a %d %b %Y %H:%M} ({tz_name})",
        expand=False,
    )
    for column in ("day", "time", "channel", "item", "preview", "length"):
        table.add_column(column, no_wrap=column != "preview")
    day = None
    for entry in planned:
        d = entry.delivery
        local_day = d.due.astimezone(tz).date()
        day_cell = ""
        if local_day != day:
            if day is not None:
                table.add_section()
            day = local_day
            day_cell = f"{local_day:%a %d %b}"
        label = Text(d.item.id + (f" ({d.occurrence.step})" if d.occurrence.step else ""))
        if d.audience_size >= 0:
            label.append(f" → {members_text(d)}", style="cyan")
        if d.item.draft:
            label.append(" (draft)", style="yellow")
        length = Text(length_cell(entry), style="" if entry.ok else "bold red")
        preview = entry.message.subject or entry.message.text if entry.message else ""
        if not entry.ok:
            preview = entry.problems[0].message
        table.add_row(
            Text(day_cell, style="bold"),
            f"{d.due.astimezone(tz):%H:%M}",
            d.channel,
            label,
            Text(first_line(preview), style="" if entry.ok else "red"),
            length,
        )
    out.print(table)
    if problems:
        for entry in planned:
            for problem in entry.problems:
                out.print(Text(str(problem), style="red"))
        out.print(Text(f"{problems} deliveries have problems", style="bold red"))


def _markdown(
    planned: list[Planned], start: datetime, end: datetime, tz_name: str, problems: int
) -> None:
    tz = zone(tz_name)
    lines = [
        f"### commcal plan: {len(planned)} deliveries, "
        f"{start.astimezone(tz):%Y-%m-%d %H:%M} to {end.astimezone(tz):%Y-%m-%d %H:%M} "
        f"({tz_name})",
        "",
    ]
    if problems:
        lines += [f"**{problems} deliveries have problems.**", ""]
    day = None
    for entry in planned:
        d = entry.delivery
        local_day = d.due.astimezone(tz).date()
        if local_day != day:
            if day is not None:
                lines.append("")
            day = local_day
            lines += [
                f"#### {local_day:%A %d %B %Y}",
                "",
                "| time | channel | item | preview | length |",
                "|---|---|---|---|---|",
            ]
        status = "" if entry.ok else " ❌"
        preview = (entry.message.subject or entry.message.text) if entry.message else ""
        if not entry.ok:
            preview = entry.problems[0].message
        step = f" ({d.occurrence.step})" if d.occurrence.step else ""
        step += " (draft)" if d.item.draft else ""
        if d.audience_size >= 0:
            step += f" → {members_text(d)}"
        lines.append(
            f"| {d.due.astimezone(tz):%H:%M} | {d.channel} | `{d.item.id}`{step} | "
            f"{md_escape(first_line(preview))} | {length_cell(entry)}{status} |"
        )
    sys.stdout.write("\n".join(lines) + "\n")


def show_messages(planned: list[Planned], fmt: str) -> None:
    if fmt == "json":
        write_json(
            {"schema": "commcal.preview/1", "deliveries": [planned_json(p) for p in planned]}
        )
        return
    if fmt == "markdown":
        for entry in planned:
            d = entry.delivery
            sys.stdout.write(
                f"#### {d.item.id} on {d.channel}, {d.local_due:%Y-%m-%d %H:%M %Z}\n\n"
            )
            if entry.message and entry.message.subject:
                sys.stdout.write(f"**Subject:** {entry.message.subject}\n\n")
            text = entry.message.text if entry.message else ""
            sys.stdout.write("```\n" + text + "\n```\n\n")
        return
    from rich.panel import Panel
    from rich.text import Text

    out = console()
    for entry in planned:
        d = entry.delivery
        title = (
            f"{d.item.id} → {d.channel} ({d.channel_type}) at "
            f"{d.local_due:%Y-%m-%d %H:%M %Z} · {length_cell(entry) or 'no limit'}"
        )
        body = Text()
        if entry.message:
            if entry.message.subject:
                body.append(f"Subject: {entry.message.subject}\n\n", style="bold")
            body.append(entry.message.text)
            if entry.message.html:
                body.append("\n\n(+ HTML part)", style="dim")
        for problem in entry.problems:
            body.append(f"\n{problem}", style="bold red")
        out.print(
            Panel(
                body, title=title, title_align="left", border_style="green" if entry.ok else "red"
            )
        )


def show_stopped(problems: list[Problem], fmt: str = "json") -> None:
    """`plan --format json|jsonl` when the project's errors stop it: the same object (or
    lines), nothing planned, and the problems (docs/json.md)."""
    if fmt == "jsonl":
        with JsonLines("commcal.plan/1") as lines:
            lines.problems(problems)
            lines.summary(window=None, deliveries=0, with_problems=0, ok=False)
        return
    write_json(
        {
            "schema": "commcal.plan/1",
            "window": None,
            "deliveries": [],
            "summary": {"deliveries": 0, "with_problems": 0},
            "problems": [problem_json(p) for p in problems],
        }
    )


def show_preview_stopped(problems: list[Problem]) -> None:
    """`preview --format json` when the project's errors stop it."""
    write_json(
        {
            "schema": "commcal.preview/1",
            "deliveries": [],
            "problems": [problem_json(p) for p in problems],
        }
    )
