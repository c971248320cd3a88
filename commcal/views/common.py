"""Shared pieces of the views."""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Iterable
from typing import IO, Any

from commcal.errors import CommcalError, Pos, Problem, ProblemsFound

# The formats that write machine-readable output on standard output (docs/json.md).
MACHINE = ("json", "jsonl")


def problem_json(problem: Problem) -> dict[str, Any]:
    return {
        "file": problem.pos.path,
        "line": problem.pos.line,
        "column": problem.pos.column,
        "severity": problem.severity,
        "message": problem.message,
        "hint": problem.hint,
    }


def write_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def _indented(value: Any, depth: int) -> str:
    """`value` as json.dumps(indent=2) writes it `depth` levels deep in a document."""
    text = json.dumps(value, ensure_ascii=False, indent=2, default=str)
    return text.replace("\n", "\n" + "  " * depth) if depth else text


def problems_from(exc: BaseException) -> list[Problem]:
    """The problems written for an error that cut a stream short: those a ProblemsFound carries
    (with file:line), a CommcalError's own words (already safe to show), or only the type of
    anything else (a bug's text may hold anything; the traceback goes to standard error)."""
    if isinstance(exc, ProblemsFound):
        return list(exc.problems)
    if isinstance(exc, CommcalError):
        return [Problem(Pos(""), str(exc))]
    if isinstance(exc, KeyboardInterrupt):
        return [Problem(Pos(""), "interrupted (Ctrl-C); the output above is incomplete")]
    return [
        Problem(
            Pos(""),
            f"stopped by an unexpected {type(exc).__name__}; the output above is incomplete",
            "see standard error for the traceback, and please report it",
        )
    ]


class JsonDocument:
    """One JSON object written to standard output as it is produced, field by field.

    Arrays are written an element at a time (`array`), so output of any length costs one
    element's memory. The text is what `write_json` would write for the whole object. Used as
    a context manager the document is always closed: if the work inside raises, the open array
    is ended, the error is added to the `problems` field and the object is closed before the
    error goes on, so standard output stays exactly one JSON document (docs/json.md)."""

    def __init__(
        self, head: dict[str, Any], *, always_problems: bool = True, out: IO[str] | None = None
    ) -> None:
        """`head`: the fields written first. `always_problems`: the object always has a
        `problems` field; otherwise only when problems were added (a schema where the field
        means "this stopped the command")."""
        self._out = out if out is not None else sys.stdout
        self._always_problems = always_problems
        self._lock = threading.RLock()
        self._fields = 0
        self._in_array = -1  # elements written in the open array, -1 when none is open
        self.appended = 0  # elements written in all arrays: what a summary may count
        self._problems: list[Problem] = []
        self._closed = False
        self._out.write("{")
        for name, value in head.items():
            self.field(name, value)

    def _key(self, name: str) -> None:
        self._out.write(
            ("," if self._fields else "") + f"\n  {json.dumps(name, ensure_ascii=False)}: "
        )
        self._fields += 1

    def field(self, name: str, value: Any) -> None:
        with self._lock:
            if self._closed:
                return
            self._end_array()
            self._key(name)
            self._out.write(_indented(value, 1))

    def array(self, name: str) -> None:
        """Start the array `name`; `append` adds its elements."""
        with self._lock:
            self._end_array()
            self._key(name)
            self._out.write("[")
            self._in_array = 0

    def append(self, element: Any) -> None:
        """Add `element` to the open array (nothing once the document is closed: a sending
        thread that finishes after an interrupted run must not write past its end)."""
        with self._lock:
            if self._closed:
                return
            assert self._in_array >= 0, "append outside an array"
            text = ("," if self._in_array else "") + "\n    " + _indented(element, 2)
            self._in_array += 1  # first: see JsonLines.line
            self.appended += 1
            self._out.write(text)
            self._out.flush()

    def _end_array(self) -> None:
        if self._in_array > 0:
            self._out.write("\n  ]")
        elif self._in_array == 0:
            self._out.write("]")
        self._in_array = -1

    def add_problems(self, problems: Iterable[Problem]) -> None:
        """Problems for the `problems` field that `close` writes last."""
        self._problems.extend(problems)

    def close(self) -> None:
        """End the object, with the `problems` field last."""
        with self._lock:
            if self._closed:
                return
            if self._always_problems or self._problems:
                self.field("problems", [problem_json(p) for p in self._problems])
            self._end_array()
            self._out.write("\n}\n" if self._fields else "}\n")
            self._out.flush()
            self._closed = True

    def __enter__(self) -> JsonDocument:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and not isinstance(exc, SystemExit):
            self._problems.extend(problems_from(exc))
        self.close()


class JsonLines:
    """`--format jsonl`: one JSON object per line, each with a `type`, written and flushed as
    it is produced; the last line is the `summary` (docs/json.md). As a context manager, an
    error inside still ends the output with a `problem` line for it and a summary line."""

    def __init__(self, schema: str, out: IO[str] | None = None) -> None:
        self.schema = schema
        self._out = out if out is not None else sys.stdout
        self._lock = threading.Lock()
        self.written: dict[str, int] = {}
        self._summary: dict[str, Any] | None = None

    def line(self, kind: str, data: dict[str, Any]) -> None:
        """A line of type `kind` (`delivery`, `problem`, ...) with the fields of `data`."""
        assert "type" not in data, "a line's `type` says what it is"
        text = json.dumps({"type": kind, **data}, ensure_ascii=False, default=str)
        with self._lock:
            if self._summary is not None:
                return  # the summary is the last line, also for a thread that finishes late
            # Counted first: Ctrl-C is raised when a blocking write returns, and what it wrote
            # stays buffered and is written before the summary.
            self.written[kind] = self.written.get(kind, 0) + 1
            self._write(text)

    def _write(self, text: str) -> None:
        self._out.write(text + "\n")
        self._out.flush()

    def problems(self, problems: Iterable[Problem]) -> None:
        for problem in problems:
            self.line("problem", problem_json(problem))

    def summary(self, **data: Any) -> None:
        """The last line. Its `schema` names the command; `lines` counts the lines above it."""
        line = {"type": "summary", "schema": self.schema, **data}
        with self._lock:
            if self._summary is not None:
                return
            self._summary = line
            self._write(json.dumps({**line, "lines": self.written}, ensure_ascii=False))

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None and not isinstance(exc, SystemExit) and self._summary is None:
            self.problems(problems_from(exc))
            self.summary(ok=False)


def console(stderr: bool = False) -> Any:
    import os

    from rich.console import Console

    out = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not out.is_terminal and not os.environ.get("COLUMNS"):
        # CI logs and pipes: wide enough for every column, unless COLUMNS says how wide.
        out = Console(stderr=stderr, highlight=False, soft_wrap=False, width=140)
    return out


def md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# What makes Markdown (CommonMark, https://spec.commonmark.org/0.31.2/#backslash-escapes) out of
# text: raw HTML and autolinks (<...>), links and images ([...](...)), code spans, table cells
# (GFM |); each is backslash-escaped, which any renderer shows as the character itself.
_MD_INLINE = re.compile(r"([\\`<>\[\]|])")
# What starts a block at the start of a line: a heading, quote, list item, rule or setext line.
_MD_BLOCK_START = re.compile(r"^([#>+\-*=_~])|^(\d+)([.)])")


# Control characters (C0 but tab and line breaks, DEL, C1): on a terminal, ESC starts a
# sequence that can hide a link (OSC 8), clear the screen or retitle the window.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` without control characters, for a terminal."""
    return _CONTROL.sub("", text)


def md_inline(text: str) -> str:
    """`text` (a member's reply, a network's answer) as Markdown that reads as that very text
    inside a line or a table cell: no HTML, link, image, code or cell of its own, no control
    character. Line breaks become spaces."""
    return _MD_INLINE.sub(r"\\\1", " ".join(printable(text).split()))


def md_paragraph(text: str) -> str:
    """`md_inline(text)` that may also start a line: it starts no heading, quote, list or rule."""
    inline = md_inline(text)
    return _MD_BLOCK_START.sub(lambda m: f"\\{m[1]}" if m[1] else f"{m[2]}\\{m[3]}", inline)
