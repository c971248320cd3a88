"""Bad input is explained (DESIGN.md section 3): one test per kind of mistake, through the real CLI.

Each case writes a small project, runs `commcal validate` (or `plan`) and checks the exit code
(1: calendar problems, 2: commcal.yaml problems), the exact `file:line:col` of the problem, the key
words of the message and of the fix, and that no traceback reached the user.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from commcal.cli import app

NOW = "2026-12-01T00:00:00Z"
MakeProject = Callable[..., Path]  # the `make_project` fixture of conftest.py
DEFAULT_CONFIG = "timezone: UTC\nlocale: en\nchannels:\n  console:\n    type: console\n"


def run(root: Path, command: str = "validate", *extra: str) -> Result:
    return CliRunner().invoke(app, ["-C", str(root), command, "--now", NOW, *extra])


def assert_clean(result: Result) -> None:
    """No traceback, and any exception is the CLI's own exit."""
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


@dataclass
class Case:
    id: str
    calendar: str | bytes | None = None  # calendars/c.yaml
    where: str = ""  # "calendars/c.yaml:3:5"
    words: tuple[str, ...] = ()  # on the line of the problem at `where`
    exit: int = 1
    config: str = DEFAULT_CONFIG
    templates: dict[str, str] | None = None
    command: str = "validate"
    extra_calendars: dict[str, str] = field(default_factory=dict)

    def param(self) -> object:
        return pytest.param(self, id=self.id)


OK_ITEM = """\
  - id: tip
    template: posts/tip
    channels: [console]
"""
CAL = "items:\n" + OK_ITEM  # a calendar ending in an item that still needs a schedule
C = "calendars/c.yaml"
MASTODON_30 = """\
timezone: UTC
channels:
  social:
    type: mastodon
    instance: https://mastodon.example
    token: ${MASTODON_TOKEN}
    max_length: 30
"""

CASES = [
    # -- the file itself ---------------------------------------------------------------------
    Case(
        "non-utf8",
        b"items:\n  - id: tip\n    title: caf\xe9\n",
        f"{C}:3:15",
        ("0xe9", "not valid UTF-8", "save the file as UTF-8"),
    ),
    Case(
        "tab-indentation",
        "items:\n\t- id: tip\n",
        f"{C}:2:1",
        ("tab character", "indentation", "spaces"),
    ),
    Case(
        "yaml-syntax-colon-in-value",
        CAL + "    title: Note: bring a pen\n    at: 2026-12-10\n",
        f"{C}:5:16",
        ("invalid YAML", "mapping values are not allowed", "must be quoted"),
    ),
    Case(
        "unclosed-quote",
        CAL + '    title: "open\n',
        f"{C}:5:12",
        ("invalid YAML", "quoted scalar", "close the quote"),
    ),
    Case(
        "duplicate-key",
        CAL + "    at: 2026-12-10 09:00\n    at: 2026-12-11 09:00\n",
        f"{C}:6:5",
        ("duplicate key 'at'", "first written at line 5", "YAML keeps only one"),
    ),
    Case(
        "alias-bomb",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n"
            for i in range(8)
        )
        + "items: []\n",
        f"{C}:",
        ("alias bomb", "more than 200,000"),
    ),
    Case(
        "multiple-documents",
        CAL + "    at: 2026-12-10 09:00\n---\nitems: []\n",
        f"{C}:6:1",
        ("more than one YAML document", "one document per file"),
    ),
    Case("empty-file", "", f"{C}:1:1", ("file is empty", "items:")),
    Case("comments-only", "# nothing yet\n", f"{C}:1:1", ("file is empty", "items:")),
    Case(
        "top-level-list",
        "- id: tip\n  at: 2026-12-10\n",
        f"{C}:1:1",
        ("calendar file must be a mapping", "not a list", "items:"),
    ),
    Case(
        "control-character",
        CAL + "    at: 2026-12-10 09:00\n    title: Hello\x1b[0m\n",
        f"{C}:6:17",
        ("control character U+001B", "delete it"),
    ),
    Case(
        "alias-inside-itself",
        "loop: &loop [*loop]\n" + CAL + "    at: 2026-12-10 09:00\n",
        f"{C}:1:7",
        ("alias (*name) refers to a value that contains it",),
    ),
    # -- calendar and item structure ---------------------------------------------------------
    Case(
        "unknown-top-key",
        "itmes: []\n",
        f"{C}:1:1",
        ("unknown key 'itmes'", "did you mean 'items'"),
    ),
    Case(
        "unknown-item-key",
        CAL + "    at: 2026-12-10 09:00\n    tempalte: posts/tip\n",
        f"{C}:6:5",
        ("unknown key 'tempalte'", "did you mean 'template'"),
    ),
    Case(
        "key-of-another-kind",
        CAL + "    at: 2026-12-10 09:00\n    reminders: [-1h]\n",
        f"{C}:6:5",
        ("'reminders' belongs to kind event", "not post", "set kind: event"),
    ),
    Case(
        "list-where-mapping",
        CAL + "    schedule: [cron, '0 9 * * *']\n",
        f"{C}:5:15",
        ("schedule must be a mapping", "not a list"),
    ),
    Case(
        "mapping-where-list",
        "items:\n  id: tip\n",
        f"{C}:2:3",
        ("items must be a list", "not a mapping", "- value"),
    ),
    Case(
        "item-not-mapping",
        "items:\n  - tip\n",
        f"{C}:2:5",
        ("an item must be a mapping", "not 'tip'", "'- id: name'"),
    ),
    Case(
        "missing-id",
        "items:\n  - template: posts/tip\n    channels: [console]\n    at: 2026-12-10 09:00\n",
        f"{C}:2:5",
        ("item has no id", "add id:"),
    ),
    Case(
        "duplicate-item-id",
        CAL + "    at: 2026-12-10 09:00\n" + OK_ITEM + "    at: 2026-12-11 09:00\n",
        f"{C}:6:9",
        ("duplicate item id 'tip'", "first at line 2", "unique"),
    ),
    Case(
        "invalid-id-characters",
        "items:\n  - id: tip of the week\n    template: posts/tip\n"
        "    channels: [console]\n    at: 2026-12-10 09:00\n",
        f"{C}:2:9",
        ("item id 'tip of the week'", "only letters, digits", "ids appear in URLs"),
    ),
    Case(
        "unknown-kind",
        CAL + "    kind: pots\n    at: 2026-12-10 09:00\n",
        f"{C}:5:11",
        ("unknown kind 'pots'", "did you mean 'post'"),
    ),
    Case(
        "unknown-channel",
        "items:\n  - id: tip\n    template: posts/tip\n"
        "    channels: [consol]\n    at: 2026-12-10 09:00\n",
        f"{C}:4:16",
        ("unknown channel 'consol'", "not in commcal.yaml", "did you mean 'console'"),
    ),
    Case(
        "missing-channels",
        "items:\n  - id: tip\n    template: posts/tip\n    at: 2026-12-10 09:00\n",
        f"{C}:2:5",
        ("has no channels", "add channels:"),
    ),
    Case(
        "unknown-template",
        "items:\n  - id: tip\n    template: posts/tips\n"
        "    channels: [console]\n    at: 2026-12-10 09:00\n",
        f"{C}:3:15",
        ("template 'posts/tips' not found", "did you mean 'posts/tip'"),
    ),
    Case(
        "missing-template",
        "items:\n  - id: tip\n    channels: [console]\n    at: 2026-12-10 09:00\n",
        f"{C}:2:5",
        ("has no template", "add template:"),
    ),
    Case(
        "same-calendar-name-twice",
        "calendar: news\n" + CAL + "    at: 2026-12-10 09:00\n",
        "calendars/d.yaml:1:1",
        ("calendar name 'news' is already used by calendars/c.yaml", "unique name"),
        extra_calendars={"d.yaml": "calendar: news\n" + CAL + "    at: 2026-12-11 09:00\n"},
    ),
    # -- cron ----------------------------------------------------------------------------------
    Case(
        "cron-field-count",
        CAL + "    schedule: {cron: '0 9 * *'}\n",
        f"{C}:5:22",
        ("invalid cron '0 9 * *'", "5 fields", "this one has 4", "minute hour"),
    ),
    Case(
        "cron-out-of-range",
        CAL + "    schedule: {cron: '0 24 * * *'}\n",
        f"{C}:5:22",
        ("hour value 24 is outside 0-23",),
    ),
    Case(
        "cron-bad-name",
        CAL + "    schedule: {cron: '0 9 * * MOM'}\n",
        f"{C}:5:22",
        ("day of week value 'MOM'", "SUN-SAT"),
    ),
    Case(
        "cron-zero-step",
        CAL + "    schedule: {cron: '*/0 9 * * *'}\n",
        f"{C}:5:22",
        ("minute step '0'", "above 0"),
    ),
    Case(  # FRI-MON was refused here until issue 15: a weekday range now wraps round the week
        "cron-backwards-range",
        CAL + "    schedule: {cron: '0 18-9 * * *'}\n",
        f"{C}:5:22",
        ("hour range '18-9' runs backwards", "9-18"),
    ),
    Case(
        "cron-not-text",
        CAL + "    schedule: {cron: [0, 9]}\n",
        f"{C}:5:22",
        ("cron must be text", "not a list"),
    ),
    Case(
        "cron-day-and-weekday-warning",
        CAL + "    schedule: {cron: '0 9 13 * FRI'}\n",
        f"{C}:5:22",
        ("warning", "restricts both day of month and day of week", "split it into two items"),
        exit=0,
    ),
    # -- zones, locales -----------------------------------------------------------------------
    Case(
        "bad-time-zone",
        "timezone: Europe/Athen\n" + CAL + "    at: 2026-12-10 09:00\n",
        f"{C}:1:11",
        ("unknown time zone 'Europe/Athen'", "did you mean 'Europe/Athens'"),
    ),
    Case(
        "bad-locale",
        "locale: xx\n" + CAL + "    at: 2026-12-10 09:00\n",
        f"{C}:1:9",
        ("unknown locale 'xx'", "el (Greek)"),
    ),
    # -- YAML 1.1 surprises --------------------------------------------------------------------
    Case(
        "unquoted-no",
        CAL + "    at: 2026-12-10 09:00\n    title: no\n",
        f"{C}:6:12",
        ("unquoted 'no'", "yes/no value", 'quote it: "no"'),
    ),
    Case(
        "unquoted-on",
        CAL + "    at: 2026-12-10 09:00\n    vars: {switch: on}\n",
        f"{C}:6:20",
        ("unquoted 'on'", "yes/no value", 'quote it as text: "on"'),
    ),
    Case(
        "sexagesimal",
        CAL + "    at: 2026-12-10 09:00\n    title: 1:30\n",
        f"{C}:6:12",
        ("unquoted '1:30'", "base-60", 'quote it: "1:30"'),
    ),
    Case(
        "date-in-text-field",
        CAL + "    at: 2026-12-10 09:00\n    title: 2026-12-01\n",
        f"{C}:6:12",
        ("unquoted '2026-12-01'", "read as a date", 'quote it: "2026-12-01"'),
    ),
    Case(
        "yes-in-draft",
        CAL + "    at: 2026-12-10 09:00\n    draft: yes\n",
        f"{C}:6:12",
        ("draft: write true or false, not 'yes'",),
    ),
    # -- times and durations -------------------------------------------------------------------
    Case(
        "duration-without-unit",
        "items:\n  - id: meetup\n    kind: event\n"
        "    template: posts/tip\n    channels: [console]\n    at: 2026-12-10 18:00\n"
        "    duration: 90\n",
        f"{C}:7:15",
        ("bare number '90' has no unit", "90m"),
    ),
    Case(
        "duration-bad-unit",
        "items:\n  - id: meetup\n    kind: event\n"
        "    template: posts/tip\n    channels: [console]\n    at: 2026-12-10 18:00\n"
        "    duration: 1x\n",
        f"{C}:7:15",
        ("must be a duration like 90m", "not '1x'"),
    ),
    Case(
        "impossible-date",
        CAL + "    at: 2026-02-30 09:00\n",
        f"{C}:5:9",
        ("'2026-02-30 09:00' is not a real date",),
    ),
    Case(
        "year-typo",
        CAL + "    at: 0226-12-10 09:00\n",
        f"{C}:5:9",
        ("year 226 is outside 1970-2999", "typo"),
    ),
    Case(
        "absurd-duration",
        CAL + "    schedule: {every: 99999999999w, start: 2026-12-01}\n",
        f"{C}:5:23",
        ("'99999999999w' is longer than 10 years",),
    ),
    Case(
        "not-a-datetime",
        CAL + "    at: next tuesday\n",
        f"{C}:5:9",
        ("must be a date and time like 2026-12-10 18:00", "not 'next tuesday'"),
    ),
    Case(
        "until-before-start",
        CAL + "    schedule:\n      cron: '0 9 * * *'\n"
        "      start: 2026-12-10\n      until: 2026-12-01\n",
        f"{C}:8:14",
        ("schedule.until is not after schedule.start",),
    ),
    Case(
        "every-without-start",
        CAL + "    schedule: {every: 2h}\n",
        f"{C}:5:15",
        ("every: needs start:", "start: 2026-12-01 09:00"),
    ),
    Case(
        "every-and-cron",
        CAL + "    schedule: {every: 2h, cron: '0 9 * * *', start: 2026-12-01}\n",
        f"{C}:5:15",
        ("exactly one of cron or every",),
    ),
    Case(
        "at-and-schedule",
        CAL + "    at: 2026-12-10 09:00\n    schedule: {cron: '0 9 * * *'}\n",
        f"{C}:6:15",
        ("both 'at' and 'schedule'", "one schedule form"),
    ),
    Case("no-schedule", CAL, f"{C}:2:5", ("has no schedule", "add at:")),
    # -- polls, contests, events ---------------------------------------------------------------
    Case(
        "poll-one-option",
        "items:\n  - id: vote\n    kind: poll\n    template: posts/tip\n"
        "    channels: [console]\n    at: 2026-12-10 09:00\n    question: Tea or coffee?\n"
        "    options: [Tea]\n",
        f"{C}:8:14",
        ("a poll has 2 to 4 options", "this one has 1"),
    ),
    Case(
        "poll-five-options",
        "items:\n  - id: vote\n    kind: poll\n    template: posts/tip\n"
        "    channels: [console]\n    at: 2026-12-10 09:00\n    question: Which day?\n"
        "    options: [Mon, Tue, Wed, Thu, Fri]\n",
        f"{C}:8:14",
        ("a poll has 2 to 4 options", "this one has 5"),
    ),
    Case(
        "poll-duplicate-options",
        "items:\n  - id: vote\n    kind: poll\n"
        "    template: posts/tip\n    channels: [console]\n    at: 2026-12-10 09:00\n"
        "    question: Tea or coffee?\n    options: [Tea, Coffee, Tea]\n",
        f"{C}:8:28",
        ("poll option 'Tea' is listed twice",),
    ),
    Case(
        "contest-without-steps",
        "items:\n  - id: draw\n    kind: contest\n"
        "    template: posts/tip\n    channels: [console]\n    opens: 2026-12-05 10:00\n"
        "    closes: 2026-12-12 10:00\n",
        f"{C}:2:5",
        ("needs steps:", "name: opens"),
    ),
    Case(
        "contest-bad-anchor",
        "items:\n  - id: draw\n    kind: contest\n"
        "    template: posts/tip\n    channels: [console]\n    opens: 2026-12-05 10:00\n"
        "    closes: 2026-12-12 10:00\n    steps:\n      - {name: last-call, at: closes-1x}\n",
        f"{C}:9:31",
        ("'1x' is not a duration", "closes-1d"),
    ),
    Case(
        "contest-closes-before-opens",
        "items:\n  - id: draw\n    kind: contest\n"
        "    template: posts/tip\n    channels: [console]\n    opens: 2026-12-12 10:00\n"
        "    closes: 2026-12-05 10:00\n    steps:\n      - {name: open, at: opens}\n",
        f"{C}:7:13",
        ("closes is not after opens",),
    ),
    Case(
        "event-without-at",
        "items:\n  - id: meetup\n    kind: event\n    template: posts/tip\n"
        "    channels: [console]\n",
        f"{C}:2:5",
        ("is an event and needs at:",),
    ),
    Case(
        "duplicate-reminder",
        "items:\n  - id: meetup\n    kind: event\n    template: posts/tip\n"
        "    channels: [console]\n    at: 2026-12-10 18:00\n    reminders: [-1d, -60m, -1h]\n",
        f"{C}:7:28",
        ("reminder -1h is listed twice",),
    ),
    # -- commcal.yaml: exit 2 ------------------------------------------------------------------
    Case(
        "channel-unknown-type",
        CAL + "    at: 2026-12-10 09:00\n",
        "commcal.yaml:3:3",
        ("unknown channel type 'mastodn'", "mastodon, matrix"),
        exit=2,
        config="timezone: UTC\nchannels:\n  console: {type: mastodn}\n",
    ),
    Case(
        "channel-literal-secret",
        CAL + "    at: 2026-12-10 09:00\n",
        "commcal.yaml:3:3",
        ("setting 'token' is a secret", "${CONSOLE_TOKEN}"),
        exit=2,
        config="timezone: UTC\nchannels:\n  console:\n    type: mastodon\n"
        "    token: s3cr3t-value\n    instance: https://mastodon.example\n",
    ),
    Case(
        "channel-missing-setting",
        CAL + "    at: 2026-12-10 09:00\n",
        "commcal.yaml:3:3",
        ("setting 'instance' is required", "mastodon.social"),
        exit=2,
        config="timezone: UTC\nchannels:\n  console:\n    type: mastodon\n"
        "    token: ${MASTODON_TOKEN}\n",
    ),
    Case(
        "bad-state-url",
        CAL + "    at: 2026-12-10 09:00\n",
        "commcal.yaml:1:8",
        ("state 'state.db' is not a store URL", "sqlite:///"),
        exit=2,
        config="state: state.db\n" + DEFAULT_CONFIG,
    ),
    Case(
        "bad-max-attempts",
        CAL + "    at: 2026-12-10 09:00\n",
        "commcal.yaml:2:17",
        ("publish.max_attempts must be within 1..100", "not 0"),
        exit=2,
        config="publish:\n  max_attempts: 0\n" + DEFAULT_CONFIG,
    ),
    Case(
        "config-unknown-key",
        CAL + "    at: 2026-12-10 09:00\n",
        "commcal.yaml:1:1",
        ("unknown key 'timezon'", "did you mean 'timezone'"),
        exit=2,
        config="timezon: UTC\nchannels:\n  console: {type: console}\n",
    ),
    Case(
        "config-bad-zone",
        CAL + "    at: 2026-12-10 09:00\n",
        "commcal.yaml:1:11",
        ("unknown time zone 'Africa/Nairobe'", "did you mean 'Africa/Nairobi'"),
        exit=2,
        config="timezone: Africa/Nairobe\nchannels:\n  console: {type: console}\n",
    ),
    Case(
        "config-tab",
        CAL + "    at: 2026-12-10 09:00\n",
        "commcal.yaml:3:1",
        ("tab character",),
        exit=2,
        config="channels:\n  console:\n\ttype: console\n",
    ),
    # -- templates and messages ----------------------------------------------------------------
    Case(
        "jinja-syntax-error",
        CAL + "    at: 2026-12-10 09:00\n",
        "templates/posts/tip.j2:2",
        ("template syntax error", "endif", "item 'tip'"),
        templates={"posts/tip.j2": "Hello\n{% if item.id %}open\n"},
    ),
    Case(
        "undefined-variable",
        CAL + "    at: 2026-12-10 09:00\n",
        "templates/posts/tip.j2:2",
        ("'brand' is undefined", "item 'tip'", "calendars/c.yaml"),
        templates={"posts/tip.j2": "Hello\n{{ brand }} says hi\n"},
    ),
    Case(
        "over-length-limit",
        CAL.replace("channels: [console]", "channels: [social]") + "    at: 2026-12-10 09:00\n",
        f"{C}:2:9",
        ("text is 40 characters", "over mastodon's limit of 30 by 10"),
        config=MASTODON_30,
        templates={"posts/tip.j2": "x" * 40 + "\n"},
    ),
]


@pytest.mark.parametrize("case", [c.param() for c in CASES])
def test_bad_input_is_explained(make_project: MakeProject, case: Case) -> None:
    calendars: dict[str, str | bytes] = {} if case.calendar is None else {"c.yaml": case.calendar}
    calendars.update(case.extra_calendars)
    root = make_project(config=case.config, calendars=calendars, templates=case.templates)
    started = time.monotonic()
    result = run(root, case.command, *(("--days", "30") if case.command == "plan" else ()))
    assert time.monotonic() - started < 10
    assert_clean(result)
    assert result.exit_code == case.exit, result.output
    lines = [line for line in result.output.splitlines() if line.startswith(case.where)]
    assert lines, f"nothing reported at {case.where}:\n{result.output}"
    for word in case.words:
        assert any(word in line for line in lines), f"{word!r} missing:\n{result.output}"


def test_case_count() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 35


def test_several_problems_reported_together_in_line_order(make_project: MakeProject) -> None:
    root = make_project(
        calendars={
            "b.yaml": "items:\n"
            "  - id: one\n"
            "    template: posts/tip\n"
            "    channels: [consol]\n"  # 4:16
            "    at: 2026-12-10 09:00\n"
            "  - id: two\n"
            "    template: posts/tip\n"
            "    channels: [console]\n"
            "    schedule: {cron: '0 25 * * *'}\n"  # 9:22
            "    title: no\n",  # 10:12
            "a.yaml": "items:\n  - id: three\n    kind: pots\n",  # 3:11
        }
    )
    result = run(root)
    assert_clean(result)
    assert result.exit_code == 1
    where = re.findall(r"^(calendars/\S+?:\d+:\d+): error", result.output, re.MULTILINE)
    assert where == [
        "calendars/a.yaml:3:11",
        "calendars/b.yaml:4:16",
        "calendars/b.yaml:9:22",
        "calendars/b.yaml:10:12",
    ]
    assert "4 errors" in result.output


def test_config_and_calendar_problems_together_exit_2(make_project: MakeProject) -> None:
    root = make_project(
        config="timezone: Mars/Olympus\nchannels:\n  console: {type: console}\n",
        calendars={"c.yaml": "items:\n  - id: tip\n    kind: pots\n"},
    )
    result = run(root)
    assert_clean(result)
    assert result.exit_code == 2
    assert "commcal.yaml:1:11: error: unknown time zone 'Mars/Olympus'" in result.output
    assert "calendars/c.yaml:3:11: error: unknown kind 'pots'" in result.output


def test_plan_refuses_bad_calendars_with_positions(make_project: MakeProject) -> None:
    root = make_project(calendars={"c.yaml": CAL + "    schedule: {cron: '0 9 * * MOM'}\n"})
    result = run(root, "plan")
    assert_clean(result)
    assert result.exit_code == 1
    assert "calendars/c.yaml:5:22: error:" in result.output
    assert "1 problem found" in result.output


def test_plan_shows_a_post_over_the_length_limit(make_project: MakeProject) -> None:
    root = make_project(
        config=MASTODON_30,
        calendars={"c.yaml": CAL.replace("[console]", "[social]") + "    at: 2026-12-10 09:00\n"},
        templates={"posts/tip.j2": "x" * 40 + "\n"},
    )
    result = run(root, "plan", "--days", "30")
    assert_clean(result)
    assert result.exit_code == 1
    assert "40/30" in result.output
    assert "text is 40" in result.output  # the table may cut the reason; validate has it all


def test_alias_bomb_is_fast(make_project: MakeProject) -> None:
    levels = "".join(f"l{i + 1}: &l{i + 1} [{', '.join([f'*l{i}'] * 10)}]\n" for i in range(9))
    root = make_project(calendars={"c.yaml": "l0: &l0 [lol]\n" + levels + "items: []\n"})
    started = time.monotonic()
    result = run(root)
    assert time.monotonic() - started < 5
    assert_clean(result)
    assert result.exit_code == 1
    assert "alias bomb" in result.output


def test_no_project_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["-C", str(tmp_path), "validate"])
    assert_clean(result)
    assert result.exit_code == 2
    assert "no commcal.yaml" in result.output and "commcal init" in result.output


def test_bad_now_is_a_usage_error(make_project: MakeProject) -> None:
    root = make_project(calendars={"c.yaml": CAL + "    at: 2026-12-10 09:00\n"})
    result = CliRunner().invoke(app, ["-C", str(root), "validate", "--now", "tomorrow"])
    assert_clean(result)
    assert result.exit_code == 2
    assert "--now" in result.output and "2026-12-01T09:00:00Z" in result.output
