"""LinkedIn adapter against a loopback server that answers like the Posts and Images APIs.

POST /rest/posts answers 201 with the post's URN in `x-restli-id` and no body; POST
/rest/images?action=initializeUpload answers `{"value": {"uploadUrl", "image"}}` and the bytes
are PUT to the upload URL; errors are `{"status", "serviceErrorCode", "code", "message"}`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from commcal.channels.base import EnvRef, Media, Message, PermanentError, TransientError
from commcal.channels.linkedin import DEFAULT_VERSION, LinkedInChannel, little_text
from commcal.cli import app
from commcal.errors import ConfigError
from tests.conftest import MakeProject
from tests.fake_networks import Answer, Networks, Request

TOKEN = "AQVx4R3xq9ZbT5mWc7LpK2nD8sFh6J"
AUTHOR = "urn:li:organization:2414183"
POST = "urn:li:share:7012345678901234567"


class LinkedIn:
    def __init__(self, networks: Networks) -> None:
        self.networks = networks
        self.images = 0

    def answer(self, request: Request) -> Answer:
        if request.path == "/rest/images?action=initializeUpload":
            self.images += 1
            image = f"urn:li:image:C4E10AQ{self.images}"
            value = {
                "uploadUrlExpiresAt": 1764579600000,
                "uploadUrl": f"{self.networks.url}/dms-uploads/sp/{self.images}?ca=vector&sig=s1g",
                "image": image,
            }
            return Answer(200, json.dumps({"value": value}).encode())
        if request.path.startswith("/dms-uploads/"):
            return Answer(201, b"")
        if request.path == "/rest/posts":
            return Answer(201, b"", headers={"x-restli-id": POST})
        return Answer(404, b'{"status": 404, "message": "Not found"}')

    def posts(self) -> list[dict[str, Any]]:
        return [json.loads(r.body) for r in self.networks.requests if r.path == "/rest/posts"]


@pytest.fixture
def linkedin() -> Iterator[LinkedIn]:
    with Networks() as networks:
        fake = LinkedIn(networks)
        networks.answer = fake.answer
        yield fake


def channel(fake: LinkedIn, **settings: Any) -> LinkedInChannel:
    config: dict[str, Any] = {
        "author": AUTHOR,
        "token": EnvRef("${LI_TOKEN}"),
        "api_url": fake.networks.url,
        **settings,
    }
    return LinkedInChannel("li", config, env={"LI_TOKEN": TOKEN})


def message(
    text: str = "We are hiring (2 roles) #jobs https://example.org/a_b", **kw: Any
) -> Message:
    return Message("li", "linkedin", text, **kw)


def test_a_text_post_with_the_versioned_headers(linkedin: LinkedIn) -> None:
    receipt = channel(linkedin).send(message(), "k")
    assert receipt.remote_id == POST
    assert receipt.url == f"https://www.linkedin.com/feed/update/{POST}/"
    (sent,) = linkedin.networks.requests
    assert sent.headers["LinkedIn-Version"] == DEFAULT_VERSION
    assert sent.headers["X-Restli-Protocol-Version"] == "2.0.0"
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert json.loads(sent.body) == {
        "author": AUTHOR,
        "commentary": r"We are hiring \(2 roles\) #jobs https://example.org/a_b",
        "visibility": "PUBLIC",
        "distribution": {
            "feedDistribution": "MAIN_FEED",
            "targetEntities": [],
            "thirdPartyDistributionChannels": [],
        },
        "lifecycleState": "PUBLISHED",
        "isReshareDisabledByAuthor": False,
    }


def test_little_text_escapes_every_reserved_character_but_hashtags_and_urls() -> None:
    assert little_text(r"a\b|c{d}e@f[g]h(i)j<k>l#m*n_o~p") == (
        r"a\\b\|c\{d\}e\@f\[g\]h\(i\)j\<k\>l\#m\*n\_o\~p"
    )
    assert little_text("#launch day: 50% off* (today)") == r"#launch day: 50% off\* \(today\)"
    assert little_text("see https://x.org/a_(b) now") == "see https://x.org/a_(b) now"
    assert little_text("Email me @ hello") == r"Email me \@ hello"


def test_length_is_counted_before_escaping_in_utf16_units() -> None:
    adapter = LinkedInChannel("li", {"author": AUTHOR, "token": EnvRef("${T}")}, env={})
    assert adapter.check(message("(" * 3000)) == []  # 6,000 characters once escaped
    assert adapter.check(message("😀" * 1501)) == [
        "text is 3002 characters, over linkedin's limit of 3000 by 2"
    ]


def test_upload_puts_the_bytes_and_returns_the_image_urn(
    linkedin: LinkedIn, tmp_path: Path
) -> None:
    photo = tmp_path / "team.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\nTEAMPHOTO")
    urn = channel(linkedin).upload(Media(str(photo), alt="Our team"))
    assert urn == "urn:li:image:C4E10AQ1"
    init, put = linkedin.networks.requests
    assert json.loads(init.body) == {"initializeUploadRequest": {"owner": AUTHOR}}
    assert init.headers["LinkedIn-Version"] == DEFAULT_VERSION
    assert put.method == "PUT" and put.body == b"\x89PNG\r\n\x1a\nTEAMPHOTO"
    assert put.headers["Content-Type"] == "image/png"


def test_the_token_never_goes_to_an_upload_url_elsewhere(tmp_path: Path) -> None:
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"\xff\xd8")
    with Networks() as api, Networks() as elsewhere:
        elsewhere_url = elsewhere.url.replace("127.0.0.1", "localhost")
        value = {"uploadUrl": f"{elsewhere_url}/up", "image": "urn:li:image:X"}
        api.answer = lambda request: Answer(200, json.dumps({"value": value}).encode())
        elsewhere.answer = lambda request: Answer(201, b"")
        adapter = LinkedInChannel(
            "li",
            {"author": AUTHOR, "token": EnvRef("${LI_TOKEN}"), "api_url": api.url},
            env={"LI_TOKEN": TOKEN},
        )
        adapter.upload(Media(str(photo)))
        (put,) = elsewhere.requests
        assert "Authorization" not in put.headers


def test_send_with_refs_posts_them_without_uploading_again(linkedin: LinkedIn) -> None:
    media = (Media("/media/a.png", alt="First", ref="urn:li:image:A"),)
    channel(linkedin).send(message("One", media=media), "k")
    assert linkedin.images == 0
    assert linkedin.posts()[0]["content"] == {"media": {"id": "urn:li:image:A", "altText": "First"}}


def test_send_without_refs_uploads_and_posts_a_multi_image(
    linkedin: LinkedIn, tmp_path: Path
) -> None:
    paths = []
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"\xff\xd8" + name.encode())
        paths.append(str(tmp_path / name))
    media = (Media(paths[0], alt="A"), Media(paths[1], alt="B", ref="urn:li:image:KEPT"))
    channel(linkedin).send(message("Two", media=media), "k")
    assert linkedin.images == 1
    assert linkedin.posts()[0]["content"] == {
        "multiImage": {
            "images": [
                {"id": "urn:li:image:C4E10AQ1", "altText": "A"},
                {"id": "urn:li:image:KEPT", "altText": "B"},
            ]
        }
    }


def test_201_without_the_header_is_sent_with_the_id_unknown(linkedin: LinkedIn) -> None:
    linkedin.networks.answer = lambda request: Answer(201, b"garbage{", "text/plain")
    receipt = channel(linkedin).send(message(), "k")
    assert receipt.remote_id is None and "without an x-restli-id header" in receipt.note


def test_an_expired_token_echoed_back_is_redacted_with_a_fix(linkedin: LinkedIn) -> None:
    linkedin.networks.answer = lambda request: Answer(
        401,
        json.dumps(
            {
                "status": 401,
                "serviceErrorCode": 65601,
                "code": "REVOKED_ACCESS_TOKEN",
                "message": f"The token used in the request has been revoked: {TOKEN}",
            }
        ).encode(),
    )
    with pytest.raises(PermanentError) as caught:
        channel(linkedin).send(message(), "k")
    text = str(caught.value)
    assert TOKEN not in text and TOKEN[:12] not in text
    assert "(REVOKED_ACCESS_TOKEN)" in text and "LinkedIn tokens last 60 days" in text


def test_429_forever_is_bounded_and_dropped_post_may_have_posted(linkedin: LinkedIn) -> None:
    linkedin.networks.answer = lambda request: Answer(
        429,
        b'{"status": 429, "message": "Resource level throttle limit"}',
        headers={"Retry-After": "3600"},
    )
    with pytest.raises(TransientError) as caught:
        channel(linkedin).send(message(), "k")
    assert caught.value.retry_after == 3600 and len(linkedin.networks.requests) == 1
    linkedin.networks.answer = lambda request: Answer(drop=True)
    with pytest.raises(TransientError) as dropped:
        channel(linkedin).send(message(), "k")
    assert dropped.value.maybe_sent and not LinkedInChannel.idempotent


def test_settings_are_validated() -> None:
    base = {"author": AUTHOR, "token": EnvRef("${T}")}
    with pytest.raises(ConfigError, match="author must be urn:li:organization:<digits>"):
        LinkedInChannel("li", {**base, "author": "acme-inc"}, env={})
    with pytest.raises(ConfigError, match="version must be a month as YYYYMM"):
        LinkedInChannel("li", {**base, "version": "2026-05"}, env={})
    with pytest.raises(ConfigError, match="visibility must be one of"):
        LinkedInChannel("li", {**base, "visibility": "public"}, env={})
    person = LinkedInChannel("li", {**base, "author": "urn:li:person:782bbtaQ"}, env={})
    assert person.options["version"] == DEFAULT_VERSION


def test_check_media_refuses_addresses_videos_and_formats_at_each_file(tmp_path: Path) -> None:
    from PIL import Image

    from commcal.mediacheck import inspect

    adapter = LinkedInChannel("li", {"author": AUTHOR, "token": EnvRef("${T}")}, env={})
    photo, still = tmp_path / "a.jpg", tmp_path / "b.webp"
    Image.new("RGB", (64, 48), "teal").save(photo)
    Image.new("RGB", (64, 48), "teal").save(still)
    clip = tmp_path / "c.mp4"
    clip.write_bytes(b"\0\0\0\x08ftyp")
    files = [
        inspect(Media(p, alt="x"))
        for p in ("https://cdn.example.org/a.jpg", str(photo), str(still), str(clip))
    ]
    assert adapter.check_media(files) == [
        (
            0,
            "LinkedIn takes image files, not addresses; put the image in the project's "
            "media/ folder",
        ),
        (2, "image/webp is not a format linkedin takes (image/gif, image/jpeg, image/png)"),
        (3, "linkedin takes no video here (video/mp4)"),
    ]
    long_alt = inspect(Media(str(photo), alt="a" * 4087))
    assert adapter.check_media([long_alt]) == [
        (0, "alt text is 4087 characters, over linkedin's limit of 4086 by 1")
    ]
    # The post itself: only what is not about one file.
    assert adapter.check(message("x", media=(Media("https://cdn.example.org/a.jpg"),))) == []


def test_channels_test_checks_the_token_without_posting(
    linkedin: LinkedIn, make_project: MakeProject
) -> None:
    root = make_project(
        config=(
            "timezone: UTC\nlocale: en\nchannels:\n  li:\n    type: linkedin\n"
            f"    author: {AUTHOR}\n    token: ${{LI_TOKEN}}\n"
            f"    api_url: {linkedin.networks.url}\n"
        )
    )
    linkedin.networks.answer = lambda request: Answer(
        200, b'{"id": 2414183, "localizedName": "Duka Letu"}'
    )
    runner = CliRunner()
    ok = runner.invoke(app, ["-C", str(root), "channels", "test", "li"], env={"LI_TOKEN": TOKEN})
    assert ok.exit_code == 0, ok.output
    assert ok.output == f"li: ok (token works for the LinkedIn Page Duka Letu ({AUTHOR}))\n"
    assert [r.path for r in linkedin.networks.requests] == ["/rest/organizations/2414183"]
    linkedin.networks.answer = lambda request: Answer(
        401, json.dumps({"status": 401, "message": f"Invalid access token {TOKEN}"}).encode()
    )
    bad = runner.invoke(app, ["-C", str(root), "channels", "test", "li"], env={"LI_TOKEN": TOKEN})
    assert bad.exit_code == 1
    assert TOKEN not in bad.output
    assert "LinkedIn tokens last 60 days" in bad.output


def test_an_upload_that_broke_off_posted_nothing(linkedin: LinkedIn, tmp_path: Path) -> None:
    """A dropped upload is tried again, never recorded `unknown`: no post was made."""
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"\xff\xd8")
    answer = linkedin.answer
    linkedin.networks.answer = lambda r: Answer(drop=True) if r.method == "PUT" else answer(r)
    with pytest.raises(TransientError) as caught:
        channel(linkedin).send(message("x", media=(Media(str(photo)),)), "k")
    assert not caught.value.maybe_sent
    assert linkedin.posts() == []


def test_a_retired_version_says_how_to_fix_it(linkedin: LinkedIn) -> None:
    linkedin.networks.answer = lambda request: Answer(
        426,
        b'{"status": 426, "code": "NONEXISTENT_VERSION", "message": "Requested version '
        b'20240101 is not active"}',
    )
    with pytest.raises(PermanentError) as caught:
        channel(linkedin, version="202401").send(message(), "k")
    assert "set the channel's `version` to a recent month" in str(caught.value)


def test_a_url_ends_where_the_sentence_markup_around_it_begins() -> None:
    # A link in parentheses, or in <...>, or before a full stop: the ")" or ">" after it is the
    # sentence's, and left unescaped it is markup where LinkedIn may cut the post. The URL's
    # own balanced parentheses and underscores stay as written, so it still links.
    assert little_text("(see https://en.wikipedia.org/wiki/Foo_(bar)) now.") == (
        r"\(see https://en.wikipedia.org/wiki/Foo_(bar)\) now."
    )
    assert little_text("<https://x.org/a_b> and https://x.org/c_d.") == (
        r"\<https://x.org/a_b\> and https://x.org/c_d."
    )
    assert little_text("[https://x.org/q?a=1]*") == r"\[https://x.org/q?a=1\]\*"
    assert little_text("see https://x.org/a_(b) now") == "see https://x.org/a_(b) now"
