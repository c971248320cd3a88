"""Engagement in the ledger: snapshots (append-only), replies (kept once per id), reply marks.

Run against both backends with the fixtures of tests/test_ledger.py (SQLite, and the real
PostgreSQL when reachable; see there). No e-mail address is ever stored: read back from the
database itself, not only through the methods.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from test_ledger import T0, ledger, ledger_url, postgres_db

from commcal.engagement.model import Reply, Snapshot
from commcal.errors import LedgerError
from commcal.ledger import Ledger, open_ledger
from commcal.ledger.schema import SQLITE, migrations

__all__ = ["ledger", "ledger_url", "postgres_db"]  # fixtures, imported to be found by pytest


def snap(n: int, delivery: str = "d1", **kw: object) -> Snapshot:
    fields: dict[str, object] = {
        "delivery_id": delivery,
        "channel": "mastodon",
        "remote_id": f"r-{delivery}",
        "taken_at": T0 + timedelta(hours=n),
        "sent_at": T0,
        "likes": n,
        "reposts": 1,
        "replies": 2,
        "quotes": 0,
    }
    fields.update(kw)
    return Snapshot(**fields)  # type: ignore[arg-type]


def reply(n: int, **kw: object) -> Reply:
    fields: dict[str, object] = {
        "id": f"mastodon:{n}",
        "delivery_id": "d1",
        "channel": "mastodon",
        "remote_id": str(n),
        "parent_id": "r-d1",
        "author": "@ama@example.social",
        "text": f"reply {n}?",
        "created_at": T0 + timedelta(minutes=n),
        "url": f"https://example.social/@ama/{n}",
    }
    fields.update(kw)
    return Reply(**fields)  # type: ignore[arg-type]


# ---- snapshots --------------------------------------------------------------------------------


def test_snapshots_are_appended_and_read_back_oldest_first(ledger: Ledger) -> None:
    poll = snap(2, extra={"poll": {"ναι": 3, "no": 1}})
    assert ledger.add_snapshots([snap(3), poll, snap(1, "d2")]) == 3
    # The same post read again later is a new row, not an overwrite.
    assert ledger.add_snapshots([snap(3, likes=9)]) == 1
    got = list(ledger.snapshots())
    assert [(s.delivery_id, s.taken_at, s.likes) for s in got] == [
        ("d2", T0 + timedelta(hours=1), 1),
        ("d1", T0 + timedelta(hours=2), 2),
        ("d1", T0 + timedelta(hours=3), 3),
        ("d1", T0 + timedelta(hours=3), 9),
    ]
    assert got[1] == poll  # every field, extra included, comes back equal
    assert got[1].taken_at.tzinfo is not None


def test_snapshot_filters(ledger: Ledger) -> None:
    ledger.add_snapshots([snap(n, f"d{n % 3}") for n in range(12)])
    since = list(ledger.snapshots(since=T0 + timedelta(hours=6)))
    assert [s.likes for s in since] == [6, 7, 8, 9, 10, 11]
    only = list(ledger.snapshots(delivery_ids=iter(["d1", "d1", "nope"])))
    assert [s.likes for s in only] == [1, 4, 7, 10]
    both = list(ledger.snapshots(since=T0 + timedelta(hours=5), delivery_ids=["d2"]))
    assert [s.likes for s in both] == [5, 8, 11]
    assert list(ledger.snapshots(delivery_ids=[])) == []


def test_snapshots_by_many_delivery_ids_cross_the_in_chunks(ledger: Ledger) -> None:
    ledger.add_snapshots([snap(n % 50, f"d{n:04d}") for n in range(1200)])
    wanted = [f"d{n:04d}" for n in range(0, 1200, 2)]
    got = list(ledger.snapshots(delivery_ids=wanted))
    assert len(got) == 600
    assert [s.taken_at for s in got] == sorted(s.taken_at for s in got)


def test_bad_snapshots_are_refused_whole(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="status"):
        ledger.add_snapshots([snap(1), snap(2, status="deleted")])
    with pytest.raises(ValueError, match="likes"):
        ledger.add_snapshots([snap(1, likes=-1)])
    with pytest.raises(ValueError):
        ledger.add_snapshots([snap(1, taken_at=datetime(2026, 12, 1, 9))])  # naive time
    assert list(ledger.snapshots()) == []
    assert ledger.add_snapshots([]) == 0
    gone = snap(4, status="gone", likes=0, sent_at=None)
    ledger.add_snapshots([gone])
    assert list(ledger.snapshots()) == [gone]


def test_snapshots_and_marks_are_append_only(ledger: Ledger) -> None:
    ledger.add_snapshots([snap(1)])
    ledger.add_replies([reply(1)])
    ledger.mark_reply("mastodon:1", "kb", now=T0)
    for sql in (
        "UPDATE snapshots SET likes = 99",
        "DELETE FROM snapshots",
        "UPDATE reply_marks SET mark = 'question'",
        "DELETE FROM reply_marks",
    ):
        with pytest.raises(Exception, match="append-only"):
            ledger._transaction(lambda sql=sql: ledger._execute(sql), write=True)
    assert [s.likes for s in ledger.snapshots()] == [1]
    assert ledger.reply_marks() == {"mastodon:1": ["kb"]}


# ---- replies ----------------------------------------------------------------------------------


def test_replies_are_kept_once_per_id(ledger: Ledger) -> None:
    assert ledger.add_replies([reply(2), reply(1, by_team=True, lang="el")]) == 2
    # A later pull brings the same replies (one edited) and a new one: only the new one counts.
    assert ledger.add_replies([reply(1, text="edited"), reply(3), reply(2)]) == 1
    got = list(ledger.replies())
    assert [r.id for r in got] == ["mastodon:1", "mastodon:2", "mastodon:3"]
    assert got[0] == reply(1, by_team=True, lang="el")  # the first row stays, every field
    assert [r.id for r in ledger.replies(since=T0 + timedelta(minutes=2))] == [
        "mastodon:2",
        "mastodon:3",
    ]
    assert ledger.add_replies([]) == 0


def test_marks_are_kept_in_order_and_checked(ledger: Ledger) -> None:
    ledger.add_replies([reply(1), reply(2)])
    ledger.mark_reply("mastodon:2", "question", now=T0)
    ledger.mark_reply("mastodon:1", "kb", now=T0 + timedelta(minutes=1))
    ledger.mark_reply("mastodon:2", "answered", now=T0 + timedelta(minutes=2))
    assert ledger.reply_marks() == {"mastodon:2": ["question", "answered"], "mastodon:1": ["kb"]}
    with pytest.raises(KeyError):
        ledger.mark_reply("mastodon:9", "kb", now=T0)
    with pytest.raises(ValueError, match="unknown mark"):
        ledger.mark_reply("mastodon:1", "spam", now=T0)
    assert ledger.reply_marks()["mastodon:1"] == ["kb"]


# ---- no e-mail address ------------------------------------------------------------------------


def test_an_author_that_is_an_address_is_refused(ledger: Ledger) -> None:
    for author in ("mary@example.org", " Mary.K+news@mail.example.co.uk "):
        with pytest.raises(ValueError, match="e-mail"):
            ledger.add_replies([reply(1), reply(2, author=author)])
    assert list(ledger.replies()) == []  # the whole batch was refused, the good one too
    handles = ["@ama@example.social", "ama.bsky.social", "@ama:matrix.example", "ama#1234"]
    assert ledger.add_replies([reply(n, author=h) for n, h in enumerate(handles)]) == 4
    assert [r.author for r in ledger.replies()] == handles


def test_addresses_in_reply_text_are_masked_before_they_are_stored(
    ledger: Ledger, ledger_url: str
) -> None:
    text = "Write to mary.k@example.org or ops@mail.example.co.uk, cc @ama@example.social!"
    team = "Our address is hello@example.org"
    ledger.add_replies([reply(1, text=text), reply(2, text=team, by_team=True)])
    stored, ours = ledger.replies()
    assert ours.text == team  # the team's own words are its own to publish
    assert (
        stored.text
        == "Write to m***@example.org or o***@mail.example.co.uk, cc @ama@example.social!"
    )
    # Not only through the method: nothing in the database holds the address.
    dump = _dump(ledger_url)
    assert "mary.k@" not in dump and "ops@" not in dump
    assert "@ama@example.social" in dump


def _dump(url: str) -> str:
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return "\n".join(conn.iterdump())
        finally:
            conn.close()
    import psycopg

    base, _, options = url.partition("?options=")
    from urllib.parse import unquote

    with psycopg.connect(base, options=unquote(options)) as conn:
        rows = conn.execute("SELECT * FROM replies").fetchall()
        rows += conn.execute("SELECT * FROM reply_marks").fetchall()
        return "\n".join(repr(r) for r in rows)


def test_an_old_ledger_is_upgraded_and_keeps_its_deliveries(tmp_path: Path) -> None:
    """A ledger made before engagement existed gets the tables on open; nothing else changes."""
    path = _old_ledger(tmp_path)
    ledger = open_ledger(f"sqlite:///{path}")
    try:
        assert ledger.add_snapshots([snap(1)]) == 1
        assert ledger.schema_version() == len(migrations(SQLITE))
    finally:
        ledger.close()


def _old_ledger(tmp_path: Path) -> Path:
    """A SQLite ledger at the schema version before the engagement tables."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    steps = migrations(SQLITE)
    before = next(i for i, step in enumerate(steps) if any("snapshots" in s for s in step))
    conn.execute("CREATE TABLE commcal_schema (version INTEGER PRIMARY KEY, applied_at TEXT)")
    for version, step in enumerate(steps[:before], 1):
        for statement in step:
            conn.execute(statement)
        conn.execute("INSERT INTO commcal_schema VALUES (?, 'then')", (version,))
    conn.commit()
    conn.close()
    return path


def test_a_read_only_ledger_from_before_engagement_reads_as_empty(tmp_path: Path) -> None:
    path = _old_ledger(tmp_path)
    reader = open_ledger(f"sqlite:///{path}", read_only=True)
    try:
        assert list(reader.replies()) == [] and list(reader.snapshots()) == []
        assert reader.reply_marks() == {}
    finally:
        reader.close()


def test_a_read_only_ledger_reads_engagement(ledger_url: str) -> None:
    writer = open_ledger(ledger_url)
    writer.add_replies([reply(1)])
    writer.close()
    reader = open_ledger(ledger_url, read_only=True)
    try:
        assert [r.id for r in reader.replies()] == ["mastodon:1"]
        with pytest.raises(LedgerError):
            reader.add_replies([reply(2)])
    finally:
        reader.close()


def _sent(ledger: Ledger, delivery_id: str, when: datetime) -> None:
    from commcal.ledger import DueDelivery

    d = DueDelivery(delivery_id, "community", "tip", "mastodon", when)
    claim = ledger.claim(d, worker="w", now=when, lease=timedelta(minutes=5), idempotent=False)
    assert claim is not None and ledger.begin_send(claim, when)
    ledger.record_sent(claim, remote_id=f"r-{delivery_id}", url=None, now=when)


def test_engagement_at_takes_the_first_ok_snapshot_that_late(ledger: Ledger) -> None:
    for d in ("d1", "d2", "d3", "d4"):
        _sent(ledger, d, T0)
    ledger.add_snapshots(
        [
            snap(23, "d1", likes=5),
            snap(24, "d1", likes=7, reposts=1, replies=2, quotes=3),  # exactly 24h: 13
            snap(25, "d1", likes=50),
            snap(30, "d2", likes=9, status="error"),  # a failed read is no figure
            snap(31, "d2", likes=4),
            snap(5, "d3", likes=99),  # never read that late
            # No sent_at: the ledger's record of the send (T0) counts.
            snap(24, "d4", likes=1, sent_at=None),
            snap(40, "orphan", likes=1),  # no delivery row: left out
        ]
    )
    got = {
        m.delivery_id: (m.sent_at, m.engagement) for m in ledger.engagement_at(timedelta(hours=24))
    }
    assert got == {
        "d1": (T0, 7 + 1 + 2 + 3),
        "d2": (T0, 4 + 1 + 2),  # snap() gives each 1 repost and 2 replies
        "d3": (T0, None),
        "d4": (T0, 1 + 1 + 2),
    }
    (one,) = [m for m in ledger.engagement_at(timedelta(hours=24)) if m.delivery_id == "d1"]
    assert (one.calendar, one.item, one.channel) == ("community", "tip", "mastodon")
    later = {
        m.delivery_id: m.engagement for m in ledger.engagement_at(timedelta(hours=24, seconds=1))
    }
    assert later["d1"] == 50 + 1 + 2  # a second later than the 24h snapshot: the next one
