"""What `commcal pull` keeps in the ledger besides snapshots and replies: each post's cursor.

A pull_cursors row per post read back: the reader's own token for the next incremental read
(Mastodon: the newest reply id seen), whether the network said the post is gone (a 404 is
recorded once and never asked again), and when it was last pulled. `record_pull` writes a
post's Snapshot, its new Replies and its cursor in one transaction, so a pull killed at any
instant leaves each post wholly recorded or untouched (commcal.engagement.pull).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from commcal.ledger.engagement import EngagementStore
from commcal.ledger.members import IN_CHUNK, marks

if TYPE_CHECKING:
    from commcal.engagement.model import Reply, Snapshot
    from commcal.engagement.pull import Cursor


class PullStore(EngagementStore):
    """Pull cursors, over the ledger's connection; `record_pull` writes a post's snapshot and
    replies with the engagement store's own checks and inserts, in the cursor's transaction."""

    @contextlib.contextmanager
    def relaxed(self) -> Iterator[None]:
        """Commits that survive a killed process but not every power cut, for as long as the
        block runs. `pull` writes only what it can read again: a snapshot lost with the power
        costs a read at the next pull, never a post sent twice (which is why `publish` keeps
        every commit durable). Measured in bench/pull.py (bench/README.md)."""
        self._durability(True)
        try:
            yield
        finally:
            self._durability(False)

    def pull_cursors(self, delivery_ids: Iterable[str]) -> dict[str, Cursor]:
        """The cursors of those of `delivery_ids` that were pulled before, by delivery id."""
        from commcal.engagement.pull import Cursor

        ids = list(dict.fromkeys(delivery_ids))
        found: dict[str, Cursor] = {}

        def tx() -> None:
            if not self._table_exists("pull_cursors"):  # read-only (a dry run), not migrated
                return
            for start in range(0, len(ids), IN_CHUNK):
                chunk = ids[start : start + IN_CHUNK]
                for delivery_id, cursor, gone, pulled_at in self._execute(
                    "SELECT delivery_id, cursor, gone, pulled_at FROM pull_cursors "
                    f"WHERE delivery_id IN ({marks(len(chunk))})",
                    chunk,
                ):
                    found[delivery_id] = Cursor(
                        delivery_id, cursor, bool(gone), self._opt_from_db(pulled_at)
                    )

        self._transaction(tx, write=False)
        return found

    def record_pull(self, snapshot: Snapshot, replies: Sequence[Reply], cursor: Cursor) -> int:
        """One post's pull, in one transaction: the Snapshot (always a new row), the Replies
        not yet recorded, and the post's cursor. Returns how many replies were new."""
        pulled_at = self._t(cursor.pulled_at or snapshot.taken_at, "pulled_at")
        snapshot_row = self._snapshot_row(snapshot)  # checked before anything is written
        reply_rows = [self._reply_row(r) for r in replies]

        def tx() -> int:
            self._insert_snapshots([snapshot_row])
            new = self._insert_replies(reply_rows)
            self._execute(
                "INSERT INTO pull_cursors (delivery_id, channel, cursor, gone, pulled_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (delivery_id) DO UPDATE SET "
                "cursor = excluded.cursor, gone = excluded.gone, pulled_at = excluded.pulled_at",
                (cursor.delivery_id, snapshot.channel, cursor.cursor, int(cursor.gone), pulled_at),
            )
            return new

        return self._transaction(tx, write=True)
