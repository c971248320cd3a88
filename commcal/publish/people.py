"""Deliveries to members, checked before anything is sent: the suppressed are recorded
`skipped` (before rendering), member tokens must be signable (members.secret), and an offer's
pool codes are reserved for all its members at once (running out is an error, not a half-sent
offer). What cannot go out is reported `blocked`, with one problem per item at its position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from commcal.errors import LedgerError, Problem
from commcal.ledger import Ledger
from commcal.publish.results import Outcome, OutcomeState
from commcal.publish.rows import due_delivery

if TYPE_CHECKING:
    from commcal.plan import Delivery
    from commcal.project import Project

# Hands an outcome to the run's report; True: quiet (not shown as it happens).
Emit = Callable[[Outcome, bool], None]


def for_members(
    ledger: Ledger,
    todo: list[Delivery],
    *,
    project: Project,
    clock: Callable[[], datetime],
    emit: Emit,
    problems: list[Problem],
) -> list[Delivery]:
    """The deliveries of `todo` that can go out, codes assigned; the others are reported."""
    return Members(ledger, project, clock, emit, problems).prepare(todo)


def batches(project: Project, todo: Delivery, size: Callable[[], int]) -> Iterator[list[Delivery]]:
    """The members' deliveries of a stand-in (`deliveries.stands_for_members`), read from the
    audience file as they are needed, `size()` at a time: only a batch is held at once."""
    from commcal.deliveries import member_deliveries

    batch: list[Delivery] = []
    for delivery in member_deliveries(project, todo):
        batch.append(delivery)
        if len(batch) >= size():
            yield batch
            batch = []
    if batch:
        yield batch


def streams(delivery: Delivery) -> bool:
    """Whether a stand-in's members are sent batch by batch as the audience file is read:
    all but an offer's with a code pool, whose codes are reserved for every member at once
    (the pool is read whole anyway)."""
    codes = delivery.item.codes
    return not (codes is not None and codes.pool)


@dataclass
class Members:
    """Checks members' deliveries before they are sent (`prepare`), batch after batch of one
    run: each item stopped by a problem gets that problem once."""

    ledger: Ledger
    project: Project
    clock: Callable[[], datetime]
    emit: Emit
    problems: list[Problem]
    reported: set[tuple[str, str, str]] = field(default_factory=set)

    def prepare(self, todo: list[Delivery]) -> list[Delivery]:
        """Deliveries to members: drop the suppressed (recorded `skipped`, before rendering),
        make sure member tokens can be signed, and reserve pool codes for every remaining member
        of an offer before anything is sent (running out is an error, not a half-sent offer)."""
        personal = [d for d in todo if d.recipient is not None]
        if not personal:
            return todo
        blocked = self.ledger.suppressed({d.recipient.key for d in personal if d.recipient})
        kept: list[Delivery] = []
        for delivery in todo:
            if delivery.recipient is not None and delivery.recipient.key in blocked:
                if self.ledger.record_skipped(
                    due_delivery(delivery), now=self.clock(), reason="unsubscribed"
                ):
                    self.emit(Outcome(delivery, OutcomeState.SKIPPED, "unsubscribed"), False)
            else:
                kept.append(delivery)
        members = self.project.config.members
        signed = members.unsubscribe_url or any(
            d.item.survey_url or (d.item.codes is not None and d.item.codes.derive)
            for d in kept
            if d.recipient is not None
        )
        if signed and kept and not self.project.config.member_secret(self.project.env):
            names = ", ".join(members.secret.names) if members.secret else "members.secret"

            def needs_secret(d: Delivery) -> bool:
                item = d.item
                return d.recipient is not None and bool(
                    members.unsubscribe_url
                    or item.survey_url
                    or (item.codes is not None and item.codes.derive)
                )

            kept = self.block(
                kept,
                needs_secret,
                f"members.secret ({names}) is not set: its unsubscribe links and member tokens "
                "cannot be signed",
                "set the environment variable; the mail goes out at the next publish",
            )
        return self.codes(kept)

    def block(
        self,
        todo: list[Delivery],
        stopped: Callable[[Delivery], bool],
        why: str,
        hint: str = "",
    ) -> list[Delivery]:
        """Leave out the deliveries `stopped` picks: each is reported `blocked`, and each of
        their items gets one problem at its position. Returns the others."""
        kept: list[Delivery] = []
        items: dict[tuple[str, str], Delivery] = {}
        for delivery in todo:
            if stopped(delivery):
                items.setdefault((delivery.calendar, delivery.item.id), delivery)
                self.emit(Outcome(delivery, OutcomeState.BLOCKED, why), True)
            else:
                kept.append(delivery)
        for delivery in items.values():
            item = delivery.item
            if (item.calendar, item.id, why) in self.reported:
                continue
            self.reported.add((item.calendar, item.id, why))
            self.problems.append(
                Problem(item.pos, f"item {item.id!r} was not published: {why}", hint)
            )
        return kept

    def codes(self, todo: list[Delivery]) -> list[Delivery]:
        """Reserve pool codes for every member of an offer at once; an offer whose pool cannot
        serve them all is blocked whole."""
        from commcal.plan import pool_codes

        pools: dict[tuple[str, str], list[Delivery]] = {}
        for delivery in todo:
            spec = delivery.item.codes
            if delivery.recipient is not None and spec is not None and spec.pool:
                pools.setdefault((delivery.calendar, delivery.item.id), []).append(delivery)
        if not pools:
            return todo
        assigned: dict[str, str] = {}
        stopped: dict[tuple[str, str], str] = {}  # an offer that cannot go out: why
        for (calendar, item_id), group in pools.items():
            item = group[0].item
            pool = f"{calendar}/{item_id}"
            pool_file = item.codes.pool if item.codes is not None else ""
            try:
                codes = pool_codes(self.project, item)
                keys = sorted({d.recipient.key for d in group if d.recipient})
                given = self.ledger.reserve_codes(pool, keys, codes, now=self.clock())
            except OSError as exc:
                stopped[(calendar, item_id)] = (
                    f"cannot read its code pool {pool_file}: {exc.strerror}"
                )
                continue
            except UnicodeDecodeError:
                stopped[(calendar, item_id)] = f"its code pool {pool_file} is not UTF-8 text"
                continue
            except LedgerError as exc:  # too few codes for the members: none is sent
                stopped[(calendar, item_id)] = str(exc)
                continue
            for delivery in group:
                if delivery.recipient is not None:
                    assigned[delivery.id] = given[delivery.recipient.key]
        for key, why in stopped.items():

            def in_item(d: Delivery, key: tuple[str, str] = key) -> bool:
                return (d.calendar, d.item.id) == key

            todo = self.block(todo, in_item, why)
        return [replace(d, code=assigned[d.id]) if d.id in assigned else d for d in todo]
