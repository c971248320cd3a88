"""One database connection and what each SQL dialect must supply (`Database`).

`sqlite.py` and `postgres.py` subclass `Database` (through `sql.SqlLedger`) and provide the
connection, transactions with the right locking, and time conversion; everything else is
written once in SQL both run. Also here: the one retry loop for lock conflicts
(`retry_on_conflict`) and the schema migration runner (the statements are in `schema.py`).
"""

from __future__ import annotations

import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Self, TypeVar

from commcal.errors import LedgerError
from commcal.ledger.model import LedgerMissing, new_token, utc

T = TypeVar("T")

RETRY_MAX_DELAY_S = 0.2  # the longest pause between two tries of a transaction that hit a lock


def retry_on_conflict(
    fn: Callable[[], T],
    *,
    conflict: Callable[[BaseException], bool],
    give_up: Callable[[BaseException], LedgerError],
    first_delay: float,
    budget_s: float | None = None,
    tries: int | None = None,
) -> T:
    """`fn()`, tried again while it fails with an error `conflict` says is a lock conflict.

    Pauses grow from `first_delay` to RETRY_MAX_DELAY_S, each jittered (0.5x to 1.5x) so that
    processes woken together do not collide again in step. Gives up with `give_up(error)`
    after `tries` retries, or once `budget_s` seconds have passed; any other error passes.
    """
    deadline = None if budget_s is None else time.monotonic() + budget_s
    delay = first_delay
    retries = 0
    while True:
        try:
            return fn()
        except BaseException as e:
            if not conflict(e):
                raise
            if (tries is not None and retries >= tries) or (
                deadline is not None and time.monotonic() > deadline
            ):
                raise give_up(e) from e
        retries += 1
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, RETRY_MAX_DELAY_S)


def utc_text(value: datetime) -> str:
    """A UTC instant as ledger_meta stores it (fixed width, so text order is time order)."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


class Database(ABC):
    """One connection, shared by threads (calls are serialised), and the dialect's hooks.

    Subclasses provide `close`, `_transaction` (run a function in one transaction, retrying on
    lock conflicts), `_execute`, time conversion, `_table_exists`, and `_row_lock` (the suffix
    that locks a row read for update; SQLite needs none because `BEGIN IMMEDIATE` already
    holds the write lock).
    """

    _row_lock: str = ""

    def __init__(self) -> None:
        # One connection per Ledger; a lock keeps threads from interleaving transactions on it.
        self._lock = threading.RLock()

    @abstractmethod
    def close(self) -> None:
        """Close the connection. Further calls fail."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def _transaction(self, fn: Callable[[], T], *, write: bool, durable: bool = True) -> T:
        """Run `fn` inside one transaction (retried whole on lock conflicts) and commit.

        A commit that returns must be durable: `begin_send`'s above all, since were it lost the
        row would fall back to CLAIMED and the next run would send the delivery again.
        `durable=False`: the commit survives the process being killed (SIGKILL, OOM), not a
        power cut or a kernel crash, and costs no flush to disk. Only for a record whose loss
        costs work and never a second send (`record_upload`: an upload made again).
        """

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement inside the current transaction; all result rows."""

    @abstractmethod
    def _to_db(self, value: datetime) -> Any:
        """A UTC datetime as the backend stores it."""

    @abstractmethod
    def _from_db(self, value: Any) -> datetime:
        """A stored time back as an aware UTC datetime."""

    @abstractmethod
    def _table_exists(self, name: str) -> bool:
        """Whether the schema holds table `name` (inside the current transaction)."""

    @abstractmethod
    def _plus_seconds(self, instant: str, seconds: int) -> tuple[str, list[Any]]:
        """SQL for the stored instant `instant` (a column or expression) plus `seconds`, as a
        value that compares with stored instants as the times do; and its parameters."""

    def _durability(self, relaxed: bool) -> None:  # noqa: B027 (a hook: optional)
        """`relaxed`: this connection's commits survive the death of the process but may be
        lost with the last few on a power cut or a server crash (never half-written); False:
        back to the durable default. For data that can be read again (`PullStore.relaxed`)."""

    def _opt_from_db(self, value: Any) -> datetime | None:
        return None if value is None else self._from_db(value)

    def _t(self, value: datetime, name: str = "time") -> Any:
        return self._to_db(utc(value, name))

    def _migrate(self, steps: Sequence[Sequence[str]], where: str) -> None:
        """Bring the schema up to date: step N (1-based) is `steps[N - 1]`, applied once.

        Runs in one write transaction, so two processes opening a new ledger at once do not
        both create it. A database newer than this code is refused rather than misread.
        """

        def tx() -> None:
            self._migration_lock()
            self._execute(
                "CREATE TABLE IF NOT EXISTS commcal_schema "
                "(version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
            )
            rows = self._execute("SELECT max(version) FROM commcal_schema")
            current = int(rows[0][0] or 0)
            if current > len(steps):
                raise LedgerError(
                    f"the ledger at {where} has schema version {current}, but this commcal "
                    f"knows only up to version {len(steps)}; upgrade commcal to use it"
                )
            for version in range(current + 1, len(steps) + 1):
                for statement in steps[version - 1]:
                    self._execute(statement)
                self._execute(
                    "INSERT INTO commcal_schema (version, applied_at) VALUES (?, ?)",
                    (version, datetime.now(UTC).isoformat()),
                )
            if current < len(steps) and self._table_exists("ledger_meta"):
                # A new ledger (or one from before ledgers had an identity) gets its id and
                # creation time once; the wall clock, not a pinned --now: this is a fact.
                for key, value in (
                    ("ledger_id", new_token()),
                    ("created_at", utc_text(datetime.now(UTC))),
                ):
                    self._execute(
                        "INSERT INTO ledger_meta (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO NOTHING",
                        (key, value),
                    )

        self._transaction(tx, write=True)

    def _check_readable(self, steps: Sequence[Sequence[str]], where: str) -> None:
        """For a read-only ledger: it must exist (LedgerMissing) and not be newer than us."""

        def tx() -> int:
            if not self._table_exists("commcal_schema"):
                raise LedgerMissing(
                    f"{where} holds no commcal ledger: check state: in commcal.yaml, --state "
                    "and COMMCAL_STATE (the first `commcal publish` creates the ledger)"
                )
            rows = self._execute("SELECT max(version) FROM commcal_schema")
            return int(rows[0][0] or 0)

        current = self._transaction(tx, write=False)
        if current > len(steps):
            raise LedgerError(
                f"the ledger at {where} has schema version {current}, but this commcal "
                f"knows only up to version {len(steps)}; upgrade commcal to use it"
            )

    def _migration_lock(self) -> None:  # noqa: B027 (a hook: SQLite needs nothing here)
        """Serialise migrations across processes, where the transaction alone does not."""

    def schema_version(self) -> int:
        """The schema version the database is at."""
        rows = self._transaction(
            lambda: self._execute("SELECT max(version) FROM commcal_schema"), write=False
        )
        return int(rows[0][0] or 0)
