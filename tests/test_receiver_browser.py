"""The confirmation page of `utskick serve` in headless Chromium: WCAG 2.1 A/AA by axe-core on
a phone and a desktop, its own CSP letting its style through, and the button doing the POST."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from browser import axe_violations, launch
from receiver_support import PATH, SECRET, Receiver, receiving

WAIT_MS = 10_000
TOKEN = "T0kenT0kenT0kenT0ken-_Ab"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch()


@pytest.fixture
def server(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    monkeypatch.setenv("UTSKICK_SECRET", SECRET)
    with receiving(project) as r:
        yield r


def open_page(browser: Any, server: Receiver, width: int, bypass_csp: bool) -> tuple[Any, Any]:
    # axe-core is injected as a script, which the page's own CSP rightly forbids.
    context = browser.new_context(viewport={"width": width, "height": 800}, bypass_csp=bypass_csp)
    context.route(re.compile(r"^(?!http://127\.0\.0\.1:)"), lambda route: route.abort())
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(f"{server.url}{PATH}?token={TOKEN}")
    return context, page


@pytest.mark.parametrize("width", [375, 1280])
def test_both_pages_have_no_wcag_violations(browser: Any, server: Receiver, width: int) -> None:
    context, page = open_page(browser, server, width, bypass_csp=True)
    try:
        expect(page.locator("h1")).to_have_text("Avregistrera dig från nyhetsbrevet")
        assert axe_violations(page) == []
        assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scrolling
        assert server.pending() == []
        page.get_by_role("button", name="Avregistrera mig").click()
        expect(page.locator("h1")).to_have_text("Du är avregistrerad")
        assert axe_violations(page) == []
        assert server.pending() == [TOKEN]
    finally:
        context.close()


def test_the_csp_lets_the_pages_own_style_through_and_nothing_else(browser: Any, server: Receiver) -> None:
    context, page = open_page(browser, server, 1280, bypass_csp=False)
    try:
        refused: list[str] = []
        page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        page.reload()
        colour = page.get_by_role("button").evaluate("b => getComputedStyle(b).backgroundColor")
        assert colour == "rgb(0, 88, 122)"  # accent_color #00587a: the hashed style block applied
        assert refused == []
        with contextlib.suppress(PlaywrightError):  # Chromium refuses the script; how it says so varies
            page.add_script_tag(content="window.injected = true")
        assert page.evaluate("window.injected") is None
    finally:
        context.close()
