"""Problems (errors as values, with positions) and the few exceptions that stop a command.

Validation collects `Problem`s; a command that cannot go on raises a `CommcalError`. The CLI maps
`ProblemsFound` to exit code 1 and every other `CommcalError` to exit code 2.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple


class Pos(NamedTuple):
    """Where something was written: file, 1-based line and column (0 when unknown).

    A named tuple (ordered by file, line, column; immutable): loading a calendar makes one for
    every YAML node, and a tuple is built several times faster than a frozen dataclass."""

    path: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line and self.column:
            return f"{self.path}:{self.line}:{self.column}"
        if self.line:
            return f"{self.path}:{self.line}"
        return self.path


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the user's input, and what would be right."""

    pos: Pos
    message: str
    hint: str = ""
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        text = f"{self.pos}: {self.severity}: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return text

    @property
    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.pos.path, self.pos.line, self.pos.column, self.message)


def sorted_problems(problems: Iterable[Problem]) -> list[Problem]:
    """Problems sorted by file, line and column, without exact repeats."""
    unique = {(p.pos, p.message, p.hint, p.severity): p for p in problems}
    return sorted(unique.values(), key=lambda p: p.sort_key)


class CommcalError(Exception):
    """Something that stops a command. Exit code 2: usage or configuration error."""

    exit_code = 2


class ConfigError(CommcalError):
    """commcal.yaml, the environment or the command line is wrong."""


class ProblemsFound(CommcalError):
    """The calendars have problems; each has a position. Exit code 1."""

    exit_code = 1

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted_problems(problems)
        count = len(self.problems)
        super().__init__(f"{count} problem{'s' if count != 1 else ''} found")


class LedgerError(CommcalError):
    """The state store cannot be opened or is inconsistent."""
