"""Durations, local times and zones, written the way calendars write them.

Rules (DESIGN.md section 3, "Time is right"): stored times are UTC; a wall-clock time in a named
zone that falls in a DST gap moves forward by the gap; one that falls in a fold means its first
instance. `aware + timedelta` keeps wall-clock arithmetic and drops `fold`, so arithmetic on
instants happens in UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import cache, lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Schedulable years: beyond these a zone conversion overflows datetime (year 1, year 9999), and
# nobody schedules a post for then; such a year is a typo.
FIRST_YEAR, LAST_YEAR = 1970, 2999
_DURATION = re.compile(
    r"^\s*(?P<sign>[+-])?\s*(?:(?P<w>\d+)w)?\s*(?:(?P<d>\d+)d)?\s*(?:(?P<h>\d+)h)?\s*"
    r"(?:(?P<m>\d+)m(?:in)?)?\s*(?:(?P<s>\d+)s)?\s*$"
)


def utc_now() -> datetime:
    """The clock adapters read when none is given (tests pass their own)."""
    return datetime.now(UTC)


def parse_duration(text: str) -> timedelta | None:
    """`90m`, `1h30m`, `-2d`, `2w`, `45s` or `0`; None when the text is not a duration."""
    text = text.strip()
    if text in ("0", "+0", "-0"):
        return timedelta(0)
    match = _DURATION.match(text)
    if not match or not any(match.group(k) for k in "wdhms"):
        return None
    parts = {k: int(match.group(k) or 0) for k in "wdhms"}
    value = timedelta(
        weeks=parts["w"], days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"]
    )
    return -value if match.group("sign") == "-" else value


def format_duration(value: timedelta) -> str:
    """The inverse of parse_duration: `-1d`, `1h30m`, `0`."""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return sign + "".join(out)


@cache
@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """An IANA zone; raises KeyError for an unknown name (callers turn it into a Problem)."""
    if not name or name != name.strip():
        raise KeyError(name)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise KeyError(name) from exc


def zone_suggestions(name: str) -> list[str]:
    import difflib
    from zoneinfo import available_timezones

    names = sorted(available_timezones())
    lowered = {n.lower(): n for n in names}
    if name.lower() in lowered:
        return [lowered[name.lower()]]
    tail = {n.rsplit("/", 1)[-1].lower(): n for n in names}
    if name.lower().replace(" ", "_") in tail:
        return [tail[name.lower().replace(" ", "_")]]
    return difflib.get_close_matches(name, names, n=3, cutoff=0.6)


def to_utc(local: datetime, tz: tzinfo) -> datetime:
    """The instant of a naive wall-clock time in `tz`: gap moves forward, fold takes the first."""
    if local.tzinfo is not None:
        return local.astimezone(UTC)
    # fold=0 is the first instance in a fold; in a gap zoneinfo applies the offset from before the
    # transition, which lands the instant as far past the gap's start as the time was into it.
    return local.replace(tzinfo=tz, fold=0).astimezone(UTC)


def local_wall(when: datetime, tz: tzinfo) -> datetime:
    """The wall-clock time (naive) of an instant in `tz`."""
    return when.astimezone(tz).replace(tzinfo=None)


def gap_wall(when: datetime, tz: tzinfo) -> datetime | None:
    """The wall-clock time inside a DST gap that `to_utc` moved forward to `when`, or None.

    Both 02:30 (in the gap) and 03:30 on New York's spring-forward day are 07:30 UTC: the
    instant cannot tell which was written, so callers that need the written time (`send_at:
    local`) check this candidate against the schedule (`calendar.expand.written_wall`).
    """
    # The wall clock read with the offset of a day before: the offset before the transition
    # when one happened within that day (gaps are at most a day long: Samoa, 2011).
    day = timedelta(days=1)
    candidate = local_wall(when - day, tz) + day
    if candidate == local_wall(when, tz) or to_utc(candidate, tz) != when.astimezone(UTC):
        return None
    return candidate


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})(?:[T ]+(?P<time>\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?))?"
    r"\s*(?P<offset>Z|[+-]\d{2}:?\d{2})?$"
)


def parse_date(text: str) -> date | None:
    if not _DATE.match(text.strip()):
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def parse_datetime(text: str) -> datetime | None:
    """`2026-12-10 18:00`, `2026-12-10T18:00:00`, `2026-12-10` (midnight) or with `Z`/`+02:00`.

    Returns a naive datetime (a wall-clock time in the calendar's zone) unless an offset was given.
    """
    match = _DATETIME.match(text.strip())
    if not match:
        return None
    try:
        day = date.fromisoformat(match.group("date"))
        clock = time.fromisoformat(_pad(match.group("time"))) if match.group("time") else time(0)
    except ValueError:
        return None
    value = datetime.combine(day, clock)
    offset = match.group("offset")
    if offset:
        if offset == "Z":
            return value.replace(tzinfo=UTC)
        sign = 1 if offset[0] == "+" else -1
        digits = offset[1:].replace(":", "")
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        from datetime import timezone

        return value.replace(tzinfo=timezone(sign * delta))
    return value


def _pad(clock: str) -> str:
    return clock if len(clock.split(":")[0]) == 2 else "0" + clock


def parse_instant(text: str) -> datetime:
    """A command-line instant (`--now`), ISO 8601, UTC unless an offset is given. ValueError."""
    value = parse_datetime(text)
    if value is None:
        raise ValueError(f"{text!r} is not a date-time like 2026-12-01T09:00:00Z")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso_utc(when: datetime) -> str:
    """UTC as `2026-12-01T09:00:00Z`: the one spelling used in ids, JSON and the ledger."""
    # isoformat is C code, a third faster than strftime, and ids are built from this text for
    # every delivery of a plan (bench/plan_year.py).
    utc = when if when.tzinfo is UTC else when.astimezone(UTC)
    return utc.isoformat(timespec="seconds")[:19] + "Z"
