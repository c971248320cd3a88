"""`commcal init`: the newcomer's first project, in their own zone, ignored by git where it
should be, and planning something whatever today's date is."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from commcal.cli import app
from commcal.scaffold import choose_zone


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def test_init_takes_the_zone_from_tz_and_plans_in_it_for_years(tmp_path: Path) -> None:
    target = tmp_path / "cal"
    result = invoke("init", str(target), env={"TZ": "Asia/Tokyo"})
    assert result.exit_code == 0, result.output
    assert "timezone: Asia/Tokyo (from the TZ environment variable)" in result.stdout
    config = yaml.safe_load((target / "commcal.yaml").read_text(encoding="utf-8"))
    assert config["timezone"] == "Asia/Tokyo"
    calendar = yaml.safe_load((target / "calendars/community.yaml").read_text(encoding="utf-8"))
    assert calendar["vars"]["site"].endswith("/")
    for now in ("2026-12-01T00:00:00Z", "2031-06-01T00:00:00Z", "2044-02-29T12:00:00Z"):
        planned = invoke("-C", str(target), "plan", "--now", now, "--format", "json")
        assert planned.exit_code == 0, planned.output
        deliveries = json.loads(planned.stdout)["deliveries"]
        assert deliveries, now
        # 09:00 on Mondays in Tokyo; the link is the site's root, not "example.org?utm...".
        assert deliveries[0]["due_local"].endswith("T09:00:00+09:00")
        assert "https://example.org/?utm_source=console" in deliveries[0]["text"]


def test_the_ledger_folder_is_ignored_by_git(tmp_path: Path) -> None:
    target = tmp_path / "cal"
    assert invoke("init", str(target), "--timezone", "UTC").exit_code == 0
    subprocess.run(["git", "init", "-q", str(target)], check=True)
    (target / ".commcal").mkdir()
    (target / ".commcal" / "state.db").write_bytes(b"ledger")
    status = subprocess.run(
        ["git", "-C", str(target), "status", "--porcelain", "--untracked-files=all"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert ".commcal" not in status
    assert "commcal.yaml" in status and "calendars/community.yaml" in status


def test_init_adds_to_an_existing_gitignore_once(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("node_modules/", encoding="utf-8")
    assert invoke("init", str(tmp_path), "--force", "--timezone", "UTC").exit_code == 0
    assert invoke("init", str(tmp_path), "--force", "--timezone", "UTC").exit_code == 0
    lines = (tmp_path / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "node_modules/"
    assert lines.count(".commcal/") == 1


def test_timezone_option_wins_and_a_typo_gets_a_suggestion(tmp_path: Path) -> None:
    target = tmp_path / "cal"
    result = invoke("init", str(target), "--timezone", "Europe/Athen", env={"TZ": "Asia/Tokyo"})
    assert result.exit_code == 2
    assert "--timezone 'Europe/Athen' is not an IANA zone name; try Europe/Athens" in (
        result.stderr
    )
    assert not target.exists()
    result = invoke("init", str(target), "--timezone", "America/New_York", env={"TZ": "Asia/Tokyo"})
    assert result.exit_code == 0, result.output
    assert "timezone: America/New_York   #" in (target / "commcal.yaml").read_text("utf-8")


def test_a_tz_that_names_no_zone_is_ignored_with_a_note(tmp_path: Path) -> None:
    result = invoke("init", str(tmp_path / "cal"), env={"TZ": "Mars/Olympus"})
    assert result.exit_code == 0, result.output
    assert "TZ='Mars/Olympus' is not an IANA zone name and was ignored" in result.stderr
    config = yaml.safe_load((tmp_path / "cal" / "commcal.yaml").read_text(encoding="utf-8"))
    assert config["timezone"] != "Mars/Olympus"


@pytest.mark.parametrize(
    ("tz", "name"),
    [
        ("Europe/Athens", "Europe/Athens"),
        (":Europe/Athens", "Europe/Athens"),
        ("/usr/share/zoneinfo/America/New_York", "America/New_York"),
        ("Etc/UTC", "UTC"),
    ],
)
def test_tz_forms(tz: str, name: str) -> None:
    chosen = choose_zone(None, {"TZ": tz})
    assert chosen.name == name
    assert (chosen.note is not None) == (name == "UTC")  # UTC: "edit it if you live elsewhere"
