"""Threads (calendar `thread:`): an item published as several posts, each replying to the one
before, every part exactly once and in order, against loopback servers that answer like the
networks' APIs, the real Synapse, and a publisher killed mid-thread."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeProject
from fake_networks import Answer, Networks, Request
from proxies import Proxy
from test_ledger import ledger_url, postgres_db  # noqa: F401 (fixtures: each backend)
from typer.testing import CliRunner

from commcal.cli import app
from commcal.ledger import open_ledger

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
PARTS = 5
THREAD_TEMPLATES = {f"posts/launch-{n}.j2": f"Launch part {n} of {{{{ item.id }}}}\n" for n in
                    range(1, PARTS + 1)}  # fmt: skip
THREAD_CALENDAR = (
    "items:\n"
    "  - id: launch\n"
    "    channels: [{channels}]\n"
    "    at: 2026-12-01 09:00\n"
    f"    thread: [{', '.join(f'posts/launch-{n}' for n in range(1, PARTS + 1))}]\n"
)
ENV = {"MASTO_TOKEN": "mastotGjgQLyzFWeXy", "X_TOKEN": "xtokGquTQmUlABBtCMyj"}


def invoke(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["-C", str(root), *args], env={**ENV, **(env or {})})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout


def publish(root: Path, now: datetime) -> tuple[int, dict[str, Any]]:
    code, out = invoke(root, "publish", "--format", "json", "--now", now.isoformat())
    return code, json.loads(out)


class Social:
    """Answers like Mastodon (POST /api/v1/statuses -> {id, url}) and X (POST /2/tweets ->
    {data: {id}}), numbering the posts it keeps; `fail` decides which requests get a 503."""

    def __init__(self, networks: Networks) -> None:
        self.networks = networks
        self.kept: list[tuple[str, str, dict[str, Any]]] = []  # (network, id, body)
        self.lock = threading.Lock()
        self.fail: Callable[[str, dict[str, Any]], bool] = lambda network, body: False
        networks.answer = self.answer

    def answer(self, request: Request) -> Answer:
        network = "x" if "/2/tweets" in request.path else "mastodon"
        body = json.loads(request.body or b"{}")
        body.setdefault("text", body.get("status"))  # Mastodon's text is `status`
        if self.fail(network, body):
            return Answer(503, b'{"error": "busy"}')
        with self.lock:
            post_id = str(1000 + len(self.kept))
            self.kept.append((network, post_id, body))
        if network == "x":
            return Answer(body=json.dumps({"data": {"id": post_id, "text": body["text"]}}).encode())
        url = f"https://social.example/@team/{post_id}"
        return Answer(body=json.dumps({"id": post_id, "url": url}).encode())

    def posts(self, network: str) -> list[tuple[str, dict[str, Any]]]:
        return [(i, b) for n, i, b in self.kept if n == network]


def social_project(
    make_project: MakeProject, url: str, publish_settings: str, state: str = "sqlite:///state.db"
) -> Path:
    config = (
        f"timezone: UTC\nlocale: en\nstate: '{state}'\n"
        f"publish: {{{publish_settings}}}\n"
        "channels:\n"
        f"  mastodon:\n    type: mastodon\n    instance: {url}\n    token: ${{MASTO_TOKEN}}\n"
        f"  x:\n    type: x\n    api_url: {url}\n    token: ${{X_TOKEN}}\n"
    )
    return make_project(
        config=config,
        calendars={"main.yaml": THREAD_CALENDAR.format(channels="mastodon, x")},
        templates=THREAD_TEMPLATES,
    )


def reply_of(network: str, body: dict[str, Any]) -> str | None:
    if network == "x":
        reply = body.get("reply")
        return reply["in_reply_to_tweet_id"] if reply else None
    return body.get("in_reply_to_id")


def assert_one_chain(social: Social, network: str) -> None:
    """Five posts, once each, in order, each replying to the one before (the first to none)."""
    posts = social.posts(network)
    assert [b["text"] for _, b in posts] == [
        f"Launch part {n} of launch" for n in range(1, PARTS + 1)
    ]
    assert reply_of(network, posts[0][1]) is None
    for (before, _), (_, body) in itertools.pairwise(posts):
        assert reply_of(network, body) == before


def test_a_transient_failure_at_part_3_resumes_at_part_3_and_every_part_replies_once(
    make_project: MakeProject,
    ledger_url: str,  # noqa: F811 (test_ledger's fixture: an empty SQLite, then PostgreSQL, ledger)
) -> None:
    """On each ledger backend (SQLite and the real PostgreSQL)."""
    with Networks() as networks:
        social = Social(networks)
        failed: set[str] = set()

        def third_once(network: str, body: dict[str, Any]) -> bool:
            if body.get("text", "").startswith("Launch part 3") and network not in failed:
                failed.add(network)
                return True
            return False

        social.fail = third_once
        root = social_project(
            make_project, networks.url, "retry_delay: 10m, max_late: 1d", ledger_url
        )
        code, report = publish(root, NOW)
        assert code == 0, report
        by_state: dict[str, list[str]] = {}
        for d in report["deliveries"]:
            by_state.setdefault(d["state"], []).append(d["id"].rsplit("#", 1)[1])
        assert sorted(by_state["sent"]) == ["1", "1", "2", "2"]
        # Part 3 waits for its retry; 4 and 5 wait for part 3, and say so.
        assert sorted(by_state["pending"]) == ["3", "3", "4", "4", "5", "5"]
        waiting = [d for d in report["deliveries"] if d["id"].endswith("#4")]
        assert all("waiting for part 3/5" in d["detail"] for d in waiting), waiting
        assert len(social.kept) == 4

        # The status of one part shows the chain: every part's state and URL.
        part_id = waiting[0]["id"]
        code, out = invoke(root, "status", part_id, "--format", "json")
        assert code == 0, out
        chain = json.loads(out)["thread"]
        assert [p["part"] for p in chain] == [1, 2, 3, 4, 5]
        assert [p["state"] for p in chain] == ["sent", "sent", "pending", "pending", "pending"]
        assert chain[0]["url"] and chain[1]["url"]
        code, out = invoke(root, "status", part_id, env={"COLUMNS": "200"})
        assert "thread of 5 parts" in out and "4/5 (this)" in out, out
        assert chain[0]["url"] in out
        code, out = invoke(root, "status", "--channel", "x", env={"COLUMNS": "200"})
        assert all(f"main/launch part {n}/5" in out for n in range(1, 6)), out

        # A second run before the retry is due sends nothing and writes nothing new.
        code, report = publish(root, NOW + timedelta(minutes=1))
        assert len(social.kept) == 4

        code, report = publish(root, NOW + timedelta(minutes=30))
        assert code == 0, report
        assert (
            sorted(d["state"] for d in report["deliveries"] if d["state"] != "already")
            == ["sent"] * 6
        )
        code, report = publish(root, NOW + timedelta(minutes=31))
        assert {d["state"] for d in report["deliveries"]} == {"already"}
    for network in ("mastodon", "x"):
        assert_one_chain(social, network)
    assert len(social.kept) == 2 * PARTS


def test_a_permanent_failure_at_part_3_blocks_4_and_5_with_the_reason_in_status(
    make_project: MakeProject,
) -> None:
    with Networks() as networks:
        social = Social(networks)
        networks.answer = lambda request: (
            Answer(422, b'{"error": "Validation failed: Text too silly"}')
            if "part 3" in request.text and "statuses" in request.path
            else social.answer(request)
        )
        root = social_project(make_project, networks.url, "retry_delay: 10m, max_late: 1d")
        code, report = publish(root, NOW)
        assert code == 1  # part 3 failed
        mastodon = {
            d["id"].rsplit("#", 1)[1]: d for d in report["deliveries"] if d["channel"] == "mastodon"
        }
        assert mastodon["3"]["state"] == "failed"
        assert mastodon["4"]["state"] == "blocked" and mastodon["5"]["state"] == "blocked"
        assert "part 3/5" in mastodon["4"]["detail"] and "commcal retry" in mastodon["4"]["detail"]
        # X is another thread: all five went out.
        assert len(social.posts("x")) == PARTS
        code, out = invoke(root, "status", "--format", "json", "--channel", "mastodon")
        rows = {r["id"].rsplit("#", 1)[1]: r for r in json.loads(out)["deliveries"]}
        assert rows["4"]["state"] == "pending"
        assert "blocked: part 3/5" in rows["4"]["last_error"]
        assert "failed" in rows["4"]["last_error"]
        # A dry run says the same.
        code, out = invoke(
            root, "publish", "--dry-run", "--format", "json", "--now", NOW.isoformat()
        )
        dry = {
            d["id"].rsplit("#", 1)[1]: d
            for d in json.loads(out)["deliveries"]
            if d["channel"] == "mastodon"
        }
        assert dry["4"]["state"] == "blocked" and "part 3/5" in dry["4"]["detail"], dry
        # Later runs leave them be, and never post parts 4 and 5 without part 3.
        for minutes in (1, 20, 60):
            publish(root, NOW + timedelta(minutes=minutes))
        assert len(social.posts("mastodon")) == 2
        # The template fixed (here: the server accepts it now), `retry` sends part 3, and 4 and
        # 5 follow it, each replying to the one before.
        networks.answer = social.answer
        later = NOW + timedelta(minutes=61)
        code, out = invoke(root, "retry", mastodon["3"]["id"], "--now", later.isoformat())
        assert code == 0, out
        code, report = publish(root, later)
        assert code == 0, report
        assert_one_chain(social, "mastodon")


@pytest.mark.parametrize("arrived", [False, True])
def test_a_part_whose_predecessor_is_unknown_waits_and_says_why(
    make_project: MakeProject, arrived: bool
) -> None:
    """Part 2 interrupted: it did not arrive (resolved --not-sent: it goes out again) or it did
    (resolved --sent URL: the rest replies to the post that URL names)."""
    with Networks() as networks:
        social = Social(networks)
        root = social_project(make_project, networks.url, "retry_delay: 10m, max_late: 1d")
        publish(root, NOW)
        assert len(social.kept) == 2 * PARTS
        # A second thread, on X, whose part 2 is interrupted: the connection drops after the
        # request went out, and X takes no idempotency key, so it is `unknown`.
        calendar = root / "calendars" / "main.yaml"
        calendar.write_text(
            calendar.read_text()
            + THREAD_CALENDAR.format(channels="x")
            .replace("items:\n", "")
            .replace("id: launch", "id: second")
            .replace("09:00", "10:00"),
            encoding="utf-8",
        )
        original = social.answer

        def die_on_part_2(request: Request) -> Answer:
            if "second" in request.text and "part 2" in request.text:
                if arrived:
                    original(request)
                raise ConnectionError
            return original(request)

        networks.answer = die_on_part_2
        later = NOW + timedelta(hours=1)
        code, report = publish(root, later)
        parts = {
            d["id"].rsplit("#", 1)[1]: d for d in report["deliveries"] if d["item"] == "second"
        }
        assert parts["1"]["state"] == "sent"
        assert parts["2"]["state"] == "unknown", parts
        assert parts["3"]["state"] == "blocked"
        assert "part 2/5" in parts["3"]["detail"] and "unknown" in parts["3"]["detail"]
        assert "commcal resolve" in parts["3"]["detail"]
        with open_ledger("sqlite:///" + str(root / "state.db"), project_dir=root) as ledger:
            assert ledger.get(parts["3"]["id"]).state.value == "pending"  # type: ignore[union-attr]
        networks.answer = original
        if arrived:
            [(posted, _)] = [(i, b) for i, b in social.posts("x") if "2 of second" in b["text"]]
            how = ["--sent", f"https://x.com/team/status/{posted}"]
        else:  # part 2 goes out again, then 3 to 5
            how = ["--not-sent"]
        code, out = invoke(root, "resolve", parts["2"]["id"], *how, "--now", later.isoformat())
        assert code == 0, out
        code, report = publish(root, later + timedelta(minutes=1))
        second = [(i, b) for i, b in social.posts("x") if "of second" in b["text"]]
        assert [b["text"] for _, b in second] == [
            f"Launch part {n} of second" for n in range(1, PARTS + 1)
        ]
        for (before, _), (_, body) in itertools.pairwise(second):
            assert body["reply"]["in_reply_to_tweet_id"] == before


# ---- bad input ----------------------------------------------------------------------------------

BAD_CONFIG = """\
timezone: UTC
locale: en
channels:
  x:
    type: x
    token: ${X_TOKEN}
  mail:
    type: smtp
    host: localhost
    from: "Team <team@example.org>"
    to: "List <list@example.org>"
"""


@pytest.mark.parametrize(
    ("thread", "expected"),
    [
        ("thread: []", "main.yaml:6:13: error: item 'bad' thread is an empty list"),
        (
            "thread: [posts/a, posts/launch]",
            "main.yaml:6:23: error: template 'posts/launch' not found under templates/ (did you "
            "mean 'posts/a'?)",
        ),
        (
            "thread: {split: paragraphs}",
            "main.yaml:6:21: error: unknown item 'bad' thread split 'paragraphs' (expected one "
            "of: sentences)",
        ),
        (
            "thread: {splt: sentences}",
            "main.yaml:6:14: error: unknown key 'splt' in item 'bad' thread (did you mean "
            "'split'?)",
        ),
        (
            "thread: {split: sentences}\n    template: posts/long",
            "main.yaml:6:13: error: item 'bad' on x: thread cannot be split: "
            "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'… is 301 long and cannot fit in a post of "
            "280 with its number (shorten that word",
        ),
        (
            "thread: [posts/a]\n    template: posts/a",
            "main.yaml:7:15: error: item 'bad' has both template: and a thread: of templates",
        ),
        (
            "thread: [posts/a, posts/a]\n    kind: newsletter",
            "main.yaml:6:5: error: 'thread' belongs to kind post, not newsletter",
        ),
    ],
)
def test_bad_thread_input_is_a_problem_with_file_line_and_a_hint(
    make_project: MakeProject, thread: str, expected: str
) -> None:
    root = make_project(
        config=BAD_CONFIG,
        calendars={
            "main.yaml": "items:\n  - id: bad\n    channels: [x]\n    at: 2026-12-05 09:00\n"
            f"    title: Bad\n    {thread}\n"
        },
        templates={
            "posts/a.j2": "Hello.\n",
            "posts/long.j2": "Word " + "x" * 300 + ". More.\n",
        },
    )
    result = CliRunner().invoke(
        app, ["-C", str(root), "validate", "--now", "2026-12-01T00:00:00Z"], env=ENV
    )
    assert result.exit_code == 1
    assert expected in result.output, result.output
    assert "Traceback" not in result.output


def test_a_thread_on_a_mail_channel_is_refused_once(make_project: MakeProject) -> None:
    root = make_project(
        config=BAD_CONFIG,
        calendars={
            "main.yaml": "items:\n  - id: letter\n    channels: [mail]\n"
            "    at: 2026-12-05 09:00\n    thread: [posts/a, posts/a]\n"
        },
        templates={"posts/a.j2": "subject: Hi\n---\nHello.\n"},
    )
    result = CliRunner().invoke(
        app, ["-C", str(root), "validate", "--now", "2026-12-01T00:00:00Z"], env=ENV
    )
    assert result.exit_code == 1
    assert result.output.count("smtp cannot post a thread") == 1, result.output
    assert "main.yaml:2:9" in result.output


def test_plan_lists_each_part_with_its_own_id(make_project: MakeProject) -> None:
    root = make_project(
        config=BAD_CONFIG,
        calendars={"main.yaml": THREAD_CALENDAR.format(channels="x")},
        templates=THREAD_TEMPLATES,
    )
    result = CliRunner().invoke(
        app,
        ["-C", str(root), "plan", "--format", "json", "--now", "2026-12-01T08:00:00Z"],
        env=ENV,
    )
    assert result.exit_code == 0, result.output
    planned = json.loads(result.stdout)["deliveries"]
    ids = [d["id"] for d in planned]
    assert len(ids) == PARTS and len({i.rsplit("#", 1)[0] for i in ids}) == 1
    assert [i.rsplit("#", 1)[1] for i in ids] == [str(n) for n in range(1, PARTS + 1)]


# ---- Matrix: the real Synapse -------------------------------------------------------------------


class FailFirst(Proxy):
    """A proxy to a real server that answers the first request whose body holds `marker` with a
    503, without passing it on, and forwards everything else."""

    def __init__(self, upstream: str, marker: bytes) -> None:
        self.failed = 0

        def fault(method: str, path: str, body: bytes) -> tuple[int, bytes] | None:
            if marker in body and not self.failed:
                self.failed += 1
                return 503, b'{"errcode": "M_UNKNOWN", "error": "busy"}'
            return None

        super().__init__(upstream, fault)


def one_channel_thread(make_project: MakeProject, channel_type: str, settings: list[str]) -> Path:
    """The 5-part thread on one channel `net` of `channel_type` (`settings`: its `key: value`
    lines), retries ten minutes apart."""
    return make_project(
        config=(
            "timezone: UTC\nlocale: en\nstate: sqlite:///state.db\n"
            "publish: {retry_delay: 10m, max_late: 1d}\nchannels:\n"
            f"  net:\n    type: {channel_type}\n" + "".join(f"    {line}\n" for line in settings)
        ),
        calendars={"main.yaml": THREAD_CALENDAR.format(channels="net")},
        templates=THREAD_TEMPLATES,
    )


def publish_twice(root: Path, env: dict[str, str]) -> None:
    """A run in which part 3 fails (parts 1 and 2 sent, 3 to 5 pending), and one after its
    retry is due that sends the rest; no secret of `env` in the output."""
    code, out = invoke(root, "publish", "--format", "json", "--now", NOW.isoformat(), env=env)
    first = json.loads(out)
    assert [d["state"] for d in first["deliveries"]] == ["sent", "sent"] + ["pending"] * 3, out
    later = (NOW + timedelta(minutes=15)).isoformat()
    code, second = invoke(root, "publish", "--format", "json", "--now", later, env=env)
    assert code == 0, second
    assert not any(secret in out + second for secret in env.values())


def test_real_synapse_a_thread_with_a_transient_failure_at_part_3_is_one_thread(
    make_project: MakeProject,
) -> None:
    from real_servers import real_synapse
    from test_channel_matrix import room_messages

    homeserver, token, room = real_synapse()
    with FailFirst(homeserver, b"Launch part 3") as proxy:
        settings = [
            f"homeserver: {proxy.url}",
            "access_token: ${MATRIX_TOKEN}",
            f"room_id: '{room}'",
        ]
        root = one_channel_thread(make_project, "matrix", settings)
        publish_twice(root, {"MATRIX_TOKEN": token})
        assert proxy.failed == 1
    events = room_messages(homeserver, token, room)
    bodies = [e["content"]["body"] for e in events]
    assert bodies == [f"Launch part {n} of launch" for n in range(1, PARTS + 1)]
    root_id = events[0]["event_id"]
    assert "m.relates_to" not in events[0]["content"]
    for before, event in itertools.pairwise(events):
        relation = event["content"]["m.relates_to"]
        assert relation["rel_type"] == "m.thread"
        assert relation["event_id"] == root_id
        assert relation["is_falling_back"] is True
        assert relation["m.in_reply_to"]["event_id"] == before["event_id"]
    # The homeserver itself counts them as one thread of four replies to the first part.
    summary = events[0].get("unsigned", {}).get("m.relations", {}).get("m.thread")
    assert summary is not None, events[0]
    assert summary["count"] == PARTS - 1


# ---- Bluesky: the real PDS ----------------------------------------------------------------------


def test_real_pds_a_thread_with_a_transient_failure_at_part_3_replies_with_strong_refs(
    make_project: MakeProject,
) -> None:
    from real_servers import real_pds

    account = real_pds()
    with FailFirst(account.service, b"Launch part 3") as proxy:
        settings = [
            f"service: {proxy.url}",
            f"handle: {account.handle}",
            "app_password: ${SKY_PASSWORD}",
        ]
        root = one_channel_thread(make_project, "bluesky", settings)
        publish_twice(root, {"SKY_PASSWORD": account.password})
        assert proxy.failed == 1
    # Record keys are derived from the delivery ids, so the repository lists them in no
    # particular order: put them in the order they were written.
    records = sorted(account.posts(), key=lambda r: r["value"]["createdAt"])
    assert [r["value"]["text"] for r in records] == [
        f"Launch part {n} of launch" for n in range(1, PARTS + 1)
    ]
    assert "reply" not in records[0]["value"]
    first_ref = {"uri": records[0]["uri"], "cid": records[0]["cid"]}
    for before, record in itertools.pairwise(records):
        reply = record["value"]["reply"]
        assert reply["root"] == first_ref
        assert reply["parent"] == {"uri": before["uri"], "cid": before["cid"]}


# ---- SIGKILL mid-thread -------------------------------------------------------------------------


class Mastodon:
    """Answers like Mastodon's POST /api/v1/statuses, slowly (so kills land mid-send), and keeps
    each Idempotency-Key's status, as Mastodon does for an hour: a repeated key answers the
    first status and posts nothing new."""

    def __init__(self, networks: Networks, delay: float) -> None:
        self.statuses: dict[str, tuple[str, dict[str, Any]]] = {}  # key -> (id, body)
        self.order: list[str] = []
        self.requests = 0
        self.lock = threading.Lock()
        self.delay = delay
        self.arrived = threading.Event()  # set when a post request comes in
        networks.answer = self.answer

    def answer(self, request: Request) -> Answer:
        import time

        key = request.headers.get("Idempotency-Key", "")
        body = json.loads(request.body or b"{}")
        self.arrived.set()
        time.sleep(self.delay)
        with self.lock:
            self.requests += 1
            if key not in self.statuses:
                self.statuses[key] = (str(2000 + len(self.statuses)), body)
                self.order.append(key)
            status_id, _ = self.statuses[key]
        url = f"https://social.example/@team/{status_id}"
        return Answer(body=json.dumps({"id": status_id, "url": url}).encode())


def mastodon_project(make_project: MakeProject, url: str) -> Path:
    """The thread on one Mastodon channel, with a one-minute lease (runs two minutes apart
    take over a killed run's claims)."""
    return make_project(
        config=(
            "timezone: UTC\nlocale: en\nstate: sqlite:///state.db\n"
            "publish: {retry_delay: 1m, max_late: 1d, lease: 1m}\nchannels:\n"
            f"  mastodon:\n    type: mastodon\n    instance: {url}\n    token: ${{MASTO_TOKEN}}\n"
        ),
        calendars={"main.yaml": THREAD_CALENDAR.format(channels="mastodon")},
        templates=THREAD_TEMPLATES,
    )


def test_sigkill_during_a_thread_publish_posts_every_part_once_in_order(
    make_project: MakeProject,
) -> None:
    import os
    import random
    import signal
    import subprocess
    import time

    from test_channel_matrix import commcal_command

    rng = random.Random(1813)
    with Networks() as networks:
        server = Mastodon(networks, delay=0.3)
        root = mastodon_project(make_project, networks.url)
        now, kills, finished = NOW, 0, False
        for run in range(20):
            server.arrived.clear()
            args = ["-C", str(root), "publish", "--format", "json", "--now", now.isoformat()]
            proc = subprocess.Popen(
                [*commcal_command(), *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, **ENV},
            )
            if run < 8 and server.arrived.wait(timeout=30):
                # Killed once a post has reached the server: mid-send (its answer not yet
                # read) or just after it, before the next part.
                time.sleep(rng.uniform(0.0, 0.45))
                proc.send_signal(signal.SIGKILL)
                proc.communicate(timeout=10)
                kills += 1
            else:
                out, _ = proc.communicate(timeout=60)
                report = json.loads(out)
                states = {d["state"] for d in report["deliveries"]}
                assert "unknown" not in states and "failed" not in states, report
                if states <= {"sent", "already"} and len(report["deliveries"]) == PARTS:
                    finished = True
                    break
            now += timedelta(minutes=2)  # past the lease of a killed run's claims
        assert finished, f"not finished after {kills} kills"
    assert kills >= 4
    assert server.requests > PARTS  # some parts were sent again (same key): never posted twice
    posts = [server.statuses[key] for key in server.order]
    assert [body["status"] for _, body in posts] == [
        f"Launch part {n} of launch" for n in range(1, PARTS + 1)
    ]
    assert "in_reply_to_id" not in posts[0][1]
    for (before, _), (_, body) in itertools.pairwise(posts):
        assert body["in_reply_to_id"] == before


# ---- channels without replies of their own ------------------------------------------------------


def test_telegram_replies_and_slack_and_discord_post_the_parts_in_order(
    make_project: MakeProject,
) -> None:
    from fake_networks import channels_config, env_for

    kept: list[tuple[str, dict[str, Any]]] = []
    lock = threading.Lock()

    def answer(request: Request) -> Answer:
        body = json.loads(request.body or b"{}")
        with lock:
            number = 500 + len(kept)
            kept.append((request.path, body))
        if "/sendMessage" in request.path:
            result = {"ok": True, "result": {"message_id": number}}
            return Answer(body=json.dumps(result).encode())
        if "/services/" in request.path:  # Slack's incoming webhook: `ok`, no id
            return Answer(body=b"ok", content_type="text/plain")
        return Answer(body=json.dumps({"id": str(number), "channel_id": "1"}).encode())

    with Networks() as networks:
        networks.answer = answer
        root = make_project(
            config="timezone: UTC\nlocale: en\nstate: sqlite:///state.db\n"
            "publish: {max_late: 1d}\nchannels:\n" + channels_config(networks),
            calendars={"main.yaml": THREAD_CALENDAR.format(channels="telegram, slack, discord")},
            templates=THREAD_TEMPLATES,
        )
        result = CliRunner().invoke(
            app,
            ["-C", str(root), "publish", "--format", "json", "--now", NOW.isoformat()],
            env=env_for(networks),
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["counts"] == {"sent": 3 * PARTS}
    texts = {
        kind: [body.get("text") or body.get("content") for path, body in kept if marker in path]
        for kind, marker in (
            ("telegram", "/sendMessage"),
            ("slack", "/services/"),
            ("discord", "/api/webhooks/"),
        )
    }
    expected = [f"Launch part {n} of launch" for n in range(1, PARTS + 1)]
    assert texts == {"telegram": expected, "slack": expected, "discord": expected}
    telegram = [body for path, body in kept if "/sendMessage" in path]
    ids = [500 + n for n, (path, _) in enumerate(kept) if "/sendMessage" in path]
    assert "reply_parameters" not in telegram[0]
    for before, body in zip(ids, telegram[1:], strict=False):
        assert body["reply_parameters"] == {"message_id": before}
    # Slack and Discord webhooks cannot reply: nothing but the text goes with the parts.
    assert not any("thread_ts" in b or "message_reference" in b for _, b in kept)


def test_a_part_sent_without_an_id_blocks_the_replies_after_it(make_project: MakeProject) -> None:
    with Networks() as networks:
        social = Social(networks)

        def garbage_for_part_2(request: Request) -> Answer:
            if "part 2" in request.text and "statuses" in request.path:
                social.answer(request)  # the post is kept: the answer is what goes wrong
                return Answer(body=b"<html>OK</html>", content_type="text/html")
            return social.answer(request)

        networks.answer = garbage_for_part_2
        root = social_project(make_project, networks.url, "retry_delay: 10m, max_late: 1d")
        _, report = publish(root, NOW)
        mastodon = {
            d["id"].rsplit("#", 1)[1]: d for d in report["deliveries"] if d["channel"] == "mastodon"
        }
        assert mastodon["2"]["state"] == "sent"  # it is out: never posted again
        assert mastodon["3"]["state"] == "blocked"
        assert "its id on mastodon is not known" in mastodon["3"]["detail"]
        publish(root, NOW + timedelta(minutes=5))
        assert len(social.posts("mastodon")) == 2
        assert len(social.posts("x")) == PARTS


def test_two_publish_processes_at_once_post_each_part_once_in_order(
    make_project: MakeProject,
) -> None:
    import os
    import subprocess

    from test_channel_matrix import commcal_command

    with Networks() as networks:
        server = Mastodon(networks, delay=0.1)
        root = mastodon_project(make_project, networks.url)
        for minutes in (0, 1, 2):  # overlapping cron runs, then the next minutes
            now = (NOW + timedelta(minutes=minutes)).isoformat()
            args = ["-C", str(root), "publish", "--format", "json", "--now", now]
            procs = [
                subprocess.Popen(
                    [*commcal_command(), *args],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env={**os.environ, **ENV},
                )
                for _ in range(2)
            ]
            for proc in procs:
                out, err = proc.communicate(timeout=60)
                assert out, err
                states = {d["state"] for d in json.loads(out)["deliveries"]}
                assert not states & {"failed", "unknown"}, out
    assert server.requests == PARTS  # no part was even sent twice
    posts = [server.statuses[key] for key in server.order]
    assert [body["status"] for _, body in posts] == [
        f"Launch part {n} of launch" for n in range(1, PARTS + 1)
    ]
    for (before, _), (_, body) in itertools.pairwise(posts):
        assert body["in_reply_to_id"] == before


def test_every_registered_channel_type_says_how_it_posts_a_thread() -> None:
    from importlib.metadata import entry_points

    from commcal.channels.base import IN_ORDER, NO_THREADS, REPLIES
    from commcal.channels.registry import GROUP, channel_class
    from commcal.errors import ConfigError

    modes = {}
    for ep in entry_points(group=GROUP):
        try:
            modes[ep.name] = channel_class(ep.name).thread_mode
        except ConfigError:  # registered in the environment by a package not importable here
            continue
    assert set(modes.values()) <= {REPLIES, IN_ORDER, NO_THREADS}, modes
    for name in ("mastodon", "bluesky", "x", "matrix", "telegram", "threads"):
        assert modes[name] == REPLIES
    assert modes["smtp"] == NO_THREADS
    assert modes["slack"] == modes["discord"] == IN_ORDER


def test_an_unreachable_network_leaves_every_part_reported_and_the_next_run_sends_them(
    make_project: MakeProject,
) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    root = social_project(make_project, closed, "retry_delay: 10m, max_late: 1d")
    code, report = publish(root, NOW)
    assert len(report["deliveries"]) == 2 * PARTS  # every part has its outcome
    assert {d["state"] for d in report["deliveries"]} == {"pending"}, report
    with Networks() as networks:
        social = Social(networks)
        config = root / "commcal.yaml"
        config.write_text(config.read_text().replace(closed, networks.url), encoding="utf-8")
        code, report = publish(root, NOW + timedelta(minutes=15))
        assert code == 0, report
    for network in ("mastodon", "x"):
        assert_one_chain(social, network)


def test_lint_counts_a_thread_once_per_day_but_each_part_against_the_rate_limit(
    make_project: MakeProject,
) -> None:
    parts = 40  # Telegram: about 20 messages per minute per group (lint's rate_budget)
    root = make_project(
        config=BAD_CONFIG.replace(
            "channels:\n",
            "lint:\n  max_per_day: {limit: 1, severity: error}\nchannels:\n"
            "  tg:\n    type: telegram\n    token: ${TG_TOKEN}\n    chat_id: '@teamchannel'\n",
        ),
        calendars={
            "main.yaml": "items:\n  - id: long\n    channels: [x, tg]\n    at: 2026-12-05 09:00\n"
            f"    thread: [{', '.join(['posts/a'] * parts)}]\n"
        },
        templates={"posts/a.j2": "Hello.\n"},
    )
    result = CliRunner().invoke(
        app, ["-C", str(root), "validate", "--now", "2026-12-01T00:00:00Z"], env=ENV
    )
    assert "max_per_day" not in result.output, result.output
    assert "rate_budget: 21 deliveries on tg within 1m" in result.output, result.output


def test_threads_meta_parts_reply_to_the_part_before(make_project: MakeProject) -> None:
    """Threads (Meta): each part's container names the part before as `reply_to_id`."""
    from urllib.parse import parse_qs, urlsplit

    user, token = "26122000000000001", "THQWJq9Zx2Lm5Rt7Yp3Kw8VbN4cD6fG"
    containers: dict[str, dict[str, list[str]]] = {}
    posts: list[tuple[str, dict[str, list[str]]]] = []  # (post id, its container's fields)

    def answer(request: Request) -> Answer:
        path = urlsplit(request.path).path
        if request.method == "POST" and path == f"/v1.0/{user}/threads":
            container = str(17889615691921648 + len(containers))
            containers[container] = parse_qs(request.text)
            return Answer(body=json.dumps({"id": container}).encode())
        if request.method == "POST" and path == f"/v1.0/{user}/threads_publish":
            container = parse_qs(request.text)["creation_id"][0]
            post = str(18028000000000042 + len(posts))
            posts.append((post, containers[container]))
            return Answer(body=json.dumps({"id": post}).encode())
        if path.startswith("/v1.0/178896"):
            return Answer(body=json.dumps({"id": path[6:], "status": "FINISHED"}).encode())
        if path.startswith("/v1.0/18028"):
            link = f"https://www.threads.net/@acme/post/{path[6:]}"
            return Answer(body=json.dumps({"permalink": link}).encode())
        return Answer(404, b'{"error": {"message": "Unknown path", "code": 100}}')

    with Networks() as networks:
        networks.answer = answer
        root = make_project(
            config=(
                "timezone: UTC\nlocale: en\nstate: sqlite:///state.db\n"
                "publish: {max_late: 1d}\nchannels:\n"
                f"  threads:\n    type: threads\n    user_id: '{user}'\n"
                f"    token: ${{THREADS_TOKEN}}\n    api_url: {networks.url}/v1.0\n"
            ),
            calendars={"main.yaml": THREAD_CALENDAR.format(channels="threads")},
            templates=THREAD_TEMPLATES,
        )
        code, out = invoke(
            root,
            "publish",
            "--format",
            "json",
            "--now",
            NOW.isoformat(),
            env={"THREADS_TOKEN": token},
        )
        assert code == 0, out
        assert token not in out
    assert [fields["text"] for _, fields in posts] == [
        [f"Launch part {n} of launch"] for n in range(1, PARTS + 1)
    ]
    assert "reply_to_id" not in posts[0][1]
    for (before, _), (_, fields) in itertools.pairwise(posts):
        assert fields["reply_to_id"] == [before]


def test_cron_minutes_finish_a_thread_whose_part_3_failed(make_project: MakeProject) -> None:
    """`commcal publish` every minute, as cron runs it (the cron index's shortcut included):
    the minute part 3's retry is due, it goes out, and 4 and 5 after it."""
    import os
    import subprocess

    from test_channel_matrix import commcal_command

    with Networks() as networks:
        social = Social(networks)
        failed: set[str] = set()

        def third_once(network: str, body: dict[str, Any]) -> bool:
            if body["text"].startswith("Launch part 3") and network not in failed:
                failed.add(network)
                return True
            return False

        social.fail = third_once
        root = social_project(make_project, networks.url, "retry_delay: 2m, max_late: 1d")
        for minute in range(12):
            now = (NOW + timedelta(minutes=minute)).isoformat()
            done = subprocess.run(
                [*commcal_command(), "-C", str(root), "publish", "--now", now],
                capture_output=True,
                text=True,
                env={**os.environ, **ENV},
                timeout=60,
            )
            assert "Traceback" not in done.stderr, done.stderr
            if len(social.kept) == 2 * PARTS:
                break
        assert minute >= 2  # the retry waited for its minute
    for network in ("mastodon", "x"):
        assert_one_chain(social, network)
