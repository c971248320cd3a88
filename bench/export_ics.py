"""`export ics` of a year of the 1,000-item calendar of bench/plan_year.py, against `plan` of the
same window, in the same run.

Run: .venv/bin/python bench/export_ics.py [--repeat 3] [--profile]

Both sides start from a freshly loaded project (loading is outside the timing) and cover 365
days from 2027-01-01: `plan.plan()` expands, renders and checks every delivery (~50,000);
`export_ics.export_ics()` expands the same deliveries, checks each recurrence rule it writes
against them with dateutil, renders one message per channel group (or per single entry) and
serialises the feed with icalendar. The runs alternate (plan, export, plan, export, ...) and the
fastest CPU time of each counts. The feed is also expanded once with recurring-ical-events and
compared with the plan's instants (not timed), so the ratio is never bought with a wrong feed.

Target: export <= 1.3x plan.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

from plan_year import START, TOKEN_VAR, best, write_project

TARGET = 1.3


def expanded(data: bytes, start: Any, end: Any) -> Counter[tuple[str, str, Any]]:
    import recurring_ical_events
    from icalendar import Calendar

    found: Counter[tuple[str, str, Any]] = Counter()
    for event in recurring_ical_events.of(Calendar.from_ical(data)).between(start, end):
        if str(event["X-COMMCAL-ROLE"]) != "delivery":
            continue
        when = event["DTSTART"].dt.astimezone(UTC)
        for channel in str(event["X-COMMCAL-CHANNELS"]).split(","):
            found[(str(event["X-COMMCAL-ITEM"]), channel, when)] += 1
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest counts")
    parser.add_argument("--profile", action="store_true", help="cProfile one export run")
    args = parser.parse_args()
    os.environ.setdefault(TOKEN_VAR, "bench-token")

    from commcal import plan as planning
    from commcal.export_ics import export_ics
    from commcal.project import load_project

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        write_project(root)
        end = START + timedelta(days=365)
        plan_times: list[float] = []
        export_times: list[float] = []
        planned: list[Any] = []
        data = b""
        for _ in range(args.repeat):
            project = load_project(root)
            ms, planned = best(lambda: planning.plan(project, START, end), 1)  # noqa: B023
            plan_times.append(ms)
            project = load_project(root)
            ms, data = best(lambda: export_ics(project, START, end), 1)  # noqa: B023
            export_times.append(ms)

        want = Counter(
            (f"{p.delivery.calendar}/{p.delivery.item.id}", p.delivery.channel, p.delivery.due)
            for p in planned
        )
        got = expanded(data, START, end)
        assert got == want, f"the feed differs from the plan: {len(got)} vs {len(want)} triples"

        plan_ms, export_ms = min(plan_times), min(export_times)
        events = data.count(b"BEGIN:VEVENT")
        rules = data.count(b"\r\nRRULE:")
        print(
            f"{len(planned)} deliveries in 365 days from {START:%Y-%m-%d}; feed: {events} "
            f"VEVENTs ({rules} with RRULE), {len(data) / 1e6:.1f} MB; fastest of {args.repeat} "
            "interleaved runs, CPU time\n"
        )
        for label, ms, times in (
            ("plan.plan()", plan_ms, plan_times),
            ("export_ics.export_ics()", export_ms, export_times),
        ):
            runs = ", ".join(f"{t:.0f}" for t in times)
            print(f"{label:40} {ms:8.1f} ms   (runs: {runs})")
        ratio = export_ms / plan_ms
        met = ratio <= TARGET
        print(f"\nexport / plan: {ratio:.2f}x  target <= {TARGET}x  {'MET' if met else 'MISSED'}")
        print("feed expanded with recurring-ical-events: equal to the plan's instants")

        if args.profile:
            import cProfile
            import pstats

            project = load_project(root)
            profiler = cProfile.Profile()
            profiler.enable()
            export_ics(project, START, end)
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
