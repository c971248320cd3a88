"""What the publisher needs to know of a message's media without opening an image library: the
digest of a file's content, recorded with its upload so that an edited file is uploaded again
(`Ledger.record_upload`). Reading pixel sizes and formats lives in `commcal.mediacheck`."""

from __future__ import annotations

import hashlib

from commcal.channels.base import Media


def is_url(path: str) -> bool:
    return path.startswith(("https://", "http://"))


def digest(media: Media) -> str:
    """sha256 of the file's bytes (of the URL's text for a URL: what it names is fetched at
    upload time), with the alt text and focus, which go up with the file on Mastodon."""
    h = hashlib.sha256()
    if is_url(media.path):
        h.update(media.path.encode())
    else:
        with open(media.path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    h.update(b"\0" + media.alt.encode() + b"\0" + repr(media.focus).encode())
    return h.hexdigest()
