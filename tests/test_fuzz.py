"""A fuzz run of `check`: the example issues, settings and lists, mutated, never crash or hang it.

Every mistake an editor can make must end in exit 0 or 1 with located messages; a traceback or a
hang is a bug. Bounded so it runs in well under a minute in CI; a failure prints the smallest
mutation that shows it.
"""

from __future__ import annotations

import shutil
import signal
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import pytest
from click.testing import CliRunner
from conftest import ROOT, SECRET
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from utskick.cli import cli

PER_EXAMPLE = 5.0
"""Seconds one `check` may take before it counts as a hang."""

ISSUES = sorted(p.name for p in (ROOT / "issues").glob("*.yaml"))
SPECIALS = list(":-[]{}#&*!|>'\"%@`,?\n\t \\") + ["\r\n", "\ufeff", "\u202e", "å", "Ö", "\x00", "\x1b", "😀", "\u2028"]
VALUES = ["", "~", "null", "no", "09:00", "25:61", "2026-02-30", "-1", "1e999", "0x10", "[]", "{}", "[a, b]",
          "x" * 5000, "https://", "http://x", "javascript:alert(1)", "bilder/../../../etc/passwd", "bilder/saknas.png",
          "{{ subscriber.saknas }}", "{% raw %}", "<script>alert(1)</script>", "#zzzzzz", "'", '"', "&a", "*a",
          "!!python/object:os.system", "- - -", "a: b: c", "\\0", "%00", "ﬁ", "mailto:", "x@", "@x"]
CSV_SPECIALS = [",", ";", "\t", '"', "\n", "\r\n", "\r", "\ufeff", "=", "@", "å", "\x00", "x" * 200_000, "\udcff"]


class Hang(BaseException):
    """Raised from the timer: not an Exception, so nothing in utskick can swallow it."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def ring(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"check took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


Edit = tuple[float, str, str]
"""(where, as a fraction of the text; what: insert, delete, replace, value, line; the text)"""

# The first line (a CSV header, the first key) and the very end are where parsers are weakest.
places = st.one_of(st.sampled_from([0.0, 0.01, 0.03, 1.0]), st.floats(0, 1))
edits = st.lists(st.tuples(
    places,
    st.sampled_from(["insert", "delete", "replace", "value", "duplicate line", "drop line", "indent"]),
    st.one_of(st.sampled_from(SPECIALS), st.sampled_from(VALUES), st.text(max_size=12)),
), min_size=1, max_size=4)


def mutate(text: str, changes: list[Edit]) -> str:
    for where, what, piece in changes:
        at = int(where * len(text))
        if what == "insert":
            text = text[:at] + piece + text[at:]
        elif what == "delete":
            text = text[:at] + text[at + 1 + len(piece) % 20:]
        elif what == "replace":
            text = text[:at] + piece + text[at + len(piece):]
        else:
            lines = text.split("\n")
            n = min(int(where * len(lines)), len(lines) - 1)
            if what == "value" and ": " in lines[n]:
                lines[n] = lines[n].split(": ", 1)[0] + ": " + piece
            elif what == "duplicate line":
                lines.insert(n, lines[n])
            elif what == "drop line":
                del lines[n]
            elif what == "indent":
                lines[n] = " " * (len(piece) % 5) + lines[n]
            text = "\n".join(lines)
    return text


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("fuzz") / "proj"
    dest.mkdir()
    for name in ("newsletter.yaml", "issues", "subscribers"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, dest / name)
    return dest


def check(folder: Path, issue: str, files: dict[str, bytes]) -> None:
    """Write the mutated files, run `check` on them, put the originals back."""
    originals = {name: (folder / name).read_bytes() for name in files}
    try:
        for name, data in files.items():
            (folder / name).write_bytes(data)
        with time_limit(PER_EXAMPLE):
            result = CliRunner(env={"UTSKICK_SECRET": SECRET, "UTSKICK_SMTP_URL": ""}).invoke(
                cli, ["--config", str(folder / "newsletter.yaml"), "check", str(folder / "issues" / issue),
                      "--list", "medlemmar"])
    finally:
        for name, data in originals.items():
            (folder / name).write_bytes(data)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError("check crashed:\n" + "".join(traceback.format_exception(result.exception)))
    assert result.exit_code in (0, 1), result.output
    assert "Traceback" not in result.output


FUZZ = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@FUZZ
@given(issue=st.sampled_from(ISSUES), changes=edits)
def test_check_survives_a_mutated_issue(folder: Path, issue: str, changes: list[Edit]) -> None:
    text = (ROOT / "issues" / issue).read_text("utf-8")
    check(folder, issue, {f"issues/{issue}": mutate(text, changes).encode("utf-8", "surrogatepass")})


@FUZZ
@given(changes=edits)
def test_check_survives_mutated_settings(folder: Path, changes: list[Edit]) -> None:
    text = (ROOT / "newsletter.yaml").read_text("utf-8")
    check(folder, "2026-12.yaml", {"newsletter.yaml": mutate(text, changes).encode("utf-8", "surrogatepass")})


@FUZZ
@given(changes=st.lists(st.tuples(places, st.sampled_from(["insert", "delete", "replace"]),
                                  st.one_of(st.sampled_from(CSV_SPECIALS), st.text(max_size=8))), min_size=1, max_size=4),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]))
@example(changes=[(0.0, "insert", "x" * 140_000 + ",")], encoding="utf-8")  # a header over csv's field limit
@example(changes=[(0.0, "insert", "\x00")], encoding="utf-16")
def test_check_survives_a_mutated_list(folder: Path, changes: list[Edit], encoding: str) -> None:
    text = mutate((ROOT / "subscribers" / "medlemmar.csv").read_text("utf-8"), changes)
    check(folder, "2026-12.yaml", {"subscribers/medlemmar.csv": text.encode(encoding, "replace")})
