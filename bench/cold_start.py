"""Cold start: `commcal --version` as a fresh process against a typer hello-world, in the same run.

Run: .venv/bin/python bench/cold_start.py [--runs 20]

Target: commcal --version <= 1.5x the typer hello-world (DESIGN.md "Speed notes": cron runs
`commcal publish` every minute, so start-up must cost little more than the interpreter and typer).
Also times `commcal publish --dry-run` with nothing due on a tiny project, for information.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1.5

HELLO = """\
import typer

app = typer.Typer()


@app.command()
def main(name: str = "world") -> None:
    typer.echo(f"hello {name}")


if __name__ == "__main__":
    app()
"""

CONFIG = """\
timezone: UTC
locale: en
state: sqlite:///.commcal/state.db
channels:
  console:
    type: console
"""

CALENDAR = """\
calendar: tiny
defaults:
  channels: [console]
items:
  - id: weekly-tip
    kind: post
    template: posts/tip
    schedule: {cron: "0 9 * * MON"}
"""


def commcal_exe() -> str:
    here = Path(sys.executable).parent / "commcal"
    return str(here) if here.exists() else (shutil.which("commcal") or "commcal")


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_runs(cmd: list[str], runs: int, cwd: str | None = None) -> list[tuple[float, float]]:
    """(wall ms, CPU ms) of each run of `cmd` as a fresh process; the warm-up run is dropped."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0"}
    times = []
    for i in range(runs + 1):
        cpu = _child_cpu()
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
        elapsed = (time.perf_counter() - start) * 1000
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr}")
        if i:
            times.append((elapsed, (_child_cpu() - cpu) * 1000))
    return times


def show(label: str, times: list[tuple[float, float]]) -> tuple[float, float]:
    """Print min/median wall and median CPU; return (median wall, median CPU)."""
    wall = [w for w, _ in times]
    cpu = statistics.median(c for _, c in times)
    mid = statistics.median(wall)
    print(f"{label:40} wall min {min(wall):6.1f}  median {mid:6.1f} ms   CPU median {cpu:6.1f} ms")
    return mid, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    exe = commcal_exe()
    with tempfile.TemporaryDirectory() as tmp:
        hello = Path(tmp) / "hello.py"
        hello.write_text(HELLO, encoding="utf-8")
        project = Path(tmp) / "project"
        (project / "calendars").mkdir(parents=True)
        (project / "templates" / "posts").mkdir(parents=True)
        (project / "commcal.yaml").write_text(CONFIG, encoding="utf-8")
        (project / "calendars" / "tiny.yaml").write_text(CALENDAR, encoding="utf-8")
        (project / "templates" / "posts" / "tip.j2").write_text("Tip: {{ item.id }}\n")
        # Tuesday noon: the Monday 09:00 delivery is long past max_late, nothing is due.
        now = "2026-12-08T12:00:00Z"

        print(f"python {sys.version.split()[0]}, {args.runs} runs each (after one warm-up)\n")
        show("python -c pass", time_runs([sys.executable, "-c", "pass"], args.runs))
        base = show("typer hello-world", time_runs([sys.executable, str(hello)], args.runs))
        version = show("commcal --version", time_runs([exe, "--version"], args.runs))
        publish_cmd = [exe, "publish", "--dry-run", "--now", now]
        publish = show(
            "commcal publish --dry-run (nothing due)",
            time_runs(publish_cmd, args.runs, cwd=str(project)),
        )
    ratio = version[0] / base[0]
    met = ratio <= TARGET
    print()
    print(
        f"commcal --version / typer hello-world (median wall): {ratio:.2f}x "
        f"(CPU {version[1] / base[1]:.2f}x)  target <= {TARGET}x  {'MET' if met else 'MISSED'}"
    )
    print(
        f"commcal publish --dry-run / typer hello-world (median wall): {publish[0] / base[0]:.2f}x "
        f"(CPU {publish[1] / base[1]:.2f}x)  (information)"
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
