"""Bluesky adapter against a loopback server that answers like a PDS's XRPC endpoints."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from commcal.channels.base import EnvRef, Media, Message, PermanentError, TransientError
from commcal.channels.bluesky import TID_ALPHABET, BlueskyChannel, record_key
from commcal.errors import ConfigError
from commcal.http import TimeoutSession

DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
ENV = {"BSKY_PASSWORD": "app-pass-1234"}
SESSION = {
    "did": DID,
    "handle": "acme.bsky.social",
    "accessJwt": "access-1",
    "refreshJwt": "refresh-1",
    "active": True,
}
NOW = datetime(2025, 3, 14, 9, 26, 53, 589000, tzinfo=UTC)


def channel(server: HTTPServer, **settings: Any) -> BlueskyChannel:
    http = settings.pop("http", None)
    config: dict[str, Any] = {
        "handle": "acme.bsky.social",
        "app_password": EnvRef("${BSKY_PASSWORD}"),
        "service": server.url_for("/").rstrip("/"),
    }
    config.update(settings)
    bsky = BlueskyChannel("bsky", config, env=ENV, http=http)
    bsky.now = lambda: NOW
    return bsky


def message(text: str, **kwargs: Any) -> Message:
    return Message("bsky", "bluesky", text, **kwargs)


def expect_session(server: HTTPServer) -> None:
    server.expect_oneshot_request(
        "/xrpc/com.atproto.server.createSession",
        method="POST",
        json={"identifier": "acme.bsky.social", "password": "app-pass-1234"},
    ).respond_with_json(SESSION)


def created(rkey: str) -> dict[str, Any]:
    # com.atproto.repo.createRecord output.
    return {
        "uri": f"at://{DID}/app.bsky.feed.post/{rkey}",
        "cid": "bafyreibjifzpqj6o6wcq3hejh7y4z4z2vmiklkvykc57tw3pcbx3kxifpm",
        "commit": {"cid": "bafyreih2jm", "rev": "3lkqsjgmuis2b"},
        "validationStatus": "valid",
    }


def test_record_key_is_a_valid_deterministic_tid() -> None:
    key = record_key("delivery-1")
    assert key == record_key("delivery-1")
    assert key != record_key("delivery-2")
    assert len(key) == 13
    assert set(key) <= set(TID_ALPHABET)
    # https://atproto.com/specs/tid: the first character's top bit is 0.
    assert key[0] in "234567abcdefghij"


def test_send_creates_post_with_exact_facets(httpserver: HTTPServer) -> None:
    text = "Καλημέρα 👋🏽 δείτε https://example.org/εκδήλωση και example.com/path. #Αθήνα2025"
    rkey = record_key("delivery-1")
    seen: list[dict[str, Any]] = []

    def create(request: Request) -> Response:
        seen.append(json.loads(request.data))
        return Response(json.dumps(created(rkey)), content_type="application/json")

    expect_session(httpserver)
    httpserver.expect_oneshot_request(
        "/xrpc/com.atproto.repo.createRecord",
        method="POST",
        headers={"Authorization": "Bearer access-1"},
    ).respond_with_handler(create)
    receipt = channel(httpserver).send(message(text, language="el"), "delivery-1")
    httpserver.check_assertions()

    assert receipt.remote_id == f"at://{DID}/app.bsky.feed.post/{rkey}"
    assert receipt.url == f"https://bsky.app/profile/acme.bsky.social/post/{rkey}"
    body = seen[0]
    assert body["repo"] == DID
    assert body["collection"] == "app.bsky.feed.post"
    assert body["rkey"] == rkey
    record = body["record"]
    assert record["$type"] == "app.bsky.feed.post"
    assert record["text"] == text
    assert record["createdAt"] == "2025-03-14T09:26:53.589Z"
    assert record["langs"] == ["el"]
    encoded = text.encode("utf-8")
    # Byte offsets counted by hand: "Καλημέρα " is 17 bytes, "👋🏽" 8, " δείτε " 12, the Greek
    # link 36, " και " 8, "example.com/path" 16 (its trailing "." is no part of it), ". " 2,
    # "#Αθήνα2025" 15.
    assert record["facets"] == [
        {
            "index": {"byteStart": 37, "byteEnd": 73},
            "features": [
                {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.org/εκδήλωση"}
            ],
        },
        {
            "index": {"byteStart": 81, "byteEnd": 97},
            "features": [
                {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.com/path"}
            ],
        },
        {
            "index": {"byteStart": 99, "byteEnd": 114},
            "features": [{"$type": "app.bsky.richtext.facet#tag", "tag": "Αθήνα2025"}],
        },
    ]
    for facet, expected in zip(
        record["facets"],
        ["https://example.org/εκδήλωση", "example.com/path", "#Αθήνα2025"],
        strict=True,
    ):
        start, end = facet["index"]["byteStart"], facet["index"]["byteEnd"]
        assert encoded[start:end].decode("utf-8") == expected


def test_mentions_become_facets_only_when_resolved(httpserver: HTTPServer) -> None:
    text = "Με τους @friend.bsky.social και @nobody.bsky.social"
    seen: list[dict[str, Any]] = []

    def create(request: Request) -> Response:
        seen.append(json.loads(request.data))
        return Response(json.dumps(created("x")), content_type="application/json")

    expect_session(httpserver)
    httpserver.expect_request(
        "/xrpc/com.atproto.identity.resolveHandle", query_string="handle=friend.bsky.social"
    ).respond_with_json({"did": "did:plc:friend"})
    httpserver.expect_request(
        "/xrpc/com.atproto.identity.resolveHandle", query_string="handle=nobody.bsky.social"
    ).respond_with_json({"error": "InvalidRequest", "message": "Unable to resolve handle"}, 400)
    httpserver.expect_request("/xrpc/com.atproto.repo.createRecord").respond_with_handler(create)
    channel(httpserver).send(message(text), "k")
    facets = seen[0]["record"]["facets"]
    assert len(facets) == 1
    start, end = facets[0]["index"]["byteStart"], facets[0]["index"]["byteEnd"]
    assert text.encode()[start:end].decode() == "@friend.bsky.social"
    assert facets[0]["features"] == [
        {"$type": "app.bsky.richtext.facet#mention", "did": "did:plc:friend"}
    ]


def test_duplicate_rkey_is_already_sent(httpserver: HTTPServer) -> None:
    rkey = record_key("delivery-1")
    expect_session(httpserver)
    # Today's PDS answers a create over an existing rkey with a 500 (bluesky-social/indigo#873).
    httpserver.expect_oneshot_request("/xrpc/com.atproto.repo.createRecord").respond_with_json(
        {"error": "InternalServerError", "message": "Internal Server Error"}, status=500
    )
    httpserver.expect_oneshot_request(
        "/xrpc/com.atproto.repo.getRecord",
        method="GET",
        query_string={"repo": DID, "collection": "app.bsky.feed.post", "rkey": rkey},
    ).respond_with_json(
        {
            "uri": f"at://{DID}/app.bsky.feed.post/{rkey}",
            "cid": "bafyreibjifz",
            "value": {"$type": "app.bsky.feed.post", "text": "hello", "createdAt": "x"},
        }
    )
    receipt = channel(httpserver).send(message("hello"), "delivery-1")
    httpserver.check_assertions()
    assert receipt.remote_id == f"at://{DID}/app.bsky.feed.post/{rkey}"


def test_failed_create_without_record_raises_original_error(httpserver: HTTPServer) -> None:
    expect_session(httpserver)
    httpserver.expect_request("/xrpc/com.atproto.repo.createRecord").respond_with_json(
        {
            "error": "InvalidRequest",
            "message": "Invalid app.bsky.feed.post record: Record/text must not be longer "
            "than 300 graphemes",
        },
        status=400,
    )
    httpserver.expect_request("/xrpc/com.atproto.repo.getRecord").respond_with_json(
        {"error": "RecordNotFound", "message": "Could not locate record"}, status=400
    )
    with pytest.raises(
        PermanentError, match=r"InvalidRequest: Invalid app\.bsky\.feed\.post record"
    ):
        channel(httpserver).send(message("x"), "k")


def test_expired_token_refreshes_once_and_session_is_reused(httpserver: HTTPServer) -> None:
    expect_session(httpserver)
    httpserver.expect_oneshot_request(
        "/xrpc/com.atproto.repo.createRecord", headers={"Authorization": "Bearer access-1"}
    ).respond_with_json(created("a"))
    httpserver.expect_oneshot_request(
        "/xrpc/com.atproto.repo.createRecord", headers={"Authorization": "Bearer access-1"}
    ).respond_with_json({"error": "ExpiredToken", "message": "Token has expired"}, status=400)
    httpserver.expect_oneshot_request(
        "/xrpc/com.atproto.server.refreshSession",
        method="POST",
        headers={"Authorization": "Bearer refresh-1"},
    ).respond_with_json({**SESSION, "accessJwt": "access-2", "refreshJwt": "refresh-2"})
    httpserver.expect_oneshot_request(
        "/xrpc/com.atproto.repo.createRecord", headers={"Authorization": "Bearer access-2"}
    ).respond_with_json(created("b"))
    bsky = channel(httpserver)
    bsky.send(message("one"), "k1")
    receipt = bsky.send(message("two"), "k2")
    httpserver.check_assertions()
    assert receipt.remote_id is not None and receipt.remote_id.endswith("/b")
    sessions = [r for r, _ in httpserver.log if r.path.endswith("createSession")]
    assert len(sessions) == 1


def test_bad_app_password_is_permanent(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/xrpc/com.atproto.server.createSession").respond_with_json(
        {"error": "AuthenticationRequired", "message": "Invalid identifier or password"},
        status=401,
    )
    with pytest.raises(PermanentError, match="Invalid identifier or password") as caught:
        channel(httpserver).send(message("x"), "k")
    assert "app-pass-1234" not in str(caught.value)
    with pytest.raises(PermanentError, match="AuthenticationRequired"):
        channel(httpserver).verify()


def test_rate_limit_uses_retry_after_or_ratelimit_reset(httpserver: HTTPServer) -> None:
    expect_session(httpserver)
    reset = str(int(time.time()) + 60)
    httpserver.expect_request("/xrpc/com.atproto.repo.createRecord").respond_with_json(
        {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
        status=429,
        headers={"ratelimit-reset": reset, "ratelimit-remaining": "0"},
    )
    with pytest.raises(TransientError, match="RateLimitExceeded") as caught:
        channel(httpserver).send(message("x"), "k")
    assert caught.value.retry_after is not None
    assert 50 < caught.value.retry_after <= 60
    # A 429 is not a sign the post exists: no getRecord was made.
    assert not [r for r, _ in httpserver.log if r.path.endswith("getRecord")]


def test_429_with_retry_after_header(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/xrpc/com.atproto.server.createSession").respond_with_json(
        {"error": "RateLimitExceeded", "message": "Rate Limit Exceeded"},
        status=429,
        headers={"Retry-After": "12"},
    )
    with pytest.raises(TransientError) as caught:
        channel(httpserver).send(message("x"), "k")
    assert caught.value.retry_after == 12


def test_timeout_is_transient(httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return Response("{}", content_type="application/json")

    httpserver.expect_request("/xrpc/com.atproto.server.createSession").respond_with_handler(slow)
    bsky = channel(httpserver, http=TimeoutSession(timeout=(1, 0.3)))
    with pytest.raises(TransientError, match="timed out"):
        bsky.send(message("x"), "k")


def test_images_are_uploaded_as_blobs(httpserver: HTTPServer, tmp_path: Path) -> None:
    image = tmp_path / "poster.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0 jpeg")
    blob = {
        "$type": "blob",
        "ref": {"$link": "bafkreibabalobzn6cd366ukcsjycp4yymjymgfxcv6xczmlgpemzkz3cfa"},
        "mimeType": "image/jpeg",
        "size": 10,
    }
    seen: list[dict[str, Any]] = []

    def create(request: Request) -> Response:
        seen.append(json.loads(request.data))
        return Response(json.dumps(created("x")), content_type="application/json")

    expect_session(httpserver)
    httpserver.expect_oneshot_request(
        "/xrpc/com.atproto.repo.uploadBlob",
        method="POST",
        headers={"Content-Type": "image/jpeg", "Authorization": "Bearer access-1"},
        data=b"\xff\xd8\xff\xe0 jpeg",
    ).respond_with_json({"blob": blob})
    httpserver.expect_request("/xrpc/com.atproto.repo.createRecord").respond_with_handler(create)
    media = (Media(str(image), alt="Αφίσα"),)
    channel(httpserver).send(message("Poster", media=media), "k")
    httpserver.check_assertions()
    assert seen[0]["record"]["embed"] == {
        "$type": "app.bsky.embed.images",
        "images": [{"alt": "Αφίσα", "image": blob}],
    }


def test_link_card_from_open_graph(httpserver: HTTPServer) -> None:
    page_url = httpserver.url_for("/event")
    httpserver.expect_request("/event").respond_with_data(
        '<html><head><meta property="og:title" content="Open day &amp; fair">'
        '<meta property="og:description" content="Come along"></head></html>',
        content_type="text/html",
    )
    seen: list[dict[str, Any]] = []

    def create(request: Request) -> Response:
        seen.append(json.loads(request.data))
        return Response(json.dumps(created("x")), content_type="application/json")

    expect_session(httpserver)
    httpserver.expect_request("/xrpc/com.atproto.repo.createRecord").respond_with_handler(create)
    channel(httpserver, card=True).send(message(f"See {page_url}"), "k")
    assert seen[0]["record"]["embed"] == {
        "$type": "app.bsky.embed.external",
        "external": {"uri": page_url, "title": "Open day & fair", "description": "Come along"},
    }


def test_check_counts_graphemes_and_bytes() -> None:
    bsky = BlueskyChannel("b", {"handle": "a.bsky.social", "app_password": EnvRef("${P}")}, env={})
    family = "👨‍👩‍👧‍👦"  # one grapheme, 25 bytes
    assert bsky.check(message(family * 119)) == []
    assert bsky.check(message(family * 121)) == [
        "text is 3025 bytes in UTF-8, over bluesky's limit of 3000 by 25"
    ]
    assert bsky.check(message("α" * 301)) == [
        "text is 301 graphemes, over bluesky's limit of 300 by 1"
    ]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"app_password": EnvRef("${P}")}, "setting 'handle' is required"),
        ({"handle": "a.bsky.social"}, "setting 'app_password' is required"),
        ({"handle": "a.bsky.social", "app_password": "hunter2"}, "is a secret"),
        ({"handle": "@a.bsky.social", "app_password": EnvRef("${P}")}, "handle must look like"),
        (
            {"handle": "a.bsky.social", "app_password": EnvRef("${P}"), "service": "bsky.social"},
            "service must be an https:// URL",
        ),
    ],
)
def test_config_errors(settings: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        BlueskyChannel("bsky", settings, env={})


def test_missing_env_var_at_send_names_it() -> None:
    bsky = BlueskyChannel(
        "bsky", {"handle": "a.bsky.social", "app_password": EnvRef("${BSKY_PASSWORD}")}, env={}
    )
    with pytest.raises(ConfigError, match="BSKY_PASSWORD is not set"):
        bsky.send(message("x"), "k")


def test_a_session_answer_without_tokens_is_a_refused_login_not_a_crash(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/xrpc/com.atproto.server.createSession").respond_with_json({})
    with pytest.raises(PermanentError, match="createSession answered without a session"):
        channel(httpserver).send(message("hi"), "delivery-1")


def test_an_unreadable_created_record_is_sent_with_the_uri_unknown(httpserver: HTTPServer) -> None:
    expect_session(httpserver)
    httpserver.expect_request("/xrpc/com.atproto.repo.createRecord").respond_with_data(
        "<html>ok</html>", content_type="text/html"
    )
    receipt = channel(httpserver).send(message("hi"), "delivery-1")
    assert receipt.remote_id is None
    assert (
        receipt.url == f"https://bsky.app/profile/acme.bsky.social/post/{record_key('delivery-1')}"
    )
    assert "remote id unknown" in receipt.note


def test_the_session_tokens_are_redacted_from_errors(httpserver: HTTPServer) -> None:
    """A PDS (or a proxy before it) that echoes the request's Authorization header."""
    session = {**SESSION, "accessJwt": "eyJhbGciOiJFUzI1NksifQ.sessionTokenAbcdef0123"}
    httpserver.expect_request("/xrpc/com.atproto.server.createSession").respond_with_json(session)
    httpserver.expect_request("/xrpc/com.atproto.repo.createRecord").respond_with_handler(
        lambda request: Response(
            json.dumps(
                {
                    "error": "InvalidRequest",
                    "message": "x" * 270 + " got " + request.headers["Authorization"],
                }
            ),
            status=400,
            content_type="application/json",
        )
    )
    httpserver.expect_request("/xrpc/com.atproto.repo.getRecord").respond_with_json(
        {"error": "RecordNotFound", "message": "no"}, status=400
    )
    with pytest.raises(PermanentError) as raised:
        channel(httpserver).send(message("hi"), "delivery-1")
    text = str(raised.value)
    assert "InvalidRequest" in text
    token = session["accessJwt"]
    assert not any(token[i : i + 8] in text for i in range(len(token) - 7)), text
