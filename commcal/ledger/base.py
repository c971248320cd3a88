"""The claim protocol: what the publisher relies on the ledger for, stated once.

The ledger is what makes "never twice" and "never silently dropped" true (DESIGN.md section 3).
A worker *claims* a delivery before doing anything with it, moves it to SENDING right before the
network call, and records the outcome right after:

    (no row) --claim--> CLAIMED --begin_send--> SENDING --record_sent--> SENT
                           |                       |--record_transient--> PENDING (retry) or FAILED
                           |--release--> PENDING   |--record_failed--> FAILED
    Between the claim and the post, a channel that uploads media first (`Channel.uploads_media`)
    records each file's reference (`record_upload`); a later claim of the same delivery reads
    them back (`uploads`) and posts with them. A channel that publishes from an object made
    beforehand (`Channel.prepares_post`: Instagram and Threads containers) records that
    object's id the same way, at position PREPARED, so every host sharing the ledger publishes
    the one container, or finds it published.
    a lease that runs out: CLAIMED is taken over; SENDING is resent (idempotent channel, the
    network still remembers the key) or becomes UNKNOWN (never re-sent automatically).
    record_expired / record_skipped: (no row) or PENDING --> EXPIRED / SKIPPED.

Each claim carries a random *token*; every later write names that token, so a worker whose claim
was taken over (its lease ran out) can no longer change the delivery: its writes are refused
with `StaleClaim` (see `model`). Who may claim what is decided by `model.claim_action`, once.
Every state change appends a row to the history (`attempts`), which is never updated or deleted.

`ClaimLedger` is a Protocol, not a base class: `sql.SqlLedger` is the one implementation (over
SQLite and PostgreSQL, which differ only in `db.Database`'s hooks), and it is checked against
this Protocol by mypy. Everything else a ledger does (the user's commands, its identity,
workers, the audience store) is documented where it is implemented, in `sql` and `members`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

# Kept importable from here for code written before the split into model/sql/members.
from commcal.ledger.model import (
    Claim,
    ClaimAction,
    DeliveryRecord,
    DueDelivery,
    Sent,
    StaleClaim,
    State,
    claim_action,
    live_workers,
    mask_address,
)

if TYPE_CHECKING:
    from commcal.engagement.model import Reply, Snapshot
    from commcal.engagement.pull import Cursor
    from commcal.ledger.engagement import Measured

__all__ = [
    "ClaimAction",
    "ClaimLedger",
    "EngagementLedger",
    "claim_action",
    "live_workers",
    "mask_address",
]


# The media_uploads position of a prepared post (`Channel.prepare`: a media container);
# files are at 0, 1, ...
PREPARED = -1


class ClaimLedger(Protocol):
    """The claim protocol. Times in and out are aware UTC datetimes."""

    def close(self) -> None:
        """Close the connection. Further calls fail."""

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
        """Claim one delivery atomically, or None if someone else has it or it is not due.

        No row: insert CLAIMED (attempts 1). PENDING due: CLAIMED, attempts + 1. CLAIMED with
        a lost lease: taken over. SENDING with a lost lease: taken over with attempts + 1 if
        `idempotent` (the adapter resends with the same idempotency key), else UNKNOWN and None.
        Anything else: None.

        `key_window`: how long the network remembers an idempotency key (None: for good). A
        SENDING row whose first send began longer ago than that is not resent but UNKNOWN:
        the network would no longer recognise the key, so a resend could post twice.

        `scope`: where the network keeps the claimer's idempotency keys, when they are not
        global (`Channel.idempotency_scope`, e.g. a Matrix device); None: global, or not known.
        A send that may have arrived (SENDING with a lost lease, or PENDING after a
        `retry-unsure`) and was begun under a recorded scope is resent only under the same one:
        under another it becomes UNKNOWN (the reason names both), and with `scope` None it is
        left as it is (not claimed) until a claimer that knows its scope comes.
        """

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
        """`claim` for many deliveries in few transactions; claims come back in input order.

        `idempotent` is a bool for all, or a function of the delivery's *channel* name;
        `key_window` and `scope` apply to all, as in `claim` (a claim into SENDING records
        `scope` as `begin_send` would).

        `sending=True` claims the deliveries of *idempotent* channels straight into SENDING (with
        `Claim.sending` set), saving the durable `begin_send` commit before each network call.
        Safe only because the channel dedupes by the delivery id: a crash between this commit
        and the send leaves SENDING rows whose lease runs out, and the next claim resends them
        with the same idempotency key (RESEND), exactly as after a crash during the send.
        Deliveries of non-idempotent channels are claimed CLAIMED as always: for them the
        `begin_send` mark is what turns an interrupted send into UNKNOWN instead of a repeat.

        `sending_all=True` claims every delivery straight into SENDING, those of non-idempotent
        channels too: for a caller that sends the whole batch at once (an SMTP pool) and records
        its outcomes in one transaction. A crash then leaves the batch SENDING, and each of its
        rows becomes UNKNOWN when its lease runs out (never re-sent): at most the batch is in
        doubt, never a second mail. Unused claims are given back with `release`.
        """

    def get_many(self, delivery_ids: Iterable[str]) -> dict[str, DeliveryRecord]:
        """The rows of those of `delivery_ids` that have one, by id (a batch of a newsletter's
        members: what is finished is not claimed again)."""

    def first_send(self, delivery_id: str) -> datetime | None:
        """When the delivery's current series of sends began (its first `sending` since a person
        last cleared it with `retry` or `resolve --not-sent`); None if it never began."""

    def begin_send(self, claim: Claim, now: datetime, *, scope: str | None = None) -> bool:
        """CLAIMED -> SENDING. False (do not send!) unless the claim is current, its lease live.

        `scope`: the adapter's idempotency scope, recorded with the send (see `claim`).
        A claim made straight into SENDING (`claim.sending`) is already marked (its scope with
        it): True while its lease (as last granted to us by `claim_many` or `extend`) is live,
        with no write.
        """

    def record_upload(
        self, claim: Claim, *, position: int, digest: str, ref: str, now: datetime
    ) -> bool:
        """Record the network's reference (`ref`) for the file at `position` of the claimed
        delivery's media, uploaded before its post, with the `digest` of what was uploaded
        (`commcal.media.digest`). Append-only: a re-upload adds a row, the latest one wins.
        `position` PREPARED records the post's prepared object (`Channel.prepare`).
        False (do not post!) unless the claim is current and its lease live."""

    def uploads(self, delivery_id: str) -> dict[int, tuple[str, str]]:
        """The latest recorded upload of each media position of a delivery: position ->
        (digest, ref). A send resumed after a crash posts with these instead of uploading
        the same files again."""

    def uploads_many(self, delivery_ids: Iterable[str]) -> dict[str, dict[int, tuple[str, str]]]:
        """`uploads` of several deliveries in a few queries, by delivery id: those with any."""

    def extend(self, claim: Claim, now: datetime, lease: timedelta) -> Claim | None:
        """Renew the lease to `now + lease`; None if the claim is no longer current."""

    def record_sent(
        self,
        claim: Claim,
        *,
        remote_id: str | None,
        url: str | None,
        now: datetime,
        note: str = "",
    ) -> None:
        """SENDING -> SENT (`note`, kept in the history: why the remote id is unknown).
        Raises `StaleClaim` if the claim is no longer current."""

    def record_sent_many(self, sent: Sequence[Sent]) -> list[StaleClaim | None]:
        """`record_sent` for several deliveries in one transaction (one durable commit).

        Returns, in input order, None for each recorded one and the `StaleClaim` for each whose
        claim was no longer current (its late result is kept in the history all the same).
        """

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
        """-> PENDING due at `retry_at`, or FAILED once attempts >= max_attempts. Returns which.

        `maybe_sent`: the failed send may have arrived (a timeout). It is kept in the history
        (event `retry-unsure`), so that a claim with a `key_window` repeats it only while the
        network still remembers the key.

        Raises `StaleClaim` if the claim is no longer current.
        """

    def record_failed(self, claim: Claim, *, error: str, now: datetime) -> None:
        """-> FAILED (permanent error). Raises `StaleClaim` if the claim is no longer current."""

    def release(
        self, claim: Claim, now: datetime, *, retry_at: datetime | None = None, reason: str = ""
    ) -> bool:
        """CLAIMED -> PENDING due now (clean shutdown before sending). False if not current.

        A claim made straight into SENDING (`claim.sending`) and never used is released from
        SENDING the same way; the caller promises that nothing was sent for it.

        The attempt the claim counted is given back: the next claim has the same attempt number.
        `retry_at` and `reason` (a channel found unreachable, so this one was not tried): due
        again at `retry_at`, with `reason` as its last error and in its history (`deferred`).
        """

    def record_expired(self, d: DueDelivery, *, reason: str, now: datetime) -> bool:
        """Insert EXPIRED if absent, or PENDING -> EXPIRED. True if anything changed."""

    def record_skipped(self, d: DueDelivery, *, reason: str, now: datetime) -> bool:
        """Insert SKIPPED if absent, or PENDING -> SKIPPED. True if anything changed."""

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        """One delivery by its full id."""

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
        """Deliveries matching every filter given, newest due first. due_from <= due_at < due_to."""


class EngagementLedger(Protocol):
    """What `pull` writes and `inbox`, `report`, `kb export` and `lint` read back: the objects
    of `commcal.engagement.model`. Implemented in `engagement.EngagementStore` (a part of every
    ledger). Times in and out are aware UTC datetimes.

    No e-mail address is stored: an author that looks like one is refused (ValueError), an
    address in a reply's text is masked (`m***@example.org`) before it is written.
    """

    def add_snapshots(self, snapshots: Sequence[Snapshot]) -> int:
        """Append the snapshots (append-only: none is ever overwritten); rows written.
        A status outside SNAPSHOT_STATES or a negative count: ValueError, nothing written."""

    def snapshots(
        self, *, since: datetime | None = None, delivery_ids: Iterable[str] | None = None
    ) -> Iterator[Snapshot]:
        """Snapshots taken at or after `since`, of those deliveries if given; oldest first."""

    def engagement_at(self, age: timedelta) -> list[Measured]:
        """Each delivery with a snapshot (and a ledger row): its engagement at `age` after its
        send, from its first `ok` snapshot taken that late (None: none yet). For `report`."""

    def add_replies(self, replies: Sequence[Reply]) -> int:
        """Keep the replies whose id is new (others ignored: the first row stays); rows written."""

    def replies(self, *, since: datetime | None = None) -> Iterator[Reply]:
        """Replies written at or after `since`; oldest first."""

    def mark_reply(self, reply_id: str, mark: str, *, now: datetime) -> None:
        """Append a person's mark (one of MARKS, else ValueError); unknown reply id: KeyError."""

    def reply_marks(self) -> dict[str, list[str]]:
        """Reply id -> its marks, oldest first."""


class PullLedger(EngagementLedger, Protocol):
    """What `commcal pull` writes (commcal/ledger/pulls.py): each post's cursor, with its
    snapshot and replies in one transaction, so a pull killed at any instant leaves every post
    wholly recorded or untouched."""

    def pull_cursors(self, delivery_ids: Iterable[str]) -> dict[str, Cursor]:
        """The cursors of those of `delivery_ids` pulled before (gone ones too), by id."""

    def record_pull(self, snapshot: Snapshot, replies: Sequence[Reply], cursor: Cursor) -> int:
        """Append `snapshot`, keep the new `replies`, set the post's `cursor`: one transaction.
        Returns how many replies were new."""
