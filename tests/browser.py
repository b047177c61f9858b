"""Headless Chromium (Debian's, never a downloaded build) and axe-core, for every browser test.

A browser test takes the `browser` fixture (see conftest) and calls `axe_violations(page)` for
WCAG 2.1 A/AA. axe-core comes from npm (`npm ci` at the repository root; `.ci/run` does it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
WCAG21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def unavailable(reason: str) -> None:
    """Skip where there is no browser, but never in CI: there the tests must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}: the browser tests must run in CI")
    pytest.skip(f"{reason}: browser tests skipped (apt-get install chromium; npm ci)")


def launch() -> Iterator[Any]:
    """A running Chromium for a module's tests."""
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


def axe_violations(page: Any) -> list[str]:
    """axe-core's WCAG 2.1 A and AA violations on the page, as 'rule-id: target …' lines; empty
    when there are none. (A frame sandboxed without scripts cannot be checked: load its document
    as a page of its own.)"""
    if not AXE.exists():
        unavailable(f"{AXE} is missing")
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        WCAG21_AA)
    return [f"{v['id']}: {' '.join(str(n['target']) for n in v['nodes'])}" for v in result["violations"]]
