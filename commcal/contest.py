"""Reproducible, uniform winner draws from a CSV of contest entries.

Anyone holding the entries file and the published seed can redo the draw and get the same winners::

    result = draw(Path("entries.csv"), winners=3, seed="2025-06-01 ATHEX close 1432.17")

Steps, each chosen so that the draw is fair and checkable:

1. Read the identity column (`column`, else `email`, else `handle`, else the first column).
2. Normalise identities (Unicode NFC, case-folded, whitespace collapsed) and drop repeats, keeping
   the first row: one person, one chance, however many times they entered.
3. Sort the unique identities, so that the order of the file does not matter, and hash them:
   `entries_sha256` is SHA-256 of the sorted identities, each followed by a newline, in UTF-8.
4. `key = SHA-256(seed + entries_sha256)`; block `i` of the random stream is
   `SHA-256(key + i as 8 bytes big-endian)` read as a 256-bit big-endian integer.
5. Partial Fisher-Yates over the sorted list: for `i` in `0..winners-1`, swap position `i` with
   `i + r`, where `r` is uniform below `n - i` by rejection sampling (exactly uniform, no modulo
   bias). The first `winners` positions, in order, are the winners.

Step 4 and 5 use only SHA-256 rather than `random.Random`, whose `sample` algorithm Python may
change between versions: a draw published today must come out the same on any later Python and
can be re-implemented in a few lines in any language.
"""

from __future__ import annotations

import csv
import hashlib
import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from commcal.errors import CommcalError

METHOD = "commcal-draw/v1: sha256 counter stream, rejection sampling, partial Fisher-Yates"

# Header names taken as the identity column, in this order, when `column` is not given.
# "email address" is what Google Forms and Microsoft Forms export.
_IDENTITY_COLUMNS = ("email", "email address", "e-mail", "handle")
# Salted like recipient keys, so a key cannot be looked up in a table of hashed handles.
_ENTRY_KEY_PREFIX = b"commcal-entry-v1:"


class DrawError(CommcalError):
    """The entries file cannot give a fair draw (missing, empty, too few entries, no column)."""


@dataclass(frozen=True)
class Draw:
    """The result of a draw, with everything needed to publish and re-check it."""

    entries: int  # unique entries that took part
    duplicates_removed: int  # rows dropped because the same identity entered before
    entries_sha256: str  # hex SHA-256 of the sorted, normalised unique identities
    seed: str
    winners: tuple[str, ...]  # as written in the file (first row of each person), in draw order
    column: str  # the identity column used
    method: str = METHOD
    # `entry_key` of each winner, in draw order: what the ledger records, never the address.
    winner_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Entry:
    identity: str  # normalised: what makes two rows the same person
    display: str  # as written (stripped), for the announcement
    line: int


def normalise(identity: str) -> str:
    """The form two entries are compared in: NFC, case-folded, inner whitespace collapsed."""
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", identity).casefold())
    return " ".join(folded.split())


def entry_key(identity: str) -> str:
    """16 hex characters naming an entrant in the ledger instead of their address or handle.

    An address gets its recipient key (`commcal.audience.recipient_key`), so a winner who is
    also a member has the same key in both; any other identity (a handle) a salted hash of its
    normalised form. The entries file maps a key back to the person (`winners_in`).
    """
    from commcal.audience import normalise_email, recipient_key

    address = normalise_email(identity)
    if address is not None:
        return recipient_key(address)
    digest = hashlib.sha256(_ENTRY_KEY_PREFIX + normalise(identity).encode("utf-8", "replace"))
    return digest.hexdigest()[:16]


def winners_in(
    entries_csv: Path, keys: Sequence[str], *, column: str | None = None
) -> list[str | None]:
    """Each key's entrant as written in `entries_csv` (None when the file no longer has them)."""
    _, rows = _read_entries(entries_csv, column)
    wanted = set(keys)
    found: dict[str, str] = {}
    for entry in rows:
        key = entry_key(entry.display)
        if key in wanted:
            found.setdefault(key, entry.display)
    return [found.get(key) for key in keys]


def draw(entries_csv: Path, winners: int, seed: str, *, column: str | None = None) -> Draw:
    """Draw `winners` distinct entries from `entries_csv`, reproducibly from `seed`."""
    if winners < 1:
        raise DrawError(f"the number of winners must be at least 1, not {winners}")
    if not seed.strip():
        raise DrawError("the seed is empty; publish a seed before the draw (e.g. a future date)")
    used_column, rows = _read_entries(entries_csv, column)
    unique: dict[str, _Entry] = {}
    for entry in rows:
        unique.setdefault(entry.identity, entry)
    if len(unique) < winners:
        raise DrawError(
            f"{entries_csv}: {len(unique)} unique entr{'y' if len(unique) == 1 else 'ies'} "
            f"in column {used_column!r}, fewer than the {winners} winners asked for"
        )
    ordered = sorted(unique.values(), key=lambda e: e.identity)
    entries_sha256 = hashlib.sha256(
        "".join(e.identity + "\n" for e in ordered).encode("utf-8")
    ).hexdigest()
    picked = _pick(len(ordered), winners, hashlib.sha256((seed + entries_sha256).encode()).digest())
    return Draw(
        entries=len(ordered),
        duplicates_removed=len(rows) - len(unique),
        entries_sha256=entries_sha256,
        seed=seed,
        winners=tuple(ordered[i].display for i in picked),
        column=used_column,
        winner_keys=tuple(entry_key(ordered[i].display) for i in picked),
    )


def _pick(n: int, k: int, key: bytes) -> list[int]:
    """Indices of `k` of `range(n)`, without replacement, from the SHA-256 stream of `key`."""
    counter = 0

    def below(bound: int) -> int:
        nonlocal counter
        # Largest multiple of `bound` within 256 bits: values above it would favour small results.
        limit = (1 << 256) - (1 << 256) % bound
        while True:
            block = hashlib.sha256(key + counter.to_bytes(8, "big")).digest()
            counter += 1
            value = int.from_bytes(block, "big")
            if value < limit:
                return value % bound

    pool = list(range(n))
    for i in range(k):
        j = i + below(n - i)
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:k]


def _read_entries(path: Path, column: str | None) -> tuple[str, list[_Entry]]:
    try:
        # utf-8-sig: spreadsheets often start a CSV with a byte order mark.
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DrawError(f"{path}: no such entries file") from None
    except IsADirectoryError:
        raise DrawError(f"{path}: is a directory, not an entries file") from None
    except UnicodeDecodeError as exc:
        line = _line_of(path, exc.start)
        raise DrawError(
            f"{path}:{line}: not UTF-8 text (save the spreadsheet as 'CSV UTF-8')"
        ) from None
    except OSError as exc:
        raise DrawError(f"{path}: cannot read: {exc.strerror}") from None
    if not text.strip():
        raise DrawError(f"{path}: the file is empty; expected a header row and one row per entry")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    header = next((row for row in reader if any(cell.strip() for cell in row)), [])
    header = [name.strip() for name in header]
    index = _identity_index(path, header, column)
    entries: list[_Entry] = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue  # blank lines and ",,," rows that spreadsheets leave at the end
        value = row[index].strip() if index < len(row) else ""
        if not value:
            raise DrawError(
                f"{path}:{reader.line_num}: no value in column {header[index]!r}; "
                "fill it in or delete the row, so that no entry is dropped silently"
            )
        entries.append(_Entry(normalise(value), " ".join(value.split()), reader.line_num))
    if not entries:
        raise DrawError(f"{path}: no entries below the header row")
    return header[index], entries


def _delimiter(text: str) -> str:
    """Comma, semicolon (spreadsheets in Greek and other comma-decimal locales) or tab."""
    header = text.lstrip().splitlines()[0]
    delimiter = max(",;\t", key=header.count)
    return delimiter if header.count(delimiter) else ","


def _identity_index(path: Path, header: list[str], column: str | None) -> int:
    lowered = [name.casefold() for name in header]
    if column is not None:
        if column.strip().casefold() in lowered:
            return lowered.index(column.strip().casefold())
        raise DrawError(
            f"{path}:1: no column {column!r}; the columns are "
            + ", ".join(repr(name) for name in header)
        )
    for name in _IDENTITY_COLUMNS:
        if name in lowered:
            return lowered.index(name)
    if not header[0]:
        raise DrawError(f"{path}:1: the first column has no name; name the identity column")
    return 0


def _line_of(path: Path, offset: int) -> int:
    """1-based line of byte `offset` in `path` (for pointing at undecodable bytes)."""
    try:
        return path.read_bytes()[:offset].count(b"\n") + 1
    except OSError:
        return 0
