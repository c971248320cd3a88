"""Facebook Pages adapter against a loopback server that answers like the Graph API.

POST /{page-id}/feed answers `{"id": "<page>_<post>"}`; photos go up unpublished through
POST /{page-id}/photos and are attached with `attached_media`; refusals are Graph error bodies
whose `code` decides transient or permanent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from commcal.channels.base import EnvRef, Media, Message, PermanentError, TransientError
from commcal.channels.facebook import FacebookChannel
from commcal.errors import ConfigError
from tests.fake_networks import Answer, Networks, Request

TOKEN = "EAAGq7Xv2Wm9Rz4Lp8Tn3Yk6Qb1Hs5Jd"
PAGE = "104826152034921"
POST = f"{PAGE}_1234567890123456"


def error(code: int, message: str, status: int = 400, **extra: Any) -> Answer:
    body = {"error": {"message": message, "type": "OAuthException", "code": code, **extra}}
    return Answer(status, json.dumps(body).encode())


def page_answer(request: Request) -> Answer:
    path = urlsplit(request.path).path
    if path == f"/v27.0/{PAGE}/photos":
        return Answer(200, json.dumps({"id": f"9{len(request.body) % 1000:03d}1"}).encode())
    if path == f"/v27.0/{PAGE}/feed":
        return Answer(200, json.dumps({"id": POST}).encode())
    return error(100, "Unsupported request")


@pytest.fixture
def networks() -> Iterator[Networks]:
    with Networks() as server:
        server.answer = page_answer
        yield server


def channel(networks: Networks) -> FacebookChannel:
    settings = {
        "page_id": PAGE,
        "token": EnvRef("${FB_TOKEN}"),
        "api_url": networks.url + "/v27.0",
    }
    return FacebookChannel("page", settings, env={"FB_TOKEN": TOKEN})


def message(text: str = "Open kitchen tonight", **fields: Any) -> Message:
    return Message("page", "facebook", text, **fields)


def test_a_post_with_a_link(networks: Networks) -> None:
    receipt = channel(networks).send(message(options={"link": "https://example.org/menu"}), "k")
    assert receipt.remote_id == POST
    assert receipt.url == f"https://www.facebook.com/{POST}"
    (sent,) = networks.requests
    assert parse_qs(sent.text) == {
        "message": ["Open kitchen tonight"],
        "link": ["https://example.org/menu"],
    }
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in sent.path


def test_photos_go_up_unpublished_and_are_attached(networks: Networks, tmp_path: Path) -> None:
    photo = tmp_path / "dinner.jpg"
    photo.write_bytes(b"\xff\xd8\xff\xe0JPEGDATA")
    adapter = channel(networks)
    local = adapter.upload(Media(str(photo), alt="Dinner table"))
    upload = networks.requests[-1]
    assert upload.headers["Content-Type"].startswith("multipart/form-data")
    assert b'name="source"; filename="dinner.jpg"' in upload.body
    assert b"JPEGDATA" in upload.body
    assert b'name="published"\r\n\r\nfalse' in upload.body
    remote = adapter.upload(Media("https://cdn.example.org/b.jpg"))
    assert parse_qs(networks.requests[-1].text) == {
        "published": ["false"],
        "url": ["https://cdn.example.org/b.jpg"],
    }
    # The publisher records each ref before the post; a resumed send reuses them.
    before = len(networks.requests)
    media = (Media(str(photo), ref=local), Media("https://cdn.example.org/b.jpg", ref=remote))
    adapter.send(message(media=media), "k")
    assert len(networks.requests) == before + 1, "no upload again"
    attached = json.loads(parse_qs(networks.requests[-1].text)["attached_media"][0])
    assert attached == [{"media_fbid": local}, {"media_fbid": remote}]


def test_send_uploads_media_without_a_ref(networks: Networks) -> None:
    channel(networks).send(message(media=(Media("https://cdn.example.org/b.jpg"),)), "k")
    assert [urlsplit(r.path).path.rsplit("/", 1)[1] for r in networks.requests] == [
        "photos",
        "feed",
    ]


@pytest.mark.parametrize(
    ("answer", "transient"),
    [
        (error(2, "Service temporarily unavailable", status=500), True),
        (error(4, "Application request limit reached"), True),
        (error(32, "Page request limit reached", status=403), True),
        (error(368, "Temporarily blocked for policy violations", status=403), True),
        (error(80001, "There have been too many calls to this Page account"), True),
        (error(100, "Invalid parameter"), False),
        (error(200, "Requires pages_manage_posts permission", status=403), False),
        (error(506, "Duplicate status message"), False),
        (error(190, "Token expired", status=500), False),  # the code decides, not the status
    ],
)
def test_graph_codes_decide_transient_or_permanent(
    networks: Networks, answer: Answer, transient: bool
) -> None:
    networks.answer = lambda request: answer
    with pytest.raises(TransientError if transient else PermanentError) as caught:
        channel(networks).send(message(), "k")
    if not transient:
        assert not isinstance(caught.value, TransientError)


def test_an_expired_token_echoed_back_is_redacted_with_a_fix(networks: Networks) -> None:
    networks.answer = lambda request: error(
        190,
        f"Error validating access token: Session has expired. access_token={TOKEN}",
        error_subcode=463,
        fbtrace_id="AbC123",
    )
    with pytest.raises(PermanentError) as caught:
        channel(networks).send(message(), "k")
    text = str(caught.value)
    assert TOKEN not in text and TOKEN[-12:] not in text
    assert "(code 190, subcode 463, fbtrace_id AbC123)" in text
    assert "make a new long-lived Page token" in text


def test_permission_error_names_the_permissions(networks: Networks) -> None:
    networks.answer = lambda request: error(200, "Permissions error", status=403)
    with pytest.raises(PermanentError, match="pages_manage_posts"):
        channel(networks).send(message(), "k")


def test_200_with_garbage_is_sent_with_the_id_unknown(networks: Networks) -> None:
    networks.answer = lambda request: Answer(200, b"<html>ok</html>", "text/html")
    receipt = channel(networks).send(message(), "k")
    assert receipt.remote_id is None and "without a post id" in receipt.note


def test_a_connection_dropped_after_the_post_may_have_posted(networks: Networks) -> None:
    networks.answer = lambda request: Answer(drop=True)
    with pytest.raises(TransientError) as caught:
        channel(networks).send(message(), "k")
    assert caught.value.maybe_sent and not FacebookChannel.idempotent


def test_429_forever_is_bounded(networks: Networks) -> None:
    networks.answer = lambda request: Answer(429, b"{}", headers={"Retry-After": "86400"})
    with pytest.raises(TransientError) as caught:
        channel(networks).send(message(), "k")
    assert caught.value.retry_after == 86400
    assert len(networks.requests) == 1


def test_settings_and_check() -> None:
    with pytest.raises(ConfigError, match="page_id must be the Page's numeric id"):
        FacebookChannel("page", {"page_id": "acme", "token": EnvRef("${T}")}, env={})
    adapter = FacebookChannel("page", {"page_id": PAGE, "token": EnvRef("${T}")}, env={})
    assert adapter.options["api_url"] == "https://graph.facebook.com/v27.0"
    problems = adapter.check(
        message("a" * 63207, media=(Media("/nowhere/x.jpg"),), options={"link": "menu"})
    )
    assert problems == [  # a missing file is said once, at its own line, by validate
        "text is 63207 characters, over facebook's limit of 63206 by 1",
        "link must be a web address (https://...), not 'menu'",
    ]


def test_check_media_takes_photos_only(tmp_path: Path) -> None:
    from PIL import Image

    from commcal.mediacheck import inspect

    adapter = FacebookChannel("page", {"page_id": PAGE, "token": EnvRef("${T}")}, env={})
    photo, clip = tmp_path / "a.png", tmp_path / "b.mp4"
    Image.new("RGB", (64, 48), "teal").save(photo)
    clip.write_bytes(b"\0\0\0\x08ftyp")
    files = [inspect(Media(str(p), alt="x")) for p in (photo, clip)]
    assert adapter.check_media(files) == [(1, "facebook takes no video here (video/mp4)")]
    assert adapter.check(message("", media=(Media(str(photo)),))) == []  # photos need no text


def test_verify_names_the_page(networks: Networks) -> None:
    networks.answer = lambda request: Answer(200, b'{"id": "104826152034921", "name": "Duka"}')
    assert channel(networks).verify() == "token works for the Page Duka (id 104826152034921)"


def test_a_photo_upload_that_broke_off_posted_nothing(networks: Networks) -> None:
    networks.answer = lambda request: Answer(drop=True)
    with pytest.raises(TransientError) as caught:
        channel(networks).send(message(media=(Media("https://cdn.example.org/b.jpg"),)), "k")
    assert not caught.value.maybe_sent  # tried again, not `unknown`: nothing was posted
    assert [urlsplit(r.path).path.rsplit("/", 1)[1] for r in networks.requests] == ["photos"]
