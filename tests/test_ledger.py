"""The ledger contract, run against every backend (SQLite and the real PostgreSQL).

PostgreSQL: the server at $COMMCAL_TEST_POSTGRES_DSN (default postgres@127.0.0.1:5432/test). A
throwaway database is created for the session and each test gets its own schema in it. With no
server the PostgreSQL cases are skipped, unless COMMCAL_REQUIRE_POSTGRES=1 (CI), where they fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from commcal.errors import ConfigError, LedgerError
from commcal.ledger import (
    INTERRUPTED_WHILE_SENDING,
    Claim,
    DueDelivery,
    Ledger,
    MaybeSent,
    Sent,
    StaleClaim,
    State,
    open_ledger,
)
from commcal.ledger.sqlite import MIGRATIONS as SQLITE_MIGRATIONS

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)
HELPER = Path(__file__).with_name("ledger_helpers.py")
DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def due(n: int = 1, **kw: Any) -> DueDelivery:
    fields: dict[str, Any] = {
        "id": f"abcdef{n:04d}",
        "calendar": "news",
        "item": f"item-{n}",
        "channel": "console",
        "due_at": T0,
    }
    fields.update(kw)
    return DueDelivery(**fields)


# ---- fixtures ---------------------------------------------------------------------------------


def _with_database(dsn: str, dbname: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def postgres_db() -> Iterator[str]:
    """A fresh database for this session, dropped at the end."""
    dsn = os.environ.get("COMMCAL_TEST_POSTGRES_DSN", DEFAULT_DSN)
    try:
        import psycopg

        admin = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
    except Exception as e:
        if os.environ.get("COMMCAL_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but unreachable at {dsn}: {e}")
        pytest.skip(f"PostgreSQL unreachable at {dsn}: {e}")
    name = f"commcal_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE DATABASE {name}".encode())
    try:
        yield _with_database(dsn, name)
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to an empty ledger of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    import psycopg

    db_url = request.getfixturevalue("postgres_db")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())
    # Each test's tables live in its own schema, chosen through libpq's `options`.
    return f"{db_url}?options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    opened = open_ledger(ledger_url)
    try:
        yield opened
    finally:
        opened.close()


def claim(ledger: Ledger, d: DueDelivery, now: datetime, worker: str = "w1", **kw: Any) -> Claim:
    c = ledger.claim(d, worker=worker, now=now, lease=LEASE, idempotent=kw.get("idem", False))
    assert c is not None, f"{worker} could not claim {d.id}"
    return c


def events(ledger: Ledger, delivery_id: str) -> list[str]:
    return [a.event for a in ledger.attempts(delivery_id)]


# ---- claim rules ------------------------------------------------------------------------------


def test_claim_of_a_new_delivery_inserts_it_claimed(ledger: Ledger) -> None:
    d = due(recipient="r-hash", content_hash="h1")
    c = claim(ledger, d, T0)
    assert (c.delivery_id, c.worker, c.attempt, c.lease_until) == (d.id, "w1", 1, T0 + LEASE)
    rec = ledger.get(d.id)
    assert rec is not None
    assert (rec.state, rec.attempts, rec.claimed_by, rec.lease_until) == (
        State.CLAIMED,
        1,
        "w1",
        T0 + LEASE,
    )
    assert (rec.calendar, rec.item, rec.channel, rec.recipient, rec.content_hash) == (
        "news",
        "item-1",
        "console",
        "r-hash",
        "h1",
    )
    assert rec.due_at == T0 and rec.due_at.tzinfo is not None
    assert rec.created_at == rec.updated_at == T0
    assert events(ledger, d.id) == ["claimed"]


def test_a_live_claim_is_not_claimed_again_by_anyone(ledger: Ledger) -> None:
    d = due()
    first = claim(ledger, d, T0)
    for worker in ("w1", "w2"):
        assert ledger.claim(d, worker=worker, now=at(5), lease=LEASE, idempotent=True) is None
    rec = ledger.get(d.id)
    assert rec is not None and rec.claimed_by == "w1" and rec.attempts == 1
    assert ledger.begin_send(first, at(5))  # a lease ending exactly now is still live
    assert ledger.claim(d, worker="w2", now=at(5), lease=LEASE, idempotent=True) is None


def test_claims_get_unique_tokens(ledger: Ledger) -> None:
    a = claim(ledger, due(1), T0)
    b = claim(ledger, due(2), T0)
    assert a.token != b.token and len(a.token) >= 16


def test_pending_is_claimed_only_once_due(ledger: Ledger) -> None:
    d = due()
    c = claim(ledger, d, T0)
    assert ledger.begin_send(c, T0)
    state = ledger.record_transient(c, error="HTTP 503", retry_at=at(10), max_attempts=3, now=at(1))
    assert state is State.PENDING
    rec = ledger.get(d.id)
    assert rec is not None and rec.next_attempt_at == at(10) and rec.last_error == "HTTP 503"
    assert ledger.claim(d, worker="w2", now=at(9), lease=LEASE, idempotent=False) is None
    again = claim(ledger, d, at(10), worker="w2")
    assert again.attempt == 2
    rec = ledger.get(d.id)
    assert rec is not None
    assert (rec.state, rec.attempts, rec.claimed_by, rec.next_attempt_at) == (
        State.CLAIMED,
        2,
        "w2",
        None,
    )


def test_an_abandoned_claim_is_taken_over_and_the_old_owner_fenced_off(ledger: Ledger) -> None:
    d = due()
    old = claim(ledger, d, T0, worker="w1")
    assert ledger.claim(d, worker="w2", now=at(5), lease=LEASE, idempotent=False) is None
    new = claim(ledger, d, at(6), worker="w2")
    assert new.token != old.token
    assert new.attempt == 1  # nothing was sent, so no attempt was used up
    assert [r.id for r in ledger.abandoned(at(6))] == []
    # The old owner wakes up: it may not start sending, renew, release or record anything.
    assert not ledger.begin_send(old, at(6))
    assert ledger.extend(old, at(6), LEASE) is None
    assert not ledger.release(old, at(6))
    with pytest.raises(StaleClaim) as err:
        ledger.record_failed(old, error="boom", now=at(6))
    assert err.value.state is State.CLAIMED and err.value.held_by == "w2"
    assert "w2" in str(err.value)
    assert ledger.begin_send(new, at(7))
    ledger.record_sent(new, remote_id="r-2", url="https://x/2", now=at(7))
    history = ledger.attempts(d.id)
    assert [a.event for a in history] == ["claimed", "claimed", "stale", "sending", "sent"]
    assert history[1].worker == "w2" and "took over from w1" in (history[1].error or "")


def test_a_stale_record_sent_does_not_overwrite_the_new_owner(ledger: Ledger) -> None:
    d = due()
    old = claim(ledger, d, T0, worker="w1")
    assert ledger.begin_send(old, T0)
    new = claim(ledger, d, at(6), worker="w2", idem=True)
    assert ledger.begin_send(new, at(6))
    ledger.record_sent(new, remote_id="new", url="https://x/new", now=at(7))
    with pytest.raises(StaleClaim):
        ledger.record_sent(old, remote_id="old", url="https://x/old", now=at(8))
    with pytest.raises(StaleClaim):
        ledger.record_transient(old, error="late", retry_at=at(9), max_attempts=5, now=at(8))
    rec = ledger.get(d.id)
    assert rec is not None
    assert (rec.state, rec.remote_id, rec.url, rec.claimed_by) == (
        State.SENT,
        "new",
        "https://x/new",
        "w2",
    )
    history = ledger.attempts(d.id)
    assert [a.event for a in history].count("sent") == 1
    stale = [a for a in history if a.event == "stale"]
    assert len(stale) == 2 and stale[0].remote_id == "old" and stale[0].worker == "w1"
    assert "https://x/old" in (stale[0].error or "")


def test_dying_while_sending_on_a_channel_without_idempotency_means_unknown(
    ledger: Ledger,
) -> None:
    d = due()
    old = claim(ledger, d, T0, worker="w1")
    assert ledger.begin_send(old, T0)
    assert ledger.claim(d, worker="w2", now=at(5), lease=LEASE, idempotent=False) is None
    assert ledger.get(d.id).state is State.SENDING  # type: ignore[union-attr]
    assert [r.id for r in ledger.abandoned(at(6))] == [d.id]
    assert ledger.claim(d, worker="w2", now=at(6), lease=LEASE, idempotent=False) is None
    rec = ledger.get(d.id)
    assert rec is not None
    assert (rec.state, rec.last_error, rec.attempts) == (
        State.UNKNOWN,
        INTERRUPTED_WHILE_SENDING,
        1,
    )
    # UNKNOWN is never re-sent automatically, idempotent or not.
    assert ledger.claim(d, worker="w3", now=at(60), lease=LEASE, idempotent=True) is None
    # The dead worker's late report is kept as evidence, the state stays for the user to resolve.
    with pytest.raises(StaleClaim) as err:
        ledger.record_sent(old, remote_id="123", url="https://x/123", now=at(61))
    assert err.value.state is State.UNKNOWN
    assert ledger.get(d.id).state is State.UNKNOWN  # type: ignore[union-attr]
    assert events(ledger, d.id) == ["claimed", "sending", "unknown", "stale"]


def test_dying_while_sending_on_an_idempotent_channel_resends(ledger: Ledger) -> None:
    d = due()
    old = claim(ledger, d, T0, worker="w1", idem=True)
    assert ledger.begin_send(old, T0)
    new = claim(ledger, d, at(6), worker="w2", idem=True)
    assert new.attempt == 2
    rec = ledger.get(d.id)
    assert rec is not None and (rec.state, rec.claimed_by) == (State.CLAIMED, "w2")
    assert ledger.begin_send(new, at(6))
    ledger.record_sent(new, remote_id="r", url=None, now=at(6))
    assert events(ledger, d.id) == ["claimed", "sending", "claimed", "sending", "sent"]
    assert "same idempotency key" in (ledger.attempts(d.id)[2].error or "")


@pytest.mark.parametrize(
    "finish",
    ["sent", "failed", "exhausted", "expired", "skipped", "unknown"],
)
def test_terminal_deliveries_are_never_claimed(ledger: Ledger, finish: str) -> None:
    d = due()
    if finish in ("expired", "skipped"):
        record = ledger.record_expired if finish == "expired" else ledger.record_skipped
        assert record(d, reason="late", now=T0)
    else:
        c = claim(ledger, d, T0, idem=False)
        assert ledger.begin_send(c, T0)
        if finish == "sent":
            ledger.record_sent(c, remote_id=None, url=None, now=T0)
        elif finish == "failed":
            ledger.record_failed(c, error="HTTP 401", now=T0)
        elif finish == "exhausted":
            s = ledger.record_transient(c, error="503", retry_at=T0, max_attempts=1, now=T0)
            assert s is State.FAILED
        else:
            assert ledger.claim(d, worker="w2", now=at(6), lease=LEASE, idempotent=False) is None
    state = ledger.get(d.id).state  # type: ignore[union-attr]
    assert state.value == {"exhausted": "failed"}.get(finish, finish)
    before = ledger.attempts(d.id)
    for idem in (False, True):
        assert ledger.claim(d, worker="w9", now=at(10_000), lease=LEASE, idempotent=idem) is None
        assert (
            ledger.claim_many([d], worker="w9", now=at(10_000), lease=LEASE, idempotent=idem) == []
        )
    assert ledger.attempts(d.id) == before


# ---- after a claim ----------------------------------------------------------------------------


def test_begin_send_needs_a_live_lease_and_extend_renews_it(ledger: Ledger) -> None:
    d = due()
    c = claim(ledger, d, T0)
    longer = ledger.extend(c, at(4), LEASE)
    assert longer is not None and longer.lease_until == at(9) and longer.token == c.token
    assert ledger.get(d.id).lease_until == at(9)  # type: ignore[union-attr]
    assert not ledger.begin_send(longer, at(9.5))  # ran out: the worker must not send
    # Nobody took it over yet, so the token still holds and a late renewal is fine.
    renewed = ledger.extend(longer, at(9.5), LEASE)
    assert renewed is not None
    assert ledger.begin_send(renewed, at(10))
    assert not ledger.begin_send(renewed, at(10))  # only once
    assert ledger.extend(renewed, at(11), LEASE) is not None  # renewing while sending is fine
    assert events(ledger, d.id) == ["claimed", "sending"]


def test_record_sent_many_records_each_and_reports_the_stale_one_without_losing_it(
    ledger: Ledger,
) -> None:
    ours = [claim(ledger, due(n), T0) for n in (1, 2, 3)]
    for c in ours:
        assert ledger.begin_send(c, T0)
    # Delivery 2's lease runs out and another worker takes it over before our record lands.
    taken = claim(ledger, due(2), at(6), worker="w2", idem=True)
    results = ledger.record_sent_many(
        [Sent(c, f"r-{n}", f"https://x/{n}", at(7)) for n, c in zip((1, 2, 3), ours, strict=True)]
    )
    assert results[0] is None and results[2] is None
    stale = results[1]
    assert isinstance(stale, StaleClaim) and stale.held_by == "w2"
    records = {n: ledger.get(due(n).id) for n in (1, 2, 3)}
    assert [(r.state, r.remote_id) for r in records.values() if r] == [
        (State.SENT, "r-1"),
        (State.CLAIMED, None),  # the new owner's now: its own send and record decide
        (State.SENT, "r-3"),
    ]
    assert events(ledger, due(2).id)[-1] == "stale"  # the late result is kept in the history
    assert ledger.begin_send(taken, at(7))
    assert ledger.record_sent_many([]) == []


def test_an_interrupted_send_is_resent_only_while_the_network_remembers_its_key(
    ledger: Ledger,
) -> None:
    hour = timedelta(hours=1)
    early, late = due(1), due(2)
    for d in (early, late):
        c = claim(ledger, d, T0, idem=True)
        assert ledger.begin_send(c, T0)
    assert ledger.first_send(early.id) == T0
    # Lease lost, 30 minutes later: Mastodon still remembers the key, so it is resent.
    again = ledger.claim(
        early, worker="w2", now=at(30), lease=LEASE, idempotent=True, key_window=hour
    )
    assert again is not None and again.attempt == 2
    # Two hours later the key is forgotten: a resend could post twice, so it is unknown.
    kw: dict[str, Any] = {"lease": LEASE, "idempotent": True, "key_window": hour}
    assert ledger.claim(late, worker="w2", now=at(120), **kw) is None
    record = ledger.get(late.id)
    assert record is not None and record.state is State.UNKNOWN
    assert "no longer remembers the idempotency key" in (ledger.attempts(late.id)[-1].error or "")
    # A person says it never went out: the window starts again with the next send.
    assert ledger.resolve(late.id, sent_url=None, now=at(121))
    c = claim(ledger, late, at(121), idem=True)
    assert ledger.begin_send(c, at(121))
    assert ledger.first_send(late.id) == at(121)
    retaken = ledger.claim(late, worker="w3", now=at(130), **kw)
    assert retaken is not None and retaken.attempt == c.attempt + 1
    # Without a window (a key kept for good, like Bluesky's record key) age does not matter.
    kept = due(3)
    assert ledger.begin_send(claim(ledger, kept, T0, idem=True), T0)
    (resent,) = ledger.claim_many([kept], worker="w4", now=at(10_000), lease=LEASE, idempotent=True)
    assert resent.attempt == 2


def test_a_retry_that_may_have_arrived_is_repeated_only_while_the_key_is_remembered(
    ledger: Ledger,
) -> None:
    kw: dict[str, Any] = {"lease": LEASE, "idempotent": True, "key_window": timedelta(hours=1)}
    unsure, timely, definite = due(1), due(2), due(3)
    for d, maybe_sent in ((unsure, True), (timely, True), (definite, False)):
        c = claim(ledger, d, T0, idem=True)
        assert ledger.begin_send(c, T0)
        state = ledger.record_transient(
            c, error="timed out", retry_at=at(5), max_attempts=5, now=at(1), maybe_sent=maybe_sent
        )
        assert state is State.PENDING
    assert events(ledger, unsure.id)[-1] == "retry-unsure"
    assert events(ledger, definite.id)[-1] == "retry"
    # The next run comes within Mastodon's hour: repeated with the same key.
    again = ledger.claim(timely, worker="w2", now=at(30), **kw)
    assert again is not None and again.attempt == 2
    # The next run comes two hours later: it may have arrived and the key is forgotten.
    assert ledger.claim(unsure, worker="w2", now=at(120), **kw) is None
    record = ledger.get(unsure.id)
    assert record is not None and record.state is State.UNKNOWN
    assert "no longer remembers its idempotency key" in (record.last_error or "")
    # A failure that cannot have arrived (an HTTP 503) is retried however late.
    late = ledger.claim(definite, worker="w2", now=at(120), **kw)
    assert late is not None and late.attempt == 2


def test_a_send_that_may_have_arrived_is_repeated_only_under_the_same_scope(
    ledger: Ledger,
) -> None:
    # Matrix keeps transaction ids per device: a resend from another device is a new message.
    old, new = "device OLD of @bot:example.org", "device NEW of @bot:example.org"
    kw: dict[str, Any] = {"lease": LEASE, "idempotent": True, "key_window": timedelta(hours=1)}
    same, moved, unsure, blind, fresh = due(1), due(2), due(3), due(4), due(5)
    for d in (same, moved, unsure, blind):
        c = ledger.claim(d, worker="w1", now=T0, scope=old, **kw)
        assert c is not None and ledger.begin_send(c, T0, scope=old)
    c = ledger.claim(unsure, worker="w1", now=T0, scope=old, **kw)  # lease still live
    assert c is None
    # Interrupted (lease lost), resumed under the same scope: resent with the same key.
    again = ledger.claim(same, worker="w2", now=at(10), scope=old, **kw)
    assert again is not None and again.attempt == 2
    # Resumed under another scope: unknown, and the reason names both.
    assert ledger.claim(moved, worker="w2", now=at(10), scope=new, **kw) is None
    record = ledger.get(moved.id)
    assert record is not None and record.state is State.UNKNOWN
    assert old in (record.last_error or "") and new in (record.last_error or "")
    assert "commcal resolve" in (record.last_error or "")
    # Resumed by a claimer that could not learn its scope: left alone for one that can.
    assert ledger.claim(blind, worker="w2", now=at(10), **kw) is None
    record = ledger.get(blind.id)
    assert record is not None and record.state is State.SENDING
    # A retry that may have arrived, due under another scope: unknown too.
    (c,) = ledger.claim_many([unsure], worker="w3", now=at(10), scope=old, **kw)
    assert ledger.begin_send(c, at(10), scope=old)
    ledger.record_transient(
        c, error="dropped", retry_at=at(11), max_attempts=5, now=at(10), maybe_sent=True
    )
    assert ledger.claim(unsure, worker="w4", now=at(12), scope=new, **kw) is None
    record = ledger.get(unsure.id)
    assert record is not None and record.state is State.UNKNOWN
    # A claim straight into SENDING records its scope; nothing sent yet is claimed anywhere.
    (c,) = ledger.claim_many([fresh], worker="w5", now=T0, sending=True, scope=new, **kw)
    assert c.sending
    resent = ledger.claim(fresh, worker="w6", now=at(10), scope=new, **kw)
    assert resent is not None and resent.attempt == 2


def test_record_sent_keeps_remote_id_and_url_and_is_safe_to_repeat(ledger: Ledger) -> None:
    d = due()
    c = claim(ledger, d, T0)
    with pytest.raises(StaleClaim):  # sending never began: recording "sent" is a bug
        ledger.record_sent(c, remote_id="1", url=None, now=T0)
    assert ledger.begin_send(c, T0)
    ledger.record_sent(c, remote_id="1", url="https://x/1", now=at(1))
    ledger.record_sent(c, remote_id="1", url="https://x/1", now=at(1))  # lost answer, retried
    rec = ledger.get(d.id)
    assert rec is not None
    assert (rec.state, rec.remote_id, rec.url, rec.lease_until, rec.updated_at) == (
        State.SENT,
        "1",
        "https://x/1",
        None,
        at(1),
    )
    assert events(ledger, d.id) == ["claimed", "stale", "sending", "sent"]


def test_transient_errors_retry_until_max_attempts_then_fail(ledger: Ledger) -> None:
    d = due()
    now = T0
    results = []
    for n in range(1, 4):
        c = claim(ledger, d, now)
        assert c.attempt == n
        assert ledger.begin_send(c, now)
        results.append(
            ledger.record_transient(
                c, error=f"503 #{n}", retry_at=now + timedelta(minutes=1), max_attempts=3, now=now
            )
        )
        now += timedelta(minutes=1)
    assert results == [State.PENDING, State.PENDING, State.FAILED]
    rec = ledger.get(d.id)
    assert rec is not None
    assert (rec.state, rec.attempts, rec.last_error, rec.next_attempt_at) == (
        State.FAILED,
        3,
        "503 #3",
        None,
    )
    assert events(ledger, d.id) == ["claimed", "sending", "retry"] * 2 + [
        "claimed",
        "sending",
        "failed",
    ]


def test_release_puts_a_claim_back_due_now(ledger: Ledger) -> None:
    d = due()
    c = claim(ledger, d, T0)
    assert ledger.release(c, at(1))
    assert not ledger.release(c, at(1))
    rec = ledger.get(d.id)
    assert rec is not None and (rec.state, rec.next_attempt_at) == (State.PENDING, at(1))
    again = claim(ledger, d, at(1), worker="w2")
    assert again.attempt == 1  # the released claim did not use up an attempt
    assert ledger.begin_send(again, at(1))
    assert not ledger.release(again, at(1))  # sending has begun: too late to hand it back


def test_retry_moves_failed_back_to_pending_with_a_fresh_count(ledger: Ledger) -> None:
    d = due()
    assert not ledger.retry(d.id, T0)  # unknown id
    c = claim(ledger, d, T0)
    assert not ledger.retry(d.id, T0)  # not failed
    ledger.record_failed(c, error="HTTP 400", now=T0)
    assert ledger.retry(d.id, at(1))
    assert not ledger.retry(d.id, at(1))
    rec = ledger.get(d.id)
    assert rec is not None
    assert (rec.state, rec.attempts, rec.next_attempt_at) == (State.PENDING, 0, at(1))
    assert claim(ledger, d, at(1)).attempt == 1
    assert events(ledger, d.id) == ["claimed", "failed", "retry-requested", "claimed"]


def _unknown(ledger: Ledger, d: DueDelivery) -> None:
    c = claim(ledger, d, T0)
    assert ledger.begin_send(c, T0)
    assert ledger.claim(d, worker="w2", now=at(6), lease=LEASE, idempotent=False) is None


def test_resolve_as_sent_records_the_url(ledger: Ledger) -> None:
    d = due()
    assert not ledger.resolve(d.id, sent_url="https://x/1", now=T0)
    _unknown(ledger, d)
    assert ledger.resolve(d.id, sent_url="https://x/1", now=at(30))
    assert not ledger.resolve(d.id, sent_url="https://x/1", now=at(30))
    rec = ledger.get(d.id)
    assert rec is not None and (rec.state, rec.url) == (State.SENT, "https://x/1")
    assert ledger.attempts(d.id)[-1].event == "resolved"


def test_resolve_as_not_sent_makes_it_due_again(ledger: Ledger) -> None:
    d = due()
    _unknown(ledger, d)
    assert ledger.resolve(d.id, sent_url=None, now=at(30))
    rec = ledger.get(d.id)
    assert rec is not None and (rec.state, rec.next_attempt_at) == (State.PENDING, at(30))
    assert claim(ledger, d, at(30), worker="w3").attempt == 2


@pytest.mark.parametrize("state", [State.EXPIRED, State.SKIPPED])
def test_expired_and_skipped_are_recorded_once(ledger: Ledger, state: State) -> None:
    def record(d: DueDelivery, now: datetime) -> bool:
        fn = ledger.record_expired if state is State.EXPIRED else ledger.record_skipped
        return fn(d, reason=f"why {state}", now=now)

    fresh = due(1)
    assert record(fresh, T0)
    assert not record(fresh, at(1))
    rec = ledger.get(fresh.id)
    assert rec is not None
    assert (rec.state, rec.attempts, rec.last_error) == (state, 0, f"why {state}")
    assert events(ledger, fresh.id) == [state.value]

    pending = due(2)
    c = claim(ledger, pending, T0)
    assert not record(pending, T0)  # claimed: the claimant decides
    ledger.record_transient(c, error="503", retry_at=at(5), max_attempts=5, now=T0)
    assert record(pending, at(1))
    assert ledger.get(pending.id).state is state  # type: ignore[union-attr]

    done = due(3)
    c = claim(ledger, done, T0)
    assert ledger.begin_send(c, T0)
    ledger.record_sent(c, remote_id=None, url=None, now=T0)
    assert not record(done, at(1))
    assert ledger.get(done.id).state is State.SENT  # type: ignore[union-attr]


def test_history_is_complete_and_append_only(ledger: Ledger) -> None:
    d = due()
    c = claim(ledger, d, T0, worker="w1")
    assert ledger.begin_send(c, at(1))
    ledger.record_transient(c, error="503", retry_at=at(2), max_attempts=2, now=at(1))
    c = claim(ledger, d, at(2), worker="w2")
    assert ledger.begin_send(c, at(2))
    ledger.record_transient(c, error="504", retry_at=at(3), max_attempts=2, now=at(2))
    ledger.retry(d.id, at(3))
    c = claim(ledger, d, at(3), worker="w3")
    assert ledger.begin_send(c, at(3))
    ledger.record_sent(c, remote_id="77", url="https://x/77", now=at(4))
    history = ledger.attempts(d.id)
    assert [(a.event, a.worker, a.at, a.error, a.remote_id) for a in history] == [
        ("claimed", "w1", T0, None, None),
        ("sending", "w1", at(1), None, None),
        ("retry", "w1", at(1), "503", None),
        ("claimed", "w2", at(2), None, None),
        ("sending", "w2", at(2), None, None),
        ("failed", "w2", at(2), "504", None),
        ("retry-requested", "", at(3), None, None),
        ("claimed", "w3", at(3), None, None),
        ("sending", "w3", at(3), None, None),
        ("sent", "w3", at(4), "https://x/77", "77"),
    ]
    assert all(a.delivery_id == d.id for a in history)
    # Even the database refuses to rewrite history.
    for statement in ("UPDATE attempts SET event = 'sent'", "DELETE FROM attempts"):
        with pytest.raises(LedgerError, match="append-only"):
            ledger._transaction(  # type: ignore[attr-defined]
                lambda s=statement: ledger._execute(s),  # type: ignore[attr-defined]
                write=True,
            )
    assert ledger.attempts(d.id) == history


# ---- batches ----------------------------------------------------------------------------------


def test_claim_many_follows_the_same_rules_and_keeps_input_order(ledger: Ledger) -> None:
    live, sending_idem, sending_plain, done = due(1), due(2, channel="slack"), due(3), due(4)
    claim(ledger, live, at(4))
    for d in (sending_idem, sending_plain):
        c = claim(ledger, d, T0)
        assert ledger.begin_send(c, T0)
    c = claim(ledger, done, T0)
    ledger.record_failed(c, error="400", now=T0)
    news = [due(n) for n in (9, 7, 8)]
    batch = [news[0], live, sending_idem, news[1], sending_plain, done, news[2], news[0]]
    claims = ledger.claim_many(
        batch, worker="w2", now=at(6), lease=LEASE, idempotent=lambda ch: ch == "slack"
    )
    assert [c.delivery_id for c in claims] == [news[0].id, sending_idem.id, news[1].id, news[2].id]
    assert all(c.worker == "w2" and c.lease_until == at(11) for c in claims)
    assert ledger.get(sending_plain.id).state is State.UNKNOWN  # type: ignore[union-attr]
    assert ledger.get(live.id).claimed_by == "w1"  # type: ignore[union-attr]
    assert ledger.claim_many([], worker="w2", now=at(6), lease=LEASE, idempotent=True) == []


def test_claim_many_into_sending_is_for_idempotent_channels_only(ledger: Ledger) -> None:
    hook, plain = due(1, channel="hook"), due(2, channel="slack")
    claims = ledger.claim_many(
        [hook, plain],
        worker="w1",
        now=T0,
        lease=LEASE,
        idempotent=lambda channel: channel == "hook",
        sending=True,
    )
    by_id = {c.delivery_id: c for c in claims}
    # The idempotent one is SENDING at once (one durable commit for the batch) ...
    assert ledger.get(hook.id).state is State.SENDING  # type: ignore[union-attr]
    assert events(ledger, hook.id) == ["claimed", "sending"]
    assert by_id[hook.id].sending
    # ... the other keeps the durable mark before its own send.
    assert ledger.get(plain.id).state is State.CLAIMED  # type: ignore[union-attr]
    assert not by_id[plain.id].sending
    assert ledger.begin_send(by_id[hook.id], at(1))
    assert events(ledger, hook.id) == ["claimed", "sending"]  # nothing more written
    ledger.record_sent(by_id[hook.id], remote_id="r1", url=None, now=at(1))
    assert ledger.get(hook.id).state is State.SENT  # type: ignore[union-attr]


def test_a_crash_after_claiming_into_sending_is_a_resend_with_the_same_key(
    ledger: Ledger,
) -> None:
    hook = due(1, channel="hook")
    (first,) = ledger.claim_many(
        [hook], worker="w1", now=T0, lease=LEASE, idempotent=True, sending=True
    )
    assert not ledger.begin_send(first, at(6)), "the lease ran out: do not send"
    again = ledger.claim(hook, worker="w2", now=at(6), lease=LEASE, idempotent=True)
    assert again is not None and again.attempt == first.attempt + 1
    with pytest.raises(StaleClaim):
        ledger.record_sent(first, remote_id="late", url=None, now=at(7))


def test_a_batch_claimed_into_sending_without_idempotency_is_unknown_after_a_crash(
    ledger: Ledger,
) -> None:
    """`sending_all`: an SMTP batch, claimed straight into SENDING in one transaction. A crash
    leaves the whole batch in doubt: each becomes UNKNOWN when its lease runs out, never sent
    again; a clean stop gives an unused claim back."""
    batch = [due(n, channel="mail") for n in range(5)]
    claims = ledger.claim_many(
        batch, worker="w1", now=T0, lease=LEASE, idempotent=False, sending_all=True
    )
    assert [c.delivery_id for c in claims] == [d.id for d in batch]
    assert all(c.sending for c in claims)
    assert {ledger.get(d.id).state for d in batch} == {State.SENDING}  # type: ignore[union-attr]
    assert events(ledger, batch[0].id) == ["claimed", "sending"]
    assert ledger.record_sent_many([Sent(claims[0], "m0", None, at(1))]) == [None]
    assert ledger.release(claims[1], at(1))  # never sent (a stop request): pending again
    # The worker dies; after the lease nobody sends the rest again.
    again = ledger.claim_many(
        batch, worker="w2", now=at(6), lease=LEASE, idempotent=False, sending_all=True
    )
    assert [c.delivery_id for c in again] == [batch[1].id]
    states = {d.id: ledger.get(d.id).state for d in batch}  # type: ignore[union-attr]
    assert [states[d.id] for d in batch] == [
        State.SENT,
        State.SENDING,
        State.UNKNOWN,
        State.UNKNOWN,
        State.UNKNOWN,
    ]
    found = ledger.get_many([d.id for d in batch] + ["not-there"])
    assert sorted(found) == sorted(d.id for d in batch)
    assert found[batch[0].id].state is State.SENT
    assert ledger.get_many([]) == {}


def test_claim_many_handles_thousands(ledger: Ledger) -> None:
    ds = [due(n) for n in range(1_200)]
    claims = ledger.claim_many(ds, worker="w1", now=T0, lease=LEASE, idempotent=False)
    assert len(claims) == 1_200
    assert ledger.claim_many(ds, worker="w2", now=T0, lease=LEASE, idempotent=False) == []
    assert ledger.counts()[State.CLAIMED] == 1_200


# ---- reading ----------------------------------------------------------------------------------


def test_records_and_counts_filter_and_sort(ledger: Ledger) -> None:
    plan = [
        due(1, calendar="news", channel="slack", due_at=at(0)),
        due(2, calendar="news", channel="mastodon", due_at=at(10)),
        due(3, calendar="blog", channel="slack", due_at=at(20), item="post"),
        due(4, calendar="blog", channel="slack", due_at=at(30), item="post"),
    ]
    c1 = claim(ledger, plan[0], T0)
    ledger.record_failed(c1, error="x", now=T0)
    claim(ledger, plan[1], T0)
    ledger.record_expired(plan[2], reason="late", now=T0)
    ledger.record_skipped(plan[3], reason="draft", now=T0)

    def ids(**kw: Any) -> list[str]:
        return [r.id for r in ledger.records(**kw)]

    assert ids() == [plan[3].id, plan[2].id, plan[1].id, plan[0].id]
    assert ids(limit=2) == [plan[3].id, plan[2].id]
    assert ids(calendar="blog") == [plan[3].id, plan[2].id]
    assert ids(channel="slack", states=[State.FAILED, State.SKIPPED]) == [plan[3].id, plan[0].id]
    assert ids(item="post", states=[State.EXPIRED]) == [plan[2].id]
    assert ids(due_from=at(10), due_to=at(30)) == [plan[2].id, plan[1].id]
    assert ids(states=[]) == []
    counts = ledger.counts()
    assert set(counts) == set(State)
    assert {s: n for s, n in counts.items() if n} == {
        State.FAILED: 1,
        State.CLAIMED: 1,
        State.EXPIRED: 1,
        State.SKIPPED: 1,
    }
    assert ledger.counts(calendar="news", due_to=at(5))[State.FAILED] == 1
    assert sum(ledger.counts(channel="mastodon").values()) == 1


def test_find_by_prefix(ledger: Ledger) -> None:
    for i, name in enumerate(["a1b2c3d4e5", "a1b2c3ff00", "A1B2C3d4e5", "9f%_x_ab"]):
        ledger.record_skipped(due(i, id=name), reason="x", now=T0)
    assert [r.id for r in ledger.find("a1b2c3")] == ["a1b2c3d4e5", "a1b2c3ff00"]
    assert [r.id for r in ledger.find("a1b2c3d")] == ["a1b2c3d4e5"]
    assert [r.id for r in ledger.find("9f%_x_")] == ["9f%_x_ab"]
    assert ledger.find("ffffff") == []
    assert ledger.find("a1b2c3d4e5")[0].state is State.SKIPPED
    with pytest.raises(ConfigError, match="at least 6"):
        ledger.find("a1b2c")


def test_workers_and_what_they_hold(ledger: Ledger) -> None:
    ledger.heartbeat("w1", T0, host="alpha", pid=11, info="publish")
    ledger.heartbeat("w2", T0, host="beta", pid=22)
    claim(ledger, due(1), T0, worker="w1")
    c = claim(ledger, due(2), T0, worker="w1")
    assert ledger.begin_send(c, T0)
    done = claim(ledger, due(3), T0, worker="w1")
    ledger.record_failed(done, error="x", now=T0)
    ledger.heartbeat("w1", at(1), host="alpha", pid=12, info="run")
    workers = {w.name: w for w in ledger.workers(at(2))}
    assert set(workers) == {"w1", "w2"}
    w1 = workers["w1"]
    assert (w1.host, w1.pid, w1.last_seen, w1.info, w1.holding) == ("alpha", 12, at(1), "run", 2)
    assert workers["w2"].holding == 0
    assert [w.holding for w in ledger.workers(at(6))] == [0, 0]  # leases ran out


def test_naive_times_are_refused(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="aware"):
        ledger.claim(due(), worker="w", now=datetime(2026, 1, 1), lease=LEASE, idempotent=False)
    with pytest.raises(ValueError, match="aware"):
        ledger.record_skipped(due(due_at=datetime(2026, 1, 1)), reason="x", now=T0)


def test_other_zones_come_back_as_utc(ledger: Ledger) -> None:
    from zoneinfo import ZoneInfo

    athens = datetime(2026, 11, 25, 11, 0, tzinfo=ZoneInfo("Europe/Athens"))
    ledger.record_skipped(due(due_at=athens), reason="x", now=athens)
    rec = ledger.get(due().id)
    assert rec is not None and rec.due_at == T0 and rec.due_at.utcoffset() == timedelta(0)
    assert rec.due_at.tzinfo is UTC or str(rec.due_at.tzinfo) == "UTC"


# ---- opening and migrations -------------------------------------------------------------------


def test_opening_twice_migrates_once(ledger_url: str) -> None:
    first = open_ledger(ledger_url)
    second = open_ledger(ledger_url)
    try:
        latest = len(SQLITE_MIGRATIONS)
        assert first.schema_version() == second.schema_version() == latest  # type: ignore[attr-defined]
        first.record_skipped(due(), reason="x", now=T0)
        assert second.get(due().id) is not None
    finally:
        first.close()
        second.close()


def test_a_ledger_from_a_newer_commcal_is_refused(ledger_url: str) -> None:
    ledger = open_ledger(ledger_url)
    ledger._transaction(  # type: ignore[attr-defined]
        lambda: ledger._execute(  # type: ignore[attr-defined]
            "INSERT INTO commcal_schema (version, applied_at) VALUES (?, ?)", (99, "future")
        ),
        write=True,
    )
    ledger.close()
    with pytest.raises(LedgerError, match=r"schema version 99.*upgrade commcal"):
        open_ledger(ledger_url)


def test_sqlite_relative_path_is_under_the_project(tmp_path: Path) -> None:
    ledger = open_ledger("sqlite:///state/deep/ledger.db", project_dir=tmp_path)
    ledger.close()
    assert (tmp_path / "state" / "deep" / "ledger.db").is_file()
    absolute = tmp_path / "abs" / "l.db"
    open_ledger(f"sqlite:///{absolute}", project_dir=tmp_path / "elsewhere").close()
    assert absolute.is_file() and not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize(
    "url", ["mysql://u:secret@h/db", "sqlite://relative.db", "ledger.db", "sqlite:///"]
)
def test_unsupported_urls_name_the_accepted_forms(url: str) -> None:
    with pytest.raises(LedgerError) as err:
        open_ledger(url)
    assert "sqlite:///" in str(err.value) and "postgresql://" in str(err.value)
    assert "secret" not in str(err.value)


def test_unreachable_postgres_is_a_ledger_error_without_the_password() -> None:
    with pytest.raises(LedgerError, match="cannot reach") as err:
        open_ledger("postgresql://u:hunter2@127.0.0.1:1/db")
    assert "hunter2" not in str(err.value)


def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "ledger.db"
    bad.write_text("this is not sqlite, but it is long enough to be read as a header " * 10)
    with pytest.raises(LedgerError, match="ledger"):
        open_ledger(f"sqlite:///{bad}")


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_importing_the_package_is_cheap() -> None:
    out = _python(
        "import sys, commcal.ledger; "
        "print(sorted(m for m in sys.modules if m.startswith(('psycopg', 'sqlite3', "
        "'commcal.ledger.'))))"
    )
    assert out.returncode == 0, out.stderr
    # No backend, no sqlite3, no psycopg: only the pure modules the split of base.py made
    # (and the change and engagement stores, pure like the audience store).
    assert out.stdout.strip() == (
        "['commcal.ledger.changes', 'commcal.ledger.db', 'commcal.ledger.engagement', "
        "'commcal.ledger.members', 'commcal.ledger.model', 'commcal.ledger.pulls', "
        "'commcal.ledger.sql', 'commcal.ledger.tracking']"
    )


def test_missing_psycopg_says_how_to_install_it() -> None:
    out = _python(
        "import sys; sys.modules['psycopg'] = None\n"
        "from commcal.ledger import open_ledger\n"
        "from commcal.errors import LedgerError\n"
        "try:\n"
        "    open_ledger('postgresql://postgres@127.0.0.1/test')\n"
        "except LedgerError as e:\n"
        "    print(e)\n"
    )
    assert out.returncode == 0, out.stderr
    assert "pip install 'commcal[postgres]'" in out.stdout


# ---- real processes ---------------------------------------------------------------------------


def test_eight_processes_racing_send_each_delivery_exactly_once(ledger_url: str) -> None:
    count, workers = 300, 8
    open_ledger(ledger_url).close()  # migrated up front; racing migrations are tested below
    start_at = time.time() + 2.0  # past every worker's interpreter start-up
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(HELPER),
                "race",
                ledger_url,
                f"w{n}",
                str(count),
                str(start_at),
                "many" if n % 2 else "one",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(workers)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert "locked" not in err.lower() and "locked" not in out.lower()
        assert p.returncode == 0, err
    sent = [d for out, _ in outputs for d in json.loads(out)["sent"]]
    assert len(sent) == len(set(sent)) == count
    with open_ledger(ledger_url) as ledger:
        assert ledger.counts()[State.SENT] == count
        for rec in ledger.records():
            assert rec.state is State.SENT
            assert events(ledger, rec.id).count("sent") == 1
            assert rec.remote_id == rec.claimed_by  # recorded by the worker that claimed it


def test_sqlite_waits_out_a_long_write_lock_past_its_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3
    import threading

    import commcal.ledger.sqlite as backend

    monkeypatch.setattr(backend, "BUSY_TIMEOUT_S", 0.05)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = open_ledger(url)
    blocker = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN IMMEDIATE")  # another process holding the write lock for 0.5 s
    release = threading.Timer(0.5, lambda: blocker.execute("COMMIT"))
    release.start()
    started = time.monotonic()
    try:
        c = ledger.claim(due(), worker="w1", now=T0, lease=LEASE, idempotent=False)
    finally:
        release.join()
        blocker.close()
        ledger.close()
    assert c is not None
    assert time.monotonic() - started >= 0.4  # it waited (retrying) rather than failing


def test_sqlite_gives_up_on_a_lock_held_past_its_budget_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    import commcal.ledger.sqlite as backend

    monkeypatch.setattr(backend, "BUSY_TIMEOUT_S", 0.05)
    monkeypatch.setattr(backend, "BUSY_BUDGET_S", 0.3)
    ledger = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    blocker = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process that never lets go
    started = time.monotonic()
    try:
        with pytest.raises(LedgerError, match="stayed busy for 0 s: another process is holding"):
            ledger.claim(due(), worker="w1", now=T0, lease=LEASE, idempotent=False)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    waited = time.monotonic() - started
    assert 0.3 <= waited < 5  # it retried for its budget, then stopped
    assert ledger.get(due().id) is None  # nothing half-written
    ledger.close()


def test_processes_opening_a_new_ledger_at_once_migrate_it_once(ledger_url: str) -> None:
    code = (
        "import sys, time; from commcal.ledger import open_ledger\n"
        "time.sleep(max(0, float(sys.argv[2]) - time.time()))\n"
        "open_ledger(sys.argv[1]).close()\n"
    )
    start_at = str(time.time() + 1.5)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, ledger_url, start_at],
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    with open_ledger(ledger_url) as ledger:
        assert ledger.schema_version() == len(SQLITE_MIGRATIONS)  # type: ignore[attr-defined]


def test_a_worker_killed_mid_send_leaves_a_record_that_becomes_unknown(ledger_url: str) -> None:
    done = subprocess.run(
        [sys.executable, str(HELPER), "die-sending", ledger_url, "abcdef0001"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -9, done.stderr
    with open_ledger(ledger_url) as ledger:
        rec = ledger.get("abcdef0001")
        assert rec is not None and rec.state is State.SENDING and rec.claimed_by == "doomed"
        assert ledger.claim(due(1), worker="w2", now=at(6), lease=LEASE, idempotent=False) is None
        assert ledger.get("abcdef0001").state is State.UNKNOWN  # type: ignore[union-attr]


# ---- random interleavings ---------------------------------------------------------------------

# The state each event leaves a delivery in ("stale" changes nothing; "resolved" is either).
EVENT_STATE = {
    "claimed": State.CLAIMED,
    "sending": State.SENDING,
    "sent": State.SENT,
    "retry": State.PENDING,
    "failed": State.FAILED,
    "unknown": State.UNKNOWN,
    "released": State.PENDING,
    "retry-requested": State.PENDING,
    "expired": State.EXPIRED,
    "skipped": State.SKIPPED,
}
OPERATIONS = ["claim", "begin", "sent", "transient", "failed", "release", "extend"]
USER_OPS = ["expire", "retry", "resolve-sent", "resolve-not-sent"]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(
            # Workers act far more often than users do; weight the draw the same way.
            st.sampled_from(OPERATIONS * 3 + ["claim", "begin"] * 3 + USER_OPS),
            st.integers(0, 1),  # which worker (and which of its claims)
            st.sampled_from([0, 0, 1, 6]),  # minutes that pass first (leases are 5 minutes)
        ),
        max_size=40,
    ),
    idempotent=st.booleans(),
)
# A worker dies mid-send and another comes along after the lease: always tried, both ways.
@example(
    steps=[("claim", 0, 0), ("begin", 0, 0), ("claim", 1, 6), ("begin", 1, 0)], idempotent=False
)
@example(steps=[("claim", 0, 0), ("begin", 0, 0), ("claim", 1, 6), ("sent", 0, 0)], idempotent=True)
def test_random_interleavings_never_send_twice(
    ledger: Ledger, steps: list[tuple[str, int, int]], idempotent: bool
) -> None:
    """Whatever workers and users do in whatever order, the history stays consistent.

    Checked after every step: the state is the one the last event says; at most one "sent";
    and, on a channel without idempotency keys, no second "sending" unless something in between
    said the first did not go out (a transient error, a user's retry or resolve).
    """
    d = due(id=uuid.uuid4().hex)  # examples share the ledger, so each uses its own delivery
    now = T0
    claims: dict[int, Claim] = {}
    for op, who, minutes in steps:
        now += timedelta(minutes=minutes)
        worker = f"w{who}"
        c = claims.get(who)
        try:
            if op == "claim":
                got = ledger.claim(d, worker=worker, now=now, lease=LEASE, idempotent=idempotent)
                if got is not None:
                    claims[who] = got
            elif op == "expire":
                ledger.record_expired(d, reason="late", now=now)
            elif op == "retry":
                # A delivery left `unknown` after its send may have gone out is not retried
                # without --force: the ledger refuses (MaybeSent), as `commcal retry` shows.
                with contextlib.suppress(MaybeSent):
                    ledger.retry(d.id, now)
            elif op.startswith("resolve"):
                url = "https://x/1" if op == "resolve-sent" else None
                ledger.resolve(d.id, sent_url=url, now=now)
            elif c is None:
                continue
            elif op == "begin":
                ledger.begin_send(c, now)
            elif op == "sent":
                ledger.record_sent(c, remote_id="r", url=None, now=now)
            elif op == "transient":
                ledger.record_transient(c, error="503", retry_at=now, max_attempts=3, now=now)
            elif op == "failed":
                ledger.record_failed(c, error="400", now=now)
            elif op == "release":
                ledger.release(c, now)
            elif op == "extend":
                renewed = ledger.extend(c, now, LEASE)
                if renewed is not None:
                    claims[who] = renewed
        except StaleClaim:
            pass
        _check_history(ledger, d.id, idempotent)


def _check_history(ledger: Ledger, delivery_id: str, idempotent: bool) -> None:
    rec = ledger.get(delivery_id)
    history = [a.event for a in ledger.attempts(delivery_id)]
    if rec is None:
        assert history == []
        return
    changes = [e for e in history if e != "stale"]
    assert changes, history
    last = changes[-1]
    expected = EVENT_STATE.get(last)
    if last == "resolved":
        assert rec.state in (State.SENT, State.PENDING)
    else:
        assert rec.state is expected, history
    assert history.count("sent") <= 1, history
    if not idempotent:
        since_send: list[str] | None = None
        for event in changes:
            if event == "sending":
                assert since_send is None or {"retry", "retry-requested", "resolved"} & set(
                    since_send
                ), history
                since_send = []
            elif since_send is not None:
                since_send.append(event)


# ---- the cron minute's one query ------------------------------------------------------------


def test_window_summary_counts_what_a_run_would_act_on(ledger: Ledger) -> None:
    """`window_summary`: pending rows since `pending_from`, claims and `unknown` in the fresh
    window are to act on; every row of the fresh window is counted, none read back."""
    fresh, late = at(60), at(-600)  # fresh window from at(0); pending look-back from at(-1000)

    def summary() -> tuple[int, int]:
        return ledger.window_summary(pending_from=at(-1000), fresh_from=at(0), due_to=at(120))

    assert summary() == (0, 0)
    for n in range(3):  # finished ones: sent, skipped, expired
        c = claim(ledger, due(n, due_at=fresh), at(61), idem=True)
        assert ledger.begin_send(c, at(61))
        ledger.record_sent(c, remote_id="r", url=None, now=at(61))
    ledger.record_skipped(due(3, due_at=fresh), reason="draft", now=at(61))
    ledger.record_expired(due(4, due_at=late), reason="late", now=at(61))
    assert summary() == (0, 4)
    held = claim(ledger, due(5, due_at=late), at(61))  # a late claim: a run leaves it alone
    assert summary() == (0, 4)
    ledger.release(held, at(62), retry_at=at(70), reason="not tried")  # late pending: expire it
    assert summary() == (1, 4)
    claim(ledger, due(6, due_at=fresh), at(62))  # a fresh claim: take over or report held
    assert summary() == (2, 5)
    ledger.record_skipped(due(7, due_at=at(130)), reason="draft", now=at(62))  # after due_to
    ledger.record_expired(due(8, due_at=at(-2000)), reason="late", now=at(62))  # before
    assert summary() == (2, 5)
