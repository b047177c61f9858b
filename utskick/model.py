"""Pydantic models of `newsletter.yaml` and an issue: the single source of truth for the format.

Every field name here is part of the contract editors write against; `load` turns pydantic's
errors into located problems, so validators raise plain `ValueError`s with editor-facing text.
"""

from __future__ import annotations

import re
from datetime import date as Date
from datetime import time as Time
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, WithJsonSchema, field_validator, model_validator

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
    if value.startswith(("/", "\\")):
        raise ValueError(f"{value!r} is an absolute path: give the path from the issue's folder (bilder/foto.jpg), "
                         "inside the project folder")
    return value


def _single_line(value: str) -> str:
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
OneLine = Annotated[str, AfterValidator(_single_line), AfterValidator(_non_blank)]
Text = Annotated[str, AfterValidator(_non_blank)]
Markdown = str
Address = Annotated[str, AfterValidator(_email_address)]
BareAddress = Annotated[str, AfterValidator(bare_address)]


class Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently drop an editor's text."""

    # use_attribute_docstrings: the Swedish docstring under each field is its description in the
    # JSON Schema (`utskick schema`), which editors see while they type.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, use_attribute_docstrings=True)


class Image(Strict):
    src: ImageSrc
    """Bilden: en https://-adress eller en fil bredvid nummerfilen, som då bäddas in i mejlet. Exempel: bilder/sjoutsikt.png"""
    alt: Annotated[str, AfterValidator(_non_blank)]
    """Vad bilden visar, för den som inte ser den (skärmläsare, blockerade bilder); krävs. Exempel: Vy över en sjö i vinterljus"""
    width: Annotated[int, Field(gt=0, le=600)] | None = None
    """Bredd i pixlar, högst 600; bilden krymper på smala skärmar. Exempel: 552"""
    caption: str | None = None
    """Bildtext under bilden. Exempel: Förbundsmötet i Storvik"""
    credit: str | None = None
    """Fotograf eller källa, visas efter bildtexten. Exempel: Foto: Bengt Säll"""
    link: Url | None = None
    """Gör bilden till en länk till den här adressen. Exempel: https://www.sjolandet.example/"""


class Logo(Strict):
    src: ImageSrc
    """Logotypen: en https://-adress eller en fil bredvid newsletter.yaml. Exempel: bilder/logo.png"""
    alt: Text
    """Vad logotypen säger, oftast förbundets namn; krävs. Exempel: Sjölandets kommunalförbund"""
    width: Annotated[int, Field(gt=0, le=600)] | None = None
    """Bredd i pixlar, högst 600 (standard 200). Exempel: 180"""


class Link(Strict):
    url: Url
    """Adressen: https://, mailto: eller tel:. Exempel: https://www.sjolandet.example/nyheter/gymnasieplatser"""
    text: OneLine | None = None
    """Länktexten (standard "Läs mer"); en text som säger vart länken går är bäst. Exempel: Så fungerar mottagningen"""


class Signature(Strict):
    name: OneLine
    """Namnet under ledaren. Exempel: Karin Holmqvist"""
    role: OneLine | None = None
    """Titeln under namnet. Exempel: Förbundsdirektör"""


class Intro(Strict):
    title: OneLine | None = None
    """Ledarens rubrik (en rad). Exempel: Ett år av gemensamma steg"""
    body: Text
    """Ledarens text i Markdown: **fet**, [länk](https://…), listor; krävs. Exempel: Året lider mot sitt slut …"""
    image: Image | None = None
    """En bild överst i ledaren, med src och alt. Exempel: {src: bilder/sjo.png, alt: Vy över en sjö}"""
    signature: Signature | None = None
    """Vem som skriver, med name och role. Exempel: {name: Karin Holmqvist, role: Förbundsdirektör}"""


class Article(Strict):
    title: OneLine
    """Artikelns rubrik (en rad); krävs. Exempel: Gemensam planering ska ge fler gymnasieplatser"""
    kicker: OneLine | None = None
    """En liten etikett ovanför rubriken. Exempel: Gymnasiet"""
    body: Markdown | None = None
    """Artikelns text i Markdown. Exempel: Elevkullarna växer i hela Sjölandet …"""
    image: Image | None = None
    """En bild överst i artikeln, med src och alt. Exempel: {src: https://…/bild.jpg, alt: Elever i ett klassrum}"""
    link: Link | None = None
    """En länk efter texten, med url och text. Exempel: {url: "https://…", text: Läs mer om vikariepoolen}"""


class Section(Strict):
    title: OneLine | None = None
    """Avsnittets rubrik (en rad); utan rubrik blir artiklarna rubriker på egen hand. Exempel: Utbildning och arbetsmarknad"""
    intro: Markdown | None = None
    """En kort ingress under avsnittets rubrik, i Markdown. Exempel: Två nyheter från nätverket för socialchefer."""
    articles: Annotated[list[Article], Field(min_length=1)]
    """Avsnittets artiklar, minst en. Exempel: - {title: Nytt stöd för unga, body: Fyra kommuner startar …}"""


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
    """Vad som händer (en rad); krävs. Exempel: Styrelsemöte"""
    date: Date
    """Dagen, ÅÅÅÅ-MM-DD; krävs. Exempel: 2027-01-14"""
    end_date: Date | None = None
    """Sista dagen för något som pågår flera dagar, ÅÅÅÅ-MM-DD. Exempel: 2027-01-15"""
    time: str | None = None
    """Klockslag inom citattecken, HH:MM eller HH:MM-HH:MM. Exempel: "09:00-12:00\""""
    location: OneLine | None = None
    """Var det händer (en rad). Exempel: Förbundshuset, Storvik"""
    url: Url | None = None
    """En länk om evenemanget; rubriken blir länken. Exempel: https://www.sjolandet.example/kalender/styrelsemote"""
    description: Markdown | None = None
    """Mer om evenemanget, i Markdown. Exempel: Anmälan senast 10 januari."""

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
    """Kalendariets rubrik (standard "Kalendarium"). Exempel: På gång i vinter"""
    intro: Markdown | None = None
    """En text ovanför evenemangen, i Markdown. Exempel: Alla möten är öppna för förtroendevalda."""
    more: Link | None = None
    """En länk efter kalendariet, med url och text. Exempel: {url: "https://…/kalender", text: Hela kalendariet}"""
    events: list[Event] = Field(default_factory=list)
    """Evenemangen, ordnade efter datum i mejlet. Exempel: - {title: Styrelsemöte, date: 2027-01-14, time: "09:00-12:00"}"""


class Issue(Strict):
    subject: OneLine
    """Ämnesraden i inkorgen (en rad, helst under 78 tecken); krävs. Exempel: Nytt från Sjölandet – december 2026"""
    date: Date
    """Numrets datum, ÅÅÅÅ-MM-DD; krävs. Exempel: 2026-12-16"""
    title: OneLine | None = None
    """Rubriken i mejlet (standard: ämnesraden). Exempel: Nytt från Sjölandet"""
    preheader: OneLine | None = None
    """Texten som inkorgen visar efter ämnesraden. Exempel: Förbundsdirektören ser tillbaka på året."""
    # One name or a list of names (see _single_list); the schema says so too.
    lists: Annotated[list[Text], WithJsonSchema({"anyOf": [
        {"type": "string"}, {"type": "array", "items": {"type": "string"}}]})] = Field(default_factory=list)
    """Listorna i subscribers/ som numret skickas till, utan .csv. Exempel: [medlemmar, kommunchefer]"""
    intro: Intro | None = None
    """Ledaren överst: title, body, image och signature. Exempel: {title: Ett år av gemensamma steg, body: …}"""
    sections: Annotated[list[Section], Field(min_length=1)]
    """Numrets avsnitt, minst ett, vart och ett med artiklar. Exempel: - title: Utbildning och arbetsmarknad"""
    calendar: Calendar | None = None
    """Kalendariet sist i mejlet: title, intro, more och events. Exempel: {events: [{title: Styrelsemöte, date: 2027-01-14}]}"""

    @field_validator("lists", mode="before")
    @classmethod
    def _single_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @property
    def heading(self) -> str:
        return self.title or self.subject


class Unsubscribe(Strict):
    # The schema asks for url or mailto too, as _one_way_out does.
    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["url"]}, {"required": ["mailto"]}]})

    url: WebUrl | None = None
    """Sidan för att avregistrera sig; {token} byts mot en signerad kod per mottagare. Exempel: https://www.sjolandet.example/avregistrera?token={token}"""
    mailto: BareAddress | None = None
    """En adress att mejla för att avregistrera sig, utan namn. Exempel: avregistrera@sjolandet.example"""
    pull: bool = False
    """Hämta avregistreringar från utskick serve före varje utskick; skicka inte om servern inte svarar. Exempel: true"""

    @field_validator("url")
    @classmethod
    def _token_is_the_query_parameter(cls, value: str | None) -> str | None:
        # `utskick serve` reads the token from ?token=…: anywhere else it would never be found.
        if value is not None:
            parts = urlsplit(value)
            fields = parse_qsl(parts.query, keep_blank_values=True)
            if ("token", "{token}") not in fields or value.count("{token}") != 1:
                raise ValueError(f"{value!r}: {{token}} must be the value of the token query parameter, once: "
                                 "…?token={token} (utskick serve reads it from there)")
        return value

    @model_validator(mode="after")
    def _one_way_out(self) -> Unsubscribe:
        if not self.url and not self.mailto:
            raise ValueError("give a url, a mailto address or both: every issue needs a way to unsubscribe")
        if self.pull and not self.url:
            raise ValueError("pull: true needs a url: the requests are pulled from the server that answers it")
        return self


RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}


DKIM_SELECTOR_RE = re.compile(r"^(?!.*_domainkey)[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*$")


class OAuth(Strict):
    """Where the XOAUTH2 token comes from (see `oauth`); the secret itself is never in this file."""

    provider: Literal["microsoft365"]
    """Var inloggningen sker; i dag bara Microsoft 365. Exempel: microsoft365"""
    flow: Literal["app", "device"]
    """app: en appregistrering skickar (SMTP.SendAsApp); device: en person loggar in med utskick login. Exempel: app"""
    tenant: OneLine
    """Organisationens tenant-id (GUID) eller domän. Exempel: storsthlm.se"""
    client_id: OneLine
    """Appregistreringens program-id (Application ID). Exempel: 11111111-2222-3333-4444-555555555555"""
    client_certificate: OneLine | None = None
    """Med flow: app, en PEM-fil med nyckel och certifikat i stället för UTSKICK_OAUTH_CLIENT_SECRET. Exempel: .utskick/app.pem"""
    authority: WebUrl = "https://login.microsoftonline.com"
    """Inloggningstjänstens adress; ändras bara för nationella moln. Exempel: https://login.microsoftonline.com"""

    @field_validator("tenant")
    @classmethod
    def _one_tenant(cls, value: str) -> str:
        if not TENANT_RE.match(value) or value.lower() in ("common", "organizations", "consumers"):
            raise ValueError(f"tenant {value!r} must be the tenant id (a GUID) or its domain, e.g. storsthlm.se")
        return value

    @field_validator("client_certificate")
    @classmethod
    def _certificate_for_apps(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("flow") == "device":
            raise ValueError("client_certificate is for flow: app; with flow: device a person signs in (utskick login)")
        return value

    @field_validator("authority")
    @classmethod
    def _https_authority(cls, value: str) -> str:
        if not value.lower().startswith("https://"):
            raise ValueError(f"authority {value!r} must be https://")
        return value.rstrip("/")


PRESETS: dict[str, dict[str, int | str]] = {
    # One Microsoft 365 mailbox: 3 connections, 30 messages a minute, 10,000 recipients a day.
    "microsoft365": {"concurrency": 3, "rate": "30/min", "per_day": 10_000},
}


class Sending(Strict):
    preset: Literal["microsoft365"] | None = None
    """Gränserna för en känd tjänst; microsoft365 ger concurrency 3, rate 30/min och per_day 10000. Exempel: microsoft365"""
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    """Antal samtidiga SMTP-anslutningar, 1-64 (standard 4). Exempel: 4"""
    rate: str | None = None
    """Högsta takt över alla anslutningar, per s, min eller h. Exempel: 30/min"""
    retries: Annotated[int, Field(ge=0, le=20)] = 5
    """Nya försök vid tillfälliga fel, 0-20 (standard 5). Exempel: 5"""
    per_day: Annotated[int, Field(ge=1)] | None = None
    """Högst så många mottagare per rullande dygn, över alla nummer; sedan avslutas utskicket med kod 75 och fortsätter nästa körning. Exempel: 10000"""
    oauth: OAuth | None = None
    """Inloggning med OAuth2 (XOAUTH2) i stället för lösenord, för Microsoft 365. Exempel: {provider: microsoft365, flow: app, tenant: storsthlm.se, client_id: 1111…}"""
    dkim_selector: str | None = None
    """DKIM-väljaren (selector) som reläet signerar med, så att utskick doctor kan hitta nyckeln i DNS; för Microsoft 365 prövas selector1 och selector2 utan den. Exempel: s2048"""

    @field_validator("dkim_selector")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        if value is not None and not DKIM_SELECTOR_RE.match(value):
            raise ValueError(f"dkim_selector {value!r} must be a DNS name such as s2048 or selector1 "
                             "(letters, digits, '-', '_' and '.'), without ._domainkey")
        return value

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: object) -> object:
        """A preset fills in what is not written; a value above the service's limit is an error."""
        if not isinstance(data, dict) or data.get("preset") not in PRESETS:
            return data
        limits = PRESETS[data["preset"]]
        for key in ("concurrency", "per_day"):
            if isinstance(data.get(key), str) and data[key].isdigit() and int(data[key]) > int(limits[key]):
                raise ValueError(f"{key} {data[key]} is above what preset {data['preset']} allows ({limits[key]})")
        return {**{k: str(v) for k, v in limits.items()}, **data}

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
    """Förbundets namn, i sidhuvudet och som avsändarnamn; krävs. Exempel: Sjölandets kommunalförbund"""
    tagline: OneLine | None = None
    """En rad under namnet i sidhuvudet. Exempel: Sju kommuner i samverkan"""
    from_: Address = Field(alias="from")
    """Avsändaren, adress eller Namn <adress>; krävs. Exempel: Sjölandets kommunalförbund <nyhetsbrev@sjolandet.example>"""
    reply_to: Address | None = None
    """Adressen som svar går till. Exempel: kansliet@sjolandet.example"""
    language: Literal["sv", "en"] = "sv"
    """Språket för fasta texter och datum: sv (standard) eller en. Exempel: sv"""
    timezone: str = "Europe/Stockholm"
    """Tidszonen för kalendariets klockslag (standard Europe/Stockholm). Exempel: Europe/Stockholm"""
    website: WebUrl | None = None
    """Förbundets webbplats, länkad i sidfoten. Exempel: https://www.sjolandet.example"""
    logo: Logo | None = None
    """En logotyp i stället för namnet i sidhuvudet, med src, alt och width. Exempel: {src: bilder/logo.png, alt: Sjölandet}"""
    accent_color: str = "#00587a"
    """Färgen på länkar och linjer, inom citattecken; minst 4,5:1 mot vitt. Exempel: "#00587a\""""
    footer: Markdown | None = None
    """Text i sidfoten i varje nummer, i Markdown; radbrytningar behålls. Exempel: Box 123 · 123 45 Storvik"""
    unsubscribe: Unsubscribe
    """Hur man avregistrerar sig: url, mailto eller båda; krävs. Exempel: {mailto: avregistrera@sjolandet.example}"""
    web_version: WebUrl | None = None
    """Adressen till webbversionen; {slug} byts mot numrets filnamn. Exempel: https://www.sjolandet.example/nyhetsbrev/{slug}.html"""
    # After web_version, whose value the validator reads: hosted images live beside it.
    images: Literal["embed", "hosted"] = "embed"
    """embed (standard): bilderna följer med i mejlet; hosted: de länkas från webbversionens webbplats, så att dess loggar ser vem som öppnar. Exempel: embed"""
    sending: Sending = Field(default_factory=Sending)
    """Takten för utskick send: concurrency, rate och retries. Exempel: {concurrency: 4, rate: 30/min}"""

    @property
    def sender(self) -> Sender:
        """Who every message is from; the name defaults to the newsletter's."""
        return Sender.of(self.from_, self.name)

    @field_validator("images")
    @classmethod
    def _hosted_needs_web_version(cls, value: str, info: ValidationInfo) -> str:
        if value == "hosted" and "web_version" in info.data and info.data["web_version"] is None:
            raise ValueError("hosted images are linked from the web version's site: set web_version too")
        return value

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
