"""`commcal pull` of Bluesky, Discord and Telegram posts, against loopback servers answering
with the shapes of each network's documented read API."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pull_support import record_sent
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner

from commcal.cli import app
from commcal.ledger import open_ledger

NOW = "2026-12-05T12:00:00Z"
TEAM = "did:plc:team4acme"
ROOT_URI = f"at://{TEAM}/app.bsky.feed.post/3lroot2acme2x"
ACCESS = "eyJhbGciOiJIUzI1NiJ9.access-pull.sig"
ENV = {
    "BSKY_PW": "app-pass-word-pull",
    "DISCORD_URL": "",
    "TG_TOKEN": "123456:tg-secret-pull",
}


def project(root: Path, channels: str) -> Path:
    (root / "calendars").mkdir(parents=True)
    (root / "commcal.yaml").write_text(
        "timezone: UTC\nlocale: en\nstate: sqlite:///state.db\nchannels:\n" + channels,
        encoding="utf-8",
    )
    return root


def pull_json(root: Path, env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        app, ["-C", str(root), "pull", "--now", NOW, "--format", "json", *args], env=env
    )
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def db(root: Path) -> str:
    return f"sqlite:///{root / 'state.db'}"


def post_view(uri: str, did: str, handle: str, text: str, parent: str | None = None) -> Any:
    """app.bsky.feed.defs#postView (lexicons/app/bsky/feed/defs.json)."""
    record: dict[str, Any] = {
        "$type": "app.bsky.feed.post",
        "text": text,
        "createdAt": "2026-12-01T10:00:00.000Z",
        "langs": ["en"],
    }
    if parent:
        record["reply"] = {
            "root": {"uri": ROOT_URI, "cid": "bafyroot"},
            "parent": {"uri": parent, "cid": "bafyparent"},
        }
    return {
        "uri": uri,
        "cid": "bafy" + uri[-6:],
        "author": {"did": did, "handle": handle, "displayName": handle.split(".")[0]},
        "record": record,
        "replyCount": 0,
        "repostCount": 0,
        "likeCount": 0,
        "quoteCount": 0,
        "indexedAt": "2026-12-01T10:00:01.000Z",
    }


def thread() -> dict[str, Any]:
    """app.bsky.feed.getPostThread's output: a #threadViewPost tree, with a deleted reply
    (#notFoundPost) and a blocked one (#blockedPost) among the replies."""
    ana = "at://did:plc:ana/app.bsky.feed.post/3lana1"
    root = post_view(ROOT_URI, TEAM, "acme.bsky.social", "Our post")
    root.update(likeCount=5, repostCount=2, replyCount=2, quoteCount=1)
    return {
        "thread": {
            "$type": "app.bsky.feed.defs#threadViewPost",
            "post": root,
            "replies": [
                {
                    "$type": "app.bsky.feed.defs#threadViewPost",
                    "post": post_view(ana, "did:plc:ana", "ana.bsky.social", "When?", ROOT_URI),
                    "replies": [
                        {
                            "$type": "app.bsky.feed.defs#threadViewPost",
                            "post": post_view(
                                f"at://{TEAM}/app.bsky.feed.post/3lteam1",
                                TEAM,
                                "acme.bsky.social",
                                "Friday!",
                                ana,
                            ),
                            "replies": [],
                        }
                    ],
                },
                {"$type": "app.bsky.feed.defs#notFoundPost", "uri": "at://x/y/z", "notFound": True},
                {
                    "$type": "app.bsky.feed.defs#blockedPost",
                    "uri": "at://did:plc:troll/app.bsky.feed.post/1",
                    "blocked": True,
                    "author": {"did": "did:plc:troll"},
                },
            ],
        }
    }


def bluesky(server: HTTPServer, appview: str) -> str:
    return (
        "  sky:\n    type: bluesky\n    handle: acme.bsky.social\n"
        f"    app_password: ${{BSKY_PW}}\n    service: {server.url_for('/pds').rstrip('/')}\n"
        f"    appview: {appview}\n"
    )


def test_bluesky_thread_from_the_public_appview_without_a_login(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(
        "/appview/xrpc/app.bsky.feed.getPostThread",
        query_string={"uri": ROOT_URI, "depth": "100", "parentHeight": "0"},
    ).respond_with_json(thread())
    root = project(tmp_path, bluesky(httpserver, httpserver.url_for("/appview")))
    record_sent(db(root), [("d-sky", "sky", ROOT_URI)])
    code, data = pull_json(root, ENV)
    assert code == 0
    (post,) = data["posts"]
    assert (post["likes"], post["reposts"], post["replies"], post["quotes"]) == (5, 2, 2, 1)
    assert post["new_replies"] == 2
    assert all("Authorization" not in request.headers for request, _ in httpserver.log)
    with open_ledger(db(root)) as ledger:
        replies = {r.text: r for r in ledger.replies()}
    assert set(replies) == {"When?", "Friday!"}
    assert replies["When?"].author == "ana.bsky.social"
    assert replies["When?"].url == "https://bsky.app/profile/ana.bsky.social/post/3lana1"
    assert replies["Friday!"].by_team and not replies["When?"].by_team
    assert replies["Friday!"].parent_id == replies["When?"].remote_id
    assert replies["When?"].lang == "en"


def test_bluesky_through_the_pds_logs_in_and_names_the_appview(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request(
        "/pds/xrpc/com.atproto.server.createSession", method="POST"
    ).respond_with_json(
        {"did": TEAM, "handle": "acme.bsky.social", "accessJwt": ACCESS, "refreshJwt": "r.e.f"}
    )
    httpserver.expect_request(
        "/pds/xrpc/app.bsky.feed.getPostThread",
        headers={
            "Authorization": f"Bearer {ACCESS}",
            "atproto-proxy": "did:web:api.bsky.app#bsky_appview",
        },
    ).respond_with_json(thread())
    root = project(tmp_path, bluesky(httpserver, "pds"))
    record_sent(db(root), [("d-sky", "sky", ROOT_URI)])
    code, data = pull_json(root, ENV)
    assert code == 0, data
    assert data["posts"][0]["likes"] == 5


def test_bluesky_deleted_post_is_gone(tmp_path: Path, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/appview/xrpc/app.bsky.feed.getPostThread").respond_with_json(
        {"error": "NotFound", "message": f"Post not found: {ROOT_URI}"}, status=400
    )
    root = project(tmp_path, bluesky(httpserver, httpserver.url_for("/appview")))
    record_sent(db(root), [("d-sky", "sky", ROOT_URI)])
    code, data = pull_json(root, ENV)
    assert (code, data["posts"][0]["outcome"]) == (0, "gone")


def discord(server: HTTPServer) -> tuple[str, dict[str, str]]:
    url = server.url_for("/api/webhooks/42/hook-token-s3cret")
    return "  disc:\n    type: discord\n    webhook_url: ${DISCORD_URL}\n", {
        **ENV,
        "DISCORD_URL": url,
    }


def test_discord_reactions_and_poll_results(tmp_path: Path, httpserver: HTTPServer) -> None:
    # The Message object (https://discord.com/developers/docs/resources/message#message-object).
    httpserver.expect_request(
        "/api/webhooks/42/hook-token-s3cret/messages/1100", method="GET"
    ).respond_with_json(
        {
            "id": "1100",
            "channel_id": "9",
            "content": "",
            "reactions": [
                {"count": 3, "me": False, "emoji": {"id": None, "name": "🎉"}},
                {"count": 2, "me": False, "emoji": {"id": "77", "name": "acme"}},
            ],
            "poll": {
                "question": {"text": "Which day?"},
                "answers": [
                    {"answer_id": 1, "poll_media": {"text": "Friday"}},
                    {"answer_id": 2, "poll_media": {"text": "Saturday"}},
                ],
                "results": {
                    "is_finalized": False,
                    "answer_counts": [{"id": 1, "count": 4, "me_voted": False}],
                },
            },
        }
    )
    httpserver.expect_request("/api/webhooks/42/hook-token-s3cret/messages/1200").respond_with_json(
        {"message": "Unknown Message", "code": 10008}, status=404
    )
    channels, env = discord(httpserver)
    root = project(tmp_path, channels)
    record_sent(db(root), [("d-disc", "disc", "1100"), ("d-del", "disc", "1200")])
    code, data = pull_json(root, env)
    assert code == 0
    found, deleted = data["posts"]
    assert found["likes"] == 5
    assert found["extra"] == {
        "reactions": {"🎉": 3, "<:acme:77>": 2},
        "poll": {"Friday": 4, "Saturday": 0},
        "poll_final": False,
    }
    assert deleted["outcome"] == "gone"
    assert "hook-token-s3cret" not in json.dumps(data)


def test_discord_429_body_is_waited_out(tmp_path: Path, httpserver: HTTPServer) -> None:
    path = "/api/webhooks/42/hook-token-s3cret/messages/1100"
    httpserver.expect_ordered_request(path).respond_with_json(
        {"message": "You are being rate limited.", "retry_after": 0.05, "global": False},
        status=429,
    )
    httpserver.expect_ordered_request(path).respond_with_json({"id": "1100", "reactions": []})
    channels, env = discord(httpserver)
    root = project(tmp_path, channels)
    record_sent(db(root), [("d-disc", "disc", "1100")])
    code, data = pull_json(root, env)
    assert (code, data["posts"][0]["outcome"]) == (0, "pulled")
    assert len(httpserver.log) == 2


def test_telegram_posts_are_listed_unsupported_without_a_request(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    root = project(
        tmp_path,
        "  tg:\n    type: telegram\n    token: ${TG_TOKEN}\n    chat_id: '@acmenews'\n"
        f"    api_url: {httpserver.url_for('/').rstrip('/')}\n",
    )
    record_sent(db(root), [("d-tg", "tg", "55")])
    code, data = pull_json(root, ENV)
    assert code == 0
    (post,) = data["posts"]
    assert post["outcome"] == "unsupported"
    assert "Bot API" in post["note"]
    assert httpserver.log == []


def test_bluesky_ratelimit_headers_stop_the_channel_when_the_reset_is_far(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    # The AppView says no requests are left until a reset an hour away
    # (https://docs.bsky.app/docs/advanced-guides/rate-limits: ratelimit-* headers).
    httpserver.expect_request("/appview/xrpc/app.bsky.feed.getPostThread").respond_with_json(
        thread(),
        headers={
            "ratelimit-limit": "3000",
            "ratelimit-remaining": "0",
            "ratelimit-reset": str(int(time.time()) + 3600),
        },
    )
    root = project(tmp_path, bluesky(httpserver, httpserver.url_for("/appview")))
    record_sent(db(root), [("d-1", "sky", ROOT_URI), ("d-2", "sky", ROOT_URI + "2")])
    code, data = pull_json(root, ENV, "--max-wait", "5")
    assert code == 0
    assert [p["outcome"] for p in data["posts"]] == ["pulled", "left"]
    assert len(httpserver.log) == 1
    assert data["stopped"]["sky"].startswith("rate limited (resets in 3")
