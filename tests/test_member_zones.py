"""`send_at: local`: what `plan` and `validate` list is what `publish` sends, zone by zone.

Members in Athens, New York and Tokyo get a 09:00 letter at 09:00 on their own clocks: three
instants. `plan --format json` lists one delivery per member zone at that zone's instant (with
the number of members in it), and `publish --now` at each instant sends exactly that zone's
members to a real SMTP server on loopback. Inside a DST gap of the calendar's zone, the written
wall time (02:30 on New York's spring-forward day) is 02:30 in Tokyo and Athens, not the
gap-shifted 03:30.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from commcal.calendar.expand import occurrences, written_wall
from commcal.project import load_project
from commcal.timeutil import gap_wall, zone
from tests.conftest import MakeProject
from tests.test_community import Mailbox, config, free_port, run

MEMBERS = """\
email,name,timezone
eleni@example.gr,Eleni,Europe/Athens
nikos@example.gr,Nikos,Europe/Athens
sam@example.com,Sam,America/New_York
yui@example.jp,Yui,Asia/Tokyo
ren@example.jp,Ren,Asia/Tokyo
aoi@example.jp,Aoi,Asia/Tokyo
"""
BY_ZONE = {
    "Asia/Tokyo": {"yui@example.jp", "ren@example.jp", "aoi@example.jp"},
    "Europe/Athens": {"eleni@example.gr", "nikos@example.gr"},
    "America/New_York": {"sam@example.com"},
}
TEMPLATES = {"news/letter.j2": "{% block subject %}News{% endblock %}Hello {{ member.name }}\n"}

CASES = [
    # A winter day, the calendar in UTC: 09:00 in Tokyo (UTC+9), Athens (+2), New York (-5).
    pytest.param(
        "UTC",
        "2027-01-15 09:00",
        {
            "Asia/Tokyo": "2027-01-15T00:00:00Z",
            "Europe/Athens": "2027-01-15T07:00:00Z",
            "America/New_York": "2027-01-15T14:00:00Z",
        },
        id="winter",
    ),
    # 02:30 on New York's spring-forward day does not exist there: New York's members get it at
    # 03:30 EDT (the gap moves it forward in THEIR zone); Tokyo and Athens have no gap that day
    # and get it at 02:30 on their clocks (today's code sent it an hour late there).
    pytest.param(
        "America/New_York",
        "2027-03-14 02:30",
        {
            "Asia/Tokyo": "2027-03-13T17:30:00Z",
            "Europe/Athens": "2027-03-14T00:30:00Z",
            "America/New_York": "2027-03-14T07:30:00Z",
        },
        id="dst-gap",
    ),
]


def letter_project(make_project: MakeProject, port: int, tz: str, at: str) -> Path:
    root = make_project(
        config=config(port)
        .replace("timezone: UTC", f"timezone: {tz}")
        .replace("channels:", "publish: {max_late: 1h}\nchannels:"),
        calendars={
            "main.yaml": (
                "items:\n  - id: letter\n    kind: newsletter\n"
                f"    at: {at}\n    send_at: local\n    channels: [newsletter]\n"
                "    template: news/letter\n    audience: members\n"
            )
        },
        templates=TEMPLATES,
    )
    (root / "audiences").mkdir()
    (root / "audiences" / "members.csv").write_text(MEMBERS, encoding="utf-8")
    return root


def recipients(box: Mailbox) -> list[str]:
    with box.lock:
        return sorted(r for rcpts, _ in box.received for r in rcpts)


@pytest.mark.parametrize(("tz", "at", "instants"), CASES)
def test_plan_lists_each_member_zone_at_the_instant_publish_sends_it(
    make_project: MakeProject,
    smtp: tuple[int, Mailbox],
    tz: str,
    at: str,
    instants: dict[str, str],
) -> None:
    port, box = smtp
    root = letter_project(make_project, port, tz, at)
    window = ("--now", "2027-01-01T00:00:00Z", "--days", "90")

    result = run(root, "plan", "--format", "json", *window)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["deliveries"]
    assert [(r["member_timezone"], r["due_utc"], r["recipients"]) for r in rows] == [
        (name, instant, len(BY_ZONE[name])) for name, instant in instants.items()
    ]
    # Each row's own clock says the written time (or, in its own gap, the time after it).
    assert [r["due_member_local"][11:16] for r in rows] == (
        ["09:00"] * 3 if tz == "UTC" else ["02:30", "02:30", "03:30"]
    )
    assert len({r["id"] for r in rows}) == 3

    table = run(root, "plan", *window)
    assert table.exit_code == 0, table.output
    assert "3 members in Asia/Tokyo" in table.stdout
    assert "1 members in America/New_York" in table.stdout

    checked = run(root, "validate", "--format", "json", *window)
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["deliveries_checked"] == 3

    # Nothing leaves before the first zone's instant...
    first = datetime.fromisoformat(next(iter(instants.values())))
    early = run(root, "publish", "--now", (first - timedelta(seconds=1)).isoformat())
    assert early.exit_code == 0, early.output
    assert recipients(box) == []
    # ... and each zone's members leave at their own instant, no one else.
    sent: list[str] = []
    for name, instant in instants.items():
        result = run(root, "publish", "--now", instant)
        assert result.exit_code == 0, result.output
        new = recipients(box)
        for address in sent:
            new.remove(address)
        assert sorted(new) == sorted(BY_ZONE[name]), (name, result.output)
        sent = recipients(box)
    assert len(sent) == 6


def test_a_member_in_their_own_zones_gap_gets_it_after_the_gap(
    make_project: MakeProject,
) -> None:
    """03:30 in London on 28 March 2027 exists (after London's own gap); in Athens it falls in
    the gap (03:00-04:00 EET), so Athens members get it at 04:30 EEST (01:30 UTC), moved
    forward in THEIR zone. Tokyo gets 03:30 JST, New York (already on EDT) 03:30 EDT."""
    root = letter_project(make_project, free_port(), "Europe/London", "2027-03-28 03:30")
    result = run(root, "plan", "--format", "json", "--now", "2027-03-20T00:00:00Z", "--days", "14")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["deliveries"]
    assert {r["member_timezone"]: r["due_utc"] for r in rows} == {
        "Asia/Tokyo": "2027-03-27T18:30:00Z",
        "Europe/Athens": "2027-03-28T01:30:00Z",
        "America/New_York": "2027-03-28T07:30:00Z",
    }


@pytest.mark.parametrize(
    ("schedule", "written"),
    [
        ("at: 2027-03-14 02:30", "02:30"),
        ("at: 2027-03-14 03:30", "03:30"),  # the same instant, written after the gap
        ('schedule: {cron: "30 2 * * *", start: 2027-03-10}', "02:30"),
        ('schedule: {cron: "30 3 * * *", start: 2027-03-10}', "03:30"),
        ("schedule: {every: 1d, start: 2027-03-10 02:30}", "02:30"),
        ("dates: [2027-03-14 02:30]", "02:30"),
    ],
)
def test_the_written_wall_time_survives_the_calendar_zones_gap(
    make_project: MakeProject, schedule: str, written: str
) -> None:
    root = make_project(
        config="timezone: America/New_York\nchannels:\n  console: {type: console}\n",
        calendars={
            "c.yaml": f"items:\n  - id: tip\n    channels: [console]\n    template: posts/tip\n"
            f"    {schedule}\n"
        },
    )
    (item,) = load_project(root).calendars[0].items
    start = datetime(2027, 3, 14, 5, tzinfo=UTC)
    (occurrence,) = occurrences(item, start, start + timedelta(hours=5))
    assert occurrence.when == datetime(2027, 3, 14, 7, 30, tzinfo=UTC)
    assert f"{written_wall(item, occurrence.when):%H:%M}" == written


def test_gap_wall_names_only_times_inside_a_gap() -> None:
    new_york = zone("America/New_York")
    assert gap_wall(datetime(2027, 3, 14, 7, 30, tzinfo=UTC), new_york) == datetime(
        2027, 3, 14, 2, 30
    )
    # Just before and long after the gap, and in the autumn fold: no gap time.
    for when in (
        datetime(2027, 3, 14, 6, 59, tzinfo=UTC),
        datetime(2027, 3, 14, 8, 0, tzinfo=UTC),
        datetime(2027, 11, 7, 6, 30, tzinfo=UTC),
    ):
        assert gap_wall(when, new_york) is None
    # Samoa skipped 30 December 2011 entirely (a gap of a day).
    apia = zone("Pacific/Apia")
    assert gap_wall(datetime(2011, 12, 30, 10, 30, tzinfo=UTC), apia) == datetime(
        2011, 12, 30, 0, 30
    )
