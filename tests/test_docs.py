"""Every command has help with an example and is documented; every JSON schema is documented."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer.main

from commcal.cli import app

DOCS = Path(__file__).resolve().parent.parent / "docs"
VIEWS = Path(__file__).resolve().parent.parent / "commcal" / "views"


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
