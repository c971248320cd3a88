"""Audiences: reading CSV and YAML member lists, the bad-row rule, segments and recipient keys."""

from __future__ import annotations

import csv
import tracemalloc
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commcal.audience import (
    Member,
    Where,
    audience_names,
    check_audience,
    count,
    find_member,
    members,
    parse_where,
    recipient_key,
    sample,
)
from commcal.calendar.fields import Reader
from commcal.calendar.yamlnodes import parse
from commcal.errors import Problem, ProblemsFound

GREEK_CSV = """\
email,name,locale,timezone,tier,points,tags,joined,city
eleni@Example.GR,Ελένη Παπαδοπούλου,el,Europe/Athens,gold,150,volunteer|donor,2025-03-01,Αθήνα
nikos@example.gr,Νίκος Γεωργίου,el,Europe/Athens,silver,40,,2026-02-10,Θεσσαλονίκη
juma@example.co.ke,Juma Mwangi,sw,Africa/Nairobi,gold,99,volunteer;mentor,2024-11-30,Nairobi
"""

SWAHILI_YAML = """\
members:
  - email: amina@example.co.tz
    name: Amina Said
    locale: sw
    timezone: Africa/Dar_es_Salaam
    tags: [volunteer]
    points: 12
    joined: 2026-01-15
    school: Shule ya Msingi
  - email: baraka@example.co.ke
    name: Baraka Otieno
    locale: sw_KE
"""


def write(root: Path, name: str, text: str | bytes) -> Path:
    path = root / "audiences" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def read(root: Path, name: str) -> tuple[list[Member], list[Problem]]:
    problems: list[Problem] = []
    found = list(members(root, name, problems=problems))
    return found, problems


def shown(problems: list[Problem]) -> list[str]:
    return [str(p) for p in problems]


@pytest.fixture
def root(make_project) -> Path:  # type: ignore[no-untyped-def]
    project: Path = make_project()
    write(project, "greek.csv", GREEK_CSV)
    write(project, "swahili.yaml", SWAHILI_YAML)
    return project


# -- reading -------------------------------------------------------------------------------------


def test_csv_members_with_all_columns(root: Path) -> None:
    found, problems = read(root, "greek")
    assert problems == []
    eleni = found[0]
    assert eleni == Member(
        email="eleni@example.gr",
        name="Ελένη Παπαδοπούλου",
        locale="el",
        timezone="Europe/Athens",
        tier="gold",
        points=150,
        tags=frozenset({"volunteer", "donor"}),
        joined=date(2025, 3, 1),
        vars={"city": "Αθήνα"},
        row=2,
    )
    assert [m.row for m in found] == [2, 3, 4]
    assert found[2].tags == frozenset({"volunteer", "mentor"})
    assert found[1].tags == frozenset() and found[1].points == 40
    assert eleni.template_vars() == {
        "email": "eleni@example.gr",
        "name": "Ελένη Παπαδοπούλου",
        "first_name": "Ελένη",
        "locale": "el",
        "timezone": "Europe/Athens",
        "tier": "gold",
        "points": 150,
        "tags": ["donor", "volunteer"],
        "joined": date(2025, 3, 1),
        "city": "Αθήνα",
    }


def test_yaml_members_list_or_mapping(root: Path) -> None:
    found, problems = read(root, "swahili")
    assert problems == []
    assert [(m.email, m.row, m.first_name) for m in found] == [
        ("amina@example.co.tz", 2, "Amina"),
        ("baraka@example.co.ke", 10, "Baraka"),
    ]
    assert found[0].vars == {"school": "Shule ya Msingi"}
    assert found[0].joined == date(2026, 1, 15) and found[0].points == 12
    write(root, "plain.yaml", "- email: a@example.org\n  tags: volunteer|donor\n")
    assert [m.tags for m in members(root, "plain")] == [frozenset({"volunteer", "donor"})]


def test_semicolon_csv_with_bom_and_header_case(root: Path) -> None:
    write(root, "excel.csv", "\ufeffEmail;Name;Locale\nzoe@example.gr;Ζωή;el\n".encode())
    found, problems = read(root, "excel")
    assert problems == [] and [(m.email, m.name, m.locale) for m in found] == [
        ("zoe@example.gr", "Ζωή", "el")
    ]


def test_quoted_multiline_cell_keeps_line_numbers(root: Path) -> None:
    write(root, "multi.csv", 'email,note\na@example.org,"two\nlines"\nnot-an-address,x\n')
    found, problems = read(root, "multi")
    assert found[0].vars == {"note": "two\nlines"}
    assert shown(problems) == [
        "audiences/multi.csv:4: warning: 'not-an-address' is not an e-mail address; the row is "
        "skipped (An email address must have an @-sign.)"
    ]


def test_audience_names(root: Path) -> None:
    assert audience_names(root) == {
        "greek": root / "audiences" / "greek.csv",
        "swahili": root / "audiences" / "swahili.yaml",
    }


# -- the bad-row rule ------------------------------------------------------------------------------


def test_bad_rows_are_warnings_with_lines_and_skipped(root: Path) -> None:
    write(
        root,
        "mixed.csv",
        "email,name,locale,timezone,points,joined\n"
        "ok1@example.org,Ένα,el,,,\n"
        "two@@example.org,Δύο,,,,\n"
        "has space@example.org,,,,,\n"
        "nodot@localhost,,,,,\n"
        "loc@example.org,,xx_YY_ZZ,,,\n"
        "tz@example.org,,,Europe/Athen,,\n"
        "pts@example.org,,,,lots,\n"
        "date@example.org,,,,,2026-02-30\n"
        "ok2@example.org,Mbili,sw,Africa/Nairobi,7,2026-01-01\n"
        "extra@example.org,a,b,c,d,e,f\n"
        "Short Row\n",
    )
    found, problems = read(root, "mixed")
    assert [m.email for m in found] == ["ok1@example.org", "ok2@example.org"]
    # Issue 15 point 12: a row whose cell count differs from the header's is an error (the file
    # is broken, so the audience is not sent), no longer a skipped row.
    assert [(p.pos.line, p.severity, p.message.split(";")[0]) for p in problems] == [
        (3, "warning", "'two@@example.org' is not an e-mail address"),
        (4, "warning", "'has space@example.org' is not an e-mail address"),
        (5, "warning", "'nodot@localhost' is not an e-mail address"),
        (6, "warning", "unknown locale 'xx_YY_ZZ'"),
        (7, "warning", "unknown time zone 'Europe/Athen'"),
        (8, "warning", "points 'lots' is not a whole number"),
        (9, "warning", "joined '2026-02-30' is not a date"),
        (11, "error", "the row has 7 cells but the header has 6 columns"),
        (12, "error", "the row has 1 cell but the header has 6 columns"),
    ]
    assert problems[4].hint == "did you mean 'Europe/Athens'?"
    assert all(
        p.message.endswith("the row is skipped") for p in problems if p.severity == "warning"
    )


def test_short_row_without_email_cell(root: Path) -> None:
    write(root, "short.csv", "name,email\nΜαρία,\nJuma,juma@example.org\n")
    found, problems = read(root, "short")
    assert [m.name for m in found] == ["Juma"]
    assert shown(problems)[0].startswith(
        "audiences/short.csv:2: warning: the row has no email; the row is skipped"
    )
    # Issue 15 point 12: without the empty cell, the row is short of a cell: an error.
    write(root, "shorter.csv", "name,email\nΜαρία\nJuma,juma@example.org\n")
    found, problems = read(root, "shorter")
    assert [m.name for m in found] == ["Juma"]
    assert shown(problems)[0].startswith(
        "audiences/shorter.csv:2: error: the row has 1 cell but the header has 2 columns"
    )


def test_duplicate_address_names_first_line(root: Path) -> None:
    write(
        root, "dup.csv", "email,name\nMaria@Example.gr,first\nx@example.org,\nmaria@example.GR,2\n"
    )
    found, problems = read(root, "dup")
    assert [m.name for m in found] == ["first", ""]
    assert shown(problems) == [
        "audiences/dup.csv:4: warning: duplicate address maria@example.gr (first at line 2); "
        "the row is skipped (remove one of the two rows)"
    ]


def test_yaml_bad_rows_have_line_and_column(root: Path) -> None:
    write(
        root,
        "bad.yaml",
        "- email: good@example.org\n"
        "- just text\n"
        "- name: no address\n"
        "- email: p@example.org\n"
        "  points: many\n"
        "- email: q@example.org\n"
        "  tier: yes\n",
    )
    found, problems = read(root, "bad")
    assert [m.email for m in found] == ["good@example.org"]
    assert [(str(p.pos), p.severity) for p in problems] == [
        ("audiences/bad.yaml:2:3", "warning"),
        ("audiences/bad.yaml:3:3", "warning"),
        ("audiences/bad.yaml:5:11", "warning"),
        ("audiences/bad.yaml:7:9", "warning"),
    ]
    assert "yes/no" in problems[3].message


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("noemail.csv", "name,mail_address\nx,y@example.org\n", "the audience has no email column"),
        ("empty.csv", "", "the audience file is empty"),
        ("blank.csv", "\n\n", "the audience file is empty"),
        ("empty.yaml", "", "the audience file is empty"),
        ("twice.csv", "email,name,Name\n", "column 'name' appears more than once in the header"),
        ("notlist.yaml", "who: everyone\n", "unknown key 'who' in audience file"),
    ],
)
def test_file_problems_are_errors(root: Path, name: str, content: str, message: str) -> None:
    write(root, name, content)
    found, problems = read(root, name.split(".")[0])
    assert found == []
    assert problems and problems[0].severity == "error" and problems[0].message == message
    with pytest.raises(ProblemsFound):
        count(root, name.split(".")[0])


def test_missing_email_column_hint(root: Path) -> None:
    write(root, "noemail.csv", "name,mail_address\nx,y@example.org\n")
    problems = check_audience(root, "noemail")
    assert shown(problems) == [
        "audiences/noemail.csv:1: error: the audience has no email column "
        "(rename column 'mail_address' to email)"
    ]


def test_unknown_and_ambiguous_audiences(root: Path) -> None:
    assert shown(check_audience(root, "greeks")) == [
        "audiences/greeks.csv: error: unknown audience 'greeks' (did you mean 'greek'?)"
    ]
    write(root, "greek.yaml", "- email: a@example.org\n")
    assert shown(check_audience(root, "greek")) == [
        "audiences/greek.yaml: error: audience 'greek' is written twice: audiences/greek.csv and "
        "audiences/greek.yaml (keep one file per audience)"
    ]
    assert check_audience(root, "../commcal")[0].message.startswith("audience name")


def test_non_utf8_row_skipped_others_read(root: Path) -> None:
    write(
        root, "latin.csv", b"email,name\na@example.org,ok\nb@example.org,Caf\xe9\nc@example.org,\n"
    )
    found, problems = read(root, "latin")
    assert [m.email for m in found] == ["a@example.org", "c@example.org"]
    assert shown(problems) == [
        "audiences/latin.csv:3: warning: the row is not valid UTF-8; the row is skipped "
        "(save the file as CSV UTF-8)"
    ]


# -- count, sample, find ---------------------------------------------------------------------------


def test_count_sample_find(root: Path) -> None:
    assert count(root, "greek") == 3
    assert [m.email for m in sample(root, "greek", n=2)] == [
        "eleni@example.gr",
        "nikos@example.gr",
    ]
    found = find_member(root, "greek", " ELENI@example.gr ")
    assert found is not None and found.name == "Ελένη Παπαδοπούλου"
    assert find_member(root, "greek", "nobody@example.gr") is None


def test_streaming_50000_rows_bounded_memory(tmp_path: Path) -> None:
    path = write(tmp_path, "big.csv", "")
    with path.open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["email", "name", "locale", "timezone", "points", "tags", "joined", "city"])
        for i in range(50_000):
            out.writerow(
                [
                    f"member{i}@example.gr",
                    f"Μέλος {i}",
                    ("el", "sw", "en")[i % 3],
                    "Europe/Athens",
                    i % 500,
                    "volunteer|donor" if i % 7 == 0 else "",
                    "2025-06-01",
                    "Αθήνα",
                ]
            )
    where = _where("{points: {'>=': 250}}")
    total = matching = 0
    tracemalloc.start()
    try:
        for member in members(tmp_path, "big"):
            total += 1
            matching += where.matches(member)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (total, matching) == (50_000, 25_000)
    assert peak < 30_000_000, peak  # the file is ~4 MB; a list of 50,000 Members is far more
    first = next(members(tmp_path, "big"))  # lazily: the first member without reading the rest
    assert first.row == 2


# -- recipient keys --------------------------------------------------------------------------------


def test_recipient_key() -> None:
    key = recipient_key("Eleni@Example.GR")
    assert key == recipient_key(" eleni@example.gr ") == recipient_key("ELENI@EXAMPLE.GR")
    assert len(key) == 16 and all(c in "0123456789abcdef" for c in key)
    assert "eleni" not in key
    assert key != recipient_key("nikos@example.gr")
    assert key == "644a27fde267ca97"  # stable across runs and releases: the ledger stores it


# -- segments ------------------------------------------------------------------------------------


def _where(text: str) -> Where:
    reader = Reader()
    node, problems = parse(f"where: {text}\n", "calendars/main.yaml")
    assert node is not None and not problems
    where_node = node.get("where")
    assert where_node is not None
    where = parse_where(reader, where_node)
    assert where is not None, reader.problems
    return where


def _where_problems(text: str) -> list[str]:
    reader = Reader()
    node, _ = parse(f"where:\n  {text}\n", "calendars/main.yaml")
    assert node is not None
    where_node = node.get("where")
    assert where_node is not None
    result = parse_where(reader, where_node)
    errors = [p for p in reader.problems if p.severity == "error"]
    assert (result is None) == bool(errors)
    return shown(reader.problems)


@pytest.mark.parametrize(
    ("where", "emails"),
    [
        ("{tier: gold}", ["eleni", "juma"]),
        ("{tier: [silver, bronze]}", ["nikos"]),
        ("{tier: {'!=': gold}}", ["nikos"]),
        ("{tier: {not_in: [gold]}}", ["nikos"]),
        ("{points: {'>=': 99}}", ["eleni", "juma"]),
        ("{points: {'>': 99}}", ["eleni"]),
        ("{points: {'<': 99}}", ["nikos"]),
        ("{points: {'<=': 99}}", ["nikos", "juma"]),
        ("{points: {'==': 40}}", ["nikos"]),
        ("{points: {'!=': 40}}", ["eleni", "juma"]),
        ("{points: {'>=': 40, '<': 150}}", ["nikos", "juma"]),
        ("{points: 150}", ["eleni"]),
        ("{points: [40, 99]}", ["nikos", "juma"]),
        ("{tags: {has: volunteer}}", ["eleni", "juma"]),
        ("{tags: volunteer}", ["eleni", "juma"]),
        ("{tags: {has_any: [donor, mentor]}}", ["eleni", "juma"]),
        ("{tags: {has_all: [volunteer, donor]}}", ["eleni"]),
        ("{tags: [mentor]}", ["juma"]),
        ("{joined: {before: 2026-01-01}}", ["eleni", "juma"]),
        ("{joined: {after: 2025-03-01}}", ["nikos"]),
        ("{joined: {after: 2024-01-01, before: 2025-12-31}}", ["eleni", "juma"]),
        ("{locale: el}", ["eleni", "nikos"]),
        ("{locale: [sw, en]}", ["juma"]),
        ("{timezone: Africa/Nairobi}", ["juma"]),
        ("{city: Αθήνα}", ["eleni"]),
        ("{city: [Nairobi, Θεσσαλονίκη]}", ["nikos", "juma"]),
        ("{email: ELENI@example.gr}", ["eleni"]),
        ("{tier: gold, locale: sw}", ["juma"]),
        ("{}", ["eleni", "nikos", "juma"]),
    ],
)
def test_where_forms(root: Path, where: str, emails: list[str]) -> None:
    found = members(root, "greek", _where(where))
    assert [m.email.split("@")[0] for m in found] == emails


def test_where_locale_matches_regions(root: Path) -> None:
    assert [m.email for m in members(root, "swahili", _where("{locale: sw}"))] == [
        "amina@example.co.tz",
        "baraka@example.co.ke",
    ]


def test_where_number_on_extra_column(root: Path) -> None:
    write(root, "ages.csv", "email,age\na@example.org,30\nb@example.org,17\nc@example.org,n/a\n")
    assert [m.email for m in members(root, "ages", _where("{age: {'>=': 18}}"))] == [
        "a@example.org"
    ]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (
            "points: {'=>': 100}",
            "calendars/main.yaml:2:12: error: where.points: unknown operator '=>' for points "
            "(did you mean '>='?)",
        ),
        (
            "tier: {'>=': 100}",
            "calendars/main.yaml:2:10: error: where.tier: unknown operator '>=' for tier "
            "('>=' works on points; tier takes '==', '!=', 'in', 'not_in')",
        ),
        (
            "tags: {hass: volunteer}",
            "calendars/main.yaml:2:10: error: where.tags: unknown operator 'hass' for tags "
            "(did you mean 'has'?)",
        ),
        (
            "tier: {before: 2026-01-01}",
            "calendars/main.yaml:2:10: error: where.tier: unknown operator 'before' for tier "
            "('before' works on joined; tier takes '==', '!=', 'in', 'not_in')",
        ),
        (
            "points: {'>=': lots}",
            "calendars/main.yaml:2:18: error: where.points.>= (points are whole numbers) must be "
            "a whole number, not 'lots'",
        ),
        (
            "points: gold",
            "calendars/main.yaml:2:11: error: where.points (points are whole numbers) must be a "
            "whole number, not 'gold'",
        ),
        (
            "joined: {before: soon}",
            "calendars/main.yaml:2:20: error: where.joined.before must be a date like "
            "2026-12-01, not 'soon'",
        ),
        (
            "locale: xx_YY_ZZ",
            "calendars/main.yaml:2:11: error: unknown locale 'xx_YY_ZZ' (use a language code "
            "such as en, el (Greek) or sw (Swahili))",
        ),
        (
            "tier: yes",
            "calendars/main.yaml:2:9: error: where.tier: unquoted 'yes' is read as a yes/no "
            'value by YAML 1.1, not as text (quote it: "yes")',
        ),
        ("tier: {}", "calendars/main.yaml:2:9: error: where.tier: the mapping has no operator"),
    ],
)
def test_where_errors_have_positions(where: str, expected: str) -> None:
    problems = _where_problems(where)
    assert problems[0].startswith(expected), problems


def test_where_must_be_a_mapping() -> None:
    reader = Reader()
    node, _ = parse("where: gold\n", "calendars/main.yaml")
    assert node is not None
    where_node = node.get("where")
    assert where_node is not None
    assert parse_where(reader, where_node) is None
    assert shown(reader.problems)[0].startswith(
        "calendars/main.yaml:1:8: error: where must be a mapping"
    )


def test_where_near_miss_column_is_a_warning() -> None:
    assert _where_problems("teir: gold") == [
        "calendars/main.yaml:2:3: warning: where: 'teir' is not a standard column, so it is "
        "matched against an extra column of that name (did you mean 'tier'?)"
    ]


# -- properties ----------------------------------------------------------------------------------

_cells = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12
) | st.sampled_from(["a@b.gr", "el", "sw", "Europe/Athens", "12", "2026-01-01", "x|y", ""])
_columns = st.sampled_from(
    ["email", "name", "locale", "timezone", "tier", "points", "tags", "joined", "city", "Email"]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    header=st.lists(_columns, min_size=1, max_size=6),
    rows=st.lists(st.lists(_cells, max_size=7), max_size=8),
)
def test_random_csv_rows_give_members_or_problems(
    tmp_path: Path, header: list[str], rows: list[list[str]]
) -> None:
    path = write(tmp_path, "random.csv", "")
    with path.open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(header)
        out.writerows(rows)
    found, problems = read(tmp_path, "random")
    assert all(isinstance(m, Member) for m in found)
    assert all(isinstance(p, Problem) for p in problems)
    assert len({m.key for m in found}) == len(found)
    for member in found:
        member.template_vars()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".csv", ".yaml"]))
def test_random_bytes_never_raise(tmp_path: Path, data: bytes, suffix: str) -> None:
    for old in (tmp_path / "audiences").glob("random.*"):
        old.unlink()
    write(tmp_path, f"random{suffix}", data)
    found, problems = read(tmp_path, "random")
    assert all(isinstance(m, Member) for m in found)
    assert all(isinstance(p, Problem) for p in problems)
