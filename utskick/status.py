"""How a send stands, from the journal and the lists, for `status` (also while a send runs)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UtskickError
from .journal import Counts, Journal, Row
from .project import Project
from .subscribers import load_suppressed, merge


def still_listed(project: Project) -> set[str] | None:
    """Everyone on any list and not suppressed; None when a list cannot be read (then nobody is
    taken for gone). Without a key: `status` must not create the secret."""
    try:
        lists = [project.read_list(path) for path in project.list_paths().values()]
    except UtskickError:
        return None
    suppressed, _ = load_suppressed(project.suppression_path)
    return {s.key for s in merge(lists, suppressed).subscribers}


def standing(journal: Journal, listed: set[str] | None) -> tuple[Counts, int]:
    """The journal's counts, with those not yet sent who have since left the lists (or been
    suppressed) counted apart: `send` will not mail them, so they are not "remaining"."""
    counts = journal.counts()
    if listed is None:
        return counts, 0
    gone = 0
    for row in journal.rows("pending", "deferred", "failed", "inflight"):
        if row.key not in listed:
            counts.add(row.state, -1)
            gone += 1
    return counts, gone


@dataclass(frozen=True)
class Standing:
    """One transport's journal of an issue: its counts, those gone from the lists, every row."""

    kind: str
    counts: Counts
    gone: int
    rows: list[Row]


def report(project: Project, slug: str) -> list[Standing]:
    """How the sending of `slug` stands through each transport it went through (none: not sent)."""
    kinds = Journal.transports(project.state_dir, slug)
    listed = still_listed(project) if kinds else None
    out = []
    for kind in kinds:
        with Journal.open(project.state_dir, slug, kind) as journal:
            counts, gone = standing(journal, listed)
            out.append(Standing(kind, counts, gone, list(journal.rows())))
    return out
