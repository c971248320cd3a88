"""The publish loop: find due deliveries, claim each in the ledger, render, send, record.

Guarantees (DESIGN.md section 3) and where they are kept:
- never twice: a delivery is claimed atomically and marked `sending` durably before the network
  call (on idempotent channels in the batch's claim transaction itself: a crash before the send
  is then a resend with the same idempotency key); a claim lost to another worker is never
  sent; adapters pass the delivery id as an idempotency key; a send interrupted on a channel
  without one becomes `unknown`, never re-sent.
- never silently dropped: every due delivery ends in a recorded state; deliveries due longer ago
  than `publish.max_late` are recorded `expired`.
- one slow or failing channel does not hold up the others: each channel sends in its own thread,
  over its own ledger connection, in due order.

On channels that remember idempotency keys for good (webhook, Bluesky's derived record key), a
successful send is recorded by a second thread (`SentRecorder`), several per commit, while the
channel's thread goes on to the next send: the commit's fsync no longer sits between two network
calls. Until its `sent` commit a delivery stays `sending`, and a `sending` delivery of an
idempotent channel is resent with the same key after a crash, so a crash now repeats up to
MAX_UNRECORDED sends instead of one, each deduplicated by the receiver. Mastodon and Matrix
forget keys after an hour or less, and non-idempotent channels decide `sent` or `unknown` by
that record: they record each send before the next.
"""

from __future__ import annotations

import os
import queue
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from commcal.channels.base import Channel, Message, PermanentError, TransientError
from commcal.config import Config
from commcal.errors import CommcalError, ConfigError
from commcal.ledger import (
    TERMINAL,
    Claim,
    DueDelivery,
    Ledger,
    Sent,
    StaleClaim,
    State,
    open_ledger,
)
from commcal.plan import Delivery, Filters, check, deliveries
from commcal.project import Project

# How far back `publish` looks for deliveries nobody handled, to record them `expired`.
EXPIRY_LOOKBACK = timedelta(days=7)
# A Retry-After longer than this is not waited for in-process: the delivery goes back to
# `pending` and the next run (cron, or `commcal run`) picks it up when it is due.
MAX_INLINE_WAIT = 60.0
# Deliveries of one channel claimed in one ledger transaction: fewer commits per delivery, while
# the claims a crash leaves behind are few and taken over when their lease ends. A channel that
# sends a batch in under CLAIM_GROW_UNDER seconds gets twice the batch next time, up to
# CLAIM_BATCH_MAX: there the claim's commit is a real share of the time (bench/publish.py: 128
# instead of 32 took throughput from 0.72x to 0.79x a bare requests loop), while slow channels
# keep small batches, so hosts sharing a PostgreSQL ledger share their deliveries too.
CLAIM_BATCH = 32
CLAIM_BATCH_MAX = 256
CLAIM_GROW_UNDER = 1.0
# Sends of an idempotent channel that may be out but not yet recorded `sent`: what a crash makes
# the next run resend (with the same idempotency key) besides the one in flight; also the most
# one commit records. The recorder lets RECORD_GATHER seconds of sends queue up before each
# commit (bench/publish.py: 0.75x -> 0.80x a bare requests loop, against waking for each send).
MAX_UNRECORDED = 16
RECORD_GATHER = 0.005


@dataclass(frozen=True)
class Outcome:
    """What happened to one delivery in this run."""

    delivery: Delivery
    state: str  # a ledger State value, or "would-send" / "already" / "held" in reports
    detail: str = ""
    url: str | None = None
    attempts: int = 0


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    dry_run: bool = False

    def count(self, state: str) -> int:
        return sum(1 for o in self.outcomes if o.state == state)

    @property
    def ok(self) -> bool:
        return not any(o.state in (State.FAILED, State.UNKNOWN) for o in self.outcomes)


def unresolved(delivery: Delivery) -> str:
    return f"check the channel, then run `commcal resolve {delivery.id} --sent URL` or `--not-sent`"


def key_window(adapter: Channel) -> timedelta | None:
    """How long the adapter's network remembers an idempotency key; None: for good."""
    seconds = adapter.idempotency_window
    return None if seconds is None else timedelta(seconds=seconds)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def due_delivery(delivery: Delivery, content_hash: str = "") -> DueDelivery:
    return DueDelivery(
        delivery.id,
        delivery.calendar,
        delivery.item.id,
        delivery.channel,
        delivery.due,
        recipient=delivery.recipient.key if delivery.recipient else "",
        content_hash=content_hash,
    )


def state_url(
    project: Project, override: str | None = None, env: Mapping[str, str] | None = None
) -> str:
    environ = os.environ if env is None else env
    return override or environ.get("COMMCAL_STATE") or project.config.state_url(environ)


class SentRecorder:
    """Records the sends of one channel in a thread of its own, many per transaction.

    `add` queues a send that went out, and waits while MAX_UNRECORDED are queued; the thread
    commits what is queued in one `record_sent_many` and then reports the outcomes. `close`
    waits for the last commit. A ledger error stops the recording; it is raised by the next
    `add` and by `close`, and the sends it did not record stay `sending` (resent with the same
    key by a later run).
    """

    def __init__(self, ledger: Ledger, report: Callable[[Outcome], None]) -> None:
        self._ledger = ledger
        self._report = report
        self._queue: queue.SimpleQueue[tuple[Sent, Outcome] | None] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._room = threading.BoundedSemaphore(MAX_UNRECORDED)
        self._thread = threading.Thread(target=self._loop, name="commcal-record", daemon=True)
        self._thread.start()

    def add(self, sent: Sent, outcome: Outcome) -> None:
        # Usually there is room; waiting (with a timeout, to notice a recording error) is slower.
        while not self._room.acquire(blocking=False) and not self._room.acquire(timeout=0.1):
            if self._error is not None:
                raise self._error
        if self._error is not None:
            raise self._error
        self._queue.put((sent, outcome))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        try:
            self._record_until_closed()
        except BaseException as exc:  # handed to the sending thread, which raises it
            self._error = exc

    def _record_until_closed(self) -> None:
        done = False
        while not done:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            # Let the next few sends go out, then take everything queued: fewer, larger commits,
            # and one wake-up of this thread per commit rather than one per send (each wake-up
            # takes the interpreter lock from the sending thread).
            time.sleep(RECORD_GATHER)
            while len(batch) < MAX_UNRECORDED:
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    break
                if entry is None:
                    done = True
                    break
                batch.append(entry)
            results = self._ledger.record_sent_many([sent for sent, _ in batch])
            for (_, outcome), stale in zip(batch, results, strict=True):
                self._room.release()
                if stale is not None:
                    outcome = Outcome(outcome.delivery, "held", str(stale))
                self._report(outcome)


@dataclass
class Publisher:
    """One `commcal publish` run. `now` may be pinned; it advances with real elapsed time."""

    project: Project
    ledger_url: str
    now: datetime
    worker: str = field(default_factory=worker_name)
    dry_run: bool = False
    filters: Filters = field(default_factory=Filters)
    stop: threading.Event = field(default_factory=threading.Event)
    on_outcome: Callable[[Outcome], None] | None = None

    def __post_init__(self) -> None:
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self.config: Config = self.project.config

    def clock(self) -> datetime:
        return self.now + timedelta(seconds=time.monotonic() - self._started)

    def open(self) -> Ledger:
        return open_ledger(self.ledger_url, project_dir=self.project.root)

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> Report:
        report = Report(dry_run=self.dry_run)
        max_late = self.config.publish.max_late
        lookback = max(EXPIRY_LOOKBACK, 2 * max_late)
        window = deliveries(
            self.project,
            self.now - lookback,
            self.now + timedelta(seconds=1),
            self.filters,
            members=True,
        )
        due = [d for d in window if d.due <= self.now]
        late = [d for d in due if d.due < self.now - max_late]
        fresh = [d for d in due if d.due >= self.now - max_late]
        if self.dry_run:
            for delivery in fresh:
                planned = check(self.project, delivery)
                state = "would-send" if planned.ok else State.FAILED
                detail = "; ".join(p.message for p in planned.problems)
                self._report(report, Outcome(delivery, state, detail))
            return report
        with self.open() as ledger:
            ledger.heartbeat(
                self.worker,
                self.clock(),
                host=socket.gethostname(),
                pid=os.getpid(),
                info="publish",
            )
            for delivery in late:
                if ledger.record_expired(
                    due_delivery(delivery),
                    now=self.clock(),
                    reason=f"due {self._late_text(delivery)} ago, later than publish.max_late",
                ):
                    self._report(
                        report, Outcome(delivery, State.EXPIRED, "later than publish.max_late")
                    )
            drafts = [d for d in fresh if d.item.draft]
            for delivery in drafts:
                if ledger.record_skipped(
                    due_delivery(delivery), now=self.clock(), reason="draft: never published"
                ):
                    self._report(report, Outcome(delivery, State.SKIPPED, "draft"))
            # Finished ones are skipped before rendering: a cron run every minute stays cheap.
            done = {
                r.id: r.state
                for r in ledger.records(
                    due_from=self.now - max_late, due_to=self.now + timedelta(seconds=1)
                )
                if r.state in TERMINAL
            }
            todo = [d for d in fresh if d.id not in done and not d.item.draft]
            todo = self._people(ledger, todo, report)
        by_channel: dict[str, list[Delivery]] = {}
        for delivery in fresh:
            if done.get(delivery.id) == State.UNKNOWN:
                # Still unresolved from an earlier run: every run says so (and exits 1) until a
                # person checks the channel, whichever run happened to notice the interruption.
                self._report(
                    report,
                    Outcome(
                        delivery,
                        State.UNKNOWN,
                        f"interrupted while sending in an earlier run; {unresolved(delivery)}",
                    ),
                )
            elif delivery.id in done:
                self._report(report, Outcome(delivery, "already"), quiet=True)
        for delivery in todo:
            by_channel.setdefault(delivery.channel, []).append(delivery)
        if not by_channel:
            return report
        workers = min(self.config.publish.concurrency, len(by_channel))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="commcal-send") as pool:
            futures = [
                pool.submit(self._channel, name, items, report)
                for name, items in sorted(by_channel.items())
            ]
            for future in futures:
                future.result()
        return report

    def _people(self, ledger: Ledger, todo: list[Delivery], report: Report) -> list[Delivery]:
        """Deliveries to members: drop the suppressed (recorded `skipped`, before rendering),
        make sure member tokens can be signed, and reserve pool codes for every remaining member
        of an offer before anything is sent (running out is an error, not a half-sent offer)."""
        personal = [d for d in todo if d.recipient is not None]
        if not personal:
            return todo
        blocked = ledger.suppressed({d.recipient.key for d in personal if d.recipient})
        kept: list[Delivery] = []
        for delivery in todo:
            if delivery.recipient is not None and delivery.recipient.key in blocked:
                if ledger.record_skipped(
                    due_delivery(delivery), now=self.clock(), reason="unsubscribed"
                ):
                    self._report(report, Outcome(delivery, State.SKIPPED, "unsubscribed"))
            else:
                kept.append(delivery)
        members = self.config.members
        signed = members.unsubscribe_url or any(
            d.item.extra.get("survey_url") or (d.item.extra.get("codes") or {}).get("derive")
            for d in kept
            if d.recipient is not None
        )
        if signed and kept and not self.config.member_secret(self.project.env):
            names = ", ".join(members.secret.names) if members.secret else "members.secret"
            raise ConfigError(
                f"commcal.yaml: members.secret ({names}) is not set: unsubscribe links and "
                "member tokens cannot be signed, so no mail to members was sent"
            )
        return self._codes(ledger, kept)

    def _codes(self, ledger: Ledger, todo: list[Delivery]) -> list[Delivery]:
        from dataclasses import replace

        from commcal.errors import LedgerError
        from commcal.plan import pool_codes

        pools: dict[tuple[str, str], list[Delivery]] = {}
        for delivery in todo:
            codes = delivery.item.extra.get("codes") or {}
            if delivery.recipient is not None and codes.get("pool"):
                pools.setdefault((delivery.calendar, delivery.item.id), []).append(delivery)
        if not pools:
            return todo
        assigned: dict[str, str] = {}
        for (calendar, item_id), group in pools.items():
            item = group[0].item
            pool = f"{calendar}/{item_id}"
            try:
                codes = pool_codes(self.project, item)
            except OSError as exc:
                raise ConfigError(
                    f"{item.pos}: item {item_id!r}: cannot read its code pool "
                    f"{item.extra['codes']['pool']}: {exc.strerror}"
                ) from None
            keys = sorted({d.recipient.key for d in group if d.recipient})
            try:
                given = ledger.reserve_codes(pool, keys, codes, now=self.clock())
            except LedgerError as exc:
                raise CommcalError(f"{item.pos}: item {item_id!r}: {exc}") from None
            for delivery in group:
                if delivery.recipient is not None:
                    assigned[delivery.id] = given[delivery.recipient.key]
        return [replace(d, code=assigned[d.id]) if d.id in assigned else d for d in todo]

    def _late_text(self, delivery: Delivery) -> str:
        from commcal.timeutil import format_duration

        return format_duration(
            timedelta(minutes=int((self.now - delivery.due).total_seconds() // 60))
        )

    def _report(self, report: Report, outcome: Outcome, *, quiet: bool = False) -> None:
        with self._lock:
            report.outcomes.append(outcome)
        if self.on_outcome is not None and not quiet:
            self.on_outcome(outcome)

    # -- one channel ----------------------------------------------------------------------------

    def _channel(self, name: str, items: Sequence[Delivery], report: Report) -> None:
        adapter = self.project.channels.get(name)
        if adapter is None:  # the config problem was reported at load; nothing can be sent
            for delivery in items:
                self._report(
                    report,
                    Outcome(
                        delivery, State.FAILED, f"channel {name!r} is not configured correctly"
                    ),
                )
            return
        ledger = self.open()
        recorder = None
        try:
            if adapter.idempotent and adapter.idempotency_window is None:
                recorder = SentRecorder(ledger, lambda outcome: self._report(report, outcome))
            start, size = 0, CLAIM_BATCH
            while start < len(items) and not self.stop.is_set():
                began = time.monotonic()
                self._batch(ledger, adapter, items[start : start + size], report, recorder)
                start += size
                if time.monotonic() - began < CLAIM_GROW_UNDER:
                    size = min(2 * size, CLAIM_BATCH_MAX)
        finally:
            try:
                if recorder is not None:  # also after an error: record what went out
                    recorder.close()
            finally:
                adapter.close()
                ledger.close()

    def _batch(
        self,
        ledger: Ledger,
        adapter: Channel,
        batch: Sequence[Delivery],
        report: Report,
        recorder: SentRecorder | None = None,
    ) -> None:
        """Claim a batch in one transaction, then send each in due order, recording each
        outcome right after its own send (or, with a `recorder`, a successful one a few sends
        later). Claims left unused (a stop request) are released."""
        publish = self.config.publish
        claims = {
            c.delivery_id: c
            for c in ledger.claim_many(
                [due_delivery(d) for d in batch],
                worker=self.worker,
                now=self.clock(),
                lease=publish.lease,
                idempotent=adapter.idempotent,
                # Idempotent channels are claimed straight into SENDING: no durable mark per
                # delivery before its send (a crash here is a resend with the same key).
                sending=adapter.idempotent,
                key_window=key_window(adapter),
            )
        }
        for n, delivery in enumerate(batch):
            if self.stop.is_set():
                for rest in batch[n:]:
                    if (claim := claims.get(rest.id)) is not None:
                        ledger.release(claim, self.clock())
                return
            claim = claims.get(delivery.id)
            # Earlier sends in the batch (retry waits, slow servers) may have used up much of
            # this claim's lease: renew it while it is still ours.
            if claim is not None and claim.lease_until - self.clock() < publish.lease / 2:
                claim = ledger.extend(claim, self.clock(), publish.lease)
                if claim is None:
                    self._report(
                        report, Outcome(delivery, "held", "claim lost to another worker; not sent")
                    )
                    continue
            outcome = self._deliver(ledger, adapter, delivery, claim, recorder)
            if outcome is not None:
                self._report(report, outcome)

    def _deliver(
        self,
        ledger: Ledger,
        adapter: Channel,
        delivery: Delivery,
        claim: Claim | None = None,
        recorder: SentRecorder | None = None,
    ) -> Outcome | None:
        """Render, check and send one delivery; its outcome, or None when `recorder` will
        report it once its `sent` is committed."""
        planned = check(self.project, delivery)
        publish = self.config.publish
        if claim is None:
            claim = ledger.claim(
                due_delivery(delivery),
                worker=self.worker,
                now=self.clock(),
                lease=publish.lease,
                idempotent=adapter.idempotent,
                key_window=key_window(adapter),
            )
        if claim is None:
            record = ledger.get(delivery.id)
            state = record.state if record else "held"
            return Outcome(
                delivery,
                "already" if state == State.SENT else str(state),
                record.last_error or "" if record else "",
                record.url if record else None,
            )
        if not planned.ok or planned.message is None:
            reason = "; ".join(p.message for p in planned.problems) or "could not render"
            return self._fail(ledger, claim, delivery, f"not sent: {reason}")
        return self._send(ledger, adapter, delivery, claim, planned.message, recorder)

    def _send(
        self,
        ledger: Ledger,
        adapter: Channel,
        delivery: Delivery,
        claim: Claim,
        message: Message,
        recorder: SentRecorder | None = None,
    ) -> Outcome | None:
        publish = self.config.publish
        while True:
            if not ledger.begin_send(claim, self.clock()):
                return Outcome(delivery, "held", "claim lost to another worker; not sent")
            try:
                receipt = adapter.send(message, delivery.id)
            except TransientError as exc:
                error = adapter.redact(str(exc))
                delay = self._backoff(claim.attempt, exc.retry_after)
                retry_at = self.clock() + timedelta(seconds=delay)
                if exc.maybe_sent and not self._may_repeat(ledger, adapter, delivery, retry_at):
                    # Retrying could post twice: leave it `sending` and let the lease turn it
                    # `unknown`, which only a person resolves.
                    return self._unknown(ledger, claim, delivery, error)
                try:
                    state = ledger.record_transient(
                        claim,
                        error=error,
                        retry_at=retry_at,
                        max_attempts=publish.max_attempts,
                        now=self.clock(),
                        maybe_sent=exc.maybe_sent,
                    )
                except StaleClaim as stale:
                    return Outcome(delivery, "held", str(stale))
                if state == State.FAILED:
                    return Outcome(
                        delivery,
                        State.FAILED,
                        f"{error} (after {claim.attempt} attempts)",
                        attempts=claim.attempt,
                    )
                if delay > MAX_INLINE_WAIT or self.stop.is_set():
                    return Outcome(
                        delivery,
                        State.PENDING,
                        f"{error}; retry at {retry_at:%H:%M:%S} UTC",
                        attempts=claim.attempt,
                    )
                self.stop.wait(delay)  # a stop request cuts the wait short
                next_claim = ledger.claim(
                    due_delivery(delivery),
                    worker=self.worker,
                    now=max(self.clock(), retry_at),
                    lease=publish.lease,
                    idempotent=adapter.idempotent,
                    key_window=key_window(adapter),
                )
                if next_claim is None:
                    return Outcome(delivery, State.PENDING, f"{error}; retry later")
                claim = next_claim
                continue
            except PermanentError as exc:
                return self._fail(ledger, claim, delivery, adapter.redact(str(exc)))
            except CommcalError as exc:  # e.g. a missing ${ENV} secret: nothing was sent
                return self._fail(ledger, claim, delivery, adapter.redact(str(exc)))
            except Exception as exc:  # an adapter's bug, or an answer it could not read
                # The request may have left: never re-sent blindly, never left `sending`.
                error = adapter.redact(f"unexpected {type(exc).__name__} while sending: {exc}")
                return self._unknown(ledger, claim, delivery, error)
            sent = Sent(claim, receipt.remote_id, receipt.url, self.clock(), receipt.note)
            outcome = Outcome(
                delivery,
                State.SENT,
                receipt.remote_id or receipt.note,
                receipt.url,
                claim.attempt,
            )
            if recorder is not None:
                recorder.add(sent, outcome)
                return None
            try:
                ledger.record_sent(
                    claim, remote_id=sent.remote_id, url=sent.url, now=sent.now, note=sent.note
                )
            except StaleClaim as stale:
                return Outcome(delivery, "held", str(stale))
            return outcome

    def _may_repeat(
        self, ledger: Ledger, adapter: Channel, delivery: Delivery, retry_at: datetime
    ) -> bool:
        """Whether a send that may have arrived can be repeated at `retry_at` without posting
        twice: the channel dedupes by key and still remembers this delivery's key by then."""
        if not adapter.idempotent:
            return False
        window = key_window(adapter)
        if window is None:
            return True
        first = ledger.first_send(delivery.id)
        return first is None or retry_at <= first + window

    def _fail(self, ledger: Ledger, claim: Claim, delivery: Delivery, error: str) -> Outcome:
        try:
            ledger.record_failed(claim, error=error, now=self.clock())
        except StaleClaim as stale:
            return Outcome(delivery, "held", str(stale))
        return Outcome(delivery, State.FAILED, error, attempts=claim.attempt)

    def _unknown(self, ledger: Ledger, claim: Claim, delivery: Delivery, error: str) -> Outcome:
        # Expire our own lease now so the ledger's rule (SENDING + lost lease, not idempotent)
        # records UNKNOWN with its history, the same as after a crash.
        ledger.extend(claim, self.clock(), timedelta(microseconds=-1))
        ledger.claim(
            due_delivery(delivery),
            worker=self.worker,
            now=self.clock(),
            lease=self.config.publish.lease,
            idempotent=False,
        )
        return Outcome(
            delivery,
            State.UNKNOWN,
            f"{error}; {unresolved(delivery)}",
            attempts=claim.attempt,
        )

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter, never sooner than the server's Retry-After."""
        base = self.config.publish.retry_delay.total_seconds()
        delay = random.uniform(base / 2, base) * (2 ** max(0, attempt - 1))
        return float(max(delay, retry_after or 0.0))


def publish(
    project: Project,
    *,
    now: datetime | None = None,
    state: str | None = None,
    dry_run: bool = False,
    filters: Filters = Filters(),
    on_outcome: Callable[[Outcome], None] | None = None,
    stop: threading.Event | None = None,
) -> Report:
    """Send everything due at `now`. Raises ConfigError when the project cannot publish."""
    if project.errors:
        raise ConfigError(f"{len(project.errors)} problems in the project; run `commcal validate`")
    publisher = Publisher(
        project,
        state_url(project, state),
        now or datetime.now(UTC),
        dry_run=dry_run,
        filters=filters,
        on_outcome=on_outcome,
        stop=stop or threading.Event(),
    )
    return publisher.run()
