"""X (Twitter): a post, optionally with a poll, through API v2.

API: https://docs.x.com/x-api/posts/create-post (POST /2/tweets).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from commcal.channels import httpkit
from commcal.channels.base import (
    NOT_A_POLL,
    CannotChange,
    Message,
    PermanentError,
    Receipt,
    Setting,
    poll_option_problems,
    unreadable,
)
from commcal.channels.httpkit import HttpChannel
from commcal.channels.text import x_invalid_characters, x_length

if TYPE_CHECKING:
    import requests


class XChannel(HttpChannel):
    native_polls = True  # Message.options["poll"] becomes the network's own poll
    type_name = "x"
    description = "A post on X (Twitter) through API v2"
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
    # Text and polls only: this adapter does not upload media (`check` says so).
    max_media = 0

    def configure(self) -> None:
        httpkit.check_https_url(self, "api_url")

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
            problems.append("the x adapter posts text and polls only, not media")
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

    def send(self, message: Message, idempotency_key: str) -> Receipt:
        body: dict[str, Any] = {"text": message.text}
        poll = message.options.get("poll")
        if poll:
            body["poll"] = {
                "options": [str(choice) for choice in poll.get("options", [])],
                "duration_minutes": _minutes(poll),
            }
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
