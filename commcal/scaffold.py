"""`commcal init`: a new project that validates and plans out of the box."""

from __future__ import annotations

from pathlib import Path

from commcal.errors import ConfigError

FILES = {
    "commcal.yaml": """\
# commcal project configuration: see docs/calendar-format.md
project: {project}    # the ledger remembers this name: one ledger serves one project
timezone: Europe/Athens
locale: en
state: sqlite:///.commcal/state.db
publish:
  max_late: 6h        # later than this, a delivery is recorded "expired" instead of sent
  max_attempts: 5
channels:
  console:
    type: console     # prints messages: safe for trying things out
  # mastodon:
  #   type: mastodon
  #   instance: https://mastodon.example
  #   token: ${MASTODON_TOKEN}   # secrets only as environment references
""",
    "calendars/community.yaml": """\
calendar: community
vars:
  brand: Our Community
  site: https://example.org
defaults:
  channels: [console]
items:
  - id: weekly-tip
    kind: post
    template: posts/tip
    schedule: {cron: "0 9 * * MON"}
    vars:
      topic: "Say hello in the forum"
""",
    "templates/posts/tip.j2": """\
Tip of the week from {{ brand }}: {{ topic }}.
{{ site | utm }}
""",
}


def project_line(directory: Path) -> str:
    """The folder's name as a YAML scalar for `project:` (quoted unless plainly safe)."""
    import json
    import re

    name = directory.resolve().name or "commcal"
    return name if re.fullmatch(r"[A-Za-z][\w.-]*", name) else json.dumps(name)


def scaffold(directory: Path, *, force: bool = False) -> list[Path]:
    if directory.exists() and any(directory.iterdir()) and not force:
        if (directory / "commcal.yaml").exists():
            raise ConfigError(f"{directory} already has a commcal.yaml")
        raise ConfigError(f"{directory} is not empty (use --force to add the files anyway)")
    written = []
    for name, text in FILES.items():
        path = directory / name
        if path.exists():
            continue
        if name == "commcal.yaml":
            text = text.replace("{project}", project_line(directory))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
