"""Instagram adapter against a loopback server that answers like the Instagram Graph API.

The server plays containers as Instagram does: POST /{ig-user-id}/media makes one (its id in
`{"id"}`), GET /{container}?fields=status_code tells IN_PROGRESS / FINISHED / ERROR / PUBLISHED,
POST /{ig-user-id}/media_publish with creation_id publishes it, and refusals are Graph error
bodies. Attacks: a 5xx after the container was made, a dropped connection after the publish,
a 429 that never ends, a 200 of garbage, an expired token echoed back.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from commcal.channels.base import (
    EnvRef,
    Media,
    Message,
    PermanentError,
    StaleMedia,
    TransientError,
)
from commcal.channels.instagram import InstagramChannel
from commcal.errors import ConfigError
from commcal.mediacheck import inspect
from tests.fake_networks import Answer, Networks, Request

TOKEN = "IGQWRx7bQ2mP9wZr4LtK8sV3nD6hF1cJ"
USER = "17841400008460056"
KEY = "community/launch/2026-12-01T09:00:00Z/instagram"
IMAGE = "https://cdn.example.org/launch.jpg"


def graph_error(code: int, message: str, status: int = 400, subcode: int | None = None) -> Answer:
    error: dict[str, Any] = {
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "AbCdEfGh123",
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return Answer(status, json.dumps({"error": error}).encode())


@dataclass
class Instagram:
    """Containers as the Graph API keeps them; `publish_answer` decides the publish's answer."""

    networks: Networks
    containers: dict[str, str] = field(default_factory=dict)  # id -> status_code
    fields: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    progress: list[str] = field(default_factory=list)  # statuses a new container goes through
    publish_answer: Callable[[str], Answer | None] | None = None  # None: as Graph does
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, request: Request) -> Answer:
        path = urlsplit(request.path).path
        form = parse_qs(request.text)
        if request.method == "POST" and path == f"/v27.0/{USER}/media":
            with self.lock:
                container = str(17889615691921648 + len(self.containers))
                self.containers[container] = "IN_PROGRESS" if self.progress else "FINISHED"
                self.fields[container] = form
            return Answer(200, json.dumps({"id": container}).encode())
        if request.method == "POST" and path == f"/v27.0/{USER}/media_publish":
            container = form["creation_id"][0]
            answer = self.publish_answer(container) if self.publish_answer else None
            if answer is not None:
                if answer.status == 200 and not answer.drop:
                    self.containers[container] = "PUBLISHED"
                return answer
            self.containers[container] = "PUBLISHED"
            return Answer(200, b'{"id": "17920238422030506"}')
        if request.method == "GET" and path.startswith("/v27.0/178896"):
            container = path.rsplit("/", 1)[1]
            if container not in self.containers:
                return graph_error(100, "Unsupported get request.")
            status = self.containers[container]
            if status == "IN_PROGRESS" and self.progress:
                self.containers[container] = self.progress.pop(0)
            return Answer(200, json.dumps({"id": container, "status_code": status}).encode())
        if request.method == "GET" and path == "/v27.0/17920238422030506":
            return Answer(200, b'{"permalink": "https://www.instagram.com/p/DAbC123/"}')
        return graph_error(100, f"Unknown path {path}")

    def created(self) -> list[Request]:
        return [r for r in self.networks.requests if r.path.endswith(f"{USER}/media")]

    def published(self) -> list[Request]:
        return [r for r in self.networks.requests if "media_publish" in r.path]


@pytest.fixture
def instagram() -> Iterator[Instagram]:
    with Networks() as networks:
        fake = Instagram(networks)
        networks.answer = fake.answer
        yield fake


def channel(fake: Instagram, state: Path | None = None, **settings: Any) -> InstagramChannel:
    config: dict[str, Any] = {
        "user_id": USER,
        "token": EnvRef("${IG_TOKEN}"),
        "api_url": fake.networks.url + "/v27.0",
    }
    config.update(settings)
    adapter = InstagramChannel("insta", config, env={"IG_TOKEN": TOKEN})
    adapter.state_dir = state
    adapter.sleep = lambda seconds: None
    return adapter


def message(text: str = "Our kitchen opens today #OpenKitchen", *paths: str) -> Message:
    media = tuple(Media(path, alt="The kitchen") for path in (paths or (IMAGE,)))
    return Message("insta", "instagram", text, media=media)


@dataclass
class Ledger:
    """What the publisher keeps of a delivery's container in the ledger (`Ledger.record_upload`
    at position PREPARED), here for one delivery: every "host" of a test shares it."""

    container: str = ""


def staged_send(adapter: InstagramChannel, msg: Message, ledger: Ledger) -> Any:
    """Send `msg` as the publisher does (commcal/publish/publisher.py `_prepared`): each new
    container recorded before `prepare` is asked to wait for it, then the send."""
    for _ in range(3):
        ready = adapter.prepare(msg, ledger.container)
        if ready == ledger.container:
            break
        ledger.container = ready
    return adapter.send(replace(msg, prepared=ledger.container), KEY)


def test_a_post_is_a_container_then_its_publication(instagram: Instagram) -> None:
    instagram.progress = ["IN_PROGRESS", "FINISHED"]
    receipt = channel(instagram).send(message(), KEY)
    assert receipt.remote_id == "17920238422030506"
    assert receipt.url == "https://www.instagram.com/p/DAbC123/"
    (created,) = instagram.created()
    assert parse_qs(created.text) == {
        "image_url": [IMAGE],
        "alt_text": ["The kitchen"],
        "caption": ["Our kitchen opens today #OpenKitchen"],
    }
    assert created.headers["Authorization"] == f"Bearer {TOKEN}"
    assert all(TOKEN not in r.path for r in instagram.networks.requests)  # never in a URL
    (published,) = instagram.published()
    assert parse_qs(published.text) == {"creation_id": ["17889615691921648"]}
    status_checks = [r for r in instagram.networks.requests if r.path.startswith("/v27.0/178896")]
    assert len(status_checks) == 3  # IN_PROGRESS, IN_PROGRESS, FINISHED


def test_several_images_make_a_carousel(instagram: Instagram) -> None:
    channel(instagram).send(message("Two views", IMAGE, "https://cdn.example.org/b.jpg"), KEY)
    first, second, carousel = (parse_qs(r.text) for r in instagram.created())
    assert first == {
        "image_url": [IMAGE],
        "alt_text": ["The kitchen"],
        "is_carousel_item": ["true"],
    }
    assert second["is_carousel_item"] == ["true"]
    assert carousel == {
        "media_type": ["CAROUSEL"],
        "caption": ["Two views"],
        "children": ["17889615691921648,17889615691921649"],
    }
    (published,) = instagram.published()
    assert parse_qs(published.text)["creation_id"] == ["17889615691921650"]


# A publish refused for a while: a 5xx, or 9007/2207027 "media not ready" after a FINISHED
# status (Instagram's error codes say to wait and publish the container again): nothing was
# posted, so it is no failure of the post.
@pytest.mark.parametrize(
    ("refusal", "reason", "wait"),
    [
        (graph_error(2, "Service temporarily unavailable", status=503), "temporarily", None),
        (graph_error(9007, "Media ID is not available", subcode=2207027), "not available", 60),
    ],
)
def test_a_publish_refused_for_now_resumes_with_the_same_container(
    instagram: Instagram, tmp_path: Path, refusal: Answer, reason: str, wait: float | None
) -> None:
    failures = [refusal]
    instagram.publish_answer = lambda c: failures.pop() if failures else None
    ledger = Ledger()
    with pytest.raises(TransientError) as caught:
        staged_send(channel(instagram, tmp_path), message(), ledger)
    assert not caught.value.maybe_sent
    assert reason in str(caught.value)
    assert caught.value.retry_after == wait
    # A later run (a new process, another host: a new adapter) resumes the same delivery.
    receipt = staged_send(channel(instagram), message(), ledger)
    assert receipt.remote_id == "17920238422030506"
    assert len(instagram.created()) == 1, "no second container"
    assert [parse_qs(r.text)["creation_id"][0] for r in instagram.published()] == [
        "17889615691921648"
    ] * 2


def test_a_publish_whose_answer_was_lost_is_found_published_not_posted_again(
    instagram: Instagram, tmp_path: Path
) -> None:
    def published_then_500(container: str) -> Answer:
        instagram.containers[container] = "PUBLISHED"  # it went out; the answer did not
        return Answer(500, b"<html>upstream error</html>", "text/html")

    instagram.publish_answer = published_then_500
    ledger = Ledger()
    with pytest.raises(TransientError):
        staged_send(channel(instagram, tmp_path), message(), ledger)
    instagram.publish_answer = None
    receipt = staged_send(channel(instagram, tmp_path), message(), ledger)
    assert len(instagram.published()) == 1, "never published twice"
    assert len(instagram.created()) == 1
    assert receipt.remote_id is None and "published by an earlier attempt" in receipt.note


def test_a_connection_dropped_after_the_publish_may_have_posted(
    instagram: Instagram, tmp_path: Path
) -> None:
    instagram.publish_answer = lambda c: Answer(drop=True)
    with pytest.raises(TransientError) as caught:
        channel(instagram, tmp_path).send(message(), KEY)
    # The publisher records such a send `unknown` (instagram is not idempotent): never repeated.
    assert caught.value.maybe_sent
    assert not InstagramChannel.idempotent


def test_a_dropped_connection_while_making_the_container_posted_nothing(
    instagram: Instagram,
) -> None:
    instagram.networks.answer = lambda request: Answer(drop=True)
    with pytest.raises(TransientError) as caught:
        channel(instagram).send(message(), KEY)
    assert not caught.value.maybe_sent  # a container is no post: safe to try again


def test_429_forever_is_one_bounded_transient_error(instagram: Instagram) -> None:
    instagram.networks.answer = lambda request: Answer(
        429, b'{"error": {"message": "Too many calls", "code": 4}}', headers={"Retry-After": "3600"}
    )
    with pytest.raises(TransientError) as caught:
        channel(instagram).send(message(), KEY)
    assert caught.value.retry_after == 3600
    assert len(instagram.networks.requests) == 1  # the adapter itself does not loop


def test_throttling_answered_400_waits_as_long_as_the_usage_header_says(
    instagram: Instagram,
) -> None:
    usage = {USER: [{"type": "instagram", "call_count": 100, "estimated_time_to_regain_access": 7}]}
    instagram.networks.answer = lambda request: Answer(
        400,
        b'{"error": {"message": "Application request limit reached", "code": 4}}',
        headers={"X-Business-Use-Case-Usage": json.dumps(usage)},
    )
    with pytest.raises(TransientError) as caught:
        channel(instagram).send(message(), KEY)
    assert caught.value.retry_after == 7 * 60


def test_garbage_200_for_the_container_posts_nothing_and_is_retried(instagram: Instagram) -> None:
    instagram.networks.answer = lambda request: Answer(200, b"<html>ok</html>", "text/html")
    with pytest.raises(TransientError, match="without a container id"):
        channel(instagram).send(message(), KEY)
    assert instagram.published() == []


def test_an_expired_token_is_permanent_with_a_fix_and_never_shown(instagram: Instagram) -> None:
    instagram.networks.answer = lambda request: graph_error(
        190,
        f"Error validating access token: Session has expired. Token {TOKEN}",
        subcode=463,
    )
    with pytest.raises(PermanentError) as caught:
        channel(instagram).send(message(), KEY)
    text = str(caught.value)
    assert TOKEN not in text and TOKEN[:12] not in text
    assert "code 190, subcode 463" in text
    assert "make a new long-lived token" in text


def test_a_container_in_error_is_replaced_by_a_new_one(
    instagram: Instagram, tmp_path: Path
) -> None:
    instagram.progress = ["ERROR"]
    ledger = Ledger()
    with pytest.raises(TransientError, match="ERROR") as caught:
        staged_send(channel(instagram, tmp_path), message(), ledger)
    assert not caught.value.maybe_sent
    assert ledger.container == "17889615691921648"  # recorded, and refused by the network
    instagram.progress = []
    staged_send(channel(instagram, tmp_path), message(), ledger)  # the next attempt
    assert len(instagram.created()) == 2 and len(instagram.published()) == 1
    assert ledger.container == "17889615691921649"  # the new one, recorded before publishing


def test_a_recorded_container_found_in_error_is_stale_media(instagram: Instagram) -> None:
    """Handed a recorded container that the network refused since, `send` posts nothing and
    says so as StaleMedia: the publisher makes a new container, once."""
    instagram.containers["17889615691921648"] = "ERROR"
    with pytest.raises(StaleMedia, match="ERROR"):
        channel(instagram).send(replace(message(), prepared="17889615691921648"), KEY)
    assert instagram.published() == []


def test_a_container_still_processing_is_waited_for_a_bounded_time_and_kept(
    instagram: Instagram, tmp_path: Path
) -> None:
    instagram.progress = ["IN_PROGRESS"] * 50
    ledger = Ledger()
    with pytest.raises(TransientError, match="still processing") as caught:
        staged_send(channel(instagram, tmp_path), message(), ledger)
    assert caught.value.retry_after == 60
    checks = [r for r in instagram.networks.requests if r.method == "GET"]
    assert len(checks) == 1 + InstagramChannel.status_checks
    assert ledger.container == "17889615691921648"  # recorded, kept for the next attempt


# -- check: offline sentences a marketer can act on ------------------------------------------


def offline(**settings: Any) -> InstagramChannel:
    config = {"user_id": USER, "token": EnvRef("${IG_TOKEN}"), **settings}
    return InstagramChannel("insta", config, env={})


def test_a_post_without_an_image_cannot_go_to_instagram() -> None:
    problems = offline().check(Message("insta", "instagram", "Just words"))
    assert problems == [
        "a post with no image cannot go to Instagram: add an image to the item, or leave this "
        "channel out of it"
    ]


def test_a_local_file_needs_a_public_address(tmp_path: Path) -> None:
    photo = tmp_path / "project" / "media" / "menus" / "dec.jpg"
    photo.parent.mkdir(parents=True)
    Image.new("RGB", (64, 48), "teal").save(photo)
    assert offline().check(message("Menu", str(photo))) == []  # said at the file's line:
    ((index, problem),) = offline().check_media([inspect(Media(str(photo), alt="Menu"))])
    assert index == 0 and "Instagram fetches each image from a public URL" in problem
    assert "`url:` entry" in problem and "media_base_url" in problem
    served = offline(media_base_url="https://example.org/media/")
    served.state_dir = tmp_path / "project" / ".commcal"
    assert served.check_media([inspect(Media(str(photo), alt="Menu"))]) == []
    assert served.public_url(Media(str(photo))) == "https://example.org/media/menus/dec.jpg"


def test_caption_limits_png_and_too_many_images(tmp_path: Path) -> None:
    tags = " ".join(f"#tag{n}" for n in range(31))
    people = " ".join(f"@friend{n}" for n in range(21))
    problems = offline().check(message(f"{tags} {people}", "https://cdn.example.org/a.png"))
    assert problems == [
        "the caption has 31 hashtags; Instagram allows 30",
        "the caption has 21 @-mentions; Instagram allows 20",
    ]
    # Count, format and shape: check_media's, each at its file's line (index), not check's.
    png = inspect(Media("https://cdn.example.org/a.png", alt="x"))
    assert offline().check_media([png]) == [
        (0, "image/png is not a format instagram takes (image/jpeg)")
    ]
    many = [inspect(Media(IMAGE, alt="x"))] * 11
    assert offline().check_media(many) == [(None, "11 media files, over instagram's 10 per post")]
    assert offline().check(message("x", *[IMAGE] * 11)) == []
    wide = tmp_path / "wide.jpg"
    Image.new("RGB", (200, 100), "teal").save(wide)
    assert offline().check_media([inspect(Media(str(wide), alt="x"))]) == [
        (0, "aspect ratio 2.0:1, over instagram's 1.91:1"),
        (
            0,
            "Instagram fetches each image from a public URL, and "
            f"{wide} is a file here: write it as a `url:` entry (https://...), or set "
            "`media_base_url` on channel 'insta' to the address where the project's media/ "
            "folder is served",
        ),
    ]
    over = offline().check(message("a" * 2201))
    assert "text is 2201 characters, over instagram's limit of 2200 by 1" in over


def test_settings_are_checked_without_network() -> None:
    with pytest.raises(ConfigError, match="user_id must be the account's numeric id"):
        offline(user_id="@acme")
    with pytest.raises(ConfigError, match="media_base_url must be an https:// URL"):
        offline(media_base_url="ftp://example.org/media")


def test_verify_names_the_account(instagram: Instagram) -> None:
    instagram.networks.answer = lambda request: Answer(
        200, json.dumps({"id": USER, "username": "duka.letu"}).encode()
    )
    assert "@duka.letu" in channel(instagram).verify()


def test_an_expired_token_on_resume_keeps_the_container_for_later(
    instagram: Instagram, tmp_path: Path
) -> None:
    """A refused status check says nothing about the container: forgetting it could post twice
    once the token is replaced."""

    def published_then_500(container: str) -> Answer:
        instagram.containers[container] = "PUBLISHED"
        return Answer(502, b"")

    instagram.publish_answer = published_then_500
    ledger = Ledger()
    with pytest.raises(TransientError):
        staged_send(channel(instagram, tmp_path), message(), ledger)
    answer = instagram.answer
    instagram.networks.answer = lambda request: graph_error(190, "Session has expired")
    with pytest.raises(PermanentError, match="code 190"):
        staged_send(channel(instagram, tmp_path), message(), ledger)
    instagram.networks.answer = answer  # a new token
    receipt = staged_send(channel(instagram, tmp_path), message(), ledger)
    assert "published by an earlier attempt" in receipt.note
    assert len(instagram.created()) == 1 and len(instagram.published()) == 1


def test_garbage_200_for_the_publish_is_sent_with_the_id_unknown(
    instagram: Instagram, tmp_path: Path
) -> None:
    instagram.publish_answer = lambda c: Answer(200, b"[]")
    receipt = channel(instagram, tmp_path).send(message(), KEY)
    assert receipt.remote_id is None and "without a media id" in receipt.note
