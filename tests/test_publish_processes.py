"""Real `commcal publish` processes against a receiver in this test process: SIGKILL at random
moments, eight overlapping runs, and a flaky server. What must hold is what DESIGN.md section 3
promises: never twice (or, where the channel has no idempotency key, `unknown` instead), never
silently dropped, crash-safe.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import MakeProject
from publish_support import (
    OK,
    TEMPLATES,
    Answer,
    Receiver,
    Request,
    config,
    every_minute,
    ledger_states,
    slack,
    webhook,
)

from commcal.publish import MAX_UNRECORDED

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

START = "2026-01-01 00:00"
# Later than every delivery in these tests (at most 500 minutes after START).
NOW = "2026-01-01T09:00:00Z"


def now_at(run: int) -> str:
    """`--now` for the n-th run of a test: 10 s apart. A pinned --now does not advance between
    processes, so leases (kept in the same timeline) only run out if the runs' clocks move on."""
    return f"2026-01-01T09:{run * 10 // 60:02d}:{run * 10 % 60:02d}Z"


def command() -> list[str]:
    exe = shutil.which("commcal") or str(Path(sys.executable).with_name("commcal"))
    if os.path.exists(exe):
        return [exe]
    return [sys.executable, "-c", "from commcal.cli import main; main()"]


def start(root: Path, now: str = NOW, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*command(), "-C", str(root), "publish", "--now", now, "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def finish(proc: subprocess.Popen[str], timeout: float = 50) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def make(
    make_project: MakeProject, channels: str, count: int, publish: str = "max_late: 1d, lease: 2s"
) -> Path:
    return make_project(
        config=config(channels, publish=f"{publish}, retry_delay: 0, concurrency: 4"),
        calendars={"main.yaml": every_minute("tip", ["chan"], START, count)},
        templates=TEMPLATES,
    )


def kill_and_restart(root: Path, kills: int, env: dict[str, str], seed: int) -> int:
    """Start publish and SIGKILL it after 0.05-0.5 s, `kills` times; returns the kills done."""
    rng = random.Random(seed)
    done = 0
    for run in range(kills):
        proc = start(root, now=now_at(run), env=env)
        time.sleep(rng.uniform(0.05, 0.5) + 0.4)  # + interpreter start-up
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            done += 1
        proc.communicate(timeout=10)
        time.sleep(0.1)
    return done


def test_sigkill_at_random_moments_on_an_idempotent_channel_loses_nothing(
    make_project: MakeProject,
) -> None:
    with Receiver() as receiver:
        # 10 ms an answer: the 500 sends outlast the six runs, so each is killed mid-send (a
        # run with nothing left to do ends in a tenth of a second now, before any kill).
        receiver.behave = lambda request: Answer(delay=0.01)
        root = make(make_project, webhook("chan", receiver.url), 500)
        kills = kill_and_restart(root, 6, {}, seed=11)
        # 10 s later in commcal's clock: past the 2 s lease of whatever the last kill held.
        code, _, err = finish(start(root, now=now_at(6)))
        assert code == 0, err[-2000:]
        assert ledger_states(root / "state.db") == {"sent": 500}
        keys = receiver.keys()
        assert len(keys) == 500
        duplicates = sum(n - 1 for n in keys.values())
        # Only what a kill catches in flight or sent-but-not-yet-recorded may arrive again, with
        # the same key (the receiver dedupes): a bounded number per kill.
        assert duplicates <= kills * (MAX_UNRECORDED + 1), (duplicates, kills)
        assert kills >= 5


def test_sigkill_on_a_channel_without_keys_never_sends_twice(make_project: MakeProject) -> None:
    with Receiver() as receiver:
        env = {"CHAT_URL": receiver.url + "/services/T/B/x"}
        root = make(make_project, slack("chan", "CHAT_URL"), 500)
        kills = kill_and_restart(root, 6, env, seed=5)
        code, _, err = finish(start(root, now=now_at(6), env=env))
        states = ledger_states(root / "state.db")
        keys = receiver.keys()
        seen = (states, kills, len(keys), err[-1500:])
        # Nothing twice at the server.
        assert max(keys.values()) == 1, [k for k, n in keys.items() if n > 1]
        # Every delivery is sent or unknown (a kill while sending); nothing silently dropped.
        assert set(states) <= {"sent", "unknown"}, seen
        assert states["sent"] + states["unknown"] == 500, seen
        assert states["unknown"] <= kills, seen
        # Each sent one arrived; an unknown one may or may not have.
        assert states["sent"] <= len(keys) <= states["sent"] + states["unknown"], seen
        assert code == (1 if states["unknown"] else 0), err[-2000:]

        # A further run does not re-send unknown deliveries.
        before = len(receiver.requests)
        finish(start(root, now=now_at(7), env=env))
        assert len(receiver.requests) == before


def test_eight_overlapping_runs_send_each_delivery_once(make_project: MakeProject) -> None:
    with Receiver() as receiver:
        env = {"CHAT_URL": receiver.url + "/services/T/B/x"}
        root = make(make_project, slack("chan", "CHAT_URL"), 300, "max_late: 1d, lease: 30s")
        procs = [start(root, env=env) for _ in range(8)]
        results = [finish(p) for p in procs]
        for code, _, err in results:
            assert code == 0, err[-2000:]
        keys = receiver.keys()
        assert len(keys) == 300
        assert max(keys.values()) == 1
        assert ledger_states(root / "state.db") == {"sent": 300}


def test_a_flaky_server_gets_everything_once_after_retries(make_project: MakeProject) -> None:
    rng = random.Random(3)
    lock = threading.Lock()
    accepted: Counter[str] = Counter()

    def behave(request: Request) -> Answer:
        with lock:
            if rng.random() < 0.3:
                return Answer(500, b'{"error": "flaky"}')
            accepted[request.key] += 1
            return OK

    with Receiver() as receiver:
        receiver.behave = behave
        env = {"CHAT_URL": receiver.url + "/services/T/B/x"}
        root = make(
            make_project,
            slack("chan", "CHAT_URL"),
            200,
            "max_late: 1d, lease: 30s, max_attempts: 20",
        )
        for minute in range(5):
            code, _, err = finish(start(root, now=f"2026-01-01T09:0{minute}:00Z", env=env))
            if ledger_states(root / "state.db") == {"sent": 200}:
                break
        assert code == 0, err[-2000:]
        assert ledger_states(root / "state.db") == {"sent": 200}
        assert len(accepted) == 200
        assert max(accepted.values()) == 1
        failures = len(receiver.requests) - 200
        assert failures > 20  # about 30% of requests failed and were retried

        from commcal.ledger import open_ledger

        with open_ledger("sqlite:///state.db", project_dir=root) as ledger:
            retried = [r for r in ledger.records(limit=1000) if r.attempts > 1]
        assert retried
