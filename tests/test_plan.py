"""plan(): what a calendar author sees before anything is sent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from commcal.cli import app
from commcal.plan import plan
from commcal.project import load_project
from tests.conftest import MakeProject

START = datetime(2026, 12, 1, tzinfo=UTC)


def run(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["-C", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


def test_two_contest_steps_at_one_instant_are_a_problem_not_one_silent_delivery(
    make_project: MakeProject,
) -> None:
    root = make_project(
        calendars={
            "c.yaml": (
                "items:\n"
                "  - id: quiz\n"
                "    kind: contest\n"
                "    channels: [console]\n"
                "    template: posts/tip\n"
                "    opens: 2026-12-07 10:00\n"
                "    closes: 2026-12-20 10:00\n"
                "    steps:\n"
                "      - {name: opens, at: opens}\n"
                "      - {name: kickoff, at: 2026-12-07 10:00}\n"
            )
        }
    )
    planned = plan(load_project(root), START, START + timedelta(days=30))
    assert [p.delivery.occurrence.step for p in planned] == ["opens", "kickoff"]
    assert planned[0].ok
    assert [p.message for p in planned[1].problems] == [
        "item 'quiz': steps 'opens' and 'kickoff' fall at the same instant "
        "(2026-12-07 10:00) on console"
    ]
    assert str(planned[1].problems[0].pos) == "calendars/c.yaml:2:9"
    code, _, err = run(root, "validate", "--now", "2026-12-01T00:00:00Z")
    assert code == 1
    assert "calendars/c.yaml:2:9: error: item 'quiz': steps 'opens' and 'kickoff'" in err


def test_a_mistyped_filter_is_a_usage_error_with_a_suggestion(make_project: MakeProject) -> None:
    root = make_project(
        calendars={
            "c.yaml": "items:\n  - id: tip\n    channels: [console]\n    template: posts/tip\n"
            "    at: 2026-12-02 09:00\n"
        }
    )
    code, out, err = run(root, "plan", "--channel", "consol", "--now", "2026-12-01T00:00:00Z")
    assert (code, out) == (2, "")
    assert err == "commcal: --channel 'consol': no such channel; did you mean 'console'?\n"
    code, _, err = run(root, "plan", "--item", "tpi", "--now", "2026-12-01T00:00:00Z")
    assert code == 2 and "did you mean 'tip'?" in err
    code, _, err = run(root, "plan", "--next-week", "--days", "3")
    assert code == 2 and "--next-week chooses the window itself" in err


def test_duration_filter_is_exact_in_each_language(make_project: MakeProject) -> None:
    template = "{{ event.duration | duration }}\n"
    calendars = {
        f"{lang}.yaml": (
            f"locale: {lang}\nitems:\n  - id: talk-{lang}\n    kind: event\n"
            "    channels: [console]\n    template: events/len\n"
            "    at: 2026-12-10 18:00\n    duration: 1h30m\n"
        )
        for lang in ("en", "el", "sw")
    }
    root = make_project(calendars=calendars, templates={"events/len.j2": template})
    texts = {
        p.delivery.item.id: p.message.text if p.message else ""
        for p in plan(load_project(root), START, START + timedelta(days=30))
    }
    assert texts == {
        "talk-en": "1 hour and 30 minutes",
        "talk-el": "1 ώρα και 30 λεπτά",
        "talk-sw": "saa 1 na dakika 30",
    }


# -- the table at the width of the terminal --------------------------------------------------------

WORDY = {
    "posts/tip.j2": "Our weekly kitchen tip: rest the dough for twenty minutes before rolling\n"
}


def table_project(make_project: MakeProject) -> Path:
    return make_project(
        calendars={
            "c.yaml": (
                "items:\n"
                "  - id: weekly-kitchen-tip\n"
                "    kind: post\n"
                "    channels: [console]\n"
                "    template: posts/tip\n"
                "    schedule: {cron: '0 9 * * MON'}\n"
            )
        },
        templates=WORDY,
    )


def table(root: Path, columns: int, *args: str) -> str:
    result = CliRunner().invoke(
        app,
        ["-C", str(root), "plan", "--now", "2026-12-01T00:00:00Z", "--days", "14", *args],
        env={"COLUMNS": str(columns)},
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_plan_table_at_80_columns_keeps_words_of_the_preview(
    make_project: MakeProject,
) -> None:
    out = table(table_project(make_project), 80)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if "09:00" in line]
    assert len(rows) == 2
    for row in rows:
        assert "Our weekly kitchen tip: rest" in row  # words, not an empty column
        assert "weekly-kitchen-tip" in row
    # The day is a heading of its own; the length column waits for --wide.
    assert any(line.split("│")[0].strip() == "Mon 07 Dec" for line in lines), out
    assert "length" not in out


def test_wide_shows_every_column_however_narrow(make_project: MakeProject) -> None:
    out = table(table_project(make_project), 80, "--wide")
    header = next(line for line in out.splitlines() if "channel" in line)
    for column in ("day", "time", "channel", "item", "preview", "length"):
        assert column in header
    assert "Mon 07 Dec" in out


def test_a_wide_terminal_gets_every_column(make_project: MakeProject) -> None:
    out = table(table_project(make_project), 160)
    assert "length" in out
    assert "Our weekly kitchen tip: rest the dough for twenty minutes" in out
