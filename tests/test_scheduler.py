"""`commcal run`: real processes, a real loopback HTTP server that records arrival times."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from commcal.ledger import State, open_ledger
from tests.conftest import MakeProject

COMMCAL = str(Path(sys.executable).with_name("commcal"))

CONFIG = """\
timezone: UTC
state: {state}
publish: {{lease: 3s, max_late: 1h, retry_delay: 1s}}
channels:
  hook:
    type: slack
    webhook_url: ${{HOOK_URL}}
"""


class Recorder:
    """A Slack-like webhook on 127.0.0.1 that records (arrival time, text) of every POST."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.arrivals: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                arrived = time.time()
                with recorder.lock:
                    recorder.arrivals.append((arrived, json.loads(body)["text"]))
                if recorder.delay:
                    time.sleep(recorder.delay)
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def texts(self) -> list[str]:
        with self.lock:
            return [t for _, t in self.arrivals]

    def first(self, text: str) -> float | None:
        with self.lock:
            return next((at for at, t in self.arrivals if t == text), None)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.close()


def z(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def whole_second(ahead: float) -> datetime:
    when = datetime.now(UTC) + timedelta(seconds=ahead)
    return when.replace(microsecond=0) + timedelta(seconds=1)


def calendar(items: dict[str, list[datetime]]) -> str:
    lines = ["items:"]
    for item, dates in items.items():
        lines += [
            f"  - id: {item}",
            "    kind: post",
            "    template: posts/say",
            "    channels: [hook]",
            f"    dates: [{', '.join(json.dumps(z(d)) for d in dates)}]",
        ]
    return "\n".join(lines) + "\n"


TEMPLATES = {"posts/say.j2": "{{ item.id }} says hello"}


def start(root: Path, hook: str, *, state: str | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "HOOK_URL": hook, "PYTHONUNBUFFERED": "1"}
    env.pop("COMMCAL_STATE", None)
    args = [COMMCAL, "-C", str(root), "run", "--log-format", "json"]
    if state:
        args += ["--state", state]
    return subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)


class LogReader:
    """Reads a process's JSON log lines in the background."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[dict[str, object]] = []
        self.raw: list[str] = []
        assert proc.stderr is not None
        self.thread = threading.Thread(target=self._read, args=(proc.stderr,), daemon=True)
        self.thread.start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.raw.append(line)
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(line))

    def wait_for(self, event: str, timeout: float = 10.0, nth: int = 1) -> dict[str, object]:
        """The `nth` log line with this event, waiting for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in list(self.lines) if line.get("event") == event]
            if len(found) >= nth:
                return found[nth - 1]
            time.sleep(0.05)
        raise AssertionError(f"no {event!r} in the log:\n{''.join(self.raw)}")


def stop(proc: subprocess.Popen[str], timeout: float = 8.0) -> tuple[int, float]:
    began = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return code, time.monotonic() - began


def wait_until(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)


def sqlite_config() -> str:
    return CONFIG.format(state="sqlite:///.commcal/state.db")


# -- on time ------------------------------------------------------------------------------------


def test_delivery_arrives_within_two_seconds_of_due(
    make_project: MakeProject, recorder: Recorder
) -> None:
    due = [whole_second(3), whole_second(5) + timedelta(milliseconds=500)]
    root = make_project(
        config=sqlite_config(), calendars={"c.yaml": calendar({"a": due})}, templates=TEMPLATES
    )
    proc = start(root, recorder.url)
    log = LogReader(proc)
    try:
        wait_until(lambda: len(recorder.texts()) >= 2, 12)
    finally:
        code, _ = stop(proc)
    assert code == 0, "".join(log.raw)
    assert len(recorder.texts()) == 2
    for when, (arrived, _) in zip(due, sorted(recorder.arrivals), strict=True):
        late = arrived - when.timestamp()
        assert 0 <= late < 2.0, (when, late)
    sent = [line for line in log.lines if line.get("event") == "sent"]
    assert len(sent) == 2 and {line["channel"] for line in sent} == {"hook"}


def test_human_log_line(make_project: MakeProject, recorder: Recorder) -> None:
    root = make_project(
        config=sqlite_config(),
        calendars={"c.yaml": calendar({"a": [whole_second(1)]})},
        templates=TEMPLATES,
    )
    env = {**os.environ, "HOOK_URL": recorder.url}
    proc = subprocess.Popen(
        [COMMCAL, "-C", str(root), "run"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_until(lambda: recorder.texts(), 8)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=8)
    assert proc.returncode == 0, err
    sent = [line for line in err.splitlines() if " sent " in line]
    assert len(sent) == 1
    assert " c/a -> hook" in sent[0]
    datetime.strptime(sent[0][:19], "%Y-%m-%d %H:%M:%S")


# -- reload -------------------------------------------------------------------------------------


def test_edit_is_picked_up_and_broken_edit_keeps_schedule(
    make_project: MakeProject, recorder: Recorder
) -> None:
    first = whole_second(30)
    root = make_project(
        config=sqlite_config(), calendars={"c.yaml": calendar({"a": [first]})}, templates=TEMPLATES
    )
    cal = root / "calendars" / "c.yaml"
    proc = start(root, recorder.url)
    log = LogReader(proc)
    try:
        log.wait_for("started")
        time.sleep(1.0)
        added = whole_second(3)
        cal.write_text(calendar({"a": [first], "b": [added]}), encoding="utf-8")
        log.wait_for("reloaded")
        wait_until(lambda: any(t.startswith("b ") for t in recorder.texts()), 10)
        texts = recorder.texts()
        assert any(t.startswith("b ") for t in texts), texts
        arrived = next(at for at, t in recorder.arrivals if t.startswith("b "))
        assert 0 <= arrived - added.timestamp() < 2.0
        # A broken edit: reported with file:line, the last good schedule still fires.
        later = whole_second(3)
        good = calendar({"a": [first], "b": [added], "c": [later]})
        cal.write_text(good, encoding="utf-8")
        log.wait_for("reloaded", nth=2)
        time.sleep(0.3)
        cal.write_text(good + "  - id: [broken\n", encoding="utf-8")
        problem = log.wait_for("problem")
        assert "calendars/c.yaml:" in str(problem["message"])
        log.wait_for("reload-failed")
        wait_until(lambda: any(t.startswith("c ") for t in recorder.texts()), 10)
        assert any(t.startswith("c ") for t in recorder.texts())
        assert proc.poll() is None
    finally:
        code, _ = stop(proc)
    assert code == 0


# -- stop ---------------------------------------------------------------------------------------


def test_sigterm_mid_batch_exits_clean_and_loses_nothing(make_project: MakeProject) -> None:
    slow = Recorder(delay=0.25)
    try:
        due = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
        items = {f"i{n:02d}": [due] for n in range(40)}
        root = make_project(
            config=sqlite_config(), calendars={"c.yaml": calendar(items)}, templates=TEMPLATES
        )
        proc = start(root, slow.url)
        log = LogReader(proc)
        wait_until(lambda: len(slow.texts()) >= 5, 10)
        code, took = stop(proc)
        assert code == 0, "".join(log.raw)
        assert took < 3.0
        got = len(slow.texts())
        assert 5 <= got < 40
        url = "sqlite:///.commcal/state.db"
        with open_ledger(url, project_dir=root) as ledger:
            assert ledger.records(states=[State.CLAIMED, State.SENDING]) == []
            assert len(ledger.records(states=[State.SENT])) == got
        # The next run sends the rest, and nothing twice.
        proc = start(root, slow.url)
        log = LogReader(proc)
        wait_until(lambda: len(slow.texts()) >= 40, 25)
        code, _ = stop(proc)
        assert code == 0
        texts = slow.texts()
        assert len(texts) == 40 and len(set(texts)) == 40
        with open_ledger(url, project_dir=root) as ledger:
            assert len(ledger.records(states=[State.SENT])) == 40
    finally:
        slow.close()


# -- PostgreSQL: several workers ----------------------------------------------------------------


@pytest.fixture
def pg_url() -> Iterator[str]:
    base = os.environ.get("COMMCAL_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        import psycopg

        admin = psycopg.connect(base, autocommit=True, connect_timeout=3)
    except Exception as exc:
        if os.environ.get("COMMCAL_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL unreachable at {base}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {base}: {exc}")
    name = f"commcal_run_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + f"/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def _pg_project(make_project: MakeProject, url: str, count: int, first: datetime) -> Path:
    step = timedelta(seconds=15) / count
    items = {f"i{n:03d}": [first + n * step] for n in range(count)}
    return make_project(
        config=CONFIG.format(state=url), calendars={"c.yaml": calendar(items)}, templates=TEMPLATES
    )


def test_three_workers_postgres_exactly_once(
    make_project: MakeProject, recorder: Recorder, pg_url: str
) -> None:
    count = 300
    root = _pg_project(make_project, pg_url, count, whole_second(4))
    procs = [start(root, recorder.url) for _ in range(3)]
    logs = [LogReader(p) for p in procs]
    try:
        wait_until(lambda: len(recorder.texts()) >= count, 40)
        time.sleep(1.0)
    finally:
        codes = [stop(p)[0] for p in procs]
    assert codes == [0, 0, 0], [("".join(log.raw))[-2000:] for log in logs]
    texts = recorder.texts()
    assert len(texts) == count and len(set(texts)) == count
    with open_ledger(pg_url) as ledger:
        sent = ledger.records(states=[State.SENT])
        assert len(sent) == count
        assert len({r.claimed_by for r in sent}) > 1
        assert ledger.records(states=[State.CLAIMED, State.SENDING]) == []


def test_killed_worker_is_taken_over_after_lease(make_project: MakeProject, pg_url: str) -> None:
    slow = Recorder(delay=0.02)
    try:
        count = 300
        root = _pg_project(make_project, pg_url, count, whole_second(3))
        procs = [start(root, slow.url) for _ in range(3)]
        logs = [LogReader(p) for p in procs]
        wait_until(lambda: len(slow.texts()) >= count // 3, 30)
        procs[0].kill()  # SIGKILL mid-way: its claims stay until the lease (3 s) runs out
        procs[0].wait(5)

        def settled() -> bool:
            with open_ledger(pg_url) as ledger:
                counts = ledger.counts()
            return counts[State.SENT] + counts[State.UNKNOWN] >= count

        wait_until(settled, 40)
        codes = [stop(p)[0] for p in procs[1:]]
        assert codes == [0, 0], [("".join(log.raw))[-2000:] for log in logs]
        texts = slow.texts()
        assert len(texts) == len(set(texts)), "a delivery reached the server twice"
        with open_ledger(pg_url) as ledger:
            counts = ledger.counts()
            assert counts[State.SENT] + counts[State.UNKNOWN] == count, counts
            assert counts[State.CLAIMED] == counts[State.SENDING] == 0
            # Everything recorded sent did arrive; unknown ones arrived at most once.
            assert counts[State.SENT] <= len(texts) <= count
    finally:
        slow.close()


# -- send_at: local -----------------------------------------------------------------------------


class Arrivals:
    """An aiosmtpd handler recording (arrival time, recipient) of every mail."""

    def __init__(self) -> None:
        self.mails: list[tuple[float, str]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        with self.lock:
            for rcpt in envelope.rcpt_tos:  # type: ignore[attr-defined]
                self.mails.append((time.time(), rcpt))
        return "250 2.0.0 queued"


def test_send_at_local_mail_leaves_on_time_in_the_members_own_zone(
    make_project: MakeProject,
) -> None:
    """The calendar says 09:00-ish UTC an hour from now; a member an hour east (Etc/GMT-1 is
    UTC+1) is due at that wall time in their zone: in a few seconds. `run` wakes for it then,
    not at its next 30 s sweep, and the member in UTC waits for their own hour."""
    from aiosmtpd.controller import Controller

    from tests.test_community import free_port

    mailbox = Arrivals()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, server_hostname="mail.test")
    controller.start()
    due = whole_second(4)
    wall = due + timedelta(hours=1)  # the item's time in its calendar zone (UTC)
    root = make_project(
        config=(
            "timezone: UTC\nstate: sqlite:///.commcal/state.db\n"
            "publish: {lease: 3s, max_late: 1h}\n"
            "members:\n  secret: ${MEMBER_SECRET}\n  unsubscribe_url: https://news.example.org\n"
            "channels:\n  mail:\n    type: smtp\n    host: 127.0.0.1\n"
            f"    port: {port}\n    security: none\n    from: hello@example.org\n"
        ),
        calendars={
            "c.yaml": (
                "items:\n  - id: letter\n    kind: newsletter\n"
                f"    at: {wall:%Y-%m-%d %H:%M:%S}\n    send_at: local\n"
                "    channels: [mail]\n    template: news/letter\n    audience: members\n"
            )
        },
        templates={
            "news/letter.j2": "{% block subject %}News{% endblock %}Hello {{ member.name }}"
        },
    )
    (root / "audiences").mkdir()
    (root / "audiences" / "members.csv").write_text(
        "email,name,timezone\neast@example.org,East,Etc/GMT-1\nutc@example.org,Utc,UTC\n",
        encoding="utf-8",
    )
    env = {**os.environ, "MEMBER_SECRET": "x" * 40, "PYTHONUNBUFFERED": "1"}
    env.pop("COMMCAL_STATE", None)
    proc = subprocess.Popen(
        [COMMCAL, "-C", str(root), "run", "--log-format", "json"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = LogReader(proc)
    try:
        wait_until(lambda: mailbox.mails, 15)
        time.sleep(0.5)
    finally:
        code, _ = stop(proc)
        controller.stop()
    assert code == 0, "".join(log.raw)
    assert [rcpt for _, rcpt in mailbox.mails] == ["east@example.org"], "".join(log.raw)
    late = mailbox.mails[0][0] - due.timestamp()
    assert 0 <= late < 2.0, late
