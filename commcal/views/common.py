"""Shared pieces of the views."""

from __future__ import annotations

import json
import sys
from typing import Any

from commcal.errors import Problem


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
