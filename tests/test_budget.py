"""A daily budget (`sending.per_day`, `sending.preset: microsoft365`): never exceeded, across
runs and issues, whatever the concurrency; a reached budget stops with 75 and says when."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import Run
from sendkit import write_list
from smtp_server import Recorder, Server


def settings(project: Path, sending: str) -> None:
    path = project / "newsletter.yaml"
    text = path.read_text("utf-8")
    start = text.index("sending:")
    path.write_text(text[:start] + "sending:\n" + sending, "utf-8")


def test_a_budget_is_never_exceeded_and_the_next_run_goes_on(project: Path, run: Run,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    addresses = write_list(project, 30)
    settings(project, "  concurrency: 6\n  per_day: 12\n")
    with Server(Recorder()) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", server.url)
        first = run("send", "2026-12", "--list", "stor", "--yes")
        assert first.exit_code == 75, first.output
        assert len(server.recorder.received) == 12
        assert "the daily budget of 12 recipients is reached: 18 left to send; the budget allows more from" in first.output
        assert "run the same command later" in first.output and "error:" not in first.output
        # Another issue shares the budget: nothing is left today.
        second = run("send", "2026-10", "--list", "stor", "--yes")
        assert second.exit_code == 75 and len(server.recorder.received) == 12, second.output
        # A day later (the journal's submission times moved back 25 hours), the same command resumes.
        db = sqlite3.connect(project / ".utskick" / "utskick.db")
        earlier = (datetime.now(timezone.utc) - timedelta(hours=25)).isoformat(timespec="milliseconds")
        with db:
            db.execute("UPDATE delivery SET submitted = ? WHERE submitted != ''", (earlier,))
        db.close()
        third = run("send", "2026-12", "--list", "stor", "--yes")
        assert third.exit_code == 75 and len(server.recorder.received) == 24, third.output
        assert "6 left to send" in third.output
    assert sorted(set(server.recorder.addresses())) == sorted(server.recorder.addresses())  # nobody twice
    assert set(server.recorder.addresses()) <= set(addresses)


def test_the_confirmation_says_how_long_and_what_goes_tomorrow(project: Path, run: Run,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    write_list(project, 2140)
    settings(project, "  preset: microsoft365\n  per_day: 1000\n")
    monkeypatch.setenv("UTSKICK_SMTP_URL", "smtp://127.0.0.1:1")
    result = run("send", "2026-12", "--list", "stor", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Timing:     2140 recipients at 30/min: about 1 h 11 min" in result.output
    assert "over the day's budget of 1000: 1140 go after " in result.output


def test_a_preset_is_a_limit_not_only_a_default(project: Path, run: Run) -> None:
    settings(project, "  preset: microsoft365\n  concurrency: 8\n")
    result = run("check", "2026-12")
    assert result.exit_code == 1
    assert "concurrency 8 is above what preset microsoft365 allows (3)" in result.output
    assert "newsletter.yaml:" in result.output
