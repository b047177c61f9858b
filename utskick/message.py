"""One recipient's message from the rendered issue (cheap substitution).

`EmailMessage` per recipient caps a mailer near 80 msg/s, so the MIME skeleton, encoded headers,
base64 attachments and the quoted-printable text of both parts are built once per issue
(`MessageTemplate`); each recipient costs the encoding of their own values and a bytes join. `build` writes
its .eml through the same `MessageTemplate.message_for`, so what is previewed is what is sent.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import unicodedata
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr, formatdate

from .addresses import Sender, ascii_form
from .model import Settings
from .render import UNSUB, Embedded, Rendered, Split
from .signer import Signer
from .subscribers import Subscriber

CRLF = b"\r\n"


@dataclass(frozen=True)
class Personalised:
    html: str
    text: str
    unsubscribe_url: str | None


def unsubscribe_url(settings: Settings, token: str) -> str | None:
    url = settings.unsubscribe.url
    return url.replace("{token}", token) if url else None


def field_values(rendered: Rendered, subscriber: Subscriber, token: str) -> tuple[dict[str, str], dict[str, str], str | None]:
    """One recipient's marker values: plain for the text, HTML-escaped for the html; the link."""
    unsub = unsubscribe_url(rendered.settings, token)
    plain = {f: one_line(subscriber.field(f) or "") for f in rendered.fields}
    plain[UNSUB] = unsub or ""
    escaped = {k: html.escape(v, quote=True) for k, v in plain.items()}
    return plain, escaped, unsub


def personalise(rendered: Rendered, subscriber: Subscriber, signer: Signer) -> Personalised:
    """The one path from a rendered issue to one recipient's html and text (build, send, preview)."""
    plain, escaped, unsub = field_values(rendered, subscriber, signer.token(subscriber.key))
    return Personalised(rendered.html.fill(escaped), rendered.text.fill(plain), unsub)


def _fold(line: str) -> str:
    """Fold an ASCII header line at spaces to at most 78 characters where it can (RFC 5322)."""
    out, current = [], ""
    for word in line.split(" "):
        if current and len(current) + 1 + len(word) > 78:
            out.append(current)
            current = " " + word
        else:
            current = f"{current} {word}" if current else word
    out.append(current)
    return "\r\n".join(out)


def _header(name: str, value: str) -> bytes:
    """A header line, RFC 2047-encoded when it is not ASCII (or has a word too long to fold),
    folded either way, so no line passes 998 octets."""
    if value.isascii() and max(map(len, value.split(" "))) <= 76:
        return _fold(f"{name}: {value}").encode() + CRLF
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}".encode() + CRLF


def _phrase(name: str) -> str:
    """A display name as it may stand before <…>: quoted when it has specials, else encoded words
    of at most 75 characters each (RFC 2047) when it is not ASCII or too long to fold."""
    if name.isascii() and max(map(len, name.split(" "))) <= 60:
        return formataddr((name, "x@x")).rsplit(" <", 1)[0]
    return Header(name, "utf-8", maxlinelen=76).encode(linesep="\n").replace("\n ", " ")


def _safe_filename(name: str) -> str:
    """An ASCII file name for MIME parameters: no quoting or RFC 2231 surprises in any client."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "file"


_LINE_BREAKS = frozenset("\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029\t")


def one_line(value: str) -> str:
    """A list's value as it may stand in a message: line breaks (and tabs) become spaces and
    other control and format characters (Unicode category C: NUL, ESC, bidi overrides) are
    dropped, so no CSV cell can start a header line, plant a bare CR or LF, or end SMTP's DATA
    early (`<CR>.<CR><LF>`). Spaces such as the no-break space stay."""
    if value.isprintable():
        return value
    return "".join(" " if c in _LINE_BREAKS else c for c in value
                   if c in _LINE_BREAKS or not unicodedata.category(c).startswith("C"))


def _dot_safe(data: bytes) -> bool:
    """CRLF line endings only and no line starting with '.': SMTP can send it unchanged."""
    crlf = data.count(CRLF)
    return data.count(b"\n") == crlf and data.count(b"\r") == crlf and b"\n." not in data


def _mailbox(name: str, address: str) -> str:
    return f"{_phrase(name)} <{ascii_form(address)}>" if name else ascii_form(address)


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF, and no line starting with '.': SMTP can send it unchanged."""
    data = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), istext=True)
    if data.startswith(b"."):
        data = b"=2E" + data[1:]
    return data.replace(b"\n.", b"\n=2E").replace(b"\n", CRLF)


def _qp_segment(text: str) -> bytes:
    """QP of a piece cut from a text, closed by a soft line break unless it ends a line.

    Pieces encoded separately then join into valid quoted-printable (every line <= 76), so the
    issue's fixed text is encoded once and only the recipient's values per message.
    """
    data = _qp(text)
    return data + b"=" + CRLF if data and not data.endswith(CRLF) else data


@dataclass(frozen=True)
class _Encoded:
    """A `Split` whose fixed text is quoted-printable already."""

    parts: tuple[bytes, ...]
    fields: tuple[str, ...]

    @classmethod
    def of(cls, split: Split) -> _Encoded:
        return cls(tuple(_qp_segment(p) for p in split.parts), split.fields)

    def fill(self, values: dict[str, str]) -> bytes:
        out = [self.parts[0]]
        for name, part in zip(self.fields, self.parts[1:]):
            out.append(_qp_segment(values[name]))
            out.append(part)
        return b"".join(out)


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", CRLF)


def _part(headers: list[tuple[str, str]], body: bytes) -> bytes:
    return b"".join(f"{k}: {v}".encode() + CRLF for k, v in headers) + CRLF + body


def _attachment(item: Embedded, inline: bool) -> bytes:
    disposition = "inline" if inline else "attachment"
    # Text is UTF-8 and must say so. A text/calendar part carries no `method` parameter, like
    # its content carries no METHOD: a file to import, never an invitation (RFC 6047).
    charset = '; charset="utf-8"' if item.mime.startswith("text/") else ""
    headers = [("Content-Type", f'{item.mime}{charset}; name="{_safe_filename(item.filename)}"'), ("Content-Transfer-Encoding", "base64"),
               ("Content-Disposition", f'{disposition}; filename="{_safe_filename(item.filename)}"')]
    if inline:
        headers.insert(2, ("Content-ID", f"<{item.cid}>"))
    return _part(headers, _b64(item.data))


def _multipart(kind: str, boundary: str, parts: list[bytes]) -> tuple[bytes, bytes]:
    """(headers, body) of a multipart; the boundary's "=_" can never occur in QP or base64."""
    head = f'Content-Type: multipart/{kind}; boundary="{boundary}"'.encode() + CRLF
    body = b"".join(b"--" + boundary.encode() + CRLF + p + CRLF for p in parts) + b"--" + boundary.encode() + b"--" + CRLF
    return head, body


def _body(rendered: Rendered, plain: bytes, rich: bytes) -> bytes:
    """The MIME structure of every message: the two QP bodies, inline images, attachments."""
    plain = _part([("Content-Type", 'text/plain; charset="utf-8"'), ("Content-Transfer-Encoding", "quoted-printable")], plain)
    rich = _part([("Content-Type", 'text/html; charset="utf-8"'), ("Content-Transfer-Encoding", "quoted-printable")], rich)
    head, body = _multipart("alternative", "=_utskick_alt", [plain, rich])
    if rendered.images:
        parts = [head + CRLF + body] + [_attachment(i, inline=True) for i in rendered.images]
        head, body = _multipart("related", "=_utskick_rel", parts)
    if rendered.attachments:
        parts = [head + CRLF + body] + [_attachment(a, inline=False) for a in rendered.attachments]
        head, body = _multipart("mixed", "=_utskick_mix", parts)
    return head + CRLF + body


# Stand-ins for the two bodies while the skeleton is built; NUL never occurs in QP or base64.
TEXT_SLOT, HTML_SLOT = b"\x00text\x00", b"\x00html\x00"


@dataclass(frozen=True)
class MessageTemplate:
    """Everything about an issue's message that is the same for every recipient."""

    rendered: Rendered
    signer: Signer
    from_: Sender
    """Worked out once: per message it would parse the settings' From address again."""
    fixed_headers: bytes
    skeleton: tuple[bytes, bytes, bytes]
    """The MIME structure around the text and html bodies, attachments encoded once."""
    text: _Encoded
    html: _Encoded

    @classmethod
    def of(cls, rendered: Rendered, signer: Signer, subject_prefix: str = "") -> MessageTemplate:
        s = rendered.settings
        sender = s.sender
        headers = _header("From", _mailbox(sender.name, sender.address)).decode()
        headers += _header("Subject", subject_prefix + rendered.issue.subject).decode()
        if s.reply_to:
            reply_to = Sender.of(s.reply_to, "")
            headers += _header("Reply-To", _mailbox(reply_to.name, reply_to.address)).decode()
        headers += _fold(f"List-Id: {_phrase(s.name)} <{sender.local}.{sender.domain}>") + "\r\n"
        headers += "MIME-Version: 1.0\r\n"
        before, rest = _body(rendered, TEXT_SLOT, HTML_SLOT).split(TEXT_SLOT)
        between, after = rest.split(HTML_SLOT)
        text, html = _Encoded.of(rendered.text), _Encoded.of(rendered.html)
        # Checked once here so that no message needs scanning on its way to the server; every
        # per-recipient piece is one_line() text, quoted-printable, so it is dot-safe too.
        if not all(_dot_safe(b) for b in (headers.encode(), before, between, after, *text.parts, *html.parts)):
            raise ValueError("the message skeleton is not CRLF and dot-safe: a bug in utskick, please report it")
        return cls(rendered, signer, sender, headers.encode(), (before, between, after), text, html)

    def list_unsubscribe(self, unsubscribe_url: str | None, token: str) -> list[tuple[str, str]]:
        """RFC 2369 / RFC 8058 headers: the https link first (Gmail uses the first), one-click only
        when there is an https link to post to; the mailto carries the token in its subject, so
        `utskick inbox` knows whose request it is (the visible footer keeps a plain subject)."""
        targets = []
        if unsubscribe_url:
            targets.append(f"<{unsubscribe_url}>")
        mailto = self.rendered.settings.unsubscribe.mailto
        if mailto:
            word = "avregistrera" if self.rendered.settings.language == "sv" else "unsubscribe"
            targets.append(f"<mailto:{ascii_form(mailto)}?subject={word}%20{token}>")
        out = [("List-Unsubscribe", ", ".join(targets))]
        if unsubscribe_url and unsubscribe_url.lower().startswith("https://"):
            out.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        return out

    @property
    def sender(self) -> str:
        return self.from_.address

    def message_id(self, subscriber: Subscriber) -> str:
        """The same on every build, retry and resume: bounce reports are matched by it."""
        return self.signer.message_id(self.rendered.slug, subscriber.key, self.from_.domain)

    def message_for(self, subscriber: Subscriber) -> bytes:
        """The complete RFC 5322 message for one recipient: the html and text `personalise`
        gives, CRLF line endings and no line starting with '.', so SMTP sends it unchanged."""
        token = self.signer.token(subscriber.key)
        plain, escaped, unsub = field_values(self.rendered, subscriber, token)
        head = _header("To", _mailbox(one_line(subscriber.name), one_line(subscriber.email)))
        head += _header("Date", formatdate(localtime=True))
        head += _header("Message-ID", self.message_id(subscriber))
        for k, v in self.list_unsubscribe(unsub, token):
            head += _fold(f"{k}: {v}").encode() + CRLF
        before, between, after = self.skeleton
        return b"".join((head, self.fixed_headers, before, self.text.fill(plain), between,
                         self.html.fill(escaped), after))
