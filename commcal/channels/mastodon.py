"""Mastodon: a status on one account, with media, a poll and a content warning.

API: https://docs.joinmastodon.org/methods/statuses/#create and
https://docs.joinmastodon.org/methods/media/#v2
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlsplit

from commcal.channels import httpkit
from commcal.channels.base import (
    NOT_A_POLL,
    REPLIES,
    CannotChange,
    Media,
    Message,
    PermanentError,
    Receipt,
    ReplyTo,
    Setting,
    StaleMedia,
    TransientError,
    poll_option_problems,
    unreadable,
)
from commcal.channels.httpkit import HttpChannel
from commcal.channels.text import graphemes, mastodon_length
from commcal.errors import ConfigError
from commcal.media import mime_type, read_bytes

if TYPE_CHECKING:
    import requests

VISIBILITIES = ("public", "unlisted", "private", "direct")


class MastodonChannel(HttpChannel):
    native_polls = True  # Message.options["poll"] becomes the network's own poll
    type_name = "mastodon"
    description = "A status on a Mastodon (or compatible) account"
    # A thread's parts reply to each other (Message.options["reply_to"]).
    thread_mode: ClassVar[str] = REPLIES
    settings_schema: ClassVar[Mapping[str, Setting]] = {
        "instance": Setting("the server's address, e.g. https://mastodon.social", required=True),
        "token": Setting(
            "an access token with the write:statuses and write:media scopes",
            required=True,
            private=True,
        ),
        "visibility": Setting("public, unlisted, private or direct", default="public"),
        "max_length": Setting(
            "the server's character limit, if it allows more than 500", default=500, kind=int
        ),
        "max_image_bytes": Setting(
            "the server's image size limit in bytes, if not 16 MB (its MAX_IMAGE_SIZE)", kind=int
        ),
        "max_video_bytes": Setting(
            "the server's video size limit in bytes, if not 99 MB (its MAX_VIDEO_SIZE)", kind=int
        ),
    }
    # Mastodon's default limit; instances configure more and say so in
    # GET /api/v2/instance configuration.statuses.max_characters. Counted as Mastodon counts it:
    # graphemes, every URL as 23, `@user@domain` as `@user`
    # (app/validators/status_length_validator.rb).
    max_length = 500
    length_unit = "characters"
    # Mastodon's rate limiter sends X-RateLimit-Reset (an ISO 8601 time), not Retry-After
    # (https://docs.joinmastodon.org/api/rate-limits/).
    rate_limit_reset = ("X-RateLimit-Reset", "iso")
    # Mastodon keeps an Idempotency-Key for one hour and answers a repeat with the first status
    # (https://docs.joinmastodon.org/methods/statuses/#create, header Idempotency-Key). Later
    # than that a repeat could post twice, so the ledger records such a send `unknown` instead.
    idempotent = True
    idempotency_window = 3600.0
    # Defaults of configuration.polls (https://docs.joinmastodon.org/entities/Instance/#polls);
    # a poll needs at least 2 options (app/validators/poll_options_validator.rb).
    poll_min_options = 2
    poll_max_options = 4
    poll_max_option_length = 50
    poll_min_seconds = 300
    poll_max_seconds = 2_629_746
    # configuration.statuses.max_media_attachments
    # (https://docs.joinmastodon.org/entities/Instance/#max_media_attachments), and 4 images or
    # 1 video (PostStatusService: "Cannot attach a video to a post that already contains
    # images"). Files go up first (POST /api/v2/media), the status names them by id.
    max_media = 4
    video_alone = True
    uploads_media = True
    # app/models/media_attachment.rb (v4.2 and later; https://docs.joinmastodon.org/user/posting/
    # #media): IMAGE_LIMIT 16 MB and VIDEO_LIMIT 99 MB (instances may set MAX_IMAGE_SIZE and
    # MAX_VIDEO_SIZE, hence the settings), MAX_VIDEO_MATRIX_LIMIT 3840x2160, Attachmentable's
    # MAX_MATRIX_LIMIT 7680x4320 for images, MAX_DESCRIPTION_LENGTH 1,500 (characters), and
    # IMAGE_MIME_TYPES / VIDEO_MIME_TYPES.
    image_types = frozenset(
        {
            "image/jpeg",
            "image/png",
            "image/gif",
            "image/heic",
            "image/heif",
            "image/webp",
            "image/avif",
        }
    )
    video_types = frozenset({"video/mp4", "video/webm", "video/quicktime", "video/x-m4v"})
    max_image_bytes = 16 * 1024 * 1024
    max_video_bytes = 99 * 1024 * 1024
    max_image_pixels = 33_177_600
    max_video_pixels = 8_294_400
    max_alt_length = 1500
    # POST /api/v2/media answers 202 while a large file is processed; GET /api/v1/media/:id then
    # answers 206 until done, and 200 with `url` set (https://docs.joinmastodon.org/methods/
    # media/#get). Checked this many times, this far apart, before the upload is given up as
    # transient (nothing is posted; the next attempt uploads again).
    processing_checks = 10
    processing_interval = 1.0

    def configure(self) -> None:
        httpkit.check_https_url(self, "instance")
        if self.options["visibility"] not in VISIBILITIES:
            raise ConfigError(
                f"channel {self.name!r} (mastodon): visibility must be one of "
                f"{', '.join(VISIBILITIES)}, not {self.options['visibility']!r}"
            )
        limit = self.options["max_length"]
        if isinstance(limit, bool) or (isinstance(limit, int) and limit <= 0):
            raise ConfigError(f"channel {self.name!r} (mastodon): max_length must be above 0")
        self.sleep: Callable[[float], None] = time.sleep

    def measure(self, text: str) -> int:
        return mastodon_length(text)

    def check(self, message: Message) -> list[str]:
        problems = super().check(message)
        options = message.options
        spoiler = str(options.get("spoiler_text") or "")
        limit = self.limit()
        if spoiler and limit is not None:
            # The content warning counts towards the same limit as the text.
            length = graphemes(spoiler) + self.measure(message.text)
            if length > limit and self.measure(message.text) <= limit:
                problems.append(
                    f"text and content warning are {length} characters together, over "
                    f"mastodon's limit of {limit} by {length - limit}"
                )
        visibility = options.get("visibility")
        if visibility is not None and visibility not in VISIBILITIES:
            problems.append(f"visibility must be one of {', '.join(VISIBILITIES)}")
        poll = options.get("poll")
        if poll:
            problems.extend(self._poll_problems(poll))
            if message.media:
                problems.append("a mastodon status can have media or a poll, not both")
        return problems

    def _poll_problems(self, poll: Any) -> list[str]:
        if not isinstance(poll, Mapping):
            return [NOT_A_POLL]
        problems = poll_option_problems(
            poll,
            fewest=self.poll_min_options,
            most=self.poll_max_options,
            longest=self.poll_max_option_length,
            measure=graphemes,
        )
        duration = poll.get("duration_seconds")
        if duration is not None and not (
            self.poll_min_seconds <= int(duration) <= self.poll_max_seconds
        ):
            problems.append(
                f"poll duration must be between {self.poll_min_seconds} seconds and "
                f"{self.poll_max_seconds // 86400} days"
            )
        return problems

    # -- network --------------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = str(self.value("instance")).rstrip("/") + path
        return self.call(method, url, token=self.secret("token"), **kwargs)

    def remote_id_from_url(self, url: str) -> str | None:
        """https://instance/@user/123456 (the status page) -> 123456."""
        import re

        found = re.fullmatch(r"https?://[^/]+/@[^/]+/(\d+)/?", url.strip())
        return found.group(1) if found else None

    def send(self, message: Message, idempotency_key: str) -> Receipt:
        body: dict[str, Any] = {
            "status": message.text,
            "visibility": message.options.get("visibility") or self.options["visibility"],
        }
        if message.language:
            # Mastodon takes an ISO 639 code and ignores ones it does not know, so "el-GR" -> "el".
            body["language"] = message.language.split("-")[0].lower()
        if message.options.get("spoiler_text"):
            body["spoiler_text"] = str(message.options["spoiler_text"])
        poll = message.options.get("poll")
        if poll:
            body["poll"] = {
                "options": [str(choice) for choice in poll.get("options", [])],
                "expires_in": int(poll.get("duration_seconds") or 86400),
            }
            if poll.get("multiple"):
                body["poll"]["multiple"] = True
            if poll.get("results") == "hidden":
                # poll[hide_totals]: vote counts hidden until the poll ends
                # (https://docs.joinmastodon.org/methods/statuses/#create).
                body["poll"]["hide_totals"] = True
        elif message.media:
            body["media_ids"] = [media.ref or self.upload(media) for media in message.media]
        reply = message.options.get("reply_to")
        if isinstance(reply, ReplyTo):
            # A thread's part replies to the part before it:
            # https://docs.joinmastodon.org/methods/statuses/#create (in_reply_to_id)
            body["in_reply_to_id"] = reply.parent
        try:
            response = self._call(
                "POST", "/api/v1/statuses", json=body, headers={"Idempotency-Key": idempotency_key}
            )
        except PermanentError as exc:
            # 422 "Media 123 not found or already attached to another post": an upload the
            # server no longer has (unattached media are removed after a day). Nothing posted.
            if message.media and exc.response is not None and exc.response.status_code == 422:
                error = str(httpkit.json_body(exc.response).get("error") or "")
                if "not found" in error:
                    raise StaleMedia(self.redact(f"HTTP 422: {error}")) from None
            raise
        # A 2xx is a status that exists, whatever its body: an answer without an id (a proxy's
        # page, `{}`) is recorded sent with the id unknown, never posted again.
        status = httpkit.json_body(response)
        # `url` is the HTML page; it is null for some remote-only cases, `uri` never is.
        url = next((v for v in (status.get("url"), status.get("uri")) if isinstance(v, str)), None)
        status_id = status.get("id")
        if not isinstance(status_id, str | int) or isinstance(status_id, bool):
            return Receipt(url=url, note=unreadable(response, "a status id"))
        return Receipt(remote_id=str(status_id), url=url)

    def upload(self, media: Media) -> str:
        """POST /api/v2/media with the alt text (`description`) and focal point (`focus`,
        "x,y"); the media id once the server has processed the file
        (https://docs.joinmastodon.org/methods/media/#v2)."""
        data = read_bytes(media, self.http, self.media_limit("max_video_bytes"))
        name = os.path.basename(urlsplit(media.path).path) or "upload"
        form = {"description": media.alt} if media.alt else {}
        if media.focus is not None:
            form["focus"] = f"{media.focus[0]:g},{media.focus[1]:g}"
        response = self._call(
            "POST",
            "/api/v2/media",
            files={"file": (name, data, mime_type(media))},
            data=form,
        )
        try:
            attachment = _json(response)
        except PermanentError as exc:
            raise PermanentError(f"{exc}, to the upload of {name}; nothing was posted") from None
        if not isinstance(attachment.get("id"), str | int):
            # Nothing is posted yet: failing here costs an unused upload at most.
            raise PermanentError(
                f"HTTP {response.status_code}: mastodon answered the upload without a media id"
            )
        media_id = str(attachment["id"])
        if response.status_code == 202 or not attachment.get("url"):
            self._processed(media_id, name)
        return media_id

    # -- after the send -------------------------------------------------------------------------

    def cannot_retract(self) -> str:
        return ""

    def cannot_amend(self) -> str:
        return ""

    def _status_path(self, receipt: Receipt) -> str:
        if not receipt.remote_id:
            raise CannotChange("mastodon did not name the status when it was sent")
        return f"/api/v1/statuses/{quote(receipt.remote_id, safe='')}"

    def retract(self, receipt: Receipt, *, reason: str = "", key: str = "") -> bool:
        # https://docs.joinmastodon.org/methods/statuses/#delete: 200 with the deleted status;
        # 404 when it is gone (deleted already, or by a moderator).
        try:
            self._call("DELETE", self._status_path(receipt))
        except PermanentError as exc:
            if httpkit.status_of(exc) == 404:
                return False
            raise
        return True

    def amend(self, receipt: Receipt, message: Message, *, key: str = "") -> Receipt:
        # https://docs.joinmastodon.org/methods/statuses/#edit: the edit replaces text, content
        # warning, language, media and poll together, so what is not changed is sent as it is:
        # the status's own media ids, and the poll with the time it has left (an edit that
        # changes a poll's options resets its votes).
        path = self._status_path(receipt)
        current = _json(self._call("GET", path))
        body: dict[str, Any] = {"status": message.text}
        if message.language:
            body["language"] = message.language.split("-")[0].lower()
        elif isinstance(current.get("language"), str):
            body["language"] = current["language"]
        spoiler = message.options.get("spoiler_text")
        if spoiler:
            body["spoiler_text"] = str(spoiler)
        media = [m.get("id") for m in current.get("media_attachments") or [] if isinstance(m, dict)]
        if media:
            body["media_ids"] = [str(m) for m in media if isinstance(m, str | int)]
        poll = message.options.get("poll")
        if poll and not media:
            body["poll"] = {
                "options": [str(choice) for choice in poll.get("options", [])],
                "expires_in": _seconds_left(current.get("poll"), poll),
            }
            if poll.get("multiple"):
                body["poll"]["multiple"] = True
        status = httpkit.json_body(self._call("PUT", path, json=body))
        url = status.get("url") if isinstance(status.get("url"), str) else receipt.url
        return Receipt(remote_id=receipt.remote_id, url=url)

    def posted_text(self, receipt: Receipt) -> str | None:
        # The text as written, not the HTML Mastodon renders from it:
        # https://docs.joinmastodon.org/methods/statuses/#source
        text = _json(self._call("GET", self._status_path(receipt) + "/source")).get("text")
        return text if isinstance(text, str) else None

    def _processed(self, media_id: str, name: str) -> None:
        """Wait, a bounded time, until GET /api/v1/media/:id answers 200 with a url."""
        for _ in range(self.processing_checks):
            self.sleep(self.processing_interval)
            answer = self._call("GET", f"/api/v1/media/{media_id}")
            if answer.status_code == 200 and httpkit.json_body(answer).get("url"):
                return
        raise TransientError(f"mastodon is still processing {name}")

    def verify(self) -> str:
        account = _json(self._call("GET", "/api/v1/accounts/verify_credentials"))
        host = urlsplit(str(self.value("instance"))).netloc
        return f"token works for @{account.get('username', '?')}@{host}"


def _seconds_left(current: Any, poll: Mapping[str, Any]) -> int:
    """How long an edited poll stays open: the time its status's poll has left, so an edit
    does not move its end; the configured duration when the status has none."""
    from datetime import UTC, datetime

    ends = current.get("expires_at") if isinstance(current, dict) else None
    if isinstance(ends, str):
        try:
            left = datetime.fromisoformat(ends.replace("Z", "+00:00")) - datetime.now(UTC)
        except ValueError:
            pass
        else:
            # Mastodon's shortest poll: MastodonChannel.poll_min_seconds.
            return max(MastodonChannel.poll_min_seconds, int(left.total_seconds()))
    return int(poll.get("duration_seconds") or 86400)


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise PermanentError(f"HTTP {response.status_code}: the answer is not JSON") from None
    if not isinstance(body, dict):
        # The body is not quoted: a proxy may have echoed the request, token included.
        raise PermanentError(
            f"HTTP {response.status_code}: unexpected answer (a JSON {type(body).__name__})"
        )
    return body
