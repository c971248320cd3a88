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


def read_bytes(media: Media, session: requests.Session, limit: int | None = None) -> bytes:
    """The file's bytes for an upload: read from disk, or fetched from its https URL (at most
    `limit` bytes: a bigger answer is refused before it is all read). Raises PermanentError
    (the file is gone, the URL answers an error or too much) or TransientError (the URL's
    server could not be reached: nothing was posted)."""
    from commcal.channels.base import PermanentError
    from commcal.channels.httpkit import request

    if not is_url(media.path):
        try:
            with open(media.path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise PermanentError(f"cannot read media file {media.path}: {exc.strerror}") from None
    else:
        response = request(session, "GET", media.path, stream=True)
        chunks, size = [], 0
        with response:
            for chunk in response.iter_content(1 << 16):
                size += len(chunk)
                if limit is not None and size > limit:
                    raise PermanentError(f"{media.path} is over {limit:,} bytes")
                chunks.append(chunk)
        data = b"".join(chunks)
    if limit is not None and len(data) > limit:
        raise PermanentError(f"{media.path} is {len(data):,} bytes, over {limit:,}")
    return data


def mime_type(media: Media) -> str:
    """The file's MIME type: as given, else from its name."""
    import mimetypes

    return media.mime_type or mimetypes.guess_type(media.path)[0] or "application/octet-stream"
