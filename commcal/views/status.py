"""`commcal status` and `commcal channels` output."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from commcal.timeutil import iso_utc
from commcal.views.common import (
    JsonDocument,
    JsonLines,
    console,
    md_inline,
    printable,
    write_json,
)

if TYPE_CHECKING:
    from commcal.ledger import Attempt, DeliveryRecord, State, WorkerInfo
    from commcal.ledger.changes import PostChange
    from commcal.project import Project
    from commcal.publish.chain import ChainPart

Changes = Mapping[str, Sequence["PostChange"]]


def change_json(c: PostChange) -> dict[str, Any]:
    return {
        "change": c.number,
        "action": c.action,
        "begun_utc": iso_utc(c.begun_at),
        "finished_utc": iso_utc(c.finished_at) if c.finished_at else None,
        "outcome": c.outcome or "interrupted",
        "reason": c.reason,
        "note": c.note,
        "remote_id": c.remote_id,
        "url": c.url,
        "content_hash": c.content_hash or None,
    }


def retracted_at(changes: Sequence[PostChange]) -> datetime | None:
    return next((c.finished_at for c in changes if c.action == "retracted" and c.done), None)


def shown_state(r: DeliveryRecord, changes: Sequence[PostChange]) -> str:
    """The state a table shows: `sent (retracted)` / `sent (amended)` for a changed post."""
    if retracted_at(changes):
        return f"{r.state} (retracted)"
    if any(c.action == "amended" and c.done for c in changes):
        return f"{r.state} (amended)"
    return str(r.state)


def record_json(r: DeliveryRecord, changes: Sequence[PostChange] = ()) -> dict[str, Any]:
    retracted = retracted_at(changes)
    return {
        "id": r.id,
        "calendar": r.calendar,
        "item": r.item,
        "channel": r.channel,
        "due_utc": iso_utc(r.due_at),
        "state": str(r.state),
        "attempts": r.attempts,
        "next_attempt_utc": iso_utc(r.next_attempt_at) if r.next_attempt_at else None,
        "last_error": r.last_error,
        "remote_id": r.remote_id,
        "url": r.url,
        "claimed_by": r.claimed_by,
        "updated_utc": iso_utc(r.updated_at),
        # The post was deleted afterwards (`commcal retract`); it stays `sent`.
        "retracted_utc": iso_utc(retracted) if retracted else None,
        "changes": [change_json(c) for c in changes],
    }


def _table(
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    fmt: str,
    *,
    whole: Sequence[str] = (),
) -> None:
    """A table as markdown or rich; columns whose names start with one of `whole` are never
    wrapped or cut (ids people type back into `retry` and `resolve`)."""
    if fmt == "markdown":
        print(f"**{title}**\n")
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns))
        for row in rows:
            print("| " + " | ".join(md_inline(c) for c in row) + " |")
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title)
    for n, column in enumerate(columns):
        if column.startswith(tuple(whole)):
            width = max((len(row[n]) for row in rows), default=len(column))
            table.add_column(column, no_wrap=True, min_width=width)
        else:
            table.add_column(column, overflow="fold")
    for row in rows:
        # Cells are data (a reply, a network's error), never rich markup: "[/bold]" in one
        # would raise MarkupError, "[link=...]" would hide a link.
        table.add_row(*(Text(printable(cell)) for cell in row))
    console().print(table)


def local_time(when: datetime, tz_name: str | None) -> str:
    """`2026-12-01 09:00` in the zone `tz_name` (None: UTC), as status tables show times."""
    from commcal.timeutil import zone

    return f"{when.astimezone(zone(tz_name) if tz_name else UTC):%Y-%m-%d %H:%M}"


def zone_label(tz_name: str | None) -> str:
    return tz_name or "UTC"


def show_records(
    records: Sequence[DeliveryRecord],
    counts: Mapping[State, int],
    fmt: str,
    tz_name: str | None = None,
    changes: Changes | None = None,
    *,
    parts: Mapping[str, int] | None = None,
) -> None:
    """Deliveries as stored. Tables show times in `tz_name` (the project's zone; None: UTC)
    and ids whole: at least as long as `retry` and `resolve` need. `changes`: the retractions
    and amendments of those that have any (a retracted post shows `sent (retracted)`). A
    thread's part shows as "part k/n" after its item (`parts`: a thread's id -> how many parts
    the ledger holds)."""
    from commcal.threads import split_part_id

    changed: Changes = changes or {}

    def item_of(r: DeliveryRecord) -> str:
        thread, part = split_part_id(r.id)
        total = (parts or {}).get(thread) if part else None
        return f"{r.calendar}/{r.item}" + (f" part {part}/{total}" if total else "")

    counted = {str(k): v for k, v in counts.items()}
    if fmt == "jsonl":
        with JsonLines("commcal.status/1") as lines:
            for r in records:
                lines.line("delivery", record_json(r, changed.get(r.id, ())))
            lines.summary(counts=counted)
        return
    if fmt == "json":
        with JsonDocument(
            {"schema": "commcal.status/1", "counts": counted}, always_problems=False
        ) as doc:
            doc.array("deliveries")
            for r in records:
                doc.append(record_json(r, changed.get(r.id, ())))
        return
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no deliveries recorded"
    retracted = sum(1 for r in records if retracted_at(changed.get(r.id, ())))
    if retracted:
        summary += f" ({retracted} of those shown retracted)"
    states = {r.id: shown_state(r, changed.get(r.id, ())) for r in records}
    due = f"due ({zone_label(tz_name)})"
    if fmt != "markdown" and console().width < WIDE_STATUS:
        # Narrow: the item, its channel and the URL or error share one column, line by line,
        # so the id, the time and the state stay whole.
        tries = {r.id: f" ({r.attempts} tries)" if r.attempts > 1 else "" for r in records}
        narrow = [
            [
                r.id,
                local_time(r.due_at, tz_name),
                f"{states[r.id]}{tries[r.id]}",
                f"{item_of(r)} on {r.channel}"
                + (f"\n{r.url or r.last_error}" if r.url or r.last_error else ""),
            ]
            for r in records
        ]
        _table(summary, ["id", due, "state", "item: url or error"], narrow, fmt, whole=WHOLE)
        return
    rows = [
        [
            r.id,
            local_time(r.due_at, tz_name),
            item_of(r),
            r.channel,
            states[r.id],
            str(r.attempts),
            r.url or r.last_error or "",
        ]
        for r in records
    ]
    _table(
        summary,
        ["id", due, "item", "channel", "state", "tries", "url / error"],
        rows,
        fmt,
        whole=WHOLE,
    )


# Below this many columns `status` folds the item, channel and URL or error into one column.
WIDE_STATUS = 110
# Columns never wrapped: the id (typed back into `retry` and `resolve`), the time, the state.
WHOLE = ("id", "state", "tries", "due (", "at (")


def attempt_json(a: Attempt) -> dict[str, Any]:
    return {
        "at": iso_utc(a.at),
        "worker": a.worker,
        "event": a.event,
        "error": a.error,
        "remote_id": a.remote_id,
    }


def chain_json(part: ChainPart, parts: int) -> dict[str, Any]:
    r = part.record
    return {
        "part": part.part,
        "parts": parts,
        "id": r.id,
        "state": str(r.state),
        "url": r.url,
        "remote_id": r.remote_id,
        "last_error": r.last_error,
    }


def change_rows(changes: Sequence[PostChange], tz_name: str | None) -> list[list[str]]:
    """A delivery's changes as history rows: when, what, and how it ended."""
    rows = []
    for c in changes:
        if c.action == "amended":
            what = f"new text {c.content_hash.removeprefix('sha256:')[:12]}"
        else:
            what = f"reason: {c.reason}" if c.reason else ""
        if not c.finished:
            ended = "interrupted: run the command again to settle it"
        else:
            ended = c.note or (c.url or "") if c.outcome == "done" else f"{c.outcome}: {c.note}"
        rows.append(
            [
                local_time(c.finished_at or c.begun_at, tz_name),
                c.action if c.done else f"{c.action[:-2]} {c.outcome or 'begun'}",
                "",
                "; ".join(part for part in (what, ended) if part),
            ]
        )
    return rows


def show_history(
    record: DeliveryRecord,
    attempts: Sequence[Attempt],
    fmt: str,
    tz_name: str | None = None,
    changes: Sequence[PostChange] = (),
    *,
    chain: Sequence[ChainPart] = (),
) -> None:
    """One delivery's history; for a thread's part, also every part of its thread (`chain`):
    each part's state and URL, or why it waits."""
    parts = max((c.part for c in chain), default=0)
    if fmt == "jsonl":
        with JsonLines("commcal.history/1") as lines:
            lines.line("delivery", record_json(record, changes))
            for a in attempts:
                lines.line("event", attempt_json(a))
            for c in changes:
                lines.line("change", change_json(c))
            for link in chain:
                lines.line("part", chain_json(link, parts))
            lines.summary(id=record.id, state=str(record.state))
        return
    if fmt == "json":
        document: dict[str, Any] = {
            "schema": "commcal.history/1",
            "delivery": record_json(record, changes),
            "history": [attempt_json(a) for a in attempts],
            "changes": [change_json(c) for c in changes],
        }
        if chain:
            document["thread"] = [chain_json(link, parts) for link in chain]
        write_json(document)
        return
    if chain:
        _table(
            f"thread of {parts} parts",
            ["part", "id", "state", "url / error"],
            [
                [
                    f"{c.part}/{parts}" + (" (this)" if c.record.id == record.id else ""),
                    c.record.id,
                    str(c.record.state),
                    c.record.url or c.record.last_error or "",
                ]
                for c in chain
            ],
            fmt,
            whole=WHOLE,
        )
    rows = [
        [local_time(a.at, tz_name), a.event, a.worker, a.error or a.remote_id or ""]
        for a in attempts
    ] + change_rows(changes, tz_name)
    _table(
        f"{record.id} {record.calendar}/{record.item} on {record.channel}: "
        f"{shown_state(record, changes)}, "
        f"due {local_time(record.due_at, tz_name)} ({zone_label(tz_name)})",
        [f"at ({zone_label(tz_name)})", "event", "worker", "detail"],
        rows,
        fmt,
        whole=WHOLE,
    )


def worker_json(w: WorkerInfo) -> dict[str, Any]:
    return {
        "name": w.name,
        "host": w.host,
        "pid": w.pid,
        "last_seen": iso_utc(w.last_seen),
        "info": w.info,
        "holding": w.holding,
    }


def show_workers(workers: Sequence[WorkerInfo], fmt: str, tz_name: str | None = None) -> None:
    if fmt == "jsonl":
        with JsonLines("commcal.workers/1") as lines:
            for w in workers:
                lines.line("worker", worker_json(w))
            lines.summary(workers=len(workers))
        return
    if fmt == "json":
        write_json({"schema": "commcal.workers/1", "workers": [worker_json(w) for w in workers]})
        return
    rows = [
        [w.name, w.host, str(w.pid), local_time(w.last_seen, tz_name), w.info, str(w.holding)]
        for w in workers
    ]
    _table(
        f"{len(workers)} workers",
        ["worker", "host", "pid", f"last seen ({zone_label(tz_name)})", "doing", "holding"],
        rows,
        fmt,
    )


def show_channels(project: Project, fmt: str) -> None:
    """Configured channels with secrets masked: only whether each referenced variable is set."""
    import os

    from commcal.config import EnvRef

    entries: list[dict[str, Any]] = []
    for name, spec in project.config.channels.items():
        adapter = project.channels.get(name)
        refs = [v for v in spec.settings.values() if isinstance(v, EnvRef)]
        variables = {n: bool(os.environ.get(n)) for ref in refs for n in ref.names}
        entries.append(
            {
                "name": name,
                "type": spec.type,
                "usable": adapter is not None,
                "settings": adapter.describe_settings() if adapter else {},
                "environment": variables,
            }
        )
    if fmt == "json":
        write_json({"schema": "commcal.channels/1", "channels": entries})
        return
    rows: list[list[str]] = [
        [
            e["name"],
            e["type"],
            "yes" if e["usable"] else "no (see validate)",
            ", ".join(f"{k}={v}" for k, v in e["settings"].items()),
            ", ".join(f"{k} {'set' if ok else 'MISSING'}" for k, ok in e["environment"].items()),
        ]
        for e in entries
    ]
    _table(
        f"{len(entries)} channels",
        ["channel", "type", "usable", "settings", "environment"],
        rows,
        fmt,
    )


def show_suppressions(entries: Sequence[Any], fmt: str) -> None:
    if fmt == "json":
        write_json(
            {
                "schema": "commcal.suppressions/1",
                "suppressions": [
                    {
                        "recipient_key": e.recipient_key,
                        "source": e.source,
                        "note": e.note,
                        "at": iso_utc(e.at),
                    }
                    for e in entries
                ],
            }
        )
        return
    rows = [[e.recipient_key, e.note, e.source, iso_utc(e.at)] for e in entries]
    _table(f"{len(entries)} suppressed", ["key", "address", "source", "since (UTC)"], rows, fmt)


def show_draw(item: str, result: Any, fmt: str) -> None:
    if fmt == "json":
        write_json(
            {
                "schema": "commcal.draw/1",
                "item": item,
                "seed": result.seed,
                "entries": result.entries,
                "duplicates_removed": result.duplicates_removed,
                "entries_sha256": result.entries_sha256,
                "winners": list(result.winners),
            }
        )
        return
    rows = [[str(n), w] for n, w in enumerate(result.winners, 1)]
    _table(
        f"{item}: {len(result.winners)} winners from {result.entries} entries "
        f"({result.duplicates_removed} duplicates removed), seed {result.seed!r}, entries sha256 "
        f"{result.entries_sha256[:16]}…",
        ["#", "winner"],
        rows,
        fmt,
    )


def show_draws(
    item: str, draws: Sequence[Any], named: Sequence[Sequence[str | None]], fmt: str
) -> None:
    """Recorded draws, each winner's key with the entrant the entries file names for it."""
    if fmt == "json":
        write_json(
            {
                "schema": "commcal.draws/1",
                "item": item,
                "draws": [
                    {
                        "at": iso_utc(d.at),
                        "seed": d.seed,
                        "entries": d.entries,
                        "entries_sha256": d.entries_sha256,
                        "winners": [
                            {"key": key, "entrant": who}
                            for key, who in zip(d.winners, names, strict=True)
                        ],
                    }
                    for d, names in zip(draws, named, strict=True)
                ],
            }
        )
        return
    rows = [
        [iso_utc(d.at), d.seed, str(n), who or f"(not in this entries file: key {key})"]
        for d, names in zip(draws, named, strict=True)
        for n, (key, who) in enumerate(zip(d.winners, names, strict=True), 1)
    ]
    _table(
        f"{item}: {len(draws)} recorded draw{'s' if len(draws) != 1 else ''}",
        ["drawn (UTC)", "seed", "#", "winner"],
        rows,
        fmt,
    )
