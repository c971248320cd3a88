"""`--help` written for the people who read it: no Python type names.

Typer shows a value's Python type where an option names no metavar (`--limit <int>`,
`--only <list[str]>`, `delivery <str>`) and ranges as `[1<=x<=3660]`. `ReadableGroup`, the
app's group class, walks every command once the app is built and gives each such value a word
(`N`, `FILE`, the option's name in capitals), shows an argument by its metavar alone, and writes
ranges as `1 to 3660`; an option that names its own metavar keeps it.

Imported by `commcal.cli` at start-up: nothing here but typer, which is loaded already.
"""

from __future__ import annotations

from typing import Any

import typer.core


class ReadableGroup(typer.core.TyperGroup):
    """The commcal app's group: every command under it gets readable help (`readable`)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        readable(self)


def readable(command: Any) -> None:
    """Give every option and argument of `command` and its subcommands a metavar a person
    reads (once: nested groups are built, and walked, before their parent)."""
    for param in getattr(command, "params", ()):
        if isinstance(param, typer.core.TyperArgument) and not isinstance(param, _Argument):
            param.__class__ = _Argument
            if param.metavar is None:
                param.metavar = (param.name or "value").upper()
        elif isinstance(param, typer.core.TyperOption) and not isinstance(param, _Option):
            param.__class__ = _Option
            if param.metavar is None and not (param.is_flag or param.count):
                param.metavar = value_word(param)
    for sub in getattr(command, "commands", {}).values():
        readable(sub)


def value_word(param: Any) -> str:
    """The word for an option's value: a number is N, a path FILE (a folder DIR), one of a few
    choices those choices (`human|json`), anything else the option's name (`--state STATE`)."""
    desc = param.type_descriptor
    if desc.is_choice and desc.choices is not None:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices)
    if desc.annotation in (int, float):
        return "N"
    if desc.is_path:
        return "DIR" if desc.path_type == "directory" else "FILE"
    return str(param.name or "value").upper()


def number_range(low: float | None, high: float | None) -> str | None:
    """`1 to 3660`, `at least 1`, `at most 10`, or None."""
    if low is None and high is None:
        return None
    if high is None:
        return f"at least {low}"
    if low is None:
        return f"at most {high}"
    return f"{low} to {high}"


class _Argument(typer.core.TyperArgument):
    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the metavar says it: `ITEM`, not `item <str>`

    def _get_number_range_help_str(self) -> str | None:
        return number_range(self.min, self.max)


class _Option(typer.core.TyperOption):
    def _get_number_range_help_str(self) -> str | None:
        if self.count and self.min == 0 and self.max is None:
            return None
        return number_range(self.min, self.max)
