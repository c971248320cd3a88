"""Publish throughput with media: commcal's publish loop against a bare `requests` loop, both
uploading one image per post to the same loopback server answering like Mastodon.

    .venv/bin/python bench/media_publish.py [--count 200] [--repeat 3] [--profile]

The server answers POST /api/v2/media with a media id (200, processed at once, as Mastodon does
for a small image) and POST /api/v1/statuses with a status. The baseline, per post: one
multipart upload of the file (read from disk each time, with its description), then one status
naming the media id, through one `requests.Session`. commcal publishes `count` due deliveries
with the same image to one mastodon channel through the library, with its durable SQLite
ledger (created before the clock starts): a claim, the upload's ref recorded before the post
(`Ledger.record_upload`), the status, its `sent` record. The two alternate, `--repeat` times;
the fastest of each counts. Target: commcal
>= 0.7x the bare loop's posts/s.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
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
from PIL import Image

from commcal.ledger import open_ledger
from commcal.project import load_project
from commcal.publish import publish

TARGET = 0.7
ALT = "Τρεις εθελοντές στον πάγκο της αγοράς"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    uploads = 0
    statuses = 0
    with_media = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/api/v2/media":
            Handler.uploads += 1
            answer = {"id": str(Handler.uploads), "url": f"/files/{Handler.uploads}.jpg"}
        else:
            Handler.statuses += 1
            Handler.with_media += bool(json.loads(body).get("media_ids"))
            answer = {"id": str(Handler.statuses), "url": f"/@bench/{Handler.statuses}"}
        out = json.dumps(answer).encode()
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


def image(path: Path) -> Path:
    """A 640x480 photo-like JPEG (noise, so it does not compress away): about 100 KB."""
    Image.frombytes("RGB", (640, 480), os.urandom(640 * 480 * 3)).save(path, quality=60)
    return path


def bare(url: str, picture: Path, count: int) -> float:
    session = requests.Session()
    headers = {"Authorization": "Bearer bench-token"}
    started = time.perf_counter()
    for n in range(count):
        data = picture.read_bytes()
        upload = session.post(
            f"{url}/api/v2/media",
            files={"file": (picture.name, data, "image/jpeg")},
            data={"description": ALT},
            headers=headers,
            timeout=(5, 30),
        )
        upload.raise_for_status()
        media_id = upload.json()["id"]
        status = session.post(
            f"{url}/api/v1/statuses",
            json={"status": f"Post {n}", "visibility": "public", "media_ids": [media_id]},
            headers={**headers, "Idempotency-Key": f"d{n}"},
            timeout=(5, 30),
        )
        status.raise_for_status()
        status.json()
    return time.perf_counter() - started


def project(root: Path, url: str, picture: Path, count: int) -> Path:
    (root / "calendars").mkdir(parents=True)
    (root / "templates" / "posts").mkdir(parents=True)
    (root / "media").mkdir()
    (root / "media" / picture.name).write_bytes(picture.read_bytes())
    (root / "commcal.yaml").write_text(
        "timezone: UTC\nlocale: el\nstate: sqlite:///state.db\n"
        "publish: {max_late: 30d, retry_delay: 0}\n"
        f"channels:\n  masto:\n    type: mastodon\n    instance: {url}\n"
        "    token: ${BENCH_MASTODON_TOKEN}\n"
    )
    (root / "calendars" / "bench.yaml").write_text(
        "items:\n  - id: post\n    kind: post\n    channels: [masto]\n    template: posts/p\n"
        f"    schedule: {{every: 1m, start: '2026-01-01 00:00', "
        f"until: '{(datetime(2026, 1, 1) + timedelta(minutes=count)):%Y-%m-%d %H:%M}'}}\n"
        f"    media:\n      - {{file: media/{picture.name}, alt: '{ALT}'}}\n",
        encoding="utf-8",
    )
    (root / "templates" / "posts" / "p.j2").write_text("Post {{ at.isoformat() }}\n")
    return root


def run_commcal(
    url: str, picture: Path, count: int, profiler: cProfile.Profile | None
) -> tuple[float, int]:
    """One `publish()` of `count` due deliveries into a fresh project and ledger."""
    with tempfile.TemporaryDirectory() as tmp:
        root = project(Path(tmp), url, picture, count)
        proj = load_project(root)
        # The ledger is made before the clock starts: its creation (seven schema steps, each
        # flushed) is a fixed cost a tenth of these 200 posts' time, and not publishing.
        open_ledger(proj.config.ledger_url(), project_dir=root).close()
        now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=count + 1)
        if profiler:
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
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest counts")
    parser.add_argument("--profile", action="store_true", help="cProfile one commcal run")
    args = parser.parse_args()
    count: int = args.count
    os.environ["BENCH_MASTODON_TOKEN"] = "bench-token"

    server, url = serve()
    with tempfile.TemporaryDirectory() as tmp:
        picture = image(Path(tmp) / "photo.jpg")
        bare(url, picture, 20)  # warm up
        bare_times, commcal_times = [], []
        for _ in range(args.repeat):
            bare_times.append(bare(url, picture, count))
            before = Handler.with_media
            elapsed, sent = run_commcal(url, picture, count, None)
            if sent != count or Handler.with_media - before != count:
                print(f"commcal sent {sent} of {count}", file=sys.stderr)
                return 1
            commcal_times.append(elapsed)
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            run_commcal(url, picture, count, profiler)
        size = picture.stat().st_size
    server.shutdown()

    t_bare, t_commcal = min(bare_times), min(commcal_times)
    ratio = t_bare / t_commcal
    runs = ", ".join(f"{b / c:.2f}" for b, c in zip(bare_times, commcal_times, strict=True))
    print(f"image: {size:,} bytes; {count} posts, one image each")
    print(f"bare requests loop: {t_bare:7.2f} s  {count / t_bare:8.1f} posts/s (fastest)")
    print(f"commcal publish:    {t_commcal:7.2f} s  {count / t_commcal:8.1f} posts/s (fastest)")
    print(f"each run's ratio: {runs}")
    # Adjacent runs share the machine's spell: on a loaded machine their ratios' median says
    # more than the fastest of each side, which may come from different spells.
    pairs = sorted(b / c for b, c in zip(bare_times, commcal_times, strict=True))
    print(f"median of the runs' ratios: {pairs[len(pairs) // 2]:.2f}")
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
