"""The queue: the plan of a window joined with what the ledger recorded for it.

"What did we post today, and what is next?" in one list (`commcal plan --with-status`, the HTML
view): each planned delivery with its state (sent with its URL, failed with the reason, unknown,
retrying, ...) or `next` when nothing is recorded yet. A newsletter's members are summarised per
item x occurrence x channel, with a count per state, never one row per member. Deliveries the
ledger recorded in the window that the calendars no longer plan (an item removed or moved) are
rows too: what went out must not vanish from the view.

Read-only: the ledger is opened as `status` and a dry run open it (never created, never
migrated, nothing written), and a project with no ledger yet has everything `next`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING

from commcal.check import Planned, plan
from commcal.deliveries import Filters
from commcal.redact import project_secrets

if TYPE_CHECKING:
    from commcal.ledger import DeliveryRecord, Ledger
    from commcal.ledger.model import RecipientCount
    from commcal.project import Project

# States of a row the ledger has no record of (the others are `commcal.ledger.State` values).
NEXT = "next"  # due after now: a later publish sends it
DUE = "due"  # due at or before now, not recorded yet: the next publish sends it (or expires it)
DRAFT = "draft"  # a draft item: planned, never published

# A summarised row's state: the one that most needs a person, first.
ATTENTION = (
    "unknown",
    "failed",
    "sending",
    "claimed",
    "pending",
    DUE,
    NEXT,
    "expired",
    "skipped",
    "sent",
    DRAFT,
)

ERROR_LIMIT = 300  # characters of a last error shown

_Clean = Callable[[str | None], str | None]


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One delivery of the window (or one occurrence x channel of a newsletter's members) and
    where it is. Times are aware UTC."""

    calendar: str
    item: str
    channel: str
    due: datetime
    state: str  # NEXT, DUE, DRAFT or a ledger State value ("sent", "failed", ...)
    planned: Planned | None = None  # None: recorded in the ledger, no longer planned
    id: str = ""
    url: str | None = None
    remote_id: str | None = None
    attempts: int = 0
    last_error: str | None = None  # redacted
    next_attempt: datetime | None = None  # a retry's time (state pending)
    updated: datetime | None = None  # the ledger's last change
    # Members' deliveries: how many in each state (members not recorded yet count as NEXT or
    # DUE); None for a delivery that is one post.
    counts: Mapping[str, int] | None = None

    @property
    def members(self) -> bool:
        return self.counts is not None


def queue(
    project: Project,
    ledger: Ledger | None,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    filters: Filters = Filters(),
    planned: Sequence[Planned] | None = None,
) -> list[QueueRow]:
    """The deliveries due in [start, end), planned or recorded, each with its state, sorted by
    due time. `ledger` None: no ledger yet (nothing recorded). `planned`: the window's plan
    when the caller has it already (`commcal.check.plan(project, start, end, filters)`)."""
    if planned is None:
        planned = plan(project, start, end, filters)
    records: list[DeliveryRecord] = []
    groups: list[RecipientCount] = []
    if ledger is not None:
        keeps = _keeps(project, filters)
        records = [r for r in ledger.public_records(start, end) if keeps(r)]
        groups = [g for g in ledger.recipient_counts(start, end) if keeps(g)]
    secrets = project_secrets(project)

    def clean(text: str | None) -> str | None:
        return secrets.redact(text, ERROR_LIMIT) if text else text

    by_id = {r.id: r for r in records}
    counted: dict[tuple[str, str, str, datetime], dict[str, int]] = {}
    errors: dict[tuple[str, str, str, datetime], str] = {}
    for g in groups:
        key = (g.calendar, g.item, g.channel, g.due_at)
        counted.setdefault(key, {})[str(g.state)] = g.count
        if g.last_error and g.state in ("failed", "unknown", "pending"):
            errors.setdefault(key, g.last_error)
    rows: list[QueueRow] = []
    used: set[str] = set()
    summarised: set[tuple[str, str, str, datetime]] = set()
    for entry in planned:
        d = entry.delivery
        key = (d.calendar, d.item.id, d.channel, d.due)
        unrecorded = DRAFT if d.item.draft else (NEXT if d.due > now else DUE)
        if d.personal and d.audience_size >= 0:
            # Zones that share an instant share one count: it is shown on the first of them.
            found = dict(counted.get(key, {})) if key not in summarised else {}
            summarised.add(key)
            rest = d.audience_size - sum(found.values())
            if rest > 0 or not found:
                found[unrecorded] = found.get(unrecorded, 0) + max(rest, 0)
            rows.append(
                QueueRow(
                    d.calendar,
                    d.item.id,
                    d.channel,
                    d.due,
                    _worst(found),
                    entry,
                    d.id,
                    last_error=clean(errors.get(key)),
                    counts=found,
                )
            )
            continue
        record = by_id.get(d.id)
        if record is None:
            rows.append(QueueRow(d.calendar, d.item.id, d.channel, d.due, unrecorded, entry, d.id))
            continue
        used.add(record.id)
        rows.append(_recorded(record, entry, clean))
    for record in records:
        if record.id not in used:
            rows.append(_recorded(record, None, clean))
    for key, found in counted.items():
        if key not in summarised:
            calendar, item, channel, due = key
            rows.append(
                QueueRow(
                    calendar,
                    item,
                    channel,
                    due,
                    _worst(found),
                    last_error=clean(errors.get(key)),
                    counts=found,
                )
            )
    rows.sort(key=lambda r: (r.due, r.calendar, r.item, r.channel))
    return rows


def missing_note(why: str) -> str:
    """What `--with-status` says on stderr when the project has no ledger yet (`why`: where
    it looked), so that a mistyped `state:` does not pass for "nothing sent"."""
    return f"commcal: note: {why}; until then nothing is recorded as sent"


def read_queue(
    project: Project,
    start: datetime,
    end: datetime,
    *,
    now: datetime,
    state: str | None = None,
    filters: Filters = Filters(),
    planned: Sequence[Planned] | None = None,
    on_missing: Callable[[str], None] | None = None,
) -> list[QueueRow]:
    """`queue` over the project's ledger (`state`: a ledger URL instead of commcal.yaml's),
    opened read-only; a ledger that does not exist yet is an empty one, never created, and
    `on_missing` is told why (a mistyped `state:` must not pass unnoticed).
    Raises LedgerError when the ledger cannot be read."""
    from commcal.ledger import LedgerMissing, open_ledger

    try:
        ledger = open_ledger(
            project.config.ledger_url(state), project_dir=project.root, read_only=True
        )
    except LedgerMissing as exc:
        if on_missing is not None:
            on_missing(str(exc))
        return queue(project, None, start, end, now=now, filters=filters, planned=planned)
    try:
        return queue(project, ledger, start, end, now=now, filters=filters, planned=planned)
    finally:
        ledger.close()


def state_counts(rows: Iterable[QueueRow]) -> dict[str, int]:
    """How many deliveries are in each state (members counted one by one), most urgent first."""
    totals: dict[str, int] = {}
    for row in rows:
        for state, count in (row.counts or {row.state: 1}).items():
            totals[state] = totals.get(state, 0) + count
    return {s: totals[s] for s in sorted(totals, key=_rank) if totals[s]}


def state_label(row: QueueRow, tz: tzinfo) -> str:
    """A row's state as a person reads it: `sent`, `retry 14:05` (in `tz`), `failed (3 tries)`,
    or for members `120 sent, 2 failed` (most urgent first)."""
    if row.counts is not None:
        return ", ".join(f"{n} {state}" for state, n in member_counts(row))
    if row.state == "pending" and row.next_attempt is not None:
        return f"retry {row.next_attempt.astimezone(tz):%H:%M}"
    if row.state == "failed" and row.attempts > 1:
        return f"failed ({row.attempts} tries)"
    return row.state


def member_counts(row: QueueRow) -> list[tuple[str, int]]:
    """A members' row's counts, most urgent state first."""
    return sorted((row.counts or {}).items(), key=lambda pair: _rank(pair[0]))


def _recorded(record: DeliveryRecord, entry: Planned | None, clean: _Clean) -> QueueRow:
    return QueueRow(
        record.calendar,
        record.item,
        record.channel,
        record.due_at,
        str(record.state),
        entry,
        record.id,
        url=record.url,
        remote_id=record.remote_id,
        attempts=record.attempts,
        last_error=clean(record.last_error),
        next_attempt=record.next_attempt_at,
        updated=record.updated_at,
    )


def _keeps(project: Project, filters: Filters) -> Callable[[DeliveryRecord | RecipientCount], bool]:
    """Whether a ledger row passes the plan's filters. The ledger does not know kinds: a kind
    filter keeps the items the calendars still hold with that kind."""
    kinds = {(i.calendar, i.id): i.kind for c in project.calendars for i in c.items}

    def keeps(r: DeliveryRecord | RecipientCount) -> bool:
        return (not filters.channels or r.channel in filters.channels) and filters.keeps_named(
            r.calendar, r.item, kinds.get((r.calendar, r.item))
        )

    return keeps


def _rank(state: str) -> int:
    return ATTENTION.index(state) if state in ATTENTION else len(ATTENTION)


def _worst(counts: Mapping[str, int]) -> str:
    present = [s for s, n in counts.items() if n]
    return min(present, key=_rank) if present else NEXT
