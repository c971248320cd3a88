"""What commands do for members: suppression lists and the unsubscribe endpoint's wiring."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from commcal.audience import normalise_email, recipient_key
from commcal.errors import ConfigError
from commcal.ledger import Ledger, open_ledger
from commcal.project import Project


def addresses(given: Sequence[str], import_file: Path | None) -> list[str]:
    """Addresses from the command line and a file (one per line, or a CSV with `email`)."""
    found: list[str] = []
    bad: list[str] = []
    for text in given:
        (found if normalise_email(text) else bad).append(text)
    if import_file is not None:
        try:
            lines = import_file.read_text(encoding="utf-8-sig").splitlines()
        except OSError as exc:
            raise ConfigError(f"--import {import_file}: {exc.strerror}") from None
        rows: Iterable[str] = lines
        if lines and "email" in [c.strip().lower() for c in lines[0].split(",")]:
            rows = (row.get("email") or row.get("Email") or "" for row in csv.DictReader(lines))
        for number, text in enumerate(rows, 1):
            text = text.strip()
            if not text or text.startswith("#"):
                continue
            if normalise_email(text):
                found.append(text)
            else:
                bad.append(f"{import_file}:{number}: {text!r}")
    if bad:
        raise ConfigError(
            "not e-mail addresses: "
            + ", ".join(bad[:10])
            + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        )
    return found


def suppress(
    ledger: Ledger, emails: Sequence[str], *, remove: bool, source: str, now: datetime
) -> int:
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
    """The WSGI app behind members.unsubscribe_url, recording opt-outs in the ledger."""
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

    brand = str(project.config.vars.get("brand", ""))
    return make_app(secret, record, brand=brand)
