"""`commcal plan --with-status` (commcal/queue.py): the plan joined with a real ledger that a
real `publish` filled, through loopback servers (a webhook receiver, aiosmtpd)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeProject
from publish_support import (
    TEMPLATES,
    Answer,
    Receiver,
    Request,
    config,
    dump,
    ledger_states,
    slack,
    webhook,
)
from typer.testing import CliRunner

from commcal.cli import app
from commcal.ledger import open_ledger
from commcal.project import load_project
from commcal.queue import read_queue, state_counts
from tests.test_community import ENV as MEMBER_ENV
from tests.test_community import Mailbox, newsletter_project
from tests.test_publish import cli

NOW = "2026-01-01T00:10:00Z"
FAST = "max_late: 1h, retry_delay: 0, lease: 5s, max_attempts: 1"
# A Slack webhook URL is a secret: its path is the token.
SLACK_TOKEN = "xoxsecretTOKEN0123456789"

CALENDAR = """\
items:
  - id: tip
    kind: post
    template: posts/unique
    channels: [hook, broken, chat]
    at: 2026-01-01 00:00
  - id: later
    kind: post
    template: posts/unique
    channels: [hook]
    at: 2026-01-01 12:00
"""


@pytest.fixture
def published(
    make_project: MakeProject, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, dict[str, str]]:
    """A project published once at NOW: tip sent on hook, failed on broken (HTTP 400), unknown
    on chat (a keyless channel whose answer timed out); later is still to come."""
    from commcal import http

    # A read timeout of 1 s: the chat answer (2.5 s) times out, the others (at once) do not,
    # even on a busy machine.
    monkeypatch.setattr(http, "new_session", lambda: http.TimeoutSession((2.0, 1.0)))

    def behave(request: Request) -> Answer:
        if request.path.startswith("/bad"):
            return Answer(400, b'{"error": "no such room"}')
        if request.path.startswith("/services"):
            return Answer(200, b"ok", delay=2.5)
        return Answer()

    receiver.behave = behave
    channels = (
        webhook("hook", receiver.url + "/ok")
        + webhook("broken", receiver.url + "/bad")
        + slack("chat", "CHAT_URL")
    )
    root = make_project(
        config=config(channels, publish=FAST),
        calendars={"main.yaml": CALENDAR},
        templates=TEMPLATES,
    )
    env = {"CHAT_URL": f"{receiver.url}/services/T0/B0/{SLACK_TOKEN}"}
    code, out, err = cli(root, "publish", "--now", NOW, env=env)
    assert code == 1, (out, err)  # one failed, one unknown
    assert sorted(ledger_states(root / "state.db").elements()) == ["failed", "sent", "unknown"]
    return root, env


def queue_json(root: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    code, out, err = cli(root, "plan", "--with-status", "--now", NOW, *args, "-f", "json", env=env)
    assert code == 0, (out, err)
    data: dict[str, Any] = json.loads(out)
    return data


def by_route(data: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["item"], d["channel"]): d for d in data["deliveries"]}


def test_the_queue_shows_sent_with_its_url_failed_unknown_and_next(
    published: tuple[Path, dict[str, str]], receiver: Receiver
) -> None:
    root, env = published
    data = queue_json(root, env)
    rows = by_route(data)
    assert sorted(rows) == [
        ("later", "hook"),
        ("tip", "broken"),
        ("tip", "chat"),
        ("tip", "hook"),
    ]
    sent = rows[("tip", "hook")]["status"]
    assert sent["state"] == "sent"
    assert re.fullmatch(re.escape(receiver.url) + r"/posts/\d+", sent["url"])
    assert sent["attempts"] == 1
    failed = rows[("tip", "broken")]["status"]
    assert failed["state"] == "failed"
    assert "no such room" in failed["last_error"]
    assert rows[("tip", "chat")]["status"]["state"] == "unknown"
    assert rows[("later", "hook")]["status"] == {
        "state": "next",
        "url": None,
        "remote_id": None,
        "attempts": 0,
        "last_error": None,
        "next_attempt_utc": None,
        "updated_utc": None,
        "members": None,
    }
    assert data["unplanned"] == []
    assert data["summary"]["states"] == {"unknown": 1, "failed": 1, "next": 1, "sent": 1}
    # The window starts at midnight today: the post of 00:00 is in it at 00:10.
    assert data["window"]["from"] == "2026-01-01T00:00:00Z"
    assert SLACK_TOKEN not in json.dumps(data)

    code, out, _ = cli(root, "plan", "--with-status", "--now", NOW, env=env)
    assert code == 0
    assert sent["url"] in out
    for word in ("sent", "failed", "unknown", "next", "no such room"):
        assert word in out
    assert "1 unknown, 1 failed, 1 next, 1 sent" in out
    assert SLACK_TOKEN not in out


def test_the_queue_at_80_columns_keeps_states_and_the_short_id_retry_takes(
    published: tuple[Path, dict[str, str]],
) -> None:
    root, env = published
    code, out, err = cli(root, "plan", "--with-status", "--now", NOW, env={**env, "COLUMNS": "80"})
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 80
    for word in ("sent", "failed", "unknown", "next"):
        assert re.search(rf"\b{word}\b", out), out
    short = re.search(r"\b([0-9a-f]{8}): ", out)
    assert short, out
    code, out, err = cli(root, "retry", short.group(1), "--now", NOW, env=env)
    assert code == 0, (out, err)
    assert "queued again" in out


def test_with_status_reads_the_ledger_and_never_writes_it(
    published: tuple[Path, dict[str, str]],
) -> None:
    root, env = published
    db = root / "state.db"
    before, rows = db.read_bytes(), dump(db)
    queue_json(root, env)
    cli(root, "plan", "--with-status", "--now", NOW, env=env)
    assert db.read_bytes() == before
    assert dump(db) == rows
    wal = root / "state.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0


def console_project(make_project: MakeProject) -> Path:
    """The calendar on one console channel, never published: no ledger."""
    return make_project(
        config=config("  hook:\n    type: console\n"),
        calendars={"main.yaml": CALENDAR.replace("[hook, broken, chat]", "[hook]")},
        templates=TEMPLATES,
    )


def test_with_no_ledger_yet_everything_is_next_and_no_ledger_is_made(
    make_project: MakeProject,
) -> None:
    root = console_project(make_project)
    data = queue_json(root, {}, "--now", "2025-12-31T00:00:00Z")
    assert [(d["item"], d["status"]["state"]) for d in data["deliveries"]] == [
        ("tip", "next"),
        ("later", "next"),
    ]
    assert data["summary"]["states"] == {"next": 2}
    code, out, err = cli(root, "plan", "--with-status", "--now", "2025-12-31T00:00:00Z")
    assert code == 0
    assert "2 next" in out
    # Said, so that a mistyped state: or --state does not pass for "nothing sent yet".
    assert f"no ledger at {root / 'state.db'}" in err
    assert "nothing is recorded as sent" in err
    assert not (root / "state.db").exists()
    assert list(root.rglob("*.db")) == []


def test_a_delivery_the_calendars_no_longer_plan_stays_in_the_queue(
    published: tuple[Path, dict[str, str]],
) -> None:
    root, env = published
    calendar = root / "calendars" / "main.yaml"
    calendar.write_text(CALENDAR.replace("[hook, broken, chat]", "[hook]").replace("tip", "tip-2"))
    data = queue_json(root, env)
    unplanned = {(d["item"], d["channel"]): d["status"]["state"] for d in data["unplanned"]}
    assert unplanned == {
        ("tip", "hook"): "sent",
        ("tip", "broken"): "failed",
        ("tip", "chat"): "unknown",
    }
    code, out, _ = cli(root, "plan", "--with-status", "--now", NOW, env=env)
    assert code == 0
    assert "no longer planned" in out


def test_filters_apply_to_the_ledger_rows_too(published: tuple[Path, dict[str, str]]) -> None:
    root, env = published
    (root / "calendars" / "main.yaml").write_text(CALENDAR.replace("id: tip", "id: gone"))
    data = queue_json(root, env, "--channel", "broken")
    assert [(d["item"], d["channel"]) for d in data["unplanned"]] == [("tip", "broken")]
    assert [(d["item"], d["channel"]) for d in data["deliveries"]] == [("gone", "broken")]


def test_newsletter_members_are_counted_per_occurrence_never_listed(
    make_project: MakeProject, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    root = newsletter_project(make_project, port)
    result = CliRunner().invoke(
        app, ["-C", str(root), "publish", "--now", "2026-12-01T08:01:00Z"], env=MEMBER_ENV
    )
    assert result.exit_code == 0, result.output
    assert len(box.received) == 3

    now = "2026-12-01T08:02:00Z"
    code, out, err = cli(
        root, "plan", "--with-status", "--now", now, "--days", "2", "-f", "json", env=MEMBER_ENV
    )
    assert code == 0, err
    data = json.loads(out)
    assert [
        (d["item"], d["status"]["state"], d["status"]["members"]) for d in data["deliveries"]
    ] == [
        ("letter-1", "sent", {"sent": 3}),
        ("letter-2", "next", {"next": 3}),
    ]
    assert data["summary"]["states"] == {"next": 3, "sent": 3}

    code, out, err = cli(root, "plan", "--with-status", "--now", now, "--days", "2", env=MEMBER_ENV)
    assert code == 0, err
    assert "3 sent" in out and "3 next" in out
    assert "@example" not in out  # members are counted, never listed

    # The library, for the HTML view: the same rows.
    project = load_project(root)
    from datetime import UTC, datetime

    start = datetime(2026, 12, 1, tzinfo=UTC)
    rows = read_queue(project, start, datetime(2026, 12, 3, tzinfo=UTC), now=start)
    assert [(r.item, r.counts) for r in rows] == [
        ("letter-1", {"sent": 3}),
        ("letter-2", {"next": 3}),
    ]
    assert state_counts(rows) == {"next": 3, "sent": 3}
    with open_ledger("sqlite:///state.db", project_dir=root, read_only=True) as ledger:
        assert sum(ledger.counts().values()) == 3


# -- status: local times, whole ids ------------------------------------------------------------


def test_status_shows_the_projects_local_time_and_utc_on_request(
    make_project: MakeProject, receiver: Receiver
) -> None:
    root = make_project(
        config=config(webhook("hook", receiver.url + "/ok"), publish=FAST).replace(
            "timezone: UTC", "timezone: Europe/Athens"
        ),
        calendars={
            "main.yaml": "items:\n  - {id: tip, kind: post, template: posts/unique,"
            " channels: [hook], at: '2026-01-01 02:00'}\n"
        },
        templates=TEMPLATES,
    )
    code, out, err = cli(root, "publish", "--now", NOW)
    assert code == 0, (out, err)
    code, out, _ = cli(root, "status")
    assert code == 0
    assert "due (Europe/Athens)" in out
    assert "2026-01-01 02:00" in out  # 00:00 UTC is 02:00 in Athens
    code, out, _ = cli(root, "status", "--utc")
    assert "due (UTC)" in out
    assert "2026-01-01 00:00" in out and "02:00" not in out
    (record_id,) = re.findall(r"\b[0-9a-f]{16}\b", out)
    code, out, _ = cli(root, "status", record_id)
    assert code == 0
    assert "at (Europe/Athens)" in out
    assert "due 2026-01-01 02:00 (Europe/Athens)" in out.replace("\n", " ")


@pytest.mark.parametrize("columns", ["40", "60", "80", "100"])
def test_status_ids_are_never_cut_and_retry_takes_them(
    published: tuple[Path, dict[str, str]], columns: str
) -> None:
    from commcal.deliveries import ID_LENGTH, MIN_ID_PREFIX

    root, env = published
    narrow = {**env, "COLUMNS": columns}

    def ids(out: str) -> list[str]:
        assert max(len(line) for line in out.splitlines()) <= int(columns), out
        cells = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]
        return [cell for cell in cells if cell]

    code, out, _ = cli(root, "status", env=narrow)
    assert code == 0
    shown = ids(out)
    assert len(shown) == 3, out
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in shown), out
    assert ID_LENGTH >= MIN_ID_PREFIX
    code, out, _ = cli(root, "status", "--only-state", "failed", env=narrow)
    (failed,) = ids(out)
    code, out, err = cli(root, "retry", failed, "--now", NOW, env=env)
    assert code == 0, err
    assert f"{failed} main/tip on broken: queued again" in out


def test_a_ledger_that_cannot_be_read_stops_with_2_and_one_json_document(
    make_project: MakeProject,
) -> None:
    root = console_project(make_project)
    (root / "state.db").write_bytes(b"not a database at all, just text" * 100)
    code, out, err = cli(root, "plan", "--with-status", "--now", NOW, "-f", "json")
    assert code == 2
    data = json.loads(out)
    assert data["deliveries"] == [] and data["window"] is None
    assert "state.db" in data["problems"][0]["message"]
    assert "state.db" in err
    assert (root / "state.db").read_bytes() == b"not a database at all, just text" * 100


def test_state_labels_read_as_words() -> None:
    from datetime import UTC, datetime

    from commcal.queue import QueueRow, state_label
    from commcal.timeutil import zone

    due = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    athens = zone("Europe/Athens")
    retry = datetime(2026, 12, 1, 12, 5, tzinfo=UTC)
    assert state_label(QueueRow("c", "i", "m", due, "pending", next_attempt=retry), athens) == (
        "retry 14:05"
    )
    assert state_label(QueueRow("c", "i", "m", due, "failed", attempts=3), athens) == (
        "failed (3 tries)"
    )
    assert state_label(QueueRow("c", "i", "m", due, "sent", attempts=1), athens) == "sent"
    members = QueueRow("c", "i", "m", due, "failed", counts={"sent": 120, "next": 3, "failed": 2})
    assert state_label(members, athens) == "2 failed, 3 next, 120 sent"
    assert state_counts([members, QueueRow("c", "j", "m", due, "sent")]) == {
        "failed": 2,
        "next": 3,
        "sent": 121,
    }
