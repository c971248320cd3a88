"""The ledger in PostgreSQL: for several hosts publishing from one calendar repository.

Same SQL and semantics as SQLite (see `base.SqlLedger`); what differs is locking. A claim first
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
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
import psycopg.errors

from commcal.errors import LedgerError
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

MIGRATIONS: list[list[str]] = [
    # 1: deliveries, their history (append-only, enforced), and worker heartbeats.
    [
        """CREATE TABLE deliveries (
            id TEXT PRIMARY KEY,
            calendar TEXT NOT NULL,
            item TEXT NOT NULL,
            channel TEXT NOT NULL,
            recipient TEXT NOT NULL DEFAULT '',
            due_at TIMESTAMPTZ NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TIMESTAMPTZ,
            last_error TEXT,
            remote_id TEXT,
            url TEXT,
            content_hash TEXT NOT NULL DEFAULT '',
            claimed_by TEXT,
            claim_token TEXT,
            lease_until TIMESTAMPTZ,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        )""",
        "CREATE INDEX deliveries_state ON deliveries (state, next_attempt_at)",
        "CREATE INDEX deliveries_due ON deliveries (due_at)",
        "CREATE INDEX deliveries_calendar_item ON deliveries (calendar, item)",
        """CREATE TABLE attempts (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            delivery_id TEXT NOT NULL,
            at TIMESTAMPTZ NOT NULL,
            worker TEXT NOT NULL DEFAULT '',
            event TEXT NOT NULL,
            error TEXT,
            remote_id TEXT
        )""",
        "CREATE INDEX attempts_delivery ON attempts (delivery_id, seq)",
        """CREATE FUNCTION commcal_attempts_append_only() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION 'the attempts history is append-only'; END $$""",
        """CREATE TRIGGER attempts_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON attempts
           FOR EACH STATEMENT EXECUTE FUNCTION commcal_attempts_append_only()""",
        """CREATE TABLE workers (
            name TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            last_seen TIMESTAMPTZ NOT NULL,
            info TEXT NOT NULL DEFAULT ''
        )""",
    ],
    # 2: audiences. Suppressions (with an append-only log of changes), single-use codes (each
    # assigned once per pool, to one member; never deleted, so never reused), contest draws.
    [
        """CREATE TABLE suppressions (
            recipient_key TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            at TIMESTAMPTZ NOT NULL
        )""",
        """CREATE TABLE suppression_events (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            recipient_key TEXT NOT NULL,
            at TIMESTAMPTZ NOT NULL,
            event TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE code_assignments (
            pool TEXT NOT NULL,
            code TEXT NOT NULL,
            recipient_key TEXT NOT NULL,
            at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (pool, code),
            UNIQUE (pool, recipient_key)
        )""",
        """CREATE TABLE draws (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            item TEXT NOT NULL,
            at TIMESTAMPTZ NOT NULL,
            seed TEXT NOT NULL,
            entries_sha256 TEXT NOT NULL,
            entries INTEGER NOT NULL,
            winners TEXT NOT NULL
        )""",
        "CREATE INDEX draws_item ON draws (item, seq)",
        """CREATE FUNCTION commcal_append_only() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$""",
        *[
            f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {table}
               FOR EACH STATEMENT EXECUTE FUNCTION commcal_append_only()"""
            for table in ("suppression_events", "code_assignments", "draws")
        ],
    ],
    # 3: the ledger's identity: its id and creation time, the project it belongs to, when it
    # took over from an earlier ledger, and how far `publish` has swept it (base.LedgerMeta).
    ["CREATE TABLE ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"],
    # 4: where the network keeps the idempotency key of a delivery's latest send, when its keys
    # are not global (Channel.idempotency_scope: a Matrix access token's device). A send that
    # may have arrived is repeated only under the same scope.
    ["ALTER TABLE deliveries ADD COLUMN send_scope TEXT"],
]

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

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _rollback(self) -> None:
        # If the connection is gone, the server has rolled back for us.
        with contextlib.suppress(psycopg.Error):
            self._conn.rollback()

    def _transaction(self, fn: Callable[[], T], *, write: bool) -> T:
        # Durable as SqlLedger requires with the server's default synchronous_commit=on: a
        # commit is flushed to the server's WAL before it is acknowledged.
        delay = 0.005
        with self._lock:
            for attempt in range(RETRIES + 1):
                try:
                    result = fn()
                    self._conn.commit()
                    return result
                except _RETRYABLE as e:
                    self._rollback()
                    if attempt == RETRIES:
                        raise LedgerError(self._secrets.redact(f"ledger {self.where}: {e}")) from e
                except psycopg.Error as e:
                    self._rollback()
                    raise LedgerError(self._secrets.redact(f"ledger {self.where}: {e}")) from e
                except BaseException:
                    self._rollback()
                    raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.2)
        raise AssertionError("unreachable")  # pragma: no cover

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
