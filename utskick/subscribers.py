"""Lists, validation, the suppression list as read at send time, unsubscribe tokens.

The canonical key of a person is the lower-cased ASCII form of the address: it is what dedupe,
suppression, the send journal and unsubscribe tokens all use, so `anna@åre.se` and
`anna@xn--re-xia.se` are one person everywhere.

`subscribers/<name>.csv` is the list <name>; `subscribers/unsubscribed.csv` is the suppression
list, applied to every send and never itself a list. A row we cannot use is a warning at its line
and is skipped: one typo must neither stop a send nor crash it.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, NamedTuple

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email

from .csvfile import Table, read_table
from .errors import Problem, UtskickError
from .files import locked, write_atomic
from .load import Project

ADDRESS_COLUMNS = frozenset({"email", "e-mail", "e-post", "epost", "mail"})
NAME_COLUMNS = frozenset({"name", "namn"})
DATE_COLUMNS = frozenset({"date", "datum"})
REASON_COLUMNS = frozenset({"reason", "orsak", "anledning"})
TOKEN_COLUMNS = frozenset({"token"})
UNSUBSCRIBED = "unsubscribed"


@dataclass(frozen=True, slots=True)
class Subscriber:
    """One recipient: the address to send to, its canonical key, and the list's columns."""

    email: str
    key: str
    name: str = ""
    attrs: Mapping[str, str] = field(default_factory=dict)
    token: str = ""

    def field(self, name: str) -> str | None:
        """A template field's value, or None when this recipient's list has no such column."""
        if name == "name":
            return self.name
        if name == "email":
            return self.email
        return self.attrs.get(name)


# Fictional: `build` personalises with this, so nothing of a real member ends up in build/.
SAMPLE = Subscriber(
    email="anna.exempel@example.se",
    key="anna.exempel@example.se",
    name="Anna Exempel",
    attrs={"kommun": "Exempelby", "organisation": "Exempelby kommun", "roll": "Kommunchef"},
    token="exempel-token",
)


def secret(state_dir: Path) -> bytes:
    """UTSKICK_SECRET, else a random secret made once in `.utskick/secret` (mode 0600)."""
    env = os.environ.get("UTSKICK_SECRET")
    if env:
        return env.encode()
    path = state_dir / "secret"
    # preview, check and send may all make it at once: one of them must win for everyone.
    with locked(state_dir / "secret.lock"):
        if path.exists():
            return path.read_bytes().strip()
        value = secrets.token_urlsafe(32).encode()
        write_atomic(path, value, mode=0o600)
        return value


def secret_warnings(state_dir: Path) -> list[Problem]:
    """Without UTSKICK_SECRET the secret is `.utskick/secret` on this computer: a send from another
    computer would sign other tokens, and old links would resolve to nobody."""
    if os.environ.get("UTSKICK_SECRET"):
        return []
    return [Problem("the secret lives on this computer only: copy .utskick/secret or set UTSKICK_SECRET "
                    "on every computer that sends", state_dir / "secret", severity="warning")]


def token(key: bytes, address_key: str) -> str:
    """An opaque, unforgeable unsubscribe token: no address ever appears in a URL."""
    return signer(key)(address_key)


def signer(key: bytes) -> Callable[[str], str]:
    """`token` with the key's HMAC state set up once: signing a whole list costs half as much."""
    base = hmac.new(key, digestmod=hashlib.sha256)

    def sign(address_key: str) -> str:
        mac = base.copy()
        mac.update(address_key.encode())
        return base64.urlsafe_b64encode(mac.digest()[:18]).decode().rstrip("=")

    return sign


# A strict subset of what email-validator accepts, for plain ASCII addresses: dot-atom local part
# of common characters, letter-only top-level domain. Anything else goes to email-validator.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
FAST_ADDRESS = re.compile(rf"([A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*)@((?:{_LABEL}\.)+[A-Za-z]{{2,63}})")
SPECIAL_USE = re.compile(rf"(?:^|\.)(?:{'|'.join(map(re.escape, SPECIAL_USE_DOMAIN_NAMES))})$")


def fast_normalise(address: str) -> tuple[str, str] | None:
    """(normalised address, key) for a plainly valid ASCII address, or None to ask email-validator.

    email-validator costs about 110 µs an address, too slow for 100,000-row lists; this costs
    about 1 µs and covers nearly every real address. A hypothesis test shows it accepts nothing
    email-validator rejects and normalises exactly as it does ('--' labels such as IDNA `xn--`
    and reserved domains such as `.local` are left to email-validator).
    """
    m = FAST_ADDRESS.fullmatch(address)
    if m is None or len(m[1]) > 64 or len(address) > 254:
        return None
    domain = m[2].lower()
    if "--" in domain or SPECIAL_USE.search(domain):
        return None
    email = f"{m[1]}@{domain}"
    key = email.lower()
    return email, email if key == email else key


def normalise(address: str) -> tuple[str, str]:
    """(normalised address, canonical key); ValueError with email-validator's reason if invalid."""
    fast = fast_normalise(address)
    if fast is not None:
        return fast
    try:
        # No SMTPUTF8: a non-ASCII local part could not be delivered through most relays.
        r = validate_email(address, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as e:
        raise ValueError(str(e)) from None
    return r.normalized, str(r.ascii_email).lower()


def show(value: str) -> str:
    return repr(value if len(value) <= 60 else value[:57] + "...")


def address_column(table: Table) -> int:
    col = table.column(ADDRESS_COLUMNS)
    if col is not None:
        return col
    if not table.header:
        raise UtskickError(Problem("the file is empty: the first row must name the columns, e.g. email,namn", table.path))
    hint = " (the first row looks like an address: add a header row such as 'email')" if any("@" in h for h in table.header) else ""
    found = ", ".join(repr(h) for h in table.header)
    raise UtskickError(Problem(
        f"no address column: name one email, e-mail, e-post, epost or mail (found {found}){hint}",
        table.path, 1,
    ))


ValidRow = tuple[int, list[str], str, str]
"""(line, cells, normalised address, key)"""


def valid_rows(table: Table, address: int) -> Iterator[ValidRow | Problem]:
    """Every non-blank row: valid ones as ValidRow, the rest as a warning saying why."""
    width = len(table.header)
    delimiter = {"\t": "tab", ",": "comma", ";": "semicolon"}[table.delimiter]
    for line, cells, problem in table:
        if not problem and len(cells) > width and any(c.strip() for c in cells[width:]):
            problem = f"{len(cells)} fields but the header has {width} (a {delimiter} inside a field needs quotes)"
        raw = cells[address].strip() if address < len(cells) else ""
        if not problem and not raw:
            problem = "no address"
        if not problem:
            try:
                email, key = normalise(raw)
            except ValueError as e:
                problem = f"{show(raw)} is not a valid address: {e}"
            else:
                yield line, cells, email, key
                continue
        yield Problem(f"{problem.rstrip('.')}; row skipped", table.path, line, severity="warning")


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Reading a list makes a few objects a row and no reference cycles, yet the growing heap
    makes the cyclic collector walk it again and again: a third of the time for 100,000 rows."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True)
class SubscriberList:
    """One list file, read: each usable address once, in file order, without tokens."""

    name: str
    path: Path
    columns: frozenset[str]
    subscribers: tuple[Subscriber, ...]
    rows: int
    invalid: int
    problems: tuple[Problem, ...]


@_collector_paused()
def load_list(path: Path) -> SubscriberList:
    """Read one list; raises UtskickError only when the file as a whole is unusable."""
    table = read_table(path)
    address = address_column(table)
    name = table.column(NAME_COLUMNS)
    attrs: dict[str, int] = {}
    for i, h in enumerate(table.header):
        if h and i not in (address, name) and h not in ("email", "name") and h not in attrs:
            attrs[h] = i
    columns = frozenset({"email", *attrs, *(["name"] if name is not None else [])})
    seen: dict[str, int] = {}
    out: list[Subscriber] = []
    problems: list[Problem] = []
    rows = invalid = 0
    for row in valid_rows(table, address):
        rows += 1
        if isinstance(row, Problem):
            invalid += 1
            problems.append(row)
            continue
        line, cells, email, key = row
        if key in seen:
            problems.append(Problem(f"{email} is also on line {seen[key]}; it gets one message", path, line, severity="warning"))
            continue
        seen[key] = line
        n = len(cells)
        out.append(Subscriber(
            email, key,
            cells[name].strip() if name is not None and name < n else "",
            {k: cells[i].strip() if i < n else "" for k, i in attrs.items()},
        ))
    return SubscriberList(path.stem, path, columns, tuple(out), rows, invalid, tuple(problems))


def suppression_path(project: Project) -> Path:
    return project.subscribers_dir / f"{UNSUBSCRIBED}.csv"


def load_suppressed(path: Path) -> tuple[frozenset[str], list[Problem]]:
    """The keys nobody may send to; a missing or empty file suppresses nobody."""
    if not path.exists():
        return frozenset(), []
    table = read_table(path)
    if not table.header:
        return frozenset(), []
    keys: set[str] = set()
    problems: list[Problem] = []
    for row in valid_rows(table, address_column(table)):
        if isinstance(row, Problem):
            problems.append(row)
        else:
            keys.add(row[3])
    return frozenset(keys), problems


def list_paths(project: Project) -> dict[str, Path]:
    """Every list by name: each `subscribers/*.csv` except the suppression list."""
    return {p.stem: p for p in sorted(project.subscribers_dir.glob("*.csv")) if p.stem != UNSUBSCRIBED}


def list_path(project: Project, name: str) -> Path:
    """The file of list `name`; an unknown name is an error naming the lists there are."""
    stem = name.removesuffix(".csv")
    path = project.subscribers_dir / f"{stem}.csv"
    if stem == UNSUBSCRIBED:
        raise UtskickError(Problem("is the suppression list, never a list to send to", path))
    available = list_paths(project)
    if stem not in available:
        names = ", ".join(available) or "none yet: put <name>.csv files in this folder"
        raise UtskickError(Problem(f"no list '{name}' (available: {names})", path))
    return available[stem]


@dataclass(frozen=True)
class ListStats:
    """What became of one list's rows: rows = valid + invalid, valid = duplicates + suppressed + receive."""

    name: str
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    suppressed: int = 0
    receive: int = 0


def total(stats: Iterable[ListStats], name: str = "total") -> ListStats:
    all_ = list(stats)
    return ListStats(name, *(sum(getattr(s, f) for s in all_)
                             for f in ("rows", "valid", "invalid", "duplicates", "suppressed", "receive")))


class Recipients(NamedTuple):
    subscribers: list[Subscriber]
    problems: list[Problem]
    stats: list[ListStats]


@_collector_paused()
def merge(lists: Sequence[SubscriberList], suppressed: frozenset[str], key: bytes | None = None) -> Recipients:
    """The union of `lists`, each person once, minus the suppressed, in list then file order.

    A suppressed person counts as suppressed on every list they are on; anyone else on a second
    list counts as a duplicate there. With `key`, each recipient gets their unsubscribe token.
    """
    seen: set[str] = set()
    out: list[Subscriber] = []
    stats: list[ListStats] = []
    sign = signer(key) if key else None
    for lst in lists:
        valid = lst.rows - lst.invalid
        duplicates, blocked = valid - len(lst.subscribers), 0
        for s in lst.subscribers:
            if s.key in suppressed:
                blocked += 1
            elif s.key in seen:
                duplicates += 1
            else:
                seen.add(s.key)
                out.append(Subscriber(s.email, s.key, s.name, s.attrs, sign(s.key)) if sign else s)
        receive = valid - duplicates - blocked
        stats.append(ListStats(lst.name, lst.rows, valid, lst.invalid, duplicates, blocked, receive))
    return Recipients(out, [p for lst in lists for p in lst.problems], stats)


def recipients(project: Project, names: Sequence[str], fields: Iterable[str] = ()) -> Recipients:
    """Who gets an issue sent to `names`: with tokens, each person once, the suppressed left out.

    Its problems are what `check --list` reports, `fields` (the template's columns) included,
    so `send` reads every list once.
    """
    lists = [load_list(list_path(project, n)) for n in dict.fromkeys(names)]
    suppressed, problems = load_suppressed(suppression_path(project))
    found = merge(lists, suppressed, secret(project.state_dir))
    return Recipients(found.subscribers, problems + found.problems + column_problems(lists, fields), found.stats)


def overview(project: Project) -> tuple[list[ListStats], ListStats, list[Problem]]:
    """Every list on its own and all of them together; an unusable file is an error, not a stop."""
    lists: list[SubscriberList] = []
    problems: list[Problem] = []
    for path in list_paths(project).values():
        try:
            lists.append(load_list(path))
        except UtskickError as e:
            problems += e.problems
    suppressed, sup_problems = load_suppressed(suppression_path(project))
    each = [merge([lst], suppressed).stats[0] for lst in lists]
    union = total(merge(lists, suppressed).stats, "all lists")
    return each, union, sup_problems + [p for lst in lists for p in lst.problems] + problems


def check_lists(project: Project, names: Sequence[str], fields: Iterable[str], required: bool = True) -> list[Problem]:
    """Bad rows of the named lists as warnings; a template field a list has no column for, an error.

    Lists are personal data kept out of git, so a colleague's checkout may not have them: a list
    named only by the issue (`required=False`) and missing here is a warning, not an error.
    """
    _, problems = load_suppressed(suppression_path(project))
    lists: list[SubscriberList] = []
    for n in dict.fromkeys(names):
        missing = project.subscribers_dir / f"{n.removesuffix('.csv')}.csv"
        if not required and not missing.exists():
            problems.append(Problem(f"list '{n}' is not in this folder, so it was not checked", missing, severity="warning"))
        else:
            lists.append(load_list(list_path(project, n)))
    return problems + [p for lst in lists for p in lst.problems] + column_problems(lists, fields)


def column_problems(lists: Sequence[SubscriberList], fields: Iterable[str]) -> list[Problem]:
    """A template field a list has no column for: an error, or that field would be blank."""
    problems = []
    for lst in lists:
        for f in sorted(set(fields) - lst.columns):
            hint = f"; column names are lower case: write subscriber.{f.lower()}" if f.lower() in lst.columns else ""
            problems.append(Problem(
                f"the issue uses {{{{ subscriber.{f} }}}} but this list has no '{f}' column "
                f"(columns: {', '.join(sorted(lst.columns))}){hint}", lst.path, 1,
            ))
    return problems


def find(project: Project, address: str) -> Subscriber:
    """The person with `address` (any spelling) on the first list that has them, with the token
    `send` gives them: for previewing the issue as one real recipient."""
    try:
        key = normalise(address.strip())[1]
    except ValueError as e:
        raise UtskickError(Problem(f"{show(address)} is not a valid address: {e}")) from None
    for path in list_paths(project).values():
        for s in load_list(path).subscribers:
            if s.key == key:
                return Subscriber(s.email, s.key, s.name, s.attrs, token(secret(project.state_dir), key))
    raise UtskickError(Problem(f"{address} is on no list here", project.subscribers_dir))
