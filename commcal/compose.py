"""Delivery -> Message: the template context (vars, member tokens, codes), rendering, and the
message's assembly (subject, poll fallback, the .ics of an event). No network."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from commcal.audience import Member
from commcal.calendar.model import Calendar, Codes, Item
from commcal.channels.base import Channel, Media, Message
from commcal.deliveries import Delivery, Memo
from commcal.project import Project
from commcal.render import SETTING, Setting
from commcal.timeutil import zone


def _item_layers(
    project: Project, calendar: Calendar | None, item: Item, memo: Memo
) -> dict[str, Any]:
    """The part of an item's context that no occurrence changes, built once per item and run:
    project vars, calendar vars, item vars (later layers win), and the item itself."""
    key = (item.calendar, item.id)
    layers = memo.layers.get(key)
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
        memo.layers[key] = layers
    return layers


def context(
    project: Project, calendar: Calendar | None, delivery: Delivery, memo: Memo | None = None
) -> dict[str, Any]:
    """What a template sees. Later layers win: project vars, calendar vars, item vars."""
    memo = memo if memo is not None else Memo()
    item = delivery.item
    timezone = delivery.timezone
    locale = delivery.locale
    tz = zone(timezone)
    ctx = dict(_item_layers(project, calendar, item, memo))
    occurrence = delivery.occurrence
    ctx["channel"] = {"name": delivery.channel, "type": delivery.channel_type}
    ctx["at"] = (delivery.at or occurrence.when).astimezone(tz)
    ctx["step"] = occurrence.step
    ctx["locale"] = locale
    ctx["timezone"] = timezone
    links = project.config.links
    ctx[SETTING] = Setting(locale, tz, links.utm_source, links.utm_medium)
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
    if delivery.personal:
        # Only messages to one person know who they are: a broadcast post of the same item
        # (Mastodon, console) has no `member`, and a template that needs one says so.
        ctx.update(member_context(project, delivery, memo))
    return ctx


PREVIEW_TOKEN = "PREVIEW-TOKEN"


def _member_secret(project: Project, memo: Memo | None) -> str | None:
    """members.secret resolved once per run, not once per member's message."""
    if memo is None:
        return project.config.member_secret(project.env)
    if memo.secret is None:
        memo.secret = (project.config.member_secret(project.env),)
    return memo.secret[0]


def member_token(
    project: Project, delivery: Delivery, purpose: str, memo: Memo | None = None
) -> str:
    """A signed token naming the member (no address inside); a placeholder without a secret,
    which `publish` refuses (see `publish.Publisher`), so previews never need the secret."""
    from commcal.unsubscribe import sign

    secret = _member_secret(project, memo)
    if delivery.recipient is None or not secret:
        return PREVIEW_TOKEN
    return sign(delivery.recipient.key, secret, list_id=purpose)


def member_context(
    project: Project, delivery: Delivery, memo: Memo | None = None
) -> dict[str, Any]:
    """`member`, `unsubscribe_url`, `survey_url` and `code` for audience items."""
    from commcal.tokens import MAX_TOKEN, click_list, click_url, survey_response_url
    from commcal.unsubscribe import SURVEY, UNSUBSCRIBE, token_list, unsubscribe_url

    item = delivery.item
    person = delivery.recipient or Member(email="member@example.org", name="Member")
    ctx: dict[str, Any] = {
        "member": person.template_vars(),
    }
    members = project.config.members
    if members.unsubscribe_url:
        token = member_token(project, delivery, token_list(UNSUBSCRIBE, item.audience or ""), memo)
        ctx["unsubscribe_url"] = unsubscribe_url(members.unsubscribe_url, token)
    survey = item.survey_url
    if survey:
        token = member_token(
            project, delivery, token_list(SURVEY, f"{item.calendar}/{item.id}"), memo
        )
        joiner = "&" if "?" in survey else "?"
        ctx["survey_url"] = f"{survey}{joiner}m={token}"
        if members.survey_responses:
            ctx["survey_response_url"] = survey_response_url(members.unsubscribe_url, token)

    def track(target: str) -> str:
        """A tracked link to `target` (members.track_clicks), else `target` itself."""
        target = str(target)
        if not members.track_clicks or not target.startswith(("https://", "http://")):
            return target
        token = member_token(
            project, delivery, click_list(f"{item.calendar}/{item.id}", target), memo
        )
        # A URL so long that its token would be refused by the server stays untracked.
        return target if len(token) > MAX_TOKEN else click_url(members.unsubscribe_url, token)

    ctx["track"] = track
    if item.codes is not None:
        ctx["code"] = member_code(project, delivery, item.codes, memo)
    return ctx


def member_code(
    project: Project, delivery: Delivery, codes: Codes, memo: Memo | None = None
) -> str:
    """A derived code (HMAC of item and member: nothing to store) or the reserved pool code."""
    if delivery.code is not None:
        return delivery.code
    prefix = codes.prefix
    if not codes.derive:
        return prefix + "POOL-CODE"  # plan/preview: the real one is reserved at publish time
    import base64
    import hmac

    secret = _member_secret(project, memo)
    if delivery.recipient is None or not secret:
        return prefix + "X" * codes.length
    item = delivery.item
    digest = hmac.new(
        secret.encode(),
        f"code:{item.calendar}/{item.id}:{delivery.recipient.key}".encode(),
        "sha256",
    ).digest()
    # Base32 without look-alikes is easy to read out loud or type from a phone.
    text = base64.b32encode(digest).decode().replace("0", "").replace("1", "")
    return prefix + text[: codes.length]


def pool_codes(project: Project, item: Item) -> list[str]:
    """The single-use codes of an offer's pool file, in file order (blank and # lines skipped)."""
    path = project.root / (item.codes.pool if item.codes is not None else "")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def message_for(project: Project, delivery: Delivery, memo: Memo | None = None) -> Message:
    """Render one delivery; raises RenderError with the template's file and line. A part of a
    thread is its part of the thread (commcal.threads), which may raise ThreadProblem."""
    if delivery.part:
        from commcal.threads import part_message

        return part_message(project, delivery, memo)
    return rendered_message(project, delivery, memo)


def rendered_message(
    project: Project, delivery: Delivery, memo: Memo | None = None, *, template: str = ""
) -> Message:
    """One delivery's template (or `template`: a thread's part) rendered into a Message."""
    item = delivery.item
    ctx = context(project, project.calendar(item.calendar), delivery, memo)
    rendered = project.renderer.render(
        template or delivery.occurrence.template,
        delivery.channel_type,
        delivery.locale,
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
                "results": item.poll.get("results", "live"),
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
    if item.kind == "event" and delivery.per_recipient:
        options["attachments"] = [event_invitation(item, delivery, text)]
    return Message(
        channel=delivery.channel,
        channel_type=delivery.channel_type,
        text=text,
        subject=subject,
        html=rendered.html,
        language=item.langs[0] if item.langs else delivery.locale.split("_")[0],
        languages=item.langs,
        media=message_media(project, delivery, adapter),
        recipient=recipient,
        headers=headers,
        options=options,
    )


def message_media(
    project: Project, delivery: Delivery, adapter: Channel | None
) -> tuple[Media, ...]:
    """The item's files for the delivery's channel, each with the alt text of the delivery's
    locale ("" when it has none: the check says so) and, with `media: {fit: true}`, a copy
    that fits the channel in place of an image that does not (commcal.mediacheck.fit)."""
    entries = delivery.item.media_for(delivery.channel)
    if not entries:
        return ()
    from commcal.calendar.media import alt_text

    out = []
    for entry in entries:
        path = str(project.root / entry.file) if entry.file else entry.url
        media = Media(path, alt_text(entry.alt, delivery.locale) or "", focus=entry.focus)
        if project.config.media_fit and adapter is not None:
            from commcal.mediacheck import fit

            # unreadable, or .commcal/ read-only: the check reports the file as it is
            with contextlib.suppress(OSError):
                media = fit(project.root, adapter, media)
        out.append(media)
    return tuple(out)


def poll_fallback(text: str, poll: Mapping[str, Any]) -> str:
    """Networks without native polls (Bluesky, Slack, mail) get the options as a numbered list
    to answer by number, unless the template already lists every option itself."""
    options = list(poll["options"])
    if all(option in text for option in options):
        return text
    lines = [f"{number}. {option}" for number, option in enumerate(options, 1)]
    return text.rstrip() + "\n\n" + "\n".join(lines)


def event_invitation(
    item: Item, delivery: Delivery, text: str, now: datetime | None = None
) -> tuple[str, str, bytes]:
    """The .ics attachment every mail about an event carries; its UID is the same each time,
    so calendar apps update one entry instead of adding another. `now`: its DTSTAMP (default
    the current time; `export html` pins it, so one plan gives one page)."""
    from commcal.ics import attachment, event_ics

    starts = delivery.occurrence.extra["event_at"]
    ends = starts + item.duration if item.duration else None
    ics = event_ics(
        uid=f"{item.id}@{item.calendar}.commcal",
        title=item.title or item.id,
        start=starts,
        end=ends,
        description=text,
        url=item.url,
        location=item.location,
        now=now,
    )
    return attachment(ics)
