"""The publish loop: find due deliveries, claim each in the ledger, render, send, record.

Guarantees (DESIGN.md section 3) and where they are kept:
- never twice: a delivery is claimed atomically and marked `sending` durably before the network
  call (on idempotent channels in the batch's claim transaction itself: a crash before the send
  is then a resend with the same idempotency key); a claim lost to another worker is never
  sent; adapters pass the delivery id as an idempotency key; a send interrupted on a channel
  without one becomes `unknown`, never re-sent; where the network keeps keys per scope
  (`Channel.idempotency_scope`: a Matrix device), the scope is recorded with each send, and a
  send that may have arrived is repeated only under the same one, else `unknown`.
- never posted without its images: on a channel that uploads media first, each upload's ref is
  recorded in the ledger before the post (`_uploaded`), and a resumed send posts with those
  refs (same idempotency key) instead of uploading again or posting without them.
- never silently dropped: every due delivery ends in a recorded state; deliveries due longer ago
  than `publish.max_late` are recorded `expired`.
- one slow or failing channel does not hold up the others: each channel sends in its own thread,
  over its own ledger connection, in due order.

On channels that remember idempotency keys for good (webhook, Bluesky's derived record key) or
for at least RECORD_BEHIND_WINDOW (Mastodon's hour), a successful send is recorded by a second
thread (`SentRecorder`), several per commit, while the channel's thread goes on to the next
send: the commit's fsync no longer sits between two network calls. Until its `sent` commit a
delivery stays `sending`, and a `sending` delivery of an idempotent channel is resent with the
same key after a crash (while the network still knows the key: else `unknown`), so a crash now
repeats up to MAX_UNRECORDED sends instead of one, each deduplicated by the receiver. Matrix
keeps keys per device and for 30 minutes or less, and non-idempotent channels decide `sent` or
`unknown` by that record: they record each send before the next.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from commcal.channels.base import (
    Channel,
    Message,
    PermanentError,
    Receipt,
    SendError,
    StaleMedia,
    TransientError,
)
from commcal.config import Config
from commcal.deliveries import Memo, member_deliveries, stands_for_members
from commcal.errors import CommcalError, ConfigError, LedgerError, Problem
from commcal.ledger import (
    CAUGHT_UP_PREFIX,
    HELD,
    TERMINAL,
    Claim,
    DeliveryRecord,
    Ledger,
    LedgerMeta,
    LedgerMissing,
    Sent,
    StaleClaim,
    State,
    open_ledger,
)
from commcal.ledger.base import PREPARED, ClaimAction, claim_action
from commcal.plan import Delivery, Filters, check, deliveries
from commcal.project import Project
from commcal.publish.chain import Wait, earlier_parts, link
from commcal.publish.people import Members, batches, for_members, streams
from commcal.publish.recorder import SentRecorder
from commcal.publish.results import Outcome, OutcomeState, Report
from commcal.publish.retry import backoff, ceiling
from commcal.publish.rows import due_delivery
from commcal.publish.rows import worker_name as worker_name
from commcal.threads import expand

# How far back `publish` looks for deliveries nobody handled, to record them `expired`.
EXPIRY_LOOKBACK = timedelta(days=7)
# A Retry-After or a backoff ceiling (publish.retry) longer than this is not waited for
# in-process: the delivery goes back to `pending`, and the next run (cron, or `commcal run`)
# picks it up when it is due.
MAX_INLINE_WAIT = 60.0
# Deliveries of one channel claimed in one ledger transaction: fewer commits per delivery, while
# the claims a crash leaves behind are few and taken over when their lease ends. A channel that
# sends a batch in under CLAIM_GROW_UNDER seconds gets twice the batch next time, up to
# CLAIM_BATCH_MAX: there the claim's commit is a real share of the time (measured with
# bench/publish.py, figures in bench/README.md: "claim batches grow"), while slow channels
# keep small batches, so hosts sharing a PostgreSQL ledger share their deliveries too.
# A network that keeps our idempotency keys this long has its sends recorded behind them too
# (SentRecorder): the up to MAX_UNRECORDED sends a crash leaves `sending` are resent with their
# keys by the next run (cron's, a minute later) and deduplicated; a run later than the window
# records them `unknown` instead (never a second post), as it does the send in flight. For
# Mastodon (one hour) this took media publishing from 0.4x to 0.9x of a bare requests loop
# (bench/media_publish.py; bench/README.md).
RECORD_BEHIND_WINDOW = 3600.0
CLAIM_BATCH = 32
# Containers made for one send before it gives up (a new one replaces one the network
# refused as ERROR or EXPIRED while it was being prepared): each is a request that posts
# nothing, and Instagram allows 400 a day.
MAX_PREPARES = 3
CLAIM_BATCH_MAX = 256
CLAIM_GROW_UNDER = 1.0


def held_stale(outcome: Outcome, stale: StaleClaim) -> Outcome:
    """A send whose `sent` record was refused: another worker had taken the claim over."""
    return Outcome(outcome.delivery, OutcomeState.HELD, str(stale))


def still_unknown(delivery: Delivery) -> Outcome:
    """A delivery an earlier run left `unknown`: every run says so (and exits 1) until a person
    checks the channel."""
    return Outcome(
        delivery,
        OutcomeState.UNKNOWN,
        f"interrupted while sending in an earlier run; {unresolved(delivery)}",
    )


def unresolved(delivery: Delivery) -> str:
    return f"check the channel, then run `commcal resolve {delivery.id} --sent URL` or `--not-sent`"


def held(delivery: Delivery, record: DeliveryRecord | None) -> Outcome:
    """A delivery another worker holds: this run leaves it alone."""
    who = record.claimed_by if record is not None and record.claimed_by else "another worker"
    lease = record.lease_until if record is not None else None
    until = f" until {lease:%H:%M:%S} UTC" if lease else ""
    return Outcome(delivery, OutcomeState.HELD, f"held by {who}{until}")


def records_behind(adapter: Channel) -> bool:
    """Whether the adapter's sends are recorded `sent` by a SentRecorder, several per commit:
    those of networks that dedupe by our key for good, or for at least RECORD_BEHIND_WINDOW
    (Mastodon: an hour), whose keys are not kept per scope (a Matrix device)."""
    window = adapter.idempotency_window
    long_enough = window is None or window >= RECORD_BEHIND_WINDOW
    return (
        adapter.idempotent
        and long_enough
        and type(adapter).idempotency_scope is Channel.idempotency_scope
    )


def key_window(adapter: Channel) -> timedelta | None:
    """How long the adapter's network remembers an idempotency key; None: for good."""
    seconds = adapter.idempotency_window
    return None if seconds is None else timedelta(seconds=seconds)


def scope_of(adapter: Channel) -> tuple[str | None, bool]:
    """The adapter's idempotency scope, and whether it could be learnt (a lookup that failed
    is asked again, and handled, by the send itself)."""
    try:
        return adapter.idempotency_scope(), True
    except (SendError, CommcalError):
        return None, False


def caught_up_reason(took_over_at: datetime) -> str:
    return (
        f"{CAUGHT_UP_PREFIX} from an earlier one at {took_over_at:%Y-%m-%d %H:%M} UTC: that "
        "ledger may have sent it; `commcal publish --catch-up` sends it"
    )


def _short(reason: str) -> str:
    if reason.startswith(CAUGHT_UP_PREFIX):
        return "due before this ledger took over; `commcal publish --catch-up` sends it"
    return "draft" if reason.startswith("draft") else reason


def display_url(url: str) -> str:
    """A ledger URL fit to show: no password, no query (where passwords also hide)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}@{host}"
    return f"{parts.scheme}://{netloc}{parts.path}"


# The project's memory of the ledger it last published to (per checkout: .commcal/ is not in
# git). Lost with the folder: a fresh checkout trusts the first ledger it is given.
MEMORY_FILE = ".commcal/ledger.json"


def remembered_ledger(root: Path) -> dict[str, str] | None:
    """What this checkout remembers of its last ledger, or None (never published, or lost)."""
    try:
        data = json.loads((root / MEMORY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("ledger_id"), str):
        return None
    return {str(k): str(v) for k, v in data.items()}


def remember_ledger(root: Path, meta: LedgerMeta, url: str) -> None:
    """Remember the ledger published to, when it changed (a write only then)."""
    remembered = remembered_ledger(root)
    if not meta.ledger_id or (remembered and remembered.get("ledger_id") == meta.ledger_id):
        return
    path = root / MEMORY_FILE
    data = {
        "ledger_id": meta.ledger_id,
        "ledger": display_url(url),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only checkout publishes all the same, without this protection


def new_ledger_refusal(remembered: Mapping[str, str], where: str) -> str:
    return (
        f"this project last published to the ledger {remembered.get('ledger', '?')} (id "
        f"{remembered.get('ledger_id', '?')[:8]}, since {remembered.get('since', '?')}); {where} "
        "is a different ledger with no deliveries in it, and publishing there could send again "
        "what the other one sent. If the state setting is a mistake (a typo in state:, --state "
        "or COMMCAL_STATE, a deleted ledger file), fix it. If this is the project's new ledger, "
        "run `commcal publish --new-ledger` once: deliveries due before now are recorded "
        "skipped; `commcal publish --catch-up` sends those still within publish.max_late instead"
    )


def check_ledger(project: Project, url: str, now: datetime) -> None:
    """Refuse, as `publish` would, a ledger that belongs to another project or a new, empty
    one in place of the ledger this project last published to (ConfigError); a bad URL or an
    unreachable database is a LedgerError. Writes nothing but a new ledger's creation: `run`
    calls it at start, so a wrong ledger stops it at once instead of at every wake-up."""
    publisher = Publisher(project, url, now)
    with publisher.open() as ledger:
        publisher._check_ledger(ledger, ledger.meta(), write=False)


def state_url(
    project: Project, override: str | None = None, env: Mapping[str, str] | None = None
) -> str:
    """The project's ledger URL (Config.ledger_url): --state, COMMCAL_STATE, or state:."""
    return project.config.ledger_url(override, env)


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
    # --catch-up: also send what came due before this ledger took over from an earlier one
    # (confirms the take-over, as --new-ledger does). --new-ledger: this empty ledger replaces
    # the one the project last published to; what came due before now is recorded `skipped`.
    catch_up: bool = False
    new_ledger: bool = False
    # Ledger id -> the `now` of the last run with this very project (the same input files,
    # commcal.cron_index) that left every delivery due by then with a row in that ledger: a
    # run looks back from there instead of over the whole look-back (`_settled_start`).
    settled: Mapping[str, datetime] = field(default_factory=dict)
    # False: members' outcomes are counted, not kept in the report (Report.keep_members).
    keep_members: bool = True

    def __post_init__(self) -> None:
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self.config: Config = self.project.config
        # Channels found down in this run: name -> (why, when to try again). Once a channel's
        # circuit is open, its remaining deliveries go back to `pending` untried.
        self._open_circuits: dict[str, tuple[str, datetime]] = {}
        # What a channel's deliveries share while its thread renders and checks them (each
        # item's context layers, each media file's pixel size): one Memo per channel, so per
        # thread, made in `_channel` and dropped with the run.
        self._memos: dict[str, Memo] = {}
        # Per channel: each claimed delivery's recorded uploads, read with its batch's claim.
        self._batch_uploads: dict[str, dict[str, dict[int, tuple[str, str]]]] = {}

    def clock(self) -> datetime:
        return self.now + timedelta(seconds=time.monotonic() - self._started)

    def open(self) -> Ledger:
        return open_ledger(self.ledger_url, project_dir=self.project.root)

    # -- the run --------------------------------------------------------------------------------

    def run(self) -> Report:
        report = Report(dry_run=self.dry_run, keep_members=self.keep_members)
        if self.dry_run:
            return self._dry_run(report)
        ledger_id = self._publish(report)
        if self._settled(report):
            report.settled_ledger = ledger_id
        return report

    def _settled(self, report: Report) -> bool:
        """Whether every delivery due up to `now` has a row now (Report.settled_ledger): a full
        run (no filters), not stopped, nothing left out for a problem (a broken audience, a
        missing members.secret, a short code pool, a channel that did not load: those send
        nothing and record nothing, so the next run must look at them again)."""
        if self.filters.channels or self.filters.items or self.stop.is_set() or report.problems:
            return False
        if any(c not in self.project.channels for c in self.config.channels):
            return False
        # count(): members' outcomes may be counted without being kept (Report.keep_members).
        return not report.count(OutcomeState.BLOCKED)

    def _publish(self, report: Report) -> str:
        """The run: expire, skip, claim, send and record what is due; the ledger's id."""
        max_late = self.config.publish.max_late
        with self.open() as ledger:
            meta = self._check_ledger(ledger, ledger.meta(), write=True)
            ledger.heartbeat(
                self.worker,
                self.clock(),
                host=socket.gethostname(),
                pid=os.getpid(),
                info="publish",
            )
            start = self._settled_start(ledger, meta, self._window_start(meta))
            late, fresh = self._unstreamed(*self._due(start, report), meta)
            # One read of what is recorded: what is finished is not written again.
            known = {
                r.id: r
                for r in ledger.records(due_from=start, due_to=self.now + timedelta(seconds=1))
            }
            for delivery in late:
                record = known.get(delivery.id)
                if record is not None and record.state is not State.PENDING:
                    continue
                if ledger.record_expired(
                    due_delivery(delivery),
                    now=self.clock(),
                    reason=f"due {self._late_text(delivery)} ago, later than publish.max_late",
                ):
                    self._report(
                        report,
                        Outcome(delivery, OutcomeState.EXPIRED, "later than publish.max_late"),
                    )
            reported: set[str] = set()
            for delivery, reason in self._not_sent(fresh, known, meta):
                reported.add(delivery.id)
                if ledger.record_skipped(due_delivery(delivery), now=self.clock(), reason=reason):
                    self._report(report, Outcome(delivery, OutcomeState.SKIPPED, _short(reason)))
            if self.catch_up and meta.took_over_at is not None:
                ledger.reopen_skipped(
                    [d.id for d in fresh if d.due < meta.took_over_at], self.clock()
                )
            # Finished ones are skipped before rendering: a cron run every minute stays cheap.
            done = {
                r.id: r.state
                for r in ledger.records(
                    due_from=self.now - max_late, due_to=self.now + timedelta(seconds=1)
                )
                if r.state in TERMINAL
            }
            todo = [d for d in fresh if d.id not in done and d.id not in reported]
            if not self.filters.channels and not self.filters.items:
                # Every delivery due before now - max_late has a row now (or is held).
                ledger.mark_swept(self.now - max_late)
            remember_ledger(self.project.root, meta, self.ledger_url)
            todo = for_members(
                ledger,
                todo,
                project=self.project,
                clock=self.clock,
                emit=lambda outcome, quiet: self._report(report, outcome, quiet=quiet),
                problems=report.problems,
            )
        by_channel: dict[str, list[Delivery]] = {}
        for delivery in fresh:
            if delivery.id in reported:
                continue  # recorded `skipped` just now: counted once, as skipped
            if done.get(delivery.id) == State.UNKNOWN:
                # Still unresolved from an earlier run: every run says so (and exits 1) until a
                # person checks the channel, whichever run happened to notice the interruption.
                self._report(
                    report,
                    Outcome(
                        delivery,
                        OutcomeState.UNKNOWN,
                        f"interrupted while sending in an earlier run; {unresolved(delivery)}",
                    ),
                )
            elif delivery.id in done:
                self._report(report, Outcome(delivery, OutcomeState.ALREADY), quiet=True)
        for delivery in todo:
            by_channel.setdefault(delivery.channel, []).append(delivery)
        if not by_channel:
            return meta.ledger_id
        workers = min(self.config.publish.concurrency, len(by_channel))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="commcal-send") as pool:
            futures = [
                pool.submit(self._channel, name, items, report)
                for name, items in sorted(by_channel.items())
            ]
            for future in futures:
                future.result()
        return meta.ledger_id

    def _window_start(self, meta: LedgerMeta) -> datetime:
        """Where this run looks back from: the usual look-back, or further, to where the last
        full run left off (after an outage longer than the look-back, every delivery missed
        gets its `expired` row; a new ledger starts at the look-back)."""
        lookback = self.now - max(EXPIRY_LOOKBACK, 2 * self.config.publish.max_late)
        if meta.swept_through is None:
            return lookback
        return min(lookback, meta.swept_through)

    def _settled_start(self, ledger: Ledger, meta: LedgerMeta, start: datetime) -> datetime:
        """Where a run of a project unchanged since a settled run looks back from: the
        settled instant (every delivery due before it has a row; none needs `expired`), but
        never into the fresh window, and only when no `pending` row waits between `start` and
        there (a late one is recorded `expired` by the usual look-back)."""
        settled = self.settled.get(meta.ledger_id) if meta.ledger_id else None
        if settled is None or self.filters.channels or self.filters.items or self.catch_up:
            return start
        narrowed = min(settled, self.now - self.config.publish.max_late)
        if narrowed <= start or settled > self.now:
            return start
        pending, _ = ledger.window_summary(
            pending_from=start, fresh_from=self.now + timedelta(days=1), due_to=narrowed
        )
        return start if pending else narrowed

    def _due(self, start: datetime, report: Report) -> tuple[list[Delivery], list[Delivery]]:
        """The deliveries due in [start, now]: those too late to send, and the rest. An item
        whose audience file has errors gets none (nothing recorded, so the first run after the
        fix sends it) and its problems go to the report."""
        max_late = self.config.publish.max_late
        broken: list[Problem] = []
        window = deliveries(
            self.project,
            start,
            self.now + timedelta(seconds=1),
            self.filters,
            members=True,
            broken=broken,
            stream=True,  # a newsletter's members are read batch by batch as they are sent
        )
        report.problems.extend(broken)
        # A thread's delivery becomes its parts, each a delivery of its own, in order.
        window = expand(self.project, window)
        due = [d for d in window if d.due <= self.now]
        late = [d for d in due if d.due < self.now - max_late]
        fresh = [d for d in due if d.due >= self.now - max_late]
        return late, fresh

    def _unstreamed(
        self, late: list[Delivery], fresh: list[Delivery], meta: LedgerMeta
    ) -> tuple[list[Delivery], list[Delivery]]:
        """`late` and `fresh` with the members of the stand-ins that are not sent batch by
        batch expanded in place: those recorded `expired` or `skipped` one by one (too late,
        drafts, due before a take-over) and offers with a code pool (`people.streams`). The
        other stand-ins stay: each channel's thread reads their members as it sends them."""

        def expand(todo: list[Delivery], keep: Callable[[Delivery], bool]) -> list[Delivery]:
            if not any(stands_for_members(d) and not keep(d) for d in todo):
                return todo
            out: list[Delivery] = []
            for d in todo:
                if stands_for_members(d) and not keep(d):
                    out.extend(member_deliveries(self.project, d))
                else:
                    out.append(d)
            return out

        took_over = meta.took_over_at

        def sent_in_batches(d: Delivery) -> bool:
            before_take_over = took_over is not None and d.due < took_over
            return not d.item.draft and not before_take_over and streams(d)

        return expand(late, lambda d: False), expand(fresh, sent_in_batches)

    def _not_sent(
        self, fresh: Sequence[Delivery], known: Mapping[str, DeliveryRecord], meta: LedgerMeta
    ) -> list[tuple[Delivery, str]]:
        """Due deliveries without a row that are recorded `skipped` rather than sent, and why:
        drafts, and those due before this ledger took over from an earlier one (unless
        --catch-up)."""
        out: list[tuple[Delivery, str]] = []
        for delivery in fresh:
            if delivery.id in known:
                continue
            if delivery.item.draft:
                out.append((delivery, "draft: never published"))
            elif (
                meta.took_over_at is not None
                and delivery.due < meta.took_over_at
                and not self.catch_up
            ):
                out.append((delivery, caught_up_reason(meta.took_over_at)))
        return out

    def _check_ledger(self, ledger: Ledger | None, meta: LedgerMeta, *, write: bool) -> LedgerMeta:
        """Refuse a ledger of another project, or a new, empty one standing in for the ledger
        this project last published to; record the project (and a confirmed take-over).

        `ledger` None: no ledger exists yet (a dry run); `write=False` changes nothing and
        answers what a real run would do."""
        name = self.config.project_name
        where = display_url(self.ledger_url)
        if meta.project is not None and meta.project != name:
            raise ConfigError(
                f"the ledger {where} belongs to project {meta.project!r}, not to {name!r} "
                f"(project: in {self.config.path.name}, default the folder's name): one ledger "
                "serves one project, or their deliveries would be taken for each other's. Give "
                "this project a ledger of its own (state: in commcal.yaml, --state or "
                f"COMMCAL_STATE); if it is the same project renamed, set project: {meta.project}"
            )
        remembered = remembered_ledger(self.project.root)
        replacing = remembered is not None and remembered.get("ledger_id") != meta.ledger_id
        confirmed = self.new_ledger or self.catch_up
        if (replacing or self.new_ledger) and meta.took_over_at is None:
            held = 0 if ledger is None else sum(ledger.counts().values())
            if held and self.new_ledger:
                raise ConfigError(
                    f"--new-ledger: the ledger {where} already holds {held} deliveries; it is "
                    "not new. Leave out --new-ledger"
                )
            if not held and replacing and not confirmed:
                assert remembered is not None
                raise ConfigError(new_ledger_refusal(remembered, where))
            if not held and confirmed:
                if write and ledger is not None:
                    ledger.take_over(self.now)
                    meta = ledger.meta()
                else:
                    meta = replace(meta, took_over_at=self.now)
        if write and ledger is not None and meta.project is None:
            meta = replace(meta, project=ledger.adopt_project(name))
        return meta

    # -- the dry run ----------------------------------------------------------------------------

    def _dry_run(self, report: Report) -> Report:
        """What a real run would do now, delivery by delivery, writing nothing anywhere: the
        ledger is opened read-only (a missing one is an empty one), no heartbeat, no claim."""
        try:
            ledger: Ledger | None = open_ledger(
                self.ledger_url, project_dir=self.project.root, read_only=True
            )
        except LedgerMissing:
            ledger = None
        try:
            meta = ledger.meta() if ledger is not None else LedgerMeta("", None)
            meta = self._check_ledger(ledger, meta, write=False)
            start = self._window_start(meta)
            late, fresh = self._unstreamed(*self._due(start, report), meta)
            known = (
                {}
                if ledger is None
                else {
                    r.id: r
                    for r in ledger.records(due_from=start, due_to=self.now + timedelta(seconds=1))
                }
            )
            keys = {d.recipient.key for d in fresh if d.recipient is not None}
            blocked = ledger.suppressed(keys) if ledger is not None and keys else set()
            for delivery in late:
                record = known.get(delivery.id)
                if record is None or record.state is State.PENDING:
                    detail = f"due {self._late_text(delivery)} ago, later than publish.max_late"
                    self._report(report, Outcome(delivery, OutcomeState.WOULD_EXPIRE, detail))
            skips = {d.id: reason for d, reason in self._not_sent(fresh, known, meta)}
            for delivery in fresh:
                if stands_for_members(delivery):
                    self._would_members(ledger, delivery, report)
                    continue
                outcome = self._would(ledger, delivery, known.get(delivery.id), skips, blocked)
                self._report(report, outcome)
        finally:
            if ledger is not None:
                ledger.close()
        return report

    def _would_members(self, ledger: Ledger | None, todo: Delivery, report: Report) -> None:
        """What a real run would do with each member of a stand-in, a batch at a time."""
        for batch in batches(self.project, todo, lambda: CLAIM_BATCH_MAX):
            known = ledger.get_many(d.id for d in batch) if ledger is not None else {}
            keys = {d.recipient.key for d in batch if d.recipient is not None}
            blocked = ledger.suppressed(keys) if ledger is not None else set()
            for delivery in batch:
                outcome = self._would(ledger, delivery, known.get(delivery.id), {}, blocked)
                self._report(report, outcome)

    def _would(
        self,
        ledger: Ledger | None,
        delivery: Delivery,
        record: DeliveryRecord | None,
        skips: Mapping[str, str],
        blocked: set[str],
    ) -> Outcome:
        """What a real run would do with one due delivery, given its row (if any)."""
        if delivery.id in skips:
            return Outcome(delivery, OutcomeState.WOULD_SKIP, skips[delivery.id])
        adapter = self.project.channels.get(delivery.channel)
        # A part whose earlier part cannot go is blocked, as a real run says; one waiting for
        # an earlier part this run would send first is sent after it.
        unfinished = record is None or record.state not in TERMINAL
        if delivery.part > 1 and ledger is not None and adapter is not None and unfinished:
            earlier = earlier_parts(delivery)
            linked = link(adapter, delivery, ledger.get_many(earlier), ledger.retracted(earlier))
            if isinstance(linked, Wait) and linked.blocked:
                return Outcome(delivery, OutcomeState.BLOCKED, linked.reason)
        if record is not None and ledger is not None:
            held = self._would_with_record(ledger, adapter, delivery, record)
            if held is not None:
                return held
        if delivery.recipient is not None and delivery.recipient.key in blocked:
            return Outcome(delivery, OutcomeState.WOULD_SKIP, "unsubscribed")
        if adapter is None:
            return Outcome(
                delivery,
                OutcomeState.WOULD_FAIL,
                f"channel {delivery.channel!r} is not configured correctly",
            )
        planned = check(self.project, delivery)
        if not planned.ok:
            return Outcome(
                delivery, OutcomeState.WOULD_FAIL, "; ".join(p.message for p in planned.problems)
            )
        return Outcome(delivery, OutcomeState.WOULD_SEND)

    def _would_with_record(
        self,
        ledger: Ledger,
        adapter: Channel | None,
        delivery: Delivery,
        record: DeliveryRecord,
    ) -> Outcome | None:
        """The outcome a real run reports for a delivery that has a row; None: it would send."""
        state = record.state
        if (
            state is State.SKIPPED
            and self.catch_up
            and (record.last_error or "").startswith(CAUGHT_UP_PREFIX)
        ):
            return None  # --catch-up reopens it
        if state is State.UNKNOWN:
            return Outcome(delivery, OutcomeState.UNKNOWN, unresolved(delivery), record.url)
        if state in TERMINAL:
            detail = str(state)
            if record.last_error:
                detail += f": {record.last_error}"
            return Outcome(delivery, OutcomeState.ALREADY, detail, record.url, record.attempts)
        idempotent = adapter is not None and adapter.idempotent
        window = key_window(adapter) if adapter is not None and idempotent else None
        key_expires = None
        if window is not None and (
            state is State.SENDING or ledger.may_have_been_sent(delivery.id)
        ):
            first = ledger.first_send(delivery.id)
            key_expires = None if first is None else first + window
        action = claim_action(
            state,
            next_attempt_at=record.next_attempt_at,
            lease_until=record.lease_until,
            idempotent=idempotent,
            now=self.now,
            key_expires=key_expires,
        )
        if action is ClaimAction.MARK_UNKNOWN:
            return Outcome(
                delivery,
                OutcomeState.UNKNOWN,
                "its last send may have arrived and cannot be repeated safely: a real run "
                f"records it unknown; {unresolved(delivery)}",
            )
        if action is not ClaimAction.NONE:
            return None
        if state is State.PENDING and record.next_attempt_at is not None:
            return Outcome(
                delivery,
                OutcomeState.PENDING,
                f"retry at {record.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC",
                attempts=record.attempts,
            )
        return held(delivery, record)

    def _late_text(self, delivery: Delivery) -> str:
        from commcal.timeutil import format_duration

        return format_duration(
            timedelta(minutes=int((self.now - delivery.due).total_seconds() // 60))
        )

    def _report(self, report: Report, outcome: Outcome, *, quiet: bool = False) -> None:
        with self._lock:
            report.add(outcome)
        if self.on_outcome is not None and not quiet:
            self.on_outcome(outcome)

    # -- one channel ----------------------------------------------------------------------------

    def _channel(self, name: str, items: Sequence[Delivery], report: Report) -> None:
        adapter = self.project.channels.get(name)
        if adapter is None:  # the config problem was reported at load; nothing can be sent
            for delivery in self._each(items):
                self._report(
                    report,
                    Outcome(
                        delivery,
                        OutcomeState.FAILED,
                        f"channel {name!r} is not configured correctly",
                    ),
                )
            return
        ledger = self.open()
        recorder = None
        self._memos[name] = Memo()
        try:
            if records_behind(adapter):
                recorder = SentRecorder(ledger, lambda outcome: self._report(report, outcome))
            # Sent at once by send_many: a batch of that size. Not for a channel that uploads
            # media first: its uploads are recorded one delivery at a time, in `_send`.
            fixed = 0 if adapter.uploads_media else adapter.batch_size()
            size = [fixed or CLAIM_BATCH]
            people = Members(
                ledger,
                self.project,
                self.clock,
                lambda outcome, quiet: self._report(report, outcome, quiet=quiet),
                report.problems,
            )
            for batch in self._batches(ledger, items, people, size, report):
                if self.stop.is_set():
                    break
                began = time.monotonic()
                if fixed:
                    self._send_batch(ledger, adapter, batch, report)
                    continue
                self._batch(ledger, adapter, batch, report, recorder)
                if time.monotonic() - began < CLAIM_GROW_UNDER:
                    size[0] = min(2 * size[0], CLAIM_BATCH_MAX)
        finally:
            try:
                if recorder is not None:  # also after an error: record what went out
                    recorder.close()
            finally:
                adapter.close()
                ledger.close()

    def _each(self, items: Sequence[Delivery]) -> Iterator[Delivery]:
        """`items` with each stand-in's members in its place, read as they are needed."""
        for delivery in items:
            if stands_for_members(delivery):
                yield from member_deliveries(self.project, delivery)
            else:
                yield delivery

    def _batches(
        self,
        ledger: Ledger,
        items: Sequence[Delivery],
        people: Members,
        size: list[int],
        report: Report,
    ) -> Iterator[list[Delivery]]:
        """A channel's deliveries in due order, `size[0]` at a time; the members of a stand-in
        (a newsletter) read from its audience as they are needed, a batch at a time, each
        batch checked as `people.for_members` checks them (finished ones left out, the
        suppressed recorded `skipped`, a missing members.secret reported once per item)."""
        plain: list[Delivery] = []
        for delivery in [*items, None]:
            if delivery is not None and not stands_for_members(delivery):
                plain.append(delivery)
                continue
            while plain:
                chunk = plain[: size[0]]
                del plain[: len(chunk)]  # before the yield: the caller may change the size
                yield chunk
            if delivery is None:
                return
            for batch in batches(self.project, delivery, lambda: size[0]):
                if self.stop.is_set():
                    return
                todo = people.prepare(self._unfinished(ledger, batch, report))
                if todo:
                    yield todo

    def _unfinished(
        self, ledger: Ledger, batch: Sequence[Delivery], report: Report
    ) -> list[Delivery]:
        """The deliveries of `batch` not finished in an earlier run (one query); the finished
        are reported as `run` reports them: `already`, or `unknown` until a person resolves it."""
        known = ledger.get_many(d.id for d in batch)
        todo: list[Delivery] = []
        for delivery in batch:
            record = known.get(delivery.id)
            if record is None or record.state not in TERMINAL:
                todo.append(delivery)
            elif record.state is State.UNKNOWN:
                self._report(report, still_unknown(delivery))
            else:
                self._report(report, Outcome(delivery, OutcomeState.ALREADY), quiet=True)
        return todo

    def _send_batch(
        self, ledger: Ledger, adapter: Channel, batch: Sequence[Delivery], report: Report
    ) -> None:
        """A batch sent at once (`Channel.send_many`: an SMTP pool). One transaction claims it
        straight into `sending`, one records what was sent: a crash in between leaves at most
        this batch `sending`, and each becomes `unknown` when its lease runs out, never a
        second mail. Failures are handled one by one as `_send` handles them."""
        claims = self._claims(ledger, adapter, batch, sending_all=True)
        ready: list[tuple[Delivery, Claim, Message]] = []
        for delivery in batch:
            claim = claims.get(delivery.id)
            if claim is None:
                self._report(report, self._not_claimed(ledger, delivery))
                continue
            planned = check(self.project, delivery)
            if not planned.ok or planned.message is None:
                reason = "; ".join(p.message for p in planned.problems) or "could not render"
                self._report(report, self._fail(ledger, claim, delivery, f"not sent: {reason}"))
                continue
            ready.append((delivery, claim, planned.message))
        if (circuit := self._open_circuits.get(adapter.name)) is not None:
            self._defer(ledger, [d for d, _, _ in ready], claims, circuit, report)
            return
        results = adapter.send_many([(m, d.id) for d, _, m in ready], self.stop.is_set)
        sent: list[tuple[Sent, Outcome]] = []
        for (delivery, claim, _), result in zip(ready, results, strict=True):
            if isinstance(result, Receipt):
                sent.append(
                    (
                        Sent(claim, result.remote_id, result.url, self.clock(), result.note),
                        Outcome(
                            delivery,
                            OutcomeState.SENT,
                            sent_detail(result),
                            result.url,
                            claim.attempt,
                        ),
                    )
                )
        stale = ledger.record_sent_many([s for s, _ in sent])
        for (_, outcome), refused in zip(sent, stale, strict=True):
            self._report(report, outcome if refused is None else held_stale(outcome, refused))
        untried: list[Delivery] = []
        for (delivery, claim, message), result in zip(ready, results, strict=True):
            if result is None:
                untried.append(delivery)
            elif not isinstance(result, Receipt):
                after = self._after_error(ledger, adapter, delivery, claim, result)
                if isinstance(after, Claim):  # waited for its retry: sent on its own
                    again = self._send(ledger, adapter, delivery, after, message)
                    if again is not None:
                        self._report(report, again)
                else:
                    self._report(report, after)
        if untried and (circuit := self._open_circuits.get(adapter.name)) is not None:
            self._defer(ledger, untried, claims, circuit, report)
        else:
            for delivery in untried:  # a stop request: nothing was sent for them
                ledger.release(claims[delivery.id], self.clock())

    def _claims(
        self,
        ledger: Ledger,
        adapter: Channel,
        batch: Sequence[Delivery],
        *,
        sending: bool = False,
        sending_all: bool = False,
        scope: str | None = None,
    ) -> dict[str, Claim]:
        """Claim `batch` in one transaction (`ClaimLedger.claim_many`): the claims by id."""
        claims = ledger.claim_many(
            [due_delivery(d) for d in batch],
            worker=self.worker,
            now=self.clock(),
            lease=self.config.publish.lease,
            idempotent=adapter.idempotent,
            sending=sending,
            key_window=key_window(adapter),
            scope=scope,
            sending_all=sending_all,
        )
        return {c.delivery_id: c for c in claims}

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
        scope, known = scope_of(adapter)
        # Idempotent channels are claimed straight into SENDING: no durable mark per delivery
        # before its send (a crash here is a resend with the same key). Not those whose keys
        # have a scope (Matrix: a device): each send is marked on its own, so that after a
        # crash and a change of scope (a new access token) only the send in flight is
        # `unknown`, not the whole batch.
        sending = adapter.idempotent and known and scope is None
        # A thread's parts are claimed one by one, each once the part before it is sent.
        claims = self._claims(
            ledger, adapter, [d for d in batch if not d.part], sending=sending, scope=scope
        )
        if adapter.uploads_media:
            # What earlier attempts uploaded for the batch, read once (`_uploaded`); a delivery
            # without any is not in it, and its claim is ours: nobody else can add any.
            uploads = ledger.uploads_many(claims)
            self._batch_uploads[adapter.name] = {c: uploads.get(c, {}) for c in claims}
        for n, delivery in enumerate(batch):
            if (circuit := self._open_circuits.get(adapter.name)) is not None:
                self._defer(ledger, [d for d in batch[n:] if not d.part], claims, circuit, report)
                for part in (d for d in batch[n:] if d.part):  # never claimed: nothing to undo
                    why, retry_at = circuit
                    detail = f"not tried ({why}); retry at {retry_at:%H:%M:%S} UTC"
                    self._report(report, Outcome(part, OutcomeState.PENDING, detail))
                return
            if self.stop.is_set():
                for rest in batch[n:]:
                    if (claim := claims.get(rest.id)) is not None:
                        ledger.release(claim, self.clock())
                return
            if delivery.part:
                if (outcome := self._thread_part(ledger, adapter, delivery)) is not None:
                    self._report(report, outcome)
                continue
            claim = claims.get(delivery.id)
            # Earlier sends in the batch (retry waits, slow servers) may have used up much of
            # this claim's lease: renew it while it is still ours.
            if claim is not None and claim.lease_until - self.clock() < publish.lease / 2:
                claim = ledger.extend(claim, self.clock(), publish.lease)
                if claim is None:
                    self._report(
                        report,
                        Outcome(
                            delivery, OutcomeState.HELD, "claim lost to another worker; not sent"
                        ),
                    )
                    continue
            outcome = self._deliver(ledger, adapter, delivery, claim, recorder)
            if outcome is not None:
                self._report(report, outcome)

    def _open_circuit(
        self, adapter: Channel, exc: TransientError, error: str, at: datetime
    ) -> bool:
        """Stop sending on `adapter` for the rest of the run when its server is unreachable
        (nothing was sent) or asks to wait longer than MAX_INLINE_WAIT: every other send would
        fail the same way, each waiting out its own backoff. True if the circuit opened."""
        if exc.unreachable:
            why = f"{adapter.name} is unreachable: {error}"
        elif exc.retry_after is not None and exc.retry_after > MAX_INLINE_WAIT:
            why = f"{adapter.name} asked to wait: {error}"
        else:
            return False
        self._open_circuits[adapter.name] = (why, at)
        return True

    def _defer(
        self,
        ledger: Ledger,
        rest: Sequence[Delivery],
        claims: Mapping[str, Claim],
        circuit: tuple[str, datetime],
        report: Report,
    ) -> None:
        """Put the untried deliveries of a channel whose circuit is open back to `pending`,
        due when the failed send is retried; their attempts are not used up."""
        why, retry_at = circuit
        for delivery in rest:
            claim = claims.get(delivery.id)
            if claim is None:  # not ours: another worker has it, or it is finished
                continue
            if ledger.release(claim, self.clock(), retry_at=retry_at, reason=f"not tried: {why}"):
                detail = f"not tried ({why}); retry at {retry_at:%H:%M:%S} UTC"
                self._report(
                    report,
                    Outcome(delivery, OutcomeState.PENDING, detail, attempts=claim.attempt - 1),
                )
            else:
                self._report(
                    report, Outcome(delivery, OutcomeState.HELD, "claim lost to another worker")
                )

    def _thread_part(self, ledger: Ledger, adapter: Channel, delivery: Delivery) -> Outcome | None:
        """One part of a thread: sent (replying to the part before it) when every part before
        it is `sent`; otherwise it waits, and why is recorded as its last error (once: the
        same reason is not written again at every run)."""
        earlier = earlier_parts(delivery)
        rows = ledger.get_many([*earlier, delivery.id])
        own = rows.pop(delivery.id, None)
        linked = link(adapter, delivery, rows, ledger.retracted(earlier))
        if not isinstance(linked, Wait):
            # Recorded `sent` before the next part is looked at: never in the background.
            options = {"reply_to": linked} if linked is not None else {}
            return self._deliver(ledger, adapter, delivery, options=options)
        state = OutcomeState.BLOCKED if linked.blocked else OutcomeState.PENDING
        if own is None or (own.state is State.PENDING and own.last_error != linked.reason):
            claim = ledger.claim(
                due_delivery(delivery),
                worker=self.worker,
                now=self.clock(),
                lease=self.config.publish.lease,
                idempotent=adapter.idempotent,
                key_window=key_window(adapter),
            )
            if claim is not None:  # a row that says why, due as soon as the part before is
                # sent (at this run's `now`: a run pinned to it may send it); the attempt is
                # given back
                ledger.release(claim, self.clock(), retry_at=self.now, reason=linked.reason)
        elif own.state is not State.PENDING:
            return self._not_claimed(ledger, delivery)
        return Outcome(delivery, state, linked.reason)

    def _deliver(
        self,
        ledger: Ledger,
        adapter: Channel,
        delivery: Delivery,
        claim: Claim | None = None,
        recorder: SentRecorder | None = None,
        options: Mapping[str, object] | None = None,
    ) -> Outcome | None:
        """Render, check and send one delivery (its message with `options` added: a thread
        part's `reply_to`); its outcome, or None when `recorder` will report it once its
        `sent` is committed."""
        planned = check(self.project, delivery, self._memos.get(adapter.name))
        publish = self.config.publish
        if claim is None:
            claim = ledger.claim(
                due_delivery(delivery),
                worker=self.worker,
                now=self.clock(),
                lease=publish.lease,
                idempotent=adapter.idempotent,
                key_window=key_window(adapter),
                scope=scope_of(adapter)[0],
            )
        if claim is None:
            return self._not_claimed(ledger, delivery)
        if not planned.ok or planned.message is None:
            reason = "; ".join(p.message for p in planned.problems) or "could not render"
            return self._fail(ledger, claim, delivery, f"not sent: {reason}")
        message = planned.message
        if options:
            message = replace(message, options={**message.options, **options})
        return self._send(ledger, adapter, delivery, claim, message, recorder)

    def _not_claimed(self, ledger: Ledger, delivery: Delivery) -> Outcome:
        """The outcome of a delivery this run could not claim: another worker holds it (`held`,
        like a dry run says), or it is finished or waiting for its retry (as its row says)."""
        record = ledger.get(delivery.id)
        if record is None or record.state in HELD:
            return held(delivery, record)
        state = (
            OutcomeState.ALREADY if record.state is State.SENT else OutcomeState.of(record.state)
        )
        return Outcome(delivery, state, record.last_error or "", record.url)

    def _send(
        self,
        ledger: Ledger,
        adapter: Channel,
        delivery: Delivery,
        claim: Claim,
        message: Message,
        recorder: SentRecorder | None = None,
    ) -> Outcome | None:
        while True:
            try:
                receipt = self._begin_and_send(ledger, adapter, claim, message, delivery.id)
            except LedgerError:
                raise
            except Exception as exc:
                after = self._after_error(ledger, adapter, delivery, claim, exc)
                if isinstance(after, Outcome):
                    return after
                claim = after
                continue
            if receipt is None:
                return Outcome(
                    delivery, OutcomeState.HELD, "claim lost to another worker; not sent"
                )
            sent = Sent(claim, receipt.remote_id, receipt.url, self.clock(), receipt.note)
            outcome = Outcome(
                delivery,
                OutcomeState.SENT,
                sent_detail(receipt),
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
                return Outcome(delivery, OutcomeState.HELD, str(stale))
            return outcome

    def _after_error(
        self, ledger: Ledger, adapter: Channel, delivery: Delivery, claim: Claim, exc: Exception
    ) -> Outcome | Claim:
        """A failed send's outcome, recorded; or, when its retry was waited for here, the new
        claim to send it again with."""
        publish = self.config.publish
        if isinstance(exc, TransientError):
            error = adapter.redact(str(exc))
            base = publish.retry_delay.total_seconds()
            delay = backoff(claim.attempt, exc.retry_after, base)
            # Waited for here only if no draw could be longer (see publish.retry).
            inline = max(delay, ceiling(claim.attempt, base)) <= MAX_INLINE_WAIT
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
                return Outcome(delivery, OutcomeState.HELD, str(stale))
            circuit_open = self._open_circuit(adapter, exc, error, retry_at)
            if state == State.FAILED:
                return Outcome(
                    delivery,
                    OutcomeState.FAILED,
                    f"{error} (after {claim.attempt} attempts)",
                    attempts=claim.attempt,
                )
            if circuit_open or not inline or self.stop.is_set():
                return Outcome(
                    delivery,
                    OutcomeState.PENDING,
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
                scope=scope_of(adapter)[0],
            )
            if next_claim is None:
                return Outcome(delivery, OutcomeState.PENDING, f"{error}; retry later")
            return next_claim
        if isinstance(exc, PermanentError | CommcalError):
            # CommcalError: e.g. a missing ${ENV} secret: nothing was sent
            return self._fail(ledger, claim, delivery, adapter.redact(str(exc)))
        # An adapter's bug, or an answer it could not read: the request may have left, so it
        # is never re-sent blindly, never left `sending`.
        error = adapter.redact(f"unexpected {type(exc).__name__} while sending: {exc}")
        return self._unknown(ledger, claim, delivery, error)

    def _begin_and_send(
        self, ledger: Ledger, adapter: Channel, claim: Claim, message: Message, key: str
    ) -> Receipt | None:
        """Mark the send begun, with the adapter's idempotency scope, and send; None (nothing
        sent) when the claim is no longer ours. The scope is looked up first (Matrix asks the
        homeserver once per run): its failure is a send that never left."""
        try:
            scope = adapter.idempotency_scope()
        except TransientError as exc:
            exc.maybe_sent = False  # a question, not a post
            raise
        staged = self._staged(ledger, adapter, claim, message)
        if staged is None:
            return None
        ready, claim = staged  # the claim's lease may have been renewed for the uploads
        if not ledger.begin_send(claim, self.clock(), scope=scope):
            return None
        try:
            return adapter.send(ready, key)
        except StaleMedia:
            # The network forgot an upload or a container (nothing was posted): make them
            # afresh, once.
            again = self._staged(ledger, adapter, claim, message, reuse=False)
            return None if again is None else adapter.send(again[0], key)

    def _staged(
        self,
        ledger: Ledger,
        adapter: Channel,
        claim: Claim,
        message: Message,
        *,
        reuse: bool = True,
    ) -> tuple[Message, Claim] | None:
        """`message` as it is posted: its files uploaded (`_uploaded`) and its container
        made (`_prepared`), each recorded in the ledger before the send begins, and the claim
        (its lease renewed if the uploads used up half of it); None (send nothing) when the
        claim is no longer ours."""
        uploaded = self._uploaded(ledger, adapter, claim, message, reuse=reuse)
        if uploaded is None:
            return None
        ready, claim = uploaded
        prepared = self._prepared(ledger, adapter, claim, ready, reuse=reuse)
        return None if prepared is None else (prepared, claim)

    def _prepared(
        self, ledger: Ledger, adapter: Channel, claim: Claim, message: Message, *, reuse: bool
    ) -> Message | None:
        """`message` with `prepared` set, for a channel that publishes from an object it makes
        first (`Channel.prepares_post`: an Instagram or Threads container); None when the
        claim is no longer ours.

        Each new ref is recorded in the ledger before the adapter is asked again (to wait
        until the object is ready), so every later attempt, on any host sharing the ledger,
        publishes that object or finds it published: one post. A recorded ref is reused even
        when the item was edited since (its digest differs): it may have been published by
        an attempt whose answer was lost. Only the network's refusal (an ERROR or EXPIRED
        container; `reuse` False after StaleMedia) makes a new one."""
        if not adapter.prepares_post:
            return message
        from commcal.media import prepared_digest

        recorded = ledger.uploads(claim.delivery_id) if reuse else {}
        ref = recorded.get(PREPARED, ("", ""))[1]
        for _ in range(MAX_PREPARES):
            try:
                ready = adapter.prepare(message, ref)
            except TransientError as exc:
                exc.maybe_sent = False  # a container, not a post
                raise
            if ready == ref:
                return replace(message, prepared=ref)
            ref = ready
            if not ledger.record_upload(
                claim, position=PREPARED, digest=prepared_digest(message), ref=ref, now=self.clock()
            ):
                return None
        raise TransientError(
            f"{adapter.type_name} refused the containers made for this post (ERROR or EXPIRED) "
            f"{MAX_PREPARES - 1} times in a row; nothing was posted"
        )

    def _uploaded(
        self,
        ledger: Ledger,
        adapter: Channel,
        claim: Claim,
        message: Message,
        *,
        reuse: bool = True,
    ) -> tuple[Message, Claim] | None:
        """`message` with every file's `ref` set, for a channel that uploads media before the
        post (`Channel.uploads_media`), and the claim (its lease renewed if the uploads used up
        half of it); None (send nothing) when the claim is no longer ours.

        Each upload's ref is recorded in the ledger before the next step, so a send resumed
        after a crash (or a retry) posts with the files uploaded before, unless a file changed
        since (its digest differs) or `reuse` is False (the network refused the refs as stale).
        An upload that fails is a send that never left: nothing was posted."""
        if not adapter.uploads_media or not message.media:
            return message, claim
        from commcal.media import digest

        # Read with the batch's claim, once: a second attempt in this run reads the ledger.
        read = self._batch_uploads.get(adapter.name, {}).pop(claim.delivery_id, None)
        if read is None:
            read = ledger.uploads(claim.delivery_id)
        recorded = read if reuse else {}
        memo = self._memos.get(adapter.name)
        media = []
        for position, item in enumerate(message.media):
            if item.ref:
                media.append(item)
                continue
            try:
                fingerprint = digest(item, memo.digests if memo is not None else None)
            except OSError as exc:
                raise PermanentError(f"media file {item.path}: {exc.strerror or exc}") from exc
            found = recorded.get(position)
            if found is not None and found[0] == fingerprint:
                ref = found[1]
            else:
                try:
                    ref = adapter.upload(item)
                except TransientError as exc:
                    exc.maybe_sent = False  # an upload, not a post
                    raise
                except OSError as exc:
                    raise PermanentError(f"media file {item.path}: {exc.strerror or exc}") from exc
                if not ledger.record_upload(
                    claim, position=position, digest=fingerprint, ref=ref, now=self.clock()
                ):
                    return None
                # A large file takes a while: renew the lease before it runs low, as `_batch`
                # does between sends, so the post is not refused for a lease spent uploading.
                lease = self.config.publish.lease
                if claim.lease_until - self.clock() < lease / 2:
                    renewed = ledger.extend(claim, self.clock(), lease)
                    if renewed is None:
                        return None
                    claim = renewed
            media.append(replace(item, ref=ref))
        return replace(message, media=tuple(media)), claim

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
            return Outcome(delivery, OutcomeState.HELD, str(stale))
        return Outcome(delivery, OutcomeState.FAILED, error, attempts=claim.attempt)

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
            OutcomeState.UNKNOWN,
            f"{error}; {unresolved(delivery)}",
            attempts=claim.attempt,
        )


def publish(
    project: Project,
    *,
    now: datetime | None = None,
    state: str | None = None,
    dry_run: bool = False,
    filters: Filters = Filters(),
    on_outcome: Callable[[Outcome], None] | None = None,
    stop: threading.Event | None = None,
    catch_up: bool = False,
    new_ledger: bool = False,
    settled: Mapping[str, datetime] | None = None,
    keep_members: bool = True,
) -> Report:
    """Send everything due at `now`. Raises ConfigError when the project cannot publish at all
    (errors in commcal.yaml, no channels). Items and files with errors are left out and listed
    in the report's problems; everything else is published."""
    if (blocker := project.publish_blocker()) is not None:
        raise ConfigError(blocker)
    publisher = Publisher(
        project.publishable(),
        project.config.ledger_url(state),
        now or datetime.now(UTC),
        dry_run=dry_run,
        filters=filters,
        on_outcome=on_outcome,
        stop=stop or threading.Event(),
        catch_up=catch_up,
        new_ledger=new_ledger,
        settled=settled or {},
        keep_members=keep_members,
    )
    report = publisher.run()
    report.problems[:0] = project.errors
    return report


def sent_detail(receipt: Receipt) -> str:
    """What a sent outcome shows: the remote id, and the adapter's note when it has one (a link
    card left out, or why the id is unknown)."""
    if receipt.remote_id and receipt.note:
        return f"{receipt.remote_id} ({receipt.note})"
    return receipt.remote_id or receipt.note
