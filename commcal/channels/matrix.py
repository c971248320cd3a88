"""Matrix: an `m.room.message` event in one room.

API: https://spec.matrix.org/v1.13/client-server-api/#put_matrixclientv3roomsroomidsendeventtypetxnid
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from commcal.channels import httpkit
from commcal.channels.base import (
    CannotChange,
    Media,
    Message,
    PermanentError,
    Receipt,
    SendError,
    Setting,
    TransientError,
    unreadable,
)
from commcal.channels.httpkit import HttpChannel
from commcal.channels.text import utf8_bytes
from commcal.errors import ConfigError
from commcal.media import mime_type, read_bytes

if TYPE_CHECKING:
    import requests

MSGTYPES = ("m.text", "m.notice")


class MatrixChannel(HttpChannel):
    type_name = "matrix"
    description = "A message in a Matrix room"
    settings_schema: ClassVar[Mapping[str, Setting]] = {
        "homeserver": Setting(
            "the homeserver's client API, e.g. https://matrix.org", required=True
        ),
        "access_token": Setting(
            "an access token of the account that posts", required=True, private=True
        ),
        "room_id": Setting("the room's id, e.g. !abcdef:matrix.org (not an #alias)", required=True),
        "msgtype": Setting("m.text, or m.notice for bot-style messages", default="m.text"),
        "max_image_bytes": Setting(
            "the homeserver's upload limit in bytes (its m.upload.size), checked offline",
            kind=int,
        ),
        "max_video_bytes": Setting("the same limit, for videos", kind=int),
    }
    # A whole event may be at most 65,536 bytes of canonical JSON
    # (https://spec.matrix.org/v1.13/client-server-api/#size-limits); the homeserver adds
    # signatures, hashes and ids, so the content is kept under 60,000 bytes.
    max_length = 60_000
    length_unit = "bytes (UTF-8)"
    # The homeserver answers a repeated transaction id with the first event's id and posts
    # nothing new (https://spec.matrix.org/v1.13/client-server-api/#transaction-identifiers).
    # Transaction ids are scoped to the access token's device: a new token forgets them, so
    # `idempotency_scope` names the device and the publisher records it with each send.
    idempotent = True
    # Synapse forgets a transaction id after 30 to 60 minutes (synapse/rest/client/
    # transactions.py, CLEANUP_PERIOD_MS); the spec promises no duration at all.
    idempotency_window = 1800.0
    # Media: each file goes up first (POST /_matrix/media/v3/upload -> an mxc:// URI) and is
    # posted after the text as an event of its own, m.image or m.video, with `body` the alt
    # text and `info` {w, h, mimetype, size} (https://spec.matrix.org/v1.13/client-server-api/
    # #mimage). No `filename`: with one that differs from `body`, clients show `body` as a
    # caption under the picture (spec: "body is considered to be a caption"); without it
    # Element uses `body` as the image's alt text, which is what it is. The homeserver sets the
    # size limit (m.upload.size of GET /_matrix/client/v1/media/config; Synapse's default
    # max_upload_size is 50M): the max_image_bytes / max_video_bytes settings state it here.
    uploads_media = True
    video_types = frozenset({"video/mp4", "video/webm", "video/quicktime"})

    def configure(self) -> None:
        httpkit.check_https_url(self, "homeserver")
        room = self.options["room_id"]
        if isinstance(room, str) and not room.startswith("!"):
            raise ConfigError(
                f"channel {self.name!r} (matrix): room_id must be a room id starting with '!' "
                f"(Room settings > Advanced), not {room!r}"
            )
        if self.options["msgtype"] not in MSGTYPES:
            raise ConfigError(f"channel {self.name!r} (matrix): msgtype must be m.text or m.notice")
        # idempotency_scope's answer, by access token (a hash of it: the key of a dict is no
        # place for a secret either).
        self._scopes: dict[str, str] = {}

    def measure(self, text: str) -> int:
        return utf8_bytes(text)

    def check(self, message: Message) -> list[str]:
        problems = super().check(message)
        # Sized as canonical JSON is: UTF-8, no spaces between tokens.
        size = utf8_bytes(
            json.dumps(self._content(message), ensure_ascii=False, separators=(",", ":"))
        )
        if size > self.max_length and utf8_bytes(message.text) <= self.max_length:
            problems.append(
                f"the event content (text, HTML and JSON quoting) is {size} bytes, over "
                f"matrix's limit of "
                f"{self.max_length} by {size - self.max_length}"
            )
        return problems

    def _content(self, message: Message) -> dict[str, Any]:
        # https://spec.matrix.org/v1.13/client-server-api/#mtext
        content: dict[str, Any] = {"msgtype": self.options["msgtype"], "body": message.text}
        if message.html:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = message.html
        return content

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = str(self.value("homeserver")).rstrip("/") + path
        return self.call(method, url, token=self.secret("access_token"), **kwargs)

    # Matrix errors are {"errcode": "M_...", "error": "..."}; M_LIMIT_EXCEEDED carries
    # retry_after_ms (https://spec.matrix.org/v1.13/client-server-api/#rate-limiting).

    def error_reason(self, response: requests.Response) -> str:
        body = httpkit.json_body(response)
        errcode, reason = str(body.get("errcode") or ""), str(body.get("error") or "")
        return f"HTTP {response.status_code}: {errcode} {reason}".strip() if errcode else ""

    def retry_after(self, error: SendError, response: requests.Response | None) -> float | None:
        seconds = super().retry_after(error, response)
        if seconds is None and response is not None:
            milliseconds = httpkit.json_body(response).get("retry_after_ms")
            if isinstance(milliseconds, int):
                return milliseconds / 1000
        return seconds

    def send(self, message: Message, idempotency_key: str) -> Receipt:
        """The text, then each file as an event of its own. Every event has a transaction id
        derived from the delivery's key (the text's is the key itself), so a send repeated
        after a crash between two of them posts only those still missing."""
        room = str(self.value("room_id"))
        events = [self._content(message)]
        events += [self._media_content(media) for media in message.media]
        receipt = Receipt()
        for n, content in enumerate(events):
            txn = idempotency_key if n == 0 else f"{idempotency_key}.m{n}"
            path = (
                f"/_matrix/client/v3/rooms/{quote(room, safe='')}/send/m.room.message/"
                f"{quote(txn, safe='')}"
            )
            response = self._call("PUT", path, json=content)
            # A 2xx is an event in the room: without its id, it is sent with the id unknown.
            event_id = httpkit.json_body(response).get("event_id")
            if n:
                continue  # the receipt names the text's event
            if not isinstance(event_id, str):
                receipt = Receipt(note=unreadable(response, "an event_id"))
            else:
                receipt = Receipt(remote_id=event_id, url=event_link(room, event_id))
        return receipt

    def _media_content(self, media: Media) -> dict[str, Any]:
        uploaded = json.loads(media.ref or self.upload(media))
        return {"msgtype": uploaded["msgtype"], "body": media.alt, **uploaded["content"]}

    def upload(self, media: Media) -> str:
        """POST /_matrix/media/v3/upload (https://spec.matrix.org/v1.13/client-server-api/
        #post_matrixmediav3upload); the ref is the JSON of the event's msgtype, `url` (the
        mxc:// URI) and `info`, read from the bytes sent."""
        from commcal.mediacheck import describe

        limit = self.media_limit("max_video_bytes") or self.media_limit("max_image_bytes")
        data = read_bytes(media, self.http, limit)
        mime = mime_type(media)
        response = self._call(
            "POST",
            "/_matrix/media/v3/upload",
            data=data,
            headers={"Content-Type": mime},
        )
        uri = httpkit.json_body(response).get("content_uri")
        if not isinstance(uri, str) or not uri.startswith("mxc://"):
            raise PermanentError(
                f"HTTP {response.status_code}: the homeserver answered the upload without an "
                "mxc:// content_uri"
            )
        kind, info = describe(media, data, mime)
        msgtype = {"image": "m.image", "video": "m.video"}.get(kind, "m.file")
        return json.dumps({"msgtype": msgtype, "content": {"url": uri, "info": info}})

    # -- after the send -------------------------------------------------------------------------

    def cannot_retract(self) -> str:
        return ""

    def cannot_amend(self) -> str:
        return ""

    def _room_path(self) -> str:
        return f"/_matrix/client/v3/rooms/{quote(str(self.value('room_id')), safe='')}"

    @staticmethod
    def _event(receipt: Receipt) -> str:
        if not receipt.remote_id:
            raise CannotChange("the homeserver did not name the event when it was sent")
        return receipt.remote_id

    def retract(self, receipt: Receipt, *, reason: str = "", key: str = "") -> bool:
        # https://spec.matrix.org/v1.13/client-server-api/#put_matrixclientv3roomsroomidredacteventidtxnid:
        # the transaction id makes a repeat (after a crash) the same redaction, not a second.
        event = self._event(receipt)
        path = (
            f"{self._room_path()}/redact/{quote(event, safe='')}/"
            f"{quote(key or 'commcal-redact', safe='')}"
        )
        try:
            self._call("PUT", path, json={"reason": reason} if reason else {})
        except PermanentError as exc:
            if httpkit.status_of(exc) == 404:  # M_NOT_FOUND: no such event in the room
                return False
            raise
        return True

    def amend(self, receipt: Receipt, message: Message, *, key: str = "") -> Receipt:
        # An edit is a new event replacing the first: m.new_content holds the new content, and
        # the event's own body is a fallback ("* " + text) for clients without edits
        # (https://spec.matrix.org/v1.13/client-server-api/#event-replacements). It always
        # relates to the original event, never to an earlier replacement.
        event = self._event(receipt)
        new = self._content(message)
        content: dict[str, Any] = {
            "msgtype": new["msgtype"],
            "body": "* " + message.text,
            "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": event},
        }
        if message.html:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = "* " + message.html
        path = f"{self._room_path()}/send/m.room.message/{quote(key or 'commcal-edit', safe='')}"
        replaced = httpkit.json_body(self._call("PUT", path, json=content)).get("event_id")
        room = str(self.value("room_id"))
        if not isinstance(replaced, str):
            return Receipt(url=receipt.url, note="edited, replacement event id unknown")
        return Receipt(remote_id=replaced, url=event_link(room, replaced))

    def posted_text(self, receipt: Receipt) -> str | None:
        # https://spec.matrix.org/v1.13/client-server-api/#get_matrixclientv3roomsroomideventeventid
        event = self._event(receipt)
        found = httpkit.json_body(
            self._call("GET", f"{self._room_path()}/event/{quote(event, safe='')}")
        )
        content = found.get("content")
        body = content.get("body") if isinstance(content, dict) else None
        return body if isinstance(body, str) else None

    def idempotency_scope(self) -> str:
        """The access token's device, from /account/whoami: a homeserver keeps transaction ids
        per device (Synapse: table event_txn_id_device_id, about 24 hours), and a new login is
        a new device, so a resend with a new token would be a second message.

        https://spec.matrix.org/v1.13/client-server-api/#get_matrixclientv3accountwhoami
        """
        token = hashlib.sha256(self.secret("access_token").encode()).hexdigest()
        scope = self._scopes.get(token)
        if scope is None:
            who = httpkit.json_body(self._call("GET", "/_matrix/client/v3/account/whoami"))
            user, device = who.get("user_id"), who.get("device_id")
            if not isinstance(user, str) or not user:
                raise TransientError("the homeserver's whoami answer names no user_id")
            if isinstance(device, str) and device:
                scope = f"device {device} of {user}"
            else:
                # No device (an application service's token): the token itself is the scope,
                # shown as a short hash that cannot be turned back into it.
                scope = f"token sha256:{token[:12]} of {user} (no device)"
            self._scopes[token] = scope
        return scope

    def verify(self) -> str:
        who = httpkit.json_body(self._call("GET", "/_matrix/client/v3/account/whoami"))
        user = who.get("user_id", "?")
        joined = httpkit.json_body(self._call("GET", "/_matrix/client/v3/joined_rooms")).get(
            "joined_rooms", []
        )
        room = str(self.value("room_id"))
        if room not in joined:
            raise PermanentError(f"{user} has not joined {room}: invite the account first")
        return f"token works for {user}, a member of {room}"


def event_link(room_id: str, event_id: str) -> str:
    """A matrix.to permalink (https://spec.matrix.org/v1.13/appendices/#matrixto-navigation)."""
    link = f"https://matrix.to/#/{quote(room_id, safe='!:')}/{quote(event_id, safe='$:')}"
    server = room_id.split(":", 1)[1] if ":" in room_id else ""
    return link + (f"?via={quote(server, safe='')}" if server else "")
