"""The send journal: who has been sent what, surviving kill -9 and a laptop that sleeps.

One SQLite row per (issue, transport, recipient's canonical key). Every state change is its own
committed transaction, written around the SMTP transaction it describes:

    pending --(DATA about to be sent)--> inflight --(server said 250)--> sent
                                                  --(4xx after data)----> pending (retried)
    pending --(5.1.x to RCPT)--> bounced          pending --(retries exhausted)--> failed
    bounced --(part of a streak of refusals: the relay, not the list)--> deferred (tried last)
    sent --(a bounce report read by `utskick inbox`)--> returned

A row left `inflight` by a crash is the one honest gap ("uncertain"): the message may or may
not have been accepted. WAL with synchronous=NORMAL keeps every commit across a process crash;
a power loss may forget the last moments, which can only send those messages again, never skip
them (a forgotten `inflight` or `sent` reads as `pending`).

The file carries a schema version (`PRAGMA user_version`); `open` migrates an older journal in
place, in one transaction, so a journal written by an earlier utskick keeps working.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Literal

from .errors import Problem, UtskickError
from .replies import refused_address

State = Literal["pending", "deferred", "inflight", "sent", "bounced", "returned", "failed"]
"""`bounced`: refused while sending; `returned`: accepted, then a bounce report came back (inbox)."""
DB_NAME = "utskick.db"
VERSION = 2
BUSY_TIMEOUT = 30.0
"""Seconds to wait for another program holding the journal (a backup, a DB browser)."""


def unusable(error: sqlite3.Error, state_dir: Path) -> UtskickError:
    """A journal that is locked, broken or on a full disk, as a located error."""
    if isinstance(error, sqlite3.OperationalError) and "locked" in str(error):
        why = f"another program has held it for over {BUSY_TIMEOUT:.0f} s; close it (a backup, a DB browser) and run the same command"
    else:
        why = f"{error}; if the file is damaged, move it away (the next send then starts afresh and may mail everyone again)"
    return UtskickError(Problem(f"the send journal cannot be used: {why}", state_dir / DB_NAME))

SCHEMA = ["""
CREATE TABLE delivery (
    issue     TEXT NOT NULL,
    transport TEXT NOT NULL,
    key       TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    email     TEXT NOT NULL,
    state     TEXT NOT NULL DEFAULT 'pending',
    attempts  INTEGER NOT NULL DEFAULT 0,
    reply     TEXT NOT NULL DEFAULT '',
    updated   TEXT NOT NULL,
    message_id TEXT NOT NULL DEFAULT '',
    submitted TEXT NOT NULL DEFAULT '',
    soft TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (issue, transport, key)
) WITHOUT ROWID""",
    "CREATE INDEX delivery_submitted ON delivery (submitted) WHERE submitted != ''",
    "CREATE INDEX delivery_message_id ON delivery (message_id) WHERE message_id != ''",
    # Mail read back from the sender's mailbox (`inbox`), by its own Message-ID: applied once.
    "CREATE TABLE processed (message_id TEXT PRIMARY KEY, action TEXT NOT NULL, at TEXT NOT NULL) WITHOUT ROWID",
]


def _v1_to_v2(db: sqlite3.Connection) -> None:
    """Version 1 kept "put back after a bounce streak" only in the reply text of a pending row,
    and no Message-IDs or submission times: make the first a state, and add the others (and the
    inbox's record)."""
    db.execute("ALTER TABLE delivery ADD COLUMN message_id TEXT NOT NULL DEFAULT ''")
    # v1 kept no submission times: its sends count against no budget (they are a day old, or a
    # budget was not kept then).
    db.execute("ALTER TABLE delivery ADD COLUMN submitted TEXT NOT NULL DEFAULT ''")
    # A delay or soft failure reported later for a message that was sent (`utskick inbox`).
    db.execute("ALTER TABLE delivery ADD COLUMN soft TEXT NOT NULL DEFAULT ''")
    for statement in SCHEMA[1:]:
        db.execute(statement)
    put_back = [(i, t, k) for i, t, k, reply in db.execute(
        "SELECT issue, transport, key, reply FROM delivery WHERE state = 'pending'") if refused_address(reply)]
    db.executemany("UPDATE delivery SET state = 'deferred' WHERE issue=? AND transport=? AND key=?", put_back)


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _v1_to_v2}
"""From version N to N+1. Version 1 had no user_version (0) but a delivery table."""


def prepare(db: sqlite3.Connection, path: Path) -> None:
    """Create the schema, or migrate an older one up to VERSION, in one transaction. A journal
    written by a newer utskick is refused rather than guessed at."""
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version > VERSION:
        raise UtskickError(Problem(f"written by a newer utskick (journal version {version}; this one knows "
                                   f"up to {VERSION}): upgrade utskick", path))
    if version == VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        (version,) = db.execute("PRAGMA user_version").fetchone()  # another process may have done it
        if version == 0:
            exists = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='delivery'").fetchone()
            if exists:
                version = 1
            else:
                for statement in SCHEMA:
                    db.execute(statement)
                version = VERSION
        while version < VERSION:
            MIGRATIONS[version](db)
            version += 1
        db.execute(f"PRAGMA user_version = {VERSION}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Row:
    key: str
    seq: int
    email: str
    state: State
    attempts: int
    reply: str
    updated: str
    message_id: str = ""

    @property
    def shown_state(self) -> str:
        return shown(self.state)


COUNTED = {"inflight": "uncertain", "deferred": "pending"}


def shown(state: str) -> str:
    """What an editor reads: an `inflight` row outside a running send is 'uncertain'; a deferred
    one is still to send; one whose bounce report came back later is bounced all the same."""
    return "bounced" if state == "returned" else COUNTED.get(state, state)


@dataclass
class Counts:
    sent: int = 0
    bounced: int = 0
    failed: int = 0
    returned: int = 0
    uncertain: int = 0
    pending: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.bounced + self.failed + self.uncertain + self.pending + self.returned

    def add(self, state: str, n: int = 1) -> None:
        """Count `n` more (or fewer) rows in `state`, inflight counted as uncertain; bounced after
        sending (returned) apart from refused while sending."""
        name = COUNTED.get(state, state)
        setattr(self, name, getattr(self, name) + n)


class Journal:
    """The journal of one project (`.utskick/utskick.db`), for one issue and transport."""

    def __init__(self, db: sqlite3.Connection, issue: str, transport: str) -> None:
        self.db = db
        self.issue = issue
        self.transport = transport

    @classmethod
    def open(cls, state_dir: Path, issue: str, transport: str) -> Journal:
        try:
            state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            _private(state_dir / DB_NAME)
            db = sqlite3.connect(state_dir / DB_NAME, isolation_level=None, timeout=BUSY_TIMEOUT)
        except OSError as e:
            raise UtskickError(Problem(f"cannot open the send journal: {e.strerror or e}", state_dir / DB_NAME)) from None
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            prepare(db, state_dir / DB_NAME)
        except sqlite3.Error as e:
            db.close()
            raise unusable(e, state_dir) from None
        except BaseException:
            db.close()
            raise
        return cls(db, issue, transport)

    @staticmethod
    def exists(state_dir: Path) -> bool:
        return (state_dir / DB_NAME).exists()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, key: str) -> Row | None:
        r = self.db.execute(
            "SELECT key, seq, email, state, attempts, reply, updated, message_id FROM delivery"
            " WHERE issue=? AND transport=? AND key=?", (self.issue, self.transport, key)).fetchone()
        return Row(*r) if r else None

    def top(self) -> int:
        """The highest sequence number so far: new recipients are numbered after it."""
        (top,) = self.db.execute("SELECT coalesce(max(seq), 0) FROM delivery WHERE issue=? AND transport=?",
                                 (self.issue, self.transport)).fetchone()
        return int(top)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Many writes in one transaction (entering a whole list), all or none."""
        self.db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def add(self, key: str, email: str, seq: int) -> Row:
        stamp = now()
        self.db.execute("INSERT OR IGNORE INTO delivery (issue, transport, key, seq, email, updated)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (self.issue, self.transport, key, seq, email, stamp))
        return Row(key, seq, email, "pending", 0, "", stamp)

    def _set(self, key: str, state: State, reply: str | None, attempt: int) -> None:
        self.db.execute(
            "UPDATE delivery SET state=?, attempts=attempts+?, reply=coalesce(?, reply), updated=?"
            " WHERE issue=? AND transport=? AND key=?",
            (state, attempt, reply, now(), self.issue, self.transport, key))

    def inflight(self, key: str, message_id: str) -> None:
        """Committed before the server can accept the message: a crash from here is 'uncertain'.
        The Message-ID is recorded with it: a bounce report that returns it names this row."""
        stamp = now()
        self.db.execute(
            "UPDATE delivery SET state='inflight', attempts=attempts+1, message_id=?, updated=?, submitted=?"
            " WHERE issue=? AND transport=? AND key=?",
            (message_id, stamp, stamp, self.issue, self.transport, key))

    def submitted_since(self, since: str) -> list[str]:
        """When each message handed to a relay (any issue; not the outbox) since `since` went,
        oldest first: what a daily budget counts."""
        return [t for (t,) in self.db.execute(
            "SELECT submitted FROM delivery WHERE submitted > ? AND transport != 'outbox' ORDER BY submitted", (since,))]

    def done(self, key: str, state: State, reply: str) -> None:
        """The server's verdict on a transaction (the attempt was counted at `inflight`)."""
        self._set(key, state, reply, 0)

    def attempt(self, key: str, state: State, reply: str) -> None:
        """A transaction that ended before DATA (refused or dropped): counts as an attempt."""
        self._set(key, state, reply, 1)

    def counts(self) -> Counts:
        c = Counts()
        for state, n in self.db.execute("SELECT state, count(*) FROM delivery WHERE issue=? AND transport=?"
                                        " GROUP BY state", (self.issue, self.transport)):
            c.add(state, n)
        return c

    def rows(self, *states: State) -> Iterator[Row]:
        sql = ("SELECT key, seq, email, state, attempts, reply, updated, message_id FROM delivery"
               " WHERE issue=? AND transport=?")
        args: list[str] = [self.issue, self.transport]
        if states:
            sql += f" AND state IN ({', '.join('?' * len(states))})"
            args += states
        for r in self.db.execute(sql + " ORDER BY seq", args):
            yield Row(*r)

    @staticmethod
    def transports(state_dir: Path, issue: str) -> list[str]:
        """The transports an issue was sent through, for `status`."""
        if not Journal.exists(state_dir):
            return []
        with Journal.open(state_dir, issue, "") as j:
            try:
                return [t for (t,) in j.db.execute("SELECT DISTINCT transport FROM delivery WHERE issue=? ORDER BY transport",
                                                   (issue,))]
            except sqlite3.Error as e:
                raise unusable(e, state_dir) from None


def _private(path: Path) -> None:
    """The journal holds addresses (personal data): readable by its owner only, from the start."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


def keys_ever(state_dir: Path) -> list[str]:
    """Every recipient ever entered, for any issue and transport, without opening it for writing.

    An unsubscribe link in an old issue names someone we mailed, who may have left the lists
    since: resolving tokens must find them here. No journal yet: nobody.
    """
    path = state_dir / DB_NAME
    if not path.exists():
        return []
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT)
    try:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'delivery'").fetchone():
            return []  # a journal created but never written: no table yet
        return [k for (k,) in db.execute("SELECT DISTINCT key FROM delivery")]
    except sqlite3.Error as e:
        raise unusable(e, state_dir) from None
    finally:
        db.close()


def find_message(state_dir: Path, message_id: str) -> tuple[str, str, Row] | None:
    """(issue, transport, row) of the message with this Message-ID, for a bounce report that
    returned it; None when utskick sent no such message."""
    if not message_id or not Journal.exists(state_dir):
        return None
    with Journal.open(state_dir, "", "") as j:
        r = j.db.execute("SELECT issue, transport, key, seq, email, state, attempts, reply, updated, message_id"
                         " FROM delivery WHERE message_id = ?", (message_id,)).fetchone()
    return (r[0], r[1], Row(*r[2:])) if r else None
