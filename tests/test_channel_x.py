"""X adapter against a loopback server that answers like API v2."""

from __future__ import annotations

import time
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from commcal.channels.base import EnvRef, Media, Message, PermanentError, TransientError
from commcal.channels.x import XChannel
from commcal.errors import ConfigError
from commcal.http import TimeoutSession

ENV = {"X_TOKEN": "oauth2-user-token"}
AUTH = {"Authorization": "Bearer oauth2-user-token"}


def channel(server: HTTPServer, **settings: Any) -> XChannel:
    http = settings.pop("http", None)
    config: dict[str, Any] = {
        "token": EnvRef("${X_TOKEN}"),
        "api_url": server.url_for("/").rstrip("/"),
    }
    config.update(settings)
    return XChannel("x", config, env=ENV, http=http)


def message(text: str = "日本語とEnglish https://example.org", **options: Any) -> Message:
    media = options.pop("media", ())
    return Message("x", "x", text, media=media, options=options)


def created(post_id: str, text: str) -> dict[str, Any]:
    return {"data": {"id": post_id, "text": text, "edit_history_tweet_ids": [post_id]}}


def test_send_posts_text(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(
        "/2/tweets",
        method="POST",
        headers=AUTH,
        json={"text": "日本語とEnglish https://example.org"},
    ).respond_with_json(
        created("1445880548472328192", "日本語とEnglish https://t.co/abc"), status=201
    )
    receipt = channel(httpserver).send(message(), "k")
    httpserver.check_assertions()
    assert receipt.remote_id == "1445880548472328192"
    assert receipt.url == "https://x.com/i/web/status/1445880548472328192"


def test_send_poll(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(
        "/2/tweets",
        method="POST",
        json={"text": "Which day?", "poll": {"options": ["Mon", "Fri"], "duration_minutes": 120}},
    ).respond_with_json(created("1", "Which day?"), status=201)
    poll = {"question": "Which day?", "options": ["Mon", "Fri"], "duration_seconds": 7200}
    channel(httpserver).send(message("Which day?", poll=poll), "k")
    httpserver.check_assertions()


def test_401_is_permanent_with_detail(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/2/tweets").respond_with_json(
        {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"},
        status=401,
    )
    with pytest.raises(PermanentError, match="HTTP 401: Unauthorized") as caught:
        channel(httpserver).send(message(), "k")
    assert "oauth2-user-token" not in str(caught.value)


def test_403_duplicate_is_permanent(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/2/tweets").respond_with_json(
        {
            "detail": "You are not allowed to create a Tweet with duplicate content.",
            "type": "about:blank",
            "title": "Forbidden",
            "status": 403,
        },
        status=403,
    )
    with pytest.raises(PermanentError, match="duplicate content"):
        channel(httpserver).send(message(), "k")


def test_400_lists_each_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/2/tweets").respond_with_json(
        {
            "errors": [
                {
                    "parameters": {"poll.duration_minutes": ["2"]},
                    "message": "2 is not between 5 and 10080",
                }
            ],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request",
        },
        status=400,
    )
    with pytest.raises(PermanentError, match="2 is not between 5 and 10080"):
        channel(httpserver).send(message(), "k")


def test_429_uses_rate_limit_reset(httpserver: HTTPServer) -> None:
    reset = str(int(time.time()) + 900)
    httpserver.expect_request("/2/tweets").respond_with_json(
        {
            "title": "Too Many Requests",
            "detail": "Too Many Requests",
            "type": "about:blank",
            "status": 429,
        },
        status=429,
        headers={
            "x-rate-limit-limit": "200",
            "x-rate-limit-remaining": "0",
            "x-rate-limit-reset": reset,
        },
    )
    with pytest.raises(TransientError, match="Too Many Requests") as caught:
        channel(httpserver).send(message(), "k")
    assert caught.value.retry_after is not None
    assert 890 < caught.value.retry_after <= 900


def test_503_with_retry_after(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/2/tweets").respond_with_data(
        "Service Unavailable", status=503, headers={"Retry-After": "5"}
    )
    with pytest.raises(TransientError) as caught:
        channel(httpserver).send(message(), "k")
    assert caught.value.retry_after == 5


def test_timeout_is_transient(httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return Response("{}", content_type="application/json")

    httpserver.expect_request("/2/tweets").respond_with_handler(slow)
    with pytest.raises(TransientError, match="timed out"):
        channel(httpserver, http=TimeoutSession(timeout=(1, 0.3))).send(message(), "k")


def test_verify(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/2/users/me", method="GET", headers=AUTH).respond_with_json(
        {"data": {"id": "2244994945", "name": "Acme", "username": "acme"}}
    )
    assert channel(httpserver).verify() == "token works for @acme"


def test_check_weighted_length_and_poll_limits() -> None:
    x = XChannel("x", {"token": EnvRef("${X_TOKEN}")}, env={})
    url = "https://example.org/" + "a" * 200
    assert x.check(message("日" * 128 + " " + url)) == []  # 256 + 1 + 23 = 280
    assert x.check(message("日" * 129 + " " + url)) == [
        "text is 282 weighted characters (URLs 23, CJK and emoji 2), over x's limit of 280 by 2"
    ]
    poll = {"options": ["a", "b", "c", "d", "e"], "duration_seconds": 60}
    problems = x.check(message("Vote", poll=poll))
    assert "a poll needs 2 to 4 options, not 5" in problems
    assert "an x poll stays open 5 minutes to 7 days, not 1 minutes" in problems
    assert any(
        "needs 1 to 25" in p for p in x.check(message("V", poll={"options": ["a" * 26, "b"]}))
    )
    assert x.check(message("V", media=(Media("a.png"),))) == [
        "the x adapter posts text and polls only, not media"
    ]


@pytest.mark.parametrize("char", ["\ufeff", "\ufffe", "\uffff"])
def test_characters_x_refuses_are_a_problem_anywhere(char: str) -> None:
    """twitter-text INVALID_CHARACTERS: a post holding one is invalid whatever its length."""
    x = XChannel("x", {"token": EnvRef("${X_TOKEN}")}, env={})
    for text in (char + "Hello", "Hel" + char + "lo", "Hello" + char):
        (problem,) = x.check(message(text))
        assert "which X refuses; remove it" in problem
        assert f"U+{ord(char):04X}" in problem


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, "setting 'token' is required"),
        ({"token": "plain-token"}, "is a secret"),
        ({"token": EnvRef("${T}"), "api_url": "http://api.x.com"}, "https:// URL"),
        ({"token": EnvRef("${T}"), "bearer": "x"}, "unknown setting 'bearer'"),
    ],
)
def test_config_errors(settings: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        XChannel("x", settings, env={})


def test_missing_env_var_at_send_names_it() -> None:
    x = XChannel("x", {"token": EnvRef("${X_TOKEN}")}, env={})
    with pytest.raises(ConfigError, match="X_TOKEN is not set"):
        x.send(message(), "k")
