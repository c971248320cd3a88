"""Audiences end to end, as a user sees them: real SMTP and HTTP servers on loopback, the CLI.

Each test builds a small project (members CSV, calendar, templates), runs `commcal` commands and
looks at what arrives: the mails an SMTP server receives, the requests a network receives, the
ledger, and what the commands print.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import socket
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import icalendar
import pytest
import requests
from typer.testing import CliRunner, Result

from commcal.cli import app
from commcal.contest import entry_key
from commcal.ledger import State, open_ledger
from commcal.members import unsubscribe_app
from commcal.plan import deliveries, local_send_times
from commcal.project import load_project
from commcal.unsubscribe_server import UnsubscribeServer
from tests.conftest import MakeProject
from tests.publish_support import Answer, Receiver, Request

SECRET = "a-long-random-member-secret-for-tests-0123456789"
ENV = {"MEMBER_SECRET": SECRET}

MEMBERS = """\
email,name,locale,timezone,tier,points,tags
ann@example.org,Ann Lee,en,Europe/London,gold,150,donor
eleni@example.gr,Ελένη Παπαδοπούλου,el,Europe/Athens,silver,40,volunteer
juma@example.co.ke,Juma Mwangi,sw,Africa/Nairobi,gold,90,volunteer
"""

LETTER = {
    "news/letter.j2": (
        '{% block subject %}News, {{ at | date("d MMMM y") }}{% endblock %}\n'
        "{% block text %}\n"
        'Hello {{ member.first_name }}, here is the news of {{ at | date("d MMMM y") }}.\n'
        "Leave: {{ unsubscribe_url }}\n"
        "{% endblock %}\n"
    ),
    "news/letter.el.j2": (
        '{% block subject %}Νέα, {{ at | date("d MMMM y") }}{% endblock %}\n'
        "{% block text %}\n"
        'Γεια σου {{ member.first_name }}, τα νέα της {{ at | date("d MMMM y") }}.\n'
        "Διαγραφή: {{ unsubscribe_url }}\n"
        "{% endblock %}\n"
    ),
    "news/letter.sw.j2": (
        '{% block subject %}Habari, {{ at | date("d MMMM y") }}{% endblock %}\n'
        "{% block text %}\n"
        'Habari {{ member.first_name }}, habari za {{ at | date("d MMMM y") }}.\n'
        "Jiondoe: {{ unsubscribe_url }}\n"
        "{% endblock %}\n"
    ),
}


# -- an SMTP server on loopback ------------------------------------------------------------------


@dataclass
class Mailbox:
    """An aiosmtpd handler keeping every accepted mail."""

    received: list[tuple[list[str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 queued"

    def mails(self) -> list[EmailMessage]:
        with self.lock:
            raw = [content for _, content in self.received]
        found = []
        for content in raw:
            parsed = email.message_from_bytes(content, policy=email.policy.default)
            assert isinstance(parsed, EmailMessage)
            found.append(parsed)
        return found

    def by_recipient(self) -> dict[str, EmailMessage]:
        return {str(m["To"]).split("<")[-1].rstrip(">").strip(): m for m in self.mails()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def config(smtp_port: int, extra_channels: str = "") -> str:
    return f"""\
timezone: UTC
locale: en
state: sqlite:///state.db
members:
  secret: ${{MEMBER_SECRET}}
  unsubscribe_url: https://news.example.org
  unsubscribe_mailto: unsubscribe@example.org
channels:
  newsletter:
    type: smtp
    host: 127.0.0.1
    port: {smtp_port}
    security: none
    timeout: 5
    from: "Community <hello@example.org>"
{extra_channels}"""


def run(root: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["-C", str(root), *args], env=ENV if env is None else env)


def text_of(mail: EmailMessage) -> str:
    part = mail.get_body(preferencelist=("plain",))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content


def members_project(
    make_project: MakeProject, calendar: str, templates: dict[str, str], port: int = 0
) -> Path:
    """A project with the three-member audience `members` and one calendar."""
    root = make_project(
        config=config(port or free_port()),
        calendars={"main.yaml": calendar},
        templates=templates,
    )
    (root / "audiences").mkdir()
    (root / "audiences" / "members.csv").write_text(MEMBERS, encoding="utf-8")
    return root


def newsletter_project(make_project: MakeProject, port: int) -> Path:
    return members_project(
        make_project,
        """\
items:
  - id: letter-1
    kind: newsletter
    at: 2026-12-01 08:00
    channels: [newsletter]
    template: news/letter
    audience: members
  - id: letter-2
    kind: newsletter
    at: 2026-12-02 08:00
    channels: [newsletter]
    template: news/letter
    audience: members
""",
        LETTER,
        port,
    )


def test_send_at_local_lists_each_member_zones_own_instant_for_the_scheduler(
    make_project: MakeProject,
) -> None:
    root = members_project(
        make_project,
        """\
items:
  - id: letter
    kind: newsletter
    at: 2026-12-01 09:00
    send_at: local
    channels: [newsletter]
    template: news/letter
    audience: members
""",
        LETTER,
    )
    project = load_project(root)
    start = datetime(2026, 11, 30, tzinfo=UTC)
    # 09:00 in London (UTC+0 in December), Athens (UTC+2) and Nairobi (UTC+3).
    nine = {datetime(2026, 12, 1, h, tzinfo=UTC) for h in (9, 7, 6)}
    assert local_send_times(project, start, start + timedelta(days=3)) == nine
    # The same instants the members' own deliveries fall due at.
    members = deliveries(project, start, start + timedelta(days=3), members=True)
    assert {d.due for d in members} == nine
    # Only what falls inside the window.
    assert local_send_times(project, start, datetime(2026, 12, 1, 6, 30, tzinfo=UTC)) == {
        datetime(2026, 12, 1, 6, tzinfo=UTC)
    }


def gold_offer_project(make_project: MakeProject, templates: dict[str, str]) -> Path:
    return members_project(
        make_project,
        """\
items:
  - id: offer
    kind: offer
    at: 2026-12-05 10:00
    channels: [newsletter]
    template: offers/gold
    audience: members
""",
        templates,
    )


def test_validate_renders_an_audience_message_for_every_locale_in_it(
    make_project: MakeProject,
) -> None:
    """`plan` renders the first member's message only; a broken Greek variant must still be
    found before Eleni's mail fails at send time."""
    english = (
        "{% block subject %}Offer{% endblock %}{% block text %}10% off, {{ member.name }}"
        "{% endblock %}"
    )
    greek = "{% block subject %}Προσφορά{% endblock %}{% block text %}{{ shop_gr }}{% endblock %}"
    root = gold_offer_project(
        make_project,
        {"offers/gold.j2": english, "offers/gold.el.j2": greek, "offers/gold.sw.j2": english},
    )
    result = run(root, "validate", "--now", "2026-12-01T00:00:00Z")
    assert result.exit_code == 1, result.output
    assert "templates/offers/gold.el.j2:1: error: template error: 'shop_gr' is undefined" in (
        result.output
    )
    assert "for members with locale el" in result.output


def test_validate_warns_when_members_would_get_another_languages_text(
    make_project: MakeProject,
) -> None:
    text = (
        "{% block subject %}Προσφορά{% endblock %}{% block text %}Έως {{ at | date }}{% endblock %}"
    )
    root = gold_offer_project(make_project, {"offers/gold.j2": text})
    result = run(root, "validate", "--now", "2026-12-01T00:00:00Z")
    assert result.exit_code == 0, result.output
    shown = " ".join(result.output.split())
    assert (
        "warning: item 'offer': 3 members with locale el, sw get templates/offers/gold.j2"
        in (shown)
        or "warning: item 'offer': 2 members with locale el, sw get templates/offers/gold.j2"
        in shown
    )
    assert "add templates/offers/gold.el.j2 and templates/offers/gold.sw.j2" in shown
    # A template that chooses its language itself is trusted.
    (root / "templates" / "offers" / "gold.j2").write_text(
        "{% block subject %}{% if locale == 'el' %}Προσφορά{% else %}Offer{% endif %}{% endblock %}"
        "{% block text %}{{ at | date }}{% endblock %}",
        encoding="utf-8",
    )
    result = run(root, "validate", "--now", "2026-12-01T00:00:00Z")
    assert "warning" not in result.output, result.output


# -- newsletter, languages, unsubscribe ----------------------------------------------------------


def test_newsletter_reaches_each_member_in_their_language_and_unsubscribe_works(
    make_project: MakeProject, smtp: tuple[int, Mailbox], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, box = smtp
    root = newsletter_project(make_project, port)

    result = run(root, "publish", "--now", "2026-12-01T08:01:00Z")
    assert result.exit_code == 0, result.output
    mails = box.by_recipient()
    assert sorted(mails) == ["ann@example.org", "eleni@example.gr", "juma@example.co.ke"]
    assert len(box.received) == 3

    assert "Hello Ann, here is the news of 1 December 2026." in text_of(mails["ann@example.org"])
    assert "Γεια σου Ελένη, τα νέα της 1 Δεκεμβρίου 2026." in text_of(mails["eleni@example.gr"])
    assert mails["eleni@example.gr"]["Subject"] == "Νέα, 1 Δεκεμβρίου 2026"
    assert "Habari Juma, habari za 1 Desemba 2026." in text_of(mails["juma@example.co.ke"])

    links: dict[str, str] = {}
    for address, mail in mails.items():
        raw = next(content for rcpt, content in box.received if address in rcpt)
        header = str(mail["List-Unsubscribe"])
        # Plain ASCII in angle brackets, never RFC 2047 encoded-words.
        assert b"=?utf-8?" not in raw.split(b"\r\n\r\n")[0].lower().split(b"list-unsubscribe")[1]
        match = re.fullmatch(
            r"<(https://news\.example\.org/u/[A-Za-z0-9_\-.]+)>, "
            r"<mailto:unsubscribe@example\.org(\?subject=unsubscribe)?>",
            header,
        )
        assert match, header
        assert header.isascii()
        assert str(mail["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
        links[address] = match.group(1)
        assert match.group(1) in text_of(mail)  # the template's link is the header's
    assert len(set(links.values())) == 3

    # The unsubscribe endpoint behind a real server on loopback.
    monkeypatch.setenv("MEMBER_SECRET", SECRET)
    server = UnsubscribeServer(unsubscribe_app(load_project(root), None), "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.addresses[0][1]}"
    ledger_url = "sqlite:///state.db"
    try:
        eleni = links["eleni@example.gr"].replace("https://news.example.org", base)

        page = requests.get(eleni, timeout=5)
        assert page.status_code == 200
        assert 'method="post"' in page.text
        with open_ledger(ledger_url, project_dir=root) as ledger:
            assert ledger.suppressions() == []

        token = eleni.rsplit("/", 1)[1]
        middle = len(token) // 2
        flipped = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
        tampered = requests.post(
            eleni.replace(token, flipped),
            data="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=5,
        )
        assert tampered.status_code == 400
        with open_ledger(ledger_url, project_dir=root) as ledger:
            assert ledger.suppressions() == []

        done = requests.post(
            eleni,
            data="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            timeout=5,
        )
        assert done.status_code == 200
    finally:
        server.stop()
        thread.join(5)

    listed = run(root, "suppress", "--list", "--format", "json")
    assert listed.exit_code == 0, listed.output
    entries = json.loads(listed.stdout)["suppressions"]
    # The link names no address, so the list cannot show even a masked one: only the key.
    assert [(e["note"] or "", e["source"]) for e in entries] == [("", "unsubscribe-link")]

    # The next letter reaches the other two only; the ledger says why Eleni got none.
    box.received.clear()
    result = run(root, "publish", "--now", "2026-12-02T08:01:00Z")
    assert result.exit_code == 0, result.output
    assert sorted(box.by_recipient()) == ["ann@example.org", "juma@example.co.ke"]
    with open_ledger(ledger_url, project_dir=root) as ledger:
        records = ledger.records(item="letter-2")
    assert sorted(str(r.state) for r in records) == ["sent", "sent", "skipped"]
    skipped = next(r for r in records if r.state == State.SKIPPED)
    assert "unsubscribed" in (skipped.last_error or "")
    assert "eleni" not in repr(records).lower()  # the ledger never holds the address


def test_preview_member_shows_their_message_and_unknown_member_is_exit_1(
    make_project: MakeProject, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    root = newsletter_project(make_project, port)
    shown = run(
        root, "preview", "letter-1", "--member", "ELENI@example.gr", "--now", "2026-11-30T00:00:00Z"
    )
    assert shown.exit_code == 0, shown.output
    assert "Γεια σου Ελένη, τα νέα της 1 Δεκεμβρίου 2026." in shown.output
    juma = run(
        root,
        "preview",
        "letter-1",
        "--member",
        "juma@example.co.ke",
        "--format",
        "json",
        "--now",
        "2026-11-30T00:00:00Z",
    )
    assert juma.exit_code == 0, juma.output
    (entry,) = json.loads(juma.stdout)["deliveries"]
    assert entry["recipient"] == "juma@example.co.ke"
    assert "Habari Juma, habari za 1 Desemba 2026." in entry["text"]

    unknown = run(
        root,
        "preview",
        "letter-1",
        "--member",
        "nobody@example.org",
        "--now",
        "2026-11-30T00:00:00Z",
    )
    assert unknown.exit_code == 1
    assert "nobody@example.org is not in audience 'members'" in unknown.output
    assert box.received == []  # preview never sends


# -- loyalty codes -------------------------------------------------------------------------------

OFFER_TEMPLATES = {
    "offers/loyalty.j2": (
        "{% block subject %}Your winter offer{% endblock %}\n"
        "{% block text %}\nHello {{ member.first_name }}, your code: {{ code }}\n{% endblock %}\n"
    )
}


def offer_project(
    make_project: MakeProject, port: int, members: int, codes: int, spec: str | None = None
) -> Path:
    spec = spec or "{pool: codes/winter.txt}"
    root = make_project(
        config=config(port),
        calendars={
            "main.yaml": f"""\
items:
  - id: winter-offer
    kind: offer
    at: 2026-12-14 09:00
    channels: [newsletter]
    template: offers/loyalty
    audience: members
    codes: {spec}
"""
        },
        templates=OFFER_TEMPLATES,
    )
    (root / "audiences").mkdir()
    rows = "".join(f"m{n}@example.org,Member {n}\n" for n in range(members))
    (root / "audiences" / "members.csv").write_text("email,name\n" + rows, encoding="utf-8")
    (root / "codes").mkdir()
    lines = "".join(f"WINTER-{n:04d}\n" for n in range(codes))
    (root / "codes" / "winter.txt").write_text("# winter codes\n" + lines, encoding="utf-8")
    return root


def codes_received(box: Mailbox) -> dict[str, str]:
    found = {}
    for address, mail in box.by_recipient().items():
        match = re.search(r"your code: (\S+)", text_of(mail))
        assert match, text_of(mail)
        found[address] = match.group(1)
    return found


def test_each_member_gets_a_distinct_code_from_the_pool(
    make_project: MakeProject, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    root = offer_project(make_project, port, members=5, codes=5)
    assert run(root, "validate", "--now", "2026-12-01T00:00:00Z").exit_code == 0
    result = run(root, "publish", "--now", "2026-12-14T09:00:30Z")
    assert result.exit_code == 0, result.output
    given = codes_received(box)
    assert len(given) == 5
    assert sorted(given.values()) == [f"WINTER-{n:04d}" for n in range(5)]


def test_a_short_pool_sends_nothing_and_says_how_many_are_missing(
    make_project: MakeProject, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    root = offer_project(make_project, port, members=6, codes=5)
    result = run(root, "publish", "--now", "2026-12-14T09:00:30Z")
    assert result.exit_code != 0
    assert "winter-offer" in result.output
    assert re.search(r"\b1\b.*(missing|short)|(missing|short).*\b1\b", result.output), result.output
    assert box.received == []

    checked = run(root, "validate", "--now", "2026-12-01T00:00:00Z")
    assert checked.exit_code == 1
    assert re.search(
        r"calendars/main\.yaml:8:\d+: error: item 'winter-offer': code pool codes/winter\.txt "
        r"has 5 codes for 6 members",
        checked.output,
    ), checked.output
    assert "add at least 1 codes" in checked.output


def test_derived_codes_are_stable_and_distinct(
    make_project: MakeProject, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    root = offer_project(
        make_project, port, members=4, codes=0, spec="{derive: true, prefix: WIN-}"
    )
    assert run(root, "publish", "--now", "2026-12-14T09:00:30Z").exit_code == 0
    first = codes_received(box)
    box.received.clear()
    # A fresh ledger sends again when asked to (--catch-up): the same member gets the same code.
    again = run(
        root, "publish", "--now", "2026-12-14T09:00:30Z", "--state", "sqlite:///b.db", "--catch-up"
    )
    assert again.exit_code == 0, again.output
    assert codes_received(box) == first
    assert len(set(first.values())) == 4
    assert all(re.fullmatch(r"WIN-[A-Z2-7]{8}", code) for code in first.values())


# -- polls ---------------------------------------------------------------------------------------


def test_a_poll_is_native_where_the_network_has_polls_and_numbered_text_elsewhere(
    make_project: MakeProject,
) -> None:
    def behave(request: Request) -> Answer:
        if "/sendPoll" in request.path or "/sendMessage" in request.path:
            return Answer(body=b'{"ok": true, "result": {"message_id": 7}}')
        if request.path.startswith("/slack"):
            return Answer(body=b"ok", headers={"Content-Type": "text/plain"})
        if request.path.startswith("/discord"):
            return Answer(body=b'{"id": "99", "channel_id": "1", "guild_id": "2"}')
        return Answer()

    with Receiver() as receiver:
        receiver.behave = behave
        channels = f"""\
  mastodon: {{type: mastodon, instance: "{receiver.url}", token: "${{MASTO_TOKEN}}"}}
  telegram: {{type: telegram, token: "${{TG_TOKEN}}", chat_id: "@openkitchen_news",
             api_url: "{receiver.url}"}}
  discord: {{type: discord, webhook_url: "${{DISCORD_URL}}"}}
  slack: {{type: slack, webhook_url: "${{SLACK_URL}}"}}
"""
        root = make_project(
            config=f"timezone: UTC\nlocale: en\nstate: sqlite:///state.db\nchannels:\n{channels}",
            calendars={
                "main.yaml": """\
items:
  - id: topic
    kind: poll
    at: 2026-12-04 11:00
    channels: [mastodon, telegram, discord, slack]
    template: polls/topic
    question: "Which workshop next?"
    options: ["Fermentation", "Sourdough", "Sugar-free sweets"]
    duration: 2d
"""
            },
            templates={"polls/topic.j2": "Vote: {{ poll.question }}\n"},
        )
        env = {
            "MASTO_TOKEN": "m-token",
            "TG_TOKEN": "123:abc",
            "DISCORD_URL": f"{receiver.url}/discord/hook",
            "SLACK_URL": f"{receiver.url}/slack/hook",
        }
        result = run(root, "publish", "--now", "2026-12-04T11:00:30Z", env=env)
        assert result.exit_code == 0, result.output
        requests_by = {r.path.split("?")[0]: r.json for r in receiver.requests}

    options = ["Fermentation", "Sourdough", "Sugar-free sweets"]
    masto = requests_by["/api/v1/statuses"]
    assert masto["poll"] == {"options": options, "expires_in": 172800}
    telegram = requests_by["/bot123:abc/sendPoll"]
    assert telegram["question"] == "Which workshop next?"
    assert telegram["options"] == [{"text": o} for o in options]
    discord = requests_by["/discord/hook"]
    assert discord["poll"]["question"] == {"text": "Which workshop next?"}
    assert discord["poll"]["answers"] == [{"poll_media": {"text": o}} for o in options]
    assert discord["poll"]["duration"] == 48
    slack = requests_by["/slack/hook"]
    assert "poll" not in slack
    assert slack["text"] == (
        "Vote: Which workshop next?\n\n1. Fermentation\n2. Sourdough\n3. Sugar-free sweets"
    )


# -- webinar invitations -------------------------------------------------------------------------


def test_webinar_mails_carry_the_same_ics_event(
    make_project: MakeProject, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    root = make_project(
        config=config(port),
        calendars={
            "main.yaml": """\
timezone: Europe/Athens
items:
  - id: webinar
    kind: event
    title: Fermentation for beginners
    at: 2026-12-10 18:00
    duration: 1h30m
    channels: [newsletter]
    template: events/reminder
    audience: registrants
    location: Online
    url: https://example.org/webinar
    reminders: [-7d, -1d]
"""
        },
        templates={"events/reminder.j2": "See you {{ event.at | date }}, {{ member.name }}!\n"},
    )
    (root / "audiences").mkdir()
    (root / "audiences" / "registrants.csv").write_text(
        "email,name\nsam@example.org,Sam Doe\n", encoding="utf-8"
    )
    for now in ("2026-12-03T16:00:30Z", "2026-12-09T16:00:30Z"):
        result = run(root, "publish", "--now", now)
        assert result.exit_code == 0, result.output
    mails = box.mails()
    assert len(mails) == 2
    uids = []
    for mail in mails:
        (part,) = [p for p in mail.iter_attachments() if p.get_content_type() == "text/calendar"]
        data = part.get_content()
        calendar: Any = icalendar.Calendar.from_ical(
            data if isinstance(data, bytes) else data.encode()
        )
        assert str(calendar["METHOD"]) == "PUBLISH"
        events: list[Any] = calendar.walk("VEVENT")
        (event,) = events
        assert event["DTSTART"].dt == datetime(2026, 12, 10, 16, 0, tzinfo=UTC)
        assert event["DTEND"].dt == datetime(2026, 12, 10, 17, 30, tzinfo=UTC)
        assert str(event["LOCATION"]) == "Online"
        uids.append(str(event["UID"]))
    assert uids[0] == uids[1]


# -- contest draw --------------------------------------------------------------------------------


def test_contest_draw_is_reproducible_and_recorded(
    make_project: MakeProject, tmp_path: Path
) -> None:
    root = make_project(
        calendars={
            "main.yaml": """\
items:
  - id: photo-contest
    kind: contest
    opens: 2026-12-07 10:00
    closes: 2027-01-10 20:00
    channels: [console]
    template: posts/tip
    steps:
      - {name: opens, at: opens}
"""
        },
        config="timezone: UTC\nlocale: en\nstate: sqlite:///state.db\n"
        "channels:\n  console: {type: console}\n",
    )
    entries = tmp_path / "entries.csv"
    rows = "".join(f"p{n}@example.org,Person {n}\n" for n in range(12))
    entries.write_text("email,name\n" + rows + "P3@example.org,Person 3 again\n", encoding="utf-8")
    args = ["contest", "draw", "photo-contest", "--entries", str(entries), "--winners", "2"]
    first = run(root, *args, "--seed", "2026-01-15")
    second = run(root, *args, "--seed", "2026-01-15")
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout
    as_json = json.loads(run(root, *args, "--seed", "2026-01-15", "--format", "json").stdout)
    assert as_json["schema"] == "commcal.draw/1"
    assert as_json["entries"] == 12 and as_json["duplicates_removed"] == 1
    assert len(as_json["winners"]) == 2
    for winner in as_json["winners"]:
        assert winner in first.stdout
    with open_ledger("sqlite:///state.db", project_dir=root) as ledger:
        draws = ledger.draws("main/photo-contest")
    assert len(draws) == 3
    # Issue 15 point 15: the ledger records the winners' keys, never their addresses.
    assert {tuple(d.winners) for d in draws} == {tuple(entry_key(w) for w in as_json["winners"])}
    assert all(d.seed == "2026-01-15" for d in draws)


# -- surveys -------------------------------------------------------------------------------------


def test_survey_links_carry_a_member_token_and_utm_tags(
    make_project: MakeProject, smtp: tuple[int, Mailbox]
) -> None:
    port, box = smtp
    root = make_project(
        config=config(port),
        calendars={
            "main.yaml": """\
items:
  - id: feedback
    kind: survey
    title: Tell us
    at: 2026-12-05 10:00
    channels: [newsletter]
    template: surveys/feedback
    audience: members
    survey_url: https://example.org/survey?year=2026
"""
        },
        templates={"surveys/feedback.j2": "Answer here: {{ survey_url | utm }}\n"},
    )
    (root / "audiences").mkdir()
    (root / "audiences" / "members.csv").write_text(MEMBERS, encoding="utf-8")
    result = run(root, "publish", "--now", "2026-12-05T10:00:30Z")
    assert result.exit_code == 0, result.output
    tokens = set()
    for mail in box.mails():
        match = re.search(r"Answer here: (\S+)", text_of(mail))
        assert match
        url = match.group(1)
        assert url.startswith("https://example.org/survey?year=2026&m=")
        assert "utm_source=newsletter" in url and "utm_medium=" in url
        token = re.search(r"[?&]m=([^&]+)", url)
        assert token
        tokens.add(token.group(1))
        assert "@" not in token.group(1)
    assert len(tokens) == 3


# -- the suppression list ------------------------------------------------------------------------


def test_suppress_add_list_remove_and_import(make_project: MakeProject, tmp_path: Path) -> None:
    root = make_project(
        config="timezone: UTC\nstate: sqlite:///state.db\nchannels:\n  console: {type: console}\n"
    )
    added = run(root, "suppress", "Mary.Jones@Example.org", "kofi@example.com.gh")
    assert added.exit_code == 0, added.output
    assert "2 of 2 addresses added to the suppression list" in added.output
    again = run(root, "suppress", "mary.jones@example.org")
    assert "0 of 1 addresses added" in again.output

    bounces = tmp_path / "bounces.csv"
    bounces.write_text("email,reason\nzawadi@example.co.tz,550\n", encoding="utf-8")
    imported = run(root, "suppress", "--import", str(bounces))
    assert imported.exit_code == 0, imported.output
    assert "1 of 1 addresses added" in imported.output

    listed = run(root, "suppress", "--list")
    assert listed.exit_code == 0
    assert "3 suppressed" in listed.output
    for full in ("Mary.Jones@Example.org", "mary.jones", "kofi@", "zawadi@"):
        assert full.lower() not in listed.output.lower()
    assert "M***@example.org" in listed.output or "m***@example.org" in listed.output.lower()
    data = json.loads(run(root, "suppress", "--list", "--format", "json").stdout)
    assert {e["source"] for e in data["suppressions"]} == {"cli", "import"}
    assert "***@example.org" in json.dumps(data).lower()
    assert "mary" not in json.dumps(data).lower()

    removed = run(root, "suppress", "--remove", "MARY.JONES@example.org")
    assert "1 of 1 addresses removed from the suppression list" in removed.output
    data = json.loads(run(root, "suppress", "--list", "--format", "json").stdout)
    assert len(data["suppressions"]) == 2

    bad = run(root, "suppress", "not-an-address")
    assert bad.exit_code == 2
    assert "not e-mail addresses" in bad.output
