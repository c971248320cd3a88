"""Telegram adapter against a loopback server that answers like the Bot API."""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from commcal.channels.base import EnvRef, Media, Message, PermanentError, SendError, TransientError
from commcal.channels.telegram import TelegramChannel, visible_text
from commcal.errors import ConfigError
from commcal.http import TimeoutSession
from tests.media_helpers import HangUpAfterRequest, gif, media_problems, png, sized

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
ENV = {"TG_TOKEN": TOKEN}
BOT = f"/bot{TOKEN}"


def channel(api_url: str, **settings: Any) -> TelegramChannel:
    http = settings.pop("http", None)
    config: dict[str, Any] = {
        "token": EnvRef("${TG_TOKEN}"),
        "chat_id": "@acme_news",
        "api_url": api_url,
    }
    config.update(settings)
    return TelegramChannel("tg", config, env=ENV, http=http)


def url(server: HTTPServer) -> str:
    return server.url_for("/").rstrip("/")


def message(text: str = "Habari! https://example.org", **options: Any) -> Message:
    media = options.pop("media", ())
    return Message("tg", "telegram", text, media=media, options=options)


def sent_message(message_id: int, text: str) -> dict[str, Any]:
    # https://core.telegram.org/bots/api#making-requests: {"ok": true, "result": Message}
    return {
        "ok": True,
        "result": {
            "message_id": message_id,
            "date": 1741944413,
            "chat": {
                "id": -1001234567890,
                "title": "Acme",
                "username": "acme_news",
                "type": "channel",
            },
            "text": text,
        },
    }


def everything_said(exc: BaseException) -> str:
    """All text an exception can show: message, repr and the whole chained traceback."""
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def test_send_message(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(
        f"{BOT}/sendMessage",
        method="POST",
        json={
            "chat_id": "@acme_news",
            "text": "<b>Habari!</b> https://example.org",
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": True},
        },
    ).respond_with_json(sent_message(42, "Habari! https://example.org"))
    tg = channel(url(httpserver), parse_mode="HTML", link_preview=False)
    receipt = tg.send(message("<b>Habari!</b> https://example.org"), "k")
    httpserver.check_assertions()
    assert receipt.remote_id == "42"
    assert receipt.url == "https://t.me/acme_news/42"


def test_numeric_channel_id_gets_members_link(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(
        f"{BOT}/sendMessage", json={"chat_id": -1001234567890, "text": "hi"}
    ).respond_with_json(sent_message(7, "hi"))
    receipt = channel(url(httpserver), chat_id=-1001234567890).send(message("hi"), "k")
    httpserver.check_assertions()
    assert receipt.url == "https://t.me/c/1234567890/7"


def test_send_poll_uses_input_poll_options(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(
        f"{BOT}/sendPoll",
        method="POST",
        json={
            "chat_id": "@acme_news",
            "question": "Siku gani?",
            "options": [{"text": "Jumatatu"}, {"text": "Ijumaa"}],
            "open_period": 600,
        },
    ).respond_with_json(sent_message(43, ""))
    poll = {"question": "Siku gani?", "options": ["Jumatatu", "Ijumaa"], "duration_seconds": 600}
    receipt = channel(url(httpserver)).send(message("Vote!", poll=poll), "k")
    httpserver.check_assertions()
    assert receipt.remote_id == "43"


def test_429_takes_retry_after_from_parameters(httpserver: HTTPServer) -> None:
    httpserver.expect_request(f"{BOT}/sendMessage").respond_with_json(
        {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 17",
            "parameters": {"retry_after": 17},
        },
        status=429,
    )
    with pytest.raises(TransientError, match="Too Many Requests") as caught:
        channel(url(httpserver)).send(message(), "k")
    assert caught.value.retry_after == 17
    assert TOKEN not in everything_said(caught.value)


def test_400_is_permanent_with_description(httpserver: HTTPServer) -> None:
    httpserver.expect_request(f"{BOT}/sendMessage").respond_with_json(
        {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}, status=400
    )
    with pytest.raises(PermanentError, match="400: Bad Request: chat not found") as caught:
        channel(url(httpserver)).send(message(), "k")
    assert TOKEN not in everything_said(caught.value)


def test_group_migration_names_new_chat_id(httpserver: HTTPServer) -> None:
    httpserver.expect_request(f"{BOT}/sendMessage").respond_with_json(
        {
            "ok": False,
            "error_code": 400,
            "description": "Bad Request: group chat was upgraded to a supergroup chat",
            "parameters": {"migrate_to_chat_id": -1009876543210},
        },
        status=400,
    )
    with pytest.raises(PermanentError, match="now chat_id -1009876543210"):
        channel(url(httpserver)).send(message(), "k")


def test_401_never_shows_token(httpserver: HTTPServer) -> None:
    httpserver.expect_request(f"{BOT}/sendMessage").respond_with_json(
        {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
    )
    with pytest.raises(PermanentError, match="401: Unauthorized") as caught:
        channel(url(httpserver)).send(message(), "k")
    assert TOKEN not in everything_said(caught.value)


def test_500_is_transient(httpserver: HTTPServer) -> None:
    httpserver.expect_request(f"{BOT}/sendMessage").respond_with_data("Bad Gateway", status=502)
    with pytest.raises(TransientError) as caught:
        channel(url(httpserver)).send(message(), "k")
    assert TOKEN not in everything_said(caught.value)


def test_timeout_never_shows_token(httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return Response("{}", content_type="application/json")

    httpserver.expect_request(f"{BOT}/sendMessage").respond_with_handler(slow)
    tg = channel(url(httpserver), http=TimeoutSession(timeout=(1, 0.3)))
    with pytest.raises(TransientError, match="timed out") as caught:
        tg.send(message(), "k")
    assert TOKEN not in everything_said(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    # A read timeout may have delivered the message; the rebuilt error keeps saying so.
    assert getattr(caught.value, "maybe_sent", True) is True


def test_connection_refused_never_shows_token() -> None:
    # requests' own message here is "... Max retries exceeded with url: /bot<token>/sendMessage".
    tg = channel("http://127.0.0.1:9", http=TimeoutSession(timeout=(0.5, 0.5)))
    with pytest.raises(SendError) as caught:
        tg.send(message(), "k")
    assert isinstance(caught.value, TransientError)
    assert TOKEN not in everything_said(caught.value)
    assert "bot" not in str(caught.value)


def test_channel_repr_and_settings_never_show_token() -> None:
    tg = channel("https://api.telegram.org")
    assert TOKEN not in repr(tg)
    assert tg.describe_settings()["token"] == "${TG_TOKEN}"


def test_verify_calls_get_me(httpserver: HTTPServer) -> None:
    httpserver.expect_request(f"{BOT}/getMe").respond_with_json(
        {"ok": True, "result": {"id": 123456789, "is_bot": True, "username": "acme_bot"}}
    )
    assert channel(url(httpserver)).verify() == "token works for bot @acme_bot"


def test_visible_text_strips_markup() -> None:
    assert visible_text("<b>Jambo</b> &amp; <a href='https://x.org'>karibu</a>", "HTML") == (
        "Jambo & karibu"
    )
    assert visible_text(r"*Jambo* \- [karibu](https://x\.org)", "MarkdownV2") == "Jambo - karibu"


@pytest.mark.parametrize(
    ("html", "shown"),
    [
        ("&lt;&gt;&amp;&quot;", '<>&"'),
        ("&nbsp;", "&nbsp;"),  # only four named entities: the rest stay as written
        ("&apos; &copy; &hellip;", "&apos; &copy; &hellip;"),
        ("&LT;", "&LT;"),  # names are case-sensitive
        ("&lt &amp", "< &"),  # the ";" is optional
        ("&#65;&#x42;&#X43;", "AB&#X43;"),  # hexadecimal needs a lower-case x
        ("&#x1F600;", "😀"),
        ("&#0; &#1114111; &#12345678;", "&#0; &#1114111; &#12345678;"),
        ("&#0000065;", "A"),  # 9 characters before the ";": still decoded
        ("&#00000065;", "&#00000065;"),  # 10: not
        ("a & b", "a & b"),
    ],
)
def test_html_mode_decodes_entities_as_telegram_does(html: str, shown: str) -> None:
    """Bot API #html-style and tdlib's decode_html_entity (td/telegram/MessageEntity.cpp)."""
    assert visible_text(html, "HTML") == shown


def test_an_unsupported_entity_counts_in_full() -> None:
    tg = channel("https://api.telegram.org", parse_mode="HTML")
    assert tg.check(message("a" * 4090 + "&nbsp;")) == []
    assert tg.check(message("a" * 4091 + "&nbsp;")) == [
        "text is 4097 characters (UTF-16 units, emoji count 2), over telegram's limit of 4096 by 1"
    ]
    assert tg.check(message("a" * 4095 + "&amp;")) == []


def test_check_counts_utf16_after_markup() -> None:
    tg = channel("https://api.telegram.org", parse_mode="HTML")
    assert tg.check(message("<b>" + "a" * 4096 + "</b>")) == []
    # An emoji outside the BMP is 2 UTF-16 units.
    assert tg.check(message("😀" * 2049)) == [
        "text is 4098 characters (UTF-16 units, emoji count 2), over telegram's limit of 4096 by 2"
    ]
    problems = tg.check(message("x", poll={"options": ["only one"], "duration_seconds": 900}))
    assert "a poll needs 2 to 12 options, not 1" in problems
    # Longer than open_period's 600 s: sent without a timer, so it stays open (no problem).
    assert not [p for p in problems if "stays open" in p]
    assert tg.check(message("x", poll={"options": ["a", "b"], "duration_seconds": 2})) == [
        "a telegram poll stays open at least 5 seconds, not 2"
    ]
    assert tg.check(message("x", media=(Media("a.png"),))) == []  # files: check_media


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"chat_id": "@acme_news"}, "setting 'token' is required"),
        ({"token": EnvRef("${T}")}, "setting 'chat_id' is required"),
        ({"token": TOKEN, "chat_id": "@acme_news"}, "is a secret"),
        ({"token": EnvRef("${T}"), "chat_id": "acme news"}, "chat_id must be a number"),
        ({"token": EnvRef("${T}"), "chat_id": 1.5}, "must be str/int"),
        ({"token": EnvRef("${T}"), "chat_id": 1, "parse_mode": "Markdown"}, "parse_mode must be"),
        ({"token": EnvRef("${T}"), "chat_id": 1, "api_url": "api.telegram.org"}, "https:// URL"),
    ],
)
def test_config_errors(settings: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as caught:
        TelegramChannel("tg", settings, env={})
    assert TOKEN not in str(caught.value)


def test_missing_env_var_at_send_names_it() -> None:
    tg = TelegramChannel("tg", {"token": EnvRef("${TG_TOKEN}"), "chat_id": 1}, env={})
    with pytest.raises(ConfigError, match="TG_TOKEN is not set"):
        tg.send(message(), "k")


@pytest.mark.parametrize("body", ["{}", "[]", '{"ok": true}', "<html>hi</html>"])
def test_an_unreadable_2xx_is_sent_with_the_message_id_unknown(
    httpserver: HTTPServer, body: str
) -> None:
    """Not `failed` (which `retry --failed` would send again): the message is in the chat."""
    httpserver.expect_request(f"{BOT}/sendMessage").respond_with_data(body, status=200)
    receipt = channel(url(httpserver)).send(message(), "k")
    assert receipt.remote_id is None
    assert "remote id unknown" in receipt.note


def test_a_refusal_in_a_2xx_is_still_a_refusal(httpserver: HTTPServer) -> None:
    httpserver.expect_request(f"{BOT}/sendMessage").respond_with_json(
        {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
    )
    with pytest.raises(PermanentError, match="chat not found"):
        channel(url(httpserver)).send(message(), "k")


def test_a_path_echoed_with_the_token_cut_short_leaves_nothing_of_it(
    httpserver: HTTPServer,
) -> None:
    httpserver.expect_request(f"{BOT}/sendMessage").respond_with_handler(
        lambda request: Response(
            '{"ok": false, "error_code": 404, "description": "Not Found: '
            + request.path[:-16].replace("/", "\\\\/")
            + '"}',
            status=404,
            content_type="application/json",
        )
    )
    with pytest.raises(PermanentError) as raised:
        channel(url(httpserver)).send(message(), "k")
    text = str(raised.value)
    assert "Not Found" in text
    secret = TOKEN.split(":", 1)[1]
    assert not any(secret[i : i + 8] in text for i in range(len(secret) - 7)), text


# -- media ------------------------------------------------------------------------------------

CAPTION = "<b>Συνάντηση</b> την Πέμπτη 10 Δεκεμβρίου στις 18:00 &amp; μετά καφές"


def recording(seen: list[Request], answer: dict[str, Any]) -> Any:
    def handler(request: Request) -> Response:
        request.get_data()  # keep the body: werkzeug reads the stream once
        seen.append(request)
        return Response(json.dumps(answer), content_type="application/json")

    return handler


def test_one_photo_goes_by_send_photo_with_its_caption(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    seen: list[Request] = []
    httpserver.expect_oneshot_request(f"{BOT}/sendPhoto", method="POST").respond_with_handler(
        recording(seen, sent_message(51, "Συνάντηση"))
    )
    poster = png(tmp_path / "αφίσα.png", shade=9)
    tg = channel(url(httpserver), parse_mode="HTML")
    receipt = tg.send(message(CAPTION, media=(Media(str(poster), alt="Η αφίσα"),)), "k")
    assert (receipt.remote_id, receipt.url) == ("51", "https://t.me/acme_news/51")
    (request,) = seen
    assert request.mimetype == "multipart/form-data"
    assert dict(request.form) == {
        "chat_id": "@acme_news",
        "caption": CAPTION,
        "parse_mode": "HTML",
    }
    photo = request.files["photo"]
    assert (photo.filename, photo.mimetype) == ("αφίσα.png", "image/png")
    assert photo.read() == poster.read_bytes()


def test_two_to_ten_go_as_one_media_group(httpserver: HTTPServer, tmp_path: Path) -> None:
    seen: list[Request] = []
    album = {"ok": True, "result": [sent_message(60 + n, "")["result"] for n in range(3)]}
    httpserver.expect_oneshot_request(f"{BOT}/sendMediaGroup", method="POST").respond_with_handler(
        recording(seen, album)
    )
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0\0\0\x18ftypmp42" + b"\x07" * 300)
    files = [png(tmp_path / "a.png", 1), png(tmp_path / "b.png", 2), clip]
    media = tuple(Media(str(path), alt=f"εικόνα {n}") for n, path in enumerate(files))
    receipt = channel(url(httpserver), chat_id=-1001234567890).send(
        message("Φωτογραφίες από τη συνάντηση", media=media), "k"
    )
    # Each file is its own message in the chat: the receipt names all three, linking the first.
    assert (receipt.remote_id, receipt.url) == ("60,61,62", "https://t.me/c/1234567890/60")
    (request,) = seen
    assert request.form["chat_id"] == "-1001234567890"
    assert json.loads(request.form["media"]) == [
        {"type": "photo", "media": "attach://file0", "caption": "Φωτογραφίες από τη συνάντηση"},
        {"type": "photo", "media": "attach://file1"},
        {"type": "video", "media": "attach://file2"},
    ]
    for number, path in enumerate(files):
        part = request.files[f"file{number}"]
        assert (part.filename, part.read()) == (path.name, path.read_bytes())
    assert request.files["file2"].mimetype == "video/mp4"


def test_media_limits_are_checked_offline(tmp_path: Path) -> None:
    tg = channel("https://api.telegram.org", parse_mode="HTML")
    photo = Media(str(png(tmp_path / "p.png")))
    # Entities parsed: tags removed and &amp; one character, so 1,024 visible characters pass.
    fits = "<i>" + "α" * 1020 + "</i>&amp;xyz"
    assert tg.check(message(fits, media=(photo,))) == []
    assert tg.check(message(fits + "!", media=(photo,))) == [
        "text is 1025 characters (UTF-16 units, emoji count 2), over telegram's limit of 1024 "
        "for a caption by 1: a post with media carries its text as the caption; shorten the "
        "text, or post the media and the long text as two items"
    ]
    assert tg.check(message("", media=(photo,))) == []  # a photo alone is a post
    poll = {"options": ["a", "b"], "duration_seconds": 60}
    assert tg.check(message("Vote", poll=poll, media=(photo,))) == [
        "a telegram poll cannot carry media: send the media in another post"
    ]
    big = Media(str(sized(tmp_path / "big.png", 10 * 1000 * 1000 + 1)))
    dance = Media(str(gif(tmp_path / "dance.gif", 20 * 1000 * 1000)))
    assert media_problems(tg, big, dance) == [
        (0, "10,000,001 bytes, over telegram's limit of 10,000,000 bytes"),
        (1, "telegram albums hold photos and videos only: send a GIF alone"),
    ]
    assert media_problems(tg, dance) == [], "a GIF goes by sendAnimation: 50 MB"
    huge = Media(str(gif(tmp_path / "huge.gif", 50 * 1000 * 1000 + 1)))
    assert media_problems(tg, huge) == [
        (0, "50,000,001 bytes, over telegram's limit of 50,000,000 bytes for a GIF")
    ]
    assert media_problems(tg, *(photo,) * 11) == [
        (None, "11 media files, over telegram's 10 per post")
    ]
    from PIL import Image

    Image.new("RGB", (6000, 4001), "teal").save(tmp_path / "wide.png")
    Image.new("RGB", (2100, 100), "teal").save(tmp_path / "banner.png")
    assert media_problems(tg, Media(str(tmp_path / "wide.png"))) == [
        (0, "6000x4001 pixels, over telegram's limit of 10,000 for width and height together")
    ]
    assert media_problems(tg, Media(str(tmp_path / "banner.png"))) == [
        (0, "aspect ratio 21.0:1, over telegram's 20:1")
    ]


def test_a_long_caption_is_refused_before_any_request(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    photo = Media(str(png(tmp_path / "p.png")))
    with pytest.raises(PermanentError, match="over telegram's limit of 1024 for a caption"):
        channel(url(httpserver)).send(message("α" * 1025, media=(photo,)), "k")
    assert httpserver.log == []


def test_413_is_permanent_and_an_echoed_token_is_redacted(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request(f"{BOT}/sendPhoto").respond_with_json(
        {
            "ok": False,
            "error_code": 413,
            "description": f"Request Entity Too Large: POST {BOT}/sendPhoto",
        },
        status=413,
    )
    photo = Media(str(png(tmp_path / "p.png")))
    with pytest.raises(PermanentError, match="413: Request Entity Too Large") as caught:
        channel(url(httpserver)).send(message("hi", media=(photo,)), "k")
    assert TOKEN not in everything_said(caught.value)
    assert TOKEN.split(":")[1][:12] not in everything_said(caught.value)


def test_a_hang_up_after_the_upload_may_have_posted(tmp_path: Path) -> None:
    photo = Media(str(png(tmp_path / "p.png", shade=77)))
    with HangUpAfterRequest() as server:
        tg = channel(server.url, http=TimeoutSession(timeout=(1, 2)))
        with pytest.raises(TransientError) as caught:
            tg.send(message("hi", media=(photo, photo)), "k")
    assert caught.value.maybe_sent, "the album went out: the publisher must not post again"
    assert TOKEN not in everything_said(caught.value)
    (request,) = server.requests
    assert b"/sendMediaGroup" in request.split(b"\r\n")[0]
    assert request.count(Path(photo.path).read_bytes()) == 2


def test_200_with_garbage_is_sent_with_a_note(httpserver: HTTPServer, tmp_path: Path) -> None:
    httpserver.expect_request(f"{BOT}/sendMediaGroup").respond_with_data("<html>ok</html>")
    photo = Media(str(png(tmp_path / "p.png")))
    receipt = channel(url(httpserver)).send(message("hi", media=(photo, photo)), "k")
    assert receipt.remote_id is None
    assert receipt.note.startswith("sent, remote id unknown: 200 answer without a message_id")


def test_a_file_gone_before_the_send_sends_nothing(httpserver: HTTPServer, tmp_path: Path) -> None:
    photo = Media(str(png(tmp_path / "p.png")))
    tg = channel(url(httpserver))
    assert tg.check(message("hi", media=(photo,))) == []
    Path(photo.path).unlink()
    with pytest.raises(PermanentError, match=r"cannot read media file .*: No such file"):
        tg.send(message("hi", media=(photo,)), "k")
    assert httpserver.log == []


def test_a_retracted_album_deletes_every_one_of_its_messages(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    # Telegram answered with two messages for three files (one went missing on its side):
    # the receipt keeps what it named, and a retract deletes those, not just the first.
    album = {"ok": True, "result": [sent_message(80 + n, "")["result"] for n in range(2)]}
    httpserver.expect_oneshot_request(f"{BOT}/sendMediaGroup").respond_with_json(album)
    deleted: list[Request] = []
    httpserver.expect_oneshot_request(f"{BOT}/deleteMessages").respond_with_handler(
        recording(deleted, {"ok": True, "result": True})
    )
    files = [png(tmp_path / f"{n}.png", n) for n in range(3)]
    adapter = channel(url(httpserver))
    receipt = adapter.send(message("Άλμπουμ", media=tuple(Media(str(f)) for f in files)), "k")
    assert receipt.remote_id == "80,81"
    assert adapter.retract(receipt) is True
    (request,) = deleted
    assert request.get_json() == {"chat_id": "@acme_news", "message_ids": [80, 81]}
