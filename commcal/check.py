"""Message -> problems, counted the channel's way; the results of `plan` and `preview`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from commcal.calendar.model import Item
from commcal.channels.base import Message
from commcal.compose import message_for
from commcal.deliveries import Delivery, Filters, Memo, deliveries, fewer_collections, member_zones
from commcal.errors import Problem
from commcal.project import Project
from commcal.render import RenderError
from commcal.threads import expand


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


def check(project: Project, delivery: Delivery, memo: Memo | None = None) -> Planned:
    """Render and check one delivery against its channel, offline.

    A delivery standing for a whole audience is rendered for the audience's first member, so
    the preview shows a real message; the audience file's own errors are its problems.
    """
    item = delivery.item
    shown = delivery
    audience_errors: tuple[Problem, ...] = ()
    if delivery.personal and delivery.recipient is None and delivery.audience_size >= 0:
        from dataclasses import replace

        from commcal.audience import sample

        found: list[Problem] = []
        audience = item.audience or ""
        people = sample(project.root, audience, item.where, 1, problems=found)
        audience_errors = tuple(p for p in found if p.severity == "error")
        first = member_zones(project, item, memo).get(delivery.zone) if delivery.zone else None
        if first is not None:  # send_at: local: a member of this zone
            people = [first[0]]
        if people:
            shown = replace(delivery, recipient=people[0])
    if item.thread is not None and not delivery.part:
        return _check_thread(project, delivery, memo)
    from commcal.threads import ThreadProblem

    try:
        message = message_for(project, shown, memo)
    except RenderError as exc:
        return Planned(delivery, None, problems=(exc.problem, *audience_errors))
    except ThreadProblem as exc:
        return Planned(delivery, None, problems=(exc.problem,))
    adapter = project.channels.get(delivery.channel)
    if adapter is None:
        return Planned(delivery, message)
    part = f" (part {delivery.part}/{delivery.parts})" if delivery.part else ""
    problems = tuple(
        Problem(
            item.pos,
            f"item {item.id!r} on {delivery.channel} at "
            f"{delivery.local_due:%Y-%m-%d %H:%M}{part}: {text}",
        )
        for text in adapter.check(message)
    )
    if message.media:
        from commcal.mediacheck import media_problems

        problems += tuple(
            media_problems(
                adapter,
                message,
                item.media_for(delivery.channel),
                f"item {item.id!r} on {delivery.channel}",
                delivery.locale,
                memo.media if memo is not None else None,
                fitting=project.config.media_fit,
            )
        )
    return Planned(
        delivery,
        message,
        adapter.measure(message.text),
        adapter.limit(),
        (*problems, *audience_errors),
    )


def _check_thread(project: Project, delivery: Delivery, memo: Memo | None) -> Planned:
    """A thread's delivery not yet cut into parts: its parts checked, their problems together,
    their texts one after the other (or why the parts cannot be made)."""
    from commcal.threads import ThreadProblem, parts, thread_messages

    found = parts(project, delivery, memo)
    if found == [delivery]:  # its parts cannot be made: say why
        try:
            thread_messages(project, delivery, memo)
        except RenderError as exc:
            return Planned(delivery, None, problems=(exc.problem,))
        except ThreadProblem as exc:
            return Planned(delivery, None, problems=(exc.problem,))
    checked = [check(project, part, memo) for part in found]
    messages = [c.message for c in checked if c.message is not None]
    problems = tuple(p for c in checked for p in c.problems)
    if len(messages) != len(checked):
        return Planned(delivery, None, problems=problems)
    from dataclasses import replace

    joined = replace(messages[0], text="\n\n".join(m.text for m in messages))
    lengths = [c.length for c in checked if c.length is not None]
    return Planned(delivery, joined, max(lengths) if lengths else None, checked[0].limit, problems)


def plan(
    project: Project,
    start: datetime,
    end: datetime,
    filters: Filters = Filters(),
    memo: Memo | None = None,
) -> list[Planned]:
    return list(iter_plan(project, start, end, filters, memo))


def iter_plan(
    project: Project,
    start: datetime,
    end: datetime,
    filters: Filters = Filters(),
    memo: Memo | None = None,
) -> Iterator[Planned]:
    """`plan`, one Planned at a time: a view that writes each as it comes (`plan --format
    json`) holds one rendered message, not the whole window's."""
    memo = memo if memo is not None else Memo()
    with fewer_collections():
        first_step: dict[str, str] = {}
        for delivery in expand(project, deliveries(project, start, end, filters, memo=memo), memo):
            entry = check(project, delivery, memo)
            step = delivery.occurrence.step
            if delivery.id in first_step:
                # The id is (calendar, item, instant, channel): two steps at one instant would
                # be one delivery, and the ledger would send only the first.
                item = delivery.item
                clash = Problem(
                    item.pos,
                    f"item {item.id!r}: steps {first_step[delivery.id]!r} and {step!r} fall at "
                    f"the same instant ({delivery.local_due:%Y-%m-%d %H:%M}) on "
                    f"{delivery.channel}",
                    "move one of them by a minute or more; only one message per instant is sent",
                )
                entry = Planned(
                    delivery, entry.message, entry.length, entry.limit, (*entry.problems, clash)
                )
            else:
                first_step[delivery.id] = step
            yield entry


def problems_of(planned: Iterable[Planned]) -> list[Problem]:
    return [p for entry in planned for p in entry.problems]


def next_occurrence(
    project: Project,
    item: Item,
    start: datetime,
    channel: str | None = None,
    *,
    member: str | None = None,
) -> list[Planned]:
    """The item's first occurrence at or after `start` (looking up to ten years ahead)."""

    filters = Filters(
        calendars=[item.calendar], items=[item.id], channels=[channel] if channel else ()
    )
    end = start + timedelta(days=3660)
    memo = Memo()
    for span in (timedelta(days=40), timedelta(days=400), end - start):
        found = deliveries(project, start, start + span, filters, member=member, memo=memo)
        if found:
            # One occurrence: with send_at: local, its delivery for each member zone.
            first = found[0].occurrence.when
            due = [d for d in found if d.occurrence.when == first]
            return [check(project, d, memo) for d in expand(project, due, memo)]
    return []
