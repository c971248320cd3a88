"""An item with both `thread:` and `media:`: its files go with the first part of the thread,
once, not with every reply (against the loopback Mastodon of tests/media_servers.py)."""

from __future__ import annotations

from conftest import MakeProject
from media_servers import MediaServers
from PIL import Image
from test_media_publish import config, run, servers  # noqa: F401 (the servers fixture)
from typer.testing import CliRunner

from commcal.cli import app
from commcal.publish import OutcomeState


def test_a_threads_picture_goes_with_its_first_part_only(
    make_project: MakeProject,
    servers: MediaServers,  # noqa: F811 (test_media_publish's fixture)
) -> None:
    root = make_project(
        config=config(servers.url),
        calendars={
            "c.yaml": "items:\n  - id: market\n    channels: [mastodon]\n"
            "    at: 2026-12-02 09:00\n    thread: [posts/one, posts/two, posts/three]\n"
            "    media: [{file: media/stall.png, alt: 'Ο πάγκος'}]\n"
        },
        templates={f"posts/{n}.j2": f"Μέρος {n}\n" for n in ("one", "two", "three")},
    )
    (root / "media").mkdir()
    Image.new("RGB", (64, 48), "teal").save(root / "media" / "stall.png")
    shown = CliRunner().invoke(app, ["-C", str(root), "plan", "--format", "json", "--now",
                                     "2026-12-02T08:00Z"])  # fmt: skip
    assert shown.exit_code == 0, shown.stdout
    assert shown.stdout.count('"file": "media/stall.png"') == 1, shown.stdout

    assert run(root) == {OutcomeState.SENT: 3}
    assert [len(s.media) for s in servers.statuses] == [1, 0, 0]
    assert servers.counts == {"upload": 1, "post": 3}
