"""The ledger's record of media uploads (`record_upload`, `uploads`), on SQLite and PostgreSQL:
what a send resumed after a crash reads back instead of uploading the same files again."""

from __future__ import annotations

from datetime import timedelta

import pytest

from commcal.ledger import Ledger
from tests.test_ledger import LEASE, T0, claim, due, ledger, ledger_url, postgres_db

__all__ = ["ledger", "ledger_url", "postgres_db"]  # the fixtures, for pytest


def test_uploads_are_recorded_per_position_and_the_latest_wins(ledger: Ledger) -> None:
    d = due()
    c = claim(ledger, d, T0)
    assert ledger.uploads(d.id) == {}
    assert ledger.record_upload(c, position=0, digest="a" * 64, ref="111", now=T0)
    assert ledger.record_upload(c, position=1, digest="b" * 64, ref="222", now=T0)
    # a re-upload (the network forgot "111"): a new row, read back in its place
    assert ledger.record_upload(c, position=0, digest="a" * 64, ref="333", now=T0)
    assert ledger.uploads(d.id) == {0: ("a" * 64, "333"), 1: ("b" * 64, "222")}
    assert ledger.uploads(due(2).id) == {}
    other = claim(ledger, due(3), T0)
    assert ledger.record_upload(other, position=0, digest="c" * 64, ref="444", now=T0)
    assert ledger.uploads_many([d.id, due(2).id, due(3).id]) == {
        d.id: {0: ("a" * 64, "333"), 1: ("b" * 64, "222")},
        due(3).id: {0: ("c" * 64, "444")},
    }


def test_a_claim_taken_over_cannot_record_an_upload(ledger: Ledger) -> None:
    d = due()
    old = claim(ledger, d, T0)
    later = T0 + LEASE + timedelta(seconds=1)
    claim(ledger, d, later, worker="w2")  # the lease ran out: w2 took it over
    assert not ledger.record_upload(old, position=0, digest="x", ref="999", now=later)
    assert ledger.uploads(d.id) == {}


def test_uploads_are_append_only(ledger: Ledger) -> None:
    c = claim(ledger, due(), T0)
    assert ledger.record_upload(c, position=0, digest="x", ref="1", now=T0)
    with pytest.raises(Exception, match="append-only"):
        ledger._transaction(lambda: ledger._execute("DELETE FROM media_uploads"), write=True)
