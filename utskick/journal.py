"""The send journal: who has been sent what, surviving kill -9 and a laptop that sleeps.

One SQLite row per (issue, transport, recipient's canonical key). Every state change is its own
committed transaction, written around the SMTP transaction it describes:

    pending --(DATA about to be sent)--> inflight --(server said 250)--> sent
                                                  --(4xx after data)----> pending (retried)
    pending --(5.1.x to RCPT)--> bounced          pending --(retries exhausted)--> failed

A row left `inflight` by a crash is the one honest gap ("uncertain"): the message may or may
not have been accepted. WAL with synchronous=NORMAL keeps every commit across a process crash;
a power loss may forget the last moments, which can only send those messages again, never skip
them (a forgotten `inflight` or `sent` reads as `pending`).
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Literal

State = Literal["pending", "inflight", "sent", "bounced", "failed"]
DB_NAME = "utskick.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS delivery (
    issue     TEXT NOT NULL,
    transport TEXT NOT NULL,
    key       TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    email     TEXT NOT NULL,
    state     TEXT NOT NULL DEFAULT 'pending',
    attempts  INTEGER NOT NULL DEFAULT 0,
    reply     TEXT NOT NULL DEFAULT '',
    updated   TEXT NOT NULL,
    PRIMARY KEY (issue, transport, key)
) WITHOUT ROWID;
"""


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

    @property
    def shown_state(self) -> str:
        return shown(self.state)


def shown(state: str) -> str:
    """What an editor reads: an `inflight` row outside a running send is 'uncertain'."""
    return "uncertain" if state == "inflight" else state


@dataclass
class Counts:
    sent: int = 0
    bounced: int = 0
    failed: int = 0
    uncertain: int = 0
    pending: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.bounced + self.failed + self.uncertain + self.pending

    def add(self, state: str, n: int = 1) -> None:
        """Count `n` more (or fewer) rows in `state`, inflight counted as uncertain."""
        name = shown(state)
        setattr(self, name, getattr(self, name) + n)


class Journal:
    """The journal of one project (`.utskick/utskick.db`), for one issue and transport."""

    def __init__(self, db: sqlite3.Connection, issue: str, transport: str) -> None:
        self.db = db
        self.issue = issue
        self.transport = transport

    @classmethod
    def open(cls, state_dir: Path, issue: str, transport: str) -> Journal:
        state_dir.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(state_dir / DB_NAME, isolation_level=None, timeout=10)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
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
            "SELECT key, seq, email, state, attempts, reply, updated FROM delivery"
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

    def inflight(self, key: str) -> None:
        """Committed before the server can accept the message: a crash from here is 'uncertain'."""
        self._set(key, "inflight", None, 1)

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
        sql = ("SELECT key, seq, email, state, attempts, reply, updated FROM delivery"
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
        db = sqlite3.connect(state_dir / DB_NAME, timeout=10)
        try:
            db.executescript(SCHEMA)
            return [t for (t,) in db.execute("SELECT DISTINCT transport FROM delivery WHERE issue=? ORDER BY transport",
                                             (issue,))]
        finally:
            db.close()


def keys_ever(state_dir: Path) -> list[str]:
    """Every recipient ever entered, for any issue and transport, without opening it for writing.

    An unsubscribe link in an old issue names someone we mailed, who may have left the lists
    since: resolving tokens must find them here. No journal yet: nobody.
    """
    path = state_dir / DB_NAME
    if not path.exists():
        return []
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        return [k for (k,) in db.execute("SELECT DISTINCT key FROM delivery")]
    except sqlite3.OperationalError:  # a journal created but never written: no table yet
        return []
    finally:
        db.close()
