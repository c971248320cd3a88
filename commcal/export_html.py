"""`commcal export html`: the planned deliveries as one self-contained page of month grids.

The page is built from what `plan` builds (`check.plan`: rendered messages, lengths counted the
channel's way, problems), so its numbers are the ones `plan`, `preview` and `validate` show. It
needs no server and makes no request: styles and script are inline, `.ics` invitations are
`data:` links, and a Content-Security-Policy (`default-src 'none'`, the inline style and script
allowed by hash) keeps even a stray tag in a member's text from fetching anything.

The page's frame (head, filters, legend, month tables) is the Jinja template
`views/month.html.j2`, autoescaped. The chips, one per delivery, are written here by
`_Fragments`, where every text from calendars, templates or audiences passes through `esc`
(through Jinja, a year of 50,000 chips cost more than its whole plan again:
bench/export_html.py). The dialogs' content is one JSON data block that `views/month.js`
shows through `textContent` only, so no member text is ever parsed as HTML. Member addresses
never reach the page: mail shows its audience's size, and the one member a mail preview is
rendered for has their address masked in the text.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from commcal.errors import ConfigError, Problem
from commcal.timeutil import iso_utc
from commcal.window import Span

if TYPE_CHECKING:
    from commcal.calendar.model import Item
    from commcal.check import Planned
    from commcal.deliveries import Delivery
    from commcal.project import Project
    from commcal.queue import QueueRow

TEMPLATE = "month.html.j2"
# Chips show this many words of the subject (or text) at most, cut at CHIP_CHARS characters.
CHIP_WORDS = 6
CHIP_CHARS = 48
MASKED_ADDRESS = "‹member address›"
WHEN = "d MMM y, HH:mm"  # CLDR pattern: names in the page's locale, a 24-hour clock

# Channel colours: light backgrounds under near-black text (contrast above 12:1, WCAG AAA) and
# a darker edge of the same hue; red is kept for problems. More channels than colours repeat
# the palette, and every chip also names its channel in text (colour is never the only cue).
PALETTE = (
    ("#dbeafe", "#1d4ed8"),
    ("#dcfce7", "#15803d"),
    ("#fef3c7", "#b45309"),
    ("#f3e8ff", "#7e22ce"),
    ("#cffafe", "#0e7490"),
    ("#fce7f3", "#be185d"),
    ("#ffedd5", "#c2410c"),
    ("#ecfccb", "#4d7c0f"),
    ("#e0e7ff", "#4338ca"),
    ("#e5e7eb", "#374151"),
)

# Suppressed ones among member keys (`Ledger.suppressed`); None: no ledger to ask.
Suppressed = Callable[[Iterable[str]], set[str]]
# A chip's marks: (css class, symbol, words for screen readers).
Flag = tuple[str, str, str]


def esc(text: str) -> str:
    """Text as HTML, safe in element content and in double-quoted attribute values."""
    return html.escape(text, quote=True)


@dataclass(slots=True)
class Day:
    day: date | None  # None: a padding cell before the 1st or after the last
    label: str = ""  # the full date in words, for screen readers
    inside: bool = True  # within the window
    chips: str = ""  # HTML from `_Fragments.chip`, one <li> each


@dataclass(slots=True)
class Month:
    caption: str
    key: str  # 2026-12
    weeks: list[list[Day]]


@dataclass(frozen=True)
class Page:
    html: str
    deliveries: int
    months: int
    with_problems: int


@dataclass(frozen=True, slots=True)
class Audience:
    size: int
    suppressed: int

    @property
    def everyone_left(self) -> bool:
        return self.suppressed > 0 and self.suppressed >= self.size


def check_locale(name: str) -> str:
    """The babel name of a `--locale` value; a name CLDR does not know is a ConfigError."""
    from babel import Locale, UnknownLocaleError

    try:
        Locale.parse(name.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        raise ConfigError(
            f"--locale {name!r}: not a locale CLDR knows; use a language code such as en, "
            "el (Greek) or sw (Swahili)"
        ) from None
    return name.replace("-", "_")


def month_window(now: datetime, tz_name: str) -> Span:
    """The whole month `now` falls in, in the zone `tz_name`: the page's default window."""
    from commcal.timeutil import to_utc, zone

    local = now.astimezone(zone(tz_name))
    first = datetime(local.year, local.month, 1)
    after = datetime(local.year + (local.month == 12), local.month % 12 + 1, 1)
    return Span(to_utc(first, zone(tz_name)), to_utc(after, zone(tz_name)))


def build_page(
    project: Project,
    start: datetime,
    end: datetime,
    *,
    locale: str,
    now: datetime,
    findings: Sequence[Problem] = (),
    suppressed: Suppressed | None = None,
    planned: list[Planned] | None = None,
    status: Sequence[QueueRow] | None = None,
) -> Page:
    """The month view of every delivery in [start, end) as one HTML document.

    `findings`: lint findings (`Problem`s) to show; each is attached to the item whose lines
    hold its position, and all are listed at the top. `suppressed`: asks the ledger which
    member keys are suppressed, so audiences everyone left stand out. `planned`: the result of
    `check.plan` for the window, when the caller has it already. `status`: the queue
    (`commcal.queue.read_queue` over `planned`) of `export html --with-status`: each chip then
    says what the ledger recorded (sent, with its URL in the dialog; failed; unknown; a retry's
    time; a newsletter's counts per state)."""
    from babel import Locale

    from commcal.check import plan
    from commcal.deliveries import fewer_collections

    loc = Locale.parse(check_locale(locale))
    entries = plan(project, start, end) if planned is None else planned
    # Some 300,000 strings for a year's page, all kept to the end: the collector need not
    # scan them again and again (as in `plan`).
    with fewer_collections():
        return _build(project, start, end, loc, now, entries, findings, suppressed, status)


def _build(
    project: Project,
    start: datetime,
    end: datetime,
    loc: Any,
    now: datetime,
    entries: list[Planned],
    findings: Sequence[Problem],
    suppressed: Suppressed | None,
    status: Sequence[QueueRow] | None = None,
) -> Page:
    from commcal.timeutil import zone

    tz_name = project.config.timezone
    tz = zone(tz_name)
    colours = {name: n % len(PALETTE) for n, name in enumerate(project.config.channels)}
    located = _FindingIndex(project, findings)
    audiences = _Audiences(project, suppressed)
    write = _Fragments(now, colours, tz)
    rows = {id(r.planned): r for r in status or () if r.planned is not None}

    groups: dict[tuple[str, str, datetime, str], int] = {}
    dialogs: list[list[Any]] = []
    by_day: dict[date, list[str]] = {}
    with_problems = 0
    for entry in entries:
        d = entry.delivery
        item = d.item
        ok = entry.ok if entry.problems else True
        with_problems += not ok
        occurrence = (item.calendar, item.id, d.occurrence.when, d.occurrence.step)
        group = groups.get(occurrence)
        if group is None:
            group = groups[occurrence] = len(dialogs)
            dialogs.append(write.group(entry))
        audience = audiences.of(item) if d.audience_size >= 0 else None
        day, chip, variant = write.delivery(
            entry, ok, group, audience, located.of(item), rows.get(id(entry))
        )
        dialogs[group][VARIANTS].append(variant)
        by_day.setdefault(day, []).append(chip)
    filters: dict[str, Counter[str]] = {
        "channel": Counter(),
        "calendar": Counter(),
        "kind": Counter(),
    }
    for (calendar, kind, channel), count in write.tally.items():
        filters["calendar"][calendar] += count
        filters["kind"][kind] += count
        filters["channel"][channel] += count

    first_day = start.astimezone(tz).date()
    last_day = (end - timedelta(microseconds=1)).astimezone(tz).date()
    months = _months(loc, first_day, last_day, by_day)
    page = _render(
        project=project,
        loc=loc,
        tz_name=tz_name,
        start=start.astimezone(tz),
        end=end.astimezone(tz),
        now=now.astimezone(tz),
        months=months,
        data=write.data(dialogs),
        filters=filters,
        colours=colours,
        findings=located.listed,
        deliveries=len(entries),
        with_problems=with_problems,
        with_status=status is not None,
    )
    return Page(page, len(entries), len(months), with_problems)


def _first_words(text: str) -> str:
    words = " ".join(text.split(None, CHIP_WORDS)[:CHIP_WORDS])
    return words if len(words) <= CHIP_CHARS else words[: CHIP_CHARS - 1].rstrip() + "…"


def _masked(text: str | None, address: str) -> str:
    if not text:
        return ""
    return text.replace(address, MASKED_ADDRESS) if address else text


def _length(entry: Planned) -> tuple[str, bool]:
    """("123 / 500" or "123" or "", over the limit?)"""
    if entry.length is None:
        return "", False
    if entry.limit is None:
        return str(entry.length), False
    return f"{entry.length} / {entry.limit}", entry.length > entry.limit


def _flags(
    entry: Planned, ok: bool, over: bool, length: str, audience: Audience | None, linted: bool
) -> list[Flag]:
    flags: list[Flag] = []
    if over:
        flags.append(("over", "⚠", f"over the limit: {length}"))
    elif not ok:
        flags.append(("problem", "⚠", "has problems"))
    if entry.delivery.item.draft:
        flags.append(("draft", "✎", "draft: never published"))
    if audience is not None and audience.everyone_left:
        flags.append(("suppressed", "⊘", "every member is suppressed"))
    if linted:
        flags.append(("lint", "!", "lint findings"))
    return flags


# What the ledger recorded, as a chip's mark: state -> (css class, symbol). States not listed
# (next, due, draft) get no mark: the chip itself says "planned".
STATUS_MARKS = {
    "sent": ("st-sent", "✓"),
    "failed": ("st-failed", "✗"),
    "unknown": ("st-unknown", "?"),
    "pending": ("st-retry", "↻"),
    "claimed": ("st-sending", "…"),
    "sending": ("st-sending", "…"),
    "expired": ("st-failed", "✗"),
    "skipped": ("st-skipped", "–"),
}


def _status_flag(row: QueueRow, tz: tzinfo) -> tuple[Flag | None, list[Any]]:
    """(the chip's mark, the dialog's [state as words, URL or null, link it?]) of a queue
    row. A newsletter's mark is its most urgent state's; the words count them all."""
    from commcal.queue import member_counts, state_label

    label = state_label(row, tz)
    state = member_counts(row)[0][0] if row.counts else row.state
    mark = STATUS_MARKS.get(state)
    flag = None if mark is None else (mark[0], mark[1], label)
    return flag, [label, row.url, _safe_link(row.url)]


def _safe_link(url: str | None) -> bool:
    """Whether the dialog may link to `url`: http(s) only. A ledger's URL came from a
    network's answer (or `resolve --sent`); a `javascript:` one is shown as text, never
    made a link."""
    return bool(url) and str(url).lower().startswith(("https://", "http://"))


# One delivery in the dialogs' data, in this order (month.js reads it the same way): id, channel
# (an index into the channel list), time on the page, due (item's zone and UTC), length, over
# the limit, recipients, subject, text, HTML part, problems, lint findings, and with
# --with-status [the state in words, the URL, link it?] or null.
Variant = list[Any]
VARIANTS = 5  # where a dialog's data (`_Fragments.group`) holds its variants


class _Fragments:
    """The chips (HTML) and the dialogs' data (JSON, shown by month.js through textContent).
    Each value from calendars, templates or audiences in a chip passes through `esc` (names
    repeat: escaped once each); ids, times, counts and palette numbers are commcal's own."""

    def __init__(self, now: datetime, colours: dict[str, int], tz: tzinfo) -> None:
        self.now = now
        self.colours = colours
        self.tz = tz
        # Deliveries share instants (every channel of an occurrence, weekly slots): each
        # (instant, item zone) is formatted once: (day on the page, HH:MM there, due text).
        self.instants: dict[tuple[datetime, str], tuple[date, str, str]] = {}
        self.tally: dict[tuple[str, str, str], int] = {}  # (calendar, kind, channel) -> count
        self.names: dict[str, str] = {}
        self.channels: dict[tuple[str, str], int] = {}  # (name, type) -> index in the data
        self.invitations: dict[tuple[str, str, datetime], list[str]] = {}
        self.thumbnails: dict[str, str] = {}  # media path -> data: URI ("" for none)
        self._shared: dict[tuple[str, str, str], tuple[str, str, int]] = {}

    def name(self, text: str) -> str:
        found = self.names.get(text)
        if found is None:
            found = self.names[text] = esc(text)
        return found

    def delivery(
        self,
        entry: Planned,
        ok: bool,
        group: int,
        audience: Audience | None,
        findings: tuple[str, ...],
        row: QueueRow | None = None,
    ) -> tuple[date, str, Variant]:
        """(the day on the page, the chip's <li>, the dialog's data) of one delivery."""
        d = entry.delivery
        message = entry.message
        # A mail preview is rendered for one real member: their address never reaches the page.
        address = message.recipient.email if message and message.recipient else ""
        chip_head, chip_words, channel = self._heads(d)
        day, time, due = self._instant(d.due, d.item.timezone)
        length, over = _length(entry)
        flags: list[Flag] = []
        if not ok or d.item.draft or findings or (audience is not None and audience.suppressed):
            flags = _flags(entry, ok, over, length, audience, bool(findings))
        status: list[Any] | None = None
        if row is not None:
            flag, status = _status_flag(row, self.tz)
            if flag is not None:
                flags.append(flag)
        subject = text = html_part = ""
        if message is not None:
            subject, text, html_part = message.subject or "", message.text, message.html or ""
            if address:
                subject, text, html_part = (
                    _masked(subject, address),
                    _masked(text, address),
                    _masked(html_part, address),
                )
        classes = marks = ""
        if flags:
            classes = "".join(" " + flag[0] for flag in flags)
            marks = "".join(
                f' <span class="mark {css}" aria-hidden="true">{symbol}</span>'
                f'<span class="sr">({esc(said)})</span>'
                for css, symbol, said in flags
            )
        chip = (
            f'{chip_head}{classes}" data-group="{group}" data-delivery="{d.id}" '
            f'aria-haspopup="dialog"><span class="t">{time}</span>'
            f"{chip_words}{esc(_first_words(subject or text))}</span>{marks}</button></li>\n"
        )
        variant = [
            d.id,
            channel,
            time,
            due,
            length,
            over,
            _recipients(d, audience) if d.audience_size >= 0 else "",
            subject,
            text,
            html_part,
            [_masked(str(p), address) for p in entry.problems] if entry.problems else (),
            findings,
            status,
            self._media(entry),
        ]
        return day, chip, variant

    def _media(self, entry: Planned) -> list[list[str]]:
        """[alt text, caption, thumbnail data: URI or ""] of each file of the message: a
        thumbnail is made once per file, however many deliveries show it."""
        message = entry.message
        if message is None or not message.media:
            return []
        from commcal.mediacheck import summaries, summary_line, thumbnail

        shown = summaries(message, entry.delivery.item.media_for(entry.delivery.channel))
        out = []
        for media, summary in zip(message.media, shown, strict=True):
            thumb = self.thumbnails.get(media.path)
            if thumb is None:
                thumb = self.thumbnails[media.path] = thumbnail(media)
            caption = summary_line(summary).split("\n", 1)[0]
            out.append([media.alt, caption, thumb])
        return out

    def _instant(self, when: datetime, item_zone: str) -> tuple[date, str, str]:
        found = self.instants.get((when, item_zone))
        if found is None:
            from commcal.timeutil import zone

            here = when.astimezone(self.tz)
            there = when.astimezone(zone(item_zone)).isoformat(" ", "minutes")[:16]
            found = self.instants[when, item_zone] = (
                here.date(),
                f"{here.hour:02d}:{here.minute:02d}",
                f"{there} {item_zone} · {iso_utc(when)}",
            )
        return found

    def _heads(self, d: Delivery) -> tuple[str, str, int]:
        """What every chip of one item kind and calendar on one channel shares, escaped once,
        and the channel's index in the data; counted for the filters."""
        key = (d.item.calendar, d.item.kind, d.channel)
        self.tally[key] = self.tally.get(key, 0) + 1
        found = self._shared.get(key)
        if found is None:
            channel = self.name(d.channel)
            colour = self.colours.get(d.channel, 0)
            found = self._shared[key] = (
                f'<li data-channel="{channel}" data-calendar="{self.name(d.item.calendar)}" '
                f'data-kind="{self.name(d.item.kind)}"><button type="button" '
                f'class="chip ch-{colour}',
                f' <span class="chn">{channel}:</span> <span class="w">',
                self.channels.setdefault((d.channel, d.channel_type), len(self.channels)),
            )
        return found

    def group(self, entry: Planned) -> list[Any]:
        """A dialog's data: [title, kind, calendar, draft, the event's invitation [file name,
        data: URL] or null, its variants] (month.js reads it in this order)."""
        d = entry.delivery
        item = d.item
        title = item.title or item.id
        if d.occurrence.step:
            title += f" ({d.occurrence.step})"
        ics = None
        event_at = d.occurrence.extra.get("event_at")
        if item.kind == "event" and isinstance(event_at, datetime):
            ics_key = (item.calendar, item.id, event_at)
            ics = self.invitations.get(ics_key)
            if ics is None:
                ics = self.invitations[ics_key] = list(_invitation(item, entry, self.now))
        return [title, item.kind, item.calendar, item.draft, ics, []]

    def data(self, groups: list[list[Any]]) -> str:
        """The dialogs' data as JSON that is safe inside <script type="application/json">:
        no `<` in it, so no text can end the element or open a comment there (the only
        character the HTML parser looks for in a script's text)."""
        import json

        channels = [
            [name, kind, self.colours.get(name, 0)]
            for (name, kind), _ in sorted(self.channels.items(), key=lambda pair: pair[1])
        ]
        text = json.dumps(
            {"channels": channels, "groups": groups}, ensure_ascii=False, separators=(",", ":")
        )
        return text.replace("<", "\\u003c")


def _recipients(d: Delivery, audience: Audience | None) -> str:
    from commcal.timeutil import zone

    text = f"{d.audience_size} member{'s' if d.audience_size != 1 else ''}"
    if d.zone:
        text += f" in {d.zone} at {d.due.astimezone(zone(d.zone)):%H:%M} there"
    if audience is not None and audience.suppressed:
        text += f"; {audience.suppressed} of the audience's {audience.size} are suppressed"
    return text


def _invitation(item: Item, entry: Planned, now: datetime) -> tuple[str, str]:
    """(file name, data: URL) of the event's .ics, made the way mail attachments make it."""
    from commcal.compose import event_invitation

    text = entry.message.text if entry.message else ""
    if entry.message and entry.message.recipient:
        text = _masked(text, entry.message.recipient.email)
    _, mime, data = event_invitation(item, entry.delivery, text, now=now)
    encoded = base64.b64encode(data).decode("ascii")
    return f"{item.id}.ics", f"data:{mime.replace(' ', '')};base64,{encoded}"


class _Audiences:
    """Each audience item's size and how many of its members are suppressed, read once."""

    def __init__(self, project: Project, suppressed: Suppressed | None) -> None:
        self.project = project
        self.suppressed = suppressed
        self.seen: dict[tuple[str, str], Audience] = {}

    def of(self, item: Item) -> Audience:
        key = (item.calendar, item.id)
        found = self.seen.get(key)
        if found is None:
            found = self.seen[key] = self._count(item)
        return found

    def _count(self, item: Item) -> Audience:
        from commcal.audience import members

        if item.audience is None:
            return Audience(0, 0)
        # The audience file's own errors are `check`'s problems, shown with the delivery.
        found = members(self.project.root, item.audience, item.where, problems=[])
        keys = [person.key for person in found]
        blocked = self.suppressed(keys) if self.suppressed is not None and keys else set()
        return Audience(len(keys), len(blocked))


class _FindingIndex:
    """Attaches each finding to the item whose lines hold its position: an item runs from its
    own line to the next item's line in the same file."""

    def __init__(self, project: Project, findings: Sequence[Problem]) -> None:
        import bisect

        starts: dict[str, list[tuple[int, tuple[str, str]]]] = {}
        for calendar in project.calendars:
            for item in calendar.items:
                starts.setdefault(item.pos.path, []).append(
                    (item.pos.line, (item.calendar, item.id))
                )
        for marks in starts.values():
            marks.sort()
        self.by_item: dict[tuple[str, str], list[str]] = {}
        self.listed: list[tuple[str, str, str]] = []  # (severity, position, text)
        for finding in findings:
            self.listed.append((finding.severity, str(finding.pos), _finding_text(finding)))
            marks = starts.get(finding.pos.path, [])
            lines = [line for line, _ in marks]
            at = bisect.bisect_right(lines, finding.pos.line) - 1
            if finding.pos.line and at >= 0:
                self.by_item.setdefault(marks[at][1], []).append(str(finding))
        self.empty: tuple[str, ...] = ()

    def of(self, item: Item) -> tuple[str, ...]:
        found = self.by_item.get((item.calendar, item.id))
        return tuple(found) if found else self.empty


def _finding_text(problem: Problem) -> str:
    return f"{problem.message} ({problem.hint})" if problem.hint else problem.message


def _months(loc: Any, first: date, last: date, by_day: dict[date, list[str]]) -> list[Month]:
    from babel.dates import format_date

    months = []
    week_start = loc.first_week_day  # 0 = Monday, as date.weekday()
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        day = date(year, month, 1)
        after = date(year + (month == 12), month % 12 + 1, 1)
        cells = [Day(None) for _ in range((day.weekday() - week_start) % 7)]
        while day < after:
            cells.append(
                Day(
                    day,
                    label=format_date(day, "full", locale=loc),
                    inside=first <= day <= last,
                    chips="".join(by_day.get(day, ())),
                )
            )
            day += timedelta(days=1)
        cells += [Day(None) for _ in range(-len(cells) % 7)]
        months.append(
            Month(
                # Stand-alone month name ("LLLL"): Greek "Δεκέμβριος", not the genitive of dates.
                caption=format_date(date(year, month, 1), "LLLL y", locale=loc),
                key=f"{year:04d}-{month:02d}",
                weeks=[cells[n : n + 7] for n in range(0, len(cells), 7)],
            )
        )
        year, month = after.year, after.month
    return months


def _weekdays(loc: Any) -> list[tuple[str, str]]:
    """(abbreviated, full) weekday names from the locale's first day of the week."""
    from babel.dates import get_day_names

    short = get_day_names("abbreviated", context="stand-alone", locale=loc)
    wide = get_day_names("wide", context="stand-alone", locale=loc)
    first = loc.first_week_day
    return [(short[(first + n) % 7], wide[(first + n) % 7]) for n in range(7)]


def _palette_css(colours: dict[str, int]) -> str:
    rules = []
    for n, (background, edge) in enumerate(PALETTE[: max(len(colours), 1)]):
        rules.append(f".ch-{n}{{--bg:{background};--edge:{edge}}}")
    return "\n".join(rules)


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def _asset(name: str) -> str:
    from importlib.resources import files

    return files("commcal.views").joinpath(name).read_text(encoding="utf-8")


def environment() -> Any:
    """The page's Jinja environment: autoescaping always on (member and calendar text)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("commcal", "views"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def _render(**values: Any) -> str:
    from babel.dates import format_datetime

    env = environment()
    loc = values["loc"]
    colours = values["colours"]
    style = _asset("month.css") + _palette_css(colours) + "\n"
    script = _asset("month.js")
    csp = (
        "default-src 'none'; "
        f"style-src {_csp_hash(style)}; script-src {_csp_hash(script)}; "
        "img-src data:; form-action 'none'; base-uri 'none'"
    )
    html: str = env.get_template(TEMPLATE).render(
        lang=str(loc).replace("_", "-"),
        title=values["project"].config.project_name,
        style=style,
        script=script,
        csp=csp,
        weekdays=_weekdays(loc),
        window_from=format_datetime(values["start"], WHEN, locale=loc),
        window_to=format_datetime(values["end"], WHEN, locale=loc),
        generated=format_datetime(values["now"], WHEN, locale=loc),
        **{k: v for k, v in values.items() if k not in {"loc", "project", "start", "end", "now"}},
    )
    return html
