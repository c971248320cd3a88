"""The plain objects of engagement: what `pull` writes into the ledger and `inbox`/`report` read.

Snapshots are timestamped and never overwritten, so trends can be drawn: a new pull of the same
post is a new Snapshot. A Reply is kept once per network id (a later pull of the same reply
leaves the first row); its author is the network handle, never an e-mail address.

The ledger's side (commcal/ledger/base.py, implemented in commcal/ledger/sql.py):
    add_snapshots(snapshots: Sequence[Snapshot]) -> int        rows written
    snapshots(*, since: datetime | None = None, delivery_ids: Iterable[str] | None = None)
        -> Iterator[Snapshot]                                   oldest first
    add_replies(replies: Sequence[Reply]) -> int                new rows written (others ignored)
    replies(*, since: datetime | None = None) -> Iterator[Reply] oldest first
    mark_reply(reply_id: str, mark: str, *, now: datetime) -> None   (MARKS; unknown id: KeyError)
    reply_marks() -> dict[str, list[str]]                       reply id -> marks, oldest first
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# What a person can say of a reply (`commcal inbox mark ID MARK`): that it is answered, that it
# is not a question after all (the heuristic was wrong), that it IS one, or that the question and
# its accepted answer may go into the knowledge base (`kb export` publishes nothing else).
MARKS = ("answered", "not-a-question", "question", "kb")

# Snapshot.status: the post was read; the network says it is gone (a 404 is recorded once, not
# retried forever); the read failed for another reason (kept so `report` can say so).
SNAPSHOT_STATES = ("ok", "gone", "error")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The counts one post had at one instant."""

    delivery_id: str
    channel: str
    remote_id: str
    taken_at: datetime  # aware, UTC
    sent_at: datetime | None  # when the delivery was sent (so "at 24 h" can be computed)
    likes: int = 0  # favourites (Mastodon), likes (Bluesky), reactions (Matrix, Discord)
    reposts: int = 0  # boosts, reposts
    replies: int = 0
    quotes: int = 0
    status: str = "ok"  # one of SNAPSHOT_STATES
    # Network-specific figures: poll results {"poll": {"option": votes}}, reactions by emoji ...
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reply:
    """One reply or mention that answers (directly or further down the thread) a sent post."""

    id: str  # unique across networks: f"{channel}:{network id}"
    delivery_id: str  # the sent delivery whose thread it is in
    channel: str
    remote_id: str  # the network's id of the reply
    parent_id: str  # the network id it answers directly (the post, or another reply)
    author: str  # the network handle (@name@host, name.bsky.social, @user:server); never e-mail
    text: str
    created_at: datetime  # aware, UTC
    url: str = ""  # public link to the reply where the network has one
    by_team: bool = False  # written by the channel's own account (an answer from the team)
    lang: str = ""  # the language the network or the author tagged, where known
