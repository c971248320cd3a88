"""Media uploads inside the exactly-once protocol, against loopback servers that keep state as
Mastodon, a Bluesky PDS and a Matrix homeserver do (tests/media_servers.py): every post once,
each with its images; each upload's ref recorded before the post and reused by a resumed send;
a stale upload uploaded again once."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MakeProject
from media_servers import MediaServers
from PIL import Image
from test_publish_processes import command

from commcal.ledger import open_ledger
from commcal.project import load_project
from commcal.publish import OutcomeState, publish
from commcal.timeutil import parse_datetime

NOW = "2026-12-02T09:00:00Z"
ALT_1 = "Τρεις εθελοντές στον πάγκο της αγοράς"
ALT_2 = "Ο χάρτης της λαϊκής, με τον πάγκο σημειωμένο"
ENV = {"M_TOKEN": "mtok-media-1", "B_PASS": "bpass-media-1", "X_TOKEN": "syt_media_1"}


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[MediaServers]:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    with MediaServers() as running:
        yield running


def config(url: str, publish: str = "retry_delay: 0s") -> str:
    return f"""\
timezone: UTC
locale: el
state: sqlite:///state.db
publish: {{{publish}}}
channels:
  mastodon: {{type: mastodon, instance: "{url}", token: "${{M_TOKEN}}"}}
  bluesky: {{type: bluesky, service: "{url}", handle: a.example.org, app_password: "${{B_PASS}}"}}
  matrix:
    type: matrix
    homeserver: "{url}"
    access_token: "${{X_TOKEN}}"
    room_id: "!room:example.org"
"""


def calendar(channel: str, count: int = 1, images: int = 2) -> str:
    media = (
        "      - {file: media/stall.png, alt: {el: '" + ALT_1 + "', en: Stall}, focus: [0, 0.5]}\n"
        "      - {file: media/map.jpg, alt: '" + ALT_2 + "'}\n"
    )
    return (
        "items:\n"
        "  - id: market\n"
        f"    channels: [{channel}]\n"
        "    template: posts/tip\n"
        "    schedule: {every: 1m, start: '2026-12-02 08:00', "
        f"until: '2026-12-02 08:{count:02d}'}}\n"
        "    media:\n" + "".join(media.splitlines(keepends=True)[:images])
    )


def make(make_project: MakeProject, servers: MediaServers, channel: str, **kw: object) -> Path:
    publish_settings = str(kw.pop("publish", "retry_delay: 0s"))
    root = make_project(
        config=config(servers.url, publish_settings),
        calendars={"c.yaml": calendar(channel, **kw)},  # type: ignore[arg-type]
        templates={"posts/tip.j2": "Λαϊκή αγορά {{ at.isoformat() }}\n"},
    )
    (root / "media").mkdir()
    Image.new("RGB", (64, 48), "teal").save(root / "media" / "stall.png")
    Image.new("RGB", (30, 40), "orange").save(root / "media" / "map.jpg")
    return root


def run(root: Path, now: str = NOW) -> dict[OutcomeState, int]:
    report = publish(load_project(root), now=parse_datetime(now))
    return report.counts()


def recorded_uploads(root: Path) -> list[tuple[str, int, str]]:
    with sqlite3.connect(root / "state.db") as conn:
        rows = conn.execute("SELECT delivery_id, position, ref FROM media_uploads ORDER BY seq")
        return [(d, int(p), r) for d, p, r in rows]


# -- Mastodon -----------------------------------------------------------------------------------


def test_mastodon_posts_once_with_both_images_alt_text_and_focus(
    make_project: MakeProject, servers: MediaServers
) -> None:
    root = make(make_project, servers, "mastodon")
    assert run(root) == {OutcomeState.SENT: 1}
    (status,) = servers.statuses
    assert [(m["description"], m["focus"]) for m in status.media] == [
        (ALT_1, "0,0.5"),
        (ALT_2, None),
    ]
    assert [ref for _, _, ref in recorded_uploads(root)] == [m["id"] for m in status.media]
    assert run(root) == {OutcomeState.ALREADY: 1}  # the next run: nothing more, no upload
    assert servers.counts == {"upload": 2, "post": 1}


def test_mastodon_waits_for_a_file_still_processing(
    make_project: MakeProject, servers: MediaServers
) -> None:
    servers.processing = 1  # 202 on upload, 206 once, then 200 with the url
    root = make(make_project, servers, "mastodon", images=1)
    assert run(root) == {OutcomeState.SENT: 1}
    (status,) = servers.statuses
    assert status.media[0]["description"] == ALT_1


@pytest.mark.parametrize("drop", ["drop", "drop-after"])
def test_the_connection_drops_on_the_post_after_the_uploads(
    make_project: MakeProject, servers: MediaServers, drop: str
) -> None:
    """The uploads succeed; the post's connection breaks, before the server made the status
    ("drop") or after ("drop-after"). The retry posts with the recorded uploads (none is sent
    again) and the same Idempotency-Key: one status, with both images."""
    posts = []

    def hook(kind: str, path: str) -> str | None:
        if kind == "post":
            posts.append(path)
            return drop if len(posts) == 1 else None
        return None

    servers.hook = hook
    root = make(make_project, servers, "mastodon")
    assert run(root) == {OutcomeState.SENT: 1}
    (status,) = servers.statuses
    assert [m["description"] for m in status.media] == [ALT_1, ALT_2]
    assert servers.counts == {"upload": 2, "post": 2}
    assert len(recorded_uploads(root)) == 2


def test_a_forgotten_upload_is_uploaded_again_once(
    make_project: MakeProject, servers: MediaServers
) -> None:
    """A first run uploads and dies before posting (its post connection breaks, and the run is
    stopped there); meanwhile the server dropped the unattached files. The next run (within
    the hour Mastodon keeps the Idempotency-Key) posts with the recorded ids, gets 422,
    uploads afresh once, and posts: one status, with the new files."""

    def hook(kind: str, path: str) -> str | None:
        return "drop" if kind == "post" and servers.counts["post"] == 1 else None

    servers.hook = hook
    root = make(make_project, servers, "mastodon", publish="retry_delay: 10m")
    assert run(root) == {OutcomeState.PENDING: 1}
    first = [ref for _, _, ref in recorded_uploads(root)]
    servers.forget_unattached()
    assert run(root, "2026-12-02T09:30:00Z") == {OutcomeState.SENT: 1}
    (status,) = servers.statuses
    assert [m["description"] for m in status.media] == [ALT_1, ALT_2]
    later = [ref for _, _, ref in recorded_uploads(root)]
    assert later[:2] == first and later[2:] == [m["id"] for m in status.media]
    assert servers.counts == {"upload": 4, "post": 3}


def test_uploads_forgotten_twice_fail_the_delivery_without_a_post(
    make_project: MakeProject, servers: MediaServers
) -> None:
    def hook(kind: str, path: str) -> str | None:
        if kind == "post":
            servers.forget_unattached()
        return None

    servers.hook = hook
    root = make(make_project, servers, "mastodon", images=1)
    report = publish(load_project(root), now=parse_datetime(NOW))
    (outcome,) = report.outcomes
    assert outcome.state is OutcomeState.FAILED
    assert "not found or already attached" in outcome.detail
    assert servers.statuses == [] and servers.counts == {"upload": 2, "post": 2}


def test_an_upload_the_server_cannot_take_posts_nothing(
    make_project: MakeProject, servers: MediaServers
) -> None:
    def hook(kind: str, path: str) -> str | None:
        return "drop" if kind == "upload" else None

    servers.hook = hook
    root = make(make_project, servers, "mastodon", publish="retry_delay: 1h", images=1)
    (state,) = run(root)
    assert state is OutcomeState.PENDING  # an upload that broke off: nothing was posted
    assert servers.statuses == [] and servers.counts.get("post") is None
    ledger = open_ledger(f"sqlite:///{root / 'state.db'}")
    try:
        (record,) = ledger.records()
        assert record.state.value == "pending"
    finally:
        ledger.close()


def test_uploads_slower_than_the_lease_renew_it_and_post(
    make_project: MakeProject, servers: MediaServers
) -> None:
    """Two uploads of 1.2 s each under a 2 s lease: without renewal the second upload's ref
    could not be recorded (the claim's lease over) and nothing would be posted this run."""

    def hook(kind: str, path: str) -> str | None:
        if kind == "upload":
            time.sleep(1.2)
        return None

    servers.hook = hook
    root = make(make_project, servers, "mastodon", publish="retry_delay: 0s, lease: 2s")
    assert run(root) == {OutcomeState.SENT: 1}
    (status,) = servers.statuses
    assert [m["description"] for m in status.media] == [ALT_1, ALT_2]


@pytest.mark.parametrize(
    ("answer", "said"),
    [("garbage", "not JSON, to the upload of stall.png; nothing was posted"), ("echo", "HTTP 401")],
)
def test_an_upload_answered_with_garbage_or_the_token_fails_without_a_post(
    make_project: MakeProject, servers: MediaServers, answer: str, said: str
) -> None:
    servers.hook = lambda kind, path: answer if kind == "upload" else None
    root = make(make_project, servers, "mastodon", images=1)
    report = publish(load_project(root), now=parse_datetime(NOW))
    (outcome,) = report.outcomes
    assert outcome.state is OutcomeState.FAILED and said in outcome.detail, outcome.detail
    assert ENV["M_TOKEN"] not in outcome.detail
    assert servers.statuses == [] and servers.counts.get("post") is None
    ledger = open_ledger(f"sqlite:///{root / 'state.db'}")
    try:
        (record,) = ledger.records()
        assert ENV["M_TOKEN"] not in (record.last_error or "")
        assert all(ENV["M_TOKEN"] not in (a.error or "") for a in ledger.attempts(record.id))
    finally:
        ledger.close()


# -- Bluesky ------------------------------------------------------------------------------------


def test_bluesky_embeds_both_blobs_with_alt_and_aspect_ratio(
    make_project: MakeProject, servers: MediaServers
) -> None:
    root = make(make_project, servers, "bluesky")
    assert run(root) == {OutcomeState.SENT: 1}
    (record,) = servers.records.values()
    images = record["embed"]["images"]
    assert [i["alt"] for i in images] == [ALT_1, ALT_2]
    assert [i["aspectRatio"] for i in images] == [
        {"width": 64, "height": 48},
        {"width": 30, "height": 40},
    ]
    assert all(i["image"]["ref"]["$link"] in servers.blobs for i in images)
    refs = [json.loads(ref) for _, _, ref in recorded_uploads(root)]
    assert [r["image"] for r in refs] == [i["image"] for i in images]


def test_bluesky_uploads_a_forgotten_blob_again(
    make_project: MakeProject, servers: MediaServers
) -> None:
    def hook(kind: str, path: str) -> str | None:
        if kind == "post" and servers.counts["post"] == 1:
            servers.forget_unattached()  # the blobs were garbage-collected before the post
        return None

    servers.hook = hook
    root = make(make_project, servers, "bluesky", images=1)
    assert run(root) == {OutcomeState.SENT: 1}
    (record,) = servers.records.values()
    assert record["embed"]["images"][0]["image"]["ref"]["$link"] in servers.blobs
    assert servers.counts == {"upload": 2, "post": 2}


# -- Matrix -------------------------------------------------------------------------------------


def test_matrix_posts_the_text_then_each_image_with_its_alt_text(
    make_project: MakeProject, servers: MediaServers
) -> None:
    root = make(make_project, servers, "matrix")
    assert run(root) == {OutcomeState.SENT: 1}
    (text_txn, text), (txn_1, image_1), (txn_2, image_2) = servers.events
    assert text["msgtype"] == "m.text" and text["body"].startswith("Λαϊκή αγορά")
    assert (txn_1, txn_2) == (f"{text_txn}.m1", f"{text_txn}.m2")
    assert image_1 == {
        "msgtype": "m.image",
        "body": ALT_1,
        "url": "mxc://example.org/m0",
        "info": {"mimetype": "image/png", "size": len(servers.uploads["mxc://example.org/m0"])}
        | {"w": 64, "h": 48},
    }
    assert image_2["body"] == ALT_2 and image_2["info"]["mimetype"] == "image/jpeg"
    assert (image_2["info"]["w"], image_2["info"]["h"]) == (30, 40)


def test_matrix_posts_a_video_as_m_video_with_its_size_and_length(
    make_project: MakeProject, servers: MediaServers
) -> None:
    from test_media import mp4

    root = make(make_project, servers, "matrix", images=0)
    (root / "media" / "clip.mp4").write_bytes(mp4(seconds=12.5, width=1280, height=720))
    calendar = root / "calendars" / "c.yaml"
    calendar.write_text(
        calendar.read_text(encoding="utf-8") + "      - {file: media/clip.mp4, alt: 'Βίντεο'}\n",
        encoding="utf-8",
    )
    assert run(root) == {OutcomeState.SENT: 1}
    (_, text), (_, video) = servers.events
    assert text["msgtype"] == "m.text"
    assert video["msgtype"] == "m.video" and video["body"] == "Βίντεο"
    assert video["info"] == {
        "mimetype": "video/mp4",
        "size": (root / "media" / "clip.mp4").stat().st_size,
        "w": 1280,
        "h": 720,
        "duration": 12500,
    }


def test_matrix_resends_only_the_missing_events_after_a_drop(
    make_project: MakeProject, servers: MediaServers
) -> None:
    def hook(kind: str, path: str) -> str | None:
        # the first image's event is made, its answer lost
        return "drop-after" if kind == "post" and servers.counts["post"] == 2 else None

    servers.hook = hook
    root = make(make_project, servers, "matrix")
    assert run(root) == {OutcomeState.SENT: 1}
    assert [content["msgtype"] for _, content in servers.events] == ["m.text", "m.image", "m.image"]
    assert servers.counts["upload"] == 2  # the retry used the recorded mxc:// URIs


# -- SIGKILL, in real processes -----------------------------------------------------------------


def start(root: Path, now: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*command(), "-C", str(root), "publish", "--now", now, "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **ENV},
    )


@pytest.mark.parametrize("channel", ["mastodon", "bluesky"])
def test_sigkill_between_upload_and_post_posts_each_once_with_its_images(
    make_project: MakeProject, servers: MediaServers, channel: str
) -> None:
    """Publishers killed with SIGKILL right after an upload was answered or as a post arrives
    (before or after the server made it), run after run, until one finishes: every post is
    there once, each with both images, and no file was uploaded twice for a post unless a
    kill came before its ref was recorded."""
    count = 6
    root = make(make_project, servers, channel, count=count, publish="retry_delay: 0s, lease: 1m")
    rng = random.Random(7)
    victim: list[subprocess.Popen[str]] = []
    kills: Counter[str] = Counter()

    def hook(kind: str, path: str) -> str | None:
        if victim and kind and rng.random() < 0.25:
            victim[0].send_signal(signal.SIGKILL)
            kills[kind] += 1
            return rng.choice(["drop", "drop-after"])
        return None

    servers.hook = hook
    for run_number in range(40):
        now = f"2026-12-02T09:{run_number * 2:02d}:00Z"  # each run 2 min on: leases ran out
        proc = start(root, now)
        victim[:] = [proc]
        _, err = proc.communicate(timeout=60)
        victim.clear()
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, err
    else:
        pytest.fail("publish never finished")
    assert kills["upload"] >= 1 and kills["post"] >= 1, kills
    if channel == "mastodon":
        assert len(servers.statuses) == count
        assert all([m["description"] for m in s.media] == [ALT_1, ALT_2] for s in servers.statuses)
    else:
        assert len(servers.records) == count
        for record in servers.records.values():
            images = record["embed"]["images"]
            assert [i["alt"] for i in images] == [ALT_1, ALT_2]
            assert all(i["image"]["ref"]["$link"] in servers.blobs for i in images)
    # Every post names the refs its delivery recorded last, per position.
    latest: dict[tuple[str, int], str] = {}
    for delivery, position, ref in recorded_uploads(root):
        latest[(delivery, position)] = ref
    assert len(latest) == 2 * count
    # An upload is made again only when the run died during it (its ref not yet recorded):
    # a run killed at the post resumes with both of its recorded uploads.
    assert servers.counts["upload"] <= 2 * count + kills["upload"], (servers.counts, kills)
    ledger = open_ledger(f"sqlite:///{root / 'state.db'}")
    try:
        records = ledger.records()
    finally:
        ledger.close()
    assert {r.state.value for r in records} == {"sent"} and len(records) == count
    # Each post names exactly the uploads its delivery recorded last: what the ledger kept is
    # what went out, whichever run uploaded it.
    for record in records:
        refs = [latest[(record.id, n)] for n in (0, 1)]
        if channel == "mastodon":
            (status,) = [s for s in servers.statuses if s.id == record.remote_id]
            assert [m["id"] for m in status.media] == refs
        else:
            assert record.remote_id is not None
            images = servers.records[record.remote_id.rsplit("/", 1)[1]]["embed"]["images"]
            assert [i["image"] for i in images] == [json.loads(r)["image"] for r in refs]
