"""Slack incoming webhooks against a loopback server that answers like Slack does."""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
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
    StaleMedia,
    TransientError,
)
from commcal.channels.slack import SlackChannel
from commcal.errors import ConfigError
from commcal.http import TimeoutSession
from tests.media_helpers import HangUpAfterRequest, Seen, media_problems, png, seen

TOKEN_PATH = "/services/T0001/B0002/xoxSecretToken123"
MESSAGE = Message(channel="team", channel_type="slack", text="Meetup Thursday: Q&A <live>")


def make(httpserver: HTTPServer, timeout: tuple[float, float] = (1, 2)) -> SlackChannel:
    return SlackChannel(
        "team",
        {"webhook_url": EnvRef("${SLACK_WEBHOOK_URL}")},
        env={"SLACK_WEBHOOK_URL": httpserver.url_for(TOKEN_PATH)},
        http=TimeoutSession(timeout=timeout),
    )


def assert_secret_free(exc: BaseException) -> None:
    for text in (str(exc), repr(exc)):
        assert "xoxSecretToken123" not in text
        assert "B0002" not in text
    assert exc.__cause__ is None


def test_posts_text_and_reads_ok(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(
        TOKEN_PATH,
        method="POST",
        headers={"Content-Type": "application/json"},
        json={"text": "Meetup Thursday: Q&amp;A &lt;live&gt;"},
    ).respond_with_data("ok", content_type="text/html")
    assert make(httpserver).send(MESSAGE, "dlv-1") == Receipt(None)
    httpserver.check_assertions()


@pytest.mark.parametrize(
    ("status", "body", "hint"),
    [
        (400, "invalid_payload", "could not read the message"),
        (403, "action_prohibited", "restricted posting"),
        (404, "no_service", "wrong or was revoked"),
        (410, "channel_is_archived", "archived"),
    ],
)
def test_documented_errors_are_permanent_and_explained(
    httpserver: HTTPServer, status: int, body: str, hint: str
) -> None:
    httpserver.expect_oneshot_request(TOKEN_PATH).respond_with_data(body, status=status)
    with pytest.raises(PermanentError) as caught:
        make(httpserver).send(MESSAGE, "dlv-2")
    assert str(caught.value).startswith(f"HTTP {status}: {body} (")
    assert hint in str(caught.value)
    assert_secret_free(caught.value)


def test_429_is_transient_with_retry_after(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(TOKEN_PATH).respond_with_data(
        "rate_limited", status=429, headers={"Retry-After": "12"}
    )
    with pytest.raises(TransientError) as caught:
        make(httpserver).send(MESSAGE, "dlv-3")
    assert caught.value.retry_after == 12.0
    assert_secret_free(caught.value)


def test_500_is_transient(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(TOKEN_PATH).respond_with_data("rollup_error", status=500)
    with pytest.raises(TransientError, match="HTTP 500: rollup_error"):
        make(httpserver).send(MESSAGE, "dlv-4")


def test_read_timeout_is_transient_and_secret_free(httpserver: HTTPServer) -> None:
    def slow(_: Request) -> Response:
        time.sleep(1.5)
        return Response("ok")

    httpserver.expect_oneshot_request(TOKEN_PATH).respond_with_handler(slow)
    with pytest.raises(TransientError, match="timed out") as caught:
        make(httpserver, timeout=(1, 0.5)).send(MESSAGE, "dlv-5")
    assert_secret_free(caught.value)


def test_connection_refused_is_transient_and_secret_free() -> None:
    channel = SlackChannel(
        "team",
        {"webhook_url": EnvRef("${SLACK_WEBHOOK_URL}")},
        env={"SLACK_WEBHOOK_URL": f"http://127.0.0.1:9{TOKEN_PATH}"},
        http=TimeoutSession(timeout=(1, 1)),
    )
    with pytest.raises(TransientError) as caught:
        channel.send(MESSAGE, "dlv-6")
    assert_secret_free(caught.value)


def test_length_is_checked_offline_as_sent() -> None:
    channel = SlackChannel("team", {"webhook_url": EnvRef("${SLACK_WEBHOOK_URL}")}, env={})
    assert channel.check(Message("team", "slack", "a" * 40_000)) == []
    problems = channel.check(Message("team", "slack", "a" * 39_999 + "&"))
    assert problems == ["text is 40004 characters, over slack's limit of 40000 by 4"]


def test_webhook_url_is_required() -> None:
    with pytest.raises(ConfigError, match="'webhook_url' is required"):
        SlackChannel("team", {})


def test_literal_webhook_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="environment reference") as caught:
        SlackChannel("team", {"webhook_url": f"https://hooks.slack.com{TOKEN_PATH}"})
    assert "xoxSecretToken123" not in str(caught.value)


def test_bad_webhook_url_is_a_config_error_without_the_url() -> None:
    channel = SlackChannel(
        "team",
        {"webhook_url": EnvRef("${SLACK_WEBHOOK_URL}")},
        env={"SLACK_WEBHOOK_URL": "hooks.slack.com/services/xoxSecretToken123"},
    )
    with pytest.raises(ConfigError, match="not an http") as caught:
        channel.send(MESSAGE, "dlv-7")
    assert "xoxSecretToken123" not in str(caught.value)


def test_missing_environment_variable_is_named() -> None:
    channel = SlackChannel("team", {"webhook_url": EnvRef("${SLACK_WEBHOOK_URL}")}, env={})
    with pytest.raises(ConfigError, match="SLACK_WEBHOOK_URL is not set"):
        channel.send(MESSAGE, "dlv-8")


def test_a_path_echoed_without_the_host_is_redacted(httpserver: HTTPServer) -> None:
    """A proxy that names only the path it could not forward: the token is in it."""
    httpserver.expect_request(TOKEN_PATH).respond_with_handler(
        lambda request: Response(f"no route for POST {request.path}", status=502)
    )
    with pytest.raises(TransientError) as raised:
        make(httpserver).send(MESSAGE, "k")
    assert "no route for POST" in str(raised.value)
    assert_secret_free(raised.value)


def test_a_2xx_other_than_ok_is_sent_with_a_note(httpserver: HTTPServer) -> None:
    httpserver.expect_request(TOKEN_PATH).respond_with_data("<html>portal</html>", status=200)
    receipt = make(httpserver).send(MESSAGE, "k")
    assert receipt.remote_id is None
    assert "remote id unknown" in receipt.note


# -- bot token: chat.postMessage, and files upload v2 ------------------------------------------

BOT_TOKEN = "xoxb-1111-2222-Qz8rLm4WvT9yKp"


class FakeSlackApi:
    """Answers the Web API methods and the upload URL as Slack does, recording each request."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.seen: list[Seen] = []
        self.complete: dict[str, Any] = {}
        self.files = 0

    def __call__(self, request: Request) -> Response:
        self.seen.append(seen(request))
        path = request.path
        if path.endswith("/files.getUploadURLExternal"):
            self.files += 1
            answer = {
                "ok": True,
                "upload_url": self.server.url_for(f"/upload/v1/signed{self.files}"),
                "file_id": f"F0SWEEP{self.files}",
            }
        elif path.startswith("/upload/v1/"):
            return Response(f"OK - {len(request.get_data())}", content_type="text/plain")
        elif path.endswith("/files.completeUploadExternal"):
            answer = self.complete or {
                "ok": True,
                "files": [
                    {"id": f["id"], "title": f["title"]} for f in self.seen[-1].json()["files"]
                ],
            }
        else:  # chat.postMessage
            answer = {"ok": True, "channel": "C0TEAM", "ts": "1733050800.000100"}
        return Response(json.dumps(answer), content_type="application/json")

    def paths(self) -> list[str]:
        return [r.path for r in self.seen]


def bot(httpserver: HTTPServer, **settings: Any) -> SlackChannel:
    return SlackChannel(
        "team",
        {
            "bot_token": EnvRef("${SLACK_BOT_TOKEN}"),
            "channel_id": "C0TEAM",
            "api_url": httpserver.url_for("/api"),
            **settings,
        },
        env={"SLACK_BOT_TOKEN": BOT_TOKEN},
        http=TimeoutSession(timeout=(1, 2)),
    )


def serve(httpserver: HTTPServer) -> FakeSlackApi:
    fake = FakeSlackApi(httpserver)
    httpserver.expect_request(re.compile(r"/(api|upload)/.*")).respond_with_handler(fake)
    return fake


def pictures(tmp_path: Path) -> tuple[Media, ...]:
    return (
        Media(str(png(tmp_path / "αφίσα.png", 10)), alt="Αφίσα: συνάντηση την Πέμπτη στις 18:00"),
        Media(str(png(tmp_path / "map.png", 20)), alt="Χάρτης της αίθουσας"),
    )


def test_files_go_up_by_upload_v2_and_post_with_the_text(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    fake = serve(httpserver)
    slack = bot(httpserver)
    media = pictures(tmp_path)
    refs = [slack.upload(item) for item in media]
    assert refs == ["F0SWEEP1", "F0SWEEP2"]
    message = Message(
        "team",
        "slack",
        "Συνάντηση: Q&A <live>",
        media=tuple(replace(item, ref=ref) for item, ref in zip(media, refs, strict=True)),
    )
    assert slack.check(message) == []
    receipt = slack.send(message, "k")
    assert receipt == Receipt(remote_id="F0SWEEP1")
    assert fake.paths() == [
        "/api/files.getUploadURLExternal",
        "/upload/v1/signed1",
        "/api/files.getUploadURLExternal",
        "/upload/v1/signed2",
        "/api/files.completeUploadExternal",
    ]
    for number, item in enumerate(media):
        ticket, upload = fake.seen[2 * number], fake.seen[2 * number + 1]
        assert ticket.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
        assert ticket.form == {
            "filename": Path(item.path).name,
            "length": str(Path(item.path).stat().st_size),
            "alt_txt": item.alt,
        }
        assert "Authorization" not in upload.headers, "the upload URL is signed: no token to it"
        part = upload.files["filename"]
        assert (part.filename, part.mimetype) == (Path(item.path).name, "image/png")
        assert part.data == Path(item.path).read_bytes()
    complete = fake.seen[-1]
    assert complete.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert complete.json() == {
        "files": [{"id": "F0SWEEP1", "title": "αφίσα.png"}, {"id": "F0SWEEP2", "title": "map.png"}],
        "channel_id": "C0TEAM",
        "initial_comment": "Συνάντηση: Q&amp;A &lt;live&gt;",
    }


def test_text_alone_goes_by_chat_post_message(httpserver: HTTPServer) -> None:
    fake = serve(httpserver)
    assert bot(httpserver).send(MESSAGE, "k") == Receipt(remote_id="1733050800.000100")
    (request,) = fake.seen
    assert request.path == "/api/chat.postMessage"
    assert request.json() == {"channel": "C0TEAM", "text": "Meetup Thursday: Q&amp;A &lt;live&gt;"}


def test_a_webhook_only_channel_refuses_media_with_the_fix(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    hook = make(httpserver)
    message = Message("team", "slack", "Pics", media=pictures(tmp_path))
    assert media_problems(hook, *message.media) == [
        (
            None,
            "this slack channel posts through an incoming webhook, which cannot carry files: "
            "add bot_token (a bot token with chat:write and files:write, e.g. "
            "${SLACK_BOT_TOKEN}) and channel_id (C0...) to the channel in commcal.yaml, and "
            "invite the bot to the channel",
        )
    ]
    with pytest.raises(PermanentError, match="cannot carry files"):
        hook.send(message, "k")
    assert httpserver.log == []


def test_bot_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="'bot_token' needs 'channel_id'"):
        SlackChannel("t", {"bot_token": EnvRef("${T}")})
    with pytest.raises(ConfigError, match="'channel_id' needs 'bot_token'"):
        SlackChannel("t", {"webhook_url": EnvRef("${W}"), "channel_id": "C0"})
    with pytest.raises(ConfigError, match=r"'webhook_url' is required \(or bot_token"):
        SlackChannel("t", {})


def test_file_limits_are_checked_offline(httpserver: HTTPServer, tmp_path: Path) -> None:
    slack = bot(httpserver)
    media = pictures(tmp_path)
    assert slack.check(Message("t", "slack", "", media=media)) == [], "files alone are a post"
    assert media_problems(slack, *media) == []
    assert media_problems(slack, *(media[0],) * 11) == [
        (None, "11 media files, over slack's 10 per post")
    ]
    assert media_problems(slack, replace(media[1], alt="α" * 1001)) == [
        (0, "alt text is 1001 characters, over slack's limit of 1000 by 1")
    ]


def test_not_in_channel_is_permanent_with_the_fix(httpserver: HTTPServer, tmp_path: Path) -> None:
    fake = serve(httpserver)
    fake.complete = {"ok": False, "error": "not_in_channel"}
    message = Message("t", "slack", "x", media=(replace(pictures(tmp_path)[0], ref="F1"),))
    with pytest.raises(PermanentError, match=r"not_in_channel \(invite the bot") as caught:
        bot(httpserver).send(message, "k")
    assert not isinstance(caught.value, StaleMedia)


def test_a_file_slack_forgot_is_stale_so_the_publisher_uploads_again(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    fake = serve(httpserver)
    fake.complete = {"ok": False, "error": "file_not_found"}
    message = Message("t", "slack", "x", media=(replace(pictures(tmp_path)[0], ref="F1"),))
    with pytest.raises(StaleMedia, match="file_not_found"):
        bot(httpserver).send(message, "k")


def test_a_413_at_the_upload_url_is_permanent_and_echoes_nothing_secret(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    signed = httpserver.url_for("/upload/v1/signedSECRETsig")
    httpserver.expect_request("/api/files.getUploadURLExternal").respond_with_json(
        {"ok": True, "upload_url": signed, "file_id": "F9"}
    )
    httpserver.expect_request("/upload/v1/signedSECRETsig").respond_with_data(
        f"Request Entity Too Large: {signed} Authorization: Bearer {BOT_TOKEN}", status=413
    )
    with pytest.raises(PermanentError, match="HTTP 413") as caught:
        bot(httpserver).upload(pictures(tmp_path)[0])
    for text in (str(caught.value), repr(caught.value)):
        assert BOT_TOKEN not in text
        assert "signedSECRETsig" not in text


def test_an_upload_cut_off_is_retried_not_unknown(httpserver: HTTPServer, tmp_path: Path) -> None:
    with HangUpAfterRequest() as hangup:
        httpserver.expect_request("/api/files.getUploadURLExternal").respond_with_json(
            {"ok": True, "upload_url": f"{hangup.url}/upload/v1/signed", "file_id": "F9"}
        )
        item = pictures(tmp_path)[0]
        with pytest.raises(TransientError) as caught:
            bot(httpserver).upload(item)
    assert not caught.value.maybe_sent, "an upload posts nothing: safe to do again"
    assert Path(item.path).read_bytes() in hangup.requests[0]
    assert "signed" not in str(caught.value)


def test_a_2xx_that_is_not_slack_after_the_post_is_sent_with_a_note(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request("/api/files.completeUploadExternal").respond_with_data(
        "<html>proxy</html>", content_type="text/html"
    )
    message = Message("t", "slack", "x", media=(replace(pictures(tmp_path)[0], ref="F1"),))
    receipt = bot(httpserver).send(message, "k")
    assert receipt.remote_id is None
    assert receipt.note.startswith("sent, remote id unknown: 200 answer without Slack's `ok`")


def test_an_unreadable_file_uploads_nothing(httpserver: HTTPServer, tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match=r"cannot read media file .*gone.png: No such file"):
        bot(httpserver).upload(Media(str(tmp_path / "gone.png"), alt="?"))
    assert httpserver.log == []


def test_with_a_webhook_and_a_bot_text_goes_by_the_webhook_and_files_by_the_bot(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    fake = serve(httpserver)
    httpserver.expect_request(TOKEN_PATH).respond_with_data("ok")
    both = bot(httpserver, webhook_url=EnvRef("${SLACK_WEBHOOK_URL}"))
    both.env = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_WEBHOOK_URL": httpserver.url_for(TOKEN_PATH)}
    assert both.send(MESSAGE, "k1") == Receipt()
    assert [r.path for r, _ in httpserver.log] == [TOKEN_PATH]
    picture = replace(pictures(tmp_path)[0], ref="F0SWEEP1")
    both.send(Message("team", "slack", "Pic", media=(picture,)), "k2")
    assert fake.paths() == ["/api/files.completeUploadExternal"]


def test_an_upload_ticket_that_is_not_slack_says_so_and_posts_nothing(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request("/api/files.getUploadURLExternal").respond_with_data(
        f"<html>login page for {BOT_TOKEN}</html>", content_type="text/html"
    )
    with pytest.raises(PermanentError) as caught:
        bot(httpserver).upload(pictures(tmp_path)[0])
    assert str(caught.value).startswith(
        "files.getUploadURLExternal: the answer is not Slack's (200, text/html, "
    )
    assert BOT_TOKEN not in str(caught.value)
    assert [r.path for r, _ in httpserver.log] == ["/api/files.getUploadURLExternal"]


def test_verify_asks_auth_test_with_the_bot_token(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(
        "/api/auth.test", method="POST", headers={"Authorization": f"Bearer {BOT_TOKEN}"}
    ).respond_with_json({"ok": True, "user": "agora-bot", "team": "Agora", "user_id": "U1"})
    assert bot(httpserver).verify() == "token works for agora-bot in Agora"
    httpserver.expect_oneshot_request("/api/auth.test").respond_with_json(
        {"ok": False, "error": "invalid_auth"}
    )
    with pytest.raises(PermanentError, match=r"invalid_auth \(the bot token is wrong"):
        bot(httpserver).verify()


def test_a_2xx_that_is_not_slack_after_chat_post_message_is_sent_with_a_note(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request("/api/chat.postMessage").respond_with_data("<html>proxy</html>")
    receipt = bot(httpserver).send(MESSAGE, "k")
    assert receipt.remote_id is None
    assert "answer without Slack's `ok` answer to chat.postMessage" in receipt.note


# ---- retract and amend (bot-token mode) ---------------------------------------------------------


class SlackMessages:
    """Answers chat.delete / chat.update / files.delete like Slack's Web API: the messages it
    holds by ts, `message_not_found` for any other; records every call."""

    def __init__(self) -> None:
        self.texts = {"1733050800.000100": "Καλημέρα"}
        self.files = {"F0FILE1"}
        self.calls: list[tuple[str, dict[str, Any], str]] = []

    def __call__(self, request: Request) -> Response:
        method = request.path.rsplit("/", 1)[-1]
        body = json.loads(request.get_data() or b"{}")
        self.calls.append((method, body, request.headers.get("Authorization", "")))
        answer: dict[str, Any]
        if method == "files.delete":
            found = body.get("file") in self.files
            self.files.discard(body.get("file"))
            answer = {"ok": True} if found else {"ok": False, "error": "file_deleted"}
        elif body.get("ts") not in self.texts:
            answer = {"ok": False, "error": "message_not_found"}
        elif method == "chat.delete":
            del self.texts[body["ts"]]
            answer = {"ok": True, "channel": body["channel"], "ts": body["ts"]}
        else:  # chat.update
            self.texts[body["ts"]] = body["text"]
            answer = {"ok": True, "channel": body["channel"], "ts": body["ts"]}
        return Response(json.dumps(answer), content_type="application/json")


def test_bot_mode_retracts_and_amends_its_messages_and_file_shares(httpserver: HTTPServer) -> None:
    from commcal.channels.base import CannotChange, Receipt

    slack = SlackMessages()
    httpserver.expect_request(re.compile(r"/api/.*")).respond_with_handler(slack)
    channel = bot(httpserver)
    assert channel.cannot_retract() == channel.cannot_amend() == ""
    sent = Receipt(remote_id="1733050800.000100")

    amended = channel.amend(sent, Message("team", "slack", "Καλησπέρα & καλό βράδυ"))
    assert amended == sent
    assert slack.texts["1733050800.000100"] == "Καλησπέρα &amp; καλό βράδυ"  # escaped as sent
    assert channel.retract(sent) is True
    assert channel.retract(sent) is False  # message_not_found: already gone, as good
    assert channel.retract(Receipt(remote_id="F0FILE1")) is True
    assert channel.retract(Receipt(remote_id="F0FILE1")) is False
    assert [(m, b.get("channel")) for m, b, _ in slack.calls] == [
        ("chat.update", "C0TEAM"),
        ("chat.delete", "C0TEAM"),
        ("chat.delete", "C0TEAM"),
        ("files.delete", None),
        ("files.delete", None),
    ]
    assert all(auth == f"Bearer {BOT_TOKEN}" for _, _, auth in slack.calls)
    with pytest.raises(CannotChange, match="shares files"):
        channel.amend(Receipt(remote_id="F0FILE1"), Message("team", "slack", "x"))
    with pytest.raises(CannotChange, match="incoming webhook"):
        channel.retract(Receipt())  # sent through the webhook beside the bot: no ts kept


def test_a_webhook_only_channel_says_it_cannot_change_its_posts() -> None:
    channel = SlackChannel("t", {"webhook_url": EnvRef("${SLACK_URL}")}, env={"SLACK_URL": "x"})
    assert "incoming webhook" in channel.cannot_retract()
    assert "incoming webhook" in channel.cannot_amend()
