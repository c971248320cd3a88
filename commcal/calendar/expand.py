"""Schedules -> occurrences (UTC instants) in a window. `plan`, `publish` and `run` all use this.

Offsets of whole days (`-7d` before an event, `every: 1d`) keep the wall-clock time, as a person
reading the calendar expects ("a week before, at the same time"); shorter offsets are elapsed time
and are computed in UTC, where DST cannot bend them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from commcal.calendar.model import At, CronSchedule, Dates, Every, Item, Step, Window
from commcal.timeutil import gap_wall, local_wall, to_utc, zone

DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Occurrence:
    item: Item
    when: datetime  # UTC
    step: str = ""
    template: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


def occurrences(item: Item, start: datetime, end: datetime) -> list[Occurrence]:
    """Every occurrence of `item` in [start, end), in time order."""
    tz = zone(item.timezone)
    if item.steps:
        return _steps(item, tz, start, end)
    schedule = item.schedule
    if schedule is None:
        return []
    if isinstance(schedule, At):
        times = [to_utc(schedule.when, tz)]
    elif isinstance(schedule, Dates):
        times = [to_utc(t, tz) for t in schedule.times]
    elif isinstance(schedule, CronSchedule):
        lo, hi = _clip(schedule.window, tz, start, end)
        times = _skip(schedule.cron.instants(tz, lo, hi), schedule.window, tz) if lo < hi else []
    else:
        times = _skip(list(_every(schedule, tz, start, end)), schedule.window, tz)
    return [
        Occurrence(item, t, template=item.template) for t in sorted(set(times)) if start <= t < end
    ]


def _clip(window: Window, tz: tzinfo, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    lo, hi = start, end
    if window.start is not None:
        lo = max(lo, to_utc(window.start, tz))
    if window.until is not None:
        hi = min(hi, to_utc(window.until, tz))
    return lo, hi


def _skip(times: list[datetime], window: Window, tz: tzinfo) -> list[datetime]:
    if not window.skip:
        return times
    return [t for t in times if t.astimezone(tz).date() not in window.skip]


def _every(schedule: Every, tz: tzinfo, start: datetime, end: datetime) -> Iterator[datetime]:
    lo, hi = _clip(schedule.window, tz, start, end)
    first = to_utc(schedule.start, tz)
    lo = max(lo, first)
    if lo >= hi:
        return
    step = schedule.interval
    if step % DAY == timedelta(0):
        # Whole days: the same wall-clock time each time, whatever DST does in between.
        wall = (
            schedule.start.replace(tzinfo=None)
            if schedule.start.tzinfo is None
            else (local_wall(schedule.start, tz))
        )
        days = step // DAY
        skipped = max(0, (lo - first) // DAY // days - 1)
        wall += skipped * step
        while True:
            instant = to_utc(wall, tz)
            if instant >= hi:
                return
            if instant >= lo:
                yield instant
            wall += step
    else:
        index = max(0, math.ceil((lo - first) / step))
        instant = first + index * step
        while instant < hi:
            yield instant
            instant += step


def step_time(step: Step, anchors: Mapping[str, datetime], tz: tzinfo) -> datetime | None:
    """The UTC instant of an event reminder or contest step."""
    if not step.anchor:
        return to_utc(step.when, tz) if step.when else None
    anchor = anchors.get(step.anchor)
    if anchor is None:
        return None
    if step.offset % DAY == timedelta(0):
        wall = anchor if anchor.tzinfo is None else local_wall(anchor, tz)
        return to_utc(wall + step.offset, tz)
    return to_utc(anchor, tz) + step.offset


def _steps(item: Item, tz: tzinfo, start: datetime, end: datetime) -> list[Occurrence]:
    anchors_utc = {k: to_utc(v, tz) for k, v in item.anchors.items()}
    found = []
    for step in item.steps:
        when = step_time(step, item.anchors, tz)
        if when is None or not start <= when < end:
            continue
        extra: dict[str, Any] = {f"{k}_at": v for k, v in anchors_utc.items()}
        extra["event_at" if item.kind == "event" else "step_at"] = anchors_utc.get("at", when)
        extra["offset"] = step.offset
        found.append(Occurrence(item, when.astimezone(UTC), step.name, step.template, extra))
    return sorted(found, key=lambda o: o.when)


def written_wall(item: Item, when: datetime) -> datetime:
    """The wall-clock time (naive, in the item's zone) the calendar wrote for the occurrence at
    `when`. It differs from `when`'s own wall clock only inside a DST gap: 02:30 written on New
    York's spring-forward day is due at 03:30 there, but at 02:30 in a member's own zone
    (`send_at: local`), not at 03:30. When both a gap time and the time after it are written
    (an hourly cron), they are one occurrence and the first one is the written time."""
    tz = zone(item.timezone)
    shown = local_wall(when, tz)
    candidate = gap_wall(when, tz)
    if candidate is None or not _writes(item, candidate):
        return shown
    return candidate


def _writes(item: Item, wall: datetime) -> bool:
    """Whether the item's schedule itself names the wall-clock time `wall`."""
    if item.steps:
        for step in item.steps:
            if not step.anchor:
                if step.when is not None and step.when.tzinfo is None and step.when == wall:
                    return True
                continue
            anchor = item.anchors.get(step.anchor)
            if anchor is None or anchor.tzinfo is not None or step.offset % DAY:
                continue  # shorter offsets are elapsed time, not a written wall clock
            if anchor + step.offset == wall:
                return True
        return False
    schedule = item.schedule
    if isinstance(schedule, At):
        return schedule.when.tzinfo is None and schedule.when == wall
    if isinstance(schedule, Dates):
        return any(t.tzinfo is None and t == wall for t in schedule.times)
    if isinstance(schedule, CronSchedule):
        cron = schedule.cron
        return (
            cron.matches_day(wall.date())
            and wall.hour in cron.hours
            and wall.minute in cron.minutes
        ) and wall.second == 0
    if isinstance(schedule, Every) and schedule.interval % DAY == timedelta(0):
        start = schedule.start
        if start.tzinfo is not None:
            return False
        return wall >= start and (wall - start) % schedule.interval == timedelta(0)
    return False
