"""Attacks from outside on the commands of issue 12 (plan --diff, import csv, export ics/html,
cadence lint): hostile revisions and repositories, hostile CSV cells, hostile text in exports.
Each test here failed before the fix it names, or pins a defence that held."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.test_plandiff import BASE, NOW, git, repository, run

# --- plan --diff BASE -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base",
    [
        "--output=x.tar",
        "--remote=/tmp",
        "--exec=touch pwned",
        "-o",
        "HEAD ~1",
        "HEAD\nHEAD",
        "HEAD:../..",
        "HEAD:",
        "",
        "HEAD^{tree}",
    ],
)
def test_a_revision_that_is_an_option_or_not_a_commit_is_refused(tmp_path: Path, base: str) -> None:
    """Held: nothing reaches git as an option; the JSON answer is still one document."""
    root = repository(tmp_path / "repo", [BASE])
    os.chdir(tmp_path)
    result = run(root, "plan", "--diff", base, "--format", "json", *NOW)
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "no such git revision" in result.stderr  # type: ignore[attr-defined]
    assert json.loads(result.stdout)["base"]["commit"] is None  # type: ignore[attr-defined]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
    assert git(root.parent, "status", "--porcelain") == ""


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../../../etc/passwd", "../../.."])
@pytest.mark.parametrize("fmt", ["table", "json"])
def test_a_link_out_of_the_repository_in_base_is_a_clear_error(
    tmp_path: Path, target: str, fmt: str
) -> None:
    """Broke: tarfile's "data" filter raised out of `plan --diff` (a traceback, exit 1, and no
    JSON document). Now a usage error naming the link, and nothing of the target is read."""
    root = repository(tmp_path / "repo", [BASE])
    link = root / "calendars" / "evil.yaml"
    link.symlink_to(target)
    git(root.parent, "add", "-A")
    git(root.parent, "commit", "-qm", "a link")
    link.unlink()  # the working tree is fine: only BASE has the link
    result = run(root, "plan", "--diff", "HEAD", "--format", fmt, *NOW)
    assert result.exception is None or isinstance(result.exception, SystemExit)  # type: ignore[attr-defined]
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "site/calendars/evil.yaml in that revision is a link to a place outside" in (
        result.stderr  # type: ignore[attr-defined]
    )
    assert "root:" not in result.output  # type: ignore[attr-defined]
    if fmt == "json":
        assert json.loads(result.stdout)["schema"] == "commcal.plan_diff/1"  # type: ignore[attr-defined]
