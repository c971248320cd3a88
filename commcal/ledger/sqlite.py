"""The ledger in one SQLite file: for a single host, any number of overlapping processes.

Every write transaction starts with `BEGIN IMMEDIATE`, which takes the database's write lock up
front: a transaction never has to upgrade a read lock (the case SQLite cannot wait out, and the
usual source of "database is locked" in spite of a busy timeout). WAL mode lets readers go on
while a writer works. The busy timeout makes SQLite wait for the lock; on top of it a retry loop
catches what still slips through, so that message never reaches a user.

Durability (`PRAGMA synchronous`), measured on the development machine (2026-11-25, 2 vCPUs, ext4
on a virtio disk): claim_many + begin_send + record_sent for 2,000 deliveries, one process, the
median of 5 runs:

    FULL     1,260 deliveries/s  (each commit fsyncs the WAL: two fsyncs per delivery)
    NORMAL   2,030 deliveries/s  (the WAL is fsynced only at checkpoints)
    NORMAL, switched to FULL for begin_send only: 1,390/s; not worth the extra moving part.

In WAL mode both keep every committed transaction when the *process* dies (SIGKILL, OOM, a
crash): the commit is in the WAL file and the OS writes it out. They differ on power loss or a
kernel crash, where NORMAL may lose the last transactions. Losing a `begin_send` whose network
call went out would turn the row back into CLAIMED, and the next run would send it again; losing
a `record_sent` would leave a delivery that went out as UNKNOWN. "Never twice" comes first, so we
run FULL and pay about 40% of the throughput for it.

Idempotent channels (2026-11-25) skip the `begin_send` commit instead: `claim_many(...,
sending=True)` claims them straight into SENDING in the batch's one transaction, so a delivery
costs one fsync (its `record_sent`) rather than two, still with FULL. Same machine, 2,000
deliveries, one process: claim_many + begin_send + record_sent 1.75 s; claimed into SENDING +
record_sent 1.00 s. Non-idempotent channels keep the separate durable `begin_send`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from commcal.errors import LedgerError
from commcal.ledger.db import retry_on_conflict
from commcal.ledger.model import LedgerMissing
from commcal.ledger.schema import SQLITE, migrations
from commcal.ledger.sql import SqlLedger

T = TypeVar("T")

BUSY_TIMEOUT_S = 30.0  # how long SQLite itself waits for the write lock
BUSY_BUDGET_S = 300.0  # how long we keep retrying after that before telling the user
SYNCHRONOUS = "FULL"  # see the module docstring for the measurement behind this choice

# The schema, from the one definition of the tables (schema.py); tests shorten it to make old
# ledgers.
MIGRATIONS: list[list[str]] = migrations(SQLITE)


def _is_busy(error: sqlite3.OperationalError) -> bool:
    text = str(error).lower()
    return "locked" in text or "busy" in text


class SqliteLedger(SqlLedger):
    """The ledger in a SQLite database file (or ":memory:")."""

    def __init__(
        self, path: Path | str, *, synchronous: str = SYNCHRONOUS, read_only: bool = False
    ) -> None:
        """`read_only`: open an existing file with `mode=ro` (never created, never migrated,
        nothing written: a dry run and `status` leave its bytes as they were); a missing file
        is `LedgerMissing`."""
        super().__init__()
        self.path = str(path)
        self.read_only = read_only
        self.synchronous = synchronous.upper()
        if self.synchronous not in {"FULL", "NORMAL", "EXTRA"}:
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        if read_only and (self.path == ":memory:" or not Path(self.path).is_file()):
            raise LedgerMissing(
                f"no ledger at {self.path}: check state: in commcal.yaml, --state and "
                "COMMCAL_STATE (the first `commcal publish` creates the ledger)"
            )
        try:
            if read_only:
                uri = Path(self.path).resolve().as_uri() + "?mode=ro"
                self._conn = sqlite3.connect(
                    uri,
                    uri=True,
                    timeout=BUSY_TIMEOUT_S,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                self._conn = sqlite3.connect(
                    self.path,
                    timeout=BUSY_TIMEOUT_S,
                    isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                    check_same_thread=False,  # SqlLedger serialises threads with its lock
                )
        except sqlite3.Error as e:
            raise LedgerError(f"cannot open the ledger {self.path}: {e}") from e
        try:
            if read_only:
                self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                self._conn.execute("PRAGMA query_only = 1")
                self._check_readable(MIGRATIONS, self.path)
            else:
                self._with_retry(self._pragmas)
                self._migrate(MIGRATIONS, self.path)
        except sqlite3.Error as e:
            self._conn.close()
            raise LedgerError(f"cannot open the ledger {self.path}: {e}") from e
        except BaseException:
            self._conn.close()
            raise

    def _pragmas(self) -> None:
        self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        # Switching to WAL needs a moment of exclusive access, so it can be busy too.
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute(f"PRAGMA synchronous = {self.synchronous}")

    def _durability(self, relaxed: bool) -> None:
        # NORMAL in WAL mode: a commit is in the WAL file when it returns, so a killed process
        # loses nothing; the WAL is fsynced at checkpoints (https://sqlite.org/pragma.html#pragma_synchronous).
        with self._lock:
            self._conn.execute(f"PRAGMA synchronous = {'NORMAL' if relaxed else self.synchronous}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _with_retry(self, fn: Callable[[], T]) -> T:
        def once() -> T:
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if _is_busy(e):
                    raise  # retried
                raise LedgerError(f"ledger {self.path}: {e}") from e
            except sqlite3.Error as e:
                raise LedgerError(f"ledger {self.path}: {e}") from e

        def give_up(e: BaseException) -> LedgerError:
            return LedgerError(
                f"the ledger {self.path} stayed busy for {BUSY_BUDGET_S:.0f} s: another "
                "process is holding it; try again when it has finished"
            )

        return retry_on_conflict(
            once,
            conflict=lambda e: isinstance(e, sqlite3.OperationalError),
            give_up=give_up,
            first_delay=0.002,
            budget_s=BUSY_BUDGET_S,
        )

    def _transaction(self, fn: Callable[[], T], *, write: bool, durable: bool = True) -> T:
        def attempt() -> T:
            self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = fn()
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            return result

        with self._lock:
            if durable or self.synchronous != "FULL":
                return self._with_retry(attempt)
            # WAL with NORMAL: the commit is in the WAL file when COMMIT returns (a killed
            # process keeps it), fsynced at the next checkpoint or FULL commit.
            self._conn.execute("PRAGMA synchronous = NORMAL")
            try:
                return self._with_retry(attempt)
            finally:
                self._conn.execute(f"PRAGMA synchronous = {self.synchronous}")

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, tuple(params)).fetchall()

    def _to_db(self, value: datetime) -> Any:
        return value.isoformat(timespec="microseconds")

    def _from_db(self, value: Any) -> datetime:
        return datetime.fromisoformat(value).astimezone(UTC)

    def _plus_seconds(self, instant: str, seconds: int) -> tuple[str, list[Any]]:
        # Stored text is `YYYY-MM-DDTHH:MM:SS.ffffff+00:00` (UTC, fixed width): shift the whole
        # seconds with strftime and keep the fraction and offset as they are, so the result is
        # the same fixed-width text and compares exactly. https://sqlite.org/lang_datefunc.html
        return (
            f"strftime('%Y-%m-%dT%H:%M:%S', {instant}, ?) || substr({instant}, 20)",
            [f"{seconds:+d} seconds"],
        )

    def _table_exists(self, name: str) -> bool:
        rows = self._execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        )
        return bool(rows)
