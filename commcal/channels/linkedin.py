"""LinkedIn: a post by a member or an organization (Page), with images, through the Posts API.

API: POST /rest/posts (https://learn.microsoft.com/en-us/linkedin/marketing/community-management/
shares/posts-api); every request carries `LinkedIn-Version: YYYYMM` and
`X-Restli-Protocol-Version: 2.0.0`, and a created post answers 201 with its URN in the
`x-restli-id` header. Images go up first through the Images API: POST
/rest/images?action=initializeUpload gives an upload URL and an image URN, the bytes are PUT
there, and the post names the URN (https://learn.microsoft.com/en-us/linkedin/marketing/
community-management/shares/images-api); one image is `content.media`, 2 to 20 are
`content.multiImage` (https://learn.microsoft.com/en-us/linkedin/marketing/
community-management/shares/multiimage-post-api).

The commentary is in LinkedIn's "little" text format, where \\ | { } @ [ ] ( ) < > # * _ ~ are
markup: unescaped, LinkedIn may cut the post at the first one and still answer 201
(https://learn.microsoft.com/en-us/linkedin/marketing/community-management/shares/
little-text-format). `little_text` escapes them, leaving #hashtags and URLs as they are.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from commcal.channels import httpkit
from commcal.channels.base import (
    Media,
    MediaFile,
    Message,
    PermanentError,
    Receipt,
    Setting,
    unreadable,
)
from commcal.channels.httpkit import HttpChannel
from commcal.channels.text import utf16_units
from commcal.errors import ConfigError
from commcal.media import is_url

if TYPE_CHECKING:
    import requests

RESERVED = set("\\|{}@[]()<>#*_~")
# A hashtag LinkedIn links (a # starting a word), and a URL it auto-links: left unescaped.
_KEEP = re.compile(r"(?<![\w#])#\w+|https?://\S+")
AUTHOR = re.compile(r"urn:li:(?:organization:\d+|person:[A-Za-z0-9_-]+)")
VISIBILITIES = ("PUBLIC", "CONNECTIONS", "LOGGED_IN")
# LinkedIn-Version: a monthly version, each supported for at least a year, and a retired one
# is refused with 426 (https://learn.microsoft.com/en-us/linkedin/marketing/versioning).
# 202607 (July 2026) is the newest release found in LinkedIn's recent-changes log
# (https://learn.microsoft.com/en-us/linkedin/marketing/integrations/recent-changes); it is
# supported until July 2027.
DEFAULT_VERSION = "202607"

HINTS: Mapping[int, str] = {
    401: (
        "the access token has expired or was revoked (LinkedIn tokens last 60 days): make a "
        "new one and put it in the environment variable"
    ),
    426: (
        "LinkedIn no longer serves this API version: set the channel's `version` to a recent "
        "month (YYYYMM, see learn.microsoft.com/linkedin/marketing/versioning)"
    ),
    403: (
        "the token lacks a permission: w_member_social to post as a member, "
        "w_organization_social (and a Page admin or content admin role) to post as a Page"
    ),
}


# What may end a URL's match but belongs to the sentence around it: punctuation, and markup
# other than a closing bracket that the URL itself opened (Wikipedia's /wiki/Foo_(bar)).
_TRAILING = set(".,;:!?'\"") | (RESERVED - set(")]"))
_CLOSING = {")": "(", "]": "["}


def _url_end(url: str) -> int:
    """Where the URL in `url` (a match of `https?://\\S+`) ends: trailing punctuation, markup
    and unbalanced closing brackets are the sentence's."""
    end = len(url)
    while end > 0:
        last = url[end - 1]
        opening = _CLOSING.get(last)
        if last in _TRAILING or (
            opening is not None and url.count(last, 0, end) > url.count(opening, 0, end)
        ):
            end -= 1
            continue
        break
    return end


def little_text(text: str) -> str:
    """`text` with every reserved character of the little format escaped by a backslash,
    except in #hashtags and URLs, so it shows as written."""
    parts, last = [], 0
    for kept in _KEEP.finditer(text):
        word = kept.group()
        end = kept.start() + (_url_end(word) if word.startswith("http") else len(word))
        parts.append(_escape(text[last : kept.start()]))
        parts.append(text[kept.start() : end])
        last = end
    parts.append(_escape(text[last:]))
    return "".join(parts)


def _escape(text: str) -> str:
    return "".join("\\" + char if char in RESERVED else char for char in text)


class LinkedInChannel(HttpChannel):
    type_name = "linkedin"
    description = "A post by a LinkedIn member or organization Page, with images"
    settings_schema: ClassVar[Mapping[str, Setting]] = {
        "author": Setting(
            "who posts: urn:li:organization:<id> for a Page, urn:li:person:<id> for a member",
            required=True,
        ),
        "token": Setting(
            "an OAuth 2.0 access token with w_organization_social (Page) or w_member_social "
            "(member)",
            required=True,
            private=True,
        ),
        "version": Setting(
            "the LinkedIn-Version header (YYYYMM), the API version the requests are written for",
            default=DEFAULT_VERSION,
        ),
        "visibility": Setting("PUBLIC, CONNECTIONS or LOGGED_IN", default="PUBLIC"),
        "api_url": Setting("the API server", default="https://api.linkedin.com"),
    }
    # Commentary: 3,000 characters (the Posts API's commentary field; LinkedIn's composer
    # counts UTF-16 units, as JavaScript does). Counted before escaping: the backslashes are
    # markup, not text.
    max_length = 3000
    length_unit = "characters"
    # One image (content.media) or 2 to 20 (content.multiImage), see the module docstring.
    max_media = 20
    # Images: JPG, GIF or PNG, under 36,152,320 pixels (Images API, "Image restrictions",
    # https://learn.microsoft.com/en-us/linkedin/marketing/community-management/shares/
    # images-api); alt text at most 4,086 characters (Posts API, media altText,
    # https://learn.microsoft.com/en-us/linkedin/marketing/community-management/shares/
    # posts-api). No video: this adapter posts images only.
    image_types = frozenset({"image/jpeg", "image/gif", "image/png"})
    max_image_pixels = 36_152_320 - 1
    max_alt_length = 4086
    uploads_media = True
    # The Posts API takes no idempotency key: an interrupted post is recorded `unknown`.
    idempotent = False

    def configure(self) -> None:
        httpkit.check_https_url(self, "api_url")
        author = self.options["author"]
        if isinstance(author, str) and not AUTHOR.fullmatch(author):
            raise ConfigError(
                f"channel {self.name!r} (linkedin): author must be urn:li:organization:<digits> "
                f"or urn:li:person:<id>, not {author!r}"
            )
        version = self.options["version"]
        if isinstance(version, str) and not re.fullmatch(r"20\d\d(0[1-9]|1[0-2])", version):
            raise ConfigError(
                f"channel {self.name!r} (linkedin): version must be a month as YYYYMM, such as "
                f"{DEFAULT_VERSION}, not {version!r}"
            )
        visibility = self.options["visibility"]
        if visibility not in VISIBILITIES:
            raise ConfigError(
                f"channel {self.name!r} (linkedin): visibility must be one of "
                f"{', '.join(VISIBILITIES)}, not {visibility!r}"
            )

    def measure(self, text: str) -> int:
        return utf16_units(text)

    def _file_problems(self, f: MediaFile) -> list[str]:
        """The class limits (`Channel.check_media`), and an address refused at its file's
        line: the Images API uploads bytes, it fetches nothing."""
        if is_url(f.media.path):
            return [
                "LinkedIn takes image files, not addresses; put the image in the project's "
                "media/ folder"
            ]
        return super()._file_problems(f)

    # -- network --------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {
            "LinkedIn-Version": str(self.value("version")),
            "X-Restli-Protocol-Version": "2.0.0",
        }

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = str(self.value("api_url")).rstrip("/") + path
        headers = {**self._headers(), **kwargs.pop("headers", {})}
        return self.call(method, url, token=self.secret("token"), headers=headers, **kwargs)

    def error_reason(self, response: requests.Response) -> str:
        """LinkedIn errors: {"status", "serviceErrorCode", "code", "message"}."""
        body = httpkit.json_body(response)
        message = body.get("message")
        if not isinstance(message, str) or not message:
            return ""
        code = body.get("code") if isinstance(body.get("code"), str) else ""
        text = f"HTTP {response.status_code}: {' '.join(message.split())}"
        text += f" ({code})" if code else ""
        hint = HINTS.get(response.status_code)
        return f"{text}: {hint}" if hint else text

    def upload(self, media: Media) -> str:
        """The image's URN (urn:li:image:...), after its bytes are PUT to the upload URL."""
        try:
            with open(media.path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise PermanentError(f"cannot read media file {media.path}: {exc.strerror}") from None
        mime = media.mime_type or mimetypes.guess_type(media.path)[0] or "application/octet-stream"
        with httpkit.before_the_post():  # an uploaded image is not a post
            upload_url, image = self._initialize_upload()
            self._put(upload_url, data, mime)
        return image

    def _initialize_upload(self) -> tuple[str, str]:
        """(upload URL, image URN) from POST /rest/images?action=initializeUpload."""
        body = {"initializeUploadRequest": {"owner": str(self.value("author"))}}
        response = self._call(
            "POST", "/rest/images", params={"action": "initializeUpload"}, json=body
        )
        value = httpkit.json_body(response).get("value")
        value = value if isinstance(value, dict) else {}
        upload_url, image = value.get("uploadUrl"), value.get("image")
        if not isinstance(upload_url, str) or not isinstance(image, str):
            raise PermanentError(
                f"HTTP {response.status_code}: linkedin answered initializeUpload without an "
                "uploadUrl and image"
            )
        self.add_secret(upload_url, url=True)  # a signed, short-lived address
        return upload_url, image

    def _put(self, upload_url: str, data: bytes, mime: str) -> None:
        # The token goes only to LinkedIn's own hosts (or the configured API server).
        host = urlsplit(upload_url).hostname or ""
        ours = host == urlsplit(str(self.value("api_url"))).hostname or host.endswith(
            (".linkedin.com", ".licdn.com")
        )
        token = self.secret("token") if ours else None
        self.call("PUT", upload_url, token=token, data=data, headers={"Content-Type": mime})

    def send(self, message: Message, idempotency_key: str) -> Receipt:
        body: dict[str, Any] = {
            "author": str(self.value("author")),
            "commentary": little_text(message.text),
            "visibility": message.options.get("visibility") or self.options["visibility"],
            "distribution": {
                "feedDistribution": "MAIN_FEED",
                "targetEntities": [],
                "thirdPartyDistributionChannels": [],
            },
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        }
        images = [
            {"id": media.ref or self.upload(media), "altText": media.alt} for media in message.media
        ]
        if len(images) == 1:
            body["content"] = {"media": images[0]}
        elif images:
            body["content"] = {"multiImage": {"images": images}}
        response = self._call("POST", "/rest/posts", json=body)
        urn = response.headers.get("x-restli-id")
        if not urn or not urn.startswith("urn:li:"):
            # A 2xx is a post that exists: without its URN it is sent with the id unknown.
            return Receipt(note=unreadable(response, "an x-restli-id header"))
        return Receipt(remote_id=urn, url=f"https://www.linkedin.com/feed/update/{urn}/")

    def verify(self) -> str:
        author = str(self.value("author"))
        if author.startswith("urn:li:organization:"):
            number = author.rsplit(":", 1)[1]
            page = httpkit.json_body(self._call("GET", f"/rest/organizations/{number}"))
            name = page.get("localizedName", "?")
            return f"token works for the LinkedIn Page {name} ({author})"
        me = httpkit.json_body(self._call("GET", "/v2/userinfo"))
        return f"token works for {me.get('name', '?')} ({author})"
