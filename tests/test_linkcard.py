"""Bluesky link cards against a loopback page server: charsets, thumbnails, bounds.

The PDS is pytest-httpserver answering like com.atproto.repo.*; the pages come from a plain
http.server that can send a Greek page in any encoding, a 50 MB page, or stall.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from bsky_support import send_to_pds
from pytest_httpserver import HTTPServer

from commcal.channels.base import Receipt
from commcal.channels.linkcard import decode_page

TITLE = "Ανοιχτή μέρα στην Αθήνα: «Καλώς ήρθατε»"
DESCRIPTION = "Έλα μαζί μας — δωρεάν είσοδος"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
BLOB = {
    "$type": "blob",
    "ref": {"$link": "bafkreibabalobzn6cd366ukcsjycp4yymjymgfxcv6xczmlgpemzkz3cfa"},
    "mimeType": "image/png",
    "size": len(PNG),
}

Handler = Callable[[BaseHTTPRequestHandler], None]


def greek_page(head: str, encoding: str) -> bytes:
    return (
        f"<!doctype html><html><head>{head}<title>ignored</title>"
        f'<meta property="og:title" content="{TITLE}">'
        f'<meta property="og:description" content="{DESCRIPTION}">'
        "</head><body>Καλημέρα</body></html>"
    ).encode(encoding)


def answer(body: bytes, content_type: str, status: int = 200, **headers: str) -> Handler:
    def handle(request: BaseHTTPRequestHandler) -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(body)

    return handle


class Pages:
    """A page server on loopback: path -> handler; it counts what each path sent."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.sent: dict[str, int] = {}
        pages = self

        class Request(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                handler = pages.routes.get(self.path)
                if handler is None:
                    self.send_error(404)
                    return
                handler(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Request)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"


@contextlib.contextmanager
def serving() -> Iterator[Pages]:
    server = Pages()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


@pytest.fixture
def pages() -> Iterator[Pages]:
    with serving() as server:
        yield server


def post_with_card(
    httpserver: HTTPServer, url: str, **attrs: Any
) -> tuple[dict[str, Any], Receipt]:
    """Send "See <url>" with card: true; return the record the PDS got and the receipt."""
    return send_to_pds(httpserver, f"See {url}", card=True, **attrs)


def test_a_utf8_page_with_only_meta_charset_keeps_its_greek_title(
    httpserver: HTTPServer, pages: Pages
) -> None:
    # No charset in the header: requests alone would decode this as ISO-8859-1.
    pages.routes["/el"] = answer(greek_page('<meta charset="utf-8">', "utf-8"), "text/html")
    record, receipt = post_with_card(httpserver, pages.url("/el"))
    assert record["embed"] == {
        "$type": "app.bsky.embed.external",
        "external": {"uri": pages.url("/el"), "title": TITLE, "description": DESCRIPTION},
    }
    assert receipt.note == ""


def test_a_windows_1253_page_declared_by_http_equiv(httpserver: HTTPServer, pages: Pages) -> None:
    head = '<meta http-equiv="Content-Type" content="text/html; charset=windows-1253">'
    body = greek_page(head, "cp1253")
    assert TITLE.encode("utf-8") not in body  # truly another encoding
    pages.routes["/1253"] = answer(body, "text/html")
    record, _ = post_with_card(httpserver, pages.url("/1253"))
    assert record["embed"]["external"]["title"] == TITLE
    assert record["embed"]["external"]["description"] == DESCRIPTION


def test_the_header_charset_wins_over_the_pages_meta(httpserver: HTTPServer, pages: Pages) -> None:
    body = greek_page('<meta charset="utf-8">', "cp1253")
    pages.routes["/both"] = answer(body, "text/html; charset=windows-1253")
    record, _ = post_with_card(httpserver, pages.url("/both"))
    assert record["embed"]["external"]["title"] == TITLE


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (b"\xef\xbb\xbf<title>\xce\x91</title>", "text/html; charset=iso-8859-1", "<title>Α"),
        ("<meta charset=utf-8>α".encode(), "text/html", "<meta charset=utf-8>α"),
        ("<title>α</title>".encode(), "text/html", "<title>α"),  # nothing declared: UTF-8
        (b"<meta charset='bogus'>\xce\xb1", "text/html", "<meta charset='bogus'>α"),
        # latin-1 means windows-1252 in a browser: 0x93/0x94 are curly quotes.
        (b"\x93q\x94", "text/html; charset=ISO-8859-1", "\u201cq\u201d"),
        ("<meta charset=utf-16>α".encode(), "text/html", "<meta charset=utf-16>α"),
    ],
)
def test_decode_page(body: bytes, content_type: str, expected: str) -> None:
    assert decode_page(body, content_type).startswith(expected)


def test_the_og_image_is_uploaded_as_the_cards_thumb(httpserver: HTTPServer, pages: Pages) -> None:
    head = '<meta charset="utf-8"><meta property="og:image" content="/media/cover.png">'
    pages.routes["/img"] = answer(greek_page(head, "utf-8"), "text/html")
    pages.routes["/media/cover.png"] = answer(PNG, "image/png")
    httpserver.expect_oneshot_request(
        "/xrpc/com.atproto.repo.uploadBlob",
        method="POST",
        headers={"Content-Type": "image/png", "Authorization": "Bearer a1"},
        data=PNG,
    ).respond_with_json({"blob": BLOB})
    record, receipt = post_with_card(httpserver, pages.url("/img"))
    httpserver.check_assertions()
    assert record["embed"]["external"]["thumb"] == BLOB
    assert record["embed"]["external"]["title"] == TITLE
    assert receipt.note == ""


def test_an_og_image_that_is_no_image_leaves_the_card_without_thumb(
    httpserver: HTTPServer, pages: Pages
) -> None:
    head = '<meta property="og:image" content="/cover">'
    pages.routes["/img"] = answer(greek_page(head, "utf-8"), "text/html; charset=utf-8")
    pages.routes["/cover"] = answer(b"<html>not an image</html>", "text/html")
    record, receipt = post_with_card(httpserver, pages.url("/img"))
    assert "thumb" not in record["embed"]["external"]
    assert record["embed"]["external"]["title"] == TITLE
    assert receipt.note.startswith("link card without its image: ")
    assert "text/html, not an image" in receipt.note
    assert receipt.remote_id  # the post itself went out


def test_a_50_mb_page_is_cut_off_not_read(httpserver: HTTPServer, pages: Pages) -> None:
    head = greek_page('<meta charset="utf-8">', "utf-8")
    total = 50 * 1024 * 1024

    def huge(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "text/html")
        request.send_header("Content-Length", str(total))
        request.end_headers()
        sent = 0
        try:
            request.wfile.write(head)
            sent = len(head)
            chunk = b" " * 65_536
            while sent < total:
                request.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the client hung up: what the test wants
        pages.sent["/huge"] = sent

    pages.routes["/huge"] = huge
    started = time.monotonic()
    record, _ = post_with_card(httpserver, pages.url("/huge"))
    assert time.monotonic() - started < 5
    assert record["embed"]["external"]["title"] == TITLE
    for _ in range(50):  # the handler records what it sent once the client has hung up
        if "/huge" in pages.sent:
            break
        time.sleep(0.05)
    # Socket buffers hold a few MB at most; 50 MB were never read.
    assert pages.sent.get("/huge", total) < 10 * 1024 * 1024


def test_a_page_that_stalls_costs_the_card_not_the_post(
    httpserver: HTTPServer, pages: Pages
) -> None:
    def stall(request: BaseHTTPRequestHandler) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "text/html")
        request.send_header("Content-Length", "100000")
        request.end_headers()
        try:
            for _ in range(40):  # a byte every 0.1 s: every read succeeds, the page never ends
                request.wfile.write(b" ")
                request.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass

    pages.routes["/stall"] = stall
    started = time.monotonic()
    record, receipt = post_with_card(httpserver, pages.url("/stall"), card_seconds=0.5)
    assert time.monotonic() - started < 2.5
    assert "embed" not in record
    assert receipt.note.startswith("posted without a link card: ")
    assert "took over 0.5 s" in receipt.note


def test_a_redirect_to_another_scheme_is_not_followed(httpserver: HTTPServer, pages: Pages) -> None:
    pages.routes["/away"] = answer(b"", "text/html", 302, Location="file:///etc/passwd")
    record, receipt = post_with_card(httpserver, pages.url("/away"))
    assert "embed" not in record
    assert "file:" in receipt.note and "is not an http(s) URL" in receipt.note


def test_an_error_page_costs_the_card(httpserver: HTTPServer, pages: Pages) -> None:
    record, receipt = post_with_card(httpserver, pages.url("/missing"))
    assert "embed" not in record
    assert receipt.note == f"posted without a link card: {pages.url('/missing')} answered HTTP 404"


def test_publish_says_in_the_outcome_that_the_card_was_left_out(make_project: Any) -> None:
    from fake_networks import Answer, Networks, env_for
    from typer.testing import CliRunner

    from commcal.cli import app

    def answer(request: Any) -> Answer:
        if "createRecord" in request.path:
            return Answer(body=b'{"uri": "at://did:plc:x/app.bsky.feed.post/k", "cid": "b"}')
        return Answer(404, b"<html>gone</html>", content_type="text/html")

    with Networks() as networks:
        networks.answer = answer
        root = make_project(
            config=(
                "timezone: UTC\nlocale: el\nstate: sqlite:///state.db\npublish: {max_late: 1d}\n"
                "channels:\n  bluesky:\n    type: bluesky\n    handle: sweep.bsky.social\n"
                f"    app_password: ${{BSKY_PASSWORD}}\n    service: {networks.url}\n"
                "    card: true\n"
            ),
            calendars={
                "main.yaml": "items:\n  - id: open-day\n    channels: [bluesky]\n"
                "    template: posts/open\n    at: 2026-01-01 08:59\n"
            },
            templates={"posts/open.j2": f"Ανοιχτή μέρα: {networks.url}/open-day\n"},
        )
        result = CliRunner().invoke(
            app,
            ["-C", str(root), "publish", "--format", "json", "--now", "2026-01-01T09:00:00Z"],
            env=env_for(networks),
        )
    assert result.exit_code == 0, result.output
    [delivery] = json.loads(result.stdout)["deliveries"]
    assert delivery["state"] == "sent"
    assert delivery["detail"] == (
        "at://did:plc:x/app.bsky.feed.post/k (posted without a link card: "
        f"{networks.url}/open-day answered HTTP 404)"
    )


def test_a_page_that_hangs_up_costs_the_card(httpserver: HTTPServer, pages: Pages) -> None:
    def hang_up(request: BaseHTTPRequestHandler) -> None:
        request.close_connection = True
        request.connection.shutdown(2)  # no status line: the connection just ends

    pages.routes["/drop"] = hang_up
    record, receipt = post_with_card(httpserver, pages.url("/drop"))
    assert "embed" not in record
    assert receipt.note.startswith("posted without a link card: ")
    assert "could not be fetched" in receipt.note


def test_the_page_and_image_fetches_carry_no_credentials(
    httpserver: HTTPServer, pages: Pages
) -> None:
    headers: list[dict[str, str]] = []

    def recording(handler: Handler) -> Handler:
        def handle(request: BaseHTTPRequestHandler) -> None:
            headers.append(dict(request.headers.items()))
            handler(request)

        return handle

    head = '<meta charset="utf-8"><meta property="og:image" content="/cover.png">'
    pages.routes["/page"] = recording(answer(greek_page(head, "utf-8"), "text/html"))
    pages.routes["/cover.png"] = recording(answer(PNG, "image/png"))
    httpserver.expect_request("/xrpc/com.atproto.repo.uploadBlob").respond_with_json({"blob": BLOB})
    record, _ = post_with_card(httpserver, pages.url("/page"))
    assert record["embed"]["external"]["thumb"] == BLOB
    assert len(headers) == 2
    for sent in headers:
        assert not {"authorization", "cookie"} & {name.lower() for name in sent}


def test_a_page_that_never_answers_is_bounded(httpserver: HTTPServer, pages: Pages) -> None:
    def silent(request: BaseHTTPRequestHandler) -> None:
        time.sleep(3)  # not even a status line

    pages.routes["/silent"] = silent
    started = time.monotonic()
    record, receipt = post_with_card(httpserver, pages.url("/silent"), card_seconds=0.5)
    assert time.monotonic() - started < 2.5
    assert "embed" not in record
    assert "did not answer within 0.5 s" in receipt.note


def test_a_redirect_loop_ends(httpserver: HTTPServer, pages: Pages) -> None:
    pages.routes["/loop"] = answer(b"", "text/html", 302, Location="/loop")
    record, receipt = post_with_card(httpserver, pages.url("/loop"))
    assert "embed" not in record
    assert "redirects more than 5 times" in receipt.note
