"""Threads (calendar `thread:`): one post item published as several posts, the parts.

Each part is a delivery of its own, with its own id (`part_id`: the item's delivery id on the
channel and "#k"), so the ledger claims, sends and records each one once; the publisher sends
part k only once part k-1 is `sent` (commcal.publish.chain). Here: what the parts are, offline.
A thread of templates has one part per template; `split: sentences` cuts a rendered text that is
longer than the channel allows at sentence boundaries (counted the channel's way, with
`Channel.measure` and `Channel.limit`), each part numbered "k/n". No network, no ledger.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from commcal.channels.base import Message
from commcal.deliveries import Delivery, Memo
from commcal.errors import Problem
from commcal.project import Project

# A part's delivery id: the thread's delivery id (what the post's id would be without
# `thread:`), this separator and the part's number from 1.
PART_SEPARATOR = "#"


def part_id(thread_id: str, part: int) -> str:
    return f"{thread_id}{PART_SEPARATOR}{part}"


def split_part_id(delivery_id: str) -> tuple[str, int]:
    """(the thread's id, the part's number) of a part's delivery id; (id, 0) for any other."""
    base, sep, number = delivery_id.rpartition(PART_SEPARATOR)
    if sep and number.isdigit() and base:
        return base, int(number)
    return delivery_id, 0


class SplitError(ValueError):
    """A text that cannot be cut into parts within the limit (a word longer than a post)."""


# -- splitting at sentences ---------------------------------------------------------------------

# A candidate sentence end: terminal punctuation, closing quotes or brackets, then white space.
# ';' ends a question in Greek (U+037E, usually typed as ';'); U+2026 is an ellipsis.
_END = re.compile(r"([.!?\u2026;\u037e])([\"'\u00bb\u201d\u2019)\]]*)(\s+)")
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_GREEK = re.compile(r"[\u0370-\u03ff\u1f00-\u1fff]")
# Words that end in '.' without ending a sentence before a capital ("Dr. Smith", "αρ. 5").
ABBREVIATIONS = frozenset(
    {
        "dr", "mr", "mrs", "ms", "prof", "st", "vs", "etc", "inc", "ltd", "no", "nr", "jr",
        "sr", "fig", "vol", "ca", "approx",
        "κ", "κα", "δρ", "καθ", "αρ", "τηλ", "οδ", "λεωφ", "σελ", "βλ", "πχ", "κλπ", "δηλ",
    }
)  # fmt: skip


def _ends_sentence(text: str, match: re.Match[str]) -> bool:
    mark = match.group(1)
    rest = text[match.end() :]
    if mark in "!?\u2026\u037e":
        return True
    before = text[: match.start(1)]
    word = re.split(r"\s", before)[-1] if before else ""
    if mark == ";":
        # A semicolon ends a sentence only as the Greek question mark, after a Greek word.
        return bool(word) and bool(_GREEK.search(word[-1]))
    # '.': an abbreviation is followed by a lower-case word ("π.χ. το", "e.g. the"), is one
    # letter (an initial: "J. Smith", "κ. Παπαδόπουλος"), has inner dots ("e.g.", "π.χ.") or
    # is a known one ("Dr.").
    if rest[:1].islower():
        return False
    bare = word.lstrip("(\"'\u00ab\u201c\u2018[")
    if len(bare) == 1 and bare.isalpha():
        return False
    if "." in bare:
        return False
    return bare.lower() not in ABBREVIATIONS


def sentences(text: str) -> list[str]:
    """`text` cut after each sentence: the pieces join back to `text` exactly, each sentence
    with the white space that follows it. A blank line always ends a sentence."""
    cuts = {m.end() for m in _PARAGRAPH.finditer(text)}
    cuts.update(m.end() for m in _END.finditer(text) if _ends_sentence(text, m))
    pieces, start = [], 0
    for cut in sorted(cuts):
        if start < cut < len(text):
            pieces.append(text[start:cut])
            start = cut
    pieces.append(text[start:])
    return [p for p in pieces if p]


def _words(piece: str) -> list[str]:
    """A sentence cut after each run of white space (the pieces join back to it)."""
    return re.findall(r"\S+\s*|\s+", piece)


def numbered(body: str, part: int, parts: int) -> str:
    """A part's text: its sentences and its number, "1/4" (which counts towards the limit)."""
    return f"{body} {part}/{parts}"


def split_sentences(
    texts: Sequence[str], measure: Callable[[str], int], limit: int | None
) -> list[str]:
    """Cut each of `texts` (the rendered parts of one thread, one for `template:`) at sentence
    boundaries into parts of at most `limit` as `measure` counts, each numbered "k/n" over the
    whole thread. A sentence longer than a part is cut between words. A thread that fits in
    one post as it is stays that one post, unnumbered. Raises SplitError when a single word
    cannot fit with its number."""
    if not texts:
        return []
    if limit is None or (len(texts) == 1 and measure(texts[0]) <= limit):
        return list(texts)
    width = 1
    while True:
        label = "9" * width
        groups = [g for text in texts for g in _pack(text, measure, limit, label)]
        if len(str(len(groups))) <= width:
            break
        width = len(str(len(groups)))
    total = len(groups)
    out = [numbered(body, n, total) for n, body in enumerate(groups, 1)]
    for n, text in enumerate(out, 1):
        if measure(text) > limit:  # a measure that is not additive (URLs, joiners)
            raise SplitError(
                f"part {n}/{total} is {measure(text)} long with its number, over the limit of "
                f"{limit}"
            )
    return out


def _pack(text: str, measure: Callable[[str], int], limit: int, label: str) -> list[str]:
    """Consecutive sentences (or words of an overlong one) of `text`, as many per part as fit
    with a number as wide as `label`/`label`; the parts' bodies, stripped."""

    def fits(body: str) -> bool:
        return measure(numbered(body, int(label), int(label))) <= limit

    tokens: list[str] = []
    for sentence in sentences(text):
        tokens.extend([sentence] if fits(sentence.strip()) else _words(sentence))
    groups: list[str] = []
    current = ""
    for token in tokens:
        candidate = current + token
        if not candidate.strip() or fits(candidate.strip()):
            current = candidate
            continue
        word = token.strip()
        if not fits(word):
            raise SplitError(
                f"{word[:40]!r}{'…' if len(word) > 40 else ''} is {measure(word)} long and "
                f"cannot fit in a post of {limit} with its number"
            )
        if current.strip():
            groups.append(current.strip())
        current = token
    if current.strip():
        groups.append(current.strip())
    return groups


# -- the parts of a delivery --------------------------------------------------------------------


@dataclass(frozen=True)
class ThreadProblem(Exception):
    """A thread whose parts cannot be made (a split that cannot fit): its Problem."""

    problem: Problem


def is_thread(delivery: Delivery) -> bool:
    return delivery.item.thread is not None


def thread_messages(
    project: Project, delivery: Delivery, memo: Memo | None = None
) -> list[Message]:
    """Every part's message of a thread delivery, in order: its templates rendered for the
    delivery's channel, cut with `split:`. Raises RenderError, or ThreadProblem."""
    from commcal.compose import rendered_message

    item = delivery.item
    thread = item.thread
    assert thread is not None
    templates = thread.templates or (delivery.occurrence.template,)
    messages = [
        rendered_message(project, delivery, memo, template=template) for template in templates
    ]
    if thread.split:
        adapter = project.channels.get(delivery.channel)
        if adapter is not None:
            try:
                texts = split_sentences(
                    [m.text for m in messages], adapter.measure, adapter.limit()
                )
            except SplitError as exc:
                raise ThreadProblem(
                    Problem(
                        thread.pos,
                        f"item {item.id!r} on {delivery.channel}: thread cannot be split: {exc}",
                        "shorten that word (a long link: use a shorter one), or break it with "
                        "spaces",
                    )
                ) from None
            if len(texts) != len(messages):
                first = messages[0]
                messages = [replace(first, text=text) for text in texts]
            else:
                messages = [replace(m, text=t) for m, t in zip(messages, texts, strict=True)]
    total = len(messages)
    # The item's media go with the first part, once: the same picture under every reply
    # would be posted (and uploaded) as many times as the thread has parts.
    return [
        replace(m, media=m.media if n == 1 else (), options={**m.options, "thread": (n, total)})
        for n, m in enumerate(messages, 1)
    ]


def part_message(project: Project, delivery: Delivery, memo: Memo | None = None) -> Message:
    """One part's message (`delivery.part`, from 1)."""
    messages = thread_messages(project, delivery, memo)
    if not 1 <= delivery.part <= len(messages):
        raise ThreadProblem(
            Problem(
                delivery.item.pos,
                f"item {delivery.item.id!r} on {delivery.channel}: the thread has "
                f"{len(messages)} parts now, not {delivery.part}",
                "the thread was edited while it was being published; check it with "
                "`commcal status`",
            )
        )
    return messages[delivery.part - 1]


def parts(project: Project, delivery: Delivery, memo: Memo | None = None) -> list[Delivery]:
    """A thread delivery's parts, in order, each with its own id; the delivery itself when it
    is no thread, or when its parts cannot be made (its check then says why)."""
    if not is_thread(delivery) or delivery.part:
        return [delivery]
    from commcal.render import RenderError

    thread = delivery.item.thread
    assert thread is not None
    if thread.split:
        try:
            total = len(thread_messages(project, delivery, memo))
        except (RenderError, ThreadProblem):
            return [delivery]
    else:
        total = len(thread.templates) or 1
    return [
        replace(delivery, id=part_id(delivery.id, n), part=n, parts=total)
        for n in range(1, total + 1)
    ]


def expand(project: Project, found: Iterable[Delivery], memo: Memo | None = None) -> list[Delivery]:
    """`found` with each thread delivery replaced by its parts, in order, in its place."""
    memo = memo if memo is not None else Memo()
    out: list[Delivery] = []
    for delivery in found:
        if delivery.item.thread is None:  # nearly all: a year's plan passes through here
            out.append(delivery)
        else:
            out.extend(parts(project, delivery, memo))
    return out
