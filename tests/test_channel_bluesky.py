"""Bluesky adapter against a loopback server that answers like a PDS's XRPC endpoints."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeProject
from publish_support import TEMPLATES, config, every_minute
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner
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


# ---- the session, kept between runs ------------------------------------------------------------


class Pds:
    """A loopback PDS with real sessions: createSession (counted: Bluesky limits logins per
    account), refreshSession (rotates the refresh token, as the PDS does), createRecord and
    getRecord checked against the access token. `expire()` makes the access tokens issued so
    far answer 400 ExpiredToken, `revoke()` the refresh tokens too."""

    def __init__(self, accounts: dict[str, tuple[str, str]]) -> None:
        self.accounts = accounts  # handle -> (app password, did)
        self.access: dict[str, str] = {}  # live access token -> did
        self.refresh: dict[str, str] = {}  # live refresh token -> did
        self.expired: set[str] = set()
        self.logins: list[str] = []  # the identifier of each createSession
        self.refreshes = 0
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.authorizations: list[str] = []
        self.lock = threading.Lock()
        self.issued = 0
        self.login_delay = 0.0  # seconds a login takes: overlapping runs all wait for one
        pds = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                out = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def _bearer(self) -> str:
                return self.headers.get("Authorization", "").removeprefix("Bearer ")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.endswith("createSession"):
                    time.sleep(pds.login_delay)
                with pds.lock:
                    status, answer = pds.handle_post(self.path, self._bearer(), body)
                self._answer(status, answer)

            def do_GET(self) -> None:
                with pds.lock:
                    status, answer = pds.handle_get(self.path, self._bearer())
                self._answer(status, answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Pds:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _issue(self, did: str) -> dict[str, Any]:
        self.issued += 1
        access, refresh = f"eyJ.access-{self.issued}", f"eyJ.refresh-{self.issued}"
        self.access[access], self.refresh[refresh] = did, did
        handle = next(h for h, (_, d) in self.accounts.items() if d == did)
        return {"did": did, "handle": handle, "accessJwt": access, "refreshJwt": refresh}

    def _did(self, token: str) -> tuple[int, dict[str, Any]] | str:
        if token in self.expired:
            return 400, {"error": "ExpiredToken", "message": "Token has expired"}
        if token not in self.access:  # as @atproto/pds 0.5.35 answers
            return 400, {"error": "InvalidToken", "message": "Token could not be verified"}
        return self.access[token]

    def handle_post(self, path: str, token: str, body: dict[str, Any]) -> tuple[int, Any]:
        self.authorizations.append(token)
        name = path.rsplit("/", 1)[1]
        if name == "com.atproto.server.createSession":
            self.logins.append(str(body.get("identifier")))
            account = self.accounts.get(str(body.get("identifier")))
            if account is None or account[0] != body.get("password"):
                return 401, {
                    "error": "AuthenticationRequired",
                    "message": "Invalid identifier or password",
                }
            return 200, self._issue(account[1])
        if name == "com.atproto.server.refreshSession":
            self.refreshes += 1
            did = self.refresh.pop(token, None)
            if did is None or token in self.expired:
                return 400, {"error": "ExpiredToken", "message": "Token has been revoked"}
            return 200, self._issue(did)
        if name == "com.atproto.repo.createRecord":
            did = self._did(token)
            if not isinstance(did, str):
                return did
            if body["repo"] != did:
                return 401, {"error": "AuthRequired", "message": "not your repo"}
            key = (did, body["rkey"])
            if key in self.records:
                return 500, {"error": "InternalServerError", "message": "Internal Server Error"}
            self.records[key] = body["record"]
            return 200, {"uri": f"at://{did}/app.bsky.feed.post/{body['rkey']}", "cid": "bafy"}
        return 404, {"error": "MethodNotImplemented", "message": name}

    def handle_get(self, path: str, token: str) -> tuple[int, Any]:
        return 404, {"error": "MethodNotImplemented", "message": path}

    def expire(self) -> None:
        with self.lock:
            self.expired.update(self.access)

    def forget(self) -> None:
        """Every session issued so far is unknown (the PDS's data or signing key changed)."""
        with self.lock:
            self.access.clear()
            self.refresh.clear()

    def revoke(self) -> None:
        with self.lock:
            self.expired.update(self.access)
            self.refresh.clear()


ALICE, BOB = "did:plc:alice0000000000000000000", "did:plc:bob000000000000000000000"
ACCOUNTS = {"alice.test": ("alice-app-pass", ALICE), "bob.test": ("bob-app-pass", BOB)}
START = "2026-01-01 00:00"
T0 = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)


def sky_project(
    make_project: MakeProject, service: str, handle: str = "alice.test", items: int = 1
) -> Path:
    channels = (
        "  sky:\n    type: bluesky\n"
        f"    handle: {handle}\n"
        "    app_password: ${BSKY_PASSWORD}\n"
        f"    service: {service}\n"
    )
    return make_project(
        config=config(channels, publish="max_late: 1d, retry_delay: 0"),
        calendars={
            "main.yaml": "items:\n"
            + "".join(
                every_minute(f"tip{n}", ["sky"], START, 10).removeprefix("items:\n")
                for n in range(items)
            )
        },
        templates=TEMPLATES,
    )


def publish_at(root: Path, minute: int, password: str = "alice-app-pass") -> dict[str, Any]:
    """One `commcal publish` run (a fresh project load, as each cron run is)."""
    from commcal.cli import app

    now = (T0 + timedelta(minutes=minute, seconds=30)).isoformat()
    result = CliRunner().invoke(
        app,
        ["-C", str(root), "publish", "--format", "json", "--now", now],
        env={"BSKY_PASSWORD": password},
    )
    assert result.exit_code == 0, result.output
    report: dict[str, Any] = json.loads(result.stdout)
    assert "eyJ." not in result.output and password not in result.output
    return report


def session_file(root: Path) -> Path:
    return root / ".commcal" / "sessions" / "sky.json"


def test_five_runs_log_in_once_and_keep_the_session_private(make_project: MakeProject) -> None:
    with Pds(ACCOUNTS) as pds:
        root = sky_project(make_project, pds.url)
        for minute in range(5):
            report = publish_at(root, minute)
            assert report["counts"].get("sent") == 1, report
        assert len(pds.records) == 5
        assert pds.logins == ["alice.test"]
        assert pds.refreshes == 0
        path = session_file(root)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = path.read_text()
        assert "alice-app-pass" not in text
        assert json.loads(text)["accessJwt"] == "eyJ.access-1"
        # Nothing else in the folder: no temporary file left behind.
        assert sorted(p.name for p in path.parent.iterdir()) == ["sky.json", "sky.lock"]


def test_an_expired_access_token_is_refreshed_not_a_new_login(make_project: MakeProject) -> None:
    with Pds(ACCOUNTS) as pds:
        root = sky_project(make_project, pds.url)
        publish_at(root, 0)
        pds.expire()  # two hours later: the access token has run out
        report = publish_at(root, 1)
        assert report["counts"].get("sent") == 1, report
        assert pds.logins == ["alice.test"]
        assert pds.refreshes == 1
        # The refreshed session is kept: the next run neither refreshes nor logs in.
        publish_at(root, 2)
        assert pds.logins == ["alice.test"] and pds.refreshes == 1
        assert pds.authorizations[-1] == "eyJ.access-2"
        assert stat.S_IMODE(session_file(root).stat().st_mode) == 0o600


def test_a_revoked_refresh_token_falls_back_to_one_login(make_project: MakeProject) -> None:
    with Pds(ACCOUNTS) as pds:
        root = sky_project(make_project, pds.url)
        publish_at(root, 0)
        pds.revoke()  # e.g. the app password was deleted and created again
        report = publish_at(root, 1)
        assert report["counts"].get("sent") == 1, report
        assert pds.logins == ["alice.test", "alice.test"] and pds.refreshes == 1
        publish_at(root, 2)
        assert len(pds.logins) == 2


def test_a_session_the_pds_cannot_verify_is_replaced_by_one_login(
    make_project: MakeProject,
) -> None:
    with Pds(ACCOUNTS) as pds:
        root = sky_project(make_project, pds.url)
        publish_at(root, 0)
        pds.forget()
        report = publish_at(root, 1)
        assert report["counts"].get("sent") == 1, report
        assert pds.logins == ["alice.test", "alice.test"]
        publish_at(root, 2)
        assert len(pds.logins) == 2


def test_a_session_of_another_account_is_never_used(make_project: MakeProject) -> None:
    with Pds(dict(ACCOUNTS)) as pds:
        root = sky_project(make_project, pds.url)
        publish_at(root, 0)
        # The project now posts as bob: alice's session stays unused, bob logs in.
        config_file = root / "commcal.yaml"
        config_file.write_text(config_file.read_text().replace("alice.test", "bob.test"))
        report = publish_at(root, 1, password="bob-app-pass")
        assert report["counts"].get("sent") == 1, report
        assert pds.logins == ["alice.test", "bob.test"]
        assert [did for did, _ in pds.records] == [ALICE, BOB]
        # A new app password for the same account: its own login, not the old session.
        pds.accounts["bob.test"] = ("bob-new-pass", BOB)
        publish_at(root, 2, password="bob-new-pass")
        assert pds.logins == ["alice.test", "bob.test", "bob.test"]


def test_a_damaged_session_file_costs_one_login(make_project: MakeProject) -> None:
    with Pds(ACCOUNTS) as pds:
        root = sky_project(make_project, pds.url)
        publish_at(root, 0)
        session_file(root).write_text('{"version": 1, "accessJwt": ')
        publish_at(root, 1)
        publish_at(root, 2)
        assert len(pds.logins) == 2
        assert json.loads(session_file(root).read_text())["version"] == 1


def commcal_command() -> list[str]:
    exe = shutil.which("commcal") or str(Path(sys.executable).with_name("commcal"))
    if os.path.exists(exe):
        return [exe]
    return [sys.executable, "-c", "from commcal.cli import main; main()"]


def test_overlapping_runs_log_in_once(make_project: MakeProject) -> None:
    with Pds(ACCOUNTS) as pds:
        root = sky_project(make_project, pds.url, items=5)
        pds.login_delay = 2.0  # long enough for every run to want a session at once
        now = (T0 + timedelta(minutes=1, seconds=30)).isoformat()
        args = ["publish", "--now", now, "--format", "json"]
        procs = [
            subprocess.Popen(
                [*commcal_command(), "-C", str(root), *args, "--only", f"tip{n}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "BSKY_PASSWORD": "alice-app-pass"},
            )
            for n in range(5)
        ]
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert "eyJ." not in out + err
        assert len(pds.records) == 10  # 5 items, 2 due each
        assert pds.logins == ["alice.test"]
        data = json.loads(session_file(root).read_text())
        assert data["accessJwt"] == "eyJ.access-1"
        assert stat.S_IMODE(session_file(root).stat().st_mode) == 0o600


def test_a_session_answer_without_tokens_is_a_clear_failure(make_project: MakeProject) -> None:
    from commcal.cli import app

    with Pds(ACCOUNTS) as pds:
        root = sky_project(make_project, pds.url)
        pds.handle_post = lambda path, token, body: (200, {"did": ALICE})  # type: ignore[method-assign]
        result = CliRunner().invoke(
            app,
            ["-C", str(root), "publish", "--format", "json", "--now", "2026-01-01T00:00:30Z"],
            env={"BSKY_PASSWORD": "alice-app-pass"},
        )
        assert result.exit_code == 1, result.output
        [delivery] = json.loads(result.stdout)["deliveries"]
        assert delivery["state"] == "failed"
        assert "without handle, accessJwt, refreshJwt" in delivery["detail"]
        assert not session_file(root).exists()


def test_a_session_answer_without_tokens_is_a_refused_login_not_a_crash(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/xrpc/com.atproto.server.createSession").respond_with_json({})
    with pytest.raises(PermanentError, match="answered its session without"):
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
