"""JSON Schema (draft 2020-12) of newsletter.yaml and of an issue, generated from the models.

Editors make their mistakes while typing, long before `check`: with a schema, VS Code (Red Hat's
YAML extension) and every editor using the YAML language server complete field names, show each
field's Swedish description and underline a misspelled key at once. The schema is generated from
the same pydantic models `check` validates against, so the two cannot drift apart; a project
keeps copies in `schemas/` (written by `init`), and `check` warns when they no longer match.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from .errors import Problem
from .files import write_atomic
from .model import Issue, Settings

Kind = Literal["settings", "issue"]
KINDS: tuple[Kind, ...] = ("settings", "issue")
FOLDER = "schemas"
FILES: dict[Kind, str] = {"settings": "newsletter.schema.json", "issue": "issue.schema.json"}
_MODELS: dict[Kind, type[BaseModel]] = {"settings": Settings, "issue": Issue}
_TITLES: dict[Kind, tuple[str, str]] = {
    "settings": ("utskick: newsletter.yaml", "Inställningar för hela nyhetsbrevet: en fil per förbund."),
    "issue": ("utskick: ett nummer", "Ett nummer av nyhetsbrevet: en fil per nummer i issues/, filnamnet är numrets namn."),
}
MODELINE = "# yaml-language-server: $schema="


def installed_version() -> str:
    try:
        return version("utskick")
    except PackageNotFoundError:  # a checkout run without installing (python send.py)
        return "0+checkout"


def schema(kind: Kind) -> dict[str, Any]:
    """The schema of one kind of file, as the YAML language server reads it."""
    title, description = _TITLES[kind]
    generated = _MODELS[kind].model_json_schema(by_alias=True)
    generated.pop("title", None)
    generated.pop("description", None)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"utskick {installed_version()}: `utskick schema {kind}` writes it",
        "title": title,
        "description": description,
        **generated,
    }


def text(kind: Kind) -> str:
    return json.dumps(schema(kind), ensure_ascii=False, indent=2) + "\n"


def path(root: Path, kind: Kind) -> Path:
    return root / FOLDER / FILES[kind]


def modeline(yaml_file: Path, root: Path, kind: Kind) -> str:
    """The first line of a YAML file, pointing the language server at the project's copy."""
    relative = Path(os.path.relpath(path(root, kind), yaml_file.parent)).as_posix()
    return f"{MODELINE}{relative if relative.startswith('../') else './' + relative}\n"


def with_modeline(yaml_text: str, yaml_file: Path, root: Path, kind: Kind) -> str:
    """`yaml_text` starting with its modeline (an older one replaced)."""
    lines = yaml_text.splitlines(keepends=True)
    if lines and lines[0].startswith(MODELINE):
        lines = lines[1:]
    return modeline(yaml_file, root, kind) + "".join(lines)


def write_copies(root: Path) -> list[Path]:
    written = []
    for kind in KINDS:
        write_atomic(path(root, kind), text(kind))
        written.append(path(root, kind))
    return written


def stale_copies(root: Path) -> list[Problem]:
    """A warning for each copy in `schemas/` that differs from the installed utskick's schema."""
    problems = []
    for kind in KINDS:
        copy = path(root, kind)
        try:
            theirs = json.loads(copy.read_text("utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            theirs = {}
        ours = schema(kind)
        if not isinstance(theirs, dict) or {**theirs, "$comment": ""} != {**ours, "$comment": ""}:
            problems.append(Problem(
                f"older than the installed utskick {installed_version()}'s schema, so the editor checks "
                f"against fields that have changed: run `utskick schema {kind} -o {FOLDER}/{FILES[kind]}`",
                copy, severity="warning"))
    return problems
