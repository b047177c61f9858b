"""Reading one message: the report shapes Exchange Online, Gmail, Postfix and Exim send, auto-replies,
unsubscribe requests and the replies of people (tests/mail/*.eml, fictional, written by us)."""

from __future__ import annotations

from pathlib import Path
from string import Template

import pytest

from utskick.reports import parse, persons

MAIL = Path(__file__).resolve().parent / "mail"
OURS = "<Qm9va0tlZXBlcjEyMzQ1Njc4.2026-12@sjolandet.example>"
WHO = "kalle.okand@kommun1.example"
TOKEN = "Ab3dEfGh1jKlMn0pQrStUvWx"
UNSUBSCRIBE = "avregistrera@sjolandet.example"


def mail(name: str, **values: str) -> bytes:
    """A fixture with its $MESSAGE_ID, $RECIPIENT and $TOKEN filled in, with CRLF line ends as on the wire."""
    fill = {"MESSAGE_ID": OURS, "RECIPIENT": WHO, "TOKEN": TOKEN, **values}
    text = Template((MAIL / name).read_text(encoding="utf-8")).substitute(fill)
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


@pytest.mark.parametrize("name, status, diagnostic", [
    ("exchange-ndr.eml", "5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"),
    ("gmail-original.eml", "5.1.1", "550-5.1.1 The email account that you tried to reach does not exist."),
    ("postfix-headers.eml", "5.1.1", f"550 5.1.1 <{WHO}>: Recipient address rejected: User unknown in local recipient table"),
])
def test_rfc3464_reports_give_the_recipient_status_diagnostic_and_our_message_id(name: str, status: str,
                                                                                diagnostic: str) -> None:
    got = parse(mail(name), UNSUBSCRIBE)
    assert got.kind == "report"
    assert got.original_ids == (OURS,)
    (failure,) = got.failures
    assert (failure.recipient, failure.action, failure.status) == (WHO, "failed", status)
    assert failure.diagnostic.startswith(diagnostic)


def test_a_multiline_reply_keeps_its_text_and_says_the_code_once() -> None:
    (failure,) = parse(mail("gmail-original.eml")).failures
    assert "double-checking the recipient's email address" in failure.diagnostic
    assert failure.diagnostic.count("5.1.1") == 1


def test_the_exchange_report_is_a_report_although_it_says_auto_replied_and_its_html_comes_first() -> None:
    raw = mail("exchange-ndr.eml")
    assert b"Auto-Submitted: auto-replied" in raw and raw.index(b"text/html") < raw.index(b"text/plain")
    got = parse(raw)
    assert got.kind == "report"
    assert got.sender is not None and got.sender.startswith("microsoftexchange")


def test_a_report_without_returned_headers_names_only_the_recipient() -> None:
    got = parse(mail("postfix-delayed-no-headers.eml"))
    assert got.kind == "report" and got.original_ids == ()
    (failure,) = got.failures
    assert (failure.recipient, failure.original, failure.action, failure.status) == (WHO, WHO, "delayed", "4.4.1")
    assert "Connection timed out" in failure.diagnostic and not failure.diagnostic.startswith("X-Postfix")


def test_a_status_of_only_a_class_takes_the_diagnostics_precise_code() -> None:
    raw = mail("postfix-headers.eml").replace(b"Status: 5.1.1", b"Status: 5.0.0")
    assert parse(raw).failures[0].status == "5.1.1"


def test_a_plain_text_exim_report_is_read_by_flufl_bounce_with_its_one_code() -> None:
    got = parse(mail("exim-text.eml"))
    assert got.kind == "nonstandard-report"
    assert got.original_ids == (OURS,)
    (failure,) = got.failures
    assert (failure.recipient, failure.action, failure.status) == (WHO, "failed", "5.1.1")
    assert "Recipient address rejected" in failure.diagnostic


def test_a_nonstandard_report_without_a_code_has_no_status() -> None:
    got = parse(mail("exim-no-code.eml"))
    assert got.kind == "nonstandard-report"
    assert [(f.recipient, f.status) for f in got.failures] == [(WHO, None)]


@pytest.mark.parametrize("header", ["Auto-Submitted: auto-replied", "X-Autoreply: yes", "Precedence: auto_reply"])
def test_auto_reply_headers(header: str) -> None:
    raw = mail("personal-reply.eml").replace(b"MIME-Version: 1.0", header.encode() + b"\r\nMIME-Version: 1.0")
    assert parse(raw).kind == "auto-reply"


@pytest.mark.parametrize("subject", ["Automatiskt svar: Nytt", "Frånvaro", "Out of Office: Nytt", "Autosvar: Nytt"])
def test_auto_reply_subjects(subject: str) -> None:
    raw = mail("personal-reply.eml")
    start = raw.index(b"Subject:")
    end = raw.index(b"\r\n", start)
    from email.header import Header
    raw = raw[:start] + b"Subject: " + Header(subject, "utf-8").encode().encode() + raw[end:]
    got = parse(raw)
    assert got.kind == "auto-reply" and got.original_ids == (OURS,)


def test_an_out_of_office_refers_to_what_we_sent() -> None:
    got = parse(mail("out-of-office.eml"))
    assert (got.kind, got.original_ids, got.sender) == ("auto-reply", (OURS,), WHO)


@pytest.mark.parametrize("subject", ["Sv: avregistrera {t}", "Re: Fwd: unsubscribe {t}", "Avregistrera",
                                     "SV: VB: avregistrera"])
def test_a_request_is_known_by_its_subject(subject: str) -> None:
    raw = mail("request-token.eml").replace(b"avregistrera@sjolandet.example", b"kansliet@sjolandet.example")
    raw = raw.replace(f"Subject: Sv: avregistrera {TOKEN}".encode(), f"Subject: {subject.format(t=TOKEN)}".encode())
    got = parse(raw, UNSUBSCRIBE)
    assert got.kind == "request"
    assert got.tokens == ((TOKEN,) if "{t}" in subject else ())


def test_a_request_to_the_unsubscribe_address_finds_the_token_in_quoted_text() -> None:
    quoted = f"> Avregistrera: https://x.example/a?token={TOKEN}\r\n\r\nHej, jag vill"
    raw = mail("request-plain.eml").replace("Hej, jag vill".encode(), quoted.encode())
    got = parse(raw, UNSUBSCRIBE)
    assert (got.kind, got.tokens, got.sender) == ("request", (TOKEN,), WHO)


def test_a_tokenless_request_and_a_token_of_the_wrong_shape() -> None:
    assert parse(mail("request-plain.eml"), UNSUBSCRIBE).tokens == ()
    raw = mail("request-token.eml", TOKEN=TOKEN + "x")
    assert parse(raw, UNSUBSCRIBE).tokens == ()


def test_a_persons_reply_quoting_the_footer_link_is_not_a_request() -> None:
    got = parse(mail("personal-reply.eml"), UNSUBSCRIBE)
    assert (got.kind, got.tokens) == ("other", ())


def test_a_message_without_message_id_gets_a_stable_one_from_its_bytes() -> None:
    raw = mail("personal-reply.eml").replace(b"Message-ID: <5d2f8e1a", b"X-Was: <5d2f8e1a")
    first, again = parse(raw), parse(raw)
    assert first.message_id.startswith("sha256:") and first.message_id == again.message_id
    assert parse(raw + b"more").message_id != first.message_id


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable"])
def test_an_encoded_delivery_status_part(encoding: str) -> None:
    import base64
    import quopri

    raw = mail("postfix-headers.eml")
    head = b"Content-Type: message/delivery-status\r\n"
    start = raw.index(head) + len(head) + 2
    end = raw.index(b"\r\n--4Yc9", start)
    block = raw[start:end]
    # quoted-printable breaks the long Diagnostic-Code line with a soft "=" line end
    if encoding == "base64":
        encoded = base64.encodebytes(block).replace(b"\n", b"\r\n")
    else:
        encoded = quopri.encodestring(block)
        assert b"=\r\n" in encoded
    raw = raw[:start - 2] + f"Content-Transfer-Encoding: {encoding}\r\n\r\n".encode() + encoded + raw[end:]
    (failure,) = parse(raw).failures
    assert (failure.recipient, failure.action, failure.status) == (WHO, "failed", "5.1.1")


def test_a_person_forwarding_a_report_is_a_person_writing() -> None:
    report = mail("exim-text.eml").split(b"\r\n\r\n", 1)[1]
    raw = (b"From: Lars Nilsson <lars@kommun1.example>\r\nTo: nyhetsbrev@sjolandet.example\r\n"
           b"Subject: Fwd: Mail delivery failed\r\nMessage-ID: <fwd-1@kommun1.example>\r\n"
           b"X-Failed-Recipients: " + WHO.encode() + b"\r\n\r\nVad betyder det?\r\n\r\n" + report)
    assert parse(raw).kind == "nonstandard-report"  # with a mail system's header it would count
    person = raw.replace(b"X-Failed-Recipients: " + WHO.encode() + b"\r\n", b"")
    assert parse(person).kind == "other"


@pytest.mark.parametrize("name", sorted(p.name for p in MAIL.glob("*.eml")))
def test_the_header_alone_tells_a_persons_mail_apart(name: str) -> None:
    """Only a person's mail is read as its header alone, and for it `parse` says "other" either way."""
    raw = mail(name)
    head = raw[:raw.index(b"\r\n\r\n") + 4]
    assert persons(head, UNSUBSCRIBE) == (name == "personal-reply.eml")
    if persons(head, UNSUBSCRIBE):
        assert parse(head, UNSUBSCRIBE).kind == parse(raw, UNSUBSCRIBE).kind == "other"
