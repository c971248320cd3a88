"""Cadence lint over a year of a 1,000-item calendar, against expanding those deliveries.

Run: .venv/bin/python bench/lint_year.py [--repeat 3]

Uses bench/plan_year.py's project (about 50,000 deliveries in 365 days) with every lint rule
switched on (`lint:` appended to its commcal.yaml, `staff:` windows on the calendar), then
times, interleaved: `deliveries()` for the year (the baseline: what lint's input costs to make)
and `lint_findings()` over those deliveries. Target: lint <= 1x the expansion it reads, so
`validate` (which renders every delivery too) is not slowed noticeably.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from plan_year import START, TOKEN_VAR, write_project

TARGET = 1.0
LINT = """
lint:
  max_silence: 2d
  min_spacing: 10m
  max_per_day: 20
  quiet_hours: "22:00-07:00"
  blackout: [2027-05-01]
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from commcal.deliveries import deliveries
    from commcal.lint import lint_findings
    from commcal.project import load_project

    os.environ.setdefault(TOKEN_VAR, "bench-token")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        calendar = write_project(root)
        with (root / "commcal.yaml").open("a", encoding="utf-8") as config:
            config.write(LINT)
        text = calendar.read_text(encoding="utf-8")
        calendar.write_text("staff: [mon-fri 09:00-17:00]\n" + text, encoding="utf-8")
        project = load_project(root)
        assert not project.errors, project.errors[:3]
        end = START + timedelta(days=365)
        expand, lint = [], []
        for _ in range(args.repeat):  # sides interleaved, best of each
            t0 = time.perf_counter()
            planned = deliveries(project, START, end)
            t1 = time.perf_counter()
            found = lint_findings(project, START, end, planned)
            t2 = time.perf_counter()
            expand.append(t1 - t0)
            lint.append(t2 - t1)
    ratio = min(lint) / min(expand)
    print(f"deliveries: {len(planned):,}; findings: {len(found):,}")
    print(f"expand (baseline): {min(expand) * 1000:.0f} ms")
    print(f"lint_findings:     {min(lint) * 1000:.0f} ms  ({ratio:.2f}x the expansion)")
    print(f"target <= {TARGET}x: {'met' if ratio <= TARGET else 'NOT met'}")
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
