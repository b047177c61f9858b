"""Lists, validation and the suppression list as read at send time.

A person is their canonical key (see `addresses`): dedupe, suppression and the journal use it.

`subscribers/<name>.csv` is the list <name>; `subscribers/unsubscribed.csv` is the suppression
list, applied to every send and never itself a list. A row we cannot use is a warning at its line
and is skipped: one typo must neither stop a send nor crash it.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, NamedTuple

from .addresses import InvalidAddress, normalise
from .csvfile import Table, read_cell, read_table
from .errors import Problem, UtskickError

if TYPE_CHECKING:  # a Project reads its lists with `load_list`
    from .project import Project

ADDRESS_COLUMNS = frozenset({"email", "e-mail", "e-post", "epost", "mail"})
NAME_COLUMNS = frozenset({"name", "namn"})
DATE_COLUMNS = frozenset({"date", "datum"})
REASON_COLUMNS = frozenset({"reason", "orsak", "anledning"})
TOKEN_COLUMNS = frozenset({"token"})
UNSUBSCRIBED = "unsubscribed"


class Cells(Mapping[str, str]):
    """A row's extra columns: its values, and the column names shared by every row of the list.
    A dict per row cost 100,000 dicts for a list of 100,000 (a third of a send's memory)."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: dict[str, int], values: tuple[str, ...]) -> None:
        self._names = names  # column name -> index, one dict for the whole list
        self._values = values

    def __getitem__(self, name: str) -> str:
        return self._values[self._names[name]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


NO_CELLS = Cells({}, ())


@dataclass(frozen=True, slots=True)
class Subscriber:
    """One recipient: the address to send to, its canonical key, and the list's columns."""

    email: str
    key: str
    name: str = ""
    attrs: Mapping[str, str] = field(default_factory=dict)

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
)


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


def valid_rows(table: Table, address: int, ours: bool = False) -> Iterator[ValidRow | Problem]:
    """Every non-blank row: valid ones as ValidRow, the rest as a warning saying why. `ours`: a
    file utskick writes for Excel (`unsubscribed.csv`), whose cells may carry `excel_cell`'s `'`."""
    width = len(table.header)
    delimiter = {"\t": "tab", ",": "comma", ";": "semicolon"}[table.delimiter]
    for line, cells, problem in table:
        if not problem and len(cells) > width and any(c.strip() for c in cells[width:]):
            problem = f"{len(cells)} fields but the header has {width} (a {delimiter} inside a field needs quotes)"
        raw = cells[address].strip() if address < len(cells) else ""
        if ours:
            raw = read_cell(raw)
        if not problem and not raw:
            problem = "no address"
        if not problem:
            try:
                email, key = normalise(raw)
            except InvalidAddress as e:
                yield e.problem(table.path, line, severity="warning", suffix="; row skipped")
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
    table.read_once()
    address = address_column(table)
    name = table.column(NAME_COLUMNS)
    attrs: dict[str, int] = {}
    for i, h in enumerate(table.header):
        if h and i not in (address, name) and h not in ("email", "name") and h not in attrs:
            attrs[h] = i
    columns = frozenset({"email", *attrs, *(["name"] if name is not None else [])})
    names = {k: n for n, k in enumerate(attrs)}
    # A kommun or a roll repeats on many rows, and so does a row's set of them: one copy of each.
    same: dict[str, str] = {}
    cells_of: dict[tuple[str, ...], Cells] = {}
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
        extra = NO_CELLS
        if attrs:
            values = tuple(same.setdefault(v, v) for v in (cells[i].strip() if i < n else "" for i in attrs.values()))
            if (extra := cells_of.get(values, NO_CELLS)) is NO_CELLS:
                extra = cells_of[values] = Cells(names, values)
        out.append(Subscriber(
            email, email if key == email else key,  # most keys are the address as written
            cells[name].strip() if name is not None and name < n else "",
            extra,
        ))
    return SubscriberList(path.stem, path, columns, tuple(out), rows, invalid, tuple(problems))


def load_suppressed(path: Path) -> tuple[frozenset[str], list[Problem]]:
    """The keys nobody may send to; a missing or empty file suppresses nobody."""
    if not path.exists():
        return frozenset(), []
    table = read_table(path)
    if not table.header:
        return frozenset(), []
    keys: set[str] = set()
    problems: list[Problem] = []
    for row in valid_rows(table, address_column(table), ours=True):
        if isinstance(row, Problem):
            problems.append(row)
        else:
            keys.add(row[3])
    return frozenset(keys), problems


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
def merge(lists: Sequence[SubscriberList], suppressed: frozenset[str]) -> Recipients:
    """The union of `lists`, each person once, minus the suppressed, in list then file order.

    A suppressed person counts as suppressed on every list they are on; anyone else on a second
    list counts as a duplicate there.
    """
    seen: set[str] = set()
    out: list[Subscriber] = []
    stats: list[ListStats] = []
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
                out.append(s)
        receive = valid - duplicates - blocked
        stats.append(ListStats(lst.name, lst.rows, valid, lst.invalid, duplicates, blocked, receive))
    return Recipients(out, [p for lst in lists for p in lst.problems], stats)


def recipients(project: Project, names: Sequence[str], fields: Iterable[str] = ()) -> Recipients:
    """Who gets an issue sent to `names`: each person once, the suppressed left out.

    Its problems are what `check --list` reports, `fields` (the template's columns) included,
    so `send` reads every list once.
    """
    lists = project.lists(names)
    suppressed, problems = load_suppressed(project.suppression_path)
    found = merge(lists, suppressed)
    return Recipients(found.subscribers, problems + found.problems + column_problems(lists, fields), found.stats)


def overview(project: Project) -> tuple[list[ListStats], ListStats, list[Problem]]:
    """Every list on its own and all of them together; an unusable file is an error, not a stop."""
    lists: list[SubscriberList] = []
    problems: list[Problem] = []
    for path in project.list_paths().values():
        try:
            lists.append(project.read_list(path))
        except UtskickError as e:
            problems += e.problems
    suppressed, sup_problems = load_suppressed(project.suppression_path)
    each = [merge([lst], suppressed).stats[0] for lst in lists]
    union = total(merge(lists, suppressed).stats, "all lists")
    return each, union, sup_problems + [p for lst in lists for p in lst.problems] + problems


def check_lists(project: Project, names: Sequence[str], fields: Iterable[str], required: bool = True) -> list[Problem]:
    """Bad rows of the named lists as warnings; a template field a list has no column for, an error.

    Lists are personal data kept out of git, so a colleague's checkout may not have them: a list
    named only by the issue (`required=False`) and missing here is a warning, not an error.
    """
    _, problems = load_suppressed(project.suppression_path)
    lists: list[SubscriberList] = []
    for n in dict.fromkeys(names):
        if not required and not project.list_file(n).exists():
            problems.append(Problem(f"list '{n}' is not in this folder, so it was not checked", project.list_file(n), severity="warning"))
        else:
            lists.extend(project.lists([n]))
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
    """The person with `address` (any spelling) on the first list that has them: for previewing
    the issue as one real recipient."""
    try:
        key = normalise(address.strip())[1]
    except InvalidAddress as e:
        raise UtskickError(e.problem()) from None
    for path in project.list_paths().values():
        for s in project.read_list(path).subscribers:
            if s.key == key:
                return s
    raise UtskickError(Problem(f"{address} is on no list here", project.subscribers_dir))
