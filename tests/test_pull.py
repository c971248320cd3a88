"""`commcal pull` against loopback servers that answer like each network's read API."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from pull_support import ENV, TOKEN, FakeMastodon, mastodon_project, record_sent, reply
from typer.testing import CliRunner

from commcal.cli import app
from commcal.engagement.mastodon import html_to_text
from commcal.ledger import open_ledger

NOW = "2026-12-05T12:00:00Z"


@pytest.fixture
def masto() -> Any:
    with FakeMastodon() as server:
        yield server


def run(root: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(
        app, ["-C", str(root), "pull", "--now", NOW, *args], env=env or ENV, catch_exceptions=False
    )


def pulled(root: Path, *args: str) -> dict[str, Any]:
    result = run(root, *args, "--format", "json")
    assert result.exit_code in (0, 1), result.output
    data: dict[str, Any] = json.loads(result.stdout)
    data["exit_code"] = result.exit_code
    return data


def db(root: Path) -> str:
    return f"sqlite:///{root / 'state.db'}"


def test_counts_poll_and_replies_are_recorded_and_only_new_replies_on_the_next_pull(
    tmp_path: Path, masto: FakeMastodon
) -> None:
    masto.add("101", [reply("201", "101")], likes=4, boosts=2, replies=1)
    masto.statuses["101"]["poll"] = {
        "options": [{"title": "Yes", "votes_count": 7}, {"title": "No", "votes_count": 3}],
        "votes_count": 10,
        "voters_count": 10,
    }
    root = mastodon_project(tmp_path, masto.url)
    record_sent(db(root), [("d-one", "masto", "101")])

    first = pulled(root)
    assert first["exit_code"] == 0
    (post,) = first["posts"]
    assert (post["outcome"], post["likes"], post["reposts"], post["replies"]) == (
        "pulled", 4, 2, 1
    )  # fmt: skip
    assert post["extra"]["poll"] == {"Yes": 7, "No": 3}
    assert post["new_replies"] == 1
    # The token went as a bearer header, on both reads.
    assert [r[1] for r in masto.requests] == [
        "/api/v1/statuses/101",
        "/api/v1/statuses/101/context",
    ]
    assert all(r[2]["Authorization"] == f"Bearer {TOKEN}" for r in masto.requests)

    # A team answer and a second reply arrive; the first reply is not written again.
    masto.descendants["101"] += [
        reply("202", "201", acct="acme", account_id="1", content="<p>Thanks!</p>"),
        reply("203", "101", acct="bo@x.example"),
    ]
    masto.statuses["101"]["favourites_count"] = 9
    second = pulled(root)
    assert second["posts"][0]["new_replies"] == 2
    assert second["posts"][0]["likes"] == 9
    with open_ledger(db(root)) as ledger:
        snapshots = list(ledger.snapshots())
        replies = {r.remote_id: r for r in ledger.replies()}
    assert [s.likes for s in snapshots] == [4, 9]  # timestamped, never overwritten
    assert snapshots[0].taken_at < snapshots[1].taken_at
    assert set(replies) == {"201", "202", "203"}
    assert replies["202"].by_team and not replies["201"].by_team
    assert replies["202"].parent_id == "201"
    assert replies["201"].author == "@ana@other.example"
    assert replies["201"].text == "Great!"


def test_a_deleted_post_is_recorded_gone_once_and_not_asked_again(
    tmp_path: Path, masto: FakeMastodon
) -> None:
    masto.add("101")
    root = mastodon_project(tmp_path, masto.url)
    record_sent(db(root), [("d-gone", "masto", "999"), ("d-here", "masto", "101")])
    first = pulled(root)
    outcomes = {p["delivery_id"]: p["outcome"] for p in first["posts"]}
    assert outcomes == {"d-gone": "gone", "d-here": "pulled"}
    assert first["exit_code"] == 0
    asked = len(masto.requests)
    second = pulled(root)
    assert {p["delivery_id"]: p["outcome"] for p in second["posts"]}["d-gone"] == "was-gone"
    assert not any("/999" in r[1] for r in masto.requests[asked:])
    with open_ledger(db(root)) as ledger:
        gone = [s for s in ledger.snapshots() if s.delivery_id == "d-gone"]
    assert [s.status for s in gone] == ["gone"]


def test_a_429_is_waited_out_and_the_pull_goes_on(tmp_path: Path, masto: FakeMastodon) -> None:
    masto.add("101", likes=1)
    masto.too_many = 1
    masto.retry_after = "0"
    root = mastodon_project(tmp_path, masto.url)
    record_sent(db(root), [("d-one", "masto", "101")])
    data = pulled(root)
    assert data["posts"][0]["outcome"] == "pulled"
    assert data["posts"][0]["likes"] == 1


def test_a_used_up_rate_limit_stops_the_channel_and_leaves_the_rest_for_the_next_pull(
    tmp_path: Path, masto: FakeMastodon
) -> None:
    for n in range(5):
        masto.add(str(100 + n))
    masto.limit = 4  # two posts' worth (status + context each)
    root = mastodon_project(tmp_path, masto.url)
    record_sent(db(root), [(f"d-{n}", "masto", str(100 + n)) for n in range(5)])
    result = run(root, "--max-wait", "1")
    assert result.exit_code == 0, result.output
    assert "stopped masto: rate limited" in result.stdout
    assert "3 left for the next pull" in result.stdout
    data = pulled(root, "--max-wait", "1")
    assert [p["outcome"] for p in data["posts"]] == ["left"] * 5
    assert data["stopped"]["masto"].startswith("rate limited (resets in")
    # The window was used up: no request went out past the first 429 of each run.
    with open_ledger(db(root)) as ledger:
        assert len(list(ledger.snapshots())) == 2


def test_dry_run_lists_what_would_be_fetched_without_a_request(
    tmp_path: Path, masto: FakeMastodon
) -> None:
    masto.add("101")
    root = mastodon_project(tmp_path, masto.url)
    record_sent(db(root), [("d-one", "masto", "101")])
    data = pulled(root, "--dry-run")
    assert [(p["outcome"], p["note"]) for p in data["posts"]] == [("would-pull", "mastodon 101")]
    assert masto.requests == []
    with open_ledger(db(root)) as ledger:
        assert list(ledger.snapshots()) == []


def test_posts_outside_the_window_are_not_read(tmp_path: Path, masto: FakeMastodon) -> None:
    masto.add("101")
    root = mastodon_project(tmp_path, masto.url)
    record_sent(db(root), [("d-one", "masto", "101")])
    data = pulled(root, "--since", "2d")  # sent 2026-12-01, now 2026-12-05
    assert data["posts"] == []
    assert masto.requests == []


def test_an_error_is_recorded_redacted_and_exits_1(tmp_path: Path, masto: FakeMastodon) -> None:
    masto.add("101")
    root = mastodon_project(tmp_path, masto.url)
    record_sent(db(root), [("d-one", "masto", "101")])

    def echo(path: str) -> tuple[int, Any, dict[str, str]]:
        return 403, {"error": f"token {TOKEN} may not read this"}, {}

    masto.answer = echo  # type: ignore[method-assign]
    result = run(root, "--format", "json")
    assert result.exit_code == 1
    assert TOKEN not in result.stdout
    (post,) = json.loads(result.stdout)["posts"]
    assert post["outcome"] == "error"
    assert "may not read this" in post["note"]
    with open_ledger(db(root)) as ledger:
        (snapshot,) = ledger.snapshots()
    assert snapshot.status == "error"
    assert TOKEN not in json.dumps(dict(snapshot.extra))


def test_garbage_answers_are_read_as_zeros_not_a_crash(tmp_path: Path, masto: FakeMastodon) -> None:
    root = mastodon_project(tmp_path, masto.url)
    record_sent(db(root), [("d-one", "masto", "101")])

    def garbage(path: str) -> tuple[int, Any, dict[str, str]]:
        if path.endswith("/context"):
            return 200, {"descendants": [None, 7, {"id": True}, {"no": "id"}]}, {}
        return 200, ["not", "a", "status"], {}

    masto.answer = garbage  # type: ignore[method-assign]
    data = pulled(root)
    assert data["posts"][0]["outcome"] == "pulled"
    assert data["posts"][0]["likes"] == 0
    assert data["posts"][0]["new_replies"] == 0


def test_unknown_channel_is_refused_with_the_closest_name(
    tmp_path: Path, masto: FakeMastodon
) -> None:
    root = mastodon_project(tmp_path, masto.url)
    record_sent(db(root), [("d-one", "masto", "101")])
    result = CliRunner().invoke(app, ["-C", str(root), "pull", "--channel", "mastdon"], env=ENV)
    assert result.exit_code == 2
    assert "'masto'" in result.output


def test_bad_since_is_a_usage_error(tmp_path: Path, masto: FakeMastodon) -> None:
    root = mastodon_project(tmp_path, masto.url)
    result = CliRunner().invoke(app, ["-C", str(root), "pull", "--since", "month"], env=ENV)
    assert result.exit_code == 2
    assert "--since 'month'" in result.output


def test_html_becomes_text_with_links_kept() -> None:
    content = (
        '<p>Hi <span class="h-card"><a href="https://m.example/@ana" class="u-url mention">'
        '@<span>ana</span></a></span>, see <a href="https://example.org/a/long/path" '
        'rel="nofollow"><span class="invisible">https://</span><span class="ellipsis">'
        'example.org/a/long</span><span class="invisible">/path</span></a> and '
        '<a href="https://example.org/x">our page</a> &amp; '
        '<a href="https://m.example/tags/tip" class="mention hashtag">#<span>tip</span></a>'
        "</p><p>line<br>two</p>"
    )
    assert html_to_text(content) == (
        "Hi @ana, see https://example.org/a/long/path and our page (https://example.org/x) & "
        "#tip\n\nline\ntwo"
    )


def test_429_forever_stops_after_a_bounded_number_of_tries(
    tmp_path: Path, masto: FakeMastodon
) -> None:
    masto.add("101")
    masto.add("102")
    masto.too_many = 10_000
    masto.retry_after = "0"
    root = mastodon_project(tmp_path, masto.url)
    record_sent(db(root), [("d-1", "masto", "101"), ("d-2", "masto", "102")])
    data = pulled(root)
    assert [p["outcome"] for p in data["posts"]] == ["left", "left"]
    assert len(masto.requests) == 4  # one try and three more, then the channel stops
    assert data["exit_code"] == 0


def test_a_connection_dropped_after_the_request_is_an_error_and_the_next_post_is_read(
    tmp_path: Path, masto: FakeMastodon
) -> None:
    # A server that accepts, reads the request, and closes without answering.
    dropper = socket.socket()
    dropper.bind(("127.0.0.1", 0))
    dropper.listen(8)

    def drop() -> None:
        while True:
            try:
                conn, _ = dropper.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.close()

    threading.Thread(target=drop, daemon=True).start()
    masto.add("102", likes=3)
    extra = (
        f"  broken:\n    type: mastodon\n    instance: http://127.0.0.1:{dropper.getsockname()[1]}\n"
        "    token: ${MASTO_TOKEN}\n"
    )
    root = mastodon_project(tmp_path, masto.url, extra_channels=extra)
    record_sent(db(root), [("d-1", "broken", "101"), ("d-2", "masto", "102")])
    data = pulled(root)
    dropper.close()
    assert data["exit_code"] == 1
    first, second = data["posts"]
    assert first["outcome"] == "error"
    assert "broke off" in first["note"]
    assert (second["outcome"], second["likes"]) == ("pulled", 3)


def test_an_unreachable_server_stops_its_channel_at_once_and_exits_1(
    tmp_path: Path, masto: FakeMastodon
) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    masto.add("102", likes=3)
    extra = (
        f"  down:\n    type: mastodon\n    instance: http://127.0.0.1:{port}\n"
        "    token: ${MASTO_TOKEN}\n"
    )
    root = mastodon_project(tmp_path, masto.url, extra_channels=extra)
    posts = [(f"d-{n}", "down", str(200 + n)) for n in range(3)] + [("d-up", "masto", "102")]
    record_sent(db(root), posts)
    data = pulled(root)
    assert data["exit_code"] == 1
    outcomes = [(p["channel"], p["outcome"]) for p in data["posts"]]
    assert outcomes == [("down", "left")] * 3 + [("masto", "pulled")]
    assert "could not connect" in data["stopped"]["down"]
    with open_ledger(db(root)) as ledger:
        assert [s.delivery_id for s in ledger.snapshots()] == ["d-up"]


def test_a_server_failing_again_and_again_is_left_after_three_posts(
    tmp_path: Path, masto: FakeMastodon
) -> None:
    root = mastodon_project(tmp_path, masto.url)
    record_sent(db(root), [(f"d-{n}", "masto", str(100 + n)) for n in range(5)])

    def down(path: str) -> tuple[int, Any, dict[str, str]]:
        return 503, {"error": "Service Unavailable"}, {}

    masto.answer = down  # type: ignore[method-assign]
    data = pulled(root)
    assert [p["outcome"] for p in data["posts"]] == ["error"] * 3 + ["left"] * 2
    assert data["stopped"]["masto"].startswith("3 reads in a row failed, the last: HTTP 503")
    assert len(masto.requests) == 3
    assert data["exit_code"] == 1


def test_a_channel_whose_token_is_not_set_is_left_and_the_others_are_read(
    tmp_path: Path, masto: FakeMastodon
) -> None:
    masto.add("102", likes=3)
    extra = (
        f"  other:\n    type: mastodon\n    instance: {masto.url}\n    token: ${{OTHER_TOKEN}}\n"
    )
    root = mastodon_project(tmp_path, masto.url, extra_channels=extra)
    record_sent(db(root), [("d-1", "other", "101"), ("d-2", "masto", "102")])
    data = pulled(root)
    assert data["exit_code"] == 1
    assert [p["outcome"] for p in data["posts"]] == ["left", "pulled"]
    assert "OTHER_TOKEN is not set" in data["stopped"]["other"]


def test_a_plugin_reader_that_slips_on_an_answer_costs_one_post(
    tmp_path: Path, masto: FakeMastodon
) -> None:
    from commcal.engagement import pull as pulling

    calls: list[str] = []

    def slipping(channel: Any, post: Any, cursor: Any, gate: Any) -> Any:
        calls.append(post.remote_id)
        if post.remote_id == "101":
            return {}["likes"]  # a KeyError, as a reader's slip on garbage would be
        return pulling.Pulled(likes=7)

    root = mastodon_project(tmp_path, masto.url)
    record_sent(db(root), [("d-1", "masto", "101"), ("d-2", "masto", "102")])
    pulling.register_reader("mastodon", slipping)
    try:
        data = pulled(root)
    finally:
        pulling._registered.pop("mastodon")
    assert calls == ["101", "102"]
    first, second = data["posts"]
    assert (first["outcome"], first["note"]) == ("error", "the answer could not be read (KeyError)")
    assert (second["outcome"], second["likes"]) == ("pulled", 7)
