"""Matrix adapter against a loopback server that answers like a homeserver's client API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeProject
from proxies import DROP, Proxy
from publish_support import TEMPLATES, config, every_minute
from pytest_httpserver import HTTPServer
from real_servers import real_synapse
from werkzeug import Request, Response

from commcal.channels.base import EnvRef, Message, PermanentError, TransientError
from commcal.channels.matrix import MatrixChannel
from commcal.errors import ConfigError
from commcal.http import TimeoutSession

ROOM = "!OGEhHVWSdvArJzumhm:matrix.org"
ENV = {"MATRIX_TOKEN": "syt_YWNtZQ_secret"}
AUTH = {"Authorization": "Bearer syt_YWNtZQ_secret"}
SEND = f"/_matrix/client/v3/rooms/{ROOM}/send/m.room.message/"
STATE = f"/_matrix/client/v3/rooms/{ROOM}/state/m.room.encryption/"
NOT_ENCRYPTED = {"errcode": "M_NOT_FOUND", "error": "Event not found."}


def channel(server: HTTPServer, **settings: Any) -> MatrixChannel:
    http = settings.pop("http", None)
    config: dict[str, Any] = {
        "homeserver": server.url_for("/").rstrip("/"),
        "access_token": EnvRef("${MATRIX_TOKEN}"),
        "room_id": ROOM,
    }
    config.update(settings)
    # The room is not encrypted: no m.room.encryption in its state, as a homeserver answers.
    server.expect_request(STATE, method="GET").respond_with_json(NOT_ENCRYPTED, status=404)
    return MatrixChannel("mx", config, env=ENV, http=http)


def message(text: str = "Γεια σας 👋", html: str | None = None) -> Message:
    return Message("mx", "matrix", text, html=html)


class Homeserver:
    """Keeps events by transaction id, as the spec requires of a homeserver."""

    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}
        self.ids: dict[str, str] = {}

    def __call__(self, request: Request) -> Response:
        txn = request.path.rsplit("/", 1)[1]
        if txn not in self.ids:
            self.ids[txn] = f"$event{len(self.ids) + 1}-x_yz"
            self.events[txn] = json.loads(request.data)
        return Response(json.dumps({"event_id": self.ids[txn]}), content_type="application/json")


def test_send_puts_event_with_txn_id(httpserver: HTTPServer) -> None:
    server = Homeserver()
    httpserver.expect_request(SEND + "delivery-1", method="PUT", headers=AUTH).respond_with_handler(
        server
    )
    receipt = channel(httpserver).send(message("Hi *all*", html="Hi <em>all</em>"), "delivery-1")
    assert receipt.remote_id == "$event1-x_yz"
    assert receipt.url == f"https://matrix.to/#/{ROOM}/$event1-x_yz?via=matrix.org"
    assert server.events["delivery-1"] == {
        "msgtype": "m.text",
        "body": "Hi *all*",
        "format": "org.matrix.custom.html",
        "formatted_body": "Hi <em>all</em>",
        "m.mentions": {},
    }


def test_same_txn_id_twice_gives_same_event(httpserver: HTTPServer) -> None:
    server = Homeserver()
    httpserver.expect_request(SEND + "delivery-1", method="PUT").respond_with_handler(server)
    httpserver.expect_request(SEND + "delivery-2", method="PUT").respond_with_handler(server)
    mx = channel(httpserver, msgtype="m.notice")
    first = mx.send(message(), "delivery-1")
    again = mx.send(message(), "delivery-1")
    other = mx.send(message(), "delivery-2")
    assert first.remote_id == again.remote_id
    assert other.remote_id != first.remote_id
    assert len(server.events) == 2
    assert server.events["delivery-1"] == {
        "msgtype": "m.notice",
        "body": "Γεια σας 👋",
        "m.mentions": {},
    }


def test_txn_id_is_url_quoted(httpserver: HTTPServer) -> None:
    seen: list[str] = []

    def handler(request: Request) -> Response:
        seen.append(request.environ.get("RAW_URI", request.full_path))
        return Response('{"event_id":"$e"}', content_type="application/json")

    httpserver.expect_request(SEND + "cal 1?x", method="PUT").respond_with_handler(handler)
    channel(httpserver).send(message(), "cal 1?x")
    assert seen and "cal%201%3Fx" in seen[0]


def test_rate_limit_uses_retry_after_ms(httpserver: HTTPServer) -> None:
    httpserver.expect_request(SEND + "k").respond_with_json(
        {"errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests", "retry_after_ms": 2500},
        status=429,
    )
    with pytest.raises(TransientError, match="M_LIMIT_EXCEEDED") as caught:
        channel(httpserver).send(message(), "k")
    assert caught.value.retry_after == 2.5


def test_forbidden_is_permanent_with_reason(httpserver: HTTPServer) -> None:
    httpserver.expect_request(SEND + "k").respond_with_json(
        {"errcode": "M_FORBIDDEN", "error": "User @acme:matrix.org not in room"}, status=403
    )
    with pytest.raises(PermanentError, match=r"M_FORBIDDEN User @acme:matrix\.org not in room"):
        channel(httpserver).send(message(), "k")


def test_unknown_token_is_permanent_and_redacted(httpserver: HTTPServer) -> None:
    httpserver.expect_request(SEND + "k").respond_with_json(
        {
            "errcode": "M_UNKNOWN_TOKEN",
            "error": "Invalid access token passed.",
            "soft_logout": False,
        },
        status=401,
    )
    with pytest.raises(PermanentError, match="M_UNKNOWN_TOKEN") as caught:
        channel(httpserver).send(message(), "k")
    assert "syt_YWNtZQ_secret" not in str(caught.value)


def test_500_is_transient(httpserver: HTTPServer) -> None:
    httpserver.expect_request(SEND + "k").respond_with_data("upstream down", status=503)
    with pytest.raises(TransientError, match="HTTP 503"):
        channel(httpserver).send(message(), "k")


def test_timeout_is_transient(httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return Response("{}", content_type="application/json")

    httpserver.expect_request(SEND + "k").respond_with_handler(slow)
    with pytest.raises(TransientError, match="timed out"):
        channel(httpserver, http=TimeoutSession(timeout=(1, 0.3))).send(message(), "k")


def test_verify_checks_token_and_membership(httpserver: HTTPServer) -> None:
    httpserver.expect_request(
        "/_matrix/client/v3/account/whoami", method="GET", headers=AUTH
    ).respond_with_json({"user_id": "@acme:matrix.org", "device_id": "ABCDEF", "is_guest": False})
    httpserver.expect_oneshot_request("/_matrix/client/v3/joined_rooms").respond_with_json(
        {"joined_rooms": [ROOM]}
    )
    assert channel(httpserver).verify() == f"token works for @acme:matrix.org, a member of {ROOM}"
    httpserver.expect_oneshot_request("/_matrix/client/v3/joined_rooms").respond_with_json(
        {"joined_rooms": []}
    )
    with pytest.raises(PermanentError, match="has not joined"):
        channel(httpserver).verify()


def test_check_counts_bytes_including_html() -> None:
    mx = MatrixChannel(
        "mx", {"homeserver": "https://matrix.org", "access_token": EnvRef("${T}"), "room_id": ROOM}
    )
    assert mx.check(message("α" * 29_900)) == []
    assert mx.check(message("α" * 30_001)) == [
        "text is 60002 bytes (UTF-8), over matrix's limit of 60000 by 2"
    ]
    problems = mx.check(message("a" * 35_000, html="<p>" + "a" * 35_000 + "</p>"))
    # 70,107: the text, the HTML, the keys and quoting, and `"m.mentions":{}` (16 bytes).
    assert problems == [
        "the event content (text, HTML and JSON quoting) is 70107 bytes, over matrix's limit "
        "of 60000 by 10107"
    ]


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"access_token": EnvRef("${T}"), "room_id": ROOM}, "setting 'homeserver' is required"),
        ({"homeserver": "https://m.org", "room_id": ROOM}, "setting 'access_token' is required"),
        ({"homeserver": "https://m.org", "access_token": "syt_x", "room_id": ROOM}, "is a secret"),
        (
            {"homeserver": "https://m.org", "access_token": EnvRef("${T}"), "room_id": "#a:m.org"},
            "room_id must be a room id",
        ),
        (
            {"homeserver": "matrix.org", "access_token": EnvRef("${T}"), "room_id": ROOM},
            "homeserver must be an https:// URL",
        ),
    ],
)
def test_config_errors(settings: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        MatrixChannel("mx", settings, env={})


def test_missing_env_var_at_send_names_it() -> None:
    mx = MatrixChannel(
        "mx",
        {"homeserver": "https://m.org", "access_token": EnvRef("${MATRIX_TOKEN}"), "room_id": ROOM},
        env={},
    )
    with pytest.raises(ConfigError, match="MATRIX_TOKEN is not set"):
        mx.send(message(), "k")


# ---- the access token's device: transaction ids are kept per device -------------------------


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client killed mid-request is what these tests do


class Synapse:
    """A loopback homeserver that keeps transaction ids per device, as Synapse does (table
    event_txn_id_device_id): a repeated PUT from the same device answers the first event's id,
    the same txnId from another device (a new login) is a new event. `put` decides each PUT:
    "ok", "stall" (record the event, then never answer) or "drop" (record it, then close the
    connection without an answer)."""

    def __init__(self, tokens: dict[str, tuple[str, str | None]]) -> None:
        self.tokens = tokens  # access token -> (user_id, device_id)
        self.events: list[tuple[str, str, dict[str, Any]]] = []  # (device, txnId, content)
        self.txns: dict[tuple[str, str], str] = {}
        self.whoami = 0
        self.put: Callable[[int], str] = lambda number: "ok"
        self.puts = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        synapse = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _who(self) -> tuple[str, str | None] | None:
                auth = self.headers.get("Authorization", "")
                return synapse.tokens.get(auth.removeprefix("Bearer "))

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                out = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_GET(self) -> None:
                who = self._who()
                if who is None:
                    self._answer(401, {"errcode": "M_UNKNOWN_TOKEN", "error": "Unknown token"})
                    return
                if "/state/m.room.encryption" in self.path:
                    self._answer(404, NOT_ENCRYPTED)
                    return
                with synapse.lock:
                    synapse.whoami += 1
                body: dict[str, Any] = {"user_id": who[0], "is_guest": False}
                if who[1] is not None:
                    body["device_id"] = who[1]
                self._answer(200, body)

            def do_PUT(self) -> None:
                content = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                who = self._who()
                if who is None:
                    self._answer(401, {"errcode": "M_UNKNOWN_TOKEN", "error": "Unknown token"})
                    return
                device = who[1] or "token:" + self.headers["Authorization"]
                txn = self.path.rsplit("/", 1)[1]
                with synapse.lock:
                    synapse.puts += 1
                    what = synapse.put(synapse.puts)
                    if (device, txn) not in synapse.txns:
                        synapse.txns[device, txn] = f"$ev{len(synapse.events) + 1}"
                        synapse.events.append((device, txn, content))
                    event_id = synapse.txns[device, txn]
                if what == "stall":
                    synapse.release.wait(30)
                    self.close_connection = True
                    return
                if what == "drop":
                    self.close_connection = True
                    return
                self._answer(200, {"event_id": event_id})

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Synapse:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def bodies(self) -> Counter[str]:
        with self.lock:
            return Counter(str(content["body"]) for _, _, content in self.events)


TOKENS: dict[str, tuple[str, str | None]] = {
    "syt_old_device_token": ("@bot:localhost", "OLDDEVICE"),
    "syt_new_device_token": ("@bot:localhost", "NEWDEVICE"),
}
START = "2026-01-01 00:00"
NOW = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def matrix_project(
    make_project: MakeProject,
    homeserver: str,
    publish: str,
    *,
    room: str = "!room:localhost",
    item: str = "tip",
    count: int = 3,
) -> Path:
    channels = (
        "  room:\n    type: matrix\n"
        f"    homeserver: {homeserver}\n"
        "    access_token: ${MATRIX_TOKEN}\n"
        f"    room_id: '{room}'\n"
    )
    return make_project(
        config=config(channels, publish=publish),
        calendars={"main.yaml": every_minute(item, ["room"], START, count)},
        templates=TEMPLATES,
    )


def commcal_command() -> list[str]:
    exe = shutil.which("commcal") or str(Path(sys.executable).with_name("commcal"))
    if os.path.exists(exe):
        return [exe]
    return [sys.executable, "-c", "from commcal.cli import main; main()"]


def publish_process(root: Path, now: datetime, token: str) -> subprocess.Popen[str]:
    args = ["-C", str(root), "publish", "--now", now.isoformat(), "--format", "json"]
    return subprocess.Popen(
        [*commcal_command(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MATRIX_TOKEN": token},
    )


def killed_mid_send(root: Path, synapse: Synapse) -> None:
    """A `commcal publish` SIGKILLed while its first PUT has reached the homeserver, unanswered."""
    synapse.put = lambda number: "stall" if number == 1 else "ok"
    proc = publish_process(root, NOW, "syt_old_device_token")
    try:
        deadline = time.monotonic() + 30
        while not synapse.events and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert synapse.events, proc.communicate(timeout=5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    synapse.put = lambda number: "ok"


def resume(
    root: Path, token: str, synapse: Synapse, minutes: int = 1
) -> tuple[int, dict[str, Any]]:
    synapse.whoami = 0
    proc = publish_process(root, NOW + timedelta(minutes=minutes), token)
    out, err = proc.communicate(timeout=60)
    assert out, err
    return proc.returncode, json.loads(out)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_resend_after_a_crash_from_another_device_is_unknown_not_a_second_message(
    make_project: MakeProject,
) -> None:
    with Synapse(TOKENS) as synapse:
        root = matrix_project(make_project, synapse.url, "max_late: 1d, lease: 2s, retry_delay: 0")
        killed_mid_send(root, synapse)
        # The operator rotates the access token (a new login: a new device) before the resume.
        code, report = resume(root, "syt_new_device_token", synapse)
        # One message per delivery in the room: the one whose PUT arrived is not posted again.
        assert set(synapse.bodies().values()) == {1}
        assert len(synapse.events) == 3
        assert code == 1
        assert report["counts"] == {"unknown": 1, "sent": 2}
        [unknown] = [d for d in report["deliveries"] if d["state"] == "unknown"]
        assert "device OLDDEVICE of @bot:localhost" in unknown["detail"]
        assert "device NEWDEVICE of @bot:localhost" in unknown["detail"]
        assert "commcal resolve" in unknown["detail"]
        assert "--not-sent" in unknown["detail"]
        # The device is asked once per run, not once per send.
        assert synapse.whoami == 1
        # The next run says the same and posts nothing.
        code, report = resume(root, "syt_new_device_token", synapse)
        assert code == 1 and report["counts"].get("unknown") == 1
        assert len(synapse.events) == 3
        with sqlite3.connect(root / "state.db") as db:
            scopes = {s for (s,) in db.execute("SELECT send_scope FROM deliveries")}
        assert scopes == {
            "device OLDDEVICE of @bot:localhost",
            "device NEWDEVICE of @bot:localhost",
        }
        assert not any("syt_" in str(s) for s in scopes)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_a_resend_after_a_crash_from_the_same_device_reuses_the_txn_id(
    make_project: MakeProject,
) -> None:
    with Synapse(TOKENS) as synapse:
        root = matrix_project(make_project, synapse.url, "max_late: 1d, lease: 2s, retry_delay: 0")
        killed_mid_send(root, synapse)
        code, report = resume(root, "syt_old_device_token", synapse)
        assert code == 0, report
        assert report["counts"] == {"sent": 3}
        assert len(synapse.events) == 3 and set(synapse.bodies().values()) == {1}
        # The delivery in flight was resent with its txnId, and answered with the first event.
        assert synapse.puts == 1 + 3


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_kills_with_a_new_token_each_time_never_post_twice(make_project: MakeProject) -> None:
    """The issue's run (100 posts, 8 kills, 3 duplicates) made smaller: SIGKILL at random
    moments, each resume with another device's token."""
    import random

    tokens = {f"syt_device_{n}": ("@bot:localhost", f"DEVICE{n}") for n in range(5)}
    rng = random.Random(15)
    with Synapse(tokens) as synapse:
        synapse.put = lambda number: time.sleep(0.01) or "ok"  # type: ignore[func-returns-value]
        root = make_project(
            config=config(
                "  room:\n    type: matrix\n"
                f"    homeserver: {synapse.url}\n"
                "    access_token: ${MATRIX_TOKEN}\n"
                "    room_id: '!room:localhost'\n",
                publish="max_late: 1d, lease: 1s, retry_delay: 0",
            ),
            calendars={"main.yaml": every_minute("tip", ["room"], START, 60)},
            templates=TEMPLATES,
        )
        kills = 0
        for run in range(4):
            proc = publish_process(root, NOW + timedelta(minutes=run), f"syt_device_{run}")
            deadline = time.monotonic() + 30
            before = len(synapse.events)
            while len(synapse.events) < before + rng.randint(3, 12) and proc.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.005)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate(timeout=10)
        _, report = resume(root, "syt_device_4", synapse, minutes=10)
        counts = Counter(d["state"] for d in report["deliveries"])
        assert counts["sent"] + counts["already"] + counts["unknown"] == 60, report["counts"]
        # Never twice; each kill leaves at most the one send in flight to decide.
        assert set(synapse.bodies().values()) == {1}
        assert counts["unknown"] <= kills
        assert len(synapse.events) >= 60 - counts["unknown"]


def test_a_dropped_send_retried_from_another_device_is_unknown(
    make_project: MakeProject,
) -> None:
    from typer.testing import CliRunner

    from commcal.cli import app

    with Synapse(TOKENS) as synapse:
        # A retry_delay far over a minute: the run leaves the delivery `pending` to retry later.
        root = matrix_project(make_project, synapse.url, "max_late: 1d, retry_delay: 10m")
        synapse.put = lambda number: "drop" if number == 1 else "ok"
        runner = CliRunner()
        args = ["-C", str(root), "publish", "--format", "json", "--only", "tip"]
        first = runner.invoke(
            app, [*args, "--now", NOW.isoformat()], env={"MATRIX_TOKEN": "syt_old_device_token"}
        )
        counts = json.loads(first.stdout)["counts"]
        assert counts == {"pending": 1, "sent": 2}, first.stdout
        later = (NOW + timedelta(minutes=15)).isoformat()  # within the 30-min key window
        second = runner.invoke(
            app, [*args, "--now", later], env={"MATRIX_TOKEN": "syt_new_device_token"}
        )
        report = json.loads(second.stdout)
        assert second.exit_code == 1
        assert report["counts"] == {"unknown": 1, "already": 2}, second.stdout
        [unknown] = [d for d in report["deliveries"] if d["state"] == "unknown"]
        assert "OLDDEVICE" in unknown["detail"] and "NEWDEVICE" in unknown["detail"]
        assert len(synapse.events) == 3 and set(synapse.bodies().values()) == {1}


def test_idempotency_scope_is_the_device_asked_once(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(
        "/_matrix/client/v3/account/whoami", method="GET", headers=AUTH
    ).respond_with_json({"user_id": "@acme:matrix.org", "device_id": "ABCDEF"})
    mx = channel(httpserver)
    assert mx.idempotency_scope() == "device ABCDEF of @acme:matrix.org"
    assert mx.idempotency_scope() == "device ABCDEF of @acme:matrix.org"
    httpserver.check_assertions()


def test_idempotency_scope_without_a_device_is_a_hash_of_the_token(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/_matrix/client/v3/account/whoami").respond_with_json(
        {"user_id": "@bridge:matrix.org"}
    )
    scope = channel(httpserver).idempotency_scope()
    assert scope.startswith("token sha256:") and scope.endswith("of @bridge:matrix.org (no device)")
    assert "syt_" not in scope and "secret" not in scope


def test_idempotency_scope_errors_are_send_errors(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/_matrix/client/v3/account/whoami").respond_with_json(
        {"errcode": "M_UNKNOWN_TOKEN", "error": "Invalid access token passed."}, status=401
    )
    with pytest.raises(PermanentError, match="M_UNKNOWN_TOKEN") as caught:
        channel(httpserver).idempotency_scope()
    assert "syt_YWNtZQ_secret" not in str(caught.value)


def test_a_homeserver_that_cannot_say_the_device_gets_no_send(make_project: MakeProject) -> None:
    from typer.testing import CliRunner

    from commcal.cli import app

    with Synapse(TOKENS) as synapse:
        root = matrix_project(make_project, synapse.url, "max_late: 1d, retry_delay: 10m")
        # A token the homeserver does not know: whoami answers 401, so nothing is sent.
        result = CliRunner().invoke(
            app,
            ["-C", str(root), "publish", "--format", "json", "--now", NOW.isoformat()],
            env={"MATRIX_TOKEN": "syt_revoked_token"},
        )
        report = json.loads(result.stdout)
        assert result.exit_code == 1
        assert report["counts"] == {"failed": 3}
        assert all("M_UNKNOWN_TOKEN" in d["detail"] for d in report["deliveries"])
        assert "syt_revoked_token" not in result.stdout
        assert synapse.puts == 0


# ---- a real Synapse -----------------------------------------------------------------------------


class DropFirstPut(Proxy):
    """A loopback HTTP proxy to the homeserver that passes the first PUT on, then closes the
    connection without its answer: the message is in the room, the sender cannot know.
    `marker`: only the first PUT whose path holds it (a redaction, say) is dropped so."""

    def __init__(self, upstream: str, marker: str = "") -> None:
        self.puts = 0

        def fault(method: str, path: str, body: bytes) -> str | None:
            if method != "PUT" or marker not in path:
                return None
            self.puts += 1
            return DROP if self.puts == 1 else None

        super().__init__(upstream, fault)


def room_messages(homeserver: str, token: str, room: str) -> list[dict[str, Any]]:
    """The room's m.room.message events, oldest first, read back with GET /messages."""
    import requests

    answer = requests.get(
        f"{homeserver}/_matrix/client/v3/rooms/{room}/messages",
        params={"dir": "f", "limit": "1000"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    answer.raise_for_status()
    return [e for e in answer.json()["chunk"] if e.get("type") == "m.room.message"]


def room_bodies(homeserver: str, token: str, room: str) -> Counter[str]:
    return Counter(
        str(event["content"].get("body")) for event in room_messages(homeserver, token, room)
    )


def test_real_synapse_a_dropped_send_is_resent_by_its_device_and_unknown_from_another(
    make_project: MakeProject,
) -> None:
    from typer.testing import CliRunner

    from commcal.cli import app

    homeserver, first_token, room = real_synapse()
    _, second_token, _ = real_synapse()  # the same account logged in again: another device
    runner = CliRunner()

    def publish(root: Path, now: datetime, token: str) -> dict[str, Any]:
        result = runner.invoke(
            app,
            ["-C", str(root), "publish", "--format", "json", "--now", now.isoformat()],
            env={"MATRIX_TOKEN": token},
        )
        assert first_token not in result.output and second_token not in result.output
        report: dict[str, Any] = json.loads(result.stdout)
        return report

    later = NOW + timedelta(minutes=15)  # within the 30-minute key window
    for item, resume_token, expected in (
        ("same-device", first_token, "sent"),
        ("new-device", second_token, "unknown"),
    ):
        with DropFirstPut(homeserver) as proxy:
            root = matrix_project(
                make_project,
                proxy.url,
                "max_late: 1d, retry_delay: 10m",
                room=room,
                item=item,
                count=1,
            )
            assert publish(root, NOW, first_token)["counts"] == {"pending": 1}
            report = publish(root, later, resume_token)
            assert report["counts"] == {expected: 1}, report
        [body] = [b for b in room_bodies(homeserver, first_token, room) if item in b]
        assert room_bodies(homeserver, first_token, room)[body] == 1
        if expected == "unknown":
            detail = report["deliveries"][0]["detail"]
            assert "device" in detail and "commcal resolve" in detail
