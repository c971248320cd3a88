"""Facebook Pages: a post on a Page's feed, with a link or photos, as the Page.

API (Graph API, Pages): POST /{page-id}/feed with `message` and `link`
(https://developers.facebook.com/docs/pages-api/posts#publish-posts). Photos go up first,
unpublished, through POST /{page-id}/photos (`url`, or the file as multipart `source`), and the
post attaches them with `attached_media`
(https://developers.facebook.com/docs/graph-api/reference/page/photos#Creating and
https://developers.facebook.com/docs/pages-api/posts#publish-media-posts): an upload is
recorded before the post, so a resumed send attaches the same photos (`Channel.upload`).
"""

from __future__ import annotations

import json
import mimetypes
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from commcal.channels import httpkit
from commcal.channels.base import Media, Message, PermanentError, Receipt, Setting, unreadable
from commcal.channels.graph import GRAPH_API, GraphChannel, _graph_id
from commcal.errors import ConfigError

if TYPE_CHECKING:
    import requests


class FacebookChannel(GraphChannel):
    type_name = "facebook"
    description = "A post on a Facebook Page, with a link or photos"
    settings_schema: ClassVar[Mapping[str, Setting]] = {
        "page_id": Setting("the Page's numeric id, e.g. 104826152034921", required=True),
        "token": Setting(
            "a Page access token with pages_manage_posts and pages_read_engagement",
            required=True,
            private=True,
        ),
        "api_url": Setting(
            "the Graph API base with its version (https://developers.facebook.com/docs/"
            "graph-api/changelog/versions)",
            default=GRAPH_API,
        ),
    }
    # A Page post's message: 63,206 characters, the limit Facebook's composer enforces (the
    # Page feed reference, https://developers.facebook.com/docs/graph-api/reference/page/feed,
    # states none of its own).
    max_length = 63206
    length_unit = "characters"
    # Photos are uploaded before the post, unpublished, and attached to it. Photos only (no
    # video_types: `check_media` refuses a video at its file's line); attached_media names no
    # count, so none is checked offline.
    uploads_media = True
    # POST /feed takes no idempotency key: an interrupted post is recorded `unknown`.
    idempotent = False
    token_hint = (
        "the Page access token has expired or was revoked (a password change, a removed app or "
        "role): make a new long-lived Page token (GET /me/accounts with a long-lived user "
        "token) and put it in the environment variable"
    )
    permission_hint = (
        "the token lacks a permission: it must be a Page access token with pages_manage_posts "
        "and pages_read_engagement, from someone who can create content on the Page"
    )

    def configure(self) -> None:
        super().configure()
        page = self.options["page_id"]
        if isinstance(page, str) and not page.isdigit():
            raise ConfigError(
                f"channel {self.name!r} (facebook): page_id must be the Page's numeric id "
                f"(Page settings > About, or GET /me/accounts), not {page!r}"
            )

    def check(self, message: Message) -> list[str]:
        problems = super().check(message)
        if message.media:  # a post with photos may have no text
            problems = [p for p in problems if p != "message is empty"]
        link = message.options.get("link")
        if link is not None and not str(link).startswith(("https://", "http://")):
            problems.append(f"link must be a web address (https://...), not {str(link)!r}")
        return problems

    def _page(self) -> str:
        return str(self.value("page_id"))

    def upload(self, media: Media) -> str:
        """An unpublished photo of the Page; its id is attached to the post."""
        with httpkit.before_the_post():  # an unpublished photo is not a post
            response = self._upload(media)
        photo = _graph_id(response)
        if photo is None:
            # Nothing is posted yet: failing here costs an unused, unpublished photo at most.
            raise PermanentError(
                f"HTTP {response.status_code}: facebook answered the photo upload without an id"
            )
        return photo

    def _upload(self, media: Media) -> requests.Response:
        # Alt text is not sent: the Photo reference names no parameter for it on upload, and
        # Facebook writes its own (https://developers.facebook.com/docs/graph-api/reference/photo).
        data: dict[str, Any] = {"published": "false"}
        path = f"/{self._page()}/photos"
        if media.path.startswith(("https://", "http://")):
            return self.api("POST", path, data={**data, "url": media.path})
        mime = media.mime_type or mimetypes.guess_type(media.path)[0] or "image/jpeg"
        try:
            handle = open(media.path, "rb")  # noqa: SIM115 - closed below, after the request
        except OSError as exc:
            raise PermanentError(f"cannot read media file {media.path}: {exc.strerror}") from None
        with handle:
            files = {"source": (os.path.basename(media.path), handle, mime)}
            return self.api("POST", path, data=data, files=files)

    def send(self, message: Message, idempotency_key: str) -> Receipt:
        data: dict[str, Any] = {"message": message.text}
        link = message.options.get("link")
        if link:
            data["link"] = str(link)
        if message.media:
            photos = [media.ref or self.upload(media) for media in message.media]
            data["attached_media"] = json.dumps([{"media_fbid": photo} for photo in photos])
        response = self.api("POST", f"/{self._page()}/feed", data=data)
        # A 2xx is a post that exists: without an id it is sent with the id unknown.
        post_id = _graph_id(response)
        if post_id is None:
            return Receipt(note=unreadable(response, "a post id"))
        return Receipt(remote_id=post_id, url=f"https://www.facebook.com/{post_id}")

    def verify(self) -> str:
        page = httpkit.json_body(self.api("GET", f"/{self._page()}", params={"fields": "id,name"}))
        return f"token works for the Page {page.get('name', '?')} (id {page.get('id')})"
