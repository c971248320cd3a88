"""The ledger contract: delivery states, the claim protocol, and one SQL implementation of it.

The ledger is what makes "never twice" and "never silently dropped" true (DESIGN.md section 3).
A worker *claims* a delivery before doing anything with it, moves it to SENDING right before the
network call, and records the outcome right after. Each claim carries a random *token*; every
later write names that token, so a worker whose claim was taken over (its lease ran out) can no
longer change the delivery: its writes are refused with `StaleClaim` (see there).

The rules for who may claim what live in `claim_action`, once, and both backends call it. The
SQL that the backends share lives in `SqlLedger`; `sqlite.py` and `postgres.py` only supply a
connection, transactions with the right locking, time conversion, and their schema.

Every state change appends a row to the history (`attempts`), which is never updated or deleted.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum
from typing import Any, TypeVar

from commcal.errors import ConfigError, LedgerError

T = TypeVar("T")


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


# Events in the history. "stale" records a result reported by a worker after its claim had
# passed to another one: the state is not changed, but the evidence (say, the URL of a post that
# did go out) is kept for whoever resolves the delivery.
EVENTS = (
    "claimed",
    "sending",
    "sent",
    "retry",
    "retry-unsure",
    "failed",
    "failed-unsure",
    "expired",
    "unknown",
    "skipped",
    "resolved",
    "released",
    "deferred",  # not tried: its channel was unreachable in this run; due again later
    "retry-requested",
    "stale",
)

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
class Draw:
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
_FULL_ADDRESS = re.compile(r"(?<![\w.+*-])[\w.+-]+@[\w-]+(\.[\w-]+)+")


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


class Ledger(ABC):
    """The state store. Times in and out are aware UTC datetimes.

    A Ledger object holds one database connection; it may be shared by threads (calls are
    serialised). A process may open several.
    """

    @abstractmethod
    def close(self) -> None:
        """Close the connection. Further calls fail."""

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
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

    @abstractmethod
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
        """

    @abstractmethod
    def first_send(self, delivery_id: str) -> datetime | None:
        """When the delivery's current series of sends began (its first `sending` since a person
        last cleared it with `retry` or `resolve --not-sent`); None if it never began."""

    @abstractmethod
    def begin_send(self, claim: Claim, now: datetime, *, scope: str | None = None) -> bool:
        """CLAIMED -> SENDING. False (do not send!) unless the claim is current, its lease live.

        `scope`: the adapter's idempotency scope, recorded with the send (see `claim`).
        A claim made straight into SENDING (`claim.sending`) is already marked (its scope with
        it): True while its lease (as last granted to us by `claim_many` or `extend`) is live,
        with no write.
        """

    @abstractmethod
    def extend(self, claim: Claim, now: datetime, lease: timedelta) -> Claim | None:
        """Renew the lease to `now + lease`; None if the claim is no longer current."""

    @abstractmethod
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
        results: list[StaleClaim | None] = []
        for s in sent:
            try:
                self.record_sent(s.claim, remote_id=s.remote_id, url=s.url, now=s.now, note=s.note)
                results.append(None)
            except StaleClaim as stale:
                results.append(stale)
        return results

    @abstractmethod
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

    @abstractmethod
    def record_failed(self, claim: Claim, *, error: str, now: datetime) -> None:
        """-> FAILED (permanent error). Raises `StaleClaim` if the claim is no longer current."""

    @abstractmethod
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

    @abstractmethod
    def record_expired(self, d: DueDelivery, *, reason: str, now: datetime) -> bool:
        """Insert EXPIRED if absent, or PENDING -> EXPIRED. True if anything changed."""

    @abstractmethod
    def record_skipped(self, d: DueDelivery, *, reason: str, now: datetime) -> bool:
        """Insert SKIPPED if absent, or PENDING -> SKIPPED. True if anything changed."""

    @abstractmethod
    def get(self, delivery_id: str) -> DeliveryRecord | None:
        """One delivery by its full id."""

    @abstractmethod
    def find(self, id_prefix: str) -> list[DeliveryRecord]:
        """Deliveries whose id starts with `id_prefix` (at least 6 characters, else ConfigError)."""

    @abstractmethod
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

    @abstractmethod
    def attempts(self, delivery_id: str) -> list[Attempt]:
        """A delivery's history, oldest first."""

    @abstractmethod
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

    @abstractmethod
    def abandoned(self, now: datetime) -> list[DeliveryRecord]:
        """CLAIMED or SENDING deliveries whose lease has run out: nobody is looking after them."""

    @abstractmethod
    def retry(self, delivery_id: str, now: datetime, *, force: bool = False) -> bool:
        """FAILED -> PENDING due now, attempts reset to 0. False if it was not FAILED.

        A delivery that may have been delivered (`may_have_been_sent`) is refused with
        `MaybeSent`, because a repeat after the network forgot its idempotency key posts twice;
        `force=True` retries it all the same (and an UNKNOWN one too), at the caller's risk.
        """

    @abstractmethod
    def may_have_been_sent(self, delivery_id: str) -> bool:
        """Whether an earlier send of the delivery may have arrived and nobody has settled it
        since: it is UNKNOWN, or its history since the last `retry`/`resolve` by a person holds
        a send that timed out or was interrupted."""

    @abstractmethod
    def resolve(self, delivery_id: str, *, sent_url: str | None, now: datetime) -> bool:
        """UNKNOWN or FAILED -> SENT (with `sent_url`), or, with None, -> PENDING due now (it
        did not go out). False if it was neither UNKNOWN nor FAILED.
        """

    # ---- the ledger's identity ------------------------------------------------------------

    @abstractmethod
    def meta(self) -> LedgerMeta:
        """The ledger's id, creation time, project and sweep mark."""

    @abstractmethod
    def adopt_project(self, project: str) -> str:
        """The project this ledger belongs to: `project` if it had none yet (now recorded)."""

    @abstractmethod
    def take_over(self, at: datetime) -> bool:
        """Record that this ledger replaces an earlier one from `at` on: deliveries due before
        `at` may have been sent by that one. Only an empty ledger takes over (False otherwise,
        and nothing changes); a second call keeps the first instant."""

    @abstractmethod
    def mark_swept(self, through: datetime) -> None:
        """Every delivery due before `through` has a row now; the mark only moves forward."""

    @abstractmethod
    def reopen_skipped(self, delivery_ids: Iterable[str], now: datetime) -> list[str]:
        """SKIPPED -> PENDING due now for those skipped because they came due before the
        ledger took over (`CAUGHT_UP_PREFIX`); the ids reopened."""

    @abstractmethod
    def heartbeat(self, worker: str, now: datetime, *, host: str, pid: int, info: str = "") -> None:
        """Record that `worker` is alive."""

    @abstractmethod
    def workers(self, now: datetime) -> list[WorkerInfo]:
        """Every worker that sent a heartbeat, by name, with its live holdings."""

    # ---- audiences: suppressions, single-use codes, contest draws --------------------------

    @abstractmethod
    def suppress(self, recipient_key: str, *, source: str, now: datetime, note: str = "") -> bool:
        """Suppress a member: nothing more is delivered to them. True if newly suppressed.

        Idempotent: suppressing again changes nothing (the first source and note are kept).
        `note` is shown by `commcal suppress --list`; it may hold a masked address such as
        `m***@example.org` (see `mask_address`) but never a full one: a note containing an
        unmasked address is refused with ValueError.
        """

    @abstractmethod
    def unsuppress(self, recipient_key: str, *, now: datetime) -> bool:
        """Lift a suppression. True if the member was suppressed."""

    @abstractmethod
    def is_suppressed(self, recipient_key: str) -> bool:
        """Whether the member is suppressed."""

    @abstractmethod
    def suppressed(self, keys: Iterable[str]) -> set[str]:
        """The suppressed ones among `keys` (as lower-case keys), in a few queries."""

    @abstractmethod
    def suppressions(self, limit: int | None = None) -> list[Suppression]:
        """Suppressions, newest first."""

    @abstractmethod
    def assign_code(
        self, pool: str, recipient_key: str, codes: Sequence[str], *, now: datetime
    ) -> str | None:
        """The member's single-use code from `pool`, assigning one if they have none yet.

        In one transaction: the code already assigned to this member in `pool` if any (the same
        member always gets the same code), else the first of `codes` (in order) not assigned to
        anyone in `pool`, recorded before it is returned. None when every code is taken. Safe
        against any number of concurrent processes: a code is never given to two members.
        """

    @abstractmethod
    def reserve_codes(
        self, pool: str, recipient_keys: Sequence[str], codes: Sequence[str], *, now: datetime
    ) -> dict[str, str]:
        """Codes for all `recipient_keys` at once, or none: {key: code}.

        Members who already hold a code keep it. If fewer codes are free than members need,
        raises LedgerError saying how many are missing, and assigns nothing.
        """

    @abstractmethod
    def code_for(self, pool: str, recipient_key: str) -> str | None:
        """The code assigned to the member in `pool`, if any."""

    @abstractmethod
    def codes_assigned(self, pool: str) -> int:
        """How many codes of `pool` have been assigned."""

    @abstractmethod
    def record_draw(
        self,
        item: str,
        *,
        seed: str,
        entries_sha256: str,
        entries: int,
        winners: Sequence[str],
        now: datetime,
    ) -> None:
        """Append a contest draw to the (append-only) record.

        `winners` are keys (`commcal.contest.entry_key`), in draw order: the entries file holds
        the addresses. Anything that looks like a full address is refused (ValueError).
        """

    @abstractmethod
    def draws(self, item: str) -> list[Draw]:
        """The draws recorded for `item`, oldest first."""


# --------------------------------------------------------------------------------------------
# The SQL both backends share. Statements use `?` placeholders; PostgreSQL rewrites them.

_RECORD_COLUMNS = (
    "id, calendar, item, channel, recipient, due_at, state, attempts, next_attempt_at, "
    "last_error, remote_id, url, content_hash, claimed_by, lease_until, created_at, updated_at"
)

_CLAIM_CHUNK = 500  # deliveries per claim_many transaction: short enough not to starve others
_IN_CHUNK = 500  # values per IN (...) list: far below either backend's parameter limit


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def _key(value: str) -> str:
    return recipient_key(value)


def _iso(value: datetime) -> str:
    """A UTC instant as ledger_meta stores it (fixed width, so text order is time order)."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


class SqlLedger(Ledger):
    """The ledger in SQL that SQLite and PostgreSQL both run.

    Subclasses provide `_transaction` (run a function in one transaction, retrying on lock
    conflicts), `_execute`, time conversion, and `_row_lock` (the suffix that locks a row read
    for update; SQLite needs none because `BEGIN IMMEDIATE` already holds the write lock).
    """

    _row_lock: str = ""

    def __init__(self) -> None:
        # One connection per Ledger; a lock keeps threads from interleaving transactions on it.
        self._lock = threading.RLock()

    # ---- backend hooks -------------------------------------------------------------------

    @abstractmethod
    def _transaction(self, fn: Callable[[], T], *, write: bool) -> T:
        """Run `fn` inside one transaction (retried whole on lock conflicts) and commit.

        A commit that returns must be durable: `begin_send`'s above all, since were it lost the
        row would fall back to CLAIMED and the next run would send the delivery again.
        """

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement inside the current transaction; all result rows."""

    @abstractmethod
    def _to_db(self, value: datetime) -> Any:
        """A UTC datetime as the backend stores it."""

    @abstractmethod
    def _from_db(self, value: Any) -> datetime:
        """A stored time back as an aware UTC datetime."""

    @abstractmethod
    def _table_exists(self, name: str) -> bool:
        """Whether the schema holds table `name` (inside the current transaction)."""

    # ---- helpers --------------------------------------------------------------------------

    def _opt_from_db(self, value: Any) -> datetime | None:
        return None if value is None else self._from_db(value)

    def _t(self, value: datetime, name: str = "time") -> Any:
        return self._to_db(utc(value, name))

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

    # ---- claiming -------------------------------------------------------------------------

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
        """Claim one delivery inside the caller's transaction. `sending` (idempotent channels
        only) claims straight into SENDING, logging `claimed` and `sending` (and recording
        `scope`) as begin_send would."""
        sending = sending and idempotent
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
    ) -> list[Claim]:
        def is_idempotent(d: DueDelivery) -> bool:
            return idempotent(d.channel) if callable(idempotent) else idempotent

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
                        d, worker, now, lease, is_idempotent(d), sending, key_window, scope
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

    # ---- after a claim --------------------------------------------------------------------

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

    # ---- the user's commands ---------------------------------------------------------------

    def retry(self, delivery_id: str, now: datetime, *, force: bool = False) -> bool:
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
        def tx() -> bool:
            state, _ = self._current(delivery_id)
            return state is not None and self._maybe_sent_in_tx(delivery_id, state)

        return self._transaction(tx, write=False)

    def resolve(self, delivery_id: str, *, sent_url: str | None, now: datetime) -> bool:
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

    # ---- the ledger's identity ------------------------------------------------------------

    def _meta_values(self) -> dict[str, str]:
        if not self._table_exists("ledger_meta"):  # read-only, on a ledger not yet migrated
            return {}
        return {r[0]: r[1] for r in self._execute("SELECT key, value FROM ledger_meta")}

    def meta(self) -> LedgerMeta:
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
        when = _iso(utc(at, "at"))

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
        # One conditional upsert: two runs committing at once never move the mark back (the
        # fixed-width text compares as the instants do).
        self._transaction(
            lambda: self._execute(
                "INSERT INTO ledger_meta (key, value) VALUES ('swept_through', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value "
                "WHERE ledger_meta.value < excluded.value",
                (_iso(utc(through, "through")),),
            ),
            write=True,
        )

    def reopen_skipped(self, delivery_ids: Iterable[str], now: datetime) -> list[str]:
        wanted = sorted(set(delivery_ids))
        now_db = self._t(now, "now")

        def tx() -> list[str]:
            reopened: list[str] = []
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                rows = self._execute(
                    "UPDATE deliveries SET state = ?, next_attempt_at = ?, last_error = NULL, "
                    "updated_at = ? WHERE state = ? AND substr(last_error, 1, ?) = ? "
                    f"AND id IN ({_marks(len(chunk))}) RETURNING id",
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

    # ---- reading --------------------------------------------------------------------------

    def get(self, delivery_id: str) -> DeliveryRecord | None:
        rows = self._transaction(
            lambda: self._execute(
                f"SELECT {_RECORD_COLUMNS} FROM deliveries WHERE id = ?", (delivery_id,)
            ),
            write=False,
        )
        return self._record(rows[0]) if rows else None

    def find(self, id_prefix: str) -> list[DeliveryRecord]:
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

    def attempts(self, delivery_id: str) -> list[Attempt]:
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
        rows = self._transaction(
            lambda: self._execute(
                f"SELECT {_RECORD_COLUMNS} FROM deliveries WHERE state IN (?, ?) "
                "AND lease_until < ? ORDER BY due_at DESC, id",
                (State.CLAIMED.value, State.SENDING.value, self._t(now, "now")),
            ),
            write=False,
        )
        return [self._record(r) for r in rows]

    # ---- workers --------------------------------------------------------------------------

    def heartbeat(self, worker: str, now: datetime, *, host: str, pid: int, info: str = "") -> None:
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

    # ---- suppressions ---------------------------------------------------------------------

    def suppress(self, recipient_key: str, *, source: str, now: datetime, note: str = "") -> bool:
        key = _key(recipient_key)
        if _FULL_ADDRESS.search(note):
            raise ValueError(
                "a suppression note must not hold a full address; mask it (m***@example.org)"
            )
        at = self._t(now, "now")

        def tx() -> bool:
            rows = self._execute(
                "INSERT INTO suppressions (recipient_key, source, note, at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (recipient_key) DO NOTHING RETURNING recipient_key",
                (key, source, note, at),
            )
            if rows:
                self._suppression_event(key, at, "suppressed", source)
            return bool(rows)

        return self._transaction(tx, write=True)

    def unsuppress(self, recipient_key: str, *, now: datetime) -> bool:
        key = _key(recipient_key)
        at = self._t(now, "now")

        def tx() -> bool:
            rows = self._execute(
                "DELETE FROM suppressions WHERE recipient_key = ? RETURNING recipient_key", (key,)
            )
            if rows:
                self._suppression_event(key, at, "unsuppressed", "")
            return bool(rows)

        return self._transaction(tx, write=True)

    def _suppression_event(self, key: str, at: Any, event: str, source: str) -> None:
        self._execute(
            "INSERT INTO suppression_events (recipient_key, at, event, source) VALUES (?, ?, ?, ?)",
            (key, at, event, source),
        )

    def is_suppressed(self, recipient_key: str) -> bool:
        return bool(self.suppressed([recipient_key]))

    def suppressed(self, keys: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(_key(k) for k in keys))
        if not wanted:
            return set()

        def tx() -> set[str]:
            found: set[str] = set()
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                rows = self._execute(
                    "SELECT recipient_key FROM suppressions WHERE recipient_key IN "
                    f"({_marks(len(chunk))})",
                    chunk,
                )
                found.update(r[0] for r in rows)
            return found

        return self._transaction(tx, write=False)

    def suppressions(self, limit: int | None = None) -> list[Suppression]:
        sql = (
            "SELECT recipient_key, source, note, at FROM suppressions "
            "ORDER BY at DESC, recipient_key"
        )
        params: list[Any] = []
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        rows = self._transaction(lambda: self._execute(sql, params), write=False)
        return [Suppression(r[0], r[1], r[2], self._from_db(r[3])) for r in rows]

    # ---- single-use codes -----------------------------------------------------------------

    def _pool_lock(self, pool: str) -> None:
        """Serialise code assignment in `pool` across processes, where the transaction alone
        does not (SQLite's BEGIN IMMEDIATE already does; PostgreSQL takes an advisory lock)."""

    def _held_codes(self, pool: str, keys: Sequence[str]) -> dict[str, str]:
        held: dict[str, str] = {}
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = list(keys[start : start + _IN_CHUNK])
            rows = self._execute(
                "SELECT recipient_key, code FROM code_assignments WHERE pool = ? "
                f"AND recipient_key IN ({_marks(len(chunk))})",
                [pool, *chunk],
            )
            held.update((r[0], r[1]) for r in rows)
        return held

    def _free_codes(self, pool: str, codes: Sequence[str], wanted: int) -> list[str]:
        """Up to `wanted` codes of `codes`, in order, not yet assigned in `pool`."""
        free: list[str] = []
        unique = list(dict.fromkeys(codes))
        for start in range(0, len(unique), _IN_CHUNK):
            chunk = unique[start : start + _IN_CHUNK]
            rows = self._execute(
                "SELECT code FROM code_assignments WHERE pool = ? "
                f"AND code IN ({_marks(len(chunk))})",
                [pool, *chunk],
            )
            taken = {r[0] for r in rows}
            free.extend(c for c in chunk if c not in taken)
            if len(free) >= wanted:
                return free[:wanted]
        return free

    def _assign(self, pool: str, key: str, code: str, at: Any) -> None:
        self._execute(
            "INSERT INTO code_assignments (pool, code, recipient_key, at) VALUES (?, ?, ?, ?)",
            (pool, code, key, at),
        )

    def assign_code(
        self, pool: str, recipient_key: str, codes: Sequence[str], *, now: datetime
    ) -> str | None:
        key = _key(recipient_key)
        at = self._t(now, "now")

        def tx() -> str | None:
            self._pool_lock(pool)
            held = self._held_codes(pool, [key])
            if key in held:
                return held[key]
            free = self._free_codes(pool, codes, 1)
            if not free:
                return None
            self._assign(pool, key, free[0], at)
            return free[0]

        return self._transaction(tx, write=True)

    def reserve_codes(
        self, pool: str, recipient_keys: Sequence[str], codes: Sequence[str], *, now: datetime
    ) -> dict[str, str]:
        keys = list(dict.fromkeys(_key(k) for k in recipient_keys))
        at = self._t(now, "now")

        def tx() -> dict[str, str]:
            self._pool_lock(pool)
            held = self._held_codes(pool, keys)
            needing = [k for k in keys if k not in held]
            free = self._free_codes(pool, codes, len(needing))
            if len(free) < len(needing):
                missing = len(needing) - len(free)
                raise LedgerError(
                    f"code pool {pool!r} is {missing} code{'s' if missing != 1 else ''} short: "
                    f"{len(needing)} members need a new code and only {len(free)} are left "
                    "unassigned; add codes to the pool (nothing was assigned)"
                )
            for k, code in zip(needing, free, strict=True):
                self._assign(pool, k, code, at)
                held[k] = code
            return {k: held[k] for k in keys}

        return self._transaction(tx, write=True)

    def code_for(self, pool: str, recipient_key: str) -> str | None:
        key = _key(recipient_key)
        held = self._transaction(lambda: self._held_codes(pool, [key]), write=False)
        return held.get(key)

    def codes_assigned(self, pool: str) -> int:
        rows = self._transaction(
            lambda: self._execute("SELECT count(*) FROM code_assignments WHERE pool = ?", (pool,)),
            write=False,
        )
        return int(rows[0][0])

    # ---- contest draws --------------------------------------------------------------------

    def record_draw(
        self,
        item: str,
        *,
        seed: str,
        entries_sha256: str,
        entries: int,
        winners: Sequence[str],
        now: datetime,
    ) -> None:
        if isinstance(winners, str):
            raise TypeError("winners is a sequence of names, not one string")
        if any(_FULL_ADDRESS.search(w) for w in winners):
            # "The ledger stores a key per address, never the address."
            raise ValueError("a draw's winners are stored as keys (entry_key), never addresses")
        at = self._t(now, "now")
        self._transaction(
            lambda: self._execute(
                "INSERT INTO draws (item, at, seed, entries_sha256, entries, winners) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (item, at, seed, entries_sha256, int(entries), json.dumps(list(winners))),
            ),
            write=True,
        )

    def draws(self, item: str) -> list[Draw]:
        rows = self._transaction(
            lambda: self._execute(
                "SELECT item, at, seed, entries_sha256, entries, winners FROM draws "
                "WHERE item = ? ORDER BY seq",
                (item,),
            ),
            write=False,
        )
        return [
            Draw(r[0], self._from_db(r[1]), r[2], r[3], int(r[4]), tuple(json.loads(r[5])))
            for r in rows
        ]

    # ---- schema ---------------------------------------------------------------------------

    def _migrate(self, steps: Sequence[Sequence[str]], where: str) -> None:
        """Bring the schema up to date: step N (1-based) is `steps[N - 1]`, applied once.

        Runs in one write transaction, so two processes opening a new ledger at once do not
        both create it. A database newer than this code is refused rather than misread.
        """

        def tx() -> None:
            self._migration_lock()
            self._execute(
                "CREATE TABLE IF NOT EXISTS commcal_schema "
                "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            rows = self._execute("SELECT max(version) FROM commcal_schema")
            current = int(rows[0][0] or 0)
            if current > len(steps):
                raise LedgerError(
                    f"the ledger at {where} has schema version {current}, but this commcal "
                    f"knows only up to version {len(steps)}; upgrade commcal to use it"
                )
            for version in range(current + 1, len(steps) + 1):
                for statement in steps[version - 1]:
                    self._execute(statement)
                self._execute(
                    "INSERT INTO commcal_schema (version, applied_at) VALUES (?, ?)",
                    (version, datetime.now(UTC).isoformat()),
                )
            if current < len(steps) and self._table_exists("ledger_meta"):
                # A new ledger (or one from before ledgers had an identity) gets its id and
                # creation time once; the wall clock, not a pinned --now: this is a fact.
                for key, value in (
                    ("ledger_id", new_token()),
                    ("created_at", _iso(datetime.now(UTC))),
                ):
                    self._execute(
                        "INSERT INTO ledger_meta (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO NOTHING",
                        (key, value),
                    )

        self._transaction(tx, write=True)

    def _check_readable(self, steps: Sequence[Sequence[str]], where: str) -> None:
        """For a read-only ledger: it must exist (LedgerMissing) and not be newer than us."""

        def tx() -> int:
            if not self._table_exists("commcal_schema"):
                raise LedgerMissing(
                    f"{where} holds no commcal ledger: check state: in commcal.yaml, --state "
                    "and COMMCAL_STATE (the first `commcal publish` creates the ledger)"
                )
            rows = self._execute("SELECT max(version) FROM commcal_schema")
            return int(rows[0][0] or 0)

        current = self._transaction(tx, write=False)
        if current > len(steps):
            raise LedgerError(
                f"the ledger at {where} has schema version {current}, but this commcal "
                f"knows only up to version {len(steps)}; upgrade commcal to use it"
            )

    def _migration_lock(self) -> None:
        """Serialise migrations across processes, where the transaction alone does not."""

    def schema_version(self) -> int:
        """The schema version the database is at."""
        rows = self._transaction(
            lambda: self._execute("SELECT max(version) FROM commcal_schema"), write=False
        )
        return int(rows[0][0] or 0)
