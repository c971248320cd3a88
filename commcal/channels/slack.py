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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import urlsplit

from commcal.channels.base import (
    REASON_LIMIT,
    Message,
    Receipt,
    SendError,
    Setting,
    unreadable,
)
from commcal.channels.httpkit import HttpChannel
from commcal.errors import ConfigError

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


class SlackChannel(HttpChannel):
    type_name: ClassVar[str] = "slack"
    description: ClassVar[str] = "Post to a Slack channel through an incoming webhook."
    settings_schema: ClassVar[Mapping[str, Setting]] = {
        "webhook_url": Setting(
            "the incoming webhook URL (it is the credential), e.g. ${SLACK_WEBHOOK_URL}",
            required=True,
            private=True,
        ),
    }
    # Slack truncates `text` beyond 40,000 characters rather than refusing it, so a long post
    # would silently lose its end: https://api.slack.com/changelog/2018-04-truncating-really-long-messages
    max_length: ClassVar[int | None] = 40_000
    length_unit: ClassVar[str] = "characters"
    # Incoming webhooks take no idempotency key: a repeated POST posts twice.
    idempotent: ClassVar[bool] = False

    def measure(self, text: str) -> int:
        # Counted as sent, after escaping (an `&` becomes five characters).
        return len(escape(text))

    def send(self, message: Message, idempotency_key: str) -> Receipt:
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

    def cannot_retract(self) -> str:
        # https://api.slack.com/methods/chat.delete: needs a bot or user token and the
        # message's ts, and an incoming webhook has neither (it answers `ok`, no ts).
        return (
            "this slack channel posts through an incoming webhook, which cannot delete its "
            "messages (Slack's chat.delete needs a bot token); delete it in Slack itself"
        )

    def cannot_amend(self) -> str:
        # https://api.slack.com/methods/chat.update: the same needs as chat.delete.
        return (
            "this slack channel posts through an incoming webhook, which cannot edit its "
            "messages (Slack's chat.update needs a bot token); edit it in Slack itself"
        )

    def error_text(self, error: SendError, response: requests.Response | None) -> str:
        """Slack's reason spelled out (`HINTS`)."""
        text = self.redact(str(error), REASON_LIMIT)
        reason = text.rsplit(": ", 1)[-1].strip()
        if reason in HINTS:
            text = f"{text} ({HINTS[reason]})"
        return text


def escape(text: str) -> str:
    """Slack reads `<`, `>` and `&` as markup; plain text must escape exactly these three.
    https://api.slack.com/reference/surfaces/formatting#escaping"""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
