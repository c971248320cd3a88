"""Bluesky: an `app.bsky.feed.post` record in the account's repository, with exact facets.

API: https://docs.bsky.app/docs/advanced-guides/posts and the lexicons in
https://github.com/bluesky-social/atproto/tree/main/lexicons (com.atproto.server.createSession,
com.atproto.repo.createRecord, com.atproto.repo.getRecord, com.atproto.repo.uploadBlob).

The session is kept between runs: Bluesky limits logins (createSession) per account, 30 per 5
minutes and 300 a day (https://docs.bsky.app/docs/advanced-guides/rate-limits), and cron runs
`commcal publish` every minute. See `SessionFile`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from commcal.channels import httpkit, linkcard
from commcal.channels.base import (
    REPLIES,
    CannotChange,
    Media,
    Message,
    PermanentError,
    Receipt,
    ReplyTo,
    SendError,
    Setting,
    StaleMedia,
    TransientError,
    unreadable,
)
from commcal.channels.httpkit import HttpChannel
from commcal.channels.text import bluesky_facets, graphemes, utf8_bytes
from commcal.errors import ConfigError
from commcal.media import mime_type, read_bytes

if TYPE_CHECKING:
    import requests

POST = "app.bsky.feed.post"
# Base32-sortable alphabet of TIDs (https://atproto.com/specs/tid).
TID_ALPHABET = "234567abcdefghijklmnopqrstuvwxyz"
# Derived record keys carry a timestamp in [2015-01-01, +2^48 µs ≈ 2023-11): always in the past,
# so they never sort ahead of posts made later by other clients.
TID_BASE_MICROS = 1_420_070_400_000_000
TID_SPAN_MICROS = 2**48


class XrpcPermanentError(PermanentError):
    """A refused XRPC call, with the HTTP status and the XRPC error name (`ExpiredToken` ...)."""

    def __init__(self, message: str, *, status: int, name: str) -> None:
        super().__init__(message)
        self.status = status
        self.name = name


class XrpcTransientError(TransientError):
    def __init__(self, message: str, retry_after: float | None, *, status: int, name: str) -> None:
        super().__init__(message, retry_after)
        self.status = status
        self.name = name


SESSION_VERSION = 1
SESSION_KEYS = ("did", "handle", "accessJwt", "refreshJwt")


class SessionFile:
    """One channel's Bluesky session, kept between runs in `<project>/.commcal/sessions/`.

    The file holds the access and refresh tokens (a refresh token lasts 90 days on the PDS:
    packages/pds/src/account-manager/helpers/auth.ts), so it is created mode 0600 and replaced
    by an atomic rename, never rewritten in place: a reader sees the old file or the new one.
    It names the account it belongs to by a salted hash of service, handle and app password,
    so a session of another account, or of a replaced app password, is never used. Logins and
    refreshes take an exclusive lock (`<channel>.lock`), so overlapping runs log in once and
    then read what the first one wrote. Any trouble with the folder (read-only, full) only
    costs a login: the session is then kept for this run alone.
    """

    def __init__(self, folder: Path, channel: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", channel)
        self.path = folder / f"{safe}.json"
        self.lock_path = folder / f"{safe}.lock"

    @staticmethod
    def _account(salt: str, service: str, handle: str, password: str) -> str:
        text = "\0".join((salt, service, handle.lower(), password))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def load(self, service: str, handle: str, password: str) -> dict[str, Any] | None:
        """The stored session if it belongs to this account, else None."""
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        try:
            with os.fdopen(fd, encoding="utf-8") as handle_file:
                if os.fstat(fd).st_mode & 0o077:  # loosened by hand: take it back
                    os.fchmod(fd, 0o600)
                data = json.load(handle_file)
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("version") != SESSION_VERSION:
            return None
        salt, account = data.get("salt"), data.get("account")
        if not isinstance(salt, str) or not isinstance(account, str):
            return None
        if not hmac.compare_digest(account, self._account(salt, service, handle, password)):
            return None
        session = {key: data.get(key) for key in SESSION_KEYS}
        if not all(isinstance(value, str) and value for value in session.values()):
            return None
        return session

    def save(self, session: Mapping[str, Any], service: str, handle: str, password: str) -> None:
        salt = secrets.token_hex(16)
        data: dict[str, Any] = {
            "version": SESSION_VERSION,
            "service": service,
            "salt": salt,
            "account": self._account(salt, service, handle, password),
        }
        data.update({key: session.get(key) for key in SESSION_KEYS})
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.{salt[:8]}.tmp")
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(temporary)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the channel's session lock (shared by every process of this project)."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, at worst one login too many
            yield
            return
        try:
            self.lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


def record_key(idempotency_key: str) -> str:
    """A valid TID derived from the idempotency key: the same delivery always gets the same rkey.

    `app.bsky.feed.post` declares `"key": "tid"`, and the PDS checks a supplied rkey against it
    (packages/pds/src/repo/prepare.ts, assertValidRecordKeyForSchema); the AppView only indexes
    posts whose rkey is a TID. 48 bits of time and the 10-bit clock id come from SHA-256 of the
    key, so two deliveries collide with odds of about 1 in 2^58 per pair.
    """
    digest = int.from_bytes(hashlib.sha256(idempotency_key.encode("utf-8")).digest()[:8], "big")
    micros = TID_BASE_MICROS + (digest >> 10) % TID_SPAN_MICROS
    value = (micros << 10) | (digest & 0x3FF)  # top bit stays 0: micros < 2^53
    chars = []
    for _ in range(13):
        chars.append(TID_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


class BlueskyChannel(HttpChannel):
    type_name = "bluesky"
    description = "A post on a Bluesky (AT Protocol) account"
    # A thread's parts reply to each other (Message.options["reply_to"]).
    thread_mode: ClassVar[str] = REPLIES
    settings_schema: ClassVar[Mapping[str, Setting]] = {
        "handle": Setting("the account's handle, e.g. acme.bsky.social", required=True),
        "app_password": Setting(
            "an app password (Settings > Privacy and security > App passwords)",
            required=True,
            private=True,
        ),
        "service": Setting("the account's PDS or entryway", default="https://bsky.social"),
        "card": Setting(
            "show a link card for the first link (the page's title, description and image)",
            default=False,
            kind=bool,
        ),
        # Read by `commcal pull` (commcal/engagement/bluesky.py): threads and counts come from
        # an AppView, not the PDS, which stores records but counts nothing.
        "appview": Setting(
            "where `commcal pull` reads threads: an AppView URL (no login), or `pds` to ask "
            "through the account's PDS (logged in; it proxies to Bluesky's AppView)",
            default="https://public.api.bsky.app",
        ),
    }
    # Bluesky: 300 graphemes (app.bsky.feed.post lexicon: text maxGraphemes 300) and, separately,
    # 3,000 UTF-8 bytes (maxLength 3000); check() tests both.
    max_length = 300
    max_bytes = 3000
    length_unit = "graphemes"
    # 429s say when the limit resets in ratelimit-reset, Unix seconds
    # (https://docs.bsky.app/docs/advanced-guides/rate-limits).
    rate_limit_reset = ("ratelimit-reset", "epoch")
    # The record key is derived from the idempotency key, so a repeated create of the same
    # delivery cannot make a second post: the PDS refuses it (today with HTTP 500, see
    # bluesky-social/indigo#873; atproto#4728 adds an explicit error) and send() then finds the
    # record already there with com.atproto.repo.getRecord and returns it.
    idempotent = True
    # Images only: app.bsky.embed.images takes 4, of at most 1,000,000 bytes each (images
    # maxLength 4, image maxSize 1000000 in https://github.com/bluesky-social/atproto/blob/main/
    # lexicons/app/bsky/embed/images.json).
    max_media = 4
    # app.bsky.feed.post `langs`: BCP 47 tags, maxLength 3 (lexicons/app/bsky/feed/post.json).
    max_langs = 3
    max_media_bytes = 1_000_000
    # Seconds a link card's page, and then its image, may take (commcal.channels.linkcard).
    card_seconds = linkcard.FETCH_SECONDS
    # Seconds (connect, then read) a mention's handle lookup may take before it is left plain.
    resolve_seconds = 5.0
    # Files go up first (com.atproto.repo.uploadBlob); the post's embed names each blob, with
    # its alt text and aspectRatio (https://docs.bsky.app/docs/advanced-guides/posts#images-
    # embeds). No video here (app.bsky.embed.video is not implemented): `check_media` says so.
    uploads_media = True
    # Alt text: the lexicon sets no limit; Bluesky's app stops at 2,000 graphemes
    # (bluesky-social/social-app src/lib/constants.ts MAX_ALT_TEXT).
    max_alt_length = 2000

    def configure(self) -> None:
        httpkit.check_https_url(self, "service")
        if self.options["appview"] != "pds":
            httpkit.check_https_url(self, "appview")
        handle = self.options["handle"]
        if isinstance(handle, str) and not (
            handle.startswith("did:") or ("." in handle and not handle.startswith("@"))
        ):
            raise ConfigError(
                f"channel {self.name!r} (bluesky): handle must look like acme.bsky.social "
                f"(no @), not {handle!r}"
            )
        self._session: dict[str, Any] | None = None
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def measure(self, text: str) -> int:
        return graphemes(text)

    def measure_alt(self, text: str) -> int:
        return graphemes(text)

    def check(self, message: Message) -> list[str]:
        problems = super().check(message)
        size = utf8_bytes(message.text)
        if size > self.max_bytes:
            problems.append(
                f"text is {size} bytes in UTF-8, over bluesky's limit of {self.max_bytes} "
                f"by {size - self.max_bytes}"
            )
        if len(message.languages) > self.max_langs:
            problems.append(
                f"a bluesky post has at most {self.max_langs} languages, not "
                f"{len(message.languages)} ({', '.join(message.languages)}): shorten lang:"
            )
        # Bluesky has no polls: options["poll"] is ignored; templates render a text fallback.
        return problems

    # -- XRPC -------------------------------------------------------------------------------------

    def _xrpc(
        self,
        method: str,
        nsid: str,
        *,
        auth: str | None = "access",
        **kwargs: Any,
    ) -> requests.Response:
        """One XRPC call. Errors carry the XRPC `error` name and `message` (`new_error`)."""
        token = None
        if auth is not None:
            session = self._login()
            token = str(session["accessJwt" if auth == "access" else "refreshJwt"])
        url = str(self.value("service")).rstrip("/") + "/xrpc/" + nsid
        return self.call(method, url, token=token, **kwargs)

    def error_reason(self, response: requests.Response) -> str:
        name, reason = _xrpc_error(response)
        return f"HTTP {response.status_code}: {name}: {reason}" if name else ""

    def new_error(
        self,
        text: str,
        retry_after: float | None,
        error: SendError,
        response: requests.Response | None,
    ) -> SendError:
        if response is None:
            return super().new_error(text, retry_after, error, response)
        name = _xrpc_error(response)[0]
        if isinstance(error, TransientError):
            return XrpcTransientError(text, retry_after, status=response.status_code, name=name)
        return XrpcPermanentError(text, status=response.status_code, name=name)

    # -- the session ----------------------------------------------------------------------------

    def _session_file(self) -> SessionFile | None:
        if self.state_dir is None:  # no project folder (a plugin host, tests): keep nothing
            return None
        return SessionFile(self.state_dir / "sessions", self.name)

    def _account(self) -> tuple[str, str, str]:
        service = str(self.value("service")).rstrip("/")
        return service, str(self.value("handle")), self.secret("app_password")

    def _stored(self) -> dict[str, Any] | None:
        store = self._session_file()
        return None if store is None else store.load(*self._account())

    def _keep(self, session: dict[str, Any]) -> dict[str, Any]:
        for key in ("accessJwt", "refreshJwt"):  # redacted from every error text from now on
            value = session.get(key)
            if isinstance(value, str):
                self.add_secret(value)
        missing = [k for k in SESSION_KEYS if not isinstance(session.get(k), str) or not session[k]]
        if missing:
            raise PermanentError(
                f"the PDS answered its session without {', '.join(missing)}; check `service`"
            )
        self._session = session
        store = self._session_file()
        if store is not None:
            store.save(session, *self._account())
        return session

    @contextlib.contextmanager
    def _session_lock(self) -> Iterator[None]:
        store = self._session_file()
        with contextlib.nullcontext() if store is None else store.locked():
            yield

    def _create_session(self) -> dict[str, Any]:
        """A login (com.atproto.server.createSession): the call Bluesky counts and limits."""
        _, handle, password = self._account()
        response = self._xrpc(
            "POST",
            "com.atproto.server.createSession",
            auth=None,
            json={"identifier": handle, "password": password},
        )
        return self._keep(_json(response))

    def _login(self) -> dict[str, Any]:
        """This run's session: the one kept from an earlier run when it is this account's,
        else a new login, made once however many runs overlap (under the session lock)."""
        if self._session is None:
            self._session = self._stored()
        if self._session is None:
            with self._session_lock():
                self._session = self._stored() or self._create_session()
        return self._session

    def _refresh(self) -> None:
        """A new access token: refreshSession with the refresh token, else a new session (the
        refresh token expired or was revoked, e.g. with its app password)."""
        used = (self._session or {}).get("accessJwt")
        with self._session_lock():
            stored = self._stored()
            if stored is not None and stored.get("accessJwt") != used:
                self._session = stored  # another run has refreshed it meanwhile
                return
            try:
                response = self._xrpc("POST", "com.atproto.server.refreshSession", auth="refresh")
            except PermanentError:
                self._session = None
                self._create_session()
                return
            self._keep({**(self._session or {}), **_json(response)})

    def _authed(self, method: str, nsid: str, **kwargs: Any) -> requests.Response:
        """An authenticated call, refreshing an expired session once."""
        try:
            return self._xrpc(method, nsid, **kwargs)
        except XrpcPermanentError as exc:
            # An expired access token: 400 ExpiredToken; one the PDS cannot verify (a session
            # kept from a run before its signing key changed): 400 InvalidToken (both seen on
            # @atproto/pds 0.5.35); a revoked one: 401.
            if exc.name not in ("ExpiredToken", "InvalidToken") and exc.status != 401:
                raise
        self._refresh()
        return self._xrpc(method, nsid, **kwargs)

    # -- sending --------------------------------------------------------------------------------

    def send(self, message: Message, idempotency_key: str) -> Receipt:
        session = self._login()
        did = str(session["did"])
        handle = str(session.get("handle") or self.value("handle"))
        rkey = record_key(idempotency_key)
        record: dict[str, Any] = {
            "$type": POST,
            "text": message.text,
            # atproto datetime: RFC 3339 with a timezone; milliseconds and Z as the app writes it.
            "createdAt": self.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        }
        langs = _langs(message)
        if langs:
            record["langs"] = langs
        # One lookup per handle, however often the post names it.
        resolve = functools.cache(self._resolve_handle)
        facets = bluesky_facets(message.text, resolve_handle=resolve)
        if facets:
            record["facets"] = facets
        embed, note = self._embed(message, facets)
        if embed:
            record["embed"] = embed
        reply = message.options.get("reply_to")
        if isinstance(reply, ReplyTo):
            record["reply"] = self._reply(reply)
        body = {"repo": did, "collection": POST, "rkey": rkey, "record": record}
        url = f"https://bsky.app/profile/{handle}/post/{rkey}"
        try:
            response = self._authed("POST", "com.atproto.repo.createRecord", json=body)
        except SendError as exc:
            if isinstance(exc, XrpcTransientError) and exc.status == 429:
                raise
            if message.media and isinstance(exc, XrpcPermanentError) and _blob_gone(exc):
                raise StaleMedia(str(exc)) from None
            existing = self._existing(did, rkey)
            if existing is None:
                raise
            # getRecord found exactly this repo, collection and key: that is the record's URI.
            uri = existing.get("uri")
            return Receipt(
                remote_id=uri if isinstance(uri, str) else f"at://{did}/{POST}/{rkey}",
                url=url,
                note=note,
            )
        # A 2xx is a created record, whatever its body says: never posted again.
        uri = httpkit.json_body(response).get("uri")
        if not isinstance(uri, str):
            unread = unreadable(response, "a record uri")
            return Receipt(url=url, note=f"{unread}; {note}" if note else unread)
        return Receipt(remote_id=uri, url=url, note=note)

    def _reply(self, reply: ReplyTo) -> dict[str, Any]:
        """A reply's strong refs (uri and cid) to the thread's first post and the post it
        answers: https://docs.bsky.app/docs/advanced-guides/posts#replies. The ledger keeps
        each part's uri; the cid is read back from the parent record (one getRecord), whose own
        `reply.root` is the thread's root once the parent is itself a reply."""
        parent = self._record_at(reply.parent)
        parent_ref = {"uri": reply.parent, "cid": parent.get("cid")}
        if not isinstance(parent_ref["cid"], str):
            raise PermanentError(f"the post {reply.parent} answers no cid: cannot reply to it")
        value = parent.get("value")
        root = value.get("reply", {}).get("root") if isinstance(value, dict) else None
        if not (isinstance(root, dict) and isinstance(root.get("cid"), str)):
            root = parent_ref  # the parent is the thread's first post
        return {"root": {"uri": root["uri"], "cid": root["cid"]}, "parent": parent_ref}

    def _record_at(self, uri: str) -> dict[str, Any]:
        """com.atproto.repo.getRecord of an at:// uri (repo, collection, rkey)."""
        repo, collection, rkey = [*uri.removeprefix("at://").split("/"), "", "", ""][:3]
        if not (repo and collection and rkey):
            raise PermanentError(f"{uri!r} is no at:// record uri: cannot reply to it")
        response = self._authed(
            "GET",
            "com.atproto.repo.getRecord",
            params={"repo": repo, "collection": collection, "rkey": rkey},
        )
        return httpkit.json_body(response)

    def _existing(self, did: str, rkey: str) -> dict[str, Any] | None:
        """The record this delivery already created, if a previous attempt got through."""
        try:
            response = self._authed(
                "GET",
                "com.atproto.repo.getRecord",
                params={"repo": did, "collection": POST, "rkey": rkey},
            )
        except PermanentError:
            return None  # 400 RecordNotFound
        return httpkit.json_body(response)

    # -- after the send -------------------------------------------------------------------------

    def cannot_retract(self) -> str:
        return ""

    def cannot_amend(self) -> str:
        # A record can be rewritten (putRecord), but the app shows no edits and keeps the old
        # text in likes, reposts and quotes: Bluesky has no edit feature.
        return (
            "Bluesky posts cannot be edited: retract this one (`commcal retract ID`) and "
            "post the corrected text as a new item"
        )

    def retract(self, receipt: Receipt, *, reason: str = "", key: str = "") -> bool:
        # com.atproto.repo.deleteRecord takes the repo, collection and rkey of the record's
        # at:// URI (https://atproto.com/specs/at-uri-scheme). Deleting a record that is not
        # there succeeds all the same, so getRecord says first whether it was still there.
        did, collection, rkey = at_uri_parts(receipt.remote_id)
        if collection != POST:
            raise CannotChange(f"{receipt.remote_id} is not a post record")
        found = self._existing(did, rkey)
        self._authed(
            "POST",
            "com.atproto.repo.deleteRecord",
            json={"repo": did, "collection": collection, "rkey": rkey},
        )
        return found is not None

    def posted_text(self, receipt: Receipt) -> str | None:
        did, _, rkey = at_uri_parts(receipt.remote_id)
        found = self._existing(did, rkey)
        value = found.get("value") if found else None
        text = value.get("text") if isinstance(value, dict) else None
        return text if isinstance(text, str) else None

    def _resolve_handle(self, handle: str) -> str | None:
        """A mention's DID (com.atproto.identity.resolveHandle); None leaves it plain text.

        A mention that cannot be resolved now (an unknown handle, a PDS that fails or stalls,
        an answer without a DID) costs its facet, never the post: the app does the same."""
        try:
            response = self._xrpc(
                "GET",
                "com.atproto.identity.resolveHandle",
                auth=None,
                params={"handle": handle},
                timeout=(self.resolve_seconds, self.resolve_seconds),
            )
        except SendError:
            return None
        did = httpkit.json_body(response).get("did")
        # https://atproto.com/specs/did: did:<method>:<identifier>
        return did if isinstance(did, str) and re.fullmatch(r"did:[a-z]+:\S+", did) else None

    def _embed(
        self, message: Message, facets: list[dict[str, Any]]
    ) -> tuple[dict[str, Any] | None, str]:
        """The post's embed (images, or a link card) and a note on what it had to leave out."""
        if message.media:
            images = []
            for media in message.media:
                image = json.loads(media.ref or self.upload(media))
                images.append({"alt": media.alt, **image})
            return {"$type": "app.bsky.embed.images", "images": images}, ""
        if self.options.get("card"):
            links = [
                feature["uri"]
                for facet in facets
                for feature in facet["features"]
                if feature["$type"] == "app.bsky.richtext.facet#link"
            ]
            if links:
                return self._card(links[0])
        return None, ""

    def upload(self, media: Media) -> str:
        """com.atproto.repo.uploadBlob; the ref is the JSON of the embed's `image` (the blob)
        and `aspectRatio` (its pixel size, read from the bytes sent), so that a send resumed
        after a crash builds the same embed without the file."""
        data = read_bytes(media, self.http, self.max_media_bytes)
        image: dict[str, Any] = {"image": self._upload_blob(data, mime_type(media))}
        size = _pixel_size(data)
        if size is not None:
            image["aspectRatio"] = {"width": size[0], "height": size[1]}
        return json.dumps(image)

    def _upload_blob(self, data: bytes, mime: str) -> dict[str, Any]:
        response = self._authed(
            "POST", "com.atproto.repo.uploadBlob", data=data, headers={"Content-Type": mime}
        )
        blob = _json(response).get("blob")
        if not isinstance(blob, dict):
            raise PermanentError("uploadBlob answered without a blob")
        return blob

    def _card(self, uri: str) -> tuple[dict[str, Any] | None, str]:
        """A link card (app.bsky.embed.external) as the official app makes one: the page's Open
        Graph title and description, and its og:image uploaded as a blob for `thumb`.

        A card never blocks a post: a page that cannot be fetched leaves the post without a
        card, an image that cannot be used leaves the card without a thumbnail, and the
        receipt's note says which (see commcal.channels.linkcard for the bounds).
        """
        try:
            card = linkcard.page_card(self.http, uri, self.card_seconds)
        except linkcard.CardError as exc:
            return None, f"posted without a link card: {exc}"
        external: dict[str, Any] = {
            "uri": uri,
            "title": card.title,
            "description": card.description,
        }
        note = ""
        if card.image:
            try:
                data, mime = linkcard.fetch_image(self.http, card.image, self.card_seconds)
                external["thumb"] = self._upload_blob(data, mime)
            except linkcard.CardError as exc:
                note = f"link card without its image: {exc}"
            except SendError as exc:
                note = f"link card without its image: uploadBlob failed: {exc}"
        return {"$type": "app.bsky.embed.external", "external": external}, note

    def verify(self) -> str:
        # A real login, so that the app password itself is checked (one of the day's logins).
        with self._session_lock():
            session = self._create_session()
        return f"app password works for {session.get('handle')} ({session.get('did')})"

    def secrets(self) -> list[str]:
        found = super().secrets()
        session = getattr(self, "_session", None) or {}
        found.extend(str(session[key]) for key in ("accessJwt", "refreshJwt") if session.get(key))
        return found

    def close(self) -> None:
        self._session = None  # kept in the session file, read again by the next send


def at_uri_parts(uri: str | None) -> tuple[str, str, str]:
    """(repo, collection, rkey) of `at://did:plc:abc/app.bsky.feed.post/3kxyz`."""
    parts = (uri or "").removeprefix("at://").split("/")
    if not (uri or "").startswith("at://") or len(parts) != 3 or not all(parts):
        raise CannotChange(f"the post's record URI is not known (recorded: {uri or 'none'})")
    return parts[0], parts[1], parts[2]


def _xrpc_error(response: requests.Response) -> tuple[str, str]:
    """XRPC errors are `{"error": Name, "message": text}` (https://atproto.com/specs/xrpc)."""
    try:
        body = response.json()
    except ValueError:
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    name = body.get("error") if isinstance(body.get("error"), str) else ""
    reason = body.get("message") if isinstance(body.get("message"), str) else ""
    # Not shortened here: `Channel.redact` redacts first, then cuts.
    return str(name), " ".join(str(reason).split())


def _blob_gone(exc: XrpcPermanentError) -> bool:
    """Whether the PDS refused a record for a blob it does not have (an upload it removed:
    blobs no record names are deleted after a while). The real PDS (@atproto/pds) answers
    400 {"error": "BlobNotFound", "message": "Could not find blob: <cid>"}."""
    text = str(exc).lower()
    return exc.name == "BlobNotFound" or "could not find blob" in text


def _pixel_size(data: bytes) -> tuple[int, int] | None:
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.width, img.height
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        return None


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise PermanentError(f"HTTP {response.status_code}: the answer is not JSON") from None
    if not isinstance(body, dict):
        raise PermanentError(f"HTTP {response.status_code}: unexpected answer")
    return body


def _langs(message: Message) -> list[str]:
    """The record's `langs`: every language of the post, the main one first."""
    if message.languages:
        return list(message.languages[: BlueskyChannel.max_langs])
    return [message.language] if message.language else []
