"""Mastodon adapter against a loopback server that answers like Mastodon's REST API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from commcal.channels.base import EnvRef, Media, Message, PermanentError, TransientError
from commcal.channels.mastodon import MastodonChannel
from commcal.errors import ConfigError
from commcal.http import TimeoutSession

ENV = {"MASTO_TOKEN": "s3cret-token"}
AUTH = {"Authorization": "Bearer s3cret-token"}


def channel(server: HTTPServer, **settings: Any) -> MastodonChannel:
    http = settings.pop("http", None)
    config = {"instance": server.url_for("/").rstrip("/"), "token": EnvRef("${MASTO_TOKEN}")}
    config.update(settings)
    return MastodonChannel("masto", config, env=ENV, http=http)


def message(text: str = "Καλημέρα! https://example.org", **options: Any) -> Message:
    media = options.pop("media", ())
    language = options.pop("language", "el")
    return Message("masto", "mastodon", text, language=language, media=media, options=options)


def status(status_id: str = "110", url: str = "https://masto.example/@acme/110") -> dict[str, Any]:
    # Trimmed Status entity: https://docs.joinmastodon.org/entities/Status/
    return {
        "id": status_id,
        "uri": "https://masto.example/users/acme/statuses/110",
        "url": url,
        "content": "<p>Καλημέρα!</p>",
        "visibility": "public",
        "language": "el",
        "media_attachments": [],
    }


def test_send_posts_status_with_idempotency_key(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(
        "/api/v1/statuses",
        method="POST",
        headers={**AUTH, "Idempotency-Key": "delivery-1"},
        json={
            "status": "Καλημέρα! https://example.org",
            "visibility": "unlisted",
            "language": "el",
            "spoiler_text": "news",
        },
    ).respond_with_json(status())
    receipt = channel(httpserver, visibility="unlisted").send(
        message(spoiler_text="news", language="el-GR"), "delivery-1"
    )
    assert receipt.remote_id == "110"
    assert receipt.url == "https://masto.example/@acme/110"
    httpserver.check_assertions()


def test_message_visibility_overrides_channel_default(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(
        "/api/v1/statuses",
        method="POST",
        json={"status": "hi", "visibility": "direct", "language": "sw"},
    ).respond_with_json(status())
    channel(httpserver).send(message("hi", visibility="direct", language="sw"), "k")
    httpserver.check_assertions()


@pytest.mark.parametrize(
    ("results", "extra"),
    [("live", {}), ("hidden", {"hide_totals": True})],  # hidden: counts shown once it ends
)
def test_poll_is_sent_as_json_poll(
    httpserver: HTTPServer, results: str, extra: dict[str, Any]
) -> None:
    httpserver.expect_oneshot_request(
        "/api/v1/statuses",
        method="POST",
        json={
            "status": "Which day?",
            "visibility": "public",
            "poll": {"options": ["Monday", "Friday"], "expires_in": 3600, **extra},
        },
    ).respond_with_json(status())
    poll = {
        "question": "Which day?",
        "options": ["Monday", "Friday"],
        "duration_seconds": 3600,
        "results": results,
    }
    channel(httpserver).send(message("Which day?", poll=poll, language=None), "k")
    httpserver.check_assertions()


def test_media_upload_waits_for_processing(httpserver: HTTPServer, tmp_path: Path) -> None:
    image = tmp_path / "poster.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    uploads: list[Request] = []

    def upload(request: Request) -> Response:
        uploads.append(request)
        # 202: accepted, still processing; url is null until done.
        return Response(
            '{"id":"22","type":"image","url":null,"description":"A poster"}',
            status=202,
            content_type="application/json",
        )

    httpserver.expect_oneshot_request("/api/v2/media", method="POST").respond_with_handler(upload)
    httpserver.expect_oneshot_request("/api/v1/media/22", method="GET").respond_with_json(
        {"id": "22", "url": None}, status=206
    )
    httpserver.expect_oneshot_request("/api/v1/media/22", method="GET").respond_with_json(
        {"id": "22", "url": "https://files.example/22.png"}
    )
    httpserver.expect_oneshot_request(
        "/api/v1/statuses",
        method="POST",
        json={"status": "Poster", "visibility": "public", "media_ids": ["22"]},
    ).respond_with_json(status())
    masto = channel(httpserver)
    masto.sleep = lambda seconds: None
    media = (Media(str(image), alt="A poster", mime_type="image/png"),)
    masto.send(message("Poster", media=media, language=None), "k")
    httpserver.check_assertions()
    sent = uploads[0]
    assert sent.headers["Authorization"] == "Bearer s3cret-token"
    assert sent.form["description"] == "A poster"
    assert sent.files["file"].filename == "poster.png"
    assert sent.files["file"].read() == b"\x89PNG\r\n\x1a\nfake"


def test_422_is_permanent_with_servers_reason(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/v1/statuses", method="POST").respond_with_json(
        {"error": "Validation failed: Text character limit of 500 exceeded"}, status=422
    )
    with pytest.raises(PermanentError, match="character limit of 500 exceeded"):
        channel(httpserver).send(message(), "k")


def test_401_is_permanent(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/v1/statuses").respond_with_json(
        {"error": "The access token is invalid"}, status=401
    )
    with pytest.raises(PermanentError, match="HTTP 401: The access token is invalid") as caught:
        channel(httpserver).send(message(), "k")
    assert "s3cret" not in str(caught.value)


def test_429_with_retry_after(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/v1/statuses").respond_with_json(
        {"error": "Too many requests"}, status=429, headers={"Retry-After": "30"}
    )
    with pytest.raises(TransientError) as caught:
        channel(httpserver).send(message(), "k")
    assert caught.value.retry_after == 30


def test_429_with_mastodon_rate_limit_reset(httpserver: HTTPServer) -> None:
    reset = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 120))
    httpserver.expect_request("/api/v1/statuses").respond_with_json(
        {"error": "Too many requests"}, status=429, headers={"X-RateLimit-Reset": reset}
    )
    with pytest.raises(TransientError) as caught:
        channel(httpserver).send(message(), "k")
    assert caught.value.retry_after is not None
    assert 100 < caught.value.retry_after <= 120


def test_500_is_transient(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/v1/statuses").respond_with_data("oops", status=500)
    with pytest.raises(TransientError, match="HTTP 500"):
        channel(httpserver).send(message(), "k")


def test_slow_server_times_out_as_transient(httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return Response("{}", content_type="application/json")

    httpserver.expect_request("/api/v1/statuses").respond_with_handler(slow)
    masto = channel(httpserver, http=TimeoutSession(timeout=(1, 0.3)))
    with pytest.raises(TransientError, match="timed out"):
        masto.send(message(), "k")


def test_verify_checks_credentials(httpserver: HTTPServer) -> None:
    httpserver.expect_request(
        "/api/v1/accounts/verify_credentials", method="GET", headers=AUTH
    ).respond_with_json({"id": "1", "username": "acme", "acct": "acme"})
    assert "@acme@" in channel(httpserver).verify()


def test_check_counts_urls_as_23_and_remote_mentions_by_user() -> None:
    masto = MastodonChannel(
        "masto", {"instance": "https://masto.example", "token": EnvRef("${T}")}, env={}
    )
    url = "https://example.org/" + "a" * 400
    assert masto.check(message(f"@bob@mastodon.social {url}")) == []
    over = message("x" * 480 + " " + url)
    assert masto.check(over) == ["text is 504 characters, over mastodon's limit of 500 by 4"]
    # Graphemes: a family emoji is one character.
    assert masto.measure("👨‍👩‍👧‍👦" * 10) == 10


def test_check_counts_as_the_mastodon_server_does() -> None:
    """Mastodon's own URL schemes cost 23, a URL over 4,096 characters and a mention followed by
    another @ count in full (config/initializers/twitter_regex.rb, app/lib/extractor.rb)."""
    masto = MastodonChannel(
        "masto", {"instance": "https://masto.example", "token": EnvRef("${T}")}, env={}
    )
    gemini = "gemini://gemini.example.org/" + "a" * 200
    assert masto.check(message("x" * 476 + " " + gemini)) == []  # 476 + 1 + 23 = 500
    huge = "https://example.org/" + "a" * 4100
    assert masto.measure(huge) == len(huge)
    assert masto.measure("@bob@example.com@x") == 18


def test_check_content_warning_counts_towards_limit() -> None:
    masto = MastodonChannel(
        "masto",
        {"instance": "https://m.example", "token": EnvRef("${T}"), "max_length": 20},
        env={},
    )
    problems = masto.check(message("x" * 15, spoiler_text="Προσοχή!", language=None))
    assert problems == [
        "text and content warning are 23 characters together, over mastodon's limit of 20 by 3"
    ]


def test_check_poll_limits(tmp_path: Path) -> None:
    masto = MastodonChannel("m", {"instance": "https://m.example", "token": EnvRef("${T}")}, env={})
    poll = {"options": ["a", "b", "c", "d", "e"], "duration_seconds": 60}
    problems = masto.check(message("Vote", poll=poll))
    assert "a poll needs 2 to 4 options, not 5" in problems
    assert any("poll duration" in p for p in problems)
    long = {"options": ["a" * 51, "b"], "duration_seconds": 3600}
    assert any("needs 1 to 50 characters" in p for p in masto.check(message("Vote", poll=long)))
    image = tmp_path / "x.png"
    image.write_bytes(b"x")
    both = message("Vote", poll={"options": ["a", "b"]}, media=(Media(str(image)),))
    assert "a mastodon status can have media or a poll, not both" in masto.check(both)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"token": EnvRef("${T}")}, "setting 'instance' is required"),
        ({"instance": "https://m.example"}, "setting 'token' is required"),
        ({"instance": "https://m.example", "token": "literal"}, "is a secret"),
        ({"instance": "ftp://m.example", "token": EnvRef("${T}")}, "must be an https:// URL"),
        ({"instance": "http://m.example", "token": EnvRef("${T}")}, "must be an https:// URL"),
        (
            {"instance": "https://m.example", "token": EnvRef("${T}"), "visibility": "everyone"},
            "visibility must be one of",
        ),
    ],
)
def test_config_errors(settings: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        MastodonChannel("masto", settings, env={})


def test_missing_env_var_at_send_names_it() -> None:
    masto = MastodonChannel(
        "masto", {"instance": "https://m.example", "token": EnvRef("${MASTO_TOKEN}")}, env={}
    )
    with pytest.raises(ConfigError, match="MASTO_TOKEN is not set"):
        masto.send(message(), "k")


@pytest.mark.parametrize("answer", [{}, [1, 2], "<html>Welcome</html>"])
def test_an_unreadable_status_is_sent_with_the_id_unknown(
    httpserver: HTTPServer, answer: Any
) -> None:
    """Mastodon said yes (200) in a body that names no status: no KeyError, no failure."""
    handler = httpserver.expect_request("/api/v1/statuses", method="POST")
    if isinstance(answer, str):
        handler.respond_with_data(answer, content_type="text/html")
    else:
        handler.respond_with_json(answer)
    receipt = channel(httpserver).send(message(), "k")
    assert receipt.remote_id is None
    assert "remote id unknown" in receipt.note


@pytest.mark.parametrize("pad", range(230, 278, 4))
def test_an_echoed_token_is_redacted_before_the_error_is_shortened(
    httpserver: HTTPServer, pad: int
) -> None:
    """A proxy echoes the Authorization header around the 300th character of its error, where
    the cut used to leave the token's first 12-15 characters."""
    token = "masto-0123456789abcdefghijklmnopqrstuvwxyz"
    httpserver.expect_request("/api/v1/statuses").respond_with_handler(
        lambda request: Response(
            json.dumps({"error": "x" * pad + " you sent " + request.headers["Authorization"]}),
            status=401,
            content_type="application/json",
        )
    )
    masto = MastodonChannel(
        "masto",
        {"instance": httpserver.url_for("/").rstrip("/"), "token": EnvRef("${MASTO_TOKEN}")},
        env={"MASTO_TOKEN": token},
    )
    with pytest.raises(PermanentError) as raised:
        masto.send(message(), "k")
    text = str(raised.value)
    assert text.startswith("HTTP 401: xxx")
    assert not any(token[i : i + 8] in text for i in range(len(token) - 7)), text
