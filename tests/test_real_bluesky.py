"""The Bluesky adapter against a real PDS (@atproto/pds through @atproto/dev-env on loopback).

Each test makes its own account (`real_pds()`), publishes through commcal, and reads the result
back through the PDS's own API (com.atproto.repo.listRecords), never through commcal.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import MakeProject
from publish_support import TEMPLATES, config, every_minute, ledger_states
from real_servers import PdsAccount, real_bsky_network, real_pds
from test_channel_matrix import commcal_command
from typer.testing import CliRunner

from commcal.cli import app

START = "2026-01-01 00:00"
NOW = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
START_INSTANT = "2025-12-31T23:00:00+00:00"
runner = CliRunner()


def bluesky_channel(account: PdsAccount) -> str:
    return (
        "  sky:\n    type: bluesky\n"
        f"    service: {account.service}\n"
        f"    handle: {account.handle}\n"
        "    app_password: ${SKY_PASSWORD}\n"
    )


def project(
    make_project: MakeProject,
    account: PdsAccount,
    *,
    templates: dict[str, str] | None = None,
    item: str = "tip",
    count: int = 1,
    template: str = "posts/unique",
) -> Path:
    calendar = every_minute(item, ["sky"], START, count).replace("posts/unique", template)
    return make_project(
        config=config(bluesky_channel(account), publish="max_late: 1d, retry_delay: 1m"),
        calendars={"main.yaml": calendar},
        templates={**TEMPLATES, **(templates or {})},
    )


def publish(root: Path, account: PdsAccount, now: datetime = NOW) -> dict[str, Any]:
    result = runner.invoke(
        app,
        ["-C", str(root), "publish", "--format", "json", "--now", now.isoformat()],
        env={"SKY_PASSWORD": account.password},
    )
    assert account.password not in result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_a_greek_post_with_a_link_and_a_tag_arrives_exactly_with_byte_exact_facets(
    make_project: MakeProject,
) -> None:
    account = real_pds()
    text = "Καλημέρα 👋 νέο άρθρο: https://example.org/άρθρο?utm=1 #κοινότητα"
    root = project(
        make_project, account, templates={"posts/greek.j2": text + "\n"}, template="posts/greek"
    )
    report = publish(root, account)
    assert report["counts"] == {"sent": 1}, report
    [record] = account.posts()
    post = record["value"]
    assert post["text"] == text
    assert report["deliveries"][0]["url"].endswith(record["uri"].rsplit("/", 1)[-1])
    raw = text.encode()
    spans = {
        facet["features"][0]["$type"]: raw[facet["index"]["byteStart"] : facet["index"]["byteEnd"]]
        for facet in post["facets"]
    }
    assert spans == {
        "app.bsky.richtext.facet#link": b"https://example.org/\xce\xac\xcf\x81\xce\xb8\xcf\x81\xce\xbf?utm=1",
        "app.bsky.richtext.facet#tag": "#κοινότητα".encode(),
    }
    tags = [f["features"][0].get("tag") for f in post["facets"]]
    assert "κοινότητα" in tags  # the tag itself, without its '#', as RichText writes it
    # A second run the same minute finds the delivery sent: nothing new on the PDS.
    assert publish(root, account)["counts"] == {"already": 1}
    assert len(account.posts()) == 1


def test_the_300_grapheme_limit_is_the_servers(make_project: MakeProject) -> None:
    """commcal's count agrees with the PDS: 300 Greek graphemes with a family emoji (one
    grapheme, 25 bytes) publish; one more is refused by `validate` before any network call."""
    account = real_pds()
    fits = "α" * 299 + "👨‍👩‍👧‍👦"
    over = "α" * 300 + "👨‍👩‍👧‍👦"
    root = project(
        make_project,
        account,
        templates={"posts/fits.j2": fits, "posts/over.j2": over},
        template="posts/fits",
    )
    assert publish(root, account)["counts"] == {"sent": 1}
    assert [r["value"]["text"] for r in account.posts()] == [fits]

    root = project(make_project, account, templates={"posts/over.j2": over}, template="posts/over")
    result = runner.invoke(app, ["-C", str(root), "validate", "--now", START_INSTANT])
    assert result.exit_code == 1, result.output
    assert "301" in result.output and "300" in result.output
    # ... and the PDS itself refuses that text, so the check is not stricter than the network.
    import requests

    answer = requests.post(
        f"{account.service}/xrpc/com.atproto.repo.createRecord",
        headers={"Authorization": f"Bearer {account.access_jwt}"},
        json={
            "repo": account.did,
            "collection": "app.bsky.feed.post",
            "record": {"text": over, "createdAt": NOW.isoformat().replace("+00:00", "Z")},
        },
        timeout=30,
    )
    assert answer.status_code == 400, answer.text


def test_sigkill_at_random_moments_leaves_every_post_on_the_pds_exactly_once(
    make_project: MakeProject,
) -> None:
    account = real_pds()
    count = 40
    root = project(make_project, account, item="burst", count=count)
    env = {**os.environ, "SKY_PASSWORD": account.password}
    args = ["-C", str(root), "publish", "--format", "json", "--now"]
    chance = random.Random(20261201)
    kills = 0
    progress = []  # posts on the PDS after each killed run
    for run in range(8):
        # Each run six minutes after the last: past the lease of the run killed before it.
        now = NOW + timedelta(minutes=6 * run)
        proc = subprocess.Popen(
            [*commcal_command(), *args, now.isoformat()],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        # Killed a random moment after its first new post reaches the PDS: mid-burst.
        before = progress[-1] if progress else 0
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if len(account.posts()) > before:
                time.sleep(chance.uniform(0.0, 0.1))
                break
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate(timeout=30)
        progress.append(len(account.posts()))
        if progress[-1] == count:
            break
    # Some run was killed with part of the burst out: the final run had work left to resume.
    assert kills and 0 < min(progress) < count, progress
    print("posts on the PDS after each killed run:", progress)
    later = NOW + timedelta(minutes=6 * len(progress))  # past every lease of a killed run
    final = subprocess.run(
        [*commcal_command(), *args, later.isoformat()],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert final.returncode == 0, final.stderr[-2000:]
    assert account.password not in final.stdout + final.stderr
    texts = [record["value"]["text"] for record in account.posts()]
    assert len(texts) == count, texts
    assert len(set(texts)) == count
    assert ledger_states(root / "state.db") == {"sent": count}


def test_a_published_post_is_indexed_by_a_real_appview_with_its_link_and_tag(
    make_project: MakeProject,
) -> None:
    """The whole network (PDS, AppView): what commcal publishes is a post the AppView accepts and
    shows, and a second account's like, repost and reply are counted on it (what `pull` reads)."""
    network = real_bsky_network()
    account, member = network.account(), network.account()
    text = "Νέο: https://example.org #κοινότητα"
    root = project(make_project, account, templates={"posts/n.j2": text + "\n"}, template="posts/n")
    assert publish(root, account)["counts"] == {"sent": 1}
    [record] = account.posts()
    subject = {"uri": record["uri"], "cid": record["cid"]}
    network.create(member, "app.bsky.feed.like", {"subject": subject})
    network.create(member, "app.bsky.feed.repost", {"subject": subject})
    network.create(
        member,
        "app.bsky.feed.post",
        {"text": "Πότε ξεκινά;", "reply": {"root": subject, "parent": subject}},
    )
    network.settle()
    import requests

    thread = requests.get(
        f"{network.appview}/xrpc/app.bsky.feed.getPostThread",
        params={"uri": record["uri"]},
        timeout=30,
    ).json()["thread"]
    post = thread["post"]
    assert post["record"]["text"] == text
    assert (post["likeCount"], post["repostCount"], post["replyCount"]) == (1, 1, 1)
    assert [r["post"]["record"]["text"] for r in thread["replies"]] == ["Πότε ξεκινά;"]
    assert {f["features"][0]["$type"] for f in post["record"]["facets"]} == {
        "app.bsky.richtext.facet#link",
        "app.bsky.richtext.facet#tag",
    }
