"""Opt-in click tracking and survey answers through the unsubscribe server: a survey mailed to
members through a real SMTP server (aiosmtpd), its tracked link and answer link followed on the
real server (waitress, on loopback), what the ledger then holds."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import MakeProject

from commcal.audience import recipient_key
from commcal.ledger import open_ledger
from commcal.members import unsubscribe_app
from commcal.project import load_project
from commcal.unsubscribe_server import UnsubscribeServer
from tests.test_community import ENV, MEMBERS, Mailbox, config, free_port, run, text_of

CALENDAR = """\
items:
  - id: feedback
    kind: survey
    title: Tell us
    at: 2026-12-05 10:00
    channels: [newsletter]
    template: surveys/feedback
    audience: members
    survey_url: https://forms.example.org/f
"""
TEMPLATE = (
    "Offer: {{ track('https://shop.example.org/offer?size=L') }}\n"
    "Greek: {{ track('https://shop.example.org/προσφορά?x=1') }}\n"
    "{% if survey_response_url is defined %}Rate us: {{ survey_response_url }}\n{% endif %}"
)


def project(make_project: MakeProject, smtp_port: int, server_port: int, tracking: str) -> Path:
    text = config(smtp_port).replace(
        "  unsubscribe_url: https://news.example.org\n",
        f"  unsubscribe_url: http://127.0.0.1:{server_port}\n{tracking}",
    )
    root = make_project(
        config=text,
        calendars={"main.yaml": CALENDAR},
        templates={"surveys/feedback.j2": TEMPLATE},
    )
    (root / "audiences").mkdir()
    (root / "audiences" / "members.csv").write_text(MEMBERS, encoding="utf-8")
    return root


@pytest.fixture
def serve() -> Iterator[list[UnsubscribeServer]]:
    servers: list[UnsubscribeServer] = []
    yield servers
    for server in servers:
        server.stop()


def start(root: Path, port: int, servers: list[UnsubscribeServer]) -> None:
    server = UnsubscribeServer(
        unsubscribe_app(load_project(root, env=ENV), None), "127.0.0.1", port
    )
    servers.append(server)
    threading.Thread(target=server.run, daemon=True).start()


def ann_mail(box: Mailbox) -> str:
    (mail,) = [m for m in box.mails() if "ann@example.org" in str(m["To"])]
    return text_of(mail)


def test_a_tracked_link_redirects_records_the_click_by_key_and_survey_answers_are_kept(
    make_project: MakeProject, smtp: tuple[int, Mailbox], serve: list[UnsubscribeServer]
) -> None:
    smtp_port, box = smtp
    port = free_port()
    root = project(
        make_project, smtp_port, port, "  track_clicks: true\n  survey_responses: true\n"
    )
    published = run(root, "publish", "--now", "2026-12-05T10:00:30Z")
    assert published.exit_code == 0, published.output
    start(root, port, serve)
    text = ann_mail(box)
    link = re.search(r"Offer: (\S+)", text)
    answer = re.search(r"Rate us: (\S+)", text)
    assert link and answer
    click = link.group(1)
    assert click.startswith(f"http://127.0.0.1:{port}/c/")
    assert "ann" not in click.lower()  # a key, never the address

    head = requests.head(click, allow_redirects=False, timeout=10)
    assert head.status_code == 302  # a link checker is redirected, not counted
    got = requests.get(click, allow_redirects=False, timeout=10)
    assert (got.status_code, got.headers["Location"]) == (
        302, "https://shop.example.org/offer?size=L"
    )  # fmt: skip
    greek = re.search(r"Greek: (\S+)", text)
    assert greek
    sent_on = requests.get(greek.group(1), allow_redirects=False, timeout=10)
    assert sent_on.headers["Location"] == (
        "https://shop.example.org/%CF%80%CF%81%CE%BF%CF%83%CF%86%CE%BF%CF%81%CE%AC?x=1"
    )
    tampered = click[:-3] + ("AAA" if not click.endswith("AAA") else "BBB")
    assert requests.get(tampered, allow_redirects=False, timeout=10).status_code == 400
    # The survey link's token is no click token.
    token = answer.group(1).rsplit("/", 1)[1]
    wrong = requests.get(f"http://127.0.0.1:{port}/c/{token}", allow_redirects=False, timeout=10)
    assert wrong.status_code == 400

    asked = requests.get(answer.group(1), params={"rating": "5"}, timeout=10)
    assert asked.status_code == 200 and 'name="rating" value="5"' in asked.text
    sent = requests.post(answer.group(1), data={"rating": "5", "why": "Fast ☕"}, timeout=10)
    assert sent.status_code == 200 and "Thank you" in sent.text
    too_big = requests.post(answer.group(1), data={f"q{n}": "x" for n in range(60)}, timeout=10)
    assert too_big.status_code == 400

    with open_ledger(f"sqlite:///{root / 'state.db'}") as ledger:
        clicks = ledger.clicks()
        answers = ledger.survey_responses()
    ann = recipient_key("ann@example.org")
    assert [(c.recipient_key, c.item, c.url) for c in clicks] == [
        (ann, "main/feedback", "https://shop.example.org/offer?size=L"),
        (ann, "main/feedback", "https://shop.example.org/προσφορά?x=1"),
    ]
    assert [(a.recipient_key, a.item, dict(a.answers)) for a in answers] == [
        (ann, "main/feedback", {"rating": ["5"], "why": ["Fast ☕"]})
    ]


def test_tracking_is_off_by_default(
    make_project: MakeProject, smtp: tuple[int, Mailbox], serve: list[UnsubscribeServer]
) -> None:
    smtp_port, box = smtp
    port = free_port()
    root = project(make_project, smtp_port, port, "")
    published = run(root, "publish", "--now", "2026-12-05T10:00:30Z")
    assert published.exit_code == 0, published.output
    text = ann_mail(box)
    assert "Offer: https://shop.example.org/offer?size=L" in text.splitlines()
    assert "Rate us" not in text
    start(root, port, serve)
    assert requests.get(f"http://127.0.0.1:{port}/c/x.y", timeout=10).status_code == 404
    assert requests.post(f"http://127.0.0.1:{port}/s/x.y", timeout=10).status_code == 404


def test_tracking_without_the_server_address_is_a_problem_at_its_line(
    make_project: MakeProject,
) -> None:
    text = config(free_port()).replace(
        "  unsubscribe_url: https://news.example.org\n", "  track_clicks: true\n"
    )
    root = make_project(config=text)
    result = run(root, "validate")
    assert result.exit_code == 2
    assert re.search(r"commcal\.yaml:\d+:\d+: error: members\.track_clicks needs", result.output)
