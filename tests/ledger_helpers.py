"""A ledger worker run as a separate process by tests/test_ledger.py.

python tests/ledger_helpers.py race URL WORKER COUNT START_AT MODE
    claim + begin_send + record_sent deliveries d000000..d{COUNT-1}, starting at the epoch
    time START_AT (so all workers begin together); MODE "one" claims one at a time in a
    shuffled order, "many" uses claim_many in small batches. Prints a JSON summary.

python tests/ledger_helpers.py die-sending URL DELIVERY_ID
    claims the delivery, begins sending, and SIGKILLs itself: a worker dying mid-send.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from datetime import UTC, datetime, timedelta

from commcal.ledger import DueDelivery, open_ledger

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def delivery(i: int) -> DueDelivery:
    return DueDelivery(
        id=f"d{i:06d}", calendar="news", item=f"item-{i}", channel="console", due_at=T0
    )


def race(url: str, worker: str, count: int, start_at: float, mode: str) -> dict[str, object]:
    ledger = open_ledger(url)
    deliveries = [delivery(i) for i in range(count)]
    random.Random(worker).shuffle(deliveries)
    time.sleep(max(0.0, start_at - time.time()))
    sent: list[str] = []
    if mode == "many":
        for start in range(0, count, 25):
            batch = deliveries[start : start + 25]
            for claim in ledger.claim_many(
                batch, worker=worker, now=T0, lease=LEASE, idempotent=False
            ):
                if ledger.begin_send(claim, T0):
                    ledger.record_sent(claim, remote_id=worker, url=None, now=T0)
                    sent.append(claim.delivery_id)
    else:
        for d in deliveries:
            c = ledger.claim(d, worker=worker, now=T0, lease=LEASE, idempotent=False)
            if c is not None and ledger.begin_send(c, T0):
                ledger.record_sent(c, remote_id=worker, url=None, now=T0)
                sent.append(c.delivery_id)
    ledger.close()
    return {"worker": worker, "sent": sent}


def die_sending(url: str, delivery_id: str) -> None:
    ledger = open_ledger(url)
    d = DueDelivery(id=delivery_id, calendar="news", item="x", channel="console", due_at=T0)
    claim = ledger.claim(d, worker="doomed", now=T0, lease=LEASE, idempotent=False)
    assert claim is not None and ledger.begin_send(claim, T0)
    os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    if argv[0] == "race":
        _, url, worker, count, start_at, mode = argv
        print(json.dumps(race(url, worker, int(count), float(start_at), mode)))
    elif argv[0] == "die-sending":
        die_sending(argv[1], argv[2])
    else:
        raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
