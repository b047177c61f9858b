"""Shared pieces of the OAuth2 tests: an Exchange-like relay that takes only XOAUTH2, the
certificate both stand-ins use, and the settings that point utskick at them."""

from __future__ import annotations

import base64
import re
import ssl
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult
from identity_server import Identity, serving
from sendkit import FAST
from smtp_server import Recorder, Server, self_signed

from utskick import oauth
from utskick import transport as transports
from utskick.journal import Journal
from utskick.project import load_project

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


def token_command(tmp: Path, body: str) -> str:
    script = tmp / "token.py"
    script.write_text("import sys, pathlib\n" + body)
    return f'"{sys.executable}" "{script}"'
