"""A commcal project on disk: config, calendars, templates and channels, loaded and validated."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from commcal.calendar.model import Calendar
from commcal.calendar.parse import parse_calendar
from commcal.calendar.yamlnodes import load
from commcal.channels.base import Channel
from commcal.config import Config, display_path, load_config
from commcal.errors import CommcalError, Pos, Problem, sorted_problems
from commcal.render import Renderer, template_bases

# Folders of the project's own files, which no export may be written into (Project.input_at).
INPUT_FOLDERS = ("calendars", "templates", "audiences", "codes", ".commcal")


@dataclass
class Project:
    root: Path
    config: Config
    calendars: list[Calendar]
    renderer: Renderer
    channels: dict[str, Channel]
    problems: list[Problem] = field(default_factory=list)
    env: Mapping[str, str] = field(default_factory=dict)
    # Calendar files (as shown, e.g. calendars/main.yaml) with errors outside any one item:
    # a YAML syntax error, a bad header or defaults, a calendar name used twice.
    broken_files: frozenset[str] = frozenset()

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def config_errors(self) -> list[Problem]:
        return [p for p in self.errors if p.pos.path == "commcal.yaml"]

    def input_at(self, path: Path, state: str | None = None) -> str | None:
        """What of the project's own files `path` is (commcal.yaml, a file under calendars/,
        templates/, audiences/, codes/ or .commcal/, or the sqlite ledger), or None. An export
        written there would destroy an input: the ledger, and every post is sent again."""
        from commcal.ledger import sqlite_path

        target = path.resolve()
        root = self.root.resolve()
        if target == root / "commcal.yaml":
            return "the project's commcal.yaml"
        for folder in INPUT_FOLDERS:
            if target.is_relative_to(root / folder):
                return f"in the project's {folder}/ folder"
        try:
            url = self.config.ledger_url(state, self.env or None)
        except CommcalError:
            return None
        ledger = sqlite_path(url, self.root) if url.startswith("sqlite:///") else None
        if ledger is not None and target == ledger.resolve():
            return "the ledger"
        return None

    def publish_blocker(self) -> str | None:
        """Why nothing at all can be published (errors in commcal.yaml, no channels), or None.
        Errors in calendars stop only the items or files they are in (`publishable`)."""
        if self.config_errors:
            count = len(self.config_errors)
            return (
                f"{count} problem{'s' if count != 1 else ''} in commcal.yaml: nothing was "
                "published; run `commcal validate`"
            )
        if not self.config.channels:
            return "commcal.yaml defines no channels: nothing can be published (add channels:)"
        return None

    def publishable(self, previous: Project | None = None) -> Project:
        """This project as publishing sees it: an item with errors is left out, and so is a
        calendar file with errors outside its items; everything else is kept. With `previous`
        (the last project `commcal run` published), a left-out file or item keeps its last
        good version from there instead."""
        if not self.errors:
            return self
        old = {c.path: c for c in previous.calendars} if previous is not None else {}
        calendars: list[Calendar] = []
        for calendar in self.calendars:
            before = old.get(calendar.path)
            if before is not None and before.name != calendar.name:
                before = None
            if calendar.broken:
                if before is not None:
                    calendars.append(before)
                continue
            if calendar.broken_items:
                last_good = {i.id: i for i in before.items} if before is not None else {}
                items = tuple(
                    last_good.get(i.id) if i.id in calendar.broken_items else i
                    for i in calendar.items
                )
                calendar = replace(calendar, items=tuple(i for i in items if i is not None))
            calendars.append(calendar)
        names = {c.name for c in calendars}
        shown = {c.path for c in self.calendars}
        for path in sorted(self.broken_files - shown):  # files that did not load at all
            before = old.get(path)
            if before is not None and before.name not in names:
                names.add(before.name)
                calendars.append(before)
        return replace(self, calendars=calendars)

    @functools.cached_property
    def _by_name(self) -> dict[str, Calendar]:
        return {c.name: c for c in self.calendars}

    def calendar(self, name: str) -> Calendar | None:
        return self._by_name.get(name)


def calendar_files(root: Path) -> list[Path]:
    folder = root / "calendars"
    if not folder.is_dir():
        return []
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def load_project(root: Path, env: Mapping[str, str] | None = None) -> Project:
    """Load everything, collecting every problem; raises only for what is not the user's input.

    The cyclic collector runs less often meanwhile, as in `plan()`: a calendar's nodes and
    items are many long-lived objects, and collecting while they are made cost more than half
    the load of 20,000 items (7.1 s, 2.8 s with the collector paused; bench/README.md)."""
    from commcal.deliveries import fewer_collections

    with fewer_collections():
        return _load_project(root, env)


def _load_project(root: Path, env: Mapping[str, str] | None) -> Project:
    config, problems = load_config(root)
    channels = build_channels(
        config, os.environ if env is None else env, problems, state_dir=root / ".commcal"
    )
    renderer = Renderer(root / "templates", display_root=root)
    bases = template_bases(root / "templates")
    from commcal.audience import audience_names

    audiences = audience_names(root)
    calendars: list[Calendar] = []
    names: dict[str, str] = {}
    broken: set[str] = set()
    for path in calendar_files(root):
        shown = display_path(path, root)
        node, file_problems = load(path, shown)
        problems.extend(file_problems)
        if node is None or any(p.severity == "error" for p in file_problems):
            broken.add(shown)
        if node is None:
            continue
        calendar, cal_problems = parse_calendar(node, shown, config, path.stem, bases, audiences)
        problems.extend(cal_problems)
        if calendar is None:
            broken.add(shown)
            continue
        if shown in broken:
            calendar = replace(calendar, broken=True)
        if calendar.name in names:
            broken.add(shown)
            problems.append(
                Problem(
                    calendar.name_pos or Pos(shown, 1, 1),
                    f"calendar name {calendar.name!r} is already used by {names[calendar.name]}",
                    "set calendar: to a unique name",
                )
            )
            continue
        names[calendar.name] = shown
        calendars.append(calendar)
    return Project(
        root,
        config,
        calendars,
        renderer,
        channels,
        sorted_problems(problems),
        os.environ if env is None else env,
        broken_files=frozenset(broken),
    )


def build_channels(
    config: Config,
    env: Mapping[str, str],
    problems: list[Problem],
    *,
    state_dir: Path | None = None,
) -> dict[str, Channel]:
    """The configured channels; `state_dir` (the project's `.commcal`) is where adapters may
    keep state between runs, such as Bluesky's session."""
    from commcal.channels.registry import channel_class

    channels: dict[str, Channel] = {}
    for name, spec in config.channels.items():
        try:
            cls = channel_class(spec.type)
            channels[name] = cls(name, spec.settings, env=env)
        except CommcalError as exc:
            problems.append(Problem(spec.pos, str(exc)))
        else:
            channels[name].state_dir = state_dir
    return channels
