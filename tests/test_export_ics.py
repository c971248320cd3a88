"""`commcal export ics`: the feed a calendar app subscribes to lists exactly what `plan` lists.

The judge is a second, independent reader: `recurring-ical-events` expands the feed and must give
the same (item, channel, UTC instant) triples as `plan --format json`, over a year, across DST
changes, for calendars in Europe/Athens, Europe/London and Africa/Nairobi and members in other
zones. The VTIMEZONEs are checked against zoneinfo one minute either side of every transition,
with the TZIDs renamed so that no reader can fall back on its own copy of the zone.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import recurring_ical_events
from icalendar import Calendar, Timezone
from typer.testing import CliRunner

from commcal.cli import app
from commcal.export_ics import covered_years, transitions, vtimezone
from tests.conftest import MakeProject

# --from/--to are dates in the project's zone (Athens, UTC+2 in winter).
START = datetime(2025, 12, 31, 22, 0, tzinfo=UTC)
END = datetime(2026, 12, 31, 22, 0, tzinfo=UTC)
WINDOW = ("--from", "2026-01-01", "--to", "2026-12-31")
ZONES = [
    "Europe/Athens",
    "Europe/London",
    "Africa/Nairobi",
    "America/New_York",
    "Australia/Lord_Howe",  # a 30-minute change
    "Europe/Dublin",  # zoneinfo calls winter GMT a DST of -1h there
    "Africa/Casablanca",  # +01 with a month of +00 round Ramadan
    "Pacific/Chatham",  # +12:45 / +13:45, southern summer
]

CONFIG = """\
project: feed-test
timezone: Europe/Athens
locale: en
channels:
  console: {type: console}
  archive: {type: file, path: out.jsonl}
  newsletter:
    type: smtp
    host: 127.0.0.1
    from: "Community <hello@example.org>"
"""
MEMBERS = """\
email,name,timezone
eleni@example.gr,Eleni,Europe/Athens
sam@example.com,Sam,America/New_York
yui@example.jp,Yui,Asia/Tokyo
"""
ATHENS = """\
timezone: Europe/Athens
defaults: {channels: [console]}
items:
  - id: weekly
    template: posts/tip
    channels: [console, archive]
    schedule: {cron: "0 9 * * MON", skip: [2026-03-30, 2026-11-02]}
  - id: small-hours        # 03:30 is in Athens' spring gap and autumn fold
    template: posts/tip
    schedule: {cron: "30 3 * * *"}
  - id: fortnightly
    template: posts/tip
    schedule: {every: 14d, start: 2026-01-05 18:00}
  - id: six-hourly         # elapsed time, in UTC
    template: posts/tip
    schedule: {every: 6h, start: 2026-01-01 00:15}
  - id: monthly-first-weekday
    template: posts/tip
    draft: true
    schedule: {cron: "0 8 1-7 * TUE", until: 2026-10-01}
  - id: letter
    kind: newsletter
    template: news/letter
    channels: [newsletter, console]
    audience: members
    send_at: local
    schedule: {cron: "0 9 * * FRI"}
"""
LONDON = """\
timezone: Europe/London
defaults: {channels: [console]}
items:
  - id: meetup
    kind: event
    title: Spring meetup
    at: 2026-03-29 18:30
    duration: 2h
    reminders: [-7d, -1d, -1h]
    template: posts/tip
  - id: clock-change       # 01:30 on 29 March does not exist in London
    template: posts/tip
    dates: [2026-03-29 01:30, 2026-10-25 01:30, 2026-06-01 12:00]
  - id: daily
    template: posts/tip
    schedule: {every: 1d, start: 2026-03-20 07:45, until: 2026-04-10}
"""
NAIROBI = """\
timezone: Africa/Nairobi
defaults: {channels: [console]}
items:
  - id: tip
    template: posts/tip
    channels: [console, archive]
    schedule: {cron: "15 10 * * MON,THU"}
"""


def feed_project(make_project: MakeProject) -> Path:
    root = make_project(
        config=CONFIG,
        calendars={"athens.yaml": ATHENS, "london.yaml": LONDON, "nairobi.yaml": NAIROBI},
        templates={
            "posts/tip.j2": "Tip: {{ item.id }}\n",
            "news/letter.j2": "{% block subject %}News{% endblock %}Hello {{ member.name }}\n",
            "news/letter.console.j2": "This week's letter is out\n",
        },
    )
    (root / "audiences").mkdir()
    (root / "audiences" / "members.csv").write_text(MEMBERS, encoding="utf-8")
    return root


def run(root: Path, *args: str) -> object:
    return CliRunner().invoke(app, ["-C", str(root), *args])


def export(root: Path, *args: str) -> bytes:
    result = CliRunner().invoke(app, ["-C", str(root), "export", "ics", *WINDOW, *args])
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def planned(root: Path) -> Counter[tuple[str, str, datetime]]:
    result = CliRunner().invoke(app, ["-C", str(root), "plan", "--format", "json", *WINDOW])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["deliveries"]
    return Counter(
        (
            f"{r['calendar']}/{r['item']}",
            r["channel"],
            datetime.fromisoformat(r["due_utc"].replace("Z", "+00:00")),
        )
        for r in rows
    )


def renamed(data: bytes) -> bytes:
    """TZIDs no library knows: a reader must use the VTIMEZONE, not its own zone database."""
    for name in ZONES:
        data = data.replace(f"TZID:{name}".encode(), f"TZID:test-{name}".encode())
        data = data.replace(f"TZID={name}".encode(), f"TZID=test-{name}".encode())
    return data


def expanded(
    data: bytes, start: datetime = START, end: datetime = END
) -> Counter[tuple[str, str, datetime]]:
    calendar = Calendar.from_ical(data)
    found: Counter[tuple[str, str, datetime]] = Counter()
    for event in recurring_ical_events.of(calendar).between(start, end):
        if str(event["X-COMMCAL-ROLE"]) != "delivery":
            continue
        when = event["DTSTART"].dt.astimezone(UTC)
        for channel in str(event["X-COMMCAL-CHANNELS"]).split(","):
            found[(str(event["X-COMMCAL-ITEM"]), channel, when)] += 1
    return found


@pytest.mark.parametrize("rename", [False, True], ids=["zone-names", "vtimezone-only"])
def test_the_feed_expands_to_exactly_the_instants_plan_lists(
    make_project: MakeProject, rename: bool
) -> None:
    root = feed_project(make_project)
    data = export(root)
    expected = planned(root)
    got = expanded(renamed(data) if rename else data)
    assert got == expected
    # The year crosses both of Athens' and London's DST changes, and members' zones too.
    items = {key[0] for key in expected}
    assert len(items) == 10 and sum(expected.values()) > 2000
    assert {(k[0], k[1]) for k in expected} >= {("athens/letter", "newsletter")}


SMALL_HOURS = """\
defaults: {channels: [console]}
items:
  - id: night
    template: posts/tip
    schedule: {cron: "30 2 * * *"}
  - id: sunday
    template: posts/tip
    schedule: {cron: "0 9 * * SUN"}
  - id: every-third-day
    template: posts/tip
    schedule: {every: 3d, start: 2026-01-02 01:45}
  - id: twice-a-month
    template: posts/tip
    schedule: {cron: "15 0-3 1,15 * *"}
"""


@pytest.mark.parametrize(
    "name", ["America/New_York", "Australia/Lord_Howe", "Europe/Dublin", "Pacific/Chatham"]
)
def test_small_hours_in_more_zones_expand_to_the_plan(make_project: MakeProject, name: str) -> None:
    """Times near the changes (02:30 is in New York's gap; Lord Howe shifts by 30 minutes)."""
    root = make_project(
        config=f"timezone: {name}\nlocale: en\nchannels:\n  console: {{type: console}}\n",
        calendars={"main.yaml": SMALL_HOURS},
    )
    window = ("--from", "2026-01-01", "--to", "2026-12-31")
    result = CliRunner().invoke(app, ["-C", str(root), "plan", "--format", "json", *window])
    assert result.exit_code == 0, result.output
    expected = Counter(
        (f"main/{r['item']}", r["channel"], datetime.fromisoformat(r["due_utc"][:-1] + "+00:00"))
        for r in json.loads(result.stdout)["deliveries"]
    )
    feed = CliRunner().invoke(app, ["-C", str(root), "export", "ics", *window])
    assert feed.exit_code == 0, feed.output
    tz = ZoneInfo(name)
    span = (datetime(2026, 1, 1, tzinfo=tz), datetime(2027, 1, 1, tzinfo=tz))
    for data in (feed.stdout_bytes, renamed(feed.stdout_bytes)):
        assert expanded(data, *span) == expected
    assert len(expected) == 365 + 52 + 122 + 24 * 4


def vevents(data: bytes) -> dict[str, list[object]]:
    by_item: dict[str, list[object]] = {}
    for event in Calendar.from_ical(data).walk("VEVENT"):
        if str(event["X-COMMCAL-ROLE"]) == "delivery":
            by_item.setdefault(str(event["X-COMMCAL-ITEM"]), []).append(event)
    return by_item


def test_plain_recurrences_are_one_entry_and_the_rest_single_entries(
    make_project: MakeProject,
) -> None:
    data = export(feed_project(make_project))
    by_item = vevents(data)
    [weekly] = by_item["athens/weekly"]
    assert str(weekly["X-COMMCAL-CHANNELS"]) == "archive,console"  # one entry for both channels
    assert weekly["RRULE"]["FREQ"] == ["DAILY"] and weekly["RRULE"]["BYDAY"] == ["MO"]
    assert weekly["DTSTART"].params["TZID"] == "Europe/Athens"
    skipped = sorted(d.dt for e in [weekly["EXDATE"]] for d in e.dts)
    assert [f"{d:%Y-%m-%d %H:%M}" for d in skipped] == ["2026-03-30 09:00", "2026-11-02 09:00"]
    [six] = by_item["athens/six-hourly"]
    assert six["RRULE"]["FREQ"] == ["HOURLY"] and six["DTSTART"].to_ical().endswith(b"Z")
    [first_tuesday] = by_item["athens/monthly-first-weekday"]
    assert str(first_tuesday["STATUS"]) == "TENTATIVE"
    assert str(first_tuesday["SUMMARY"]).startswith("[draft] ")
    # 03:30 daily meets Athens' gap and fold: no RRULE a reader could take two ways.
    assert all("RRULE" not in e for e in by_item["athens/small-hours"])
    assert len(by_item["athens/small-hours"]) == 365
    # Members in three zones: one weekly series in each zone's own local time.
    letters = {e["DTSTART"].params.get("TZID"): e for e in by_item["athens/letter"]}
    assert set(letters) == {"Europe/Athens", "America/New_York", "Asia/Tokyo"}
    assert f"{letters['Asia/Tokyo']['DTSTART'].dt:%H:%M}" == "09:00"
    assert "newsletter" not in str(letters["Asia/Tokyo"]["X-COMMCAL-CHANNELS"]).split(",")[1:]
    assert "members in Asia/Tokyo" in str(letters["Asia/Tokyo"]["DESCRIPTION"])
    # The event with its duration; its reminders point at it.
    [meetup] = [
        e for e in Calendar.from_ical(data).walk("VEVENT") if str(e["X-COMMCAL-ROLE"]) == "event"
    ]
    assert meetup["DURATION"].dt == timedelta(hours=2)
    assert f"{meetup['DTSTART'].dt:%Y-%m-%d %H:%M}" == "2026-03-29 18:30"
    reminders = by_item["london/meetup"]
    assert len(reminders) == 3 and {str(r["RELATED-TO"]) for r in reminders} == {str(meetup["UID"])}
    # Its alarms fire when the reminders go out: the event is at 18:30 BST (17:30Z); -7d and
    # -1d keep 18:30 on the wall clock, which is still GMT then; -1h is elapsed time.
    alarms = sorted(a["TRIGGER"].dt for a in meetup.walk("VALARM"))
    assert alarms == sorted(r["DTSTART"].dt.astimezone(UTC) for r in reminders)
    assert [f"{a:%m-%d %H:%M}" for a in alarms] == ["03-22 18:30", "03-28 18:30", "03-29 16:30"]
    # 01:30 on London's spring-forward day moves forward to 02:30 BST, which reads one way.
    gap = [e for e in by_item["london/clock-change"] if e["DTSTART"].dt.month == 3]
    assert [e["DTSTART"].to_ical() for e in gap] == [b"20260329T023000"]
    assert [e["DTSTART"].dt.astimezone(UTC) for e in gap] == [
        datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    ]


def test_uids_survive_an_unrelated_edit_and_an_unchanged_export_is_identical(
    make_project: MakeProject,
) -> None:
    root = feed_project(make_project)
    before = export(root)
    assert export(root) == before  # DTSTAMP is the file's, not the clock's
    path = root / "calendars" / "nairobi.yaml"
    path.write_text(
        NAIROBI.replace("MON,THU", "TUE")
        + "  - id: new-one\n    template: posts/tip\n    at: 2026-06-01 09:00\n",
        encoding="utf-8",
    )
    after = export(root)

    def uids(data: bytes) -> dict[str, set[str]]:
        return {k: {str(e["UID"]) for e in v} for k, v in vevents(data).items()}  # type: ignore[attr-defined]

    old, new = uids(before), uids(after)
    for item in old:
        if item != "nairobi/tip":
            assert new[item] == old[item], item
    assert new["nairobi/tip"] == old["nairobi/tip"]  # a changed rule updates the same entry
    assert "nairobi/new-one" in new
    every = [u for v in new.values() for u in v]
    assert len(every) == len(set(every)) and all(u.endswith("@feed-test.commcal") for u in every)


def offsets_check(
    component: Timezone, name: str, years: tuple[int, int], alias: str, every: int = 1
) -> list[str]:
    """Where the VTIMEZONE, read back by icalendar (renamed `alias`: icalendar caches zones by
    TZID), disagrees with zoneinfo one minute either side of each transition and at noon UTC
    every `every` days (which would catch a transition the scan missed)."""
    data = component.to_ical().replace(f"TZID:{name}".encode(), f"TZID:{alias}".encode())
    tz = Timezone.from_ical(data).to_tz()
    real = ZoneInfo(name)
    lo, hi = datetime(years[0], 1, 1, tzinfo=UTC), datetime(years[1] + 1, 1, 1, tzinfo=UTC)
    probes = [lo + timedelta(hours=12 + 24 * n) for n in range(0, (hi - lo).days - 1, every)]
    for at in transitions(real, lo, hi):
        probes += [at - timedelta(minutes=1), at + timedelta(minutes=1)]
    return [
        f"{p:%Y-%m-%d %H:%M}Z: {p.astimezone(tz).utcoffset()} != {p.astimezone(real).utcoffset()}"
        for p in probes
        if p.astimezone(tz).utcoffset() != p.astimezone(real).utcoffset()
    ]


@pytest.mark.parametrize("name", ZONES)
def test_vtimezone_gives_zoneinfo_offsets_either_side_of_every_transition(name: str) -> None:
    start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2027, 11, 1, tzinfo=UTC)
    component = vtimezone(name, start, end)
    assert offsets_check(component, name, (2026, 2027), f"ours-{name}") == []
    lo, hi = covered_years(start, end)
    count = len(transitions(ZoneInfo(name), lo, hi))
    assert count == (0 if name == "Africa/Nairobi" else 4)
    # And through a reader's expansion: an hourly event in the renamed zone lands where
    # zoneinfo says each (unambiguous) local time is.
    real = ZoneInfo(name)
    alias = f"expanded-{name}"
    text = component.to_ical().replace(f"TZID:{name}".encode(), f"TZID:{alias}".encode()).decode()
    walls = [
        (at + delta).astimezone(real).replace(tzinfo=None)
        for at in transitions(real, lo, hi)
        for delta in (timedelta(hours=-2), timedelta(hours=2))
    ] or [datetime(2026, 6, 1, 12, 0)]
    events = "".join(
        f"BEGIN:VEVENT\r\nUID:{n}\r\nDTSTAMP:20260101T000000Z\r\n"
        f"DTSTART;TZID={alias}:{w:%Y%m%dT%H%M%S}\r\nEND:VEVENT\r\n"
        for n, w in enumerate(walls)
    )
    feed = Calendar.from_ical(
        f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:t\r\n{text}{events}END:VCALENDAR\r\n"
    )
    got = sorted(e["DTSTART"].dt.astimezone(UTC) for e in recurring_ical_events.of(feed).all())
    assert got == sorted(w.replace(tzinfo=real).astimezone(UTC) for w in walls)


def test_every_zone_in_the_database() -> None:
    """Each IANA zone's VTIMEZONE for 2026-2027, read back, against zoneinfo itself."""
    from zoneinfo import available_timezones

    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 12, 1, tzinfo=UTC)
    wrong = {}
    for name in sorted(available_timezones()):
        found = offsets_check(vtimezone(name, start, end), name, (2026, 2027), f"all-{name}", 7)
        if found:
            wrong[name] = found[:2]
    assert wrong == {}


def test_the_onset_is_the_local_time_before_the_jump() -> None:
    """RFC 5545 3.6.5: DTSTART read with TZOFFSETFROM. Athens jumps at 01:00Z: 03:00 EET."""
    text = vtimezone("Europe/Athens", START, END).to_ical().decode()
    assert "DTSTART:20260329T030000\r\nTZNAME:EEST\r\nTZOFFSETFROM:+0200" in text
    assert "DTSTART:20261025T040000\r\nTZNAME:EET\r\nTZOFFSETFROM:+0300" in text


def test_the_check_catches_icalendars_own_vtimezone() -> None:
    """The check above can fail: icalendar 7.3.2's from_tzinfo writes the onset an hour off."""
    from icalendar import __version__

    if __version__ != "7.3.2":
        pytest.skip("the known from_tzinfo onset bug is pinned to icalendar 7.3.2")
    theirs = Timezone.from_tzinfo(
        ZoneInfo("Europe/Athens"), first_date=datetime(2026, 1, 1), last_date=datetime(2027, 12, 31)
    )
    assert offsets_check(theirs, "Europe/Athens", (2026, 2027), "theirs") != []


def test_export_writes_a_file_and_refuses_a_mistyped_channel(
    make_project: MakeProject, tmp_path: Path
) -> None:
    root = feed_project(make_project)
    target = tmp_path / "plan.ics"
    result = CliRunner().invoke(
        app, ["-C", str(root), "export", "ics", *WINDOW, "--channel", "archive", "-o", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {target}" in result.stderr
    channels = {
        str(e["X-COMMCAL-CHANNELS"])
        for e in Calendar.from_ical(target.read_bytes()).walk("VEVENT")
        if str(e["X-COMMCAL-ROLE"]) == "delivery"
    }
    assert channels == {"archive"}
    bad = CliRunner().invoke(app, ["-C", str(root), "export", "ics", "--channel", "archiv"])
    assert bad.exit_code == 2
    assert "--channel 'archiv': no such channel" in bad.stderr
