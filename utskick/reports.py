"""What one message in the sender's mailbox is: a delivery report, an auto-reply, an unsubscribe
request, or something a person wrote.

Microsoft 365 and most organisations' relays accept an unknown address and report it minutes
later by mail, so the only way to learn of a dead address is to read those reports. This module
only reads: it turns one raw message into a typed `Parsed`, and deciding what a status code means
for the recipient is left to `replies`. Delivery reports are recognised before auto-replies,
since real reports also carry `Auto-Submitted: auto-replied`.
"""

from __future__ import annotations

import base64
import email
import hashlib
import quopri
import re
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, HeaderParser
from email.utils import getaddresses
from typing import Literal

from flufl.bounce import all_failures

from .signer import TOKEN_LENGTH, looks_like_token

Kind = Literal["report", "nonstandard-report", "auto-reply", "request", "other"]

STATUS_RE = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
TOKEN_RE = re.compile(rf"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{{{TOKEN_LENGTH}}}(?![A-Za-z0-9_-])")
CONTINUATION_RE = re.compile(r"(?<=\s)\d{3}[- ][245]\.\d{1,3}\.\d{1,3}\s+")
MESSAGE_ID_RE = re.compile(r"^\s*Message-ID:\s*(<[^>\s]+>)", re.IGNORECASE | re.MULTILINE)
PREFIX = r"^\s*(?:(?:re|sv|fw|fwd|vb|vs|aw|wg|tr)\s*:\s*)*"
REQUEST_RE = re.compile(PREFIX + r"(?:avregistrera|avsluta|unsubscribe)\b", re.IGNORECASE)
AUTO_SUBJECT_RE = re.compile(PREFIX + r"(?:automatiskt svar|autosvar|frånvaro|frånvarande|out of office|"
                             r"automatic reply|auto(?:matic)?[- ]?reply|autoreply|abwesenheit)", re.IGNORECASE)
MAILER_DAEMONS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "maildaemon", "mailerdaemon", "mdaemon"})
# Where a message says to whom it was delivered, besides To and Cc: an alias keeps its own name here.
DELIVERED_HEADERS = ("to", "cc", "delivered-to", "x-original-to", "envelope-to")


@dataclass(frozen=True)
class Failure:
    """One recipient's block of a delivery report (RFC 3464 per-recipient fields)."""

    recipient: str
    """Final-Recipient's address, lower-cased."""
    original: str | None
    """Original-Recipient's address, when the report gives one."""
    action: str
    """failed, delayed, delivered, relayed, expanded; empty when the report gives none."""
    status: str | None
    """The enhanced status code ('5.1.10'); None when the report carries none."""
    diagnostic: str
    """The remote server's reply ('550 5.1.10 RESOLVER.ADR.RecipientNotFound; …'), else the status."""


@dataclass(frozen=True)
class Parsed:
    kind: Kind
    message_id: str
    """This message's own Message-ID (a digest of its bytes when it has none): what was processed."""
    original_ids: tuple[str, ...]
    """The Message-IDs of what we sent that it refers to: the returned headers of a report, or an
    auto-reply's In-Reply-To and References."""
    failures: tuple[Failure, ...]
    tokens: tuple[str, ...]
    """Words of a token's shape in an unsubscribe request's subject and text, in order."""
    sender: str | None
    """The From address, lower-cased (it can be forged: a request by it alone needs a person)."""
    subject: str


def parse(raw: bytes, unsubscribe_address: str | None = None) -> Parsed:
    """What `raw` is. `unsubscribe_address` is the settings' `unsubscribe.mailto`: a message
    delivered to it, or with "avregistrera"/"unsubscribe" as its subject, is a request."""
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    own = _message_id(msg.get("Message-ID")) or "sha256:" + hashlib.sha256(raw).hexdigest()
    subject = _text(msg.get("Subject"))
    sender = _first_address(msg, "from")

    def result(kind: Kind, ids: tuple[str, ...] = (), failures: tuple[Failure, ...] = (),
               tokens: tuple[str, ...] = ()) -> Parsed:
        return Parsed(kind, own, ids, failures, tokens, sender, subject)

    report = _delivery_status(msg)
    if report is not None:
        return result("report", _returned_ids(msg), tuple(report))
    failures = _nonstandard(msg) if _automated(msg, sender) else ()
    if failures:
        return result("nonstandard-report", tuple(dict.fromkeys(MESSAGE_ID_RE.findall(_body_text(msg)))), failures)
    if _auto_reply(msg, subject):
        return result("auto-reply", _references(msg))
    if _is_request(msg, subject, unsubscribe_address):
        text = subject + "\n" + _body_text(msg)
        tokens = tuple(dict.fromkeys(t for t in TOKEN_RE.findall(text) if looks_like_token(t)))
        return result("request", _references(msg), tokens=tokens)
    return result("other", _references(msg))


def persons(head: bytes, unsubscribe_address: str | None = None) -> bool:
    """Whether a message's header alone shows it to be a person's: no report, not from a mail
    system, no auto-reply, no request, so `parse` would call it "other" whatever its body. Its
    body is then never fetched: personal mail stays in the mailbox and is read on every run."""
    msg = email.message_from_bytes(head, policy=policy.default)
    subject = _text(msg.get("Subject"))
    return not (msg.get_content_type() == "multipart/report" or _automated(msg, _first_address(msg, "from"))
                or _auto_reply(msg, subject) or _is_request(msg, subject, unsubscribe_address))


def _text(value: object) -> str:
    return " ".join(str(value or "").split())


def _message_id(value: object) -> str | None:
    m = re.search(r"<[^<>\s]+>", str(value or ""))
    return m[0] if m else None


def _first_address(msg: Message, header: str) -> str | None:
    found = [a for _, a in getaddresses([str(v) for v in msg.get_all(header, [])]) if "@" in a]
    return found[0].lower() if found else None


def _address_field(value: str | None) -> str | None:
    """'rfc822; anna@example.se' → 'anna@example.se'."""
    if not value:
        return None
    kind, sep, address = str(value).partition(";")
    address = (address if sep else kind).strip().strip("<>").strip()
    return address.lower() if "@" in address else None


def _status(status: str | None, diagnostic: str) -> str | None:
    """The Status field's code; a diagnostic's more precise code when Status says only x.0.0."""
    given = STATUS_RE.search(status or "")
    told = STATUS_RE.search(diagnostic)
    if given and (given[2], given[3]) == ("0", "0") and told and told[1] == given[1]:
        return told[0]
    return given[0] if given else (told[0] if told else None)


def _bytes(payload: object) -> bytes:
    return payload if isinstance(payload, bytes) else b""


def _status_blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status part. The parser splits them itself, but
    takes a base64 or quoted-printable body (which some servers send) for one garbled block."""
    payload = part.get_payload()
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if isinstance(payload, list) and encoding not in ("base64", "quoted-printable"):
        return [b for b in payload if isinstance(b, Message)]
    if isinstance(payload, list):
        text = "".join(b.as_string() for b in payload if isinstance(b, Message))
    else:
        text = str(payload)
    raw = text.encode("ascii", "replace")
    data = base64.b64decode(b"".join(raw.split()), validate=False) if encoding == "base64" else quopri.decodestring(raw)
    blocks = re.split(r"\r?\n\s*\r?\n", data.decode("utf-8", "replace"))
    return [HeaderParser().parsestr(b.strip("\r\n")) for b in blocks if b.strip()]


def _delivery_status(msg: EmailMessage) -> list[Failure] | None:
    """The per-recipient blocks of an RFC 3464 report, or None when `msg` is not one."""
    if msg.get_content_type() != "multipart/report" or \
            (msg.get_param("report-type") or "").lower() != "delivery-status":  # type: ignore[union-attr]
        return None
    failures: list[Failure] = []
    for part in msg.walk():
        if part.get_content_type() not in ("message/delivery-status", "message/global-delivery-status"):
            continue
        for block in _status_blocks(part)[1:]:  # the first block is about the whole message
            recipient = _address_field(block.get("Final-Recipient")) or _address_field(block.get("Original-Recipient"))
            if recipient is None:
                continue
            diagnostic = _text(block.get("Diagnostic-Code"))
            kind, sep, rest = diagnostic.partition(";")
            diagnostic = rest.strip() if sep and " " not in kind.strip() else diagnostic
            # A multi-line reply ('550-5.1.1 … 550 5.1.1 …') folded into one: the code said once.
            diagnostic = CONTINUATION_RE.sub(" ", diagnostic)
            status = _status(block.get("Status"), diagnostic)
            failures.append(Failure(recipient, _address_field(block.get("Original-Recipient")),
                                    _text(block.get("Action")).lower(), status, diagnostic or (status or "")))
    return failures


def _returned_ids(msg: EmailMessage) -> tuple[str, ...]:
    """The Message-ID of the original, from its returned headers or the whole returned message."""
    ids: list[str] = []
    for part in msg.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(inner, Message):
                ids.append(_message_id(inner.get("Message-ID")) or "")
        elif kind in ("text/rfc822-headers", "message/global-headers"):
            data = _bytes(part.get_payload(decode=True))
            ids.append(_message_id(BytesHeaderParser().parsebytes(data).get("Message-ID")) or "")
    return tuple(i for i in dict.fromkeys(ids) if i)


def _nonstandard(msg: EmailMessage) -> tuple[Failure, ...]:
    """What flufl.bounce recognises in a report that is not RFC 3464, with a status code only
    when the text carries exactly one (otherwise a person must read it)."""
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector choking on odd input: not a report it understands
        return ()
    if not temporary and not permanent:
        return ()
    text = _body_text(msg)
    codes = set(m[0] for m in STATUS_RE.finditer(text))
    status = codes.pop() if len(codes) == 1 else None
    said = next((line.strip() for line in text.splitlines() if status and status in line), "")
    failures = []
    for raw, action in [(a, "failed") for a in sorted(permanent)] + [(a, "delayed") for a in sorted(temporary - permanent)]:
        address = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).strip().lower()
        if "@" in address:
            failures.append(Failure(address, None, action, status, said))
    return tuple(failures)


def _automated(msg: Message, sender: str | None) -> bool:
    """Sent by a mail system, not a person: only then is a non-standard report taken for one (a
    person forwarding a report, or quoting one, is a person writing)."""
    return_path = msg.get("Return-Path")
    return bool((return_path is not None and str(return_path).strip() in ("<>", ""))
                or msg.get("X-Failed-Recipients")
                or str(msg.get("Auto-Submitted", "no")).strip().lower() != "no"
                or (sender or "").partition("@")[0] in MAILER_DAEMONS)


def _auto_reply(msg: Message, subject: str) -> bool:
    auto = str(msg.get("Auto-Submitted", "")).strip().lower()
    precedence = str(msg.get("Precedence", "")).strip().lower()
    return bool((auto and auto != "no") or msg.get("X-Autoreply") or msg.get("X-Autorespond")
                or precedence == "auto_reply" or AUTO_SUBJECT_RE.match(subject))


def _is_request(msg: Message, subject: str, unsubscribe_address: str | None) -> bool:
    if REQUEST_RE.match(subject):
        return True
    if not unsubscribe_address:
        return False
    values = [str(v) for h in DELIVERED_HEADERS for v in msg.get_all(h, [])]
    return unsubscribe_address.lower() in (a.lower() for _, a in getaddresses(values))


def _references(msg: Message) -> tuple[str, ...]:
    text = " ".join(str(v) for h in ("In-Reply-To", "References") for v in msg.get_all(h, []))
    return tuple(dict.fromkeys(re.findall(r"<[^<>\s]+>", text)))


def _body_text(msg: EmailMessage) -> str:
    """Every text part, decoded (quoted-printable, base64, charsets), HTML included as it is."""
    texts = []
    for part in msg.walk():
        if part.get_content_maintype() == "text" and isinstance(part, EmailMessage):
            try:
                texts.append(part.get_content())
            except (LookupError, ValueError, AssertionError):
                texts.append(_bytes(part.get_payload(decode=True)).decode("utf-8", "replace"))
    return "\n".join(t for t in texts if isinstance(t, str))
