"""Instagram: an image post (or a carousel of images) on an Instagram professional account.

API (Instagram Graph API, content publishing): a media container, POST /{ig-user-id}/media,
then POST /{ig-user-id}/media_publish with its creation_id
(https://developers.facebook.com/docs/instagram-platform/content-publishing and
https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/ig-user/media).
Instagram fetches every image itself from a public URL: it cannot take a file from this
machine. The container is recorded before it is published (`graph.ContainerChannel`).
"""

from __future__ import annotations

import mimetypes
import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from commcal.channels.base import Media, Message, PermanentError, Setting
from commcal.channels.graph import ContainerChannel
from commcal.errors import ConfigError

# A hashtag and an @-mention as Instagram reads them in a caption.
HASHTAG = re.compile(r"(?<![\w&])#\w+")
MENTION = re.compile(r"(?<![\w.@])@[\w.]+")


def media_type(media: Media) -> str:
    """The file's type, from its declared MIME type or its name (a URL's path too)."""
    path = urlsplit(media.path).path if "://" in media.path else media.path
    return media.mime_type or mimetypes.guess_type(path)[0] or ""


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
            "the Graph API base with its version: https://graph.facebook.com/v26.0 for a "
            "Facebook Login token, https://graph.instagram.com/v26.0 for an Instagram Login one",
            default="https://graph.facebook.com/v26.0",
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
    image_types = ("image/jpeg",)
    max_media_bytes = 8 * 1024 * 1024
    # An account makes at most 400 containers in a rolling 24 hours (IG User Media reference,
    # "Limitations"): a carousel of 10 costs 11.
    daily_containers = 400
    # Published posts per account in a 24-hour moving period: 50 in the media_publish
    # reference (https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/
    # reference/ig-user/media_publish#limitations); GET /{ig-user-id}/content_publishing_limit
    # tells an account's current quota and usage. A post over it fails with code 9 (permanent
    # for that run; the next day's run can retry with `commcal retry`).
    daily_posts = 50
    # No idempotency key: see ContainerChannel for what keeps a post single.
    idempotent = False

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
        if message.media:  # the caption may be empty when there is an image
            problems = [p for p in problems if p != "message is empty"]
        else:
            problems.append(
                "a post with no image cannot go to Instagram: add an image to the item, or "
                "leave this channel out of it"
            )
        if len(message.media) > self.max_media:
            problems.append(
                f"at most {self.max_media} images in one Instagram post, not {len(message.media)}"
            )
        for media in message.media:
            kind = media_type(media)
            if kind and kind not in self.image_types:
                problems.append(f"{media.path}: Instagram posts JPEG images only, not {kind}")
            if "://" in media.path:
                continue
            if not os.path.isfile(media.path):
                problems.append(f"media file {media.path} does not exist")
            elif os.path.getsize(media.path) > self.max_media_bytes:
                problems.append(f"{media.path} is over Instagram's image limit of 8 MiB")
        problems.extend(self.url_problems(message))
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
        urls = []
        for media in message.media:
            url = self.public_url(media)
            if url is None:
                raise PermanentError("; ".join(self.url_problems(message)))
            urls.append(url)
        if not urls:
            raise PermanentError("a post with no image cannot go to Instagram")
        if len(urls) == 1:
            return [{"image_url": urls[0], "caption": message.text}]
        items: list[dict[str, Any]] = [
            {"image_url": url, "is_carousel_item": "true"} for url in urls
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
