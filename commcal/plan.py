"""Occurrences x channels -> deliveries with stable ids, rendered and checked. No network."""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from commcal.audience import Member
from commcal.calendar.expand import Occurrence, occurrences, written_wall
from commcal.calendar.model import Calendar, Item
from commcal.channels.base import Message
from commcal.errors import Problem, ProblemsFound
from commcal.project import Project
from commcal.render import RenderError, language_of
from commcal.timeutil import iso_utc, to_utc, zone


def delivery_id(calendar: str, item: str, when: datetime, channel: str, recipient: str = "") -> str:
    """Deterministic: the same (calendar, item, UTC occurrence, channel[, recipient]) -> same id."""
    return _hashed(id_prefix(calendar, item, when, channel), recipient)


def id_prefix(calendar: str, item: str, when: datetime | str, channel: str) -> bytes:
    """What the ids of one occurrence on one channel share (every member's, for an audience).
    `when` may be given as its `iso_utc` text already."""
    instant = when if isinstance(when, str) else iso_utc(when)
    return f"{calendar}\x1f{item}\x1f{instant}\x1f{channel}\x1f".encode()


def _hashed(prefix: bytes, recipient: str) -> str:
    return hashlib.sha256(prefix + recipient.encode()).hexdigest()[:16]


# The cyclic garbage collector's first threshold while a plan is built (Python's default: 700).
# A year's plan creates some 300,000 objects that all live on; at the default the collector scans
# them again every few hundred deliveries, which was a tenth of `plan` (bench/plan_year.py).
# mypy raises it the same way for its own build (mypy/build.py).
BULK_GC_THRESHOLD = 50_000


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Let the collector run less often while many long-lived objects are made. Only the caller
    that raised the threshold puts it back, so overlapping callers never leave it raised."""
    old = gc.get_threshold()
    if old[0] >= BULK_GC_THRESHOLD:
        yield
        return
    gc.set_threshold(BULK_GC_THRESHOLD, *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    item: Item
    occurrence: Occurrence
    channel: str
    channel_type: str
    # Audience items on a per-recipient channel (mail): one delivery per member. In `plan` the
    # members are not expanded: one delivery stands for `audience_size` of them.
    recipient: Member | None = None
    at: datetime | None = None  # the member's own instant with send_at: local
    audience_size: int = -1  # >= 0: this delivery stands for that many members (plan only)
    code: str | None = None  # a pool code reserved in the ledger for this member (offers)
    # send_at: local in `plan`: the members' zone this delivery stands for (one per zone, at
    # that zone's own instant `at`, `audience_size` = the members in it); "" otherwise.
    zone: str = ""

    @property
    def due(self) -> datetime:
        return self.at or self.occurrence.when

    @property
    def calendar(self) -> str:
        return self.item.calendar

    @property
    def timezone(self) -> str:
        if self.recipient is not None and self.recipient.timezone:
            return self.recipient.timezone
        return self.zone or self.item.timezone

    @property
    def locale(self) -> str:
        if self.recipient is not None and self.recipient.locale:
            return self.recipient.locale
        return self.item.locale

    @property
    def local_due(self) -> datetime:
        return self.due.astimezone(zone(self.item.timezone))


@dataclass(frozen=True)
class Filters:
    calendars: Collection[str] = ()
    channels: Collection[str] = ()
    kinds: Collection[str] = ()
    items: Collection[str] = ()

    def keeps(self, item: Item) -> bool:
        return (
            (not self.calendars or item.calendar in self.calendars)
            and (not self.kinds or item.kind in self.kinds)
            and (
                not self.items
                or item.id in self.items
                or f"{item.calendar}/{item.id}" in self.items
            )
        )


def deliveries(
    project: Project,
    start: datetime,
    end: datetime,
    filters: Filters = Filters(),
    *,
    members: bool = False,
    member: str | None = None,
    broken: list[Problem] | None = None,
) -> list[Delivery]:
    """Every delivery due in [start, end), sorted by due time, calendar, item and channel.

    With `members`, audience items on per-recipient channels expand to one delivery per member
    (streamed from the audience file); otherwise one delivery stands for the whole audience.
    `member` (an address) keeps only that member's deliveries.

    An audience file with errors raises ProblemsFound; with a `broken` list, instead, the items
    that read it get no delivery at all (never a smaller audience) and the problems, with one
    per item left out, are appended to `broken`: publishing isolates them, the rest goes on.
    """
    with fewer_collections():
        return _deliveries(
            project, start, end, filters, members=members, member=member, broken=broken
        )


def _deliveries(
    project: Project,
    start: datetime,
    end: datetime,
    filters: Filters,
    *,
    members: bool,
    member: str | None,
    broken: list[Problem] | None = None,
) -> list[Delivery]:
    found: list[Delivery] = []
    sizes: dict[tuple[str, str], int] = {}
    for calendar in project.calendars:
        for item in calendar.items:
            if not filters.keeps(item):
                continue
            mark = len(found)
            try:
                _item_deliveries(
                    project, item, start, end, filters, found, sizes, members=members, member=member
                )
            except ProblemsFound as exc:  # its audience file has errors (audience.AudienceBroken)
                if broken is None:
                    raise
                del found[mark:]  # the members read before the broken row: none is sent
                broken.extend(exc.problems)
                broken.append(
                    Problem(
                        item.pos,
                        f"item {item.id!r} was not published: its audience file has errors",
                        "fix the file; its mail goes out at the next publish",
                    )
                )
    found.sort(key=lambda d: (d.due, d.calendar, d.item.id, d.channel, d.zone))
    return found


def _item_deliveries(
    project: Project,
    item: Item,
    start: datetime,
    end: datetime,
    filters: Filters,
    found: list[Delivery],
    sizes: dict[tuple[str, str], int],
    *,
    members: bool,
    member: str | None,
) -> None:
    """Append one item's deliveries in [start, end) to `found` (see `deliveries`)."""
    channels = [c for c in item.channels if not filters.channels or c in filters.channels]
    if not channels:
        return
    local = item.extra.get("send_at") == "local"
    # A member's own zone may move an occurrence by up to a day either way.
    pad = timedelta(days=1) if local else timedelta(0)
    routes = []
    for channel in channels:
        adapter = project.channels.get(channel)
        kind = adapter.type_name if adapter else project.config.channels[channel].type
        audience = item.audience if adapter and adapter.per_recipient else None
        routes.append((channel, kind, audience))
    for occurrence in occurrences(item, start - pad, end + pad):
        if not local and not start <= occurrence.when < end:
            continue
        instant = iso_utc(occurrence.when)  # shared by every channel's id
        for channel, kind, audience in routes:
            prefix = id_prefix(item.calendar, item.id, instant, channel)
            if audience is None:
                if start <= occurrence.when < end:
                    found.append(
                        Delivery(
                            _hashed(prefix, ""),
                            item,
                            occurrence,
                            channel,
                            kind,
                        )
                    )
                continue
            if not (members or member) and local:
                # One delivery per member zone, at that zone's own instant.
                found.extend(
                    d
                    for d in _zone_deliveries(project, item, occurrence, prefix, channel, kind)
                    if start <= d.due < end
                )
                continue
            if not (members or member):
                if start <= occurrence.when < end:
                    key = (item.calendar, item.id)
                    if key not in sizes:
                        sizes[key] = audience_size(project, item)
                    found.append(
                        Delivery(
                            _hashed(prefix, ""),
                            item,
                            occurrence,
                            channel,
                            kind,
                            audience_size=sizes[key],
                        )
                    )
                continue
            for person in _members(project, item, member):
                at = _member_instant(item, occurrence.when, person) if local else None
                due = at or occurrence.when
                if start <= due < end:
                    found.append(
                        Delivery(
                            _hashed(prefix, person.key),
                            item,
                            occurrence,
                            channel,
                            kind,
                            recipient=person,
                            at=at,
                        )
                    )


def _zone_deliveries(
    project: Project, item: Item, occurrence: Occurrence, prefix: bytes, channel: str, kind: str
) -> Iterator[Delivery]:
    """`send_at: local` in `plan`: one delivery per zone of the item's members, due at the
    instant `publish` sends that zone's members (`member_zone_instant`). The calendar zone's
    delivery keeps the id a plan without zones would give it; the others add their zone."""
    counts = {name: count for name, (_, count) in member_zones(project, item).items()}
    for name, count in (counts or {item.timezone: 0}).items():
        at = member_zone_instant(item, occurrence, name)
        salt = "" if name == item.timezone else f"zone:{name}"
        yield Delivery(
            _hashed(prefix, salt),
            item,
            occurrence,
            channel,
            kind,
            at=at,
            audience_size=count,
            zone=name,
        )


def _members(project: Project, item: Item, only: str | None) -> Iterator[Member]:
    from commcal.audience import members, recipient_key

    assert item.audience is not None
    wanted = recipient_key(only) if only else None
    for person in members(project.root, item.audience, item.extra.get("where")):
        if wanted is None or person.key == wanted:
            yield person


def audience_size(project: Project, item: Item) -> int:
    """How many members an item reaches; file errors are reported by `check` and `validate`."""
    from commcal.audience import count

    return count(project.root, item.audience or "", item.extra.get("where"), problems=[])


def audience_problems(project: Project) -> list[Problem]:
    """What `validate` adds for audiences: each file's errors and skipped rows, offers whose code
    pool is missing or smaller than the audience, and members whose language has no template."""
    from commcal.audience import check_audience

    problems: list[Problem] = []
    checked: set[str] = set()
    for calendar in project.calendars:
        for item in calendar.items:
            if item.audience is None:
                continue
            if item.audience not in checked:
                checked.add(item.audience)
                problems.extend(check_audience(project.root, item.audience))
            problems.extend(_untranslated(project, item))
            codes = item.extra.get("codes") or {}
            if codes.get("pool"):
                pos = codes.get("pos", item.pos)
                try:
                    available = len(pool_codes(project, item))
                except OSError as exc:
                    problems.append(
                        Problem(
                            pos,
                            f"item {item.id!r}: cannot read code pool "
                            f"{codes['pool']}: {exc.strerror}",
                            "pool: is a text file, one code per line, relative "
                            "to the project folder",
                        )
                    )
                    continue
                size = audience_size(project, item)
                if available < size:
                    problems.append(
                        Problem(
                            pos,
                            f"item {item.id!r}: code pool {codes['pool']} "
                            f"has {available} codes for {size} members",
                            f"add at least {size - available} codes",
                        )
                    )
    return problems


def locale_samples(project: Project, item: Item) -> dict[str, tuple[Member, int]]:
    """For each locale in the item's audience ("" for members without one): its first member
    in file order and how many members have it. Read once per item and run: an audience may
    have tens of thousands of rows."""
    key = ("locale-samples", item.calendar, item.id)
    samples: dict[str, tuple[Member, int]] | None = project.cache.get(key)
    if samples is None:
        samples = {}
        try:
            for person in _members(project, item, None):
                first, count = samples.get(person.locale or "", (person, 0))
                samples[person.locale or ""] = (first, count + 1)
        except ProblemsFound:  # a broken audience file: `audience_problems` reports it
            samples = {}
        project.cache[key] = samples
    return samples


def member_render_problems(project: Project, planned: Iterable[Planned]) -> list[Problem]:
    """What `validate` adds to `plan`: `plan` renders a message to an audience for its first
    member only, but each locale may use its own template variant, so render it once more for
    one member of every locale in the audience (each step and channel once)."""
    from dataclasses import replace

    problems: list[Problem] = []
    seen: set[tuple[str, str, str, str]] = set()
    for entry in planned:
        delivery = entry.delivery
        adapter = project.channels.get(delivery.channel)
        if delivery.audience_size < 0 or adapter is None or not adapter.per_recipient:
            continue
        item = delivery.item
        key = (item.calendar, item.id, delivery.occurrence.template, delivery.channel)
        if key in seen:
            continue
        seen.add(key)
        for person, _ in locale_samples(project, item).values():
            try:
                message_for(project, replace(delivery, recipient=person))
            except RenderError as exc:
                locale = person.locale or item.locale
                problems.append(
                    replace(
                        exc.problem, hint=f"{exc.problem.hint}, for members with locale {locale}"
                    )
                )
    return list(dict.fromkeys(problems))


def _untranslated(project: Project, item: Item) -> list[Problem]:
    """A warning for members whose language has no variant of the item's template: they would
    get the text written for the item's own locale, with dates and numbers in theirs (Greek
    text saying "24 December"). Templates that look at `locale` themselves are left alone."""
    per_recipient = [
        adapter
        for name in item.channels
        if (adapter := project.channels.get(name)) is not None and adapter.per_recipient
    ]
    if not per_recipient or not item.template:
        return []
    own_language = language_of(item.locale)
    others = {
        locale: count
        for locale, (_, count) in locale_samples(project, item).items()
        if locale and language_of(locale) != own_language
    }
    renderer = project.renderer
    for adapter in per_recipient:
        kind = adapter.type_name
        own = [renderer.find(item.template, kind, item.locale, p) for p in ("text", "html")]
        if own == [None, None] or any(name and "locale" in renderer.source(name) for name in own):
            continue
        # Members of these locales would get the very files the item's own locale gets.
        missing = sorted(
            locale
            for locale in others
            if [renderer.find(item.template, kind, locale, p) for p in ("text", "html")] == own
        )
        if not missing:
            continue
        count = sum(others[locale] for locale in missing)
        shown = next(name for name in own if name)
        files = dict.fromkeys(f"templates/{item.template}.{language_of(m)}.j2" for m in missing)
        return [
            Problem(
                item.pos,
                f"item {item.id!r}: {count} member{'s' if count != 1 else ''} with locale "
                f"{', '.join(missing)} {'get' if count != 1 else 'gets'} templates/{shown}, "
                f"the text for {item.locale} readers, with dates in their own language",
                f"add {' and '.join(files)}, or keep them out with where: {{locale: "
                f"{own_language}}}",
                severity="warning",
            )
        ]  # one warning per item is enough
    return []


def _member_instant(item: Item, when: datetime, person: Member) -> datetime | None:
    """send_at: local: the occurrence's wall-clock time, in the member's own zone."""
    if not person.timezone:
        return None
    return _zone_instant(item, when, person.timezone)


def member_zone_instant(item: Item, occurrence: Occurrence, name: str) -> datetime:
    """send_at: local: when the occurrence is due for members in zone `name`: the wall-clock
    time the calendar wrote, in that zone (a time in that zone's DST gap moves forward by the
    gap there). `publish`, `run` and `plan` all use this."""
    return _zone_instant(item, occurrence.when, name)


def _zone_instant(item: Item, when: datetime, name: str) -> datetime:
    if name == item.timezone:
        return when
    # The written time, not `when`'s wall clock: inside the calendar zone's DST gap those
    # differ by the gap, and a member elsewhere has no gap at that hour.
    return to_utc(written_wall(item, when), zone(name))


def local_send_times(project: Project, start: datetime, end: datetime) -> set[datetime]:
    """The instants in [start, end) at which `send_at: local` items fall due in their members'
    own zones: what `commcal run` wakes up for. One instant per distinct zone, members are not
    expanded (`deliveries(members=True)` does that when the run wakes)."""
    times: set[datetime] = set()
    pad = timedelta(days=1)  # a member's zone moves an occurrence by up to a day either way
    for calendar in project.calendars:
        for item in calendar.items:
            if item.extra.get("send_at") != "local" or item.audience is None or item.draft:
                continue
            if not any(
                (adapter := project.channels.get(name)) is not None and adapter.per_recipient
                for name in item.channels
            ):
                continue
            zones = [name for name in member_zones(project, item) if name != item.timezone]
            for occurrence in occurrences(item, start - pad, end + pad) if zones else ():
                times.update(
                    at
                    for name in zones
                    if start <= (at := member_zone_instant(item, occurrence, name)) < end
                )
    return times


def member_zones(project: Project, item: Item) -> dict[str, tuple[Member, int]]:
    """The zones of an item's members (after `where:`), each with its first member in file
    order and how many members it has; members without a zone count in the item's zone. Read
    once per version of the audience file."""
    from commcal.audience import audience_names

    path = audience_names(project.root).get(item.audience or "")
    if path is None:
        return {}
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return {}
    key = ("member-zones", item.calendar, item.id, stamp)
    zones: dict[str, tuple[Member, int]] | None = project.cache.get(key)
    if zones is None:
        zones = {}
        for person in _members(project, item, None):
            name = person.timezone or item.timezone
            first, count = zones.get(name, (person, 0))
            zones[name] = (first, count + 1)
        project.cache[key] = zones
    return zones


def _item_layers(project: Project, calendar: Calendar | None, item: Item) -> dict[str, Any]:
    """The part of an item's context that no occurrence changes, built once per item and run:
    project vars, calendar vars, item vars (later layers win), and the item itself."""
    key = ("context", item.calendar, item.id)
    layers = project.cache.get(key)
    if layers is None:
        layers = {}
        layers.update(project.config.vars)
        if calendar is not None:
            layers.update(calendar.vars)
        layers.update(item.vars)
        layers["item"] = {
            "id": item.id,
            "kind": item.kind,
            "title": item.title,
            "calendar": item.calendar,
        }
        layers["_utm_medium"] = project.config.links.utm_medium
        layers["_utm_source"] = project.config.links.utm_source
        project.cache[key] = layers
    return layers


def context(project: Project, calendar: Calendar | None, delivery: Delivery) -> dict[str, Any]:
    """What a template sees. Later layers win: project vars, calendar vars, item vars."""
    item = delivery.item
    timezone = delivery.timezone
    locale = delivery.locale
    tz = zone(timezone)
    ctx = dict(_item_layers(project, calendar, item))
    occurrence = delivery.occurrence
    ctx["channel"] = {"name": delivery.channel, "type": delivery.channel_type}
    ctx["at"] = (delivery.at or occurrence.when).astimezone(tz)
    ctx["step"] = occurrence.step
    ctx["locale"] = ctx["_locale"] = locale
    ctx["timezone"] = timezone
    ctx["_tz"] = tz
    extra = occurrence.extra
    if item.kind == "event":
        starts = extra["event_at"].astimezone(tz)
        ctx["event"] = {
            "at": starts,
            "duration": item.duration,
            "ends_at": (extra["event_at"] + item.duration).astimezone(tz)
            if item.duration
            else None,
            "offset": extra["offset"],
            "until": -extra["offset"],
        }
    if item.kind == "contest":
        ctx["contest"] = {
            k: extra[f"{k}_at"].astimezone(tz) for k in ("opens", "closes") if f"{k}_at" in extra
        }
    if item.poll is not None:
        ctx["poll"] = dict(item.poll)
    adapter = project.channels.get(delivery.channel)
    if item.audience is not None and adapter is not None and adapter.per_recipient:
        # Only messages to one person know who they are: a broadcast post of the same item
        # (Mastodon, console) has no `member`, and a template that needs one says so.
        ctx.update(member_context(project, delivery))
    return ctx


PREVIEW_TOKEN = "PREVIEW-TOKEN"


def _member_secret(project: Project) -> str | None:
    """members.secret resolved once per run, not once per member's message."""
    if "member_secret" not in project.cache:
        project.cache["member_secret"] = project.config.member_secret(project.env)
    secret: str | None = project.cache["member_secret"]
    return secret


def member_token(project: Project, delivery: Delivery, purpose: str) -> str:
    """A signed token naming the member (no address inside); a placeholder without a secret,
    which `publish` refuses (see `publish.Publisher`), so previews never need the secret."""
    from commcal.unsubscribe import sign

    secret = _member_secret(project)
    if delivery.recipient is None or not secret:
        return PREVIEW_TOKEN
    return sign(delivery.recipient.key, secret, list_id=purpose)


def member_context(project: Project, delivery: Delivery) -> dict[str, Any]:
    """`member`, `unsubscribe_url`, `survey_url` and `code` for audience items."""
    from commcal.audience import Member
    from commcal.unsubscribe import SURVEY, UNSUBSCRIBE, token_list, unsubscribe_url

    item = delivery.item
    person = delivery.recipient or Member(email="member@example.org", name="Member")
    ctx: dict[str, Any] = {
        "member": person.template_vars(),
    }
    members = project.config.members
    if members.unsubscribe_url:
        token = member_token(project, delivery, token_list(UNSUBSCRIBE, item.audience or ""))
        ctx["unsubscribe_url"] = unsubscribe_url(members.unsubscribe_url, token)
    survey = item.extra.get("survey_url")
    if survey:
        token = member_token(project, delivery, token_list(SURVEY, f"{item.calendar}/{item.id}"))
        joiner = "&" if "?" in survey else "?"
        ctx["survey_url"] = f"{survey}{joiner}m={token}"
    codes = item.extra.get("codes")
    if codes:
        ctx["code"] = member_code(project, delivery, codes)
    return ctx


def member_code(project: Project, delivery: Delivery, codes: dict[str, Any]) -> str:
    """A derived code (HMAC of item and member: nothing to store) or the reserved pool code."""
    if delivery.code is not None:
        return delivery.code
    prefix = str(codes.get("prefix") or "")
    if not codes.get("derive"):
        return prefix + "POOL-CODE"  # plan/preview: the real one is reserved at publish time
    import base64
    import hmac

    secret = _member_secret(project)
    if delivery.recipient is None or not secret:
        return prefix + "X" * int(codes.get("length", 8))
    item = delivery.item
    digest = hmac.new(
        secret.encode(),
        f"code:{item.calendar}/{item.id}:{delivery.recipient.key}".encode(),
        "sha256",
    ).digest()
    # Base32 without look-alikes is easy to read out loud or type from a phone.
    text = base64.b32encode(digest).decode().replace("0", "").replace("1", "")
    return prefix + text[: int(codes.get("length", 8))]


def pool_codes(project: Project, item: Item) -> list[str]:
    """The single-use codes of an offer's pool file, in file order (blank and # lines skipped)."""
    codes = item.extra.get("codes") or {}
    path = project.root / str(codes.get("pool"))
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def message_for(project: Project, delivery: Delivery) -> Message:
    """Render one delivery; raises RenderError with the template's file and line."""
    item = delivery.item
    ctx = context(project, project.calendar(item.calendar), delivery)
    rendered = project.renderer.render(
        delivery.occurrence.template,
        delivery.channel_type,
        ctx["_locale"],
        ctx,
        what=lambda: (
            f"item {item.id!r} in {item.pos.path}:{item.pos.line} (channel {delivery.channel})"
        ),
    )
    adapter = project.channels.get(delivery.channel)
    needs_subject = adapter is not None and adapter.needs_subject
    subject = rendered.subject or (item.title if needs_subject and item.title else None)
    options: dict[str, Any] = {}
    text = rendered.text
    if item.poll is not None:
        if adapter is not None and adapter.native_polls:
            options["poll"] = {
                "question": item.poll["question"],
                "options": list(item.poll["options"]),
                "duration_seconds": int(item.poll["duration"].total_seconds()),
            }
        else:
            text = poll_fallback(text, item.poll)
    headers: dict[str, str] = {}
    recipient = None
    if delivery.recipient is not None:
        from commcal.channels.base import Recipient

        person = delivery.recipient
        recipient = Recipient(person.email, person.name, person.locale)
        if "unsubscribe_url" in ctx:
            from commcal.unsubscribe import list_unsubscribe_headers

            headers.update(
                list_unsubscribe_headers(
                    ctx["unsubscribe_url"], project.config.members.unsubscribe_mailto or None
                )
            )
    if item.kind == "event" and adapter is not None and adapter.per_recipient:
        options["attachments"] = [event_invitation(item, delivery, text)]
    return Message(
        channel=delivery.channel,
        channel_type=delivery.channel_type,
        text=text,
        subject=subject,
        html=rendered.html,
        language=delivery.locale.split("_")[0],
        recipient=recipient,
        headers=headers,
        options=options,
    )


def poll_fallback(text: str, poll: Mapping[str, Any]) -> str:
    """Networks without native polls (Bluesky, Slack, mail) get the options as a numbered list
    to answer by number, unless the template already lists every option itself."""
    options = list(poll["options"])
    if all(option in text for option in options):
        return text
    lines = [f"{number}. {option}" for number, option in enumerate(options, 1)]
    return text.rstrip() + "\n\n" + "\n".join(lines)


def event_invitation(item: Item, delivery: Delivery, text: str) -> tuple[str, str, bytes]:
    """The .ics attachment every mail about an event carries; its UID is the same each time,
    so calendar apps update one entry instead of adding another."""
    from commcal.ics import attachment, event_ics

    starts = delivery.occurrence.extra["event_at"]
    ends = starts + item.duration if item.duration else None
    ics = event_ics(
        uid=f"{item.id}@{item.calendar}.commcal",
        title=item.title or item.id,
        start=starts,
        end=ends,
        description=text,
        url=str(item.extra.get("url") or ""),
        location=str(item.extra.get("location") or ""),
    )
    return attachment(ics)


@dataclass(frozen=True, slots=True)
class Planned:
    """A delivery with its rendered message and the channel's verdict on it."""

    delivery: Delivery
    message: Message | None
    length: int | None = None
    limit: int | None = None
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


def check(project: Project, delivery: Delivery) -> Planned:
    """Render and check one delivery against its channel, offline.

    A delivery standing for a whole audience is rendered for the audience's first member, so
    the preview shows a real message; the audience file's own errors are its problems.
    """
    item = delivery.item
    shown = delivery
    audience_errors: tuple[Problem, ...] = ()
    if delivery.recipient is None and delivery.audience_size >= 0 and item.audience:
        adapter = project.channels.get(delivery.channel)
        if adapter is not None and adapter.per_recipient:
            from dataclasses import replace

            from commcal.audience import sample

            found: list[Problem] = []
            people = sample(project.root, item.audience, item.extra.get("where"), 1, problems=found)
            audience_errors = tuple(p for p in found if p.severity == "error")
            first = member_zones(project, item).get(delivery.zone) if delivery.zone else None
            if first is not None:  # send_at: local: a member of this zone
                people = [first[0]]
            if people:
                shown = replace(delivery, recipient=people[0])
    try:
        message = message_for(project, shown)
    except RenderError as exc:
        return Planned(delivery, None, problems=(exc.problem, *audience_errors))
    adapter = project.channels.get(delivery.channel)
    if adapter is None:
        return Planned(delivery, message)
    problems = tuple(
        Problem(
            item.pos,
            f"item {item.id!r} on {delivery.channel} at "
            f"{delivery.local_due:%Y-%m-%d %H:%M}: {text}",
        )
        for text in adapter.check(message)
    )
    return Planned(
        delivery,
        message,
        adapter.measure(message.text),
        adapter.limit(),
        (*problems, *audience_errors),
    )


def plan(
    project: Project, start: datetime, end: datetime, filters: Filters = Filters()
) -> list[Planned]:
    with fewer_collections():
        return _plan(project, start, end, filters)


def _plan(project: Project, start: datetime, end: datetime, filters: Filters) -> list[Planned]:
    planned = []
    first_step: dict[str, str] = {}
    for delivery in deliveries(project, start, end, filters):
        entry = check(project, delivery)
        step = delivery.occurrence.step
        if delivery.id in first_step:
            # The id is (calendar, item, instant, channel): two steps at one instant would be
            # one delivery, and the ledger would send only the first.
            item = delivery.item
            clash = Problem(
                item.pos,
                f"item {item.id!r}: steps {first_step[delivery.id]!r} and {step!r} fall at the "
                f"same instant ({delivery.local_due:%Y-%m-%d %H:%M}) on {delivery.channel}",
                "move one of them by a minute or more; only one message per instant is sent",
            )
            entry = Planned(
                delivery, entry.message, entry.length, entry.limit, (*entry.problems, clash)
            )
        else:
            first_step[delivery.id] = step
        planned.append(entry)
    return planned


def problems_of(planned: Iterable[Planned]) -> list[Problem]:
    return [p for entry in planned for p in entry.problems]


def find_item(project: Project, name: str) -> Item | None:
    """An item by `id` or `calendar/id`."""
    calendar, _, item_id = name.rpartition("/")
    for cal in project.calendars:
        if calendar and cal.name != calendar:
            continue
        for item in cal.items:
            if item.id == item_id:
                return item
    return None


def next_occurrence(
    project: Project,
    item: Item,
    start: datetime,
    channel: str | None = None,
    *,
    member: str | None = None,
) -> list[Planned]:
    """The item's first occurrence at or after `start` (looking up to ten years ahead)."""
    from datetime import timedelta

    filters = Filters(
        calendars=[item.calendar], items=[item.id], channels=[channel] if channel else ()
    )
    end = start + timedelta(days=3660)
    for span in (timedelta(days=40), timedelta(days=400), end - start):
        found = deliveries(project, start, start + span, filters, member=member)
        if found:
            # One occurrence: with send_at: local, its delivery for each member zone.
            first = found[0].occurrence.when
            return [check(project, d) for d in found if d.occurrence.when == first]
    return []
