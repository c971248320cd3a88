"""Attacks from outside on the commands of issue 12 (plan --diff, import csv, export ics/html,
cadence lint): hostile revisions and repositories, hostile CSV cells, hostile text in exports.
Each test here failed before the fix it names, or pins a defence that held."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import MakeProject
from tests.test_plandiff import BASE, NOW, git, repository, run

# --- plan --diff BASE -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "base",
    [
        "--output=x.tar",
        "--remote=/tmp",
        "--exec=touch pwned",
        "-o",
        "HEAD ~1",
        "HEAD\nHEAD",
        "HEAD:../..",
        "HEAD:",
        "",
        "HEAD^{tree}",
    ],
)
def test_a_revision_that_is_an_option_or_not_a_commit_is_refused(tmp_path: Path, base: str) -> None:
    """Held: nothing reaches git as an option; the JSON answer is still one document."""
    root = repository(tmp_path / "repo", [BASE])
    os.chdir(tmp_path)
    result = run(root, "plan", "--diff", base, "--format", "json", *NOW)
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "no such git revision" in result.stderr  # type: ignore[attr-defined]
    assert json.loads(result.stdout)["base"]["commit"] is None  # type: ignore[attr-defined]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]
    assert git(root.parent, "status", "--porcelain") == ""


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../../../etc/passwd", "../../.."])
@pytest.mark.parametrize("fmt", ["table", "json"])
def test_a_link_out_of_the_repository_in_base_is_a_clear_error(
    tmp_path: Path, target: str, fmt: str
) -> None:
    """Broke: tarfile's "data" filter raised out of `plan --diff` (a traceback, exit 1, and no
    JSON document). Now a usage error naming the link, and nothing of the target is read."""
    root = repository(tmp_path / "repo", [BASE])
    link = root / "calendars" / "evil.yaml"
    link.symlink_to(target)
    git(root.parent, "add", "-A")
    git(root.parent, "commit", "-qm", "a link")
    link.unlink()  # the working tree is fine: only BASE has the link
    result = run(root, "plan", "--diff", "HEAD", "--format", fmt, *NOW)
    assert result.exception is None or isinstance(result.exception, SystemExit)  # type: ignore[attr-defined]
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "site/calendars/evil.yaml in that revision is a link to a place outside" in (
        result.stderr  # type: ignore[attr-defined]
    )
    assert "root:" not in result.output  # type: ignore[attr-defined]
    if fmt == "json":
        assert json.loads(result.stdout)["schema"] == "commcal.plan_diff/1"  # type: ignore[attr-defined]


# --- import csv -------------------------------------------------------------------------------

# Cells a spreadsheet may hold that mean something to YAML, Jinja or a spreadsheet.
HOSTILE = [
    '=HYPERLINK("http://example.org","click")',
    "a: b # not a comment",
    "&anchor x",
    "*alias",
    "!!python/object/apply:os.system ['touch pwned']",
    "{{ 7*7 }} {{ text }}",
    "{% raw %}x{% endraw %}{% include 'posts/text.j2' %}",
    "{# hidden? #}",
    "- item",
    "? key",
    "%YAML 1.2",
    "---",
    "...",
    "'quoted'",
    '"',
    "line1\r\nline2\rline3",
    "tab\there",
    "\x1b[31mred\x7f",
    "😀 Καλημέρα",
]


def importing(root: Path, data: bytes, *args: str) -> tuple[int, str, str]:
    from tests.test_importing import run as run_import

    (root / "in.csv").write_bytes(data)
    return run_import(root, "import", "csv", str(root / "in.csv"), *args)


def test_yaml_and_jinja_in_a_cell_come_out_exactly_as_written(make_project: MakeProject) -> None:
    """Held: the calendar written loads, and `plan` renders each text literally (Jinja syntax
    in a cell is text, not a template; YAML tags are not constructed)."""
    import csv
    import io

    from tests.test_importing import CONFIG
    from tests.test_importing import run as run_import

    root = make_project(config=CONFIG)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["id", "date", "time", "channels", "text"])
    for n, text in enumerate(HOSTILE):
        writer.writerow([f"t{n}", f"2026-12-{n + 2:02d}", "09:00", "chat", text])
    code, _, err = importing(root, out.getvalue().encode())
    assert (code, err) == (0, "")
    code, out_json, err = run_import(
        root, "plan", "--now", "2026-12-01T00:00:00Z", "--days", "40", "-f", "json"
    )
    assert code == 0, err
    texts = {d["item"]: d["text"] for d in json.loads(out_json)["deliveries"]}
    assert texts == {f"t{n}": text for n, text in enumerate(HOSTILE)}
    assert not (root / "pwned").exists()


def test_a_bad_byte_names_its_row_not_its_line(make_project: MakeProject) -> None:
    """Broke: the row of a byte that is not UTF-8 was counted in lines, so after a quoted
    cell with a line break it named the wrong row."""
    root = make_project(config=import_config())
    data = (
        b"date,time,channels,text\n2026-12-05,09:00,chat,ok\n"
        b'2026-12-06,09:00,chat,"two\nlines"\n2026-12-07,09:00,chat,caf\xe9\n'
    )
    code, _, err = importing(root, data)
    assert code == 1
    assert "in.csv:4: error: row 4 (line 5): byte 0xe9 is not UTF-8" in err
    assert not (root / "calendars" / "in.yaml").exists()


def test_a_nul_is_a_row_error(make_project: MakeProject) -> None:
    """Broke: a NUL went into the calendar ("a\\0b"), which PostgreSQL's text refuses when
    the post is recorded; a UTF-16 export without a BOM is full of them."""
    root = make_project(config=import_config())
    code, _, err = importing(root, b"date,time,channels,text\n2026-12-05,09:00,chat,a\x00b\n")
    assert code == 1
    assert "in.csv:2: error: row 2: a NUL character (is the file UTF-16?)" in err
    assert not (root / "calendars" / "in.yaml").exists()


@pytest.mark.parametrize("name", ["../../evil", "x y", "-rf", ".hidden"])
def test_a_calendar_name_that_is_not_an_id_is_a_usage_error(
    make_project: MakeProject, name: str
) -> None:
    """Broke: `--calendar ../../evil` was blamed on commcal ("a bug in commcal import")."""
    root = make_project(config=import_config())
    code, _, err = importing(
        root, b"date,time,channels,text\n2026-12-05,09:00,chat,a\n", "--calendar", name
    )
    assert code == 2
    assert f"--calendar {name!r}: a calendar name may use only letters" in err
    assert "bug" not in err
    assert not (root / "calendars").exists() and not (root.parent / "evil.yaml").exists()


def test_an_unclosed_quote_over_a_huge_cell_says_how_big_a_cell_may_be(
    make_project: MakeProject,
) -> None:
    root = make_project(config=import_config())
    data = b'date,time,channels,text\n2026-12-05,09:00,chat,"' + b"a" * 200_000 + b"\n"
    code, _, err = importing(root, data)
    assert code == 1
    assert "row 2: not readable as CSV" in err and "a cell holds at most 131,072" in err


@pytest.mark.parametrize("ends", ["\r\n", "\r"])
def test_crlf_and_cr_line_ends(make_project: MakeProject, ends: str) -> None:
    """Held: old Mac (CR) and Windows (CRLF) exports read as rows."""
    root = make_project(config=import_config())
    rows = ["date,time,channels,text", "2026-12-05,09:00,chat,a", "2026-12-06,09:00,chat,b"]
    code, out, err = importing(root, ends.join(rows).encode() + ends.encode())
    assert (code, err) == (0, "") and "2 items" in out


def import_config() -> str:
    from tests.test_importing import CONFIG

    return CONFIG
