"""The journal's schema version: a journal written by an earlier utskick keeps working."""

from __future__ import annotations

import email
import shutil
import sqlite3
from email import policy
from pathlib import Path

from conftest import ROOT, Run

from utskick.journal import VERSION, find_message

FIXTURE = ROOT / "tests" / "fixtures" / "journal-v1.db"
"""Made by the utskick that landed before schema versions: the December issue sent to the
outbox for the four members, then Johan put back after a bounce streak (his reply kept)."""


def test_a_v1_journal_is_migrated_and_resumes(project: Path, run: Run) -> None:
    state = project / ".utskick"
    state.mkdir()
    shutil.copyfile(FIXTURE, state / "utskick.db")
    members = project / "subscribers" / "medlemmar.csv"
    members.write_text(members.read_text("utf-8") + "ny.medlem@storvik.example,Ny Medlem,Storvik,Nämndsekreterare\n", "utf-8")

    status = run("status", "2026-12")
    assert status.exit_code == 0, status.output
    assert "2026-12 via outbox: sent 3 · bounced 0 · failed 0 · uncertain 0 · remaining 1" in status.output
    db = sqlite3.connect(state / "utskick.db")
    assert db.execute("PRAGMA user_version").fetchone() == (VERSION,)
    assert db.execute("SELECT state FROM delivery WHERE key = 'johan.nilsson@granholm.example'").fetchone() == ("deferred",)
    db.close()

    result = run("send", "2026-12", "--yes")
    assert result.exit_code == 0, result.output
    mailed = sorted(p.name.split("-", 1)[1] for p in (project / "outbox" / "2026-12").glob("*.eml"))
    # The v1 run's four files are not in this copy: only what this run wrote is there.
    assert mailed == ["johan.nilsson@granholm.example.eml", "ny.medlem@storvik.example.eml"]
    assert run("send", "2026-12", "--yes").output.strip().endswith("nothing left to send")


def test_a_journal_from_a_newer_utskick_is_refused(project: Path, run: Run) -> None:
    state = project / ".utskick"
    state.mkdir()
    db = sqlite3.connect(state / "utskick.db")
    db.execute(f"PRAGMA user_version = {VERSION + 1}")
    db.close()
    result = run("send", "2026-12", "--yes")
    assert result.exit_code == 1
    assert ".utskick/utskick.db: error: written by a newer utskick" in result.output
    assert not (project / "outbox").exists()


def test_message_ids_are_recorded_stable_and_reveal_no_address(project: Path, run: Run) -> None:
    assert run("send", "2026-12", "--yes").exit_code == 0
    files = sorted((project / "outbox" / "2026-12").glob("*.eml"))
    ids = {}
    for f in files:
        msg = email.message_from_bytes(f.read_bytes(), policy=policy.default)
        ids[str(msg["To"].addresses[0].addr_spec)] = str(msg["Message-ID"])
    assert len(set(ids.values())) == len(ids) == 4
    for address, mid in ids.items():
        assert address.split("@")[0] not in mid and address.split("@")[1] not in mid
        found = find_message(project / ".utskick", mid)
        assert found is not None and found[0] == "2026-12" and found[2].email == address
    assert find_message(project / ".utskick", "<okand@sjolandet.example>") is None


def test_the_message_id_is_the_same_on_every_build(project: Path, run: Run) -> None:
    def built_id() -> str:
        assert run("build", "2026-12").exit_code == 0
        return str(email.message_from_bytes((project / "build" / "2026-12.eml").read_bytes(), policy=policy.default)["Message-ID"])

    first = built_id()
    assert first == built_id() and first.endswith(".2026-12@sjolandet.example>")
