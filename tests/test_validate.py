"""validate(): every problem `commcal validate` shows, from one library call."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from commcal.cli import app
from commcal.errors import ConfigError
from commcal.project import load_project
from commcal.validate import validate
from commcal.window import Span, window
from tests.conftest import MakeProject

START = datetime(2026, 12, 1, tzinfo=UTC)
SPAN = Span(START, START + timedelta(days=30))


def run(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["-C", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


def test_validate_gives_the_problems_and_exit_code_the_command_shows(
    make_project: MakeProject,
) -> None:
    root = make_project(
        calendars={
            "c.yaml": (
                "items:\n"
                "  - id: tip\n"
                "    channels: [consol]\n"  # a typo: a reference problem from loading
                "    template: posts/tip\n"
                "    at: 2026-12-02 09:00\n"
                "  - id: quiz\n"
                "    kind: contest\n"
                "    channels: [console]\n"
                "    template: posts/tip\n"
                "    opens: 2026-12-07 10:00\n"
                "    closes: 2026-12-20 10:00\n"
                "    steps:\n"
                "      - {name: opens, at: opens}\n"
                "      - {name: kickoff, at: 2026-12-07 10:00}\n"  # a plan problem
            )
        }
    )
    result = validate(load_project(root), SPAN)
    shown = [str(p) for p in result.problems]
    assert any(s.startswith("calendars/c.yaml:3:") and "consol" in s for s in shown), shown
    assert any(
        s.startswith("calendars/c.yaml:6:") and "steps 'opens' and 'kickoff'" in s for s in shown
    ), shown
    assert result.exit_code == 1
    assert result.calendars == 1
    code, _, err = run(root, "validate", "--now", "2026-12-01T00:00:00Z")
    assert code == result.exit_code
    assert err.strip().splitlines()[: len(shown)] == shown


def test_validate_of_a_broken_commcal_yaml_checks_nothing_further_and_exits_2(
    make_project: MakeProject,
) -> None:
    root = make_project(config="timezone: Mars/Olympus\nchannels: {console: {type: console}}\n")
    result = validate(load_project(root), SPAN)
    assert result.config_broken
    assert result.checked == 0
    assert result.exit_code == 2
    assert [p.pos.path for p in result.errors] == ["commcal.yaml"]


def test_the_window_rules_are_the_librarys() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # a Wednesday
    week = window(now, "Europe/Athens", next_week=True)
    assert week == Span(
        datetime(2026, 12, 6, 22, 0, tzinfo=UTC), datetime(2026, 12, 13, 22, 0, tzinfo=UTC)
    )
    day = window(now, "Europe/Athens", start="2026-12-10", end="2026-12-10")
    assert day.end - day.start == timedelta(days=1)
    with pytest.raises(ConfigError, match="--next-week chooses the window itself"):
        window(now, "Europe/Athens", next_week=True, days=3)
    with pytest.raises(ConfigError, match=r"--to \(2026-12-01\) must be after"):
        window(now, "Europe/Athens", end="2026-12-01")
