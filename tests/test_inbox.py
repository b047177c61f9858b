"""`utskick inbox`: reports and replies read from a real Dovecot over IMAP, or from exported files,
applied to the journal of a real (outbox) send and to subscribers/unsubscribed.csv."""

from __future__ import annotations

import csv
import mailbox
import shutil
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from email import message_from_bytes
from pathlib import Path

import pytest
from conftest import Run, token
from imap_server import NO_MOVE, TOKEN, Dovecot, dovecot
from test_reports import mail

from utskick import inbox, returned
from utskick.credentials import Password, TokenWanted
from utskick.errors import Problem, UtskickError
from utskick.reports import persons
from utskick.project import load_project

ANNA, PETTER, MARIA, JOHAN = ("anna.lind@bjorkvik.example", "petter.akesson@ekeby.example",
                              "maria.oberg@lindas.example", "johan.nilsson@granholm.example")
UNSUBSCRIBE = "avregistrera@sjolandet.example"


def send(run: Run, issue: str = "2026-12") -> dict[str, str]:
    """Send `issue` to the outbox; {address: the Message-ID it was sent with}."""
    result = run("send", issue, "--yes")
    assert result.exit_code == 0, result.output
    ids = {}
    for eml in (Path("outbox") / issue).glob("*.eml"):
        msg = message_from_bytes(eml.read_bytes())
        ids[str(msg["To"]).rpartition("<")[2].rstrip(">")] = str(msg["Message-ID"])
    return ids


def suppressed(project: Path) -> dict[str, str]:
    with (project / "subscribers" / "unsubscribed.csv").open(encoding="utf-8") as f:
        return {row["email"]: row["reason"] for row in csv.DictReader(f)}


def states(project: Path, issue: str = "2026-12") -> dict[str, tuple[str, str]]:
    db = sqlite3.connect(project / ".utskick" / "utskick.db")
    try:
        return {e: (s, r) for e, s, r in db.execute("SELECT email, state, reply FROM delivery WHERE issue=?", (issue,))}
    finally:
        db.close()


def morning_mail(ids: dict[str, str]) -> list[bytes]:
    """What the mailbox holds the morning after: Anna's address is dead (Exchange), Petter asks to
    leave with his token, Maria answers the newsletter, Johan is away."""
    return [
        mail("exchange-ndr.eml", MESSAGE_ID=ids[ANNA], RECIPIENT=ANNA),
        mail("request-token.eml", RECIPIENT=PETTER, TOKEN=token(PETTER)),
        mail("personal-reply.eml", MESSAGE_ID=ids[MARIA], RECIPIENT=MARIA, TOKEN=token(MARIA)),
        mail("out-of-office.eml", MESSAGE_ID=ids[JOHAN], RECIPIENT=JOHAN),
    ]


def write_folder(folder: Path, messages: Sequence[bytes]) -> Path:
    folder.mkdir()
    for n, raw in enumerate(messages, 1):
        (folder / f"{n:02}.eml").write_bytes(raw)
    return folder


# --- exported mail (--from) -------------------------------------------------------------------------


def test_the_morning_after_from_a_folder_of_eml_files(project: Path, run: Run, tmp_path: Path) -> None:
    ids = send(run)
    folder = write_folder(tmp_path / "export", morning_mail(ids))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    result = run("inbox", "--from", str(folder))
    assert result.exit_code == 0, result.output
    assert ("bounced 1 · unsubscribed 1 · delayed 0 · auto-replies 1 · needs a person 0 · unmatched 0 · "
            "left alone 1") in result.output
    assert suppressed(project) == {ANNA: "bounced: 550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found "
                                         "by SMTP address lookup", PETTER: "asked by mail"}
    assert states(project)[ANNA] == ("returned", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found "
                                                 "by SMTP address lookup")
    assert states(project)[MARIA][0] == "sent"
    status = run("status", "2026-12", "--report", "rapport.csv").output
    assert "bounced 0 · failed 0 · uncertain 0 · remaining 0 · bounced after sending 1" in status, status
    report = (project / "rapport.csv").read_text("utf-8")
    assert f"{ANNA},bounced,1,550 5.1.10 RESOLVER.ADR.RecipientNotFound" in report
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # only read

    again = run("inbox", "--from", str(folder))
    assert "bounced 0 · unsubscribed 0" in again.output and "applied earlier 3" in again.output
    assert len(suppressed(project)) == 2

    # The next issue skips both; Maria, who wrote to us, still gets it.
    shutil.copyfile(project / "issues" / "2026-12.yaml", project / "issues" / "2027-01.yaml")
    assert set(send(run, "2027-01")) == {MARIA, JOHAN}


def test_an_mbox_file(project: Path, run: Run, tmp_path: Path) -> None:
    ids = send(run)
    box = mailbox.mbox(tmp_path / "inbox.mbox")
    for raw in morning_mail(ids):
        box.add(raw)
    box.close()
    result = run("inbox", "--from", str(tmp_path / "inbox.mbox"))
    assert result.exit_code == 0, result.output
    assert "bounced 1 · unsubscribed 1" in result.output
    assert set(suppressed(project)) == {ANNA, PETTER}


@pytest.mark.parametrize("name", ["gmail-original.eml", "postfix-headers.eml", "exim-text.eml"])
def test_each_servers_report_bounces_the_recipient(project: Path, run: Run, tmp_path: Path, name: str) -> None:
    ids = send(run)
    folder = write_folder(tmp_path / "export", [mail(name, MESSAGE_ID=ids[JOHAN], RECIPIENT=JOHAN)])
    assert "bounced 1" in run("inbox", "--from", str(folder)).output
    assert suppressed(project)[JOHAN].startswith("bounced: ") and "5.1.1" in suppressed(project)[JOHAN]


def test_a_report_without_returned_headers_is_matched_by_its_recipient(project: Path, run: Run, tmp_path: Path) -> None:
    send(run)
    raw = mail("postfix-delayed-no-headers.eml", RECIPIENT=ANNA)
    failed = raw.replace(b"Action: delayed", b"Action: failed").replace(b"Status: 4.4.1", b"Status: 5.1.1")
    folder = write_folder(tmp_path / "export", [failed])
    assert "bounced 1" in run("inbox", "--from", str(folder)).output
    assert ANNA in suppressed(project)


def test_what_matches_nothing_we_sent_is_unmatched_never_guessed(project: Path, run: Run, tmp_path: Path) -> None:
    send(run)
    stranger = mail("postfix-headers.eml", MESSAGE_ID="<personal-mail@sjolandet.example>", RECIPIENT="okand@annan.example")
    folder = write_folder(tmp_path / "export", [stranger])
    result = run("inbox", "--from", str(folder))
    assert "unmatched 1" in result.output and "bounced 0" in result.output
    assert suppressed(project) == {}


@pytest.mark.parametrize("status, diagnostic, outcome", [
    ("5.2.1", "550 5.2.1 mailbox disabled", "bounced 1"),
    ("5.4.4", "550 5.4.4 no route to the domain", "bounced 1"),
    ("5.4.300", "550 5.4.300 Message expired", "delayed 1"),
    ("4.4.7", "450 4.4.7 delivery time expired", "delayed 1"),
    ("5.7.1", "550 5.7.1 Message rejected as spam", "needs a person 1"),
    ("5.7.233", "550 5.7.233 Remote domain limit exceeded", "needs a person 1"),
])
def test_whose_fault_a_failure_is(project: Path, run: Run, tmp_path: Path, status: str, diagnostic: str,
                                  outcome: str) -> None:
    """Only the recipient's own faults suppress; expiry is soft; refusals about us suppress nobody."""
    ids = send(run)
    raw = mail("postfix-headers.eml", MESSAGE_ID=ids[ANNA], RECIPIENT=ANNA)
    raw = raw.replace(b"Status: 5.1.1", f"Status: {status}".encode())
    raw = raw.replace(b"Diagnostic-Code: smtp; 550 5.1.1", f"Diagnostic-Code: smtp; {diagnostic}".encode())
    result = run("inbox", "--from", str(write_folder(tmp_path / "export", [raw])))
    assert result.exit_code == 0 and outcome in result.output, result.output
    if outcome == "bounced 1":
        assert suppressed(project)[ANNA].startswith(f"bounced: {diagnostic}") and states(project)[ANNA][0] == "returned"
    else:
        assert suppressed(project) == {} and states(project)[ANNA][0] == "sent"
    if outcome == "needs a person 1":
        assert "about the sender: nobody suppressed" in result.output


def test_a_nonstandard_report_without_a_code_needs_a_person(project: Path, run: Run, tmp_path: Path) -> None:
    send(run)
    folder = write_folder(tmp_path / "export", [mail("exim-no-code.eml", RECIPIENT=ANNA)])
    assert "needs a person 1" in run("inbox", "--from", str(folder)).output
    assert suppressed(project) == {}


def test_three_issues_in_a_row_of_soft_failures_suppress(project: Path, run: Run, tmp_path: Path) -> None:
    for n, issue in enumerate(["2026-12", "2027-01", "2027-02"]):
        if issue != "2026-12":
            shutil.copyfile(project / "issues" / "2026-12.yaml", project / "issues" / f"{issue}.yaml")
        ids = send(run, issue)
        delayed = mail("postfix-delayed-no-headers.eml", RECIPIENT=ANNA).replace(
            b"Message-Id: <2026", f"Message-Id: <{issue}-".encode())
        expired = mail("postfix-headers.eml", MESSAGE_ID=ids[ANNA], RECIPIENT=ANNA).replace(
            b"Status: 5.1.1", b"Status: 5.4.7").replace(b"550 5.1.1", b"550 5.4.7 delivery time expired")
        folder = write_folder(tmp_path / f"export-{issue}", [delayed, expired] if n else [delayed])
        if n == 2:
            dry = run("inbox", "--from", str(folder), "--dry-run")
            assert "failed softly on 3 issues in a row" in dry.output and ANNA not in suppressed(project)
        result = run("inbox", "--from", str(folder))
        assert result.exit_code == 0, result.output
        assert (ANNA in suppressed(project)) == (n == 2), result.output
    assert "failed softly on 3 issues in a row" in result.output


def test_a_tokenless_request_needs_a_person_until_confirmed(project: Path, run: Run, tmp_path: Path) -> None:
    send(run)
    folder = write_folder(tmp_path / "export", [mail("request-plain.eml", RECIPIENT=MARIA),
                                                mail("request-plain.eml", RECIPIENT="okand@annan.example")])
    first = run("inbox", "--from", str(folder))
    assert "needs a person 1" in first.output and "--confirm" in first.output and "left alone 1" in first.output
    assert suppressed(project) == {}
    confirmed = run("inbox", "--from", str(folder), "--confirm")
    assert "unsubscribed 1" in confirmed.output
    assert suppressed(project) == {MARIA: "asked by mail (confirmed by the editor)"}


def test_a_dry_run_changes_nothing(project: Path, run: Run, tmp_path: Path) -> None:
    ids = send(run)
    folder = write_folder(tmp_path / "export", morning_mail(ids))
    result = run("inbox", "--from", str(folder), "--dry-run")
    assert "bounced 1 · unsubscribed 1" in result.output and "nothing was changed" in result.output
    assert suppressed(project) == {} and states(project)[ANNA][0] == "sent"
    assert "bounced 1" in run("inbox", "--from", str(folder)).output  # nothing was recorded either


def test_a_path_that_is_no_mail_is_a_located_error(project: Path, run: Run, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hej\n")
    result = run("inbox", "--from", str(tmp_path / "notes.txt"))
    assert result.exit_code == 1 and "notes.txt:1:1: error: neither a folder of .eml files nor an mbox" in result.output
    missing = run("inbox", "--from", str(tmp_path / "saknas.mbox"))
    assert missing.exit_code == 1 and "saknas.mbox: error: file not found" in missing.output
    both = run("inbox", "--from", str(tmp_path), "--folder", "INBOX")
    assert both.exit_code == 2 and "--folder names an IMAP folder" in both.output


# --- IMAP ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[Dovecot]:
    with dovecot() as d:
        yield d


@pytest.fixture
def imap(server: Dovecot, project: Path, monkeypatch: pytest.MonkeyPatch) -> Dovecot:
    """An emptied mailbox, and the environment pointing at it with a password."""
    with server.client() as c:
        for flags, _, name in sorted(c.list_folders(), key=lambda f: -len(f[2])):  # children first
            if b"\\Noselect" in flags:  # a parent Dovecot made, gone with its last child
                continue
            c.select_folder(name)
            c.delete_messages(c.search())
            c.expunge()
            c.close_folder()
            if name != "INBOX":
                c.delete_folder(name)
    monkeypatch.setenv("UTSKICK_IMAP_URL", server.url)
    monkeypatch.setenv("UTSKICK_IMAP_PASSWORD", "hemligt-lösenord")
    monkeypatch.setenv("UTSKICK_IMAP_CAFILE", str(server.cafile))
    monkeypatch.delenv("UTSKICK_IMAP_TOKEN_COMMAND", raising=False)
    return server


def test_the_morning_after_over_imap(imap: Dovecot, project: Path, run: Run) -> None:
    ids = send(run)
    imap.append(*morning_mail(ids))
    result = run("inbox")
    assert result.exit_code == 0, result.output
    assert "bounced 1 · unsubscribed 1 · delayed 0 · auto-replies 1" in result.output
    (left,) = imap.contents("INBOX")
    assert b"Tack f\xc3\xb6r artikeln" in left  # Maria's reply: still there, untouched
    assert imap.flags() == [()]  # not even marked read
    assert len(imap.contents("utskick.behandlat")) == 3  # the server's delimiter is '.'
    assert set(suppressed(project)) == {ANNA, PETTER}

    again = run("inbox")
    assert "bounced 0 · unsubscribed 0 · delayed 0 · auto-replies 0 · needs a person 0 · unmatched 0 · left alone 1" \
        in again.output
    assert len(imap.contents("INBOX")) == 1 and len(imap.contents("utskick.behandlat")) == 3


def test_a_dry_run_over_imap_moves_nothing(imap: Dovecot, project: Path, run: Run) -> None:
    imap.append(*morning_mail(send(run)))
    assert "bounced 1" in run("inbox", "--dry-run").output
    assert len(imap.contents("INBOX")) == 4 and imap.flags() == [()] * 4
    assert suppressed(project) == {}


def test_several_folders_and_folder_option(imap: Dovecot, project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = send(run)
    imap.append(mail("exchange-ndr.eml", MESSAGE_ID=ids[ANNA], RECIPIENT=ANNA))
    imap.append(mail("request-token.eml", RECIPIENT=PETTER, TOKEN=token(PETTER)), folder="Avregistrera")
    only = run("inbox", "--folder", "Avregistrera")
    assert "bounced 0 · unsubscribed 1" in only.output
    monkeypatch.setenv("UTSKICK_IMAP_URL", imap.url + ",Avregistrera")
    both = run("inbox")
    assert "bounced 1 · unsubscribed 0" in both.output and "applied earlier" not in both.output
    assert set(suppressed(project)) == {ANNA, PETTER}
    assert imap.contents("Avregistrera") == [] and len(imap.contents("utskick.behandlat")) == 2


def no_tokens(user: str) -> None:
    return None


@dataclass
class KilledWhileMoving:
    """The real folder, with the process dying just before the processed messages are moved."""

    folder: inbox.Folder

    @property
    def label(self) -> str:
        return self.folder.label

    def messages(self) -> Iterator[inbox.Mail]:
        return self.folder.messages()

    def put_away(self, mails: Sequence[inbox.Mail]) -> list[Problem]:
        raise KeyboardInterrupt


def test_a_kill_between_applying_and_moving_applies_nothing_twice(imap: Dovecot, project: Path, run: Run) -> None:
    for issue in ("2027-01", "2027-02"):
        shutil.copyfile(project / "issues" / "2026-12.yaml", project / "issues" / f"{issue}.yaml")
        send(run, issue)
    ids = send(run, "2026-12")
    expired = mail("postfix-headers.eml", MESSAGE_ID=ids[JOHAN], RECIPIENT=JOHAN).replace(
        b"Status: 5.1.1", b"Status: 4.4.7").replace(b"550 5.1.1", b"450 4.4.7 expired")
    imap.append(*morning_mail(ids), expired)
    folders = (KilledWhileMoving(f) for f in inbox.imap_folders(inbox.from_environment(), no_tokens, readonly=False))
    with pytest.raises(KeyboardInterrupt):
        returned.apply(load_project(), folders)
    assert len(imap.contents("INBOX")) == 5  # applied, recorded, not yet moved
    applied = suppressed(project)

    result = run("inbox")
    assert "bounced 0 · unsubscribed 0 · delayed 0" in result.output and "applied earlier 4" in result.output
    assert suppressed(project) == applied
    assert len(imap.contents("INBOX")) == 1 and len(imap.contents("utskick.behandlat")) == 4


def test_an_older_server_without_move_expunges_exactly_the_processed_uids(project: Path, run: Run,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with dovecot(move=False) as old:
        with old.client() as c:
            assert not c.has_capability("MOVE") and "MOVE" not in NO_MOVE.split()
        ids = send(run)
        old.append(*morning_mail(ids))
        # The owner marked a mail deleted but has not expunged it: a plain EXPUNGE would lose it.
        old.append(b"From: x@annan.example\r\nSubject: utkast\r\nMessage-ID: <utkast@annan.example>\r\n\r\nhej\r\n")
        with old.client() as c:
            c.select_folder("INBOX")
            c.add_flags(c.search(["SUBJECT", "utkast"]), [b"\\Deleted"])
        monkeypatch.setenv("UTSKICK_IMAP_URL", old.url)
        monkeypatch.setenv("UTSKICK_IMAP_PASSWORD", "hemligt-lösenord")
        monkeypatch.setenv("UTSKICK_IMAP_CAFILE", str(old.cafile))
        result = run("inbox")
        assert result.exit_code == 0, result.output
        assert "bounced 1 · unsubscribed 1" in result.output
        assert len(old.contents("INBOX.utskick.behandlat")) == 3  # in the server's namespace
        assert old.flags() == [(), (b"\\Deleted",)]  # Maria's reply, and the owner's deleted draft


def use(server: Dovecot, monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    monkeypatch.setenv("UTSKICK_IMAP_URL", server.url)
    monkeypatch.setenv("UTSKICK_IMAP_CAFILE", str(server.cafile))
    for name, value in env.items():
        monkeypatch.setenv(f"UTSKICK_IMAP_{name}", value)


# Dovecot makes the next sign-in from an address wait after a refused one: the tests that are
# refused have a server of their own.


def test_xoauth2_against_dovecots_oauth2_passdb(project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    with dovecot() as server:
        server.append(*morning_mail(send(run)))
        use(server, monkeypatch, TOKEN_COMMAND=f'"{sys.executable}" -c "print(\'{TOKEN}\')"')
        monkeypatch.setenv("UTSKICK_IMAP_URL", server.url + "?auth=xoauth2")
        monkeypatch.delenv("UTSKICK_IMAP_PASSWORD", raising=False)
        result = run("inbox")
        assert result.exit_code == 0, result.output
        assert "bounced 1" in result.output and server.asked == [TOKEN]

        monkeypatch.setenv("UTSKICK_IMAP_TOKEN_COMMAND", f'"{sys.executable}" -c "print(\'expired-token\')"')
        refused = run("inbox")
        assert refused.exit_code == 1 and "the token was refused" in refused.output
        assert "expired-token" not in refused.output and server.asked == [TOKEN, "expired-token"]


def test_a_wrong_password_exits_1_without_printing_it(project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    with dovecot() as server:
        use(server, monkeypatch, PASSWORD="fel-lösenord")
        result = run("inbox")
        assert result.exit_code == 1 and "127.0.0.1:" in result.output and "sign-in refused" in result.output
        assert "lösenord" not in result.output


def test_a_persons_mail_is_read_as_its_header_alone(imap: Dovecot, project: Path) -> None:
    reply = mail("personal-reply.eml", MESSAGE_ID="<x@y>", RECIPIENT=MARIA)
    reply = reply.replace(b"/Lars", b"/Lars\r\n" + b"bilaga " * 20000)
    imap.append(reply, mail("exchange-ndr.eml", MESSAGE_ID="<x@y>", RECIPIENT=ANNA))
    read = [list(f.messages()) for f in inbox.imap_folders(inbox.from_environment(), no_tokens, readonly=True,
                                                           persons=lambda head: persons(head, UNSUBSCRIBE))]
    ((person, report),) = read
    assert person.raw.endswith(b"\r\n\r\n") and b"bilaga" not in person.raw and b"Lars Nilsson" in person.raw
    assert b"RESOLVER.ADR.RecipientNotFound" in report.raw


class Fixed:
    """A token source of the caller's own: the one token Dovecot takes."""

    def token(self) -> str:
        return TOKEN

    def refused(self, token: str) -> None:
        raise AssertionError("not refused")


def test_a_token_source_of_the_callers_own(imap: Dovecot, project: Path) -> None:
    """The hook for another sign-in: any `oauth.TokenSource`."""
    oauth = [replace(a, sign_in=TokenWanted(a.username)) for a in inbox.from_environment()]
    asked = []

    def tokens(user: str) -> Fixed:
        asked.append(user)
        return Fixed()

    folders = list(inbox.imap_folders(oauth, tokens, readonly=True))
    assert asked == ["nyhetsbrev@sjolandet.example"]
    assert [f.label for f in folders] == ["nyhetsbrev@sjolandet.example@127.0.0.1/INBOX"]


@pytest.mark.parametrize("change, expected", [
    ({"UTSKICK_IMAP_CAFILE": ""}, "certificate could not be verified"),
    ({"UTSKICK_IMAP_CAFILE": "saknas.pem"}, "saknas.pem: error: UTSKICK_IMAP_CAFILE: cannot use it"),
    ({"UTSKICK_IMAP_PASSWORD": ""}, "no password: set UTSKICK_IMAP_PASSWORD"),
    ({"UTSKICK_IMAP_URL": "imaps://nyhetsbrev%40sjolandet.example@127.0.0.1:1/INBOX"}, "cannot connect"),
    ({"UTSKICK_IMAP_URL": "https://example.se/INBOX"}, "must start with imaps://"),
    ({"UTSKICK_IMAP_URL": ""}, "UTSKICK_IMAP_URL is not set"),
])
def test_sign_in_and_tls_failures_exit_1_without_a_secret(imap: Dovecot, project: Path, run: Run,
                                                          monkeypatch: pytest.MonkeyPatch, change: dict[str, str],
                                                          expected: str) -> None:
    for name, value in change.items():
        monkeypatch.setenv(name, value)
    result = run("inbox")
    assert result.exit_code == 1 and expected in result.output, result.output
    assert "Traceback" not in result.output and "lösenord" not in result.output


def test_starttls_on_the_imap_port(imap: Dovecot, project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    imap.append(*morning_mail(send(run)))
    monkeypatch.setenv("UTSKICK_IMAP_URL", f"imap://nyhetsbrev%40sjolandet.example@127.0.0.1:{imap.starttls_port}/INBOX")
    result = run("inbox")
    assert result.exit_code == 0 and "bounced 1" in result.output, result.output


def test_urls_name_mailboxes_and_their_folders() -> None:
    a, b = inbox.parse_imap_urls("imaps://nyhetsbrev%40x.se:p%40ss@mail.x.se/INBOX, Avregistrera%20och%20svar ,"
                                 "imap://avregistrera%40x.se@mail.x.se:1143?auth=xoauth2", "hemligt")
    assert (a.username, a.host, a.port, a.implicit_tls, a.folders, a.sign_in) == \
        ("nyhetsbrev@x.se", "mail.x.se", 993, True, ("INBOX", "Avregistrera och svar"), Password("nyhetsbrev@x.se", "hemligt"))
    assert (b.username, b.port, b.implicit_tls, b.folders, b.sign_in) == \
        ("avregistrera@x.se", 1143, False, ("INBOX",), TokenWanted("avregistrera@x.se"))
    assert "hemligt" not in repr(a)
    assert inbox.parse_imap_urls("imaps://u%40x.se:p%40ss@h/INBOX")[0].sign_in == Password("u@x.se", "p@ss")


@pytest.mark.parametrize("url, expected", [
    ("INBOX", "must start with imaps://"), ("imaps://host/INBOX", "cannot be read"),
    ("imaps://u%40x.se@h/INBOX?auth=basic", "the only option after '?' is auth=xoauth2"),
    ("imaps://u%40x.se@h:99999/INBOX", "cannot be read"),
])
def test_urls_that_cannot_be_used(url: str, expected: str) -> None:
    with pytest.raises(UtskickError) as e:
        inbox.parse_imap_urls(url)
    assert expected in str(e.value) and "u%40x.se" not in str(e.value)


def test_a_folder_that_cannot_be_read(imap: Dovecot, project: Path, run: Run) -> None:
    result = run("inbox", "--folder", "Finns-inte")
    assert result.exit_code == 1 and "Finns-inte: cannot open the folder" in result.output


def test_the_mail_apps_unsubscribe_button_unsubscribes_through_the_token_in_the_subject(project: Path, run: Run) -> None:
    """What a mail app sends for List-Unsubscribe's mailto: the subject utskick put there."""
    from urllib.parse import parse_qs, unquote, urlsplit

    send(run)
    (eml,) = [p for p in (Path("outbox") / "2026-12").glob("*.eml") if MARIA in p.name]
    header = " ".join(str(message_from_bytes(eml.read_bytes())["List-Unsubscribe"]).split())
    mailto = next(t.strip(" <>") for t in header.split(",") if t.strip(" <").startswith("mailto:"))
    assert header.index("https://") < header.index("mailto:")  # the https link first: Gmail uses it
    subject = parse_qs(urlsplit(mailto).query)["subject"][0]
    assert subject == f"avregistrera {token(MARIA)}"
    folder = project / "export"
    folder.mkdir()
    (folder / "knapp.eml").write_text(
        f"From: Maria <{MARIA}>\r\nTo: {unquote(urlsplit(mailto).path)}\r\nSubject: {subject}\r\n"
        "Message-ID: <knapp-1@lindas.example>\r\n\r\n", "utf-8")
    result = run("inbox", "--from", str(folder))
    assert result.exit_code == 0, result.output
    assert "unsubscribed 1" in result.output
    assert MARIA in suppressed(project)
