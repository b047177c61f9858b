"""`utskick doctor`: every reason a send would fail, found before the first one.

A send learns of a wrong password, an untrusted certificate or a message over the relay's SIZE
limit only when it starts, with a list of members waiting. Each check here does what `send`
would do up to the point where mail would flow (connect, TLS, EHLO, AUTH, then QUIT) or reads
what receivers will read (the From domain's DNS records, the unsubscribe headers), and says how
to fix what fails. Nothing is sent, and no secret or token is ever printed.
"""

from __future__ import annotations

import asyncio
import email
import os
import socket
import ssl
from collections.abc import Mapping
from email import policy

import aiosmtplib
import dns.resolver

from . import dns_checks, replies, signer
from .addresses import InvalidAddress, ascii_form, normalise
from .credentials import OAuth2, Password, Tokens, TokenWanted, signing_in
from .dns_checks import Check
from .errors import UtskickError
from .load import load_issue
from .project import Project
from .message import MessageTemplate
from .oauth import SMTP, TOKEN_REFUSED, for_purpose
from .render import render
from .subscribers import SAMPLE
from .transport import SmtpSettings, parse_smtp_url, trusting

MICROSOFT_HOST = "smtp.office365.com"
PASSWORD_MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")
"""What aiosmtplib can sign in with using a password."""
TIMEOUT = 15.0


def secret(project: Project) -> Check:
    problems = signer.problems(project.state_dir)
    errors = [p.message for p in problems if p.is_error]
    if errors:
        return Check("secret", "FAIL", errors[0], "set UTSKICK_SECRET to a long random value, or delete .utskick/secret")
    warnings = [p.message for p in problems]
    return Check("secret", "warn", warnings[0]) if warnings else Check("secret", "ok", "UTSKICK_SECRET is set")


def sample_message(project: Project) -> tuple[bytes | None, str]:
    """The largest of the issues' messages (a sample reader's) and its issue; None when none renders."""
    largest: tuple[bytes | None, str] = (None, "")
    for path in project.issues():
        try:
            message = MessageTemplate.of(render(project, load_issue(path)), signer.sample()).message_for(SAMPLE)
        except (UtskickError, ValueError):
            continue  # `check` reports a broken issue; the others still tell the size
        if largest[0] is None or len(message) > len(largest[0]):
            largest = (message, path.name)
    return largest


def unsubscribe_headers(message: bytes | None, issue: str) -> Check:
    if message is None:
        return Check("List-Unsubscribe", "skip", "skipped: no issue renders", "run utskick check ISSUE")
    parsed = email.message_from_bytes(message, policy=policy.default)
    if parsed["List-Unsubscribe"] is None:
        return Check("List-Unsubscribe", "FAIL", f"missing in {issue}", "set unsubscribe.url or unsubscribe.mailto")
    if parsed["List-Unsubscribe-Post"] is None:
        return Check("List-Unsubscribe", "warn", "present, but no List-Unsubscribe-Post (one-click, RFC 8058)",
                     "set unsubscribe.url to an https:// page (utskick serve): Gmail and Yahoo require one-click")
    return Check("List-Unsubscribe", "ok", "List-Unsubscribe and List-Unsubscribe-Post (one-click) in every message")


def from_address(project: Project, settings: SmtpSettings) -> Check:
    sender = project.settings.sender.address
    if not settings.username:
        return Check("From", "ok", f"{sender} (the relay takes mail without signing in)")
    try:
        mailbox = normalise(settings.username)[1]
    except InvalidAddress:
        return Check("From", "note", f"{sender}; the user name {settings.username!r} is not an address, so the relay "
                     "decides who it may send as")
    if mailbox == normalise(sender)[1]:
        return Check("From", "ok", f"{sender} is the signed-in mailbox")
    return Check("From", "warn", f"{sender} is not the signed-in mailbox {settings.username}",
                 f"let {settings.username} send as {sender} (Microsoft 365: Send As permission), or sign in as {sender}")


def microsoft(project: Project, settings: SmtpSettings | None) -> bool:
    preset = getattr(project.settings.sending, "preset", None)
    return preset == "microsoft365" or (settings is not None and settings.host.lower() == MICROSOFT_HOST)


def sent_items() -> Check:
    return Check("Sent Items", "note", "Microsoft 365 keeps a copy of every message sent in the mailbox's Sent Items; "
                 "a full mailbox refuses to send (QuotaExceededException): give Sent Items a retention policy "
                 "that deletes after a few days, or watch the mailbox's size")


async def relay(settings: SmtpSettings, tls: ssl.SSLContext | None, tokens: Tokens,
                largest: int | None, timeout: float = TIMEOUT) -> list[Check]:
    """Connect, TLS, EHLO, sign in, QUIT: a line for each, up to the first that fails."""
    where = f"{settings.host}:{settings.port}"
    out: list[Check] = []
    client = aiosmtplib.SMTP(hostname=settings.host, port=settings.port, use_tls=settings.implicit_tls, start_tls=False,
                             validate_certs=True, tls_context=tls, timeout=timeout,
                             local_hostname=await asyncio.to_thread(socket.getfqdn))
    try:
        try:
            greeting = await client.connect()
        except aiosmtplib.SMTPConnectError as e:
            if isinstance(e.__cause__, ssl.SSLError):
                return [Check("connection", "ok", f"{where} accepts connections"), _tls_failure(e.__cause__, where)]
            reason = e.__cause__.strerror if isinstance(e.__cause__, OSError) and e.__cause__.strerror else str(e)
            return [Check("connection", "FAIL", f"cannot connect to {where}: {reason}",
                          "check the host and port in UTSKICK_SMTP_URL (587 for STARTTLS, 465 for smtps://) and the firewall")]
        except (aiosmtplib.SMTPException, OSError) as e:
            return [Check("connection", "FAIL", f"{where} did not greet us: {e}", "check the host and port in UTSKICK_SMTP_URL")]
        out.append(Check("connection", "ok", f"{where} answered {greeting.code} {greeting.message.splitlines()[0][:60]}"))
        await client.ehlo()
        if settings.starttls:
            if not client.supports_extension("starttls"):
                out.append(Check("TLS", "FAIL", f"{where} does not offer STARTTLS",
                                 "use smtps://HOST:465 if the relay takes implicit TLS, or the relay's submission port 587"))
                return out
            try:
                await client.starttls()
            except ssl.SSLError as e:
                out.append(_tls_failure(e, where))
                return out
            except aiosmtplib.SMTPException as e:
                if isinstance(e.__cause__, ssl.SSLError):
                    out.append(_tls_failure(e.__cause__, where))
                    return out
                raise
            await client.ehlo()
        ssl_object = client.get_transport_info("ssl_object")
        if ssl_object is not None:
            out.append(Check("TLS", "ok", f"{ssl_object.version()}, certificate verified for {settings.host}"))
        else:
            out.append(Check("TLS", "ok", "not used: plain SMTP to a relay on this computer"))
        out += _offers(client, settings, largest)
        if not any(c.blocks for c in out):
            out.append(await _sign_in(client, settings, tokens))
    except (aiosmtplib.SMTPException, OSError) as e:
        out.append(Check("relay", "FAIL", f"{where} broke off: {e}", "try again; if it persists, ask the relay's administrator"))
    finally:
        try:
            if client.is_connected:
                await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            pass
        client.close()
    return out


def _tls_failure(e: ssl.SSLError, where: str) -> Check:
    reason = getattr(e, "verify_message", None) or e.reason or str(e)
    return Check("TLS", "FAIL", f"TLS with {where} failed: {reason}",
                 "a relay with an internal CA or a self-signed certificate: put its PEM in UTSKICK_SMTP_CAFILE; "
                 "otherwise check the host name in UTSKICK_SMTP_URL against the certificate")


def _offers(client: aiosmtplib.SMTP, settings: SmtpSettings, largest: int | None) -> list[Check]:
    out = []
    offered = [m.upper() for m in client.server_auth_methods]
    if settings.sign_in is not None:
        xoauth2 = isinstance(settings.sign_in, TokenWanted)
        wanted = ("XOAUTH2",) if xoauth2 else PASSWORD_MECHANISMS
        usable = [m for m in offered if m in wanted]
        if not offered:
            out.append(Check("AUTH", "FAIL", "the relay offers no sign-in (AUTH) here",
                             "remove the user name from UTSKICK_SMTP_URL if the relay takes mail without it, or ask "
                             "its administrator to enable SMTP AUTH (Microsoft 365: Set-CASMailbox "
                             "-SmtpClientAuthenticationDisabled $false)"))
        elif not usable:
            fix = ("add ?auth=xoauth2 to UTSKICK_SMTP_URL (see README: Microsoft 365)" if "XOAUTH2" in offered
                   else "sign in with a password (remove ?auth=xoauth2)" if xoauth2 else "ask the relay's administrator")
            out.append(Check("AUTH", "FAIL", f"offers {' '.join(offered)}, none of {' '.join(wanted)}", fix))
        else:
            out.append(Check("AUTH", "ok", f"offers {' '.join(offered)}"))
    size = client.esmtp_extensions.get("size", "")
    limit = int(size) if size.strip().isdigit() else 0
    if largest is None:
        out.append(Check("SIZE", "skip", "skipped: no issue renders to measure"))
    elif not limit:
        out.append(Check("SIZE", "ok", f"no limit announced; the largest message is {largest / 1024:.0f} KB"))
    elif largest > limit:
        out.append(Check("SIZE", "FAIL", f"the largest message is {largest / 1024:.0f} KB, over the relay's "
                         f"{limit / 1024:.0f} KB", "make the images smaller or link them (https://) instead of embedding them"))
    else:
        out.append(Check("SIZE", "ok", f"the largest message is {largest / 1024:.0f} KB of the {limit / 1e6:.0f} MB allowed"))
    if client.supports_extension("pipelining"):
        out.append(Check("PIPELINING", "ok", "offered: two round trips a message"))
    else:
        out.append(Check("PIPELINING", "note", "not offered: every message costs four round trips instead of two "
                         "(slower over a long distance; nothing fails)"))
    return out


async def _sign_in(client: aiosmtplib.SMTP, settings: SmtpSettings, tokens: Tokens) -> Check:
    if settings.sign_in is None:
        return Check("sign-in", "ok", "none: the relay takes mail without AUTH")
    username = settings.sign_in.username
    token = ""
    try:
        match signing_in(settings.sign_in, tokens):
            case None:
                return Check("sign-in", "FAIL", "?auth=xoauth2 needs a token",
                             "set UTSKICK_SMTP_TOKEN_COMMAND, or sending.oauth in the settings (see README: Microsoft 365)")
            case OAuth2(tokens=source):
                token = await asyncio.to_thread(source.token)
                await client.auth_xoauth2(username, token)
                how = "XOAUTH2"
            case Password(secret=""):
                return Check("sign-in", "FAIL", f"no password for {username}", "set UTSKICK_SMTP_PASSWORD")
            case Password(secret=secret):
                await client.login(username, secret)
                how = "password"
    except UtskickError as e:
        return Check("sign-in", "FAIL", f"no token for {username}: {e.problems[0].message}", "see the message")
    except aiosmtplib.SMTPAuthenticationError as e:
        hint = TOKEN_REFUSED if token else replies.for_send(replies.Reply(e.code, e.message), "auth")[1]
        return Check("sign-in", "FAIL", f"{username} was refused ({e.code} {e.message.splitlines()[0]})",
                     hint or "check the user name and UTSKICK_SMTP_PASSWORD")
    return Check("sign-in", "ok", f"signed in as {username} ({how}), then QUIT")


def run(project: Project, resolve: dns.resolver.Resolver, environ: Mapping[str, str] = os.environ,
        timeout: float = TIMEOUT) -> list[Check]:
    """Every check, in the order a send meets them."""
    checks = [Check("settings", "ok", project.settings_path.name), secret(project)]
    message, issue = sample_message(project)
    url = environ.get("UTSKICK_SMTP_URL", "").strip()
    settings: SmtpSettings | None = None
    if not url:
        checks.append(Check("transport", "note", "UTSKICK_SMTP_URL is not set: send writes .eml files to outbox/ and mails nobody"))
    else:
        try:
            settings = parse_smtp_url(url, environ.get("UTSKICK_SMTP_PASSWORD") or None)
            cafile = environ.get("UTSKICK_SMTP_CAFILE", "").strip()
            tls = trusting(cafile) if cafile else None
        except UtskickError as e:
            checks.append(Check("transport", "FAIL", e.problems[0].message, "see the README, Sending"))
        else:
            checks.append(Check("transport", "ok", settings.label))
            checks += asyncio.run(relay(settings, tls, lambda mailbox: for_purpose(SMTP, project, mailbox, environ),
                                        len(message) if message is not None else None, timeout))
            checks.append(from_address(project, settings))
    domain = ascii_form(project.settings.sender.address).rpartition("@")[2]
    ms = microsoft(project, settings)
    chosen = project.settings.sending.dkim_selector
    selectors = (chosen,) if chosen else (dns_checks.MICROSOFT_SELECTORS if ms else ())
    checks += dns_checks.records(domain, selectors, ms, resolve)
    checks.append(unsubscribe_headers(message, issue))
    if ms:
        checks.append(sent_items())
    return checks
