"""Templates cannot read files outside `templates/`, through a symlinked file or folder, nor
through `{% include %}`, `{% extends %}` or `{% import %}`: `validate` names the template and the
item, `preview` and `publish` never show the file's content."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from commcal.cli import app
from tests.conftest import MakeProject

SECRET_TEXT = "root-password-is-hunter2"
CALENDAR = """\
items:
  - id: leaky
    kind: post
    at: 2026-12-10 09:00
    channels: [console]
    template: posts/leak
"""
NOW = "2026-12-10T09:00:30Z"


def run(root: Path, *args: str) -> Result:
    return CliRunner().invoke(app, ["-C", str(root), *args])


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder elsewhere on the host, holding a 'secret' file and a template-looking one."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "secret.txt").write_text(SECRET_TEXT + "\n", encoding="utf-8")
    (folder / "part.j2").write_text(SECRET_TEXT + "\n", encoding="utf-8")
    return folder


def _project(make_project: MakeProject, templates: dict[str, str]) -> Path:
    config = "timezone: UTC\nlocale: en\nstate: sqlite:///state.db\n"
    config += "channels:\n  console:\n    type: console\n"
    return make_project(config=config, calendars={"main.yaml": CALENDAR}, templates=templates)


def _refused_everywhere(root: Path, template_file: str, included_at: str | None = None) -> None:
    validated = run(root, "validate", "--now", "2026-12-01T00:00:00Z")
    assert validated.exit_code == 1, validated.output
    assert SECRET_TEXT not in validated.output
    line = next(line for line in validated.output.splitlines() if "outside templates/" in line)
    assert line.startswith(f"{template_file}: error: template file is a link to "), line
    assert "item 'leaky' in calendars/main.yaml:2 (channel console)" in line
    if included_at:
        assert f"included at {included_at}" in line

    preview = run(root, "preview", "leaky", "--now", "2026-12-01T00:00:00Z")
    assert SECRET_TEXT not in preview.output
    assert preview.exit_code == 1, preview.output
    assert "outside templates/" in preview.output

    published = run(root, "publish", "--now", NOW)
    assert SECRET_TEXT not in published.output
    assert published.exit_code == 1, published.output
    assert "outside templates/" in published.output
    ledger = (root / "state.db").read_bytes()
    assert SECRET_TEXT.encode() not in ledger


def test_a_template_linked_to_a_file_outside_is_refused(
    make_project: MakeProject, outside: Path
) -> None:
    root = _project(make_project, {"posts/tip.j2": "Tip\n"})
    os.symlink(outside / "secret.txt", root / "templates" / "posts" / "leak.j2")
    _refused_everywhere(root, "templates/posts/leak.j2")


def test_an_include_through_a_linked_folder_is_refused(
    make_project: MakeProject, outside: Path
) -> None:
    root = _project(make_project, {"posts/leak.j2": 'Hello\n{% include "shared/part.j2" %}\n'})
    os.symlink(outside, root / "templates" / "shared")
    _refused_everywhere(root, "templates/shared/part.j2", "templates/posts/leak.j2:2")


@pytest.mark.parametrize(
    "source",
    [
        '{% extends "shared/part.j2" %}',
        '{% import "shared/part.j2" as part %}Hello',
        '{% from "shared/part.j2" import nothing %}Hello',
    ],
)
def test_extends_and_import_are_confined_too(
    make_project: MakeProject, outside: Path, source: str
) -> None:
    root = _project(make_project, {"posts/leak.j2": source + "\n"})
    os.symlink(outside, root / "templates" / "shared")
    validated = run(root, "validate", "--now", "2026-12-01T00:00:00Z")
    assert validated.exit_code == 1, validated.output
    assert "templates/shared/part.j2: error: template file is a link to" in validated.output
    assert SECRET_TEXT not in validated.output


def test_links_inside_templates_still_work(make_project: MakeProject, tmp_path: Path) -> None:
    """A link from one template to another, and a templates folder that is itself a link
    (a shared checkout), are inside the real templates folder: allowed."""
    root = _project(make_project, {"posts/base.j2": "From base: {{ item.id }}\n"})
    os.symlink("base.j2", root / "templates" / "posts" / "leak.j2")
    shown = run(root, "preview", "leaky", "--now", "2026-12-01T00:00:00Z")
    assert shown.exit_code == 0, shown.output
    assert "From base: leaky" in shown.output

    real = tmp_path / "shared-templates"
    (root / "templates").rename(real)
    os.symlink(real, root / "templates")
    again = run(root, "preview", "leaky", "--now", "2026-12-01T00:00:00Z")
    assert again.exit_code == 0, again.output
    assert "From base: leaky" in again.output


def test_a_link_to_a_device_is_refused_without_reading_it(make_project: MakeProject) -> None:
    """/dev/zero would never end: the check comes before the file is opened."""
    root = _project(make_project, {"posts/tip.j2": "Tip\n"})
    os.symlink("/dev/zero", root / "templates" / "posts" / "leak.j2")
    validated = run(root, "validate", "--now", "2026-12-01T00:00:00Z")
    assert validated.exit_code == 1, validated.output
    assert "templates/posts/leak.j2: error: template file is a link to /dev/zero" in (
        validated.output
    )


def test_a_template_saved_with_a_byte_order_mark_is_read_without_it(
    make_project: MakeProject,
) -> None:
    """Some editors start a UTF-8 file with U+FEFF; X refuses a post holding it (twitter-text
    INVALID_CHARACTERS). The mark is dropped when the template is read; one inside the text
    (here from a variable) is a problem `validate` names."""
    import json

    config = "timezone: UTC\nlocale: en\nchannels:\n  x:\n    type: x\n    token: ${X_TOKEN}\n"
    calendar = CALENDAR.replace("[console]", "[x]").replace("posts/leak", "posts/tip")
    calendar += '    vars: {name: "Ann"}\n'
    root = make_project(
        config=config,
        calendars={"main.yaml": calendar},
        templates={"posts/tip.j2": "\ufeffHello {{ name }}\n"},
    )
    validated = run(root, "validate", "--now", "2026-12-01T00:00:00Z")
    assert validated.exit_code == 0, validated.output
    shown = run(root, "preview", "leaky", "--format", "json", "--now", "2026-12-01T00:00:00Z")
    assert shown.exit_code == 0, shown.output
    (entry,) = json.loads(shown.stdout)["deliveries"]
    assert entry["text"] == "Hello Ann"

    (root / "calendars" / "main.yaml").write_text(
        calendar.replace('"Ann"', '"\ufeffAnn"'), encoding="utf-8"
    )
    validated = run(root, "validate", "--now", "2026-12-01T00:00:00Z")
    assert validated.exit_code == 1, validated.output
    assert "text holds U+FEFF (byte order mark), which X refuses; remove it" in validated.output
