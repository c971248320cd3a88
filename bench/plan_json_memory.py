"""Peak memory of `commcal plan --format json` on a 50,000-item project, against a baseline
process that only loads the same project, in the same run.

Run: .venv/bin/python bench/plan_json_memory.py [--calendars 50] [--repeat 1] [--table]

Generates a temporary project of `--calendars` copies of bench/plan_year.py's 1,000-item
calendar (50 by default: 50,000 items, one file each, since one file of 50,000 items is over
the YAML node limit), then runs, as fresh processes with stdout to /dev/null, interleaved:

* the baseline: `python -c` loading the project (`load_project`) and nothing else;
* `commcal plan --from 2027-01-04 --days 7 --format json` (about 49,000 deliveries);
* the same with `--format jsonl`;
* with `--table`, the same with `--format table` too (for information: rich's table holds
  every row, and takes minutes).

Peak RSS is each child's own `ru_maxrss` (os.wait4). Target: `plan --format json` under 500 MB
(issue 11: it was 1.66 GB on the reporter's 50,000 items). The ratio to the baseline is printed
for information: what planning and writing cost above holding the project.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import plan_year  # the calendar generator, beside this script

TARGET_MB = 500
WINDOW = ("--from", "2027-01-04", "--days", "7")


def write_project(root: Path, calendars: int) -> int:
    """The project; returns how many items it has."""
    plan_year.write_project(root)
    text = plan_year.calendar_yaml()
    (root / "calendars" / "big.yaml").unlink()
    for n in range(calendars):
        name = f"c{n:03d}"
        (root / "calendars" / f"{name}.yaml").write_text(
            text.replace("calendar: big", f"calendar: {name}"), encoding="utf-8"
        )
    return calendars * plan_year.ITEMS


def peak(args: list[str], env: dict[str, str], cwd: str) -> tuple[float, float, int]:
    """Peak RSS in MB, wall seconds and the exit code of one child, stdout to /dev/null. `cwd`
    away from a checkout: `python -m` puts the folder it runs in first on sys.path, so the
    commcal measured is the one PYTHONPATH (or the environment) names."""
    start = time.monotonic()
    with open(os.devnull, "w") as sink, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, stdout=sink, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        if code not in (0, 1):
            err.seek(0)
            sys.stderr.write(err.read().decode(errors="replace")[-2000:])
    return usage.ru_maxrss / 1024, time.monotonic() - start, code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calendars", type=int, default=50, help="1,000-item calendars")
    parser.add_argument("--repeat", type=int, default=1, help="rounds; the lowest peak counts")
    parser.add_argument("--table", action="store_true", help="also --format table (slow)")
    args = parser.parse_args()
    env = {**os.environ, plan_year.TOKEN_VAR: "bench-token"}

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        items = write_project(root, args.calendars)
        commcal = [sys.executable, "-m", "commcal", "-C", str(root), "plan", *WINDOW]
        sides = {
            "baseline: python loading the project": [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path; from commcal.project import "
                "load_project; p = load_project(Path(sys.argv[1])); assert not p.errors",
                str(root),
            ],
            "commcal plan --format json": [*commcal, "--format", "json"],
            "commcal plan --format jsonl": [*commcal, "--format", "jsonl"],
        }
        if args.table:
            sides["commcal plan --format table"] = [*commcal, "--format", "table"]
        found: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
        for _ in range(args.repeat):
            for name, command in sides.items():  # interleaved: a busy spell hits every side
                mb, seconds, code = peak(command, env, tmp)
                if code not in (0, 1):  # e.g. jsonl on a commcal before it had it
                    print(f"{name}: exit {code}, left out", file=sys.stderr)
                    continue
                found[name].append((mb, seconds))

        # The size of the document, once (not measured).
        with tempfile.TemporaryFile() as out:
            subprocess.run(
                [*commcal, "--format", "json"], stdout=out, env=env, cwd=tmp, check=False
            )
            size = out.tell()

    print(
        f"project: {args.calendars} calendars x {plan_year.ITEMS} items = {items:,} items; "
        f"plan {' '.join(WINDOW)}: {size / 1e6:.1f} MB of JSON; lowest of {args.repeat}\n"
    )
    base = min(mb for mb, _ in found["baseline: python loading the project"])
    for name, runs in found.items():
        if not runs:
            continue
        mb = min(m for m, _ in runs)
        seconds = min(s for _, s in runs)
        print(f"{name:40} peak RSS {mb:7.1f} MB  {mb / base:5.2f}x baseline  {seconds:6.1f} s")
    json_mb = min(m for m, _ in found["commcal plan --format json"])
    met = json_mb < TARGET_MB
    print(
        f"\nplan --format json: {json_mb:.0f} MB  target < {TARGET_MB} MB  "
        f"{'MET' if met else 'MISSED'}"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
