"""Reading a Discord webhook message back: its reactions and poll results.

GET <webhook_url>/messages/{message.id}
(https://discord.com/developers/docs/resources/webhook#get-webhook-message) answers the Message
object (https://discord.com/developers/docs/resources/message#message-object): `reactions`, a
list of {count, emoji: {id, name}} (#reaction-object), and for a poll `poll.results.
answer_counts` [{id, count}] matched to `poll.answers` [{answer_id, poll_media: {text}}]
(https://discord.com/developers/docs/resources/poll#poll-results-object). The results may be
inexact until `is_finalized`. A deleted message answers 404 (code 10008, Unknown Message).

Not available through a webhook: replies (a webhook token reads only the webhook's own
messages, never the channel) and reposts; reading them needs a bot token in the guild.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from commcal.channels import httpkit
from commcal.channels.base import SendError
from commcal.engagement.pull import Cursor, Gate, Gone, Pulled, SentPost, count, not_found, obj

if TYPE_CHECKING:
    from commcal.channels.discord import DiscordChannel


def read(channel: DiscordChannel, post: SentPost, cursor: Cursor | None, gate: Gate) -> Pulled:
    parts = urlsplit(channel.secret("webhook_url"))
    path = parts.path.rstrip("/") + "/messages/" + quote(post.remote_id, safe="")
    url = urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
    try:
        message = httpkit.json_body(gate.call(lambda: channel.call("GET", url)))
    except SendError as exc:
        if not_found(exc):
            raise Gone from None
        raise
    reactions: dict[str, int] = {}
    found = message.get("reactions")
    for reaction in found if isinstance(found, list) else []:
        if not isinstance(reaction, dict) or not isinstance(reaction.get("emoji"), dict):
            continue
        emoji = reaction["emoji"]
        # A custom emoji is named with its id (<:name:id>); a Unicode one by itself.
        name = str(emoji.get("name") or "?")
        key = f"<:{name}:{emoji['id']}>" if emoji.get("id") else name
        reactions[key] = reactions.get(key, 0) + count(reaction.get("count"))
    extra: dict[str, Any] = {"reactions": reactions} if reactions else {}
    poll = _poll(message.get("poll"))
    if poll is not None:
        extra.update(poll)
    return Pulled(likes=sum(reactions.values()), extra=extra)


def _poll(poll: Any) -> dict[str, Any] | None:
    if not isinstance(poll, dict):
        return None
    answers = poll.get("answers")
    names = {
        a.get("answer_id"): str(obj(a.get("poll_media")).get("text") or a.get("answer_id"))
        for a in (answers if isinstance(answers, list) else [])
        if isinstance(a, dict)
    }
    results = obj(poll.get("results"))
    counts = dict.fromkeys(names.values(), 0)
    found = results.get("answer_counts")
    for entry in found if isinstance(found, list) else []:
        if isinstance(entry, dict) and entry.get("id") in names:
            counts[names[entry["id"]]] = count(entry.get("count"))
    return {"poll": counts, "poll_final": bool(results.get("is_finalized"))}
