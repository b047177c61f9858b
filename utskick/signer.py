"""The one place utskick keeps its secret and computes an HMAC.

Unsubscribe tokens, Message-IDs and the receiver's pull requests are all signed here, each
purpose with its own key derived from the one secret, so a value made for one purpose can never
be replayed as another, and nothing that identifies a person appears in what is signed out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path

from .environment import variable
from .errors import Problem, UtskickError
from .files import locked, write_atomic

MIN_SECRET = 16
TOKEN_LENGTH = 24  # characters of URL-safe base64: 18 bytes (144 bits) of HMAC
TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def looks_like_token(text: str) -> bool:
    """Of the length and alphabet of a token: what the receiver stores and what a mail reply may
    carry. It says nothing of whether a token belongs to anyone."""
    return len(text) == TOKEN_LENGTH and set(text) <= TOKEN_ALPHABET


class Signer:
    """Every HMAC utskick computes, from one secret. Made once per command."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        # The HMAC state of each key set up once: signing a whole list costs half as much.
        self._tokens = hmac.new(self._derive("unsubscribe-token"), digestmod=hashlib.sha256)

    def _derive(self, purpose: str) -> bytes:
        # Tokens predate derived keys: they keep the bare secret, so old links still resolve.
        if purpose == "unsubscribe-token":
            return self._secret
        return hmac.new(self._secret, f"utskick/{purpose}".encode(), hashlib.sha256).digest()

    def token(self, address_key: str) -> str:
        """An opaque, unforgeable unsubscribe token: no address ever appears in a URL."""
        mac = self._tokens.copy()
        mac.update(address_key.encode())
        return _b64(mac.digest()[:18])

    def message_id(self, slug: str, address_key: str, domain: str) -> str:
        """The same Message-ID on every build, retry and resume of one issue to one person, unique
        per issue and recipient, and revealing nothing of the address: bounce reports carry it back."""
        digest = hmac.new(self._derive("message-id"), f"{slug}\0{address_key}".encode(), hashlib.sha256).digest()
        return f"<{_b64(digest[:18])}.{slug}@{domain}>"

    def mac(self, purpose: str, data: bytes) -> str:
        """An HMAC of `data` under the key for `purpose` (such as "pull" for the receiver)."""
        return hmac.new(self._derive(purpose), data, hashlib.sha256).hexdigest()

    def verify(self, purpose: str, data: bytes, mac: str) -> bool:
        return hmac.compare_digest(self.mac(purpose, data), mac)


# A fixed key for the fictional sample subscriber of `build` and `preview`: build output is
# meant to be published, so it must carry no token signed with the real secret.
SAMPLE_KEY = b"utskick: the sample subscriber's key, not a secret"


def sample() -> Signer:
    return Signer(SAMPLE_KEY)


def _short(value: bytes, where: Path | None, name: str) -> Problem | None:
    if len(value.strip()) >= MIN_SECRET:
        return None
    return Problem(f"{name} is blank or shorter than {MIN_SECRET} characters: every token would be "
                   "guessable; set a long random value (or delete the file to have one made)", where)


def _checked(value: bytes, where: Path | None, name: str) -> bytes:
    problem = _short(value, where, name)
    if problem is not None:
        raise UtskickError(problem)
    return value.strip()


def load(state_dir: Path) -> Signer:
    """UTSKICK_SECRET, else a random secret made once in `.utskick/secret` (mode 0600)."""
    env = variable("UTSKICK_SECRET")
    if env:
        return Signer(_checked(env.encode(), None, "UTSKICK_SECRET"))
    path = state_dir / "secret"
    # preview, check and send may all make it at once: one of them must win for everyone.
    try:
        with locked(state_dir / "secret.lock"):
            if path.exists():
                return Signer(_checked(path.read_bytes(), path, "the secret"))
            value = secrets.token_urlsafe(32).encode()
            write_atomic(path, value, mode=0o600)
            return Signer(value)
    except OSError as e:
        raise UtskickError(Problem(f"cannot read or create the secret: {e.strerror or e}", path)) from None


def problems(state_dir: Path) -> list[Problem]:
    """What `check` says of the secret, without creating it: an error when it is too short; a
    warning when it is `.utskick/secret` on this computer only, since a send from another
    computer would sign other tokens and old links would resolve to nobody."""
    env = variable("UTSKICK_SECRET")
    if env:
        short = _short(env.encode(), None, "UTSKICK_SECRET")
        return [short] if short else []
    path = state_dir / "secret"
    found: list[Problem] = []
    try:
        short = _short(path.read_bytes(), path, "the secret") if path.exists() else None
    except OSError as e:
        short = Problem(f"cannot read the secret: {e.strerror or e}", path)
    if short:
        found.append(short)
    found.append(Problem("the secret lives on this computer only: copy .utskick/secret or set UTSKICK_SECRET "
                         "on every computer that sends", path, severity="warning"))
    return found
