"""A federation's folder: every path in it, its issues and its lists, asked of one `Project`.

Paths worked out in several places drift apart (the preview once watched a subscribers folder
of its own making), and each function that read every list read 100,000 rows again: so the
folder's layout is written here only, and each list is read at most once per `Project`, which
a command makes once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import Problem, UtskickError
from .load import Document, parse
from .model import Settings
from .subscribers import UNSUBSCRIBED, SubscriberList, load_list

SETTINGS_FILE = "newsletter.yaml"
ISSUE_SUFFIXES = (".yaml", ".yml")


@dataclass
class Project:
    """The settings and where every relative path points."""

    settings_doc: Document[Settings]
    _read: dict[Path, SubscriberList] = field(default_factory=dict, repr=False, compare=False)

    @property
    def settings(self) -> Settings:
        return self.settings_doc.model

    @property
    def settings_path(self) -> Path:
        return self.settings_doc.path

    @property
    def root(self) -> Path:
        return self.settings_doc.path.parent

    @property
    def issues_dir(self) -> Path:
        return self.root / "issues"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def subscribers_dir(self) -> Path:
        return self.root / "subscribers"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @property
    def outbox_dir(self) -> Path:
        return self.root / "outbox"

    @property
    def state_dir(self) -> Path:
        return self.root / ".utskick"

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"

    @property
    def suppression_path(self) -> Path:
        return self.subscribers_dir / f"{UNSUBSCRIBED}.csv"

    def issue_path(self, name: str | Path) -> Path:
        """An issue by path, by file name or by slug ('2024-05' finds issues/2024-05.yaml)."""
        p = Path(name)
        if p.exists():
            return p
        for candidate in (self.issues_dir / p, *(self.issues_dir / f"{p}{suffix}" for suffix in ISSUE_SUFFIXES)):
            if candidate.exists():
                return candidate
        # Not found: name the file the editor most likely meant in the error.
        return p if p.suffix in ISSUE_SUFFIXES or len(p.parts) > 1 else self.issues_dir / f"{p}.yaml"

    def issues(self) -> list[Path]:
        """Every issue file in issues/, by name (an unreadable folder has none)."""
        try:
            return sorted(p for p in self.issues_dir.iterdir() if p.suffix in ISSUE_SUFFIXES and p.is_file())
        except OSError:
            return []

    def list_file(self, name: str) -> Path:
        """Where list `name` is kept, whether or not it is there."""
        return self.subscribers_dir / f"{name.removesuffix('.csv')}.csv"

    def list_paths(self) -> dict[str, Path]:
        """Every list by name: each `subscribers/*.csv` except the suppression list."""
        return {p.stem: p for p in sorted(self.subscribers_dir.glob("*.csv")) if p.stem != UNSUBSCRIBED}

    def existing_list(self, name: str) -> Path:
        """The file of list `name`; an unknown name is an error naming the lists there are."""
        stem, path = name.removesuffix(".csv"), self.list_file(name)
        if stem == UNSUBSCRIBED:
            raise UtskickError(Problem("is the suppression list, never a list to send to", path))
        available = self.list_paths()
        if stem not in available:
            names = ", ".join(available) or "none yet: put <name>.csv files in this folder"
            raise UtskickError(Problem(f"no list '{name}' (available: {names})", path))
        return available[stem]

    def read_list(self, path: Path) -> SubscriberList:
        """One list, read the first time it is asked for; raises when the file is unusable."""
        if path not in self._read:
            self._read[path] = load_list(path)
        return self._read[path]

    def lists(self, names: Iterable[str]) -> list[SubscriberList]:
        """The named lists, each once, in the order named."""
        return [self.read_list(self.existing_list(n)) for n in dict.fromkeys(names)]


def load_project(config: Path | None = None) -> Project:
    path = config if config is not None else Path.cwd() / SETTINGS_FILE
    if not path.exists():
        hint = "" if config else " (run 'utskick init' to create one, or pass --config FILE)"
        raise UtskickError(Problem(f"settings file not found{hint}", path))
    return Project(parse(path, Settings))
