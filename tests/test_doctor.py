"""`utskick doctor` against local relays and a local stand-in DNS server that pass and fail each check."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult
from click.testing import Result
from conftest import Run
from dns_server import closed_port, serving
from oauthkit import Exchange, certificate, exchange_server, relay, token_command, trusted  # noqa: F401
from pipelining_server import Script, serve
from smtp_server import Recorder, Server, free_port, refuse_all

from utskick import dns_checks, doctor
from utskick.project import load_project
from utskick.oauth import TOKEN_REFUSED
from utskick.transport import parse_smtp_url

DOMAIN = "sjolandet.example"
GOOD_DNS = {
    DOMAIN: ["v=spf1 ip4:127.0.0.1 -all"],
    f"s1._domainkey.{DOMAIN}": ["v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"],
    f"_dmarc.{DOMAIN}": ["v=DMARC1; p=reject; rua=mailto:dmarc@sjolandet.example"],
}
PASSWORD = "rätt-lösenord-123"
MAILBOX_URL = "smtp://nyhetsbrev%40sjolandet.example@127.0.0.1:{port}?starttls=require"


def diagnose(monkeypatch: pytest.MonkeyPatch, run: Run, dns: str, env: dict[str, str]) -> Result:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return run("doctor", "--dns-server", dns)


def accept(server: object, session: object, envelope: object, mechanism: str, data: object) -> AuthResult:
    return AuthResult(success=True)


def with_selector(project: Path) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace("  retries: 5\n", "  retries: 5\n  dkim_selector: s1\n"), "utf-8")


def lines(result: Result) -> dict[str, str]:
    """Each check's line by its name ('TLS', 'sign-in' …)."""
    out = {}
    for line in result.output.splitlines():
        status, _, rest = line.partition(" ")
        name, sep, _ = rest.strip().partition(":")
        if sep and status in ("ok", "FAIL", "warn", "skip", "note"):
            out[name] = line
    return out


def test_a_relay_that_will_take_the_send_passes_every_check(project: Path, run: Run, trusted: ssl.SSLContext,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with_selector(project)
    with Server(Recorder(), authenticator=accept, tls_context=trusted, require_starttls=True) as server, \
            serving(GOOD_DNS) as dns:
        monkeypatch.setenv("UTSKICK_SMTP_URL", MAILBOX_URL.format(port=server.port))
        monkeypatch.setenv("UTSKICK_SMTP_PASSWORD", PASSWORD)
        result = run("doctor", "--dns-server", dns)
    checks = lines(result)
    assert result.exit_code == 0, result.output
    for name in ("settings", "secret", "transport", "connection", "TLS", "AUTH", "SIZE", "sign-in", "From",
                 "SPF", "DKIM", "DMARC", "List-Unsubscribe"):
        assert checks[name].startswith("ok "), checks.get(name, result.output)
    assert "certificate verified" in checks["TLS"]
    assert checks["PIPELINING"].startswith("note ")  # aiosmtpd does not offer it: slower, not failing
    assert "Sent Items" not in checks
    assert PASSWORD not in result.output
    assert server.recorder.received == []  # nothing is sent


def test_pipelining_and_a_size_limit_below_our_largest_message(project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(Script(size=20_000)) as port, serving(GOOD_DNS) as dns:
        result = diagnose(monkeypatch, run, dns, {"UTSKICK_SMTP_URL": f"smtp://127.0.0.1:{port}"})
    checks = lines(result)
    assert result.exit_code == 1
    assert checks["PIPELINING"].startswith("ok ")
    assert checks["SIZE"].startswith("FAIL ") and "fix:" in checks["SIZE"]
    assert "problem(s) would stop a send" in result.output


def test_an_untrusted_certificate_fails_with_its_fix(project: Path, run: Run,
                                                    certificate: tuple[Path, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch) -> None:
    with Server(Recorder(), tls_context=certificate[1], require_starttls=True) as server, serving(GOOD_DNS) as dns:
        result = diagnose(monkeypatch, run, dns, {"UTSKICK_SMTP_URL": f"{server.url}?starttls=require"})
    checks = lines(result)
    assert result.exit_code == 1
    assert checks["connection"].startswith("ok ")
    assert checks["TLS"].startswith("FAIL ") and "UTSKICK_SMTP_CAFILE" in checks["TLS"]
    assert "sign-in" not in checks


def test_a_relay_without_starttls_fails(project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    with Server(Recorder()) as server, serving(GOOD_DNS) as dns:
        result = diagnose(monkeypatch, run, dns, {"UTSKICK_SMTP_URL": f"{server.url}?starttls=require"})
    assert result.exit_code == 1
    assert lines(result)["TLS"].startswith("FAIL ") and "STARTTLS" in lines(result)["TLS"]


def test_a_refused_password_fails_and_is_never_printed(project: Path, run: Run, trusted: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch) -> None:
    with Server(Recorder(), authenticator=refuse_all, tls_context=trusted, require_starttls=True) as server, \
            serving(GOOD_DNS) as dns:
        result = diagnose(monkeypatch, run, dns, {"UTSKICK_SMTP_URL": MAILBOX_URL.format(port=server.port),
                                                        "UTSKICK_SMTP_PASSWORD": PASSWORD})
    checks = lines(result)
    assert result.exit_code == 1
    assert checks["sign-in"].startswith("FAIL ") and "535" in checks["sign-in"] and "fix:" in checks["sign-in"]
    assert PASSWORD not in result.output


@pytest.mark.parametrize("good", [True, False])
def test_xoauth2_signs_in_with_the_token_command_and_never_prints_the_token(
        project: Path, run: Run, trusted: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch, good: bool) -> None:
    token = "eyJ0b2tlbi1mb3ItZG9jdG9yIn0.abc"
    exchange = Exchange(valid=lambda t: good and t == token)
    monkeypatch.setenv("UTSKICK_SMTP_TOKEN_COMMAND", token_command(project.parent, f"print({token!r})\n"))
    with exchange_server(exchange, trusted) as server, serving(GOOD_DNS) as dns:
        monkeypatch.setenv("UTSKICK_SMTP_URL", relay(server))
        result = run("doctor", "--dns-server", dns)
    checks = lines(result)
    assert token not in result.output
    assert checks["AUTH"].startswith("ok ") and "XOAUTH2" in checks["AUTH"]
    if good:
        assert result.exit_code == 0, result.output
        assert checks["sign-in"].startswith("ok ") and exchange.logins == [token]
    else:
        assert result.exit_code == 1
        assert checks["sign-in"].startswith("FAIL ") and TOKEN_REFUSED[:40] in checks["sign-in"]


def test_password_sign_in_against_a_relay_that_takes_only_xoauth2(project: Path, run: Run,
                                                                  trusted: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch) -> None:
    with exchange_server(Exchange(), trusted) as server, serving(GOOD_DNS) as dns:
        result = diagnose(monkeypatch, run, dns, {"UTSKICK_SMTP_URL": MAILBOX_URL.format(port=server.port),
                                                        "UTSKICK_SMTP_PASSWORD": PASSWORD})
    checks = lines(result)
    assert result.exit_code == 1
    assert checks["AUTH"].startswith("FAIL ") and "?auth=xoauth2" in checks["AUTH"]


def test_nothing_listening_and_an_unreadable_url(project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    with serving(GOOD_DNS) as dns:
        refused = diagnose(monkeypatch, run, dns, {"UTSKICK_SMTP_URL": f"smtp://127.0.0.1:{free_port()}"})
        unreadable = diagnose(monkeypatch, run, dns, {"UTSKICK_SMTP_URL": "smtp://nyhetsbrev:Xq7#zz9@127.0.0.1:587"})
    assert refused.exit_code == 1 and lines(refused)["connection"].startswith("FAIL ")
    assert unreadable.exit_code == 1 and lines(unreadable)["transport"].startswith("FAIL ")
    assert "Xq7" not in unreadable.output and "zz9" not in unreadable.output


def test_without_a_relay_the_outbox_blocks_nothing_and_dns_is_still_read(project: Path, run: Run) -> None:
    with serving({}) as dns:
        result = run("doctor", "--dns-server", dns)
    checks = lines(result)
    assert result.exit_code == 0, result.output
    assert checks["transport"].startswith("note ") and "outbox" in checks["transport"]
    assert checks["SPF"].startswith("warn ") and checks["DMARC"].startswith("warn ")
    assert checks["DKIM"].startswith("skip ") and "dkim_selector" in checks["DKIM"]


def test_no_dns_is_skipped(project: Path, run: Run) -> None:
    result = run("doctor", "--dns-server", closed_port())
    assert result.exit_code == 0
    assert "skipped: no DNS" in lines(result)["SPF, DKIM, DMARC"]


def test_strict_dmarc_of_the_parent_domain_does_not_align_with_a_subdomain(project: Path) -> None:
    with serving({"nyhetsbrev.sjolandet.example": ["v=spf1 -all"], "_dmarc.sjolandet.example": ["v=DMARC1; p=reject; adkim=s"]}) as dns:
        checks = dns_checks.records("nyhetsbrev.sjolandet.example", ("s1",), False, dns_checks.resolver(dns))
    by_name = {c.name: c for c in checks}
    assert by_name["SPF"].status == "ok" and by_name["DKIM"].status == "warn"
    assert by_name["DMARC"].status == "warn" and "strict DKIM" in by_name["DMARC"].detail


def test_microsoft_365_selectors_spf_and_sent_items(project: Path) -> None:
    settings = parse_smtp_url("smtp://nyhetsbrev%40sjolandet.example@smtp.office365.com:587?auth=xoauth2")
    assert doctor.microsoft(load_project(), settings)
    records = {DOMAIN: ["v=spf1 ip4:192.0.2.1 -all"], f"selector2._domainkey.{DOMAIN}": ["v=DKIM1; k=rsa; p=MIIB"]}
    with serving(records) as dns:
        checks = {c.name: c for c in dns_checks.records(DOMAIN, dns_checks.MICROSOFT_SELECTORS, True, dns_checks.resolver(dns))}
    assert checks["SPF"].status == "warn" and dns_checks.MICROSOFT_SPF in checks["SPF"].fix
    assert checks["DKIM"].status == "ok" and "selector2" in checks["DKIM"].detail
    assert "Sent Items" in doctor.sent_items().detail


def test_from_against_the_signed_in_mailbox(project: Path) -> None:
    p = load_project()
    other = doctor.from_address(p, parse_smtp_url("smtp://annan%40sjolandet.example@relay.example:587"))
    same = doctor.from_address(p, parse_smtp_url("smtp://Nyhetsbrev%40Sjolandet.example@relay.example:587"))
    assert other.status == "warn" and "Send As" in other.fix
    assert same.status == "ok"


def test_one_click_missing_and_a_short_secret(project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace(
        "  url: https://www.sjolandet.example/avregistrera?token={token}\n", ""), "utf-8")
    with serving(GOOD_DNS) as dns:
        result = diagnose(monkeypatch, run, dns, {"UTSKICK_SECRET": "kort"})
    checks = lines(result)
    assert result.exit_code == 1
    assert checks["List-Unsubscribe"].startswith("warn ") and "one-click" in checks["List-Unsubscribe"]
    assert checks["secret"].startswith("FAIL ") and "fix:" in checks["secret"]


def test_broken_settings_are_one_failing_line(project: Path, run: Run) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace("  concurrency: 4\n", "  concurrency: 400\n"), "utf-8")
    result = run("doctor", "--dns-server", closed_port())
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert lines(result)["settings"].startswith("FAIL ") and "newsletter.yaml:" in result.output


@pytest.mark.parametrize("policy", ["none", "quarantine", "reject"])
def test_an_enforced_dmarc_without_spf_or_dkim_blocks_the_send(project: Path, policy: str) -> None:
    with serving({f"_dmarc.{DOMAIN}": [f"v=DMARC1; p={policy}"]}) as dns:
        checks = {c.name: c for c in dns_checks.records(DOMAIN, ("s1",), False, dns_checks.resolver(dns))}
    assert checks["SPF"].status == checks["DKIM"].status == "warn"
    if policy == "none":
        assert checks["DMARC"].status == "ok"
    else:
        assert checks["DMARC"].status == "FAIL" and checks["DMARC"].blocks
        assert ("refuse" if policy == "reject" else "put in spam") in checks["DMARC"].detail
    # One of them in place carries DMARC: a warning for the other, nothing blocks.
    with serving({f"_dmarc.{DOMAIN}": [f"v=DMARC1; p={policy}"], DOMAIN: ["v=spf1 include:relay.example -all"]}) as dns:
        checks = {c.name: c for c in dns_checks.records(DOMAIN, ("s1",), False, dns_checks.resolver(dns))}
    assert checks["DMARC"].status == "ok" and checks["DKIM"].status == "warn"
