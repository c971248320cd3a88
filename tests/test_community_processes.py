"""Mail to members under real processes: SIGKILL mid-newsletter, and many publishers at once.

`commcal publish` runs as a subprocess against a loopback aiosmtpd server that records every
mail's recipient and Message-ID. SMTP has no idempotency key, so the promise is: a member gets a
newsletter at most once; the batch a kill cut off is recorded `unknown` (never retried); every
other member gets it exactly once.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from commcal.audience import recipient_key
from commcal.channels.smtp import SmtpChannel
from commcal.ledger import State, open_ledger
from tests.test_community import free_port

SECRET = "a-long-random-member-secret-for-process-tests-42"
START = datetime.fromisoformat("2026-12-01T08:00:30+00:00")


@dataclass
class Recorder:
    """Every accepted mail as (recipient, Message-ID, text)."""

    mails: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content
        head = content.split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
        found = re.search(r"^Message-ID:\s*(\S+)", head, re.M | re.I)
        with self.lock:
            for rcpt in envelope.rcpt_tos:
                self.mails.append(
                    (
                        rcpt.lower(),
                        found.group(1) if found else "",
                        content.decode("utf-8", "replace"),
                    )
                )
        return "250 2.0.0 queued"

    def snapshot(self) -> list[tuple[str, str, str]]:
        with self.lock:
            return list(self.mails)


@pytest.fixture
def smtp() -> Iterator[tuple[int, Recorder]]:
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, server_hostname="mail.test")
    controller.start()
    yield port, recorder
    controller.stop()


def command() -> list[str]:
    exe = shutil.which("commcal") or str(Path(sys.executable).with_name("commcal"))
    if Path(exe).exists():
        return [exe]
    return [sys.executable, "-c", "from commcal.cli import main; main()"]


def start(root: Path, now: datetime) -> subprocess.Popen[str]:
    """A `commcal publish` process. Its output goes to a file: a pipe nobody reads fills up
    after ~800 progress lines and would stall the process."""
    log = (root / "publish.log").open("a", encoding="utf-8")
    return subprocess.Popen(
        [*command(), "-C", str(root), "publish", "--now", now.strftime("%Y-%m-%dT%H:%M:%SZ")],
        stdout=log,
        stderr=log,
        text=True,
        env={**os.environ, "MEMBER_SECRET": SECRET},
    )


def project(tmp_path: Path, port: int, members: int, item: str, template: str) -> Path:
    root = tmp_path / "project"
    (root / "calendars").mkdir(parents=True)
    (root / "templates" / "news").mkdir(parents=True)
    (root / "audiences").mkdir()
    (root / "codes").mkdir()
    (root / "commcal.yaml").write_text(
        f"""\
timezone: UTC
locale: en
state: sqlite:///state.db
publish: {{lease: 2s, max_late: 1d, concurrency: 1}}
members:
  secret: ${{MEMBER_SECRET}}
  unsubscribe_url: https://news.example.org
channels:
  newsletter:
    type: smtp
    host: 127.0.0.1
    port: {port}
    security: none
    timeout: 10
    from: "Community <hello@example.org>"
""",
        encoding="utf-8",
    )
    (root / "calendars" / "main.yaml").write_text(item, encoding="utf-8")
    (root / "templates" / "news" / "mail.j2").write_text(template, encoding="utf-8")
    rows = "".join(f"member{n:05d}@example.org,Member {n}\n" for n in range(members))
    (root / "audiences" / "members.csv").write_text("email,name\n" + rows, encoding="utf-8")
    return root


LETTER_ITEM = """\
items:
  - id: big-letter
    kind: newsletter
    title: December news
    at: 2026-12-01 08:00
    channels: [newsletter]
    template: news/mail
    audience: members
"""


def test_sigkill_mid_newsletter_never_mails_a_member_twice(
    tmp_path: Path, smtp: tuple[int, Recorder]
) -> None:
    port, recorder = smtp
    total = 5000
    root = project(
        tmp_path, port, total, LETTER_ITEM, "Hello {{ member.name }}!\n{{ unsubscribe_url }}\n"
    )
    rng = random.Random(2026)
    now = START
    kills = 0
    began = time.monotonic()
    while kills < 4:
        proc = start(root, now)
        # Kill mid-newsletter, whatever the machine's speed: wait for this run's first mail
        # (start-up and reading 5,000 members can take seconds on a loaded CI box), then a
        # random moment into the sending.
        before = len(recorder.snapshot())
        deadline = time.monotonic() + 30
        while (
            len(recorder.snapshot()) == before
            and proc.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is not None:
            break  # it finished before the kill: nothing left to interrupt
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        kills += 1
        # Past every lease the dead process held (leases run on the pinned clock).
        now += timedelta(minutes=1)
    assert kills >= 4
    assert recorder.snapshot(), "no kill landed mid-newsletter"
    final = start(root, now)
    final.wait(timeout=150)
    assert final.returncode in (0, 1), (root / "publish.log").read_text()[
        -2000:
    ]  # 1: some sends were cut off and are `unknown`
    # One more run sends nothing new: everything is settled.
    settle = start(root, now + timedelta(minutes=1))
    settle.wait(timeout=30)
    elapsed = time.monotonic() - began

    mails = recorder.snapshot()
    per_member = Counter(rcpt for rcpt, _, _ in mails)
    assert per_member.most_common(1)[0][1] == 1, per_member.most_common(3)
    ids = Counter(message_id for _, message_id, _ in mails)
    assert len(ids) == len(mails) and all(ids)  # no Message-ID twice

    everyone = {
        f"member{n:05d}@example.org": recipient_key(f"member{n:05d}@example.org")
        for n in range(total)
    }
    with open_ledger("sqlite:///state.db", project_dir=root) as ledger:
        records = ledger.records(item="big-letter")
    states = {r.recipient: r.state for r in records}
    assert len(states) == total
    assert set(Counter(str(s) for s in states.values())) <= {"sent", "unknown"}
    unknown = {key for key, state in states.items() if state == State.UNKNOWN}
    sent = {key for key, state in states.items() if state == State.SENT}
    received = {everyone[rcpt] for rcpt in per_member}
    # Sent in the ledger means received exactly once; received but not `sent` is only ever a
    # send a kill cut off (recorded unknown, never retried).
    assert sent <= received
    assert received - sent <= unknown
    assert len(sent) + len(unknown) == total
    # At most one batch in flight per killed process (docs/deployment.md, "Newsletters").
    batch = SmtpChannel.settings_schema["batch"].default
    assert len(unknown) <= kills * batch
    assert elapsed < 240  # bounded; about 45 s on a quiet 2-core machine


OFFER_ITEM = """\
items:
  - id: pool-offer
    kind: offer
    title: Winter offer
    at: 2026-12-01 08:00
    channels: [newsletter]
    template: news/mail
    audience: members
    codes: {pool: codes/winter.txt}
"""


def test_eight_publishers_at_once_hand_each_member_one_distinct_code(
    tmp_path: Path, smtp: tuple[int, Recorder]
) -> None:
    port, recorder = smtp
    total = 300
    root = project(tmp_path, port, total, OFFER_ITEM, "Your code: {{ code }}\n")
    codes = [f"WIN-{n:05d}" for n in range(total)]
    (root / "codes" / "winter.txt").write_text("\n".join(codes) + "\n", encoding="utf-8")
    began = time.monotonic()
    procs = [start(root, START) for _ in range(8)]
    for proc in procs:
        proc.wait(timeout=55)
    log = (root / "publish.log").read_text()
    assert [proc.returncode for proc in procs] == [0] * 8, log[-3000:]
    assert time.monotonic() - began < 60

    mails = recorder.snapshot()
    per_member = Counter(rcpt for rcpt, _, _ in mails)
    assert len(per_member) == total
    assert set(per_member.values()) == {1}
    given = [re.search(r"Your code: (\S+)", text) for _, _, text in mails]
    assert all(given)
    handed = [m.group(1) for m in given if m]
    assert sorted(handed) == sorted(codes)  # each code once, to one member
