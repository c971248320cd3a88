"""Replies as threads: who answered a question, and when; whether it came in staffed hours.

A reply's `parent_id` is the network id of what it answers (the post, or another reply), so
the replies of one channel form trees under each post. A question is *answered* by a reply
further down its thread (a direct answer or any reply below one) written by the team
(`by_team`) or by another member (an author other than the one who asked); the asker adding
to their own question answers nothing. A person's `answered` mark says so too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from commcal.engagement.model import Reply
from commcal.engagement.questions import is_question
from commcal.lintconfig import StaffWindow
from commcal.timeutil import zone


@dataclass(frozen=True)
class Thread:
    """One reply with what the thread below it says about it."""

    reply: Reply
    marks: tuple[str, ...]
    question: bool
    answers: tuple[Reply, ...]  # replies below it by the team or another member, oldest first
    below: tuple[Reply, ...]  # every reply below it, oldest first

    @property
    def answered(self) -> bool:
        return bool(self.answers) or "answered" in self.marks

    @property
    def open(self) -> bool:
        """A question from the community with no answer yet."""
        return self.question and not self.reply.by_team and not self.answered

    @property
    def first_answer(self) -> Reply | None:
        return self.answers[0] if self.answers else None


def threads(replies: Iterable[Reply], marks: Mapping[str, Sequence[str]]) -> list[Thread]:
    """Every reply as a Thread, oldest first."""
    ordered = sorted(replies, key=lambda r: (r.created_at, r.id))
    children: dict[tuple[str, str], list[Reply]] = defaultdict(list)
    for r in ordered:
        children[(r.channel, r.parent_id)].append(r)

    def below(r: Reply) -> list[Reply]:
        found: list[Reply] = []
        seen = {r.id}
        stack = [r]
        while stack:  # iterative: a thread can be deep, and a bad parent link could loop
            node = stack.pop()
            for child in children.get((node.channel, node.remote_id), ()):
                if child.id not in seen:
                    seen.add(child.id)
                    found.append(child)
                    stack.append(child)
        return sorted(found, key=lambda c: (c.created_at, c.id))

    result = []
    for r in ordered:
        under = below(r)
        own = tuple(marks.get(r.id, ()))
        result.append(
            Thread(
                reply=r,
                marks=own,
                question=is_question(r.text, r.lang, own),
                answers=tuple(c for c in under if c.by_team or c.author != r.author),
                below=tuple(under),
            )
        )
    return result


def staffed(when: datetime, windows: Sequence[StaffWindow], zone_name: str) -> bool | None:
    """Whether `when` falls in one of the calendar's `staff:` windows (in its zone); None when
    the calendar declares none."""
    if not windows:
        return None
    local = when.astimezone(zone(zone_name))
    return any(w.holds(local) for w in windows)
