"""`commcal import csv`: a spreadsheet export -> a calendar file of one-off posts.

Columns (the header row names them, in any order and case; docs/cli.md#commcal-import-csv):
`date` and `time` (in the project's zone), `channels`, and `text` or `template` on each row;
optional `id`, `title`, `vars` (a JSON object, or `name=value; name=value`) and `vars.NAME`
columns. Every bad row is reported at once with its row number (the header is row 1), and then
nothing is written; the calendar written is checked by the same parser `validate` uses.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from commcal.calendar.fields import did_you_mean
from commcal.errors import CommcalError, ConfigError, Pos, Problem, ProblemsFound
from commcal.project import Project

COLUMNS = ("id", "date", "time", "channels", "text", "template", "vars", "title")
VAR_COLUMN = "vars."  # vars.topic: one template variable per column
# Rows with `text` use this template: the text exactly as written. Created when missing.
TEXT_TEMPLATE = "posts/text"
TEXT_TEMPLATE_SOURCE = "{{ text }}"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")  # seconds: spreadsheets add them
_SPLIT = re.compile(r"[\s,;|]+")
DELIMITERS = (",", ";", "\t")


@dataclass
class Imported:
    """What an import makes: the calendar's YAML text, how many items, and whether the text
    template must be created."""

    calendar: str
    text: str
    items: int
    needs_text_template: bool
    problems: list[Problem] = field(default_factory=list)


def import_csv(
    project: Project,
    data: bytes,
    source: str,
    calendar: str,
    *,
    delimiter: str | None = None,
) -> Imported:
    """Read a CSV export (`source` names it in problems: a path, or `-` for stdin) into the
    text of calendar `calendar`. Raises ProblemsFound with every bad row."""
    where = source if source != "-" else "<stdin>"
    if not _ID.match(calendar):
        raise ConfigError(
            f"--calendar {calendar!r}: a calendar name may use only letters, digits, '.', '_' "
            "and '-', starting with a letter or digit (it names calendars/NAME.yaml)"
        )
    text = _decode(data, where)
    if delimiter is not None and len(delimiter) != 1:
        raise ConfigError(f"--delimiter must be one character, not {delimiter!r}")
    sep = delimiter or _sniff(text)
    problems: list[Problem] = []
    items = list(_items(project, text, sep, where, problems))
    if not problems and not items:
        problems.append(Problem(Pos(where, 1), "no rows to import after the header"))
    if problems:
        raise ProblemsFound(problems)
    uses_text = any(i.get("template") == TEXT_TEMPLATE for i in items)
    from commcal.render import template_bases

    needs = uses_text and TEXT_TEMPLATE not in template_bases(project.root / "templates")
    body = _yaml(calendar, project.config.timezone, items, source, len(items))
    imported = Imported(calendar, body, len(items), needs)
    _check_output(project, imported)
    return imported


def write_import(project: Project, imported: Imported, path: Path, *, force: bool) -> list[Path]:
    """Write the calendar (and the text template when missing); returns the files written.
    An existing calendar file is overwritten only with `force`."""
    what = project.input_at(path)
    calendars = (project.root / "calendars").resolve()
    if what is not None and not path.resolve().is_relative_to(calendars):
        raise ConfigError(f"--output {path}: that is {what}; a calendar goes in calendars/")
    if path.exists() and not force:
        raise ConfigError(f"{path} exists: pass --force to overwrite it, or --output another file")
    for other in project.calendars:
        if other.name == imported.calendar and (project.root / other.path).resolve() != (
            path.resolve()
        ):
            raise ConfigError(
                f"calendar {imported.calendar!r} is already {other.path}: choose another "
                "name with --calendar"
            )
    written = []
    if imported.needs_text_template:
        template = project.root / "templates" / f"{TEXT_TEMPLATE}.j2"
        template.parent.mkdir(parents=True, exist_ok=True)
        template.write_text(TEXT_TEMPLATE_SOURCE, encoding="utf-8")
        written.append(template)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(imported.text, encoding="utf-8")
    written.append(path)
    return written


def calendar_name(source: str) -> str:
    """The calendar a file imports into by default: its name, made a usable id."""
    stem = Path(source).stem if source != "-" else "imported"
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")
    return name or "imported"


def _decode(data: bytes, where: str) -> str:
    """The file's text; a byte that is not UTF-8, or a NUL (a UTF-16 export, or a broken file:
    no network or ledger takes one), is an error naming its row (its CSV record: a quoted
    cell may hold line breaks) and line."""
    try:
        text = data.decode("utf-8-sig")  # a spreadsheet's byte-order mark is dropped
    except UnicodeDecodeError as exc:
        start, what = exc.start, f"byte {data[exc.start]:#04x} is not UTF-8"
        before = data[:start].decode("utf-8-sig")
    else:
        start = text.find("\x00")
        if start < 0:
            return text
        what, before = "a NUL character (is the file UTF-16?)", text[:start]
    row = _record(before)
    line = before.count("\n") + 1
    at = f"row {row}" + (f" (line {line})" if line != row else "")
    raise ProblemsFound(
        [Problem(Pos(where, row), f"{at}: {what}", "export the sheet as CSV UTF-8")]
    ) from None


def _record(before: str) -> int:
    """The CSV record (1: the header) that the text after `before` is in."""
    reader = csv.reader(io.StringIO(before + "x", newline=""))  # "x": the record under way
    try:
        return sum(1 for _ in reader)
    except csv.Error:  # reported later, at its own row
        return reader.line_num


def _sniff(text: str) -> str:
    """The delimiter the header row uses most: `,`, `;` (spreadsheets in many European
    locales) or a tab."""
    header = text.split("\n", 1)[0]
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _items(
    project: Project, text: str, sep: str, where: str, problems: list[Problem]
) -> Iterator[dict[str, Any]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=True)
    row_number = 1
    try:
        header = next(reader, None)
        if header is None:
            problems.append(Problem(Pos(where, 1), "the file is empty", _columns_hint()))
            return
        columns = _header(header, where, problems)
        if columns is None:
            return
        ids: dict[str, int] = {}
        for row_number, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue  # a blank line
            item = _row(project, columns, row, Pos(where, row_number), problems)
            if item is None:
                continue
            item_id = item["id"]
            if not item_id:  # made from the date and time; a second post then gets -2 ...
                base = f"post-{item['at'].replace('-', '').replace(' ', '-').replace(':', '')}"
                item_id = base
                for n in range(2, len(ids) + 3):
                    if item_id not in ids:
                        break
                    item_id = f"{base}-{n}"
                item["id"] = item_id
            if item_id in ids:
                problems.append(
                    Problem(
                        Pos(where, row_number),
                        f"row {row_number}: id {item_id!r} is already row {ids[item_id]}",
                        "ids must be unique: change one, or leave the id column empty",
                    )
                )
                continue
            ids[item_id] = row_number
            yield item
    except csv.Error as exc:
        broken = row_number + 1
        hint = 'a quote inside a field must be doubled ("") and the field quoted'
        if "field limit" in str(exc):  # an unclosed quote swallows the rest of the file
            hint = f"a cell holds at most {csv.field_size_limit():,} characters; " + hint
        problems.append(
            Problem(
                Pos(where, broken),
                f"row {broken}: not readable as CSV ({exc}); nothing after it was read",
                hint,
            )
        )


def _columns_hint() -> str:
    return "the header names the columns: date, time, channels, text or template (id, title, vars)"


def _header(header: list[str], where: str, problems: list[Problem]) -> list[str] | None:
    columns = [h.strip().lower() for h in header]
    before = len(problems)
    for number, name in enumerate(columns, 1):
        if name in COLUMNS or (name.startswith(VAR_COLUMN) and len(name) > len(VAR_COLUMN)):
            if columns.index(name) != number - 1:
                problems.append(Problem(Pos(where, 1), f"row 1: column {name!r} is named twice"))
            continue
        problems.append(
            Problem(
                Pos(where, 1),
                f"row 1: unknown column {header[number - 1]!r} (field {number})",
                did_you_mean(name, COLUMNS) + "; a template variable's column is vars.NAME",
            )
        )
    for needed in ("date", "time", "channels"):
        if needed not in columns:
            problems.append(Problem(Pos(where, 1), f"row 1: no {needed!r} column", _columns_hint()))
    if "text" not in columns and "template" not in columns:
        problems.append(Problem(Pos(where, 1), "row 1: no 'text' or 'template' column"))
    return columns if len(problems) == before else None


def _row(
    project: Project, columns: list[str], row: list[str], pos: Pos, problems: list[Problem]
) -> dict[str, Any] | None:
    number = pos.line
    if len(row) > len(columns):
        problems.append(
            Problem(
                pos,
                f"row {number}: {len(row)} fields for {len(columns)} columns",
                "quote fields that hold the delimiter",
            )
        )
        return None
    cells = {name: value.strip() for name, value in zip(columns, row, strict=False)}
    before = len(problems)

    def bad(message: str, hint: str = "") -> None:
        problems.append(Problem(pos, f"row {number}: {message}", hint))

    day = _date(cells.get("date", ""))
    if day is None:
        bad(
            f"date {cells.get('date', '')!r} is not a date like 2026-12-07",
            "format the column as YYYY-MM-DD before exporting: 07/12/2026 is ambiguous",
        )
    clock = _TIME.match(cells.get("time", ""))
    if clock is None:
        bad(f"time {cells.get('time', '')!r} is not a time like 09:00 (24-hour)")
    channels = [c for c in _SPLIT.split(cells.get("channels", "")) if c]
    if not channels:
        bad("no channels", "name one or more channels from commcal.yaml, e.g. mastodon,bluesky")
    known = list(project.config.channels)
    for name in channels:
        if name not in project.config.channels:
            bad(f"unknown channel {name!r} (not in commcal.yaml)", did_you_mean(name, known))
    if len(set(channels)) != len(channels):
        bad("a channel is named twice")
    text, template = cells.get("text", ""), cells.get("template", "")
    if bool(text) == bool(template):
        bad("give text or template, not both" if text else "no text and no template")
    if template:
        from commcal.render import template_bases

        bases = template_bases(project.root / "templates")
        template = template.removesuffix(".j2")
        if template not in bases:
            bad(f"template {template!r} not found under templates/", did_you_mean(template, bases))
    values = _vars(cells, bad)
    item_id = cells.get("id", "")
    if item_id and not _ID.match(item_id):
        bad(
            f"id {item_id!r} may use only letters, digits, '.', '_' and '-'",
            "or leave it empty to have one made from the date and time",
        )
    if len(problems) > before or day is None or clock is None:
        return None
    hour, minute, second = (int(g or 0) for g in clock.groups())
    when = datetime(day.year, day.month, day.day, hour, minute, second)
    item: dict[str, Any] = {"id": item_id}
    if cells.get("title"):
        item["title"] = cells["title"]
    item["channels"] = _Flow(channels)
    item["at"] = f"{when:%Y-%m-%d %H:%M}" + (f":{second:02d}" if second else "")
    item["template"] = template or TEXT_TEMPLATE
    if text:
        values["text"] = text
        problems.extend(_too_long(project, channels, text, pos))
        if len(problems) > before:
            return None
    if values:
        item["vars"] = values
    return item


def _date(text: str) -> date | None:
    from commcal.timeutil import FIRST_YEAR, LAST_YEAR, parse_date

    day = parse_date(text)
    return day if day is not None and FIRST_YEAR <= day.year <= LAST_YEAR else None


def _vars(cells: Mapping[str, str], bad: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    raw = cells.get("vars", "")
    if raw.startswith("{"):
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError as exc:
            bad(f"vars is not a JSON object: {exc.msg}", 'e.g. {"topic": "bread"}')
            parsed = {}
        if isinstance(parsed, dict):
            values.update(parsed)
        else:
            bad("vars must be a JSON object", 'e.g. {"topic": "bread"}')
    elif raw:
        for pair in raw.split(";"):
            name, sep, value = pair.partition("=")
            if not sep or not name.strip():
                bad(f"vars: {pair.strip()!r} is not name=value", "e.g. topic=bread; level=easy")
                continue
            values[name.strip()] = value.strip()
    for column, value in cells.items():
        if column.startswith(VAR_COLUMN) and value:
            values[column[len(VAR_COLUMN) :]] = value
    return values


def _too_long(project: Project, channels: list[str], text: str, pos: Pos) -> list[Problem]:
    """The checks `validate` makes of a rendered post, made of the row's text here, so the
    row number goes with them (the text template renders the text exactly)."""
    from commcal.channels.base import Message

    found = []
    for name in channels:
        adapter = project.channels.get(name)
        if adapter is None:
            continue
        message = Message(name, adapter.type_name, text)
        for problem in adapter.check(message):
            found.append(Problem(pos, f"row {pos.line}: on {name}: {problem}"))
    return found


class _Flow(list[str]):
    """A list written on one line: `channels: [mastodon, bluesky]`."""


# Line breaks YAML knows besides \n: PyYAML writes them raw in plain and single-quoted text,
# where a reader folds them into spaces; double quotes escape them.
_BREAKS = frozenset("\x85\u2028\u2029")


def _text(dumper: Any, value: str) -> Any:
    style = '"' if _BREAKS.intersection(value) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _yaml(
    calendar: str, timezone: str, items: list[dict[str, Any]], source: str, count: int
) -> str:
    import yaml

    shown = "standard input" if source == "-" else Path(source).name
    head = (
        f"# Imported by `commcal import csv` from {shown} ({count} "
        f"row{'s' if count != 1 else ''}).\n"
        f"# Times are {timezone}, the project's zone. Item ids key the ledger: keep them when "
        "editing.\n"
    )

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(
        _Flow, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True)
    )
    Dumper.add_representer(str, _text)
    body = yaml.dump(
        {"calendar": calendar, "timezone": timezone, "items": items},
        Dumper=Dumper,
        allow_unicode=True,
        sort_keys=False,
        default_flow_style=False,
        width=100,
    )
    return head + body


def _check_output(project: Project, imported: Imported) -> None:
    """Parse what would be written as `validate` will; a problem here is commcal's own."""
    from commcal.audience import audience_names
    from commcal.calendar.parse import parse_calendar
    from commcal.calendar.yamlnodes import parse
    from commcal.render import template_bases

    shown = f"calendars/{imported.calendar}.yaml"
    node, problems = parse(imported.text, shown)
    if node is not None:
        bases = template_bases(project.root / "templates") | {TEXT_TEMPLATE}
        _, found = parse_calendar(
            node, shown, project.config, imported.calendar, bases, audience_names(project.root)
        )
        problems += found
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise CommcalError(
            "the imported calendar would not validate (a bug in commcal import): "
            + "; ".join(str(p) for p in errors[:3])
        )
