"""After the send: retract (delete) or amend (edit in place) a post that went out.

`find_delivery` turns what a person typed into one delivery (a unique id prefix, as git takes
one). `retract` and `plan_amend` / `amend` check that the delivery was sent and that its channel
can do it (`Channel.cannot_retract`, offline), ask the channel (`Channel.retract` / `amend`), and
record the change in the ledger (`ledger.changes`): `begun` before the request goes out, `done`
or `refused` after. The delivery itself stays `sent`, so `publish` never posts it again.

Crash safety: a change whose request may have gone out but whose answer was not recorded is
left `begun`; the next retract or amend of the delivery takes it up first, with the same change
number, so the key made from it (`change_key`: Matrix's transaction id) is the same and the
homeserver dedupes the repeat. A repeated delete elsewhere answers "already gone" (recorded as
done), and an interrupted amend is checked against the post's text where the network can read
it back (`Channel.posted_text`).
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from commcal.channels.base import CannotChange, Message, Receipt, SendError, TransientError
from commcal.errors import CommcalError, ConfigError, Problem, ProblemsFound
from commcal.ledger.changes import PostChange
from commcal.ledger.model import MIN_PREFIX, DeliveryRecord, State

if TYPE_CHECKING:
    from commcal.channels.base import Channel
    from commcal.ledger import Ledger
    from commcal.project import Project

# How many candidates an ambiguous or unknown id lists.
SHOWN_CANDIDATES = 10


class ChangeRefused(CommcalError):
    """The post cannot be retracted or amended (not sent, the network cannot, it said no)."""

    exit_code = 1


class NoSuchDelivery(CommcalError):
    exit_code = 1


class AmbiguousId(CommcalError):
    exit_code = 2


def describe(record: DeliveryRecord) -> str:
    return f"{record.id}  {record.calendar}/{record.item} on {record.channel} ({record.state})"


def find_delivery(ledger: Ledger, typed: str) -> DeliveryRecord:
    """The one delivery whose id starts with `typed`. None matching: NoSuchDelivery, naming
    those that share the longest prefix with it (a typo near the end); several: AmbiguousId,
    listing them."""
    typed = typed.strip()
    if len(typed) < MIN_PREFIX:
        raise ConfigError(f"give at least {MIN_PREFIX} characters of the delivery id")
    found = ledger.find(typed)
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        shown = "\n".join(f"  {describe(r)}" for r in found[:SHOWN_CANDIDATES])
        more = len(found) - SHOWN_CANDIDATES
        from commcal.threads import split_part_id

        if {split_part_id(r.id)[0] for r in found} == {typed}:
            # The id of a thread: its parts are deliveries of their own, changed one by one.
            head = (
                f"{typed!r} is a thread of {len(found)} parts; give one part at a time, "
                f"e.g. {found[0].id} (to take the thread down, retract each part):"
            )
        else:
            head = f"{typed!r} matches {len(found)} deliveries; give more characters:"
        raise AmbiguousId(f"{head}\n{shown}" + (f"\n  ... and {more} more" if more > 0 else ""))
    for length in range(len(typed) - 1, MIN_PREFIX - 1, -1):
        near = ledger.find(typed[:length])
        if near:
            shown = "\n".join(f"  {describe(r)}" for r in near[:SHOWN_CANDIDATES])
            raise NoSuchDelivery(f"no delivery {typed!r} in the ledger; did you mean:\n{shown}")
    raise NoSuchDelivery(f"no delivery {typed!r} in the ledger (see `commcal status`)")


def text_hash(text: str) -> str:
    """What post_changes.content_hash holds for an amendment's text."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def change_key(delivery_id: str, number: int) -> str:
    """A stable id of a delivery's change number `number`: the same on every repeat."""
    return f"commcal.{delivery_id}.change{number}"


def receipt_of(record: DeliveryRecord) -> Receipt:
    return Receipt(remote_id=record.remote_id, url=record.url)


def _channel(project: Project, record: DeliveryRecord, action: str) -> Channel:
    """The delivery's channel, once the post is known to be one it can `action`."""
    verb = "retract" if action == "retracted" else "amend"
    if record.state is not State.SENT:
        raise ChangeRefused(
            f"{record.id} is {record.state}, not sent: there is no post to {verb} "
            f"({record.calendar}/{record.item} on {record.channel})"
        )
    adapter = project.channels.get(record.channel)
    if adapter is None:
        raise ChangeRefused(
            f"{record.id} was sent on channel {record.channel!r}, which commcal.yaml no longer "
            "configures (or cannot be used: see `commcal validate`)"
        )
    cannot = adapter.cannot_retract() if action == "retracted" else adapter.cannot_amend()
    if cannot:
        raise ChangeRefused(f"{record.id} on {record.channel}: {cannot}")
    if not record.remote_id:
        raise ChangeRefused(
            f"{record.id} on {record.channel}: the network's id of the post was not recorded "
            "when it was sent, so commcal cannot find it again; change it on the network itself"
        )
    return adapter


@dataclass(frozen=True)
class Outcome:
    """What a retract or amend did (or, in a dry run, would do)."""

    record: DeliveryRecord
    change: PostChange | None  # the change recorded (None: a dry run, or nothing to do)
    summary: str  # one sentence for the person
    resumed: PostChange | None = None  # an interrupted change that was taken up first
    settled: bool = False  # nothing to do: it was done before (retracted already)


def _pending(changes: list[PostChange]) -> PostChange | None:
    return changes[-1] if changes and not changes[-1].finished else None


def _retraction(changes: list[PostChange]) -> PostChange | None:
    return next((c for c in changes if c.action == "retracted" and c.done), None)


def _failed(
    ledger: Ledger, change: PostChange, exc: SendError, now: datetime, record: DeliveryRecord
) -> ChangeRefused:
    verb = "retract" if change.action == "retracted" else "amend"
    if isinstance(exc, TransientError) and not exc.unreachable:
        # A timeout, a dropped connection, a 5xx or a 429: the network may have done it. Left
        # `begun`, so the next call repeats it (deduplicated) instead of starting anew.
        return ChangeRefused(
            f"{record.id} on {record.channel}: {exc}. It may or may not have been done: run "
            f"`commcal {verb} {record.id}` again to settle it"
        )
    ledger.finish_change(change, now, ending="refused", note=str(exc))
    if isinstance(exc, TransientError):
        return ChangeRefused(f"{record.id} on {record.channel}: {exc}; nothing was changed")
    return ChangeRefused(f"{record.id} on {record.channel}: {exc}")


def retract(
    project: Project,
    ledger: Ledger,
    record: DeliveryRecord,
    *,
    now: datetime,
    reason: str = "",
    dry_run: bool = False,
) -> Outcome:
    """Delete the post of a sent delivery, and record it. A post retracted already is not
    asked for again; one the network no longer has (404) is recorded as retracted all the same.
    """
    adapter = _channel(project, record, "retracted")
    changes = ledger.post_changes([record.id]).get(record.id, [])
    done = _retraction(changes)
    if done is not None:
        return Outcome(
            record, None, f"{record.id}: already retracted at {_when(done)}", settled=True
        )
    pending = _pending(changes)
    if dry_run:
        resume = f" (taking up its interrupted {pending.action} change)" if pending else ""
        return Outcome(
            record,
            None,
            f"{record.id}: would delete {record.url or record.remote_id} on {record.channel}"
            + resume,
        )
    resumed = None
    if pending is not None and pending.action == "amended":
        # The post is going: whether that amendment got through no longer matters.
        resumed = ledger.finish_change(
            pending, now, ending="abandoned", note="interrupted; the post was then retracted"
        )
        pending = None
    change = pending or ledger.begin_change(record.id, "retracted", now, reason=reason)
    try:
        deleted = adapter.retract(
            receipt_of(record),
            reason=reason or change.reason,
            key=change_key(record.id, change.number),
        )
    except SendError as exc:
        raise _failed(ledger, change, exc, now, record) from None
    note = "" if deleted else "already gone: the network no longer had it"
    change = ledger.finish_change(change, now, note=note)
    summary = f"{record.id}: retracted from {record.channel}"
    if not deleted:
        summary += " (it was already gone there)"
    return Outcome(
        record, change, summary + _later_parts(ledger, record), resumed=pending or resumed
    )


def _later_parts(ledger: Ledger, record: DeliveryRecord) -> str:
    """What becomes of the parts after a retracted thread part: those not sent are not
    (commcal.publish.chain), those sent stay up, replying to a deleted post. The person should
    know both now, not at the next publish or from a reader."""
    from commcal.threads import PART_SEPARATOR, split_part_id

    base, number = split_part_id(record.id)
    if not number:
        return ""
    later = sorted(
        (split_part_id(r.id)[1], r)
        for r in ledger.find(base + PART_SEPARATOR)
        if split_part_id(r.id)[1] > number
    )
    if not later:
        return ""
    retracted = ledger.retracted(r.id for _, r in later)
    unsent = [r.id for _, r in later if r.state is not State.SENT]
    posted = [r.id for _, r in later if r.state is State.SENT and r.id not in retracted]
    said = ""
    if unsent:
        said += (
            f"\n{_parts(unsent, 'was', 'were')} not sent and will not be "
            f"({', '.join(unsent)}): they would reply to the deleted post; publish them as a "
            "new item if they still stand"
        )
    if posted:
        said += (
            f"\n{_parts(posted, 'is', 'are')} still posted ({', '.join(posted)}), "
            f"replying to the deleted post: `commcal retract {posted[0]}` (and the rest) takes "
            "them down too"
        )
    return said


def _parts(ids: list[str], one: str, more: str) -> str:
    """ "1 later part of this thread is", "2 later parts of this thread are"."""
    if len(ids) == 1:
        return f"1 later part of this thread {one}"
    return f"{len(ids)} later parts of this thread {more}"


@dataclass(frozen=True)
class AmendPlan:
    """An amendment worked out offline (and with one read of the post where the network has
    one): the new message, what it replaces, and the diff."""

    record: DeliveryRecord
    message: Message
    old_text: str | None  # None: not known (the network cannot read it back)
    old_from: str  # where old_text comes from, for the diff's header
    pending: PostChange | None  # an interrupted amendment to take up

    @property
    def unchanged(self) -> bool:
        return self.old_text is not None and self.old_text == self.message.text

    def diff(self) -> str:
        new = self.message.text.splitlines()
        if self.old_text is None:
            head = f"--- as sent (not known: {self.old_from})\n+++ amended\n"
            return head + "\n".join("+" + line for line in new)
        lines = difflib.unified_diff(
            self.old_text.splitlines(), new, self.old_from, "amended", lineterm=""
        )
        return "\n".join(lines)


def plan_amend(project: Project, ledger: Ledger, record: DeliveryRecord) -> AmendPlan:
    """Render the delivery again from the calendar and templates as they are now and check
    it as `validate` does (problems: ProblemsFound, with file:line). Refused when it was
    retracted, or its text is what the post says already."""
    adapter = _channel(project, record, "amended")
    changes = ledger.post_changes([record.id]).get(record.id, [])
    done = _retraction(changes)
    if done is not None:
        raise ChangeRefused(
            f"{record.id} was retracted at {_when(done)}: there is nothing to amend"
        )
    message = render(project, record)
    pending = _pending(changes)
    amended = [c for c in changes if c.action == "amended" and c.done and c.text is not None]
    if amended:
        old_text: str | None = amended[-1].text
        old_from = f"as amended at {_when(amended[-1])}"
    else:
        try:
            old_text = adapter.posted_text(receipt_of(record))
        except SendError as exc:
            old_text, old_from = None, f"could not read it back: {exc}"
        else:
            old_from = (
                f"as {record.channel} has it"
                if old_text is not None
                else (f"{adapter.type_name} cannot read a post back")
            )
    plan = AmendPlan(record, message, old_text, old_from, pending)
    resuming = pending is not None and pending.content_hash == text_hash(message.text)
    if plan.unchanged and not resuming:
        raise ChangeRefused(
            f"{record.id}: the calendar and templates render the same text the post has "
            f"({old_from}); nothing to amend"
        )
    return plan


def amend(project: Project, ledger: Ledger, plan: AmendPlan, *, now: datetime) -> Outcome:
    """Edit the post to say `plan.message`, and record it (with the new text and its hash)."""
    record = plan.record
    adapter = _channel(project, record, "amended")
    digest = text_hash(plan.message.text)
    resumed = None
    change = None
    if plan.pending is not None:
        if plan.pending.action == "amended" and plan.pending.content_hash == digest:
            change = plan.pending  # the same edit again, under the same number (and key)
            if plan.unchanged:
                # Read back from the network: the interrupted edit got through.
                change = ledger.finish_change(
                    change, now, note="interrupted; found already applied"
                )
                return Outcome(record, change, f"{record.id}: amended on {record.channel}", change)
        else:
            resumed = ledger.finish_change(
                plan.pending,
                now,
                ending="abandoned",
                note="interrupted; replaced by a later amendment",
            )
    if change is None:
        change = ledger.begin_change(
            record.id, "amended", now, content_hash=digest, text=plan.message.text
        )
    try:
        receipt = adapter.amend(
            receipt_of(record), plan.message, key=change_key(record.id, change.number)
        )
    except SendError as exc:
        raise _failed(ledger, change, exc, now, record) from None
    new_id = receipt.remote_id if receipt.remote_id != record.remote_id else None
    change = ledger.finish_change(
        change,
        now,
        note=receipt.note,
        remote_id=new_id,
        url=receipt.url if receipt.url != record.url else None,
    )
    return Outcome(
        record, change, f"{record.id}: amended on {record.channel}", resumed or plan.pending
    )


def render(project: Project, record: DeliveryRecord) -> Message:
    """The delivery's message as the calendar and templates make it now, checked the
    channel's way (as `validate` checks it). Its item or occurrence gone: ChangeRefused."""
    from commcal.check import check
    from commcal.deliveries import Filters, deliveries
    from commcal.threads import expand, parts, split_part_id

    if record.recipient:
        raise ChangeRefused(f"{record.id} is one member's message: it cannot be amended")
    filters = Filters(calendars=[record.calendar], items=[record.item], channels=[record.channel])
    due = deliveries(project, record.due_at, record.due_at + timedelta(seconds=1), filters)
    base, part = split_part_id(record.id)
    found = [d for d in (expand(project, due) if part else due) if d.id == record.id]
    whole = [d for d in due if d.id == base] if part else []
    if not found and whole:
        # A thread part: its thread is there, the part is not. The thread no longer renders
        # (say where), or it was cut into fewer parts (say how many).
        planned = check(project, whole[0])
        errors = [p for p in planned.problems if p.severity == "error"]
        if errors:
            raise ProblemsFound(errors)
        raise ChangeRefused(
            f"{record.id}: the thread {record.calendar}/{record.item} now has "
            f"{len(parts(project, whole[0]))} parts, not a part {part}: amend the parts it "
            "has, or retract this one"
        )
    if not found:
        raise ChangeRefused(
            f"{record.id}: {record.calendar}/{record.item} has no occurrence at "
            f"{record.due_at:%Y-%m-%d %H:%M} UTC on {record.channel} any more (the item was "
            "renamed or removed, or its schedule changed), so there is nothing to render"
        )
    planned = check(project, found[0])
    errors = [p for p in planned.problems if p.severity == "error"]
    if errors or planned.message is None:
        raise ProblemsFound(errors or [Problem(found[0].item.pos, "the item did not render")])
    return planned.message


def _when(change: PostChange) -> str:
    from commcal.timeutil import iso_utc

    return iso_utc(change.finished_at or change.begun_at)


__all__ = [
    "AmbiguousId",
    "AmendPlan",
    "CannotChange",
    "ChangeRefused",
    "NoSuchDelivery",
    "Outcome",
    "amend",
    "find_delivery",
    "plan_amend",
    "render",
    "retract",
    "text_hash",
]
