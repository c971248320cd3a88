"""The cron minute: `commcal publish` with nothing due, against a typer hello-world, same run.

    .venv/bin/python bench/cron_minute.py [--items 1000,5000,20000] [--members 100000] [--runs 7]

For each size, a temporary project is generated: `--items` weekly posts (cron at :00, :15, :30
or :45 of every hour, spread over the week, on one console channel; `--per-file` items per
calendar file), and with `--members` a
newsletter to a CSV audience of that many members, due an hour before `now`. The ledger is
filled as cron would have left it: one `commcal publish` at `now` records the last 7 days, and
every row is then set `sent` (the newsletter's member rows are written sent beforehand, with the
ids commcal derives). One untimed `commcal publish` warms up (it builds the cache, if any).

Then, interleaved, `--runs` times each: the typer hello-world and `commcal publish --now NOW`
(a minute with nothing due) as fresh processes with the same python. Printed: median wall
time, median CPU, peak RSS of each side, and the ratio of the medians.

Targets: nothing due <= 1.0x typer hello at every size (flat from 1,000 to 20,000 items); after
a newsletter <= 1.5x and < 100 MB RSS. Exit 0 when met.
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cold_start import CONFIG as COLD_CONFIG
from cold_start import HELLO  # the same typer hello-world as bench/cold_start.py

TARGET = 1.0
TARGET_MEMBERS = 1.5
RSS_TARGET_MB = 100.0
REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 8, 12, 7, tzinfo=UTC)  # a Tuesday, 7 minutes past: nothing due

# bench/cold_start.py's project (one console channel), and a mail channel never contacted.
CONFIG = (
    COLD_CONFIG
    + """\
  mail:
    type: smtp
    host: 127.0.0.1
    port: 9
    from: "Community <hello@example.org>"
"""
)

DAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


def calendar(name: str, first: int, items: int) -> str:
    lines = [f"calendar: {name}", "defaults:", "  channels: [console]", "items:"]
    for n in range(first, first + items):
        minute = 15 * (n % 4)
        hour = (n // 4) % 24
        day = DAYS[(n // 96) % 7]
        lines += [
            f"  - id: tip-{n}",
            "    kind: post",
            "    template: posts/tip",
            f'    schedule: {{cron: "{minute} {hour} * * {day}"}}',
            f"    vars: {{topic: topic {n}}}",
        ]
    return "\n".join(lines) + "\n"


NEWSLETTER = """\
calendar: news
items:
  - id: letter
    kind: newsletter
    title: News
    template: mail/news
    channels: [mail]
    audience: people
    at: {at}
"""


def write_project(root: Path, items: int, members: int, per_file: int) -> None:
    for folder in ("calendars", "templates/posts", "templates/mail", "audiences"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "commcal.yaml").write_text(CONFIG, encoding="utf-8")
    for first in range(0, items, per_file):
        name = f"bench{first // per_file}"
        text = calendar(name, first, min(per_file, items - first))
        (root / "calendars" / f"{name}.yaml").write_text(text, encoding="utf-8")
    (root / "templates" / "posts" / "tip.j2").write_text("Tip: {{ topic }}\n", encoding="utf-8")
    (root / "templates" / "mail" / "news.j2").write_text(
        "{% block subject %}News for {{ member.name }}{% endblock %}\n"
        "{% block text %}Hello {{ member.name }}{% endblock %}\n",
        encoding="utf-8",
    )
    if members:
        at = (NOW - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
        (root / "calendars" / "news.yaml").write_text(NEWSLETTER.format(at=at), encoding="utf-8")
        with (root / "audiences" / "people.csv").open("w", encoding="utf-8") as out:
            out.write("email,name\n")
            for n in range(members):
                out.write(f"member{n}@example.org,Member {n}\n")


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "0"}


def commcal(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "commcal", *args]
    # Standard output to a file, not into this process (which must stay small: see helper()).
    with tempfile.TemporaryFile() as out:
        done = subprocess.run(
            cmd, cwd=root, env=env(), stdout=out, stderr=subprocess.PIPE, text=True
        )
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return done


def write_member_rows(root: Path) -> int:
    """The newsletter's member deliveries, recorded `sent` with commcal's own ids."""
    sys.path.insert(0, str(REPO))
    from commcal import plan as planning
    from commcal.ledger import open_ledger
    from commcal.ledger.db import utc_text
    from commcal.project import load_project

    project = load_project(root)
    assert not project.errors, project.errors
    news = planning.Filters(items=("letter",))
    at = NOW - timedelta(hours=1)
    with open_ledger("sqlite:///.commcal/state.db", project_dir=root):
        pass  # creates the ledger and its tables
    rows = []
    stamp = utc_text(at)
    for d in planning.deliveries(project, at, at + timedelta(seconds=1), news, members=True):
        key = d.recipient.key if d.recipient else ""
        rows.append((d.id, d.calendar, d.item.id, d.channel, key, utc_text(d.due), stamp, stamp))
    db = sqlite3.connect(root / ".commcal" / "state.db")
    with db:
        db.executemany(
            "INSERT INTO deliveries (id, calendar, item, channel, recipient, due_at, state, "
            "attempts, url, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'sent', 1, "
            "'smtp:queued', ?, ?)",
            rows,
        )
    db.close()
    return len(rows)


def all_sent(root: Path) -> int:
    db = sqlite3.connect(root / ".commcal" / "state.db")
    with db:
        db.execute("UPDATE deliveries SET state = 'sent', last_error = NULL")
        (count,) = db.execute("SELECT count(*) FROM deliveries").fetchone()
    db.close()
    return int(count)


def helper(option: str, root: Path) -> str:
    """This script's own setup steps, in a child: a forked child's peak RSS counts its parent's
    pages, so the measuring process must stay small (no audience, no SQLite cache in it)."""
    done = subprocess.run(
        [sys.executable, __file__, option, str(root)],
        env=env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def run_one(cmd: list[str], cwd: Path) -> tuple[float, float, float, str]:
    """(wall ms, CPU ms, peak RSS MB, stdout): fork, exec, wait4 for this child's own usage."""
    read_out, write_out = os.pipe()
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child
        os.chdir(cwd)
        os.dup2(write_out, 1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(read_out)
        os.execve(cmd[0], cmd, env())
    os.close(write_out)
    chunks = []
    while chunk := os.read(read_out, 65536):
        chunks.append(chunk)
    os.close(read_out)
    _, status, usage = os.wait4(pid, 0)
    wall = (time.perf_counter() - start) * 1000
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {os.waitstatus_to_exitcode(status)}")
    cpu = (usage.ru_utime + usage.ru_stime) * 1000
    return wall, cpu, usage.ru_maxrss / 1024, b"".join(chunks).decode()


def measure(root: Path, hello: Path, runs: int) -> tuple[list[tuple[float, float, float]], ...]:
    base: list[tuple[float, float, float]] = []
    ours: list[tuple[float, float, float]] = []
    publish = [sys.executable, "-m", "commcal", "publish", "--now", NOW.isoformat()]
    for _ in range(runs):
        wall, cpu, rss, _ = run_one([sys.executable, str(hello)], root)
        base.append((wall, cpu, rss))
        wall, cpu, rss, out = run_one(publish, root)
        if not re.fullmatch(r"(nothing due|\d+ already)\n", out):
            raise SystemExit(f"publish had something to do:\n{out[-2000:]}")
        ours.append((wall, cpu, rss))
    return base, ours


def med(rows: list[tuple[float, float, float]], i: int) -> float:
    return statistics.median(r[i] for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", default="1000,5000,20000")
    parser.add_argument("--members", type=int, default=0)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--per-file",
        type=int,
        default=2000,
        help="items per calendar file (main refused 15,400+ plain items in one file)",
    )
    parser.add_argument("--write-member-rows", metavar="ROOT", help=argparse.SUPPRESS)
    parser.add_argument("--mark-sent", metavar="ROOT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_member_rows:
        print(write_member_rows(Path(args.write_member_rows)))
        return 0
    if args.mark_sent:
        print(all_sent(Path(args.mark_sent)))
        return 0
    sizes = [int(s) for s in args.items.split(",")]
    target = TARGET_MEMBERS if args.members else TARGET
    print(f"python {sys.version.split()[0]}, {args.runs} interleaved runs each; now {NOW:%c} UTC")
    sys.stdout.flush()
    met = True
    with tempfile.TemporaryDirectory() as tmp:
        hello = Path(tmp) / "hello.py"
        hello.write_text(HELLO, encoding="utf-8")
        for items in sizes:
            root = Path(tmp) / f"p{items}"
            write_project(root, items, args.members, args.per_file)
            members = int(helper("--write-member-rows", root)) if args.members else 0
            first = commcal(
                root, "publish", "--now", NOW.isoformat(), "--format", "json", check=False
            )
            if first.returncode not in (0, 1):
                raise SystemExit(f"the first publish exited {first.returncode}:\n{first.stderr}")
            rows = int(helper("--mark-sent", root))
            commcal(root, "publish", "--now", NOW.isoformat())  # warm-up (builds any cache)
            base, ours = measure(root, hello, args.runs)
            ratio = med(ours, 0) / med(base, 0)
            rss = max(r[2] for r in ours)
            ok = ratio <= target and (not args.members or rss < RSS_TARGET_MB)
            met = met and ok
            print(
                f"{items:6} items, {members:6} member rows, {rows:7} ledger rows: "
                f"hello {med(base, 0):6.1f} ms (CPU {med(base, 1):6.1f}, {med(base, 2):5.1f} MB)  "
                f"publish {med(ours, 0):7.1f} ms (CPU {med(ours, 1):7.1f}, max {rss:6.1f} MB)  "
                f"{ratio:5.2f}x  {'MET' if ok else 'MISSED'}",
                flush=True,
            )
    print(
        f"target: <= {target}x typer hello"
        + (f", < {RSS_TARGET_MB:.0f} MB" if args.members else "")
    )
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
