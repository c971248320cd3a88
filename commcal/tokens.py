"""Signed links in mail: unsubscribe and survey tokens, the one-click URL and its headers.

A token names a recipient by an opaque key (a subscriber id, never an address) and carries a
truncated HMAC-SHA256, so the link cannot be forged or pointed at someone else::

    token = sign("sub-42", secret)
    url = unsubscribe_url("https://news.example.org", token)   # .../u/<token>
    headers = list_unsubscribe_headers(url, "unsubscribe@example.org")

The secret is read by the caller from the environment variable named in config; nothing here
logs it or puts it in an error message. A token names its purpose and list (`token_list`), so a
survey link's token never unsubscribes anyone. The web page behind the link is
`commcal.unsubscribe_server`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

# Bump when the signed message changes; old links then stop verifying (on purpose).
_VERSION = b"commcal-unsubscribe/v1"
# 128 bits of HMAC-SHA256: far beyond online guessing; keeps links short (NIST SP 800-107 §5.3.4).
_MAC_BYTES = 16
# Longest token accepted: a generous key and list id; anything longer is not ours.
_MAX_TOKEN = 512
MAX_TOKEN = _MAX_TOKEN  # for makers of long tokens (a tracked link's URL is inside it)
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes | None:
    """Strict base64url without padding: None unless `text` is the one canonical encoding."""
    if not _B64URL.fullmatch(text):
        return None
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    # Different final characters can decode to the same bytes (unused low bits); accept only one,
    # so that changing any character of a token changes what it says.
    return data if _b64encode(data) == text else None


def _mac(key: bytes, list_id: bytes, secret: str) -> bytes:
    message = b"\x00".join((_VERSION, list_id, key))
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()[:_MAC_BYTES]


def _check_part(name: str, value: str) -> bytes:
    if "\x00" in value:
        raise ValueError(f"{name} must not contain NUL")
    return value.encode("utf-8")


def sign(recipient_key: str, secret: str, *, list_id: str = "") -> str:
    """Return the unsubscribe token for `recipient_key` (an opaque id, not an email address).

    `list_id` binds the token to one list: a token made for one list does not verify as made for
    another with a different id, and it travels inside the token so `verify` needs only the secret.
    """
    if not recipient_key:
        raise ValueError("recipient_key is empty")
    if "@" in recipient_key:
        # Tokens end up in URLs, logs and referrers; an address there is personal data on show.
        raise ValueError("recipient_key looks like an email address; use an opaque subscriber id")
    if not secret:
        raise ValueError("the unsubscribe secret is empty")
    key = _check_part("recipient_key", recipient_key)
    lid = _check_part("list_id", list_id)
    payload = key + b"\x00" + lid if lid else key
    return _b64encode(payload) + "." + _b64encode(_mac(key, lid, secret))


# What a token is for travels in its signed list field as `purpose:list` (`unsubscribe:members`,
# `survey:community/feedback`), so a token made for one purpose never works for another.
UNSUBSCRIBE = "unsubscribe"
SURVEY = "survey"
# A tracked link (members.track_clicks): `click:CALENDAR/ITEM<US>TARGET`. The target URL is
# inside the signed field, so the server redirects only where commcal itself pointed: a
# changed token is refused, and the link is no open redirect.
CLICK = "click"
_UNIT = "\x1f"  # the ASCII unit separator: in no URL or item id
# Signed list fields that make an unsubscribe token: "" is `sign`'s own default (the plain form
# this module documents), "unsubscribe" is what commcal put in every unsubscribe link it mailed
# before tokens named their list. Both stay valid: people click links in old mail.
_UNSUBSCRIBE_LEGACY = ("", UNSUBSCRIBE)


def token_list(purpose: str, name: str = "") -> str:
    """The signed list field for a token of `purpose` about list `name` (an audience, an item)."""
    if not purpose or ":" in purpose:
        raise ValueError(f"a token purpose is one word, not {purpose!r}")
    return f"{purpose}:{name}" if name else purpose


def token_purpose(list_id: str) -> tuple[str, str]:
    """`unsubscribe:members` -> (`unsubscribe`, `members`); "" is an unsubscribe token."""
    if list_id in _UNSUBSCRIBE_LEGACY:
        return UNSUBSCRIBE, ""
    purpose, _, name = list_id.partition(":")
    return purpose, name


def verify(token: str, secret: str) -> str | None:
    """Return the recipient key of a token made by `sign` with `secret`, else None. Never raises."""
    opened = open_token(token, secret)
    return opened[0] if opened else None


def open_token(token: object, secret: str) -> tuple[str, str] | None:
    """Return `(recipient_key, list_id)` of a genuine token, else None. Never raises."""
    if not isinstance(token, str) or not secret or len(token) > _MAX_TOKEN:
        return None
    encoded_payload, dot, encoded_mac = token.partition(".")
    if not dot:
        return None
    payload = _b64decode(encoded_payload)
    given = _b64decode(encoded_mac)
    if not payload or given is None or len(given) != _MAC_BYTES:
        return None
    key, _, lid = payload.partition(b"\x00")
    if not hmac.compare_digest(_mac(key, lid, secret), given):
        return None
    try:
        return key.decode("utf-8"), lid.decode("utf-8")
    except UnicodeDecodeError:  # pragma: no cover - only reachable with the secret
        return None


def click_list(item: str, target: str) -> str:
    """The signed list field of a tracked link to `target` in item `item` (CALENDAR/ITEM)."""
    if _UNIT in item or _UNIT in target:
        raise ValueError("a tracked link's item and target must not contain U+001F")
    return token_list(CLICK, f"{item}{_UNIT}{target}")


def click_target(name: str) -> tuple[str, str]:
    """The (item, target URL) of a click token's list name (what `click_list` signed)."""
    item, _, target = name.partition(_UNIT)
    return item, target


def click_url(base_url: str, token: str) -> str:
    """`https://news.example.org` + token -> `https://news.example.org/c/<token>`."""
    return f"{base_url.rstrip('/')}/c/{token}"


def survey_response_url(base_url: str, token: str) -> str:
    """Where a member's survey answers are posted: `https://news.example.org/s/<token>`."""
    return f"{base_url.rstrip('/')}/s/{token}"


def unsubscribe_url(base_url: str, token: str) -> str:
    """`https://news.example.org` + token -> `https://news.example.org/u/<token>`."""
    return f"{base_url.rstrip('/')}/u/{token}"


# Plain http is accepted only on this machine, for tests: no mail provider would offer it.
_LOOPBACK = ("localhost", "127.0.0.1", "::1")
_UNSAFE = re.compile(r"[\s<>,\"]")


def unsubscribe_url_problem(url: str) -> str | None:
    """Why `url` cannot carry one-click unsubscribe links ("it is plain http"), or None.

    RFC 8058 §3.1: the URI must be HTTPS; `http://localhost` (and 127.0.0.1, [::1]) is let
    through for tests. Characters that would break or inject into List-Unsubscribe are refused.
    """
    from urllib.parse import urlsplit

    if _UNSAFE.search(url):
        return "it contains a space, quote, comma or angle bracket"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return "it is not a URL"
    if parts.scheme == "http" and host not in _LOOPBACK:
        return "it is plain http"
    if parts.scheme not in ("http", "https"):
        return f"it starts with {parts.scheme}:" if parts.scheme else "it has no https://"
    if not host:
        return "it has no host name"
    return None


def list_unsubscribe_headers(url: str, mailto: str | None) -> dict[str, str]:
    """The two headers that make a one-click unsubscribe (RFC 8058 §3.1, RFC 2369 §3.2).

    `mailto` is an address (`unsubscribe@example.org`, with or without `mailto:`), or None.
    Both headers must be covered by the message's DKIM signature (RFC 8058 §4).
    """
    # RFC 8058 §3.1: one-click needs an HTTPS URI; mail providers ignore plain http.
    problem = unsubscribe_url_problem(url)
    if problem:
        raise ValueError(f"one-click unsubscribe needs an https:// URL, not {url!r}: {problem}")
    targets = [url]
    if mailto:
        address = mailto.removeprefix("mailto:")
        targets.append(f"mailto:{address}?subject=unsubscribe")
    for target in targets:
        # Angle brackets and commas delimit the list; whitespace or line breaks would inject.
        if re.search(r"[\s<>,\"]", target):
            raise ValueError(f"unsafe character in List-Unsubscribe target {target!r}")
    return {
        "List-Unsubscribe": ", ".join(f"<{target}>" for target in targets),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
