"""The one place where secrets are taken out of text on its way to output, logs and the ledger.

Every error text that may hold a server's words (a proxy or a network echoing the request: its
URL, headers, body) passes through `Secrets.redact` before it is shortened, printed, logged or
stored. A `Secrets` knows the values to hide:

- every resolved secret value (`add`): private channel settings, `${ENV}` values read in
  secret-bearing places (webhook headers and URLs), tokens an adapter obtained itself (a
  Bluesky session's JWTs);
- every secret-bearing part of a URL (`add_url`): userinfo, query values, and path segments that
  look like tokens (Telegram's `/bot<token>/`, Slack's and Discord's webhook paths).

What is removed: each value whole, also as servers echo it (percent-encoded, JSON- or
HTML-escaped, `/` written `\\/`), and any run of PIECE characters that is part of a value
(compared ignoring case, whitespace and backslashes), so a secret cut short by a server, wrapped
over two lines or split by JSON escaping leaves nothing of PIECE characters or more. Values
shorter than SHORTEST are not redacted: they would eat ordinary words.

Shortening happens here too (`limit`), after redaction: a cut can no longer leave the start of a
secret behind.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

if TYPE_CHECKING:
    from commcal.project import Project

MASK = "***"
SHORTEST = 4  # values shorter than this are left alone
PIECE = 8  # any run of this many characters of a secret is redacted
# Redaction reads at most this much of a text that is then cut to a `limit`: a server's 5 MB
# error page costs milliseconds, and whatever lies beyond is cut anyway.
SCAN_LIMIT = 65_536
# Query parameters of a URL that is not secret as a whole (a ledger DSN) whose values are.
SECRET_PARAMS = ("password", "sslpassword", "passfile", "secret", "token", "key", "auth")


def _squeeze(text: str) -> str:
    """Text as compared for pieces: no whitespace, no backslashes, lower case."""
    return "".join(ch for ch in text if not ch.isspace() and ch != "\\").lower()


def _forms(value: str) -> set[str]:
    """The ways a server may echo `value`."""
    forms = {
        value,
        value.replace("/", "\\/"),
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        html.escape(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    return {form for form in forms if len(form) >= SHORTEST}


class Secrets:
    """A set of values that must never appear in output; `redact` takes them out of text."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._whole: set[str] = set()
        self._pieces: set[str] = set()
        self._exact: list[str] = []  # longest first, rebuilt when values are added
        for value in values:
            self.add(value)

    def __bool__(self) -> bool:
        return bool(self._exact)

    def add(self, value: str | None) -> None:
        """Hide `value` (and every PIECE characters of it)."""
        if not value or len(value) < SHORTEST or value in self._whole:
            return
        self._whole.add(value)
        for form in _forms(value):
            self._exact.append(form)
            squeezed = _squeeze(form)
            for start in range(len(squeezed) - PIECE + 1):
                self._pieces.add(squeezed[start : start + PIECE])
        self._exact.sort(key=len, reverse=True)

    def add_exact(self, value: str | None) -> None:
        """Hide `value` only where it appears whole (a URL whose host is not secret)."""
        if not value or len(value) < SHORTEST or value in self._exact:
            return
        for form in _forms(value):
            self._exact.append(form)
        self._exact.sort(key=len, reverse=True)

    def add_url(self, url: str | None, *, whole: bool = True) -> None:
        """Hide a URL's secret-bearing parts: userinfo, query values and token-like path
        segments (with a digit in them, or 16 characters or more). `whole`: the URL is a secret
        as a whole (a webhook URL), so every query value is one, and so is the URL itself;
        otherwise (a ledger DSN) only the password and query values named like secrets."""
        if not url:
            return
        try:
            parts = urlsplit(url)
            password = parts.password
            username = parts.username
        except ValueError:
            self.add(url)
            return
        self.add(password and unquote(password))
        self.add(password)
        if whole:
            self.add_exact(url)
            self.add_exact(url.split("?", 1)[0])
            self.add(username and unquote(username))
            for segment in parts.path.split("/"):
                if len(segment) >= 16 or (
                    len(segment) >= SHORTEST and any(ch.isdigit() for ch in segment)
                ):
                    self.add(segment)
                    self.add(unquote(segment))
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if whole or any(word in key.lower() for word in SECRET_PARAMS):
                self.add(value)
                self.add(quote_plus(value))

    def add_login(self, username: str, password: str) -> None:
        """Hide a password also as SMTP AUTH PLAIN and LOGIN encode it (a server may echo)."""
        self.add(password)
        self.add(base64.b64encode(f"\0{username}\0{password}".encode()).decode())
        self.add(base64.b64encode(password.encode()).decode())

    def update(self, other: Secrets) -> None:
        self._whole |= other._whole
        self._pieces |= other._pieces
        self._exact = sorted(set(self._exact) | set(other._exact), key=len, reverse=True)

    def redact(self, text: str, limit: int | None = None) -> str:
        """`text` without any secret, then cut to `limit` characters (with "…")."""
        if limit is not None and len(text) > SCAN_LIMIT:
            text = text[:SCAN_LIMIT]
        for form in self._exact:
            if form in text:
                text = text.replace(form, MASK)
        if self._pieces and len(text) >= PIECE:
            text = self._cover_pieces(text)
        if limit is not None and len(text) > limit:
            text = text[: limit - 1] + "…"
        return text

    def _cover_pieces(self, text: str) -> str:
        # The compared characters and where each is in `text`.
        kept = [(i, ch.lower()) for i, ch in enumerate(text) if not ch.isspace() and ch != "\\"]
        squeezed = "".join(ch for _, ch in kept)
        covered: list[tuple[int, int]] = []  # [start, end) spans of `text`
        for start in range(len(squeezed) - PIECE + 1):
            if squeezed[start : start + PIECE] in self._pieces:
                begin, end = kept[start][0], kept[start + PIECE - 1][0] + 1
                if covered and begin <= covered[-1][1]:
                    covered[-1] = (covered[-1][0], max(end, covered[-1][1]))
                else:
                    covered.append((begin, end))
        if not covered:
            return text
        out, last = [], 0
        for begin, end in covered:
            out.append(text[last:begin])
            out.append(MASK)
            last = end
        out.append(text[last:])
        return "".join(out)


def safe_url(url: str) -> str:
    """A ledger URL as it may be shown: no password, in the userinfo or in the query."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(a ledger URL that cannot be parsed)"
    secrets = Secrets()
    secrets.add_url(url, whole=False)
    if password is not None:
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0].split(":", 1)[0]
        url = url.replace(parts.netloc, f"{user}:{MASK}@{netloc[1]}", 1)
    return secrets.redact(url)


def url_secrets(url: str) -> Secrets:
    """The secrets of a ledger URL: its password, in the userinfo or the query."""
    secrets = Secrets()
    secrets.add_url(url, whole=False)
    return secrets


def project_secrets(project: Project, ledger_url: str | None = None) -> Secrets:
    """Every secret of a project: each channel's (`Channel.secret_set`), the members secret
    and the ledger URL's password. For text that may have escaped its channel's redaction."""
    secrets = url_secrets(ledger_url) if ledger_url else Secrets()
    for adapter in project.channels.values():
        with contextlib.suppress(Exception):  # a plugin's broken extra_secrets
            secrets.update(adapter.secret_set())
    with contextlib.suppress(Exception):
        secrets.add(project.config.member_secret(project.env))
    return secrets
