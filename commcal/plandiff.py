"""`commcal plan --diff BASE`: what a change to the calendars does to the plan, for review.

The working tree's plan is compared with the plan of git revision BASE over the same window.
BASE's files are read from git (`ls-tree`, `cat-file`) into a temporary folder: the working
tree, the index and the current branch are never touched, so it is safe in a pre-commit hook
and in CI.

Deliveries are matched in three passes:

1. the same delivery id (calendar, item, UTC instant, channel[, member zone]): the same
   delivery; it is **changed** when its subject or text differ (the changed lines are kept) or
   when it is newly over its channel's length limit;
2. within one (calendar, item, step, channel, member zone), the unmatched ones of each side in
   time order: **moved** (the n-th leftover of BASE to the n-th of the working tree);
3. the rest: **added** or **removed**. An item that exists on one side only whose deliveries
   fall at the same instants on the same channels as one that exists on the other side only
   "looks renamed" (same times, and same text when the texts agree too): renaming an item
   makes new deliveries (their ids change), so a review should see it.

Member lists are often kept out of git: when BASE has no `audiences/` (or `codes/`) folder,
the working tree's is used for it, so a change to a calendar is not reported as every mail
going to nobody.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from commcal.errors import ConfigError, Problem

if TYPE_CHECKING:
    from commcal.check import Planned
    from commcal.deliveries import Filters
    from commcal.project import Project

CHANGES = ("added", "removed", "moved", "changed")
FAIL_KINDS = (*CHANGES, "over-limit", "lint")
UNTRACKED_PARTS = ("audiences", "codes")  # used from the working tree when BASE lacks them


@dataclass(frozen=True)
class Change:
    change: str  # one of CHANGES
    base: Planned | None
    head: Planned | None
    lines: tuple[str, ...] = ()  # the changed lines of the text, as a unified diff
    note: str = ""
    over_limit: bool = False  # the working tree's message is newly over the channel's limit

    @property
    def shown(self) -> Planned:
        entry = self.head or self.base
        assert entry is not None
        return entry


@dataclass(frozen=True)
class PlanDiff:
    base: str  # the revision as given
    commit: str  # what it resolved to
    start: datetime
    end: datetime
    changes: list[Change]
    unchanged: int
    # Findings of the lint checks new in the working tree; None: this build has no lint.
    lint: list[Problem] | None = None
    base_problems: list[Problem] = field(default_factory=list)

    def count(self, change: str) -> int:
        return sum(1 for c in self.changes if c.change == change)

    def failures(self, kinds: Sequence[str]) -> list[str]:
        """The `--fail-on` kinds this diff hits, in the order given."""
        hit = []
        for kind in kinds:
            if kind == "over-limit":
                found = any(c.over_limit for c in self.changes)
            elif kind == "lint":
                found = bool(self.lint)
            else:
                found = self.count(kind) > 0
            if found:
                hit.append(kind)
        return hit


def fail_kinds(text: str | None) -> list[str]:
    """`--fail-on removed,over-limit,lint` -> the kinds; an unknown one is a usage error."""
    if not text:
        return []
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    for kind in kinds:
        if kind not in FAIL_KINDS:
            from commcal.calendar.fields import did_you_mean

            raise ConfigError(
                f"--fail-on {kind!r}: not a kind of change; "
                + did_you_mean(kind, list(FAIL_KINDS))
                + f" (choose from {', '.join(FAIL_KINDS)})"
            )
    return kinds


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError:
        raise ConfigError("--diff needs git, and git is not installed") from None


@contextmanager
def revision_tree(root: Path, rev: str) -> Iterator[tuple[Path, str]]:
    """The project folder `root` as it is in git revision `rev`, extracted into a temporary
    folder (removed afterwards), and the commit `rev` names."""
    import tempfile

    top = _git(root, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise ConfigError(f"--diff {rev}: the project folder {root} is not in a git repository")
    # A revision never starts with "-": git would read it as an option.
    found = (
        _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        if rev[:1] not in ("", "-")
        else None
    )
    if found is None or found.returncode != 0:
        raise ConfigError(
            f"--diff {rev!r}: no such git revision (try HEAD, HEAD~1, origin/main or a commit id;"
            " in CI, fetch the base branch first: `git fetch origin main`)"
        )
    commit = found.stdout.decode().strip()
    top_dir = Path(top.stdout.decode().strip())
    inside = root.resolve().relative_to(top_dir.resolve()).as_posix()
    paths = [] if inside == "." else ["--", inside]
    with _terminate_as_interrupt(), tempfile.TemporaryDirectory(prefix="commcal-base-") as tmp:
        _extract(top_dir, commit, paths, Path(tmp), rev)
        base_root = Path(tmp) / inside
        if not (base_root / "commcal.yaml").is_file():
            raise ConfigError(f"--diff {rev}: {inside}/commcal.yaml is not in that revision")
        for part in UNTRACKED_PARTS:
            if not (base_root / part).exists() and (root / part).is_dir():
                shutil.copytree(root / part, base_root / part)
        yield base_root, commit


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a cancelled CI job, `timeout`) unwinds like Ctrl-C while BASE is on disk, so
    its temporary folder is removed; Python's default would end the process on the spot."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def _extract(top: Path, commit: str, paths: list[str], dest: Path, rev: str) -> None:
    """Write the files of `commit` (under `paths`) into `dest` as git stores them. Not `git
    archive`: it applies the revision's .gitattributes (export-ignore leaves folders out,
    export-subst rewrites text), so BASE would not be what was committed. A link that leads
    out of `dest` is refused, and a submodule is an empty folder."""
    import os

    listing = _git(top, "ls-tree", "-r", "-z", "--full-tree", commit, *paths)
    if listing.returncode != 0:
        message = listing.stderr.decode(errors="replace").strip()
        raise ConfigError(f"--diff {rev}: git ls-tree failed: {message}")
    entries = []
    for record in listing.stdout.split(b"\0"):
        if record:
            meta, _, raw = record.partition(b"\t")
            mode, kind, oid = meta.decode().split()
            entries.append((mode, kind, oid, os.fsdecode(raw)))
    blobs = [e for e in entries if e[1] == "blob"]
    batch = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=top,
        input="".join(f"{oid}\n" for _, _, oid, _ in blobs).encode(),
        capture_output=True,
        check=False,
    )
    if batch.returncode != 0:
        message = batch.stderr.decode(errors="replace").strip()
        raise ConfigError(f"--diff {rev}: git cat-file failed: {message}")
    data, at = batch.stdout, 0
    links = []
    for mode, kind, _, name in entries:
        parts = name.split("/")
        if name.startswith("/") or any(p in ("", ".", "..", ".git") for p in parts):
            raise ConfigError(f"--diff {rev}: {name!r} in that revision is not a usable path")
        target = dest.joinpath(*parts)
        if kind != "blob":  # a submodule: its files are not in this repository
            target.mkdir(parents=True, exist_ok=True)
            continue
        end = data.index(b"\n", at)
        size = int(data[at:end].split()[2])
        content, at = data[end + 1 : end + 1 + size], end + 2 + size
        target.parent.mkdir(parents=True, exist_ok=True)
        if mode == "120000":
            target.symlink_to(os.fsdecode(content))
            links.append((name, target))
        else:
            target.write_bytes(content)
    inside = dest.resolve()
    for name, link in links:  # once every file is there, links through links are followed too
        if not Path(os.path.realpath(link)).is_relative_to(inside):
            raise ConfigError(
                f"--diff {rev}: {name} in that revision is a link to a place outside the "
                "repository; commcal reads only files inside the repository"
            )


def diff_against(
    head: Project, rev: str, start: datetime, end: datetime, filters: Filters
) -> PlanDiff:
    """Plan revision `rev` and `head` (the working tree) over [start, end) and compare."""
    from commcal.check import plan
    from commcal.deliveries import Filters
    from commcal.project import load_project

    head_plan = plan(head, start, end, filters)
    with revision_tree(head.root, rev) as (base_root, commit):
        base = load_project(base_root)
        base_plan = plan(base, start, end, filters)
        # Lint reads every delivery of the window: the plans are those unless filtered.
        if filters == Filters():
            lint = _new_lint(base, head, start, end, base_plan, head_plan)
        else:
            lint = _new_lint(base, head, start, end)
    changes, unchanged = compare(base_plan, head_plan, base, head)
    return PlanDiff(rev, commit, start, end, changes, unchanged, lint, base.errors)


def _new_lint(
    base: Project,
    head: Project,
    start: datetime,
    end: datetime,
    base_plan: Sequence[Planned] | None = None,
    head_plan: Sequence[Planned] | None = None,
) -> list[Problem] | None:
    """The cadence findings `head` has and `base` has not (`commcal.lint`, as `validate` runs
    it): over each side's plan when given (the whole window's), else its own expansion."""
    from commcal.lint import lint_findings

    def lint(project: Project, planned: Sequence[Planned] | None) -> list[Problem]:
        given = None if planned is None else [p.delivery for p in planned]
        return lint_findings(project, start, end, given)

    found = lint(head, head_plan)
    before = Counter((p.pos.path, p.message) for p in lint(base, base_plan))
    new = []
    for problem in found:  # lines move with any edit: a finding is its file and its words
        key = (problem.pos.path, problem.message)
        if before[key]:
            before[key] -= 1
        else:
            new.append(problem)
    return new


def _text(entry: Planned) -> str:
    message = entry.message
    if message is None:
        return "\n".join(p.message for p in entry.problems)
    return (f"Subject: {message.subject}\n" if message.subject else "") + message.text


def _over(entry: Planned | None) -> bool:
    return (
        entry is not None
        and entry.limit is not None
        and entry.length is not None
        and entry.length > entry.limit
    )


def _lines(base: Planned, head: Planned) -> tuple[str, ...]:
    import difflib

    return tuple(
        line.rstrip("\n")
        for line in difflib.unified_diff(
            _text(base).splitlines(), _text(head).splitlines(), "base", "head", n=1, lineterm=""
        )
    )[2:]  # without the ---/+++ header


def _group(entry: Planned) -> tuple[str, str, str, str, str]:
    d = entry.delivery
    return (d.calendar, d.item.id, d.occurrence.step, d.channel, d.zone)


def compare(
    base_plan: Sequence[Planned], head_plan: Sequence[Planned], base: Project, head: Project
) -> tuple[list[Change], int]:
    """The changes from `base_plan` to `head_plan` (module docstring) and how many deliveries
    are the same on both sides."""
    base_by_id = {p.delivery.id: p for p in base_plan}
    head_ids = {p.delivery.id for p in head_plan}
    changes: list[Change] = []
    unchanged = 0
    left_head: dict[tuple[str, ...], list[Planned]] = {}
    for entry in head_plan:
        old = base_by_id.get(entry.delivery.id)
        if old is None:
            left_head.setdefault(_group(entry), []).append(entry)
            continue
        over = _over(entry) and not _over(old)
        if _text(old) != _text(entry) or over:
            changes.append(Change("changed", old, entry, _lines(old, entry), over_limit=over))
        else:
            unchanged += 1
    left_base: dict[tuple[str, ...], list[Planned]] = {}
    for entry in base_plan:
        if entry.delivery.id not in head_ids:
            left_base.setdefault(_group(entry), []).append(entry)
    added: list[Planned] = []
    removed: list[Planned] = []
    for key in sorted(set(left_head) | set(left_base)):
        olds, news = left_base.get(key, []), left_head.get(key, [])
        for old, new in zip(olds, news, strict=False):
            lines = _lines(old, new) if _text(old) != _text(new) else ()
            over = _over(new) and not _over(old)
            changes.append(Change("moved", old, new, lines, over_limit=over))
        removed += olds[len(news) :]
        added += news[len(olds) :]
    notes = _renames(added, removed, base, head)
    changes += [
        Change("added", None, e, note=notes.get(id(e), ""), over_limit=_over(e)) for e in added
    ]
    changes += [Change("removed", e, None, note=notes.get(id(e), "")) for e in removed]
    changes.sort(key=_order)
    return changes, unchanged


def _order(change: Change) -> tuple[Any, ...]:
    d = change.shown.delivery
    return (d.channel, d.due, d.calendar, d.item.id, CHANGES.index(change.change))


def _renames(
    added: list[Planned], removed: list[Planned], base: Project, head: Project
) -> dict[int, str]:
    """Notes for the deliveries of items that exist on one side only and match each other."""

    def items(project: Project) -> set[str]:
        return {f"{c.name}/{i.id}" for c in project.calendars for i in c.items}

    def by_item(entries: list[Planned], gone_from: set[str]) -> dict[str, list[Planned]]:
        found: dict[str, list[Planned]] = {}
        for e in entries:
            name = f"{e.delivery.calendar}/{e.delivery.item.id}"
            if name not in gone_from:
                found.setdefault(name, []).append(e)
        return found

    def times(entries: list[Planned]) -> list[tuple[Any, ...]]:
        return sorted(
            (e.delivery.due, e.delivery.channel, e.delivery.occurrence.step) for e in entries
        )

    new_items = by_item(added, items(base))
    old_items = by_item(removed, items(head))
    notes: dict[int, str] = {}
    for new_name, news in new_items.items():
        for old_name, olds in old_items.items():
            if times(news) != times(olds):
                continue
            same_text = sorted(map(_text, news)) == sorted(map(_text, olds))
            how = "same times and text" if same_text else "same times"
            for e in news:
                notes[id(e)] = f"looks renamed from {old_name} ({how})"
            for e in olds:
                notes[id(e)] = f"looks renamed to {new_name} ({how})"
            del old_items[old_name]
            break
    return notes
