"""The ledger keeps a key per winner, never the address (issue 15, point 15).

`commcal contest draw` used to write the winners' addresses into the ledger's draws table. Now
it records keys; the command still prints the winners, and `commcal contest winners` names them
again from the entries file. Checked on the SQLite file's bytes (and its WAL), through the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from commcal.cli import app
from commcal.contest import entry_key
from commcal.ledger import open_ledger
from tests.conftest import MakeProject

CALENDAR = """\
items:
  - id: photo-contest
    kind: contest
    opens: 2026-12-07 10:00
    closes: 2027-01-10 20:00
    channels: [console]
    template: posts/tip
    steps:
      - {name: opens, at: opens}
"""
CONFIG = """\
timezone: UTC
locale: en
state: sqlite:///state.db
channels:
  console: {type: console}
"""


def run(root: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["-C", str(root), *args])


@pytest.fixture
def contest(make_project: MakeProject, tmp_path: Path) -> tuple[Path, Path]:
    root = make_project(calendars={"main.yaml": CALENDAR}, config=CONFIG)
    entries = tmp_path / "entries.csv"
    rows = "".join(f"Winner.Person{n}@Example.org,@handle{n}\n" for n in range(40))
    entries.write_text("email,handle\n" + rows, encoding="utf-8")
    return root, entries


def ledger_bytes(root: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(root.glob("state.db*")))


def test_after_a_draw_the_ledger_holds_no_winner_address_and_the_winners_are_printed(
    contest: tuple[Path, Path],
) -> None:
    root, entries = contest
    args = ["contest", "draw", "photo-contest", "--entries", str(entries), "--winners", "5"]
    drawn = run(root, *args, "--seed", "2027-01-11 close", "--format", "json")
    assert drawn.exit_code == 0, drawn.output
    winners = json.loads(drawn.stdout)["winners"]
    assert len(winners) == 5 and all("@example.org" in w.lower() for w in winners)
    shown = run(root, *args, "--seed", "2027-01-11 close")
    for winner in winners:
        assert winner in shown.stdout

    raw = ledger_bytes(root).lower()
    for winner in winners:
        for form in (winner, winner.lower(), winner.split("@")[0]):
            assert form.lower().encode() not in raw, f"{form} is in the ledger"
    with open_ledger("sqlite:///state.db", project_dir=root) as ledger:
        [first, second] = ledger.draws("main/photo-contest")
    assert list(first.winners) == [entry_key(w) for w in winners] == list(second.winners)


def test_contest_winners_names_the_winners_again_from_the_entries_file(
    contest: tuple[Path, Path], tmp_path: Path
) -> None:
    root, entries = contest
    args = ["contest", "draw", "photo-contest", "--entries", str(entries), "--winners", "3"]
    drawn = json.loads(run(root, *args, "--seed", "s", "--format", "json").stdout)["winners"]

    listed = run(root, "contest", "winners", "photo-contest", "--entries", str(entries))
    assert listed.exit_code == 0, listed.output
    for winner in drawn:
        assert winner in listed.stdout
    as_json = json.loads(
        run(
            root, "contest", "winners", "photo-contest", "--entries", str(entries), "-f", "json"
        ).stdout
    )
    assert as_json["schema"] == "commcal.draws/1"
    [recorded] = as_json["draws"]
    assert [w["entrant"] for w in recorded["winners"]] == drawn
    assert [w["key"] for w in recorded["winners"]] == [entry_key(w) for w in drawn]

    # A file without one of them shows that winner by key, not as someone else.
    other = tmp_path / "other.csv"
    other.write_text("email\nsomeone@example.org\n", encoding="utf-8")
    gone = run(root, "contest", "winners", "photo-contest", "--entries", str(other))
    assert gone.exit_code == 0, gone.output
    assert f"key {entry_key(drawn[0])}" in gone.stdout


def test_handles_are_keys_too(contest: tuple[Path, Path]) -> None:
    root, entries = contest
    args = ["contest", "draw", "photo-contest", "--entries", str(entries), "--column", "handle"]
    drawn = run(root, *args, "--seed", "s", "--format", "json")
    assert drawn.exit_code == 0, drawn.output
    [winner] = json.loads(drawn.stdout)["winners"]
    assert winner.startswith("@handle")
    assert winner.encode() not in ledger_bytes(root)


def test_the_ledger_refuses_an_address_as_a_winner(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    with open_ledger(f"sqlite:///{tmp_path / 'l.db'}") as ledger, pytest.raises(ValueError):
        ledger.record_draw(
            "c/x",
            seed="s",
            entries_sha256="a" * 64,
            entries=1,
            winners=["ann@example.org"],
            now=datetime(2026, 12, 1, tzinfo=UTC),
        )
