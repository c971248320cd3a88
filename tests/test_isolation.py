"""One fault never silences everything (issue 15, point 10): an item with errors, a broken calendar
file, a short code pool or a missing member secret stops only what it is about; every other
delivery goes out on time, and the problem is reported with file:line (exit 1). Errors in
commcal.yaml still stop everything (exit 2).

Through the real `commcal` process (publish, run) and typer's CliRunner, against a loopback
webhook receiver and an aiosmtpd mailbox.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

from typer.testing import CliRunner

from commcal.cli import app
from tests.conftest import MakeProject
from tests.publish_support import Receiver
from tests.test_community import ENV, Mailbox, config, free_port, offer_project
from tests.test_publish_processes import command
from tests.test_scheduler import LogReader, stop, wait_until, whole_second, z

HOOK_CONFIG = """\
timezone: UTC
locale: en
state: sqlite:///.commcal/state.db
channels:
  hook:
    type: webhook
    url: ${HOOK_URL}
"""

TEMPLATES = {"posts/say.j2": "{{ item.id }} says hello"}


def post(item: str, when: str, extra: str = "") -> str:
    return (
        f"  - id: {item}\n    kind: post\n    channels: [hook]\n    template: posts/say\n"
        f"    at: {when}\n{extra}"
    )


GOOD_AND_TYPO = (
    "items:\n"
    + post("due-now", "2026-12-01 09:00")
    # A typo in an item due next month.
    + post("next-month", "2027-01-05 09:00", "    titel: New year\n")
)
BROKEN_YAML = "items:\n  - id: [broken\n"


def publish(root: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command(), "-C", str(root), "publish", "--now", "2026-12-01T09:00:30Z", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HOOK_URL": url},
        timeout=60,
    )


def test_publish_sends_the_good_item_and_reports_the_broken_ones(
    make_project: MakeProject,
) -> None:
    with Receiver() as receiver:
        root = make_project(
            config=HOOK_CONFIG,
            calendars={"main.yaml": GOOD_AND_TYPO, "other.yaml": BROKEN_YAML},
            templates=TEMPLATES,
        )
        done = publish(root, receiver.url)
        assert done.returncode == 1, done.stderr
        assert [r.json["text"] for r in receiver.requests] == ["due-now says hello"]
        assert re.search(r"calendars/main\.yaml:12:\d+: error: unknown key 'titel'", done.stderr)
        assert re.search(r"calendars/other\.yaml:\d+:\d+: error: invalid YAML", done.stderr)
        assert "everything else is" in done.stderr

        # The same as one JSON document, problems included; nothing is sent twice.
        again = publish(root, receiver.url, "--format", "json")
        assert again.returncode == 1
        out = json.loads(again.stdout)
        assert out["ok"] is False and out["counts"] == {"already": 1}
        where = sorted((p["file"], p["line"]) for p in out["problems"])
        assert where[0] == ("calendars/main.yaml", 12)
        assert where[1][0] == "calendars/other.yaml"
        assert len(receiver.requests) == 1


def test_config_errors_still_stop_publish_with_exit_2(make_project: MakeProject) -> None:
    root = make_project(
        config=HOOK_CONFIG + "publish: {max_late: soon}\n",
        calendars={"main.yaml": "items:\n" + post("due-now", "2026-12-01 09:00")},
        templates=TEMPLATES,
    )
    with Receiver() as receiver:
        done = publish(root, receiver.url, "--format", "json")
        assert done.returncode == 2
        assert receiver.requests == []
    out = json.loads(done.stdout)
    assert out["schema"] == "commcal.publish/1" and out["ok"] is False
    assert out["problems"][0]["file"] == "commcal.yaml"


def test_publish_with_no_channels_is_a_config_error(make_project: MakeProject) -> None:
    root = make_project(
        config="timezone: UTC\nlocale: en\nstate: sqlite:///state.db\n",
        calendars={"main.yaml": "items:\n" + post("due-now", "2026-12-01 09:00")},
        templates=TEMPLATES,
    )
    done = publish(root, "http://127.0.0.1:9/")
    assert done.returncode == 2
    assert "no channels" in done.stderr


def start_run(root: Path, url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "HOOK_URL": url, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [*command(), "-C", str(root), "run", "--log-format", "json"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def calendar_at(*items: tuple[str, datetime], extra: str = "") -> str:
    return "items:\n" + "".join(post(name, json.dumps(z(when))) for name, when in items) + extra


def test_run_starts_with_a_broken_item_and_file_and_sends_the_good_one(
    make_project: MakeProject,
) -> None:
    soon = whole_second(3)
    root = make_project(
        config=HOOK_CONFIG,
        calendars={
            "main.yaml": calendar_at(("soon", soon))
            + post("next-month", "2027-01-05 09:00", "    titel: New year\n"),
            "other.yaml": BROKEN_YAML,
        },
        templates=TEMPLATES,
    )
    with Receiver() as receiver:
        proc = start_run(root, receiver.url)
        log = LogReader(proc)
        try:
            log.wait_for("started")
            problems = [str(line["message"]) for line in log.lines if line["event"] == "problem"]
            assert any(p.startswith("calendars/main.yaml:") and "titel" in p for p in problems)
            assert any(p.startswith("calendars/other.yaml:") for p in problems)
            sent = log.wait_for("sent", timeout=15)
            assert sent["item"] == "soon"
            assert [r.json["text"] for r in receiver.requests] == ["soon says hello"]
        finally:
            code, _ = stop(proc)
        assert code == 0


def test_run_keeps_a_broken_files_last_good_version_and_applies_other_edits(
    make_project: MakeProject,
) -> None:
    first, second = whole_second(6), whole_second(5)
    root = make_project(
        config=HOOK_CONFIG,
        calendars={"a.yaml": calendar_at(("from-a", first)), "b.yaml": "items: []\n"},
        templates=TEMPLATES,
    )
    with Receiver() as receiver:
        proc = start_run(root, receiver.url)
        log = LogReader(proc)
        try:
            log.wait_for("started")
            time.sleep(0.3)
            # a.yaml breaks (its last good version must still fire) while b.yaml gains an item,
            # and an item in b.yaml has a typo: it alone is left out.
            (root / "calendars" / "a.yaml").write_text(
                calendar_at(("from-a", first)) + "  - id: [broken\n", encoding="utf-8"
            )
            (root / "calendars" / "b.yaml").write_text(
                calendar_at(("from-b", second))
                + post("typo", json.dumps(z(second)), "    titel: x\n"),
                encoding="utf-8",
            )
            failed = log.wait_for("reload-failed")
            assert "calendars/a.yaml" in str(failed["message"])
            log.wait_for("reloaded")
            wait_until(lambda: len(receiver.requests) >= 2, 15)
            time.sleep(0.5)
            texts = sorted(r.json["text"] for r in receiver.requests)
            assert texts == ["from-a says hello", "from-b says hello"]
        finally:
            code, _ = stop(proc)
        assert code == 0


# -- code pools and member secrets --------------------------------------------------------------


def runner(root: Path, *args: str, env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["-C", str(root), *args], env=env)
    return result.exit_code, result.output


LETTER = """\
  - id: hello-letter
    kind: newsletter
    at: 2026-12-14 09:00
    channels: [newsletter]
    template: letters/hello
    audience: members
"""
LETTER_TEMPLATE = {
    "letters/hello.j2": "{% block subject %}Hello{% endblock %}\n"
    "{% block text %}\nHello {{ member.first_name }}\n{% endblock %}\n"
}


def write_letter_template(root: Path) -> None:
    (root / "templates" / "letters").mkdir()
    for name, text in LETTER_TEMPLATE.items():
        (root / "templates" / name).write_text(text, encoding="utf-8")


def add_letter(root: Path) -> None:
    """Append the hello-letter newsletter (to `members`) to calendars/main.yaml, with its
    template."""
    main = root / "calendars" / "main.yaml"
    main.write_text(main.read_text(encoding="utf-8") + LETTER, encoding="utf-8")
    write_letter_template(root)


def test_a_short_code_pool_stops_only_its_offer(
    make_project: MakeProject, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    root = offer_project(make_project, port, members=6, codes=5)
    add_letter(root)

    code, output = runner(root, "publish", "--now", "2026-12-14T09:00:30Z", env=ENV)
    assert code == 1, output
    assert re.search(
        r"calendars/main\.yaml:2:\d+: error: item 'winter-offer' was not published", output
    ), output
    assert "1 code short" in output
    subjects = [mail["Subject"] for mail in box.mails()]
    assert subjects == ["Hello"] * 6  # the newsletter reached everyone; no offer went out

    # The offer was not recorded: once the pool has enough codes it goes out.
    codes = root / "codes" / "winter.txt"
    codes.write_text(codes.read_text(encoding="utf-8") + "WINTER-9999\n", encoding="utf-8")
    code, output = runner(root, "publish", "--now", "2026-12-14T09:01:30Z", env=ENV)
    assert code == 0, output
    assert [mail["Subject"] for mail in box.mails()].count("Your winter offer") == 6


def test_a_missing_member_secret_stops_member_mail_only(
    make_project: MakeProject, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    root = make_project(
        config=config(port, "  console:\n    type: console\n"),
        calendars={
            "main.yaml": "items:\n"
            + LETTER
            + "  - id: tip\n    kind: post\n    channels: [console]\n"
            "    template: posts/tip\n    at: 2026-12-14 09:00\n"
        },
        templates={**LETTER_TEMPLATE, "posts/tip.j2": "Tip of the day\n"},
    )
    (root / "audiences").mkdir()
    (root / "audiences" / "members.csv").write_text(
        "email,name\na@example.org,Ann\n", encoding="utf-8"
    )
    code, output = runner(root, "publish", "--now", "2026-12-14T09:00:30Z", env={})
    assert code == 1, output
    assert "Tip of the day" in output  # the post went out
    assert box.received == []
    assert re.search(
        r"calendars/main\.yaml:2:\d+: error: item 'hello-letter' was not published: "
        r"members\.secret \(MEMBER_SECRET\) is not set",
        output,
    ), output


def test_a_calendar_typo_does_not_stop_the_unsubscribe_server(
    make_project: MakeProject,
) -> None:
    import socket
    import urllib.request

    root = make_project(
        config=config(free_port()),
        calendars={
            "main.yaml": "items:\n" + LETTER.replace("template:", "titel: x\n    template:")
        },
        templates=LETTER_TEMPLATE,
    )
    port = free_port()
    proc = subprocess.Popen(
        [*command(), "-C", str(root), "unsubscribe-server", "--port", str(port)],
        env={**os.environ, **ENV},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            assert answer.status < 500
    except urllib.error.HTTPError as exc:  # any HTTP answer at all means it is serving
        assert exc.code < 500
    finally:
        proc.terminate()
        proc.wait(10)


def test_an_unreadable_code_pool_stops_only_its_offer(
    make_project: MakeProject, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    root = offer_project(make_project, port, members=3, codes=3)
    add_letter(root)
    (root / "codes" / "winter.txt").write_bytes(b"WINTER-\xe9\xe9\n" * 3)  # Latin-1, not UTF-8

    code, output = runner(root, "publish", "--now", "2026-12-14T09:00:30Z", env=ENV)
    assert code == 1, output
    assert "item 'winter-offer' was not published" in output
    assert "Traceback" not in output
    assert [mail["Subject"] for mail in box.mails()] == ["Hello"] * 3


def test_run_reports_a_short_pool_once_and_keeps_sending_the_rest(
    make_project: MakeProject, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    root = offer_project(make_project, port, members=2, codes=1)
    offer_at, first, second = whole_second(1), whole_second(3), whole_second(5)
    letters = "".join(
        LETTER.replace("hello-letter", name).replace("2026-12-14 09:00", json.dumps(z(when)))
        for name, when in (("first", first), ("second", second))
    )
    (root / "calendars" / "main.yaml").write_text(
        (root / "calendars" / "main.yaml")
        .read_text(encoding="utf-8")
        .replace("2026-12-14 09:00", json.dumps(z(offer_at)))
        + letters,
        encoding="utf-8",
    )
    write_letter_template(root)
    proc = subprocess.Popen(
        [*command(), "-C", str(root), "run", "--log-format", "json"],
        env={**os.environ, **ENV, "PYTHONUNBUFFERED": "1"},
        stderr=subprocess.PIPE,
        text=True,
    )
    log = LogReader(proc)
    try:
        log.wait_for("sent", nth=4, timeout=20)  # both letters to both members
        time.sleep(0.5)
    finally:
        code, _ = stop(proc)
    assert code == 0
    about_offer = [
        line
        for line in log.lines
        if line["event"] == "problem" and "winter-offer" in str(line["message"])
    ]
    assert len(about_offer) == 1, log.raw  # three wake-ups, one report
    assert "1 code short" in str(about_offer[0]["message"])
    assert sorted(mail["Subject"] for mail in box.mails()) == ["Hello"] * 4


def test_a_broken_audience_file_stops_only_the_mail_that_reads_it(
    make_project: MakeProject, smtp: tuple[int, Mailbox]
) -> None:
    """A stray quote in one audience file: its newsletter is not sent to anybody (never to a
    smaller audience), the other audience's newsletter goes out, and publish says why with
    file:line and exits 1; once the file is fixed, the held letter reaches every member once."""
    port, box = smtp
    root = offer_project(make_project, port, members=3, codes=3)
    (root / "calendars" / "main.yaml").write_text(
        "items:\n"
        + LETTER
        + LETTER.replace("hello-letter", "vip-letter").replace(
            "audience: members", "audience: vip"
        ),
        encoding="utf-8",
    )
    write_letter_template(root)
    vip = root / "audiences" / "vip.csv"
    vip.write_text('email,name\nv1@example.org,"Vera\nv2@example.org,Vic\n', encoding="utf-8")

    code, output = runner(root, "publish", "--now", "2026-12-14T09:00:30Z", env=ENV)
    assert code == 1, output
    assert "audiences/vip.csv:2: error: a quote" in output, output
    assert re.search(
        r"calendars/main\.yaml:\d+:\d+: error: item 'vip-letter' was not published", output
    ), output
    assert sorted(to for mail in box.mails() for to in [mail["To"]]) == [
        f"Member {n} <m{n}@example.org>" for n in range(3)
    ]

    vip.write_text("email,name\nv1@example.org,Vera\nv2@example.org,Vic\n", encoding="utf-8")
    code, output = runner(root, "publish", "--now", "2026-12-14T09:01:30Z", env=ENV)
    assert code == 0, output
    to = sorted(mail["To"] for mail in box.mails())
    assert to.count("Vera <v1@example.org>") == 1 and to.count("Vic <v2@example.org>") == 1
    assert len(to) == 5
