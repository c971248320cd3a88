"""`commcal export html`: the month view, read as a file and in a real headless Chromium.

The browser tests use the system's Chromium (/usr/bin/chromium, Debian's `chromium` package)
through Python playwright; they skip when it is missing, unless COMMCAL_REQUIRE_CHROMIUM=1 (CI),
where a missing browser is a failure. Nothing here downloads a browser.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from commcal.check import plan
from commcal.cli import app
from commcal.errors import Pos, Problem
from commcal.export_html import _first_words, build_page
from commcal.project import load_project
from tests.test_docs import copy_example
from tests.test_queue import NOW as QUEUE_NOW
from tests.test_queue import published  # noqa: F401  (the fixture: a real publish's ledger)

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
NOW = "2026-12-01T00:00:00Z"
VIEWPORT = {"width": 1280, "height": 900}


class Chips(HTMLParser):
    """The page's day cells and chips, read with the standard library's parser."""

    def __init__(self) -> None:
        super().__init__()
        self.day = ""
        self.chips: list[dict[str, str]] = []  # data-* of each chip, with its day and classes
        self.captions: list[str] = []
        self.in_caption = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "td":
            self.day = values.get("data-date", "")
        elif tag == "button" and "chip" in values.get("class", "").split():
            self.chips.append({**values, "day": self.day})
        elif tag == "caption":
            self.in_caption = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "caption":
            self.in_caption = False

    def handle_data(self, data: str) -> None:
        if self.in_caption and data.strip():
            self.captions.append(data.strip())


def chips_of(html: str) -> Chips:
    parser = Chips()
    parser.feed(html)
    return parser


def export(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["-C", str(root), "export", "html", "--now", NOW, *args])
    return result.exit_code, result.output


def plan_json(root: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        app, ["-C", str(root), "plan", "--now", NOW, "--format", "json", *args]
    )
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def days_of(plan: dict[str, Any], zone: str) -> Counter[str]:
    tz = ZoneInfo(zone)
    return Counter(
        datetime.fromisoformat(d["due_utc"]).astimezone(tz).date().isoformat()
        for d in plan["deliveries"]
    )


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_example(tmp_path_factory.mktemp("export") / "example")


@pytest.fixture(scope="module")
def december(example: Path) -> Path:
    """The example's December as a page (the default window: the month of --now)."""
    out = example / "december.html"
    code, output = export(example, "-o", str(out))
    assert code == 0, output
    assert f"wrote {out}: 73 deliveries in 1 month" in output
    assert [p.name for p in example.glob(".*.part")] == []  # written beside, then renamed
    return out


# ---- the file itself -------------------------------------------------------------------


def test_every_delivery_of_the_month_is_a_chip_in_its_day(example: Path, december: Path) -> None:
    plan = plan_json(example, "--from", "2026-12-01", "--to", "2026-12-31")
    page = chips_of(december.read_text(encoding="utf-8"))
    assert Counter(chip["day"] for chip in page.chips) == days_of(plan, "Europe/Athens")
    assert sorted(c["data-delivery"] for c in page.chips) == sorted(
        d["id"] for d in plan["deliveries"]
    )
    assert page.captions == ["December 2026"]


def test_the_window_options_are_plans(example: Path, tmp_path: Path) -> None:
    out = tmp_path / "two.html"
    code, output = export(example, "--from", "2026-12-20", "--days", "20", "-o", str(out))
    assert code == 0, output
    plan = plan_json(example, "--from", "2026-12-20", "--days", "20")
    page = chips_of(out.read_text(encoding="utf-8"))
    assert Counter(chip["day"] for chip in page.chips) == days_of(plan, "Europe/Athens")
    assert page.captions == ["December 2026", "January 2027"]
    # Days of the months outside the window are shown, greyed, and hold nothing.
    assert '<td data-date="2026-12-19" class="out">' in out.read_text(encoding="utf-8")


def test_no_member_address_reaches_the_page(december: Path) -> None:
    html = december.read_text(encoding="utf-8")
    addresses = []
    for path in (ROOT / "audiences").glob("*.csv"):
        for line in path.read_text(encoding="utf-8").splitlines()[1:]:
            addresses.append(line.split(",")[0])
    assert addresses and "6 members" in html  # the audience's size is shown instead
    assert [a for a in addresses if a in html] == []


def page_data(html: str) -> dict[str, Any]:
    """The dialogs' data: the JSON block the page's script reads."""
    start = html.index('<script type="application/json" id="commcal-data">')
    body = html[html.index(">", start) + 1 : html.index("</script>", start)]
    assert "<" not in body  # nothing in it can end the block
    data: dict[str, Any] = json.loads(body)
    return data


def test_the_webinar_carries_its_invitation(december: Path) -> None:
    groups = page_data(december.read_text(encoding="utf-8"))["groups"]
    invitations = dict(tuple(g[4]) for g in groups if g[4])  # one per event
    assert sorted(invitations) == ["christougenniatiki-vradia.ics", "dec-webinar.ics"]
    url = invitations["dec-webinar.ics"]
    assert url.startswith("data:text/calendar;charset=utf-8;method=PUBLISH;base64,")
    ics = base64.b64decode(url.split("base64,", 1)[1]).decode("utf-8")
    assert "BEGIN:VCALENDAR" in ics
    assert "UID:dec-webinar@community-en.commcal" in ics
    assert "DTSTART:20261210T180000Z" in ics  # 18:00 in London
    assert "DTEND:20261210T193000Z" in ics
    assert "DTSTAMP:20261201T000000Z" in ics  # pinned by --now: one plan, one page
    # Every reminder of the webinar offers the same invitation.
    reminders = [g for g in groups if g[4] and g[4][0] == "dec-webinar.ics"]
    assert {g[0].rsplit("(", 1)[1] for g in reminders} >= {"-7d)", "-1d)"}


def test_an_unknown_locale_is_a_usage_error(example: Path, tmp_path: Path) -> None:
    code, output = export(example, "--locale", "klingon", "-o", str(tmp_path / "x.html"))
    assert code == 2
    assert "--locale 'klingon': not a locale CLDR knows" in output
    assert not (tmp_path / "x.html").exists()


def test_a_mistyped_state_is_an_error_not_an_empty_ledger(example: Path, tmp_path: Path) -> None:
    code, output = export(
        example, "--state", "sqlite:///nowhere/state.db", "-o", str(tmp_path / "x.html")
    )
    assert code == 2
    assert "no ledger at" in output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--from", "2026-13-45"], "--from: '2026-13-45' is not a date"),
        (["--from", "2026-12-10", "--to", "2026-12-01"], "must be after the start"),
        (["-o", "/nonexistent/folder/x.html"], "-o /nonexistent/folder/x.html: cannot write"),
        (["--now", "garbage"], "--now"),
    ],
)
def test_bad_options_are_usage_errors(example: Path, args: list[str], said: str) -> None:
    result = CliRunner().invoke(app, ["-C", str(example), "export", "html", *args])
    assert result.exit_code == 2, result.output
    assert said in result.output
    assert "Traceback" not in result.output


def test_a_broken_calendar_stops_the_page_as_it_stops_plan(small: Path, tmp_path: Path) -> None:
    (small / "calendars" / "main.yaml").write_text("items:\n  - id: x\n    kind: pots\n")
    code, output = export(small, "-o", str(tmp_path / "x.html"))
    assert code == 1
    assert "calendars/main.yaml:3" in output
    assert not (tmp_path / "x.html").exists()


def test_standard_output(example: Path) -> None:
    code, output = export(example, "-o", "-", "--from", "2026-12-01", "--days", "1")
    assert code == 0
    assert output.startswith("<!doctype html>")


SMALL_CONFIG = """\
timezone: Europe/Athens
locale: en
channels:
  mastodon:
    type: mastodon
    instance: https://mastodon.example
    token: ${MASTODON_TOKEN}
  mail:
    type: smtp
    host: 127.0.0.1
    from: "Us <us@example.org>"
    to: members@example.org
"""

SMALL_CALENDAR = """\
items:
  - id: long-post
    kind: post
    template: posts/long
    channels: [mastodon]
    at: 2026-12-03 10:00
  - id: sketch
    kind: post
    draft: true
    template: posts/say
    channels: [mastodon]
    at: 2026-12-04 10:00
    vars: {body: "Not yet"}
  - id: letter
    kind: newsletter
    audience: members
    template: letters/hi
    channels: [mail]
    at: 2026-12-05 09:00
  - id: hostile
    kind: post
    template: posts/say
    channels: [mastodon]
    at: 2026-12-06 10:00
    vars:
      body: '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2"> & friends'
"""

SMALL_TEMPLATES = {
    "posts/long.j2": "{{ 'word ' * 120 }}\n",
    "posts/say.j2": "{{ body }}\n",
    "letters/hi.j2": (
        "{% block subject %}Hello {{ member.first_name }}{% endblock %}\n"
        "{% block text %}Dear {{ member.name }}, this goes to {{ member.email }}.{% endblock %}\n"
    ),
}


@pytest.fixture
def small(make_project: Any) -> Path:
    root: Path = make_project(
        config=SMALL_CONFIG,
        calendars={"main.yaml": SMALL_CALENDAR},
        templates=SMALL_TEMPLATES,
    )
    (root / "audiences").mkdir()
    (root / "audiences" / "members.csv").write_text(
        "email,name\nana@example.org,Ana Lima\nbo@example.org,Bo Berg\n", encoding="utf-8"
    )
    return root


def suppress_everyone(root: Path) -> None:
    from commcal import members
    from commcal.ledger import open_ledger

    with open_ledger("sqlite:///.commcal/state.db", project_dir=root) as ledger:
        members.suppress(
            ledger,
            ["ana@example.org", "bo@example.org"],
            remove=False,
            source="cli",
            now=datetime(2026, 11, 30, tzinfo=UTC),
        )


def test_what_needs_attention_stands_out(small: Path, tmp_path: Path) -> None:
    suppress_everyone(small)
    out = tmp_path / "small.html"
    code, output = export(small, "-o", str(out))
    assert code == 1, output  # like plan: deliveries with problems
    assert "4 deliveries in 1 month, 1 with problems" in output
    html = out.read_text(encoding="utf-8")
    chips = {c["data-delivery"]: c for c in chips_of(html).chips}
    by_day = {c["day"]: c["class"].split() for c in chips.values()}
    assert "over" in by_day["2026-12-03"]
    assert "draft" in by_day["2026-12-04"]
    assert "suppressed" in by_day["2026-12-05"]
    assert by_day["2026-12-06"] == ["chip", "ch-0"]
    assert "599 / 500" in html  # counted the way `plan` counts it (the last space trimmed)
    assert "2 members; 2 of the audience's 2 are suppressed" in html
    # The mail preview is rendered for a member, whose address is masked.
    assert "ana@example.org" not in html and "bo@example.org" not in html
    assert "Dear Ana Lima, this goes to ‹member address›." in html


def test_without_a_ledger_nothing_is_suppressed(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "small.html"
    export(small, "-o", str(out))
    by_day = {c["day"]: c["class"].split() for c in chips_of(out.read_text("utf-8")).chips}
    assert "suppressed" not in by_day["2026-12-05"]
    assert not (small / ".commcal").exists()  # and none was created


def test_member_text_is_escaped(small: Path, tmp_path: Path) -> None:
    out = tmp_path / "small.html"
    export(small, "-o", str(out))
    html = out.read_text(encoding="utf-8")
    assert "<script>window.pwned" not in html and "<img src=x" not in html
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in html


PIECES = ["<", ">", "&", '"', "'", "<b>", "</span>", "<script>", "&amp;", "&lt;", "-->", " ", "\n"]
TEXT = st.lists(
    st.sampled_from(PIECES)
    | st.text(
        st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\u2028\u2029"),
        max_size=4,
    ),
    min_size=1,
    max_size=20,
).map("".join)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=TEXT)
def test_any_text_comes_back_exactly_and_only_as_text(tmp_path: Path, body: str) -> None:
    """Whatever a post says, the chip shows its first words and the dialog's data holds the
    whole text, read back exactly; no element or attribute comes out of it."""
    root = tmp_path / "any"
    shutil.rmtree(root, ignore_errors=True)
    (root / "calendars").mkdir(parents=True)
    (root / "templates" / "posts").mkdir(parents=True)
    (root / "commcal.yaml").write_text(
        "timezone: UTC\nchannels:\n  console: {type: console}\n", encoding="utf-8"
    )
    (root / "templates" / "posts" / "say.j2").write_text("{{ body }}", encoding="utf-8")
    calendar = (
        "items:\n  - id: any\n    kind: post\n    template: posts/say\n"
        "    channels: [console]\n    at: 2026-12-03 10:00\n"
        f"    vars: {{body: {json.dumps(body)}}}\n"
    )
    (root / "calendars" / "main.yaml").write_text(calendar, encoding="utf-8")
    project = load_project(root, env={})
    assume(not project.errors)
    start = datetime(2026, 12, 1, tzinfo=UTC)
    planned = plan(project, start, start + timedelta(days=7))
    assert len(planned) == 1 and planned[0].message is not None
    text = planned[0].message.text
    page = build_page(project, start, start + timedelta(days=7), locale="en", now=start)
    words = Words()
    words.feed(page.html)
    assert words.chips == [_first_words(text)]
    assert words.tags <= ALLOWED_TAGS
    (variant,) = page_data(page.html)["groups"][0][5]
    assert variant[8] == text


# Every element the page's frame and chips may hold: a text that made another would be markup.
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "h1", "p", "time", "strong",
    "nav", "h2", "fieldset", "legend", "label", "input", "span", "div", "h3", "ul", "li",
    "section", "code", "main", "table", "caption", "thead", "tr", "th", "abbr", "tbody", "td",
    "button", "dialog", "script",
}  # fmt: skip


class Words(HTMLParser):
    """Each chip's words (the text of its `span.w`), and every tag name seen."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chips: list[str] = []
        self.tags: set[str] = set()
        self.inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag == "span" and ("class", "w") in attrs:
            self.inside = True
            self.chips.append("")

    def handle_endtag(self, tag: str) -> None:
        self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.chips[-1] += data


def test_lint_findings_are_attached_to_their_item(small: Path) -> None:
    project = load_project(small, env={})
    line = SMALL_CALENDAR.splitlines().index("  - id: hostile") + 1
    where = Pos("calendars/main.yaml", line + 3, 5)
    finding = Problem(where, "three posts on mastodon in a day", "max 2", "warning")
    elsewhere = Problem(Pos("commcal.yaml", 2, 1), "a project-wide rule", severity="warning")
    start = datetime(2026, 11, 30, 22, tzinfo=UTC)
    page = build_page(
        project,
        start,
        start + timedelta(days=31),
        locale="en",
        now=start,
        findings=[finding, elsewhere],
    )
    by_day = {c["day"]: c["class"].split() for c in chips_of(page.html).chips}
    assert "lint" in by_day["2026-12-06"]
    assert [day for day, classes in by_day.items() if "lint" in classes] == ["2026-12-06"]
    assert "three posts on mastodon in a day (max 2)" in page.html
    assert "a project-wide rule" in page.html  # listed at the top


# ---- in the browser --------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    required = os.environ.get("COMMCAL_REQUIRE_CHROMIUM") == "1"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the dev extra installs it
        if required:
            pytest.fail("COMMCAL_REQUIRE_CHROMIUM=1 but playwright is not installed")
        pytest.skip("playwright is not installed")
    if not CHROMIUM.exists():
        if required:
            pytest.fail(f"COMMCAL_REQUIRE_CHROMIUM=1 but {CHROMIUM} is missing")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


class Opened:
    """A page of the browser on a file, recording every request other than the file itself."""

    def __init__(self, browser: Any, path: Path, *, bypass_csp: bool = False) -> None:
        self.url = path.resolve().as_uri()
        self.requests: list[str] = []
        self.errors: list[str] = []
        # bypass_csp: the page's own Content-Security-Policy off, so that only its markup keeps
        # it from loading or running anything (the policy is a second wall, tested on its own).
        self.context = browser.new_context(viewport=VIEWPORT, bypass_csp=bypass_csp)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", self._console)
        self.page.route("**/*", self._route)
        self.page.goto(self.url)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def _route(self, route: Any) -> None:
        if route.request.url == self.url:
            route.continue_()
        else:
            self.requests.append(route.request.url)
            route.abort()

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def opened(browser: Any, december: Path) -> Iterator[Opened]:
    page = Opened(browser, december, bypass_csp=True)
    yield page
    page.close()


def test_in_chromium_each_day_holds_its_deliveries(opened: Opened, example: Path) -> None:
    plan = plan_json(example, "--from", "2026-12-01", "--to", "2026-12-31")
    shown = opened.page.evaluate(
        """() => Object.fromEntries(Array.from(document.querySelectorAll('td[data-date]'))
            .map(td => [td.dataset.date, td.querySelectorAll('button.chip').length])
            .filter(([, n]) => n > 0))"""
    )
    assert Counter(shown) == days_of(plan, "Europe/Athens")
    assert opened.requests == [] and opened.errors == []


def test_a_click_opens_every_channel_variant(opened: Opened, example: Path) -> None:
    plan = plan_json(example, "--from", "2026-12-01", "--to", "2026-12-31")
    webinar = [d for d in plan["deliveries"] if d["item"] == "dec-webinar" and d["step"] == "-1d"]
    assert len(webinar) > 1
    page = opened.page
    chip = page.locator(f'button.chip[data-delivery="{webinar[0]["id"]}"]')
    chip.click()
    dialog = page.locator("dialog#detail")
    assert dialog.evaluate("d => d.open")
    assert page.evaluate("document.activeElement.id") == "detail-close"
    text = dialog.inner_text()
    for delivery in webinar:
        assert delivery["channel"] in text
        assert " ".join(delivery["text"].split()[:8]) in " ".join(text.split())
        if delivery["limit"]:
            assert f"{delivery['length']} / {delivery['limit']}" in text
        if delivery["recipients"] is not None:
            assert f"{delivery['recipients']} members" in text
    assert dialog.locator("a.ics[download]").count() == 1
    page.keyboard.press("Escape")
    assert not dialog.evaluate("d => d.open")
    # Focus goes back to the chip, and the keyboard alone opens it again.
    assert page.evaluate("document.activeElement.dataset.delivery") == webinar[0]["id"]
    page.keyboard.press("Enter")
    assert dialog.evaluate("d => d.open")
    page.keyboard.press("Tab")  # focus stays inside the modal dialog
    assert page.evaluate("document.getElementById('detail').contains(document.activeElement)")
    assert opened.requests == [] and opened.errors == []


def test_filters_hide_and_count(opened: Opened) -> None:
    page = opened.page
    total = page.locator("button.chip").count()
    telegram = page.locator('li[data-channel="telegram"]').count()
    page.get_by_label("telegram").uncheck()
    assert page.locator(".chips li:not([hidden])").count() == total - telegram
    assert page.locator("#shown").inner_text() == f"{total - telegram} of {total} deliveries shown"
    page.get_by_label("telegram").check()
    assert page.locator(".chips li:not([hidden])").count() == total


@pytest.mark.parametrize(
    ("locale", "caption", "monday"),
    [("el", "Δεκέμβριος 2026", "Δευτέρα"), ("sw", "Desemba 2026", "Jumatatu")],
)
def test_month_and_weekday_names_in_the_locale(
    browser: Any, example: Path, tmp_path: Path, locale: str, caption: str, monday: str
) -> None:
    out = tmp_path / f"{locale}.html"
    code, output = export(example, "--locale", locale, "-o", str(out))
    assert code == 0, output
    opened = Opened(browser, out)
    try:
        page = opened.page
        assert page.locator("table.month caption").inner_text() == caption
        assert page.locator("html").get_attribute("lang") == locale
        assert page.locator("thead th abbr").first.get_attribute("title") == monday
    finally:
        opened.close()


def serious(results: Any) -> list[str]:
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes'][:3]]}"
        for v in results.response["violations"]
        if v["impact"] in {"serious", "critical"}
    ]


def test_axe_finds_no_serious_violation(opened: Opened) -> None:
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    assert serious(axe.run(opened.page)) == []
    opened.page.locator("button.chip").first.click()  # and with the dialog open
    assert serious(axe.run(opened.page)) == []


def test_axe_on_the_marks_of_what_needs_attention(
    browser: Any, small: Path, tmp_path: Path
) -> None:
    from axe_playwright_python.sync_playwright import Axe

    suppress_everyone(small)
    out = tmp_path / "small.html"
    export(small, "-o", str(out))
    opened = Opened(browser, out, bypass_csp=True)
    try:
        assert serious(Axe().run(opened.page)) == []
        opened.page.locator("td[data-date='2026-12-03'] button.chip").click()  # over the limit
        assert "over the limit" in opened.page.locator("#detail-body").inner_text()
        assert serious(Axe().run(opened.page)) == []
    finally:
        opened.close()


def png_facts(data: bytes) -> tuple[int, int, set[bytes]]:
    """Width, height and the distinct pixels of an 8-bit RGB(A) PNG (stdlib only)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width = height = 0
    kind = 0
    idat = b""
    at = 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        name, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        if name == b"IHDR":
            width, height, depth, kind = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and kind in {2, 6}
        elif name == b"IDAT":
            idat += body
        at += 12 + length
    size = 3 if kind == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * size + 1
    # The filter byte leads each row; unfiltered pixels are not needed to tell colours apart:
    # the set of distinct (filtered) pixel bytes is one value only for a one-colour image.
    pixels = {
        raw[row * stride + 1 + n : row * stride + 1 + n + size]
        for row in range(0, height, 7)
        for n in range(0, width * size, size * 5)
    }
    return width, height, pixels


def test_the_screenshot_shows_the_month(opened: Opened, tmp_path: Path) -> None:
    shot = tmp_path / "december.png"
    opened.page.screenshot(path=str(shot))
    width, height, pixels = png_facts(shot.read_bytes())
    assert (width, height) == (VIEWPORT["width"], VIEWPORT["height"])
    assert len(pixels) > 20  # not one colour: a month of chips


def test_printed_the_controls_go_and_channels_are_named(opened: Opened) -> None:
    page = opened.page
    page.emulate_media(media="print")
    assert not page.locator("nav.controls").is_visible()
    name = page.locator("button.chip .chn").first
    assert name.bounding_box()["width"] > 10  # on paper colour may be lost: the name is written
    page.emulate_media(media="screen")
    assert page.locator("nav.controls").is_visible()
    assert page.locator("button.chip .chn").first.bounding_box()["width"] <= 1


@pytest.mark.parametrize("bypass_csp", [False, True], ids=["with its CSP", "escaping alone"])
def test_a_script_in_a_post_does_not_run(
    browser: Any, small: Path, tmp_path: Path, bypass_csp: bool
) -> None:
    out = tmp_path / "small.html"
    export(small, "-o", str(out))
    opened = Opened(browser, out, bypass_csp=bypass_csp)
    try:
        page = opened.page
        chip = page.locator("td[data-date='2026-12-06'] button.chip")
        assert "<script>window.pwned = 1</script>" in chip.inner_text()
        chip.click()
        body = page.locator("#detail-body").inner_text()
        assert '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">' in body
        assert page.evaluate("typeof window.pwned") == "undefined"
        assert opened.requests == []
        assert opened.errors == []  # the policy lets the page's own style and script run
    finally:
        opened.close()


# ---- --with-status: the queue on the page ---------------------------------------------------


def status_page(root: Path, env: dict[str, str], out: Path, *args: str) -> str:
    from tests.test_publish import cli

    code, said, err = cli(
        root, "export", "html", "--now", QUEUE_NOW, "-o", str(out), *args, env=env
    )
    assert code == 0, (said, err)
    return out.read_text(encoding="utf-8")


def variants_by_id(html: str) -> dict[str, list[Any]]:
    return {v[0]: v for group in page_data(html)["groups"] for v in group[-1]}


def test_with_status_each_chip_says_what_the_ledger_recorded(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """After a real publish (sent on hook, HTTP 400 on broken, a timed-out answer on chat):
    the chips carry those states, the dialog the URL of the sent post; the next is unmarked."""
    root, env = request.getfixturevalue("published")
    before = (root / "state.db").read_bytes()
    html = status_page(root, env, tmp_path / "q.html", "--with-status")
    assert (root / "state.db").read_bytes() == before  # the ledger is only read
    chips = chips_of(html).chips
    marks = sorted(
        next((c for c in chip["class"].split() if c.startswith("st-")), "none") for chip in chips
    )
    assert marks == ["none", "st-failed", "st-sent", "st-unknown"]
    variants = variants_by_id(html)
    by_state = {v[12][0]: v[12] for v in variants.values()}
    assert set(by_state) == {"sent", "failed", "unknown", "next"}
    _, url, linked = by_state["sent"]
    assert url.startswith("http://127.0.0.1:") and linked is True
    assert by_state["failed"][1] is None
    assert "✓ sent (the dialog links to it)" in html.replace("</span>", "").replace(
        '<span class="mark st-sent">', ""
    )
    plain = status_page(root, env, tmp_path / "plain.html")
    assert "st-" not in " ".join(c["class"] for c in chips_of(plain).chips)
    assert all(v[12] is None for v in variants_by_id(plain).values())


def test_with_status_a_hostile_url_is_never_a_link(
    request: pytest.FixtureRequest, tmp_path: Path, browser: Any
) -> None:
    """A URL in the ledger came from a network's answer or `resolve --sent`: a `javascript:`
    one is shown as text. In Chromium: the sent post's URL is a link, the hostile one is not,
    and axe finds nothing serious with the status marks and a dialog open."""
    from axe_playwright_python.sync_playwright import Axe

    from tests.test_publish import cli

    root, env = request.getfixturevalue("published")
    unknown = next(
        c["data-delivery"]
        for c in chips_of(status_page(root, env, tmp_path / "a.html", "--with-status")).chips
        if "st-unknown" in c["class"]
    )
    hostile = "javascript:window.pwned=1"
    code, said, err = cli(root, "resolve", unknown, "--sent", hostile, "--now", QUEUE_NOW, env=env)
    assert code == 0, (said, err)
    out = tmp_path / "b.html"
    html = status_page(root, env, out, "--with-status")
    statuses = [v[12] for v in variants_by_id(html).values()]
    assert [hostile, False] in [s[1:] for s in statuses]
    opened = Opened(browser, out, bypass_csp=True)
    try:
        page = opened.page
        for chip in page.locator("button.chip.st-sent").all():
            chip.click()
            body = page.locator("#detail-body")
            hrefs = body.locator("a").evaluate_all("links => links.map(a => a.href)")
            assert not [h for h in hrefs if h.startswith("javascript:")]
            assert "Status" in body.inner_text()
            page.locator("#detail-close").click()
        assert page.evaluate("window.pwned") is None
        page.locator("button.chip.st-sent").first.click()
        assert serious(Axe().run(page)) == []
        assert opened.requests == []
    finally:
        opened.close()
