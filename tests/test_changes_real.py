"""`commcal retract` and `commcal amend` against the real servers on loopback: a Synapse
homeserver (tests/real_servers.py real_synapse) and, where it is wired, a Bluesky PDS.

What is asserted is what the servers hold afterwards, read back through their own APIs: the
m.replace event with its m.new_content, the redacted event, the record gone from listRecords.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from conftest import MakeProject
from real_servers import real_synapse
from test_channel_matrix import DropFirstPut
from typer.testing import CliRunner

from commcal.cli import app

NOW = "2026-01-01T09:05:00Z"


@pytest.fixture(scope="module")
def synapse() -> tuple[str, str, str]:
    """real_synapse() once for this module's tests (they share its room; each finds its own
    events by id). When the homeserver refuses the script's createRoom (429 M_LIMIT_EXCEEDED:
    several test runs share the account's room-creation budget), the same account logs in and
    creates its room here, waiting as long as Synapse's retry_after_ms says."""
    import time

    import requests

    try:
        return real_synapse()
    except AssertionError as exc:
        if "room_id" not in str(exc):
            raise
    homeserver = "http://127.0.0.1:8008"  # synapse.sh's server and account
    login = requests.post(
        f"{homeserver}/_matrix/client/v3/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "bot"},
            "password": "botpass123",
        },
        timeout=30,
    ).json()
    token = login["access_token"]
    deadline = time.monotonic() + 300
    while True:
        answer = requests.post(
            f"{homeserver}/_matrix/client/v3/createRoom",
            json={"name": "retract tests"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ).json()
        if "room_id" in answer:
            return homeserver, token, answer["room_id"]
        assert answer.get("errcode") == "M_LIMIT_EXCEEDED", answer
        assert time.monotonic() < deadline, "Synapse kept refusing to create a room"
        time.sleep(answer.get("retry_after_ms", 5000) / 1000 + 0.5)


def calendar(word: str) -> str:
    return (
        "vars: {day: " + word + "}\n"
        "items:\n"
        "  - id: meetup\n"
        "    kind: post\n"
        "    channels: [room]\n"
        "    template: posts/meetup\n"
        "    at: 2026-01-01 09:00\n"
    )


def matrix_project(make_project: MakeProject, homeserver: str, room: str) -> Path:
    config = (
        "timezone: UTC\nlocale: en\nstate: sqlite:///state.db\n"
        "publish: {max_late: 1h, retry_delay: 0, lease: 5s, max_attempts: 2}\n"
        "channels:\n  room:\n    type: matrix\n"
        f"    homeserver: {homeserver}\n    access_token: ${{MATRIX_TOKEN}}\n"
        f"    room_id: '{room}'\n"
    )
    return make_project(
        config=config,
        calendars={"main.yaml": calendar("Monday")},
        templates={"posts/meetup.j2": "The meetup is on {{ day }}\n"},
    )


def run(root: Path, token: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["-C", str(root), *args], env={"MATRIX_TOKEN": token})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert token not in result.output
    return result.exit_code, result.stdout, result.stderr


def sent(root: Path, token: str) -> dict[str, Any]:
    code, _, err = run(root, token, "publish", "--now", NOW)
    assert code == 0, err
    (row,) = json.loads(run(root, token, "status", "--format", "json")[1])["deliveries"]
    assert row["state"] == "sent"
    return dict(row)


def client(homeserver: str, token: str, path: str, **params: str) -> dict[str, Any]:
    import requests

    answer = requests.get(
        f"{homeserver}/_matrix/client/v3{path}",
        params=params,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    answer.raise_for_status()
    found: dict[str, Any] = answer.json()
    return found


def room_events(homeserver: str, token: str, room: str) -> list[dict[str, Any]]:
    chunk = client(homeserver, token, f"/rooms/{quote(room)}/messages", dir="b", limit="1000")[
        "chunk"
    ]
    return list(chunk)


def replacements(events: list[dict[str, Any]], original: str) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if e.get("type") == "m.room.message"
        and (e["content"].get("m.relates_to") or {}).get("event_id") == original
    ]


def test_real_synapse_amend_is_an_m_replace_and_retract_redacts(
    make_project: MakeProject, synapse: tuple[str, str, str]
) -> None:
    homeserver, token, room = synapse
    root = matrix_project(make_project, homeserver, room)
    row = sent(root, token)
    original = row["remote_id"]
    (root / "calendars" / "main.yaml").write_text(calendar("Tuesday"), encoding="utf-8")

    code, out, err = run(root, token, "amend", row["id"], "--yes")

    assert code == 0, err
    assert out.startswith(
        "--- as room has it\n+++ amended\n@@ -1 +1 @@\n"
        "-The meetup is on Monday\n+The meetup is on Tuesday\n"
    )
    (edit,) = replacements(room_events(homeserver, token, room), original)
    assert edit["content"] == {
        "msgtype": "m.text",
        "body": "* The meetup is on Tuesday",
        "m.new_content": {
            "msgtype": "m.text",
            "body": "The meetup is on Tuesday",
            "m.mentions": {},
        },
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
        "m.mentions": {},
    }
    code, out, _ = run(root, token, "status", row["id"], "--format", "json")
    (change,) = json.loads(out)["changes"]
    assert change["remote_id"] == edit["event_id"]

    code, out, err = run(root, token, "retract", row["id"], "--reason", "cancelled", "--yes")

    assert code == 0, err
    event = client(homeserver, token, f"/rooms/{quote(room)}/event/{quote(original)}")
    assert event["content"] == {}  # redacted: the server keeps no content
    assert event["unsigned"]["redacted_because"]["content"]["reason"] == "cancelled"


def through(root: Path, homeserver: str) -> None:
    """Point the project's Matrix channel at `homeserver` (a proxy, or the server itself)."""
    path = root / "commcal.yaml"
    lines = [
        f"    homeserver: {homeserver}" if line.startswith("    homeserver: ") else line
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_real_synapse_an_interrupted_redaction_and_edit_are_deduplicated_by_txn_id(
    make_project: MakeProject, synapse: tuple[str, str, str]
) -> None:
    homeserver, token, room = synapse
    root = matrix_project(make_project, homeserver, room)
    row = sent(root, token)
    original = row["remote_id"]
    (root / "calendars" / "main.yaml").write_text(calendar("Friday"), encoding="utf-8")

    # Each proxy passes the first request of its kind on to Synapse and drops the answer: the
    # change is made, commcal cannot know. The next call repeats it under the same txnId.
    for marker, command in (("/send/", "amend"), ("/redact/", "retract")):
        with DropFirstPut(homeserver, marker=marker) as proxy:
            through(root, proxy.url)
            code, _, err = run(root, token, command, row["id"], "--yes")
            assert code == 1
            assert "may or may not have been done" in err
            assert proxy.puts == 1
            code, _, err = run(root, token, command, row["id"], "--yes")
            assert code == 0, err
            assert "took up change" in err
        through(root, homeserver)

    events = room_events(homeserver, token, room)
    # One edit and one redaction in the room, though each request went out twice.
    assert len(replacements(events, original)) == 1
    redacted = [
        e.get("redacts") or e["content"].get("redacts")
        for e in events
        if e.get("type") == "m.room.redaction"
    ]
    assert redacted.count(original) == 1
    with sqlite3.connect(root / "state.db") as conn:
        rows = list(conn.execute("SELECT change, action, phase FROM post_changes ORDER BY seq"))
    assert rows == [
        (1, "amended", "begun"),
        (1, "amended", "done"),
        (2, "retracted", "begun"),
        (2, "retracted", "done"),
    ]


def test_real_pds_retract_deletes_the_record_and_amend_says_bluesky_has_no_edits(
    make_project: MakeProject,
) -> None:
    from real_servers import real_pds

    account = real_pds()
    config = (
        "timezone: UTC\nlocale: en\nstate: sqlite:///state.db\n"
        "publish: {max_late: 1h, retry_delay: 0, lease: 5s, max_attempts: 2}\n"
        "channels:\n  room:\n    type: bluesky\n"
        f"    service: {account.service}\n    handle: {account.handle}\n"
        "    app_password: ${MATRIX_TOKEN}\n"
    )
    root = make_project(
        config=config,
        calendars={"main.yaml": calendar("Monday")},
        templates={"posts/meetup.j2": "The meetup is on {{ day }}\n"},
    )
    row = sent(root, account.password)
    (record,) = account.posts()
    assert record["uri"] == row["remote_id"]
    assert record["value"]["text"] == "The meetup is on Monday"

    (root / "calendars" / "main.yaml").write_text(calendar("Tuesday"), encoding="utf-8")
    code, _, err = run(root, account.password, "amend", row["id"], "--yes")
    assert code == 1
    assert "Bluesky posts cannot be edited" in err
    assert account.posts()[0]["value"]["text"] == "The meetup is on Monday"

    code, out, err = run(root, account.password, "retract", row["id"], "--yes")
    assert code == 0, err
    assert out == f"{row['id']}: retracted from room\n"
    assert account.posts() == []
    # Again: nothing asked of the PDS, nothing new recorded.
    code, out, _ = run(root, account.password, "retract", row["id"], "--yes")
    assert code == 0
    assert "already retracted" in out
