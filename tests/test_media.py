"""`media:` in calendars: parsing (file:line and a fix for every bad entry), the checks each
network's limits make offline (`validate`), fitted copies, and the MP4 reader."""

from __future__ import annotations

import os
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from commcal.check import plan
from commcal.cli import app
from commcal.mediacheck import mp4_info
from commcal.project import load_project
from commcal.validate import validate
from commcal.window import Span
from tests.conftest import MakeProject

START = datetime(2026, 12, 1, tzinfo=UTC)
SPAN = Span(START, START + timedelta(days=30))

CONFIG = """\
timezone: Europe/Athens
locale: el
channels:
  mastodon: {type: mastodon, instance: "http://127.0.0.1:9", token: "${M_TOKEN}"}
  bluesky:
    {type: bluesky, service: "http://127.0.0.1:9", handle: a.example.org, app_password: "${B_P}"}
  matrix:
    type: matrix
    homeserver: "http://127.0.0.1:9"
    access_token: "${X_TOKEN}"
    room_id: "!r:example.org"
"""


def picture(path: Path, width: int = 64, height: int = 48, *, pad: int = 0) -> Path:
    """A real PNG (Pillow reads its header), padded after its end to make it `pad` bytes
    bigger: a large file without the cost of encoding a large picture."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), "teal").save(path)
    if pad:
        with open(path, "ab") as f:
            f.write(b"\0" * pad)
    return path


def item(media: str, channels: str = "[mastodon, bluesky, matrix]", extra: str = "") -> str:
    return (
        "items:\n"
        "  - id: market\n"
        f"    channels: {channels}\n"
        "    template: posts/tip\n"
        "    at: 2026-12-02 09:00\n"
        f"{extra}"
        f"    media:\n{media}"
    )


def problems(root: Path) -> list[str]:
    return [str(p) for p in validate(load_project(root), SPAN).problems]


def project(make_project: MakeProject, media: str, **kw: str) -> Path:
    root = make_project(config=kw.pop("config", CONFIG), calendars={"c.yaml": item(media, **kw)})
    picture(root / "media" / "cover.png")
    return root


def test_greek_alt_text_reaches_each_channel_message(make_project: MakeProject) -> None:
    root = project(
        make_project,
        "      - file: media/cover.png\n"
        "        alt: {el: 'Τρεις εθελοντές στον πάγκο της αγοράς', en: 'Three volunteers'}\n"
        "        focus: [0, 0.5]\n",
    )
    assert problems(root) == []
    planned = plan(load_project(root), SPAN.start, SPAN.end)
    assert {p.delivery.channel for p in planned} == {"mastodon", "bluesky", "matrix"}
    for entry in planned:
        assert entry.message is not None
        (media,) = entry.message.media
        assert media.alt == "Τρεις εθελοντές στον πάγκο της αγοράς"
        assert media.path == str(root / "media" / "cover.png")
        assert media.focus == (0.0, 0.5)


def test_a_file_without_alt_text_is_named_at_its_line(make_project: MakeProject) -> None:
    root = project(make_project, "      - file: media/cover.png\n")
    (shown,) = problems(root)
    assert shown.startswith("calendars/c.yaml:7:9: error:"), shown
    assert "needs alt: text" in shown and "add alt:" in shown


def test_alt_text_for_another_locale_only_is_a_problem(make_project: MakeProject) -> None:
    root = project(make_project, "      - {file: media/cover.png, alt: {en: 'Three volunteers'}}\n")
    (shown,) = problems(root)
    assert "calendars/c.yaml:7:" in shown
    assert "no text for the item's locale 'el' (it has en)" in shown and "add el:" in shown


def test_a_typo_in_an_entry_key_gets_did_you_mean(make_project: MakeProject) -> None:
    root = project(
        make_project, "      - file: media/cover.png\n        alt: 'Stall'\n        focsu: [0, 0]\n"
    )
    (shown,) = problems(root)
    assert shown.startswith("calendars/c.yaml:9:9: error: unknown key 'focsu'"), shown
    assert "did you mean 'focus'?" in shown


@pytest.mark.parametrize(
    ("focus", "said"),
    [("[2, 0]", "outside -1..1"), ("[0]", "two numbers"), ("centre", "two numbers")],
)
def test_a_bad_focus_is_explained(make_project: MakeProject, focus: str, said: str) -> None:
    root = project(make_project, f"      - {{file: media/cover.png, alt: Stall, focus: {focus}}}\n")
    (shown,) = problems(root)
    assert shown.startswith("calendars/c.yaml:7:") and said in shown, shown
    assert "each from -1 to 1" in shown


def test_a_missing_file_suggests_the_one_there(make_project: MakeProject) -> None:
    root = project(make_project, "      - {file: media/covr.png, alt: Stall}\n")
    (shown,) = problems(root)
    assert "calendars/c.yaml:7:" in shown and "'media/covr.png' does not exist" in shown
    assert "did you mean 'media/cover.png'?" in shown


def test_paths_out_of_the_project_or_media_folder_are_refused(
    make_project: MakeProject, tmp_path: Path
) -> None:
    outside = picture(tmp_path / "secret.png")
    root = project(
        make_project,
        "      - {file: ../secret.png, alt: a}\n"
        "      - {file: media/link.png, alt: b}\n"
        "      - {file: /etc/passwd, alt: c}\n"
        "      - {file: calendars/c.yaml, alt: d}\n"
        "      - {url: 'http://example.org/a.png', alt: e}\n",
    )
    (root / "media" / "link.png").symlink_to(outside)
    shown = problems(root)
    assert len(shown) == 5, shown
    assert "calendars/c.yaml:7:" in shown[0] and "leads out of the project" in shown[0]
    assert "calendars/c.yaml:8:" in shown[1] and "leads out of the project" in shown[1]
    assert "is an absolute path" in shown[2]
    assert "is not under media/" in shown[3]
    assert "must start with https://" in shown[4]


def test_a_5_mb_image_is_too_big_for_bluesky_only(make_project: MakeProject) -> None:
    root = project(make_project, "      - {file: media/big.png, alt: Stall}\n")
    picture(root / "media" / "big.png", pad=5 * 1024 * 1024)
    (shown,) = problems(root)
    assert shown.startswith("calendars/c.yaml:7:9: error: item 'market' on bluesky:"), shown
    assert (
        "media/big.png: 5,243,017 bytes," in shown
        and "over bluesky's limit of 1,000,000 bytes" in shown
    )
    assert "media: {fit: true}" in shown


def test_five_images_are_too_many_for_mastodon_and_bluesky(make_project: MakeProject) -> None:
    entries = "".join(f"      - {{file: media/cover.png, alt: 'Stall {n}'}}\n" for n in range(5))
    shown = problems(project(make_project, entries))
    assert len(shown) == 2, shown
    assert any("on bluesky: 5 media files, over bluesky's 4 per post" in s for s in shown)
    assert any("on mastodon: 5 media files, over mastodon's 4 per post" in s for s in shown)
    assert all(s.startswith("calendars/c.yaml:7:") for s in shown)  # the first file's line


def test_per_channel_media_and_a_typo_in_a_channel_name(make_project: MakeProject) -> None:
    root = project(
        make_project,
        "      default: [{file: media/cover.png, alt: Stall}]\n"
        "      bluesky: []\n"
        "      matirx: []\n",
    )
    (shown,) = problems(root)
    assert shown.startswith("calendars/c.yaml:9:7:") and "'matirx'" in shown
    assert "did you mean 'matrix'?" in shown
    root.joinpath("calendars/c.yaml").write_text(
        item("      default: [{file: media/cover.png, alt: Stall}]\n      bluesky: []\n"),
        encoding="utf-8",
    )
    media = {
        p.delivery.channel: p.message.media if p.message else None
        for p in plan(load_project(root), SPAN.start, SPAN.end)
    }
    assert media["bluesky"] == () and len(media["mastodon"] or ()) == 1


def test_alt_text_over_mastodons_1500_characters(make_project: MakeProject) -> None:
    alt = "α" * 1501
    shown = problems(project(make_project, f"      - {{file: media/cover.png, alt: '{alt}'}}\n"))
    assert shown == [
        "calendars/c.yaml:7:9: error: item 'market' on mastodon: media/cover.png: alt text is "
        "1501 characters, over mastodon's limit of 1500 by 1"
    ]


def test_a_video_goes_alone_on_mastodon_and_not_at_all_on_bluesky(
    make_project: MakeProject,
) -> None:
    root = project(
        make_project,
        "      - {file: media/cover.png, alt: Stall}\n      - {file: media/clip.mp4, alt: Clip}\n",
    )
    (root / "media" / "clip.mp4").write_bytes(mp4(seconds=12.5))
    shown = problems(root)
    assert any(
        s.startswith("calendars/c.yaml:8:")
        and "mastodon takes up to 4 images or 1 video alone" in s
        for s in shown
    ), shown
    assert any(
        s.startswith("calendars/c.yaml:8:") and "bluesky takes no video here (video/mp4)" in s
        for s in shown
    ), shown
    assert not any("on matrix" in s for s in shown), shown


def test_a_damaged_image_is_named_on_every_channel(make_project: MakeProject) -> None:
    root = project(make_project, "      - {file: media/broken.png, alt: Stall}\n")
    (root / "media" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then text")
    shown = problems(root)
    assert len(shown) == 3, shown
    assert all(
        s.startswith("calendars/c.yaml:7:9:")
        and "media/broken.png: cannot be read as an image or a video" in s
        for s in shown
    ), shown


def test_a_picture_over_mastodons_pixel_limit(make_project: MakeProject) -> None:
    root = project(
        make_project, "      - {file: media/wide.png, alt: Wide}\n", channels="[mastodon]"
    )
    picture(root / "media" / "wide.png", 8000, 4200)
    (shown,) = problems(root)
    assert "8000x4200 pixels, over mastodon's limit of 33,177,600 pixels in all" in shown


def test_fit_sends_a_copy_that_fits_and_leaves_the_file_alone(make_project: MakeProject) -> None:
    root = project(
        make_project,
        "      - {file: media/photo.jpg, alt: Stall}\n",
        config=CONFIG + "media: {fit: true}\n",
        channels="[bluesky, mastodon]",
    )
    photo = root / "media" / "photo.jpg"
    Image.frombytes("RGB", (1600, 1200), os.urandom(1600 * 1200 * 3)).save(photo, quality=95)
    before = photo.read_bytes()
    assert len(before) > 1_000_000
    assert problems(root) == []
    by_channel = {
        p.delivery.channel: p.message.media[0]
        for p in plan(load_project(root), SPAN.start, SPAN.end)
        if p.message
    }
    fitted = Path(by_channel["bluesky"].path)
    assert fitted.parent == root / ".commcal" / "media"
    assert fitted.stat().st_size <= 1_000_000
    with Image.open(fitted) as img:
        assert img.format == "JPEG" and img.width / img.height == pytest.approx(4 / 3, 0.01)
    assert by_channel["mastodon"].path == str(photo)  # under 16 MB: the file itself
    assert photo.read_bytes() == before


def test_validate_on_the_command_line_names_the_file_line(make_project: MakeProject) -> None:
    root = project(make_project, "      - {file: media/big.png, alt: Stall}\n")
    picture(root / "media" / "big.png", pad=2_000_000)
    result = CliRunner().invoke(app, ["-C", str(root), "validate", "--now", "2026-12-01T00:00Z"])
    assert result.exit_code == 1
    assert "calendars/c.yaml:7:9: error: item 'market' on bluesky: media/big.png:" in result.stderr


META_CONFIG = """\
timezone: Europe/Athens
locale: el
channels:
  insta:
    type: instagram
    user_id: "17841400008460056"
    token: "${IG_TOKEN}"
    media_base_url: "https://example.org/media"
  li: {type: linkedin, author: "urn:li:organization:2414183", token: "${LI_TOKEN}"}
"""


@pytest.mark.parametrize(
    ("channel", "count", "odd", "said"),
    [
        (
            "insta",
            11,
            "{file: media/cover.png, alt: Stall}",
            "media/cover.png: image/png is not a format instagram takes (image/jpeg)",
        ),
        (
            "li",
            21,
            "{url: 'https://example.org/a.jpg', alt: Stall}",
            "https://example.org/a.jpg: LinkedIn takes image files, not addresses",
        ),
    ],
)
def test_validate_says_each_media_problem_once_at_its_line(
    make_project: MakeProject, channel: str, count: int, odd: str, said: str
) -> None:
    """Over the network's count, with one file it refuses: two problems, no more (the adapter's
    `check` no longer repeats them at the item's line), the count at the first file's line and
    the refused file at its own."""
    entries = "".join(
        f"      - {{file: media/p{n}.jpg, alt: 'Stall {n}'}}\n" for n in range(count - 1)
    )
    entries += f"      - {odd}\n"
    root = project(make_project, entries, config=META_CONFIG, channels=f"[{channel}]")
    for n in range(count - 1):
        picture(root / "media" / f"p{n}.jpg")
    result = CliRunner().invoke(app, ["-C", str(root), "validate", "--now", "2026-12-01T00:00Z"])
    assert result.exit_code == 1
    shown = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert len(shown) == 2, result.stderr
    where = f"error: item 'market' on {channel}: "
    most = {"insta": 10, "li": 20}[channel]
    network = {"insta": "instagram", "li": "linkedin"}[channel]
    assert shown[0].startswith(f"calendars/c.yaml:7:9: {where}{count} media files, over ")
    assert shown[0].endswith(f"over {network}'s {most} per post"), shown
    assert shown[1].startswith(f"calendars/c.yaml:{6 + count}:9: {where}{said}"), shown


# -- the MP4 reader --------------------------------------------------------------------------


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def mp4(seconds: float, width: int = 1280, height: int = 720, *, version: int = 0) -> bytes:
    """A minimal MP4: ftyp, then moov with mvhd (timescale 1000) and one trak's tkhd, per
    ISO/IEC 14496-12; an mdat box after it, as a real file has."""
    scale, duration = 1000, int(seconds * 1000)
    if version == 1:
        mvhd = struct.pack(">B3xQQIQ", 1, 0, 0, scale, duration) + b"\0" * 80
        head = struct.pack(">B3xQQIIQ", 1, 0, 0, 1, 0, duration)
    else:
        mvhd = struct.pack(">B3xIIII", 0, 0, 0, scale, duration) + b"\0" * 80
        head = struct.pack(">B3xIIIII", 0, 0, 0, 1, 0, duration)
    tkhd = head + b"\0" * 8 + b"\0" * 8 + b"\0" * 36 + struct.pack(">II", width << 16, height << 16)
    ftyp = box(b"ftyp", b"isom\0\0\2\0isomiso2mp41")
    moov = box(b"moov", box(b"mvhd", mvhd) + box(b"trak", box(b"tkhd", tkhd)))
    return ftyp + moov + box(b"mdat", b"\0" * 100)


@pytest.mark.parametrize("version", [0, 1])
def test_mp4_duration_and_frame_size(tmp_path: Path, version: int) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(mp4(seconds=95.25, width=1920, height=1080, version=version))
    assert mp4_info(str(clip)) == (95.25, 1920, 1080)


def test_a_file_that_is_not_an_mp4_has_no_duration(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not a video at all, just text")
    assert mp4_info(str(clip)) is None
    clip.write_bytes(box(b"ftyp", b"isom") + struct.pack(">I4s", 999_999, b"moov"))  # cut short
    assert mp4_info(str(clip)) is None
