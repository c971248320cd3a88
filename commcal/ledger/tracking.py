"""Clicks on tracked links and members' survey answers, as the unsubscribe server records them.

Both are opt-in (members.track_clicks, members.survey_responses in commcal.yaml) and both name
the member by the recipient key the signed link carries (16 hex digits), never an address.
No address is kept: one written into a survey answer is masked (`m***@example.org`).
Both tables are append-only: a second click is a second row, a second answer a second row
(the latest counts), so nothing a member did is rewritten.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from commcal.ledger.db import Database
from commcal.ledger.engagement import mask_text_addresses

# What one survey answer may hold: a form of a few questions, not a file upload.
MAX_FIELDS = 50
MAX_NAME = 200
MAX_VALUE = 4000


# An address in a URL's path, query or fragment, its "@" written or percent-encoded.
_ADDRESS_IN_URL = re.compile(r"(?<![\w.+-])([\w.+-])[\w.+-]*(@|%40)([\w-]+(?:\.[\w-]+)+)")


def masked_url(url: str) -> str:
    """`url` with every address after its host masked (`a***@example.org`); the host's own
    user@ part (RFC 3986 userinfo) is no member's address and is kept."""
    scheme, slashes, rest = url.partition("//")
    if not slashes:  # no authority: all of it is path
        scheme, rest = "", url
    host = re.split(r"[/?#]", rest, maxsplit=1)[0] if slashes else ""
    masked = _ADDRESS_IN_URL.sub(lambda m: f"{m[1]}***{m[2]}{m[3]}", rest[len(host) :])
    return f"{scheme}{slashes}{host}{masked}"


@dataclass(frozen=True, slots=True)
class Click:
    recipient_key: str
    item: str  # CALENDAR/ITEM
    url: str  # where the link led
    at: datetime


@dataclass(frozen=True, slots=True)
class SurveyResponse:
    recipient_key: str
    item: str  # CALENDAR/ITEM
    answers: Mapping[str, list[str]]  # form field -> its values
    at: datetime


class TrackingStore(Database):
    """Clicks and survey responses, over the ledger's connection."""

    def record_click(self, recipient_key: str, item: str, url: str, *, now: datetime) -> None:
        """Keep a click on a tracked link to `url`, an address in the link masked (a template
        may put the member's own into it: `?who=ann@example.org` or `ann%40example.org`)."""
        url = masked_url(url)
        at = self._t(now, "now")
        self._transaction(
            lambda: self._execute(
                "INSERT INTO clicks (recipient_key, item, url, at) VALUES (?, ?, ?, ?)",
                (recipient_key, item, url, at),
            ),
            write=True,
        )

    def clicks(self, *, since: datetime | None = None) -> list[Click]:
        """Clicks at or after `since`, oldest first."""
        return [
            Click(r[0], r[1], r[2], self._from_db(r[3]))
            for r in self._rows("SELECT recipient_key, item, url, at FROM clicks", since)
        ]

    def record_survey_response(
        self, recipient_key: str, item: str, answers: Mapping[str, Sequence[str]], *, now: datetime
    ) -> None:
        """Keep a member's answers (ValueError when there are more or longer ones than a
        survey form has: MAX_FIELDS fields, names of MAX_NAME and values of MAX_VALUE
        characters)."""
        too_long = any(
            len(k) > MAX_NAME or any(len(v) > MAX_VALUE for v in vs) for k, vs in answers.items()
        )
        if len(answers) > MAX_FIELDS or too_long:
            raise ValueError("a survey answer is a few short fields, not this")
        # A member may write an address into a free-text answer, or a link may carry one in a
        # field: masked like one in a reply (m***@example.org), since no address is stored.
        masked = {
            mask_text_addresses(k): [mask_text_addresses(v) for v in vs]
            for k, vs in answers.items()
        }
        text = json.dumps(masked, ensure_ascii=False)
        at = self._t(now, "now")
        self._transaction(
            lambda: self._execute(
                "INSERT INTO survey_responses (recipient_key, item, answers, at) "
                "VALUES (?, ?, ?, ?)",
                (recipient_key, item, text, at),
            ),
            write=True,
        )

    def survey_responses(self, *, since: datetime | None = None) -> list[SurveyResponse]:
        """Survey answers received at or after `since`, oldest first."""
        return [
            SurveyResponse(r[0], r[1], json.loads(r[2]), self._from_db(r[3]))
            for r in self._rows(
                "SELECT recipient_key, item, answers, at FROM survey_responses", since
            )
        ]

    def _rows(self, select: str, since: datetime | None) -> list[tuple[Any, ...]]:
        where, params = ("", []) if since is None else (" WHERE at >= ?", [self._t(since)])
        return self._transaction(
            lambda: self._execute(f"{select}{where} ORDER BY at, seq", params), write=False
        )
