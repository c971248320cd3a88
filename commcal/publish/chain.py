"""The parts of a thread in the ledger: part k is sent only once part k-1 is `sent`.

Each part is a delivery of its own (commcal.threads.part_id). Before the publisher claims part
k it reads parts 1..k-1 from the ledger: when all are `sent` (with a remote id, on a channel
whose parts reply to each other) part k goes out, replying to part k-1 (`ReplyTo`); otherwise
it waits, and why is recorded as its last error, so `commcal status` shows it. Nothing here
sends or decides a state: the publisher does (commcal.publish.publisher).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from commcal.channels.base import REPLIES, Channel, ReplyTo
from commcal.deliveries import Delivery
from commcal.ledger import DeliveryRecord, State
from commcal.threads import part_id, split_part_id


@dataclass(frozen=True)
class Wait:
    """Why a part is not sent now. `blocked`: it cannot go until a person acts (an earlier part
    failed, is unknown, expired or skipped); otherwise it waits for its turn."""

    reason: str
    blocked: bool = False


def earlier_parts(delivery: Delivery) -> list[str]:
    """The ids of the parts before this one, in order."""
    base, _ = split_part_id(delivery.id)
    return [part_id(base, k) for k in range(1, delivery.part)]


def link(
    adapter: Channel,
    delivery: Delivery,
    rows: Mapping[str, DeliveryRecord],
    retracted: Collection[str] = (),
) -> ReplyTo | Wait | None:
    """What part `delivery` is sent with, given the ledger's rows of the parts before it and
    which of them were retracted (`Ledger.retracted`): a ReplyTo (a channel whose parts
    reply), None (the first part, or a channel that posts the parts in order), or why it must
    wait."""
    earlier = earlier_parts(delivery)
    total = delivery.parts
    for number, pid in enumerate(earlier, 1):
        if pid in retracted:
            # Still `sent` (never posted again), but deleted: a reply to it would hang from
            # nothing, and the thread would read with a hole in it.
            return Wait(
                f"blocked: part {number}/{total} ({pid}) was retracted, so the rest of the "
                "thread is not sent (it would reply to a deleted post); publish the rest as a "
                "new item if it still stands",
                blocked=True,
            )
        wait = _waits_for(adapter, rows.get(pid), number, total, pid)
        if wait is not None:
            return wait
    if not earlier or adapter.thread_mode != REPLIES:
        return None
    root, parent = rows[earlier[0]], rows[earlier[-1]]
    root_id, parent_id = remote_id(adapter, root), remote_id(adapter, parent)
    assert root_id and parent_id  # _waits_for checked
    return ReplyTo(
        part=delivery.part,
        parts=total,
        parent=parent_id,
        root=root_id,
        parent_url=parent.url,
        root_url=root.url,
    )


def remote_id(adapter: Channel, row: DeliveryRecord) -> str | None:
    """A sent part's id on the network: as its send recorded it, or read from the URL a person
    gave `commcal resolve --sent URL`."""
    return row.remote_id or (adapter.remote_id_from_url(row.url) if row.url else None)


def _waits_for(
    adapter: Channel, row: DeliveryRecord | None, number: int, total: int, pid: str
) -> Wait | None:
    part = f"part {number}/{total}"
    if row is None:
        return Wait(f"waiting for {part}, not sent yet")
    state = row.state
    if state is State.SENT:
        if adapter.thread_mode == REPLIES and not remote_id(adapter, row):
            return Wait(
                f"blocked: {part} ({pid}) was sent, but its id on {adapter.type_name} is not "
                "known (nor found in its URL), so the next part cannot reply to it; post the "
                "rest of the thread by hand",
                blocked=True,
            )
        return None
    if state is State.PENDING:
        when = f" at {row.next_attempt_at:%H:%M:%S} UTC" if row.next_attempt_at else ""
        why = f": {row.last_error}" if row.last_error else ""
        return Wait(f"waiting for {part} ({pid}), to be retried{when}{why}")
    if state in (State.CLAIMED, State.SENDING):
        return Wait(f"waiting for {part} ({pid}), being sent by {row.claimed_by or 'a worker'}")
    if state is State.FAILED:
        return Wait(
            f"blocked: {part} ({pid}) failed ({row.last_error or 'no reason recorded'}); "
            f"fix it and run `commcal retry {pid}`: the rest of the thread follows it",
            blocked=True,
        )
    if state is State.UNKNOWN:
        return Wait(
            f"blocked: {part} ({pid}) is unknown (it may have been posted); check the channel, "
            f"then `commcal resolve {pid} --not-sent` (it is not there: it is sent again, "
            "then the rest follows) or `--sent URL`",
            blocked=True,
        )
    return Wait(f"blocked: {part} ({pid}) was {state}, so the rest of the thread is not sent",
                blocked=True)  # fmt: skip


@dataclass(frozen=True)
class ChainPart:
    """One part of a thread as the ledger holds it, for `commcal status ID`."""

    part: int
    record: DeliveryRecord


def chain_of(records: Sequence[DeliveryRecord]) -> list[ChainPart]:
    """The parts among `records` (the rows whose id starts with a thread's id), in order."""
    found = []
    for record in records:
        _, number = split_part_id(record.id)
        if number:
            found.append(ChainPart(number, record))
    return sorted(found, key=lambda c: c.part)
