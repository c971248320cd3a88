"""Matrix rooms as they are: encrypted rooms refused, native polls, mentions as pills.

Against the REAL Synapse (tests/real_servers.py real_synapse(): a fresh login and room per call)
where the homeserver's own behaviour is the point, and a loopback pytest-httpserver elsewhere.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import MakeProject
from publish_support import config
from pytest_httpserver import HTTPServer
from real_servers import real_synapse
from typer.testing import CliRunner

from commcal.channels.base import EnvRef, Message, PermanentError
from commcal.channels.matrix import MatrixChannel
from commcal.cli import app

ROOM = "!room:example.org"
STATE = f"/_matrix/client/v3/rooms/{ROOM}/state/m.room.encryption/"
SEND = f"/_matrix/client/v3/rooms/{ROOM}/send/"
NOW = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
MEGOLM = {"algorithm": "m.megolm.v1.aes-sha2"}


def channel(server: HTTPServer, room: str = ROOM) -> MatrixChannel:
    settings = {
        "homeserver": server.url_for("/").rstrip("/"),
        "access_token": EnvRef("${MATRIX_TOKEN}"),
        "room_id": room,
    }
    return MatrixChannel("mx", settings, env={"MATRIX_TOKEN": "syt_token_1234"})


def sends(server: HTTPServer) -> list[Any]:
    return [entry for entry, _ in server.log if "/send/" in entry.path]


# -- encrypted rooms --------------------------------------------------------------------------


def test_an_encrypted_room_is_refused_and_asked_about_once(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(STATE, method="GET").respond_with_json(MEGOLM)
    mx = channel(httpserver)
    for key in ("k1", "k2"):
        with pytest.raises(PermanentError, match="end-to-end encrypted") as caught:
            mx.send(Message("mx", "matrix", "hello"), key)
    assert "unencrypted room" in str(caught.value)
    assert sends(httpserver) == []
    httpserver.check_assertions()  # the oneshot answered once: the second send did not ask


def test_a_room_without_encryption_state_is_posted_to(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(STATE, method="GET").respond_with_json(
        {"errcode": "M_NOT_FOUND", "error": "Event not found."}, status=404
    )
    httpserver.expect_request(SEND + "m.room.message/k1", method="PUT").respond_with_json(
        {"event_id": "$e1"}
    )
    receipt = channel(httpserver).send(Message("mx", "matrix", "hello"), "k1")
    assert receipt.remote_id == "$e1"


def test_a_failing_state_lookup_fails_the_send_without_posting(httpserver: HTTPServer) -> None:
    # 403: the account is not in the room. Not "unencrypted": nothing is sent.
    httpserver.expect_request(STATE, method="GET").respond_with_json(
        {"errcode": "M_FORBIDDEN", "error": "User not in room"}, status=403
    )
    with pytest.raises(PermanentError, match="M_FORBIDDEN"):
        channel(httpserver).send(Message("mx", "matrix", "hello"), "k1")
    assert sends(httpserver) == []


def synapse_room(homeserver: str, token: str, *, encrypted: bool) -> str:
    body: dict[str, Any] = {"name": "commcal test"}
    if encrypted:
        body["initial_state"] = [{"type": "m.room.encryption", "state_key": "", "content": MEGOLM}]
    answer = requests.post(
        f"{homeserver}/_matrix/client/v3/createRoom",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    answer.raise_for_status()
    return str(answer.json()["room_id"])


def room_events(homeserver: str, token: str, room: str) -> list[dict[str, Any]]:
    answer = requests.get(
        f"{homeserver}/_matrix/client/v3/rooms/{room}/messages",
        params={"dir": "b", "limit": "100"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    answer.raise_for_status()
    return list(answer.json()["chunk"])


def synapse_project(make_project: MakeProject, homeserver: str, room: str, item: str) -> Path:
    channels = (
        "  room:\n    type: matrix\n"
        f"    homeserver: {homeserver}\n"
        "    access_token: ${MATRIX_TOKEN}\n"
        f"    room_id: '{room}'\n"
    )
    return make_project(
        config=config(channels, publish="max_late: 1d"),
        calendars={"main.yaml": item},
        templates={"posts/hello.j2": "Καλημέρα from {{ item.id }}\n"},
    )


POST_ITEM = (
    "items:\n  - id: hello\n    channels: [room]\n    template: posts/hello\n"
    "    at: 2026-01-01 08:59\n"
)


def test_real_synapse_publish_refuses_an_encrypted_room_and_posts_nothing(
    make_project: MakeProject,
) -> None:
    homeserver, token, _ = real_synapse()
    room = synapse_room(homeserver, token, encrypted=True)
    root = synapse_project(make_project, homeserver, room, POST_ITEM)
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["-C", str(root), "publish", "--format", "json", "--now", NOW.isoformat()],
        env={"MATRIX_TOKEN": token},
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["counts"] == {"failed": 1}, report
    detail = report["deliveries"][0]["detail"]
    assert "end-to-end encrypted" in detail and "commcal cannot encrypt" in detail
    assert token not in result.output
    assert [e for e in room_events(homeserver, token, room) if e["type"] == "m.room.message"] == []

    test = runner.invoke(
        app, ["-C", str(root), "channels", "test", "room"], env={"MATRIX_TOKEN": token}
    )
    assert test.exit_code == 1, test.output
    assert "end-to-end encrypted" in test.output


def test_real_synapse_an_unencrypted_room_is_posted_to(make_project: MakeProject) -> None:
    homeserver, token, room = real_synapse()
    root = synapse_project(make_project, homeserver, room, POST_ITEM)
    result = CliRunner().invoke(
        app,
        ["-C", str(root), "publish", "--format", "json", "--now", NOW.isoformat()],
        env={"MATRIX_TOKEN": token},
    )
    assert result.exit_code == 0, result.output
    bodies = [
        e["content"]["body"]
        for e in room_events(homeserver, token, room)
        if e["type"] == "m.room.message"
    ]
    assert bodies == ["Καλημέρα from hello"]
