"""The example project at the repository root: it must validate and show every feature.

The README and docs/calendar-format.md point newcomers at it, so these tests pin what it promises:
every kind and schedule form, three languages, no problems, every message within its channel's
limit, and a JSON plan that lists each delivery once with its times, channel, text and length.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from commcal.calendar.model import KINDS, At, CronSchedule, Dates, Every, Item
from commcal.cli import app
from commcal.plan import Planned, plan
from commcal.project import Project, load_project

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 1, tzinfo=UTC)
FORTNIGHT = [
    "-C",
    str(ROOT),
    "plan",
    "--now",
    "2026-12-01T00:00:00Z",
    "--days",
    "14",
    "--format",
    "json",
]


@pytest.fixture(scope="module")
def project() -> Project:
    # An empty environment: plan and validate never need the channels' secrets.
    return load_project(ROOT, env={})


@pytest.fixture(scope="module")
def season(project: Project) -> list[Planned]:
    """Everything the example plans from 1 December to the end of March."""
    return plan(project, NOW, NOW + timedelta(days=120))


@pytest.fixture(scope="module")
def fortnight_json() -> dict[str, Any]:
    result = CliRunner().invoke(app, FORTNIGHT)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def items(project: Project) -> list[Item]:
    return [item for calendar in project.calendars for item in calendar.items]


def item(project: Project, item_id: str) -> Item:
    return next(i for i in items(project) if i.id == item_id)


def test_the_example_loads_without_any_problem(project: Project) -> None:
    assert [str(p) for p in project.problems] == []
    assert sorted(c.name for c in project.calendars) == ["community-en", "jamii-sw", "koinotita-el"]
    assert set(project.channels) == {
        "console",
        "outbox",
        "mastodon",
        "bluesky",
        "telegram",
        "discord",
        "newsletter",
    }


def test_every_delivery_of_the_season_renders_and_passes_its_channel(
    season: list[Planned],
) -> None:
    assert len(season) > 100
    assert [str(p) for entry in season for p in entry.problems] == []
    for entry in season:
        assert entry.message is not None and entry.message.text.strip()
        if entry.limit is not None:
            assert entry.length is not None and entry.length <= entry.limit, entry.delivery.id


def test_validate_over_the_season_prints_no_problems() -> None:
    result = CliRunner().invoke(
        app, ["-C", str(ROOT), "validate", "--now", "2026-12-01T00:00:00Z", "--days", "120"]
    )
    assert result.exit_code == 0, result.output
    assert "no problems" in result.output


def test_every_kind_is_used(project: Project) -> None:
    assert {i.kind for i in items(project)} == set(KINDS)


def test_every_schedule_form_is_used(project: Project) -> None:
    schedules = [i.schedule for i in items(project) if i.schedule is not None]
    assert {type(s) for s in schedules} == {At, Dates, CronSchedule, Every}
    crons = [s for s in schedules if isinstance(s, CronSchedule)]
    assert any(s.window.start and s.window.until and s.window.skip for s in crons)
    assert any(isinstance(s, Every) and s.window.until for s in schedules)

    letter = item(project, "monthly-letter")
    assert letter.kind == "newsletter"
    assert isinstance(letter.schedule, CronSchedule)
    assert letter.schedule.cron.expression == "0 8 1 * *"


def test_the_webinar_has_the_reminders_and_a_live_post(project: Project) -> None:
    webinar = item(project, "dec-webinar")
    assert webinar.kind == "event"
    assert [(s.name, s.offset, s.template) for s in webinar.steps] == [
        ("-7d", -timedelta(days=7), "events/reminder"),
        ("-1d", -timedelta(days=1), "events/reminder"),
        ("-1h", -timedelta(hours=1), "events/reminder"),
        ("live", timedelta(0), "events/live"),
    ]


def test_the_contest_has_dated_steps_of_every_form(project: Project) -> None:
    contest = item(project, "winter-contest")
    steps = {s.name: (s.anchor, s.offset, s.when is not None) for s in contest.steps}
    assert steps == {
        "opens": ("opens", timedelta(0), False),
        "reminder": ("opens", timedelta(days=7), False),
        "last-call": ("closes", -timedelta(days=1), False),
        "closes": ("closes", timedelta(0), False),
        "winners": ("", timedelta(0), True),
    }


def test_the_poll_has_a_question_options_and_duration(project: Project) -> None:
    poll = item(project, "psifoforia-thematos")
    assert poll.kind == "poll" and poll.poll is not None
    assert poll.poll["question"].endswith(";")  # the Greek question mark
    assert 2 <= len(poll.poll["options"]) <= 4
    assert poll.poll["duration"] == timedelta(days=2)


def test_the_fortnight_is_rich(fortnight_json: dict[str, Any]) -> None:
    deliveries = fortnight_json["deliveries"]
    assert fortnight_json["summary"] == {"deliveries": len(deliveries), "with_problems": 0}
    assert len(deliveries) >= 12
    per_calendar = Counter(d["calendar"] for d in deliveries)
    assert set(per_calendar) == {"community-en", "koinotita-el", "jamii-sw"}
    assert {d["kind"] for d in deliveries} == set(KINDS)


def test_the_json_plan_lists_each_delivery_once_with_its_details(
    fortnight_json: dict[str, Any], project: Project
) -> None:
    deliveries = fortnight_json["deliveries"]
    ids = [d["id"] for d in deliveries]
    assert len(ids) == len(set(ids))
    keys = [(d["calendar"], d["item"], d["step"], d["channel"], d["due_utc"]) for d in deliveries]
    assert len(keys) == len(set(keys))
    expected = plan(project, NOW, NOW + timedelta(days=14))
    assert ids == [entry.delivery.id for entry in expected]
    for d in deliveries:
        for key in ("due_local", "due_utc", "channel", "item", "kind", "text", "length", "limit"):
            assert key in d, key
        local = datetime.fromisoformat(d["due_local"])
        utc = datetime.fromisoformat(d["due_utc"].replace("Z", "+00:00"))
        assert local.utcoffset() is not None and local == utc
        assert d["text"].strip()
        assert d["ok"] is True and d["problems"] == []
        if d["channel_type"] in ("mastodon", "bluesky", "telegram", "discord"):
            assert isinstance(d["limit"], int)
            assert d["length"] <= d["limit"]


def test_the_greek_and_swahili_calendars_write_their_own_dates(
    fortnight_json: dict[str, Any],
) -> None:
    def texts(calendar: str) -> str:
        return "\n".join(
            d["text"] for d in fortnight_json["deliveries"] if d["calendar"] == calendar
        )

    greek, swahili = texts("koinotita-el"), texts("jamii-sw")
    assert "Δεκεμβρίου" in greek  # the genitive month, as a Greek date is written
    assert "Πέμπτη 17 Δεκεμβρίου 2026" in greek
    assert "Desemba" in swahili
    assert "Jumapili, 20 Desemba 2026" in swahili


def test_the_draft_is_planned_and_flagged(fortnight_json: dict[str, Any]) -> None:
    drafts = {d["item"] for d in fortnight_json["deliveries"] if d["draft"]}
    assert drafts == {"holiday-hours"}
    assert all(
        d["draft"] is False for d in fortnight_json["deliveries"] if d["item"] != "holiday-hours"
    )


def test_channel_and_locale_variants_are_chosen(
    fortnight_json: dict[str, Any], project: Project
) -> None:
    def used(item_id: str, channel: str) -> tuple[str | None, str]:
        """The template file that rendered the item's first delivery on `channel`, and its text."""
        entry = next(
            d
            for d in fortnight_json["deliveries"]
            if d["item"] == item_id and d["channel"] == channel
        )
        found = project.renderer.find(
            entry["template"], entry["channel_type"], entry["locale"], "text"
        )
        return found, entry["text"]

    assert used("weekly-tip", "bluesky")[0] == "posts/tip.bluesky.j2"
    assert used("weekly-tip", "mastodon")[0] == "posts/tip.j2"
    assert used("kidokezo-cha-wiki", "telegram")[0] == "posts/tip.sw.j2"
    assert used("kidokezo-cha-wiki", "bluesky")[0] == "posts/tip.sw.bluesky.j2"
    assert used("christougenniatiki-vradia", "mastodon")[0] == "events/reminder.el.j2"
    assert len(used("weekly-tip", "bluesky")[1]) < len(used("weekly-tip", "mastodon")[1])


def test_mail_has_a_subject_and_the_newsletter_an_html_part(season: list[Planned]) -> None:
    mails = [e for e in season if e.delivery.channel_type == "smtp"]
    assert {e.delivery.item.kind for e in mails} == {"newsletter", "event", "offer", "survey"}
    for entry in mails:
        assert entry.message is not None and entry.message.subject
    letters = [e for e in mails if e.delivery.item.id == "monthly-letter"]
    assert len(letters) == 4  # December to March
    for entry in letters:
        assert entry.message is not None and entry.message.html is not None
        assert entry.message.html.startswith("<!doctype html>")
        assert "utm_medium=email" in entry.message.text


@pytest.mark.parametrize("now", ["2031-06-01T00:00:00Z", "2044-02-29T12:00:00Z"])
def test_the_example_keeps_planning_whatever_todays_date_is(now: str) -> None:
    """The README's "Try:" commands run on today's date: the example's recurring items have no
    end, so every calendar has something planned in any week, and it renders without problems
    (the monthly letter falls back to its `default` issue)."""
    result = CliRunner().invoke(
        app, ["-C", str(ROOT), "plan", "--now", now, "--days", "7", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["summary"]["with_problems"] == 0
    per_calendar = Counter(d["calendar"] for d in data["deliveries"])
    assert set(per_calendar) == {"community-en", "koinotita-el", "jamii-sw"}, per_calendar
    checked = CliRunner().invoke(app, ["-C", str(ROOT), "validate", "--now", now, "--days", "40"])
    assert checked.exit_code == 0, checked.output
    assert "no problems" in checked.output
    for item_id in ("weekly-tip", "monthly-letter", "saa-ya-jamii", "symvouli-tis-evdomadas"):
        shown = CliRunner().invoke(app, ["-C", str(ROOT), "preview", item_id, "--now", now])
        assert shown.exit_code == 0, shown.output
