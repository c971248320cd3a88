"""Where the project is: the folder with commcal.yaml. Kept apart from config.py (which parses
the file, and so imports YAML) for the cron minute's shortcut (`commcal.cron_index`)."""

from __future__ import annotations

import os
from pathlib import Path

from commcal.errors import ConfigError

CONFIG_FILE = "commcal.yaml"


def find_project(start: Path | None = None, explicit: str | None = None) -> Path:
    """The project root: -C/--project, else COMMCAL_PROJECT, else the nearest commcal.yaml above."""
    chosen = explicit or os.environ.get("COMMCAL_PROJECT")
    if chosen:
        root = Path(chosen).expanduser()
        if not (root / CONFIG_FILE).is_file():
            raise ConfigError(f"no {CONFIG_FILE} in {root} (run `commcal init {root}` to make one)")
        return root.resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG_FILE).is_file():
            return folder
    raise ConfigError(
        f"no {CONFIG_FILE} in {here} or any folder above it: run commcal inside a project, "
        "pass -C DIR, or create one with `commcal init`"
    )
