"""Discord webhooks: https://discord.com/developers/docs/resources/webhook#execute-webhook

Request: ``POST <webhook_url>?wait=true`` with JSON ``{"content": ..., "username": ...,
"poll": ...}``. With ``wait=true`` Discord answers 200 with the created Message object
(``{"id", "channel_id", "guild_id"?, ...}``) instead of 204, so the receipt carries the message id
and, when the guild is known, its link. Errors are JSON ``{"code", "message", "errors"?}``
(https://discord.com/developers/docs/reference#error-messages); a 429 body has ``retry_after`` in
seconds as a float (https://discord.com/developers/docs/topics/rate-limits#exceeding-a-rate-limit).

A message with media is sent as multipart/form-data in the same request
(https://discord.com/developers/docs/reference#uploading-files): the JSON body goes in the
``payload_json`` part, each file in ``files[n]``, and ``attachments[n]`` names it with its
``description``, which Discord shows as the image's alt text.

The webhook URL contains the webhook's token, so it is a private setting and never appears in an
error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

from commcal.channels import attach, httpkit
from commcal.channels.base import (
    REASON_LIMIT,
    CannotChange,
    MediaFile,
    Message,
    PermanentError,
    Receipt,
    SendError,
    Setting,
    unreadable,
)
from commcal.channels.httpkit import HttpChannel
from commcal.errors import ConfigError
from commcal.media import mime_type

if TYPE_CHECKING:
    import requests

# Webhook usernames: 1-80 characters, and Discord refuses names containing these words.
# https://discord.com/developers/docs/resources/user#usernames-and-nicknames
USERNAME_MAX = 80
USERNAME_FORBIDDEN = ("clyde", "discord")

TOO_LARGE = (
    "Discord refused the files as too large for this server: make them smaller, or lower "
    "upload_limit_mb to what the server allows"
)
HINTS: Mapping[int, str] = {
    10015: "the webhook was deleted: create a new one and update the URL",
    50027: "the webhook token is wrong: copy the webhook URL again",
    40005: TOO_LARGE,
}


class DiscordChannel(HttpChannel):
    native_polls = True  # Message.options["poll"] becomes the network's own poll
    type_name: ClassVar[str] = "discord"
    description: ClassVar[str] = "Post to a Discord channel through a webhook (polls too)."
    settings_schema: ClassVar[Mapping[str, Setting]] = {
        "webhook_url": Setting(
            "the webhook URL (it contains the token), e.g. ${DISCORD_WEBHOOK_URL}",
            required=True,
            private=True,
        ),
        "username": Setting("name shown as the author instead of the webhook's own"),
        "upload_limit_mb": Setting(
            "the most megabytes (MiB) of files one message may carry: 25 by default; raise it "
            "for a boosted server (50 at level 2, 100 at level 3)",
            default=25,
            kind=int,
        ),
    }
    # `content` is at most 2000 characters
    # (https://discord.com/developers/docs/resources/webhook#execute-webhook-jsonform-params).
    # Discord counts Unicode code points: its API is Python 3 and takes len() of the string,
    # as Discord staff confirmed in https://github.com/discord/discord-api-docs/issues/1315.
    max_length: ClassVar[int | None] = 2000
    length_unit: ClassVar[str] = "characters"
    # Execute Webhook takes no idempotency key (no nonce enforcement for webhooks).
    idempotent: ClassVar[bool] = False
    # Poll limits, https://discord.com/developers/docs/resources/poll#poll-create-request-object
    # and #poll-media-object: question text 300, answer text 55, 1 to 10 answers, duration in
    # whole hours up to 32 days.
    poll_max_question_length = 300
    poll_max_option_length = 55
    poll_min_options = 1
    poll_max_options = 10
    poll_min_seconds = 3600
    poll_max_seconds = 32 * 24 * 3600
    # Up to 10 files a message (https://discord.com/developers/docs/resources/message#create-
    # message-jsonform-params: "files[n]"), the whole request at most 25 MiB unless the server is
    # boosted (https://discord.com/developers/docs/reference#uploading-files; webhooks measured
    # at 26,214,400 bytes: https://github.com/discord/discord-api-docs/issues/6058). The
    # `upload_limit_mb` setting raises it (`check_media` checks the total against it). An
    # attachment's description, its alt text, is at most 1,024 characters
    # (https://discord.com/developers/docs/resources/message#attachment-object). Discord takes
    # any file; videos it plays inline are MP4, WebM and QuickTime.
    max_media = 10
    max_media_bytes = 25 * attach.MIB
    video_types = frozenset({"video/mp4", "video/webm", "video/quicktime"})
    max_alt_length = 1024

    def configure(self) -> None:
        limit = self.options.get("upload_limit_mb")
        if isinstance(limit, int) and not 1 <= limit <= 500:
            raise ConfigError(
                f"channel {self.name!r} (discord): setting 'upload_limit_mb' must be 1 to 500 "
                f"(megabytes a message may carry), not {limit}"
            )
        username = self.options.get("username")
        if isinstance(username, str):
            problem = _username_problem(username)
            if problem:
                raise ConfigError(f"channel {self.name!r} (discord): setting 'username' {problem}")

    def check(self, message: Message) -> list[str]:
        problems = super().check(message)
        poll = message.options.get("poll")
        if poll is not None:
            # A message may be just a poll: its text may then be empty.
            problems = [p for p in problems if p != "message is empty"]
            problems.extend(self.poll_problems(poll))
        if message.media:
            # Files alone are a message.
            problems = [p for p in problems if p != "message is empty"]
        return problems

    def upload_limit(self) -> int:
        return int(self.options.get("upload_limit_mb") or 25) * attach.MIB

    def media_limit(self, name: str) -> Any:
        if name in ("max_image_bytes", "max_video_bytes"):
            return self.upload_limit()  # no file may be larger than the whole message
        return super().media_limit(name)

    def check_media(self, files: Sequence[MediaFile]) -> list[tuple[int | None, str]]:
        """Discord limits the request, not a file: the files' size together."""
        problems = super().check_media(files)
        total = sum(found.size or 0 for found in files)
        limit = self.upload_limit()
        if total > limit:
            # In MiB, as Discord counts and shows its limits ("25 MB").
            problems.append(
                (
                    None,
                    f"the files are {total / attach.MIB:.1f} MB together, over this discord "
                    f"server's limit of {limit // attach.MIB} MB a message: make them smaller, "
                    "send fewer, or set upload_limit_mb on the channel if the server is boosted",
                )
            )
        return problems

    def _webhook_url(self) -> str:
        url = self.secret("webhook_url")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"channel {self.name!r}: setting 'webhook_url' is not an http(s) URL "
                "(expected https://discord.com/api/webhooks/<id>/<token>)"
            )
        return url

    def send(self, message: Message, idempotency_key: str) -> Receipt:
        url = self._webhook_url()
        poll = message.options.get("poll")
        if poll is not None:
            problems = self.poll_problems(poll)
            if problems:
                raise PermanentError("poll: " + "; ".join(problems))
        payload = self.payload(message)
        if message.media:
            # Read every file before anything is sent: an unreadable one fails the send whole.
            files: list[tuple[str, tuple[str | None, bytes | str, str]]] = []
            payload["attachments"] = []
            for number, media in enumerate(message.media):
                name = attach.filename(media)
                data = attach.read(media, self, self.upload_limit())
                files.append((f"files[{number}]", (name, data, mime_type(media))))
                described: dict[str, Any] = {"id": number, "filename": name}
                if media.alt:
                    described["description"] = media.alt
                payload["attachments"].append(described)
            import json

            files.insert(0, ("payload_json", (None, json.dumps(payload), "application/json")))
            response = self.call("POST", url, params={"wait": "true"}, files=files)
            return _receipt(response)
        # wait=true: answer with the Message object, and fail loudly if it was not saved.
        response = self.call("POST", url, params={"wait": "true"}, json=payload)
        return _receipt(response)

    # -- after the send: the webhook's own messages -----------------------------------------------
    # https://discord.com/developers/docs/resources/webhook#edit-webhook-message and
    # #delete-webhook-message: /webhooks/{id}/{token}/messages/{message_id}; a webhook may edit
    # and delete only what it posted itself. Send used wait=true, so the receipt has the id.

    def cannot_retract(self) -> str:
        return ""

    def cannot_amend(self) -> str:
        return ""

    def _message_url(self, receipt: Receipt) -> str:
        if not receipt.remote_id:
            raise CannotChange("discord did not name the message when it was sent")
        parts = urlsplit(self._webhook_url())
        path = parts.path.rstrip("/") + f"/messages/{quote(receipt.remote_id, safe='')}"
        # A thread_id query (a webhook that posts into a thread) belongs to these calls too.
        return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))

    def retract(self, receipt: Receipt, *, reason: str = "", key: str = "") -> bool:
        try:
            self.call("DELETE", self._message_url(receipt))
        except PermanentError as exc:
            if httpkit.status_of(exc) == 404:  # 10008 Unknown Message: deleted already
                return False
            raise
        return True

    def amend(self, receipt: Receipt, message: Message, *, key: str = "") -> Receipt:
        if message.options.get("poll") is not None:
            # A poll cannot be changed once posted (#poll-create-request-object).
            raise CannotChange("a discord poll cannot be edited: retract it and post a new one")
        body = _receipt(
            self.call("PATCH", self._message_url(receipt), json={"content": message.text})
        )
        return Receipt(remote_id=receipt.remote_id, url=body.url or receipt.url)

    def posted_text(self, receipt: Receipt) -> str | None:
        content = httpkit.json_body(self.call("GET", self._message_url(receipt))).get("content")
        return content if isinstance(content, str) else None

    def payload(self, message: Message) -> dict[str, Any]:
        payload: dict[str, Any] = {"content": message.text}
        username = self.options.get("username")
        if username:
            payload["username"] = str(username)
        poll = message.options.get("poll")
        if poll is not None:
            payload["poll"] = {
                "question": {"text": poll["question"]},
                "answers": [{"poll_media": {"text": answer}} for answer in poll["options"]],
                "duration": int(poll["duration_seconds"]) // 3600,
                "allow_multiselect": False,
            }
        return payload

    def poll_problems(self, poll: Any) -> list[str]:
        """Offline problems with a `poll` option {"question", "options", "duration_seconds"}."""
        if not isinstance(poll, Mapping):
            return ["poll must be a mapping with question, options and duration_seconds"]
        question_max, answer_max = self.poll_max_question_length, self.poll_max_option_length
        problems = []
        question = poll.get("question")
        if not isinstance(question, str) or not question.strip():
            problems.append("poll question is missing")
        elif len(question) > question_max:
            problems.append(
                f"poll question is {len(question)} characters, over Discord's limit of "
                f"{question_max} by {len(question) - question_max}"
            )
        answers = poll.get("options")
        if not isinstance(answers, list | tuple) or not answers:
            problems.append("poll needs a list of options (answers)")
        else:
            if len(answers) > self.poll_max_options:
                problems.append(
                    f"poll has {len(answers)} options, Discord allows at most "
                    f"{self.poll_max_options}"
                )
            for number, answer in enumerate(answers, 1):
                if not isinstance(answer, str) or not answer.strip():
                    problems.append(f"poll option {number} is empty")
                elif len(answer) > answer_max:
                    problems.append(
                        f"poll option {number} is {len(answer)} characters, over Discord's limit "
                        f"of {answer_max} by {len(answer) - answer_max}"
                    )
        seconds = poll.get("duration_seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int):
            problems.append("poll duration_seconds must be a whole number of seconds")
        elif seconds < self.poll_min_seconds or seconds % 3600:
            problems.append(
                f"poll duration is {seconds} seconds; Discord polls last whole hours "
                "(3600, 7200 ...)"
            )
        elif seconds > self.poll_max_seconds:
            problems.append(
                f"poll duration is {seconds // 3600} hours, over Discord's limit of "
                f"{self.poll_max_seconds // 3600} (32 days)"
            )
        return problems

    def error_text(self, error: SendError, response: requests.Response | None) -> str:
        """Discord's own detail (the fields it refused, `HINTS`)."""
        text = self.redact(str(error), REASON_LIMIT)
        body = httpkit.json_body(response) if response is not None else {}
        detail = _field_errors(body.get("errors"))
        if detail:
            text += f" ({self.redact(detail, REASON_LIMIT)})"
        code = body.get("code")
        if isinstance(code, int) and code in HINTS:
            text += f" ({HINTS[code]})"
        elif response is not None and response.status_code == 413:
            text += f" ({TOO_LARGE})"  # a proxy's 413 page carries no Discord code
        return text

    def retry_after(self, error: SendError, response: requests.Response | None) -> float | None:
        body = httpkit.json_body(response) if response is not None else {}
        if isinstance(body.get("retry_after"), int | float):
            # The body's float is more precise than the header's whole seconds.
            return float(body["retry_after"])
        return super().retry_after(error, response)


def _username_problem(username: str) -> str:
    if not 1 <= len(username) <= USERNAME_MAX:
        return f"must be 1 to {USERNAME_MAX} characters"
    for word in USERNAME_FORBIDDEN:
        if word in username.lower():
            return f"may not contain {word!r} (Discord refuses it)"
    return ""


def _field_errors(errors: Any, path: str = "") -> str:
    """Discord's nested `errors` object as `content: Must be 2000 or fewer in length.`"""
    if not isinstance(errors, dict):
        return ""
    found = []
    for key, value in errors.items():
        if key == "_errors" and isinstance(value, list):
            found += [f"{path}: {e.get('message')}" for e in value if isinstance(e, dict)]
        elif isinstance(value, dict):
            inner = _field_errors(value, f"{path}.{key}" if path else str(key))
            if inner:
                found.append(inner)
    return "; ".join(found)


def _receipt(response: requests.Response) -> Receipt:
    """With wait=true Discord answers the Message; a 2xx without its id is still a message
    posted (recorded sent with the id unknown, never posted again)."""
    body = httpkit.json_body(response)
    message_id = body.get("id")
    if not isinstance(message_id, str | int) or isinstance(message_id, bool):
        return Receipt(note=unreadable(response, "a message id"))
    message_id = str(message_id)
    guild_id = body.get("guild_id")
    channel_id = body.get("channel_id")
    url = None
    if guild_id and channel_id:
        url = f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"
    return Receipt(remote_id=message_id, url=url)
