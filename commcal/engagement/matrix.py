"""Reading a Matrix message back: the events that relate to it.

GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}
(https://spec.matrix.org/v1.13/client-server-api/#get_matrixclientv1roomsroomidrelationseventid)
pages through every event whose `m.relates_to.event_id` is the message: `m.reaction` events
with `rel_type: m.annotation` are counted per `key` (the emoji), `m.room.message` events with
`rel_type: m.thread` are the replies in its thread. A reply that only quotes the message
(`m.in_reply_to` without a thread) is not a relation and is not found this way.

Each pull reads the relations whole (`next_batch` pages, newest first): a reaction taken back
is redacted, and a redacted event loses its `m.relates_to`, so counts kept from an incremental
read would never go down. The ledger keeps each reply once (by event id). by_team: the sender
is the one who sent the message (GET /rooms/{roomId}/event/{eventId}, which also shows a
message deleted by redaction: recorded gone).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from commcal.channels import httpkit
from commcal.channels.base import SendError
from commcal.channels.matrix import event_link
from commcal.engagement.model import Reply
from commcal.engagement.pull import Cursor, Gate, Gone, Pulled, SentPost, not_found, obj

if TYPE_CHECKING:
    from collections.abc import Callable

    import requests

    from commcal.channels.matrix import MatrixChannel

# Events per page (the spec lets the server cap it; Synapse takes up to 1000) and the most
# pages read for one message: 100,000 related events.
PAGE = 1000
MAX_PAGES = 100


def read(channel: MatrixChannel, post: SentPost, cursor: Cursor | None, gate: Gate) -> Pulled:
    homeserver = str(channel.value("homeserver")).rstrip("/")
    room = str(channel.value("room_id"))
    token = channel.secret("access_token")
    url = (
        f"{homeserver}/_matrix/client/v1/rooms/{quote(room, safe='')}/relations/"
        f"{quote(post.remote_id, safe='')}"
    )
    event_url = (
        f"{homeserver}/_matrix/client/v3/rooms/{quote(room, safe='')}/event/"
        f"{quote(post.remote_id, safe='')}"
    )
    try:
        # The message itself: its sender is the team's account (by_team), and a message the
        # team deleted is redacted: its content emptied, `unsigned.redacted_because` set
        # (https://spec.matrix.org/v1.13/client-server-api/#redactions).
        original = httpkit.json_body(gate.call(_get(channel, event_url, token, {})))
        if obj(original.get("unsigned")).get("redacted_because") or not original.get("content"):
            raise Gone
        own = str(original.get("sender") or "")
        # By event id: a server whose pages overlap (or that hands back a token it gave
        # before, which would loop until MAX_PAGES) must not count one reaction twice.
        events: dict[str, dict[str, Any]] = {}
        params: dict[str, str] = {"limit": str(PAGE)}
        tokens: set[str] = set()
        for _ in range(MAX_PAGES):
            page = httpkit.json_body(gate.call(_get(channel, url, token, dict(params))))
            chunk = page.get("chunk")
            for e in chunk if isinstance(chunk, list) else []:
                if isinstance(e, dict) and isinstance(e.get("event_id"), str):
                    events.setdefault(e["event_id"], e)
            following = page.get("next_batch")
            if not isinstance(following, str) or not following or following in tokens:
                break
            tokens.add(following)
            params["from"] = following
    except SendError as exc:
        if not_found(exc):
            raise Gone from None
        raise
    reactions: dict[str, int] = {}
    replies: list[Reply] = []
    for event in events.values():
        content = obj(event.get("content"))
        relation = content.get("m.relates_to")
        if not isinstance(relation, dict):
            continue  # redacted
        kind = relation.get("rel_type")
        if event.get("type") == "m.reaction" and kind == "m.annotation":
            key = str(relation.get("key") or "")
            reactions[key] = reactions.get(key, 0) + 1
        elif event.get("type") == "m.room.message" and kind == "m.thread":
            found = _reply(channel.name, post, room, event, content, relation, own)
            if found is not None:
                replies.append(found)
    return Pulled(
        likes=sum(reactions.values()),
        replies=len(replies),
        extra={"reactions": dict(sorted(reactions.items()))} if reactions else {},
        new_replies=tuple(replies),
    )


def _get(
    channel: MatrixChannel, url: str, token: str, params: dict[str, str]
) -> Callable[[], requests.Response]:
    return lambda: channel.call("GET", url, token=token, params=params)


def _reply(
    channel: str,
    post: SentPost,
    room: str,
    event: dict[str, Any],
    content: dict[str, Any],
    relation: dict[str, Any],
    own: str,
) -> Reply | None:
    event_id = event.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        return None
    # In a thread, m.in_reply_to names the message answered; `is_falling_back` says it is only
    # there for clients without threads (the reply answers the thread, not that message).
    parent = post.remote_id
    answered = relation.get("m.in_reply_to")
    if isinstance(answered, dict) and not relation.get("is_falling_back"):
        parent = str(answered.get("event_id") or parent)
    stamp = event.get("origin_server_ts")
    created = (
        datetime.fromtimestamp(stamp / 1000, UTC)
        if isinstance(stamp, int) and not isinstance(stamp, bool)
        else datetime.now(UTC)
    )
    sender = str(event.get("sender") or "?")
    return Reply(
        id=f"{channel}:{event_id}",
        delivery_id=post.delivery_id,
        channel=channel,
        remote_id=event_id,
        parent_id=parent,
        author=sender,
        text=_body(content),
        created_at=created,
        url=event_link(room, event_id),
        by_team=bool(own) and sender == own,
    )


def _body(content: dict[str, Any]) -> str:
    """The message's text without a reply fallback (leading `> ` lines, then a blank line)."""
    lines = str(content.get("body") or "").split("\n")
    if lines and lines[0].startswith("> "):
        while lines and lines[0].startswith(">"):
            lines.pop(0)
        if lines and not lines[0].strip():
            lines.pop(0)
    return "\n".join(lines).strip()
