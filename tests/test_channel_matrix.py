"""Matrix adapter against a loopback server that answers like a homeserver's client API."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from commcal.channels.base import EnvRef, Message, PermanentError, TransientError
from commcal.channels.matrix import MatrixChannel
from commcal.errors import ConfigError
from commcal.http import TimeoutSession

ROOM = "!OGEhHVWSdvArJzumhm:matrix.org"
ENV = {"MATRIX_TOKEN": "syt_YWNtZQ_secret"}
AUTH = {"Authorization": "Bearer syt_YWNtZQ_secret"}
SEND = f"/_matrix/client/v3/rooms/{ROOM}/send/m.room.message/"


def channel(server: HTTPServer, **settings: Any) -> MatrixChannel:
    http = settings.pop("http", None)
    config: dict[str, Any] = {
        "homeserver": server.url_for("/").rstrip("/"),
        "access_token": EnvRef("${MATRIX_TOKEN}"),
        "room_id": ROOM,
    }
    config.update(settings)
    return MatrixChannel("mx", config, env=ENV, http=http)


def message(text: str = "Γεια σας 👋", html: str | None = None) -> Message:
    return Message("mx", "matrix", text, html=html)


class Homeserver:
    """Keeps events by transaction id, as the spec requires of a homeserver."""

    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        self.ids: dict[str, str] = {}

    def __call__(self, request: Request) -> Response:
        txn = request.path.rsplit("/", 1)[1]
        if txn not in self.ids:
            self.ids[txn] = f"$event{len(self.ids) + 1}-x_yz"
            self.events[txn] = json.loads(request.data)
        return Response(json.dumps({"event_id": self.ids[txn]}), content_type="application/json")


def test_send_puts_event_with_txn_id(httpserver: HTTPServer) -> None:
    server = Homeserver()
    httpserver.expect_request(SEND + "delivery-1", method="PUT", headers=AUTH).respond_with_handler(
        server
    )
    receipt = channel(httpserver).send(message("Hi *all*", html="Hi <em>all</em>"), "delivery-1")
    assert receipt.remote_id == "$event1-x_yz"
    assert receipt.url == f"https://matrix.to/#/{ROOM}/$event1-x_yz?via=matrix.org"
    assert server.events["delivery-1"] == {
        "msgtype": "m.text",
        "body": "Hi *all*",
        "format": "org.matrix.custom.html",
        "formatted_body": "Hi <em>all</em>",
    }


def test_same_txn_id_twice_gives_same_event(httpserver: HTTPServer) -> None:
    server = Homeserver()
    httpserver.expect_request(SEND + "delivery-1", method="PUT").respond_with_handler(server)
    httpserver.expect_request(SEND + "delivery-2", method="PUT").respond_with_handler(server)
    mx = channel(httpserver, msgtype="m.notice")
    first = mx.send(message(), "delivery-1")
    again = mx.send(message(), "delivery-1")
    other = mx.send(message(), "delivery-2")
    assert first.remote_id == again.remote_id
    assert other.remote_id != first.remote_id
    assert len(server.events) == 2
    assert server.events["delivery-1"] == {"msgtype": "m.notice", "body": "Γεια σας 👋"}


def test_txn_id_is_url_quoted(httpserver: HTTPServer) -> None:
    seen: list[str] = []

    def handler(request: Request) -> Response:
        seen.append(request.environ.get("RAW_URI", request.full_path))
        return Response('{"event_id":"$e"}', content_type="application/json")

    httpserver.expect_request(SEND + "cal 1?x", method="PUT").respond_with_handler(handler)
    channel(httpserver).send(message(), "cal 1?x")
    assert seen and "cal%201%3Fx" in seen[0]


def test_rate_limit_uses_retry_after_ms(httpserver: HTTPServer) -> None:
    httpserver.expect_request(SEND + "k").respond_with_json(
        {"errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests", "retry_after_ms": 2500},
        status=429,
    )
    with pytest.raises(TransientError, match="M_LIMIT_EXCEEDED") as caught:
        channel(httpserver).send(message(), "k")
    assert caught.value.retry_after == 2.5


def test_forbidden_is_permanent_with_reason(httpserver: HTTPServer) -> None:
    httpserver.expect_request(SEND + "k").respond_with_json(
        {"errcode": "M_FORBIDDEN", "error": "User @acme:matrix.org not in room"}, status=403
    )
    with pytest.raises(PermanentError, match=r"M_FORBIDDEN User @acme:matrix\.org not in room"):
        channel(httpserver).send(message(), "k")


def test_unknown_token_is_permanent_and_redacted(httpserver: HTTPServer) -> None:
    httpserver.expect_request(SEND + "k").respond_with_json(
        {
            "errcode": "M_UNKNOWN_TOKEN",
            "error": "Invalid access token passed.",
            "soft_logout": False,
        },
        status=401,
    )
    with pytest.raises(PermanentError, match="M_UNKNOWN_TOKEN") as caught:
        channel(httpserver).send(message(), "k")
    assert "syt_YWNtZQ_secret" not in str(caught.value)


def test_500_is_transient(httpserver: HTTPServer) -> None:
    httpserver.expect_request(SEND + "k").respond_with_data("upstream down", status=503)
    with pytest.raises(TransientError, match="HTTP 503"):
        channel(httpserver).send(message(), "k")


def test_timeout_is_transient(httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return Response("{}", content_type="application/json")

    httpserver.expect_request(SEND + "k").respond_with_handler(slow)
    with pytest.raises(TransientError, match="timed out"):
        channel(httpserver, http=TimeoutSession(timeout=(1, 0.3))).send(message(), "k")


def test_verify_checks_token_and_membership(httpserver: HTTPServer) -> None:
    httpserver.expect_request(
        "/_matrix/client/v3/account/whoami", method="GET", headers=AUTH
    ).respond_with_json({"user_id": "@acme:matrix.org", "device_id": "ABCDEF", "is_guest": False})
    httpserver.expect_oneshot_request("/_matrix/client/v3/joined_rooms").respond_with_json(
        {"joined_rooms": [ROOM]}
    )
    assert channel(httpserver).verify() == f"token works for @acme:matrix.org, a member of {ROOM}"
    httpserver.expect_oneshot_request("/_matrix/client/v3/joined_rooms").respond_with_json(
        {"joined_rooms": []}
    )
    with pytest.raises(PermanentError, match="has not joined"):
        channel(httpserver).verify()


def test_check_counts_bytes_including_html() -> None:
    mx = MatrixChannel(
        "mx", {"homeserver": "https://matrix.org", "access_token": EnvRef("${T}"), "room_id": ROOM}
    )
    assert mx.check(message("α" * 29_900)) == []
    assert mx.check(message("α" * 30_001)) == [
        "text is 60002 bytes (UTF-8), over matrix's limit of 60000 by 2"
    ]
    problems = mx.check(message("a" * 35_000, html="<p>" + "a" * 35_000 + "</p>"))
    assert problems == [
        "the event content (text, HTML and JSON quoting) is 70091 bytes, over matrix's limit "
        "of 60000 by 10091"
    ]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"access_token": EnvRef("${T}"), "room_id": ROOM}, "setting 'homeserver' is required"),
        ({"homeserver": "https://m.org", "room_id": ROOM}, "setting 'access_token' is required"),
        ({"homeserver": "https://m.org", "access_token": "syt_x", "room_id": ROOM}, "is a secret"),
        (
            {"homeserver": "https://m.org", "access_token": EnvRef("${T}"), "room_id": "#a:m.org"},
            "room_id must be a room id",
        ),
        (
            {"homeserver": "matrix.org", "access_token": EnvRef("${T}"), "room_id": ROOM},
            "homeserver must be an https:// URL",
        ),
    ],
)
def test_config_errors(settings: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        MatrixChannel("mx", settings, env={})


def test_missing_env_var_at_send_names_it() -> None:
    mx = MatrixChannel(
        "mx",
        {"homeserver": "https://m.org", "access_token": EnvRef("${MATRIX_TOKEN}"), "room_id": ROOM},
        env={},
    )
    with pytest.raises(ConfigError, match="MATRIX_TOKEN is not set"):
        mx.send(message(), "k")
