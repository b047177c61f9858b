"""The receiver's SQLite file: opaque tokens and when they came, and nothing else.

Kept apart from the web app so the bounds on what the server holds live beside the data they
bound. Every change is one transaction in WAL mode with synchronous=FULL: a request answered
200 is on disk, and a crash or power cut leaves the file whole.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import Problem, UtskickError

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (token TEXT PRIMARY KEY, received INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seen (signature TEXT PRIMARY KEY, at INTEGER NOT NULL) WITHOUT ROWID;
"""


class Store:
    """Pending unsubscribe tokens, and the signatures of recent pulls (to refuse replays).

    One short connection per call: the app calls it from worker threads, and several server
    processes may share the file.
    """

    def __init__(self, path: Path, max_tokens: int) -> None:
        self.path = path
        self.max_tokens = max_tokens
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=10)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
            finally:
                db.close()
        except (OSError, sqlite3.Error) as e:
            raise UtskickError(Problem(f"cannot open the store: {e}", path)) from None

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=FULL")
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        finally:
            db.close()

    def add(self, token: str, now: int) -> bool:
        """Record a token (once); False when the store is full and it was not recorded."""
        with self._connection() as db:
            if db.execute("SELECT 1 FROM requests WHERE token = ?", (token,)).fetchone():
                return True
            if db.execute("SELECT count(*) FROM requests").fetchone()[0] >= self.max_tokens:
                return False
            db.execute("INSERT INTO requests (token, received) VALUES (?, ?)", (token, now))
            return True

    def pending(self, limit: int) -> list[str]:
        with self._connection() as db:
            rows = db.execute("SELECT token FROM requests ORDER BY received, token LIMIT ?", (limit,))
            return [r[0] for r in rows]

    def forget(self, tokens: Iterable[str]) -> int:
        with self._connection() as db:
            return sum(db.execute("DELETE FROM requests WHERE token = ?", (t,)).rowcount for t in tokens)

    def first_use(self, signature: str, now: int, window: int) -> bool:
        """Record a pull's signature; False when it was seen within `window` seconds (a replay).
        Older ones are dropped: their timestamps are refused as stale anyway."""
        with self._connection() as db:
            db.execute("DELETE FROM seen WHERE at < ?", (now - 2 * window,))
            if db.execute("SELECT 1 FROM seen WHERE signature = ?", (signature,)).fetchone():
                return False
            db.execute("INSERT INTO seen (signature, at) VALUES (?, ?)", (signature, now))
            return True

    def count(self) -> int:
        with self._connection() as db:
            return int(db.execute("SELECT count(*) FROM requests").fetchone()[0])
