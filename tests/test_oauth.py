"""XOAUTH2 sign-in end to end: msal's real flows against a stand-in for the Microsoft identity
platform, a token command, and an aiosmtpd relay that, like Exchange Online, offers only
AUTH XOAUTH2 behind STARTTLS and takes only tokens the identity stand-in issued."""

from __future__ import annotations

import base64
import logging
import re
import ssl
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiosmtpd.smtp import AuthResult
from conftest import Run
from identity_server import MAILBOX, Identity, serving
from sendkit import FAST, send, write_list
from smtp_server import Recorder, Server, self_signed

from utskick import oauth
from utskick import transport as transports
from utskick.errors import UtskickError
from utskick.journal import Journal
from utskick.load import load_project

SENDER = "nyhetsbrev@sjolandet.example"
ONE = replace(FAST, concurrency=1)
SASL_RE = re.compile(rb"user=([^\x01]+)\x01auth=Bearer ([^\x01]+)\x01\x01")


@dataclass
class Exchange(Recorder):
    """SMTP AUTH as Exchange Online does it: XOAUTH2 only, one mailbox, `valid` tokens only."""

    valid: Callable[[str], bool] = lambda token: False
    mailbox: str = SENDER
    refuse_first: int = 0
    logins: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    async def auth_XOAUTH2(self, server: Any, args: list[str]) -> AuthResult:
        m = SASL_RE.fullmatch(base64.b64decode(args[1])) if len(args) == 2 else None
        token = m[2].decode() if m else ""
        with self.lock:
            ok = m is not None and m[1].decode() == self.mailbox and self.valid(token) and self.refuse_first <= 0
            self.refuse_first -= 1
            (self.logins if ok else self.refused).append(token)
        if ok:
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False, message="535 5.7.3 Authentication unsuccessful [TEST.outlook]")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    """One certificate for 127.0.0.1, for both the relay and the identity platform."""
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def trusted(certificate: tuple[Path, ssl.SSLContext], monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    monkeypatch.setenv("UTSKICK_SMTP_CAFILE", str(certificate[0]))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
    for name in ("UTSKICK_SMTP_TOKEN_COMMAND", "UTSKICK_OAUTH_CLIENT_SECRET", "UTSKICK_SMTP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return certificate[1]


@pytest.fixture
def identity(trusted: ssl.SSLContext) -> Iterator[Identity]:
    with serving(Identity(), trusted) as served:
        yield served


def configure(project: Path, identity: Identity | None, flow: str = "app", extra: str = "") -> None:
    """Fast sending, and sending.oauth pointing at the identity stand-in."""
    settings = project / "newsletter.yaml"
    text = settings.read_text("utf-8").replace("rate: 30/min", "rate: 500/s")
    authority = identity.base if identity else "https://127.0.0.1:9"
    tenant = identity.tenant if identity else "sjolandet.example"
    client_id = identity.client_id if identity else "app"
    text += (f"  oauth:\n    provider: microsoft365\n    flow: {flow}\n    tenant: {tenant}\n"
             f"    client_id: {client_id}\n    authority: {authority}\n{extra}")
    settings.write_text(text, "utf-8")


def relay(server: Server, mailbox: str = SENDER) -> str:
    return f"smtp://{mailbox.replace('@', '%40')}@127.0.0.1:{server.port}?auth=xoauth2&starttls=require"


def exchange_server(recorder: Exchange, tls: ssl.SSLContext) -> Server:
    return Server(recorder, tls_context=tls, require_starttls=True, auth_exclude_mechanism=["LOGIN", "PLAIN"])


def leaked(text: str, identity: Identity) -> list[str]:
    return [s for s in identity.secrets_issued() if s in text]


def journal_states(project: Path) -> dict[str, int]:
    with Journal.open(project / ".utskick", "2026-12", "smtp") as j:
        states: dict[str, int] = {}
        for row in j.rows():
            states[row.shown_state] = states.get(row.shown_state, 0) + 1
        return states


def smtp_transport(monkeypatch: pytest.MonkeyPatch, url: str) -> transports.Transport:
    """What `send` builds from the environment and the settings."""
    monkeypatch.setenv("UTSKICK_SMTP_URL", url)
    project = load_project()
    return transports.from_environment(project.outbox_dir, SENDER,
                                       lambda mailbox: oauth.for_purpose(oauth.SMTP, project, mailbox))


def drop_every_second_mail() -> Callable[[str], str | None]:
    """Every connection carries one message, then the relay hangs up: each message needs a login."""
    count = 0

    def hook(address: str) -> str | None:
        nonlocal count
        count += 1
        return "drop" if count % 2 == 0 else None

    return hook


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


def token_command(tmp: Path, body: str) -> str:
    script = tmp / "token.py"
    script.write_text("import sys, pathlib\n" + body)
    return f'"{sys.executable}" "{script}"'


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


@pytest.mark.parametrize(("line", "expected"), [
    (f'"{sys.executable}" -c "import time; time.sleep(5)"', "did not finish within 0.3 s"),
    ("utskick-no-such-token-helper --flag", "program 'utskick-no-such-token-helper' not found"),
    (f'"{sys.executable}" -c "print()"', "printed no token"),
    (f'"{sys.executable}" -c "print(\'two words\')"', "alone, on one line"),
    ('"unclosed', "cannot be split"),
])
def test_token_command_problems(line: str, expected: str) -> None:
    with pytest.raises(UtskickError) as e:
        oauth.command_source("UTSKICK_SMTP_TOKEN_COMMAND", line, timeout=0.3).token()
    assert expected in str(e.value)


# --- Settings and URL -----------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "field_", "expected"), [
    ("    client_certificate: app.pem\n", "device", "client_certificate is for flow: app"),
    ("", "common", "must be the tenant id"),
])
def test_oauth_settings_errors_are_located(project: Path, run: Run, extra: str, field_: str, expected: str) -> None:
    configure(project, None, flow="device" if field_ == "device" else "app", extra=extra)
    if field_ == "common":
        settings = project / "newsletter.yaml"
        settings.write_text(settings.read_text("utf-8").replace("tenant: sjolandet.example", "tenant: common"), "utf-8")
    result = run("check", "2026-12")
    assert result.exit_code == 1 and re.search(rf"newsletter\.yaml:\d+:\d+: error: .*{expected}", result.output), result.output


def test_app_flow_without_a_secret_is_a_located_error(project: Path, run: Run, trusted: ssl.SSLContext,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    write_list(project, 1)
    configure(project, None)
    monkeypatch.setenv("UTSKICK_SMTP_URL", "smtp://nyhetsbrev%40sjolandet.example@127.0.0.1:9?auth=xoauth2&starttls=require")
    result = run("send", "2026-12", "--list", "stor", "--yes")
    assert result.exit_code == 1 and re.search(r"newsletter\.yaml:\d+:\d+: error: .*UTSKICK_OAUTH_CLIENT_SECRET", result.output)


@pytest.mark.parametrize(("url", "password", "expected"), [
    ("smtp://a%40b.se:pw@smtp.office365.com:587?auth=xoauth2", None, "not a password"),
    ("smtp://a%40b.se@smtp.office365.com:587?auth=xoauth2", "pw", "not a password"),
    ("smtp://smtp.office365.com:587?auth=xoauth2", None, "mailbox in the user name"),
    ("smtp://a%40b.se@smtp.office365.com:587?auth=cram-md5", None, "auth can only be 'xoauth2'"),
])
def test_xoauth2_url_problems(url: str, password: str | None, expected: str) -> None:
    with pytest.raises(UtskickError) as e:
        transports.parse_smtp_url(url, password)
    assert expected in str(e.value) and "pw@" not in str(e.value)


def test_xoauth2_options_combine() -> None:
    s = transports.parse_smtp_url("smtp://a%40b.se@127.0.0.1:2525?auth=xoauth2&starttls=require")
    assert (s.xoauth2, s.starttls, s.username) == (True, True, "a@b.se")
    with pytest.raises(UtskickError, match="only ever sent over TLS"):
        transports.parse_smtp_url("smtp://a%40b.se@127.0.0.1:2525?auth=xoauth2")


def test_xoauth2_without_a_token_source_is_an_error(project: Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    write_list(project, 1)
    monkeypatch.delenv("UTSKICK_SMTP_TOKEN_COMMAND", raising=False)
    monkeypatch.setenv("UTSKICK_SMTP_URL", "smtp://a%40b.se@127.0.0.1:9?auth=xoauth2&starttls=require")
    result = run("send", "2026-12", "--list", "stor", "--yes")
    assert result.exit_code == 1 and "UTSKICK_SMTP_TOKEN_COMMAND" in result.output and "sending.oauth" in result.output


# --- Passwords refused by Microsoft ----------------------------------------------------------------


@pytest.mark.parametrize(("at_auth", "reply"), [
    (True, "535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [TEST.outlook]"),
    (False, "550 5.7.30 Basic authentication is not supported for Client Submission"),
])
def test_microsoft_password_refusals_point_at_oauth2(project: Path, run: Run, trusted: ssl.SSLContext,
                                                     monkeypatch: pytest.MonkeyPatch, at_auth: bool, reply: str) -> None:
    write_list(project, 2)
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace("rate: 30/min", "rate: 500/s"), "utf-8")

    def authenticator(server: object, session: object, envelope: object, mechanism: str, data: object) -> AuthResult:
        return AuthResult(success=False, handled=False, message=reply) if at_auth else AuthResult(success=True)

    recorder = Recorder(on_mail=None if at_auth else (lambda address: reply))
    with Server(recorder, authenticator=authenticator, tls_context=trusted, require_starttls=True) as server:
        monkeypatch.setenv("UTSKICK_SMTP_URL", f"smtp://nyhetsbrev@127.0.0.1:{server.port}?starttls=require")
        monkeypatch.setenv("UTSKICK_SMTP_PASSWORD", "gammalt-lösenord-1")
        result = run("send", "2026-12", "--list", "stor", "--yes")
    assert result.exit_code == 1 and "use OAuth2" in result.output and "README" in result.output, result.output
    assert "gammalt-lösenord-1" not in result.output and journal_states(project) == {"pending": 2}
