"""Lengths counted each network's way, and Bluesky facets with exact UTF-8 offsets."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commcal.channels.text import (
    bluesky_facets,
    graphemes,
    mastodon_length,
    utf8_bytes,
    utf16_units,
    x_length,
)

FAMILY = "👨‍👩‍👧‍👦"  # man, ZWJ, woman, ZWJ, girl, ZWJ, boy


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("Καλημέρα", 8),
        ("Habari za asubuhi", 17),
        ("👋🏽", 1),  # waving hand + skin tone modifier
        ("👍🏿👍🏻", 2),
        ("🇬🇷🇰🇪", 2),  # two flags, each a pair of regional indicators
        (FAMILY, 1),
        ("e\u0301", 1),  # e + combining acute accent
        ("ά", 1),
        ("", 0),
    ],
)
def test_graphemes(text: str, count: int) -> None:
    assert graphemes(text) == count


def test_byte_and_utf16_counts() -> None:
    assert utf8_bytes("Καλημέρα") == 16
    assert utf8_bytes(FAMILY) == 25
    assert utf16_units(FAMILY) == 11
    assert utf16_units("😀a") == 3


def test_mastodon_length_counts_urls_as_23_and_remote_mentions_as_local() -> None:
    assert mastodon_length("https://example.org/" + "x" * 100) == 23
    assert mastodon_length("hi @alice@mastodon.social") == len("hi @alice")
    assert mastodon_length("hi @alice") == 9
    # A bare domain has no protocol: Mastodon counts it in full.
    assert mastodon_length("example.org/abc") == 15
    assert (
        mastodon_length(f"Καλημέρα {FAMILY} 🇬🇷 https://example.org/δρόμος")
        == 8 + 1 + 1 + 1 + 1 + 1 + 23
    )


def test_x_length_weights() -> None:
    assert x_length("hello") == 5
    assert x_length("日本語") == 6
    assert x_length("https://example.org/" + "a" * 100) == 23
    assert x_length("Καλημέρα") == 8  # Greek is in the weight-1 ranges
    assert x_length(FAMILY) == 2  # one emoji counts 2


def sliced(text: str, facet: dict[str, Any]) -> str:
    index = facet["index"]
    return text.encode("utf-8")[index["byteStart"] : index["byteEnd"]].decode("utf-8")


def test_link_offsets_after_greek_and_emoji() -> None:
    text = f"Γεια σου κόσμε {FAMILY}🇬🇷 δες https://example.org/path?q=1, τώρα!"
    facets = bluesky_facets(text)
    assert len(facets) == 1
    assert facets[0]["features"] == [
        {"$type": "app.bsky.richtext.facet#link", "uri": "https://example.org/path?q=1"}
    ]
    assert sliced(text, facets[0]) == "https://example.org/path?q=1"
    prefix = f"Γεια σου κόσμε {FAMILY}🇬🇷 δες "
    assert facets[0]["index"]["byteStart"] == len(prefix.encode("utf-8"))


def test_bare_domain_gets_https_and_unknown_tld_is_skipped() -> None:
    text = "Δείτε example.org/εκδηλώσεις. Όχι report.txt ή e.g. αυτό"
    facets = bluesky_facets(text)
    assert [f["features"][0]["uri"] for f in facets] == ["https://example.org/εκδηλώσεις"]
    assert sliced(text, facets[0]) == "example.org/εκδηλώσεις"


def test_trailing_punctuation_and_parentheses() -> None:
    text = "(see https://example.org/a) and https://en.wikipedia.org/wiki/Mars_(planet)!"
    uris = [f["features"][0]["uri"] for f in bluesky_facets(text)]
    assert uris == ["https://example.org/a", "https://en.wikipedia.org/wiki/Mars_(planet)"]


def test_hashtags() -> None:
    text = f"{FAMILY} #Αθήνα! #2025 #Kenya2025, #a_b-c ＃全角 #️⃣ mid#tag #" + "x" * 65
    facets = bluesky_facets(text)
    tags = [f["features"][0]["tag"] for f in facets]
    assert tags == ["Αθήνα", "Kenya2025", "a_b-c", "全角"]
    for facet, tag in zip(facets, tags, strict=True):
        assert sliced(text, facet) in (f"#{tag}", f"＃{tag}")
        assert facet["features"][0]["$type"] == "app.bsky.richtext.facet#tag"


def test_tag_limit_is_the_official_clients_64_utf16_units() -> None:
    assert bluesky_facets("#" + "α" * 64)[0]["features"][0]["tag"] == "α" * 64
    assert bluesky_facets("#" + "α" * 65) == []
    # Each emoji is 2 UTF-16 units: 31 of them after "a" is 63 units, 32 is 65. The lexicon
    # would take 64 graphemes, but the app makes no facet of such a tag, so neither do we.
    assert len(bluesky_facets("#a" + "👋" * 31)) == 1
    assert bluesky_facets("#a" + "👋" * 32) == []


def test_cashtags_are_upper_case_tag_facets() -> None:
    text = "Ναι $aapl, ($MSFT) $BRK.B $TOOLONG $1AB"
    facets = bluesky_facets(text)
    assert [f["features"][0]["tag"] for f in facets] == ["$AAPL", "$MSFT", "$BRK"]
    assert [sliced(text, f) for f in facets] == ["$aapl", "$MSFT", "$BRK"]


def test_mentions_need_a_resolver() -> None:
    text = "Καλημέρα @alice.bsky.social και @bob.example.txt"
    assert bluesky_facets(text) == []
    facets = bluesky_facets(text, resolve_handle=lambda handle: f"did:plc:{handle[:5]}")
    assert len(facets) == 1
    assert sliced(text, facets[0]) == "@alice.bsky.social"
    assert facets[0]["features"] == [
        {"$type": "app.bsky.richtext.facet#mention", "did": "did:plc:alice"}
    ]
    assert bluesky_facets(text, resolve_handle=lambda handle: None) == []


WORDS = st.sampled_from(
    [
        "Καλημέρα",
        "κόσμε,",
        "Habari",
        "asubuhi.",
        "日本語",
        "👋🏽",
        "🇬🇷",
        FAMILY,
        "e\u0301",
        "(",
        ")",
        "!",
        "#",
        "#tag",
        "#Αθήνα!",
        "#2025",
        "＃全角",
        "@alice.bsky.social",
        "example.org",
        "example.org/δρόμος.",
        "https://example.org",
        "https://example.org/a_(b)",
        "(https://example.org/x)",
        "http://εε.gr/?q=ά&b=1;",
    ]
)
SEPARATORS = st.sampled_from([" ", "  ", "\n", "\u3000", "\u00a0", ""])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(WORDS, SEPARATORS), max_size=25), st.text(max_size=20))
def test_every_facet_slices_to_its_feature(parts: list[tuple[str, str]], noise: str) -> None:
    text = "".join(word + sep for word, sep in parts) + noise
    for facet in bluesky_facets(text, resolve_handle=lambda handle: "did:plc:x"):
        piece = sliced(text, facet)  # raises if an offset splits a character
        feature = facet["features"][0]
        kind = feature["$type"]
        if kind.endswith("#link"):
            assert feature["uri"] in (piece, "https://" + piece)
        elif kind.endswith("#tag"):
            assert piece in ("#" + feature["tag"], "＃" + feature["tag"])
            assert not feature["tag"].isdigit()
        else:
            assert piece.startswith("@") and "." in piece


def _mastodon_length_whole_text(text: str, url_length: int = 23) -> int:
    """The straightforward reference: Mastodon's URL pattern over the whole text."""
    from commcal.channels.text import (
        _masto_url_pattern,
        graphemes,
        masto_mentions,
        masto_url_entity,
        rewrite,
    )

    entities = []
    for found in _masto_url_pattern().finditer(text):
        if not found.group(4):
            continue
        host_end = found.end(6) if found.group(6) else found.end(5)
        entity = masto_url_entity(text, found.start(3), host_end, found.group(5), url_length)
        if entity is not None:
            entities.append(entity)
    entities.extend(masto_mentions(text))
    return graphemes(rewrite(text, entities))


_PIECES = st.sampled_from(
    [
        "https://example.org",
        "http://εμείς.gr/σελίδα?q=1",
        "https://x.co/a_(b)",
        "(https://example.org/path).",
        "see:https://a.b/c?d=e&f=g,",
        "ftp://files.example.org",
        "gemini://gemini.example.org/log",
        "ipfs://bafy.example/x",
        "@bob@example.com@x",
        "@anna@social.example://",
        "example.org/no-protocol",
        "@anna@social.example",
        "@bob",
        "https://",
        "://",
        "https://bad",
        "wwwhttps://x.org",
        "😀",
        "Καλημέρα",
        "Habari",
        " ",
        "\n",
        "\u00a0",
        "\u3000",
        "!",
        ".",
        ",",
        "(",
        ")",
        "#tag",
    ]
)


@given(st.lists(_PIECES, max_size=12).map("".join))
@settings(max_examples=400, deadline=None)
def test_mastodon_length_token_scan_equals_whole_text_scan(text: str) -> None:
    assert mastodon_length(text) == _mastodon_length_whole_text(text)


def _query_end_by_hand(text: str, position: int) -> int:
    """Mastodon's query rule, character by character: the oracle for the pattern in text.py."""
    from commcal.channels.text import _MASTO_QUERY, _MASTO_QUERY_END

    end, scan = position, position + 1
    while scan < len(text) and (text[scan] in _MASTO_QUERY or ord(text[scan]) >= 0xA0):
        if text[scan] in _MASTO_QUERY_END or ord(text[scan]) >= 0xA0:
            end = scan + 1
        scan += 1
    return end


@given(st.text(alphabet="?a_&=#/-.,!()[]@~ \n\u00a0é😀\u2028%+;:Z9", max_size=16))
@settings(max_examples=500, deadline=None)
def test_a_query_ends_where_mastodon_ends_it(tail: str) -> None:
    from commcal.channels.text import _masto_url_end

    text = "?" + tail
    assert _masto_url_end(text, 0) == _query_end_by_hand(text, 0)


# -- counting rules checked against the networks' own code (issue 15 point 22) --------------------


@pytest.mark.parametrize(
    "link",
    [
        "gemini://gemini.example.org/" + "a" * 60,
        "ipfs://bafybeigdyrzt.ipfs.io/" + "b" * 60,
        "ipns://docs.example.org/" + "c" * 60,
        "dat://archive.example.org/" + "d" * 60,
        "dweb://site.example.org/" + "e" * 60,
        "ssb://pub.example.org/" + "f" * 60,
        "gopher://hole.example.org/" + "g" * 60,
        "HTTPS://EXAMPLE.ORG/" + "h" * 60,
    ],
)
def test_mastodon_counts_each_of_its_url_schemes_as_23(link: str) -> None:
    """config/initializers/twitter_regex.rb: `(?:https?|dat|dweb|ipfs|ipns|ssb|gopher|gemini)://`"""
    assert mastodon_length(f"Read {link} today") == len("Read ") + 23 + len(" today")


@pytest.mark.parametrize(
    "link",
    [
        "ftp://files.example.org/" + "a" * 40,
        "xmpp:room@conference.example.org",
        "magnet:?xt=urn",
        # Mastodon's pattern wants a domain with a known TLD: a bare IPFS CID is none.
        "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
    ],
)
def test_other_schemes_count_in_full_on_mastodon(link: str) -> None:
    assert mastodon_length(link) == len(link)


def test_a_mastodon_url_over_4096_characters_counts_in_full() -> None:
    """twitter-text Extractor#is_valid_domain: url.length <= MAX_URL_LENGTH (4096)."""
    base = "https://example.org/"
    at_limit = base + "a" * (4096 - len(base))
    assert mastodon_length(at_limit) == 23
    assert mastodon_length(at_limit + "a") == 4097
    assert mastodon_length(f"see {at_limit}a and https://example.org/b") == 4 + 4097 + 5 + 23
    # The domain is counted in its ASCII (punycode) form: "δρόμος.gr" is 9, "xn--kxaekss5a.gr" 16.
    greek = "https://δρόμος.gr/"
    growth = len("δρόμος.gr".encode("idna")) - len("δρόμος.gr")
    fits = greek + "a" * (4096 - len(greek) - growth)
    assert mastodon_length(fits) == 23
    assert mastodon_length(fits + "a") == len(fits) + 1
    # A label over 63 characters cannot be converted to ASCII: no URL at all.
    long_label = "https://" + "a" * 64 + ".org/x"
    assert mastodon_length(long_label) == len(long_label)


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("@bob@example.com", 4),
        ("@bob@example.com@x", 18),  # end_mention_match: another @ follows: no mention
        ("@bob@example.com://", 19),  # ... or ://
        ("hi @bob@example.com, and @ann", len("hi @bob, and @ann")),
        ("=@bob@example.com", 17),  # MENTION_RE's look-behind refuses = / and word characters
        ("a@bob@example.com", 17),
        ("@bob.smith@social.example", len("@bob.smith")),
        ("@bob@" + "d" * 250 + ".org", 4 + 1 + 250 + 4),  # domain over 253: no mention
        ("@bob@" + "d" * 245 + ".org", 4),
        ("@jürgen@example.com", len("@jürgen@example.com")),  # ü is no username character
    ],
)
def test_mastodon_mentions_follow_its_extractor(text: str, count: int) -> None:
    """app/lib/extractor.rb extract_mentions_or_lists_with_indices with Account::MENTION_RE."""
    assert mastodon_length(text) == count


def test_x_invalid_characters_are_named() -> None:
    from commcal.channels.text import x_invalid_characters

    assert x_invalid_characters("Hello") == []
    assert x_invalid_characters("\ufeffHello \ufffe and \uffff") == [
        "U+FFFE",
        "U+FEFF (byte order mark)",
        "U+FFFF",
    ]
