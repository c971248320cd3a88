"""What `preview` and `export html` show of an item's media: each file with its size, pixel
dimensions and alt text; thumbnails that need no request, with the alt text as the image's alt
attribute and visible under it."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

from conftest import MakeProject
from PIL import Image
from typer.testing import CliRunner

from commcal.cli import app

ALT = "Τρεις εθελοντές στον πάγκο της αγοράς"
HOSTILE = "</script><img src=https://evil.example/x.png>"


def project(make_project: MakeProject, alt: str = ALT) -> Path:
    root = make_project(
        config="timezone: UTC\nlocale: el\nchannels:\n"
        '  mastodon: {type: mastodon, instance: "http://127.0.0.1:9", token: "${M_T}"}\n',
        calendars={
            "c.yaml": "items:\n  - id: market\n    channels: [mastodon]\n"
            "    template: posts/tip\n    at: 2026-12-02 09:00\n    media:\n"
            f"      - {{file: media/stall.png, alt: {json.dumps(alt)}, focus: [0, 0.5]}}\n"
            "      - {url: 'https://example.org/map.png', alt: 'Χάρτης'}\n"
        },
    )
    (root / "media").mkdir()
    Image.new("RGB", (1200, 800), "teal").save(root / "media" / "stall.png")
    return root


def invoke(root: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["-C", str(root), *args, "--now", "2026-12-01T00:00Z"])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_preview_shows_each_file_with_size_dimensions_and_alt(make_project: MakeProject) -> None:
    root = project(make_project)
    size = (root / "media" / "stall.png").stat().st_size
    out = invoke(root, "preview", "market")
    assert f"[image 1] media/stall.png · image/png · {size:,} bytes · 1200x800" in out
    assert f"alt: {ALT}" in out
    assert "[image 2] https://example.org/map.png · image/png" in out and "alt: Χάρτης" in out


def test_preview_json_and_markdown_carry_the_media(make_project: MakeProject) -> None:
    root = project(make_project)
    (delivery,) = json.loads(invoke(root, "preview", "market", "--format", "json"))["deliveries"]
    first, second = delivery["media"]
    assert first == {
        "file": "media/stall.png",
        "url": None,
        "sent": None,
        "type": "image/png",
        "bytes": (root / "media" / "stall.png").stat().st_size,
        "width": 1200,
        "height": 800,
        "seconds": None,
        "alt": ALT,
        "focus": [0.0, 0.5],
    }
    assert second["url"] == "https://example.org/map.png" and second["bytes"] is None
    markdown = invoke(root, "preview", "market", "--format", "markdown")
    assert f"![{ALT}](media/stall.png)" in markdown


def test_export_html_shows_a_thumbnail_with_its_alt_text(make_project: MakeProject) -> None:
    root = project(make_project)
    page = root / "month.html"
    invoke(root, "export", "html", "-o", str(page))
    html = page.read_text(encoding="utf-8")
    found = re.search(r'id="commcal-data"[^>]*>(.*?)</script>', html, re.S)
    assert found is not None
    data = json.loads(found[1])
    variant = data["groups"][0][-1][0]
    (alt, caption, thumb), (url_alt, url_caption, url_thumb) = variant[-1]
    assert alt == ALT and caption.startswith("media/stall.png · image/png")
    assert thumb.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(thumb.split(",", 1)[1]))) as small:
        assert small.size == (240, 160)  # the longer side 240, the ratio kept
    # a URL is not fetched for the page: no thumbnail, its address and guessed type shown
    assert (url_alt, url_caption, url_thumb) == (
        "Χάρτης",
        "https://example.org/map.png · image/png",
        "",
    )
    assert "img-src data:;" in html  # the page's CSP: images from data: URIs only


def test_hostile_alt_text_stays_text_in_the_page(make_project: MakeProject) -> None:
    root = project(make_project, alt=HOSTILE)
    page = root / "month.html"
    invoke(root, "export", "html", "-o", str(page))
    html = page.read_text(encoding="utf-8")
    assert HOSTILE not in html and "<img" not in html
    assert "evil.example" in html  # inside the JSON data, with its '<' escaped
