"""Matrix: an `m.room.message` event in one room.

API: https://spec.matrix.org/v1.13/client-server-api/#put_matrixclientv3roomsroomidsendeventtypetxnid
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from commcal.channels import httpkit
from commcal.channels.base import (
    NOT_A_POLL,
    REPLIES,
    CannotChange,
    Media,
    Message,
    PermanentError,
    Receipt,
    ReplyTo,
    SendError,
    Setting,
    TransientError,
    poll_option_problems,
    unreadable,
)
from commcal.channels.httpkit import HttpChannel
from commcal.channels.text import utf8_bytes, utf16_units
from commcal.errors import ConfigError
from commcal.media import mime_type, read_bytes

if TYPE_CHECKING:
    import requests

MSGTYPES = ("m.text", "m.notice")
# Polls (MSC3381, https://github.com/matrix-org/matrix-spec-proposals/blob/main/proposals/
# 3381-polls.md) are not in the spec yet (v1.13 has no polls), so they are sent as Element sends
# them: matrix-js-sdk's PollStartEvent.serialize uses the unstable names (UnstableValue.name is
# the unstable one) and reads either. Clients without polls show the `org.matrix.msc1767.text`
# fallback, or `body`, which older clients read.
POLL_START = "org.matrix.msc3381.poll.start"
POLL_TEXT = "org.matrix.msc1767.text"
# m.disclosed: votes show while the poll is open; m.undisclosed: only once it is closed.
POLL_KINDS = {
    "live": "org.matrix.msc3381.poll.disclosed",
    "hidden": "org.matrix.msc3381.poll.undisclosed",
}


class MatrixChannel(HttpChannel):
    type_name = "matrix"
    description = "A message in a Matrix room"
    # A thread's parts reply to each other (Message.options["reply_to"]).
    thread_mode: ClassVar[str] = REPLIES
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
    # An image's alt text is the body of its own event (`_media_content`): the same limit,
    # or the text would go out and the image event be refused with M_TOO_LARGE after it.
    max_alt_length = 60_000
    # The homeserver answers a repeated transaction id with the first event's id and posts
    # nothing new (https://spec.matrix.org/v1.13/client-server-api/#transaction-identifiers).
    # Transaction ids are scoped to the access token's device: a new token forgets them, so
    # `idempotency_scope` names the device and the publisher records it with each send.
    idempotent = True
    # Synapse forgets a transaction id after 30 to 60 minutes (synapse/rest/client/
    # transactions.py, CLEANUP_PERIOD_MS); the spec promises no duration at all.
    idempotency_window = 1800.0
    # Native polls (POLL_START): MSC3381 truncates `answers` to 20; Element's poll dialog makes
    # 2 to 20 answers and questions and answers of at most 340 UTF-16 units (element-web
    # src/components/views/elements/PollCreateDialog.tsx: MIN_OPTIONS, MAX_OPTIONS,
    # MAX_QUESTION_LENGTH, MAX_OPTION_LENGTH). No duration: a Matrix poll stays open until
    # someone ends it in their client.
    native_polls = True
    poll_min_options = 2
    poll_max_options = 20
    poll_max_option_length = 340
    poll_max_question_length = 340
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
        # Whether the room is end-to-end encrypted, asked once per run (`_refuse_encrypted`).
        self._encrypted: bool | None = None

    def measure(self, text: str) -> int:
        return utf8_bytes(text)

    def measure_alt(self, text: str) -> int:
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
        poll = message.options.get("poll")
        if poll is not None:
            if not isinstance(poll, Mapping):
                problems.append(NOT_A_POLL)
            else:
                question = str(poll.get("question") or message.text)
                if not 1 <= utf16_units(question) <= self.poll_max_question_length:
                    problems.append(
                        f"a poll question needs 1 to {self.poll_max_question_length} characters"
                    )
                problems.extend(
                    poll_option_problems(
                        poll,
                        fewest=self.poll_min_options,
                        most=self.poll_max_options,
                        longest=self.poll_max_option_length,
                        measure=utf16_units,
                    )
                )
        return problems

    def _event_of(self, message: Message) -> tuple[str, dict[str, Any]]:
        """The event's type and content: a poll when the message carries one, else a message."""
        poll = isinstance(message.options.get("poll"), Mapping)
        return POLL_START if poll else "m.room.message", self._content(message)

    def _content(self, message: Message) -> dict[str, Any]:
        poll = message.options.get("poll")
        if isinstance(poll, Mapping):
            return _poll_content(message.text, poll)
        # https://spec.matrix.org/v1.13/client-server-api/#mtext
        content: dict[str, Any] = {"msgtype": self.options["msgtype"], "body": message.text}
        reply = message.options.get("reply_to")
        if isinstance(reply, ReplyTo):
            # A thread's part: in the thread of the first part, and, for clients without
            # threads, a reply to the part before it (is_falling_back: a fallback, not a real
            # reply): https://spec.matrix.org/v1.13/client-server-api/#threading
            content["m.relates_to"] = {
                "rel_type": "m.thread",
                "event_id": reply.root,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": reply.parent},
            }
        users = mentioned_users(message.text)
        html = message.html
        if users:
            html = pills(html) if html else pills(_text_html(message.text))
        if html:
            content["format"] = "org.matrix.custom.html"
            content["formatted_body"] = html
        # Intentional mentions (https://spec.matrix.org/v1.13/client-server-api/#user-and-room-
        # mentions): the users named are notified; with m.mentions present, the legacy push
        # rules that match display names or "@room" in the body no longer fire for this event.
        content["m.mentions"] = {"user_ids": users} if users else {}
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

    def _refuse_encrypted(self) -> None:
        """Refuse an end-to-end encrypted room: commcal cannot encrypt, and a plaintext event
        in such a room leaks what members expect to stay encrypted (the homeserver stores and
        serves it in the clear) and shows in every client marked as not encrypted.

        A room is encrypted once its state holds m.room.encryption (https://spec.matrix.org/
        v1.13/client-server-api/#mroomencryption), and encryption cannot be turned off again,
        so one answer holds for the whole run. 404 M_NOT_FOUND: no such state, not encrypted.
        """
        if self._encrypted is None:
            room = quote(str(self.value("room_id")), safe="")
            try:
                answer = self._call(
                    "GET", f"/_matrix/client/v3/rooms/{room}/state/m.room.encryption/"
                )
            except PermanentError as exc:
                response = exc.response
                if response is None or response.status_code != 404:
                    raise
                self._encrypted = False
            else:
                # The event's content; `algorithm` is required (m.megolm.v1.aes-sha2).
                self._encrypted = isinstance(httpkit.json_body(answer).get("algorithm"), str)
        if self._encrypted:
            raise PermanentError(
                f"room {self.value('room_id')} is end-to-end encrypted, and commcal cannot "
                "encrypt: a post there would reach the homeserver in plain text and show as "
                "unencrypted to members. Post to an unencrypted room (an announcements room) "
                "instead; see docs/deployment.md#matrix-encrypted-rooms"
            )

    def remote_id_from_url(self, url: str) -> str | None:
        """A matrix.to permalink of an event in this room (`event_link`) -> its event id."""
        from urllib.parse import unquote

        prefix = "https://matrix.to/#/"
        if not url.startswith(prefix):
            return None
        parts = unquote(url[len(prefix) :].split("?", 1)[0]).split("/")
        if len(parts) == 2 and parts[1].startswith("$"):
            return parts[1]
        return None

    def send(self, message: Message, idempotency_key: str) -> Receipt:
        """The text, then each file as an event of its own. Every event has a transaction id
        derived from the delivery's key (the text's is the key itself), so a send repeated
        after a crash between two of them posts only those still missing."""
        self._refuse_encrypted()
        room = str(self.value("room_id"))
        events = [self._event_of(message)]
        events += [("m.room.message", self._media_content(media)) for media in message.media]
        receipt = Receipt()
        for n, (event_type, content) in enumerate(events):
            txn = idempotency_key if n == 0 else f"{idempotency_key}.m{n}"
            path = (
                f"/_matrix/client/v3/rooms/{quote(room, safe='')}/send/{event_type}/"
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
        self._refuse_encrypted()  # an edit is a new event: plain text too
        if isinstance(message.options.get("poll"), Mapping):
            # An m.replace of a poll start must itself be a poll start (MSC3381 edits); a text
            # edit would turn the poll into a message for the clients that apply it.
            raise CannotChange("a Matrix poll cannot be edited: retract it and post a new one")
        event = self._event(receipt)
        new = self._content(message)
        content: dict[str, Any] = {
            "msgtype": new["msgtype"],
            "body": "* " + message.text,
            "m.new_content": new,
            "m.relates_to": {"rel_type": "m.replace", "event_id": event},
            # The edit notifies nobody again: those it names were told by the post itself
            # (https://spec.matrix.org/v1.13/client-server-api/#user-and-room-mentions).
            "m.mentions": {},
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
        self._refuse_encrypted()
        return f"token works for {user}, a member of {room}"


# A user id (https://spec.matrix.org/v1.13/appendices/#user-identifiers): `@localpart:server`,
# the localpart of a-z, 0-9 and ._=-/+, the server a host name, IPv4 or [IPv6] address with an
# optional port. Not after a word character, `@`, `/`, `:` or `.` (an e-mail address, a URL).
_USER_ID = re.compile(
    r"(?<![\w@/:.])@[a-z0-9._=/+-]+:"
    r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)(?::[0-9]{1,5})?(?![\w-])"
)
_TAG = re.compile(r"(<[^>]*>)")


def mentioned_users(text: str) -> list[str]:
    """The user ids in `text`, each once, in order."""
    return list(dict.fromkeys(found.group(0) for found in _USER_ID.finditer(text)))


def user_pill(user_id: str) -> str:
    """A mention pill as clients make them: a matrix.to link to the user
    (https://spec.matrix.org/v1.13/client-server-api/#user-and-room-mentions)."""
    return f'<a href="https://matrix.to/#/{quote(user_id, safe="@:")}">{user_id}</a>'


def pills(html: str) -> str:
    """`html` with each user id in its text (not in a tag, nor inside a link already) a pill."""
    parts = _TAG.split(html)
    inside_link = 0
    for index, part in enumerate(parts):
        if index % 2:  # a tag
            name = re.match(r"<\s*(/?)\s*a\b", part, re.IGNORECASE)
            if name:
                inside_link = max(0, inside_link + (-1 if name.group(1) else 1))
        elif not inside_link:
            parts[index] = _USER_ID.sub(lambda found: user_pill(found.group(0)), part)
    return "".join(parts)


def _text_html(text: str) -> str:
    """Plain text as HTML: escaped, line breaks kept."""
    import html

    return html.escape(text, quote=False).replace("\n", "<br>")


def event_link(room_id: str, event_id: str) -> str:
    """A matrix.to permalink (https://spec.matrix.org/v1.13/appendices/#matrixto-navigation)."""
    link = f"https://matrix.to/#/{quote(room_id, safe='!:')}/{quote(event_id, safe='$:')}"
    server = room_id.split(":", 1)[1] if ":" in room_id else ""
    return link + (f"?via={quote(server, safe='')}" if server else "")


def _poll_content(text: str, poll: Mapping[str, Any]) -> dict[str, Any]:
    """An MSC3381 poll start as Element writes it (matrix-js-sdk PollStartEvent.serialize): the
    question, the kind, one choice each, and the answers with ids of our own (`answer-1` ...:
    stable, so a resend is the same poll). The fallback is the post's text with the question
    and numbered answers, for clients that cannot show polls."""
    question = str(poll.get("question") or text)
    choices = [str(choice) for choice in poll.get("options") or []]
    numbered = "\n".join(f"{number}. {choice}" for number, choice in enumerate(choices, 1))
    lead = text.strip()
    fallback = f"{question}\n{numbered}"
    if lead and lead != question:
        fallback = f"{lead}\n\n{fallback}"
    kind = POLL_KINDS.get(str(poll.get("results") or "live"), POLL_KINDS["live"])
    return {
        POLL_START: {
            "question": {POLL_TEXT: question},
            "kind": kind,
            "max_selections": len(choices) if poll.get("multiple") else 1,
            "answers": [
                {"id": f"answer-{number}", POLL_TEXT: choice}
                for number, choice in enumerate(choices, 1)
            ],
        },
        POLL_TEXT: fallback,
        "body": fallback,
    }
