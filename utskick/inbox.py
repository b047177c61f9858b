"""Reading the sender's mailbox: IMAP folders, or a folder of .eml files or an mbox an office exported.

Bounce reports and unsubscribe replies arrive in the mailbox utskick sends from, next to the mail
people write to it. This module only fetches and files away: it reads with BODY.PEEK (nothing is
marked read by looking) and moves exactly the messages it is told were processed, by UID, into
`utskick/behandlat`; it never deletes or flags anything else. What a message is, and what to do
about it, is decided elsewhere (`reports`, `returned`).
"""

from __future__ import annotations

import mailbox
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from .credentials import Credentials, OAuth2, Password, SignIn, Tokens, TokenWanted, signing_in
from .environment import variable
from .errors import Problem, UtskickError, display_path
from .files import read_bytes

PersonsTest = Callable[[bytes], bool]
"""Whether a message's header shows it to be a person's, so its body is not needed (`reports.persons`)."""

PROCESSED = ("utskick", "behandlat")
IMAP_TIMEOUT = 30.0
CHUNK = 25
TOO_BIG = 25 * 1024 * 1024
"""Of larger messages only the header is fetched: no report or request is that big."""


@dataclass(frozen=True)
class Mail:
    """One message as read: where it is (for the editor) and its bytes."""

    where: str
    raw: bytes
    uid: int | None = None


class Folder(Protocol):
    """One folder being read; `put_away` files the processed messages (IMAP) or does nothing."""

    @property
    def label(self) -> str: ...

    def messages(self) -> Iterator[Mail]: ...

    def put_away(self, mails: Sequence[Mail]) -> list[Problem]: ...


# --- files ----------------------------------------------------------------------------------------


@dataclass
class FileFolder:
    """A folder of .eml files, one .eml file, or an mbox file: only read, never changed."""

    path: Path
    label: str = ""

    def __post_init__(self) -> None:
        self.label = display_path(self.path)

    def messages(self) -> Iterator[Mail]:
        path = self.path
        if path.is_dir():
            for eml in sorted(p for p in path.iterdir() if p.suffix.lower() == ".eml" and p.is_file()):
                yield Mail(display_path(eml), read_bytes(eml))
            return
        head = read_bytes(path)[:5]
        if path.suffix.lower() == ".eml" and head != b"From ":
            yield Mail(display_path(path), read_bytes(path))
            return
        if head != b"From ":
            raise UtskickError(Problem("neither a folder of .eml files nor an mbox file (an mbox starts with a "
                                       "'From ' line)", path, 1, 1))
        box = mailbox.mbox(path, create=False)
        try:
            for n, key in enumerate(box.keys(), 1):
                yield Mail(f"{display_path(path)}: message {n}", box.get_bytes(key))
        finally:
            box.close()

    def put_away(self, mails: Sequence[Mail]) -> list[Problem]:
        return []


# --- IMAP -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImapAccount:
    host: str
    port: int
    implicit_tls: bool
    folders: tuple[str, ...]
    sign_in: SignIn

    @property
    def username(self) -> str:
        return self.sign_in.username

    @property
    def label(self) -> str:
        return f"{self.username}@{self.host}"


def _bad(message: str) -> UtskickError:
    return UtskickError(Problem(message, where="UTSKICK_IMAP_URL"))


def parse_imap_urls(value: str, password: str | None = None) -> list[ImapAccount]:
    """`imaps://user@host/INBOX,Avregistrera,imaps://other@host/INBOX`: mailboxes, each with its
    folders (comma-separated; a piece with :// starts the next mailbox). No message quotes the URL."""
    accounts: list[ImapAccount] = []
    for piece in (p.strip() for p in value.split(",")):
        if not piece:
            continue
        if "://" not in piece:
            if not accounts:
                raise _bad("must start with imaps://user@host/FOLDER")
            last = accounts.pop()
            accounts.append(replace(last, folders=last.folders + (unquote(piece),)))
            continue
        accounts.append(_account(piece, password))
    if not accounts:
        raise _bad("is empty")
    return accounts


def _account(url: str, password: str | None) -> ImapAccount:
    unreadable = _bad("cannot be read as imaps://user@host:993/FOLDER; characters such as @ # / ? : in the "
                      "user name must be %-encoded (@ as %40); put the password in UTSKICK_IMAP_PASSWORD")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise unreadable from None
    scheme = parts.scheme.lower()
    if scheme not in ("imaps", "imap"):
        raise _bad("must start with imaps:// (TLS) or imap:// (STARTTLS, required)")
    if not parts.hostname or not parts.username or parts.fragment:
        raise unreadable
    query = parse_qs(parts.query)
    if set(query) - {"auth"} or query.get("auth", ["password"])[-1].lower() not in ("password", "xoauth2"):
        raise _bad("the only option after '?' is auth=xoauth2")
    username = unquote(parts.username)
    xoauth2 = query.get("auth", [""])[-1].lower() == "xoauth2"
    sign_in = TokenWanted(username) if xoauth2 else Password(username, password or unquote(parts.password or ""))
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    implicit = scheme == "imaps"
    return ImapAccount(parts.hostname, port or (993 if implicit else 143), implicit, (folder,), sign_in)


def tls_context() -> ssl.SSLContext:
    """The system's CAs, or UTSKICK_IMAP_CAFILE's (an internal CA or a self-signed server): always verified."""
    cafile = (variable("UTSKICK_IMAP_CAFILE") or "").strip()
    try:
        return ssl.create_default_context(cafile=cafile or None)
    except (OSError, ssl.SSLError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else "no PEM certificate in it"
        raise UtskickError(Problem(f"UTSKICK_IMAP_CAFILE: cannot use it: {reason}", Path(cafile))) from None


def _failed(account: ImapAccount, e: BaseException) -> UtskickError:
    """A connection, TLS or sign-in failure as one sentence naming the mailbox, never a credential."""
    where = f"{account.label}:{account.port}"
    if isinstance(e, ssl.SSLCertVerificationError):
        what = f"the server's certificate could not be verified ({e.verify_message}); set UTSKICK_IMAP_CAFILE " \
               "for a server with its own CA"
    elif isinstance(e, ssl.SSLError):
        what = f"TLS failed ({e.reason or e})"
    elif isinstance(e, LoginError) and isinstance(account.sign_in, TokenWanted):
        what = ("the token was refused: check that it is for this mailbox and for IMAP (Microsoft 365: the app's "
                "IMAP.AccessAsApp, or the person's IMAP.AccessAsUser.All; see README: Microsoft 365)")
    elif isinstance(e, LoginError):
        what = "sign-in refused (check the user name and the password)"
    elif isinstance(e, (socket.timeout, TimeoutError)):
        what = "no answer in time"
    elif isinstance(e, OSError):
        what = f"cannot connect ({e.strerror or e})"
    else:
        what = f"the server answered: {e}"
    return UtskickError(Problem(f"{where}: {what}", where="IMAP"))


@contextmanager
def talking(account: ImapAccount) -> Iterator[None]:
    """Connection, TLS and protocol failures as our located error, naming the mailbox."""
    try:
        yield
    except (OSError, IMAPClientError) as e:
        raise _failed(account, e) from None


@contextmanager
def signed_in(account: ImapAccount, credentials: Credentials | None, context: ssl.SSLContext) -> Iterator[IMAPClient]:
    """`credentials` as `signing_in(account.sign_in, ...)` gives them: None when a token is wanted and there is none."""
    if credentials is None:
        raise UtskickError(Problem(f"{account.label}: ?auth=xoauth2 needs a token: set UTSKICK_IMAP_TOKEN_COMMAND, "
                                   "or sending.oauth in the settings (see README: Microsoft 365)", where="IMAP"))
    if isinstance(credentials, Password) and not credentials.secret:
        raise UtskickError(Problem(f"{account.label}: no password: set UTSKICK_IMAP_PASSWORD, or use ?auth=xoauth2",
                                   where="IMAP"))
    with talking(account):
        client = IMAPClient(account.host, account.port, ssl=account.implicit_tls, ssl_context=context,
                            timeout=IMAP_TIMEOUT)
    try:
        with talking(account):
            if not account.implicit_tls:
                client.starttls(context)
            match credentials:
                case OAuth2(username, tokens):
                    client.oauth2_login(username, tokens.token())
                case Password(username, secret) if client.has_capability("AUTH=PLAIN"):
                    client.plain_login(username, secret)  # UTF-8; LOGIN is ASCII only
                case Password(username, secret):
                    client.login(username, secret)
        yield client
    finally:
        try:
            client.logout()
        except (OSError, IMAPClientError):
            client.shutdown()


class ImapFolder:
    """One folder of a signed-in mailbox; read-only (EXAMINE) for a dry run."""

    def __init__(self, client: IMAPClient, account: ImapAccount, name: str, readonly: bool,
                 persons: PersonsTest | None = None) -> None:
        self.client = client
        self.account = account
        self.persons = persons
        self.label = f"{account.label}/{name}"
        try:
            client.select_folder(name, readonly=readonly)
        except IMAPClientError as e:
            raise UtskickError(Problem(f"{self.label}: cannot open the folder: {e}", where="IMAP")) from None
        except OSError as e:
            raise _failed(account, e) from None

    def messages(self) -> Iterator[Mail]:
        with talking(self.account):
            yield from self._messages()

    def _messages(self) -> Iterator[Mail]:
        """Headers first; the whole message only when it may be a report or a request (a person's
        mail, or one too big to be either, is read as its header alone)."""
        uids = sorted(self.client.search("UNDELETED"))
        for start in range(0, len(uids), CHUNK):
            chunk = uids[start:start + CHUNK]
            heads = self.client.fetch(chunk, ["RFC822.SIZE", "BODY.PEEK[HEADER]"])
            whole = [uid for uid, data in heads.items() if int(data.get(b"RFC822.SIZE", 0)) <= TOO_BIG
                     and not (self.persons and self.persons(data.get(b"BODY[HEADER]", b"")))]
            bodies = self.client.fetch(whole, ["BODY.PEEK[]"]) if whole else {}
            for uid in chunk:
                raw = bodies.get(uid, {}).get(b"BODY[]") or heads.get(uid, {}).get(b"BODY[HEADER]")
                if isinstance(raw, bytes):
                    yield Mail(f"{self.label} UID {uid}", raw, uid)

    def destination(self) -> str:
        """utskick/behandlat in the personal namespace, with the server's own hierarchy delimiter
        (Dovecot's '.', Exchange's '/'; a prefix such as 'INBOX.' where the server has one),
        created when missing."""
        prefix, delimiter = "", None
        personal = self.client.namespace().personal if self.client.has_capability("NAMESPACE") else None
        if personal:
            prefix, delimiter = personal[0]
        else:
            listed = self.client.list_folders("", "")
            delimiter = listed[0][1] if listed else None
        if isinstance(delimiter, bytes):
            delimiter = delimiter.decode()
        name = prefix + (delimiter or "/").join(PROCESSED)
        if not self.client.folder_exists(name):
            self.client.create_folder(name)
            self.client.subscribe_folder(name)
        return name

    def put_away(self, mails: Sequence[Mail]) -> list[Problem]:
        """MOVE (RFC 6851) where offered, else COPY, \\Deleted and UID EXPUNGE of exactly these
        UIDs (RFC 4315). Never a plain EXPUNGE: it would remove what the owner marked deleted."""
        uids = [m.uid for m in mails if m.uid is not None]
        if not uids:
            return []
        with talking(self.account):
            return self._move(uids)

    def _move(self, uids: list[int]) -> list[Problem]:
        target = self.destination()
        if self.client.has_capability("MOVE"):
            self.client.move(uids, target)
        elif self.client.has_capability("UIDPLUS"):
            self.client.copy(uids, target)
            self.client.add_flags(uids, [b"\\Deleted"], silent=True)
            self.client.uid_expunge(uids)
        else:
            return [Problem(f"{self.label}: the server offers neither MOVE nor UIDPLUS, so {len(uids)} processed "
                            f"message(s) stay where they are (they are not applied twice)", severity="warning")]
        return []


def imap_folders(accounts: Sequence[ImapAccount], tokens: Tokens, readonly: bool,
                 folder: str | None = None, persons: PersonsTest | None = None) -> Iterator[Folder]:
    """Each folder of each mailbox in turn, signed in to one mailbox at a time: read a folder before
    taking the next. `folder` replaces the URL's folders in every mailbox (`--folder`)."""
    context = tls_context()
    for account in accounts:
        with signed_in(account, signing_in(account.sign_in, tokens), context) as client:
            for name in (folder,) if folder else account.folders:
                yield ImapFolder(client, account, name, readonly, persons)


def from_environment() -> list[ImapAccount]:
    """UTSKICK_IMAP_URL, with UTSKICK_IMAP_PASSWORD (tokens for ?auth=xoauth2 come from `oauth`)."""
    url = (variable("UTSKICK_IMAP_URL") or "").strip()
    if not url:
        raise UtskickError(Problem("UTSKICK_IMAP_URL is not set: say which mailbox to read "
                                   "(imaps://user%40domain@host/INBOX), or read exported mail with --from PATH"))
    return parse_imap_urls(url, variable("UTSKICK_IMAP_PASSWORD"))
