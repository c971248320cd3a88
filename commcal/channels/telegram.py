"""Telegram: a message or a native poll from a bot to a chat, group or channel.

API: https://core.telegram.org/bots/api#sendmessage and #sendpoll. The bot token is part of the
URL path (`/bot<token>/method`), so no URL ever leaves this module: errors are rebuilt from the
server's answer, with nothing chained to them.

Media go in the request that posts them, as multipart/form-data (https://core.telegram.org/bots/
api#sending-files): one file by sendPhoto, sendVideo, sendAnimation (GIF) or sendDocument with
the text as its caption; 2 to 10 photos and videos by sendMediaGroup, whose `media` array names
each file `attach://<part>` and carries the caption on its first item. A caption holds at most
1,024 characters, where a text message holds 4,096: a longer text with media is refused by
`check` (shorten it, or post the text on its own), rather than sent as the media and then the
text in a second request. The Bot API has no idempotency key, so a send of two requests whose
second failed could only be retried by posting the first again; one request is all or nothing.
Telegram has no alt text: `Media.alt` is not sent (its description shows in no client).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from commcal.channels import attach, httpkit
from commcal.channels.base import (
    NOT_A_POLL,
    REASON_LIMIT,
    REPLIES,
    CannotChange,
    Media,
    MediaFile,
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
from commcal.channels.text import utf16_units
from commcal.errors import ConfigError
from commcal.media import mime_type

if TYPE_CHECKING:
    import requests

PARSE_MODES = ("HTML", "MarkdownV2")
# A public chat's username: 5-32 characters (https://core.telegram.org/api/usernames).
_CHAT_USERNAME = re.compile(r"@[A-Za-z][A-Za-z0-9_]{4,31}")


# HTML mode decodes only these named entities, and numeric ones (https://core.telegram.org/bots/
# api#html-style: "All numerical HTML entities are supported. The API currently supports only the
# following named HTML entities: &lt;, &gt;, &amp; and &quot;"). tdlib's decode_html_entity
# (td/telegram/MessageEntity.cpp) shows the rest: names are case-sensitive, the ";" is optional,
# hexadecimal needs a lower-case "x", a reference of 10 or more characters before the ";", or for
# code point 0 or U+10FFFF and above, is not decoded; whatever is not decoded stays as written
# (`&nbsp;` counts 6 characters).
_HTML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_ENTITY = re.compile(r"&(?:#x([0-9A-Fa-f]*)|#([0-9]*)|([A-Za-z]*));?")


def _decode_entity(match: re.Match[str]) -> str:
    hex_digits, digits, name = match.groups()
    if name is not None:
        return _HTML_NAMED.get(name, match.group(0))
    number = hex_digits if hex_digits is not None else digits
    prefix = 3 if hex_digits is not None else 2  # "&#x" or "&#"
    code = int(number, 16 if hex_digits is not None else 10) if number else 0
    if code == 0 or code >= 0x10FFFF or prefix + len(number) >= 10:
        return match.group(0)
    if 0xD800 <= code <= 0xDFFF:
        return "\ufffd"  # Telegram refuses a lone surrogate; count it as one character
    return chr(code)


def visible_text(text: str, parse_mode: str | None) -> str:
    """The text Telegram counts: what remains after its formatting markup is parsed.

    https://core.telegram.org/bots/api#formatting-options. HTML: tags removed, entities decoded.
    MarkdownV2: `[label](url)` counts as `label`, markup characters and escapes removed. This is
    close enough for a length check; Telegram itself rejects malformed markup.
    """
    if parse_mode == "HTML":
        return _HTML_ENTITY.sub(_decode_entity, re.sub(r"<[^>]*>", "", text))
    if parse_mode == "MarkdownV2":
        text = re.sub(r"(?<!\\)\[((?:\\.|[^\]\\])*)\]\((?:\\.|[^)\\])*\)", r"\1", text)
        text = re.sub(r"(?<!\\)(\|\||__|[*_~`])", "", text)
        return re.sub(r"\\(.)", r"\1", text)
    return text


class TelegramChannel(HttpChannel):
    native_polls = True  # Message.options["poll"] becomes the network's own poll
    type_name = "telegram"
    description = "A Telegram message or poll sent by a bot"
    # A thread's parts reply to each other (Message.options["reply_to"]).
    thread_mode: ClassVar[str] = REPLIES
    settings_schema: ClassVar[Mapping[str, Setting]] = {
        "token": Setting("the bot token from @BotFather", required=True, private=True),
        "chat_id": Setting(
            "the chat: a numeric id (-100... for channels and supergroups) or @channelusername",
            required=True,
            kind=(str, int),
        ),
        "parse_mode": Setting("HTML or MarkdownV2 to format messages; plain text if unset"),
        "link_preview": Setting("show a preview of the first link", default=True, kind=bool),
        "api_url": Setting("the Bot API server", default="https://api.telegram.org"),
    }
    # sendMessage: "1-4096 characters after entities parsing". Telegram measures entity offsets
    # in UTF-16 code units (https://core.telegram.org/api/entities#entity-length); this check
    # counts the limit the same way, so an emoji counts 2 and a check never passes a message
    # Telegram refuses.
    max_length = 4096
    length_unit = "characters (UTF-16 units, emoji count 2)"
    # The Bot API has no idempotency key: a repeated sendMessage posts again.
    idempotent = False
    # sendPoll: question 1-300 characters, 2-12 options of 1-100 characters, open_period 5-600 s
    # (https://core.telegram.org/bots/api#sendpoll, https://core.telegram.org/bots/api#inputpolloption).
    poll_max_question_length = 300
    poll_min_options = 2
    poll_max_options = 12
    poll_max_option_length = 100
    # open_period is 5 to 600 seconds; a longer poll is sent without one and stays open until
    # stopped, so there is no longest time.
    poll_min_seconds = 5
    open_period_max = 600
    # Media (https://core.telegram.org/bots/api#sendmediagroup: "2-10 items"; #sending-files:
    # "5 MB max size for photos and 20 MB max for other types of content" by URL, and for an
    # upload "10 MB max size for photos, 50 MB for other files"). A caption is "0-1024
    # characters after entities parsing" (#sendphoto), counted like the text in UTF-16 units.
    # A GIF goes by sendAnimation (50 MB, an "other file"); an album (sendMediaGroup) holds
    # photos and videos only, so a GIF goes alone.
    max_media = 10
    max_image_bytes = 10 * attach.MB
    max_video_bytes = 50 * attach.MB
    max_media_bytes = 50 * attach.MB
    video_types = frozenset({"video/mp4", "video/quicktime", "video/webm", "video/x-m4v"})
    max_caption_length = 1024
    # sendPhoto: "The photo's width and height must not exceed 10000 in total. Width and height
    # ratio must be at most 20." (https://core.telegram.org/bots/api#sendphoto)
    max_aspect_ratio = 20.0
    max_photo_sides = 10_000

    def configure(self) -> None:
        httpkit.check_https_url(self, "api_url")
        mode = self.options.get("parse_mode")
        if mode is not None and mode not in PARSE_MODES:
            raise ConfigError(
                f"channel {self.name!r} (telegram): parse_mode must be HTML or MarkdownV2, "
                f"not {mode!r}"
            )
        chat = self.options["chat_id"]
        if isinstance(chat, str) and not (
            _CHAT_USERNAME.fullmatch(chat) or re.fullmatch(r"-?\d+", chat)
        ):
            raise ConfigError(
                f"channel {self.name!r} (telegram): chat_id must be a number or an "
                f"@channelusername, not {chat!r}"
            )

    def measure(self, text: str) -> int:
        return utf16_units(visible_text(text, self.options.get("parse_mode")))

    def check(self, message: Message) -> list[str]:
        mode = message.options.get("parse_mode", self.options.get("parse_mode"))
        if mode is not None and mode not in PARSE_MODES:
            return [f"parse_mode must be HTML or MarkdownV2, not {mode!r}"]
        problems = [
            problem
            for problem in super().check(message)
            if not problem.startswith("text is ")  # measured again below with the message's mode
        ]
        poll = message.options.get("poll")
        if poll:
            problems.extend(self._poll_problems(poll, message.text))
            if message.media:
                problems.append(
                    "a telegram poll cannot carry media: send the media in another post"
                )
        elif message.media:
            problems = [p for p in problems if p != "message is empty"]
            problems.extend(self._caption_problems(message, mode))
        else:
            length = utf16_units(visible_text(message.text, mode))
            if length > self.max_length:
                problems.append(
                    f"text is {length} {self.length_unit}, over telegram's limit of "
                    f"{self.max_length} by {length - self.max_length}"
                )
        return problems

    def _caption_problems(self, message: Message, mode: str | None) -> list[str]:
        length = utf16_units(visible_text(message.text, mode))
        most = self.max_caption_length
        if length <= most:
            return []
        return [
            f"text is {length} {self.length_unit}, over telegram's limit of {most} for a "
            f"caption by {length - most}: a post with media carries its text as the caption; "
            "shorten the text, or post the media and the long text as two items"
        ]

    def check_media(self, files: Sequence[MediaFile]) -> list[tuple[int | None, str]]:
        shown, problems = attach.gifs_apart(list(files), self.max_media_bytes or 0, "telegram")
        problems = super().check_media(shown) + problems
        for number, found in enumerate(files):
            if found.mime_type == "image/gif":
                if len(files) > 1:
                    problems.append(
                        (number, "telegram albums hold photos and videos only: send a GIF alone")
                    )
            elif found.kind == "image" and (found.width or 0) + (found.height or 0) > (
                most := self.max_photo_sides
            ):
                problems.append(
                    (
                        number,
                        f"{found.width}x{found.height} pixels, over telegram's limit of {most:,} "
                        "for width and height together",
                    )
                )
        return problems

    def _poll_problems(self, poll: Any, text: str) -> list[str]:
        if not isinstance(poll, Mapping):
            return [NOT_A_POLL]
        problems = []
        question = str(poll.get("question") or text)
        if not 1 <= utf16_units(question) <= self.poll_max_question_length:
            problems.append(
                f"a poll question needs 1 to {self.poll_max_question_length} characters"
            )
        problems += poll_option_problems(
            poll,
            fewest=self.poll_min_options,
            most=self.poll_max_options,
            longest=self.poll_max_option_length,
            measure=utf16_units,
        )
        duration = poll.get("duration_seconds")
        low = self.poll_min_seconds
        if duration is not None and int(duration) < low:
            problems.append(f"a telegram poll stays open at least {low} seconds, not {duration}")
        return problems

    # -- network --------------------------------------------------------------------------------

    def _call(self, method: str, payload: Mapping[str, Any]) -> Any:
        """POST one Bot API method; return `result`. No error mentions or chains the URL."""
        response = self._post(method, payload)
        body = httpkit.json_body(response)
        if not body.get("ok"):
            raise self.failure(PermanentError(f"HTTP {response.status_code}"), response)
        return body.get("result")

    def _post(
        self, method: str, payload: Mapping[str, Any], files: Mapping[str, Any] | None = None
    ) -> requests.Response:
        """POST one Bot API method; the 2xx answer, or the error. No error holds the URL. With
        `files`, as multipart/form-data: each field a string (objects as JSON), then the files."""
        url = f"{str(self.value('api_url')).rstrip('/')}/bot{self.secret('token')}/{method}"
        if files is None:
            return self.call("POST", url, json=dict(payload))
        import json

        fields = {
            key: value if isinstance(value, str) else json.dumps(value)
            for key, value in payload.items()
        }
        return self.call("POST", url, data=fields, files=dict(files))

    def _send_media(self, message: Message, chat_id: Any, mode: str | None) -> requests.Response:
        """One request that posts every file of `message`, its text the caption."""
        problems = self._caption_problems(message, mode)
        if problems:
            raise PermanentError("; ".join(problems))
        # Read every file first: an unreadable one fails the send before anything goes out.
        files = {
            f"file{number}": (
                attach.filename(media),
                attach.read(media, self, self.max_media_bytes),
                mime_type(media),
            )
            for number, media in enumerate(message.media)
        }
        caption: dict[str, Any] = {}
        if message.text.strip():
            caption["caption"] = message.text
            if mode:
                caption["parse_mode"] = mode
        if len(message.media) == 1:
            # The file in the method's own field ("photo", "video" ...), as #sending-files says.
            method, field = SINGLE[attach.kind_of(message.media[0])]
            return self._post(method, {"chat_id": chat_id, **caption}, {field: files["file0"]})
        group = [
            {"type": _group_type(media), "media": f"attach://file{number}"}
            for number, media in enumerate(message.media)
        ]
        group[0].update(caption)  # shown under the album when only one item has a caption
        return self._post("sendMediaGroup", {"chat_id": chat_id, "media": group}, files)

    # Bot API errors are {"ok": false, "error_code", "description", "parameters"}
    # (https://core.telegram.org/bots/api#making-requests,
    # https://core.telegram.org/bots/api#responseparameters).

    def error_text(self, error: SendError, response: requests.Response | None) -> str:
        if response is None:
            return self.redact(str(error))
        host = urlsplit(str(self.value("api_url"))).netloc
        body = httpkit.json_body(response)
        code = body.get("error_code", response.status_code)
        description = str(body.get("description") or "").strip()
        text = self.redact(
            f"{host} answered {code}" + (f": {description}" if description else ""), REASON_LIMIT
        )
        parameters = _parameters(body)
        if "migrate_to_chat_id" in parameters:
            text += f" (the group is now chat_id {parameters['migrate_to_chat_id']})"
        return text

    def retry_after(self, error: SendError, response: requests.Response | None) -> float | None:
        # A 429 says when in parameters.retry_after, not in a Retry-After header.
        body = httpkit.json_body(response) if response is not None else {}
        retry_after = _parameters(body).get("retry_after")
        if isinstance(retry_after, int | float) and not isinstance(retry_after, bool):
            return float(retry_after)
        return super().retry_after(error, response)

    def new_error(
        self,
        text: str,
        retry_after: float | None,
        error: SendError,
        response: requests.Response | None,
    ) -> SendError:
        body = httpkit.json_body(response) if response is not None else {}
        if response is not None and body.get("error_code", response.status_code) == 429:
            return TransientError(text, retry_after)  # a 429 in the body of a 2xx too
        return super().new_error(text, retry_after, error, response)

    def remote_id_from_url(self, url: str) -> str | None:
        """https://t.me/channel/42 or https://t.me/c/123/42 -> 42."""
        import re

        found = re.fullmatch(r"https://t\.me/(?:c/)?[^/]+/(\d+)/?", url.strip())
        return found.group(1) if found else None

    def send(self, message: Message, idempotency_key: str) -> Receipt:
        chat_id = self.value("chat_id")
        poll = message.options.get("poll")
        mode = message.options.get("parse_mode", self.options.get("parse_mode"))
        if poll:
            # A native poll carries its own question; the message text is the question when the
            # poll has none. Only the poll is sent: two messages could not be sent atomically.
            payload: dict[str, Any] = {
                "chat_id": chat_id,
                "question": str(poll.get("question") or message.text),
                # InputPollOption objects (Bot API 7.3); plain strings are the older form.
                "options": [{"text": str(choice)} for choice in poll.get("options", [])],
            }
            # open_period only reaches 600 s; a longer poll is sent without one and stays open
            # (Telegram has no longer timer: https://core.telegram.org/bots/api#sendpoll).
            duration = poll.get("duration_seconds")
            if duration is not None and int(duration) <= self.open_period_max:
                payload["open_period"] = int(duration)
            if poll.get("multiple"):
                payload["allows_multiple_answers"] = True
            response = self._post("sendPoll", payload)
        elif message.media:
            response = self._send_media(message, chat_id, mode)
        else:
            payload = {"chat_id": chat_id, "text": message.text}
            if mode:
                payload["parse_mode"] = mode
            if not self.options["link_preview"]:
                # Bot API 7.0 replaced disable_web_page_preview with link_preview_options.
                payload["link_preview_options"] = {"is_disabled": True}
            reply = message.options.get("reply_to")
            if isinstance(reply, ReplyTo) and reply.parent.isdigit():
                # A thread's part answers the one before it (ReplyParameters, Bot API 7.0):
                # https://core.telegram.org/bots/api#replyparameters
                payload["reply_parameters"] = {"message_id": int(reply.parent)}
            response = self._post("sendMessage", payload)
        body = httpkit.json_body(response)
        if body.get("ok") is False:  # a refusal, in a 2xx (the Bot API itself uses 4xx)
            raise self.failure(PermanentError(f"HTTP {response.status_code}"), response)
        # Any other 2xx is a message in the chat: without its id, it is sent with the id
        # unknown (recorded, never posted again), not a failure that a retry would repeat.
        result = body.get("result")
        # sendMediaGroup: the album's messages, each its own message in the chat; the first
        # links to the album. All their ids are the receipt's ("60,61,62"), so that a retract
        # deletes every one of them.
        found = result if isinstance(result, list) else [result]
        ids = [
            str(item["message_id"])
            for item in found
            if isinstance(item, dict) and isinstance(item.get("message_id"), int | str)
        ]
        if body.get("ok") is not True or not ids:
            return Receipt(note=unreadable(response, "a message_id"))
        return Receipt(remote_id=",".join(ids), url=message_url(chat_id, ids[0]))

    # -- after the send -------------------------------------------------------------------------
    # https://core.telegram.org/bots/api#deletemessage: "A message can only be deleted if it was
    # sent less than 48 hours ago"; in a channel a bot deletes its own posts (can_post_messages).
    # https://core.telegram.org/bots/api#editmessagetext and #editmessagecaption.

    def cannot_retract(self) -> str:
        return ""

    def cannot_amend(self) -> str:
        return ""

    def _message_ids(self, receipt: Receipt) -> list[int | str]:
        """The post's messages: one, or an album's (the first carries its caption)."""
        if not receipt.remote_id:
            raise CannotChange("telegram did not name the message when it was sent")
        return [int(part) if part.isdigit() else part for part in receipt.remote_id.split(",")]

    def _message_id(self, receipt: Receipt) -> int | str:
        return self._message_ids(receipt)[0]

    def retract(self, receipt: Receipt, *, reason: str = "", key: str = "") -> bool:
        ids = self._message_ids(receipt)
        chat_id = self.value("chat_id")
        try:
            if len(ids) == 1:
                self._call("deleteMessage", {"chat_id": chat_id, "message_id": ids[0]})
            else:
                # An album is one message per file: deleteMessages takes 1 to 100 of them and
                # skips those already gone (https://core.telegram.org/bots/api#deletemessages).
                self._call("deleteMessages", {"chat_id": chat_id, "message_ids": ids})
        except PermanentError as exc:
            text = str(exc).lower()
            if "message to delete not found" in text:  # not "chat not found": a wrong chat_id
                return False
            if "can't be deleted" in text or "cannot be deleted" in text:
                raise PermanentError(
                    f"{exc} (a bot can delete its messages only within 48 hours of sending, "
                    "and in a channel only with the post-messages right: delete it in Telegram)"
                ) from None
            raise
        return True

    def amend(self, receipt: Receipt, message: Message, *, key: str = "") -> Receipt:
        if message.options.get("poll"):
            # editMessageText cannot change a poll; stopPoll only closes it.
            raise CannotChange("a telegram poll cannot be edited: retract it and post a new one")
        mode = message.options.get("parse_mode", self.options.get("parse_mode"))
        payload: dict[str, Any] = {
            "chat_id": self.value("chat_id"),
            "message_id": self._message_id(receipt),
        }
        if mode:
            payload["parse_mode"] = mode
        if message.media:
            method, payload["caption"] = "editMessageCaption", message.text
        else:
            method, payload["text"] = "editMessageText", message.text
            if not self.options["link_preview"]:
                payload["link_preview_options"] = {"is_disabled": True}
        try:
            self._call(method, payload)
        except PermanentError as exc:
            # The edit is there already (an earlier amend whose answer was lost): as good.
            if "message is not modified" not in str(exc).lower():
                raise
        return receipt

    def verify(self) -> str:
        me = self._call("getMe", {})
        name = me.get("username", "?") if isinstance(me, dict) else "?"
        return f"token works for bot @{name}"


# The method that sends one file of each kind, and its file field.
SINGLE: Mapping[str, tuple[str, str]] = {
    "image": ("sendPhoto", "photo"),
    "video": ("sendVideo", "video"),
    "gif": ("sendAnimation", "animation"),
    "file": ("sendDocument", "document"),
}


def _group_type(media: Media) -> str:
    """InputMediaPhoto or InputMediaVideo (https://core.telegram.org/bots/api#inputmedia)."""
    return "video" if attach.kind_of(media) == "video" else "photo"


def _parameters(body: Mapping[str, Any]) -> Mapping[str, Any]:
    parameters = body.get("parameters")
    return parameters if isinstance(parameters, dict) else {}


def message_url(chat_id: Any, message_id: str) -> str | None:
    """t.me link: public for @username chats, members-only (t.me/c/...) for -100... ids."""
    chat = str(chat_id)
    if _CHAT_USERNAME.fullmatch(chat):
        return f"https://t.me/{chat[1:]}/{message_id}"
    if chat.startswith("-100") and chat[4:].isdigit():
        return f"https://t.me/c/{chat[4:]}/{message_id}"
    return None
