"""SIGKILL of a real `commcal publish` process the moment a post's request reached the network
(Slack's files.completeUploadExternal, Telegram's sendMediaGroup): neither takes an idempotency
key, so the resumed delivery is `unknown` (a person checks the channel), never posted again."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from werkzeug import Request, Response

from tests.conftest import MakeProject
from tests.test_media_channels_publish import ENV, LATER, NOW, Networks, make, networks, publish
from tests.test_publish_processes import command

__all__ = ["networks"]  # the fixture, shared with test_media_channels_publish

POSTS = {"slack": "/slack/files.completeUploadExternal", "telegram": "/sendMediaGroup"}


@pytest.mark.parametrize("channel", sorted(POSTS))
def test_sigkill_after_the_post_left_is_unknown_not_posted_again(
    make_project: MakeProject, networks: Networks, channel: str
) -> None:
    root = make(make_project, networks, channel)
    victim: list[subprocess.Popen[str]] = []
    answer = networks.__call__

    def kill_at_the_post(request: Request) -> Response:
        response = answer(request)  # the network made the post ...
        if request.path.endswith(POSTS[channel]) and victim:
            victim[0].send_signal(signal.SIGKILL)  # ... and the publisher died before the answer
            victim[0].wait(timeout=10)
        return response

    networks.server.clear_all_handlers()
    networks.server.expect_request("").respond_with_handler(kill_at_the_post)
    env = {**os.environ, **ENV, "DISCORD_URL": os.environ.get("DISCORD_URL", "")}
    proc = subprocess.Popen(
        [*command(), "-C", str(root), "publish", "--now", NOW, "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    victim.append(proc)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err
    assert len(networks.requests(POSTS[channel])) == 1
    assert publish(root, LATER) == {"unknown": 1}
    assert publish(root, LATER) == {"unknown": 1}
    assert len(networks.requests(POSTS[channel])) == 1, "never posted a second time"
    status = json.loads(
        subprocess.run(
            [*command(), "-C", str(root), "status", "--format", "json"],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout
    )
    assert not any(secret and secret in json.dumps(status) for secret in ENV.values())
