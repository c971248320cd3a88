"""What the ledger stores: delivery states, records and the other values it hands out.

Plain values only (no database here): `State` and the events of a delivery's history, the
records (`DeliveryRecord`, `Attempt`, `WorkerInfo`, `LedgerMeta`, `Suppression`, `DrawRecord`),
what the publisher passes in (`DueDelivery`, `Sent`) and gets back (`Claim`), the ledger's
errors, the pure claim rules (`claim_action`), and recipient keys (`recipient_key`,
`mask_address`). `base` states the claim protocol over these; `sql` implements it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum

from commcal.errors import LedgerError


class State(StrEnum):
    """Where a delivery is. Stored as these strings in both backends."""

    PENDING = "pending"  # waiting for a retry at next_attempt_at
    CLAIMED = "claimed"  # a worker holds it (lease) and has not started sending
    SENDING = "sending"  # a worker has started the network call
    SENT = "sent"
    FAILED = "failed"
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # the sender died mid-send on a channel without idempotency keys
    SKIPPED = "skipped"


TERMINAL: frozenset[State] = frozenset(
    {State.SENT, State.FAILED, State.EXPIRED, State.UNKNOWN, State.SKIPPED}
)


HELD: frozenset[State] = frozenset({State.CLAIMED, State.SENDING})


INTERRUPTED_WHILE_SENDING = "interrupted while sending; check the channel and run `commcal resolve`"

TOO_LATE_TO_REPEAT = (
    "its last send may have arrived, and the network no longer remembers its idempotency key; "
    "check the channel and run `commcal resolve`"
)


def moved_scope_reason(before: str, now: str) -> str:
    """Why a send that may have arrived is not repeated under another idempotency scope."""
    return (
        f"its last send may have arrived, made as {before}; this run sends as {now}, which does "
        "not share its idempotency keys, so a resend could post twice; check the channel, then "
        "run `commcal resolve ID --sent URL` (it is there) or `--not-sent` (it is not)"
    )


# Events in the history (attempts.event): claimed, sending, sent, retry, retry-unsure, failed,
# failed-unsure, expired, unknown, skipped, resolved, released, deferred (not tried: its channel
# was unreachable in this run; due again later), retry-requested, stale. "stale" records a result
# reported by a worker after its claim had passed to another one: the state is not changed, but
# the evidence (say, the URL of a post that did go out) is kept for whoever resolves the delivery.

# The event of a transient failure whose send may have arrived (a timeout, a connection dropped
# after the request went out).
UNSURE_RETRY = "retry-unsure"

# The same failure when it used up the last attempt: the delivery is FAILED, but may be out.
UNSURE_FAILED = "failed-unsure"

# Events after which a delivery "may have been delivered", until a person clears it with
# `retry --force` (`retry-requested`) or `resolve` (`resolved`).
MAYBE_SENT_EVENTS = frozenset({UNSURE_RETRY, UNSURE_FAILED, "unknown"})

CLEARED_EVENTS = ("retry-requested", "resolved")

# Why a delivery due before its ledger took over from an earlier one was not sent; the text
# starts the same way always, so `publish --catch-up` finds these again (`reopen_skipped`).
CAUGHT_UP_PREFIX = "due before this ledger took over"

MIN_PREFIX = 6  # shortest id prefix `find` accepts: shorter ones match too much to be safe


@dataclass(frozen=True)
class DueDelivery:
    """A delivery the publisher wants to claim. `due_at` is aware UTC."""

    id: str
    calendar: str
    item: str
    channel: str
    due_at: datetime
    recipient: str = ""  # an opaque hashed key, never an address
    # Stored with the delivery (deliveries.content_hash) for a later "the content changed"
    # check; nothing fills it yet, so every row holds "" (the column stays: ledgers have it).
    content_hash: str = ""


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one delivery. `token` fences every later write."""

    delivery_id: str
    worker: str
    token: str
    attempt: int
    lease_until: datetime
    # Claimed straight into SENDING (`claim_many(..., sending=True)`, idempotent channels only):
    # no `begin_send` commit is needed before the network call.
    sending: bool = False


@dataclass(frozen=True)
class Sent:
    """One successful send to record (`Ledger.record_sent_many`)."""

    claim: Claim
    remote_id: str | None
    url: str | None
    now: datetime
    note: str = ""  # kept in the history: why the remote id is unknown (Receipt.note)


@dataclass(frozen=True)
class DeliveryRecord:
    """One delivery as stored."""

    id: str
    calendar: str
    item: str
    channel: str
    recipient: str
    due_at: datetime
    state: State
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    remote_id: str | None
    url: str | None
    content_hash: str
    claimed_by: str | None  # the last worker that claimed it
    lease_until: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Attempt:
    """One entry of a delivery's append-only history. `error` also carries notes."""

    delivery_id: str
    at: datetime
    worker: str
    event: str
    error: str | None
    remote_id: str | None


@dataclass(frozen=True)
class WorkerInfo:
    """A worker's last heartbeat and how many deliveries it holds under a live lease."""

    name: str
    host: str
    pid: int
    last_seen: datetime
    info: str
    holding: int


@dataclass(frozen=True)
class LedgerMeta:
    """Who a ledger is: its id, when it was created, which project it belongs to, and how far
    `publish` has swept it (see docs/deployment.md, "Guarantees and their limits").

    `took_over_at`: set when this ledger replaced an earlier one of its project (`publish
    --new-ledger`): deliveries due before it may have been sent by that earlier ledger.
    `swept_through`: every delivery due before this instant has a row (a final state, or one
    a worker is still working on). None for a ledger no unfiltered `publish` has swept yet.
    """

    ledger_id: str
    created_at: datetime | None
    project: str | None = None
    took_over_at: datetime | None = None
    swept_through: datetime | None = None


class MaybeSent(LedgerError):
    """`retry` refused: the delivery's last send may have arrived (see `Ledger.retry`)."""

    def __init__(self, delivery_id: str, state: State) -> None:
        self.delivery_id = delivery_id
        self.state = state
        super().__init__(
            f"delivery {delivery_id} may have been delivered already (its last send was "
            "interrupted or timed out after the request went out): a retry could post it twice"
        )


class LedgerMissing(LedgerError):
    """A command that must not create a ledger was pointed at one that does not exist."""


@dataclass(frozen=True)
class Suppression:
    """A member who must receive nothing more: unsubscribed, bounced, or removed by hand.

    `recipient_key` is the 16-hex-digit hash the audience uses, never an address. `note` is for
    people reading `commcal suppress --list`; it may hold a *masked* address (`mask_address`),
    never a full one (`suppress` refuses that).
    """

    recipient_key: str
    source: str  # "unsubscribe-link", "bounce", "cli", "import", ...
    note: str
    at: datetime


@dataclass(frozen=True)
class DrawRecord:
    """One recorded contest draw: enough to show it was fair and to repeat it.

    `winners` are entrant keys (`commcal.contest.entry_key`) in the order drawn, as the caller
    gave them; never addresses.
    """

    item: str
    at: datetime
    seed: str
    entries_sha256: str
    entries: int
    winners: tuple[str, ...]


# The name this record had before; `commcal.contest.Draw` is the draw's result (with the
# winners' addresses, which the ledger never holds), so the record is named for what it is.
Draw = DrawRecord


def live_workers(
    workers: Iterable[WorkerInfo], now: datetime, lease: timedelta, host: str
) -> list[WorkerInfo]:
    """The workers still alive, or still holding a live claim: a worker is gone when it said
    so (`stopped`), when its last heartbeat is older than a lease (a publish run lasts no
    longer without renewing: renewals need no heartbeat, but a live `run` beats every few
    seconds), or when it ran on this host and its process no longer exists."""
    import os

    def alive(w: WorkerInfo) -> bool:
        if w.info in ("stopped", "exited"):
            return False
        if utc(now) - w.last_seen > lease:
            return False
        if w.host == host:
            try:
                os.kill(w.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True  # another user's process: it exists
        return True

    return [w for w in workers if w.holding or alive(w)]


_RECIPIENT_KEY = re.compile(r"[0-9a-f]{16}")


# An address in a note: a local part with no "*" in it means the address was not masked.
FULL_ADDRESS = re.compile(r"(?<![\w.+*-])[\w.+-]+@[\w-]+(\.[\w-]+)+")


def recipient_key(value: str) -> str:
    """`value` as a recipient key (16 lower-case hex digits); anything else is a ValueError."""
    key = value.strip().lower()
    if not _RECIPIENT_KEY.fullmatch(key):
        raise ValueError(f"a recipient key is 16 hex digits, not {value!r}")
    return key


def mask_address(address: str) -> str:
    """`mary@example.org` -> `m***@example.org`: enough for a person to recognise, no more."""
    local, sep, domain = address.strip().rpartition("@")
    if not sep or not local:
        return "***"
    return f"{local[0]}***@{domain}"


class StaleClaim(LedgerError):
    """A write named a claim that is no longer the current one; nothing changed but the history.

    Raised by `record_sent`, `record_transient` and `record_failed` when the delivery has been
    taken over by another worker (or moved to UNKNOWN) since the claim was made. The caller
    must not retry or resend: the delivery belongs to someone else now. `begin_send` answers
    False, `extend` answers None and `release` answers False in the same situation instead of
    raising, because their callers have a natural "no" path.
    """

    def __init__(self, claim: Claim, state: State | None, held_by: str | None) -> None:
        self.claim = claim
        self.state = state
        self.held_by = held_by
        now_text = f"it is now {state}" if state else "it no longer exists"
        if held_by and held_by != claim.worker and state in HELD:
            now_text += f", held by {held_by}"
        super().__init__(
            f"delivery {claim.delivery_id}: the claim by {claim.worker} is no longer current "
            f"({now_text}); the result was kept in its history only"
        )


class ClaimAction(Enum):
    """What a claim attempt does to an existing row (see `claim_action`)."""

    NONE = "none"
    CLAIM_PENDING = "claim-pending"  # PENDING and due: attempts + 1
    TAKE_OVER = "take-over"  # CLAIMED, lease ran out before sending began
    RESEND = "resend"  # SENDING, lease ran out, channel is idempotent: attempts + 1
    MARK_UNKNOWN = "mark-unknown"  # SENDING, lease ran out, channel is not idempotent


def claim_action(
    state: State,
    *,
    next_attempt_at: datetime | None,
    lease_until: datetime | None,
    idempotent: bool,
    now: datetime,
    key_expires: datetime | None = None,
    other_scope: bool = False,
) -> ClaimAction:
    """The claim protocol for an existing row, in one place for every backend.

    A lease that ends exactly at `now` is still live: only `lease_until < now` is lost.
    `key_expires`: when the network forgets the idempotency key of the row's first send (None:
    never, or nothing can have arrived); from then on a send that was interrupted, or failed
    in a way that may have arrived, is UNKNOWN even on an idempotent channel.
    `other_scope`: such a send was made under another idempotency scope than the claimer's
    (a Matrix device): the network would not recognise the key either, so it is UNKNOWN too.
    """
    if state is State.PENDING:
        due = next_attempt_at is None or next_attempt_at <= now
        too_late = key_expires is not None and now > key_expires
        if due and (too_late or other_scope):
            return ClaimAction.MARK_UNKNOWN  # a send that may have arrived, unsafe to repeat
        return ClaimAction.CLAIM_PENDING if due else ClaimAction.NONE
    lost = lease_until is None or lease_until < now
    if state is State.CLAIMED and lost:
        return ClaimAction.TAKE_OVER
    if state is State.SENDING and lost:
        remembered = (key_expires is None or now <= key_expires) and not other_scope
        return ClaimAction.RESEND if idempotent and remembered else ClaimAction.MARK_UNKNOWN
    return ClaimAction.NONE


def utc(value: datetime, name: str = "time") -> datetime:
    """`value` in UTC; a naive datetime is a programming error (we cannot guess its zone)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def new_token() -> str:
    """A fencing token: unique per claim, unguessable so no two workers ever share one."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class RecipientCount:
    """Members' deliveries of one occurrence on one channel in one state
    (`Ledger.recipient_counts`): how many, and one of their errors (each redacted when it
    was recorded)."""

    calendar: str
    item: str
    channel: str
    due_at: datetime
    state: State
    count: int
    last_error: str | None
