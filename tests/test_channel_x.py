"""X adapter against a loopback server that answers like API v2."""

from __future__ import annotations

import json
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
    StaleMedia,
    TransientError,
)
from commcal.channels.x import XChannel
from commcal.errors import ConfigError
from commcal.http import TimeoutSession
from tests.media_helpers import (
    HangUpAfterRequest,
    Seen,
    gif,
    media_problems,
    png,
    seen,
    sized,
)

ENV = {"X_TOKEN": "oauth2-user-token"}
AUTH = {"Authorization": "Bearer oauth2-user-token"}


def channel(server: HTTPServer, **settings: Any) -> XChannel:
    http = settings.pop("http", None)
    config: dict[str, Any] = {
        "token": EnvRef("${X_TOKEN}"),
        "api_url": server.url_for("/").rstrip("/"),
    }
    config.update(settings)
    return XChannel("x", config, env=ENV, http=http)


def message(text: str = "日本語とEnglish https://example.org", **options: Any) -> Message:
    media = options.pop("media", ())
    return Message("x", "x", text, media=media, options=options)


def created(post_id: str, text: str) -> dict[str, Any]:
    return {"data": {"id": post_id, "text": text, "edit_history_tweet_ids": [post_id]}}


def test_send_posts_text(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(
        "/2/tweets",
        method="POST",
        headers=AUTH,
        json={"text": "日本語とEnglish https://example.org"},
    ).respond_with_json(
        created("1445880548472328192", "日本語とEnglish https://t.co/abc"), status=201
    )
    receipt = channel(httpserver).send(message(), "k")
    httpserver.check_assertions()
    assert receipt.remote_id == "1445880548472328192"
    assert receipt.url == "https://x.com/i/web/status/1445880548472328192"


def test_send_poll(httpserver: HTTPServer) -> None:
    httpserver.expect_oneshot_request(
        "/2/tweets",
        method="POST",
        json={"text": "Which day?", "poll": {"options": ["Mon", "Fri"], "duration_minutes": 120}},
    ).respond_with_json(created("1", "Which day?"), status=201)
    poll = {"question": "Which day?", "options": ["Mon", "Fri"], "duration_seconds": 7200}
    channel(httpserver).send(message("Which day?", poll=poll), "k")
    httpserver.check_assertions()


def test_401_is_permanent_with_detail(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/2/tweets").respond_with_json(
        {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"},
        status=401,
    )
    with pytest.raises(PermanentError, match="HTTP 401: Unauthorized") as caught:
        channel(httpserver).send(message(), "k")
    assert "oauth2-user-token" not in str(caught.value)


def test_403_duplicate_is_permanent(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/2/tweets").respond_with_json(
        {
            "detail": "You are not allowed to create a Tweet with duplicate content.",
            "type": "about:blank",
            "title": "Forbidden",
            "status": 403,
        },
        status=403,
    )
    with pytest.raises(PermanentError, match="duplicate content"):
        channel(httpserver).send(message(), "k")


def test_400_lists_each_error(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/2/tweets").respond_with_json(
        {
            "errors": [
                {
                    "parameters": {"poll.duration_minutes": ["2"]},
                    "message": "2 is not between 5 and 10080",
                }
            ],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request",
        },
        status=400,
    )
    with pytest.raises(PermanentError, match="2 is not between 5 and 10080"):
        channel(httpserver).send(message(), "k")


def test_429_uses_rate_limit_reset(httpserver: HTTPServer) -> None:
    reset = str(int(time.time()) + 900)
    httpserver.expect_request("/2/tweets").respond_with_json(
        {
            "title": "Too Many Requests",
            "detail": "Too Many Requests",
            "type": "about:blank",
            "status": 429,
        },
        status=429,
        headers={
            "x-rate-limit-limit": "200",
            "x-rate-limit-remaining": "0",
            "x-rate-limit-reset": reset,
        },
    )
    with pytest.raises(TransientError, match="Too Many Requests") as caught:
        channel(httpserver).send(message(), "k")
    assert caught.value.retry_after is not None
    assert 890 < caught.value.retry_after <= 900


def test_503_with_retry_after(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/2/tweets").respond_with_data(
        "Service Unavailable", status=503, headers={"Retry-After": "5"}
    )
    with pytest.raises(TransientError) as caught:
        channel(httpserver).send(message(), "k")
    assert caught.value.retry_after == 5


def test_timeout_is_transient(httpserver: HTTPServer) -> None:
    def slow(request: Request) -> Response:
        time.sleep(1.0)
        return Response("{}", content_type="application/json")

    httpserver.expect_request("/2/tweets").respond_with_handler(slow)
    with pytest.raises(TransientError, match="timed out"):
        channel(httpserver, http=TimeoutSession(timeout=(1, 0.3))).send(message(), "k")


def test_verify(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/2/users/me", method="GET", headers=AUTH).respond_with_json(
        {"data": {"id": "2244994945", "name": "Acme", "username": "acme"}}
    )
    assert channel(httpserver).verify() == "token works for @acme"


def test_check_weighted_length_and_poll_limits() -> None:
    x = XChannel("x", {"token": EnvRef("${X_TOKEN}")}, env={})
    url = "https://example.org/" + "a" * 200
    assert x.check(message("日" * 128 + " " + url)) == []  # 256 + 1 + 23 = 280
    assert x.check(message("日" * 129 + " " + url)) == [
        "text is 282 weighted characters (URLs 23, CJK and emoji 2), over x's limit of 280 by 2"
    ]
    poll = {"options": ["a", "b", "c", "d", "e"], "duration_seconds": 60}
    problems = x.check(message("Vote", poll=poll))
    assert "a poll needs 2 to 4 options, not 5" in problems
    assert "an x poll stays open 5 minutes to 7 days, not 1 minutes" in problems
    assert any(
        "needs 1 to 25" in p for p in x.check(message("V", poll={"options": ["a" * 26, "b"]}))
    )
    assert x.check(message("V", media=(Media("a.png"),))) == []  # files: check_media


@pytest.mark.parametrize("char", ["\ufeff", "\ufffe", "\uffff"])
def test_characters_x_refuses_are_a_problem_anywhere(char: str) -> None:
    """twitter-text INVALID_CHARACTERS: a post holding one is invalid whatever its length."""
    x = XChannel("x", {"token": EnvRef("${X_TOKEN}")}, env={})
    for text in (char + "Hello", "Hel" + char + "lo", "Hello" + char):
        (problem,) = x.check(message(text))
        assert "which X refuses; remove it" in problem
        assert f"U+{ord(char):04X}" in problem


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, "setting 'token' is required"),
        ({"token": "plain-token"}, "is a secret"),
        ({"token": EnvRef("${T}"), "api_url": "http://api.x.com"}, "https:// URL"),
        ({"token": EnvRef("${T}"), "bearer": "x"}, "unknown setting 'bearer'"),
    ],
)
def test_config_errors(settings: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        XChannel("x", settings, env={})


def test_missing_env_var_at_send_names_it() -> None:
    x = XChannel("x", {"token": EnvRef("${X_TOKEN}")}, env={})
    with pytest.raises(ConfigError, match="X_TOKEN is not set"):
        x.send(message(), "k")


# -- media ------------------------------------------------------------------------------------


class FakeUploads:
    """Answers /2/media/upload, /2/media/metadata and /2/tweets as X does, recording each."""

    def __init__(self, processing: list[dict[str, Any]] | None = None) -> None:
        self.seen: list[Seen] = []
        self.next_id = 1880028106020515840
        self.processing = list(processing or [])

    def __call__(self, request: Request) -> Response:
        self.seen.append(seen(request))
        if request.path == "/2/tweets":
            return Response(json.dumps(created("1445880548472328192", "")), 201)
        if request.path == "/2/media/metadata":
            return Response(json.dumps({"data": {"associated_metadata": True}}), 200)
        command = self.seen[-1].form.get("command")
        if command in ("FINALIZE", "STATUS") and self.processing:
            info = self.processing.pop(0)
            return Response(json.dumps({"data": {"id": "9", "processing_info": info}}))
        if command in ("APPEND", "FINALIZE", "STATUS"):
            return Response("", 204 if command == "APPEND" else 200)
        self.next_id += 1
        media = {"id": str(self.next_id), "media_key": f"3_{self.next_id}", "size": 75}
        return Response(json.dumps({"data": media}), 200, content_type="application/json")

    def paths(self) -> list[str]:
        return [
            r.path + (f" {r.form['command']}" if "command" in r.form else "") for r in self.seen
        ]


def serve(httpserver: HTTPServer, fake: FakeUploads) -> None:
    for path in ("/2/media/upload", "/2/media/metadata", "/2/tweets"):
        httpserver.expect_request(path).respond_with_handler(fake)


def photos(tmp_path: Path, count: int = 2) -> tuple[Media, ...]:
    alts = ["Αφίσα: βραδιά κοινότητας, Πέμπτη 10 Δεκεμβρίου", "Χάρτης: η είσοδος από την οδό Ερμού"]
    return tuple(
        Media(str(png(tmp_path / f"p{n}.png", shade=n * 50)), alt=alts[n % 2]) for n in range(count)
    )


def test_images_go_up_with_alt_text_then_the_post_names_them(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    fake = FakeUploads()
    serve(httpserver, fake)
    media = photos(tmp_path)
    x = channel(httpserver)
    refs = [x.upload(item) for item in media]
    assert refs == ["1880028106020515841", "1880028106020515842"]
    sent = Message(
        "x",
        "x",
        "Βραδιά κοινότητας",
        media=tuple(
            Media(item.path, alt=item.alt, ref=ref) for item, ref in zip(media, refs, strict=True)
        ),
    )
    receipt = x.send(sent, "k")
    assert receipt.remote_id == "1445880548472328192"
    assert fake.paths() == [
        "/2/media/upload",
        "/2/media/metadata",
        "/2/media/upload",
        "/2/media/metadata",
        "/2/tweets",
    ]
    for request in fake.seen:
        assert request.headers["Authorization"] == "Bearer oauth2-user-token"
    for number, item in enumerate(media):
        upload, metadata = fake.seen[2 * number], fake.seen[2 * number + 1]
        part = upload.files["media"]
        assert (part.filename, part.mimetype) == (f"p{number}.png", "image/png")
        assert part.data == Path(item.path).read_bytes()
        assert upload.form["media_category"] == "tweet_image"
        assert metadata.json() == {
            "id": refs[number],
            "metadata": {"alt_text": {"text": item.alt}},
        }
    assert fake.seen[-1].json() == {"text": "Βραδιά κοινότητας", "media": {"media_ids": refs}}


def test_a_send_given_refs_uploads_nothing_again(httpserver: HTTPServer, tmp_path: Path) -> None:
    fake = FakeUploads()
    serve(httpserver, fake)
    (item,) = photos(tmp_path, 1)
    resumed = Message("x", "x", "again", media=(Media(item.path, alt=item.alt, ref="77"),))
    channel(httpserver).send(resumed, "k")
    assert fake.paths() == ["/2/tweets"]
    assert fake.seen[0].json()["media"] == {"media_ids": ["77"]}


def test_a_video_goes_up_in_chunks_and_waits_for_processing(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    fake = FakeUploads(
        processing=[
            {"state": "pending", "check_after_secs": 2},
            {"state": "in_progress", "check_after_secs": 90, "progress_percent": 40},
            {"state": "succeeded", "progress_percent": 100},
        ]
    )
    serve(httpserver, fake)
    clip = tmp_path / "teaser.mp4"
    clip.write_bytes(bytes(range(256)) * 2 + b"tail")
    x = channel(httpserver)
    x.chunk_bytes = 200
    waits: list[float] = []
    x.sleep = waits.append
    ref = x.upload(Media(str(clip), alt="not sent: X takes alt text for images and GIFs"))
    assert ref == "1880028106020515841"
    assert fake.paths() == [
        "/2/media/upload INIT",
        "/2/media/upload APPEND",
        "/2/media/upload APPEND",
        "/2/media/upload APPEND",
        "/2/media/upload FINALIZE",
        "/2/media/upload STATUS",
        "/2/media/upload STATUS",
    ]
    init = fake.seen[0].form
    assert (init["media_type"], init["total_bytes"], init["media_category"]) == (
        "video/mp4",
        "516",
        "tweet_video",
    )
    appends = fake.seen[1:4]
    assert [a.form["segment_index"] for a in appends] == ["0", "1", "2"]
    assert all(a.form["media_id"] == ref for a in appends)
    assert b"".join(a.files["media"].data for a in appends) == clip.read_bytes()
    assert waits == [2.0, 30.0], "as X asks, capped at 30 s"


def test_a_video_x_could_not_process_is_permanent(httpserver: HTTPServer, tmp_path: Path) -> None:
    failed = {"state": "failed", "error": {"code": 1, "message": "InvalidMedia: unsupported codec"}}
    serve(httpserver, FakeUploads(processing=[failed]))
    clip = tmp_path / "teaser.mp4"
    clip.write_bytes(b"\0" * 50)
    with pytest.raises(PermanentError, match=r"x could not process teaser\.mp4: InvalidMedia"):
        channel(httpserver).upload(Media(str(clip)))


def test_media_limits_are_checked_offline(tmp_path: Path) -> None:
    x = XChannel("x", {"token": EnvRef("${X_TOKEN}")}, env=ENV)
    five = photos(tmp_path, 5)
    assert media_problems(x, *five) == [(None, "5 media files, over x's 4 per post")]
    dance = Media(str(gif(tmp_path / "dance.gif")))
    assert media_problems(x, five[0], dance) == [(1, "x takes 4 images or 1 GIF alone, not both")]
    big = Media(str(sized(tmp_path / "big.png", 5 * 1000 * 1000 + 1)))
    assert media_problems(x, big) == [(0, "5,000,001 bytes, over x's limit of 5,000,000 bytes")]
    big_gif = Media(str(gif(tmp_path / "big.gif", 5 * 1000 * 1000 + 1)))
    assert media_problems(x, big_gif) == [], "a GIF may be 15 MB"
    huge_gif = Media(str(gif(tmp_path / "huge.gif", 16 * 1000 * 1000)))
    assert media_problems(x, huge_gif) == [(0, "16 MB, over x's limit of 15 MB for a GIF")]
    wordy = Media(five[0].path, alt="λ" * 1001)
    assert media_problems(x, wordy) == [
        (0, "alt text is 1001 characters, over x's limit of 1000 by 1")
    ]
    poll = {"options": ["Mon", "Fri"], "duration_seconds": 3600}
    assert x.check(message("Vote", poll=poll, media=five[:1])) == [
        "an x post can have media or a poll, not both"
    ]
    assert x.check(message("", media=five[:1])) == [], "an image alone is a post"


def test_an_upload_refused_as_too_large_is_permanent_and_redacted(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request("/2/media/upload").respond_with_json(
        {
            "title": "Payload Too Large",
            "detail": "request with Authorization: Bearer oauth2-user-token is too large",
            "status": 413,
        },
        status=413,
    )
    with pytest.raises(PermanentError, match="HTTP 413: Payload Too Large") as caught:
        channel(httpserver).send(message("Pic", media=photos(tmp_path, 1)), "k")
    assert "oauth2-user-token" not in str(caught.value)
    assert [r.path for r, _ in httpserver.log] == ["/2/media/upload"], "no post without media"


def test_an_upload_cut_off_is_retried_not_unknown(tmp_path: Path) -> None:
    with HangUpAfterRequest() as server:
        x = XChannel(
            "x",
            {"token": EnvRef("${X_TOKEN}"), "api_url": server.url},
            env=ENV,
            http=TimeoutSession(timeout=(1, 2)),
        )
        (item,) = photos(tmp_path, 1)
        with pytest.raises(TransientError) as caught:
            x.upload(item)
    assert not caught.value.maybe_sent, "an upload posts nothing: safe to do again"
    (request,) = server.requests
    assert request.startswith(b"POST /2/media/upload ")
    assert Path(item.path).read_bytes() in request
    assert b"oauth2-user-token" in request  # it was sent; it must not be in the error
    assert "oauth2-user-token" not in str(caught.value)


def test_an_upload_answered_with_garbage_posts_nothing(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request("/2/media/upload").respond_with_data("<html>hi</html>")
    with pytest.raises(PermanentError, match="answered the upload without a media id"):
        channel(httpserver).send(message("Pic", media=photos(tmp_path, 1)), "k")
    assert [r.path for r, _ in httpserver.log] == ["/2/media/upload"]


def test_an_unreadable_file_uploads_nothing(httpserver: HTTPServer, tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match=r"cannot read media file .*gone.png: No such file"):
        channel(httpserver).upload(Media(str(tmp_path / "gone.png")))
    assert httpserver.log == []


def test_media_ids_x_forgot_are_stale_so_the_publisher_uploads_again(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    # What X answers a post naming an expired upload (tweepy/tweepy#2016, abraham/twitteroauth
    # #1222): 400, errors naming the media.media_ids parameter.
    httpserver.expect_request("/2/tweets").respond_with_json(
        {
            "errors": [
                {
                    "parameters": {"media.media_ids": ["1880028106020515841"]},
                    "message": "Your media IDs are invalid.",
                }
            ],
            "title": "Invalid Request",
            "detail": "One or more parameters to your request was invalid.",
            "type": "https://api.twitter.com/2/problems/invalid-request",
        },
        status=400,
    )
    (item,) = photos(tmp_path, 1)
    old = Message("x", "x", "Pic", media=(Media(item.path, ref="1880028106020515841"),))
    with pytest.raises(StaleMedia, match="Your media IDs are invalid"):
        channel(httpserver).send(old, "k")


def test_media_alone_post_without_a_text_field(httpserver: HTTPServer, tmp_path: Path) -> None:
    fake = FakeUploads()
    serve(httpserver, fake)
    (item,) = photos(tmp_path, 1)
    channel(httpserver).send(Message("x", "x", "", media=(replace(item, ref="77"),)), "k")
    assert fake.seen[-1].json() == {"media": {"media_ids": ["77"]}}


def test_a_negative_or_nan_check_after_secs_is_no_wait_that_crashes(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    # time.sleep(-5) and time.sleep(nan) raise ValueError: the run would die mid-upload.
    fake = FakeUploads(
        processing=[
            {"state": "pending", "check_after_secs": -5},
            {"state": "in_progress", "check_after_secs": float("nan")},
            {"state": "in_progress", "check_after_secs": float("inf")},
            {"state": "succeeded"},
        ]
    )
    serve(httpserver, fake)
    clip = tmp_path / "teaser.mp4"
    clip.write_bytes(b"\0" * 50)
    x = channel(httpserver)
    waits: list[float] = []
    x.sleep = waits.append
    assert x.upload(Media(str(clip))) == "1880028106020515841"
    assert waits == [0.0, 1.0, 30.0]
