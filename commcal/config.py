"""commcal.yaml: the project's zone, locale, state store, publishing rules and channels."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from commcal.calendar.fields import Reader
from commcal.calendar.yamlnodes import Node, load
from commcal.errors import ConfigError, Pos, Problem
from commcal.root import CONFIG_FILE as CONFIG_FILE
from commcal.root import find_project as find_project
from commcal.timeutil import zone, zone_suggestions

if TYPE_CHECKING:
    from commcal.lintconfig import LintConfig

# A `${NAME}` reference to an environment variable in commcal.yaml.
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class EnvRef:
    """A `${NAME}` reference in commcal.yaml, resolved only when a value is needed."""

    template: str

    @property
    def names(self) -> list[str]:
        return ENV_REF.findall(self.template)

    def resolve(self, env: Mapping[str, str]) -> str | None:
        missing = [n for n in self.names if not env.get(n)]
        if missing:
            return None
        return ENV_REF.sub(lambda m: env[m.group(1)], self.template)

    def __str__(self) -> str:
        return self.template


DEFAULT_STATE = "sqlite:///.commcal/state.db"
TOP_KEYS = (
    "project",
    "timezone",
    "locale",
    "state",
    "publish",
    "channels",
    "vars",
    "links",
    "members",
    "lint",
    "media",
)
MEMBER_KEYS = (
    "secret",
    "unsubscribe_url",
    "unsubscribe_mailto",
    "track_clicks",
    "survey_responses",
)
MEDIA_KEYS = ("fit",)
PUBLISH_KEYS = ("max_late", "max_attempts", "lease", "concurrency", "retry_delay")


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    type: str
    settings: Mapping[str, Any]
    pos: Pos


@dataclass(frozen=True)
class PublishConfig:
    max_late: timedelta = timedelta(hours=6)  # later than this a delivery is `expired`, not sent
    max_attempts: int = 5  # transient failures retry with backoff, then `failed`
    lease: timedelta = timedelta(minutes=5)  # a claim not finished by then can be taken over
    concurrency: int = 4  # channels sending at once
    retry_delay: timedelta = timedelta(seconds=30)  # first backoff step; doubles, with jitter


@dataclass(frozen=True)
class LinkConfig:
    utm_source: str = ""  # empty: the channel name (mastodon, newsletter ...)
    utm_medium: str = "social"


@dataclass(frozen=True)
class MemberConfig:
    """How messages to people are signed: unsubscribe links, survey tokens, derived codes."""

    secret: EnvRef | None = None  # ${ENV} only: HMAC key for every member token
    unsubscribe_url: str = ""  # base of the one-click link, served by `commcal unsubscribe-server`
    unsubscribe_mailto: str = ""
    # Opt-in, both off by default: `{{ track(url) }}` in members' mail makes a signed redirect
    # through the unsubscribe server that records the click; the server takes members' survey
    # answers at `{{ survey_response_url }}`. Both need unsubscribe_url (the server's address).
    track_clicks: bool = False
    survey_responses: bool = False


@dataclass(frozen=True)
class Config:
    root: Path
    # The project's name, which its ledger remembers: one ledger serves one project. Empty:
    # the name of the project's folder (see `project_name`).
    project: str = ""
    timezone: str = "UTC"
    locale: str = "en"
    state: str | EnvRef = DEFAULT_STATE
    publish: PublishConfig = PublishConfig()
    channels: Mapping[str, ChannelConfig] = field(default_factory=dict)
    vars: Mapping[str, Any] = field(default_factory=dict)
    links: LinkConfig = LinkConfig()
    members: MemberConfig = MemberConfig()
    # `lint:`, the cadence rules `validate` checks (commcal.lint); None: the defaults. Read
    # only when written, so a project without it never imports commcal.lintconfig.
    lint: LintConfig | None = None
    # `media: {fit: true}`: an image over a channel's byte or pixel limit is scaled down and
    # recompressed into a copy under .commcal/media/ (commcal.mediacheck.fit), never the file
    # itself; off, such an image is a problem to fix by hand.
    media_fit: bool = False

    def member_secret(self, env: Mapping[str, str] | None = None) -> str | None:
        """The members secret's value, or None when unset (plan and preview do without)."""
        if self.members.secret is None:
            return None
        return self.members.secret.resolve(os.environ if env is None else env)

    @property
    def path(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def project_name(self) -> str:
        """`project:` from commcal.yaml, else the name of the folder holding it."""
        return self.project or self.root.resolve().name or "commcal"

    def ledger_url(self, override: str | None = None, env: Mapping[str, str] | None = None) -> str:
        """The ledger a command uses: `override` (--state), else COMMCAL_STATE, else `state:`
        in commcal.yaml (default sqlite:///.commcal/state.db)."""
        environ = os.environ if env is None else env
        return override or environ.get("COMMCAL_STATE") or self.state_url(environ)

    def state_url(self, env: Mapping[str, str] | None = None) -> str:
        """`state:` of commcal.yaml, its ${ENV} references resolved."""
        if isinstance(self.state, EnvRef):
            resolved = self.state.resolve(os.environ if env is None else env)
            if resolved is None:
                raise ConfigError(
                    f"{self.path}: state refers to {', '.join(self.state.names)}, which is not set"
                )
            return resolved
        return self.state


def display_path(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def load_config(root: Path) -> tuple[Config, list[Problem]]:
    path = root / CONFIG_FILE
    shown = display_path(path, root)
    node, problems = load(path, shown)
    if node is None:
        return Config(root=root), problems
    reader = Reader()
    config = _read_config(reader, node, root)
    return config, problems + reader.problems


def _env_or(reader: Reader, node: Node, what: str) -> Any:
    return _env_refs(reader.value(node, what))


def _env_refs(value: Any) -> Any:
    """Every string holding a ${NAME} reference, at any depth, becomes an EnvRef."""
    if isinstance(value, str) and ENV_REF.search(value):
        return EnvRef(value)
    if isinstance(value, dict):
        return {k: _env_refs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_env_refs(v) for v in value]
    return value


def read_zone(reader: Reader, node: Node, what: str) -> str | None:
    name = reader.text(node, what)
    if name is None:
        return None
    try:
        zone(name)
    except KeyError:
        close = zone_suggestions(name)
        hint = f"did you mean {close[0]!r}?" if close else "use an IANA name like Europe/Athens"
        reader.problem(node.pos, f"unknown time zone {name!r}", hint)
        return None
    return name


def read_locale(reader: Reader, node: Node, what: str) -> str | None:
    name = reader.text(node, what)
    if name is None:
        return None
    from babel import Locale, UnknownLocaleError

    try:
        Locale.parse(name.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        reader.problem(
            node.pos,
            f"unknown locale {name!r}",
            "use a language code such as en, el (Greek) or sw (Swahili)",
        )
        return None
    return name


def _read_config(reader: Reader, node: Node, root: Path) -> Config:
    if not reader.mapping(node, "commcal.yaml", TOP_KEYS):
        return Config(root=root)
    values: dict[str, Any] = {}
    if (n := node.get("project")) is not None and (name := reader.text(n, "project")):
        if name.strip() != name or not name.isprintable() or len(name) > 100:
            reader.problem(
                n.pos,
                f"project {name!r} is not a usable name",
                "one line of at most 100 characters, e.g. project: community-news",
            )
        else:
            values["project"] = name
    if (n := node.get("timezone")) is not None and (tz := read_zone(reader, n, "timezone")):
        values["timezone"] = tz
    if (n := node.get("locale")) is not None and (loc := read_locale(reader, n, "locale")):
        values["locale"] = loc
    if (n := node.get("state")) is not None and (state := reader.text(n, "state")):
        values["state"] = EnvRef(state) if ENV_REF.search(state) else state
        if not ENV_REF.search(state) and not state.startswith(
            ("sqlite://", "postgresql://", "postgres://")
        ):
            reader.problem(
                n.pos,
                f"state {state!r} is not a store URL",
                "use sqlite:///.commcal/state.db or postgresql://user@host/db",
            )
    if (n := node.get("publish")) is not None:
        values["publish"] = _read_publish(reader, n)
    if (n := node.get("vars")) is not None and reader.mapping(n, "vars"):
        values["vars"] = reader.value(n, "vars")
    if (n := node.get("links")) is not None and reader.mapping(
        n, "links", ("utm_source", "utm_medium")
    ):
        link_values = {k.text: reader.text(v, f"links.{k.text}") for k, v in n.entries}
        values["links"] = LinkConfig(**{k: v for k, v in link_values.items() if v})
    if (n := node.get("channels")) is not None:
        values["channels"] = _read_channels(reader, n)
    if (n := node.get("members")) is not None and reader.mapping(n, "members", MEMBER_KEYS):
        values["members"] = _read_members(reader, n)
    media = node.get("media")
    if media is not None and reader.mapping(media, "media", MEDIA_KEYS):
        fit = media.get("fit")
        values["media_fit"] = fit is not None and bool(reader.boolean(fit, "media.fit"))
    if (n := node.get("lint")) is not None:
        from commcal.lintconfig import read_lint

        kinds = {name: spec.type for name, spec in values.get("channels", {}).items()}
        values["lint"] = read_lint(reader, n, kinds)
    return Config(root=root, **values)


def _read_publish(reader: Reader, node: Node) -> PublishConfig:
    if not reader.mapping(node, "publish", PUBLISH_KEYS):
        return PublishConfig()
    values: dict[str, Any] = {}
    for key in ("max_late", "lease", "retry_delay"):
        if (n := node.get(key)) is not None:
            value = reader.duration(n, f"publish.{key}", allow_negative=False)
            if value is not None:
                values[key] = value
    if (n := node.get("max_attempts")) is not None and (
        count := reader.integer(n, "publish.max_attempts", 1, 100)
    ) is not None:
        values["max_attempts"] = count
    if (n := node.get("concurrency")) is not None and (
        count := reader.integer(n, "publish.concurrency", 1, 64)
    ) is not None:
        values["concurrency"] = count
    return PublishConfig(**values)


def _read_channels(reader: Reader, node: Node) -> dict[str, ChannelConfig]:
    channels: dict[str, ChannelConfig] = {}
    if not reader.mapping(node, "channels"):
        return channels
    for key, value in node.entries:
        name = reader.identifier(key, "channel name")
        if name is None or not reader.mapping(value, f"channel {name!r}"):
            continue
        type_node = value.get("type")
        if type_node is None:
            reader.problem(
                value.pos,
                f"channel {name!r} needs a type",
                "e.g. type: mastodon (see `commcal channels types`)",
            )
            continue
        type_name = reader.text(type_node, f"channels.{name}.type")
        if type_name is None:
            continue
        settings = {
            k.text: _env_or(reader, v, f"channels.{name}.{k.text}")
            for k, v in value.entries
            if k.text != "type"
        }
        channels[name] = ChannelConfig(name, type_name, settings, key.pos)
    return channels


def _read_members(reader: Reader, node: Node) -> MemberConfig:
    values: dict[str, Any] = {}
    if (n := node.get("secret")) is not None and (text := reader.text(n, "members.secret")):
        if not ENV_REF.search(text):
            reader.problem(
                n.pos,
                "members.secret must be an environment reference, not a literal",
                "e.g. secret: ${COMMCAL_MEMBER_SECRET}",
            )
        else:
            values["secret"] = EnvRef(text)
    if (n := node.get("unsubscribe_url")) is not None and (
        url := reader.text(n, "members.unsubscribe_url")
    ):
        from commcal.unsubscribe import unsubscribe_url_problem

        problem = unsubscribe_url_problem(url)
        if problem:
            reader.problem(
                n.pos,
                f"members.unsubscribe_url must be an https:// URL, not {url!r}: {problem}",
                "use the https:// address of the proxy in front of `commcal unsubscribe-server`;"
                " mail clients offer one-click unsubscribe over HTTPS only (RFC 8058), and"
                " http://localhost is accepted for tests only",
            )
        else:
            values["unsubscribe_url"] = url
    if (n := node.get("unsubscribe_mailto")) is not None and (
        mail := reader.text(n, "members.unsubscribe_mailto")
    ):
        from commcal.audience import AddressError, email_address

        try:  # an address that would break the List-Unsubscribe header of every mail
            values["unsubscribe_mailto"] = email_address(mail)
        except AddressError as exc:
            reader.problem(
                n.pos,
                f"members.unsubscribe_mailto {mail!r} is not an e-mail address: {exc}",
                "e.g. unsubscribe_mailto: leave@example.org",
            )
    for key in ("track_clicks", "survey_responses"):
        if (n := node.get(key)) is not None and (on := reader.boolean(n, f"members.{key}")):
            if "unsubscribe_url" not in values:
                reader.problem(
                    n.pos,
                    f"members.{key} needs members.unsubscribe_url: the links go through "
                    "`commcal unsubscribe-server`",
                    "set unsubscribe_url: https://news.example.org (the server's address)",
                )
            else:
                values[key] = on
    return MemberConfig(**values)
