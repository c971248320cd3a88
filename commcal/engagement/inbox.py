"""`commcal inbox`: the community's open questions, oldest first, and marks people put on replies.

A reply is *open* when it is a question (`questions.is_question`: the heuristic, or a person's
mark) from the community (not `by_team`) that nobody has answered yet (`threads.Thread`). Each
entry says whether it arrived inside the staffed hours (`staff:`) of the calendar its delivery
belongs to, so a team sees what came in while nobody was on hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from commcal.engagement.model import Reply
from commcal.engagement.threads import Thread, staffed, threads
from commcal.errors import CommcalError, ConfigError

if TYPE_CHECKING:
    from commcal.ledger.model import DeliveryRecord
    from commcal.lintconfig import StaffWindow
    from commcal.project import Project

MIN_REPLY_PREFIX = 4  # characters of a reply id `inbox mark` takes


class UnknownReply(CommcalError):
    """No reply has that id (exit 1: the ledger does not hold it, the typing may be right)."""

    exit_code = 1


@dataclass(frozen=True)
class Origin:
    """What a reply's delivery is: its calendar and item, and the calendar's staffed hours."""

    calendar: str
    item: str
    zone: str
    staff: tuple[StaffWindow, ...] = ()


@dataclass(frozen=True)
class InboxEntry:
    thread: Thread
    age: timedelta
    staffed: bool | None  # None: the calendar declares no staff: windows (or is unknown)
    origin: Origin | None  # None: the delivery is not in the ledger (or its calendar is gone)

    @property
    def reply(self) -> Reply:
        return self.thread.reply

    @property
    def status(self) -> str:
        """open, answered, not-a-question, or team (the team's own reply)."""
        if self.reply.by_team:
            return "team"
        if not self.thread.question:
            return "not-a-question"
        return "answered" if self.thread.answered else "open"


def origins(project: Project, where: Mapping[str, tuple[str, str]]) -> dict[str, Origin]:
    """Delivery id -> its Origin, for the deliveries in `where` (id -> calendar, item, as the
    ledger recorded them). A calendar no longer in the project: the project's zone, no staff."""
    calendars = {c.name: c for c in project.calendars}
    made: dict[tuple[str, str], Origin] = {}
    found: dict[str, Origin] = {}
    for delivery_id, (calendar_name, item) in where.items():
        origin = made.get((calendar_name, item))
        if origin is None:
            calendar = calendars.get(calendar_name)
            zone_name = calendar.timezone if calendar is not None else project.config.timezone
            staff = calendar.staff if calendar is not None else ()
            origin = made[(calendar_name, item)] = Origin(calendar_name, item, zone_name, staff)
        found[delivery_id] = origin
    return found


def where_of(records: Mapping[str, DeliveryRecord]) -> dict[str, tuple[str, str]]:
    """Delivery id -> (calendar, item) of the ledger's rows, for `origins`."""
    return {delivery_id: (r.calendar, r.item) for delivery_id, r in records.items()}


def inbox(
    replies: Iterable[Reply],
    marks: Mapping[str, Sequence[str]],
    origin_of: Mapping[str, Origin],
    *,
    now: datetime,
    everything: bool = False,
) -> list[InboxEntry]:
    """The open questions, oldest first (`everything`: every reply, with its status)."""
    entries = []
    for thread in threads(replies, marks):
        if not everything and not thread.open:
            continue
        origin = origin_of.get(thread.reply.delivery_id)
        inside = staffed(thread.reply.created_at, origin.staff, origin.zone) if origin else None
        entries.append(InboxEntry(thread, now - thread.reply.created_at, inside, origin))
    return entries


def resolve_reply(replies: Iterable[Reply], given: str) -> Reply:
    """The reply whose id is `given`, or the one whose id starts with it; CommcalError (exit 1
    when none matches, 2 when several do or `given` is too short) otherwise."""
    known = list(replies)
    for r in known:
        if r.id == given:
            return r
    if len(given) < MIN_REPLY_PREFIX:
        raise ConfigError(
            f"reply id {given!r} is too short: give at least {MIN_REPLY_PREFIX} characters"
        )
    matches = [r for r in known if r.id.startswith(given)]
    if not matches:
        raise UnknownReply(f"no reply {given!r} in the ledger (see `commcal inbox --all`)")
    if len(matches) > 1:
        shown = ", ".join(r.id for r in matches[:5]) + (" ..." if len(matches) > 5 else "")
        raise ConfigError(
            f"{given!r} matches {len(matches)} replies ({shown}); give more characters"
        )
    return matches[0]
