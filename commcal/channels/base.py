"""The channel adapter contract.

An adapter module holds its settings schema, its limits, its `check` and its `send`, and nothing
else. `__init__` validates settings and makes no network call. Secrets are written in commcal.yaml
only as `${ENV_VAR}` references; an adapter reads one with `self.secret(key)` at send time, so
`plan` and `validate` never need them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from commcal.config import EnvRef as EnvRef  # its home is config; re-exported for adapters
from commcal.errors import CommcalError, ConfigError
from commcal.redact import MASK, Secrets

if TYPE_CHECKING:
    import requests

# Error text is redacted first, then cut to this many characters (`Channel.redact`); a server's
# own reason to REASON_LIMIT where an adapter adds a hint after it.
ERROR_LIMIT = 500
REASON_LIMIT = 300


@dataclass(frozen=True)
class Recipient:
    """One person a message goes to (newsletters, offers, surveys)."""

    email: str
    name: str = ""
    locale: str = ""


@dataclass(frozen=True)
class Media:
    """One image or video of a message. `ref` is the network's own id for the file once it is
    uploaded (`Channel.upload`): the publisher records it in the ledger before the post, so a
    send resumed after a crash reuses it instead of uploading again."""

    path: str  # a file (absolute: the project resolves media/ paths) or an https URL
    alt: str = ""
    mime_type: str = ""
    focus: tuple[float, float] | None = None  # focal point, x and y from -1 to 1 (Mastodon's)
    ref: str = ""


@dataclass(frozen=True)
class MediaFile:
    """What was read of one Media offline (`commcal.mediacheck.inspect`), for `check_media`:
    None where it could not be known (a URL is fetched only when it is uploaded)."""

    media: Media
    # "image", "video", "unreadable" (named as one, not readable as one), or "" (another kind
    # of file, or not known: a URL)
    kind: str = ""
    mime_type: str = ""
    size: int | None = None  # bytes
    width: int | None = None  # pixels
    height: int | None = None
    seconds: float | None = None  # a video's duration


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered message, ready to check and send. `text` is the post, or a mail's plain part."""

    channel: str
    channel_type: str
    text: str
    subject: str | None = None
    html: str | None = None
    language: str | None = None
    # Every language of a bilingual post (the item's `lang:` list), `language` first; (): only
    # `language`. Networks that take several (Bluesky) read this.
    languages: tuple[str, ...] = ()
    media: tuple[Media, ...] = ()
    recipient: Recipient | None = None
    # Extra mail headers (List-Unsubscribe ...); adapter options (visibility, poll ...; a
    # thread's part: "thread" (part, parts) and, on parts 2..n, "reply_to" (a ReplyTo)).
    headers: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    # The network's id of what `Channel.prepare` made for this message (an Instagram or
    # Threads media container), set by the publisher once it is recorded in the ledger.
    prepared: str = ""


@dataclass(frozen=True)
class ReplyTo:
    """Where a part of a thread goes (calendar `thread:`): `Message.options["reply_to"]` on parts
    2..n of a channel whose `thread_mode` is "replies". The ids are the network's own, as the
    adapter's `send` returned them in `Receipt.remote_id` for the earlier parts (the publisher
    reads them from the ledger): `parent` is the part just before, `root` the first part."""

    part: int  # this part's number, from 1
    parts: int  # how many parts the thread has
    parent: str
    root: str
    parent_url: str | None = None
    root_url: str | None = None


# Thread modes (`Channel.thread_mode`).
REPLIES = "replies"  # each part replies to the one before (Message.options["reply_to"])
IN_ORDER = "in order"  # the parts are posted one after the other, each once the last is sent
NO_THREADS = "none"  # `check` refuses a thread on the channel


@dataclass(frozen=True)
class Receipt:
    """What the network answered: its id for the post and, where it has one, a public URL.

    `note`: why the id is missing when the network said yes (2xx) in an answer that cannot be
    read. The post is out all the same: it is recorded `sent`, never posted again."""

    remote_id: str | None = None
    url: str | None = None
    note: str = ""


def unreadable(response: requests.Response, wanted: str) -> str:
    """The note of a Receipt whose 2xx answer did not name the post (see `Receipt.note`)."""
    kind = (response.headers.get("Content-Type") or "").split(";")[0].strip() or "no type"
    return (
        f"sent, remote id unknown: {response.status_code} answer without {wanted} ({kind}, "
        f"{len(response.content)} bytes)"
    )


def poll_option_problems(
    poll: Mapping[str, Any],
    *,
    fewest: int,
    most: int,
    longest: int,
    measure: Callable[[str], int] = len,
) -> list[str]:
    """What is wrong with a native poll's options: how many there are, and how long each is
    (`measure` counts the network's way). Checks of the question and duration stay with each
    adapter: those rules differ more than they agree."""
    choices = [str(choice) for choice in poll.get("options") or []]
    problems = []
    if not fewest <= len(choices) <= most:
        problems.append(f"a poll needs {fewest} to {most} options, not {len(choices)}")
    for choice in choices:
        if not 1 <= measure(choice) <= longest:
            problems.append(f"poll option {choice!r} needs 1 to {longest} characters")
    return problems


NOT_A_POLL = "poll must be a mapping with question, options and duration_seconds"


def _size(n: int) -> str:
    """Bytes as a person reads them: 1,000,000 bytes; 16 MB (MiB, as servers count them)."""
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MB"
    if n >= 10 << 20:
        return f"{n / (1 << 20):.1f} MB"
    return f"{n:,} bytes"


class SendError(Exception):
    """A send did not succeed. The message must be safe to show and store: no secret in it."""

    # The unsuccessful HTTP answer, when there was one (`httpkit.check_response` sets it), so an
    # adapter can read the network's own error detail. Never shown or stored: its request holds
    # the URL and headers, secrets included.
    response: requests.Response | None = None


class TransientError(SendError):
    """Worth retrying later: timeouts, connection errors, HTTP 408/429/5xx."""

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        *,
        maybe_sent: bool = False,
        unreachable: bool = False,
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        # The server could not be reached at all (connection refused, connect timeout, name
        # not resolved): nothing was sent, and the channel's other sends would fail the same
        # way, so the publisher stops trying this channel for the run (its circuit opens).
        self.unreachable = unreachable
        # The request may have reached the network before it failed (a read timeout, a dropped
        # connection after the body went out). On a channel without idempotency keys a retry
        # could post twice, so the publisher records such a delivery `unknown` instead.
        self.maybe_sent = maybe_sent


class PermanentError(SendError):
    """Retrying will not help: rejected content, bad credentials, 4xx."""


class CannotChange(PermanentError):
    """The network (or this channel's setup) cannot delete or edit a sent post; the text says
    why, and what to do instead where there is something."""


class StaleMedia(PermanentError):
    """The network refused the post because an uploaded file's ref is no longer valid (an
    upload it has forgotten: Mastodon drops unattached media after a day, a Bluesky blob not
    referenced in time is garbage-collected). Nothing was posted. The publisher uploads the
    message's files once more, records the new refs and sends again, once."""


@dataclass(frozen=True)
class Setting:
    """One key of a channel's configuration in commcal.yaml."""

    help: str
    required: bool = False
    private: bool = False  # a secret: must be a ${ENV_VAR} reference, never shown
    default: Any = None
    kind: type | tuple[type, ...] = str


def mask(value: Any) -> str:
    """How a private setting is shown anywhere: the reference, never the value."""
    if isinstance(value, EnvRef):
        return value.template
    return MASK if value else ""


def _redacting(method: Callable[..., Any]) -> Callable[..., Any]:
    """`send`/`verify`/`upload` whose SendError and CommcalError texts are redacted
    (`Channel.redact`) as they leave the adapter, whatever the adapter (a plugin too) put in
    them."""

    @functools.wraps(method)
    def wrapper(self: Channel, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (SendError, CommcalError) as exc:
            exc.args = (self.redact(str(exc)),)
            raise

    wrapper.__redacting__ = True  # type: ignore[attr-defined]
    return wrapper


class Channel:
    """Base class of every adapter type. Subclasses set the class attributes and override `send`.

    The text of every SendError or CommcalError leaving `send`, `verify` or `upload` is redacted
    on its way out (`_redacting`): no secret of the channel is in it, and it is at most
    ERROR_LIMIT long.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("send", "verify", "upload", "retract", "amend", "posted_text"):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "__redacting__", False):
                setattr(cls, name, _redacting(method))

    type_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    settings_schema: ClassVar[Mapping[str, Setting]] = {}
    # Longest text the network accepts, counted in `length_unit` by `measure`; None: no limit.
    max_length: ClassVar[int | None] = None
    length_unit: ClassVar[str] = "characters"
    # Whether the network deduplicates by our idempotency key, so a send interrupted by a crash
    # may be repeated safely. Otherwise an interrupted send is recorded `unknown`.
    idempotent: ClassVar[bool] = False
    # How long the network remembers a key, in seconds; None: for good (a key that is part of
    # the post itself, or a receiver that promises it). Only channels that remember for good
    # have their sends recorded in the background (publish.SentRecorder), since that leaves a
    # few more sends to repeat after a crash.
    idempotency_window: ClassVar[float | None] = None
    # Whether a message needs a subject (mail) and whether the channel sends to recipients.
    needs_subject: ClassVar[bool] = False
    per_recipient: ClassVar[bool] = False
    # Polls (Message.options["poll"]: question, options, duration_seconds). Whether the network
    # has native polls; elsewhere a poll's options are appended to the text as a numbered list
    # (plan.poll_fallback). A channel with native polls states its network's limits under these
    # names, each with a link to the page that says so, and its `check` tests them; None: the
    # network sets no such limit (or has no polls).
    native_polls: ClassVar[bool] = False
    poll_min_options: ClassVar[int | None] = None  # fewest options
    poll_max_options: ClassVar[int | None] = None  # most options
    poll_max_option_length: ClassVar[int | None] = None  # longest option, counted its way
    poll_max_question_length: ClassVar[int | None] = None  # where a poll has its own question
    poll_min_seconds: ClassVar[int | None] = None  # shortest time a poll stays open
    poll_max_seconds: ClassVar[int | None] = None  # longest time a poll stays open
    # Media (Message.media), with a link each where an adapter sets them: the most attachments
    # of one message (0: the adapter sends none, and `check` says so) and the largest one in
    # bytes; None: not checked.
    max_media: ClassVar[int | None] = None
    max_media_bytes: ClassVar[int | None] = None
    # Finer media limits, checked by `check_media` (the default reads them; None or empty: not
    # checked). An instance may set its own under the same name in commcal.yaml where the
    # adapter's settings_schema has it (Mastodon's max_image_bytes: instances configure it).
    image_types: ClassVar[frozenset[str]] = frozenset()  # MIME types taken as images
    video_types: ClassVar[frozenset[str]] = frozenset()  # as videos; empty: no video at all
    max_image_bytes: ClassVar[int | None] = None
    max_video_bytes: ClassVar[int | None] = None
    max_image_pixels: ClassVar[int | None] = None  # width x height
    max_video_pixels: ClassVar[int | None] = None
    max_video_seconds: ClassVar[float | None] = None
    max_aspect_ratio: ClassVar[float | None] = None  # longer side / shorter side
    video_alone: ClassVar[bool] = False  # a video goes alone (Mastodon: 4 images or 1 video)
    max_alt_length: ClassVar[int | None] = None  # counted by `measure_alt`
    # Whether media go up in requests of their own before the post (Mastodon /api/v2/media,
    # Bluesky uploadBlob, X media upload, Matrix /media/v3/upload). The publisher then calls
    # `upload` for each Media without a `ref`, records each ref in the ledger before it posts,
    # and sends the Message with every `ref` set. Channels that send media inside the post's
    # own request (Discord, Telegram, mail) leave this False and read `Media.path` in `send`.
    uploads_media: ClassVar[bool] = False
    # Whether the network publishes a post from an object it makes beforehand (Instagram and
    # Threads media containers). The publisher calls `prepare` before the send begins and
    # records each ref it returns in the ledger (media_uploads, position
    # `ledger.base.PREPARED`) before going on, so a send resumed after a crash, or retried on
    # another host sharing the ledger, publishes that object, or finds it published, instead
    # of making a second post; `send` gets the Message with `prepared` set.
    prepares_post: ClassVar[bool] = False
    # Threads (calendar `thread:`, docs/calendar-format.md "Threads"): each part is a delivery
    # of its own, sent only once the part before it is `sent`. REPLIES: the network links a
    # reply to an earlier post; parts 2..n carry Message.options["reply_to"] (a ReplyTo) and wait
    # until the part before has a remote id. IN_ORDER: no link (a webhook that answers no id):
    # the parts are posted in order, nothing more. NO_THREADS: `check` refuses a thread (mail).
    thread_mode: ClassVar[str] = IN_ORDER
    # A folder of the project where the adapter may keep state between runs (a login session),
    # set by the project after construction (`<project>/.commcal`); None: keep nothing.
    state_dir: Path | None = None

    def __init__(
        self,
        name: str,
        settings: Mapping[str, Any],
        *,
        env: Mapping[str, str] | None = None,
        http: requests.Session | None = None,
    ) -> None:
        self.name = name
        self.env: Mapping[str, str] = os.environ if env is None else env
        self._http = http
        # Secrets the adapter came by itself (session tokens ...): `add_secret`.
        self._found_secrets = Secrets()
        self.options: dict[str, Any] = {}
        problems: list[str] = []
        for key in settings:
            if key != "type" and key not in self.settings_schema:
                known = ", ".join(sorted(self.settings_schema)) or "none"
                problems.append(f"unknown setting {key!r} (known settings: {known})")
        for key, spec in self.settings_schema.items():
            value = settings.get(key, spec.default)
            if value is None:
                if spec.required:
                    problems.append(f"setting {key!r} is required: {spec.help}")
                self.options[key] = None
                continue
            if spec.private and not isinstance(value, EnvRef):
                problems.append(
                    f"setting {key!r} is a secret: write it as an environment reference such as "
                    f"${{{name.upper().replace('-', '_')}_{key.upper()}}}, never literally"
                )
                continue
            if not isinstance(value, EnvRef) and not isinstance(value, spec.kind):
                want = (
                    spec.kind.__name__
                    if isinstance(spec.kind, type)
                    else "/".join(k.__name__ for k in spec.kind)
                )
                problems.append(f"setting {key!r} must be {want}, not {type(value).__name__}")
                continue
            self.options[key] = value
        if problems:
            raise ConfigError(f"channel {name!r} ({self.type_name}): " + "; ".join(problems))
        # `plan` measures a text for its check and again for its length column; counting the
        # network's way (grapheme clusters, URL rules) is the costliest part of a check.
        self.measure = functools.lru_cache(maxsize=256)(self.measure)  # type: ignore[method-assign]
        self.configure()

    # -- hooks for subclasses -------------------------------------------------------------------

    def configure(self) -> None:
        """Check settings beyond their types (URLs, ranges). Raise ConfigError. No network."""

    def upload(self, media: Media) -> str:
        """Upload one file and return the network's reference for it (an id, or a JSON text
        the adapter's `send` reads back). Only for `uploads_media` channels. Raises SendError
        (a TransientError's `maybe_sent` does not matter here: an upload is not a post).
        `send` raises StaleMedia when the network refuses a ref as unknown or expired."""
        raise NotImplementedError(f"{self.type_name} does not upload media separately")

    def prepare(self, message: Message, ref: str) -> str:
        """The ref of what the post is published from, ready to publish: made anew when
        `ref` is "" (nothing recorded, or the network forgot it), else `ref` once the network
        has it ready (or already published: `send` tells). A new ref is returned at once,
        before any wait: the publisher records it and calls again with it. Only for
        `prepares_post` channels. Nothing here posts: raise SendError as `upload` does."""
        raise NotImplementedError(f"{self.type_name} does not prepare posts")

    def remote_id_from_url(self, url: str) -> str | None:
        """The network's id of a post from its public URL, where the URL holds it: what a
        thread's next part replies to after `commcal resolve ID --sent URL` (which records the
        URL only). None: not known from the URL."""
        return None

    def measure(self, text: str) -> int:
        """Length of `text` counted the network's way (code points unless overridden)."""
        return len(text)

    def measure_alt(self, text: str) -> int:
        """Length of an alt text counted the network's way (code points unless overridden)."""
        return len(text)

    def media_limit(self, name: str) -> Any:
        """A media limit (`max_image_bytes` ...): the instance's setting, else the class's."""
        configured = self.options.get(name)
        return configured if configured is not None else getattr(self, name)

    def check_media(self, files: Sequence[MediaFile]) -> list[tuple[int | None, str]]:
        """Offline problems with a message's media, from the limits above: (index of the file
        in `files`, or None for the message as a whole; a sentence). Adapters add their own."""
        problems: list[tuple[int | None, str]] = []
        name = self.type_name
        most = self.max_media
        if most == 0 and files:
            return [(None, f"the {name} adapter sends text only, not media")]
        videos = [n for n, f in enumerate(files) if f.kind == "video"]
        if most is not None and len(files) > most:
            problems.append((None, f"{len(files)} media files, over {name}'s {most} per post"))
        if videos and self.video_alone and len(files) > 1:
            problems.append(
                (videos[0], f"{name} takes up to {most or 'several'} images or 1 video alone")
            )
        for n, f in enumerate(files):
            problems.extend((n, text) for text in self._file_problems(f))
        return problems

    def _file_problems(self, f: MediaFile) -> list[str]:
        name, out = self.type_name, []
        if f.kind == "unreadable":
            return ["cannot be read as an image or a video (damaged, or not what its name says)"]
        kinds = {"image": self.image_types, "video": self.video_types}
        if f.kind == "video" and not self.video_types:
            out.append(f"{name} takes no video here ({f.mime_type})")
            return out
        accepted = kinds.get(f.kind)
        if f.mime_type and (accepted is None or (accepted and f.mime_type not in accepted)):
            wanted = ", ".join(sorted(self.image_types | self.video_types)) or "images"
            out.append(f"{f.mime_type} is not a format {name} takes ({wanted})")
            return out
        most_bytes = self.media_limit(f"max_{f.kind}_bytes") if f.kind else None
        most_bytes = most_bytes if most_bytes is not None else self.max_media_bytes
        if most_bytes is not None and f.size is not None and f.size > most_bytes:
            out.append(f"{_size(f.size)}, over {name}'s limit of {_size(most_bytes)}")
        pixels = self.media_limit(f"max_{f.kind}_pixels") if f.kind else None
        if pixels is not None and f.width and f.height and f.width * f.height > pixels:
            out.append(
                f"{f.width}x{f.height} pixels, over {name}'s limit of {pixels:,} pixels in all"
            )
        ratio = self.max_aspect_ratio
        if ratio is not None and f.width and f.height:
            actual = max(f.width, f.height) / min(f.width, f.height)
            if actual > ratio:
                out.append(f"aspect ratio {actual:.1f}:1, over {name}'s {ratio:g}:1")
        seconds = self.max_video_seconds
        if seconds is not None and f.kind == "video" and f.seconds and f.seconds > seconds:
            out.append(f"video is {f.seconds:.0f} s long, over {name}'s {seconds:g} s")
        alt_limit = self.max_alt_length
        if alt_limit is not None and (length := self.measure_alt(f.media.alt)) > alt_limit:
            out.append(
                f"alt text is {length} characters, over {name}'s limit of {alt_limit} by "
                f"{length - alt_limit}"
            )
        return out

    def limit(self) -> int | None:
        """The length limit in force for this channel (an instance may configure its own)."""
        configured = self.options.get("max_length")
        return int(configured) if configured else self.max_length

    def check(self, message: Message) -> list[str]:
        """Offline problems with a rendered message, each a sentence a marketer can act on."""
        problems: list[str] = []
        limit = self.limit()
        if limit is not None:
            length = self.measure(message.text)
            if length > limit:
                problems.append(
                    f"text is {length} {self.length_unit}, over {self.type_name}'s limit of "
                    f"{limit} by {length - limit}"
                )
        if not message.text.strip() and not message.html:
            problems.append("message is empty")
        if self.needs_subject and not (message.subject or "").strip():
            problems.append("a subject is required (set `subject` in the template)")
        part = message.options.get("thread")
        if part and part[0] == 1 and self.thread_mode == NO_THREADS:  # said once, at part 1
            problems.append(
                f"{self.type_name} cannot post a thread: remove this channel from the item, "
                "or give it an item of its own without thread:"
            )
        return problems

    def send(self, message: Message, idempotency_key: str) -> Receipt:
        raise NotImplementedError(f"{self.type_name} cannot send yet")

    def batch_size(self) -> int:
        """How many messages the publisher hands `send_many` at once, each batch claimed
        (straight into `sending`) and confirmed in one ledger transaction; 0 (the default): one
        `send` at a time, each marked `sending` on its own. A crash leaves at most a batch in
        doubt, so a channel without idempotency keys should keep it small."""
        return 0

    def send_many(
        self, messages: Sequence[tuple[Message, str]], stop: Callable[[], bool]
    ) -> list[Receipt | Exception | None]:
        """Send (message, idempotency key) pairs, as `send` would each, however the channel
        best does it (SMTP: over a pool of connections). One result per pair, in order: its
        Receipt, the exception its send raised, or None when it was not tried (`stop()` became
        true, or the server was found unreachable: nothing was sent for it)."""
        results: list[Receipt | Exception | None] = []
        down = False
        for message, key in messages:
            if down or stop():
                results.append(None)
                continue
            try:
                results.append(self.send(message, key))
            except Exception as exc:  # handed back, as `send` would raise it
                results.append(exc)
                down = isinstance(exc, TransientError) and exc.unreachable
        return results

    def idempotency_scope(self) -> str | None:
        """Where the network keeps our idempotency keys, when that is not one place for good.

        None (the default): a key means the same whoever sends it again. Otherwise a short name
        of the scope a person can recognise and that holds no secret (Matrix: "device ABCDEF of
        @bot:example.org", since a homeserver keeps transaction ids per device and a new login
        is a new device). The publisher records it when a send begins, and a send that may have
        arrived is repeated only under the same scope; under another it becomes `unknown`.
        May ask the network (cache the answer per instance); raise as `send` does.
        """
        return None

    def verify(self) -> str:
        """Check credentials without posting; return a short description of what was checked."""
        return "nothing to verify"

    # -- after the send: `commcal retract` and `commcal amend` (commcal/changes.py) -------------

    def cannot_retract(self) -> str:
        """Why a sent post of this channel cannot be deleted ("" when it can). Offline: from
        the type and its settings alone."""
        return f"{self.type_name} cannot delete a post once it is sent"

    def cannot_amend(self) -> str:
        """Why a sent post of this channel cannot be edited ("" when it can). Offline."""
        return f"{self.type_name} cannot edit a post once it is sent"

    def retract(self, receipt: Receipt, *, reason: str = "", key: str = "") -> bool:
        """Delete the post `receipt` names. True: deleted now; False: the network no longer
        had it (already deleted: a 404), which is as good. `key`: a stable id of this change,
        for networks that dedupe a repeated request by one (Matrix's transaction id). Raises
        CannotChange when the network does not allow it, SendError otherwise."""
        raise CannotChange(self.cannot_retract() or f"{self.type_name} cannot delete posts")

    def amend(self, receipt: Receipt, message: Message, *, key: str = "") -> Receipt:
        """Edit the post `receipt` names in place to say `message`. Returns what the network
        answered: a new id or URL where it gives one (Matrix: the replacement event), else
        `receipt`. Raises CannotChange when the network does not allow edits."""
        raise CannotChange(self.cannot_amend() or f"{self.type_name} cannot edit posts")

    def posted_text(self, receipt: Receipt) -> str | None:
        """The post's text as the network has it now, where it can be read back; None: the
        network cannot say (a `amend` then diffs against what commcal recorded)."""
        return None

    def close(self) -> None:
        """Release connections kept between sends."""

    # -- helpers --------------------------------------------------------------------------------

    def value(self, key: str) -> Any:
        """A setting, with `${ENV}` references resolved; a missing variable is a clear error."""
        raw = self.options.get(key)
        if isinstance(raw, EnvRef):
            resolved = raw.resolve(self.env)
            if resolved is None:
                missing = ", ".join(n for n in raw.names if not self.env.get(n))
                raise ConfigError(
                    f"channel {self.name!r}: environment variable {missing} is not set "
                    f"(commcal.yaml channels.{self.name}.{key} refers to it)"
                )
            return resolved
        return raw

    def secret(self, key: str) -> str:
        value = self.value(key)
        if not value:
            raise ConfigError(f"channel {self.name!r}: setting {key!r} is required to send")
        return str(value)

    def secrets(self) -> list[str]:
        """Every resolved secret value of this channel's private settings."""
        found = []
        for key, spec in self.settings_schema.items():
            raw = self.options.get(key)
            if spec.private and isinstance(raw, EnvRef):
                resolved = raw.resolve(self.env)
                if resolved:
                    found.append(resolved)
        return found

    def add_secret(self, value: str | None, *, url: bool = False) -> None:
        """Redact `value` (a token the adapter obtained, a URL with a token in it) from every
        error text of this channel from now on."""
        if url:
            self._found_secrets.add_url(value)
        else:
            self._found_secrets.add(value)

    def extra_secrets(self, secrets: Secrets) -> None:
        """Add what else is secret in this channel's settings (subclasses: ${ENV} values in
        headers or URLs that are not private settings)."""

    def secret_set(self) -> Secrets:
        """Everything `redact` hides: private settings (URL-valued ones part by part), what
        `extra_secrets` adds, and what the adapter handed to `add_secret`."""
        found = Secrets()
        for value in self.secrets():
            found.add(value)
            if "://" in value:
                found.add_url(value)
        self.extra_secrets(found)
        found.update(self._found_secrets)
        return found

    def redact(self, text: str, limit: int | None = ERROR_LIMIT) -> str:
        """`text` without this channel's secrets, then cut to `limit` characters: the one way
        error text leaves an adapter for output, logs and the ledger (see commcal.redact)."""
        return self.secret_set().redact(text, limit)

    @property
    def http(self) -> requests.Session:
        if self._http is None:
            from commcal.http import new_session

            self._http = new_session()
        return self._http

    def describe_settings(self) -> dict[str, str]:
        """Settings as they may be shown: private ones masked."""
        shown = {}
        for key, spec in self.settings_schema.items():
            raw = self.options.get(key)
            if raw is None:
                continue
            shown[key] = mask(raw) if spec.private else str(raw)
        return shown
