"""`commcal report` output: table, JSON (`commcal.report/1`), CSV, Markdown, or an HTML page whose
charts are inline SVG (no script, no stylesheet or font from elsewhere: it opens offline)."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Sequence
from datetime import timedelta
from html import escape
from typing import TYPE_CHECKING, Any

from commcal.timeutil import format_duration
from commcal.views.common import write_json
from commcal.views.status import _table

if TYPE_CHECKING:
    from commcal.engagement.report import Group, Report

COLUMNS = (
    "group",
    "deliveries",
    "measured",
    "engagement",
    "replies",
    "questions",
    "answered",
    "first answer (staffed)",
    "first answer (unstaffed)",
)


def age_label(value: timedelta) -> str:
    """24h as `24h` (how people say an age under a week), else as durations are written."""
    seconds = int(value.total_seconds())
    if 0 < seconds < 7 * 86400 and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return format_duration(value)


def _seconds(value: timedelta | None) -> int | None:
    return None if value is None else int(value.total_seconds())


def _wait(value: timedelta | None) -> str:
    return (
        "-"
        if value is None
        else format_duration(timedelta(seconds=round(value.total_seconds() / 60) * 60))
    )


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:g}"


def group_json(g: Group) -> dict[str, Any]:
    return {
        "group": g.key,
        "deliveries": g.deliveries,
        "measured": g.measured,
        "engagement_median": g.engagement,
        "replies": g.replies,
        "questions": g.questions,
        "answered": g.answered,
        "first_answer_median_s": {
            "staffed": _seconds(g.first_answer_staffed),
            "unstaffed": _seconds(g.first_answer_unstaffed),
            "undeclared": _seconds(g.first_answer_undeclared),
        },
    }


def report_json(report: Report) -> dict[str, Any]:
    return {
        "schema": "commcal.report/1",
        "by": report.by,
        "at_s": int(report.at.total_seconds()),
        "groups": [group_json(g) for g in report.groups],
        "best_slots": [
            {
                "weekday": s.weekday,
                "hour": s.hour,
                "posts": s.posts,
                "engagement_median": s.engagement,
            }
            for s in report.best_slots
        ],
        "weeks": list(report.weeks),
        "trends": [
            {"term": t.term, "kind": t.kind, "counts": list(t.counts)} for t in report.trends
        ],
    }


def _rows(report: Report) -> list[list[str]]:
    return [
        [
            g.key,
            str(g.deliveries),
            str(g.measured),
            _number(g.engagement),
            str(g.replies),
            str(g.questions),
            str(g.answered),
            _wait(g.first_answer_staffed),
            _wait(g.first_answer_unstaffed),
        ]
        for g in report.groups
    ]


# A cell a spreadsheet would run as a formula starts with one of these (OWASP, CSV Injection:
# https://owasp.org/www-community/attacks/CSV_Injection): it gets a leading ' , which Excel and
# LibreOffice read as "text" and do not show.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
    """`cell` as a CSV cell no spreadsheet runs (a calendar, item or channel name is text)."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def show_report(report: Report, fmt: str) -> None:
    if fmt == "json":
        write_json(report_json(report))
        return
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([c.replace(" ", "_").replace("(", "").replace(")", "") for c in COLUMNS])
        for g in report.groups:
            j = group_json(g)
            waits = j["first_answer_median_s"]
            writer.writerow(
                [
                    spreadsheet_safe(g.key),
                    g.deliveries,
                    g.measured,
                    "" if g.engagement is None else f"{g.engagement:g}",
                    g.replies,
                    g.questions,
                    g.answered,
                    "" if waits["staffed"] is None else waits["staffed"],
                    "" if waits["unstaffed"] is None else waits["unstaffed"],
                ]
            )
        sys.stdout.write(out.getvalue())
        return
    if fmt == "html":
        sys.stdout.write(report_html(report))
        return
    at = age_label(report.at)
    if not report.groups:
        print("Nothing pulled yet: run `commcal pull` after posts have gone out.")
        return
    columns = [c if c != "engagement" else f"engagement at {at}" for c in COLUMNS]
    columns[0] = report.by
    _table(f"Sent posts by {report.by}", columns, _rows(report), fmt)
    slots = [[s.label, str(s.posts), _number(s.engagement)] for s in report.best_slots]
    if slots:
        print()
        _table(
            f"Best slots (median engagement at {at})", ["slot", "posts", "engagement"], slots, fmt
        )
    if report.trends:
        print()
        trend_rows = [[t.kind, t.term, *map(str, t.counts)] for t in report.trends]
        _table("Replies mentioning, per week", ["kind", "term", *report.weeks], trend_rows, fmt)


# ---- HTML ------------------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>commcal report by {by}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
svg text {{ font: 11px system-ui, sans-serif; fill: #333; }}
</style></head><body>
<h1>Sent posts by {by}</h1>
<p>Engagement is likes + reposts + replies + quotes of each post's first snapshot at least
{at} after it was sent; each figure is a median.</p>
{body}
</body></html>
"""


def _html_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def bar_chart(labels: Sequence[str], values: Sequence[float | None], title: str) -> str:
    """Horizontal bars, one per label, as inline SVG."""
    width, bar, gap, left = 560, 18, 6, 180
    top = max((v for v in values if v is not None), default=0.0) or 1.0
    height = len(labels) * (bar + gap) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>{escape(title)}</title>'
    ]
    for n, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = n * (bar + gap) + 5
        length = 0.0 if value is None else (width - left - 60) * value / top
        parts.append(f'<text x="0" y="{y + bar - 5}">{escape(label[:28])}</text>')
        parts.append(
            f'<rect x="{left}" y="{y}" width="{length:.1f}" height="{bar}" fill="#3b7dd8">'
            f"<title>{escape(label)}: {_number(value)}</title></rect>"
        )
        parts.append(f'<text x="{left + length + 4:.1f}" y="{y + bar - 5}">{_number(value)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def slot_grid(report: Report) -> str:
    """Weekday x hour of the best slots as a 7 x 24 grid, darker for more engagement."""
    from commcal.engagement.report import WEEKDAYS

    cell, left, top = 18, 36, 16
    width, height = left + 24 * cell, top + 7 * cell
    best = max((s.engagement for s in report.best_slots), default=0.0) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>best slots</title>'
    ]
    for hour in range(0, 24, 3):
        parts.append(f'<text x="{left + hour * cell}" y="11">{hour:02d}</text>')
    for day, name in enumerate(WEEKDAYS):
        parts.append(f'<text x="0" y="{top + day * cell + 13}">{name}</text>')
        for hour in range(24):
            parts.append(
                f'<rect x="{left + hour * cell}" y="{top + day * cell}" width="{cell - 1}" '
                f'height="{cell - 1}" fill="#eee"/>'
            )
    for s in report.best_slots:
        shade = 0.25 + 0.75 * s.engagement / best
        parts.append(
            f'<rect x="{left + s.hour * cell}" y="{top + s.weekday * cell}" width="{cell - 1}" '
            f'height="{cell - 1}" fill="#1f6f3f" fill-opacity="{shade:.2f}">'
            f"<title>{escape(s.label)}: median {_number(s.engagement)} over {s.posts} posts"
            "</title></rect>"
        )
    parts.append("</svg>")
    return "".join(parts)


def trend_chart(report: Report) -> str:
    """One line per term over the weeks, as inline SVG."""
    if not report.trends or not report.weeks:
        return ""
    width, height, left, bottom = 560, 200, 30, 30
    top = max(max(t.counts) for t in report.trends) or 1
    step = (width - left - 120) / max(1, len(report.weeks) - 1)
    colours = ("#3b7dd8", "#d8573b", "#3bd87d", "#a23bd8", "#d8b13b")
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><title>trends</title>'
    ]
    for n, week in enumerate(report.weeks):
        parts.append(
            f'<text x="{left + n * step:.1f}" y="{height - 10}">{escape(week[-3:])}</text>'
        )
    for n, t in enumerate(report.trends[:5]):
        colour = colours[n % len(colours)]
        points = " ".join(
            f"{left + i * step:.1f},{(height - bottom) - (height - bottom - 10) * c / top:.1f}"
            for i, c in enumerate(t.counts)
        )
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}">'
            f"<title>{escape(t.term)}</title></polyline>"
        )
        label = ("#" if t.kind == "hashtag" else "") + t.term
        parts.append(
            f'<text x="{width - 110}" y="{14 + n * 14}" fill="{colour}">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def report_html(report: Report) -> str:
    at = age_label(report.at)
    columns = [report.by, *COLUMNS[1:]]
    body = [
        bar_chart(
            [g.key for g in report.groups],
            [g.engagement for g in report.groups],
            f"median engagement at {at}",
        ),
        _html_table(columns, _rows(report)),
        "<h2>Best slots</h2>",
        slot_grid(report),
        _html_table(
            ["slot", "posts", "engagement"],
            [[s.label, str(s.posts), _number(s.engagement)] for s in report.best_slots],
        ),
    ]
    if report.trends:
        body += [
            "<h2>Trends in replies</h2>",
            trend_chart(report),
            _html_table(
                ["kind", "term", *report.weeks],
                [[t.kind, t.term, *map(str, t.counts)] for t in report.trends],
            ),
        ]
    return _PAGE.format(by=escape(report.by), at=escape(at), body="\n".join(body))
