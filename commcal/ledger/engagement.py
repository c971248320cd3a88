"""The engagement store: snapshots of a sent post's counts, replies to it, and people's marks.

Like the audience store (`members`), it lives in the ledger's database and is a part of every
ledger (`sql.SqlLedger` inherits it); nothing in it takes part in the claim protocol. The
objects are `commcal.engagement.model`'s; the methods are those its docstring names, stated
for callers in `base.EngagementLedger`.

Snapshots and marks are append-only (triggers refuse UPDATE and DELETE): a trend is drawn from
every snapshot ever taken, and a mark's history says who changed their mind when. A reply is
kept once per id: a later pull of the same reply is ignored, so its first text stays.

No e-mail address is stored (DESIGN: members are never named by an address in the ledger). A
reply's author is a network handle: one that looks like an address (`name@example.org`, not
the fediverse's `@name@example.social`) is refused with ValueError, since it is a bug in the
caller, not something to guess at. An address inside a member's reply (people write them) is
masked before it is stored, `mary@example.org` -> `m***@example.org` (`mask_text_addresses`);
the team's own replies (`by_team`) are kept as written: an address there is the team's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from commcal.engagement.model import MARKS, SNAPSHOT_STATES, Reply, Snapshot
from commcal.ledger.db import Database
from commcal.ledger.members import IN_CHUNK, marks
from commcal.ledger.model import mask_address

# An e-mail address in running text. Not preceded by "@" (a fediverse mention, @name@host, is a
# handle) nor by "/" or a word character (a path or a longer token).
EMAIL_IN_TEXT = re.compile(r"(?<![\w.+*@/-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")

_SNAPSHOT_COLUMNS = (
    "delivery_id, channel, remote_id, taken_at, sent_at, likes, reposts, replies, quotes, "
    "status, extra"
)
_REPLY_COLUMNS = (
    "id, delivery_id, channel, remote_id, parent_id, author, text, created_at, url, by_team, lang"
)


@dataclass(frozen=True, slots=True)
class Measured:
    """A sent post's engagement at one age (`EngagementStore.engagement_at`)."""

    delivery_id: str
    calendar: str
    item: str
    channel: str
    sent_at: datetime
    engagement: int | None  # likes + reposts + replies + quotes; None: not read that late


def mask_text_addresses(text: str) -> str:
    """`text` with every e-mail address in it masked (`m***@example.org`); handles kept."""
    return EMAIL_IN_TEXT.sub(lambda m: mask_address(m.group(0)), text)


def looks_like_address(handle: str) -> bool:
    """Whether `handle` is an e-mail address rather than a network handle."""
    return EMAIL_IN_TEXT.fullmatch(handle.strip()) is not None


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"snapshot {name} must be a whole number >= 0, not {value!r}")
    return value


class EngagementStore(Database):
    """Snapshots, replies and reply marks, over the ledger's connection."""

    # ---- snapshots ---------------------------------------------------------------------

    def add_snapshots(self, snapshots: Sequence[Snapshot]) -> int:
        """Append the snapshots (never overwriting one); the number of rows written."""
        rows = [self._snapshot_row(s) for s in snapshots]  # all checked before any is written
        return self._transaction(lambda: self._insert_snapshots(rows), write=True) if rows else 0

    def _insert_snapshots(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """Inside a transaction: append `_snapshot_row`s (also `PullStore.record_pull`'s)."""
        for row in rows:
            self._execute(
                f"INSERT INTO snapshots ({_SNAPSHOT_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        return len(rows)

    def _snapshot_row(self, s: Snapshot) -> tuple[Any, ...]:
        if s.status not in SNAPSHOT_STATES:
            raise ValueError(
                f"snapshot status {s.status!r} is not one of {', '.join(SNAPSHOT_STATES)}"
            )
        return (
            s.delivery_id,
            s.channel,
            s.remote_id,
            self._t(s.taken_at, "taken_at"),
            None if s.sent_at is None else self._t(s.sent_at, "sent_at"),
            _count("likes", s.likes),
            _count("reposts", s.reposts),
            _count("replies", s.replies),
            _count("quotes", s.quotes),
            s.status,
            json.dumps(dict(s.extra), sort_keys=True, ensure_ascii=False),
        )

    def snapshots(
        self, *, since: datetime | None = None, delivery_ids: Iterable[str] | None = None
    ) -> Iterator[Snapshot]:
        """Snapshots taken at or after `since`, of those deliveries if given; oldest first."""
        clauses: list[str] = []
        params: list[Any] = []
        if since is not None:
            clauses.append("taken_at >= ?")
            params.append(self._t(since, "since"))
        wanted = None if delivery_ids is None else sorted(set(delivery_ids))

        def tx() -> list[tuple[Any, ...]]:
            if not self._table_exists("snapshots"):  # read-only, on a ledger not yet migrated
                return []
            base = f"SELECT {_SNAPSHOT_COLUMNS}, seq FROM snapshots"
            if wanted is None:
                where = " WHERE " + " AND ".join(clauses) if clauses else ""
                return self._execute(base + where, params)
            rows: list[tuple[Any, ...]] = []
            for start in range(0, len(wanted), IN_CHUNK):
                chunk = wanted[start : start + IN_CHUNK]
                where = " AND ".join([*clauses, f"delivery_id IN ({marks(len(chunk))})"])
                rows.extend(self._execute(f"{base} WHERE {where}", [*params, *chunk]))
            return rows

        rows = self._transaction(tx, write=False) if wanted != [] else []
        # Sorted here, not in SQL: one order for every chunk (taken_at, then insertion order).
        rows.sort(key=lambda r: (self._from_db(r[3]), r[11]))
        for r in rows:
            yield Snapshot(
                delivery_id=r[0],
                channel=r[1],
                remote_id=r[2],
                taken_at=self._from_db(r[3]),
                sent_at=self._opt_from_db(r[4]),
                likes=int(r[5]),
                reposts=int(r[6]),
                replies=int(r[7]),
                quotes=int(r[8]),
                status=r[9],
                extra=json.loads(r[10]),
            )

    def engagement_at(self, age: timedelta) -> list[Measured]:
        """Every delivery with a snapshot and a row in the ledger, with the engagement (likes +
        reposts + replies + quotes) of its first `ok` snapshot taken at or after its send +
        `age` (whole seconds): the figure `commcal report` compares posts by; None when no
        snapshot is that late. Its send: the earliest `sent_at` its snapshots give, else when
        the ledger recorded it sent.

        Chosen in SQL, one index seek per delivery (snapshots_delivery: delivery, time), so
        one row per delivery is read back, not every snapshot."""
        later, params = self._plus_seconds("sent", int(age.total_seconds()))
        sql = (
            "WITH posts AS (SELECT p.delivery_id AS delivery_id, d.calendar AS calendar, "
            "d.item AS item, d.channel AS channel, coalesce(p.sent, d.updated_at) AS sent "
            "FROM (SELECT delivery_id, min(sent_at) AS sent FROM snapshots "
            "GROUP BY delivery_id) p JOIN deliveries d ON d.id = p.delivery_id), "
            f"due AS (SELECT delivery_id, calendar, item, channel, sent, {later} AS due "
            "FROM posts) "
            "SELECT delivery_id, calendar, item, channel, sent, "
            "(SELECT s.likes + s.reposts + s.replies + s.quotes FROM snapshots s "
            "WHERE s.delivery_id = due.delivery_id AND s.taken_at >= due.due "
            "AND s.status = 'ok' ORDER BY s.taken_at, s.seq LIMIT 1) "
            "FROM due ORDER BY delivery_id"
        )
        rows = self._transaction(lambda: self._read_if_there("snapshots", sql, params), write=False)
        return [
            Measured(
                r[0], r[1], r[2], r[3], self._from_db(r[4]), None if r[5] is None else int(r[5])
            )
            for r in rows
        ]

    # ---- replies -----------------------------------------------------------------------

    def add_replies(self, replies: Sequence[Reply]) -> int:
        """Keep the replies not yet known (by id); the number of new rows written."""
        rows = [self._reply_row(r) for r in replies]
        return self._transaction(lambda: self._insert_replies(rows), write=True) if rows else 0

    def _insert_replies(self, rows: Sequence[tuple[Any, ...]]) -> int:
        """Inside a transaction: keep the `_reply_row`s not yet known; how many were new."""
        written = 0
        for row in rows:
            written += len(
                self._execute(
                    f"INSERT INTO replies ({_REPLY_COLUMNS}) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (id) DO NOTHING RETURNING id",
                    row,
                )
            )
        return written

    def _reply_row(self, r: Reply) -> tuple[Any, ...]:
        if not r.id:
            raise ValueError("a reply needs an id")
        if looks_like_address(r.author):
            raise ValueError(
                f"reply {r.id}: its author looks like an e-mail address; the ledger keeps "
                "network handles only (a fediverse account is written @name@host)"
            )
        return (
            r.id,
            r.delivery_id,
            r.channel,
            r.remote_id,
            r.parent_id,
            r.author,
            r.text if r.by_team else mask_text_addresses(r.text),
            self._t(r.created_at, "created_at"),
            # The network's link to the reply: a hostile or broken server's `mailto:` too.
            r.url if r.by_team else mask_text_addresses(r.url),
            1 if r.by_team else 0,
            r.lang,
        )

    def replies(self, *, since: datetime | None = None) -> Iterator[Reply]:
        """Replies written at or after `since`; oldest first."""
        sql = f"SELECT {_REPLY_COLUMNS} FROM replies"
        params: list[Any] = []
        if since is not None:
            sql += " WHERE created_at >= ?"
            params.append(self._t(since, "since"))
        rows = self._transaction(
            lambda: self._read_if_there("replies", sql + " ORDER BY created_at, id", params),
            write=False,
        )
        for r in rows:
            yield Reply(
                id=r[0],
                delivery_id=r[1],
                channel=r[2],
                remote_id=r[3],
                parent_id=r[4],
                author=r[5],
                text=r[6],
                created_at=self._from_db(r[7]),
                url=r[8],
                by_team=bool(r[9]),
                lang=r[10],
            )

    def _read_if_there(
        self, table: str, sql: str, params: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        """The rows of `sql`, or none on a read-only ledger not yet migrated to have `table`."""
        return self._execute(sql, params) if self._table_exists(table) else []

    # ---- marks -------------------------------------------------------------------------

    def mark_reply(self, reply_id: str, mark: str, *, now: datetime) -> None:
        """Record a person's mark on a reply (one of MARKS); KeyError if there is no such reply.
        Marks are kept in order; the latest one of a kind that contradicts an earlier one wins
        (that reading is `commcal.engagement.questions`'s, not the store's)."""
        if mark not in MARKS:
            raise ValueError(f"unknown mark {mark!r}: use one of {', '.join(MARKS)}")
        at = self._t(now, "now")

        def tx() -> None:
            if not self._execute("SELECT 1 FROM replies WHERE id = ?", (reply_id,)):
                raise KeyError(reply_id)
            self._execute(
                "INSERT INTO reply_marks (reply_id, mark, at) VALUES (?, ?, ?)",
                (reply_id, mark, at),
            )

        self._transaction(tx, write=True)

    def reply_marks(self) -> dict[str, list[str]]:
        """Reply id -> its marks, oldest first."""
        rows = self._transaction(
            lambda: self._read_if_there(
                "reply_marks", "SELECT reply_id, mark FROM reply_marks ORDER BY seq"
            ),
            write=False,
        )
        result: dict[str, list[str]] = {}
        for reply_id, mark in rows:
            result.setdefault(reply_id, []).append(mark)
        return result
