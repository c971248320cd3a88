"""Answers that never end: a server that keeps a chunked body trickling, a byte at a time well
inside the read timeout, must not hold a publish run for ever (requests' read timeout is per
read, not for the whole answer)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from commcal.channels.base import EnvRef, Message, TransientError
from commcal.channels.linkedin import LinkedInChannel

TOKEN = "AQVx4R3xq9ZbT5mWc7LpK2nD8sFh6J"


@pytest.fixture
def trickling() -> Iterator[str]:
    """A server that reads the request, answers 201 chunked, then sends one byte every 50 ms
    until the client hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            while len(rest) < length:
                rest += conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 201 Created\r\nx-restli-id: urn:li:share:1\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            try:
                while not stop.is_set():
                    conn.sendall(b"1\r\n \r\n")
                    time.sleep(0.05)
            except OSError:
                return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()


def test_an_answer_that_never_ends_is_a_bounded_maybe_sent_failure(trickling: str) -> None:
    adapter = LinkedInChannel(
        "li",
        {"author": "urn:li:organization:2414183", "token": EnvRef("${T}"), "api_url": trickling},
        env={"T": TOKEN},
    )
    adapter.http.body_seconds = 1.0  # type: ignore[attr-defined]
    started = time.monotonic()
    with pytest.raises(TransientError) as caught:
        adapter.send(Message("li", "linkedin", "Launch day"), "k")
    assert time.monotonic() - started < 5
    # The post went out and its answer never finished: the publisher records it `unknown`.
    assert caught.value.maybe_sent
    assert TOKEN not in str(caught.value)
