"""Events -> Swedish (or English) date strings via Babel/CLDR, and later .ics files."""

from __future__ import annotations

from datetime import date as Date

from babel.dates import format_date

from .model import Event

LOCALES = {"sv": "sv_SE", "en": "en_GB"}


def long_date(day: Date, language: str) -> str:
    """'18 december 2019' / '18 December 2019'."""
    return format_date(day, "d MMMM y", locale=LOCALES[language])


def event_date(event: Event, language: str) -> str:
    """'15 januari', or '29–30 januari' / '30 januari–2 februari' for multi-day events."""
    loc = LOCALES[language]
    start, end = event.date, event.end_date
    if end is None or end == start:
        return format_date(start, "d MMMM", locale=loc)
    if (start.year, start.month) == (end.year, end.month):
        return f"{start.day}–{format_date(end, 'd MMMM', locale=loc)}"
    return f"{format_date(start, 'd MMMM', locale=loc)}–{format_date(end, 'd MMMM', locale=loc)}"


def event_time(event: Event) -> str:
    """'09.00–12.00' in Swedish style is ambiguous across readers; keep the editor's HH:MM."""
    start, end = event.times
    if start is None:
        return ""
    text = start.strftime("%H:%M")
    return f"{text}–{end.strftime('%H:%M')}" if end else text
