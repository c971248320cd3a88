"""A relay that takes the mail and then cuts the connection, or answers too late, must never make
`commcal publish` mail a member twice: each such send is `unknown` in `commcal status`.

The relay below is a real aiosmtpd server on loopback. It decides how to end each mail
transaction from a seeded random number, so every run of the test sees the same faults:
about 30% of transactions misbehave after the end of DATA, some are refused with a clear 451
(a plain retry), and some healthy ones close the kept-alive connection right after their 250
(the next mail finds it dead at MAIL FROM: not ambiguous for that next mail).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import random
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from typer.testing import CliRunner, Result

from commcal.cli import app
from tests.conftest import MakeProject

SECRET = "a-long-random-member-secret-for-tests-0123456789"
ENV = {"MEMBER_SECRET": SECRET}
MEMBERS = 120
CLIENT_TIMEOUT = 1.0  # seconds; a "late" answer comes after it
LATE = 2.0

# Sent after the body was received: the mail may or may not be queued (the relay keeps it).
AMBIGUOUS = ("taken-then-cut", "taken-then-late", "lost-in-cut")


@dataclass
class FaultyRelay:
    """Ends each mail transaction as a seeded roll says; records what it kept and what it did."""

    seed: int
    kept: list[tuple[str, str]] = field(default_factory=list)  # (recipient, Message-ID)
    faults: dict[str, list[str]] = field(default_factory=dict)  # Message-ID -> what happened
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def roll(self) -> str:
        value = self.rng.random()
        if value < 0.12:
            return "taken-then-cut"
        if value < 0.22:
            return "taken-then-late"
        if value < 0.30:
            return "lost-in-cut"  # cut before the relay queued it: may or may not, all the same
        if value < 0.38:
            return "refused-451"
        if value < 0.50:
            return "ok-then-close"
        return "ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        message_id = str(mail["Message-ID"])
        with self.lock:
            fate = self.roll()
            self.faults.setdefault(message_id, []).append(fate)
            if fate not in ("refused-451", "lost-in-cut"):
                self.kept.append((envelope.rcpt_tos[0], message_id))
        if fate in ("taken-then-cut", "lost-in-cut"):
            server.transport.abort()
            return "421 4.4.2 gone"  # never reaches the client
        if fate == "taken-then-late":
            await asyncio.sleep(LATE)
        elif fate == "refused-451":
            return "451 4.3.0 queue full, try again later"
        elif fate == "ok-then-close":
            # Right after the 250 has been written: the next mail finds the connection dead.
            asyncio.get_running_loop().call_soon(server.transport.abort)
        return "250 2.0.0 queued"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def relay() -> Iterator[tuple[int, FaultyRelay]]:
    handler = FaultyRelay(seed=15)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, server_hostname="mail.test")
    controller.start()
    yield port, handler
    controller.stop()


# A newsletter on 1 December to the `members` audience over the `newsletter` channel.
LETTER_CALENDAR = {
    "main.yaml": """\
items:
  - id: december-letter
    kind: newsletter
    at: 2026-12-01 08:00
    channels: [newsletter]
    template: news/letter
    audience: members
"""
}
LETTER_TEMPLATES = {
    "news/letter.j2": (
        "{% block subject %}December news{% endblock %}\n"
        "{% block text %}Hello {{ member.first_name }}.\n"
        "Leave: {{ unsubscribe_url }}\n{% endblock %}\n"
    )
}


def project(make_project: MakeProject, port: int) -> Path:
    root = make_project(
        config=f"""\
timezone: UTC
locale: en
state: sqlite:///state.db
publish: {{retry_delay: 1s, max_attempts: 8}}
members:
  secret: ${{MEMBER_SECRET}}
  unsubscribe_url: https://news.example.org
channels:
  newsletter:
    type: smtp
    host: 127.0.0.1
    port: {port}
    security: none
    timeout: {CLIENT_TIMEOUT}
    from: "Community <hello@example.org>"
""",
        calendars=LETTER_CALENDAR,
        templates=LETTER_TEMPLATES,
    )
    rows = "".join(f"member{n:03d}@example.org,Member {n}\n" for n in range(MEMBERS))
    (root / "audiences").mkdir()
    (root / "audiences" / "members.csv").write_text("email,name\n" + rows, encoding="utf-8")
    return root


def run(root: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["-C", str(root), *args], env=ENV)


def delivery_of(message_id: str) -> str:
    """Our Message-ID is `<delivery id@sender domain>`."""
    return message_id.strip("<>").split("@")[0]


def test_a_relay_that_cuts_after_data_never_gets_a_member_twice(
    make_project: MakeProject, relay: tuple[int, FaultyRelay]
) -> None:
    port, handler = relay
    root = project(make_project, port)
    start = datetime(2026, 12, 1, 8, 1, tzinfo=UTC)

    printed = []
    for run_number in range(12):  # repeated cron runs, until nothing is due any more
        now = start + timedelta(minutes=10 * run_number)
        result = run(root, "publish", "--now", now.isoformat())
        assert result.exit_code in (0, 1), result.output
        assert "Traceback" not in result.output
        printed.append(result.output)
        shown = run(root, "status", "--format", "json", "--limit", "1000", "--now", now.isoformat())
        assert shown.exit_code == 0, shown.output
        status = json.loads(shown.stdout)
        counts = {k: v for k, v in status["counts"].items() if v}
        if not set(counts) - {"sent", "unknown"}:
            break
    else:
        pytest.fail(f"still due after 12 runs: {counts}")

    # The relay really faulted, in every way, and more than a handful of times.
    fates = Counter(fate for seen in handler.faults.values() for fate in seen)
    assert all(fates[fate] >= 3 for fate in (*AMBIGUOUS, "refused-451", "ok-then-close")), fates
    ambiguous = {
        delivery_of(mid) for mid, seen in handler.faults.items() if set(seen) & set(AMBIGUOUS)
    }
    assert len(ambiguous) >= 0.2 * MEMBERS

    # Every member received at most one mail, whatever the relay did.
    per_member = Counter(recipient for recipient, _ in handler.kept)
    assert max(per_member.values()) == 1, per_member.most_common(3)
    # No send was repeated after an answer that was not clear.
    assert all(
        len(seen) == 1 or not set(seen[:-1]) & set(AMBIGUOUS) for seen in handler.faults.values()
    )

    records = status["deliveries"]
    assert len(records) == MEMBERS
    states = {record["id"]: record["state"] for record in records}
    # Each ambiguous send is `unknown`, nothing else is; the rest are `sent`.
    assert {d for d, state in states.items() if state == "unknown"} == ambiguous
    assert {d for d, state in states.items() if state == "sent"} == set(states) - ambiguous
    assert counts == {"sent": MEMBERS - len(ambiguous), "unknown": len(ambiguous)}
    # Each `sent` one was really received, exactly once.
    received = Counter(delivery_of(mid) for _, mid in handler.kept)
    assert all(received[d] == 1 for d, state in states.items() if state == "sent")
    # `publish` said why, and what to do.
    assert "after it received the message: it may have been delivered" in printed[0]
    assert "commcal resolve" in printed[0]
