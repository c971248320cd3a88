"""Instagram: an image post (or a carousel of images) on an Instagram professional account.

API (Instagram Graph API, content publishing): a media container, POST /{ig-user-id}/media,
then POST /{ig-user-id}/media_publish with its creation_id
(https://developers.facebook.com/docs/instagram-platform/content-publishing and
https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-user/media).
Instagram fetches every image itself from a public URL: it cannot take a file from this
machine. The container is recorded before it is published (`graph.ContainerChannel`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from commcal.channels.base import Message, PermanentError, Setting
from commcal.channels.graph import GRAPH_API, ContainerChannel, alt_text
from commcal.errors import ConfigError

# A hashtag and an @-mention as Instagram reads them in a caption.
HASHTAG = re.compile(r"(?<![\w&])#\w+")
MENTION = re.compile(r"(?<![\w.@])@[\w.]+")


class InstagramChannel(ContainerChannel):
    type_name = "instagram"
    description = "An image post or carousel on an Instagram professional account"
    network = "Instagram"
    settings_schema: ClassVar[Mapping[str, Setting]] = {
        "user_id": Setting(
            "the Instagram professional account's id (IG user id), e.g. 17841400008460056",
            required=True,
        ),
        "token": Setting(
            "an access token with instagram_basic and instagram_content_publish (Facebook "
            "Login) or instagram_business_content_publish (Instagram Login)",
            required=True,
            private=True,
        ),
        "api_url": Setting(
            "the Graph API base with its version: https://graph.facebook.com/v27.0 for a "
            "Facebook Login token, https://graph.instagram.com/v27.0 for an Instagram Login one",
            default=GRAPH_API,
        ),
        "media_base_url": Setting(
            "the public https address where the project's media/ folder is served, e.g. "
            "https://example.org/media (Instagram fetches each image from there)",
        ),
    }
    # Caption: at most 2,200 characters, 30 hashtags and 20 @-mentions (IG User Media,
    # parameter caption: https://developers.facebook.com/docs/instagram-platform/
    # instagram-graph-api/reference/ig-user/media#parameters).
    max_length = 2200
    length_unit = "characters"
    max_hashtags = 30
    max_mentions = 20
    # A carousel holds up to 10 images (content publishing guide, "Carousel posts").
    max_media = 10
    # Feed images must be JPEG (IG User Media reference, image specifications), of at most
    # 8 MiB (error subcode 2207004, "It should be less than 8 MiB", https://developers.
    # facebook.com/docs/instagram-platform/instagram-graph-api/reference/error-codes).
    image_types = frozenset({"image/jpeg"})
    max_media_bytes = 8 * 1024 * 1024
    # Feed images: an aspect ratio from 4:5 to 1.91:1 (IG User Media reference, image
    # specifications); longer side over shorter side, so a portrait past 4:5 but within 1.91:1
    # is left to the network's refusal. No video: this adapter makes image containers only.
    max_aspect_ratio = 1.91
    # An account makes at most 400 containers in a rolling 24 hours (IG User Media reference,
    # "Limitations"): a carousel of 10 costs 11.
    daily_containers = 400
    # Published posts per account in a 24-hour moving period: 50 in the media_publish
    # reference (https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/
    # reference/ig-user/media_publish#limitations); GET /{ig-user-id}/content_publishing_limit
    # tells an account's current quota and usage. Not checked offline: the network's refusal
    # is the delivery's error.
    daily_posts = 50
    # No idempotency key: see ContainerChannel for what keeps a post single.
    idempotent = False
    # 9007 (subcode 2207027), "the media is not ready for publishing, please wait for a
    # moment", can answer the publish of a container its status called FINISHED: nothing was
    # posted, and the same container is published on the next attempt, a minute later
    # (https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/
    # error-codes: "check the container status and publish when it is FINISHED").
    own_transient_codes: ClassVar[Mapping[int, float]] = {9007: 60.0}

    def configure(self) -> None:
        super().configure()
        user = self.options["user_id"]
        if isinstance(user, str) and not user.isdigit():
            raise ConfigError(
                f"channel {self.name!r} (instagram): user_id must be the account's numeric id "
                f"(GET /me/accounts?fields=instagram_business_account shows it), not {user!r}"
            )

    def check(self, message: Message) -> list[str]:
        problems = super().check(message)
        if not message.media:
            problems.append(
                "a post with no image cannot go to Instagram: add an image to the item, or "
                "leave this channel out of it"
            )
        hashtags = len(HASHTAG.findall(message.text))
        if hashtags > self.max_hashtags:
            problems.append(
                f"the caption has {hashtags} hashtags; Instagram allows {self.max_hashtags}"
            )
        mentions = len(MENTION.findall(message.text))
        if mentions > self.max_mentions:
            problems.append(
                f"the caption has {mentions} @-mentions; Instagram allows {self.max_mentions}"
            )
        return problems

    def container_fields(self, message: Message) -> list[dict[str, Any]]:
        urls = self.public_urls(message)
        if not urls:
            raise PermanentError("a post with no image cannot go to Instagram")
        # alt_text: image posts and carousel images, since March 24, 2025 (IG User Media
        # reference, https://developers.facebook.com/docs/instagram-platform/
        # instagram-graph-api/reference/ig-user/media).
        alts = [alt_text(media.alt) for media in message.media]
        if len(urls) == 1:
            return [{"image_url": urls[0], **alts[0], "caption": message.text}]
        items: list[dict[str, Any]] = [
            {"image_url": url, **alt, "is_carousel_item": "true"}
            for url, alt in zip(urls, alts, strict=True)
        ]
        return [*items, {"media_type": "CAROUSEL", "caption": message.text}]

    token_hint = (
        "the access token has expired or was revoked: make a new long-lived token (Meta's "
        "Access Token Debugger shows when one expires) and put it in the environment variable"
    )
    permission_hint = (
        "the token lacks a permission: it needs instagram_basic and instagram_content_publish "
        "(or instagram_business_content_publish), and the account must be a professional one"
    )
