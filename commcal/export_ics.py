"""`commcal export ics`: the plan of a window as an iCalendar feed (RFC 5545) to subscribe to.

What the feed holds, and why:

- **One VEVENT per item, step and channel group** (the channels of an item that deliver at the
  same instants; with `send_at: local` each member zone is a group of its own, at that zone's
  instants). A group whose instants a recurrence rule reproduces exactly is one VEVENT with an
  RRULE (and EXDATEs for skipped dates) in the zone's local time; every other group is one
  VEVENT per instant. "Exactly" is checked, not assumed: the rule is expanded here with
  dateutil and compared with the instants `plan` lists (`deliveries()`), and any difference, or
  any instance whose local time falls in a DST gap or fold, gives single VEVENTs instead (a gap
  time is read differently by different readers: dateutil's VTIMEZONE tz puts 03:30 on
  Athens' spring-forward day at 00:30Z, RFC 5545 3.3.5 and `plan` at 01:30Z). Singles at such
  a time are written in UTC; all others in local time with a TZID.
- **Events** (`kind: event`) get one more VEVENT for the event itself, with its duration,
  location and URL, and a VALARM at each reminder's instant; the reminders' posts are
  deliveries like any other, linked to it by RELATED-TO.
- **Drafts** are in the feed, as `plan` lists them, marked `STATUS:TENTATIVE` and "[draft]".
- **Stable UIDs**: a hash of the project name, calendar, item, step and zone (and the instant,
  for singles), so a subscribed app updates an entry instead of adding a second one; adding a
  channel to an item keeps its UID. SEQUENCE stays 0 (the feed keeps no history to count from).
- **DTSTAMP** is the modification time of the item's calendar file: RFC 5545 3.8.7.2 makes it,
  in a feed without METHOD, the time the information was last revised. So an export of an
  unchanged checkout is byte for byte the same, and apps do not see every entry change daily.
- **VTIMEZONE** per zone used, built from zoneinfo's own transitions for the years the window
  touches: each observance's DTSTART is the local time *before* the jump, read with
  TZOFFSETFROM (RFC 5545 3.6.5). icalendar 7.3.2's `Timezone.from_tzinfo` writes the time after
  it (Athens `DTSTART:20260329T040000` with `TZOFFSETFROM:+0200`: an hour late), so it is not
  used. Events are only in the window, so the observances cover every one of them.

Each VEVENT carries `X-COMMCAL-ITEM` (calendar/id), `X-COMMCAL-CHANNELS` and `X-COMMCAL-ROLE`
(`delivery` or `event`) for scripts.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from commcal.calendar.expand import DAY
from commcal.calendar.model import CronSchedule, Every, Item
from commcal.deliveries import Delivery, Filters, Memo, deliveries
from commcal.ics import PRODID
from commcal.timeutil import iso_utc, local_wall, zone

if TYPE_CHECKING:
    from icalendar import Component

    from commcal.project import Project

WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")  # date.weekday() order
SCAN_STEP = timedelta(hours=12)  # no zone changes its offset twice within 12 hours


@dataclass
class Group:
    """One item's step on the channels that share its instants, in one zone."""

    item: Item
    step: str
    zone: str  # where the instants are on the written wall clock
    channels: list[str] = field(default_factory=list)
    instants: list[datetime] = field(default_factory=list)  # UTC, sorted, unique
    first: dict[datetime, list[Delivery]] = field(default_factory=dict)  # instant -> deliveries
    # The channels, in the UID, when the item's step has more than one group in this zone
    # (channels at different instants): never in today's plans, but two entries must never
    # share a UID.
    tag: str = ""


@dataclass(frozen=True)
class Rule:
    """A recurrence that reproduces a group's instants: RRULE parts and EXDATE walls."""

    zone: str
    start: datetime  # naive wall clock in `zone`
    parts: dict[str, Any]
    exdates: tuple[datetime, ...]


def export_ics(
    project: Project,
    start: datetime,
    end: datetime,
    filters: Filters = Filters(),
    memo: Memo | None = None,
) -> bytes:
    """The feed of every delivery `plan` lists in [start, end) (see the module docstring)."""
    from icalendar import Calendar

    memo = memo if memo is not None else Memo()
    found = deliveries(project, start, end, filters, memo=memo)
    name = project.config.project_name
    feed = Calendar()
    feed.add("prodid", PRODID)
    feed.add("version", "2.0")
    feed.add("calscale", "GREGORIAN")
    feed.add("x-wr-calname", f"{name} (commcal)")
    stamps: dict[str, datetime] = {}
    zones: set[str] = set()
    events: list[Component] = []
    for group in groups(found):
        stamp = _stamp(project, group.item, stamps)
        rule = recurrence(group)
        if rule is not None:
            zones.add(rule.zone)
            events.append(_series_event(project, name, group, rule, stamp, memo))
        else:
            for instant in group.instants:
                events.append(_single_event(project, name, group, instant, stamp, memo, zones))
    for item in _event_items(found, start, end):
        events.append(_event_event(name, item, _stamp(project, item, stamps), zones))
    for tz_name in sorted(zones - {"UTC"}):
        feed.add_component(vtimezone(tz_name, start, end))
    for event in events:
        feed.add_component(event)
    data: bytes = feed.to_ical()
    return data


def groups(found: Iterable[Delivery]) -> list[Group]:
    """Deliveries -> groups: per (calendar, item, step, zone), the channels with equal instants."""
    by_channel: dict[tuple[str, str, str, str, str], list[Delivery]] = {}
    items: dict[tuple[str, str], Item] = {}
    for d in found:
        where = d.zone or d.item.timezone
        key = (d.calendar, d.item.id, d.occurrence.step, where, d.channel)
        by_channel.setdefault(key, []).append(d)
        items[(d.calendar, d.item.id)] = d.item
    merged: dict[tuple[Any, ...], Group] = {}
    for (calendar, item_id, step, where, channel), ds in by_channel.items():
        instants = tuple(sorted({d.due for d in ds}))
        group_key = (calendar, item_id, step, where, instants)
        group = merged.get(group_key)
        if group is None:
            group = merged[group_key] = Group(
                items[(calendar, item_id)], step, where, instants=list(instants)
            )
        group.channels.append(channel)
        for d in ds:
            group.first.setdefault(d.due, []).append(d)
    shared = Counter((g.item.calendar, g.item.id, g.step, g.zone) for g in merged.values())
    for group in merged.values():
        if shared[(group.item.calendar, group.item.id, group.step, group.zone)] > 1:
            group.tag = ",".join(sorted(group.channels))
    return sorted(
        merged.values(),
        key=lambda g: (g.item.calendar, g.item.id, g.step, g.zone, g.instants[0]),
    )


def recurrence(group: Group) -> Rule | None:
    """The RRULE that gives exactly the group's instants, or None (then: one VEVENT each)."""
    item = group.item
    schedule = item.schedule
    if item.steps or len(group.instants) < 2:
        return None
    parts: dict[str, Any]
    where = group.zone
    if isinstance(schedule, CronSchedule):
        cron = schedule.cron
        parts = {"FREQ": "DAILY", "BYHOUR": list(cron.hours), "BYMINUTE": list(cron.minutes)}
        if cron.months != frozenset(range(1, 13)):
            parts["BYMONTH"] = sorted(cron.months)
        if cron.day_restricted:
            parts["BYMONTHDAY"] = sorted(cron.days)
        if cron.weekday_restricted:
            parts["BYDAY"] = [WEEKDAYS[d] for d in sorted(cron.weekdays)]
    elif isinstance(schedule, Every):
        step = schedule.interval
        if step % DAY == timedelta(0):
            parts = {"FREQ": "DAILY", "INTERVAL": step // DAY}
        else:  # shorter steps are elapsed time: in UTC, where DST cannot bend them
            where = "UTC"
            seconds = int(step.total_seconds())
            if seconds % 3600 == 0:
                parts = {"FREQ": "HOURLY", "INTERVAL": seconds // 3600}
            elif seconds % 60 == 0:
                parts = {"FREQ": "MINUTELY", "INTERVAL": seconds // 60}
            else:
                parts = {"FREQ": "SECONDLY", "INTERVAL": seconds}
    else:
        return None
    return _verified(group.instants, where, parts)


def _verified(instants: Sequence[datetime], where: str, parts: dict[str, Any]) -> Rule | None:
    """The rule if dateutil's expansion of it, read in zone `where`, is `instants` plus only
    unambiguous extra instances (written as EXDATEs); None otherwise."""
    from dateutil import rrule

    tz = zone(where)
    first, last = local_wall(instants[0], tz), local_wall(instants[-1], tz)
    freq = getattr(rrule, parts["FREQ"])
    rule = rrule.rrule(
        freq,
        dtstart=first,
        until=last,
        interval=parts.get("INTERVAL", 1),
        byhour=parts.get("BYHOUR"),
        byminute=parts.get("BYMINUTE"),
        bymonth=parts.get("BYMONTH"),
        bymonthday=parts.get("BYMONTHDAY"),
        byweekday=[WEEKDAYS.index(d) for d in parts["BYDAY"]] if "BYDAY" in parts else None,
        cache=False,
    )
    wanted = set(instants)
    extra: list[datetime] = []
    seen = 0
    for wall in rule:
        instant = unambiguous(wall, tz)
        if instant is None:
            return None
        if instant in wanted:
            seen += 1
        else:
            extra.append(wall)
            if len(extra) > len(instants):
                return None  # more holes than events: singles read better
    if seen != len(wanted):
        return None
    parts = {**parts, "UNTIL": instants[-1].astimezone(UTC)}
    return Rule(where, first, parts, tuple(extra))


def unambiguous(wall: datetime, tz: tzinfo) -> datetime | None:
    """The UTC instant of a naive wall time in `tz`, or None inside a DST gap or fold."""
    earlier = wall.replace(tzinfo=tz, fold=0)
    if earlier.utcoffset() != wall.replace(tzinfo=tz, fold=1).utcoffset():
        return None
    return earlier.astimezone(UTC)


def _uid(name: str, item: Item, *parts: str) -> str:
    key = "\x1f".join((name, item.calendar, item.id, *parts))
    return f"{hashlib.sha256(key.encode()).hexdigest()[:24]}@{name}.commcal"


def _stamp(project: Project, item: Item, cache: dict[str, datetime]) -> datetime:
    path = item.pos.path
    if path not in cache:
        try:
            mtime = (project.root / path).stat().st_mtime
        except OSError:
            mtime = 0.0
        cache[path] = datetime.fromtimestamp(int(mtime), UTC)
    return cache[path]


def _base_event(name: str, item: Item, uid: str, stamp: datetime, role: str) -> Component:
    from icalendar import Event

    event = Event()
    event.add("uid", uid)
    event.add("dtstamp", stamp)
    event.add("last-modified", stamp)
    event.add("sequence", 0)
    event.add("status", "TENTATIVE" if item.draft else "CONFIRMED")
    event.add("x-commcal-item", f"{item.calendar}/{item.id}")
    event.add("x-commcal-role", role)
    if item.location:
        event.add("location", item.location)
    if item.url:
        event.add("url", item.url)
    return event


def _summary(group: Group) -> str:
    item = group.item
    label = item.title or item.id
    if group.step:
        label += f" ({group.step})"
    label += " → " + ", ".join(group.channels)
    return ("[draft] " if item.draft else "") + label


def _description(
    project: Project, group: Group, instant: datetime, memo: Memo, series: bool = False
) -> str:
    """Each channel's text at `instant` (the first instance, for a series), and who gets it."""
    from commcal.check import check

    item = group.item
    lines = [f"{item.kind} {item.calendar}/{item.id}, template {item.template}"]
    shown = group.first[instant]
    first = shown[0]
    if first.zone and first.zone != item.timezone:
        lines.append(
            f"send_at: local: for the {first.audience_size} members in {first.zone}, "
            f"at {first.due.astimezone(zone(first.zone)):%H:%M} their time"
        )
    elif first.audience_size >= 0:
        lines.append(f"to {first.audience_size} members of {item.audience}")
    if series:
        lines.append(f"{len(group.instants)} times in this feed; the text of the first:")
    for d in shown:
        entry = check(project, d, memo)
        text = entry.message.text if entry.message else entry.problems[0].message
        lines += ["", f"{d.channel}:", text.strip()]
    return "\n".join(lines)


def _dated(event: Component, prop: str, instant: datetime, tz_name: str) -> None:
    """`instant` as local time with TZID when that reads one way only, else in UTC."""
    if tz_name == "UTC":
        event.add(prop, instant)
        return
    wall = local_wall(instant, zone(tz_name))
    if unambiguous(wall, zone(tz_name)) == instant:
        event.add(prop, wall, parameters={"TZID": tz_name})
    else:
        event.add(prop, instant.astimezone(UTC))


def _related(event: Component, name: str, group: Group) -> None:
    event.add("summary", _summary(group))
    event.add("x-commcal-channels", ",".join(group.channels))
    if group.item.kind == "event":
        event.add("related-to", _uid(name, group.item, "event"))


def _series_event(
    project: Project, name: str, group: Group, rule: Rule, stamp: datetime, memo: Memo
) -> Component:
    uid = _uid(name, group.item, group.step, group.zone, group.tag)
    event = _base_event(name, group.item, uid, stamp, "delivery")
    if rule.zone == "UTC":
        event.add("dtstart", rule.start.replace(tzinfo=UTC))
    else:
        event.add("dtstart", rule.start, parameters={"TZID": rule.zone})
    event.add("rrule", rule.parts)
    if rule.exdates:
        if rule.zone == "UTC":
            event.add("exdate", [w.replace(tzinfo=UTC) for w in rule.exdates])
        else:
            event.add("exdate", list(rule.exdates), parameters={"TZID": rule.zone})
    _related(event, name, group)
    event.add("description", _description(project, group, group.instants[0], memo, True))
    return event


def _single_event(
    project: Project,
    name: str,
    group: Group,
    instant: datetime,
    stamp: datetime,
    memo: Memo,
    zones: set[str],
) -> Component:
    uid = _uid(name, group.item, group.step, group.zone, group.tag, iso_utc(instant))
    event = _base_event(name, group.item, uid, stamp, "delivery")
    _dated(event, "dtstart", instant, group.zone)
    if "dtstart" in event and event["dtstart"].params.get("TZID"):
        zones.add(group.zone)
    _related(event, name, group)
    event.add("description", _description(project, group, instant, memo))
    return event


def _event_items(found: Iterable[Delivery], start: datetime, end: datetime) -> Iterator[Item]:
    seen: set[tuple[str, str]] = set()
    for d in found:
        item = d.item
        key = (item.calendar, item.id)
        if item.kind != "event" or key in seen:
            continue
        seen.add(key)
        at = item.anchors.get("at")
        if at is not None and start <= _at_utc(item, at) < end:
            yield item


def _at_utc(item: Item, at: datetime) -> datetime:
    from commcal.timeutil import to_utc

    return to_utc(at, zone(item.timezone))


def _event_event(name: str, item: Item, stamp: datetime, zones: set[str]) -> Component:
    """The event itself (a webinar, a meetup): its start and duration."""
    event = _base_event(name, item, _uid(name, item, "event"), stamp, "event")
    at = _at_utc(item, item.anchors["at"])
    _dated(event, "dtstart", at, item.timezone)
    if event["dtstart"].params.get("TZID"):
        zones.add(item.timezone)
    if item.duration:
        event.add("duration", item.duration)
    event.add("summary", ("[draft] " if item.draft else "") + (item.title or item.id))
    event.add("x-commcal-channels", ",".join(item.channels))
    _alarms(event, item)
    return event


def _alarms(event: Component, item: Item) -> None:
    """One VALARM per reminder, at the instant its posts go out. The trigger is absolute (UTC):
    a relative `-P1D` is nominal in RFC 5545 3.3.6 (as commcal's `-1d` is), but readers
    differ on it across a DST change; an instant reads one way everywhere."""
    from icalendar import Alarm

    from commcal.calendar.expand import step_time

    tz = zone(item.timezone)
    channels = ", ".join(item.channels)
    for step in item.steps:
        when = step_time(step, item.anchors, tz)
        if when is None:
            continue
        alarm = Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("trigger", when.astimezone(UTC))
        alarm.add("description", f"{item.title or item.id}: reminder {step.name} on {channels}")
        event.add_component(alarm)


def transitions(tz: tzinfo, start: datetime, end: datetime) -> list[datetime]:
    """The UTC instants in [start, end) at which `tz` changes its UTC offset (to the second)."""
    found = []
    here = start
    offset = here.astimezone(tz).utcoffset()
    while here < end:
        later = min(here + SCAN_STEP, end)
        changed = later.astimezone(tz).utcoffset()
        if changed != offset:
            lo, hi = here, later  # offset(lo) is the old one, offset(hi) the new one
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                mid = mid.replace(microsecond=0)
                if mid.astimezone(tz).utcoffset() == offset:
                    lo = mid
                else:
                    hi = mid
            found.append(hi)
            offset = changed
        here = later
    return found


def covered_years(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """From 1 January (UTC) of the window's first year to 1 January after its last, with a
    day's margin for zones ahead of or behind UTC."""
    first = (start - DAY).year
    last = (end + DAY).year
    return datetime(first, 1, 1, tzinfo=UTC), datetime(last + 1, 1, 1, tzinfo=UTC)


def vtimezone(tz_name: str, start: datetime, end: datetime) -> Component:
    """A VTIMEZONE for `tz_name` exact for the years [start, end) touches (module docstring)."""
    from icalendar import Timezone, TimezoneDaylight, TimezoneStandard

    tz = zone(tz_name)
    lo, hi = covered_years(start, end)
    component = Timezone()
    component.add("tzid", tz_name)

    def observance(at: datetime, before: timedelta, after: timedelta) -> None:
        local = at.astimezone(tz)
        # DAYLIGHT when the clocks go forward, whatever zoneinfo's dst() says: Dublin's and
        # Casablanca's "negative DST" (winter GMT as DST -1h) as a DAYLIGHT observance with
        # TO < FROM put dateutil's reading an hour off; tzdata's "rearguard" form does the same.
        part = TimezoneDaylight() if after > before else TimezoneStandard()
        # RFC 5545 3.6.5: DTSTART is the onset in local time read with TZOFFSETFROM.
        part.add("dtstart", (at + before).replace(tzinfo=None))
        part.add("tzoffsetfrom", before)
        part.add("tzoffsetto", after)
        part.add("tzname", local.tzname() or tz_name)
        component.add_component(part)

    def offset(at: datetime) -> timedelta:
        return at.astimezone(tz).utcoffset() or timedelta(0)

    # What holds at the start of the first year: the last real change before it, so that its
    # TZOFFSETFROM is true (dateutil reads a DAYLIGHT observance's DST amount as TO - FROM, and
    # a made-up FROM = TO put Lord Howe's 30-minute fold at the wrong instant); a zone that has
    # not changed for a year gets one observance with FROM = TO.
    earlier = transitions(tz, lo - timedelta(days=400), lo)
    if earlier:
        observance(earlier[-1], offset(earlier[-1] - timedelta(seconds=1)), offset(earlier[-1]))
    else:
        observance(lo, offset(lo), offset(lo))
    for at in transitions(tz, lo, hi):
        observance(at, offset(at - timedelta(seconds=1)), offset(at))
    return component
