"""Occurrences x channels [x recipients] -> deliveries with stable ids; the members' own
local send times. No rendering, no network."""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from commcal.audience import Member
from commcal.calendar.expand import Occurrence, occurrences, written_wall
from commcal.calendar.model import Item
from commcal.channels.base import Channel
from commcal.errors import Problem, ProblemsFound
from commcal.project import Project
from commcal.timeutil import iso_utc, to_utc, zone

# A delivery id is this many hex digits of a SHA-256; commands that take an id accept a prefix
# of at least MIN_ID_PREFIX of them (`retry`, `resolve`).
ID_LENGTH = 16
MIN_ID_PREFIX = 6


def delivery_id(calendar: str, item: str, when: datetime, channel: str, recipient: str = "") -> str:
    """Deterministic: the same (calendar, item, UTC occurrence, channel[, recipient]) -> same id."""
    return _hashed(id_prefix(calendar, item, when, channel), recipient)


def id_prefix(calendar: str, item: str, when: datetime | str, channel: str) -> bytes:
    """What the ids of one occurrence on one channel share (every member's, for an audience).
    `when` may be given as its `iso_utc` text already."""
    instant = when if isinstance(when, str) else iso_utc(when)
    return f"{calendar}\x1f{item}\x1f{instant}\x1f{channel}\x1f".encode()


def _hashed(prefix: bytes, recipient: str) -> str:
    return hashlib.sha256(prefix + recipient.encode()).hexdigest()[:ID_LENGTH]


# The cyclic garbage collector's first threshold while a plan is built (Python's default: 700).
# A year's plan creates some 300,000 objects that all live on; at the default the collector scans
# them again every few hundred deliveries, which was a tenth of `plan` (bench/plan_year.py).
# mypy raises it the same way for its own build (mypy/build.py).
BULK_GC_THRESHOLD = 50_000


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Let the collector run less often while many long-lived objects are made. Only the caller
    that raised the threshold puts it back, so overlapping callers never leave it raised."""
    old = gc.get_threshold()
    if old[0] >= BULK_GC_THRESHOLD:
        yield
        return
    gc.set_threshold(BULK_GC_THRESHOLD, *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


@dataclass
class Memo:
    """What one run of the stages reads or builds once and all its deliveries share: each
    audience's member zones (per version of the file) and locale samples, each item's context
    layers, the members secret. The caller that owns the run makes one (`plan`, `validate`,
    `preview`) and passes it down; without one, a call keeps its own. It is never stored on the
    Project, so no stage leaves state behind for another."""

    zones: dict[tuple[str, str, int], dict[str, tuple[Member, int]]] = field(default_factory=dict)
    locales: dict[tuple[str, str], dict[str, tuple[Member, int]]] = field(default_factory=dict)
    layers: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    secret: tuple[str | None] | None = None  # (members.secret,) once read
    # What commcal.mediacheck.inspect read of each media file, by (path, size, mtime in ns).
    media: dict[tuple[str, int, int], Any] = field(default_factory=dict)
    # commcal.media.digest of each media file, by path, size, modification time, alt and focus.
    digests: dict[tuple[object, ...], str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    item: Item
    occurrence: Occurrence
    channel: str
    channel_type: str
    # Audience items on a per-recipient channel (mail): one delivery per member. In `plan` the
    # members are not expanded: one delivery stands for `audience_size` of them.
    recipient: Member | None = None
    at: datetime | None = None  # the member's own instant with send_at: local
    audience_size: int = -1  # >= 0: this delivery stands for that many members (plan only)
    code: str | None = None  # a pool code reserved in the ledger for this member (offers)
    # send_at: local in `plan`: the members' zone this delivery stands for (one per zone, at
    # that zone's own instant `at`, `audience_size` = the members in it); "" otherwise.
    zone: str = ""
    # The channel sends each recipient a message of their own (mail), not one public post.
    per_recipient: bool = False
    # A thread's part (commcal.threads.parts): its number from 1 and how many there are; 0 for
    # a delivery that is no part (a thread item's delivery before it is cut into parts too).
    part: int = 0
    parts: int = 0

    @property
    def personal(self) -> bool:
        """Whether this delivery goes to one person: an audience item on a per-recipient
        channel (in `plan`, one delivery stands for each member of the audience). Only such
        messages know their `member`, tokens and codes."""
        return self.per_recipient and self.item.audience is not None

    @property
    def due(self) -> datetime:
        return self.at or self.occurrence.when

    @property
    def calendar(self) -> str:
        return self.item.calendar

    @property
    def timezone(self) -> str:
        if self.recipient is not None and self.recipient.timezone:
            return self.recipient.timezone
        return self.zone or self.item.timezone

    @property
    def locale(self) -> str:
        if self.recipient is not None and self.recipient.locale:
            return self.recipient.locale
        return self.item.locale

    @property
    def local_due(self) -> datetime:
        return self.due.astimezone(zone(self.item.timezone))


@dataclass(frozen=True)
class Filters:
    calendars: Collection[str] = ()
    channels: Collection[str] = ()
    kinds: Collection[str] = ()
    items: Collection[str] = ()

    def keeps(self, item: Item) -> bool:
        return self.keeps_named(item.calendar, item.id, item.kind)

    def keeps_named(self, calendar: str, item: str, kind: str | None) -> bool:
        """`keeps` for an item known by name (a ledger row); `kind` None: not known."""
        return (
            (not self.calendars or calendar in self.calendars)
            and (not self.kinds or kind in self.kinds)
            and (not self.items or item in self.items or f"{calendar}/{item}" in self.items)
        )


def deliveries(
    project: Project,
    start: datetime,
    end: datetime,
    filters: Filters = Filters(),
    *,
    members: bool = False,
    member: str | None = None,
    broken: list[Problem] | None = None,
    memo: Memo | None = None,
    stream: bool = False,
) -> list[Delivery]:
    """Every delivery due in [start, end), sorted by due time, calendar, item and channel.

    With `members`, audience items on per-recipient channels expand to one delivery per member
    (streamed from the audience file); otherwise one delivery stands for the whole audience.
    `member` (an address) keeps only that member's deliveries.

    With `members` and `stream`, they are not expanded here: one delivery stands for the
    members (of one zone, with `send_at: local`), their audience file read once through to
    check it (a broken one is handled as below, before anything is sent), and
    `member_deliveries` yields its members' deliveries when they are sent, so that a run holds
    a batch of members at a time, not the audience.

    An audience file with errors raises ProblemsFound; with a `broken` list, instead, the items
    that read it get no delivery at all (never a smaller audience) and the problems, with one
    per item left out, are appended to `broken`: publishing isolates them, the rest goes on.
    """
    with fewer_collections():
        return _deliveries(
            project,
            start,
            end,
            filters,
            members=members and not stream,
            member=member,
            broken=broken,
            memo=memo if memo is not None else Memo(),
            checked=stream,
        )


def _deliveries(
    project: Project,
    start: datetime,
    end: datetime,
    filters: Filters,
    *,
    members: bool,
    member: str | None,
    broken: list[Problem] | None,
    memo: Memo,
    checked: bool = False,
) -> list[Delivery]:
    found: list[Delivery] = []
    sizes: dict[tuple[str, str], int] = {}
    for calendar in project.calendars:
        for item in calendar.items:
            if not filters.keeps(item):
                continue
            mark = len(found)
            try:
                _item_deliveries(
                    project,
                    item,
                    start,
                    end,
                    filters,
                    found,
                    sizes,
                    members=members,
                    member=member,
                    memo=memo,
                    checked=checked,
                )
            except ProblemsFound as exc:  # its audience file has errors (audience.AudienceBroken)
                if broken is None:
                    raise
                del found[mark:]  # the members read before the broken row: none is sent
                broken.extend(exc.problems)
                broken.append(
                    Problem(
                        item.pos,
                        f"item {item.id!r} was not published: its audience file has errors",
                        "fix the file; its mail goes out at the next publish",
                    )
                )
    found.sort(key=lambda d: (d.due, d.calendar, d.item.id, d.channel, d.zone))
    return found


def _item_deliveries(
    project: Project,
    item: Item,
    start: datetime,
    end: datetime,
    filters: Filters,
    found: list[Delivery],
    sizes: dict[tuple[str, str], int],
    *,
    members: bool,
    member: str | None,
    memo: Memo,
    checked: bool = False,
) -> None:
    """Append one item's deliveries in [start, end) to `found` (see `deliveries`); `checked`:
    stand-ins for the members whose audience file was read through (an error raises)."""
    channels = [c for c in item.channels if not filters.channels or c in filters.channels]
    if not channels:
        return
    local = item.send_at == "local"
    # A member's own zone may move an occurrence by up to a day either way.
    pad = timedelta(days=1) if local else timedelta(0)
    routes = []
    for channel in channels:
        adapter = project.channels.get(channel)
        kind = adapter.type_name if adapter else project.config.channels[channel].type
        per_recipient = adapter is not None and adapter.per_recipient
        routes.append((channel, kind, item.audience if per_recipient else None, per_recipient))
    for occurrence in occurrences(item, start - pad, end + pad):
        if not local and not start <= occurrence.when < end:
            continue
        instant = iso_utc(occurrence.when)  # shared by every channel's id
        for channel, kind, audience, per_recipient in routes:
            prefix = id_prefix(item.calendar, item.id, instant, channel)
            if audience is None:
                if start <= occurrence.when < end:
                    found.append(
                        Delivery(
                            _hashed(prefix, ""),
                            item,
                            occurrence,
                            channel,
                            kind,
                            per_recipient=per_recipient,
                        )
                    )
                continue
            if not (members or member) and local:
                # One delivery per member zone, at that zone's own instant.
                found.extend(
                    d
                    for d in _zone_deliveries(
                        project, item, occurrence, prefix, channel, kind, memo
                    )
                    if start <= d.due < end
                )
                continue
            if not (members or member):
                if start <= occurrence.when < end:
                    key = (item.calendar, item.id)
                    if key not in sizes:
                        sizes[key] = (
                            sum(1 for _ in item_members(project, item, None))
                            if checked
                            else audience_size(project, item)
                        )
                    found.append(
                        Delivery(
                            _hashed(prefix, ""),
                            item,
                            occurrence,
                            channel,
                            kind,
                            audience_size=sizes[key],
                            per_recipient=True,
                        )
                    )
                continue
            for person in item_members(project, item, member):
                at = _member_instant(item, occurrence.when, person) if local else None
                due = at or occurrence.when
                if start <= due < end:
                    found.append(
                        Delivery(
                            _hashed(prefix, person.key),
                            item,
                            occurrence,
                            channel,
                            kind,
                            recipient=person,
                            at=at,
                            per_recipient=True,
                        )
                    )


def _zone_deliveries(
    project: Project,
    item: Item,
    occurrence: Occurrence,
    prefix: bytes,
    channel: str,
    kind: str,
    memo: Memo,
) -> Iterator[Delivery]:
    """`send_at: local` in `plan`: one delivery per zone of the item's members, due at the
    instant `publish` sends that zone's members (`member_zone_instant`). The calendar zone's
    delivery keeps the id a plan without zones would give it; the others add their zone."""
    counts = {name: count for name, (_, count) in member_zones(project, item, memo).items()}
    for name, count in (counts or {item.timezone: 0}).items():
        at = member_zone_instant(item, occurrence, name)
        salt = "" if name == item.timezone else f"zone:{name}"
        yield Delivery(
            _hashed(prefix, salt),
            item,
            occurrence,
            channel,
            kind,
            at=at,
            audience_size=count,
            zone=name,
            per_recipient=True,
        )


def stands_for_members(delivery: Delivery) -> bool:
    """Whether `delivery` stands for an audience's members (`deliveries(stream=True)`, plan)."""
    return delivery.personal and delivery.recipient is None


def member_deliveries(project: Project, delivery: Delivery) -> Iterator[Delivery]:
    """The members' own deliveries a stand-in (`stands_for_members`) is for, in file order,
    read lazily: the same ids, instants and order as `deliveries(members=True)` gives them.
    A stand-in of one zone (`send_at: local`) yields that zone's members only."""
    item = delivery.item
    occurrence = delivery.occurrence
    prefix = id_prefix(item.calendar, item.id, iso_utc(occurrence.when), delivery.channel)
    local = item.send_at == "local"
    for person in item_members(project, item, None):
        if local and (person.timezone or item.timezone) != delivery.zone:
            continue
        yield Delivery(
            _hashed(prefix, person.key),
            item,
            occurrence,
            delivery.channel,
            delivery.channel_type,
            recipient=person,
            at=_member_instant(item, occurrence.when, person) if local else None,
            per_recipient=True,
        )


def personal_channels(project: Project, item: Item) -> list[Channel]:
    """The item's channels that send each member a message of their own (mail), when the item
    has an audience: what goes to one person. Empty for an item without an audience."""
    if item.audience is None:
        return []
    return [
        adapter
        for name in item.channels
        if (adapter := project.channels.get(name)) is not None and adapter.per_recipient
    ]


def item_members(project: Project, item: Item, only: str | None) -> Iterator[Member]:
    from commcal.audience import members, recipient_key

    assert item.audience is not None
    wanted = recipient_key(only) if only else None
    for person in members(project.root, item.audience, item.where):
        if wanted is None or person.key == wanted:
            yield person


def audience_size(project: Project, item: Item) -> int:
    """How many members an item reaches; file errors are reported by `check` and `validate`."""
    from commcal.audience import count

    return count(project.root, item.audience or "", item.where, problems=[])


def _member_instant(item: Item, when: datetime, person: Member) -> datetime | None:
    """send_at: local: the occurrence's wall-clock time, in the member's own zone."""
    if not person.timezone:
        return None
    return _zone_instant(item, when, person.timezone)


def member_zone_instant(item: Item, occurrence: Occurrence, name: str) -> datetime:
    """send_at: local: when the occurrence is due for members in zone `name`: the wall-clock
    time the calendar wrote, in that zone (a time in that zone's DST gap moves forward by the
    gap there). `publish`, `run` and `plan` all use this."""
    return _zone_instant(item, occurrence.when, name)


def _zone_instant(item: Item, when: datetime, name: str) -> datetime:
    if name == item.timezone:
        return when
    # The written time, not `when`'s wall clock: inside the calendar zone's DST gap those
    # differ by the gap, and a member elsewhere has no gap at that hour.
    return to_utc(written_wall(item, when), zone(name))


def local_send_times(
    project: Project, start: datetime, end: datetime, memo: Memo | None = None
) -> set[datetime]:
    """The instants in [start, end) at which `send_at: local` items fall due in their members'
    own zones: what `commcal run` wakes up for. One instant per distinct zone, members are not
    expanded (`deliveries(members=True)` does that when the run wakes)."""
    times: set[datetime] = set()
    memo = memo if memo is not None else Memo()
    pad = timedelta(days=1)  # a member's zone moves an occurrence by up to a day either way
    for calendar in project.calendars:
        for item in calendar.items:
            if item.send_at != "local" or item.audience is None or item.draft:
                continue
            if not personal_channels(project, item):
                continue
            zones = [name for name in member_zones(project, item, memo) if name != item.timezone]
            for occurrence in occurrences(item, start - pad, end + pad) if zones else ():
                times.update(
                    at
                    for name in zones
                    if start <= (at := member_zone_instant(item, occurrence, name)) < end
                )
    return times


def member_zones(
    project: Project, item: Item, memo: Memo | None = None
) -> dict[str, tuple[Member, int]]:
    """The zones of an item's members (after `where:`), each with its first member in file
    order and how many members it has; members without a zone count in the item's zone. Read
    once per version of the audience file."""
    from commcal.audience import audience_names

    path = audience_names(project.root).get(item.audience or "")
    if path is None:
        return {}
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return {}
    key = (item.calendar, item.id, stamp)
    zones = memo.zones.get(key) if memo is not None else None
    if zones is None:
        zones = {}
        for person in item_members(project, item, None):
            name = person.timezone or item.timezone
            first, count = zones.get(name, (person, 0))
            zones[name] = (first, count + 1)
        if memo is not None:
            memo.zones[key] = zones
    return zones


def find_item(project: Project, name: str) -> Item | None:
    """An item by `id` or `calendar/id`."""
    calendar, _, item_id = name.rpartition("/")
    for cal in project.calendars:
        if calendar and cal.name != calendar:
            continue
        for item in cal.items:
            if item.id == item_id:
                return item
    return None
