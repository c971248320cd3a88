"""Output that scales (issue 11 point 4, issue 12 point 7): JSON written as it is produced and
still one document whatever happens, and `--format jsonl` (a line per object, each with a
`type`, a summary line last) for cron logs, with `already` deliveries left out unless `--all`.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import redirect_stdout
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commcal import plan as planning
from commcal.errors import ProblemsFound
from commcal.project import load_project
from commcal.publish import publish
from commcal.redact import Secrets
from commcal.views import plan as plan_view
from commcal.views import publish as publish_view
from commcal.views.common import JsonDocument, JsonLines, problem_json, write_json
from tests.conftest import MakeProject
from tests.fake_networks import ENV_TEMPLATE, Answer, Networks, Request
from tests.test_publish_processes import command

CONFIG = (
    "timezone: UTC\nlocale: en\nstate: sqlite:///state.db\nchannels:\n  console: {type: console}\n"
)
TWO = (
    "items:\n"
    "  - id: tip\n    channels: [console]\n    template: posts/tip\n    at: 2026-12-01 09:00\n"
    "  - id: news\n    channels: [console]\n    template: posts/tip\n    at: 2026-12-01 09:00\n"
)


def run(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = subprocess.run(
        [*command(), "-C", str(root), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    return proc.returncode, proc.stdout, proc.stderr


def lines_of(stdout: str) -> list[dict[str, Any]]:
    """Every line parsed (a line that is not JSON fails the test), the summary last."""
    assert stdout.endswith("\n"), stdout[-200:]
    parsed = [json.loads(line) for line in stdout.splitlines()]
    assert parsed and all("type" in line for line in parsed), stdout
    assert [line["type"] for line in parsed].count("summary") == 1
    assert parsed[-1]["type"] == "summary", parsed[-1]
    return parsed


def test_a_nothing_due_publish_writes_one_summary_line_and_all_lists_them(
    make_project: MakeProject,
) -> None:
    root = make_project(config=CONFIG, calendars={"main.yaml": TWO})
    code, out, err = run(root, "publish", "--now", "2026-12-01T09:00:10Z", "--format", "jsonl")
    assert code == 0, err
    first = lines_of(out)
    assert [(line["type"], line.get("state")) for line in first] == [
        ("delivery", "sent"),
        ("delivery", "sent"),
        ("summary", None),
    ]
    assert "Tip: tip" in err  # the console channel's message went to stderr, not into the log

    # The next minute: nothing due, both finished earlier. One line, whatever the calendar size.
    code, out, err = run(root, "publish", "--now", "2026-12-01T09:01:00Z", "--format", "jsonl")
    assert code == 0, err
    assert len(out.splitlines()) == 1, out
    (summary,) = lines_of(out)
    assert summary == {
        "type": "summary",
        "schema": "commcal.publish/1",
        "dry_run": False,
        "ok": True,
        "counts": {"already": 2},
        "at_utc": "2026-12-01T09:01:00Z",
        "lines": {},
    }

    code, out, err = run(
        root, "publish", "--now", "2026-12-01T09:01:00Z", "--format", "jsonl", "--all"
    )
    assert code == 0, err
    listed = lines_of(out)
    assert [(line["type"], line.get("state")) for line in listed[:-1]] == [
        ("delivery", "already"),
        ("delivery", "already"),
    ]
    assert {line["item"] for line in listed[:-1]} == {"tip", "news"}
    assert listed[-1]["lines"] == {"delivery": 2}

    # JSON keeps its promise: every delivery handled is listed, the counts add up to them.
    code, out, err = run(root, "publish", "--now", "2026-12-01T09:01:00Z", "--format", "json")
    assert code == 0, err
    document = json.loads(out)
    assert document["counts"] == {"already": 2} and len(document["deliveries"]) == 2


def test_jsonl_of_plan_validate_and_status_carries_the_json_objects(
    make_project: MakeProject,
) -> None:
    root = make_project(config=CONFIG, calendars={"main.yaml": TWO})
    window = ("--from", "2026-12-01", "--days", "2", "--now", "2026-11-30T00:00:00Z")
    code, out, err = run(root, "plan", *window, "--format", "jsonl")
    assert code == 0, err
    planned = lines_of(out)
    code, out, err = run(root, "plan", *window, "--format", "json")
    document = json.loads(out)
    assert [{k: v for k, v in line.items() if k != "type"} for line in planned[:-1]] == (
        document["deliveries"]
    )
    assert planned[-1] == {
        "type": "summary",
        "schema": "commcal.plan/1",
        "window": document["window"],
        "deliveries": 2,
        "with_problems": 0,
        "ok": True,
        "lines": {"delivery": 2},
    }

    code, out, err = run(root, "validate", "--now", "2026-11-30T00:00:00Z", "--format", "jsonl")
    assert code == 0, err
    (summary,) = lines_of(out)
    assert summary["schema"] == "commcal.validate/1" and summary["ok"] is True
    assert summary["deliveries_checked"] == 2

    run(root, "publish", "--now", "2026-12-01T09:00:10Z")
    code, out, err = run(root, "status", "--format", "jsonl")
    assert code == 0, err
    records = lines_of(out)
    assert [line["state"] for line in records[:-1]] == ["sent", "sent"]
    assert records[-1]["counts"]["sent"] == 2 and records[-1]["schema"] == "commcal.status/1"
    code, out, err = run(root, "status", records[0]["id"], "--format", "jsonl")
    assert code == 0, err
    history = lines_of(out)
    assert [line["type"] for line in history] == [
        "delivery",
        *["event"] * (len(history) - 2),
        "summary",
    ]
    assert {line["event"] for line in history if line["type"] == "event"} >= {"claimed", "sent"}


def test_a_calendar_error_in_jsonl_is_problem_lines_then_a_summary(
    make_project: MakeProject,
) -> None:
    root = make_project(config=CONFIG, calendars={"main.yaml": TWO, "bad.yaml": "items:\n  - [x\n"})
    for args in (["plan"], ["validate"], ["publish", "--now", "2026-12-01T09:00:10Z"]):
        code, out, err = run(root, *args, "--format", "jsonl")
        assert code == 1, (args, err)
        parsed = lines_of(out)
        problems = [line for line in parsed if line["type"] == "problem"]
        assert [p["file"] for p in problems] == ["calendars/bad.yaml"], (args, parsed)
        assert problems[0]["line"] and parsed[-1]["ok"] is False
        if args[0] == "publish":  # the good calendar still went out
            assert [line["state"] for line in parsed if line["type"] == "delivery"] == [
                "sent",
                "sent",
            ]


# -- cut short in the middle ----------------------------------------------------------------------


def broken_calendar_error(make_project: MakeProject) -> ProblemsFound:
    """The error of a calendar that does not parse: a quote never closed, at line 2."""
    broken = make_project(
        config=CONFIG, calendars={"late.yaml": 'items:\n  - id: "x\n    at: 2026-12-01\n'}
    )
    found = load_project(broken).errors
    assert found and found[0].pos.path == "calendars/late.yaml"
    return ProblemsFound(found)


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_a_parse_error_mid_stream_still_ends_the_output(
    make_project: MakeProject, fmt: str
) -> None:
    """Two deliveries are written, then reading the next calendar fails: the document is still
    whole (its array closed, the error in `problems`), or every line is whole, the summary last."""
    root = make_project(config=CONFIG, calendars={"main.yaml": TWO})
    project = load_project(root)
    for adapter in project.channels.values():
        adapter.to_stderr = True  # as the CLI sets it for JSON: messages out of stdout
    start, end = datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC)
    error = broken_calendar_error(make_project)

    def planned() -> Iterator[planning.Planned]:
        yield from planning.iter_plan(project, start, end)
        raise error

    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(ProblemsFound):
        plan_view.stream(planned(), fmt, start, end)
    text = out.getvalue()
    if fmt == "json":
        document = json.loads(text)
        assert [d["item"] for d in document["deliveries"]] == ["news", "tip"]
        assert document["summary"] == {"deliveries": 2, "with_problems": 0}
        assert document["problems"] == [problem_json(p) for p in error.problems]
    else:
        parsed = lines_of(text)
        assert [line["type"] for line in parsed] == ["delivery", "delivery", "problem", "summary"]
        assert parsed[-2]["file"] == "calendars/late.yaml" and parsed[-2]["line"] == 2
        assert parsed[-1]["ok"] is False and parsed[-1]["deliveries"] == 2

    # publish: outcomes already written as they were sent, then the run is cut short.
    out = io.StringIO()
    now = datetime(2026, 12, 1, 9, 0, 10, tzinfo=UTC)
    with (
        redirect_stdout(out),
        pytest.raises(ProblemsFound),
        publish_view.Progress(fmt) as progress,
    ):
        publish(project, now=now, on_outcome=progress.outcome)
        raise error
    text = out.getvalue()
    if fmt == "json":
        document = json.loads(text)
        assert [d["state"] for d in document["deliveries"]] == ["sent", "sent"]
        assert document["ok"] is False and document["counts"] == {"sent": 2}
        assert document["problems"] == [problem_json(p) for p in error.problems]
    else:
        parsed = lines_of(text)
        assert [line["type"] for line in parsed] == ["delivery", "delivery", "problem", "summary"]
        assert parsed[-1]["ok"] is False and parsed[-1]["counts"] == {"sent": 2}


def many_items(count: int) -> str:
    lines = ["items:"]
    for n in range(count):
        lines += [
            f"  - id: daily-{n}",
            "    channels: [console]",
            "    template: posts/tip",
            f'    schedule: {{cron: "{n % 60} 9 * * *"}}',
        ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_an_interrupted_plan_still_ends_its_output(make_project: MakeProject, fmt: str) -> None:
    """Ctrl-C in the middle of a long `plan --format json` (a year of 300 daily items): what was
    written is still one JSON document, or whole lines, saying it was interrupted."""
    root = make_project(config=CONFIG, calendars={"many.yaml": many_items(300)})
    proc = subprocess.Popen(
        [*command(), "-C", str(root), "plan", "--days", "365", "--format", fmt],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    head = ""
    while '"id"' not in head:  # the first delivery is out: the stream has begun
        line = proc.stdout.readline()
        assert line, proc.communicate(timeout=60)
        head += line
    proc.send_signal(signal.SIGINT)
    rest = proc.stdout.read()  # on from what readline() buffered (communicate() would skip it)
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 130, err
    text = head + rest
    if fmt == "json":
        document = json.loads(text)
        assert 0 < len(document["deliveries"]) < 300 * 365
        assert document["summary"]["deliveries"] == len(document["deliveries"])
        assert "interrupted" in document["problems"][-1]["message"]
    else:
        parsed = lines_of(text)
        written = sum(1 for line in parsed if line["type"] == "delivery")
        assert 0 < written < 300 * 365 and parsed[-1]["lines"]["delivery"] == written
        assert parsed[-1]["deliveries"] == written and parsed[-1]["window"]
        assert parsed[-2]["type"] == "problem" and "interrupted" in parsed[-2]["message"]
        assert parsed[-1]["ok"] is False


# -- secrets --------------------------------------------------------------------------------------


def test_jsonl_holds_no_secret_even_when_the_server_echoes_it(make_project: MakeProject) -> None:
    """A Mastodon that answers 401 with the request echoed (its bearer token in it): the jsonl
    log of publish and status shows the failure and not one piece of the token."""
    token = ENV_TEMPLATE["MASTO_TOKEN"]

    def echo(request: Request) -> Answer:
        said = json.dumps(dict(request.headers)).replace("/", "\\/")
        return Answer(401, json.dumps({"error": f"bad token, you sent {said}"}).encode())

    with Networks() as networks:
        networks.answer = echo
        config = (
            "timezone: UTC\nlocale: en\nstate: sqlite:///state.db\n"
            "channels:\n  mastodon:\n    type: mastodon\n"
            f"    instance: {networks.url}\n    token: ${{MASTO_TOKEN}}\n"
        )
        calendar = TWO.replace("[console]", "[mastodon]")
        root = make_project(config=config, calendars={"main.yaml": calendar})
        env = {"MASTO_TOKEN": token}
        outputs, parsed = [], []
        for args in (
            ("publish", "--now", "2026-12-01T09:00:10Z", "--format", "jsonl"),
            ("publish", "--now", "2026-12-01T09:00:20Z", "--format", "jsonl", "--all"),
            ("status", "--format", "jsonl"),
        ):
            code, out, err = run(root, *args, env=env)
            assert code in (0, 1), err
            outputs.append(out + err)
            parsed += lines_of(out)
        failed = [line for line in parsed if line.get("state") == "failed"]
        assert failed and "bad token" in failed[0]["detail"], parsed
        code, out, err = run(root, "status", failed[0]["id"], "--format", "jsonl", env=env)
        outputs.append(out + err)
        assert any(token in str(r.headers) for r in networks.requests)  # the echo was real
    secrets = Secrets([token])
    for text in outputs:
        assert token not in text
        assert secrets.redact(text) == text, text  # not even 8 characters of it


# -- the writers ----------------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)
NAMES = st.text(min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(
    head=st.dictionaries(NAMES, JSON_VALUES, max_size=3),
    arrays=st.lists(st.tuples(NAMES, st.lists(JSON_VALUES, max_size=4)), max_size=3),
    tail=st.dictionaries(NAMES, JSON_VALUES, max_size=2),
)
def test_a_streamed_document_is_what_one_dump_writes(
    head: dict[str, Any], arrays: list[tuple[str, list[Any]]], tail: dict[str, Any]
) -> None:
    """Field by field and element by element, the text is `write_json`'s for the whole object
    (so streaming changed no byte of `plan --format json`), Greek and emoji included."""
    head.pop("problems", None)  # the field `close` writes when problems were added
    seen = {*head, "problems"}
    unique = []
    for name, items in arrays:  # each name once, as in a dict
        if name not in seen:
            seen.add(name)
            unique.append((name, items))
    arrays = unique
    tail = {n: v for n, v in tail.items() if n not in seen}
    out = io.StringIO()
    with JsonDocument(head, always_problems=False, out=out) as doc:
        for name, items in arrays:
            doc.array(name)
            for element in items:
                doc.append(element)
        for name, value in tail.items():
            doc.field(name, value)
    whole = {**head, **dict(arrays), **tail}
    expected = io.StringIO()
    with redirect_stdout(expected):
        write_json(whole)
    assert out.getvalue() == expected.getvalue()


def test_writers_stop_at_their_end() -> None:
    """A sending thread that finishes after an interrupted run writes nothing past the end."""
    out = io.StringIO()
    doc = JsonDocument({"schema": "x/1"}, out=out)
    doc.array("deliveries")
    doc.append({"id": "a", "text": "Καλή χρονιά 🎉"})
    doc.close()
    doc.append({"id": "late"})
    doc.field("late", 1)
    assert json.loads(out.getvalue()) == {
        "schema": "x/1",
        "deliveries": [{"id": "a", "text": "Καλή χρονιά 🎉"}],
        "problems": [],
    }
    out = io.StringIO()
    lines = JsonLines("x/1", out=out)
    lines.line("delivery", {"id": "a"})
    lines.summary(ok=True)
    lines.line("delivery", {"id": "late"})
    assert [json.loads(line) for line in out.getvalue().splitlines()] == [
        {"type": "delivery", "id": "a"},
        {"type": "summary", "schema": "x/1", "ok": True, "lines": {"delivery": 1}},
    ]
