"""`commcal inbox` output: the open questions as a table, JSON (`commcal.inbox/1`) or Markdown."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from commcal.timeutil import iso_utc
from commcal.views.common import write_json
from commcal.views.status import _table, local_time, zone_label

if TYPE_CHECKING:
    from commcal.engagement.inbox import InboxEntry

TEXT_WIDTH = 80  # characters of a reply's text the table shows (JSON and Markdown: all of it)


def age(entry: InboxEntry) -> str:
    """`3d 4h`, `5h 12m`, `40m`: how long a reply has waited, to the nearest sensible unit."""
    minutes = max(0, int(entry.age.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {mins}m"
    return f"{mins}m"


def _staffed(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def _cut(text: str, width: int = TEXT_WIDTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"


def entry_json(entry: InboxEntry) -> dict[str, Any]:
    r = entry.reply
    origin = entry.origin
    return {
        "id": r.id,
        "status": entry.status,
        "delivery_id": r.delivery_id,
        "calendar": origin.calendar if origin else None,
        "item": origin.item if origin else None,
        "channel": r.channel,
        "author": r.author,
        "text": r.text,
        "lang": r.lang or None,
        "url": r.url or None,
        "created_utc": iso_utc(r.created_at),
        "age_seconds": int(entry.age.total_seconds()),
        "staffed": entry.staffed,
        "marks": list(entry.thread.marks),
        "answers": len(entry.thread.answers),
    }


def show_inbox(
    entries: Sequence[InboxEntry], fmt: str, *, now: datetime, everything: bool, tz_name: str
) -> None:
    if fmt == "json":
        write_json(
            {
                "schema": "commcal.inbox/1",
                "now_utc": iso_utc(now),
                "all": everything,
                "replies": [entry_json(e) for e in entries],
            }
        )
        return
    what = "replies" if everything else "open questions"
    if not entries:
        print(f"No {what}." if fmt != "markdown" else f"_No {what}._")
        return
    columns = ["id", "age", f"arrived ({zone_label(tz_name)})", "channel", "author", "staffed"]
    if everything:
        columns.append("status")
    columns += ["text", "link"]
    width = TEXT_WIDTH if fmt != "markdown" else 10_000
    rows = []
    for e in entries:
        r = e.reply
        row = [r.id, age(e), local_time(r.created_at, tz_name), r.channel, r.author]
        row.append(_staffed(e.staffed))
        if everything:
            row.append(e.status)
        rows.append([*row, _cut(r.text, width), r.url or "-"])
    _table(f"{len(entries)} {what}, oldest first", columns, rows, fmt, whole=("id", "link"))
