"""How a mailbox signs in: a password, or an OAuth2 token source.

One sign-in concept shared by SMTP sending, `doctor` and the IMAP inbox, so that none of them
branches on a flag next to a password string. A URL says which kind (`?auth=xoauth2`) and is
parsed into a `SignIn` without asking for anything; where the token source is known (the
command, through `oauth.for_purpose`), `signing_in` turns it into `Credentials`. Neither a
password nor a token source appears in a repr.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .oauth import TokenSource

Tokens = Callable[[str], TokenSource | None]
"""The token source for a mailbox's user name, None when there is none (as `oauth.for_purpose`)."""


@dataclass(frozen=True)
class Password:
    username: str
    secret: str = field(repr=False)
    """'' when none was given."""


@dataclass(frozen=True)
class OAuth2:
    """XOAUTH2: a token from `tokens` for each new connection."""

    username: str
    tokens: TokenSource = field(repr=False)


Credentials = Password | OAuth2


@dataclass(frozen=True)
class TokenWanted:
    """A URL's ?auth=xoauth2: OAuth2 for this user, once a token source is found."""

    username: str


SignIn = Password | TokenWanted
"""What a URL says about signing in."""


def signing_in(sign_in: SignIn, tokens: Tokens | None) -> Credentials | None:
    """The password as it is, or OAuth2 with the source `tokens` gives for the user; None when a
    token is wanted and there is no source."""
    if isinstance(sign_in, Password):
        return sign_in
    source = tokens(sign_in.username) if tokens is not None else None
    return OAuth2(sign_in.username, source) if source is not None else None
