"""Dry-run and demo channels: `console` writes messages to a terminal, `file` appends them to JSONL.

Neither talks to a network, so a user can try a whole calendar (`commcal publish` against these
channels) before any real account is configured.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, ClassVar

from commcal.channels.base import Channel, Media, Message, PermanentError, Receipt, Setting
from commcal.errors import ConfigError
from commcal.timeutil import utc_now

# Dry-run channels take any image or video: they name them (console) or list them (file).
ANY_VIDEO = frozenset({"video/mp4", "video/quicktime", "video/webm", "video/x-m4v"})


class ConsoleChannel(Channel):
    """Writes each message to a stream: standard output (standard error while the command's
    output is JSON), unless a test sets `stream`."""

    type_name: ClassVar[str] = "console"
    video_types: ClassVar[frozenset[str]] = ANY_VIDEO
    description: ClassVar[str] = "Print messages to the terminal (dry runs and demos)."
    settings_schema: ClassVar[dict[str, Setting]] = {}
    # Nothing remembers what was printed, so a repeated send prints again.
    idempotent: ClassVar[bool] = False
    max_length: ClassVar[int | None] = None

    def configure(self) -> None:
        # Looked up at send time, not import time, so pytest's capsys and redirections apply.
        self.stream: IO[str] | None = None
        # Standard error instead: set by the CLI when standard output carries a JSON document.
        self.to_stderr = False

    def send(self, message: Message, idempotency_key: str) -> Receipt:
        stream = self.stream
        if stream is None:
            stream = sys.stderr if self.to_stderr else sys.stdout
        header = f"── {message.channel}"
        if message.subject:
            header += f" · {message.subject}"
        if message.recipient is not None:
            header += f" → {_recipient_text(message)}"
        shown = "".join(f"[{_medium(m)}]\n" for m in message.media)
        stream.write(f"{header}\n{message.text}\n{shown}\n")
        stream.flush()
        return Receipt(remote_id=idempotency_key)


class FileChannel(Channel):
    """Appends one JSON line per message; a key already in the file is not written again."""

    type_name: ClassVar[str] = "file"
    video_types: ClassVar[frozenset[str]] = ANY_VIDEO
    description: ClassVar[str] = "Append messages as JSON lines to a file (dry runs and demos)."
    settings_schema: ClassVar[dict[str, Setting]] = {
        "path": Setting(
            "file to append to, e.g. out/messages.jsonl (relative to the current directory)",
            required=True,
        ),
    }
    # Honest: `send` looks the key up in the file under an exclusive lock before appending.
    idempotent: ClassVar[bool] = True
    max_length: ClassVar[int | None] = None

    def configure(self) -> None:
        self.clock: Callable[[], datetime] = utc_now

    def path(self) -> Path:
        raw = self.value("path")
        if not isinstance(raw, str) or not raw.strip():
            raise ConfigError(f"channel {self.name!r}: setting 'path' must name a file")
        return Path(raw).expanduser().absolute()

    def send(self, message: Message, idempotency_key: str) -> Receipt:
        path = self.path()
        receipt = Receipt(remote_id=idempotency_key, url=path.as_uri())
        record = {
            "key": idempotency_key,
            "channel": message.channel,
            "subject": message.subject,
            "text": message.text,
            "html": message.html,
            "recipient": _recipient_record(message),
            **(
                {"media": [{"path": m.path, "alt": m.alt} for m in message.media]}
                if message.media
                else {}
            ),
            "sent_at": self.clock().astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }
        line = json.dumps(record, ensure_ascii=False) + "\n"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a+", encoding="utf-8") as handle, _locked(handle):
                handle.seek(0)
                keys, complete = _keys(handle)
                if idempotency_key in keys:
                    return receipt
                handle.seek(0, os.SEEK_END)
                # A line torn by a crash gets its own line end, so ours stays readable.
                handle.write(line if complete else "\n" + line)
                handle.flush()
                # The ledger records `sent` right after this returns: the line must be on disk.
                os.fsync(handle.fileno())
        except OSError as exc:
            raise PermanentError(f"cannot write {path}: {exc.strerror or exc}") from exc
        return receipt


def _keys(handle: IO[str]) -> tuple[set[str], bool]:
    """The keys already written, and whether the file ends with a complete line."""
    keys: set[str] = set()
    complete = True
    for line in handle:
        complete = line.endswith("\n")
        try:
            record: Any = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash must not block later sends
        if isinstance(record, dict) and isinstance(record.get("key"), str):
            keys.add(record["key"])
    return keys, complete


@contextmanager
def _locked(handle: IO[str]) -> Iterator[None]:
    """An exclusive lock on the file, so two overlapping runs cannot both append a key."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; single-process use is still correct
        yield
        return
    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _recipient_text(message: Message) -> str:
    recipient = message.recipient
    if recipient is None:
        return ""
    return f"{recipient.name} <{recipient.email}>" if recipient.name else recipient.email


def _recipient_record(message: Message) -> dict[str, str] | None:
    recipient = message.recipient
    if recipient is None:
        return None
    return {"email": recipient.email, "name": recipient.name, "locale": recipient.locale}


def _medium(media: Media) -> str:
    """How the console shows an image or video: its file and its alt text."""
    name = media.path.rsplit("/", 1)[-1]
    return f"{name}: {media.alt}" if media.alt else f"{name} (no alt text)"
