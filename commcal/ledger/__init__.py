"""The ledger: where every delivery's state and history is kept (see `base` for the protocol).

model     states, records and values; the pure claim rules (`claim_action`); recipient keys
base      the claim protocol the publisher relies on (`ClaimLedger`), documented once
sql       the one implementation (`SqlLedger`, exported as `Ledger`)
members   the audience store in the same database: suppressions, codes, draws
db        one connection, the dialect hooks, the lock-conflict retry, the migration runner
schema    the tables, written once for both dialects
sqlite, postgres   connection and dialect only

`open_ledger(url)` picks the backend from the URL. Importing this package is cheap: the backends
(and psycopg) are imported only when a ledger of that kind is opened.
"""

from __future__ import annotations

from pathlib import Path

from commcal.errors import LedgerError
from commcal.ledger.model import (
    CAUGHT_UP_PREFIX,
    HELD,
    INTERRUPTED_WHILE_SENDING,
    TERMINAL,
    Attempt,
    Claim,
    DeliveryRecord,
    Draw,
    DrawRecord,
    DueDelivery,
    LedgerMeta,
    LedgerMissing,
    MaybeSent,
    Sent,
    StaleClaim,
    State,
    Suppression,
    WorkerInfo,
    mask_address,
    recipient_key,
)
from commcal.ledger.sql import Ledger

__all__ = [
    "CAUGHT_UP_PREFIX",
    "HELD",
    "INTERRUPTED_WHILE_SENDING",
    "TERMINAL",
    "Attempt",
    "Claim",
    "DeliveryRecord",
    "Draw",
    "DrawRecord",
    "DueDelivery",
    "Ledger",
    "LedgerMeta",
    "LedgerMissing",
    "MaybeSent",
    "Sent",
    "StaleClaim",
    "State",
    "Suppression",
    "WorkerInfo",
    "mask_address",
    "open_ledger",
    "recipient_key",
    "sqlite_path",
]

ACCEPTED = (
    "sqlite:///relative/path.db (relative to the project), sqlite:////absolute/path.db, "
    "or postgresql://user@host:port/database"
)


def sqlite_path(url: str, project_dir: Path | None = None) -> Path | None:
    """The file a sqlite:/// URL names (None for :memory:), relative paths under project_dir."""
    rest = url[len("sqlite:///") :]
    if not rest:
        raise LedgerError(f"the ledger URL {url!r} names no file; use {ACCEPTED}")
    if rest == ":memory:":
        return None
    path = Path(rest)
    if not path.is_absolute():
        path = (project_dir or Path.cwd()) / path
    return path


def open_ledger(
    url: str,
    *,
    project_dir: Path | None = None,
    create: bool = True,
    read_only: bool = False,
) -> Ledger:
    """Open (creating and migrating as needed) the ledger a URL names.

    `create=False`: a ledger that does not exist yet is `LedgerMissing`, not created (commands
    that only look at or change what a ledger holds). `read_only=True` also writes nothing at
    all, not even a migration (`status`, a dry run).

    Raises LedgerError for an unknown scheme, an unreachable database, a missing psycopg, or a
    schema newer than this code.
    """
    if url.startswith("sqlite:///"):
        from commcal.ledger.sqlite import SqliteLedger

        path = sqlite_path(url, project_dir)
        if path is None:
            if read_only or not create:
                raise LedgerMissing(f"{url} names a new, empty ledger in memory")
            return SqliteLedger(":memory:")
        if read_only:
            return SqliteLedger(path, read_only=True)
        if not create and not path.is_file():
            raise LedgerMissing(
                f"no ledger at {path}: check state: in commcal.yaml, --state and "
                "COMMCAL_STATE (the first `commcal publish` creates the ledger)"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LedgerError(f"cannot create the folder for the ledger {path}: {e}") from e
        return SqliteLedger(path)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from commcal.ledger.postgres import PostgresLedger
        except ImportError as e:
            if not (e.name or "").startswith("psycopg"):
                raise
            raise LedgerError(
                "a PostgreSQL ledger needs psycopg: pip install 'commcal[postgres]'"
            ) from e
        return PostgresLedger(url, read_only=read_only, create=create)
    # Only the scheme is shown: the rest of a mistyped URL may hold a password.
    scheme = url.split(":", 1)[0] if ":" in url else ""
    if not scheme.replace("+", "").replace("-", "").replace(".", "").isalnum():
        raise LedgerError(f"the ledger setting is not a URL: use {ACCEPTED}")
    raise LedgerError(f"unsupported ledger URL scheme {scheme!r}: use {ACCEPTED}")
