"""Publish throughput: commcal's publish loop against a bare `requests` loop, same server.

    .venv/bin/python bench/publish.py [--count 2000] [--repeat 3] [--profile]

A ThreadingHTTPServer on loopback answers every POST with 200 JSON at once. The baseline POSTs
`count` JSON payloads through one `requests.Session`; then commcal publishes `count` due
deliveries to one webhook channel through the library, with a durable SQLite ledger (WAL, a
claim and a record per delivery). The two alternate, `--repeat` times; the fastest of each
counts. Target: commcal >= 0.7x the bare loop's deliveries/s.
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

from commcal.project import load_project
from commcal.publish import publish

TARGET = 0.7


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall
    count = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Handler.count += 1
        out = json.dumps({"id": f"r{Handler.count}"}).encode()
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
    return server, f"http://127.0.0.1:{server.server_address[1]}/hook"


def bare(url: str, count: int) -> float:
    session = requests.Session()
    started = time.perf_counter()
    for n in range(count):
        body = json.dumps({"id": f"d{n}", "channel": "hook", "text": f"Post {n}"}).encode()
        response = session.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", "Idempotency-Key": f"d{n}"},
            timeout=(5, 30),
        )
        response.raise_for_status()
        response.json()
    return time.perf_counter() - started


def project(root: Path, url: str, count: int) -> Path:
    (root / "calendars").mkdir(parents=True)
    (root / "templates" / "posts").mkdir(parents=True)
    (root / "commcal.yaml").write_text(
        "timezone: UTC\nlocale: en\nstate: sqlite:///state.db\n"
        "publish: {max_late: 30d, retry_delay: 0}\n"
        f"channels:\n  hook:\n    type: webhook\n    url: {url}\n"
    )
    (root / "calendars" / "bench.yaml").write_text(
        "items:\n  - id: post\n    kind: post\n    channels: [hook]\n    template: posts/p\n"
        f"    schedule: {{every: 1m, start: '2026-01-01 00:00', "
        f"until: '{(datetime(2026, 1, 1) + timedelta(minutes=count)):%Y-%m-%d %H:%M}'}}\n"
    )
    (root / "templates" / "posts" / "p.j2").write_text("Post {{ at.isoformat() }}\n")
    return root


def run_commcal(url: str, count: int, profiler: cProfile.Profile | None) -> tuple[float, int]:
    """One `publish()` of `count` due deliveries into a fresh project and ledger."""
    with tempfile.TemporaryDirectory() as tmp:
        root = project(Path(tmp), url, count)
        proj = load_project(root)
        now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=count + 1)
        if profiler:
            # The sending happens in one thread per channel: profile that thread.
            from commcal.publish import Publisher

            channel = Publisher._channel

            def profiled(self: Publisher, *a: Any) -> None:
                assert profiler is not None
                profiler.runcall(channel, self, *a)

            Publisher._channel = profiled  # type: ignore[method-assign]
        started = time.perf_counter()
        report = publish(proj, now=now)
        return time.perf_counter() - started, report.count("sent")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest counts")
    parser.add_argument("--profile", action="store_true", help="cProfile one commcal run")
    args = parser.parse_args()
    count: int = args.count

    server, url = serve()
    bare(url, 50)  # warm up
    # Interleaved, fastest of each: a slow spell on a shared machine then hits both sides alike.
    bare_times, commcal_times = [], []
    for _ in range(args.repeat):
        bare_times.append(bare(url, count))
        elapsed, sent = run_commcal(url, count, None)
        if sent != count:
            print(f"commcal sent {sent} of {count}", file=sys.stderr)
            return 1
        commcal_times.append(elapsed)
    profiler = cProfile.Profile() if args.profile else None
    if profiler:
        run_commcal(url, count, profiler)
    server.shutdown()

    t_bare, t_commcal = min(bare_times), min(commcal_times)
    ratio = t_bare / t_commcal
    runs = ", ".join(f"{b / c:.2f}" for b, c in zip(bare_times, commcal_times, strict=True))
    print(f"bare requests loop: {t_bare:7.2f} s  {count / t_bare:8.0f} deliveries/s (fastest)")
    print(
        f"commcal publish:    {t_commcal:7.2f} s  {count / t_commcal:8.0f} deliveries/s (fastest)"
    )
    print(f"each run's ratio: {runs}")
    met = ratio >= TARGET
    print(
        f"ratio (commcal / bare throughput): {ratio:.2f}  target >= {TARGET}  "
        f"{'MET' if met else 'MISSED'}"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
