"""SMTP newsletters: one mail per recipient, over one connection reused for the whole run.

Each message is a MIME mail (RFC 5322, RFC 2045-2049) built with `email.message.EmailMessage`:
text/plain, or multipart/alternative text + HTML, wrapped in multipart/mixed when there are
attachments (for example an .ics invitation). Non-ASCII names and subjects are RFC 2047 encoded
words; bodies are quoted-printable or base64 (7-bit clean, so any relay accepts them).

Images (`Message.media`) go inline in the HTML part (RFC 2387 multipart/related, RFC 2392 cid:
URLs): multipart/alternative holds the plain part and a multipart/related of the HTML and one
part per image, each with its Content-ID and `Content-Disposition: inline`. The HTML places an
image by its file name (`<img src="cid:poster.png" alt="...">`); an image it does not place is
added at the end, with its alt text as `alt=`. The plain part names each image by its alt text.
The image parts are encoded once per newsletter and reused for every reader (`_Inline`). A mail
without an HTML part carries its media as attachments. `max_message_mb` (10 by default) bounds
the encoded size of a mail's files, checked offline: many providers refuse larger mail.

`Message-ID` is ``<{delivery id}@{sender domain}>`` so a resent delivery carries the same id and
a mail client or archive can tell it is the same mail; it is the receipt's `remote_id`.

List-Unsubscribe (RFC 2369) and List-Unsubscribe-Post (RFC 8058 one-click) come from the message's
own headers; the `list_unsubscribe` setting fills in List-Unsubscribe when a message has none.
One-click (`List-Unsubscribe-Post: List-Unsubscribe=One-Click`) is only sent when the message says
so, because it promises an HTTPS endpoint that unsubscribes on a bare POST (RFC 8058 section 3).

Connection: opened on the first send and reused; a server that dropped it (idle timeout, restart)
before it accepted our MAIL FROM/RCPT TO is reconnected once. Only SMTP replies decide between a
retry and a failure: 4xx is transient, 5xx permanent (RFC 5321 section 4.2.1).

A newsletter goes out in batches (`batch`, default 100 mails): the publisher claims a batch in
one ledger transaction, hands it to `send_many`, which sends it over a pool of `connections`
SMTP sessions (default 4, each in its own thread, kept open from batch to batch), and records
the outcomes in one more. Where the server offers ESMTP PIPELINING (RFC 2920), MAIL FROM and
RCPT TO go out together and their replies are read after; DATA and the body are sent and
answered one step at a time as before, so the careful handling below is unchanged.

Once the end of the message body has gone out, the server may have queued the mail whatever
happens next: a cut connection, a timeout or a reply that is not SMTP is "may have been
delivered" (`TransientError(maybe_sent=True)`), which the publisher records `unknown` instead of
mailing the reader again. Only a clear 4xx/5xx answer to the end of data says it was not taken.
"""

from __future__ import annotations

import base64
import contextlib
import email.errors
import email.policy
import email.utils
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any, ClassVar
from urllib.parse import quote

from commcal.channels import attach
from commcal.channels.base import (
    NO_THREADS,
    Channel,
    EnvRef,
    Media,
    MediaFile,
    Message,
    PermanentError,
    Receipt,
    SendError,
    Setting,
    TransientError,
)
from commcal.errors import ConfigError
from commcal.media import mime_type as media_type
from commcal.redact import Secrets
from commcal.timeutil import utc_now

# The usual port of each kind of security: 587 submission with STARTTLS (RFC 6409, RFC 3207),
# 465 implicit TLS (RFC 8314 section 3.3), 25 plain relay (RFC 5321).
DEFAULT_PORTS: Mapping[str, int] = {"starttls": 587, "tls": 465, "none": 25}
# Headers the channel writes itself; a template may not set them through `headers`.
RESERVED_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "subject", "date", "message-id", "mime-version", "sender"}
)
# CRLF line ends; 7-bit transfer encodings, so nothing depends on the relay's 8BITMIME support.
# max_line_length 998 (RFC 5322 2.1.1's hard limit) instead of 78: the email package folds a
# header word longer than the line length into RFC 2047 encoded-words, which turns a long
# List-Unsubscribe URL into =?utf-8?q?...?= that no mail client can follow (RFC 2369 needs <URL>).
SMTP_POLICY = email.policy.SMTP.clone(cte_type="7bit", max_line_length=998)
# RFC 5322 section 3.2.3 atext: what may stand unquoted left of the @ in a Message-ID.
_ATEXT_SAFE = "!#$&'*+-/=?^_`{|}~"


class _Dropped(Exception):
    """The server closed the session before it accepted the message: safe to reconnect."""


class _Session:
    """One SMTP connection, opened on first use; each thread of the pool has its own."""

    def __init__(self) -> None:
        self.smtp: smtplib.SMTP | None = None


class SmtpChannel(Channel):
    type_name: ClassVar[str] = "smtp"
    description: ClassVar[str] = "Send newsletters by mail through an SMTP server, one per reader."
    settings_schema: ClassVar[Mapping[str, Setting]] = {
        "host": Setting("SMTP server, e.g. smtp.example.org or ${SMTP_HOST}", required=True),
        "port": Setting("port; default 587 (starttls), 465 (tls) or 25 (none)", kind=int),
        "security": Setting("starttls, tls or none", default="starttls"),
        "username": Setting("login name, if the server wants one"),
        "password": Setting("login password, e.g. ${SMTP_PASSWORD}", private=True),
        "from": Setting('sender, e.g. "Community <hello@example.org>"', required=True),
        "to": Setting("address for messages without their own recipient (e.g. a list address)"),
        "reply_to": Setting("Reply-To address"),
        "list_unsubscribe": Setting(
            "List-Unsubscribe target when a message has none, e.g. mailto:leave@example.org"
        ),
        "timeout": Setting("seconds to wait for the server", default=30, kind=(int, float)),
        "connections": Setting(
            "SMTP connections a newsletter is sent over at once (ask your provider's limit)",
            default=4,
            kind=int,
        ),
        "batch": Setting(
            "mails claimed and confirmed per ledger transaction; a crash leaves at most this "
            "many `unknown`",
            default=100,
            kind=int,
        ),
        "ca_file": Setting("PEM file of certificate authorities to trust (self-signed relays)"),
        "max_message_mb": Setting(
            "the most megabytes of images one mail may carry, as encoded (ask your provider)",
            default=10,
            kind=(int, float),
        ),
    }
    needs_subject: ClassVar[bool] = True
    per_recipient: ClassVar[bool] = True
    # Mail is no thread of posts: `check` refuses an item with thread: on a mail channel.
    thread_mode: ClassVar[str] = NO_THREADS
    # SMTP has no idempotency key: a repeated send is a second mail.
    idempotent: ClassVar[bool] = False
    # Mail has no practical length limit for a newsletter body.
    max_length: ClassVar[int | None] = None
    # Media: images inline in the HTML. No count limit of its own; the size is bounded by
    # `max_message_mb` as the files travel, base64 (4/3 of their size, RFC 2045 6.8): Gmail
    # takes 25 MB a mail (https://support.google.com/mail/answer/6584), many lists far less.
    max_media = None
    max_media_bytes = None

    def configure(self) -> None:
        self.clock: Callable[[], datetime] = utc_now
        self._session = _Session()  # `send`'s own
        self._pool: list[_Session] = []  # `send_many`'s, one per thread
        self._threads: ThreadPoolExecutor | None = None
        self._addresses: dict[tuple[str, str], Address] = {}
        self._inline: dict[tuple[tuple[Media, ...], str], _Inline] = {}
        self._inline_lock = threading.Lock()
        security = self.options["security"]
        if security not in DEFAULT_PORTS:
            raise self._config(
                f"setting 'security' must be starttls, tls or none, not {security!r}"
            )
        if self.options["password"] is not None and self.options["username"] is None:
            raise self._config("setting 'password' needs 'username' as well")
        if self.options["username"] is not None and self.options["password"] is None:
            raise self._config("setting 'username' needs 'password' as well")
        timeout = self.options["timeout"]
        if isinstance(timeout, int | float) and timeout <= 0:
            raise self._config("setting 'timeout' must be a positive number of seconds")
        most_mb = self.options["max_message_mb"]
        if isinstance(most_mb, int | float) and not 0 < most_mb <= 1000:
            raise self._config("setting 'max_message_mb' must be a number of megabytes, 0 to 1000")
        for key, most in (("connections", 64), ("batch", 10_000)):
            number = self.options[key]
            if isinstance(number, int) and not 1 <= number <= most:
                raise self._config(f"setting {key!r} must be a whole number from 1 to {most}")
        for key in ("from", "to", "reply_to"):
            raw = self.options.get(key)
            if isinstance(raw, str):
                self._address_setting(key, raw)

    # -- offline checks --------------------------------------------------------------------------

    def check(self, message: Message) -> list[str]:
        problems = super().check(message)
        if message.recipient is None and self.options.get("to") is None:
            problems.append("no recipient: give the message recipients or set `to` on the channel")
        elif message.recipient is not None and _parse(message.recipient.email) is None:
            problems.append(f"recipient {message.recipient.email!r} is not an email address")
        for name in message.headers:
            if name.lower() in RESERVED_HEADERS or name.lower().startswith("content-"):
                problems.append(f"header {name!r} is written by the smtp channel itself")
        attachments = message.options.get("attachments")
        if attachments is not None:
            problems.extend(_attachment_problems(attachments))
        return problems

    def check_media(self, files: Sequence[MediaFile]) -> list[tuple[int | None, str]]:
        """Images only (a mail client shows no video inline), and the encoded size of them
        all: base64 is 4/3 of the files (RFC 2045 6.8)."""
        problems: list[tuple[int | None, str]] = []
        for number, found in enumerate(files):
            if found.kind != "image":
                problems.append(
                    (number, "a mail carries images, not videos or files: link to it instead")
                )
        problems.extend(super().check_media([f for f in files if f.kind == "image"]))
        encoded = (sum(found.size or 0 for found in files) + 2) // 3 * 4
        most = int(float(self.options["max_message_mb"] or 10) * attach.MB)
        if encoded > most:
            problems.append(
                (
                    None,
                    f"the images of this mail are {attach.human(encoded)} as sent, over this "
                    f"channel's limit of {attach.human(most)}: make them smaller, send fewer, "
                    "or raise max_message_mb if your mail provider takes larger mail",
                )
            )
        return problems

    def inline(self, media: tuple[Media, ...], domain: str) -> _Inline:
        """The images of a newsletter as MIME parts, encoded once and kept for every reader of
        the run (a newsletter is thousands of mails with the same images)."""
        key = (media, domain)
        with self._inline_lock:
            found = self._inline.get(key)
            if found is None:
                if len(self._inline) >= 8:
                    self._inline.clear()  # a run sends a few newsletters, not many
                found = self._inline[key] = _Inline.of(media, domain, self)
            return found

    # -- sending ---------------------------------------------------------------------------------

    def send(self, message: Message, idempotency_key: str) -> Receipt:
        return self._send_on(self._session, message, idempotency_key)

    def batch_size(self) -> int:
        return int(self.value("batch"))

    def send_many(
        self, messages: Sequence[tuple[Message, str]], stop: Callable[[], bool]
    ) -> list[Receipt | Exception | None]:
        """Send a batch over the pool: each of `connections` threads takes the next mail of the
        batch on its own session. Once a session finds the server unreachable, or `stop()` is
        true, no further mail is begun (those are None: not tried); mails already begun finish."""
        results: list[Receipt | Exception | None] = [None] * len(messages)
        size = min(int(self.value("connections")), len(messages))
        if size <= 0:
            return results
        while len(self._pool) < size:
            self._pool.append(_Session())
        if self._threads is None:
            self._threads = ThreadPoolExecutor(
                max_workers=int(self.value("connections")), thread_name_prefix="commcal-smtp"
            )
        lock = threading.Lock()
        state = {"next": 0, "down": False}

        def work(session: _Session) -> None:
            while True:
                with lock:
                    n = state["next"]
                    if state["down"] or n >= len(messages) or stop():
                        return
                    state["next"] = n + 1
                message, key = messages[n]
                try:
                    results[n] = self._send_on(session, message, key)
                except (SendError, ConfigError) as exc:
                    exc.args = (self.redact(str(exc)),)
                    results[n] = exc
                    if isinstance(exc, TransientError) and exc.unreachable:
                        with lock:
                            state["down"] = True
                except Exception as exc:  # an adapter bug: the publisher records it unknown
                    results[n] = exc

        futures = [self._threads.submit(work, session) for session in self._pool[:size]]
        for future in futures:
            future.result()
        return results

    def _send_on(self, session: _Session, message: Message, idempotency_key: str) -> Receipt:
        problems = self.check(message)
        if problems:
            raise PermanentError("; ".join(problems))
        sender = self._address_setting("from", str(self.value("from")))
        to = self._recipient(message)
        international = not (sender.addr_spec + to.addr_spec).isascii()
        data = None if international else self._plain_mail(message, idempotency_key, sender, to)
        if data is None:
            # RFC 6531: internationalized addresses travel as UTF-8 headers under SMTPUTF8.
            policy = SMTP_POLICY.clone(utf8=True) if international else SMTP_POLICY
            data = self.build(message, idempotency_key).as_bytes(policy=policy)
        try:
            self._transmit(session, data, sender.addr_spec, to.addr_spec, international)
        except (SendError, ConfigError):
            raise
        except Exception as exc:
            self._discard(session)
            raise self._error(exc) from None
        return Receipt(remote_id=message_id(idempotency_key, sender.domain))

    def _plain_mail(
        self, message: Message, idempotency_key: str, sender: Address, to: Address
    ) -> bytes | None:
        """The mail `build` makes, written directly for the usual newsletter (text and perhaps
        HTML, no attachment, short headers): the email package's header objects and generator
        cost more than the rest of a send. None for anything else: `build` writes that. The
        same headers, in the same order, and the same parts; text that is not ASCII, or has
        a line over 998 octets, is base64 (7-bit clean, as SMTP_POLICY makes it)."""
        if message.options.get("attachments") or (message.media and not message.html):
            return None
        reply_to = self.value("reply_to")
        headers = dict(message.headers)
        unsubscribe = self.value("list_unsubscribe")
        if unsubscribe and not any(k.lower() == "list-unsubscribe" for k in headers):
            headers["List-Unsubscribe"] = _angle(str(unsubscribe))
        first = [
            ("Subject", _plain_text(message.subject or "")),
            ("From", _plain_address(sender)),
            ("To", _plain_address(to)),
            ("Date", email.utils.format_datetime(self.clock().astimezone(UTC))),
            ("Message-ID", message_id(idempotency_key, sender.domain)),
        ]
        if reply_to:
            first.append(
                ("Reply-To", _plain_address(self._address_setting("reply_to", str(reply_to))))
            )
        if any(value is None for _, value in first):
            return None
        lines = [f"{name}: {value}" for name, value in first]
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name) or not _SAFE_VALUE.fullmatch(value):
                return None
            lines.append(f"{name}: {value}")
        language = message.language
        if language is not None and not _SAFE_VALUE.fullmatch(language):
            return None
        inline = self.inline(message.media, sender.domain) if message.media else None
        text = _part(inline.plain(message.text) if inline else message.text)
        if not message.html:
            lines += ['Content-Type: text/plain; charset="utf-8"', text[0], "MIME-Version: 1.0"]
            if language:
                lines.append(f"Content-Language: {language}")
            body = text[1]
        else:
            html = _part(inline.place(message.html) if inline else message.html)
            boundary = _boundary(text[1] + html[1])
            lines += [
                "MIME-Version: 1.0",
                f'Content-Type: multipart/alternative; boundary="{boundary}"',
            ]
            if language:
                lines.append(f"Content-Language: {language}")
            html_part = (
                f'Content-Type: text/html; charset="utf-8"\r\n'
                f"{html[0]}\r\nMIME-Version: 1.0\r\n\r\n{html[1]}"
            )
            body = (
                f'--{boundary}\r\nContent-Type: text/plain; charset="utf-8"\r\n'
                f"{text[0]}\r\n\r\n{text[1]}\r\n--{boundary}\r\n"
            )
            if inline is not None:
                # multipart/related: the HTML first, then the images it names by Content-ID.
                related = _boundary(html[1] + boundary)
                head = "\r\n".join(lines) + "\r\n\r\n" + body
                if any(len(line) > 998 for line in lines):
                    return None
                return b"".join(
                    [
                        head.encode("ascii"),
                        f'Content-Type: multipart/related; boundary="{related}"; '
                        'type="text/html"\r\nMIME-Version: 1.0\r\n\r\n'
                        f"--{related}\r\n{html_part}\r\n".encode("ascii"),
                        *(f"--{related}\r\n".encode("ascii") + part for part in inline.parts),
                        f"--{related}--\r\n\r\n--{boundary}--\r\n".encode("ascii"),
                    ]
                )
            body += f"{html_part}\r\n--{boundary}--\r\n"
        if any(len(line) > 998 for line in lines):
            return None
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("ascii")

    def build(self, message: Message, idempotency_key: str) -> EmailMessage:
        """The complete mail for one recipient, as it will be sent."""
        sender = self._address_setting("from", str(self.value("from")))
        mail = EmailMessage(policy=SMTP_POLICY)
        try:
            mail["Subject"] = message.subject or ""
            mail["From"] = sender
            mail["To"] = self._recipient(message)
            mail["Date"] = email.utils.format_datetime(self.clock().astimezone(UTC))
            mail["Message-ID"] = message_id(idempotency_key, sender.domain)
            reply_to = self.value("reply_to")
            if reply_to:
                mail["Reply-To"] = self._address_setting("reply_to", str(reply_to))
            headers = dict(message.headers)
            unsubscribe = self.value("list_unsubscribe")
            if unsubscribe and not any(k.lower() == "list-unsubscribe" for k in headers):
                headers["List-Unsubscribe"] = _angle(str(unsubscribe))
            for name, value in headers.items():
                mail[name] = value
            inline = self.inline(message.media, sender.domain) if message.media else None
            mail.set_content(inline.plain(message.text) if inline else message.text)
            if message.html:
                mail.add_alternative(
                    inline.place(message.html) if inline else message.html, subtype="html"
                )
                if inline is not None:
                    html_part = next(
                        part for part in mail.iter_parts() if part.get_content_subtype() == "html"
                    )
                    assert isinstance(html_part, EmailMessage)
                    for item, cid in zip(message.media, inline.cids, strict=True):
                        maintype, subtype, _ = _mime(media_type(item))
                        html_part.add_related(
                            attach.read(item, self),
                            maintype=maintype,
                            subtype=subtype,
                            cid=f"<{cid}>",
                            disposition="inline",
                            filename=attach.filename(item),
                        )
            elif inline is not None:
                for item in message.media:
                    maintype, subtype, _ = _mime(media_type(item))
                    mail.add_attachment(
                        attach.read(item, self),
                        maintype=maintype,
                        subtype=subtype,
                        filename=attach.filename(item),
                    )
            for filename, mime_type, data in message.options.get("attachments") or ():
                maintype, subtype, params = _mime(mime_type)
                mail.add_attachment(
                    data, maintype=maintype, subtype=subtype, filename=filename, params=params
                )
            # After the body: building it moves Content-* headers into the first part.
            if message.language:
                mail["Content-Language"] = message.language
        except (ValueError, TypeError) as exc:
            # e.g. a header value with a line break (header injection) or a bad attachment.
            raise PermanentError(f"cannot build the mail: {exc}") from exc
        return mail

    def _transmit(
        self, session: _Session, data: bytes, sender: str, recipient: str, international: bool
    ) -> None:
        for attempt in (1, 2):
            smtp = self._connection(session)
            try:
                self._envelope(session, smtp, sender, recipient, len(data), international)
                break
            except _Dropped:
                self._discard(session)
                if attempt == 2:
                    raise TransientError(
                        "the SMTP server closed the connection twice before taking the message"
                    ) from None
        self._data(session, smtp, data)

    def _data(self, session: _Session, smtp: smtplib.SMTP, data: bytes) -> None:
        """DATA, the body, and the server's answer to its end.

        Until the body's final "." has gone out nothing can have been queued, so a failure is a
        plain retry. After it, only a clear 4xx/5xx reply says the server refused the mail; a
        cut connection, a reply that comes too late or one that is not an SMTP reply leaves it
        open whether the mail was taken (RFC 5321 section 4.1.1.4: the transaction is complete
        when the server answers the end of data, and section 6.1: once it says 250 it must
        deliver). A retry could then mail the reader twice, so the error says `maybe_sent`.
        """
        try:
            code, reply = smtp.docmd("data")
        except smtplib.SMTPServerDisconnected as exc:
            self._discard(session)
            if _timed_out(exc):
                raise self._timeout() from None
            raise TransientError(
                "the SMTP server closed the connection before the message was sent"
            ) from None
        if code != 354:
            self._refused(session, smtp, code, reply)
        # RFC 5321 section 4.5.2: a line starting with "." gets one more; then CRLF "." CRLF.
        # bytes.replace, not a multiline regex: the same result, and a mail with an image is
        # half a megabyte of lines (the regex cost 9 ms a mail, more than the rest of a send).
        body = data.replace(b"\n.", b"\n..")
        if body.startswith(b"."):
            body = b"." + body
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        try:
            smtp.send(body + b".\r\n")
        except smtplib.SMTPServerDisconnected:
            # The end of data never left: the server cannot have taken the message.
            self._discard(session)
            raise TransientError(
                "the SMTP server closed the connection before the message was sent"
            ) from None
        try:
            code, reply = smtp.getreply()
        except smtplib.SMTPServerDisconnected as exc:
            self._discard(session)
            what = "did not answer in time" if _timed_out(exc) else "closed the connection"
            raise self._maybe_sent(
                f"the SMTP server {what} after it received the message"
            ) from None
        except smtplib.SMTPResponseException:  # a reply line too long to be SMTP
            self._discard(session)
            raise self._maybe_sent("the SMTP server's answer to the message was not SMTP") from None
        if 200 <= code < 300:
            return
        if 400 <= code < 600:
            self._refused(session, smtp, code, reply)
        self._discard(session)
        raise self._maybe_sent(
            f"the SMTP server answered the message with {_reply_text(code, reply)!r}, "
            "which is not an SMTP reply"
        )

    def _maybe_sent(self, what: str) -> TransientError:
        return TransientError(
            self.redact(f"{what}: it may have been delivered, so it is not sent again"),
            maybe_sent=True,
        )

    def _envelope(
        self,
        session: _Session,
        smtp: smtplib.SMTP,
        sender: str,
        recipient: str,
        size: int,
        international: bool,
    ) -> None:
        """MAIL FROM and RCPT TO, sent together where the server offers PIPELINING (RFC 2920
        section 3.1: the client may send them without waiting; their replies come in order).
        Nothing is delivered yet, so a dropped session may be redone."""
        options = []
        if international:
            if not smtp.has_extn("smtputf8"):
                raise PermanentError(
                    "an address is not ASCII and the SMTP server does not offer SMTPUTF8"
                )
            options += ["SMTPUTF8", "BODY=8BITMIME"]
        if smtp.has_extn("size"):
            options.append(f"SIZE={size}")  # RFC 1870: the server may refuse early
        try:
            if smtp.has_extn("pipelining"):
                (code, reply), (rcpt_code, rcpt_reply) = _pipelined(
                    smtp, sender, recipient, options, international
                )
            else:
                code, reply = smtp.mail(sender, options)
                rcpt_code, rcpt_reply = (0, b"") if code != 250 else smtp.rcpt(recipient)
            if 421 in (code, rcpt_code):
                raise _Dropped
            if code != 250:
                self._refused(session, smtp, code, reply)
            if rcpt_code not in (250, 251):
                self._refused(session, smtp, rcpt_code, rcpt_reply)
        except smtplib.SMTPServerDisconnected as exc:
            if _timed_out(exc):
                # A slow server, not a closed one: reconnecting would only wait twice as long.
                self._discard(session)
                raise self._timeout() from None
            raise _Dropped from None

    def _refused(self, session: _Session, smtp: smtplib.SMTP, code: int, reply: bytes) -> None:
        """Raise for a reply that refused the message, keeping the session usable (RSET)."""
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self._discard(session)
        raise self._error(smtplib.SMTPResponseException(code, reply))

    # -- the connection --------------------------------------------------------------------------

    def _connection(self, session: _Session) -> smtplib.SMTP:
        if session.smtp is None:
            session.smtp = self._open()
        return session.smtp

    def _open(self) -> smtplib.SMTP:
        host = str(self.value("host"))
        port = self._port()
        timeout = float(self.value("timeout"))
        security = self.options["security"]
        context = self._tls_context() if security != "none" else None
        smtp: smtplib.SMTP
        try:
            if security == "tls":
                smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
            else:
                smtp = smtplib.SMTP(host, port, timeout=timeout)
        except (ConnectionRefusedError, TimeoutError, socket.gaierror) as exc:
            # No connection, so nothing was sent: the publisher pauses the channel for the run.
            reason = exc.strerror or "timed out"
            raise TransientError(
                f"could not talk to the SMTP server {host}: {reason}", unreachable=True
            ) from None
        try:
            smtp.ehlo()
            if security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()  # RFC 3207 section 4.2: forget what was said before TLS
            username = self.value("username")
            if username:
                smtp.login(str(username), self.secret("password"))
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _discard(self, session: _Session) -> None:
        if session.smtp is not None:
            session.smtp.close()
            session.smtp = None

    def close(self) -> None:
        if self._threads is not None:
            self._threads.shutdown()
            self._threads = None
        for session in (self._session, *self._pool):
            if session.smtp is not None:
                try:
                    session.smtp.quit()
                except (smtplib.SMTPException, OSError):
                    pass  # already gone: nothing to release
                finally:
                    self._discard(session)
        self._pool = []

    def cannot_retract(self) -> str:
        return "a mail cannot be taken back once it is sent (send a correction instead)"

    def cannot_amend(self) -> str:
        return "a mail cannot be edited once it is sent (send a correction instead)"

    def verify(self) -> str:
        """Connect, say EHLO, STARTTLS and log in as configured, NOOP, QUIT: no mail is sent."""
        try:
            smtp = self._open()
            try:
                code, reply = smtp.noop()
                if code != 250:
                    raise smtplib.SMTPResponseException(code, reply)
            finally:
                try:
                    smtp.quit()
                except (smtplib.SMTPException, OSError):
                    smtp.close()
        except (smtplib.SMTPException, OSError) as exc:
            raise self._error(exc) from None
        login = f"logged in as {self.value('username')}" if self.value("username") else "no login"
        return (
            f"connected to {self.value('host')}:{self._port()} "
            f"({self.options['security']}), {login}, NOOP answered"
        )

    # -- settings --------------------------------------------------------------------------------

    def _port(self) -> int:
        raw = self.value("port")
        if raw is None:
            return DEFAULT_PORTS[self.options["security"]]
        try:
            return int(raw)
        except ValueError:
            raise self._config(f"setting 'port' must be a number, not {raw!r}") from None

    def _tls_context(self) -> ssl.SSLContext:
        ca_file = self.value("ca_file")
        try:
            return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise self._config(f"setting 'ca_file' {ca_file!r} cannot be read: {exc}") from None

    def _recipient(self, message: Message) -> Address:
        if message.recipient is not None:
            parsed = _parse(message.recipient.email)
            if parsed is None:
                raise PermanentError(
                    f"recipient {message.recipient.email!r} is not an email address"
                )
            return Address(display_name=message.recipient.name, addr_spec=parsed.addr_spec)
        to = self.value("to")
        if not to:
            raise PermanentError("no recipient: give the message recipients or set `to`")
        return self._address_setting("to", str(to))

    def _address_setting(self, key: str, raw: str) -> Address:
        known = self._addresses.get((key, raw))
        if known is not None:  # parsed once: the sender of every mail
            return known
        parsed = _parse(raw)
        if parsed is None:
            source = " (from the environment)" if isinstance(self.options.get(key), EnvRef) else ""
            raise self._config(
                f"setting {key!r}{source} is not an email address: {raw!r} "
                '(expected e.g. "Community <hello@example.org>")'
            )
        self._addresses[(key, raw)] = parsed
        return parsed

    def extra_secrets(self, secrets: Secrets) -> None:
        """The password also as AUTH PLAIN and LOGIN send it (base64): a server may echo it."""
        password = self.secrets()
        with contextlib.suppress(ConfigError):  # a username from an unset ${ENV}
            username = self.value("username")
            if password and username:
                secrets.add_login(str(username), password[0])

    def _timeout(self) -> TransientError:
        return TransientError(f"timed out talking to the SMTP server {self.value('host')}")

    def _config(self, text: str) -> ConfigError:
        return ConfigError(f"channel {self.name!r} (smtp): {text}")

    def _error(self, exc: BaseException) -> SendError:
        """An SMTP or network failure as a transient or permanent error, with no secret in it."""
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return PermanentError(
                self.redact(
                    f"the SMTP server refused the credentials of {self.value('username')!r} "
                    f"({_reply(exc)})"
                )
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            # RFC 5321 section 4.2.1: 4yz transient negative, 5yz permanent negative.
            text = self.redact(f"SMTP server answered {_reply(exc)}")
            if 400 <= exc.smtp_code < 500:
                return TransientError(text)
            return PermanentError(text)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return PermanentError(self.redact(f"the SMTP server does not support it: {exc}"))
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return TransientError("the SMTP server closed the connection")
        if isinstance(exc, smtplib.SMTPException):
            return PermanentError(self.redact(f"SMTP failed: {exc}"))
        if isinstance(exc, ssl.SSLCertVerificationError):
            return PermanentError(
                f"the SMTP server's certificate was not trusted ({exc.verify_message}); "
                "for a private relay set `ca_file` to its certificate authority"
            )
        if isinstance(exc, TimeoutError):
            return self._timeout()
        if isinstance(exc, OSError):
            reason = exc.strerror or type(exc).__name__
            return TransientError(
                f"could not talk to the SMTP server {self.value('host')}: {reason}"
            )
        return PermanentError(f"SMTP failed: {type(exc).__name__}")


# What the direct writer (`_plain_mail`) leaves as it is: header names (RFC 5322 ftext) and
@dataclass(frozen=True)
class _Inline:
    """A newsletter's images as inline MIME parts, encoded once (`SmtpChannel.inline`).

    `parts`: each image's part (headers, blank line, base64 body), ready to follow a boundary
    line; `cids`: their Content-IDs, ``<n>.<digest>@<sender domain>`` (RFC 2392: unique, ASCII
    whatever the file is called); `place` and `plain` fit one reader's HTML and text to them."""

    media: tuple[Media, ...]
    cids: tuple[str, ...]
    parts: tuple[bytes, ...]

    @classmethod
    def of(cls, media: tuple[Media, ...], domain: str, channel: Channel) -> _Inline:
        import hashlib

        cids, parts = [], []
        for number, item in enumerate(media, 1):
            data = attach.read(item, channel)
            cid = f"{number}.{hashlib.sha256(data).hexdigest()[:16]}@{domain or 'commcal.invalid'}"
            name = attach.filename(item)
            # A quoted-string takes `\` as an escape (RFC 2045 5.1, RFC 822 quoted-pair): a
            # name with one, or with a quote, goes percent-encoded like a non-ASCII one.
            if name.isascii() and _SAFE_VALUE.fullmatch(name) and not {'"', "\\"} & set(name):
                disposition = f'inline; filename="{name}"'
            else:  # RFC 2231: a name that is not plain ASCII, percent-encoded UTF-8
                disposition = f"inline; filename*=utf-8''{quote(name, safe='')}"
            head = (
                f"Content-Type: {media_type(item)}\r\n"
                "Content-Transfer-Encoding: base64\r\n"
                f"Content-ID: <{cid}>\r\n"
                f"Content-Disposition: {disposition}\r\n"
                "MIME-Version: 1.0\r\n\r\n"
            )
            encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
            cids.append(cid)
            parts.append(head.encode("ascii") + encoded)
        return cls(media, tuple(cids), tuple(parts))

    def place(self, html: str) -> str:
        """`html` with `cid:<file name>` pointed at each image's Content-ID, and every image it
        does not place added before the end of its body, its alt text as `alt=`."""
        from html import escape

        missing = []
        for item, cid in zip(self.media, self.cids, strict=True):
            named = f"cid:{attach.filename(item)}"
            if named in html:
                html = html.replace(named, f"cid:{cid}")
            else:
                missing.append(
                    f'<p><img src="cid:{cid}" alt="{escape(item.alt, quote=True)}" '
                    'style="max-width:100%;height:auto"></p>'
                )
        if not missing:
            return html
        block = "\n".join(missing)
        end = html.lower().rfind("</body>")
        return html + "\n" + block if end < 0 else html[:end] + block + "\n" + html[end:]

    def plain(self, text: str) -> str:
        """The plain part, naming each image by its alt text (its file name if it has none)."""
        named = [f"[{item.alt or attach.filename(item)}]" for item in self.media]
        return text.rstrip("\n") + "\n\n" + "\n".join(named) + "\n"


# printable ASCII values on one line; anything else goes through the email package.
_HEADER_NAME = re.compile(r"[!-9;-~]+")
_SAFE_VALUE = re.compile(r"[ -~]*")
_NEEDS_QUOTES = re.compile(r'[()<>@,:;.\\"\[\]]')


def _plain_text(text: str) -> str | None:
    """A header's unstructured text: printable ASCII as it is, else RFC 2047 encoded words;
    None (the email package writes it) with white space at either end or a line break."""
    if text != text.strip():
        return None
    if _SAFE_VALUE.fullmatch(text):
        return text
    if "\r" in text or "\n" in text:
        return None  # header injection: `build` refuses it with its own words
    from email.header import Header

    return Header(text, "utf-8", maxlinelen=998).encode(linesep="\r\n")


def _plain_address(address: Address) -> str | None:
    name = address.display_name
    if not name:
        return address.addr_spec
    if name != name.strip():
        return None
    if _SAFE_VALUE.fullmatch(name):
        if _NEEDS_QUOTES.search(name):
            name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{name} <{address.addr_spec}>"
    if "\r" in name or "\n" in name:
        return None
    return email.utils.formataddr((name, address.addr_spec), charset="utf-8")


def _part(text: str) -> tuple[str, str]:
    """A text part's Content-Transfer-Encoding header and its body, CRLF line ends."""
    import base64

    data = text.encode("utf-8")
    lines = data.splitlines()
    if data.isascii() and all(len(line) <= 998 for line in lines):
        return "Content-Transfer-Encoding: 7bit", "\r\n".join(x.decode() for x in lines) + "\r\n"
    body = b"\r\n".join(lines) + b"\r\n"
    encoded = base64.encodebytes(body).decode("ascii").replace("\n", "\r\n")
    return "Content-Transfer-Encoding: base64", encoded


def _boundary(text: str) -> str:
    import random

    while True:
        boundary = f"==============={random.randrange(10**18, 10**19)}=="
        if boundary not in text:
            return boundary


def _pipelined(
    smtp: smtplib.SMTP, sender: str, recipient: str, options: list[str], international: bool
) -> tuple[tuple[int, bytes], tuple[int, bytes]]:
    """MAIL FROM and RCPT TO in one write, then both replies, in order (RFC 2920)."""
    mail = f"mail FROM:{smtplib.quoteaddr(sender)}" + "".join(f" {o}" for o in options)
    rcpt = f"rcpt TO:{smtplib.quoteaddr(recipient)}"
    if any(c in line for line in (mail, rcpt) for c in "\r\n"):
        raise ValueError("an address holds a line break")
    encoding = "utf-8" if international else "ascii"
    smtp.send(f"{mail}\r\n{rcpt}\r\n".encode(encoding))
    return smtp.getreply(), smtp.getreply()


def _timed_out(exc: smtplib.SMTPServerDisconnected) -> bool:
    """smtplib reports a read timeout as a disconnection; the timeout is its context."""
    return isinstance(exc.__context__, TimeoutError)


def message_id(idempotency_key: str, domain: str) -> str:
    """`<key@domain>`, characters a Message-ID may not hold percent-escaped (RFC 5322 3.6.4)."""
    left = quote(idempotency_key, safe=_ATEXT_SAFE)
    if left.startswith(".") or left.endswith(".") or ".." in left:
        left = left.replace(".", "%2E")  # dot-atom: no leading, trailing or doubled dots
    return f"<{left}@{domain or 'commcal.invalid'}>"


def _parse(text: str) -> Address | None:
    name, addr = email.utils.parseaddr(text)
    if "@" not in addr:
        return None
    try:
        address = Address(display_name=name, addr_spec=addr)
    except (ValueError, IndexError, email.errors.HeaderParseError):
        return None
    if not address.username or not address.domain:
        return None
    return address


def _angle(target: str) -> str:
    """RFC 2369 wants each List-Unsubscribe target in angle brackets."""
    return target if "<" in target else f"<{target.strip()}>"


def _mime(mime_type: str) -> tuple[str, str, dict[str, str]]:
    """`text/calendar; method=REQUEST` -> ("text", "calendar", {"method": "REQUEST"})."""
    kind, *rest = (part.strip() for part in mime_type.split(";"))
    maintype, _, subtype = kind.partition("/")
    if not maintype or not subtype:
        raise ValueError(f"attachment type {mime_type!r} is not like text/calendar")
    params = {}
    for item in rest:
        key, _, value = item.partition("=")
        params[key.strip()] = value.strip().strip('"')
    return maintype.lower(), subtype.lower(), params


def _attachment_problems(attachments: Any) -> list[str]:
    if not isinstance(attachments, list | tuple):
        return ["attachments must be a list of (filename, mime type, bytes)"]
    problems = []
    for number, item in enumerate(attachments, 1):
        if not (
            isinstance(item, list | tuple)
            and len(item) == 3
            and isinstance(item[0], str)
            and isinstance(item[1], str)
            and isinstance(item[2], bytes)
        ):
            problems.append(f"attachment {number} must be (filename, mime type, bytes)")
            continue
        try:
            _mime(item[1])
        except ValueError as exc:
            problems.append(f"attachment {number}: {exc}")
    return problems


def _reply(exc: smtplib.SMTPResponseException) -> str:
    return _reply_text(exc.smtp_code, exc.smtp_error)


def _reply_text(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(str(text).split())}"
