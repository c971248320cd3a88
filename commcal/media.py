"""What the publisher needs to know of a message's media without opening an image library: the
digest of a file's content, recorded with its upload so that an edited file is uploaded again
(`Ledger.record_upload`). Reading pixel sizes and formats lives in `commcal.mediacheck`."""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING

from commcal.channels.base import Media, Message

if TYPE_CHECKING:
    import requests


def is_url(path: str) -> bool:
    return path.startswith(("https://", "http://"))


def digest(media: Media, cache: dict[tuple[object, ...], str] | None = None) -> str:
    """sha256 of the file's bytes (of the URL's text for a URL: what it names is fetched at
    upload time), with the alt text and focus, which go up with the file on Mastodon. `cache`
    (a run's Memo.digests) keeps it by the file's path, size and modification time."""
    if cache is None or is_url(media.path):
        return _digest(media)
    stat = os.stat(media.path)
    key = (media.path, stat.st_size, stat.st_mtime_ns, media.alt, media.focus)
    found = cache.get(key)
    if found is None:
        found = cache[key] = _digest(media)
    return found


def _digest(media: Media) -> str:
    h = hashlib.sha256()
    if is_url(media.path):
        h.update(media.path.encode())
    else:
        with open(media.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    h.update(b"\0" + media.alt.encode() + b"\0" + repr(media.focus).encode())
    return h.hexdigest()


def prepared_digest(message: Message) -> str:
    """sha256 of what a prepared post (a media container) is made from: the text, each
    file's address and alt text, and the adapter options. Recorded with the container's id
    (`Ledger.record_upload`), to tell later what it was made of; a file's bytes are not read
    (Instagram and Threads fetch them from their URL)."""
    import json

    h = hashlib.sha256(message.text.encode())
    for media in message.media:
        h.update(b"\0" + media.path.encode() + b"\0" + media.alt.encode())
    h.update(b"\0" + json.dumps(message.options, sort_keys=True, default=str).encode())
    return h.hexdigest()


# The longest a `url:` medium may take to arrive, whole: the read timeout of each request
# (commcal.http) bounds a silence, not a server that drips a byte every few seconds.
FETCH_DEADLINE = 300.0  # seconds: 512 MB (X's largest video) at under 2 MB/s
# What a server answers in place of a picture: a login page, an error in JSON, a redirect page.
_NOT_MEDIA = ("text/", "application/json", "application/xml", "application/xhtml+xml")


def read_bytes(
    media: Media,
    session: requests.Session,
    limit: int | None = None,
    *,
    deadline: float = FETCH_DEADLINE,
) -> bytes:
    """The file's bytes for an upload: read from disk, or fetched from its https URL (at most
    `limit` bytes: a bigger answer is refused before it is all read; within `deadline`
    seconds). Raises PermanentError (the file is gone, the URL answers an error, a web page or
    too much) or TransientError (the URL's server could not be reached, broke off or was too
    slow: nothing was posted)."""
    from commcal.channels.base import PermanentError

    if not is_url(media.path):
        try:
            with open(media.path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise PermanentError(f"cannot read media file {media.path}: {exc.strerror}") from None
    else:
        data = _fetch(media.path, session, limit, deadline)
    if limit is not None and len(data) > limit:
        raise PermanentError(f"{media.path} is {len(data):,} bytes, over {limit:,}")
    return data


def _fetch(url: str, session: requests.Session, limit: int | None, deadline: float) -> bytes:
    import time

    import requests as _requests
    from urllib3.exceptions import HTTPError

    from commcal.channels.base import PermanentError, TransientError
    from commcal.channels.httpkit import request

    started = time.monotonic()
    response = request(session, "GET", url, stream=True)
    with response:
        kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind.startswith(_NOT_MEDIA):
            raise PermanentError(f"{url} answered {kind}, not an image or a video")
        # read1 returns what has arrived (urllib3 2): the deadline is checked as it comes,
        # not once per 64 KiB a dripping server takes minutes to fill.
        read1 = getattr(response.raw, "read1", None)
        chunks, size = [], 0
        try:
            while True:
                if read1 is not None:
                    chunk = read1(1 << 16, decode_content=True)
                else:  # urllib3 1.x
                    chunk = response.raw.read(1 << 16, decode_content=True)
                if not chunk:
                    break
                size += len(chunk)
                if limit is not None and size > limit:
                    raise PermanentError(f"{url} is over {limit:,} bytes")
                chunks.append(chunk)
                if time.monotonic() - started > deadline:
                    raise TransientError(
                        f"{url} was too slow: {size:,} bytes in {deadline:g} s; nothing was posted"
                    )
        except (_requests.RequestException, OSError, HTTPError) as exc:
            raise TransientError(
                f"the connection to {url} broke off after {size:,} bytes "
                f"({type(exc).__name__}); nothing was posted"
            ) from None
    return b"".join(chunks)


# The first bytes of each image format the networks take (their specifications' signatures).
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def mime_type(media: Media) -> str:
    """The file's MIME type: as given, else the image format its first bytes are (a PNG saved
    as cover.jpg is image/png), else from its name."""
    import mimetypes

    if media.mime_type:
        return media.mime_type
    if not is_url(media.path):
        try:
            with open(media.path, "rb") as f:
                head = f.read(12)
        except OSError:
            head = b""
        for signature, kind in _SIGNATURES:
            if head.startswith(signature):
                return kind
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return "image/webp"
    return mimetypes.guess_type(media.path)[0] or "application/octet-stream"
