"""Languages, facets and link cards against the real PDS (tests/real_servers.py real_pds()).

Each test makes its own accounts; the record is read back through the PDS's own API
(com.atproto.repo.listRecords, com.atproto.sync.getBlob), never through commcal.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from conftest import MakeProject
from publish_support import config
from real_servers import real_pds
from test_linkcard import DESCRIPTION, TITLE, Pages, answer, greek_page
from typer.testing import CliRunner

from commcal.cli import app

NOW = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def pages() -> Iterator[Pages]:
    server = Pages()
    yield server
    server.server.shutdown()
    server.server.server_close()


def png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 30, 60)).save(out, format="PNG")
    return out.getvalue()


def test_real_pds_a_bilingual_post_with_mention_cashtag_and_card(
    make_project: MakeProject, pages: Pages
) -> None:
    account, friend = real_pds(), real_pds()
    image = png()
    head = '<meta charset="utf-8"><meta property="og:image" content="/cover.png">'
    pages.routes["/event"] = answer(greek_page(head, "utf-8"), "text/html")
    pages.routes["/cover.png"] = answer(image, "image/png")
    text = f"Καλημέρα @{friend.handle}! $aapl ανεβαίνει #αγορά {pages.url('/event')}"
    channel = (
        "  sky:\n    type: bluesky\n"
        f"    service: {account.service}\n"
        f"    handle: {account.handle}\n"
        "    app_password: ${SKY_PASSWORD}\n"
        "    card: true\n"
    )
    root = make_project(
        config=config(channel, publish="max_late: 1d"),
        calendars={
            "main.yaml": "items:\n  - id: news\n    channels: [sky]\n    template: posts/news\n"
            "    at: 2026-01-01 08:59\n    lang: [el, en]\n"
        },
        templates={"posts/news.j2": text + "\n"},
    )
    result = CliRunner().invoke(
        app,
        ["-C", str(root), "publish", "--format", "json", "--now", NOW.isoformat()],
        env={"SKY_PASSWORD": account.password},
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["counts"] == {"sent": 1}, report
    assert "(" not in report["deliveries"][0]["detail"]  # no note: nothing was left out

    [record] = account.posts()
    post = record["value"]
    assert post["text"] == text
    assert post["langs"] == ["el", "en"]
    raw = text.encode()
    spans = [
        (raw[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode(), f["features"][0])
        for f in post["facets"]
    ]
    assert spans == [
        (f"@{friend.handle}", {"$type": "app.bsky.richtext.facet#mention", "did": friend.did}),
        ("$aapl", {"$type": "app.bsky.richtext.facet#tag", "tag": "$AAPL"}),
        ("#αγορά", {"$type": "app.bsky.richtext.facet#tag", "tag": "αγορά"}),
        (
            pages.url("/event"),
            {"$type": "app.bsky.richtext.facet#link", "uri": pages.url("/event")},
        ),
    ]
    external = post["embed"]["external"]
    assert post["embed"]["$type"] == "app.bsky.embed.external"
    assert (external["uri"], external["title"], external["description"]) == (
        pages.url("/event"),
        TITLE,
        DESCRIPTION,
    )
    thumb = external["thumb"]
    assert thumb["mimeType"] == "image/png" and thumb["size"] == len(image)
    assert account.blob(thumb["ref"]["$link"]) == image


def test_real_pds_a_handle_that_does_not_resolve_stays_text(make_project: MakeProject) -> None:
    account = real_pds()
    text = "Γεια @nobody-here.test και $MSFT"
    channel = (
        "  sky:\n    type: bluesky\n"
        f"    service: {account.service}\n"
        f"    handle: {account.handle}\n"
        "    app_password: ${SKY_PASSWORD}\n"
    )
    root = make_project(
        config=config(channel, publish="max_late: 1d"),
        calendars={
            "main.yaml": "items:\n  - id: hi\n    channels: [sky]\n    template: posts/hi\n"
            "    at: 2026-01-01 08:59\n"
        },
        templates={"posts/hi.j2": text + "\n"},
    )
    result = CliRunner().invoke(
        app,
        ["-C", str(root), "publish", "--format", "json", "--now", NOW.isoformat()],
        env={"SKY_PASSWORD": account.password},
    )
    assert result.exit_code == 0, result.output
    [record] = account.posts()
    features = [f["features"][0] for f in record["value"]["facets"]]
    assert features == [{"$type": "app.bsky.richtext.facet#tag", "tag": "$MSFT"}]
    assert record["value"]["langs"] == ["en"]  # the project's locale
