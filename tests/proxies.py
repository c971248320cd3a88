"""A loopback HTTP proxy in front of a real server (Synapse, the Bluesky PDS) that misbehaves on
purpose, request by request: the tests' way to make a real server's answer go wrong."""

from __future__ import annotations

import http.client
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from loopback import Loopback

# What `fault` says of a request: None forwards it and passes the answer back; DROP forwards it
# and closes the connection without the answer (it arrived; the sender cannot know); a (status,
# JSON body) pair is answered at once and never forwarded.
DROP = "drop"
Fault = Callable[[str, str, bytes], "str | tuple[int, bytes] | None"]


class Proxy(Loopback):
    """`Proxy(upstream, fault)`: `fault(method, path, body)` decides each request (see DROP)."""

    def __init__(self, upstream: str, fault: Fault) -> None:
        target = urlsplit(upstream)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                decision = fault(self.command, self.path, body)
                if isinstance(decision, tuple):
                    status, data = decision
                    kind = "application/json"
                else:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    answer = conn.getresponse()
                    data, status = answer.read(), answer.status
                    kind = answer.getheader("Content-Type") or ""
                    conn.close()
                    if decision == DROP:
                        self.close_connection = True
                        return
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.serve(Handler)
