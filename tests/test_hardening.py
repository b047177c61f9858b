"""Hardening: a busy journal, smuggled line breaks, special files, and stop signals."""

from __future__ import annotations

import asyncio
import email
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from email import policy
from pathlib import Path

import pytest
from conftest import Run, SECRET, body
from sendkit import write_list
from smtp_server import Recorder, Server

from utskick import journal
from utskick.journal import Journal


def test_a_journal_held_by_another_program_ends_in_a_located_error_not_a_hang(
        project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    addresses = write_list(project, 1500)
    monkeypatch.setattr(journal, "BUSY_TIMEOUT", 0.5)
    db_path = project / ".utskick" / "utskick.db"
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        """A DB browser taking the journal mid-send, as soon as the first messages are recorded."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if db_path.exists():
                other = sqlite3.connect(db_path, isolation_level=None, timeout=5)
                try:
                    if other.execute("SELECT count(*) FROM sqlite_master WHERE name='delivery'").fetchone()[0] and \
                            other.execute("SELECT count(*) FROM delivery WHERE state='sent'").fetchone()[0] > 20:
                        other.execute("BEGIN EXCLUSIVE")
                        held.set()
                        release.wait(10)
                        other.execute("COMMIT")
                        return
                finally:
                    other.close()
            time.sleep(0.005)

    locker = threading.Thread(target=hold)
    locker.start()
    try:
        result = run("send", "2026-12", "--list", "stor", "--yes")
    finally:
        release.set()
        locker.join(15)
    assert held.is_set(), "the send finished before the journal could be taken"
    assert result.exit_code == 1, result.output
    assert ".utskick/utskick.db: error: the send journal cannot be used: another program has held it" in result.output
    assert "Traceback" not in result.output
    written = {p.name.split("-", 1)[1].removesuffix(".eml") for p in (project / "outbox" / "2026-12").glob("*.eml")}
    with Journal.open(project / ".utskick", "2026-12", "outbox") as j:
        sent = {r.email for r in j.rows("sent")}
    assert sent <= written  # every row recorded as sent really was written
    again = run("send", "2026-12", "--list", "stor", "--yes")  # the lock is free again: resumes
    assert again.exit_code == 0, again.output
    assert len(list((project / "outbox" / "2026-12").glob("*.eml"))) == len(addresses)


def test_line_breaks_in_list_values_never_reach_the_wire(project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "templates").mkdir()
    (project / "templates" / "email.txt").write_text("Hej {{ subscriber.name }} i {{ subscriber.kommun }}!\n", "utf-8")
    smuggled = "Eva\r.\r\nMAIL FROM:<x@evil.example>\r\nDATA\r\n\nQ\0\x1b[2J\u202eZ"
    (project / "subscribers" / "s.csv").write_bytes(
        ('email,namn,kommun\r\neva@ekeby.example,"' + smuggled + '","Ek\rby"\r\n').encode("utf-8"))
    with Server(Recorder()) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", server.url)
        result = run("send", "2026-12", "--list", "s", "--yes")
        assert result.exit_code == 0, result.output
        assert server.recorder.addresses() == ["eva@ekeby.example"] and server.recorder.senders == ["nyhetsbrev@sjolandet.example"]
        raw = server.recorder.received[0][1]
    lines = raw.split(b"\r\n")
    assert b"\r" not in b"".join(lines) and b"\n" not in b"".join(lines)
    assert b"." not in lines and not any(line.startswith(b"MAIL FROM") for line in lines)
    text = body(email.message_from_bytes(raw, policy=policy.default), "plain")
    assert text.replace("\r\n", "\n") == "Hej Eva .  MAIL FROM:<x@evil.example>  DATA   Q[2JZ i Ek by!\n"
    monkeypatch.delenv("UTSKICK_SMTP_URL")
    assert run("send", "2026-12", "--list", "s", "--yes").exit_code == 0
    (eml,) = (project / "outbox" / "2026-12").glob("*.eml")
    data = eml.read_bytes()
    assert data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r")  # the bytes that go on the wire


def test_a_report_never_replaces_a_special_file_or_a_link(project: Path, run: Run, tmp_path: Path) -> None:
    assert run("send", "2026-12", "--yes").exit_code == 0
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    target = tmp_path / "real.csv"
    target.write_text("keep", "utf-8")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    for path, what in ((fifo, "a device or special file"), (link, "a symbolic link")):
        result = run("status", "2026-12", "--report", str(path))
        assert result.exit_code == 1
        assert f"{path.name}: error: is {what}, not a regular file: not replacing it" in result.output, result.output
    assert fifo.is_fifo() and link.is_symlink() and target.read_text("utf-8") == "keep"


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_finish_what_is_in_flight(project: Path, signum: int, code: int) -> None:
    write_list(project, 4)
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace("rate: 30/min", "rate: 500/s"), "utf-8")

    async def slow(address: str) -> None:
        await asyncio.sleep(2.5)

    with Server(Recorder(on_data=slow)) as server:
        env = {**os.environ, "UTSKICK_SMTP_URL": server.url, "UTSKICK_SECRET": SECRET}
        proc = subprocess.Popen([sys.executable, "-m", "utskick", "send", "2026-12", "--list", "stor", "--yes"],
                                cwd=project, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # all four in DATA: each journal row inflight
            if (project / ".utskick" / "utskick.db").exists():
                with Journal.open(project / ".utskick", "2026-12", "smtp") as j:
                    if j.counts().uncertain == 4:
                        break
            time.sleep(0.05)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, (out, err)
    assert "sent 4 · bounced 0 · failed 0 · uncertain 0 · remaining 0" in out, out
    assert "run the same command to resume" in err
