"""A webhook receiver on loopback that records what arrives, and project builders for publish tests.

`Receiver` plays the far side of a channel: every request's path, `Idempotency-Key`, body,
headers and arrival time are recorded. `receiver.behave = fn` decides each answer: `fn(request)`
returns an `Answer` (status, headers, body, delay before answering). The default answers 200
with JSON ``{"id": ..., "url": ...}``, what a webhook receiver may return.

For non-idempotent channels (Slack/Discord types pointed here) no key is sent, so `Request.key`
falls back to the message text: templates in these tests render a text unique per delivery.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# Unique per delivery: the item, the local occurrence time and the channel.
UNIQUE_TEMPLATE = "Post {{ item.id }} at {{ at.isoformat() }} on {{ channel.name }}\n"


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    arrived: float

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    @property
    def key(self) -> str:
        """The Idempotency-Key, or for keyless channels the message text."""
        if "Idempotency-Key" in self.headers:
            return self.headers["Idempotency-Key"]
        body = self.json
        if isinstance(body, dict):
            return str(body.get("text") or body.get("content") or "")
        return self.body.decode(errors="replace")


@dataclass
class Answer:
    status: int = 200
    body: bytes | None = None  # None: a JSON receipt
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to sleep before answering (a read timeout in the client)


OK = Answer()


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.behave: Callable[[Request], Answer] = lambda request: OK
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # two writes per answer: no 40 ms stall

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                request = Request(self.path, dict(self.headers.items()), body, time.monotonic())
                with receiver.lock:
                    receiver.requests.append(request)
                    number = len(receiver.requests)
                answer = receiver.behave(request)
                if answer.delay:
                    time.sleep(answer.delay)
                out = answer.body
                if out is None:
                    out = json.dumps(
                        {"id": f"r{number}", "url": f"{receiver.url}/posts/{number}"}
                    ).encode()
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:  # the client gave up (timeout) or was killed
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def keys(self) -> Counter[str]:
        with self.lock:
            return Counter(r.key for r in self.requests)

    def clear(self) -> None:
        with self.lock:
            self.requests.clear()


def fail_fraction(
    fraction: float, seed: int = 7, answer: Answer | None = None
) -> Callable[[Request], Answer]:
    """Fail about `fraction` of requests (deterministic per seed) with `answer` (default 500)."""
    rng = random.Random(seed)
    lock = threading.Lock()
    bad = answer or Answer(500, b'{"error": "try again"}')

    def behave(request: Request) -> Answer:
        with lock:
            roll = rng.random()
        return bad if roll < fraction else OK

    return behave


def config(channels: str, *, state: str = "sqlite:///state.db", publish: str = "") -> str:
    """A commcal.yaml; `channels` is the indented body of `channels:`."""
    return (
        f"timezone: UTC\nlocale: en\nstate: {state}\npublish: {{{publish}}}\nchannels:\n{channels}"
    )


def webhook(name: str, url: str, extra: str = "") -> str:
    return f"  {name}:\n    type: webhook\n    url: {url}\n{extra}"


def slack(name: str, env: str) -> str:
    """A Slack-type channel (not idempotent); `env` names the variable holding the URL."""
    return f"  {name}:\n    type: slack\n    webhook_url: ${{{env}}}\n"


def every_minute(item: str, channels: list[str], start: str, count: int) -> str:
    """A calendar with one item due every minute from `start` (UTC), `count` times."""
    return (
        "items:\n"
        f"  - id: {item}\n"
        "    kind: post\n"
        f"    channels: [{', '.join(channels)}]\n"
        "    template: posts/unique\n"
        f"    schedule: {{every: 1m, start: '{start}', until: '{_plus_minutes(start, count)}'}}\n"
    )


def _plus_minutes(start: str, count: int) -> str:
    from datetime import datetime, timedelta

    begin = datetime.fromisoformat(start)
    return (begin + timedelta(minutes=count)).strftime("%Y-%m-%d %H:%M")


TEMPLATES = {"posts/unique.j2": UNIQUE_TEMPLATE, "posts/tip.j2": "Tip: {{ item.id }}\n"}


def ledger_states(db: Path) -> Counter[str]:
    with sqlite3.connect(db) as conn:
        return Counter(state for (state,) in conn.execute("SELECT state FROM deliveries"))


def dump(db: Path) -> str:
    """Every row of every table, as text."""
    conn = sqlite3.connect(db)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()
