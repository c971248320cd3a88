"""No secret in any output, file, ledger row or log, even when a server echoes the request.

The secrets sweep (issue 15): a distinctive value for every secret setting of every adapter type
(webhook with a signing secret, credential headers and a tokenised ${ENV} URL, Slack, Discord,
Telegram, Mastodon, X, Matrix, Bluesky and its session JWTs, an SMTP password, a PostgreSQL DSN
with a password), loopback servers that echo headers, path, query and body in their errors
(4xx as JSON with `\\/` escaping and wrapped lines, 5xx as plain text, and 200 as an HTML page),
then every command and format that shows errors. None of the secrets, and no 8 characters of
one, may appear anywhere a person or a backup could read them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socketserver
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from typer.testing import CliRunner

from commcal.cli import app
from tests.conftest import MakeProject
from tests.fake_networks import (
    ACCESS_JWT,
    ENV_TEMPLATE,
    HTTP_TYPES,
    TOKEN_PARTS,
    Answer,
    Networks,
    Request,
    channels_config,
    env_for,
)

COMMCAL = str(Path(sys.executable).with_name("commcal"))
PIECE = 8
SMTP_USER = "sweepuser"
SMTP_PASSWORD = "smtpCUA8HGJ01lvN91oWN1"
PG_PASSWORD = "pgpwQKFrIGmQv5houQeDtF"
PG_QUERY_PASSWORD = "pgqN2IMv7jpDFMKcvdFj3"
PG_SPACED_PASSWORD = "pg XdffrQCj ucV7Rp2k"

# Each item's id says how the servers answer its posts: m<status>p<padding>. The padding puts the
# echoed request where a cut at 300 characters (before redaction, as it was) split the tokens.
ITEMS = ("m401p0", "m401p256", "m503p0", "m503p250", "m200p0")
CHANNELS = (*HTTP_TYPES, "mail")


# -- servers that echo --------------------------------------------------------------------------


def dump(request: Request) -> str:
    """The request as an echoing server or proxy writes it back: credentials first."""
    headers = sorted(request.headers.items(), key=lambda kv: kv[0].lower() != "authorization")
    lines = [f"{request.method} {request.path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers)]
    return "\n".join([*lines, "", request.text])


def echo(request: Request) -> Answer:
    found = re.search(r"m(\d{3})p(\d+)", request.text)
    status, pad = (int(found.group(1)), int(found.group(2))) if found else (401, 0)
    said = dump(request)
    reason = "x" * pad + " you sent " + said
    if status == 200:  # a proxy's page, with the request in it
        page = f"<html><body><h1>Welcome</h1><pre>{said}</pre></body></html>"
        return Answer(200, page.encode(), "text/html")
    if status >= 500:  # plain text: the raw request, wrapped, and JSON-escaped
        text = "\n".join([reason, textwrap.fill(said, 37), json.dumps(said).replace("/", "\\/")])
        return Answer(status, text.encode(), "text/plain")
    fields = {
        "error": reason,
        "message": reason,
        "description": reason,
        "detail": reason,
        "title": "Echo",
        "errcode": "M_FORBIDDEN",
        "error_code": status,
        "ok": False,
        "errors": [{"message": textwrap.fill(said, 41)}],
    }
    return Answer(status, json.dumps(fields).replace("/", "\\/").encode())


class SmtpEcho(socketserver.ThreadingTCPServer):
    """An SMTP server that refuses every login and echoes what the client sent (and decoded)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _SmtpHandler)
        self.port = self.server_address[1]
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _SmtpHandler(socketserver.StreamRequestHandler):
    timeout = 10

    def _say(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self._say("220 echo.example ESMTP")
        login = False
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.decode(errors="replace").strip()
            verb = line.split(" ", 1)[0].upper()
            if login:
                decoded = base64.b64decode(line + "==").decode(errors="replace")
                self._say(f"535 5.7.8 password {line} ({decoded}) refused")
                login = False
            elif verb in ("EHLO", "HELO"):
                self._say("250-echo.example")
                self._say("250-AUTH PLAIN LOGIN")
                self._say("250 8BITMIME")
            elif line.upper().startswith("AUTH PLAIN"):
                blob = line.split()[-1]
                decoded = base64.b64decode(blob + "==").decode(errors="replace")
                self._say(f"535 5.7.8 {line} = {decoded.replace(chr(0), ' ')} refused")
            elif line.upper().startswith("AUTH LOGIN"):
                login = True
                self._say("334 UGFzc3dvcmQ6")
            elif verb == "QUIT":
                self._say("221 bye")
                return
            else:
                self._say(f"502 5.5.2 what is {line}")


# -- the project ----------------------------------------------------------------------------------


def config(networks: Networks, smtp_port: int, state: str) -> str:
    return (
        f"timezone: UTC\nlocale: en\nstate: {state}\n"
        "publish: {retry_delay: 10m, max_attempts: 3, max_late: 2h, lease: 30s}\n"
        f"channels:\n{channels_config(networks)}"
        "  mail:\n"
        "    type: smtp\n"
        "    host: 127.0.0.1\n"
        f"    port: {smtp_port}\n"
        "    security: none\n"
        f"    username: {SMTP_USER}\n"
        "    password: ${SMTP_PASSWORD}\n"
        "    from: Sweep <sweep@example.org>\n"
        "    to: list@example.org\n"
        "    timeout: 5\n"
    )


def calendar(due: datetime) -> str:
    lines = ["items:"]
    for item in ITEMS:
        lines += [
            f"  - id: {item}",
            "    kind: post",
            f"    channels: [{', '.join(CHANNELS)}]",
            "    template: posts/sweep",
            f"    at: {due:%Y-%m-%d %H:%M}",
        ]
    return "\n".join(lines) + "\n"


TEMPLATE = (
    "{% block subject %}Sweep {{ item.id }}{% endblock %}"
    "{% block text %}Sweep {{ item.id }}{% endblock %}\n"
)


def secrets(env: dict[str, str]) -> list[str]:
    values = [v for v in env.values() if "://" not in v]  # URLs: their token parts below
    values += [*TOKEN_PARTS, SMTP_PASSWORD, PG_PASSWORD, PG_QUERY_PASSWORD, PG_SPACED_PASSWORD]
    values += [
        base64.b64encode(f"\0{SMTP_USER}\0{SMTP_PASSWORD}".encode()).decode(),
        base64.b64encode(SMTP_PASSWORD.encode()).decode(),
    ]
    return values


def pieces(value: str) -> set[str]:
    squeezed = "".join(value.split())
    return {squeezed[i : i + PIECE] for i in range(len(squeezed) - PIECE + 1)}


def leaks(haystack: str, values: list[str]) -> list[str]:
    """Every secret, or 8 characters of one, found in `haystack` (also read ignoring case,
    whitespace and backslashes, and percent-decoded)."""
    views = [haystack, unquote(haystack)]
    views += ["".join(ch for ch in v if not ch.isspace() and ch != "\\").lower() for v in views]
    found = []
    for value in values:
        for piece in sorted(pieces(value)):
            if any(piece in view or piece.lower() in view for view in views):
                found.append(f"{piece!r} of {value!r}")
                break
    return found


# -- running the commands -------------------------------------------------------------------------


class Session:
    """Runs commcal commands (CliRunner, one real `run` process) and keeps all they printed."""

    def __init__(self, root: Path, env: dict[str, str | None]) -> None:
        self.root = root
        self.env = env
        self.outputs: list[str] = []
        self.runner = CliRunner()

    def cli(self, *args: str, codes: tuple[int, ...] = (0, 1)) -> str:
        result = self.runner.invoke(app, ["-C", str(self.root), *args], env=self.env)
        text = result.output
        with contextlib.suppress(ValueError, AttributeError):
            text += result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            text += repr(result.exception)
        # The command line itself is the test's, not commcal's output (--state holds a DSN).
        shown = [a if "://" not in a else "URL" for a in args]
        self.outputs.append(f"$ commcal {' '.join(shown)}\n{text}")
        assert result.exit_code in codes, self.outputs[-1]
        return result.stdout

    def run_daemon(self, expected: int, timeout: float = 90.0) -> list[dict[str, Any]]:
        """`commcal run --log-format json` until `expected` deliveries have been logged."""
        env = {k: v for k, v in {**os.environ, **self.env}.items() if v is not None}
        proc = subprocess.Popen(
            [COMMCAL, "-C", str(self.root), "run", "--log-format", "json"],
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []

        def read() -> None:
            assert proc.stderr is not None
            lines.extend(proc.stderr)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        logged: list[dict[str, Any]] = []
        try:
            while time.monotonic() < deadline:
                logged = []
                for line in list(lines):
                    with contextlib.suppress(ValueError):
                        logged.append(json.loads(line))
                if sum(1 for r in logged if "id" in r) >= expected:
                    break
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                out, _ = proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            reader.join(5)
        self.outputs.append("$ commcal run\n" + "".join(lines) + (out or ""))
        return logged


@pytest.fixture
def pg_admin() -> Iterator[Any]:
    base = os.environ.get("COMMCAL_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        import psycopg

        admin = psycopg.connect(base, autocommit=True, connect_timeout=3)
    except Exception as exc:
        if os.environ.get("COMMCAL_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL unreachable at {base}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {base}: {exc}")
    try:
        yield admin
    finally:
        admin.close()


def pg_database(admin: Any) -> str:
    name = f"commcal_secrets_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    return name


def pg_rows(dsn: str) -> str:
    import psycopg

    with psycopg.connect(dsn) as conn:
        tables = [
            t
            for (t,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        ]
        return "\n".join(
            repr(row) for table in tables for row in conn.execute(f'SELECT * FROM "{table}"')
        )


def project_bytes(root: Path) -> str:
    """Every file under the project (the SQLite ledger and its WAL included), as text, except
    the one place a secret is kept on purpose: Bluesky's session, in `.commcal/sessions/` (so
    that cron runs do not log in every minute), which must then be readable by its owner only."""
    sessions = root / ".commcal" / "sessions"
    kept = list(sessions.glob("*.json")) if sessions.is_dir() else []
    for path in kept:
        assert path.stat().st_mode & 0o777 == 0o600, f"{path} is readable by others"
    return "\n".join(
        path.read_bytes().decode("latin-1")
        for path in sorted(root.rglob("*"))
        if path.is_file() and path not in kept
    )


# -- the sweep ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ledger", ["sqlite", "postgresql"])
def test_secrets_sweep(make_project: MakeProject, ledger: str, request: Any) -> None:
    admin = request.getfixturevalue("pg_admin") if ledger == "postgresql" else None
    database = pg_database(admin) if admin is not None else ""
    dsn = f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:5432/{database}"
    smtp = SmtpEcho()
    try:
        with Networks() as networks:
            networks.answer = echo
            now = datetime.now(UTC).replace(second=0, microsecond=0)
            due = now - timedelta(minutes=1)
            root = make_project(
                config=config(networks, smtp.port, "sqlite:///.commcal/state.db"),
                calendars={"sweep.yaml": calendar(due)},
                templates={"posts/sweep.j2": TEMPLATE},
            )
            env: dict[str, str | None] = {
                **env_for(networks),
                "SMTP_PASSWORD": SMTP_PASSWORD,
                "COMMCAL_STATE": dsn if admin is not None else None,
            }
            session = Session(root, env)
            total = len(ITEMS) * len(CHANNELS)

            # The daemon first, on the real clock: its log lines.
            logged = session.run_daemon(expected=total)
            assert sum(1 for r in logged if "id" in r) >= total, session.outputs[-1]
            assert {r["event"] for r in logged if "id" in r} >= {"sent", "failed", "pending"}

            # Then publish for the retries, in every format.
            later = [
                (now + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%SZ") for m in (15, 30, 45)
            ]
            session.cli("publish", "--now", later[0])
            published = json.loads(session.cli("publish", "--now", later[1], "--format", "json"))
            assert published["counts"].get("failed"), published
            session.cli("publish", "--now", later[1], "--format", "markdown")
            session.cli("publish", "--now", later[1], "--format", "jsonl", "--all")
            for fmt in ("table", "json", "jsonl", "markdown"):
                session.cli("status", "--limit", "500", "--format", fmt)
                session.cli("status", "--only-state", "failed", "--format", fmt)
            records = json.loads(session.cli("status", "--limit", "500", "--format", "json"))
            ids = [d["id"] for d in records["deliveries"]]
            assert len(ids) == total, records
            for number, delivery in enumerate(ids):
                session.cli("status", delivery, "--format", "json")
                if number % 5 == 0:
                    session.cli("status", delivery)
                    session.cli("status", delivery, "--format", "markdown")
            session.cli("retry", "--failed")
            session.cli("publish", "--now", later[2], "--format", "json")
            session.cli("status", ids[0], "--format", "jsonl")
            session.cli("publish", "--now", later[2], "--dry-run")

            # Credentials checks: every GET and the login are answered 401 with the echo.
            networks.session = echo
            for name in CHANNELS:
                session.cli("channels", "test", name)
            session.cli("channels")

            # Ledger URLs that fail, holding passwords libpq may quote.
            for bad in (
                f"postgresql://postgres@127.0.0.1:1/nowhere?password={PG_QUERY_PASSWORD}",
                f"postgresql://postgres:{PG_PASSWORD}@127.0.0.1:1/nowhere",
                f"postgresql://postgres@127.0.0.1:5432/x?password={PG_SPACED_PASSWORD}",
            ):
                session.cli("status", "--state", bad, codes=(1, 2))

            # The echoes did reach commcal: the servers saw every secret.
            seen = "\n".join(dump(r) for r in networks.requests)
            assert ACCESS_JWT in seen
            assert all(part in seen for part in TOKEN_PARTS[:4])

            values = secrets({k: v for k, v in env.items() if v is not None})
            problems = []
            for text in session.outputs:
                found = leaks(text, values)
                if found:
                    problems.append(f"{text.splitlines()[0]}: {found}")
            found = leaks(project_bytes(root), values)
            if found:
                problems.append(f"files under the project: {found}")
            if admin is not None:
                found = leaks(pg_rows(dsn), values)
                if found:
                    problems.append(f"PostgreSQL rows: {found}")
            assert not problems, "\n".join(problems)
    finally:
        smtp.close()
        if admin is not None:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def test_env_template_covers_every_secret_setting() -> None:
    """Every private setting of every adapter type has a distinctive value in the sweep."""
    from commcal.channels.registry import channel_class

    private = {
        (kind, key)
        for kind in (*HTTP_TYPES, "smtp")
        for key, spec in channel_class(kind).settings_schema.items()
        if spec.private
    }
    assert private == {
        ("webhook", "secret"),
        ("slack", "webhook_url"),
        ("slack", "bot_token"),
        ("discord", "webhook_url"),
        ("telegram", "token"),
        ("mastodon", "token"),
        ("x", "token"),
        ("matrix", "access_token"),
        ("bluesky", "app_password"),
        ("smtp", "password"),
    }
    assert len(ENV_TEMPLATE) == 12  # those, plus the webhook's two credential headers


# -- each adapter's own errors ----------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 503])
@pytest.mark.parametrize("kind", HTTP_TYPES)
def test_an_adapters_error_holds_no_piece_of_a_secret(
    make_project: MakeProject, kind: str, status: int
) -> None:
    """The error a send raises, with the server's echo of the request placed anywhere in its
    first 400 characters: the cut at 300 used to come before redaction and leave a token's
    first characters behind."""
    from commcal.channels.base import Message, SendError
    from commcal.project import load_project

    with Networks() as networks:
        networks.answer = echo
        root = make_project(
            config=f"timezone: UTC\nlocale: en\nchannels:\n{channels_config(networks)}"
        )
        env = env_for(networks)
        values = secrets(env)
        adapter = load_project(root, env=env).channels[kind]
        for pad in range(0, 400, 3):
            message = Message(kind, kind, f"hello m{status}p{pad}", subject="hello")
            with pytest.raises(SendError) as raised:
                adapter.send(message, f"delivery-{pad}")
            assert not leaks(str(raised.value), values), (pad, str(raised.value))
            assert len(str(raised.value)) <= 500
        assert len(networks.requests) >= 400 // 3
        if status == 401 and kind not in ("webhook", "slack", "discord"):
            networks.session = echo  # Bluesky's login too: it echoes the app password
            with pytest.raises(SendError) as refused:
                adapter.verify()
            assert not leaks(str(refused.value), values), str(refused.value)
