"""`media:` in a calendar, through `commcal publish`, on X, Telegram, Discord and Slack: one
loopback server answers each as its API does and keeps state as X and Slack do (uploads it
knows, uploads it has forgotten), so each post is made once with both images and their alt
texts, an upload's ref is reused by a resumed post, and a forgotten upload is uploaded again.
`validate` names the calendar line of what a network refuses, with the fix."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner
from werkzeug import Request, Response

from commcal.cli import app
from tests.conftest import MakeProject
from tests.media_helpers import Seen, seen

NOW = "2026-12-02T09:00:00Z"
LATER = "2026-12-02T11:00:00Z"  # past the retry delay (1h), within max_late (6h)
ALT_1 = "Τρεις εθελοντές στον πάγκο της αγοράς"
ALT_2 = "Ο χάρτης της λαϊκής, με τον πάγκο σημειωμένο"
ENV = {
    "X_TOKEN": "xtok-media-Qm2Zk9TvW3",
    "TG_TOKEN": "7654321098:tgMediaLUIqnU66vE6eMAsc",
    "DISCORD_URL": "",  # set per server below
    "SLACK_BOT": "xoxb-media-4417-8808-Zk9TvW",
}


class Networks:
    """X, Telegram, Discord and Slack on one loopback server, answering as their APIs do."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.x_uploads: set[str] = set()  # the media ids X still knows
        self.slack_files: set[str] = set()
        self.fail_next_post = 0  # answer this many posts 503 (nothing posted)
        self.forget_at_post = False  # drop every upload when the next post comes
        self.next_id = 1880028106020515840
        server.expect_request(re.compile(".*")).respond_with_handler(self)

    def __call__(self, request: Request) -> Response:
        found = seen(request)
        with self.lock:
            self.seen.append(found)
            return self._answer(found)

    def _json(self, body: object, status: int = 200) -> Response:
        return Response(json.dumps(body), status, content_type="application/json")

    def _post_refused(self) -> Response | None:
        if self.fail_next_post:
            self.fail_next_post -= 1
            return self._json({"title": "Service Unavailable", "ok": False}, 503)
        return None

    def _answer(self, r: Seen) -> Response:
        path = r.path
        self.next_id += 1
        if path == "/2/media/upload":
            self.x_uploads.add(str(self.next_id))
            return self._json({"data": {"id": str(self.next_id), "media_key": f"3_{self.next_id}"}})
        if path == "/2/media/metadata":
            return self._json({"data": {"associated_metadata": True}})
        if path == "/2/tweets":
            refused = self._post_refused()
            if refused:
                return refused
            if self.forget_at_post:
                self.forget_at_post = False
                self.x_uploads.clear()
            ids = r.json().get("media", {}).get("media_ids", [])
            if any(i not in self.x_uploads for i in ids):
                return self._json(
                    {
                        "errors": [
                            {
                                "parameters": {"media.media_ids": ids},
                                "message": "Your media IDs are invalid.",
                            }
                        ],
                        "title": "Invalid Request",
                    },
                    400,
                )
            return self._json({"data": {"id": str(self.next_id), "text": ""}}, 201)
        if "/sendMediaGroup" in path or "/sendPhoto" in path:
            result = [{"message_id": 70 + n} for n in range(2)]
            return self._json({"ok": True, "result": result if "Group" in path else result[0]})
        if path.startswith("/api/webhooks/"):
            return self._json({"id": "1189000000000000001", "channel_id": "20"})
        if path == "/slack/files.getUploadURLExternal":
            file_id = f"F0{self.next_id}"
            self.slack_files.add(file_id)
            upload = self.server.url_for(f"/slack-upload/{file_id}")
            return self._json({"ok": True, "upload_url": upload, "file_id": file_id})
        if path.startswith("/slack-upload/"):
            return Response("OK - 1", content_type="text/plain")
        if path == "/slack/files.completeUploadExternal":
            refused = self._post_refused()
            if refused:
                return refused
            files = r.json()["files"]
            if any(f["id"] not in self.slack_files for f in files):
                return self._json({"ok": False, "error": "file_not_found"})
            return self._json({"ok": True, "files": files})
        return self._json({"ok": False, "error": "unknown_method"}, 404)

    def requests(self, path: str) -> list[Seen]:
        return [r for r in self.seen if r.path == path or r.path.endswith(path)]


@pytest.fixture
def networks(httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Networks]:
    env = {**ENV, "DISCORD_URL": httpserver.url_for("/api/webhooks/1234/discordMediaTok")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield Networks(httpserver)


def config(url: str) -> str:
    return f"""\
timezone: UTC
locale: el
state: sqlite:///state.db
publish: {{retry_delay: 1h}}
channels:
  x: {{type: x, token: "${{X_TOKEN}}", api_url: "{url}"}}
  telegram: {{type: telegram, token: "${{TG_TOKEN}}", chat_id: "@agora_news", api_url: "{url}"}}
  discord: {{type: discord, webhook_url: "${{DISCORD_URL}}"}}
  slack: {{type: slack, bot_token: "${{SLACK_BOT}}", channel_id: C0AGORA, api_url: "{url}/slack"}}
  slackhook: {{type: slack, webhook_url: "${{DISCORD_URL}}"}}
"""


def calendar(channel: str, text_var: str = "") -> str:
    return (
        "items:\n"
        "  - id: market\n"
        f"    channels: [{channel}]\n"
        "    template: posts/tip\n"
        "    at: 2026-12-02 08:30\n"
        f"{text_var}"
        "    media:\n"
        f"      - {{file: media/stall.png, alt: '{ALT_1}'}}\n"
        f"      - {{file: media/map.jpg, alt: '{ALT_2}'}}\n"
    )


def make(make_project: MakeProject, networks: Networks, channel: str, **kw: str) -> Path:
    root = make_project(
        config=config(networks.server.url_for("").rstrip("/")),
        calendars={"c.yaml": calendar(channel, **kw)},
        templates={"posts/tip.j2": "Λαϊκή αγορά το Σάββατο {{ more | default('') }}\n"},
    )
    (root / "media").mkdir()
    Image.new("RGB", (64, 48), "teal").save(root / "media" / "stall.png")
    Image.new("RGB", (30, 40), "orange").save(root / "media" / "map.jpg")
    return root


def publish(root: Path, now: str = NOW) -> dict[str, int]:
    result = CliRunner().invoke(
        app, ["-C", str(root), "publish", "--now", now, "--format", "json"], catch_exceptions=False
    )
    for secret in ENV.values():
        if secret:
            assert secret not in result.output
    counts: dict[str, int] = json.loads(result.stdout)["counts"]
    return {state: n for state, n in counts.items() if n}


def uploads(root: Path) -> list[str]:
    with sqlite3.connect(root / "state.db") as conn:
        return [ref for (ref,) in conn.execute("SELECT ref FROM media_uploads ORDER BY seq")]


def images(root: Path) -> list[bytes]:
    return [(root / "media" / name).read_bytes() for name in ("stall.png", "map.jpg")]


# -- X --------------------------------------------------------------------------------------------


def test_x_posts_once_with_both_images_and_their_alt_texts(
    make_project: MakeProject, networks: Networks
) -> None:
    root = make(make_project, networks, "x")
    assert publish(root) == {"sent": 1}
    up = networks.requests("/2/media/upload")
    assert [r.files["media"].data for r in up] == images(root)
    ids = uploads(root)
    assert [r.json() for r in networks.requests("/2/media/metadata")] == [
        {"id": ids[0], "metadata": {"alt_text": {"text": ALT_1}}},
        {"id": ids[1], "metadata": {"alt_text": {"text": ALT_2}}},
    ]
    (post,) = networks.requests("/2/tweets")
    assert post.json()["media"] == {"media_ids": ids}
    assert publish(root) == {"already": 1}
    assert len(networks.requests("/2/media/upload")) == 2, "nothing uploaded again"


def test_x_a_post_retried_reuses_the_uploads(make_project: MakeProject, networks: Networks) -> None:
    root = make(make_project, networks, "x")
    networks.fail_next_post = 1
    assert publish(root) == {"pending": 1}
    assert publish(root, LATER) == {"sent": 1}
    assert len(networks.requests("/2/media/upload")) == 2, "the recorded uploads were reused"
    first, second = networks.requests("/2/tweets")
    assert first.json()["media"] == second.json()["media"] == {"media_ids": uploads(root)}


def test_x_uploads_it_forgot_are_uploaded_again_once(
    make_project: MakeProject, networks: Networks
) -> None:
    root = make(make_project, networks, "x")
    networks.fail_next_post = 1
    assert publish(root) == {"pending": 1}
    networks.forget_at_post = True  # by the retry, X has dropped the unused uploads
    assert publish(root, LATER) == {"sent": 1}
    assert len(networks.requests("/2/media/upload")) == 4
    posts = networks.requests("/2/tweets")
    assert len(posts) == 3  # refused 503, refused as stale, then posted with fresh ids
    fresh = uploads(root)[-2:]
    assert posts[-1].json()["media"]["media_ids"] == fresh
    assert posts[1].json()["media"]["media_ids"] != fresh
    assert [r.files["media"].data for r in networks.requests("/2/media/upload")[2:]] == images(root)


# -- Telegram, Discord ------------------------------------------------------------------------


def test_telegram_sends_one_album_with_the_text_as_caption(
    make_project: MakeProject, networks: Networks
) -> None:
    root = make(make_project, networks, "telegram")
    assert publish(root) == {"sent": 1}
    (album,) = networks.requests("/sendMediaGroup")
    media = json.loads(album.form["media"])
    assert [m["media"] for m in media] == ["attach://file0", "attach://file1"]
    assert media[0]["caption"].startswith("Λαϊκή αγορά το Σάββατο")
    assert [album.files[f"file{n}"].data for n in range(2)] == images(root)
    assert uploads(root) == [], "Telegram takes media in the post's request"


def test_discord_posts_the_files_with_their_alt_texts(
    make_project: MakeProject, networks: Networks
) -> None:
    root = make(make_project, networks, "discord")
    assert publish(root) == {"sent": 1}
    (post,) = networks.requests("/api/webhooks/1234/discordMediaTok")
    payload = json.loads(post.form["payload_json"])
    assert [a["description"] for a in payload["attachments"]] == [ALT_1, ALT_2]
    assert [post.files[f"files[{n}]"].data for n in range(2)] == images(root)


# -- Slack ------------------------------------------------------------------------------------


def test_slack_uploads_then_shares_once_and_a_retry_reuses_the_files(
    make_project: MakeProject, networks: Networks
) -> None:
    root = make(make_project, networks, "slack")
    networks.fail_next_post = 1
    assert publish(root) == {"pending": 1}
    assert publish(root, LATER) == {"sent": 1}
    tickets = networks.requests("/slack/files.getUploadURLExternal")
    assert [t.form["alt_txt"] for t in tickets] == [ALT_1, ALT_2]
    sent = [r for r in networks.seen if r.path.startswith("/slack-upload/")]
    assert [r.files["filename"].data for r in sent] == images(root)
    first, second = networks.requests("/slack/files.completeUploadExternal")
    assert [f["id"] for f in second.json()["files"]] == uploads(root)
    assert first.json() == second.json()
    assert second.json()["channel_id"] == "C0AGORA"


def test_a_webhook_only_slack_channel_is_refused_at_the_calendar_line(
    make_project: MakeProject, networks: Networks
) -> None:
    root = make(make_project, networks, "slackhook")
    result = CliRunner().invoke(app, ["-C", str(root), "validate", "--now", "2026-12-01T00:00Z"])
    assert result.exit_code == 1
    assert "calendars/c.yaml:7:" in result.stderr
    assert "cannot carry files: add bot_token" in result.stderr
    assert publish(root) == {"failed": 1}
    assert networks.seen == [], "nothing posted, nothing uploaded"


def test_a_telegram_caption_too_long_is_refused_before_anything_is_sent(
    make_project: MakeProject, networks: Networks
) -> None:
    long_text = "    vars: {more: '" + "λ" * 1100 + "'}\n"
    root = make(make_project, networks, "telegram", text_var=long_text)
    result = CliRunner().invoke(app, ["-C", str(root), "validate", "--now", "2026-12-01T00:00Z"])
    assert result.exit_code == 1
    assert "over telegram's limit of 1024 for a caption" in result.stderr
    assert publish(root) == {"failed": 1}
    assert networks.seen == []


# -- mail -----------------------------------------------------------------------------------------


def test_a_greek_newsletter_goes_out_with_its_images_inline(
    make_project: MakeProject, smtp: tuple[int, Any]
) -> None:
    port, box = smtp
    root = make_project(
        config=f"""\
timezone: Europe/Athens
locale: el
state: sqlite:///state.db
channels:
  mail:
    type: smtp
    host: 127.0.0.1
    port: {port}
    security: none
    from: "Λαϊκή Αγορά <agora@example.org>"
    to: "members@example.org"
""",
        calendars={
            "c.yaml": (
                "items:\n"
                "  - id: letter\n"
                "    kind: newsletter\n"
                "    title: Νέα της λαϊκής\n"
                "    channels: [mail]\n"
                "    template: newsletters/n\n"
                "    at: 2026-12-02 10:30\n"
                "    media:\n"
                f"      - {{file: media/stall.png, alt: '{ALT_1}'}}\n"
                f"      - {{file: media/map.jpg, alt: '{ALT_2}'}}\n"
            )
        },
        templates={
            "newsletters/n.j2": "Γεια σας,\nη λαϊκή είναι το Σάββατο.\n",
            "newsletters/n.html.j2": (
                "<html><body><h1>Νέα της λαϊκής</h1>"
                f'<p><img src="cid:stall.png" alt="{ALT_1}"></p>'
                "<p>Σας περιμένουμε το Σάββατο.</p></body></html>"
            ),
        },
    )
    (root / "media").mkdir()
    Image.new("RGB", (64, 48), "teal").save(root / "media" / "stall.png")
    Image.new("RGB", (30, 40), "orange").save(root / "media" / "map.jpg")
    assert publish(root) == {"sent": 1}
    (mail,) = box.mails()
    assert str(mail["Subject"]) == "Νέα της λαϊκής"
    related = mail.get_body(("related",))
    assert related is not None and related.get_content_type() == "multipart/related"
    html = next(related.iter_parts()).get_content()
    parts = {
        str(part["Content-ID"]).strip("<>"): part for part in mail.walk() if part["Content-ID"]
    }
    cids = re.findall(r'src="cid:([^"]+)"', html)
    assert sorted(cids) == sorted(parts), "every cid: has its part and every part its cid:"
    assert [parts[c].get_content() for c in cids] == images(root)
    assert [parts[c].get_filename() for c in cids] == ["stall.png", "map.jpg"]
    assert all(parts[c].get_content_disposition() == "inline" for c in cids)
    assert f'alt="{ALT_1}"' in html and f'alt="{ALT_2}"' in html
    plain = mail.get_body(("plain",))
    assert plain is not None
    text = plain.get_content()
    assert f"[{ALT_1}]" in text and f"[{ALT_2}]" in text


def test_validate_names_the_line_of_each_file_a_network_refuses(
    make_project: MakeProject, networks: Networks
) -> None:
    root = make_project(
        config=config(networks.server.url_for("").rstrip("/")),
        calendars={
            "c.yaml": (
                "items:\n"
                "  - id: market\n"
                "    channels: [x, discord, telegram]\n"
                "    template: posts/tip\n"
                "    at: 2026-12-02 08:30\n"
                "    media:\n"
                f"      - {{file: media/stall.png, alt: '{ALT_1}'}}\n"
                "      - {file: media/dance.gif, alt: 'Χορός'}\n"
                f"      - {{file: media/stall.png, alt: '{'α' * 1100}'}}\n"
            )
        },
        templates={"posts/tip.j2": "Λαϊκή αγορά\n"},
    )
    (root / "media").mkdir()
    Image.new("RGB", (64, 48), "teal").save(root / "media" / "stall.png")
    Image.new("P", (8, 8)).save(root / "media" / "dance.gif")
    result = CliRunner().invoke(app, ["-C", str(root), "validate", "--now", "2026-12-01T00:00Z"])
    assert result.exit_code == 1
    said = result.stderr
    at = "calendars/c.yaml:{}:9: error: item 'market' on {}: media/{}: {}"
    for line, channel, name, text in (
        (8, "x", "dance.gif", "x takes 4 images or 1 GIF alone"),
        (9, "x", "stall.png", "alt text is 1100 characters, over x's limit of 1000"),
        (9, "discord", "stall.png", "alt text is 1100 characters, over discord's limit of 1024"),
        (8, "telegram", "dance.gif", "telegram albums hold photos and videos only"),
    ):
        assert at.format(line, channel, name, text) in said, said
    assert networks.seen == []
