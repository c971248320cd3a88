"""The calendar model: plain frozen dataclasses made by `commcal.calendar.parse`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from commcal.calendar.cron import Cron
from commcal.errors import Pos

if TYPE_CHECKING:
    from commcal.audience import Where
    from commcal.lintconfig import StaffWindow

KINDS = ("post", "newsletter", "event", "contest", "poll", "offer", "survey")


@dataclass(frozen=True)
class Window:
    """Limits on a repeating schedule, in the calendar's zone: start/until dates, skipped dates."""

    start: datetime | None = None  # naive wall clock or aware
    until: datetime | None = None
    skip: frozenset[date] = frozenset()


@dataclass(frozen=True)
class At:
    """One-off: a single time (naive = the calendar's zone)."""

    when: datetime


@dataclass(frozen=True)
class Dates:
    times: tuple[datetime, ...]


@dataclass(frozen=True)
class CronSchedule:
    cron: Cron
    window: Window = Window()


@dataclass(frozen=True)
class Every:
    """A fixed interval from `start`: whole days step on the wall clock, shorter ones in UTC."""

    interval: timedelta
    start: datetime
    window: Window = Window()


Schedule = At | Dates | CronSchedule | Every


@dataclass(frozen=True)
class Step:
    """A dated step of an event or contest: when, relative to an anchor, and with which template."""

    name: str
    anchor: str  # "at" (events), "opens"/"closes" (contests) or "" for an absolute time
    offset: timedelta
    when: datetime | None  # absolute time when anchor == ""
    template: str
    pos: Pos


@dataclass(frozen=True)
class Codes:
    """`codes:` of an offer: single-use codes from a pool file, or one derived per member."""

    pos: Pos
    pool: str = ""  # a text file relative to the project folder, one code per line
    derive: bool = False
    prefix: str = ""
    length: int = 8


# How `thread: {split: ...}` cuts a long text into parts (docs/calendar-format.md, "Threads").
SPLITS = ("sentences",)


@dataclass(frozen=True)
class Thread:
    """`thread:` of a post: published as several posts, each replying to the one before.

    `templates`: one template per part, in order (empty: the item's one `template:`). `split`:
    "sentences" cuts each rendered part that is longer than the channel allows at sentence
    boundaries, numbered "1/4"; "": every template is one part as written."""

    pos: Pos
    templates: tuple[str, ...] = ()
    split: str = ""


@dataclass(frozen=True)
class MediaEntry:
    """One image or video of an item (`media:`), as written: a file under the project's media/
    folder or an https URL, with its alt text per locale ("" for every locale)."""

    pos: Pos
    file: str = ""  # relative to the project folder, e.g. media/cover.jpg
    url: str = ""
    alt: Mapping[str, str] = field(default_factory=dict)
    focus: tuple[float, float] | None = None  # x, y from -1 (left, bottom) to 1

    @property
    def source(self) -> str:
        return self.file or self.url


@dataclass(frozen=True)
class Item:
    calendar: str
    id: str
    kind: str
    channels: tuple[str, ...]
    template: str
    vars: Mapping[str, Any]
    draft: bool
    timezone: str
    locale: str
    pos: Pos
    title: str = ""
    schedule: Schedule | None = None  # posts, newsletters, polls, offers, surveys
    steps: tuple[Step, ...] = ()  # events (reminders) and contests
    anchors: Mapping[str, datetime] = field(default_factory=dict)  # event at, contest opens/closes
    duration: timedelta | None = None  # events
    poll: Mapping[str, Any] | None = None  # question, options, duration
    audience: str | None = None
    where: Where | None = None  # filters the audience's members
    send_at: str = "calendar"  # "local": each member at the written time in their own zone
    codes: Codes | None = None  # offers
    survey_url: str = ""  # surveys: the form each member gets a signed link to
    url: str = ""  # events: the join link in the .ics
    location: str = ""  # events: where, in the .ics
    replies: str = ""  # "expected" or "none"; "": as its kind (commcal.lintconfig.REPLY_KINDS)
    lint_skip: frozenset[str] = frozenset()  # lint rules that leave this item alone
    # `lang:`: the post's languages as BCP 47 tags, its main language first; (): the language
    # of the delivery's locale.
    langs: tuple[str, ...] = ()
    thread: Thread | None = None  # posts: several posts, each a reply to the one before
    # `media:` by channel name; "" holds the files of every channel not named.
    media: Mapping[str, tuple[MediaEntry, ...]] = field(default_factory=dict)

    def media_for(self, channel: str) -> tuple[MediaEntry, ...]:
        """The files this item posts on `channel`."""
        return self.media.get(channel, self.media.get("", ()))


@dataclass(frozen=True)
class Calendar:
    name: str
    path: str
    timezone: str
    locale: str
    vars: Mapping[str, Any]
    items: tuple[Item, ...]
    name_pos: Pos | None = None  # where `calendar:` names it (None: named after the file)
    # Ids of items with errors, and whether the file has errors outside any item: publishing
    # leaves out such items (or the whole file) and goes on with the rest (Project.publishable).
    broken_items: frozenset[str] = frozenset()
    broken: bool = False
    # `staff:`: when moderators are on hand to answer, in the calendar's zone (lint).
    staff: tuple[StaffWindow, ...] = ()
