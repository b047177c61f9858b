"""`utskick send` and `status` end to end: a real aiosmtpd server, the real CLI, parsed messages."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import Run, token
from sendkit import parse, write_list
from smtp_server import Server, serve

from utskick.credentials import OAuth2, Password
from utskick.transport import Fatal, SmtpTransport, parse_smtp_url
from utskick.errors import UtskickError

SUBJECT = "Nytt från Sjölandet – december 2026"


def unthrottled(project: Path) -> None:
    """The example's 30/min is Microsoft 365's limit; the rate has its own test."""
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace("rate: 30/min", "rate: 500/s"), "utf-8")


@pytest.fixture
def server(project: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    unthrottled(project)
    for s in serve():
        monkeypatch.setenv("UTSKICK_SMTP_URL", s.url)
        yield s


def test_every_recipient_once_with_the_headers_a_list_needs(project: Path, run: Run, server: Server) -> None:
    addresses = write_list(project, 24)
    result = run("send", "2026-12", "--list", "stor", "--yes")
    assert result.exit_code == 0, result.output
    assert "sent 24 · bounced 0 · failed 0 · uncertain 0 · remaining 0" in result.output
    assert sorted(server.recorder.addresses()) == sorted(addresses)
    assert set(server.recorder.senders) == {"nyhetsbrev@sjolandet.example"}
    ids = set()
    for rcpt, raw, _ in server.recorder.received:
        msg = parse(raw)
        assert msg["To"].addresses[0].addr_spec == rcpt
        assert msg["From"].addresses[0].display_name == "Sjölandets kommunalförbund"
        assert msg["Subject"] == SUBJECT
        assert msg["Reply-To"].addresses[0].addr_spec == "kansliet@sjolandet.example"
        assert msg["List-Id"] == "Sjölandets kommunalförbund <nyhetsbrev.sjolandet.example>"
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["Date"] is not None and msg["MIME-Version"] == "1.0"
        assert msg["Message-ID"].endswith("@sjolandet.example>")
        ids.add(msg["Message-ID"])
        https, mailto = [t.strip(" <>") for t in msg["List-Unsubscribe"].split(",")]
        assert mailto.startswith("mailto:avregistrera@sjolandet.example")
        assert parse_qs(urlsplit(https).query)["token"] == [token(rcpt.lower())]
        assert rcpt not in https
        html = msg.get_body(("html",))
        assert html is not None and https.replace("&", "&amp;") in html.get_content()
    assert len(ids) == 24
    åkesson = next(parse(raw) for rcpt, raw, _ in server.recorder.received if rcpt == addresses[0])
    assert åkesson["To"].addresses[0].display_name == "Petter Åkesson"
    assert b"=?utf-8?" in next(raw for rcpt, raw, _ in server.recorder.received if rcpt == addresses[0]).split(b"\r\n\r\n")[0]

    again = run("send", "2026-12", "--list", "stor", "--yes")
    assert again.exit_code == 0 and "nothing left to send" in again.output
    assert len(server.recorder.received) == 24

    status = run("status", "2026-12", "--report", "report.csv")
    assert "2026-12 via smtp: sent 24 · bounced 0" in status.output
    rows = list(csv.DictReader((project / "report.csv").open(encoding="utf-8")))
    assert [r["email"] for r in rows] == addresses
    assert {r["state"] for r in rows} == {"sent"} and {r["attempts"] for r in rows} == {"1"}
    assert rows[0]["last_reply"].startswith("250 ")

    # The token in the message is what `unsubscribe` resolves back to that member.
    raw = next(raw for rcpt, raw, _ in server.recorder.received if rcpt == addresses[5])
    link = parse(raw)["List-Unsubscribe"].split(",")[0].strip(" <>")
    result = run("unsubscribe", parse_qs(urlsplit(link).query)["token"][0])
    assert result.exit_code == 0 and f"unsubscribed {addresses[5]}" in result.output


def test_journal_is_sqlite_wal(project: Path, run: Run, server: Server) -> None:
    write_list(project, 3)
    assert run("send", "2026-12", "--list", "stor", "--yes").exit_code == 0
    db = sqlite3.connect(project / ".utskick" / "utskick.db")
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert db.execute("SELECT DISTINCT issue, transport, state FROM delivery").fetchall() == [("2026-12", "smtp", "sent")]


def test_refuses_without_a_terminal_or_yes(project: Path, run: Run, server: Server) -> None:
    result = run("send", "2026-12")
    assert result.exit_code == 1
    assert "add --yes" in result.output
    assert server.recorder.received == []


def test_dry_run_sends_nothing_and_records_nothing(project: Path, run: Run, server: Server) -> None:
    result = run("send", "2026-12", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Recipients: 4 (4 to send" in result.output and "KB per recipient" in result.output
    assert "SMTP 127.0.0.1" in result.output
    assert server.recorder.received == [] and not (project / ".utskick" / "utskick.db").exists()


def test_no_lists_is_an_error(project: Path, run: Run) -> None:
    text = (project / "issues" / "2026-12.yaml").read_text("utf-8").replace("lists: [medlemmar]\n", "")
    (project / "issues" / "2026-12.yaml").write_text(text, "utf-8")
    result = run("send", "2026-12", "--yes")
    assert result.exit_code == 1
    assert "no lists to send to" in result.output and "2026-12.yaml" in result.output


def test_unknown_list_names_the_file(project: Path, run: Run) -> None:
    result = run("send", "2026-12", "--list", "finns-inte", "--yes")
    assert result.exit_code == 1 and "finns-inte.csv" in result.output


def test_test_send_uses_the_testers_own_token_and_is_not_the_send(project: Path, run: Run, server: Server) -> None:
    result = run("send", "2026-12", "--test", "kollega@sjolandet.example", "--yes")
    assert result.exit_code == 0, result.output
    [(rcpt, raw, _)] = server.recorder.received
    msg = parse(raw)
    assert rcpt == "kollega@sjolandet.example"
    assert msg["Subject"] == "[TEST] " + SUBJECT
    https = msg["List-Unsubscribe"].split(",")[0].strip(" <>")
    assert parse_qs(urlsplit(https).query)["token"] == [token("kollega@sjolandet.example")]
    assert "Anna Lind" in msg["To"].addresses[0].display_name  # the first member's name and columns
    assert "not sent yet" in run("status", "2026-12").output
    assert run("send", "2026-12", "--yes").exit_code == 0
    assert len(server.recorder.received) == 5  # the real send still goes to everyone


def test_outbox_without_a_server(project: Path, run: Run) -> None:
    result = run("send", "2026-10", "--yes")
    assert result.exit_code == 0, result.output
    assert "OUTBOX — nothing is mailed" in result.output
    files = sorted(p.name for p in (project / "outbox" / "2026-10").iterdir())
    assert files == ["00001-anna.lind@bjorkvik.example.eml", "00002-petter.akesson@ekeby.example.eml",
                     "00003-maria.oberg@lindas.example.eml", "00004-johan.nilsson@granholm.example.eml",
                     "00005-lars.sund@storvik.example.eml"]  # de-duplicated across both lists
    msg = parse((project / "outbox" / "2026-10" / files[1]).read_bytes())
    assert msg["To"].addresses[0].display_name == "Petter Åkesson"
    assert "2026-10 via outbox: sent 5" in run("status", "2026-10").output
    assert "not sent yet" in run("status", "2026-12").output  # an outbox run is not an SMTP send


def test_suppressed_addresses_are_skipped(project: Path, run: Run) -> None:
    with (project / "subscribers" / "unsubscribed.csv").open("a", encoding="utf-8") as f:
        f.write("Maria.Oberg@lindas.example,2026-01-01,asked\n")
    assert "Recipients: 3" in run("send", "2026-12", "--dry-run").output


def test_smtp_url_rules() -> None:
    remote = parse_smtp_url("smtp://nyhetsbrev%40sjolandet.example:hemligt@smtp.example.se")
    assert (remote.port, remote.starttls, remote.implicit_tls) == (587, True, False)
    assert remote.sign_in == Password("nyhetsbrev@sjolandet.example", "hemligt")
    assert remote.username == "nyhetsbrev@sjolandet.example"
    assert "hemligt" not in remote.label and "hemligt" not in repr(remote)
    assert parse_smtp_url("smtp://u@smtp.example.se", password="från-env").sign_in == Password("u", "från-env")
    assert parse_smtp_url("smtp://u@smtp.example.se").sign_in == Password("u", "")  # signs in with an empty one
    assert parse_smtp_url("smtp://127.0.0.1:2525", password="oanvänt").sign_in is None
    assert parse_smtp_url("smtps://smtp.example.se").port == 465
    assert parse_smtp_url("smtps://smtp.example.se").implicit_tls
    assert not parse_smtp_url("smtp://127.0.0.1:2525").starttls  # plain only to loopback
    assert parse_smtp_url("smtp://localhost:2525?starttls=require").starttls
    for bad in ("http://smtp.example.se", "smtp://", "smtp://h?tls=1", "smtp://h:99999"):
        with pytest.raises(UtskickError) as e:
            parse_smtp_url(bad)
        assert "UTSKICK_SMTP_URL" in str(e.value)


class Secret:
    """A token source whose repr would give itself away."""

    def token(self) -> str:
        return "token-hemligt"

    def refused(self, token: str) -> None:
        pass

    def __repr__(self) -> str:
        return "token-hemligt"


def test_the_transport_says_how_it_signs_in_and_never_with_what() -> None:
    settings = parse_smtp_url("smtp://nyhetsbrev%40sjolandet.example:hemligt@smtp.example.se")
    password = Password("nyhetsbrev@sjolandet.example", "hemligt")
    token = OAuth2("nyhetsbrev@sjolandet.example", Secret())
    with_password = SmtpTransport(settings, "nyhetsbrev@sjolandet.example", credentials=password)
    with_token = SmtpTransport(settings, "nyhetsbrev@sjolandet.example", credentials=token)
    assert with_password.label == "SMTP nyhetsbrev@sjolandet.example@smtp.example.se:587 (STARTTLS)"
    assert with_token.label == "SMTP nyhetsbrev@sjolandet.example@smtp.example.se:587 (STARTTLS, XOAUTH2)"
    assert "hemligt" not in repr(password) + repr(token)


def test_fatal_carries_code_and_recipient() -> None:
    e = Fatal("5.7.60 not allowed", code=550, recipient="a@b.se", stage="mail")
    assert e.reply == "550 5.7.60 not allowed" and e.recipient == "a@b.se"


def test_a_second_concurrent_send_is_refused(project: Path, run: Run) -> None:
    from utskick.delivery import send_lock

    with send_lock(project / ".utskick"):
        result = run("send", "2026-12", "--yes")
    assert result.exit_code == 1 and "another 'utskick send' is running" in result.output


def test_status_of_an_unsent_issue(project: Path, run: Run) -> None:
    result = run("status", "2026-11-intern")
    assert result.exit_code == 0 and "not sent yet" in result.output


def test_recorder_server_is_real(server: Server) -> None:
    import smtplib

    with smtplib.SMTP("127.0.0.1", server.port) as s:
        s.sendmail("a@b.se", ["c@d.se"], b"Subject: x\r\n\r\ny\r\n")
    assert server.recorder.addresses() == ["c@d.se"]



def test_dry_run_with_test_addresses_sends_nothing(project: Path, run: Run, server: Server) -> None:
    result = run("send", "2026-12", "--dry-run", "--test", "kollega@sjolandet.example", "--yes")
    assert result.exit_code == 0, result.output
    assert "kollega@sjolandet.example" in result.output and "KB per recipient" in result.output
    assert "dry run: nothing was sent" in result.output
    assert server.recorder.received == []


def test_a_token_resolves_after_its_member_left_the_list(project: Path, run: Run) -> None:
    """Last month's link still works: tokens resolve against the journal too."""
    assert run("send", "2026-12", "--yes").exit_code == 0  # to the outbox: the journal has everyone
    members = project / "subscribers" / "medlemmar.csv"
    members.write_text("".join(line for line in members.read_text("utf-8").splitlines(keepends=True)
                               if not line.startswith("johan.nilsson")), "utf-8")
    result = run("unsubscribe", token("johan.nilsson@granholm.example"))
    assert result.exit_code == 0, result.output
    assert "unsubscribed johan.nilsson@granholm.example" in result.output


def test_tokens_resolve_without_a_journal(project: Path, run: Run) -> None:
    result = run("unsubscribe", token("anna.lind@bjorkvik.example"))
    assert result.exit_code == 0 and "unsubscribed anna.lind@bjorkvik.example" in result.output
    assert not (project / ".utskick" / "utskick.db").exists()  # resolving never creates it


@pytest.mark.parametrize("password", ["Hem#lig99", "Sol/Vind42", "Tak?Ko=Mu", "Ek:Lind#Al", "Gran/443"])
def test_a_password_with_reserved_characters_is_never_echoed(project: Path, run: Run, monkeypatch: pytest.MonkeyPatch,
                                                            password: str) -> None:
    import re

    monkeypatch.setenv("UTSKICK_SMTP_URL", f"smtp://nyhetsbrev:{password}@smtp.example.se:587")
    result = run("send", "2026-12", "--dry-run")
    assert result.exit_code == 1
    assert "UTSKICK_SMTP_URL" in result.output and "%-encoded" in result.output
    for part in re.split(r"[#/?=:]", password):
        assert part not in result.output, result.output


def test_status_and_send_agree_after_members_leave_mid_send(project: Path, run: Run,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from smtp_server import Recorder

    unthrottled(project)
    with Server(Recorder(on_mail=lambda a: "550 5.7.60 not allowed to send as this sender")) as refusing:
        monkeypatch.setenv("UTSKICK_SMTP_URL", refusing.url)
        assert run("send", "2026-12", "--yes").exit_code == 1  # stopped: all four still pending
    members = project / "subscribers" / "medlemmar.csv"
    members.write_text("".join(line for line in members.read_text("utf-8").splitlines(keepends=True)
                               if not line.startswith("johan.nilsson")), "utf-8")
    assert run("unsubscribe", "anna.lind@bjorkvik.example").exit_code == 0
    status = run("status", "2026-12")
    assert "remaining 2 · no longer on the lists 2" in status.output, status.output
    assert "Recipients: 2 (2 to send" in run("send", "2026-12", "--dry-run").output


def test_check_warns_when_the_secret_lives_on_this_computer_only(project: Path, run: Run,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    assert "secret lives on this computer only" not in run("check", "2026-12").output  # UTSKICK_SECRET set
    monkeypatch.delenv("UTSKICK_SECRET")
    result = run("check", "2026-12")
    assert result.exit_code == 0
    assert (".utskick/secret: warning: the secret lives on this computer only: copy .utskick/secret "
            "or set UTSKICK_SECRET on every computer that sends") in result.output, result.output


def test_ctrl_c_at_the_prompt_exits_130(project: Path) -> None:
    """On a real terminal (a pty): Ctrl-C at y/N sends nothing and exits 130, not 'Aborted!' and 1."""
    import os
    import pty
    import select
    import signal
    import sys
    import time

    pid, fd = pty.fork()
    if pid == 0:  # the child: the real command on a terminal
        # An ignored SIGINT (a parent under nohup, some CI runners) survives exec: reset it.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.execv(sys.executable, [sys.executable, "-m", "utskick", "send", "2026-12"])
    deadline = time.monotonic() + 60

    def read_some(wait: float) -> bytes | None:
        """The child's next output; b"" once it has closed the terminal; None after `wait` seconds
        of silence. Never waits past the deadline."""
        ready, _, _ = select.select([fd], [], [], max(0.0, min(wait, deadline - time.monotonic())))
        if not ready:
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"no answer from the child in time: {output!r}")
            return None
        try:
            return os.read(fd, 4096)
        except OSError:  # EIO: the child has exited and the terminal is gone
            return b""

    output = b""
    while b"Send to" not in output:
        chunk = read_some(60)
        assert chunk, output
        output += chunk
    # The terminal turns Ctrl-C into SIGINT. One that lands between the prompt's write and its
    # read can go unseen on a loaded machine, as a person would press it again: until it exits.
    os.write(fd, b"\x03")
    while (chunk := read_some(0.5)) != b"":
        if chunk is None:
            os.write(fd, b"\x03")
        else:
            output += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 130, output
    assert b"Aborted!" not in output and b"interrupted" in output
    assert not (project / "outbox").exists() and not (project / ".utskick" / "utskick.db").exists()


def test_one_bad_test_address_sends_nothing(project: Path, run: Run, server: Server) -> None:
    result = run("send", "2026-12", "--test", "ok@sjolandet.example", "--test", "trasig@", "--yes")
    assert result.exit_code == 1
    assert "--test trasig@: not a valid address" in result.output
    assert server.recorder.received == []


def test_bounces_a_killed_run_left_in_the_journal_are_suppressed_next_time(project: Path, run: Run) -> None:
    assert run("send", "2026-12", "--yes").exit_code == 0
    # As if the run had been killed after recording a bounce but before suppressing it.
    db = sqlite3.connect(project / ".utskick" / "utskick.db")
    with db:
        db.execute("UPDATE delivery SET state = 'bounced', reply = '550 5.1.1 no such user' WHERE email = ?",
                   ("maria.oberg@lindas.example",))
    db.close()
    result = run("send", "2026-12", "--yes")
    assert result.exit_code == 0, result.output
    assert "bounced and added to subscribers/unsubscribed.csv: maria.oberg@lindas.example" in result.output
    assert "nothing left to send" in result.output
    rows = list(csv.DictReader((project / "subscribers" / "unsubscribed.csv").open(encoding="utf-8")))
    assert [(r["email"], r["reason"]) for r in rows] == [("maria.oberg@lindas.example", "bounced: 550 5.1.1 no such user")]


def test_status_of_no_such_issue_is_a_located_error(project: Path, run: Run) -> None:
    result = run("status", "2031-01")
    assert result.exit_code == 1
    assert "issues/2031-01.yaml: error: file not found" in result.output


@pytest.mark.parametrize("blank", ["", "   \n", "kort"])
def test_a_blank_or_short_secret_file_is_an_error_in_check_and_send(project: Path, run: Run,
                                                                    monkeypatch: pytest.MonkeyPatch, blank: str) -> None:
    monkeypatch.delenv("UTSKICK_SECRET")
    (project / ".utskick").mkdir()
    (project / ".utskick" / "secret").write_text(blank, "utf-8")
    for command in (["check", "2026-12"], ["send", "2026-12", "--yes"]):
        result = run(*command)
        assert result.exit_code == 1, result.output
        assert ".utskick/secret: error: the secret is blank or shorter than 16 characters" in result.output
    assert not (project / "outbox").exists()


def test_a_short_utskick_secret_is_an_error(project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UTSKICK_SECRET", "x")
    result = run("send", "2026-12", "--yes")
    assert result.exit_code == 1 and "error: UTSKICK_SECRET is blank or shorter than 16 characters" in result.output
    assert not (project / "outbox").exists()
