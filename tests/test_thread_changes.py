"""`commcal retract` and `commcal amend` on the parts of a thread, against the loopback
server of tests/change_servers.py: a thread whose first part was deleted does not go on
replying to it, and the person is told what happens to the parts not yet sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from change_servers import Fault, Posts, Request, channels, env_for
from conftest import MakeProject
from typer.testing import CliRunner

from commcal.cli import app

NOW = "2026-01-01T09:05:00Z"
LATER = "2026-01-01T10:00:00Z"


@pytest.fixture
def posts() -> Iterator[Posts]:
    with Posts() as p:
        yield p


def build(make_project: MakeProject, posts: Posts) -> Path:
    config = (
        "timezone: UTC\nlocale: en\nstate: sqlite:///state.db\n"
        "publish: {max_late: 1h, retry_delay: 10m, lease: 5s, max_attempts: 5}\n" + channels(posts)
    )
    return make_project(
        config=config,
        calendars={
            "main.yaml": "items:\n  - id: launch\n    channels: [masto]\n"
            "    at: 2026-01-01 09:00\n    thread: [posts/one, posts/two, posts/three]\n"
        },
        templates={f"posts/{n}.j2": f"Part {n}\n" for n in ("one", "two", "three")},
    )


def cli(root: Path, posts: Posts, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["-C", str(root), *args], env=env_for(posts))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def writes(posts: Posts) -> int:
    """How many requests could have changed something on the network."""
    return len([r for r in posts.requests if r.method != "GET"])


def status(root: Path, posts: Posts) -> dict[str, dict[str, object]]:
    _, out, _ = cli(root, posts, "status", "--format", "json")
    return {row["id"]: row for row in json.loads(out)["deliveries"]}


def test_retracting_the_first_part_stops_the_parts_not_yet_sent_and_says_so(
    make_project: MakeProject, posts: Posts
) -> None:
    root = build(make_project, posts)
    busy = Fault(503, {"error": "busy"})
    # Part 1 goes out; the server is busy for parts 2 and 3: they wait to be retried.
    posts.fault = lambda r: busy if r.method == "POST" and "Part one" not in r.text else None
    cli(root, posts, "publish", "--now", NOW)
    rows = status(root, posts)
    first = next(i for i, row in rows.items() if row["state"] == "sent")
    assert list(posts.posts.values()) == ["Part one"]

    code, out, err = cli(root, posts, "retract", first, "--yes", "--now", NOW)
    assert code == 0, err
    assert posts.posts == {}
    said = out + err
    assert "2 later parts of this thread were not sent and will not be" in said, said

    posts.fault = lambda r: None
    before: list[Request] = posts.calls("POST", "/api/v1/statuses")
    cli(root, posts, "publish", "--now", LATER)
    assert posts.calls("POST", "/api/v1/statuses") == before
    assert posts.posts == {}, "a part was posted as a reply to the deleted post"
    rows = status(root, posts)
    blocked = [row for row in rows.values() if row["state"] != "sent"]
    assert len(blocked) == 2
    assert all("retracted" in str(row["last_error"]) for row in blocked), [
        (r["state"], r["last_error"]) for r in blocked
    ]


def test_amending_the_second_part_edits_that_post_only_and_a_dry_run_writes_nothing(
    make_project: MakeProject, posts: Posts
) -> None:
    root = build(make_project, posts)
    cli(root, posts, "publish", "--now", NOW)
    assert sorted(posts.posts.values()) == ["Part one", "Part three", "Part two"]
    second = next(i for i in status(root, posts) if i.endswith("#2"))
    (root / "templates" / "posts" / "two.j2").write_text("Part two, corrected\n")
    before = writes(posts)

    code, out, err = cli(root, posts, "amend", second, "--dry-run")
    assert code == 0, err
    assert "-Part two\n+Part two, corrected" in out, out
    assert writes(posts) == before

    code, out, err = cli(root, posts, "amend", second, "--yes", "--now", LATER)
    assert code == 0, err
    assert sorted(posts.posts.values()) == ["Part one", "Part three", "Part two, corrected"]

    # Retracting part 1 leaves parts 2 and 3 up, replying to nothing: the person is told.
    first, third = second[:-1] + "1", second[:-1] + "3"
    code, out, err = cli(root, posts, "retract", first, "--yes", "--now", LATER)
    assert code == 0, err
    assert f"2 later parts of this thread are still posted ({second}, {third})" in out, out
    code, out, err = cli(root, posts, "retract", second, "--yes", "--now", LATER)
    assert f"1 later part of this thread is still posted ({third})" in out, out


def test_amend_when_the_template_no_longer_renders_names_the_line_and_sends_nothing(
    make_project: MakeProject, posts: Posts
) -> None:
    root = build(make_project, posts)
    cli(root, posts, "publish", "--now", NOW)
    second = next(i for i in status(root, posts) if i.endswith("#2"))
    (root / "templates" / "posts" / "two.j2").write_text("Part {{ two\n")
    before = writes(posts)
    code, out, err = cli(root, posts, "amend", second, "--yes", "--now", LATER)
    assert code == 1, (out, err)
    assert "templates/posts/two.j2:1" in err, err
    assert "Traceback" not in err
    assert writes(posts) == before


def test_amend_of_a_part_the_thread_no_longer_has_says_how_many_it_has(
    make_project: MakeProject, posts: Posts
) -> None:
    root = build(make_project, posts)
    cli(root, posts, "publish", "--now", NOW)
    third = next(i for i in status(root, posts) if i.endswith("#3"))
    calendar = root / "calendars" / "main.yaml"
    calendar.write_text(calendar.read_text().replace(", posts/three", ""))
    before = writes(posts)
    code, out, err = cli(root, posts, "amend", third, "--yes", "--now", LATER)
    assert code == 1, (out, err)
    assert "now has 2 parts, not a part 3" in err, err
    assert writes(posts) == before


def test_the_id_of_a_whole_thread_names_its_parts(make_project: MakeProject, posts: Posts) -> None:
    root = build(make_project, posts)
    cli(root, posts, "publish", "--now", NOW)
    thread = next(iter(status(root, posts))).split("#")[0]
    code, _, err = cli(root, posts, "retract", thread, "--yes", "--now", LATER)
    assert code == 2 and len(posts.posts) == 3
    assert f"{thread!r} is a thread of 3 parts" in err, err
    assert f"{thread}#1" in err and "one part at a time" in err
