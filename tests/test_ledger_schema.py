"""The ledger's tables are written once (commcal/ledger/schema.py): SQLite and PostgreSQL end at
the same tables, columns, keys, defaults and indexes, for a new ledger and for an old one that
was upgraded. Read from the real databases (PRAGMA table_info, information_schema)."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from test_ledger import postgres_db  # noqa: F401  (a fixture)

from commcal.ledger import open_ledger
from commcal.ledger import postgres as postgres_backend
from commcal.ledger import sqlite as sqlite_backend
from commcal.ledger.schema import POSTGRES, SQLITE, migrations

Shape = dict[str, Any]

# PostgreSQL's names for the types, in SQLite's spelling (a time is TEXT there: schema.SQLITE).
_PG_TYPES = {
    "text": "TEXT",
    "integer": "INTEGER",
    "bigint": "INTEGER",
    "timestamp with time zone": SQLITE.timestamp,
}


def _sqlite_shape(path: Path) -> Shape:
    conn = sqlite3.connect(path)
    try:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        columns = {
            t: [
                # (name, type, not null, part of the primary key, default); a primary key
                # is NOT NULL in PostgreSQL, and in SQLite only by our code (a SQLite quirk)
                (name, typ.upper(), bool(notnull or pk), bool(pk), default)
                for _, name, typ, notnull, default, pk in conn.execute(f"PRAGMA table_info({t})")
            ]
            for t in tables
        }
        indexes = sorted(
            (r[0], r[1])
            for r in conn.execute(
                "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
            )
        )
        unique = sorted(
            (t, tuple(c[2] for c in conn.execute(f"PRAGMA index_info({idx[1]})")))
            for t in tables
            for idx in conn.execute(f"PRAGMA index_list({t})")
            if idx[3] == "u"  # a UNIQUE constraint in the table's definition
        )
    finally:
        conn.close()
    return {"tables": tables, "columns": columns, "indexes": indexes, "unique": unique}


def _pg_default(default: str | None) -> str | None:
    if default is None:
        return None
    return default.split("::", 1)[0]  # "''::text" -> "''"


def _pg_shape(url: str) -> Shape:
    import psycopg

    with psycopg.connect(url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema() ORDER BY table_name"
            )
        ]
        pk = {
            (r[0], r[1])
            for r in conn.execute(
                "SELECT k.table_name, k.column_name FROM information_schema.key_column_usage k "
                "JOIN information_schema.table_constraints c "
                "ON c.constraint_name = k.constraint_name AND c.table_schema = k.table_schema "
                "WHERE c.constraint_type = 'PRIMARY KEY' AND k.table_schema = current_schema()"
            )
        }
        columns = {
            t: [
                (name, _PG_TYPES[typ], nullable == "NO", (t, name) in pk, _pg_default(default))
                for name, typ, nullable, default in conn.execute(
                    "SELECT column_name, data_type, is_nullable, column_default "
                    "FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = %s "
                    "ORDER BY ordinal_position",
                    (t,),
                )
            ]
            for t in tables
        }
        indexes = sorted(
            (r[0], r[1])
            for r in conn.execute(
                "SELECT indexname, tablename FROM pg_indexes "
                "WHERE schemaname = current_schema() "
                "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
            )
        )
        unique = sorted(
            (r[0], tuple(r[1]))
            for r in conn.execute(
                "SELECT c.conrelid::regclass::text, "
                "array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, i) "
                "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i) "
                "FROM pg_constraint c JOIN pg_namespace s ON s.oid = c.connamespace "
                "WHERE c.contype = 'u' AND s.nspname = current_schema()"
            )
        )
    return {"tables": tables, "columns": columns, "indexes": indexes, "unique": unique}


def _pg_url(db_url: str) -> str:
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())
    return f"{db_url}?options={quote(f'-csearch_path={schema}')}"


@pytest.mark.parametrize("start", ["new", "version 1"])
def test_sqlite_and_postgresql_end_at_the_same_tables_and_columns(
    start: str,
    tmp_path: Path,
    postgres_db: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sqlite_path = tmp_path / "ledger.db"
    sqlite_url = f"sqlite:///{sqlite_path}"
    pg_url = _pg_url(postgres_db)
    if start == "version 1":  # ledgers made by a commcal that knew only the first step
        with monkeypatch.context() as m:
            m.setattr(sqlite_backend, "MIGRATIONS", sqlite_backend.MIGRATIONS[:1])
            m.setattr(postgres_backend, "MIGRATIONS", postgres_backend.MIGRATIONS[:1])
            open_ledger(sqlite_url).close()
            open_ledger(pg_url).close()
    for url in (sqlite_url, pg_url):
        with open_ledger(url) as ledger:
            assert ledger.schema_version() == len(migrations(SQLITE))

    lite, pg = _sqlite_shape(sqlite_path), _pg_shape(pg_url)
    assert lite["tables"] == pg["tables"]
    for table in lite["tables"]:
        assert lite["columns"][table] == pg["columns"][table], table
    assert lite["indexes"] == pg["indexes"]
    assert lite["unique"] == pg["unique"]
    # What this compares is really there (not two empty lists agreeing).
    assert "send_scope" in [c[0] for c in lite["columns"]["deliveries"]]
    assert ("draws_item", "draws") in lite["indexes"]
    assert ("code_assignments", ("pool", "recipient_key")) in lite["unique"]


def test_both_dialects_have_the_same_steps() -> None:
    # The version numbers of the steps are what ledgers in use have recorded: same count, and
    # every step is there for both dialects.
    lite, pg = migrations(SQLITE), migrations(POSTGRES)
    assert (
        len(lite) == len(pg) == len(sqlite_backend.MIGRATIONS) == len(postgres_backend.MIGRATIONS)
    )
    assert all(a and b for a, b in zip(lite, pg, strict=True))
