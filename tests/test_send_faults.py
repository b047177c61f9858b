"""Servers that misbehave on purpose: each fault ends in the state the issue promises."""

from __future__ import annotations

import asyncio
import csv
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import Run
from sendkit import FAST, send, smtp, write_list
from aiosmtpd.smtp import AuthResult
from smtp_server import Recorder, Server, refuse_all, self_signed, unresponsive

from utskick.delivery import Policy
from utskick.journal import Journal


def journal_states(project: Path, transport: str = "smtp") -> Counter[str]:
    with Journal.open(project / ".utskick", "2026-12", transport) as j:
        return Counter(r.shown_state for r in j.rows())


def unsubscribed(project: Path) -> list[dict[str, str]]:
    with (project / "subscribers" / "unsubscribed.csv").open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_greylisting_451_is_retried(project: Path) -> None:
    addresses = write_list(project, 8)
    seen: set[str] = set()

    def greylist(address: str) -> str | None:
        if address in seen:
            return None
        seen.add(address)
        return "451 4.7.1 Greylisted, try again later"

    with Server(Recorder(on_rcpt=greylist)) as server:
        outcome = send(smtp(server.url))
    assert outcome.exit_code == 0 and outcome.counts.sent == 8
    assert sorted(server.recorder.addresses()) == sorted(addresses)
    with Journal.open(project / ".utskick", "2026-12", "smtp") as j:
        assert {r.attempts for r in j.rows()} == {2}


def test_retries_run_out_then_failed_and_a_rerun_tries_again(project: Path) -> None:
    write_list(project, 4)
    always = Recorder(on_rcpt=lambda a: "452 4.2.2 Mailbox full" if a.startswith("petter") else None)
    with Server(always) as server:
        outcome = send(smtp(server.url), policy=replace(FAST, retries=2))
    assert outcome.exit_code == 0
    assert (outcome.counts.sent, outcome.counts.failed) == (3, 1)
    with Journal.open(project / ".utskick", "2026-12", "smtp") as j:
        [failed] = j.rows("failed")
    assert failed.attempts == 3 and failed.reply == "452 4.2.2 Mailbox full"
    with Server(Recorder()) as server:
        assert send(smtp(server.url)).counts.sent == 4
        assert server.recorder.addresses() == [failed.email]


def test_unknown_user_is_bounced_and_suppressed_and_the_rest_sent(project: Path, run: Run,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    addresses = write_list(project, 10)
    bad = addresses[3]
    rec = Recorder(on_rcpt=lambda a: f"550 5.1.1 <{a}>: Recipient address rejected: User unknown" if a == bad else None)
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace("rate: 30/min", "rate: 500/s"), "utf-8")
    with Server(rec) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", server.url)
        result = run("send", "2026-12", "--list", "stor", "--yes")
    assert result.exit_code == 0, result.output
    assert "sent 9 · bounced 1" in result.output and f"unsubscribed.csv: {bad}" in result.output
    assert sorted(rec.addresses()) == sorted(a for a in addresses if a != bad)
    [row] = unsubscribed(project)
    assert row["email"] == bad and "5.1.1" in row["reason"]
    assert "Recipients: 9 (0 to send" in run("send", "2026-12", "--list", "stor", "--dry-run").output


def test_sender_refused_stops_everything_and_suppresses_nobody(project: Path, run: Run,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    addresses = write_list(project, 10)
    refusing = Recorder(on_mail=lambda a: "550 5.7.60 SMTP; Client does not have permissions to send as this sender")
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace("rate: 30/min", "rate: 500/s"), "utf-8")
    with Server(refusing) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", server.url)
        result = run("send", "2026-12", "--list", "stor", "--yes")
    assert result.exit_code == 1
    assert "stopped: the server answered 550 5.7.60" in result.output and "run the same command" in result.output
    assert "(at " not in result.output  # the sender was refused, not a recipient
    assert refusing.received == [] and unsubscribed(project) == []
    assert journal_states(project) == {"pending": 10}
    with Server(Recorder()) as fixed:
        monkeypatch.setenv("UTSKICK_SMTP_URL", fixed.url)
        assert run("send", "2026-12", "--list", "stor", "--yes").exit_code == 0
        assert sorted(fixed.recorder.addresses()) == sorted(addresses)


def test_a_streak_of_refused_recipients_stops_and_suppresses_nobody(project: Path) -> None:
    write_list(project, 20)
    for _ in range(2):  # and again, the relay still unfixed: the put-back ones wait behind new ones
        with Server(Recorder(on_rcpt=lambda a: "550 5.1.1 User unknown")) as server:
            outcome = send(smtp(server.url), policy=replace(FAST, concurrency=3))
        assert outcome.exit_code == 1 and "in a row" in str(outcome.stopped)
        assert outcome.suppressed == [] and unsubscribed(project) == []
        assert journal_states(project) == {"pending": 20}


def test_the_bounce_streak_message_is_one_sentence(project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    write_list(project, 10)
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace("rate: 30/min", "rate: 500/s"), "utf-8")
    with Server(Recorder(on_rcpt=lambda a: "550 5.1.1 User unknown")) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", server.url)
        result = run("send", "2026-12", "--list", "stor", "--yes")
    assert result.exit_code == 1
    [line] = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert line.startswith("error: stopped: 5 recipients in a row were refused as unknown addresses "
                           "(last: 550 5.1.1 User unknown), so the relay may be refusing everyone")
    assert line.count("run the same command") == 1 and "answered" not in line


def test_five_dead_addresses_in_a_row_do_not_block_the_next_run(project: Path) -> None:
    addresses = write_list(project, 12)
    dead = set(addresses[2:7])
    refusing = Recorder(on_rcpt=lambda a: "550 5.1.1 User unknown" if a in dead else None)
    with Server(refusing) as server:
        first = send(smtp(server.url), policy=replace(FAST, concurrency=1))
        assert first.exit_code == 1 and unsubscribed(project) == []
        second = send(smtp(server.url), policy=replace(FAST, concurrency=1))
    assert second.exit_code == 0, second.stopped
    assert (second.counts.sent, second.counts.bounced) == (7, 5)
    assert sorted(server.recorder.addresses()) == sorted(a for a in addresses if a not in dead)
    assert sorted(r["email"] for r in unsubscribed(project)) == sorted(dead)


def test_421_and_dropped_connections_reconnect(project: Path) -> None:
    addresses = write_list(project, 30)
    served = Counter[str]()

    def flaky(address: str) -> str | None:
        served["mail"] += 1
        if served["mail"] % 7 == 0:
            return "421 4.3.2 Service shutting down"
        if served["mail"] % 11 == 0:
            return "drop"
        return None

    with Server(Recorder(on_mail=flaky)) as server:
        outcome = send(smtp(server.url))
    assert outcome.exit_code == 0 and outcome.counts.sent == 30
    assert sorted(server.recorder.addresses()) == sorted(addresses)


def test_lost_reply_after_data_is_uncertain_and_only_resent_on_request(project: Path) -> None:
    addresses = write_list(project, 6)
    lost = addresses[2]
    with Server(Recorder(on_data=lambda a: "accept-then-drop" if a == lost else None)) as server:
        outcome = send(smtp(server.url))
        assert outcome.exit_code == 0
        assert [r.email for r in outcome.uncertain] == [lost]
        assert (outcome.counts.sent, outcome.counts.uncertain) == (5, 1)
        assert server.recorder.count(lost) == 1
        again = send(smtp(server.url))
        assert again.counts.uncertain == 1 and server.recorder.count(lost) == 1
    with Server(Recorder()) as server:
        resent = send(smtp(server.url), resend_uncertain=True)
        assert resent.uncertain == [] and resent.counts.sent == 6
        assert server.recorder.addresses() == [lost]


def test_slow_server_times_out_and_is_retried(project: Path) -> None:
    addresses = write_list(project, 5)
    slow_once: set[str] = set()

    async def slow(address: str) -> None:
        if address == addresses[1] and address not in slow_once:
            slow_once.add(address)
            await asyncio.sleep(1.5)
        else:
            await asyncio.sleep(0.02)

    with Server(Recorder(on_rcpt=slow)) as server:
        outcome = send(smtp(server.url, timeout=0.5))
    assert outcome.exit_code == 0 and outcome.counts.sent == 5
    assert sorted(server.recorder.addresses()) == sorted(addresses)
    with Journal.open(project / ".utskick", "2026-12", "smtp") as j:
        slowest = j.get(addresses[1])
    assert slowest is not None and slowest.attempts == 2


def test_authentication_failure_stops_and_marks_nobody_sent(project: Path, run: Run,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    write_list(project, 5)
    cert, tls = self_signed(project.parent)
    with Server(Recorder(), authenticator=refuse_all, tls_context=tls, require_starttls=True) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", f"smtp://nyhetsbrev@127.0.0.1:{server.port}?starttls=require")
        monkeypatch.setenv("UTSKICK_SMTP_PASSWORD", "fel-lösenord-123")
        monkeypatch.setenv("UTSKICK_SMTP_CAFILE", str(cert))
        result = run("send", "2026-12", "--list", "stor", "--yes")
    assert result.exit_code == 1
    assert "authentication failed" in result.output and "535" in result.output
    # The random port may itself contain 535: count the code in the output without it.
    assert "answered 535" not in result.output and result.output.replace(str(server.port), "").count("535") == 1
    assert "fel-lösenord-123" not in result.output
    assert server.recorder.received == []
    assert journal_states(project) == {"pending": 5}


def test_credentials_are_never_sent_over_plaintext(project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    write_list(project, 3)
    tried: list[str] = []

    def authenticator(server: object, session: object, envelope: object, mechanism: str, data: object) -> AuthResult:
        tried.append(mechanism)
        return AuthResult(success=True)

    with Server(Recorder(), authenticator=authenticator, auth_require_tls=False) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", f"smtp://nyhetsbrev@127.0.0.1:{server.port}")
        monkeypatch.setenv("UTSKICK_SMTP_PASSWORD", "hemligt-123")
        result = run("send", "2026-12", "--list", "stor", "--yes")
    assert result.exit_code == 1 and "only ever sent over TLS" in result.output, result.output
    assert tried == [] and server.recorder.received == []


def test_starttls_verifies_against_the_ca_file(project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """UTSKICK_SMTP_CAFILE trusts a relay's own certificate; without it the same relay is refused."""
    addresses = write_list(project, 3)
    cert, tls = self_signed(project.parent)
    with Server(Recorder(), tls_context=tls, require_starttls=True) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", f"{server.url}?starttls=require")
        untrusted = run("send", "2026-12", "--list", "stor", "--yes")
        assert untrusted.exit_code == 1 and "certificate" in untrusted.output.lower(), untrusted.output
        assert server.recorder.received == []
        monkeypatch.setenv("UTSKICK_SMTP_CAFILE", str(cert))
        trusted = run("send", "2026-12", "--list", "stor", "--yes")
        assert trusted.exit_code == 0, trusted.output
    assert sorted(server.recorder.addresses()) == sorted(addresses)


def test_an_unreadable_ca_file_is_named(project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "inte-ett-cert.pem").write_text("hej\n", "utf-8")
    monkeypatch.setenv("UTSKICK_SMTP_URL", "smtp://nyhetsbrev@smtp.example.se")
    monkeypatch.setenv("UTSKICK_SMTP_CAFILE", "inte-ett-cert.pem")
    result = run("send", "2026-12", "--dry-run")
    assert result.exit_code == 1 and "inte-ett-cert.pem" in result.output and "UTSKICK_SMTP_CAFILE" in result.output


def test_starttls_required_but_not_offered(project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    write_list(project, 3)
    with Server(Recorder()) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", f"{server.url}?starttls=require")
        result = run("send", "2026-12", "--list", "stor", "--yes")
    assert result.exit_code == 1 and "STARTTLS" in result.output
    assert server.recorder.received == []


def test_connection_refused_stops(project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from smtp_server import free_port

    monkeypatch.setenv("UTSKICK_SMTP_URL", f"smtp://127.0.0.1:{free_port()}")
    result = run("send", "2026-12", "--yes")
    assert result.exit_code == 1 and "cannot connect" in result.output
    assert journal_states(project) == {"pending": 4}


def test_rate_is_honoured_across_connections(project: Path) -> None:
    """30/min scaled to 20/s: no window of the counted timestamps may exceed it."""
    write_list(project, 24)
    rate = 20.0
    with Server(Recorder()) as server:
        outcome = send(smtp(server.url), policy=Policy(concurrency=4, per_second=rate, retries=1))
    assert outcome.counts.sent == 24
    times = sorted(t for _, _, t in server.recorder.received)
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            # j - i + 1 messages arrived within times[j] - times[i]: at most one slot early (jitter).
            assert j - i <= rate * (times[j] - times[i]) + 1.5, (i, j)


@pytest.mark.parametrize("greeting", [None, b"421 4.3.2 Too busy, try later\r\n"], ids=["silent", "busy"])
def test_an_unresponsive_relay_stops_the_send_and_fails_nobody(project: Path, greeting: bytes | None) -> None:
    write_list(project, 12)
    with unresponsive(greeting) as port:
        outcome = send(smtp(f"smtp://127.0.0.1:{port}", timeout=0.3))
    assert outcome.exit_code == 1 and "could not be reached" in str(outcome.stopped)
    assert outcome.counts.failed == 0
    assert journal_states(project) == {"pending": 12}
    with Server(Recorder()) as server:
        assert send(smtp(server.url)).counts.sent == 12  # resumable


def test_a_run_where_everyone_fails_says_so_and_exits_1(project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    write_list(project, 3)
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace("rate: 30/min", "rate: 500/s").replace("retries: 5", "retries: 0"), "utf-8")
    with Server(Recorder(on_rcpt=lambda a: "452 4.2.2 Mailbox full")) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", server.url)
        result = run("send", "2026-12", "--list", "stor", "--yes")
    assert result.exit_code == 1, result.output
    assert "error: every recipient failed (3)" in result.output
    assert journal_states(project) == {"failed": 3}
