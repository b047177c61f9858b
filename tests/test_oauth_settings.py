"""OAuth2 configuration that cannot work is refused clearly: the settings with a location, the
URL without quoting it, a broken token command without showing what it printed, and a password
Microsoft 365 refuses with the way to OAuth2."""

from __future__ import annotations

import re
import ssl
import sys
from pathlib import Path

import pytest
from aiosmtpd.smtp import AuthResult
from conftest import Run
from identity_server import Identity
from oauthkit import certificate, configure, identity, journal_states, trusted
from sendkit import write_list
from smtp_server import Recorder, Server, free_port

from utskick import oauth
from utskick import transport as transports
from utskick.credentials import TokenWanted
from utskick.errors import UtskickError
from utskick.project import load_project

__all__ = ["certificate", "identity", "trusted"]  # fixtures


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
    assert (s.sign_in, s.starttls, s.username) == (TokenWanted("a@b.se"), True, "a@b.se")
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


# --- The identity platform cannot be used ---------------------------------------------------------


def app_token() -> str:
    source = oauth.for_purpose(oauth.SMTP, load_project(), "nyhetsbrev@sjolandet.example",
                               {"UTSKICK_OAUTH_CLIENT_SECRET": "klienthemlighet-Abc~123"})
    assert source is not None
    return source.token()


def test_an_unknown_tenant_is_named(project: Path, identity: Identity) -> None:
    configure(project, identity)
    identity.tenant = "annan.example"  # the platform knows another tenant than the settings name
    with pytest.raises(UtskickError, match="tenant was not found"):
        app_token()


def test_an_untrusted_identity_platform_is_refused(project: Path, identity: Identity,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    configure(project, identity)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    with pytest.raises(UtskickError, match="certificate is not trusted.*REQUESTS_CA_BUNDLE"):
        app_token()
    assert identity.grants == []


def test_an_unreachable_identity_platform(project: Path, trusted: ssl.SSLContext) -> None:
    configure(project, None)
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace("https://127.0.0.1:9", f"https://127.0.0.1:{free_port()}"))
    with pytest.raises(UtskickError, match="cannot sign in at https://127.0.0.1:.*no connection"):
        app_token()


@pytest.mark.parametrize(("content", "expected"), [
    (None, "cannot read app.pem"),
    ("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "must hold both the private key and the certificate"),
    ("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n-----BEGIN CERTIFICATE-----\nMIIB\n"
     "-----END CERTIFICATE-----\n", "client certificate cannot be used"),
])
def test_client_certificate_problems(project: Path, identity: Identity, content: str | None, expected: str) -> None:
    if content is not None:
        (project / "app.pem").write_text(content)
    configure(project, identity, extra="    client_certificate: app.pem\n")
    with pytest.raises(UtskickError) as e:
        app_token()
    assert expected in str(e.value) and "bm90IGEga2V5" not in str(e.value)
    if content is None or "PRIVATE" not in content:
        assert re.match(r"newsletter\.yaml:\d+:\d+: error:", str(e.value))
