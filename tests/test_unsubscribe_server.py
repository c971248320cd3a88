"""The unsubscribe server under slow clients, busy ports, bad ports and bad URLs (issue 15, 17).

Slow clients are real sockets on loopback that send a request one byte a second; the server is
the real `commcal unsubscribe-server` process (or, for the request deadline with small limits,
the same server class in a thread). Every wait is bounded.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from commcal.audience import recipient_key
from commcal.ledger import open_ledger
from commcal.tokens import sign
from commcal.unsubscribe_server import UnsubscribeServer, make_app
from tests.conftest import MakeProject
from tests.test_community import MEMBERS, SECRET, config, free_port, run

ONE_CLICK = {"List-Unsubscribe": "One-Click"}
SLOW_START = b"POST /u/"  # the start of a request that never ends


def commcal(*args: str) -> list[str]:
    return [sys.executable, "-c", "from commcal.cli import main; main()", *args]


def member_project(make_project: MakeProject, url: str = "https://news.example.org") -> Path:
    text = config(free_port()).replace("https://news.example.org", url)
    root = make_project(config=text)
    (root / "audiences").mkdir()
    (root / "audiences" / "members.csv").write_text(MEMBERS, encoding="utf-8")
    return root


def wait_listening(port: int, process: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the server ended: {process.communicate()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port}")


class Dribblers:
    """`count` sockets sending a request one byte a second, from one thread, until closed."""

    def __init__(self, port: int, count: int) -> None:
        self.sockets: list[socket.socket] = []
        for _ in range(count):
            sock = socket.socket()
            sock.settimeout(2)
            sock.connect_ex(("127.0.0.1", port))  # queued in the backlog if not accepted yet
            self.sockets.append(sock)
        self.closed_by_server = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._dribble, daemon=True)
        self._thread.start()

    def _dribble(self) -> None:
        for step in range(60):  # at most a minute, whatever happens
            if self._stop.wait(1.0):
                return
            byte = SLOW_START[step : step + 1] or b"x"
            for sock in list(self.sockets):
                try:
                    sock.send(byte)
                except OSError:  # the server closed it: what the deadline is for
                    self.sockets.remove(sock)
                    self.closed_by_server += 1
                    sock.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.sockets:
            sock.close()


def test_150_slow_clients_do_not_stop_a_real_unsubscribe(make_project: MakeProject) -> None:
    root = member_project(make_project)
    port = free_port()
    process = subprocess.Popen(
        commcal("-C", str(root), "unsubscribe-server", "--port", str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MEMBER_SECRET": SECRET},
    )
    dribblers = None
    try:
        wait_listening(port, process)
        dribblers = Dribblers(port, 150)
        time.sleep(2)  # they are all connected and dribbling
        token = sign(recipient_key("ann@example.org"), SECRET, list_id="unsubscribe:members")
        started = time.monotonic()
        response = requests.post(
            f"http://127.0.0.1:{port}/u/{token}", data=ONE_CLICK, timeout=(5, 5)
        )
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        assert elapsed < 5, elapsed
        with open_ledger("sqlite:///state.db", project_dir=root) as ledger:
            assert [s.recipient_key for s in ledger.suppressions()] == [
                recipient_key("ann@example.org")
            ]
    finally:
        if dribblers is not None:
            dribblers.close()
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


@pytest.fixture
def small_server() -> Iterator[tuple[int, list[str]]]:
    """A server allowing only 20 connections and 1 s per request, in a thread."""
    calls: list[str] = []

    def suppress(key: str) -> bool:
        calls.append(key)
        return True

    server = UnsubscribeServer(
        make_app(SECRET, suppress),
        "127.0.0.1",
        0,
        request_deadline=1.0,
        connection_limit=20,
        cleanup_interval=1,
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield server.addresses[0][1], calls
    finally:
        server.stop()
        thread.join(5)


def test_more_slow_clients_than_the_connection_limit_are_cut_at_the_request_deadline(
    small_server: tuple[int, list[str]],
) -> None:
    port, calls = small_server
    dribblers = Dribblers(port, 40)  # twice the limit: without the deadline, no one else gets in
    try:
        token = sign("sub-1", SECRET)
        started = time.monotonic()
        response = requests.post(f"http://127.0.0.1:{port}/u/{token}", data=ONE_CLICK, timeout=10)
        assert response.status_code == 200
        assert time.monotonic() - started < 8
        assert calls == ["sub-1"]
        deadline = time.monotonic() + 10
        while dribblers.closed_by_server < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert dribblers.closed_by_server >= 20
    finally:
        dribblers.close()


def test_a_normal_request_within_the_deadline_is_not_cut(
    small_server: tuple[int, list[str]],
) -> None:
    port, calls = small_server
    with requests.Session() as session:  # keep-alive: the second request reuses the connection
        for _ in range(2):
            page = session.get(f"http://127.0.0.1:{port}/u/{sign('sub-2', SECRET)}", timeout=5)
            assert page.status_code == 200
            time.sleep(1.5)  # longer than the deadline, but idle: not a slow request
    assert calls == []


def test_a_port_in_use_is_a_clear_error(make_project: MakeProject) -> None:
    root = member_project(make_project)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            commcal("-C", str(root), "unsubscribe-server", "--port", str(port)),
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "MEMBER_SECRET": SECRET},
        )
    assert done.returncode == 2, done
    assert f"port {port} is already in use" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("port", ["99999", "0", "-1", "65536"])
def test_a_port_out_of_range_is_refused(make_project: MakeProject, port: str) -> None:
    root = member_project(make_project)
    done = subprocess.run(
        commcal("-C", str(root), "unsubscribe-server", "--port", port),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MEMBER_SECRET": SECRET},
    )
    assert done.returncode == 2, done
    assert f"--port {port}: a port is a number from 1 to 65535" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("nosuchhost.invalid", "cannot listen on 'nosuchhost.invalid': no such host name"),
        ("192.0.2.1", "cannot listen on 192.0.2.1: it is not an address of this machine"),
    ],
)
def test_a_host_that_is_not_here_is_a_clear_error(
    make_project: MakeProject, host: str, message: str
) -> None:
    root = member_project(make_project)
    done = subprocess.run(
        commcal("-C", str(root), "unsubscribe-server", "--host", host, "--port", "8025"),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MEMBER_SECRET": SECRET},
    )
    assert done.returncode == 2, done
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_the_library_refuses_a_port_waitress_would_wrap() -> None:
    from commcal.unsubscribe_server import ServerError

    with pytest.raises(ServerError, match="port 99999 is not a port number"):
        UnsubscribeServer(make_app(SECRET, lambda key: True), "127.0.0.1", 99999)


NEWSLETTER = """\
items:
  - id: letter
    kind: newsletter
    at: 2026-12-01 08:00
    channels: [newsletter]
    template: news/letter
    audience: members
"""
LETTER = {
    "news/letter.j2": (
        "{% block subject %}News{% endblock %}\n"
        "{% block text %}Hi. Leave: {{ unsubscribe_url }}{% endblock %}\n"
    )
}


@pytest.mark.parametrize(
    "url",
    [
        "http://news.example.org",
        "http://localhost.example.org",
        "http://127.0.0.1.nip.io/u",
        "ftp://news.example.org",
        "https://news.example.org/a b",
        "https://",
    ],
)
def test_an_unsubscribe_url_that_is_not_https_stops_at_the_config_check(
    make_project: MakeProject, url: str
) -> None:
    root = make_project(
        config=config(free_port()).replace("https://news.example.org", url),
        calendars={"main.yaml": NEWSLETTER},
        templates=LETTER,
    )
    (root / "audiences").mkdir()
    (root / "audiences" / "members.csv").write_text(MEMBERS, encoding="utf-8")
    validated = run(root, "validate", "--now", "2026-11-30T00:00:00Z")
    assert validated.exit_code == 2, validated.output
    assert "commcal.yaml:6:20: error: members.unsubscribe_url must be an https:// URL" in (
        validated.output
    )
    published = run(root, "publish", "--now", "2026-12-01T08:01:00Z")
    assert published.exit_code == 2, published.output
    assert "commcal.yaml:6:20" in published.output
    assert not (root / "state.db").exists()  # nothing claimed, nothing left `claimed`


def test_http_localhost_is_accepted_for_tests_and_publishes(
    make_project: MakeProject,
) -> None:
    from aiosmtpd.controller import Controller

    from tests.test_community import Mailbox

    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, server_hostname="mail.test")
    controller.start()
    try:
        root = make_project(
            config=config(port).replace("https://news.example.org", "http://localhost:8025"),
            calendars={"main.yaml": NEWSLETTER},
            templates=LETTER,
        )
        (root / "audiences").mkdir()
        (root / "audiences" / "members.csv").write_text(MEMBERS, encoding="utf-8")
        published = run(root, "publish", "--now", "2026-12-01T08:01:00Z")
        assert published.exit_code == 0, published.output
        assert len(box.received) == 3
        assert all(
            str(m["List-Unsubscribe"]).startswith("<http://localhost:8025/u/") for m in box.mails()
        )
    finally:
        controller.stop()


def test_a_bad_unsubscribe_mailto_stops_at_the_config_check(make_project: MakeProject) -> None:
    root = make_project(
        config=config(free_port()).replace("unsubscribe@example.org", '"leave me@example.org"'),
        calendars={"main.yaml": NEWSLETTER},
        templates=LETTER,
    )
    (root / "audiences").mkdir()
    (root / "audiences" / "members.csv").write_text(MEMBERS, encoding="utf-8")
    validated = run(root, "validate", "--now", "2026-11-30T00:00:00Z")
    assert validated.exit_code == 2, validated.output
    assert "commcal.yaml:7:23: error: members.unsubscribe_mailto" in validated.output
