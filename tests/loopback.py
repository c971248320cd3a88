"""The one loopback HTTP server kit the recording fakes share: a ThreadingHTTPServer on
127.0.0.1 (a free port) serving a handler class in a daemon thread while a `with` block runs."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class Loopback:
    """Subclasses build their handler class and call `serve(Handler)` in `__init__`; `url` is
    the server's base URL."""

    server: ThreadingHTTPServer
    url: str
    thread: threading.Thread

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
