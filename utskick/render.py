"""jinja2, then CSS inlining (`inline`): issue -> html/text, once per issue.

Rendering and CSS inlining are the expensive part (premailer, when the page is not in the
inline cache, ~0.3 s), so they happen once per issue with per-recipient values left as markers; `personalise` fills them in per
recipient by joining pre-split pieces, which costs microseconds.
"""

from __future__ import annotations

import re
import secrets
import textwrap
import traceback
from dataclasses import dataclass, replace
from functools import cached_property
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from pydantic import BaseModel
from markupsafe import Markup

from . import calendar, images, markdown
from .inline import inline
from .images import Picture
from .errors import Problem, UtskickError
from .files import bundled, make_folders
from .load import Document, slug_of
from .project import Project
from .model import Event, Image, Issue, Logo, Settings

STRINGS: dict[str, dict[str, str]] = {
    "sv": {
        "read_more": "Läs mer",
        "about_article": " om {title}",
        "web_version": "Visa i webbläsare",
        "unsubscribe": "Avregistrera",
        "unsubscribe_by_mail": "Eller e-post",
        "website": "Webbplats",
        "calendar": "Kalendarium",
        "full_calendar": "Hela kalendariet",
        "add_to_calendar": "Lägg till i kalender",
        "about_event": ": {title}",
        "photo": "Foto",
        "why": "Du får det här nyhetsbrevet från {name}.",
    },
    "en": {
        "read_more": "Read more",
        "about_article": " about {title}",
        "web_version": "View in browser",
        "unsubscribe": "Unsubscribe",
        "unsubscribe_by_mail": "Or e-mail",
        "website": "Website",
        "calendar": "Calendar",
        "full_calendar": "Full calendar",
        "add_to_calendar": "Add to calendar",
        "about_event": ": {title}",
        "photo": "Photo",
        "why": "You receive this newsletter from {name}.",
    },
}
# Link texts that say nothing out of context: the article's title follows them as hidden text.
GENERIC_LINK_TEXTS = {"läs mer", "read more", "mer", "mer info", "mer information", "här", "klicka här", "more", "here"}
GMAIL_CLIP = 102 * 1024
EMBED_WARN = 300 * 1024
SUBJECT_WARN = 78
MARKDOWN_FIELDS = {"body", "intro", "description", "footer"}
# A credit the editor already prefixed ("Foto: Bengt Säll") is shown as written.
CREDIT_PREFIX = re.compile(r"^\s*(foto|photo|bild|image)\s*:", re.IGNORECASE)


def default_theme() -> Path:
    """The theme shipped in the wheel (`utskick.templates`), or ./templates in a source checkout."""
    return bundled("utskick.templates", Path(__file__).resolve().parent.parent / "templates", "email.html")


@dataclass(frozen=True)
class Embedded:
    cid: str
    filename: str
    mime: str
    data: bytes


@dataclass(frozen=True)
class Split:
    """Text cut at the markers: parts[0] + value(fields[0]) + parts[1] + …"""

    parts: tuple[str, ...]
    fields: tuple[str, ...]

    def fill(self, values: dict[str, str]) -> str:
        out = [self.parts[0]]
        for name, part in zip(self.fields, self.parts[1:]):
            out.append(values[name])
            out.append(part)
        return "".join(out)


@dataclass(frozen=True)
class Rendered:
    """One issue, rendered and inlined once, with per-recipient values still open."""

    slug: str
    settings: Settings
    issue: Issue
    html: Split
    text: Split
    images: tuple[Embedded, ...]
    attachments: tuple[Embedded, ...] = ()
    problems: tuple[Problem, ...] = ()
    files: tuple[Path, ...] = ()
    # Files to publish beside the web version (name, bytes), such as each event's .ics.
    web_files: tuple[tuple[str, bytes], ...] = ()
    # Every local image after the pipeline, embedded or not (images.write_files publishes them).
    pictures: tuple[Picture, ...] = ()

    @cached_property
    def fields(self) -> frozenset[str]:
        """Subscriber columns the templates use (beyond the unsubscribe link)."""
        return frozenset(f for f in self.html.fields + self.text.fields if f != UNSUB)

    @cached_property
    def html_size(self) -> int:
        return len(self.html.fill({f: "" for f in self.html.fields}).encode())


UNSUB = "\x00unsubscribe_url"


class _Markers:
    """Stands in for `subscriber` while rendering: every field becomes a marker premailer keeps."""

    def __init__(self, nonce: str) -> None:
        self.nonce = nonce
        self.used: list[str] = []

    def marker(self, name: str) -> str:
        if name not in self.used:
            self.used.append(name)
        return f"%%U{self.nonce}#{self.used.index(name)}%%"

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.marker(name)

    def __getitem__(self, name: str) -> str:
        return self.marker(name)

    def split(self, text: str) -> Split:
        pieces = re.split(rf"%%U{self.nonce}#(\d+)%%", text)
        statics = pieces[0::2]
        if any(re.search(rf"%%U{self.nonce}", p, re.IGNORECASE) for p in statics):
            raise UtskickError(Problem(
                "a template changes a subscriber field or unsubscribe_url with a filter or an operation; "
                "these are filled in per recipient after rendering, so use them as they are: {{ subscriber.name }}"))
        return Split(tuple(statics), tuple(self.used[int(i)] for i in pieces[1::2]))


def web_version_url(settings: Settings, slug: str) -> str | None:
    return settings.web_version.replace("{slug}", slug) if settings.web_version else None


THEME_PREFIX = "!theme"


def _environment(project: Project) -> jinja2.Environment:
    """The project's templates/ first, then the default theme; `!theme/NAME` is always the
    default's, so a project's email.html can extend it and override only some blocks."""
    theme = jinja2.FileSystemLoader(default_theme())
    loader = jinja2.ChoiceLoader(
        [jinja2.PrefixLoader({THEME_PREFIX: theme}), jinja2.FileSystemLoader(project.templates_dir), theme]
    )
    return jinja2.Environment(
        loader=loader,
        autoescape=jinja2.select_autoescape(["html"], default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        bytecode_cache=_compiled_templates(project),
    )


def _compiled_templates(project: Project) -> jinja2.BytecodeCache | None:
    """Compiling the theme's templates is half of a build's own time: keep them compiled in
    `.utskick/cache/templates/` (keyed by each template's source, so an edit recompiles it).
    A folder that cannot be made just means compiling every time."""
    folder = project.cache_dir / "templates"
    try:
        make_folders(folder, 0o700)  # inside .utskick/, private like the journal
    except (OSError, UtskickError):
        return None
    return jinja2.FileSystemBytecodeCache(str(folder))


def _underline(text: str, char: str) -> str:
    lines = textwrap.wrap(text, markdown.WIDTH, break_long_words=False) or [""]
    return "\n".join(lines) + "\n" + char * max(len(line) for line in lines)


def _labelled(url: str, label: str, indent: str = "") -> str:
    """'Läs mer: https://…', with the URL on a line of its own when both do not fit in 78."""
    line = f"{indent}{label}: {url}"
    return line if len(line) <= markdown.WIDTH else f"{indent}{label}:\n{indent}{url}"


def _wrap(text: str, indent: str = "  ") -> str:
    return "\n".join(textwrap.wrap(text, markdown.WIDTH, subsequent_indent=indent, break_long_words=False))


def _filters(settings: Settings, shown: dict[Image | Logo, images.Shown]) -> dict[str, Any]:
    lang = settings.language
    by_src = {image.src: s.src for image, s in reversed(shown.items())}

    def show(image: Image | Logo) -> images.Shown:
        return shown.get(image) or images.Shown(image.src, images.display_width(image), None)

    def credit(text: str) -> str:
        return text if CREDIT_PREFIX.match(text) else f"{STRINGS[lang]['photo']}: {text}"

    return {
        "markdown": lambda s, level, breaks=False: Markup(markdown.to_html(s, breaks, level)),
        "text": lambda s, breaks=False, width=markdown.WIDTH: markdown.to_text(s, width, breaks),
        "long_date": lambda d: calendar.long_date(d, lang),
        "event_date": lambda e: calendar.event_date(e, lang),
        "event_time": lambda e: calendar.event_time(e, lang),
        "months": lambda events: calendar.months(events, lang),
        "image_src": lambda src: by_src.get(src, src),
        "shown": show,
        "credit": credit,
        "is_generic": lambda s: s.strip(" .→>").lower() in GENERIC_LINK_TEXTS,
        "host": lambda url: urlsplit(url).netloc or url,
        "bare": lambda url: url.removeprefix("mailto:"),
        "underline": _underline,
        "labelled": _labelled,
        "wrap": _wrap,
    }


def _walk(obj: Any, loc: tuple[int | str, ...] = ()) -> Any:
    """Every (loc, field name, value) in a model tree, for checks that need a location."""
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from _walk(item, loc + (i,))
    elif isinstance(obj, BaseModel):
        for name, info in type(obj).model_fields.items():
            value = getattr(obj, name)
            key = info.alias or name
            yield loc + (key,), key, value
            yield from _walk(value, loc + (key,))


def _local_images(doc: Document[Any]) -> list[tuple[tuple[int | str, ...], Image | Logo]]:
    return [(loc, value) for loc, _, value in _walk(doc.model)
            if isinstance(value, (Image, Logo)) and not value.src.lower().startswith("https://")]


def _pictures(project: Project, docs: list[Document[Any]]) -> tuple[dict[Image | Logo, Picture], list[Problem], list[Path]]:
    """Every local image through the pipeline; each refusal or doubt located at its `src`."""
    pictures: dict[Image | Logo, Picture] = {}
    problems: list[Problem] = []
    files: list[Path] = []
    cache = project.cache_dir
    for doc in docs:
        for loc, image in _local_images(doc):
            path = doc.path.parent / image.src
            files.append(path)
            at = loc + ("src", "")
            try:
                picture = images.prepare(path, project.root, images.display_width(image), cache)
            except images.Refused as e:
                problems.append(doc.problem(at, str(e)))
                continue
            pictures[image] = picture
            if picture.blurry:
                problems.append(doc.problem(at, f"{path.name} is {picture.width} px wide but shown at {picture.display_width} px: "
                                                f"it will look blurry (best at {images.target_width(picture.display_width)} px or more)", "warning"))
    return pictures, problems, files


def _embedded(pictures: list[Picture]) -> list[Embedded]:
    unique = {p.cid: p for p in pictures}
    return [Embedded(p.cid, f"{p.source.stem}{images.EXTENSION[p.format]}", p.mime, p.data) for p in unique.values()]


def _luminance(color: str) -> float:
    hexa = color.lstrip("#")
    if len(hexa) == 3:
        hexa = "".join(c * 2 for c in hexa)
    channels = []
    for i in (0, 2, 4):
        c = int(hexa[i : i + 2], 16) / 255
        channels.append(c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4)
    r, g, b = channels
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _checks(project: Project, doc: Document[Issue], embedded: list[Embedded]) -> list[Problem]:
    """Problems the model alone cannot see: contrast, http links, sizes, dates."""
    out: list[Problem] = []
    sdoc = project.settings_doc
    ratio = contrast(project.settings.accent_color, "#ffffff")
    if ratio < 4.5:
        out.append(sdoc.problem(("accent_color", ""), f"accent_color {project.settings.accent_color} has a contrast of {ratio:.2f}:1 against white; links and headings need at least 4.5:1 (WCAG 2.1 AA)"))
    for d in (sdoc, doc):
        for loc, key, value in _walk(d.model):
            if not isinstance(value, str):
                continue
            urls = markdown.links(value) if key in MARKDOWN_FIELDS else [value]
            for url in urls:
                if url.lower().startswith("http://"):
                    out.append(d.problem(loc + ("",), f"{url} is not https: readers' mail clients may warn", "warning"))
    issue = doc.model
    if len(issue.subject) > SUBJECT_WARN:
        out.append(doc.problem(("subject", ""), f"subject is {len(issue.subject)} characters; inboxes cut it near {SUBJECT_WARN}", "warning"))
    if issue.calendar:
        for i, event in enumerate(issue.calendar.events):
            if (event.end_date or event.date) < issue.date:
                out.append(doc.problem(("calendar", "events", i, "date", ""), f"event '{event.title}' is already over on the issue date {issue.date}", "warning"))
            for when in calendar.missing_times(event, project.settings.timezone):
                out.append(doc.problem(("calendar", "events", i, "time", ""), f"{when} does not exist in {project.settings.timezone} (the clocks are put forward then)", "warning"))
    total = sum(len(e.data) for e in embedded) * 4 // 3
    if total > EMBED_WARN:
        out.append(Problem(f"embedded images add {total // 1024} KB to every message (over {EMBED_WARN // 1024} KB): use fewer "
                           "or narrower images, JPEG for photos, or 'images: hosted' in the settings", doc.path, severity="warning"))
    return out


def _calendar_files(settings: Settings, slug: str, events: list[Event]) -> tuple[tuple[Embedded, ...], tuple[tuple[str, bytes], ...]]:
    """The issue's .ics as an attachment, and `<slug>-<n>.ics` per event for the web version."""
    if not events:
        return (), ()
    whole, each = calendar.ics(settings, events, datetime.now(timezone.utc))
    attachment = Embedded(f"{slug}.ics@utskick", f"{slug}.ics", "text/calendar", whole)
    return (attachment,), tuple((f"{slug}-{n}.ics", data) for n, data in enumerate(each, 1))


def _template_problem(e: Exception, project: Project) -> Problem:
    """The template file and line an error came from (Jinja puts template frames in tracebacks)."""
    file, line = getattr(e, "filename", None), getattr(e, "lineno", None)
    if file is None:
        for frame in reversed(traceback.extract_tb(e.__traceback__)):
            if frame.filename.endswith((".html", ".txt", ".css")):
                file, line = frame.filename, frame.lineno
                break
    message = e.message if isinstance(e, jinja2.TemplateError) and e.message else f"{type(e).__name__}: {e}"
    if isinstance(e, jinja2.TemplateNotFound):
        message = f"template {e.name!r} not found in {project.templates_dir} or the default theme"
    return Problem(f"template: {message}", Path(file) if file else project.templates_dir, line)


def page_environment(project: Project) -> jinja2.Environment:
    """The templates with every filter, for pages built from the theme outside an email
    (`utskick publish`): images keep their src, so the caller links them where it puts them."""
    env = _environment(project)
    env.filters.update(_filters(project.settings, {}))
    return env


# For those pages too: a template's failure located.
template_problem = _template_problem


def render(project: Project, doc: Document[Issue]) -> Rendered:
    """Render and inline one issue; raises UtskickError when it cannot be sent as is."""
    settings, issue = project.settings, doc.model
    slug = slug_of(doc.path)
    pictures, image_problems, files = _pictures(project, [project.settings_doc, doc])
    hosted = settings.images == "hosted"
    embedded = [] if hosted else _embedded(list(pictures.values()))
    if any(p.is_error for p in image_problems):  # reported with everything the model alone cannot see
        raise UtskickError(image_problems + _checks(project, doc, embedded))
    shown = {image: images.Shown(images.hosted_url(settings, p) if hosted else f"cid:{p.cid}", p.display_width, p.display_height)
             for image, p in pictures.items()}
    env = _environment(project)
    env.filters.update(_filters(settings, shown))
    # Always one lowercase letter besides the "U": a filter such as |upper or |lower changes it.
    markers = _Markers("m" + secrets.token_hex(4))
    context: dict[str, Any] = {
        "settings": settings,
        "issue": issue,
        "slug": slug,
        "t": STRINGS[settings.language],
        "subscriber": markers,
        "unsubscribe_url": markers.marker(UNSUB) if settings.unsubscribe.url else None,
        "web_version_url": web_version_url(settings, slug),
        "ics_url": lambda n: calendar.event_ics_url(web_version_url(settings, slug), slug, n),
        "preheader_padding": Markup("&#847;&zwnj;&nbsp;" * 40),
    }
    try:
        assert env.loader is not None
        css = env.loader.get_source(env, "email.css")[0].replace("ACCENT", settings.accent_color)
        page = env.get_template("email.html").render(context, css=Markup(css))
        text = env.get_template("email.txt").render(context)
    except Exception as e:  # a federation's own template can fail in any way; never a traceback
        raise UtskickError(_template_problem(e, project)) from None
    text = re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"
    attachments, web_files = _calendar_files(settings, slug, issue.calendar.events if issue.calendar else [])
    if hosted:
        web_files += images.site_files(pictures.values())
    rendered = Rendered(slug, settings, issue, markers.split(inline(page, project.cache_dir, markers.nonce)), markers.split(text),
                        tuple(embedded), attachments, files=tuple(files), web_files=web_files,
                        pictures=tuple(dict.fromkeys(pictures.values())))
    warnings = image_problems + _checks(project, doc, embedded)
    if rendered.html_size > GMAIL_CLIP:
        warnings.append(Problem(f"the HTML is {rendered.html_size // 1024} KB; Gmail clips messages over 102 KB", doc.path, severity="warning"))
    if any(p.is_error for p in warnings):
        raise UtskickError(warnings)
    return replace(rendered, problems=tuple(warnings))
