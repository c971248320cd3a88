"""Audiences: the people a newsletter, offer or survey goes to, read from `audiences/NAME.csv|yaml`.

Reading is streamed: a CSV audience is read row by row and never held as a list, so a 50,000-row
file costs the memory of one row plus the set of addresses seen (for duplicates). The rule for
bad input (docs/audiences.md): a problem with the *file* (missing, ambiguous, empty, no `email`
column, unreadable header) is an error and nothing is read; a problem with a *row* (bad address,
duplicate, unknown locale or zone, bad points or date) is a warning and that row is skipped, so one
bad row never stops the others. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import hashlib
import io
import itertools
import re
from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

from commcal.calendar.fields import Reader, did_you_mean
from commcal.calendar.yamlnodes import Node, load
from commcal.errors import Pos, Problem, ProblemsFound
from commcal.timeutil import parse_date, zone, zone_suggestions

AUDIENCE_DIR = "audiences"
SUFFIXES = (".csv", ".yaml", ".yml")
TEXT_COLUMNS = ("email", "name", "locale", "timezone", "tier")
KNOWN_COLUMNS = (*TEXT_COLUMNS, "points", "tags", "joined")
# Salted so a recipient key cannot be looked up in a table of hashed addresses made elsewhere.
_KEY_PREFIX = b"commcal-recipient-v1:"
_TAG_SPLIT = re.compile(r"[|;,]")
_WHOLE = re.compile(
    r"^[-+]?\d{1,18}$"
)  # 18 digits: beyond is a typo, and int() of huge text is slow
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_BOM = b"\xef\xbb\xbf"


# -- members --------------------------------------------------------------------------------------


class AudienceBroken(ProblemsFound):
    """An audience file has an error: nothing may be sent to that audience until it is fixed.

    Its text names each problem with file:line, since a command shows only this text."""

    def __str__(self) -> str:
        shown = [str(p) for p in self.problems[:5]]
        if len(self.problems) > 5:
            shown.append(f"... and {len(self.problems) - 5} more (see `commcal validate`)")
        return "\n".join(shown)


class AddressError(ValueError):
    """Not an e-mail address; the message says why (email-validator's own words)."""


_MAILTO = re.compile(r"^mailto:", re.IGNORECASE)


def email_address(text: str) -> str:
    """The one normal form of an address, for members, suppressions, imports and keys alike.

    Peels what mail clients and bounce reports wrap around an address (surrounding space,
    `<...>`, `mailto:`, a trailing `;` or `,`, a display name as in `Maya <maya@example.org>`),
    then checks the rest with email-validator (syntax only: no DNS lookup). The result is its
    normalised form: the local part as written (Unicode NFC; mail servers may treat case in it
    as significant, so it is kept), the domain lower-cased. A domain written in punycode stays
    ASCII, so a server without SMTPUTF8 can still take it. Raises AddressError saying why not.
    """
    address = text.strip().rstrip(";,").strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    address = _MAILTO.sub("", address).strip()
    if address.startswith("<") and address.endswith(">"):  # mailto:<...>
        address = address[1:-1].strip()
    if not address:
        raise AddressError("there is no address")
    local, at, domain = address.rpartition("@")
    if (
        at
        and len(local) <= _MAX_LOCAL
        and len(address) <= _MAX_ADDRESS
        and _PLAIN_LOCAL.fullmatch(local)
        and (checked := _checked_domain(domain)) is not None
    ):
        # The everyday case, without running the whole validator again for each member: a
        # plain dot-atom before the @ (which email-validator keeps as written) and a domain it
        # has already accepted. tests/test_addresses.py checks this gives its very answers.
        return f"{local}@{checked}"
    return _validated(address)


# RFC 5321 4.5.3.1: 64 octets before the @; email-validator's limit for a whole address.
_MAX_LOCAL = 64
_MAX_ADDRESS = 254
# An RFC 5322 dot-atom of ASCII characters: the local part of nearly every real address.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


@lru_cache(maxsize=4096)
def _checked_domain(domain: str) -> str | None:
    """An ASCII domain lower-cased if email-validator accepts it, else None. Cached: a list of
    50,000 members has a few hundred domains, and checking one costs most of a validation."""
    if not domain.isascii():
        return None
    try:
        return _validated(f"a@{domain}").partition("@")[2]
    except AddressError:
        return None


def _validated(address: str) -> str:
    """email-validator's normal form of `address` (see `email_address`), or AddressError."""
    from email_validator import EmailNotValidError, validate_email

    try:
        info = validate_email(address, check_deliverability=False, allow_display_name=True)
    except EmailNotValidError as exc:
        raise AddressError(str(exc)) from None
    written_domain = address.rpartition("@")[2].rstrip(">").strip()
    domain = info.ascii_domain if written_domain.isascii() and info.ascii_domain else info.domain
    return f"{info.local_part}@{domain}"


def normalise_email(text: str) -> str | None:
    """`email_address(text)`, or None when it is not an address."""
    try:
        return email_address(text)
    except AddressError:
        return None


def recipient_key(email: str) -> str:
    """16 hex characters naming a recipient in delivery ids and the ledger, instead of the address.

    The same for every spelling of one address: any case, `<...>`, `mailto:`, a domain in
    punycode or in Unicode. For an address already in normal form and plain ASCII it is the
    key earlier versions made (SHA-256 of the lower-cased address), so ledgers stay valid.
    """
    normal = normalise_email(email)
    return _key_of(normal) if normal is not None else _hash(email.strip())


def _key_of(normal: str) -> str:
    """The key of an address already in `email_address` form."""
    local, _, domain = normal.rpartition("@")
    if "xn--" in domain.lower():  # punycode and Unicode spellings of a domain are one person
        import idna

        with contextlib.suppress(idna.IDNAError):
            domain = idna.decode(domain)
    return _hash(f"{local}@{domain}")


def _hash(text: str) -> str:
    digest = hashlib.sha256(_KEY_PREFIX + text.lower().encode("utf-8", "replace"))
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Member:
    """One person in an audience; `row` is the line of the file they were read from."""

    email: str
    name: str = ""
    locale: str = ""
    timezone: str = ""
    tier: str = ""
    points: int | None = None
    tags: frozenset[str] = frozenset()
    joined: date | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)
    row: int = 0

    @functools.cached_property
    def key(self) -> str:
        # Read for the delivery id, the suppression check and every token: hash once. The
        # address is already in normal form (read through `email_address`).
        return _key_of(self.email)

    @property
    def first_name(self) -> str:
        parts = self.name.split()
        return parts[0] if parts else ""

    def template_vars(self) -> dict[str, Any]:
        """What templates see as `member`; an extra column named like a derived one (first_name)
        wins over the derived value, since the person who wrote it knows better."""
        values: dict[str, Any] = {
            "email": self.email,
            "name": self.name,
            "first_name": self.first_name,
            "locale": self.locale,
            "timezone": self.timezone,
            "tier": self.tier,
            "points": self.points,
            "tags": sorted(self.tags),
            "joined": self.joined,
        }
        values.update(self.vars)
        return values

    def column(self, name: str) -> Any:
        """The value a segment condition on `name` looks at."""
        if name in KNOWN_COLUMNS:
            return getattr(self, name)
        return self.vars.get(name)


# -- segments (`where:`) --------------------------------------------------------------------------

_NUMBER_OPS = ("==", "!=", ">", ">=", "<", "<=")
_DATE_OPS = ("before", "after")
_TAG_OPS = ("has", "has_any", "has_all")
_TEXT_OPS = ("==", "!=", "in", "not_in")
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: bool(a == b),
    "!=": lambda a, b: bool(a != b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
    "before": lambda a, b: bool(a < b),
    "after": lambda a, b: bool(a > b),
}


@dataclass(frozen=True)
class Condition:
    """One `column: test` of a segment. `op` is one of the operators above, or `in`."""

    column: str
    op: str
    value: Any  # str, int, date, or a frozenset of str for in / not_in / has_any / has_all
    pos: Pos = field(default_factory=lambda: Pos(""))

    def matches(self, member: Member) -> bool:
        actual = member.column(self.column)
        if self.op == "in_values":  # {points: [10, 20]}, {joined: [dates]}: typed membership
            return actual in self.value
        if self.column == "tags":
            tags: frozenset[str] = actual
            if self.op == "has":
                return self.value in tags
            if self.op == "has_any":
                return bool(tags & self.value)
            return bool(self.value <= tags)  # has_all
        if self.column in ("points", "joined"):
            return actual is not None and _COMPARE[self.op](actual, self.value)
        if isinstance(self.value, int):  # an extra column compared with a number: compare numbers
            number = _as_number(actual)
            return number is not None and _COMPARE[self.op](number, self.value)
        text = _cell_text(actual) or ""
        if self.op == "in":
            return any(_text_equal(self.column, text, v) for v in self.value)
        if self.op == "not_in":
            return not any(_text_equal(self.column, text, v) for v in self.value)
        equal = _text_equal(self.column, text, self.value)
        return equal if self.op == "==" else not equal


def _text_equal(column: str, actual: str, wanted: str) -> bool:
    if column == "email":  # the same person however the condition spells the address
        return bool(actual) and _key_of(actual) == _wanted_key(wanted)
    if column == "locale":  # `el` matches el, el_GR and el-CY: a language names its regions too
        a, w = actual.replace("-", "_").lower(), wanted.replace("-", "_").lower()
        return a == w or a.startswith(w + "_")
    return actual == wanted


@lru_cache(maxsize=256)
def _wanted_key(address: str) -> str:
    return recipient_key(address)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class Where:
    """A segment: conditions that must all hold."""

    conditions: tuple[Condition, ...] = ()

    def matches(self, member: Member) -> bool:
        return all(condition.matches(member) for condition in self.conditions)

    @property
    def columns(self) -> frozenset[str]:
        """The columns named, so a caller can check extra ones against the audience's header."""
        return frozenset(c.column for c in self.conditions)


def parse_where(reader: Reader, node: Node) -> Where | None:
    """A `where:` mapping; None (with problems in `reader`) when any part of it is wrong."""
    errors_before = _error_count(reader)
    if not reader.mapping(node, "where", hint="e.g. where: {tier: gold, points: {'>=': 100}}"):
        return None
    conditions: list[Condition] = []
    for key, value in node.entries:
        column = key.text
        if column not in KNOWN_COLUMNS:
            close = did_you_mean(column, KNOWN_COLUMNS)
            if close.startswith("did you mean"):
                reader.problem(
                    key.pos,
                    f"where: {column!r} is not a standard column, so it is "
                    "matched against an extra column of that name",
                    close,
                    "warning",
                )
        conditions.extend(_read_condition(reader, column, value))
    if _error_count(reader) > errors_before:
        return None
    return Where(tuple(conditions))


def _error_count(reader: Reader) -> int:
    return sum(1 for p in reader.problems if p.severity == "error")


def _read_condition(reader: Reader, column: str, node: Node) -> list[Condition]:
    what = f"where.{column}"
    if node.kind == "map":
        out: list[Condition] = []
        allowed = _ops_for(column)
        for op_node, operand in node.entries:
            op = op_node.text
            if op not in allowed:
                reader.problem(
                    op_node.pos,
                    f"{what}: unknown operator {op!r} for {column}",
                    _op_hint(column, op, allowed),
                )
                continue
            condition = _read_op(reader, column, op, operand, f"{what}.{op}")
            if condition is not None:
                out.append(condition)
        if not node.entries:
            reader.problem(
                node.pos,
                f"{what}: the mapping has no operator",
                "e.g. {'>=': 100}, {has: volunteer} or {before: 2026-01-01}",
            )
        return out
    if node.kind == "seq":
        if column in ("points", "joined"):
            values = [
                v
                for v in (_operand(reader, column, item, what) for item in node.items)
                if v is not None
            ]
            return (
                [Condition(column, "in_values", frozenset(values), node.pos)]
                if len(values) == len(node.items)
                else []
            )
        op = "has_any" if column == "tags" else "in"
        condition = _read_op(reader, column, op, node, what)
        return [condition] if condition is not None else []
    op = "has" if column == "tags" else "=="
    condition = _read_op(reader, column, op, node, what)
    return [condition] if condition is not None else []


def _ops_for(column: str) -> tuple[str, ...]:
    if column == "points":
        return _NUMBER_OPS
    if column == "joined":
        return _DATE_OPS
    if column == "tags":
        return _TAG_OPS
    if column in KNOWN_COLUMNS:
        return _TEXT_OPS
    return tuple(dict.fromkeys((*_TEXT_OPS, *_NUMBER_OPS)))


def _op_hint(column: str, op: str, allowed: tuple[str, ...]) -> str:
    owners = [c for c in ("points", "joined", "tags") if op in _ops_for(c)]
    if owners and column not in owners:
        return f"{op!r} works on {owners[0]}; {column} takes " + ", ".join(repr(a) for a in allowed)
    if op[::-1] in allowed:  # '=>' for '>=': the spelling of some other languages
        return f"did you mean {op[::-1]!r}?"
    return did_you_mean(op, allowed)


def _read_op(reader: Reader, column: str, op: str, node: Node, what: str) -> Condition | None:
    if op in ("in", "not_in", "has_any", "has_all"):
        items = reader.sequence(node, what, allow_single=True)
        values = [reader.text(item, what) for item in items]
        if not items or any(v is None for v in values):
            return None
        return Condition(column, op, frozenset(v for v in values if v is not None), node.pos)
    if column not in KNOWN_COLUMNS and op in (">", ">=", "<", "<="):
        number = reader.integer(node, what)
        return None if number is None else Condition(column, op, number, node.pos)
    value = _operand(reader, column, node, what)
    return None if value is None else Condition(column, op, value, node.pos)


def _operand(reader: Reader, column: str, node: Node, what: str) -> Any:
    if column == "points":
        return reader.integer(node, f"{what} (points are whole numbers)")
    if column == "joined":
        return reader.date(node, what)
    if column in ("locale", "timezone") and node.kind == "scalar" and not node.is_null:
        from commcal.config import read_locale, read_zone

        return (read_locale if column == "locale" else read_zone)(reader, node, what)
    return reader.text(node, what)


# -- finding audience files -----------------------------------------------------------------------


def audience_names(root: Path) -> dict[str, Path]:
    """Each audience name and its file. A name written as both .csv and .yaml maps to the .csv
    here; `members` and `check_audience` report it as an error rather than pick one silently."""
    folder = root / AUDIENCE_DIR
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for path in sorted(
        folder.iterdir(),
        key=lambda p: (p.stem, SUFFIXES.index(p.suffix) if p.suffix in SUFFIXES else 9),
    ):
        if path.suffix in SUFFIXES and path.is_file():
            found.setdefault(path.stem, path)
    return found


def _audience_file(root: Path, name: str) -> tuple[Path | None, Problem | None]:
    folder = root / AUDIENCE_DIR
    if not _NAME.match(name):
        return None, Problem(
            Pos(AUDIENCE_DIR),
            f"audience name {name!r} is not a file name",
            "use letters, digits, '.', '_' and '-', e.g. audience: members-el",
        )
    paths = [folder / f"{name}{suffix}" for suffix in SUFFIXES]
    existing = [p for p in paths if p.is_file()]
    if len(existing) > 1:
        shown = " and ".join(f"{AUDIENCE_DIR}/{p.name}" for p in existing)
        return None, Problem(
            Pos(f"{AUDIENCE_DIR}/{existing[1].name}"),
            f"audience {name!r} is written twice: {shown}",
            "keep one file per audience",
        )
    if not existing:
        known = sorted(audience_names(root))
        hint = (
            did_you_mean(name, known)
            if known
            else (f"create {AUDIENCE_DIR}/{name}.csv with an email column")
        )
        return None, Problem(Pos(f"{AUDIENCE_DIR}/{name}.csv"), f"unknown audience {name!r}", hint)
    return existing[0], None


# -- reading members ------------------------------------------------------------------------------


def members(
    root: Path, name: str, where: Where | None = None, *, problems: list[Problem] | None = None
) -> Iterator[Member]:
    """The good members of audience `name` that match `where`, in file order, read lazily.

    Row problems are appended to `problems` as warnings and the row is skipped. A file problem is
    appended as an error (a missing or unreadable file yields nothing; a broken row, such as a
    quote never closed or a wrong number of cells, is skipped and reading goes on, to report
    every one). With `problems=None` an error raises AudienceBroken instead, at once (row
    warnings are then dropped): a broken audience is never read as a smaller one.
    """
    sink: list[Problem] = [] if problems is None else problems

    def report(problem: Problem) -> None:
        if problem.severity == "error" and problems is None:
            raise AudienceBroken([problem])
        sink.append(problem)

    path, problem = _audience_file(root, name)
    if problem is not None or path is None:
        if problem is not None:
            report(problem)
        return
    display = f"{AUDIENCE_DIR}/{path.name}"
    rows = (
        _csv_rows(path, display, report)
        if path.suffix == ".csv"
        else _yaml_rows(path, display, report)
    )
    seen = _Seen()
    for cells, line in rows:
        member = _member(cells, line, display, report)
        if member is None:
            continue
        first = seen.first(int(member.key, 16), line)
        if first is not None:
            report(
                Problem(
                    Pos(display, line),
                    f"duplicate address {member.email} (first at line {first}); the row is skipped",
                    "remove one of the two rows",
                    "warning",
                )
            )
            continue
        if where is None or where.matches(member):
            yield member


class _Seen:
    """The members read so far (their keys, as 64-bit numbers) and the line of each: an open
    addressing table in two flat arrays, some 24 bytes a member where a dict of key strings
    took about 150, so that reading an audience stays small however large it is."""

    def __init__(self) -> None:
        self._keys = array("Q", [0]) * 1024  # 0: a free slot
        self._lines = array("I", [0]) * 1024
        self._used = 0

    def first(self, key: int, line: int) -> int | None:
        """The line `key` was first read at; None, noting `line`, if it is new."""
        key = key or 1  # the keys are hashes: 0 stands for a free slot
        keys = self._keys
        mask = len(keys) - 1
        slot = key & mask
        while (found := keys[slot]) != 0:
            if found == key:
                return int(self._lines[slot])
            slot = (slot + 1) & mask
        keys[slot] = key
        self._lines[slot] = line
        self._used += 1
        if 2 * self._used > len(keys):
            self._grow()
        return None

    def _grow(self) -> None:
        old = zip(self._keys, self._lines, strict=True)
        size = 2 * len(self._keys)
        self._keys = array("Q", [0]) * size
        self._lines = array("I", [0]) * size
        mask = size - 1
        for key, line in old:
            if key:
                slot = key & mask
                while self._keys[slot] != 0:
                    slot = (slot + 1) & mask
                self._keys[slot] = key
                self._lines[slot] = line


def check_audience(root: Path, name: str) -> list[Problem]:
    """Every problem in audience `name`, file errors and row warnings, read once."""
    problems: list[Problem] = []
    for _ in members(root, name, problems=problems):
        pass
    return problems


def count(
    root: Path, name: str, where: Where | None = None, *, problems: list[Problem] | None = None
) -> int:
    return sum(1 for _ in members(root, name, where, problems=problems))


def sample(
    root: Path,
    name: str,
    where: Where | None = None,
    n: int = 3,
    *,
    problems: list[Problem] | None = None,
) -> list[Member]:
    """The first `n` matching members (file order, so the same ones each time)."""
    return list(itertools.islice(members(root, name, where, problems=problems), n))


def find_member(
    root: Path, name: str, email: str, *, problems: list[Problem] | None = None
) -> Member | None:
    wanted = recipient_key(email)
    return next((m for m in members(root, name, problems=problems) if m.key == wanted), None)


# A row as read: column -> (value, position). CSV values are text; YAML values are what
# Reader.value made of the node (text, numbers, true/false, lists, mappings).
Cells = dict[str, tuple[Any, Pos]]
Report = Callable[[Problem], None]


def _canonical(column: str) -> str:
    """Known columns match in any case (`Email`); extra columns keep their own spelling."""
    lowered = column.strip().lower()
    return lowered if lowered in KNOWN_COLUMNS else column.strip()


class _Lines:
    """The file's lines as text, counting physical lines and keeping those of the current row.

    A line that is not UTF-8 is noted in `bad` (its row is skipped later). `captured` holds the
    raw lines read since it was last emptied: the lines one CSV row was read from.
    """

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.number = 0  # physical line number of the last line read
        self.bad: set[int] = set()
        self.captured: list[str] = []

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw = self._handle.readline()
        if not raw:
            raise StopIteration
        self.number += 1
        if self.number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self.bad.add(self.number)
            text = raw.decode("utf-8", "replace")
        self.captured.append(text)
        return text


def _csv_rows(path: Path, display: str, report: Report) -> Iterator[tuple[Cells, int]]:
    try:
        handle = path.open("rb")
    except OSError as exc:
        report(Problem(Pos(display), f"cannot read audience file: {exc.strerror}"))
        return
    with handle:
        lines = _Lines(handle)
        first = next(lines, None)
        while first is not None and not first.strip():  # blank lines before the header
            first = next(lines, None)
        if first is None:
            report(
                Problem(
                    Pos(display, 1),
                    "the audience file is empty",
                    "the first line names the columns, e.g. email,name,locale",
                )
            )
            return
        header_line = lines.number
        # Spreadsheets set to a comma-decimal locale (Greek, German, ...) save with ';'.
        delimiter = ";" if first.count(";") > first.count(",") else ","
        reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter)
        try:
            header = next(reader)
        except csv.Error as exc:
            report(Problem(Pos(display, header_line), f"cannot read the header row: {exc}"))
            return
        if lines.bad & set(range(1, lines.number + 1)):
            report(
                Problem(
                    Pos(display, header_line),
                    "the header row is not valid UTF-8",
                    "save the file as CSV UTF-8",
                )
            )
            return
        columns = [_canonical(c) for c in header]
        if not _header_ok(columns, display, header_line, report):
            return
        shape = _Shape(display, header_line, columns, delimiter)
        while True:
            start = lines.number + 1
            lines.captured = []
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                # Most often a quote that is never closed: the value grew past csv's field limit.
                report(
                    shape.broken(
                        start,
                        f'cannot read the row that starts here ({exc}): a quote (") opened in it '
                        "is probably never closed",
                        _QUOTE_HINT,
                    )
                )
                continue
            end = lines.number
            broken = shape.check(start, end, cells, lines.captured)
            if broken is not None:
                report(broken)
                continue
            if not cells or not any(c.strip() for c in cells):
                continue  # blank line
            if lines.bad & set(range(start, end + 1)):
                report(
                    _skipped(
                        display, start, "the row is not valid UTF-8", "save the file as CSV UTF-8"
                    )
                )
                continue
            pos = Pos(display, start)
            yield (
                {col: (cell, pos) for col, cell in zip(columns, cells, strict=False) if col},
                start,
            )


_QUOTE_HINT = 'close the quote on that line, or write "" for a quote inside a value'


@dataclass(frozen=True)
class _Shape:
    """What every row of one CSV file must look like: as many cells as the header has columns,
    and no quoted value that swallows the lines after it. A row that breaks this is an error,
    not a skipped row: one stray quote can swallow thousands of members into one value."""

    display: str
    header_line: int
    columns: list[str]
    delimiter: str

    def broken(self, line: int, message: str, hint: str) -> Problem:
        return Problem(
            Pos(self.display, line),
            f"{message}; nothing is sent to this audience until the file is fixed",
            hint,
        )

    def check(self, start: int, end: int, cells: list[str], raw: list[str]) -> Problem | None:
        text = "".join(raw)
        if '"' in text and text.count('"') % 2 and _quote_left_open(text, self.delimiter):
            swallowed = self._row_like(raw[1:], start + 1)
            rest = ""
            if end == start + 1:
                rest = f"; line {end} was read as part of one value"
            elif end > start:
                rest = f"; lines {start + 1}-{end} were read as part of one value"
            also = ""
            if swallowed and end == start + 1:
                also = " (it looks like a member row)"
            elif swallowed and end > start:
                also = f" ({len(swallowed)} of them look like member rows)"
            return self.broken(
                start, f'a quote (") opened in this row is never closed{rest}{also}', _QUOTE_HINT
            )
        if end > start:
            swallowed = self._row_like(raw[1:], start + 1)
            if swallowed:
                return self.broken(
                    start,
                    f"a quoted value in this row runs over {len(swallowed)} "
                    f"line{'s' if len(swallowed) != 1 else ''} that look like member rows "
                    f"({_lines_text(swallowed)}): a closing quote is probably missing",
                    _QUOTE_HINT,
                )
        if not cells or not any(c.strip() for c in cells) or len(cells) == len(self.columns):
            return None
        past = cells[len(self.columns) :]
        if past and not any(c.strip() for c in past):
            return None  # empty cells past the last column: spreadsheets pad rows like that
        hint = (
            f"quote a value that contains {self.delimiter!r}"
            if len(cells) > len(self.columns)
            else f"add the missing {self.delimiter!r} (empty cells are fine)"
        )
        return self.broken(
            start,
            f"the row has {len(cells)} cell{'s' if len(cells) != 1 else ''} but the header "
            f"has {len(self.columns)} columns",
            hint,
        )

    def _row_like(self, raw: list[str], first_line: int) -> list[int]:
        """Line numbers of lines that, read on their own, would be a member row."""
        where = self.columns.index("email")
        found = []
        for number, line in enumerate(raw, first_line):
            if self.delimiter not in line or "@" not in line:
                continue
            cells = next(csv.reader([line], delimiter=self.delimiter), [])
            if len(cells) == len(self.columns) and "@" in cells[where]:
                found.append(number)
        return found


def _quote_left_open(text: str, delimiter: str) -> bool:
    """Whether CSV `text` ends inside a quoted value (csv's strict mode says so; the lenient
    reader used for reading silently takes the rest of the file as the value)."""
    try:
        for _ in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _lines_text(numbers: list[int]) -> str:
    if len(numbers) == 1:
        return f"line {numbers[0]}"
    return f"lines {numbers[0]}-{numbers[-1]}"


def _header_ok(columns: list[str], display: str, line: int, report: Report) -> bool:
    pos = Pos(display, line)
    if "email" not in columns:
        guess = did_you_mean(columns[0] if columns else "", ["email"]) if columns else ""
        for column in columns:
            if "mail" in column.lower():
                guess = f"rename column {column!r} to email"
        report(
            Problem(
                pos,
                "the audience has no email column",
                guess or "the first line names the columns, e.g. email,name,locale",
            )
        )
        return False
    repeated = sorted({c for c in columns if c and columns.count(c) > 1})
    if repeated:
        report(
            Problem(
                pos,
                f"column {repeated[0]!r} appears more than once in the header",
                "give each column its own name",
            )
        )
        return False
    return True


def _yaml_rows(path: Path, display: str, report: Report) -> Iterator[tuple[Cells, int]]:
    """A YAML audience is parsed whole (YAML has no row-by-row reader); use CSV for big lists."""
    node, problems = load(path, display)
    for problem in problems:
        if problem.message == "the file is empty":
            problem = Problem(
                problem.pos,
                "the audience file is empty",
                "write one '- email: ...' mapping per member",
            )
        report(problem)
    if node is None:
        return
    reader = Reader()
    items: list[Node] = []
    if node.kind == "map":
        if reader.mapping(node, "audience file", ("members",)):
            listed = node.get("members")
            if listed is None:
                reader.problem(
                    node.pos,
                    "the audience file has no members: list",
                    "write members: then one '- email: ...' per member",
                )
            else:
                items = reader.sequence(listed, "members")
    else:
        items = reader.sequence(node, "audience file")
    for problem in reader.problems:
        report(problem)
    for item in items:
        line = item.pos.line
        if item.kind != "map":
            report(
                _skipped(
                    display,
                    line,
                    f"a member must be a mapping (email: ...), not {item.describe()}",
                    "",
                    item.pos.column,
                )
            )
            continue
        row_reader = Reader()
        cells: Cells = {}
        for key, value in item.entries:
            column = _canonical(key.text)
            if column in cells:
                row_reader.problem(key.pos, f"column {column!r} is written twice")
                continue
            cells[column] = (row_reader.value(value, column), value.pos)
        if row_reader.problems:
            for problem in row_reader.problems:
                report(
                    Problem(
                        problem.pos,
                        f"{problem.message}; the row is skipped",
                        problem.hint,
                        "warning",
                    )
                )
            continue
        if "email" not in cells:
            report(
                _skipped(
                    display, line, "the member has no email", "add email: ...", item.pos.column
                )
            )
            continue
        yield cells, line


def _skipped(display: str, line: int, message: str, hint: str = "", column: int = 0) -> Problem:
    return Problem(Pos(display, line, column), f"{message}; the row is skipped", hint, "warning")


def _cell_text(value: Any) -> str | None:
    """A cell as text; None for a list or mapping, which a text column cannot hold."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


@lru_cache(maxsize=1024)
def _locale_ok(name: str) -> bool:
    from babel import Locale, UnknownLocaleError

    try:
        Locale.parse(name.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return False
    return True


@lru_cache(maxsize=256)
def _zone_hint(name: str) -> str:
    close = zone_suggestions(name)
    return f"did you mean {close[0]!r}?" if close else "use an IANA name like Europe/Athens"


def _member(cells: Cells, line: int, display: str, report: Report) -> Member | None:
    """A Member from one row's cells, or None after reporting why the row is skipped."""
    values: dict[str, Any] = {}
    for column in KNOWN_COLUMNS:
        if column not in cells:
            continue
        raw, pos = cells[column]
        value, error = _known(column, raw)
        if error:
            message, hint = error
            report(Problem(pos, f"{message}; the row is skipped", hint, "warning"))
            return None
        values[column] = value
    if not values.get("email"):
        raw, pos = cells.get("email", ("", Pos(display, line)))  # a short row may lack it
        shown = _cell_text(raw)
        report(
            Problem(
                pos,
                "the row has no email; the row is skipped"
                if not (shown or "").strip()
                else f"{shown!r} is not an e-mail address; the row is skipped",
                "write the member's address in the email column",
                "warning",
            )
        )
        return None
    extra = {c: raw for c, (raw, _) in cells.items() if c not in KNOWN_COLUMNS}
    return Member(**values, vars=extra, row=line)


def _known(column: str, raw: Any) -> tuple[Any, tuple[str, str] | None]:
    """A known column's value, or the (message, hint) saying why it cannot be used."""
    if column == "tags":
        if isinstance(raw, list):
            texts = [_cell_text(t) for t in raw]
            if any(t is None for t in texts):
                return None, ("tags must be a list of words", "write tags: [volunteer, donor]")
            return frozenset(t.strip() for t in texts if t and t.strip()), None
        text = _cell_text(raw)
        if text is None:
            return None, ("tags must be a list of words", "write tags: [volunteer, donor]")
        return frozenset(t.strip() for t in _TAG_SPLIT.split(text) if t.strip()), None
    if column == "points":
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None, None
        if isinstance(raw, int) and not isinstance(raw, bool) and abs(raw) < 10**18:
            return raw, None
        if isinstance(raw, str) and _WHOLE.match(raw.strip()):
            return int(raw.strip()), None
        return None, (
            f"points {_cell_text(raw) or raw!r} is not a whole number",
            "write a whole number like 120, or leave the cell empty",
        )
    text = _cell_text(raw)
    if text is None:
        return None, (f"{column} must be text, not a list or mapping", "")
    text = text.strip()
    if column == "email":
        if not text:
            return "", None  # reported by the caller, which has the row
        try:
            return email_address(text), None
        except AddressError as exc:
            return None, (f"{text!r} is not an e-mail address", str(exc))
    if column == "joined":
        if not text:
            return None, None
        day = parse_date(text)
        if day is None:
            return None, (f"joined {text!r} is not a date", "write it as YYYY-MM-DD: 2026-01-31")
        return day, None
    if column == "locale" and text and not _locale_ok(text):
        return None, (
            f"unknown locale {text!r}",
            "use a language code such as en, el (Greek), sw (Swahili) or pt_BR",
        )
    if column == "timezone" and text:
        try:
            zone(text)
        except KeyError:
            return None, (f"unknown time zone {text!r}", _zone_hint(text))
    return text, None
