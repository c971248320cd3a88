"""Threads (Meta): a text, image or carousel post, or a reply, on a Threads profile.

API: a media container, POST /{threads-user-id}/threads, then POST
/{threads-user-id}/threads_publish with its creation_id
(https://developers.facebook.com/docs/threads/posts). A container's state is GET
/{container-id}?fields=status,error_message: EXPIRED, ERROR, FINISHED, IN_PROGRESS or
PUBLISHED (https://developers.facebook.com/docs/threads/troubleshooting#publishing-does-not-
return-a-media-id). Threads fetches every image from a public URL. The container is recorded
before it is published (`graph.ContainerChannel`).

A reply: `Message.options["reply_to"]` holds the post it answers: a thread's part (calendar
`thread:`, a `ReplyTo` whose `parent` is the part before) or a remote id; sent as `reply_to_id`
(https://developers.facebook.com/docs/threads/retrieve-and-manage-replies/create-replies).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from commcal.channels.base import REPLIES, Message, ReplyTo, Setting
from commcal.channels.graph import ContainerChannel, alt_text
from commcal.errors import ConfigError

if TYPE_CHECKING:
    import regex as _regex_mod


@functools.cache
def _emoji() -> _regex_mod.Pattern[str]:
    import regex

    return regex.compile(r"[\p{Extended_Pictographic}\p{Regional_Indicator}]")


def threads_length(text: str) -> int:
    """Length the way Threads counts it: a character is one, an emoji its UTF-8 bytes
    (posts guide, "Limitations": "Emojis are counted as the number of UTF-8 bytes")."""
    if text.isascii():
        return len(text)
    import regex

    emoji = _emoji()
    return sum(
        len(cluster.encode("utf-8")) if emoji.search(cluster) else 1
        for cluster in regex.findall(r"\X", text)
    )


def reply_id(message: Message) -> str | None:
    """The id of the post `message` answers: a thread's part before it, or a given id."""
    reply_to = message.options.get("reply_to")
    if isinstance(reply_to, ReplyTo):
        return reply_to.parent
    return None if reply_to is None else str(reply_to)


class ThreadsChannel(ContainerChannel):
    type_name = "threads"
    description = "A post or reply on a Threads profile (Meta)"
    network = "Threads"
    # A thread's parts reply to each other (Message.options["reply_to"]: a ReplyTo).
    thread_mode: ClassVar[str] = REPLIES
    settings_schema: ClassVar[Mapping[str, Setting]] = {
        "user_id": Setting(
            "the Threads profile's numeric id (GET /me?fields=id with the token shows it)",
            required=True,
        ),
        "token": Setting(
            "a Threads access token with threads_basic and threads_content_publish "
            "(and threads_manage_replies for replies)",
            required=True,
            private=True,
        ),
        "api_url": Setting(
            "the Threads API base with its version", default="https://graph.threads.net/v1.0"
        ),
        "media_base_url": Setting(
            "the public https address where the project's media/ folder is served, e.g. "
            "https://example.org/media (Threads fetches each image from there)",
        ),
    }
    create_edge = "threads"
    publish_edge = "threads_publish"
    status_field = "status"
    status_fields = "id,status,error_message"
    # Text posts: 500 characters, an emoji counted as its UTF-8 bytes (posts guide,
    # "Limitations").
    max_length = 500
    length_unit = "characters (an emoji counts as its UTF-8 bytes)"
    # A carousel holds 2 to 20 images or videos (posts guide, "Carousel posts").
    max_media = 20
    # Images: JPEG or PNG, at most 8 MB, an aspect ratio of at most 10:1 (posts guide, "Image
    # specifications", https://developers.facebook.com/docs/threads/overview#image-specifications).
    # No video: this adapter makes image containers only.
    image_types = frozenset({"image/jpeg", "image/png"})
    max_media_bytes = 8 * 1024 * 1024
    max_aspect_ratio = 10.0
    # 250 API-published posts and 1,000 replies per profile in a 24-hour moving period
    # (https://developers.facebook.com/docs/threads/overview#rate-limiting);
    # GET /{threads-user-id}/threads_publishing_limit tells the current usage.
    daily_posts = 250
    daily_replies = 1000
    # No idempotency key: see ContainerChannel for what keeps a post single.
    idempotent = False

    def configure(self) -> None:
        super().configure()
        user = self.options["user_id"]
        if isinstance(user, str) and not (user.isdigit() or user == "me"):
            raise ConfigError(
                f"channel {self.name!r} (threads): user_id must be the profile's numeric id, "
                f"not {user!r}"
            )

    def measure(self, text: str) -> int:
        return threads_length(text)

    def check(self, message: Message) -> list[str]:
        problems = super().check(message)
        reply_to = reply_id(message)
        if reply_to is not None and not reply_to.isdigit():
            problems.append(f"reply_to must be the id of a Threads post (digits), not {reply_to!r}")
        return problems

    def container_fields(self, message: Message) -> list[dict[str, Any]]:
        urls = self.public_urls(message)
        final: dict[str, Any] = {"text": message.text}
        reply_to = reply_id(message)
        if reply_to:
            final["reply_to_id"] = reply_to
        if not urls:
            return [{"media_type": "TEXT", **final}]
        # alt_text on image containers, carousel items too (https://developers.facebook.com/
        # docs/threads/posts/accessibility).
        alts = [alt_text(media.alt) for media in message.media]
        if len(urls) == 1:
            return [{"media_type": "IMAGE", "image_url": urls[0], **alts[0], **final}]
        items: list[dict[str, Any]] = [
            {"media_type": "IMAGE", "image_url": url, **alt, "is_carousel_item": "true"}
            for url, alt in zip(urls, alts, strict=True)
        ]
        return [*items, {"media_type": "CAROUSEL", **final}]

    token_hint = (
        "the Threads access token has expired or was revoked: a long-lived token lasts 60 days "
        "and must be refreshed (GET /refresh_access_token) before then; put the new one in the "
        "environment variable"
    )
    permission_hint = (
        "the token lacks a permission: it needs threads_basic and threads_content_publish "
        "(threads_manage_replies for replies)"
    )
