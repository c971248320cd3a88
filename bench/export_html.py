"""`commcal export html` of a year of the 1,000-item calendar against `plan` of the same window.

Run: .venv/bin/python bench/export_html.py [--repeat 3] [--profile]

The project is bench/plan_year.py's (1,000 items, about 50,000 deliveries in 365 days). The two
sides, each from a fresh `load_project()` (template compilation counted on both):

* plan: `check.plan(project, start, start + 365 days)`: expand, render, check every delivery
  (what `commcal plan` computes before formatting it);
* export: `export_html.build_page(...)` for the same window: the same plan, then the month
  grids, dialogs, .ics invitations and the page's HTML, as one string.

Times are CPU time (`time.process_time`), sides interleaved, fastest of `--repeat` each.
Target: export <= 1.3x plan.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plan_year import ITEMS, START, TOKEN_VAR, write_project

TARGET = 1.3


def timed(func: Any) -> tuple[float, Any]:
    start = time.process_time()
    result = func()
    return (time.process_time() - start) * 1000, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest counts")
    parser.add_argument("--profile", action="store_true", help="cProfile one build_page() run")
    args = parser.parse_args()
    os.environ.setdefault(TOKEN_VAR, "bench-token")

    from commcal.check import plan
    from commcal.export_html import build_page
    from commcal.project import load_project

    end = START + timedelta(days=365)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        write_project(root)

        def run_plan() -> int:
            return len(plan(load_project(root), START, end))

        def run_export() -> int:
            page = build_page(load_project(root), START, end, locale="en", now=START)
            return len(page.html)

        plan_times: list[float] = []
        export_times: list[float] = []
        deliveries = size = 0
        for _ in range(args.repeat):
            ms, deliveries = timed(run_plan)
            plan_times.append(ms)
            ms, size = timed(run_export)
            export_times.append(ms)
        plan_ms, export_ms = min(plan_times), min(export_times)
        ratio = export_ms / plan_ms
        print(
            f"calendar: {ITEMS} items; {deliveries} deliveries in 365 days from "
            f"{START:%Y-%m-%d}; fastest of {args.repeat} interleaved runs, CPU time\n"
        )
        print(f"{'plan (load_project + check.plan)':40} {plan_ms:8.1f} ms")
        print(f"{'export html (load_project + build_page)':40} {export_ms:8.1f} ms")
        print(f"{'page size':40} {size / 1e6:8.1f} MB")
        runs = ", ".join(f"{e / p:.2f}x" for p, e in zip(plan_times, export_times, strict=True))
        print(f"each run's ratio: {runs}")
        met = ratio <= TARGET
        print(
            f"\nexport html / plan: {ratio:.2f}x  target <= {TARGET}x  {'MET' if met else 'MISSED'}"
        )

        if args.profile:
            import cProfile
            import pstats

            project = load_project(root)
            planned = plan(project, START, end)
            profiler = cProfile.Profile()
            profiler.enable()
            build_page(project, START, end, locale="en", now=START, planned=planned)
            profiler.disable()
            print("\nbuild_page() after the plan (the page's own share):")
            pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
