"""Discord webhooks against a loopback server that answers like Discord does."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from commcal.channels.base import (
    EnvRef,
    Media,
    Message,
    PermanentError,
    Receipt,
    TransientError,
)
from commcal.channels.discord import DiscordChannel
from commcal.errors import ConfigError
from commcal.http import TimeoutSession
from tests.media_helpers import HangUpAfterRequest, media_problems, png, sized

TOKEN_PATH = "/api/webhooks/1234567890/SecretDiscordToken_abc"
MESSAGE = Message(channel="community", channel_type="discord", text="Καλημέρα! Meetup tonight.")
POLL = {
    "question": "Which day suits you?",
    "options": ["Thursday", "Saturday"],
    "duration_seconds": 48 * 3600,
}


def message_object(**extra: Any) -> dict[str, Any]:
    """What Execute Webhook with wait=true returns: the created Message object."""
    return {
        "id": "1189000000000000001",
        "type": 0,
        "content": MESSAGE.text,
        "channel_id": "1100000000000000002",
        "author": {"id": "1234567890", "username": "Events", "bot": True},
        "webhook_id": "1234567890",
        "timestamp": "2026-12-10T16:00:00.000000+00:00",
        **extra,
    }


def make(
    httpserver: HTTPServer, timeout: tuple[float, float] = (1, 2), **settings: Any
) -> DiscordChannel:
    return DiscordChannel(
        "community",
        {"webhook_url": EnvRef("${DISCORD_WEBHOOK_URL}"), **settings},
        env={"DISCORD_WEBHOOK_URL": httpserver.url_for(TOKEN_PATH)},
        http=TimeoutSession(timeout=timeout),
    )


def assert_secret_free(exc: BaseException) -> None:
    for text in (str(exc), repr(exc)):
        assert "SecretDiscordToken_abc" not in text
    assert exc.__cause__ is None


def test_posts_content_with_wait_and_reads_the_message(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(
        TOKEN_PATH,
        method="POST",
        query_string="wait=true",
        json={"content": "Καλημέρα! Meetup tonight.", "username": "Events"},
    ).respond_with_json(message_object(guild_id="1000000000000000003"))
    receipt = make(httpserver, username="Events").send(MESSAGE, "dlv-1")
    httpserver.check_assertions()
    assert receipt == Receipt(
        remote_id="1189000000000000001",
        url="https://discord.com/channels/1000000000000000003/1100000000000000002/1189000000000000001",
    )


def test_without_guild_id_there_is_no_url(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(TOKEN_PATH, query_string="wait=true").respond_with_json(
        message_object()
    )
    assert make(httpserver).send(MESSAGE, "dlv-2") == Receipt(remote_id="1189000000000000001")


def test_sends_a_native_poll(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(
        TOKEN_PATH,
        method="POST",
        query_string="wait=true",
        json={
            "content": "Vote!",
            "poll": {
                "question": {"text": "Which day suits you?"},
                "answers": [
                    {"poll_media": {"text": "Thursday"}},
                    {"poll_media": {"text": "Saturday"}},
                ],
                "duration": 48,
                "allow_multiselect": False,
            },
        },
    ).respond_with_json(message_object(content="Vote!"))
    poll_message = Message("community", "discord", "Vote!", options={"poll": POLL})
    assert make(httpserver).send(poll_message, "dlv-3").remote_id == "1189000000000000001"
    httpserver.check_assertions()


def test_poll_limits_are_checked_offline() -> None:
    channel = DiscordChannel("c", {"webhook_url": EnvRef("${X}")}, env={})
    ok = Message("c", "discord", "", options={"poll": POLL})
    assert channel.check(ok) == []  # a poll alone is not an empty message
    bad = {
        "question": "?" * 301,
        "options": ["a" * 56, *["x"] * 10],
        "duration_seconds": 769 * 3600,
    }
    assert channel.check(Message("c", "discord", "Vote", options={"poll": bad})) == [
        "poll question is 301 characters, over Discord's limit of 300 by 1",
        "poll has 11 options, Discord allows at most 10",
        "poll option 1 is 56 characters, over Discord's limit of 55 by 1",
        "poll duration is 769 hours, over Discord's limit of 768 (32 days)",
    ]
    half_hour = {**POLL, "duration_seconds": 5400}
    assert channel.check(Message("c", "discord", "Vote", options={"poll": half_hour})) == [
        "poll duration is 5400 seconds; Discord polls last whole hours (3600, 7200 ...)"
    ]


def test_length_counts_code_points() -> None:
    channel = DiscordChannel("c", {"webhook_url": EnvRef("${X}")}, env={})
    # 2000 emoji are 4000 UTF-16 units but 2000 code points: Discord accepts them.
    assert channel.check(Message("c", "discord", "🎉" * 2000)) == []
    assert channel.check(Message("c", "discord", "α" * 2001)) == [
        "text is 2001 characters, over discord's limit of 2000 by 1"
    ]


def test_429_uses_the_body_retry_after(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(TOKEN_PATH).respond_with_json(
        {"message": "You are being rate limited.", "retry_after": 1.337, "global": False},
        status=429,
        headers={"Retry-After": "2"},
    )
    with pytest.raises(TransientError) as caught:
        make(httpserver).send(MESSAGE, "dlv-4")
    assert caught.value.retry_after == 1.337
    assert "You are being rate limited." in str(caught.value)
    assert_secret_free(caught.value)


def test_500_is_transient(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(TOKEN_PATH).respond_with_json(
        {"message": "500: Internal Server Error", "code": 0}, status=500
    )
    with pytest.raises(TransientError, match="HTTP 500"):
        make(httpserver).send(MESSAGE, "dlv-5")


def test_invalid_form_body_is_permanent_with_field_detail(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(TOKEN_PATH).respond_with_json(
        {
            "code": 50035,
            "message": "Invalid Form Body",
            "errors": {
                "content": {
                    "_errors": [
                        {
                            "code": "BASE_TYPE_MAX_LENGTH",
                            "message": "Must be 2000 or fewer in length.",
                        }
                    ]
                }
            },
        },
        status=400,
    )
    with pytest.raises(PermanentError) as caught:
        make(httpserver).send(MESSAGE, "dlv-6")
    assert str(caught.value) == (
        "HTTP 400: Invalid Form Body (content: Must be 2000 or fewer in length.)"
    )


def test_unknown_webhook_is_permanent_and_secret_free(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(TOKEN_PATH).respond_with_json(
        {"message": "Unknown Webhook", "code": 10015}, status=404
    )
    with pytest.raises(PermanentError, match=r"Unknown Webhook.*was deleted") as caught:
        make(httpserver).send(MESSAGE, "dlv-7")
    assert_secret_free(caught.value)


def test_read_timeout_is_transient_and_secret_free(httpserver: HTTPServer) -> None:
    def slow(_: Request) -> Response:
        time.sleep(1.5)
        return Response("{}", content_type="application/json")

    httpserver.expect_oneshot_request(TOKEN_PATH).respond_with_handler(slow)
    with pytest.raises(TransientError, match="timed out") as caught:
        make(httpserver, timeout=(1, 0.5)).send(MESSAGE, "dlv-8")
    assert_secret_free(caught.value)


def test_invalid_poll_is_refused_before_any_request(httpserver: HTTPServer) -> None:
    bad = Message("c", "discord", "Vote", options={"poll": {**POLL, "options": []}})
    with pytest.raises(PermanentError, match="poll needs a list of options"):
        make(httpserver).send(bad, "dlv-9")
    assert httpserver.log == []


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="'webhook_url' is required"):
        DiscordChannel("c", {})
    with pytest.raises(ConfigError, match="environment reference") as caught:
        DiscordChannel("c", {"webhook_url": f"https://discord.com{TOKEN_PATH}"})
    assert "SecretDiscordToken_abc" not in str(caught.value)
    with pytest.raises(ConfigError, match="may not contain 'discord'"):
        DiscordChannel("c", {"webhook_url": EnvRef("${X}"), "username": "Discord Bot"})
    channel = DiscordChannel("c", {"webhook_url": EnvRef("${DISCORD_WEBHOOK_URL}")}, env={})
    with pytest.raises(ConfigError, match="DISCORD_WEBHOOK_URL is not set"):
        channel.send(MESSAGE, "dlv-10")
    channel = DiscordChannel(
        "c",
        {"webhook_url": EnvRef("${DISCORD_WEBHOOK_URL}")},
        env={"DISCORD_WEBHOOK_URL": "discord.com/api/webhooks/1/SecretDiscordToken_abc"},
    )
    with pytest.raises(ConfigError, match="not an http") as caught:
        channel.send(MESSAGE, "dlv-11")
    assert "SecretDiscordToken_abc" not in str(caught.value)


# -- media ------------------------------------------------------------------------------------


def media_message(tmp_path: Path, count: int = 2, text: str = MESSAGE.text) -> Message:
    alts = ["Η αφίσα της συνάντησης: Πέμπτη 10 Δεκεμβρίου", "Ο χάρτης προς την αίθουσα"]
    media = tuple(
        Media(str(png(tmp_path / f"poster-{n}.png", shade=(40 * n) % 256)), alt=alts[n % 2])
        for n in range(count)
    )
    return Message("community", "discord", text, media=media)


def test_media_go_as_multipart_with_descriptions_as_alt_text(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    seen: list[Request] = []

    def record(request: Request) -> Response:
        request.get_data()  # keep the body: werkzeug reads the stream once
        seen.append(request)
        return Response(json.dumps(message_object()), content_type="application/json")

    httpserver.expect_oneshot_request(
        TOKEN_PATH, method="POST", query_string="wait=true"
    ).respond_with_handler(record)
    message = media_message(tmp_path)
    receipt = make(httpserver, username="Events").send(message, "dlv-m1")
    assert receipt.remote_id == "1189000000000000001"
    (request,) = seen
    assert request.mimetype == "multipart/form-data"
    payload = json.loads(request.form["payload_json"])
    assert payload == {
        "content": MESSAGE.text,
        "username": "Events",
        "attachments": [
            {"id": 0, "filename": "poster-0.png", "description": message.media[0].alt},
            {"id": 1, "filename": "poster-1.png", "description": message.media[1].alt},
        ],
    }
    assert sorted(request.files) == ["files[0]", "files[1]"]
    for number, media in enumerate(message.media):
        upload = request.files[f"files[{number}]"]
        assert upload.filename == f"poster-{number}.png"
        assert upload.mimetype == "image/png"
        assert upload.read() == Path(media.path).read_bytes()


def test_media_alone_is_not_an_empty_message(tmp_path: Path) -> None:
    channel = DiscordChannel("c", {"webhook_url": EnvRef("${X}")}, env={})
    assert channel.check(media_message(tmp_path, count=1, text="")) == []


def test_media_limits_are_checked_offline_with_a_fix(tmp_path: Path) -> None:
    channel = DiscordChannel("c", {"webhook_url": EnvRef("${X}")}, env={})
    eleven = media_message(tmp_path, count=11).media
    assert media_problems(channel, *eleven) == [
        (None, "11 media files, over discord's 10 per post")
    ]
    big = Media(str(sized(tmp_path / "video-still.png", 20 * 1024 * 1024)))
    assert media_problems(channel, big, big) == [
        (
            None,
            "the files are 40.0 MB together, over this discord server's limit of 25 MB a "
            "message: make them smaller, send fewer, or set upload_limit_mb on the channel if "
            "the server is boosted",
        )
    ]
    boosted = DiscordChannel("c", {"webhook_url": EnvRef("${X}"), "upload_limit_mb": 50}, env={})
    assert media_problems(boosted, big, big) == []
    huge = Media(str(sized(tmp_path / "huge.png", 30 * 1024 * 1024)))
    assert media_problems(boosted, huge) == [], "one 30 MB file fits a 50 MB server"
    wordy = Media(str(png(tmp_path / "p.png")), alt="α" * 1025)
    assert media_problems(channel, wordy) == [
        (0, "alt text is 1025 characters, over discord's limit of 1024 by 1")
    ]
    with pytest.raises(ConfigError, match="upload_limit_mb' must be 1 to 500"):
        DiscordChannel("c", {"webhook_url": EnvRef("${X}"), "upload_limit_mb": 0})


def test_413_is_permanent_says_why_and_redacts_the_echoed_url(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    echo = f"POST {httpserver.url_for(TOKEN_PATH)} Request entity too large"
    httpserver.expect_oneshot_request(TOKEN_PATH).respond_with_json(
        {"message": echo, "code": 40005}, status=413
    )
    with pytest.raises(PermanentError) as caught:
        make(httpserver).send(media_message(tmp_path), "dlv-m2")
    assert "too large for this server" in str(caught.value)
    assert_secret_free(caught.value)


def test_a_proxy_413_page_gets_the_same_hint(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_oneshot_request(TOKEN_PATH).respond_with_data(
        "<html><body>413 Request Entity Too Large</body></html>", status=413
    )
    with pytest.raises(PermanentError, match="too large for this server"):
        make(httpserver).send(media_message(tmp_path), "dlv-m3")


def test_a_hang_up_after_the_upload_may_have_posted(tmp_path: Path) -> None:
    with HangUpAfterRequest() as server:
        channel = DiscordChannel(
            "community",
            {"webhook_url": EnvRef("${DISCORD_WEBHOOK_URL}")},
            env={"DISCORD_WEBHOOK_URL": server.url + TOKEN_PATH},
            http=TimeoutSession(timeout=(1, 2)),
        )
        message = media_message(tmp_path)
        with pytest.raises(TransientError) as caught:
            channel.send(message, "dlv-m4")
    assert caught.value.maybe_sent, "the files went out: the publisher must not post again"
    assert_secret_free(caught.value)
    (request,) = server.requests
    assert Path(message.media[1].path).read_bytes() in request


def test_200_with_garbage_after_media_is_sent_with_a_note(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_oneshot_request(TOKEN_PATH).respond_with_data(
        "<html>cached page</html>", content_type="text/html"
    )
    receipt = make(httpserver).send(media_message(tmp_path), "dlv-m5")
    assert receipt.remote_id is None
    assert receipt.note.startswith("sent, remote id unknown: 200 answer without a message id")


def test_an_unreadable_file_sends_nothing(httpserver: HTTPServer, tmp_path: Path) -> None:
    folder = tmp_path / "poster.png"
    folder.mkdir()  # a name that looks like an image, but cannot be read as one
    message = Message("c", "discord", "Tonight", media=(Media(str(folder), alt="poster"),))
    with pytest.raises(
        PermanentError, match=r"cannot read media file .*poster.png: Is a directory"
    ):
        make(httpserver).send(message, "dlv-m6")
    assert httpserver.log == []
