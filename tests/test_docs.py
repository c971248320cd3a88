"""Every command has help with an example and is documented; every JSON schema is documented;
and every command a user is shown runs as shown on the bundled example project.

The command walker (`test_a_documented_command_runs_as_shown`):

- **What it runs.** In README.md and docs/*.md: each line of a fenced code block that starts
  with `commcal ` or `.venv/bin/commcal ` (after an optional `$ ` prompt), and each inline code
  span starting `commcal ` on a line that starts with `Example:`. From `--help`: each command's
  `Example: commcal ...` line. Lines starting otherwise (`git clone`, a crontab's `* * * * *`,
  `ExecStart=`, `export`) are not commands to it.
- **How.** In a fresh copy of the bundled project (the top level's commcal.yaml, calendars/,
  templates/, audiences/, codes/, examples/) with an empty ledger, as written: a trailing
  `# comment` is dropped,
  `A && B` runs A then B, `cd DIR` moves into DIR. Every `${VAR}` that commcal.yaml references
  (COMMCAL_MEMBER_SECRET, MASTODON_TOKEN, ...) is set to a test value, and HTTP(S) goes to a
  proxy on a closed loopback port, so nothing can reach a real network. Commands without
  `--now` run on today's clock: the example's recurring items have no end, so they always have
  something to show. Other shell syntax (`|`, `>`, `$(...)`, `;`) is refused: write the command
  plainly or mark it.
- **What it asserts.** Exit 0 and no traceback, unless marked.
- **Marks**, in the docs only, as HTML comments (invisible on GitHub):
  `<!-- not run: REASON -->` skips, `<!-- exit: N -->` expects exit N. A mark on the line just
  before a fence applies to every command of that block; a mark on an `Example:` line applies
  to that line's commands. A `--help` example takes the mark of the same command text in
  docs/cli.md. Mark what cannot run offline or never ends: a real network or account
  (`channels test`, a real `publish`), a server or daemon (`run`, `unsubscribe-server`); show
  sending commands with `--dry-run` or `--channel console` when you want them walked.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from commcal.cli import app
from commcal.ledger import open_ledger

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
VIEWS = ROOT / "commcal" / "views"


def walk(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, command)] if path else []
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += walk(sub, (*path, name))
    return found


COMMANDS = walk(typer.main.get_command(app))
CASES = [pytest.param(path, command, id=" ".join(path)) for path, command in COMMANDS]


def test_the_walk_finds_the_commands_and_subcommands() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"init", "validate", "plan", "preview", "publish", "channels", "channels test"} <= names


@pytest.mark.parametrize(("path", "command"), CASES)
def test_command_has_help_with_an_example(path: tuple[str, ...], command: Any) -> None:
    assert command.help, f"commcal {' '.join(path)} has no help text"
    assert "Example: commcal " in command.help


@pytest.mark.parametrize(("path", "command"), CASES)
def test_command_is_documented(path: tuple[str, ...], command: Any) -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    heading = re.compile(rf"^#+ commcal {re.escape(' '.join(path))}$", re.M)
    assert heading.search(text), f"docs/cli.md has no heading for commcal {' '.join(path)}"


def schemas_in_views() -> list[str]:
    found: set[str] = set()
    for path in VIEWS.glob("*.py"):
        found |= set(re.findall(r'"(commcal\.[a-z_]+/\d+)"', path.read_text(encoding="utf-8")))
    return sorted(found)


def test_the_views_print_schemas() -> None:
    assert "commcal.plan/1" in schemas_in_views()


@pytest.mark.parametrize("schema", schemas_in_views())
def test_json_schema_is_documented(schema: str) -> None:
    text = (DOCS / "json.md").read_text(encoding="utf-8")
    assert re.search(rf"^## {re.escape(schema)}$", text, re.M), f"docs/json.md lacks {schema}"


# -- the command walker (see the module docstring) ---------------------------------------------

PROJECT_PARTS = ("commcal.yaml", "calendars", "templates", "audiences", "codes", "examples")
MARK = re.compile(r"<!--\s*(not run|exit)\s*:\s*(.*?)\s*-->")
FENCE = re.compile(r"^\s*(```|~~~)")
PROGRAM = re.compile(r"^(?:\$\s+)?(?:\.venv/bin/)?commcal\s")
SPAN = re.compile(r"`(commcal [^`]+)`")
SHELL = re.compile(r"[|;<>]|\$\(|`")


@dataclass(frozen=True)
class Shown:
    """A command as a user sees it, where, and how its doc marks it."""

    line: str
    where: str
    skip: str | None = None  # the reason, for `not run`
    exit: int = 0


def _marks(text: str) -> tuple[str | None, int]:
    skip, code = None, 0
    for kind, value in MARK.findall(text):
        if kind == "not run":
            skip = value or "marked"
        else:
            code = int(value)
    return skip, code


def doc_commands() -> list[Shown]:
    found: list[Shown] = []
    for path in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        name = path.relative_to(ROOT).as_posix()
        lines = path.read_text(encoding="utf-8").splitlines()
        fenced = False
        block_marks: tuple[str | None, int] = (None, 0)
        for number, line in enumerate(lines, 1):
            if FENCE.match(line):
                fenced = not fenced
                block_marks = _marks(lines[number - 2]) if fenced and number > 1 else (None, 0)
                continue
            if fenced:
                command = re.sub(r"\s+#.*$", "", line.strip())
                if PROGRAM.match(command):
                    skip, code = block_marks
                    found.append(Shown(command, f"{name}:{number}", skip, code))
            elif line.startswith("Example:"):
                skip, code = _marks(line)
                for span in SPAN.findall(line):
                    found.append(Shown(span.strip(), f"{name}:{number}", skip, code))
    return found


def help_commands(documented: list[Shown]) -> list[Shown]:
    marks = {shown.line: shown for shown in documented if shown.where.startswith("docs/cli.md")}
    found: list[Shown] = []
    for path, command in [((), typer.main.get_command(app)), *COMMANDS]:
        for match in re.finditer(r"^\s*Example: (commcal .+?)\s*$", command.help or "", re.M):
            line = match.group(1)
            mark = marks.get(line)
            where = f"commcal {' '.join(path)} --help".replace("  ", " ")
            found.append(Shown(line, where, mark.skip if mark else None, mark.exit if mark else 0))
    return found


DOCUMENTED = doc_commands()
SHOWN = [*DOCUMENTED, *help_commands(DOCUMENTED)]


def copy_example(target: Path) -> Path:
    """A fresh copy of the bundled example project (no ledger) at `target`."""
    target.mkdir()
    for part in PROJECT_PARTS:
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, target / part)
        else:
            shutil.copy2(source, target / part)
    return target


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: connections to it are refused at once


def walker_env() -> dict[str, str | None]:
    config = (ROOT / "commcal.yaml").read_text(encoding="utf-8")
    env: dict[str, str | None] = {
        name: f"https://127.0.0.1:9/{name.lower()}" if name.endswith("_URL") else f"test-{name}"
        for name in re.findall(r"\$\{([A-Z0-9_]+)\}", config)
    }
    env["COMMCAL_MEMBER_SECRET"] = "a-test-member-secret-" + "x" * 32
    env["SMTP_HOST"] = "127.0.0.1"
    proxy = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[name] = proxy
    for name in ("NO_PROXY", "no_proxy", "COMMCAL_STATE", "COMMCAL_PROJECT", "TZ"):
        env[name] = None
    return env


def test_the_walker_finds_the_commands_people_are_shown() -> None:
    lines = {shown.line for shown in SHOWN}
    # The README's quick start and Try: block, an Example: line, a --help example.
    assert "commcal plan --now 2026-12-01T00:00:00Z --days 14" in lines
    assert "commcal plan --next-week" in lines
    assert "commcal channels types" in lines
    assert "commcal init my-calendar && cd my-calendar && commcal plan" in lines
    assert any(shown.where.endswith("--help") for shown in SHOWN)
    assert any(shown.skip for shown in SHOWN) and any(shown.exit for shown in SHOWN)
    assert ".venv/bin/commcal validate" in lines  # the README runs the venv's commcal
    for part in PROJECT_PARTS:
        assert (ROOT / part).exists(), part


@pytest.mark.parametrize(
    "shown", [pytest.param(s, id=f"{s.where}: {s.line}") for s in SHOWN if s.skip is None]
)
def test_a_documented_command_runs_as_shown(
    shown: Shown, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = copy_example(tmp_path / "example")
    # The state of a project that has been set up: its ledger exists, empty (commands such as
    # `status` refuse to create one, so that a mistyped `state:` is noticed).
    open_ledger("sqlite:///.commcal/state.db", project_dir=project).close()
    monkeypatch.chdir(project)
    command = re.sub(r"^(?:\$\s+)?(?:\.venv/bin/)?", "", shown.line)
    assert not SHELL.search(command), (
        f"{shown.where}: {shown.line!r} uses shell syntax the walker does not run: write it "
        "plainly or mark it <!-- not run: REASON -->"
    )
    env = walker_env()
    codes = []
    for part in command.split("&&"):
        words = shlex.split(part)
        if words[0] == "cd":
            os.chdir(words[1])
            continue
        assert words[0] == "commcal", f"{shown.where}: {part.strip()!r} is not a commcal command"
        result = CliRunner().invoke(app, words[1:], env=env)
        output = result.output
        assert "Traceback" not in output, f"{shown.where}: {shown.line}\n{output}"
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"{shown.where}: {shown.line} raised") from result.exception
        codes.append(result.exit_code)
        if result.exit_code != 0:
            break
    assert codes[-1] == shown.exit, f"{shown.where}: {shown.line} exited {codes}\n{output}"
