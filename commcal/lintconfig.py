"""The schema of cadence lint: `lint:` rules in commcal.yaml, a calendar's `staff:` windows, and
an item's `lint:` opt-out and `replies:`. Read while loading (cheap: no heavy imports); the
rules themselves run in `commcal.lint`, over planned deliveries."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from commcal.calendar.fields import Reader, did_you_mean
from commcal.calendar.yamlnodes import TAG_BOOL, Node
from commcal.errors import Pos

# Every rule, in the order findings are explained in docs/calendar-format.md#lint.
RULES = (
    "max_silence",
    "min_spacing",
    "max_per_day",
    "quiet_hours",
    "staffed_hours",
    "blackout",
    "rate_budget",
    "slow_slot",
)
# Rules that read what happened to sent posts (the ledger's snapshots, `commcal pull`) rather
# than the plan alone: silent until there are results.
RESULT_RULES = frozenset({"slow_slot"})
SEVERITIES = ("warning", "error")
# The key holding each rule's value (what the short form `max_silence: 7d` sets).
VALUE_KEY: Mapping[str, str] = {
    "max_silence": "limit",
    "min_spacing": "limit",
    "max_per_day": "limit",
    "quiet_hours": "hours",
    "blackout": "dates",
    "rate_budget": "smtp_daily_cap",
}
# A rule that needs a value is off until commcal.yaml gives one; staffed_hours is on (and silent
# for calendars without `staff:`); rate_budget is on: the networks' limits are known; slow_slot
# is on (and silent without pulled results).
ON_BY_DEFAULT = frozenset({"staffed_hours", "rate_budget", "slow_slot"})
# Breaking a network's limit or a declared blackout is an error; the rest are matters of taste.
DEFAULT_SEVERITY: Mapping[str, str] = {
    rule: "error" if rule in ("blackout", "rate_budget") else "warning" for rule in RULES
}
# Kinds whose deliveries invite replies (staffed_hours), unless the item says `replies: none`.
REPLY_KINDS = frozenset({"poll", "contest", "event"})
REPLIES = ("expected", "none")  # an item's `replies:` (read in commcal.calendar.parse)

_CLOCK = r"([01]?\d|2[0-4]):([0-5]\d)"
_HOURS = re.compile(rf"^\s*{_CLOCK}\s*-\s*{_CLOCK}\s*$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Hours:
    """A daily span of wall-clock minutes [start, end); end <= start runs past midnight."""

    start: int
    end: int

    @property
    def wraps(self) -> bool:
        return self.end <= self.start

    def holds(self, minute: int) -> bool:
        if self.wraps:
            return minute >= self.start or minute < self.end
        return self.start <= minute < self.end

    def __str__(self) -> str:
        return f"{_clock(self.start)}-{_clock(self.end)}"


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@dataclass(frozen=True)
class StaffWindow:
    """One line of a calendar's `staff:`: weekdays (0 = Monday) and hours, in its zone. Hours
    past midnight (`fri 22:00-02:00`) belong to the day they start on."""

    days: frozenset[int]
    hours: Hours
    pos: Pos
    text: str

    def holds(self, local: datetime) -> bool:
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if self.hours.wraps:
            return (day in self.days and minute >= self.hours.start) or (
                (day - 1) % 7 in self.days and minute < self.hours.end
            )
        return day in self.days and self.hours.holds(minute)


@dataclass(frozen=True)
class RuleConfig:
    enabled: bool
    severity: str
    channels: tuple[str, ...] = ()  # empty: every channel
    pos: Pos | None = None  # where commcal.yaml configures it


@dataclass(frozen=True)
class LintConfig:
    """`lint:` of commcal.yaml. Values of rules that are off stay None."""

    rules: Mapping[str, RuleConfig] = field(default_factory=dict)
    max_silence: timedelta | None = None
    min_spacing: timedelta | None = None
    max_per_day: int | None = None
    quiet_hours: Hours | None = None
    blackout: frozenset[date] = frozenset()
    # Mails a day per smtp channel; a number under rate_budget applies to every smtp channel.
    smtp_daily_cap: Mapping[str, int] = field(default_factory=dict)

    def rule(self, name: str) -> RuleConfig:
        return self.rules.get(name) or RuleConfig(
            name in ON_BY_DEFAULT, DEFAULT_SEVERITY[name], (), None
        )


def read_lint(
    reader: Reader, node: Node, channels: Mapping[str, str], path: str = "commcal.yaml"
) -> LintConfig:
    """`lint:` of commcal.yaml; `channels` maps each configured channel to its type."""
    if not reader.mapping(node, "lint", RULES, "e.g. lint: {min_spacing: 2h, max_per_day: 3}"):
        return LintConfig()
    rules: dict[str, RuleConfig] = {}
    values: dict[str, Any] = {}
    for key, value in node.entries:
        name = key.text
        if name not in RULES:
            continue
        value_node, rule = _rule(reader, name, value, channels)
        rules[name] = rule
        if value_node is not None and rule.enabled:
            read = _value(reader, name, value_node, channels)
            if read is not None:
                values[name] = read
        if rule.enabled and name in VALUE_KEY and name != "rate_budget" and name not in values:
            if value_node is None:
                reader.problem(
                    value.pos,
                    f"lint.{name} needs {VALUE_KEY[name]}:",
                    f"e.g. {name}: {_EXAMPLES[name]}",
                )
            rules[name] = RuleConfig(False, rule.severity, rule.channels, rule.pos)
    blackout = values.pop("blackout", frozenset())
    caps = values.pop("rate_budget", {})
    return LintConfig(rules, blackout=blackout, smtp_daily_cap=caps, **values)


_EXAMPLES = {
    "max_silence": "7d",
    "min_spacing": "2h",
    "max_per_day": "3",
    "quiet_hours": '"22:00-08:00"',
    "blackout": "[2026-12-25, 2027-01-01]",
    "rate_budget": "{smtp_daily_cap: 10000}",
}


def _rule(
    reader: Reader, name: str, node: Node, channels: Mapping[str, str]
) -> tuple[Node | None, RuleConfig]:
    """A rule's settings and the node of its value: `name: VALUE` or `name: {KEY: VALUE,
    enabled:, severity:, channels:}`."""
    enabled, severity = True, DEFAULT_SEVERITY[name]
    only: tuple[str, ...] = ()
    if node.kind != "map":
        if name not in VALUE_KEY:
            reader.problem(
                node.pos,
                f"lint.{name} must be a mapping of enabled:, severity:, channels:",
                f"e.g. {name}: {{severity: error}}",
            )
            return None, RuleConfig(False, severity, (), node.pos)
        return node, RuleConfig(True, severity, (), node.pos)
    known = ["enabled", "severity", "channels", *([VALUE_KEY[name]] if name in VALUE_KEY else [])]
    reader.mapping(node, f"lint.{name}", known)
    if (n := node.get("enabled")) is not None:
        enabled = bool(reader.boolean(n, f"lint.{name}.enabled"))
    if (n := node.get("severity")) is not None:
        severity = reader.choice(n, f"lint.{name} severity", SEVERITIES) or severity
    if (n := node.get("channels")) is not None:
        only = tuple(_channel_names(reader, n, f"lint.{name}.channels", channels))
    value = node.get(VALUE_KEY[name]) if name in VALUE_KEY else None
    return value, RuleConfig(enabled, severity, only, node.pos)


def _channel_names(reader: Reader, node: Node, what: str, channels: Collection[str]) -> list[str]:
    names: list[str] = []
    for entry in reader.sequence(node, what, allow_single=True):
        name = reader.text(entry, what)
        if name is None:
            continue
        if name not in channels:
            reader.problem(
                entry.pos,
                f"{what}: unknown channel {name!r} (not under channels:)",
                did_you_mean(name, channels),
            )
            continue
        names.append(name)
    return names


def _value(reader: Reader, name: str, node: Node, channels: Mapping[str, str]) -> Any:
    what = f"lint.{name}"
    if name in ("max_silence", "min_spacing"):
        value = reader.duration(node, what, allow_negative=False)
        if value is not None and value <= timedelta(0):
            reader.problem(node.pos, f"{what} must be longer than 0", f"e.g. {_EXAMPLES[name]}")
            return None
        return value
    if name == "max_per_day":
        return reader.integer(node, what, 1, 10_000)
    if name == "quiet_hours":
        return read_hours(reader, node, what)
    if name == "blackout":
        days = [reader.date(d, what) for d in reader.sequence(node, what, allow_single=True)]
        return frozenset(d for d in days if d is not None)
    return _caps(reader, node, channels)


def _caps(reader: Reader, node: Node, channels: Mapping[str, str]) -> dict[str, int]:
    """smtp_daily_cap: a number for every smtp channel, or {channel: number}."""
    what = "lint.rate_budget.smtp_daily_cap"
    smtp = [name for name, kind in channels.items() if kind == "smtp"]
    if node.kind != "map":
        cap = reader.integer(node, what, 1, 100_000_000)
        return dict.fromkeys(smtp, cap) if cap is not None else {}
    caps: dict[str, int] = {}
    for key, value in node.entries:
        if key.text not in smtp:
            reader.problem(
                key.pos,
                f"{what}: {key.text!r} is not an smtp channel",
                did_you_mean(key.text, smtp) if smtp else "name a channel of type smtp",
            )
            continue
        cap = reader.integer(value, f"{what}.{key.text}", 1, 100_000_000)
        if cap is not None:
            caps[key.text] = cap
    return caps


def read_hours(reader: Reader, node: Node, what: str) -> Hours | None:
    """`"22:00-08:00"`: quoted, since YAML 1.1 reads some unquoted times as numbers."""
    text = reader.text(node, what)
    if text is None:
        return None
    hours = _hours(text)
    if hours is None:
        reader.problem(
            node.pos,
            f"{what}: {text!r} is not a span of hours like 22:00-08:00",
            "HH:MM-HH:MM in 24-hour time; an end before the start runs past midnight",
        )
    return hours


def _hours(text: str) -> Hours | None:
    match = _HOURS.match(text)
    if not match:
        return None
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start >= 24 * 60 or end > 24 * 60 or start == end:
        return None
    return Hours(start, end)


def read_staff(reader: Reader, node: Node) -> tuple[StaffWindow, ...]:
    """A calendar's `staff:`: lines like `mon-fri 09:00-17:00`, `sat,sun 10:00-14:00`,
    `daily 18:00-22:00`, in the calendar's zone."""
    windows: list[StaffWindow] = []
    for entry in reader.sequence(node, "staff", allow_single=True):
        text = reader.text(entry, "staff")
        if text is None:
            continue
        window = _staff_window(text, entry.pos)
        if window is None:
            reader.problem(
                entry.pos,
                f"staff: {text!r} is not a weekly window like 'mon-fri 09:00-17:00'",
                "days (mon..sun, ranges like mon-fri, lists like sat,sun, or daily), a space, "
                "then hours HH:MM-HH:MM in the calendar's zone",
            )
            continue
        windows.append(window)
    return tuple(windows)


def _staff_window(text: str, pos: Pos) -> StaffWindow | None:
    parts = text.split()
    if len(parts) != 2:
        return None
    days = _weekdays(parts[0].lower())
    hours = _hours(parts[1])
    if days is None or hours is None:
        return None
    return StaffWindow(frozenset(days), hours, pos, text)


def _weekdays(text: str) -> set[int] | None:
    if text in ("daily", "*"):
        return set(range(7))
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            return None
        a, b = _DAYS.index(first), _DAYS.index(last or first)
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))  # fri-mon wraps the week
    return days


def read_item_lint(reader: Reader, node: Node, where: str) -> frozenset[str]:
    """An item's `lint:`: `off` (every rule leaves it alone) or `{skip: [rule, ...]}`."""
    off = node.kind == "scalar" and node.plain and node.tag == TAG_BOOL
    if off and node.text.lower() in ("off", "false", "no"):
        return frozenset(RULES)
    if node.kind != "map":
        reader.problem(
            node.pos,
            f"{where} lint must be off or {{skip: [rule, ...]}}, not {node.describe()}",
            "rules: " + ", ".join(RULES),
        )
        return frozenset()
    reader.mapping(node, f"{where} lint", ("skip",))
    skip = node.get("skip")
    if skip is None:
        return frozenset()
    names = [
        reader.choice(n, "lint rule", RULES)
        for n in reader.sequence(skip, "skip", allow_single=True)
    ]
    return frozenset(n for n in names if n)
