"""A `url:` medium whose server misbehaves: it answers a web page, breaks off in the middle of
the file, or drips it a byte at a time. Each is a clear SendError raised before anything is
posted (so the delivery is retried or failed, never left `unknown`), within a bounded time."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from commcal.channels.base import Media, PermanentError, TransientError
from commcal.http import TimeoutSession
from commcal.media import read_bytes


class RawServer:
    """Answers each connection with `script(conn)`: raw bytes, as a hostile server writes."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/picture.png"
        self.script = script
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                with contextlib.suppress(OSError):  # the client hung up first
                    self.script(conn)


Script = Callable[[socket.socket], None]


@pytest.fixture
def raw() -> Iterator[Callable[[Script], RawServer]]:
    made: list[RawServer] = []

    def make(script: Script) -> RawServer:
        made.append(RawServer(script))
        return made[-1]

    yield make
    for server in made:
        server.sock.close()


def headers(length: int, kind: str = "image/png") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {length}\r\n\r\n".encode()


def test_a_body_cut_off_midway_is_a_transient_error_not_a_crash(
    raw: Callable[[Script], RawServer],
) -> None:
    server = raw(lambda conn: conn.sendall(headers(100_000) + b"\x89PNG" + b"\0" * 1000))
    with pytest.raises(TransientError, match="broke off"):
        read_bytes(Media(server.url), TimeoutSession())


def test_a_server_dripping_the_file_is_given_up_within_the_deadline(
    raw: Callable[[Script], RawServer],
) -> None:
    def drip(conn: socket.socket) -> None:
        conn.sendall(headers(10_000))
        for _ in range(10_000):
            conn.sendall(b"\0")
            time.sleep(0.05)

    server = raw(drip)
    started = time.monotonic()
    with pytest.raises(TransientError, match="too slow"):
        read_bytes(Media(server.url), TimeoutSession(), deadline=1.0)
    assert time.monotonic() - started < 3


def test_a_web_page_in_place_of_the_picture_is_refused(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/picture.png").respond_with_handler(
        lambda request: Response("<html>Log in to see this</html>", content_type="text/html")
    )
    with pytest.raises(PermanentError, match="text/html, not an image or a video"):
        read_bytes(Media(httpserver.url_for("/picture.png")), TimeoutSession())
