"""`commcal report`: how sent posts did, per item, kind, channel, weekday or hour.

The figures (docs/cli.md#commcal-report):

- **deliveries**: sent posts in the group that `pull` has read at least once (a snapshot or a
  reply); **measured**: those with a snapshot at the age asked for.
- **engagement at AGE** (default 24h): likes + reposts + replies + quotes of the post's first
  `ok` snapshot taken at or after sent_at + AGE, so a post sent last year and one sent two days
  ago are compared at the same age. A post not yet read that late has no figure (not a zero).
  The group's figure is the median over its measured posts.
- **replies**, **questions**: the community's replies to the group's posts (the team's own left
  out), and those of them that are questions (`questions.is_question`, marks included).
- **first answer**: the median time from a question to its first answer (`threads.Thread`),
  split by whether the question arrived inside the staffed hours (`staff:`) of its calendar;
  questions of calendars without `staff:` count under neither (JSON: `undeclared`).
- **best slots**: weekday x hour (in each post's calendar zone) by median engagement at AGE,
  best first, over every measured post.
- **trends**: for the hashtags and the keywords (`kb`'s words: 3+ letters, not a stopword of
  en/el/sw) most used in replies, how many replies used each, per ISO week (project zone).

`slot_results` is what lint's `slow_slot` rule reads (commcal.lint). Which snapshot counts is
chosen in the ledger (`engagement_at`), in SQL.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median
from typing import TYPE_CHECKING

from commcal.engagement.model import Reply
from commcal.engagement.questions import fold
from commcal.engagement.threads import staffed, threads
from commcal.ledger.engagement import Measured
from commcal.timeutil import zone

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from commcal.engagement.inbox import Origin

GROUPINGS = ("item", "kind", "channel", "weekday", "hour")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
TOP_TERMS = 10  # hashtags and keywords a trend follows
TOP_SLOTS = 5

_HASHTAG = re.compile(r"(?<![\w#])#(\w+)", re.UNICODE)


@dataclass(frozen=True)
class Post:
    """One sent delivery as the report sees it."""

    delivery_id: str
    calendar: str
    item: str
    kind: str
    channel: str
    sent_at: datetime  # UTC
    local: datetime  # sent_at in its calendar's zone
    engagement: int | None  # at the age asked for; None: not read that late (yet)


@dataclass(frozen=True)
class Group:
    key: str
    deliveries: int
    measured: int
    engagement: float | None  # median
    replies: int
    questions: int
    answered: int
    first_answer_staffed: timedelta | None  # medians
    first_answer_unstaffed: timedelta | None
    first_answer_undeclared: timedelta | None


@dataclass(frozen=True)
class Slot:
    weekday: int  # 0 = Monday
    hour: int
    posts: int
    engagement: float  # median

    @property
    def label(self) -> str:
        return f"{WEEKDAYS[self.weekday]} {self.hour:02d}:00"


@dataclass(frozen=True)
class Trend:
    term: str
    kind: str  # "hashtag" or "keyword"
    counts: tuple[int, ...]  # per week of Report.weeks


@dataclass(frozen=True)
class Report:
    by: str
    at: timedelta
    groups: tuple[Group, ...]
    best_slots: tuple[Slot, ...]
    weeks: tuple[str, ...]  # ISO weeks "2026-W49", oldest first
    trends: tuple[Trend, ...]


def posts_from(
    measured: Iterable[Measured],
    origin_of: Mapping[str, Origin],
    kinds: Mapping[tuple[str, str], str],
) -> list[Post]:
    """The report's posts: each delivery's engagement at the age asked for (from the ledger's
    `engagement_at`), with its kind and its local time in its calendar's zone."""
    zones: dict[str, ZoneInfo] = {}
    posts = []
    for m in measured:
        origin = origin_of.get(m.delivery_id)
        if origin is None:
            continue
        tz = zones.get(origin.zone) or zones.setdefault(origin.zone, zone(origin.zone))
        posts.append(
            Post(
                m.delivery_id,
                m.calendar,
                m.item,
                kinds.get((m.calendar, m.item), "?"),
                m.channel,
                m.sent_at,
                m.sent_at.astimezone(tz),
                m.engagement,
            )
        )
    return posts


def _key(post: Post, by: str) -> str:
    if by == "item":
        return f"{post.calendar}/{post.item}"
    if by == "kind":
        return post.kind
    if by == "channel":
        return post.channel
    if by == "weekday":
        return WEEKDAYS[post.local.weekday()]
    if by == "hour":
        return f"{post.local.hour:02d}:00"
    raise ValueError(f"--by must be one of {', '.join(GROUPINGS)}")


def _median_time(values: Sequence[timedelta]) -> timedelta | None:
    if not values:
        return None
    return timedelta(seconds=median(v.total_seconds() for v in values))


def slot_medians(posts: Iterable[Post]) -> dict[tuple[str, int, int], tuple[float, int]]:
    """(channel, weekday, hour) -> (median engagement, measured posts), local to each calendar."""
    values: dict[tuple[str, int, int], list[int]] = defaultdict(list)
    for p in posts:
        if p.engagement is not None:
            values[(p.channel, p.local.weekday(), p.local.hour)].append(p.engagement)
    return {k: (float(median(v)), len(v)) for k, v in values.items()}


MIN_SLOT_POSTS = 2  # measured posts a slot needs before it is judged
MIN_SLOTS = 4  # judged slots a channel needs before any is called its bottom quarter


@dataclass(frozen=True)
class WeakSlot:
    """The evidence that a slot did badly on its channel."""

    median: float
    posts: int
    slots: int  # the channel's judged slots
    channel_median: float  # the median of their medians
    best: tuple[int, int]  # weekday, hour of the channel's best slot
    best_median: float


@dataclass(frozen=True)
class SlotResults:
    """(channel, weekday, hour) -> WeakSlot, for each slot in its channel's bottom quarter."""

    bottom: Mapping[tuple[str, int, int], WeakSlot]
    at_label: str


def slot_results(posts: Iterable[Post], at_label: str) -> SlotResults:
    """The bottom quarter of each channel's slots: of the slots with at least MIN_SLOT_POSTS
    measured posts (a channel with fewer than MIN_SLOTS of them is not judged), the
    len // 4 with the lowest median engagement, leaving out any whose median is not below
    the median of the channel's slot medians (ties are not a bottom)."""
    per_channel: dict[str, list[tuple[float, int, int, int]]] = defaultdict(list)
    for (channel, day, hour), (value, n) in slot_medians(posts).items():
        if n >= MIN_SLOT_POSTS:
            per_channel[channel].append((value, n, day, hour))
    bottom: dict[tuple[str, int, int], WeakSlot] = {}
    for channel, slots in per_channel.items():
        if len(slots) < MIN_SLOTS:
            continue
        ranked = sorted(slots, key=lambda s: (s[0], s[2], s[3]))
        middle = float(median(s[0] for s in ranked))
        best = max(ranked, key=lambda s: (s[0], -s[2], -s[3]))
        for value, n, day, hour in ranked[: len(ranked) // 4]:
            if value < middle:
                bottom[(channel, day, hour)] = WeakSlot(
                    value, n, len(ranked), middle, (best[2], best[3]), best[0]
                )
    return SlotResults(bottom, at_label)


def _iso_week(when: datetime, zone_name: str) -> str:
    year, week, _ = when.astimezone(zone(zone_name)).isocalendar()
    return f"{year}-W{week:02d}"


def _trends(replies: Sequence[Reply], zone_name: str) -> tuple[tuple[str, ...], tuple[Trend, ...]]:
    from commcal.engagement.kb import keywords

    weeks = sorted({_iso_week(r.created_at, zone_name) for r in replies})
    index = {w: n for n, w in enumerate(weeks)}
    per: dict[tuple[str, str], list[int]] = {}
    totals: Counter[tuple[str, str]] = Counter()
    for r in replies:
        terms = {("hashtag", fold(t)) for t in _HASHTAG.findall(r.text)}
        terms |= {("keyword", w) for w in keywords(r.text)}
        w = index[_iso_week(r.created_at, zone_name)]
        for term in terms:
            per.setdefault(term, [0] * len(weeks))[w] += 1
            totals[term] += 1
    trends = []
    for kind in ("hashtag", "keyword"):
        ranked = sorted((t for t in totals if t[0] == kind), key=lambda t: (-totals[t], t[1]))
        trends += [Trend(t[1], kind, tuple(per[t])) for t in ranked[:TOP_TERMS]]
    return tuple(weeks), tuple(trends)


def build_report(
    posts: Sequence[Post],
    replies: Sequence[Reply],
    marks: Mapping[str, Sequence[str]],
    origin_of: Mapping[str, Origin],
    *,
    by: str,
    at: timedelta,
    zone_name: str,
) -> Report:
    """The report over `posts` (from `posts_at`) and the replies to them."""
    group_of = {p.delivery_id: _key(p, by) for p in posts}
    members: dict[str, list[Post]] = defaultdict(list)
    for p in posts:
        members[group_of[p.delivery_id]].append(p)
    counted = [r for r in replies if r.delivery_id in group_of]
    reply_count: Counter[str] = Counter()
    question_count: Counter[str] = Counter()
    answered: Counter[str] = Counter()
    waits: dict[tuple[str, bool | None], list[timedelta]] = defaultdict(list)
    for t in threads(counted, marks):
        if t.reply.by_team:
            continue
        g = group_of[t.reply.delivery_id]
        reply_count[g] += 1
        if not t.question:
            continue
        question_count[g] += 1
        first = t.first_answer
        if first is None:
            continue
        answered[g] += 1
        origin = origin_of.get(t.reply.delivery_id)
        inside = staffed(t.reply.created_at, origin.staff, origin.zone) if origin else None
        waits[(g, inside)].append(first.created_at - t.reply.created_at)
    groups = []
    order = (lambda g: (WEEKDAYS.index(g), g)) if by == "weekday" else (lambda g: (0, g))
    for g in sorted(members, key=order):
        measured = [p.engagement for p in members[g] if p.engagement is not None]
        groups.append(
            Group(
                key=g,
                deliveries=len(members[g]),
                measured=len(measured),
                engagement=float(median(measured)) if measured else None,
                replies=reply_count[g],
                questions=question_count[g],
                answered=answered[g],
                first_answer_staffed=_median_time(waits[(g, True)]),
                first_answer_unstaffed=_median_time(waits[(g, False)]),
                first_answer_undeclared=_median_time(waits[(g, None)]),
            )
        )
    slots: dict[tuple[int, int], list[int]] = defaultdict(list)
    for p in posts:
        if p.engagement is not None:
            slots[(p.local.weekday(), p.local.hour)].append(p.engagement)
    ranked = sorted(
        (Slot(d, h, len(v), float(median(v))) for (d, h), v in slots.items()),
        key=lambda s: (-s.engagement, -s.posts, s.weekday, s.hour),
    )
    weeks, trends = _trends([r for r in counted if not r.by_team], zone_name)
    return Report(by, at, tuple(groups), tuple(ranked[:TOP_SLOTS]), weeks, trends)
