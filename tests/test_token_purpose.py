"""A token works only for the purpose and list it was signed for (issue 15, point 14).

A member's survey link carries a signed token; the unsubscribe server used to accept any genuine
token, so whoever saw the survey URL (the survey tool, a forwarded mail) could unsubscribe the
member. Mail goes to a real SMTP server on loopback, the links go to the real unsubscribe server
(waitress, in a thread) with real HTTP requests, and the ledger is read afterwards.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from commcal.audience import recipient_key
from commcal.ledger import open_ledger
from commcal.members import unsubscribe_app
from commcal.project import load_project
from commcal.tokens import open_token, sign
from commcal.unsubscribe_server import UnsubscribeServer
from tests.conftest import MakeProject
from tests.test_community import MEMBERS, SECRET, Mailbox, config, run, text_of

CALENDAR = """\
items:
  - id: feedback
    kind: survey
    title: Tell us
    at: 2026-12-05 10:00
    channels: [newsletter]
    template: surveys/feedback
    audience: members
    survey_url: https://survey.example.org/s
"""
TEMPLATE = "Answer: {{ survey_url }}\nLeave: {{ unsubscribe_url }}\n"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def mailed(
    make_project: MakeProject, smtp: tuple[int, Mailbox], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Path, dict[str, tuple[str, str]], str]]:
    """A survey mailed to the members; their (survey token, unsubscribe token), and the base URL
    of the project's unsubscribe server, running."""
    port, box = smtp
    root = make_project(
        config=config(port),
        calendars={"main.yaml": CALENDAR},
        templates={"surveys/feedback.j2": TEMPLATE},
    )
    (root / "audiences").mkdir()
    (root / "audiences" / "members.csv").write_text(MEMBERS, encoding="utf-8")
    published = run(root, "publish", "--now", "2026-12-05T10:00:30Z")
    assert published.exit_code == 0, published.output
    tokens = {}
    for address, mail in box.by_recipient().items():
        text = text_of(mail)
        survey = re.search(r"Answer: \S+[?&]m=([A-Za-z0-9_.-]+)", text)
        leave = re.search(r"Leave: https://news\.example\.org/u/([A-Za-z0-9_.-]+)", text)
        assert survey and leave, text
        tokens[address] = (survey.group(1), leave.group(1))
    monkeypatch.setenv("MEMBER_SECRET", SECRET)
    server = UnsubscribeServer(unsubscribe_app(load_project(root), None), "127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield root, tokens, f"http://127.0.0.1:{server.addresses[0][1]}"
    finally:
        server.stop()
        thread.join(5)


def suppressed(root: Path) -> set[str]:
    with open_ledger("sqlite:///state.db", project_dir=root) as ledger:
        return {s.recipient_key for s in ledger.suppressions()}


def test_a_survey_link_cannot_unsubscribe_its_member(
    mailed: tuple[Path, dict[str, tuple[str, str]], str],
) -> None:
    root, tokens, base = mailed
    survey, _ = tokens["eleni@example.gr"]
    page = requests.get(f"{base}/u/{survey}", timeout=5)
    assert page.status_code == 403
    assert "This is not an unsubscribe link" in page.text
    assert 'method="post"' not in page.text  # no button to press either
    posted = requests.post(f"{base}/u/{survey}", data=ONE_CLICK, timeout=5)
    assert posted.status_code == 403
    greek = requests.post(f"{base}/u/{survey}?lang=el", data=ONE_CLICK, timeout=5)
    assert greek.status_code == 403 and "σύνδεσμος διαγραφής" in greek.text
    assert suppressed(root) == set()


def test_the_unsubscribe_link_names_its_list_and_still_works(
    mailed: tuple[Path, dict[str, tuple[str, str]], str],
) -> None:
    root, tokens, base = mailed
    _, leave = tokens["eleni@example.gr"]
    opened = open_token(leave, SECRET)
    assert opened == (recipient_key("eleni@example.gr"), "unsubscribe:members")
    posted = requests.post(f"{base}/u/{leave}", data=ONE_CLICK, timeout=5)
    assert posted.status_code == 200, posted.text
    assert suppressed(root) == {recipient_key("eleni@example.gr")}


def test_unsubscribe_links_mailed_before_tokens_named_their_list_keep_working(
    mailed: tuple[Path, dict[str, tuple[str, str]], str],
) -> None:
    root, _, base = mailed
    # Earlier versions signed every unsubscribe link with the list field "unsubscribe".
    old = sign(recipient_key("juma@example.co.ke"), SECRET, list_id="unsubscribe")
    assert requests.post(f"{base}/u/{old}", data=ONE_CLICK, timeout=5).status_code == 200
    assert suppressed(root) == {recipient_key("juma@example.co.ke")}


@pytest.mark.parametrize("list_id", ["survey:main/feedback", "code:main/offer", "news.example.org"])
def test_any_other_purpose_is_refused(
    mailed: tuple[Path, dict[str, tuple[str, str]], str], list_id: str
) -> None:
    root, _, base = mailed
    token = sign(recipient_key("ann@example.org"), SECRET, list_id=list_id)
    assert requests.post(f"{base}/u/{token}", data=ONE_CLICK, timeout=5).status_code == 403
    assert suppressed(root) == set()


def test_a_token_signed_with_another_secret_is_still_400(
    mailed: tuple[Path, dict[str, tuple[str, str]], str],
) -> None:
    root, _, base = mailed
    token = sign(recipient_key("ann@example.org"), "another-secret", list_id="unsubscribe")
    assert requests.post(f"{base}/u/{token}", data=ONE_CLICK, timeout=5).status_code == 400
    assert suppressed(root) == set()
