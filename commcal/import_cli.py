"""`commcal import`: bring content in from elsewhere. The work is in `commcal.importing`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import_app = typer.Typer(no_args_is_help=True)


@import_app.callback()
def import_group() -> None:
    """Create calendar items in bulk from other tools' exports.

    Example: commcal import csv examples/posts.csv --output calendars/spring.yaml
    """


@import_app.command("csv")
def import_csv(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(metavar="FILE", help="The CSV export, or - for stdin.")],
    output: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="Calendar file to write (default: calendars/NAME.yaml)."),
    ] = None,
    calendar: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Calendar name (default: the file's name)."),
    ] = None,
    delimiter: Annotated[
        str | None,
        typer.Option(metavar="CHAR", help="Field delimiter (default: the header's , ; or tab)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing calendar file.")] = False,
) -> None:
    """Write a calendar of one-off posts from a spreadsheet's CSV: columns date, time
    (the project's zone), channels, and text or template; optional id, title, vars, vars.NAME.
    Every bad row is reported with its row number (the header is row 1) and nothing is written.

    Example: commcal import csv examples/posts.csv --calendar spring --force
    """
    import sys

    from commcal.config import find_project
    from commcal.errors import CommcalError, ProblemsFound
    from commcal.importing import calendar_name, import_csv, write_import
    from commcal.project import load_project

    try:
        root = find_project(explicit=ctx.find_root().params.get("project"))
        project = load_project(root)
        if project.config_errors:
            raise ProblemsFound(project.config_errors)
        data = sys.stdin.buffer.read() if file == "-" else _read(Path(file))
        name = calendar or (output.stem if output else calendar_name(file))
        imported = import_csv(project, data, file, name, delimiter=delimiter)
        path = output if output is not None else root / "calendars" / f"{name}.yaml"
        written = write_import(project, imported, path, force=force)
    except ProblemsFound as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        typer.echo(f"commcal: {exc}; nothing was written", err=True)
        raise typer.Exit(exc.exit_code) from None
    except CommcalError as exc:
        typer.echo(f"commcal: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    if path.resolve().parent != (root / "calendars").resolve():
        typer.echo(
            f"note: {path} is not in {root / 'calendars'}: commcal reads calendars/*.yaml only",
            err=True,
        )
    for extra in written[:-1]:
        typer.echo(f"wrote {extra} (the template of rows with text)")
    count = f"{imported.items} item{'s' if imported.items != 1 else ''}"
    typer.echo(f"wrote {written[-1]}: {count} in calendar {imported.calendar!r}")


def _read(path: Path) -> bytes:
    from commcal.errors import ConfigError

    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
