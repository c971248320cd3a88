"""Generic webhook: POST each message as JSON to a URL the user runs, optionally signed.

Request::

    POST <url>
    Content-Type: application/json
    Idempotency-Key: <delivery id>
    X-Commcal-Timestamp: <unix seconds>                 (only when `secret` is set)
    X-Commcal-Signature: sha256=<hex>                   (only when `secret` is set)

    {"id": <delivery id>, "channel": ..., "text": ..., "subject": ..., "html": ...,
     "language": ..., "languages": [...], "recipient": {"email", "name", "locale"} | null,
     "options": {...},
     "media": [{"name", "alt", "mime_type", "size", "sha256", "data"}]}   (only with media)

`language` is the post's main language, `languages` every one of a bilingual post (`lang:`),
main first; for a post in one language, just that one.

A medium is its file's bytes in `data` (base64, RFC 4648), with its size and SHA-256 to check
them by; a medium given as an https URL is {"url", "alt", "mime_type"} instead (fetch it).

Verifying the signature (the scheme Stripe and Slack use for their own webhooks): take the raw
request body bytes exactly as received, build ``f"{timestamp}.".encode() + body`` with the value of
`X-Commcal-Timestamp`, compute HMAC-SHA256 of it keyed with the shared secret, and compare its hex
digest with the part after ``sha256=`` using a constant-time comparison (``hmac.compare_digest``).
Reject timestamps more than a few minutes old to stop replays.

Idempotency: commcal retries a delivery with the *same* `Idempotency-Key` (also in the body as
`id`) when it cannot tell whether an earlier attempt arrived. The receiver must treat a repeated
key as the same message (answer 2xx again, do nothing new); that is what makes `idempotent = True`
true for this channel. A 2xx answer may carry JSON ``{"id": ..., "url": ...}`` to record.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from commcal.channels import httpkit
from commcal.channels.base import (
    EnvRef,
    Media,
    Message,
    Receipt,
    Setting,
)
from commcal.channels.httpkit import HttpChannel
from commcal.errors import ConfigError
from commcal.redact import Secrets

SIGNATURE_HEADER = "X-Commcal-Signature"
TIMESTAMP_HEADER = "X-Commcal-Timestamp"
# Header names whose values are credentials even when written literally in commcal.yaml.
CREDENTIAL_HEADER_WORDS = ("auth", "token", "key", "secret", "password", "cookie", "session")


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for `body` sent at `timestamp` (see the module docstring)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class WebhookChannel(HttpChannel):
    type_name: ClassVar[str] = "webhook"
    description: ClassVar[str] = "POST each message as signed JSON to your own URL."
    settings_schema: ClassVar[Mapping[str, Setting]] = {
        "url": Setting("the URL to POST to, e.g. https://example.org/hooks/commcal", required=True),
        "secret": Setting(
            "shared secret for the HMAC-SHA256 signature, e.g. ${COMMCAL_WEBHOOK_SECRET}",
            private=True,
        ),
        "headers": Setting("extra HTTP headers to send, e.g. {X-Team: events}", kind=dict),
        "signature_header": Setting("header that carries the signature", default=SIGNATURE_HEADER),
    }
    # The receiver is asked to deduplicate on Idempotency-Key (module docstring).
    idempotent: ClassVar[bool] = True
    # Our own receiver: no length limit of a network applies.
    max_length: ClassVar[int | None] = None
    # Media go in the JSON body, base64 (4/3 of their size): commcal's own bound of 25 MB a
    # file keeps a request one a web server takes (nginx's client_max_body_size is 1 MB unless
    # raised: https://nginx.org/en/docs/http/ngx_http_core_module.html#client_max_body_size).
    max_media_bytes: ClassVar[int | None] = 25_000_000
    video_types: ClassVar[frozenset[str]] = frozenset(
        {"video/mp4", "video/quicktime", "video/webm", "video/x-m4v"}
    )

    def configure(self) -> None:
        # The clock is an attribute so tests can pin the signed timestamp.
        self.clock: Callable[[], float] = time.time
        url = self.options.get("url")
        if isinstance(url, str):
            check_url(self.name, "url", url)
        headers = self.options.get("headers") or {}
        bad = [k for k, v in headers.items() if not isinstance(v, str | EnvRef)]
        if bad:
            raise ConfigError(
                f"channel {self.name!r} (webhook): header value of {', '.join(map(str, bad))} "
                "must be text"
            )

    def send(self, message: Message, idempotency_key: str) -> Receipt:
        url = str(self.value("url"))
        # A URL read from the environment may carry a token: do not repeat it.
        check_url(self.name, "url", url, show=not isinstance(self.options.get("url"), EnvRef))
        body = json.dumps(self.payload(message, idempotency_key), ensure_ascii=False).encode()
        headers = {str(k): self._header_value(str(k), v) for k, v in self.extra_headers().items()}
        headers["Content-Type"] = "application/json"
        headers["Idempotency-Key"] = idempotency_key
        if self.options.get("secret") is not None:
            timestamp = str(int(self.clock()))
            headers[TIMESTAMP_HEADER] = timestamp
            headers[self.options["signature_header"]] = sign(self.secret("secret"), timestamp, body)
        return _receipt(self.call("POST", url, data=body, headers=headers))

    def payload(self, message: Message, idempotency_key: str) -> dict[str, Any]:
        recipient = message.recipient
        return {
            "id": idempotency_key,
            "channel": message.channel,
            "text": message.text,
            "subject": message.subject,
            "html": message.html,
            "language": message.language,
            "languages": list(
                message.languages or ((message.language,) if message.language else ())
            ),
            "recipient": None
            if recipient is None
            else {"email": recipient.email, "name": recipient.name, "locale": recipient.locale},
            "options": dict(message.options),
            **({"media": [self._medium(m) for m in message.media]} if message.media else {}),
        }

    def _medium(self, media: Media) -> dict[str, Any]:
        """One medium as the receiver gets it: the file itself (base64), or its URL."""
        import base64

        from commcal.channels import attach
        from commcal.media import is_url, mime_type

        if is_url(media.path):
            return {"url": media.path, "alt": media.alt, "mime_type": mime_type(media)}
        data = attach.read(media, self, self.max_media_bytes)
        return {
            "name": attach.filename(media),
            "alt": media.alt,
            "mime_type": mime_type(media),
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "data": base64.b64encode(data).decode("ascii"),
        }

    def extra_secrets(self, secrets: Secrets) -> None:
        """Header values read from the environment, and literal ones of credential headers
        (Authorization, X-Api-Key ...); the URL when it comes from the environment, and the
        secret-looking query values of a literal one."""
        for key, value in self.extra_headers().items():
            if isinstance(value, EnvRef):
                resolved = value.resolve(self.env)
                secrets.add(resolved)
                if resolved and "://" in resolved:
                    secrets.add_url(resolved)
            elif any(word in str(key).lower() for word in CREDENTIAL_HEADER_WORDS):
                secrets.add(str(value))
                # "Bearer abc": the credential is the last word.
                secrets.add(str(value).split()[-1] if str(value).split() else "")
        url = self.options.get("url")
        if isinstance(url, EnvRef):
            secrets.add_url(url.resolve(self.env))
        elif isinstance(url, str):
            secrets.add_url(url, whole=False)

    def extra_headers(self) -> Mapping[Any, Any]:
        headers: Mapping[Any, Any] = self.options.get("headers") or {}
        return headers

    def _header_value(self, key: str, value: Any) -> str:
        if isinstance(value, EnvRef):
            resolved = value.resolve(self.env)
            if resolved is None:
                missing = ", ".join(n for n in value.names if not self.env.get(n))
                raise ConfigError(
                    f"channel {self.name!r}: environment variable {missing} is not set "
                    f"(commcal.yaml channels.{self.name}.headers.{key} refers to it)"
                )
            return resolved
        return str(value)


def check_url(channel: str, key: str, url: str, *, show: bool = True) -> None:
    """An http(s) URL with a host, or a ConfigError. `show=False` keeps a secret URL out of it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = f" {url!r}" if show else ""
        raise ConfigError(
            f"channel {channel!r}: setting {key!r}{shown} is not an http(s) URL "
            "(expected something like https://example.org/path)"
        )


def _receipt(response: Any) -> Receipt:
    """Any 2xx is a delivery; its JSON `id` and `url` are recorded when it has them (a receiver
    need not answer JSON at all)."""
    body = httpkit.json_body(response)
    remote_id = body.get("id")
    url = body.get("url")
    return Receipt(
        remote_id=str(remote_id) if isinstance(remote_id, str | int) else None,
        url=url if isinstance(url, str) else None,
    )
