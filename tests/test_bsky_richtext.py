"""Our Bluesky facets against Bluesky's own client library (@atproto/api RichText), run in node,
and mentions resolved at send time against a loopback PDS.

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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bsky_support import send_to_pds
from werkzeug import Request, Response

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


# -- mentions resolved at send time -----------------------------------------------------------


def _send_resolving(
    httpserver: Any, text: str, resolve: Callable[[Request], Response]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Send `text`; the facets of the created record, and the handles looked up."""
    asked: list[str] = []

    def lookup(request: Request) -> Response:
        asked.append(request.args["handle"])
        return resolve(request)

    httpserver.expect_request("/xrpc/com.atproto.identity.resolveHandle").respond_with_handler(
        lookup
    )
    record, _ = send_to_pds(httpserver, text, resolve_seconds=0.5)
    return record.get("facets", []), asked


def _mentions(facets: list[dict[str, Any]]) -> list[str]:
    return [
        feature["did"]
        for facet in facets
        for feature in facet["features"]
        if feature["$type"].endswith("#mention")
    ]


def test_a_handle_named_twice_is_looked_up_once(httpserver: Any) -> None:
    def resolve(request: Request) -> Response:
        return Response(json.dumps({"did": "did:plc:alice"}), content_type="application/json")

    text = "Γεια @alice.test και πάλι @alice.test #καλημέρα"
    facets, asked = _send_resolving(httpserver, text, resolve)
    assert asked == ["alice.test"]
    assert _mentions(facets) == ["did:plc:alice", "did:plc:alice"]


@pytest.mark.parametrize(
    "answer",
    [
        Response("{}", status=500, content_type="application/json"),  # the PDS fails
        Response('{"did": "not a did"}', content_type="application/json"),  # garbage in a 200
        Response("<html>", content_type="text/html"),
        Response(
            '{"error": "InvalidRequest", "message": "Unable to resolve handle"}',
            status=400,
            content_type="application/json",
        ),
    ],
    ids=["500", "garbage-did", "html", "unknown-handle"],
)
def test_an_unresolvable_handle_stays_plain_text_and_the_post_goes_out(
    httpserver: Any, answer: Response
) -> None:
    facets, asked = _send_resolving(
        httpserver, "Με @ghost.test στο https://example.org", lambda request: answer
    )
    assert asked == ["ghost.test"]
    assert _mentions(facets) == []
    assert [f["features"][0]["uri"] for f in facets] == ["https://example.org"]


def test_a_stalling_lookup_is_bounded() -> None:
    from pytest_httpserver import HTTPServer

    def stall(request: Request) -> Response:
        time.sleep(3)
        return Response(json.dumps({"did": "did:plc:late"}), content_type="application/json")

    # Threaded: the stalled lookup must not hold up the createRecord that follows it.
    server = HTTPServer(threaded=True)
    server.start()
    try:
        started = time.monotonic()
        facets, _ = _send_resolving(server, "Με @slow.test", stall)
        assert time.monotonic() - started < 2.0  # resolve_seconds is 0.5
    finally:
        server.clear()
        server.stop()
    assert _mentions(facets) == []
