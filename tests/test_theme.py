"""The default theme: blocks a project overrides one at a time, and markup that holds in clients
that drop <style>, <html>, <body> or aria-label (the browser half is test_clients_browser)."""

from __future__ import annotations

import re
from pathlib import Path

import lxml.html
import pytest

from utskick.load import load_issue
from utskick.project import load_project
from utskick.markdown import to_html
from utskick.message import personalise
from utskick.render import render
from utskick.signer import sample
from utskick.subscribers import SAMPLE

from conftest import ROOT

SAMPLE_TOKEN = sample().token(SAMPLE.key)

MSO = re.compile(r"<!--\[if mso\]>.*?<!\[endif\]-->", re.S)


def built(project: Path, slug: str = "2026-12") -> tuple[str, str]:
    """(html, text) of the issue as the sample subscriber gets it."""
    proj = load_project(project / "newsletter.yaml")
    message = personalise(render(proj, load_issue(project / "issues" / f"{slug}.yaml")), SAMPLE, sample())
    return message.html, message.text


def theme_file(project: Path, name: str, text: str) -> None:
    (project / "templates").mkdir(exist_ok=True)
    (project / "templates" / name).write_text(text, "utf-8")


def changed(before: str, after: str) -> tuple[int, int, str]:
    """The one stretch where two texts differ: where it starts and ends in `before`, and what
    `after` has there instead."""
    start = 0
    while start < min(len(before), len(after)) and before[start] == after[start]:
        start += 1
    end = 0
    while end < min(len(before), len(after)) - start and before[-1 - end] == after[-1 - end]:
        end += 1
    return start, len(before) - end, after[start:len(after) - end]


def test_overriding_the_html_footer_changes_only_the_footer(project: Path) -> None:
    default, default_text = built(project)
    theme_file(project, "email.html", '{% extends "!theme/email.html" %}\n'
               '{% block footer %}<tr><td class="footer"><p>Egen sidfot</p>'
               '<p><a href="{{ unsubscribe_url }}">{{ t.unsubscribe }}</a></p></td></tr>{% endblock %}\n')
    html, text = built(project)
    start, end, new = changed(default, html)
    footer_start = default.rindex("<tr>", 0, default.index('<td class="footer"'))
    footer_end = default.index("</table>", footer_start)  # the footer is the container's last row
    assert "Egen sidfot" in new and "Egen sidfot" not in default
    assert footer_start <= start < end <= footer_end, f"changed outside the footer: {default[start:end]!r}"
    assert text == default_text  # email.txt is still the default theme's


def test_overriding_the_text_footer_changes_only_the_footer(project: Path) -> None:
    default_html, default = built(project)
    theme_file(project, "email.txt", '{% extends "!theme/email.txt" %}\n'
               "{% block footer %}\n--\nEgen sidfot\n{{ unsubscribe_url }}\n{% endblock %}\n")
    html, text = built(project)
    start, _, new = changed(default, text)
    assert start >= default.rindex("\n--\n")
    assert "Egen sidfot" in new and text.endswith(f"avregistrera?token={SAMPLE_TOKEN}\n")
    assert html == default_html


def test_scoped_blocks_see_the_loop_and_call_super(project: Path) -> None:
    default, _ = built(project)
    theme_file(project, "email.html", '{% extends "!theme/email.html" %}\n'
               "{% block article %}{{ super() }}{% if loop.last %}"
               "<tr><td>SLUT {{ section.title }} {{ loop.length }}</td></tr>{% endif %}{% endblock %}\n")
    html, _ = built(project)
    added = re.findall(r"<tr><td[^>]*>SLUT ([^<]*)</td></tr>\n?", html)
    assert added == ["Utbildning och arbetsmarknad 2", "Social välfärd och hälsa 2", "Samhällsbyggnad och miljö 1"]
    assert re.sub(r"<tr><td[^>]*>SLUT [^<]*</td></tr>\n?", "", html) == default


def test_project_partial_still_replaces_the_default_file_by_file(project: Path) -> None:
    theme_file(project, "_calendar.txt", "EGET KALENDARIUM\n")
    _, text = built(project)
    assert "EGET KALENDARIUM" in text and "KALENDARIUM\n===" not in text


def test_missing_theme_template_is_located(project: Path) -> None:
    theme_file(project, "email.txt", '{% extends "!theme/finns-inte.txt" %}\n')
    proj = load_project(project / "newsletter.yaml")
    with pytest.raises(Exception, match="template '!theme/finns-inte.txt' not found"):
        render(proj, load_issue(project / "issues" / "2026-12.yaml"))


@pytest.mark.parametrize("slug", ["2026-12", "2026-10", "2026-11-intern"])
def test_fluid_container_fixed_width_only_for_outlook(project: Path, slug: str) -> None:
    html, _ = built(project, slug)
    assert re.search(r'<table role="presentation" width="600"', html)  # Outlook's, inside [if mso]
    outside = MSO.sub("", html)
    assert 'width="600"' not in outside and not re.search(r"(?<!max-)width:\s*600px", outside)
    container = lxml.html.document_fromstring(html).find_class("container")[0]
    assert container.get("width") == "100%"
    assert re.search(r"(?<!-)width:\s*100%", container.get("style", ""))
    assert re.search(r"max-width:\s*600px", container.get("style", ""))


@pytest.mark.parametrize("language", ["sv", "en"])
def test_language_and_direction_inside_body(project: Path, language: str) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace("language: sv", f"language: {language}"), "utf-8")
    body = lxml.html.document_fromstring(built(project)[0]).body
    (outermost,) = [child for child in body if isinstance(child.tag, str)]
    assert (outermost.get("lang"), outermost.get("dir")) == (language, "ltr")


def test_calendar_date_padding_is_one_shorthand(project: Path) -> None:
    doc = lxml.html.document_fromstring(built(project)[0])
    cells = doc.find_class("cal-when")
    assert cells
    for td in cells:
        padding = [d.strip() for d in td.get("style", "").split(";") if d.strip().startswith("padding")]
        assert padding == ["padding:6px 12px 6px 0"], padding


def test_markdown_table_headers_are_column_headers() -> None:
    html = to_html("| Parti | Mandat |\n|---|---:|\n| A | 12 |\n")
    th = lxml.html.fragment_fromstring(html).findall(".//th")
    assert [(h.text, h.get("scope")) for h in th] == [("Parti", "col"), ("Mandat", "col")]


def test_text_footer_has_website_and_plain_mailto(project: Path) -> None:
    footer = built(project)[1].rsplit("\n--\n", 1)[1]
    assert "Webbplats: https://www.sjolandet.example\n" in footer
    assert "mailto:avregistrera@sjolandet.example?subject=Avregistrera\n" in footer
    assert f"https://www.sjolandet.example/avregistrera?token={SAMPLE_TOKEN}" in footer


def test_text_footer_with_only_a_mailto(project: Path) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace(
        "  url: https://www.sjolandet.example/avregistrera?token={token}\n", ""), "utf-8")
    footer = built(project)[1].rsplit("\n--\n", 1)[1]
    assert "Avregistrera: mailto:avregistrera@sjolandet.example?subject=Avregistrera\n" in footer
    assert "token" not in footer


def test_the_readme_footer_examples_work(project: Path) -> None:
    theme = (ROOT / "README.md").read_text("utf-8").split("## Theme\n", 1)[1].split("\n## ", 1)[0]
    html_example, text_example = re.findall(r"```(?:html)?\n(.*?)```", theme, re.S)
    default_html, default_text = built(project)
    theme_file(project, "email.html", html_example)
    theme_file(project, "email.txt", text_example)
    html, text = built(project)
    start, _, new = changed(default_html, html)
    assert start > default_html.index("Kalendarium") and "Box 123 · 123 45 Storvik" in new
    assert text.startswith(default_text[:default_text.rindex("\n--\n")])
    assert text.endswith(f"Avregistrera: https://www.sjolandet.example/avregistrera?token={SAMPLE_TOKEN}\n")
