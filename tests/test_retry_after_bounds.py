"""A Retry-After no calendar can hold: delta-seconds RFC 9110 allows (99999999999, past the
year 9999), or what float() reads and a sloppy server sends (inf, 1e999, nan). `publish` must
record the delivery `pending`, due at a time a datetime can hold, not die with OverflowError."""

from __future__ import annotations

import json

import pytest
from pytest_httpserver import HTTPServer
from typer.testing import CliRunner

from commcal.cli import app
from tests.conftest import MakeProject


@pytest.mark.parametrize("wait", ["99999999999", "inf", "1e999", "nan"])
def test_a_retry_after_beyond_any_calendar_is_a_pending_retry(
    make_project: MakeProject, httpserver: HTTPServer, wait: str
) -> None:
    httpserver.expect_request("/hook").respond_with_data(
        "slow down", status=429, headers={"Retry-After": wait}
    )
    root = make_project(
        config=(
            "timezone: UTC\nstate: sqlite:///state.db\npublish: {retry_delay: 1h}\nchannels:\n"
            f"  hook: {{type: webhook, url: '{httpserver.url_for('/hook')}'}}\n"
        ),
        calendars={
            "c.yaml": "items:\n  - id: a\n    channels: [hook]\n    at: 2026-12-02 08:30\n"
            "    template: posts/tip\n"
        },
    )
    result = CliRunner().invoke(
        app, ["-C", str(root), "publish", "--now", "2026-12-02T09:00:00Z", "--format", "json"]
    )
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    counts = {k: v for k, v in json.loads(result.stdout)["counts"].items() if v}
    assert counts == {"pending": 1}
