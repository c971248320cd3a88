"""Fixture ledgers for inbox, kb export, report and lint-from-results: sent deliveries written
through the claim protocol, then snapshots and replies through add_snapshots / add_replies (the
methods `commcal pull` writes with). Each test shows its replies; these are the plumbing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from commcal.engagement.model import Reply, Snapshot
from commcal.ledger import DueDelivery, open_ledger

CONFIG = """\
timezone: Europe/Athens
locale: el
state: sqlite:///.commcal/state.db
channels:
  mastodon: {type: console}
  bluesky: {type: console}
"""

# Tuesday 1 December 2026 is the fixtures' week; Athens is UTC+2 in winter, UTC+3 in summer.
COMMUNITY = """\
calendar: community
timezone: Europe/Athens
staff:
  - mon-fri 09:00-17:00
  - fri 22:00-02:00
defaults: {channels: [mastodon, bluesky]}
items:
  - id: weekly-tip
    kind: post
    template: posts/tip
    schedule: {cron: "0 10 * * TUE"}
  - id: evening-poll
    kind: post
    template: posts/tip
    schedule: {cron: "0 21 * * FRI"}
"""

LEDGER = ".commcal/state.db"


def sent(root: Path, rows: Sequence[tuple[str, str, str, str, datetime]]) -> None:
    """Record deliveries (id, calendar, item, channel, sent at) as sent, as publish would."""
    ledger = open_ledger(f"sqlite:///{root / LEDGER}")
    try:
        for delivery_id, calendar, item, channel, when in rows:
            d = DueDelivery(delivery_id, calendar, item, channel, when)
            claim = ledger.claim(
                d, worker="w", now=when, lease=timedelta(minutes=5), idempotent=False
            )
            assert claim is not None and ledger.begin_send(claim, when)
            ledger.record_sent(
                claim, remote_id=f"post-{delivery_id}", url=f"https://x/{delivery_id}", now=when
            )
    finally:
        ledger.close()


def store(
    root: Path,
    replies: Sequence[Reply] = (),
    snapshots: Sequence[Snapshot] = (),
    marks: Sequence[tuple[str, str]] = (),
) -> None:
    ledger = open_ledger(f"sqlite:///{root / LEDGER}")
    try:
        ledger.add_snapshots(snapshots)
        ledger.add_replies(replies)
        for n, (reply_id, mark) in enumerate(marks):
            ledger.mark_reply(
                reply_id, mark, now=datetime(2026, 12, 5, tzinfo=UTC) + timedelta(minutes=n)
            )
    finally:
        ledger.close()


def reply(
    n: int | str,
    text: str,
    at: datetime,
    *,
    author: str = "@ama@example.social",
    parent: str = "post-d1",
    delivery: str = "d1",
    channel: str = "mastodon",
    by_team: bool = False,
    lang: str = "",
) -> Reply:
    return Reply(
        id=f"{channel}:{n}",
        delivery_id=delivery,
        channel=channel,
        remote_id=str(n),
        parent_id=parent,
        author=author,
        text=text,
        created_at=at,
        url=f"https://example.social/@x/{n}",
        by_team=by_team,
        lang=lang,
    )
