"""Occurrences x channels -> deliveries with stable ids, rendered and checked. No network."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from commcal.calendar.expand import Occurrence, occurrences
from commcal.calendar.model import Calendar, Item
from commcal.channels.base import Message
from commcal.errors import Problem
from commcal.project import Project
from commcal.render import RenderError
from commcal.timeutil import iso_utc, zone


def delivery_id(calendar: str, item: str, when: datetime, channel: str, recipient: str = "") -> str:
    """Deterministic: the same (calendar, item, UTC occurrence, channel[, recipient]) -> same id."""
    key = "\x1f".join((calendar, item, iso_utc(when), channel, recipient))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Delivery:
    id: str
    item: Item
    occurrence: Occurrence
    channel: str
    channel_type: str

    @property
    def due(self) -> datetime:
        return self.occurrence.when

    @property
    def calendar(self) -> str:
        return self.item.calendar

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
        return (
            (not self.calendars or item.calendar in self.calendars)
            and (not self.kinds or item.kind in self.kinds)
            and (
                not self.items
                or item.id in self.items
                or f"{item.calendar}/{item.id}" in self.items
            )
        )


def deliveries(
    project: Project, start: datetime, end: datetime, filters: Filters = Filters()
) -> list[Delivery]:
    """Every delivery due in [start, end), sorted by due time, calendar, item and channel."""
    found: list[Delivery] = []
    for calendar in project.calendars:
        for item in calendar.items:
            if not filters.keeps(item):
                continue
            channels = [c for c in item.channels if not filters.channels or c in filters.channels]
            if not channels:
                continue
            for occurrence in occurrences(item, start, end):
                for channel in channels:
                    adapter = project.channels.get(channel)
                    found.append(
                        Delivery(
                            delivery_id(item.calendar, item.id, occurrence.when, channel),
                            item,
                            occurrence,
                            channel,
                            adapter.type_name if adapter else project.config.channels[channel].type,
                        )
                    )
    found.sort(key=lambda d: (d.due, d.calendar, d.item.id, d.channel))
    return found


def context(project: Project, calendar: Calendar | None, delivery: Delivery) -> dict[str, Any]:
    """What a template sees. Later layers win: project vars, calendar vars, item vars."""
    item = delivery.item
    tz = zone(item.timezone)
    ctx: dict[str, Any] = {}
    ctx.update(project.config.vars)
    if calendar is not None:
        ctx.update(calendar.vars)
    ctx.update(item.vars)
    occurrence = delivery.occurrence
    local = delivery.local_due
    ctx.update(
        item={"id": item.id, "kind": item.kind, "title": item.title, "calendar": item.calendar},
        channel={"name": delivery.channel, "type": delivery.channel_type},
        at=local,
        step=occurrence.step,
        locale=item.locale,
        timezone=item.timezone,
        _locale=item.locale,
        _tz=tz,
        _utm_medium=project.config.links.utm_medium,
        _utm_source=project.config.links.utm_source,
    )
    extra = occurrence.extra
    if item.kind == "event":
        starts = extra["event_at"].astimezone(tz)
        ctx["event"] = {
            "at": starts,
            "duration": item.duration,
            "ends_at": (extra["event_at"] + item.duration).astimezone(tz)
            if item.duration
            else None,
            "offset": extra["offset"],
            "until": -extra["offset"],
        }
    if item.kind == "contest":
        ctx["contest"] = {
            k: extra[f"{k}_at"].astimezone(tz) for k in ("opens", "closes") if f"{k}_at" in extra
        }
    if item.poll is not None:
        ctx["poll"] = dict(item.poll)
    return ctx


def message_for(project: Project, delivery: Delivery) -> Message:
    """Render one delivery; raises RenderError with the template's file and line."""
    item = delivery.item
    ctx = context(project, project.calendar(item.calendar), delivery)
    what = f"item {item.id!r} in {item.pos.path} (channel {delivery.channel})"
    rendered = project.renderer.render(
        delivery.occurrence.template, delivery.channel_type, item.locale, ctx, what=what
    )
    adapter = project.channels.get(delivery.channel)
    needs_subject = adapter is not None and adapter.needs_subject
    subject = rendered.subject or (item.title if needs_subject and item.title else None)
    options: dict[str, Any] = {}
    if item.poll is not None:
        options["poll"] = {
            "question": item.poll["question"],
            "options": list(item.poll["options"]),
            "duration_seconds": int(item.poll["duration"].total_seconds()),
        }
    return Message(
        channel=delivery.channel,
        channel_type=delivery.channel_type,
        text=rendered.text,
        subject=subject,
        html=rendered.html,
        language=item.locale.split("_")[0],
        options=options,
    )


@dataclass(frozen=True)
class Planned:
    """A delivery with its rendered message and the channel's verdict on it."""

    delivery: Delivery
    message: Message | None
    length: int | None = None
    limit: int | None = None
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


def check(project: Project, delivery: Delivery) -> Planned:
    """Render and check one delivery against its channel, offline."""
    item = delivery.item
    try:
        message = message_for(project, delivery)
    except RenderError as exc:
        return Planned(delivery, None, problems=(exc.problem,))
    adapter = project.channels.get(delivery.channel)
    if adapter is None:
        return Planned(delivery, message)
    problems = tuple(
        Problem(
            item.pos,
            f"item {item.id!r} on {delivery.channel} at "
            f"{delivery.local_due:%Y-%m-%d %H:%M}: {text}",
        )
        for text in adapter.check(message)
    )
    return Planned(delivery, message, adapter.measure(message.text), adapter.limit(), problems)


def plan(
    project: Project, start: datetime, end: datetime, filters: Filters = Filters()
) -> list[Planned]:
    planned = []
    first_step: dict[str, str] = {}
    for delivery in deliveries(project, start, end, filters):
        entry = check(project, delivery)
        step = delivery.occurrence.step
        if delivery.id in first_step:
            # The id is (calendar, item, instant, channel): two steps at one instant would be
            # one delivery, and the ledger would send only the first.
            item = delivery.item
            clash = Problem(
                item.pos,
                f"item {item.id!r}: steps {first_step[delivery.id]!r} and {step!r} fall at the "
                f"same instant ({delivery.local_due:%Y-%m-%d %H:%M}) on {delivery.channel}",
                "move one of them by a minute or more; only one message per instant is sent",
            )
            entry = Planned(
                delivery, entry.message, entry.length, entry.limit, (*entry.problems, clash)
            )
        else:
            first_step[delivery.id] = step
        planned.append(entry)
    return planned


def problems_of(planned: Iterable[Planned]) -> list[Problem]:
    return [p for entry in planned for p in entry.problems]


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


def next_occurrence(
    project: Project, item: Item, start: datetime, channel: str | None = None
) -> list[Planned]:
    """The item's first occurrence at or after `start` (looking up to ten years ahead)."""
    from datetime import timedelta

    filters = Filters(
        calendars=[item.calendar], items=[item.id], channels=[channel] if channel else ()
    )
    end = start + timedelta(days=3660)
    for span in (timedelta(days=40), timedelta(days=400), end - start):
        found = deliveries(project, start, start + span, filters)
        if found:
            first = found[0].due
            return [check(project, d) for d in found if d.due == first]
    return []
