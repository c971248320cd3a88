"""A loopback PDS for Bluesky send tests: a session, createRecord recorded, one send made."""

from __future__ import annotations

import json
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from commcal.channels.base import EnvRef, Message, Receipt
from commcal.channels.bluesky import BlueskyChannel


def send_to_pds(
    server: HTTPServer, text: str, *, card: bool = False, **attrs: Any
) -> tuple[dict[str, Any], Receipt]:
    """Send `text` through a BlueskyChannel on `server` (with `attrs` set on it, e.g. bounds in
    seconds); return the record createRecord got and the receipt. Handlers the test registered
    before (resolveHandle, uploadBlob) answer the other calls."""
    seen: list[dict[str, Any]] = []

    def create(request: Request) -> Response:
        seen.append(json.loads(request.data))
        body = {"uri": "at://did:plc:x/app.bsky.feed.post/k", "cid": "bafy"}
        return Response(json.dumps(body), content_type="application/json")

    server.expect_request("/xrpc/com.atproto.server.createSession").respond_with_json(
        {"did": "did:plc:x", "handle": "acme.test", "accessJwt": "a1", "refreshJwt": "r1"}
    )
    server.expect_request("/xrpc/com.atproto.repo.createRecord").respond_with_handler(create)
    settings = {
        "handle": "acme.test",
        "app_password": EnvRef("${P}"),
        "service": server.url_for("/").rstrip("/"),
        "card": card,
    }
    bsky = BlueskyChannel("bsky", settings, env={"P": "pw"})
    for name, value in attrs.items():
        setattr(bsky, name, value)
    receipt = bsky.send(Message("bsky", "bluesky", text), "key-1")
    [record] = [body["record"] for body in seen]
    return record, receipt
