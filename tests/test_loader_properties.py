"""Property tests for the loader: any input gives a result or Problems, never a crash.

Also: durations round-trip through their text form, and the cron matcher agrees with APScheduler 3's
CronTrigger on UTC (where neither DST issue of DESIGN.md section 3 arises).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from commcal.calendar import yamlnodes
from commcal.calendar.cron import parse_cron
from commcal.errors import Problem
from commcal.project import load_project
from commcal.timeutil import format_duration, parse_duration

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CONFIG = "timezone: Europe/Athens\nchannels:\n  console: {type: console}\n"
TEMPLATE = "Tip {{ item.id }}\n"

# -- inputs ------------------------------------------------------------------------------------

YAMLISH_ALPHABET = st.sampled_from(
    [*"abcxyz019 :-\n\n\n  \t'\"&*!|>[]{},#%@`?.", "- ", ": ", "  ", "no", "on", "1:30"]
)
yamlish_text = st.lists(YAMLISH_ALPHABET, max_size=80).map("".join)

WORDS = [
    "items", "id", "kind", "title", "channels", "template", "vars", "draft", "at", "dates",
    "schedule", "cron", "every", "start", "until", "skip", "question", "options", "duration",
    "reminders", "offset", "opens", "closes", "steps", "name", "calendar", "timezone", "locale",
    "defaults", "event", "poll", "contest", "post", "console", "posts/tip",
]  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10_000, 10_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        [*WORDS, "2026-12-10 09:00", "2026-02-30", "0 9 * * MON", "*/0 * * * *", "90m", "-1h",
         "1x", "0001-01-01", "9999-12-31 23:59", "closes-1d", "opens+2h", "Europe/Athens",
         "Mars/Base", "no", "1:30", "el", "xx"]
    ),
)  # fmt: skip
keys = st.one_of(st.sampled_from(WORDS), st.text(max_size=8))
structures = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=25,
)
item = st.dictionaries(st.sampled_from(WORDS), structures, max_size=8)
calendar_like = st.fixed_dictionaries(
    {"items": st.lists(item, max_size=3)},
    optional=dict.fromkeys(("calendar", "timezone", "locale", "vars", "defaults"), structures),
)

VALID_ITEMS: list[dict[str, object]] = [
    {"id": "tip", "template": "posts/tip", "channels": ["console"], "at": "2026-12-10 09:00"},
    {"id": "weekly", "template": "posts/tip", "channels": ["console"],
     "schedule": {"cron": "0 9 * * MON", "start": "2026-12-01", "until": "2027-01-31",
                  "skip": ["2026-12-28"]}},
    {"id": "often", "template": "posts/tip", "channels": ["console"],
     "schedule": {"every": "36h", "start": "2026-12-01 09:00"}},
    {"id": "vote", "kind": "poll", "template": "posts/tip", "channels": ["console"],
     "dates": ["2026-12-03 10:00", "2026-12-04 10:00"], "question": "Tea?",
     "options": ["Tea", "Coffee"], "duration": "1d"},
    {"id": "meetup", "kind": "event", "template": "posts/tip", "channels": ["console"],
     "at": "2026-12-10 18:00", "duration": "2h",
     "reminders": ["-7d", {"offset": "-1h", "name": "soon"}, "0"]},
    {"id": "draw", "kind": "contest", "template": "posts/tip", "channels": ["console"],
     "opens": "2026-12-05 10:00", "closes": "2026-12-12 10:00",
     "steps": [{"name": "open", "at": "opens"}, {"name": "last", "at": "closes-1d"},
               {"name": "won", "at": "2026-12-14 12:00"}]},
]  # fmt: skip


@st.composite
def mutated_calendars(draw: st.DrawFn) -> dict[str, object]:
    """A valid calendar with a few values replaced: reaches the checks behind the first one."""
    items = [dict(i) for i in draw(st.lists(st.sampled_from(VALID_ITEMS), min_size=1))]
    for chosen in items:
        for key in draw(st.lists(st.sampled_from([*chosen, *WORDS]), max_size=2)):
            chosen[key] = draw(structures)
    return {"calendar": "main", "vars": {"brand": "Us"}, "items": items}


def dumped(value: object) -> str:
    return yaml.safe_dump(value, allow_unicode=True, sort_keys=False)


yaml_documents = st.one_of(structures.map(dumped), calendar_like.map(dumped))


def check_problems(problems: list[Problem], had_content: bool) -> None:
    for problem in problems:
        assert isinstance(problem, Problem)
        assert problem.message
        if had_content:
            assert problem.pos.line >= 1, problem


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("props")


def write_project(root: Path, calendar: str | bytes) -> Path:
    (root / "calendars").mkdir(parents=True, exist_ok=True)
    (root / "templates" / "posts").mkdir(parents=True, exist_ok=True)
    (root / "commcal.yaml").write_text(CONFIG, encoding="utf-8")
    (root / "templates" / "posts" / "tip.j2").write_text(TEMPLATE, encoding="utf-8")
    path = root / "calendars" / "c.yaml"
    if isinstance(calendar, bytes):
        path.write_bytes(calendar)
    else:
        path.write_text(calendar, encoding="utf-8")
    return path


# -- (a) + (b): only Problems or a result --------------------------------------------------------


@FAST
@given(text=st.one_of(yamlish_text, yaml_documents, st.text(max_size=60)))
def test_parse_gives_a_tree_or_problems(text: str) -> None:
    node, problems = yamlnodes.parse(text, "c.yaml")
    assert node is not None or problems
    check_problems(problems, bool(text.strip()))


@FAST
@given(data=st.one_of(st.binary(max_size=80), yamlish_text.map(lambda t: t.encode("utf-8"))))
def test_load_bytes_gives_a_tree_or_problems(workdir: Path, data: bytes) -> None:
    path = workdir / "bytes.yaml"
    path.write_bytes(data)
    node, problems = yamlnodes.load(path, "c.yaml")
    assert node is not None or problems
    check_problems(problems, bool(data.strip()))


@SLOW
@given(
    calendar=st.one_of(
        yaml_documents,
        yamlish_text,
        st.binary(max_size=60),
        calendar_like.map(dumped),
        mutated_calendars().map(dumped),
        mutated_calendars().map(dumped),
    )
)
def test_project_loading_gives_a_project_with_problems(
    workdir: Path, calendar: str | bytes
) -> None:
    from commcal import plan as planning

    root = workdir / "project"
    write_project(root, calendar)
    project = load_project(root, env={})
    had_content = bool(calendar.strip())
    check_problems(project.problems, had_content)
    if not project.errors:  # what loads cleanly also expands, renders and checks cleanly
        start = datetime(2026, 12, 1, tzinfo=UTC)
        for planned in planning.plan(project, start, start + timedelta(days=30)):
            check_problems(list(planned.problems), True)


# -- (c) durations ------------------------------------------------------------------------------

duration_values = st.builds(
    lambda sign, d, h, m, s: sign * timedelta(days=d, hours=h, minutes=m, seconds=s),
    st.sampled_from([1, -1]),
    st.integers(0, 400),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
)


@FAST
@given(value=duration_values)
def test_duration_text_round_trips(value: timedelta) -> None:
    text = format_duration(value)
    assert parse_duration(text) == value
    assert format_duration(parse_duration(text) or timedelta(0)) == text


@FAST
@given(
    sign=st.sampled_from(["", "+", "-"]),
    parts=st.lists(st.sampled_from("wdhms"), min_size=1, max_size=5, unique=True),
    numbers=st.lists(st.integers(0, 999), min_size=5, max_size=5),
)
def test_written_durations_round_trip(sign: str, parts: list[str], numbers: list[int]) -> None:
    units = [u for u in "wdhms" if u in parts]  # parse_duration wants units in this order
    text = sign + "".join(f"{n}{u}" for n, u in zip(numbers, units, strict=False))
    value = parse_duration(text)
    assert value is not None, text
    assert parse_duration(format_duration(value)) == value


# -- (d) cron against APScheduler 3 -------------------------------------------------------------

# crontab day-of-week numbers (0 and 7 = Sunday) -> APScheduler names (its numbers are Monday=0)
APS_DAY = {0: "sun", 1: "mon", 2: "tue", 3: "wed", 4: "thu", 5: "fri", 6: "sat", 7: "sun"}
CRON_DAY_NAME = {0: "SUN", 1: "MON", 2: "TUE", 3: "WED", 4: "THU", 5: "FRI", 6: "SAT", 7: "SUN"}
MONTH_NAME = dict(enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT",
                             "NOV", "DEC"), 1))  # fmt: skip


@st.composite
def cron_piece(draw: st.DrawFn, low: int, high: int) -> tuple[str, set[int]]:
    """One comma-separated piece of a field, and the set of values it means (crontab rules)."""
    form = draw(st.sampled_from(["value", "range", "range-step", "star-step", "value-step"]))
    if form == "star-step":
        step = draw(st.integers(1, high - low))
        return f"*/{step}", set(range(low, high + 1, step))
    a = draw(st.integers(low, high))
    if form == "value":
        return str(a), {a}
    if form == "value-step":
        assume(a < high)
        step = draw(st.integers(1, high - a))
        return f"{a}/{step}", set(range(a, high + 1, step))
    b = draw(st.integers(a, high))
    if form == "range" or a == b:
        return f"{a}-{b}", set(range(a, b + 1))
    step = draw(st.integers(1, b - a))
    return f"{a}-{b}/{step}", set(range(a, b + 1, step))


@st.composite
def cron_field(
    draw: st.DrawFn, low: int, high: int, max_pieces: int = 3, star: bool = True
) -> tuple[str, set[int], str]:
    """(crontab text, values, APScheduler text) for one field."""
    if star and draw(st.booleans()):
        return "*", set(range(low, high + 1)), "*"
    pieces = draw(st.lists(cron_piece(low, high), min_size=1, max_size=max_pieces))
    text = ",".join(p for p, _ in pieces)
    values = set().union(*(v for _, v in pieces))
    return text, values, text


@st.composite
def cron_expressions(draw: st.DrawFn) -> tuple[str, dict[str, str]]:
    """A crontab expression and the same schedule as CronTrigger keyword arguments."""
    minute, _, aps_minute = draw(cron_field(0, 59, max_pieces=2, star=False))
    hour, _, aps_hour = draw(cron_field(0, 23))
    day, _, aps_day = draw(cron_field(1, 31))
    month, months, aps_month = draw(cron_field(1, 12))
    if month != "*" and draw(st.booleans()) and len(months) == 1:
        month = MONTH_NAME[next(iter(months))]  # names are accepted too
    if draw(st.booleans()):
        weekday, weekdays, _ = "*", set(range(7)), None
    else:
        weekday, weekdays, _ = draw(cron_field(0, 7, star=False))
        if draw(st.booleans()) and len(weekdays) == 1:
            weekday = CRON_DAY_NAME[next(iter(weekdays))]
    aps_weekday = "*" if weekday == "*" else ",".join(sorted({APS_DAY[d] for d in weekdays}))
    text = f"{minute} {hour} {day} {month} {weekday}"
    kwargs = {
        "minute": aps_minute,
        "hour": aps_hour,
        "day": aps_day,
        "month": aps_month,
        "day_of_week": aps_weekday,
    }
    return text, kwargs


def aps_instants(kwargs: dict[str, str], start: datetime, end: datetime) -> list[datetime]:
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger(**kwargs, timezone=UTC)
    found: list[datetime] = []
    when = trigger.get_next_fire_time(None, start)
    while when is not None and when < end:
        found.append(when.astimezone(UTC))
        when = trigger.get_next_fire_time(when, when + timedelta(seconds=1))
    return found


@SLOW
@given(
    expression=cron_expressions(),
    start=st.datetimes(datetime(2024, 1, 1), datetime(2030, 12, 31)).map(
        lambda d: d.replace(second=0, microsecond=0, tzinfo=UTC)
    ),
)
def test_cron_matches_apscheduler_on_utc(
    expression: tuple[str, dict[str, str]], start: datetime
) -> None:
    text, kwargs = expression
    end = start + timedelta(days=60)
    ours = parse_cron(text).instants(UTC, start, end)
    assume(len(ours) < 3000)  # keep APScheduler's ~70 us per firing within the time budget
    assert ours == aps_instants(kwargs, start, end), text


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("0 9 * * 0", "2026-12-06T09:00"),  # crontab 0 is Sunday, not Monday
        ("0 9 * * 7", "2026-12-06T09:00"),  # and so is 7
        ("0 9 * * MON-FRI", "2026-12-01T09:00"),
        ("30 6 1 JAN *", "2027-01-01T06:30"),
        ("@weekly", "2026-12-06T00:00"),
    ],
)
def test_cron_examples(text: str, first: str) -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    found = parse_cron(text).instants(UTC, start, start + timedelta(days=60))
    assert found[0] == datetime.fromisoformat(first).replace(tzinfo=UTC)
