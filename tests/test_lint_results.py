"""Lint from results (slow_slot): a planned post in a slot where its channel's past posts did
worst (the bottom quarter by median engagement at 24h) is a finding at the item, with numbers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from engagement_fixtures import CONFIG, sent, store
from typer.testing import CliRunner

from commcal.cli import app
from commcal.engagement.model import Snapshot

CALENDAR = """\
calendar: results
timezone: Europe/Athens
defaults: {channels: [mastodon]}
items:
  - id: morning
    kind: post
    template: posts/tip
    schedule: {cron: "0 9 * * MON"}
  - id: noon
    kind: post
    template: posts/tip
    schedule: {cron: "0 12 * * WED"}
  - id: evening
    kind: post
    template: posts/tip
    schedule: {cron: "0 19 * * THU"}
  - id: late
    kind: post
    template: posts/tip
    schedule: {cron: "0 23 * * SUN"}
"""
LATE_LINE = CALENDAR.splitlines().index("  - id: late") + 1
NOW = "2026-12-07T00:00:00Z"  # a Monday; the window holds every item's next post


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# Past posts on mastodon, (delivery, item, sent at UTC, engagement at 24h). Athens local slots:
# Mon 09:00 (45), Wed 12:00 (25), Thu 19:00 (70), Sun 23:00 (3, one of them in summer, UTC+3).
PAST = [
    ("p1", "morning", utc(2026, 11, 2, 7), 40),
    ("p2", "morning", utc(2026, 11, 9, 7), 50),
    ("p3", "noon", utc(2026, 11, 4, 10), 20),
    ("p4", "noon", utc(2026, 11, 11, 10), 30),
    ("p5", "evening", utc(2026, 11, 5, 17), 60),
    ("p6", "evening", utc(2026, 11, 12, 17), 80),
    ("p7", "late", utc(2026, 7, 5, 20), 2),  # Sunday 23:00 in summer
    ("p8", "late", utc(2026, 11, 8, 21), 4),
]


@pytest.fixture
def root(make_project: Any) -> Path:
    root = make_project(config=CONFIG, calendars={"results.yaml": CALENDAR})
    sent(root, [(d, "results", item, "mastodon", when) for d, item, when, _ in PAST])
    snaps = [
        Snapshot(d, "mastodon", f"post-{d}", when + timedelta(hours=25), when, likes=value)
        for d, _, when, value in PAST
    ]
    # An early snapshot that would rank the late post well if age were ignored.
    snaps += [Snapshot("p8", "mastodon", "post-p8", utc(2026, 11, 8, 22), utc(2026, 11, 8, 21), 0)]
    store(root, snapshots=snaps)
    return root


def findings(root: Path) -> list[dict[str, Any]]:
    result = CliRunner().invoke(
        app, ["-C", str(root), "validate", "--now", NOW, "--days", "7", "-f", "json"]
    )
    assert result.exit_code == 0, result.output  # a warning
    return [
        p for p in json.loads(result.stdout)["problems"] if p["message"].startswith("slow_slot")
    ]


def test_the_bottom_quarter_slot_is_a_finding_with_the_evidence(root: Path) -> None:
    (found,) = findings(root)
    assert (found["file"], found["line"], found["severity"]) == (
        "calendars/results.yaml",
        LATE_LINE,
        "warning",
    )
    assert found["message"] == (
        "slow_slot: 'late' goes out on mastodon on Sun 23:00 Europe/Athens, where mastodon's "
        "posts had a median engagement of 3 at 24h (2 posts): the bottom quarter of its 4 "
        "slots (median of slots 35; best Thu 19:00 with 70)"
    )
    assert "commcal report --by hour" in found["hint"]


def test_the_rule_can_be_turned_off_or_skipped(root: Path) -> None:
    config = root / "commcal.yaml"
    config.write_text(CONFIG + "lint:\n  slow_slot: {enabled: false}\n", encoding="utf-8")
    assert findings(root) == []
    config.write_text(CONFIG, encoding="utf-8")
    calendar = root / "calendars" / "results.yaml"
    calendar.write_text(
        CALENDAR.replace(
            'cron: "0 23 * * SUN"}', 'cron: "0 23 * * SUN"}\n    lint: {skip: [slow_slot]}'
        ),
        encoding="utf-8",
    )
    assert findings(root) == []


def test_too_few_slots_or_posts_say_nothing(make_project: Any) -> None:
    root = make_project(config=CONFIG, calendars={"results.yaml": CALENDAR})
    three = [p for p in PAST if p[1] != "noon"]  # three judged slots: not enough to rank
    sent(root, [(d, "results", item, "mastodon", when) for d, item, when, _ in three])
    store(
        root,
        snapshots=[
            Snapshot(d, "mastodon", f"post-{d}", when + timedelta(hours=25), when, likes=v)
            for d, _, when, v in three
        ],
    )
    assert findings(root) == []


def test_no_ledger_no_finding(make_project: Any) -> None:
    root = make_project(config=CONFIG, calendars={"results.yaml": CALENDAR})
    assert findings(root) == []
    assert not (root / ".commcal" / "state.db").exists()
