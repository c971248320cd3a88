"""The ledger in PostgreSQL: for several hosts publishing from one calendar repository.

Same SQL and semantics as SQLite (see `sql.SqlLedger`); what differs is locking. A claim first
tries `INSERT ... ON CONFLICT DO NOTHING` (a concurrent insert of the same id waits for the other
transaction and then does nothing), then reads an existing row with `FOR UPDATE SKIP LOCKED`:
a row another worker is changing right now is simply not ours this time. Transactions run at
READ COMMITTED with autocommit off, each committed explicitly; deadlocks and serialisation
failures are retried whole.

The tables live in the first schema of the connection's search_path; to keep several ledgers in
one database, choose a schema in the URL: `postgresql://host/db?options=-csearch_path%3Dteam_a`.

This module imports psycopg at the top: `commcal.ledger.open_ledger` imports it only for
postgresql:// URLs, so nobody else pays for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
import psycopg.errors

from commcal.errors import LedgerError
from commcal.ledger.db import retry_on_conflict
from commcal.ledger.schema import POSTGRES, migrations
from commcal.ledger.sql import SqlLedger
from commcal.redact import safe_url, url_secrets

T = TypeVar("T")

CONNECT_TIMEOUT_S = 10
RETRIES = 50  # deadlock/serialisation retries before giving up; each is rare
MIGRATION_LOCK_KEY = 0x636F6D6D63616C  # "commcal": advisory lock serialising schema changes
# Code pools are locked with the two-key advisory lock (CODE_POOL_LOCK_CLASS, hashtext(pool)):
# a lock space apart from the one-key MIGRATION_LOCK_KEY. Two pools whose names hash alike
# merely wait for each other.
CODE_POOL_LOCK_CLASS = 0x636F6465  # "code"

# The schema, from the one definition of the tables (schema.py); tests shorten it to make old
# ledgers.
MIGRATIONS: list[list[str]] = migrations(POSTGRES)

_RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


def mask_url(url: str) -> str:
    """The URL without its password (userinfo or `?password=`), for messages."""
    return safe_url(url)


class PostgresLedger(SqlLedger):
    """The ledger in a PostgreSQL database (tables in the first schema of the search_path)."""

    _row_lock = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str, *, read_only: bool = False, create: bool = True) -> None:
        """`read_only`: no migration and no writes (the session is read-only); a database
        without a commcal ledger is `LedgerMissing`, as it is with `create=False`."""
        super().__init__()
        self.where = mask_url(url)
        self.read_only = read_only
        # libpq quotes parts of a URL it cannot read ("unexpected spaces found in ..."), the
        # password too: every error text passes through these.
        self._secrets = url_secrets(url)
        self._sql: dict[str, str] = {}
        try:
            self._conn: psycopg.Connection[tuple[Any, ...]] = psycopg.connect(
                url, autocommit=False, connect_timeout=CONNECT_TIMEOUT_S
            )
        except psycopg.Error as e:
            # Not chained: a traceback would print libpq's text unredacted.
            raise LedgerError(
                self._secrets.redact(f"cannot reach the PostgreSQL ledger at {self.where}: {e}")
            ) from None
        try:
            self._conn.execute("SET TIME ZONE 'UTC'")
            if read_only:
                self._conn.execute("SET default_transaction_read_only = on")
            self._conn.commit()
            if read_only or not create:
                self._check_readable(MIGRATIONS, self.where)
            if not read_only:
                self._migrate(MIGRATIONS, self.where)
        except BaseException:
            self._conn.close()
            raise

    def _durability(self, relaxed: bool) -> None:
        # synchronous_commit off: a commit returns before the server's WAL is flushed; a server
        # crash may lose the last ones, never leave them half-written
        # (https://www.postgresql.org/docs/current/wal-async-commit.html).
        with self._lock:
            self._conn.execute(
                "SET synchronous_commit = off" if relaxed else "RESET synchronous_commit"
            )
            self._conn.commit()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _rollback(self) -> None:
        # If the connection is gone, the server has rolled back for us.
        with contextlib.suppress(psycopg.Error):
            self._conn.rollback()

    def _transaction(self, fn: Callable[[], T], *, write: bool, durable: bool = True) -> T:
        # Durable as SqlLedger requires with the server's default synchronous_commit=on: a
        # commit is flushed to the server's WAL before it is acknowledged. durable=False: SET
        # LOCAL synchronous_commit = off, this transaction only (a server crash may lose it; a
        # client that dies does not).
        def once() -> T:
            try:
                if not durable:
                    self._conn.execute("SET LOCAL synchronous_commit = off")
                result = fn()
                self._conn.commit()
                return result
            except _RETRYABLE:
                self._rollback()
                raise  # retried whole
            except psycopg.Error as e:
                self._rollback()
                raise LedgerError(self._secrets.redact(f"ledger {self.where}: {e}")) from e
            except BaseException:
                self._rollback()
                raise

        def give_up(e: BaseException) -> LedgerError:
            return LedgerError(self._secrets.redact(f"ledger {self.where}: {e}"))

        with self._lock:
            return retry_on_conflict(
                once,
                conflict=lambda e: isinstance(e, _RETRYABLE),
                give_up=give_up,
                first_delay=0.005,
                tries=RETRIES,
            )

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        query = self._sql.get(sql)
        if query is None:
            query = self._sql[sql] = sql.replace("?", "%s")
        cur = self._conn.execute(query.encode(), tuple(params) if params else None)
        return cur.fetchall() if cur.description is not None else []

    def _to_db(self, value: datetime) -> Any:
        return value

    def _from_db(self, value: Any) -> datetime:
        if not isinstance(value, datetime):
            raise LedgerError(f"ledger {self.where}: expected a timestamp, got {value!r}")
        return value.astimezone(UTC)

    def _plus_seconds(self, instant: str, seconds: int) -> tuple[str, list[Any]]:
        return f"({instant} + ? * interval '1 second')", [seconds]

    def _table_exists(self, name: str) -> bool:
        rows = self._execute("SELECT to_regclass(?) IS NOT NULL", (name,))
        return bool(rows[0][0])

    def _migration_lock(self) -> None:
        self._execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")

    def _pool_lock(self, pool: str) -> None:
        # Held to the end of the transaction: overlapping assign_code/reserve_codes calls on one
        # pool run one after another, each seeing the others' committed assignments (READ
        # COMMITTED reads the latest commit per statement). The UNIQUE constraints stay as a
        # second line of defence.
        self._execute(f"SELECT pg_advisory_xact_lock({CODE_POOL_LOCK_CLASS}, hashtext(?))", (pool,))
