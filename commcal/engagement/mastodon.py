"""Reading a Mastodon status back: its counts, poll results and the replies below it.

GET /api/v1/statuses/:id (https://docs.joinmastodon.org/methods/statuses/#get): favourites_count,
reblogs_count, replies_count, and `poll.options[].votes_count`
(https://docs.joinmastodon.org/entities/Poll/). GET /api/v1/statuses/:id/context
(https://docs.joinmastodon.org/methods/statuses/#context): `descendants`, the whole tree of
replies below it, in one answer (it has no pagination and no `since_id`). Every descendant
becomes a Reply and the ledger keeps each once; the cursor records the newest descendant id
seen (status ids are snowflakes that sort by creation time, compared as numbers:
https://docs.joinmastodon.org/api/guidelines/#id), but nothing older is skipped: a remote
reply's id is its publishing time, and federation may bring it late. A deleted status answers
404.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from commcal.channels import httpkit
from commcal.channels.base import SendError
from commcal.engagement.model import Reply
from commcal.engagement.pull import Cursor, Gate, Gone, Pulled, SentPost, count, not_found, obj

if TYPE_CHECKING:
    from commcal.channels.mastodon import MastodonChannel


def read(channel: MastodonChannel, post: SentPost, cursor: Cursor | None, gate: Gate) -> Pulled:
    base = (
        str(channel.value("instance")).rstrip("/")
        + "/api/v1/statuses/"
        + quote(post.remote_id, safe="")
    )
    token = channel.secret("token")
    try:
        status = httpkit.json_body(gate.call(lambda: channel.call("GET", base, token=token)))
        context = httpkit.json_body(
            gate.call(lambda: channel.call("GET", base + "/context", token=token))
        )
    except SendError as exc:
        if not_found(exc):
            raise Gone from None
        raise
    own = _account_id(status)
    newest = cursor.cursor if cursor is not None else ""
    replies = []
    descendants = context.get("descendants")
    # Every descendant goes to the ledger, which keeps each once: none is skipped for being
    # older than the cursor, since a remote reply's id is made from when it was published,
    # not when it reached the instance (lib/mastodon/snowflake.rb in mastodon/mastodon), so
    # one delayed in federation sorts before replies already pulled.
    for found in descendants if isinstance(descendants, list) else []:
        if not isinstance(found, dict) or not _id(found.get("id")):
            continue
        reply_id = str(found["id"])
        if _later(reply_id, newest):
            newest = reply_id
        replies.append(_reply(channel.name, post, found, own))
    extra: dict[str, Any] = {}
    poll = status.get("poll")
    if isinstance(poll, dict) and isinstance(poll.get("options"), list):
        extra["poll"] = {
            str(o.get("title", "")): count(o.get("votes_count"))
            for o in poll["options"]
            if isinstance(o, dict)
        }
        extra["poll_voters"] = count(poll.get("voters_count") or poll.get("votes_count"))
    return Pulled(
        likes=count(status.get("favourites_count")),
        reposts=count(status.get("reblogs_count")),
        replies=count(status.get("replies_count")),
        # Quotes are counted only by servers with quote posts (Mastodon 4.4+: quotes_count).
        quotes=count(status.get("quotes_count")),
        extra=extra,
        new_replies=tuple(replies),
        cursor=newest,
    )


def _reply(channel: str, post: SentPost, found: dict[str, Any], own: str) -> Reply:
    account = obj(found.get("account"))
    acct = str(account.get("acct") or account.get("username") or "?")
    return Reply(
        id=f"{channel}:{found['id']}",
        delivery_id=post.delivery_id,
        channel=channel,
        remote_id=str(found["id"]),
        parent_id=str(found.get("in_reply_to_id") or post.remote_id),
        author=f"@{acct}",
        text=html_to_text(str(found.get("content") or "")),
        created_at=_instant(found.get("created_at")),
        url=str(found.get("url") or found.get("uri") or ""),
        by_team=bool(own) and str(account.get("id") or "") == own,
        lang=str(found.get("language") or ""),
    )


def _account_id(status: dict[str, Any]) -> str:
    return str(obj(status.get("account")).get("id") or "")


def _id(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and str(value) != ""


def _later(a: str, b: str) -> bool:
    """Whether status id `a` is newer than `b` ("" is older than everything)."""
    if a.isdigit() and b.isdigit():
        return int(a) > int(b)
    return (len(a), a) > (len(b), b)


def _instant(value: Any) -> datetime:
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return datetime.now(UTC)


class _Text(HTMLParser):
    """A status's HTML as plain text: paragraphs and line breaks kept, links kept as their URL
    (Mastodon shortens a link's visible text with `invisible`/`ellipsis` spans; the text of
    the whole anchor is the URL), mentions and hashtags as their text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._link: tuple[str, bool, int] | None = None  # (href, is mention/tag, start)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "br":
            self.parts.append("\n")
        elif tag == "p" and self.parts:
            self.parts.append("\n\n")
        elif tag == "a":
            classes = (found.get("class") or "").split()
            social = bool({"mention", "hashtag", "u-url"} & set(classes))
            self._link = (found.get("href") or "", social, len(self.parts))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._link is not None:
            href, social, start = self._link
            self._link = None
            shown = "".join(self.parts[start:])
            if href and not social and shown.strip() not in (href, ""):
                self.parts.append(f" ({href})")
            elif href and not shown.strip():
                self.parts.append(href)

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(content: str) -> str:
    parser = _Text()
    parser.feed(content)
    parser.close()
    text = "".join(parser.parts)
    return html.unescape(text).strip()
