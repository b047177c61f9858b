"""Pydantic models of `newsletter.yaml` and an issue: the single source of truth for the format.

Every field name here is part of the contract editors write against; `load` turns pydantic's
errors into located problems, so validators raise plain `ValueError`s with editor-facing text.
"""

from __future__ import annotations

import re
from datetime import date as Date
from datetime import time as Time
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .addresses import Sender, bare_address, parse_mailbox

URL_SCHEMES = ("http://", "https://", "mailto:", "tel:")


def _url(value: str) -> str:
    value = value.strip()
    if not value.lower().startswith(URL_SCHEMES):
        raise ValueError(f"{value!r} is not a link utskick can send: use http(s)://, mailto: or tel:")
    if any(c.isspace() for c in value):
        raise ValueError(f"{value!r} contains a space; encode it as %20")
    return value


def _web_url(value: str) -> str:
    value = _url(value)
    if not value.lower().startswith(("http://", "https://")):
        raise ValueError(f"{value!r} must be a web address (https://…)")
    return value


def _image_src(value: str) -> str:
    value = value.strip()
    if value.lower().startswith("http://"):
        raise ValueError(f"{value!r}: images must be https:// (or a file next to the issue)")
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", value) and not value.lower().startswith("https://"):
        raise ValueError(f"{value!r}: an image is an https:// URL or a file path next to the issue")
    if not value:
        raise ValueError("image src is empty")
    return value


def _one_line(value: str) -> str:
    if "\n" in value.strip() or "\r" in value:
        raise ValueError("must be a single line (remove the line break)")
    return value.strip()


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def _email_address(value: str) -> str:
    parse_mailbox(value)
    return value.strip()


Url = Annotated[str, AfterValidator(_url)]
WebUrl = Annotated[str, AfterValidator(_web_url)]
ImageSrc = Annotated[str, AfterValidator(_image_src)]
OneLine = Annotated[str, AfterValidator(_one_line), AfterValidator(_non_blank)]
Text = Annotated[str, AfterValidator(_non_blank)]
Markdown = str
Address = Annotated[str, AfterValidator(_email_address)]
BareAddress = Annotated[str, AfterValidator(bare_address)]


class Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently drop an editor's text."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Image(Strict):
    src: ImageSrc
    alt: Annotated[str, AfterValidator(_non_blank)] = Field(
        description="What the image shows, for screen readers; required"
    )
    width: Annotated[int, Field(gt=0, le=600)] | None = None
    caption: str | None = None
    credit: str | None = None
    link: Url | None = None


class Logo(Strict):
    src: ImageSrc
    alt: Text
    width: Annotated[int, Field(gt=0, le=600)] | None = None


class Link(Strict):
    url: Url
    text: OneLine | None = None


class Signature(Strict):
    name: OneLine
    role: OneLine | None = None


class Intro(Strict):
    title: OneLine | None = None
    body: Text
    image: Image | None = None
    signature: Signature | None = None


class Article(Strict):
    title: OneLine
    kicker: OneLine | None = None
    body: Markdown | None = None
    image: Image | None = None
    link: Link | None = None


class Section(Strict):
    title: OneLine | None = None
    intro: Markdown | None = None
    articles: Annotated[list[Article], Field(min_length=1)]


TIME_RE = re.compile(r"^\s*(\d{1,2})[:.](\d{2})\s*(?:[-–—]\s*(\d{1,2})[:.](\d{2})\s*)?$")


def parse_time_range(value: str) -> tuple[Time, Time | None]:
    """'09:00', '9.00-12.00' or '09:00–12:00' (en dash, as editors type it)."""
    m = TIME_RE.match(value)
    if not m:
        raise ValueError(f"time {value!r} must be 'HH:MM' or 'HH:MM-HH:MM'")
    try:
        start = Time(int(m[1]), int(m[2]))
        end = Time(int(m[3]), int(m[4])) if m[3] else None
    except ValueError:
        raise ValueError(f"time {value!r} is not a time of day (00:00-23:59)") from None
    return start, end


class Event(Strict):
    title: OneLine
    date: Date
    end_date: Date | None = None
    time: str | None = None
    location: OneLine | None = None
    url: Url | None = None
    description: Markdown | None = None

    @field_validator("time", mode="before")
    @classmethod
    def _time_is_text(cls, value: object) -> object:
        if value is not None and not isinstance(value, str):
            raise ValueError(f"time {value!r} must be quoted text like \"09:00-12:00\"")
        return value

    # Field validators, not a model validator, so that `check` points at the very line to fix.
    @field_validator("end_date")
    @classmethod
    def _end_date_after_date(cls, value: Date | None, info: ValidationInfo) -> Date | None:
        start = info.data.get("date")
        if value is not None and start is not None and value < start:
            raise ValueError(f"end_date {value} is before date {start}")
        return value

    @field_validator("time")
    @classmethod
    def _time_format(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            start, end = parse_time_range(value)
            one_day = "end_date" in info.data and info.data["end_date"] in (None, info.data.get("date"))
            if end is not None and end <= start and one_day:
                raise ValueError(f"time {value!r} ends before it starts")
        return value

    @property
    def times(self) -> tuple[Time | None, Time | None]:
        if self.time is None:
            return None, None
        return parse_time_range(self.time)


class Calendar(Strict):
    title: OneLine | None = None
    intro: Markdown | None = None
    more: Link | None = None
    events: list[Event] = Field(default_factory=list)


class Issue(Strict):
    subject: OneLine
    date: Date
    title: OneLine | None = None
    preheader: OneLine | None = None
    lists: list[Text] = Field(default_factory=list)
    intro: Intro | None = None
    sections: Annotated[list[Section], Field(min_length=1)]
    calendar: Calendar | None = None

    @field_validator("lists", mode="before")
    @classmethod
    def _single_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @property
    def heading(self) -> str:
        return self.title or self.subject


class Unsubscribe(Strict):
    url: WebUrl | None = None
    mailto: BareAddress | None = None

    @model_validator(mode="after")
    def _one_way_out(self) -> Unsubscribe:
        if not self.url and not self.mailto:
            raise ValueError("give a url, a mailto address or both: every issue needs a way to unsubscribe")
        return self


RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


class Sending(Strict):
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    rate: str | None = None
    retries: Annotated[int, Field(ge=0, le=20)] = 5

    @field_validator("rate")
    @classmethod
    def _rate_format(cls, value: str | None) -> str | None:
        if value is not None and not RATE_RE.match(value):
            raise ValueError(f"rate {value!r} must look like '30/min', '5/s' or '1000/h'")
        return value

    @property
    def per_second(self) -> float | None:
        """Messages per second allowed, or None for no limit."""
        if self.rate is None:
            return None
        m = RATE_RE.match(self.rate)
        assert m
        return float(m[1]) / RATE_UNITS[m[2]]


class Settings(Strict):
    name: OneLine
    tagline: OneLine | None = None
    from_: Address = Field(alias="from")
    reply_to: Address | None = None
    language: Literal["sv", "en"] = "sv"
    timezone: str = "Europe/Stockholm"
    website: WebUrl | None = None
    logo: Logo | None = None
    accent_color: str = "#00587a"
    footer: Markdown | None = None
    unsubscribe: Unsubscribe
    web_version: WebUrl | None = None
    sending: Sending = Field(default_factory=Sending)

    @property
    def sender(self) -> Sender:
        """Who every message is from; the name defaults to the newsletter's."""
        return Sender.of(self.from_, self.name)

    @field_validator("web_version")
    @classmethod
    def _slug_in_web_version(cls, value: str | None) -> str | None:
        if value is not None and "{slug}" not in value:
            raise ValueError("web_version must contain {slug}, or every issue links to the same page")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Europe/Stockholm)") from None
        return value

    @field_validator("accent_color")
    @classmethod
    def _hex_color(cls, value: str) -> str:
        if not re.fullmatch(r"#[0-9a-fA-F]{6}|#[0-9a-fA-F]{3}", value.strip()):
            raise ValueError(f"accent_color {value!r} must be a hex colour like \"#00587a\" (quoted)")
        return value.strip()
