"""Loopback networks that answer `commcal pull`'s reads, and a project whose ledger holds sent
posts (tests/test_pull.py, tests/test_pull_processes.py, bench/pull.py).

`FakeMastodon` answers GET /api/v1/statuses/:id and /context like Mastodon
(https://docs.joinmastodon.org/methods/statuses/): statuses and their descendants are set by
the test; an id in `gone` answers 404 {"error": "Record not found"}; `limit` (requests per
window) makes it send X-RateLimit-Limit/Remaining/Reset and 429 once used up; `delay` slows
every answer. Every request is recorded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from commcal.ledger import DueDelivery, open_ledger

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TOKEN = "masto-pull-s3cret-7d1f"
ENV = {"MASTO_TOKEN": TOKEN}


def status(status_id: str, *, likes: int = 0, boosts: int = 0, replies: int = 0) -> dict[str, Any]:
    """A trimmed Status entity (https://docs.joinmastodon.org/entities/Status/)."""
    return {
        "id": status_id,
        "created_at": "2026-12-01T09:00:00.000Z",
        "in_reply_to_id": None,
        "account": {"id": "1", "username": "acme", "acct": "acme"},
        "content": "<p>Our post</p>",
        "url": f"https://masto.example/@acme/{status_id}",
        "favourites_count": likes,
        "reblogs_count": boosts,
        "replies_count": replies,
        "language": "en",
        "poll": None,
    }


def reply(
    reply_id: str, parent: str, *, acct: str = "ana@other.example", account_id: str = "77",
    content: str = "<p>Great!</p>",
) -> dict[str, Any]:  # fmt: skip
    return {
        "id": reply_id,
        "created_at": "2026-12-01T10:00:00.000Z",
        "in_reply_to_id": parent,
        "account": {"id": account_id, "username": acct.split("@")[0], "acct": acct},
        "content": content,
        "url": f"https://masto.example/@{acct}/{reply_id}",
        "language": "en",
    }


class FakeMastodon:
    def __init__(self, *, delay: float = 0.0) -> None:
        self.statuses: dict[str, dict[str, Any]] = {}
        self.descendants: dict[str, list[dict[str, Any]]] = {}
        self.gone: set[str] = set()
        self.delay = delay
        self.limit: int | None = None  # requests per window, then 429
        self.window_s = 300.0
        self.too_many: int = 0  # answer this many requests with 429 Retry-After first
        self.retry_after = "1"
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._used = 0
        self._window_start = time.time()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake.requests.append(("GET", self.path, dict(self.headers)))
                if fake.delay:
                    time.sleep(fake.delay)
                code, body, headers = fake.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeMastodon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(
        self, status_id: str, descendants: Iterable[dict[str, Any]] = (), **counts: int
    ) -> None:
        self.statuses[status_id] = status(status_id, **counts)
        self.descendants[status_id] = list(descendants)

    def answer(self, path: str) -> tuple[int, Any, dict[str, str]]:
        headers: dict[str, str] = {}
        with self._lock:
            if self.too_many > 0:
                self.too_many -= 1
                return 429, {"error": "Too many requests"}, {"Retry-After": self.retry_after}
            if self.limit is not None:
                now = time.time()
                if now - self._window_start >= self.window_s:
                    self._window_start, self._used = now, 0
                reset = datetime.fromtimestamp(self._window_start + self.window_s, UTC)
                headers = {
                    "X-RateLimit-Limit": str(self.limit),
                    "X-RateLimit-Remaining": str(max(0, self.limit - self._used - 1)),
                    "X-RateLimit-Reset": reset.isoformat().replace("+00:00", "Z"),
                }
                if self._used >= self.limit:
                    headers["X-RateLimit-Remaining"] = "0"
                    return 429, {"error": "Too many requests"}, headers
                self._used += 1
        parts = path.split("?")[0].strip("/").split("/")
        if parts[:3] != ["api", "v1", "statuses"] or len(parts) < 4:
            return 404, {"error": "Not found"}, headers
        status_id = parts[3]
        if status_id in self.gone or status_id not in self.statuses:
            return 404, {"error": "Record not found"}, headers
        if len(parts) == 5 and parts[4] == "context":
            return 200, {"ancestors": [], "descendants": self.descendants[status_id]}, headers
        return 200, self.statuses[status_id], headers


def mastodon_project(root: Path, url: str, *, extra_channels: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "calendars").mkdir(exist_ok=True)
    (root / "templates").mkdir(exist_ok=True)
    (root / "commcal.yaml").write_text(
        "timezone: UTC\nlocale: en\nstate: sqlite:///state.db\nchannels:\n"
        f"  masto:\n    type: mastodon\n    instance: {url}\n    token: ${{MASTO_TOKEN}}\n"
        + extra_channels,
        encoding="utf-8",
    )
    return root


def record_sent(db_url: str, posts: Iterable[tuple[str, str, str]], *, due: datetime = T0) -> None:
    """Sent rows in the ledger: (delivery id, channel, remote id) each, as publish leaves them."""
    with open_ledger(db_url) as ledger:
        for n, (delivery_id, channel, remote_id) in enumerate(posts):
            at = due + timedelta(seconds=n)
            d = DueDelivery(delivery_id, "news", f"item-{n}", channel, at)
            claim = ledger.claim(
                d, worker="test", now=at, lease=timedelta(minutes=5), idempotent=True
            )
            assert claim is not None
            assert ledger.begin_send(claim, at)
            ledger.record_sent(claim, remote_id=remote_id, url=f"https://x/{remote_id}", now=at)
