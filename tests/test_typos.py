"""Typos are errors, never silence (issue 15, point 19): a mistyped filter names the unknown item
or channel with the closest name and exits 2; a wrap-around weekday range means what cron users
mean; an item with `channels: []` is an error with file:line.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from commcal.calendar.cron import DAYS, parse_cron
from commcal.cli import app
from commcal.ledger import open_ledger
from tests.conftest import MakeProject

CONFIG = """\
timezone: UTC
locale: en
state: sqlite:///state.db
channels:
  hook:
    type: console
"""
CALENDAR = """\
calendar: community
items:
  - id: weekly-tip
    channels: [hook]
    template: posts/tip
    at: 2026-12-01 09:00
  - id: daily-note
    channels: [hook]
    template: posts/tip
    at: 2026-12-01 10:00
"""
NOW = "2026-12-01T10:00:30Z"


def run(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["-C", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def root(make_project: MakeProject) -> Path:
    return make_project(config=CONFIG, calendars={"c.yaml": CALENDAR})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["publish", "--only", "weekly-tipp"],
            "--only 'weekly-tipp': no such item; did you mean 'weekly-tip'?",
        ),
        (["publish", "--channel", "hok"], "--channel 'hok': no such channel; did you mean 'hook'?"),
        (
            ["publish", "--dry-run", "--only", "daily-notee"],
            "--only 'daily-notee': no such item; did you mean 'daily-note'?",
        ),
        (
            ["status", "--item", "daily-notee"],
            "--item 'daily-notee': no such item; did you mean 'daily-note'?",
        ),
        (["status", "--channel", "hok"], "--channel 'hok': no such channel; did you mean 'hook'?"),
        (
            ["status", "--calendar", "comunity"],
            "--calendar 'comunity': no such calendar; did you mean 'community'?",
        ),
        (["plan", "--kind", "psot"], "--kind 'psot': no such kind; did you mean 'post'?"),
        (
            ["plan", "--calendar", "comunity"],
            "--calendar 'comunity': no such calendar; did you mean 'community'?",
        ),
        (
            ["preview", "weekly-tip", "--channel", "hok"],
            "--channel 'hok': no such channel; did you mean 'hook'?",
        ),
    ],
)
def test_a_mistyped_filter_names_the_closest_and_exits_2(
    root: Path, args: list[str], message: str
) -> None:
    if args[0] == "status":  # status reads an existing ledger (it never creates one)
        open_ledger("sqlite:///state.db", project_dir=root).close()
    code, out, err = run(root, *args, "--now", NOW)
    assert (code, out) == (2, "")
    assert err == f"commcal: {message}\n"
    assert not (root / "state.db").exists() or args[0] == "status"


def test_nothing_is_sent_by_a_mistyped_publish(root: Path) -> None:
    code, out, _ = run(root, "publish", "--only", "weekly-tipp", "--now", NOW)
    assert code == 2 and "Tip:" not in out
    # Spelled right, it goes out.
    code, out, _ = run(root, "publish", "--only", "weekly-tip", "--now", NOW)
    assert code == 0 and "Tip: weekly-tip" in out


def test_status_accepts_an_item_the_ledger_knows_though_the_calendar_dropped_it(
    root: Path,
) -> None:
    assert run(root, "publish", "--now", NOW)[0] == 0
    (root / "calendars" / "c.yaml").write_text(
        CALENDAR.split("  - id: daily-note")[0], encoding="utf-8"
    )
    code, out, err = run(root, "status", "--item", "daily-note", "--format", "json")
    assert code == 0, err
    assert '"item": "daily-note"' in out


def test_preview_of_a_mistyped_item_suggests_the_closest(root: Path) -> None:
    code, _, err = run(root, "preview", "weekly-tipp", "--now", NOW)
    assert code == 1
    assert "no item 'weekly-tipp'" in err and "did you mean 'weekly-tip'?" in err


# -- cron weekday ranges that wrap round the week -----------------------------------------------


def weekdays_of(expression: str) -> set[str]:
    """Crontab day names (sun..sat) on which `expression` fires, by expanding two weeks."""
    cron = parse_cron(expression)
    first = date(2026, 11, 30)  # a Monday
    days = [first + timedelta(days=n) for n in range(14)]
    return {DAYS[(d.weekday() + 1) % 7] for d in days if cron.matches_day(d)}


def test_sat_sun_is_the_weekend_not_every_day() -> None:
    assert weekdays_of("0 10 * * SAT-SUN") == {"sat", "sun"}
    assert weekdays_of("0 10 * * FRI-MON") == {"fri", "sat", "sun", "mon"}
    assert weekdays_of("0 10 * * 6-0") == {"sat", "sun"}
    assert weekdays_of("0 10 * * 5-1/2") == {"fri", "sun"}  # Fri, Sun: every other day of 4


@pytest.mark.parametrize("first", range(7))
@pytest.mark.parametrize("last", range(7))
def test_every_weekday_range_fires_on_the_days_from_first_to_last(first: int, last: int) -> None:
    wrapped = (last - first) % 7
    expected = {DAYS[(first + n) % 7] for n in range(wrapped + 1)}
    assert weekdays_of(f"0 10 * * {DAYS[first].upper()}-{DAYS[last].upper()}") == expected


def test_plan_lists_a_weekend_cron_on_saturdays_and_sundays(make_project: MakeProject) -> None:
    root = make_project(
        config=CONFIG,
        calendars={
            "c.yaml": "items:\n  - id: weekend\n    channels: [hook]\n    template: posts/tip\n"
            "    schedule: {cron: '0 10 * * SAT-SUN'}\n"
        },
    )
    code, out, err = run(root, "plan", "--from", "2026-11-30", "--days", "14", "--format", "json")
    assert code == 0, err

    due = [d["due_utc"] for d in json.loads(out)["deliveries"]]
    assert due == [
        "2026-12-05T10:00:00Z",
        "2026-12-06T10:00:00Z",
        "2026-12-12T10:00:00Z",
        "2026-12-13T10:00:00Z",
    ]


# -- an item that goes nowhere ------------------------------------------------------------------


def test_an_empty_channels_list_is_an_error_with_file_and_line(make_project: MakeProject) -> None:
    root = make_project(
        config=CONFIG,
        calendars={
            "c.yaml": "items:\n  - id: lonely\n    channels: []\n    template: posts/tip\n"
            "    at: 2026-12-02 09:00\n"
        },
    )
    code, _, err = run(root, "validate", "--now", "2026-12-01T00:00:00Z")
    assert code == 1
    assert re.search(
        r"calendars/c\.yaml:3:15: error: item 'lonely' has an empty channels: list", err
    ), err
