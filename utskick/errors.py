"""Every problem utskick reports is a value with a location.

Editors fix what they can find: a message without the file and line sends them hunting, so even
errors from deep inside (a CSV row, an SMTP reply) carry the place they came from. Commands
collect `Problem`s and `cli` prints them; nothing else prints or exits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Severity = Literal["error", "warning"]


def display_path(path: Path | str) -> str:
    """A path as the editor would type it: relative to the current folder when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)
    except OSError:
        return os.fspath(p)


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or worth a look) in one place."""

    message: str
    file: Path | None = None
    line: int | None = None
    col: int | None = None
    where: str = ""
    severity: Severity = "error"

    def __str__(self) -> str:
        place = ""
        if self.file is not None:
            place = display_path(self.file)
            if self.line is not None:
                place += f":{self.line}"
                if self.col is not None:
                    place += f":{self.col}"
            place += ": "
        where = f"{self.where}: " if self.where else ""
        return f"{place}{self.severity}: {where}{self.message}"

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


class UtskickError(Exception):
    """The root of every error utskick raises on purpose; carries one or more problems."""

    def __init__(self, problems: Problem | list[Problem]) -> None:
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
