"""What a server's reply means, in one place, for the send loop and for bounce reports alike.

A relay's answer to RCPT or DATA and a delivery report read back from the mailbox carry the same
RFC 3463 enhanced status codes, so one table decides both. Microsoft 365 must be told apart by
its text as well: a reached quota and a refused "send as" share `554 5.2.0`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ENHANCED_RE = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})\b")

Verdict = Literal["temporary", "bounced", "budget", "fatal"]
"""For the send: retry later; this recipient can never be reached; the relay's day's budget is
spent (come back later, exit 75); stop the whole send."""

Fault = Literal["recipient", "soft", "ours"]
"""For a delivery report: the recipient's own (suppress them), passing (note it), or about us
(our reputation, policy or limits: report it, never suppress anyone for it)."""

OAUTH_HINT = "password sign-in is refused here: use OAuth2 (see the README, Microsoft 365)"


@dataclass(frozen=True)
class Reply:
    """A reply: its code (None when there was none), enhanced status and text."""

    code: int | None
    text: str

    @classmethod
    def parse(cls, recorded: str) -> Reply:
        """A reply as recorded in the journal, '550 5.1.1 no such user'."""
        first, _, rest = recorded.partition(" ")
        return cls(int(first), rest) if first.isdigit() and len(first) == 3 else cls(None, recorded)

    @property
    def enhanced(self) -> tuple[int, int, int] | None:
        m = ENHANCED_RE.match(self.text)
        return (int(m[1]), int(m[2]), int(m[3])) if m else None

    @property
    def permanent(self) -> bool:
        return self.code is not None and 500 <= self.code < 600


def enhanced(status: str) -> tuple[int, int, int] | None:
    """'5.1.1' (a report's Status field) as numbers, or None."""
    m = ENHANCED_RE.match(status)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def _microsoft(text: str) -> tuple[Verdict, str] | None:
    """Exchange Online's submission refusals, known by their text (RFC 3463 codes alone mislead)."""
    if "SubmissionQuotaExceededException" in text:
        return "budget", "Microsoft 365's sending limit for this mailbox is reached"
    if "SendAsDeniedException" in text:
        return "fatal", "the signed-in mailbox may not send as the From address: grant it Send As, or send from that mailbox"
    if "QuotaExceededException" in text:
        return "fatal", ("the sending mailbox is full (Sent Items keeps a copy of every message): a retention "
                         "policy on Sent Items fixes it")
    return None


def for_send(reply: Reply, stage: str) -> tuple[Verdict, str]:
    """What a refusal means for the send, and a sentence saying what to do about it (or "")."""
    known = _microsoft(reply.text)
    if known is not None:
        return known
    status = reply.enhanced
    if reply.code is not None and 400 <= reply.code < 500:
        return "temporary", ""
    if status == (5, 7, 233):
        return "budget", "the tenant's limit of external recipients is reached"
    if status is not None and status[:2] == (5, 2) and 251 <= status[2] <= 255:
        return "fatal", "Microsoft is throttling this mailbox after repeated errors; wait and check the earlier errors"
    if status == (5, 7, 60):
        return "fatal", "the signed-in mailbox may not send as the From address: grant it Send As, or send from that mailbox"
    if status in ((5, 7, 139), (5, 7, 30)) or (stage == "auth" and "Basic authentication" in reply.text):
        return "fatal", OAUTH_HINT
    if stage == "rcpt" and status is not None and status[:2] == (5, 1):
        return "bounced", ""
    return "fatal", ""


def refused_address(recorded: str) -> bool:
    """Whether a recorded reply ('550 5.1.1 …') refused the recipient's address itself."""
    reply = Reply.parse(recorded)
    status = reply.enhanced
    return reply.permanent and status is not None and status[:2] == (5, 1)


def fault(status: tuple[int, int, int] | None) -> Fault | None:
    """Whose fault a failed delivery report is, by its status; None when it carries none (then a
    person must look: a report is never acted on blindly)."""
    if status is None:
        return None
    if status[0] == 4 or status in ((5, 2, 2), (5, 4, 7), (5, 4, 300)):
        return "soft"
    if status[:2] == (5, 1) or status in ((5, 2, 1), (5, 4, 1), (5, 4, 4)):
        return "recipient"
    return "ours"
