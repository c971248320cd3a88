"""What the media tests of the adapters share: small real image files, and a server that reads
a whole request (the upload) and then hangs up without answering.

`png(path, shade)` writes a valid 2x2 PNG (zlib and struct, no imaging library), distinct per
shade, so a test can assert that the exact bytes arrived. `HangUpAfterRequest` is a loopback
HTTP server that reads the headers and the Content-Length body of each request, records them,
and closes the connection: the request was delivered, no answer came.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from werkzeug import Request

from commcal.channels.base import Channel, Media


def png(path: Path, shade: int = 0) -> Path:
    """A 2x2 RGB PNG filled with one colour (`shade` 0-255 in each channel)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\0" + bytes([shade, 255 - shade, shade // 2]) * 2 for _ in range(2))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


def sized(path: Path, size: int) -> Path:
    """A real PNG (as `png`) padded after its end to exactly `size` bytes (sparse: costs no
    disk): an image readers take for what it is, as big as a test needs."""
    png(path)
    with open(path, "r+b") as handle:
        handle.truncate(size)
    return path


def media_problems(channel: Channel, *media: Media) -> list[tuple[int | None, str]]:
    """What `validate` asks a channel of a message's files: `check_media` on what
    `mediacheck.inspect` reads of each (format and pixel size from the header, bytes)."""
    from commcal.mediacheck import inspect

    return channel.check_media([inspect(item) for item in media])


class HangUpAfterRequest:
    """Reads each request whole, records it, and closes the connection without a word."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port: int = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> HangUpAfterRequest:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        break
                    data += more
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(body) < length:
                    more = conn.recv(65536)
                    if not more:
                        break
                    body += more
                self.requests.append(head + b"\r\n\r\n" + body)


@dataclass(frozen=True)
class Upload:
    """One file part of a multipart request, as the server received it."""

    filename: str
    mimetype: str
    data: bytes


@dataclass(frozen=True)
class Seen:
    """A request as a recording server parsed it, kept after the request ends (werkzeug
    closes the parsed files with the request)."""

    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    files: dict[str, Upload]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def seen(request: Request) -> Seen:
    body = request.get_data(cache=True)
    files = {
        name: Upload(part.filename or "", part.mimetype, part.read())
        for name, part in request.files.items()
    }
    return Seen(
        request.method,
        request.path,
        dict(request.headers.items()),
        dict(request.values.items()),
        files,
        body,
    )


def gif(path: Path, size: int = 0) -> Path:
    """A real (one-frame) GIF, padded after its end to `size` bytes when given."""
    from PIL import Image

    Image.new("P", (4, 4)).save(path, format="GIF")
    if size:
        with open(path, "r+b") as handle:
            handle.truncate(size)
    return path
