"""Latency of `commcal run`: 200 deliveries due over ~20 s, (arrival - due) at a local server.

    .venv/bin/python bench/run_latency.py [--count 200] [--spread 20]

Prints median, p95 and max in milliseconds. Targets: median < 200 ms, max < 2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CONFIG = """\
timezone: UTC
state: sqlite:///.commcal/state.db
channels:
  hook:
    type: slack
    webhook_url: ${HOOK_URL}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--spread", type=float, default=20.0, help="seconds")
    args = parser.parse_args()

    arrivals: dict[str, float] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            at = time.time()
            with lock:
                arrivals.setdefault(json.loads(body)["text"], at)
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()

    first = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=4)
    step = timedelta(seconds=args.spread) / args.count
    due = {f"i{n:04d}": first + n * step for n in range(args.count)}
    lines = ["items:"]
    for item, when in due.items():
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        lines += [
            f"  - id: {item}",
            "    kind: post",
            "    template: posts/say",
            "    channels: [hook]",
            f'    dates: ["{stamp}"]',
        ]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "commcal.yaml").write_text(CONFIG)
        (root / "calendars").mkdir()
        (root / "calendars" / "bench.yaml").write_text("\n".join(lines) + "\n")
        (root / "templates" / "posts").mkdir(parents=True)
        (root / "templates" / "posts" / "say.j2").write_text("{{ item.id }}")
        commcal = str(Path(sys.executable).with_name("commcal"))
        env = {**os.environ, "HOOK_URL": f"http://127.0.0.1:{server.server_address[1]}/"}
        env.pop("COMMCAL_STATE", None)
        proc = subprocess.Popen(
            [commcal, "-C", str(root), "run"], env=env, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + args.spread + 15
        while time.monotonic() < deadline and len(arrivals) < args.count:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    server.shutdown()

    late = sorted((arrivals[i] - due[i].timestamp()) * 1000 for i in arrivals)
    if not late:
        print("nothing arrived")
        return 1
    p95 = late[min(len(late) - 1, round(0.95 * (len(late) - 1)))]
    print(f"deliveries: {len(late)}/{args.count} over {args.spread:g} s")
    print(f"median: {statistics.median(late):.1f} ms")
    print(f"p95:    {p95:.1f} ms")
    print(f"max:    {late[-1]:.1f} ms")
    print(f"min:    {late[0]:.1f} ms (negative would mean sent before due)")
    ok = len(late) == args.count and statistics.median(late) < 200 and late[-1] < 2000
    print("targets (median < 200 ms, max < 2 s):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
