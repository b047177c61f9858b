"""`utskick publish`: the files every email links to, as a static site to upload.

Each email links to its web version ("Visa i webbläsare", `web_version`) and each event to
`<slug>-<n>.ics` ("Lägg till i kalender"), and a sent newsletter is a public record worth keeping
in one place. `build/` holds the email for a sample reader (with `cid:` images and an unsubscribe
link), which is no page to publish; this makes the pages from the email's own theme blocks,
without anything personal, and with the archive and a feed beside them.

The bytes depend on the input alone (no clock, sorted order), so the site diffs cleanly in git
and rsync copies only what changed; every link is relative, so the folder works at any address
and from file://.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from datetime import time as Time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit
from zoneinfo import ZoneInfo

import jinja2
import lxml.html
from markupsafe import Markup

from . import calendar, feed, images
from .errors import Problem, UtskickError
from .load import Document, load_issue
from .project import Project
from .model import Image, Issue, Logo
from .inline import inline
from .render import STRINGS, Rendered, page_environment, render, template_problem

INDEX = "index.html"
FEED = "feed.xml"
FILE_MODE = 0o644  # read by the web server, whoever it runs as (its folders 0755)
BLOCKS = ("header", "intro", "section", "calendar")
RESERVED = {"index", "feed"}

WEB_STRINGS: dict[str, dict[str, str]] = {
    "sv": {
        "why": "Det här är ett nyhetsbrev från {name}.",
        "reader": "läsare",
        "skip": "Hoppa till innehållet",
        "nav": "Nyhetsbrevet",
        "archive": "Alla nummer",
        "archive_title": "Nyhetsbrev från {name}",
        "feed": "Följ nyhetsbrevet i en flödesläsare (Atom)",
        "all_events": "Lägg till alla evenemang i kalendern",
        "about": "Alla nummer av nyhetsbrevet från {name}.",
    },
    "en": {
        "why": "This is a newsletter from {name}.",
        "reader": "reader",
        "skip": "Skip to content",
        "nav": "Newsletter",
        "archive": "All issues",
        "archive_title": "Newsletter from {name}",
        "feed": "Follow the newsletter in a feed reader (Atom)",
        "all_events": "Add every event to your calendar",
        "about": "Every issue of the newsletter from {name}.",
    },
}


class _Nobody:
    """Stands in for `subscriber` on a public page: nobody's address or columns, and a neutral
    word for the name, so that "Hej {{ subscriber.name }}" still reads."""

    def __init__(self, reader: str) -> None:
        self._reader = reader

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._reader if name == "name" else ""

    def __getitem__(self, name: str) -> str:
        return self.__getattr__(name)


@dataclass(frozen=True)
class Page:
    """One issue as published: its files by path in the site, and its entry in archive and feed."""

    entry: feed.Entry
    files: dict[str, bytes]


def layout_problems(project: Project) -> list[Problem]:
    """A warning when `web_version` cannot name `<slug>.html` in the published folder, where the
    emails' "Visa i webbläsare" and "Lägg till i kalender" links then would not lead."""
    url = project.settings.web_version
    if url is None:
        return []
    parts = urlsplit(url)
    if url.count("{slug}") == 1 and parts.path.endswith("/{slug}.html") and not parts.query and not parts.fragment:
        return []
    return [project.settings_doc.problem(("web_version", ""), (
        f"{url!r} does not end in /{{slug}}.html: utskick publish writes <slug>.html and "
        "<slug>-<n>.ics side by side in one folder, so the emails' links would not find them; "
        "use e.g. https://www.example.se/nyhetsbrev/{slug}.html"), "warning")]


def site_images(project: Project, doc: Document[Issue], rendered: Rendered) -> dict[str, images.Picture]:
    """Each local image's src as written -> the image pipeline's result for it (resized, no
    metadata: the same file the email carries), published under `images.FOLDER`."""
    by_source = {p.source: p for p in rendered.pictures}
    found: dict[str, images.Picture] = {}
    for folder, image in _images(project, doc):
        picture = by_source.get(folder / image.src)
        if picture is not None:
            found.setdefault(image.src, picture)
    return found


def _images(project: Project, doc: Document[Issue]) -> Iterator[tuple[Path, Image | Logo]]:
    """Every image with the folder its src is relative to, settings first (as render does)."""
    if project.settings.logo:
        yield project.root, project.settings.logo
    issue = doc.model
    if issue.intro and issue.intro.image:
        yield doc.path.parent, issue.intro.image
    for section in issue.sections:
        for article in section.articles:
            if article.image:
                yield doc.path.parent, article.image


def _css(env: jinja2.Environment, name: str, accent: str) -> str:
    assert env.loader is not None
    return env.loader.get_source(env, name)[0].replace("ACCENT", accent)


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _csp(page: str) -> str:
    """No scripts, nothing from elsewhere but https images: only this page's own styles."""
    doc = lxml.html.document_fromstring(page)
    sheets = sorted({el.text or "" for el in doc.iter("style")})
    attributes = sorted({str(v) for v in doc.xpath("//@style")})
    styles = " ".join(["'unsafe-hashes'"] * bool(attributes) + [_digest(s) for s in sheets + attributes])
    return f"default-src 'none'; img-src 'self' https:; style-src {styles}; base-uri 'none'; form-action 'none'"


def _with_csp(template: jinja2.Template, context: dict[str, Any]) -> str:
    """Rendered twice: the policy names the hashes of the styles of the page it is in."""
    return template.render(context, csp=_csp(template.render(context, csp=None)))


class _Issue:
    """The email's theme for one issue, laid out as web pages with links relative to `base`."""

    def __init__(self, project: Project, doc: Document[Issue], slug: str, pictures: dict[str, images.Picture], base: str) -> None:
        settings, issue = project.settings, doc.model
        self.env = env = page_environment(project)

        def shown(image: Image | Logo) -> images.Shown:
            p = pictures.get(image.src)
            if p is None:  # an https:// image, linked as it is
                return images.Shown(image.src, images.display_width(image), None)
            return images.Shown(images.url(base, p), p.display_width, p.display_height)

        env.filters["shown"] = shown
        w = WEB_STRINGS[settings.language]
        events = issue.calendar.events if issue.calendar else []
        self.context: dict[str, Any] = {
            "settings": settings, "issue": issue, "slug": slug, "w": w,
            "t": {**STRINGS[settings.language], "why": w["why"]},
            "subscriber": _Nobody(w["reader"]),
            "unsubscribe_url": None,
            "web_version_url": None,  # the page itself: no "Visa i webbläsare"
            "ics_url": lambda n: urljoin(base, quote(f"{slug}-{n}.ics")),
            "whole_ics": urljoin(base, quote(f"{slug}.ics")) if events else None,
            "preheader_padding": Markup(""),
            "archive_href": urljoin(base, INDEX),
            "feed_href": urljoin(base, FEED),
        }
        email = env.get_template("email.html")
        ctx = email.new_context({**self.context, "css": Markup(_css(env, "email.css", settings.accent_color))})
        # Rendering the whole email sets up its chain of blocks (a project's overrides first),
        # and gives its stylesheets: the email's theme, media queries and dark mode included.
        styles = [el.text or "" for el in lxml.html.document_fromstring("".join(email.root_render_func(ctx))).iter("style")]
        missing = [name for name in BLOCKS if name not in ctx.blocks]
        if missing:
            raise UtskickError(Problem(
                f"the web version is made of the email's blocks {', '.join(BLOCKS)}, and this email.html has no "
                f"block {', '.join(missing)}: start it with {{% extends \"!theme/email.html\" %}} and override blocks",
                project.templates_dir / "email.html"))

        def email_block(name: str, **local: Any) -> Markup:
            return Markup("".join(ctx.blocks[name][0](ctx.derived(local))))

        self.context["email_block"] = email_block
        self.css = "\n".join(styles)
        self.context["content"] = Markup(env.get_template("_web_content.html").render(self.context))

    def page(self) -> str:
        css = self.css + "\n" + _css(self.env, "web.css", self.context["settings"].accent_color)
        return _with_csp(self.env.get_template("web.html"), {**self.context, "css": Markup(css)})

    def fragment(self) -> str:
        """The content with the stylesheet inlined, as the <div> alone."""
        page = inline(self.env.get_template("fragment.html").render({**self.context, "css": Markup(self.css)}))
        div = lxml.html.document_fromstring(page).find(".//div[@class='utskick']")
        assert div is not None, "fragment.html has a <div class=\"utskick\">"
        return str(lxml.html.tostring(div, encoding="unicode")) + "\n"


def _rendering(project: Project, make: Callable[[], str]) -> str:
    """A template's failure as a located error, never a traceback."""
    try:
        return make()
    except UtskickError:
        raise
    except Exception as e:  # a federation's own template can fail in any way
        raise UtskickError(template_problem(e, project)) from None


def _page(project: Project, doc: Document[Issue], rendered: Rendered) -> Page:
    settings, issue, slug = project.settings, doc.model, rendered.slug
    pictures = site_images(project, doc, rendered)
    here = _rendering(project, lambda: _Issue(project, doc, slug, pictures, "").page())
    # Pasted into a CMS elsewhere: its links must reach this folder wherever it is uploaded.
    base = urljoin(settings.web_version, ".") if settings.web_version else ""
    fragment = _rendering(project, lambda: _Issue(project, doc, slug, pictures, base).fragment())
    files = {f"{slug}.html": here.encode(), f"{slug}.fragment.html": fragment.encode()}
    files.update(images.site_files(pictures.values()))
    if issue.calendar and issue.calendar.events:
        # Stamped with the issue's date, not the clock: the same bytes on every publish.
        stamp = datetime.combine(issue.date, Time.min, tzinfo=ZoneInfo(settings.timezone))
        whole, each = calendar.ics(settings, issue.calendar.events, stamp)
        files[f"{slug}.ics"] = whole
        files.update({f"{slug}-{n}.ics": data for n, data in enumerate(each, 1)})
    return Page(feed.Entry(slug, issue.subject, issue.date, issue.preheader, quote(f"{slug}.html"), fragment), files)


def _issue_paths(project: Project, names: Iterable[str]) -> list[Path]:
    names = list(names)
    if names:
        return list(dict.fromkeys(project.issue_path(n) for n in names))
    found = project.issues()
    if not found:
        raise UtskickError(Problem("no issues to publish (*.yaml)", project.issues_dir))
    return found


def site(project: Project, names: Iterable[str] = ()) -> tuple[dict[str, bytes], list[Problem]]:
    """Every file of the site by its path in it, and the warnings; raises with the errors of
    every issue at once, before anything is written."""
    pages: list[Page] = []
    problems = layout_problems(project)
    for path in _issue_paths(project, names):
        try:
            doc = load_issue(path)
            if doc.path.stem in RESERVED:
                raise UtskickError(Problem(f"an issue named {doc.path.stem} would replace the site's {doc.path.stem} file: rename it", doc.path))
            rendered = render(project, doc)
            problems += rendered.problems
            pages.append(_page(project, doc, rendered))
        except UtskickError as e:
            problems += e.problems
    if any(p.is_error for p in problems):
        raise UtskickError(problems)
    files: dict[str, bytes] = {}
    for page in pages:
        files.update(page.files)
    entries = sorted((p.entry for p in pages), key=lambda e: (e.date, e.slug), reverse=True)
    files[INDEX] = _rendering(project, lambda: _archive(project, entries)).encode()
    files[FEED] = feed.atom(project.settings, entries, FEED, INDEX)
    return dict(sorted(files.items())), problems


def _archive(project: Project, entries: list[feed.Entry]) -> str:
    settings = project.settings
    env = page_environment(project)
    years: dict[int, list[feed.Entry]] = {}
    for entry in entries:
        years.setdefault(entry.date.year, []).append(entry)
    css = _css(env, "email.css", settings.accent_color) + "\n" + _css(env, "web.css", settings.accent_color)
    context = {"settings": settings, "w": WEB_STRINGS[settings.language], "years": list(years.items()),
               "feed_href": FEED, "css": Markup(css)}
    return _with_csp(env.get_template(INDEX), context)
