"""An SMTP newsletter to 10,000 members: `commcal publish` against bare smtplib and mailmerge.

    .venv/bin/python bench/smtp_throughput.py [--members 10000] [--repeat 2] [--no-pipelining]
                                              [--code DIR]

A local aiosmtpd relay (a child process) accepts every mail and counts it; it advertises ESMTP
PIPELINING (RFC 2920) as providers' relays do (`--no-pipelining`: it does not). Three sides do
the same work, one personalised mail (subject, text and HTML with the member's name) to each
member of a generated CSV audience, each as a child process timed from start to exit:

* baseline: a bare loop over one smtplib connection, an `email.message.EmailMessage` per member
  (`smtp.send_message`), no ledger, no template engine;
* mailmerge: pypi mailmerge 2.3.0 (`mailmerge --no-dry-run --no-limit`), installed into its
  own virtualenv under `$XDG_CACHE_HOME/commcal-bench/` (made on the first run; not a project
  dependency);
* commcal: `commcal publish` of a project with an `smtp` channel, a fresh SQLite ledger each
  run, members.secret and a signed unsubscribe link per member.

The sides are interleaved (baseline, mailmerge, commcal, baseline, ...) and the fastest run of
each counts. Every run's mail count is checked against the relay's. `--code DIR`: the commcal
package to run (e.g. an export of main's, for a before/after comparison); default this tree.
Targets: commcal at least 1.5x the baseline and 1.3x mailmerge (ratio = their time /
commcal's). Exit 0 when both are met.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from audience import CALENDAR  # noqa: E402  (the same newsletter item)

TARGET_BARE = 1.5
TARGET_MAILMERGE = 1.3
NOW = "2027-03-02T07:00:30Z"

RELAY = """\
import asyncio, sys
from aiosmtpd.controller import Controller

class Accept:
    count = 0
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if PIPELINING:
            responses.insert(-1, "250-PIPELINING")
        return responses
    async def handle_DATA(self, server, session, envelope):
        Accept.count += 1
        return "250 OK queued"

PIPELINING = sys.argv[2] == "1"
handler = Accept()
controller = Controller(handler, hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
sys.stdout.write("ready\\n"); sys.stdout.flush()
for line in sys.stdin:  # "count" -> how many mails so far
    sys.stdout.write(f"{Accept.count}\\n"); sys.stdout.flush()
controller.stop()
"""

BARE = """\
import csv, smtplib, sys
from email.message import EmailMessage

port, database = int(sys.argv[1]), sys.argv[2]
with smtplib.SMTP("127.0.0.1", port) as smtp, open(database, encoding="utf-8") as handle:
    for row in csv.DictReader(handle):
        mail = EmailMessage()
        mail["Subject"] = f"Our Community #42: Spring clean-up day, {row['name']}"
        mail["From"] = "Community <hello@example.org>"
        mail["To"] = f"{row['name']} <{row['email']}>"
        mail.set_content(
            f"Hello {row['name']},\\n\\nSpring clean-up day on 2 March 2027.\\n"
            "Read more: https://example.org/news\\n"
            "Unsubscribe: https://example.org/unsubscribe\\n"
        )
        mail.add_alternative(
            f"<h1>Our Community #42</h1>\\n<p>Hello {row['name']},</p>\\n"
            "<p>Spring clean-up day on 2 March 2027.</p>\\n"
            '<p><a href="https://example.org/news">Read more</a></p>\\n',
            subtype="html",
        )
        smtp.send_message(mail)
"""

MAILMERGE_TEMPLATE = """\
TO: {{name}} <{{email}}>
SUBJECT: Our Community #42: Spring clean-up day, {{name}}
FROM: Community <hello@example.org>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="boundary"

--boundary
Content-Type: text/plain; charset=utf-8

Hello {{name}},

Spring clean-up day on 2 March 2027.
Read more: https://example.org/news
Unsubscribe: https://example.org/unsubscribe

--boundary
Content-Type: text/html; charset=utf-8

<h1>Our Community #42</h1>
<p>Hello {{name}},</p>
<p>Spring clean-up day on 2 March 2027.</p>
<p><a href="https://example.org/news">Read more</a></p>

--boundary--
"""

CONFIG = """\
timezone: Europe/Athens
locale: en
members:
  secret: ${{BENCH_MEMBER_SECRET}}
  unsubscribe_url: https://example.org/unsubscribe
channels:
  mail:
    type: smtp
    host: 127.0.0.1
    port: {port}
    security: none
    from: "Community <hello@example.org>"
"""

TEMPLATES = {
    "mail/news.j2": (
        "{% block subject %}Our Community #{{ issue }}: {{ topic }}, {{ member.name }}"
        "{% endblock %}\n"
        "{% block text %}\n"
        "Hello {{ member.name }},\n\n"
        "{{ topic }} on {{ at | date }}.\n"
        "Read more: https://example.org/news\n"
        "Unsubscribe: {{ unsubscribe_url }}\n"
        "{% endblock %}\n"
    ),
    "mail/news.html.j2": (
        "<h1>Our Community #{{ issue }}</h1>\n"
        "<p>Hello {{ member.name }},</p>\n"
        "<p>{{ topic }} on {{ at | date }}.</p>\n"
        '<p><a href="https://example.org/news">Read more</a></p>\n'
    ),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Relay:
    def __init__(self, pipelining: bool) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RELAY, str(self.port), "1" if pipelining else "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def count(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def mailmerge_bin() -> Path:
    """mailmerge 2.3.0 in a virtualenv of its own, made on the first run."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "commcal-bench"
    venv = cache / "mailmerge-2.3.0"
    exe = venv / "bin" / "mailmerge"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "mailmerge==2.3.0"], check=True)
    return exe


def write_audience(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["email", "name"])
        for n in range(count):
            out.writerow([f"member{n}@example.org", f"Alex Morgan {n}"])


def write_project(root: Path, port: int, count: int) -> None:
    for folder in ("calendars", "audiences", "templates/mail"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "commcal.yaml").write_text(CONFIG.format(port=port), encoding="utf-8")
    (root / "calendars" / "news.yaml").write_text(CALENDAR, encoding="utf-8")
    for name, text in TEMPLATES.items():
        (root / "templates" / name).write_text(text, encoding="utf-8")
    write_audience(root / "audiences" / "people.csv", count)


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    began = time.perf_counter()
    done = subprocess.run(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    took = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"{cmd[:3]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--no-pipelining", action="store_true")
    parser.add_argument("--code", type=Path, default=ROOT, help="folder holding commcal/")
    args = parser.parse_args()
    mailmerge = mailmerge_bin()
    relay = Relay(pipelining=not args.no_pipelining)
    env = {**os.environ, "PYTHONPATH": str(args.code), "BENCH_MEMBER_SECRET": "s" * 32}
    best: dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="commcal-smtp-bench-") as tmp:
            work = Path(tmp)
            project = work / "project"
            write_project(project, relay.port, args.members)
            database = project / "audiences" / "people.csv"
            (work / "template.txt").write_text(MAILMERGE_TEMPLATE, encoding="utf-8")
            (work / "server.conf").write_text(
                f"[smtp_server]\nhost = 127.0.0.1\nport = {relay.port}\nsecurity = Never\n",
                encoding="utf-8",
            )
            sides = {
                "bare smtplib loop": [sys.executable, "-c", BARE, str(relay.port), str(database)],
                "mailmerge 2.3.0": [
                    str(mailmerge),
                    "--no-dry-run",
                    "--no-limit",
                    "--output-format",
                    "raw",
                    "--template",
                    str(work / "template.txt"),
                    "--database",
                    str(database),
                    "--config",
                    str(work / "server.conf"),
                ],
            }
            for run in range(args.repeat):
                for name, cmd in sides.items():
                    before = relay.count()
                    took = timed(cmd, work, env)
                    assert relay.count() - before == args.members, name
                    best[name] = min(best.get(name, took), took)
                    print(f"run {run + 1}: {name}: {took:.2f} s", flush=True)
                state = work / f"ledger-{run}.db"
                shutil.rmtree(project / ".commcal", ignore_errors=True)  # a new ledger each run
                before = relay.count()
                cmd = [
                    sys.executable,
                    "-m",
                    "commcal",
                    "publish",
                    "--now",
                    NOW,
                    "--state",
                    f"sqlite:///{state}",
                ]
                took = timed(cmd, project, env)
                sent = relay.count() - before
                assert sent == args.members, f"commcal sent {sent} of {args.members}"
                best["commcal"] = min(best.get("commcal", took), took)
                print(f"run {run + 1}: commcal: {took:.2f} s", flush=True)
    finally:
        relay.close()
    ours = best["commcal"]
    bare = best["bare smtplib loop"] / ours
    merge = best["mailmerge 2.3.0"] / ours
    pipelining = "off" if args.no_pipelining else "on"
    print(f"\n{args.members} mails, relay PIPELINING {pipelining}, fastest of {args.repeat}:")
    for name, took in best.items():
        print(f"  {name:18} {took:7.2f} s  {args.members / took:7.0f} mails/s")
    print(f"commcal vs bare smtplib loop: {bare:.2f}x (target >= {TARGET_BARE}x)")
    print(f"commcal vs mailmerge:         {merge:.2f}x (target >= {TARGET_MAILMERGE}x)")
    return 0 if bare >= TARGET_BARE and merge >= TARGET_MAILMERGE else 1


if __name__ == "__main__":
    sys.exit(main())
