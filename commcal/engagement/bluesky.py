"""Reading a Bluesky post back: app.bsky.feed.getPostThread on an AppView.

The PDS stores the post but counts nothing; an AppView indexes the network and answers
getPostThread (lexicons/app/bsky/feed/getPostThread.json) with `thread`, a
`app.bsky.feed.defs#threadViewPost` whose `post` (a postView) has likeCount, repostCount,
replyCount and quoteCount, and whose `replies` are threadViewPosts again (or #notFoundPost /
#blockedPost, skipped). A deleted post answers 400 {"error": "NotFound"} or a #notFoundPost.

Setting `appview` (the bluesky channel's): an AppView URL, default https://public.api.bsky.app,
which needs no login ("Does not require auth", the lexicon's description); or `pds`, which
asks through the account's own PDS, logged in, with the header
`atproto-proxy: did:web:api.bsky.app#bsky_appview` naming the AppView the PDS forwards to
(https://atproto.com/specs/xrpc#service-proxying). There is no "replies since" parameter:
each pull reads the thread whole, and the ledger keeps each reply once (by its at:// URI).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from commcal.channels import httpkit
from commcal.channels.base import SendError
from commcal.engagement.model import Reply
from commcal.engagement.pull import Cursor, Gate, Gone, Pulled, SentPost, count, not_found, obj

if TYPE_CHECKING:
    from commcal.channels.bluesky import BlueskyChannel

THREAD = "app.bsky.feed.getPostThread"
# How many levels of replies the AppView returns (lexicon: depth default 6, maximum 1000).
DEPTH = 100
PROXY = "did:web:api.bsky.app#bsky_appview"
# A handle is a domain name (https://atproto.com/specs/handle#handle-identifier-syntax); an
# AppView answering anything else (an e-mail address, markup) is not believed: the DID is used.
HANDLE = re.compile(
    r"([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
)
# What the AppView answers for an account whose handle it could not verify (its DNS or
# well-known record does not point back to the DID): no handle to show, nor to link.
INVALID_HANDLE = "handle.invalid"
# A DID (https://atproto.com/specs/did#at-protocol-did-identifier-syntax).
DID = re.compile(r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]")


def read(channel: BlueskyChannel, post: SentPost, cursor: Cursor | None, gate: Gate) -> Pulled:
    params = {"uri": post.remote_id, "depth": str(DEPTH), "parentHeight": "0"}
    appview = str(channel.value("appview") or "")
    try:
        if appview == "pds":
            response = gate.call(
                lambda: channel._authed(
                    "GET", THREAD, params=params, headers={"atproto-proxy": PROXY}
                )
            )
        else:
            url = appview.rstrip("/") + "/xrpc/" + THREAD
            response = gate.call(lambda: channel.call("GET", url, params=params))
    except SendError as exc:
        if not_found(exc) or getattr(exc, "name", "") == "NotFound":
            raise Gone from None
        raise
    thread = httpkit.json_body(response).get("thread")
    if not isinstance(thread, dict) or thread.get("$type") == "app.bsky.feed.defs#notFoundPost":
        raise Gone
    root = obj(thread.get("post"))
    own = obj(root.get("author")).get("did", "")
    replies: list[Reply] = []
    _walk(channel.name, post, thread, str(own), replies)
    return Pulled(
        likes=count(root.get("likeCount")),
        reposts=count(root.get("repostCount")),
        replies=count(root.get("replyCount")),
        quotes=count(root.get("quoteCount")),
        new_replies=tuple(replies),
    )


def _walk(channel: str, post: SentPost, node: dict[str, Any], own: str, out: list[Reply]) -> None:
    children = node.get("replies")
    for child in children if isinstance(children, list) else []:
        if not isinstance(child, dict) or not isinstance(child.get("post"), dict):
            continue  # #notFoundPost, #blockedPost
        view = child["post"]
        uri = view.get("uri")
        if isinstance(uri, str) and uri:
            out.append(_reply(channel, post, view, uri, own))
        _walk(channel, post, child, own, out)


def _reply(channel: str, post: SentPost, view: dict[str, Any], uri: str, own: str) -> Reply:
    author = obj(view.get("author"))
    record = obj(view.get("record"))
    parent = obj(obj(record.get("reply")).get("parent"))
    handle = _author(author)
    langs = record.get("langs")
    return Reply(
        id=f"{channel}:{uri}",
        delivery_id=post.delivery_id,
        channel=channel,
        remote_id=uri,
        parent_id=str(parent.get("uri") or post.remote_id),
        author=handle,
        text=str(record.get("text") or ""),
        # createdAt is what the author's client claims; indexedAt is when the AppView saw it.
        created_at=_instant(record.get("createdAt"), view.get("indexedAt")),
        url=f"https://bsky.app/profile/{quote(handle, safe=':.')}/post/{uri.rsplit('/', 1)[-1]}",
        by_team=bool(own) and author.get("did") == own,
        lang=str(langs[0]) if isinstance(langs, list) and langs else "",
    )


def _author(author: dict[str, Any]) -> str:
    """The author's handle if it is one, else their DID, else "?"."""
    for key, syntax in (("handle", HANDLE), ("did", DID)):
        value = author.get(key)
        shaped = isinstance(value, str) and len(value) <= 253 and syntax.fullmatch(value)
        if shaped and value != INVALID_HANDLE:
            return str(value)
    return "?"


def _instant(*values: Any) -> datetime:
    for value in values:
        try:
            when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            continue
        if when.tzinfo is not None:
            return when.astimezone(UTC)
    return datetime.now(UTC)
