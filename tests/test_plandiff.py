"""`commcal plan --diff BASE`: the deliveries a commit adds, removes, moves and rewords, read from
a throwaway git repository made here; and the CI example and pre-commit hook that use it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from commcal.cli import app

ROOT = Path(__file__).resolve().parent.parent
ENV = {"MASTODON_TOKEN": "test-token"}
NOW = ("--now", "2027-01-04T00:00:00Z", "--days", "14")

CONFIG = """\
timezone: Europe/Athens
locale: en
channels:
  console: {type: console}
  mastodon: {type: mastodon, instance: "https://mastodon.example", token: "${MASTODON_TOKEN}"}
"""
TEMPLATES = {"posts/tip.j2": "{{ topic }}\n{{ at | date }}\n"}
BASE = """\
defaults: {channels: [console]}
items:
  - id: weekly
    template: posts/tip
    channels: [console, mastodon]
    schedule: {cron: "0 9 * * MON"}
    vars: {topic: "Weekly tip"}
  - id: launch
    template: posts/tip
    at: 2027-01-06 12:00
    vars: {topic: "We launch"}
  - id: reminder
    template: posts/tip
    dates: [2027-01-05 10:00, 2027-01-07 10:00]
    vars: {topic: "Remember"}
  - id: old-name
    template: posts/tip
    at: 2027-01-08 08:00
    vars: {topic: "Same words"}
  - id: dropped
    template: posts/tip
    at: 2027-01-09 08:00
    vars: {topic: "Gone soon"}
"""
# The commit under review: one text reworded, one date moved, one item renamed, one removed, and
# a post too long for Mastodon added.
HEAD = (
    BASE.replace('"We launch"', '"We launch today"')
    .replace("2027-01-07 10:00", "2027-01-07 16:30")
    .replace("old-name", "new-name")
    .replace(
        "  - id: dropped\n    template: posts/tip\n    at: 2027-01-09 08:00\n"
        '    vars: {topic: "Gone soon"}\n',
        "  - id: shout\n    template: posts/tip\n    channels: [mastodon]\n"
        f"    at: 2027-01-10 08:00\n    vars: {{topic: {'A' * 520}}}\n",
    )
)


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.org",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.org",
        },
    )
    return done.stdout


def repository(path: Path, calendars: list[str], config: str = CONFIG) -> Path:
    """A git repository whose project folder is `site/` (not the top level), one commit per
    version of calendars/main.yaml."""
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    root = path / "site"
    (root / "calendars").mkdir(parents=True)
    (root / "commcal.yaml").write_text(config, encoding="utf-8")
    for name, text in TEMPLATES.items():
        (root / "templates" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "templates" / name).write_text(text, encoding="utf-8")
    for n, text in enumerate(calendars):
        (root / "calendars" / "main.yaml").write_text(text, encoding="utf-8")
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", f"version {n}")
    return root


def run(root: Path, *args: str) -> object:
    return CliRunner().invoke(app, ["-C", str(root), *args], env=ENV)


def rows(result: object) -> list[tuple[str, str, str, str | None, str | None]]:
    data = json.loads(result.stdout)  # type: ignore[attr-defined]
    assert data["schema"] == "commcal.plan_diff/1"
    return [
        (
            c["change"],
            c["item"],
            c["channel"],
            c["base"]["due_utc"] if c["base"] else None,
            c["head"]["due_utc"] if c["head"] else None,
        )
        for c in data["changes"]
    ]


def test_diff_reports_exactly_the_changed_deliveries(tmp_path: Path) -> None:
    root = repository(tmp_path / "repo", [BASE, HEAD])
    before = git(root, "status", "--porcelain")
    result = run(root, "plan", "--diff", "HEAD~1", *NOW, "--format", "json")
    assert result.exit_code == 0, result.output
    assert rows(result) == [
        ("changed", "launch", "console", "2027-01-06T10:00:00Z", "2027-01-06T10:00:00Z"),
        ("moved", "reminder", "console", "2027-01-07T08:00:00Z", "2027-01-07T14:30:00Z"),
        ("added", "new-name", "console", None, "2027-01-08T06:00:00Z"),
        ("removed", "old-name", "console", "2027-01-08T06:00:00Z", None),
        ("removed", "dropped", "console", "2027-01-09T06:00:00Z", None),
        ("added", "shout", "mastodon", None, "2027-01-10T06:00:00Z"),
    ]
    data = json.loads(result.stdout)
    changed, _, added, removed, _, shout = data["changes"]
    assert changed["text_diff"] == [
        "@@ -1,2 +1,2 @@",
        "-We launch",
        "+We launch today",
        " Wednesday, January 6, 2027",
    ]
    assert added["note"] == "looks renamed from main/old-name (same times and text)"
    assert removed["note"] == "looks renamed to main/new-name (same times and text)"
    assert shout["over_limit"] is True and shout["head"]["limit"] == 500
    assert data["summary"] == {
        "added": 2,
        "removed": 2,
        "moved": 1,
        "changed": 1,
        "unchanged": 5,  # weekly: 2 Mondays x 2 channels; reminder on the 5th
        "over_limit": 1,
    }
    assert git(root, "status", "--porcelain") == before  # working tree and index untouched
    assert git(root, "stash", "list") == "" and git(root, "worktree", "list").count("\n") == 1


def test_the_working_tree_is_compared_even_uncommitted(tmp_path: Path) -> None:
    root = repository(tmp_path / "repo", [BASE])
    path = root / "calendars" / "main.yaml"
    path.write_text(BASE.replace("at: 2027-01-09 08:00", "at: 2027-01-09 09:00"), "utf-8")
    result = run(root, "plan", "--diff", "HEAD", *NOW, "--format", "json")
    assert result.exit_code == 0, result.output
    assert rows(result) == [
        ("moved", "dropped", "console", "2027-01-09T06:00:00Z", "2027-01-09T07:00:00Z")
    ]
    assert git(root, "status", "--porcelain") == " M site/calendars/main.yaml\n"


@pytest.mark.parametrize(
    ("kinds", "code", "failed"),
    [
        ("removed", 1, ["removed"]),
        ("over-limit", 1, ["over-limit"]),
        ("moved,changed", 1, ["moved", "changed"]),
    ],
)
def test_fail_on_exits_1_for_the_kinds_named(
    tmp_path: Path, kinds: str, code: int, failed: list[str]
) -> None:
    root = repository(tmp_path / "repo", [BASE, HEAD])
    result = run(root, "plan", "--diff", "HEAD~1", *NOW, "-f", "json", "--fail-on", kinds)
    assert result.exit_code == code, result.output
    assert json.loads(result.stdout)["failed_on"] == failed


def test_fail_on_lint_fails_only_for_findings_the_change_brings(tmp_path: Path) -> None:
    """A post crowding another on one channel is new lint in the change: `--fail-on lint`
    fails and names it; an old finding the change keeps does not count."""
    crowd = (
        "  - id: crowd{n}\n    template: posts/tip\n    at: 2027-01-06 12:{m}\n"
        "    vars: {{topic: x}}\n"
    )
    base = BASE + crowd.format(n=1, m="10")  # launch 12:00 + crowd1 12:10: old finding
    head = base + crowd.format(n=2, m="40")  # crowd2 12:40: a new one
    root = repository(tmp_path / "repo", [base, head], CONFIG + "lint:\n  min_spacing: 1h\n")
    unchanged = run(root, "plan", "--diff", "HEAD", *NOW, "-f", "json", "--fail-on", "lint")
    assert unchanged.exit_code == 0, unchanged.output
    assert json.loads(unchanged.stdout)["lint"] == {"available": True, "new": []}
    result = run(root, "plan", "--diff", "HEAD~1", *NOW, "-f", "json", "--fail-on", "lint")
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["failed_on"] == ["lint"]
    [finding] = data["lint"]["new"]
    assert "min_spacing" in finding["message"] and "crowd2" in finding["message"]


def test_nothing_changed_passes_every_fail_on(tmp_path: Path) -> None:
    root = repository(tmp_path / "repo", [BASE])
    kinds = "added,removed,moved,changed,over-limit"
    result = run(root, "plan", "--diff", "HEAD", *NOW, "--fail-on", kinds)
    assert result.exit_code == 0, result.output
    assert "0 added, 0 removed, 0 moved, 0 changed, 9 unchanged" in result.stdout


def test_markdown_for_a_pull_request(tmp_path: Path) -> None:
    root = repository(tmp_path / "repo", [BASE, HEAD])
    result = run(root, "plan", "--diff", "HEAD~1", *NOW, "--format", "markdown")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert text.startswith("### commcal plan: changes against `HEAD~1`")
    assert "**2 added, 2 removed, 1 moved, 1 changed, 5 unchanged**" in text
    assert "#### console" in text and "#### mastodon" in text
    assert "| ~ moved | Thu 07 Jan 10:00 → 16:30 | `main/reminder` |" in text
    assert "looks renamed from main/old-name" in text
    assert "```diff\n@@ -1,2 +1,2 @@\n-We launch\n+We launch today\n" in text
    assert "over the limit: 545/500" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--diff", "no-such-branch"), "no such git revision"),
        (("--diff=--output=x",), "no such git revision"),
        (("--fail-on", "removed"), "--fail-on needs --diff BASE"),
        (("--diff", "HEAD", "--fail-on", "deleted"), "--fail-on 'deleted': not a kind of change"),
    ],
)
def test_bad_diff_options_are_usage_errors(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    root = repository(tmp_path / "repo", [BASE])
    result = run(root, "plan", *args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_a_project_outside_git_is_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    shutil.copytree(repository(tmp_path / "repo", [BASE]), root)
    result = run(root, "plan", "--diff", "HEAD")
    assert result.exit_code == 2
    assert "is not in a git repository" in result.stderr


def shim(bin_dir: Path) -> dict[str, str]:
    """`commcal` on PATH running this checkout; `pip` that installs nothing (the workflow's
    install step needs a network)."""
    bin_dir.mkdir(exist_ok=True)
    commcal = bin_dir / "commcal"
    commcal.write_text(f'#!/bin/sh\nexec {sys.executable} -m commcal "$@"\n', encoding="utf-8")
    pip = bin_dir / "pip"
    pip.write_text('#!/bin/sh\necho pip "$@" >> "$PIP_LOG"\n', encoding="utf-8")
    for path in (commcal, pip):
        path.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}


# The CI test runs the workflow as written, on today's clock: recurring items always have
# deliveries in its window.
CI_BASE = """\
defaults: {channels: [console]}
items:
  - id: daily
    template: posts/tip
    schedule: {cron: "0 9 * * *"}
    vars: {topic: "Daily"}
  - id: weekly
    template: posts/tip
    schedule: {cron: "0 12 * * WED"}
    vars: {topic: "Weekly"}
"""


def workflow_scripts() -> list[str]:
    workflow = yaml.safe_load((ROOT / "examples" / "ci" / "github-actions.yml").read_text("utf-8"))
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    checkout = next(s for s in steps if str(s.get("uses", "")).startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0  # the base branch's history is needed
    return [s["run"] for s in steps if "run" in s]


def run_workflow(tmp_path: Path, work: Path, summary: Path) -> subprocess.CompletedProcess[str]:
    """Each `run:` step with bash, as Actions runs them, up to the first that fails."""
    env = {
        **os.environ,
        **shim(tmp_path / "bin"),
        **ENV,
        "GITHUB_STEP_SUMMARY": str(summary),
        "PIP_LOG": str(tmp_path / "pip.log"),
        "COMMCAL_PROJECT": str(work / "site"),
    }
    for script in workflow_scripts():
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            break
    return done


def pull_request(tmp_path: Path, branch: str, calendar: str) -> Path:
    """origin: a bare repository whose main has CI_BASE; the job's checkout: a clone of it on
    `branch`, which commits `calendar`."""
    origin = tmp_path / "origin.git"
    if not origin.exists():
        upstream = repository(tmp_path / "upstream", [CI_BASE]).parent
        git(tmp_path, "clone", "-q", "--bare", str(upstream), str(origin))
    work = tmp_path / branch
    git(tmp_path, "clone", "-q", str(origin), str(work))
    git(work, "checkout", "-q", "-b", branch)
    (work / "site" / "calendars" / "main.yaml").write_text(calendar, "utf-8")
    git(work, "commit", "-qam", branch)
    return work


def test_the_github_actions_example_runs_against_a_local_origin(tmp_path: Path) -> None:
    assert any("--diff origin/main" in s and "GITHUB_STEP_SUMMARY" in s for s in workflow_scripts())

    work = pull_request(tmp_path, "later", CI_BASE.replace("0 9 * * *", "0 10 * * *"))
    summary = tmp_path / "later.md"
    done = run_workflow(tmp_path, work, summary)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    text = summary.read_text(encoding="utf-8")
    assert "### commcal plan: changes against `origin/main`" in text
    assert re.search(r"\*\*0 added, 0 removed, (59|60|61) moved, 0 changed, \d+ unchanged", text)
    assert re.search(r"\| ~ moved \| \w{3} \d\d \w{3} 09:00 → 10:00 \|", text)
    assert git(work, "status", "--porcelain") == ""
    assert (tmp_path / "pip.log").read_text() == "pip install commcal\n"

    # Removing an item fails the job (--fail-on removed), and the summary says why.
    work = pull_request(tmp_path, "fewer", CI_BASE.split("  - id: weekly")[0])
    summary = tmp_path / "fewer.md"
    done = run_workflow(tmp_path, work, summary)
    assert done.returncode == 1, f"{done.stdout}\n{done.stderr}"
    text = summary.read_text(encoding="utf-8")
    assert re.search(r"\| - removed \| .* \| `main/weekly` \| Weekly \|", text)
    assert "**Failing on: removed.**" in text


def test_the_pre_commit_hook_validates_the_project_files() -> None:
    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert hook["id"] == "commcal-validate"
    assert hook["entry"] == "commcal validate" and hook["pass_filenames"] is False
    files = re.compile(hook["files"])
    for path in ("commcal.yaml", "calendars/main.yaml", "templates/posts/tip.j2"):
        assert files.search(path), path
    for path in ("README.md", "commcal/cli.py", "old-calendars/x.yaml", "my-commcal.yaml"):
        assert not files.search(path), path
    result = CliRunner().invoke(app, ["-C", str(ROOT), *hook["entry"].split()[1:]])
    assert result.exit_code == 0, result.output
