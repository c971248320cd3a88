"""The audience store: suppressions, single-use code assignments and contest draws.

These live in the same database as the deliveries (one connection, one transaction per call),
so `AudienceStore` is a part of every ledger (`sql.SqlLedger` inherits it), kept apart from
the claim protocol because nothing in it depends on deliveries. Members are named by their
recipient key (16 hex digits, `model.recipient_key`), never by an address: anything that
looks like a full address is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from commcal.errors import LedgerError
from commcal.ledger.db import Database
from commcal.ledger.model import FULL_ADDRESS, DrawRecord, Suppression, recipient_key

IN_CHUNK = 500  # values per IN (...) list: far below either backend's parameter limit


def marks(n: int) -> str:
    """`n` comma-separated placeholders, for an IN (...) list."""
    return ", ".join("?" * n)


def _key(value: str) -> str:
    return recipient_key(value)


class AudienceStore(Database):
    """Suppressions, code assignments and draws, over the ledger's connection."""

    # ---- suppressions ------------------------------------------------------------------

    def suppress(self, recipient_key: str, *, source: str, now: datetime, note: str = "") -> bool:
        """Suppress a member: nothing more is delivered to them. True if newly suppressed.

        Idempotent: suppressing again changes nothing (the first source and note are kept).
        `note` is shown by `commcal suppress --list`; it may hold a masked address such as
        `m***@example.org` (see `mask_address`) but never a full one: a note containing an
        unmasked address is refused with ValueError.
        """
        key = _key(recipient_key)
        if FULL_ADDRESS.search(note):
            raise ValueError(
                "a suppression note must not hold a full address; mask it (m***@example.org)"
            )
        at = self._t(now, "now")

        def tx() -> bool:
            rows = self._execute(
                "INSERT INTO suppressions (recipient_key, source, note, at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (recipient_key) DO NOTHING RETURNING recipient_key",
                (key, source, note, at),
            )
            if rows:
                self._suppression_event(key, at, "suppressed", source)
            return bool(rows)

        return self._transaction(tx, write=True)

    def unsuppress(self, recipient_key: str, *, now: datetime) -> bool:
        """Lift a suppression. True if the member was suppressed."""
        key = _key(recipient_key)
        at = self._t(now, "now")

        def tx() -> bool:
            rows = self._execute(
                "DELETE FROM suppressions WHERE recipient_key = ? RETURNING recipient_key", (key,)
            )
            if rows:
                self._suppression_event(key, at, "unsuppressed", "")
            return bool(rows)

        return self._transaction(tx, write=True)

    def _suppression_event(self, key: str, at: Any, event: str, source: str) -> None:
        self._execute(
            "INSERT INTO suppression_events (recipient_key, at, event, source) VALUES (?, ?, ?, ?)",
            (key, at, event, source),
        )

    def is_suppressed(self, recipient_key: str) -> bool:
        """Whether the member is suppressed."""
        return bool(self.suppressed([recipient_key]))

    def suppressed(self, keys: Iterable[str]) -> set[str]:
        """The suppressed ones among `keys` (as lower-case keys), in a few queries."""
        wanted = list(dict.fromkeys(_key(k) for k in keys))
        if not wanted:
            return set()

        def tx() -> set[str]:
            found: set[str] = set()
            for start in range(0, len(wanted), IN_CHUNK):
                chunk = wanted[start : start + IN_CHUNK]
                rows = self._execute(
                    "SELECT recipient_key FROM suppressions WHERE recipient_key IN "
                    f"({marks(len(chunk))})",
                    chunk,
                )
                found.update(r[0] for r in rows)
            return found

        return self._transaction(tx, write=False)

    def suppressions(self, limit: int | None = None) -> list[Suppression]:
        """Suppressions, newest first."""
        sql = (
            "SELECT recipient_key, source, note, at FROM suppressions "
            "ORDER BY at DESC, recipient_key"
        )
        params: list[Any] = []
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        rows = self._transaction(lambda: self._execute(sql, params), write=False)
        return [Suppression(r[0], r[1], r[2], self._from_db(r[3])) for r in rows]

    # ---- single-use codes --------------------------------------------------------------

    def _pool_lock(self, pool: str) -> None:
        """Serialise code assignment in `pool` across processes, where the transaction alone
        does not (SQLite's BEGIN IMMEDIATE already does; PostgreSQL takes an advisory lock)."""

    def _held_codes(self, pool: str, keys: Sequence[str]) -> dict[str, str]:
        held: dict[str, str] = {}
        for start in range(0, len(keys), IN_CHUNK):
            chunk = list(keys[start : start + IN_CHUNK])
            rows = self._execute(
                "SELECT recipient_key, code FROM code_assignments WHERE pool = ? "
                f"AND recipient_key IN ({marks(len(chunk))})",
                [pool, *chunk],
            )
            held.update((r[0], r[1]) for r in rows)
        return held

    def _free_codes(self, pool: str, codes: Sequence[str], wanted: int) -> list[str]:
        """Up to `wanted` codes of `codes`, in order, not yet assigned in `pool`."""
        free: list[str] = []
        unique = list(dict.fromkeys(codes))
        for start in range(0, len(unique), IN_CHUNK):
            chunk = unique[start : start + IN_CHUNK]
            rows = self._execute(
                "SELECT code FROM code_assignments WHERE pool = ? "
                f"AND code IN ({marks(len(chunk))})",
                [pool, *chunk],
            )
            taken = {r[0] for r in rows}
            free.extend(c for c in chunk if c not in taken)
            if len(free) >= wanted:
                return free[:wanted]
        return free

    def _assign(self, pool: str, key: str, code: str, at: Any) -> None:
        self._execute(
            "INSERT INTO code_assignments (pool, code, recipient_key, at) VALUES (?, ?, ?, ?)",
            (pool, code, key, at),
        )

    def assign_code(
        self, pool: str, recipient_key: str, codes: Sequence[str], *, now: datetime
    ) -> str | None:
        """The member's single-use code from `pool`, assigning one if they have none yet.

        In one transaction: the code already assigned to this member in `pool` if any (the same
        member always gets the same code), else the first of `codes` (in order) not assigned to
        anyone in `pool`, recorded before it is returned. None when every code is taken. Safe
        against any number of concurrent processes: a code is never given to two members.
        """
        key = _key(recipient_key)
        at = self._t(now, "now")

        def tx() -> str | None:
            self._pool_lock(pool)
            held = self._held_codes(pool, [key])
            if key in held:
                return held[key]
            free = self._free_codes(pool, codes, 1)
            if not free:
                return None
            self._assign(pool, key, free[0], at)
            return free[0]

        return self._transaction(tx, write=True)

    def reserve_codes(
        self, pool: str, recipient_keys: Sequence[str], codes: Sequence[str], *, now: datetime
    ) -> dict[str, str]:
        """Codes for all `recipient_keys` at once, or none: {key: code}.

        Members who already hold a code keep it. If fewer codes are free than members need,
        raises LedgerError saying how many are missing, and assigns nothing.
        """
        keys = list(dict.fromkeys(_key(k) for k in recipient_keys))
        at = self._t(now, "now")

        def tx() -> dict[str, str]:
            self._pool_lock(pool)
            held = self._held_codes(pool, keys)
            needing = [k for k in keys if k not in held]
            free = self._free_codes(pool, codes, len(needing))
            if len(free) < len(needing):
                missing = len(needing) - len(free)
                raise LedgerError(
                    f"code pool {pool!r} is {missing} code{'s' if missing != 1 else ''} short: "
                    f"{len(needing)} members need a new code and only {len(free)} are left "
                    "unassigned; add codes to the pool (nothing was assigned)"
                )
            for k, code in zip(needing, free, strict=True):
                self._assign(pool, k, code, at)
                held[k] = code
            return {k: held[k] for k in keys}

        return self._transaction(tx, write=True)

    def code_for(self, pool: str, recipient_key: str) -> str | None:
        """The code assigned to the member in `pool`, if any."""
        key = _key(recipient_key)
        held = self._transaction(lambda: self._held_codes(pool, [key]), write=False)
        return held.get(key)

    def codes_assigned(self, pool: str) -> int:
        """How many codes of `pool` have been assigned."""
        rows = self._transaction(
            lambda: self._execute("SELECT count(*) FROM code_assignments WHERE pool = ?", (pool,)),
            write=False,
        )
        return int(rows[0][0])

    # ---- contest draws -----------------------------------------------------------------

    def record_draw(
        self,
        item: str,
        *,
        seed: str,
        entries_sha256: str,
        entries: int,
        winners: Sequence[str],
        now: datetime,
    ) -> None:
        """Append a contest draw to the (append-only) record.

        `winners` are keys (`commcal.contest.entry_key`), in draw order: the entries file holds
        the addresses. Anything that looks like a full address is refused (ValueError).
        """
        if isinstance(winners, str):
            raise TypeError("winners is a sequence of names, not one string")
        if any(FULL_ADDRESS.search(w) for w in winners):
            # "The ledger stores a key per address, never the address."
            raise ValueError("a draw's winners are stored as keys (entry_key), never addresses")
        at = self._t(now, "now")
        self._transaction(
            lambda: self._execute(
                "INSERT INTO draws (item, at, seed, entries_sha256, entries, winners) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (item, at, seed, entries_sha256, int(entries), json.dumps(list(winners))),
            ),
            write=True,
        )

    def draws(self, item: str) -> list[DrawRecord]:
        """The draws recorded for `item`, oldest first."""
        rows = self._transaction(
            lambda: self._execute(
                "SELECT item, at, seed, entries_sha256, entries, winners FROM draws "
                "WHERE item = ? ORDER BY seq",
                (item,),
            ),
            write=False,
        )
        return [
            DrawRecord(r[0], self._from_db(r[1]), r[2], r[3], int(r[4]), tuple(json.loads(r[5])))
            for r in rows
        ]
