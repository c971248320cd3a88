"""The `commcal` command's entry point: the cron minute first, then the full command line.

`commcal publish` runs from cron every minute, and most minutes nothing is due. Before typer
(and every command's options) is even imported, a plain `commcal [-C DIR] publish [--now T]
[--state URL] [--format F]` asks the cron index (commcal.cron_index) whether a full run would
do nothing; if so it prints what `commcal publish` prints then and exits 0. Anything else, or
anything unclear (another option, --help, a --now that does not parse, a changed project),
goes to commcal.cli, which parses and checks everything as usual.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

# The options of `publish` (and the top level's -C) that the shortcut understands, each with a
# value; all others, flags included, send the command line to typer.
_TOP = {"-C": "project", "--project": "project"}
_PUBLISH = {"--now": "now", "--state": "state", "--format": "format"}
# Not json: its document lists every delivery handled, `already` ones too (docs/json.md), which
# only a full run knows; the cron log's format is jsonl.
_FORMATS = ("table", "jsonl", "markdown")


def _options(argv: Sequence[str]) -> dict[str, str] | None:
    """The shortcut's options from a `publish` command line, or None if it is not one."""
    found: dict[str, str] = {}
    names = _TOP
    args = list(argv)
    while args:
        arg = args.pop(0)
        if names is _TOP and arg == "publish":
            names = _PUBLISH
            found["command"] = arg
            continue
        name, eq, value = arg.partition("=")
        if name not in names or (not eq and not args):
            return None
        key = names[name]
        if key in found:
            return None  # given twice: typer decides what that means
        found[key] = value if eq else args.pop(0)
    if "command" not in found or found.get("format", "table") not in _FORMATS:
        return None
    return found


def quiet_publish(argv: Sequence[str]) -> bool | None:
    """Print and return True when `argv` is a publish with nothing to do (see the docstring);
    False when the index was asked and said a full run is needed; None when it was not asked
    (not a plain publish, or no project found: typer parses and says what is wrong)."""
    options = _options(argv)
    if options is None:
        return None
    from datetime import UTC, datetime

    from commcal import cron_index
    from commcal.errors import CommcalError
    from commcal.root import find_project
    from commcal.window import instant

    try:
        now = instant(options["now"], "--now") if "now" in options else datetime.now(UTC)
        root = find_project(explicit=options.get("project"))
    except CommcalError:
        return None
    finished = cron_index.quiet_minute(root, now, state=options.get("state"))
    if finished is None:
        return False
    from commcal.publish.results import OutcomeState, Report
    from commcal.views import publish as view

    already = {OutcomeState.ALREADY: finished} if finished else {}
    progress = view.Progress(options.get("format", "table"))
    progress.at = now
    progress.finish(Report(unlisted=already))
    return True


def main() -> None:
    """Console-script entry point."""
    verdict = quiet_publish(sys.argv[1:])
    if verdict:
        return
    from commcal import cli

    # Asked already: `cli.publish` goes straight to the full run instead of asking again (the
    # index's file checks and ledger query would be done twice every minute something is due).
    cli.STATE.quiet_checked = verdict is False
    cli.main()
