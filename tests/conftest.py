"""Shared fixtures.

`make_project` writes a small commcal project into `tmp_path` from literal strings, so each test
shows its whole input::

    def test_something(make_project):
        root = make_project(
            config="timezone: UTC\\nchannels:\\n  console: {type: console}\\n",
            calendars={"main.yaml": "items:\\n  - id: a\\n    ..."},
            templates={"posts/tip.j2": "Hello {{ name }}"},
        )

Every argument is optional: `config` defaults to `DEFAULT_CONFIG` (UTC, English, one `console`
channel), `calendars` to none, `templates` to `DEFAULT_TEMPLATES` (`posts/tip`). Pass `bytes` for
a file that must hold exact bytes (non-UTF-8 input). Calling the fixture twice writes two projects
(`project`, `project-2`, ...). Text is written as UTF-8, exactly as given (no dedent).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.publish_support import Receiver
    from tests.test_community import Mailbox

DEFAULT_CONFIG = """\
timezone: UTC
locale: en
channels:
  console:
    type: console
"""

DEFAULT_TEMPLATES: Mapping[str, str] = {"posts/tip.j2": "Tip: {{ item.id }}\n"}

MakeProject = Callable[..., Path]


def _write(path: Path, content: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


@pytest.fixture
def make_project(tmp_path: Path) -> MakeProject:
    """Return `make(config=..., calendars={...}, templates={...}) -> Path` (the project root)."""
    made: list[Path] = []

    def make(
        config: str | bytes = DEFAULT_CONFIG,
        calendars: Mapping[str, str | bytes] | None = None,
        templates: Mapping[str, str | bytes] | None = None,
    ) -> Path:
        root = tmp_path / ("project" if not made else f"project-{len(made) + 1}")
        root.mkdir()
        made.append(root)
        _write(root / "commcal.yaml", config)
        for name, text in (calendars or {}).items():
            _write(root / "calendars" / name, text)
        for name, text in (DEFAULT_TEMPLATES if templates is None else templates).items():
            _write(root / "templates" / name, text)
        return root

    return make


@pytest.fixture
def smtp() -> Iterator[tuple[int, Mailbox]]:
    """A real SMTP server (aiosmtpd) on a free loopback port: `(port, mailbox)`; the mailbox
    keeps every message it accepted."""
    from aiosmtpd.controller import Controller

    from tests.test_community import Mailbox, free_port

    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port, server_hostname="mail.test")
    controller.start()
    yield port, box
    controller.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback (`tests.publish_support.Receiver`), stopped afterwards."""
    from tests.publish_support import Receiver

    with Receiver() as r:
        yield r
