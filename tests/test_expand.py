"""Schedules -> instants, checked against a plain zoneinfo oracle across zones and DST changes."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from commcal.calendar.cron import parse_cron
from commcal.calendar.expand import occurrences
from commcal.calendar.model import At, CronSchedule, Every, Item, Step, Window
from commcal.errors import Pos

ZONES = [
    "Europe/Athens",
    "Africa/Nairobi",
    "America/New_York",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "America/Santiago",  # southern hemisphere
    "Pacific/Auckland",
    "UTC",
]


def item(schedule: object = None, tz: str = "Europe/Athens", **kw: object) -> Item:
    values: dict[str, object] = {
        "calendar": "c",
        "id": "i",
        "kind": "post",
        "channels": ("console",),
        "template": "t",
        "vars": {},
        "draft": False,
        "timezone": tz,
        "locale": "en",
        "pos": Pos("c.yaml", 1, 1),
        "schedule": schedule,
    }
    values.update(kw)
    return Item(**values)  # type: ignore[arg-type]


def oracle(wall: datetime, tz: str) -> datetime:
    """What a person means by a wall-clock time: first instance in a fold, moved on in a gap."""
    return wall.replace(tzinfo=ZoneInfo(tz), fold=0).astimezone(UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_athens_0330_daily_fires_once_a_day_across_both_dst_changes() -> None:
    cron = item(CronSchedule(parse_cron("30 3 * * *")))
    autumn = [o.when for o in occurrences(cron, utc(2026, 10, 24), utc(2026, 10, 27))]
    assert autumn == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]
    spring = [o.when for o in occurrences(cron, utc(2027, 3, 27), utc(2027, 3, 30))]
    # 03:30 does not exist on 2027-03-28: it moves forward to 04:30 EEST = 01:30Z.
    assert spring == [utc(2027, 3, 27, 1, 30), utc(2027, 3, 28, 1, 30), utc(2027, 3, 29, 0, 30)]


@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize("clock", ["02:30", "03:30", "00:00", "01:45", "09:00", "23:30"])
def test_daily_cron_matches_oracle_over_three_years(tz: str, clock: str) -> None:
    hour, minute = map(int, clock.split(":"))
    found = [
        o.when
        for o in occurrences(
            item(CronSchedule(parse_cron(f"{minute} {hour} * * *")), tz),
            utc(2026, 1, 1),
            utc(2029, 1, 1),
        )
    ]
    day, expected = date(2025, 12, 30), []
    while day <= date(2029, 1, 2):
        when = oracle(datetime.combine(day, time(hour, minute)), tz)
        if utc(2026, 1, 1) <= when < utc(2029, 1, 1):
            expected.append(when)
        day += timedelta(days=1)
    assert found == sorted(set(expected))
    local_days = [w.astimezone(ZoneInfo(tz)).date() for w in found]
    assert len(local_days) == len(set(local_days)), "exactly one firing per local day"


@pytest.mark.parametrize("tz", ZONES)
def test_hourly_cron_never_repeats_an_instant_and_skips_nothing_but_gaps(tz: str) -> None:
    found = [
        o.when
        for o in occurrences(
            item(CronSchedule(parse_cron("15 * * * *")), tz), utc(2026, 1, 1), utc(2027, 1, 1)
        )
    ]
    assert found == sorted(set(found))
    # every wall-clock hh:15 of the year fires once, except those inside a gap that collapse
    assert len(found) >= 365 * 24 - 2


def test_cron_weekday_numbers_are_crontab_not_apscheduler() -> None:
    monday = parse_cron("0 9 * * 1")
    sunday = parse_cron("0 9 * * 0")
    assert monday.weekdays == parse_cron("0 9 * * MON").weekdays == frozenset({0})
    assert sunday.weekdays == parse_cron("0 9 * * 7").weekdays == frozenset({6})


def test_window_start_until_and_skip_are_local_dates() -> None:
    window = Window(datetime(2026, 12, 1), datetime(2026, 12, 29), frozenset({date(2026, 12, 14)}))
    found = occurrences(
        item(CronSchedule(parse_cron("0 9 * * MON"), window)), utc(2026, 11, 1), utc(2027, 2, 1)
    )
    assert [o.when.astimezone(ZoneInfo("Europe/Athens")).date() for o in found] == [
        date(2026, 12, 7),
        date(2026, 12, 21),
        date(2026, 12, 28),
    ]


def test_every_whole_days_keeps_the_wall_clock_across_dst() -> None:
    every = item(Every(timedelta(days=1), datetime(2026, 10, 23, 9, 0)), "Europe/Athens")
    found = occurrences(every, utc(2026, 10, 23), utc(2026, 10, 28))
    assert {o.when.astimezone(ZoneInfo("Europe/Athens")).hour for o in found} == {9}
    assert len(found) == 5


def test_every_hours_is_elapsed_time() -> None:
    every = item(Every(timedelta(hours=5), datetime(2026, 10, 24, 22, 0)), "Europe/Athens")
    found = [o.when for o in occurrences(every, utc(2026, 10, 24), utc(2026, 10, 26))]
    assert all(b - a == timedelta(hours=5) for a, b in itertools.pairwise(found))


def test_at_in_gap_moves_forward_and_in_fold_takes_first() -> None:
    gap = occurrences(item(At(datetime(2027, 3, 28, 3, 30))), utc(2027, 1, 1), utc(2028, 1, 1))
    fold = occurrences(item(At(datetime(2026, 10, 25, 3, 30))), utc(2026, 1, 1), utc(2027, 1, 1))
    assert [o.when for o in gap] == [utc(2027, 3, 28, 1, 30)]
    assert [o.when for o in fold] == [utc(2026, 10, 25, 0, 30)]


def test_event_reminders_whole_days_keep_wall_clock_hours_are_elapsed() -> None:
    event = item(
        kind="event",
        anchors={"at": datetime(2026, 11, 1, 18, 0)},
        schedule=None,
        steps=tuple(
            Step(n, "at", o, None, "t", Pos("c.yaml"))
            for n, o in [
                ("-7d", timedelta(days=-7)),
                ("-1h", timedelta(hours=-1)),
                ("start", timedelta(0)),
            ]
        ),
    )
    found = occurrences(event, utc(2026, 10, 1), utc(2026, 12, 1))
    athens = ZoneInfo("Europe/Athens")
    # a week before, across the 25 October change, still at 18:00 local
    assert [o.when.astimezone(athens).strftime("%m-%d %H:%M") for o in found] == [
        "10-25 18:00",
        "11-01 17:00",
        "11-01 18:00",
    ]
    assert [o.step for o in found] == ["-7d", "-1h", "start"]
