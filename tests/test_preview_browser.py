"""The preview page in a real headless Chromium: views, live reload, errors; screenshots saved.

Screenshots go to test-artifacts/ at the repository root (git-ignored) for a human to look at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from conftest import ROOT, Run
from browser import axe_violations, launch
from preview_support import ISSUE, SUBJECT, edit, previewing

ARTIFACTS = ROOT / "test-artifacts"
WAIT_MS = 10_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch()


@pytest.fixture
def page(browser: Any, project: Path) -> Iterator[Any]:
    """The preview page of the project's December issue at 1280×860; only loopback is reachable."""
    with previewing(project) as (_, server):
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        context.route(re.compile(r"^(?!http://127\.0\.0\.1:)"), lambda route: route.abort())
        tab = context.new_page()
        tab.set_default_timeout(WAIT_MS)
        tab.goto(server.url)
        expect(tab.locator("#live")).to_have_text("live")
        expect(tab.frame_locator("#frame").locator("h1")).to_have_text("Nytt från Sjölandet")
        yield tab
        context.close()


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"preview-{name}.png"))


def email_width(page: Any) -> tuple[int, int]:
    """(scrollWidth, clientWidth) of the email document inside the iframe."""
    sizes = page.frame_locator("#frame").locator("html").evaluate(
        "e => [e.scrollWidth, e.clientWidth]")
    return int(sizes[0]), int(sizes[1])


def test_desktop_shows_inbox_line_size_and_email(page: Any) -> None:
    expect(page.locator("#subject")).to_have_text(SUBJECT)
    expect(page.locator("#sender")).to_have_text("Sjölandets kommunalförbund")
    expect(page.locator("#snippet")).to_contain_text("Förbundsdirektören ser tillbaka")
    expect(page.locator("#size")).to_have_text(re.compile(r"^\d+ KB$"))
    expect(page.locator("#problems")).to_contain_text("No problems found")
    assert page.locator("#frame").bounding_box()["width"] >= 600
    assert page.frame_locator("#frame").locator("img").first.evaluate("i => i.naturalWidth") > 0  # the cid: image
    screenshot(page, "desktop")


def test_the_preview_page_has_no_wcag_violations(page: Any) -> None:
    assert axe_violations(page) == []


def test_phone_view_has_no_horizontal_scroll(page: Any) -> None:
    page.get_by_role("button", name="Phone").click()
    expect(page.locator("#frame")).to_have_js_property("offsetWidth", 375)
    scroll, client = email_width(page)
    assert client <= 375
    assert scroll <= client, f"the email is {scroll} px wide in a {client} px phone"
    screenshot(page, "phone")


def test_plain_text_view(page: Any) -> None:
    page.get_by_role("button", name="Plain text").click()
    expect(page.locator("#text")).to_be_visible()
    expect(page.locator("#text")).to_contain_text("Ett år av gemensamma steg")
    expect(page.locator("#frame")).to_be_hidden()
    assert page.url.endswith("#text")
    screenshot(page, "text")


def test_yaml_edit_shows_without_manual_reload(page: Any, project: Path) -> None:
    page.evaluate("window.notReloaded = true")
    edit(project / "issues" / f"{ISSUE}.yaml", SUBJECT, "Nytt från Sjölandet – jul 2026")
    edit(project / "issues" / f"{ISSUE}.yaml", "Ett år av gemensamma steg", "Ett år av nya steg")
    expect(page.locator("#subject")).to_have_text("Nytt från Sjölandet – jul 2026")
    expect(page.frame_locator("#frame").locator("h2").first).to_have_text("Ett år av nya steg")
    assert page.evaluate("window.notReloaded") is True


def test_broken_edit_shows_located_error_and_good_save_recovers(page: Any, project: Path, run: Run) -> None:
    issue = project / "issues" / f"{ISSUE}.yaml"
    edit(issue, "date: 2026-12-16", "date: 2026-12-16\n  oops: [")
    located = run("check", ISSUE).output.splitlines()[0]
    assert re.match(r"issues/2026-12\.yaml:\d+:\d+: error: YAML syntax", located), located
    problems = page.locator("#problems")
    expect(problems.locator("li.error")).to_have_text(located)
    expect(page.locator("#banner")).to_contain_text("last version that rendered")
    screenshot(page, "error")

    edit(issue, "date: 2026-12-16\n  oops: [", "date: 2026-12-16")
    expect(problems).to_contain_text("No problems found")
    expect(page.locator("#banner")).to_be_empty()
    expect(page.frame_locator("#frame").locator("h1")).to_have_text("Nytt från Sjölandet")
