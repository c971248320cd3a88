"""The ledger's tables, written once for both dialects.

`migrations(dialect)` is the schema as numbered steps: step N (1-based) moves a ledger from
schema version N - 1 to N, and a ledger records the versions it has applied (db.Database's
migration runner). Never edit a step that has shipped: a ledger that applied it would not see
the change. To add a column, append a step here (`ALTER TABLE ... ADD COLUMN ...`, with
`{d.timestamp}` for a time), and both backends have it; tests/test_ledger_schema.py checks
that SQLite and PostgreSQL end at the same columns.

What differs between the dialects is only in `Dialect`: the type of a time, the type of an
increasing key, and how a table is made append-only (the triggers differ in syntax, so each
dialect writes its own; the tables they guard are named here, once).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    """The few words of DDL that SQLite and PostgreSQL spell differently."""

    name: str
    timestamp: str  # the column type of an instant
    serial_key: str  # an integer primary key that the database counts up
    # (migration step, tables) -> the statements that refuse UPDATE and DELETE on them
    append_only: Callable[[int, Sequence[str]], list[str]]


def _sqlite_append_only(step: int, tables: Sequence[str]) -> list[str]:
    return [
        f"""CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table}
           BEGIN SELECT RAISE(ABORT, '{_append_only_message(table)}'); END"""
        for table in tables
        for op in ("UPDATE", "DELETE")
    ]


def _postgres_append_only(step: int, tables: Sequence[str]) -> list[str]:
    # One trigger function per step (as the ledgers in use have them): step 1's names its table
    # in the message, step 2's serves several tables and takes the name from TG_TABLE_NAME.
    # Later steps reuse step 2's function.
    if step == 1:
        (table,) = tables
        function = f"commcal_{table}_append_only"
        message = _append_only_message(table)
    elif step > 2:
        # Step 2's function takes the table's name from TG_TABLE_NAME: later steps reuse it.
        return [_postgres_append_only_trigger(table, "commcal_append_only") for table in tables]
    else:
        function = "commcal_append_only"
        message = "% is append-only"
    body = f"$$ BEGIN RAISE EXCEPTION '{message}'" + (", TG_TABLE_NAME" if step != 1 else "")
    return [
        f"""CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS
           {body}; END $$""",
        *[_postgres_append_only_trigger(table, function) for table in tables],
    ]


def _postgres_append_only_trigger(table: str, function: str) -> str:
    return f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {table}
               FOR EACH STATEMENT EXECUTE FUNCTION {function}()"""


def _append_only_message(table: str) -> str:
    if table == "attempts":
        return "the attempts history is append-only"
    return f"{table} is append-only"


SQLITE = Dialect(
    name="sqlite",
    # ISO 8601 text, always UTC with microseconds ("2026-11-25T09:00:00.000000+00:00"): one fixed
    # width, so text order is time order and comparisons in SQL are right.
    timestamp="TEXT",
    serial_key="INTEGER PRIMARY KEY AUTOINCREMENT",
    append_only=_sqlite_append_only,
)

POSTGRES = Dialect(
    name="postgresql",
    timestamp="TIMESTAMPTZ",
    serial_key="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    append_only=_postgres_append_only,
)


def migrations(d: Dialect) -> list[list[str]]:
    """The schema for dialect `d`, as numbered steps (the list index + 1 is the version)."""
    ts = d.timestamp
    return [
        # 1: deliveries, their history (append-only, enforced), and worker heartbeats.
        [
            f"""CREATE TABLE deliveries (
            id TEXT PRIMARY KEY,
            calendar TEXT NOT NULL,
            item TEXT NOT NULL,
            channel TEXT NOT NULL,
            recipient TEXT NOT NULL DEFAULT '',
            due_at {ts} NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at {ts},
            last_error TEXT,
            remote_id TEXT,
            url TEXT,
            content_hash TEXT NOT NULL DEFAULT '',
            claimed_by TEXT,
            claim_token TEXT,
            lease_until {ts},
            created_at {ts} NOT NULL,
            updated_at {ts} NOT NULL
        )""",
            "CREATE INDEX deliveries_state ON deliveries (state, next_attempt_at)",
            "CREATE INDEX deliveries_due ON deliveries (due_at)",
            "CREATE INDEX deliveries_calendar_item ON deliveries (calendar, item)",
            f"""CREATE TABLE attempts (
            seq {d.serial_key},
            delivery_id TEXT NOT NULL,
            at {ts} NOT NULL,
            worker TEXT NOT NULL DEFAULT '',
            event TEXT NOT NULL,
            error TEXT,
            remote_id TEXT
        )""",
            "CREATE INDEX attempts_delivery ON attempts (delivery_id, seq)",
            *d.append_only(1, ["attempts"]),
            f"""CREATE TABLE workers (
            name TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            last_seen {ts} NOT NULL,
            info TEXT NOT NULL DEFAULT ''
        )""",
        ],
        # 2: audiences. Suppressions (with an append-only log of changes), single-use codes
        # (each assigned once per pool, to one member; never deleted, so never reused), draws.
        [
            f"""CREATE TABLE suppressions (
            recipient_key TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT '',
            at {ts} NOT NULL
        )""",
            f"""CREATE TABLE suppression_events (
            seq {d.serial_key},
            recipient_key TEXT NOT NULL,
            at {ts} NOT NULL,
            event TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT ''
        )""",
            f"""CREATE TABLE code_assignments (
            pool TEXT NOT NULL,
            code TEXT NOT NULL,
            recipient_key TEXT NOT NULL,
            at {ts} NOT NULL,
            PRIMARY KEY (pool, code),
            UNIQUE (pool, recipient_key)
        )""",
            f"""CREATE TABLE draws (
            seq {d.serial_key},
            item TEXT NOT NULL,
            at {ts} NOT NULL,
            seed TEXT NOT NULL,
            entries_sha256 TEXT NOT NULL,
            entries INTEGER NOT NULL,
            winners TEXT NOT NULL
        )""",
            "CREATE INDEX draws_item ON draws (item, seq)",
            *d.append_only(2, ["suppression_events", "code_assignments", "draws"]),
        ],
        # 3: the ledger's identity: its id and creation time, the project it belongs to, when it
        # took over from an earlier ledger, and how far `publish` has swept it (LedgerMeta).
        ["CREATE TABLE ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"],
        # 4: where the network keeps the idempotency key of a delivery's latest send, when its
        # keys are not global (Channel.idempotency_scope: a Matrix access token's device). A
        # send that may have arrived is repeated only under the same scope.
        ["ALTER TABLE deliveries ADD COLUMN send_scope TEXT"],
        # 5 (engagement storage, commcal.ledger.engagement): what `pull` reads back from the
        # networks. Snapshots of a sent post's counts (append-only: trends are drawn from every
        # one), replies (one row per id; a later pull of the same reply is ignored), and the
        # marks people put on replies (append-only: the latest wins, the history stays).
        # Counts are INTEGER, `extra` is JSON text, `by_team` is 0/1.
        [
            f"""CREATE TABLE snapshots (
            seq {d.serial_key},
            delivery_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            remote_id TEXT NOT NULL,
            taken_at {ts} NOT NULL,
            sent_at {ts},
            likes INTEGER NOT NULL DEFAULT 0,
            reposts INTEGER NOT NULL DEFAULT 0,
            replies INTEGER NOT NULL DEFAULT 0,
            quotes INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL DEFAULT 'ok',
            extra TEXT NOT NULL DEFAULT '{{}}'
        )""",
            "CREATE INDEX snapshots_delivery ON snapshots (delivery_id, taken_at)",
            "CREATE INDEX snapshots_taken ON snapshots (taken_at)",
            f"""CREATE TABLE replies (
            id TEXT PRIMARY KEY,
            delivery_id TEXT NOT NULL,
            channel TEXT NOT NULL,
            remote_id TEXT NOT NULL,
            parent_id TEXT NOT NULL,
            author TEXT NOT NULL,
            text TEXT NOT NULL,
            created_at {ts} NOT NULL,
            url TEXT NOT NULL DEFAULT '',
            by_team INTEGER NOT NULL DEFAULT 0,
            lang TEXT NOT NULL DEFAULT ''
        )""",
            "CREATE INDEX replies_created ON replies (created_at)",
            "CREATE INDEX replies_delivery ON replies (delivery_id)",
            f"""CREATE TABLE reply_marks (
            seq {d.serial_key},
            reply_id TEXT NOT NULL,
            mark TEXT NOT NULL,
            at {ts} NOT NULL
        )""",
            "CREATE INDEX reply_marks_reply ON reply_marks (reply_id, seq)",
            *d.append_only(5, ["snapshots", "reply_marks"]),
        ],
        # 6: what happened to a sent post afterwards (`commcal retract` and
        # `amend`), append-only. Each change of a delivery has a number (1, 2 ...) and two rows:
        # `begun` right before the request goes out, then `done` (`detail` says "already gone"
        # when the network no longer had it) or `refused`. A `begun` row alone is a change that
        # was interrupted after its request may have left: the next retract/amend resumes it.
        # `text` is an amendment's new text: the "before" of the next amend's diff.
        [
            f"""CREATE TABLE post_changes (
            seq {d.serial_key},
            delivery_id TEXT NOT NULL,
            change INTEGER NOT NULL,
            action TEXT NOT NULL,
            phase TEXT NOT NULL,
            at {ts} NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            remote_id TEXT,
            url TEXT,
            content_hash TEXT NOT NULL DEFAULT '',
            text TEXT
        )""",
            "CREATE INDEX post_changes_delivery ON post_changes (delivery_id, seq)",
            *d.append_only(6, ["post_changes"]),
        ],
        # 7: the network's reference for each uploaded file of a delivery (Mastodon media
        # id, Bluesky blob, Matrix mxc:// URI), recorded before the post: a send resumed after
        # a crash reuses it. Append-only: a re-upload (the network forgot a stale one) is a new
        # row, and the latest row of a (delivery, position) wins. `digest` names the file's
        # content, so an edited image is uploaded again instead of posting the old one.
        [
            f"""CREATE TABLE media_uploads (
            seq {d.serial_key},
            delivery_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            digest TEXT NOT NULL,
            ref TEXT NOT NULL,
            uploaded_at {ts} NOT NULL
        )""",
            "CREATE INDEX media_uploads_delivery ON media_uploads (delivery_id, seq)",
            *d.append_only(7, ["media_uploads"]),
        ],
    ]
