"""Images with Greek alt text posted through commcal to the real servers, and read back through
each server's own API, never through commcal: a Matrix homeserver (Synapse: /messages, the
media repository) and a Bluesky PDS (com.atproto.repo.getRecord, com.atproto.sync.getBlob)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from conftest import MakeProject
from PIL import Image
from real_servers import real_pds, real_synapse
from typer.testing import CliRunner

from commcal.cli import app

NOW = "2026-12-02T09:00:00Z"
ALT_1 = "Τρεις εθελοντές στον πάγκο της αγοράς"
ALT_2 = "Ο χάρτης της λαϊκής, με τον πάγκο σημειωμένο"
CALENDAR = f"""\
items:
  - id: market
    channels: [chan]
    template: posts/market
    at: 2026-12-02 08:30
    media:
      - {{file: media/stall.png, alt: '{ALT_1}'}}
      - {{file: media/map.jpg, alt: {{el: '{ALT_2}', en: Map}}}}
"""


def project(make_project: MakeProject, channel: str) -> Path:
    root = make_project(
        config="timezone: UTC\nlocale: el\nstate: sqlite:///state.db\n"
        f"channels:\n  chan:\n{channel}",
        calendars={"c.yaml": CALENDAR},
        templates={"posts/market.j2": "Λαϊκή αγορά το Σάββατο\n"},
    )
    (root / "media").mkdir()
    Image.new("RGB", (64, 48), "teal").save(root / "media" / "stall.png")
    Image.new("RGB", (30, 40), "orange").save(root / "media" / "map.jpg")
    return root


def publish(root: Path, env: dict[str, str]) -> dict[str, Any]:
    result = CliRunner().invoke(
        app, ["-C", str(root), "publish", "--format", "json", "--now", NOW], env=env
    )
    assert not any(secret in result.output for secret in env.values())
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_real_synapse_two_images_with_greek_alt_text(make_project: MakeProject) -> None:
    import requests

    homeserver, token, room = real_synapse()
    channel = (
        f"    type: matrix\n    homeserver: {homeserver}\n"
        f"    access_token: ${{MATRIX_TOKEN}}\n    room_id: '{room}'\n"
    )
    root = project(make_project, channel)
    assert publish(root, {"MATRIX_TOKEN": token})["counts"] == {"sent": 1}
    auth = {"Authorization": f"Bearer {token}"}
    answer = requests.get(
        f"{homeserver}/_matrix/client/v3/rooms/{quote(room, safe='')}/messages",
        params={"dir": "f", "limit": 50},
        headers=auth,
        timeout=30,
    )
    answer.raise_for_status()
    messages = [e["content"] for e in answer.json()["chunk"] if e["type"] == "m.room.message"]
    assert [m["msgtype"] for m in messages] == ["m.text", "m.image", "m.image"]
    assert messages[0]["body"] == "Λαϊκή αγορά το Σάββατο"
    files = [root / "media" / "stall.png", root / "media" / "map.jpg"]
    for content, alt, path, mime, size in zip(
        messages[1:],
        (ALT_1, ALT_2),
        files,
        ("image/png", "image/jpeg"),
        ((64, 48), (30, 40)),
        strict=True,
    ):
        assert content["body"] == alt
        assert content["url"].startswith("mxc://")
        assert content["info"] == {
            "mimetype": mime,
            "size": path.stat().st_size,
            "w": size[0],
            "h": size[1],
        }
        server_name, media_id = content["url"].removeprefix("mxc://").split("/", 1)
        download = requests.get(
            f"{homeserver}/_matrix/client/v1/media/download/{server_name}/{media_id}",
            headers=auth,
            timeout=30,
        )
        download.raise_for_status()
        assert download.content == path.read_bytes()
    # published again: nothing new in the room
    assert publish(root, {"MATRIX_TOKEN": token})["counts"] == {"already": 1}


def test_real_pds_two_images_with_greek_alt_text(make_project: MakeProject) -> None:
    account = real_pds()
    channel = (
        f"    type: bluesky\n    service: {account.service}\n    handle: {account.handle}\n"
        "    app_password: ${SKY_PASSWORD}\n"
    )
    root = project(make_project, channel)
    report = publish(root, {"SKY_PASSWORD": account.password})
    assert report["counts"] == {"sent": 1}, report
    [listed] = account.posts()
    rkey = listed["uri"].rsplit("/", 1)[1]
    record = account.xrpc(
        "com.atproto.repo.getRecord", repo=account.did, collection="app.bsky.feed.post", rkey=rkey
    )["value"]
    embed = record["embed"]
    assert embed["$type"] == "app.bsky.embed.images"
    assert [i["alt"] for i in embed["images"]] == [ALT_1, ALT_2]
    assert [i["aspectRatio"] for i in embed["images"]] == [
        {"width": 64, "height": 48},
        {"width": 30, "height": 40},
    ]
    for image, name, mime in zip(
        embed["images"], ("stall.png", "map.jpg"), ("image/png", "image/jpeg"), strict=True
    ):
        assert image["image"]["mimeType"] == mime
        assert account.blob(image["image"]["ref"]["$link"]) == (root / "media" / name).read_bytes()
