"""The archive as an Atom feed (RFC 4287), so readers and intranets can follow the newsletter.

Built with ElementTree rather than a template: the XML escaping of the full HTML content is then
the parser's, never ours. Nothing in it depends on when it is made: ids come from what names the
newsletter and the issue, `updated` from the issue's date, so a rebuild gives the same bytes.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date as Date
from datetime import datetime
from datetime import time as Time
from zoneinfo import ZoneInfo

from .model import Settings

ATOM = "http://www.w3.org/2005/Atom"


@dataclass(frozen=True)
class Entry:
    """One published issue as the archive and the feed list it."""

    slug: str
    subject: str
    date: Date
    preheader: str | None
    href: str  # the web version, relative to the site folder
    content: str  # the HTML (the CMS fragment: absolute links when web_version is set)


def moment(settings: Settings, day: Date) -> str:
    """An issue's date as an RFC 3339 time: its midnight where the newsletter is made."""
    return datetime.combine(day, Time.min, tzinfo=ZoneInfo(settings.timezone)).isoformat()


def _id(settings: Settings, *parts: str) -> str:
    """A URN from the newsletter's name and sender domain (and the slug): the same on every
    rebuild and wherever the site is uploaded, as the calendar's UIDs are."""
    name = "\x1f".join(("utskick", settings.sender.domain, settings.name, *parts))
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, name)}"


def _add(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    element.text = text
    return element


def atom(settings: Settings, entries: list[Entry], self_href: str, archive_href: str) -> bytes:
    """The feed with every entry in the given order (newest first) and its full content."""
    feed = ET.Element("feed", {"xmlns": ATOM, "xml:lang": settings.language})
    _add(feed, "id", _id(settings))
    _add(feed, "title", settings.name)
    if settings.tagline:
        _add(feed, "subtitle", settings.tagline)
    _add(feed, "updated", max((moment(settings, e.date) for e in entries), default=moment(settings, Date(1970, 1, 1))))
    author = _add(feed, "author")
    _add(author, "name", settings.name)
    if settings.website:
        _add(author, "uri", settings.website)
    _add(feed, "link", rel="self", type="application/atom+xml", href=self_href)
    _add(feed, "link", rel="alternate", type="text/html", href=archive_href)
    _add(feed, "generator", "utskick")
    for e in entries:
        entry = _add(feed, "entry")
        _add(entry, "id", _id(settings, e.slug))
        _add(entry, "title", e.subject)
        _add(entry, "published", moment(settings, e.date))
        _add(entry, "updated", moment(settings, e.date))
        _add(entry, "link", rel="alternate", type="text/html", href=e.href)
        if e.preheader:
            _add(entry, "summary", e.preheader)
        _add(entry, "content", e.content, type="html")
    ET.indent(feed)
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body + b"\n"
