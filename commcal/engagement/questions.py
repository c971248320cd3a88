"""Is this reply a question? A documented, language-aware heuristic, and the marks that override it.

The rules (docs/cli.md#commcal-inbox lists the words), applied to the text with its links,
@mentions, #hashtags and `code` removed (a `?` in a URL is no question):

1. A question mark ends a sentence: `?`, the fullwidth `？`, the Spanish `¿`, the Arabic `؟`, and
   the Greek question mark U+037E `;`. The ASCII `;` counts too when the text is Greek (the
   reply is tagged `el`, or, untagged, most of its letters are Greek): Greek keyboards type the
   question mark as `;`. In English (or any other) text `;` only joins clauses.
2. A sentence starts with an interrogative word of the text's language (accents and case
   ignored, so `Πότε`, `ποτε` and `ΠΟΤΕ` are the same word):
   - el: ποιος/ποια/ποιο (every case), τι, πότε, πού, πώς, γιατί, πόσο/πόση/πόσα/πόσοι/πόσες,
     μήπως, άραγε, ποιανού.
   - sw: je, nani, nini, lini, wapi, kwa nini (kwanini), vipi, mbona, gani, ngapi, namna gani.
     Swahili puts most question words last ("Mnafungua saa ngapi"), so nani, nini, lini, wapi,
     vipi, gani and ngapi count anywhere in the sentence, and, in text tagged `sw`, a verb with
     the question suffix -je ("Tunajiandikishaje").
   - en: a wh-word followed by an auxiliary ("how do", "what is", "where can", "when will"),
     "why" or "how come" alone, or an auxiliary followed by a subject ("can I", "is there",
     "do you", "are the"). A lone wh-word starts statements too often ("When we launched, ...").
   An untagged reply in Latin script is checked against English and Swahili; a reply tagged
   with another language only by rule 1.
3. A sentence ending in `!` is an exclamation ("How cool is that!"), never a question by rule 2.

A person's mark overrides the heuristic (`commcal inbox mark`): the latest of `question` and
`not-a-question` wins; `kb` says it is a question (with an answer worth keeping).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache


@lru_cache(maxsize=65536)  # words repeat: a report folds every word of every reply
def fold(text: str) -> str:
    """`text` lower-cased without accents (and Greek final sigma as sigma): how words compare."""
    decomposed = unicodedata.normalize("NFD", text.lower())
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return bare.replace("ς", "σ").replace("’", "'")


def word_list(text: str) -> list[str]:
    """The words of a list written as running text (the lists below read as the docs do)."""
    return text.split()


# Sentence-ending question marks in any text; U+037E is the Greek question mark.
QUESTION_MARKS = "?？¿؟\u037e"

_EL_WORDS = frozenset(
    fold(w)
    for w in word_list(
        """ποιος ποια ποιο ποιου ποιας ποιον ποιοι ποιες ποιων ποιους ποιανου ποιανης ποιανων
    τι ποτε που πως γιατι ποσο ποση ποσα ποσοι ποσες ποσων ποσους μηπως αραγε"""
    )
)
_SW_START = frozenset(word_list("je nani nini lini wapi kwanini vipi mbona gani ngapi"))
_SW_START_PAIRS = frozenset({("kwa", "nini"), ("namna", "gani"), ("kiasi", "gani")})
_SW_ANYWHERE = frozenset(word_list("nani nini lini wapi vipi gani ngapi"))
_EN_WH = frozenset(word_list("who what when where which whose whom how"))
_EN_AUX = frozenset(
    word_list(
        """do does did is are am was were can could will would should shall may might must
    have has had isn't aren't don't doesn't didn't can't couldn't won't wouldn't shouldn't
    wasn't weren't haven't hasn't"""
    )
)
_EN_HAVE = frozenset(word_list("have has had"))
_EN_DETERMINERS = frozenset(
    word_list("the a an my our your their his her its this that these those")
)
_EN_SUBJECTS = frozenset(
    word_list(
        """i you we they he she it there this that these those the a an my our your their his her
    its anyone anybody someone somebody everyone people one any"""
    )
)

# What is not prose: links, @mentions (also @name@host), #hashtags, `code`.
_NOT_PROSE = re.compile(r"https?://\S+|www\.\S+|@[\w.@:-]+|#\w+|`[^`]*`", re.UNICODE)
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?", re.UNICODE)
_SENTENCE = re.compile(r"[^.!?？¿؟\u037e;\n]+[.!?？¿؟\u037e;\n]*")


def is_greek(text: str, lang: str = "") -> bool:
    """Tagged Greek, or untagged with most of its letters Greek."""
    if lang:
        return _base_lang(lang) == "el"
    letters = [c for c in text if c.isalpha()]
    greek = sum(1 for c in letters if "\u0370" <= c <= "\u03ff" or "\u1f00" <= c <= "\u1fff")
    return bool(letters) and greek * 2 > len(letters)


def _base_lang(lang: str) -> str:
    return lang.strip().lower().replace("_", "-").split("-")[0]


def looks_like_question(text: str, lang: str = "") -> bool:
    """The heuristic alone (rules 1-3 of the module docstring)."""
    prose = _NOT_PROSE.sub(" ", text)
    greek = is_greek(prose, lang)
    marks = QUESTION_MARKS + (";" if greek else "")
    base = _base_lang(lang) if lang else ""
    languages = _languages(base, greek)
    for sentence in _SENTENCE.findall(prose):
        body = sentence.rstrip()
        ending = body[-1:] if body else ""
        if ending and ending in marks and _WORD.search(body):
            return True
        if ending == "!" or not languages:
            continue
        words = [fold(w) for w in _WORD.findall(body)]
        if words and _asks(words, languages, suffix_je=base == "sw"):
            return True
    return False


def _languages(base: str, greek: bool) -> tuple[str, ...]:
    if greek:
        return ("el",)
    if base in ("en", "sw"):
        return (base,)
    if base:  # another language: only its question marks tell
        return ()
    return ("en", "sw")


def _asks(words: Sequence[str], languages: Sequence[str], *, suffix_je: bool) -> bool:
    first = words[0]
    second = words[1] if len(words) > 1 else ""
    if "el" in languages and first in _EL_WORDS:
        return True
    if "sw" in languages:
        if first in _SW_START or (first, second) in _SW_START_PAIRS:
            return True
        if any(w in _SW_ANYWHERE for w in words):
            return True
        if suffix_je and any(len(w) > 5 and w.endswith("je") for w in words):
            return True
    if "en" in languages:
        if first == "why" or (first, second) == ("how", "come"):
            return True
        if first in _EN_WH and second in _EN_AUX:
            return True
        if first in _EN_AUX and second in _EN_SUBJECTS:
            # "Have a nice day", "Had the best time": have/has/had ask only before a pronoun.
            return first not in _EN_HAVE or second not in _EN_DETERMINERS
    return False


def is_question(text: str, lang: str = "", marks: Sequence[str] = ()) -> bool:
    """Whether a reply is a question: a person's latest mark of `question`, `not-a-question` or
    `kb` decides; without one, the heuristic (`looks_like_question`)."""
    for mark in reversed(marks):
        if mark in ("question", "kb"):
            return True
        if mark == "not-a-question":
            return False
    return looks_like_question(text, lang)
