"""SIGKILL at random moments while commcal uploads images to the real servers (a Bluesky PDS
and Synapse, tests/real_servers.py), then a run to finish: every post is there exactly once,
each with exactly its own images and alt texts, read back through the servers' own APIs."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from conftest import MakeProject
from PIL import Image
from publish_support import ledger_states
from real_servers import real_pds, real_synapse
from test_channel_matrix import commcal_command

ITEMS = 8
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def alt(item: int, image: int) -> str:
    return f"Εικόνα {image} της ανάρτησης {item}"


def project(make_project: MakeProject, channel: str) -> Path:
    items = "".join(
        f"  - id: post{n}\n    channels: [chan]\n    template: posts/p\n"
        f"    at: 2026-12-02 08:30\n    media:\n"
        f"      - {{file: media/a{n}.png, alt: '{alt(n, 1)}'}}\n"
        f"      - {{file: media/b{n}.png, alt: '{alt(n, 2)}'}}\n"
        for n in range(ITEMS)
    )
    root = make_project(
        config="timezone: UTC\nlocale: el\nstate: sqlite:///state.db\n"
        "publish: {max_late: 1d, retry_delay: 1m}\n"
        f"channels:\n  chan:\n{channel}",
        calendars={"c.yaml": "items:\n" + items},
        templates={"posts/p.j2": "Ανάρτηση {{ item.id }}\n"},
    )
    (root / "media").mkdir()
    noise = random.Random(7)
    for n in range(ITEMS):
        for name in (f"a{n}", f"b{n}"):
            # Noise does not compress: ~200 kB a file, so uploads take long enough to be hit.
            pixels = bytes(noise.getrandbits(8) for _ in range(260 * 260 * 3))
            Image.frombytes("RGB", (260, 260), pixels).save(root / "media" / f"{name}.png")
    return root


def kill_loop(root: Path, env: dict[str, str], posted: Callable[[], int]) -> list[int]:
    """`commcal publish` runs, each SIGKILLed a random moment after a new post shows on the
    server, each six minutes (a lease) after the last; the posts seen after each run."""
    chance = random.Random(20261202)
    progress: list[int] = []
    for run in range(10):
        now = NOW + timedelta(minutes=6 * run)
        args = ["-C", str(root), "publish", "--format", "json", "--now", now.isoformat()]
        proc = subprocess.Popen(
            [*commcal_command(), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        before = progress[-1] if progress else 0
        deadline = time.monotonic() + 90
        while proc.poll() is None and time.monotonic() < deadline:
            if posted() > before:
                time.sleep(chance.uniform(0.0, 0.4))
                break
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        progress.append(posted())
        if progress[-1] == ITEMS:
            break
    last = (NOW + timedelta(minutes=6 * len(progress))).isoformat()
    final = subprocess.run(
        [*commcal_command(), "-C", str(root), "publish", "--format", "json", "--now", last],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )
    assert final.returncode == 0, final.stderr[-2000:]
    assert not any(secret in final.stdout + final.stderr for secret in env.values())
    assert ledger_states(root / "state.db") == {"sent": ITEMS}
    print("posts after each killed run:", progress)
    return progress


def test_real_pds_sigkill_during_image_uploads(make_project: MakeProject) -> None:
    account = real_pds()
    channel = (
        f"    type: bluesky\n    service: {account.service}\n"
        f"    handle: {account.handle}\n    app_password: ${{SKY_PASSWORD}}\n"
    )
    root = project(make_project, channel)
    progress = kill_loop(root, {"SKY_PASSWORD": account.password}, lambda: len(account.posts()))
    assert min(progress) < ITEMS, progress  # some run was killed with posts still to make
    posts = account.posts()
    texts = Counter(p["value"]["text"] for p in posts)
    assert texts == Counter(f"Ανάρτηση post{n}" for n in range(ITEMS))
    for post in posts:
        n = int(post["value"]["text"].removeprefix("Ανάρτηση post"))
        images = post["value"]["embed"]["images"]
        assert [i["alt"] for i in images] == [alt(n, 1), alt(n, 2)]
        for image in images:
            data = account.blob(image["image"]["ref"]["$link"])
            assert data.startswith(b"\x89PNG") and len(data) == image["image"]["size"]


def test_real_synapse_sigkill_during_image_uploads(make_project: MakeProject) -> None:
    import requests

    homeserver, token, room = real_synapse()
    channel = (
        f"    type: matrix\n    homeserver: {homeserver}\n"
        f"    access_token: ${{MATRIX_TOKEN}}\n    room_id: '{room}'\n"
    )
    root = project(make_project, channel)

    def events() -> list[dict[str, Any]]:
        answer = requests.get(
            f"{homeserver}/_matrix/client/v3/rooms/{quote(room, safe='')}/messages",
            params={"dir": "f", "limit": 1000},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        answer.raise_for_status()
        return [e["content"] for e in answer.json()["chunk"] if e["type"] == "m.room.message"]

    def posted() -> int:
        return sum(1 for e in events() if e.get("msgtype") == "m.text")

    progress = kill_loop(root, {"MATRIX_TOKEN": token}, posted)
    assert min(progress) < ITEMS, progress
    contents = events()
    texts = Counter(e["body"] for e in contents if e.get("msgtype") == "m.text")
    assert texts == Counter(f"Ανάρτηση post{n}" for n in range(ITEMS))
    images = Counter(e["body"] for e in contents if e.get("msgtype") == "m.image")
    assert images == Counter(alt(n, i) for n in range(ITEMS) for i in (1, 2))
    assert all(e["url"].startswith("mxc://") for e in contents if e.get("msgtype") == "m.image")
