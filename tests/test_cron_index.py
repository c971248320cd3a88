"""The cron minute's shortcut (commcal.cron_index, commcal.entry): with and without the index,
the same sends and the same ledger, over random edits between real runs; a warm nothing-due
minute imports nothing heavy; a broken index is ignored and rebuilt."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from commcal.cli import app
from commcal.cron_index import INDEX_FILE

REPO = Path(__file__).resolve().parent.parent
START = datetime(2026, 12, 1, tzinfo=UTC)
CONFIG = """\
timezone: UTC
locale: en
publish: {max_late: 2h}
channels:
  console:
    type: console
"""
TEMPLATE = "SEND {{ item.id }} {{ at }} {{ version }}\n"


def write_calendar(root: Path, items: dict[int, tuple[int, int]]) -> None:
    lines = ["calendar: main", "vars: {version: v1}", "defaults: {channels: [console]}"]
    lines.append("items:" if items else "items: []")
    for key, (hour, minute) in sorted(items.items()):
        lines += [
            f"  - id: item-{key}",
            "    kind: post",
            "    template: posts/tip",
            f'    schedule: {{cron: "{minute} {hour} * * *"}}',
        ]
    (root / "calendars" / "main.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def new_project(root: Path) -> None:
    for folder in ("calendars", "templates/posts", "audiences"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "commcal.yaml").write_text(CONFIG, encoding="utf-8")
    (root / "templates" / "posts" / "tip.j2").write_text(TEMPLATE, encoding="utf-8")
    (root / "audiences" / "people.csv").write_text("email\na@example.org\n", encoding="utf-8")


def publish(root: Path, now: datetime) -> tuple[int, list[str]]:
    """One real `commcal publish` run: its exit code and the messages it sent."""
    result = CliRunner().invoke(app, ["-C", str(root), "publish", "--now", now.isoformat()])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, sorted(
        line for line in result.stdout.splitlines() if line.startswith("SEND ")
    )


def ledger_rows(root: Path) -> set[tuple[str, str]]:
    db = sqlite3.connect(root / ".commcal" / "state.db")
    try:
        return {(r[0], r[1]) for r in db.execute("SELECT id, state FROM deliveries")}
    finally:
        db.close()


ITEM = st.integers(0, 4)
HOUR = st.integers(0, 23)
MINUTE = st.integers(0, 59)
# An edited or added item's time, as minutes before the next run: just due, due a while ago
# (within max_late, 2h), or too late already.
AGO = st.sampled_from([0, 1, 3, 20, 100, 150, 600])
EDIT = st.one_of(
    st.tuples(st.just("time"), ITEM, AGO),
    st.tuples(st.just("add"), ITEM, AGO),
    st.tuples(st.just("remove"), ITEM),
    st.tuples(st.just("template"), st.integers(1, 3)),
    st.tuples(st.just("touch"), st.sampled_from(["calendars/main.yaml", "commcal.yaml"])),
    st.tuples(st.just("audience"), st.integers(1, 3)),
    st.tuples(st.just("nothing")),
)
# Minutes between two runs: the next minute, a few hours, past max_late, or the same minute.
STEP = st.sampled_from([0, 1, 1, 7, 15, 45, 130, 200, 800])


def apply(
    edit: tuple[object, ...],
    roots: list[Path],
    items: dict[int, tuple[int, int]],
    at: datetime,
) -> None:
    """Make the same edit in every project; `at` is when the next run is."""
    kind = edit[0]
    if kind in ("time", "add"):
        _, key, ago = edit
        assert isinstance(key, int) and isinstance(ago, int)
        when = at - timedelta(minutes=ago)
        if kind == "add" or key in items:
            items[key] = (when.hour, when.minute)
    elif kind == "remove":
        items.pop(int(str(edit[1])), None)
    for root in roots:
        if kind in ("time", "add", "remove"):
            write_calendar(root, items)
        elif kind == "template":
            text = TEMPLATE.replace("{{ version }}", f"{{{{ version }}}} t{edit[1]}")
            (root / "templates" / "posts" / "tip.j2").write_text(text, encoding="utf-8")
        elif kind == "touch":
            path = root / str(edit[1])
            stat = path.stat()
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
        elif kind == "audience":
            people = "".join(f"p{n}@example.org\n" for n in range(int(str(edit[1]))))
            (root / "audiences" / "people.csv").write_text("email\n" + people, encoding="utf-8")


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=st.dictionaries(ITEM, st.tuples(HOUR, MINUTE), min_size=1, max_size=4),
    steps=st.lists(st.tuples(EDIT, STEP), min_size=1, max_size=7),
)
def test_the_index_never_changes_what_is_sent(
    tmp_path_factory: object,
    first: dict[int, tuple[int, int]],
    steps: list[tuple[tuple[object, ...], int]],
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cached, plain = Path(tmp) / "cached", Path(tmp) / "plain"
        items = dict(first)
        for root in (cached, plain):
            new_project(root)
            write_calendar(root, items)
        now = START + timedelta(hours=9, minutes=7)
        sent: list[str] = []
        for edit, step in [(("nothing",), 0), *steps, (("nothing",), 1)]:
            now += timedelta(minutes=step)
            apply(edit, [cached, plain], items, now)
            (plain / INDEX_FILE).unlink(missing_ok=True)  # this side always runs in full
            with_index = publish(cached, now)
            without = publish(plain, now)
            assert with_index == without, (edit, now)
            assert ledger_rows(cached) == ledger_rows(plain), (edit, now)
            sent += with_index[1]
        assert len(sent) == len(set(sent)), "a delivery was sent twice"


def run_entry(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m commcal` as cron runs it, then the names of the modules it imported."""
    code = (
        "import sys\nsys.argv = ['commcal', *sys.argv[1:]]\n"
        "from commcal.entry import main\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    code = exc.code\nelse:\n    code = 0\n"
        "print('MODULES', ' '.join(sorted(sys.modules)), file=sys.stderr)\nsys.exit(code)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=root, env=env, capture_output=True, text=True
    )


def imported(done: subprocess.CompletedProcess[str]) -> set[str]:
    line = next(x for x in done.stderr.splitlines() if x.startswith("MODULES "))
    return set(line.split()[1:])


# What a nothing-due minute must not import (the startup budget; other commands import these
# inside their own functions). A top-level name covers its submodules.
HEAVY = (
    "jinja2",
    "yaml",
    "rich.table",
    "apscheduler",
    "requests",
    "psycopg",
    "babel",
    "icalendar",
    "commcal.project",
    "commcal.config",
    "commcal.cli",
    "typer",
)


def test_a_warm_nothing_due_minute_imports_nothing_heavy(tmp_path: Path) -> None:
    new_project(tmp_path)
    write_calendar(tmp_path, {0: (10, 0), 1: (10, 30)})
    now = START + timedelta(hours=11, minutes=7)
    cold = run_entry(tmp_path, "publish", "--now", now.isoformat())
    assert cold.returncode == 0, cold.stderr
    assert cold.stdout.count("SEND ") == 2
    assert "yaml" in imported(cold)  # the first run loads the project and builds the index
    warm = run_entry(tmp_path, "publish", "--now", (now + timedelta(minutes=1)).isoformat())
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout == "2 already\n"
    modules = imported(warm)
    heavy = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == []
    # The cron log's format takes the shortcut too: the summary line alone.
    as_lines = run_entry(tmp_path, "publish", "--format", "jsonl", "--now", now.isoformat())
    [summary] = [json.loads(x) for x in as_lines.stdout.splitlines()]
    assert summary["type"] == "summary" and summary["counts"] == {"already": 2}
    assert summary["ok"] is True and summary["lines"] == {}
    assert not [
        m for m in imported(as_lines) if any(m == h or m.startswith(h + ".") for h in HEAVY)
    ]
    # JSON lists every delivery handled (docs/json.md): a full run, never the shortcut.
    as_json = run_entry(tmp_path, "publish", "--format", "json", "--now", now.isoformat())
    report = json.loads(as_json.stdout)
    assert report["counts"] == {"already": 2} and len(report["deliveries"]) == 2
    # Something due: the full run, which sends it.
    due = run_entry(tmp_path, "publish", "--now", (now + timedelta(hours=23)).isoformat())
    assert due.returncode == 0, due.stderr
    assert "SEND item-0" in due.stdout
    assert "commcal.project" in imported(due)


def test_the_index_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    """It keeps commcal.yaml's ledger URL as written, which may hold a database password."""
    new_project(tmp_path)
    write_calendar(tmp_path, {0: (10, 0)})
    now = START + timedelta(hours=10, minutes=7)
    assert run_entry(tmp_path, "publish", "--now", now.isoformat()).returncode == 0
    assert (tmp_path / INDEX_FILE).stat().st_mode & 0o777 == 0o600


def test_a_due_minute_asks_the_index_once(tmp_path: Path) -> None:
    """When something is due, the index is asked before typer starts and the full run does
    not ask it again (its file checks and ledger query, twice every such minute)."""
    new_project(tmp_path)
    write_calendar(tmp_path, {0: (10, 0), 1: (10, 30)})
    now = START + timedelta(hours=10, minutes=7)
    assert run_entry(tmp_path, "publish", "--now", now.isoformat()).returncode == 0  # the index
    code = (
        "import sys\nsys.argv = ['commcal', *sys.argv[1:]]\n"
        "from commcal import cron_index\nasked = cron_index.quiet_minute\n"
        "def counted(*a, **k):\n    print('ASKED', file=sys.stderr)\n    return asked(*a, **k)\n"
        "cron_index.quiet_minute = counted\nfrom commcal.entry import main\nmain()\n"
    )
    due = subprocess.run(
        [sys.executable, "-c", code, "publish", "--now", (now + timedelta(minutes=30)).isoformat()],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    assert due.returncode == 0, due.stderr
    assert "SEND item-1" in due.stdout
    assert due.stderr.count("ASKED") == 1


def test_a_broken_or_foreign_index_is_ignored_and_rebuilt(tmp_path: Path) -> None:
    new_project(tmp_path)
    write_calendar(tmp_path, {0: (9, 0)})
    now = START + timedelta(hours=9, minutes=7)
    assert publish(tmp_path, now) == (0, ["SEND item-0 2026-12-01 09:00:00+00:00 v1"])
    index = tmp_path / INDEX_FILE
    good = json.loads(index.read_text(encoding="utf-8"))
    for bad in ('{"format": 1, "commc', "[]", json.dumps({**good, "format": 99}), ""):
        index.write_text(bad, encoding="utf-8")
        assert publish(tmp_path, now + timedelta(minutes=1)) == (0, [])
        assert json.loads(index.read_text(encoding="utf-8"))["format"] == good["format"]
    # Deleting it is safe too: the next run is a full one, which sends nothing twice.
    index.unlink()
    assert publish(tmp_path, now + timedelta(minutes=2)) == (0, [])
    assert [p.name for p in index.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_an_edit_within_the_same_second_is_seen(tmp_path: Path) -> None:
    """Same size, same mtime (set back by hand): a racily-clean file is hashed again."""
    new_project(tmp_path)
    write_calendar(tmp_path, {0: (9, 0)})
    now = START + timedelta(hours=9, minutes=7)
    assert publish(tmp_path, now)[1] == ["SEND item-0 2026-12-01 09:00:00+00:00 v1"]
    calendar = tmp_path / "calendars" / "main.yaml"
    stat = calendar.stat()
    text = calendar.read_text(encoding="utf-8")
    calendar.write_text(text.replace("0 9 * * *", "5 9 * * *"), encoding="utf-8")
    os.utime(calendar, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert publish(tmp_path, now + timedelta(minutes=1))[1] == [
        "SEND item-0 2026-12-01 09:05:00+00:00 v1"
    ]


def test_a_link_loop_or_a_broken_link_among_the_inputs_is_harmless(tmp_path: Path) -> None:
    new_project(tmp_path)
    write_calendar(tmp_path, {0: (9, 0)})
    (tmp_path / "templates" / "loop").symlink_to(tmp_path / "templates")
    now = START + timedelta(hours=9, minutes=7)
    assert publish(tmp_path, now)[1] == ["SEND item-0 2026-12-01 09:00:00+00:00 v1"]
    assert publish(tmp_path, now + timedelta(minutes=1)) == (0, [])
    (tmp_path / "audiences" / "gone.csv").symlink_to(tmp_path / "nowhere.csv")
    assert publish(tmp_path, now + timedelta(minutes=2)) == (0, [])
