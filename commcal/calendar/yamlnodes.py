"""YAML read into nodes that remember file:line:column, without YAML 1.1's guesses.

PyYAML's constructors turn an unquoted `no` into False, `1:30` into 90 and `2026-12-01` into a date
before we can say anything. We stop at the composed node graph instead and let the schema decide
what each scalar means (`commcal.calendar.fields`), reporting the surprises with a fix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from commcal.errors import Pos, Problem

try:  # libyaml's composer is about 3.5x faster and gives the same marks (DESIGN.md speed notes)
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - libyaml missing
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

# Values that aliases add when expanded (each *name repeats its anchor's whole value); past this,
# a document is an alias bomb, not a calendar. Only the expansion counts: values written out
# are bounded by the file's size already (a 50,000-item calendar has about a million, and
# loads). Counted on the composed graph before anything is copied.
MAX_ALIAS_VALUES = 200_000
# Nesting deeper than this is no calendar either, and would exhaust Python's recursion limit.
MAX_DEPTH = 100

TAG_STR = "tag:yaml.org,2002:str"
TAG_BOOL = "tag:yaml.org,2002:bool"
TAG_INT = "tag:yaml.org,2002:int"
TAG_FLOAT = "tag:yaml.org,2002:float"
TAG_NULL = "tag:yaml.org,2002:null"
TAG_TIMESTAMP = "tag:yaml.org,2002:timestamp"


@dataclass(slots=True)
class Node:
    """A YAML node: a mapping (`entries`), a sequence (`items`) or a scalar (`text`)."""

    kind: str  # "map", "seq" or "scalar"
    pos: Pos
    tag: str = TAG_STR
    text: str = ""
    plain: bool = False  # an unquoted scalar, which YAML 1.1 may have read as something else
    # Shared empty tuples by default: a calendar has thousands of scalars, each of which used to
    # get two empty lists of its own.
    items: Sequence[Node] = ()
    entries: Sequence[tuple[Node, Node]] = ()

    def get(self, key: str) -> Node | None:
        for k, v in self.entries:
            if k.text == key:
                return v
        return None

    def keys(self) -> list[str]:
        return [k.text for k, _ in self.entries]

    @property
    def is_null(self) -> bool:
        return self.kind == "scalar" and self.plain and self.tag == TAG_NULL

    def describe(self) -> str:
        """What the user wrote, in words, for messages."""
        if self.kind == "map":
            return "a mapping"
        if self.kind == "seq":
            return "a list"
        if self.is_null:
            return "nothing"
        return repr(self.text)


def position(path: str, mark: Any) -> Pos:
    return Pos(path, mark.line + 1, mark.column + 1)


def read_text(path: Path, display: str) -> tuple[str | None, list[Problem]]:
    """The file as text; non-UTF-8 bytes and tab indentation are problems with a position."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, [Problem(Pos(display), f"cannot read file: {exc.strerror}")]
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = len(before) - (before.rfind(b"\n") + 1) + 1
        return None, [
            Problem(
                Pos(display, line, column),
                f"byte 0x{data[exc.start]:02x} is not valid UTF-8",
                "save the file as UTF-8 (most editors: File > Save with encoding > UTF-8)",
            )
        ]
    problems = []
    for number, line_text in enumerate(text.splitlines(), 1):
        indent = line_text[: len(line_text) - len(line_text.lstrip(" \t"))]
        if "\t" in indent:
            problems.append(
                Problem(
                    Pos(display, number, indent.index("\t") + 1),
                    "tab character used for indentation",
                    "YAML indents with spaces only: replace the tab with spaces",
                )
            )
    if problems:
        return None, problems
    return text, []


def load(path: Path, display: str | None = None) -> tuple[Node | None, list[Problem]]:
    """Parse one YAML file into a Node tree; on failure, None and the problems."""
    shown = display or str(path)
    text, problems = read_text(path, shown)
    if text is None:
        return None, problems
    return parse(text, shown)


# What YAML 1.1 allows in a stream (spec 5.1); anything else stops PyYAML without a line number.
_NOT_PRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _bad_character(text: str, display: str) -> Problem | None:
    found = _NOT_PRINTABLE.search(text)
    if found is None:
        return None
    before = text[: found.start()]
    line = before.count("\n") + 1
    column = found.start() - (before.rfind("\n") + 1) + 1
    return Problem(
        Pos(display, line, column),
        f"invisible control character U+{ord(found.group()):04X} is not allowed in YAML",
        "delete it (it often comes along when text is pasted from another program)",
    )


def parse(text: str, display: str) -> tuple[Node | None, list[Problem]]:
    bad = _bad_character(text, display)
    if bad is not None:
        return None, [bad]
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context_mark and "end of stream" in (exc.problem or ""):
            mark = exc.context_mark  # where the unclosed quote or bracket opened, not the end
        pos = position(display, mark) if mark else Pos(display)
        message = exc.problem or "cannot parse YAML"
        if exc.context:
            message = f"{exc.context}: {message}"
        if "expected a single document" in message:
            return None, [
                Problem(
                    pos,
                    "more than one YAML document ('---') in the file",
                    "keep one document per file",
                )
            ]
        return None, [Problem(pos, f"invalid YAML: {message}", _yaml_hint(message))]
    except yaml.YAMLError as exc:
        return None, [Problem(Pos(display), f"invalid YAML: {exc}")]
    if root is None:
        return None, [
            Problem(
                Pos(display, 1, 1),
                "the file is empty",
                "write key: value lines (a calendar starts with items:)",
            )
        ]
    written, size_problem = _check_size(root, display)
    if size_problem:
        return None, [size_problem]
    converter = _Converter(display, limit=written + MAX_ALIAS_VALUES)
    node = converter.convert(root)
    return (None if converter.bomb else node), converter.problems


def _yaml_hint(message: str) -> str:
    if "mapping values are not allowed" in message:
        return "a value containing ': ' must be quoted, e.g. text: \"Note: ...\""
    if "found character" in message and "cannot start any token" in message:
        return "quote the value: '@', '`' and '%' cannot start an unquoted value"
    if "could not find expected ':'" in message:
        return "check the indentation of this line and the one before it"
    if "found undefined alias" in message:
        return "define the anchor (&name) before using the alias (*name)"
    if "quoted scalar" in message:
        return "close the quote: a value that starts with \" or ' must end with the same quote"
    if "flow sequence" in message or "flow mapping" in message:
        return "close the bracket: every [ needs a ] and every { a }"
    return ""


def _check_size(root: yaml.Node, display: str) -> tuple[int, Problem | None]:
    """An alias bomb, an alias inside itself or absurd nesting, found without expanding aliases;
    and how many values are written (the composed graph's nodes, each alias target once)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def children(node: yaml.Node) -> list[yaml.Node]:
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        if isinstance(node, yaml.MappingNode):
            return [part for pair in node.value for part in pair]
        return []

    def size(node: yaml.Node, depth: int) -> int | Problem:
        key = id(node)
        if key in sizes:
            return sizes[key]
        pos = position(display, node.start_mark)
        if key in open_nodes:
            return Problem(
                pos,
                "an alias (*name) refers to a value that contains it",
                "an anchor cannot be used inside its own value",
            )
        if depth > MAX_DEPTH:
            return Problem(
                pos, f"values are nested more than {MAX_DEPTH} levels deep", "flatten the structure"
            )
        open_nodes.add(key)
        total = 1
        for child in children(node):
            found = size(child, depth + 1)
            if isinstance(found, Problem):
                return found
            total += found
            # A subtree holds at most the nodes visited so far (done or open), each once; what it
            # expands to beyond them, aliases added.
            if total > MAX_ALIAS_VALUES + len(sizes) + len(open_nodes):
                return _bomb(pos)
        open_nodes.discard(key)
        sizes[key] = total
        return total

    found = size(root, 0)
    if isinstance(found, Problem):
        return len(sizes), found
    if found - len(sizes) > MAX_ALIAS_VALUES:
        return len(sizes), _bomb(position(display, root.start_mark))
    return len(sizes), None


def _bomb(pos: Pos) -> Problem:
    return Problem(
        pos,
        f"aliases expand to more than {MAX_ALIAS_VALUES:,} values",
        "this looks like an alias bomb; use fewer nested aliases",
    )


class _Converter:
    def __init__(self, display: str, limit: int) -> None:
        self.display = display
        self.limit = limit  # values to make at most: those written, and what aliases may add
        self.problems: list[Problem] = []
        self.count = 0
        self.bomb = False

    def convert(self, raw: yaml.Node) -> Node:
        self.count += 1
        pos = position(self.display, raw.start_mark)
        if self.count > self.limit:
            if not self.bomb:
                self.bomb = True
                self.problems.append(_bomb(pos))
            return Node("scalar", pos)
        if isinstance(raw, yaml.ScalarNode):
            return Node("scalar", pos, tag=raw.tag, text=raw.value, plain=not raw.style)
        if isinstance(raw, yaml.SequenceNode):
            return Node("seq", pos, items=[self.convert(item) for item in raw.value])
        assert isinstance(raw, yaml.MappingNode)
        return Node("map", pos, entries=self._entries(raw))

    def _entries(self, raw: yaml.MappingNode) -> list[tuple[Node, Node]]:
        entries: list[tuple[Node, Node]] = []
        seen: dict[str, Node] = {}
        merged: list[tuple[Node, Node]] = []
        for raw_key, raw_value in raw.value:
            if self.bomb:
                break
            if raw_key.tag == "tag:yaml.org,2002:merge":
                merged.extend(self._merge(raw_value))
                continue
            key = self.convert(raw_key)
            value = self.convert(raw_value)
            if key.kind != "scalar":
                self.problems.append(
                    Problem(key.pos, f"a key must be plain text, not {key.describe()}")
                )
                continue
            if key.text in seen:
                first = seen[key.text].pos
                self.problems.append(
                    Problem(
                        key.pos,
                        f"duplicate key {key.text!r} (first written at line {first.line})",
                        "remove one of them; YAML keeps only one",
                    )
                )
                continue
            seen[key.text] = key
            entries.append((key, value))
        for key, value in merged:  # explicit keys win over merged ones (YAML merge key spec)
            if key.text not in seen:
                seen[key.text] = key
                entries.append((key, value))
        return entries

    def _merge(self, raw: yaml.Node) -> list[tuple[Node, Node]]:
        sources = raw.value if isinstance(raw, yaml.SequenceNode) else [raw]
        out: list[tuple[Node, Node]] = []
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self.problems.append(
                    Problem(
                        position(self.display, source.start_mark),
                        "'<<' merges only mappings (or a list of them)",
                    )
                )
                continue
            node = self.convert(source)
            out.extend(node.entries)
        return out
