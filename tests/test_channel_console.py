"""The dry-run channels: console output and the JSON-lines file that never repeats a key."""

from __future__ import annotations

import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from commcal.channels.base import EnvRef, Media, Message, Receipt, Recipient
from commcal.channels.console import ConsoleChannel, FileChannel
from commcal.errors import ConfigError

MESSAGE = Message(
    channel="demo",
    channel_type="console",
    text="Καλημέρα! Meetup on Thursday.",
    subject="Αθήνα meetup",
    recipient=Recipient(email="maria@example.org", name="Μαρία"),
)


def test_console_writes_header_and_text_to_its_stream() -> None:
    channel = ConsoleChannel("demo", {})
    channel.stream = io.StringIO()
    receipt = channel.send(MESSAGE, "key-1")
    assert receipt == Receipt(remote_id="key-1")
    assert channel.stream.getvalue() == (
        "── demo · Αθήνα meetup → Μαρία <maria@example.org>\nΚαλημέρα! Meetup on Thursday.\n\n"
    )
    assert ConsoleChannel.idempotent is False


def test_console_defaults_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    ConsoleChannel("demo", {}).send(Message("demo", "console", "hello"), "k")
    assert capsys.readouterr().out == "── demo\nhello\n\n"


def file_channel(path: str, **extra: object) -> FileChannel:
    channel = FileChannel("out", {"path": path, **extra})
    channel.clock = lambda: datetime(2026, 12, 10, 16, 0, tzinfo=UTC)
    return channel


def test_file_appends_one_json_line_per_message(tmp_path: Path) -> None:
    channel = file_channel(str(tmp_path / "out" / "messages.jsonl"))
    first = channel.send(MESSAGE, "key-1")
    channel.send(Message("demo", "console", "second", html="<p>second</p>"), "key-2")
    lines = (tmp_path / "out" / "messages.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "key": "key-1",
            "channel": "demo",
            "subject": "Αθήνα meetup",
            "text": "Καλημέρα! Meetup on Thursday.",
            "html": None,
            "recipient": {"email": "maria@example.org", "name": "Μαρία", "locale": ""},
            "sent_at": "2026-12-10T16:00:00Z",
        },
        {
            "key": "key-2",
            "channel": "demo",
            "subject": None,
            "text": "second",
            "html": "<p>second</p>",
            "recipient": None,
            "sent_at": "2026-12-10T16:00:00Z",
        },
    ]
    assert first.remote_id == "key-1"
    assert first.url == (tmp_path / "out" / "messages.jsonl").as_uri()


def test_file_same_key_twice_writes_one_line_and_same_receipt(tmp_path: Path) -> None:
    path = tmp_path / "messages.jsonl"
    first = file_channel(str(path)).send(MESSAGE, "key-1")
    # A second channel object (a later cron run) reads the key back from the file.
    again = file_channel(str(path)).send(MESSAGE, "key-1")
    assert again == first
    assert len(path.read_text(encoding="utf-8").splitlines()) == 1
    assert FileChannel.idempotent is True


def test_file_survives_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "messages.jsonl"
    path.write_text('{"key": "key-0"}\n{"key": "key-1", "te', encoding="utf-8")
    file_channel(str(path)).send(MESSAGE, "key-0")  # already there
    file_channel(str(path)).send(MESSAGE, "key-1")  # torn line does not count
    file_channel(str(path)).send(MESSAGE, "key-1")  # and now it is found
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3
    assert json.loads(lines[2])["key"] == "key-1"


def test_file_relative_path_is_relative_to_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    file_channel("relative.jsonl").send(MESSAGE, "key-1")
    with open(tmp_path / "relative.jsonl", "rb") as handle:
        os.fsync(handle.fileno())
        assert json.loads(handle.readline())["key"] == "key-1"


def test_file_path_from_environment(tmp_path: Path) -> None:
    channel = FileChannel(
        "out", {"path": EnvRef("${OUT_DIR}/m.jsonl")}, env={"OUT_DIR": str(tmp_path)}
    )
    channel.send(MESSAGE, "key-1")
    assert (tmp_path / "m.jsonl").exists()


def test_file_path_is_required() -> None:
    with pytest.raises(ConfigError, match="'path' is required"):
        FileChannel("out", {})


def test_file_missing_environment_variable_is_named(tmp_path: Path) -> None:
    channel = FileChannel("out", {"path": EnvRef("${OUT_DIR}/m.jsonl")}, env={})
    with pytest.raises(ConfigError, match="OUT_DIR is not set"):
        channel.send(MESSAGE, "key-1")


def test_console_names_each_image_with_its_alt_text(tmp_path: Path) -> None:
    from tests.media_helpers import png

    poster = png(tmp_path / "αφίσα.png")
    channel = ConsoleChannel("demo", {})
    channel.stream = io.StringIO()
    message = Message(
        "demo",
        "console",
        "Καλημέρα!",
        media=(Media(str(poster), alt="Η αφίσα της βραδιάς"), Media(str(poster))),
    )
    channel.send(message, "k")
    assert channel.stream.getvalue() == (
        "── demo\nΚαλημέρα!\n[αφίσα.png: Η αφίσα της βραδιάς]\n[αφίσα.png (no alt text)]\n\n"
    )


def test_the_file_channel_lists_the_media(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    channel = FileChannel("demo", {"path": str(out)})
    media = (Media("/p/media/stall.png", alt="Ο πάγκος"),)
    channel.send(Message("demo", "file", "Λαϊκή", media=media), "k")
    (line,) = out.read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["media"] == [{"path": "/p/media/stall.png", "alt": "Ο πάγκος"}]
