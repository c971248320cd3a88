"""`commcal report` over 100,000 snapshots, against the equivalent SQL aggregate alone.

Run: .venv/bin/python bench/report.py [--deliveries 10000] [--snapshots-each 10] [--repeat 3]

Builds a SQLite ledger of sent deliveries (20 items of one calendar, two channels) with
`--snapshots-each` snapshots each (every 6 hours after the send) and one reply per 4
deliveries, through the ledger's own methods. Then times, sides interleaved, best of each:

- the SQL aggregate alone (the baseline): in one query, each delivery's first `ok` snapshot at
  least 24 h after its send (as the ledger's `engagement_at` chooses it), counted and
  averaged per item. It does less than the report: no median (SQLite has none), no replies,
  threads, slots or trends.
- `read_report(..., by="item", at=24h)`: everything `commcal report` computes (read every
  snapshot and reply, the deliveries they belong to, engagement at 24 h, medians, threads,
  time to first answer, best slots, trends), without printing.

Target: the report < 2x the SQL aggregate.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

TARGET = 2.0
T0 = datetime(2026, 6, 1, 7, tzinfo=UTC)
ITEMS = 20

CONFIG = """\
timezone: Europe/Athens
state: sqlite:///.commcal/state.db
channels:
  mastodon: {type: console}
  bluesky: {type: console}
"""

# The same choice of snapshot as the ledger's engagement_at (one index seek per delivery), but
# julianday arithmetic and a plain average per item, all inside SQLite.
SQL = """
WITH firsts AS (
  SELECT d.calendar AS calendar, d.item AS item,
    (SELECT s.likes + s.reposts + s.replies + s.quotes FROM snapshots s
     WHERE s.delivery_id = p.delivery_id AND s.status = 'ok'
       AND julianday(s.taken_at) >= julianday(coalesce(p.sent, d.updated_at)) + 1.0
     ORDER BY s.taken_at, s.seq LIMIT 1) AS e
  FROM (SELECT delivery_id, min(sent_at) AS sent FROM snapshots GROUP BY delivery_id) p
  JOIN deliveries d ON d.id = p.delivery_id
)
SELECT calendar, item, count(e), avg(e) FROM firsts GROUP BY calendar, item
"""


def write_project(root: Path) -> None:
    (root / "calendars").mkdir()
    (root / "templates" / "posts").mkdir(parents=True)
    (root / "commcal.yaml").write_text(CONFIG, encoding="utf-8")
    (root / "templates" / "posts" / "tip.j2").write_text("Tip\n", encoding="utf-8")
    items = "".join(
        f"  - id: item-{n}\n    kind: post\n    template: posts/tip\n"
        f'    schedule: {{cron: "0 {8 + n % 12} * * *"}}\n'
        for n in range(ITEMS)
    )
    (root / "calendars" / "main.yaml").write_text(
        "calendar: main\nstaff: [mon-fri 09:00-17:00]\ndefaults: {channels: [mastodon]}\n"
        f"items:\n{items}",
        encoding="utf-8",
    )


def fill(url: str, deliveries: int, each: int) -> int:
    from commcal.engagement.model import Reply, Snapshot
    from commcal.ledger import DueDelivery, open_ledger

    ledger = open_ledger(url)
    lease = timedelta(minutes=5)
    written = 0
    try:
        for start in range(0, deliveries, 500):
            batch = []
            for n in range(start, min(deliveries, start + 500)):
                sent = T0 + timedelta(hours=n)
                channel = "mastodon" if n % 3 else "bluesky"
                batch.append(DueDelivery(f"d{n:07d}", "main", f"item-{n % ITEMS}", channel, sent))
            for d in batch:
                claim = ledger.claim(d, worker="w", now=d.due_at, lease=lease, idempotent=False)
                assert claim is not None and ledger.begin_send(claim, d.due_at)
                ledger.record_sent(claim, remote_id=f"p-{d.id}", url=None, now=d.due_at)
            snaps = [
                Snapshot(
                    d.id,
                    d.channel,
                    f"p-{d.id}",
                    d.due_at + timedelta(hours=6 * k),
                    d.due_at,
                    likes=k * (1 + hash(d.id) % 7),
                    reposts=k % 3,
                )
                for d in batch
                for k in range(1, each + 1)
            ]
            written += ledger.add_snapshots(snaps)
            ledger.add_replies(
                [
                    Reply(
                        f"{d.channel}:r{d.id}",
                        d.id,
                        d.channel,
                        f"r{d.id}",
                        f"p-{d.id}",
                        "@member@example.social",
                        "When does the next #webinar start?",
                        d.due_at + timedelta(hours=3),
                    )
                    for d in batch[::4]
                ]
            )
    finally:
        ledger.close()
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--snapshots-each", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from commcal.ledger import open_ledger
    from commcal.project import load_project
    from commcal.report_cli import read_report

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_project(root)
        url = f"sqlite:///{root / '.commcal' / 'state.db'}"
        t = time.perf_counter()
        count = fill(url, args.deliveries, args.snapshots_each)
        print(
            f"ledger: {args.deliveries:,} deliveries, {count:,} snapshots "
            f"(built in {time.perf_counter() - t:.1f} s)"
        )
        project = load_project(root)
        assert not project.errors, project.errors[:3]
        ledger = open_ledger(url, read_only=True)
        sql_times, report_times = [], []
        try:
            for _ in range(args.repeat):  # sides interleaved, best of each
                t0 = time.perf_counter()
                rows = ledger._transaction(lambda: ledger._execute(SQL), write=False)
                t1 = time.perf_counter()
                report = read_report(project, ledger, "item", timedelta(hours=24))
                t2 = time.perf_counter()
                sql_times.append(t1 - t0)
                report_times.append(t2 - t1)
        finally:
            ledger.close()
    measured_sql = sum(int(r[2]) for r in rows)
    measured = sum(g.measured for g in report.groups)
    assert measured == measured_sql, (measured, measured_sql)  # the same posts were measured
    ratio = min(report_times) / min(sql_times)
    print(f"groups: {len(rows)}; posts measured at 24h: {measured:,}")
    print(f"SQL aggregate (baseline): {min(sql_times) * 1000:.0f} ms")
    print(f"read_report:              {min(report_times) * 1000:.0f} ms  ({ratio:.2f}x the SQL)")
    print(f"target < {TARGET}x: {'met' if ratio < TARGET else 'NOT met'}")
    return 0 if ratio < TARGET else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
