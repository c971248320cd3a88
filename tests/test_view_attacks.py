"""Attacks from outside on the commands of issue 12 (plan --diff, import csv, export ics/html,
cadence lint): hostile revisions and repositories, hostile CSV cells, hostile text in exports.
Each test here failed before the fix it names, or pins a defence that held."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import MakeProject
from tests.test_plandiff import BASE, NOW, ROOT, git, repository, run

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


# --- export ics / export html -----------------------------------------------------------------

EXPORT_CONFIG = "timezone: Europe/Athens\nlocale: el\nchannels:\n  chat: {type: console}\n"
# RFC 5545 specials, line breaks, and Greek, emoji and a flag (two code points) past 75 octets.
TITLE = "T;i,t\\l\ne </script><!-- x --> <b>" + "Ελληνικά😀🇬🇷" * 12
TEXT = "A;b,c\\d\ne\n\nf " + "αβγδ😀🇬🇷" * 40


def export_project(make_project: MakeProject) -> Path:
    import yaml

    item = {
        "id": "x",
        "title": TITLE,
        "template": "posts/t",
        "channels": ["chat"],
        "at": "2026-12-03 09:00",
        "vars": {"text": TEXT},
    }
    calendar = yaml.safe_dump({"items": [item]}, allow_unicode=True)
    return make_project(
        config=EXPORT_CONFIG,
        calendars={"main.yaml": calendar},
        templates={"posts/t.j2": "{{ text }}"},
    )


def export(root: Path, *args: str) -> tuple[int, bytes, str]:
    from typer.testing import CliRunner

    from commcal.cli import app

    result = CliRunner().invoke(
        app, ["-C", str(root), "export", *args, "--now", "2026-12-01T00:00:00Z"]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout_bytes, result.stderr


def test_ics_text_is_escaped_and_folded_on_character_boundaries(make_project: MakeProject) -> None:
    """Held: every line at most 75 octets, each a whole UTF-8 text (no character split), and
    icalendar reads back SUMMARY and DESCRIPTION exactly."""
    import icalendar

    code, data, err = export(export_project(make_project), "ics", "--days", "30")
    assert (code, err) == (0, "")
    for line in data.split(b"\r\n"):
        assert len(line) <= 75
        line.decode("utf-8")  # a fold in the middle of a character would not decode
    (event,) = icalendar.Calendar.from_ical(data).walk("VEVENT")
    assert str(event["SUMMARY"]) == f"{TITLE} → chat"
    assert TEXT.strip() in str(event["DESCRIPTION"])


def test_html_title_cannot_close_the_script_or_open_a_comment(make_project: MakeProject) -> None:
    """Held: `</script>`, `<!--` and `<b>` in a title are text in the page, never markup."""
    code, data, err = export(export_project(make_project), "html", "-o", "-")
    assert code == 0, err
    page = data.decode()
    assert page.lower().count("</script") == page.lower().count("<script")
    assert "<!-- x" not in page and "<b>Ελ" not in page
    assert "&lt;/script&gt;" in page or "\\u003c/script" in page.lower()


@pytest.mark.parametrize(
    "target",
    ["calendars/main.yaml", "commcal.yaml", "templates/posts/t.j2", ".commcal/state.db"],
)
@pytest.mark.parametrize("kind", ["html", "ics"])
def test_an_export_never_overwrites_the_projects_own_files(
    make_project: MakeProject, target: str, kind: str
) -> None:
    """Broke: `export html -o calendars/main.yaml` replaced the calendar with a web page (and
    `-o .commcal/state.db` would replace the ledger: every post sent again)."""
    root = export_project(make_project)
    path = root / target
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(b"ledger")
    before = path.read_bytes()
    code, _, err = export(root, kind, "-o", str(path))
    assert code == 2
    assert f"-o {path}: that is" in err and "write the export somewhere else" in err
    assert path.read_bytes() == before


@pytest.mark.parametrize("target", [".", "/"])
def test_html_to_a_folder_is_a_clear_error(make_project: MakeProject, target: str) -> None:
    """Broke: `export html -o .` raised ValueError out of Path.with_name (exit 1, no word)."""
    code, _, err = export(export_project(make_project), "html", "-o", target)
    assert code == 2
    assert "cannot write the page: Is a directory" in err


def test_an_empty_window_exports_an_empty_feed_and_page(make_project: MakeProject) -> None:
    """Held: no deliveries is a valid VCALENDAR and a page, exit 0."""
    import icalendar

    root = export_project(make_project)
    code, data, err = export(root, "ics", "--from", "2030-12-05", "--days", "1")
    assert (code, err) == (0, "")
    assert icalendar.Calendar.from_ical(data).walk("VEVENT") == []
    code, data, err = export(root, "html", "--from", "2030-12-05", "--days", "1", "-o", "-")
    assert (code, err) == (0, "") and data.lower().startswith(b"<!doctype html>")


@pytest.mark.parametrize("target", ["commcal.yaml", ".commcal/state.db", "templates/x.yaml"])
def test_import_never_writes_over_the_config_ledger_or_templates(
    make_project: MakeProject, target: str
) -> None:
    """Broke: `import csv --output commcal.yaml --force` replaced the config with a calendar."""
    root = make_project(config=import_config())
    path = root / target
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(b"keep")
    before = path.read_bytes()
    data = b"date,time,channels,text\n2026-12-05,09:00,chat,a\n"
    code, _, err = importing(root, data, "--output", str(path), "--calendar", "x", "--force")
    assert code == 2
    assert f"--output {path}: that is" in err
    assert path.read_bytes() == before


# --- cadence lint -----------------------------------------------------------------------------


def validate(make_project: MakeProject, lint: str, calendar: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from commcal.cli import app

    root = make_project(
        config="timezone: Europe/Athens\nlocale: en\nchannels:\n  chat: {type: console}\n" + lint,
        calendars={"main.yaml": calendar},
        templates={"posts/t.j2": "hi"},
    )
    result = CliRunner().invoke(
        app, ["-C", str(root), "validate", "--now", "2027-03-01T00:00:00Z", "--days", "300"]
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stderr


def reply(item: str, at: str) -> str:
    return (
        f"  - id: {item}\n    template: posts/t\n    channels: [chat]\n"
        f"    replies: expected\n    at: {at}\n"
    )


@pytest.mark.parametrize(
    ("lint", "message"),
    [
        ("max_per_dya: 3", "commcal.yaml:6:3: error: unknown key 'max_per_dya' in lint (did you"),
        ("min_spacing: -1h", "commcal.yaml:6:16: error: lint.min_spacing must not be negative"),
        ("max_per_day: 0", "lint.max_per_day must be within 1..10000, not 0"),
        ("min_spacing: 0m", "lint.min_spacing must be longer than 0"),
        ('quiet_hours: "25:00-26:00"', "'25:00-26:00' is not a span of hours like 22:00-08:00"),
        ("blackout: [2027-03-28T00:00+05:00]", "lint.blackout must be a date like 2026-12-01"),
        ("max_silence: {limt: 3d}", "unknown key 'limt' in lint.max_silence (did you mean"),
        ("min_spacing: 99999999999999h", "is longer than 10 years (check it for a typo)"),
    ],
)
def test_bad_lint_settings_are_config_errors_at_their_line(
    make_project: MakeProject, lint: str, message: str
) -> None:
    """Held: each is exit 2 with file:line:column and the fix."""
    code, err = validate(
        make_project, f"lint:\n  {lint}\n", "items:\n" + reply("p", "2027-03-05 10:00")
    )
    assert code == 2
    assert message in err


@pytest.mark.parametrize(
    ("staff", "message"),
    [
        ('staf: ["mon-fri 09:00-17:00"]', "unknown key 'staf' in a calendar file (did you mean"),
        ('staff: "mon-fri 25:00-26:00"', "'mon-fri 25:00-26:00' is not a weekly window"),
        ('staff: "mon-fri 09:00-09:00"', "'mon-fri 09:00-09:00' is not a weekly window"),
    ],
)
def test_bad_staff_windows_are_errors_at_their_line(
    make_project: MakeProject, staff: str, message: str
) -> None:
    code, err = validate(make_project, "", f"{staff}\nitems:\n" + reply("p", "2027-03-05 10:00"))
    assert code == 1
    assert "calendars/main.yaml:1:" in err and message in err


def test_staff_windows_across_midnight_and_athens_dst_days(make_project: MakeProject) -> None:
    """Held: on 2027-03-28 Athens skips 03:00-04:00 (a post at 03:30 goes at 04:30) and on
    2027-10-31 repeats it; a window past midnight belongs to the day it starts on."""
    items = (
        reply("gap", "2027-03-28 03:30")
        + reply("fold", "2027-10-31 03:30")
        + reply("early", "2027-03-28 01:30")
        + reply("late", "2027-10-30 23:30")
    )
    code, err = validate(
        make_project, "", 'staff: ["sun 02:00-05:00", "sat 23:00-00:30"]\nitems:\n' + items
    )
    assert code == 0
    warned = sorted(line.split("'")[1] for line in err.splitlines() if "staffed_hours" in line)
    assert warned == ["early"]


def test_a_blackout_date_is_on_the_readers_clock(make_project: MakeProject) -> None:
    """Held (docs/calendar-format.md#lint): 23:30 in New York on the 4th is the 5th in Athens,
    the project's zone, but not a blackout of the 5th for New York's readers."""
    calendar = "timezone: America/New_York\nitems:\n" + reply("ny", "2027-03-04 23:30")
    code, err = validate(make_project, "lint:\n  blackout: [2027-03-05]\n", calendar)
    assert (code, err) == (0, "")
    code, err = validate(make_project, "lint:\n  blackout: [2027-03-04]\n", calendar)
    assert (
        code == 1 and "blackout: 'ny' goes out on chat on 2027-03-04 23:30 America/New_York" in err
    )


def test_base_is_read_as_committed_whatever_its_gitattributes_say(tmp_path: Path) -> None:
    """Broke: `git archive` applied BASE's .gitattributes: `site/ export-ignore` (a release
    tarball rule) made `--diff` say commcal.yaml is not in that revision, and export-subst
    rewrote `$Format:%H$` in a text into the commit id, a change nobody made."""
    root = repository(tmp_path / "repo", [BASE.replace('"We launch"', '"We launch $Format:%h$"')])
    (root.parent / ".gitattributes").write_text(
        "site/** export-subst\nsite/templates/ export-ignore\n", encoding="utf-8"
    )
    git(root.parent, "add", "-A")
    git(root.parent, "commit", "-qm", "attributes")
    result = run(root, "plan", "--diff", "HEAD", "--format", "json", *NOW)
    assert result.exit_code == 0, result.stderr  # type: ignore[attr-defined]
    data = json.loads(result.stdout)  # type: ignore[attr-defined]
    assert data["changes"] == [] and data["summary"]["unchanged"] > 0
    (root.parent / ".gitattributes").write_text("site/ export-ignore\n", encoding="utf-8")
    git(root.parent, "commit", "-qam", "leave the site out of tarballs")
    result = run(root, "plan", "--diff", "HEAD", "--format", "json", *NOW)
    assert result.exit_code == 0, result.stderr  # type: ignore[attr-defined]
    assert json.loads(result.stdout)["changes"] == []  # type: ignore[attr-defined]


def test_detached_head_a_submodule_and_no_trace_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held: a detached HEAD and a submodule inside the project folder are fine; the index
    and working tree are untouched, and the temporary folder is gone after success and after
    an error."""
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    (other / "f").write_text("x", encoding="utf-8")
    git(other, "add", "-A")
    git(other, "commit", "-qm", "other")
    root = repository(tmp_path / "repo", [BASE])
    git(
        root.parent,
        "-c",
        "protocol.file.allow=always",
        "submodule",
        "add",
        "-q",
        str(other),
        "site/vendor",
    )
    git(root.parent, "commit", "-qm", "submodule")
    git(root.parent, "checkout", "-q", "--detach", "HEAD")
    empty_tree = git(root.parent, "hash-object", "-t", "tree", "-w", "/dev/null").strip()
    empty = git(root.parent, "commit-tree", empty_tree, "-m", "empty").strip()
    index = (root.parent / ".git" / "index").read_bytes()
    result = run(root, "plan", "--diff", "HEAD~1", "--format", "json", *NOW)
    assert result.exit_code == 0, result.stderr  # type: ignore[attr-defined]
    assert json.loads(result.stdout)["changes"] == []  # type: ignore[attr-defined]
    result = run(root, "plan", "--diff", empty, *NOW)  # no site/ in it
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "site/commcal.yaml is not in that revision" in result.stderr  # type: ignore[attr-defined]
    assert (root.parent / ".git" / "index").read_bytes() == index
    assert git(root.parent, "status", "--porcelain") == ""
    assert list(scratch.iterdir()) == []


def test_ics_dash_is_standard_output_as_for_html(
    make_project: MakeProject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Broke: `export ics -o -` wrote a file named '-' in the current folder."""
    root = export_project(make_project)
    monkeypatch.chdir(tmp_path)
    code, data, err = export(root, "ics", "--days", "30", "-o", "-")
    assert (code, err) == (0, "")
    assert data.startswith(b"BEGIN:VCALENDAR")
    assert not (tmp_path / "-").exists()


def test_an_id_used_in_another_calendar_is_a_separate_item(make_project: MakeProject) -> None:
    """Held: item ids are per calendar (a delivery's id names its calendar), so an imported
    `weekly` next to calendars/main.yaml's `weekly` plans both."""
    from tests.test_importing import run as run_import

    calendar = "items:\n  - id: weekly\n    template: posts/text\n    at: 2026-12-05 09:00\n"
    root = make_project(
        config=import_config(),
        calendars={"main.yaml": "defaults: {channels: [chat]}\n" + calendar},
        templates={"posts/text.j2": "{{ text | default('main') }}"},
    )
    data = b"id,date,time,channels,text\nweekly,2026-12-05,09:00,chat,imported\n"
    code, _, err = importing(root, data, "--calendar", "spring")
    assert (code, err) == (0, "")
    code, out, err = run_import(root, "plan", "--now", "2026-12-01T00:00:00Z", "-f", "json")
    assert code == 0, err
    got = sorted((d["calendar"], d["item"], d["text"]) for d in json.loads(out)["deliveries"])
    assert got == [("main", "weekly", "main"), ("spring", "weekly", "imported")]


def test_empty_standard_input_is_a_row_error(make_project: MakeProject) -> None:
    from tests.test_importing import run as run_import

    root = make_project(config=import_config())
    code, _, err = run_import(root, "import", "csv", "-", stdin=b"")
    assert code == 1
    assert "<stdin>:1: error: the file is empty" in err
    assert not (root / "calendars" / "imported.yaml").exists()


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_an_interrupted_diff_removes_its_copy_of_base(tmp_path: Path, sig: str) -> None:
    """Broke for SIGTERM (a cancelled CI job, `timeout`): the process ended on the spot and
    left BASE's files in a commcal-base-* folder; Ctrl-C held."""
    import signal
    import subprocess
    import sys
    import time

    minutely = BASE.replace('cron: "0 9 * * MON"', 'cron: "* * * * *"')
    root = repository(tmp_path / "repo", [minutely])
    (root / "calendars" / "main.yaml").write_text("items: []\n", encoding="utf-8")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "MASTODON_TOKEN": "t", "PYTHONPATH": str(ROOT)}
    args = ["plan", "--diff", "HEAD", "--days", "365", "--now", "2027-01-04T00:00:00Z"]
    with subprocess.Popen(
        [sys.executable, "-m", "commcal", "-C", str(root), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ) as proc:
        deadline = time.monotonic() + 60
        while not list(scratch.glob("commcal-base-*/site/commcal.yaml")):
            assert proc.poll() is None and time.monotonic() < deadline, "BASE never extracted"
            time.sleep(0.01)
        proc.send_signal(getattr(signal, sig))
        proc.wait(timeout=60)
    assert proc.returncode != 0
    assert list(scratch.iterdir()) == []
    assert git(root.parent, "status", "--porcelain") == " M site/calendars/main.yaml\n"
