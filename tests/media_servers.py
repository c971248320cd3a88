"""A loopback server that keeps state the way Mastodon, a Bluesky PDS and a Matrix homeserver do
for media: uploads first, then a post that names them.

- Mastodon: POST /api/v2/media stores a file (description, focus) and answers its id (202 while
  `processing` says so; GET /api/v1/media/:id then answers 206 until done, and 200 with a url);
  POST /api/v1/statuses refuses ids it does not have, or that another status holds, with 422
  "Media N not found or already attached to another post", and answers a repeated
  Idempotency-Key with the first status.
- Bluesky: createSession, uploadBlob (a blob named by the sha256 of its bytes), createRecord
  (refuses a record whose images name a blob it lacks: 400 BlobNotFound "Could not find blob";
  a second record under the same rkey: 500, as the PDS does), getRecord.
- Matrix: whoami, POST /_matrix/media/v3/upload (an mxc:// URI), PUT .../send/m.room.message/
  {txnId}, answered once per transaction id: a repeat gets the first event's id.

`hook(kind, request)` runs before each upload ("upload") and post ("post") is handled; it may
return "drop" (close the connection without an answer, after the request was read), "drop-after"
(handle it, then close without an answer), "garbage" (200 with an HTML page), "echo" (401
quoting the request's Authorization header) or None. Tests SIGKILL publishers from there too.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from fake_networks import ACCESS_JWT, DID, session_answer
from loopback import Loopback


@dataclass
class Status:
    id: str
    text: str
    media: list[dict[str, Any]]  # the attachments, as stored at upload


@dataclass
class MediaServers(Loopback):
    statuses: list[Status] = field(default_factory=list)
    media: dict[str, dict[str, Any]] = field(default_factory=dict)  # Mastodon, by id
    blobs: dict[str, bytes] = field(default_factory=dict)  # Bluesky, by cid
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # by rkey
    uploads: dict[str, bytes] = field(default_factory=dict)  # Matrix, by mxc URI
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (txn, content)
    counts: dict[str, int] = field(default_factory=dict)  # "upload", "post": requests seen
    processing: int = 0  # Mastodon: GETs answered 206 before a 202 upload is done
    hook: Callable[[str, str], str | None] = lambda kind, path: None

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self._keys: dict[str, dict[str, Any]] = {}
        self._txns: dict[str, str] = {}
        self._polls: dict[str, int] = {}
        self._next_id = 100
        servers = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                kind = servers.kind(self.command, self.path)
                if kind:
                    with servers.lock:
                        servers.counts[kind] = servers.counts.get(kind, 0) + 1
                action = servers.hook(kind, self.path) if kind else None
                if action == "drop":
                    self.close_connection = True
                    return
                if action in ("garbage", "echo"):
                    # 200 with a proxy's page, or a refusal that quotes the request's token
                    status, data = (
                        (200, b"<html>upstream ok</html>")
                        if action == "garbage"
                        else (401, f"bad token: {self.headers['Authorization']}".encode())
                    )
                    self.send_response(status)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                with servers.lock:
                    status, answer = servers.handle(self.command, self.path, self.headers, body)
                if action == "drop-after":
                    self.close_connection = True
                    return
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.serve(Handler)

    @staticmethod
    def kind(method: str, path: str) -> str:
        if path.startswith(("/api/v2/media", "/xrpc/com.atproto.repo.uploadBlob")):
            return "upload"
        if path.startswith("/_matrix/media/v3/upload"):
            return "upload"
        if path.startswith(("/api/v1/statuses", "/xrpc/com.atproto.repo.createRecord")):
            return "post"
        return "post" if "/send/m.room.message/" in path else ""

    def forget_unattached(self) -> None:
        """What Mastodon does to media no status took, and a PDS to blobs no record names."""
        with self.lock:
            for media_id in [k for k, v in self.media.items() if v["status"] is None]:
                del self.media[media_id]
            named = {
                image["image"]["ref"]["$link"]
                for record in self.records.values()
                for image in record.get("embed", {}).get("images", [])
            }
            for cid in [c for c in self.blobs if c not in named]:
                del self.blobs[cid]

    # -- the networks ---------------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        url = urlsplit(path)
        if url.path == "/api/v2/media":
            return self._mastodon_upload(headers, body)
        if url.path.startswith("/api/v1/media/"):
            media_id = url.path.rsplit("/", 1)[1]
            self._polls[media_id] = self._polls.get(media_id, 0) + 1
            if self._polls[media_id] <= self.processing:
                return 206, {"id": media_id, "url": None}
            return 200, {"id": media_id, "url": f"{self.url}/files/{media_id}.png"}
        if url.path == "/api/v1/statuses":
            return self._mastodon_status(headers, json.loads(body))
        if url.path.endswith("com.atproto.server.createSession"):
            return 200, json.loads(session_answer().body)
        if url.path.endswith("com.atproto.repo.uploadBlob"):
            cid = "bafkrei" + hashlib.sha256(body).hexdigest()[:40]
            self.blobs[cid] = body
            blob = {"$type": "blob", "ref": {"$link": cid}, "mimeType": headers["Content-Type"]}
            return 200, {"blob": {**blob, "size": len(body)}}
        if url.path.endswith("com.atproto.repo.createRecord"):
            return self._bluesky_record(headers, json.loads(body))
        if url.path.endswith("com.atproto.repo.getRecord"):
            rkey = parse_qs(url.query)["rkey"][0]
            if rkey not in self.records:
                return 400, {"error": "RecordNotFound", "message": "Could not locate record"}
            return 200, {"uri": self._uri(rkey), "value": self.records[rkey]}
        if url.path.endswith("/account/whoami"):
            return 200, {"user_id": "@bot:example.org", "device_id": "MEDIADEVICE"}
        if url.path == "/_matrix/media/v3/upload":
            uri = f"mxc://example.org/m{len(self.uploads)}"
            self.uploads[uri] = body
            return 200, {"content_uri": uri}
        if "/send/m.room.message/" in url.path:
            txn = unquote(url.path.rsplit("/", 1)[1])
            if txn not in self._txns:
                self._txns[txn] = f"$event{len(self.events)}"
                self.events.append((txn, json.loads(body)))
            return 200, {"event_id": self._txns[txn]}
        return 404, {"error": f"no route {url.path}"}

    def _mastodon_upload(self, headers: Any, body: bytes) -> tuple[int, Any]:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + body
        )
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[str(name)] = part.get_payload(decode=True)
        self._next_id += 1
        media_id = str(self._next_id)
        self.media[media_id] = {
            "id": media_id,
            "description": fields.get("description", b"").decode() or None,
            "focus": fields.get("focus", b"").decode() or None,
            "size": len(fields["file"]),
            "status": None,
        }
        if self.processing:
            return 202, {"id": media_id, "url": None}
        return 200, {"id": media_id, "url": f"{self.url}/files/{media_id}.png"}

    def _mastodon_status(self, headers: Any, body: dict[str, Any]) -> tuple[int, Any]:
        key = headers.get("Idempotency-Key")
        if key in self._keys:
            return 200, self._keys[key]
        ids = [str(i) for i in body.get("media_ids", [])]
        missing = [i for i in ids if i not in self.media or self.media[i]["status"] is not None]
        if missing:
            error = f"Media {', '.join(missing)} not found or already attached to another post"
            return 422, {"error": error}
        status = Status(str(len(self.statuses) + 1), body["status"], [self.media[i] for i in ids])
        for i in ids:
            self.media[i]["status"] = status.id
        self.statuses.append(status)
        answer = {"id": status.id, "url": f"{self.url}/@bot/{status.id}"}
        self._keys[key] = answer
        return 200, answer

    def _uri(self, rkey: str) -> str:
        return f"at://{DID}/app.bsky.feed.post/{rkey}"

    def _bluesky_record(self, headers: Any, body: dict[str, Any]) -> tuple[int, Any]:
        assert headers.get("Authorization") == f"Bearer {ACCESS_JWT}"
        rkey, record = body["rkey"], body["record"]
        for image in record.get("embed", {}).get("images", []):
            cid = image["image"]["ref"]["$link"]
            if cid not in self.blobs:
                return 400, {"error": "BlobNotFound", "message": f"Could not find blob: {cid}"}
        if rkey in self.records:
            return 500, {"error": "InternalServerError", "message": "Internal Server Error"}
        self.records[rkey] = record
        return 200, {"uri": self._uri(rkey), "cid": "bafyreirecord"}
