from __future__ import annotations

import email
from email import policy
from pathlib import Path

from conftest import Run


def test_build_writes_html_text_and_parseable_eml(project: Path, run: Run) -> None:
    result = run("build", "2026-12")
    assert result.exit_code == 0, result.output
    out = project / "build"
    html = (out / "2026-12.html").read_text("utf-8")
    assert "<h1" in html
    msg = email.message_from_bytes((out / "2026-12.eml").read_bytes(), policy=policy.default)
    assert msg["Subject"] == "Nytt från Sjölandet – december 2026"
    assert msg.get_body(("plain",)) is not None
    assert msg.get_body(("html",)) is not None


def test_check_all_examples_ok(project: Path, run: Run) -> None:
    for issue in sorted((project / "issues").glob("*.yaml")):
        result = run("check", str(issue))
        assert result.exit_code == 0, result.output
