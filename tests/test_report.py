"""`commcal report`: figures equal those computed by hand from the raw snapshots and replies.

The fixture: a calendar in Europe/Athens staffed mon-fri 09:00-17:00 and fri 22:00-02:00 (a
window that crosses midnight); posts in winter (UTC+2) and in summer (UTC+3, DST), so the same
local slot has two UTC hours, and a summer question is staffed at a UTC hour a winter one is not.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any
from xml.etree import ElementTree

import pytest
from engagement_fixtures import COMMUNITY, CONFIG, reply, sent, store
from typer.testing import CliRunner

from commcal.cli import app
from commcal.engagement.model import Snapshot


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# id -> (item, channel, sent at UTC). Local (Athens): d1-d3, d6 Tue 10:00; d4, d5 Fri 21:00.
SENT = {
    "d1": ("weekly-tip", "mastodon", utc(2026, 12, 1, 8)),
    "d2": ("weekly-tip", "mastodon", utc(2026, 12, 8, 8)),
    "d3": ("weekly-tip", "bluesky", utc(2026, 12, 1, 8)),
    "d4": ("evening-poll", "mastodon", utc(2026, 12, 4, 19)),
    "d5": ("evening-poll", "mastodon", utc(2026, 7, 3, 18)),  # summer: 18:00 UTC is 21:00
    "d6": ("weekly-tip", "mastodon", utc(2026, 12, 15, 8)),  # read only 5h after: no figure
}
H = timedelta(hours=1)


def snap(
    d: str,
    age: timedelta,
    likes: int,
    reposts: int = 0,
    replies: int = 0,
    quotes: int = 0,
    status: str = "ok",
) -> Snapshot:
    _, channel, when = SENT[d]
    return Snapshot(
        d, channel, f"post-{d}", when + age, when, likes, reposts, replies, quotes, status
    )


SNAPSHOTS = [
    snap("d1", 2 * H, 1),
    snap("d1", 23 * H, 5),
    snap("d1", 25 * H, 8, reposts=1),  # the one at 24h: 9
    snap("d1", 48 * H, 20),
    snap("d2", 24 * H, 7),  # exactly 24h counts
    snap("d3", 30 * H, 0, status="error"),  # a failed read is no figure
    snap("d3", 31 * H, 3, replies=1),  # 4
    snap("d4", 26 * H, 10, 2, 3, 1),  # 16
    snap("d4", 50 * H, 99),
    snap("d5", 24.5 * H, 30),
    snap("d6", 5 * H, 50),
]

REPLIES = [
    # d1 (Tue): q1 at 10:30 Athens (staffed), the team answers 40 minutes later.
    reply(
        "q1",
        "How do I join the #webinar?",
        utc(2026, 12, 1, 8, 30),
        parent="post-d1",
        delivery="d1",
    ),
    reply(
        "a1",
        "Use the form",
        utc(2026, 12, 1, 9, 10),
        parent="q1",
        delivery="d1",
        by_team=True,
        author="@us@x",
    ),
    # q2 at 20:00 Athens (unstaffed), a member answers 12 hours later.
    reply(
        "q2",
        "Where is it?",
        utc(2026, 12, 1, 18),
        parent="post-d1",
        delivery="d1",
        author="@bob@x.social",
    ),
    reply(
        "a2",
        "It is at the library.",
        utc(2026, 12, 2, 6),
        parent="q2",
        delivery="d1",
        author="@carol@x.social",
    ),
    # d2: an open question and thanks.
    reply("q7", "Is the #webinar recorded?", utc(2026, 12, 8, 9), parent="post-d2", delivery="d2"),
    reply("t1", "Thanks!", utc(2026, 12, 8, 10), parent="post-d2", delivery="d2"),
    # d4 (Fri 4 Dec): q3 at Fri 23:30 Athens, inside fri 22:00-02:00; a member, 30 minutes.
    reply(
        "q3",
        "Πότε κλείνει η ψηφοφορία;",
        utc(2026, 12, 4, 21, 30),
        parent="post-d4",
        delivery="d4",
        lang="el",
    ),
    reply(
        "a3",
        "Αύριο το πρωί.",
        utc(2026, 12, 4, 22),
        parent="q3",
        delivery="d4",
        author="@eleni@x.gr",
    ),
    # q4 at Sat 01:30 Athens: still Friday's window past midnight; the team, 2 hours.
    reply(
        "q4",
        "Je, naweza kupiga kura mara mbili",
        utc(2026, 12, 4, 23, 30),
        parent="post-d4",
        delivery="d4",
        lang="sw",
    ),
    reply(
        "a4",
        "Hapana, mara moja tu.",
        utc(2026, 12, 5, 1, 30),
        parent="q4",
        delivery="d4",
        by_team=True,
        author="@us@x",
    ),
    # q5 at Sat 02:30 Athens: after the window; the team, 6 hours.
    reply("q5", "Who won?", utc(2026, 12, 5, 0, 30), parent="post-d4", delivery="d4"),
    reply(
        "a5",
        "Results on Monday",
        utc(2026, 12, 5, 6, 30),
        parent="q5",
        delivery="d4",
        by_team=True,
        author="@us@x",
    ),
    # d5 (summer): q6 at 19:30 UTC = 22:30 Athens (UTC+3): staffed; in winter it would not be.
    reply("q6", "Can I still vote?", utc(2026, 7, 3, 19, 30), parent="post-d5", delivery="d5"),
    reply(
        "a6",
        "Yes, until midnight",
        utc(2026, 7, 3, 20, 30),
        parent="q6",
        delivery="d5",
        by_team=True,
        author="@us@x",
    ),
]


@pytest.fixture
def root(make_project: Any) -> Path:
    root = make_project(config=CONFIG, calendars={"community.yaml": COMMUNITY})
    sent(root, [(d, "community", item, ch, when) for d, (item, ch, when) in SENT.items()])
    store(root, REPLIES, SNAPSHOTS)
    return root


def report(root: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["-C", str(root), "report", *args])


def by_hand_at(age: timedelta) -> dict[str, int]:
    """Each delivery's engagement at `age`, straight from the raw snapshots."""
    result = {}
    for d, (_, _, when) in SENT.items():
        later = [
            s
            for s in SNAPSHOTS
            if s.delivery_id == d and s.status == "ok" and s.taken_at >= when + age
        ]
        if later:
            s = min(later, key=lambda s: s.taken_at)
            result[d] = s.likes + s.reposts + s.replies + s.quotes
    return result


def test_engagement_at_24h_per_item_and_hour_equals_the_hand_computed_medians(root: Path) -> None:
    at = by_hand_at(24 * H)
    assert at == {"d1": 9, "d2": 7, "d3": 4, "d4": 16, "d5": 30}
    data = json.loads(report(root, "--format", "json").stdout)
    assert data["schema"] == "commcal.report/1" and data["by"] == "item" and data["at_s"] == 86400
    groups = {g["group"]: g for g in data["groups"]}
    tip, poll = groups["community/weekly-tip"], groups["community/evening-poll"]
    assert (tip["deliveries"], tip["measured"]) == (4, 3)
    assert tip["engagement_median"] == median([at["d1"], at["d2"], at["d3"]]) == 7
    assert (poll["deliveries"], poll["measured"]) == (2, 2)
    assert poll["engagement_median"] == median([at["d4"], at["d5"]]) == 23
    hours = {
        g["group"]: g["engagement_median"]
        for g in json.loads(report(root, "--by", "hour", "--format", "json").stdout)["groups"]
    }
    assert hours == {"10:00": 7, "21:00": 23}  # d5's 18:00 UTC in July is 21:00 local
    assert data["best_slots"] == [
        {"weekday": 4, "hour": 21, "posts": 2, "engagement_median": 23},
        {"weekday": 1, "hour": 10, "posts": 3, "engagement_median": 7},
    ]


def test_by_kind_takes_the_items_kind(root: Path) -> None:
    data = json.loads(report(root, "--by", "kind", "--format", "json").stdout)
    ((only),) = data["groups"]
    assert only["group"] == "post" and (only["deliveries"], only["measured"]) == (6, 5)
    assert only["engagement_median"] == median(by_hand_at(24 * H).values()) == 9


def test_a_later_age_takes_later_snapshots(root: Path) -> None:
    at = by_hand_at(48 * H)
    assert at == {"d1": 20, "d4": 99}
    data = json.loads(report(root, "--at", "2d", "--by", "channel", "--format", "json").stdout)
    groups = {g["group"]: g for g in data["groups"]}
    assert groups["mastodon"]["engagement_median"] == median([20, 99])
    assert groups["mastodon"]["measured"] == 2 and groups["mastodon"]["deliveries"] == 5
    assert groups["bluesky"]["engagement_median"] is None


def test_time_to_first_answer_inside_and_outside_staffed_hours(root: Path) -> None:
    data = json.loads(report(root, "--format", "json").stdout)
    groups = {g["group"]: g for g in data["groups"]}
    tip, poll = groups["community/weekly-tip"], groups["community/evening-poll"]
    # weekly-tip: q1 (staffed) 40 min; q2 (20:00 local) 12 h; q7 open; a2 and t1 are replies.
    assert (tip["replies"], tip["questions"], tip["answered"]) == (5, 3, 2)
    assert tip["first_answer_median_s"] == {
        "staffed": 40 * 60,
        "unstaffed": 12 * 3600,
        "undeclared": None,
    }
    # evening-poll: q3 30 min and q4 2 h inside Friday's 22:00-02:00, q6 1 h (summer, 22:30
    # local); q5 (02:30 local) 6 h outside.
    assert (poll["replies"], poll["questions"], poll["answered"]) == (5, 4, 4)
    staffed = median([30 * 60, 2 * 3600, 3600])
    assert poll["first_answer_median_s"] == {
        "staffed": staffed,
        "unstaffed": 6 * 3600,
        "undeclared": None,
    }


def test_trends_count_hashtags_and_keywords_per_week(root: Path) -> None:
    data = json.loads(report(root, "--format", "json").stdout)
    assert data["weeks"] == ["2026-W27", "2026-W49", "2026-W50"]
    trends = {(t["kind"], t["term"]): t["counts"] for t in data["trends"]}
    assert trends[("hashtag", "webinar")] == [0, 1, 1]
    assert trends[("keyword", "vote")] == [1, 0, 0]


def test_table_csv_markdown_and_html(root: Path) -> None:
    table = report(root, "--by", "weekday")
    assert table.exit_code == 0, table.output
    assert "Sent posts by weekday" in table.stdout and "Best slots" in table.stdout
    assert re.search(r"Tue .* 4 .* 3 .* 7 ", table.stdout)
    rows = list(csv.DictReader(io.StringIO(report(root, "--format", "csv").stdout)))
    assert rows[0]["group"] == "community/evening-poll" and rows[0]["engagement"] == "23"
    assert (
        rows[1]["first_answer_staffed"] == "2400" and rows[1]["first_answer_unstaffed"] == "43200"
    )
    md = report(root, "--format", "markdown").stdout
    assert "| community/weekly-tip | 4 | 3 | 7 |" in md
    page = report(root, "--format", "html").stdout
    assert page.startswith("<!doctype html>") and page.count("<svg") == 3
    # Offline: no script, nothing loaded from elsewhere (the SVG namespace is a name, not a load).
    assert "<script" not in page and "src=" not in page and "href=" not in page
    assert "content=\"default-src 'none'; style-src 'unsafe-inline'" in page  # the CSP
    assert re.findall(r"https?://[^\"' <]+", page) == ["http://www.w3.org/2000/svg"] * 3
    # Each chart is well-formed SVG: a bar per group, a cell per weekday and hour.
    svgs = [ElementTree.fromstring(m) for m in re.findall(r"<svg.*?</svg>", page, re.S)]
    ns = "{http://www.w3.org/2000/svg}"
    bars = list(svgs[0].iter(f"{ns}rect"))
    assert [b.find(f"{ns}title").text for b in bars] == [  # type: ignore[union-attr]
        "community/evening-poll: 23",
        "community/weekly-tip: 7",
    ]
    assert float(bars[0].get("width", "0")) > float(bars[1].get("width", "0")) > 0
    assert len(list(svgs[1].iter(f"{ns}rect"))) == 7 * 24 + 2  # the grid and the 2 best slots


def test_bad_age_and_empty_ledger(root: Path, make_project: Any) -> None:
    bad = report(root, "--at", "soon")
    assert bad.exit_code == 2 and "--at 'soon'" in bad.output
    empty = make_project(config=CONFIG, calendars={"community.yaml": COMMUNITY})
    result = report(empty)
    assert result.exit_code == 0 and "Nothing pulled yet" in result.stdout
    assert json.loads(report(empty, "--format", "json").stdout)["groups"] == []
