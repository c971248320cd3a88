"""The cron minute's shortcut (commcal.cron_index) attacked from outside, with streamed
newsletters: whatever a run leaves undone (a relay that goes down or answers 4xx half-way, a
stop, a member zone not yet due), the next minutes of `commcal publish`, run as cron runs it
(`python -m commcal`, `--now` advancing), mail every remaining member exactly once; and an
index that does not belong (another ledger, another state URL, a torn write, an edit with the
mtime set back, a changed variable) never turns a due minute into "nothing due".

The relay is aiosmtpd in a child process, so that it can be killed and started again.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from commcal.cron_index import INDEX_FILE
from commcal.ledger import open_ledger
from tests.conftest import MakeProject
from tests.test_community import free_port
from tests.test_smtp_ambiguity import LETTER_CALENDAR, LETTER_TEMPLATES

ROOT = Path(__file__).resolve().parent.parent
SECRET = "a-long-random-member-secret-for-tests-0123456789"
DUE = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
MEMBERS = 120
ENV = {**os.environ, "MEMBER_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
ENV.pop("COMMCAL_STATE", None)

# Takes every mail, a little slowly, logging "recipient" once it is queued. While the file
# `mode` next to the log says "flaky", RCPT of every third member is answered 451 (try later);
# "421 N": N MAIL commands after the 30th mail are answered 421.
RELAY = """\
import asyncio, sys
from pathlib import Path
from aiosmtpd.controller import Controller

log = open(sys.argv[2], "a", buffering=1)
mode = Path(sys.argv[2]).with_name("mode")

class Relay:
    refused = 0
    async def handle_MAIL(self, server, session, envelope, address, options):
        # "421 N": after 30 mails, the next N MAIL commands are answered 421 (closing).
        words = mode.read_text().split() if mode.exists() else []
        if words[:1] == ["421"] and self.refused < int(words[1]):
            if sum(1 for _ in open(sys.argv[2])) >= 30:
                self.refused += 1
                return "421 4.3.2 service not available, closing transmission channel"
        envelope.mail_from = address
        return "250 OK"
    async def handle_RCPT(self, server, session, envelope, address, options):
        number = int(address.split("@")[0].removeprefix("member"))
        if mode.exists() and mode.read_text().strip() == "flaky" and number % 3 == 0:
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"
    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(0.01)
        log.write(f"{envelope.rcpt_tos[0]}\\n")
        return "250 queued"

controller = Controller(Relay(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
"""


class Relay:
    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RELAY, str(self.port), str(self.log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def received(self) -> Counter[str]:
        lines = self.log.read_text(encoding="utf-8").splitlines() if self.log.exists() else []
        return Counter(lines)


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    r = Relay(free_port(), tmp_path / "relay.log")
    r.start()
    yield r
    r.kill()


def newsletter(
    make_project: MakeProject, port: int, *, connections: int = 2, batch: int = 10
) -> Path:
    root = make_project(
        config=f"""\
timezone: UTC
locale: en
state: sqlite:///state.db
publish: {{retry_delay: 2m, max_late: 6h}}
members:
  secret: ${{MEMBER_SECRET}}
  unsubscribe_url: https://news.example.org
channels:
  newsletter:
    type: smtp
    host: 127.0.0.1
    port: {port}
    security: none
    connections: {connections}
    batch: {batch}
    timeout: 5
    from: "Community <hello@example.org>"
""",
        calendars=LETTER_CALENDAR,
        templates=LETTER_TEMPLATES,
    )
    rows = "".join(f"member{n:04d}@example.org,Member {n}\n" for n in range(MEMBERS))
    (root / "audiences").mkdir()
    (root / "audiences" / "members.csv").write_text("email,name\n" + rows, encoding="utf-8")
    return root


def edit(path: Path, *changes: tuple[str, str]) -> None:
    text = path.read_text(encoding="utf-8")
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")


def command(root: Path, now: datetime) -> list[str]:
    return [sys.executable, "-m", "commcal", "-C", str(root), "publish", "--now", now.isoformat()]


def cron(root: Path, now: datetime, env: dict[str, str] | None = None) -> tuple[int, str]:
    """One cron minute, as cron runs it: a real process of `python -m commcal publish`."""
    done = subprocess.run(
        [*command(root, now), "--format", "jsonl"],
        env=env or ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


def states(root: Path) -> Counter[str]:
    db = sqlite3.connect(root / "state.db")
    try:
        return Counter(r[0] for r in db.execute("SELECT state FROM deliveries"))
    finally:
        db.close()


def settled(root: Path) -> list[float]:
    index = json.loads((root / INDEX_FILE).read_text(encoding="utf-8"))
    return list(index["settled"].values())


def wait_for(relay: Relay, count: int) -> None:
    deadline = time.monotonic() + 60
    while sum(relay.received().values()) < count and time.monotonic() < deadline:
        time.sleep(0.005)


def later_minutes(root: Path, start: datetime, minutes: int) -> datetime:
    """Cron minutes after `start`: each one a real process; the last `now`."""
    now = start
    for _ in range(minutes):
        now += timedelta(minutes=1)
        cron(root, now)
    return now


def assert_each_member_once(root: Path, relay: Relay, *, in_doubt: bool = False) -> None:
    """Every member has one row and got one mail; `in_doubt`: a few may be `unknown` instead
    (in flight when the relay died: a person checks), none mailed twice."""
    got = relay.received()
    twice = [who for who, n in got.items() if n > 1]
    assert not twice, f"mailed twice: {twice[:5]}"
    rows = states(root)
    if not in_doubt:
        assert rows == Counter(sent=MEMBERS) and len(got) == MEMBERS, rows
        return
    assert sum(rows.values()) == MEMBERS, rows
    assert rows["sent"] + rows["unknown"] == MEMBERS, rows
    assert len(got) >= rows["sent"], (len(got), rows)
    assert rows["unknown"] <= 2, rows  # at most the mails in flight: one per connection


def test_a_relay_down_mid_newsletter_then_back_gets_every_member_once(
    make_project: MakeProject, relay: Relay
) -> None:
    root = newsletter(make_project, relay.port)
    first = DUE + timedelta(seconds=30)
    publisher = subprocess.Popen(
        command(root, first), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(relay, 30)
    relay.kill()  # down half-way: the channel's circuit opens
    publisher.wait(timeout=60)
    assert sum(relay.received().values()) < MEMBERS
    # The run settled (every member has a row: the untried ones `pending`, batch after batch),
    # so the index says so; the pending rows must keep the next minutes out of the shortcut.
    assert sum(states(root).values()) == MEMBERS
    assert states(root)["pending"] > 0
    assert settled(root) == [first.timestamp()]
    # Down for a few minutes: cron runs on, and sends nothing.
    now = later_minutes(root, first, 3)
    relay.start()
    later_minutes(root, now, 12)
    assert_each_member_once(root, relay, in_doubt=True)
    assert (root / INDEX_FILE).exists()


@pytest.mark.parametrize(
    "mode",
    [
        "flaky",  # every third member's RCPT answered 451, until the relay is fixed
        "421 40",  # 40 MAIL commands answered 421: whole batches, then the relay recovers
    ],
)
def test_a_relay_answering_4xx_half_way_gets_every_member_later_once(
    make_project: MakeProject, relay: Relay, mode: str
) -> None:
    root = newsletter(make_project, relay.port)
    relay.log.with_name("mode").write_text(mode, encoding="utf-8")
    first = DUE + timedelta(seconds=30)
    _, out = cron(root, first)
    got = relay.received()
    assert 30 <= sum(got.values()) < MEMBERS, out
    assert states(root) == Counter(sent=len(got), pending=MEMBERS - len(got))
    # The next minute, before their retry is due: nothing more (and nothing twice).
    cron(root, first + timedelta(minutes=1))
    assert relay.received() == got
    relay.log.with_name("mode").write_text("ok", encoding="utf-8")
    later_minutes(root, first + timedelta(minutes=1), 8)
    assert_each_member_once(root, relay)


def test_a_member_whose_mail_cannot_render_fails_alone_and_the_minute_stays_quiet(
    make_project: MakeProject, relay: Relay
) -> None:
    root = newsletter(make_project, relay.port)
    edit(
        root / "templates" / "news" / "letter.j2",
        ("Leave:", "Points {{ member.points + 1 }}\nLeave:"),
    )
    rows = "".join(
        f"member{n:04d}@example.org,Member {n},{n if n % 4 else ''}\n" for n in range(MEMBERS)
    )
    (root / "audiences" / "members.csv").write_text("email,name,points\n" + rows, encoding="utf-8")
    first = DUE + timedelta(seconds=30)
    code, out = cron(root, first)
    broken = len(range(0, MEMBERS, 4))
    assert code == 1, out
    assert states(root) == Counter(sent=MEMBERS - broken, failed=broken), out
    got = relay.received()
    assert len(got) == MEMBERS - broken and set(got.values()) == {1}
    # Failed is finished (`commcal retry` sends it again): the next minutes send nothing more.
    later_minutes(root, first, 2)
    assert relay.received() == got
    # The run settled (each member has a row), and the later minutes were quiet ones.
    assert settled(root) == [first.timestamp()]


def test_a_stop_mid_newsletter_leaves_the_rest_to_the_next_minutes(
    make_project: MakeProject, relay: Relay
) -> None:
    # A batch no larger than the pool: every mail of the batch in flight is begun at once, so
    # the stop leaves no `pending` row behind, only members without a row.
    root = newsletter(make_project, relay.port, connections=2, batch=2)
    first = DUE + timedelta(seconds=30)
    publisher = subprocess.Popen(
        command(root, first), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(relay, 30)
    publisher.send_signal(signal.SIGTERM)
    publisher.wait(timeout=60)
    assert sum(relay.received().values()) < MEMBERS
    later_minutes(root, first, 3)
    assert_each_member_once(root, relay)


def test_a_member_zone_not_yet_due_is_sent_at_its_own_minute(
    make_project: MakeProject, relay: Relay
) -> None:
    root = newsletter(make_project, relay.port)
    edit(
        root / "calendars" / "main.yaml",
        ("    audience: members\n", "    audience: members\n    send_at: local\n"),
    )
    rows = "".join(
        f"member{n:04d}@example.org,Member {n},{'Asia/Tokyo' if n % 2 else 'UTC'}\n"
        for n in range(MEMBERS)
    )
    (root / "audiences" / "members.csv").write_text(
        "email,name,timezone\n" + rows, encoding="utf-8"
    )
    # 08:00 in Tokyo is 23:00 UTC the day before; 08:00 UTC comes 9 hours later.
    tokyo = DUE - timedelta(hours=9)
    cron(root, tokyo)
    assert len(relay.received()) == MEMBERS // 2
    assert (root / INDEX_FILE).exists()
    # Every minute in between is quiet, through the shortcut; then the UTC members are due.
    for step in (timedelta(minutes=1), timedelta(hours=4), timedelta(hours=8, minutes=59)):
        cron(root, tokyo + step)
        assert len(relay.received()) == MEMBERS // 2
    now = DUE
    cron(root, now)
    assert_each_member_once(root, relay)


def test_a_code_pool_short_of_codes_holds_the_offer_until_it_is_refilled(
    make_project: MakeProject, relay: Relay
) -> None:
    root = newsletter(make_project, relay.port)
    edit(
        root / "calendars" / "main.yaml",
        ("  - id: december-letter\n    kind: newsletter\n", "  - id: winter\n    kind: offer\n"),
        ("    audience: members\n", "    audience: members\n    codes: {pool: codes/x.txt}\n"),
        ("news/letter", "news/offer"),
    )
    offer = (
        "{% block subject %}Offer{% endblock %}\n{% block text %}Code {{ code }}{% endblock %}\n"
    )
    (root / "templates" / "news" / "offer.j2").write_text(offer, encoding="utf-8")
    pool = root / "codes" / "x.txt"  # not among the index's inputs
    pool.parent.mkdir()
    pool.write_text("".join(f"C{n}\n" for n in range(MEMBERS // 2)), encoding="utf-8")
    cron(root, DUE - timedelta(minutes=1))  # a settled minute before: the index is built
    assert (root / INDEX_FILE).exists()
    for step in (30, 90):  # short of codes: nothing goes out, and the run does not settle
        code, out = cron(root, DUE + timedelta(seconds=step))
        assert code == 1 and "codes" in out, out
        assert relay.received() == Counter()
    pool.write_text("".join(f"C{n}\n" for n in range(MEMBERS)), encoding="utf-8")
    later_minutes(root, DUE + timedelta(minutes=1), 2)
    assert_each_member_once(root, relay)


def test_two_cron_processes_streaming_one_newsletter_mail_each_member_once(
    make_project: MakeProject, relay: Relay
) -> None:
    """Two hosts' cron at the same minute, both streaming the newsletter (and each writing the
    index when it ends), then the following minutes."""
    root = newsletter(make_project, relay.port)
    first = DUE + timedelta(seconds=30)
    both = [
        subprocess.Popen(
            command(root, first), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(2)
    ]
    for proc in both:
        proc.wait(timeout=120)
    later_minutes(root, first, 2)
    assert_each_member_once(root, relay)


# -- the index itself, attacked ----------------------------------------------------------------

POSTS = """\
timezone: UTC
locale: en
state: {state}
publish: {{max_late: 2h}}
channels:
  console:
    type: console
"""


def posts(root: Path, state: str = "sqlite:///state.db", times: tuple[str, ...] = ()) -> None:
    """A project of console posts, one item per `HH:MM` (UTC) in `times`."""
    for folder in ("calendars", "templates/posts"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "commcal.yaml").write_text(POSTS.format(state=state), encoding="utf-8")
    (root / "templates" / "posts" / "tip.j2").write_text("SEND {{ item.id }}\n", encoding="utf-8")
    calendar(root, times)


def calendar(root: Path, times: tuple[str, ...]) -> None:
    lines = [
        "calendar: main",
        "defaults: {channels: [console]}",
        "items:" if times else "items: []",
    ]
    for n, hhmm in enumerate(times):
        hour, minute = hhmm.split(":")
        lines += [
            f"  - id: item-{n}",
            "    kind: post",
            "    template: posts/tip",
            f'    schedule: {{cron: "{int(minute)} {int(hour)} * * *"}}',
        ]
    (root / "calendars" / "main.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


PUBLISH = (sys.executable, "-m", "commcal", "-C")


def minute(
    root: Path, now: datetime, env: dict[str, str] | None = None, *args: str
) -> subprocess.CompletedProcess[str]:
    """`commcal publish` as cron runs it (the console entry: the shortcut comes first)."""
    return subprocess.run(
        [*PUBLISH, str(root), "publish", "--now", now.isoformat(), *args],
        env=env or ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def sends(done: subprocess.CompletedProcess[str]) -> list[str]:
    return sorted(line for line in done.stdout.splitlines() if line.startswith("SEND "))


AT = DUE.replace(hour=9)  # 09:00 UTC


def test_a_deleted_and_recreated_ledger_is_refused_not_quiet(tmp_path: Path) -> None:
    posts(tmp_path, times=("09:00",))
    assert sends(minute(tmp_path, AT + timedelta(minutes=1))) == ["SEND item-0"]
    assert minute(tmp_path, AT + timedelta(minutes=2)).stdout == "1 already\n"  # the shortcut
    (tmp_path / "state.db").unlink()
    # A new, empty ledger in its place (what any command that opens the state would make).
    open_ledger("sqlite:///state.db", project_dir=tmp_path).close()
    done = minute(tmp_path, AT + timedelta(minutes=3))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "different ledger with no deliveries" in done.stderr
    assert sends(done) == []


def test_another_state_url_or_commcal_state_is_never_quiet(tmp_path: Path) -> None:
    posts(tmp_path, state="${STATE_URL}", times=("09:00",))
    env = {**ENV, "STATE_URL": "sqlite:///one.db"}
    assert sends(minute(tmp_path, AT + timedelta(minutes=1), env)) == ["SEND item-0"]
    assert minute(tmp_path, AT + timedelta(minutes=2), env).stdout == "1 already\n"
    for other in (
        {**env, "STATE_URL": "sqlite:///two.db"},  # the variable commcal.yaml names
        {**env, "COMMCAL_STATE": "sqlite:///three.db"},
    ):
        done = minute(tmp_path, AT + timedelta(minutes=3), other)
        assert done.returncode == 2 and "different ledger" in done.stderr, done.stderr
    done = minute(tmp_path, AT + timedelta(minutes=3), env, "--state", "sqlite:///four.db")
    assert done.returncode == 2 and "different ledger" in done.stderr, done.stderr
    # Back to the right one: quiet again, nothing sent twice.
    assert minute(tmp_path, AT + timedelta(minutes=4), env).stdout == "1 already\n"


def test_an_index_copied_from_another_checkout_is_not_trusted(tmp_path: Path) -> None:
    # The same folder name (so the same project name) in two places: only the ledger differs.
    one, two = tmp_path / "a" / "site", tmp_path / "b" / "site"
    posts(one, times=("09:00", "09:30"))
    assert sends(minute(one, AT + timedelta(minutes=1))) == ["SEND item-0"]
    posts(two, times=("09:00", "09:30"))  # the same project, with its own ledger,
    assert sends(minute(two, AT - timedelta(hours=1))) == []  # which it has published to
    (two / INDEX_FILE).write_bytes((one / INDEX_FILE).read_bytes())
    # Its ledger has not sent what is due: the run sends it, never "nothing due".
    assert sends(minute(two, AT + timedelta(minutes=2))) == ["SEND item-0"]
    assert sends(minute(one, AT + timedelta(minutes=31))) == ["SEND item-1"]


def test_a_torn_index_or_a_stray_temporary_file_is_ignored(tmp_path: Path) -> None:
    posts(tmp_path, times=("09:00", "09:10"))
    assert sends(minute(tmp_path, AT + timedelta(minutes=1))) == ["SEND item-0"]
    index = tmp_path / INDEX_FILE
    whole = index.read_text(encoding="utf-8")
    # SIGKILL while writing leaves a torn temporary file (the rename never happened), and a
    # torn index is what a copy interrupted half-way would leave.
    index.with_name(f"{index.name}.4242.deadbeef.tmp").write_text(whole[:40], encoding="utf-8")
    index.write_text(whole[: len(whole) // 2], encoding="utf-8")
    assert sends(minute(tmp_path, AT + timedelta(minutes=11))) == ["SEND item-1"]
    assert json.loads(index.read_text(encoding="utf-8"))["format"] == 1


def test_an_edit_with_the_same_size_and_the_mtime_set_back_is_seen(tmp_path: Path) -> None:
    """An edit long after the index was built, the old size and mtime put back (a `tar x` or
    `cp -p` of an edited copy, `touch -r`): the file's change time still says it changed."""
    posts(tmp_path, times=("09:00", "11:00"))
    main = tmp_path / "calendars" / "main.yaml"
    old = main.stat()
    back = old.st_mtime_ns - 3_600_000_000_000  # an hour ago: not racy
    os.utime(main, ns=(back, back))
    assert sends(minute(tmp_path, AT + timedelta(minutes=1))) == ["SEND item-0"]
    time.sleep(2.5)  # past the racily-clean margin of the index just built
    text = main.read_text(encoding="utf-8")
    main.write_text(text.replace('"0 11 * * *"', '"5 09 * * *"'), encoding="utf-8")
    os.utime(main, ns=(back, back))
    assert main.stat().st_size == old.st_size
    assert sends(minute(tmp_path, AT + timedelta(minutes=6))) == ["SEND item-1"]


def test_a_now_before_the_settled_mark_runs_in_full_and_sends_nothing_twice(
    tmp_path: Path,
) -> None:
    posts(tmp_path, times=("09:00", "09:20"))
    assert sends(minute(tmp_path, AT + timedelta(minutes=30))) == ["SEND item-0", "SEND item-1"]
    # A run "in the past" (a clock set back, a --now typo): what it finds was sent.
    earlier = minute(tmp_path, AT + timedelta(minutes=10))
    assert earlier.returncode == 0 and sends(earlier) == []
    assert minute(tmp_path, AT + timedelta(minutes=31)).stdout == "2 already\n"


def test_an_index_that_cannot_be_written_costs_only_speed(tmp_path: Path) -> None:
    posts(tmp_path, times=("09:00", "09:05"))
    (tmp_path / INDEX_FILE).mkdir(parents=True)  # in the way: neither read nor replaced
    assert sends(minute(tmp_path, AT + timedelta(minutes=1))) == ["SEND item-0"]
    assert sends(minute(tmp_path, AT + timedelta(minutes=2))) == []
    assert sends(minute(tmp_path, AT + timedelta(minutes=6))) == ["SEND item-1"]
    assert [p.name for p in (tmp_path / ".commcal").iterdir() if p.name.endswith(".tmp")] == []


def test_two_cron_processes_racing_send_each_post_once(tmp_path: Path) -> None:
    """Two `commcal publish` processes each minute (two hosts, an overlapping cron), one of
    them often rewriting the index while the other reads it."""
    times = ("09:01", "09:02", "09:04", "09:05", "09:07")
    posts(tmp_path, times=times)
    sent: list[str] = []
    for step in range(9):
        now = AT + timedelta(minutes=step, seconds=5)
        both = [
            subprocess.Popen(
                [*PUBLISH, str(tmp_path), "publish", "--now", now.isoformat()],
                env=ENV,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for proc in both:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            sent += [line for line in out.splitlines() if line.startswith("SEND ")]
    assert sorted(sent) == [f"SEND item-{n}" for n in range(len(times))]


def test_a_tz_database_update_that_moves_a_local_time_is_seen(tmp_path: Path) -> None:
    """The rules of the project's zone change (a tzdata update: Berlin moves to UTC+2): 09:00
    local comes an hour earlier in UTC, and that minute must send it, not an index built with
    the old rules."""
    zones = tmp_path / "tz"
    (zones / "Europe").mkdir(parents=True)
    system = Path("/usr/share/zoneinfo")
    if not (system / "Europe" / "Berlin").is_file() or not (system / "Europe" / "Kyiv").is_file():
        pytest.skip("needs the system's tz database")
    (zones / "Europe" / "Berlin").write_bytes((system / "Europe" / "Berlin").read_bytes())
    env = {**ENV, "PYTHONTZPATH": str(zones)}
    root = tmp_path / "p"
    posts(root, times=("09:00",))
    edit(root / "commcal.yaml", ("timezone: UTC", "timezone: Europe/Berlin"))
    assert sends(minute(root, AT.replace(hour=8, minute=1), env)) == ["SEND item-0"]
    assert minute(root, AT.replace(hour=8, minute=5), env).stdout == "1 already\n"
    (zones / "Europe" / "Berlin").write_bytes((system / "Europe" / "Kyiv").read_bytes())
    next_day = AT + timedelta(days=1)
    assert sends(minute(root, next_day.replace(hour=7, second=30), env)) == ["SEND item-0"]
