"""The ledger's record of retractions and amendments (commcal/ledger/changes.py), on SQLite and
the real PostgreSQL alike: numbered changes, begun then finished, append-only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_ledger import ledger, ledger_url, postgres_db  # noqa: F401  (fixtures)

from commcal.ledger import Ledger
from commcal.ledger.changes import ChangePending

T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)


def test_a_change_is_begun_then_done_and_numbered(ledger: Ledger) -> None:  # noqa: F811
    first = ledger.begin_change("d1", "amended", T0, content_hash="sha256:ab", text="new")
    assert (first.number, first.finished) == (1, False)
    ledger.finish_change(first, T0 + timedelta(seconds=1), remote_id="$e2", url="https://e/2")
    second = ledger.begin_change("d1", "retracted", T0 + timedelta(minutes=1), reason="wrong")
    ledger.finish_change(second, T0 + timedelta(minutes=1), note="already gone")

    changes = ledger.post_changes(["d1", "d2"])

    assert list(changes) == ["d1"]
    amended, retracted = changes["d1"]
    assert (amended.number, amended.action, amended.outcome) == (1, "amended", "done")
    assert (amended.text, amended.content_hash, amended.remote_id) == ("new", "sha256:ab", "$e2")
    assert amended.finished_at == T0 + timedelta(seconds=1)
    assert (retracted.number, retracted.reason, retracted.note) == (2, "wrong", "already gone")
    assert set(ledger.retracted(["d1", "d2"])) == {"d1"}


def test_an_unfinished_change_must_be_taken_up_before_another(ledger: Ledger) -> None:  # noqa: F811
    begun = ledger.begin_change("d1", "retracted", T0)
    with pytest.raises(ChangePending) as refused:
        ledger.begin_change("d1", "amended", T0)
    assert refused.value.change.number == 1
    (pending,) = ledger.post_changes(["d1"])["d1"]
    assert not pending.finished

    done = ledger.finish_change(begun, T0, ending="refused", note="HTTP 403")
    again = ledger.finish_change(begun, T0 + timedelta(hours=1))  # a second taker: no change

    assert done.outcome == again.outcome == "refused"
    assert ledger.retracted(["d1"]) == {}
    assert ledger.begin_change("d1", "retracted", T0).number == 2


def test_post_changes_is_append_only(ledger: Ledger) -> None:  # noqa: F811
    ledger.finish_change(ledger.begin_change("d1", "retracted", T0), T0)

    for statement in ("UPDATE post_changes SET phase = 'begun'", "DELETE FROM post_changes"):
        with pytest.raises(Exception, match="append-only"):
            ledger._transaction(lambda s=statement: ledger._execute(s), write=True)
    assert ledger.post_changes(["d1"])["d1"][0].done
