"""A stray quote or a row of the wrong shape never shrinks an audience silently (issue 15, 12).

`a@example.org,"Ann` on line 2 of 5,000 rows made Python's csv reader take the rest of the file
as Ann's name: 4,444 members vanished and `validate` said "no problems". Now such a file is an
error naming file:line, `validate` and `publish` exit 1, and nothing goes to that audience until
the file is fixed. Through the CLI, with a real SMTP server on loopback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from commcal.audience import check_audience
from tests.conftest import MakeProject
from tests.test_addresses import CALENDAR, TEMPLATES
from tests.test_community import Mailbox, config, free_port, run

NOW = "2026-12-01T08:01:00Z"


def rows(count: int) -> list[str]:
    return [f"member{n}@example.org,Member {n}" for n in range(count)]


def project(make_project: MakeProject, port: int, lines: list[str]) -> Path:
    root = make_project(config=config(port), calendars={"main.yaml": CALENDAR}, templates=TEMPLATES)
    (root / "audiences").mkdir()
    write(root, lines)
    return root


def write(root: Path, lines: list[str]) -> None:
    text = "email,name\n" + "".join(line + "\n" for line in lines)
    (root / "audiences" / "members.csv").write_text(text, encoding="utf-8")


def test_a_stray_quote_on_line_2_of_5000_rows_stops_validate_and_publish(
    make_project: MakeProject, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    lines = rows(5_000)
    lines[0] = 'a@example.org,"Ann'  # line 2 of the file
    root = project(make_project, port, lines)

    validated = run(root, "validate", "--now", "2026-11-30T00:00:00Z")
    assert validated.exit_code == 1, validated.output
    assert "audiences/members.csv:2: error:" in validated.output
    assert "no problems" not in validated.output

    published = run(root, "publish", "--now", NOW)
    assert published.exit_code == 1, published.output
    assert "audiences/members.csv:2: error:" in published.output
    assert box.received == []  # not one member mailed from a file that lost 4,999 of them


def test_after_the_fix_every_member_gets_the_letter(
    make_project: MakeProject, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    lines = rows(30)
    lines[0] = 'a@example.org,"Ann'
    root = project(make_project, port, lines)
    assert run(root, "publish", "--now", NOW).exit_code == 1
    assert box.received == []
    lines[0] = "a@example.org,Ann"
    write(root, lines)
    fixed = run(root, "publish", "--now", NOW)
    assert fixed.exit_code == 0, fixed.output
    assert len(box.by_recipient()) == 30


@pytest.mark.parametrize(
    ("broken", "line", "message"),
    [
        # Never closed: the rest of the file is one value.
        ('b@example.org,"Bea', 3, 'a quote (") opened in this row is never closed; lines 4-11'),
        # Closed much later by another quote: the lines between look like member rows.
        (
            'b@example.org,"Bea\nc@example.org,Cy\nd@example.org,"Di"',
            3,
            "a quoted value in this row runs over 2 lines that look like member rows (lines 4-5)",
        ),
        ("b@example.org,Bea,extra", 3, "the row has 3 cells but the header has 2 columns"),
        ("b@example.org", 3, "the row has 1 cell but the header has 2 columns"),
    ],
)
def test_each_broken_shape_is_an_error_at_the_line_where_its_row_starts(
    make_project: MakeProject, broken: str, line: int, message: str
) -> None:
    lines = rows(10)
    lines[1] = broken
    root = project(make_project, free_port(), lines)
    errors = [p for p in check_audience(root, "members") if p.severity == "error"]
    assert errors, "the file was read as if nothing were wrong"
    assert (errors[0].pos.path, errors[0].pos.line) == ("audiences/members.csv", line)
    assert errors[0].message.startswith(message), errors[0].message
    assert errors[0].message.endswith("nothing is sent to this audience until the file is fixed")


def test_a_long_unclosed_quote_past_csvs_field_limit_is_an_error_too(
    make_project: MakeProject,
) -> None:
    lines = rows(8_000)  # about 230 KB after the quote: more than csv's 128 KB field limit
    lines[0] = 'a@example.org,"Ann'
    root = project(make_project, free_port(), lines)
    errors = [p for p in check_audience(root, "members") if p.severity == "error"]
    assert errors and errors[0].pos.line == 2, errors


def test_legitimate_shapes_stay_quiet(make_project: MakeProject) -> None:
    root = project(
        make_project,
        free_port(),
        [
            'a@example.org,"Ann ""the quill"" Lee"',
            'b@example.org,"Bea\nSecond line of a name, oddly"',
            "c@example.org,Cy,,",  # spreadsheets pad rows with empty cells
            'd@example.org,Di"s',  # a quote inside an unquoted value is text
        ],
    )
    assert check_audience(root, "members") == []
