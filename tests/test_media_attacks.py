"""Hostile media files in a calendar: each is a problem at the file's calendar line in
`validate`, `plan`, `preview` and `export html`, never a traceback, a warning on stderr or a
decoded picture of hundreds of megabytes."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import unicodedata
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from commcal.cli import app
from tests.conftest import MakeProject

CONFIG = """\
timezone: Europe/Athens
locale: el
channels:
  mastodon: {type: mastodon, instance: "http://127.0.0.1:9", token: "${M_TOKEN}"}
  matrix:
    type: matrix
    homeserver: "http://127.0.0.1:9"
    access_token: "${X_TOKEN}"
    room_id: "!r:example.org"
"""
NOW = "2026-12-01T00:00Z"
COMMANDS = (
    ["validate"],
    ["plan"],
    ["preview", "market", "--channel", "matrix"],
    ["export", "html", "-o", "-"],
)


def calendar(name: str) -> str:
    return (
        "items:\n"
        "  - id: market\n"
        "    channels: [mastodon, matrix]\n"
        "    template: posts/tip\n"
        "    at: 2026-12-02 09:00\n"
        "    media:\n"
        f"      - {{file: 'media/{name}', alt: Stall}}\n"
    )


def project(make_project: MakeProject, name: str, config: str = CONFIG) -> Path:
    root = make_project(config=config, calendars={"c.yaml": calendar(name)})
    (root / "media").mkdir()
    return root


def run(root: Path, command: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["-C", str(root), *command, "--now", NOW])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        command,
        result.exception,
    )
    return result.exit_code, result.stderr + result.stdout


def chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def bomb_png(path: Path, side: int) -> Path:
    """A valid grey PNG of side x side pixels whose rows of zeros compress to almost nothing:
    a few hundred kilobytes on disk, side * side bytes once decoded."""
    squeeze = zlib.compressobj(9)
    row = b"\0" * (side + 1)
    data = b"".join(squeeze.compress(row) for _ in range(side)) + squeeze.flush()
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", data)
        + chunk(b"IEND", b"")
    )
    return path


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.mp4", b""),
        ("notes.mp4", b"this is a text file, not a video"),
        ("cut.mp4", box(b"moov", box(b"trak", box(b"tkhd", b"\x01")))),  # tkhd cut short
        ("short.mp4", box(b"moov", box(b"mvhd", b"\0\0\0\0"))),  # mvhd cut short
        ("empty.png", b""),
    ],
)
def test_a_damaged_or_empty_video_is_a_problem_at_its_line(
    make_project: MakeProject, name: str, content: bytes
) -> None:
    root = project(make_project, name)
    (root / "media" / name).write_bytes(content)
    for command in COMMANDS:
        code, stderr = run(root, command)
        assert code == 1, (command, stderr)
        if command[0] in ("validate", "plan"):
            assert f"calendars/c.yaml:7:9: error: item 'market' on matrix: media/{name}:" in (
                stderr
            ), stderr
            assert "is empty" in stderr if not content else "cannot be read" in stderr


def test_a_symlink_loop_in_media_is_a_problem_not_a_traceback(make_project: MakeProject) -> None:
    root = project(make_project, "a.png")
    (root / "media" / "a.png").symlink_to(root / "media" / "b.png")
    (root / "media" / "b.png").symlink_to(root / "media" / "a.png")
    for command in COMMANDS:
        code, stderr = run(root, command)
        assert code == 1
        assert "calendars/c.yaml:7:16: error: item 'market': file 'media/a.png'" in stderr, stderr
        assert "symlink" in stderr


def test_a_file_name_written_in_another_unicode_form_is_found(make_project: MakeProject) -> None:
    """A file copied from a Mac keeps its name decomposed (NFD); the calendar, typed, holds
    the composed form (NFC). The two look the same: the file is the one meant."""
    from PIL import Image

    root = project(make_project, unicodedata.normalize("NFC", "καφές.png"))
    Image.new("RGB", (40, 30), "red").save(
        root / "media" / unicodedata.normalize("NFD", "καφές.png")
    )
    for command in COMMANDS:
        code, said = run(root, command)
        assert code == 0 and "does not exist" not in said, said


BOMB_SCRIPT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (600 * 2**20, 600 * 2**20))
from commcal.cli import app
sys.argv = ["commcal", *sys.argv[1:]]
app()
"""


@pytest.mark.parametrize("fit", [False, True])
def test_a_decompression_bomb_is_refused_without_decoding_it(
    make_project: MakeProject, fit: bool
) -> None:
    """12,000 x 12,000 pixels (144 million: over Pillow's 89 million, under the 179 million
    where Pillow itself refuses to open it): 300 kB on disk, 144 MB decoded as grey, 432 MB as
    the RGB a thumbnail or a fitted copy makes. Each command runs in a process capped at 600
    MB of address space, and names the file."""
    config = CONFIG + ("media: {fit: true}\n" if fit else "")
    root = project(make_project, "bomb.png", config)
    bomb_png(root / "media" / "bomb.png", 12_000)
    assert os.path.getsize(root / "media" / "bomb.png") < 1_000_000
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for command in COMMANDS:
        done = subprocess.run(
            [sys.executable, "-c", BOMB_SCRIPT, "-C", str(root), *command, "--now", NOW],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert done.returncode == 1, (command, done.stderr[-2000:])
        said = done.stderr + done.stdout
        assert "Traceback" not in said and "Warning" not in said, said
        if command[0] in ("validate", "plan"):
            assert "calendars/c.yaml:7:9: error: item 'market' on matrix: media/bomb.png:" in said
            assert "12000x12000 pixels" in said and "decompression bomb" in said
    assert not (root / ".commcal" / "media").exists() or not any(
        (root / ".commcal" / "media").iterdir()
    )


BLUESKY = CONFIG + (
    "  bluesky:\n"
    '    {type: bluesky, service: "http://127.0.0.1:9", handle: a.example.org,\n'
    '     app_password: "${B}"}\n'
    "media: {fit: true}\n"
)


def test_fit_makes_a_copy_of_a_strip_longer_than_jpeg_can_hold(make_project: MakeProject) -> None:
    """1 x 100,000 pixels, 2 MB: over Bluesky's 1,000,000 bytes, and longer than the 65,500
    pixels a JPEG side can be, so a copy at full length cannot be written."""
    from PIL import Image

    root = make_project(
        config=BLUESKY, calendars={"c.yaml": calendar("strip.png").replace("matrix]", "bluesky]")}
    )
    (root / "media").mkdir()
    strip = root / "media" / "strip.png"
    Image.frombytes("RGB", (1, 100_000), os.urandom(300_000)).save(strip)
    with open(strip, "ab") as f:
        f.write(b"\0" * 2_000_000)
    code, said = run(root, ["validate"])
    assert code == 0 and "no problems" in said, said
    (copy,) = (root / ".commcal" / "media").iterdir()
    with Image.open(copy) as img:
        assert img.format == "JPEG" and max(img.size) <= 65_500
    assert copy.stat().st_size <= 1_000_000


def test_a_file_fit_cannot_mend_does_not_suggest_fit_again(make_project: MakeProject) -> None:
    root = make_project(
        config=BLUESKY, calendars={"c.yaml": calendar("big.png").replace("matrix]", "bluesky]")}
    )
    (root / "media").mkdir()
    (root / ".commcal").mkdir()
    (root / ".commcal" / "media").write_text("not a folder: the copy cannot be written")
    big = root / "media" / "big.png"
    from PIL import Image

    Image.new("RGB", (64, 48), "teal").save(big)
    with open(big, "ab") as f:
        f.write(b"\0" * 1_500_000)
    code, said = run(root, ["validate"])
    assert code == 1
    assert "calendars/c.yaml:7:9: error: item 'market' on bluesky: media/big.png:" in said, said
    assert "set media: {fit: true}" not in said, said
    assert "no copy that fits could be made" in said, said


def test_alt_text_too_big_for_a_matrix_event_is_a_problem_before_anything_is_sent(
    make_project: MakeProject,
) -> None:
    """Matrix posts the text, then each image as an event whose body is its alt text; an
    event is at most 65,536 bytes (https://spec.matrix.org/v1.13/client-server-api/#size-
    limits), so an image event over it would be refused after the text went out."""
    from PIL import Image

    alt = "α" * 31_000  # 62,000 bytes in UTF-8
    root = make_project(
        config=CONFIG,
        calendars={"c.yaml": calendar("cover.png").replace("alt: Stall", f"alt: '{alt}'")},
    )
    (root / "media").mkdir()
    Image.new("RGB", (40, 30), "red").save(root / "media" / "cover.png")
    code, said = run(root, ["validate"])
    assert code == 1
    assert "calendars/c.yaml:7:9: error: item 'market' on matrix: media/cover.png: alt text" in said
    assert "62000" in said.replace(",", ""), said


def test_an_mp4_of_millions_of_empty_boxes_is_given_up_quickly(tmp_path: Path) -> None:
    """A real file has a few top-level boxes (a fragmented one some thousands); 2.5 million
    8-byte `free` boxes before any `moov` are a damaged or hostile file, not read to its end."""
    import time

    from commcal.mediacheck import mp4_info

    clip = tmp_path / "many.mp4"
    clip.write_bytes(box(b"free", b"") * 2_500_000 + box(b"moov", b""))
    started = time.monotonic()
    assert mp4_info(str(clip)) is None
    assert time.monotonic() - started < 0.5
