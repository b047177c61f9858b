"""The rendered email, parsed: structure, accessibility, personalisation and the MIME message."""

from __future__ import annotations

import email
import io
import re
from email import policy
from email.message import EmailMessage
from pathlib import Path

import lxml.html
import PIL.Image
import pytest
from conftest import Run, body

from utskick.load import load_issue
from utskick.project import load_project
from utskick.message import MessageTemplate
from utskick.message import personalise
from utskick.render import Rendered, contrast, render
from utskick.signer import Signer
from utskick.subscribers import SAMPLE, Subscriber

SIGNER = Signer(b"render-test-key-0123456789")


def rendered(project: Path, slug: str = "2026-12") -> Rendered:
    proj = load_project(project / "newsletter.yaml")
    return render(proj, load_issue(project / "issues" / f"{slug}.yaml"))


def page(r: Rendered, sub: Subscriber = SAMPLE) -> lxml.html.HtmlElement:
    return lxml.html.document_fromstring(personalise(r, sub, SIGNER).html)


@pytest.mark.parametrize("slug", ["2026-12", "2026-10", "2026-11-intern"])
def test_accessible_structure(project: Path, slug: str) -> None:
    doc = page(rendered(project, slug))
    assert doc.get("lang") == "sv"
    assert doc.findtext(".//title")
    assert doc.xpath("//meta[@name='viewport']")
    assert doc.xpath("//meta[@name='color-scheme']")
    levels = [int(h.tag[1]) for h in doc.iter("h1", "h2", "h3", "h4", "h5", "h6")]
    assert levels[0] == 1 and levels.count(1) == 1
    for before, after in zip(levels, levels[1:]):
        assert after <= before + 1, f"heading level skipped: {levels}"
    for table in doc.iter("table"):
        assert table.get("role") == "presentation" or table.get("class") == "data"
    for img in doc.iter("img"):
        assert img.get("alt") and img.get("width")


def test_untitled_section_articles_are_h2(project: Path) -> None:
    doc = page(rendered(project, "2026-10"))
    assert [h.tag for h in doc.iter("h1", "h2", "h3")][:3] == ["h1", "h2", "h2"]


def visible_text(a: lxml.html.HtmlElement) -> str:
    """A link's text without its hidden rest (the part only screen readers get)."""
    hidden = "".join(s.text_content() for s in a.find_class("hidden-text"))
    return str(a.text_content().replace(hidden, "", 1) if hidden else a.text_content())


def test_read_more_links_name_their_article(project: Path) -> None:
    doc = page(rendered(project))
    generic = [a for a in doc.iter("a") if visible_text(a).strip(" →").strip() == "Läs mer"]
    assert generic
    for a in generic:
        # Named by text inside the link, which webmail keeps (Yahoo drops aria-label).
        assert a.get("aria-label") is None
        assert a.text_content().startswith("Läs mer om ")
    assert any(a.text_content() == "Läs mer om Gemensam planering ska ge fler gymnasieplatser →" for a in generic)


def test_css_inlined_and_media_queries_kept(project: Path) -> None:
    html = personalise(rendered(project), SAMPLE, SIGNER).html
    doc = lxml.html.document_fromstring(html)
    h1 = next(doc.iter("h1"))
    assert "font-size" in (h1.get("style") or "")
    assert "@media only screen and (max-width: 620px)" in html
    assert "!important" in html  # premailer must not strip it inside media queries
    assert "#00587a" in html
    assert "<!--[if mso]>" in html


def test_footer_has_unsubscribe_and_web_version(project: Path) -> None:
    sub = Subscriber("x@example.se", "x@example.se", "X")
    doc = page(rendered(project), sub)
    hrefs = {a.text_content().strip(): a.get("href") for a in doc.iter("a")}
    assert hrefs["Avregistrera"] == f"https://www.sjolandet.example/avregistrera?token={SIGNER.token('x@example.se')}"
    assert hrefs["Visa i webbläsare"] == "https://www.sjolandet.example/nyhetsbrev/2026-12.html"


def test_text_part_wrapped_with_lists_links_and_calendar(project: Path) -> None:
    text = personalise(rendered(project), SAMPLE, SIGNER).text
    assert all(len(line) <= 78 for line in text.splitlines())
    assert "- Start: 1 februari 2027" in text
    assert "Läs mer: https://www.sjolandet.example/nyheter/gymnasieplatser" in text
    assert "KALENDARIUM" in text
    assert re.search(r"^tors 14 jan\., 09:00–12:00: Styrelsemöte", text, re.M)
    assert "16 december 2026" in text
    assert "<" not in text.replace("<https", "")


def test_personalise_fills_markers_escaped_in_html_plain_in_text(project: Path, tmp_path: Path) -> None:
    (project / "templates").mkdir()
    original = (Path(__file__).parent.parent / "templates" / "email.html").read_text("utf-8")
    (project / "templates" / "email.html").write_text(
        original.replace("<h1>", "<p class='greet'>Hej {{ subscriber.name }} i {{ subscriber.kommun }}!</p><h1>"), "utf-8")
    r = rendered(project)
    assert r.fields == {"name", "kommun"}
    sub = Subscriber("a@b.se", "a@b.se", "Åsa <Öberg> & co", {"kommun": "Trollhättan"})
    doc = page(r, sub)
    assert doc.xpath("string(//p[@class='greet'])") == "Hej Åsa <Öberg> & co i Trollhättan!"
    assert "&lt;Öberg&gt; &amp; co" in personalise(r, sub, SIGNER).html
    assert "%%U" not in personalise(r, sub, SIGNER).html


def test_project_template_overrides_default_by_name(project: Path) -> None:
    (project / "templates").mkdir()
    (project / "templates" / "email.txt").write_text("EGEN MALL {{ issue.subject }}\n", "utf-8")
    r = rendered(project)
    assert personalise(r, SAMPLE, SIGNER).text == "EGEN MALL Nytt från Sjölandet – december 2026\n"
    assert "<h1" in personalise(r, SAMPLE, SIGNER).html  # html still from the default theme


def test_raw_html_and_template_syntax_in_content_are_text(project: Path) -> None:
    path = project / "issues" / "2026-10.yaml"
    text = path.read_text("utf-8").replace(
        "Planen beskriver", "<script>alert(1)</script> {{ subscriber.email }} <b>fet</b> Planen beskriver")
    path.write_text(text, "utf-8")
    html = personalise(rendered(project, "2026-10"), SAMPLE, SIGNER).html
    assert "<script>" not in html and "<b>fet</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; {{ subscriber.email }} &lt;b&gt;fet&lt;/b&gt;" in html


def test_english_strings_and_dates(project: Path) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace("language: sv", "language: en"), "utf-8")
    r = rendered(project)
    doc = page(r)
    assert doc.get("lang") == "en"
    assert "16 December 2026" in doc.text_content()
    assert "View in browser" in doc.text_content() and "Unsubscribe" in doc.text_content()
    assert any(a.text_content().startswith("Read more about ") for a in doc.iter("a"))


def test_eml_structure_with_embedded_image(project: Path) -> None:
    r = rendered(project)
    raw = MessageTemplate.of(r, SIGNER).message_for(Subscriber("petter@ekeby.example", "petter@ekeby.example", "Petter Åkesson"))
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg["To"].addresses[0].display_name == "Petter Åkesson"
    assert "=?utf-8?" in raw.decode("ascii").split("\r\n\r\n")[0]  # RFC 2047 on the wire
    assert msg["From"].addresses[0].addr_spec == "nyhetsbrev@sjolandet.example"
    assert msg["Reply-To"] == "kansliet@sjolandet.example"
    assert msg["Message-ID"].endswith("@sjolandet.example>")
    assert msg["MIME-Version"] == "1.0" and msg["Date"]
    related = next(p for p in msg.walk() if p.get_content_type() == "multipart/related")
    kinds = [p.get_content_type() for p in related.iter_parts()]
    assert kinds[0] == "multipart/alternative" and kinds[1] == "image/png"
    image = list(related.iter_parts())[1]
    html = body(msg, "html")
    assert f'src="cid:{image["Content-ID"].strip("<>")}"' in html
    sent = PIL.Image.open(io.BytesIO(image.get_content()))  # the pipeline's copy, not the file itself
    assert sent.format == "PNG" and sent.size == PIL.Image.open(project / "issues" / "bilder" / "sjoutsikt.png").size
    assert "Läs mer" in body(msg, "plain")


def test_plain_issue_without_images_is_alternative_only(project: Path) -> None:
    msg = email.message_from_bytes(MessageTemplate.of(rendered(project, "2026-10"), SIGNER).message_for(SAMPLE), policy=policy.default)
    assert msg.get_content_type() == "multipart/alternative"


def test_contrast_ratio() -> None:
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert contrast("#00587a", "#ffffff") > 4.5
    assert contrast("#ffcc00", "#ffffff") < 4.5


def test_build_writes_files_for_sample_only(project: Path, run: Run) -> None:
    result = run("build", "2026-12", "-o", "ut")
    assert result.exit_code == 0, result.output
    written = {p.name for p in (project / "ut").iterdir()}
    assert {"2026-12.html", "2026-12.txt", "2026-12.eml"} <= written
    everything = "".join((project / "ut" / n).read_text("utf-8", "replace") for n in written)
    for member in (project / "subscribers" / "medlemmar.csv").read_text("utf-8").splitlines()[1:]:
        assert member.split(",")[0] not in everything
    assert not list((project / "ut").glob("*.tmp"))


def test_gmail_clip_warning(project: Path, run: Run) -> None:
    path = project / "issues" / "2026-10.yaml"
    long_body = "        body: |\n" + "".join(f"          Stycke {i} med lite text som upprepas. " * 8 + "\n\n" for i in range(300))
    path.write_text(path.read_text("utf-8").replace(
        "        body: Planen beskriver vad delregionen vill satsa på fram till 2030.\n", long_body), "utf-8")
    result = run("check", "2026-10")
    assert result.exit_code == 0
    assert re.search(r"2026-10.yaml: warning: the HTML is \d+ KB; Gmail clips", result.stderr), result.stderr


def _headers(raw: bytes) -> list[str]:
    return raw.split(b"\r\n\r\n", 1)[0].decode("ascii").split("\r\n")


def test_headers_folded_encoded_and_parsable(project: Path) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace(
        "from: Sjölandets kommunalförbund <nyhetsbrev@sjolandet.example>",
        'from: \'"Sjölandet, kansliet" <nyhetsbrev@sjolandet.example>\'').replace(
        "avregistrera@sjolandet.example", "avregistrera@åre.example"), "utf-8")
    issue = project / "issues" / "2026-10.yaml"
    long_subject = "Nyheter " * 130
    issue.write_text(issue.read_text("utf-8").replace(
        "subject: Nyhetsbrev från Sjölandets kommunalförbund 8 oktober 2026", f"subject: {long_subject.strip()}"), "utf-8")
    raw = MessageTemplate.of(rendered(project, "2026-10"), SIGNER).message_for(SAMPLE)
    lines = _headers(raw)
    assert max(len(line) for line in lines) <= 998
    # 78 where a line can be folded (RFC 5322 2.1.1); only one unbreakable word, such as the
    # List-Unsubscribe mailto with its token, may stand longer on a line of its own.
    long = [line for line in lines if len(line) > 78]
    assert all(" " not in line.strip() for line in long), long
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == long_subject.strip()
    assert msg["From"].addresses[0].display_name == "Sjölandet, kansliet"
    assert msg["From"].addresses[0].addr_spec == "nyhetsbrev@sjolandet.example"
    assert msg["List-Id"].endswith("<nyhetsbrev.sjolandet.example>")
    assert "mailto:avregistrera@xn--re-xia.example" in msg["List-Unsubscribe"]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_unquoted_comma_in_sender_name_is_an_error(project: Path, run: Run) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace(
        "from: Sjölandets kommunalförbund <", "from: Sjölandet, kansliet <"), "utf-8")
    result = run("check", "2026-10")
    assert result.exit_code == 1
    assert "newsletter.yaml:4:7: error: from: 'Sjölandet, kansliet <nyhetsbrev@sjolandet.example>' is more than one address" in result.stderr


def test_non_ascii_before_at_in_sender_is_an_error(project: Path, run: Run) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace("reply_to: kansliet@", "reply_to: björn@"), "utf-8")
    result = run("build", "2026-10")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "newsletter.yaml:5:11: error: reply_to:" in result.stderr


@pytest.mark.parametrize("template,expected", [
    ("{{ subscriber.get('x') }}\n", r"templates/email.txt:1: error: template: TypeError"),
    ("Hej\n{{ foo.bar }}\n", r"templates/email.txt:2: error: template: 'foo' is undefined"),
    ("{% extends 'nope.txt' %}\n", r"templates/email.txt:1: error: template: template 'nope.txt' not found"),
    ("{% if %}\n", r"templates/email.txt:1: error: template: "),
    ("Hej {{ subscriber.name|upper }}\n", r"error: a template changes a subscriber field"),
])
def test_broken_project_template_is_located(project: Path, run: Run, template: str, expected: str) -> None:
    (project / "templates").mkdir()
    (project / "templates" / "email.txt").write_text(template, "utf-8")
    result = run("build", "2026-10")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert re.search(expected, result.stderr), result.stderr
    assert not (project / "build").exists()


def test_markdown_headings_in_bodies_never_skip_levels(project: Path) -> None:
    issue = project / "issues" / "2026-12.yaml"
    issue.write_text(issue.read_text("utf-8").replace(
        "    Tack för i år, och god jul!", "    # Stor rubrik\n\n    #### Liten rubrik\n\n    Tack för i år, och god jul!"), "utf-8")
    doc = page(rendered(project))
    levels = [int(h.tag[1]) for h in doc.iter("h1", "h2", "h3", "h4", "h5", "h6")]
    assert levels[:5] == [1, 2, 3, 4, 2]  # title, editorial title, '#' -> h3, '####' -> h4, section
    for before, after in zip(levels, levels[1:]):
        assert after <= before + 1


def test_small_images_keep_their_width_on_phones(project: Path) -> None:
    issue = project / "issues" / "2026-12.yaml"
    issue.write_text(issue.read_text("utf-8").replace("    width: 552\n    credit", "    width: 120\n    credit"), "utf-8")
    doc = page(rendered(project))
    small, wide = list(doc.iter("img"))[:2]
    assert small.get("width") == "120" and small.get("class") is None
    assert wide.get("class") == "full"
