"""CSS inlining is cached by content: a second build of an unchanged issue does not run
premailer, writes the same bytes, and any change to the page inlines it afresh."""

from __future__ import annotations

from pathlib import Path

from conftest import Run

ISSUE = "2026-12"


def entries(project: Path) -> list[Path]:
    return sorted((project / ".utskick" / "cache" / "inlined").glob("*.html"))


def built(project: Path) -> str:
    return (project / "build" / f"{ISSUE}.html").read_text("utf-8")


def test_a_second_build_is_inlined_from_the_cache_and_writes_the_same(project: Path, run: Run) -> None:
    assert run("build", ISSUE).exit_code == 0
    first = built(project)
    [entry] = entries(project)
    assert run("build", ISSUE).exit_code == 0
    assert built(project) == first and entries(project) == [entry]
    # It is the cached copy that the build used: what it says is what comes out.
    nonce, _, html = entry.read_text("utf-8").partition("\n")
    entry.write_text(f"{nonce}\n" + html.replace("Visa i webbläsare", "Visa i webbläsaren (ur cachen)"), "utf-8")
    assert run("build", ISSUE).exit_code == 0
    assert "Visa i webbläsaren (ur cachen)" in built(project)


def test_a_changed_page_is_inlined_afresh(project: Path, run: Run) -> None:
    assert run("build", ISSUE).exit_code == 0
    issue = project / "issues" / f"{ISSUE}.yaml"
    issue.write_text(issue.read_text("utf-8").replace("Nytt från Sjölandet", "Nytt från hela Sjölandet", 1), "utf-8")
    assert run("build", ISSUE).exit_code == 0
    assert len(entries(project)) == 2
    assert "Nytt från hela Sjölandet" in built(project)


def test_an_unreadable_entry_is_inlined_again(project: Path, run: Run) -> None:
    assert run("build", ISSUE).exit_code == 0
    first = built(project)
    [entry] = entries(project)
    entry.write_bytes(b"\xff\xfe not text")
    assert run("build", ISSUE).exit_code == 0
    assert built(project) == first
