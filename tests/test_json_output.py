"""`--format json` keeps standard output one JSON document whatever happens (issue 15, point 20):
console channels print to standard error, and a calendar or configuration error still yields the
command's documented object (docs/json.md).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MakeProject
from tests.test_publish_processes import command


def commcal(*args: str) -> tuple[int, Any, str]:
    proc = subprocess.run(
        [*command(), *args], capture_output=True, text=True, env=dict(os.environ), timeout=60
    )
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_init_then_publish_json_is_one_document(tmp_path: Path) -> None:
    root = tmp_path / "fresh"
    subprocess.run([*command(), "init", str(root)], check=True, capture_output=True, timeout=60)
    code, plan, _ = commcal("-C", str(root), "plan", "--days", "60", "--format", "json")
    assert code == 0
    console = [d for d in plan["deliveries"] if d["channel_type"] == "console"]
    assert console, plan
    due = console[0]["due_utc"]
    code, out, err = commcal("-C", str(root), "publish", "--now", due, "--format", "json")
    assert code == 0, err
    assert out["schema"] == "commcal.publish/1" and out["counts"].get("sent", 0) >= 1
    assert console[0]["text"].strip().splitlines()[0] in err  # the message went to stderr


CONSOLE = (
    "timezone: UTC\nlocale: en\nstate: sqlite:///state.db\nchannels:\n  console: {type: console}\n"
)
GOOD = "  - id: tip\n    channels: [console]\n    template: posts/tip\n    at: 2026-12-01 09:00\n"
TYPO = (
    "  - id: typo\n    channels: [console]\n    titel: x\n    template: posts/tip\n"
    "    at: 2026-12-01 09:00\n"
)


@pytest.mark.parametrize("command_args", [["publish"], ["plan"], ["validate"], ["preview", "tip"]])
def test_a_calendar_error_still_gives_the_documented_object(
    make_project: MakeProject, command_args: list[str]
) -> None:
    root = make_project(
        config=CONSOLE,
        calendars={"main.yaml": "items:\n" + GOOD + TYPO, "bad.yaml": "items:\n  - id: [x\n"},
    )
    code, out, _ = commcal(
        "-C", str(root), *command_args, "--now", "2026-12-01T08:59:00Z", "--format", "json"
    )
    assert code == 1
    schema = {"publish": "publish", "plan": "plan", "validate": "validate", "preview": "preview"}
    assert out["schema"] == f"commcal.{schema[command_args[0]]}/1"
    files = {p["file"] for p in out["problems"]}
    assert files == {"calendars/main.yaml", "calendars/bad.yaml"}
    assert all(p["line"] for p in out["problems"])


@pytest.mark.parametrize("command_args", [["publish"], ["plan"], ["validate"]])
def test_a_config_error_still_gives_the_documented_object(
    make_project: MakeProject, command_args: list[str]
) -> None:
    root = make_project(config=CONSOLE + "publish: {max_late: soon}\n")
    code, out, err = commcal("-C", str(root), *command_args, "--format", "json")
    assert code == 2, err
    assert out["schema"] == f"commcal.{command_args[0]}/1"
    assert out["problems"][0]["file"] == "commcal.yaml"


@pytest.mark.parametrize("command_args", [["publish"], ["plan"], ["validate"]])
def test_an_unreadable_config_still_gives_the_documented_object(
    make_project: MakeProject, command_args: list[str]
) -> None:
    root = make_project(config="timezone: [UTC\n")
    code, out, err = commcal("-C", str(root), *command_args, "--format", "json")
    assert code == 2, err
    assert out["schema"] == f"commcal.{command_args[0]}/1"
    assert out["problems"] and out["problems"][0]["file"] == "commcal.yaml"


def test_no_project_and_no_ledger_still_give_one_document(
    make_project: MakeProject, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, _ = commcal("-C", str(empty), "validate", "--format", "json")
    assert code == 2 and out["schema"] == "commcal.validate/1" and out["ok"] is False
    assert "commcal.yaml" in out["problems"][0]["message"]

    root = make_project(config=CONSOLE, calendars={"main.yaml": "items:\n" + GOOD})
    code, out, err = commcal(
        "-C",
        str(root),
        "publish",
        "--format",
        "json",
        "--now",
        "2026-12-01T09:00:10Z",
        "--state",
        "postgresql://nobody@127.0.0.1:1/none",
    )
    assert code == 2, err
    assert out["schema"] == "commcal.publish/1" and out["deliveries"] == []
    assert out["problems"], out
