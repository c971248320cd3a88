"""`lang:` on an item: validated with file:line, sent as each network takes a post's language."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import MakeProject
from fake_networks import Answer, Networks, Request, channels_config, env_for
from typer.testing import CliRunner

from commcal.channels.base import EnvRef, Message
from commcal.channels.bluesky import BlueskyChannel
from commcal.cli import app

NOW = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
TEMPLATES = {"posts/hello.j2": "Καλημέρα, good morning {{ item.id }}\n"}


def calendar(lang: str, channels: str = "[bluesky, mastodon, telegram, webhook]") -> str:
    return (
        "items:\n"
        "  - id: hello\n"
        f"    channels: {channels}\n"
        "    template: posts/hello\n"
        "    at: 2026-01-01 08:59\n" + (f"    lang: {lang}\n" if lang else "")
    )


def config(networks: Networks, locale: str = "el") -> str:
    return (
        f"timezone: UTC\nlocale: {locale}\nstate: sqlite:///state.db\n"
        "publish: {max_late: 1d}\n"
        f"channels:\n{channels_config(networks)}"
    )


def answer(request: Request) -> Answer:
    if "createRecord" in request.path:
        return Answer(body=b'{"uri": "at://did:plc:x/app.bsky.feed.post/k", "cid": "b"}')
    if "sendMessage" in request.path:
        return Answer(body=b'{"ok": true, "result": {"message_id": 7}}')
    return Answer(body=b'{"id": "1", "url": "https://example.org/1"}')


def publish(make_project: MakeProject, lang: str, locale: str = "el") -> dict[str, Any]:
    """Publish one item with `lang`; the JSON body each network got, by channel type."""
    with Networks() as networks:
        networks.answer = answer
        root = make_project(
            config=config(networks, locale),
            calendars={"main.yaml": calendar(lang)},
            templates=TEMPLATES,
        )
        result = CliRunner().invoke(
            app,
            ["-C", str(root), "publish", "--format", "json", "--now", NOW.isoformat()],
            env=env_for(networks),
        )
        assert result.exit_code == 0, result.output
        bodies: dict[str, Any] = {}
        for request in networks.requests:
            if "createRecord" in request.path:
                bodies["bluesky"] = json.loads(request.body)["record"]
            elif request.path.endswith("/api/v1/statuses"):
                bodies["mastodon"] = json.loads(request.body)
            elif request.path.endswith("/sendMessage"):
                bodies["telegram"] = json.loads(request.body)
            elif request.path.startswith("/hook/"):
                bodies["webhook"] = json.loads(request.body)
        return bodies


def test_a_bilingual_post_is_tagged_as_each_network_takes_it(make_project: MakeProject) -> None:
    bodies = publish(make_project, "[el, en-GB]")
    assert bodies["bluesky"]["langs"] == ["el", "en-GB"]  # every language, main first
    assert bodies["mastodon"]["language"] == "el"  # one ISO 639 code: the first
    assert "language" not in bodies["telegram"] and "lang" not in bodies["telegram"]
    assert (bodies["webhook"]["language"], bodies["webhook"]["languages"]) == (
        "el",
        ["el", "en-GB"],
    )


def test_one_lang_overrides_the_locale(make_project: MakeProject) -> None:
    bodies = publish(make_project, "sw", locale="el")
    assert bodies["bluesky"]["langs"] == ["sw"]
    assert bodies["mastodon"]["language"] == "sw"


def test_a_regional_tag_gives_mastodon_its_language(make_project: MakeProject) -> None:
    bodies = publish(make_project, "pt-BR")
    assert bodies["bluesky"]["langs"] == ["pt-BR"]
    assert bodies["mastodon"]["language"] == "pt"


@pytest.mark.parametrize(
    ("lang", "message", "hint"),
    [
        ("el_GR", "'el_GR' is not a language tag", "write 'el-GR'"),
        ("greek", "'greek' is not a language tag", "such as el, en-GB or pt-BR"),
        ("qq", "unknown language 'qq'", "ISO 639"),
        ("[el, en, EL]", "lang 'EL' is listed twice", ""),
        ("{a: b}", "must be a list", ""),
        ("[]", "lang is an empty list", "leave lang: out"),
        # YAML 1.1 reads a bare `no` (Norwegian) as false: it must be quoted.
        ("[el, no]", "no", "quote"),
    ],
)
def test_a_bad_lang_is_a_problem_at_its_line(
    make_project: MakeProject, lang: str, message: str, hint: str
) -> None:
    with Networks() as networks:
        root = make_project(
            config=config(networks),
            calendars={"main.yaml": calendar(lang)},
            templates=TEMPLATES,
        )
        result = CliRunner().invoke(app, ["-C", str(root), "validate"])
    assert result.exit_code == 1, result.output
    [line] = [line for line in result.output.splitlines() if "main.yaml:" in line]
    assert line.startswith("calendars/main.yaml:6:"), result.output
    assert message in line and hint in line, line


def test_a_quoted_no_is_norwegian(make_project: MakeProject) -> None:
    bodies = publish(make_project, "['no', en]")
    assert bodies["bluesky"]["langs"] == ["no", "en"]


def test_bluesky_refuses_more_than_three_languages() -> None:
    bsky = BlueskyChannel("b", {"handle": "a.bsky.social", "app_password": EnvRef("${P}")})
    four = Message("b", "bluesky", "x", language="el", languages=("el", "en", "sw", "fr"))
    assert bsky.check(four) == [
        "a bluesky post has at most 3 languages, not 4 (el, en, sw, fr): shorten lang:"
    ]
    three = Message("b", "bluesky", "x", language="el", languages=("el", "en", "sw"))
    assert bsky.check(three) == []


def test_without_lang_the_locale_is_the_language(make_project: MakeProject) -> None:
    bodies = publish(make_project, "", locale="sw")
    assert bodies["bluesky"]["langs"] == ["sw"]
    assert bodies["webhook"]["languages"] == ["sw"]
    assert bodies["mastodon"]["language"] == "sw"


def test_a_misspelt_lang_key_says_did_you_mean(make_project: MakeProject) -> None:
    with Networks() as networks:
        root = make_project(
            config=config(networks),
            calendars={"main.yaml": calendar("el").replace("lang:", "lnag:")},
            templates=TEMPLATES,
        )
        result = CliRunner().invoke(app, ["-C", str(root), "validate"])
    assert result.exit_code == 1
    assert "calendars/main.yaml:6:5" in result.output
    assert "did you mean 'lang'" in result.output, result.output
