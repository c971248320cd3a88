"""`media:` in a calendar, through `commcal publish`, on LinkedIn, Facebook and Instagram, against
one recording loopback server that answers as each API's reference says:

- LinkedIn (Images API, then the Posts API): POST /rest/images?action=initializeUpload names an
  upload URL and an image URN, the bytes are PUT there, and POST /rest/posts names each URN with
  its altText (https://learn.microsoft.com/en-us/linkedin/marketing/community-management/shares/
  images-api, .../multiimage-post-api);
- Facebook: each photo goes up unpublished (POST /{page-id}/photos, published=false, the file as
  `source`), and POST /{page-id}/feed attaches them as attached_media
  (https://developers.facebook.com/docs/pages-api/posts#publish-media-posts);
- Instagram: a container (POST /{ig-user-id}/media with image_url, alt_text and caption), its
  status_code until FINISHED, then POST /{ig-user-id}/media_publish with its creation_id
  (https://developers.facebook.com/docs/instagram-platform/content-publishing).

Each test asserts exactly the requests those pages describe. A SIGKILL between the uploads (or
the container) and the post, then a resumed `commcal publish`, posts exactly once with every
image, reusing what was recorded. And two hosts sharing one ledger (one SQLite file, and the
real PostgreSQL): host A's publish is answered 500 although it went out; host B's retry finds
the container published and records `sent`, never publishing a second container.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image
from typer.testing import CliRunner

from commcal.cli import app
from commcal.ledger import open_ledger
from commcal.ledger.base import PREPARED
from tests.conftest import MakeProject
from tests.fake_networks import Answer, Networks, Request
from tests.test_ledger import ledger_url, postgres_db  # noqa: F401  (fixtures)
from tests.test_publish_processes import command

NOW = "2026-12-02T09:00:00Z"
LATER = "2026-12-02T11:00:00Z"  # past the lease (5 min) and the retry delay (1h)
ALT_1 = "Τρεις εθελοντές στον πάγκο της αγοράς"
ALT_2 = "Ο χάρτης της λαϊκής, με τον πάγκο σημειωμένο"
AUTHOR, PAGE, IG_USER = "urn:li:organization:2414183", "104826152034921", "17841400008460056"
CDN = "https://cdn.example.org/media"
ENV = {
    "LI_TOKEN": "AQVtLi-media-9ZkTvW3qQm2",
    "FB_TOKEN": "EAAGfb-media-Qm2Zk9TvW3x",
    "IG_TOKEN": "IGQWig-media-Zk9TvW3Qm2y",
}
TEXT = "Λαϊκή αγορά το Σάββατο"


class Meta:
    """LinkedIn, Facebook and Instagram on one server, keeping state as they do: uploaded
    images, unpublished photos, containers and their status. `kill_on(request)`: SIGKILL the
    process `pid` when such a request arrives, before it is answered (once)."""

    def __init__(self, networks: Networks) -> None:
        self.networks = networks
        self.lock = threading.Lock()
        self.next = 0
        self.containers: dict[str, str] = {}  # id -> status_code
        self.published: dict[str, str] = {}  # media id -> container
        self.publish_answer: Callable[[str], Answer] | None = None
        self.kill_on: Callable[[Request], bool] | None = None
        self.pid = 0
        networks.answer = self.answer

    def _id(self) -> int:
        self.next += 1
        return self.next

    def answer(self, r: Request) -> Answer:
        if self.kill_on is not None and self.kill_on(r):
            self.kill_on = None
            os.kill(self.pid, signal.SIGKILL)
            return Answer(drop=True)
        path = urlsplit(r.path).path
        with self.lock:
            n = self._id()
            if path == "/rest/images":
                value = {
                    "uploadUrl": f"{self.networks.url}/dms-uploads/{n}",
                    "image": f"urn:li:image:C4E{n}",
                }
                return Answer(200, json.dumps({"value": value}).encode())
            if path.startswith("/dms-uploads/"):
                return Answer(201, b"")
            if path == "/rest/posts":
                return Answer(201, b"", headers={"x-restli-id": f"urn:li:share:70{n}"})
            if path == f"/v27.0/{PAGE}/photos":
                return Answer(200, json.dumps({"id": f"99{n}"}).encode())
            if path == f"/v27.0/{PAGE}/feed":
                return Answer(200, json.dumps({"id": f"{PAGE}_55{n}"}).encode())
            if path == f"/v27.0/{IG_USER}/media":
                container = f"178896{n:011d}"
                self.containers[container] = "FINISHED"
                return Answer(200, json.dumps({"id": container}).encode())
            if path == f"/v27.0/{IG_USER}/media_publish":
                container = parse_qs(r.text)["creation_id"][0]
                if self.containers.get(container) != "FINISHED":
                    return Answer(
                        400, b'{"error": {"message": "Media ID is not available", "code": 9007}}'
                    )
                self.containers[container] = "PUBLISHED"
                media = f"179202{n:011d}"
                self.published[media] = container
                if self.publish_answer is not None:
                    return self.publish_answer(container)
                return Answer(200, json.dumps({"id": media}).encode())
            thing = path.rsplit("/", 1)[1]
            if thing in self.containers:
                return Answer(
                    200, json.dumps({"id": thing, "status_code": self.containers[thing]}).encode()
                )
            if thing in self.published:
                return Answer(
                    200, json.dumps({"permalink": f"https://www.instagram.com/p/{thing}/"}).encode()
                )
            return Answer(404, b'{"error": {"message": "Unsupported get request.", "code": 100}}')

    def seen(self) -> list[tuple[str, str]]:
        """(method, path without the host's numbers) of every request, in order."""
        return [(r.method, urlsplit(r.path).path) for r in self.networks.requests]


@pytest.fixture
def meta(monkeypatch: pytest.MonkeyPatch) -> Iterator[Meta]:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    with Networks() as networks:
        yield Meta(networks)


def config(url: str, state: str) -> str:
    return f"""\
project: agora
timezone: UTC
locale: el
state: "{state}"
publish: {{retry_delay: 1h}}
channels:
  linkedin: {{type: linkedin, author: "{AUTHOR}", token: "${{LI_TOKEN}}", api_url: "{url}"}}
  facebook: {{type: facebook, page_id: "{PAGE}", token: "${{FB_TOKEN}}", api_url: "{url}/v27.0"}}
  instagram:
    type: instagram
    user_id: "{IG_USER}"
    token: ${{IG_TOKEN}}
    api_url: {url}/v27.0
    media_base_url: {CDN}
"""


def calendar(channel: str, images: int) -> str:
    media = [f"      - {{file: media/stall.jpg, alt: '{ALT_1}'}}\n"]
    media.append(f"      - {{file: media/map.jpg, alt: '{ALT_2}'}}\n")
    return (
        "items:\n"
        "  - id: market\n"
        f"    channels: [{channel}]\n"
        "    template: posts/tip\n"
        "    at: 2026-12-02 08:30\n"
        "    media:\n" + "".join(media[:images])
    )


def make(make_project: MakeProject, meta: Meta, channel: str, images: int, state: str = "") -> Path:
    root = make_project(
        config=config(meta.networks.url, state or "sqlite:///state.db"),
        calendars={"c.yaml": calendar(channel, images)},
        templates={"posts/tip.j2": TEXT + "\n"},
    )
    (root / "media").mkdir()
    Image.new("RGB", (64, 48), "teal").save(root / "media" / "stall.jpg", "JPEG")
    Image.new("RGB", (30, 40), "orange").save(root / "media" / "map.jpg", "JPEG")
    return root


def publish(root: Path, now: str = NOW) -> dict[str, Any]:
    result = CliRunner().invoke(
        app, ["-C", str(root), "publish", "--now", now, "--format", "json"], catch_exceptions=False
    )
    for secret in ENV.values():
        assert secret not in result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def counts(report: dict[str, Any]) -> dict[str, int]:
    return {state: n for state, n in report["counts"].items() if n}


def killed_run(root: Path, meta: Meta, kill_on: Callable[[Request], bool]) -> None:
    """`commcal publish` as a real process, which the server SIGKILLs when a request that
    `kill_on` picks arrives, before answering it."""
    meta.kill_on = kill_on
    proc = subprocess.Popen(
        [*command(), "-C", str(root), "publish", "--now", NOW, "--format", "json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **ENV},
    )
    meta.pid = proc.pid
    assert proc.wait(timeout=30) == -signal.SIGKILL


def second(matches: Callable[[Request], bool]) -> Callable[[Request], bool]:
    """True for the second request that `matches` picks."""
    seen = [0]

    def pick(r: Request) -> bool:
        seen[0] += matches(r)
        return seen[0] == 2

    return pick


def images(root: Path) -> list[bytes]:
    return [(root / "media" / name).read_bytes() for name in ("stall.jpg", "map.jpg")]


def multipart(r: Request) -> dict[str, bytes]:
    """A multipart/form-data body's parts by name."""
    head = f"Content-Type: {r.headers['Content-Type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + r.body)
    return {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.iter_parts()
    }


# -- LinkedIn -------------------------------------------------------------------------------------


def test_linkedin_uploads_each_image_then_posts_once_with_their_urns_and_alt_texts(
    make_project: MakeProject, meta: Meta
) -> None:
    root = make(make_project, meta, "linkedin", 2)
    assert counts(publish(root)) == {"sent": 1}
    assert meta.seen() == [
        ("POST", "/rest/images"),
        ("PUT", "/dms-uploads/1"),
        ("POST", "/rest/images"),
        ("PUT", "/dms-uploads/3"),
        ("POST", "/rest/posts"),
    ]
    init, put, _, put2, post = meta.networks.requests
    assert urlsplit(init.path).query == "action=initializeUpload"
    assert json.loads(init.body) == {"initializeUploadRequest": {"owner": AUTHOR}}
    assert [put.body, put2.body] == images(root)
    assert put.headers["Content-Type"] == "image/jpeg"
    for r in meta.networks.requests:
        assert r.headers["Authorization"] == f"Bearer {ENV['LI_TOKEN']}"
    assert post.headers["X-Restli-Protocol-Version"] == "2.0.0"
    assert post.headers["LinkedIn-Version"] == "202607"
    body = json.loads(post.body)
    assert body["author"] == AUTHOR and body["commentary"] == TEXT
    assert body["content"] == {
        "multiImage": {
            "images": [
                {"id": "urn:li:image:C4E1", "altText": ALT_1},
                {"id": "urn:li:image:C4E3", "altText": ALT_2},
            ]
        }
    }
    assert counts(publish(root, LATER)) == {"already": 1}
    assert len(meta.networks.requests) == 5, "nothing sent again"


def test_linkedin_killed_between_the_uploads_and_the_post_posts_once_with_both_images(
    make_project: MakeProject, meta: Meta
) -> None:
    root = make(make_project, meta, "linkedin", 2)
    # Killed as the second image's upload begins: the first is uploaded and recorded.
    killed_run(root, meta, second(lambda r: urlsplit(r.path).path == "/rest/images"))
    assert counts(publish(root, LATER)) == {"sent": 1}
    posts = [r for r in meta.networks.requests if r.path == "/rest/posts"]
    assert len(posts) == 1, "posted exactly once"
    (post,) = posts
    ids = [i["id"] for i in json.loads(post.body)["content"]["multiImage"]["images"]]
    assert ids[0] == "urn:li:image:C4E1", "the upload recorded before the kill was reused"
    puts = [r for r in meta.networks.requests if r.method == "PUT"]
    assert [r.body for r in puts] == images(root), "each image uploaded once"


# -- Facebook -------------------------------------------------------------------------------------


def test_facebook_uploads_unpublished_photos_then_one_feed_post_attaching_them(
    make_project: MakeProject, meta: Meta
) -> None:
    root = make(make_project, meta, "facebook", 2)
    report = publish(root)
    assert counts(report) == {"sent": 1}
    assert meta.seen() == [
        ("POST", f"/v27.0/{PAGE}/photos"),
        ("POST", f"/v27.0/{PAGE}/photos"),
        ("POST", f"/v27.0/{PAGE}/feed"),
    ]
    first, second, feed = meta.networks.requests
    for photo, data in zip((first, second), images(root), strict=True):
        parts = multipart(photo)
        assert parts["published"] == b"false"
        assert parts["source"] == data
    form = parse_qs(feed.text)
    assert form["message"] == [TEXT]
    assert json.loads(form["attached_media"][0]) == [{"media_fbid": "991"}, {"media_fbid": "992"}]
    assert all(
        r.headers["Authorization"] == f"Bearer {ENV['FB_TOKEN']}" for r in meta.networks.requests
    )
    assert all(ENV["FB_TOKEN"] not in r.path for r in meta.networks.requests)
    assert report["deliveries"][0]["url"] == f"https://www.facebook.com/{PAGE}_553"


def test_facebook_killed_between_the_photos_and_the_post_posts_once_with_both(
    make_project: MakeProject, meta: Meta
) -> None:
    root = make(make_project, meta, "facebook", 2)
    killed_run(root, meta, second(lambda r: r.path.endswith("/photos")))
    assert counts(publish(root, LATER)) == {"sent": 1}
    feeds = [r for r in meta.networks.requests if r.path.endswith("/feed")]
    assert len(feeds) == 1, "posted exactly once"
    attached = json.loads(parse_qs(feeds[0].text)["attached_media"][0])
    assert attached[0] == {"media_fbid": "991"}, "the photo recorded before the kill was reused"
    assert len(attached) == 2
    uploaded = [
        multipart(r)["source"] for r in meta.networks.requests if r.path.endswith("/photos")
    ]
    one, two = images(root)
    assert uploaded == [one, two, two]  # the first once; the one cut off, again


# -- Instagram ------------------------------------------------------------------------------------


def test_instagram_makes_one_container_with_image_url_and_alt_text_then_publishes_it(
    make_project: MakeProject, meta: Meta
) -> None:
    root = make(make_project, meta, "instagram", 1)
    report = publish(root)
    assert counts(report) == {"sent": 1}
    container = "17889600000000001"
    assert meta.seen() == [
        ("POST", f"/v27.0/{IG_USER}/media"),
        ("GET", f"/v27.0/{container}"),
        ("POST", f"/v27.0/{IG_USER}/media_publish"),
        ("GET", "/v27.0/17920200000000003"),
    ]
    create, status, publish_, permalink = meta.networks.requests
    assert parse_qs(create.text) == {
        "image_url": [f"{CDN}/stall.jpg"],
        "alt_text": [ALT_1],
        "caption": [TEXT],
    }
    assert parse_qs(urlsplit(status.path).query) == {"fields": ["id,status_code,status"]}
    assert parse_qs(publish_.text) == {"creation_id": [container]}
    assert parse_qs(urlsplit(permalink.path).query) == {"fields": ["permalink"]}
    (delivery,) = report["deliveries"]
    assert delivery["url"] == "https://www.instagram.com/p/17920200000000003/"
    with open_ledger(f"sqlite:///{root / 'state.db'}") as ledger:
        assert ledger.uploads(delivery["id"])[PREPARED][1] == container


def test_instagram_killed_between_the_container_and_the_publish_publishes_that_container_once(
    make_project: MakeProject, meta: Meta
) -> None:
    root = make(make_project, meta, "instagram", 1)
    killed_run(
        root, meta, lambda r: r.method == "GET"
    )  # the first status check: the container is made
    assert list(meta.containers.values()) == ["FINISHED"]
    assert counts(publish(root, LATER)) == {"sent": 1}
    assert len(meta.containers) == 1, "no second container"
    (container,) = meta.containers
    publishes = [r for r in meta.networks.requests if r.path.endswith("/media_publish")]
    assert [parse_qs(r.text)["creation_id"] for r in publishes] == [[container]]
    assert meta.containers[container] == "PUBLISHED"


# -- several hosts, one ledger --------------------------------------------------------------------


def test_a_retry_on_another_host_finds_the_container_published_and_never_posts_twice(
    make_project: MakeProject,
    meta: Meta,
    ledger_url: str,  # noqa: F811  (the fixture: one SQLite file, or a PostgreSQL schema)
) -> None:
    host_a = make(make_project, meta, "instagram", 1, state=ledger_url)
    host_b = make(make_project, meta, "instagram", 1, state=ledger_url)
    # The publish goes out, and its answer is a 500 all the same.
    meta.publish_answer = lambda container: Answer(500, b"<html>upstream error</html>", "text/html")
    report = publish(host_a)
    assert counts(report) == {"pending": 1}, report
    meta.publish_answer = None
    report = publish(host_b, LATER)
    assert counts(report) == {"sent": 1}, report
    (delivery,) = report["deliveries"]
    assert "published by an earlier attempt" in delivery["detail"]
    assert len(meta.containers) == 1, "host B made no container of its own"
    publishes = [r for r in meta.networks.requests if r.path.endswith("/media_publish")]
    assert len(publishes) == 1, "never published a second time"
    assert len(meta.published) == 1
    assert not (host_a / ".commcal" / "containers").exists()
    assert counts(publish(host_a, LATER)) == {"already": 1}


def test_a_container_that_expired_before_the_retry_is_replaced_and_published_once(
    make_project: MakeProject, meta: Meta, tmp_path: Path
) -> None:
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    host_a = make(make_project, meta, "instagram", 1, state=shared)
    host_b = make(make_project, meta, "instagram", 1, state=shared)
    # Refused before publishing (nothing went out), then left unpublished past its 24 hours.
    unavailable = b'{"error": {"message": "Service temporarily unavailable", "code": 2}}'
    meta.networks.answer = lambda r: (
        Answer(503, unavailable) if r.path.endswith("/media_publish") else meta.answer(r)
    )
    assert counts(publish(host_a)) == {"pending": 1}
    (first,) = meta.containers
    meta.containers[first] = "EXPIRED"
    meta.networks.answer = meta.answer
    report = publish(host_b, LATER)
    assert counts(report) == {"sent": 1}, report
    assert len(meta.containers) == 2
    second = next(c for c in meta.containers if c != first)
    (publish_,) = [r for r in meta.networks.requests if r.path.endswith("/media_publish")][1:]
    assert parse_qs(publish_.text) == {"creation_id": [second]}
    with open_ledger(shared) as ledger:  # the new container replaced the old one's record
        assert ledger.uploads(report["deliveries"][0]["id"])[PREPARED][1] == second


def test_a_status_answered_with_garbage_publishes_nothing_and_keeps_the_container(
    make_project: MakeProject, meta: Meta
) -> None:
    root = make(make_project, meta, "instagram", 1)
    meta.networks.answer = lambda r: (
        Answer(200, b"<html>ok</html>", "text/html") if r.method == "GET" else meta.answer(r)
    )
    report = publish(root)
    assert counts(report) == {"pending": 1}, report
    assert "without status_code" in report["deliveries"][0]["detail"]
    meta.networks.answer = meta.answer
    assert counts(publish(root, LATER)) == {"sent": 1}
    assert len(meta.containers) == 1, "the recorded container was published, no new one"
    assert len([r for r in meta.networks.requests if r.path.endswith("/media_publish")]) == 1


def test_a_container_instagram_cannot_process_is_retried_with_a_new_one_and_its_reason(
    make_project: MakeProject, meta: Meta
) -> None:
    root = make(make_project, meta, "instagram", 1)

    def refused_once(r: Request) -> Answer:
        if r.method == "GET" and len(meta.containers) == 1:
            (container,) = meta.containers
            meta.containers[container] = "ERROR"
        return meta.answer(r)

    meta.networks.answer = refused_once
    report = publish(root)
    assert counts(report) == {"pending": 1}, report
    assert "is ERROR" in report["deliveries"][0]["detail"]
    assert "nothing was posted" in report["deliveries"][0]["detail"]
    meta.networks.answer = meta.answer
    assert counts(publish(root, LATER)) == {"sent": 1}
    assert len(meta.containers) == 2
    assert list(meta.containers.values()) == ["ERROR", "PUBLISHED"]
    assert len([r for r in meta.networks.requests if r.path.endswith("/media_publish")]) == 1


def test_an_unknown_resolved_not_sent_by_mistake_still_posts_once(
    make_project: MakeProject, meta: Meta
) -> None:
    """The publish went out but its connection broke: `unknown`. Someone resolves it "not
    sent" without looking; the next publish asks the recorded container, finds it PUBLISHED,
    and records `sent` instead of posting again."""
    root = make(make_project, meta, "instagram", 1)
    meta.publish_answer = lambda container: Answer(drop=True)
    report = publish(root)
    assert counts(report) == {"unknown": 1}, report
    delivery = report["deliveries"][0]["id"]
    meta.publish_answer = None
    result = CliRunner().invoke(app, ["-C", str(root), "resolve", delivery, "--not-sent"])
    assert result.exit_code == 0, result.output
    report = publish(root, LATER)
    assert counts(report) == {"sent": 1}, report
    assert "published by an earlier attempt" in report["deliveries"][0]["detail"]
    assert len([r for r in meta.networks.requests if r.path.endswith("/media_publish")]) == 1
    assert len(meta.published) == 1 and len(meta.containers) == 1
