"""Peak memory of a newsletter as its audience grows: `validate`, `plan`, `publish --dry-run` and
`publish` (to a local relay), each a child process, at 10k, 50k and 100k members.

    .venv/bin/python bench/newsletter_memory.py [--members 10000,50000,100000] [--code DIR]

Generates a project like bench/smtp_throughput.py's (an `smtp` channel to a local aiosmtpd
relay that takes every mail, members.secret, a signed unsubscribe link per member) with a CSV
audience of each size, then runs the four commands on it, a fresh SQLite ledger for each
`publish`, and reads each child's peak RSS (`ru_maxrss`, from wait4). `--code DIR`: the commcal
package to run (e.g. an export of main's), for a before/after comparison; default this tree.

Targets: `publish` and `publish --dry-run` under 150 MB at 100,000 members, and flat: the peak at
the largest size within 25% of the smallest's. Exit 0 when met.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smtp_throughput import NOW, ROOT, Relay, write_project

TARGET_MB = 150.0
FLAT = 1.25


def peak_mb(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int]:
    """(peak RSS in MB, seconds, exit code) of one child process."""
    began = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, time.perf_counter() - began, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", default="10000,50000,100000")
    parser.add_argument("--code", type=Path, default=ROOT, help="folder holding commcal/")
    args = parser.parse_args()
    sizes = [int(n) for n in args.members.split(",")]
    env = {**os.environ, "PYTHONPATH": str(args.code), "BENCH_MEMBER_SECRET": "s" * 32}
    relay = Relay(pipelining=True)
    table: dict[str, list[float]] = {}
    commcal = [sys.executable, "-m", "commcal"]
    try:
        with tempfile.TemporaryDirectory(prefix="commcal-memory-bench-") as tmp:
            for size in sizes:
                project = Path(tmp) / f"p{size}"
                write_project(project, relay.port, size)
                state = f"sqlite:///{Path(tmp) / f'ledger-{size}.db'}"
                runs = {
                    "validate": [*commcal, "validate", "--now", NOW],
                    "plan": [*commcal, "plan", "--from", "2027-03-01", "--days", "7"],
                    "publish --dry-run": [
                        *commcal,
                        "publish",
                        "--dry-run",
                        "--now",
                        NOW,
                        "--state",
                        state,
                    ],
                    "publish": [*commcal, "publish", "--now", NOW, "--state", state],
                }
                for name, cmd in runs.items():
                    shutil.rmtree(project / ".commcal", ignore_errors=True)
                    before = relay.count()
                    mb, took, code = peak_mb(cmd, project, env)
                    if name == "publish":
                        sent = relay.count() - before
                        assert sent == size, f"publish sent {sent} of {size} (exit {code})"
                    elif code not in (0, 1):
                        sys.exit(f"{name} failed with exit code {code}")
                    table.setdefault(name, []).append(mb)
                    print(f"{size:>7} members  {name:18} {mb:7.1f} MB  {took:6.1f} s", flush=True)
    finally:
        relay.close()
    print("\npeak RSS (MB) by members:", ", ".join(f"{n:,}" for n in sizes))
    ok = True
    for name, values in table.items():
        flat = values[-1] / values[0]
        print(f"  {name:18} " + "  ".join(f"{v:7.1f}" for v in values) + f"   x{flat:.2f}")
        if name.startswith("publish"):
            ok = ok and values[-1] < TARGET_MB and flat <= FLAT
    print(f"target: publish and --dry-run < {TARGET_MB:.0f} MB and within x{FLAT} of the smallest")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
