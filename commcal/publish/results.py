"""What a publish run reports: one Outcome per delivery handled, in a Report.

The views (`commcal.views.publish`) and the scheduler read these; nothing here knows how a run
is made.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from commcal.errors import Problem
from commcal.ledger import State

if TYPE_CHECKING:
    from commcal.plan import Delivery


class OutcomeState(StrEnum):
    """Every state an Outcome can report (`state` in `commcal.publish/1`, docs/json.md).

    The order here is the order of the views' summaries and JSON counts. Each ledger state
    (commcal.ledger.State) is one of them under the same name (`OutcomeState.of`); the rest are
    report-only: nothing is recorded under them.
    """

    SENT = "sent"
    WOULD_SEND = "would-send"  # --dry-run: a real run would send it now
    ALREADY = "already"  # finished in an earlier run (--dry-run: the recorded state in detail)
    PENDING = "pending"  # waiting for a retry at a given time
    FAILED = "failed"
    WOULD_FAIL = "would-fail"  # --dry-run: it cannot be sent (a check fails)
    UNKNOWN = "unknown"  # may have gone out; a person resolves it
    EXPIRED = "expired"
    WOULD_EXPIRE = "would-expire"
    SKIPPED = "skipped"
    WOULD_SKIP = "would-skip"
    # Another worker holds it (the ledger's `claimed` or `sending`, or a claim this run lost):
    # this run leaves it alone, and the holder records how it ends.
    HELD = "held"
    # The ledger's own names for a held delivery. A run reports such a delivery as `held`; they
    # are here so that every ledger state converts, and would be counted all the same.
    CLAIMED = "claimed"
    SENDING = "sending"
    # Not published in this run and nothing recorded, because a problem stops its item (a short
    # or unreadable code pool, a missing members.secret): the next run after the fix sends it
    # (or records it `expired` once it is later than publish.max_late). See the report's problems.
    BLOCKED = "blocked"

    @classmethod
    def of(cls, state: State) -> OutcomeState:
        return cls(state.value)


# Outcomes that make a run not ok (exit 1).
NOT_OK = frozenset({OutcomeState.FAILED, OutcomeState.UNKNOWN, OutcomeState.WOULD_FAIL})


@dataclass(frozen=True)
class Outcome:
    """What happened to one delivery in this run."""

    delivery: Delivery
    state: OutcomeState
    detail: str = ""
    url: str | None = None
    attempts: int = 0

    def __post_init__(self) -> None:
        # A ledger State (or a plain string) becomes its OutcomeState; a name that is no
        # outcome state is a bug, and stops here rather than vanishing from the counts.
        if type(self.state) is not OutcomeState:
            object.__setattr__(self, "state", OutcomeState(str(self.state)))


BLOCKED = OutcomeState.BLOCKED  # the name it had before the enum


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    dry_run: bool = False
    # Errors that kept items or files from being published (file:line); the rest went out.
    problems: list[Problem] = field(default_factory=list)
    # Outcomes counted, not listed one by one: the cron minute's shortcut (commcal.cron_index)
    # counts the deliveries finished earlier in the ledger, without reading them back. They
    # never pass through `Publisher.on_outcome`.
    unlisted: dict[OutcomeState, int] = field(default_factory=dict)
    # The ledger (its id) in which every delivery due up to the run's `now` has a row after
    # this run (Publisher._settled); None when something may still lack one.
    settled_ledger: str | None = None
    # False: a member's outcome (a newsletter's delivery to one person) is counted but not kept
    # in `outcomes`, so that a run to a large audience holds no outcome per member; those who
    # want them all (JSON output) watch them go by (`Publisher.on_outcome`) or keep them.
    keep_members: bool = True
    # The outcomes counted and not kept, by state (unlike `unlisted`, these were reported).
    uncounted: Counter[OutcomeState] = field(default_factory=Counter)

    def add(self, outcome: Outcome) -> None:
        if self.keep_members or outcome.delivery.recipient is None:
            self.outcomes.append(outcome)
        else:
            self.uncounted[outcome.state] += 1

    def count(self, state: str) -> int:
        kept = sum(1 for o in self.outcomes if o.state == state)
        others = Counter(self.unlisted) + self.uncounted
        return kept + sum(n for counted, n in others.items() if counted == state)

    def counts(self) -> dict[OutcomeState, int]:
        """How many outcomes each state has, in OutcomeState's order; only states that occur."""
        found = Counter(o.state for o in self.outcomes) + self.uncounted
        found.update(self.unlisted)
        return {state: found[state] for state in OutcomeState if found[state]}

    @property
    def ok(self) -> bool:
        return (
            not self.problems
            and not any(o.state in NOT_OK for o in self.outcomes)
            and not any(self.uncounted[state] for state in NOT_OK)
        )
