"""Schema-directed reading of YAML nodes: each reader says what it expected and how to fix it."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from commcal.calendar.yamlnodes import (
    TAG_BOOL,
    TAG_FLOAT,
    TAG_INT,
    TAG_NULL,
    TAG_TIMESTAMP,
    Node,
)
from commcal.errors import Pos, Problem
from commcal.timeutil import FIRST_YEAR, LAST_YEAR, parse_date, parse_datetime, parse_duration

_DECIMAL = re.compile(r"^[-+]?\d+(\.\d+)?$")


MAX_DURATION = timedelta(days=3653)  # ten years: longer is a typo, and would overflow dates


def bounded_duration(text: str) -> timedelta | None:
    """parse_duration, with absurd numbers (which overflow timedelta) read as longer than ever."""
    try:
        return parse_duration(text)
    except OverflowError:
        return MAX_DURATION * 2


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    options = list(choices)
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "expected one of: " + ", ".join(sorted(options)) if options else ""


class Reader:
    """Reads typed values out of nodes, collecting a Problem for everything it cannot accept."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, pos: Pos, message: str, hint: str = "", severity: str = "error") -> None:
        self.problems.append(Problem(pos, message, hint, severity))

    # -- structure -----------------------------------------------------------------------------

    def mapping(
        self, node: Node, what: str, known: Iterable[str] | None = None, hint: str = ""
    ) -> bool:
        if node.kind != "map":
            self.problem(
                node.pos,
                f"{what} must be a mapping (key: value lines), not {node.describe()}",
                hint,
            )
            return False
        if known is not None:
            known = list(known)
            for key, _ in node.entries:
                if key.text not in known:
                    self.problem(
                        key.pos,
                        f"unknown key {key.text!r} in {what}",
                        did_you_mean(key.text, known),
                    )
        return True

    def sequence(self, node: Node, what: str, *, allow_single: bool = False) -> list[Node]:
        if node.kind == "seq":
            return list(node.items)
        if allow_single and node.kind == "scalar" and not node.is_null:
            return [node]
        self.problem(
            node.pos,
            f"{what} must be a list, not {node.describe()}",
            f"write {what}: [a, b] or one '- value' per line",
        )
        return []

    # -- scalars -------------------------------------------------------------------------------

    def text(self, node: Node, what: str, *, allow_empty: bool = False) -> str | None:
        """Text, refusing what YAML 1.1 would read as something else unless it is quoted."""
        if node.kind != "scalar" or node.is_null:
            if node.is_null and allow_empty:
                return ""
            self.problem(node.pos, f"{what} must be text, not {node.describe()}")
            return None
        if node.plain:
            surprise = self._surprise(node)
            if surprise:
                self.problem(
                    node.pos,
                    f"{what}: unquoted {node.text!r} {surprise}",
                    f'quote it: "{node.text}"',
                )
                return None
        if not allow_empty and not node.text.strip():
            self.problem(node.pos, f"{what} is empty")
            return None
        return node.text

    def _surprise(self, node: Node) -> str:
        if node.tag == TAG_BOOL:
            return "is read as a yes/no value by YAML 1.1, not as text"
        if node.tag == TAG_TIMESTAMP:
            return "is read as a date by YAML 1.1, not as text"
        if node.tag in (TAG_INT, TAG_FLOAT) and not _DECIMAL.match(node.text):
            if ":" in node.text:
                return "is read by YAML 1.1 as a base-60 number, not as text or a time"
            return "is read as a number by YAML 1.1, not as text"
        return ""

    def identifier(self, node: Node, what: str) -> str | None:
        value = self.text(node, what)
        if value is None:
            return None
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            self.problem(
                node.pos,
                f"{what} {value!r} may use only letters, digits, '.', '_' and "
                "'-', starting with a letter or digit",
                "ids appear in URLs, file names and the ledger",
            )
            return None
        return value

    def choice(self, node: Node, what: str, choices: Iterable[str]) -> str | None:
        value = self.text(node, what)
        options = list(choices)
        if value is None:
            return None
        if value not in options:
            self.problem(node.pos, f"unknown {what} {value!r}", did_you_mean(value, options))
            return None
        return value

    def boolean(self, node: Node, what: str) -> bool | None:
        if node.kind == "scalar" and node.tag == TAG_BOOL and node.plain:
            lowered = node.text.lower()
            if lowered in ("true", "false"):
                return lowered == "true"
            self.problem(
                node.pos,
                f"{what}: write true or false, not {node.text!r}",
                "YAML 1.1 words like yes/no/on/off are ambiguous across tools",
            )
            return None
        self.problem(node.pos, f"{what} must be true or false, not {node.describe()}")
        return None

    def integer(
        self, node: Node, what: str, low: int | None = None, high: int | None = None
    ) -> int | None:
        if (
            node.kind != "scalar"
            or not re.fullmatch(r"[-+]?\d+", node.text.strip())
            or (not node.plain)
        ):
            self.problem(node.pos, f"{what} must be a whole number, not {node.describe()}")
            return None
        value = int(node.text)
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f"{low if low is not None else '-inf'}..{high if high is not None else 'inf'}"
            self.problem(node.pos, f"{what} must be within {bounds}, not {value}")
            return None
        return value

    def duration(self, node: Node, what: str, *, allow_negative: bool = True) -> timedelta | None:
        if node.kind == "scalar" and not node.is_null:
            value = bounded_duration(node.text)
            if value is not None and abs(value) > MAX_DURATION:
                self.problem(
                    node.pos,
                    f"{what}: {node.text!r} is longer than {MAX_DURATION.days // 365} years",
                    "check it for a typo",
                )
                return None
            if value is not None:
                if value < timedelta(0) and not allow_negative:
                    self.problem(node.pos, f"{what} must not be negative")
                    return None
                return value
            if node.plain and node.tag in (TAG_INT, TAG_FLOAT):
                self.problem(
                    node.pos,
                    f"{what}: a bare number {node.text!r} has no unit",
                    f"write {node.text}m, {node.text}h or {node.text}d",
                )
                return None
        self.problem(
            node.pos, f"{what} must be a duration like 90m, 1h30m, 2d or -1h, not {node.describe()}"
        )
        return None

    def date(self, node: Node, what: str) -> date | None:
        if node.kind == "scalar":
            value = parse_date(node.text)
            if value is not None:
                return value
        self.problem(node.pos, f"{what} must be a date like 2026-12-01, not {node.describe()}")
        return None

    def datetime(self, node: Node, what: str) -> datetime | None:
        if node.kind == "scalar" and not node.is_null:
            value = parse_datetime(node.text)
            if value is not None and not FIRST_YEAR <= value.year <= LAST_YEAR:
                self.problem(
                    node.pos,
                    f"{what}: year {value.year} is outside {FIRST_YEAR}-{LAST_YEAR}",
                    "check the year for a typo",
                )
                return None
            if value is not None:
                return value
            if parse_date(node.text.split(" ")[0].split("T")[0]) is None and re.match(
                r"^\d{4}-\d{1,2}-\d{1,2}", node.text
            ):
                self.problem(node.pos, f"{what}: {node.text!r} is not a real date")
                return None
        self.problem(
            node.pos,
            f"{what} must be a date and time like 2026-12-10 18:00 (in the "
            f"calendar's zone) or 2026-12-10T16:00Z, not {node.describe()}",
        )
        return None

    # -- free-form values (vars) -------------------------------------------------------------

    def value(self, node: Node, what: str) -> Any:
        """A template variable: text, numbers, true/false, lists and mappings of those."""
        if node.kind == "map":
            return {k.text: self.value(v, f"{what}.{k.text}") for k, v in node.entries}
        if node.kind == "seq":
            return [self.value(v, f"{what}[{i}]") for i, v in enumerate(node.items)]
        if not node.plain:
            return node.text
        if node.tag == TAG_NULL:
            return None
        if node.tag == TAG_BOOL:
            if node.text.lower() in ("true", "false"):
                return node.text.lower() == "true"
            self.problem(
                node.pos,
                f"{what}: unquoted {node.text!r} is read as a yes/no value by YAML 1.1",
                f'write true/false, or quote it as text: "{node.text}"',
            )
            return None
        if node.tag in (TAG_INT, TAG_FLOAT):
            if not _DECIMAL.match(node.text):
                self.problem(
                    node.pos,
                    f"{what}: unquoted {node.text!r} {self._surprise(node)}",
                    f'quote it: "{node.text}"',
                )
                return None
            return float(node.text) if "." in node.text else int(node.text)
        return node.text
