"""What commands do for members: suppression lists and the unsubscribe endpoint's wiring."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from commcal.audience import AddressError, email_address, normalise_email, recipient_key
from commcal.errors import ConfigError
from commcal.ledger import Ledger, open_ledger
from commcal.project import Project


def addresses(given: Sequence[str], import_file: Path | None) -> list[str]:
    """Addresses from the command line and a file (one per line, or a CSV with `email`), each in
    the normal form of `email_address`; junk is a ConfigError naming the argument or file:line."""
    found: list[str] = []
    bad: list[str] = []
    for text in given:
        try:
            found.append(email_address(text))
        except AddressError as exc:
            bad.append(f"{text!r} ({exc})")
    if import_file is not None:
        for number, text in _import_rows(import_file):
            try:
                found.append(email_address(text))
            except AddressError as exc:
                bad.append(f"{import_file}:{number}: {text!r} ({exc})")
    if bad:
        raise ConfigError(
            "not e-mail addresses: "
            + ", ".join(bad[:10])
            + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        )
    return found


def _import_rows(import_file: Path) -> Iterator[tuple[int, str]]:
    """(line, text) of each address in a bounce or export file, skipping blanks and # lines."""
    try:
        text = import_file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"--import {import_file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--import {import_file}: not UTF-8 text") from None
    lines = text.splitlines()
    if lines and "email" in [c.strip().lower() for c in lines[0].split(",")]:
        reader = csv.DictReader(lines)
        names = reader.fieldnames or []
        column = next((c for c in names if c.strip().lower() == "email"), "email")
        for row in reader:
            value = (row.get(column) or "").strip()
            if value and not value.startswith("#"):
                yield reader.line_num, value
        return
    for number, line in enumerate(lines, 1):
        value = line.strip()
        if value and not value.startswith("#"):
            yield number, value


def suppress(
    ledger: Ledger, emails: Sequence[str], *, remove: bool, source: str, now: datetime
) -> int:
    """Add (or remove) addresses to the suppression list, as keys; returns how many changed."""
    from commcal.ledger.base import mask_address

    changed = 0
    for email in emails:
        key = recipient_key(email)
        if remove:
            changed += ledger.unsuppress(key, now=now)
        else:
            changed += ledger.suppress(
                key, source=source, now=now, note=mask_address(normalise_email(email) or email)
            )
    return changed


def unsubscribe_app(project: Project, state: str | None) -> Any:
    """The WSGI app behind members.unsubscribe_url, recording opt-outs in the ledger, and
    (opt-in: members.track_clicks, members.survey_responses) clicks and survey answers."""
    from commcal.publish import state_url
    from commcal.unsubscribe import make_app

    secret = project.config.member_secret(project.env)
    if not secret:
        raise ConfigError(
            "commcal.yaml: members.secret must be set (an ${ENV} reference to a "
            "long random value) to check unsubscribe links"
        )
    url = state_url(project, state, project.env)
    root = project.root

    def record(key: str) -> bool:
        # One short-lived connection per opt-out: the server may run for months.
        with open_ledger(url, project_dir=root) as ledger:
            ledger.suppress(key, source="unsubscribe-link", now=datetime.now(UTC))
        return True

    def click(key: str, item: str, target: str) -> None:
        with open_ledger(url, project_dir=root) as ledger:
            ledger.record_click(key, item, target, now=datetime.now(UTC))

    def answer(key: str, item: str, answers: dict[str, list[str]]) -> None:
        with open_ledger(url, project_dir=root) as ledger:
            ledger.record_survey_response(key, item, answers, now=datetime.now(UTC))

    members = project.config.members
    brand = str(project.config.vars.get("brand", ""))
    return make_app(
        secret,
        record,
        brand=brand,
        clicked=click if members.track_clicks else None,
        answered=answer if members.survey_responses else None,
    )
