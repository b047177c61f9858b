"""Adding to the suppression list: unsubscribe requests (addresses or tokens) and bounces.

Writing is kept apart from reading (`subscribers`): every change to `unsubscribed.csv` goes
through `suppress`, which is idempotent and atomic, so a re-run or an interrupted run can never
lose or double an entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date as Date
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from .addresses import InvalidAddress, normalise, show
from .csvfile import format_row, read_cell, read_table
from .errors import Problem, UtskickError
from .files import locked, write_atomic
from .journal import keys_ever
from .project import Project
from . import signer
from .signer import Signer
from .subscribers import (
    ADDRESS_COLUMNS, DATE_COLUMNS, REASON_COLUMNS, TOKEN_COLUMNS, address_column,
    load_suppressed, valid_rows,
)


def suppress(target: Project | Path, entries: Iterable[tuple[str, str]], today: Date | None = None) -> list[str]:
    """Add (address, reason) pairs to the suppression list; returns the addresses that were new.

    Idempotent: an address already there (in any spelling) stays as it was. Atomic: the file is
    rewritten whole through write_atomic, in its own delimiter and line ending, so an
    interrupted run leaves the old file or the new one, never half of one. An invalid address
    raises before anything is written.
    """
    path = target if isinstance(target, Path) else target.suppression_path
    # send (bounces) and unsubscribe may write at the same moment: read-modify-write under a lock.
    with locked(path.with_name(f".{path.name}.lock")):
        return _suppress(path, entries, today)


def _suppress(path: Path, entries: Iterable[tuple[str, str]], today: Date | None) -> list[str]:
    table = read_table(path, b"" if not path.exists() else None)
    if not table.header:
        table = read_table(path, b"email,date,reason\n")
    address = address_column(table)
    keys = {row[3] for row in valid_rows(table, address, ours=True) if not isinstance(row, Problem)}
    day = (today or Date.today()).isoformat()
    text = table.text()
    if not text.endswith(("\n", "\r")):
        text += table.newline
    added: dict[str, str] = {}
    for raw, reason in entries:
        try:
            email, key = normalise(raw.strip())
        except InvalidAddress as e:
            raise UtskickError(e.problem(path)) from None
        if key in keys:
            continue
        keys.add(key)
        added[key] = email
        cells = [email if i == address else day if h in DATE_COLUMNS else " ".join(reason.split()) if h in REASON_COLUMNS else ""
                 for i, h in enumerate(table.header)]
        text += format_row(cells, table.delimiter, table.newline)
    if not added:
        return []
    data = table.encode(text)
    # A quote left open at the end of the file would swallow the rows we add, or turn the last
    # row into a broken one: read everything back and lose nobody before writing.
    written = read_table(path, data)
    if written.header != table.header or not keys <= {
            row[3] for row in valid_rows(written, address, ours=True) if not isinstance(row, Problem)}:
        raise UtskickError(Problem("cannot add rows: a quote (\") near the end is not closed; fix the file first",
                                   path, len(table.text().splitlines()) or None))
    write_atomic(path, data)
    return list(added.values())


def resolve_tokens(signing: Signer, tokens: Iterable[str], candidates: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """Tokens back to keys, by signing every candidate key: ({token: key}, tokens not found).

    Tokens are one-way on purpose (no address in any URL), so the only way back is to sign
    everyone we know (`known_keys`).
    """
    asked = list(dict.fromkeys(tokens))
    wanted = set(asked)
    found: dict[str, str] = {}
    for candidate in candidates:
        t = signing.token(candidate)
        if t in wanted:
            found[t] = candidate
            if len(found) == len(wanted):
                break
    return found, [t for t in asked if t not in found]


def known_keys(project: Project) -> Iterator[str]:
    """Everyone a token could belong to here: every list, the suppression list, then everyone the
    send journal has ever entered (a member who left a list may click last month's link)."""
    for path in project.list_paths().values():
        yield from (s.key for s in project.read_list(path).subscribers)
    yield from load_suppressed(project.suppression_path)[0]
    yield from keys_ever(project.state_dir)


@dataclass(frozen=True)
class Request:
    """One unsubscribe request: an address or a token, and where it was written."""

    text: str
    file: Path | None = None
    line: int | None = None

    def problem(self, message: str) -> Problem:
        return Problem(message, self.file, self.line, where="" if self.file else "argument")


def read_requests(path: Path) -> tuple[list[Request], list[Problem]]:
    """Requests from a file: a CSV export with an address or token column, else one a line."""
    table = read_table(path)
    column = table.column(ADDRESS_COLUMNS)
    if column is None:
        column = table.column(TOKEN_COLUMNS)
    if column is None:
        lines = table.text().splitlines()
        return [Request(t.strip(), path, n) for n, t in enumerate(lines, 1) if t.strip() and not t.lstrip().startswith("#")], []
    requests: list[Request] = []
    problems: list[Problem] = []
    for line, cells, problem in table:
        # A --report or unsubscribed.csv of our own may be fed back: take off what excel_cell added.
        text = read_cell(cells[column].strip()) if column < len(cells) else ""
        if problem or not text:
            problems.append(Problem(f"{problem or 'empty'}; row skipped", path, line, severity="warning"))
        else:
            requests.append(Request(text, path, line))
    return requests, problems


def token_in_link(text: str) -> str:
    """The token of a whole unsubscribe link pasted as it was clicked (`…?token=T`, or `<…>` as
    List-Unsubscribe shows it); any other text as it is."""
    bare = text.strip().removeprefix("<").removesuffix(">")
    if "://" in bare:
        found = parse_qs(urlsplit(bare).query).get("token")
        if found:
            return found[-1]
    return text


@dataclass(frozen=True)
class Unsubscribed:
    added: list[str]
    already: list[str]
    problems: list[Problem]


def unsubscribe(project: Project, requests: Sequence[Request], reason: str = "") -> Unsubscribed:
    """Suppress every address and every token we can resolve; report the rest as errors.

    What can be done is done (one stale token must not keep the others subscribed), in one
    atomic write; running it again changes nothing.
    """
    problems: list[Problem] = []
    emails: dict[str, str] = {}
    tokens: dict[str, Request] = {}
    for r in requests:
        text = token_in_link(r.text)
        if "@" not in text:
            tokens.setdefault(text, r)
            continue
        try:
            email, key = normalise(text)
        except InvalidAddress as e:
            problems.append(r.problem(e.message()))
        else:
            emails.setdefault(key, email)
    if tokens:
        # Only now: unsubscribing by address alone must not create the secret as a side effect.
        found, missing = resolve_tokens(signer.load(project.state_dir), tokens, known_keys(project))
        for key in found.values():
            emails.setdefault(key, key)
        problems += [tokens[t].problem(f"token {show(t)} belongs to nobody on any list, the suppression list or the send journal") for t in missing]
    added = suppress(project, [(e, reason) for e in emails.values()])
    new = set(added)
    return Unsubscribed(added, [e for e in emails.values() if e not in new], problems)
