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
from werkzeug import Request, Response

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


@pytest.fixture(scope="module")
def synapse() -> tuple[str, str, str]:
    """One login and room of the real Synapse for this module's tests: each test's items have
    ids of their own, since the homeserver answers a repeated transaction id (the delivery id)
    from the same device with the first event."""
    return real_synapse()


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


def published_event(root: Path, synapse: tuple[str, str, str]) -> dict[str, Any]:
    """`commcal publish` of the project's one due delivery; the event it made, read back."""
    homeserver, token, room = synapse
    result = CliRunner().invoke(
        app,
        ["-C", str(root), "publish", "--format", "json", "--now", NOW.isoformat()],
        env={"MATRIX_TOKEN": token},
    )
    assert result.exit_code == 0, result.output
    [event_id] = [d["detail"] for d in json.loads(result.stdout)["deliveries"]]
    [event] = [e for e in room_events(homeserver, token, room) if e["event_id"] == event_id]
    return event


def synapse_project(
    make_project: MakeProject,
    homeserver: str,
    room: str,
    item: str,
    templates: dict[str, str] | None = None,
) -> Path:
    channels = (
        "  room:\n    type: matrix\n"
        f"    homeserver: {homeserver}\n"
        "    access_token: ${MATRIX_TOKEN}\n"
        f"    room_id: '{room}'\n"
    )
    return make_project(
        config=config(channels, publish="max_late: 1d"),
        calendars={"main.yaml": item},
        templates=templates or {"posts/hello.j2": "Καλημέρα from {{ item.id }}\n"},
    )


POST_ITEM = (
    "items:\n  - id: hello\n    channels: [room]\n    template: posts/hello\n"
    "    at: 2026-01-01 08:59\n"
)


def test_real_synapse_publish_refuses_an_encrypted_room_and_posts_nothing(
    make_project: MakeProject, synapse: tuple[str, str, str]
) -> None:
    homeserver, token, _ = synapse
    room = synapse_room(homeserver, token, encrypted=True)
    before = [e["event_id"] for e in room_events(homeserver, token, room)]
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
    assert [e["event_id"] for e in room_events(homeserver, token, room)] == before  # no post

    test = runner.invoke(
        app, ["-C", str(root), "channels", "test", "room"], env={"MATRIX_TOKEN": token}
    )
    assert test.exit_code == 1, test.output
    assert "end-to-end encrypted" in test.output


def test_real_synapse_an_unencrypted_room_is_posted_to(
    make_project: MakeProject, synapse: tuple[str, str, str]
) -> None:
    homeserver, _, room = synapse
    event = published_event(synapse_project(make_project, homeserver, room, POST_ITEM), synapse)
    assert event["type"] == "m.room.message"
    assert event["content"]["body"] == "Καλημέρα from hello"


# -- native polls -----------------------------------------------------------------------------

POLL = {
    "question": "Ποιο θέμα θέλετε για τον Ιανουάριο;",
    "options": ["Ζύμωση λαχανικών", "Προζύμι", "Γλυκά χωρίς ζάχαρη"],
    "duration_seconds": 172800,
    "results": "hidden",
}
POLL_START = "org.matrix.msc3381.poll.start"
TEXT = "org.matrix.msc1767.text"


def sent_content(
    httpserver: HTTPServer, message: Message, event_type: str = "m.room.message"
) -> dict[str, Any]:
    """Check and send `message` to an unencrypted room; the content of the event PUT."""
    httpserver.expect_request(STATE, method="GET").respond_with_json(
        {"errcode": "M_NOT_FOUND", "error": "Event not found."}, status=404
    )
    seen: list[dict[str, Any]] = []

    def put(request: Request) -> Response:
        seen.append(json.loads(request.data))
        return Response(json.dumps({"event_id": "$m"}), content_type="application/json")

    httpserver.expect_request(SEND + f"{event_type}/k", method="PUT").respond_with_handler(put)
    mx = channel(httpserver)
    assert mx.check(message) == []
    assert mx.send(message, "k").remote_id == "$m"
    [content] = seen
    return content


def test_a_poll_is_sent_as_the_event_element_sends(httpserver: HTTPServer) -> None:
    message = Message("mx", "matrix", "Ψηφίστε!", options={"poll": POLL})
    content = sent_content(httpserver, message, POLL_START)
    fallback = (
        "Ψηφίστε!\n\nΠοιο θέμα θέλετε για τον Ιανουάριο;\n"
        "1. Ζύμωση λαχανικών\n2. Προζύμι\n3. Γλυκά χωρίς ζάχαρη"
    )
    assert content == {
        POLL_START: {
            "question": {TEXT: POLL["question"]},
            "kind": "org.matrix.msc3381.poll.undisclosed",
            "max_selections": 1,
            "answers": [
                {"id": "answer-1", TEXT: "Ζύμωση λαχανικών"},
                {"id": "answer-2", TEXT: "Προζύμι"},
                {"id": "answer-3", TEXT: "Γλυκά χωρίς ζάχαρη"},
            ],
        },
        TEXT: fallback,
        "body": fallback,
    }


def test_poll_limits_are_checked() -> None:
    mx = MatrixChannel(
        "mx",
        {"homeserver": "https://m.org", "access_token": EnvRef("${T}"), "room_id": ROOM},
        env={},
    )
    many = {**POLL, "options": [f"option {n}" for n in range(21)]}
    assert mx.check(Message("mx", "matrix", "x", options={"poll": many})) == [
        "a poll needs 2 to 20 options, not 21"
    ]
    long_answer = {**POLL, "options": ["ναι", "α" * 341]}
    assert mx.check(Message("mx", "matrix", "x", options={"poll": long_answer})) == [
        f"poll option {'α' * 341!r} needs 1 to 340 characters"
    ]
    long_question = {**POLL, "question": "👋" * 171}  # 342 UTF-16 units, as Element counts
    assert mx.check(Message("mx", "matrix", "x", options={"poll": long_question})) == [
        "a poll question needs 1 to 340 characters"
    ]
    twenty = {**POLL, "options": [f"option {n}" for n in range(20)]}
    assert mx.check(Message("mx", "matrix", "x", options={"poll": twenty})) == []
    assert mx.check(Message("mx", "matrix", "x", options={"poll": "yes"})) == [
        "poll must be a mapping with question, options and duration_seconds"
    ]


POLL_ITEM = """\
items:
  - id: thema-{results}
    kind: poll
    channels: [room]
    template: posts/hello
    at: 2026-01-01 08:59
    question: "Ποιο θέμα θέλετε;"
    options: ["Ζύμωση", "Προζύμι"]
    results: {results}
"""


@pytest.mark.parametrize(
    ("results", "kind"),
    [
        ("live", "org.matrix.msc3381.poll.disclosed"),
        ("hidden", "org.matrix.msc3381.poll.undisclosed"),
    ],
)
def test_real_synapse_a_calendar_poll_is_a_native_poll(
    make_project: MakeProject, synapse: tuple[str, str, str], results: str, kind: str
) -> None:
    homeserver, _, room = synapse
    root = synapse_project(make_project, homeserver, room, POLL_ITEM.format(results=results))
    poll = published_event(root, synapse)
    assert poll["type"] == POLL_START  # the poll itself, not a text list as an m.room.message
    start = poll["content"][POLL_START]
    assert start["kind"] == kind
    assert start["question"] == {TEXT: "Ποιο θέμα θέλετε;"}
    assert [a[TEXT] for a in start["answers"]] == ["Ζύμωση", "Προζύμι"]
    assert len({a["id"] for a in start["answers"]}) == 2
    assert poll["content"]["body"].endswith("Ποιο θέμα θέλετε;\n1. Ζύμωση\n2. Προζύμι")


def test_a_misspelt_results_value_is_a_problem_with_its_line(make_project: MakeProject) -> None:
    root = synapse_project(
        make_project,
        "https://matrix.example.org",
        "!r:example.org",
        POLL_ITEM.format(results="hiden"),
    )
    result = CliRunner().invoke(app, ["-C", str(root), "validate"])
    assert result.exit_code == 1
    assert "calendars/main.yaml:9:14" in result.output
    assert "unknown item 'thema-hiden' results 'hiden'" in result.output
    assert "hidden" in result.output


# -- mentions -----------------------------------------------------------------------------------


def pill(user: str) -> str:
    return f'<a href="https://matrix.to/#/{user}">{user}</a>'


def test_user_ids_in_the_text_become_pills_and_mentions(httpserver: HTTPServer) -> None:
    text = "Καλώς ήρθες @alice:example.org & @bob:matrix.org:8448!\nΡωτήστε @alice:example.org."
    content = sent_content(httpserver, Message("mx", "matrix", text))
    assert content["body"] == text
    assert content["m.mentions"] == {"user_ids": ["@alice:example.org", "@bob:matrix.org:8448"]}
    assert content["format"] == "org.matrix.custom.html"
    assert content["formatted_body"] == (
        f"Καλώς ήρθες {pill('@alice:example.org')} &amp; {pill('@bob:matrix.org:8448')}!"
        f"<br>Ρωτήστε {pill('@alice:example.org')}."
    )


def test_pills_go_into_the_templates_html_but_not_into_tags_or_links(
    httpserver: HTTPServer,
) -> None:
    html = (
        '<p title="@x:example.org">Hi @alice:example.org, see '
        '<a href="https://matrix.to/#/@bob:example.org">@bob:example.org</a></p>'
    )
    text = "Hi @alice:example.org, see @bob:example.org"
    content = sent_content(httpserver, Message("mx", "matrix", text, html=html))
    assert content["formatted_body"] == (
        f'<p title="@x:example.org">Hi {pill("@alice:example.org")}, see '
        '<a href="https://matrix.to/#/@bob:example.org">@bob:example.org</a></p>'
    )
    assert content["m.mentions"] == {"user_ids": ["@alice:example.org", "@bob:example.org"]}


def test_no_mentions_means_an_empty_m_mentions_and_no_html(httpserver: HTTPServer) -> None:
    # An e-mail address or a URL path is no user id; "@room" pings nobody with m.mentions there.
    text = "Write to news@example.org or see https://example.org/@a:b.org, @room"
    content = sent_content(httpserver, Message("mx", "matrix", text))
    assert content == {"msgtype": "m.text", "body": text, "m.mentions": {}}


def test_real_synapse_keeps_the_mentions_and_pills(
    make_project: MakeProject, synapse: tuple[str, str, str]
) -> None:
    homeserver, _, room = synapse
    item = POST_ITEM.replace("id: hello", "id: welcome")
    templates = {"posts/hello.j2": "Καλώς ήρθες @alice:localhost!\n"}
    root = synapse_project(make_project, homeserver, room, item, templates)
    event = published_event(root, synapse)
    assert event["content"]["m.mentions"] == {"user_ids": ["@alice:localhost"]}
    assert event["content"]["formatted_body"] == f"Καλώς ήρθες {pill('@alice:localhost')}!"
