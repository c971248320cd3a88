"""Slack incoming webhooks against a loopback server that answers like Slack does."""

from __future__ import annotations

import time

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from commcal.channels.base import EnvRef, Message, PermanentError, Receipt, TransientError
from commcal.channels.slack import SlackChannel
from commcal.errors import ConfigError
from commcal.http import TimeoutSession

TOKEN_PATH = "/services/T0001/B0002/xoxSecretToken123"
MESSAGE = Message(channel="team", channel_type="slack", text="Meetup Thursday: Q&A <live>")


def make(httpserver: HTTPServer, timeout: tuple[float, float] = (1, 2)) -> SlackChannel:
    return SlackChannel(
        "team",
        {"webhook_url": EnvRef("${SLACK_WEBHOOK_URL}")},
        env={"SLACK_WEBHOOK_URL": httpserver.url_for(TOKEN_PATH)},
        http=TimeoutSession(timeout=timeout),
    )


def assert_secret_free(exc: BaseException) -> None:
    for text in (str(exc), repr(exc)):
        assert "xoxSecretToken123" not in text
        assert "B0002" not in text
    assert exc.__cause__ is None


def test_posts_text_and_reads_ok(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(
        TOKEN_PATH,
        method="POST",
        headers={"Content-Type": "application/json"},
        json={"text": "Meetup Thursday: Q&amp;A &lt;live&gt;"},
    ).respond_with_data("ok", content_type="text/html")
    assert make(httpserver).send(MESSAGE, "dlv-1") == Receipt(None)
    httpserver.check_assertions()


@pytest.mark.parametrize(
    ("status", "body", "hint"),
    [
        (400, "invalid_payload", "could not read the message"),
        (403, "action_prohibited", "restricted posting"),
        (404, "no_service", "wrong or was revoked"),
        (410, "channel_is_archived", "archived"),
    ],
)
def test_documented_errors_are_permanent_and_explained(
    httpserver: HTTPServer, status: int, body: str, hint: str
) -> None:
    httpserver.expect_oneshot_request(TOKEN_PATH).respond_with_data(body, status=status)
    with pytest.raises(PermanentError) as caught:
        make(httpserver).send(MESSAGE, "dlv-2")
    assert str(caught.value).startswith(f"HTTP {status}: {body} (")
    assert hint in str(caught.value)
    assert_secret_free(caught.value)


def test_429_is_transient_with_retry_after(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(TOKEN_PATH).respond_with_data(
        "rate_limited", status=429, headers={"Retry-After": "12"}
    )
    with pytest.raises(TransientError) as caught:
        make(httpserver).send(MESSAGE, "dlv-3")
    assert caught.value.retry_after == 12.0
    assert_secret_free(caught.value)


def test_500_is_transient(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(TOKEN_PATH).respond_with_data("rollup_error", status=500)
    with pytest.raises(TransientError, match="HTTP 500: rollup_error"):
        make(httpserver).send(MESSAGE, "dlv-4")


def test_read_timeout_is_transient_and_secret_free(httpserver: HTTPServer) -> None:
    def slow(_: Request) -> Response:
        time.sleep(1.5)
        return Response("ok")

    httpserver.expect_oneshot_request(TOKEN_PATH).respond_with_handler(slow)
    with pytest.raises(TransientError, match="timed out") as caught:
        make(httpserver, timeout=(1, 0.5)).send(MESSAGE, "dlv-5")
    assert_secret_free(caught.value)


def test_connection_refused_is_transient_and_secret_free() -> None:
    channel = SlackChannel(
        "team",
        {"webhook_url": EnvRef("${SLACK_WEBHOOK_URL}")},
        env={"SLACK_WEBHOOK_URL": f"http://127.0.0.1:9{TOKEN_PATH}"},
        http=TimeoutSession(timeout=(1, 1)),
    )
    with pytest.raises(TransientError) as caught:
        channel.send(MESSAGE, "dlv-6")
    assert_secret_free(caught.value)


def test_length_is_checked_offline_as_sent() -> None:
    channel = SlackChannel("team", {"webhook_url": EnvRef("${SLACK_WEBHOOK_URL}")}, env={})
    assert channel.check(Message("team", "slack", "a" * 40_000)) == []
    problems = channel.check(Message("team", "slack", "a" * 39_999 + "&"))
    assert problems == ["text is 40004 characters, over slack's limit of 40000 by 4"]


def test_webhook_url_is_required() -> None:
    with pytest.raises(ConfigError, match="'webhook_url' is required"):
        SlackChannel("team", {})


def test_literal_webhook_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="environment reference") as caught:
        SlackChannel("team", {"webhook_url": f"https://hooks.slack.com{TOKEN_PATH}"})
    assert "xoxSecretToken123" not in str(caught.value)


def test_bad_webhook_url_is_a_config_error_without_the_url() -> None:
    channel = SlackChannel(
        "team",
        {"webhook_url": EnvRef("${SLACK_WEBHOOK_URL}")},
        env={"SLACK_WEBHOOK_URL": "hooks.slack.com/services/xoxSecretToken123"},
    )
    with pytest.raises(ConfigError, match="not an http") as caught:
        channel.send(MESSAGE, "dlv-7")
    assert "xoxSecretToken123" not in str(caught.value)


def test_missing_environment_variable_is_named() -> None:
    channel = SlackChannel("team", {"webhook_url": EnvRef("${SLACK_WEBHOOK_URL}")}, env={})
    with pytest.raises(ConfigError, match="SLACK_WEBHOOK_URL is not set"):
        channel.send(MESSAGE, "dlv-8")


def test_a_path_echoed_without_the_host_is_redacted(httpserver: HTTPServer) -> None:
    """A proxy that names only the path it could not forward: the token is in it."""
    httpserver.expect_request(TOKEN_PATH).respond_with_handler(
        lambda request: Response(f"no route for POST {request.path}", status=502)
    )
    with pytest.raises(TransientError) as raised:
        make(httpserver).send(MESSAGE, "k")
    assert "no route for POST" in str(raised.value)
    assert_secret_free(raised.value)


def test_a_2xx_other_than_ok_is_sent_with_a_note(httpserver: HTTPServer) -> None:
    httpserver.expect_request(TOKEN_PATH).respond_with_data("<html>portal</html>", status=200)
    receipt = make(httpserver).send(MESSAGE, "k")
    assert receipt.remote_id is None
    assert "remote id unknown" in receipt.note
