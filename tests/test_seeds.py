"""Issues written after each real newsletter in ../shared/seeds check and build cleanly."""

from __future__ import annotations

import email
import shutil
from email import policy
from pathlib import Path

import lxml.html
import pytest

from conftest import Run, body

SEEDS = sorted((Path(__file__).parent / "seeds").glob("*.yaml"))
EXAMPLES = sorted((Path(__file__).parent.parent / "issues").glob("*.yaml"))


@pytest.mark.parametrize("source", SEEDS + EXAMPLES, ids=lambda p: p.stem)
def test_check_and_build(project: Path, run: Run, source: Path) -> None:
    target = project / "issues" / source.name
    shutil.copyfile(source, target)
    assert run("check", str(target)).exit_code == 0
    result = run("build", str(target))
    assert result.exit_code == 0, result.output
    slug = source.stem
    html = (project / "build" / f"{slug}.html").read_text("utf-8")
    doc = lxml.html.document_fromstring(html)
    assert doc.findtext(".//h1")
    assert len(html.encode()) < 102 * 1024
    msg = email.message_from_bytes((project / "build" / f"{slug}.eml").read_bytes(), policy=policy.default)
    text = body(msg, "plain")
    # Only a URL that is longer than a line by itself may stand past column 78.
    assert all(len(line) <= 78 or " " not in line.strip() for line in text.splitlines())
