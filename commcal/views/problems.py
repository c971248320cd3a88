"""`commcal validate` output."""

from __future__ import annotations

import sys

from commcal.errors import Problem
from commcal.views.common import JsonLines, md_escape, problem_json, write_json


def show(problems: list[Problem], fmt: str, *, checked: int, calendars: int) -> None:
    errors = sum(1 for p in problems if p.severity == "error")
    warnings = len(problems) - errors
    if fmt == "jsonl":
        with JsonLines("commcal.validate/1") as out:
            out.problems(problems)
            out.summary(
                ok=errors == 0,
                calendars=calendars,
                deliveries_checked=checked,
                errors=errors,
                warnings=warnings,
            )
        return
    if fmt == "json":
        write_json(
            {
                "schema": "commcal.validate/1",
                "ok": errors == 0,
                "calendars": calendars,
                "deliveries_checked": checked,
                "problems": [problem_json(p) for p in problems],
            }
        )
        return
    if fmt == "markdown":
        lines = [
            f"**commcal validate**: {calendars} calendars, {checked} deliveries checked, "
            f"{errors} errors, {warnings} warnings",
            "",
        ]
        if problems:
            lines += ["| where | severity | problem | fix |", "|---|---|---|---|"]
            lines += [
                f"| `{p.pos}` | {p.severity} | {md_escape(p.message)} | {md_escape(p.hint)} |"
                for p in problems
            ]
        sys.stdout.write("\n".join(lines) + "\n")
        return
    for problem in problems:
        sys.stderr.write(f"{problem}\n")
    summary = (
        f"{calendars} calendar{'s' if calendars != 1 else ''}, {checked} "
        f"deliver{'ies' if checked != 1 else 'y'} checked: "
    )
    if errors or warnings:
        summary += (
            f"{errors} error{'s' if errors != 1 else ''}, {warnings} "
            f"warning{'s' if warnings != 1 else ''}"
        )
    else:
        summary += "no problems"
    sys.stdout.write(summary + "\n")
