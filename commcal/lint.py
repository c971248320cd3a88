"""Cadence lint: what `commcal validate` says about *when* things go out, over the planned
deliveries of its window. The rules and their settings are `lint:` in commcal.yaml and `staff:`
in calendars (commcal.lintconfig; docs/calendar-format.md#lint).

Every finding is a `Problem` at the item concerned (file:line), naming the other items involved
with theirs; a rule that fires again and again for the same items (a weekly post in quiet hours)
is one finding that says how often. Drafts never go out, so no rule looks at them; an item with
`lint: {skip: [RULE]}` is left out of that rule, and `lint: off` out of all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING, ClassVar

from commcal.calendar.model import Item
from commcal.deliveries import Delivery, deliveries
from commcal.errors import Pos, Problem, sorted_problems
from commcal.lintconfig import REPLY_KINDS, LintConfig
from commcal.project import Project
from commcal.timeutil import format_duration, zone

if TYPE_CHECKING:
    from commcal.engagement.report import SlotResults


@dataclass(frozen=True)
class Limit:
    """A network's documented limit: at most `budget` points in any `window`, each delivery
    costing `cost` points (a mail to an audience: `cost` per member)."""

    budget: int
    window: timedelta
    cost: int
    what: str  # how the network states it, for the finding
    source: str  # the page that documents it


class RateLimits:
    """The limits the rate_budget rule checks, per channel type; each configured channel is
    one account, room or webhook with a budget of its own. Types without documented limits
    (webhook, matrix: the homeserver decides; console, file) are not checked."""

    # Mastodon: 300 requests per 5 minutes per account; a status is one request.
    # https://docs.joinmastodon.org/api/rate-limits/
    MASTODON: ClassVar[tuple[Limit, ...]] = (
        Limit(
            300,
            timedelta(minutes=5),
            1,
            "300 requests per 5 minutes per account",
            "https://docs.joinmastodon.org/api/rate-limits/",
        ),
    )
    # Bluesky: 5,000 points per hour and 35,000 per day per account; creating a record (a
    # post) costs 3 points. https://docs.bsky.app/docs/advanced-guides/rate-limits
    BLUESKY: ClassVar[tuple[Limit, ...]] = (
        Limit(
            5000,
            timedelta(hours=1),
            3,
            "5,000 points per hour, 3 per post",
            "https://docs.bsky.app/docs/advanced-guides/rate-limits",
        ),
        Limit(
            35000,
            timedelta(days=1),
            3,
            "35,000 points per day, 3 per post",
            "https://docs.bsky.app/docs/advanced-guides/rate-limits",
        ),
    )
    # Slack: chat.postMessage and incoming webhooks allow about 1 message per second per
    # channel. https://docs.slack.dev/apis/web-api/rate-limits (Posting messages)
    SLACK: ClassVar[tuple[Limit, ...]] = (
        Limit(
            1,
            timedelta(seconds=1),
            1,
            "about 1 message per second per channel",
            "https://docs.slack.dev/apis/web-api/rate-limits",
        ),
    )
    # Telegram: a bot sends at most about 20 messages per minute to one group.
    # https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this
    TELEGRAM: ClassVar[tuple[Limit, ...]] = (
        Limit(
            20,
            timedelta(minutes=1),
            1,
            "about 20 messages per minute per group",
            "https://core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this",
        ),
    )
    # Discord: a webhook takes 5 requests per 2 seconds (the X-RateLimit-* headers of its
    # answers say so). https://discord.com/developers/docs/topics/rate-limits
    DISCORD: ClassVar[tuple[Limit, ...]] = (
        Limit(
            5,
            timedelta(seconds=2),
            1,
            "5 requests per 2 seconds per webhook",
            "https://discord.com/developers/docs/topics/rate-limits",
        ),
    )

    @classmethod
    def of(cls, channel_type: str, config: LintConfig, channel: str) -> tuple[Limit, ...]:
        if channel_type == "smtp":
            cap = config.smtp_daily_cap.get(channel)
            if cap is None:
                return ()
            # The provider's cap, from lint.rate_budget.smtp_daily_cap; one mail per member.
            return (Limit(cap, timedelta(days=1), 1, f"{cap:,} mails per day", "commcal.yaml"),)
        limits: dict[str, tuple[Limit, ...]] = {
            "mastodon": cls.MASTODON,
            "bluesky": cls.BLUESKY,
            "slack": cls.SLACK,
            "telegram": cls.TELEGRAM,
            "discord": cls.DISCORD,
        }
        return limits.get(channel_type, ())


@dataclass(frozen=True)
class _Post:
    """One delivery as the rules see it."""

    item: Item
    channel: str
    channel_type: str
    when: datetime  # UTC
    zone: str  # the readers' zone: the calendar's, or the members' (send_at: local)
    occurrence: datetime
    weight: int  # mails it stands for (an audience), else 1
    zone_delivery: bool  # one of the deliveries of a send_at: local mail, one per zone


def lint_findings(
    project: Project,
    start: datetime,
    end: datetime,
    planned: Iterable[Delivery] | None = None,
    results: SlotResults | None = None,
) -> list[Problem]:
    """Every cadence finding over the deliveries in [start, end), sorted by file and line:
    `planned` when the caller has them already (validate), else expanded here. `results`:
    how past posts did per slot (`commcal.engagement.report.slot_results`), for slow_slot."""
    if planned is None:
        from commcal.threads import expand

        planned = expand(project, deliveries(project, start, end, broken=[]))
    kept = [d for d in planned if not d.item.draft]
    sent = [_post(d) for d in kept]
    # A thread is one post to the cadence rules (its first part stands for it), but each of
    # its parts is a post to the network's rate limits.
    posts = [post for post, d in zip(sent, kept, strict=True) if d.part <= 1]
    config = project.config.lint or LintConfig()
    findings = _Findings(config, posts)
    _max_silence(project, start, end, findings)
    _min_spacing(findings)
    _max_per_day(project, findings)
    _quiet_hours(posts, findings)
    _staffed_hours(project, posts, findings)
    _blackout(posts, findings)
    _rate_budget(sent, findings)
    if results is not None:
        _slow_slot(posts, findings, results)
    return sorted_problems(findings.problems())


def _post(delivery: Delivery) -> _Post:
    weight = delivery.audience_size if delivery.per_recipient and delivery.audience_size > 0 else 1
    return _Post(
        delivery.item,
        delivery.channel,
        delivery.channel_type,
        delivery.due,
        delivery.zone or delivery.item.timezone,
        delivery.occurrence.when,
        weight,
        bool(delivery.zone),
    )


def _where(item: Item) -> str:
    return f"{item.id!r} ({item.pos.path}:{item.pos.line})"


def _local(when: datetime, zone_name: str) -> str:
    return f"{when.astimezone(zone(zone_name)):%Y-%m-%d %H:%M} {zone_name}"


def _names(items: Sequence[Item], most: int = 10) -> str:
    shown = ", ".join(_where(i) for i in items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


@dataclass
class _Group:
    message: str
    hint: str
    count: int = 0


class _Findings:
    """Findings grouped by rule, position and a key: repeats are counted, not repeated."""

    def __init__(self, config: LintConfig, posts: list[_Post]) -> None:
        self.config = config
        self.groups: dict[tuple[str, Pos, object], _Group] = {}
        self.all_posts = posts
        self._channels: dict[str, list[_Post]] | None = None

    def by_channel(self, rule: str) -> dict[str, list[_Post]]:
        """`_by_channel` of the posts `rule` looks at, made once for every rule."""
        if self._channels is None:
            self._channels = _by_channel(self.all_posts)
        settings = self.config.rule(rule)
        if not settings.enabled:
            return {}
        only = settings.channels
        return {
            name: [p for p in found if not p.item.lint_skip or rule not in p.item.lint_skip]
            for name, found in self._channels.items()
            if not only or name in only
        }

    def posts(self, rule: str, posts: Iterable[_Post]) -> list[_Post]:
        """The posts `rule` looks at: its channels', leaving out items that skip it."""
        settings = self.config.rule(rule)
        if not settings.enabled:
            return []
        only = settings.channels
        return [
            p
            for p in posts
            if (not p.item.lint_skip or rule not in p.item.lint_skip)
            and (not only or p.channel in only)
        ]

    def repeat(self, rule: str, pos: Pos, key: object) -> bool:
        """Whether (rule, pos, key) was found before; if so it is counted once more, and
        the caller need not write the message again."""
        group = self.groups.get((rule, pos, key))
        if group is not None:
            group.count += 1
        return group is not None

    def add(
        self, rule: str, pos: Pos, key: object, message: str, hint: str, count: int = 1
    ) -> None:
        """`message` for the first time (rule, pos, key) is found; later ones are counted."""
        self.groups.setdefault((rule, pos, key), _Group(message, hint)).count += count

    def problems(self) -> list[Problem]:
        found = []
        for (rule, pos, _), group in self.groups.items():
            more = f" ({group.count} times in the window)" if group.count > 1 else ""
            severity = self.config.rule(rule).severity
            found.append(Problem(pos, f"{rule}: {group.message}{more}", group.hint, severity))
        return found


def _per_item(posts: Iterable[_Post]) -> list[tuple[_Post, str, int]]:
    """The posts a rule found, per item: its first post, the channels named, and on how many
    occurrences (one finding per item, not one per channel and week)."""
    items: dict[tuple[str, str], list[_Post]] = {}
    for post in posts:
        items.setdefault((post.item.calendar, post.item.id), []).append(post)
    return [
        (
            min(same, key=lambda p: p.when),
            ", ".join(dict.fromkeys(p.channel for p in same)),
            len({(p.occurrence, p.zone) for p in same}),
        )
        for same in items.values()
    ]


def _skip_hint(rule: str) -> str:
    return f"or leave the item out of this rule with lint: {{skip: [{rule}]}}"


def _by_channel(posts: Iterable[_Post]) -> dict[str, list[_Post]]:
    """Posts per channel in time order, one per occurrence (the members' zones of one mail
    are one post to the rules of cadence)."""
    channels: dict[str, list[_Post]] = defaultdict(list)
    seen: set[tuple[str, str, datetime, str]] = set()
    for post in posts:
        if post.zone_delivery:
            key = (post.item.calendar, post.item.id, post.occurrence, post.channel)
            if key in seen:
                continue
            seen.add(key)
        channels[post.channel].append(post)
    for found in channels.values():  # in time order already, unless zones were in
        found.sort(key=lambda p: p.occurrence)
    return channels


def _max_silence(project: Project, start: datetime, end: datetime, found: _Findings) -> None:
    limit = found.config.max_silence
    rule = found.config.rule("max_silence")
    if limit is None or not rule.enabled:
        return
    tz = project.config.timezone
    by_channel = found.by_channel("max_silence")
    used = rule.channels or sorted(
        {
            c
            for cal in project.calendars
            for i in cal.items
            if not i.draft and "max_silence" not in i.lint_skip
            for c in i.channels
        }
    )
    hint = f"plan something on it at least every {format_duration(limit)}"
    for channel in used:
        times = by_channel.get(channel, [])
        if not times:
            spec = project.config.channels.get(channel)
            pos = spec.pos if spec is not None else Pos("commcal.yaml")
            found.add(
                "max_silence",
                pos,
                channel,
                f"nothing goes out on {channel} from {_local(start, tz)} to {_local(end, tz)}, "
                f"longer than {format_duration(limit)}",
                hint,
            )
            continue
        edges: list[tuple[datetime, _Post | None]] = [(start, None)]
        edges += [(p.occurrence, p) for p in times]
        edges.append((end, None))
        for (a, before), (b, after) in pairwise(edges):
            if b - a <= limit:
                continue
            at = after or before
            assert at is not None
            key = (channel, before.item.id if before else "", after.item.id if after else "")
            if found.repeat("max_silence", at.item.pos, key):
                continue
            since = (
                f"{_where(before.item)} on {_local(a, before.zone)}"
                if before
                else (f"the start of the window ({_local(a, tz)})")
            )
            until = (
                f"{_where(after.item)} on {_local(b, after.zone)}"
                if after
                else (f"the end of the window ({_local(b, tz)})")
            )
            found.add(
                "max_silence",
                at.item.pos,
                key,
                f"nothing goes out on {channel} for {format_duration(b - a)}, from {since} "
                f"to {until}, longer than {format_duration(limit)}",
                hint,
            )


def _min_spacing(found: _Findings) -> None:
    limit = found.config.min_spacing
    if limit is None or not found.config.rule("min_spacing").enabled:
        return
    for channel, times in found.by_channel("min_spacing").items():
        for a, b in pairwise(times):
            gap = b.occurrence - a.occurrence
            # One item's own steps (an event's reminders) are spaced on purpose by its author.
            if gap >= limit or (a.item.calendar, a.item.id) == (b.item.calendar, b.item.id):
                continue
            if found.repeat("min_spacing", b.item.pos, (channel, a.item.calendar, a.item.id)):
                continue
            apart = f"{format_duration(gap)} after" if gap else "at the same time as"
            found.add(
                "min_spacing",
                b.item.pos,
                (channel, a.item.calendar, a.item.id),
                f"{b.item.id!r} goes out on {channel} on {_local(b.occurrence, b.item.timezone)}"
                f", {apart} {_where(a.item)}: closer than {format_duration(limit)}",
                f"move one of them {format_duration(limit - gap)} or more, "
                + _skip_hint("min_spacing"),
            )


def _max_per_day(project: Project, found: _Findings) -> None:
    most = found.config.max_per_day
    if most is None or not found.config.rule("max_per_day").enabled:
        return
    tz = zone(project.config.timezone)
    for channel, times in found.by_channel("max_per_day").items():
        days: dict[object, list[_Post]] = defaultdict(list)
        for post in times:
            days[post.occurrence.astimezone(tz).date()].append(post)
        for day, same in days.items():
            if len(same) <= most:
                continue
            items = list({(p.item.calendar, p.item.id): p.item for p in same}.values())
            key = (channel, tuple((i.calendar, i.id) for i in items))
            if found.repeat("max_per_day", same[most].item.pos, key):
                continue
            found.add(
                "max_per_day",
                same[most].item.pos,
                key,
                f"{len(same)} posts on {channel} on {day} ({project.config.timezone}), more "
                f"than {most} a day: {_names(items)}",
                "move some to another day, " + _skip_hint("max_per_day"),
            )


def _quiet_hours(posts: list[_Post], found: _Findings) -> None:
    hours = found.config.quiet_hours
    if hours is None or not found.config.rule("quiet_hours").enabled:
        return
    quiet = []
    for post in found.posts("quiet_hours", posts):
        local = post.when.astimezone(zone(post.zone))
        if hours.holds(local.hour * 60 + local.minute):
            quiet.append(post)
    for post, channels, count in _per_item(quiet):
        found.add(
            "quiet_hours",
            post.item.pos,
            None,
            f"{post.item.id!r} goes out on {channels} on {_local(post.when, post.zone)},"
            f" inside the quiet hours {hours}",
            "move it to the readers' daytime, " + _skip_hint("quiet_hours"),
            count,
        )


def invites_replies(item: Item) -> bool:
    """Whether an item's deliveries ask people to answer, so someone should be on hand:
    polls, contests and events (every step and reminder), and any item with `replies:
    expected`; `replies: none` says an item of those kinds does not."""
    if item.replies:
        return item.replies == "expected"
    return item.kind in REPLY_KINDS


def _staffed_hours(project: Project, posts: list[_Post], found: _Findings) -> None:
    if not found.config.rule("staffed_hours").enabled:
        return
    staff = {c.name: c.staff for c in project.calendars if c.staff}
    unstaffed = []
    for post in found.posts("staffed_hours", posts):
        windows = staff.get(post.item.calendar)
        if not windows or not invites_replies(post.item):
            continue
        local = post.when.astimezone(zone(post.item.timezone))
        if not any(w.holds(local) for w in windows):
            unstaffed.append(post)
    for post, channels, count in _per_item(unstaffed):
        windows = staff[post.item.calendar]
        declared = "; ".join(w.text for w in windows)
        found.add(
            "staffed_hours",
            post.item.pos,
            None,
            f"{post.item.id!r} invites replies but goes out on {channels} on "
            f"{_local(post.when, post.item.timezone)}, when no moderator is on hand "
            f"(staff: {declared}, {windows[0].pos.path}:{windows[0].pos.line})",
            "move it inside a staff: window, add a window, set replies: none if it asks for "
            "no answers, " + _skip_hint("staffed_hours"),
            count,
        )


def _blackout(posts: list[_Post], found: _Findings) -> None:
    days = found.config.blackout
    if not days or not found.config.rule("blackout").enabled:
        return
    dark = [
        p for p in found.posts("blackout", posts) if p.when.astimezone(zone(p.zone)).date() in days
    ]
    for post, channels, count in _per_item(dark):
        found.add(
            "blackout",
            post.item.pos,
            None,
            f"{post.item.id!r} goes out on {channels} on {_local(post.when, post.zone)}, "
            "a blackout date",
            "skip the date (schedule: {skip: [...]}) or move it, " + _skip_hint("blackout"),
            count,
        )


def _rate_budget(posts: list[_Post], found: _Findings) -> None:
    if not found.config.rule("rate_budget").enabled:
        return
    per_channel: dict[str, list[_Post]] = defaultdict(list)
    for post in found.posts("rate_budget", posts):
        per_channel[post.channel].append(post)
    for channel, sent in per_channel.items():
        sent.sort(key=lambda p: p.when)
        for limit in RateLimits.of(sent[0].channel_type, found.config, channel):
            _over_budget(channel, sent, limit, found)


def _over_budget(channel: str, sent: list[_Post], limit: Limit, found: _Findings) -> None:
    """Slide a window of `limit.window` over the deliveries (in time order); each stretch in
    which the points spent pass the budget is one finding."""
    first, spent, over = 0, 0, False
    for last, post in enumerate(sent):
        spent += post.weight * limit.cost
        while sent[first].when <= post.when - limit.window:
            spent -= sent[first].weight * limit.cost
            first += 1
        if spent <= limit.budget:
            over = False
            continue
        if over:
            continue  # the same stretch: reported once
        over = True
        burst = sent[first : last + 1]
        items = list({(p.item.calendar, p.item.id): p.item for p in burst}.values())
        units = (
            "points"
            if limit.cost > 1
            else "mails"
            if sent[0].channel_type == "smtp"
            else ("deliveries")
        )
        found.add(
            "rate_budget",
            post.item.pos,
            (channel, limit.what, tuple((i.calendar, i.id) for i in items)),
            f"{spent:,} {units} on {channel} within {format_duration(limit.window)} up to "
            f"{_local(post.when, post.item.timezone)}, over its budget of {limit.what} "
            f"({limit.source}): {_names(items)}",
            "spread these out in time, or split them over channels",
        )


def _slow_slot(posts: list[_Post], found: _Findings, results: SlotResults) -> None:
    """A planned post in a slot (weekday and hour, calendar zone) where this channel's past
    posts did worst: in the bottom quarter of its slots by median engagement
    (`SlotResults.bottom`)."""
    from commcal.engagement.report import WEEKDAYS

    for post in found.posts("slow_slot", posts):
        local = post.when.astimezone(zone(post.item.timezone))
        slot = (post.channel, local.weekday(), local.hour)
        weak = results.bottom.get(slot)
        if weak is None:
            continue
        label = f"{WEEKDAYS[local.weekday()]} {local.hour:02d}:00"
        if found.repeat("slow_slot", post.item.pos, slot):
            continue
        best = weak.best
        found.add(
            "slow_slot",
            post.item.pos,
            slot,
            f"{post.item.id!r} goes out on {post.channel} on {label} {post.item.timezone}, "
            f"where {post.channel}'s posts had a median engagement of {weak.median:g} at "
            f"{results.at_label} ({weak.posts} posts): the bottom quarter of its "
            f"{weak.slots} slots (median of slots {weak.channel_median:g}; best "
            f"{WEEKDAYS[best[0]]} {best[1]:02d}:00 with {weak.best_median:g})",
            "move it to a better slot (see commcal report --by hour), " + _skip_hint("slow_slot"),
        )
