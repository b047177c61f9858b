"""OAuth2 access tokens for XOAUTH2 sign-in, wherever they come from.

Microsoft 365 stops taking passwords for SMTP AUTH, so a relay login needs a token that expires
within the hour while a send to 2,000 members at 30 a minute takes longer. Each source (a
command the user names, msal for an app registration, msal for a person's own mailbox) sits
behind `TokenSource`: a client asks for a token when it opens a connection and reports one the
server refused, and `Renewing` keeps a token until shortly before it expires. The SMTP sender
uses it now; the IMAP reader can reuse every source with its own `Purpose` (its variable and
scopes). A token, client secret or refresh token is kept in memory or in the 0600 cache file
only: no message, exception or repr here contains one.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .environment import variable
from .errors import Problem, UtskickError, display_path
from .files import write_atomic
from .model import OAuth

if TYPE_CHECKING:
    from .project import Project

MARGIN = 300.0
"""Seconds before its expiry that a token is no longer handed to a new connection."""
COMMAND_TIMEOUT = 120.0
CACHE_FILE = "msal-cache.json"
SECRET_VARIABLE = "UTSKICK_OAUTH_CLIENT_SECRET"
HTTP_TIMEOUT = 30


class TokenSource(Protocol):
    def token(self) -> str:
        """An access token good for a new connection (blocking: call it from a thread)."""

    def refused(self, token: str) -> None:
        """The server refused `token`: the next `token()` gets a new one rather than this again."""


@dataclass(frozen=True)
class Purpose:
    """What a token is for: the variable naming a token command, and the scopes to ask for."""

    command_variable: str
    app_scopes: tuple[str, ...]
    user_scopes: tuple[str, ...]


SMTP = Purpose("UTSKICK_SMTP_TOKEN_COMMAND", ("https://outlook.office365.com/.default",),
               ("https://outlook.office.com/SMTP.Send",))
IMAP = Purpose("UTSKICK_IMAP_TOKEN_COMMAND", ("https://outlook.office365.com/.default",),
               ("https://outlook.office.com/IMAP.AccessAsUser.All",))
LOGIN_SCOPES = SMTP.user_scopes + IMAP.user_scopes
"""What `utskick login` asks a person to consent to once (msal adds offline_access itself)."""


@dataclass(frozen=True)
class Token:
    value: str = field(repr=False)
    expires_at: float | None
    """time.monotonic() when it expires; None when unknown (kept until refused)."""


Fetch = Callable[[bool], Token]
"""Gets a token; True means the last one was refused, so no cached copy of it may come back."""


class Renewing:
    """Hands out one token to every new connection until shortly before it expires."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._current: Token | None = None
        self._fresh = False
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            current = self._current
            if current is None or (current.expires_at is not None and time.monotonic() >= current.expires_at - MARGIN):
                current = self._current = self._fetch(self._fresh)
                self._fresh = False
            return current.value

    def refused(self, token: str) -> None:
        with self._lock:
            if self._current is not None and self._current.value == token:
                self._current, self._fresh = None, True

    def __repr__(self) -> str:
        return "Renewing(...)"


def problem(message: str, file: Path | None = None) -> UtskickError:
    return UtskickError(Problem(message, file))


# --- A command (any provider) -------------------------------------------------------------------


def command_source(variable: str, line: str, timeout: float = COMMAND_TIMEOUT) -> Renewing:
    """Like git's credential helpers: a command line, split like a shell's and run without one,
    whose standard output is the token. Its standard error goes straight to the terminal, and
    nothing it prints is quoted back, nor the command line beyond its program's name."""
    try:
        argv = shlex.split(line)
    except ValueError:
        raise problem(f"{variable}: cannot be split into a command (an unclosed quote?)") from None
    if not argv:
        raise problem(f"{variable}: is empty")
    program = Path(argv[0]).name

    def fetch(fresh: bool) -> Token:
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, timeout=timeout, check=False)
        except FileNotFoundError:
            raise problem(f"{variable}: program {program!r} not found") from None
        except subprocess.TimeoutExpired:
            raise problem(f"{variable}: {program!r} did not finish within {timeout:g} s") from None
        except OSError as e:
            raise problem(f"{variable}: cannot run {program!r}: {e.strerror or type(e).__name__}") from None
        if done.returncode != 0:
            raise problem(f"{variable}: {program!r} failed (exit {done.returncode}); what it printed to "
                          "standard error, if anything, is above")
        try:
            value = done.stdout.decode("ascii").strip()
        except UnicodeDecodeError:
            raise problem(f"{variable}: {program!r} printed something that is not an access token") from None
        if not value:
            raise problem(f"{variable}: {program!r} printed no token")
        if any(c.isspace() or not c.isprintable() for c in value):
            raise problem(f"{variable}: {program!r} must print the access token alone, on one line")
        return Token(value, _jwt_expiry(value))

    return Renewing(fetch)


def _jwt_expiry(value: str) -> float | None:
    """When a token that is a JWT says it expires (read, not verified: it is the server's to
    check), as time.monotonic(); None for an opaque token."""
    import jwt

    try:
        exp = jwt.decode(value, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        return None
    return time.monotonic() + (float(exp) - time.time()) if isinstance(exp, (int, float)) else None


# --- Microsoft 365 through msal -----------------------------------------------------------------


def _reason(e: Exception) -> str:
    import requests

    if isinstance(e, requests.exceptions.SSLError):
        return "its certificate is not trusted (an internal CA: point REQUESTS_CA_BUNDLE at it)"
    if isinstance(e, requests.exceptions.Timeout):
        return "it did not answer in time"
    if isinstance(e, requests.exceptions.HTTPError):
        return "it answered with a server error; try again later"
    if isinstance(e, requests.exceptions.RequestException):
        return "no connection"
    if "authority" in str(e).lower():  # msal's ValueError for a tenant the platform does not know
        return "the tenant was not found: check sending.oauth.tenant"
    # A key msal cannot load: its text is left out, since it comes from near the key itself.
    return "the client certificate cannot be used (an unencrypted PEM private key and its certificate)"


def _refusal(result: Mapping[str, Any]) -> str:
    """The identity platform's reason, without its trace and correlation ids."""
    text = str(result.get("error_description") or result.get("error") or "no reason given")
    return text.splitlines()[0].split(" Trace ID:")[0].strip()


def _expiry(result: Mapping[str, Any]) -> float:
    return time.monotonic() + float(result.get("expires_in", 0))


class _Msal:
    """Builds the msal application on first use: building it already asks the identity platform."""

    def __init__(self, oauth: OAuth, build: Callable[..., Any]) -> None:
        self.oauth = oauth
        self._build = build
        self._app: Any = None

    @property
    def authority(self) -> str:
        return f"{self.oauth.authority}/{self.oauth.tenant}"

    def app(self, **kwargs: Any) -> Any:
        if self._app is None:
            try:
                self._app = self._build(self.oauth.client_id, authority=self.authority, instance_discovery=False,
                                        timeout=HTTP_TIMEOUT, **kwargs)
            except Exception as e:  # requests' errors, or msal's ValueError for an unknown tenant
                raise problem(f"cannot sign in at {self.authority}: {_reason(e)}") from None
        return self._app

    def call(self, what: Callable[[], Any]) -> Any:
        import requests

        try:
            return what()
        except requests.exceptions.RequestException as e:
            raise problem(f"cannot sign in at {self.authority}: {_reason(e)}") from None


class MicrosoftApp:
    """An app registration with `SMTP.SendAsApp`: signs in by itself (client credentials)."""

    def __init__(self, oauth: OAuth, credential: str | dict[str, str], scopes: tuple[str, ...]) -> None:
        import msal

        self._msal = _Msal(oauth, msal.ConfidentialClientApplication)
        self._credential = credential
        self.scopes = list(scopes)

    def __repr__(self) -> str:
        return "MicrosoftApp(...)"

    def fetch(self, fresh: bool) -> Token:
        app = self._msal.app(client_credential=self._credential)
        if fresh:
            app.remove_tokens_for_client()
        result = self._msal.call(lambda: app.acquire_token_for_client(self.scopes))
        if "access_token" not in result:
            raise problem(f"Microsoft refused the app {self._msal.oauth.client_id} a token: {_refusal(result)} "
                          f"(check the client secret or certificate and the tenant)")
        return Token(result["access_token"], _expiry(result))


class PersonalMailbox:
    """A person's own mailbox: `login` once by device code, then silent renewal from the cache."""

    def __init__(self, oauth: OAuth, cache_path: Path, scopes: tuple[str, ...], username: str | None = None) -> None:
        import msal

        self.cache_path = cache_path
        self.scopes = list(scopes)
        self.username = username
        self._cache = msal.SerializableTokenCache()
        if cache_path.exists():
            try:
                self._cache.deserialize(cache_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                raise problem("cannot read the sign-in cache: delete it and run utskick login", cache_path) from None
        self._msal = _Msal(oauth, msal.PublicClientApplication)

    def __repr__(self) -> str:
        return "PersonalMailbox(...)"

    def _app(self) -> Any:
        return self._msal.app(token_cache=self._cache)

    def _save(self) -> None:
        if self._cache.has_state_changed:
            write_atomic(self.cache_path, self._cache.serialize(), mode=0o600)

    def fetch(self, fresh: bool) -> Token:
        app = self._app()
        accounts = app.get_accounts(username=self.username) if self.username else app.get_accounts()
        who = f" as {self.username}" if self.username else ""
        if not accounts:
            raise problem(f"nobody is signed in{who}: run utskick login and sign in{who}")
        result = self._msal.call(lambda: app.acquire_token_silent_with_error(self.scopes, accounts[0], force_refresh=fresh))
        self._save()
        if not result or "access_token" not in result:
            reason = f" ({_refusal(result)})" if result else ""
            raise problem(f"the sign-in{who} has expired or was revoked{reason}: run utskick login and sign in{who} again")
        return Token(result["access_token"], _expiry(result))

    def login(self, show: Callable[[str, str], None]) -> str:
        """The device-code flow: `show(url, code)` tells the person where to go; returns who signed in."""
        app = self._app()
        flow = self._msal.call(lambda: app.initiate_device_flow(scopes=list(LOGIN_SCOPES)))
        if "user_code" not in flow:
            raise problem(f"Microsoft did not start the sign-in: {_refusal(flow)} (is 'Allow public client flows' "
                          "on in the app registration?)")
        show(flow["verification_uri"], flow["user_code"])
        result = self._msal.call(lambda: app.acquire_token_by_device_flow(flow))
        if "access_token" not in result:
            raise problem(f"the sign-in did not complete: {_refusal(result)}")
        self._save()
        claims = result.get("id_token_claims") or {}
        return str(claims.get("preferred_username") or claims.get("email") or "")


def _certificate(oauth: OAuth, project: Project) -> dict[str, str]:
    """msal's certificate credential from one PEM file with the private key and the certificate
    (msal derives the SHA-256 thumbprint Microsoft asks for from the certificate)."""
    assert oauth.client_certificate is not None
    path = project.root / oauth.client_certificate
    where = ("sending", "oauth", "client_certificate", "")
    try:
        pem = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "not a PEM file"
        raise UtskickError(project.settings_doc.problem(where, f"cannot read {display_path(path)}: {reason}")) from None
    if "PRIVATE KEY-----" not in pem or "BEGIN CERTIFICATE-----" not in pem:
        raise UtskickError(project.settings_doc.problem(
            where, f"{display_path(path)} must hold both the private key and the certificate (PEM)"))
    start = pem.index("-----BEGIN CERTIFICATE-----")
    return {"private_key": pem, "public_certificate": pem[start:]}


def for_purpose(purpose: Purpose, project: Project, username: str | None,
                environ: Mapping[str, str] = os.environ) -> TokenSource | None:
    """The token command when its variable is set, else `sending.oauth`, else None."""
    line = variable(purpose.command_variable, environ)
    if line is not None:
        return command_source(purpose.command_variable, line.strip())
    oauth = project.settings.sending.oauth
    if oauth is None:
        return None
    if oauth.flow == "device":
        return Renewing(PersonalMailbox(oauth, project.state_dir / CACHE_FILE, purpose.user_scopes, username).fetch)
    credential: str | dict[str, str]
    if oauth.client_certificate is not None:
        credential = _certificate(oauth, project)
    else:
        credential = variable(SECRET_VARIABLE, environ) or ""
        if not credential:
            raise UtskickError(project.settings_doc.problem(
                ("sending", "oauth", "flow", ""),
                f"flow: app needs the app's client secret in {SECRET_VARIABLE}, or client_certificate: FILE.pem"))
    return Renewing(MicrosoftApp(oauth, credential, purpose.app_scopes).fetch)


TOKEN_REFUSED = ("the token was refused: check that it is for this mailbox and for SMTP. On Microsoft 365: the "
                 "app's permission SMTP.SendAsApp with admin consent (or the person's SMTP.Send), SMTP AUTH enabled "
                 "for the mailbox (Set-CASMailbox -SmtpClientAuthenticationDisabled $false), the app's mailbox "
                 "permission and sending.oauth.tenant (see README: Microsoft 365)")
