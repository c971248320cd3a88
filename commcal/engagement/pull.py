"""`commcal pull`: read back what each sent post got (counts, poll results, replies).

For every sent delivery in the window that has a remote id, the network's reader for its
channel type (`READER_MODULES`: one small module per network in commcal/engagement/) fetches the
post's counts and its replies, and the ledger records them with `record_pull`: the Snapshot,
the new Replies and the post's pull cursor in ONE transaction. So a run killed at any instant
leaves every post either wholly recorded or not at all: nothing already written is lost, and
nothing is written twice (a Snapshot per completed fetch; a Reply once per network id).
Its commits are relaxed (`PullStore.relaxed`): they survive a killed process, and only a power
cut may take the last few, which the next pull reads again.

Why readers live in commcal/engagement/<network>.py and not as a `Channel.pull` method: an
adapter module holds its settings, limits, `check` and `send` and nothing else (STYLE.md);
reading engagement is a different job with its own failure rules (a 404 is "gone", not an
error to retry), and it needs nothing of the adapter but its settings, secrets and `call`.
A plugin network adds a reader by `register_reader` without touching the adapter.

Rate limits (`Gate`): each channel's requests go through one gate that reads the network's
rate-limit headers. With no requests left it waits for the reset when that is within
`max_wait` seconds, else the channel stops for this run: its remaining posts are counted
`left` ("stopped: rate limited, N left for the next pull"). A 429 is waited out the same way.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from commcal.channels.base import Channel, PermanentError, SendError, TransientError
from commcal.engagement.model import Reply, Snapshot
from commcal.errors import CommcalError

if TYPE_CHECKING:
    import requests

    from commcal.ledger.sql import SqlLedger

DEFAULT_SINCE = timedelta(days=30)
# The longest a run waits for one rate-limit reset before it stops the channel for this run.
DEFAULT_MAX_WAIT = 60.0
# How many times one request is tried again after a 429 it could wait out.
RETRIES_AFTER_429 = 3
INTERRUPTED = "interrupted before this post (SIGTERM)"
# Transient failures in a row (timeouts, 5xx) after which a channel is left for the next pull.
FAILURES_IN_A_ROW = 3


@dataclass(frozen=True, slots=True)
class SentPost:
    """A sent delivery that `pull` reads back."""

    delivery_id: str
    channel: str
    remote_id: str
    url: str
    sent_at: datetime | None


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where the last pull of a post left off (the ledger's pull_cursors row)."""

    delivery_id: str
    cursor: str = ""  # the reader's own token: the newest reply id seen (Mastodon) ...
    gone: bool = False  # the network said the post is deleted: never asked again
    pulled_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Pulled:
    """What a reader found for one post."""

    likes: int = 0
    reposts: int = 0
    replies: int = 0
    quotes: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)
    new_replies: tuple[Reply, ...] = ()
    cursor: str = ""


class Gone(Exception):
    """The network says the post no longer exists (deleted): recorded once, never asked again."""


class RateLimited(Exception):
    """The network's rate limit is used up for longer than this run waits."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after


class Reader(Protocol):
    """Reads one network's counts and replies of a post."""

    def __call__(
        self, channel: Any, post: SentPost, cursor: Cursor | None, gate: Gate
    ) -> Pulled: ...


# Channel type -> reader, filled in lazily from commcal.engagement.<type> (their modules
# import requests-level helpers only when a pull runs).
READER_MODULES = {
    "mastodon": "commcal.engagement.mastodon",
    "bluesky": "commcal.engagement.bluesky",
    "matrix": "commcal.engagement.matrix",
    "discord": "commcal.engagement.discord",
}
# What each network without a reader cannot give, for the `unsupported` outcome.
UNSUPPORTED = {
    "telegram": "the Bot API cannot read a message's reactions or replies by id",
    "slack": "incoming webhooks cannot read messages back",
    "webhook": "a webhook receiver has nothing to read back",
    "smtp": "mail has no public counts (see click tracking in docs/cli.md)",
    "console": "nothing was posted",
    "x": "reading posts needs a paid X API tier",
}
_registered: dict[str, Reader] = {}


def register_reader(type_name: str, reader: Reader) -> None:
    """Make `pull` read posts of channel type `type_name` (a plugin's network) with `reader`."""
    _registered[type_name] = reader


def reader_for(channel: Channel) -> Reader | None:
    import importlib

    found = _registered.get(channel.type_name)
    if found is None and channel.type_name in READER_MODULES:
        module = importlib.import_module(READER_MODULES[channel.type_name])
        found = _registered[channel.type_name] = module.read
    return found


class Outcome(StrEnum):
    PULLED = "pulled"  # a Snapshot (and any new replies) recorded
    GONE = "gone"  # deleted on the network: recorded once, now
    WAS_GONE = "was-gone"  # deleted before: not asked again
    ERROR = "error"  # the read failed: an error Snapshot records why
    LEFT = "left"  # not read: the channel's rate limit stopped this run
    UNSUPPORTED = "unsupported"  # the network gives nothing to read back
    WOULD_PULL = "would-pull"  # --dry-run


@dataclass(frozen=True, slots=True)
class PostResult:
    post: SentPost
    outcome: Outcome
    snapshot: Snapshot | None = None
    new_replies: int = 0
    note: str = ""  # the error, why unsupported, or what --dry-run would fetch


@dataclass
class Report:
    since: datetime
    until: datetime
    dry_run: bool
    results: list[PostResult] = field(default_factory=list)
    # channel -> why it stopped (rate limited, with how long until the reset)
    stopped: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False  # stopped (SIGTERM) before every post was read
    # channel -> why it could not be reached (also in `stopped`): the run is not ok
    unreachable: dict[str, str] = field(default_factory=dict)
    failing: dict[str, int] = field(default_factory=dict)  # channel -> failed reads in a row

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.results if r.outcome is outcome)

    @property
    def ok(self) -> bool:
        return self.count(Outcome.ERROR) == 0 and not self.unreachable


class Gate:
    """Every request of one channel's pull: waits out rate limits within `max_wait`.

    Reads Mastodon's X-RateLimit-Remaining / X-RateLimit-Reset (ISO 8601)
    (https://docs.joinmastodon.org/api/rate-limits/), Bluesky's ratelimit-remaining /
    ratelimit-reset (Unix seconds, https://docs.bsky.app/docs/advanced-guides/rate-limits), and
    Discord's X-RateLimit-Remaining / X-RateLimit-Reset-After, and a 429's Retry-After (RFC 9110
    10.2.3; the adapters' `retry_after` also reads the bodies of Matrix and Discord 429s)."""

    def __init__(
        self,
        *,
        max_wait: float = DEFAULT_MAX_WAIT,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_wait = max_wait
        self.sleep = sleep
        self.clock = clock
        self.requests = 0
        self.waited = 0.0
        self._empty_until: float | None = None  # no requests left until this time

    def call(self, request: Callable[[], requests.Response]) -> requests.Response:
        """`request()` (one HTTP call through an adapter's `call`), within the rate limit."""
        if self._empty_until is not None:
            self._wait(self._empty_until - self.clock())
            self._empty_until = None
        for tries in range(RETRIES_AFTER_429 + 1):
            try:
                response = request()
            except TransientError as exc:
                status = getattr(getattr(exc, "response", None), "status_code", None)
                if status != 429:
                    raise
                if tries == RETRIES_AFTER_429:
                    raise RateLimited(exc.retry_after) from None
                self._wait(exc.retry_after if exc.retry_after is not None else 1.0)
                continue
            finally:
                self.requests += 1
            self._note_limit(response)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        if seconds > self.max_wait:
            raise RateLimited(seconds)
        if seconds:
            self.sleep(seconds)
            self.waited += seconds

    def _note_limit(self, response: requests.Response) -> None:
        from commcal.channels.httpkit import reset_seconds

        headers = response.headers
        for remaining_name, reset_name, form in (
            ("X-RateLimit-Remaining", "X-RateLimit-Reset", "iso"),
            ("ratelimit-remaining", "ratelimit-reset", "epoch"),
        ):
            remaining = headers.get(remaining_name)
            if remaining is None or not remaining.strip().isdigit():
                continue
            if int(remaining) <= 0:
                seconds = reset_seconds(headers.get(reset_name), form)  # type: ignore[arg-type]
                # Discord sends the wait itself, in seconds (X-RateLimit-Reset-After:
                # https://discord.com/developers/docs/topics/rate-limits#header-format).
                after = headers.get("X-RateLimit-Reset-After")
                if seconds is None and after is not None:
                    seconds = _seconds(after)
                self._empty_until = self.clock() + (seconds if seconds is not None else 1.0)
            return


def obj(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else {}: readers take the networks' answers as they come."""
    return value if isinstance(value, dict) else {}


def count(value: Any) -> int:
    """A count from a network's answer: a non-negative integer, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _seconds(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 <= value < float("inf") else None


def not_found(error: SendError) -> bool:
    """A refusal that says the post is not there (deleted): HTTP 404 or 410."""
    status = getattr(getattr(error, "response", None), "status_code", None)
    return isinstance(error, PermanentError) and status in (404, 410)


def sent_posts(
    ledger: SqlLedger, *, since: datetime, until: datetime, channels: Iterable[str] | None = None
) -> list[SentPost]:
    """The ledger's sent public deliveries due in [since, until) with a remote id, oldest first
    (a member's mail is never read back)."""
    from commcal.ledger import State

    wanted = None if channels is None else set(channels)
    return [
        SentPost(r.id, r.channel, r.remote_id, r.url or "", r.updated_at)
        for r in ledger.public_records(since, until)
        if r.state is State.SENT and r.remote_id and (wanted is None or r.channel in wanted)
    ]


def pull(
    ledger: SqlLedger,
    channels: Mapping[str, Channel],
    posts: Sequence[SentPost],
    *,
    now: datetime,
    since: datetime,
    dry_run: bool = False,
    max_wait: float = DEFAULT_MAX_WAIT,
    on_result: Callable[[PostResult], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
    clock: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Report:
    """Read back every post in `posts` and record what came back (see the module's text).

    `now` ends the window; each Snapshot carries the instant its counts were read (`clock`,
    default the real clock: a pinned `now` must not make two pulls' snapshots share a time).
    `stop()` true: the run ends after the post in hand, leaving the rest for the next pull."""
    report = Report(since=since, until=now, dry_run=dry_run)

    def taken_at() -> datetime:
        return clock() if clock is not None else datetime.now(UTC)

    cursors = ledger.pull_cursors([p.delivery_id for p in posts])
    gates: dict[str, Gate] = {}

    def read(post: SentPost) -> _Step:
        return _read_one(
            channels, post, cursors.get(post.delivery_id), gates, report,
            dry_run=dry_run, max_wait=max_wait, taken_at=taken_at, sleep=sleep,
        )  # fmt: skip

    with contextlib.nullcontext() if dry_run else ledger.relaxed():
        _run(ledger, posts, read, report, stop, on_result)
    return report


def _run(
    ledger: SqlLedger,
    posts: Sequence[SentPost],
    read: Callable[[SentPost], _Step],
    report: Report,
    stop: Callable[[], bool],
    on_result: Callable[[PostResult], None] | None,
) -> None:
    for post in posts:
        if stop():
            report.interrupted = True
            result = PostResult(post, Outcome.LEFT, note=INTERRUPTED)
        else:
            step = read(post)
            result = step.result
            if step.cursor is not None and result.snapshot is not None:
                new = ledger.record_pull(result.snapshot, step.replies, step.cursor)
                result = replace(result, new_replies=new)
        report.results.append(result)
        if on_result is not None:
            on_result(result)


@dataclass(frozen=True, slots=True)
class _Step:
    """What reading one post came to: its result and, when there is something to record, the
    replies and cursor to write with its snapshot."""

    result: PostResult
    replies: tuple[Reply, ...] = ()
    cursor: Cursor | None = None


def _read_one(
    channels: Mapping[str, Channel],
    post: SentPost,
    cursor: Cursor | None,
    gates: dict[str, Gate],
    report: Report,
    *,
    dry_run: bool,
    max_wait: float,
    taken_at: Callable[[], datetime],
    sleep: Callable[[float], None],
) -> _Step:
    channel = channels.get(post.channel)
    if channel is None:
        return _Step(
            PostResult(post, Outcome.UNSUPPORTED, note="the channel is no longer configured")
        )
    reader = reader_for(channel)
    if reader is None:
        why = UNSUPPORTED.get(channel.type_name, f"no reader for {channel.type_name} posts")
        return _Step(PostResult(post, Outcome.UNSUPPORTED, note=why))
    if cursor is not None and cursor.gone:
        return _Step(PostResult(post, Outcome.WAS_GONE, note="deleted on the network"))
    if post.channel in report.stopped:
        return _Step(PostResult(post, Outcome.LEFT, note=report.stopped[post.channel]))
    if dry_run:
        return _Step(
            PostResult(post, Outcome.WOULD_PULL, note=f"{channel.type_name} {post.remote_id}")
        )
    gate = gates.setdefault(post.channel, Gate(max_wait=max_wait, sleep=sleep))
    try:
        pulled = reader(channel, post, cursor, gate)
    except CommcalError as exc:  # the channel's settings (a token not in the environment)
        report.stopped[post.channel] = report.unreachable[post.channel] = str(exc)
        return _Step(PostResult(post, Outcome.LEFT, note=str(exc)))
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        # An answer shaped unlike the API's (readers take what comes, but a reader's slip on
        # garbage must cost one post, not the run; JSON nested deeper than Python's stack is
        # a RecursionError). Named by type only: it may quote the body.
        error = PermanentError(f"the answer could not be read ({type(exc).__name__})")
        return _error(post, cursor, report, error, channel.redact(str(error)), taken_at)
    except RateLimited as exc:
        wait = "" if exc.retry_after is None else f" (resets in {exc.retry_after:.0f} s)"
        report.stopped[post.channel] = f"rate limited{wait}"
        return _Step(PostResult(post, Outcome.LEFT, note=report.stopped[post.channel]))
    except Gone:
        snapshot = _snapshot(post, taken_at(), status="gone")
        gone = Cursor(post.delivery_id, gone=True, pulled_at=snapshot.taken_at)
        return _Step(
            PostResult(post, Outcome.GONE, snapshot, note="deleted on the network"), (), gone
        )
    except SendError as exc:
        text = channel.redact(str(exc))
        if isinstance(exc, TransientError) and exc.unreachable:
            # Nothing of the channel can be read this run (each try would wait for the
            # connect timeout): its posts are left for the next pull, and the run says so.
            report.stopped[post.channel] = report.unreachable[post.channel] = text
            return _Step(PostResult(post, Outcome.LEFT, note=text))
        return _error(post, cursor, report, exc, text, taken_at)
    snapshot = _snapshot(
        post,
        taken_at(),
        likes=pulled.likes,
        reposts=pulled.reposts,
        replies=pulled.replies,
        quotes=pulled.quotes,
        extra=dict(pulled.extra),
    )
    report.failing[post.channel] = 0
    cursor_now = Cursor(post.delivery_id, cursor=pulled.cursor, pulled_at=snapshot.taken_at)
    replies = tuple(_as_recorded(r, post, snapshot.taken_at) for r in pulled.new_replies)
    return _Step(PostResult(post, Outcome.PULLED, snapshot), replies, cursor_now)


def _as_recorded(reply: Reply, post: SentPost, read_at: datetime) -> Reply:
    """`reply` as the ledger may keep it, whatever the network said of it:

    - its author masked (`m***@example.org`) if a server named them by an e-mail address: the
      ledger refuses such an author, and one reply must not cost the post's pull (nor the
      run) while the address itself must never be stored;
    - its time within what can be true: not before the post was sent, not after it was read.
      A reply's time is often what the author's client claims (Bluesky's createdAt), and a
      reply dated 9999-12-31 would overflow in every zone east of UTC, breaking `inbox` and
      `report` for as long as it is stored."""
    from commcal.ledger.engagement import looks_like_address
    from commcal.ledger.model import mask_address

    if looks_like_address(reply.author):
        reply = replace(reply, author=mask_address(reply.author))
    earliest = post.sent_at or reply.created_at
    when = max(min(reply.created_at, read_at), min(earliest, read_at))
    return reply if when == reply.created_at else replace(reply, created_at=when)


def _snapshot(post: SentPost, taken_at: datetime, **counts: Any) -> Snapshot:
    return Snapshot(
        delivery_id=post.delivery_id,
        channel=post.channel,
        remote_id=post.remote_id,
        taken_at=taken_at,
        sent_at=post.sent_at,
        **counts,
    )


def _error(
    post: SentPost,
    cursor: Cursor | None,
    report: Report,
    error: SendError,
    text: str,
    taken_at: Callable[[], datetime],
) -> _Step:
    """A failed read, recorded as an error Snapshot (its cursor kept as it was). A server that
    times out or fails again and again (a stall costs the read timeout each time) stops its
    channel after FAILURES_IN_A_ROW posts."""
    failing = report.failing[post.channel] = report.failing.get(post.channel, 0) + 1
    if isinstance(error, TransientError) and failing >= FAILURES_IN_A_ROW:
        why = f"{failing} reads in a row failed, the last: {text}"
        report.stopped[post.channel] = report.unreachable[post.channel] = why
    snapshot = _snapshot(post, taken_at(), status="error", extra={"error": text})
    kept = cursor or Cursor(post.delivery_id)
    return _Step(PostResult(post, Outcome.ERROR, snapshot, note=text), (), kept)
