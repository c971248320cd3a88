"""What `commcal publish` reports (commcal.publish.results) and how long it waits between
attempts (commcal.publish.retry).

A delivery another worker holds must be counted like every other; the views take their state
order from `OutcomeState`, so no state can fall out of the counts.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from commcal.cli import app
from commcal.ledger import DueDelivery, State, open_ledger
from commcal.publish.results import OutcomeState
from commcal.publish.retry import MAX_RETRY_DELAY, backoff
from tests.conftest import MakeProject
from tests.publish_support import TEMPLATES, Answer, Receiver, config, every_minute, webhook

NOW = "2026-01-01T00:10:00Z"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def cli(root: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["-C", str(root), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_every_ledger_state_is_an_outcome_state() -> None:
    assert {s.value for s in State} <= {s.value for s in OutcomeState}
    assert all(OutcomeState.of(s) == s.value for s in State)


@pytest.mark.parametrize("in_flight", [State.CLAIMED, State.SENDING])
def test_a_delivery_another_worker_holds_is_counted_held(
    make_project: MakeProject, receiver: Receiver, in_flight: State
) -> None:
    """Two due deliveries, one claimed (or being sent) by a live worker elsewhere: the run sends
    the other and counts both, in JSON and in the table summary (it used to say `{"sent": 1}`
    while listing two deliveries)."""
    root = make_project(
        config=config(
            webhook("hook", receiver.url),
            publish="max_late: 1h, retry_delay: 0, lease: 5m, max_attempts: 4",
        ),
        calendars={"main.yaml": every_minute("tip", ["hook"], "2026-01-01 00:00", 2)},
        templates=TEMPLATES,
    )
    code, out, err = cli(root, "plan", "--from", "2026-01-01", "--days", "1", "-f", "json")
    assert code == 0, err
    first, second = (d["id"] for d in json.loads(out)["deliveries"])
    with open_ledger("sqlite:///state.db", project_dir=root) as ledger:
        row = json.loads(out)["deliveries"][0]
        due = DueDelivery(first, row["calendar"], row["item"], row["channel"], utc(row["due_utc"]))
        at = utc(NOW)
        claim = ledger.claim(
            due, worker="other-host:42", now=at, lease=timedelta(minutes=5), idempotent=True
        )
        assert claim is not None
        if in_flight is State.SENDING:
            assert ledger.begin_send(claim, at)
        assert ledger.get(first).state is in_flight  # type: ignore[union-attr]

    code, out, err = cli(root, "publish", "--now", NOW, "-f", "json")
    assert code == 0, (out, err)
    data = json.loads(out)
    assert data["counts"] == {"sent": 1, "held": 1}
    assert sum(data["counts"].values()) == len(data["deliveries"]) == 2
    by_id = {d["id"]: d for d in data["deliveries"]}
    assert by_id[second]["state"] == "sent"
    assert by_id[first]["state"] == "held"
    assert "other-host:42" in by_id[first]["detail"]
    assert len(receiver.requests) == 1

    # The table's summary counts it too (the second delivery is `already` sent by now).
    code, out, err = cli(root, "publish", "--now", NOW)
    assert code == 0, (out, err)
    assert "1 held" in out, out


# -- retry backoff --------------------------------------------------------------------------------


def draws(attempt: int, base: float, retry_after: float | None = None) -> list[float]:
    rng = random.Random(1234)
    return [backoff(attempt, retry_after, base, rng=rng) for _ in range(4000)]


@pytest.mark.parametrize("attempt", [1, 2, 3, 5])
def test_backoff_is_equal_jitter_up_to_a_doubling_ceiling(attempt: int) -> None:
    """Uniform over [ceiling / 2, ceiling], ceiling = retry_delay * 2**(attempt-1): never below
    half (a floor a user can reason with), the mean three quarters of the ceiling, and the draws
    spread over the whole upper half."""
    ceiling = 30.0 * 2 ** (attempt - 1)
    values = draws(attempt, 30.0)
    assert all(ceiling / 2 <= v <= ceiling for v in values)
    assert min(values) < ceiling * 0.51
    assert max(values) > ceiling * 0.99
    assert abs(sum(values) / len(values) - ceiling * 0.75) < ceiling * 0.02
    below_three_quarters = sum(v < ceiling * 0.75 for v in values) / len(values)
    assert 0.46 < below_three_quarters < 0.54


def test_backoff_is_capped_at_an_hour() -> None:
    assert MAX_RETRY_DELAY == 3600.0
    for attempt in (9, 20, 100, 10_000):
        values = draws(attempt, 30.0)
        assert all(MAX_RETRY_DELAY / 2 <= v <= MAX_RETRY_DELAY for v in values)
        assert abs(sum(values) / len(values) - MAX_RETRY_DELAY * 0.75) < MAX_RETRY_DELAY * 0.02
    # A retry_delay set longer than the cap is kept as it is, never cut.
    assert max(draws(3, 7200.0)) <= 7200.0 and max(draws(3, 7200.0)) > 7000.0


def test_backoff_never_comes_before_retry_after() -> None:
    values = draws(1, 30.0, retry_after=20.0)
    assert all(20.0 <= v <= 30.0 for v in values)
    # Draws fall in [15, 30]: the third below 20 waits the server's 20 s instead.
    assert sum(v == 20.0 for v in values) / len(values) == pytest.approx(1 / 3, abs=0.03)
    # A Retry-After beyond the ceiling (and the cap) is what the server asked for.
    assert set(draws(50, 30.0, retry_after=7200.0)) == {7200.0}
    assert set(draws(1, 0.0)) == {0.0}  # retry_delay: 0 retries at once (tests rely on it)


def test_a_long_retry_delay_leaves_every_retry_to_a_later_run_spread_out(
    make_project: MakeProject, receiver: Receiver
) -> None:
    """retry_delay 2m: each of 20 sends answered 503 (no Retry-After) goes back to `pending`,
    none waited for in the run (the ceiling decides, not a lucky short draw), and their retry
    times are spread over the two minutes instead of all at once."""
    receiver.behave = lambda request: Answer(503, b'{"error": "busy"}')
    root = make_project(
        config=config(
            webhook("hook", receiver.url),
            publish="max_late: 1h, retry_delay: 2m, lease: 5m, max_attempts: 4",
        ),
        calendars={"main.yaml": every_minute("tip", ["hook"], "2025-12-31 23:50", 20)},
        templates=TEMPLATES,
    )
    began = time.monotonic()
    code, out, err = cli(root, "publish", "--now", NOW, "-f", "json")
    assert time.monotonic() - began < 30, "a retry was waited for in the run"
    assert code == 0, (out, err)
    assert json.loads(out)["counts"] == {"pending": 20}
    assert len(receiver.requests) == 20
    code, out, err = cli(root, "status", "--format", "json", "--limit", "100")
    assert code == 0, err
    retries = [utc(d["next_attempt_utc"]) for d in json.loads(out)["deliveries"]]
    now = utc(NOW)
    assert all(
        now + timedelta(minutes=1) <= at <= now + timedelta(minutes=2, seconds=30) for at in retries
    )
    assert max(retries) - min(retries) > timedelta(seconds=20), retries
