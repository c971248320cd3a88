"""The loop back from the community on a real Bluesky network (PDS and AppView,
tests/real_servers.py `real_bsky_network`): commcal publishes, a member likes, reposts and asks in
Greek through the real APIs, the team answers, and `pull`, `inbox`, `inbox mark`, `kb export`
and `report` show exactly that."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import MakeProject
from publish_support import TEMPLATES, config, every_minute
from real_servers import BskyNetwork, PdsAccount, real_bsky_network
from typer.testing import CliRunner

from commcal.cli import app

runner = CliRunner()
# Sent two days ago: the snapshots `pull` takes now (they carry the real time of the read) are
# past the 24 h at which `report` compares posts.
SENT_AT = (datetime.now(UTC) - timedelta(days=2)).replace(second=0, microsecond=0)
SENT = (SENT_AT + timedelta(seconds=30)).isoformat()


def run(root: Path, account: PdsAccount, *args: str) -> Any:
    result = runner.invoke(app, ["-C", str(root), *args], env={"SKY_PASSWORD": account.password})
    assert result.exit_code == 0, result.output
    assert account.password not in result.output
    return result


def as_json(root: Path, account: PdsAccount, *args: str) -> Any:
    return json.loads(run(root, account, *args, "--format", "json").stdout)


def project(make_project: MakeProject, network: BskyNetwork, account: PdsAccount) -> Path:
    channels = (
        "  sky:\n    type: bluesky\n"
        f"    service: {network.pds}\n    handle: {account.handle}\n"
        "    app_password: ${SKY_PASSWORD}\n"
        f"    appview: {network.appview}\n"
    )
    calendar = every_minute("launch", ["sky"], SENT_AT.strftime("%Y-%m-%d %H:%M"), 1)
    calendar = "staff:\n  - daily 08:00-20:00\n" + calendar
    return make_project(
        config=config(channels, publish="max_late: 1d"),
        calendars={"main.yaml": calendar},
        templates=TEMPLATES,
    )


def test_likes_reposts_and_a_greek_question_come_back_through_the_real_appview(
    make_project: MakeProject, tmp_path: Path
) -> None:
    network = real_bsky_network()
    team, member = network.account(), network.account()
    root = project(make_project, network, team)
    assert as_json(root, team, "publish", "--now", SENT)["counts"] == {"sent": 1}
    [post] = team.posts()
    subject = {"uri": post["uri"], "cid": post["cid"]}

    network.create(member, "app.bsky.feed.like", {"subject": subject})
    network.create(member, "app.bsky.feed.repost", {"subject": subject})
    question = network.create(
        member,
        "app.bsky.feed.post",
        {"text": "Πότε ξεκινά η εγγραφή;", "reply": {"root": subject, "parent": subject}},
    )
    network.create(
        member,
        "app.bsky.feed.post",
        {"text": "Ωραίο!", "reply": {"root": subject, "parent": subject}},
    )
    network.settle()

    pulled = as_json(root, team, "pull")
    [read] = pulled["posts"]
    assert read["outcome"] == "pulled", read
    assert (read["likes"], read["reposts"], read["replies"]) == (1, 1, 2)
    assert read["new_replies"] == 2

    # The inbox: the question is open (the exclamation is no question); its author is the
    # member's handle.
    inbox = as_json(root, team, "inbox")
    [open_question] = inbox["replies"]
    assert open_question["text"] == "Πότε ξεκινά η εγγραφή;"
    assert open_question["author"] == member.handle
    assert open_question["status"] == "open"

    # The team answers in the thread; the next pull finds the answer and the inbox is empty.
    parent = {"uri": question["uri"], "cid": question["cid"]}
    answer = "Τη Δευτέρα στις 10:00, στο https://example.org/register"
    network.create(
        team, "app.bsky.feed.post", {"text": answer, "reply": {"root": subject, "parent": parent}}
    )
    network.settle()
    again = as_json(root, team, "pull")["posts"][0]
    # The AppView's replyCount is the post's direct replies; the answer is one to the question.
    assert (again["replies"], again["new_replies"]) == (2, 1)
    assert as_json(root, team, "inbox")["replies"] == []

    # Marked for the knowledge base by a person: the pair is exported, without the member's
    # handle, with the public thread as its source.
    run(root, team, "inbox", "mark", open_question["id"], "kb")
    out = tmp_path / "kb"
    run(root, team, "kb", "export", "--out", str(out))
    pages = {p.name: p.read_text() for p in out.glob("*.md")}
    assert len(pages) == 1, pages
    [page] = pages.values()
    assert "Πότε ξεκινά η εγγραφή;" in page and answer in page
    assert member.handle not in page and "@example.com" not in page

    # The report: one post, measured at 24 h: 1 like + 1 repost + 2 replies.
    report = as_json(root, team, "report", "--by", "channel")
    [group] = report["groups"]
    assert group["group"] == "sky"
    assert (group["deliveries"], group["measured"]) == (1, 1)
    assert group["engagement_median"] == 4
    assert (group["replies"], group["questions"], group["answered"]) == (2, 1, 1)
    # The question was answered, inside or outside the staffed hours (by when the test runs).
    medians = group["first_answer_median_s"]
    assert medians["undeclared"] is None
    assert [medians["staffed"], medians["unstaffed"]].count(None) == 1
