"""utskick publish: the site the emails link to, read back with real parsers (lxml, feedparser,
ElementTree, icalendar) and served over HTTP on 127.0.0.1."""

from __future__ import annotations

import email
import re
import shutil
import stat
import threading
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import feedparser
import icalendar
import lxml.html
import pytest

from conftest import ROOT, Run

SEEDS = sorted((Path(__file__).parent / "seeds").glob("*.yaml"))
WEB_BASE = "https://www.sjolandet.example/nyhetsbrev/"  # the example's web_version up to {slug}
ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture
def examples(project: Path) -> list[str]:
    """The example project with the seed issues beside its own: their slugs."""
    for seed in SEEDS:
        shutil.copyfile(seed, project / "issues" / seed.name)
    return sorted(p.stem for p in (project / "issues").glob("*.yaml"))


def publish(run: Run, *args: str) -> None:
    result = run("publish", *args)
    assert result.exit_code == 0, result.output


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def html_of(path: Path) -> Any:
    return lxml.html.document_fromstring(path.read_text("utf-8"))


def test_every_issue_is_published_with_its_files(project: Path, run: Run, examples: list[str]) -> None:
    (project / "site").mkdir()
    (project / "site" / "index.html").write_text("an old archive", "utf-8")
    (project / "site" / "index.html").chmod(0o600)  # a web server could not read it
    publish(run)
    site = project / "site"
    names = set(files(site))
    for slug in examples:
        assert {f"{slug}.html", f"{slug}.fragment.html"} <= names
    assert {"index.html", "feed.xml", "2026-12.ics", "2026-12-1.ics", "2026-12-3.ics"} <= names
    assert [re.sub(r"-[0-9a-f]{12}\.", "-HASH.", n) for n in names if n.startswith("images/")] == ["images/sjoutsikt-HASH.png"]
    for path in [site, site / "images", *site.rglob("*")]:
        assert stat.S_IMODE(path.stat().st_mode) == (0o755 if path.is_dir() else 0o644), path
    assert not list(site.rglob(".*")), "no temporary file is left behind"


def test_a_page_is_accessible_in_structure_and_has_nothing_personal(project: Path, run: Run, examples: list[str]) -> None:
    publish(run)
    site = project / "site"
    for slug in examples:
        text = (site / f"{slug}.html").read_text("utf-8")
        doc = lxml.html.document_fromstring(text)
        assert doc.get("lang") == "sv"
        csp = doc.find(".//meta[@http-equiv='Content-Security-Policy']")
        assert csp is not None and "default-src 'none'" in csp.get("content")
        assert not doc.findall(".//script") and not doc.xpath("//@*[starts-with(name(), 'on')]")
        body = doc.find("body")
        skip = body.xpath(".//a")[0]
        assert skip.get("href") == "#innehall" and doc.get_element_by_id("innehall").tag == "main"
        assert [len(doc.findall(f".//{tag}")) for tag in ("header", "main", "footer")] == [1, 1, 1]
        levels = [int(h.tag[1]) for h in doc.iter("h1", "h2", "h3", "h4", "h5", "h6")]
        assert levels[0] == 1 and levels.count(1) == 1
        assert all(b <= a + 1 for a, b in zip(levels, levels[1:])), f"{slug}: headings skip a level: {levels}"
        for personal in ("Anna Exempel", "anna.exempel", "token=", "avregistrera", "Avregistrera", "cid:", "%%U"):
            assert personal not in text, f"{slug}: {personal!r} on a public page"
        assert "Visa i webbläsare" not in text
        for link in doc.xpath("//a/@href | //img/@src | //link/@href"):
            if link.startswith(("https://", "mailto:", "tel:", "#")):
                continue
            assert not urlsplit(link).scheme and not link.startswith("/"), f"{slug}: {link} is not relative"
            assert (site / unquote(link)).is_file(), f"{slug}: {link} is not published"


def test_the_images_are_files_beside_the_page(project: Path, run: Run) -> None:
    publish(run, "2026-12")
    site = project / "site"
    src = html_of(site / "2026-12.html").xpath("//img/@src")
    local = [s for s in src if not s.startswith("https://")]
    assert len(local) == 1 and local[0].startswith("images/sjoutsikt-")
    assert (site / local[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_archive_lists_the_issues_newest_first_by_year(project: Path, run: Run) -> None:
    (project / "issues" / "2025-06.yaml").write_text(
        "subject: Sommarnumret 2025\ndate: 2025-06-10\nsections:\n  - articles:\n      - title: Glad sommar\n", "utf-8")
    publish(run)
    doc = html_of(project / "site" / "index.html")
    assert [h.text_content() for h in doc.iter("h2")] == ["2026", "2025"]
    items = doc.xpath("//main//li")
    assert [li.xpath(".//a/@href")[0] for li in items] == ["2026-12.html", "2026-11-intern.html", "2026-10.html", "2025-06.html"]
    first = items[0]
    assert first.xpath(".//a")[0].text_content() == "Nytt från Sjölandet – december 2026"
    assert first.xpath(".//time/@datetime") == ["2026-12-16"] and "16 december 2026" in first.text_content()
    assert "Förbundsdirektören ser tillbaka på året" in first.text_content()
    assert doc.find(".//main").get("id") == "innehall"


def test_the_feed_is_atom_with_full_content_and_stable_ids(project: Path, run: Run) -> None:
    publish(run)
    raw = (project / "site" / "feed.xml").read_bytes()
    root = ET.fromstring(raw)
    assert root.tag == f"{ATOM}feed"
    parsed = feedparser.parse(raw)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    assert parsed.feed.title == "Sjölandets kommunalförbund"
    entries = parsed.entries
    assert [e.link for e in entries] == ["2026-12.html", "2026-11-intern.html", "2026-10.html"]
    assert len({e.id for e in entries}) == 3 and all(e.id.startswith("urn:uuid:") for e in entries)
    december = entries[0]
    assert december.title == "Nytt från Sjölandet – december 2026"
    assert december.updated_parsed[:3] == (2026, 12, 15)  # midnight in Stockholm is 23:00 UTC
    assert "Förbundsdirektören" in december.summary
    content = december.content[0]
    assert content.type == "text/html" and "Vikariepool ska täcka vinterns sjukfrånvaro" in content.value
    assert f"{WEB_BASE}images/sjoutsikt-" in content.value
    # A corrected subject keeps the id, so readers see an update rather than a new entry.
    path = project / "issues" / "2026-12.yaml"
    path.write_text(path.read_text("utf-8").replace("subject: Nytt från Sjölandet – december 2026", "subject: Rättat ämne"), "utf-8")
    publish(run)
    again = feedparser.parse((project / "site" / "feed.xml").read_bytes()).entries[0]
    assert again.title == "Rättat ämne" and again.id == december.id


def test_the_fragment_is_the_content_alone_with_links_that_work_elsewhere(project: Path, run: Run) -> None:
    publish(run, "2026-12")
    text = (project / "site" / "2026-12.fragment.html").read_text("utf-8")
    assert text.startswith('<div class="utskick" lang="sv" dir="ltr"')
    fragment = lxml.html.fragment_fromstring(text)
    assert not fragment.xpath("//h1 | //header | //footer | //style | //script")
    assert fragment.xpath("//h2")[0].text_content() == "Ett år av gemensamma steg"
    assert "style" in fragment.xpath("//h2")[0].attrib, "the stylesheet is inlined"
    assert f"{WEB_BASE}2026-12-1.ics" in fragment.xpath("//a/@href")
    assert all(s.startswith("https://") for s in fragment.xpath("//img/@src"))


@pytest.fixture
def http_site(project: Path) -> Iterator[str]:
    """The site folder served on 127.0.0.1 as a web server would serve the upload."""
    (project / "site").mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(project / "site"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()


def email_links(message: EmailMessage) -> list[str]:
    """Every 'Visa i webbläsare' and 'Lägg till i kalender' link of the HTML and the text part."""
    html_part, text_part = message.get_body(("html",)), message.get_body(("plain",))
    assert html_part is not None and text_part is not None
    doc = lxml.html.document_fromstring(html_part.get_content())
    links = [a.get("href") for a in doc.iter("a") if a.text_content().startswith(("Visa i webbläsare", "Lägg till i kalender"))]
    text = text_part.get_content()
    links += re.findall(r"(?:Visa i webbläsare|Lägg till i kalender):\s+(\S+)", text)
    return links


def test_every_link_in_the_emails_resolves_to_a_published_file(project: Path, run: Run, examples: list[str], http_site: str) -> None:
    publish(run)
    checked = 0
    for slug in examples:
        result = run("build", slug)
        assert result.exit_code == 0, result.output
        message = email.message_from_bytes((project / "build" / f"{slug}.eml").read_bytes(), policy=policy.default)
        assert isinstance(message, EmailMessage)
        links = email_links(message)
        assert f"{WEB_BASE}{slug}.html" in links
        for link in links:
            assert link.startswith(WEB_BASE), link
            with urllib.request.urlopen(http_site + link.removeprefix(WEB_BASE), timeout=5) as response:
                assert response.status == 200
                body = response.read()
            if link.endswith(".ics"):
                event = icalendar.Calendar.from_ical(body).walk("VEVENT")[0]
                assert "UID" in event and event.get("DTSTAMP") is not None
            checked += 1
    assert checked >= len(examples) + 2 * 3, "the example's three events are linked from HTML and text"


def test_the_published_events_are_the_emails_events(project: Path, run: Run) -> None:
    publish(run, "2026-12")
    assert run("build", "2026-12").exit_code == 0
    for name in ("2026-12.ics", "2026-12-2.ics"):
        def uids(path: Path) -> list[str]:
            return [str(e["UID"]) for e in icalendar.Calendar.from_ical(path.read_bytes()).walk("VEVENT")]
        assert uids(project / "site" / name) == uids(project / "build" / name)


def test_publishing_twice_gives_the_same_bytes(project: Path, run: Run, examples: list[str]) -> None:
    publish(run, "-o", "one")
    publish(run, "-o", "two")
    first, second = files(project / "one"), files(project / "two")
    assert first == second and len(first) > len(examples) * 2
    publish(run, "-o", "one")
    assert files(project / "one") == first


def test_a_named_issue_alone(project: Path, run: Run) -> None:
    publish(run, "2026-10", "-o", "out")
    names = set(files(project / "out"))
    assert names == {"2026-10.html", "2026-10.fragment.html", "index.html", "feed.xml"}


def test_an_unknown_issue_is_a_located_error_and_nothing_is_written(project: Path, run: Run) -> None:
    result = run("publish", "2026-12", "nosuch")
    assert result.exit_code == 1
    assert "issues/nosuch.yaml: error: file not found" in result.output
    assert "Traceback" not in result.output
    assert not (project / "site").exists()


def test_a_broken_issue_names_its_line_and_stops_the_whole_site(project: Path, run: Run) -> None:
    (project / "issues" / "2027-01.yaml").write_text("subject: Januari\ndate: 2027-01-15\nsectoins: []\n", "utf-8")
    result = run("publish")
    assert result.exit_code == 1
    assert re.search(r"issues/2027-01\.yaml:3:1: error: .*sectoins", result.output), result.output
    assert not (project / "site").exists()


def test_an_unwritable_output_folder_is_a_located_error(project: Path, run: Run) -> None:
    (project / "afile").write_text("not a folder", "utf-8")
    result = run("publish", "2026-10", "-o", "afile/site")
    assert result.exit_code == 1
    # The same located error as `build` gives: both write through `files.write_tree`.
    assert re.search(r"(^|\s)afile: error: is a file, not a folder", result.output), result.output
    assert "Traceback" not in result.output


def test_an_issue_cannot_take_the_archives_name(project: Path, run: Run) -> None:
    shutil.copyfile(project / "issues" / "2026-10.yaml", project / "issues" / "index.yaml")
    result = run("publish")
    assert result.exit_code == 1 and "issues/index.yaml: error: an issue named index" in result.output


def test_personal_template_fields_get_neutral_text(project: Path, run: Run) -> None:
    (project / "templates").mkdir()
    (project / "templates" / "email.html").write_text(
        '{% extends "!theme/email.html" %}\n{% block intro %}<tr><td class="block"><p>Hej {{ subscriber.name }} i '
        '{{ subscriber.kommun }}!</p></td></tr>{{ super() }}{% endblock %}\n', "utf-8")
    publish(run, "2026-12")
    text = html_of(project / "site" / "2026-12.html").text_content()
    assert "Hej läsare i !" in text and "Anna" not in text and "Exempelby" not in text
    assert run("build", "2026-12").exit_code == 0
    assert "Hej Anna Exempel i Exempelby!" in (project / "build" / "2026-12.html").read_text("utf-8")


def test_a_projects_block_overrides_show_on_the_web_too(project: Path, run: Run) -> None:
    (project / "templates").mkdir()
    (project / "templates" / "email.html").write_text(
        '{% extends "!theme/email.html" %}\n{% block article %}<tr><td class="block"><h3>Egen: {{ article.title }} '
        '({{ loop.index }})</h3></td></tr>{% endblock %}\n', "utf-8")
    publish(run, "2026-12")
    headings = [h.text_content() for h in html_of(project / "site" / "2026-12.html").iter("h3")]
    assert "Egen: Gemensam planering ska ge fler gymnasieplatser (1)" in headings
    assert "Egen: Nytt stöd för unga som varken jobbar eller studerar (2)" in headings


def test_english_and_without_web_version(project: Path, run: Run) -> None:
    settings = project / "newsletter.yaml"
    text = settings.read_text("utf-8").replace("language: sv", "language: en")
    settings.write_text(re.sub(r"web_version: .*\n", "", text), "utf-8")
    publish(run, "2026-12")
    site = project / "site"
    page = html_of(site / "2026-12.html")
    assert page.get("lang") == "en" and page.xpath("//a")[0].text_content() == "Skip to content"
    assert "This is a newsletter from Sjölandets kommunalförbund." in page.text_content()
    assert "Add to calendar" in page.text_content()
    assert html_of(site / "index.html").findtext(".//h1") == "Newsletter from Sjölandets kommunalförbund"
    fragment = lxml.html.fragment_fromstring((site / "2026-12.fragment.html").read_text("utf-8"))
    assert "2026-12-1.ics" in fragment.xpath("//a/@href"), "without web_version the fragment's links are relative"
    assert feedparser.parse((site / "feed.xml").read_bytes()).feed.language == "en"


def test_an_email_template_without_the_blocks_is_a_located_error(project: Path, run: Run) -> None:
    (project / "templates").mkdir()
    (project / "templates" / "email.html").write_text("<html><body>{{ issue.subject }}</body></html>\n", "utf-8")
    result = run("publish", "2026-10")
    assert result.exit_code == 1
    assert "templates/email.html: error: the web version is made of the email's blocks" in result.output


def test_a_broken_web_template_names_its_line(project: Path, run: Run) -> None:
    (project / "templates").mkdir()
    (project / "templates" / "web.html").write_text('{% extends "!theme/web.html" %}\n{% block footer %}\n{{ nosuch.x }}\n{% endblock %}\n', "utf-8")
    result = run("publish", "2026-10")
    assert result.exit_code == 1
    assert re.search(r"templates/web\.html:3: error: template: .*nosuch", result.output), result.output


@pytest.mark.parametrize("pattern, warned", [
    ("https://www.sjolandet.example/nyhetsbrev/{slug}.html", False),
    ("https://www.sjolandet.example/{slug}.html", False),
    ("https://www.sjolandet.example/nyhetsbrev/{slug}/", True),
    ("https://www.sjolandet.example/nyhetsbrev/{slug}/index.html", True),
    ("https://www.sjolandet.example/nyhetsbrev/nr-{slug}.html", True),
    ("https://www.sjolandet.example/visa?nr={slug}", True),
])
def test_check_warns_when_web_version_cannot_match_the_site(project: Path, run: Run, pattern: str, warned: bool) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(re.sub(r"web_version: .*", f"web_version: {pattern}", settings.read_text("utf-8")), "utf-8")
    result = run("check", "2026-12")
    assert result.exit_code == 0, result.output
    published = run("publish", "2026-10")
    assert published.exit_code == 0 and ("does not end in /{slug}.html" in published.output) == warned
    line = next(n for n, text in enumerate(settings.read_text("utf-8").splitlines(), 1) if text.startswith("web_version:"))
    warning = re.search(rf"newsletter\.yaml:{line}:\d+: warning: web_version: .*does not end in /{{slug}}\.html", result.output)
    assert bool(warning) == warned, result.output


def test_readme_and_help_agree(run: Run) -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    section = readme.split("## Publishing (utskick publish)\n", 1)[1].split("\n## ", 1)[0]
    assert "utskick publish [ISSUE]... [-o DIR]" in section
    help_text = run("publish", "--help").output
    assert "[ISSUE]..." in help_text and "-o, --output" in help_text
    for name in ("SLUG.html", "SLUG.fragment.html", "index.html", "feed.xml", "images/", "web_version"):
        assert name in " ".join(help_text.split()), name
        assert name.replace("SLUG", "<slug>") in section, name
