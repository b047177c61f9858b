"""Events -> Swedish (or English) date strings via Babel/CLDR, and .ics files (RFC 5545).

The display strings come from CLDR rather than strftime so that "ons 15 jan." and "29–30 jan."
read the way Swedish readers expect, and switch to English forms with `language: en`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date as Date
from datetime import datetime, timedelta, timezone
from datetime import time as Time
from typing import Iterable, Sequence
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

import icalendar
from babel.dates import format_date, format_interval, format_skeleton

from . import markdown
from .model import Event, Settings

LOCALES = {"sv": "sv_SE", "en": "en_GB"}
# Calendar apps wrap descriptions themselves; hard line breaks from the e-mail width look broken.
UNWRAPPED = 10_000
DAY = timedelta(days=1)


def long_date(day: Date, language: str) -> str:
    """'18 december 2019' / '18 December 2019'."""
    return format_date(day, "d MMMM y", locale=LOCALES[language])


def in_order(events: Iterable[Event]) -> list[Event]:
    """Calendar order: by day, then by start time (all-day first); the `-<n>.ics` numbers follow it."""
    return sorted(events, key=lambda e: (e.date, e.times[0] or Time.min))


@dataclass(frozen=True)
class Month:
    """One month's heading ('januari 2027') and its events, each with its number in calendar order."""

    heading: str
    events: tuple[tuple[int, Event], ...]


def months(events: Iterable[Event], language: str) -> list[Month]:
    """Events grouped by the month they start in, for the Kalendarium's month headings."""
    groups: dict[tuple[int, int], list[tuple[int, Event]]] = {}
    for n, event in enumerate(in_order(events), 1):
        groups.setdefault((event.date.year, event.date.month), []).append((n, event))
    return [
        Month(format_date(Date(year, month, 1), "LLLL y", locale=LOCALES[language]), tuple(entries))
        for (year, month), entries in groups.items()
    ]


def event_date(event: Event, language: str) -> str:
    """'ons 15 jan.' for one day; '29–30 jan.' or '29 jan. – 2 feb.' for several (CLDR short forms)."""
    loc = LOCALES[language]
    start, end = event.date, event.end_date
    if end is None or end == start:
        return format_skeleton("MMMEd", start, locale=loc)
    return format_interval(start, end, "MMMd", locale=loc)


def _hm(t: Time, loc: str) -> str:
    return format_skeleton("Hm", datetime.combine(Date.min, t), locale=loc)


def event_time(event: Event, language: str) -> str:
    """'09:00–12:00'; over several days it names the days: 'fre 09:00 – lör 12:00'.

    Thin spaces around the dash as in CLDR's own ranges; a no-break space keeps each day with
    its time when a narrow column wraps the line.
    """
    loc = LOCALES[language]
    start, end = event.times
    if start is None:
        return ""
    if end is None:
        return _hm(start, loc)
    if event.end_date is not None and event.end_date != event.date:
        first, last = (format_date(d, "EEE", locale=loc) for d in (event.date, event.end_date))
        return f"{first}\u00a0{_hm(start, loc)}\u2009–\u2009{last}\u00a0{_hm(end, loc)}"
    return format_interval(start, end, "Hm", locale=loc)


def missing_times(event: Event, timezone_name: str) -> list[str]:
    """Start or end times that fall in the spring-forward gap, such as 02:30 on the last Sunday
    of March in Sweden: calendars would silently move them by an hour."""
    zone = ZoneInfo(timezone_name)
    start, end = event.times
    out = []
    for day, t in ((event.date, start), (event.end_date or event.date, end)):
        if t is None:
            continue
        local = datetime.combine(day, t, tzinfo=zone)
        if local.astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
            out.append(f"{day} {t:%H:%M}")
    return out


def event_ics_url(web_version_url: str | None, slug: str, n: int) -> str | None:
    """Where `<slug>-<n>.ics` is published: beside the web version (its `.html` becomes `-<n>.ics`)."""
    return urljoin(web_version_url, f"{slug}-{n}.ics") if web_version_url else None


def _uids(settings: Settings, events: Sequence[Event]) -> list[str]:
    """UIDs from what identifies an event to a reader (newsletter, title, day), not from the issue.

    A rebuild, or the same meeting listed again in next month's issue, gives the same UID, so a
    re-import updates the reader's entry instead of duplicating it; correcting the time or place
    keeps it too. Two events with the same title on the same day are told apart by their order.
    """
    domain = settings.sender.domain
    seen: dict[str, int] = {}
    out = []
    for event in events:
        key = "\x1f".join((settings.name, event.title.strip().casefold(), event.date.isoformat()))
        seen[key] = seen.get(key, 0) + 1
        digest = hashlib.sha256(f"{key}\x1f{seen[key]}".encode()).hexdigest()[:32]
        out.append(f"{digest}@{domain}")
    return out


def _span(event: Event, zone: ZoneInfo) -> tuple[Date | datetime, Date | datetime | None]:
    """DTSTART and DTEND: local times in `zone` for timed events, else dates with an exclusive end."""
    start, end = event.times
    last = event.end_date or event.date
    if start is None:
        return event.date, last + DAY
    begin = datetime.combine(event.date, start, tzinfo=zone)
    if end is not None:
        return begin, datetime.combine(last, end, tzinfo=zone)
    if event.end_date is not None:
        # A start time but no end over several days: the event lasts until its last day is over.
        return begin, datetime.combine(last + DAY, Time.min, tzinfo=zone)
    return begin, None


def _description(event: Event) -> str | None:
    """Plain text of the Markdown, with the event's link: most calendar apps never show URL."""
    parts = [markdown.to_text(event.description, width=UNWRAPPED)] if event.description else []
    if event.url:
        parts.append(event.url.removeprefix("mailto:"))
    return "\n\n".join(parts) or None


def _vevent(event: Event, uid: str, zone: ZoneInfo, stamp: datetime) -> icalendar.Event:
    vevent = icalendar.Event()
    vevent.add("uid", uid)
    vevent.add("dtstamp", stamp.astimezone(timezone.utc).replace(microsecond=0))
    vevent.add("summary", event.title)
    start, end = _span(event, zone)
    vevent.add("dtstart", start)
    if end is not None:
        vevent.add("dtend", end)
    if event.location:
        vevent.add("location", event.location)
    if event.url:
        vevent.add("url", event.url)
    description = _description(event)
    if description:
        vevent.add("description", description)
    return vevent


def _vcalendar(settings: Settings, vevents: Sequence[icalendar.Event], years: tuple[int, int]) -> bytes:
    """A VCALENDAR without METHOD: a file to import, never an iTIP invitation or reply."""
    cal = icalendar.Calendar()
    cal.add("prodid", f"-//utskick//{settings.name}//{settings.language.upper()}")
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    for vevent in vevents:
        cal.add_component(vevent)
    # Whole years keep the VTIMEZONE small and the same on every rebuild.
    cal.add_missing_timezones(Date(years[0], 1, 1), Date(years[1] + 1, 1, 1))
    return bytes(cal.to_ical())


def ics(settings: Settings, events: Iterable[Event], stamp: datetime) -> tuple[bytes, list[bytes]]:
    """The issue's .ics with every event, and one .ics per event, both in calendar order."""
    ordered = in_order(events)
    zone = ZoneInfo(settings.timezone)
    vevents = [_vevent(e, uid, zone, stamp) for e, uid in zip(ordered, _uids(settings, ordered))]
    years = (ordered[0].date.year, max((e.end_date or e.date).year for e in ordered))
    return _vcalendar(settings, vevents, years), [_vcalendar(settings, [v], years) for v in vevents]
