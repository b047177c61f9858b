"""XOAUTH2 sign-in end to end: msal's real flows against a stand-in for the Microsoft identity
platform, a token command, and an aiosmtpd relay that, like Exchange Online, offers only
AUTH XOAUTH2 behind STARTTLS and takes only tokens the identity stand-in issued."""

from __future__ import annotations

import base64
import logging
import re
import ssl
import stat
import time
from pathlib import Path

import jwt
import pytest
from conftest import Run
from identity_server import MAILBOX, Identity
from oauthkit import (ONE, SENDER, Exchange, certificate, configure, drop_every_second_mail, exchange_server,
                      identity, journal_states, leaked, relay, smtp_transport, token_command, trusted)
from sendkit import send, write_list

from utskick import oauth
from utskick.project import load_project

__all__ = ["certificate", "identity", "trusted"]  # fixtures


# --- Microsoft 365, app-only ---------------------------------------------------------------------


def test_app_flow_sends_with_xoauth2_and_leaks_nothing(project: Path, run: Run, identity: Identity,
                                                       trusted: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    addresses = write_list(project, 6)
    configure(project, identity)
    monkeypatch.setenv("UTSKICK_OAUTH_CLIENT_SECRET", identity.client_secret)
    exchange = Exchange(valid=identity.valid)
    with exchange_server(exchange, trusted) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", relay(server))
        result = run("send", "2026-12", "--list", "stor", "--yes")
    assert result.exit_code == 0, result.output
    assert sorted(exchange.addresses()) == sorted(addresses)
    assert "XOAUTH2" in result.output
    # Four connections, one token: msal asked once, with the Exchange Online app scope.
    assert identity.grants == ["client_credentials"] and len(set(exchange.logins)) == 1
    assert identity.scopes == ["https://outlook.office365.com/.default"]
    assert exchange.refused == []
    ours = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("mail.log"))
    journal = (project / ".utskick" / "utskick.db").read_bytes().decode("latin-1")
    for text in (result.output, ours, journal):
        assert leaked(text, identity) == []
        assert base64.b64encode(f"user={SENDER}\x01".encode()).decode()[:12] not in text


def test_certificate_credential_is_signed_and_accepted(project: Path, identity: Identity,
                                                       certificate: tuple[Path, ssl.SSLContext]) -> None:
    cert = certificate[0]
    (project / "app.pem").write_text((cert.parent / "relay-key.pem").read_text() + cert.read_text())
    identity.certificate = cert
    configure(project, identity, extra="    client_certificate: app.pem\n")
    source = oauth.for_purpose(oauth.SMTP, load_project(), SENDER)
    assert source is not None and identity.valid(source.token())
    assert identity.grants == ["client_credentials"]


def test_a_token_is_kept_until_shortly_before_it_expires(project: Path, identity: Identity) -> None:
    identity.expires_in = int(oauth.MARGIN) + 2
    configure(project, identity)
    source = oauth.for_purpose(oauth.SMTP, load_project(), SENDER, {"UTSKICK_OAUTH_CLIENT_SECRET": identity.client_secret})
    assert source is not None
    first = source.token()
    assert source.token() == first and len(identity.grants) == 1
    time.sleep(2.2)
    second = source.token()
    assert second != first and len(identity.grants) == 2
    source.refused(second)
    assert source.token() not in (first, second) and len(identity.grants) == 3


def test_short_lived_tokens_are_renewed_for_each_new_connection(project: Path, identity: Identity,
                                                                trusted: ssl.SSLContext,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A send outlasting its tokens: every reconnect signs in with a token that is still valid."""
    addresses = write_list(project, 4)
    identity.expires_in = 1
    configure(project, identity)
    monkeypatch.setenv("UTSKICK_OAUTH_CLIENT_SECRET", identity.client_secret)
    exchange = Exchange(valid=identity.valid, on_mail=drop_every_second_mail())
    with exchange_server(exchange, trusted) as server:
        outcome = send(smtp_transport(monkeypatch, relay(server)), policy=ONE)
    assert outcome.exit_code == 0 and sorted(exchange.addresses()) == sorted(addresses)
    assert exchange.refused == [] and len(exchange.logins) == len(addresses)
    assert len(set(exchange.logins)) == len(exchange.logins) == len(identity.grants)


def test_a_revoked_token_is_renewed_once(project: Path, identity: Identity, trusted: ssl.SSLContext,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    write_list(project, 2)
    configure(project, identity)
    monkeypatch.setenv("UTSKICK_OAUTH_CLIENT_SECRET", identity.client_secret)
    exchange = Exchange(valid=identity.valid, refuse_first=1)
    with exchange_server(exchange, trusted) as server:
        outcome = send(smtp_transport(monkeypatch, relay(server)), policy=ONE)
    assert outcome.exit_code == 0 and outcome.counts.sent == 2
    assert len(exchange.refused) == 1 and exchange.refused[0] not in exchange.logins
    assert identity.grants == ["client_credentials"] * 2


def test_a_refused_token_stops_the_send_resumably(project: Path, run: Run, identity: Identity,
                                                  trusted: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch) -> None:
    write_list(project, 5)
    configure(project, identity)
    monkeypatch.setenv("UTSKICK_OAUTH_CLIENT_SECRET", identity.client_secret)
    exchange = Exchange(valid=lambda token: False)
    with exchange_server(exchange, trusted) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", relay(server))
        result = run("send", "2026-12", "--list", "stor", "--yes")
    assert result.exit_code == 1, result.output
    assert "authentication failed" in result.output and "5.7.3" in result.output
    for check in ("SMTP.SendAsApp", "SmtpClientAuthenticationDisabled", "tenant"):
        assert check in result.output
    assert exchange.received == [] and journal_states(project) == {"pending": 5}
    assert exchange.refused and leaked(result.output, identity) == []


def test_a_wrong_client_secret_is_explained_without_showing_it(project: Path, run: Run, identity: Identity,
                                                               trusted: ssl.SSLContext,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    write_list(project, 2)
    configure(project, identity)
    monkeypatch.setenv("UTSKICK_OAUTH_CLIENT_SECRET", "fel-hemlighet-987")
    exchange = Exchange(valid=identity.valid)
    with exchange_server(exchange, trusted) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", relay(server))
        result = run("send", "2026-12", "--list", "stor", "--yes")
    assert result.exit_code == 1 and "AADSTS7000215" in result.output, result.output
    assert "fel-hemlighet-987" not in result.output and "Trace ID" not in result.output
    assert journal_states(project) == {"pending": 2}


# --- A person's own mailbox: utskick login, then silent renewal -----------------------------------


def test_device_login_then_send_renews_silently(project: Path, run: Run, identity: Identity,
                                                trusted: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch) -> None:
    addresses = write_list(project, 3)
    identity.expires_in = 1  # expired by the time send needs it: the refresh token renews it
    configure(project, identity, flow="device")
    login = run("login")
    assert login.exit_code == 0, login.output
    assert "GXK7-PQ2M" in login.output and "https://microsoft.com/devicelogin" in login.output
    assert f"signed in as {MAILBOX}" in login.output
    asked = identity.scopes[0].split()
    for scope in (*oauth.LOGIN_SCOPES, "offline_access"):
        assert scope in asked
    cache = project / ".utskick" / oauth.CACHE_FILE
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    exchange = Exchange(valid=identity.valid, mailbox=MAILBOX)
    time.sleep(1.1)
    with exchange_server(exchange, trusted) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", relay(server, MAILBOX))
        result = run("send", "2026-12", "--list", "stor", "--yes")
    assert result.exit_code == 0, result.output
    assert sorted(exchange.addresses()) == sorted(addresses)
    assert "refresh_token" in identity.grants and exchange.refused == []
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert leaked(login.output + result.output, identity) == []


def test_send_without_login_or_after_revocation_says_to_log_in(project: Path, run: Run, identity: Identity,
                                                               trusted: ssl.SSLContext,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    write_list(project, 2)
    configure(project, identity, flow="device")
    exchange = Exchange(valid=identity.valid, mailbox=MAILBOX)
    with exchange_server(exchange, trusted) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", relay(server, MAILBOX))
        before = run("send", "2026-12", "--list", "stor", "--yes")
        assert before.exit_code == 1 and f"run utskick login and sign in as {MAILBOX}" in before.output, before.output
        identity.expires_in = 1
        assert run("login").exit_code == 0
        identity.refresh_tokens.clear()
        time.sleep(1.1)
        after = run("send", "2026-12", "--list", "stor", "--yes")
    assert after.exit_code == 1 and "expired or was revoked" in after.output and "AADSTS70008" in after.output
    assert exchange.received == [] and journal_states(project) == {"pending": 2}


def test_login_needs_the_device_flow(project: Path, run: Run) -> None:
    configure(project, None, flow="app")
    result = run("login")
    assert result.exit_code == 1 and re.search(r"newsletter\.yaml:\d+:\d+: error: .*flow: device", result.output)


# --- Any provider: a token command ---------------------------------------------------------------


def test_token_command_wins_and_is_run_only_when_a_token_is_needed(project: Path, run: Run,
                                                                   trusted: ssl.SSLContext,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    addresses = write_list(project, 5)
    configure(project, None)  # sending.oauth too, pointing nowhere: the command wins
    runs = project.parent / "runs.txt"
    token = jwt.encode({"exp": int(time.time()) + 3600}, "k" * 32, algorithm="HS256")
    monkeypatch.setenv("UTSKICK_SMTP_TOKEN_COMMAND", token_command(
        project.parent, f"with open({str(runs)!r}, 'a') as f: f.write('x')\nprint({token!r})\n"))
    exchange = Exchange(valid=lambda t: t == token)
    with exchange_server(exchange, trusted) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", relay(server))
        result = run("send", "2026-12", "--list", "stor", "--yes")
    assert result.exit_code == 0, result.output
    assert sorted(exchange.addresses()) == sorted(addresses) and token not in result.output
    assert runs.read_text() == "x"  # four connections, one run: the token's exp says it is good


def test_an_opaque_command_token_is_renewed_after_a_refusal(project: Path, trusted: ssl.SSLContext,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    write_list(project, 3)
    configure(project, None)
    runs = project.parent / "runs.txt"
    runs.write_text("")
    monkeypatch.setenv("UTSKICK_SMTP_TOKEN_COMMAND", token_command(project.parent, (
        f"p = pathlib.Path({str(runs)!r}); p.write_text(p.read_text() + 'x')\n"
        "print('opaque-' + str(len(p.read_text())))\n")))
    exchange = Exchange(valid=lambda t: t.startswith("opaque-"), refuse_first=1)
    with exchange_server(exchange, trusted) as server:
        outcome = send(smtp_transport(monkeypatch, relay(server)), policy=ONE)
    assert outcome.exit_code == 0 and outcome.counts.sent == 3
    assert exchange.refused == ["opaque-1"] and exchange.logins == ["opaque-2"] and runs.read_text() == "xx"


def test_a_failing_token_command_never_shows_its_output(project: Path, run: Run, trusted: ssl.SSLContext,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    write_list(project, 2)
    monkeypatch.setenv("UTSKICK_SMTP_TOKEN_COMMAND", token_command(
        project.parent, "print('hemlig-token-utdata')\nsys.exit(3)\n") + " --secret=argument-hemlis")
    exchange = Exchange(valid=lambda t: True)
    with exchange_server(exchange, trusted) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", relay(server))
        result = run("send", "2026-12", "--list", "stor", "--yes")
    assert result.exit_code == 1 and "UTSKICK_SMTP_TOKEN_COMMAND" in result.output and "exit 3" in result.output
    assert "hemlig-token-utdata" not in result.output and "argument-hemlis" not in result.output
    assert exchange.logins == exchange.refused == [] and journal_states(project) == {"pending": 2}
