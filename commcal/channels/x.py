"""X (Twitter): a post, optionally with a poll or media, through API v2.

API: https://docs.x.com/x-api/posts/create-post (POST /2/tweets).

Media go up before the post (`uploads_media`): each image or GIF in one request to
POST /2/media/upload (multipart: `media`, `media_category`; https://docs.x.com/x-api/media/
upload-media), its alt text then by POST /2/media/metadata (https://docs.x.com/x-api/media/
create-media-metadata); a video in chunks, INIT, APPEND and FINALIZE on the same endpoint, then
STATUS until X has processed it (https://docs.x.com/x-api/media/quickstart/media-upload-chunked).
The post names the uploads in `media.media_ids`. An upload posts nothing, so one that may have
arrived is simply done again; the publisher keeps each id it got, and a resumed send reuses it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from commcal.channels import attach, httpkit
from commcal.channels.base import (
    NOT_A_POLL,
    REPLIES,
    CannotChange,
    Media,
    MediaFile,
    Message,
    PermanentError,
    Receipt,
    ReplyTo,
    SendError,
    Setting,
    StaleMedia,
    TransientError,
    poll_option_problems,
    unreadable,
)
from commcal.channels.httpkit import HttpChannel
from commcal.channels.text import x_invalid_characters, x_length
from commcal.media import mime_type

if TYPE_CHECKING:
    import requests


class XChannel(HttpChannel):
    native_polls = True  # Message.options["poll"] becomes the network's own poll
    type_name = "x"
    description = "A post on X (Twitter) through API v2"
    # A thread's parts reply to each other (Message.options["reply_to"]).
    thread_mode: ClassVar[str] = REPLIES
    settings_schema: ClassVar[Mapping[str, Setting]] = {
        "token": Setting(
            "an OAuth 2.0 user-context access token with tweet.write, tweet.read and users.read",
            required=True,
            private=True,
        ),
        "api_url": Setting("the API server", default="https://api.x.com"),
    }
    # 280 weighted characters: URLs 23, CJK and emoji 2
    # (https://docs.x.com/resources/fundamentals/counting-characters).
    max_length = 280
    length_unit = "weighted characters (URLs 23, CJK and emoji 2)"
    # X says when a rate-limit window resets in x-rate-limit-reset (epoch seconds)
    # (https://docs.x.com/x-api/fundamentals/rate-limits).
    rate_limit_reset = ("x-rate-limit-reset", "epoch")
    # POST /2/tweets takes no idempotency key. (X refuses identical text from the same account
    # with 403 "duplicate content", but that answer names no post, so it proves nothing.)
    idempotent = False
    # Poll: 2-4 options of 1-25 characters, open 5-10,080 minutes
    # (https://docs.x.com/x-api/posts/create-post, body field poll).
    poll_min_options = 2
    poll_max_options = 4
    poll_max_option_length = 25
    poll_min_seconds = 5 * 60
    poll_max_seconds = 10_080 * 60
    # Media: "up to 4 photos, 1 animated GIF or 1 video in a Post"; images up to 5 MB, GIFs
    # 15 MB, videos 512 MB (https://docs.x.com/x-api/media/quickstart/best-practices and
    # https://developer.x.com/en/docs/x-api/v1/media/upload-media/uploading-media/media-best-
    # practices); alt text up to 1,000 characters (https://developer.x.com/en/docs/x-api/v1/
    # media/upload-media/api-reference/post-media-metadata-create), images and GIFs only.
    uploads_media = True
    max_media = 4
    max_media_bytes = 5 * attach.MB
    max_image_bytes = 5 * attach.MB
    max_gif_bytes = 15 * attach.MB
    max_video_bytes = 512 * attach.MB
    max_alt_length = 1000
    video_alone = True
    image_types = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
    video_types = frozenset({"video/mp4", "video/quicktime"})
    # A video goes up in chunks of at most 5 MB each (the chunked upload guide's APPEND); 4 MB.
    chunk_bytes = 4 * attach.MIB
    # How often and how long to ask STATUS while X processes a video (it says `check_after_secs`).
    processing_checks = 60

    def configure(self) -> None:
        httpkit.check_https_url(self, "api_url")
        self.sleep: Callable[[float], None] = time.sleep

    def measure(self, text: str) -> int:
        return x_length(text)

    def check(self, message: Message) -> list[str]:
        problems = super().check(message)
        invalid = x_invalid_characters(message.text)
        if invalid:
            # twitter-text's Validation: a post holding one is invalid whatever its length.
            problems.append(
                f"text holds {', '.join(invalid)}, which X refuses; remove it (a template saved "
                "with a byte order mark, or an invisible character pasted into a variable)"
            )
        poll = message.options.get("poll")
        if poll:
            problems.extend(self._poll_problems(poll))
        if message.media:
            if poll:
                problems.append("an x post can have media or a poll, not both")
            if not message.text.strip():
                problems = [p for p in problems if p != "message is empty"]
        return problems

    def check_media(self, files: Sequence[MediaFile]) -> list[tuple[int | None, str]]:
        shown, problems = attach.gifs_apart(list(files), self.max_gif_bytes, "x")
        problems = super().check_media(shown) + problems
        if len(files) > 1:
            for number, found in enumerate(files):
                if found.mime_type == "image/gif":
                    problems.append((number, "x takes 4 images or 1 GIF alone, not both"))
        return problems

    def _poll_problems(self, poll: Any) -> list[str]:
        if not isinstance(poll, Mapping):
            return [NOT_A_POLL]
        problems = poll_option_problems(
            poll,
            fewest=self.poll_min_options,
            most=self.poll_max_options,
            longest=self.poll_max_option_length,
        )
        low, high = self.poll_min_seconds // 60, self.poll_max_seconds // 60
        minutes = _minutes(poll)
        if not low <= minutes <= high:
            problems.append(f"an x poll stays open 5 minutes to 7 days, not {minutes} minutes")
        return problems

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = str(self.value("api_url")).rstrip("/") + path
        return self.call(method, url, token=self.secret("token"), **kwargs)

    def error_reason(self, response: requests.Response) -> str:
        return _problem_text(response)

    def new_error(
        self,
        text: str,
        retry_after: float | None,
        error: SendError,
        response: requests.Response | None,
    ) -> SendError:
        # A post naming media X no longer knows (an upload expires after `expires_after_secs`,
        # a day) is refused with 400 "Your media IDs are invalid." and errors[].parameters
        # naming media.media_ids: nothing is posted; the publisher uploads again (StaleMedia).
        if response is not None and response.status_code == 400 and _stale_media(response):
            return StaleMedia(text)
        return super().new_error(text, retry_after, error, response)

    # -- media ----------------------------------------------------------------------------------

    def upload(self, media: Media) -> str:
        """Upload one file (and its alt text); return X's media id. Nothing is posted by it, so
        an upload that may have arrived is not "maybe sent": it is done again, at worst leaving
        an unused upload that X discards (`expires_after_secs`)."""
        data = attach.read(media, self, self.max_video_bytes)
        try:
            if attach.kind_of(media) == "video":
                media_id = self._upload_video(media, data)
            else:
                media_id = self._upload_image(media, data)
                if media.alt:
                    body = {"id": media_id, "metadata": {"alt_text": {"text": media.alt}}}
                    self._call("POST", "/2/media/metadata", json=body)
        except TransientError as exc:
            exc.maybe_sent = False
            raise
        return media_id

    def _upload_image(self, media: Media, data: bytes) -> str:
        category = "tweet_gif" if attach.kind_of(media) == "gif" else "tweet_image"
        response = self._call(
            "POST",
            "/2/media/upload",
            data={"media_category": category, "media_type": mime_type(media)},
            files={"media": (attach.filename(media), data, mime_type(media))},
        )
        return _media_id(response)

    def _upload_video(self, media: Media, data: bytes) -> str:
        init = {
            "command": "INIT",
            "media_type": mime_type(media),
            "total_bytes": str(len(data)),
            "media_category": "tweet_video",
        }
        media_id = _media_id(self._call("POST", "/2/media/upload", data=init))
        for index, start in enumerate(range(0, len(data), self.chunk_bytes)):
            chunk = data[start : start + self.chunk_bytes]
            self._call(
                "POST",
                "/2/media/upload",
                data={"command": "APPEND", "media_id": media_id, "segment_index": str(index)},
                files={"media": (attach.filename(media), chunk, "application/octet-stream")},
            )
        final = {"command": "FINALIZE", "media_id": media_id}
        state = _processing(self._call("POST", "/2/media/upload", data=final))
        for _ in range(self.processing_checks):
            if state is None or state[0] == "succeeded":
                return media_id
            if state[0] == "failed":
                raise PermanentError(f"x could not process {attach.filename(media)}: {state[2]}")
            self.sleep(min(state[1], 30.0))  # as X asks, but never a stall of minutes
            status = {"command": "STATUS", "media_id": media_id}
            state = _processing(self._call("GET", "/2/media/upload", params=status))
        raise TransientError(f"x is still processing {attach.filename(media)}")

    def remote_id_from_url(self, url: str) -> str | None:
        """https://x.com/team/status/123 (or twitter.com, or /i/web/status/123) -> 123."""
        import re

        found = re.fullmatch(r"https?://(?:www\.)?(?:x|twitter)\.com/.+/status/(\d+)\S*", url)
        return found.group(1) if found else None

    def send(self, message: Message, idempotency_key: str) -> Receipt:
        body: dict[str, Any] = {"text": message.text}
        if message.media and not message.text.strip():
            body = {}  # a post of media alone has no text field (POST /2/tweets: text optional)
        if message.media:
            # The publisher uploads first and hands us the refs; a direct send uploads here.
            body["media"] = {"media_ids": [item.ref or self.upload(item) for item in message.media]}
        poll = message.options.get("poll")
        if poll:
            body["poll"] = {
                "options": [str(choice) for choice in poll.get("options", [])],
                "duration_minutes": _minutes(poll),
            }
        reply = message.options.get("reply_to")
        if isinstance(reply, ReplyTo):
            # https://docs.x.com/x-api/posts/create-post: reply.in_reply_to_tweet_id
            body["reply"] = {"in_reply_to_tweet_id": reply.parent}
        response = self._call("POST", "/2/tweets", json=body)
        # A 2xx is a post that exists: without an id in it, it is sent with the id unknown
        # (recorded, never posted again), not a failure that `retry --failed` would repeat.
        data = httpkit.json_body(response).get("data")
        post_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(post_id, str | int) or isinstance(post_id, bool):
            return Receipt(note=unreadable(response, "a post id"))
        post_id = str(post_id)
        return Receipt(remote_id=post_id, url=f"https://x.com/i/web/status/{post_id}")

    # -- after the send -------------------------------------------------------------------------

    def cannot_retract(self) -> str:
        return ""

    def cannot_amend(self) -> str:
        # X's API has no edit endpoint: posts/manage-tweets offers POST and DELETE only
        # (https://docs.x.com/x-api/posts/manage-tweets/migrate/overview).
        return (
            "X's API cannot edit posts: retract this one (`commcal retract ID`) and post the "
            "corrected text as a new item"
        )

    def retract(self, receipt: Receipt, *, reason: str = "", key: str = "") -> bool:
        # DELETE /2/tweets/:id answers {"data": {"deleted": true}}; 50 requests per 15 minutes
        # per user (https://developer.x.com/en/docs/x-api/tweets/manage-tweets). An access tier
        # without it answers 403.
        if not receipt.remote_id:
            raise CannotChange("X did not name the post when it was sent")
        try:
            response = self._call("DELETE", f"/2/tweets/{quote(receipt.remote_id, safe='')}")
        except PermanentError as exc:
            status = httpkit.status_of(exc)
            if status == 404:
                return False
            if status == 403:
                raise PermanentError(
                    f"{exc} (X refused to delete it: the post is not this account's, or the "
                    "app's access tier or token scopes (tweet.write) do not allow deleting)"
                ) from None
            raise
        data = httpkit.json_body(response).get("data")
        if isinstance(data, dict) and data.get("deleted") is False:
            raise PermanentError("X answered that the post was not deleted (deleted: false)")
        return True

    def verify(self) -> str:
        me = httpkit.json_body(self._call("GET", "/2/users/me")).get("data") or {}
        return f"token works for @{me.get('username', '?')}"


def _media_id(response: requests.Response) -> str:
    """The id in an upload's answer {"data": {"id": ..., "media_key": ...}}."""
    data = httpkit.json_body(response).get("data")
    media_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(media_id, str | int) or isinstance(media_id, bool) or not str(media_id):
        # Nothing is posted yet: failing here costs an unused upload at most.
        raise PermanentError(
            f"HTTP {response.status_code}: x answered the upload without a media id"
        )
    return str(media_id)


def _stale_media(response: requests.Response) -> bool:
    body = httpkit.json_body(response)
    for error in body.get("errors") or []:
        if not isinstance(error, dict):
            continue
        parameters = error.get("parameters")
        if isinstance(parameters, dict) and "media.media_ids" in parameters:
            return True
        if "media ids are invalid" in str(error.get("message", "")).lower():
            return True
    return False


def _processing(response: requests.Response) -> tuple[str, float, str] | None:
    """A video's processing_info as (state, seconds to wait, error), None when there is none
    (X needs no processing: the upload is ready)."""
    data = httpkit.json_body(response).get("data")
    info = data.get("processing_info") if isinstance(data, dict) else None
    if not isinstance(info, dict):
        return None
    wait = info.get("check_after_secs")
    seconds = float(wait) if isinstance(wait, int | float) and not isinstance(wait, bool) else 1.0
    error = info.get("error")
    reason = error.get("message") if isinstance(error, dict) else None
    return (
        str(info.get("state") or "pending"),
        # time.sleep refuses a negative or NaN wait (JSON from Python's parser may hold NaN).
        1.0 if math.isnan(seconds) else max(0.0, seconds),
        str(reason or "no reason given"),
    )


def _minutes(poll: Mapping[str, Any]) -> int:
    """Poll duration in whole minutes; a day when none is given (as X's own app defaults)."""
    seconds = poll.get("duration_seconds")
    return 1440 if seconds is None else int(seconds) // 60


def _problem_text(response: requests.Response) -> str:
    """X errors are RFC 7807-style problems: {"title", "detail", "type", "errors": [...]}."""
    body = httpkit.json_body(response)
    parts = [str(body[key]) for key in ("title", "detail") if isinstance(body.get(key), str)]
    for error in body.get("errors") or []:
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            parts.append(error["message"])
    if not parts:
        return ""
    # Not shortened here: `Channel.redact` redacts first, then cuts.
    return f"HTTP {response.status_code}: " + " ".join(" — ".join(parts).split())
