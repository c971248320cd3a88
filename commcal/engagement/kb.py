"""`commcal kb export`: the questions people marked `kb`, with their accepted answers, as Markdown
pages for a knowledge base (one page per topic, YAML front matter).

What goes in (docs/cli.md#commcal-kb-export):
- Only a question a person marked `kb` (`commcal inbox mark ID kb`). A reply marked `kb` that
  sits below another marked one is that question's answer, not a question of its own.
- Its accepted answer: the first reply below it that is marked `kb` too (a person chose it), else
  the team's first reply below it (`by_team`). A member's answer goes in only when marked. A
  question without either is left out and counted (`KbExport.unanswered`).
- Privacy: no member's handle, ever: the question is "a member"'s, the answer "the team"'s or
  "a member"'s, and each entry links to its public thread instead: the team's post that the
  question answers (a reply's own link names its author on most networks:
  bsky.app/profile/HANDLE/post/..., mastodon.social/@HANDLE/...). @mentions are taken out of
  the text. Addresses in members' text were masked when stored (`m***@example.org`); an
  address that reached the text any other way is masked here again.

Topics (`--group`):
- hashtag: the question's first #hashtag (else the answer's); none: `general`.
- keyword: each entry's words (question and answer, letters only, 3 or more, not a stopword of
  en/el/sw, accents and case ignored) are counted by how many entries share them; an entry's
  topic is its word shared by the most entries (ties: the alphabetically first), if at least
  two entries share it; else `general`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from commcal.engagement.model import Reply
from commcal.engagement.questions import fold, word_list
from commcal.engagement.threads import Thread
from commcal.ledger.engagement import mask_text_addresses
from commcal.views.common import md_inline, md_paragraph

GROUPS = ("hashtag", "keyword")
GENERAL = "general"

_HASHTAG = re.compile(r"(?<![\w#])#(\w+)", re.UNICODE)
_MENTION = re.compile(r"(?<![\w/*.+-])@[\w.-]+(?:[@:][\w.-]+)?", re.UNICODE)
_TERM = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
_STOPWORDS = frozenset(
    fold(w)
    for w in word_list(
        """
    the and for are but not you your with this that have has was were will would can could
    what when where which who whom whose why how does did there their they them then than
    from into about just also our ours out all any some one get got like thanks thank please
    here its it's yes very much more most such only own same too can't don't
    και του της των τον την στο στη στην στον στα στις στους για από απο με σε να θα δεν μη
    μην είναι ειναι ήταν ένα μια ένας που πως τι ποιος ποια ποιο πότε πού πώς γιατί αυτό αυτή
    αυτός αλλά ή οι τα το η ο ευχαριστώ ευχαριστούμε παρακαλώ ναι όχι πολύ
    na ya wa kwa ni la za katika kuwa hii hiyo huo hizo yake wake zake lakini au pia sana
    je nini nani lini wapi vipi gani ngapi asante tafadhali ndiyo hapana kama tu bado
    """
    )
)


@dataclass(frozen=True)
class KbEntry:
    question: Reply
    answer: Reply
    topic: str
    thread_url: str = ""  # the team's post the question answers; "": not known

    @property
    def answered_by(self) -> str:
        return "the team" if self.answer.by_team else "a member"


@dataclass(frozen=True)
class KbPage:
    topic: str
    filename: str
    entries: tuple[KbEntry, ...]
    text: str


@dataclass(frozen=True)
class KbExport:
    pages: tuple[KbPage, ...]
    unanswered: tuple[Reply, ...] = field(default_factory=tuple)  # marked kb, no answer yet


def public_text(text: str) -> str:
    """A reply's text as the export shows it: no @mentions, no address, one paragraph."""
    without = _MENTION.sub("", mask_text_addresses(text))
    return " ".join(without.split())


def pairs(all_threads: Sequence[Thread]) -> tuple[list[tuple[Reply, Reply]], list[Reply]]:
    """(question, accepted answer) for each question marked kb; and those with no answer."""
    kb_ids = {t.reply.id for t in all_threads if "kb" in t.marks}
    inside = {r.id for t in all_threads if t.reply.id in kb_ids for r in t.below}
    found: list[tuple[Reply, Reply]] = []
    unanswered: list[Reply] = []
    for t in all_threads:
        if t.reply.id not in kb_ids or t.reply.id in inside or not t.question:
            continue
        chosen = next((r for r in t.below if r.id in kb_ids), None)
        if chosen is None:
            chosen = next((r for r in t.below if r.by_team), None)
        if chosen is None:
            unanswered.append(t.reply)
        else:
            found.append((t.reply, chosen))
    return found, unanswered


def _hashtag_topic(question: Reply, answer: Reply) -> str:
    for text in (question.text, answer.text):
        m = _HASHTAG.search(text)
        if m:
            return fold(m.group(1))
    return GENERAL


def keywords(text: str) -> set[str]:
    """The words of `text` that can name a topic: letters only, 3 or more, not a stopword of
    en/el/sw, folded (no accents, lower case); links, mentions and hashtags left out."""
    prose = re.sub(r"https?://\S+|#\w+", " ", public_text(text))
    return {w for w in (fold(x) for x in _TERM.findall(prose)) if w not in _STOPWORDS}


def _terms(question: Reply, answer: Reply) -> set[str]:
    return keywords(question.text) | keywords(answer.text)


def topics(found: Sequence[tuple[Reply, Reply]], group: str) -> list[str]:
    """The topic of each pair, in order (module docstring)."""
    if group == "hashtag":
        return [_hashtag_topic(q, a) for q, a in found]
    if group != "keyword":
        raise ValueError(f"--group must be one of {', '.join(GROUPS)}")
    terms = [_terms(q, a) for q, a in found]
    shared = Counter(t for each in terms for t in each)
    result = []
    for each in terms:
        best = sorted(each, key=lambda t: (-shared[t], t))
        result.append(best[0] if best and shared[best[0]] >= 2 else GENERAL)
    return result


def _filename(topic: str) -> str:
    slug = re.sub(r"[^\w]+", "-", topic, flags=re.UNICODE).strip("-_") or GENERAL
    return f"{slug[:60]}.md"


def _date(when: datetime) -> str:
    return when.date().isoformat()


# What YAML does not take raw in a scalar (https://yaml.org/spec/1.2.2/#51-character-set: DEL,
# C1 controls, surrogates, U+FFFE/F) or folds into a space (NEL, LS, PS): written \uXXXX, as
# JSON's escapes are. JSON has already escaped the C0 controls.
_YAML_UNPRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufffe\uffff]")


def _page(topic: str, entries: Sequence[KbEntry]) -> str:
    def q(value: str) -> str:  # a YAML double-quoted scalar (JSON's escapes are YAML's)
        return _YAML_UNPRINTABLE.sub(
            lambda m: f"\\u{ord(m[0]):04x}", json.dumps(value, ensure_ascii=False)
        )

    dates = sorted(e.question.created_at for e in entries)
    lines = ["---", f"title: {q(topic)}", "sources:"]
    lines += [f"  - {q(url)}" for url in dict.fromkeys(e.thread_url for e in entries) if url]
    lines += [f"date: {_date(dates[0])}", f"updated: {_date(dates[-1])}", "---", ""]
    lines += [f"# {topic}", ""]
    for e in entries:
        # Replies are text, never markup: a member's `<script>` or `[x](javascript:...)` must
        # read as what they typed on the site this page is published to.
        lines += [f"## {md_inline(public_text(e.question.text))}", ""]
        lines += [md_paragraph(public_text(e.answer.text)), ""]
        source = f"[the thread]({e.thread_url})" if e.thread_url else "the thread"
        lines += [
            f"*Asked by a member on {e.question.channel}, {_date(e.question.created_at)}; "
            f"answered by {e.answered_by}. See {source}.*",
            "",
        ]
    return "\n".join(lines)


def export(
    all_threads: Sequence[Thread],
    group: str = "hashtag",
    thread_urls: Mapping[str, str] | None = None,
) -> KbExport:
    """The knowledge base pages, one per topic (topics in alphabetical order, `general` last;
    entries oldest first). `thread_urls`: the public URL of each sent delivery (its post), by
    delivery id: what an entry links to."""
    found, unanswered = pairs(all_threads)
    urls = thread_urls or {}
    by_topic: dict[str, list[KbEntry]] = {}
    for (question, answer), topic in zip(found, topics(found, group), strict=True):
        entry = KbEntry(question, answer, topic, urls.get(question.delivery_id, ""))
        by_topic.setdefault(topic, []).append(entry)
    order = sorted(by_topic, key=lambda t: (t == GENERAL, t))
    pages = []
    used: set[str] = set()
    for t in order:
        name = _filename(t)
        n = 2
        while name in used:  # two topics with one slug (c++ and c#): the second is c-2.md
            name = _filename(f"{t}-{n}")
            n += 1
        used.add(name)
        pages.append(KbPage(t, name, tuple(by_topic[t]), _page(t, by_topic[t])))
    return KbExport(tuple(pages), tuple(unanswered))
