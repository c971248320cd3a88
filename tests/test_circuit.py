"""One circuit per channel: a server that is down (or asks to wait long) costs one try per run.

Through the real `commcal` process against loopback: a port nothing listens on (connections
refused at once), then a receiver started on that same port; a receiver answering 429 with a
long Retry-After.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from commcal.ledger import State, open_ledger
from tests.conftest import MakeProject
from tests.publish_support import (
    TEMPLATES,
    Answer,
    Receiver,
    config,
    every_minute,
    slack,
    webhook,
)
from tests.test_community import free_port
from tests.test_publish_processes import command

NOW = "2026-01-01T09:00:00Z"
LATER = "2026-01-01T09:10:00Z"  # after every retry time the first run gives


def publish(root: Path, now: str, env: dict[str, str]) -> tuple[int, dict[str, object], float]:
    began = time.monotonic()
    proc = subprocess.run(
        [*command(), "-C", str(root), "publish", "--now", now, "--format", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    return proc.returncode, json.loads(proc.stdout), time.monotonic() - began


def project(make_project: MakeProject, kind: str, url: str) -> tuple[Path, dict[str, str]]:
    if kind == "webhook":
        channel = webhook("hook", url)
    elif kind == "slack":
        channel = slack("hook", "HOOK_URL")
    else:  # keys remembered for an hour only
        base = url.removesuffix("/hook")
        channel = f"  hook:\n    type: mastodon\n    instance: {base}\n    token: ${{MT}}\n"
    root = make_project(
        config=config(channel, publish="max_late: 1d"),
        # Ten posts, due 08:50 ... 08:59: all due at NOW.
        calendars={"c.yaml": every_minute("tip", ["hook"], "2026-01-01 08:50", 10)},
        templates=TEMPLATES,
    )
    return root, {"HOOK_URL": url, "MT": "test-token"}


# Keys remembered for good / no keys / keys remembered for an hour.
@pytest.mark.parametrize("kind", ["webhook", "slack", "mastodon"])
def test_server_down_costs_one_try_then_each_is_sent_once(
    make_project: MakeProject, kind: str
) -> None:
    port = free_port()  # nothing listens here: every connection is refused
    url = f"http://127.0.0.1:{port}/hook"
    root, env = project(make_project, kind, url)

    code, out, took = publish(root, NOW, env)
    assert took < 10, f"publish took {took:.1f} s against a server that is down"
    assert code == 0, out  # nothing failed: all wait for the server
    assert out["counts"] == {"pending": 10}
    details = [str(d["detail"]) for d in out["deliveries"]]  # type: ignore[union-attr]
    assert all("retry at" in d for d in details), details
    assert all("could not connect" in d for d in details), details
    assert sum("not tried" in d for d in details) == 9, details

    now = datetime.fromisoformat(NOW)
    with open_ledger("sqlite:///state.db", project_dir=root) as ledger:
        records = ledger.records()
        assert len(records) == 10
        assert {r.state for r in records} == {State.PENDING}
        retry_times = {r.next_attempt_at for r in records}
        assert len(retry_times) == 1  # the same backoff for all
        retry_at = retry_times.pop()
        assert retry_at is not None
        assert now < retry_at <= now + timedelta(seconds=60)
        # Only the one that was tried has used up an attempt.
        assert sorted(r.attempts for r in records) == [0] * 9 + [1]
        assert all("could not connect" in (r.last_error or "") for r in records)

    with Receiver(port) as receiver:
        code, out, _ = publish(root, LATER, env)
        assert code == 0, out
        assert out["counts"] == {"sent": 10}
        keys = receiver.keys()
        assert len(keys) == 10 and set(keys.values()) == {1}, keys
        code, out, _ = publish(root, LATER, env)
        assert len(receiver.requests) == 10  # and nothing is sent twice by a later run


def test_long_retry_after_pauses_the_channel(make_project: MakeProject) -> None:
    with Receiver() as receiver:
        receiver.behave = lambda request: Answer(
            429, b'{"error": "slow down"}', {"Retry-After": "3600"}
        )
        root, env = project(make_project, "webhook", receiver.url + "/hook")
        code, out, took = publish(root, NOW, env)
        assert took < 10
        assert len(receiver.requests) == 1  # asked to wait an hour: not asked nine more times
        assert code == 0, out
        assert out["counts"] == {"pending": 10}
        details = [str(d["detail"]) for d in out["deliveries"]]  # type: ignore[union-attr]
        assert all("HTTP 429" in d and "retry at 10:00:" in d for d in details), details


def test_smtp_relay_down_says_nothing_was_sent() -> None:
    from commcal.channels.base import Message, Recipient, TransientError
    from commcal.channels.smtp import SmtpChannel

    channel = SmtpChannel(
        "news",
        {"host": "127.0.0.1", "port": free_port(), "security": "none", "from": "a@example.org"},
    )
    mail = Message("news", "smtp", "hello", subject="Hi", recipient=Recipient("b@example.org"))
    with pytest.raises(TransientError) as caught:
        channel.send(mail, "dlv-1")
    assert caught.value.unreachable and not caught.value.maybe_sent
