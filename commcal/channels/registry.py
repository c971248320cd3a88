"""Find adapter types through the `commcal.channels` entry points, lazily, when first used.

Built-ins are registered the same way as third-party plugins (see pyproject.toml), so a package adds
a network with one module and one entry-point line.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import EntryPoint, entry_points

from commcal.channels.base import Channel
from commcal.errors import ConfigError

GROUP = "commcal.channels"


@cache
def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def channel_types() -> list[str]:
    return sorted(_entry_points())


def channel_class(type_name: str) -> type[Channel]:
    """The adapter class for a type name; a clear error names a missing or broken type."""
    ep = _entry_points().get(type_name)
    if ep is None:
        known = ", ".join(channel_types())
        raise ConfigError(
            f"unknown channel type {type_name!r} (built-in and installed types: {known}; "
            "a plugin adds one through the 'commcal.channels' entry point)"
        )
    try:
        cls = ep.load()
    except Exception as exc:  # a broken plugin must not read as a commcal crash
        raise ConfigError(f"channel type {type_name!r} ({ep.value}) failed to load: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Channel)):
        raise ConfigError(
            f"channel type {type_name!r} ({ep.value}) is not a commcal.channels.base.Channel"
        )
    return cls
