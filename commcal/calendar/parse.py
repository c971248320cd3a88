"""Calendar YAML -> model, with every problem collected and positioned."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import Any

from commcal.calendar.cron import CronError, parse_cron
from commcal.calendar.fields import MAX_DURATION, Reader, bounded_duration, did_you_mean
from commcal.calendar.model import (
    KINDS,
    At,
    Calendar,
    Codes,
    CronSchedule,
    Dates,
    Every,
    Item,
    Schedule,
    Step,
    Thread,
    Window,
)
from commcal.calendar.yamlnodes import Node
from commcal.config import Config, read_locale, read_zone

CALENDAR_KEYS = ("calendar", "timezone", "locale", "vars", "defaults", "items", "staff")
DEFAULT_KEYS = ("channels", "template", "kind")
BASE_KEYS = (
    "id",
    "kind",
    "title",
    "channels",
    "template",
    "vars",
    "draft",
    "notes",
    "replies",
    "lint",
    "lang",
    "media",
)
SCHEDULE_KEYS = ("at", "dates", "schedule")
AUDIENCE_KEYS = ("audience", "where", "send_at")
KIND_KEYS: dict[str, tuple[str, ...]] = {
    "post": (*SCHEDULE_KEYS, "thread"),
    "newsletter": (*SCHEDULE_KEYS, *AUDIENCE_KEYS),
    "offer": (*SCHEDULE_KEYS, *AUDIENCE_KEYS, "codes"),
    "survey": (*SCHEDULE_KEYS, *AUDIENCE_KEYS, "survey_url"),
    "poll": (*SCHEDULE_KEYS, "question", "options", "duration", "results"),
    "event": ("at", "duration", "reminders", "audience", "where", "location", "url"),
    "contest": ("opens", "closes", "steps"),
}
REPEAT_KEYS = ("cron", "every", "start", "until", "skip")
STEP_KEYS = ("name", "at", "template")
REMINDER_KEYS = ("offset", "template", "name")
CONTEST_ANCHOR = re.compile(r"^\s*(opens|closes)\s*(?:([+-])\s*(\S+))?\s*$")
POLL_OPTIONS = (2, 4)
# Whether voters see the counts while the poll is open (`live`) or only once it has closed
# (`hidden`): Matrix's disclosed and undisclosed polls (MSC3381).
POLL_RESULTS = ("live", "hidden")


def parse_calendar(
    node: Node,
    path: str,
    config: Config,
    default_name: str,
    templates: Collection[str],
    audiences: Collection[str] = (),
) -> tuple[Calendar | None, list[Any]]:
    """One calendar file's tree -> Calendar. `templates` are the names `render` can resolve,
    `audiences` the names under audiences/."""
    reader = Reader()
    if not reader.mapping(
        node,
        "a calendar file",
        CALENDAR_KEYS,
        "a calendar starts with items: followed by '- id: ...' entries",
    ):
        return None, reader.problems
    name = default_name
    if (n := node.get("calendar")) is not None:
        name = reader.identifier(n, "calendar name") or default_name
    tz = config.timezone
    if (n := node.get("timezone")) is not None:
        tz = read_zone(reader, n, "timezone") or tz
    locale = config.locale
    if (n := node.get("locale")) is not None:
        locale = read_locale(reader, n, "locale") or locale
    cal_vars: dict[str, Any] = {}
    if (n := node.get("vars")) is not None and reader.mapping(n, "vars"):
        cal_vars = reader.value(n, "vars")
    defaults: dict[str, Any] = {}
    if (n := node.get("defaults")) is not None and reader.mapping(n, "defaults", DEFAULT_KEYS):
        if (c := n.get("channels")) is not None:
            defaults["channels"] = _channels(reader, c, config)
        if (t := n.get("template")) is not None:
            defaults["template"] = reader.text(t, "defaults.template")
        if (k := n.get("kind")) is not None:
            defaults["kind"] = reader.choice(k, "kind", KINDS)
    items: list[Item] = []
    items_node = node.get("items")
    if items_node is None:
        reader.problem(
            node.pos,
            "a calendar needs an 'items:' list",
            "add items: with at least one '- id: ...' entry",
        )
    # Errors so far are the file's own (header, defaults): they concern every item.
    file_errors = _errors(reader)
    broken: set[str] = set()
    if items_node is not None:
        seen: dict[str, int] = {}
        for item_node in reader.sequence(items_node, "items"):
            before = _errors(reader)
            item = _item(
                reader, item_node, name, tz, locale, defaults, config, templates, audiences
            )
            if item is None:
                continue
            if _errors(reader) > before:
                broken.add(item.id)
            if item.id in seen:
                reader.problem(
                    item.pos,
                    f"duplicate item id {item.id!r} (first at line {seen[item.id]})",
                    "item ids must be unique in a calendar",
                )
                broken.add(item.id)  # which of the two is meant? neither is published
                continue
            seen[item.id] = item.pos.line
            items.append(item)
        if items_node.kind != "seq":
            file_errors += 1
    # Read after the items: a bad staff: line concerns lint alone, so it stops no publishing.
    staff: tuple[Any, ...] = ()
    if (n := node.get("staff")) is not None:
        from commcal.lintconfig import read_staff

        staff = read_staff(reader, n)
    name_node = node.get("calendar")
    calendar = Calendar(
        name,
        path,
        tz,
        locale,
        cal_vars,
        tuple(items),
        name_node.pos if name_node else None,
        broken_items=frozenset(broken),
        broken=file_errors > 0,
        staff=staff,
    )
    return calendar, reader.problems


def _errors(reader: Reader) -> int:
    return sum(1 for p in reader.problems if p.severity == "error")


def _channels(reader: Reader, node: Node, config: Config) -> tuple[str, ...]:
    names: list[str] = []
    for entry in reader.sequence(node, "channels", allow_single=True):
        name = reader.text(entry, "channel")
        if name is None:
            continue
        if name not in config.channels:
            known = list(config.channels)
            hint = (
                did_you_mean(name, known) if known else "define it under channels: in commcal.yaml"
            )
            reader.problem(entry.pos, f"unknown channel {name!r} (not in commcal.yaml)", hint)
            continue
        if name in names:
            reader.problem(entry.pos, f"channel {name!r} is listed twice")
            continue
        names.append(name)
    return tuple(names)


def _template(reader: Reader, node: Node, what: str, templates: Collection[str]) -> str | None:
    name = reader.text(node, what)
    if name is None:
        return None
    name = name.strip().removesuffix(".j2")
    if name not in templates:
        hint = did_you_mean(name, templates) if templates else "templates/ is empty"
        reader.problem(
            node.pos,
            f"template {name!r} not found under templates/",
            hint or f"create templates/{name}.j2",
        )
        return None
    return name


def _item(
    reader: Reader,
    node: Node,
    calendar: str,
    tz: str,
    locale: str,
    defaults: Mapping[str, Any],
    config: Config,
    templates: Collection[str],
    audiences: Collection[str] = (),
) -> Item | None:
    if not reader.mapping(
        node, "an item", hint="an item is '- id: name' followed by its keys, indented under the id"
    ):
        return None
    id_node = node.get("id")
    if id_node is None:
        reader.problem(node.pos, "item has no id", "add id: a-stable-name (it keys the ledger)")
        return None
    item_id = reader.identifier(id_node, "item id")
    kind = defaults.get("kind") or "post"
    if (n := node.get("kind")) is not None:
        kind = reader.choice(n, "kind", KINDS)
        if kind is None:
            return None
    known = BASE_KEYS + KIND_KEYS[kind]
    other_kinds = _all_kind_keys() - set(known)
    reader.mapping(node, f"item {item_id or '?'} ({kind})", [*known, *other_kinds])
    for key_node, _ in node.entries:
        if key_node.text in other_kinds:
            owners = [k for k, keys in KIND_KEYS.items() if key_node.text in keys]
            reader.problem(
                key_node.pos,
                f"{key_node.text!r} belongs to kind {' or '.join(owners)}, not {kind}",
                f"set kind: {owners[0]}, or remove {key_node.text}:",
            )
    where = f"item {item_id!r}"
    channels = defaults.get("channels") or ()
    if (n := node.get("channels")) is not None:
        before = _errors(reader)
        channels = _channels(reader, n, config)
        if not channels and _errors(reader) == before:
            reader.problem(
                n.pos,
                f"{where} has an empty channels: list, so it would go nowhere",
                "name at least one channel from commcal.yaml, or set draft: true to keep it "
                "unpublished",
            )
    if not channels and (n := node.get("channels")) is None:
        reader.problem(
            node.pos,
            f"{where} has no channels",
            "add channels: [name, ...] or defaults: {channels: [...]} to the calendar",
        )
    thread_node = node.get("thread")
    thread = _thread(reader, thread_node, where, templates) if thread_node is not None else None
    template = defaults.get("template") or ""
    if thread is not None and thread.templates:
        if (n := node.get("template")) is not None:
            reader.problem(
                n.pos,
                f"{where} has both template: and a thread: of templates",
                "remove template: (the thread's first template is the first post), or write "
                "thread: {split: sentences} to cut template:'s text into posts",
            )
        template = thread.templates[0]
    elif (n := node.get("template")) is not None:
        template = _template(reader, n, f"{where} template", templates) or ""
    elif not template and kind not in ("contest",) and thread_node is None:
        reader.problem(node.pos, f"{where} has no template", "add template: posts/name")
    elif not template and thread is not None:
        reader.problem(
            thread.pos,
            f"{where}: thread: {{split: ...}} cuts template:'s text, and there is no template:",
            "add template: posts/name, or list the parts: thread: [posts/part-1, posts/part-2]",
        )
    title = ""
    if (n := node.get("title")) is not None:
        title = reader.text(n, f"{where} title") or ""
    item_vars: dict[str, Any] = {}
    if (n := node.get("vars")) is not None and reader.mapping(n, f"{where} vars"):
        item_vars = reader.value(n, "vars")
    draft = False
    if (n := node.get("draft")) is not None:
        draft = bool(reader.boolean(n, f"{where} draft"))
    fields: dict[str, Any] = {}
    if kind == "event":
        fields = _event(reader, node, where, template, templates)
    elif kind == "contest":
        fields = _contest(reader, node, where, template, templates)
    else:
        fields["schedule"] = _schedule(reader, node, where)
        if kind == "poll":
            fields["poll"] = _poll(reader, node, where)
    fields.update(_audience(reader, node, where, kind, audiences))
    if (n := node.get("lang")) is not None:
        fields["langs"] = _langs(reader, n, where)
    if (n := node.get("replies")) is not None:
        # commcal.lintconfig.REPLIES, written out: lintconfig is imported only for lint: keys
        fields["replies"] = reader.choice(n, f"{where} replies", ("expected", "none")) or ""
    if (n := node.get("media")) is not None:
        from commcal.calendar.media import read_media

        fields["media"] = read_media(
            reader, n, where, root=config.root, channels=channels, locale=locale
        )
    if thread is not None:
        fields["thread"] = thread
    if (n := node.get("lint")) is not None:
        from commcal.lintconfig import read_item_lint

        fields["lint_skip"] = read_item_lint(reader, n, where)
    if item_id is None:
        return None
    return Item(
        calendar=calendar,
        id=item_id,
        kind=kind,
        channels=tuple(channels),
        template=template,
        vars=item_vars,
        draft=draft,
        timezone=tz,
        locale=locale,
        pos=id_node.pos,
        title=title,
        **fields,
    )


THREAD_KEYS = ("parts", "split")
THREAD_EXAMPLE = "e.g. thread: [posts/launch-1, posts/launch-2] or thread: {split: sentences}"


def _thread(reader: Reader, node: Node, where: str, templates: Collection[str]) -> Thread | None:
    """thread: [templates...] (one post each), {split: sentences} (template:'s text cut into
    posts), or {parts: [templates...], split: sentences} (each part cut where too long)."""
    from commcal.calendar.model import SPLITS

    what = f"{where} thread"
    parts_node, split = node, ""
    if node.kind == "map":
        before = _errors(reader)
        reader.mapping(node, what, THREAD_KEYS)
        if (n := node.get("split")) is not None:
            split = reader.choice(n, f"{what} split", SPLITS) or ""
            if not split:
                return None
        elif node.get("parts") is None:
            if _errors(reader) == before:  # not when a key is misspelt: that says it all
                reader.problem(node.pos, f"{what} needs parts: or split:", THREAD_EXAMPLE)
            return None
        parts_node = node.get("parts")  # type: ignore[assignment]
        if parts_node is None:
            return Thread(node.pos, (), split)
    elif node.kind != "seq":
        reader.problem(node.pos, f"{what} must be a list of templates or a mapping", THREAD_EXAMPLE)
        return None
    entries = reader.sequence(parts_node, f"{what} parts")
    if parts_node.kind == "seq" and not entries:
        reader.problem(
            parts_node.pos,
            f"{what} is an empty list, so there is nothing to post",
            "list one template per post: thread: [posts/launch-1, posts/launch-2]",
        )
        return None
    names = [_template(reader, entry, f"{what} part", templates) for entry in entries]
    if any(name is None for name in names) or not names:
        return None
    return Thread(node.pos, tuple(n for n in names if n is not None), split)


def _audience(
    reader: Reader, node: Node, where: str, kind: str, audiences: Collection[str]
) -> dict[str, Any]:
    """audience, where, send_at, codes, survey_url, location, url: who an item reaches."""
    fields: dict[str, Any] = {}
    if (n := node.get("audience")) is not None and (name := reader.text(n, f"{where} audience")):
        if name not in audiences:
            reader.problem(
                n.pos,
                f"{where}: no audience {name!r} under audiences/",
                did_you_mean(name, audiences) if audiences else f"create audiences/{name}.csv",
            )
        fields["audience"] = name
    if (n := node.get("where")) is not None:
        from commcal.audience import parse_where

        if "audience" not in fields:
            reader.problem(n.pos, f"{where}: where: filters an audience; add audience: first")
        fields["where"] = parse_where(reader, n)
    if (n := node.get("send_at")) is not None:
        mode = reader.choice(n, f"{where} send_at", ("calendar", "local"))
        if mode == "local" and "audience" not in fields:
            reader.problem(n.pos, f"{where}: send_at: local needs an audience (members' zones)")
        fields["send_at"] = mode or "calendar"
    if (n := node.get("codes")) is not None:
        fields["codes"] = _codes(reader, n, where)
    for key in ("survey_url", "url", "location"):
        if (n := node.get(key)) is not None:
            fields[key] = reader.text(n, f"{where} {key}") or ""
    return fields


def _codes(reader: Reader, node: Node, where: str) -> Codes | None:
    """codes: {pool: offers/winter.txt} (single-use codes, one per member) or
    {derive: true, prefix: WINTER-} (a code computed from the member, nothing to keep)."""
    if not reader.mapping(node, f"{where} codes", ("pool", "derive", "prefix", "length")):
        return None
    pool, derive = node.get("pool"), node.get("derive")
    if (pool is None) == (derive is None):
        reader.problem(
            node.pos,
            f"{where}: codes needs exactly one of pool: or derive:",
            "e.g. codes: {pool: codes/winter.txt} or codes: {derive: true}",
        )
        return None
    result = Codes(node.pos)
    if pool is not None:
        result = replace(result, pool=reader.text(pool, f"{where} codes.pool") or "")
    elif derive is not None:
        result = replace(result, derive=bool(reader.boolean(derive, f"{where} codes.derive")))
    if (n := node.get("prefix")) is not None:
        result = replace(result, prefix=reader.text(n, f"{where} codes.prefix") or "")
    if (n := node.get("length")) is not None:
        result = replace(result, length=reader.integer(n, f"{where} codes.length", 4, 32) or 8)
    return result


def _all_kind_keys() -> set[str]:
    return {key for keys in KIND_KEYS.values() for key in keys}


def _schedule(reader: Reader, node: Node, where: str) -> Schedule | None:
    given = [key for key in SCHEDULE_KEYS if node.get(key) is not None]
    if not given:
        reader.problem(
            node.pos,
            f"{where} has no schedule",
            "add at: 2026-12-01 09:00, dates: [...], or schedule: {cron: ...}",
        )
        return None
    if len(given) > 1:
        reader.problem(
            (node.get(given[1]) or node).pos,
            f"{where} has both {given[0]!r} and {given[1]!r}",
            "use one schedule form per item",
        )
        return None
    key = given[0]
    value = node.get(key)
    assert value is not None
    if key == "at":
        when = reader.datetime(value, f"{where} at")
        return At(when) if when else None
    if key == "dates":
        times = [reader.datetime(v, f"{where} dates") for v in reader.sequence(value, "dates")]
        good = tuple(t for t in times if t is not None)
        if len(good) != len(set(good)):
            reader.problem(value.pos, f"{where} lists the same date-time twice")
        return Dates(tuple(sorted(set(good), key=_sort_key))) if good else None
    return _repeat(reader, value, where)


def _sort_key(when: datetime) -> tuple[int, datetime]:
    return (0, when.replace(tzinfo=None)) if when.tzinfo is None else (1, when)


def _repeat(reader: Reader, node: Node, where: str) -> Schedule | None:
    if not reader.mapping(node, f"{where} schedule", REPEAT_KEYS):
        return None
    start = until = None
    skip: set[date] = set()
    if (n := node.get("start")) is not None:
        start = reader.datetime(n, f"{where} schedule.start")
    if (n := node.get("until")) is not None:
        until = reader.datetime(n, f"{where} schedule.until")
        if until is not None and not re.search(r"\d:\d", n.text):
            until = until + timedelta(days=1)  # a date-only `until` includes that whole day
    if (n := node.get("skip")) is not None:
        for entry in reader.sequence(n, "skip", allow_single=True):
            day = reader.date(entry, f"{where} schedule.skip")
            if day:
                skip.add(day)
    if start and until and _sort_key(until) <= _sort_key(start):
        until_node = node.get("until")
        assert until_node is not None
        reader.problem(
            until_node.pos,
            f"{where}: schedule.until is not after schedule.start",
            "until: is the last day; make it the same as or later than start:",
        )
    window = Window(start, until, frozenset(skip))
    cron_node, every_node = node.get("cron"), node.get("every")
    if (cron_node is None) == (every_node is None):
        reader.problem(
            node.pos,
            f"{where} schedule needs exactly one of cron or every",
            'e.g. cron: "0 9 * * MON" or every: 2h with start:',
        )
        return None
    if cron_node is not None:
        expression = reader.text(cron_node, f"{where} cron")
        if expression is None:
            return None
        try:
            cron = parse_cron(expression)
        except CronError as exc:
            reader.problem(
                cron_node.pos,
                f"{where}: invalid cron {expression!r}: {exc}",
                'cron fields: minute hour day-of-month month day-of-week, e.g. "0 9 * * MON"',
            )
            return None
        if cron.day_restricted and cron.weekday_restricted:
            reader.problem(
                cron_node.pos,
                f"{where}: cron {expression!r} restricts both day of "
                "month and day of week; commcal fires only on days matching both",
                "classic cron fires on either; split it into two items if you meant that",
                severity="warning",
            )
        return CronSchedule(cron, window)
    assert every_node is not None
    interval = reader.duration(every_node, f"{where} every", allow_negative=False)
    if interval is None:
        return None
    if interval < timedelta(minutes=1):
        reader.problem(every_node.pos, f"{where}: every must be at least 1m")
        return None
    if start is None:
        reader.problem(
            node.pos,
            f"{where}: a schedule with every: needs start:",
            "e.g. start: 2026-12-01 09:00",
        )
        return None
    return Every(interval, start, window)


def _event(
    reader: Reader, node: Node, where: str, template: str, templates: Collection[str]
) -> dict[str, Any]:
    at_node = node.get("at")
    if at_node is None:
        reader.problem(node.pos, f"{where} is an event and needs at: (when it starts)")
        return {}
    when = reader.datetime(at_node, f"{where} at")
    fields: dict[str, Any] = {"anchors": {"at": when} if when else {}}
    if (n := node.get("duration")) is not None:
        fields["duration"] = reader.duration(n, f"{where} duration", allow_negative=False)
    steps: list[Step] = []
    reminders = node.get("reminders")
    entries = reader.sequence(reminders, "reminders") if reminders is not None else []
    if reminders is None:
        steps.append(Step("start", "at", timedelta(0), None, template, at_node.pos))
    for entry in entries:
        step_template, name, offset_node = template, "", entry
        if entry.kind == "map":
            reader.mapping(entry, "a reminder", REMINDER_KEYS)
            offset_node = entry.get("offset") or entry
            if entry.get("offset") is None:
                reader.problem(entry.pos, "a reminder mapping needs offset:", "e.g. offset: -1h")
                continue
            if (t := entry.get("template")) is not None:
                step_template = _template(reader, t, f"{where} reminder template", templates) or ""
            if (t := entry.get("name")) is not None:
                name = reader.text(t, "reminder name") or ""
        offset = reader.duration(offset_node, f"{where} reminder")
        if offset is None:
            continue
        from commcal.timeutil import format_duration

        label = name or ("start" if offset == timedelta(0) else format_duration(offset))
        if any(s.offset == offset for s in steps):
            reader.problem(entry.pos, f"{where}: reminder {label} is listed twice")
            continue
        steps.append(Step(label, "at", offset, None, step_template, entry.pos))
    fields["steps"] = tuple(sorted(steps, key=lambda s: s.offset))
    return fields


def _contest(
    reader: Reader, node: Node, where: str, template: str, templates: Collection[str]
) -> dict[str, Any]:
    anchors: dict[str, datetime] = {}
    for key in ("opens", "closes"):
        n = node.get(key)
        if n is None:
            reader.problem(
                node.pos, f"{where} is a contest and needs {key}:", f"e.g. {key}: 2026-12-05 10:00"
            )
            continue
        when = reader.datetime(n, f"{where} {key}")
        if when:
            anchors[key] = when
    if len(anchors) == 2 and _sort_key(anchors["closes"]) <= _sort_key(anchors["opens"]):
        reader.problem(node.get("closes").pos, f"{where}: closes is not after opens")  # type: ignore[union-attr]
    steps_node = node.get("steps")
    if steps_node is None:
        reader.problem(
            node.pos,
            f"{where} needs steps: (opens, reminders, closes, winners)",
            "e.g. steps: [{name: opens, at: opens, template: contests/open}]",
        )
        return {"anchors": anchors}
    steps: list[Step] = []
    names: set[str] = set()
    for entry in reader.sequence(steps_node, "steps"):
        if not reader.mapping(entry, "a contest step", STEP_KEYS):
            continue
        name_node, at_node = entry.get("name"), entry.get("at")
        if name_node is None or at_node is None:
            reader.problem(
                entry.pos,
                "a contest step needs name: and at:",
                "e.g. {name: last-call, at: closes-1d, template: contests/last-call}",
            )
            continue
        name = reader.identifier(name_node, "step name")
        if name in names:
            reader.problem(name_node.pos, f"{where}: step {name!r} is listed twice")
            continue
        step_template = template
        if (t := entry.get("template")) is not None:
            step_template = _template(reader, t, f"{where} step template", templates) or ""
        elif not template:
            reader.problem(
                entry.pos,
                f"{where}: step {name!r} has no template",
                "give the step a template: or the contest one",
            )
        step = _contest_step(reader, at_node, name or "", step_template, where)
        if step and name:
            names.add(name)
            steps.append(step)
    return {"anchors": anchors, "steps": tuple(steps)}


def _contest_step(reader: Reader, node: Node, name: str, template: str, where: str) -> Step | None:
    text = node.text if node.kind == "scalar" else ""
    match = CONTEST_ANCHOR.match(text)
    if match:
        anchor, sign, amount = match.groups()
        offset = timedelta(0)
        if amount:
            parsed = bounded_duration(amount)
            if parsed is None or not timedelta(0) <= parsed <= MAX_DURATION:
                reader.problem(
                    node.pos,
                    f"{where}: step at {text!r}: {amount!r} is not a duration",
                    "e.g. at: closes-1d or at: opens+7d",
                )
                return None
            offset = -parsed if sign == "-" else parsed
        return Step(name, anchor, offset, None, template, node.pos)
    when = reader.datetime(node, f"{where} step {name!r} at (or opens+7d / closes-1d)")
    return Step(name, "", timedelta(0), when, template, node.pos) if when else None


# A BCP 47 language tag as posts carry one (RFC 5646 section 2.1, without extensions and
# private use): a language, then optionally a script, a region and variants: el, en-GB, pt-BR,
# zh-Hant-TW, sr-Latn.
LANGUAGE_TAG = re.compile(
    r"[A-Za-z]{2,3}(?:-[A-Za-z]{4})?(?:-(?:[A-Za-z]{2}|[0-9]{3}))?"
    r"(?:-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*"
)


def _langs(reader: Reader, node: Node, where: str) -> tuple[str, ...]:
    """`lang: el` or `lang: [el, en]` (a bilingual post, its main language first)."""
    from babel import Locale, UnknownLocaleError

    langs: list[str] = []
    if node.kind == "seq" and not node.items:
        reader.problem(
            node.pos,
            f"{where} lang is an empty list",
            "leave lang: out for the locale's language, or name one: lang: [el, en]",
        )
    for entry in reader.sequence(node, f"{where} lang", allow_single=True):
        tag = reader.text(entry, f"{where} lang")
        if tag is None:
            continue
        tag = tag.strip()
        if not LANGUAGE_TAG.fullmatch(tag):
            hint = "use a language tag such as el, en-GB or pt-BR"
            if "_" in tag:
                hint = f"write {tag.replace('_', '-')!r}: language tags use '-', not '_'"
            reader.problem(entry.pos, f"{where}: {tag!r} is not a language tag", hint)
            continue
        primary = tag.split("-")[0].lower()
        try:
            Locale.parse(primary)
        except (UnknownLocaleError, ValueError):
            reader.problem(
                entry.pos,
                f"{where}: unknown language {primary!r} in lang {tag!r}",
                "use an ISO 639 language code such as en, el (Greek) or sw (Swahili)",
            )
            continue
        if tag.lower() in (known.lower() for known in langs):
            reader.problem(entry.pos, f"{where}: lang {tag!r} is listed twice")
            continue
        langs.append(tag)
    return tuple(langs)


def _poll(reader: Reader, node: Node, where: str) -> dict[str, Any] | None:
    question_node, options_node = node.get("question"), node.get("options")
    if question_node is None or options_node is None:
        reader.problem(node.pos, f"{where} is a poll and needs question: and options:")
        return None
    question = reader.text(question_node, f"{where} question")
    option_nodes = reader.sequence(options_node, "options")
    options = [reader.text(o, f"{where} option") for o in option_nodes]
    low, high = POLL_OPTIONS
    if not low <= len(options) <= high:
        reader.problem(
            options_node.pos,
            f"{where}: a poll has {low} to {high} options, this one has {len(options)}",
        )
    seen: set[str] = set()
    for option, option_node in zip(options, option_nodes, strict=True):
        if option is not None and option in seen:
            reader.problem(
                option_node.pos,
                f"{where}: poll option {option!r} is listed twice",
                "each option must differ",
            )
        seen.add(option or "")
    duration = timedelta(days=1)
    if (n := node.get("duration")) is not None:
        duration = reader.duration(n, f"{where} duration", allow_negative=False) or duration
        if duration < timedelta(minutes=5) or duration > timedelta(days=7):
            reader.problem(
                n.pos,
                f"{where}: poll duration must be between 5m and 7d "
                "(the range every network with native polls accepts)",
            )
    results = "live"
    if (n := node.get("results")) is not None:
        results = reader.choice(n, f"{where} results", POLL_RESULTS) or results
    if question is None or None in options:
        return None
    return {
        "question": question,
        "options": tuple(options),
        "duration": duration,
        "results": results,
    }
