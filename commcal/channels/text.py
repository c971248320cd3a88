"""Text measured the way each network measures it, and Bluesky rich-text facets.

Every network counts "characters" differently, and a post that one counter accepts another
rejects. The functions here follow each network's own reference code, cited next to each one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import regex as _regex_mod

# Ruby's [[:word:]] on a UTF-8 string (Onigmo): Letter, Mark, Decimal_Number, Connector_Punctuation.
_RUBY_WORD = r"\p{L}\p{M}\p{Nd}\p{Pc}"
# twitter-text LATIN_ACCENTS (rb/lib/twitter-text/regex.rb).
_LATIN_ACCENTS = (
    "\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff\u0100-\u024f\u0253\u0254\u0256\u0257\u0259"
    "\u025b\u0263\u0268\u026f\u0272\u0289\u028b\u02bb\u0300-\u036f\u1e00-\u1eff"
)

# JavaScript's `\s` (ECMA-262 WhiteSpace + LineTerminator). Bluesky's detection runs in JS, and
# Python's `\s` differs from it (it includes U+001C..U+001F and U+0085, omits U+FEFF).
_JS_SPACE = r"\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
# Characters Bluesky's TAG_REGEX treats as ending a tag besides white space (zero-width spaces...).
_TAG_STOP = r"\u00ad\u2060\u200a\u200b\u200c\u200d\u20e2"

# Bluesky: the lexicon allows a tag of 64 graphemes and 640 bytes (app.bsky.richtext.facet#tag,
# https://github.com/bluesky-social/atproto/blob/main/lexicons/app/bsky/richtext/facet.json);
# the official client makes a facet of a tag only up to 64 UTF-16 code units (detectFacets in
# packages/api/src/rich-text/detection.ts, `tag.length > 64`), and posts look as the app makes
# them: the client's rule, which stays within the lexicon's.
TAG_MAX_UTF16 = 64

# Mastodon: every URL costs 23 characters whatever its length
# (app/validators/status_length_validator.rb, URL_PLACEHOLDER_CHARS).
MASTODON_URL_LENGTH = 23
# ...but only a URL of at most 4,096 characters is one: twitter-text's Extractor#is_valid_domain
# (twitter/twitter-text rb/lib/twitter-text/extractor.rb, MAX_URL_LENGTH), which Mastodon's
# extract_urls_with_indices calls, drops longer ones, so they count in full.
MASTODON_MAX_URL = 4096
# The schemes Mastodon's URL pattern knows (config/initializers/twitter_regex.rb, valid_url:
# `(?:https?|dat|dweb|ipfs|ipns|ssb|gopher|gemini)://`): each such link costs 23 as well. (The
# web composer's counter, app/javascript/mastodon/features/compose/util/url_regex.js, knows
# http(s) only and so shows more than the server counts; the server decides.)
MASTODON_SCHEMES = ("https?", "dat", "dweb", "ipfs", "ipns", "ssb", "gopher", "gemini")
# A remote mention whose domain is longer than this is no mention (app/lib/extractor.rb).
MASTODON_MAX_DOMAIN = 253
# X refuses these anywhere in a post (twitter-text rb/lib/twitter-text/regex.rb,
# INVALID_CHARACTERS: U+FFFE and U+FEFF "BOM", U+FFFF "Special"; Validation#tweet_invalid?).
X_INVALID_CHARACTERS = {
    "\ufffe": "U+FFFE",
    "\ufeff": "U+FEFF (byte order mark)",
    "\uffff": "U+FFFF",
}


@functools.cache
def _patterns() -> dict[str, _regex_mod.Pattern[str]]:
    """Compiled once, on first use: importing `regex` costs time a cron run may not need."""
    import regex

    ascii_word = "A-Za-z0-9_"
    ascii_boundary = (
        f"(?:(?<=[{ascii_word}])(?![{ascii_word}])|(?<![{ascii_word}])(?=[{ascii_word}]))"
    )
    return {
        "grapheme": regex.compile(r"\X"),
        # packages/api/src/rich-text/util.ts (bluesky-social/atproto): MENTION_REGEX, flags g.
        # JS `\b` is ASCII-only, spelled out here so Unicode letters do not change the match.
        "mention": regex.compile(rf"(?:^|[{_JS_SPACE}]|\()(@)([a-zA-Z0-9.-]+){ascii_boundary}"),
        # URL_REGEX, flags gim. `[a-z]` is spelled `[a-zA-Z]` rather than using IGNORECASE,
        # which in Python would also match U+017F and U+212A.
        "link": regex.compile(
            rf"(?:^|[{_JS_SPACE}]|\()("
            rf"([hH][tT][tT][pP][sS]?://[^{_JS_SPACE}]+)"
            rf"|((?P<domain>[a-zA-Z][a-zA-Z0-9]*(?:\.[a-zA-Z0-9]+)+)[^{_JS_SPACE}]*)"
            r")",
            regex.MULTILINE,
        ),
        # TAG_REGEX, flags gu: a tag may not start with U+FE0F and needs at least one character
        # that is neither an ASCII digit, white space nor punctuation (so "#2024" is no tag).
        "tag": regex.compile(
            rf"(^|[{_JS_SPACE}])[#＃]("
            rf"(?!\ufe0f)[^{_JS_SPACE}{_TAG_STOP}]*"
            rf"[^0-9{_JS_SPACE}\p{{P}}{_TAG_STOP}]+"
            rf"[^{_JS_SPACE}{_TAG_STOP}]*"
            r")?"
        ),
        "trailing_punct": regex.compile(r"\p{P}+$"),
        # CASHTAG_REGEX, flags gu: `$` and a ticker of a letter and up to 4 letters or digits,
        # followed by white space, the end or one of .,;:!?)"'’ (not consumed).
        "cashtag": regex.compile(
            rf"(^|[{_JS_SPACE}]|\()\$([A-Za-z][A-Za-z0-9]{{0,4}})"
            rf"(?=[{_JS_SPACE}]|\Z|[.,;:!?)\"'\u2019])"
        ),
        # Mastodon's mention, Account::MENTION_RE (app/models/account.rb):
        #   (?<![=/[:word:]])@((USERNAME_RE)(?:@[[:word:]]+([.-]+[[:word:]]+)*)?)
        # with USERNAME_RE = [a-z0-9_]+([.-]+[a-z0-9_]+)*/i; Ruby's [[:word:]] is Unicode
        # letters, marks, decimal digits and connector punctuation. Only `@user` counts.
        "masto_mention": regex.compile(
            rf"(?<![=/{_RUBY_WORD}])@(([a-zA-Z0-9_]+(?:[.-]+[a-zA-Z0-9_]+)*)"
            rf"(?:@([{_RUBY_WORD}]+(?:[.-]+[{_RUBY_WORD}]+)*))?)"
        ),
        # twitter-text's end_mention_match (rb/lib/twitter-text/regex.rb): a mention followed by
        # another @, a Latin accented letter or :// is no mention (`@bob@example.com@x`).
        "masto_mention_end": regex.compile(rf"[@＠]|[{_LATIN_ACCENTS}]|://"),
    }


def graphemes(text: str) -> int:
    """User-perceived characters (Unicode extended grapheme clusters, UAX #29)."""
    if text.isascii():  # in ASCII only CR LF is a cluster of two code points
        return len(text) - text.count("\r\n")
    return len(_patterns()["grapheme"].findall(text))


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def utf16_units(text: str) -> int:
    """Length in UTF-16 code units: what JavaScript's `.length` and Telegram's offsets count."""
    return len(text.encode("utf-16-le")) // 2


# Mastodon widens twitter-text's URL path and query rules (config/initializers/twitter_regex.rb):
# a path runs over anything but white space and `<>()?` (balanced parentheses allowed) and may
# not end in one of these; a query may hold any non-ASCII character.
_MASTO_PATH_STOP = set("<>()?")
_MASTO_PATH_BAD_END = set("()?!*\"'「」<>;:=,.$%[]~&|@")
_MASTO_QUERY = set(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!?*'();:&=+$/%#[]-_.,~|@^"
)
_MASTO_QUERY_END = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_&=#/-")
# The same as a pattern (any character from U+00A0 up counts as both): a query is scanned
# character by character otherwise, half of a whole Mastodon length count.
_MASTO_QUERY_RUN = re.compile(
    "[{}\u00a0-\U0010ffff]*[{}\u00a0-\U0010ffff]".format(
        re.escape("".join(sorted(_MASTO_QUERY))), re.escape("".join(sorted(_MASTO_QUERY_END)))
    )
)


def _masto_url_end(text: str, position: int) -> int:
    """Where a Mastodon URL whose host ends at `position` ends: its path, then its query."""
    if position < len(text) and text[position] == "/":
        end = scan = position + 1
        depth = 0
        while scan < len(text) and not text[scan].isspace():
            char = text[scan]
            if char == "(" and depth < 2:
                depth += 1
            elif char == ")" and depth > 0:
                depth -= 1
            elif char in _MASTO_PATH_STOP:
                break
            scan += 1
            # A path may end here if the last character may end one and no "(" is open.
            if depth == 0 and (char == ")" or char not in _MASTO_PATH_BAD_END):
                end = scan
        position = end
    if position < len(text) and text[position] == "?":
        # The longest run of query characters that ends in one a query may end with.
        query = _MASTO_QUERY_RUN.match(text, position + 1)
        if query is not None:
            position = query.end()
    return position


_URL_TOKEN = re.compile(r"\S*://\S*")


@functools.cache
def _masto_url_pattern() -> re.Pattern[str]:
    """twitter-text's URL pattern with Mastodon's schemes in place of `https?` (twitter_regex.rb
    valid_url). Its path and query parts are twitter-text's; `_masto_url_end` applies
    Mastodon's wider ones from where the host ends."""
    from twitter_text.regexp.extract_url import extract_url

    protocol = "(https?:\\/\\/)?"
    assert extract_url.pattern.count(protocol) == 1, "twitter-text's URL pattern changed"
    schemes = "|".join(MASTODON_SCHEMES)
    return re.compile(
        extract_url.pattern.replace(protocol, f"((?:{schemes}):\\/\\/)?"), extract_url.flags
    )


@functools.lru_cache(maxsize=4096)
def _protocol_urls(window: str) -> tuple[tuple[int, int, str], ...]:
    """(start, end of host, domain) of each URL with a scheme in a token. Cached: a calendar's
    posts repeat their links (the same UTM-tagged URL in every occurrence of an item)."""
    return tuple(
        (found.start(3), found.end(6) if found.group(6) else found.end(5), found.group(5))
        for found in _masto_url_pattern().finditer(window)
        if found.group(4)
    )


@functools.lru_cache(maxsize=1024)
def _idna_growth(domain: str) -> int | None:
    """How many characters IDNA (ToASCII, RFC 3490) adds to a domain; None if it cannot be
    converted (a label over 63 characters ...), which makes the URL no URL for twitter-text."""
    try:
        return max(0, len(domain.encode("idna")) - len(domain))
    except UnicodeError:
        return None


def masto_url_entity(
    text: str, start: int, host_end: int, domain: str, url_length: int = MASTODON_URL_LENGTH
) -> tuple[int, int, str] | None:
    """The URL at `start` as Mastodon rewrites it, or None when it is no URL to Mastodon.

    Extractor#extract_urls_with_indices keeps a URL only if `is_valid_domain(url.length,
    domain, protocol)`: its domain converts to ASCII and the URL, counted with the ASCII form of
    the domain, is at most 4,096 characters. (twitter-text's t.co special case is left out.)
    """
    end = _masto_url_end(text, host_end)
    growth = _idna_growth(domain)
    if growth is None or end - start + growth > MASTODON_MAX_URL:
        return None
    return (start, end, "x" * url_length)


def masto_mentions(text: str) -> list[tuple[int, int, str]]:
    """Mastodon's mentions (app/lib/extractor.rb, extract_mentions_or_lists_with_indices), each
    as (start, end, `@user`): a match followed by `@`, a Latin accent or `://` is no mention,
    nor is one whose domain is over 253 characters."""
    patterns = _patterns()
    found = []
    for match in patterns["masto_mention"].finditer(text):
        if patterns["masto_mention_end"].match(text, match.end()):
            continue
        domain = match.group(3)
        if domain and len(domain) > MASTODON_MAX_DOMAIN:
            continue
        found.append((match.start(), match.end(), "@" + match.group(2)))
    return found


def rewrite(text: str, entities: list[tuple[int, int, str]]) -> str:
    """Extractor.remove_overlapping_entities (sorted by start, a later overlapping one dropped),
    then StatusLengthValidator#rewrite_entities."""
    entities.sort()
    rewritten: list[str] = []
    position = 0
    for start, end, replacement in entities:
        if start < position:
            continue
        rewritten.append(text[position:start])
        rewritten.append(replacement)
        position = end
    rewritten.append(text[position:])
    return "".join(rewritten)


def mastodon_length(text: str, url_length: int = MASTODON_URL_LENGTH) -> int:
    """Mastodon's count: grapheme clusters, each URL as `url_length`, `@u@dom` as `@u`.

    Mirrors StatusLengthValidator#countable_text (mastodon/mastodon
    app/validators/status_length_validator.rb): URLs are found by twitter-text's extractor
    with `extract_url_without_protocol: false` (so a bare `example.org` counts in full) and
    Mastodon's URL pattern (its schemes: gemini://, ipfs:// ... cost 23 too; its wider path
    rules), URLs over 4,096 characters are no URLs, mentions follow Mastodon's Extractor, and
    the rewritten text is measured with `grapheme_length`. Spoiler text is added by the caller.
    """
    if "://" not in text and "@" not in text:  # nothing to rewrite: the common case
        return graphemes(text)
    entities: list[tuple[int, int, str]] = []
    # twitter-text's URL pattern is costly on a whole post (most of a plan's check time). A URL
    # never spans white space, so it is matched only in the tokens holding "://", each with the
    # character before it for the pattern's look-behind; tests prove it equal to a whole-text scan.
    for token in _URL_TOKEN.finditer(text):
        base = max(0, token.start() - 1)
        for start, host_end, domain in _protocol_urls(text[base : token.end()]):
            entity = masto_url_entity(text, base + start, base + host_end, domain, url_length)
            if entity is not None:
                entities.append(entity)
    if "@" in text:
        entities.extend(masto_mentions(text))
    return graphemes(rewrite(text, entities))


def x_invalid_characters(text: str) -> list[str]:
    """The characters X refuses that `text` holds (twitter-text INVALID_CHARACTERS), named."""
    return [name for char, name in X_INVALID_CHARACTERS.items() if char in text]


def x_length(text: str) -> int:
    """X's weighted length (twitter-text v3 config): URLs 23, CJK and emoji 2, most else 1.

    https://docs.x.com/resources/fundamentals/counting-characters
    """
    from twitter_text import parse_tweet

    return int(parse_tweet(text).weightedLength)


# -- Bluesky facets -------------------------------------------------------------------------------


def _byte_offsets(text: str) -> list[int]:
    """UTF-8 byte offset of every code point index, plus one past the end."""
    offsets = [0] * (len(text) + 1)
    total = 0
    for index, char in enumerate(text):
        offsets[index] = total
        total += len(char.encode("utf-8"))
    offsets[len(text)] = total
    return offsets


@functools.cache
def _tlds() -> tuple[Any, Any]:
    # The TLD lists twitter-text ships (IANA root zone), standing in for the `tlds` npm package
    # Bluesky's isValidDomain uses.
    from twitter_text.regexp.valid_cctld import valid_cctld
    from twitter_text.regexp.valid_gtld import valid_gtld

    return valid_gtld, valid_cctld


def _is_valid_domain(domain: str) -> bool:
    tld = domain.rsplit(".", 1)[-1]
    # The `tlds` list is lower case and isValidDomain compares case-sensitively: the app makes
    # no link of `Example.Org`, so neither do we.
    return tld == tld.lower() and any(pattern.fullmatch(tld) for pattern in _tlds())


def _facet(offsets: list[int], start: int, end: int, feature: dict[str, str]) -> dict[str, Any]:
    return {
        "index": {"byteStart": offsets[start], "byteEnd": offsets[end]},
        "features": [feature],
    }


def bluesky_facets(
    text: str, resolve_handle: Callable[[str], str | None] | None = None
) -> list[dict[str, Any]]:
    """Link, tag and (when `resolve_handle` is given) mention facets for a Bluesky post.

    Follows detectFacets in bluesky-social/atproto packages/api/src/rich-text/detection.ts:
    - links: `http(s)://...`, or a bare domain with a known TLD (`example.org/path`) whose uri
      gets `https://` prepended; one trailing `.,;:!?` is stripped, then one `)` when the URL
      has no `(`.
    - tags: `#tag` after the start or white space, not purely numeric, trailing punctuation
      stripped; `tag` is given without `#`. Tags over 64 UTF-16 units are skipped, as the
      official client skips them.
    - cashtags: `$AAPL` (a letter and up to 4 letters or digits, after the start, white space
      or `(`, before white space, the end or punctuation) is a tag facet `$AAPL`, upper-cased.
    - mentions: a facet needs the account's DID, which only the network knows. Without
      `resolve_handle` (handle -> DID or None) mentions stay plain text, as they do when a
      handle does not resolve, rather than producing a facet the app would show broken.
    Offsets are UTF-8 byte offsets (https://docs.bsky.app/docs/advanced-guides/post-richtext).
    """
    patterns = _patterns()
    offsets = _byte_offsets(text)
    facets: list[dict[str, Any]] = []

    if resolve_handle is not None:
        for match in patterns["mention"].finditer(text):
            handle = match.group(2)
            if not _is_valid_domain(handle) and not handle.endswith(".test"):
                continue  # probably not a handle
            did = resolve_handle(handle)
            if did:
                facets.append(
                    _facet(
                        offsets,
                        match.start(1),
                        match.end(2),
                        {"$type": "app.bsky.richtext.facet#mention", "did": did},
                    )
                )

    for match in patterns["link"].finditer(text):
        uri = match.group(1)
        if not uri.startswith("http"):
            domain = match.group("domain")
            if not domain or not _is_valid_domain(domain):
                continue
            uri = "https://" + uri
        start, end = match.start(1), match.end(1)
        if uri[-1] in ".,;:!?":
            uri, end = uri[:-1], end - 1
        if uri.endswith(")") and "(" not in uri:
            uri, end = uri[:-1], end - 1
        facets.append(
            _facet(offsets, start, end, {"$type": "app.bsky.richtext.facet#link", "uri": uri})
        )

    for match in patterns["tag"].finditer(text):
        tag = match.group(2)
        if not tag:
            continue
        # JS trims white space here too, but the pattern already excludes every JS space.
        tag = patterns["trailing_punct"].sub("", tag)
        if not tag or utf16_units(tag) > TAG_MAX_UTF16:
            continue
        start = match.end(1)  # the '#' (or full-width '＃')
        facets.append(
            _facet(
                offsets,
                start,
                start + 1 + len(tag),
                {"$type": "app.bsky.richtext.facet#tag", "tag": tag},
            )
        )

    for match in patterns["cashtag"].finditer(text):
        ticker = match.group(2).upper()  # the client stores tickers upper-cased, with the `$`
        start = match.end(1)
        facets.append(
            _facet(
                offsets,
                start,
                start + 1 + len(ticker),
                {"$type": "app.bsky.richtext.facet#tag", "tag": "$" + ticker},
            )
        )
    # In text order, as RichText.detectFacets sorts them (packages/api/src/rich-text/rich-text.ts).
    facets.sort(key=lambda facet: int(facet["index"]["byteStart"]))
    return facets
