"""The one implementation of the ledger: the claim protocol (`base.ClaimLedger`) in SQL that
SQLite and PostgreSQL both run, plus the user's commands, the ledger's identity and workers.

Statements use `?` placeholders; PostgreSQL rewrites them. The audience part (suppressions,
codes, draws) is inherited from `members.AudienceStore`, the connection and the dialect's
hooks from `db.Database`; `sqlite.py` and `postgres.py` supply those hooks. The engagement
part (snapshots, replies, marks: `base.EngagementLedger`) is inherited from
`engagement.EngagementStore` the same way, and `pull`'s cursors from `pulls.PullStore` (a
subclass of it, so one `record_pull` transaction writes all three).

Why no abstract `Ledger` class any more: there is one implementation over two dialects, and the
dialects differ only below `db.Database`. An interface that every method's signature was
written into twice bought nothing; the claim protocol the publisher relies on is stated once,
in `base.ClaimLedger`, and `Ledger` (what `open_ledger` returns) is this class.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from commcal.errors import ConfigError
from commcal.ledger.changes import ChangeStore
from commcal.ledger.db import utc_text
from commcal.ledger.members import IN_CHUNK, AudienceStore, marks
from commcal.ledger.model import (
    CAUGHT_UP_PREFIX,
    CLEARED_EVENTS,
    INTERRUPTED_WHILE_SENDING,
    MAYBE_SENT_EVENTS,
    MIN_PREFIX,
    TOO_LATE_TO_REPEAT,
    UNSURE_FAILED,
    UNSURE_RETRY,
    Attempt,
    Claim,
    ClaimAction,
    DeliveryRecord,
    DueDelivery,
    LedgerMeta,
    MaybeSent,
    RecipientCount,
    Sent,
    StaleClaim,
    State,
    WorkerInfo,
    claim_action,
    moved_scope_reason,
    new_token,
    utc,
)
from commcal.ledger.pulls import PullStore
from commcal.ledger.tracking import TrackingStore

if TYPE_CHECKING:
    from commcal.ledger.base import ClaimLedger, PullLedger

_RECORD_COLUMNS = (
    "id, calendar, item, channel, recipient, due_at, state, attempts, next_attempt_at, "
    "last_error, remote_id, url, content_hash, claimed_by, lease_until, created_at, updated_at"
)

_CLAIM_CHUNK = 500  # deliveries per claim_many transaction: short enough not to starve others


class SqlLedger(AudienceStore, PullStore, ChangeStore, TrackingStore):
    """The state store. Times in and out are aware UTC datetimes.

    A Ledger object holds one database connection; it may be shared by threads (calls are
    serialised). A process may open several. The claim methods (`claim` ... `records`) are
    specified in `base.ClaimLedger`; the rest are documented here (retractions and
    amendments of sent posts in `changes.ChangeStore`).
    """

    # ---- helpers -----------------------------------------------------------------------

    def _log(
        self,
        delivery_id: str,
        now: datetime,
        worker: str,
        event: str,
        error: str | None = None,
        remote_id: str | None = None,
    ) -> None:
        self._execute(
            "INSERT INTO attempts (delivery_id, at, worker, event, error, remote_id) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (delivery_id, self._t(now), worker, event, error, remote_id),
        )

    def _record(self, row: Sequence[Any]) -> DeliveryRecord:
        return DeliveryRecord(
            id=row[0],
            calendar=row[1],
            item=row[2],
            channel=row[3],
            recipient=row[4],
            due_at=self._from_db(row[5]),
            state=State(row[6]),
            attempts=int(row[7]),
            next_attempt_at=self._opt_from_db(row[8]),
            last_error=row[9],
            remote_id=row[10],
            url=row[11],
            content_hash=row[12],
            claimed_by=row[13],
            lease_until=self._opt_from_db(row[14]),
            created_at=self._from_db(row[15]),
            updated_at=self._from_db(row[16]),
        )

    def _current(self, delivery_id: str) -> tuple[State | None, str | None]:
        rows = self._execute(
            "SELECT state, claimed_by FROM deliveries WHERE id = ?", (delivery_id,)
        )
        if not rows:
            return None, None
        return State(rows[0][0]), rows[0][1]

    def _stale(
        self, claim: Claim, now: datetime, event: str, note: str, remote_id: str | None
    ) -> StaleClaim:
        """Keep a late result in the history and build the error that tells the caller."""
        state, held_by = self._current(claim.delivery_id)
        self._log(
            claim.delivery_id,
            now,
            claim.worker,
            "stale",
            f"late {event} from a claim that is no longer current: {note}",
            remote_id,
        )
        return StaleClaim(claim, state, held_by)

    # ---- claiming ----------------------------------------------------------------------

    def _claim_in_tx(
        self,
        d: DueDelivery,
        worker: str,
        now: datetime,
        lease: timedelta,
        idempotent: bool,
        sending: bool = False,
        key_window: timedelta | None = None,
        scope: str | None = None,
    ) -> Claim | None:
        """Claim one delivery inside the caller's transaction. `sending` claims straight into
        SENDING, logging `claimed` and `sending` (and recording `scope`) as begin_send would
        (`claim_many` decides for which deliveries)."""
        claimed_state = State.SENDING if sending else State.CLAIMED
        token = new_token()
        now_db = self._t(now, "now")
        lease_until = utc(now) + lease
        lease_db = self._to_db(lease_until)
        inserted = self._execute(
            "INSERT INTO deliveries (id, calendar, item, channel, recipient, due_at, state, "
            "attempts, content_hash, claimed_by, claim_token, lease_until, created_at, updated_at, "
            "send_scope) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING "
            "RETURNING id",
            (
                d.id,
                d.calendar,
                d.item,
                d.channel,
                d.recipient,
                self._t(d.due_at, "due_at"),
                claimed_state.value,
                d.content_hash,
                worker,
                token,
                lease_db,
                now_db,
                now_db,
                scope if sending else None,
            ),
        )
        if inserted:
            self._log(d.id, now, worker, "claimed")
            if sending:
                self._log(d.id, now, worker, "sending")
            return Claim(d.id, worker, token, 1, lease_until, sending)

        rows = self._execute(
            "SELECT state, attempts, next_attempt_at, lease_until, claimed_by, send_scope "
            "FROM deliveries WHERE id = ?" + self._row_lock,
            (d.id,),
        )
        if not rows:  # PostgreSQL: another transaction holds the row right now
            return None
        state = State(rows[0][0])
        attempts = int(rows[0][1])
        previous = rows[0][4] or "?"
        sent_as: str | None = rows[0][5]
        key_expires = None
        moved = False  # the send that may have arrived was made under another scope
        checks = idempotent and (key_window is not None or sent_as is not None)
        if checks and self._may_have_arrived(d.id, state):
            if key_window is not None:
                first = self._first_send(d.id)
                key_expires = None if first is None else first + key_window
            if sent_as is not None and scope is None:
                return None  # cannot tell whether a resend would be recognised: wait
            moved = sent_as is not None and sent_as != scope
        action = claim_action(
            state,
            next_attempt_at=self._opt_from_db(rows[0][2]),
            lease_until=self._opt_from_db(rows[0][3]),
            idempotent=idempotent,
            now=utc(now),
            key_expires=key_expires,
            other_scope=moved,
        )
        if action is ClaimAction.NONE:
            return None
        if action is ClaimAction.MARK_UNKNOWN:
            reason = TOO_LATE_TO_REPEAT if state is State.PENDING else INTERRUPTED_WHILE_SENDING
            if moved and sent_as is not None and scope is not None:
                reason = moved_scope_reason(sent_as, scope)
            self._execute(
                "UPDATE deliveries SET state = ?, last_error = ?, lease_until = NULL, "
                "updated_at = ? WHERE id = ? AND state = ?",
                (State.UNKNOWN.value, reason, now_db, d.id, state.value),
            )
            if state is State.PENDING:
                why = "its last send may have arrived"
            else:
                why = f"{previous} stopped while sending; lease ran out"
            if moved:
                why += f"; not resent: it was sent as {sent_as}, this run sends as {scope}"
            elif idempotent:
                why += "; too late to resend: the network no longer remembers the idempotency key"
            self._log(d.id, now, worker, "unknown", why)
            return None
        note: str | None = None
        if action is ClaimAction.CLAIM_PENDING:
            attempts += 1
        elif action is ClaimAction.TAKE_OVER:
            note = f"took over from {previous}, whose lease ran out before sending"
        else:  # RESEND
            attempts += 1
            note = (
                f"took over from {previous}, which stopped while sending; "
                "resending with the same idempotency key"
            )
        # Into SENDING, the new send's scope replaces the last one's; a CLAIMED row keeps the
        # last one's until begin_send (a row that may have arrived is compared against it).
        self._execute(
            "UPDATE deliveries SET state = ?, attempts = ?, next_attempt_at = NULL, "
            "content_hash = ?, claimed_by = ?, claim_token = ?, lease_until = ?, updated_at = ?, "
            "send_scope = CASE WHEN ? THEN ? ELSE send_scope END "
            "WHERE id = ? AND state = ?",
            (
                claimed_state.value,
                attempts,
                d.content_hash,
                worker,
                token,
                lease_db,
                now_db,
                sending,
                scope,
                d.id,
                state.value,
            ),
        )
        self._log(d.id, now, worker, "claimed", note)
        if sending:
            self._log(d.id, now, worker, "sending")
        return Claim(d.id, worker, token, attempts, lease_until, sending)

    def claim(
        self,
        d: DueDelivery,
        *,
        worker: str,
        now: datetime,
        lease: timedelta,
        idempotent: bool,
        key_window: timedelta | None = None,
        scope: str | None = None,
    ) -> Claim | None:
        return self._transaction(
            lambda: self._claim_in_tx(
                d, worker, now, lease, idempotent, key_window=key_window, scope=scope
            ),
            write=True,
        )

    def first_send(self, delivery_id: str) -> datetime | None:
        return self._transaction(lambda: self._first_send(delivery_id), write=False)

    def _may_have_arrived(self, delivery_id: str, state: State) -> bool:
        """Whether an earlier send of this row may have reached the network: it is SENDING, or
        PENDING after a failure that may have arrived (the last event is `retry-unsure`)."""
        if state is State.SENDING:
            return True
        if state is not State.PENDING:
            return False
        rows = self._execute(
            "SELECT event FROM attempts WHERE delivery_id = ? ORDER BY seq DESC LIMIT 1",
            (delivery_id,),
        )
        return bool(rows) and rows[0][0] == UNSURE_RETRY

    def _first_send(self, delivery_id: str) -> datetime | None:
        rows = self._execute(
            "SELECT min(at) FROM attempts WHERE delivery_id = ? AND event = 'sending' AND seq > "
            "(SELECT coalesce(max(seq), 0) FROM attempts WHERE delivery_id = ? "
            "AND event IN ('retry-requested', 'resolved'))",
            (delivery_id, delivery_id),
        )
        return self._opt_from_db(rows[0][0]) if rows else None

    def claim_many(
        self,
        ds: Sequence[DueDelivery],
        *,
        worker: str,
        now: datetime,
        lease: timedelta,
        idempotent: Callable[[str], bool] | bool,
        sending: bool = False,
        key_window: timedelta | None = None,
        scope: str | None = None,
        sending_all: bool = False,
    ) -> list[Claim]:
        def is_idempotent(d: DueDelivery) -> bool:
            return idempotent(d.channel) if callable(idempotent) else idempotent

        def into_sending(d: DueDelivery) -> bool:
            return sending_all or (sending and is_idempotent(d))

        # Every worker visits rows in id order, so two batches can never wait on each other in
        # a cycle (PostgreSQL would otherwise report a deadlock between overlapping inserts).
        ordered = sorted({d.id: d for d in ds}.values(), key=lambda d: d.id)
        claims: dict[str, Claim] = {}
        for start in range(0, len(ordered), _CLAIM_CHUNK):
            chunk = ordered[start : start + _CLAIM_CHUNK]

            def claim_chunk(chunk: list[DueDelivery] = chunk) -> dict[str, Claim]:
                got: dict[str, Claim] = {}
                for d in chunk:
                    c = self._claim_in_tx(
                        d, worker, now, lease, is_idempotent(d), into_sending(d), key_window, scope
                    )
                    if c is not None:
                        got[d.id] = c
                return got

            claims.update(self._transaction(claim_chunk, write=True))
        seen: set[str] = set()
        result: list[Claim] = []
        for d in ds:
            if d.id in claims and d.id not in seen:
                seen.add(d.id)
                result.append(claims[d.id])
        return result

    # ---- after a claim -----------------------------------------------------------------

    def begin_send(self, claim: Claim, now: datetime, *, scope: str | None = None) -> bool:
        if claim.sending:
            # Marked SENDING durably in the claim's own transaction. Only this token's holder
            # moves lease_until (claim_many, extend), so our copy is the database's; a take-over
            # needs lease_until < now, and so does this refusal.
            return claim.lease_until >= utc(now, "now")

        def tx() -> bool:
            rows = self._execute(
                "UPDATE deliveries SET state = ?, updated_at = ?, send_scope = ? WHERE id = ? "
                "AND claim_token = ? AND state = ? AND lease_until >= ? RETURNING id",
                (
                    State.SENDING.value,
                    self._t(now, "now"),
                    scope,
                    claim.delivery_id,
                    claim.token,
                    State.CLAIMED.value,
                    self._t(now),
                ),
            )
            if rows:
                self._log(claim.delivery_id, now, claim.worker, "sending")
            return bool(rows)

        return self._transaction(tx, write=True)

    def record_upload(
        self, claim: Claim, *, position: int, digest: str, ref: str, now: datetime
    ) -> bool:
        def tx() -> bool:
            current = self._execute(
                "SELECT 1 FROM deliveries WHERE id = ? AND claim_token = ? AND state IN (?, ?) "
                "AND lease_until >= ?",
                (
                    claim.delivery_id,
                    claim.token,
                    State.CLAIMED.value,
                    State.SENDING.value,
                    self._t(now, "now"),
                ),
            )
            if not current:
                return False
            self._execute(
                "INSERT INTO media_uploads (delivery_id, position, digest, ref, uploaded_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (claim.delivery_id, position, digest, ref, self._t(now)),
            )
            return True

        # Not flushed to disk by itself (durable=False): a killed process keeps it, and the next
        # durable commit (begin_send, record_sent) flushes it with its own. Lost to a power cut
        # before that, the file is uploaded again: the claim rules decide the post, as always.
        return self._transaction(tx, write=True, durable=False)

    def uploads(self, delivery_id: str) -> dict[int, tuple[str, str]]:
        return self.uploads_many([delivery_id]).get(delivery_id, {})

    def uploads_many(self, delivery_ids: Iterable[str]) -> dict[str, dict[int, tuple[str, str]]]:
        """`uploads` of several deliveries in a few queries: by delivery id, those that have
        any (a batch's, read once after its claim)."""
        rows = self._rows_in(
            "SELECT delivery_id, position, digest, ref FROM media_uploads WHERE delivery_id",
            delivery_ids,
            "ORDER BY seq",
        )
        found: dict[str, dict[int, tuple[str, str]]] = {}
        for delivery_id, position, digest, ref in rows:
            found.setdefault(delivery_id, {})[int(position)] = (digest, ref)  # the latest wins
        return found

    def extend(self, claim: Claim, now: datetime, lease: timedelta) -> Claim | None:
        # A lease that ran out may still be renewed while nobody has taken it over: a take-over
        # changes the token, and that is what we check, atomically.
        lease_until = utc(now, "now") + lease

        def tx() -> bool:
            rows = self._execute(
                "UPDATE deliveries SET lease_until = ?, updated_at = ? WHERE id = ? "
                "AND claim_token = ? AND state IN (?, ?) RETURNING id",
                (
                    self._to_db(lease_until),
                    self._t(now),
                    claim.delivery_id,
                    claim.token,
                    State.CLAIMED.value,
                    State.SENDING.value,
                ),
            )
            return bool(rows)

        if not self._transaction(tx, write=True):
            return None
        return replace(claim, lease_until=lease_until)

    def record_sent(
        self,
        claim: Claim,
        *,
        remote_id: str | None,
        url: str | None,
        now: datetime,
        note: str = "",
    ) -> None:
        stale = self._transaction(
            lambda: self._sent_in_tx(claim, remote_id, url, now, note), write=True
        )
        if stale is not None:
            raise stale

    def record_sent_many(self, sent: Sequence[Sent]) -> list[StaleClaim | None]:
        if not sent:
            return []
        return self._transaction(
            lambda: [self._sent_in_tx(s.claim, s.remote_id, s.url, s.now, s.note) for s in sent],
            write=True,
        )

    def _sent_in_tx(
        self, claim: Claim, remote_id: str | None, url: str | None, now: datetime, note: str = ""
    ) -> StaleClaim | None:
        rows = self._execute(
            "UPDATE deliveries SET state = ?, remote_id = ?, url = ?, last_error = NULL, "
            "lease_until = NULL, updated_at = ? WHERE id = ? AND claim_token = ? AND state = ? "
            "RETURNING id",
            (
                State.SENT.value,
                remote_id,
                url,
                self._t(now, "now"),
                claim.delivery_id,
                claim.token,
                State.SENDING.value,
            ),
        )
        if rows:
            detail = f"{url} ({note})" if url and note else url or note or None
            self._log(claim.delivery_id, now, claim.worker, "sent", detail, remote_id)
            return None
        if self._already(claim, State.SENT):
            return None  # a repeated call after a commit whose answer was lost
        return self._stale(claim, now, "sent", f"url={url} remote_id={remote_id}", remote_id)

    def _already(self, claim: Claim, state: State) -> bool:
        rows = self._execute(
            "SELECT 1 FROM deliveries WHERE id = ? AND claim_token = ? AND state = ?",
            (claim.delivery_id, claim.token, state.value),
        )
        return bool(rows)

    def record_transient(
        self,
        claim: Claim,
        *,
        error: str,
        retry_at: datetime,
        max_attempts: int,
        now: datetime,
        maybe_sent: bool = False,
    ) -> State:
        retry_event = UNSURE_RETRY if maybe_sent else "retry"

        def tx() -> State | StaleClaim:
            rows = self._execute(
                "UPDATE deliveries SET state = CASE WHEN attempts >= ? THEN ? ELSE ? END, "
                "next_attempt_at = CASE WHEN attempts >= ? THEN NULL ELSE ? END, "
                "last_error = ?, lease_until = NULL, updated_at = ? "
                "WHERE id = ? AND claim_token = ? AND state IN (?, ?) RETURNING state",
                (
                    max_attempts,
                    State.FAILED.value,
                    State.PENDING.value,
                    max_attempts,
                    self._t(retry_at, "retry_at"),
                    error,
                    self._t(now, "now"),
                    claim.delivery_id,
                    claim.token,
                    State.CLAIMED.value,
                    State.SENDING.value,
                ),
            )
            if not rows:
                return self._stale(claim, now, "transient error", error, None)
            state = State(rows[0][0])
            self._log(
                claim.delivery_id,
                now,
                claim.worker,
                retry_event
                if state is State.PENDING
                else (UNSURE_FAILED if maybe_sent else "failed"),
                error,
            )
            return state

        result = self._transaction(tx, write=True)
        if isinstance(result, StaleClaim):
            raise result
        return result

    def record_failed(self, claim: Claim, *, error: str, now: datetime) -> None:
        def tx() -> StaleClaim | None:
            rows = self._execute(
                "UPDATE deliveries SET state = ?, last_error = ?, lease_until = NULL, "
                "updated_at = ? WHERE id = ? AND claim_token = ? AND state IN (?, ?) RETURNING id",
                (
                    State.FAILED.value,
                    error,
                    self._t(now, "now"),
                    claim.delivery_id,
                    claim.token,
                    State.CLAIMED.value,
                    State.SENDING.value,
                ),
            )
            if rows:
                self._log(claim.delivery_id, now, claim.worker, "failed", error)
                return None
            if self._already(claim, State.FAILED):
                return None
            return self._stale(claim, now, "failure", error, None)

        stale = self._transaction(tx, write=True)
        if stale is not None:
            raise stale

    def release(
        self, claim: Claim, now: datetime, *, retry_at: datetime | None = None, reason: str = ""
    ) -> bool:
        def tx() -> bool:
            now_db = self._t(now, "now")
            # Nothing was sent, so the attempt this claim counted is given back: clean
            # shutdowns (and sends not tried while the channel is down) must not use up
            # max_attempts.
            rows = self._execute(
                "UPDATE deliveries SET state = ?, next_attempt_at = ?, lease_until = NULL, "
                "attempts = ?, last_error = COALESCE(?, last_error), updated_at = ? "
                "WHERE id = ? AND claim_token = ? AND state = ? RETURNING id",
                (
                    State.PENDING.value,
                    now_db if retry_at is None else self._t(retry_at, "retry_at"),
                    max(0, claim.attempt - 1),
                    reason or None,
                    now_db,
                    claim.delivery_id,
                    claim.token,
                    # A claim made straight into SENDING that was never used is released the
                    # same way: the caller promises nothing was sent.
                    (State.SENDING if claim.sending else State.CLAIMED).value,
                ),
            )
            if rows:
                if reason:
                    self._log(claim.delivery_id, now, claim.worker, "deferred", reason)
                else:
                    self._log(claim.delivery_id, now, claim.worker, "released")
            return bool(rows)

        return self._transaction(tx, write=True)

    def _record_final(self, d: DueDelivery, state: State, reason: str, now: datetime) -> bool:
        def tx() -> bool:
            now_db = self._t(now, "now")
            inserted = self._execute(
                "INSERT INTO deliveries (id, calendar, item, channel, recipient, due_at, state, "
                "attempts, last_error, content_hash, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING "
                "RETURNING id",
                (
                    d.id,
                    d.calendar,
                    d.item,
                    d.channel,
                    d.recipient,
                    self._t(d.due_at, "due_at"),
                    state.value,
                    reason,
                    d.content_hash,
                    now_db,
                    now_db,
                ),
            )
            if not inserted:
                inserted = self._execute(
                    "UPDATE deliveries SET state = ?, last_error = ?, next_attempt_at = NULL, "
                    "updated_at = ? WHERE id = ? AND state = ? RETURNING id",
                    (state.value, reason, now_db, d.id, State.PENDING.value),
                )
            if inserted:
                self._log(d.id, now, "", state.value, reason)
            return bool(inserted)

        return self._transaction(tx, write=True)

    def record_expired(self, d: DueDelivery, *, reason: str, now: datetime) -> bool:
        return self._record_final(d, State.EXPIRED, reason, now)

    def record_skipped(self, d: DueDelivery, *, reason: str, now: datetime) -> bool:
        return self._record_final(d, State.SKIPPED, reason, now)

    # ---- the user's commands -----------------------------------------------------------

    def retry(self, delivery_id: str, now: datetime, *, force: bool = False) -> bool:
        """FAILED -> PENDING due now, attempts reset to 0. False if it was not FAILED.

        A delivery that may have been delivered (`may_have_been_sent`) is refused with
        `MaybeSent`, because a repeat after the network forgot its idempotency key posts twice;
        `force=True` retries it all the same (and an UNKNOWN one too), at the caller's risk.
        """

        def tx() -> bool:
            now_db = self._t(now, "now")
            state, _ = self._current(delivery_id)
            if state not in (State.FAILED, State.UNKNOWN):
                return False
            if not force and self._maybe_sent_in_tx(delivery_id, state):
                raise MaybeSent(delivery_id, state)
            rows = self._execute(
                "UPDATE deliveries SET state = ?, next_attempt_at = ?, attempts = 0, "
                "lease_until = NULL, updated_at = ? WHERE id = ? AND state = ? RETURNING id",
                (State.PENDING.value, now_db, now_db, delivery_id, state.value),
            )
            if rows:
                note = "forced: the earlier send may have arrived" if force else None
                self._log(delivery_id, now, "", "retry-requested", note)
            return bool(rows)

        return self._transaction(tx, write=True)

    def _maybe_sent_in_tx(self, delivery_id: str, state: State | None) -> bool:
        if state is State.UNKNOWN:
            return True
        rows = self._execute(
            "SELECT 1 FROM attempts WHERE delivery_id = ? AND event IN (?, ?, ?) AND seq > "
            "(SELECT coalesce(max(seq), 0) FROM attempts WHERE delivery_id = ? "
            "AND event IN (?, ?)) LIMIT 1",
            (delivery_id, *sorted(MAYBE_SENT_EVENTS), delivery_id, *CLEARED_EVENTS),
        )
        return bool(rows)

    def may_have_been_sent(self, delivery_id: str) -> bool:
        """Whether an earlier send of the delivery may have arrived and nobody has settled it
        since: it is UNKNOWN, or its history since the last `retry`/`resolve` by a person holds
        a send that timed out or was interrupted."""

        def tx() -> bool:
            state, _ = self._current(delivery_id)
            return state is not None and self._maybe_sent_in_tx(delivery_id, state)

        return self._transaction(tx, write=False)

    def resolve(self, delivery_id: str, *, sent_url: str | None, now: datetime) -> bool:
        """UNKNOWN or FAILED -> SENT (with `sent_url`), or, with None, -> PENDING due now (it
        did not go out). False if it was neither UNKNOWN nor FAILED.
        """

        def tx() -> bool:
            now_db = self._t(now, "now")
            if sent_url is not None:
                rows = self._execute(
                    "UPDATE deliveries SET state = ?, url = ?, last_error = NULL, "
                    "updated_at = ? WHERE id = ? AND state IN (?, ?) RETURNING id",
                    (
                        State.SENT.value,
                        sent_url,
                        now_db,
                        delivery_id,
                        State.UNKNOWN.value,
                        State.FAILED.value,
                    ),
                )
                note = f"confirmed sent: {sent_url}"
            else:
                rows = self._execute(
                    # A failed one gets a fresh count of attempts, as after `retry`.
                    "UPDATE deliveries SET state = ?, next_attempt_at = ?, "
                    "attempts = CASE WHEN state = ? THEN 0 ELSE attempts END, "
                    "updated_at = ? WHERE id = ? AND state IN (?, ?) RETURNING id",
                    (
                        State.PENDING.value,
                        now_db,
                        State.FAILED.value,
                        now_db,
                        delivery_id,
                        State.UNKNOWN.value,
                        State.FAILED.value,
                    ),
                )
                note = "confirmed not sent; will send again"
            if rows:
                self._log(delivery_id, now, "", "resolved", note)
            return bool(rows)

        return self._transaction(tx, write=True)

    # ---- the ledger's identity ---------------------------------------------------------

    def _meta_values(self) -> dict[str, str]:
        if not self._table_exists("ledger_meta"):  # read-only, on a ledger not yet migrated
            return {}
        return {r[0]: r[1] for r in self._execute("SELECT key, value FROM ledger_meta")}

    def meta(self) -> LedgerMeta:
        """The ledger's id, creation time, project and sweep mark."""
        values = self._transaction(self._meta_values, write=False)

        def instant(key: str) -> datetime | None:
            text = values.get(key)
            return datetime.fromisoformat(text).astimezone(UTC) if text else None

        return LedgerMeta(
            ledger_id=values.get("ledger_id", ""),
            created_at=instant("created_at"),
            project=values.get("project") or None,
            took_over_at=instant("took_over_at"),
            swept_through=instant("swept_through"),
        )

    def adopt_project(self, project: str) -> str:
        """The project this ledger belongs to: `project` if it had none yet (now recorded)."""
        if not project:
            raise ValueError("a project name is needed")

        def tx() -> str:
            self._execute(
                "INSERT INTO ledger_meta (key, value) VALUES ('project', ?) "
                "ON CONFLICT (key) DO NOTHING",
                (project,),
            )
            return str(self._execute("SELECT value FROM ledger_meta WHERE key = 'project'")[0][0])

        return self._transaction(tx, write=True)

    def take_over(self, at: datetime) -> bool:
        """Record that this ledger replaces an earlier one from `at` on: deliveries due before
        `at` may have been sent by that one. Only an empty ledger takes over (False otherwise,
        and nothing changes); a second call keeps the first instant."""
        when = utc_text(utc(at, "at"))

        def tx() -> bool:
            if self._execute("SELECT 1 FROM deliveries LIMIT 1"):
                return False
            self._execute(
                "INSERT INTO ledger_meta (key, value) VALUES ('took_over_at', ?) "
                "ON CONFLICT (key) DO NOTHING",
                (when,),
            )
            return True

        return self._transaction(tx, write=True)

    def mark_swept(self, through: datetime) -> None:
        """Every delivery due before `through` has a row now; the mark only moves forward."""
        # One conditional upsert: two runs committing at once never move the mark back (the
        # fixed-width text compares as the instants do).
        self._transaction(
            lambda: self._execute(
                "INSERT INTO ledger_meta (key, value) VALUES ('swept_through', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value "
                "WHERE ledger_meta.value < excluded.value",
                (utc_text(utc(through, "through")),),
            ),
            write=True,
        )

    def reopen_skipped(self, delivery_ids: Iterable[str], now: datetime) -> list[str]:
        """SKIPPED -> PENDING due now for those skipped because they came due before the
        ledger took over (`CAUGHT_UP_PREFIX`); the ids reopened."""
        wanted = sorted(set(delivery_ids))
        now_db = self._t(now, "now")

        def tx() -> list[str]:
            reopened: list[str] = []
            for start in range(0, len(wanted), IN_CHUNK):
                chunk = wanted[start : start + IN_CHUNK]
                rows = self._execute(
                    "UPDATE deliveries SET state = ?, next_attempt_at = ?, last_error = NULL, "
                    "updated_at = ? WHERE state = ? AND substr(last_error, 1, ?) = ? "
                    f"AND id IN ({marks(len(chunk))}) RETURNING id",
                    [
                        State.PENDING.value,
                        now_db,
                        now_db,
                        State.SKIPPED.value,
                        len(CAUGHT_UP_PREFIX),
                        CAUGHT_UP_PREFIX,
                        *chunk,
                    ],
                )
                for (delivery_id,) in rows:
                    self._log(delivery_id, now, "", "retry-requested", "publish --catch-up")
                    reopened.append(delivery_id)
            return reopened

        return self._transaction(tx, write=True)

    # ---- reading -----------------------------------------------------------------------

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        rows = self._transaction(
            lambda: self._execute(
                f"SELECT {_RECORD_COLUMNS} FROM deliveries WHERE id = ?", (delivery_id,)
            ),
            write=False,
        )
        return self._record(rows[0]) if rows else None

    def get_many(self, delivery_ids: Iterable[str]) -> dict[str, DeliveryRecord]:
        """The rows of those of `delivery_ids` that have one, by id, in a few queries."""
        rows = self._rows_in(f"SELECT {_RECORD_COLUMNS} FROM deliveries WHERE id", delivery_ids)
        found = (self._record(r) for r in rows)
        return {r.id: r for r in found}

    def _rows_in(self, select: str, values: Iterable[str], tail: str = "") -> list[Any]:
        """The rows of `select IN (values) tail` for every value, a chunk of values per query
        (IN_CHUNK: far below either backend's parameter limit), in one read transaction."""
        from commcal.ledger.members import IN_CHUNK, marks

        wanted = list(dict.fromkeys(values))

        def tx() -> list[Any]:
            rows: list[Any] = []
            for start in range(0, len(wanted), IN_CHUNK):
                chunk = wanted[start : start + IN_CHUNK]
                rows.extend(self._execute(f"{select} IN ({marks(len(chunk))}) {tail}", chunk))
            return rows

        return self._transaction(tx, write=False) if wanted else []

    def find(self, id_prefix: str) -> list[DeliveryRecord]:
        """Deliveries whose id starts with `id_prefix` (at least 6 characters, else ConfigError)."""
        if len(id_prefix) < MIN_PREFIX:
            raise ConfigError(
                f"delivery id {id_prefix!r} is too short: give at least {MIN_PREFIX} characters"
            )
        # substr, not LIKE: SQLite's LIKE ignores case, and ids may contain % or _.
        rows = self._transaction(
            lambda: self._execute(
                f"SELECT {_RECORD_COLUMNS} FROM deliveries WHERE substr(id, 1, ?) = ? ORDER BY id",
                (len(id_prefix), id_prefix),
            ),
            write=False,
        )
        return [self._record(r) for r in rows]

    def _where(
        self,
        states: Iterable[State] | None,
        calendar: str | None,
        item: str | None,
        channel: str | None,
        due_from: datetime | None,
        due_to: datetime | None,
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if states is not None:
            wanted = [State(s).value for s in states]
            if not wanted:
                clauses.append("1 = 0")
            else:
                clauses.append(f"state IN ({', '.join('?' for _ in wanted)})")
                params.extend(wanted)
        for column, value in (("calendar", calendar), ("item", item), ("channel", channel)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if due_from is not None:
            clauses.append("due_at >= ?")
            params.append(self._t(due_from, "due_from"))
        if due_to is not None:
            clauses.append("due_at < ?")
            params.append(self._t(due_to, "due_to"))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def records(
        self,
        *,
        states: Iterable[State] | None = None,
        calendar: str | None = None,
        item: str | None = None,
        channel: str | None = None,
        due_from: datetime | None = None,
        due_to: datetime | None = None,
        limit: int | None = None,
    ) -> list[DeliveryRecord]:
        where, params = self._where(states, calendar, item, channel, due_from, due_to)
        sql = f"SELECT {_RECORD_COLUMNS} FROM deliveries{where} ORDER BY due_at DESC, id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        rows = self._transaction(lambda: self._execute(sql, params), write=False)
        return [self._record(r) for r in rows]

    def window_summary(
        self, *, pending_from: datetime, fresh_from: datetime, due_to: datetime
    ) -> tuple[int, int]:
        """What a publish run would find in its window, counted in one query, no row read
        back (the cron minute's shortcut, commcal.cron_index): (to act on, rows in the fresh
        window). To act on: `pending` rows due in [pending_from, due_to) (to send, or to
        record `expired`), and `claimed`, `sending` or `unknown` rows due in
        [fresh_from, due_to) (to take over, or to report). When that is 0, every row of the
        fresh window [fresh_from, due_to) is finished: the second count is how many."""
        held = (State.CLAIMED.value, State.SENDING.value, State.UNKNOWN.value)
        fresh, to = self._t(fresh_from, "fresh_from"), self._t(due_to, "due_to")
        sql = (
            "SELECT (SELECT count(*) FROM deliveries WHERE state = ? AND due_at >= ? "
            "AND due_at < ?), (SELECT count(*) FROM deliveries WHERE state IN (?, ?, ?) "
            "AND due_at >= ? AND due_at < ?), (SELECT count(*) FROM deliveries "
            "WHERE due_at >= ? AND due_at < ?)"
        )
        params = [State.PENDING.value, self._t(pending_from, "pending_from"), to]
        params += [*held, fresh, to, fresh, to]
        ((pending, busy, rows),) = self._transaction(
            lambda: self._execute(sql, params), write=False
        )
        return int(pending) + int(busy), int(rows)

    def counts(
        self,
        *,
        states: Iterable[State] | None = None,
        calendar: str | None = None,
        item: str | None = None,
        channel: str | None = None,
        due_from: datetime | None = None,
        due_to: datetime | None = None,
    ) -> dict[State, int]:
        """How many deliveries are in each state (every State is a key, zero included)."""
        where, params = self._where(states, calendar, item, channel, due_from, due_to)
        rows = self._transaction(
            lambda: self._execute(
                f"SELECT state, count(*) FROM deliveries{where} GROUP BY state", params
            ),
            write=False,
        )
        result = dict.fromkeys(State, 0)
        for state, count in rows:
            result[State(state)] = int(count)
        return result

    def public_records(self, due_from: datetime, due_to: datetime) -> list[DeliveryRecord]:
        """Deliveries due in [due_from, due_to) that are not one member's mail (recipient ''),
        oldest first: what `plan --with-status` joins with the plan, row by row."""
        rows = self._transaction(
            lambda: self._execute(
                f"SELECT {_RECORD_COLUMNS} FROM deliveries WHERE recipient = '' "
                "AND due_at >= ? AND due_at < ? ORDER BY due_at, id",
                (self._t(due_from, "due_from"), self._t(due_to, "due_to")),
            ),
            write=False,
        )
        return [self._record(r) for r in rows]

    def recipient_counts(self, due_from: datetime, due_to: datetime) -> list[RecipientCount]:
        """Members' deliveries due in [due_from, due_to), counted per occurrence, channel and
        state, never read row by row (a newsletter has one row per member)."""
        rows = self._transaction(
            lambda: self._execute(
                "SELECT calendar, item, channel, due_at, state, count(*), max(last_error) "
                "FROM deliveries WHERE recipient <> '' AND due_at >= ? AND due_at < ? "
                "GROUP BY calendar, item, channel, due_at, state "
                "ORDER BY due_at, calendar, item, channel, state",
                (self._t(due_from, "due_from"), self._t(due_to, "due_to")),
            ),
            write=False,
        )
        return [
            RecipientCount(r[0], r[1], r[2], self._from_db(r[3]), State(r[4]), int(r[5]), r[6])
            for r in rows
        ]

    def attempts(self, delivery_id: str) -> list[Attempt]:
        """A delivery's history, oldest first."""
        rows = self._transaction(
            lambda: self._execute(
                "SELECT delivery_id, at, worker, event, error, remote_id FROM attempts "
                "WHERE delivery_id = ? ORDER BY seq",
                (delivery_id,),
            ),
            write=False,
        )
        return [Attempt(r[0], self._from_db(r[1]), r[2], r[3], r[4], r[5]) for r in rows]

    def abandoned(self, now: datetime) -> list[DeliveryRecord]:
        """CLAIMED or SENDING deliveries whose lease has run out: nobody is looking after them."""
        rows = self._transaction(
            lambda: self._execute(
                f"SELECT {_RECORD_COLUMNS} FROM deliveries WHERE state IN (?, ?) "
                "AND lease_until < ? ORDER BY due_at DESC, id",
                (State.CLAIMED.value, State.SENDING.value, self._t(now, "now")),
            ),
            write=False,
        )
        return [self._record(r) for r in rows]

    # ---- workers -----------------------------------------------------------------------

    def heartbeat(self, worker: str, now: datetime, *, host: str, pid: int, info: str = "") -> None:
        """Record that `worker` is alive."""
        self._transaction(
            lambda: self._execute(
                "INSERT INTO workers (name, host, pid, last_seen, info) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET host = excluded.host, pid = excluded.pid, "
                "last_seen = excluded.last_seen, info = excluded.info",
                (worker, host, pid, self._t(now, "now"), info),
            ),
            write=True,
        )

    def workers(self, now: datetime) -> list[WorkerInfo]:
        """Every worker that sent a heartbeat, by name, with its live holdings."""
        rows = self._transaction(
            lambda: self._execute(
                "SELECT w.name, w.host, w.pid, w.last_seen, w.info, "
                "(SELECT count(*) FROM deliveries d WHERE d.claimed_by = w.name "
                "AND d.state IN (?, ?) AND d.lease_until >= ?) "
                "FROM workers w ORDER BY w.name",
                (State.CLAIMED.value, State.SENDING.value, self._t(now, "now")),
            ),
            write=False,
        )
        return [
            WorkerInfo(r[0], r[1], int(r[2]), self._from_db(r[3]), r[4], int(r[5])) for r in rows
        ]


Ledger = SqlLedger  # what `open_ledger` returns: the one implementation


if TYPE_CHECKING:

    def _keeps_the_claim_protocol(ledger: SqlLedger) -> ClaimLedger:
        return ledger  # mypy checks here that SqlLedger has every ClaimLedger method

    def _keeps_the_engagement_protocol(ledger: SqlLedger) -> PullLedger:
        return ledger  # ... and every EngagementLedger and PullLedger method
