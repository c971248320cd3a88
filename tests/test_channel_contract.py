"""The channel contract, run on every channel type registered through the `commcal.channels`
entry points, as the registry finds them: built-ins, and any plugin installed.

For each type: settings are validated without a connection (a loopback socket counts what
connects to it), `check` reports an over-limit text and the declared poll and media limits,
`send` works against a loopback server that answers like the API (tests/fake_networks.py plays
every HTTP network; aiosmtpd plays mail), the idempotency key reaches the network where it has
one, and `commcal channels --format json` shows no secret.

Every registered type needs a `Case` here. `test_the_plugin_example_passes_the_contract_suite`
installs the plugin of docs/plugins.md through an entry point and runs this suite on it.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote

import pytest
from typer.testing import CliRunner

from commcal.channels.base import Channel, EnvRef, Media, Message, Receipt, TransientError
from commcal.channels.bluesky import record_key
from commcal.channels.registry import GROUP, channel_class
from commcal.channels.smtp import message_id
from commcal.cli import app
from commcal.errors import ConfigError
from tests.conftest import MakeProject
from tests.fake_networks import DID, ENV_TEMPLATE, Answer, Networks, Request, posting_type
from tests.media_helpers import png

ROOT = Path(__file__).resolve().parent.parent
KEY = "community/launch/2026-12-01T09:00:00Z/contract"
REGISTERED = sorted(ep.name for ep in entry_points(group=GROUP))


@dataclass(frozen=True)
class Where:
    """Where a channel's settings point: an HTTP base URL, or an SMTP host and port."""

    url: str
    host: str
    port: int
    folder: Path


@dataclass(frozen=True)
class Case:
    """How to set up one channel type and what its network answers.

    `settings`: the channel's commcal.yaml keys (strings holding `${VAR}` are references);
    `answer`: what the loopback server answers a post with (None: no HTTP); `posts`: which
    recorded requests are posts; `remote_id`: what the receipt must then name; `carries_key`:
    whether what reached the other side holds the idempotency key (None: the network has no
    place for it); `send_without`: settings left out for `send` (a login the test server lacks).
    """

    settings: Callable[[Where], dict[str, Any]]
    kind: str = "http"  # "http", "smtp" or "local"
    answer: Callable[[Request], Answer] | None = None
    posts: Callable[[Request], bool] | None = None
    remote_id: str | None = None
    carries_key: Callable[[Any, str], bool] | None = None
    send_without: tuple[str, ...] = ()
    message: Mapping[str, Any] = field(default_factory=dict)
    media_settings: Callable[[Where], dict[str, Any]] | None = None
    media_answer: Callable[[Request], Answer] | None = None
    # Whether the network takes an alt text for an image (Telegram: none; Facebook: the Page
    # photo upload names no parameter for it, https://developers.facebook.com/docs/graph-api/
    # reference/page/photos).
    takes_alt: bool = True
    # Where the network fetches each file itself (Instagram, Threads: `media_base_url`), and
    # the image type it takes; None: the files' bytes go to the network.
    fetches_from: str | None = None
    image_suffix: str = ".png"


def _json(data: Any, status: int = 200) -> Answer:
    return Answer(status, json.dumps(data).encode())


def _header(name: str) -> Callable[[Any, str], bool]:
    return lambda seen, key: all(r.headers.get(name) == key for r in seen) and bool(seen)


def _slack_api_answer(request: Request) -> Answer:
    """files upload v2 (upload URL, bytes, complete) and chat.postMessage, as Slack answers."""
    if "getUploadURLExternal" in request.path:
        host = request.headers.get("Host", "127.0.0.1")
        return _json({"ok": True, "upload_url": f"http://{host}/upload/v1/x", "file_id": "F01"})
    if request.path.startswith("/upload/"):
        return Answer(200, b"OK - 75", "text/plain")
    return _json({"ok": True, "files": [{"id": "F01"}], "ts": "1733050800.000100"})


def _bluesky_media_answer(request: Request) -> Answer:
    if "uploadBlob" in request.path:
        blob = {"$type": "blob", "ref": {"$link": "bafkreicontract"}, "mimeType": "image/png"}
        return _json({"blob": {**blob, "size": len(request.body)}})
    return _bluesky_answer(request)


def _matrix_media_answer(request: Request) -> Answer:
    if "/media/v3/upload" in request.path:
        return _json({"content_uri": "mxc://example.org/contract"})
    return _json({"event_id": "$ev1:example.org"})


def _bluesky_answer(request: Request) -> Answer:
    if "createRecord" in request.path:
        body = json.loads(request.body)
        return _json({"uri": f"at://{body['repo']}/app.bsky.feed.post/{body['rkey']}", "cid": "b"})
    return _json({})


LINKEDIN_POST = "urn:li:share:7012345678901234567"
FB_POST = "104826152034921_1234567890123456"
IG_CONTAINER, IG_MEDIA = "17889615691921648", "17920238422030506"


def _linkedin_answer(request: Request) -> Answer:
    # 201 Created, the post's URN in x-restli-id and no body (the Posts API).
    return Answer(201, b"", headers={"x-restli-id": LINKEDIN_POST})


def _linkedin_media_answer(request: Request) -> Answer:
    """The Images API: initializeUpload names an upload URL and the image URN, the bytes are
    PUT there (201), then the post (https://learn.microsoft.com/en-us/linkedin/marketing/
    community-management/shares/images-api)."""
    if "initializeUpload" in request.path:
        host = request.headers.get("Host", "127.0.0.1")
        value = {"uploadUrl": f"http://{host}/dms-uploads/C4E10AQ", "image": "urn:li:image:C4E1"}
        return _json({"value": value})
    if request.path.startswith("/dms-uploads/"):
        return Answer(201, b"")
    return _linkedin_answer(request)


def _facebook_media_answer(request: Request) -> Answer:
    # An unpublished photo answers {"id"}; the feed post {"id": "<page>_<post>"}.
    if request.path.endswith("/photos"):
        return _json({"id": "1234567890123457"})
    return _json({"id": FB_POST})


def _container_answer(status_field: str, publish: str) -> Callable[[Request], Answer]:
    """Instagram and Threads: create a container, report it FINISHED, publish it."""

    def answer(request: Request) -> Answer:
        if publish in request.path:
            return _json({"id": IG_MEDIA})
        if request.method == "POST":
            return _json({"id": IG_CONTAINER})
        if request.path.startswith(f"/{IG_CONTAINER}"):
            return _json({"id": IG_CONTAINER, status_field: "FINISHED"})
        return _json({"id": IG_MEDIA, "permalink": "https://www.instagram.com/p/DAbC123/"})

    return answer


REMOTE_IMAGE = (Media("https://example.org/media/launch.jpg", alt="The new kitchen"),)

CASES: dict[str, Case] = {
    "console": Case(lambda where: {}, kind="local", remote_id=KEY),
    "file": Case(
        lambda where: {"path": str(where.folder / "out.jsonl")},
        kind="local",
        remote_id=KEY,
        carries_key=lambda seen, key: json.loads(seen)["key"] == key,
    ),
    "webhook": Case(
        lambda where: {"url": "${HOOK_URL}", "secret": "${HOOK_SECRET}"},
        # Any JSON {"id", "url"} a receiver answers (commcal/channels/webhook.py).
        answer=lambda request: _json({"id": "hook-7", "url": "https://example.org/7"}),
        media_answer=lambda request: _json({"id": "hook-7", "url": "https://example.org/7"}),
        remote_id="hook-7",
        carries_key=lambda seen, key: (
            _header("Idempotency-Key")(seen, key)
            and all(json.loads(r.body)["id"] == key for r in seen)
        ),
    ),
    "slack": Case(
        lambda where: {"webhook_url": "${SLACK_URL}"},
        # Slack's incoming webhooks answer 200 with the body `ok` and no id.
        answer=lambda request: Answer(200, b"ok", "text/html"),
        remote_id=None,
        media_settings=lambda where: {
            "bot_token": "${SLACK_BOT}",
            "channel_id": "C0SWEEP",
            "api_url": where.url + "/api",
        },
        media_answer=_slack_api_answer,
    ),
    "discord": Case(
        lambda where: {"webhook_url": "${DISCORD_URL}"},
        # With wait=true: the Message object.
        answer=lambda request: _json({"id": "1101", "channel_id": "20", "guild_id": "30"}),
        remote_id="1101",
        media_answer=lambda request: _json({"id": "1101", "channel_id": "20"}),
    ),
    "telegram": Case(
        lambda where: {"token": "${TG_TOKEN}", "chat_id": "@sweepchannel", "api_url": where.url},
        answer=lambda request: _json({"ok": True, "result": {"message_id": 42}}),
        remote_id="42",
        media_answer=lambda request: _json({"ok": True, "result": {"message_id": 42}}),
        takes_alt=False,  # Telegram has no alt text
    ),
    "mastodon": Case(
        lambda where: {"instance": where.url, "token": "${MASTO_TOKEN}"},
        answer=lambda request: _json({"id": "109", "url": "https://m.example/@a/109"}),
        remote_id="109",
        carries_key=_header("Idempotency-Key"),
        # The same {"id"} names an upload (/api/v2/media) and a status.
        media_answer=lambda request: _json({"id": "109", "url": "https://m.example/@a/109"}),
    ),
    "x": Case(
        lambda where: {"token": "${X_TOKEN}", "api_url": where.url},
        answer=lambda request: _json({"data": {"id": "1445880548472328192", "text": "t"}}),
        remote_id="1445880548472328192",
        # The same {"data": {"id"}} names an upload (/2/media/upload) and a post.
        media_answer=lambda request: _json({"data": {"id": "1445880548472328192"}}),
    ),
    "matrix": Case(
        lambda where: {
            "homeserver": where.url,
            "access_token": "${MATRIX_TOKEN}",
            "room_id": "!sweep:example.org",
        },
        answer=lambda request: _json({"event_id": "$ev1:example.org"}),
        remote_id="$ev1:example.org",
        media_answer=_matrix_media_answer,
        # The transaction id of PUT .../send/m.room.message/{txnId}.
        carries_key=lambda seen, key: (
            bool(seen) and all(unquote(r.path.rsplit("/", 1)[1]) == key for r in seen)
        ),
    ),
    "bluesky": Case(
        lambda where: {
            "handle": "sweep.bsky.social",
            "app_password": "${BSKY_PASSWORD}",
            "service": where.url,
        },
        answer=_bluesky_answer,
        media_answer=_bluesky_media_answer,
        remote_id=f"at://{DID}/app.bsky.feed.post/{record_key(KEY)}",
        # The record key is derived from the idempotency key.
        carries_key=lambda seen, key: (
            bool(seen) and all(json.loads(r.body)["rkey"] == record_key(key) for r in seen)
        ),
    ),
    "smtp": Case(
        lambda where: {
            "host": where.host,
            "port": where.port,
            "security": "none",
            "username": "newsletter",
            "password": "${SMTP_PASSWORD}",
            "from": "Community <hello@example.org>",
            "to": "members@example.org",
        },
        kind="smtp",
        send_without=("username", "password"),  # the test server offers no AUTH
        remote_id=message_id(KEY, "example.org"),
        # No key in SMTP, but the Message-ID is the delivery's, so a resend is recognisable.
        carries_key=lambda seen, key: (
            bool(seen)
            and all(mail["Message-ID"] == message_id(key, "example.org") for mail in seen)
        ),
        message={"subject": "Launch"},
    ),
    "linkedin": Case(
        lambda where: {
            "author": "urn:li:organization:2414183",
            "token": "${LI_TOKEN}",
            "api_url": where.url,
        },
        answer=_linkedin_answer,
        posts=lambda request: request.path.startswith("/rest/posts"),
        remote_id=LINKEDIN_POST,
        media_answer=_linkedin_media_answer,
    ),
    "facebook": Case(
        lambda where: {"page_id": "104826152034921", "token": "${FB_TOKEN}", "api_url": where.url},
        answer=lambda request: _json({"id": FB_POST}),
        posts=lambda request: request.path.endswith("/feed"),
        remote_id=FB_POST,
        media_answer=_facebook_media_answer,
        takes_alt=False,
    ),
    "instagram": Case(
        lambda where: {
            "user_id": "17841400008460056",
            "token": "${IG_TOKEN}",
            "api_url": where.url,
            "media_base_url": "https://example.org/media",
        },
        answer=_container_answer("status_code", "/media_publish"),
        posts=lambda request: "/media_publish" in request.path,
        remote_id=IG_MEDIA,
        message={"media": REMOTE_IMAGE},
        media_answer=_container_answer("status_code", "/media_publish"),
        fetches_from="https://example.org/media",
        image_suffix=".jpg",  # Instagram takes JPEG only
    ),
    "threads": Case(
        lambda where: {
            "user_id": "26122000000000001",
            "token": "${THREADS_TOKEN}",
            "api_url": where.url,
            "media_base_url": "https://example.org/media",
        },
        answer=_container_answer("status", "/threads_publish"),
        posts=lambda request: "/threads_publish" in request.path,
        remote_id=IG_MEDIA,
        media_answer=_container_answer("status", "/threads_publish"),
        fetches_from="https://example.org/media",
    ),
    # The example of docs/plugins.md (installed only by the test at the end of this file).
    "ntfy": Case(
        lambda where: {"topic": "community-news", "token": "${NTFY_TOKEN}", "server": where.url},
        answer=lambda request: _json(
            {"id": "sPs71M8A2T", "time": 1764579600, "event": "message", "topic": "c"}
        ),
        posts=lambda request: request.path == "/community-news",
        remote_id="sPs71M8A2T",
    ),
}

SECRETS = {
    "SMTP_PASSWORD": "smtpPwdGx41Lq0ZsW8",
    "NTFY_TOKEN": "tk_ntfyQ7u2WzXcV5bN8mLp3",
    "LI_TOKEN": "AQVq3R8xZ9bT5mWc7LpK2nD4",
    "FB_TOKEN": "EAAGq8wZx3Lm5Rt7YpK2vB6n",
    "IG_TOKEN": "IGQWv6nB2mQ9xRz4LpT8sJ3d",
    "THREADS_TOKEN": "THQWk7pW3nZ8qXv2LmR5cF9h",
}


def environment(url: str) -> dict[str, str]:
    return {**{k: v.format(url=url) for k, v in ENV_TEMPLATE.items()}, **SECRETS}


def _refs(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: EnvRef(v) if isinstance(v, str) and "${" in v else v for k, v in settings.items()}


def build(
    kind: str,
    where: Where,
    *,
    env: Mapping[str, str],
    drop: tuple[str, ...] = (),
    media: bool = False,
) -> Channel:
    case = CASES[kind]
    settings = {k: v for k, v in case.settings(where).items() if k not in drop}
    if media and case.media_settings is not None:
        settings.update(case.media_settings(where))
    return channel_class(kind)("contract", _refs(settings), env=env)


def message(kind: str, text: str = "Launch day: join us", **extra: Any) -> Message:
    fields = {**CASES[kind].message, **extra}
    return Message(channel="contract", channel_type=kind, text=text, **fields)


class CountingSocket:
    """A loopback port that listens and counts the connections made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    def accepted(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


@pytest.fixture
def counting() -> Iterator[CountingSocket]:
    server = CountingSocket()
    yield server
    server.sock.close()


def where_for(port: int, folder: Path) -> Where:
    return Where(url=f"http://127.0.0.1:{port}", host="127.0.0.1", port=port, folder=folder)


# -- the suite ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", REGISTERED)
def test_every_registered_type_has_a_case_and_loads(kind: str) -> None:
    assert kind in CASES, f"channel type {kind!r} has no Case in {__file__}: add one"
    cls = channel_class(kind)
    assert cls.type_name == kind
    assert cls.description


@pytest.mark.parametrize("kind", REGISTERED)
def test_constructing_and_checking_make_no_connection(
    kind: str, counting: CountingSocket, tmp_path: Path
) -> None:
    where = where_for(counting.port, tmp_path)
    channel = build(kind, where, env=environment(where.url))
    channel.check(message(kind))
    channel.describe_settings()
    channel.limit()
    assert counting.accepted() == 0
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("kind", REGISTERED)
def test_settings_are_validated_without_network(
    kind: str, counting: CountingSocket, tmp_path: Path
) -> None:
    cls = channel_class(kind)
    where = where_for(counting.port, tmp_path)
    good = CASES[kind].settings(where)
    env = environment(where.url)
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        cls("contract", _refs({**good, "colour": "red"}), env=env)
    for key, spec in cls.settings_schema.items():
        if spec.required:
            without = {k: v for k, v in good.items() if k != key}
            with pytest.raises(ConfigError, match=f"setting {key!r} is required"):
                cls("contract", _refs(without), env=env)
        if spec.private:
            literal = {**good, key: "pasted-secret-value"}
            with pytest.raises(ConfigError, match=f"setting {key!r} is a secret") as caught:
                cls("contract", _refs(literal), env=env)
            assert "pasted-secret-value" not in str(caught.value)
    assert counting.accepted() == 0


@pytest.mark.parametrize("kind", REGISTERED)
def test_check_reports_an_over_limit_text(kind: str, tmp_path: Path) -> None:
    channel = build(kind, where_for(9, tmp_path), env=environment("http://127.0.0.1:9"))
    limit = channel.limit()
    if limit is None:
        # No limit declared: a long text is not refused for its length.
        problems = channel.check(message(kind, "a" * 100_000))
        assert not [p for p in problems if p.startswith("text is ")], problems
        return
    at_limit = channel.check(message(kind, "a" * limit))
    assert not [p for p in at_limit if p.startswith("text is ")], at_limit
    over = channel.check(message(kind, "a" * (limit + 1)))
    assert any(f"limit of {limit} by 1" in problem for problem in over), over


def _poll(options: list[str], seconds: int | None, question: str = "Which day suits you?") -> dict:
    return {"question": question, "options": options, "duration_seconds": seconds}


@pytest.mark.parametrize("kind", REGISTERED)
def test_declared_poll_and_media_limits_are_checked(kind: str, tmp_path: Path) -> None:
    cls = channel_class(kind)
    channel = build(kind, where_for(9, tmp_path), env=environment("http://127.0.0.1:9"))
    names = ("poll_min_options", "poll_max_options", "poll_max_option_length")
    with_media = build(
        kind, where_for(9, tmp_path), env=environment("http://127.0.0.1:9"), media=True
    )
    if not cls.native_polls:
        assert all(getattr(cls, name) is None for name in names), "limits of polls it lacks"
    else:
        low, high = cls.poll_min_options, cls.poll_max_options
        longest = cls.poll_max_option_length
        assert low is not None and high is not None and longest is not None
        seconds = cls.poll_min_seconds or 86_400
        fine = _poll(["Monday", "Friday"][: max(low, 2)], seconds)

        def problems(poll: dict) -> list[str]:
            return channel.check(message(kind, options={"poll": poll}))

        assert problems(fine) == []
        assert problems(_poll([f"day {n}" for n in range(high + 1)], seconds))
        assert problems(_poll(["Monday", "x" * (longest + 1)], seconds))
        if low > 1:
            assert problems(_poll(["Monday"] * (low - 1), seconds))
        if cls.poll_min_seconds:
            assert problems(_poll(["Monday", "Friday"], cls.poll_min_seconds - 1))
        if cls.poll_max_seconds:
            assert problems(_poll(["Monday", "Friday"], cls.poll_max_seconds + 3600))
        if cls.poll_max_question_length:
            too_long = "q" * (cls.poll_max_question_length + 1)
            assert problems(_poll(["Monday", "Friday"], seconds, question=too_long))
    if cls.max_media is None:
        return
    # Media limits are checked per file by `check_media`, on what `mediacheck.inspect` reads
    # of a real image (Pillow), so a problem names the calendar line of its file.
    from PIL import Image

    from commcal.mediacheck import inspect

    image = tmp_path / "photo.jpg"  # JPEG: the one image type every adapter takes (Instagram)
    Image.new("RGB", (64, 48), "teal").save(image)
    files = [inspect(Media(str(image), alt="a photo"))] * (cls.max_media + 1)
    assert with_media.check_media(files[:-1]) == []
    assert with_media.check_media(files), "one attachment over max_media"
    if cls.max_media_bytes is not None:
        big = tmp_path / "big.png"  # a small picture padded past the limit after its end
        big.write_bytes(image.read_bytes())
        with open(big, "r+b") as handle:  # sparse: no disk or memory for Slack's 1 GB
            handle.truncate(big.stat().st_size + cls.max_media_bytes)
        assert with_media.check_media([inspect(Media(str(big), alt="a photo"))])


def _send(kind: str, tmp_path: Path, smtp_server: Any) -> tuple[Receipt, Any]:
    """Send one message the way `publish` does; return the receipt and what reached the other
    side (the posts recorded, the mails received, or what was written)."""
    case = CASES[kind]
    if case.kind == "smtp":
        port, box = smtp_server
        where = where_for(port, tmp_path)
        channel = build(kind, where, env=environment(where.url), drop=case.send_without)
        receipt = channel.send(message(kind), KEY)
        channel.close()
        return receipt, box.mails()
    if case.kind == "local":
        channel = build(kind, where_for(9, tmp_path), env=environment("http://127.0.0.1:9"))
        stream = io.StringIO()
        if kind == "console":
            channel.stream = stream  # type: ignore[attr-defined]
        receipt = channel.send(message(kind), KEY)
        out = tmp_path / "out.jsonl"
        return receipt, out.read_text() if out.exists() else stream.getvalue()
    with Networks() as networks:
        assert case.answer is not None
        networks.answer = case.answer
        where = where_for(int(networks.url.rsplit(":", 1)[1]), tmp_path)
        channel = build(kind, where, env=environment(networks.url))
        receipt = channel.send(message(kind), KEY)
        channel.close()
        posts = case.posts or (lambda request: posting_type(request.path) == kind)
        return receipt, [r for r in networks.requests if posts(r)]


@pytest.fixture
def smtp_server(request: pytest.FixtureRequest) -> Any:
    """The `smtp` fixture of conftest, started only for the smtp case."""
    if CASES[request.node.callspec.params["kind"]].kind != "smtp":
        return None
    return request.getfixturevalue("smtp")


@pytest.mark.parametrize("kind", REGISTERED)
def test_send_against_a_server_that_answers_like_the_api(
    kind: str, tmp_path: Path, smtp_server: Any
) -> None:
    receipt, seen = _send(kind, tmp_path, smtp_server)
    assert receipt.remote_id == CASES[kind].remote_id, receipt
    assert receipt.note == "", receipt
    if CASES[kind].kind != "local":
        assert len(seen) == 1, "one send is one post"
    else:
        assert "Launch day: join us" in seen


@pytest.mark.parametrize("kind", REGISTERED)
def test_media_reach_the_network_with_their_alt_text(kind: str, tmp_path: Path) -> None:
    """A message with two images, sent as the publisher sends it (each file uploaded first on a
    channel that `uploads_media`): both files' bytes reach the network, and so does each alt
    text where the network takes one (`takes_alt`)."""
    case, cls = CASES[kind], channel_class(kind)
    if cls.max_media == 0 or case.kind != "http":
        pytest.skip(f"{kind} sends no media over HTTP (mail: tests/test_channel_smtp.py)")
    if case.media_answer is None:
        pytest.skip(f"{kind}'s Case has no media_answer yet")
    images = [image(tmp_path / f"photo{n}{case.image_suffix}", shade=60 * n) for n in (1, 2)]
    alts = ("Η αφίσα της βραδιάς", "Ο χάρτης της αίθουσας")
    media = tuple(Media(str(p), alt=a) for p, a in zip(images, alts, strict=True))
    with Networks() as networks:
        networks.answer = case.media_answer
        where = where_for(int(networks.url.rsplit(":", 1)[1]), tmp_path)
        env = {**environment(networks.url), "SLACK_BOT": "xoxb-contract-bot-token"}
        channel = build(kind, where, env=env, media=True)
        sent = message(kind, media=media)
        assert channel.check(sent) == []
        from commcal.mediacheck import inspect  # the files it is about to send pass its limits

        assert channel.check_media([inspect(m) for m in media]) == []
        if cls.uploads_media:
            sent = replace(sent, media=tuple(replace(m, ref=channel.upload(m)) for m in media))
        receipt = channel.send(sent, KEY)
        channel.close()
    assert receipt.note == "", receipt
    everything = b"".join(r.body for r in networks.requests)
    for each in images:
        if case.fetches_from is not None:  # the network fetches it from its public address
            address = f"{case.fetches_from}/{each.name}"
            assert quote_plus(address).encode() in everything, f"{address} never reached {kind}"
            continue
        data = each.read_bytes()  # as sent, or base64 in a JSON body (the webhook)
        assert data in everything or base64.b64encode(data) in everything, (
            f"{each.name} never reached {kind}"
        )
    if case.takes_alt:
        for alt in alts:
            # As UTF-8, as a JSON string's escapes, or form-encoded: as the network reads it.
            forms = (alt.encode(), json.dumps(alt)[1:-1].encode(), quote_plus(alt).encode())
            assert any(form in everything for form in forms), f"alt text lost on {kind}"


def image(path: Path, shade: int) -> Path:
    """A small real image of the type its name says: a PNG, or a JPEG (Instagram's only)."""
    if path.suffix != ".jpg":
        return png(path, shade)
    from PIL import Image

    Image.new("RGB", (4, 4), (shade, 255 - shade, shade // 2)).save(path, "JPEG")
    return path


@pytest.mark.parametrize("kind", REGISTERED)
def test_the_idempotency_key_reaches_the_network(
    kind: str, tmp_path: Path, smtp_server: Any
) -> None:
    case = CASES[kind]
    if case.carries_key is None:
        assert not channel_class(kind).idempotent, "an idempotent channel must pass the key"
        pytest.skip(f"{kind} has no place for an idempotency key")
    _receipt, seen = _send(kind, tmp_path, smtp_server)
    assert case.carries_key(seen, KEY)


@pytest.mark.parametrize("kind", REGISTERED)
def test_channels_json_shows_no_secret(
    kind: str, make_project: MakeProject, tmp_path: Path
) -> None:
    where = where_for(9, tmp_path)
    settings = CASES[kind].settings(where)
    lines = "".join(f"    {key}: {json.dumps(value)}\n" for key, value in settings.items())
    root = make_project(
        config=f"timezone: UTC\nlocale: en\nchannels:\n  contract:\n    type: {kind}\n{lines}"
    )
    env = environment(where.url)
    result = CliRunner().invoke(app, ["-C", str(root), "channels", "--format", "json"], env=env)
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.stdout)["channels"]
    assert entry["usable"] is True, result.output
    cls = channel_class(kind)
    for key, spec in cls.settings_schema.items():
        if spec.private and key in settings:
            assert entry["settings"][key] == settings[key]  # the ${VAR} reference, as written
            for name in re.findall(r"\$\{(\w+)\}", settings[key]):
                secret = env[name]
                for part in (secret, secret[:12], secret[-12:]):
                    assert part not in result.output, f"{name} shows in channels --format json"


RESETTING = [k for k in REGISTERED if getattr(channel_class(k), "rate_limit_reset", None)]


@pytest.mark.parametrize("kind", RESETTING)
def test_a_rate_limit_reset_header_it_cannot_read_means_no_wait(kind: str, tmp_path: Path) -> None:
    """A 429 whose reset header holds garbage is a transient error without a wait (before:
    '²', a digit to str.isdigit, crashed int() inside the adapter)."""
    header, _form = channel_class(kind).rate_limit_reset  # type: ignore[attr-defined]
    with Networks() as networks:
        networks.answer = lambda request: Answer(429, b"{}", headers={header: "\u00b2"})
        where = where_for(int(networks.url.rsplit(":", 1)[1]), tmp_path)
        channel = build(kind, where, env=environment(networks.url))
        with pytest.raises(TransientError) as caught:
            channel.send(message(kind), KEY)
    assert caught.value.retry_after is None
    assert "429" in str(caught.value)


# -- a third-party plugin passes the same suite ---------------------------------------------------


def plugin_source() -> str:
    """The plugin module of docs/plugins.md: its first ```python block."""
    text = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
    found = re.search(r"^```python\n(.*?)^```$", text, re.M | re.S)
    assert found, "docs/plugins.md has no ```python block"
    return found.group(1)


def test_the_plugin_example_passes_the_contract_suite(tmp_path: Path) -> None:
    if os.environ.get("COMMCAL_CONTRACT_PLUGIN_RUN"):
        pytest.skip("already inside the plugin's run")
    site = tmp_path / "site"
    info = site / "commcal_ntfy-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "commcal_ntfy.py").write_text(plugin_source(), encoding="utf-8")
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: commcal-ntfy\nVersion: 0.1\n")
    entry = re.search(r'^ntfy = "([\w.:]+)"$', (ROOT / "docs" / "plugins.md").read_text(), re.M)
    assert entry, "docs/plugins.md shows no entry-point line for ntfy"
    (info / "entry_points.txt").write_text(f"[{GROUP}]\nntfy = {entry.group(1)}\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "COMMCAL_CONTRACT_PLUGIN_RUN": "1",
    }
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k", "ntfy"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    # Every test of the suite that runs on all registered types ran on the plugin.
    contract_tests = [
        name
        for name, test in globals().items()
        if name.startswith("test_")
        and any(mark.args[1] is REGISTERED for mark in getattr(test, "pytestmark", []))
    ]
    assert len(contract_tests) == 9
    passed = int(re.search(r"(\d+) passed", output).group(1))  # type: ignore[union-attr]
    skipped = re.search(r"(\d+) skipped", output)
    assert passed + (int(skipped.group(1)) if skipped else 0) == len(contract_tests), output
    assert "failed" not in output
