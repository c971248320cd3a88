"""What every HTTP adapter does the same way: call, classify failures, read Retry-After.

`HttpChannel` is the base class of the HTTP adapters: its `call` makes every request to the
network and turns a failure into the error the adapter raises. An adapter says only what is its
network's own (the reason in an error body, when to try again); see `HttpChannel`.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlsplit

from commcal.channels.base import Channel, PermanentError, SendError, TransientError
from commcal.errors import ConfigError
from commcal.redact import SCAN_LIMIT

if TYPE_CHECKING:
    import requests

# RFC 9110 15.5.9 (408) and RFC 6585 4 (429): worth retrying; 5xx too.
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


_DELAY_SECONDS = re.compile(r"[0-9]{1,9}(\.[0-9]+)?")


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    # delay-seconds is 1*DIGIT; a fraction is taken too (some servers send one). Not float()
    # alone: "inf", "nan", "1e308" and "-5" are no delay, and would be waited for or not at all.
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def error_text(response: requests.Response, limit: int = SCAN_LIMIT) -> str:
    """The server's own reason: a JSON `error`/`message` field, or the body.

    Not shortened to a readable length here: a server may echo the request (its token) anywhere
    in it, and a cut before redaction would leave the token's first characters where redaction
    no longer recognises them. `Channel.redact` redacts, then cuts; `limit` only bounds memory."""
    reason = ""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error_description", "error", "message", "description", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                reason = value
                break
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                reason = value["message"]
                break
    if not reason:
        reason = response.text.strip()
    reason = " ".join(reason.split())
    if len(reason) > limit:
        reason = reason[: limit - 1] + "…"
    return f"HTTP {response.status_code}" + (f": {reason}" if reason else "")


def check_response(response: requests.Response) -> requests.Response:
    """Raise TransientError or PermanentError for an unsuccessful response; return it otherwise."""
    status = response.status_code
    if 200 <= status < 300:
        return response
    text = error_text(response)
    error: SendError
    if status in TRANSIENT_STATUS or status >= 500:
        error = TransientError(text, retry_after_seconds(response.headers.get("Retry-After")))
    else:
        error = PermanentError(text)
    error.response = response
    raise error


def request(session: requests.Session, method: str, url: str, **kwargs: Any) -> requests.Response:
    """One HTTP call with failures classified. Network errors and timeouts are transient."""
    import requests as _requests

    try:
        response = session.request(method, url, **kwargs)
    # `from None` everywhere: requests' exception text holds the full URL, and URLs hold tokens
    # (Telegram's path, Slack's and Discord's webhook URLs).
    except _requests.ConnectTimeout:
        raise TransientError(f"timed out connecting to {_host(url)}", unreachable=True) from None
    except _requests.Timeout:
        raise TransientError(
            f"timed out waiting for {_host(url)} (the request may have been delivered)",
            maybe_sent=True,
        ) from None
    except _requests.ConnectionError as exc:
        if _never_connected(exc):
            raise TransientError(f"could not connect to {_host(url)}", unreachable=True) from None
        raise TransientError(
            f"connection to {_host(url)} broke off (the request may have been delivered)",
            maybe_sent=True,
        ) from None
    except _requests.RequestException as exc:
        raise PermanentError(f"request to {_host(url)} failed: {type(exc).__name__}") from None
    return check_response(response)


@contextlib.contextmanager
def before_the_post() -> Iterator[None]:
    """Around requests that only prepare a post (an upload, a media container, a status
    check): one that failed, even after its body went out, posted nothing, so its
    TransientError is no `maybe_sent` (which would make the publisher record the delivery
    `unknown` instead of trying again)."""
    try:
        yield
    except TransientError as exc:
        exc.maybe_sent = False
        raise


def json_body(response: requests.Response) -> dict[str, Any]:
    """The response's JSON object, or {} when the body is not one (an HTML error page ...)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def status_of(error: SendError) -> int | None:
    """The HTTP status of the answer an error came with; None when there was none (a timeout,
    a refused connection) or the adapter made the error itself."""
    response = getattr(error, "response", None)
    return None if response is None else int(response.status_code)


def carry(new: SendError, old: SendError) -> SendError:
    """`new` with whatever else `old` knew (e.g. whether the request may have been delivered).

    Adapters rebuild errors to add the network's own reason without chaining the original
    (whose text may hold a URL with a token); this keeps its flags."""
    for key, value in vars(old).items():
        if key != "retry_after":  # the one thing `new` may know better
            vars(new)[key] = value
    return new


def reset_seconds(value: str | None, form: Literal["epoch", "iso"]) -> float | None:
    """Seconds from now until a rate limit resets, from a header that says when: `epoch` for
    Unix seconds (X, Bluesky), `iso` for an ISO 8601 time (Mastodon); None if it says nothing
    this can read."""
    if not value:
        return None
    if form == "epoch":
        # isascii: "²" is a digit to str.isdigit, and int() refuses it.
        return max(0.0, int(value) - time.time()) if value.isascii() and value.isdigit() else None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpChannel(Channel):
    """An adapter that talks to an HTTP API. Every request goes through `call`.

    A failed call is raised as an error rebuilt by `failure`: its text is the network's own
    reason (`error_reason`, or `error_text` for the whole text), redacted; it waits as long as
    the network says (`retry_after`: the Retry-After header, else `rate_limit_reset`); it keeps
    what httpkit knew (`maybe_sent`, `unreachable`); and nothing is chained to it, since the
    requests exception behind it names the full URL, and URLs hold tokens.
    """

    # A header saying when a rate limit resets, read when an answer has no Retry-After:
    # (name, "epoch") for Unix seconds, (name, "iso") for an ISO 8601 time; None: none.
    rate_limit_reset: ClassVar[tuple[str, Literal["epoch", "iso"]] | None] = None

    def call(
        self, method: str, url: str, *, token: str | None = None, **kwargs: Any
    ) -> requests.Response:
        """One request; `Authorization: Bearer <token>` when a token is given. A 2xx answer is
        returned; anything else is raised as `failure` rebuilds it."""
        headers = dict(kwargs.pop("headers", None) or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        failed: SendError
        try:
            return request(self.http, method, url, headers=headers, **kwargs)
        except SendError as exc:
            failed = exc
        # Raised outside the except block, so that the error httpkit raised (whose context is
        # the requests exception) is neither the cause nor the context of what we raise.
        raise self.failure(failed)

    def failure(self, error: SendError, response: requests.Response | None = None) -> SendError:
        """The error to raise for `error` (of httpkit, or one the adapter made for an answer
        that refuses in a 2xx), explained with `response`: by default the answer it came with."""
        if response is None:
            response = error.response
        text = self.error_text(error, response)
        return carry(
            self.new_error(text, self.retry_after(error, response), error, response), error
        )

    # -- what each network says its own way -----------------------------------------------------

    def error_reason(self, response: requests.Response) -> str:
        """The network's own reason for refusing, from its error body; "" keeps httpkit's
        (`HTTP 403: <error or message field, or the body>`)."""
        return ""

    def error_text(self, error: SendError, response: requests.Response | None) -> str:
        """The text of the error raised, redacted (`Channel.redact`)."""
        reason = self.error_reason(response) if response is not None else ""
        return self.redact(reason or str(error))

    def retry_after(self, error: SendError, response: requests.Response | None) -> float | None:
        """Seconds until the network takes a request again: Retry-After, else the time in the
        `rate_limit_reset` header; None: it did not say."""
        seconds = error.retry_after if isinstance(error, TransientError) else None
        if seconds is None and response is not None and self.rate_limit_reset is not None:
            name, form = self.rate_limit_reset
            seconds = reset_seconds(response.headers.get(name), form)
        return seconds

    def new_error(
        self,
        text: str,
        retry_after: float | None,
        error: SendError,
        response: requests.Response | None,
    ) -> SendError:
        """The error raised (before `carry` copies the flags of `error` to it): transient when
        httpkit found it so, else permanent."""
        if isinstance(error, TransientError):
            return TransientError(text, retry_after)
        return PermanentError(text)


def check_https_url(channel: Channel, key: str) -> None:
    """An https URL; plain http only for this machine (a local test server)."""
    raw = channel.options.get(key)
    if raw is None or not isinstance(raw, str):
        return
    parts = urlsplit(raw)
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if (
        parts.scheme not in ("https", "http")
        or not parts.hostname
        or (parts.scheme == "http" and not local)
    ):
        raise ConfigError(
            f"channel {channel.name!r} ({channel.type_name}): {key} must be an https:// URL "
            f"such as https://example.org, not {raw!r}"
        )


def _never_connected(exc: Exception) -> bool:
    """True when the connection was refused or never made, so nothing can have been sent."""
    from urllib3.exceptions import NameResolutionError, NewConnectionError

    cause: object = exc.args[0] if exc.args else None
    cause = getattr(cause, "reason", cause)
    return isinstance(cause, NewConnectionError | NameResolutionError)


def _host(url: str) -> str:
    """Host and port only: the userinfo of a URL is a credential, its path may hold a token."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "the server"
    if not host:
        return "the server"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port is not None else host
