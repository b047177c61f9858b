"""What came back by mail, applied: bounces to the journal and the suppression list, unsubscribe
requests to the suppression list, and everything a person wrote left exactly where it is.

Each message is matched to what utskick sent (by the Message-ID a report returns, else by its
recipient) and never guessed at. Applying is idempotent and recorded in the journal, by the
message's own Message-ID, before the message is filed away: a run killed in between applies
nothing twice and loses nothing, and a second run changes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from . import replies, reports, signer
from .addresses import normalise
from .errors import Problem
from .inbox import Folder, Mail
from .journal import Journal, find_message, now
from .project import Project
from .status import still_listed
from .suppression import known_keys, resolve_tokens, suppress

SOFT_LIMIT = 3
"""Soft failures on this many consecutive issues suppress a recipient."""

"""How a soft failure is noted, as the sent row's last reply (until the journal has a place for it)."""

Action = Literal["bounced", "unsubscribed", "delayed", "auto-reply"]


@dataclass(frozen=True)
class Sent:
    """A message utskick sent: the journal row a report is about."""

    issue: str
    transport: str
    key: str
    email: str


class Ledger(Protocol):
    """What applying needs from the journal."""

    def by_message_id(self, message_id: str) -> Sent | None: ...

    def by_recipient(self, key: str) -> Sent | None:
        """The latest issue sent to this recipient."""

    def bounce(self, sent: Sent, diagnostic: str) -> None:
        """sent → bounced, with the report's diagnostic (idempotent)."""

    def soft(self, sent: Sent, diagnostic: str) -> None:
        """Note a soft failure of this issue for this recipient (idempotent)."""

    def soft_streak(self, sent: Sent) -> int:
        """How many of the latest issues sent to this recipient, in a row, failed softly, counting
        `sent`'s issue as one (a dry run has not noted it)."""

    def processed(self, message_id: str) -> bool: ...

    def record(self, message_id: str, action: Action) -> None: ...


class JournalLedger:
    """The Ledger over `.utskick/utskick.db`. A soft failure is kept in the sent row's `soft`
    column: the row stays sent, its reply the relay's."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.journal = Journal.open(state_dir, "", "")
        self.db: sqlite3.Connection = self.journal.db

    def close(self) -> None:
        self.journal.close()

    def by_message_id(self, message_id: str) -> Sent | None:
        found = find_message(self.state_dir, message_id)
        return Sent(found[0], found[1], found[2].key, found[2].email) if found else None

    def by_recipient(self, key: str) -> Sent | None:
        r = self.db.execute("SELECT issue, transport, key, email FROM delivery WHERE key=? AND state IN ('sent', 'returned')"
                            " AND message_id != '' ORDER BY issue DESC LIMIT 1", (key,)).fetchone()
        return Sent(*r) if r else None

    def bounce(self, sent: Sent, diagnostic: str) -> None:
        Journal(self.db, sent.issue, sent.transport).done(sent.key, "returned", diagnostic)

    def soft(self, sent: Sent, diagnostic: str) -> None:
        self.db.execute("UPDATE delivery SET soft=? WHERE issue=? AND transport=? AND key=? AND state='sent'",
                        (diagnostic, sent.issue, sent.transport, sent.key))

    def soft_streak(self, sent: Sent) -> int:
        streak = 0
        for issue, transport, state, soft in self.db.execute(
                "SELECT issue, transport, state, soft FROM delivery WHERE key=? AND message_id != ''"
                " ORDER BY issue DESC", (sent.key,)):
            this = (issue, transport) == (sent.issue, sent.transport)
            if not this and (state != "sent" or not soft):
                break
            streak += 1
        return streak

    def processed(self, message_id: str) -> bool:
        return self.db.execute("SELECT 1 FROM processed WHERE message_id=?", (message_id,)).fetchone() is not None

    def record(self, message_id: str, action: Action) -> None:
        self.db.execute("INSERT OR IGNORE INTO processed (message_id, action, at) VALUES (?, ?, ?)",
                        (message_id, action, now()))


@dataclass
class Summary:
    bounced: list[str] = field(default_factory=list)
    unsubscribed: list[str] = field(default_factory=list)
    delayed: list[str] = field(default_factory=list)
    auto_replies: int = 0
    needs_person: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    left_alone: int = 0
    soft_suppressed: list[str] = field(default_factory=list)
    earlier: int = 0
    """Messages an earlier run applied (and may not have filed away yet)."""
    problems: list[Problem] = field(default_factory=list)

    def line(self) -> str:
        return (f"bounced {len(self.bounced)} · unsubscribed {len(self.unsubscribed)} · delayed {len(self.delayed)} · "
                f"auto-replies {self.auto_replies} · needs a person {len(self.needs_person)} · "
                f"unmatched {len(self.unmatched)} · left alone {self.left_alone}")


@dataclass
class Applier:
    project: Project
    ledger: Ledger
    dry_run: bool = False
    confirm: bool = False
    summary: Summary = field(default_factory=Summary)

    def __post_init__(self) -> None:
        self.unsubscribe_address = self.project.settings.unsubscribe.mailto
        self._listed: set[str] | None = None
        self._signer: signer.Signer | None = None

    def folder(self, folder: Folder) -> None:
        """Apply every message of one folder, then file away what was applied (not in a dry run)."""
        done: list[Mail] = []
        for mail in folder.messages():
            if self.message(mail):
                done.append(mail)
        if not self.dry_run:
            self.summary.problems += folder.put_away(done)

    def message(self, mail: Mail) -> bool:
        """Apply one message; whether it is now processed (to be filed away)."""
        parsed = reports.parse(mail.raw, self.unsubscribe_address)
        if self.ledger.processed(parsed.message_id):
            self.summary.earlier += 1
            return True
        action: Action | None
        if parsed.kind in ("report", "nonstandard-report"):
            action = self.report(mail, parsed)
        elif parsed.kind == "auto-reply":
            self.summary.auto_replies += 1
            # Filed away only when it answers one of ours: an auto-reply to a person's mail stays.
            action = "auto-reply" if any(self.ledger.by_message_id(i) for i in parsed.original_ids) else None
        elif parsed.kind == "request":
            action = self.request(mail, parsed)
        else:
            self.summary.left_alone += 1
            action = None
        if action is None:
            return False
        if not self.dry_run:
            self.ledger.record(parsed.message_id, action)
        return True

    def _match(self, parsed: reports.Parsed) -> tuple[Sent, reports.Failure] | None:
        for message_id in parsed.original_ids:
            sent = self.ledger.by_message_id(message_id)
            if sent is not None:
                failure = next((f for f in parsed.failures if sent.key in (_key(f.recipient), _key(f.original))), None)
                if failure is None and len(parsed.failures) == 1:
                    failure = parsed.failures[0]
                return (sent, failure) if failure else None
        for failure in parsed.failures:
            for address in (failure.original, failure.recipient):
                key = _key(address)
                sent = self.ledger.by_recipient(key) if key else None
                if sent is not None:
                    return sent, failure
        return None

    def report(self, mail: Mail, parsed: reports.Parsed) -> Action | None:
        matched = self._match(parsed)
        if matched is None:
            self.summary.unmatched.append(f"{mail.where}: {parsed.subject or '(no subject)'}")
            return None
        sent, failure = matched
        what = f"{sent.email} ({sent.issue})"
        diagnostic = failure.diagnostic or failure.status or ""
        if failure.action not in ("failed", "delayed"):
            self.summary.left_alone += 1
            return None
        fault = replies.fault(replies.enhanced(failure.status or ""))
        if failure.action == "delayed" and fault != "ours":
            fault = "soft"
        if fault is None:
            self.summary.needs_person.append(f"{mail.where}: {what}: a report with no status code")
            return None
        if fault == "ours":
            self.summary.needs_person.append(f"{mail.where}: {what}: {diagnostic} (about the sender: nobody suppressed)")
            return None
        if fault == "recipient":
            if not self.dry_run:
                self.ledger.bounce(sent, diagnostic)
                suppress(self.project, [(sent.email, f"bounced: {diagnostic}")])
            self.summary.bounced.append(f"{what}: {diagnostic}")
            return "bounced"
        if not self.dry_run:
            self.ledger.soft(sent, diagnostic)
        self.summary.delayed.append(f"{what}: {diagnostic}")
        streak = self.ledger.soft_streak(sent)
        if streak >= SOFT_LIMIT:
            if not self.dry_run:
                suppress(self.project, [(sent.email, f"failed softly on {streak} issues in a row: {diagnostic}")])
            self.summary.soft_suppressed.append(sent.email)
        return "delayed"

    def request(self, mail: Mail, parsed: reports.Parsed) -> Action | None:
        if parsed.tokens:
            self._signer = self._signer or signer.load(self.project.state_dir)
            found, _ = resolve_tokens(self._signer, parsed.tokens, known_keys(self.project))
            if found:
                key = next(iter(found.values()))
                if not self.dry_run:
                    suppress(self.project, [(key, "asked by mail")])
                self.summary.unsubscribed.append(key)
                return "unsubscribed"
        sender = _key(parsed.sender)
        if self._listed is None:
            self._listed = still_listed(self.project) or set()
        if sender is None or sender not in self._listed:
            self.summary.left_alone += 1
            return None
        if not self.confirm:
            self.summary.needs_person.append(f"{mail.where}: {sender} asks to leave without the link's token "
                                             "(a From address can be forged): --confirm applies it")
            return None
        if not self.dry_run:
            suppress(self.project, [(sender, "asked by mail (confirmed by the editor)")])
        self.summary.unsubscribed.append(sender)
        return "unsubscribed"


def _key(address: str | None) -> str | None:
    if not address:
        return None
    try:
        return normalise(address)[1]
    except ValueError:
        return None


def apply(project: Project, folders: Iterable[Folder], dry_run: bool = False, confirm: bool = False) -> Summary:
    """Read every folder and apply what came back; see the module's docstring."""
    ledger = JournalLedger(project.state_dir)
    try:
        applier = Applier(project, ledger, dry_run, confirm)
        for folder in folders:
            applier.folder(folder)
        return applier.summary
    finally:
        ledger.close()
