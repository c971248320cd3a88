"""What happened to a sent post afterwards: `commcal retract` and `commcal amend`, recorded.

A delivery stays `sent` for good (so `publish` never sends it again); its later changes are
kept beside it in `post_changes`, append-only. Each change has a number (1, 2 ...) and is
written twice: `begun` right before its request goes out, then `done` or `refused`. A change
with only its `begun` row was interrupted after its request may have left; the next retract or
amend of the delivery takes it up again with the same number (so a Matrix transaction id made
from it is the same, and the homeserver dedupes the repeat).

`ChangeStore` is part of every ledger (`sql.SqlLedger` inherits it), like `members.AudienceStore`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal

from commcal.errors import LedgerError
from commcal.ledger.db import Database
from commcal.ledger.members import IN_CHUNK, marks

Action = Literal["retracted", "amended"]
ACTIONS: tuple[Action, ...] = ("retracted", "amended")
# `begun`: the request is about to go out; `done`: the network did it (or had it done already);
# `refused`: the network said no, nothing changed; `abandoned`: an interrupted change that was
# not taken up (a later change made it moot: the post was retracted, or amended again).
PHASES = ("begun", "done", "refused", "abandoned")
Ending = Literal["done", "refused", "abandoned"]


@dataclass(frozen=True)
class PostChange:
    """One retraction or amendment of a delivery, as far as it got."""

    delivery_id: str
    number: int  # 1 for the delivery's first change, then 2 ...
    action: Action
    begun_at: datetime
    finished_at: datetime | None  # None: interrupted after its request may have gone out
    outcome: str  # "done", "refused", "abandoned", or "" while unfinished
    reason: str  # why, as the person asking gave it (`retract --reason`)
    note: str  # how it ended: "already gone", the network's refusal ...
    remote_id: str | None  # a new id the network gave (Matrix: the replacement event)
    url: str | None
    content_hash: str  # an amendment's new text, as `text_hash` computes it
    text: str | None  # an amendment's new text

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def done(self) -> bool:
        return self.outcome == "done"


class ChangePending(LedgerError):
    """A delivery's earlier change is unfinished; it must be taken up first."""

    def __init__(self, change: PostChange) -> None:
        self.change = change
        super().__init__(
            f"delivery {change.delivery_id}: change {change.number} ({change.action}) was "
            "interrupted; take it up first"
        )


_COLUMNS = "delivery_id, change, action, phase, at, detail, remote_id, url, content_hash, text"


class ChangeStore(Database):
    """Retractions and amendments of sent posts, over the ledger's connection."""

    def begin_change(
        self,
        delivery_id: str,
        action: Action,
        now: datetime,
        *,
        reason: str = "",
        content_hash: str = "",
        text: str | None = None,
    ) -> PostChange:
        """Record that a change is about to be requested, under the delivery's next number.

        Raises `ChangePending` when the delivery has an unfinished change: that one is taken up
        (`finish_change`) before anything new is begun."""
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, not {action!r}")
        at = self._t(now, "now")

        def tx() -> PostChange:
            found = self._changes_in_tx([delivery_id]).get(delivery_id, [])
            if found and not found[-1].finished:
                raise ChangePending(found[-1])
            number = found[-1].number + 1 if found else 1
            self._execute(
                f"INSERT INTO post_changes ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (delivery_id, number, action, "begun", at, reason, None, None, content_hash, text),
            )
            return PostChange(
                delivery_id,
                number,
                action,
                now,
                None,
                "",
                reason,
                "",
                None,
                None,
                content_hash,
                text,
            )

        return self._transaction(tx, write=True)

    def finish_change(
        self,
        change: PostChange,
        now: datetime,
        *,
        ending: Ending = "done",
        note: str = "",
        remote_id: str | None = None,
        url: str | None = None,
    ) -> PostChange:
        """Record how a begun change ended (see PHASES), with a `note`: "already gone", the
        network's refusal (redacted by the caller) ... A change finished already is left as it
        was (a second process took it up meanwhile) and returned as recorded."""
        if ending not in PHASES[1:]:
            raise ValueError(f"a change ends {PHASES[1:]}, not {ending!r}")
        at = self._t(now, "now")
        phase = ending

        def tx() -> PostChange:
            found = self._changes_in_tx([change.delivery_id]).get(change.delivery_id, [])
            mine = next((c for c in found if c.number == change.number), None)
            if mine is None:
                raise LedgerError(
                    f"delivery {change.delivery_id} has no change {change.number} to finish"
                )
            if mine.finished:
                return mine
            self._execute(
                f"INSERT INTO post_changes ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    change.delivery_id,
                    change.number,
                    change.action,
                    phase,
                    at,
                    note,
                    remote_id,
                    url,
                    change.content_hash,
                    None,
                ),
            )
            return replace(
                mine, finished_at=now, outcome=phase, note=note, remote_id=remote_id, url=url
            )

        return self._transaction(tx, write=True)

    def post_changes(self, delivery_ids: Iterable[str]) -> dict[str, list[PostChange]]:
        """The changes of those of `delivery_ids` that have any, oldest first, by id."""
        wanted = list(dict.fromkeys(delivery_ids))
        if not wanted:
            return {}
        return self._transaction(lambda: self._changes_in_tx(wanted), write=False)

    def retracted(self, delivery_ids: Iterable[str]) -> dict[str, PostChange]:
        """Those of `delivery_ids` whose post was retracted, with the retraction."""
        return {
            delivery_id: change
            for delivery_id, changes in self.post_changes(delivery_ids).items()
            for change in changes
            if change.action == "retracted" and change.done
        }

    def _changes_in_tx(self, wanted: list[str]) -> dict[str, list[PostChange]]:
        if not self._table_exists("post_changes"):  # read-only, on a ledger not yet migrated
            return {}
        rows: list[Any] = []
        for start in range(0, len(wanted), IN_CHUNK):
            chunk = wanted[start : start + IN_CHUNK]
            rows.extend(
                self._execute(
                    f"SELECT {_COLUMNS} FROM post_changes WHERE delivery_id IN "
                    f"({marks(len(chunk))}) ORDER BY seq",
                    chunk,
                )
            )
        begun: dict[tuple[str, int], PostChange] = {}
        for delivery_id, number, action, phase, at, detail, remote_id, url, digest, text in rows:
            key = (delivery_id, int(number))
            when = self._from_db(at)
            if phase == "begun":
                begun[key] = PostChange(
                    delivery_id, int(number), action, when, None, "", detail, "", None, None,
                    digest, text,
                )  # fmt: skip
            elif key in begun and not begun[key].finished:
                begun[key] = replace(
                    begun[key],
                    finished_at=when,
                    outcome=phase,
                    note=detail,
                    remote_id=remote_id,
                    url=url,
                )
        found: dict[str, list[PostChange]] = {}
        for change in sorted(begun.values(), key=lambda c: (c.delivery_id, c.number)):
            found.setdefault(change.delivery_id, []).append(change)
        return found
