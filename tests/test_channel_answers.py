"""A 2xx answer that cannot be read: the post is out, so it is `sent` with the remote id unknown.

Real processes against one loopback server that plays every HTTP network (tests/fake_networks.py)
and answers each post with 200 and a body no adapter can read: `{}`, text, a JSON list, an HTML
page (a proxy's or a captive portal's). Before, Mastodon crashed `publish` with a KeyError
traceback and left the delivery `sending`; Telegram, X and Matrix recorded `failed`, which
`retry --failed` would post again.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import MakeProject
from tests.fake_networks import HTTP_TYPES, Answer, Networks, channels_config, env_for, posting_type

COMMCAL = str(Path(sys.executable).with_name("commcal"))
NOW = "2026-12-01T09:00:30Z"

CALENDAR = f"""\
items:
  - id: launch
    kind: post
    channels: [{", ".join(HTTP_TYPES)}]
    template: posts/launch
    at: 2026-12-01 09:00
"""

UNREADABLE = {
    "empty-object": Answer(200, b"{}"),
    "not-json": Answer(200, b"thanks, got it", "text/plain"),
    "json-list": Answer(200, b"[1, 2, 3]"),
    "html-page": Answer(
        200,
        b"<!doctype html><html><head><title>Welcome</title></head>"
        b"<body><h1>Please log in to the network</h1></body></html>",
        "text/html; charset=utf-8",
    ),
}


def publish(root: Path, env: dict[str, str], now: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMMCAL, "-C", str(root), "publish", "--now", now, "--format", "json"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
def test_unreadable_2xx_is_sent_with_remote_id_unknown_and_never_posted_again(
    make_project: MakeProject, kind: str
) -> None:
    with Networks() as networks:
        networks.answer = lambda request: (
            UNREADABLE[kind]
            if posting_type(request.path)
            else Answer(404, b'{"error": "not here"}')
        )
        root = make_project(
            config=(
                "timezone: UTC\nlocale: en\nstate: sqlite:///state.db\n"
                f"channels:\n{channels_config(networks)}"
            ),
            calendars={"c.yaml": CALENDAR},
            templates={"posts/launch.j2": "We launch today: {{ item.id }}\n"},
        )
        env = env_for(networks)

        first = publish(root, env, NOW)
        output = first.stdout + first.stderr
        assert first.returncode == 0, output
        assert "Traceback" not in output and "KeyError" not in output
        assert networks.posts() == Counter(dict.fromkeys(HTTP_TYPES, 1))

        with sqlite3.connect(root / "state.db") as conn:
            rows = conn.execute("SELECT channel, state, remote_id FROM deliveries").fetchall()
            notes = dict(
                conn.execute(
                    "SELECT d.channel, a.error FROM attempts a JOIN deliveries d "
                    "ON d.id = a.delivery_id WHERE a.event = 'sent'"
                ).fetchall()
            )
        assert sorted(rows) == sorted((name, "sent", None) for name in HTTP_TYPES)
        # The history says why there is no id (a webhook receiver need not answer JSON).
        for name in HTTP_TYPES:
            if name != "webhook":
                assert "remote id unknown" in (notes[name] or ""), (name, notes)
        # The publish report says so too.
        details = {o["channel"]: o["detail"] for o in json.loads(first.stdout)["deliveries"]}
        assert all("remote id unknown" in details[n] for n in HTTP_TYPES if n != "webhook")

        later = publish(root, env, "2026-12-01T09:05:00Z")
        assert later.returncode == 0, later.stdout + later.stderr
        assert networks.posts() == Counter(dict.fromkeys(HTTP_TYPES, 1))  # nothing posted again


# -- the safety net: an adapter that breaks after its request left --------------------------------

BUGGY_ADAPTER = '''\
from commcal.channels.base import Channel, Receipt, Setting


class BuggyChannel(Channel):
    """A third-party adapter with a bug: it reads an answer that is not what it expects."""

    type_name = "buggy"
    settings_schema = {
        "url": Setting("where to post", required=True),
        "token": Setting("a token", required=True, private=True),
    }

    def send(self, message, idempotency_key):
        url = f"{self.value('url')}/hook/buggy?token={self.secret('token')}"
        response = self.http.post(url, json={"text": message.text}, timeout=10)
        if "crash" in message.text:
            return Receipt(remote_id=str(response.json()["id"]))  # KeyError: 'id'
        raise ValueError(f"cannot read the answer of {url}")  # names the token
'''


def test_an_adapter_crashing_after_its_request_is_recorded_unknown_with_no_traceback(
    make_project: MakeProject, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    (site / "buggy_adapter-0.1.dist-info").mkdir(parents=True)
    (site / "buggy_adapter.py").write_text(BUGGY_ADAPTER)
    (site / "buggy_adapter-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: buggy-adapter\nVersion: 0.1\n"
    )
    (site / "buggy_adapter-0.1.dist-info" / "entry_points.txt").write_text(
        "[commcal.channels]\nbuggy = buggy_adapter:BuggyChannel\n"
    )
    token = "buggySweepTok0099ZZZZzzzzZZZZ"
    with Networks() as networks:
        root = make_project(
            config=(
                "timezone: UTC\nlocale: en\nstate: sqlite:///state.db\nchannels:\n"
                f"  buggy:\n    type: buggy\n    url: {networks.url}\n    token: ${{BUGGY_TOKEN}}\n"
            ),
            calendars={
                "c.yaml": "items:\n"
                "  - {id: crash, kind: post, channels: [buggy], template: posts/t, "
                "at: 2026-12-01 09:00}\n"
                "  - {id: leak, kind: post, channels: [buggy], template: posts/t, "
                "at: 2026-12-01 09:00}\n"
            },
            templates={"posts/t.j2": "post {{ item.id }}\n"},
        )
        env = {
            "BUGGY_TOKEN": token,
            "PYTHONPATH": os.pathsep.join([os.environ.get("PYTHONPATH", ""), str(site)]),
        }
        first = publish(root, env, NOW)
        output = first.stdout + first.stderr
        assert first.returncode == 1, output  # unknown: a person must check the channel
        assert "Traceback" not in output
        states = {o["item"]: o for o in json.loads(first.stdout)["deliveries"]}
        assert {item: o["state"] for item, o in states.items()} == {
            "crash": "unknown",
            "leak": "unknown",
        }
        assert "unexpected KeyError" in states["crash"]["detail"]
        assert "commcal resolve" in states["crash"]["detail"]
        assert len(networks.requests) == 2

        later = publish(root, env, "2026-12-01T09:05:00Z")
        assert later.returncode == 1
        assert len(networks.requests) == 2  # never posted again
        with sqlite3.connect(root / "state.db") as conn:
            assert {s for (s,) in conn.execute("SELECT state FROM deliveries")} == {"unknown"}
        stored = (root / "state.db").read_bytes()
        for text in (output, later.stdout + later.stderr, stored.decode("latin-1")):
            assert token[:12] not in text and token[-12:] not in text
