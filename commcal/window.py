"""The time window a command looks at, from what was typed: `--days`, `--from`, `--to`,
`--next-week`, `--at`, `--now`. Dates and times without an offset are in the project's zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from commcal.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Span:
    """[start, end) in UTC."""

    start: datetime
    end: datetime


def in_range(value: datetime, option: str, text: str) -> datetime:
    """Refuse years no calendar means (a typo like 20026), before date arithmetic overflows."""
    from commcal.timeutil import FIRST_YEAR, LAST_YEAR

    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ConfigError(f"{option}: {text!r} is outside the years {FIRST_YEAR}-{LAST_YEAR}")
    return value


def instant(text: str, option: str) -> datetime:
    """An instant typed for `option` (ISO 8601, UTC unless an offset is given)."""
    from commcal.timeutil import parse_instant

    try:
        return in_range(parse_instant(text), option, text)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None


def local_instant(text: str, option: str, tz_name: str) -> datetime:
    """A date or date-time typed on the command line, in the project's zone unless it says."""
    from commcal.timeutil import parse_datetime, to_utc, zone

    value = parse_datetime(text)
    if value is None:
        raise ConfigError(f"{option}: {text!r} is not a date like 2026-12-01 or 2026-12-01T09:00")
    return to_utc(in_range(value, option, text), zone(tz_name))


def window(
    now: datetime,
    tz_name: str,
    *,
    days: int | None = None,
    start: str | None = None,
    end: str | None = None,
    next_week: bool = False,
) -> Span:
    """The window of `plan`: `days` (default 7) from `start` (or now), up to `end` (a date
    alone: the whole of that day), or Monday to Sunday of next week in the zone `tz_name`."""
    from commcal.timeutil import to_utc, zone

    tz = zone(tz_name)
    if next_week and (days is not None or start or end):
        raise ConfigError(
            "--next-week chooses the window itself: leave out --days, --from and --to"
        )
    if next_week:
        local = now.astimezone(tz).replace(tzinfo=None)
        monday = (local - timedelta(days=local.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        return Span(to_utc(monday + timedelta(days=7), tz), to_utc(monday + timedelta(days=14), tz))

    first = local_instant(start, "--from", tz_name) if start else now
    if end:
        last = local_instant(end, "--to", tz_name)
        if len(end.strip()) == 10:  # a date alone: the whole of that day
            last += timedelta(days=1)
    else:
        last = first + timedelta(days=days if days is not None else 7)
    if last <= first:
        raise ConfigError(f"--to ({end}) must be after the start of the window ({start or 'now'})")
    return Span(first, last)
