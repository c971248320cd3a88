"""`commcal init`: a new project that validates and plans out of the box.

Its zone is the machine's: the TZ environment variable, then tzlocal (which reads
/etc/timezone, /etc/localtime and the like), else UTC with a note; `--timezone` chooses one.
Its weekly tip has no end, so `commcal plan` shows something whatever the date; its
`.gitignore` keeps the ledger folder `.commcal/` out of git.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from commcal.errors import ConfigError
from commcal.timeutil import zone, zone_suggestions

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
  site: https://example.org/
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

GITIGNORE = ".commcal/"
GITIGNORE_TEXT = f"""\
# commcal's ledger (what was sent), outbox and sessions: this machine's state, not the calendar
{GITIGNORE}
"""
UTC_NAMES = {"UTC", "Etc/UTC", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu", "GMT", "Etc/GMT"}
UTC_NOTE = (
    "timezone: UTC, the machine's zone; if your community lives elsewhere, edit timezone: in "
    "commcal.yaml (or run init again with --timezone Europe/Athens)"
)


@dataclass(frozen=True)
class ZoneChoice:
    """The zone `init` writes, where it came from, and what the user should know about it."""

    name: str
    source: str
    note: str | None = None


def choose_zone(given: str | None, environ: Mapping[str, str]) -> ZoneChoice:
    """`--timezone` when given (an unknown name is a ConfigError with suggestions), else the
    machine's zone, else UTC with a note."""
    if given is not None:
        name = _zone_name(given)
        if name is None:
            hint = ", ".join(zone_suggestions(given.strip())) or "Europe/Athens, America/New_York"
            raise ConfigError(f"--timezone {given!r} is not an IANA zone name; try {hint}")
        return ZoneChoice(name, "--timezone")
    notes: list[str] = []
    found: tuple[str, str] | None = None
    tz = environ.get("TZ", "").strip()
    if tz:
        name = _zone_name(tz)
        if name is not None:
            found = (name, "the TZ environment variable")
        else:
            notes.append(f"TZ={tz!r} is not an IANA zone name and was ignored")
    if found is None:
        name = _zone_name(_tzlocal_name())
        if name is not None:
            found = (name, "this machine's settings")  # /etc/timezone, /etc/localtime, ...
    if found is None:
        notes.append(
            "could not tell this machine's zone: wrote timezone: UTC; edit it in commcal.yaml "
            "(or run init again with --timezone Europe/Athens)"
        )
        return ZoneChoice("UTC", "default", "; ".join(notes))
    name, source = found
    if name in UTC_NAMES:
        name = "UTC"
        notes.append(UTC_NOTE)
    return ZoneChoice(name, source, "; ".join(notes) or None)


def _tzlocal_name() -> str:
    try:
        import tzlocal

        return tzlocal.get_localzone_name() or ""
    except Exception:  # a machine whose settings tzlocal cannot read: the next source decides
        return ""


def _zone_name(text: str) -> str | None:
    """An IANA name from `Europe/Athens`, `:Europe/Athens` (POSIX TZ) or a zoneinfo path."""
    name = text.strip().lstrip(":")
    if "zoneinfo/" in name:
        name = name.rsplit("zoneinfo/", 1)[1]
    if not name or name.startswith("/"):
        return None
    try:
        zone(name)
    except KeyError:
        return None
    return name


def project_line(directory: Path) -> str:
    """The folder's name as a YAML scalar for `project:` (quoted unless plainly safe)."""
    import json
    import re

    name = directory.resolve().name or "commcal"
    return name if re.fullmatch(r"[A-Za-z][\w.-]*", name) else json.dumps(name)


def scaffold(directory: Path, *, force: bool = False, timezone: str = "UTC") -> list[Path]:
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
            text = re.sub(
                r"^timezone: .*$",
                f"timezone: {timezone}   # times without a zone are {timezone} time",
                text,
                count=1,
                flags=re.M,
            )
            text = text.replace("{project}", project_line(directory))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    ignore = directory / ".gitignore"
    if not ignore.exists():
        ignore.write_text(GITIGNORE_TEXT, encoding="utf-8")
        written.append(ignore)
    else:
        lines = ignore.read_text(encoding="utf-8").splitlines()
        if not {GITIGNORE, GITIGNORE.rstrip("/"), "/" + GITIGNORE} & {x.strip() for x in lines}:
            with ignore.open("a", encoding="utf-8") as out:
                out.write(("\n" if lines and lines[-1] else "") + GITIGNORE_TEXT)
            written.append(ignore)
    return written
