"""An SMTP relay: URL parsing, TLS, sign-in (password or XOAUTH2), pipelining.

The connection speaks MAIL, RCPT and DATA itself (aiosmtplib still connects, does TLS and AUTH):
`SMTP.data` rewrites every payload twice with regular expressions and `mail`/`rcpt` re-parse the
addresses, which together cost more than the socket work. The messages are CRLF and dot-safe by
construction (`MessageTemplate.message_for`), so they go out unchanged.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from .. import replies
from ..addresses import ascii_form, is_loopback
from ..credentials import Credentials, OAuth2, Password, SignIn, TokenWanted
from ..errors import Problem, UtskickError
from ..oauth import TOKEN_REFUSED
from .base import SMTP_TIMEOUT, Bounced, BudgetReached, Committing, Fatal, Stage, Temporary, TransportError
from .link import Replies

@dataclass(frozen=True)
class SmtpSettings:
    """What UTSKICK_SMTP_URL says: where, how secured, and who signs in (None: nobody)."""

    host: str
    port: int
    implicit_tls: bool
    starttls: bool
    sign_in: SignIn | None = None

    @property
    def username(self) -> str | None:
        return self.sign_in.username if self.sign_in is not None else None

    @property
    def label(self) -> str:
        return self.describe(self.sign_in)

    def describe(self, sign_in: SignIn | Credentials | None) -> str:
        """The relay as a transport's label, signed in with `sign_in`; never a password."""
        who = f"{sign_in.username}@" if sign_in is not None else ""
        security = "TLS" if self.implicit_tls else ("STARTTLS" if self.starttls else "plain, loopback only")
        xoauth2 = ", XOAUTH2" if isinstance(sign_in, (TokenWanted, OAuth2)) else ""
        return f"SMTP {who}{self.host}:{self.port} ({security}{xoauth2})"


def parse_smtp_url(url: str, password: str | None = None) -> SmtpSettings:
    """`smtp://user@host:587` (STARTTLS, or plain on loopback) or `smtps://host:465`."""

    def bad(msg: str) -> UtskickError:
        return UtskickError(Problem(f"UTSKICK_SMTP_URL: {msg}"))

    # A password with '#', '/' or '?' in it ends the host part early, so what follows the host
    # may be part of the password: no message here quotes any piece of the URL.
    unreadable = bad("cannot be read as smtp://user:password@host:port; characters such as # / ? @ : "
                     "in the user name or password must be %-encoded (# as %23, / as %2F, ? as %3F, "
                     "@ as %40, : as %3A), or put the password in UTSKICK_SMTP_PASSWORD instead")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        if "@" in url:
            raise unreadable from None
        raise bad("the port must be a number from 1 to 65535") from None
    if parts.fragment or parts.path not in ("", "/") or "@" in parts.query:
        raise unreadable
    scheme = parts.scheme.lower()
    if scheme not in ("smtp", "smtps"):
        raise bad("must start with smtp:// (STARTTLS) or smtps:// (implicit TLS)")
    host = parts.hostname
    if not host:
        raise bad("has no host name (smtp://user@host:587)")
    if port == 0:
        raise bad("the port must be a number from 1 to 65535")
    # Blank values kept: '?starttls' without '=require' must not quietly mean plain SMTP.
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"starttls", "auth"}
    if unknown:
        raise bad("unknown option after '?' (the options are ?starttls=require and ?auth=xoauth2, joined by &)")
    if query.get("starttls", ["require"])[-1] != "require":
        raise bad("starttls can only be 'require'")
    if query.get("auth", ["xoauth2"])[-1].lower() != "xoauth2":
        raise bad("auth can only be 'xoauth2' (without it, the password signs in)")
    xoauth2 = "auth" in query
    implicit = scheme == "smtps"
    starttls = not implicit and ("starttls" in query or not is_loopback(host))
    username = unquote(parts.username) if parts.username else None
    if username and not (implicit or starttls):
        raise bad("credentials are only ever sent over TLS, and this is plain SMTP: use smtps://, "
                  "add ?starttls=require, or leave the user name out for a local relay")
    secret = password or unquote(parts.password or "")
    if xoauth2 and (secret or not username):
        raise bad("?auth=xoauth2 signs in as the mailbox in the user name (smtp://name%40example.se@host:587) "
                  "with a token, not a password: remove the password from the URL and UTSKICK_SMTP_PASSWORD")
    sign_in = (TokenWanted(username) if xoauth2 else Password(username, secret)) if username else None
    return SmtpSettings(host, port or (465 if implicit else 587), implicit, starttls, sign_in)


def classify(code: int, message: str, stage: Stage, recipient: str | None) -> TransportError:
    """The typed error for a refusal; what it means is decided in `replies`."""
    verdict, hint = replies.for_send(replies.Reply(code, message), stage)
    if verdict == "temporary":
        return Temporary(message, code=code, recipient=recipient, stage=stage, reconnect=code == 421)
    kind: type[TransportError] = {"bounced": Bounced, "budget": BudgetReached}.get(verdict, Fatal)
    return kind(message, code=code, recipient=recipient, stage=stage, hint=hint)


class SmtpConnection:
    """One signed-in link to the relay, carrying one transaction at a time.

    With PIPELINING (RFC 2920) MAIL, RCPT and DATA go out in one write and their replies are read
    after: two round trips a message instead of four. And when the caller names the next
    recipient (`then`), that transaction's MAIL, RCPT and DATA follow this message's final dot
    in the same write (RFC 2920, 3.1: message content may open a group), so from the second
    message on each costs one round trip. Every reply is still checked in order, so a refused
    RCPT bounces only its recipient, and `committing` still comes only after the 354; a started
    transaction nobody sends is ended by closing the link, never by a dot, so it delivers nothing.
    """

    def __init__(self, client: aiosmtplib.SMTP, sender: str, timeout: float) -> None:
        transport = client.transport
        assert isinstance(transport, asyncio.Transport)
        self.pipelining = client.supports_extension("pipelining")
        self.replies = Replies(transport)
        transport.set_protocol(self.replies)
        self.mail_from = b"MAIL FROM:<" + ascii_form(sender).encode("ascii") + b">\r\n"
        self.timeout = timeout
        self.started: str | None = None
        """The recipient whose MAIL, RCPT and DATA went out with the last message's dot."""

    def _commands(self, recipient: str) -> list[tuple[Stage, bytes, tuple[int, ...]]]:
        return [
            ("mail", self.mail_from, (250,)),
            ("rcpt", b"RCPT TO:<" + ascii_form(recipient).encode("ascii") + b">\r\n", (250, 251)),
            ("data", b"DATA\r\n", (354,)),
        ]

    def _next(self, then: str | None) -> bytes:
        """The next transaction's commands, to follow a final dot; b"" when it cannot start now."""
        if then is None or not self.pipelining:
            return b""
        try:
            return b"".join(command for _, command, _ in self._commands(then))
        except UnicodeError:  # an address only SMTPUTF8 carries: its own `send` says so
            return b""

    async def send(self, seq: int, recipient: str, message: bytes, committing: Committing,
                   then: str | None = None) -> str:
        """`message` must be CRLF with no line starting with '.', as `MessageTemplate.message_for` makes them."""
        if self.started is not None and self.started != recipient:
            # Another recipient's transaction is open and only closing the link ends it unsent.
            self.replies.transport.close()
            raise Temporary("the transaction started for the next recipient was not used", recipient=recipient,
                            stage="mail", reconnect=True)
        steps = self._commands(recipient)
        refused: TransportError | None = None
        stage: Stage = "mail"
        started, self.started = self.started, None
        try:
            if self.pipelining and started is None:
                self.replies.write(b"".join(command for _, command, _ in steps))
            for stage, command, wanted in steps:
                if not self.pipelining:
                    if refused is not None:
                        break
                    self.replies.write(command)
                reply = await self.replies.read(self.timeout)
                if refused is None and reply.code not in wanted:
                    refused = classify(reply.code or 0, reply.text, stage, recipient)
            if refused is not None:
                if self.pipelining and reply.code == 354:
                    # DATA accepted although the transaction failed (RFC 2920, 3.1): an empty message ends it.
                    self.replies.write(b".\r\n")
                    await self.replies.read(self.timeout)
                await self._reset(refused)
                raise refused
            committing()
            following = self._next(then)
            self.replies.write(message + b".\r\n" + following)
            self.started = then if following else None
            reply = await self.replies.read(self.timeout)
        except ConnectionError as e:
            self.replies.transport.close()
            if refused is None:
                raise Temporary(str(e), recipient=recipient, stage=stage, reconnect=True) from None
            if isinstance(refused, Temporary):
                refused.reconnect = True
            raise refused from None
        if reply.code != 250:
            refused = classify(reply.code or 0, reply.text, "data", recipient)
            if self.started is None:
                await self._reset(refused)
            elif isinstance(refused, Temporary):
                refused.reconnect = True  # the link holds the next one's transaction: retry on another
            raise refused
        return f"{reply.code} {reply.text}"

    async def _reset(self, error: TransportError) -> None:
        """Abort the failed transaction so the connection can carry the next one, or drop it."""
        try:
            if not (isinstance(error, Temporary) and error.reconnect):
                self.replies.write(b"RSET\r\n")
                if (await self.replies.read(self.timeout)).code == 250:
                    return
        except ConnectionError:
            pass
        self.replies.transport.close()
        if isinstance(error, Temporary):
            error.reconnect = True

    async def close(self) -> None:
        if self.started is not None:  # the server may be waiting for content: QUIT would be read as such
            self.replies.transport.close()
            return
        try:
            self.replies.write(b"QUIT\r\n")
            await self.replies.read(min(self.timeout, 5))
        except ConnectionError:
            pass
        finally:
            self.replies.transport.close()


class SmtpTransport:
    kind = "smtp"
    idempotent = False
    rate_limited = True

    def __init__(self, settings: SmtpSettings, sender: str, timeout: float = SMTP_TIMEOUT,
                 tls_context: ssl.SSLContext | None = None, credentials: Credentials | None = None) -> None:
        """`settings` say where; `credentials` (`credentials.signing_in(settings.sign_in, tokens)`) sign in."""
        self.settings = settings
        self.credentials = credentials
        self.sender = sender
        self.timeout = timeout
        self.tls_context = tls_context
        self.label = settings.describe(credentials)
        self._hostname: str | None = None

    async def connect(self, renewed: bool = False) -> SmtpConnection:
        s, c = self.settings, self.credentials
        if self._hostname is None:
            self._hostname = await asyncio.to_thread(socket.getfqdn)
        username = c.username if c is not None else None
        tokens = c.tokens if isinstance(c, OAuth2) else None
        used: list[str] = []

        async def token() -> str:
            assert tokens is not None
            used.append(await asyncio.to_thread(tokens.token))
            return used[-1]

        client = aiosmtplib.SMTP(
            hostname=s.host, port=s.port, username=username, password=c.secret if isinstance(c, Password) else None,
            oauth_token_generator=token if tokens is not None else None,
            use_tls=s.implicit_tls, start_tls=s.starttls, validate_certs=True,
            tls_context=self.tls_context, timeout=self.timeout, local_hostname=self._hostname,
        )
        where = f"{s.host}:{s.port}"
        try:
            await client.connect()
        except UtskickError as e:  # no token to be had
            raise Fatal(f"no token to sign in as {username!r}: {'; '.join(p.message for p in e.problems)}",
                        stage="auth") from None
        except aiosmtplib.SMTPAuthenticationError as e:
            if tokens is not None and used and not renewed:
                # Revoked or expired early: one new token, then the refusal stands.
                tokens.refused(used[-1])
                return await self.connect(renewed=True)
            raise Fatal(f"authentication failed for {username!r} ({e.code} {e.message})", code=e.code, stage="auth",
                        hint=TOKEN_REFUSED if used else replies.for_send(replies.Reply(e.code, e.message), "auth")[1]) from None
        except aiosmtplib.SMTPConnectResponseError as e:
            if 400 <= e.code < 500:
                raise Temporary(f"{where} is busy: {e.message}", code=e.code, stage="connect", reconnect=True) from None
            raise Fatal(f"{where} refused the connection: {e.message}", code=e.code, stage="connect") from None
        except aiosmtplib.SMTPResponseException as e:
            # EHLO or STARTTLS refused.
            if 400 <= e.code < 500:
                raise Temporary(e.message, code=e.code, stage="connect", reconnect=True) from None
            raise Fatal(f"{where} refused us: {e.code} {e.message}", code=e.code, stage="tls") from None
        except ssl.SSLError as e:
            raise Fatal(f"TLS with {where} failed: {e.reason or e}", stage="tls") from None
        except aiosmtplib.SMTPTimeoutError as e:
            raise Temporary(f"{where} did not answer in time ({e})", stage="connect", reconnect=True) from None
        except aiosmtplib.SMTPConnectError as e:
            raise Fatal(f"cannot connect to {where}: {_cause(e)}", stage="connect") from None
        except aiosmtplib.SMTPServerDisconnected as e:
            raise Temporary(f"{where} closed the connection ({e})", stage="connect", reconnect=True) from None
        except aiosmtplib.SMTPException as e:
            # STARTTLS not offered, no AUTH over this link: the server is not what the URL says.
            raise Fatal(f"{where}: {e.message}", stage="tls") from None
        except OSError as e:
            raise Fatal(f"cannot connect to {where}: {e.strerror or e}", stage="connect") from None
        try:
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
        except (aiosmtplib.SMTPException, OSError) as e:
            client.close()
            raise Temporary(f"{where} did not greet us properly ({e})", stage="connect", reconnect=True) from None
        return SmtpConnection(client, self.sender, self.timeout)


def _cause(e: BaseException) -> str:
    cause = e.__cause__
    if isinstance(cause, ssl.SSLError):
        return f"TLS failed: {cause.reason or cause}"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(e)


def trusting(cafile: str) -> ssl.SSLContext:
    """Verify the relay against these CA certificates instead of the system's (a relay with an
    internal CA or a self-signed certificate): still verified, host name included."""
    try:
        return ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "no PEM certificate in it"
        raise UtskickError(Problem(f"UTSKICK_SMTP_CAFILE: cannot use it: {reason}", Path(cafile))) from None
