"""Media files as the adapters that carry them in their own requests see them (Discord,
Telegram, Slack, mail, X's uploads): what kind a file is, its name, its bytes.

Offline limits are checked by `Channel.check_media` (commcal/channels/base.py) on what
`commcal.mediacheck.inspect` read of each file; an adapter states its limits in the names that
method reads and adds only its network's own rules. No network here, and no heavy import.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import TYPE_CHECKING

from commcal.channels.base import Media, MediaFile, PermanentError
from commcal.media import is_url, mime_type, read_bytes

if TYPE_CHECKING:
    from commcal.channels.base import Channel

MB = 1_000_000
MIB = 1024 * 1024


def kind_of(media: Media) -> str:
    """ "image", "gif" (networks send GIFs apart: an animation), "video" or "file"."""
    mime = mime_type(media)
    if mime == "image/gif":
        return "gif"
    if mime.startswith("image/"):
        return "image"
    if mime.startswith("video/"):
        return "video"
    return "file"


def filename(media: Media) -> str:
    return os.path.basename(media.path.split("?")[0].rstrip("/")) or "file"


def read(media: Media, channel: Channel, limit: int | None = None) -> bytes:
    """The file's bytes (fetched once where it is an https URL); a PermanentError a marketer
    can act on when the file went away or cannot be read since `check`. A file on disk is read
    without the channel's HTTP session (mail has none to open)."""
    if is_url(media.path):
        return read_bytes(media, channel.http, limit)
    try:
        with open(media.path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise PermanentError(f"cannot read media file {media.path}: {reason}") from None


def human(size: int) -> str:
    """Bytes as a person reads them: "6.2 MB", "850 KB"."""
    if size >= MB:
        return f"{size / MB:.1f} MB".replace(".0 MB", " MB")
    return f"{max(1, round(size / 1000))} KB"


def gifs_apart(
    files: list[MediaFile] | tuple[MediaFile, ...], most: int, network: str
) -> tuple[list[MediaFile], list[tuple[int | None, str]]]:
    """For `check_media` where a GIF has a size limit of its own (X 15 MB, Telegram's
    animations 50 MB): the files with a GIF's size hidden from the image limits, and the
    problems of GIFs over `most`."""
    shown: list[MediaFile] = []
    problems: list[tuple[int | None, str]] = []
    for number, found in enumerate(files):
        if found.mime_type == "image/gif":
            if found.size is not None and found.size > most:
                size, limit = human(found.size), human(most)
                if size == limit:  # just over: "50 MB, over the limit of 50 MB" reads wrong
                    size, limit = f"{found.size:,} bytes", f"{most:,} bytes"
                problems.append((number, f"{size}, over {network}'s limit of {limit} for a GIF"))
            found = replace(found, size=None)
        shown.append(found)
    return shown, problems
