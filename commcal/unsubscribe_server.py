"""The small web page behind a one-click unsubscribe link (RFC 8058), on a waitress server.

The web app answers `GET /u/<token>` with a confirmation page and changes nothing, because mail
scanners and link previews follow links; only `POST /u/<token>` (the mail client's one-click POST,
or the page's button) unsubscribes. The app takes only unsubscribe tokens (`commcal.tokens`) and
answers any other genuine token (a survey link's) with 403.
"""

from __future__ import annotations

import errno
import html
import logging
import re
import socket
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from commcal.tokens import CLICK, SURVEY, UNSUBSCRIBE, click_target, open_token, token_purpose

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

# Longest POST body read; the one-click body is 26 bytes (`List-Unsubscribe=One-Click`).
_MAX_BODY = 64 * 1024
_PATH = re.compile(r"/u/([^/]+)")
# Opt-in (members.track_clicks, members.survey_responses): a tracked link, a survey answer.
_CLICK_PATH = re.compile(r"/c/([^/]+)")
_SURVEY_PATH = re.compile(r"/s/([^/]+)")


# Page texts. English is the reference; Greek and Swahili for readers of those newsletters.
_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "survey_title": "Your answer",
        "survey_body": "Press the button to send your answer.",
        "survey_free": "Write your answer:",
        "survey_button": "Send",
        "survey_done_title": "Thank you",
        "survey_done_body": "Your answer is recorded.",
        "link_bad_body": (
            "The link is incomplete or has been changed. Please use the link in the most "
            "recent email."
        ),
        "confirm_title": "Unsubscribe",
        "confirm_body": "Press the button to stop receiving these emails.",
        "confirm_body_brand": "Press the button to stop receiving emails from {brand}.",
        "button": "Unsubscribe",
        "done_title": "You are unsubscribed",
        "done_body": "You will not receive these emails any more.",
        "bad_title": "This link does not work",
        "bad_body": (
            "The unsubscribe link is incomplete or has been changed. Please use the link "
            "in the most recent email, or reply to that email and ask to be removed."
        ),
        "error_title": "Something went wrong",
        "error_body": "We could not unsubscribe you just now. Please try again in a few minutes.",
        "other_title": "This is not an unsubscribe link",
        "other_body": (
            "This link was made for something else, so it cannot unsubscribe anyone. Use the "
            "unsubscribe link at the end of the email."
        ),
    },
    "el": {
        "survey_title": "Η απάντησή σας",
        "survey_body": "Πατήστε το κουμπί για να στείλετε την απάντησή σας.",
        "survey_free": "Γράψτε την απάντησή σας:",
        "survey_button": "Αποστολή",
        "survey_done_title": "Ευχαριστούμε",
        "survey_done_body": "Η απάντησή σας καταγράφηκε.",
        "link_bad_body": (
            "Ο σύνδεσμος είναι ελλιπής ή έχει αλλοιωθεί. Χρησιμοποιήστε τον σύνδεσμο από το "
            "πιο πρόσφατο μήνυμα."
        ),
        "confirm_title": "Διαγραφή",
        "confirm_body": "Πατήστε το κουμπί για να μη λαμβάνετε πλέον αυτά τα μηνύματα.",
        "confirm_body_brand": "Πατήστε το κουμπί για να μη λαμβάνετε πλέον μηνύματα από {brand}.",
        "button": "Διαγραφή",
        "done_title": "Η διαγραφή σας ολοκληρώθηκε",
        "done_body": "Δεν θα λαμβάνετε πλέον αυτά τα μηνύματα.",
        "bad_title": "Αυτός ο σύνδεσμος δεν λειτουργεί",
        "bad_body": (
            "Ο σύνδεσμος διαγραφής είναι ελλιπής ή έχει αλλοιωθεί. Χρησιμοποιήστε τον σύνδεσμο "
            "από το πιο πρόσφατο μήνυμα ή απαντήστε σε αυτό ζητώντας τη διαγραφή σας."
        ),
        "error_title": "Κάτι πήγε στραβά",
        "error_body": (
            "Δεν ήταν δυνατή η διαγραφή σας αυτή τη στιγμή. Δοκιμάστε ξανά σε λίγα λεπτά."
        ),
        "other_title": "Αυτός δεν είναι σύνδεσμος διαγραφής",
        "other_body": (
            "Αυτός ο σύνδεσμος φτιάχτηκε για κάτι άλλο και δεν μπορεί να διαγράψει κανέναν. "
            "Χρησιμοποιήστε τον σύνδεσμο διαγραφής στο τέλος του μηνύματος."
        ),
    },
    "sw": {
        "survey_title": "Jibu lako",
        "survey_body": "Bonyeza kitufe ili kutuma jibu lako.",
        "survey_free": "Andika jibu lako:",
        "survey_button": "Tuma",
        "survey_done_title": "Asante",
        "survey_done_body": "Jibu lako limehifadhiwa.",
        "link_bad_body": (
            "Kiungo hiki hakijakamilika au kimebadilishwa. Tafadhali tumia kiungo kilicho "
            "kwenye barua pepe ya hivi karibuni."
        ),
        "confirm_title": "Jiondoe",
        "confirm_body": "Bonyeza kitufe ili usipokee tena barua pepe hizi.",
        "confirm_body_brand": "Bonyeza kitufe ili usipokee tena barua pepe kutoka {brand}.",
        "button": "Jiondoe",
        "done_title": "Umejiondoa",
        "done_body": "Hutapokea tena barua pepe hizi.",
        "bad_title": "Kiungo hiki hakifanyi kazi",
        "bad_body": (
            "Kiungo cha kujiondoa hakijakamilika au kimebadilishwa. Tafadhali tumia kiungo "
            "kilicho kwenye barua pepe ya hivi karibuni, au ijibu ukiomba kuondolewa."
        ),
        "error_title": "Kuna hitilafu",
        "error_body": (
            "Hatukuweza kukuondoa sasa hivi. Tafadhali jaribu tena baada ya dakika chache."
        ),
        "other_title": "Hiki si kiungo cha kujiondoa",
        "other_body": (
            "Kiungo hiki kilitengenezwa kwa jambo jingine, kwa hivyo hakiwezi kumwondoa mtu "
            "yeyote. Tumia kiungo cha kujiondoa kilicho mwishoni mwa barua pepe."
        ),
    },
}

_STATUS = {
    200: "200 OK",
    302: "302 Found",
    400: "400 Bad Request",
    403: "403 Forbidden",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    500: "500 Internal Server Error",
}


def _page(lang: str, title: str, body: str, *, form: str = "") -> bytes:
    """A whole HTML page; every argument except `form` is plain text and is escaped here."""
    esc = html.escape
    return (
        "<!doctype html>\n"
        f'<html lang="{esc(lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{esc(title)}</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;"
        "padding:0 1rem;line-height:1.5}button{font-size:1rem;padding:.5rem 1.25rem}</style>"
        f"</head><body><h1>{esc(title)}</h1><p>{esc(body)}</p>{form}</body></html>\n"
    ).encode()


def make_app(
    secret: str,
    suppress: Callable[[str], bool],
    *,
    brand: str = "",
    clicked: Callable[[str, str, str], None] | None = None,
    answered: Callable[[str, str, dict[str, list[str]]], None] | None = None,
) -> WSGIApplication:
    """The unsubscribe web app: `GET /u/<token>` asks, `POST /u/<token>` unsubscribes.

    `suppress(recipient_key)` records the unsubscribe (it must be idempotent: mail clients may
    retry the POST); its return value (True when newly suppressed) does not change the page.

    Opt-in, each only when its function is given (else 404): `GET /c/<token>` records
    `clicked(recipient_key, item, url)` and redirects to the URL the token signed (a HEAD, as
    link checkers send, redirects without recording); `GET /s/<token>` (a survey token) shows
    the answer in its query, or a box to write one, with a button, and `POST /s/<token>` records
    `answered(recipient_key, item, fields)` from a form or a JSON object.
    """
    if not secret:
        raise ValueError("the unsubscribe secret is empty")

    def opened_as(token: str, purpose: str) -> tuple[str, str] | None:
        found = open_token(token, secret)
        if found is None:
            return None
        kind, name = token_purpose(found[1])
        return (found[0], name) if kind == purpose else None

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        lang = query.get("lang", ["en"])[0]
        if lang not in _TEXTS:
            lang = "en"
        texts = _TEXTS[lang]
        method = environ.get("REQUEST_METHOD", "GET").upper()

        def respond(
            status: int, body: bytes, extra: tuple[tuple[str, str], ...] = ()
        ) -> list[bytes]:
            headers = [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Length", str(len(body))),
                # The token in the URL is a capability: keep it out of caches and referrers.
                ("Cache-Control", "no-store"),
                ("Referrer-Policy", "no-referrer"),
                ("X-Robots-Tag", "noindex"),
                (
                    "Content-Security-Policy",
                    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
                ),
                *extra,
            ]
            start_response(_STATUS[status], headers)
            return [] if method == "HEAD" else [body]

        path = environ.get("PATH_INFO", "")
        if clicked is not None and (found := _CLICK_PATH.fullmatch(path)):
            return _click(found.group(1), opened_as, method, texts, lang, respond, clicked)
        if answered is not None and (found := _SURVEY_PATH.fullmatch(path)):
            return _answer(
                found.group(1), opened_as, method, environ, query, texts, lang, respond, answered
            )
        match = _PATH.fullmatch(path)
        if not match:
            return respond(404, _page(lang, "Not found", "There is no page here."))
        if method not in ("GET", "HEAD", "POST"):
            return respond(
                405,
                _page(lang, "Method not allowed", "Use GET or POST."),
                (("Allow", "GET, HEAD, POST"),),
            )
        if method == "POST":
            _drain(environ)
        opened = open_token(match.group(1), secret)
        if opened is None:
            return respond(400, _page(lang, texts["bad_title"], texts["bad_body"]))
        key, list_id = opened
        if token_purpose(list_id)[0] != UNSUBSCRIBE:
            # Genuine, but made for something else (a survey link, say): whoever saw that link
            # must not be able to unsubscribe its owner with it.
            return respond(403, _page(lang, texts["other_title"], texts["other_body"]))
        if method in ("GET", "HEAD"):
            body = (
                texts["confirm_body_brand"].format(brand=brand) if brand else texts["confirm_body"]
            )
            # No action attribute: the form posts back to this very URL (token and ?lang kept),
            # which also works behind a proxy that mounts the app under a prefix.
            form = (
                '<form method="post">'
                '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
                f'<button type="submit">{html.escape(texts["button"])}</button></form>'
            )
            return respond(200, _page(lang, texts["confirm_title"], body, form=form))
        # POST. RFC 8058 §3.2 lets clients send the body as multipart/form-data or urlencoded;
        # the signed token is the authority, so the body is read but not required to parse.
        try:
            suppress(key)
        except Exception:
            log.exception("unsubscribe failed for a valid token")
            return respond(500, _page(lang, texts["error_title"], texts["error_body"]))
        return respond(200, _page(lang, texts["done_title"], texts["done_body"]))

    return app


def _drain(environ: WSGIEnvironment) -> bytes:
    """Read a bounded request body (so the connection stays usable) and return it."""
    try:
        length = min(int(environ.get("CONTENT_LENGTH") or 0), _MAX_BODY)
    except ValueError:
        return b""
    return bytes(environ["wsgi.input"].read(length)) if length > 0 else b""


Respond = Callable[..., list[bytes]]
# A genuine token's (recipient key, list name) when it was made for that purpose, else None.
Opener = Callable[[str, str], tuple[str, str] | None]


def _click(
    token: str,
    opened_as: Opener,
    method: str,
    texts: dict[str, str],
    lang: str,
    respond: Respond,
    clicked: Callable[[str, str, str], None],
) -> list[bytes]:
    if method not in ("GET", "HEAD"):
        return respond(405, _page(lang, "Method not allowed", "Use GET."), (("Allow", "GET"),))
    opened = opened_as(token, CLICK)
    if opened is None:
        return respond(400, _page(lang, texts["bad_title"], texts["link_bad_body"]))
    key, name = opened
    item, target = click_target(name)
    if not target.startswith(("https://", "http://")):
        return respond(400, _page(lang, texts["bad_title"], texts["link_bad_body"]))
    if method == "GET":
        try:
            clicked(key, item, target)
        except Exception:  # the member still gets where the link leads
            log.exception("a click could not be recorded")
    # Headers are ASCII: a target with other characters (an IRI) or line breaks is sent
    # percent-encoded, every URL delimiter kept (RFC 3986 2.2).
    location = quote(target, safe=":/?#[]@!$&'()*+,;=%~")
    return respond(302, _page(lang, "Redirecting", target), (("Location", location),))


def _answer(
    token: str,
    opened_as: Opener,
    method: str,
    environ: WSGIEnvironment,
    query: dict[str, list[str]],
    texts: dict[str, str],
    lang: str,
    respond: Respond,
    answered: Callable[[str, str, dict[str, list[str]]], None],
) -> list[bytes]:
    body = _drain(environ) if method == "POST" else b""
    opened = opened_as(token, SURVEY)
    if opened is None:
        return respond(400, _page(lang, texts["bad_title"], texts["link_bad_body"]))
    key, item = opened
    esc = html.escape
    if method in ("GET", "HEAD"):
        # A GET records nothing: mail scanners follow links. The page asks, the button posts.
        fields = {k: v for k, v in query.items() if k != "lang"}
        inputs = "".join(
            f'<input type="hidden" name="{esc(k)}" value="{esc(value)}">'
            for k, values in fields.items()
            for value in values
        )
        if not fields:
            inputs = (
                f'<p><label for="answer">{esc(texts["survey_free"])}</label></p>'
                '<p><textarea id="answer" name="answer" rows="6" cols="40" required></textarea></p>'
            )
        shown = "; ".join(f"{k}: {', '.join(v)}" for k, v in fields.items())
        button = f'<button type="submit">{esc(texts["survey_button"])}</button>'
        form = f'<form method="post">{inputs}{button}</form>'
        text = f"{shown}. {texts['survey_body']}" if shown else texts["survey_body"]
        return respond(200, _page(lang, texts["survey_title"], text, form=form))
    if method != "POST":
        return respond(
            405, _page(lang, "Method not allowed", "Use GET or POST."), (("Allow", "GET, POST"),)
        )
    answers = _fields(body, str(environ.get("CONTENT_TYPE") or ""))
    if answers is None:
        return respond(400, _page(lang, texts["bad_title"], texts["link_bad_body"]))
    try:
        answered(key, item, answers)
    except ValueError:
        return respond(400, _page(lang, texts["bad_title"], texts["link_bad_body"]))
    except Exception:
        log.exception("a survey answer could not be recorded")
        return respond(500, _page(lang, texts["error_title"], texts["error_body"]))
    return respond(200, _page(lang, texts["survey_done_title"], texts["survey_done_body"]))


def _fields(body: bytes, content_type: str) -> dict[str, list[str]] | None:
    """A survey answer's fields, from a form (urlencoded) or a JSON object; None if neither."""
    import json

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if content_type.split(";")[0].strip() == "application/json":
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # 64 KB of "[" nests deeper than the stack
            return None
        if not isinstance(data, dict):
            return None
        return {
            str(k): [str(x) for x in v] if isinstance(v, list) else [str(v)]
            for k, v in data.items()
        }
    return parse_qs(text, keep_blank_values=False)


# Limits of the server, so that slow or many clients cannot starve real ones. A one-click POST
# is well under 1 KB and arrives in one packet; anything slower is a broken or hostile client.
REQUEST_DEADLINE = 10.0  # seconds from a request's first byte to its last, then the connection goes
_LIMITS: dict[str, int] = {
    # waitress's default is 100 connections: 100 clients dribbling a byte a second stop all
    # service. 500 stays well below the usual limit of 1,024 open files per process.
    "connection_limit": 500,
    # An idle keep-alive connection is closed after this many seconds (waitress: 120).
    "channel_timeout": 30,
    # How often idle connections and the request deadline are checked (waitress: 30 s).
    "cleanup_interval": 2,
    # A token is at most 512 characters; proxies add a few headers. waitress allows 256 KB.
    "max_request_header_size": 16 * 1024,
    # The one-click body is 26 bytes; nothing else is accepted.
    "max_request_body_size": _MAX_BODY,
}


class ServerError(ValueError):
    """The server cannot listen where it was asked to (port in use, no such address, ...)."""


class UnsubscribeServer:
    """The app on a waitress server: bound on creation (`port=0` picks a free port), then `run`.

    waitress is a maintained, pure-Python production WSGI server (wsgiref is for development:
    one request at a time, no limits). `stop` may be called from another thread. Beyond
    waitress's own limits, a connection that takes longer than `request_deadline` seconds to
    send one request is closed: waitress only closes *idle* connections, and a client sending
    a byte a second is never idle.
    """

    def __init__(
        self,
        app: WSGIApplication,
        host: str,
        port: int,
        *,
        request_deadline: float = REQUEST_DEADLINE,
        **limits: int,
    ) -> None:
        from waitress.server import create_server

        if not 0 <= port <= 65535:  # waitress would silently take port % 65536
            raise ServerError(f"port {port} is not a port number: use 1 to 65535")
        # Our own socket map, so that `stop` can close connections still open, not only the
        # listening socket (waitress's loop runs while any socket is in the map).
        self._sockets: dict[int, Any] = {}
        self._stopping = False
        options: dict[str, Any] = {**_LIMITS, **limits}
        try:
            self._server = create_server(app, map=self._sockets, host=host, port=port, **options)
        except OSError as exc:
            raise ServerError(_listen_error(host, port, exc)) from None
        except ValueError:  # waitress's word for a host name that does not resolve
            raise ServerError(
                f"cannot listen on {host!r}: no such host name or address on this machine"
            ) from None
        for server in self._wsgi_servers():
            _enforce_deadline(server, request_deadline)
        #: Where it listens, as (host, port) pairs: one per resolved address of `host`.
        self.addresses: list[tuple[str, int]] = [
            (str(sock.getsockname()[0]), int(sock.getsockname()[1]))
            for sock in self._listening_sockets()
        ]

    def _wsgi_servers(self) -> list[Any]:
        from waitress.server import BaseWSGIServer

        servers = [self._server] if isinstance(self._server, BaseWSGIServer) else []
        servers += [s for s in self._sockets.values() if isinstance(s, BaseWSGIServer)]
        return list({id(s): s for s in servers}.values())

    def _listening_sockets(self) -> list[socket.socket]:
        servers = self._wsgi_servers()
        return list({id(s.socket): s.socket for s in servers if s.socket is not None}.values())

    def run(self) -> None:
        """Serve until `stop` (or Ctrl-C)."""
        try:
            self._server.run()
        except OSError as exc:
            # `stop` closes the sockets from another thread, possibly while the loop waits in
            # select() on them: the "bad file descriptor" that follows is the loop noticing.
            if not (self._stopping and exc.errno == errno.EBADF):
                raise

    def stop(self) -> None:
        self._stopping = True
        self._server.close()
        for channel in list(self._sockets.values()):
            channel.close()
        self._server.task_dispatcher.shutdown()


def serve(app: WSGIApplication, host: str, port: int) -> None:
    """Serve `app` on host:port until interrupted (`commcal unsubscribe-server`)."""
    UnsubscribeServer(app, host, port).run()


def _listen_error(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} is already in use on {host}: stop the program using it, "
            "or choose another with --port"
        )
    if exc.errno == errno.EACCES:
        return f"not allowed to listen on port {port}: ports below 1024 need root; use 8025"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}: it is not an address of this machine"
    if isinstance(exc, socket.gaierror):
        return f"cannot listen on {host!r}: no such host name"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def _enforce_deadline(server: Any, deadline: float) -> None:
    """Close connections whose request has been arriving for longer than `deadline` seconds.

    Checked with waitress's own idle check (every `cleanup_interval` seconds); a connection with
    a request being answered is left alone.
    """
    from waitress.channel import HTTPChannel

    class Channel(HTTPChannel):
        request_started = 0.0

        def received(self, data: bytes) -> bool:
            if self.request is None and data:
                self.request_started = time.time()  # waitress's clock for `maintenance`
            return bool(super().received(data))

    original = server.maintenance

    def maintenance(now: float) -> None:
        original(now)
        cutoff = now - deadline
        for channel in list(server.active_channels.values()):
            started = getattr(channel, "request_started", now)
            if channel.request is not None and not channel.requests and started < cutoff:
                channel.will_close = True

    server.channel_class = Channel
    server.maintenance = maintenance
