"""Hostile networks and hostile replies against `commcal pull`, `inbox`, `kb export` and `report`:
what comes back from the world is data, never markup, never an address, never a crash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pull_support import ENV, FakeMastodon, mastodon_project, record_sent
from pytest_httpserver import HTTPServer
from test_pull_networks import ENV as SKY_ENV
from test_pull_networks import ROOT_URI, bluesky, db, post_view, project, pull_json
from test_tracking import serve  # noqa: F401  (the fixture)
from typer.testing import CliRunner

from commcal.cli import app
from commcal.ledger import open_ledger
from tests.test_community import run as run_community

NOW = "2026-12-05T12:00:00Z"


def test_a_bluesky_appview_naming_an_author_by_e_mail_costs_no_post_and_stores_no_address(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    # A hostile (or broken) AppView answers with a handle that is an e-mail address: the
    # ledger refuses such an author, and that refusal must not abort the whole pull.
    root_view = post_view(ROOT_URI, "did:plc:team4acme", "acme.bsky.social", "Our post")
    mary = "at://did:plc:mary/app.bsky.feed.post/3lmary1"
    ana = "at://did:plc:ana/app.bsky.feed.post/3lana1"
    # And one whose handle the AppView could not verify (its answer is "handle.invalid").
    bad = "at://did:plc:bad/app.bsky.feed.post/3lbad1"
    httpserver.expect_request("/appview/xrpc/app.bsky.feed.getPostThread").respond_with_json(
        {
            "thread": {
                "post": root_view,
                "replies": [
                    {
                        "post": post_view(
                            mary, "did:plc:mary", "mary@example.org", "When?", ROOT_URI
                        )
                    },
                    {"post": post_view(ana, "did:plc:ana", "ana.bsky.social", "Where?", ROOT_URI)},
                    {"post": post_view(bad, "did:plc:bad", "handle.invalid", "Who?", ROOT_URI)},
                ],
            }
        }
    )
    root = project(tmp_path, bluesky(httpserver, httpserver.url_for("/appview")))
    record_sent(db(root), [("d-sky", "sky", ROOT_URI)])
    code, data = pull_json(root, SKY_ENV)
    assert code == 0, data
    assert data["posts"][0]["outcome"] == "pulled"
    assert data["posts"][0]["new_replies"] == 3
    with open_ledger(db(root)) as ledger:
        replies = {r.text: r for r in ledger.replies()}
    assert replies["When?"].author == "did:plc:mary"
    assert replies["Who?"].author == "did:plc:bad"
    assert replies["Who?"].url == "https://bsky.app/profile/did:plc:bad/post/3lbad1"
    assert replies["When?"].url == "https://bsky.app/profile/did:plc:mary/post/3lmary1"
    assert "example.org" not in (root / "state.db").read_bytes().decode("latin-1")


def test_a_plugin_reader_naming_an_author_by_e_mail_has_it_masked_not_the_run_aborted(
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime

    from commcal.engagement import pull as pulling
    from commcal.engagement.model import Reply

    def naming(channel: Any, post: Any, cursor: Any, gate: Any) -> Any:
        found = Reply(
            id=f"masto:r-{post.remote_id}", delivery_id=post.delivery_id, channel="masto",
            remote_id=f"r-{post.remote_id}", parent_id=post.remote_id,
            author="mary.smith@example.org", text="When do you open?",
            created_at=datetime(2026, 12, 1, 10, tzinfo=UTC),
        )  # fmt: skip
        return pulling.Pulled(likes=1, new_replies=(found,))

    with FakeMastodon() as masto:
        root = mastodon_project(tmp_path, masto.url)
        record_sent(db(root), [("d-1", "masto", "101"), ("d-2", "masto", "102")])
        pulling.register_reader("mastodon", naming)
        try:
            result = CliRunner().invoke(
                app, ["-C", str(root), "pull", "--now", NOW, "-f", "json"], env=ENV
            )
        finally:
            pulling._registered.pop("mastodon")
    assert result.exit_code == 0, result.output
    assert [p["outcome"] for p in json.loads(result.stdout)["posts"]] == ["pulled", "pulled"]
    with open_ledger(db(root)) as ledger:
        assert {r.author for r in ledger.replies()} == {"m***@example.org"}
    assert b"mary.smith" not in (root / "state.db").read_bytes()


# ---- replies that carry markup -------------------------------------------------------------

HOSTILE = [
    "</table><script>alert(1)</script> when do you open?",
    "[free tickets](javascript:alert(1)) how do I get one?",
    "<javascript:alert(1)> where is it?",
    '<img src=x onerror="alert(1)"> | pipes | in | text | why?',
    "---\ntitle: owned\n--- is this yaml?",
    "# big heading? `code` ![img](https://evil.example/x.png)",
]


def hostile_project(make_project: Any) -> Path:
    from datetime import UTC, datetime, timedelta

    from engagement_fixtures import COMMUNITY, CONFIG, reply, sent, store

    t = datetime(2026, 12, 1, 8, tzinfo=UTC)
    root: Path = make_project(config=CONFIG, calendars={"community.yaml": COMMUNITY})
    sent(root, [("d1", "community", "weekly-tip", "mastodon", t)])
    replies, marks = [], []
    for n, text in enumerate(HOSTILE, start=1):
        replies.append(reply(n, text, t + timedelta(hours=n), lang="en"))
        answer = f"<b>{text}</b> [ok](javascript:x)"
        replies.append(reply(100 + n, answer, t + timedelta(hours=n, minutes=5), parent=str(n),
                             by_team=True, author="@us@x"))  # fmt: skip
        marks.append((f"mastodon:{n}", "kb"))
    store(root, replies, marks=marks)
    return root


def rendered(markdown: str) -> str:
    from markdown_it import MarkdownIt

    # Raw HTML on (as many static-site generators have it), so an unescaped tag would show.
    html: str = MarkdownIt("commonmark", {"html": True}).render(markdown)
    return html


def assert_inert(html: str) -> None:
    assert "<script" not in html and "<img" not in html and "</table><script" not in html
    assert "<a href" not in html.replace('<a href="https://x/d1">', "")  # only the thread link
    assert "javascript:" not in html.split('"')[1::2]  # no attribute holds a javascript: URL


def test_kb_export_keeps_replies_markup_as_text_and_its_front_matter_valid(
    make_project: Any, tmp_path: Path
) -> None:
    import yaml

    root = hostile_project(make_project)
    out = tmp_path / "kb"
    result = CliRunner().invoke(app, ["-C", str(root), "kb", "export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    (page,) = out.iterdir()
    text = page.read_text(encoding="utf-8")
    head, sep, body = text.removeprefix("---\n").partition("\n---\n")
    assert sep and yaml.safe_load(head)["title"] == "general"
    assert "owned" not in head
    html = rendered(body)
    assert_inert(html)
    # The words are all still there, as text: nothing a member wrote is lost.
    assert "&lt;/table&gt;&lt;script&gt;alert(1)&lt;/script&gt; when do you open?" in html
    assert "[free tickets](javascript:alert(1)) how do I get one?" in html
    assert "# big heading?" in html


def test_inbox_markdown_keeps_replies_markup_as_text_inside_its_table(make_project: Any) -> None:
    root = hostile_project(make_project)
    result = CliRunner().invoke(
        app, ["-C", str(root), "inbox", "--all", "--now", NOW, "--format", "markdown"]
    )
    assert result.exit_code == 0, result.output
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 2 * len(HOSTILE)  # header, rule, one row per reply: no row broken
    html = rendered(result.stdout)
    assert_inert(html)
    assert "&lt;/table&gt;&lt;script&gt;" in html or "&lt;/table&gt;" in html


def test_report_csv_neutralises_cells_a_spreadsheet_would_run_as_formulas(
    make_project: Any,
) -> None:
    # OWASP CSV injection (https://owasp.org/www-community/attacks/CSV_Injection): a cell that
    # starts with = + - @ (or a tab / carriage return) is a formula to Excel and LibreOffice.
    import csv
    import io
    from datetime import UTC, datetime, timedelta

    from engagement_fixtures import CONFIG, sent, store

    from commcal.engagement.model import Snapshot

    t = datetime(2026, 12, 1, 8, tzinfo=UTC)
    root: Path = make_project(config=CONFIG)
    evil = ['=HYPERLINK("https://evil.example")', "+1+1", "-2+3", "@SUM(A1)", "\t=1"]
    sent(root, [(f"d{n}", c, "tip", "mastodon", t) for n, c in enumerate(evil)])
    store(root, snapshots=[
        Snapshot(f"d{n}", "mastodon", f"post-d{n}", t + timedelta(hours=25), t, likes=n)
        for n in range(len(evil))
    ])  # fmt: skip
    result = CliRunner().invoke(app, ["-C", str(root), "report", "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    keys = sorted(row[0] for row in rows[1:])
    assert keys == sorted(f"'{c}/tip" for c in evil)
    for row in rows[1:]:
        assert all(not cell or cell[0] not in "=+-@\t\r" for cell in row), row


# ---- hostile servers during a pull --------------------------------------------------------


def masto_pull(root: Path) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        app, ["-C", str(root), "pull", "--now", NOW, "-f", "json", "--max-wait", "2"], env=ENV
    )
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def test_deeply_nested_json_costs_one_post_not_the_run(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    from pull_support import status

    deep = '{"descendants": ' + "[" * 100_000 + "]" * 100_000 + "}"
    httpserver.expect_request("/api/v1/statuses/101").respond_with_json(status("101", likes=1))
    httpserver.expect_request("/api/v1/statuses/101/context").respond_with_data(
        deep, content_type="application/json"
    )
    httpserver.expect_request("/api/v1/statuses/102").respond_with_json(status("102", likes=2))
    httpserver.expect_request("/api/v1/statuses/102/context").respond_with_json(
        {"ancestors": [], "descendants": []}
    )
    root = mastodon_project(tmp_path, httpserver.url_for("").rstrip("/"))
    record_sent(db(root), [("d-1", "masto", "101"), ("d-2", "masto", "102")])
    code, data = masto_pull(root)
    assert code == 1
    first, second = data["posts"]
    assert first["outcome"] == "error" and "could not be read" in first["note"]
    assert (second["outcome"], second["likes"]) == ("pulled", 2)


def test_a_retry_after_that_is_no_number_of_seconds_is_a_short_wait_not_a_huge_one(
    tmp_path: Path,
) -> None:
    # RFC 9110 10.2.3: Retry-After is delay-seconds (digits) or an HTTP-date. "inf", "1e308",
    # "nan" and "-5" are neither: the pull waits its usual second and goes on, instead of
    # stopping the channel "rate limited (resets in inf s)" (or a 309-digit number).
    for nonsense in ("inf", "1e308"):
        with FakeMastodon() as masto:
            masto.add("101", likes=3)
            masto.too_many, masto.retry_after = 1, nonsense
            root = mastodon_project(tmp_path / nonsense, masto.url)
            record_sent(db(root), [("d-1", "masto", "101")])
            code, data = masto_pull(root)
        assert (code, data["stopped"]) == (0, {}), nonsense
        assert (data["posts"][0]["outcome"], data["posts"][0]["likes"]) == ("pulled", 3)


# ---- mistyped options ------------------------------------------------------------------------


def test_a_mistyped_grouping_names_the_closest_and_exits_2(make_project: Any) -> None:
    root = make_project()
    for args, message in (
        (["report", "--by", "weekdy"], "--by 'weekdy': no such grouping; did you mean 'weekday'?"),
        (["report", "--by", "zzz"], "--by 'zzz': no such grouping; expected one of: channel, "
         "hour, item, kind, weekday"),
        (["kb", "export", "--group", "keywrd"],
         "--group 'keywrd': no such grouping; did you mean 'keyword'?"),
    ):  # fmt: skip
        result = CliRunner().invoke(app, ["-C", str(root), *args])
        assert (result.exit_code, result.stdout) == (2, ""), result.output
        assert result.stderr == f"commcal: {message}\n"


# ---- click tracking and survey answers, on the real server ---------------------------------


def mailed_and_served(
    make_project: Any, smtp: Any, servers: Any, template: str | None = None
) -> tuple[Path, str]:
    """A members' survey published through real SMTP with tracking and answers on (its
    template replaced by `template` if given), the real unsubscribe server started; the
    project and ann's mail."""
    from test_tracking import ann_mail, free_port, start
    from test_tracking import project as tracking_project

    smtp_port, box = smtp
    port = free_port()
    root = tracking_project(
        make_project, smtp_port, port, "  track_clicks: true\n  survey_responses: true\n"
    )
    if template is not None:
        (root / "templates" / "surveys" / "feedback.j2").write_text(template, encoding="utf-8")
    published = run_community(root, "publish", "--now", "2026-12-05T10:00:30Z")
    assert published.exit_code == 0, published.output
    start(root, port, servers)
    return root, ann_mail(box)


def test_survey_answers_keep_no_address_and_hostile_bodies_are_refused_cleanly(
    make_project: Any,
    smtp: Any,
    serve: Any,  # noqa: F811
) -> None:
    import re

    import requests

    root, mail = mailed_and_served(make_project, smtp, serve)
    answer = re.search(r"Rate us: (\S+)", mail)
    assert answer
    url = answer.group(1)
    # A member writes an address into the free text (theirs or a friend's), or a crafted
    # link carries one in a hidden field: the ledger keeps neither.
    sent = requests.post(
        url, data={"why": "call me: ann.b@example.org", "email": "ann.b@example.org"}, timeout=10
    )
    assert sent.status_code == 200
    deep = requests.post(
        url, data="[" * 30_000, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert deep.status_code == 400  # not a 500 with a RecursionError in the log
    latin1 = requests.post(url, data="why=caf\xe9".encode("latin-1"), timeout=10)
    assert latin1.status_code == 400
    huge = requests.post(url, data=b"why=" + b"x" * 10_000_000, timeout=30)
    assert huge.status_code in (400, 413)
    assert requests.post(url, data={"why": "still up"}, timeout=10).status_code == 200
    with open_ledger(f"sqlite:///{root / 'state.db'}") as ledger:
        answers = [dict(a.answers) for a in ledger.survey_responses()]
    assert answers == [
        {"why": ["call me: a***@example.org"], "email": ["a***@example.org"]},
        {"why": ["still up"]},
    ]
    assert b"ann.b@" not in (root / "state.db").read_bytes()


def test_a_pds_echoing_the_session_and_app_password_in_its_error_stores_neither(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    from test_pull_networks import ACCESS, TEAM

    httpserver.expect_request(
        "/pds/xrpc/com.atproto.server.createSession", method="POST"
    ).respond_with_json(
        {"did": TEAM, "handle": "acme.bsky.social", "accessJwt": ACCESS, "refreshJwt": "r.e.f"}
    )
    echo = f"upstream failed for Bearer {ACCESS} (password {SKY_ENV['BSKY_PW']})"
    httpserver.expect_request("/pds/xrpc/app.bsky.feed.getPostThread").respond_with_json(
        {"error": "InvalidRequest", "message": echo}, status=400
    )
    root = project(tmp_path, bluesky(httpserver, "pds"))
    record_sent(db(root), [("d-sky", "sky", ROOT_URI)])
    code, data = pull_json(root, SKY_ENV)
    assert (code, data["posts"][0]["outcome"]) == (1, "error")
    shown = json.dumps(data)
    stored = (root / "state.db").read_bytes()
    for secret in (ACCESS, SKY_ENV["BSKY_PW"]):
        assert secret not in shown and secret.encode() not in stored
    assert "upstream failed" in shown


def test_matrix_pages_that_repeat_events_or_loop_count_each_event_once(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    # A homeserver whose next_batch never ends (it hands back the same token) and whose pages
    # repeat events: each reaction and reply counts once, and the paging stops at the loop.
    room, event = "!room:example.org", "$post1"
    httpserver.expect_request(f"/_matrix/client/v3/rooms/{room}/event/{event}").respond_with_json(
        {"event_id": event, "sender": "@bot:example.org", "content": {"body": "Our post"}}
    )

    def related(n: int, kind: str, relation: dict[str, Any]) -> dict[str, Any]:
        content: dict[str, Any] = {"m.relates_to": {"event_id": event, **relation}}
        if kind == "m.room.message":
            content["body"] = f"reply {n}?"
        return {"event_id": f"$e{n}", "type": kind, "sender": "@ana:example.org",
                "origin_server_ts": 1764579600000 + n, "content": content}  # fmt: skip

    chunk = [
        related(1, "m.reaction", {"rel_type": "m.annotation", "key": "👍"}),
        related(2, "m.room.message", {"rel_type": "m.thread"}),
        related(3, "m.room.message", {"rel_type": "m.replace"}),  # an edit: not a reply
        related(4, "m.room.message", {"rel_type": "org.example.unknown"}),
    ]
    httpserver.expect_request(
        f"/_matrix/client/v1/rooms/{room}/relations/{event}"
    ).respond_with_json({"chunk": chunk, "next_batch": "same-token-forever"})
    channels = (
        f"  room:\n    type: matrix\n    homeserver: {httpserver.url_for('').rstrip('/')}\n"
        f"    access_token: ${{MATRIX_TOKEN}}\n    room_id: '{room}'\n"
    )
    root = project(tmp_path, channels)
    record_sent(db(root), [("d-mx", "room", event)])
    code, data = pull_json(root, {"MATRIX_TOKEN": "mx-secret-token"})
    assert code == 0, data
    (post,) = data["posts"]
    assert (post["likes"], post["replies"], post["new_replies"]) == (1, 1, 1)
    pages = [r for r, _ in httpserver.log if "/relations/" in r.path]
    assert len(pages) <= 2


def test_kb_front_matter_stays_yaml_with_a_post_link_holding_control_characters(
    make_project: Any, tmp_path: Path
) -> None:
    # The post's link is what the network answered at publish; YAML refuses raw C1 controls
    # and DEL (https://yaml.org/spec/1.2.2/#51-character-set) and folds a raw NEL (U+0085).
    from datetime import UTC, datetime, timedelta

    import yaml
    from engagement_fixtures import COMMUNITY, CONFIG, reply, sent, store

    t = datetime(2026, 12, 1, 8, tzinfo=UTC)
    odd = "d\x7f\x85\x9f\u2028"
    root: Path = make_project(config=CONFIG, calendars={"community.yaml": COMMUNITY})
    sent(root, [(odd, "community", "weekly-tip", "mastodon", t)])
    store(
        root,
        [reply(1, "When?", t + timedelta(hours=1), delivery=odd),
         reply(2, "Friday", t + timedelta(hours=2), delivery=odd, parent="1", by_team=True)],
        marks=[("mastodon:1", "kb")],
    )  # fmt: skip
    out = tmp_path / "kb"
    result = CliRunner().invoke(app, ["-C", str(root), "kb", "export", "--out", str(out)])
    assert result.exit_code == 0, result.output
    head = (out / "general.md").read_text(encoding="utf-8").removeprefix("---\n")
    assert yaml.safe_load(head.partition("\n---\n")[0])["sources"] == [f"https://x/{odd}"]


def test_durations_too_long_for_a_calendar_are_answered_not_a_traceback(tmp_path: Path) -> None:
    with FakeMastodon() as masto:
        masto.add("101", likes=3)
        root = mastodon_project(tmp_path, masto.url)
        record_sent(db(root), [("d-1", "masto", "101")])
        # "Since forever": every sent post is read.
        for since in ("99999999d", "999999999999w"):
            result = CliRunner().invoke(
                app, ["-C", str(root), "pull", "--now", NOW, "--since", since, "-f", "json"],
                env=ENV,
            )  # fmt: skip
            assert result.exit_code == 0, (since, result.output, result.exception)
            assert [p["outcome"] for p in json.loads(result.stdout)["posts"]] == ["pulled"]
    for at in ("99999999d", "999999999999999w"):
        result = CliRunner().invoke(app, ["-C", str(root), "report", "--at", at])
        assert result.exit_code == 2, (at, result.output, result.exception)
        assert result.stderr == (
            f"commcal: --at {at!r} is longer than a post can have been out (at most 36500d)\n"
        )


def test_report_html_escapes_names_and_reply_words_and_keeps_its_policy(
    make_project: Any,
) -> None:
    from datetime import UTC, datetime, timedelta
    from html.parser import HTMLParser

    from engagement_fixtures import CONFIG, reply, sent, store

    from commcal.engagement.model import Snapshot

    t = datetime(2026, 12, 1, 8, tzinfo=UTC)
    root: Path = make_project(config=CONFIG)
    evil = '"><script>alert(1)</script><svg onload=alert(2)>'
    sent(root, [("d1", evil, "tip", "mastodon", t)])
    store(
        root,
        [reply(1, "#<b>x</b> #onload when? <script>alert(3)</script>", t + timedelta(hours=1),
               delivery="d1", parent="post-d1", lang="en")],
        [Snapshot("d1", "mastodon", "post-d1", t + timedelta(hours=25), t, likes=4)],
    )  # fmt: skip
    for by in ("item", "weekday"):
        result = CliRunner().invoke(
            app, ["-C", str(root), "report", "--by", by, "--format", "html"]
        )
        assert result.exit_code == 0, result.output
        page = result.stdout

        class Tags(HTMLParser):
            def __init__(self) -> None:
                super().__init__()
                self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

            def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
                self.found.append((tag, attrs))

        parser = Tags()
        parser.feed(page)
        assert "script" not in {tag for tag, _ in parser.found}
        assert not any(name.startswith("on") for _, attrs in parser.found for name, _ in attrs)
        (policy,) = [a for tag, a in parser.found if tag == "meta" and
                     ("http-equiv", "Content-Security-Policy") in a]  # fmt: skip
        assert "default-src 'none'" in str(policy)
        if by == "item":  # the name is there, as text
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_tracked_link_that_carries_the_members_address_is_stored_without_it(
    make_project: Any,
    smtp: Any,
    serve: Any,  # noqa: F811
) -> None:
    # A template that puts the address into the link it tracks (a shop's "prefill" field):
    # the member's own mail may carry it, the ledger's record of the click may not.
    import re

    import requests

    root, text = mailed_and_served(
        make_project, smtp, serve,
        "Plain: {{ track('https://shop.example.org/o?who=' ~ member.email) }}\n"
        "Encoded: {{ track('https://shop.example.org/o?who=' ~ (member.email | urlencode)) }}\n",
    )  # fmt: skip
    for label in ("Plain", "Encoded"):
        link = re.search(rf"{label}: (\S+)", text)
        assert link
        got = requests.get(link.group(1), allow_redirects=False, timeout=10)
        assert got.status_code == 302 and "ann" in got.headers["Location"]  # still leads there
    with open_ledger(f"sqlite:///{root / 'state.db'}") as ledger:
        urls = [c.url for c in ledger.clicks()]
    assert urls == [
        "https://shop.example.org/o?who=a***@example.org",
        "https://shop.example.org/o?who=a***%40example.org",
    ]
    assert b"ann@" not in (root / "state.db").read_bytes()
    assert b"ann%40" not in (root / "state.db").read_bytes()


def test_a_federated_reply_that_arrives_late_with_an_older_id_is_still_kept(
    tmp_path: Path,
) -> None:
    # Mastodon gives a remote status an id made from its `published` time, not its arrival
    # (lib/mastodon/snowflake.rb, Callbacks.around_create: created_at in the past -> id_at).
    # A reply delayed in federation therefore sorts before replies already pulled.
    from pull_support import reply

    with FakeMastodon() as masto:
        masto.add("101", [reply("300", "101", content="<p>Nice</p>")], replies=1)
        root = mastodon_project(tmp_path, masto.url)
        record_sent(db(root), [("d-1", "masto", "101")])
        first = masto_pull(root)[1]["posts"][0]
        masto.descendants["101"].insert(
            0, reply("250", "101", acct="late@slow.example", content="<p>When?</p>")
        )
        second = masto_pull(root)[1]["posts"][0]
    assert (first["new_replies"], second["new_replies"]) == (1, 1)
    with open_ledger(db(root)) as ledger:
        assert sorted(r.remote_id for r in ledger.replies()) == ["250", "300"]


def test_the_inbox_table_shows_rich_markup_and_terminal_escapes_in_replies_as_inert_text(
    make_project: Any,
) -> None:
    # A member's "[/bold]" was read as rich markup (a MarkupError: the inbox crashed), and
    # "[link=...]" or an OSC 8 escape would put a hidden link or a cleared screen on the
    # team's terminal.
    from datetime import UTC, datetime, timedelta

    from engagement_fixtures import COMMUNITY, CONFIG, reply, sent, store

    t = datetime(2026, 12, 1, 8, tzinfo=UTC)
    root: Path = make_project(config=CONFIG, calendars={"community.yaml": COMMUNITY})
    sent(root, [("d1", "community", "weekly-tip", "mastodon", t)])
    store(root, [
        reply(1, "[/bold] when? [link=https://evil.example]x[/link]", t, lang="en"),
        reply(2, "why? \x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\ \x1b[2J\x07",
              t + timedelta(hours=1), lang="en"),
    ])  # fmt: skip
    for fmt in ("table", "markdown"):
        result = CliRunner().invoke(
            app, ["-C", str(root), "inbox", "--now", NOW, "-f", fmt], env={"COLUMNS": "300"}
        )
        assert result.exit_code == 0, (fmt, result.exception)
        assert "when?" in result.stdout and "why?" in result.stdout
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "[/bold]" in result.stdout.replace("\\[", "[").replace("\\]", "]")


def test_a_server_error_that_looks_like_rich_markup_is_shown_as_text_by_pull(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    httpserver.expect_request("/api/v1/statuses/101").respond_with_json(
        {"error": "[/bold] [link=https://evil.example]broken[/link] \x1b[2J"}, status=422
    )
    root = mastodon_project(tmp_path, httpserver.url_for("").rstrip("/"))
    record_sent(db(root), [("d-1", "masto", "101")])
    result = CliRunner().invoke(
        app, ["-C", str(root), "pull", "--now", NOW], env={**ENV, "COLUMNS": "300"}
    )
    assert result.exit_code == 1, result.exception  # an error read, not a crash
    assert "[/bold]" in result.stdout and "broken" in result.stdout
    assert "\x1b" not in result.stdout


# ---- two pulls at once -----------------------------------------------------------------------


def test_two_pulls_at_once_on_one_sqlite_ledger_both_finish_and_write_one_snapshot_per_read(
    tmp_path: Path,
) -> None:
    import os
    import subprocess
    import sys
    from collections import Counter

    from pull_support import reply

    with FakeMastodon(delay=0.005) as masto:
        for n in range(20):
            sid = str(1000 + n)
            masto.add(sid, [reply(str(5000 + 2 * n + k), sid) for k in range(2)], likes=n)
        root = mastodon_project(tmp_path, masto.url)
        record_sent(db(root), [(f"d-{n:02d}", "masto", str(1000 + n)) for n in range(20)])
        command = [sys.executable, "-m", "commcal", "-C", str(root), "pull", "--now", NOW,
                   "-f", "json"]  # fmt: skip
        env = {**os.environ, **ENV, "PYTHONPATH": os.pathsep.join(sys.path)}
        both = [
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)
        ]
        answers = [p.communicate(timeout=60) for p in both]
        reads = Counter(path.split("/")[4] for _, path, _ in masto.requests if "/context" in path)
    for process, (out, err) in zip(both, answers, strict=True):
        assert process.returncode == 0, err.decode()
        assert b"locked" not in err and b"Traceback" not in err
        assert Counter(p["outcome"] for p in json.loads(out)["posts"]) == {"pulled": 20}
    with open_ledger(db(root)) as ledger:
        per_post = Counter(s.delivery_id for s in ledger.snapshots())
        replies = [r.id for r in ledger.replies()]
    assert all(per_post[f"d-{n:02d}"] == reads[str(1000 + n)] == 2 for n in range(20))
    assert sorted(replies) == sorted({f"masto:{5000 + k}" for k in range(40)})


def test_a_reply_whose_link_or_html_carries_an_address_is_stored_masked(tmp_path: Path) -> None:
    from pull_support import reply

    found = reply(
        "201", "101", acct="ana@other.example",
        content='<p>Mail <a href="mailto:&#109;ary.k@example.org">me</a> or '
        "<span>jo</span>@example.org, or mary [at] example [dot] org</p>",
    )  # fmt: skip
    found["url"] = "mailto:mary.k@example.org"  # a hostile server's "link" to the reply
    with FakeMastodon() as masto:
        masto.add("101", [found], replies=1)
        root = mastodon_project(tmp_path, masto.url)
        record_sent(db(root), [("d-1", "masto", "101")])
        assert masto_pull(root)[0] == 0
    with open_ledger(db(root)) as ledger:
        (stored,) = ledger.replies()
    assert stored.author == "@ana@other.example"  # a fediverse handle is no address
    assert stored.text == (
        "Mail me (mailto:m***@example.org) or j***@example.org, or mary [at] example [dot] org"
    )
    assert stored.url == "mailto:m***@example.org"
    assert b"mary.k" not in (root / "state.db").read_bytes()


def test_a_discord_webhook_token_never_shows_when_its_server_fails_or_echoes_the_path(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    from test_pull_networks import discord

    secret = "hook-token-s3cret"
    httpserver.expect_request(f"/api/webhooks/42/{secret}/messages/1100").respond_with_data(
        f"<html>500: no route for /api/webhooks/42/{secret}/messages/1100</html>", status=500
    )
    channels, env = discord(httpserver)
    # And a second channel whose server is gone: the connection error names the URL.
    closed = env["DISCORD_URL"].replace(str(httpserver.port), "1")
    channels += "  gone:\n    type: discord\n    webhook_url: ${GONE_URL}\n"
    root = project(tmp_path, channels)
    record_sent(db(root), [("d-disc", "disc", "1100"), ("d-gone", "gone", "1300")])
    code, data = pull_json(root, {**env, "GONE_URL": closed})
    assert code == 1
    assert [p["outcome"] for p in data["posts"]] == ["error", "left"]
    table = CliRunner().invoke(
        app, ["-C", str(root), "pull", "--now", NOW], env={**env, "GONE_URL": closed}
    )
    stored = (root / "state.db").read_bytes().decode("latin-1")
    for shown in (json.dumps(data), table.output, stored):
        assert secret not in shown


def test_a_reply_claiming_to_be_from_year_9999_or_year_1_cannot_break_inbox_or_report(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    from datetime import UTC, datetime

    # On Bluesky createdAt is what the author's client claims: any member can date a reply
    # 9999-12-31T23:59:59Z. Shown in a zone east of UTC, that instant is past the year 9999
    # (OverflowError), which broke `inbox` and `report` for good once stored.
    root_view = post_view(ROOT_URI, "did:plc:team4acme", "acme.bsky.social", "Our post")
    future = post_view(f"{ROOT_URI[:-4]}fut1", "did:plc:ana", "ana.bsky.social", "When?", ROOT_URI)
    past = post_view(f"{ROOT_URI[:-4]}old1", "did:plc:bo", "bo.bsky.social", "Why?", ROOT_URI)
    future["record"]["createdAt"] = future["indexedAt"] = "9999-12-31T23:59:59.999Z"
    past["record"]["createdAt"] = past["indexedAt"] = "0001-01-01T00:00:00Z"
    httpserver.expect_request("/appview/xrpc/app.bsky.feed.getPostThread").respond_with_json(
        {"thread": {"post": root_view, "replies": [{"post": future}, {"post": past}]}}
    )
    root = project(tmp_path, bluesky(httpserver, httpserver.url_for("/appview")))
    (root / "commcal.yaml").write_text(
        (root / "commcal.yaml").read_text().replace("timezone: UTC", "timezone: Asia/Tokyo")
    )
    record_sent(db(root), [("d-sky", "sky", ROOT_URI)])
    before = datetime.now(UTC)
    code, data = pull_json(root, SKY_ENV)
    assert (code, data["posts"][0]["new_replies"]) == (0, 2)
    with open_ledger(db(root)) as ledger:
        dates = {r.text: r.created_at for r in ledger.replies()}
        (sent,) = ledger.records()
    # Within what can be true: not before the post went out, not after it was read.
    assert dates["Why?"] == sent.updated_at
    assert before <= dates["When?"] <= datetime.now(UTC)
    for args in (
        ["inbox", "--all"],
        ["inbox", "-f", "markdown"],
        ["report"],
        ["report", "-f", "html"],
    ):
        result = CliRunner().invoke(app, ["-C", str(root), *args])
        assert result.exit_code == 0, (args, result.exception)


def test_staffed_hours_across_the_spring_forward_gap_follow_the_wall_clock(
    make_project: Any,
) -> None:
    # Athens moves from 03:00 EET to 04:00 EEST on Sunday 29 March 2026: a `sun 02:00-04:00`
    # window is one real hour that day (00:00-01:00 UTC), and nothing is staffed at 04:00.
    from datetime import UTC, datetime

    from engagement_fixtures import CONFIG, reply, sent, store

    calendar = (
        "calendar: community\ntimezone: Europe/Athens\nstaff:\n  - sun 02:00-04:00\n"
        "  - sat 23:00-02:30\n"
        "items:\n  - id: tip\n    kind: post\n    template: posts/tip\n"
        "    schedule: {cron: '0 10 * * SAT'}\n    channels: [mastodon]\n"
    )
    root: Path = make_project(config=CONFIG, calendars={"community.yaml": calendar})
    sent(root, [("d1", "community", "tip", "mastodon", datetime(2026, 3, 28, 8, tzinfo=UTC))])
    at = {  # UTC -> Athens wall clock, staffed?
        "q1": (datetime(2026, 3, 28, 23, 59, tzinfo=UTC), True),  # 01:59 EET (both windows)
        "q2": (datetime(2026, 3, 29, 0, 45, tzinfo=UTC), True),  # 02:45 EET
        "q3": (datetime(2026, 3, 29, 0, 59, tzinfo=UTC), True),  # 02:59 EET, the last minute
        "q4": (datetime(2026, 3, 29, 1, 0, tzinfo=UTC), False),  # 04:00 EEST: the window ended
        "q5": (datetime(2026, 3, 28, 20, 59, tzinfo=UTC), False),  # 22:59 EET Saturday
    }
    store(root, [reply(k, f"When {k}?", when, lang="en") for k, (when, _) in at.items()])
    result = CliRunner().invoke(
        app, ["-C", str(root), "inbox", "--now", "2026-04-01T00:00:00Z", "-f", "json"]
    )
    assert result.exit_code == 0, result.output
    staffed = {r["id"].split(":")[1]: r["staffed"] for r in json.loads(result.stdout)["replies"]}
    assert staffed == {k: expected for k, (_, expected) in at.items()}


def test_a_server_trickling_its_answer_a_byte_at_a_time_is_cut_off_by_a_whole_answer_deadline() -> (
    None
):
    # requests' read timeout bounds each wait for a byte: a server sending one byte every
    # 0.2 s under a 0.5 s read timeout held a call (a pull, a publish) for as long as it liked.
    import contextlib
    import socket
    import threading
    import time

    import requests

    from commcal.http import BODY_DEADLINE_READS, TimeoutSession

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n")  # fmt: skip
        with contextlib.suppress(OSError):
            while not stop.is_set():
                conn.sendall(b" ")
                time.sleep(0.2)
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    session = TimeoutSession(timeout=(1.0, 0.5))
    began = time.monotonic()
    try:
        with contextlib.suppress(requests.exceptions.ReadTimeout):
            session.get(f"http://127.0.0.1:{listener.getsockname()[1]}/")
            raise AssertionError("the trickled answer was accepted")
    finally:
        stop.set()
        listener.close()
    assert time.monotonic() - began < BODY_DEADLINE_READS * 0.5 + 1.0
