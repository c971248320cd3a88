"""A loopback server that keeps posts the way each network's API does: create, read back, edit,
delete, with their answers, for the tests of `commcal retract` and `commcal amend`.

`Posts` plays Mastodon (/api/v1/statuses), Discord webhooks (/api/webhooks/ID/TOKEN[/messages/
ID]), Telegram's Bot API (/bot<token>/sendMessage, deleteMessage, editMessageText), X
(/2/tweets) and Bluesky's repo (createSession, createRecord, getRecord, deleteRecord). It keeps
`posts` (network, id) -> text, records every request (`requests`), and `posts.fault` lets a
test change one answer: `fault(request) -> Fault | None`. A Fault answers with its status and
body, or (`drop=True`) does the work and closes the connection without answering: the request
went out, the answer was lost; or (`stall=SECONDS`) does the work and answers that much later
(time for a test to kill the client in between).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from loopback import Loopback

MASTODON_TOKEN = "masto-tok-9f8e7d6c5b4a"
DISCORD_TOKEN = "dsc-tok-AbCdEf0123456789"
TELEGRAM_TOKEN = "123456:tg-tok-ZyXwVuTsRq"
X_TOKEN = "x-tok-QwErTy123456"
BSKY_PASSWORD = "bsky-pass-abcd-efgh"
SLACK_SECRET = "slk-secret-0a1b2c3d"
BSKY_DID = "did:plc:retract4test"
ENV = {
    "MT": MASTODON_TOKEN,
    "TG": TELEGRAM_TOKEN,
    "XT": X_TOKEN,
    "BSKY": BSKY_PASSWORD,
}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes
    headers: dict[str, str]

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


@dataclass(frozen=True)
class Fault:
    status: int = 500
    body: Any = None  # JSON; None: {}
    drop: bool = False  # do the work, then close the connection without an answer
    stall: float = 0.0  # do the work, then wait this long before answering as usual


class Posts(Loopback):
    def __init__(self) -> None:
        self.posts: dict[tuple[str, str], str] = {}
        self.requests: list[Request] = []
        self.fault: Callable[[Request], Fault | None] = lambda request: None
        self.lock = threading.Lock()
        self.next_id = 100
        posts = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    self.command, self.path, self.rfile.read(length), dict(self.headers.items())
                )
                with posts.lock:
                    posts.requests.append(request)
                    fault = posts.fault(request)
                    if fault is not None and not (fault.drop or fault.stall):
                        status, body = fault.status, fault.body if fault.body is not None else {}
                    else:
                        status, body = posts.answer(request)
                if fault is not None and fault.stall:
                    time.sleep(fault.stall)
                if fault is not None and fault.drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                out = b"" if status == 204 else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.serve(Handler)

    def calls(self, method: str, marker: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and marker in r.path]

    def _new(self, network: str, text: str) -> str:
        self.next_id += 1
        post_id = str(self.next_id)
        self.posts[(network, post_id)] = text
        return post_id

    # -- each network's answers --------------------------------------------------------------

    def answer(self, r: Request) -> tuple[int, Any]:
        path = urlsplit(r.path).path
        for pattern, handler in (
            (r"/api/v1/statuses(?:/(\w+))?(/source)?", self._mastodon),
            (r"/api/webhooks/\w+/[\w-]+(?:/messages/(\w+))?", self._discord),
            (r"/bot[^/]+/(\w+)", self._telegram),
            (r"/2/tweets(?:/(\w+))?", self._x),
            (r"/xrpc/([\w.]+)", self._bluesky),
            (r"/hook", lambda r: (200, {"id": self._new("webhook", r.text)})),
            (r"/services/.+", lambda r: (200, {"ok": True})),
        ):
            match = re.fullmatch(pattern, path)
            if match:
                return handler(r, *match.groups())
        return 404, {"error": "no such route"}

    def _mastodon(self, r: Request, status_id: str | None, source: str | None) -> tuple[int, Any]:
        if r.headers.get("Authorization") != f"Bearer {MASTODON_TOKEN}":
            return 401, {"error": "The access token is invalid"}
        if status_id is None and r.method == "POST":
            new = self._new("mastodon", r.json["status"])
            return 200, {"id": new, "url": f"{self.url}/@us/{new}", "uri": f"{self.url}/s/{new}"}
        key = ("mastodon", status_id or "")
        if key not in self.posts:
            return 404, {"error": "Record not found"}
        if r.method == "DELETE":
            text = self.posts.pop(key)
            return 200, {"id": status_id, "text": text}
        if r.method == "PUT":
            self.posts[key] = r.json["status"]
        if source:
            return 200, {"id": status_id, "text": self.posts[key], "spoiler_text": ""}
        return 200, {
            "id": status_id,
            "url": f"{self.url}/@us/{status_id}",
            "content": f"<p>{self.posts[key]}</p>",
            "language": "en",
            "media_attachments": [],
        }

    def _discord(self, r: Request, message_id: str | None) -> tuple[int, Any]:
        if DISCORD_TOKEN not in r.path:
            return 401, {"code": 50027, "message": "Invalid Webhook Token"}
        if message_id is None:
            if parse_qs(urlsplit(r.path).query).get("wait") != ["true"]:
                return 204, None  # without wait=true Discord answers 204 and no message
            new = self._new("discord", r.json["content"])
            return 200, {"id": new, "channel_id": "55", "guild_id": "66", "content": ""}
        key = ("discord", message_id)
        if key not in self.posts:
            return 404, {"code": 10008, "message": "Unknown Message"}
        if r.method == "DELETE":
            del self.posts[key]
            return 204, None
        if r.method == "PATCH":
            self.posts[key] = r.json["content"]
        return 200, {"id": message_id, "channel_id": "55", "content": self.posts[key]}

    def _telegram(self, r: Request, method: str) -> tuple[int, Any]:
        if f"/bot{TELEGRAM_TOKEN}/" not in r.path:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        body = r.json or {}
        if method == "sendMessage":
            new = self._new("telegram", body["text"])
            return 200, {"ok": True, "result": {"message_id": int(new), "text": body["text"]}}
        key = ("telegram", str(body.get("message_id")))
        if key not in self.posts:
            wrong = (
                "message to delete not found"
                if method == "deleteMessage"
                else "message to edit not found"
            )
            return 400, {"ok": False, "error_code": 400, "description": f"Bad Request: {wrong}"}
        if method == "deleteMessage":
            del self.posts[key]
            return 200, {"ok": True, "result": True}
        if method == "editMessageText":
            if self.posts[key] == body["text"]:
                return 400, {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: message is not modified: specified new message "
                    "content and reply markup are exactly the same",
                }
            self.posts[key] = body["text"]
            return 200, {"ok": True, "result": {"message_id": int(key[1]), "text": body["text"]}}
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}

    def _x(self, r: Request, post_id: str | None) -> tuple[int, Any]:
        if r.headers.get("Authorization") != f"Bearer {X_TOKEN}":
            return 401, {"title": "Unauthorized", "detail": "Unauthorized", "status": 401}
        if post_id is None:
            new = self._new("x", r.json["text"])
            return 201, {"data": {"id": new, "text": r.json["text"]}}
        if self.posts.pop(("x", post_id), None) is None:
            return 404, {"title": "Not Found Error", "detail": f"Could not find post {post_id}"}
        return 200, {"data": {"deleted": True}}

    def _bluesky(self, r: Request, nsid: str) -> tuple[int, Any]:
        if nsid == "com.atproto.server.createSession":
            return 200, {
                "did": BSKY_DID,
                "handle": "us.bsky.test",
                "accessJwt": "access.jwt.retract",
                "refreshJwt": "refresh.jwt.retract",
            }
        if r.headers.get("Authorization") != "Bearer access.jwt.retract":
            return 401, {"error": "AuthMissing", "message": "Authentication Required"}
        if nsid == "com.atproto.repo.createRecord":
            rkey = r.json["rkey"]
            self.posts[("bluesky", rkey)] = r.json["record"]["text"]
            return 200, {"uri": f"at://{BSKY_DID}/app.bsky.feed.post/{rkey}", "cid": "bafy"}
        if nsid == "com.atproto.repo.getRecord":
            rkey = parse_qs(urlsplit(r.path).query)["rkey"][0]
            if ("bluesky", rkey) not in self.posts:
                return 400, {"error": "RecordNotFound", "message": "Could not locate record"}
            uri = f"at://{BSKY_DID}/app.bsky.feed.post/{rkey}"
            return 200, {"uri": uri, "value": {"text": self.posts[("bluesky", rkey)]}}
        if nsid == "com.atproto.repo.deleteRecord":
            self.posts.pop(("bluesky", r.json["rkey"]), None)  # deleting nothing succeeds too
            return 200, {}
        return 400, {"error": "MethodNotImplemented", "message": nsid}


def env_for(posts: Posts) -> dict[str, str]:
    return {
        **ENV,
        "DW": f"{posts.url}/api/webhooks/42/{DISCORD_TOKEN}",
        "SW": f"{posts.url}/services/T0/B0/{SLACK_SECRET}",
    }


def channels(posts: Posts) -> str:
    """commcal.yaml channels: one of each type `Posts` plays, plus ones that cannot change."""
    return f"""\
channels:
  masto:
    type: mastodon
    instance: {posts.url}
    token: ${{MT}}
  disc:
    type: discord
    webhook_url: ${{DW}}
  tg:
    type: telegram
    token: ${{TG}}
    chat_id: "@retractchannel"
    api_url: {posts.url}
  xx:
    type: x
    token: ${{XT}}
    api_url: {posts.url}
  sky:
    type: bluesky
    service: {posts.url}
    handle: us.bsky.test
    app_password: ${{BSKY}}
  slk:
    type: slack
    webhook_url: ${{SW}}
  hook:
    type: webhook
    url: {posts.url}/hook
  out:
    type: console
"""
