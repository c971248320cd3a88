"""A 50,000-member newsletter: per-member messages through the library against bare Jinja.

    .venv/bin/python bench/audience.py [--members 50000] [--repeat 2] [--profile]

Generates a temporary project: an `smtp` channel (never contacted: nothing is sent), a CSV
audience of `--members` people in the en, el and sw locales with their own time zones, and one
newsletter item whose template has a subject block, a text block and an HTML part, using
`member.*`, the `date`/`datetime` filters, `utm` and the signed `unsubscribe_url`. Then times,
in CPU time (the fastest of `--repeat` runs):

* commcal: `plan.deliveries(project, start, end, members=True)` (streams the CSV, one delivery
  per member), then `plan.message_for(project, d)` for each, keeping no Message;
* the baseline: a plain `jinja2.Environment` with the same filters, templates compiled once,
  rendering the same two templates with the exact variables commcal used, once per member.

Peak memory is measured in a child process that runs only the commcal part, without
tracemalloc (which slows Python and adds its own overhead): `ru_maxrss` of that child.

Targets: commcal <= 1.5x bare Jinja; peak RSS < 300 MB. Exit 0 when both are met.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

TARGET = 1.5
RSS_TARGET_MB = 300.0
START = datetime(2027, 3, 1, tzinfo=UTC)
END = START + timedelta(days=7)
SECRET_VAR = "BENCH_MEMBER_SECRET"

CONFIG = f"""\
timezone: Europe/Athens
locale: en
vars:
  brand: Our Community
  site: https://example.org/news
members:
  secret: ${{{SECRET_VAR}}}
  unsubscribe_url: https://example.org/unsubscribe
channels:
  mail:
    type: smtp
    host: smtp.example.org
    from: "Community <hello@example.org>"
"""

CALENDAR = """\
calendar: news
items:
  - id: march
    kind: newsletter
    title: March news
    template: mail/news
    channels: [mail]
    audience: people
    at: 2027-03-02 09:00
    vars: {issue: 42, topic: "Spring clean-up day"}
"""

TEMPLATES = {
    "mail/news.j2": (
        "{% block subject %}{{ brand }} #{{ issue }}: {{ topic }}, {{ member.first_name }}"
        "{% endblock %}\n"
        "{% block text %}\n"
        "Hello {{ member.name }},\n\n"
        "{{ topic }} on {{ at | date }} ({{ at | datetime('short') }}).\n"
        "{% if member.tier == 'gold' %}Thank you for your {{ member.points }} points!\n{% endif %}"
        "Read more: {{ site | utm }}\n"
        "Unsubscribe: {{ unsubscribe_url }}\n"
        "{% endblock %}\n"
    ),
    "mail/news.html.j2": (
        "<h1>{{ brand }} #{{ issue }}</h1>\n"
        "<p>Hello {{ member.name }},</p>\n"
        "<p>{{ topic }} on {{ at | date }}.</p>\n"
        "{% if member.tags %}<p>{{ member.tags | join(', ') }}</p>{% endif %}\n"
        '<p><a href="{{ site | utm }}">Read more</a> · '
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a></p>\n'
    ),
}

LOCALES = (
    ("en", "Europe/London", "Alex Morgan"),
    ("el", "Europe/Athens", "Ελένη Παπαδοπούλου"),
    ("sw", "Africa/Nairobi", "Juma Mwangi"),
)


def write_project(root: Path, count: int) -> None:
    for folder in ("calendars", "audiences", "templates/mail"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "commcal.yaml").write_text(CONFIG, encoding="utf-8")
    (root / "calendars" / "news.yaml").write_text(CALENDAR, encoding="utf-8")
    for name, text in TEMPLATES.items():
        (root / "templates" / name).write_text(text, encoding="utf-8")
    with (root / "audiences" / "people.csv").open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["email", "name", "locale", "timezone", "tier", "points", "tags", "city"])
        for n in range(count):
            locale, tz, name = LOCALES[n % 3]
            out.writerow(
                [
                    f"member{n}@example.org",
                    f"{name} {n}",
                    locale,
                    tz,
                    ("gold", "silver", "")[n % 3 if n % 2 else 2],
                    n % 500,
                    "volunteer|donor" if n % 4 == 0 else "",
                    "Athens",
                ]
            )


def run_commcal(root: Path) -> int:
    """Expand and render every member's message; keep none of them. Returns the count."""
    from commcal import plan as planning
    from commcal.project import load_project

    project = load_project(root)
    assert not project.errors, project.errors
    done = 0
    for delivery in planning.deliveries(project, START, END, members=True):
        message = planning.message_for(project, delivery)
        done += bool(message.text)
    return done


def best(func: Any, repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.process_time()
        result = func()
        times.append((time.process_time() - start) * 1000)
    return min(times), result


def child(root: Path) -> int:
    """`--child ROOT`: the commcal part alone, then its peak RSS as JSON on stdout."""
    import resource

    started = time.process_time()
    done = run_commcal(root)
    cpu = (time.process_time() - started) * 1000
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(json.dumps({"messages": done, "cpu_ms": cpu, "max_rss_mb": peak}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each; the fastest counts")
    parser.add_argument("--profile", action="store_true", help="cProfile one commcal run")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault(SECRET_VAR, "bench-secret-not-for-production")
    if args.child:
        return child(args.child)

    import jinja2

    from commcal import plan as planning
    from commcal import render
    from commcal.project import load_project

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "project"
        write_project(root, args.members)

        done = run_commcal(root)  # a warm-up, and the count to check
        assert done == args.members, f"{done} messages for {args.members} members"

        # The baseline's jobs: the exact variables commcal rendered with (built untimed), and
        # commcal's own messages for a few members to compare with.
        project = load_project(root)
        calendar = project.calendar("news")
        found = planning.deliveries(project, START, END, members=True)
        contexts = [planning.context(project, calendar, d) for d in found]
        samples = {n: planning.message_for(project, found[n]) for n in (0, 1, 2, len(found) - 1)}
        del found

        def run_bare() -> list[tuple[str, str]]:
            env = jinja2.Environment(
                loader=jinja2.FileSystemLoader(root / "templates"),
                undefined=jinja2.StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
            )
            env.filters.update(render.template_filters())
            html_env = env.overlay(autoescape=True)
            text_t = env.get_template("mail/news.j2")
            html_t = html_env.get_template("mail/news.html.j2")
            out: list[tuple[str, str]] = []
            for ctx in contexts:
                text, html = text_t.render(ctx), html_t.render(ctx)
                out.append((text, html) if len(out) < 3 else ("", ""))  # keep only a few
            return out

        # Interleaved, fastest of each: a slow spell on a shared machine then hits both sides
        # alike (run back to back, the ratio moved from 1.30x to 1.47x with a test suite running).
        commcal_times: list[float] = []
        bare_times: list[float] = []
        bare_out: list[tuple[str, str]] = []
        for _ in range(args.repeat):
            ms, _ = best(lambda: run_commcal(root), 1)
            commcal_times.append(ms)
            ms, bare_out = best(run_bare, 1)
            bare_times.append(ms)
        commcal_ms, bare_ms = min(commcal_times), min(bare_times)
        for n in (0, 1, 2):
            text, html = bare_out[n]
            message = samples[n]
            assert message.subject and message.subject in text, (message.subject, text)
            assert message.text in text and html == message.html, n

        profile_text = ""
        if args.profile:
            import cProfile
            import io
            import pstats

            profiler = cProfile.Profile()
            profiler.runcall(run_commcal, root)
            buffer = io.StringIO()
            stats = pstats.Stats(profiler, stream=buffer).sort_stats("cumulative")
            stats.print_stats(30)
            stats.sort_stats("tottime").print_stats(20)
            profile_text = buffer.getvalue()

        result = subprocess.run(
            [sys.executable, __file__, "--child", str(root)],
            capture_output=True,
            text=True,
            check=True,
        )
        measured = json.loads(result.stdout.strip().splitlines()[-1])

    ratio = commcal_ms / bare_ms
    rss = float(measured["max_rss_mb"])
    met_time, met_rss = ratio <= TARGET, rss < RSS_TARGET_MB
    print(
        f"audience: {args.members} members (en/el/sw), one newsletter, text + subject + HTML; "
        f"fastest of {args.repeat} runs, CPU time\n"
    )
    print(f"{'commcal: deliveries(members=True) + message_for':50} {commcal_ms:9.1f} ms")
    print(f"{'bare Jinja, same templates and variables':50} {bare_ms:9.1f} ms")
    print(f"{'commcal alone in a child process (CPU)':50} {measured['cpu_ms']:9.1f} ms")
    print(f"{'peak RSS of that child (ru_maxrss)':50} {rss:9.1f} MB")
    print()
    print(
        f"commcal / bare Jinja: {ratio:.2f}x  target <= {TARGET}x  "
        f"{'MET' if met_time else 'MISSED'}"
    )
    print(
        f"peak RSS: {rss:.0f} MB  target < {RSS_TARGET_MB:.0f} MB  {'MET' if met_rss else 'MISSED'}"
    )
    if profile_text:
        print()
        print(profile_text)
    return 0 if met_time and met_rss else 1


if __name__ == "__main__":
    sys.exit(main())
