"""`commcal publish` and its operating commands against a real HTTP receiver on loopback.

Each test writes a literal project, points its channels at a `Receiver` and checks what a user
sees: what reached the server, the command's output and exit code, and the ledger's states.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import MakeProject
from publish_support import (
    TEMPLATES,
    Answer,
    Receiver,
    Request,
    config,
    dump,
    every_minute,
    ledger_states,
    slack,
    webhook,
)
from typer.testing import CliRunner

from commcal.cli import app
from commcal.ledger import State, open_ledger
from commcal.project import load_project
from commcal.publish import publish

NOW = "2026-01-01T00:10:00Z"
WHEN = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
FAST = "max_late: 1h, retry_delay: 0, lease: 5s, max_attempts: 4"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def short_read_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 0.3 s read timeout, so a slow answer is a timeout within the test's time."""
    from commcal import http

    monkeypatch.setattr(http, "new_session", lambda: http.TimeoutSession((2.0, 0.3)))


def cli(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["-C", str(root), *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def project(make_project: MakeProject, channels: str, calendar: str, publish: str = FAST) -> Path:
    return make_project(
        config=config(channels, publish=publish),
        calendars={"main.yaml": calendar},
        templates=TEMPLATES,
    )


def status_json(root: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    code, out, _ = cli(root, "status", "--format", "json", "--limit", "1000", env=env)
    assert code == 0
    data = json.loads(out)
    return {row["id"]: row["state"] for row in data["deliveries"]}


def test_due_deliveries_are_sent_once_and_a_second_run_sends_nothing(
    make_project: MakeProject, receiver: Receiver
) -> None:
    root = project(
        make_project,
        webhook("hook", receiver.url + "/in"),
        every_minute("tip", ["hook"], "2026-01-01 00:00", 5),
    )
    code, out, err = cli(root, "publish", "--now", NOW)
    assert code == 0, err
    assert "5 sent" in out
    assert len(receiver.requests) == 5
    assert len(receiver.keys()) == 5
    with open_ledger("sqlite:///state.db", project_dir=root) as ledger:
        records = ledger.records()
        assert {r.state for r in records} == {State.SENT}
        # The remote id and URL the receiver answered are recorded.
        assert all(r.remote_id and r.remote_id.startswith("r") for r in records)
        assert all(r.url and r.url.startswith(receiver.url + "/posts/") for r in records)
        # The key the server saw is the delivery id.
        assert set(receiver.keys()) == {r.id for r in records}

    code, out, err = cli(root, "publish", "--now", NOW, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert report["counts"] == {"already": 5}
    assert len(receiver.requests) == 5


def test_late_deliveries_expire_and_drafts_are_skipped(
    make_project: MakeProject, receiver: Receiver
) -> None:
    calendar = every_minute("tip", ["hook"], "2026-01-01 00:00", 3) + (
        "  - id: idea\n    kind: post\n    draft: true\n    channels: [hook]\n"
        "    template: posts/tip\n    at: '2026-01-01 02:00'\n"
    )
    root = project(
        make_project,
        webhook("hook", receiver.url),
        calendar,
        publish="max_late: 30m, retry_delay: 0",
    )
    code, out, err = cli(root, "publish", "--now", "2026-01-01T02:00:00Z")
    assert code == 0, err
    assert "3 expired" in out and "1 skipped" in out
    assert receiver.requests == []
    assert ledger_states(root / "state.db") == {"expired": 3, "skipped": 1}
    assert "expired" in err and "later than publish.max_late" in err


def test_a_permanent_error_fails_at_once_with_the_reason_and_other_channels_go_out(
    make_project: MakeProject, receiver: Receiver
) -> None:
    def behave(request: Request) -> Answer:
        if request.path == "/broken":
            return Answer(422, b'{"error": "text field is not allowed here"}')
        return Answer()

    receiver.behave = behave
    root = project(
        make_project,
        webhook("good", receiver.url + "/good") + webhook("bad", receiver.url + "/broken"),
        every_minute("tip", ["good", "bad"], "2026-01-01 00:00", 2),
    )
    code, out, err = cli(root, "publish", "--now", NOW)
    assert code == 1
    assert "2 sent" in out and "2 failed" in out
    assert "HTTP 422: text field is not allowed here" in err
    # No retry of a permanent error: one request per failing delivery.
    assert sum(1 for r in receiver.requests if r.path == "/broken") == 2
    with open_ledger("sqlite:///state.db", project_dir=root) as ledger:
        by_channel = {(r.channel, r.state) for r in ledger.records()}
        assert by_channel == {("good", State.SENT), ("bad", State.FAILED)}
        failed = ledger.records(states=[State.FAILED])
        assert all("text field is not allowed here" in (r.last_error or "") for r in failed)
        assert all(len(ledger.attempts(r.id)) >= 1 for r in failed)


def test_transient_errors_are_retried_until_sent_with_each_attempt_recorded(
    make_project: MakeProject, receiver: Receiver
) -> None:
    seen: dict[str, int] = {}

    def behave(request: Request) -> Answer:
        seen[request.key] = seen.get(request.key, 0) + 1
        if seen[request.key] <= 2:
            return Answer(500, b'{"error": "database busy"}')
        return Answer()

    receiver.behave = behave
    root = project(
        make_project,
        webhook("hook", receiver.url),
        every_minute("tip", ["hook"], "2026-01-01 00:00", 2),
    )
    code, out, err = cli(root, "publish", "--now", NOW)
    assert code == 0, err
    assert "2 sent" in out
    assert sorted(seen.values()) == [3, 3]
    # The same Idempotency-Key on every retry.
    assert len(receiver.keys()) == 2
    with open_ledger("sqlite:///state.db", project_dir=root) as ledger:
        for record in ledger.records():
            assert record.state == State.SENT
            attempts = ledger.attempts(record.id)
            retries = [a for a in attempts if a.error and "database busy" in a.error]
            assert len(retries) == 2, attempts
            assert attempts[-1].event == "sent"


def test_retry_after_from_a_429_is_honoured(make_project: MakeProject, receiver: Receiver) -> None:
    def behave(request: Request) -> Answer:
        if len(receiver.requests) == 1:
            return Answer(429, b'{"error": "slow down"}', {"Retry-After": "1"})
        return Answer()

    receiver.behave = behave
    root = project(
        make_project,
        webhook("hook", receiver.url),
        every_minute("tip", ["hook"], "2026-01-01 00:00", 1),
    )
    code, _out, err = cli(root, "publish", "--now", NOW)
    assert code == 0, err
    first, second = receiver.requests
    assert first.key == second.key
    # retry_delay is 0: only the server's Retry-After explains the wait.
    assert second.arrived - first.arrived >= 0.95


def test_exhausted_attempts_fail_then_retry_failed_sends_at_the_next_publish(
    make_project: MakeProject, receiver: Receiver
) -> None:
    receiver.behave = lambda request: Answer(503, b'{"error": "maintenance"}')
    root = project(
        make_project,
        webhook("hook", receiver.url),
        every_minute("tip", ["hook"], "2026-01-01 00:00", 1),
        publish="max_late: 1h, retry_delay: 0, max_attempts: 3",
    )
    code, out, err = cli(root, "publish", "--now", NOW)
    assert code == 1
    assert "1 failed" in out
    assert "maintenance" in err and "after 3 attempts" in err
    assert len(receiver.requests) == 3
    assert ledger_states(root / "state.db") == {"failed": 1}

    # A failed delivery stays failed: the next run does not send it.
    code, out, err = cli(root, "publish", "--now", NOW)
    assert len(receiver.requests) == 3

    receiver.behave = lambda request: Answer()
    code, out, err = cli(root, "retry", "--failed", "--now", NOW)
    assert code == 0, err
    assert "1 delivery queued" in out
    code, out, err = cli(root, "publish", "--now", NOW)
    assert code == 0, err
    assert "1 sent" in out
    assert len(receiver.requests) == 4
    assert ledger_states(root / "state.db") == {"sent": 1}


def test_dry_run_sends_nothing_and_creates_no_ledger(
    make_project: MakeProject, receiver: Receiver
) -> None:
    root = project(
        make_project,
        webhook("hook", receiver.url),
        every_minute("tip", ["hook"], "2026-01-01 00:00", 3),
    )
    code, out, err = cli(root, "publish", "--dry-run", "--now", NOW)
    assert code == 0, err
    assert "3 would-send" in out
    assert receiver.requests == []
    assert not (root / "state.db").exists()


def telegram(name: str, url: str) -> str:
    return (
        f"  {name}:\n    type: telegram\n    token: ${{BOT_TOKEN}}\n    chat_id: 42\n"
        f"    api_url: {url}\n"
    )


NO_KEYS = [
    pytest.param("telegram", id="telegram"),
    pytest.param("slack", id="slack"),
]


@pytest.mark.parametrize("kind", NO_KEYS)
@pytest.mark.usefixtures("short_read_timeout")
def test_a_read_timeout_on_a_channel_without_keys_is_unknown_until_resolved(
    make_project: MakeProject, receiver: Receiver, kind: str
) -> None:
    ok = Answer(body=b"ok")
    if kind == "telegram":
        ok = Answer(body=b'{"ok": true, "result": {"message_id": 7, "chat": {"id": 42}}}')
    receiver.behave = lambda request: Answer(ok.status, ok.body, delay=1.0)
    env = {"CHAT_URL": receiver.url + "/services/T0/B0/xyz", "BOT_TOKEN": "123:abc"}
    channel = slack("chat", "CHAT_URL") if kind == "slack" else telegram("chat", receiver.url)
    root = project(
        make_project,
        channel,
        every_minute("tip", ["chat"], "2026-01-01 00:00", 2),
    )
    code, out, err = cli(root, "publish", "--now", NOW, env=env)
    assert code == 1
    assert "2 unknown" in out, (out, err)
    assert "commcal resolve" in err
    # Not retried: a repeated POST would post twice.
    assert len(receiver.requests) == 2
    states = status_json(root, env)
    assert set(states.values()) == {"unknown"}, dump(root / "state.db")

    # The next run leaves unknown deliveries alone.
    receiver.behave = lambda request: ok
    code, out, err = cli(root, "publish", "--now", NOW, env=env)
    assert len(receiver.requests) == 2

    first, second = sorted(states)
    code, out, err = cli(root, "resolve", first, "--not-sent", "--now", NOW, env=env)
    assert code == 0, err
    code, out, err = cli(root, "resolve", second, "--sent", "https://chat.example/p/1", env=env)
    assert code == 0, err
    code, out, err = cli(root, "publish", "--now", NOW, env=env)
    assert code == 0, err
    assert len(receiver.requests) == 3
    assert status_json(root, env) == {first: "sent", second: "sent"}
    with open_ledger("sqlite:///state.db", project_dir=root) as ledger:
        record = ledger.get(second)
        assert record is not None and record.url == "https://chat.example/p/1"


MASTO_STATUS = b'{"id": "7", "url": "https://masto.example/@us/7"}'


def mastodon_project(make_project: MakeProject, receiver: Receiver, retry_delay: str) -> Path:
    """One post due on a Mastodon channel (token in $MT) that `receiver` answers."""
    channel = f"  masto:\n    type: mastodon\n    instance: {receiver.url}\n    token: ${{MT}}\n"
    return project(
        make_project,
        channel,
        every_minute("tip", ["masto"], "2026-01-01 00:00", 1),
        publish=f"max_late: 6h, retry_delay: {retry_delay}, lease: 5s, max_attempts: 4",
    )


@pytest.mark.usefixtures("short_read_timeout")
@pytest.mark.parametrize(
    ("retry_delay", "requests", "state"), [("0", 2, "sent"), ("3h", 1, "unknown")]
)
def test_a_timed_out_mastodon_post_is_retried_only_while_mastodon_remembers_its_key(
    make_project: MakeProject, receiver: Receiver, retry_delay: str, requests: int, state: str
) -> None:
    """Mastodon keeps an Idempotency-Key for an hour: a retry within it is safe, one after it
    could post twice, so it is left `unknown` for a person to check."""
    receiver.behave = lambda request: Answer(
        body=MASTO_STATUS, delay=1.0 if len(receiver.requests) == 1 else 0.0
    )
    root = mastodon_project(make_project, receiver, retry_delay)
    code, out, err = cli(root, "publish", "--now", NOW, env={"MT": "token-1"})
    assert len(receiver.requests) == requests, out
    assert {r.headers["Idempotency-Key"] for r in receiver.requests} == set(
        status_json(root, {"MT": "token-1"})
    )
    assert set(status_json(root, {"MT": "token-1"}).values()) == {state}
    assert code == (0 if state == "sent" else 1), (out, err)


@pytest.mark.usefixtures("short_read_timeout")
def test_a_timed_out_mastodon_post_left_for_a_later_run_is_not_repeated_after_the_hour(
    make_project: MakeProject, receiver: Receiver
) -> None:
    """The retry after a timeout is due in 20-40 minutes, inside Mastodon's hour, so it is left
    pending for a later run; when that run only comes two hours later (the host was down), the
    post may be on Mastodon and its key forgotten: unknown, not posted again."""
    receiver.behave = lambda request: Answer(body=MASTO_STATUS, delay=1.0)
    root = mastodon_project(make_project, receiver, "40m")
    env = {"MT": "token-1"}
    code, out, err = cli(root, "publish", "--now", NOW, env=env)
    assert len(receiver.requests) == 1
    assert set(status_json(root, env).values()) == {"pending"}, (out, err)
    code, out, err = cli(root, "publish", "--now", "2026-01-01T02:10:00Z", env=env)
    assert code == 1, (out, err)
    assert len(receiver.requests) == 1
    assert set(status_json(root, env).values()) == {"unknown"}


def test_an_error_while_recording_sends_stops_the_run_and_the_next_run_finishes(
    make_project: MakeProject, receiver: Receiver
) -> None:
    """Webhook sends are recorded by a second thread. When reporting an outcome fails there, the
    run must stop with that error, not wait forever for room to record; nothing is lost."""
    import threading

    root = project(
        make_project,
        webhook("hook", receiver.url),
        every_minute("tip", ["hook"], "2026-01-01 00:00", 40),
    )

    def broken(outcome: object) -> None:
        raise RuntimeError("the progress display broke")

    failure: list[BaseException] = []

    def run() -> None:
        try:
            publish(load_project(root), now=WHEN + timedelta(minutes=40), on_outcome=broken)
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "publish hung after the recorder failed"
    assert [str(e) for e in failure] == ["the progress display broke"]
    # The next run, once the 5 s leases are over, sends the rest; repeats carry the same key.
    report = publish(load_project(root), now=WHEN + timedelta(minutes=40, seconds=10))
    assert report.ok
    assert ledger_states(root / "state.db") == {"sent": 40}
    assert len(receiver.keys()) == 40


def test_status_json_shows_every_state(make_project: MakeProject, receiver: Receiver) -> None:
    receiver.behave = lambda request: (
        Answer(400, b'{"error": "nope"}') if request.path == "/bad" else Answer()
    )
    root = project(
        make_project,
        webhook("good", receiver.url) + webhook("bad", receiver.url + "/bad"),
        every_minute("tip", ["good", "bad"], "2026-01-01 00:00", 1),
    )
    cli(root, "publish", "--now", NOW)
    states = status_json(root)
    assert sorted(states.values()) == ["failed", "sent"]


def test_the_secret_appears_nowhere(
    make_project: MakeProject, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-hook-value-9f8e7d"
    echoed: list[bytes] = []

    def behave(request: Request) -> Answer:
        # A careless server that repeats the request's headers, and the shared secret it
        # checked the signature with, in its error.
        error = f"bad request, headers were {request.headers}; signed with {secret}?"
        body = json.dumps({"error": error}).encode()
        echoed.append(body)
        return Answer(400 if len(receiver.requests) % 2 else 500, body)

    receiver.behave = behave
    auth = "    secret: ${HOOK_SECRET}\n"
    root = project(
        make_project,
        webhook("hook", receiver.url, auth),
        every_minute("tip", ["hook"], "2026-01-01 00:00", 4),
        publish="max_late: 1h, retry_delay: 0, max_attempts: 2",
    )
    env = {"HOOK_SECRET": secret}
    code, out, err = cli(root, "publish", "--now", NOW, env=env)
    assert code == 1
    assert any(secret.encode() in body for body in echoed)
    assert all("X-Commcal-Signature" in r.headers for r in receiver.requests)
    assert secret not in out and secret not in err
    for fmt in ("json", "table"):
        _, out, err = cli(root, "status", "--format", fmt, env=env)
        assert secret not in out + err
    text = dump(root / "state.db")
    assert "bad request" in text
    assert secret not in text
    assert secret.encode() not in (root / "state.db").read_bytes()

    # The library report too.
    monkeypatch.setenv("HOOK_SECRET", secret)
    # A second ledger for the same project: sending again must be asked for (--catch-up).
    report = publish(load_project(root), now=WHEN, state="sqlite:///other.db", catch_up=True)
    assert report.outcomes
    assert all(secret not in o.detail for o in report.outcomes)


def test_publish_goes_through_the_proxy_the_environment_names(
    make_project: MakeProject, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """commcal reads HTTP_PROXY / NO_PROXY once per host rather than per request (a speed-up):
    the proxy must still be used for every request, and NO_PROXY still honoured."""
    monkeypatch.setenv("HTTP_PROXY", receiver.url)
    for name in ("NO_PROXY", "no_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    root = project(
        make_project,
        webhook("far", "http://hooks.example.invalid/in"),
        every_minute("tip", ["far"], "2026-01-01 00:00", 3),
    )
    assert publish(load_project(root), now=WHEN).ok
    # Through a proxy, the request line carries the whole URL.
    assert [r.path for r in receiver.requests] == ["http://hooks.example.invalid/in"] * 3
    monkeypatch.setenv("NO_PROXY", "hooks.example.invalid")
    receiver.clear()
    root = project(
        make_project,
        webhook("far", "http://hooks.example.invalid/in"),
        every_minute("tip", ["far"], "2026-01-01 00:00", 1),
    )
    report = publish(load_project(root), now=WHEN)
    assert receiver.requests == []  # not through the proxy: the made-up host cannot be reached
    assert report.count("sent") == 0
