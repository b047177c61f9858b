"""One conversion for every address: what the journal keys on is what the message is sent to."""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest
from conftest import Run
from smtp_server import Recorder, Server

from utskick.addresses import InvalidAddress, ascii_form, normalise
from utskick.replies import Reply, fault, for_send


@pytest.mark.parametrize(("address", "ascii"), [
    ("anna@straße.de", "anna@xn--strae-oqa.de"),  # IDNA 2003 would say strasse.de: another domain
    ("anna@ς.example", "anna@xn--3xa.example"),
    ("anna@Åre.se", "anna@xn--re-xia.se"),
    ("Anna.Lind@storvik.example", "Anna.Lind@storvik.example"),
])
def test_the_ascii_form_is_the_canonical_keys(address: str, ascii: str) -> None:
    assert ascii_form(address) == ascii
    assert normalise(address)[1] == ascii.lower()


def test_an_address_that_has_no_ascii_form_is_refused() -> None:
    with pytest.raises(InvalidAddress):
        ascii_form("åsa@example.se")


def test_a_sharp_s_domain_is_mailed_at_its_own_domain(project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "subscribers" / "de.csv").write_text("email,namn\nanna@straße.de,Anna\n", "utf-8")
    with Server(Recorder()) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", server.url)
        result = run("send", "2026-12", "--list", "de", "--yes")
        assert result.exit_code == 0, result.output
        assert server.recorder.addresses() == ["anna@xn--strae-oqa.de"]
        msg = email.message_from_bytes(server.recorder.received[0][1], policy=policy.default)
    assert msg["To"].addresses[0].domain in ("xn--strae-oqa.de", "straße.de")
    assert "strasse" not in str(msg["To"])


def test_a_mailto_with_a_display_name_is_a_located_error(project: Path, run: Run) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace(
        "mailto: avregistrera@sjolandet.example", 'mailto: "Avregistrering <avregistrera@sjolandet.example>"'), "utf-8")
    result = run("check", "2026-12")
    assert result.exit_code == 1
    assert "newsletter.yaml:15:" in result.output and "write the address alone" in result.output, result.output


@pytest.mark.parametrize(("code", "text", "stage", "verdict"), [
    (432, "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", "data", "temporary"),
    (554, "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message", "data", "budget"),
    (550, "5.7.233 Your message can't be sent because you've reached your organization's limit", "rcpt", "budget"),
    (554, "5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied", "data", "fatal"),
    (550, "5.7.60 SMTP; Client does not have permissions to send as this sender", "mail", "fatal"),
    (554, "5.2.0 STOREDRV.Submission.Exception:QuotaExceededException.MapiExceptionQuotaExceeded", "data", "fatal"),
    (550, "5.2.252 SendAsDenied; throttled after repeated errors", "rcpt", "fatal"),
    (550, "5.1.1 RESOLVER.ADR.RecipNotFound; not found", "rcpt", "bounced"),
    (550, "5.1.1 no such user", "data", "fatal"),  # a 5.1.1 after DATA is not about one address
    (535, "5.7.139 Authentication unsuccessful, basic authentication is disabled", "auth", "fatal"),
])
def test_replies_are_told_apart_by_code_and_text(code: int, text: str, stage: str, verdict: str) -> None:
    assert for_send(Reply(code, text), stage)[0] == verdict


def test_microsoft_replies_say_what_to_do() -> None:
    assert "Sent Items" in for_send(Reply(554, "5.2.0 STOREDRV.Submission.Exception:QuotaExceededException"), "data")[1]
    assert "send as" in for_send(Reply(554, "5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException"), "data")[1]
    assert "throttling" in for_send(Reply(550, "5.2.251 throttled"), "rcpt")[1]
    assert "OAuth2" in for_send(Reply(535, "5.7.139 Authentication unsuccessful"), "auth")[1]


@pytest.mark.parametrize(("status", "who"), [
    ((5, 1, 10), "recipient"), ((5, 2, 1), "recipient"), ((5, 4, 1), "recipient"), ((5, 4, 4), "recipient"),
    ((5, 4, 7), "soft"), ((5, 4, 300), "soft"), ((4, 4, 1), "soft"),
    ((5, 7, 1), "ours"), ((5, 7, 233), "ours"), (None, None),
])
def test_whose_fault_a_report_is(status: tuple[int, int, int] | None, who: str | None) -> None:
    assert fault(status) == who


def test_a_spent_microsoft_quota_stops_with_75_and_suppresses_nobody(project: Path, run: Run,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def quota(address: str) -> str | None:
        seen.append(address)
        if len(seen) > 1:
            return "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message"
        return None

    with Server(Recorder(on_data=quota)) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", server.url)
        settings = project / "newsletter.yaml"
        settings.write_text(settings.read_text("utf-8").replace("concurrency: 4", "concurrency: 1").replace("rate: 30/min", "rate: 500/s"), "utf-8")
        result = run("send", "2026-12", "--yes")
    assert result.exit_code == 75, result.output
    assert "sending limit for this mailbox is reached" in result.output and "run the same command later" in result.output
    assert "error:" not in result.output
    assert (project / "subscribers" / "unsubscribed.csv").read_text("utf-8") == "email,date,reason\n"  # nobody suppressed
    status = run("status", "2026-12").output
    assert "sent 1 · bounced 0 · failed 0 · uncertain 0 · remaining 3" in status, status
