"""Help people read (commcal/helptext.py): `-h` on every command, no Python type names, ranges
in words, and shell completion through typer's own machinery."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from commcal.cli import app
from commcal.helptext import number_range

runner = CliRunner()


def walk(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [path]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += walk(sub, (*path, name))
    return found


PATHS = walk(typer.main.get_command(app))
CASES = [pytest.param(path, id=" ".join(path) or "commcal") for path in PATHS]

# What typer prints where a value has no metavar: `<int>`, `<list[str]>`, `<table|json>`,
# `[1<=x<=3660]`, or click's `INTEGER` / `TEXT`.
TYPE_NAMES = re.compile(r"<[^>\n]*>|\blist\[|\bx[<>]=|\b(?:INTEGER|TEXT|FLOAT|BOOLEAN)\b")


def help_of(path: tuple[str, ...], flag: str = "--help") -> str:
    result = runner.invoke(app, [*path, flag], prog_name="commcal", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


def test_the_walk_sees_every_command() -> None:
    names = {" ".join(path) for path in PATHS}
    assert {"", "plan", "status", "retry", "channels test", "contest draw"} <= names


@pytest.mark.parametrize("path", CASES)
def test_every_command_takes_h_as_well_as_help(path: tuple[str, ...]) -> None:
    short = help_of(path, "-h")
    assert short.startswith("Usage: ")
    assert short == help_of(path)
    assert "-h, --help" in short


@pytest.mark.parametrize("path", CASES)
def test_help_names_no_python_types(path: tuple[str, ...]) -> None:
    text = help_of(path)
    assert TYPE_NAMES.findall(text) == [], text


@pytest.mark.parametrize("path", CASES)
def test_every_option_that_takes_a_value_shows_a_word_for_it(path: tuple[str, ...]) -> None:
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    options = [p for p in command.params if p.param_type_name == "option"]
    for option in options:
        if option.is_flag or option.count or option.hidden:
            continue
        assert option.metavar, f"{' '.join(path)} {option.opts[0]} has no metavar"
        assert TYPE_NAMES.findall(option.metavar) == []


def test_plan_help_at_80_columns_reads_as_words() -> None:
    text = help_of(("plan",))
    assert "--days N " in text
    assert "[1 to 3660]" in text
    assert "-f, --format FORMAT  Output: table, json, jsonl, markdown;" in text
    assert "--state URL" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_status_help_shows_its_argument_by_name() -> None:
    text = help_of(("status",))
    assert "Usage: commcal status [OPTIONS] [ID]" in text
    assert re.search(r"^  ID  ", text, re.M), text
    assert "--limit N " in text


@pytest.mark.parametrize(
    ("low", "high", "words"),
    [(1, 3660, "1 to 3660"), (1, None, "at least 1"), (None, 10, "at most 10"), (None, None, None)],
)
def test_ranges_are_written_in_words(low: int | None, high: int | None, words: str | None) -> None:
    assert number_range(low, high) == words


def test_shell_completion_is_installed_and_completes_commands_and_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    top = help_of(())
    assert "--install-completion" in top
    assert "--show-completion" in top
    # `--show-completion` asks shellingham which shell runs it, from the process's ancestors:
    # in a long pytest run that walk may find none ("Shell  not supported."); say it is bash.
    import shellingham

    monkeypatch.setattr(shellingham, "detect_shell", lambda: ("bash", "/bin/bash"))
    script = runner.invoke(app, ["--show-completion"], prog_name="commcal")
    assert script.exit_code == 0
    assert "complete -o default -F _commcal_completion commcal" in script.output

    def complete(words: str, cword: int) -> list[str]:
        env = {"_COMMCAL_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
        result = runner.invoke(app, [], prog_name="commcal", env=env)
        assert result.exit_code == 0, result.output
        return result.output.split()

    assert complete("commcal pl", 1) == ["plan"]
    assert "--with-status" in complete("commcal plan --with", 2)
    assert complete("commcal plan --format ", 3) == ["table", "json", "jsonl", "markdown"]
    assert complete("commcal status --only-state ", 3) == [
        "pending",
        "claimed",
        "sending",
        "sent",
        "failed",
        "expired",
        "unknown",
        "skipped",
    ]
    assert complete("commcal status --only-state f", 3) == ["failed"]
