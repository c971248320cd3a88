"""Slack incoming webhooks: https://api.slack.com/messaging/webhooks

Request: ``POST <webhook_url>`` with JSON ``{"text": ...}``. Slack answers ``200`` with the body
``ok``; failures are a status code with a short text body naming the reason
(https://api.slack.com/changelog/2016-05-17-changes-to-errors-for-incoming-webhooks):
400 ``invalid_payload`` / ``no_text`` / ``user_not_found``, 403 ``action_prohibited`` /
``invalid_token``, 404 ``channel_not_found`` / ``no_service`` / ``no_team``, 410
``channel_is_archived``, 429 (``Retry-After`` header), 500 ``rollup_error``.
No message id comes back, so a receipt has none.

The webhook URL is itself the credential (anyone holding it can post), so it is a private setting
and never appears in an error.

Files need the Web API and a bot token (an incoming webhook cannot carry them): with `bot_token`
and `channel_id` set, a post with media goes by the files upload v2 flow, and a text post by
chat.postMessage when the channel has no `webhook_url` (https://docs.slack.dev/reference/methods/
chat.postMessage); the flow: files.getUploadURLExternal (the file's
name, length and `alt_txt`), the bytes POSTed to the upload URL it returns, then
files.completeUploadExternal with `channel_id`, `initial_comment` (the text) and the files
(https://docs.slack.dev/reference/methods/files.getUploadURLExternal and
files.completeUploadExternal). The first two steps are `upload`: they post nothing (a file is
private until completed), so the publisher records each file id before the post; the last step
is the post. Web API errors are HTTP 200 with {"ok": false, "error": "..."}.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from commcal.channels import attach, httpkit
from commcal.channels.base import (
    REASON_LIMIT,
    CannotChange,
    Media,
    MediaFile,
    Message,
    PermanentError,
    Receipt,
    SendError,
    Setting,
    StaleMedia,
    TransientError,
    unreadable,
)
from commcal.channels.httpkit import HttpChannel
from commcal.errors import ConfigError
from commcal.media import mime_type

if TYPE_CHECKING:
    import requests

# What each documented error string means for the person running commcal.
HINTS: Mapping[str, str] = {
    "invalid_payload": "Slack could not read the message (a commcal bug: please report it)",
    "no_text": "the message text is empty",
    "missing_text_or_fallback_or_attachments": "the message text is empty",
    "user_not_found": "the user this webhook posts to no longer exists",
    "action_prohibited": "a workspace admin has restricted posting through this webhook",
    "invalid_token": "the webhook URL is no longer valid: create a new one in Slack",
    "channel_not_found": "the webhook's channel no longer exists",
    "no_service": "the webhook URL is wrong or was revoked: create a new one in Slack",
    "no_team": "the webhook's workspace no longer exists",
    "team_disabled": "the webhook's workspace is disabled",
    "channel_is_archived": "the webhook's channel is archived: unarchive it or use another",
}
# Web API errors (bot-token mode), https://docs.slack.dev/reference/methods/chat.postMessage#errors
# and the files.* methods' pages.
API_HINTS: Mapping[str, str] = {
    "not_in_channel": "invite the bot to the channel first (/invite @your-bot in Slack)",
    "channel_not_found": "channel_id names no channel the bot can see: copy it from the "
    "channel's details in Slack (C0...)",
    "invalid_auth": "the bot token is wrong: copy the Bot User OAuth Token (xoxb-...) again",
    "not_authed": "the bot token is missing",
    "token_revoked": "the bot token was revoked: reinstall the app and copy the new token",
    "account_inactive": "the bot token's app or user was deactivated",
    "missing_scope": "the bot token lacks a scope: add chat:write and files:write to the app",
    "is_archived": "the channel is archived: unarchive it or use another",
    "file_uploads_disabled": "the workspace has turned off file uploads",
    "file_uploads_except_images_disabled": "the workspace takes images only",
    "file_upload_size_restricted": "the workspace limits the size of uploads: use a smaller file",
    "alt_txt_too_large": "an alt text is over Slack's 1,000 characters: shorten it",
}
# A file id the post names that Slack no longer has (an upload never completed expires):
# nothing is posted; the publisher uploads again (StaleMedia).
STALE_FILE_ERRORS = frozenset({"file_not_found", "file_deleted", "invalid_file_id"})
WEBHOOK_MEDIA = (
    "this slack channel posts through an incoming webhook, which cannot carry files: add "
    "bot_token (a bot token with chat:write and files:write, e.g. ${SLACK_BOT_TOKEN}) and "
    "channel_id (C0...) to the channel in commcal.yaml, and invite the bot to the channel"
)


class SlackChannel(HttpChannel):
    type_name: ClassVar[str] = "slack"
    description: ClassVar[str] = (
        "Post to a Slack channel through an incoming webhook, or with a bot token (files too)."
    )
    settings_schema: ClassVar[Mapping[str, Setting]] = {
        "webhook_url": Setting(
            "the incoming webhook URL (it is the credential), e.g. ${SLACK_WEBHOOK_URL}; text only",
            private=True,
        ),
        "bot_token": Setting(
            "a bot token (xoxb-...) with chat:write and files:write, e.g. ${SLACK_BOT_TOKEN}: "
            "needed for images and files (text too goes by it when there is no webhook_url)",
            private=True,
        ),
        "channel_id": Setting("the channel the bot posts to (C0...), with bot_token"),
        "api_url": Setting("the Web API server", default="https://slack.com/api"),
    }
    # Slack truncates `text` beyond 40,000 characters rather than refusing it, so a long post
    # would silently lose its end: https://api.slack.com/changelog/2018-04-truncating-really-long-messages
    max_length: ClassVar[int | None] = 40_000
    length_unit: ClassVar[str] = "characters"
    # Incoming webhooks take no idempotency key: a repeated POST posts twice. Nor does
    # chat.postMessage or files.completeUploadExternal.
    idempotent: ClassVar[bool] = False
    # Files (bot-token mode): uploaded before the post, private until completed. Slack takes
    # files up to 1 GB (https://slack.com/help/articles/201330736-Add-files-to-Slack) and up to
    # 10 at a time in one message (the same page); an alt text up to 1,000 characters
    # (files.getUploadURLExternal's error alt_txt_too_large).
    uploads_media: ClassVar[bool] = True
    max_media: ClassVar[int | None] = 10
    max_media_bytes: ClassVar[int | None] = 1000 * attach.MB
    max_alt_length: ClassVar[int | None] = 1000
    video_types: ClassVar[frozenset[str]] = frozenset(
        {"video/mp4", "video/quicktime", "video/webm", "video/x-m4v"}
    )

    def configure(self) -> None:
        httpkit.check_https_url(self, "api_url")
        webhook, bot, channel = (
            self.options.get(key) for key in ("webhook_url", "bot_token", "channel_id")
        )
        problem = ""
        if bot is not None and channel is None:
            problem = "setting 'bot_token' needs 'channel_id' as well (the channel's id, C0...)"
        elif channel is not None and bot is None:
            problem = "setting 'channel_id' needs 'bot_token' as well"
        elif webhook is None and bot is None:
            problem = (
                "setting 'webhook_url' is required (or bot_token and channel_id, which can "
                "post files too)"
            )
        if problem:
            raise ConfigError(f"channel {self.name!r} (slack): {problem}")

    def bot_mode(self) -> bool:
        return self.options.get("bot_token") is not None

    def measure(self, text: str) -> int:
        # Counted as sent, after escaping (an `&` becomes five characters).
        return len(escape(text))

    def check(self, message: Message) -> list[str]:
        problems = super().check(message)
        if message.media and self.bot_mode():
            # Files alone are a post.
            problems = [p for p in problems if p != "message is empty"]
        return problems

    def check_media(self, files: Sequence[MediaFile]) -> list[tuple[int | None, str]]:
        if files and not self.bot_mode():
            return [(None, WEBHOOK_MEDIA)]
        return super().check_media(files)

    # -- Web API (bot token) ----------------------------------------------------------------

    def _api(self, method: str, **kwargs: Any) -> dict[str, Any]:
        """Call one Web API method; its answer when `ok`, else the error Slack named."""
        url = f"{str(self.value('api_url')).rstrip('/')}/{method}"
        response = self.call("POST", url, token=self.secret("bot_token"), **kwargs)
        body = httpkit.json_body(response)
        if body.get("ok") is False:
            refused = PermanentError(f"HTTP {response.status_code}")
            refused.response = response  # kept (never shown): callers read Slack's `error`
            raise self.failure(refused, response)
        if body.get("ok") is not True:
            # Not the Web API (a proxy's page, an api_url pointing elsewhere). Not quoted: it
            # may echo the request, token included. Nothing was posted by these methods.
            kind = (response.headers.get("Content-Type") or "no type").split(";")[0]
            raise PermanentError(
                f"{method}: the answer is not Slack's ({response.status_code}, {kind}, "
                f"{len(response.content)} bytes): check api_url"
            )
        return body

    def verify(self) -> str:
        """auth.test for a bot token (https://docs.slack.dev/reference/methods/auth.test); a
        webhook cannot be checked without posting."""
        if not self.bot_mode():
            return "nothing to verify: an incoming webhook cannot be checked without posting"
        body = self._api("auth.test")
        return f"token works for {body.get('user', '?')} in {body.get('team', '?')}"

    def upload(self, media: Media) -> str:
        """Steps 1 and 2 of files upload v2: an upload URL for the file, then its bytes. The
        file stays private (nothing is posted) until `send` completes it into the channel."""
        if not self.bot_mode():
            raise PermanentError(WEBHOOK_MEDIA)
        data = attach.read(media, self, self.max_media_bytes)
        fields = {"filename": attach.filename(media), "length": str(len(data))}
        if media.alt:
            fields["alt_txt"] = media.alt
        try:
            ticket = self._api("files.getUploadURLExternal", data=fields)
            upload_url, file_id = ticket.get("upload_url"), ticket.get("file_id")
            if not isinstance(upload_url, str) or not isinstance(file_id, str) or not file_id:
                raise PermanentError("slack answered files.getUploadURLExternal without a URL")
            self.add_secret(upload_url, url=True)  # a signed URL: whoever has it can upload
            self.call(
                "POST",
                upload_url,
                files={"filename": (attach.filename(media), data, mime_type(media))},
            )
        except TransientError as exc:
            exc.maybe_sent = False  # an upload posts nothing
            raise
        return file_id

    def _send_by_api(self, message: Message) -> Receipt:
        channel = str(self.value("channel_id"))
        if not message.media:
            payload: dict[str, Any] = {"channel": channel, "text": escape(message.text)}
            return self._post("chat.postMessage", payload, lambda body: body.get("ts"))
        files = [
            {"id": media.ref or self.upload(media), "title": attach.filename(media)}
            for media in message.media
        ]
        payload = {"files": files, "channel_id": channel}
        if message.text.strip():
            payload["initial_comment"] = escape(message.text)

        def first_file(body: dict[str, Any]) -> Any:
            shared = body.get("files")
            first = shared[0] if isinstance(shared, list) and shared else None
            return first.get("id") if isinstance(first, dict) else None

        return self._post("files.completeUploadExternal", payload, first_file)

    def _post(
        self, method: str, payload: dict[str, Any], remote_id: Callable[[dict[str, Any]], Any]
    ) -> Receipt:
        """The Web API call that posts: refused when Slack says `ok: false`; any other 2xx is
        the post made (recorded sent with a note when its id cannot be read, never made again)."""
        url = f"{str(self.value('api_url')).rstrip('/')}/{method}"
        response = self.call("POST", url, token=self.secret("bot_token"), json=payload)
        body = httpkit.json_body(response)
        if body.get("ok") is False:
            raise self.failure(PermanentError(f"HTTP {response.status_code}"), response)
        found = remote_id(body)
        if body.get("ok") is not True or not isinstance(found, str):
            return Receipt(note=unreadable(response, f"Slack's `ok` answer to {method}"))
        return Receipt(remote_id=found)

    def new_error(
        self,
        text: str,
        retry_after: float | None,
        error: SendError,
        response: requests.Response | None,
    ) -> SendError:
        reason = _api_error(response)
        if reason in STALE_FILE_ERRORS:
            return StaleMedia(text)
        if reason == "ratelimited":
            return TransientError(text, retry_after)
        return super().new_error(text, retry_after, error, response)

    def send(self, message: Message, idempotency_key: str) -> Receipt:
        if message.media and not self.bot_mode():
            raise PermanentError(WEBHOOK_MEDIA)
        if message.media or self.options.get("webhook_url") is None:
            return self._send_by_api(message)
        url = self.secret("webhook_url")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # The URL is the secret: say what is wrong, never what it is.
            raise ConfigError(
                f"channel {self.name!r}: setting 'webhook_url' is not an http(s) URL "
                "(expected https://hooks.slack.com/services/...)"
            )
        payload = {"text": escape(message.text)}
        response = self.call("POST", url, json=payload)
        # Slack answers `ok` and no id. Any other 2xx (a proxy's page ...) is recorded sent all
        # the same, never posted again, with a note of what came back.
        if response.text.strip() != "ok":
            return Receipt(note=unreadable(response, "Slack's `ok`"))
        return Receipt()

    # -- after the send: bot-token mode only -----------------------------------------------------
    # A post made with chat.postMessage is named by its `ts`; one made with a file share
    # (files.completeUploadExternal) by its first file's id; an incoming webhook names nothing.

    def cannot_retract(self) -> str:
        if self.bot_mode():
            return ""
        # https://docs.slack.dev/reference/methods/chat.delete: needs a bot or user token and
        # the message's ts, and an incoming webhook has neither (it answers `ok`, no ts).
        return (
            "this slack channel posts through an incoming webhook, which cannot delete its "
            "messages (Slack's chat.delete needs a bot token); delete it in Slack itself"
        )

    def cannot_amend(self) -> str:
        if self.bot_mode():
            return ""
        # https://docs.slack.dev/reference/methods/chat.update: the same needs as chat.delete.
        return (
            "this slack channel posts through an incoming webhook, which cannot edit its "
            "messages (Slack's chat.update needs a bot token); edit it in Slack itself"
        )

    def _sent_as(self, receipt: Receipt) -> tuple[str, str]:
        """("ts", the message's ts) or ("file", the shared file's id)."""
        import re

        found = receipt.remote_id or ""
        if re.fullmatch(r"\d+\.\d+", found):
            return "ts", found
        if re.fullmatch(r"F[A-Z0-9]+", found):
            return "file", found
        raise CannotChange(
            "slack did not name this message when it was sent (it went through the incoming "
            "webhook): change it in Slack itself"
        )

    def retract(self, receipt: Receipt, *, reason: str = "", key: str = "") -> bool:
        kind, found = self._sent_as(receipt)
        # chat.delete takes the channel and ts; a file share goes with its file (files.delete,
        # https://docs.slack.dev/reference/methods/files.delete). Already gone: message_not_found
        # / file_deleted / file_not_found.
        method, body = (
            ("chat.delete", {"channel": str(self.value("channel_id")), "ts": found})
            if kind == "ts"
            else ("files.delete", {"file": found})
        )
        try:
            self._api(method, json=body)
        except PermanentError as exc:
            if _api_error(exc.response) in {"message_not_found", *STALE_FILE_ERRORS}:
                return False
            raise
        return True

    def amend(self, receipt: Receipt, message: Message, *, key: str = "") -> Receipt:
        kind, found = self._sent_as(receipt)
        if kind == "file" or message.media:
            raise CannotChange(
                "slack cannot edit a message that shares files: retract it and post a new one"
            )
        # https://docs.slack.dev/reference/methods/chat.update
        body = {"channel": str(self.value("channel_id")), "ts": found, "text": escape(message.text)}
        self._api("chat.update", json=body)
        return receipt

    def error_text(self, error: SendError, response: requests.Response | None) -> str:
        """Slack's reason spelled out (`HINTS`, `API_HINTS`)."""
        reason = _api_error(response)
        if reason:
            hint = API_HINTS.get(reason)
            text = self.redact(f"slack answered {reason}", REASON_LIMIT)
            return f"{text} ({hint})" if hint else text
        text = self.redact(str(error), REASON_LIMIT)
        reason = text.rsplit(": ", 1)[-1].strip()
        if reason in HINTS:
            text = f"{text} ({HINTS[reason]})"
        return text


def _api_error(response: requests.Response | None) -> str:
    """The `error` of a Web API answer {"ok": false, "error": "not_in_channel"}, else ""."""
    if response is None:
        return ""
    body = httpkit.json_body(response)
    error = body.get("error")
    if body.get("ok") is False and isinstance(error, str):
        return error if error.replace("_", "").isalnum() else "an error"
    return ""


def escape(text: str) -> str:
    """Slack reads `<`, `>` and `&` as markup; plain text must escape exactly these three.
    https://api.slack.com/reference/surfaces/formatting#escaping"""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
