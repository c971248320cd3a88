"""The cron minute's shortcut: an index of upcoming instants, so that `commcal publish` with
nothing due costs what is due (nothing), not what is written.

A full `commcal publish` that leaves every delivery due up to its `now` with a row in the ledger
(`Report.settled_ledger`) writes `.commcal/cron-index.json`:

- what it was built from: each input file (commcal.yaml, calendars/, templates/, audiences/)
  with its size, mtime and SHA-256, and a salted hash of each environment variable
  commcal.yaml refers to (never a value);
- `zones`: the tz database files of the project's zones, with their sizes and times (an
  update of the rules moves local times);
- `instants`: when any delivery of the project comes due from that run's `now` to `until`
  (HORIZON later), as `plan` expands them (a member's own zone included);
- `settled`: per ledger id, the `now` of the last such run against it.

The next run asks, before loading anything: are the inputs unchanged (sizes and mtimes, with
change times older than the index, or else the content hashes), is there no instant in
(settled, now], and does the ledger hold no row to act on (one query,
`Ledger.window_summary`: a pending row to send or expire, a claim to take over, an `unknown`
to report)? Then nothing is due: the run reports the finished rows
of the window as `already` (counted in SQL) and ends. Otherwise, or when anything about the
index is off (missing, corrupt, another format or commcal version, an input changed, `now`
outside it, another ledger), the full run does what it always did, and writes a new index.

Why the shortcut cannot skip a delivery or send one twice: it never sends or claims; it only
decides that the full run would do nothing. Every delivery due before `settled` has a row
(that run settled it), none comes due after it (no instant), and every row that a full run
would act on is one the query counts. Deleting the file is always safe: the next run is a
full one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import socket
import time
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from commcal import __version__

if TYPE_CHECKING:
    from commcal.project import Project
    from commcal.publish.results import Report

INDEX_FILE = ".commcal/cron-index.json"
FORMAT = 1
# How far ahead the index lists instants; past it, a full run builds the index again.
HORIZON = timedelta(days=2)
# Folders whose files loading reads (audiences: the member lists and their zones).
INPUT_DIRS = ("calendars", "templates", "audiences")
# A file whose mtime is this close to when it was hashed may change again within the same
# mtime tick unseen by stat (git's "racily clean" entries): its content is hashed again.
RACY_NS = 2_000_000_000
# The same `${NAME}` references as config.ENV_REF (config imports YAML; this module must not).
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Inputs:
    """The project's input files as they were hashed, before loading read them."""

    files: dict[str, tuple[int, int, str]]  # path in the project -> (size, mtime_ns, sha256)
    hashed_ns: int
    config_text: str


def _input_paths(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    top = root / "commcal.yaml"
    yield "commcal.yaml", top.stat()
    seen: set[str] = set()  # folders walked (their real paths): a link loop is walked once
    for folder in INPUT_DIRS:
        stack = [root / folder]
        while stack:
            here = stack.pop()
            real = os.path.realpath(here)
            if real in seen:
                continue
            seen.add(real)
            try:
                entries = sorted(os.scandir(here), key=lambda e: e.name)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if entry.is_dir():  # linked folders too: loading follows links
                    stack.append(Path(entry.path))
                else:
                    yield os.path.relpath(entry.path, root), entry.stat()


def _digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _zone_files(names: set[str]) -> dict[str, list[int]]:
    """The files the time zones `names` are read from, as zoneinfo looks for them (TZPATH,
    then the tzdata package), each with its size, mtime and change time: a tz database update
    that moves a local time replaces them, and instants listed before it would be stale."""
    import importlib.util
    import zoneinfo

    spec = importlib.util.find_spec("tzdata")
    package = [] if spec is None or spec.origin is None else [Path(spec.origin).parent]
    places = [*map(Path, zoneinfo.TZPATH), *(p / "zoneinfo" for p in package)]
    found: dict[str, list[int]] = {}
    for name in sorted(names):
        for place in places:
            path = place.joinpath(*name.split("/"))
            try:
                st = path.stat()
            except (OSError, ValueError):
                continue
            found[str(path)] = _stamp(st)
            break
    return found


def _stamp(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _zones_unchanged(index: Mapping[str, Any]) -> bool:
    zones: dict[str, list[int]] = index["zones"]
    for path, stamp in zones.items():
        try:
            if _stamp(os.stat(path)) != stamp:
                return False
        except OSError:
            return False
    return True


def take_inputs(root: Path) -> Inputs | None:
    """Hash the inputs now, before they are loaded: if one changes meanwhile, the index
    built from this load names the older content and is not trusted (a new one is built).
    None when one cannot be read (a broken link, no permission): the run builds no index, and
    loading reports what is wrong."""
    hashed_ns = time.time_ns()
    try:
        files = {
            path: (st.st_size, st.st_mtime_ns, _digest(root / path))
            for path, st in _input_paths(root)
        }
        config_text = (root / "commcal.yaml").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return Inputs(files, hashed_ns, config_text)


def _env_marks(config_text: str, env: Mapping[str, str], salt: str) -> dict[str, str]:
    """Each variable commcal.yaml refers to: "" when unset, else a salted HMAC of its value
    (the index says when a secret changed without keeping anything that reveals it)."""
    return {
        name: hmac.new(salt.encode(), env[name].encode(), "sha256").hexdigest()
        if env.get(name)
        else ""
        for name in sorted(set(ENV_REF.findall(config_text)))
    }


def _unchanged(root: Path, index: Mapping[str, Any]) -> bool:
    files: dict[str, list[Any]] = index["files"]
    hashed_ns = int(index["hashed_ns"])
    seen = 0
    for path, st in _input_paths(root):
        known = files.get(path)
        if known is None or st.st_size != known[0]:
            return False
        seen += 1
        # The change time too: an edit with its old size and mtime put back (`touch -r`, `cp
        # -p` or `tar x` of an edited copy) cannot set it back, it says when it happened.
        changed_ns = max(st.st_mtime_ns, st.st_ctime_ns)
        if st.st_mtime_ns == known[1] and changed_ns < hashed_ns - RACY_NS:
            continue
        if _digest(root / path) != known[2]:  # touched, or racy: the content decides
            return False
    return seen == len(files)


def _instant(value: datetime) -> float:
    return value.astimezone(UTC).timestamp()


def _read(root: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((root / INDEX_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    if data.get("commcal") != __version__:
        return None
    return data


def _write(root: Path, data: Mapping[str, Any]) -> None:
    """Write the index whole or not at all: a temporary file of this process, renamed over the
    old one (readers see the old file or the new one, never half of one)."""
    path = root / INDEX_FILE
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Owner only: `state` is commcal.yaml's ledger URL as written, which may hold a
        # password (`postgresql://user:secret@host/db`) when it does not name a ${VARIABLE}.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, separators=(",", ":")))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a read-only checkout publishes all the same, only slower


def quiet_minute(
    root: Path,
    now: datetime,
    *,
    state: str | None = None,
    env: Mapping[str, str] | None = None,
) -> int | None:
    """Whether a full `publish` at `now` would do nothing: then how many deliveries of its
    fresh window are finished (its `already`), after the run's heartbeat; None when a full run
    is needed (or may be: anything unclear is None). Never sends, claims or records a
    delivery."""
    environ = os.environ if env is None else env
    index = _read(root)
    if index is None:
        return None
    try:
        return _quiet(root, now, index, state, environ)
    except (KeyError, TypeError, ValueError, IndexError, OSError):
        return None  # a foreign or damaged index: the full run writes a good one


def _quiet(
    root: Path,
    now: datetime,
    index: Mapping[str, Any],
    state: str | None,
    env: Mapping[str, str],
) -> int | None:
    from commcal.errors import CommcalError
    from commcal.ledger import open_ledger

    at = _instant(now)
    if not index["built_at"] <= at <= index["until"]:
        return None
    if not _unchanged(root, index) or not _zones_unchanged(index):
        return None
    config_text = (root / "commcal.yaml").read_text(encoding="utf-8", errors="replace")
    if _env_marks(config_text, env, index["salt"]) != index["env"]:
        return None
    url = state or env.get("COMMCAL_STATE") or _resolve(index["state"], env)
    if url is None:
        return None
    try:
        ledger = open_ledger(url, project_dir=root, create=False)
    except CommcalError:
        return None  # missing or unreachable: the full run says so
    with ledger:
        meta = ledger.meta()
        settled = index["settled"].get(meta.ledger_id)
        if settled is None or meta.project != index["project"]:
            return None
        if not index["built_at"] <= settled <= at:
            return None  # instants before built_at are not listed
        instants: list[float] = index["instants"]
        if bisect_right(instants, at) != bisect_right(instants, settled):
            return None  # something came due since the last full run
        max_late = timedelta(seconds=index["max_late"])
        lookback = now - timedelta(seconds=index["lookback"])
        swept = meta.swept_through
        pending_from = lookback if swept is None else min(lookback, swept)
        to_act, finished = ledger.window_summary(
            pending_from=pending_from,
            fresh_from=now - max_late,
            due_to=now + timedelta(seconds=1),
        )
        if to_act:
            return None
        from commcal.publish.rows import worker_name

        host, pid = socket.gethostname(), os.getpid()
        ledger.heartbeat(worker_name(), now, host=host, pid=pid, info="publish")
        # The sweep mark is written rarely (it only says how far back an outage's run looks).
        if swept is None or swept < now - max_late - timedelta(hours=1):
            ledger.mark_swept(now - max_late)
    return finished


def _resolve(template: str, env: Mapping[str, str]) -> str | None:
    names = ENV_REF.findall(template)
    if any(not env.get(n) for n in names):
        return None
    return ENV_REF.sub(lambda m: env[m.group(1)], template)


def settled_marks(
    root: Path, inputs: Inputs | None, env: Mapping[str, str] | None = None
) -> dict[str, datetime]:
    """The index's settled marks (ledger id -> instant) when it was built from exactly these
    inputs (a full run may then look back only from there: Publisher.settled); else none."""
    index = _read(root)
    if index is None or inputs is None:
        return {}
    environ = os.environ if env is None else env
    try:
        if index["files"] != {k: list(v) for k, v in inputs.files.items()}:
            return {}
        if index["env"] != _env_marks(inputs.config_text, environ, str(index["salt"])):
            return {}
        return {
            str(ledger): datetime.fromtimestamp(float(at), UTC)
            for ledger, at in index["settled"].items()
        }
    except (KeyError, TypeError, ValueError, AttributeError):
        return {}


def save(
    root: Path,
    inputs: Inputs,
    project: Project,
    report: Report,
    now: datetime,
    env: Mapping[str, str] | None = None,
) -> None:
    """After a full, settled run: the index of the project as `inputs` were (see the module's
    docstring). Nothing is written when the run did not settle or the project has errors."""
    ledger_id = report.settled_ledger
    if not ledger_id or project.errors or report.problems:
        return
    from commcal.deliveries import deliveries
    from commcal.publish.publisher import EXPIRY_LOOKBACK

    environ = os.environ if env is None else env
    at = _instant(now)
    old = _read(root)
    if (
        old is not None
        and old.get("files") == {k: list(v) for k, v in inputs.files.items()}
        and old.get("env") == _env_marks(inputs.config_text, environ, str(old.get("salt")))
        and isinstance(old.get("built_at"), float)
        and isinstance(old.get("until"), float)
        and old["built_at"] <= at <= old["until"] - HORIZON.total_seconds() / 2
        and isinstance(old.get("zones"), dict)
        and _zones_unchanged(old)
    ):
        # The same inputs, and most of the horizon ahead: only the settled mark moves.
        _write(root, {**old, "settled": {ledger_id: at}})
        return
    config = project.config
    broken: list[Any] = []
    until = now + HORIZON
    upcoming = deliveries(project, now, until, members=False, broken=broken)
    if broken:
        return
    zones = {config.timezone} | {c.timezone for c in project.calendars}
    zones |= {item.timezone for c in project.calendars for item in c.items}
    zones |= {d.zone for d in upcoming if d.zone}
    salt = secrets.token_hex(16)
    _write(
        root,
        {
            "format": FORMAT,
            "commcal": __version__,
            "files": inputs.files,
            "hashed_ns": inputs.hashed_ns,
            "salt": salt,
            "env": _env_marks(inputs.config_text, environ, salt),
            "project": config.project_name,
            "state": str(config.state),
            "max_late": config.publish.max_late.total_seconds(),
            "lookback": max(EXPIRY_LOOKBACK, 2 * config.publish.max_late).total_seconds(),
            "built_at": at,
            "until": _instant(until),
            "instants": sorted({_instant(d.due) for d in upcoming}),
            "zones": _zone_files(zones),
            "settled": {ledger_id: at},
        },
    )
