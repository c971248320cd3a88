"""`commcal pull` of a Matrix message on the real Synapse (tests/real_servers.py): a post goes
out through `commcal publish`, a second member of the room (`matrix_member`) reacts and answers
in its thread through the client API, the team answers too, and `commcal pull` shows exactly
those."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

import requests
from conftest import MakeProject
from publish_support import TEMPLATES, config, every_minute
from real_servers import matrix_member, real_synapse
from typer.testing import CliRunner

from commcal.cli import app
from commcal.ledger import open_ledger


def client(homeserver: str, token: str, method: str, path: str, body: Any = None) -> Any:
    answer = requests.request(
        method,
        f"{homeserver}/_matrix/client/v3{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    answer.raise_for_status()
    return answer.json()


def send(homeserver: str, token: str, room: str, kind: str, content: dict[str, Any]) -> str:
    path = f"/rooms/{quote(room)}/send/{kind}/{uuid.uuid4().hex}"
    return str(client(homeserver, token, "PUT", path, content)["event_id"])


def in_thread(root: str, text: str, answering: str | None = None) -> dict[str, Any]:
    """A threaded reply (https://spec.matrix.org/v1.13/client-server-api/#threading)."""
    relation: dict[str, Any] = {"rel_type": "m.thread", "event_id": root}
    if answering is None:
        relation.update({"is_falling_back": True, "m.in_reply_to": {"event_id": root}})
    else:
        relation.update({"is_falling_back": False, "m.in_reply_to": {"event_id": answering}})
    return {"msgtype": "m.text", "body": text, "m.relates_to": relation}


def test_real_synapse_reactions_and_thread_replies_are_pulled(make_project: MakeProject) -> None:
    homeserver, bot_token, room = real_synapse()
    channels = (
        f"  room:\n    type: matrix\n    homeserver: {homeserver}\n"
        f"    access_token: ${{MATRIX_TOKEN}}\n    room_id: '{room}'\n"
    )
    root = make_project(
        config=config(channels, publish="max_late: 1d"),
        calendars={"main.yaml": every_minute("tip", ["room"], "2026-12-01 09:00", 1)},
        templates=TEMPLATES,
    )
    env = {"MATRIX_TOKEN": bot_token}
    runner = CliRunner()
    published = runner.invoke(
        app, ["-C", str(root), "publish", "--now", "2026-12-01T09:00:30Z"], env=env
    )
    assert published.exit_code == 0, published.output
    with open_ledger(f"sqlite:///{root / 'state.db'}") as ledger:
        (record,) = ledger.records()
    event = str(record.remote_id)

    bot = client(homeserver, bot_token, "GET", "/account/whoami")["user_id"]
    member, member_token = matrix_member(homeserver, room, bot_token)
    reactions = {}
    for token, key in ((member_token, "👍"), (bot_token, "🎉"), (member_token, "🎉")):
        annotation = {"rel_type": "m.annotation", "event_id": event, "key": key}
        reactions[token, key] = send(
            homeserver, token, room, "m.reaction", {"m.relates_to": annotation}
        )
    question = send(homeserver, member_token, room, "m.room.message", in_thread(event, "When?"))
    send(homeserver, bot_token, room, "m.room.message", in_thread(event, "Friday!", question))

    def pull() -> dict[str, Any]:
        result = runner.invoke(
            app,
            ["-C", str(root), "pull", "--now", "2026-12-01T10:00:00Z", "--format", "json"],
            env=env,
        )
        assert result.exit_code == 0, result.output
        assert bot_token not in result.output
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    (post,) = pull()["posts"]
    assert post["outcome"] == "pulled"
    assert post["likes"] == 3
    assert post["extra"] == {"reactions": {"🎉": 2, "👍": 1}}
    assert (post["replies"], post["new_replies"]) == (2, 2)
    with open_ledger(f"sqlite:///{root / 'state.db'}") as ledger:
        replies = {r.text: r for r in ledger.replies()}
    assert set(replies) == {"When?", "Friday!"}
    assert (replies["When?"].author, replies["When?"].by_team) == (member, False)
    assert (replies["Friday!"].author, replies["Friday!"].by_team) == (bot, True)
    assert replies["When?"].parent_id == event
    assert replies["Friday!"].parent_id == question
    assert replies["When?"].url.startswith("https://matrix.to/#/")

    # Pulled again: a new snapshot, the replies not written twice.
    (again,) = pull()["posts"]
    assert (again["likes"], again["new_replies"]) == (3, 0)
    with open_ledger(f"sqlite:///{root / 'state.db'}") as ledger:
        assert len(list(ledger.snapshots())) == 2
        assert len(list(ledger.replies())) == 2

    # The member takes a reaction back (a redaction): the next count goes down.
    redact(homeserver, member_token, room, reactions[member_token, "👍"])
    (fewer,) = pull()["posts"]
    assert (fewer["likes"], fewer["extra"]) == (2, {"reactions": {"🎉": 2}})

    # The team deletes the post (a redaction too): recorded gone once, then not asked again.
    redact(homeserver, bot_token, room, event)
    assert pull()["posts"][0]["outcome"] == "gone"
    assert pull()["posts"][0]["outcome"] == "was-gone"
    with open_ledger(f"sqlite:///{root / 'state.db'}") as ledger:
        assert [s.status for s in ledger.snapshots()] == ["ok", "ok", "ok", "gone"]


def redact(homeserver: str, token: str, room: str, event: str) -> None:
    path = f"/rooms/{quote(room)}/redact/{quote(event)}/{uuid.uuid4().hex}"
    client(homeserver, token, "PUT", path, {"reason": "test"})
