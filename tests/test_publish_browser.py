"""Every published page of the examples in headless Chromium from file://: WCAG 2.1 A/AA by
axe-core on a desktop and a phone (and in dark mode), no sideways scrolling, the page's own CSP
letting its styles and images through, and the skip link working. Nothing leaves the machine:
any request but file:// is aborted."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from browser import axe_violations, launch
from conftest import ROOT
from utskick.cli import cli

SOURCES = sorted((ROOT / "issues").glob("*.yaml")) + sorted((Path(__file__).parent / "seeds").glob("*.yaml"))
PAGES = [f"{p.stem}.html" for p in SOURCES] + ["index.html"]
WIDTHS = [1280, 375]
WAIT_MS = 10_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project with the seed issues, published once for the module."""
    root = tmp_path_factory.mktemp("proj")
    shutil.copyfile(ROOT / "newsletter.yaml", root / "newsletter.yaml")
    shutil.copytree(ROOT / "issues", root / "issues")
    for source in SOURCES:
        shutil.copyfile(source, root / "issues" / source.name)
    result = CliRunner().invoke(cli, ["--config", str(root / "newsletter.yaml"), "publish", "-o", str(root / "site")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return root / "site"


def open_page(browser: Any, url: str, width: int, bypass_csp: bool = True) -> tuple[Any, Any, list[str]]:
    """A tab on `url`; with bypass_csp, axe-core may be injected (the page's CSP rightly forbids it)."""
    context = browser.new_context(viewport={"width": width, "height": 900}, bypass_csp=bypass_csp)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    # https:// images of the issue stay on the machine: every request but a file is refused.
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort())
    page.goto(url)
    return context, page, console


@pytest.mark.parametrize("name", PAGES)
def test_no_wcag_violations_and_no_sideways_scrolling(browser: Any, site: Path, name: str) -> None:
    """At desktop width and 375 px, then in dark mode: one tab, axe-core injected once."""
    context, page, _ = open_page(browser, (site / name).as_uri(), WIDTHS[0])
    try:
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            assert axe_violations(page) == [], f"{width} px"
            assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.emulate_media(color_scheme="dark")
        assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
        assert axe_violations(page) == [], "dark mode"
    finally:
        context.close()


@pytest.mark.parametrize("name", PAGES)
def test_the_pages_own_csp_lets_its_styles_and_images_through(browser: Any, site: Path, name: str) -> None:
    context, page, console = open_page(browser, (site / name).as_uri(), 375, bypass_csp=False)
    try:
        page.wait_for_load_state("load")
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(242, 244, 245)"
        assert page.evaluate("getComputedStyle(document.querySelector('.skip-link')).position") == "absolute"
        local = page.evaluate("[...document.images].filter(i => i.src.startsWith('file:')).map(i => i.naturalWidth)")
        assert all(w > 0 for w in local)
        assert not [m for m in console if "Content Security Policy" in m], console
        # A script the page did not bring is refused.
        assert page.evaluate("""() => { const s = document.createElement('script'); s.textContent = 'window.ran = 1';
                                        document.head.append(s); return window.ran === undefined; }""")
    finally:
        context.close()


def test_the_images_are_shown(browser: Any, site: Path) -> None:
    context, page, _ = open_page(browser, (site / "2026-12.html").as_uri(), 375, bypass_csp=False)
    try:
        page.wait_for_load_state("load")
        sizes = page.evaluate("[...document.images].filter(i => i.src.startsWith('file:')).map(i => [i.naturalWidth, i.getBoundingClientRect().width])")
        assert sizes and all(natural > 0 and 0 < shown <= 375 for natural, shown in sizes)
    finally:
        context.close()


def test_the_skip_link_comes_first_and_leads_to_the_content(browser: Any, site: Path) -> None:
    context, page, _ = open_page(browser, (site / "2026-12.html").as_uri(), 1280, bypass_csp=False)
    try:
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.className") == "skip-link"
        assert page.evaluate("document.activeElement.getBoundingClientRect().top") >= 0, "visible when focused"
        page.keyboard.press("Enter")
        page.wait_for_function("location.hash === '#innehall'")
        assert page.evaluate("document.activeElement.id") == "innehall"
    finally:
        context.close()
