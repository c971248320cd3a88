"""Webinar invitations: parsed back with icalendar, instants in UTC, stable UID, folded lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from commcal.ics import attachment, event_ics

NOW = datetime(2025, 5, 20, 9, 0, tzinfo=UTC)
ATHENS = ZoneInfo("Europe/Athens")
NAIROBI = ZoneInfo("Africa/Nairobi")
GREEK_TITLE = "Διαδικτυακό σεμινάριο: Ανοιχτά δεδομένα για δήμους, «πρακτικά»; ναι"


def _event(ics: bytes) -> tuple[Calendar, object]:
    calendar = Calendar.from_ical(ics)
    [event] = calendar.walk("VEVENT")
    return calendar, event


def _make(**overrides: object) -> bytes:
    arguments: dict[str, object] = {
        "uid": "webinar-june@athens-open-data.commcal",
        "title": GREEK_TITLE,
        "start": datetime(2025, 6, 12, 18, 30, tzinfo=ATHENS),
        "end": datetime(2025, 6, 12, 20, 0, tzinfo=ATHENS),
        "description": "Line one, with a comma; and a semicolon.\nLine two: https://example.org",
        "url": "https://meet.example.org/open-data",
        "location": "Online",
        "organizer": "events@example.org",
        "now": NOW,
    }
    arguments.update(overrides)
    return event_ics(**arguments)  # type: ignore[arg-type]


def test_calendar_properties() -> None:
    calendar, event = _event(_make())
    assert calendar["METHOD"] == "PUBLISH"
    assert calendar["VERSION"] == "2.0"
    assert calendar["PRODID"] == "-//commcal//commcal//EN"
    assert event["UID"] == "webinar-june@athens-open-data.commcal"  # type: ignore[index]
    assert event["SUMMARY"] == GREEK_TITLE  # type: ignore[index]
    assert event["DESCRIPTION"] == (  # type: ignore[index]
        "Line one, with a comma; and a semicolon.\nLine two: https://example.org"
    )
    assert event["URL"] == "https://meet.example.org/open-data"  # type: ignore[index]
    assert event["LOCATION"] == "Online"  # type: ignore[index]
    assert event["ORGANIZER"] == "mailto:events@example.org"  # type: ignore[index]
    assert event["SEQUENCE"] == 0  # type: ignore[index]
    assert event.decoded("DTSTAMP") == NOW  # type: ignore[attr-defined]


@pytest.mark.parametrize("zone", [ATHENS, NAIROBI, UTC], ids=str)
def test_start_and_end_are_the_same_instant_in_utc(zone: ZoneInfo) -> None:
    start = datetime(2025, 6, 12, 18, 30, tzinfo=zone)
    end = start + timedelta(minutes=90)
    ics = _make(start=start, end=end)
    _, event = _event(ics)
    for name, expected in (("DTSTART", start), ("DTEND", end)):
        value = event.decoded(name)  # type: ignore[attr-defined]
        assert value == expected
        assert value.utcoffset() == timedelta(0)
        written = expected.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        assert f"{name}:{written}".encode() in ics.replace(b"\r\n ", b"")


def test_athens_summer_time_is_utc_plus_3() -> None:
    ics = _make(start=datetime(2025, 6, 12, 18, 30, tzinfo=ATHENS), end=None)
    assert b"DTSTART:20250612T153000Z\r\n" in ics
    assert b"DTEND" not in ics


def test_nairobi_is_utc_plus_3_all_year() -> None:
    ics = _make(start=datetime(2025, 1, 15, 10, 0, tzinfo=NAIROBI), end=None)
    assert b"DTSTART:20250115T070000Z\r\n" in ics


def test_uid_and_bytes_identical_across_calls() -> None:
    assert _event(_make())[1]["UID"] == _event(_make())[1]["UID"]  # type: ignore[index]
    assert _make() == _make()  # with the clock pinned, the whole file is stable


def test_lines_folded_at_75_octets_without_splitting_characters() -> None:
    ics = _make(title=GREEK_TITLE * 4, description="Ω" * 300)
    assert ics.endswith(b"\r\n")
    for line in ics.split(b"\r\n"):
        assert len(line) <= 75, line
        line.decode("utf-8")  # no multi-byte character cut in two
    _, event = _event(ics)
    assert event["SUMMARY"] == GREEK_TITLE * 4  # type: ignore[index]


def test_sequence_for_updates() -> None:
    _, event = _event(_make(sequence=2))
    assert event["SEQUENCE"] == 2  # type: ignore[index]


def test_optional_fields_left_out() -> None:
    ics = event_ics(uid="a@b.commcal", title="Hi", start=NOW, end=None, now=NOW)
    for name in (b"DESCRIPTION", b"URL", b"LOCATION", b"ORGANIZER", b"DTEND"):
        assert name not in ics


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"start": datetime(2025, 6, 12, 18, 30)}, "aware"),
        ({"end": datetime(2025, 6, 12, 15, 0, tzinfo=UTC)}, "not after start"),
        ({"uid": " "}, "uid"),
        ({"sequence": -1}, "sequence"),
    ],
)
def test_bad_input(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _make(**overrides)


def test_attachment() -> None:
    ics = _make()
    assert attachment(ics) == ("invite.ics", "text/calendar; charset=utf-8; method=PUBLISH", ics)
    assert attachment(ics, "webinar.ics")[0] == "webinar.ics"
