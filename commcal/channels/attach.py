"""Media files as the adapters that carry them see them: what kind a file is, how big, whether
it can be read, and the sentences `check` says when a file breaks a network's limits.

Adapters that send files inside the post's own request (Discord, Telegram, Slack, mail) and
those that upload them first (X) share these helpers, so "the file does not exist" or "the file
is too big" reads the same on every channel. No network here, and no heavy import.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Sequence

from commcal.channels.base import Media, PermanentError

MB = 1_000_000
MIB = 1024 * 1024


def mime_of(media: Media) -> str:
    """The media type: the one the calendar gave, else guessed from the file name."""
    return media.mime_type or mimetypes.guess_type(media.path)[0] or "application/octet-stream"


def kind_of(media: Media) -> str:
    """ "image", "gif" (animated or not: networks treat GIFs apart), "video" or "file"."""
    mime = mime_of(media)
    if mime == "image/gif":
        return "gif"
    if mime.startswith("image/"):
        return "image"
    if mime.startswith("video/"):
        return "video"
    return "file"


def filename(media: Media) -> str:
    return os.path.basename(media.path) or "file"


def size_of(media: Media) -> int | None:
    """The file's size in bytes; None when it is missing or unreadable."""
    try:
        return os.path.getsize(media.path)
    except OSError:
        return None


def read(media: Media) -> bytes:
    """The file's bytes; a PermanentError a marketer can act on when it cannot be read (the
    file went away between `check` and the send, or its permissions do not let us read it)."""
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


def missing(media: Media) -> str | None:
    """The problem of a file that is not there (or not a file), else None."""
    if media.path.startswith(("http://", "https://")):
        return f"{media.path}: this channel sends files from the project, not links"
    if not os.path.isfile(media.path):
        return f"media file {media.path} does not exist: check the path in the calendar"
    return None


def too_big(media: Media, limit: int, network: str, what: str = "file") -> str | None:
    """The problem of a file over `limit` bytes, with the fix, else None."""
    size = size_of(media)
    if size is None or size <= limit:
        return None
    shown, most = human(size), human(limit)
    if shown == most:  # just over: in bytes, or "10 MB, over the limit of 10 MB" reads wrong
        shown, most = f"{size:,} bytes", f"{limit:,} bytes"
    return (
        f"{filename(media)} is {shown}, over {network}'s limit of {most} for "
        f"{'an' if what[0] in 'aeiou' else 'a'} {what}: make it smaller (a lower resolution, "
        "or JPEG for photos) or link to it instead"
    )


def too_many(media: Sequence[Media], most: int, network: str, what: str = "attachments") -> str:
    """The problem of more media than a network takes ("" when within it)."""
    if len(media) <= most:
        return ""
    return (
        f"{network} takes at most {most} {what} in one post, not {len(media)}: remove "
        f"{len(media) - most} or split the post"
    )


def long_alt(media: Media, most: int, network: str) -> str | None:
    if len(media.alt) <= most:
        return None
    return (
        f"the alt text of {filename(media)} is {len(media.alt)} characters, over {network}'s "
        f"limit of {most} by {len(media.alt) - most}: shorten it"
    )
