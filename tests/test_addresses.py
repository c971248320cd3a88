"""One normal form of an address for members, suppressions, imports and keys (issue 15, point 13).

Each test goes through the CLI the way a user would: `commcal suppress ...`, then `commcal publish`
to a real SMTP server on loopback, and looks at who got mail.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commcal.audience import check_audience, email_address, recipient_key
from tests.conftest import MakeProject
from tests.test_community import Mailbox, config, run

MAYA_MEMBERS = """\
email,name
ann@example.org,Ann
Maya@Example.org,Maya
juma@example.co.ke,Juma
"""

CALENDAR = """\
items:
  - id: letter
    kind: newsletter
    at: 2026-12-01 08:00
    channels: [newsletter]
    template: news/letter
    audience: members
"""

TEMPLATES = {
    "news/letter.j2": (
        "{% block subject %}News{% endblock %}\n"
        "{% block text %}Hello {{ member.first_name }}. Leave: {{ unsubscribe_url }}"
        "{% endblock %}\n"
    )
}

# Junk that the old ten-line check took for addresses, and more that no relay should be given.
JUNK = [
    "a..b@x.org",
    "a,b@x.org",
    "<script>@example.org",
    "maya@@example.org",
    "maya@example..org",
    ".maya@example.org",
    "maya.@example.org",
    "maya@-example.org",
    "maya@example-.org",
    "maya@exa_mple.org",
    "ma(ya)@example.org",
    "maya@example.org?subject=hi",
    "maya@.example.org",
    '"maya"@example.org',
    "maya@[127.0.0.1]",
    "maya@localhost",
    "maya@example",
    "@example.org",
    "maya@",
    "ma\\ya@example.org",
    "ma[ya]@example.org",
]


def project(make_project: MakeProject, port: int) -> Path:
    root = make_project(config=config(port), calendars={"main.yaml": CALENDAR}, templates=TEMPLATES)
    (root / "audiences").mkdir()
    (root / "audiences" / "members.csv").write_text(MAYA_MEMBERS, encoding="utf-8")
    return root


@pytest.mark.parametrize(
    "form",
    [
        "<maya@example.org>",
        "mailto:maya@example.org",
        "maya@example.org;",
        "maya@example.org,",
        "  MAYA@EXAMPLE.ORG  ",
        "Maya Said <maya@example.org>",
        "<mailto:maya@example.org>",
    ],
)
def test_every_spelling_of_maya_suppressed_means_she_gets_no_mail(
    make_project: MakeProject, smtp: tuple[int, Mailbox], form: str
) -> None:
    port, box = smtp
    root = project(make_project, port)
    added = run(root, "suppress", form)
    assert added.exit_code == 0, added.output
    assert "1 of 1 addresses added to the suppression list" in added.output

    published = run(root, "publish", "--now", "2026-12-01T08:01:00Z")
    assert published.exit_code == 0, published.output
    assert sorted(box.by_recipient()) == ["ann@example.org", "juma@example.co.ke"]


def test_a_bounce_file_in_every_spelling_suppresses_the_members(
    make_project: MakeProject, smtp: tuple[int, Mailbox], tmp_path: Path
) -> None:
    port, box = smtp
    root = project(make_project, port)
    bounces = tmp_path / "bounces.txt"
    bounces.write_text("# bounced in November\n<maya@example.org>;\n\nmailto:JUMA@example.co.ke\n")
    imported = run(root, "suppress", "--import", str(bounces))
    assert imported.exit_code == 0, imported.output
    assert "2 of 2 addresses added" in imported.output
    published = run(root, "publish", "--now", "2026-12-01T08:01:00Z")
    assert published.exit_code == 0, published.output
    assert sorted(box.by_recipient()) == ["ann@example.org"]


@pytest.mark.parametrize("junk", JUNK)
def test_junk_on_the_command_line_is_refused_naming_the_argument(
    make_project: MakeProject, junk: str
) -> None:
    root = make_project(config="timezone: UTC\nstate: sqlite:///state.db\n")
    refused = run(root, "suppress", junk)
    assert refused.exit_code == 2, refused.output
    assert f"not e-mail addresses: {junk!r} (" in refused.output


def test_junk_in_a_bounce_file_names_file_and_line_and_adds_nothing(
    make_project: MakeProject, tmp_path: Path
) -> None:
    root = make_project(config="timezone: UTC\nstate: sqlite:///state.db\n")
    bounces = tmp_path / "bounces.csv"
    bounces.write_text("email,reason\nok@example.org,550\na..b@x.org,550\n", encoding="utf-8")
    refused = run(root, "suppress", "--import", str(bounces))
    assert refused.exit_code == 2
    assert f"{bounces}:3: 'a..b@x.org' (An email address cannot have two periods" in refused.output
    listed = run(root, "suppress", "--list")
    assert "0 suppressed" in listed.output


def test_junk_in_an_audience_is_a_warning_with_its_line(make_project: MakeProject) -> None:
    root = make_project()
    (root / "audiences").mkdir()
    rows = "".join(f"{junk.replace(',', ';')},x\n" for junk in JUNK if '"' not in junk)
    (root / "audiences" / "m.csv").write_text("email,name\nok@example.org,ok\n" + rows)
    problems = check_audience(root, "m")
    assert [p.pos.line for p in problems] == list(range(3, 3 + rows.count("\n")))
    assert all("is not an e-mail address; the row is skipped" in p.message for p in problems)


def test_keys_of_plain_lowercase_addresses_are_unchanged() -> None:
    # The key earlier versions stored in ledgers: SHA-256 of a salt and the lower-cased address.
    for address in ("maya@example.org", "eleni@example.gr", "ann+news@example.co.uk"):
        old = hashlib.sha256(b"commcal-recipient-v1:" + address.encode()).hexdigest()[:16]
        assert recipient_key(address) == old
    assert recipient_key("<Maya@EXAMPLE.org>;") == recipient_key("maya@example.org")
    assert recipient_key("user@xn--bcher-kva.example") == recipient_key("user@Bücher.example")


def test_the_normal_form_keeps_the_local_part_and_lowers_the_domain() -> None:
    assert email_address(" Maya.Said@Example.ORG ") == "Maya.Said@example.org"
    assert email_address("user@XN--BCHER-KVA.example") == "user@xn--bcher-kva.example"
    assert email_address("Ελένη@Παράδειγμα.gr") == "Ελένη@παράδειγμα.gr"


_ADDRESSISH = st.lists(
    st.sampled_from([*"aZ09.-_+@!#$%&'*/=?^`{|}~\"(),:;<>[]\\ é", "xn--", ".org", "a" * 30]),
    max_size=20,
).map("".join)


@settings(max_examples=3000, deadline=None)
@given(local=_ADDRESSISH, domain=st.sampled_from(["example.org", "EXAMPLE.gr", "x.test", "a..b"]))
def test_the_fast_path_answers_as_email_validator_does(local: str, domain: str) -> None:
    from commcal.audience import AddressError, _validated

    for text in (f"{local}@{domain}", local):
        try:
            expected: str | None = _validated(text.strip())
        except AddressError:
            expected = None
        try:
            got: str | None = email_address(text)
        except AddressError:
            got = None
        if text.strip() == text and not text.endswith((";", ",", ">")) and "mailto:" not in text:
            assert got == expected, text
