"""Lists, validation, suppression, unsubscribe tokens.

The canonical key of a person is the lower-cased ASCII form of the address: it is what dedupe,
suppression, the send journal and unsubscribe tokens all use, so `anna@åre.se` and
`anna@xn--re-xia.se` are one person everywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping


@dataclass(frozen=True)
class Subscriber:
    """One recipient: the address to send to, its canonical key, and the list's columns."""

    email: str
    key: str
    name: str = ""
    attrs: Mapping[str, str] = field(default_factory=dict)
    token: str = ""

    def field(self, name: str) -> str | None:
        """A template field's value, or None when this recipient's list has no such column."""
        if name == "name":
            return self.name
        if name == "email":
            return self.email
        return self.attrs.get(name)


# Fictional: `build` personalises with this, so nothing of a real member ends up in build/.
SAMPLE = Subscriber(
    email="anna.exempel@example.se",
    key="anna.exempel@example.se",
    name="Anna Exempel",
    attrs={"kommun": "Exempelby", "organisation": "Exempelby kommun", "roll": "Kommunchef"},
    token="exempel-token",
)


def secret(state_dir: Path) -> bytes:
    """UTSKICK_SECRET, else a random secret made once in `.utskick/secret` (mode 0600)."""
    env = os.environ.get("UTSKICK_SECRET")
    if env:
        return env.encode()
    path = state_dir / "secret"
    if path.exists():
        return path.read_bytes().strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32).encode()
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(value)
    os.replace(tmp, path)
    return value


def token(key: bytes, address_key: str) -> str:
    """An opaque, unforgeable unsubscribe token: no address ever appears in a URL."""
    digest = hmac.new(key, address_key.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:18]).decode().rstrip("=")
