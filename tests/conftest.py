"""Shared fixtures: a copy of the example project in a temp folder, and the real CLI."""

from __future__ import annotations

import shutil
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner, Result

from utskick.cli import cli
from utskick.signer import Signer

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-0123456789abcdef"
"""UTSKICK_SECRET in every test project."""


def body(msg: Message, kind: str) -> str:
    """The text of a message's `kind` ("plain" or "html") body, which must be there."""
    part = msg.get_body((kind,)) if isinstance(msg, EmailMessage) else None
    assert part is not None, f"no {kind} body"
    return str(part.get_content())


def token(address_key: str) -> str:
    """The unsubscribe token `send` gives this person in a test project."""
    return Signer(SECRET.encode()).token(address_key)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bundled example project, copied, with the current folder inside it."""
    dest = tmp_path / "proj"
    dest.mkdir()
    shutil.copyfile(ROOT / "newsletter.yaml", dest / "newsletter.yaml")
    shutil.copytree(ROOT / "issues", dest / "issues")
    shutil.copytree(ROOT / "subscribers", dest / "subscribers")
    monkeypatch.chdir(dest)
    monkeypatch.setenv("UTSKICK_SECRET", SECRET)
    monkeypatch.delenv("UTSKICK_SMTP_URL", raising=False)
    return dest


Run = Callable[..., Result]


@pytest.fixture
def run() -> Run:
    """Invoke the real `utskick` command line in-process; returns click's Result."""

    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)

    return invoke
