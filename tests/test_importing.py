"""`commcal import csv` (issue 12, point 6): a spreadsheet export becomes a calendar that
validates; every bad row is reported with its row number (the header is row 1) and nothing is
written; a BOM, `;` delimiters, stray quotes, Greek and Swahili text and stdin are handled."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from commcal.calendar.parse import parse_calendar
from commcal.calendar.yamlnodes import parse
from commcal.cli import app
from commcal.importing import import_csv
from commcal.project import Project, load_project
from tests.conftest import MakeProject

CONFIG = """\
timezone: Africa/Nairobi
locale: sw
channels:
  chat: {type: console}
  news: {type: console}
  sky:
    type: bluesky
    handle: community.example.org
    app_password: ${BLUESKY_APP_PASSWORD}
"""
NOW = "2026-12-01T00:00:00Z"


def run(root: Path, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["-C", str(root), *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def root(make_project: MakeProject) -> Path:
    return make_project(config=CONFIG)


def test_500_rows_import_into_a_calendar_that_validates_and_plans_500(root: Path) -> None:
    first = date(2026, 12, 2)
    rows = ["date,time,channels,text"]
    for n in range(500):
        day = first + timedelta(days=n // 10)
        channel = "chat" if n % 2 else "news"
        rows.append(f"{day},{8 + n % 10:02d}:15,{channel},Post number {n}")
    (root / "posts.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    code, out, err = run(root, "import", "csv", str(root / "posts.csv"))
    assert (code, err) == (0, ""), err
    assert "500 items in calendar 'posts'" in out
    assert (root / "templates" / "posts" / "text.j2").read_text() == "{{ text }}"
    code, out, err = run(root, "validate", "--now", NOW, "--days", "60")
    assert code == 0, out + err
    assert "500 deliveries checked: no problems" in out
    code, out, _ = run(root, "plan", "--now", NOW, "--days", "60", "-f", "json")
    plan = json.loads(out)
    deliveries = plan["deliveries"]
    assert len(deliveries) == 500
    # Times are the project's zone: 08:15 in Nairobi is 05:15 UTC.
    assert deliveries[0]["due_utc"].startswith("2026-12-02T05:15:00")
    assert {d["text"] for d in deliveries} == {f"Post number {n}" for n in range(500)}


def test_every_bad_row_is_reported_with_its_number_and_nothing_is_written(root: Path) -> None:
    csv = (
        "date,time,channels,text\n"
        "2026-12-07,09:00,chat,fine\n"
        "2026-13-07,09:00,chat,bad date\n"
        "2026-12-07,9.00,chat,bad time\n"
        "2026-12-07,10:00,chta,unknown channel\n"
        "2026-12-07,11:00,chat,\n"
    )
    (root / "bad.csv").write_text(csv, encoding="utf-8")
    code, out, err = run(root, "import", "csv", str(root / "bad.csv"))
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"{root / 'bad.csv'}:3: error: row 3: date '2026-13-07' is not a date like 2026-12-07 "
        "(format the column as YYYY-MM-DD before exporting: 07/12/2026 is ambiguous)",
        f"{root / 'bad.csv'}:4: error: row 4: time '9.00' is not a time like 09:00 (24-hour)",
        f"{root / 'bad.csv'}:5: error: row 5: unknown channel 'chta' (not in commcal.yaml) "
        "(did you mean 'chat'?)",
        f"{root / 'bad.csv'}:6: error: row 6: no text and no template",
        "commcal: 4 problems found; nothing was written",
    ]
    assert not (root / "calendars").exists()
    assert not (root / "templates" / "posts" / "text.j2").exists()


def test_a_stray_quote_is_a_row_numbered_error(root: Path) -> None:
    """A quote that opens a field must close it (an inner one doubled); a quote inside an
    unquoted field is text, as in every spreadsheet."""
    csv = (
        b"date,time,channels,text\n"
        b'2026-12-07,09:00,chat,say "hi" now\n'
        b'2026-12-08,09:00,chat,"soak "overnight" first"\n'
    )
    code, _, err = run(root, "import", "csv", "-", "--calendar", "x", stdin=csv)
    assert code == 1
    assert err.startswith("<stdin>:3: error: row 3: not readable as CSV")
    assert "nothing was written" in err
    assert not (root / "calendars").exists()
    code, _, err = run(root, "import", "csv", "-", stdin=csv.rsplit(b"2026-12-08", 1)[0])
    assert code == 0, err
    assert 'text: say "hi" now' in (root / "calendars" / "imported.yaml").read_text()


def test_header_typos_get_did_you_mean(root: Path) -> None:
    code, _, err = run(
        root, "import", "csv", "-", stdin=b"date,time,chanels,txt\n2026-12-07,09:00,chat,x\n"
    )
    assert code == 1
    assert "<stdin>:1: error: row 1: unknown column 'chanels' (field 3) (did you mean " in err
    assert "row 1: unknown column 'txt' (field 4) (did you mean 'text'?" in err


def test_bom_semicolons_greek_swahili_vars_and_stdin(root: Path) -> None:
    (root / "templates" / "posts" / "karibu.j2").write_text("{{ jina }}: {{ ujumbe }}\n")
    csv = (
        "\ufeffdate;time;channels;text;template;vars;vars.ujumbe\n"
        '2026-12-07;09:00;chat, sky;"Καλημέρα; σήμερα φακές";;;\n'
        '2026-12-08;18:30:00;chat;;posts/karibu;jina=Juma;"Karibu jikoni, leo wali wa nazi"\n'
    ).encode()
    code, out, err = run(root, "import", "csv", "-", "--calendar", "jikoni", stdin=csv)
    assert (code, err) == (0, ""), err
    written = (root / "calendars" / "jikoni.yaml").read_text(encoding="utf-8")
    assert written.startswith("# Imported by `commcal import csv` from standard input (2 rows)")
    assert "Καλημέρα; σήμερα φακές" in written and "timezone: Africa/Nairobi" in written
    code, out, _ = run(root, "plan", "--now", NOW, "--days", "14", "-f", "json")
    texts = sorted((d["channel"], d["text"].strip()) for d in json.loads(out)["deliveries"])
    assert texts == [
        ("chat", "Juma: Karibu jikoni, leo wali wa nazi"),
        ("chat", "Καλημέρα; σήμερα φακές"),
        ("sky", "Καλημέρα; σήμερα φακές"),
    ]


def test_text_too_long_for_a_channel_is_a_row_error(root: Path) -> None:
    csv = f"date,time,channels,text\n2026-12-07,09:00,sky,{'α' * 301}\n".encode()
    code, _, err = run(root, "import", "csv", "-", stdin=csv)
    assert code == 1
    assert "<stdin>:2: error: row 2: on sky: text is 301 graphemes, over bluesky's limit" in err


def test_an_existing_file_is_kept_unless_force(root: Path) -> None:
    csv = b"date,time,channels,text\n2026-12-07,09:00,chat,one\n"
    assert run(root, "import", "csv", "-", "--calendar", "c", stdin=csv)[0] == 0
    code, _, err = run(root, "import", "csv", "-", "--calendar", "c", stdin=csv)
    assert code == 2 and "exists: pass --force" in err
    assert run(root, "import", "csv", "-", "--calendar", "c", "--force", stdin=csv)[0] == 0


def test_duplicate_ids_and_generated_ones(root: Path) -> None:
    csv = (
        b"id,date,time,channels,text\n"
        b",2026-12-07,09:00,chat,a\n"
        b",2026-12-07,09:00,news,b\n"
        b"tip,2026-12-08,09:00,chat,c\n"
        b"tip,2026-12-09,09:00,chat,d\n"
    )
    code, _, err = run(root, "import", "csv", "-", stdin=csv)
    assert code == 1
    assert "<stdin>:5: error: row 5: id 'tip' is already row 4" in err
    code, _, err = run(root, "import", "csv", "-", stdin=csv.rsplit(b"tip", 1)[0] + b"\n")
    written = (root / "calendars" / "imported.yaml").read_text()
    assert "id: post-20261207-0900\n" in written and "id: post-20261207-0900-2\n" in written


@pytest.fixture(scope="module")
def plain_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("import-properties")
    (root / "commcal.yaml").write_text(CONFIG, encoding="utf-8")
    (root / "templates" / "posts").mkdir(parents=True)
    (root / "templates" / "posts" / "text.j2").write_text("{{ text }}", encoding="utf-8")
    return load_project(root, env={})


@settings(max_examples=150, deadline=None)
@given(
    texts=st.lists(
        st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40).filter(
            lambda t: t.strip() and "\r" not in t and "\x00" not in t  # a NUL: a row error
        ),
        min_size=1,
        max_size=5,
    ),
    delimiter=st.sampled_from([",", ";", "\t"]),
)
def test_any_text_comes_back_exactly_from_the_calendar_written(
    plain_project: Project, texts: list[str], delimiter: str
) -> None:
    """Whatever a cell holds (quotes, delimiters, line breaks, `- `, `yes`, `1:30`, `#`,
    Greek, emoji), the calendar written reads back the same text, with no problem."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(["date", "time", "channels", "text"])
    for n, text in enumerate(texts):
        writer.writerow([f"2026-12-{n + 1:02d}", "09:00", "chat", text])
    imported = import_csv(plain_project, out.getvalue().encode(), "x.csv", "props")
    node, problems = parse(imported.text, "calendars/props.yaml")
    assert node is not None and problems == []
    calendar, found = parse_calendar(
        node, "calendars/props.yaml", plain_project.config, "props", {"posts/text"}
    )
    assert calendar is not None and found == []
    assert [i.vars["text"] for i in calendar.items] == [t.strip() for t in texts]
