"""End-to-end CLI tests through typer's CliRunner: exit codes, exact output, effects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from commcal import __version__
from commcal.cli import app
from commcal.config import find_project
from commcal.project import load_project

runner = CliRunner()
NOW = "2026-12-01T00:00:00Z"  # a Tuesday

CONFIG = """\
timezone: UTC
locale: en
channels:
  console:
    type: console
  archive:
    type: file
    path: out/archive.txt
"""

MAIN = """\
calendar: main
defaults:
  channels: [console]
items:
  - id: tip
    kind: post
    template: posts/tip
    schedule: {cron: "0 9 * * MON"}
  - id: launch
    kind: post
    template: posts/tip
    channels: [console, archive]
    at: 2026-12-03 10:00
"""

MAIN_REORDERED = """\
calendar: main
defaults:
  channels: [console]
items:
  - id: launch
    kind: post
    template: posts/tip
    channels: [archive, console]
    at: 2026-12-03 10:00
  - id: tip
    kind: post
    template: posts/tip
    schedule: {cron: "0 9 * * MON"}
"""

NEWS = """\
calendar: news
items:
  - id: meetup
    kind: event
    template: posts/tip
    channels: [archive]
    at: 2026-12-10 18:00
    reminders: [-1d, 0m]
"""


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def project(make_project: Any) -> Path:
    return make_project(config=CONFIG, calendars={"main.yaml": MAIN, "news.yaml": NEWS})


def plan_json(root: Path, *args: str) -> dict[str, Any]:
    result = invoke("-C", str(root), "plan", "--format", "json", "--now", NOW, *args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema"] == "commcal.plan/1"
    return data


def rows(data: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    return [(d["calendar"], d["item"], d["channel"], d["due_utc"]) for d in data["deliveries"]]


def ids(data: dict[str, Any]) -> dict[tuple[str, str, str, str], str]:
    return {
        (d["calendar"], d["item"], d["channel"], d["due_utc"]): d["id"] for d in data["deliveries"]
    }


ALL_14_DAYS = [
    ("main", "launch", "archive", "2026-12-03T10:00:00Z"),
    ("main", "launch", "console", "2026-12-03T10:00:00Z"),
    ("main", "tip", "console", "2026-12-07T09:00:00Z"),
    ("news", "meetup", "archive", "2026-12-09T18:00:00Z"),
    ("news", "meetup", "archive", "2026-12-10T18:00:00Z"),
    ("main", "tip", "console", "2026-12-14T09:00:00Z"),
]


# -- version, init -------------------------------------------------------------------------------


def test_version_prints_the_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout == f"commcal {__version__}\n"


def test_init_creates_a_project_that_validates(tmp_path: Path) -> None:
    target = tmp_path / "cal"
    result = invoke("init", str(target), "--timezone", "Europe/Athens")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"created {target / 'commcal.yaml'}",
        f"created {target / 'calendars/community.yaml'}",
        f"created {target / 'templates/posts/tip.j2'}",
        f"created {target / '.gitignore'}",
        "timezone: Europe/Athens (from --timezone)",
        f"next: cd {target} && commcal plan",
    ]
    assert find_project(explicit=str(target)) == target
    assert not load_project(target).errors
    result = invoke("-C", str(target), "validate", "--now", NOW)
    assert result.exit_code == 0, result.output
    assert result.stdout == "1 calendar, 4 deliveries checked: no problems\n"


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    result = invoke("init", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr == (
        f"commcal: {tmp_path} is not empty (use --force to add the files anyway)\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# -- plan ----------------------------------------------------------------------------------------


def test_plan_json_gives_exactly_the_expected_deliveries(project: Path) -> None:
    data = plan_json(project, "--days", "14")
    assert data["window"] == {"from": "2026-12-01T00:00:00Z", "to": "2026-12-15T00:00:00Z"}
    assert rows(data) == ALL_14_DAYS
    assert data["summary"] == {"deliveries": 6, "with_problems": 0}
    first = data["deliveries"][0]
    assert first["text"] == "Tip: launch"
    assert first["channel_type"] == "file"
    assert first["ok"] is True
    assert [d["step"] for d in data["deliveries"] if d["item"] == "meetup"] == ["-1d", "start"]
    assert all(len(d["id"]) == 16 for d in data["deliveries"])


def test_plan_ids_are_stable_and_independent_of_order(make_project: Any, project: Path) -> None:
    first, again = plan_json(project, "--days", "14"), plan_json(project, "--days", "14")
    assert ids(first) == ids(again)
    assert len(set(ids(first).values())) == 6
    # Items reordered, channels reordered, and the calendar files renamed so they load in the
    # other order: the same deliveries with the same ids.
    shuffled = make_project(
        config=CONFIG, calendars={"a-news.yaml": NEWS, "z-main.yaml": MAIN_REORDERED}
    )
    assert ids(plan_json(shuffled, "--days", "14")) == ids(first)


def test_editing_one_item_changes_only_its_ids(make_project: Any, project: Path) -> None:
    before = ids(plan_json(project, "--days", "14"))
    edited = make_project(
        config=CONFIG,
        calendars={"main.yaml": MAIN.replace('"0 9 * * MON"', '"0 10 * * MON"'), "news.yaml": NEWS},
    )
    after = ids(plan_json(edited, "--days", "14"))
    unchanged = {k: v for k, v in before.items() if k[1] != "tip"}
    assert {k: v for k, v in after.items() if k[1] != "tip"} == unchanged
    new_tip = {k: v for k, v in after.items() if k[1] == "tip"}
    assert sorted(k[3] for k in new_tip) == ["2026-12-07T10:00:00Z", "2026-12-14T10:00:00Z"]
    assert not set(new_tip.values()) & set(before.values())


def test_plan_next_week_is_monday_to_sunday(project: Path) -> None:
    data = plan_json(project, "--next-week")
    assert data["window"] == {"from": "2026-12-07T00:00:00Z", "to": "2026-12-14T00:00:00Z"}
    assert rows(data) == ALL_14_DAYS[2:5]


def test_plan_from_to_includes_the_whole_last_day(project: Path) -> None:
    data = plan_json(project, "--from", "2026-12-03", "--to", "2026-12-07")
    assert data["window"] == {"from": "2026-12-03T00:00:00Z", "to": "2026-12-08T00:00:00Z"}
    assert rows(data) == ALL_14_DAYS[:3]


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (["--calendar", "news"], ALL_14_DAYS[3:5]),
        (["--calendar", "main"], [ALL_14_DAYS[i] for i in (0, 1, 2, 5)]),
        (["--channel", "archive"], [ALL_14_DAYS[i] for i in (0, 3, 4)]),
        (["--channel", "console"], [ALL_14_DAYS[i] for i in (1, 2, 5)]),
        (["--kind", "event"], ALL_14_DAYS[3:5]),
        (["--kind", "post", "--channel", "archive"], ALL_14_DAYS[:1]),
        (["--item", "tip"], [ALL_14_DAYS[i] for i in (2, 5)]),
        (["--calendar", "main", "--calendar", "news"], ALL_14_DAYS),
    ],
)
def test_plan_filters_select_exactly(
    project: Path, option: list[str], expected: list[tuple[str, ...]]
) -> None:
    assert rows(plan_json(project, "--days", "14", *option)) == expected


def test_plan_markdown_has_a_table_row_per_delivery(project: Path) -> None:
    result = invoke(
        "-C", str(project), "plan", "--format", "markdown", "--now", NOW, "--days", "14"
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "### commcal plan: 6 deliveries, 2026-12-01 00:00 to 2026-12-15 00:00 (UTC)"
    )
    table = [line for line in lines if line.startswith("| ") and not line.startswith("| time ")]
    assert table == [
        "| 10:00 | archive | `launch` | Tip: launch | 11 |",
        "| 10:00 | console | `launch` | Tip: launch | 11 |",
        "| 09:00 | console | `tip` | Tip: tip | 8 |",
        "| 18:00 | archive | `meetup` (-1d) | Tip: meetup | 11 |",
        "| 18:00 | archive | `meetup` (start) | Tip: meetup | 11 |",
        "| 09:00 | console | `tip` | Tip: tip | 8 |",
    ]
    assert "#### Thursday 03 December 2026" in lines


# -- preview -------------------------------------------------------------------------------------


def test_preview_shows_the_full_text(make_project: Any) -> None:
    root = make_project(
        config=CONFIG,
        calendars={"main.yaml": MAIN},
        templates={"posts/tip.j2": "Line one for {{ item.id }}\nLine two\n\nhttps://example.org\n"},
    )
    result = invoke("-C", str(root), "preview", "tip", "--now", NOW, "--format", "markdown")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "#### tip on console, 2026-12-07 09:00 UTC\n\n"
        "```\nLine one for tip\nLine two\n\nhttps://example.org\n```\n\n"
    )
    table = invoke("-C", str(root), "preview", "tip", "--now", NOW)
    assert table.exit_code == 0, table.output
    for line in ("Line one for tip", "Line two", "https://example.org"):
        assert line in table.stdout
    assert "tip → console (console) at 2026-12-07 09:00 UTC" in table.stdout


def test_preview_unknown_item_exits_1(project: Path) -> None:
    result = invoke("-C", str(project), "preview", "nope", "--now", NOW)
    assert result.exit_code == 1
    assert result.stderr == "commcal: no item 'nope' (see `commcal plan` for item ids)\n"


# -- errors --------------------------------------------------------------------------------------


def test_no_project_exits_2_and_points_to_init(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COMMCAL_PROJECT", raising=False)
    result = invoke("plan")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"commcal: no commcal.yaml in {tmp_path}")
    assert "commcal init" in result.stderr


def test_now_garbage_exits_2(project: Path) -> None:
    result = invoke("-C", str(project), "plan", "--now", "garbage")
    assert result.exit_code == 2
    assert result.stderr == (
        "commcal: --now: 'garbage' is not a date-time like 2026-12-01T09:00:00Z\n"
    )
