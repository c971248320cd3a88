"""`commcal kb export`: only pairs marked kb, with sources, never a member's handle or address."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from engagement_fixtures import COMMUNITY, CONFIG, reply, sent, store
from typer.testing import CliRunner

from commcal.cli import app

T = datetime(2026, 12, 1, 8, tzinfo=UTC)


def h(hours: float) -> datetime:
    return T + timedelta(hours=hours)


REPLIES = [
    reply(1, "When is the next #webinar?", h(1), author="@ama@example.social"),
    reply(2, "Every first Tuesday at 18:00", h(2), parent="1", by_team=True, author="@us@x"),
    reply(3, "Πότε είναι το επόμενο #Webinar;", h(3), author="@eleni@example.gr", lang="el"),
    reply(4, "Την πρώτη Τρίτη κάθε μήνα", h(4), parent="3", author="@carol@example.social"),
    reply(5, "Στις 18:00", h(5), parent="3", by_team=True, author="@us@x"),
    reply(
        6, "How do I register? Write me at mary.k@example.org", h(6), author="@ama@example.social"
    ),
    reply(
        7,
        "@ama@example.social use the form at https://example.org/join",
        h(7),
        parent="6",
        by_team=True,
        author="@us@x",
    ),
    # Answered, but nobody marked it kb: not exported.
    reply(8, "Je, mnafungua Jumamosi #saa", h(8), author="@juma:matrix.example", lang="sw"),
    reply(9, "Ndiyo, saa tatu", h(9), parent="8", by_team=True, author="@us@x"),
    # Marked kb, but no answer yet; and one a member answered that nobody accepted.
    reply(10, "Is there parking?", h(10), author="@bob@example.social"),
    reply(11, "Can kids come?", h(11), author="@bob@example.social"),
    reply(12, "Mine did!", h(12), parent="11", author="@carol@example.social"),
]
MARKS = [
    ("mastodon:1", "kb"),
    ("mastodon:3", "kb"),
    ("mastodon:4", "kb"),  # the member's answer is the accepted one, not the team's later one
    ("mastodon:6", "kb"),
    ("mastodon:10", "kb"),
    ("mastodon:11", "kb"),
]


@pytest.fixture
def root(make_project: Any) -> Path:
    root = make_project(config=CONFIG, calendars={"community.yaml": COMMUNITY})
    sent(root, [("d1", "community", "weekly-tip", "mastodon", T)])
    store(root, REPLIES, marks=MARKS)
    return root


def export(root: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["-C", str(root), "kb", "export", *args])


def front_matter(text: str) -> dict[str, Any]:
    head, sep, _ = text.removeprefix("---\n").partition("\n---\n")
    assert sep, text
    data = yaml.safe_load(head)
    assert isinstance(data, dict)
    return data


def test_only_pairs_marked_kb_are_written_with_their_sources(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "kb"
    result = export(root, "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["general.md", "webinar.md"]
    webinar = (out / "webinar.md").read_text(encoding="utf-8")
    assert front_matter(webinar) == {
        "title": "webinar",
        "sources": ["https://example.social/@x/1", "https://example.social/@x/3"],
        "date": datetime(2026, 12, 1).date(),
        "updated": datetime(2026, 12, 1).date(),
    }
    assert "## When is the next #webinar?" in webinar
    assert "Every first Tuesday at 18:00" in webinar
    assert "## Πότε είναι το επόμενο #Webinar;" in webinar
    assert "Την πρώτη Τρίτη κάθε μήνα" in webinar and "Στις 18:00" not in webinar
    assert "answered by a member" in webinar and "answered by the team" in webinar
    general = (out / "general.md").read_text(encoding="utf-8")
    assert front_matter(general)["sources"] == ["https://example.social/@x/6"]
    assert "use the form at https://example.org/join" in general
    for text in (webinar, general):
        for absent in ("Jumamosi", "parking", "kids", "Mine did"):
            assert absent not in text
    assert "left out mastodon:10: marked kb, but no answer yet" in result.output
    assert "left out mastodon:11" in result.output  # a member's answer counts only when marked
    assert f"wrote {out / 'webinar.md'}: 2 questions" in result.output


def test_no_member_handle_or_address_in_the_export(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "kb"
    assert export(root, "--out", str(out)).exit_code == 0
    everything = "".join(p.read_text(encoding="utf-8") for p in out.iterdir())
    for handle in ("@ama", "ama@", "eleni", "carol", "@us@x", "juma", "bob"):
        assert handle not in everything
    assert "mary.k@" not in everything
    assert "Write me at m***@example.org" in everything  # masked when stored, so it reads


def test_keyword_groups_share_the_most_common_word(make_project: Any, tmp_path: Path) -> None:
    root = make_project(config=CONFIG, calendars={"community.yaml": COMMUNITY})
    store(
        root,
        [
            reply(1, "How does registration work?", h(1)),
            reply(2, "Registration opens on Monday", h(2), parent="1", by_team=True),
            reply(3, "Is registration free?", h(3)),
            reply(4, "Yes, registration costs nothing", h(4), parent="3", by_team=True),
            reply(5, "Where is the venue?", h(5)),
            reply(6, "The library on Main Street", h(6), parent="5", by_team=True),
        ],
        marks=[("mastodon:1", "kb"), ("mastodon:3", "kb"), ("mastodon:5", "kb")],
    )
    out = tmp_path / "kb"
    result = export(root, "--out", str(out), "--group", "keyword")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["general.md", "registration.md"]
    registration = (out / "registration.md").read_text(encoding="utf-8")
    assert registration.count("\n## ") == 2
    assert "venue" in (out / "general.md").read_text(encoding="utf-8")


def test_nothing_marked_writes_nothing(make_project: Any, tmp_path: Path) -> None:
    root = make_project(config=CONFIG, calendars={"community.yaml": COMMUNITY})
    result = export(root, "--out", str(tmp_path / "kb"))
    assert result.exit_code == 0
    assert "nothing written" in result.output
    assert not (tmp_path / "kb").exists()


def test_out_must_be_a_folder(root: Path, tmp_path: Path) -> None:
    target = tmp_path / "file.md"
    target.write_text("mine", encoding="utf-8")
    result = export(root, "--out", str(target))
    assert result.exit_code == 2 and "not a folder" in result.output
    assert target.read_text(encoding="utf-8") == "mine"


def test_out_inside_the_project_inputs_is_refused(root: Path) -> None:
    result = export(root, "--out", str(root / "calendars"))
    assert result.exit_code == 2 and "write the export somewhere else" in result.output
    assert sorted(p.name for p in (root / "calendars").iterdir()) == ["community.yaml"]
