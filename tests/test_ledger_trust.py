"""Issue 15, the ledger's side: a new ledger never re-sends the past, one ledger serves one
project, every due delivery ends in a state, `retry` never repeats a send that may have arrived,
and a dry run tells the truth without writing anything.

Each test drives the CLI over a real project with a loopback receiver (HTTP or SMTP), and reads
the ledger the way a user would (`status`) or directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from commcal.cli import app
from commcal.ledger import LedgerMissing, State, open_ledger
from tests.conftest import MakeProject
from tests.publish_support import (
    TEMPLATES,
    Answer,
    Receiver,
    config,
    dump,
    every_minute,
    webhook,
)
from tests.test_community import LETTER, Mailbox, members_project
from tests.test_ledger import ledger_url, postgres_db  # noqa: F401

NOW = "2026-01-01T00:10:00Z"
FAST = "max_late: 1h, retry_delay: 0, lease: 5s, max_attempts: 4"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def cli(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["-C", str(root), *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def hook_project(
    make_project: MakeProject,
    receiver: Receiver,
    calendar: str,
    *,
    state: str = "sqlite:///state.db",
    publish: str = FAST,
    head: str = "",
) -> Path:
    return make_project(
        config=head + config(webhook("hook", receiver.url), state=state, publish=publish),
        calendars={"main.yaml": calendar},
        templates=TEMPLATES,
    )


def states(root: Path, *args: str) -> dict[str, str]:
    code, out, err = cli(root, "status", "--format", "json", "--limit", "10000", *args)
    assert code == 0, err
    return {row["id"]: row["state"] for row in json.loads(out)["deliveries"]}


def counts(out: str) -> dict[str, int]:
    return dict(json.loads(out)["counts"])


# -- point 2: a new, empty ledger never re-sends the past ----------------------------------------


def test_a_first_publish_sends_a_post_due_five_minutes_ago(
    make_project: MakeProject, receiver: Receiver
) -> None:
    """The newcomer's path: no earlier ledger, so nothing is held back."""
    root = hook_project(
        make_project, receiver, every_minute("tip", ["hook"], "2026-01-01 00:05", 1)
    )
    code, out, err = cli(root, "publish", "--now", NOW, "--format", "json")
    assert code == 0, err
    assert counts(out) == {"sent": 1}
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("how", ["typo-option", "typo-env", "deleted-file", "emptied-file"])
def test_a_new_empty_ledger_in_place_of_the_last_one_is_refused(
    make_project: MakeProject, receiver: Receiver, how: str
) -> None:
    root = hook_project(
        make_project, receiver, every_minute("tip", ["hook"], "2026-01-01 00:00", 3)
    )
    code, out, err = cli(root, "publish", "--now", NOW)
    assert code == 0, err
    assert len(receiver.requests) == 3

    args: list[str] = []
    env: dict[str, str] | None = None
    if how == "typo-option":
        args = ["--state", "sqlite:///stat.db"]
    elif how == "typo-env":
        env = {"COMMCAL_STATE": "sqlite:///stat.db"}
    elif how == "deleted-file":
        (root / "state.db").unlink()
    else:
        (root / "state.db").write_bytes(b"")
    code, out, err = cli(root, "publish", "--now", NOW, *args, env=env)
    assert code == 2, (out, err)
    assert len(receiver.requests) == 3  # nothing sent twice
    assert "last published to the ledger sqlite:///state.db" in err
    assert "commcal publish --new-ledger" in err and "--catch-up" in err

    # Confirmed: the new ledger takes over, what came due before is skipped, and says why.
    code, out, err = cli(
        root, "publish", "--now", NOW, "--new-ledger", *args, "-f", "json", env=env
    )
    assert code == 0, err
    assert counts(out) == {"skipped": 3}
    details = {d["detail"] for d in json.loads(out)["deliveries"]}
    assert details == {"due before this ledger took over; `commcal publish --catch-up` sends it"}
    assert len(receiver.requests) == 3
    # Later runs go on as usual, without the option and without sending those again.
    code, out, err = cli(root, "publish", "--now", NOW, *args, "-f", "json", env=env)
    assert (code, counts(out)) == (0, {"already": 3}), err
    # Asked for: --catch-up sends them (the user accepts the risk of a repeat).
    code, out, err = cli(root, "publish", "--now", NOW, "--catch-up", *args, "-f", "json", env=env)
    assert (code, counts(out)) == (0, {"sent": 3}), err
    assert len(receiver.requests) == 6


def test_catch_up_alone_confirms_a_new_ledger_and_sends_what_is_within_max_late(
    make_project: MakeProject, receiver: Receiver
) -> None:
    root = hook_project(
        make_project, receiver, every_minute("tip", ["hook"], "2026-01-01 00:00", 2)
    )
    assert cli(root, "publish", "--now", NOW)[0] == 0
    code, out, err = cli(
        root, "publish", "--now", NOW, "--state", "sqlite:///b.db", "--catch-up", "-f", "json"
    )
    assert (code, counts(out)) == (0, {"sent": 2}), err
    # --new-ledger on a ledger that already holds deliveries is a mistake, said so.
    code, out, err = cli(root, "publish", "--now", NOW, "--new-ledger", "--state", "sqlite:///c.db")
    assert code == 0, err  # c.db is new and empty: fine
    code, out, err = cli(root, "publish", "--now", NOW, "--new-ledger")
    assert code == 2 and "already holds 2 deliveries" in err


@pytest.mark.parametrize("command", [["status"], ["status", "--workers"], ["retry", "--failed"]])
def test_read_only_commands_never_create_a_ledger(
    make_project: MakeProject, receiver: Receiver, command: list[str]
) -> None:
    root = hook_project(
        make_project, receiver, every_minute("tip", ["hook"], "2026-01-01 00:00", 1)
    )
    code, out, err = cli(root, *command, "--state", "sqlite:///typo.db")
    assert code == 2, (out, err)
    assert str(root / "typo.db") in err
    assert not (root / "typo.db").exists()
    code, out, err = cli(root, "resolve", "abcdef123", "--not-sent", "--state", "sqlite:///t.db")
    assert code == 2 and not (root / "t.db").exists()


# -- point 3: one ledger, one project -------------------------------------------------------------


def test_two_projects_on_one_ledger_are_refused_with_both_names(
    make_project: MakeProject, receiver: Receiver, tmp_path: Path
) -> None:
    shared = f"sqlite:///{tmp_path / 'shared.db'}"
    calendar = every_minute("tip", ["hook"], "2026-01-01 00:00", 3)
    first = hook_project(make_project, receiver, calendar, state=shared)
    second = hook_project(make_project, receiver, calendar, state=shared)
    assert cli(first, "publish", "--now", NOW)[0] == 0
    assert len(receiver.requests) == 3
    code, out, err = cli(second, "publish", "--now", NOW)
    assert code == 2, (out, err)
    assert "belongs to project 'project', not to 'project-2'" in err
    assert "project:" in err and "state:" in err
    assert len(receiver.requests) == 3
    # The dry run says the same, and so does `run`'s library path.
    code, out, err = cli(second, "publish", "--now", NOW, "--dry-run")
    assert code == 2 and "belongs to project 'project'" in err
    # Naming the project as the ledger knows it (the same project, renamed folder) works.
    (second / "commcal.yaml").write_text(
        "project: project\n" + (second / "commcal.yaml").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    code, out, err = cli(second, "publish", "--now", NOW, "-f", "json")
    assert (code, counts(out)) == (0, {"already": 3}), err


def test_one_ledger_one_project_and_a_dry_run_that_writes_nothing_on_both_backends(
    make_project: MakeProject,
    receiver: Receiver,
    ledger_url: str,  # noqa: F811
) -> None:
    calendar = every_minute("tip", ["hook"], "2026-01-01 00:00", 2)
    first = hook_project(make_project, receiver, calendar)
    second = hook_project(make_project, receiver, calendar)
    state = ["--state", ledger_url]
    code, out, err = cli(first, "publish", "--now", NOW, *state, "-f", "json")
    assert (code, counts(out)) == (0, {"sent": 2}), err
    code, out, err = cli(second, "publish", "--now", NOW, *state)
    assert code == 2 and "belongs to project 'project', not to 'project-2'" in err
    assert "password" not in err and "options" not in err

    def snapshot() -> list[Any]:
        with open_ledger(ledger_url) as ledger:
            found = [ledger.records(), ledger.workers(datetime(2026, 1, 1, tzinfo=UTC))]
            return [*found, ledger.meta(), [ledger.attempts(r.id) for r in found[0]]]

    before = snapshot()
    code, out, err = cli(first, "publish", "--dry-run", "--now", "2026-01-01T00:11:30Z", *state)
    assert code == 0, err
    assert "2 already" in out
    assert snapshot() == before
    assert len(receiver.requests) == 2


def test_init_names_the_project_after_its_folder(tmp_path: Path) -> None:
    target = tmp_path / "river-news"
    result = CliRunner().invoke(app, ["init", str(target)])
    assert result.exit_code == 0, result.output
    text = (target / "commcal.yaml").read_text(encoding="utf-8")
    assert "\nproject: river-news " in text
    result = CliRunner().invoke(app, ["-C", str(target), "validate"])
    assert result.exit_code == 0, result.output


def test_a_bad_project_name_is_a_config_problem(make_project: MakeProject) -> None:
    root = make_project(config="project: ' padded'\ntimezone: UTC\nchannels: {}\n")
    code, out, err = cli(root, "validate")
    assert code == 2
    assert "commcal.yaml:1" in err + out and "project ' padded' is not a usable name" in err + out


def _old_ledger(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ledger made by a commcal from before ledgers had an identity (schema version 2)."""
    from commcal.ledger import postgres, sqlite

    with monkeypatch.context() as m:
        m.setattr(sqlite, "MIGRATIONS", sqlite.MIGRATIONS[:2])
        m.setattr(postgres, "MIGRATIONS", postgres.MIGRATIONS[:2])
        open_ledger(url).close()


def test_a_ledger_gets_an_identity_and_adopts_its_first_project(
    ledger_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _old_ledger(ledger_url, monkeypatch)
    with open_ledger(ledger_url) as ledger:
        meta = ledger.meta()
        assert len(meta.ledger_id) == 32 and meta.project is None
        assert meta.created_at is not None
        assert ledger.adopt_project("alpha") == "alpha"
        assert ledger.adopt_project("beta") == "alpha"  # the first one keeps it
        when = datetime(2026, 1, 1, tzinfo=UTC)
        ledger.mark_swept(when)
        ledger.mark_swept(when - timedelta(days=1))  # never moves back
        assert ledger.meta().swept_through == when
        assert ledger.take_over(when)  # empty: it may
    with open_ledger(ledger_url) as again:
        assert again.meta().ledger_id == meta.ledger_id
        assert again.meta().project == "alpha"
        assert again.meta().took_over_at == datetime(2026, 1, 1, tzinfo=UTC)


def test_read_only_opening_of_a_missing_ledger_creates_nothing(
    ledger_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    if ledger_url.startswith("sqlite"):
        missing = f"sqlite:///{tmp_path / 'nope.db'}"
        with pytest.raises(LedgerMissing, match=r"nope\.db"):
            open_ledger(missing, read_only=True)
        with pytest.raises(LedgerMissing):
            open_ledger(missing, create=False)
        assert not (tmp_path / "nope.db").exists()
        return
    # PostgreSQL: a database without commcal's tables.
    import psycopg

    with psycopg.connect(ledger_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS empty_one")
    url = ledger_url.split("?")[0] + "?options=-csearch_path%3Dempty_one"
    with pytest.raises(LedgerMissing):
        open_ledger(url, read_only=True)
    with pytest.raises(LedgerMissing):
        open_ledger(url, create=False)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('deliveries')").fetchone() == (None,)


# -- point 4: every due delivery ends in a state, even after a long outage ----------------------


def six_hourly(start: str, until: str) -> str:
    return (
        "items:\n  - id: tip\n    kind: post\n    channels: [hook]\n    template: posts/unique\n"
        f"    schedule: {{every: 6h, start: '{start}', until: '{until}'}}\n"
    )


def test_after_a_long_outage_every_missed_delivery_is_recorded_expired_once(
    make_project: MakeProject, receiver: Receiver
) -> None:
    root = hook_project(
        make_project,
        receiver,
        six_hourly("2026-01-01 00:00", "2026-02-01 00:00"),
        publish="max_late: 1h, retry_delay: 0",
    )
    assert cli(root, "publish", "--now", "2026-01-01T00:10:00Z")[0] == 0
    assert len(receiver.requests) == 1
    # Down for 20 days (longer than the 7-day look-back).
    code, out, err = cli(root, "publish", "--now", "2026-01-21T00:10:00Z", "-f", "json")
    assert code == 0, err
    assert counts(out) == {"expired": 79, "sent": 1}  # 01-01 06:00 .. 01-20 18:00, then 01-21
    recorded = states(root)
    assert len(recorded) == 81  # every due delivery has a row
    assert sorted(set(recorded.values())) == ["expired", "sent"]

    # The next run writes none of them again.
    def rows() -> list[str]:
        return [
            line
            for line in dump(root / "state.db").splitlines()
            if "ledger_meta" not in line and '"workers"' not in line
        ]

    before = rows()
    code, out, err = cli(root, "publish", "--now", "2026-01-21T00:11:00Z", "-f", "json")
    assert (code, counts(out)) == (0, {"already": 1}), err
    assert rows() == before


def test_a_new_ledger_looks_back_only_as_far_as_the_usual_look_back(
    make_project: MakeProject, receiver: Receiver
) -> None:
    root = hook_project(
        make_project,
        receiver,
        six_hourly("2025-11-01 00:00", "2026-02-01 00:00"),
        publish="max_late: 1h, retry_delay: 0",
    )
    code, out, err = cli(root, "publish", "--now", "2026-01-01T00:10:00Z", "-f", "json")
    assert code == 0, err
    # 7 days back (less the hour of max_late), 4 a day; not the two months before; the due one.
    assert counts(out) == {"expired": 27, "sent": 1}


# -- point 6: retry never repeats a send that may have arrived -----------------------------------

MASTO_STATUS = b'{"id": "7", "url": "https://masto.example/@us/7"}'


@pytest.fixture
def short_read_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    from commcal import http

    monkeypatch.setattr(http, "new_session", lambda: http.TimeoutSession((2.0, 0.3)))


@pytest.mark.usefixtures("short_read_timeout")
def test_retry_refuses_a_failed_send_that_may_have_arrived_and_force_says_the_risk(
    make_project: MakeProject, receiver: Receiver
) -> None:
    receiver.behave = lambda request: Answer(body=MASTO_STATUS, delay=1.0)  # every answer late
    root = make_project(
        config=config(
            f"  masto:\n    type: mastodon\n    instance: {receiver.url}\n    token: ${{MT}}\n",
            publish="max_late: 6h, retry_delay: 0, lease: 5s, max_attempts: 2",
        ),
        calendars={"main.yaml": every_minute("tip", ["masto"], "2026-01-01 00:00", 1)},
        templates=TEMPLATES,
    )
    env = {"MT": "token-1"}
    code, out, err = cli(root, "publish", "--now", NOW, env=env)
    assert code == 1, (out, err)
    assert len(receiver.requests) == 2  # timed out twice, within Mastodon's hour
    (delivery,) = states(root)
    assert states(root) == {delivery: "failed"}

    # Two hours later Mastodon no longer remembers the key: a retry could post twice.
    later = "2026-01-01T02:10:00Z"
    code, out, err = cli(root, "retry", delivery[:10], "--now", later, env=env)
    assert code == 2, (out, err)
    assert "may have been delivered" in err and "post it twice" in err
    assert f"commcal resolve {delivery}" in err and "--force" in err
    code, out, err = cli(root, "retry", "--failed", "--now", later, env=env)
    assert code == 2 and "may have been delivered" in err
    assert cli(root, "publish", "--now", later, env=env)[0] == 0
    assert len(receiver.requests) == 2 and states(root) == {delivery: "failed"}

    code, out, err = cli(root, "retry", delivery[:10], "--force", "--now", later, env=env)
    assert code == 0, err
    assert "it may appear twice" in out
    assert states(root) == {delivery: "pending"}


@pytest.mark.usefixtures("short_read_timeout")
def test_retry_of_a_timed_out_webhook_is_allowed_because_the_receiver_dedupes_for_good(
    make_project: MakeProject, receiver: Receiver
) -> None:
    receiver.behave = lambda request: Answer(delay=1.0)
    calendar = every_minute("tip", ["hook"], "2026-01-01 00:00", 1)
    root = hook_project(make_project, receiver, calendar, publish="max_late: 6h, max_attempts: 1")
    assert cli(root, "publish", "--now", NOW)[0] == 1
    (delivery,) = states(root)
    assert states(root) == {delivery: "failed"}
    with open_ledger("sqlite:///state.db", project_dir=root) as ledger:
        assert ledger.may_have_been_sent(delivery)  # it timed out after the request went out
    code, out, err = cli(root, "retry", delivery[:10], "--now", "2026-01-01T02:10:00Z")
    assert code == 0, err
    assert "queued again" in out and "twice" not in out


def test_resolve_settles_a_failed_send_that_may_have_arrived(
    make_project: MakeProject, receiver: Receiver, short_read_timeout: None
) -> None:
    receiver.behave = lambda request: Answer(body=MASTO_STATUS, delay=1.0)
    root = make_project(
        config=config(
            f"  masto:\n    type: mastodon\n    instance: {receiver.url}\n    token: ${{MT}}\n",
            publish="max_late: 6h, retry_delay: 0, lease: 5s, max_attempts: 1",
        ),
        calendars={"main.yaml": every_minute("tip", ["masto"], "2026-01-01 00:00", 1)},
        templates=TEMPLATES,
    )
    env = {"MT": "token-1"}
    assert cli(root, "publish", "--now", NOW, env=env)[0] == 1
    (delivery,) = states(root)
    code, _, err = cli(
        root, "resolve", delivery[:10], "--sent", "https://masto.example/@us/7", env=env
    )
    assert code == 0, err
    assert states(root) == {delivery: "sent"}


def test_retry_of_an_unknown_delivery_explains_and_exits_2(
    make_project: MakeProject, receiver: Receiver
) -> None:
    root = hook_project(
        make_project, receiver, every_minute("tip", ["hook"], "2026-01-01 00:00", 1)
    )
    with open_ledger("sqlite:///state.db", project_dir=root) as ledger:
        from commcal.ledger import DueDelivery

        d = DueDelivery("d" * 32, "main", "tip", "slackish", datetime(2026, 1, 1, tzinfo=UTC))
        now = datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
        c = ledger.claim(d, worker="w", now=now, lease=timedelta(seconds=5), idempotent=False)
        assert c is not None and ledger.begin_send(c, now)
        later = now + timedelta(minutes=1)
        ledger.claim(d, worker="w2", now=later, lease=timedelta(seconds=5), idempotent=False)
        assert ledger.get(d.id).state is State.UNKNOWN  # type: ignore[union-attr]
    code, out, err = cli(root, "retry", "d" * 10)
    assert code == 2, (out, err)
    assert "may have been delivered" in err and "commcal resolve" in err
    code, out, err = cli(root, "retry", "d" * 10, "--force")
    assert code == 0 and "may appear twice" in out


# -- point 11: a dry run that tells the truth, and writes nothing --------------------------------

DRY_CALENDAR = """\
items:
  - id: letter-1
    kind: newsletter
    at: 2026-12-01 08:00
    channels: [newsletter]
    template: news/letter
    audience: members
  - id: idea-1
    kind: newsletter
    draft: true
    at: 2026-12-01 08:00
    channels: [newsletter]
    template: news/letter
    audience: members
  - id: letter-2
    kind: newsletter
    at: 2026-12-01 08:10
    channels: [newsletter]
    template: news/letter
    audience: members
  - id: idea-2
    kind: newsletter
    draft: true
    at: 2026-12-01 08:10
    channels: [newsletter]
    template: news/letter
    audience: members
"""

MEMBER_ENV = {"MEMBER_SECRET": "a-long-random-member-secret-for-tests-0123456789"}


def outcomes(out: str) -> dict[str, list[tuple[str, str]]]:
    found: dict[str, list[tuple[str, str]]] = {}
    for d in json.loads(out)["deliveries"]:
        found.setdefault(d["item"], []).append((d["state"], d["detail"]))
    return {k: sorted(v) for k, v in found.items()}


def test_a_dry_run_answers_what_publish_would_do_and_changes_no_byte(
    make_project: MakeProject,
    smtp: tuple[int, Mailbox],
) -> None:
    port, box = smtp
    root = members_project(make_project, DRY_CALENDAR, LETTER, port)
    code, out, err = cli(
        root, "publish", "--now", "2026-12-01T08:05:00Z", "-f", "json", env=MEMBER_ENV
    )
    assert code == 0, err
    # point 20: a draft's first publish counts each of its deliveries once, as skipped
    assert counts(out) == {"sent": 3, "skipped": 3}
    assert len(box.received) == 3
    code, out, err = cli(root, "suppress", "eleni@example.gr", env=MEMBER_ENV)
    assert code == 0, err

    db = root / "state.db"
    files_before = sorted(p.name for p in root.iterdir())
    bytes_before = db.read_bytes()
    rows_before = dump(db)
    code, out, err = cli(
        root, "publish", "--dry-run", "--now", "2026-12-01T08:15:00Z", "-f", "json", env=MEMBER_ENV
    )
    assert code == 0, err
    assert json.loads(out)["dry_run"] is True
    found = outcomes(out)
    assert [s for s, _ in found["letter-1"]] == ["already"] * 3
    assert all(d.startswith("sent") for _, d in found["letter-1"])
    assert [s for s, _ in found["idea-1"]] == ["already"] * 3
    assert found["letter-2"] == [
        ("would-send", ""),
        ("would-send", ""),
        ("would-skip", "unsubscribed"),
    ]
    assert found["idea-2"] == [("would-skip", "draft: never published")] * 3
    assert len(box.received) == 3
    assert db.read_bytes() == bytes_before
    assert dump(db) == rows_before
    assert sorted(p.name for p in root.iterdir()) == files_before

    # The real run then does exactly that.
    code, out, err = cli(
        root, "publish", "--now", "2026-12-01T08:15:00Z", "-f", "json", env=MEMBER_ENV
    )
    assert code == 0, err
    assert counts(out) == {"sent": 2, "already": 6, "skipped": 4}
    assert len(box.received) == 5


def test_a_dry_run_names_expiries_retries_and_claims_held_by_others(
    make_project: MakeProject, receiver: Receiver
) -> None:
    receiver.behave = lambda request: Answer(503, b'{"error": "later"}', {"Retry-After": "600"})
    root = hook_project(
        make_project,
        receiver,
        every_minute("tip", ["hook"], "2026-01-01 00:00", 2),
        publish="max_late: 1h, retry_delay: 0, lease: 5m, max_attempts: 4",
    )
    code, out, err = cli(root, "publish", "--now", NOW, "-f", "json")
    assert counts(out) == {"pending": 2}, (out, err)
    code, out, err = cli(root, "publish", "--dry-run", "--now", NOW, "-f", "json")
    assert code == 0, err
    assert {(d["state"], d["detail"][:9]) for d in json.loads(out)["deliveries"]} == {
        ("pending", "retry at ")
    }
    code, out, err = cli(
        root, "publish", "--dry-run", "--now", "2026-01-01T03:00:00Z", "-f", "json"
    )
    assert counts(out) == {"would-expire": 2}, out
    # One is claimed by a live worker elsewhere: a real run would leave it alone.
    with open_ledger("sqlite:///state.db", project_dir=root) as ledger:
        from commcal.ledger import DueDelivery

        first, second = sorted(ledger.records(), key=lambda r: r.id)
        assert first.next_attempt_at is not None
        at = first.next_attempt_at
        d = DueDelivery(first.id, first.calendar, first.item, first.channel, first.due_at)
        assert ledger.claim(d, worker="other", now=at, lease=timedelta(minutes=5), idempotent=True)
    later = (at + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    code, out, err = cli(root, "publish", "--dry-run", "--now", later, "-f", "json")
    assert code == 0, err
    by_id = {d["id"]: (d["state"], d["detail"]) for d in json.loads(out)["deliveries"]}
    assert by_id[first.id][0] == "held" and "other" in by_id[first.id][1]
    assert by_id[second.id] == ("would-send", "")
    # One request in all: the 503's long Retry-After opened the channel's circuit, so the
    # second delivery went back to pending untried, and the dry runs sent nothing.
    assert len(receiver.requests) == 1


# -- point 20: status --workers shows only the living ---------------------------------------------


def test_status_workers_drops_workers_that_have_exited(
    make_project: MakeProject, receiver: Receiver
) -> None:
    root = hook_project(
        make_project, receiver, every_minute("tip", ["hook"], "2026-01-01 00:00", 1)
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-m", "commcal", "-C", str(root), "publish", "--now", NOW],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    import socket

    with open_ledger("sqlite:///state.db", project_dir=root) as ledger:
        assert len(ledger.workers(datetime(2026, 1, 1, tzinfo=UTC))) == 1  # it did beat
        at = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
        ledger.heartbeat("alive", at, host=socket.gethostname(), pid=os.getpid(), info="run")
        ledger.heartbeat("gone", at, host=socket.gethostname(), pid=os.getpid(), info="stopped")
        ledger.heartbeat("far", at - timedelta(hours=1), host="elsewhere", pid=1, info="run")
    code, out, err = cli(root, "status", "--workers", "--now", NOW, "-f", "json")
    assert code == 0, err
    assert [w["name"] for w in json.loads(out)["workers"]] == ["alive"]


def test_run_refuses_at_start_a_new_ledger_in_place_of_the_last_and_another_projects(
    make_project: MakeProject, receiver: Receiver
) -> None:
    """`commcal run` checks the ledger as `publish` does, once, at start: exit 2 with the same
    explanation, instead of starting and failing at every wake-up."""
    from tests.test_publish_processes import command

    root = hook_project(
        make_project, receiver, every_minute("tip", ["hook"], "2026-01-01 00:00", 2)
    )
    code, _, err = cli(root, "publish", "--now", NOW)
    assert code == 0, err
    env = {**os.environ, "HOOK_URL": receiver.url}
    typo = subprocess.run(
        [*command(), "-C", str(root), "run", "--state", "sqlite:///stat.db"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert typo.returncode == 2, typo.stderr
    assert "last published to the ledger sqlite:///state.db" in typo.stderr
    assert "commcal publish --new-ledger" in typo.stderr

    other = hook_project(
        make_project, receiver, every_minute("tip", ["hook"], "2026-01-01 00:00", 2)
    )
    theirs = subprocess.run(
        [*command(), "-C", str(other), "run", "--state", f"sqlite:///{root / 'state.db'}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert theirs.returncode == 2, theirs.stderr
    assert "belongs to project 'project', not to 'project-2'" in theirs.stderr
    assert len(receiver.requests) == 2
