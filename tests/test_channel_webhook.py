"""The generic webhook against a real loopback HTTP server (pytest-httpserver)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from commcal.channels.base import (
    EnvRef,
    Media,
    Message,
    PermanentError,
    Receipt,
    Recipient,
    TransientError,
)
from commcal.channels.webhook import WebhookChannel
from commcal.errors import ConfigError
from commcal.http import TimeoutSession

SECRET = "whsec-test-0123456789"
MESSAGE = Message(
    channel="hook",
    channel_type="webhook",
    text="Καλημέρα, meetup at 18:00",
    subject="Meetup",
    html="<p>Καλημέρα</p>",
    language="el",
    recipient=Recipient(email="maria@example.org", name="Μαρία", locale="el"),
    options={"visibility": "public"},
)


def make(httpserver: HTTPServer, **settings: Any) -> WebhookChannel:
    channel = WebhookChannel(
        "hook",
        {"url": httpserver.url_for("/hooks/commcal"), **settings},
        env={"HOOK_SECRET": SECRET},
        http=TimeoutSession(timeout=(1, 2)),
    )
    channel.clock = lambda: 1_765_382_400.7
    return channel


def test_posts_json_with_idempotency_key(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(
        "/hooks/commcal",
        method="POST",
        headers={"Idempotency-Key": "dlv-1", "Content-Type": "application/json"},
        json={
            "id": "dlv-1",
            "channel": "hook",
            "text": "Καλημέρα, meetup at 18:00",
            "subject": "Meetup",
            "html": "<p>Καλημέρα</p>",
            "language": "el",
            "languages": ["el"],
            "recipient": {"email": "maria@example.org", "name": "Μαρία", "locale": "el"},
            "options": {"visibility": "public"},
        },
    ).respond_with_json({"id": "evt_42", "url": "https://example.org/e/42"}, status=201)
    receipt = make(httpserver).send(MESSAGE, "dlv-1")
    httpserver.check_assertions()
    assert receipt == Receipt(remote_id="evt_42", url="https://example.org/e/42")
    request, _ = httpserver.log[0]
    assert "X-Commcal-Signature" not in request.headers


def test_signature_verifies_independently(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/hooks/commcal", method="POST").respond_with_data(
        "accepted", status=202
    )
    channel = make(httpserver, secret=EnvRef("${HOOK_SECRET}"), headers={"X-Team": "events"})
    assert channel.send(MESSAGE, "dlv-2") == Receipt()  # no JSON body: nothing to record
    request, _ = httpserver.log[0]
    body = request.get_data()
    timestamp = request.headers["X-Commcal-Timestamp"]
    assert timestamp == "1765382400"
    expected = hmac.new(
        SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    assert request.headers["X-Commcal-Signature"] == f"sha256={expected}"
    assert request.headers["X-Team"] == "events"
    assert json.loads(body)["id"] == "dlv-2"


def test_custom_signature_header(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/hooks/commcal").respond_with_json({})
    channel = make(httpserver, secret=EnvRef("${HOOK_SECRET}"), signature_header="X-Sig")
    channel.send(MESSAGE, "dlv-3")
    request, _ = httpserver.log[0]
    assert request.headers["X-Sig"].startswith("sha256=")


def test_429_is_transient_with_retry_after(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/hooks/commcal").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "30"}
    )
    with pytest.raises(TransientError) as caught:
        make(httpserver).send(MESSAGE, "dlv-4")
    assert caught.value.retry_after == 30.0
    assert "429" in str(caught.value)


def test_500_is_transient(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/hooks/commcal").respond_with_data("boom", status=500)
    with pytest.raises(TransientError, match="HTTP 500: boom"):
        make(httpserver).send(MESSAGE, "dlv-5")


def test_422_is_permanent_with_the_reason(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request("/hooks/commcal").respond_with_json(
        {"error": "text too long for our board"}, status=422
    )
    with pytest.raises(PermanentError, match="HTTP 422: text too long for our board"):
        make(httpserver).send(MESSAGE, "dlv-6")


def test_read_timeout_is_transient(httpserver: HTTPServer) -> None:
    def slow(_: Request) -> Response:
        time.sleep(1.5)
        return Response("late")

    httpserver.expect_oneshot_request("/hooks/commcal").respond_with_handler(slow)
    channel = WebhookChannel(
        "hook",
        {"url": httpserver.url_for("/hooks/commcal")},
        http=TimeoutSession(timeout=(1, 0.5)),
    )
    with pytest.raises(TransientError, match="timed out"):
        channel.send(MESSAGE, "dlv-7")


def test_connection_refused_is_transient_and_secret_free() -> None:
    channel = WebhookChannel(
        "hook",
        {"url": EnvRef("${HOOK_URL}"), "secret": EnvRef("${HOOK_SECRET}")},
        env={"HOOK_URL": "http://127.0.0.1:9/hooks/tok-abcdef", "HOOK_SECRET": SECRET},
        http=TimeoutSession(timeout=(1, 1)),
    )
    with pytest.raises(TransientError) as caught:
        channel.send(MESSAGE, "dlv-8")
    for text in (str(caught.value), repr(caught.value)):
        assert SECRET not in text
        assert "tok-abcdef" not in text
    assert caught.value.__cause__ is None


def test_url_is_required() -> None:
    with pytest.raises(ConfigError, match="'url' is required"):
        WebhookChannel("hook", {})


def test_literal_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"secret.*environment reference") as caught:
        WebhookChannel("hook", {"url": "https://example.org/h", "secret": SECRET})
    assert SECRET not in str(caught.value)


def test_bad_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"not an http\(s\) URL"):
        WebhookChannel("hook", {"url": "ftp://example.org/h"})


def test_bad_url_from_environment_is_a_config_error_at_send() -> None:
    channel = WebhookChannel("hook", {"url": EnvRef("${HOOK_URL}")}, env={"HOOK_URL": "nope"})
    with pytest.raises(ConfigError, match=r"not an http\(s\) URL"):
        channel.send(MESSAGE, "dlv-9")


def test_missing_environment_variable_is_named(httpserver: HTTPServer) -> None:
    channel = WebhookChannel(
        "hook",
        {"url": httpserver.url_for("/h"), "secret": EnvRef("${HOOK_SECRET}")},
        env={},
    )
    with pytest.raises(ConfigError, match="HOOK_SECRET is not set"):
        channel.send(MESSAGE, "dlv-10")


def test_header_values_and_an_env_url_with_a_token_are_redacted_from_errors(
    httpserver: HTTPServer,
) -> None:
    """A receiver that echoes the whole request: headers, path and query."""

    def echo(request: Request) -> Response:
        said = f"{request.full_path} " + " ".join(f"{k}={v}" for k, v in request.headers.items())
        return Response(json.dumps({"error": said}), status=403, content_type="application/json")

    httpserver.expect_request("/hooks/commcal").respond_with_handler(echo)
    url = httpserver.url_for("/hooks/commcal") + "?token=urlToken0123456789"
    channel = WebhookChannel(
        "hook",
        {
            "url": EnvRef("${HOOK_URL}"),
            "headers": {"Authorization": EnvRef("Bearer ${HOOK_AUTH}"), "X-Team": "events"},
        },
        env={"HOOK_URL": url, "HOOK_AUTH": "headerToken0123456789"},
        http=TimeoutSession(timeout=(1, 2)),
    )
    with pytest.raises(PermanentError) as raised:
        channel.send(MESSAGE, "k")
    text = str(raised.value)
    assert "X-Team=events" in text  # the echo did arrive: only the secrets are gone
    for token in ("urlToken0123456789", "headerToken0123456789"):
        assert not any(token[i : i + 8] in text for i in range(len(token) - 7)), text


def test_media_go_in_the_body_as_base64_with_size_and_digest(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    import base64

    from tests.media_helpers import png

    poster = png(tmp_path / "αφίσα.png", shade=9)
    got: list[dict[str, Any]] = []

    def record(request: Request) -> Response:
        got.append(json.loads(request.get_data()))
        return Response('{"id": "r1"}', content_type="application/json")

    httpserver.expect_oneshot_request("/hooks/commcal").respond_with_handler(record)
    message = Message(
        "hook",
        "webhook",
        "Λαϊκή",
        media=(
            Media(str(poster), alt="Η αφίσα"),
            Media("https://example.org/map.jpg", alt="Ο χάρτης"),
        ),
    )
    assert make(httpserver).send(message, "dlv-m").remote_id == "r1"
    (body,) = got
    first, second = body["media"]
    data = poster.read_bytes()
    assert first == {
        "name": "αφίσα.png",
        "alt": "Η αφίσα",
        "mime_type": "image/png",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "data": base64.b64encode(data).decode(),
    }
    assert second == {
        "url": "https://example.org/map.jpg",
        "alt": "Ο χάρτης",
        "mime_type": "image/jpeg",
    }
