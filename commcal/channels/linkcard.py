"""Link cards: a page's Open Graph title, description and image, fetched while sending.

A card is a courtesy, never a condition of the post: every failure here is a `CardError` whose
text says why, and the adapter posts without the card (or without its thumbnail) and says so in
the receipt's note. Fetching is bounded in time (one deadline for the whole fetch, so a server
that trickles a byte a second cannot hold a cron run) and in size (a page is cut off, an image
over the limit is not used), and it follows redirects to http(s) URLs only.

The page is decoded in the charset it declares, as a browser would (WHATWG HTML "determining
the character encoding", https://html.spec.whatwg.org/multipage/parsing.html#encoding-sniffing-
algorithm): a byte order mark, else the HTTP Content-Type charset, else `<meta charset>`, else
`<meta http-equiv="Content-Type" content="...; charset=...">`, else UTF-8. (requests' own guess,
ISO-8859-1 for any text/html without a header charset, turns a UTF-8 Greek title to mojibake.)
"""

from __future__ import annotations

import codecs
import html
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

if TYPE_CHECKING:
    import requests

# Open Graph tags live in <head>: the first megabyte of a page holds them. Bluesky's own card
# service (cardyb) reads a page the same way; a 50 MB page is cut off, not read to the end.
PAGE_MAX_BYTES = 1_000_000
# app.bsky.embed.external#external thumb: image/*, maxSize 1,000,000 bytes
# (https://github.com/bluesky-social/atproto/blob/main/lexicons/app/bsky/embed/external.json).
IMAGE_MAX_BYTES = 1_000_000
# Seconds for the whole of one fetch (connect, redirects and body): a card must not hold a run.
FETCH_SECONDS = 10.0
MAX_REDIRECTS = 5
# WHATWG Encoding: these labels mean windows-1252 in a browser (https://encoding.spec.whatwg.org/
# #names-and-labels), and pages labelled latin-1 routinely hold its curly quotes.
_WINDOWS_1252 = {"iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1", "us-ascii", "ascii"}
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# How far into the page <meta charset> is looked for (the spec's prescan reads 1,024 bytes; real
# pages put a long <head> of scripts first, so more is read).
_PRESCAN_BYTES = 65_536


class CardError(Exception):
    """Why there is no card (or no thumbnail): a sentence for the receipt's note."""


@dataclass(frozen=True)
class Card:
    uri: str
    title: str
    description: str
    image: str = ""  # the og:image, as an absolute http(s) URL; "" when the page names none


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    content_type: str
    body: bytes
    cut: bool  # the body was longer than the limit and is cut off


def fetch(
    session: requests.Session,
    url: str,
    *,
    accept: str,
    max_bytes: int,
    seconds: float = FETCH_SECONDS,
) -> Fetched:
    """GET `url`, following at most MAX_REDIRECTS redirects to http(s) URLs, reading at most
    `max_bytes` of the body, all within `seconds`. Raises CardError."""
    import requests as _requests

    deadline = time.monotonic() + seconds
    for _ in range(MAX_REDIRECTS + 1):
        if urlsplit(url).scheme not in ("http", "https"):
            raise CardError(f"{_shown(url)} is not an http(s) URL")
        left = deadline - time.monotonic()
        if left <= 0:
            raise CardError(f"{_shown(url)} took over {seconds:g} s")
        try:
            response = session.get(
                url,
                headers={"Accept": accept},
                stream=True,
                allow_redirects=False,
                timeout=(min(left, 5.0), left),
            )
        except _requests.Timeout:
            raise CardError(f"{_shown(url)} did not answer within {seconds:g} s") from None
        except _requests.RequestException as exc:
            raise CardError(f"{_shown(url)} could not be fetched ({type(exc).__name__})") from None
        with response:
            if response.is_redirect:
                url = urljoin(url, response.headers.get("Location", ""))
                continue
            if response.status_code != 200:
                raise CardError(f"{_shown(url)} answered HTTP {response.status_code}")
            body, cut = _read(response, max_bytes, deadline, url, seconds)
            return Fetched(url, response.headers.get("Content-Type", ""), body, cut)
    raise CardError(f"{_shown(url)} redirects more than {MAX_REDIRECTS} times")


def _read(
    response: requests.Response, max_bytes: int, deadline: float, url: str, seconds: float
) -> tuple[bytes, bool]:
    from urllib3.exceptions import HTTPError

    chunks: list[bytes] = []
    size = 0
    try:
        # read1: what one receive brought (iter_content waits for a whole chunk, so a server
        # sending a byte at a time would never reach the deadline check).
        while chunk := response.raw.read1(16_384, decode_content=True):
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                return b"".join(chunks)[:max_bytes], True
            if time.monotonic() > deadline:
                raise CardError(f"{_shown(url)} took over {seconds:g} s to send its page")
    except (HTTPError, OSError) as exc:
        raise CardError(f"{_shown(url)} broke off ({type(exc).__name__})") from None
    return b"".join(chunks), False


def page_card(session: requests.Session, uri: str, seconds: float = FETCH_SECONDS) -> Card:
    """The card of the page at `uri`: og:title (else <title>, else the host), og:description
    (else the description meta), og:image. Raises CardError."""
    page = fetch(session, uri, accept="text/html", max_bytes=PAGE_MAX_BYTES, seconds=seconds)
    kind = page.content_type.split(";")[0].strip().lower()
    if kind and kind not in ("text/html", "application/xhtml+xml"):
        raise CardError(f"{_shown(uri)} is {kind}, not a web page")
    text = decode_page(page.body, page.content_type)
    image = meta(text, "og:image") or meta(text, "og:image:url")
    image = urljoin(page.url, image) if image else ""
    if image and urlsplit(image).scheme not in ("http", "https"):
        image = ""
    return Card(
        uri=uri,
        title=meta(text, "og:title") or html_title(text) or urlsplit(uri).netloc,
        description=meta(text, "og:description") or meta(text, "description"),
        image=image,
    )


def fetch_image(
    session: requests.Session, url: str, seconds: float = FETCH_SECONDS
) -> tuple[bytes, str]:
    """The image at `url` and its MIME type: image/* only, at most IMAGE_MAX_BYTES. Raises
    CardError."""
    got = fetch(session, url, accept="image/*", max_bytes=IMAGE_MAX_BYTES, seconds=seconds)
    mime = got.content_type.split(";")[0].strip().lower()
    if not mime.startswith("image/"):
        raise CardError(f"the card image {_shown(url)} is {mime or 'untyped'}, not an image")
    if got.cut:
        raise CardError(f"the card image {_shown(url)} is over {IMAGE_MAX_BYTES:,} bytes")
    return got.body, mime


def decode_page(body: bytes, content_type: str) -> str:
    """The page as text, in the charset it declares (see the module's docstring)."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(codec, errors="replace")
    codec = _codec(_charset_param(content_type))
    if not codec:
        codec = _codec(_declared_in_page(body))
        # A page that says utf-16 in its own bytes cannot be utf-16 (WHATWG: it means utf-8).
        codec = "utf-8" if not codec or codec.startswith("utf-16") else codec
    return body.decode(codec, errors="replace")


def _charset_param(content_type: str) -> str:
    found = re.search(r"""charset\s*=\s*["']?([^\s"';]+)""", content_type, re.IGNORECASE)
    return found.group(1) if found else ""


def _declared_in_page(body: bytes) -> str:
    """<meta charset=...>, else <meta http-equiv=Content-Type content="...charset=...">."""
    head = body[:_PRESCAN_BYTES].decode("ascii", errors="replace")
    tags = re.findall(r"<meta\b[^>]*>", head, flags=re.IGNORECASE)
    for tag in tags:
        found = re.search(r"""\bcharset\s*=\s*["']?([^\s"'/>;]+)""", tag, re.IGNORECASE)
        if found and not re.search(r"\bcontent\s*=", tag, re.IGNORECASE):
            return found.group(1)
    for tag in tags:
        if re.search(r"""http-equiv\s*=\s*["']?content-type""", tag, re.IGNORECASE):
            content = re.search(r"""content\s*=\s*(["'])(.*?)\1""", tag, re.IGNORECASE | re.S)
            if content:
                return _charset_param(content.group(2))
    return ""


def _codec(label: str) -> str:
    """Python's codec for a charset label, or "" for a label it does not know."""
    label = label.strip().lower()
    if not label:
        return ""
    if label in _WINDOWS_1252:
        return "cp1252"
    try:
        return codecs.lookup(label).name
    except LookupError:
        return ""


def meta(page: str, name: str) -> str:
    """The content of `<meta property=name>` or `<meta name=name>`, unescaped."""
    for tag in re.findall(r"<meta\b[^>]*>", page, flags=re.IGNORECASE):
        if re.search(rf"""(?:property|name)\s*=\s*["']{re.escape(name)}["']""", tag, re.I):
            content = re.search(r"""content\s*=\s*(["'])(.*?)\1""", tag, re.I | re.S)
            if content:
                return " ".join(html.unescape(content.group(2)).split())
    return ""


def html_title(page: str) -> str:
    found = re.search(r"<title[^>]*>(.*?)</title>", page, flags=re.IGNORECASE | re.S)
    return " ".join(html.unescape(found.group(1)).split()) if found else ""


def _shown(url: str) -> str:
    """Scheme, host and path of a URL (its query may carry a token): what a note may show."""
    parts = urlsplit(url)
    if not parts.netloc:
        return repr(url[:80])
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a number
        port = ""
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"[:200]
