"""`commcal pull`: read back what sent posts got. The work is in `commcal.engagement.pull`."""

from __future__ import annotations

from typing import Annotated

import typer

from commcal.options import StateOption


def pull(
    since: Annotated[
        str,
        typer.Option(
            metavar="DURATION",
            help="Read posts sent within this long before now: 30d, 2w, 12h (default 30d).",
        ),
    ] = "30d",
    channel: Annotated[
        list[str] | None, typer.Option(metavar="NAME", help="Only this channel (repeatable).")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="List the posts a pull would read; make no network call, write nothing.",
        ),
    ] = False,
    max_wait: Annotated[
        float,
        typer.Option(
            metavar="SECONDS",
            min=0,
            help="Longest wait for a network's rate limit to reset before that channel stops "
            "for this run (its posts are read by the next pull).",
        ),
    ] = 60.0,
    now: Annotated[
        str | None,
        typer.Option("--now", metavar="INSTANT", help="Pretend it is this instant (ISO 8601)."),
    ] = None,
    state: StateOption = None,
    format: Annotated[
        str, typer.Option("--format", "-f", metavar="FORMAT", help="Output: table or json.")
    ] = "table",
) -> None:
    """Read back what each sent post got: likes, reposts, replies, poll results, and the
    replies themselves, recorded in the ledger as timestamped snapshots (never overwritten).
    Mastodon, Bluesky, Matrix and Discord; a deleted post is recorded once as gone. Exit 1
    when any post could not be read.

    Example: commcal pull --since 7d --dry-run
    """
    import signal
    import threading
    from datetime import UTC, datetime, timedelta

    from commcal import cli
    from commcal.engagement import pull as pulling
    from commcal.errors import CommcalError
    from commcal.timeutil import parse_duration
    from commcal.views import pull as view

    if format not in ("table", "json"):
        raise cli.fail(f"--format {format!r}: choose table or json")
    try:
        window = parse_duration(since)
    except OverflowError:  # more weeks than a timedelta holds: "since ever"
        window = timedelta.max
    if window is None or window <= timedelta(0):
        raise cli.fail(f"--since {since!r}: give a duration such as 30d, 2w or 12h")
    at = cli._now(now)
    # Nothing was sent before 1970 (--now's earliest year): a longer --since reads every post.
    start = at - min(window, at - datetime(1970, 1, 1, tzinfo=UTC))
    project = cli._load()
    if project.config_errors:
        cli._stop_on_errors(project)
    cli._check_filters(project, channel=channel)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    progress = view.Progress(format)
    # A dry run writes nothing at all, not even a migration of an older ledger.
    with cli._ledger(project, state, create=False, read_only=dry_run) as ledger:
        posts = pulling.sent_posts(ledger, since=start, until=at, channels=channel)
        progress.start(len(posts))
        try:
            report = pulling.pull(
                ledger,
                project.channels,
                posts,
                now=at,
                since=start,
                dry_run=dry_run,
                max_wait=max_wait,
                on_result=progress.advance,
                stop=stop.is_set,
            )
        except CommcalError as exc:
            raise cli.fail(str(exc), exc.exit_code) from None
        finally:
            progress.stop()
    view.show(report, format)
    if not report.ok:
        raise typer.Exit(1)
