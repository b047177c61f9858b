"""Hardening (2 of 2), the file system: outbox names, unwritable places, private files, broken journals."""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import Run

from utskick.cli import guarded
from utskick.transport import outbox_name


def _write_list(project: Path, *addresses: str) -> None:
    (project / "subscribers" / "l.csv").write_text("email,namn\n" + "".join(f"{a},N\n" for a in addresses), "utf-8")


def _unwritable(tmp_path: Path) -> Path:
    """A folder nobody may write into, root included (root ignores permission bits)."""
    if os.geteuid() == 0:
        return Path("/sys")
    folder = tmp_path / "readonly"
    folder.mkdir(mode=0o500)
    return folder


LONG = "a" * 64 + "@" + ".".join(["b" * 60, "b" * 60, "b" * 59]) + ".example"  # 254 characters, valid


def test_a_long_address_gets_a_bounded_outbox_name_and_nobody_after_it_is_stuck(project: Path, run: Run) -> None:
    assert len(LONG) > 246
    _write_list(project, LONG, LONG.replace("a" * 64, "a" * 63 + "c"), "kim@ekeby.example")
    result = run("send", "2026-12", "--list", "l", "--yes")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (project / "outbox" / "2026-12").glob("*.eml"))
    assert len(names) == 3 and all(len(n) <= 120 for n in names), names
    assert "00003-kim@ekeby.example.eml" in names  # a short address keeps today's name
    assert run("send", "2026-12", "--list", "l", "--yes").exit_code == 0  # resend: the same files
    assert sorted(p.name for p in (project / "outbox" / "2026-12").glob("*.eml")) == names


def test_outbox_names_differ_for_addresses_that_differ_only_far_in() -> None:
    a, b = LONG, LONG[:-9] + "x.example"
    assert outbox_name(7, a) != outbox_name(7, b)
    assert outbox_name(7, "kim@ekeby.example") == "00007-kim@ekeby.example.eml"
    assert outbox_name(7, "k/m@ekeby.example") == "00007-k_m@ekeby.example.eml"


def test_outbox_messages_and_report_are_private(project: Path, run: Run, tmp_path: Path) -> None:
    os.umask(0o022)
    try:
        assert run("send", "2026-12", "--yes").exit_code == 0
        report = tmp_path / "new" / "folder" / "report.csv"
        assert run("status", "2026-12", "--report", str(report)).exit_code == 0
        built = run("build", "2026-12")
        assert built.exit_code == 0
    finally:
        os.umask(0o022)
    for eml in (project / "outbox" / "2026-12").glob("*.eml"):
        assert stat.S_IMODE(eml.stat().st_mode) == 0o600
    for folder in (project / "outbox", project / "outbox" / "2026-12", tmp_path / "new", report.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    assert stat.S_IMODE((project / ".utskick" / "utskick.db").stat().st_mode) == 0o600
    assert stat.S_IMODE((project / ".utskick").stat().st_mode) == 0o700
    # build output is published on a web server: it keeps the usual modes.
    assert stat.S_IMODE((project / "build").stat().st_mode) == 0o755
    assert stat.S_IMODE((project / "build" / "2026-12.html").stat().st_mode) == 0o644


def test_build_into_a_file_or_an_unwritable_folder_is_a_located_error(project: Path, run: Run, tmp_path: Path) -> None:
    (project / "afile").write_text("x", "utf-8")
    result = run("build", "2026-12", "-o", "afile/sub")
    assert result.exit_code == 1
    assert "afile: error: is a file, not a folder" in result.stderr, result.output
    blocked = _unwritable(tmp_path)
    result = run("build", "2026-12", "-o", str(blocked))
    assert result.exit_code == 1
    assert f"{blocked}/2026-12.html: error: cannot write: " in result.stderr, result.output
    assert "Traceback" not in result.output


def test_an_unwritable_outbox_stops_the_send_with_the_file_named(project: Path, run: Run) -> None:
    (project / "outbox").write_text("not a folder", "utf-8")
    result = run("send", "2026-12", "--yes")
    assert result.exit_code == 1
    assert "error: stopped: outbox: is a file, not a folder" in result.stderr, result.output


def test_the_secret_that_cannot_be_created_is_a_located_error(project: Path, run: Run,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UTSKICK_SECRET")
    (project / ".utskick").write_text("a file where the state folder goes", "utf-8")
    result = run("send", "2026-12", "--yes")
    assert result.exit_code == 1
    assert ".utskick: error: is a file, not a folder" in result.stderr, result.output
    assert "Traceback" not in result.output


def _spoil(project: Path, how: str) -> None:
    db = project / ".utskick" / "utskick.db"
    if how == "garbage":
        db.write_bytes(b"this is not a database at all\n" * 400)
    else:
        data = db.read_bytes()
        db.write_bytes(data[: len(data) // 2])
    for extra in ("-wal", "-shm"):
        (project / ".utskick" / f"utskick.db{extra}").unlink(missing_ok=True)


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_a_broken_journal_is_a_located_error_in_status_send_and_unsubscribe(project: Path, run: Run, how: str) -> None:
    _write_list(project, *(f"p{i}@ekeby.example" for i in range(300)))
    assert run("send", "2026-12", "--list", "l", "--yes").exit_code == 0
    with sqlite3.connect(project / ".utskick" / "utskick.db") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    _spoil(project, how)
    for args in (("status", "2026-12"), ("send", "2026-12", "--list", "l", "--yes"),
                 ("unsubscribe", "A" * 24)):
        result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        assert ".utskick/utskick.db: error: the send journal cannot be used: " in result.stderr, (args, result.output)
        assert "Traceback" not in result.output


def test_a_journal_locked_before_the_send_starts_is_a_located_error(project: Path, run: Run,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from utskick import journal

    assert run("send", "2026-12", "--yes").exit_code == 0
    with (project / "subscribers" / "medlemmar.csv").open("a", encoding="utf-8") as f:
        f.write("ny@ekeby.example,Ny Person,Ekeby,Chef\n")
    monkeypatch.setattr(journal, "BUSY_TIMEOUT", 0.3)
    for locking, commands in ((["BEGIN IMMEDIATE"], [("send", "2026-12", "--yes")]),
                              (["PRAGMA locking_mode=EXCLUSIVE", "BEGIN EXCLUSIVE"],
                               [("send", "2026-12", "--yes"), ("status", "2026-12"), ("unsubscribe", "A" * 24)])):
        other = sqlite3.connect(project / ".utskick" / "utskick.db", isolation_level=None)
        try:
            for statement in locking:
                other.execute(statement)
            other.execute("UPDATE delivery SET attempts = attempts")  # a writer, as a DB browser is
            for args in commands:
                result = run(*args)
                assert result.exit_code == 1, (locking, args, result.output)
                assert ".utskick/utskick.db: error: the send journal cannot be used: another program has held it" \
                    in result.stderr, (locking, args, result.output)
        finally:
            other.execute("ROLLBACK")
            other.close()
    assert run("send", "2026-12", "--yes").exit_code == 0  # free again: the new member is sent
    assert len(list((project / "outbox" / "2026-12").glob("*.eml"))) == 5


def test_an_os_error_nothing_else_caught_is_still_located() -> None:
    """The last net of every command: a file system error that slipped past the rest."""

    @click.command()
    @guarded
    def full_disk() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "outbox/x.eml")

    result = CliRunner().invoke(full_disk, [], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr.startswith("outbox/x.eml: error: No space left on device\n"), result.output
