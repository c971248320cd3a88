"""Pull throughput: `commcal pull`'s library run against a bare `requests` loop, same server.

    .venv/bin/python bench/pull.py [--count 1000] [--repeat 3] [--profile]

A ThreadingHTTPServer on loopback answers like Mastodon: GET /api/v1/statuses/:id with a
Status, /context with two descendants. The baseline GETs the same status and context of each
of `count` posts through one `requests.Session` and parses the JSON; commcal pulls `count` sent
posts from a durable SQLite ledger (a snapshot, two replies and a cursor written in one
transaction per post). Each side gets a fresh ledger already holding the sent rows (untimed).
The two alternate, `--repeat` times; the fastest of each counts. Target: commcal >= 0.7x the
bare loop's posts/s.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from commcal.engagement.pull import pull, sent_posts
from commcal.ledger import DueDelivery, open_ledger
from commcal.project import load_project

TARGET = 0.7
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def status(status_id: str) -> bytes:
    return json.dumps(
        {
            "id": status_id,
            "created_at": "2026-12-01T09:00:00.000Z",
            "account": {"id": "1", "acct": "acme"},
            "content": "<p>Our post</p>",
            "favourites_count": 4,
            "reblogs_count": 2,
            "replies_count": 2,
        }
    ).encode()


def context(status_id: str) -> bytes:
    n = int(status_id)
    return json.dumps(
        {
            "ancestors": [],
            "descendants": [
                {
                    "id": str(n * 10 + k),
                    "created_at": "2026-12-01T10:00:00.000Z",
                    "in_reply_to_id": status_id,
                    "account": {"id": "7", "acct": f"fan{k}@other.example"},
                    "content": f'<p>Reply {k} <a href="https://example.org/{k}">link</a></p>',
                    "url": f"https://masto.example/@fan/{n * 10 + k}",
                }
                for k in (1, 2)
            ],
        }
    ).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        parts = self.path.split("?")[0].strip("/").split("/")
        out = context(parts[3]) if parts[-1] == "context" else status(parts[3])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve() -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def bare(url: str, count: int) -> float:
    session = requests.Session()
    started = time.perf_counter()
    for n in range(count):
        base = f"{url}/api/v1/statuses/{1000 + n}"
        headers = {"Authorization": "Bearer bench-token"}
        session.get(base, headers=headers, timeout=30).json()
        session.get(base + "/context", headers=headers, timeout=30).json()
    return time.perf_counter() - started


def project(root: Path, url: str, count: int) -> None:
    root.mkdir()
    (root / "calendars").mkdir()
    (root / "commcal.yaml").write_text(
        "timezone: UTC\nlocale: en\nstate: sqlite:///state.db\nchannels:\n"
        f"  masto:\n    type: mastodon\n    instance: {url}\n    token: ${{BENCH_TOKEN}}\n",
        encoding="utf-8",
    )
    with open_ledger(f"sqlite:///{root / 'state.db'}") as ledger:
        for n in range(count):
            d = DueDelivery(f"d{n:06d}", "news", f"item-{n}", "masto", T0)
            claim = ledger.claim(
                d, worker="bench", now=T0, lease=timedelta(hours=1), idempotent=True
            )
            assert claim is not None and ledger.begin_send(claim, T0)
            ledger.record_sent(claim, remote_id=str(1000 + n), url=None, now=T0)


def commcal(root: Path, count: int, profile: bool = False) -> float:
    loaded = load_project(root, env={"BENCH_TOKEN": "bench-token"})
    now = T0 + timedelta(days=1)
    with open_ledger(f"sqlite:///{root / 'state.db'}") as ledger:
        posts = sent_posts(ledger, since=now - timedelta(days=30), until=now)
        assert len(posts) == count
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        report = pull(ledger, loaded.channels, posts, now=now, since=now - timedelta(days=30))
        elapsed = time.perf_counter() - started
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
        assert report.count(report.results[0].outcome) == count, report.results[0]
        assert sum(r.new_replies for r in report.results) == 2 * count
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    server, url = serve()
    bares, ours = [], []
    with tempfile.TemporaryDirectory() as folder:
        for run in range(args.repeat):
            root = Path(folder) / f"p{run}"
            project(root, url, args.count)
            bares.append(bare(url, args.count))
            ours.append(commcal(root, args.count, profile=args.profile and run == 0))
            print(
                f"run {run + 1}: bare {args.count / bares[-1]:.0f} posts/s, commcal "
                f"{args.count / ours[-1]:.0f} posts/s, ratio {bares[-1] / ours[-1]:.2f}x"
            )
    server.shutdown()
    ratio = min(bares) / min(ours)
    print(
        f"pull of {args.count} posts: bare {args.count / min(bares):.0f} posts/s, commcal "
        f"{args.count / min(ours):.0f} posts/s; ratio {ratio:.2f}x (target >= {TARGET}x)"
    )
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
