"""`commcal run`: a long-running scheduler that publishes each delivery when it comes due.

How it wakes (no per-second polling of the ledger):
- an APScheduler `BackgroundScheduler` holds one `DateTrigger` job per distinct due time in
  `[now, now + horizon]`, plus one at each pending retry's `next_attempt_at` and at the lease end
  of each claim another worker holds (so a dead worker's deliveries are picked up right after
  its lease), plus an interval job (`sweep`, 30 s) that catches whatever else changed;
- a job only sets a wake-up flag; one runner thread does the publish runs one after another
  (`Publisher(...).run()` with `now=datetime.now(UTC)`), so wake-ups during a run coalesce into
  one more run right after it;
- the main thread watches file mtimes (`commcal.yaml`, `calendars/`, `templates/`) every
  `poll` seconds, or reloads on SIGHUP, and sends a heartbeat every `heartbeat` seconds. A broken
  edit is logged (file:line) and the last good project and schedule stay in force.

On SIGTERM/SIGINT (or `stop_event`) the scheduler stops, the in-flight publish stops between
deliveries (the Publisher's `stop`), records what it sent, and `run()` returns.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger

from commcal.errors import CommcalError, ConfigError
from commcal.ledger import State, open_ledger
from commcal.plan import Memo, deliveries, local_send_times
from commcal.project import Project, calendar_files, load_project
from commcal.publish.publisher import Publisher, check_ledger, worker_name
from commcal.publish.results import Outcome, OutcomeState, Report
from commcal.redact import project_secrets, safe_url

LogRecord = dict[str, Any]
Log = Callable[[LogRecord], None]

HORIZON = timedelta(hours=1)  # due times further ahead are scheduled by a later re-plan
SWEEP = 30.0  # seconds between wake-ups that catch retries and abandoned claims
HEARTBEAT = 10.0
POLL = 1.0  # seconds between checks of file mtimes
LOGGED = frozenset(
    {
        OutcomeState.SENT,
        OutcomeState.FAILED,
        OutcomeState.UNKNOWN,
        OutcomeState.EXPIRED,
        OutcomeState.SKIPPED,
    }
)


# -- logging ------------------------------------------------------------------------------------


def human_line(record: Mapping[str, Any]) -> str:
    """`2026-12-07 09:00:00 sent 3f9a1c2b... community/weekly-tip -> mastodon https://...`"""
    when = record["time"][:19].replace("T", " ")
    event = record["event"]
    if "id" in record:
        text = f"{when} {event} {record['id'][:8]}... {record['calendar']}/{record['item']}"
        text += f" -> {record['channel']}"
        if record.get("url"):
            text += f" {record['url']}"
        if record.get("detail"):
            text += f" ({record['detail']})"
        return text
    return f"{when} {event} {record.get('message', '')}".rstrip()


def json_line(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True)


def stream_log(fmt: str = "human", stream: TextIO | None = None) -> Log:
    """A `log` callable writing one line per record (human or JSON) to `stream` (stderr)."""
    formatter = json_line if fmt == "json" else human_line
    lock = threading.Lock()

    def log(record: LogRecord) -> None:
        out = stream if stream is not None else sys.stderr
        with lock:
            out.write(formatter(record) + "\n")
            out.flush()

    return log


def _stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- project files ------------------------------------------------------------------------------


def watched_files(root: Path) -> list[Path]:
    files = [root / "commcal.yaml", *calendar_files(root)]
    templates = root / "templates"
    if templates.is_dir():
        files.extend(sorted(p for p in templates.rglob("*") if p.is_file()))
    return files


def signature(root: Path) -> tuple[tuple[str, int, int], ...]:
    """What changes when any watched file is edited, added or removed."""
    out: list[tuple[str, int, int]] = []
    for path in watched_files(root):
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(out)


# -- the scheduler ------------------------------------------------------------------------------


@dataclass
class _Plan:
    project: Project
    ledger_url: str
    # What planning reads once per loaded project (the audiences' member zones): a replan
    # does not read every audience file again.
    memo: Memo = field(default_factory=Memo)


class Scheduler:
    """Publish every delivery when it comes due, until `stop_event` is set or a signal arrives."""

    def __init__(
        self,
        root: Path,
        state: str | None = None,
        log: Log | None = None,
        stop_event: threading.Event | None = None,
        *,
        horizon: timedelta = HORIZON,
        sweep: float = SWEEP,
        heartbeat: float = HEARTBEAT,
        poll: float = POLL,
        worker: str | None = None,
        handle_signals: bool = True,
    ) -> None:
        self.root = Path(root)
        self.state = state
        self.log: Log = log or stream_log()
        self.stop_event = stop_event or threading.Event()
        self.horizon = horizon
        self.sweep = sweep
        self.heartbeat_every = heartbeat
        self.poll = poll
        self.worker = worker or worker_name()
        self.handle_signals = handle_signals
        self._wake = threading.Event()
        self._reload = threading.Event()
        self._lock = threading.Lock()
        self._replan_lock = threading.Lock()
        self._current: _Plan | None = None
        self._scheduler: Any = None
        self._due_jobs: set[str] = set()
        self._extra_wakes: set[datetime] = set()
        self._planned_at = 0.0  # monotonic time of the last full re-plan
        self._reported: set[str] = set()  # problems of publish runs logged since the last reload

    # -- public ---------------------------------------------------------------------------------

    def request_reload(self) -> None:
        self._reload.set()

    def stop(self) -> None:
        self.stop_event.set()
        self._wake.set()

    def run(self) -> int:
        """Run until stopped. Raises ConfigError when the project is broken at start."""
        project = load_project(self.root)
        for problem in project.errors:
            self._emit("problem", str(problem))
        if (blocker := project.publish_blocker()) is not None:
            raise ConfigError(blocker)
        url = project.config.ledger_url(self.state)
        # Fail fast on a bad ledger URL, another project's ledger or a new one in place of the
        # last (publish.check_ledger), not at every wake-up.
        check_ledger(project, url, datetime.now(UTC))
        if project.errors:
            self._emit("isolated", _isolated(project))
        self._current = _Plan(project.publishable(), url)
        seen = signature(self.root)
        restore = self._install_signals()
        self._scheduler = BackgroundScheduler(timezone=UTC)
        self._scheduler.start()
        self._scheduler.add_job(
            self._wake.set, "interval", seconds=self.sweep, id="sweep", coalesce=True
        )
        self._emit("started", f"worker {self.worker}, ledger {_safe_url(url)}")
        self._heartbeat()
        runner = threading.Thread(target=self._runner, name="commcal-run", daemon=True)
        self._wake.set()  # catch up at once on what was missed within max_late
        runner.start()
        last_beat = time.monotonic()
        try:
            while not self.stop_event.wait(self.poll):
                now_sig = signature(self.root)
                if now_sig != seen or self._reload.is_set():
                    self._reload.clear()
                    seen = now_sig
                    self._reload_project()
                if time.monotonic() - last_beat >= self.heartbeat_every:
                    last_beat = time.monotonic()
                    self._heartbeat()
        finally:
            self._emit("stopping", "finishing the sends in flight")
            self._scheduler.shutdown(wait=False)
            self._wake.set()
            runner.join()
            self._heartbeat(info="stopped")
            restore()
            self._emit("stopped", "nothing left claimed")
        return 0

    # -- signals --------------------------------------------------------------------------------

    def _install_signals(self) -> Callable[[], None]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return lambda: None

        def on_stop(signum: int, frame: FrameType | None) -> None:
            self.stop()

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self.request_reload()

        saved = {
            sig: signal.signal(sig, handler)
            for sig, handler in (
                (signal.SIGTERM, on_stop),
                (signal.SIGINT, on_stop),
                (signal.SIGHUP, on_hup),
            )
        }

        def restore() -> None:
            for sig, handler in saved.items():
                signal.signal(sig, handler)

        return restore

    # -- reload ---------------------------------------------------------------------------------

    def _reload_project(self) -> None:
        assert self._current is not None
        try:
            project = load_project(self.root)
        except CommcalError as exc:
            self._emit("reload-failed", f"{exc}; keeping the last good project")
            return
        except Exception as exc:
            self._emit(
                "reload-failed", f"{type(exc).__name__}: {exc}; keeping the last good project"
            )
            return
        for problem in project.errors:
            self._emit("problem", str(problem))
        if (blocker := project.publish_blocker()) is not None:
            self._emit("reload-failed", f"{blocker}; keeping the last good project and schedule")
            return
        try:
            url = project.config.ledger_url(self.state)
        except CommcalError as exc:
            self._emit("reload-failed", f"{exc}; keeping the last good project")
            return
        if url != self._current.ledger_url:
            self._emit("warning", "the ledger URL changed: restart `commcal run` to use it")
        for path in sorted(project.broken_files):
            self._emit("reload-failed", f"{path} has errors; keeping its last good version")
        if project.errors:
            self._emit("isolated", _isolated(project))
        publishable = project.publishable(previous=self._current.project)
        with self._lock:
            self._current = _Plan(publishable, self._current.ledger_url)
            self._reported.clear()
        self._emit("reloaded", f"{sum(len(c.items) for c in project.calendars)} items")
        self._replan()
        self._wake.set()  # an edit may have made something due right now

    # -- schedule -------------------------------------------------------------------------------

    def _replan(self, extra: Iterable[datetime] = ()) -> None:
        """Sync the DateTrigger jobs with the distinct due times in the next `horizon`."""
        with self._replan_lock:
            self._replan_locked(list(extra))

    def _add_wakes(self, extra: list[datetime]) -> None:
        """Between full re-plans, only add the retry and lease wake-ups (cheap)."""
        with self._replan_lock:
            now = datetime.now(UTC)
            for when in extra:
                job_id = f"due-{when.isoformat()}"
                if when <= now or job_id in self._due_jobs or self._scheduler is None:
                    continue
                self._extra_wakes.add(when)
                self._due_jobs.add(job_id)
                self._scheduler.add_job(
                    self._wake.set,
                    DateTrigger(run_date=when, timezone=UTC),
                    id=job_id,
                    replace_existing=True,
                    misfire_grace_time=None,
                )

    def _replan_locked(self, extra: list[datetime]) -> None:
        self._planned_at = time.monotonic()
        with self._lock:
            plan = self._current
        if plan is None or self._scheduler is None or self.stop_event.is_set():
            return
        now = datetime.now(UTC)
        max_late = plan.project.config.publish.max_late
        try:
            found = deliveries(plan.project, now - max_late, now + self.horizon, memo=plan.memo)
            # `send_at: local`: each member zone's own instant (deliveries() above lists the
            # calendar zone's only, since it does not expand members).
            local = local_send_times(plan.project, now, now + self.horizon, plan.memo)
        except Exception as exc:
            self._emit("error", f"planning failed: {type(exc).__name__}: {exc}")
            return
        times = {d.due for d in found if d.due > now and not d.item.draft}
        times.update(t for t in local if t > now)
        times.update(t for t in self._extra_wakes if t > now)
        times.update(t for t in extra if t > now)
        self._extra_wakes = {t for t in self._extra_wakes | set(extra) if t > now}
        times.add(now + self.horizon)  # re-plan when the horizon runs out
        wanted = {f"due-{t.isoformat()}": t for t in times}
        for job_id in self._due_jobs - wanted.keys():
            with contextlib.suppress(Exception):  # it already fired
                self._scheduler.remove_job(job_id)
        for job_id, when in wanted.items():
            if job_id in self._due_jobs and self._scheduler.get_job(job_id) is not None:
                continue
            self._scheduler.add_job(
                self._wake.set,
                DateTrigger(run_date=when, timezone=UTC),
                id=job_id,
                replace_existing=True,
                misfire_grace_time=None,
            )
        self._due_jobs = set(wanted)

    def _followups(self, plan: _Plan) -> list[datetime]:
        """When to wake next for retries and for claims other workers hold."""
        now = datetime.now(UTC)
        max_late = plan.project.config.publish.max_late
        out: list[datetime] = []
        with open_ledger(plan.ledger_url, project_dir=plan.project.root) as ledger:
            for record in ledger.records(
                states=[State.PENDING, State.CLAIMED, State.SENDING],
                due_from=now - max_late,
                due_to=now + timedelta(seconds=1),
            ):
                if record.state == State.PENDING and record.next_attempt_at is not None:
                    out.append(record.next_attempt_at)
                elif record.lease_until is not None:
                    out.append(record.lease_until + timedelta(milliseconds=50))
        return out

    # -- publishing -----------------------------------------------------------------------------

    def _runner(self) -> None:
        while not self.stop_event.is_set():
            if not self._wake.wait(0.5):
                continue
            self._wake.clear()
            if self.stop_event.is_set():
                break
            with self._lock:
                plan = self._current
            if plan is None:
                continue
            try:
                self._publish(plan)
            except Exception as exc:
                self._emit("error", f"publish run failed: {type(exc).__name__}: {exc}")
            extra: list[datetime] = []
            if not self.stop_event.is_set():
                try:
                    extra = self._followups(plan)
                except Exception as exc:
                    self._emit("error", f"ledger: {type(exc).__name__}: {exc}")
                if time.monotonic() - self._planned_at >= min(self.sweep, 60.0):
                    self._replan(extra)  # also moves the horizon forward
                else:
                    self._add_wakes(extra)

    def _publish(self, plan: _Plan) -> Report:
        publisher = Publisher(
            plan.project,
            plan.ledger_url,
            datetime.now(UTC),
            worker=self.worker,
            stop=self.stop_event,
            on_outcome=self._outcome,
            keep_members=False,  # each outcome is logged as it happens: none kept per member
        )
        report = publisher.run()
        for problem in report.problems:  # e.g. a short code pool: logged once, not each wake-up
            if str(problem) not in self._reported:
                self._reported.add(str(problem))
                self._emit("problem", str(problem))
        return report

    def _outcome(self, outcome: Outcome) -> None:
        if outcome.state not in LOGGED and not (
            outcome.state is OutcomeState.PENDING and outcome.attempts
        ):
            return  # held by another worker, or finished earlier: nothing happened here
        d = outcome.delivery
        record: LogRecord = {
            "time": _stamp(),
            "event": str(outcome.state),
            "id": d.id,
            "calendar": d.calendar,
            "item": d.item.id,
            "channel": d.channel,
            "due": d.due.isoformat().replace("+00:00", "Z"),
        }
        if outcome.url:
            record["url"] = outcome.url
        if outcome.detail and outcome.state is not OutcomeState.SENT:
            record["detail"] = self._redact(outcome.detail)
        if outcome.attempts:
            record["attempts"] = outcome.attempts
        self.log(record)

    # -- heartbeat and log ----------------------------------------------------------------------

    def _heartbeat(self, info: str = "run") -> None:
        plan = self._current
        if plan is None:
            return
        try:
            with open_ledger(plan.ledger_url, project_dir=plan.project.root) as ledger:
                ledger.heartbeat(
                    self.worker,
                    datetime.now(UTC),
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    info=info,
                )
        except Exception as exc:
            self._emit("error", f"heartbeat failed: {type(exc).__name__}: {exc}")

    def _emit(self, event: str, message: str) -> None:
        self.log({"time": _stamp(), "event": event, "message": self._redact(message)})

    def _redact(self, text: str) -> str:
        """Log text without any secret of the project: every channel's (Channel.secret_set),
        the ledger URL's password and the members secret. Errors are redacted where they are
        made; this catches whatever escaped (an exception's own text)."""
        plan = self._current
        if plan is None:
            return text
        return project_secrets(plan.project, plan.ledger_url).redact(text)


def _isolated(project: Project) -> str:
    count = len(project.errors)
    return (
        f"{count} problem{'s' if count != 1 else ''}: the items and calendar files they are in "
        "keep their last good version (or are left out); everything else is published"
    )


def _safe_url(url: str) -> str:
    """The ledger URL without a password (in the userinfo or the query)."""
    return safe_url(url)
