"""Languages, facets and link cards against the real PDS (tests/real_servers.py real_pds()).

Each test makes its own accounts; the record is read back through the PDS's own API
(com.atproto.repo.listRecords, com.atproto.sync.getBlob), never through commcal.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

from conftest import MakeProject
from publish_support import config
from real_servers import PdsAccount, real_pds
from test_linkcard import DESCRIPTION, TITLE, answer, greek_page, serving
from typer.testing import CliRunner

from commcal.cli import app

NOW = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)


def png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 30, 60)).save(out, format="PNG")
    return out.getvalue()


def publish_post(
    make_project: MakeProject, account: PdsAccount, text: str, *, item: str = "", card: bool = False
) -> dict[str, Any]:
    """Publish one post of `text` (the item's extra keys in `item`) as `account`; the report."""
    channel = (
        "  sky:\n    type: bluesky\n"
        f"    service: {account.service}\n"
        f"    handle: {account.handle}\n"
        "    app_password: ${SKY_PASSWORD}\n"
        f"    card: {'true' if card else 'false'}\n"
    )
    root = make_project(
        config=config(channel, publish="max_late: 1d"),
        calendars={
            "main.yaml": "items:\n  - id: news\n    channels: [sky]\n    template: posts/news\n"
            "    at: 2026-01-01 08:59\n" + item
        },
        templates={"posts/news.j2": text + "\n"},
    )
    result = CliRunner().invoke(
        app,
        ["-C", str(root), "publish", "--format", "json", "--now", NOW.isoformat()],
        env={"SKY_PASSWORD": account.password},
    )
    assert result.exit_code == 0, result.output
    assert account.password not in result.output
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["counts"] == {"sent": 1}, report
    return report


def test_real_pds_a_bilingual_post_with_mention_cashtag_and_card(
    make_project: MakeProject,
) -> None:
    account, friend = real_pds(), real_pds()
    image = png()
    head = '<meta charset="utf-8"><meta property="og:image" content="/cover.png">'
    with serving() as pages:
        pages.routes["/event"] = answer(greek_page(head, "utf-8"), "text/html")
        pages.routes["/cover.png"] = answer(image, "image/png")
        text = f"Καλημέρα @{friend.handle}! $aapl ανεβαίνει #αγορά {pages.url('/event')}"
        item = "    lang: [el, en]\n"
        report = publish_post(make_project, account, text, item=item, card=True)
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
    publish_post(make_project, account, text)
    [record] = account.posts()
    features = [f["features"][0] for f in record["value"]["facets"]]
    assert features == [{"$type": "app.bsky.richtext.facet#tag", "tag": "$MSFT"}]
    assert record["value"]["langs"] == ["en"]  # the project's locale
