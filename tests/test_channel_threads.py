"""Threads adapter against a loopback server that answers like the Threads API.

POST /{user}/threads makes a container, GET /{container}?fields=status,error_message tells its
state, POST /{user}/threads_publish publishes it. End to end through `commcal publish`: a
connection dropped after the publish is recorded `unknown` and never posted again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image
from typer.testing import CliRunner

from commcal.channels.base import EnvRef, Media, Message, PermanentError, TransientError
from commcal.channels.threads import ThreadsChannel, threads_length
from commcal.cli import app
from commcal.ledger import open_ledger
from commcal.ledger.base import PREPARED
from commcal.mediacheck import inspect
from tests.conftest import MakeProject
from tests.fake_networks import Answer, Networks, Request

TOKEN = "THQWJq9Zx2Lm5Rt7Yp3Kw8VbN4cD6fG"
USER = "26122000000000001"
KEY = "community/launch/2026-12-01T09:00:00Z/threads"
CONTAINER, POST = "17889615691921648", "18028000000000042"


class Threads:
    def __init__(self, networks: Networks) -> None:
        self.networks = networks
        self.status = "FINISHED"
        self.publish: Answer | None = None  # None: publish and answer the post's id
        self.made = 0

    def answer(self, request: Request) -> Answer:
        path = urlsplit(request.path).path
        if request.method == "POST" and path == f"/v1.0/{USER}/threads":
            self.made += 1
            return Answer(200, json.dumps({"id": str(int(CONTAINER) + self.made - 1)}).encode())
        if request.method == "POST" and path == f"/v1.0/{USER}/threads_publish":
            if self.publish is not None:
                return self.publish
            self.status = "PUBLISHED"
            return Answer(200, json.dumps({"id": POST}).encode())
        if path.startswith("/v1.0/178896"):
            return Answer(200, json.dumps({"id": CONTAINER, "status": self.status}).encode())
        if path == f"/v1.0/{POST}":
            return Answer(200, b'{"permalink": "https://www.threads.net/@acme/post/DAbC"}')
        return Answer(404, b'{"error": {"message": "Unknown path", "code": 100}}')

    def created(self) -> list[dict[str, list[str]]]:
        return [
            parse_qs(r.text) for r in self.networks.requests if r.path.endswith(f"{USER}/threads")
        ]

    def published(self) -> list[Request]:
        return [r for r in self.networks.requests if "threads_publish" in r.path]


@pytest.fixture
def threads() -> Iterator[Threads]:
    with Networks() as networks:
        fake = Threads(networks)
        networks.answer = fake.answer
        yield fake


def channel(fake: Threads, **settings: Any) -> ThreadsChannel:
    config: dict[str, Any] = {
        "user_id": USER,
        "token": EnvRef("${THREADS_TOKEN}"),
        "api_url": fake.networks.url + "/v1.0",
        **settings,
    }
    adapter = ThreadsChannel("threads", config, env={"THREADS_TOKEN": TOKEN})
    adapter.sleep = lambda seconds: None
    return adapter


def message(text: str = "Kitchen opens today", **fields: Any) -> Message:
    return Message("threads", "threads", text, **fields)


def test_a_text_post(threads: Threads) -> None:
    receipt = channel(threads).send(message(), KEY)
    assert receipt.remote_id == POST
    assert receipt.url == "https://www.threads.net/@acme/post/DAbC"
    assert threads.created() == [{"media_type": ["TEXT"], "text": ["Kitchen opens today"]}]
    (published,) = threads.published()
    assert parse_qs(published.text) == {"creation_id": [CONTAINER]}
    assert published.headers["Authorization"] == f"Bearer {TOKEN}"


def test_a_reply_names_the_previous_part(threads: Threads) -> None:
    channel(threads).send(message("Part 2", options={"reply_to": "18027999999999999"}), KEY)
    assert threads.created()[0]["reply_to_id"] == ["18027999999999999"]


def test_images_and_a_carousel(threads: Threads) -> None:
    one = (Media("https://cdn.example.org/a.jpg"),)
    channel(threads).send(message("One", media=one), KEY)
    assert threads.created()[-1] == {
        "media_type": ["IMAGE"],
        "image_url": ["https://cdn.example.org/a.jpg"],
        "text": ["One"],
    }
    two = (Media("https://cdn.example.org/a.jpg"), Media("https://cdn.example.org/b.jpg"))
    channel(threads).send(message("Two", media=two), KEY + "/2")
    *items, carousel = threads.created()[-3:]
    assert all(item["is_carousel_item"] == ["true"] for item in items)
    assert carousel["media_type"] == ["CAROUSEL"] and carousel["text"] == ["Two"]
    assert len(carousel["children"][0].split(",")) == 2


def test_length_counts_an_emoji_as_its_utf8_bytes() -> None:
    assert threads_length("abc") == 3
    assert threads_length("Καλημέρα") == 8
    assert threads_length("👍") == 4
    assert threads_length("🇰🇪") == 8  # a flag: two regional indicators, 4 bytes each
    adapter = ThreadsChannel("threads", {"user_id": USER, "token": EnvRef("${T}")}, env={})
    over = adapter.check(message("a" * 497 + "👍"))
    assert over == [
        "text is 501 characters (an emoji counts as its UTF-8 bytes), over threads's limit of "
        "500 by 1"
    ]


def test_check_sentences(tmp_path: Path) -> None:
    adapter = ThreadsChannel("threads", {"user_id": USER, "token": EnvRef("${T}")}, env={})
    photo = tmp_path / "media" / "a.jpg"
    photo.parent.mkdir()
    Image.new("RGB", (64, 48), "teal").save(photo)
    problems = adapter.check(
        message("Hi", media=(Media(str(photo)),), options={"reply_to": "the last one"})
    )
    assert problems == ["reply_to must be the id of a Threads post (digits), not 'the last one'"]
    # A file with no public address is said at its own line: by check_media, with its index.
    ((index, said),) = adapter.check_media([inspect(Media(str(photo), alt="x"))])
    assert index == 0 and "Threads fetches each image from a public URL" in said


def test_check_media_takes_jpeg_and_png_up_to_10_to_1(tmp_path: Path) -> None:
    adapter = ThreadsChannel(
        "threads",
        {"user_id": USER, "token": EnvRef("${T}"), "media_base_url": "https://example.org/m"},
        env={},
    )
    sizes = {"a.png": (64, 48), "b.webp": (64, 48), "c.png": (1100, 100)}
    for name, size in sizes.items():
        Image.new("RGB", size, "teal").save(tmp_path / name)
    files = [inspect(Media(str(tmp_path / name), alt="x")) for name in sizes]
    assert adapter.check_media(files) == [
        (1, "image/webp is not a format threads takes (image/jpeg, image/png)"),
        (2, "aspect ratio 11.0:1, over threads's 10:1"),
    ]


def test_an_expired_token_is_permanent_with_a_fix(threads: Threads) -> None:
    threads.networks.answer = lambda request: Answer(
        401,
        json.dumps(
            {
                "error": {
                    "message": f"Error validating access token {TOKEN}: Session has expired",
                    "type": "OAuthException",
                    "code": 190,
                    "error_subcode": 463,
                    "fbtrace_id": "Ax1",
                }
            }
        ).encode(),
    )
    with pytest.raises(PermanentError) as caught:
        channel(threads).send(message(), KEY)
    assert TOKEN not in str(caught.value)
    assert "refreshed (GET /refresh_access_token)" in str(caught.value)


def test_429_with_retry_after_forever(threads: Threads) -> None:
    threads.networks.answer = lambda request: Answer(
        429, b'{"error": {"message": "rate limited", "code": 4}}', headers={"Retry-After": "120"}
    )
    with pytest.raises(TransientError) as caught:
        channel(threads).send(message(), KEY)
    assert caught.value.retry_after == 120 and not caught.value.maybe_sent


# -- end to end: the ledger decides `unknown`, and nothing is posted again ----------------------

CALENDAR = """\
items:
  - id: launch
    kind: post
    channels: [threads]
    template: posts/launch
    at: 2026-12-01 09:00
"""


def project(make_project: MakeProject, url: str, extra: str = "") -> Path:
    return make_project(
        config=(
            f"timezone: UTC\nlocale: en\nstate: sqlite:///state.db\n{extra}channels:\n"
            "  threads:\n"
            f"    type: threads\n    user_id: '{USER}'\n    token: ${{THREADS_TOKEN}}\n"
            f"    api_url: {url}/v1.0\n"
        ),
        calendars={"c.yaml": CALENDAR},
        templates={"posts/launch.j2": "We launch today\n"},
    )


def publish(root: Path, now: str = "2026-12-01T09:00:30Z") -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        app,
        ["-C", str(root), "publish", "--now", now, "--format", "json"],
        env={"THREADS_TOKEN": TOKEN},
    )
    assert TOKEN not in result.output
    return result.exit_code, json.loads(result.stdout)


def test_a_dropped_publish_is_unknown_and_never_posted_again(
    threads: Threads, make_project: MakeProject
) -> None:
    root = project(make_project, threads.networks.url)
    threads.publish = Answer(drop=True)
    code, report = publish(root)
    assert code == 1
    (delivery,) = report["deliveries"]
    assert delivery["state"] == "unknown", delivery
    assert "commcal resolve" in delivery["detail"]
    code, report = publish(root)
    assert code == 1
    assert len(threads.published()) == 1, "never published a second time"
    assert len(threads.created()) == 1


def test_a_5xx_after_the_container_is_retried_with_the_same_container(
    threads: Threads, make_project: MakeProject
) -> None:
    root = project(make_project, threads.networks.url, "publish: {retry_delay: 1s}\n")
    answers = [Answer(503, b'{"error": {"message": "Service unavailable", "code": 2}}')]

    def publish_answer(request: Request) -> Answer:
        if "threads_publish" in request.path and answers:
            return answers.pop()
        return threads.answer(request)

    threads.networks.answer = publish_answer
    code, report = publish(root)
    assert code == 0, report
    (delivery,) = report["deliveries"]
    assert delivery["state"] == "sent" and delivery["detail"] == POST, delivery
    assert delivery["attempts"] == 2
    assert threads.made == 1, "the retry published the container it had, not a new one"
    with open_ledger(f"sqlite:///{root / 'state.db'}") as ledger:  # every host's record
        assert ledger.uploads(delivery["id"])[PREPARED][1] == CONTAINER
    assert [parse_qs(r.text)["creation_id"] for r in threads.published()] == [[CONTAINER]] * 2


def test_429_forever_ends_failed_after_the_configured_attempts(
    threads: Threads, make_project: MakeProject
) -> None:
    root = project(make_project, threads.networks.url, "publish: {max_attempts: 3}\n")
    threads.networks.answer = lambda request: Answer(
        429, b'{"error": {"message": "Too many calls", "code": 4}}', headers={"Retry-After": "600"}
    )
    states = []
    for hour in range(3):
        code, report = publish(root, f"2026-12-01T{9 + hour:02d}:00:30Z")
        states.append(report["deliveries"][0]["state"])
    assert states == ["pending", "pending", "failed"]
    assert "Too many calls" in report["deliveries"][0]["detail"]
    assert "after 3 attempts" in report["deliveries"][0]["detail"]
    assert code == 1
    assert len(threads.networks.requests) == 3, "one try per run, none while waiting"
