"""One loopback HTTP server that plays every HTTP network commcal posts to, and a project using it.

`Networks` answers Bluesky's createSession with a session (its JWTs in `ACCESS_JWT` and
`REFRESH_JWT`), Matrix's /account/whoami with a device, and every other request with
`networks.answer(request)`, an `Answer`. Every request is recorded (`requests`), and `posts()`
counts those that would create a post, per channel type: Mastodon's /api/v1/statuses, Bluesky's
createRecord, Matrix's send, X's /2/tweets, Telegram's sendMessage, Discord's and Slack's webhook
paths and the plain webhook's /hook.

`project_config(networks, state)` is a commcal.yaml with one channel of each HTTP type on it,
secrets read from the environment (`ENV`, distinctive values that a test can look for).
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ACCESS_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhY2Nlc3Mi.YklN7bsS14oN3nUZ5pQJUOrf1uMAzqKQxGAsSkaP"
REFRESH_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJyZWZyZXNoIn0.AzY2yRUgrpkqBLcSqcHqwuJd3ooTRkqQfJCXEy1"
DID = "did:plc:sweep4u2bq7vxyz"


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with the query
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    # Read the request, then close the connection without a word: the client cannot know
    # whether it was acted on.
    drop: bool = False


POSTING = {
    "mastodon": "/api/v1/statuses",
    "bluesky": "/xrpc/com.atproto.repo.createRecord",
    "matrix": "/send/m.room.message/",
    "x": "/2/tweets",
    "telegram": "/sendMessage",
    "discord": "/api/webhooks/",
    "slack": "/services/",
    "webhook": "/hook/",
}


def posting_type(path: str) -> str | None:
    for kind, marker in POSTING.items():
        if marker in path:
            return kind
    return None


def session_answer() -> Answer:
    return Answer(
        body=json.dumps(
            {
                "did": DID,
                "handle": "sweep.bsky.social",
                "accessJwt": ACCESS_JWT,
                "refreshJwt": REFRESH_JWT,
            }
        ).encode()
    )


def whoami_answer() -> Answer:
    """Matrix's /account/whoami: the access token's user and device (a send's key scope)."""
    return Answer(body=b'{"user_id": "@sweep:localhost", "device_id": "SWEEPDEVICE"}')


class Networks:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.answer: Callable[[Request], Answer] = lambda request: Answer()
        self.session: Callable[[Request], Answer] = lambda request: session_answer()
        self.whoami: Callable[[Request], Answer] = lambda request: whoami_answer()
        networks = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # two writes per answer: no 40 ms stall

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Request(self.command, self.path, dict(self.headers.items()), body)
                with networks.lock:
                    networks.requests.append(request)
                if "com.atproto.server.createSession" in self.path:
                    answer = networks.session(request)
                elif self.path.endswith("/account/whoami"):
                    answer = networks.whoami(request)
                else:
                    answer = networks.answer(request)
                if answer.drop:
                    self.close_connection = True
                    return
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", answer.content_type)
                    self.send_header("Content-Length", str(len(answer.body)))
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    pass

            do_GET = do_POST = do_PUT = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # A short poll: shutdown() waits for it, once per test.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> Networks:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def posts(self) -> Counter[str]:
        with self.lock:
            return Counter(
                kind for r in self.requests if (kind := posting_type(r.path)) is not None
            )


HTTP_TYPES = ("webhook", "slack", "discord", "telegram", "mastodon", "x", "matrix", "bluesky")

# Distinctive values for every secret setting: each is looked for, and any 8 characters of it.
ENV_TEMPLATE = {
    "HOOK_SECRET": "whsecvvclXqVBv0mYOjvcTU",
    "HOOK_AUTH": "hdrAuthnrGCOAFy4GGEEsuDQo",
    "HOOK_KEY": "hdrKeyqoYUQqojdclik9w7z0",
    "HOOK_URL": "{url}/hook/whPathpSchPkJhydq7ZXMTmJ?token=whQuerykvqZZfDCXk2cQYUs0s",
    "SLACK_URL": "{url}/services/T0SWEEP06/B0SWEEP07/slackSp37sAuNle8pJUA3puTeU0Ek",
    "SLACK_BOT_TOKEN": "xoxb-4417-8808-slackBotQm2Zk9TvW3pLr7",
    "DISCORD_URL": "{url}/api/webhooks/918273645091/"
    "discordgpzYQMNGIvSiwDPFLyWh0VdkRlP1MXzYbdPBoCjFNHYs2cLv7QtrYQZ9hNQA",
    "TG_TOKEN": "7654321098:tgLUIqnU66vE6eMAscjInwiamL69DfJZ6Te",
    "MASTO_TOKEN": "mastotGjgQLyzFWeXyfAY7dxrTBcRKDccRe5TeFdtXr",
    "X_TOKEN": "xtokGquTQmUlABBtCMyjdPBHWHXJxbqFY97OufW0",
    "MATRIX_TOKEN": "syt_QgiMuD16RAgGb8Cfv9iYZLelvHTfBW",
    "BSKY_PASSWORD": "wNEJ-I9xr-G8Mj-M2G2",
}
# What must never show, besides the values above: the parts of the URLs that are tokens, and
# the session tokens Bluesky hands out.
TOKEN_PARTS = (
    "whPathpSchPkJhydq7ZXMTmJ",
    "whQuerykvqZZfDCXk2cQYUs0s",
    "slackSp37sAuNle8pJUA3puTeU0Ek",
    "discordgpzYQMNGIvSiwDPFLyWh0VdkRlP1MXzYbdPBoCjFNHYs2cLv7QtrYQZ9hNQA",
    ACCESS_JWT,
    REFRESH_JWT,
)


def env_for(networks: Networks) -> dict[str, str]:
    return {key: value.format(url=networks.url) for key, value in ENV_TEMPLATE.items()}


def channels_config(networks: Networks) -> str:
    """The `channels:` body: one channel of each HTTP type, all on `networks`."""
    url = networks.url
    return f"""\
  webhook:
    type: webhook
    url: ${{HOOK_URL}}
    secret: ${{HOOK_SECRET}}
    headers:
      Authorization: "Bearer ${{HOOK_AUTH}}"
      X-Api-Key: ${{HOOK_KEY}}
  slack:
    type: slack
    webhook_url: ${{SLACK_URL}}
    bot_token: ${{SLACK_BOT_TOKEN}}
    channel_id: C0SWEEP08
    api_url: {url}/api
  discord:
    type: discord
    webhook_url: ${{DISCORD_URL}}
  telegram:
    type: telegram
    token: ${{TG_TOKEN}}
    chat_id: "@sweepchannel"
    api_url: {url}
  mastodon:
    type: mastodon
    instance: {url}
    token: ${{MASTO_TOKEN}}
  x:
    type: x
    token: ${{X_TOKEN}}
    api_url: {url}
  matrix:
    type: matrix
    homeserver: {url}
    access_token: ${{MATRIX_TOKEN}}
    room_id: "!sweep:example.org"
  bluesky:
    type: bluesky
    handle: sweep.bsky.social
    app_password: ${{BSKY_PASSWORD}}
    service: {url}
"""
