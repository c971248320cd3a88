"""`commcal plan` and `commcal preview` output. The JSON schema is documented in docs/json.md."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

from commcal.deliveries import MIN_ID_PREFIX
from commcal.errors import Problem
from commcal.plan import Delivery, Planned
from commcal.queue import QueueRow, member_counts, state_counts, state_label
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

if TYPE_CHECKING:
    from rich.text import Text

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
        "media": media_json(entry),
        "length": entry.length,
        "limit": entry.limit,
        "ok": entry.ok,
        "problems": [problem_json(p) for p in entry.problems],
    }


def media_json(entry: Planned) -> list[dict[str, Any]]:
    """The message's files (commcal.mediacheck.summaries); [] without media."""
    if entry.message is None or not entry.message.media:
        return []
    from commcal.mediacheck import summaries

    return summaries(entry.message, entry.delivery.item.media_for(entry.delivery.channel))


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


def stream(
    planned: Iterable[Planned],
    fmt: str,
    start: datetime,
    end: datetime,
    rows: Sequence[QueueRow] | None = None,
) -> int:
    """`plan --format json|jsonl`: each delivery written as it is planned, so memory does not
    grow with the window. Returns how many deliveries have problems. If planning fails part
    way, the output still ends as documented (summary of what was written, then the error).

    `rows`: the queue of `plan --with-status`: each delivery gets its `status`, deliveries the
    ledger holds but the calendars no longer plan come as `unplanned`, and the summary counts
    the states."""
    status = {id(r.planned): r for r in rows or () if r.planned is not None}

    def delivery_json(entry: Planned) -> dict[str, Any]:
        row = status.get(id(entry))
        data = planned_json(entry)
        return data if row is None else {**data, "status": queue_json(row)}

    def summary(written: int) -> dict[str, Any]:
        # What the writer wrote, not what was counted before it: a Ctrl-C can land between.
        counted: dict[str, Any] = {"deliveries": written, "with_problems": problems}
        if rows is not None:
            counted["states"] = state_counts(rows)
        return counted

    unplanned = [unplanned_json(r) for r in rows or () if r.planned is None]
    problems = 0
    if fmt == "jsonl":
        finished = False
        with JsonLines("commcal.plan/1") as lines:
            try:
                for entry in planned:
                    data = delivery_json(entry)
                    problems += not entry.ok
                    lines.line("delivery", data)
                for data in unplanned:
                    lines.line("unplanned", data)
                finished = True
            except BaseException as exc:
                lines.problems(problems_from(exc))
                raise
            finally:
                lines.summary(
                    window=window_json(start, end),
                    **summary(lines.written.get("delivery", 0)),
                    ok=finished and not problems,
                )
        return problems
    head = {"schema": "commcal.plan/1", "window": window_json(start, end)}
    with JsonDocument(head, always_problems=False) as doc:
        doc.array("deliveries")
        try:
            for entry in planned:
                data = delivery_json(entry)
                problems += not entry.ok
                doc.append(data)
            if rows is not None:
                doc.field("unplanned", unplanned)
        finally:
            doc.field("summary", summary(doc.appended))
    return problems


def show(
    planned: list[Planned],
    fmt: str,
    start: datetime,
    end: datetime,
    tz_name: str,
    *,
    rows: Sequence[QueueRow] | None = None,
    wide: bool = False,
) -> None:
    """The plan as `fmt`. `rows`: the queue (`commcal.queue`) of `plan --with-status`, each
    delivery with its state; `wide`: every column whatever the terminal's width."""
    problems = sum(1 for p in planned if not p.ok)
    if fmt in MACHINE:
        stream(planned, fmt, start, end, rows)
        return
    if fmt == "markdown":
        _markdown(planned, start, end, tz_name, problems, rows)
        return
    _table(planned, start, end, tz_name, problems, rows, wide)


def queue_json(row: QueueRow) -> dict[str, Any]:
    """The `status` object of a delivery in `plan --with-status --format json` (docs/json.md)."""
    return {
        "state": row.state,
        "url": row.url,
        "remote_id": row.remote_id,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "next_attempt_utc": iso_utc(row.next_attempt) if row.next_attempt else None,
        "updated_utc": iso_utc(row.updated) if row.updated else None,
        "members": dict(row.counts) if row.counts is not None else None,
    }


def unplanned_json(row: QueueRow) -> dict[str, Any]:
    """A delivery the ledger recorded in the window that the calendars no longer plan."""
    return {
        "id": row.id or None,
        "calendar": row.calendar,
        "item": row.item,
        "channel": row.channel,
        "due_utc": iso_utc(row.due),
        "status": queue_json(row),
    }


# Below this many columns the table drops the day and length columns (days become headings)
# so that the preview keeps its words; `--wide` shows every column anyway.
WIDE_TABLE = 110
WIDE_WIDTH = 200  # the width `--wide` lays the table out in on a narrower terminal

STATE_STYLES = {
    "sent": "green",
    "failed": "bold red",
    "unknown": "bold magenta",
    "pending": "yellow",
    "claimed": "cyan",
    "sending": "cyan",
    "expired": "red",
    "skipped": "dim",
    "due": "yellow",
    "draft": "yellow",
    "next": "",
}


def status_text(row: QueueRow, tz: tzinfo) -> Text:
    """The state of a queue row as a person reads it (`queue.state_label`), in colour."""
    from rich.text import Text

    if row.counts is None:
        return Text(state_label(row, tz), style=STATE_STYLES.get(row.state, ""))
    text = Text()
    for n, (state, count) in enumerate(member_counts(row)):
        text.append(", " if n else "")
        text.append(f"{count} {state}", style=STATE_STYLES.get(state, ""))
    return text


def outcome_text(row: QueueRow) -> Text | None:
    """What the ledger says beyond the state: the URL of a sent post, the reason of a failure
    (with the short id `retry` and `resolve` take), or None."""
    from rich.text import Text

    short = row.id[: MIN_ID_PREFIX + 2]
    if row.state == "sent" and (row.url or row.remote_id):
        return Text(row.url or f"id {row.remote_id}", style="green", overflow="fold")
    if row.state == "unknown" and row.counts is None:
        reason = row.last_error or (
            f"may have been delivered; check the channel, then `commcal resolve {short}`"
        )
        return Text(f"{short}: {reason}", style="magenta")
    if row.last_error and row.state in ("failed", "unknown", "pending"):
        prefix = f"{short}: " if row.counts is None else ""
        return Text(prefix + first_line(row.last_error), style="red")
    return None


def _table(
    planned: list[Planned],
    start: datetime,
    end: datetime,
    tz_name: str,
    problems: int,
    rows: Sequence[QueueRow] | None,
    wide: bool,
) -> None:
    from rich.table import Table
    from rich.text import Text

    tz = zone(tz_name)
    out = console()
    if wide and out.width < WIDE_TABLE:
        # Every column at its own width: lines longer than the terminal, as the user asked.
        from rich.console import Console

        out = Console(highlight=False, soft_wrap=False, width=WIDE_WIDTH)
    wide = wide or out.width >= WIDE_TABLE
    entries = _entries(planned, rows)
    table = Table(
        title=f"{len(planned)} deliveries from {start.astimezone(tz):%a %d %b %Y %H:%M}"
        f" to {end.astimezone(tz):%a %d %b %Y %H:%M} ({tz_name})",
        expand=False,
        show_edge=wide,  # narrow: the border's columns go to the preview
    )
    if wide:
        table.add_column("day", no_wrap=True)
    table.add_column("time", no_wrap=True)
    table.add_column("channel", no_wrap=True, max_width=None if wide else 12)
    table.add_column("item", max_width=None if wide else 22, overflow="fold")
    if rows is not None:
        table.add_column("status", max_width=None if wide else 14)
    table.add_column("preview", ratio=1, min_width=24)
    if wide:
        table.add_column("length", no_wrap=True)
        if rows is not None:
            table.add_column("url / error", overflow="fold")
    day = None
    for entry, row in entries:
        due = row.due if row is not None else entry.delivery.due if entry else start
        local_day = due.astimezone(tz).date()
        day_cell = ""
        if local_day != day:
            if day is not None:
                table.add_section()
            day = local_day
            day_cell = f"{local_day:%a %d %b}"
            if not wide:
                table.add_row(Text(day_cell, style="bold"))
        cells: list[Any] = [Text(day_cell, style="bold")] if wide else []
        cells += [f"{due.astimezone(tz):%H:%M}"]
        if entry is None:
            assert row is not None
            cells += [row.channel, Text(f"{row.item} (no longer planned)", style="dim")]
            preview = Text("")
            length = Text("")
        else:
            d = entry.delivery
            label = Text(d.item.id + (f" ({d.occurrence.step})" if d.occurrence.step else ""))
            if d.audience_size >= 0:
                label.append(f" → {members_text(d)}", style="cyan")
            if d.item.draft and rows is None:
                label.append(" (draft)", style="yellow")
            cells += [d.channel, label]
            text = entry.message.subject or entry.message.text if entry.message else ""
            if not entry.ok:
                text = entry.problems[0].message
            preview = Text(
                first_line(text), style="" if entry.ok else "red", no_wrap=True, overflow="ellipsis"
            )
            length = Text(length_cell(entry), style="" if entry.ok else "bold red")
        outcome = outcome_text(row) if row is not None else None
        if row is not None:
            cells.append(status_text(row, tz))
        if wide:
            cells += [preview, length]
            if rows is not None:
                cells.append(outcome or "")
        else:
            cells.append(outcome or preview)
        table.add_row(*cells)
    out.print(table)
    if rows is not None:
        counts = state_counts(rows)
        summary = ", ".join(f"{n} {state}" for state, n in counts.items())
        out.print(Text(summary or "nothing in this window", style="bold"))
    if problems:
        for entry in planned:
            for problem in entry.problems:
                out.print(Text(str(problem), style="red"))
        out.print(Text(f"{problems} deliveries have problems", style="bold red"))


def _entries(
    planned: list[Planned], rows: Sequence[QueueRow] | None
) -> list[tuple[Planned | None, QueueRow | None]]:
    """The table's rows: the plan, or the queue (the plan with the ledger's states, and what
    the ledger recorded that the calendars no longer plan) in due order."""
    if rows is None:
        return [(entry, None) for entry in planned]
    return [(row.planned, row) for row in rows]


def _markdown(
    planned: list[Planned],
    start: datetime,
    end: datetime,
    tz_name: str,
    problems: int,
    rows: Sequence[QueueRow] | None = None,
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
    if rows is not None:
        counts = state_counts(rows)
        lines += [", ".join(f"{n} {state}" for state, n in counts.items()) or "nothing", ""]
    status = " status |" if rows is not None else ""
    day = None
    for entry, row in _entries(planned, rows):
        due = row.due if row is not None else entry.delivery.due if entry else start
        local_day = due.astimezone(tz).date()
        if local_day != day:
            if day is not None:
                lines.append("")
            day = local_day
            lines += [
                f"#### {local_day:%A %d %B %Y}",
                "",
                f"| time | channel | item |{status} preview | length |",
                "|---|---|---|---|---|" + ("---|" if rows is not None else ""),
            ]
        state = ""
        if row is not None:
            outcome = outcome_text(row)
            state = f" {md_escape(status_text(row, tz).plain)} |"
        if entry is None:
            assert row is not None
            lines.append(
                f"| {due.astimezone(tz):%H:%M} | {row.channel} | `{row.item}` (no longer "
                f"planned) |{state} {md_escape(outcome.plain if outcome else '')} |  |"
            )
            continue
        d = entry.delivery
        mark = "" if entry.ok else " ❌"
        preview = (entry.message.subject or entry.message.text) if entry.message else ""
        if not entry.ok:
            preview = entry.problems[0].message
        preview = first_line(preview)
        if row is not None and (outcome := outcome_text(row)) is not None:
            preview = outcome.plain
        step = f" ({d.occurrence.step})" if d.occurrence.step else ""
        step += " (draft)" if d.item.draft and row is None else ""
        if d.audience_size >= 0:
            step += f" → {members_text(d)}"
        lines.append(
            f"| {due.astimezone(tz):%H:%M} | {d.channel} | `{d.item.id}`{step} |{state} "
            f"{md_escape(preview)} | {length_cell(entry)}{mark} |"
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
            for shown in media_json(entry):
                alt = str(shown["alt"]).replace("]", "\\]") or "(no alt text)"
                sys.stdout.write(f"![{alt}]({shown['file'] or shown['url']})\n\n")
        return
    from rich.panel import Panel
    from rich.text import Text

    from commcal.mediacheck import summary_line

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
            for n, shown in enumerate(media_json(entry), 1):
                kind = str(shown["type"] or "file").split("/")[0]
                body.append(("\n\n" if n == 1 else "\n") + f"[{kind} {n}] ", style="cyan")
                body.append(summary_line(shown))
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
