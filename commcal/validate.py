"""The validate stage: every problem `commcal validate` reports, in one call."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from commcal.audience import Member
from commcal.calendar.model import Item
from commcal.check import Planned, plan, problems_of
from commcal.compose import message_for, pool_codes
from commcal.deliveries import Memo, audience_size, item_members, personal_channels
from commcal.errors import Problem, ProblemsFound, sorted_problems
from commcal.project import Project
from commcal.render import RenderError, language_of
from commcal.window import Span

if TYPE_CHECKING:
    from commcal.engagement.report import SlotResults


def audience_problems(project: Project, memo: Memo | None = None) -> list[Problem]:
    """What `validate` adds for audiences: each file's errors and skipped rows, offers whose code
    pool is missing or smaller than the audience, and members whose language has no template."""
    from commcal.audience import check_audience

    memo = memo if memo is not None else Memo()
    problems: list[Problem] = []
    checked: set[str] = set()
    for calendar in project.calendars:
        for item in calendar.items:
            if item.audience is None:
                continue
            if item.audience not in checked:
                checked.add(item.audience)
                problems.extend(check_audience(project.root, item.audience))
            problems.extend(_untranslated(project, item, memo))
            codes = item.codes
            if codes is not None and codes.pool:
                pos = codes.pos
                try:
                    available = len(pool_codes(project, item))
                except OSError as exc:
                    problems.append(
                        Problem(
                            pos,
                            f"item {item.id!r}: cannot read code pool {codes.pool}: {exc.strerror}",
                            "pool: is a text file, one code per line, relative "
                            "to the project folder",
                        )
                    )
                    continue
                size = audience_size(project, item)
                if available < size:
                    problems.append(
                        Problem(
                            pos,
                            f"item {item.id!r}: code pool {codes.pool} "
                            f"has {available} codes for {size} members",
                            f"add at least {size - available} codes",
                        )
                    )
    return problems


def locale_samples(
    project: Project, item: Item, memo: Memo | None = None
) -> dict[str, tuple[Member, int]]:
    """For each locale in the item's audience ("" for members without one): its first member
    in file order and how many members have it. Read once per item and run: an audience may
    have tens of thousands of rows."""
    key = (item.calendar, item.id)
    samples = memo.locales.get(key) if memo is not None else None
    if samples is None:
        samples = {}
        try:
            for person in item_members(project, item, None):
                first, count = samples.get(person.locale or "", (person, 0))
                samples[person.locale or ""] = (first, count + 1)
        except ProblemsFound:  # a broken audience file: `audience_problems` reports it
            samples = {}
        if memo is not None:
            memo.locales[key] = samples
    return samples


def member_render_problems(
    project: Project, planned: Iterable[Planned], memo: Memo | None = None
) -> list[Problem]:
    """What `validate` adds to `plan`: `plan` renders a message to an audience for its first
    member only, but each locale may use its own template variant, so render it once more for
    one member of every locale in the audience (each step and channel once)."""
    from dataclasses import replace

    memo = memo if memo is not None else Memo()
    problems: list[Problem] = []
    seen: set[tuple[str, str, str, str]] = set()
    for entry in planned:
        delivery = entry.delivery
        if delivery.audience_size < 0 or not delivery.personal:
            continue
        item = delivery.item
        key = (item.calendar, item.id, delivery.occurrence.template, delivery.channel)
        if key in seen:
            continue
        seen.add(key)
        for person, _ in locale_samples(project, item, memo).values():
            try:
                message_for(project, replace(delivery, recipient=person), memo)
            except RenderError as exc:
                locale = person.locale or item.locale
                problems.append(
                    replace(
                        exc.problem, hint=f"{exc.problem.hint}, for members with locale {locale}"
                    )
                )
    return list(dict.fromkeys(problems))


def _untranslated(project: Project, item: Item, memo: Memo) -> list[Problem]:
    """A warning for members whose language has no variant of the item's template: they would
    get the text written for the item's own locale, with dates and numbers in theirs (Greek
    text saying "24 December"). Templates that look at `locale` themselves are left alone."""
    per_recipient = personal_channels(project, item)
    if not per_recipient or not item.template:
        return []
    own_language = language_of(item.locale)
    others = {
        locale: count
        for locale, (_, count) in locale_samples(project, item, memo).items()
        if locale and language_of(locale) != own_language
    }
    renderer = project.renderer
    for adapter in per_recipient:
        kind = adapter.type_name
        own = [renderer.find(item.template, kind, item.locale, p) for p in ("text", "html")]
        if own == [None, None] or any(name and "locale" in renderer.source(name) for name in own):
            continue
        # Members of these locales would get the very files the item's own locale gets.
        missing = sorted(
            locale
            for locale in others
            if [renderer.find(item.template, kind, locale, p) for p in ("text", "html")] == own
        )
        if not missing:
            continue
        count = sum(others[locale] for locale in missing)
        shown = next(name for name in own if name)
        files = dict.fromkeys(f"templates/{item.template}.{language_of(m)}.j2" for m in missing)
        return [
            Problem(
                item.pos,
                f"item {item.id!r}: {count} member{'s' if count != 1 else ''} with locale "
                f"{', '.join(missing)} {'get' if count != 1 else 'gets'} templates/{shown}, "
                f"the text for {item.locale} readers, with dates in their own language",
                f"add {' and '.join(files)}, or keep them out with where: {{locale: "
                f"{own_language}}}",
                severity="warning",
            )
        ]  # one warning per item is enough
    return []


@dataclass(frozen=True)
class Validation:
    """What `commcal validate` reports: every problem, sorted, and how much was checked."""

    problems: list[Problem]
    checked: int  # deliveries rendered and checked in the window
    calendars: int
    config_broken: bool  # commcal.yaml has errors: nothing past loading was checked

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def exit_code(self) -> int:
        """0 all well, 1 calendars or messages have problems, 2 commcal.yaml has."""
        if not self.errors:
            return 0
        return 2 if self.config_broken else 1


def validate(
    project: Project, span: Span, *, lint: bool = True, results: SlotResults | None = None
) -> Validation:
    """Every problem of the project: loading's (config, calendar schema and references,
    duplicate calendars), each audience file's, code pools', untranslated templates', those
    of every delivery in `span` rendered and checked (for one member of each locale of an
    audience), and with `lint` the cadence findings over those deliveries (commcal.lint;
    `results`: how past posts did per slot, for the slow_slot rule).
    With errors in commcal.yaml, only loading's problems."""
    if project.config_errors:
        return Validation(sorted_problems(project.problems), 0, len(project.calendars), True)
    memo = Memo()
    planned = plan(project, span.start, span.end, memo=memo)
    found = [
        *project.problems,
        *audience_problems(project, memo),
        *member_render_problems(project, planned, memo),
        *problems_of(planned),
    ]
    if lint:
        from commcal.lint import lint_findings

        found += lint_findings(
            project, span.start, span.end, [p.delivery for p in planned], results
        )
    return Validation(sorted_problems(found), len(planned), len(project.calendars), False)
