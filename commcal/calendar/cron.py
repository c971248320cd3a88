"""Crontab expressions, matched on wall-clock time and turned into instants with `timeutil.to_utc`.

Why not call APScheduler's CronTrigger directly: measured here, `get_next_fire_time` costs
about 70 us a call (a year of a 1,000-item calendar would spend seconds in it), it fires twice in
an autumn fold (DESIGN.md), and `from_crontab` reads day-of-week numbers Monday-based (`0` =
Monday), where every crontab user means `0` = Sunday. Matching fields on the local wall clock and
converting each wall time once gives one firing per wall time (fold: the first instance; gap:
moved forward), and the tests prove it equal to CronTrigger on UTC, where neither issue arises.
Semantics kept from APScheduler: when both day-of-month and day-of-week are restricted, a day
must match both (classic cron fires on either); validation warns about that combination.
A day-of-week range may wrap round the week: `SAT-SUN` is Saturday and Sunday, `FRI-MON` Friday
to Monday (classic cron refuses them; APScheduler reads them as nothing or every day).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from commcal.timeutil import to_utc

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
FIELDS = (  # name, low, high, names (index 0 = low)
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("day of month", 1, 31, None),
    ("month", 1, 12, MONTHS),
    ("day of week", 0, 7, DAYS),
)
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class CronError(ValueError):
    """An invalid expression; the message says which field and what is allowed."""


@dataclass(frozen=True)
class Cron:
    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Monday .. 6 = Sunday (date.weekday())
    day_restricted: bool
    weekday_restricted: bool

    def matches_day(self, day: date) -> bool:
        return day.month in self.months and day.day in self.days and day.weekday() in self.weekdays

    def wall_times(self, first: date, last: date) -> Iterator[datetime]:
        """Every matching wall-clock time on the days first..last, in order."""
        day = first
        one = timedelta(days=1)
        while day <= last:
            if self.matches_day(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        yield datetime(day.year, day.month, day.day, hour, minute)
            day += one

    def instants(self, tz: tzinfo, start: datetime, end: datetime) -> list[datetime]:
        """UTC instants in [start, end) at which this expression fires in zone `tz`."""
        # A day either side covers every zone offset (at most 26 hours from UTC).
        first = (start - timedelta(days=1)).date()
        last = (end + timedelta(days=1)).date()
        found = {to_utc(wall, tz) for wall in self.wall_times(first, last)}
        return sorted(t for t in found if start <= t < end)


def parse_cron(expression: str) -> Cron:
    text = " ".join(expression.split())
    text = ALIASES.get(text.lower(), text)
    parts = text.split(" ")
    if len(parts) != 5:
        raise CronError(
            f"a cron expression has 5 fields (minute hour day-of-month month day-of-week), "
            f"this one has {len(parts)}"
        )
    values = []
    for part, (name, low, high, names) in zip(parts, FIELDS, strict=True):
        values.append(_field(part, name, low, high, names))
    minutes, hours, days, months, weekdays = values
    # crontab: 0 and 7 are Sunday; date.weekday(): Monday is 0.
    python_weekdays = frozenset((d - 1) % 7 for d in weekdays)
    return Cron(
        expression=expression,
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=python_weekdays,
        day_restricted=parts[2] != "*",
        weekday_restricted=parts[4] != "*",
    )


def _field(text: str, name: str, low: int, high: int, names: list[str] | None) -> set[int]:
    result: set[int] = set()
    for piece in text.split(","):
        if not piece:
            raise CronError(f"{name} field {text!r} has an empty list entry")
        step = 1
        stepped = "/" in piece
        if stepped:
            piece, step_text = piece.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name} step {step_text!r} must be a whole number above 0")
            step = int(step_text)
        if piece == "*":
            first, last = low, high
            if name == "day of week":
                last = 6  # 7 is Sunday again
        elif "-" in piece:
            a, b = piece.split("-", 1)
            first, last = _value(a, name, low, high, names), _value(b, name, low, high, names)
            if first > last and name == "day of week":
                # SAT-SUN, FRI-MON: the week wraps round, and that is what the writer means
                # (Saturday and Sunday), not "every day" (SUN-SAT) nor an error.
                days = [*range(first, 7), *range(0, last + 1)]
                result.update(days[::step])
                continue
            if first > last:
                raise CronError(f"{name} range {piece!r} runs backwards; write {b}-{a}")
        else:
            first = _value(piece, name, low, high, names)
            last = high if stepped else first  # `5/1` is 5-high, like `5-59/1` (crontab(5))
        result.update(range(first, last + 1, step))
    return result


def _value(text: str, name: str, low: int, high: int, names: list[str] | None) -> int:
    lowered = text.lower()
    if names and lowered[:3] in names and lowered in (lowered[:3], _long_name(lowered[:3])):
        return names.index(lowered[:3]) + low
    if not text.isdigit():
        allowed = f"{low}-{high}" + (f" or {names[0].upper()}-{names[-1].upper()}" if names else "")
        raise CronError(f"{name} value {text!r} is not a number ({allowed})")
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"{name} value {value} is outside {low}-{high}")
    return value


def _long_name(short: str) -> str:
    long_names = {
        "mon": "monday",
        "tue": "tuesday",
        "wed": "wednesday",
        "thu": "thursday",
        "fri": "friday",
        "sat": "saturday",
        "sun": "sunday",
    }
    return long_names.get(short, short)
