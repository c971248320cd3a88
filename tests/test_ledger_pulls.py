"""What `commcal pull` and the tracking links keep in the ledger, on both backends (the fixtures
of tests/test_ledger.py: SQLite, and the real PostgreSQL when reachable): pull cursors, one
transaction per post, clicks and survey answers (append-only)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_ledger import T0, ledger, ledger_url, postgres_db
from test_ledger_engagement import reply, snap

from commcal.engagement.pull import Cursor
from commcal.ledger import Ledger

__all__ = ["ledger", "ledger_url", "postgres_db"]  # fixtures, imported to be found by pytest


def test_record_pull_writes_snapshot_new_replies_and_cursor_together(ledger: Ledger) -> None:
    new = ledger.record_pull(snap(1), [reply(1), reply(2)], Cursor("d1", "2", pulled_at=T0))
    assert new == 2
    again = ledger.record_pull(
        snap(2), [reply(2), reply(3)], Cursor("d1", "3", pulled_at=T0 + timedelta(hours=1))
    )
    assert again == 1
    assert [s.likes for s in ledger.snapshots()] == [1, 2]
    assert [r.remote_id for r in ledger.replies()] == ["1", "2", "3"]
    cursors = ledger.pull_cursors(["d1", "d2"])
    assert set(cursors) == {"d1"}
    assert (cursors["d1"].cursor, cursors["d1"].gone) == ("3", False)
    assert cursors["d1"].pulled_at == T0 + timedelta(hours=1)


def test_a_bad_reply_writes_nothing_of_the_post(ledger: Ledger) -> None:
    with pytest.raises(ValueError):
        ledger.record_pull(
            snap(1), [reply(1), reply(2, author="ann@example.org")], Cursor("d1", "2")
        )
    assert list(ledger.snapshots()) == []
    assert list(ledger.replies()) == []
    assert ledger.pull_cursors(["d1"]) == {}


def test_gone_is_kept(ledger: Ledger) -> None:
    ledger.record_pull(snap(1, status="gone"), [], Cursor("d1", gone=True, pulled_at=T0))
    assert ledger.pull_cursors(["d1"])["d1"].gone


def test_many_cursors_are_read_in_chunks(ledger: Ledger) -> None:
    for n in range(3):
        ledger.record_pull(snap(n, delivery=f"d{n}"), [], Cursor(f"d{n}", str(n)))
    wanted = [f"d{n}" for n in range(1200)]  # more than one IN (...) list
    assert {k: c.cursor for k, c in ledger.pull_cursors(wanted).items()} == {
        "d0": "0", "d1": "1", "d2": "2"
    }  # fmt: skip


def test_clicks_and_survey_answers_are_appended_and_never_rewritten(ledger: Ledger) -> None:
    ledger.record_click("a1b2c3d4e5f60718", "main/offer", "https://example.org/o", now=T0)
    ledger.record_click(
        "a1b2c3d4e5f60718", "main/offer", "https://example.org/o", now=T0 + timedelta(minutes=1)
    )
    ledger.record_survey_response("a1b2c3d4e5f60718", "main/fb", {"rating": ["4"]}, now=T0)
    ledger.record_survey_response(
        "a1b2c3d4e5f60718", "main/fb", {"rating": ["5"], "why": ["Καλό"]}, now=T0 + timedelta(1)
    )
    assert len(ledger.clicks()) == 2
    assert len(ledger.clicks(since=T0 + timedelta(seconds=30))) == 1
    assert [dict(r.answers) for r in ledger.survey_responses()] == [
        {"rating": ["4"]},
        {"rating": ["5"], "why": ["Καλό"]},
    ]
    with pytest.raises(ValueError):
        ledger.record_survey_response("k", "main/fb", {"q": ["x" * 5000]}, now=T0)
    with pytest.raises(Exception, match="append-only"):
        ledger._transaction(lambda: ledger._execute("DELETE FROM clicks"), write=True)
    assert len(ledger.clicks()) == 2


def test_relaxed_commits_last_only_for_the_block(ledger: Ledger) -> None:
    from commcal.ledger.sqlite import SqliteLedger

    query = "PRAGMA synchronous" if isinstance(ledger, SqliteLedger) else "SHOW synchronous_commit"

    def setting() -> str:
        ((value,),) = ledger._transaction(lambda: ledger._execute(query), write=False)
        return str(value)

    durable = setting()
    with ledger.relaxed():
        assert setting() in ("1", "off")  # SQLite NORMAL, PostgreSQL off
        ledger.record_pull(snap(1), [reply(1)], Cursor("d1", "1"))
    assert setting() == durable and durable in ("2", "on")  # FULL / on again
    with pytest.raises(RuntimeError), ledger.relaxed():
        raise RuntimeError("a pull that fails")
    assert setting() == durable
