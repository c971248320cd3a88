"""What Meta's Graph APIs share: Facebook Pages, Instagram and Threads.

Errors come as `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`, and the
`code`, not the HTTP status, says whether trying again can help
(https://developers.facebook.com/docs/graph-api/guides/error-handling). Instagram and Threads
publish in two steps, a media container and then its publication (`ContainerChannel`).

The access token travels in the `Authorization: Bearer` header (which graph.facebook.com takes,
as Meta's WhatsApp Cloud API reference shows with every request), never in an `access_token`
query parameter, so no error text or log line built from a URL can hold it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from commcal.channels import httpkit
from commcal.channels.base import (
    Media,
    MediaFile,
    Message,
    PermanentError,
    Receipt,
    SendError,
    StaleMedia,
    TransientError,
    unreadable,
)
from commcal.channels.httpkit import HttpChannel
from commcal.errors import ConfigError

if TYPE_CHECKING:
    import requests

# The newest Graph API version: v27.0, released November 4, 2026 (Graph and Marketing API
# versions ship together: https://developers.facebook.com/documentation/ads-commerce/
# marketing-api/marketing-api-changelog/versions). Each is available for about two years.
GRAPH_API = "https://graph.facebook.com/v27.0"

# Codes whose documented recovery is "wait and retry" (error-handling guide above): 1 API
# unknown, 2 API service (downtime), 4 app too many calls, 17 user too many calls, 32 Page
# request limit, 341 application limit reached, 368 temporarily blocked for policy violations,
# 613 calls within one hour exceeded
# (https://developers.facebook.com/docs/graph-api/overview/rate-limiting); and Instagram's -1
# (server error, "try again") and -2 (media download timed out)
# (https://developers.facebook.com/docs/instagram-platform/instagram-graph-api/reference/
# error-codes); 80001, too many calls to this Page account, "wait a bit and try again"
# (https://developers.facebook.com/docs/graph-api/reference/album/photos). An error body's own
# `"is_transient": true` counts too.
TRANSIENT_CODES = frozenset({-2, -1, 1, 2, 4, 17, 32, 341, 368, 613, 80001})
# Codes that name a token that no longer works: 190 (expired, revoked, password changed ...)
# and 102 (API session).
TOKEN_CODES = frozenset({102, 190})
# 10 and 200-299: a permission is missing or was removed.
PERMISSION_CODES = frozenset({10, *range(200, 300)})
DUPLICATE_POST = 506


def alt_text(alt: str) -> dict[str, str]:
    """A container's `alt_text` field (Instagram and Threads images), none for an empty one."""
    return {"alt_text": alt} if alt else {}


def graph_error(response: requests.Response) -> dict[str, Any]:
    """The `error` object of a Graph answer, or {} when the body has none."""
    error = httpkit.json_body(response).get("error")
    return error if isinstance(error, dict) else {}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def usage_wait(response: requests.Response) -> float | None:
    """Seconds until a throttled app or Page may call again: the largest
    `estimated_time_to_regain_access` (minutes) in X-Business-Use-Case-Usage
    (https://developers.facebook.com/docs/graph-api/overview/rate-limiting#buc-rate-limits)."""
    raw = response.headers.get("X-Business-Use-Case-Usage")
    if not raw:
        return None
    try:
        usage = json.loads(raw)
    except ValueError:
        return None
    minutes = [
        entry.get("estimated_time_to_regain_access")
        for entries in (usage.values() if isinstance(usage, dict) else [])
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict)
    ]
    found = [float(m) for m in minutes if isinstance(m, int | float) and not isinstance(m, bool)]
    return max(found) * 60 if found else None


class GraphChannel(HttpChannel):
    """An adapter of a Graph API (`api_url` + path, a `token` setting)."""

    # What a person does about a token that stopped working, and about a missing permission;
    # each adapter says it for its own network.
    token_hint: ClassVar[str] = "make a new access token and put it in the environment variable"
    permission_hint: ClassVar[str] = "the token lacks a permission this call needs"
    # A network's own codes worth another try (beyond TRANSIENT_CODES), and how long to wait
    # for them when the answer does not say.
    own_transient_codes: ClassVar[Mapping[int, float]] = {}

    def configure(self) -> None:
        httpkit.check_https_url(self, "api_url")

    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = str(self.value("api_url")).rstrip("/") + path
        return self.call(method, url, token=self.secret("token"), **kwargs)

    def error_reason(self, response: requests.Response) -> str:
        error = graph_error(response)
        message = error.get("error_user_msg") or error.get("message")
        if not isinstance(message, str) or not message:
            return ""
        code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
        detail = ", ".join(
            part
            for part in (
                f"code {code}" if code is not None else "",
                f"subcode {subcode}" if subcode is not None else "",
                f"fbtrace_id {error['fbtrace_id']}"
                if isinstance(error.get("fbtrace_id"), str)
                else "",
            )
            if part
        )
        text = f"HTTP {response.status_code}: {' '.join(message.split())}"
        text += f" ({detail})" if detail else ""
        hint = self.hint(code, subcode)
        return f"{text}: {hint}" if hint else text

    def hint(self, code: int | None, subcode: int | None) -> str:
        """What to do about a refused call, by its Graph code; "" when nothing useful to add."""
        if code in TOKEN_CODES:
            return self.token_hint
        if code in PERMISSION_CODES:
            return self.permission_hint
        if code == DUPLICATE_POST:
            return "the network refuses the same text twice in a row: change the text"
        if code == 368:
            return "the account is blocked from posting for a while for a policy reason"
        return ""

    def retry_after(self, error: SendError, response: requests.Response | None) -> float | None:
        seconds = super().retry_after(error, response)
        if seconds is None and response is not None:
            seconds = usage_wait(response)
        return seconds

    def new_error(
        self,
        text: str,
        retry_after: float | None,
        error: SendError,
        response: requests.Response | None,
    ) -> SendError:
        """By the Graph code where the body has one: a throttled call answered 400 or 403 is
        worth retrying, an expired token answered 500 is not."""
        detail = graph_error(response) if response is not None else {}
        code = _int(detail.get("code"))
        if code is not None and code in self.own_transient_codes:
            wait = self.own_transient_codes[code]
            return TransientError(text, wait if retry_after is None else retry_after)
        if code in TRANSIENT_CODES or detail.get("is_transient") is True:
            return TransientError(text, retry_after)
        if code is not None:
            return PermanentError(text)
        return super().new_error(text, retry_after, error, response)


def _graph_id(response: requests.Response) -> str | None:
    value = httpkit.json_body(response).get("id")
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value)


# A container's state: EXPIRED (not published within 24 hours), ERROR, FINISHED, IN_PROGRESS,
# PUBLISHED (IG Container status_code, https://developers.facebook.com/docs/instagram-platform/
# instagram-graph-api/reference/ig-container; Threads containers have the same states in
# `status`, see commcal/channels/threads.py).
FINISHED, IN_PROGRESS, PUBLISHED = "FINISHED", "IN_PROGRESS", "PUBLISHED"
GONE = frozenset({"ERROR", "EXPIRED"})


class ContainerChannel(GraphChannel):
    """Instagram and Threads: create a media container, wait until it is FINISHED, publish it.

    Exactly once: the container is the channel's prepared post (`Channel.prepares_post`).
    `prepare` makes it, and the publisher records its id in the ledger before `prepare` waits
    for it to be FINISHED and before the send begins, so every later attempt, on any host
    sharing the ledger, works with that container: PUBLISHED (an earlier attempt got through,
    its answer lost) is the receipt; FINISHED or IN_PROGRESS is published; ERROR or EXPIRED
    (never published) is replaced by a new container, except that one this attempt made and
    the network refused is first reported, with its reason, as a transient failure (the next
    attempt makes the new one). `send` checks a container's state itself only when `prepare`
    did not just do so (a send not from the publisher). Neither network takes an idempotency
    key, so a publish request whose answer is lost (a dropped connection) is still recorded
    `unknown` by the publisher, never repeated.
    """

    network: ClassVar[str] = ""  # its name in sentences: "Instagram"
    user_setting: ClassVar[str] = "user_id"
    create_edge: ClassVar[str] = "media"
    publish_edge: ClassVar[str] = "media_publish"
    status_field: ClassVar[str] = "status_code"
    # What a status check asks for: the state and, on ERROR, why.
    status_fields: ClassVar[str] = "id,status_code,status"
    # A bounded wait for processing: images take seconds, and an unfinished container is kept
    # for the next attempt (Instagram: query at most once a minute for 5 minutes, content
    # publishing guide, https://developers.facebook.com/docs/instagram-platform/
    # content-publishing#troubleshooting).
    status_checks: ClassVar[int] = 5
    status_interval: ClassVar[float] = 3.0
    prepares_post = True

    def configure(self) -> None:
        super().configure()
        base = self.options.get("media_base_url")
        if isinstance(base, str):
            httpkit.check_https_url(self, "media_base_url")
        self.sleep: Callable[[float], None] = time.sleep
        # The status `prepare` last saw of each container, read (once) by the `send` that
        # follows it instead of asking again.
        self._seen: dict[str, str] = {}
        # Containers this adapter made, until `prepare` has seen each ready or refused.
        self._made: set[str] = set()

    def user(self) -> str:
        return str(self.value(self.user_setting))

    # -- media as public URLs ---------------------------------------------------------------------

    def public_url(self, media: Media) -> str | None:
        """Where the network can fetch `media`: its own https URL, or the file under the
        project's media/ folder as served at `media_base_url`; None when neither."""
        if media.path.startswith(("https://", "http://")):
            return media.path
        base = self.options.get("media_base_url")
        if not base:
            return None
        return str(self.value("media_base_url")).rstrip("/") + "/" + self.media_name(media.path)

    def media_name(self, path: str) -> str:
        """`path` relative to the project's media/ folder (its name, if it is elsewhere)."""
        whole = Path(path)
        if self.state_dir is not None:
            with contextlib.suppress(ValueError):
                return whole.relative_to(self.state_dir.parent / "media").as_posix()
        parts = whole.parts
        if "media" in parts:
            at = len(parts) - 1 - parts[::-1].index("media")
            return "/".join(parts[at + 1 :]) or whole.name
        return whole.name

    def check(self, message: Message) -> list[str]:
        problems = super().check(message)
        if message.media:  # a post with an image may have no text
            problems = [p for p in problems if p != "message is empty"]
        return problems

    def _file_problems(self, f: MediaFile) -> list[str]:
        """The class limits (count, types, bytes: `Channel.check_media`), and a file with no
        public address, at the calendar line of that file."""
        missing = self.url_problem(f.media)
        return [*super()._file_problems(f), *([missing] if missing else [])]

    def public_urls(self, message: Message) -> list[str]:
        """Every image's public address; a PermanentError naming the fix if one has none."""
        urls = [self.public_url(media) for media in message.media]
        if None in urls:
            raise PermanentError("; ".join(self.url_problems(message)))
        return [url for url in urls if url is not None]

    def url_problems(self, message: Message) -> list[str]:
        return [text for media in message.media if (text := self.url_problem(media))]

    def url_problem(self, media: Media) -> str:
        """Why the network cannot fetch `media` ("" when it can)."""
        if self.public_url(media) is not None:
            return ""
        network = self.network or self.type_name
        return (
            f"{network} fetches each image from a public URL, and {media.path} is a file "
            f"here: write it as a `url:` entry (https://...), or set `media_base_url` on channel "
            f"{self.name!r} to the address where the project's media/ folder is served"
        )

    # -- the two steps ----------------------------------------------------------------------------

    def container_fields(self, message: Message) -> list[dict[str, Any]]:
        """The requests that make the container to publish: the last one makes it; any before
        it make carousel items, whose ids it takes as `children`."""
        raise NotImplementedError

    def _create(self, fields: Mapping[str, Any]) -> str:
        # A container is not a post: a lost one expires unseen.
        with httpkit.before_the_post():
            response = self.api("POST", f"/{self.user()}/{self.create_edge}", data=dict(fields))
        container = _graph_id(response)
        if container is None:
            raise TransientError(
                f"HTTP {response.status_code}: {self.type_name} answered without a container "
                "id; nothing was posted, the next attempt makes a new container"
            )
        return container

    def create_container(self, message: Message) -> str:
        steps = self.container_fields(message)
        children = [self._create(fields) for fields in steps[:-1]]
        final = dict(steps[-1])
        if children:
            final["children"] = ",".join(children)
        container = self._create(final)
        self._made.add(container)
        return container

    def container_status(self, container: str) -> tuple[str, str]:
        """(status, what the network says about it) of a container; ERROR when the network
        no longer knows it."""
        try:
            with httpkit.before_the_post():  # a question, not a post
                response = self.api("GET", f"/{container}", params={"fields": self.status_fields})
        except PermanentError as exc:
            # Only a container the network no longer knows (code 100, or a 404) is gone; any
            # other refusal (an expired token) says nothing about it, and forgetting it could
            # repeat a post that went out.
            answer = exc.response
            code = _int(graph_error(answer).get("code")) if answer is not None else None
            if code == 100 or (answer is not None and answer.status_code == 404):
                return "ERROR", str(exc)
            raise
        body = httpkit.json_body(response)
        status = body.get(self.status_field)
        if not isinstance(status, str):
            raise TransientError(
                f"{self.type_name} answered a container's status without {self.status_field}"
            )
        note = body.get("status") if self.status_field != "status" else body.get("error_message")
        return status.upper(), str(note or "")

    def wait_until_ready(self, container: str) -> tuple[str, str]:
        """The container's status (and the network's note) once it is no longer IN_PROGRESS,
        checked a bounded number of times; still processing after that is a transient error
        (the container is kept: it is recorded)."""
        status, note = self.container_status(container)
        for _ in range(self.status_checks):
            if status != IN_PROGRESS:
                break
            self.sleep(self.status_interval)
            status, note = self.container_status(container)
        if status == IN_PROGRESS:
            raise TransientError(
                f"{self.type_name} is still processing the media (container {container}); "
                "the next attempt publishes the same container",
                retry_after=60.0,
            )
        return status, note

    def prepare(self, message: Message, ref: str) -> str:
        """A new container when `ref` is "" or names one refused (ERROR, EXPIRED) before this
        attempt; else `ref`, once it is FINISHED (or PUBLISHED: `send` tells). A container
        this attempt made that the network refuses (an image it could not read) is a
        TransientError with the network's reason; the next attempt makes a new one."""
        if not ref:
            return self.create_container(message)
        status, note = self.wait_until_ready(ref)
        fresh = ref in self._made
        self._made.discard(ref)
        if status in GONE:
            if not fresh:
                return self.create_container(message)
            reason = f": {note}" if note else ""
            raise TransientError(
                f"{self.type_name} could not prepare the post (container {ref} is "
                f"{status}{reason}); nothing was posted, the next attempt makes a new container"
            )
        self._seen[ref] = status
        return ref

    def send(self, message: Message, idempotency_key: str) -> Receipt:
        container = message.prepared
        if not container:  # not from the publisher: nothing recorded, nothing to resume
            container = self.prepare(message, self.prepare(message, ""))
        status = self._seen.pop(container, None)
        if status is None:
            status, note = self.wait_until_ready(container)
            if status in GONE:
                reason = f": {note}" if note else ""
                raise StaleMedia(
                    f"{self.type_name} could not prepare the post (container {container} is "
                    f"{status}{reason}); nothing was posted"
                )
        if status == PUBLISHED:
            return Receipt(
                note=f"published by an earlier attempt (container {container}); the post id "
                "was not received"
            )
        response = self.api(
            "POST", f"/{self.user()}/{self.publish_edge}", data={"creation_id": container}
        )
        post_id = _graph_id(response)
        if post_id is None:
            return Receipt(note=unreadable(response, "a media id"))
        return Receipt(remote_id=post_id, url=self.permalink(post_id))

    def permalink(self, post_id: str) -> str | None:
        """The post's public address, asked once after publishing; None if that fails (the
        post is out either way)."""
        try:
            response = self.api("GET", f"/{post_id}", params={"fields": "permalink"})
        except (SendError, ConfigError):
            return None
        link = httpkit.json_body(response).get("permalink")
        return link if isinstance(link, str) and link.startswith("https://") else None

    def verify(self) -> str:
        fields = "id,username"
        me = httpkit.json_body(self.api("GET", f"/{self.user()}", params={"fields": fields}))
        return f"token works for @{me.get('username', '?')} ({self.type_name} id {me.get('id')})"
