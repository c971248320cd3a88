"""What a publish run reports: one Outcome per delivery handled, in a Report.

The views (`commcal.views.publish`) and the scheduler read these; nothing here knows how a run
is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from commcal.errors import Problem
from commcal.ledger import State

if TYPE_CHECKING:
    from commcal.plan import Delivery


@dataclass(frozen=True)
class Outcome:
    """What happened to one delivery in this run."""

    delivery: Delivery
    state: str  # a ledger State value, or "would-send" / "already" / "held" in reports
    detail: str = ""
    url: str | None = None
    attempts: int = 0


# A report-only outcome: not published in this run because a problem stops its item (a short
# or unreadable code pool, a missing members.secret); nothing is recorded, so the next run after
# the fix sends it (or records it `expired` once it is later than publish.max_late).
BLOCKED = "blocked"


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    dry_run: bool = False
    # Errors that kept items or files from being published (file:line); the rest went out.
    problems: list[Problem] = field(default_factory=list)

    def count(self, state: str) -> int:
        return sum(1 for o in self.outcomes if o.state == state)

    @property
    def ok(self) -> bool:
        return not self.problems and not any(
            o.state in (State.FAILED, State.UNKNOWN, "would-fail") for o in self.outcomes
        )
