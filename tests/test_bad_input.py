"""Every bad input: a located error, exit 1, no traceback, nothing written."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from conftest import Run

GOOD = """subject: Prov
date: 2026-05-01
sections:
  - articles:
      - title: Rubrik
        body: Text.
"""

CASES = [
    ("syntax", "subject: Prov\ndate: 2026-05-01\nsections:\n  - articles: [\n", r"issues/bad.yaml:5:1: error: YAML syntax"),
    ("empty", "", r"issues/bad.yaml:1:1: error: the file is empty"),
    ("only comments", "# inget här\n", r"issues/bad.yaml:1:1: error: the file is empty"),
    ("list at top", "- subject: Prov\n", r"issues/bad.yaml:1:1: error: should be a mapping"),
    ("list for mapping", GOOD.replace("sections:\n", "intro:\n  - body: x\nsections:\n"),
     r"issues/bad.yaml:4:3: error: intro: should be a mapping"),
    ("impossible date", GOOD.replace("2026-05-01", "2020-02-30"), r"issues/bad.yaml:2:7: error: date: .*date"),
    ("newline in subject", GOOD.replace("subject: Prov", 'subject: "Prov\\nrad två"'),
     r"issues/bad.yaml:1:10: error: subject: must be a single line"),
    ("image without alt", GOOD.replace("        body: Text.", "        image: {src: https://x.example/a.png}"),
     r"issues/bad.yaml:6:16: error: sections\[0\].articles\[0\].image.alt: 'alt' is required"),
    ("typo with suggestion", GOOD.replace("title: Rubrik", "titel: Rubrik"),
     r"issues/bad.yaml:5:9: error: sections\[0\].articles\[0\].titel: 'titel' is not a field \(did you mean 'title'\?\)"),
    ("missing sections", "subject: Prov\ndate: 2026-05-01\n", r"issues/bad.yaml:1:1: error: sections: 'sections' is required"),
    ("bad link scheme", GOOD.replace("        body: Text.", "        link: {url: 'javascript:alert(1)'}"),
     r"issues/bad.yaml:6:21: error: .*link.url: 'javascript:alert\(1\)' is not a link"),
    ("bad time", GOOD + "calendar:\n  events:\n    - {title: Möte, date: 2026-05-02, time: '25:00'}\n",
     r"issues/bad.yaml:9:45: error: calendar.events\[0\].time: .*not a time of day"),
    ("duplicate key", GOOD + "subject: Igen\n", r"issues/bad.yaml:7:1: error: 'subject' is given twice"),
    ("tab indentation", "subject: Prov\n\tdate: 2026-05-01\n", r"issues/bad.yaml:2:1: error: YAML syntax"),
    ("control characters in subject", GOOD.replace("subject: Prov", 'subject: "Nyhetsbrev\\0\\e[2J"'),
     r"issues/bad.yaml:1:10: error: subject: contains the control character U\+0000"),
    ("nested 330 deep", "subject: " + "[" * 330 + "]" * 330 + "\n", r"issues/bad.yaml:1:1: error: nested too deeply"),
    ("missing local image", GOOD.replace("        body: Text.", "        image: {src: bilder/saknas.png, alt: Saknas}"),
     r"issues/bad.yaml:6:22: error: .*image.src: image file not found"),
]


@pytest.mark.parametrize("name,text,expected", CASES, ids=[c[0] for c in CASES])
def test_bad_issue_is_located(project: Path, run: Run, name: str, text: str, expected: str) -> None:
    (project / "issues" / "bad.yaml").write_text(text, "utf-8")
    result = run("build", "issues/bad.yaml")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    import re

    assert re.search(expected, result.stderr), result.stderr
    assert not (project / "build").exists()


def test_alias_bomb_fails_fast(project: Path, run: Run) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        prev = chr(ord("a") + i - 1)
        cur = chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]")
    (project / "issues" / "bomb.yaml").write_text("\n".join(lines) + "\n", "utf-8")
    start = time.perf_counter()
    result = run("check", "issues/bomb.yaml")
    assert time.perf_counter() - start < 5  # exponential expansion would take minutes and gigabytes
    assert result.exit_code == 1
    assert "issues/bomb.yaml:1:4: error: YAML anchors and aliases" in result.stderr


def test_not_utf8(project: Path, run: Run) -> None:
    (project / "issues" / "bad.yaml").write_bytes(GOOD.replace("Rubrik", "Östlund").encode("cp1252"))
    result = run("check", "issues/bad.yaml")
    assert result.exit_code == 1
    assert "issues/bad.yaml:5: error: not UTF-8 text" in result.stderr


def test_bom_and_crlf_are_fine(project: Path, run: Run) -> None:
    (project / "issues" / "win.yaml").write_bytes(b"\xef\xbb\xbf" + GOOD.replace("Rubrik", "Östlund").replace("\n", "\r\n").encode())
    result = run("check", "issues/win.yaml")
    assert result.exit_code == 0, result.stderr


def test_missing_settings_file(tmp_path: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("check", "x.yaml")
    assert result.exit_code == 1
    assert "newsletter.yaml: error: settings file not found" in result.stderr


def test_missing_issue_file(project: Path, run: Run) -> None:
    result = run("check", "2030-01")
    assert result.exit_code == 1
    assert "issues/2030-01.yaml: error: file not found" in result.stderr


def test_bad_settings(project: Path, run: Run) -> None:
    path = project / "newsletter.yaml"
    text = path.read_text("utf-8").replace('accent_color: "#00587a"', 'accent_color: "#ffcc00"').replace(
        "  mailto: avregistrera@sjolandet.example\n", "").replace("  url: https://www.sjolandet.example/avregistrera?token={token}\n", "  adress: x\n")
    path.write_text(text, "utf-8")
    result = run("check", "2026-12")
    assert result.exit_code == 1
    assert re.search(r"newsletter.yaml:\d+:3: error: unsubscribe.adress: 'adress' is not a field", result.stderr), result.stderr


def test_low_contrast_accent_is_an_error_with_ratio(project: Path, run: Run) -> None:
    path = project / "newsletter.yaml"
    path.write_text(path.read_text("utf-8").replace('"#00587a"', '"#ffcc00"'), "utf-8")
    result = run("check", "2026-12")
    assert result.exit_code == 1
    assert re.search(r"newsletter.yaml:9:15: error: accent_color: accent_color #ffcc00 has a contrast of 1\.\d\d:1", result.stderr), result.stderr


def test_warnings_do_not_fail(project: Path, run: Run) -> None:
    text = GOOD.replace("subject: Prov", "subject: " + "Lång rubrik " * 8).replace(
        "        body: Text.", "        body: Se [sidan](http://osaker.example).") + (
        "calendar:\n  events:\n    - {title: Möte, date: 2026-04-01}\n")
    (project / "issues" / "warn.yaml").write_text(text, "utf-8")
    result = run("check", "issues/warn.yaml")
    assert result.exit_code == 0, result.stderr
    assert re.search(r"warn.yaml:1:10: warning: subject: subject is \d+ characters", result.stderr)
    assert re.search(r"warn.yaml:6:15: warning: .*body: http://osaker.example is not https", result.stderr)
    assert re.search(r"warn.yaml:9:\d+: warning: calendar.events\[0\].date: event 'Möte' is already over", result.stderr)


import re  # noqa: E402


def test_missing_image_and_low_contrast_reported_together(project: Path, run: Run) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace('"#00587a"', '"#ffcc00"'), "utf-8")
    (project / "issues" / "bad.yaml").write_text(GOOD.replace(
        "        body: Text.", "        image: {src: bilder/saknas.png, alt: Saknas}"), "utf-8")
    result = run("check", "issues/bad.yaml")
    assert result.exit_code == 1
    assert "image file not found" in result.stderr and "has a contrast of" in result.stderr
