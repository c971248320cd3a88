"""Webinar invitations as iCalendar (`.ics`, RFC 5545) files, for mail attachments.

The UID must stay the same across sends, so that a corrected invitation (a higher `sequence`)
updates the reader's calendar entry instead of adding a second one: derive it from the calendar
and item ids, e.g. `f"{item.id}@{calendar.id}.commcal"`.
"""

from __future__ import annotations

from datetime import UTC, datetime

PRODID = "-//commcal//commcal//EN"
# RFC 6047 §2.4: the method parameter of the MIME type must match the METHOD property.
# RFC 5545 §3.1.4: the charset must be given in MIME transports; iCalendar text is UTF-8.
MIME_TYPE = "text/calendar; charset=utf-8; method=PUBLISH"


def _utc(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (with a time zone), not {value!r}")
    # UTC (written with Z) reads the same in every calendar app, with no VTIMEZONE needed.
    return value.astimezone(UTC)


def event_ics(
    *,
    uid: str,
    title: str,
    start: datetime,
    end: datetime | None,
    description: str = "",
    url: str = "",
    location: str = "",
    organizer: str = "",
    sequence: int = 0,
    now: datetime | None = None,
) -> bytes:
    """One VEVENT in a METHOD:PUBLISH calendar, as bytes with CRLF lines folded at 75 octets.

    `end=None` leaves DTEND out (RFC 5545 §3.6.1: the event then ends when it starts); `now` is
    the DTSTAMP, default the current time. `organizer` is an address (`mailto:` optional).
    """
    from icalendar import Calendar, Event, vCalAddress

    if not uid.strip():
        raise ValueError("uid is empty")
    if sequence < 0:
        raise ValueError(f"sequence must be 0 or more, not {sequence}")
    start_utc = _utc("start", start)
    end_utc = _utc("end", end) if end is not None else None
    if end_utc is not None and end_utc <= start_utc:
        raise ValueError(
            f"end {end_utc:%Y-%m-%d %H:%M}Z is not after start {start_utc:%Y-%m-%d %H:%M}Z"
        )
    stamp = _utc("now", now) if now is not None else datetime.now(UTC)

    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")

    event = Event()
    event.add("uid", uid)
    event.add("dtstamp", stamp.replace(microsecond=0))
    event.add("dtstart", start_utc.replace(microsecond=0))
    if end_utc is not None:
        event.add("dtend", end_utc.replace(microsecond=0))
    event.add("sequence", sequence)
    event.add("status", "CONFIRMED")
    event.add("summary", title)
    if description:
        event.add("description", description)
    if url:
        event.add("url", url)
    if location:
        event.add("location", location)
    if organizer:
        address = organizer if organizer.lower().startswith("mailto:") else f"mailto:{organizer}"
        event.add("organizer", vCalAddress(address))
    calendar.add_component(event)
    data: bytes = calendar.to_ical()
    return data


def attachment(ics: bytes, filename: str = "invite.ics") -> tuple[str, str, bytes]:
    """`(filename, mime type, bytes)` for the SMTP channel's `message.options["attachments"]`."""
    return (filename, MIME_TYPE, ics)
