"""Our Bluesky facets against Bluesky's own client library (@atproto/api RichText), run in node.

../shared/servers/bsky_richtext.js reads one JSON string a line and prints RichText's facets
(`detectFacetsWithoutResolution`: a mention's `did` is its handle). The test is skipped where node,
npm or the package is missing, unless COMMCAL_REQUIRE_BSKY=1: then it installs @atproto/api with
npm into $TMPDIR/commcal-servers/richtext itself.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from commcal.channels.text import bluesky_facets

HERE = Path(__file__).resolve()
REQUIRED = os.environ.get("COMMCAL_REQUIRE_BSKY") == "1"
PACKAGE_DIR = Path(os.environ.get("TMPDIR") or "/tmp") / "commcal-servers" / "richtext"

# Texts where a facet is easy to get wrong: offsets after Greek and emoji (UTF-8 bytes differ
# from code points and from UTF-16 units), trailing punctuation, tags with digits, cashtags.
CORPUS = [
    "Καλημέρα! Δείτε https://example.org/εκδήλωση?α=1 #Αθήνα2026",
    "🎉🎉 launch day: https://example.com/launch. Be there!",
    "(see https://example.com/a) and https://example.com/b), then https://en.wikipedia.org/wiki/Foo_(bar)",
    "links at the end: https://example.com/x?, https://example.com/y; https://example.com/z!",
    "bare domains: example.org/path, docs.example.co.uk and not.a.tld.invalidtld",
    "#tag1 #2024 #1a #a1 #_x #Kenya2025! #ελληνικά… #全角 ＃fullwidth #️⃣ #a#b",
    "$AAPL rises, $aapl too; ($MSFT) $BRK.B $A1 $TOOLONG $1AB $X: $Y! $Z’s",
    "price $5 and $AAPL\n$TSLA\tend $GOOG",
    "hi @alice.test and @bob.bsky.social, (@carol.example.com) email@example.com @nodot",
    "👨‍👩‍👧‍👦 family @dave.test 🇬🇷 #οικογένεια https://example.org/👋",
    "mixed: Ναι @eve.test $NVDA #ai https://example.org/a.b.c. τέλος",
    "#" + "α" * 64 + " #" + "β" * 65 + " #a" + "👋" * 31 + " #a" + "👋" * 32,
    "HTTPS://EXAMPLE.COM/UPPER and Example.Org/mixed",
    "trailing space tag #tag  and #tag.\n#start-of-line",
    "$ABCDE $ABCDEF x$AAPL $AAPL\n",
    "ends with a cashtag $AAPL",
    "ends with a mention @alice.test",
]


def _script() -> Path | None:
    """bsky_richtext.js in shared/servers beside the checkout (or a worktree's parent)."""
    named = os.environ.get("COMMCAL_BSKY_RICHTEXT_SCRIPT")
    if named:
        return Path(named)
    for parent in HERE.parents[1:4]:
        candidate = parent / "shared" / "servers" / "bsky_richtext.js"
        if candidate.is_file():
            return candidate
    return None


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"COMMCAL_REQUIRE_BSKY=1 but {reason}")
    pytest.skip(f"{reason} (COMMCAL_REQUIRE_BSKY=1 makes this test install it)")


def _oracle(texts: list[str]) -> list[dict[str, Any]]:
    script = _script()
    if script is None:
        _unavailable("shared/servers/bsky_richtext.js is missing")
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node or npm is not on PATH")
    assert script is not None and node is not None and npm is not None
    modules = PACKAGE_DIR / "node_modules"
    if not (modules / "@atproto" / "api" / "package.json").is_file():
        if not REQUIRED:
            _unavailable(f"@atproto/api is not installed in {PACKAGE_DIR}")
        PACKAGE_DIR.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "@atproto/api"],
            cwd=PACKAGE_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-2000:]
    done = subprocess.run(
        [node, str(script)],
        input="".join(json.dumps(text) + "\n" for text in texts),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NODE_PATH": str(modules)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


def _plain(facets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # RichText marks mention facets with "$type": "app.bsky.richtext.facet" (optional in the
    # lexicon); compared are the byte range and the features.
    return [{"index": facet["index"], "features": facet["features"]} for facet in facets]


def test_our_facets_equal_the_official_clients() -> None:
    answers = _oracle(CORPUS)
    assert [answer["text"] for answer in answers] == CORPUS
    for text, answer in zip(CORPUS, answers, strict=True):
        ours = bluesky_facets(text, resolve_handle=lambda handle: handle)
        assert _plain(ours) == _plain(answer["facets"]), text


def test_the_corpus_covers_every_feature() -> None:
    """The comparison above means something only if the corpus makes each kind of facet."""
    made = [bluesky_facets(text, resolve_handle=lambda handle: handle) for text in CORPUS]
    features = [f for facets in made for facet in facets for f in facet["features"]]
    kinds = {f["$type"].rsplit("#", 1)[1] for f in features}
    assert kinds == {"link", "tag", "mention"}
    assert {f["tag"] for f in features if f.get("tag", "").startswith("$")} >= {"$AAPL", "$MSFT"}
