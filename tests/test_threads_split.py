"""`thread: {split: sentences}`: a long text cut at sentence boundaries into numbered parts
within a network's limit, counted the network's way."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commcal.channels.text import graphemes, x_length
from commcal.threads import SplitError, sentences, split_sentences

NUMBER = re.compile(r" (\d+)/(\d+)$")


def bodies(parts: list[str]) -> list[str]:
    """The parts without their numbers, checking the numbers run 1/n .. n/n."""
    out = []
    for n, part in enumerate(parts, 1):
        found = NUMBER.search(part)
        assert found, part
        assert (int(found.group(1)), int(found.group(2))) == (n, len(parts))
        out.append(part[: found.start()])
    return out


def squeeze(text: str) -> str:
    return " ".join(text.split())


def test_greek_question_marks_end_sentences_and_abbreviations_do_not() -> None:
    text = (
        "Τι κάνεις; Είμαι καλά. Ο κ. Παπαδόπουλος ήρθε π.χ. χθες στις 9.30 το πρωί. Θα έρθεις; Ναι!"
    )
    assert sentences(text) == [
        "Τι κάνεις; ",
        "Είμαι καλά. ",
        "Ο κ. Παπαδόπουλος ήρθε π.χ. χθες στις 9.30 το πρωί. ",
        "Θα έρθεις; ",
        "Ναι!",
    ]


def test_english_semicolons_initials_and_titles_do_not_end_sentences() -> None:
    text = "We met Dr. Smith and J. R. Jones; they agreed, e.g. on prices. It costs 3.5 EUR. Done."
    assert sentences(text) == [
        "We met Dr. Smith and J. R. Jones; they agreed, e.g. on prices. ",
        "It costs 3.5 EUR. ",
        "Done.",
    ]


def test_a_blank_line_ends_a_sentence_and_quotes_stay_with_theirs() -> None:
    text = 'She said "Go!" Then we left\n\nNew paragraph here.'
    assert sentences(text) == ['She said "Go!" ', "Then we left\n\n", "New paragraph here."]


def test_parts_are_numbered_and_the_number_counts_towards_the_limit() -> None:
    text = "One two three. Four five six. Seven eight nine."
    parts = split_sentences([text], len, 21)
    assert parts == ["One two three. 1/3", "Four five six. 2/3", "Seven eight nine. 3/3"]
    # One less, and the last sentence no longer fits with its number: it is cut.
    assert split_sentences([text], len, 20)[-2:] == ["Seven eight 3/4", "nine. 4/4"]


def test_a_text_that_fits_stays_one_post_unnumbered() -> None:
    assert split_sentences(["Short. Text."], len, 300) == ["Short. Text."]
    assert split_sentences(["No limit at all. " * 100], len, None) == ["No limit at all. " * 100]


def test_a_sentence_longer_than_a_post_is_cut_between_words() -> None:
    text = "word " * 30 + "end."
    parts = split_sentences([text], len, 40)
    assert all(len(p) <= 40 for p in parts)
    assert squeeze(" ".join(bodies(parts))) == squeeze(text)


def test_a_word_that_cannot_fit_with_its_number_is_an_error() -> None:
    with pytest.raises(SplitError, match="cannot fit in a post of 20"):
        split_sentences(["Look: https://example.org/a/very/long/path/indeed and more."], len, 20)


def test_ten_parts_or_more_leave_room_for_the_wider_number() -> None:
    text = " ".join(f"Sentence {n:02d} here." for n in range(30))
    parts = split_sentences([text], len, 22)
    assert len(parts) >= 10
    assert all(len(p) <= 22 for p in parts), [p for p in parts if len(p) > 22]
    assert squeeze(" ".join(bodies(parts))) == squeeze(text)


def test_several_templates_are_split_apart_and_numbered_together() -> None:
    parts = split_sentences(["Aaa bbb. Ccc ddd.", "Eee."], len, 14)
    assert parts == ["Aaa bbb. 1/3", "Ccc ddd. 2/3", "Eee. 3/3"]


WORD = st.text(
    alphabet="abcdefxyzαβγδεζηθΑΒΓΔΕΖ😀é",
    min_size=1,
    max_size=8,
)
PUNCT = st.sampled_from([".", ";", "?", "!", "…", ",", ""])
SENTENCE = st.builds(
    lambda words, mark, space: " ".join(words) + mark + space,
    st.lists(WORD, min_size=1, max_size=12),
    PUNCT,
    st.sampled_from([" ", "  ", "\n", "\n\n", " "]),
)
MEASURES = {"code points": len, "graphemes": graphemes, "x": x_length}


@settings(max_examples=150, deadline=None)
@given(
    text=st.lists(SENTENCE, min_size=1, max_size=25).map("".join),
    limit=st.integers(min_value=24, max_value=300),
    measure=st.sampled_from(sorted(MEASURES)),
)
def test_split_parts_join_back_to_the_text_and_each_fits(
    text: str, limit: int, measure: str
) -> None:
    count = MEASURES[measure]
    parts = split_sentences([text], count, limit)
    assert all(count(p) <= limit for p in parts)
    if len(parts) == 1 and count(text) <= limit:
        assert parts == [text]
        return
    assert squeeze(" ".join(bodies(parts))) == squeeze(text)
    assert all(b.strip() for b in bodies(parts))


@settings(max_examples=150, deadline=None)
@given(text=st.lists(SENTENCE, min_size=1, max_size=25).map("".join))
def test_sentences_join_back_exactly(text: str) -> None:
    assert "".join(sentences(text)) == text
