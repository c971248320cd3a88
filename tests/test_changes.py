"""`commcal retract` and `commcal amend` through the CLI, against a loopback server that keeps
posts as each network's API does (tests/change_servers.py): what the network ends up holding,
what the person sees, exit codes, and what the ledger records."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from change_servers import (
    DISCORD_TOKEN,
    MASTODON_TOKEN,
    SLACK_SECRET,
    TELEGRAM_TOKEN,
    Fault,
    Posts,
    Request,
    channels,
    env_for,
)
from conftest import MakeProject
from typer.testing import CliRunner

from commcal.cli import app
from commcal.ledger import open_ledger

NOW = "2026-01-01T09:05:00Z"
LATER = "2026-01-01T10:00:00Z"
SECRETS = (MASTODON_TOKEN, DISCORD_TOKEN, TELEGRAM_TOKEN, SLACK_SECRET)


@pytest.fixture
def posts() -> Iterator[Posts]:
    with Posts() as p:
        yield p


def calendar(channel_names: list[str], word: str = "Monday") -> str:
    return (
        "vars: {day: " + word + "}\n"
        "items:\n"
        "  - id: tip\n"
        "    kind: post\n"
        f"    channels: [{', '.join(channel_names)}]\n"
        "    template: posts/tip\n"
        "    at: 2026-01-01 09:00\n"
    )


def build(make_project: MakeProject, posts: Posts, names: list[str]) -> Path:
    config = (
        "timezone: UTC\nlocale: en\nstate: sqlite:///state.db\n"
        "publish: {max_late: 1h, retry_delay: 0, lease: 5s, max_attempts: 2}\n" + channels(posts)
    )
    return make_project(
        config=config,
        calendars={"main.yaml": calendar(names)},
        templates={"posts/tip.j2": "The meetup is on {{ day }}\n"},
    )


def cli(root: Path, posts: Posts, *args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["-C", str(root), *args], env=env_for(posts), input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr
    return result.exit_code, result.stdout, result.stderr


def published(root: Path, posts: Posts) -> dict[str, str]:
    """Publish; the delivery ids by channel."""
    code, _, err = cli(root, posts, "publish", "--now", NOW)
    assert code == 0, err
    code, out, _ = cli(root, posts, "status", "--format", "json")
    return {row["channel"]: row["id"] for row in json.loads(out)["deliveries"]}


def change_rows(root: Path) -> list[tuple[str, int, str, str, str]]:
    with sqlite3.connect(root / "state.db") as conn:
        return list(
            conn.execute(
                "SELECT delivery_id, change, action, phase, detail FROM post_changes ORDER BY seq"
            )
        )


def reword(root: Path, names: list[str], word: str) -> None:
    (root / "calendars" / "main.yaml").write_text(calendar(names, word), encoding="utf-8")


# -- retract --------------------------------------------------------------------------------


def test_retract_deletes_the_mastodon_status_by_a_unique_prefix_and_records_it(
    make_project: MakeProject, posts: Posts
) -> None:
    root = build(make_project, posts, ["masto"])
    ids = published(root, posts)
    assert list(posts.posts) == [("mastodon", "101")]

    code, out, err = cli(
        root, posts, "retract", ids["masto"][:8], "--reason", "wrong day", "--yes", "--now", LATER
    )

    assert code == 0, err
    assert out == f"{ids['masto']}: retracted from masto\n"
    assert posts.posts == {}
    assert [r.path for r in posts.calls("DELETE", "/statuses/")] == ["/api/v1/statuses/101"]
    assert change_rows(root) == [
        (ids["masto"], 1, "retracted", "begun", "wrong day"),
        (ids["masto"], 1, "retracted", "done", ""),
    ]
    # Still sent: a later publish posts nothing again.
    code, _, _ = cli(root, posts, "publish", "--now", LATER)
    assert code == 0
    assert len(posts.calls("POST", "/api/v1/statuses")) == 1


def test_a_second_retract_says_already_retracted_and_asks_nothing(
    make_project: MakeProject, posts: Posts
) -> None:
    root = build(make_project, posts, ["masto"])
    ids = published(root, posts)
    assert cli(root, posts, "retract", ids["masto"], "--yes", "--now", LATER)[0] == 0
    asked = len(posts.requests)

    code, out, _ = cli(root, posts, "retract", ids["masto"], "--yes")

    assert code == 0
    assert out == f"{ids['masto']}: already retracted at 2026-01-01T10:00:00Z\n"
    assert len(posts.requests) == asked
    assert len(change_rows(root)) == 2


def test_a_404_on_retract_means_already_gone_and_is_recorded_not_failed(
    make_project: MakeProject, posts: Posts
) -> None:
    root = build(make_project, posts, ["disc"])
    ids = published(root, posts)
    posts.posts.clear()  # a moderator deleted it in Discord meanwhile

    code, out, err = cli(root, posts, "retract", ids["disc"], "--yes", "--now", LATER)

    assert code == 0, err
    assert out == f"{ids['disc']}: retracted from disc (it was already gone there)\n"
    assert change_rows(root)[-1] == (
        ids["disc"],
        1,
        "retracted",
        "done",
        "already gone: the network no longer had it",
    )


def test_discord_send_waits_for_the_message_so_it_can_be_deleted(
    make_project: MakeProject, posts: Posts
) -> None:
    root = build(make_project, posts, ["disc"])
    ids = published(root, posts)
    (sent,) = posts.calls("POST", "/api/webhooks/")
    assert "wait=true" in sent.path

    assert cli(root, posts, "retract", ids["disc"], "--yes")[0] == 0

    (deleted,) = posts.calls("DELETE", "/messages/")
    assert deleted.path == f"/api/webhooks/42/{DISCORD_TOKEN}/messages/101"
    assert posts.posts == {}


def test_a_403_is_a_clear_error_with_the_token_redacted_and_nothing_recorded_as_done(
    make_project: MakeProject, posts: Posts
) -> None:
    root = build(make_project, posts, ["masto"])
    ids = published(root, posts)

    def forbidden(request: Request) -> Fault | None:
        if request.method == "DELETE":
            return Fault(403, {"error": f"This action is not allowed for token {MASTODON_TOKEN}"})
        return None

    posts.fault = forbidden
    code, out, err = cli(root, posts, "retract", ids["masto"], "--yes")

    assert code == 1
    assert out == ""
    assert "HTTP 403: This action is not allowed for token" in err
    assert MASTODON_TOKEN not in err  # (cli() checks every output too)
    assert posts.posts  # still there
    assert [row[3] for row in change_rows(root)] == ["begun", "refused"]
    assert MASTODON_TOKEN not in json.dumps(change_rows(root))


def test_a_connection_dropped_after_the_delete_is_settled_by_the_next_retract(
    make_project: MakeProject, posts: Posts
) -> None:
    root = build(make_project, posts, ["masto"])
    ids = published(root, posts)
    posts.fault = lambda r: Fault(drop=True) if r.method == "DELETE" else None

    code, _, err = cli(root, posts, "retract", ids["masto"], "--yes", "--now", LATER)

    assert code == 1
    assert "may or may not have been done" in err
    assert f"commcal retract {ids['masto']}" in err
    assert posts.posts == {}  # the delete went through; its answer was lost
    assert [row[3] for row in change_rows(root)] == ["begun"]

    posts.fault = lambda r: None
    code, out, err = cli(root, posts, "retract", ids["masto"], "--yes", "--now", LATER)

    assert code == 0, err
    assert out == f"{ids['masto']}: retracted from masto (it was already gone there)\n"
    assert "took up change 1" in err
    assert [row[1:4] for row in change_rows(root)] == [
        (1, "retracted", "begun"),
        (1, "retracted", "done"),
    ]


def test_telegram_refusal_after_48_hours_says_why(make_project: MakeProject, posts: Posts) -> None:
    root = build(make_project, posts, ["tg"])
    ids = published(root, posts)
    posts.fault = lambda r: (
        Fault(
            400,
            {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: message can't be deleted",
            },
        )
        if "deleteMessage" in r.path
        else None
    )

    code, _, err = cli(root, posts, "retract", ids["tg"], "--yes")

    assert code == 1
    assert "message can't be deleted" in err
    assert "within 48 hours" in err


def test_x_and_bluesky_retract_their_posts(make_project: MakeProject, posts: Posts) -> None:
    root = build(make_project, posts, ["xx", "sky"])
    ids = published(root, posts)
    assert {network for network, _ in posts.posts} == {"x", "bluesky"}

    for channel in ("xx", "sky"):
        code, out, err = cli(root, posts, "retract", ids[channel], "--yes")
        assert code == 0, err
        assert out == f"{ids[channel]}: retracted from {channel}\n"
    assert posts.posts == {}
    (delete,) = posts.calls("POST", "deleteRecord")
    assert delete.json["collection"] == "app.bsky.feed.post"
    assert delete.json["repo"] == "did:plc:retract4test"


@pytest.mark.parametrize(
    ("channel", "says"),
    [
        ("hook", "webhook cannot delete a post once it is sent"),
        ("out", "console cannot delete a post once it is sent"),
        ("slk", "posts through an incoming webhook, which cannot delete its messages"),
    ],
)
def test_networks_without_deletion_say_so_and_exit_1(
    make_project: MakeProject, posts: Posts, channel: str, says: str
) -> None:
    root = build(make_project, posts, [channel])
    ids = published(root, posts)
    asked = len(posts.requests)

    code, out, err = cli(root, posts, "retract", ids[channel], "--yes")

    assert code == 1
    assert out == ""
    assert says in err
    assert len(posts.requests) == asked
    assert change_rows(root) == []


def test_dry_run_says_what_it_would_delete_and_asks_the_network_nothing(
    make_project: MakeProject, posts: Posts
) -> None:
    root = build(make_project, posts, ["masto"])
    ids = published(root, posts)
    asked = len(posts.requests)

    code, out, _ = cli(root, posts, "retract", ids["masto"], "--dry-run")

    assert code == 0
    assert out == f"{ids['masto']}: would delete {posts.url}/@us/101 on masto\n"
    assert len(posts.requests) == asked
    assert change_rows(root) == []


def on_a_terminal(root: Path, posts: Posts, answer: bytes, *args: str) -> tuple[int, str]:
    """Run commcal in a real subprocess whose stdin and stdout are a pseudo-terminal; type
    `answer` once it asks. Returns its exit code and everything it wrote."""
    import os
    import pty
    import subprocess
    import sys
    import time

    leader, follower = pty.openpty()
    env = {**os.environ, **env_for(posts), "PYTHONPATH": str(Path(__file__).parents[1])}
    process = subprocess.Popen(
        [sys.executable, "-m", "commcal", "-C", str(root), *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 20
    while b"[y/N]" not in seen and time.monotonic() < deadline:
        seen += os.read(leader, 4096)
    os.write(leader, answer)
    code = process.wait(timeout=20)
    try:
        while chunk := os.read(leader, 4096):
            seen += chunk
    except OSError:  # the terminal closed with the process
        pass
    os.close(leader)
    return code, seen.decode(errors="replace")


def test_without_yes_it_asks_on_a_terminal_and_refuses_without_one(
    make_project: MakeProject, posts: Posts
) -> None:
    root = build(make_project, posts, ["masto"])
    ids = published(root, posts)

    code, _, err = cli(root, posts, "retract", ids["masto"])
    assert code == 2
    assert "not on a terminal, so nobody can confirm: pass --yes" in err
    assert posts.posts

    code, seen = on_a_terminal(root, posts, b"n\r", "retract", ids["masto"])
    assert code == 1, seen
    assert f"Delete {posts.url}/@us/101 (main/tip on masto)? [y/N]" in seen
    assert "nothing changed" in seen
    assert posts.posts

    code, seen = on_a_terminal(root, posts, b"y\r", "retract", ids["masto"])
    assert code == 0, seen
    assert f"{ids['masto']}: retracted from masto" in seen
    assert posts.posts == {}


def test_x_refusing_to_delete_says_why(make_project: MakeProject, posts: Posts) -> None:
    root = build(make_project, posts, ["xx"])
    ids = published(root, posts)
    posts.fault = lambda r: (
        Fault(
            403, {"title": "Forbidden", "detail": "You are not permitted to perform this action."}
        )
        if r.method == "DELETE"
        else None
    )

    code, _, err = cli(root, posts, "retract", ids["xx"], "--yes")

    assert code == 1
    assert "HTTP 403: Forbidden — You are not permitted to perform this action." in err
    assert "access tier or token scopes (tweet.write)" in err
    assert posts.posts


def test_a_telegram_error_echoing_the_bot_token_is_redacted(
    make_project: MakeProject, posts: Posts
) -> None:
    root = build(make_project, posts, ["tg"])
    ids = published(root, posts)
    echo = f"Bad Request: wrong request /bot{TELEGRAM_TOKEN}/deleteMessage"
    posts.fault = lambda r: (
        Fault(400, {"ok": False, "error_code": 400, "description": echo})
        if "deleteMessage" in r.path
        else None
    )

    code, _, err = cli(root, posts, "retract", ids["tg"], "--yes")

    assert code == 1
    assert "Bad Request: wrong request /bot" in err
    assert TELEGRAM_TOKEN not in err  # (cli() checks stdout too)
    assert TELEGRAM_TOKEN not in json.dumps(change_rows(root))


# -- finding the delivery ---------------------------------------------------------------------


def test_an_unknown_id_suggests_those_that_share_its_prefix(
    make_project: MakeProject, posts: Posts
) -> None:
    root = build(make_project, posts, ["masto"])
    ids = published(root, posts)
    typo = ids["masto"][:8] + ("0" if ids["masto"][8] != "0" else "1")

    code, _, err = cli(root, posts, "retract", typo, "--yes")

    assert code == 1
    assert f"no delivery {typo!r} in the ledger; did you mean:" in err
    assert f"{ids['masto']}  main/tip on masto (sent)" in err


def test_an_ambiguous_prefix_lists_the_candidates(make_project: MakeProject, posts: Posts) -> None:
    from datetime import UTC, datetime

    from commcal.ledger import DueDelivery

    root = build(make_project, posts, ["masto"])
    published(root, posts)
    due = datetime(2026, 1, 1, 9, tzinfo=UTC)
    with open_ledger("sqlite:///state.db", project_dir=root) as ledger:
        for n in (1, 2):  # two rows whose ids share 12 characters
            row = DueDelivery(f"abcdef012345{n:04d}", "main", f"old{n}", "masto", due)
            ledger.record_skipped(row, reason="draft", now=due)

    code, _, err = cli(root, posts, "retract", "abcdef0123", "--yes")

    assert code == 2
    assert err == (
        "commcal: 'abcdef0123' matches 2 deliveries; give more characters:\n"
        "  abcdef0123450001  main/old1 on masto (skipped)\n"
        "  abcdef0123450002  main/old2 on masto (skipped)\n"
    )
    code, _, err = cli(root, posts, "retract", "abcdef0123450002", "--yes")
    assert code == 1
    assert "abcdef0123450002 is skipped, not sent: there is no post to retract" in err


def test_cannot_retract_what_was_not_sent(make_project: MakeProject, posts: Posts) -> None:
    root = build(make_project, posts, ["masto"])
    posts.fault = lambda r: Fault(422, {"error": "Validation failed: Text can't be blank"})
    code, _, _ = cli(root, posts, "publish", "--now", NOW)
    assert code == 1
    code, out, _ = cli(root, posts, "status", "--format", "json")
    (row,) = json.loads(out)["deliveries"]
    assert row["state"] == "failed"

    code, _, err = cli(root, posts, "retract", row["id"], "--yes")

    assert code == 1
    assert f"{row['id']} is failed, not sent: there is no post to retract" in err


# -- amend ------------------------------------------------------------------------------------


def test_amend_shows_the_diff_and_edits_the_mastodon_status_in_place(
    make_project: MakeProject, posts: Posts
) -> None:
    root = build(make_project, posts, ["masto"])
    ids = published(root, posts)
    reword(root, ["masto"], "Tuesday")

    code, out, err = cli(root, posts, "amend", ids["masto"][:7], "--dry-run")
    assert code == 0, err
    assert out == (
        "--- as masto has it\n+++ amended\n@@ -1 +1 @@\n"
        "-The meetup is on Monday\n+The meetup is on Tuesday\n"
    )
    assert posts.calls("PUT", "/statuses/") == []

    code, out, err = cli(root, posts, "amend", ids["masto"], "--yes", "--now", LATER)
    assert code == 0, err
    assert out.endswith(f"{ids['masto']}: amended on masto: {posts.url}/@us/101\n")
    assert posts.posts[("mastodon", "101")] == "The meetup is on Tuesday"
    (edit,) = posts.calls("PUT", "/statuses/101")
    assert edit.json == {"status": "The meetup is on Tuesday", "language": "en"}

    # The next amend diffs against the amended text, recorded in the ledger.
    code, _, err = cli(root, posts, "amend", ids["masto"], "--yes")
    assert code == 1
    assert "render the same text the post has (as amended at 2026-01-01T10:00:00Z)" in err
    code, out, _ = cli(root, posts, "status", ids["masto"])
    assert "amended" in out


def test_amend_refuses_unchanged_text(make_project: MakeProject, posts: Posts) -> None:
    root = build(make_project, posts, ["disc"])
    ids = published(root, posts)

    code, _, err = cli(root, posts, "amend", ids["disc"], "--yes")

    assert code == 1
    assert "nothing to amend" in err
    assert posts.calls("PATCH", "/messages/") == []
    assert change_rows(root) == []


def test_amend_checks_the_networks_limit_first(make_project: MakeProject, posts: Posts) -> None:
    root = build(make_project, posts, ["masto"])
    ids = published(root, posts)
    reword(root, ["masto"], "x" * 600)

    code, _, err = cli(root, posts, "amend", ids["masto"], "--yes")

    assert code == 1
    assert "main.yaml:3" in err
    assert "over mastodon's limit of 500" in err
    assert posts.calls("PUT", "/statuses/") == []


def test_amend_edits_discord_and_telegram(make_project: MakeProject, posts: Posts) -> None:
    root = build(make_project, posts, ["disc", "tg"])
    ids = published(root, posts)
    reword(root, ["disc", "tg"], "Friday")

    for channel in ("disc", "tg"):
        code, _, err = cli(root, posts, "amend", ids[channel], "--yes")
        assert code == 0, err
    assert sorted(posts.posts.values()) == ["The meetup is on Friday"] * 2
    (patch,) = posts.calls("PATCH", "/messages/")
    assert patch.json == {"content": "The meetup is on Friday"}


def test_an_interrupted_telegram_amend_is_settled_by_the_next_one(
    make_project: MakeProject, posts: Posts
) -> None:
    root = build(make_project, posts, ["tg"])
    ids = published(root, posts)
    reword(root, ["tg"], "Friday")
    posts.fault = lambda r: Fault(drop=True) if "editMessageText" in r.path else None

    code, _, err = cli(root, posts, "amend", ids["tg"], "--yes")
    assert code == 1
    assert "may or may not have been done" in err
    posts.fault = lambda r: None

    code, _, err = cli(root, posts, "amend", ids["tg"], "--yes")

    assert code == 0, err
    assert "took up change 1" in err
    # Telegram answered "message is not modified": the first edit had got through.
    assert posts.posts == {("telegram", "101"): "The meetup is on Friday"}
    assert [row[1:4] for row in change_rows(root)] == [
        (1, "amended", "begun"),
        (1, "amended", "done"),
    ]


def test_an_interrupted_mastodon_amend_is_read_back_and_not_sent_again(
    make_project: MakeProject, posts: Posts
) -> None:
    root = build(make_project, posts, ["masto"])
    ids = published(root, posts)
    reword(root, ["masto"], "Friday")
    posts.fault = lambda r: Fault(drop=True) if r.method == "PUT" else None

    assert cli(root, posts, "amend", ids["masto"], "--yes")[0] == 1
    posts.fault = lambda r: None
    code, out, err = cli(root, posts, "amend", ids["masto"], "--yes", "--now", LATER)

    assert code == 0, err
    assert "found already applied" in err
    assert out.endswith(f"{ids['masto']}: amended on masto: {posts.url}/@us/101\n")
    assert len(posts.calls("PUT", "/statuses/101")) == 1  # the edit went out once
    assert [row[1:4] for row in change_rows(root)] == [
        (1, "amended", "begun"),
        (1, "amended", "done"),
    ]


@pytest.mark.parametrize(
    ("channel", "says"),
    [("sky", "Bluesky posts cannot be edited"), ("xx", "X's API cannot edit posts")],
)
def test_bluesky_and_x_cannot_amend_and_suggest_retract(
    make_project: MakeProject, posts: Posts, channel: str, says: str
) -> None:
    root = build(make_project, posts, [channel])
    ids = published(root, posts)
    reword(root, [channel], "Friday")

    code, _, err = cli(root, posts, "amend", ids[channel], "--yes")

    assert code == 1
    assert says in err
    assert "commcal retract" in err


def test_a_retracted_post_cannot_be_amended(make_project: MakeProject, posts: Posts) -> None:
    root = build(make_project, posts, ["masto"])
    ids = published(root, posts)
    assert cli(root, posts, "retract", ids["masto"], "--yes", "--now", LATER)[0] == 0
    reword(root, ["masto"], "Friday")

    code, _, err = cli(root, posts, "amend", ids["masto"], "--yes")

    assert code == 1
    assert "was retracted at 2026-01-01T10:00:00Z: there is nothing to amend" in err


# -- status -----------------------------------------------------------------------------------


def test_status_shows_retracted_posts_and_changes(make_project: MakeProject, posts: Posts) -> None:
    root = build(make_project, posts, ["masto", "disc"])
    ids = published(root, posts)
    assert cli(root, posts, "retract", ids["masto"], "--yes", "--now", LATER)[0] == 0
    reword(root, ["masto", "disc"], "Friday")
    assert cli(root, posts, "amend", ids["disc"], "--yes", "--now", LATER)[0] == 0

    code, out, _ = cli(root, posts, "status", "--format", "json")
    rows = {row["channel"]: row for row in json.loads(out)["deliveries"]}
    assert rows["masto"]["state"] == "sent"
    assert rows["masto"]["retracted_utc"] == "2026-01-01T10:00:00Z"
    assert rows["disc"]["retracted_utc"] is None
    assert [c["action"] for c in rows["disc"]["changes"]] == ["amended"]

    code, out, _ = cli(root, posts, "status", ids["masto"], "--format", "json")
    (change,) = json.loads(out)["changes"]
    assert change["action"] == "retracted"
    assert change["outcome"] == "done"

    code, out, _ = cli(root, posts, "status", "--utc")
    assert code == 0
    assert "sent (retracted)" in out
    assert "(1 of those shown retracted)" in out
    with open_ledger("sqlite:///state.db", project_dir=root) as ledger:
        assert set(ledger.retracted(ids.values())) == {ids["masto"]}


def test_a_retract_killed_after_its_request_went_out_is_settled_by_the_next(
    make_project: MakeProject, posts: Posts
) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    root = build(make_project, posts, ["masto"])
    ids = published(root, posts)
    posts.fault = lambda r: Fault(stall=30) if r.method == "DELETE" else None
    env = {**os.environ, **env_for(posts), "PYTHONPATH": str(Path(__file__).parents[1])}
    process = subprocess.Popen(
        [sys.executable, "-m", "commcal", "-C", str(root), "retract", ids["masto"], "--yes"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not posts.calls("DELETE", "/statuses/") and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)  # the status is deleted; its answer never read
    process.wait(timeout=10)
    assert posts.posts == {}
    assert [row[3] for row in change_rows(root)] == ["begun"]

    posts.fault = lambda r: None
    code, out, err = cli(root, posts, "retract", ids["masto"], "--yes")

    assert code == 0, err
    assert out == f"{ids['masto']}: retracted from masto (it was already gone there)\n"
    assert [row[1:4] for row in change_rows(root)] == [
        (1, "retracted", "begun"),
        (1, "retracted", "done"),
    ]


def test_a_retract_after_an_interrupted_amend_leaves_the_amend_and_deletes(
    make_project: MakeProject, posts: Posts
) -> None:
    root = build(make_project, posts, ["disc"])
    ids = published(root, posts)
    reword(root, ["disc"], "Friday")
    posts.fault = lambda r: Fault(drop=True) if r.method == "PATCH" else None
    assert cli(root, posts, "amend", ids["disc"], "--yes")[0] == 1
    posts.fault = lambda r: None

    code, out, err = cli(root, posts, "retract", ids["disc"], "--yes")

    assert code == 0, err
    assert out == f"{ids['disc']}: retracted from disc\n"
    assert "(change 1 (amended), interrupted at" in err
    assert "was left: interrupted; the post was then retracted)" in err
    assert posts.posts == {}
    assert [row[1:4] for row in change_rows(root)] == [
        (1, "amended", "begun"),
        (1, "amended", "abandoned"),
        (2, "retracted", "begun"),
        (2, "retracted", "done"),
    ]
    code, out, _ = cli(root, posts, "status", ids["disc"], "--format", "json")
    assert [c["outcome"] for c in json.loads(out)["changes"]] == ["abandoned", "done"]
