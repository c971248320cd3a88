"""Offline checks of a message's media, and fitting an image to a channel's limits.

`inspect` reads what a network asks about a file without uploading it: its format and pixel
size (Pillow reads the header only, never the whole image), its bytes, and an MP4's duration
and frame size (the `mvhd` and `tkhd` boxes, read by `mp4_info`). `media_problems` asks the
channel (`Channel.check_media`, driven by each adapter's limits) and names the calendar line of
each file. `fit` makes a copy that fits, under .commcal/media/, when commcal.yaml says
`media: {fit: true}`.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from commcal.calendar.model import MediaEntry
from commcal.channels.base import Channel, Media, MediaFile, Message
from commcal.errors import Problem
from commcal.media import is_url

# Container formats read by extension when Pillow cannot open the file; MP4 and QuickTime are
# checked for their `ftyp`/`moov` boxes by `mp4_info`.
VIDEO_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/x-m4v",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
}
FIT_FOLDER = ".commcal/media"
JPEG_MAX_SIDE = 65_500
MAX_BOXES = 100_000  # at one level of an MP4 (`_boxes`)


def inspect(media: Media, cache: dict[tuple[str, int, int], Any] | None = None) -> MediaFile:
    """What can be known of `media` offline. A URL: nothing but its guessed type (it is fetched
    when it is uploaded, and checked then by the network). `cache` (a run's Memo.media) keeps
    what was read of a file by its path, size and modification time."""
    if is_url(media.path):
        guessed = media.mime_type or mimetypes.guess_type(media.path)[0] or ""
        return MediaFile(media, kind=guessed.split("/")[0], mime_type=guessed)
    if cache is None:
        return _inspect_file(media)
    stat = os.stat(media.path)
    key = (media.path, stat.st_size, stat.st_mtime_ns)
    found = cache.get(key)
    if found is None:
        found = cache[key] = _inspect_file(media)
    return replace(found, media=media)


def _inspect_file(media: Media) -> MediaFile:
    size = os.path.getsize(media.path)
    image = _image(media.path)
    if image is not None:
        mime, width, height = image
        return MediaFile(media, "image", mime, size, width, height)
    suffix = Path(media.path).suffix.lower()
    if suffix in VIDEO_TYPES:
        info = mp4_info(media.path) if suffix != ".webm" else None
        seconds, w, h = info or (None, None, None)
        return MediaFile(media, "video", VIDEO_TYPES[suffix], size, w, h, seconds)
    # Not an image Pillow can read (damaged, not an image, or over Pillow's safety limit of
    # pixels) nor a video: `check_media` refuses its type.
    guessed = mimetypes.guess_type(media.path)[0] or ""
    if not guessed or guessed.startswith("image/"):
        return MediaFile(media, "unreadable", "", size)
    return MediaFile(media, "", guessed, size)


def _image(path: str) -> tuple[str, int, int] | None:
    """(MIME type, width, height) of an image Pillow can read, from its header; None if it is
    not one."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                fmt = img.format or ""
                return Image.MIME.get(fmt, f"image/{fmt.lower()}"), img.width, img.height
    except Image.DecompressionBombError:
        return None  # over Pillow's own safety limit: `media_problems` says so
    except (UnidentifiedImageError, OSError):
        return None


def mp4_info(path: str) -> tuple[float | None, int | None, int | None] | None:
    """(seconds, width, height) of an MP4 or QuickTime file, from `moov/mvhd` (timescale and
    duration) and the first `trak/tkhd` with a frame size (16.16 fixed point), per ISO/IEC
    14496-12 sections 8.2.2 and 8.3.2; None when the file is not one (no `moov` box, or a box
    in it cut short)."""
    try:
        return _mp4_info(path)
    except struct.error:  # a box shorter than its fields: read past the end
        return None


def _mp4_info(path: str) -> tuple[float | None, int | None, int | None] | None:
    with open(path, "rb") as f:
        moov = next(
            (b for b in _boxes(f, 0, os.fstat(f.fileno()).st_size) if b[0] == b"moov"), None
        )
        if moov is None:
            return None
        seconds = width = height = None
        for kind, start, end in _boxes(f, moov[1], moov[2]):
            if kind == b"mvhd":
                f.seek(start)
                version = f.read(1)[0:1]
                if version == b"\x01":
                    f.seek(start + 20)
                    scale, duration = struct.unpack(">IQ", f.read(12))
                else:
                    f.seek(start + 12)
                    scale, duration = struct.unpack(">II", f.read(8))
                seconds = duration / scale if scale else None
            elif kind == b"trak" and width is None:
                tkhd = next((b for b in _boxes(f, start, end) if b[0] == b"tkhd"), None)
                if tkhd is not None:
                    f.seek(tkhd[1])
                    offset = 88 if f.read(1) == b"\x01" else 76
                    f.seek(tkhd[1] + offset)
                    w, h = struct.unpack(">II", f.read(8))
                    if w and h:
                        width, height = w >> 16, h >> 16
        return seconds, width, height


def _boxes(f: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of each box between `start` and `end`; at most
    MAX_BOXES of them (a fragmented MP4 has a `moof` and an `mdat` per few seconds: thousands
    in a long video; millions of empty boxes are a damaged or hostile file)."""
    at = start
    for _ in range(MAX_BOXES):
        if at + 8 > end:
            return
        f.seek(at)
        size, kind = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:  # a 64-bit size follows the type
            (size,) = struct.unpack(">Q", f.read(8))
            header = 16
        elif size == 0:  # the box runs to the end
            size = end - at
        if size < header or at + size > end:
            return  # a damaged file: stop rather than read garbage
        yield kind, at + header, at + size
        at += size


def media_problems(
    adapter: Channel,
    message: Message,
    entries: Sequence[MediaEntry],
    where: str,
    locale: str,
    cache: dict[tuple[str, int, int], Any] | None = None,
    *,
    fitting: bool = False,
) -> list[Problem]:
    """The problems of `message.media` on `adapter`, each at the calendar line of its file
    (`entries`, in the same order); those of the whole set at the first file's line.
    `fitting`: commcal.yaml has `media: {fit: true}`, so a file still too big is one `fit`
    could not mend, and suggesting it would send the person in a circle."""
    problems: list[Problem] = []
    files: list[MediaFile] = []
    refused: set[int] = set()
    for media, entry in zip(message.media, entries, strict=True):
        if not media.alt.strip():
            problems.append(
                Problem(
                    entry.pos,
                    f"{where}: {entry.source} has no alt text for locale {locale!r}",
                    f"add {locale}: ... under its alt:",
                )
            )
        try:
            files.append(inspect(media, cache))
        except OSError as exc:
            problems.append(
                Problem(entry.pos, f"{where}: cannot read {entry.source}: {exc.strerror or exc}")
            )
            return problems
        refusal = _refusal(files[-1])
        if refusal is not None:
            refused.add(len(files) - 1)
            problems.append(
                Problem(entry.pos, f"{where}: {entry.source}: {refusal[0]}", refusal[1])
            )
    for index, text in adapter.check_media(files):
        if index in refused:
            continue  # said above, the same on every channel
        entry = entries[index] if index is not None else entries[0]
        name = f"{entry.source}: " if index is not None else ""
        hint = ""
        if (
            index is not None
            and not text.startswith("alt text")
            and _oversized(adapter, files[index])
        ):
            hint = (
                "media: {fit: true} is on, but no copy that fits could be made (is "
                f"{FIT_FOLDER}/ writable?): scale the picture down yourself"
                if fitting
                else "or set media: {fit: true} in commcal.yaml to send a fitted copy"
            )
        problems.append(Problem(entry.pos, f"{where}: {name}{text}", hint))
    return problems


def _refusal(info: MediaFile) -> tuple[str, str] | None:
    """(why, what to do) for a file no channel should be sent, whatever its limits: an empty
    file, an MP4 with no readable `moov` box, a picture of more pixels than Pillow decodes
    without calling it a decompression bomb (decoding it would take hundreds of megabytes)."""
    from PIL import Image

    path = info.media.path
    if is_url(path):
        return None
    if info.size == 0:
        return "is empty (0 bytes)", "export the file again"
    if info.kind == "video" and info.mime_type != "video/webm" and mp4_info(path) is None:
        return (
            "cannot be read as a video (no complete moov box: damaged, cut short, or not "
            "what its name says)",
            "export the video again as MP4 (H.264)",
        )
    limit = Image.MAX_IMAGE_PIXELS or 0
    hint = "scale it down; no network shows that many pixels"
    if info.kind == "image" and info.width and info.height and info.width * info.height > limit:
        return (
            f"{info.width}x{info.height} pixels, over the {limit:,} commcal decodes "
            "(Pillow's decompression bomb limit)",
            hint,
        )
    if info.kind == "unreadable" and _bomb(path):
        return f"over {2 * limit:,} pixels (refused by Pillow as a decompression bomb)", hint
    return None


def _bomb(path: str) -> bool:
    from PIL import Image

    try:
        with Image.open(path):
            return False
    except Image.DecompressionBombError:
        return True
    except (OSError, ValueError):
        return False


def _decodable(info: MediaFile) -> bool:
    """Whether the picture is small enough to decode (under Pillow's decompression bomb
    limit): what `fit` and `thumbnail` check before they read its pixels."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    return bool(info.width and info.height) and (
        limit is None or (info.width or 0) * (info.height or 0) <= limit
    )


def fit(root: Path, adapter: Channel, media: Media) -> Media:
    """`media`, or a copy under .commcal/media/ scaled down and recompressed to fit `adapter`'s
    pixel and byte limits for images. The user's file is never written. A copy is named by the
    file's content and the limits, so it is made once and reused."""
    if is_url(media.path):
        return media
    info = inspect(media)
    if not _oversized(adapter, info) or not _decodable(info):
        return media  # fits, or too big to decode: the check says so
    limit, pixels = _image_limits(adapter)
    with open(media.path, "rb") as f:
        key = hashlib.sha256(f.read()).hexdigest()[:24]
    target = root / FIT_FOLDER / f"{key}-{limit}-{pixels}.jpg"
    if not target.is_file():
        _write_fitted(Path(media.path), target, limit, pixels)
    return replace(media, path=str(target), mime_type="image/jpeg")


def _image_limits(adapter: Channel) -> tuple[int | None, int | None]:
    """The most bytes and pixels of one image on `adapter`."""
    limit = adapter.media_limit("max_image_bytes")
    limit = limit if limit is not None else adapter.max_media_bytes
    return limit, adapter.media_limit("max_image_pixels")


def _oversized(adapter: Channel, info: MediaFile) -> bool:
    """Whether `info` is an image over `adapter`'s byte or pixel limit: what `fit` mends."""
    if info.kind != "image" or info.size is None or not info.width or not info.height:
        return False
    limit, pixels = _image_limits(adapter)
    too_big = limit is not None and info.size > limit
    return too_big or (pixels is not None and info.width * info.height > pixels)


def _write_fitted(source: Path, target: Path, limit: int | None, pixels: int | None) -> None:
    from PIL import Image

    with Image.open(source) as img:
        picture = img.convert("RGB")  # JPEG: no alpha; transparent parts become black
    scale = 1.0
    if pixels is not None and picture.width * picture.height > pixels:
        scale = (pixels / (picture.width * picture.height)) ** 0.5
    # A JPEG side holds at most 65,500 pixels (libjpeg's JPEG_MAX_DIMENSION; Pillow refuses
    # more): a long strip is shortened to that first, or no copy could be written at all.
    scale = min(scale, JPEG_MAX_SIDE / max(picture.width, picture.height))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    for _ in range(12):
        size = (max(1, int(picture.width * scale)), max(1, int(picture.height * scale)))
        resized = picture.resize(size, Image.Resampling.LANCZOS) if scale < 1 else picture
        for quality in (90, 80, 70, 60):
            try:
                resized.save(tmp, "JPEG", quality=quality, optimize=True)
            except OSError:  # libjpeg cannot optimise some shapes (a 1-pixel-wide strip)
                resized.save(tmp, "JPEG", quality=quality)
            if limit is None or tmp.stat().st_size <= limit:
                os.replace(tmp, target)
                return
        scale *= 0.75
    os.replace(tmp, target)  # the smallest tried; the check says if it is still too big


def describe(media: Media, data: bytes, mime: str) -> tuple[str, dict[str, int | str]]:
    """("image"/"video"/"", Matrix's `info`: w, h, mimetype, size, and a video's duration in
    milliseconds) of the bytes about to be uploaded."""
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    info: dict[str, int | str] = {"mimetype": mime, "size": len(data)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                info.update(w=img.width, h=img.height)
                return "image", info
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        pass
    if not mime.startswith("video/"):
        return "", info
    if not is_url(media.path) and mime != "video/webm":
        seconds, width, height = mp4_info(media.path) or (None, None, None)
        if width and height:
            info.update(w=width, h=height)
        if seconds:
            info["duration"] = int(seconds * 1000)
    return "video", info


def summaries(message: Message, entries: Sequence[MediaEntry]) -> list[dict[str, object]]:
    """What `preview` and `plan --format json` show of each file: as written in the calendar
    (`file` or `url`), what is sent (`sent`: a fitted copy's path, else null), its type,
    bytes and pixel size (null where unknown: a URL, a damaged file), its alt text and focus."""
    out: list[dict[str, object]] = []
    for media, entry in zip(message.media, entries, strict=True):
        try:
            info = inspect(media)
        except OSError:
            info = MediaFile(media)
        written = entry.file or ""
        fitted = bool(written) and not media.path.endswith(written)
        out.append(
            {
                "file": entry.file or None,
                "url": entry.url or None,
                "sent": media.path if fitted else None,
                "type": info.mime_type or None,
                "bytes": info.size,
                "width": info.width,
                "height": info.height,
                "seconds": info.seconds,
                "alt": media.alt,
                "focus": list(media.focus) if media.focus is not None else None,
            }
        )
    return out


def summary_line(shown: dict[str, object]) -> str:
    """One file as the terminal shows it: media/stall.png · image/png · 12,345 bytes ·
    1200x800 · alt: "..."."""
    parts = [str(shown["file"] or shown["url"])]
    if shown["type"]:
        parts.append(str(shown["type"]))
    if isinstance(shown["bytes"], int):
        parts.append(f"{shown['bytes']:,} bytes")
    if shown["width"] and shown["height"]:
        parts.append(f"{shown['width']}x{shown['height']}")
    if isinstance(shown["seconds"], float):
        parts.append(f"{shown['seconds']:.1f} s")
    if shown["sent"]:
        parts.append("fitted copy")
    alt = str(shown["alt"]) or "(no alt text)"
    return " · ".join(parts) + f"\n    alt: {alt}"


THUMBNAIL_SIDE = 240  # pixels, the longer side of a thumbnail in `export html`


def thumbnail(media: Media) -> str:
    """A small JPEG of an image as a `data:` URI, for a page that makes no request (`export
    html`); "" for a URL, a video or a file that cannot be read."""
    if is_url(media.path):
        return ""
    import base64
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        if not _decodable(inspect(media)):
            return ""
        with Image.open(media.path) as img:
            img.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            small = img.convert("RGB")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        return ""
    out = io.BytesIO()
    small.save(out, "JPEG", quality=75)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")
