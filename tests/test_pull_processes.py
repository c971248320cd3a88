"""`commcal pull` SIGKILLed again and again in a real subprocess against a slow loopback
Mastodon: each post's snapshot, replies and cursor are one transaction, so after the kills and
a final complete pull every post has one snapshot per run that committed it (never two from
one run), no reply is missing or written twice, and each cursor matches its replies."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from pull_support import ENV, FakeMastodon, mastodon_project, record_sent, reply

from commcal.ledger import open_ledger

POSTS = 12
SHOWN = 4  # posts of the progress bar test


def start(root: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "commcal", "-C", str(root), "pull", "--now", "2026-12-05T12:00:00Z"],
        env={**os.environ, **ENV, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_sigkill_mid_pull_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    with FakeMastodon(delay=0.03) as masto:
        for n in range(POSTS):
            masto.add(str(1000 + n), [reply(str(5000 + 10 * n), str(1000 + n))], likes=n)
        root = mastodon_project(tmp_path / "project", masto.url)
        db = f"sqlite:///{root / 'state.db'}"
        record_sent(db, [(f"d-{n:02d}", "masto", str(1000 + n)) for n in range(POSTS)])

        windows: list[tuple[datetime, datetime]] = []
        # Each run is killed once the server has seen a few more of its requests: mid-answer,
        # between a post's two reads, or right around a commit (by the 5th request the first
        # post's commit is done, so every killed run has recorded something).
        for run, requests in enumerate((5, 8, 11, 15)):
            began = datetime.now(UTC)
            seen = len(masto.requests)
            process = start(root)
            deadline = time.monotonic() + 30
            while len(masto.requests) < seen + requests and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(0.01 * (run % 3))
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            windows.append((began, datetime.now(UTC)))
            # Between runs the conversation grows: one new reply on every post.
            for n in range(POSTS):
                masto.descendants[str(1000 + n)].append(
                    reply(str(5000 + 10 * n + run + 1), str(1000 + n))
                )
        began = datetime.now(UTC)
        final = start(root)
        _, err = final.communicate(timeout=60)
        assert final.returncode == 0, err.decode()
        windows.append((began, datetime.now(UTC)))
        served = Counter(
            path.split("/")[4] for _, path, _ in masto.requests if path.endswith("/context")
        )

    with open_ledger(db) as ledger:
        snapshots = list(ledger.snapshots())
        replies = list(ledger.replies())
        cursors = ledger.pull_cursors(f"d-{n:02d}" for n in range(POSTS))
    per_run = [
        Counter(s.delivery_id for s in snapshots if low <= s.taken_at <= high)
        for low, high in windows
    ]
    assert sum(sum(c.values()) for c in per_run) == len(snapshots)  # each in one run's window
    assert all(max(c.values(), default=1) == 1 for c in per_run)  # never twice in one run
    assert set(per_run[-1]) == {f"d-{n:02d}" for n in range(POSTS)}  # the final run: all
    # The kills landed mid-run: every killed run had recorded some posts but not all.
    assert all(0 < len(c) < POSTS for c in per_run[:-1]), per_run
    by_post = Counter(s.delivery_id for s in snapshots)
    for n in range(POSTS):
        post = f"d-{n:02d}"
        assert by_post[post] == sum(1 for c in per_run if post in c)
        assert by_post[post] <= served[str(1000 + n)]  # a snapshot per read, at most
    # Every reply the server had is kept, once; each cursor is its post's newest reply.
    expected = {f"masto:{5000 + 10 * n + k}" for n in range(POSTS) for k in range(5)}
    assert sorted(r.id for r in replies) == sorted(expected)
    for n in range(POSTS):
        assert cursors[f"d-{n:02d}"].cursor == str(5000 + 10 * n + 4)
    assert all(s.status == "ok" for s in snapshots)


def test_sigterm_ends_the_run_after_the_post_in_hand_and_says_how_many_are_left(
    tmp_path: Path,
) -> None:
    with FakeMastodon(delay=0.05) as masto:
        for n in range(POSTS):
            masto.add(str(1000 + n))
        root = mastodon_project(tmp_path / "project", masto.url)
        db = f"sqlite:///{root / 'state.db'}"
        record_sent(db, [(f"d-{n:02d}", "masto", str(1000 + n)) for n in range(POSTS)])
        process = subprocess.Popen(
            [sys.executable, "-m", "commcal", "-C", str(root), "pull", "--now",
             "2026-12-05T12:00:00Z", "--format", "json"],
            env={**os.environ, **ENV, "PYTHONPATH": os.pathsep.join(sys.path)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while len(masto.requests) < 5 and time.monotonic() < deadline:
            time.sleep(0.002)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err.decode()
    data = json.loads(out)
    assert data["interrupted"] is True
    outcomes = Counter(p["outcome"] for p in data["posts"])
    assert outcomes["pulled"] >= 2 and outcomes["left"] >= 1
    assert outcomes["pulled"] + outcomes["left"] == POSTS
    with open_ledger(db) as ledger:
        assert len(list(ledger.snapshots())) == outcomes["pulled"]


def test_a_terminal_gets_a_progress_bar_and_a_pipe_does_not(tmp_path: Path) -> None:
    import pty

    with FakeMastodon(delay=0.05) as masto:
        for n in range(SHOWN):
            masto.add(str(1000 + n))
        root = mastodon_project(tmp_path / "project", masto.url)
        record_sent(
            f"sqlite:///{root / 'state.db'}",
            [(f"d-{n:02d}", "masto", str(1000 + n)) for n in range(SHOWN)],
        )
        command = [sys.executable, "-m", "commcal", "-C", str(root), "pull", "--now",
                   "2026-12-05T12:00:00Z"]  # fmt: skip
        env = {**os.environ, **ENV, "PYTHONPATH": os.pathsep.join(sys.path), "COLUMNS": "120"}
        main, secondary = pty.openpty()
        process = subprocess.Popen(command, env=env, stdout=secondary, stderr=secondary)
        os.close(secondary)
        seen = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        os.close(main)
        assert process.wait(timeout=30) == 0
        piped = subprocess.run(command, env=env, capture_output=True, timeout=60)
    shown = seen.decode("utf-8", "replace")
    assert re.search(r"masto.*\d+%", shown)  # the bar: the channel in hand, how far
    assert f"{SHOWN} pulled" in shown
    text = piped.stdout.decode() + piped.stderr.decode()
    assert not re.search(r"\d+%", text)
    assert "\x1b[" not in text  # no terminal control at all
    assert f"{SHOWN} pulled" in piped.stdout.decode()
