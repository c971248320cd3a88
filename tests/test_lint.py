"""Cadence lint in `commcal validate` (issue 12, point 4): each seeded problem of a fixture
calendar (gap, spacing, per-day, quiet hours, staffed hours, blackout, rate budget) is found at
its item's file:line, an item opts out of a rule, typos in the rules are did-you-mean errors,
and the bundled example project has no finding."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from commcal.cli import app
from commcal.lint import RateLimits, lint_findings
from commcal.lintconfig import RESULT_RULES, RULES
from commcal.project import load_project
from commcal.window import instant
from tests.conftest import MakeProject

ROOT = Path(__file__).resolve().parent.parent
NOW = "2026-12-01T00:00:00Z"

CONFIG = """\
timezone: Europe/Athens
locale: en
channels:
  chat: {type: console}
  news: {type: console}
  hook:
    type: discord
    webhook_url: ${DISCORD_WEBHOOK_URL}
lint:
  max_silence: {limit: 3d, channels: [news]}
  min_spacing: {limit: 1h, channels: [chat]}
  max_per_day: {limit: 2, channels: [chat]}
  quiet_hours: "22:00-07:00"
  blackout: [2026-12-12]
"""

# One seeded problem per rule; every item's time is Athens time (the calendar's zone).
CALENDAR = """\
staff:
  - mon-fri 09:00-17:00
items:
  - id: daily-news
    channels: [news]
    template: posts/tip
    schedule:
      every: 1d
      start: 2026-12-01 09:00
      skip: [2026-12-06, 2026-12-07, 2026-12-08, 2026-12-09, 2026-12-12]
  - id: early
    channels: [chat]
    template: posts/tip
    at: 2026-12-02 10:00
  - id: crowding
    channels: [chat]
    template: posts/tip
    at: 2026-12-02 10:20
  - id: morning
    channels: [chat]
    template: posts/tip
    at: 2026-12-03 09:00
  - id: noon
    channels: [chat]
    template: posts/tip
    at: 2026-12-03 12:00
  - id: afternoon
    channels: [chat]
    template: posts/tip
    at: 2026-12-03 15:00
  - id: night-owl
    channels: [chat]
    template: posts/tip
    at: 2026-12-04 23:30
  - id: saturday-ama
    channels: [chat]
    template: posts/tip
    replies: expected
    at: 2026-12-05 12:00
  - id: saturday-note
    channels: [chat]
    template: posts/tip
    at: 2026-12-05 14:00
  - id: holiday
    channels: [chat]
    template: posts/tip
    at: 2026-12-12 10:00
  - {id: burst-1, channels: [hook], template: posts/tip, at: 2026-12-11 12:00}
  - {id: burst-2, channels: [hook], template: posts/tip, at: 2026-12-11 12:00}
  - {id: burst-3, channels: [hook], template: posts/tip, at: 2026-12-11 12:00}
  - {id: burst-4, channels: [hook], template: posts/tip, at: 2026-12-11 12:00}
  - {id: burst-5, channels: [hook], template: posts/tip, at: 2026-12-11 12:00}
  - {id: burst-6, channels: [hook], template: posts/tip, at: 2026-12-11 12:00}
"""


def line_of(text: str, item: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if re.search(rf"\bid: {re.escape(item)}\b", line):
            return number
    raise AssertionError(item)


def validate(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["-C", str(root), "validate", "--now", NOW, "--days", "14", *args]
    )
    return result.exit_code, result.stdout + result.stderr


@pytest.fixture
def root(make_project: MakeProject) -> Path:
    return make_project(config=CONFIG, calendars={"seeded.yaml": CALENDAR})


@pytest.mark.parametrize(
    ("rule", "item", "severity", "words"),
    [
        ("max_silence", "daily-news", "warning", "nothing goes out on news for 5d"),
        ("min_spacing", "crowding", "warning", "20m after 'early' (calendars/seeded.yaml:"),
        ("max_per_day", "afternoon", "warning", "3 posts on chat on 2026-12-03"),
        ("quiet_hours", "night-owl", "warning", "2026-12-04 23:30 Europe/Athens"),
        ("staffed_hours", "saturday-ama", "warning", "no moderator is on hand"),
        ("blackout", "holiday", "error", "on 2026-12-12 10:00 Europe/Athens, a blackout date"),
        ("rate_budget", "burst-6", "error", "over its budget of 5 requests per 2 seconds"),
    ],
)
def test_each_seeded_problem_is_found_at_its_item(
    root: Path, rule: str, item: str, severity: str, words: str
) -> None:
    code, output = validate(root)
    where = f"calendars/seeded.yaml:{line_of(CALENDAR, item)}:"
    lines = [line for line in output.splitlines() if f": {rule}: " in line]
    assert len(lines) == 1, output
    assert lines[0].startswith(where), lines[0]
    assert f"{severity}: {rule}: " in lines[0] and words in lines[0]
    assert code == 1  # blackout and rate_budget are errors


def test_findings_name_the_other_items_with_file_and_line(root: Path) -> None:
    _, output = validate(root)
    burst = next(line for line in output.splitlines() if "rate_budget" in line)
    for n in range(1, 7):
        assert f"'burst-{n}' (calendars/seeded.yaml:{line_of(CALENDAR, f'burst-{n}')})" in burst
    assert "https://discord.com/developers/docs/topics/rate-limits" in burst
    per_day = next(line for line in output.splitlines() if "max_per_day" in line)
    assert f"'morning' (calendars/seeded.yaml:{line_of(CALENDAR, 'morning')})" in per_day


def test_nothing_else_is_found(root: Path) -> None:
    """Seven seeded problems, seven findings: the daily item's own repeats are not spacing
    problems, the news channel is not limited per day, the weekday AMA-less items need no
    staff, and the Discord burst on another channel is no spacing problem of chat."""
    _, output = validate(root, "-f", "json")
    problems = json.loads(output)["problems"]
    # slow_slot reads pulled results (tests/test_lint_results.py); this project has none.
    assert sorted(p["message"].split(":")[0] for p in problems) == sorted(set(RULES) - RESULT_RULES)


def test_no_lint_leaves_cadence_alone(root: Path) -> None:
    code, output = validate(root, "--no-lint")
    assert code == 0, output
    assert "no problems" in output


def test_warnings_alone_exit_0(make_project: MakeProject) -> None:
    config = CONFIG.replace("  blackout: [2026-12-12]\n", "")
    calendar = CALENDAR.split("  - {id: burst-1")[0]
    root = make_project(config=config, calendars={"seeded.yaml": calendar})
    code, output = validate(root)
    assert code == 0, output
    assert "0 errors, 5 warnings" in output


def test_an_item_opts_out_of_one_rule_or_all(make_project: MakeProject) -> None:
    calendar = CALENDAR.replace(
        "  - id: night-owl\n", "  - id: night-owl\n    lint: {skip: [quiet_hours]}\n"
    ).replace("  - id: holiday\n", "  - id: holiday\n    lint: off\n")
    root = make_project(config=CONFIG, calendars={"seeded.yaml": calendar})
    _, output = validate(root)
    assert "quiet_hours" not in output and "blackout" not in output
    assert "min_spacing" in output  # the others stay


def test_replies_none_and_calendars_without_staff_are_left_alone(
    make_project: MakeProject,
) -> None:
    quiet = CALENDAR.replace("    replies: expected\n", "    replies: none\n")
    unstaffed = CALENDAR.replace("staff:\n  - mon-fri 09:00-17:00\n", "")
    poll = CALENDAR.replace(
        "  - id: saturday-note\n    channels: [chat]\n    template: posts/tip\n",
        "  - id: saturday-note\n    kind: poll\n    channels: [chat]\n    template: posts/tip\n"
        "    question: Which?\n    options: [a, b]\n",
    )
    for calendar, expected in ((quiet, []), (unstaffed, []), (poll, ["ama", "note"])):
        root = make_project(config=CONFIG, calendars={"seeded.yaml": calendar})
        _, output = validate(root)
        staffed = re.findall(r"staffed_hours: 'saturday-(\w+)'", output)
        assert staffed == expected, output


@pytest.mark.parametrize(
    ("config", "calendar", "message"),
    [
        (
            CONFIG.replace("  min_spacing:", "  min_spacng:"),
            CALENDAR,
            "commcal.yaml:11:3: error: unknown key 'min_spacng' in lint (did you mean "
            "'min_spacing'?)",
        ),
        (
            CONFIG.replace("limit: 2, channels", "limit: 2, severity: eror, channels"),
            CALENDAR,
            "unknown lint.max_per_day severity 'eror' (did you mean 'error'?)",
        ),
        (
            CONFIG.replace("channels: [news]}", "channels: [nwes]}"),
            CALENDAR,
            "lint.max_silence.channels: unknown channel 'nwes' (not under channels:) "
            "(did you mean 'news'?)",
        ),
        (
            CONFIG.replace('"22:00-07:00"', '"22:00-31:00"'),
            CALENDAR,
            "lint.quiet_hours: '22:00-31:00' is not a span of hours like 22:00-08:00",
        ),
        (
            CONFIG,
            CALENDAR.replace("    replies: expected\n", "    replies: expectd\n"),
            "calendars/seeded.yaml:38:14: error: unknown item 'saturday-ama' replies "
            "'expectd' (did you mean 'expected'?)",
        ),
        (
            CONFIG,
            CALENDAR.replace("  - id: holiday\n", "  - id: holiday\n    lint: {skip: [blackot]}\n"),
            "unknown lint rule 'blackot' (did you mean 'blackout'?)",
        ),
        (
            CONFIG,
            CALENDAR.replace("mon-fri 09:00", "mon-fry 09:00"),
            "calendars/seeded.yaml:2:5: error: staff: 'mon-fry 09:00-17:00' is not a weekly "
            "window like 'mon-fri 09:00-17:00'",
        ),
    ],
)
def test_typos_are_errors_with_file_and_line(
    make_project: MakeProject, config: str, calendar: str, message: str
) -> None:
    root = make_project(config=config, calendars={"seeded.yaml": calendar})
    code, output = validate(root)
    assert message in output, output
    assert code == (2 if calendar is CALENDAR else 1)


def test_a_wrap_around_staff_window_and_week() -> None:
    from datetime import datetime

    from commcal.calendar.fields import Reader
    from commcal.calendar.yamlnodes import parse
    from commcal.lintconfig import read_staff

    node, _ = parse('["fri-mon 22:00-02:00"]', "x.yaml")
    assert node is not None
    reader = Reader()
    (window,) = read_staff(reader, node)
    assert reader.problems == []
    assert window.holds(datetime(2026, 12, 5, 1, 30))  # Saturday 01:30: Friday's night
    assert window.holds(datetime(2026, 12, 8, 1, 30))  # Tuesday 01:30: Monday's night
    assert not window.holds(datetime(2026, 12, 9, 1, 30))  # Wednesday 01:30
    assert not window.holds(datetime(2026, 12, 8, 22, 30))  # Tuesday evening


def test_the_budget_slides_and_counts_each_channel(make_project: MakeProject) -> None:
    """Telegram allows 20 a minute to one group: 10 at 12:00 and 11 at 12:01 are two
    minutes; 21 within one minute are over; two chats each have their own budget."""
    config = (
        "timezone: UTC\nchannels:\n"
        "  group-a: {type: telegram, token: '${TG_TOKEN}', chat_id: '@a'}\n"
        "  group-b: {type: telegram, token: '${TG_TOKEN}', chat_id: '@b'}\n"
    )

    def items(times: list[str], channel: str) -> str:
        return "".join(
            f"  - {{id: {channel}-{n}, channels: [{channel}], template: posts/tip, at: {t}}}\n"
            for n, t in enumerate(times)
        )

    apart = ["2026-12-02 12:00"] * 10 + ["2026-12-02 12:01"] * 11
    within = ["2026-12-03 12:00"] * 11 + ["2026-12-03 12:00:59"] * 10
    root = make_project(
        config=config,
        calendars={"c.yaml": "items:\n" + items(apart, "group-a") + items(within, "group-b")},
    )
    project = load_project(root, env={})
    found = lint_findings(project, instant(NOW, "--now"), instant("2026-12-05T00:00:00Z", "x"))
    assert [(p.pos.line, p.message.split(" within")[0]) for p in found] == [
        (1 + 21 + 21, "rate_budget: 21 deliveries on group-b")
    ]
    assert RateLimits.TELEGRAM[0].budget == 20


def test_an_smtp_daily_cap_counts_members(make_project: MakeProject) -> None:
    config = (
        "timezone: UTC\nchannels:\n  mail:\n    type: smtp\n    host: 127.0.0.1\n"
        "    from: hello@example.org\n"
        "lint:\n  rate_budget: {smtp_daily_cap: {mail: 2}}\n"
    )
    calendar = (
        "items:\n  - id: letter\n    kind: newsletter\n    channels: [mail]\n"
        "    template: posts/tip\n    audience: members\n    at: 2026-12-02 08:00\n"
    )
    root = make_project(config=config, calendars={"c.yaml": calendar})
    (root / "audiences").mkdir()
    (root / "audiences" / "members.csv").write_text(
        "email,name\na@example.org,A\nb@example.org,B\nc@example.org,C\n", encoding="utf-8"
    )
    code, output = validate(root)
    assert "calendars/c.yaml:2:9: error: rate_budget: 3 mails on mail within 1d" in output
    assert "over its budget of 2 mails per day" in output and code == 1


@pytest.mark.parametrize("now", [NOW, "2027-02-01T00:00:00Z", "2027-06-01T00:00:00Z"])
def test_the_bundled_example_has_no_finding(now: str) -> None:
    """The repository's own project (commcal.yaml, calendars/) lints clean: its `lint:` rules
    and `staff:` windows are the documented example."""
    project = load_project(ROOT, env={})
    assert project.config.lint.max_per_day == 4 and all(c.staff for c in project.calendars)
    start = instant(now, "--now")
    from datetime import timedelta

    assert lint_findings(project, start, start + timedelta(days=120)) == []
    result = CliRunner().invoke(app, ["-C", str(ROOT), "validate", "--now", now, "--days", "120"])
    assert result.exit_code == 0 and "no problems" in result.stdout, result.output


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 12), min_size=1, max_size=14))
def test_the_sliding_budget_agrees_with_counting_every_window(seconds: list[int]) -> None:
    """Discord's 5 per 2 seconds, for posts at these seconds past 12:00: a finding exactly
    when some 2-second window (t-2s, t] holds more than 5 of them."""
    import tempfile

    over = any(sum(1 for s in seconds if t - 2 < s <= t) > 5 for t in seconds)
    calendar = "items:\n" + "".join(
        f"  - {{id: p{n}, channels: [hook], template: posts/tip, at: 2026-12-03 12:00:{s:02d}}}\n"
        for n, s in enumerate(seconds)
    )
    config = "timezone: UTC\nchannels:\n  hook: {type: discord, webhook_url: '${HOOK}'}\n"
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "commcal.yaml").write_text(config, encoding="utf-8")
        (root / "calendars").mkdir()
        (root / "calendars" / "c.yaml").write_text(calendar, encoding="utf-8")
        (root / "templates" / "posts").mkdir(parents=True)
        (root / "templates" / "posts" / "tip.j2").write_text("Tip", encoding="utf-8")
        project = load_project(root, env={})
        assert project.errors == []
        start = instant(NOW, "--now")
        found = lint_findings(project, start, instant("2026-12-04T00:00:00Z", "x"))
    assert bool(found) is over, [str(p) for p in found]
    assert all(p.message.startswith("rate_budget: ") for p in found)
