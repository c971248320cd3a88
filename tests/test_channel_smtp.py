"""SMTP newsletters against a real aiosmtpd server on loopback."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from commcal.channels.base import (
    EnvRef,
    Media,
    Message,
    PermanentError,
    Receipt,
    Recipient,
    TransientError,
)
from commcal.channels.smtp import SmtpChannel, message_id
from commcal.errors import ConfigError
from tests.media_helpers import media_problems, png, sized

# The plaintext-AUTH server below runs on loopback only; aiosmtpd warns about it per connection.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

PASSWORD = "s3cret-smtp-password"
MARIA = Recipient(email="maria@example.org", name="Μαρία Παπαδοπούλου", locale="el")
NEWSLETTER = Message(
    channel="news",
    channel_type="smtp",
    text="Γεια σου Μαρία,\nτο meetup είναι την Πέμπτη.\n",
    subject="Νέα της κοινότητας: Δεκέμβριος",
    html="<p>Γεια σου Μαρία,</p><p>το meetup είναι την <b>Πέμπτη</b>.</p>",
    language="el",
    recipient=MARIA,
    headers={
        "List-Unsubscribe": "<https://example.org/u/abc>, <mailto:leave@example.org?subject=abc>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    },
)


@dataclass
class Recorder:
    """An aiosmtpd handler that records every accepted mail and can misbehave on request."""

    received: list[tuple[Any, str, list[str], bytes]] = field(default_factory=list)
    rcpt_reply: str | None = None  # e.g. "550 5.1.1 no such user"
    rcpt_delay: float = 0.0  # seconds to stall before answering RCPT
    drop_mail: int = 0  # abort the connection on this many upcoming MAIL commands
    # How the next DATA commands end, one entry each: "cut" (take the mail, then cut the
    # connection), "late" (take it, answer after `late_delay`), "cut-after-rcpt" (cut before
    # DATA), "close-after" (answer 250, then close the kept-alive connection), or a reply line.
    data_faults: list[str] = field(default_factory=list)
    late_delay: float = 1.5

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.drop_mail:
            self.drop_mail -= 1
            server.transport.abort()
            return "421 4.4.2 gone"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.rcpt_delay:
            await asyncio.sleep(self.rcpt_delay)
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        if self.data_faults and self.data_faults[0] == "cut-after-rcpt":
            self.data_faults.pop(0)
            asyncio.get_running_loop().call_soon(server.transport.abort)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        fault = self.data_faults.pop(0) if self.data_faults else ""
        if fault[:1].isdigit() and not fault.startswith("2"):
            return fault  # refused: nothing taken
        self.received.append(
            (session.peer, envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        if fault == "cut":
            server.transport.abort()
        elif fault == "late":
            await asyncio.sleep(self.late_delay)
        elif fault == "close-after":
            asyncio.get_running_loop().call_later(0.05, server.transport.abort)
        elif fault:
            return fault
        return "250 2.0.0 queued"

    @property
    def connections(self) -> set[Any]:
        return {peer for peer, *_ in self.received}

    def mail(self, index: int = -1) -> EmailMessage:
        parsed = email.message_from_bytes(self.received[index][3], policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def server() -> Iterator[tuple[Controller, Recorder]]:
    handler = Recorder()
    controller = Controller(
        handler, hostname="127.0.0.1", port=free_port(), server_hostname="mail.test"
    )
    controller.start()
    yield controller, handler
    controller.stop()


def channel_for(controller: Controller, **settings: Any) -> SmtpChannel:
    channel = SmtpChannel(
        "news",
        {
            "host": "127.0.0.1",
            "port": controller.port,
            "security": "none",
            "from": "Κοινότητα Αθήνας <hello@community.example.org>",
            "timeout": 5,
            **settings,
        },
        env={"SMTP_PASSWORD": PASSWORD},
    )
    channel.clock = lambda: datetime(2026, 12, 10, 16, 0, tzinfo=UTC)
    return channel


def test_newsletter_is_multipart_with_encoded_greek_headers(
    server: tuple[Controller, Recorder],
) -> None:
    controller, handler = server
    channel = channel_for(controller, reply_to="Team <team@community.example.org>")
    receipt = channel.send(NEWSLETTER, "dlv-0001")
    channel.close()
    assert receipt == Receipt(remote_id="<dlv-0001@community.example.org>")

    _, mail_from, rcpt_tos, raw = handler.received[0]
    assert (mail_from, rcpt_tos) == ("hello@community.example.org", ["maria@example.org"])
    assert raw.isascii()  # encoded words and 7-bit bodies: any relay takes it
    mail = handler.mail()
    assert mail["Subject"] == "Νέα της κοινότητας: Δεκέμβριος"
    assert mail["To"].addresses[0].display_name == "Μαρία Παπαδοπούλου"
    assert mail["To"].addresses[0].addr_spec == "maria@example.org"
    assert mail["From"].addresses[0].display_name == "Κοινότητα Αθήνας"
    assert mail["Reply-To"] == "Team <team@community.example.org>"
    assert mail["Message-ID"] == "<dlv-0001@community.example.org>"
    assert mail["Date"] == "Thu, 10 Dec 2026 16:00:00 +0000"
    assert mail["Content-Language"] == "el"
    # Longer than 78 characters, so folded after the colon (RFC 5322 2.2.3); strip the fold.
    assert mail["List-Unsubscribe"].strip() == (
        "<https://example.org/u/abc>, <mailto:leave@example.org?subject=abc>"
    )
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert mail.get_content_type() == "multipart/alternative"
    plain, html = mail.iter_parts()
    assert plain.get_content_type() == "text/plain"
    # Text travels in canonical form, CRLF line ends (RFC 2046 4.1.1).
    assert plain.get_content() == NEWSLETTER.text.replace("\n", "\r\n")
    assert html.get_content_type() == "text/html"
    assert "<b>Πέμπτη</b>" in html.get_content()


def test_plain_mail_with_default_recipient_and_list_unsubscribe_setting(
    server: tuple[Controller, Recorder],
) -> None:
    controller, handler = server
    channel = channel_for(
        controller,
        to="Members <members@lists.example.org>",
        list_unsubscribe="mailto:leave@lists.example.org",
    )
    channel.send(Message("news", "smtp", "Plain text only.", subject="Hello"), "dlv-2")
    channel.close()
    mail = handler.mail()
    assert handler.received[0][2] == ["members@lists.example.org"]
    assert mail.get_content_type() == "text/plain"
    assert mail["List-Unsubscribe"] == "<mailto:leave@lists.example.org>"
    assert "List-Unsubscribe-Post" not in mail  # one-click only when the message offers it


def test_ics_attachment_makes_multipart_mixed(server: tuple[Controller, Recorder]) -> None:
    controller, handler = server
    ics = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"
    invitation = Message(
        "news",
        "smtp",
        "See you there",
        subject="Invitation",
        html="<p>See you there</p>",
        recipient=MARIA,
        options={"attachments": [("meetup.ics", "text/calendar; method=REQUEST", ics)]},
    )
    channel = channel_for(controller)
    channel.send(invitation, "dlv-3")
    channel.close()
    mail = handler.mail()
    assert mail.get_content_type() == "multipart/mixed"
    body, attachment = mail.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert attachment.get_content_type() == "text/calendar"
    assert attachment.get_param("method") == "REQUEST"
    assert attachment.get_filename() == "meetup.ics"
    assert attachment.get_payload(decode=True) == ics


def test_many_messages_share_one_connection(server: tuple[Controller, Recorder]) -> None:
    controller, handler = server
    channel = channel_for(controller)
    for number in range(5):
        reader = Recipient(email=f"reader{number}@example.org", name=f"Reader {number}")
        channel.send(Message("news", "smtp", "Hi", subject="Hi", recipient=reader), f"dlv-{number}")
    channel.close()
    assert len(handler.received) == 5
    assert len(handler.connections) == 1


def test_a_dropped_connection_is_reopened_once(server: tuple[Controller, Recorder]) -> None:
    controller, handler = server
    channel = channel_for(controller)
    channel.send(NEWSLETTER, "dlv-a")
    handler.drop_mail = 1  # the server goes away between two sends (idle timeout, restart)
    channel.send(NEWSLETTER, "dlv-b")
    channel.close()
    assert [handler.mail(i)["Message-ID"] for i in range(2)] == [
        "<dlv-a@community.example.org>",
        "<dlv-b@community.example.org>",
    ]
    assert len(handler.connections) == 2


def test_a_server_that_keeps_dropping_is_transient(server: tuple[Controller, Recorder]) -> None:
    controller, handler = server
    channel = channel_for(controller)
    handler.drop_mail = 2
    with pytest.raises(TransientError, match="closed the connection twice") as caught:
        channel.send(NEWSLETTER, "dlv-c")
    assert handler.received == []
    assert not caught.value.maybe_sent  # nothing had been handed over: a plain retry


@pytest.mark.parametrize("fault", ["cut", "late"])
def test_no_clear_answer_after_the_body_may_have_been_delivered(
    server: tuple[Controller, Recorder], fault: str
) -> None:
    """The relay took the mail, then cut the connection or answered after our timeout: a
    retry would mail Maria twice, so the error says it may have been delivered."""
    controller, handler = server
    handler.data_faults = [fault]
    handler.late_delay = 1.5
    channel = channel_for(controller, timeout=0.5)
    with pytest.raises(TransientError, match="may have been delivered") as caught:
        channel.send(NEWSLETTER, "dlv-amb")
    assert caught.value.maybe_sent
    assert len(handler.received) == 1  # it was taken
    what = "closed the connection" if fault == "cut" else "did not answer in time"
    assert what in str(caught.value)
    # The session is gone; the next reader goes over a new connection, without a fuss.
    channel.send(NEWSLETTER, "dlv-next")
    channel.close()
    assert len(handler.received) == 2
    assert len(handler.connections) == 2


@pytest.mark.parametrize(
    ("reply", "error"),
    [("451 4.3.0 queue full", TransientError), ("554 5.6.0 spam", PermanentError)],
)
def test_a_clear_refusal_of_the_body_is_not_ambiguous(
    server: tuple[Controller, Recorder], reply: str, error: type[Exception]
) -> None:
    controller, handler = server
    handler.data_faults = [reply]
    channel = channel_for(controller)
    with pytest.raises(error, match=re.escape(reply)) as caught:
        channel.send(NEWSLETTER, "dlv-ref")
    assert not getattr(caught.value, "maybe_sent", False)
    assert handler.received == []
    channel.send(NEWSLETTER, "dlv-after")  # the session was reset and is still usable
    channel.close()
    assert len(handler.connections) == 1


def test_an_answer_that_is_not_smtp_after_the_body_is_ambiguous(
    server: tuple[Controller, Recorder],
) -> None:
    controller, handler = server
    handler.data_faults = ["OK thanks"]
    channel = channel_for(controller)
    with pytest.raises(TransientError, match="not an SMTP reply") as caught:
        channel.send(NEWSLETTER, "dlv-garbage")
    assert caught.value.maybe_sent


def test_a_cut_before_data_is_a_plain_retry(server: tuple[Controller, Recorder]) -> None:
    controller, handler = server
    handler.data_faults = ["cut-after-rcpt"]
    channel = channel_for(controller)
    with pytest.raises(TransientError, match="before the message was sent") as caught:
        channel.send(NEWSLETTER, "dlv-early")
    assert not caught.value.maybe_sent
    assert handler.received == []


def test_a_kept_alive_connection_found_dead_at_the_next_mail_is_not_ambiguous(
    server: tuple[Controller, Recorder],
) -> None:
    """The relay answered 250 and then closed the idle connection: the next mail finds it dead
    at MAIL FROM, before anything of it went out, and simply reconnects."""
    controller, handler = server
    handler.data_faults = ["close-after"]
    channel = channel_for(controller)
    channel.send(NEWSLETTER, "dlv-first")
    time.sleep(0.2)
    channel.send(NEWSLETTER, "dlv-second")
    channel.close()
    assert [handler.mail(i)["Message-ID"] for i in range(2)] == [
        "<dlv-first@community.example.org>",
        "<dlv-second@community.example.org>",
    ]
    assert len(handler.connections) == 2


def test_550_is_permanent_with_the_server_reply(server: tuple[Controller, Recorder]) -> None:
    controller, handler = server
    channel = channel_for(controller)
    handler.rcpt_reply = "550 5.1.1 no such user"
    with pytest.raises(PermanentError, match=re.escape("550 5.1.1 no such user")):
        channel.send(NEWSLETTER, "dlv-d")
    # The session was reset, not lost: the next reader goes over the same connection.
    handler.rcpt_reply = None
    channel.send(NEWSLETTER, "dlv-e")
    channel.send(NEWSLETTER, "dlv-f")
    channel.close()
    assert len(handler.connections) == 1


def test_451_is_transient(server: tuple[Controller, Recorder]) -> None:
    controller, handler = server
    handler.rcpt_reply = "451 4.3.0 try again later"
    with pytest.raises(TransientError, match=re.escape("451 4.3.0 try again later")):
        channel_for(controller).send(NEWSLETTER, "dlv-g")


def test_a_stalled_server_times_out_once_as_transient(
    server: tuple[Controller, Recorder],
) -> None:
    controller, handler = server
    handler.rcpt_delay = 1.5
    channel = channel_for(controller, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(TransientError, match="timed out talking to the SMTP server"):
        channel.send(NEWSLETTER, "dlv-t")
    assert time.monotonic() - started < 1.2  # no second attempt on a slow server


def test_connection_refused_is_transient() -> None:
    channel = SmtpChannel(
        "news",
        {"host": "127.0.0.1", "port": free_port(), "security": "none", "from": "a@example.org"},
    )
    with pytest.raises(TransientError, match="could not talk to the SMTP server 127"):
        channel.send(NEWSLETTER, "dlv-h")


def authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"news", PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def auth_server() -> Iterator[tuple[Controller, Recorder]]:
    handler = Recorder()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        server_hostname="mail.test",
        authenticator=authenticator,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    yield controller, handler
    controller.stop()


def test_login_then_send(auth_server: tuple[Controller, Recorder]) -> None:
    controller, handler = auth_server
    channel = channel_for(controller, username="news", password=EnvRef("${SMTP_PASSWORD}"))
    channel.send(NEWSLETTER, "dlv-i")
    channel.close()
    assert len(handler.received) == 1


def test_refused_credentials_are_permanent_and_never_shown(
    auth_server: tuple[Controller, Recorder],
) -> None:
    controller, _ = auth_server
    channel = SmtpChannel(
        "news",
        {
            "host": "127.0.0.1",
            "port": controller.port,
            "security": "none",
            "from": "hello@community.example.org",
            "username": "news",
            "password": EnvRef("${SMTP_PASSWORD}"),
        },
        env={"SMTP_PASSWORD": "wrong-password-value"},
    )
    with pytest.raises(PermanentError, match="refused the credentials of 'news'") as caught:
        channel.send(NEWSLETTER, "dlv-j")
    assert "535" in str(caught.value)
    for text in (str(caught.value), repr(caught.value)):
        assert "wrong-password-value" not in text
    with pytest.raises(PermanentError, match="refused the credentials"):
        channel.verify()


def test_verify_logs_in_without_sending(auth_server: tuple[Controller, Recorder]) -> None:
    controller, handler = auth_server
    channel = channel_for(controller, username="news", password=EnvRef("${SMTP_PASSWORD}"))
    assert channel.verify() == (
        f"connected to 127.0.0.1:{controller.port} (none), logged in as news, NOOP answered"
    )
    assert handler.received == []


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[tuple[Controller, Recorder]]:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    handler = Recorder()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        server_hostname="mail.test",
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
    )
    controller.start()
    yield controller, handler
    controller.stop()


def test_starttls_with_a_private_ca_then_login(
    tls_server: tuple[Controller, Recorder], certificate: tuple[Path, Path]
) -> None:
    controller, handler = tls_server
    channel = channel_for(
        controller,
        security="starttls",
        ca_file=str(certificate[0]),
        username="news",
        password=EnvRef("${SMTP_PASSWORD}"),
    )
    channel.send(NEWSLETTER, "dlv-k")
    channel.send(NEWSLETTER, "dlv-l")
    channel.close()
    assert len(handler.received) == 2
    assert len(handler.connections) == 1


@pytest.fixture
def implicit_tls_server(certificate: tuple[Path, Path]) -> Iterator[tuple[Controller, Recorder]]:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    handler = Recorder()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        server_hostname="mail.test",
        ssl_context=context,
    )
    controller.start()
    yield controller, handler
    controller.stop()


def test_implicit_tls(
    implicit_tls_server: tuple[Controller, Recorder], certificate: tuple[Path, Path]
) -> None:
    controller, handler = implicit_tls_server
    channel = channel_for(controller, security="tls", ca_file=str(certificate[0]))
    channel.send(NEWSLETTER, "dlv-tls")
    channel.close()
    assert len(handler.received) == 1


def test_untrusted_certificate_is_permanent_and_explained(
    tls_server: tuple[Controller, Recorder],
) -> None:
    controller, _ = tls_server
    channel = channel_for(
        controller, security="starttls", username="news", password=EnvRef("${SMTP_PASSWORD}")
    )
    with pytest.raises(PermanentError, match=r"certificate was not trusted.*ca_file"):
        channel.send(NEWSLETTER, "dlv-m")


def test_offline_checks() -> None:
    channel = SmtpChannel("news", {"host": "smtp.example.org", "from": "a@example.org"})
    assert channel.check(NEWSLETTER) == []
    no_subject = Message("news", "smtp", "text", recipient=MARIA)
    assert channel.check(no_subject) == ["a subject is required (set `subject` in the template)"]
    nobody = Message("news", "smtp", "text", subject="s")
    assert channel.check(nobody) == [
        "no recipient: give the message recipients or set `to` on the channel"
    ]
    bad = Message(
        "news",
        "smtp",
        "text",
        subject="s",
        recipient=Recipient(email="not-an-address"),
        headers={"Subject": "sneaky"},
        options={"attachments": [("a.ics", "calendar", b"x")]},
    )
    assert channel.check(bad) == [
        "recipient 'not-an-address' is not an email address",
        "header 'Subject' is written by the smtp channel itself",
        "attachment 1: attachment type 'calendar' is not like text/calendar",
    ]


def test_header_injection_is_refused(server: tuple[Controller, Recorder]) -> None:
    controller, handler = server
    evil = Message(
        "news", "smtp", "t", subject="s", recipient=MARIA, headers={"X-Tag": "a\r\nBcc: x@y.z"}
    )
    with pytest.raises(PermanentError, match="cannot build the mail"):
        channel_for(controller).send(evil, "dlv-n")
    assert handler.received == []


def test_message_id_is_deterministic_and_valid() -> None:
    assert message_id("dlv-1", "example.org") == "<dlv-1@example.org>"
    key = "cal/item:2026-12-10T16:00Z/smtp/maria@example.org"
    assert message_id(key, "example.org") == message_id(key, "example.org")
    assert message_id(key, "example.org") == (
        "<cal/item%3A2026-12-10T16%3A00Z/smtp/maria%40example.org@example.org>"
    )


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"'host' is required.*'from' is required"):
        SmtpChannel("news", {})
    with pytest.raises(ConfigError, match="'password' is a secret") as caught:
        SmtpChannel(
            "news",
            {"host": "h", "from": "a@example.org", "username": "u", "password": PASSWORD},
        )
    assert PASSWORD not in str(caught.value)
    with pytest.raises(ConfigError, match="'security' must be starttls, tls or none"):
        SmtpChannel("news", {"host": "h", "from": "a@example.org", "security": "ssl"})
    with pytest.raises(ConfigError, match="'from' is not an email address"):
        SmtpChannel("news", {"host": "h", "from": "Community"})
    with pytest.raises(ConfigError, match="'username' needs 'password'"):
        SmtpChannel("news", {"host": "h", "from": "a@example.org", "username": "u"})
    channel = SmtpChannel(
        "news",
        {"host": EnvRef("${SMTP_HOST}"), "from": "a@example.org", "to": "b@example.org"},
        env={},
    )
    with pytest.raises(ConfigError, match="SMTP_HOST is not set"):
        channel.send(Message("news", "smtp", "t", subject="s"), "dlv-o")


# -- images inline in the HTML (multipart/related, cid:) ------------------------------------------

GREEK_HTML = (
    "<html><body><h1>Νέα της κοινότητας</h1>"
    '<p><img src="cid:αφίσα.png" alt="Αφίσα της βραδιάς: Πέμπτη 10 Δεκεμβρίου, 18:00"></p>'
    "<p>Σας περιμένουμε!</p></body></html>"
)


def greek_newsletter(tmp_path: Path, recipient: Recipient = MARIA) -> Message:
    poster = png(tmp_path / "αφίσα.png", shade=30)
    plan = png(tmp_path / "map.png", shade=200)
    return Message(
        channel="news",
        channel_type="smtp",
        text="Γεια σου Μαρία,\nη βραδιά είναι την Πέμπτη.\n",
        subject="Νέα της κοινότητας: Δεκέμβριος",
        html=GREEK_HTML,
        language="el",
        recipient=recipient,
        media=(
            Media(str(poster), alt="Αφίσα της βραδιάς: Πέμπτη 10 Δεκεμβρίου, 18:00"),
            Media(str(plan), alt="Χάρτης: η αίθουσα είναι στον πρώτο όροφο"),
        ),
    )


def inline_parts(mail: EmailMessage) -> dict[str, EmailMessage]:
    """The parts of `mail` that have a Content-ID, by that id (without the angle brackets)."""
    found = {}
    for part in mail.walk():
        cid = part.get("Content-ID")
        if cid:
            assert isinstance(part, EmailMessage)
            found[str(cid).strip("<>")] = part
    return found


def assert_images_inline(mail: EmailMessage, message: Message) -> None:
    assert mail.get_content_type() == "multipart/alternative"
    plain, related = list(mail.iter_parts())
    assert related.get_content_type() == "multipart/related"
    html_part = next(related.iter_parts())
    assert html_part.get_content_type() == "text/html"
    html = html_part.get_content()
    referenced = re.findall(r'src="cid:([^"]+)"', html)
    parts = inline_parts(mail)
    assert sorted(referenced) == sorted(parts), "every cid: has its part, every part a cid:"
    for item, cid in zip(message.media, referenced, strict=True):
        part = parts[cid]
        assert part.get_content_disposition() == "inline"
        assert part.get_filename() == Path(item.path).name
        assert part.get_content_type() == "image/png"
        assert part.get_content() == Path(item.path).read_bytes()
        assert f'src="cid:{cid}" alt="{item.alt}"' in html
    text = plain.get_content()
    assert text.startswith("Γεια σου Μαρία,")
    for item in message.media:
        assert f"[{item.alt}]" in text


def test_a_greek_newsletter_carries_its_images_inline_with_alt_texts(
    server: tuple[Controller, Recorder], tmp_path: Path
) -> None:
    controller, recorder = server
    channel = channel_for(controller)
    message = greek_newsletter(tmp_path)
    assert channel.check(message) == []
    channel.send(message, "news/dec/maria")
    channel.close()
    mail = recorder.mail()
    assert str(mail["Subject"]) == "Νέα της κοινότητας: Δεκέμβριος"
    assert_images_inline(mail, message)
    html = next(mail.get_body(("related",)).iter_parts()).get_content()  # type: ignore[union-attr]
    # The poster stays where the HTML placed it; the map it did not place comes at the end.
    assert html.index("Νέα της κοινότητας") < html.index("αίθουσα") > html.index("περιμένουμε")
    assert html.rstrip().endswith("</body></html>")


def test_the_email_package_path_writes_the_same_inline_images(
    server: tuple[Controller, Recorder], tmp_path: Path
) -> None:
    controller, recorder = server
    channel = channel_for(controller)
    # A header that is not ASCII takes the email package's path, not the direct writer.
    message = replace(greek_newsletter(tmp_path), headers={"X-Campaign": "Δεκέμβριος"})
    sender = channel._address_setting("from", str(channel.value("from")))
    assert channel._plain_mail(message, "k", sender, channel._recipient(message)) is None
    channel.send(message, "k")
    channel.close()
    assert_images_inline(recorder.mail(), message)


def test_a_batch_encodes_its_images_once_for_every_reader(
    server: tuple[Controller, Recorder], tmp_path: Path
) -> None:
    controller, recorder = server
    channel = channel_for(controller, connections=2)
    base = greek_newsletter(tmp_path)
    readers = [
        (replace(base, recipient=Recipient(f"m{n}@example.org", f"Μέλος {n}")), f"k{n}")
        for n in range(12)
    ]
    results = channel.send_many(readers, lambda: False)
    channel.close()
    assert all(isinstance(r, Receipt) for r in results), results
    mails = recorder.received
    assert len(mails) == 12
    assert len(channel._inline) == 1, "one encoding of the images for the whole batch"
    cids = {tuple(sorted(inline_parts(recorder.mail(n)))) for n in range(12)}
    assert len(cids) == 1
    for n in range(12):
        assert_images_inline(recorder.mail(n), base)


def test_image_limits_are_checked_offline(tmp_path: Path) -> None:
    channel = SmtpChannel("news", {"host": "h", "from": "a@example.org", "to": "b@example.org"})
    big = Media(str(sized(tmp_path / "big.png", 8 * 1000 * 1000)), alt="Αφίσα")
    assert media_problems(channel, big) == [
        (
            None,
            "the images of this mail are 10.7 MB as sent, over this channel's limit of 10 MB: "
            "make them smaller, send fewer, or raise max_message_mb if your mail provider takes "
            "larger mail",
        )
    ]
    roomy = SmtpChannel(
        "news", {"host": "h", "from": "a@example.org", "to": "b@example.org", "max_message_mb": 25}
    )
    assert media_problems(roomy, big) == []
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"\0" * 10)
    assert media_problems(channel, Media(str(clip))) == [
        (0, "a mail carries images, not videos or files: link to it instead")
    ]


def test_an_image_gone_before_the_send_sends_nothing(
    server: tuple[Controller, Recorder], tmp_path: Path
) -> None:
    controller, recorder = server
    channel = channel_for(controller)
    message = greek_newsletter(tmp_path)
    Path(message.media[1].path).unlink()
    with pytest.raises(PermanentError, match=r"cannot read media file .*map\.png"):
        channel.send(message, "k")
    channel.close()
    assert recorder.received == []


def test_the_direct_writer_and_the_email_package_agree_on_inline_images(tmp_path: Path) -> None:
    channel = SmtpChannel("news", {"host": "h", "from": "Community <hello@example.org>"})
    channel.clock = lambda: datetime(2026, 12, 1, 9, tzinfo=UTC)
    message = greek_newsletter(tmp_path)
    sender = channel._address_setting("from", "Community <hello@example.org>")
    direct = channel._plain_mail(message, "key", sender, channel._recipient(message))
    assert direct is not None and direct.isascii()
    ours = email.message_from_bytes(direct, policy=email.policy.default)
    theirs = channel.build(message, "key")

    def shape(mail: Any) -> list[tuple[str, Any, Any, Any]]:
        return [
            (p.get_content_type(), p.get("Content-ID"), p.get_filename(), p.get_content())
            for p in mail.walk()
            if not p.is_multipart()
        ]

    assert shape(ours) == shape(theirs)
    assert [p.get_content_type() for p in ours.walk()] == [
        p.get_content_type() for p in theirs.walk()
    ]


def test_a_mail_with_images_cut_off_after_its_data_may_have_been_delivered(
    server: tuple[Controller, Recorder], tmp_path: Path
) -> None:
    controller, recorder = server
    recorder.data_faults = ["cut"]
    channel = channel_for(controller)
    with pytest.raises(TransientError) as caught:
        channel.send(greek_newsletter(tmp_path), "k")
    channel.close()
    assert caught.value.maybe_sent, "the images went out: the reader must not get it twice"
    assert PASSWORD not in str(caught.value)


def test_a_mail_without_html_carries_its_images_as_attachments(
    server: tuple[Controller, Recorder], tmp_path: Path
) -> None:
    controller, recorder = server
    channel = channel_for(controller)
    message = replace(greek_newsletter(tmp_path), html=None)
    channel.send(message, "k")
    channel.close()
    mail = recorder.mail()
    assert mail.get_content_type() == "multipart/mixed"
    attached = list(mail.iter_attachments())
    assert [a.get_filename() for a in attached] == ["αφίσα.png", "map.png"]
    assert [a.get_content() for a in attached] == [Path(m.path).read_bytes() for m in message.media]
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert all(f"[{m.alt}]" in text for m in message.media)


def test_lines_that_start_with_a_dot_arrive_whole(server: tuple[Controller, Recorder]) -> None:
    """RFC 5321 4.5.2: a line starting with "." is sent with one more, which the server takes
    off again; a line of a single "." must not end the mail early."""
    controller, recorder = server
    channel = channel_for(controller)
    text = "Programme:\n.\n..two dots\n.net and .org\nend\n"  # ASCII: sent as 7bit lines
    channel.send(replace(NEWSLETTER, text=text, html=None), "k")
    channel.close()
    raw = recorder.received[-1][3]
    assert b"\r\n.\r\n..two dots\r\n.net and .org\r\n" in raw, "sent as written"
    received = recorder.mail().get_content()
    assert received.replace("\r\n", "\n") == text


@pytest.mark.parametrize(
    "name", ["back\\slash.png", 'say "hi".png', "a;b=c (1).png", "a\r\nX-Evil: 1.png", "ναι.png"]
)
def test_a_hostile_image_file_name_reaches_the_reader_as_written_and_injects_no_header(
    tmp_path: Path, name: str
) -> None:
    channel = SmtpChannel("news", {"host": "h", "from": "Community <hello@example.org>"})
    channel.clock = lambda: datetime(2026, 12, 1, 9, tzinfo=UTC)
    image = png(tmp_path / name, shade=90)
    message = replace(greek_newsletter(tmp_path), media=(Media(str(image), alt="x"),))
    sender = channel._address_setting("from", "Community <hello@example.org>")
    direct = channel._plain_mail(message, "key", sender, channel._recipient(message))
    assert direct is not None
    mail = email.message_from_bytes(direct, policy=email.policy.default)
    assert "X-Evil" not in mail and all("X-Evil" not in part for part in mail.walk())
    (part,) = inline_parts(mail).values()
    assert part.get_filename() == name
