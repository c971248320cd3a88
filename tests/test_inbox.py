"""`commcal inbox` and `commcal inbox mark`, through the CLI, over a fixture ledger of Greek,
Swahili and English replies; and the question heuristic (commcal.engagement.questions)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from engagement_fixtures import COMMUNITY, CONFIG, LEDGER, reply, sent, store
from typer.testing import CliRunner

from commcal.cli import app
from commcal.engagement.questions import is_question, looks_like_question
from commcal.ledger import open_ledger

NOW = "2026-12-04T12:00:00Z"
TUE = datetime(2026, 12, 1, tzinfo=UTC)  # a Tuesday; Athens is UTC+2


def h(hours: float) -> datetime:
    return TUE + timedelta(hours=hours)


REPLIES = [
    # English ';' joins clauses: no question.
    reply(1, "Great webinar; thanks a lot", h(8), lang="en"),
    # Greek questions end with ';' (tagged, and untagged in Greek script).
    reply(2, "Πότε είναι το επόμενο webinar;", h(8.5), lang="el", author="@eleni@example.gr"),
    reply(3, "Πού θα γίνει η συνάντηση;", h(18), author="eleni.bsky.social"),
    # Swahili: `Je,` asks, with no question mark.
    reply(4, "Je, mnafungua Jumamosi", h(19), lang="sw", author="@juma:matrix.example"),
    # Answered by the team, directly.
    reply(5, "How do I register?", h(20), author="@bob@example.social"),
    reply(6, "Use the link in our bio", h(21), parent="5", by_team=True, author="@us@x"),
    # Answered by another member further down: 7 <- 7.1 (the asker again) <- 7.2 (carol).
    reply(7, "Where is the venue?", h(22), author="@bob@example.social"),
    reply(71, "Anyone know?", h(22.5), parent="7", author="@bob@example.social"),
    reply(72, "At the library on Main St.", h(23), parent="71", author="@carol@example.social"),
    # Marks: answered elsewhere; the heuristic missed one; and one it got wrong.
    reply(9, "Can I bring a friend", h(30)),
    reply(10, "This would be great for our school!", h(31)),
    reply(11, "Is this free?", h(32)),
    # Not questions: thanks in Swahili; a '?' inside a link.
    reply(12, "Asante sana", h(33), lang="sw"),
    reply(13, "Details at https://example.org/?ref=tip&x=1 for all", h(34)),
    # A question that carries a member's address (masked when stored).
    reply(14, "Who do I write to? mary.k@example.org never answers", h(35)),
]
MARKS = [("mastodon:9", "answered"), ("mastodon:10", "question"), ("mastodon:11", "not-a-question")]
OPEN = ["mastodon:2", "mastodon:3", "mastodon:4", "mastodon:10", "mastodon:14"]


@pytest.fixture
def root(make_project: Any) -> Path:
    root = make_project(config=CONFIG, calendars={"community.yaml": COMMUNITY})
    sent(root, [("d1", "community", "weekly-tip", "mastodon", h(8))])
    store(root, REPLIES, marks=MARKS)
    return root


def inbox(root: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["-C", str(root), "inbox", "--now", NOW, *args])


def test_inbox_lists_exactly_the_open_questions_oldest_first(root: Path) -> None:
    result = inbox(root, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema"] == "commcal.inbox/1"
    assert [r["id"] for r in data["replies"]] == OPEN
    first = data["replies"][0]
    assert first == {
        "id": "mastodon:2",
        "status": "open",
        "delivery_id": "d1",
        "calendar": "community",
        "item": "weekly-tip",
        "channel": "mastodon",
        "author": "@eleni@example.gr",
        "text": "Πότε είναι το επόμενο webinar;",
        "lang": "el",
        "url": "https://example.social/@x/2",
        "created_utc": "2026-12-01T08:30:00Z",
        "age_seconds": int((datetime(2026, 12, 4, 12, tzinfo=UTC) - h(8.5)).total_seconds()),
        "staffed": True,
        "marks": [],
        "answers": 0,
    }
    # 10:30 Athens on a Tuesday is staffed; 20:00, 21:00 and Wednesday's 13:00+ ... per window.
    assert [r["staffed"] for r in data["replies"]] == [True, False, False, True, True]


def test_the_table_shows_age_staffed_and_a_cut_text(root: Path) -> None:
    store(root, [reply(20, "What " + "very " * 40 + "long question?", h(36))])
    result = inbox(root)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "6 open questions, oldest first" in out
    assert "mastodon:20" in out and "…" in out and "long question?" not in out
    assert "3d 3h" in out  # reply 2: from 1 Dec 08:30 to 4 Dec 12:00 UTC
    assert "2026-12-01 10:30" in out  # arrived, in the project's zone (Athens)
    assert "Europe/Athens" in out


def test_all_shows_every_reply_with_its_status(root: Path) -> None:
    data = json.loads(inbox(root, "--all", "--format", "json").stdout)
    status = {r["id"]: r["status"] for r in data["replies"]}
    assert status == {
        "mastodon:1": "not-a-question",
        "mastodon:2": "open",
        "mastodon:3": "open",
        "mastodon:4": "open",
        "mastodon:5": "answered",
        "mastodon:6": "team",
        "mastodon:7": "answered",
        "mastodon:71": "answered",
        "mastodon:72": "not-a-question",
        "mastodon:9": "answered",
        "mastodon:10": "open",
        "mastodon:11": "not-a-question",
        "mastodon:12": "not-a-question",
        "mastodon:13": "not-a-question",
        "mastodon:14": "open",
    }


def test_no_address_in_the_inbox_in_any_format(root: Path) -> None:
    for fmt in ("table", "json", "markdown"):
        out = inbox(root, "--all", "--format", fmt).stdout
        assert "mary.k@" not in out
        if fmt != "table":  # the table folds long text over lines
            assert "m***@example.org never answers" in out


def test_marks_move_replies_in_and_out_of_the_inbox(root: Path) -> None:
    run = CliRunner().invoke
    result = run(app, ["-C", str(root), "inbox", "mark", "mastodon:14", "answered"])
    assert result.exit_code == 0, result.output
    assert "marked mastodon:14 answered" in result.output
    # A unique prefix works (an exact id wins over being a prefix of others: mastodon:1).
    store(root, [reply("3kq2abcdef", "Nice one", h(40), channel="bluesky")])
    prefix = run(app, ["-C", str(root), "inbox", "mark", "bluesky:3kq", "question"])
    assert prefix.exit_code == 0 and "marked bluesky:3kq2abcdef question" in prefix.output
    assert (
        run(app, ["-C", str(root), "inbox", "mark", "mastodon:1", "not-a-question"]).exit_code == 0
    )
    # The latest of question / not-a-question wins.
    assert run(app, ["-C", str(root), "inbox", "mark", "mastodon:12", "question"]).exit_code == 0
    assert (
        run(app, ["-C", str(root), "inbox", "mark", "mastodon:12", "not-a-question"]).exit_code == 0
    )
    assert run(app, ["-C", str(root), "inbox", "mark", "mastodon:13", "question"]).exit_code == 0
    ids = [r["id"] for r in json.loads(inbox(root, "--format", "json").stdout)["replies"]]
    assert ids == [*OPEN[:4], "mastodon:13", "bluesky:3kq2abcdef"]
    ledger = open_ledger(f"sqlite:///{root / LEDGER}")
    try:
        assert ledger.reply_marks()["mastodon:12"] == ["question", "not-a-question"]
    finally:
        ledger.close()


def test_mark_refuses_unknown_ambiguous_and_bad_marks(root: Path) -> None:
    run = CliRunner().invoke
    unknown = run(app, ["-C", str(root), "inbox", "mark", "mastodon:99", "kb"])
    assert unknown.exit_code == 1 and "no reply 'mastodon:99'" in unknown.output
    ambiguous = run(app, ["-C", str(root), "inbox", "mark", "mastodon:1", "kb"])
    assert ambiguous.exit_code == 0  # the exact id, though mastodon:10 ... start with it too
    ambiguous = run(app, ["-C", str(root), "inbox", "mark", "mastodon:7", "kb"])
    assert ambiguous.exit_code == 0
    ambiguous = run(app, ["-C", str(root), "inbox", "mark", "mastodon:", "kb"])
    assert ambiguous.exit_code == 2 and "matches 15 replies" in ambiguous.output
    bad = run(app, ["-C", str(root), "inbox", "mark", "mastodon:2", "spam"])
    assert bad.exit_code == 2
    short = run(app, ["-C", str(root), "inbox", "mark", "ma", "kb"])
    assert short.exit_code == 2 and "too short" in short.output


def test_no_ledger_yet_is_an_empty_inbox_but_a_mistyped_state_is_an_error(
    make_project: Any, tmp_path: Path
) -> None:
    root = make_project(config=CONFIG, calendars={"community.yaml": COMMUNITY})
    result = inbox(root)
    assert result.exit_code == 0 and "No open questions." in result.stdout
    assert not (root / LEDGER).exists()  # reading made no ledger
    typo = inbox(root, "--state", f"sqlite:///{tmp_path / 'nope.db'}")
    assert typo.exit_code == 2 and "nope.db" in typo.output


def test_a_looping_thread_and_an_unknown_delivery_do_not_break_the_inbox(root: Path) -> None:
    # Two replies that name each other as parent (a bad pull), and one to a delivery the ledger
    # does not hold: each is listed once, the last without calendar or staffed hours.
    store(
        root,
        [
            reply("x1", "Why is this?", h(50), parent="x2", author="@a@x"),
            reply("x2", "Why not?", h(51), parent="x1", author="@a@x"),
            reply("x3", "Who runs this?", h(52), delivery="gone", parent="post-gone"),
        ],
    )
    data = json.loads(inbox(root, "--format", "json").stdout)
    rows = {r["id"]: r for r in data["replies"]}
    assert [i for i in rows if i.startswith("mastodon:x")] == [
        "mastodon:x1",
        "mastodon:x2",
        "mastodon:x3",
    ]
    assert rows["mastodon:x3"]["calendar"] is None and rows["mastodon:x3"]["staffed"] is None


# ---- the heuristic ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "lang", "expected"),
    [
        ("Πότε ξεκινάει;", "el", True),
        ("ΠΟΙΟΣ έρχεται", "", True),  # no mark, capitals, accent on the first word ignored
        ("πως μπορω να γραφτω", "", True),  # no accents at all
        ("Τι ώρα\u037e", "", True),  # the Greek question mark U+037E
        ("Ευχαριστούμε πολύ!", "el", False),
        ("Great post; see you", "en", False),
        ("Great post; see you", "", False),
        ("Nice talk; it helped", "en", False),  # ";" in English text is no question mark
        ("Je mnafungua Jumamosi", "", True),
        ("Mnafungua saa ngapi", "sw", True),  # Swahili puts the question word last
        ("Kwa nini mmefunga", "sw", True),
        ("Tunajiandikishaje", "sw", True),  # the -je suffix
        ("Karibu sana", "sw", False),
        ("how do i register", "en", True),
        ("Can anyone join", "", True),
        ("Have you registered", "en", True),
        ("Have a nice day", "en", False),
        ("When we launched, it rained.", "en", False),
        ("How cool is that!", "en", False),
        ("See https://example.org/?a=1 now", "", False),
        ("cc @ama@example.social", "", False),
        ("Wie spät ist es?", "de", True),
        ("Wie spät ist es", "de", False),  # another language: only its question marks tell
    ],
)
def test_question_heuristic(text: str, lang: str, expected: bool) -> None:
    assert looks_like_question(text, lang) is expected


def test_the_latest_mark_overrides_the_heuristic() -> None:
    assert is_question("Thanks!", "en", ["question"])
    assert not is_question("Why?", "en", ["question", "not-a-question"])
    assert is_question("Thanks!", "en", ["not-a-question", "kb"])
    assert is_question("Why?", "en", ["answered"])  # answered says nothing of being one
