"""Shared pieces of the send tests: a bigger list with Swedish names, and the send API."""

from __future__ import annotations

import csv
import email
from email import policy
from email.message import EmailMessage
from pathlib import Path

from utskick import delivery, signer, subscribers
from utskick.cli import load_rendered
from utskick.delivery import Outcome, Policy
from utskick.project import load_project
from utskick.message import MessageTemplate
from utskick.transport import SmtpTransport, Transport, parse_smtp_url

FIRST = ["Petter", "Åsa", "Örjan", "Märta", "Lars", "Kerstin", "Jöns", "Elin"]
LAST = ["Åkesson", "Öberg", "Lind", "Sund", "Nilsson", "Ängström", "Berg"]


def write_list(project: Path, n: int, name: str = "stor") -> list[str]:
    """A fictional list of n members; returns their addresses in list order."""
    addresses = []
    with (project / "subscribers" / f"{name}.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["email", "namn", "kommun", "roll"])
        for i in range(n):
            first, last = FIRST[i % len(FIRST)], LAST[i % len(LAST)]
            ascii = first.lower().translate(str.maketrans("åäö", "aao"))
            address = f"{ascii}.{i}@kommun{i % 3}.example"
            addresses.append(address)
            w.writerow([address, f"{first} {last}", "Ekeby", "Handläggare"])
    return addresses


def smtp(url: str, timeout: float = 5.0) -> SmtpTransport:
    return SmtpTransport(parse_smtp_url(url), "nyhetsbrev@sjolandet.example", timeout=timeout)


FAST = Policy(concurrency=3, per_second=None, retries=3, backoff=0.01, backoff_cap=0.05)


def send(transport: Transport, lists: tuple[str, ...] = ("stor",), policy: Policy = FAST,
         resend_uncertain: bool = False, issue: str = "2026-12") -> Outcome:
    """The same `delivery.send` the CLI calls, with fast retries for tests."""
    project = load_project()
    _, rendered = load_rendered(project, issue)
    recipients = subscribers.recipients(project, lists).subscribers
    return delivery.send(project, MessageTemplate.of(rendered, signer.load(project.state_dir)), transport, recipients, policy=policy,
                         resend_uncertain=resend_uncertain)


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg
